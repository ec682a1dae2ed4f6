local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"

local function chat(body) return json.encode(body) end
local hi = { model = "echo", messages = { { role = "user", content = "hello there" } } }

describe("moongate serving the echo model", function()
  local server
  setup(function() server = helpers.start { workers = 2 } end)
  teardown(function() server:stop_clean() end)

  it("reports health", function()
    local res = assert(server:request("GET", "/health"))
    assert.equal(200, res.status)
    assert.equal("application/json", res.headers["content-type"])
    local body = json.decode(res.body)
    assert.equal("ok", body.status)
    assert.equal(2, body.workers)
    assert.matches("^%d+%.%d+%.%d+", body.version)
    assert.is_number(body.uptime)
  end)

  it("lists models in OpenAI's shape", function()
    local body = json.decode(assert(server:request("GET", "/v1/models")).body)
    assert.equal("list", body.object)
    assert.equal("echo", body.data[1].id)
    assert.equal("model", body.data[1].object)
    assert.is_number(body.data[1].created)
    assert.is_string(body.data[1].owned_by)
    local one = json.decode(assert(server:request("GET", "/v1/models/echo")).body)
    assert.equal("echo", one.id)
    assert.equal(404, assert(server:request("GET", "/v1/models/nope")).status)
    -- an id the SDKs percent-encode, and an Anthropic client's 404 in its format
    assert.equal("echo", json.decode(assert(server:request("GET", "/v1/models/ech%6F")).body).id)
    local res = assert(server:request("GET", "/v1/models/nope", nil, { ["anthropic-version"] = "2023-06-01" }))
    assert.equal(404, res.status)
    local e = json.decode(res.body)
    assert.equal("error", e.type)
    assert.equal("not_found_error", e.error.type)
    assert.is_nil(json.decode(assert(server:request("GET", "/v1/models/nope")).body).type)
    -- counting tokens for a model no route serves: 404, as /v1/messages says
    res = assert(server:request("POST", "/v1/messages/count_tokens",
      json.encode { model = "nope", messages = { { role = "user", content = "x" } } }))
    assert.equal(404, res.status)
    assert.equal("not_found_error", json.decode(res.body).error.type)
  end)

  it("answers a chat completion with the last user message", function()
    local res = assert(server:request("POST", "/v1/chat/completions", chat(hi)))
    assert.equal(200, res.status)
    local body = json.decode(res.body)
    assert.matches("^chatcmpl%-", body.id)
    assert.equal("chat.completion", body.object)
    assert.equal("echo", body.model)
    assert.equal("hello there", body.choices[1].message.content)
    assert.equal("assistant", body.choices[1].message.role)
    assert.equal("stop", body.choices[1].finish_reason)
    assert.equal(json.null, body.choices[1].logprobs)
    assert.equal(2, body.usage.completion_tokens)
    assert.equal(body.usage.prompt_tokens + 2, body.usage.total_tokens)
  end)

  it("streams in several chunks with usage and [DONE]", function()
    local req = chat { model = "echo", stream = true, stream_options = { include_usage = true },
      messages = { { role = "user", content = "one two three" } } }
    local res = assert(server:request("POST", "/v1/chat/completions", req))
    assert.equal(200, res.status)
    assert.matches("^text/event%-stream", res.headers["content-type"])
    assert.equal("chunked", res.headers["transfer-encoding"])
    local data, events = client.sse_data(res.body)
    assert.equal("[DONE]", data[#data])
    assert.is_false(events[1]) -- OpenAI streams carry no event names
    local chunks, text = {}, {}
    for i = 1, #data - 1 do
      chunks[i] = json.decode(data[i])
      local d = chunks[i].choices[1] and chunks[i].choices[1].delta
      if d and d.content then text[#text + 1] = d.content end
    end
    assert.equal("one two three", table.concat(text))
    assert.equal("assistant", chunks[1].choices[1].delta.role)
    for _, c in ipairs(chunks) do assert.equal(chunks[1].id, c.id) end
    assert.is_true(#chunks >= 5) -- role, 3 words, finish, usage
    local finish = chunks[#chunks - 1]
    assert.equal("stop", finish.choices[1].finish_reason)
    local usage = chunks[#chunks]
    assert.equal(0, #usage.choices)
    assert.equal(3, usage.usage.completion_tokens)
  end)

  it("streams without the usage chunk unless asked", function()
    local res = assert(server:request("POST", "/v1/chat/completions",
      chat { model = "echo", stream = true, messages = hi.messages }))
    local data = client.sse_data(res.body)
    for i = 1, #data - 1 do assert.is_nil(json.decode(data[i]).usage) end
  end)

  it("keeps the connection alive across requests and answers pipelined ones in order", function()
    local c = server:connect()
    local one = client.request_bytes("POST", "/v1/chat/completions", chat { model = "echo", messages = { { role = "user", content = "first" } } })
    local two = client.request_bytes("POST", "/v1/chat/completions", chat { model = "echo", stream = true, messages = { { role = "user", content = "second" } } })
    local three = client.request_bytes("GET", "/health")
    c:send(one .. two .. three)
    local r1 = assert(c:read_response(5000))
    local r2 = assert(c:read_response(5000))
    local r3 = assert(c:read_response(5000))
    assert.equal("first", json.decode(r1.body).choices[1].message.content)
    assert.matches("second", r2.body)
    assert.equal("ok", json.decode(r3.body).status)
    -- and the same connection still serves
    c:send(client.request_bytes("GET", "/health"))
    assert.equal(200, assert(c:read_response(5000)).status)
    c:close()
  end)

  it("serves a request larger than one read, then pipelined ones split across reads, on one connection", function()
    local c = server:connect()
    local big = string.rep("word ", 40000) -- 200 KB: many reads, more than a read buffer
    c:send(client.request_bytes("POST", "/v1/chat/completions",
      chat { model = "echo", messages = { { role = "user", content = big } } }))
    local r1 = assert(c:read_response(10000))
    assert.equal(200, r1.status)
    assert.equal(#big, #json.decode(r1.body).choices[1].message.content)
    -- two requests, the second cut mid-header and finished in a later write
    local two = client.request_bytes("POST", "/v1/chat/completions",
      chat { model = "echo", messages = { { role = "user", content = "two" } } })
    local three = client.request_bytes("POST", "/v1/chat/completions",
      chat { model = "echo", messages = { { role = "user", content = "three" } } })
    c:send(two .. three:sub(1, 20))
    local r2 = assert(c:read_response(5000))
    assert.equal("two", json.decode(r2.body).choices[1].message.content)
    c:send(three:sub(21))
    local r3 = assert(c:read_response(5000))
    assert.equal("three", json.decode(r3.body).choices[1].message.content)
    c:close()
  end)

  it("answers unknown paths with 404 in OpenAI's error shape", function()
    local res = assert(server:request("GET", "/v1/nothing-here"))
    assert.equal(404, res.status)
    local err = json.decode(res.body).error
    assert.matches("Unknown request URL: GET /v1/nothing%-here", err.message)
    assert.equal("invalid_request_error", err.type)
    assert.equal(json.null, err.param)
    assert.equal("unknown_url", err.code)
  end)

  it("answers a wrong method with 405 and the methods the path takes, naming the path as sent", function()
    local res = assert(server:request("GET", "/v1/chat/completions"))
    assert.equal(405, res.status)
    assert.equal("method_not_allowed", json.decode(res.body).error.code)
    assert.equal("OPTIONS, POST", res.headers.allow)
    res = assert(server:request("PUT", "/responses/abc"))
    assert.equal(405, res.status)
    assert.equal("DELETE, GET, HEAD, OPTIONS", res.headers.allow)
    assert.equal("Method PUT is not allowed on /responses/abc.", json.decode(res.body).error.message)
  end)

  it("answers an unknown model with 404 model_not_found", function()
    local res = assert(server:request("POST", "/v1/chat/completions",
      chat { model = "gpt-nothing", messages = hi.messages }))
    assert.equal(404, res.status)
    assert.equal("model_not_found", json.decode(res.body).error.code)
  end)
end)
