-- The fast path's decisions: which requests C may serve with no Lua call
-- (src/fast.c; docs/BENCHMARK.md, "The fast path"). C repeats a decision
-- made here: the first request for a model takes Lua's path, and when its
-- route needs no script, the route is published for the next ones.
-- Pure: its callers hand it the host's primitives.
local canonical = require "moongate.canonical"
local json = require "moongate.json"
local oc = require "moongate.frontdoor.openai_common"
local secrets = require "moongate.secrets"

local M = {}

M.MAX_ROUTES = 1024 -- as src/fast.c's: past it, both start again

local kinds = {
  [oc.is_bool] = "b", [oc.is_number] = "n", [oc.is_int] = "i", [oc.is_string] = "s",
  [oc.is_object] = "o", [oc.is_array] = "a",
}

--- rules(door) -> the door's checks as data ({name, kind, lo, hi}), the
-- fields its decode reads beyond them as kind "x" (Lua's path); nil when a
-- check is one C cannot repeat
function M.rules(door)
  local out, slow = {}, {}
  for _, name in ipairs(door.fast_slow) do
    slow[name] = true
    out[#out + 1] = { name, "x" }
  end
  local names = {}
  for name in pairs(door.fast_checks) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local c = door.fast_checks[name]
    local kind, b = kinds[c[2]], c[3] and oc.bounds[c[3]]
    if not kind or (c[3] and not b) then return nil end
    if not slow[name] and name ~= "stream" then out[#out + 1] = { name, kind, b and b.lo, b and b.hi } end
  end
  return out
end

--- config(app, door, level) -> the options of core._fast_config, or nil
-- when this configuration keeps every request on Lua's path (a gate: its
-- permits and queues are Lua's; fast_path = false; --verbose logs bodies)
function M.config(app, door, level)
  if app.cfg.fast_path == false or app.gate or level == "debug" or not door.fast_checks then return nil end
  local rules = M.rules(door)
  if not rules then return nil end
  local hosts
  if app.host_names then
    hosts = { "localhost", "127.0.0.1", "::1" }
    for name in pairs(app.host_names) do hosts[#hosts + 1] = name end
  end
  local list
  if app.keys then
    list = {}
    for i, e in ipairs(app.keys) do
      -- a key with limits or a model list: Lua's path (rate.c's budgets, keys.allows)
      list[i] = { key = e.key, name = e.name, slow = e.limits ~= nil or e.models ~= nil }
    end
  end
  return { hosts = hosts, keys = list, rules = rules, marker = canonical.PACKED }
end

--- route(door, creq, route) -> what core._fast_route takes for creq.model,
-- or nil when requests for it need Lua: a whole passthrough of a route the
-- config fixes, whose first provider sends it as it is (provider:fast)
function M.route(door, creq, route)
  if not door.fast_checks or creq.stream or not route.fixed or route.effort or creq.packed
    or creq.need_usage or creq.effort_from_suffix then
    return nil
  end
  local link = route.chain[1]
  local p = link and link.provider
  local f = p and p.fast and p:fast(creq)
  if not f then return nil end
  f.provider = link.name
  f.note_model = secrets.redact(creq.model)
  if route.model ~= creq.model then f.upstream_model = json.encode(route.model) end
  return f
end

return M
