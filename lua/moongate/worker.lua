-- Entry point of each worker thread: resolve the config and build the app.
-- C calls init(init_json, index, workers) and keeps the returned table:
-- handle(req), on_error(req, message), shutdown().
local json = require "moongate.json"
local config = require "moongate.config"
local log = require "moongate.log"

local M = {}

function M.init(init_json, index, workers)
  local init = assert(json.decode(init_json), "bad init")
  local cfg, errs = config.resolve(init.flags, os.getenv, workers)
  if not cfg then error(table.concat(errs, "\n"), 0) end
  if cfg.lua_path then
    package.path = cfg.lua_path .. ";" .. package.path
  end
  log.set_level(cfg.log_level)
  for _, p in pairs(cfg.providers) do log.add_secret(p.api_key) end
  local uv = require "luv"
  math.randomseed(uv.hrtime() % 2147483647 + index)
  local app = require("moongate.app").new(cfg, { worker = index, workers = workers })
  return {
    handle = function(req) return app:handle(req) end,
    on_error = function(req, message) return app:on_error(req, message) end,
    shutdown = function() return app:shutdown() end,
  }
end

return M
