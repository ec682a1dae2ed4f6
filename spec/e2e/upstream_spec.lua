-- The real daemon in front of the mock upstream: every pairing of front door
-- (OpenAI, Anthropic) and upstream (OpenAI-compatible, Anthropic), streamed
-- and not, tool calls, reasoning, images, and each failure.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"
local uv = require "luv"

local function oa_chunk(delta, finish, extra)
  local c = { id = "chatcmpl-up", object = "chat.completion.chunk", created = 1, model = "m",
    choices = { { index = 0, delta = delta, finish_reason = finish or json.null } } }
  for k, v in pairs(extra or {}) do c[k] = v end
  return { json = c }
end

-- scripted upstream answers ---------------------------------------------------

local function fixture(name)
  local f = assert(io.open("spec/fixtures/upstream/" .. name .. ".json", "rb"))
  local v = json.decode(f:read("*a"))
  f:close()
  return v
end
local oa_tools_stream = fixture "openai_tools_stream"
local an_tools_stream = fixture "anthropic_tools_stream"

local tools_oa = { { type = "function", ["function"] = { name = "get_weather", parameters = { type = "object", properties = { city = { type = "string" } } } } },
  { type = "function", ["function"] = { name = "get_time", parameters = { type = "object", properties = { tz = { type = "string" } } } } } }
local tools_an = { { name = "get_weather", input_schema = { type = "object", properties = { city = { type = "string" } } } },
  { name = "get_time", input_schema = { type = "object", properties = { tz = { type = "string" } } } } }

local function sse(res) return client.sse_data(res.body) end

describe("upstream pairings", function()
  local mock, server
  setup(function()
    mock = helpers.mock()
    server = helpers.start { config = string.format([[
return {
  providers = {
    up = { kind = "openai", base_url = %q, api_key = "sk-up-secret", retries = 2, retry_base_ms = 20 },
    claude = { kind = "anthropic", base_url = %q, api_key = "sk-ant-secret", retries = 0 },
    spare = { kind = "openai", base_url = %q, retries = 0 },
    dead = { kind = "openai", base_url = "http://127.0.0.1:1/v1", retries = 1, retry_base_ms = 10 },
    mine = { kind = "openai", base_url = %q, forward_client_key = true, api_key = "sk-operator-own" },
    quick = { kind = "openai", base_url = %q, retries = 0, first_byte_timeout_ms = 200, idle_timeout_ms = 200 },
    zip = { kind = "openai", base_url = %q, accept_compressed = true },
  },
  routes = {
    { match = "claude-*", provider = "claude" },
    { match = "chain", provider = { "dead", "spare" } },
    { match = "dead-only", provider = "dead" },
    { match = "byok", provider = "mine" },
    { match = "quick", provider = "quick" },
    { match = "zip", provider = "zip" },
    { match = "*", provider = "up" },
  },
}]], mock.url .. "/v1", mock.url, mock.url .. "/v1", mock.url .. "/v1", mock.url .. "/v1", mock.url .. "/v1") }
  end)
  teardown(function()
    if server then server:stop_clean() end
    if mock then mock:stop() end
  end)
  before_each(function() mock:reset() end)

  local function chat(body, headers) return assert(server:request("POST", "/v1/chat/completions", json.encode(body), headers, 15000)) end
  local function messages(body, headers) return assert(server:request("POST", "/v1/messages", json.encode(body), headers, 15000)) end

  describe("OpenAI client", function()
    for _, up in ipairs { { "OpenAI upstream", "gpt-test" }, { "Anthropic upstream", "claude-test" } } do
      it("gets text from an " .. up[1] .. ", whole and streamed", function()
        local res = chat { model = up[2], messages = { { role = "system", content = "be kind" }, { role = "user", content = "hello there" } } }
        assert.equal(200, res.status)
        assert.equal("hello there", json.decode(res.body).choices[1].message.content)
        res = chat { model = up[2], stream = true, stream_options = { include_usage = true }, messages = { { role = "user", content = "one two" } } }
        local data = sse(res)
        assert.equal("[DONE]", data[#data])
        local text = {}
        for i = 1, #data - 1 do
          local c = json.decode(data[i])
          if c.choices[1] and c.choices[1].delta.content then text[#text + 1] = c.choices[1].delta.content end
        end
        assert.equal("one two", table.concat(text))
        assert.equal(2, json.decode(data[#data - 1]).usage.completion_tokens)
      end)
    end

    it("gets streamed tool calls and reasoning from an OpenAI upstream", function()
      mock:queue { oa_tools_stream }
      local res = chat { model = "gpt-test", stream = true, tools = tools_oa, messages = { { role = "user", content = "weather?" } } }
      local data = sse(res)
      local calls, reasoning, finish = {}, {}, nil
      for i = 1, #data - 1 do
        local ch = json.decode(data[i]).choices[1]
        if ch then
          for _, tc in ipairs(ch.delta.tool_calls or {}) do
            calls[tc.index + 1] = calls[tc.index + 1] or { id = tc.id, name = tc["function"].name, args = "" }
            calls[tc.index + 1].args = calls[tc.index + 1].args .. (tc["function"].arguments or "")
          end
          if ch.delta.reasoning_content then reasoning[#reasoning + 1] = ch.delta.reasoning_content end
          if ch.finish_reason ~= json.null then finish = ch.finish_reason end
        end
      end
      assert.same({ id = "call_a", name = "get_weather", args = '{"city":"Oslo"}' }, calls[1])
      assert.same({ id = "call_b", name = "get_time", args = '{"tz":"CET"}' }, calls[2])
      assert.equal("thinking it over", table.concat(reasoning))
      assert.equal("tool_calls", finish)
      local sent = json.decode(mock:requests()[1].body)
      assert.equal("get_weather", sent.tools[1]["function"].name)
      assert.equal("Bearer sk-up-secret", mock:requests()[1].headers.authorization)
    end)

    it("gets tool calls and thinking from an Anthropic upstream, whole", function()
      mock:queue { { json = { id = "msg_up", type = "message", role = "assistant", model = "m",
        content = { { type = "thinking", thinking = "hmm", signature = "s1" },
          { type = "tool_use", id = "toolu_a", name = "get_weather", input = { city = "Oslo" } } },
        stop_reason = "tool_use", usage = { input_tokens = 5, output_tokens = 3 } } } }
      local res = chat { model = "claude-test", tools = tools_oa, tool_choice = "auto", reasoning_effort = "high",
        messages = { { role = "user", content = { { type = "text", text = "weather?" },
          { type = "image_url", image_url = { url = "data:image/png;base64,iVBORw0K" } } } } } }
      local body = json.decode(res.body)
      local msg = body.choices[1].message
      assert.equal("tool_calls", body.choices[1].finish_reason)
      assert.equal("get_weather", msg.tool_calls[1]["function"].name)
      assert.same({ city = "Oslo" }, json.decode(msg.tool_calls[1]["function"].arguments))
      assert.equal("hmm", msg.reasoning_content)
      local sent = json.decode(mock:requests()[1].body)
      assert.same({ type = "enabled", budget_tokens = 16384 }, sent.thinking)
      assert.is_true(sent.max_tokens > 16384)
      assert.same({ type = "auto" }, sent.tool_choice) -- Anthropic thinks with auto or none only
      assert.equal("get_weather", sent.tools[1].name)
      assert.same({ type = "base64", media_type = "image/png", data = "iVBORw0K" }, sent.messages[1].content[2].source)
      assert.equal("sk-ant-secret", mock:requests()[1].headers["x-api-key"])
      assert.equal("2023-06-01", mock:requests()[1].headers["anthropic-version"])
    end)

    it("keeps empty lists and long numbers of tool schemas and arguments when translating", function()
      -- the client's bytes: an empty `required` and an array default, and a
      -- tool call in the history with an empty list and a 16-digit number
      local tool = '{"type":"function","function":{"name":"find","parameters":{"type":"object",'
        .. '"properties":{"tags":{"type":"array","items":{"type":"string"},"default":[]},'
        .. '"order_id":{"type":"integer"},"opts":{"type":"object","properties":{}}},"required":[]}}}'
      local body = '{"model":"claude-test","tools":[' .. tool .. '],"messages":['
        .. '{"role":"user","content":"find it"},'
        .. '{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_h","type":"function",'
        .. '"function":{"name":"find","arguments":"{\\"tags\\":[],\\"order_id\\":1234567890123456}"}}]},'
        .. '{"role":"tool","tool_call_id":"toolu_h","content":"none"}]}'
      -- the upstream's answer, as raw bytes: cjson would round the numbers
      mock:queue { { body = '{"id":"msg_t","type":"message","role":"assistant","model":"m","content":['
        .. '{"type":"tool_use","id":"toolu_b","name":"find","input":{"tags":[],"order_id":9007199254740991,'
        .. '"ratio":0.12345678901234568,"opts":{}}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}' } }
      local res = assert(server:request("POST", "/v1/chat/completions", body))
      assert.equal(200, res.status)
      local sent = mock:requests()[1].body
      assert.matches('"required":[]', sent, 1, true)
      assert.matches('"default":[]', sent, 1, true)
      assert.matches('"properties":{}', sent, 1, true)
      assert.matches('"tags":[]', sent, 1, true)
      assert.matches('"order_id":1234567890123456', sent, 1, true)
      local args = json.decode(res.body).choices[1].message.tool_calls[1]["function"].arguments
      assert.matches('"tags":[]', args, 1, true)
      assert.matches('"opts":{}', args, 1, true)
      assert.matches('"order_id":9007199254740991', args, 1, true)
      assert.matches('"ratio":0.12345678901234568', args, 1, true)
      -- a structured-output schema on a translated OpenAI request (effort suffix)
      mock:reset()
      local chat_raw = '{"model":"gpt-test-high","messages":[{"role":"user","content":"x"}],"response_format":'
        .. '{"type":"json_schema","json_schema":{"name":"r","strict":true,"schema":{"type":"object",'
        .. '"properties":{"a":{"type":"array","items":{"type":"string"}}},"required":[],"additionalProperties":false}}}}'
      assert.equal(200, assert(server:request("POST", "/v1/chat/completions", chat_raw)).status)
      sent = mock:requests()[1].body
      assert.matches('"required":[]', sent, 1, true)
      assert.matches('"reasoning_effort":"high"', sent, 1, true) -- translated, not passed through
      assert.matches('"strict":true', sent, 1, true)
    end)

    it("asks an Anthropic upstream for one tool call at a time when the client says parallel_tool_calls: false", function()
      chat { model = "claude-test", tools = tools_oa, parallel_tool_calls = false, messages = { { role = "user", content = "x" } } }
      assert.same({ type = "auto", disable_parallel_tool_use = true }, json.decode(mock:requests()[1].body).tool_choice)
      mock:reset()
      chat { model = "claude-test", tools = tools_oa, messages = { { role = "user", content = "x" } } }
      assert.is_nil(json.decode(mock:requests()[1].body).tool_choice)
    end)

    it("leaves thinking out of a tool loop's next turn to an Anthropic upstream when the client kept no signature", function()
      local history = {
        { role = "user", content = "weather?" },
        { role = "assistant", content = json.null, tool_calls = { { id = "toolu_a", type = "function",
          ["function"] = { name = "get_weather", arguments = '{"city":"Oslo"}' } } } },
        { role = "tool", tool_call_id = "toolu_a", content = "sunny" } }
      local res = chat { model = "claude-test", reasoning_effort = "high", tools = tools_oa, messages = history }
      assert.equal(200, res.status)
      assert.is_nil(json.decode(mock:requests()[1].body).thinking)
      -- the first turn of the loop still thinks
      mock:reset()
      chat { model = "claude-test", reasoning_effort = "high", tools = tools_oa, messages = { history[1] } }
      assert.equal("enabled", json.decode(mock:requests()[1].body).thinking.type)
      -- an Anthropic client that hands the signed thinking back keeps it
      mock:reset()
      messages { model = "claude-test-high", max_tokens = 50, tools = tools_an, messages = {
        { role = "user", content = "weather?" },
        { role = "assistant", content = { { type = "thinking", thinking = "hmm", signature = "sig" },
          { type = "tool_use", id = "toolu_a", name = "get_weather", input = { city = "Oslo" } } } },
        { role = "user", content = { { type = "tool_result", tool_use_id = "toolu_a", content = "sunny" } } } } }
      local sent = json.decode(mock:requests()[1].body)
      assert.equal("enabled", sent.thinking.type)
      assert.equal("thinking", sent.messages[2].content[1].type)
    end)

    it("round-trips tool results to an Anthropic upstream", function()
      chat { model = "claude-test", messages = {
        { role = "user", content = "weather?" },
        { role = "assistant", content = json.null, tool_calls = { { id = "toolu_a", type = "function", ["function"] = { name = "get_weather", arguments = '{"city":"Oslo"}' } } } },
        { role = "tool", tool_call_id = "toolu_a", content = "sunny" } } }
      local sent = json.decode(mock:requests()[1].body)
      assert.equal("assistant", sent.messages[2].role)
      assert.same({ type = "tool_use", id = "toolu_a", name = "get_weather", input = { city = "Oslo" } }, sent.messages[2].content[1])
      assert.equal("tool_result", sent.messages[3].content[1].type)
      assert.equal("toolu_a", sent.messages[3].content[1].tool_use_id)
    end)

    it("forwards frames untouched when both sides speak OpenAI (passthrough)", function()
      mock:queue { { frames = { oa_chunk({ role = "assistant", content = "" }, nil, { x_vendor = "kept" }),
        oa_chunk({ content = "as is" }), oa_chunk({}, "stop"), { data = "[DONE]" } } } }
      local body = json.encode { model = "gpt-test", stream = true, messages = { { role = "user", content = "x" } }, x_extra = 1 }
      local res = assert(server:request("POST", "/v1/chat/completions", body))
      local data = sse(res)
      assert.equal("kept", json.decode(data[1]).x_vendor)
      assert.equal("chatcmpl-up", json.decode(data[2]).id)
      assert.equal("[DONE]", data[#data])
      assert.equal(body, mock:requests()[1].body) -- the client's bytes, unchanged
    end)

    it("asks a provider for compressed answers only when it says so, and hands the client them plain", function()
      local answer = { id = "chatcmpl-z", object = "chat.completion", created = 1, model = "zip",
        choices = { { index = 0, message = { role = "assistant", content = string.rep("zipped ", 100) }, finish_reason = "stop" } } }
      mock:queue { { json = answer, gzip = true } }
      local res = chat { model = "zip", messages = { { role = "user", content = "x" } } }
      assert.equal(200, res.status)
      assert.same(answer, json.decode(res.body))
      assert.matches("gzip", mock:requests()[1].headers["accept-encoding"])
      mock:reset()
      chat { model = "gpt-test", messages = { { role = "user", content = "x" } } }
      -- a plain http:// base URL is a local server: no compression asked
      assert.is_nil(mock:requests()[1].headers["accept-encoding"])
    end)

    it("turns an effort suffix into the reasoning effort", function()
      chat { model = "gpt-test-high", messages = { { role = "user", content = "x" } } }
      local sent = json.decode(mock:requests()[1].body)
      assert.equal("gpt-test", sent.model)
      assert.equal("high", sent.reasoning_effort)
    end)
  end)

  describe("Anthropic client", function()
    it("gets streamed tool calls and thinking from an Anthropic upstream", function()
      mock:queue { an_tools_stream }
      local res = messages { model = "claude-test", max_tokens = 4000, stream = true, tools = tools_an,
        thinking = { type = "enabled", budget_tokens = 2000 }, messages = { { role = "user", content = "weather?" } } }
      local data, events = sse(res)
      assert.equal("message_start", events[1])
      assert.equal("message_stop", events[#events])
      local blocks, deltas = {}, {}
      for i, d in ipairs(data) do
        local ev = json.decode(d)
        if events[i] == "content_block_start" then blocks[ev.index + 1] = ev.content_block end
        if events[i] == "content_block_delta" then
          deltas[ev.index + 1] = (deltas[ev.index + 1] or "") .. (ev.delta.partial_json or ev.delta.thinking or ev.delta.text or ev.delta.signature or "")
        end
      end
      assert.equal("thinking", blocks[1].type)
      assert.equal("thinking it oversig123", deltas[1])
      assert.equal("tool_use", blocks[2].type)
      assert.equal("toolu_a", blocks[2].id)
      assert.equal('{"city":"Oslo"}', deltas[2])
      assert.equal('{"tz":"CET"}', deltas[3])
      local md = json.decode(data[#data - 1])
      assert.equal("tool_use", md.delta.stop_reason)
      assert.equal(9, md.usage.output_tokens)
      local sent = json.decode(mock:requests()[1].body)
      assert.same({ type = "enabled", budget_tokens = 2000 }, sent.thinking)
    end)

    it("gets U+FFFD for an upstream's ill-formed UTF-8 when translating, and the bytes as they came on passthrough", function()
      local FFFD = "\239\191\189"
      local frames = { frames = { oa_chunk({ role = "assistant", content = "ok " }), oa_chunk({ content = "more " }),
        oa_chunk({ content = "bad \255 " }), oa_chunk({ content = "cut \226\130" }), oa_chunk({}, "stop"), { data = "[DONE]" } } }
      mock:queue { frames }
      local res = messages { model = "gpt-test", max_tokens = 100, stream = true, messages = { { role = "user", content = "x" } } }
      local text = ""
      for _, d in ipairs(sse(res)) do
        local ev = json.decode(d)
        if ev.type == "content_block_delta" then text = text .. ev.delta.text end
      end
      assert.equal("ok more bad " .. FFFD .. " cut " .. FFFD, text)
      assert.is_nil(res.body:find("\255", 1, true))
      mock:queue { { json = { id = "c", object = "chat.completion", created = 1, model = "m",
        choices = { { index = 0, message = { role = "assistant", content = "x\192\175y" }, finish_reason = "stop" } } } } }
      res = messages { model = "gpt-test", max_tokens = 100, messages = { { role = "user", content = "x" } } }
      assert.equal(200, res.status)
      assert.equal("x" .. FFFD .. FFFD .. "y", json.decode(res.body).content[1].text)
      -- passthrough: the gateway does not touch what it forwards
      mock:queue { frames }
      res = chat { model = "gpt-test", stream = true, messages = { { role = "user", content = "x" } } }
      assert.truthy(res.body:find("bad \255 ", 1, true))
    end)

    it("gets streamed tool calls from an OpenAI upstream as tool_use blocks", function()
      mock:queue { oa_tools_stream }
      local res = messages { model = "gpt-test", max_tokens = 100, stream = true, tools = tools_an,
        messages = { { role = "user", content = "weather?" } } }
      local data, events = sse(res)
      local starts, json_parts = {}, {}
      for i, d in ipairs(data) do
        local ev = json.decode(d)
        if events[i] == "content_block_start" then starts[#starts + 1] = ev.content_block end
        if events[i] == "content_block_delta" and ev.delta.type == "input_json_delta" then
          json_parts[ev.index] = (json_parts[ev.index] or "") .. ev.delta.partial_json
        end
      end
      assert.equal("thinking", starts[1].type)
      assert.equal("tool_use", starts[2].type)
      assert.equal("get_weather", starts[2].name)
      assert.equal("call_a", starts[2].id)
      assert.equal('{"city":"Oslo"}', json_parts[1])
      assert.equal("get_time", starts[3].name)
      assert.equal("tool_use", json.decode(data[#data - 1]).delta.stop_reason)
      local sent = json.decode(mock:requests()[1].body)
      assert.equal("get_weather", sent.tools[1]["function"].name)
    end)

    it("gets interleaved parallel tool calls of an OpenAI upstream as whole tool_use blocks, in turn", function()
      local function call(i, id, name, args)
        return { index = i, id = id, type = id and "function" or nil, ["function"] = { name = name, arguments = args } }
      end
      mock:queue { { frames = {
        oa_chunk({ role = "assistant", tool_calls = { call(0, "call_a", "get_weather", ""), call(1, "call_b", "get_time", "") } }),
        oa_chunk({ tool_calls = { call(0, nil, nil, '{"city":') } }),
        oa_chunk({ tool_calls = { call(1, nil, nil, '{"tz":') } }),
        oa_chunk({ tool_calls = { call(0, nil, nil, '"Oslo"}') } }),
        oa_chunk({ tool_calls = { call(1, nil, nil, '"CET"}') } }),
        oa_chunk({}, "tool_calls"), { data = "[DONE]" } } } }
      local res = messages { model = "gpt-test", max_tokens = 100, stream = true, tools = tools_an,
        messages = { { role = "user", content = "weather and time?" } } }
      local data, events = sse(res)
      local open, blocks = nil, {}
      for i, d in ipairs(data) do
        local ev = json.decode(d)
        if events[i] == "content_block_start" then
          assert.is_nil(open) -- one block at a time
          open = ev.index
          blocks[ev.index + 1] = { id = ev.content_block.id, name = ev.content_block.name, json = "" }
        elseif events[i] == "content_block_delta" then
          assert.equal(open, ev.index)
          blocks[ev.index + 1].json = blocks[ev.index + 1].json .. ev.delta.partial_json
        elseif events[i] == "content_block_stop" then
          assert.equal(open, ev.index)
          open = nil
        end
      end
      assert.equal(2, #blocks)
      assert.same({ id = "call_a", name = "get_weather", json = '{"city":"Oslo"}' }, blocks[1])
      assert.same({ id = "call_b", name = "get_time", json = '{"tz":"CET"}' }, blocks[2])
      assert.equal("tool_use", json.decode(data[#data - 1]).delta.stop_reason)
    end)

    it("keeps empty lists and long numbers of tool schemas and inputs on the way to an OpenAI upstream", function()
      local body = '{"model":"gpt-test","max_tokens":50,"tools":[{"name":"find","input_schema":{"type":"object",'
        .. '"properties":{"tags":{"type":"array","default":[]}},"required":[]}}],"messages":['
        .. '{"role":"user","content":"find it"},'
        .. '{"role":"assistant","content":[{"type":"tool_use","id":"toolu_h","name":"find",'
        .. '"input":{"tags":[],"n":1234567890123456}}]},'
        .. '{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_h","content":"none"}]}]}'
      local res = assert(server:request("POST", "/v1/messages", body))
      assert.equal(200, res.status)
      local sent = mock:requests()[1].body
      assert.matches('"required":[]', sent, 1, true)
      assert.matches('"default":[]', sent, 1, true)
      local wire = json.decode(sent)
      assert.equal('{"tags":[],"n":1234567890123456}', wire.messages[2].tool_calls[1]["function"].arguments
        :gsub('"n":1234567890123456,"tags":%[%]', '"tags":[],"n":1234567890123456'))
      -- and back: an OpenAI tool call's arguments become an input that keeps them
      mock:queue { { body = '{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
        .. '"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",'
        .. '"function":{"name":"find","arguments":"{\\"tags\\":[],\\"n\\":1234567890123456}"}}]},'
        .. '"finish_reason":"tool_calls"}]}' } }
      res = assert(server:request("POST", "/v1/messages", body))
      assert.equal(200, res.status)
      assert.matches('"tags":[]', res.body, 1, true)
      assert.matches('"n":1234567890123456', res.body, 1, true)
    end)

    it("carries redacted_thinking blocks both ways when translating (effort suffix)", function()
      mock:queue { { json = { id = "msg_r", type = "message", role = "assistant", model = "m",
        content = { { type = "redacted_thinking", data = "opaque==" },
          { type = "tool_use", id = "toolu_r", name = "get_weather", input = { city = "Oslo" } } },
        stop_reason = "tool_use", usage = { input_tokens = 3, output_tokens = 2 } } } }
      local body = json.decode(messages { model = "claude-test-high", max_tokens = 50, tools = tools_an,
        messages = { { role = "user", content = "weather?" } } }.body)
      assert.same({ type = "redacted_thinking", data = "opaque==" }, body.content[1])
      assert.equal("tool_use", body.content[2].type)
      -- handed back, it goes upstream first in its turn, and thinking stays on
      mock:reset()
      messages { model = "claude-test-high", max_tokens = 50, tools = tools_an, messages = {
        { role = "user", content = "weather?" },
        { role = "assistant", content = body.content },
        { role = "user", content = { { type = "tool_result", tool_use_id = "toolu_r", content = "sunny" } } } } }
      local sent = json.decode(mock:requests()[1].body)
      assert.same({ type = "redacted_thinking", data = "opaque==" }, sent.messages[2].content[1])
      assert.equal("enabled", sent.thinking.type)
      -- streamed: a block of its own
      mock:queue { { frames = {
        { event = "message_start", json = { type = "message_start", message = { id = "m", type = "message", role = "assistant",
          model = "m", content = {}, usage = { input_tokens = 1, output_tokens = 1 } } } },
        { event = "content_block_start", json = { type = "content_block_start", index = 0,
          content_block = { type = "redacted_thinking", data = "opaque==" } } },
        { event = "content_block_stop", json = { type = "content_block_stop", index = 0 } },
        { event = "content_block_start", json = { type = "content_block_start", index = 1, content_block = { type = "text", text = "" } } },
        { event = "content_block_delta", json = { type = "content_block_delta", index = 1, delta = { type = "text_delta", text = "hi" } } },
        { event = "content_block_stop", json = { type = "content_block_stop", index = 1 } },
        { event = "message_delta", json = { type = "message_delta", delta = { stop_reason = "end_turn" }, usage = { output_tokens = 2 } } },
        { event = "message_stop", json = { type = "message_stop" } } } } }
      local data, events = sse(messages { model = "claude-test-high", max_tokens = 50, stream = true,
        messages = { { role = "user", content = "x" } } })
      assert.equal("content_block_start", events[2])
      assert.same({ type = "redacted_thinking", data = "opaque==" }, json.decode(data[2]).content_block)
      assert.equal("content_block_stop", events[3])
      assert.equal(1, json.decode(data[4]).index)
    end)

    it("keeps an Anthropic upstream's stop sequence when translating (effort suffix)", function()
      local answer = { id = "msg_s", type = "message", role = "assistant", model = "m",
        content = { { type = "text", text = "up to" } }, stop_reason = "stop_sequence", stop_sequence = "END",
        usage = { input_tokens = 3, output_tokens = 2 } }
      mock:queue { { json = answer } }
      local res = messages { model = "claude-test-high", max_tokens = 50, stop_sequences = { "END" },
        messages = { { role = "user", content = "x" } } }
      local body = json.decode(res.body)
      assert.equal("stop_sequence", body.stop_reason)
      assert.equal("END", body.stop_sequence)
      assert.is_table(json.decode(mock:requests()[1].body).thinking) -- it was translated, not passed through
      mock:queue { { frames = {
        { event = "message_start", json = { type = "message_start", message = { id = "msg_s", type = "message",
          role = "assistant", model = "m", content = {}, usage = { input_tokens = 3, output_tokens = 1 } } } },
        { event = "content_block_start", json = { type = "content_block_start", index = 0, content_block = { type = "text", text = "" } } },
        { event = "content_block_delta", json = { type = "content_block_delta", index = 0, delta = { type = "text_delta", text = "up to" } } },
        { event = "content_block_stop", json = { type = "content_block_stop", index = 0 } },
        { event = "message_delta", json = { type = "message_delta", delta = { stop_reason = "stop_sequence", stop_sequence = "END" },
          usage = { output_tokens = 2 } } },
        { event = "message_stop", json = { type = "message_stop" } } } } }
      res = messages { model = "claude-test-high", max_tokens = 50, stream = true, stop_sequences = { "END" },
        messages = { { role = "user", content = "x" } } }
      local data, events = sse(res)
      assert.equal("message_delta", events[#events - 1])
      local md = json.decode(data[#data - 1])
      assert.equal("stop_sequence", md.delta.stop_reason)
      assert.equal("END", md.delta.stop_sequence)
      assert.equal(3, json.decode(data[1]).message.usage.input_tokens)
    end)

    it("sends tool results and images to an OpenAI upstream", function()
      messages { model = "gpt-test", max_tokens = 50, system = { { type = "text", text = "sys" } }, messages = {
        { role = "user", content = { { type = "text", text = "look" },
          { type = "image", source = { type = "base64", media_type = "image/jpeg", data = "AAAA" } } } },
        { role = "assistant", content = { { type = "tool_use", id = "toolu_1", name = "f", input = { a = 1 } } } },
        { role = "user", content = { { type = "tool_result", tool_use_id = "toolu_1", content = "done" } } } } }
      local sent = json.decode(mock:requests()[1].body)
      assert.same({ role = "system", content = "sys" }, sent.messages[1])
      assert.equal("data:image/jpeg;base64,AAAA", sent.messages[2].content[2].image_url.url)
      assert.equal("toolu_1", sent.messages[3].tool_calls[1].id)
      assert.same({ a = 1 }, json.decode(sent.messages[3].tool_calls[1]["function"].arguments))
      assert.same({ role = "tool", tool_call_id = "toolu_1", content = "done" }, sent.messages[4])
      assert.equal(50, sent.max_tokens)
    end)

    it("maps cached prompt tokens both ways, whole and streamed", function()
      -- Anthropic upstream -> OpenAI client: prompt_tokens counts the cache too
      mock:queue { { json = { id = "msg_c", type = "message", role = "assistant", model = "m",
        content = { { type = "text", text = "ok" } }, stop_reason = "end_turn",
        usage = { input_tokens = 10, cache_read_input_tokens = 100, cache_creation_input_tokens = 5, output_tokens = 3 } } } }
      local u = json.decode(chat { model = "claude-test", messages = { { role = "user", content = "x" } } }.body).usage
      assert.equal(115, u.prompt_tokens)
      assert.equal(100, u.prompt_tokens_details.cached_tokens)
      assert.equal(118, u.total_tokens)
      -- OpenAI upstream -> Anthropic client: input_tokens is the uncached part
      local oa_usage = { prompt_tokens = 120, completion_tokens = 4, total_tokens = 124,
        prompt_tokens_details = { cached_tokens = 100 } }
      mock:queue { { json = { id = "c", object = "chat.completion", created = 1, model = "m",
        choices = { { index = 0, message = { role = "assistant", content = "ok" }, finish_reason = "stop" } },
        usage = oa_usage } } }
      u = json.decode(messages { model = "gpt-test", max_tokens = 5, messages = { { role = "user", content = "x" } } }.body).usage
      assert.same({ input_tokens = 20, cache_read_input_tokens = 100, output_tokens = 4 }, u)
      mock:queue { { frames = { oa_chunk({ role = "assistant", content = "ok" }), oa_chunk({}, "stop"),
        { json = { id = "c", object = "chat.completion.chunk", created = 1, model = "m", choices = {}, usage = oa_usage } },
        { data = "[DONE]" } } } }
      local data, events = sse(messages { model = "gpt-test", max_tokens = 5, stream = true,
        messages = { { role = "user", content = "x" } } })
      assert.equal("message_delta", events[#events - 1])
      assert.same({ input_tokens = 20, cache_read_input_tokens = 100, output_tokens = 4 }, json.decode(data[#data - 1]).usage)
    end)

    it("maps stop reasons", function()
      mock:queue { { json = { id = "x", object = "chat.completion", created = 1, model = "m",
        choices = { { index = 0, message = { role = "assistant", content = "cut" }, finish_reason = "length" } } } } }
      local body = json.decode(messages { model = "gpt-test", max_tokens = 5, messages = { { role = "user", content = "x" } } }.body)
      assert.equal("max_tokens", body.stop_reason)
    end)

    it("counts tokens with the upstream's counter, or estimates", function()
      mock:queue { { json = { input_tokens = 42 } } }
      local res = assert(server:request("POST", "/v1/messages/count_tokens",
        json.encode { model = "claude-test", messages = { { role = "user", content = "count me" } } }))
      assert.equal(42, json.decode(res.body).input_tokens)
      assert.equal("/v1/messages/count_tokens", mock:requests()[1].path)
      res = assert(server:request("POST", "/v1/messages/count_tokens",
        json.encode { model = "gpt-test", messages = { { role = "user", content = "count me please" } } }))
      assert.is_true(json.decode(res.body).input_tokens > 0)
      -- an answer that holds no count: a 502 that says so, not the body
      mock:queue { { body = '{"weird":"shape","with":"a long body"}' } }
      res = assert(server:request("POST", "/v1/messages/count_tokens",
        json.encode { model = "claude-test", messages = { { role = "user", content = "count me" } } }))
      assert.equal(502, res.status)
      assert.equal("the upstream's count_tokens answer holds no input_tokens", json.decode(res.body).error.message)
    end)

    it("passes the client's own key through when the provider says so", function()
      messages({ model = "byok", max_tokens = 5, messages = { { role = "user", content = "x" } } },
        { ["x-api-key"] = "sk-client-own" })
      assert.equal("Bearer sk-client-own", mock:requests()[1].headers.authorization)
    end)

    it("never lends the operator's key to a client that sends none of its own", function()
      for _, headers in ipairs { {}, { authorization = "Basic dXNlcjpwYXNz" } } do
        local res = messages({ model = "byok", max_tokens = 5, messages = { { role = "user", content = "x" } } }, headers)
        assert.equal(401, res.status, res.body)
        assert.equal("authentication_error", json.decode(res.body).error.type)
        res = chat({ model = "byok", messages = { { role = "user", content = "x" } } }, headers)
        assert.equal(401, res.status, res.body)
        assert.equal("missing_api_key", json.decode(res.body).error.code)
      end
      assert.equal(0, #mock:requests()) -- nothing went upstream, with or without the operator's key
      assert.not_matches("sk-operator-own", server.log, 1, true)
    end)
  end)

  describe("failures", function()
    it("retries a 429 honouring Retry-After, then succeeds", function()
      mock:queue { { status = 429, headers = { ["retry-after"] = "1" }, json = { error = { message = "slow down" } } },
        { status = 503, json = { error = { message = "busy" } } } }
      local t0 = uv.hrtime()
      local res = chat { model = "gpt-test", messages = { { role = "user", content = "third time lucky" } } }
      local waited = (uv.hrtime() - t0) / 1e6
      assert.equal(200, res.status)
      assert.equal("third time lucky", json.decode(res.body).choices[1].message.content)
      assert.equal(3, #mock:requests())
      assert.is_true(waited >= 1000, "waited " .. waited .. " ms")
    end)

    it("answers a 429 at once, without retrying, when its Retry-After is past the retry cap", function()
      mock:queue { { status = 429, headers = { ["retry-after"] = "999999999" }, json = { error = { message = "come back later" } } } }
      local t0 = uv.hrtime()
      local res = chat { model = "gpt-test", messages = { { role = "user", content = "x" } } }
      local waited = (uv.hrtime() - t0) / 1e6
      assert.equal(429, res.status)
      assert.equal("86400", res.headers["retry-after"]) -- capped at a day
      assert.equal("come back later", json.decode(res.body).error.message)
      assert.equal(1, #mock:requests())
      assert.is_true(waited < 1000, "waited " .. waited .. " ms")
    end)

    it("keeps an upstream error's type, code and param for a client of its format, and its Retry-After only", function()
      local quota = { error = { message = "You exceeded your quota", type = "insufficient_quota",
        code = "insufficient_quota", param = json.null } }
      mock:queue { { status = 429, json = quota } }
      local res = chat { model = "quick", messages = { { role = "user", content = "x" } } }
      assert.equal(429, res.status)
      local e = json.decode(res.body).error
      assert.equal("You exceeded your quota", e.message)
      assert.equal("insufficient_quota", e.type)
      assert.equal("insufficient_quota", e.code)
      assert.is_nil(res.headers["retry-after"]) -- the upstream named no wait
      mock:queue { { status = 400, json = { error = { message = "too long", type = "invalid_request_error",
        code = "context_length_exceeded", param = "messages" } } } }
      e = json.decode(chat { model = "quick", messages = { { role = "user", content = "x" } } }.body).error
      assert.equal("context_length_exceeded", e.code)
      assert.equal("messages", e.param)
      -- an upstream's own wait is passed on
      mock:queue { { status = 429, headers = { ["retry-after"] = "7" }, json = quota } }
      res = chat { model = "quick", messages = { { role = "user", content = "x" } } }
      assert.equal("7", res.headers["retry-after"])
      -- a client of the other format gets its own format's type, not OpenAI's
      mock:queue { { status = 429, json = quota } }
      res = messages { model = "quick", max_tokens = 5, messages = { { role = "user", content = "x" } } }
      assert.equal(429, res.status)
      assert.equal("rate_limit_error", json.decode(res.body).error.type)
    end)

    it("gives up after the configured retries with the upstream's status and message", function()
      mock:queue { { status = 500, json = { error = { message = "down 1" } } }, { status = 500, json = { error = { message = "down 2" } } },
        { status = 500, json = { error = { message = "down 3" } } } }
      local res = chat { model = "gpt-test", messages = { { role = "user", content = "x" } } }
      assert.equal(500, res.status)
      assert.equal("down 3", json.decode(res.body).error.message)
      assert.equal(3, #mock:requests())
    end)

    it("falls back to the next provider after connect errors", function()
      local res = chat { model = "chain", messages = { { role = "user", content = "via the spare" } } }
      assert.equal(200, res.status)
      assert.equal("via the spare", json.decode(res.body).choices[1].message.content)
      assert.matches("falling back to spare", server.log)
      -- the client is not told the upstream's address; the log is
      res = chat { model = "dead-only", messages = { { role = "user", content = "x" } } }
      assert.equal(502, res.status)
      assert.equal("upstream dead: cannot connect", json.decode(res.body).error.message)
      assert.matches("upstream dead: Failed to connect to 127.0.0.1 port 1", server.log, 1, true)
    end)

    it("hands an upstream 400 to each client in its own format, message kept", function()
      mock:queue { { status = 400, json = { error = { message = "bad temperature", type = "invalid_request_error" } } } }
      local res = messages { model = "gpt-test", max_tokens = 5, messages = { { role = "user", content = "x" } } }
      assert.equal(400, res.status)
      local body = json.decode(res.body)
      assert.equal("error", body.type)
      assert.equal("invalid_request_error", body.error.type)
      assert.equal("bad temperature", body.error.message)
      assert.equal(1, #mock:requests()) -- a 400 is not retried
      mock:queue { { status = 400, json = { type = "error", error = { type = "invalid_request_error", message = "bad thinking" } } } }
      res = chat { model = "claude-test", messages = { { role = "user", content = "x" } } }
      assert.equal(400, res.status)
      body = json.decode(res.body)
      assert.equal("bad thinking", body.error.message)
      assert.equal("invalid_request_error", body.error.type)
    end)

    it("ends a stream that drops mid-way with an error event, never silently", function()
      mock:queue { { frames = oa_tools_stream.frames, drop_after = 4 } }
      local res = chat { model = "gpt-test", stream = true, messages = { { role = "user", content = "x" } } }
      local data = sse(res)
      assert.is_table(json.decode(data[#data]).error)
      mock:queue { { frames = an_tools_stream.frames, drop_after = 5 } }
      res = messages { model = "claude-test", max_tokens = 5, stream = true, messages = { { role = "user", content = "x" } } }
      local _, events = sse(res)
      assert.equal("error", events[#events])
    end)

    it("streams a whole JSON answer that an upstream gave to a stream request", function()
      local oa_whole = { json = { id = "chatcmpl-whole", object = "chat.completion", created = 1, model = "m",
        choices = { { index = 0, message = { role = "assistant", content = "all at once" }, finish_reason = "length" } },
        usage = { prompt_tokens = 3, completion_tokens = 4, total_tokens = 7 } },
        headers = { ["content-type"] = "application/json; charset=utf-8" } }
      -- OpenAI client, OpenAI upstream (the passthrough pairing)
      mock:queue { oa_whole }
      local res = chat { model = "gpt-test", stream = true, stream_options = { include_usage = true },
        messages = { { role = "user", content = "x" } } }
      assert.equal(200, res.status)
      assert.matches("^text/event%-stream", res.headers["content-type"])
      local data = sse(res)
      assert.equal("[DONE]", data[#data])
      local text, finish, usage = {}, nil, nil
      for i = 1, #data - 1 do
        local c = json.decode(data[i])
        assert.equal("chat.completion.chunk", c.object)
        if c.choices[1] and c.choices[1].delta.content then text[#text + 1] = c.choices[1].delta.content end
        if c.choices[1] and c.choices[1].finish_reason ~= json.null then finish = c.choices[1].finish_reason end
        if c.usage and c.usage ~= json.null then usage = c.usage end
      end
      assert.equal("all at once", table.concat(text))
      assert.equal("length", finish)
      assert.equal(4, usage.completion_tokens)
      -- Anthropic client, OpenAI upstream
      mock:queue { oa_whole }
      res = messages { model = "gpt-test", max_tokens = 5, stream = true, messages = { { role = "user", content = "x" } } }
      local adata, events = sse(res)
      assert.equal("message_start", events[1])
      assert.equal("message_stop", events[#events])
      local atext = {}
      for i, d in ipairs(adata) do
        if events[i] == "content_block_delta" then atext[#atext + 1] = json.decode(d).delta.text end
      end
      assert.equal("all at once", table.concat(atext))
      -- OpenAI client, Anthropic upstream
      mock:queue { { json = { id = "msg_whole", type = "message", role = "assistant", model = "claude-test",
        content = { { type = "text", text = "whole reply" } }, stop_reason = "end_turn", stop_sequence = json.null,
        usage = { input_tokens = 2, output_tokens = 2 } } } }
      res = chat { model = "claude-test", stream = true, messages = { { role = "user", content = "x" } } }
      data = sse(res)
      assert.equal("[DONE]", data[#data])
      text = {}
      for i = 1, #data - 1 do
        local c = json.decode(data[i])
        if c.choices[1] and c.choices[1].delta.content then text[#text + 1] = c.choices[1].delta.content end
      end
      assert.equal("whole reply", table.concat(text))
      -- a JSON answer that is not one: a 502 in the client's format (the
      -- stream had not started), not a hang or a crash
      mock:queue { { body = "{not json", headers = { ["content-type"] = "application/json" } } }
      res = chat { model = "gpt-test", stream = true, messages = { { role = "user", content = "x" } } }
      assert.equal(502, res.status)
      assert.matches("malformed answer", json.decode(res.body).error.message)
    end)

    it("answers 502 for a whole answer that is no answer, passed through or translated", function()
      for _, junk in ipairs { "", "<html>oops</html>", "[1,2,3]", "{not json" } do
        mock:queue { { body = junk } }
        local res = chat { model = "gpt-test", messages = { { role = "user", content = "x" } } }
        assert.equal(502, res.status)
        assert.matches("malformed answer from upstream", json.decode(res.body).error.message)
      end
      -- shapes the adapters do not expect: 502, not a gateway fault
      mock:queue { { json = { choices = { 5 } } } }
      local res = messages { model = "gpt-test", max_tokens = 5, messages = { { role = "user", content = "x" } } }
      assert.equal(502, res.status)
      assert.equal("malformed answer from upstream", json.decode(res.body).error.message)
      mock:queue { { json = { type = "message", content = { 5, "x" } } } }
      res = chat { model = "claude-test", messages = { { role = "user", content = "x" } } }
      assert.equal(502, res.status)
      mock:queue { { frames = { oa_chunk({ tool_calls = { 5 } }), { data = "[DONE]" } } } }
      res = messages { model = "gpt-test", max_tokens = 5, stream = true, messages = { { role = "user", content = "x" } } }
      assert.equal(502, res.status) -- the first frame: nothing had reached the client
      assert.equal("malformed answer from upstream", json.decode(res.body).error.message)
    end)

    it("answers 400 for a request that cannot be sent upstream (nesting past the limit)", function()
      -- a tool call's arguments (a string to an OpenAI client) become an
      -- object in the Anthropic request, five levels down: 196 levels fit
      -- the parser's limit of 200 alone, not there
      local deep = '{"type":"string"}'
      for _ = 1, 196 do deep = '{"type":"array","items":' .. deep .. '}' end
      local body = json.encode { model = "claude-test", messages = { { role = "user", content = "x" },
        { role = "assistant", tool_calls = { { id = "c1", type = "function", ["function"] = { name = "f", arguments = deep } } } },
        { role = "tool", tool_call_id = "c1", content = "ok" } } }
      local res = assert(server:request("POST", "/v1/chat/completions", body))
      assert.equal(400, res.status)
      assert.matches("cannot be sent upstream", json.decode(res.body).error.message)
      assert.equal(0, #mock:requests())
      -- an Anthropic client's tool schema that deep goes as the client wrote
      -- it (docs/TRANSLATION.md, "Carried as written"): the upstream judges
      body = '{"model":"gpt-test","max_tokens":5,"tools":[{"name":"f","input_schema":' .. deep
        .. '}],"messages":[{"role":"user","content":"x"}]}'
      res = assert(server:request("POST", "/v1/messages", body))
      assert.equal(200, res.status)
      assert.matches('"parameters":' .. deep, mock:requests()[1].body, 1, true)
      mock:reset()
      -- counting tokens on passthrough: the client's bytes go as they came
      -- (a number JSON-in-Lua cannot carry included), the upstream judges
      local count = '{"model":"claude-test","tools":[{"name":"f",'
        .. '"input_schema":{"type":"object","maximum":1e999}}],"messages":[{"role":"user","content":"x"}]}'
      mock:queue { { json = { input_tokens = 9 } } }
      res = assert(server:request("POST", "/v1/messages/count_tokens", count))
      assert.equal(200, res.status)
      assert.equal(count, mock:requests()[1].body)
    end)

    it("answers 502 for a stream frame over 16 MiB as soon as it passes the limit, and does not retry", function()
      mock:queue { { frames = { { pad = 17 * 1024 * 1024 }, { delay_ms = 10000, data = "{}" } } } }
      local t0 = uv.hrtime()
      local res = chat { model = "gpt-test", stream = true, messages = { { role = "user", content = "x" } } }
      assert.equal(502, res.status)
      assert.matches("frame is over 16 MiB", json.decode(res.body).error.message)
      assert.is_true((uv.hrtime() - t0) / 1e6 < 5000) -- not the mock's 10 s
      assert.equal(1, #mock:requests()) -- not retried: it would come back as big
    end)

    it("passes an upstream's error frame through as the end of the stream, once", function()
      mock:queue { { frames = { oa_chunk({ role = "assistant", content = "par" }), oa_chunk({ content = "tial" }),
        { json = { error = { message = "overloaded", type = "server_error" } } } } } }
      local res = chat { model = "gpt-test", stream = true, messages = { { role = "user", content = "x" } } }
      local data = sse(res)
      assert.equal(3, #data)
      assert.equal("overloaded", json.decode(data[3]).error.message)
      mock:queue { { frames = {
        { event = "message_start", json = { type = "message_start", message = { id = "m", type = "message", role = "assistant",
          model = "m", content = {}, usage = { input_tokens = 1, output_tokens = 1 } } } },
        { event = "content_block_start", json = { type = "content_block_start", index = 0, content_block = { type = "text", text = "" } } },
        { event = "error", json = { type = "error", error = { type = "overloaded_error", message = "Overloaded" } } } } } }
      res = messages { model = "claude-test", max_tokens = 5, stream = true, messages = { { role = "user", content = "x" } } }
      local _, events = sse(res)
      assert.same({ "message_start", "content_block_start", "error" }, events)
      -- vLLM's shape of an error frame
      mock:queue { { frames = { oa_chunk({ role = "assistant", content = "a" }),
        { data = '{"object": "error", "message": "out of memory", "code": 500}' } } } }
      data = sse(chat { model = "gpt-test", stream = true, messages = { { role = "user", content = "x" } } })
      assert.equal(2, #data)
      assert.equal("out of memory", json.decode(data[2]).message)
    end)

    it("streams an SSE stream that its server mislabels as JSON", function()
      mock:queue { { headers = { ["content-type"] = "application/json" },
        frames = { oa_chunk({ role = "assistant", content = "still " }), oa_chunk({ content = "streams" }),
          oa_chunk({}, "stop"), { data = "[DONE]" } } } }
      local data = sse(chat { model = "gpt-test", stream = true, messages = { { role = "user", content = "x" } } })
      assert.equal("[DONE]", data[#data])
      assert.equal("streams", json.decode(data[2]).choices[1].delta.content)
    end)

    it("ends a stream with a malformed frame with an error event", function()
      mock:queue { { frames = { oa_chunk({ role = "assistant", content = "ok " }), { data = "{not json" } } } }
      local res = chat { model = "gpt-test", stream = true, messages = { { role = "user", content = "x" } } }
      local data = sse(res)
      assert.matches("ok ", res.body, 1, true)
      assert.matches("malformed", json.decode(data[#data]).error.message)
    end)

    it("times out an upstream that does not answer, and one that goes quiet", function()
      mock:queue { { delay_ms = 2000, json = {} } }
      local res = chat { model = "quick", messages = { { role = "user", content = "x" } } }
      assert.equal(504, res.status)
      mock:queue { { frames = { oa_chunk({ role = "assistant", content = "a" }), oa_chunk({ content = "b" }, nil), { data = "[DONE]", delay_ms = 2000 } } } }
      res = chat { model = "quick", stream = true, messages = { { role = "user", content = "x" } } }
      assert.matches("idle", json.decode(sse(res)[#sse(res)]).error.message)
    end)

    it("answers a client that shut its side once its request was sent (a half-close), whole and streamed", function()
      mock:queue { { delay_ms = 300, json = { id = "c", object = "chat.completion", created = 1, model = "m",
        choices = { { index = 0, message = { role = "assistant", content = "still here" }, finish_reason = "stop" } } } },
        { delay_ms = 300, frames = { oa_chunk({ role = "assistant", content = "stream" }), oa_chunk({}, "stop"), { data = "[DONE]" } } } }
      for _, stream in ipairs { false, true } do
        local c = server:connect()
        c:send(client.request_bytes("POST", "/v1/chat/completions", json.encode {
          model = "gpt-test", stream = stream, messages = { { role = "user", content = "x" } } }))
        local shut = false
        c.tcp:shutdown(function() shut = true end)
        assert.truthy(c:wait(function(cc) return shut and cc.eof end, 5000), "the daemon never closed")
        -- (an interim answer first: the daemon's look whether the socket is still there)
        assert.matches("^HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200", c.buf)
        assert.truthy(c.buf:find(stream and '"content":"stream"' or '"content":"still here"', 1, true), c.buf)
        if stream then assert.truthy(c.buf:find("data: [DONE]", 1, true)) end
        c:close()
      end
    end)

    it("closes the upstream connection within 100 ms of the client going away", function()
      mock:queue { { frames = { oa_chunk({ role = "assistant", content = "a" }), oa_chunk({ content = "b" }, nil, nil),
        { data = "[DONE]", delay_ms = 10000 } } } }
      local c = server:connect()
      c:send(client.request_bytes("POST", "/v1/chat/completions", json.encode {
        model = "gpt-test", stream = true, messages = { { role = "user", content = "x" } } }))
      assert.truthy(c:wait(function(cc) return cc.buf:find('"content":"b"', 1, true) end, 5000))
      local s, us = uv.gettimeofday()
      local closed_at = s * 1000 + us / 1000
      c:close()
      local seen
      assert.truthy(client.run_until(function()
        seen = mock:requests()[1]
        return seen and seen.closed_at_ms
      end, 3000))
      local gap = seen.closed_at_ms - closed_at
      assert.is_true(gap < 100, string.format("upstream closed %.1f ms after the client", gap))
    end)

    it("sends requests in turn over one upstream connection, and a new one once the upstream hung up", function()
      local body = { model = "gpt-test", messages = { { role = "user", content = "x" } } }
      for _ = 1, 4 do assert.equal(200, chat(body).status) end
      mock:queue { { json = { id = "c", object = "chat.completion", created = 1, model = "gpt-test",
        choices = { { index = 0, message = { role = "assistant", content = "bye" }, finish_reason = "stop" } } },
        close = true } }
      local res = chat(body)
      assert.equal(200, res.status)
      assert.equal("bye", json.decode(res.body).choices[1].message.content)
      client.run_until(function() return false end, 100) -- the hang-up reaches the idle connection
      assert.equal(200, chat(body).status)
      local seen = mock:requests()
      assert.equal(6, #seen)
      for i = 2, 5 do assert.equal(seen[1].conn, seen[i].conn) end
      assert.not_equal(seen[5].conn, seen[6].conn)
    end)

    it("never logs the keys", function()
      assert.not_matches("sk%-up%-secret", server.log)
      assert.not_matches("sk%-ant%-secret", server.log)
    end)
  end)
end)

-- Out of descriptors: curl alone would say "couldn't connect"; the log says
-- why, the client gets a 502 in its format, and the daemon serves on once
-- descriptors are free again.
describe("an exhausted open file limit", function()
  local up = helpers.upstream_fixture()

  local function fds()
    local server = up.server
    local p = io.popen("ls /proc/" .. server.pid .. "/fd | wc -l")
    local n = tonumber(p:read("*a"))
    p:close()
    return n
  end
  local function limit(n)
    local server = up.server
    assert(os.execute(string.format("prlimit --pid %d --nofile=%d:", server.pid, n)) == 0) -- soft only
  end

  it("logs why an upstream connection failed and answers 502", function()
    if os.getenv("MOONGATE_WRAPPER") then return pending("valgrind keeps descriptors of its own") end
    local server, mock = up.server, up.mock
    assert.matches("open file limit %d+", server.log)
    local hold = { frames = { { json = { choices = { { index = 0, delta = { content = "a" } } } } },
      { data = "[DONE]", delay_ms = 1500 } } }
    local scripts = {}
    for i = 1, 12 do scripts[i] = hold end
    mock:queue(scripts)
    local original = io.popen("prlimit --pid " .. server.pid .. " --nofile --raw --noheadings -o SOFT"):read("*a")
    limit(fds() + 8)
    local conns, statuses = {}, {}
    for i = 1, 12 do
      local c = server:connect()
      c:send(client.request_bytes("POST", "/v1/chat/completions", json.encode {
        model = "gpt-test", stream = true, messages = { { role = "user", content = "x" } } }))
      conns[i] = c
    end
    client.run_until(function()
      for _, c in ipairs(conns) do if not (c.eof or c.buf:find("\r\n0\r\n\r\n", 1, true)) then return false end end
      return true
    end, 10000)
    local refused = 0
    for _, c in ipairs(conns) do
      if c.buf:find("^HTTP/1.1 502") then
        refused = refused + 1
        assert.matches("connect", json.decode(c.buf:match("\r\n\r\n(.*)$")).error.message)
      end
      c:close()
    end
    assert.is_true(refused > 0, "no request was refused")
    assert.matches("cannot open an upstream socket: Too many open files %(raise the open file limit%)", server.log)
    limit(tonumber(original))
    mock:reset()
    local res = assert(server:request("POST", "/v1/chat/completions", json.encode {
      model = "gpt-test", messages = { { role = "user", content = "x" } } }))
    assert.equal(200, res.status)
  end)
end)
