-- WebSockets against the real daemon with two worker threads: pool workers
-- on /ws (the AIProxy protocol) serving OpenAI and Anthropic clients, MRU
-- selection, heartbeats, failover, the queue, auth and origins; and chat
-- sockets on /ws/{client_id}.
local helpers = require "helpers"
local client = helpers.client
local W = require "support.ws_client"
local json = require "moongate.json"
local uv = require "luv"
local bit = require "bit"

local function body(model, content, extra)
  local b = { model = model, messages = { { role = "user", content = content } } }
  for k, v in pairs(extra or {}) do b[k] = v end
  return json.encode(b)
end

-- A pool worker played by the spec. `answer(req, ws)` runs for each
-- completion_request (nil: the worker holds it); heartbeats are answered
-- unless `silent`. Every message received is kept in w.seen.
local function worker(port, opts)
  opts = opts or {}
  local ws = assert(W.connect(port, opts.path or "/ws", opts.headers))
  ws.seen, ws.requests, ws.cancels = {}, {}, {}
  ws.on_message = function(text, self)
    local m = json.decode(text)
    self.seen[#self.seen + 1] = m
    if m.type == "heartbeat" then
      if not self.silent then self:send('{"type":"heartbeat_response"}') end
      return false
    elseif m.type == "completion_request" then
      self.requests[#self.requests + 1] = m
      if self.answer then self.answer(m, self) end
      return false
    elseif m.type == "cancel_request" then
      self.cancels[#self.cancels + 1] = m.request_id
      return false
    end
  end
  ws.answer = opts.answer
  ws.silent = opts.silent
  if opts.ready ~= false then
    ws:send(json.encode({ type = "client_ready", models = opts.models or { "browser-model", "claude-ws-1" },
      capacity = opts.capacity, name = opts.name }))
  end
  return ws
end

local function reply(content, chunks)
  return function(m, ws)
    for _, c in ipairs(chunks or {}) do
      ws:send(json.encode({ type = "completion_chunk", request_id = m.request_id, content = c }))
    end
    ws:send(json.encode({ type = "completion_response", request_id = m.request_id, content = content,
      finish_reason = "stop" }))
  end
end

local function pool_state(s)
  local res = s:request("GET", "/health")
  return json.decode(res.body).ws_pool, json.decode(res.body)
end

local function wait_workers(s, n)
  return client.run_until(function()
    local p = pool_state(s)
    local ready = 0
    for _, w in ipairs(p.workers) do if w.status ~= "connecting" then ready = ready + 1 end end
    return ready == n
  end, 3000)
end

describe("WS worker pool", function()
  local s
  setup(function()
    s = helpers.start { workers = 2, config = [[
return {
  websocket = { heartbeat_interval_ms = 100, heartbeat_timeout_ms = 400, queue_timeout_ms = 600, max_queue = 3,
    wait_for_worker_ms = 600 }, -- requests wait for a worker to come (the default: 503 at once)
  providers = { pool = { kind = "ws" } },
  routes = { { match = "claude-ws*", provider = "pool" } },
}]] }
  end)
  teardown(function() s:stop_clean() end)

  it("serves an OpenAI request and an Anthropic request, whole and streamed", function()
    local w = worker(s.port, { answer = reply("Hello from the tab", { "Hello ", "from ", "the tab" }) })
    assert.is_true(wait_workers(s, 1))

    local res = s:request("POST", "/v1/chat/completions", body("browser-model", "hi", { temperature = 0.5, max_tokens = 20 }))
    assert.equal(200, res.status)
    local out = json.decode(res.body)
    assert.equal("Hello from the tab", out.choices[1].message.content)
    assert.equal("stop", out.choices[1].finish_reason)
    local req = w.requests[1]
    assert.equal("completion_request", req.type)
    assert.equal("browser-model", req.model)
    assert.equal(0.5, req.temperature)
    assert.equal(20, req.max_tokens)
    assert.is_false(req.stream)
    assert.same({ { role = "user", content = "hi" } }, req.messages)
    assert.matches("^wsreq_", req.request_id)

    res = s:request("POST", "/v1/chat/completions", body("browser-model", "hi", { stream = true }))
    assert.equal(200, res.status)
    local text = {}
    for _, d in ipairs(client.sse_data(res.body)) do
      local c = d ~= "[DONE]" and json.decode(d)
      if c and c.choices[1] and c.choices[1].delta.content then text[#text + 1] = c.choices[1].delta.content end
    end
    assert.equal("Hello from the tab", table.concat(text))
    assert.is_true(w.requests[2].stream)

    -- Anthropic client, routed by a config route to the pool, streamed
    res = s:request("POST", "/v1/messages", body("claude-ws-1", "hey", { max_tokens = 50, stream = true }))
    assert.equal(200, res.status)
    assert.matches("event: message_start", res.body, 1, true)
    assert.matches('"text":"Hello "', res.body, 1, true)
    assert.matches("event: message_stop", res.body, 1, true)
    assert.equal("claude-ws-1", w.requests[3].model)

    -- and whole
    res = s:request("POST", "/v1/messages", body("claude-ws-1", "hey", { max_tokens = 50 }))
    assert.equal(200, res.status)
    out = json.decode(res.body)
    assert.equal("Hello from the tab", out.content[1].text)
    assert.equal("end_turn", out.stop_reason)

    -- the announced model is listed
    res = s:request("GET", "/v1/models")
    assert.matches('"browser-model"', res.body, 1, true)
    w:close()
  end)

  it("gives a request to the free worker that was most recently active", function()
    local a = worker(s.port, { name = "a", answer = reply("from a") })
    assert.is_true(wait_workers(s, 1))
    local b = worker(s.port, { name = "b", answer = reply("from b") })
    assert.is_true(wait_workers(s, 2))
    -- b said ready last
    local res = s:request("POST", "/v1/chat/completions", body("browser-model", "x"))
    assert.equal("from b", json.decode(res.body).choices[1].message.content)
    -- a announces itself again: now a is the most recently active
    a:send(json.encode({ type = "client_ready", models = { "browser-model" }, name = "a" }))
    a:wait(function() return false end, 100)
    res = s:request("POST", "/v1/chat/completions", body("browser-model", "x"))
    assert.equal("from a", json.decode(res.body).choices[1].message.content)
    -- a, having just finished, stays the most recently active
    a:wait(function() return false end, 20)
    res = s:request("POST", "/v1/chat/completions", body("browser-model", "x"))
    assert.equal("from a", json.decode(res.body).choices[1].message.content)
    assert.equal(1, #b.requests)
    -- a model only b serves goes to b
    b:send(json.encode({ type = "client_ready", models = { "only-b" }, name = "b" }))
    b:wait(function() return false end, 100)
    res = s:request("POST", "/v1/chat/completions", body("only-b", "x"))
    assert.equal("from b", json.decode(res.body).choices[1].message.content)
    a:close(); b:close()
  end)

  it("uses a worker's announced capacity, and a busy pool answers 429 after the queue time", function()
    local held = {}
    local w = worker(s.port, { capacity = 2, answer = function(m) held[#held + 1] = m.request_id end })
    assert.is_true(wait_workers(s, 1))
    local c1, c2, c3 = s:connect(), s:connect(), s:connect()
    c1:send(client.request_bytes("POST", "/v1/chat/completions", body("browser-model", "1")))
    c2:send(client.request_bytes("POST", "/v1/chat/completions", body("browser-model", "2")))
    assert.is_true(w:wait(function() return #held == 2 end, 2000))
    -- the third waits in the queue, then gets 429 in the client's format
    c3:send(client.request_bytes("POST", "/v1/messages", body("claude-ws-1", "3", { max_tokens = 5 })))
    local res = c3:read_response(3000)
    assert.equal(429, res.status)
    assert.equal("rate_limit_error", json.decode(res.body).error.type)
    assert.equal("error", json.decode(res.body).type)
    assert.truthy(res.headers["retry-after"])
    -- the held ones still complete
    for _, id in ipairs(held) do
      w:send(json.encode({ type = "completion_response", request_id = id, content = "late", finish_reason = "stop" }))
    end
    assert.equal(200, c1:read_response(3000).status)
    assert.equal(200, c2:read_response(3000).status)
    c1:close(); c2:close(); c3:close()
    w:close()
  end)

  it("answers 503 when no worker serving the model connects within wait_for_worker_ms", function()
    local res = s:request("POST", "/v1/chat/completions", body("claude-ws-nobody", "x"), nil, 5000)
    assert.equal(503, res.status)
    assert.equal("server_error", json.decode(res.body).error.type)
    assert.matches("no WS worker serving claude%-ws%-nobody", json.decode(res.body).error.message)
  end)

  it("hands a queued request to a worker that connects while it waits", function()
    local conn = s:connect()
    conn:send(client.request_bytes("POST", "/v1/chat/completions", body("claude-ws-late", "x")))
    client.run_until(function() return false end, 150)
    local w = worker(s.port, { models = { "claude-ws-late" }, answer = reply("just in time") })
    local res = conn:read_response(3000)
    assert.equal(200, res.status)
    assert.equal("just in time", json.decode(res.body).choices[1].message.content)
    conn:close()
    w:close()
  end)

  it("drops a worker that stops answering heartbeats, keeps one that answers", function()
    local alive = worker(s.port, { name = "alive" })
    local quiet = worker(s.port, { name = "quiet", silent = true })
    assert.is_true(wait_workers(s, 2))
    assert.is_true(quiet:wait(function(q) return q.closed end, 3000))
    assert.equal(4000, quiet.close_code)
    assert.equal("heartbeat timeout", quiet.close_reason)
    client.run_until(function() return false end, 300)
    local p = pool_state(s)
    assert.equal(1, #p.workers)
    assert.equal("alive", p.workers[1].name)
    assert.is_false(alive.closed)
    local beats = 0
    for _, m in ipairs(alive.seen) do if m.type == "heartbeat" then beats = beats + 1 end end
    assert.is_true(beats >= 3, "heartbeats seen: " .. beats)
    alive:close()
  end)

  it("moves a request to another worker when its worker dies before the first byte", function()
    local first = worker(s.port, { name = "first", answer = function(_, ws) ws:drop() end })
    assert.is_true(wait_workers(s, 1))
    local conn = s:connect()
    conn:send(client.request_bytes("POST", "/v1/chat/completions", body("browser-model", "x", { stream = true })))
    assert.is_true(first:wait(function(f) return f.closed end, 2000))
    local second = worker(s.port, { name = "second", answer = reply("second answer", { "second ", "answer" }) })
    local res = conn:read_response(3000)
    assert.equal(200, res.status)
    assert.matches('"content":"second "', res.body, 1, true)
    assert.matches("[DONE]", res.body, 1, true)
    assert.equal(1, #second.requests)
    conn:close()
    second:close()
  end)

  it("ends the stream with an in-format error when the worker dies after the first byte", function()
    local w = worker(s.port, { answer = function(m, ws)
      ws:send(json.encode({ type = "completion_chunk", request_id = m.request_id, content = "partial " }))
      local t = uv.new_timer() -- not ws:wait(): this runs inside a luv callback
      t:start(100, 0, function() t:close(); ws:drop() end)
    end })
    assert.is_true(wait_workers(s, 1))
    local res = s:request("POST", "/v1/messages", body("claude-ws-1", "x", { max_tokens = 20, stream = true }), nil, 4000)
    assert.equal(200, res.status)
    assert.matches('"text":"partial "', res.body, 1, true)
    assert.matches("event: error", res.body, 1, true)
    assert.matches("went away mid%-answer", res.body)
    assert.is_nil(res.body:find("message_stop", 1, true))
    -- OpenAI client, same failure
    local w2 = worker(s.port, { answer = w.answer })
    assert.is_true(wait_workers(s, 1))
    res = s:request("POST", "/v1/chat/completions", body("browser-model", "x", { stream = true }), nil, 4000)
    assert.equal(200, res.status)
    assert.matches('"content":"partial "', res.body, 1, true)
    assert.matches('"error":{', res.body, 1, true)
    w2:drop()
  end)

  it("answers unknown message types with an error and keeps the socket", function()
    local w = worker(s.port, { answer = reply("still here") })
    w:send('{"type":"bogus"}')
    w:send("not json")
    w:send('{"type":"completion_response","request_id":"wsreq_nobody","content":"x"}')
    assert.is_true(w:wait(function(x)
      local n = 0
      for _, m in ipairs(x.seen) do if m.type == "error" then n = n + 1 end end
      return n >= 2
    end, 2000))
    local errors = {}
    for _, m in ipairs(w.seen) do if m.type == "error" then errors[#errors + 1] = m.message end end
    assert.matches("unknown message type: bogus", errors[1], 1, true)
    assert.is_false(w.closed)
    local res = s:request("POST", "/v1/chat/completions", body("browser-model", "x"))
    assert.equal("still here", json.decode(res.body).choices[1].message.content)
    assert.matches("for unknown or finished request wsreq_nobody dropped", s.log, 1, true)
    w:close()
  end)

  it("tells the worker when the client goes away, and frees its slot", function()
    local w = worker(s.port, {})
    assert.is_true(wait_workers(s, 1))
    local conn = s:connect()
    conn:send(client.request_bytes("POST", "/v1/chat/completions", body("browser-model", "x", { stream = true })))
    assert.is_true(w:wait(function(x) return #x.requests == 1 end, 2000))
    conn:close()
    assert.is_true(w:wait(function(x) return #x.cancels == 1 end, 2000))
    assert.equal(w.requests[1].request_id, w.cancels[1])
    local p = pool_state(s)
    assert.equal(0, p.workers[1].in_flight)
    assert.equal(0, p.pending)
    w:close()
  end)

  it("serves HTTP requests on one thread from a worker on the other", function()
    local w = worker(s.port, { answer = reply("across threads") })
    assert.is_true(wait_workers(s, 1))
    local wthread = pool_state(s).workers[1].thread
    local other
    for _ = 1, 40 do
      local c = s:connect()
      c:send(client.request_bytes("GET", "/health"))
      local h = json.decode(c:read_response(2000).body)
      if h.thread ~= wthread then other = c break end
      c:close()
    end
    assert.truthy(other, "no connection landed on the other thread")
    other:send(client.request_bytes("POST", "/v1/chat/completions", body("browser-model", "x")))
    local res = other:read_response(3000)
    assert.equal("across threads", json.decode(res.body).choices[1].message.content)
    other:close()
    w:close()
  end)
end)

-- a refused socket opens, then closes at once with 4000 + the HTTP status
local function refused(port, path, headers)
  local ws = assert(W.connect(port, path, headers))
  ws:wait(function(x) return x.closed end, 2000)
  ws:close_tcp()
  return { ws.close_code, ws.close_reason }
end

describe("WS worker auth and origins", function()
  local s
  setup(function()
    s = helpers.start { workers = 2, config = [[
return { websocket = { worker_token = "tok-secret-123", allowed_origins = { "https://app.example.com" } } }]] }
  end)
  teardown(function()
    local log = s:stop_clean()
    assert.is_nil(log:find("tok-secret-123", 1, true))
  end)

  it("refuses a worker without the shared secret and takes one with it", function()
    assert.same({ 4401, "worker token missing or wrong" }, refused(s.port, "/ws"))
    assert.same({ 4401, "worker token missing or wrong" }, refused(s.port, "/ws", { Authorization = "Bearer wrong" }))
    for _, ws in ipairs { assert(W.connect(s.port, "/ws?token=tok-secret-123")),
                          assert(W.connect(s.port, "/ws", { Authorization = "Bearer tok-secret-123" })) } do
      ws:send(json.encode({ type = "client_ready" }))
      ws:wait(function() return false end, 100)
      assert.is_false(ws.closed)
      ws:close()
    end
  end)

  it("checks the Origin of browser sockets", function()
    assert.same({ 4403, "origin https://evil.example.net is not allowed" },
      refused(s.port, "/ws/c1", { Origin = "https://evil.example.net" }))
    local ok = assert(W.connect(s.port, "/ws/c1", { Origin = "https://app.example.com" }))
    ok:send('{"type":"ping"}')
    assert.equal("pong", json.decode(ok:next_message(2000)).type)
    ok:close()
    assert.same({ 4404, "no WebSocket endpoint at /ws/nested/path" }, refused(s.port, "/ws/nested/path"))
    -- a plain HTTP request for a WebSocket endpoint is told to upgrade
    for _, path in ipairs { "/ws", "/ws/c1" } do
      local res = s:request("GET", path)
      assert.equal(426, res.status)
      assert.equal("websocket", res.headers.upgrade)
      assert.equal("upgrade_required", json.decode(res.body).error.code)
    end
    -- an upgrade asked of a path without a WebSocket endpoint gets that
    -- path's plain answer, not 101
    local up = { Upgrade = "websocket", Connection = "Upgrade", ["Sec-WebSocket-Version"] = "13",
      ["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ==" }
    local res = s:request("GET", "/v1/models", nil, up)
    assert.equal(200, res.status)
    assert.equal("list", json.decode(res.body).object)
    res = s:request("GET", "/v1/chat/completions", nil, up)
    assert.equal(405, res.status)
  end)
end)

-- Flow control (docs/WEBSOCKETS.md): a worker that streams faster than its
-- client reads is not read while the client is behind, so the daemon holds
-- about the high-water mark and a message or two per stream, not the flood;
-- the held worker is not dropped for the heartbeats it cannot answer, and a
-- client that leaves lets it go.
describe("a WS worker flooding a client that does not read", function()
  local s
  local HW, MAX_MSG = 65536, 1024 * 1024
  local SMALL, LARGE = string.rep("~", 16 * 1024), string.rep("#", 900 * 1024)
  local N_SMALL, N_LARGE = 400, 40 -- 6.4 MB and 36 MB: far more than the kernel's socket buffers
  setup(function()
    s = helpers.start { workers = 2, config = string.format([[
return {
  stream_high_water = %d,
  -- (a heartbeat timeout that a sanitized daemon reading 900 KiB messages
  -- on a busy machine keeps; the hold below lasts three of them)
  websocket = { heartbeat_interval_ms = 200, heartbeat_timeout_ms = 1000, max_message_bytes = %d },
  providers = { pool = { kind = "ws" } },
}]], HW, MAX_MSG) }
  end)
  teardown(function() s:stop_clean() end)

  -- a frame with a zero mask (its payload as it is: masking 36 MB in Lua
  -- would make the spec, not the daemon, the slow side)
  local function zframe(payload)
    local len, head = #payload, nil
    if len < 65536 then
      head = string.char(0x81, 0x80 + 126, bit.rshift(len, 8), bit.band(len, 255))
    else
      head = string.char(0x81, 0x80 + 127, 0, 0, 0, 0, bit.band(bit.rshift(len, 24), 255),
        bit.band(bit.rshift(len, 16), 255), bit.band(bit.rshift(len, 8), 255), bit.band(len, 255))
    end
    return head .. "\0\0\0\0" .. payload
  end
  local function flood(m, ws)
    local small = zframe(json.encode({ type = "completion_chunk", request_id = m.request_id, content = SMALL }))
    local large = zframe(json.encode({ type = "completion_chunk", request_id = m.request_id, content = LARGE }))
    for _ = 1, N_SMALL do ws.tcp:write(small) end
    for _ = 1, N_LARGE do ws.tcp:write(large) end
    ws.tcp:write(zframe(json.encode({ type = "completion_response", request_id = m.request_id, content = "",
      finish_reason = "stop" })))
  end
  local function stream_request(c)
    c.count_only = true
    c.tildes, c.hashes = 0, 0
    c.on_data = function(data)
      c.tildes = c.tildes + select(2, data:gsub("~", ""))
      c.hashes = c.hashes + select(2, data:gsub("#", ""))
    end
    c:send(client.request_bytes("POST", "/v1/chat/completions", body("flood-model", "x", { stream = true })))
  end

  it("holds the daemon's memory to about the high-water mark while the client does not read, then delivers every byte", function()
    local w = worker(s.port, { models = { "flood-model" }, answer = flood })
    assert.is_true(wait_workers(s, 1))
    local sanitized = os.getenv("MOONGATE_WRAPPER") or os.getenv("ASAN_OPTIONS") or os.getenv("TSAN_OPTIONS")
    local base = helpers.rss_kib(s.pid)
    local c = s:connect()
    c:pause() -- reads nothing: the kernel's buffers fill, then the daemon's
    stream_request(c)
    local peak, st, prev = base, nil, -1
    -- the flood reaches the daemon, which stops reading the worker; 3 s
    -- (three heartbeat timeouts: the held worker must not be dropped)
    client.run_until(function()
      peak = math.max(peak, helpers.rss_kib(s.pid))
      return false
    end, 3000)
    client.run_until(function()
      st = json.decode(s:request("GET", "/stats").body)
      local settled = st.buffered_bytes == prev
      prev = st.buffered_bytes
      return settled
    end, 5000)
    -- one stream: the high-water mark twice (the client's queue and the
    -- messages on their way to it) and a message or two of at most MAX_MSG
    assert.is_true(st.buffered_bytes <= 2 * HW + 2 * MAX_MSG, "buffered " .. st.buffered_bytes)
    assert.is_false(w.closed, "the held worker was dropped")
    assert.equal(1, #pool_state(s).workers)
    if not sanitized then -- (a sanitizer keeps freed memory on purpose)
      -- (the flood is 42 MB; unflowed, the daemon held most of it)
      assert.is_true((peak - base) * 1024 < 16 * 1024 * 1024,
        string.format("%.1f MiB more resident while the client did not read", (peak - base) / 1024))
    end
    c:resume()
    local ended = c:wait(function(cc) return cc.buf:find("data: [DONE]", 1, true) end, 60000)
    assert.truthy(ended, "the stream never ended: " .. c.buf:sub(-300) .. "\n" .. s.log:sub(-6000))
    assert.equal(N_SMALL * #SMALL, c.tildes)
    assert.equal(N_LARGE * #LARGE, c.hashes)
    c:close()
    assert.is_false(w.closed)
    w:close()
  end)

  it("lets a held worker go when its client leaves, and it serves the next request", function()
    local w = worker(s.port, { models = { "flood-model" }, answer = flood })
    assert.is_true(wait_workers(s, 1))
    local c = s:connect()
    c:pause()
    stream_request(c)
    assert.is_true(w:wait(function(x) return #x.requests == 1 end, 2000))
    w:wait(function() return false end, 1000) -- held by now
    c:close()
    assert.is_true(w:wait(function(x) return #x.cancels == 1 end, 5000))
    -- the rest of the flood is read (and dropped: its request is gone), then
    -- the next request is served whole (a daemon under TSan takes a while)
    w.answer = reply("after the flood")
    local res = s:request("POST", "/v1/chat/completions", body("flood-model", "x"), nil, 60000)
    assert.truthy(res, "no answer after the flood")
    assert.equal(200, res.status)
    assert.equal("after the flood", json.decode(res.body).choices[1].message.content)
    assert.is_false(w.closed)
    w:close()
  end)
end)

describe("chat sockets", function()
  local s
  setup(function()
    s = helpers.start { workers = 2, config = [[
return {
  stream_high_water = 16384,
  websocket = { max_message_bytes = 2097152 },
  providers = { slow = { kind = "echo", chunk_delay_ms = 30 }, pool = { kind = "ws" } },
  routes = { { match = "slow", provider = "slow" }, { match = "tab-*", provider = "pool" } },
}]] }
  end)
  teardown(function() s:stop_clean() end)

  local function collect(ws)
    local out = { chunks = {} }
    ws:wait(function(x)
      while #x.messages > 0 do out[#out + 1] = json.decode(table.remove(x.messages, 1)) end
      for _, m in ipairs(out) do if m.type == "response_complete" or m.type == "error" then return true end end
      return false
    end, 5000)
    return out
  end

  it("streams an answer: response_start, chunks, response_complete with the whole text", function()
    local ws = assert(W.connect(s.port, "/ws/client-1"))
    ws:send(json.encode({ type = "chat_message", message = { role = "user", content = "one two three" },
      history = { { role = "user", content = "earlier" }, { role = "assistant", content = "ok" } } }))
    local msgs = collect(ws)
    assert.equal("response_start", msgs[1].type)
    local text = {}
    for i = 2, #msgs - 1 do
      assert.equal("response_chunk", msgs[i].type)
      assert.equal(msgs[1].id, msgs[i].id)
      text[#text + 1] = msgs[i].content
    end
    assert.equal("one two three", table.concat(text))
    assert.equal("response_complete", msgs[#msgs].type)
    assert.equal("one two three", msgs[#msgs].content)
    ws:send('{"type":"ping"}')
    assert.equal("pong", json.decode(ws:next_message(2000)).type)
    ws:send('{"type":"chat_message"}')
    local err = json.decode(ws:next_message(2000))
    assert.equal("error", err.type)
    assert.matches("needs a message", err.message)
    ws:send('{"type":"chat_message","message":"x","model":"no-such-model"}')
    err = json.decode(ws:next_message(2000))
    assert.equal("error", err.type)
    assert.matches("does not exist", err.message)
    ws:send('{"type":"whatever"}')
    assert.matches("unknown message type", json.decode(ws:next_message(2000)).message)
    ws:close()
  end)

  it("streams two answers on one socket at once, each tagged with its id", function()
    local ws = assert(W.connect(s.port, "/ws/client-2"))
    ws:send(json.encode({ type = "chat_message", id = "a", model = "slow", message = { content = "a1 a2 a3 a4 a5" } }))
    ws:send(json.encode({ type = "chat_message", id = "b", model = "slow", message = { content = "b1 b2 b3 b4 b5" } }))
    local order = {}
    local done = {}
    local texts = { a = {}, b = {} }
    ws:wait(function(x)
      while #x.messages > 0 do
        local m = json.decode(table.remove(x.messages, 1))
        order[#order + 1] = m.id
        if m.type == "response_chunk" then table.insert(texts[m.id], m.content) end
        if m.type == "response_complete" then done[m.id] = m.content end
      end
      return done.a and done.b
    end, 5000)
    assert.equal("a1 a2 a3 a4 a5", done.a)
    assert.equal("b1 b2 b3 b4 b5", done.b)
    assert.equal("a1 a2 a3 a4 a5", table.concat(texts.a))
    -- interleaved: b started before a completed
    local first_b, last_a
    for i, id in ipairs(order) do
      if id == "b" and not first_b then first_b = i end
      if id == "a" then last_a = i end
    end
    assert.is_true(first_b < last_a)
    ws:close()
  end)

  it("ends every answer when two wait on one socket's drain at once (a big one, then a small one)", function()
    -- the big answer's frames pass stream_high_water: it waits for the socket
    -- to drain, and the small one, answered meanwhile, waits too
    local ws = assert(W.connect(s.port, "/ws/client-drain"))
    local big = string.rep("x", 60000)
    for round = 1, 3 do
      ws:send(json.encode({ type = "chat_message", id = "big" .. round, message = { content = big } }))
      ws:send(json.encode({ type = "chat_message", id = "small" .. round, message = { content = "hi" } }))
      local done = {}
      ws:wait(function(x)
        while #x.messages > 0 do
          local m = json.decode(table.remove(x.messages, 1))
          if m.type == "response_complete" then done[m.id] = m.content end
        end
        return done["big" .. round] and done["small" .. round]
      end, 5000)
      assert.equal(big, done["big" .. round], "round " .. round .. ": the big answer never ended")
      assert.equal("hi", done["small" .. round])
    end
    ws:close()
  end)

  it("serves 200 sockets at once, each its own answer", function()
    local socks = {}
    for i = 1, 200 do
      socks[i] = assert(W.connect(s.port, "/ws/many-" .. i))
    end
    for i, ws in ipairs(socks) do
      ws:send(json.encode({ type = "chat_message", message = { content = "socket number " .. i } }))
    end
    local got = {}
    client.run_until(function()
      local n = 0
      for i, ws in ipairs(socks) do
        if not got[i] then
          for _, text in ipairs(ws.messages) do
            local m = json.decode(text)
            if m.type == "response_complete" then got[i] = m.content end
          end
        end
        if got[i] then n = n + 1 end
      end
      return n == 200
    end, 15000)
    for i = 1, 200 do assert.equal("socket number " .. i, got[i]) end
    for _, ws in ipairs(socks) do ws:close() end
  end)

  it("assembles large messages, whole or fragmented, and closes on one over the limit", function()
    local text = string.rep("abcdefgh ", 110000) -- about 1 MB
    for _, fragment in ipairs { false, 65536 } do
      local ws = assert(W.connect(s.port, "/ws/big"))
      local complete
      ws.on_message = function(m)
        if m:find('"response_complete"', 1, true) then complete = json.decode(m) end
        return false
      end
      ws:send(json.encode({ type = "chat_message", message = { content = text } }), fragment or nil)
      assert.is_true(ws:wait(function() return complete ~= nil end, 20000))
      assert.equal(text, complete.content)
      ws:close()
    end
    local ws = assert(W.connect(s.port, "/ws/too-big"))
    ws:send(json.encode({ type = "chat_message", message = { content = string.rep("x", 3 * 1024 * 1024) } }))
    assert.is_true(ws:wait(function(x) return x.closed end, 5000))
    assert.equal(1009, ws.close_code)
  end)

  it("takes a text message cut inside its UTF-8 characters, and closes with 1007 on one that is not UTF-8", function()
    local text = "caf\195\169 \240\159\152\128 \226\130\172 end"
    for _, fragment in ipairs { false, 1, 3 } do
      local ws = assert(W.connect(s.port, "/ws/utf8"))
      ws:send(json.encode({ type = "chat_message", message = { content = text } }), fragment or nil)
      local out = collect(ws)
      assert.equal("response_complete", out[#out].type)
      assert.equal(text, out[#out].content)
      ws:close()
    end
    -- a surrogate's encoding, then a lone continuation byte: whole, and cut
    for _, bad in ipairs { "a\237\160\128b", "x\128" } do
      for _, fragment in ipairs { false, 2 } do
        local ws = assert(W.connect(s.port, "/ws/not-utf8"))
        ws:send('{"type":"chat_message","message":{"content":"' .. bad .. '"}}', fragment or nil)
        assert.is_true(ws:wait(function(x) return x.closed end, 5000))
        assert.equal(1007, ws.close_code)
      end
    end
  end)

  it("holds a bounded outbox while a chat client does not read, then delivers everything", function()
    local words = 300000
    local ws = assert(W.connect(s.port, "/ws/slow-reader"))
    local chunks, complete = 0, nil
    ws.on_message = function(text)
      if text:find('"response_chunk"', 1, true) then chunks = chunks + 1 return false end
      if text:find('"response_complete"', 1, true) then complete = json.decode(text) return false end
    end
    ws:send(json.encode({ type = "chat_message", message = { content = string.rep("word ", words) } }))
    assert.is_true(ws:wait(function() return chunks > 0 end, 5000))
    ws:pause()
    local st, prev = nil, -1
    client.run_until(function()
      st = json.decode(s:request("GET", "/stats").body)
      local settled = st.buffered_bytes == prev and st.buffered_bytes > 0
      prev = st.buffered_bytes
      return settled
    end, 10000)
    -- the outbox (16 KiB high water) plus one message over the mark, and
    -- the cleartext relay's queue to the client (the same mark, plus one read)
    assert.is_true(st.buffered_bytes > 0)
    assert.is_true(st.buffered_bytes <= 4 * 16384, "buffered " .. st.buffered_bytes)
    assert.is_true(ws.received < 10 * 1024 * 1024, "received " .. ws.received)
    ws:resume()
    assert.is_true(ws:wait(function() return complete ~= nil end, 60000))
    assert.equal(words, chunks)
    assert.equal(string.rep("word ", words), complete.content)
    ws:close()
  end)

  it("cancels a socket's upstream requests when it closes", function()
    local w = worker(s.port, { models = { "tab-model" } }) -- holds every request
    assert.is_true(wait_workers(s, 1))
    local ws = assert(W.connect(s.port, "/ws/client-3"))
    ws:send(json.encode({ type = "chat_message", model = "tab-model", message = { content = "hold me" } }))
    assert.is_true(w:wait(function(x) return #x.requests == 1 end, 2000))
    assert.same({ { role = "user", content = "hold me" } }, w.requests[1].messages)
    ws:drop()
    assert.is_true(w:wait(function(x) return #x.cancels == 1 end, 2000))
    assert.equal(w.requests[1].request_id, w.cancels[1])
    w:close()
  end)
end)

-- A cleartext socket reaches lws through h1.c's relay (a socketpair): what
-- the Lua layer is told of its peer must still be the client's address.
describe("WS peer address through the cleartext relay", function()
  local s
  local function other_address() -- this machine's first address off loopback, if it has one
    for _, list in pairs(uv.interface_addresses()) do
      for _, a in ipairs(list) do
        if a.family == "inet" and not a.internal and not a.ip:find("^127%.") then return a.ip end
      end
    end
  end
  setup(function()
    s = helpers.start { workers = 1, listen = "0.0.0.0:0", config = [[return { websocket = {} }]] }
  end)
  teardown(function() s:stop_clean() end)

  it("takes a worker from 127.0.0.1 without a token, and refuses one from another address", function()
    local ws = assert(W.connect(s.port, "/ws"))
    ws:send(json.encode({ type = "client_ready" }))
    ws:wait(function() return false end, 100)
    assert.is_false(ws.closed) -- its peer is loopback: the client's, not the pair's ("")
    ws:close()
    local ip = other_address()
    if not ip then return end -- (a machine with loopback only)
    local far = assert(W.connect(s.port, "/ws", nil, ip))
    far:wait(function(x) return x.closed end, 2000)
    far:close_tcp()
    assert.same({ 4403, "pool workers from other machines need websocket.worker_token" },
      { far.close_code, far.close_reason })
  end)

  it("names the client's address when it refuses an unmasked frame with 1002", function()
    local ws = assert(W.connect(s.port, "/ws/peer-check"))
    ws.tcp:write(string.char(0x81, 2) .. "hi") -- no mask
    ws:wait(function(x) return x.closed end, 2000)
    ws:close_tcp()
    assert.equal(1002, ws.close_code)
    assert.truthy(s.log:find("WebSocket client 127.0.0.1 sent an unmasked frame", 1, true))
  end)
end)
