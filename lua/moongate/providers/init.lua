-- Provider registry: builds one instance per configured provider from
-- lua/moongate/providers/<kind>.lua (or an operator's module on lua_path).
local M = {}

-- A provider whose kind this build cannot serve: every request gets a clear
-- 501 in the client's format instead of a crash at start-up.
local function unavailable(name, kind, why)
  return {
    name = name, kind = kind, models = {},
    start = function(_, _, sink)
      sink.emit({ type = "error", status = 501, message = string.format(
        "provider %q (kind %q) is not available: %s", name, kind, why) })
      return { cancel = function() end }
    end,
  }
end

--- build(cfg) -> name -> instance (always including "echo", and "workers":
-- the WS worker pool, which serves the models its workers announce)
function M.build(cfg)
  local out = {}
  local confs = { echo = { kind = "echo" }, workers = { kind = "ws" } }
  for name, conf in pairs(cfg.providers or {}) do confs[name] = conf end
  for name, conf in pairs(confs) do
    local modname = "moongate.providers." .. conf.kind
    local ok, mod = pcall(require, modname)
    if not ok and not tostring(mod):find("module '" .. modname .. "' not found", 1, true) then
      error(mod, 0) -- a provider script that fails to load is the operator's to see
    end
    if ok then
      local inst = mod.new(name, conf, cfg)
      inst.kind = inst.kind or conf.kind
      inst.models = inst.models or conf.models or {}
      out[name] = inst
    else
      out[name] = unavailable(name, conf.kind, "no provider module for this kind in this build")
    end
  end
  return out
end

return M
