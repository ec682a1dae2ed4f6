-- The WS worker pool's security findings (issue 17), against the real
-- daemon with two worker threads and the mock upstream: config routes win
-- over what a worker announces, a pool request never falls through to an
-- HTTP provider, no worker means 503 at once, a chat socket's answers are
-- capped, and a worker cannot flood the log with unknown request ids.
local helpers = require "helpers"
local client = helpers.client
local W = require "support.ws_client"
local json = require "moongate.json"
local uv = require "luv"

local function body(model, content, extra)
  local b = { model = model, messages = { { role = "user", content = content } } }
  for k, v in pairs(extra or {}) do b[k] = v end
  return json.encode(b)
end

-- a pool worker played by the spec: answers heartbeats, keeps every
-- completion_request in w.requests and every message in w.seen, and
-- answers with `answer(m, ws)` when given (else holds the request)
local live = {} -- the workers a test made, closed after it whatever happened
local function worker(port, models, answer)
  local ws = assert(W.connect(port, "/ws"))
  live[#live + 1] = ws
  ws.seen, ws.requests = {}, {}
  ws.on_message = function(text, self)
    local m = json.decode(text)
    self.seen[#self.seen + 1] = m
    if m.type == "heartbeat" then self:send('{"type":"heartbeat_response"}') end
    if m.type == "completion_request" then
      self.requests[#self.requests + 1] = m
      if answer then answer(m, self) end
    end
    return false
  end
  ws:send(json.encode({ type = "client_ready", models = models, capacity = 10 }))
  return ws
end

local function reply(content)
  return function(m, ws)
    ws:send(json.encode({ type = "completion_response", request_id = m.request_id, content = content,
      finish_reason = "stop" }))
  end
end

local function wait_workers(s, n)
  return client.run_until(function()
    local p = json.decode(s:request("GET", "/health").body).ws_pool
    local ready = 0
    for _, w in ipairs(p.workers) do if w.status ~= "connecting" then ready = ready + 1 end end
    return ready == n
  end, 3000)
end

local function close_workers(s)
  for _, w in ipairs(live) do if not w.closed then w:close() end end
  live = {}
  assert(client.run_until(function()
    return #json.decode(s:request("GET", "/health").body).ws_pool.workers == 0
  end, 3000), "the workers did not leave")
end

local function count(text, plain)
  local n, at = 0, 1
  while true do
    local i = text:find(plain, at, true)
    if not i then return n end
    n, at = n + 1, i + 1
  end
end

describe("WS pool security", function()
  local s, mock
  setup(function()
    mock = helpers.mock()
    s = helpers.start { workers = 2, config = string.format([[
return {
  websocket = { heartbeat_interval_ms = 100, heartbeat_timeout_ms = 400, queue_timeout_ms = 2000, max_inflight = 2 },
  providers = {
    up = { kind = "openai", base_url = %q, api_key = "sk-up" },
    pool = { kind = "ws", first_byte_timeout_ms = 200 },
  },
  routes = {
    { match = "gpt-*", provider = "up" },
    { match = "tab-*", provider = { "pool", "up" } },
    { match = "local-model", provider = "workers" },
    { match = "*", provider = "up" },
  },
}]], mock.url .. "/v1") }
  end)
  teardown(function()
    s:stop_clean()
    mock:stop()
  end)
  before_each(function() mock:reset() end)
  after_each(function() close_workers(s) end)

  it("gives a rogue worker announcing a glob-routed model none of its traffic", function()
    local rogue = worker(s.port, { "gpt-4o", "anything-else" }, reply("stolen"))
    assert.is_true(wait_workers(s, 1))
    for _, model in ipairs { "gpt-4o", "anything-else" } do
      local res = s:request("POST", "/v1/chat/completions", body(model, "secret prompt"))
      assert.equal(200, res.status)
      assert.equal("secret prompt", json.decode(res.body).choices[1].message.content) -- the mock's echo
    end
    assert.equal(0, #rogue.requests)
    assert.equal(2, #mock:requests())
    -- nor is it listed as the worker's: the route's provider serves it
    rogue:close()
  end)

  it("serves an announced model through a route that names the pool", function()
    local w = worker(s.port, { "local-model" }, reply("from the tab"))
    assert.is_true(wait_workers(s, 1))
    local res = s:request("POST", "/v1/chat/completions", body("local-model", "hi"))
    assert.equal(200, res.status)
    assert.equal("from the tab", json.decode(res.body).choices[1].message.content)
    assert.equal(1, #w.requests)
    assert.equal(0, #mock:requests())
    w:close()
  end)

  it("answers 503 at once in the client's format when no worker is connected, and nothing goes upstream", function()
    local t0 = uv.hrtime()
    local res = s:request("POST", "/v1/chat/completions", body("local-model", "for the tab only"), nil, 5000)
    local ms = (uv.hrtime() - t0) / 1e6
    assert.equal(503, res.status)
    assert.equal("server_error", json.decode(res.body).error.type)
    assert.matches("no WS worker serving local%-model", json.decode(res.body).error.message)
    assert.is_true(ms < 1000, "took " .. ms .. " ms (the queue time is 2000)")
    -- an Anthropic client, through a chain that names an HTTP provider after the pool
    res = s:request("POST", "/v1/messages", body("tab-x", "for the tab only", { max_tokens = 10 }), nil, 5000)
    assert.equal(503, res.status)
    assert.equal("error", json.decode(res.body).type)
    assert.equal(0, #mock:requests())
  end)

  it("never falls back from the pool to the next provider of the chain", function()
    -- announcing no model, it serves any the pool is asked for (and is
    -- not routed to by name); it holds every request: a 504 after the
    -- first-byte time, which another provider could have answered
    local w = worker(s.port, {})
    assert.is_true(wait_workers(s, 1))
    local res = s:request("POST", "/v1/chat/completions", body("tab-slow", "for the tab only"), nil, 8000)
    assert.equal(1, #w.requests)
    assert.equal(504, res.status)
    assert.equal(0, #mock:requests())
    w:close()
  end)

  it("caps a chat socket's answers under way at websocket.max_inflight", function()
    local w = worker(s.port, { "tab-hold" })
    assert.is_true(wait_workers(s, 1))
    local ws = assert(W.connect(s.port, "/ws/capped"))
    for _, id in ipairs { "a", "b", "c" } do
      ws:send(json.encode({ type = "chat_message", id = id, model = "tab-hold", message = { content = id } }))
    end
    local err = json.decode(assert(ws:next_message(3000)))
    assert.equal("error", err.type)
    assert.equal("c", err.id)
    assert.matches("max_inflight", err.message)
    assert.is_true(w:wait(function(x) return #x.requests == 2 end, 2000))
    client.run_until(function() return false end, 200)
    assert.equal(2, #w.requests)
    -- one answer ends: the socket may ask again
    reply("done a")(w.requests[1], w)
    local done = json.decode(assert(ws:next_message(3000)))
    while done.type ~= "response_complete" do done = json.decode(assert(ws:next_message(3000))) end
    ws:send(json.encode({ type = "chat_message", id = "d", model = "tab-hold", message = { content = "d" } }))
    assert.is_true(w:wait(function(x) return #x.requests == 3 end, 2000))
    ws:close()
    w:close()
  end)

  it("rate-limits the warnings about unknown request ids per worker", function()
    local w = worker(s.port, { "tab-noisy" })
    assert.is_true(wait_workers(s, 1))
    local before = count(s.log, "for unknown or finished request")
    for i = 1, 50 do
      w:send(json.encode({ type = "completion_chunk", request_id = "ghost-" .. i, content = "x" }))
    end
    w:send('{"type":"ping"}') -- answered after the 50 were handled
    assert.is_true(w:wait(function(x)
      for _, m in ipairs(x.seen) do if m.type == "pong" then return true end end
      return false
    end, 3000))
    local n = count(s.log, "for unknown or finished request") - before
    assert.is_true(n >= 1 and n <= 5, n .. " warnings")
    w:close()
  end)
end)

describe("WS pool with websocket.wait_for_worker_ms", function()
  local s
  setup(function()
    s = helpers.start { workers = 2, config = [[
return {
  websocket = { heartbeat_interval_ms = 100, heartbeat_timeout_ms = 400, queue_timeout_ms = 5000,
    wait_for_worker_ms = 800 },
  routes = { { match = "tab-*", provider = "workers" } },
}]] }
  end)
  teardown(function() s:stop_clean() end)
  after_each(function() close_workers(s) end)

  it("hands a request to a worker that connects while it waits", function()
    local conn = s:connect()
    conn:send(client.request_bytes("POST", "/v1/chat/completions", body("tab-late", "x")))
    client.run_until(function() return false end, 150)
    local w = worker(s.port, { "tab-late" }, reply("just in time"))
    local res = conn:read_response(3000)
    assert.equal(200, res.status)
    assert.equal("just in time", json.decode(res.body).choices[1].message.content)
    conn:close()
    w:close()
  end)

  it("answers 503 after wait_for_worker_ms, not the whole queue time, when none comes", function()
    local t0 = uv.hrtime()
    local res = s:request("POST", "/v1/chat/completions", body("tab-nobody", "x"), nil, 8000)
    local ms = (uv.hrtime() - t0) / 1e6
    assert.equal(503, res.status)
    assert.is_true(ms >= 700 and ms < 3000, "took " .. ms .. " ms")
  end)
end)
