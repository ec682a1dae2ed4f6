-- Signals and daemon mode against the real binary: SIGTERM drains running
-- streams (up to shutdown_timeout, then an error event in the client's
-- format), workers stop in parallel (an idle daemon exits well under 1 s,
-- also with pooled upstream connections), SIGHUP no longer kills, and
-- --daemon / --pidfile / --log-file / SIGUSR1 / moongate reload and stop.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"
local uv = require "luv"
local W = require "support.ws_client"
local bit = require "bit"

local function echo_config(delay_ms, timeout_s)
  return string.format([[
return {
  shutdown_timeout = %s,
  providers = { slow = { kind = "echo", chunk_delay_ms = %d } },
  routes = { { match = "*", provider = "slow" } },
}]], tostring(timeout_s), delay_ms)
end

local words = helpers.words

-- a streamed chat request on its own connection, once its first bytes are in
local function open_stream(server, path, body)
  local conn = server:connect()
  assert(conn:send(client.request_bytes("POST", path, json.encode(body))))
  assert(conn:wait(function(c) return c.buf:find("\r\n\r\n", 1, true) and #c.buf > 200 end, 5000),
    "the stream did not start: " .. conn.buf)
  return conn
end

local function wait_exit(server, ms)
  client.run_until(function() return server.exited end, ms)
  return server.exited
end

-- the ms from a signal to the daemon's exit
local function time_to_exit(server, signal)
  local t0 = uv.hrtime()
  server.handle:kill(signal or "sigterm")
  assert(wait_exit(server, 10000), "the daemon did not exit")
  return (uv.hrtime() - t0) / 1e6
end

local function no_sanitizer_report(text)
  assert.is_nil(text:find("Sanitizer", 1, true), text)
  assert.is_nil(text:find("runtime error:", 1, true), text)
end

-- with_daemon(opts, fn): fn(server) against a daemon started with opts;
-- the daemon is stopped (whatever fn did) and its log searched for a
-- sanitizer's report
local function with_daemon(opts, fn)
  local s = helpers.start(opts)
  local ok, err = pcall(fn, s)
  local log = s:stop_clean()
  assert(ok, err)
  no_sanitizer_report(log)
end

describe("SIGTERM", function()
  it("lets a running stream finish, refusing new connections meanwhile, then exits 0", function()
    with_daemon({ config = echo_config(60, 10) }, function(s)
      local conn = open_stream(s, "/v1/chat/completions",
        { model = "m", stream = true, messages = { { role = "user", content = words(12) } } })
      s.handle:kill("sigterm")
      client.run_until(function() return s.log:find("still running") end, 3000)
      assert.matches("stopping: 1 request still running, waiting up to 10 s", s.log, 1, true)
      -- the listener is closed at once
      local c2 = client.connect(s.port)
      if c2 then -- the connect may race the close: then nothing answers on it
        assert(c2:send(client.request_bytes("GET", "/health")))
        assert.is_nil((c2:read_response(1000)))
        c2:close()
      end
      local res = assert(conn:read_response(8000))
      assert.equal(200, res.status)
      local text = {}
      for _, d in ipairs(client.sse_data(res.body)) do
        if d ~= "[DONE]" then
          local v = json.decode(d)
          assert.is_nil(v.error, d)
          local delta = v.choices and v.choices[1] and v.choices[1].delta
          if delta and delta.content then text[#text + 1] = delta.content end
        end
      end
      assert.equal(words(12), table.concat(text))
      assert.matches("data: [DONE]", res.body, 1, true)
      conn:close()
      assert(wait_exit(s, 5000), "the daemon did not exit after the stream ended")
      assert.equal(0, s.code)
      assert.matches("every request has finished", s.log, 1, true)
    end)
  end)

  it("answers a WebSocket upgrade that arrives during the drain with 503 (a session would outlive it)", function()
    with_daemon({ config = echo_config(60, 10) }, function(s)
      local conn = open_stream(s, "/v1/chat/completions",
        { model = "m", stream = true, messages = { { role = "user", content = words(12) } } })
      -- an upgrade whose head is half in when the drain starts
      local up = s:connect()
      assert(up:send("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"))
      client.run_until(function() return false end, 30)
      s.handle:kill("sigterm")
      client.run_until(function() return s.log:find("still running") end, 3000)
      assert(up:send("Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        .. "Sec-WebSocket-Version: 13\r\n\r\n"))
      local res = assert(up:read_response(3000))
      assert.equal(503, res.status)
      assert.matches("shutting down", res.body, 1, true)
      assert.equal(200, assert(conn:read_response(8000)).status)
      up:close()
      conn:close()
      assert(wait_exit(s, 5000), "the daemon did not exit after the stream ended")
      assert.equal(0, s.code)
    end)
  end)

  it("ends a stream that outlives shutdown_timeout with an error event in the client's format", function()
    with_daemon({ config = echo_config(200, 1) }, function(s)
      local an = open_stream(s, "/v1/messages", { model = "m", stream = true, max_tokens = 100,
        messages = { { role = "user", content = words(60) } } })
      local oa = open_stream(s, "/v1/chat/completions",
        { model = "m", stream = true, messages = { { role = "user", content = words(60) } } })
      local t0 = uv.hrtime()
      s.handle:kill("sigterm")
      local res = assert(an:read_response(6000))
      local took = (uv.hrtime() - t0) / 1e6
      assert.equal(200, res.status)
      assert(took >= 900 and took < 3000, "ended after " .. took .. " ms")
      assert.matches("event: error\ndata: ", res.body, 1, true)
      local last = res.body:match("event: error\ndata: ([^\n]+)")
      local e = json.decode(last)
      assert.equal("error", e.type)
      assert.matches("shutting down", e.error.message)
      assert.is_nil(res.body:find("message_stop", 1, true))
      local ores = assert(oa:read_response(6000))
      local frames = client.sse_data(ores.body)
      local found
      for _, d in ipairs(frames) do
        if d ~= "[DONE]" then
          local v = json.decode(d)
          if v.error then found = v.error end
        end
      end
      assert(found, ores.body)
      assert.matches("shutting down", found.message)
      an:close()
      oa:close()
      assert(wait_exit(s, 5000), "the daemon did not exit")
      assert.equal(0, s.code)
      assert.matches("shutdown_timeout (1 s) is over; ending 2 requests still running", s.log, 1, true)
    end)
  end)

  it("stops at once on a second signal during the drain", function()
    with_daemon({ config = echo_config(200, 30) }, function(s)
      local conn = open_stream(s, "/v1/chat/completions",
        { model = "m", stream = true, messages = { { role = "user", content = words(100) } } })
      s.handle:kill("sigterm")
      client.run_until(function() return s.log:find("still running") end, 3000)
      local ms = time_to_exit(s, "sigint")
      assert(ms < 1500, "exit took " .. ms .. " ms")
      assert.equal(0, s.code)
      assert.matches("while stopping: stopping at once", s.log, 1, true)
      conn:close()
    end)
  end)

  it("stops an idle daemon with 8 workers within 1 s", function()
    local s = helpers.start { workers = 8 }
    local ms = time_to_exit(s)
    local log = s:stop_clean()
    assert(ms < 1000, "exit took " .. ms .. " ms")
    assert.is_nil(log:find("handles still open", 1, true), log)
    print(string.format("\n  idle, 8 workers: exit %.0f ms after SIGTERM", ms))
  end)

  it("stops within 1 s with pooled upstream connections (after a proxied request)", function()
    local mock = helpers.mock()
    local s = helpers.start { workers = 8, config = string.format([[
return { providers = { up = { kind = "openai", base_url = %q, api_key = "k" } },
  routes = { { match = "*", provider = "up" } } }]], mock.url .. "/v1") }
    local ok, err = pcall(function()
      for _ = 1, 4 do
        local res = assert(s:request("POST", "/v1/chat/completions",
          json.encode { model = "m", messages = { { role = "user", content = "hi" } } }))
        assert.equal(200, res.status)
      end
      local ms = time_to_exit(s)
      assert(ms < 1000, "exit took " .. ms .. " ms")
      print(string.format("\n  8 workers after proxied requests: exit %.0f ms after SIGTERM", ms))
    end)
    local log = s:stop_clean()
    mock:stop()
    assert(ok, err)
    assert.is_nil(log:find("handles still open", 1, true), log)
  end)
end)

describe("SIGTERM with chat sockets and keep-alive clients", function()
  local function chat(ws, id, n)
    assert(ws:send(json.encode { type = "chat_message", id = id, model = "m", message = { content = words(n) } }))
  end

  -- the messages of one answer until its last (response_complete or error)
  local function answer_messages(ws, ms)
    local out = {}
    while true do
      local text = ws:next_message(ms)
      if not text then return out end
      local m = json.decode(text)
      out[#out + 1] = m
      if m.type == "response_complete" or m.type == "error" then return out end
    end
  end

  it("waits for a chat-socket answer that is running, then exits 0", function()
    with_daemon({ config = echo_config(60, 10) }, function(s)
      local ws = assert(W.connect(s.port, "/ws/tab-1"))
      chat(ws, "a1", 12)
      assert(ws:wait(function(x) return #x.messages > 0 end, 3000), "the answer did not start")
      s.handle:kill("sigterm")
      client.run_until(function() return s.log:find("still running") or s.exited end, 3000)
      assert.matches("stopping: 1 request still running", s.log, 1, true)
      local ms = answer_messages(ws, 5000)
      local last = ms[#ms]
      assert(last, "no message after SIGTERM")
      assert.equal("response_complete", last.type, json.encode(last))
      ws:close()
      assert(wait_exit(s, 5000), "the daemon did not exit after the answer ended")
      assert.equal(0, s.code)
      assert.matches("every request has finished", s.log, 1, true)
    end)
  end)

  it("ends a chat-socket answer that outlives shutdown_timeout with an error message", function()
    with_daemon({ config = echo_config(200, 1) }, function(s)
      local ws = assert(W.connect(s.port, "/ws/tab-2"))
      chat(ws, "a2", 60)
      assert(ws:wait(function(x) return #x.messages > 0 end, 3000), "the answer did not start")
      local t0 = uv.hrtime()
      s.handle:kill("sigterm")
      local ms = answer_messages(ws, 6000)
      local took = (uv.hrtime() - t0) / 1e6
      local last = ms[#ms]
      assert(last, "no error message before the socket closed")
      assert.equal("error", last.type, json.encode(last))
      assert.matches("shutting down", last.message)
      assert(took >= 900 and took < 3000, "ended after " .. took .. " ms")
      ws:close()
      assert(wait_exit(s, 5000), "the daemon did not exit")
      assert.equal(0, s.code)
      assert.matches("ending 1 request still running", s.log, 1, true)
    end)
  end)

  it("closes kept-alive connections: idle ones at once, busy ones after their answer", function()
    with_daemon({ config = echo_config(100, 10) }, function(s)
      local idle = assert(s:connect())
      assert(idle:send(client.request_bytes("GET", "/health")))
      local h = assert(idle:read_response(3000))
      assert.equal(200, h.status)
      local busy = assert(s:connect())
      assert(busy:send(client.request_bytes("GET", "/health")))
      assert.equal(200, assert(busy:read_response(3000)).status)
      -- the next request on it runs while the daemon is told to stop
      assert(busy:send(client.request_bytes("POST", "/v1/chat/completions",
        json.encode { model = "m", messages = { { role = "user", content = words(10) } } })))
      client.run_until(function() return false end, 150)
      s.handle:kill("sigterm")
      client.run_until(function() return s.log:find("still running") or s.exited end, 3000)
      assert.matches("stopping: 1 request still running", s.log, 1, true)
      assert(idle:wait(function(c) return c.eof end, 2000), "the idle kept-alive connection stayed open")
      local res = assert(busy:read_response(5000))
      assert.equal(200, res.status)
      assert.equal("close", res.headers.connection)
      assert(busy:wait(function(c) return c.eof end, 2000), "the connection stayed open after its last answer")
      assert(wait_exit(s, 2000), "the daemon did not exit soon after the request ended")
      assert.equal(0, s.code)
      idle:close()
      busy:close()
    end)
  end)

  it("answers a request that begins after shutdown_timeout with 503 and Connection: close", function()
    with_daemon({ config = echo_config(200, 1) }, function(s)
      local conn = open_stream(s, "/v1/chat/completions",
        { model = "m", stream = true, messages = { { role = "user", content = words(60) } } })
      local late = assert(s:connect())
      assert(late:send("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
      s.handle:kill("sigterm")
      client.run_until(function() return s.log:find("is over") or s.exited end, 4000)
      assert.matches("shutdown_timeout (1 s) is over", s.log, 1, true)
      local body = json.encode { model = "m", messages = { { role = "user", content = "hi" } } }
      assert(late:send("Content-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body))
      local res = assert(late:read_response(3000))
      assert.equal(503, res.status)
      assert.equal("close", res.headers.connection)
      local e = json.decode(res.body)
      assert.matches("shutting down", e.error.message)
      conn:close()
      late:close()
      assert(wait_exit(s, 5000), "the daemon did not exit")
      assert.equal(0, s.code)
    end)
  end)
end)

describe("early signals", function()
  -- SigIgn of /proc/<pid>/status has SIGPIPE (13): moongate's own start
  -- (mg_main) is under way, its serve loop not yet
  local function ignores_sigpipe(pid)
    local f = io.open("/proc/" .. pid .. "/status")
    if not f then return false end
    local t = f:read("*a")
    f:close()
    local hex = t:match("SigIgn:%s*(%x+)")
    return hex ~= nil and bit.band(tonumber(hex:sub(-4), 16), 0x1000) ~= 0
  end

  it("SIGHUP and SIGUSR1 before the daemon listens do not end it", function()
    local args = { "serve", "--listen", "127.0.0.1:0", "--workers", "1" }
    local env = { "PATH=" .. (os.getenv("PATH") or "/usr/bin:/bin"),
      "MOONGATE_LUA_DIR=" .. (os.getenv("MOONGATE_LUA_DIR") or "lua") }
    for _, name in ipairs { "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS" } do
      if os.getenv(name) then env[#env + 1] = name .. "=" .. os.getenv(name) end
    end
    local errp = uv.new_pipe(false)
    local log, code, sig = "", nil, nil
    local h, pid = assert(uv.spawn(helpers.bin, { args = args, env = env, stdio = { nil, nil, errp } },
      function(c, sg) code, sig = c, sg end))
    errp:read_start(function(_, d) if d then log = log .. d end end)
    -- a tight wait (not the loop's): the signals come within microseconds
    -- of mg_main's first lines, long before the serve loop is set up
    local deadline = uv.hrtime() + 10e9
    while not ignores_sigpipe(pid) and uv.hrtime() < deadline do end
    uv.kill(pid, "sighup")
    uv.kill(pid, "sigusr1")
    client.run_until(function() return code or log:find("listening", 1, true) end, 15000)
    assert.is_nil(code, "exited with " .. tostring(code) .. " signal " .. tostring(sig) .. ": " .. log)
    assert(log:find("listening", 1, true), log)
    local port = tonumber(log:match("listening on http://127.0.0.1:(%d+)"))
    assert.equal(200, assert(client.request(port, "GET", "/health")).status)
    uv.kill(pid, "sigterm")
    client.run_until(function() return code ~= nil end, 10000)
    if not h:is_closing() then h:close() end
    errp:close()
    uv.run("nowait")
    assert.equal(0, code)
    no_sanitizer_report(log)
  end)
end)

describe("SIGHUP", function()
  it("reloads each worker's scripts, and the daemon keeps serving (reload_spec.lua: the rest)", function()
    local s = helpers.start { workers = 2 }
    for k = 1, 2 do
      s.handle:kill("sighup")
      assert.is_true(client.run_until(function()
        local _, n = s.log:gsub("reloaded in [%d.]+ ms", "")
        return n == 2 * k
      end, 5000))
      assert.is_false(s.exited)
      local res = assert(s:request("GET", "/health"))
      assert.equal(200, res.status)
      assert.is_true(json.decode(res.body).reload.ok)
    end
    local _, n = s.log:gsub("SIGHUP: reloading", "")
    assert.equal(2, n)
    s:stop_clean()
  end)
end)

-- --daemon runs detached: not our child, so it is watched through its
-- pidfile and its log file
describe("--daemon", function()
  local dir, pidfile, logfile, pid

  local function env()
    local e = { "PATH=" .. (os.getenv("PATH") or "/usr/bin:/bin"),
      "MOONGATE_LUA_DIR=" .. (os.getenv("MOONGATE_LUA_DIR") or "lua") }
    for _, name in ipairs { "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS" } do
      if os.getenv(name) then e[#e + 1] = name .. "=" .. os.getenv(name) end
    end
    return e
  end

  -- runs the binary to its end -> exit code, stdout .. stderr
  local function run(args)
    local out, err = uv.new_pipe(false), uv.new_pipe(false)
    local text, code = "", nil
    local h = assert(uv.spawn(helpers.bin, { args = args, env = env(), stdio = { nil, out, err } },
      function(c) code = c end))
    local function keep(_, d) if d then text = text .. d end end
    out:read_start(keep)
    err:read_start(keep)
    client.run_until(function() return code ~= nil end, 30000)
    client.run_until(function() return false end, 30)
    for _, p in ipairs { out, err, h } do
      if not p:is_closing() then p:close() end
    end
    uv.run("nowait") -- the close callbacks, before busted moves on
    return code, text
  end

  local function read(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local t = f:read("*a")
    f:close()
    return t
  end

  -- (a zombie has exited: a pid 1 that is slow to reap leaves it a while)
  local function alive(p)
    local ok, _, name = uv.kill(p, 0)
    if not (ok ~= nil or name == "EPERM") then return false end
    local f = io.open("/proc/" .. p .. "/stat", "rb")
    local stat = f and f:read("*l") or ""
    if f then f:close() end
    return stat:match("^%d+ %b() (%a)") ~= "Z"
  end

  local function wait_for(path, needle, ms)
    return client.run_until(function() local t = read(path) return t and t:find(needle, 1, true) end, ms or 5000)
  end

  setup(function()
    dir = helpers.scratch()
    local work = dir.fresh().work
    pidfile, logfile = work .. "/moongate.pid", work .. "/moongate.log"
  end)
  teardown(function()
    if pid and alive(pid) then uv.kill(pid, "sigkill") end
    dir.remove()
  end)

  it("detaches, writes its pidfile, reloads, reopens its log on SIGUSR1 and removes the pidfile at exit", function()
    local code, text = run { "serve", "--daemon", "--pidfile", pidfile, "--log-file", logfile,
      "--listen", "127.0.0.1:0", "--workers", "2" }
    assert.equal(0, code, text)
    pid = tonumber((read(pidfile) or ""):match("^(%d+)\n$"))
    assert(pid, "no pid in the pidfile")
    assert(alive(pid))
    local port = tonumber((read(logfile) or ""):match("listening on http://127.0.0.1:(%d+) with 2 workers %(daemon%)"))
    assert(port, read(logfile))
    assert.equal(200, assert(client.request(port, "GET", "/health")).status)

    -- a second daemon with the same pidfile is refused on the terminal
    local code2, text2 = run { "serve", "--daemon", "--pidfile", pidfile, "--listen", "127.0.0.1:0" }
    assert.equal(1, code2)
    assert.matches("names a running process %(pid " .. pid .. "%)", text2)
    assert.equal(pid, tonumber(read(pidfile):match("%d+")))

    -- moongate reload: SIGHUP; the daemon keeps serving
    local rcode, rtext = run { "reload", "--pidfile", pidfile }
    assert.equal(0, rcode, rtext)
    assert(wait_for(logfile, "SIGHUP: reloading"), read(logfile))
    assert(wait_for(logfile, "reloaded in"), read(logfile))
    assert.equal(200, assert(client.request(port, "GET", "/health")).status)
    assert(alive(pid))

    -- logrotate: move the file, SIGUSR1, new lines go to a new file
    assert(os.rename(logfile, logfile .. ".1"))
    uv.kill(pid, "sigusr1")
    assert(wait_for(logfile, "log file reopened"), "no new log file")
    assert.equal(200, assert(client.request(port, "GET", "/health?after")).status)
    assert(wait_for(logfile, 'path="/health?after"') or wait_for(logfile, "/health"), read(logfile))
    local old = read(logfile .. ".1")
    assert.is_nil(old:find("after", 1, true), old)
    assert.is_nil(old:find("log file reopened", 1, true))

    -- moongate stop: SIGTERM, waits; the pidfile is gone
    local scode, stext = run { "stop", "--pidfile", pidfile }
    assert.equal(0, scode, stext)
    assert.is_false(alive(pid))
    assert.is_nil(read(pidfile))
    local log = read(logfile)
    assert.matches("signal 15: stopping", log, 1, true)
    assert.matches("stopped", log, 1, true)
    no_sanitizer_report(log .. old)
    -- the pid is gone: reload says so
    local ncode, ntext = run { "reload", "--pidfile", pidfile }
    assert.equal(1, ncode)
    assert.matches("moongate reload:", ntext, 1, true)
  end)

  it("exits non-zero with the daemon's reason when it cannot listen", function()
    -- take a port, then ask the daemon for it
    local tcp = uv.new_tcp()
    assert(tcp:bind("127.0.0.1", 0))
    assert(tcp:listen(8, function() end))
    local port = tcp:getsockname().port
    local code, text = run { "serve", "--daemon", "--pidfile", pidfile, "--log-file", logfile,
      "--listen", "127.0.0.1:" .. port, "--workers", "1" }
    tcp:close()
    assert.equal(1, code, text)
    assert.matches("could not start serving on 127.0.0.1:" .. port, text, 1, true)
    assert.matches("Address already in use", text, 1, true)
    assert(client.run_until(function() return read(pidfile) == nil end, 3000), "the pidfile stayed")
  end)

  -- starts the binary, not waiting -> a table whose code is set at its exit
  local function start_run(args)
    local r = { text = "" }
    local out, err = uv.new_pipe(false), uv.new_pipe(false)
    r.h = assert(uv.spawn(helpers.bin, { args = args, env = env(), stdio = { nil, out, err } },
      function(c) r.code = c end))
    out:read_start(function(_, d) if d then r.text = r.text .. d end end)
    err:read_start(function(_, d) if d then r.text = r.text .. d end end)
    r.pipes = { out, err }
    return r
  end

  it("lets one of two daemons started at once with the same pidfile run", function()
    local a = start_run { "serve", "--daemon", "--pidfile", pidfile, "--log-file", logfile .. ".a",
      "--listen", "127.0.0.1:0" }
    local b = start_run { "serve", "--daemon", "--pidfile", pidfile, "--log-file", logfile .. ".b",
      "--listen", "127.0.0.1:0" }
    client.run_until(function() return a.code and b.code end, 30000)
    client.run_until(function() return false end, 30)
    for _, r in ipairs { a, b } do
      for _, p in ipairs { r.pipes[1], r.pipes[2], r.h } do
        if not p:is_closing() then p:close() end
      end
    end
    uv.run("nowait")
    pid = tonumber((read(pidfile) or ""):match("^(%d+)\n$"))
    local ok = (a.code == 0 and 1 or 0) + (b.code == 0 and 1 or 0)
    local loser = a.code ~= 0 and a or b
    -- stop the one the pidfile names (and, before the fix, the other too)
    local scode, stext = run { "stop", "--pidfile", pidfile }
    assert.equal(0, scode, stext)
    assert.equal(1, ok, "exit codes " .. tostring(a.code) .. " and " .. tostring(b.code) .. ": " .. a.text .. b.text)
    assert.equal(1, loser.code)
    assert.matches("pidfile", loser.text, 1, true)
    assert.is_nil(read(pidfile))
  end)

  it("refuses to start while another process holds the pidfile's lock", function()
    -- a daemon between its start and its pidfile write looks like this: a
    -- pidfile naming no live process, locked
    local ffi = require "ffi"
    pcall(ffi.cdef, "int open(const char *, int, int); int flock(int, int); int close(int);")
    local f = assert(io.open(pidfile, "wb"))
    f:write("4194000\n")
    f:close()
    local fd = ffi.C.open(pidfile, 1, 0) -- O_WRONLY
    assert(fd >= 0)
    assert.equal(0, ffi.C.flock(fd, 2 + 4)) -- LOCK_EX | LOCK_NB
    local code, text = run { "serve", "--daemon", "--pidfile", pidfile, "--log-file", logfile,
      "--listen", "127.0.0.1:0" }
    ffi.C.close(fd)
    if code == 0 then -- before the fix: it started; stop it
      pid = tonumber((read(pidfile) or ""):match("^(%d+)\n$"))
      run { "stop", "--pidfile", pidfile }
    end
    assert.equal(1, code, text)
    assert.matches("is held by another running moongate", text, 1, true)
    assert.equal("4194000\n", read(pidfile))
    os.remove(pidfile)
  end)

  it("keeps no descriptor of its caller (a pipe reader sees EOF once it has started)", function()
    local sh = string.format("( %s serve --daemon --pidfile %s --log-file %s --listen 127.0.0.1:0 3>&1 ) | cat",
      helpers.shell_quote(helpers.bin), helpers.shell_quote(pidfile), helpers.shell_quote(logfile))
    local code, text
    local t0 = uv.hrtime()
    local out = uv.new_pipe(false)
    local h = assert(uv.spawn("sh", { args = { "-c", sh }, env = env(), stdio = { nil, out, nil } },
      function(c) code = c end))
    text = ""
    out:read_start(function(_, d) if d then text = text .. d end end)
    client.run_until(function() return code ~= nil end, 10000)
    local ms = (uv.hrtime() - t0) / 1e6
    if not out:is_closing() then out:close() end
    if not h:is_closing() then h:close() end
    uv.run("nowait")
    pid = tonumber((read(pidfile) or ""):match("^(%d+)\n$"))
    assert(pid, "no daemon: " .. text)
    local scode, stext = run { "stop", "--pidfile", pidfile }
    assert.equal(0, scode, stext)
    assert.equal(0, code, "the caller's pipe stayed open (" .. ms .. " ms): " .. text)
  end)

  it("signals only a moongate process: a stale pidfile naming another program is refused", function()
    local sleeper = assert(uv.spawn("sleep", { args = { "30" } }, function() end))
    local pidfile = os.tmpname()
    local f = assert(io.open(pidfile, "w"))
    f:write(tostring(sleeper:get_pid()), "\n")
    f:close()
    local code, text = run { "stop", "--pidfile", pidfile }
    local rcode = run { "reload", "--pidfile", pidfile }
    local alive = uv.kill(sleeper:get_pid(), 0)
    sleeper:kill("sigkill")
    sleeper:close()
    os.remove(pidfile)
    assert.equal(1, code)
    assert.equal(1, rcode)
    assert.matches("is not a moongate daemon; not signalled", text, 1, true)
    assert.truthy(alive) -- untouched
  end)

  it("rejects usage errors with exit code 2", function()
    local code, text = run { "reload" }
    assert.equal(2, code)
    assert.matches("--pidfile FILE is required", text, 1, true)
  end)
end)
