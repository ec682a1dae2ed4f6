-- The command line's entry point, called by C's mg_main with argv.
require("moongate.host").use(require "moongate.host.daemon") -- C's log, clocks and framing
local cli = require "moongate.cli"
local config = require "moongate.config"
local json = require "moongate.json"
local core = require "moongate.core"

local M = {}

local function fail(msg, code)
  io.stderr:write(msg, "\n")
  return code or 1
end

local function load_config(flags)
  local cfg, errs = config.resolve(flags, os.getenv, core._cpu_count(),
    require("moongate.auth.store").served(flags))
  if not cfg then
    return nil, table.concat(errs, "\n")
  end
  return cfg
end

local commands = {}

function commands.help(flags)
  local text = cli.usage[flags.topic]
  if not text then return fail(string.format("no help for %q", flags.topic), 2) end
  io.stdout:write(text)
  return 0
end

function commands.version()
  io.stdout:write("moongate ", core.version, "\n")
  return 0
end

-- the stored accounts a config names that are missing or of another kind
-- (check warns: the accounts may be logged in after the check)
local function account_warnings(cfg)
  local store = require "moongate.auth.store"
  local out, names = {}, {}
  for k in pairs(cfg.providers) do names[#names + 1] = k end
  table.sort(names)
  for _, pname in ipairs(names) do
    local p = cfg.providers[pname]
    if (p.kind == "copilot" or p.kind == "chatgpt") and not p.forward_client_key and not p.api_key and not p.api_key_env then
      for _, name in ipairs(p.accounts or { p.account or pname }) do
        local rec = store.load(name)
        if not rec then
          out[#out + 1] = string.format("providers.%s: no stored account %q yet (moongate login %s --name %s)",
            pname, name, p.kind, name)
        elseif rec.kind ~= p.kind then
          out[#out + 1] = string.format("providers.%s: account %q is a %s account, not %s", pname, name,
            tostring(rec.kind), p.kind)
        end
      end
    end
  end
  return out
end

function commands.check(flags)
  local cfg, err = load_config(flags)
  if not cfg then return fail(err, 1) end
  for _, w in ipairs(account_warnings(cfg)) do io.stderr:write("warning: ", w, "\n") end
  io.stdout:write(string.format("%s: ok (%d provider(s), %d route(s))\n", flags.config,
    (function() local n = 0 for _ in pairs(cfg.providers) do n = n + 1 end return n end)(),
    #cfg.routes))
  return 0
end

--- watch_list(cfg, config_path) -> {{dir, name?}}: what a change to reloads
-- (the config file's directory, for that file; each directory of lua_path
-- and those below it, for any .lua file; at most 64 directories)
function M.watch_list(cfg, path)
  local uv = require "luv"
  local list, seen = {}, {}
  local function abs(p)
    if p:sub(1, 1) == "/" then return p end
    return (uv.cwd() .. "/" .. p):gsub("/%./", "/")
  end
  if path and path ~= "" then
    local full = abs(path)
    local dir, name = full:match("^(.*)/([^/]+)$")
    local real = uv.fs_realpath(full)
    if real and real ~= full then
      -- a symlink (a Kubernetes ConfigMap swaps a "..data" link beside it):
      -- any change in its directory counts, and the file it points at
      list[#list + 1] = { dir = dir ~= "" and dir or "/", name = "*" }
      local rdir, rname = real:match("^(.*)/([^/]+)$")
      list[#list + 1] = { dir = rdir ~= "" and rdir or "/", name = rname }
    else
      list[#list + 1] = { dir = dir ~= "" and dir or "/", name = name }
    end
  end
  local function walk(dir, depth)
    if seen[dir] or #list >= 64 then return end
    local st = uv.fs_stat(dir)
    if not st or st.type ~= "directory" then return end
    seen[dir] = true
    list[#list + 1] = { dir = dir }
    if depth >= 4 then return end
    local h = uv.fs_scandir(dir)
    while h do
      local name, kind = uv.fs_scandir_next(h)
      if not name then break end
      if kind == "directory" and name:sub(1, 1) ~= "." then walk(dir .. "/" .. name, depth + 1) end
    end
  end
  for template in (cfg.lua_path or ""):gmatch("[^;]+") do
    local dir = template:match("^(.-)/?%?") -- what comes before the first "?"
    if dir and dir ~= "" then walk(abs(dir):gsub("/+$", ""), 0) end
  end
  return list
end

function commands.serve(flags)
  local cfg, err = load_config(flags)
  if not cfg then return fail(err, 1) end
  -- a reload reads the same file: by its full path, whatever the cwd then
  local path = flags.config or os.getenv("MOONGATE_CONFIG")
  if path and path ~= "" and path:sub(1, 1) ~= "/" then
    flags.config = require("luv").cwd() .. "/" .. path
  end
  core._log_level(cfg.log_level)
  core._log_format(cfg.log_format) -- every line from here on, every thread's (docs/LOGS.md)
  -- before the worker threads start: the stored responses' bounds, for all of them
  core._store_limits(cfg.response_store.max_entries, cfg.response_store.max_bytes)
  local ok, serr = core._serve {
    host = cfg.host, port = cfg.port, workers = cfg.workers,
    max_body_bytes = cfg.max_body_bytes, max_header_bytes = cfg.max_header_bytes,
    stream_high_water = cfg.stream_high_water, keepalive_timeout = cfg.keepalive_timeout,
    request_timeout = cfg.request_timeout, shutdown_timeout = cfg.shutdown_timeout,
    daemon = flags.daemon == true, pidfile = flags.pidfile, log_file = flags["log-file"],
    tls_cert = cfg.tls and cfg.tls.cert, tls_key = cfg.tls and cfg.tls.key,
    tls_http2 = cfg.tls and cfg.tls.http2 == true,
    verbose = cfg.log_level == "debug",
    ws_heartbeat_ms = cfg.websocket.heartbeat_interval_ms, ws_timeout_ms = cfg.websocket.heartbeat_timeout_ms,
    ws_queue_timeout_ms = cfg.websocket.queue_timeout_ms, ws_max_message = cfg.websocket.max_message_bytes,
    -- every worker resolves the same flags into its own config (and again
    -- at each reload, when it says what a reload cannot change)
    init = json.encode { flags = flags, server = config.fixed(cfg) },
    watch = cfg.watch and M.watch_list(cfg, flags.config or os.getenv("MOONGATE_CONFIG")) or nil,
  }
  if not ok then return fail("moongate serve: " .. serr, 1) end
  return 0
end

-- the pid a --pidfile names -> pid | nil, message
local function pid_from(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, tostring(err) end
  local text = f:read("*a") or ""
  f:close()
  local pid = tonumber(text:match("^%s*(%d+)%s*$"))
  if not pid or pid < 2 then return nil, path .. ": no pid in it" end
  return pid
end

-- whether process pid exists (signal 0) and has not ended (a zombie its
-- parent has not reaped yet has)
local function alive(pid)
  local uv = require "luv"
  local ok, _, name = uv.kill(pid, 0)
  if not (ok ~= nil or name == "EPERM") then return false end
  local f = io.open("/proc/" .. pid .. "/stat", "rb")
  local stat = f and f:read("*l") or ""
  if f then f:close() end
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- the pidfile's pid | nil, message: only a moongate process is signalled
-- (a stale pidfile may name any process by now)
local function daemon_pid(path)
  local pid, err = pid_from(path)
  if not pid then return nil, err end
  local f = io.open("/proc/" .. pid .. "/cmdline", "rb")
  local cmdline = f and f:read("*a")
  if f then f:close() end
  -- (its command line, not its executable: a daemon may run under valgrind)
  if cmdline and not ("\0" .. cmdline):find("[%z/]moongate%z") then
    return nil, string.format("pid %d (%s) is not a moongate daemon; not signalled", pid,
      (cmdline:match("^[^%z]*")))
  end
  return pid
end

function commands.reload(flags)
  local pid, err = daemon_pid(flags.pidfile)
  if not pid then return fail("moongate reload: " .. err, 1) end
  local uv = require "luv"
  local ok, kerr = uv.kill(pid, "sighup")
  if not ok then return fail(string.format("moongate reload: pid %d: %s", pid, tostring(kerr)), 1) end
  return 0
end

function commands.stop(flags)
  local pid, err = daemon_pid(flags.pidfile)
  if not pid then return fail("moongate stop: " .. err, 1) end
  local uv = require "luv"
  local ok, kerr = uv.kill(pid, "sigterm")
  if not ok then return fail(string.format("moongate stop: pid %d: %s", pid, tostring(kerr)), 1) end
  -- the daemon drains first (shutdown_timeout, 30 s by default): wait a bit longer
  local deadline = uv.hrtime() + 120 * 1e9
  while alive(pid) do
    if uv.hrtime() > deadline then return fail(string.format("moongate stop: pid %d is still running", pid), 1) end
    uv.sleep(20)
  end
  return 0
end

-- the account commands: tokens never reach stdout or stderr (the helpers
-- print only codes, URLs and the login name)
local function out(line)
  io.stdout:write(line, "\n")
  io.stdout:flush() -- a spec (or a person) reads the URL while we wait
end

function commands.login(flags)
  local mod = require("moongate.auth." .. flags.kind)
  local rec, err = mod.login({ name = flags.name, headless = flags.headless }, out)
  if not rec then return fail("moongate login " .. flags.kind .. ": " .. tostring(err), 1) end
  return 0
end

function commands.logout(flags)
  local store = require "moongate.auth.store"
  local ok, err = store.remove(flags.account)
  if not ok then return fail("moongate logout: " .. err, 1) end
  out(string.format("removed account %s", flags.account))
  return 0
end

local function when(t)
  t = tonumber(t)
  return t and os.date("!%Y-%m-%d %H:%M UTC", t) or "-"
end

--- pool_state(stats, name) -> how the daemon's /stats shows account
-- name in its pools ("provider: served N, limited M, resting S s"), or nil
function M.pool_state(stats, name)
  local parts = {}
  for provider, members in pairs(type(stats) == "table" and type(stats.accounts) == "table" and stats.accounts or {}) do
    for _, m in ipairs(type(members) == "table" and members or {}) do
      if type(m) == "table" and m.name == name then
        parts[#parts + 1] = string.format("%s: served %d, limited %d%s", provider, tonumber(m.served) or 0,
          tonumber(m.limited) or 0, m.resting_s and string.format(", resting %d s", m.resting_s) or "")
      end
    end
  end
  table.sort(parts)
  return parts[1] and table.concat(parts, "; ") or nil
end

-- the running daemon's /stats at the config's listen address -> stats | nil, where
local function daemon_stats(flags)
  local cfg = config.resolve({ config = flags.config, listen = flags.listen }, os.getenv, 1)
  local host, port = "127.0.0.1", 8080
  if cfg then host, port = cfg.host, cfg.port end
  if host == "0.0.0.0" then host = "127.0.0.1" end
  local where = string.format("http://%s:%d", host:find(":") and "[" .. host .. "]" or host, port)
  local util = require "moongate.auth.util"
  local key = os.getenv("MOONGATE_API_KEY")
  local got, done = nil, false
  util.request({ url = where .. "/stats", headers = key and key ~= "" and { authorization = "Bearer " .. key } or nil,
    connect_timeout_ms = 1000, total_timeout_ms = 2000 }, function(res)
    got, done = res and res.status == 200 and res.json or nil, true
  end)
  util.wait(function() return done end, 3000)
  return got, where
end

function commands.info(flags)
  local store = require "moongate.auth.store"
  local list = store.list()
  if #list == 0 then
    out("no accounts stored in " .. store.dir())
    return 0
  end
  local stats, where = daemon_stats(flags)
  local rows = { { "NAME", "KIND", "LOGIN", "TOKEN", "LAST REFRESH", "POOL" } }
  for _, r in ipairs(list) do
    local token = r.kind == "copilot" and "GitHub token" or ("expires " .. when(r.expires_at))
    rows[#rows + 1] = { r.name, r.kind, tostring(r.login or "-"), token, when(r.refreshed_at),
      M.pool_state(stats, r.name) or "-" }
  end
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do widths[i] = math.max(widths[i] or 0, #cell) end
  end
  for _, row in ipairs(rows) do
    local cells = {}
    for i, cell in ipairs(row) do cells[i] = cell .. string.rep(" ", widths[i] - #cell) end
    out((table.concat(cells, "  "):gsub("%s+$", "")))
  end
  out("accounts in " .. store.dir())
  out(stats and ("pool state from the daemon at " .. where)
    or ("no daemon answered at " .. where .. " (pool state unknown)"))
  return 0
end

--- run(argv) -> exit code
function M.run(argv)
  local cmd, err = cli.parse(argv)
  if not cmd then return fail(err, 2) end
  return commands[cmd.command](cmd.flags)
end

return M
