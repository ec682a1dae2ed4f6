-- The Responses door's stream ends, over real sockets: a passed-through
-- stream ends at its terminal event whatever the upstream does next, and one
-- that breaks off ends with response.failed that continues its numbering.
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

describe("Responses streams passed through", function()
  local mock, server
  setup(function()
    mock = helpers.mock()
    server = helpers.start { config = string.format([[
return {
  providers = { resp = { kind = "openai", api = "responses", base_url = %q, retries = 0, idle_timeout_ms = 8000 },
    claude = { kind = "anthropic", base_url = %q, retries = 0 } },
  routes = { { match = "claude-*", provider = "claude" }, { match = "*", provider = "resp" } },
}]], mock.url .. "/v1", mock.url) }
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
