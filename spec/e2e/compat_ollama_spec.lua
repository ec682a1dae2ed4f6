-- The `ollama` npm client (spec/compat/ollama.mjs) through the real daemon
-- to the mock upstream in both chat formats: chat streamed and not, a tool
-- round trip (the call's id upstream answered by the result the client
-- sent by tool_name), an image, think (a level too); generate streamed and
-- not; list; show; version; ps; errors the client throws as ResponseError.
local helpers = require "helpers"

describe("the ollama client", function()
  local r = helpers.gateway_fixture {
    providers = { up = { kind = "openai", api_key = "sk-up" }, claude = { kind = "anthropic", api_key = "sk-ant-up" } },
    routes = { { match = "claude-test", provider = "claude" }, { match = "gpt-test", provider = "up" } },
    script = "spec/compat/ollama.mjs",
  }.r

  local png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

  for _, model in ipairs { "gpt-test", "claude-test" } do
    describe("to " .. model, function()
      it("chat, streamed", function()
        local v = r["chat_stream_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("streamed words here", v.text)
        assert.equal(4, v.lines) -- three words, then the final line
        assert.is_true(v.done)
        assert.equal("stop", v.done_reason)
        assert.equal(3, v.eval_count)
        assert.equal(7, v.prompt_eval_count)
        assert.is_true(v.total_duration > 0)
        assert.is_truthy(v.created_at:find("^%d%d%d%d%-%d%d%-%d%dT[%d:]+%.?%d*Z$"))
      end)

      it("chat, whole", function()
        local v = r["chat_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("assistant", v.role)
        assert.equal("hello ollama client", v.text)
        assert.is_true(v.done)
        assert.equal("stop", v.done_reason)
        assert.equal(3, v.eval_count)
      end)

      it("a tool round trip", function()
        local v = r["tools_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.same({ { name = "get_weather", arguments = { city = "Oslo" } } }, v.calls)
        assert.equal("Sunny in Oslo.", v.follow_text)
        assert.equal("call_w1", v.sent_call_id)
        assert.equal("call_w1", v.sent_result_id)
      end)

      it("an image", function()
        local v = r["image_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("What is in the picture?", v.text)
        assert.equal(model == "gpt-test" and "data:image/png;base64," .. png or png, v.sent_image)
      end)

      it("think: true streamed, and a level", function()
        local v = r["think_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("Let me weigh it.", v.thinking)
        assert.equal("Forty-two.", v.text)
        assert.equal("Deeply now.", v.whole_thinking)
        assert.equal("Still 42.", v.whole_text)
        if model == "gpt-test" then
          assert.equal("medium", v.sent_first)
          assert.equal("high", v.sent_second)
        else
          assert.same({ type = "enabled", budget_tokens = 8192 }, v.sent_first)
          assert.same({ type = "enabled", budget_tokens = 16384 }, v.sent_second)
        end
      end)

      it("generate, whole and streamed", function()
        local v = r["generate_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("generate these words", v.text)
        assert.is_true(v.done)
        assert.equal("stop", v.done_reason)
        assert.equal("and stream these", v.stream_text)
        assert.equal("stop", v.stream_done_reason)
        assert.equal(3, v.stream_eval_count)
      end)

      it("show", function()
        local v = r["show_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.same({ "completion", "tools", "vision", "thinking" }, v.capabilities)
        assert.equal(model == "gpt-test" and "openai" or "anthropic", v.format)
        assert.is_true(v.has_modelfile)
      end)
    end)
  end

  it("list", function()
    assert.is_nil(r.list.thrown, r.list.message)
    assert.same({ "claude-test", "echo", "gpt-test" }, r.list.names)
    for _, d in ipairs(r.list.digests) do assert.is_truthy(d:find("^%x+$") and #d == 64) end
  end)

  it("version and ps", function()
    assert.is_nil(r.version.thrown, r.version.message)
    assert.is_truthy(r.version.version:find("^%d+%.%d+%.%d+$"))
    assert.equal(0, r.ps.count)
  end)

  it("throws ResponseError with Ollama's words and the status", function()
    assert.equal("ResponseError", r.unknown_model.thrown)
    assert.equal(404, r.unknown_model.status)
    assert.equal("model 'nonesuch' not found", r.unknown_model.message)
    assert.equal("ResponseError", r.bad_field.thrown)
    assert.equal(400, r.bad_field.status)
    assert.is_truthy(r.bad_field.message:find("^think: "))
  end)
end)
