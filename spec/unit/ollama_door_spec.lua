-- The Ollama front door without the daemon: what the fixtures
-- (spec/fixtures/frontdoor/ollama) do not say: the endpoint a route
-- decodes for, requests with nothing to ask, created_at and the durations
-- with a clock, lines that stay one line, calls never ended, what a
-- route's provider can do (capabilities, accepts), Ollama's error shape.
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"
local fd = require "moongate.frontdoor.ollama"

local function decode(t, endpoint) return fd.decode(type(t) == "string" and t or json.encode(t), {}, endpoint) end

-- a route whose first provider has an adapter of this format (or none)
local function route(format, kind)
  return { model = "m", chain = { { name = "p", provider = { kind = kind or format, adapter = format and { format = format } or nil } } } }
end

describe("Ollama door: decode", function()
  it("decodes for the endpoint the route says, whatever the body looks like", function()
    local _, err = decode({ model = "m", prompt = "hi" }, "chat")
    assert.equal("prompt", err.param) -- not a chat request's field
    local creq = assert(decode({ model = "m" }, "chat"))
    assert.equal("chat", creq.endpoint)
    assert.is_true(creq.load_only) -- no messages: nothing to ask
    creq = assert(decode({ model = "m", prompt = "hi" }, "generate"))
    assert.equal("generate", creq.endpoint)
    assert.is_nil(creq.load_only)
    assert.equal("hi", canonical.text(creq.messages[1].content))
  end)

  it("marks an empty prompt without images as a load, not with one", function()
    assert.is_true(assert(decode({ model = "m" }, "generate")).load_only)
    assert.is_true(assert(decode({ model = "m", prompt = "" }, "generate")).load_only)
    assert.is_nil(assert(decode({ model = "m", prompt = "", images = { "/9j/AAAA" } }, "generate")).load_only)
  end)

  it("streams unless told not to", function()
    assert.is_true(assert(decode({ model = "m", messages = {} })).stream)
    assert.is_false(assert(decode({ model = "m", stream = false, messages = {} })).stream)
  end)

  it("keeps the lists a tool's schema says are lists in a call's arguments", function()
    local creq = assert(decode({ model = "m",
      tools = { { type = "function", ["function"] = { name = "f", parameters = { type = "object",
        properties = { xs = { type = "array" }, o = { type = "object" } } } } } },
      messages = { { role = "user", content = "q" },
        { role = "assistant", tool_calls = { { ["function"] = { name = "f", arguments = { xs = {}, o = {} } } } } } } }))
    local args = json.decode(creq.messages[2].content[1].arguments)
    local text = creq.messages[2].content[1].arguments
    assert.is_truthy(text:find('"xs":[]', 1, true))
    assert.is_truthy(text:find('"o":{}', 1, true))
    assert.is_table(args)
  end)

  it("takes arguments given as JSON text, and a role in capitals", function()
    local creq = assert(decode({ model = "m", messages = { { role = "USER", content = "q" },
      { role = "Assistant", tool_calls = { { id = "c1", ["function"] = { name = "f", arguments = '{"a":1}' } } } },
      { role = "tool", content = "r" } } }))
    assert.equal('{"a":1}', creq.messages[2].content[1].arguments)
    assert.equal("c1", creq.messages[3].content[1].tool_call_id) -- no name, no id: the first call open
  end)

  it("answers each result of a turn to its own call, in order", function()
    local creq = assert(decode({ model = "m", messages = { { role = "user", content = "q" },
      { role = "assistant", tool_calls = { { ["function"] = { name = "a" } }, { ["function"] = { name = "b" } }, { ["function"] = { name = "a" } } } },
      { role = "tool", tool_name = "a", content = "1" }, { role = "tool", tool_name = "a", content = "2" },
      { role = "tool", tool_name = "b", content = "3" } } }))
    local ids = {}
    for i = 3, 5 do ids[#ids + 1] = creq.messages[i].content[1].tool_call_id end
    assert.same({ "call_1_0", "call_1_2", "call_1_1" }, ids)
  end)

  it("puts a tool message's images in its result", function()
    local creq = assert(decode({ model = "m", messages = { { role = "user", content = "q" },
      { role = "assistant", tool_calls = { { ["function"] = { name = "shot" } } } },
      { role = "tool", tool_name = "shot", content = "", images = { "iVBORw0KGgoAAAA" } } } }))
    local result = creq.messages[3].content[1]
    assert.equal("tool_result", result.type)
    assert.equal("image/png", result.attachments[1].mime)
  end)

  it("refuses num_predict 0 and non-integers by name", function()
    local _, err = decode({ model = "m", options = { num_predict = 0 }, messages = {} })
    assert.equal("options.num_predict", err.param)
    _, err = decode({ model = "m", options = { num_predict = 1.5 }, messages = {} })
    assert.equal("options.num_predict", err.param)
    local creq = assert(decode({ model = "m", options = { num_predict = -1 }, messages = {} }))
    assert.is_nil(creq.max_tokens) -- no limit: the upstream's default
  end)

  it("reads the body's JSON and the model strictly", function()
    local _, err = fd.decode("[1]", {})
    assert.equal(400, err.status)
    _, err = fd.decode("", {})
    assert.equal(400, err.status)
    _, err = fd.decode('{"model":"a","model":"b","messages":[]}', {})
    assert.equal("model", err.param)
    _, err = decode({ model = 3, messages = {} })
    assert.equal("model", err.param)
  end)

  it("notes the fields it drops, and refuses an unknown one on translation too", function()
    local creq = assert(decode({ model = "m", keep_alive = -1, truncate = true, messages = { { role = "user", content = "q", name = "bob" } } }))
    table.sort(creq.dropped)
    assert.same({ "keep_alive", "messages[].name", "truncate" }, creq.dropped)
    creq.raw.brand_new = true -- (as if decode had let it by)
    local ok, err = errors.catch(canonical.foreign_fields, creq, "openai")
    assert.is_false(ok)
    assert.equal("brand_new", err.param)
  end)
end)

describe("Ollama door: answers", function()
  local host = require "moongate.host"
  local saved
  before_each(function() saved = { wall = host.wall, mono = host.mono } end)
  after_each(function() host.use(saved) end)

  -- a host clock that says t seconds (wall) and advances by 1 ms (monotonic) each time it is read
  local function fake_clock(t)
    local ns = 1e9
    host.use { wall = function() return t end, mono = function() ns = ns + 1e6 return ns end }
  end

  it("writes created_at as RFC 3339 in UTC, the fraction trimmed", function()
    assert.equal("2024-07-22T20:33:28.123648Z", fd.rfc3339(1721680408.123648))
    assert.equal("2024-07-22T20:33:28.5Z", fd.rfc3339(1721680408.5))
    assert.equal("2024-07-22T20:33:28Z", fd.rfc3339(1721680408))
    assert.equal("2024-07-22T20:33:29Z", fd.rfc3339(1721680408.9999999))
  end)

  it("measures the durations in whole nanoseconds from the request's decoding", function()
    fake_clock(1721680408.25)
    local creq = assert(decode({ model = "m", messages = { { role = "user", content = "q" } } }))
    local enc = fd.stream_encoder(creq)
    local frames = {}
    for _, ev in ipairs { { type = "start" }, { type = "text_delta", text = "a" }, { type = "usage", input_tokens = 5, output_tokens = 1 },
      { type = "done", reason = "stop" } } do
      for _, f in ipairs(enc:event(ev)) do frames[#frames + 1] = f end
    end
    local last = json.decode(frames[#frames])
    assert.equal("2024-07-22T20:33:28.25Z", last.created_at)
    -- the clock read at decoding, at the first event and at the end, 1 ms apart
    assert.equal(1e6, last.prompt_eval_duration)
    assert.equal(1e6, last.eval_duration)
    assert.equal(2e6, last.total_duration)
    assert.equal(0, last.load_duration)
    assert.equal(5, last.prompt_eval_count)
    assert.is_truthy(frames[#frames]:find('"total_duration":2000000,', 1, true)) -- an integer, as JSON writes it
  end)

  it("keeps every line one line", function()
    local enc = fd.stream_encoder(assert(decode({ model = "m", messages = {} })), { created = 1 })
    local line = enc:event({ type = "text_delta", text = "two\nlines\r\n" })[1]
    assert.is_nil(line:find("[\r\n]"))
    assert.equal("two\nlines\r\n", json.decode(line).message.content)
  end)

  it("sends a call the upstream never ended before the final line", function()
    local enc = fd.stream_encoder(assert(decode({ model = "m", messages = {} })), { created = 1 })
    assert.same({}, enc:event({ type = "toolcall_start", index = 0, id = "c", name = "f" }))
    assert.same({}, enc:event({ type = "toolcall_delta", index = 0, arguments = '{"x":1}' }))
    local out = enc:event({ type = "done", reason = "tool_use" })
    assert.equal(2, #out)
    assert.same({ x = 1 }, json.decode(out[1]).message.tool_calls[1]["function"].arguments)
    assert.equal("stop", json.decode(out[2]).done_reason)
  end)

  it("makes arguments that are no JSON object an empty object", function()
    local col = fd.collector(assert(decode({ model = "m", messages = {} })), { created = 1 })
    col:event({ type = "toolcall_start", index = 0, id = "c", name = "f" })
    col:event({ type = "toolcall_delta", index = 0, arguments = "[1," })
    col:event({ type = "done", reason = "tool_use" })
    local text = json.encode_raw(col:result())
    assert.is_truthy(text:find('"arguments":{}', 1, true))
  end)

  it("answers generate without a context", function()
    local col = fd.collector(assert(decode({ model = "m", prompt = "q", stream = false }, "generate")), { created = 1 })
    col:event({ type = "text_delta", text = "a" })
    col:event({ type = "done", reason = "stop" })
    local r = col:result()
    assert.equal("a", r.response)
    assert.is_nil(r.context)
    assert.is_nil(r.message)
  end)

  it("writes errors as {\"error\": ...}, a missing model in Ollama's words", function()
    assert.equal('{"error":"boom"}', errors.body("ollama", errors.new(500, "boom")))
    local body = errors.body("ollama", errors.new(404, "The model `x:7b` does not exist or you do not have access to it.",
      { code = "model_not_found" }))
    assert.same({ error = "model 'x:7b' not found" }, json.decode(body))
    assert.equal("ollama", errors.client_for_path("/api/chat"))
    local enc = fd.stream_encoder({ model = "m" })
    assert.same({ '{"error":"cut"}' }, enc:error(errors.new(502, "cut")))
  end)
end)

describe("Ollama door: what a route can do", function()
  it("says the capabilities by the first provider's wire format", function()
    for _, f in ipairs { "openai", "anthropic", "responses" } do
      assert.same({ "completion", "tools", "vision", "thinking" }, fd.capabilities(route(f)))
    end
    assert.same({ "completion" }, fd.capabilities(route(nil, "echo")))
    assert.same({ "completion" }, fd.capabilities(route("prompt")))
  end)

  it("refuses what the route cannot do by the field that asks it", function()
    local creq = assert(decode({ model = "m", tools = { { type = "function", ["function"] = { name = "f" } } },
      messages = { { role = "user", content = "q" } } }))
    assert.equal("tools", fd.accepts(creq, route(nil, "echo")).param)
    assert.is_nil(fd.accepts(creq, route("openai")))
    creq = assert(decode({ model = "m", prompt = "q", images = { "R0lGODlh" } }, "generate"))
    assert.equal("images", fd.accepts(creq, route(nil, "ws")).param)
    creq = assert(decode({ model = "m", format = "json", messages = { { role = "user", content = "q" } } }))
    local err = fd.accepts(creq, route("anthropic"))
    assert.equal("format", err.param)
    assert.equal(400, err.status)
    assert.is_nil(fd.accepts(creq, route("openai")))
  end)
end)
