-- The Ollama front door against the real daemon and the strict mock
-- upstream: the NDJSON lines of /api/chat and /api/generate field by
-- field (the final one included), whole answers, a tool call round trip,
-- a failure mid-stream as an error line, each endpoint (tags, show,
-- version, ps, HEAD /), and errors in Ollama's shape.
local helpers = require "helpers"
local json = require "moongate.json"

-- lines(body) -> each NDJSON line, decoded (asserting it parses)
local function lines(body)
  local out = {}
  for l in body:gmatch("([^\n]*)\n") do
    local v = json.decode(l)
    assert(type(v) == "table", "a line that is no JSON object: " .. l)
    out[#out + 1] = v
  end
  assert.equal("\n", body:sub(-1)) -- every line ends
  return out
end

local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local RFC3339 = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.?%d*Z$"
local durations = { "total_duration", "load_duration", "prompt_eval_duration", "eval_duration" }

-- the checks every final line passes: done, its reason, integer counts and durations
local function final_line(l, reason, prompt, eval)
  assert.is_true(l.done)
  assert.equal(reason, l.done_reason)
  assert.equal(prompt, l.prompt_eval_count)
  assert.equal(eval, l.eval_count)
  for _, k in ipairs(durations) do
    assert.is_number(l[k], k)
    assert.equal(0, l[k] % 1, k .. " is an integer")
    assert.is_true(l[k] >= 0, k)
  end
  assert.is_true(l.total_duration > 0)
  assert.equal(l.total_duration, l.prompt_eval_duration + l.eval_duration)
end

describe("Ollama front door", function()
  local mock, server
  setup(function()
    mock = helpers.mock()
    server = helpers.start { config = string.format([[
return {
  providers = {
    up = { kind = "openai", base_url = %q, retries = 0 },
    claude = { kind = "anthropic", base_url = %q, retries = 0 },
  },
  routes = {
    { match = "claude-test", provider = "claude" },
    { match = "gpt-test", provider = "up" },
  },
}]], mock.url .. "/v1", mock.url) }
  end)
  teardown(function()
    if server then server:stop_clean() end
    if mock then mock:stop() end
  end)
  before_each(function() mock:reset() end)

  local function post(path, body)
    return assert(server:request("POST", path, type(body) == "string" and body or json.encode(body), nil, 15000))
  end
  local function sent() local api = mock:received() return api[#api].json end

  for _, model in ipairs { "gpt-test", "claude-test" } do
    describe("to " .. model, function()
      it("streams /api/chat as NDJSON, every line and the final one field by field", function()
        mock:queue { { reply = { thinking = "Pondering it", text = "Hello there friend" } } }
        local res = post("/api/chat", { model = model, think = true,
          messages = { { role = "system", content = "Be kind." }, { role = "user", content = "hi" } } })
        assert.equal(200, res.status)
        assert.equal("application/x-ndjson", res.headers["content-type"])
        local ls = lines(res.body)
        assert.is_true(#ls >= 3)
        local text, thinking = {}, {}
        for i = 1, #ls - 1 do
          local l = ls[i]
          assert.same({ "created_at", "done", "message", "model" }, keys(l))
          assert.equal(model, l.model)
          assert.is_truthy(l.created_at:find(RFC3339), l.created_at)
          assert.is_false(l.done)
          assert.equal("assistant", l.message.role)
          assert.is_string(l.message.content)
          text[#text + 1] = l.message.content
          thinking[#thinking + 1] = l.message.thinking
        end
        assert.equal("Hello there friend", table.concat(text))
        assert.equal("Pondering it", table.concat(thinking))
        local last = ls[#ls]
        assert.same({ "created_at", "done", "done_reason", "eval_count", "eval_duration", "load_duration", "message",
          "model", "prompt_eval_count", "prompt_eval_duration", "total_duration" }, keys(last))
        assert.same({ role = "assistant", content = "" }, last.message)
        assert.is_truthy(last.created_at:find(RFC3339))
        final_line(last, "stop", 7, 3)
        -- upstream: streamed, the system prompt and the thinking asked for
        local up = sent()
        assert.is_true(up.stream)
        if model == "gpt-test" then
          assert.equal("Be kind.", up.messages[1].content)
          assert.equal("medium", up.reasoning_effort)
        else
          assert.equal("Be kind.", up.system)
          assert.equal("enabled", up.thinking.type)
        end
      end)

      it("answers stream: false with one JSON object", function()
        mock:queue { { reply = { text = "one two", stop = model == "gpt-test" and "length" or "max_tokens" } } }
        local res = post("/api/chat", { model = model, stream = false, options = { num_predict = 2, temperature = 0.5,
          top_p = 0.9, stop = { "END" }, seed = 3, num_ctx = 4096 }, messages = { { role = "user", content = "hi" } } })
        assert.equal(200, res.status)
        assert.equal("application/json", res.headers["content-type"])
        local v = json.decode(res.body)
        assert.same({ role = "assistant", content = "one two" }, v.message)
        assert.equal(model, v.model)
        final_line(v, "length", 7, 2)
        local up = sent()
        assert.is_nil(up.stream)
        assert.equal(2, up.max_tokens)
        assert.equal(0.5, up.temperature)
        assert.equal(0.9, up.top_p)
        assert.same({ "END" }, model == "gpt-test" and up.stop or up.stop_sequences)
        assert.is_nil(up.num_ctx)
      end)

      it("carries a tool call as a whole line with object arguments, and its result back by tool_name", function()
        local tools = { { type = "function", ["function"] = { name = "get_weather", description = "Weather",
          parameters = { type = "object", properties = { city = { type = "string" } }, required = { "city" } } } } }
        mock:queue { { reply = { tool_calls = { { id = "call_up_1", name = "get_weather", input = { city = "Oslo" } } } } } }
        local res = post("/api/chat", { model = model, tools = tools, messages = { { role = "user", content = "Weather in Oslo?" } } })
        assert.equal(200, res.status)
        local ls = lines(res.body)
        local calls = {}
        for _, l in ipairs(ls) do
          for _, c in ipairs(l.message.tool_calls or {}) do calls[#calls + 1] = c end
        end
        assert.equal(1, #calls)
        assert.equal("get_weather", calls[1]["function"].name)
        assert.same({ city = "Oslo" }, calls[1]["function"].arguments) -- an object, not a string
        assert.equal(0, calls[1]["function"].index)
        assert.equal("stop", ls[#ls].done_reason)
        -- the round trip: the call as the client keeps it (no id), the result by name
        mock:queue { { reply = { text = "It is sunny." } } }
        res = post("/api/chat", { model = model, stream = false, tools = tools, messages = {
          { role = "user", content = "Weather in Oslo?" },
          { role = "assistant", content = "", tool_calls = { { ["function"] = calls[1]["function"] } } },
          { role = "tool", tool_name = "get_weather", content = "sunny" } } })
        assert.equal(200, res.status, res.body)
        assert.equal("It is sunny.", json.decode(res.body).message.content)
        local up = sent()
        if model == "gpt-test" then
          local call_id = up.messages[2].tool_calls[1].id
          assert.equal(call_id, up.messages[3].tool_call_id)
          assert.equal("sunny", up.messages[3].content)
        else
          local use, result = helpers.tool_turn(up.messages)
          assert.equal(use.id, result.tool_use_id)
          assert.same({ city = "Oslo" }, use.input)
        end
      end)

      it("sends images as the upstream's image blocks", function()
        local png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
        local res = post("/api/chat", { model = model, stream = false,
          messages = { { role = "user", content = "What is it?", images = { png } } } })
        assert.equal(200, res.status, res.body)
        local up = sent()
        local parts = up.messages[#up.messages].content
        if model == "gpt-test" then
          assert.equal("data:image/png;base64," .. png, parts[2].image_url.url)
        else
          assert.same({ type = "base64", media_type = "image/png", data = png }, parts[2].source)
        end
      end)

      it("streams /api/generate with response lines and the final counts", function()
        local res = post("/api/generate", { model = model, prompt = "echo these words", system = "Repeat." })
        assert.equal(200, res.status)
        assert.equal("application/x-ndjson", res.headers["content-type"])
        local ls = lines(res.body)
        local text = {}
        for i = 1, #ls - 1 do
          assert.same({ "created_at", "done", "model", "response" }, keys(ls[i]))
          text[#text + 1] = ls[i].response
        end
        assert.equal("echo these words", table.concat(text))
        local last = ls[#ls]
        assert.equal("", last.response)
        assert.is_nil(last.context) -- no token context is made
        final_line(last, "stop", 7, 3)
        local up = sent()
        if model == "gpt-test" then assert.equal("Repeat.", up.messages[1].content) else assert.equal("Repeat.", up.system) end
      end)

      it("answers /api/generate stream: false whole", function()
        local res = post("/api/generate", { model = model, prompt = "just this", stream = false })
        assert.equal(200, res.status)
        local v = json.decode(res.body)
        assert.equal("just this", v.response)
        assert.is_true(v.done)
        assert.equal("stop", v.done_reason)
      end)
    end)
  end

  it("ends a stream the upstream breaks with an error line", function()
    local function chunk(text)
      return { json = { id = "c", object = "chat.completion.chunk", created = 1, model = "m",
        choices = { { index = 0, delta = { content = text }, finish_reason = json.null } } } }
    end
    mock:queue { { frames = { chunk("Par"), chunk("tial"), chunk(" more") }, drop_after = 2 } }
    local res = post("/api/chat", { model = "gpt-test", messages = { { role = "user", content = "hi" } } })
    assert.equal(200, res.status)
    local ls = lines(res.body)
    assert.equal("Par", ls[1].message.content)
    local last = ls[#ls]
    assert.same({ "error" }, keys(last))
    assert.is_string(last.error)
    for _, l in ipairs(ls) do assert.is_not_true(l.done) end
  end)

  it("answers a request with nothing to ask at once (done_reason load)", function()
    local v = json.decode(post("/api/chat", { model = "gpt-test", messages = {} }).body)
    assert.same({ role = "assistant", content = "" }, v.message)
    assert.equal("load", v.done_reason)
    v = json.decode(post("/api/generate", { model = "gpt-test:latest" }).body)
    assert.equal("load", v.done_reason)
    assert.equal("gpt-test:latest", v.model)
    assert.equal(0, #mock:received())
  end)

  it("reads a name with :latest as the bare name", function()
    local v = json.decode(post("/api/chat", { model = "gpt-test:latest", stream = false,
      messages = { { role = "user", content = "tagged" } } }).body)
    assert.equal("tagged", v.message.content)
    assert.equal("gpt-test:latest", v.model)
    assert.equal("gpt-test", sent().model)
  end)

  it("lists the routed models at /api/tags", function()
    local res = assert(server:request("GET", "/api/tags"))
    assert.equal(200, res.status)
    local v = json.decode(res.body)
    local names = {}
    for _, m in ipairs(v.models) do
      names[#names + 1] = m.name
      assert.equal(m.name, m.model)
      assert.equal(0, m.size)
      assert.is_truthy(m.digest:find("^%x+$") and #m.digest == 64)
      assert.is_truthy(m.modified_at:find(RFC3339))
      assert.is_string(m.details.family)
    end
    assert.same({ "claude-test", "echo", "gpt-test" }, names)
  end)

  it("shows a model with the capabilities its route allows", function()
    local v = json.decode(post("/api/show", { model = "claude-test" }).body)
    assert.same({ "completion", "tools", "vision", "thinking" }, v.capabilities)
    assert.equal("anthropic", v.details.format)
    assert.is_string(v.modelfile)
    assert.is_string(v.template)
    assert.is_table(v.model_info)
    v = json.decode(post("/api/show", { name = "echo" }).body)
    assert.same({ "completion" }, v.capabilities)
    local res = post("/api/show", { model = "nonesuch" })
    assert.equal(404, res.status)
    assert.same({ error = "model 'nonesuch' not found" }, json.decode(res.body))
  end)

  it("answers /api/version, /api/ps, HEAD / and GET /", function()
    local res = assert(server:request("GET", "/api/version"))
    assert.equal(200, res.status)
    assert.is_truthy(json.decode(res.body).version:find("^%d+%.%d+%.%d+$"))
    res = assert(server:request("GET", "/api/ps"))
    assert.equal('{"models":[]}', res.body)
    -- HEAD / (what Ollama clients probe first): 200, no body
    local c = server:connect()
    c:send(helpers.client.request_bytes("HEAD", "/", nil, { Connection = "close" }))
    c:wait(function() return c.buf:find("\r\n\r\n", 1, true) end, 5000)
    assert.is_truthy(c.buf:find("^HTTP/1%.1 200 "))
    c:close()
    assert.equal(200, assert(server:request("GET", "/")).status)
  end)

  it("answers errors as {\"error\": ...} naming the field", function()
    local res = post("/api/chat", { model = "gpt-test", brand_new = 1, messages = { { role = "user", content = "hi" } } })
    assert.equal(400, res.status)
    assert.same({ error = "brand_new: unknown field, which the gateway cannot translate" }, json.decode(res.body))
    res = post("/api/chat", { model = "nonesuch", messages = { { role = "user", content = "hi" } } })
    assert.equal(404, res.status)
    assert.same({ error = "model 'nonesuch' not found" }, json.decode(res.body))
    res = post("/api/chat", { model = "claude-test", format = "json", messages = { { role = "user", content = "hi" } } })
    assert.equal(400, res.status)
    assert.is_truthy(json.decode(res.body).error:find("^format: "))
    res = post("/api/chat", "{not json")
    assert.equal(400, res.status)
    assert.is_string(json.decode(res.body).error)
    res = post("/api/generate", { model = "gpt-test", prompt = "x", suffix = "y" })
    assert.equal(400, res.status)
    assert.is_truthy(json.decode(res.body).error:find("^suffix: "))
    res = assert(server:request("GET", "/api/chat"))
    assert.equal(405, res.status)
    assert.is_string(json.decode(res.body).error)
    assert.equal(0, #mock:received())
  end)

  it("asks a schema of the upstream for format", function()
    local schema = { type = "object", properties = { age = { type = "integer" } }, required = { "age" } }
    mock:queue { { reply = { text = '{"age": 3}' } }, { reply = { text = '{"age": 4}' } } }
    assert.equal(200, post("/api/chat", { model = "gpt-test", stream = false, format = schema,
      messages = { { role = "user", content = "age?" } } }).status)
    assert.equal("json_schema", sent().response_format.type)
    assert.equal(200, post("/api/chat", { model = "claude-test", stream = false, format = schema,
      messages = { { role = "user", content = "age?" } } }).status)
    assert.equal("json_schema", sent().output_config.format.type)
    assert.equal(200, post("/api/chat", { model = "gpt-test", stream = false, format = "json",
      messages = { { role = "user", content = "age?" } } }).status)
    assert.equal("json_object", sent().response_format.type)
  end)
end)
