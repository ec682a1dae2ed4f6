-- The rule the gateway translates by, against the real daemon and the mock:
-- on passthrough every role, block and field goes upstream as the client
-- wrote it (a rewritten model alone is spliced in); when translating, each
-- field is mapped, refused with a 400 that names it, or dropped as
-- docs/TRANSLATION.md says. Also: duplicate routing keys, context-length
-- errors in each client's words, count_tokens estimates.
local helpers = require "helpers"
local json = require "moongate.json"

describe("translation rule", function()
  local mock, server
  setup(function()
    mock = helpers.mock()
    server = helpers.start { config = string.format([[
return {
  providers = {
    up = { kind = "openai", base_url = %q, retries = 0 },
    claude = { kind = "anthropic", base_url = %q, retries = 0 },
    resp = { kind = "openai", api = "responses", base_url = %q, retries = 0 },
  },
  routes = {
    { match = "resp-*", provider = "resp" },
    { match = "claude-*", provider = "claude" },
    { match = "big", provider = "claude", model = "claude-big-1" },
    { match = "gpt-test", provider = "up" },
    { match = "*", provider = "up" },
  },
  aliases = { sonnet = "claude-sonnet-4" },
}]], mock.url .. "/v1", mock.url, mock.url .. "/v1") }
  end)
  teardown(function()
    if server then server:stop_clean() end
    if mock then mock:stop() end
  end)
  before_each(function() mock:reset() end)

  local beta = "claude-code-20250219,mid-conversation-system-2026-04-07"
  local function post(path, body, headers)
    return assert(server:request("POST", path, type(body) == "string" and body or json.encode(body), headers, 15000))
  end

  -- a request as Claude Code sends it: system messages among the others,
  -- a PDF, blocks and fields only Anthropic's servers know
  local cc_body = '{"model":"claude-sonnet-4","max_tokens":64000,"system":[{"type":"text","text":"You are Claude Code."}],'
    .. '"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},'
    .. '{"role":"system","content":"The user changed directory."},'
    .. '{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0xLjQK"}},'
    .. '{"type":"text","text":"read this","cache_control":{"type":"ephemeral","ttl":"1h"}}]}],'
    .. '"context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},'
    .. '"thinking":{"type":"adaptive"},"output_config":{"effort":"high"},"metadata":{"user_id":"u1"},'
    .. '"tools":[{"name":"f","input_schema":{"type":"object","properties":{},"required":[],"maximum":12345678901234567890}}]}'

  it("passes an Anthropic client's request to an Anthropic upstream byte for byte", function()
    local res = post("/v1/messages", cc_body, { ["anthropic-beta"] = beta })
    assert.equal(200, res.status)
    local got = mock:requests()[1]
    assert.equal(cc_body, got.body)
    assert.equal(beta, got.headers["anthropic-beta"])
  end)

  it("splices a rewritten model into the client's bytes and changes nothing else", function()
    local body = cc_body:gsub('"model":"claude%-sonnet%-4"', '"model" : "sonnet"')
    local res = post("/v1/messages", body, { ["anthropic-beta"] = beta })
    assert.equal(200, res.status)
    assert.equal(cc_body:gsub('"model":"claude%-sonnet%-4"', '"model" : "claude-sonnet-4"'), mock:requests()[1].body)
    mock:reset()
    body = cc_body:gsub('"model":"claude%-sonnet%-4"', '"model":"big"')
    assert.equal(200, post("/v1/messages", body, { ["anthropic-beta"] = beta }).status)
    assert.equal(cc_body:gsub('"model":"claude%-sonnet%-4"', '"model":"claude-big-1"'), mock:requests()[1].body)
  end)

  it("translates the same request for an OpenAI upstream, dropping only what the docs list", function()
    local body = cc_body:gsub('"model":"claude%-sonnet%-4"', '"model":"gpt-test"')
    local res = post("/v1/messages", body, { ["anthropic-beta"] = beta })
    assert.equal(200, res.status)
    local up = json.decode(mock:requests()[1].body)
    assert.equal("/v1/chat/completions", mock:requests()[1].path)
    assert.same({ role = "system", content = "You are Claude Code." }, up.messages[1])
    assert.same({ role = "system", content = "The user changed directory." }, up.messages[4])
    assert.same({ type = "file", file = { filename = "document.pdf", file_data = "data:application/pdf;base64,JVBERi0xLjQK" } },
      up.messages[5].content[1])
    assert.equal("high", up.reasoning_effort)
    assert.equal("u1", up.user)
    assert.is_nil(up.context_management)
    assert.is_nil(up.thinking)
    assert.is_nil(up.output_config)
    -- the tool's schema goes as the client wrote it: its empty list, every digit
    assert.matches('"parameters":{"type":"object","properties":{},"required":[],"maximum":12345678901234567890}',
      mock:requests()[1].body, 1, true)
  end)

  it("carries tool schemas and tool results' text to an OpenAI upstream as the client wrote them", function()
    local schema = [[{ "type": "object", "properties": { "path": { "type": "string", "description": "a\/b \u00e9" } },
 "required": ["path"] }]]
    local result = [["line 1\nline \"2\" caf\u00e9 \/ \ud83d\ude00"]]
    local body = '{"model":"gpt-test","max_tokens":64,"tools":[{"name":"read","input_schema":' .. schema .. '}],'
      .. '"messages":[{"role":"user","content":"read it"},{"role":"assistant","content":[{"type":"tool_use",'
      .. '"id":"toolu_1","name":"read","input":{"path":"a.txt"}}]},{"role":"user","content":[{"type":"tool_result",'
      .. '"tool_use_id":"toolu_1","content":' .. result .. '},{"type":"text","text":"and now?"}]}]}'
    assert.equal(200, post("/v1/messages", body).status)
    local sent = mock:requests()[1].body
    assert.matches('"parameters":' .. schema, sent, 1, true)
    assert.matches('"content":' .. result, sent, 1, true)
    local up = json.decode(sent)
    assert.same({ role = "tool", tool_call_id = "toolu_1", content = 'line 1\nline "2" café / 😀' }, up.messages[3])
    assert.equal("a/b é", up.tools[1]["function"].parameters.properties.path.description)
    -- the answer's tool call is typed by that schema (read now, decoded)
    mock:reset()
    mock:queue { { json = { id = "c1", object = "chat.completion", created = 1, model = "gpt-test",
      choices = { { index = 0, finish_reason = "tool_calls", message = { role = "assistant", content = json.null,
        tool_calls = { { id = "call_1", type = "function", ["function"] = { name = "read", arguments = '{"path":"b.txt"}' } } } } } },
      usage = { prompt_tokens = 3, completion_tokens = 2, total_tokens = 5 } } } }
    local res = post("/v1/messages", body)
    assert.equal(200, res.status)
    local answer = json.decode(res.body)
    assert.same({ path = "b.txt" }, answer.content[1].input)
  end)

  it("carries a system prompt as the client wrote it, and joins several in their words", function()
    local sys = [["be \u0062rief \/ caf\u00e9"]]
    -- an Anthropic client's string system prompt to an OpenAI upstream
    assert.equal(200, post("/v1/messages", '{"model":"gpt-test","max_tokens":9,"system":' .. sys
      .. ',"messages":[{"role":"user","content":"hi"}]}').status)
    assert.matches('"content":' .. sys, mock:requests()[1].body, 1, true)
    assert.same({ role = "system", content = "be brief / café" }, json.decode(mock:requests()[1].body).messages[1])
    -- an OpenAI client's system message to an Anthropic upstream
    mock:reset()
    assert.equal(200, post("/v1/chat/completions", '{"model":"claude-test","max_tokens":9,"messages":[{"role":"system",'
      .. '"content":' .. sys .. '},{"role":"user","content":"hi"}]}').status)
    assert.matches('"system":' .. sys, mock:requests()[1].body, 1, true)
    -- two system messages, an empty one, and one later in the conversation: words, joined
    mock:reset()
    assert.equal(200, post("/v1/chat/completions", '{"model":"claude-test","max_tokens":9,"messages":[{"role":"system",'
      .. '"content":' .. sys .. '},{"role":"developer","content":"and \\u0074wo"},{"role":"system","content":""},'
      .. '{"role":"user","content":"hi"},{"role":"system","content":"la\\u0074er"}]}').status)
    local up = json.decode(mock:requests()[1].body)
    assert.equal("be brief / café\n\nand two\n\n\n\nlater", up.system)
    -- an empty one alone is none
    mock:reset()
    assert.equal(200, post("/v1/chat/completions", '{"model":"claude-test","max_tokens":9,"messages":[{"role":"system",'
      .. '"content":""},{"role":"user","content":"hi"}]}').status)
    assert.is_nil(json.decode(mock:requests()[1].body).system)
  end)

  it("carries an OpenAI client's tool schemas and tool messages' text to an Anthropic upstream as written", function()
    local schema = [[{ "type": "object", "properties": { "q": { "type": "string", "maxLength": 12345678901234567890 } } }]]
    local result = [["found: caf\u00e9 \/ \"x\""]]
    local body = '{"model":"claude-test","max_tokens":64,"tools":[{"type":"function","function":{"name":"search",'
      .. '"parameters":' .. schema .. '}}],"messages":[{"role":"user","content":"look"},{"role":"assistant",'
      .. '"content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"search","arguments":"{\\"q\\":\\"x\\"}"}}]},'
      .. '{"role":"tool","tool_call_id":"call_1","content":' .. result .. '},{"role":"user","content":"and?"}]}'
    local res = post("/v1/chat/completions", body)
    assert.equal(200, res.status)
    local sent = mock:requests()[1].body
    assert.equal("/v1/messages", mock:requests()[1].path)
    assert.matches('"input_schema":' .. schema, sent, 1, true)
    assert.matches('"content":' .. result, sent, 1, true)
    local up = json.decode(sent)
    assert.same({ type = "tool_result", tool_use_id = "call_1", content = 'found: café / "x"' }, up.messages[3].content[1])
    assert.same({ q = "x" }, up.messages[2].content[1].input)
  end)

  it("writes a strict tool's schema to a Responses upstream as the client wrote it, after judging it", function()
    local schema = '{"type":"object","properties":{},"required":[],"additionalProperties":false,"maxProperties":12345678901234567890}'
    local body = '{"model":"resp-test","max_tokens":10,"tools":[{"name":"noargs","strict":true,"input_schema":' .. schema
      .. '}],"messages":[{"role":"user","content":"hi"}]}'
    local res = post("/v1/messages", body)
    assert.equal(200, res.status)
    local got = mock:requests()[1]
    assert.equal("/v1/responses", got.path)
    assert.matches('"parameters":' .. schema, got.body, 1, true)
    assert.is_true(json.decode(got.body).tools[1].strict) -- (judged: every object closed, every property required)
  end)

  it("refuses by name what an upstream of the other format cannot serve, and sends nothing", function()
    local res = post("/v1/chat/completions", { model = "claude-test", n = 3, messages = { { role = "user", content = "x" } } })
    assert.equal(400, res.status)
    local e = json.decode(res.body).error
    assert.equal("n", e.param)
    assert.matches("one choice per request", e.message)
    res = post("/v1/messages", { model = "gpt-test", max_tokens = 5, messages = { { role = "user", content = {
      { type = "container_upload", file_id = "f" } } } } })
    assert.equal(400, res.status)
    e = json.decode(res.body)
    assert.equal("invalid_request_error", e.error.type)
    assert.matches("^messages%.0%.content%.0: a container_upload", e.error.message)
    assert.equal(0, #mock:requests())
  end)

  it("passes roles and blocks it does not know to an upstream of the client's format", function()
    local body = '{"model":"gpt-test","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"UklG","format":"wav"}},'
      .. '{"type":"file","file":{"file_id":"file-1"}}]}]}'
    assert.equal(200, post("/v1/chat/completions", body).status)
    assert.equal(body, mock:requests()[1].body)
  end)

  it("splices a model suffix's effort into the client's bytes", function()
    local body = '{"model":"gpt-test-high","seed":1234567890123456789,"stop":[],"messages":[{"role":"user","name":"ann","content":"x"}]}'
    assert.equal(200, post("/v1/chat/completions", body).status)
    assert.equal('{"reasoning_effort":"high","model":"gpt-test","seed":1234567890123456789,"stop":[],'
      .. '"messages":[{"role":"user","name":"ann","content":"x"}]}', mock:requests()[1].body)
  end)

  it("passes tool kinds it does not translate to an upstream of the client's format", function()
    local body = '{"model":"gpt-test","messages":[{"role":"user","content":"x"}],"tools":[{"type":"custom","custom":{"name":"c"}}],'
      .. '"tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"auto","tools":[{"type":"custom","custom":{"name":"c"}}]}}}'
    assert.equal(200, post("/v1/chat/completions", body).status)
    assert.equal(body, mock:requests()[1].body)
    mock:reset()
    body = '{"model":"claude-test","max_tokens":5,"messages":[{"role":"user","content":"x"}],'
      .. '"mcp_servers":[{"type":"url","url":"https://mcp.example/sse","name":"srv"}],"tools":[{"type":"mcp_toolset","mcp_server_name":"srv"}]}'
    local res = post("/v1/messages", body, { ["anthropic-beta"] = "mcp-client-2025-11-20" })
    assert.equal(body, mock:requests()[1] and mock:requests()[1].body)
    assert.not_equal(500, res.status)
  end)

  it("answers 502, not silence, when an answer cannot be written in the client's format", function()
    mock:queue { { body = '{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
      .. '"message":{"role":"assistant","content":null,"tool_calls":[{"id":"t","type":"function","function":'
      .. '{"name":"f","arguments":"{\\"n\\": 1e999}"}}]},"finish_reason":"tool_calls"}]}', headers = { ["content-type"] = "application/json" } } }
    local res = post("/v1/messages", { model = "gpt-test", max_tokens = 5, tools = { { name = "f", input_schema = { type = "object" } } },
      messages = { { role = "user", content = "x" } } })
    assert.equal(502, res.status)
    assert.equal("api_error", json.decode(res.body).error.type)
  end)

  it("refuses in count_tokens what a translation would refuse", function()
    local res = post("/v1/messages/count_tokens", { model = "gpt-test", messages = { { role = "tool", content = "x" } } })
    assert.equal(400, res.status)
    assert.matches("messages.0.role", json.decode(res.body).error.message, 1, true)
  end)

  it("answers 400 to a body that names model or stream twice", function()
    local res = post("/v1/chat/completions", '{"model":"gpt-test","messages":[{"role":"user","content":"x"}],"model":"claude-test"}')
    assert.equal(400, res.status)
    assert.equal("model", json.decode(res.body).error.param)
    res = post("/v1/messages", '{"model":"claude-test","max_tokens":5,"stream":false,"messages":[{"role":"user","content":"x"}],"str\\u0065am":true}')
    assert.equal(400, res.status)
    assert.matches("^stream: the field is given twice", json.decode(res.body).error.message)
    -- the same name inside the body is no duplicate
    res = post("/v1/chat/completions", '{"model":"gpt-test","messages":[{"role":"user","content":"\\"model\\": x"}],"metadata":{"model":"y"}}')
    assert.equal(200, res.status)
    assert.equal(0 + 1, #mock:requests())
  end)

  it("tells each client a context overflow in its own API's words", function()
    mock:queue { { status = 400, json = { error = { message = "This model's maximum context length is 128000 tokens. "
      .. "However, your messages resulted in 130512 tokens. Please reduce the length of the messages.",
      type = "invalid_request_error", param = "messages", code = "context_length_exceeded" } } } }
    local res = post("/v1/messages", { model = "gpt-test", max_tokens = 5, messages = { { role = "user", content = "long" } } })
    assert.equal(400, res.status)
    local e = json.decode(res.body)
    assert.same({ type = "error", error = { type = "invalid_request_error",
      message = "prompt is too long: 130512 tokens > 128000 maximum" } }, e)
    mock:queue { { status = 400, json = { type = "error", error = { type = "invalid_request_error",
      message = "prompt is too long: 210000 tokens > 200000 maximum" } } } }
    res = post("/v1/chat/completions", { model = "claude-test", messages = { { role = "user", content = "long" } } })
    assert.equal(400, res.status)
    e = json.decode(res.body).error
    assert.equal("context_length_exceeded", e.code)
    assert.equal("invalid_request_error", e.type)
    assert.equal("This model's maximum context length is 200000 tokens. However, your messages resulted in 210000 tokens. Please reduce the length of the messages.", e.message)
    -- a server that says it in other words (llama.cpp's fields)
    mock:queue { { status = 400, json = { error = { code = 400, type = "exceed_context_size_error",
      message = "the request exceeds the available context size, try increasing it", n_prompt_tokens = 9000, n_ctx = 8192 } } } }
    res = post("/v1/messages", { model = "gpt-test", max_tokens = 5, messages = { { role = "user", content = "long" } } })
    assert.equal("prompt is too long: 9000 tokens > 8192 maximum", json.decode(res.body).error.message)
    -- and to an OpenAI client of that server, OpenAI's code
    mock:queue { { status = 400, json = { error = { code = 400, type = "BadRequestError",
      message = "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion)." } } } }
    res = post("/v1/chat/completions", { model = "gpt-test", messages = { { role = "user", content = "long" } } })
    e = json.decode(res.body).error
    assert.equal("context_length_exceeded", e.code)
    assert.matches("maximum context length is 4096 tokens. However, your messages resulted in 5000 tokens", e.message, 1, true)
  end)

  it("estimates count_tokens over the system prompt and the tools too", function()
    local msgs = { { role = "user", content = "count me" } }
    local function count(extra)
      local body = { model = "gpt-test", messages = msgs }
      for k, v in pairs(extra) do body[k] = v end
      local res = post("/v1/messages/count_tokens", body)
      assert.equal(200, res.status)
      return json.decode(res.body).input_tokens
    end
    local plain = count {}
    local with_system = count { system = string.rep("word ", 100) }
    local with_tools = count { tools = { { name = "read_file", description = string.rep("reads a file ", 20),
      input_schema = { type = "object", properties = { path = { type = "string" } } } } } }
    assert.is_true(with_system >= plain + 100, with_system .. " vs " .. plain)
    assert.is_true(with_tools >= plain + 60, with_tools .. " vs " .. plain)
    assert.equal(0, #mock:requests())
  end)
end)
