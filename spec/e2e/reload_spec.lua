-- Hot reload against the real binary: SIGHUP and a watched file make each
-- worker load the scripts again; requests and streams under way finish on
-- the state they started on, new ones see the change at once, nothing is
-- lost; a script that fails to load or fails the check is kept out and
-- /health says why; WebSockets move to the new state; the old states close.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"
local uv = require "luv"
local W = require "support.ws_client"

-- A provider kind on lua_path: the echo provider, its answer led by "vN ".
-- `extra` is put at the top of the module (a syntax error, an error at load).
local function kind_source(version, extra)
  return string.format([[
local echo = require "moongate.providers.echo"
%s
local M = { schema = echo.schema }
function M.new(name, conf)
  local p = echo.new(name, conf)
  local start = p.start
  function p.start(self, creq, sink)
    local first = true
    local tagged = setmetatable({ emit = function(ev)
      if first and ev.type == "text_delta" then
        first = false
        ev = { type = "text_delta", text = %q .. ev.text }
      end
      return sink.emit(ev)
    end }, { __index = sink })
    return start(self, creq, tagged)
  end
  return p
end
return M
]], extra or "", "v" .. version .. " ")
end

-- a scratch lua_path with moongate/providers/versioned.lua in it
local function script_dir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. "/moongate/providers") == 0)
  return dir
end

-- writes the kind's file whole (a new file renamed over the old, as editors do)
local function write_kind(dir, text)
  local path = dir .. "/moongate/providers/versioned.lua"
  local f = assert(io.open(path .. ".tmp", "wb"))
  f:write(text)
  f:close()
  assert(os.rename(path .. ".tmp", path))
end

-- script_timeout_ms: the default, or a minute under valgrind (MOONGATE_WRAPPER),
-- where a load takes 50 times as long
local SLOW_BUDGET = (os.getenv("MOONGATE_WRAPPER") or "") ~= "" and 60000 or 2000

local function config(dir, opts)
  opts = opts or {}
  return string.format([[
return {
  lua_path = %q,
  watch = %s,
  script_timeout_ms = %d,
  providers = { v = { kind = "versioned", chunk_delay_ms = %d }, pool = { kind = "ws" } },
  routes = { { match = "browser-*", provider = "pool" }, { match = "*", provider = "v" } },
}]], dir .. "/?.lua", tostring(opts.watch == true), opts.budget or SLOW_BUDGET, opts.delay or 0)
end

local function chat(text, stream)
  return json.encode({ model = "m", messages = { { role = "user", content = text } }, stream = stream or nil })
end

-- the text of a chat answer, whole or streamed; nil when it is not a
-- complete, successful one
local function answer_text(res)
  if not res or res.status ~= 200 or not res.complete then return nil end
  if (res.headers["content-type"] or ""):find("event-stream", 1, true) then
    local parts, done = {}, false
    for _, d in ipairs(client.sse_data(res.body)) do
      if d == "[DONE]" then
        done = true
      else
        local c = json.decode(d)
        local delta = c and c.choices and c.choices[1] and c.choices[1].delta
        if delta and delta.content then parts[#parts + 1] = delta.content end
      end
    end
    return done and table.concat(parts) or nil
  end
  local out = json.decode(res.body)
  return out and out.choices and out.choices[1].message.content
end

-- the log lines of applied reloads so far, and of failed ones
local function reloads(server)
  local log = server.log
  local ok, failed, ms = 0, 0, {}
  for t in log:gmatch("reloaded in ([%d.]+) ms") do
    ok = ok + 1
    ms[#ms + 1] = tonumber(t)
  end
  for _ in log:gmatch("reload failed, the old scripts keep serving") do failed = failed + 1 end
  return ok, failed, ms
end

local function wait_reloads(server, ok_n, failed_n)
  return client.run_until(function()
    local ok, failed = reloads(server)
    return ok >= ok_n and failed >= (failed_n or 0)
  end, 10000)
end

local function health(server)
  return json.decode(server:request("GET", "/health").body)
end

-- asks /health on fresh connections (either worker may answer) until every
-- answer says one live Lua state
local function old_states_closed(server)
  return client.run_until(function()
    for _ = 1, 6 do
      local h = health(server)
      if h.reload.lua_states ~= 1 then return false end
    end
    return true
  end, 5000)
end

local words = helpers.words

-- started(workers, version [, cfg]) -> the daemon with the versioned kind
-- (version) on a scratch lua_path, and that path; both go when the test ends
local function started(workers, version, cfg)
  local dir = script_dir()
  write_kind(dir, kind_source(version))
  local s = helpers.start { workers = workers, config = cfg and cfg(dir) or config(dir) }
  finally(function() s:stop(); os.execute("rm -rf " .. dir) end)
  return s, dir
end

local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

describe("hot reload", function()
  it("applies 20 script changes under 50 streams and a steady load: nothing fails, each change shows at once", function()
    local s, dir = started(2, 0, function(d) return config(d, { delay = 10 }) end)

    local prompt = words(40) -- about 0.4 s a stream
    local streams, steady = {}, {}
    local stats = { streams = 0, requests = 0, failed = {} }
    local applied = 0 -- the last version both workers have swapped in

    local function open_stream()
      local c = s:connect()
      c.want = "v%d+ " .. prompt
      c.sent_at = applied
      assert(c:send(client.request_bytes("POST", "/v1/chat/completions", chat(prompt, true))))
      return c
    end
    local function send_steady(c)
      c.sent_at = applied
      assert(c:send(client.request_bytes("POST", "/v1/chat/completions", chat("hi there"))))
    end
    -- checks what came in; opens the next stream or request while `running`
    local running = true
    local function pump()
      for i, c in pairs(streams) do
        local st = c:response_state()
        if (st and st.complete) or c.eof then
          local text = answer_text(st)
          local v = text and tonumber(text:match("^v(%d+) "))
          if not (v and text:match("^" .. c.want .. "$") and v >= c.sent_at) then
            stats.failed[#stats.failed + 1] = "stream: " .. tostring(st and st.status) .. " " .. tostring(text)
          end
          stats.streams = stats.streams + 1
          c:close()
          streams[i] = running and open_stream() or nil
        end
      end
      for _, c in ipairs(steady) do
        local st = c:response_state()
        if st and st.complete and not c.idle then
          local text = answer_text(st)
          local v = text and tonumber(text:match("^v(%d+) hi there$"))
          if not (v and v >= c.sent_at) then
            stats.failed[#stats.failed + 1] = "request: " .. tostring(st.status) .. " " .. tostring(text)
          end
          stats.requests = stats.requests + 1
          c:read_response(0)
          if running then send_steady(c) else c.idle = true end
        elseif c.eof and not c.idle then
          stats.failed[#stats.failed + 1] = "request: connection closed"
          c.idle = true
        end
      end
    end
    local function run_for(ms, pred)
      return client.run_until(function()
        pump()
        return pred and pred() or false
      end, ms)
    end

    for i = 1, 50 do streams[i] = open_stream() end
    for i = 1, 4 do
      steady[i] = s:connect()
      send_steady(steady[i])
    end
    run_for(200)

    for k = 1, 20 do
      write_kind(dir, kind_source(k))
      s.handle:kill("sighup")
      assert.is_true(run_for(10000, function() return (reloads(s)) >= 2 * k end), "reload " .. k .. " did not apply")
      applied = k -- anything sent from now on sees vk or later
      -- the change is visible at once, on both workers
      for _ = 1, 4 do
        local res = s:request("POST", "/v1/chat/completions", chat("hi there"))
        assert.equal("v" .. k .. " hi there", answer_text(res))
      end
      run_for(60)
    end
    running = false
    assert.is_true(run_for(15000, function()
      for _, c in ipairs(steady) do if not c.idle then return false end end
      return next(streams) == nil
    end), "the last streams did not end")
    for _, c in ipairs(steady) do c:close() end

    assert.same({}, stats.failed)
    assert.is_true(stats.streams >= 100, "streams: " .. stats.streams)
    assert.is_true(stats.requests >= 100, "requests: " .. stats.requests)
    local ok, failed, ms = reloads(s)
    assert.equal(40, ok)
    assert.equal(0, failed)
    -- the old states closed once what they served was over
    assert.is_true(old_states_closed(s))
    -- reported, not asserted (a sanitizer build is slower): docs/RELOAD.md
    local trial = {}
    for t in s.log:gmatch("passed their trial load in ([%d.]+) ms") do trial[#trial + 1] = tonumber(t) end
    assert.equal(20, #trial)
    print(string.format("\n    reload under load: %d streams and %d requests, 20 reloads (2 workers): trial load median %.1f ms"
      .. " (max %.1f), then each worker's load median %.1f ms (max %.1f)",
      stats.streams, stats.requests, median(trial), trial[#trial], median(ms), ms[#ms]))
    s:stop_clean()
  end)

  it("keeps a script that does not load, or fails the check, out: the old one serves and /health says why", function()
    local s, dir = started(2, 1)
    assert.equal("v1 hi", answer_text(s:request("POST", "/v1/chat/completions", chat("hi"))))
    assert.is_true(health(s).reload.ok)

    -- a syntax error (half a string, as a key might be): the token is not shown
    write_kind(dir, kind_source(2, 'local secret = "sk-half-typed-key'))
    s.handle:kill("sighup")
    assert.is_true(wait_reloads(s, 0, 1))
    assert.equal("v1 hi", answer_text(s:request("POST", "/v1/chat/completions", chat("hi"))))
    local h = health(s)
    assert.is_false(h.reload.ok)
    assert.matches("versioned", h.reload.error)
    assert.matches("unfinished string", h.reload.error)
    assert.is_number(h.reload.at)
    assert.is_nil(s.log:find("sk-half-typed-key", 1, true))
    assert.is_nil(h.reload.error:find("sk-half", 1, true))

    -- an error while it loads
    write_kind(dir, kind_source(3, 'error("the script refuses to load")'))
    s.handle:kill("sighup")
    assert.is_true(wait_reloads(s, 0, 2))
    assert.equal("v1 hi", answer_text(s:request("POST", "/v1/chat/completions", chat("hi"))))
    assert.matches("the script refuses to load", health(s).reload.error)

    -- it loads, but translating the canned request raises: the check keeps it out
    write_kind(dir, kind_source(4):gsub("return M\n$", "") .. [[
-- (appended) an adapter that raises on every request
local new = M.new
M.new = function(name, conf)
  local p = new(name, conf)
  p.adapter = { request = function() error("adapter broken") end }
  return p
end
return M
]])
    s.handle:kill("sighup")
    assert.is_true(wait_reloads(s, 0, 4))
    assert.equal("v1 hi", answer_text(s:request("POST", "/v1/chat/completions", chat("hi"))))
    local err = health(s).reload.error
    assert.matches("check of the loaded scripts failed", err)
    assert.matches("adapter broken", err)

    -- fixed: the next reload applies and /health is ok again
    write_kind(dir, kind_source(5))
    s.handle:kill("sighup")
    assert.is_true(wait_reloads(s, 2, 4))
    assert.equal("v5 hi", answer_text(s:request("POST", "/v1/chat/completions", chat("hi"))))
    h = health(s)
    assert.is_true(h.reload.ok)
    assert.is_nil(h.reload.error)
    assert.is_number(h.reload.ms)
    assert.is_true(old_states_closed(s))
    s:stop_clean()
  end)

  it("tries new scripts on a thread of their own first: one that loops at load never holds up a worker", function()
    local s, dir = started(2, 1, function(d) return config(d, { budget = 400 }) end)
    write_kind(dir, kind_source(2, "while true do end"))
    s.handle:kill("sighup")
    client.run_until(function() return false end, 50)
    -- served while the trial load loops (it is stopped only after 400 ms)
    for _ = 1, 4 do
      assert.equal("v1 hi", answer_text(s:request("POST", "/v1/chat/completions", chat("hi"))))
    end
    assert.is_nil(s.log:find("reload failed", 1, true))
    assert.is_true(wait_reloads(s, 0, 1))
    assert.matches("%[check%] .-versioned.lua:%d+: a Lua call ran longer than script_timeout_ms", s.log)
    local h = health(s)
    assert.is_false(h.reload.ok)
    assert.matches("script ran longer than script_timeout_ms", h.reload.error)
    assert.equal(0, (reloads(s))) -- no worker made a state of them
    assert.equal("v1 hi", answer_text(s:request("POST", "/v1/chat/completions", chat("hi"))))
    s:stop_clean()
  end)

  it("starts with a provider that fails the check (a warning), and that provider does not block reloads", function()
    local s, dir = started(2, 1, function(d) return string.format([[
return {
  lua_path = %q,
  providers = { v = { kind = "versioned" },
    broken = { kind = "prompt", base_url = "http://127.0.0.1:9", template = function() error("no template today") end } },
  routes = { { match = "*", provider = "v" } },
}]], d .. "/?.lua") end)
    assert.matches("the check of the scripts: front door [%w_]+: provider broken translating a canned request raised: .*no template today", s.log)
    write_kind(dir, kind_source(2))
    s.handle:kill("sighup")
    assert.is_true(wait_reloads(s, 2))
    assert.equal("v2 hi", answer_text(s:request("POST", "/v1/chat/completions", chat("hi"))))
    s:stop_clean()
  end)

  it("reloads when a watched file changes (config or lua_path), once per burst of writes", function()
    local cfg_text
    local s, dir = started(2, 1, function(d)
      cfg_text = config(d, { watch = true })
      return cfg_text
    end)
    assert.equal("v1 hi", answer_text(s:request("POST", "/v1/chat/completions", chat("hi"))))

    -- five writes in a row: one reload (200 ms after the last)
    for k = 2, 6 do write_kind(dir, kind_source(k)) end
    assert.is_true(wait_reloads(s, 2), s.log)
    assert.equal("v6 hi", answer_text(s:request("POST", "/v1/chat/completions", chat("hi"))))
    client.run_until(function() return false end, 400)
    assert.equal(2, (reloads(s)))
    assert.matches("versioned.lua changed: reloading", s.log)

    -- the config file itself: a route renamed
    local cfgfile = assert(io.popen("ls -t " .. (os.getenv("TMPDIR") or "/tmp") .. "/moongate-spec-"
      .. uv.os_getpid() .. "-*.lua | head -1"):read("*l"))
    local f = assert(io.open(cfgfile, "wb"))
    f:write((cfg_text:gsub('{ match = "%*", provider = "v" }', '{ match = "m", provider = "v" }')))
    f:close()
    assert.is_true(wait_reloads(s, 4))
    assert.matches("changed: reloading", s.log)
    local res = s:request("POST", "/v1/chat/completions", json.encode({ model = "other", messages = { { role = "user", content = "x" } } }))
    assert.equal(404, res.status)
    assert.equal("v6 hi", answer_text(s:request("POST", "/v1/chat/completions", chat("hi"))))
    s:stop_clean()
  end)

  it("carries the resting members of a key pool over to the new state", function()
    local up = helpers.mock()
    finally(function() up:stop() end)
    local s = helpers.start { config = string.format([[
return {
  providers = { keys = { kind = "openai", base_url = %q, retries = 0,
    api_keys = { "key-one-0123456789", "key-two-0123456789" } } },
  routes = { { match = "*", provider = "keys" } },
}]], up.url .. "/v1") }
    local function ask()
      return s:request("POST", "/v1/chat/completions", json.encode {
        model = "gpt-4o", messages = { { role = "user", content = "hi" } } }, nil, 15000)
    end
    up:queue { { status = 429, headers = { ["retry-after"] = "30" },
      json = { error = { message = "Rate limit reached", type = "requests", code = "rate_limit_exceeded" } } },
      { reply = { text = "two" } } }
    assert.equal(200, ask().status)
    s.handle:kill("sighup")
    assert.is_true(wait_reloads(s, 1))
    up:reset()
    up:queue { { reply = { text = "three" } } }
    assert.equal(200, ask().status)
    -- key one still rests (30 s) in the new state: key two serves at once
    assert.equal("Bearer key-two-0123456789", up:requests()[1].headers.authorization)
    local stats = json.decode(s:request("GET", "/stats").body)
    assert.equal(1, stats.accounts.keys[1].limited)
    assert.is_number(stats.accounts.keys[1].resting_s)
    s:stop_clean()
  end)

  it("moves WebSocket pool workers to the new state; their answers keep flowing; the old state closes", function()
    local s, dir = started(1, 1)
    local ws = assert(W.connect(s.port, "/ws"))
    ws.on_message = function(text, self)
      local m = json.decode(text)
      if m.type == "heartbeat" then
        self:send('{"type":"heartbeat_response"}')
      elseif m.type == "pong" then
        self.pongs = (self.pongs or 0) + 1
      elseif m.type == "completion_request" then
        self:send(json.encode({ type = "completion_response", request_id = m.request_id, content = "from the tab",
          finish_reason = "stop" }))
      end
      return false
    end
    ws:send(json.encode({ type = "client_ready", models = { "browser-model" } }))
    assert.is_true(client.run_until(function()
      return #(health(s).ws_pool.workers) == 1
    end, 3000))
    local body = json.encode({ model = "browser-model", messages = { { role = "user", content = "hi" } } })
    assert.equal("from the tab", answer_text(s:request("POST", "/v1/chat/completions", body)))
    for k = 1, 3 do
      s.handle:kill("sighup")
      assert.is_true(wait_reloads(s, k))
      assert.equal("from the tab", answer_text(s:request("POST", "/v1/chat/completions", body)))
    end
    -- the worker's connection moved: no state is kept alive by it
    assert.is_true(old_states_closed(s))
    -- and its messages are still understood (a ping answered by the new state)
    ws:send('{"type":"ping"}')
    assert.is_true(ws:wait(function(self) return (self.pongs or 0) > 0 end, 3000))
    ws:close()
    s:stop_clean()
  end)
end)
