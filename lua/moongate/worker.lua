-- Entry point of each worker thread: resolve the config and build the app.
-- C calls init(init_json, index, workers) and keeps the returned table:
-- handle(req), on_error(req, message), origin_allowed(origin) (CORS, for
-- http.c), error_body(path, status, message) (the errors C answers itself,
-- in the path's shape), shutdown(); for WebSockets (ws.c)
-- ws_open(h, path, query, headers, peer address), ws_message(h, text), ws_close(h); and
-- pool_event(id, kind, data) for the WS worker pool (pool.c).
local json = require "moongate.json"
local config = require "moongate.config"
local log = require "moongate.log"

local M = {}

function M.init(init_json, index, workers)
  local init = assert(json.decode(init_json), "bad init")
  -- seeded first: resolving the config loads the provider scripts (their
  -- schemas), which may draw random numbers as they load
  local uv = require "luv"
  math.randomseed(uv.hrtime() % 2147483647 + index)
  local cfg, errs = config.resolve(init.flags, os.getenv, workers, require("moongate.auth.store").served(init.flags))
  if not cfg then error(table.concat(errs, "\n"), 0) end
  if index == 1 then
    for _, w in ipairs(cfg.warnings or {}) do log.warn("%s", w) end
  end
  if cfg.lua_path then
    package.path = cfg.lua_path .. ";" .. package.path
  end
  log.set_level(cfg.log_level)
  for _, p in pairs(cfg.providers) do log.add_secret(p.api_key) end
  log.add_secret(cfg.websocket.worker_token)
  local core = require "moongate.core"
  core._upstream_options { http2_streams = cfg.upstream_http2_streams }
  local app = require("moongate.app").new(cfg, { worker = index, workers = workers })
  if index == 1 and not app.keys and not app.host_names then
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
    pool_event = pool.event,
  }
end

return M
