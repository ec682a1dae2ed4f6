-- Entry point of each worker thread's Lua state: resolve the config, build
-- the app, and check it. C calls init(init_json, index, workers, load,
-- started_ns, tolerated) once per state (load 1 at start, one more per hot
-- reload; started_ns: uv.hrtime() when the host began making the state;
-- tolerated: the replaced state's check_failures(); mode "check": the main
-- thread's trial load before a reload, which changes nothing process-wide and
-- keeps nothing) and keeps the returned table:
-- handle(req), on_error(req, message), origin_allowed(origin) (CORS, for
-- http.c), error_body(path, status, message) (the errors C answers itself,
-- in the path's shape), shutdown(); for WebSockets (ws.c)
-- ws_open(h, path, query, headers, peer address), ws_message(h, text), ws_close(h),
-- ws_export(h) and ws_import(h, text) (a connection moving to a newer state
-- after a reload); pool_event(id, kind, data) for the WS worker pool
-- (pool.c); reload_failed(message): a newer state could not be made, this
-- one goes on serving (/health shows it); retire(): a newer state took over,
-- background work stops (what this one serves finishes on it); carry() ->
-- text and carried(text): what the old state hands the new one at a reload.
require "moongate.handles" -- first: every luv handle made from here on is known
require("moongate.host").use(require "moongate.host.daemon") -- C's log, clocks and framing
local json = require "moongate.json"
local config = require "moongate.config"
local log = require "moongate.log"

local M = {}

--- redact(message) -> the message with the token a Lua syntax error quotes
-- left out: a broken config line may be half of a key
function M.redact(message)
  return (tostring(message):gsub("([^\n]-) near '[^\n]*'", "%1 near (a token not shown)"))
end

--- public(message) -> what /health (open to anyone who reaches it) says of
-- a failed reload: the message with every quoted value and every long
-- word with a digit in it left out, cut at 300 bytes; the log has it whole
function M.public(message)
  local s = M.redact(message)
  s = s:gsub('"[^"\n]*"', '"…"'):gsub("'[^'\n]*'", "'…'")
  s = s:gsub("[%w_%-]+", function(w) -- a long word with a digit in it: a key, perhaps
    if #w >= 16 and w:find("%d") then return "…" end
  end)
  return s:sub(1, 300)
end

local function build(init_json, index, workers, load, started_ns, tolerated, check)
  local init = assert(json.decode(init_json), "bad init")
  -- seeded first: resolving the config loads the provider scripts (their
  -- schemas), which may draw random numbers as they load
  local uv = require "luv"
  math.randomseed(uv.hrtime() % 2147483647 + index)
  local cfg, errs = config.resolve(init.flags, os.getenv, workers, require("moongate.auth.store").served(init.flags))
  if not cfg then return nil, table.concat(errs, "\n") end
  if index == 1 and load == 1 then
    for _, w in ipairs(cfg.warnings or {}) do log.warn("%s", w) end
  end
  if check and type(init.server) == "table" then
    local now, names = config.fixed(cfg), {}
    for k, v in pairs(init.server) do
      if now[k] ~= v then names[#names + 1] = k end
    end
    table.sort(names)
    if names[1] then
      log.warn("reload: %s changed in the config; that takes a restart (the running daemon keeps the old value)",
        table.concat(names, ", "))
    end
  end
  if cfg.lua_path then
    package.path = cfg.lua_path .. ";" .. package.path
  end
  log.set_level(cfg.log_level) -- this state's own
  for _, p in pairs(cfg.providers) do log.add_secret(p.api_key) end
  log.add_secret(cfg.websocket.worker_token)
  local core = require "moongate.core"
  -- what is process-wide (the log level C writes at, the watchdog's budget)
  -- changes only once scripts that passed the check take over: at start now
  -- (the budget then times the rest of this load), at a reload after the check
  local function apply_globals()
    core._log_level(cfg.log_level)
    core._script_timeout(cfg.script_timeout_ms) -- the watchdog's budget (src/watchdog.h)
  end
  if load == 1 and not check then apply_globals() end
  core._upstream_options { http2_streams = cfg.upstream_http2_streams } -- this state's engine
  -- what /health says about hot reloads (this state's, and a newer one's
  -- failure, through reload_failed)
  local reload = { ok = true }
  local app = require("moongate.app").new(cfg, { worker = index, workers = workers, reload = reload })
  -- the check: a front door or the router that fails keeps these scripts
  -- out; a provider that fails does too on a reload, unless it failed in
  -- the state being replaced as well (tolerated: then nothing gets worse).
  -- At start there is nothing better to serve: the others serve, and that
  -- provider's requests fail (500) as they would anyway.
  local bad, failed = require("moongate.selftest").run(app)
  local failing, known = {}, {}
  for name in (tolerated or ""):gmatch("[^,]+") do known[name] = true end
  for name in pairs(failed) do failing[#failing + 1] = name end
  table.sort(failing)
  for _, name in ipairs(failing) do
    -- (the main thread's check only warns: each worker compares with its own)
    if load > 1 and not check and not known[name] and not bad then bad = failed[name] end
  end
  if bad then
    app:retire()
    return nil, "the check of the loaded scripts failed: " .. bad
  end
  if (index == 1 and load == 1) or check then
    for _, name in ipairs(failing) do log.warn("the check of the scripts: %s", failed[name]) end
  end
  if check then -- the main thread's check before a reload: nothing is kept
    app:retire()
    return { checked = true, check_failures = function() return table.concat(failing, ",") end }
  end
  if load > 1 then apply_globals() end
  if load > 1 then -- how long the new state took to make, load and check
    reload.at = os.time()
    reload.ms = math.floor((uv.hrtime() - started_ns) / 1e4 + 0.5) / 100
  end
  if index == 1 and load == 1 and not app.keys and not app.host_names then
    log.warn("listening on %s with no inbound keys: anyone who can reach it may use it (set keys or "
      .. "MOONGATE_API_KEYS: README, \"Security\")", tostring(cfg.listen))
  end
  -- for performance work: LuaJIT's sampling profiler and trace log, per
  -- worker thread, into FILE.<worker> (docs/BENCHMARK.md)
  local prof, jitlog = os.getenv("MOONGATE_JIT_PROFILE"), os.getenv("MOONGATE_JIT_LOG")
  if prof and prof ~= "" then require("jit.p").start(os.getenv("MOONGATE_JIT_PROFILE_MODE") or "Fl", prof .. "." .. index) end
  if jitlog and jitlog ~= "" then require("jit.v").on(jitlog .. "." .. index) end
  local sockets = app.sockets
  local pool = require "moongate.pool"
  local gate = require "moongate.gate"
  return {
    handle = function(req) return app:handle(req) end,
    on_error = function(req, message) return app:on_error(req, message) end,
    origin_allowed = function(origin) return app:origin_allowed(origin) end,
    error_body = function(path, status, message) return app:error_body(path, status, message) end,
    shutdown = function()
      if prof and prof ~= "" then require("jit.p").stop() end
      return app:shutdown()
    end,
    ws_open = function(h, path, query, headers, peer) return sockets:open(h, path, query, headers, peer) end,
    ws_message = function(h, text) return sockets:message(h, text) end,
    ws_close = function(h) return sockets:close(h) end,
    ws_export = function(h) return sockets:export(h) end,
    ws_import = function(h, text) return sockets:import(h, text) end,
    -- the host's events for this thread: the WS pool's, and the gate's
    pool_event = function(id, kind, data)
      if kind == "granted" or kind == "timeout" then return gate.event(id, kind) end
      return pool.event(id, kind, data)
    end,
    -- the providers that failed the check here, for the next reload's
    check_failures = function() return table.concat(failing, ",") end,
    reload_failed = function(message)
      reload.ok, reload.at, reload.ms, reload.error = false, os.time(), nil, M.public(message)
    end,
    retire = function() return app:retire() end,
    carry = function() return app:carry() end,
    carried = function(text) return app:carried(text) end,
  }
end

--- init(...) -> handler table | nil, why (a config the checks refuse, or
-- scripts that fail the canned requests); a Lua error raises, with its
-- traceback. Either message has the token a syntax error quotes left out.
function M.init(init_json, index, workers, load, started_ns, tolerated, mode)
  load = load or 1
  local ok, t, err = xpcall(build, function(e) return M.redact(debug.traceback(tostring(e), 2)) end, init_json,
    index, workers, load, started_ns or require("luv").hrtime(), tolerated, mode == "check")
  if not ok then error(t, 0) end
  if not t then return nil, M.redact(err) end
  return t
end

return M
