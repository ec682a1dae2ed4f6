-- Signals and daemon mode against the real binary: SIGTERM drains running
-- streams (up to shutdown_timeout, then an error event in the client's
-- format), workers stop in parallel (an idle daemon exits well under 1 s,
-- also with pooled upstream connections), SIGHUP no longer kills, and
-- --daemon / --pidfile / --log-file / SIGUSR1 / moongate reload and stop.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"
local uv = require "luv"

local function echo_config(delay_ms, timeout_s)
  return string.format([[
return {
  shutdown_timeout = %s,
  providers = { slow = { kind = "echo", chunk_delay_ms = %d } },
  routes = { { match = "*", provider = "slow" } },
}]], tostring(timeout_s), delay_ms)
end

local function words(n)
  local t = {}
  for i = 1, n do t[i] = "w" .. i end
  return table.concat(t, " ")
end

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

describe("SIGTERM", function()
  it("lets a running stream finish, refusing new connections meanwhile, then exits 0", function()
    local s = helpers.start { config = echo_config(60, 10) }
    local ok, err = pcall(function()
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
    local log = s:stop_clean()
    assert(ok, err)
    no_sanitizer_report(log)
  end)

  it("ends a stream that outlives shutdown_timeout with an error event in the client's format", function()
    local s = helpers.start { config = echo_config(200, 1) }
    local ok, err = pcall(function()
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
    local log = s:stop_clean()
    assert(ok, err)
    no_sanitizer_report(log)
  end)

  it("stops at once on a second signal during the drain", function()
    local s = helpers.start { config = echo_config(200, 30) }
    local ok, err = pcall(function()
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
    local log = s:stop_clean()
    assert(ok, err)
    no_sanitizer_report(log)
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

describe("SIGHUP", function()
  it("is logged and the daemon keeps serving", function()
    local s = helpers.start { workers = 2 }
    for _ = 1, 2 do
      s.handle:kill("sighup")
      client.run_until(function() return false end, 100)
      assert.is_false(s.exited)
      local res = assert(s:request("GET", "/health"))
      assert.equal(200, res.status)
    end
    local _, n = s.log:gsub("reload requested", "")
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

  local function alive(p)
    local ok, _, name = uv.kill(p, 0)
    return ok ~= nil or name == "EPERM"
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
    assert(wait_for(logfile, "reload requested"), read(logfile))
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

  it("rejects usage errors with exit code 2", function()
    local code, text = run { "reload" }
    assert.equal(2, code)
    assert.matches("--pidfile FILE is required", text, 1, true)
  end)
end)
