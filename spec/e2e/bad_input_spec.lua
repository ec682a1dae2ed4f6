local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"
local uv = require "luv"

local config = [[
return {
  max_body_bytes = 4096,
  request_timeout = 1,
  lua_path = "spec/support/lua/?.lua",
  providers = {
    slow = { kind = "echo", chunk_delay_ms = 30 },
    boom = { kind = "boom" },
  },
  routes = {
    { match = "slow-echo", provider = "slow" },
    { match = "boom", provider = "boom" },
  },
}]]

local function post(server, body, headers)
  return assert(server:request("POST", "/v1/chat/completions", body, headers))
end

local function openai_error(res, status)
  assert.equal(status, res.status)
  assert.equal("application/json", res.headers["content-type"])
  local err = assert(json.decode(res.body)).error
  for _, k in ipairs { "message", "type", "param", "code" } do
    assert.is_not_nil(err[k], "error lacks " .. k)
  end
  return err
end

describe("bad input", function()
  local server
  setup(function() server = helpers.start { config = config } end)
  teardown(function() server:stop_clean() end)
  after_each(function()
    -- whatever happened, the daemon still serves
    assert.equal(200, assert(server:request("GET", "/health")).status)
  end)

  it("answers malformed JSON with 400", function()
    local err = openai_error(post(server, '{"model": "echo", "messages": [}'), 400)
    assert.equal("invalid_request_error", err.type)
    assert.matches("could not parse the JSON body", err.message)
  end)

  it("answers an empty body with 400", function()
    local err = openai_error(post(server, ""), 400)
    assert.matches("body is empty", err.message)
  end)

  it("answers a missing messages with 400 naming the parameter", function()
    local err = openai_error(post(server, '{"model":"echo"}'), 400)
    assert.equal("messages", err.param)
    assert.equal("missing_required_parameter", err.code)
  end)

  it("answers a wrong type with 400 invalid_type", function()
    local err = openai_error(post(server, '{"model":"echo","messages":[{"role":"user","content":"x"}],"stream":"yes"}'), 400)
    assert.equal("stream", err.param)
    assert.equal("invalid_type", err.code)
  end)

  it("answers numbers out of range with 400 invalid_value, infinity included", function()
    local err = openai_error(post(server, '{"model":"echo","temperature":1e999,"messages":[{"role":"user","content":"x"}]}'), 400)
    assert.equal("temperature", err.param)
    assert.equal("invalid_value", err.code)
    assert.matches("maximum value", err.message)
    err = openai_error(post(server, '{"model":"echo","max_tokens":0,"messages":[{"role":"user","content":"x"}]}'), 400)
    assert.equal("max_tokens", err.param)
    err = openai_error(post(server, '{"model":"echo","top_p":-0.5,"messages":[{"role":"user","content":"x"}]}'), 400)
    assert.matches("minimum value", err.message)
    -- a count of 1e308 is an integer to JSON, but no API's
    err = openai_error(post(server, '{"model":"echo","max_tokens":1e308,"messages":[{"role":"user","content":"x"}]}'), 400)
    assert.equal("max_tokens", err.param)
    assert.matches("maximum value. Expected a value <= 2147483647", err.message, 1, true)
  end)

  it("checks an Anthropic request's types and ranges, naming the field", function()
    local function messages(fields)
      local res = assert(server:request("POST", "/v1/messages",
        '{"max_tokens":5,"messages":[{"role":"user","content":"x"}],' .. fields .. '}'))
      assert.equal(400, res.status)
      local e = json.decode(res.body)
      assert.equal("error", e.type)
      assert.equal("invalid_request_error", e.error.type)
      return e.error.message
    end
    assert.matches("^model: Input should be a valid string", messages('"model":5'))
    local big = assert(server:request("POST", "/v1/messages",
      '{"model":"echo","max_tokens":1e308,"messages":[{"role":"user","content":"x"}]}'))
    assert.equal(400, big.status)
    assert.equal("max_tokens: Input should be less than or equal to 2147483647", json.decode(big.body).error.message)
    assert.matches("^top_k: Input should be less than or equal to 2147483647", messages('"model":"echo","top_k":1e300'))
    assert.matches("^temperature: Input should be a valid number", messages('"model":"echo","temperature":"hot"'))
    assert.matches("^temperature: Input should be less than or equal to 1", messages('"model":"echo","temperature":1e999'))
    assert.matches("^top_p: Input should be greater", messages('"model":"echo","top_p":-1'))
    assert.matches("^stop_sequences: Input should be a valid list", messages('"model":"echo","stop_sequences":5'))
    assert.matches("^stop_sequences.1: Input should be a valid string", messages('"model":"echo","stop_sequences":["a",5]'))
    assert.matches("^tool_choice: Input should be an object", messages('"model":"echo","tool_choice":5'))
    assert.matches("^thinking.budget_tokens: Input should be a valid integer",
      messages('"model":"echo","thinking":{"type":"enabled","budget_tokens":"lots"}'))
    local res = assert(server:request("POST", "/v1/messages", '{"model":"echo","max_tokens":5,"messages":[{"role":"user",'
      .. '"content":[{"type":"image","source":{"type":"url","url":5}}]}]}'))
    assert.equal(400, res.status)
    assert.matches("messages.0.content.0.source.url: Field required", json.decode(res.body).error.message, 1, true)
  end)

  it("answers a body over the limit with 413, in the client's format", function()
    local big = json.encode { model = "echo", messages = { { role = "user", content = string.rep("x", 5000) } } }
    local err = openai_error(post(server, big), 413)
    assert.matches("4096 bytes", err.message)
    -- an Anthropic client's path gets Anthropic's shape
    local res = assert(server:request("POST", "/v1/messages", big))
    assert.equal(413, res.status)
    local body = json.decode(res.body)
    assert.equal("error", body.type)
    assert.equal("request_too_large", body.error.type)
  end)

  it("answers a chunked body over the limit with 413", function()
    local c = server:connect()
    local piece = string.rep("y", 3000)
    c:send("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      string.format("%x\r\n%s\r\n", #piece, piece) .. string.format("%x\r\n%s\r\n", #piece, piece) .. "0\r\n\r\n")
    local res = assert(c:read_response(5000))
    openai_error(res, 413)
    c:close()
  end)

  it("accepts a chunked body within the limit", function()
    local body = json.encode { model = "echo", messages = { { role = "user", content = "chunked ok" } } }
    local c = server:connect()
    c:send("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      string.format("%x\r\n%s\r\n0\r\n\r\n", #body, body))
    local res = assert(c:read_response(5000))
    assert.equal("chunked ok", json.decode(res.body).choices[1].message.content)
    c:close()
  end)

  it("answers Expect: 100-continue before the body is sent", function()
    local body = json.encode { model = "echo", messages = { { role = "user", content = "after continue" } } }
    local c = server:connect()
    c:send("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: " .. #body .. "\r\n\r\n")
    assert.truthy(c:wait(function(cc) return cc.buf:find("100 Continue", 1, true) end, 3000))
    c.buf = c.buf:gsub("^HTTP/1.1 100 Continue\r\n\r\n", "")
    c:send(body)
    local res = assert(c:read_response(5000))
    assert.equal("after continue", json.decode(res.body).choices[1].message.content)
    c:close()
  end)

  it("answers a huge header with 431", function()
    local res = post(server, '{"model":"echo","messages":[{"role":"user","content":"x"}]}',
      { ["X-Huge"] = string.rep("h", 20000) })
    local err = openai_error(res, 431)
    assert.matches("header", err.message)
  end)

  it("answers a malformed request line with 400 and closes", function()
    local c = server:connect()
    c:send("THIS IS NOT HTTP\r\n\r\n")
    local res = assert(c:read_response(3000))
    openai_error(res, 400)
    assert.is_true(c:wait(function(cc) return cc.eof end, 3000))
    c:close()
  end)

  it("names what is malformed, in the format of the path", function()
    local c = server:connect()
    c:send("POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n")
    local res = assert(c:read_response(3000))
    assert.equal(400, res.status)
    local e = json.decode(res.body)
    assert.equal("error", e.type)
    assert.matches("^malformed http request: .*content%-length", e.error.message:lower())
    c:close()
    c = server:connect()
    c:send("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
    res = assert(c:read_response(3000))
    assert.matches("^malformed HTTP request: ", openai_error(res, 400).message)
    c:close()
  end)

  it("takes a slow upload that keeps coming, and answers 408 to one that stops", function()
    local body = json.encode { model = "echo", messages = { { role = "user", content = "slow but steady" } } }
    local c = server:connect()
    c:send(string.format("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n", #body))
    -- request_timeout is 1 s: pieces 0.4 s apart take 2 s in all
    local pieces = 5
    local size = math.ceil(#body / pieces)
    for i = 1, pieces do
      c:wait(function() return false end, 400)
      c:send(body:sub((i - 1) * size + 1, i * size))
    end
    local res = assert(c:read_response(3000))
    assert.equal(200, res.status)
    assert.matches("slow but steady", res.body, 1, true)
    c:close()
    c = server:connect()
    c:send(string.format("POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n", #body) .. body:sub(1, 10))
    res = assert(c:read_response(3000))
    assert.equal(408, res.status)
    assert.matches("request timeout", json.decode(res.body).error.message)
    assert.equal("error", json.decode(res.body).type) -- Anthropic's shape on /v1/messages
    assert.is_true(c:wait(function(cc) return cc.eof end, 3000))
    c:close()
    -- headers that trickle in have one deadline however they come
    c = server:connect()
    c:send("POST /v1/chat/completions HTTP/1.1\r\n")
    local t0 = uv.hrtime()
    for i = 1, 6 do
      if c:wait(function(cc) return cc.buf ~= "" end, 400) then break end
      c:send("X-Slow-" .. i .. ": y\r\n")
    end
    res = assert(c:read_response(3000))
    assert.equal(408, res.status)
    assert.is_true((uv.hrtime() - t0) / 1e6 < 1900, "the header deadline moved with the bytes")
    c:close()
  end)

  it("cancels the stream when the client disconnects mid-stream", function()
    local before = json.decode(server:request("GET", "/stats").body)
    local c = server:connect()
    c:send(client.request_bytes("POST", "/v1/chat/completions", json.encode {
      model = "slow-echo", stream = true, messages = { { role = "user", content = string.rep("word ", 200) } } }))
    assert.truthy(c:wait(function(cc) return cc.buf:find('"content":"word', 1, true) end, 3000))
    c:close()
    local stats
    assert.is_true(client.run_until(function()
      stats = json.decode(server:request("GET", "/stats").body)
      return stats.open_streams == 0
    end, 3000))
    assert.equal(before.client_disconnects + 1, stats.client_disconnects)
    assert.equal(0, stats.buffered_bytes)
    assert.equal(1, stats.open_requests) -- the /stats request itself
  end)

  it("ends a request whose provider script raises with a 500 in OpenAI's shape", function()
    local before = json.decode(server:request("GET", "/stats").body)
    local err = openai_error(post(server, json.encode { model = "boom", messages = { { role = "user", content = "sync" } } }), 500)
    assert.equal("server_error", err.type)
    local stats = json.decode(server:request("GET", "/stats").body)
    assert.equal(before.lua_errors + 1, stats.lua_errors)
    assert.matches("boom: provider script bug", server.log)
    assert.matches("stack traceback", server.log)
  end)

  it("ends a stream whose provider fails mid-way with an error event and a clean end", function()
    local res = post(server, json.encode { model = "boom", stream = true, messages = { { role = "user", content = "async" } } })
    assert.equal(200, res.status)
    local data = client.sse_data(res.body)
    assert.matches('"content":"partial "', res.body, 1, true)
    local last = json.decode(data[#data])
    assert.is_table(last.error)
    assert.equal("server_error", last.error.type)
    assert.matches("boom: async provider bug", server.log)
  end)
end)
