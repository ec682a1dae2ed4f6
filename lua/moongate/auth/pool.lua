-- A pool of interchangeable credentials of one provider (accounts, or API
-- keys): each request takes the least recently limited member that is not
-- resting; a member the upstream limits (429, a quota error) rests for the
-- upstream's Retry-After, or the provider's cooldown, while the others serve.
--
--   pool.new(members [, now_ms]) -> pool; members: list of {name = "...", ...}
--     (the caller's tables, kept as they are; name is what /stats shows)
--   pool:pick() -> member | nil, seconds until the first one is back
--   pool:take(provider, what) -> member | nil, the client's 429 (with
--     retry_after) when every one rests; what: "account", "key" 
--   pool:limited(member, seconds) -> rests it that long (at least 1 s)
--   pool:served(member) -> counts a request it served
--   pool:state() -> list of {name, resting_s?, limited (times), served}, for
--     /stats and `moongate info` (never a credential: names only)
--   pool:export() -> table, pool:import(table): across a hot reload
--
-- Per Lua state (each worker thread keeps its own): a limit one thread
-- meets rests the member there; the others meet it at their next request.
local M = {}
local Pool = {}
Pool.__index = Pool

local function now_ms() return require("moongate.core")._now_ms() end

function M.new(members, clock)
  local list = {}
  for i, m in ipairs(members) do
    list[i] = { member = m, name = m.name, until_ms = 0, limited_at = 0, limits = 0, served = 0, order = i }
  end
  return setmetatable({ list = list, clock = clock or now_ms, by = {} }, Pool)
end

function Pool:pick()
  local t = self.clock()
  local best, soonest
  for _, e in ipairs(self.list) do
    if e.until_ms <= t then
      -- never limited (limited_at 0) beats limited long ago beats limited lately;
      -- the configured order breaks ties
      if not best or e.limited_at < best.limited_at then best = e end
    elseif not soonest or e.until_ms < soonest then
      soonest = e.until_ms
    end
  end
  if best then return best.member end
  return nil, math.max(1, math.ceil((soonest - t) / 1000))
end

function Pool:take(provider, what)
  local m, wait = self:pick()
  if m then return m end
  local e = require("moongate.errors").new(429, string.format("provider %s: every %s is rate limited; retry in %d s",
    provider, what, wait))
  e.retry_after = wait
  return nil, e
end

local function entry(self, member)
  for _, e in ipairs(self.list) do if e.member == member then return e end end
end

function Pool:limited(member, seconds)
  local e = entry(self, member)
  if not e then return end
  local t = self.clock()
  e.until_ms = t + math.max(1, tonumber(seconds) or 1) * 1000
  e.limited_at, e.limits = t, e.limits + 1
end

function Pool:served(member)
  local e = entry(self, member)
  if e then e.served = e.served + 1 end
end

function Pool:state()
  local t, out = self.clock(), {}
  for i, e in ipairs(self.list) do
    out[i] = { name = e.name, served = e.served, limited = e.limits,
      resting_s = e.until_ms > t and math.ceil((e.until_ms - t) / 1000) or nil }
  end
  return out
end

--- export() -> {name = {until_ms, limited_at, limits, served}}: what a hot
-- reload carries over to the new Lua state's pool (import), so a member
-- resting now still rests there (the clock is the host's, shared by states)
function Pool:export()
  local out = {}
  for _, e in ipairs(self.list) do
    out[e.name] = { until_ms = e.until_ms, limited_at = e.limited_at, limits = e.limits, served = e.served }
  end
  return out
end

--- import(t): an export of the pool this one replaces; members matched by name
function Pool:import(t)
  for _, e in ipairs(self.list) do
    local o = type(t) == "table" and t[e.name]
    if type(o) == "table" then
      for _, k in ipairs { "until_ms", "limited_at", "limits", "served" } do
        if type(o[k]) == "number" then e[k] = o[k] end
      end
    end
  end
end

--- methods(Auth): the pool's side of the auth contract, for an auth
-- object with self.pool (nil: none), self.rotates (more than one member to
-- turn to) and self.conf (its cooldown_ms)
function M.methods(Auth)
  -- rests the grant's member -> whether another can serve now
  function Auth:limited(grant, seconds)
    if not (self.rotates and grant.member) then return false end
    self.pool:limited(grant.member, seconds or (self.conf.cooldown_ms or 60000) / 1000)
    return self.pool:pick() ~= nil
  end
  -- counts a request the grant's member answered
  function Auth:served(grant)
    if self.pool and grant.member then self.pool:served(grant.member) end
  end
  function Auth:state()
    return self.pool and self.pool:state() or nil
  end
end

return M
