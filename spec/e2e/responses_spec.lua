-- The Responses door over real sockets: a passed-through stream ends at
-- its terminal event whatever the upstream does next, and one that breaks
-- off ends with response.failed that continues its numbering; a stored
-- conversation continued turn by turn (one turn an entry), GET and DELETE
-- of a percent-encoded id, a prompt too long in the Responses API's words.
local helpers = require "helpers"
local json = require "moongate.json"
local uv = require "luv"

-- a Responses event as the mock sends it
local function ev(t, n, extra)
  local v = { type = t, sequence_number = n }
  for k, x in pairs(extra or {}) do v[k] = x end
  return { event = t, json = v }
end
local resp = { id = "resp_up1", object = "response", status = "in_progress", model = "m", output = json.empty_array }
local item = { id = "msg_up1", type = "message", role = "assistant", status = "in_progress", content = json.empty_array }

-- the SSE events of a response body, decoded
local function events(body)
  local out = {}
  for block in body:gmatch("(.-)\n\n") do
    local data = block:match("data: ([^\n]*)")
    if data then out[#out + 1] = json.decode(data) end
  end
  return out
end

describe("The Responses door over real sockets", function()
  local mock, server
  setup(function()
    mock = helpers.mock()
    server = helpers.start { config = string.format([[
return {
  providers = { resp = { kind = "openai", api = "responses", base_url = %q, retries = 0, idle_timeout_ms = 8000 },
    claude = { kind = "anthropic", base_url = %q, retries = 0 },
    chat = { kind = "openai", base_url = %q, retries = 0 } },
  routes = { { match = "claude-*", provider = "claude" }, { match = "gpt-*", provider = "chat" },
    { match = "*", provider = "resp" } },
}]], mock.url .. "/v1", mock.url, mock.url .. "/v1") }
  end)
  teardown(function()
    if server then server:stop_clean() end
    if mock then mock:stop() end
  end)
  before_each(function() mock:reset() end)

  local function post()
    local t0 = uv.hrtime()
    local res = assert(server:request("POST", "/v1/responses",
      json.encode { model = "m", input = "hi", stream = true }, nil, 15000))
    return res, (uv.hrtime() - t0) / 1e6
  end

  it("ends the client's stream at response.completed though the upstream holds the connection open", function()
    mock:queue { { frames = {
      ev("response.created", 0, { response = resp }),
      ev("response.output_item.added", 1, { output_index = 0, item = item }),
      ev("response.completed", 2, { response = { id = "resp_up1", object = "response", status = "completed",
        model = "m", output = json.empty_array } }),
      { pad = 16 }, -- a line that never ends: the connection stays open
    } } }
    local res, ms = post()
    assert.equal(200, res.status)
    local evs = events(res.body)
    assert.equal("response.completed", evs[#evs].type)
    assert.equal(3, #evs)
    assert.is_true(ms < 4000, "the stream ended after " .. ms .. " ms, not at response.completed")
  end)

  it("ends a stream the upstream breaks off with one response.failed that continues its numbering and id", function()
    mock:queue { { frames = {
      ev("response.created", 0, { response = resp }),
      ev("response.in_progress", 1, { response = resp }),
      ev("response.output_item.added", 2, { output_index = 0, item = item }),
      ev("response.output_text.delta", 3, { item_id = "msg_up1", output_index = 0, content_index = 0, delta = "par" }),
    }, drop_after = 4 } }
    local res = post()
    assert.equal(200, res.status)
    local evs = events(res.body)
    local created, failed = 0, {}
    for i, e in ipairs(evs) do
      assert.equal(i - 1, e.sequence_number)
      if e.type == "response.created" then created = created + 1 end
      if e.type == "response.failed" then failed[#failed + 1] = e end
    end
    assert.equal(1, created)
    assert.equal(1, #failed)
    assert.equal(evs[#evs], failed[1])
    assert.equal("resp_up1", failed[1].response.id)
    assert.equal("failed", failed[1].response.status)
    assert.is_string(failed[1].response.error.message)
  end)

  it("ends a stream the upstream fails with an error event in one response.failed, in its numbering", function()
    mock:queue { { frames = {
      ev("response.created", 0, { response = resp }),
      ev("response.output_item.added", 1, { output_index = 0, item = item }),
      ev("error", 2, { code = "server_error", message = "boom" }),
    } } }
    local res = post()
    assert.equal(200, res.status)
    local evs = events(res.body)
    for i, e in ipairs(evs) do assert.equal(i - 1, e.sequence_number) end
    assert.equal(3, #evs)
    assert.equal("response.failed", evs[3].type)
    assert.equal("resp_up1", evs[3].response.id)
    assert.same({ code = "server_error", message = "boom" }, evs[3].response.error)
  end)

  -- a conversation that moved between upstreams: the reasoning another
  -- kind made comes packed (docs/CANONICAL.md) and must not reach this one
  it("translates a Responses client's packed reasoning instead of passing it through", function()
    local res = assert(server:request("POST", "/v1/responses", json.encode { model = "m", input = {
      { role = "user", content = "x" },
      { type = "reasoning", id = "rs_1", summary = json.empty_array, encrypted_content = "mg1~anthropic~~c2lnbmF0dXJl" },
      { type = "message", role = "assistant", content = { { type = "output_text", text = "y" } } },
      { role = "user", content = "z" } } }, nil, 15000))
    assert.equal(200, res.status, res.body)
    local sent = json.decode(mock:requests()[1].body)
    assert.matches("^/v1/responses", mock:requests()[1].path)
    for _, it in ipairs(sent.input) do assert.not_equal("reasoning", it.type) end
    assert.not_matches("mg1~", mock:requests()[1].body, 1, true)
  end)

  -- a turn: the response object, or the error answer
  local function ask(body)
    local res = assert(server:request("POST", "/v1/responses", json.encode(body), nil, 15000))
    return json.decode(res.body), res.status
  end

  it("continues a stored conversation turn by turn through a translated upstream", function()
    local first = assert(ask { model = "claude-x", input = "one" })
    local second = assert(ask { model = "claude-x", input = "two", previous_response_id = first.id })
    local third, status = ask { model = "claude-x", input = { { role = "user", content = "three" } },
      previous_response_id = second.id }
    assert.equal(200, status, json.encode(third))
    assert.equal(second.id, third.previous_response_id)
    -- the third request upstream holds the whole conversation, in order
    local sent = json.decode(mock:requests()[3].body).messages
    local said = {}
    for i, m in ipairs(sent) do said[i] = m.role .. ":" .. (type(m.content) == "string" and m.content or m.content[1].text) end
    assert.same({ "user:one", "assistant:one", "user:two", "assistant:two", "user:three" }, said)
    -- GET of a percent-encoded id (every byte of it encoded)
    local enc = first.id:gsub(".", function(c) return string.format("%%%02X", c:byte()) end)
    local got = assert(server:request("GET", "/v1/responses/" .. enc))
    assert.equal(200, got.status, got.body)
    assert.equal(first.id, json.decode(got.body).id)
    -- a turn gone from the middle: the conversation cannot go on
    local del = assert(server:request("DELETE", "/responses/" .. enc))
    assert.equal(200, del.status, del.body)
    assert.equal(first.id, json.decode(del.body).id)
    local e, st = ask { model = "claude-x", input = "four", previous_response_id = third.id }
    assert.equal(404, st)
    assert.equal("previous_response_not_found", e.error.code)
    assert.equal("previous_response_id", e.error.param)
    assert.matches("(response '" .. first.id .. "') is no longer stored", e.error.message, 1, true)
    assert.equal(3, #mock:requests())
  end)

  it("keeps a client's stored responses from clients with another key", function()
    local res = assert(server:request("POST", "/v1/responses", json.encode { model = "claude-x", input = "secret plan" },
      { authorization = "Bearer sk-alice" }, 15000))
    assert.equal(200, res.status, res.body)
    local id = json.decode(res.body).id
    local function get(headers) return assert(server:request("GET", "/v1/responses/" .. id, nil, headers)).status end
    assert.equal(404, get { authorization = "Bearer sk-mallory" })
    assert.equal(404, get {})
    assert.equal(200, get { ["x-api-key"] = "sk-alice" }) -- the same key, however it is sent
    assert.equal(404, assert(server:request("DELETE", "/v1/responses/" .. id, nil, { authorization = "Bearer sk-mallory" })).status)
    local cont = assert(server:request("POST", "/v1/responses", json.encode { model = "claude-x", input = "go on",
      previous_response_id = id }, { authorization = "Bearer sk-mallory" }, 15000))
    assert.equal(404, cont.status, cont.body)
    assert.equal(200, get { authorization = "Bearer sk-alice" })
  end)

  it("quotes at most 300 bytes of an unknown id, escaped", function()
    local res = assert(server:request("GET", "/v1/responses/resp_%0A" .. string.rep("y", 3000)))
    assert.equal(404, res.status)
    local e = json.decode(res.body).error
    assert.equal("Response with id 'resp_\\x0a" .. string.rep("y", 294) .. "...' not found.", e.message)
    assert.equal("invalid_request_error", e.type)
  end)

  it("refuses a body that is an empty array as not an object", function()
    local res = assert(server:request("POST", "/v1/responses", "[]"))
    assert.equal(400, res.status)
    assert.matches("expected a JSON object, got an array", json.decode(res.body).error.message, 1, true)
    assert.equal(0, #mock:requests())
  end)

  it("tells a prompt too long in the Responses API's words, whatever upstream said it", function()
    mock:queue { { status = 400, json = { type = "error", error = { type = "invalid_request_error",
      message = "prompt is too long: 210000 tokens > 200000 maximum" } } },
      { status = 400, json = { error = { message = "This model's maximum context length is 128000 tokens. "
        .. "However, your messages resulted in 130512 tokens. Please reduce the length of the messages.",
        type = "invalid_request_error", param = "messages", code = "context_length_exceeded" } } },
      { status = 400, json = { error = { message = "Your input exceeds the context window of this model. "
        .. "Please adjust your input and try again.", type = "invalid_request_error", param = "input",
        code = "context_length_exceeded" } } } }
    for _, c in ipairs { { "claude-x", 210000, 200000 }, { "gpt-x", 130512, 128000 } } do
      local e, st = ask { model = c[1], input = "long" }
      assert.equal(400, st, c[1])
      assert.same({ "context_length_exceeded", "input", "invalid_request_error" }, { e.error.code, e.error.param, e.error.type })
      assert.matches("^Your input exceeds the context window of this model%.", e.error.message)
      assert.matches(string.format("maximum context length is %d tokens; your input has %d tokens", c[3], c[2]), e.error.message, 1, true)
    end
    -- a Responses upstream's own words stay as they came
    local e, st = ask { model = "m", input = "long" }
    assert.equal(400, st)
    assert.equal("Your input exceeds the context window of this model. Please adjust your input and try again.", e.error.message)
    assert.equal("input", e.error.param)
  end)

  it("translates an Anthropic client's packed signature instead of passing it through", function()
    local res = assert(server:request("POST", "/v1/messages", json.encode { model = "claude-x", max_tokens = 50,
      messages = { { role = "user", content = "x" },
        { role = "assistant", content = { { type = "thinking", thinking = "t", signature = "mg1~responses~rs_9~ZW5j" },
          { type = "text", text = "y" } } },
        { role = "user", content = "z" } } }, { ["anthropic-version"] = "2023-06-01" }, 15000))
    assert.equal(200, res.status, res.body)
    local sent = json.decode(mock:requests()[1].body)
    for _, b in ipairs(sent.messages[2].content) do assert.not_equal("thinking", b.type) end
    assert.not_matches("mg1~", mock:requests()[1].body, 1, true)
  end)
end)
