-- The official openai SDK's Responses API, legacy completions and
-- embeddings (spec/compat/responses.mjs) through the real daemon to the mock
-- upstream in each of its formats: a Responses upstream, a chat completions
-- upstream, an Anthropic upstream, and a local server that serves
-- /v1/completions and /v1/embeddings itself.
local helpers = require "helpers"
local json = require "moongate.json"

-- the upstream request bodies the mock was sent, in order (the first n),
-- none of which it refused
local function bodies(v, n)
  local out = {}
  for i, u in ipairs(v.upstream or {}) do
    if n and i > n then break end
    assert(u.rejected == nil or u.rejected == json.null, "the mock refused a request: " .. tostring(u.rejected))
    out[#out + 1] = u.body
  end
  return out
end

describe("the openai SDK's Responses, completions and embeddings", function()
  local r = helpers.gateway_fixture {
    providers = {
      resp = { kind = "openai", api = "responses", api_key = "sk-up" },
      up = { kind = "openai", api_key = "sk-up" },
      claude = { kind = "anthropic", api_key = "sk-ant-up" },
      vllm = { kind = "openai", completions = true, embeddings = true },
    },
    routes = { { match = "claude-*", provider = "claude" }, { match = "gpt-resp", provider = "resp" },
      { match = "gpt-*", provider = "up" }, { match = "local-*", provider = "vllm" } },
    script = "spec/compat/responses.mjs",
  }.r

  local paths = { ["gpt-resp"] = "/v1/responses", ["gpt-test"] = "/v1/chat/completions", ["claude-test"] = "/v1/messages" }

  for _, model in ipairs { "gpt-resp", "gpt-test", "claude-test" } do
    describe("to " .. model, function()
      it("responses.create()", function()
        local v = r["create_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("response", v.object)
        assert.equal("completed", v.status)
        assert.equal("hello responses", v.text)
        assert.matches("^resp_", v.id)
        assert.same({ "message" }, v.types)
        assert.is_true(v.usage.output_tokens > 0)
        assert.equal(v.usage.input_tokens + v.usage.output_tokens, v.usage.total_tokens)
        assert.equal(paths[model], v.upstream[1].path)
      end)

      it("responses.stream(): every event numbered in order, completed", function()
        local v = r["stream_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("streamed words here", v.text)
        assert.equal(v.text, v.deltas)
        assert.equal("completed", v.status)
        assert.equal("response.created", v.types[1])
        assert.equal("response.in_progress", v.types[2])
        assert.equal("response.completed", v.types[#v.types])
        for i, s in ipairs(v.seqs) do assert.equal(i - 1, s) end
        local b = bodies(v)[1]
        if model == "gpt-resp" then assert.equal("be brief", b.instructions)
        elseif model == "claude-test" then assert.equal("be brief", type(b.system) == "string" and b.system or b.system[1].text)
        else assert.equal("system", b.messages[1].role) end
      end)

      it("a function call round trip with reasoning, the client holding the state", function()
        local v = r["tools_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.same({ "reasoning", "function_call" }, v.first_types)
        assert.equal("get_weather", v.call.name)
        assert.same({ city = "Oslo" }, json.decode(v.call.arguments))
        assert.equal("It is sunny in Oslo.", v.text)
        assert.equal("thinking it over", v.reasoning.summary[1].text)
        local sent = bodies(v)
        assert.equal(2, #sent)
        local follow = sent[2]
        if model == "gpt-resp" then
          -- the reasoning item goes back byte for byte, then the call and its output
          local items = {}
          for _, it in ipairs(follow.input) do items[#items + 1] = it.type or "message" end
          assert.same({ "message", "reasoning", "function_call", "function_call_output" }, items)
          assert.equal(v.reasoning.id, follow.input[2].id)
          assert.equal("opaque-sig-1", follow.input[2].encrypted_content)
          assert.equal(v.reasoning.encrypted_content, follow.input[2].encrypted_content)
          assert.equal(v.call.call_id, follow.input[4].call_id)
          assert.equal("sunny, 21 C", follow.input[4].output)
        elseif model == "claude-test" then
          -- the thinking signature comes back to the upstream that made it
          local turn = follow.messages[2].content
          assert.equal("thinking", turn[1].type)
          assert.equal("opaque-sig-1", turn[1].signature)
          assert.equal("tool_use", turn[2].type)
          local result = follow.messages[3].content[1]
          assert.equal("tool_result", result.type)
          assert.equal(turn[2].id, result.tool_use_id)
        else
          local msgs = follow.messages
          assert.equal("get_weather", msgs[2].tool_calls[1]["function"].name)
          assert.equal("tool", msgs[3].role)
          assert.equal(msgs[2].tool_calls[1].id, msgs[3].tool_call_id)
          assert.equal("sunny, 21 C", msgs[3].content)
        end
      end)

      it("previous_response_id, retrieve and delete work from the gateway's store", function()
        local v = r["stored_" .. model]
        assert.is_nil(v.thrown, v.message)
        -- (a Responses upstream gets the earlier turns in input and echoes
        -- the previous_response_id it was sent: none)
        if model ~= "gpt-resp" then assert.equal(v.first_id, v.second_previous) end
        assert.equal(v.first_id, v.retrieved.id)
        assert.equal("my name is Ada", v.retrieved.text)
        assert.equal("NotFoundError", v.after.thrown)
        -- an id the gateway does not hold: its 404, or a Responses
        -- upstream's own answer (it may hold the id; the mock holds none)
        assert.equal(model == "gpt-resp" and "BadRequestError" or "NotFoundError", v.missing.thrown)
        assert.matches("resp_nope", v.missing.message)
        -- the second turn reached the upstream with the first one before it
        local sent = bodies(v, 2)
        local second = json.encode(sent[2])
        assert.matches("my name is Ada", second, 1, true)
        assert.matches("what is my name?", second, 1, true)
        local prev = sent[2].previous_response_id
        assert.is_true(prev == nil or prev == json.null, "previous_response_id went upstream: " .. tostring(prev))
      end)

      it("completions.create(), translated to a chat upstream", function()
        local v = r["completion_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("text_completion", v.object)
        assert.equal("say this", v.text)
        assert.equal("stop", v.finish_reason)
        assert.is_true(v.usage.completion_tokens > 0)
      end)

      it("completions.create({stream: true}) with usage", function()
        local v = r["completion_stream_" .. model]
        assert.is_nil(v.thrown, v.message)
        assert.equal("streamed words here", v.text)
        assert.equal("stop", v.finish_reason)
        assert.is_true(v.usage.completion_tokens > 0)
      end)
    end)
  end

  it("completions go as they are to a server that has /v1/completions", function()
    local v = r.completion_forwarded
    assert.is_nil(v.thrown, v.message)
    assert.equal("text_completion", v.object)
    local b = bodies(v)[1]
    assert.equal("/v1/completions", v.upstream[1].path)
    assert.equal(true, b.echo)
    assert.equal(7, b.max_tokens)
    assert.equal("say this", b.prompt)
  end)

  it("embeddings go as they are to a provider that declares them", function()
    local v = r.embeddings
    assert.is_nil(v.thrown, v.message)
    assert.equal("list", v.object)
    assert.equal(2, v.n)
    assert.is_true(v.dims > 0)
    assert.equal("/v1/embeddings", v.upstream[1].path)
    assert.same({ "one", "two" }, bodies(v)[1].input)
    assert.is_nil(r.embeddings_base64.thrown, r.embeddings_base64.message)
  end)

  it("embeddings for a model whose provider has none: 404 that says so", function()
    local v = r.embeddings_unsupported
    assert.equal("NotFoundError", v.thrown)
    assert.matches("embeddings", v.message)
  end)
end)
