-- Both official SDKs (spec/compat) through the real daemon to the mock
-- upstream in each of its formats (chat completions, Anthropic, Responses):
-- create(), the streaming helpers, tool calls round-tripped with their
-- reasoning handed back to the upstream that made it.
local helpers = require "helpers"
local json = require "moongate.json"

describe("official SDKs across every pairing", function()
  local r = helpers.gateway_fixture {
    providers = { up = { kind = "openai", api_key = "sk-up" }, claude = { kind = "anthropic", api_key = "sk-ant-up" },
      resp = { kind = "openai", api = "responses", api_key = "sk-up" } },
    routes = { { match = "claude-*", provider = "claude" }, { match = "gpt-resp", provider = "resp" },
      { match = "gpt-*", provider = "up" } },
    script = "spec/compat/pairings.mjs",
  }.r

  for _, model in ipairs { "gpt-test", "claude-test", "gpt-resp" } do
    describe("to " .. model, function()
      it("Anthropic SDK create()", function()
        local v = r["anthropic_create_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("message", v.type)
        assert.equal("hello anthropic sdk", v.text)
        assert.equal("end_turn", v.stop_reason)
        assert.equal(3, v.usage.output_tokens)
      end)

      it("Anthropic SDK stream() / finalMessage()", function()
        local v = r["anthropic_stream_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("streamed words here", v.text)
        assert.equal(3, v.deltas)
        assert.equal("end_turn", v.stop_reason)
        assert.equal(3, v.output_tokens)
      end)

      it("Anthropic SDK tool calls round-tripped, thinking seen", function()
        local v = r["anthropic_tools_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("tool_use", v.stop_reason)
        assert.equal(2, #v.uses)
        assert.same({ city = "Oslo" }, v.uses[1].input)
        assert.equal("get_weather", v.uses[1].name)
        assert.same({ tz = "CET" }, v.uses[2].input)
        assert.equal("thinking it over", v.thinking)
        assert.equal(v.uses[model == "claude-test" and 1 or 2].id, v.sent_tool_result_id)
        assert.is_string(v.follow_text)
        -- the reasoning's opaque value went back to its maker, byte for byte
        if model == "claude-test" then assert.equal("sig123", v.sent_reasoning.signature)
        elseif model == "gpt-resp" then assert.equal("enc-rs-1", v.sent_reasoning.encrypted_content)
        else assert.is_true(v.sent_reasoning == json.null) end
      end)

      it("OpenAI SDK create()", function()
        local v = r["openai_create_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("hello openai sdk", v.text)
        assert.equal("stop", v.finish_reason)
        assert.equal(3, v.usage.completion_tokens)
      end)

      it("OpenAI SDK stream() / finalChatCompletion()", function()
        local v = r["openai_stream_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("streamed words here", v.text)
        assert.equal("stop", v.finish_reason)
      end)

      it("OpenAI SDK tool calls round-tripped, reasoning seen", function()
        local v = r["openai_tools_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("tool_calls", v.finish)
        assert.equal("thinking it over", v.reasoning)
        assert.equal("get_weather", v.calls[1].name)
        assert.same({ city = "Oslo" }, json.decode(v.calls[1].args))
        assert.same({ tz = "CET" }, json.decode(v.calls[2].args))
        assert.equal(2, #v.helper_calls)
        assert.equal("tool_calls", v.helper_finish)
        assert.is_string(v.follow_text)
        assert.equal(v.helper_calls[model == "claude-test" and 1 or 2].id, v.sent_tool_result_id)
        if model ~= "claude-test" then -- a chat client has no place for it: dropped
          assert.is_true(v.sent_reasoning == json.null)
        end
      end)
    end)
  end

  it("lists models for the Anthropic SDK", function()
    assert.is_nil(r.anthropic_models.thrown, r.anthropic_models.message)
    assert.same({ "echo", "gpt-resp" }, r.anthropic_models.ids) -- (routes by exact name are models)
  end)

  it("gives the Anthropic SDK its own error type", function()
    assert.equal("BadRequestError", r.anthropic_bad_request.thrown)
    assert.equal(400, r.anthropic_bad_request.status)
  end)
end)
