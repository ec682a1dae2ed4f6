-- Starts the real moongate binary for e2e specs: on a port the kernel picks
-- (--listen 127.0.0.1:0, read back from the log), waits until it listens,
-- and stops it with SIGTERM, checking it exits cleanly (under
-- AddressSanitizer a leak makes the exit code non-zero).
package.path = "spec/?.lua;lua/?.lua;lua/?/init.lua;" .. package.path

local uv = require "luv"
local client = require "support.client"

local H = {}

H.bin = os.getenv("MOONGATE_BIN") or "build/moongate"
H.client = client

local tmp_count = 0
--- tmpfile(content) -> path of a new file holding content
function H.tmpfile(content, suffix)
  tmp_count = tmp_count + 1
  local path = string.format("%s/moongate-spec-%d-%d%s", os.getenv("TMPDIR") or "/tmp",
    uv.os_getpid(), tmp_count, suffix or ".lua")
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return path
end

--- sh(cmd) -> what the shell command printed on stdout (stderr dropped)
function H.sh(cmd)
  local p = assert(io.popen(cmd .. " 2>/dev/null"))
  local out = p:read("*a")
  p:close()
  return out
end

--- self_signed() -> dir holding cert.pem and key.pem for localhost (openssl)
function H.self_signed()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir) == 0)
  assert(os.execute(string.format(
    "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/key.pem -out %s/cert.pem -days 2 -subj /CN=localhost >/dev/null 2>&1",
    dir, dir)) == 0)
  return dir
end

--- spawn(cmd, options, on_exit) -> handle, pid: uv.spawn through setpriv
-- (util-linux), so the child gets SIGTERM if this process dies mid-spec and
-- no daemon or mock outlives a crashed run
function H.spawn(cmd, options, on_exit)
  local args = { "--pdeathsig", "TERM", "--", cmd }
  for _, a in ipairs(options.args or {}) do args[#args + 1] = a end
  options.args = args
  return uv.spawn("setpriv", options, on_exit)
end

local Server = {}
-- server.log: what the daemon has written to stderr so far. The daemon
-- writes its log from a thread of its own, a moment after the line is made:
-- reading server.log first takes in what is still on its way (until no
-- more comes for 30 ms).
Server.__index = function(self, k)
  if k ~= "log" then return Server[k] end
  local n
  repeat
    n = #rawget(self, "_log")
    client.run_until(function() return false end, 30)
  until #rawget(self, "_log") == n or self.exited
  return rawget(self, "_log")
end

--- start{config = "lua text", workers = n, args = {...}, env = {...}} -> server
function H.start(opts)
  opts = opts or {}
  local args = { "serve", "--listen", opts.listen or "127.0.0.1:0" }
  if opts.workers ~= false then -- false: leave the worker count to env/config
    args[#args + 1] = "--workers"
    args[#args + 1] = tostring(opts.workers or 1)
  end
  if opts.config then
    args[#args + 1] = "--config"
    args[#args + 1] = H.tmpfile(opts.config)
  end
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  local env = { "PATH=" .. (os.getenv("PATH") or "/usr/bin:/bin"),
    "MOONGATE_LUA_DIR=" .. (os.getenv("MOONGATE_LUA_DIR") or "lua") }
  for _, name in ipairs { "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS" } do
    if os.getenv(name) then env[#env + 1] = name .. "=" .. os.getenv(name) end
  end
  for k, v in pairs(opts.env or {}) do env[#env + 1] = k .. "=" .. v end

  local s = setmetatable({ _log = "", exited = false }, Server)
  local stderr = uv.new_pipe(false)
  -- MOONGATE_WRAPPER runs the daemon under a tool, e.g. valgrind
  local cmd = H.bin
  local wrapper = os.getenv("MOONGATE_WRAPPER")
  if wrapper and wrapper ~= "" then
    local words = {}
    for w in wrapper:gmatch("%S+") do words[#words + 1] = w end
    cmd = table.remove(words, 1)
    words[#words + 1] = H.bin
    for _, a in ipairs(args) do words[#words + 1] = a end
    args = words
  end
  local handle, pid = H.spawn(cmd, { args = args, env = env, stdio = { nil, nil, stderr } },
    function(code, signal)
      s.exited, s.code, s.signal = true, code, signal
    end)
  assert(handle, "cannot start " .. H.bin .. ": " .. tostring(pid))
  s.handle, s.pid, s.stderr = handle, pid, stderr
  -- at most 16 MiB of it: a daemon that logs without end (a request loop)
  -- would otherwise fill the runner's memory before the spec fails
  stderr:read_start(function(_, data)
    if data and #s._log < 16 * 1024 * 1024 then
      s._log = s._log .. data
      if #s._log >= 16 * 1024 * 1024 then s._log = s._log .. "\n[the rest of the log is dropped: over 16 MiB]\n" end
    end
  end)
  client.run_until(function()
    return s.exited or s._log:match("listening on https?://[^:]+:(%d+)")
  end, wrapper and 60000 or 15000)
  local port = s._log:match("listening on https?://[^:]+:(%d+)")
  if not port then
    s:stop()
    error("moongate did not start:\n" .. s.log, 2)
  end
  s.port = tonumber(port)
  return s
end

--- request(method, path, body, headers) -> response
function Server:request(method, path, body, headers, timeout)
  return client.request(self.port, method, path, body, headers, timeout)
end

function Server:connect()
  return assert(client.connect(self.port))
end

--- stop([signal]) -> exit code; raises if the daemon did not exit cleanly
function Server:stop(signal)
  if not self.exited then
    self.handle:kill(signal or "sigterm")
    client.run_until(function() return self.exited end, 15000)
  end
  if not self.exited then
    self.handle:kill("sigkill")
    client.run_until(function() return self.exited end, 5000)
  end
  client.run_until(function() return false end, 50) -- drain stderr
  if not self.stderr:is_closing() then self.stderr:close() end
  if not self.handle:is_closing() then self.handle:close() end
  uv.run("nowait")
  return self.code, self.signal
end

--- assert_clean_exit(): stop and check exit code 0 and no sanitizer report
function Server:stop_clean()
  local code, signal = self:stop()
  assert(code == 0 and signal == 0, string.format("moongate exited with code %s signal %s:\n%s",
    tostring(code), tostring(signal), self.log))
  assert(not self.log:find("AddressSanitizer") and not self.log:find("LeakSanitizer")
    and not self.log:find("ThreadSanitizer")
    and not self.log:find("runtime error:") and not self.log:find("ERROR SUMMARY: [1-9]"),
    "sanitizer or valgrind report:\n" .. self.log)
  return self.log
end

-- The mock upstream (spec/support/mock_upstream.lua) in its own process.
local Mock = {}
Mock.__index = Mock

--- mock([script [, port]]) -> a running mock upstream: :queue(list), :requests(),
-- :reset(), :stop(), :get(path), :post(path, value); script: another mock
-- server of the same kind (spec/support/mock_accounts.lua); port: where
-- (default: any free one)
function H.mock(script, port)
  local json = require "moongate.json"
  local m = setmetatable({ out = "", exited = false, json = json }, Mock)
  local stdout = uv.new_pipe(false)
  local handle = H.spawn("luajit", { args = { script or "spec/support/mock_upstream.lua", port and tostring(port) or nil },
    stdio = { nil, stdout, 2 } },
    function() m.exited = true end)
  assert(handle, "cannot start the mock upstream")
  m.handle, m.stdout = handle, stdout
  stdout:read_start(function(_, data) if data then m.out = m.out .. data end end)
  client.run_until(function() return m.out:match("listening on (%d+)") or m.exited end, 10000)
  m.port = tonumber((assert(m.out:match("listening on (%d+)"), "mock did not start")))
  m.url = "http://127.0.0.1:" .. m.port
  return m
end

function Mock:queue(list)
  -- (a 15 MB script takes the mock a while to read on a busy machine)
  local res = assert(client.request(self.port, "POST", "/_mock/queue", self.json.encode(list), nil, 60000))
  assert(res.status == 200)
end

--- requests([path]) -> what the mock received (only those to path, when given)
function Mock:requests(path)
  local res = assert(client.request(self.port, "GET", "/_mock/requests"))
  local all = self.json.decode(res.body)
  if not path then return all end
  local out = {}
  for _, r in ipairs(all) do if r.path == path then out[#out + 1] = r end end
  return out
end

function Mock:reset()
  assert(client.request(self.port, "POST", "/_mock/reset", "{}"))
end

--- get(path) -> the mock's JSON answer, decoded
function Mock:get(path)
  local res = assert(client.request(self.port, "GET", path))
  return self.json.decode(res.body)
end

--- post(path, value): a control request (value as JSON), which must answer 200
function Mock:post(path, value)
  local res = assert(client.request(self.port, "POST", path, self.json.encode(value or {})))
  assert(res.status == 200, path .. " answered " .. tostring(res.status) .. ": " .. tostring(res.body))
end

--- received() -> api, proxy: what reached the mock, the API requests (each
-- with its body decoded as .json) and the proxy tries ("METHOD path": a
-- client reaching for the internet through the mock as its proxy)
function Mock:received()
  local api, proxy = {}, {}
  for _, r in ipairs(self:requests()) do
    if r.proxy then
      proxy[#proxy + 1] = r.method .. " " .. r.path
    else
      r.json = self.json.decode(r.body)
      api[#api + 1] = r
    end
  end
  return api, proxy
end

function Mock:stop()
  if not self.exited then self.handle:kill("sigterm") end
  client.run_until(function() return self.exited end, 5000)
  if not self.stdout:is_closing() then self.stdout:close() end
  if not self.handle:is_closing() then self.handle:close() end
  uv.run("nowait")
end

--- h2_front(backend_port [, max_streams]) -> an HTTPS front (nghttpx,
-- self-signed) that speaks HTTP/2 by ALPN, as hosted APIs do, allows
-- max_streams (default 1000) at once on a connection, and passes each stream
-- to the HTTP/1.1 server at backend_port: .url, .port, :stop()
function H.h2_front(backend_port, max_streams)
  local port = H.free_port() -- for nghttpx to listen on
  local dir = H.self_signed()
  local f = { port = port, url = "https://127.0.0.1:" .. port, exited = false }
  f.handle = H.spawn("nghttpx", { args = { "--frontend=127.0.0.1," .. port, "--backend=127.0.0.1," .. backend_port,
      "--conf=/dev/null", "--log-level=WARN", "--workers=1", "--backend-connections-per-host=1000",
      "--frontend-http2-max-concurrent-streams=" .. (max_streams or 1000),
      "--no-ocsp", "--accesslog-file=/dev/null",
      dir .. "/key.pem", dir .. "/cert.pem" }, stdio = { nil, nil, 2 } },
    function() f.exited = true end)
  assert(f.handle, "cannot start nghttpx")
  assert(client.run_until(function()
    local c = client.connect(port)
    if c then c:close() return true end
    return f.exited
  end, 10000) and not f.exited, "nghttpx did not listen")
  function f.stop()
    if not f.exited then f.handle:kill("sigterm") end
    client.run_until(function() return f.exited end, 5000)
    if not f.handle:is_closing() then f.handle:close() end
  end
  return f
end

-- Lua source for a config value: strings, numbers, booleans and tables
-- (a list's items in order, a map's keys sorted)
local function lua_source(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" then return tostring(v) end
  local parts = {}
  if #v > 0 then
    for i, x in ipairs(v) do parts[i] = lua_source(x) end
  else
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    for i, k in ipairs(keys) do parts[i] = string.format("[%q] = %s", k, lua_source(v[k])) end
  end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

--- gateway_fixture{providers = {name = {kind =, ...}}, routes = {{match =,
-- provider =}, ...} [, script =] [, scratch = true]} -> t: inside a
-- describe, started in setup and stopped in teardown: a mock upstream
-- (t.mock) and a daemon (t.server) whose providers all lead to it, each
-- as given with the mock as its base_url (its /v1, or its root for an
-- anthropic one, whose paths carry /v1 themselves). script: a node script
-- (spec/compat) run against them in setup, with the daemon's URL and the
-- mock's; t.r (empty until then) takes the fields of the JSON object it
-- printed on the last line that holds one. scratch: t.dirs, a scratch()
-- folder for a command-line client's runs.
function H.gateway_fixture(opts)
  local t = { r = {} }
  local setup, teardown = getfenv(2).setup, getfenv(2).teardown -- busted's, from the spec
  setup(function()
    t.mock = H.mock()
    local providers = {}
    for name, p in pairs(opts.providers) do
      local c = { base_url = t.mock.url .. (p.kind == "anthropic" and "" or "/v1") }
      for k, v in pairs(p) do c[k] = v end
      providers[name] = c
    end
    t.server = H.start { config = "return " .. lua_source({ providers = providers, routes = opts.routes }) }
    if opts.scratch then t.dirs = H.scratch() end
    if opts.script then
      local p = assert(io.popen(string.format("node %s http://127.0.0.1:%d %s 2>&1", opts.script, t.server.port, t.mock.url)))
      local text = p:read("*a")
      p:close()
      local line
      for l in text:gmatch("[^\n]+") do
        if l:sub(1, 1) == "{" then line = l end
      end
      local r = line and t.mock.json.decode(line)
      assert(r, opts.script .. " printed no JSON:\n" .. text)
      for k, v in pairs(r) do t.r[k] = v end
    end
  end)
  teardown(function()
    if t.server then t.server:stop_clean() end
    if t.mock then t.mock:stop() end
    if t.dirs then t.dirs.remove() end
  end)
  return t
end

--- write_account(home, record): an account as `moongate login` stores it
-- (home/accounts/NAME.json, 0600, in a folder of mode 0700)
function H.write_account(home, rec)
  local dir = home .. "/accounts"
  assert(os.execute("mkdir -p " .. dir .. " && chmod 700 " .. dir) == 0)
  local path = dir .. "/" .. rec.name .. ".json"
  local f = assert(io.open(path, "wb"))
  f:write(require("moongate.json").encode(rec))
  f:close()
  assert(uv.fs_chmod(path, tonumber("600", 8)))
end

--- codex_config(home, model, port): Codex CLI's config.toml in home (its
-- CODEX_HOME): the daemon at port as a custom provider speaking the
-- Responses API, no retries, no update check, no analytics, no plugins
function H.codex_config(home, model, port)
  local f = assert(io.open(home .. "/config.toml", "w"))
  f:write(string.format([[
model = %q
model_provider = "moongate"
check_for_update_on_startup = false

[model_providers.moongate]
name = "moongate"
base_url = "http://127.0.0.1:%d/v1"
wire_api = "responses"
env_key = "MOONGATE_API_KEY"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[features]
plugins = false
]], model, port))
  f:close()
end

--- words(n) -> "w1 w2 ... wn": a prompt the echo provider streams back word by word
function H.words(n)
  local t = {}
  for i = 1, n do t[i] = "w" .. i end
  return table.concat(t, " ")
end

-- the sockets that hold refused ports (kept until the runner exits)
local held = {}

--- refused_port() -> a port on which a connection is refused, and stays
-- refused: the port is bound here but never listened on, so no later
-- bind(0) (a daemon's own listener) can be given it. A port that is only
-- free now can be: a daemon started next may listen on it, and one whose
-- upstream is that port then sends its requests to itself, without end.
-- release(port) frees it (for a test that listens on it later).
function H.refused_port()
  local t = uv.new_tcp()
  assert(t:bind("127.0.0.1", 0))
  local port = t:getsockname().port
  held[port] = t
  return port
end

function H.release(port)
  local t = held[port]
  held[port] = nil
  if t then t:close(); uv.run("nowait") end
end

--- free_port() -> a port nothing listens on now (nor holds: another bind
-- may take it next, which is what a caller that listens on it wants)
function H.free_port()
  local port = H.refused_port()
  H.release(port)
  return port
end

--- shell_quote(s) -> s as one word for sh
function H.shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- scratch() -> a folder for the runs of a command-line client:
-- :fresh() -> {home, work}, two new empty folders in it; :remove()
function H.scratch()
  local dir = os.tmpname()
  os.remove(dir)
  local runs = 0
  return {
    fresh = function()
      runs = runs + 1
      local home, work = dir .. "/home" .. runs, dir .. "/work" .. runs
      assert(os.execute("mkdir -p " .. home .. " " .. work) == 0)
      return { home = home, work = work }
    end,
    remove = function() os.execute("rm -rf " .. dir) end,
  }
end

--- run_cli(work, env, command) -> {code, out (stdout), err (stderr)}: a
-- shell command run in folder work with only the environment env (a list
-- of "NAME=value"), stdin empty, stderr kept in work/stderr
function H.run_cli(work, env, command)
  local p = assert(io.popen(string.format("cd %s && env -i %s %s </dev/null 2>%s/stderr; echo \"exit=$?\"",
    work, table.concat(env, " "), command, work)))
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("exit=(%d+)%s*$"))
  out = out:gsub("exit=%d+%s*$", "")
  local ef = io.open(work .. "/stderr")
  local err = ef and ef:read("*a") or ""
  if ef then ef:close() end
  return { code = code, out = out, err = err }
end

--- tool_turn(messages) -> use, result: in Anthropic messages, the last
-- tool_use block of an assistant turn and the last tool_result block of a
-- user turn
function H.tool_turn(messages)
  local use, result
  for _, m in ipairs(messages) do
    for _, b in ipairs(type(m.content) == "table" and m.content or {}) do
      if m.role == "assistant" and b.type == "tool_use" then use = b end
      if m.role == "user" and b.type == "tool_result" then result = b end
    end
  end
  return use, result
end

--- rss_kib(pid) -> a process's resident memory in KiB, or nil when it is gone
function H.rss_kib(pid)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

--- upstream_fixture([settings [, opts]]) -> t: inside a describe, a mock upstream and
-- a daemon that sends every model to it (provider "up", OpenAI kind, no
-- retries), started in setup and stopped in teardown; t.mock and t.server
-- once setup ran. settings: more top-level config fields, as Lua source.
-- opts.h2_front: the daemon reaches the mock through H.h2_front (t.front),
-- HTTP/2 over TLS, as hosted APIs are reached.
function H.upstream_fixture(settings, opts)
  local t = {}
  local setup, teardown = getfenv(2).setup, getfenv(2).teardown -- busted's, from the spec
  setup(function()
    t.mock = H.mock()
    local base = t.mock.url
    if opts and opts.h2_front then
      t.front = H.h2_front(t.mock.port)
      base = t.front.url
    end
    t.server = H.start { config = string.format([[
return { %s
  providers = { up = { kind = "openai", base_url = %q, retries = 0, insecure = %s } },
  routes = { { match = "*", provider = "up" } } }]], settings or "", base .. "/v1", tostring(t.front ~= nil)) }
  end)
  teardown(function()
    if t.server then t.server:stop_clean() end
    if t.front then t.front.stop() end
    if t.mock then t.mock:stop() end
  end)
  return t
end

return H
