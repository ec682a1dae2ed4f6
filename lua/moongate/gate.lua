-- The gate's policy: which concurrency limits a request passes before it
-- goes upstream, and the waiting. The permits, the fair queues (round robin
-- between inbound key names, first come first served within one) and the
-- cooldowns are the host's (src/gate.c), shared by every worker thread and
-- kept across a reload; this module only says which gates apply, with what
-- limits, and waits for C's answer.
--
--   M.policy(cfg) -> policy | nil (no limit configured)
--   M.enter(policy, req, route, key, cb [, link]) -> abort: cb(release,
--     nil, route) once every gate let the request in (release(): give the
--     permits back, once; route: the one given, or, when its first provider
--     cools down and a fallback remains, the rest of its chain), or cb(nil,
--     err) with the client's 429 (err.retry_after) when a queue is full, the
--     wait passed queue_timeout_ms (in all, over every gate), or the
--     provider cools down past the wait. link: the index in route.chain of
--     the provider it goes to (1). abort(): the client left (called by
--     itself on req's close): out of the queue, permits back, no cb
--   M.moves(policy, route, from, to) -> a fallback from link `from` to
--     `to` changes the provider gate (give the permits back, enter again)
--   M.event(id, kind): C's word on a waiting request ("granted", "timeout")
--   M.cool(policy, provider, seconds): a provider's 429 (Retry-After)
local core = require "moongate.core"
local errors = require "moongate.errors"

local M = {}
local waiting = {} -- request id -> function(kind)
local seq = 0
-- a waiter's id is unique to this Lua state: after a reload the old and the
-- new state of a thread both hear each event, and only the maker acts on it
local nonce = string.format("%x%x", math.random(0, 0x7fffffff), math.floor(require("luv").hrtime() % 0x7fffffff))

local function glob(p) return "^" .. p:gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"):gsub("%*", ".*") .. "$" end

--- policy(cfg) -> {global, providers = {name = n}, models = {{pattern, n}},
-- queue_timeout_ms, max_queue} | nil when nothing is limited
function M.policy(cfg)
  local g = cfg.gate or {}
  local p = { global = g.global or 0, providers = {}, models = {},
    queue_timeout_ms = g.queue_timeout_ms or 30000, max_queue = g.max_queue or 1000 }
  local any = p.global > 0
  for name, conf in pairs(cfg.providers or {}) do
    if type(conf) == "table" and (conf.max_concurrent or 0) > 0 then
      p.providers[name] = conf.max_concurrent
      any = true
    end
  end
  local pats = {}
  for pat in pairs(g.models or {}) do pats[#pats + 1] = pat end
  table.sort(pats)
  for _, pat in ipairs(pats) do
    p.models[#p.models + 1] = { match = glob(pat), name = pat, limit = g.models[pat] }
    any = true
  end
  return any and p or nil
end

-- the gates a request passes, in one fixed order (model, provider, then
-- global), so that two requests never wait on each other's permits; the
-- narrowest first, so that a request waiting for a busy or cooling
-- provider holds no permit of the global gate the other providers need
local function gates_for(policy, route, link)
  local list = {}
  for _, m in ipairs(policy.models) do
    if (route.model or ""):find(m.match) then
      list[#list + 1] = { "model:" .. m.name, m.limit }
      break
    end
  end
  local to = route.chain[link or 1]
  local pl = to and policy.providers[to.name]
  if pl then list[#list + 1] = { "provider:" .. to.name, pl, provider = true } end
  if policy.global > 0 then list[#list + 1] = { "global", policy.global } end
  return list
end

local function too_many(name, why, retry_s)
  local e = errors.new(429, string.format("the gateway's %s limit is reached (%s); retry in %d s", name, why,
    retry_s), { code = "rate_limit_exceeded" })
  e.retry_after = retry_s
  return e
end

--- moves(policy, route, from, to): see the top
function M.moves(policy, route, from, to)
  local a, b = route.chain[from], route.chain[to]
  return (a and policy.providers[a.name]) ~= nil or (b and policy.providers[b.name]) ~= nil
end

-- the route from its link i on (a first provider that cools down is
-- skipped while a fallback remains)
local function from_link(route, i)
  local r = {}
  for k, v in pairs(route) do r[k] = v end
  r.chain = { unpack(route.chain, i) }
  return r
end

-- out of gate gname's queue; when C let the waiter go already (granted, or
-- timed out) its word is on the way: a permit it grants goes back then
local function leave(gname, id)
  waiting[id] = nil
  if core._gate_cancel(gname, id) then return end
  waiting[id] = function(kind)
    waiting[id] = nil
    if kind == "granted" then core._gate_release(gname) end
  end
end

--- enter(policy, req, route, key, cb [, link]) -> abort: see the top
function M.enter(policy, req, route, key, cb, link)
  local skip = link == nil -- a fallback's own entry (link given) does not skip on
  seq = seq + 1
  local id = string.format("gate-%s-%d", nonce, seq)
  -- one deadline for the whole wait, however many gates it passes
  local deadline = core._now_ms() + policy.queue_timeout_ms
  local held, done, queued_at, over = {}, false, nil, false
  local function release()
    if done then return end
    done = true
    for i = #held, 1, -1 do core._gate_release(held[i]) end
    held = {}
  end
  local function finish(...)
    over = true
    waiting[id] = nil
    return cb(...)
  end
  local function fail(err)
    release()
    finish(nil, err)
  end
  local list, step
  step = function(i)
    local g = list[i]
    if not g then return finish(release, nil, route) end
    local left = deadline - core._now_ms()
    if left <= 0 then
      return fail(too_many(g[1], "waited " .. policy.queue_timeout_ms .. " ms",
        math.max(1, math.ceil(policy.queue_timeout_ms / 1000))))
    end
    -- a cooling provider with a fallback after it is not waited for
    local elsewhere = skip and g.provider and route.chain[link + 1] ~= nil
    local res, why, retry_ms = core._gate_acquire(g[1], g[2], key or "-", id, left, policy.max_queue, elsewhere)
    if res == "ok" then
      held[#held + 1] = g[1]
      return step(i + 1)
    elseif res == "queued" then
      queued_at = g[1]
      waiting[id] = function(kind)
        waiting[id], queued_at = nil, nil
        if kind == "granted" then
          held[#held + 1] = g[1]
          return step(i + 1)
        elseif kind == "shutdown" then -- out of the queue (granted meanwhile: given back)
          leave(g[1], id)
          local e = errors.new(503, "the gateway is shutting down")
          e.retry_after = 1
          return fail(e)
        end
        fail(too_many(g[1], "waited " .. policy.queue_timeout_ms .. " ms",
          math.max(1, math.ceil(policy.queue_timeout_ms / 1000))))
      end
      return
    elseif why == "cooling" and skip and g.provider and route.chain[link + 1] then
      -- the upstream asked to wait: the next provider of the chain serves
      release()
      done = false
      route, link = from_link(route, link + 1), 1
      list = gates_for(policy, route, link)
      return step(1)
    elseif why == "cooling" then
      local e = too_many(g[1], "the upstream asked to wait", math.max(1, math.ceil((retry_ms or 1000) / 1000)))
      e.cooling = g.provider
      return fail(e)
    end
    return fail(too_many(g[1], "its queue is full", 1))
  end
  -- abort(): the request leaves (its client closed): out of the queue, the
  -- permits it holds given back; nothing more reaches cb
  local function abort()
    if over then return end
    over = true
    if queued_at then leave(queued_at, id) end
    release()
  end
  -- the client leaves while it waits
  if req and req.h then core._on_close(req.h, abort) end
  link = link or 1
  list = gates_for(policy, route, link)
  if not list[1] then
    finish(function() end, nil, route)
    return abort
  end
  step(1)
  return abort
end

--- permits(policy, route, key, release, x) -> p: the permits of the
-- exchange x, which may change as it falls back. p.release() gives back
-- what it holds now (when x ends); x.regate trades them, before a fallback
-- to another provider with a gate, for that provider's (waiting its turn
-- there); x.on_cancel takes a request that leaves during that wait out of
-- the queue.
function M.permits(policy, route, key, release, x)
  local p = { current = release or function() end }
  function p.release()
    local r = p.current
    p.current = function() end
    r()
  end
  local abort
  x.on_cancel = function() if abort then abort() end end
  x.regate = function(from, to, go)
    if not M.moves(policy, route, from, to) then return go() end
    p.release()
    abort = M.enter(policy, nil, route, key, function(rel, err)
      abort = nil
      if not rel then return go(err) end
      if x.done then return rel() end
      p.current = rel
      go()
    end, to)
  end
  return p
end

--- event(id, kind): "granted" | "timeout" from C (through the worker's pool_event)
function M.event(id, kind)
  local fn = waiting[id]
  if fn then return fn(kind) end
  -- nobody waits here: another state's request, or one whose client left
  -- (its cancel found it granted and gave the permit back then)
end

--- take_rate(inbound) -> nil, or the client's 429 (with retry_after): the
-- key is over one of its rate limits (src/rate.c). Takes one request of the
-- key's when it passes; nil too for a key without limits (or none).
function M.take_rate(inbound)
  local limits = inbound and inbound.limits
  if not limits then return nil end
  local ok, which, retry = core._rate_take(inbound.name, limits)
  if ok then return nil end
  local s = math.max(1, math.ceil(retry))
  local e = errors.new(429, string.format("The key %s is over its %s limit; retry in %d s.",
    errors.shown(inbound.name, 100), which, s), { code = "rate_limit_exceeded" })
  e.retry_after = s
  return e
end

--- shutdown(): the daemon stops: every request of this state still
-- waiting for a permit gets its 503 now (none starts after the deadline)
function M.shutdown()
  local list = {}
  for id, fn in pairs(waiting) do list[#list + 1] = { id, fn } end
  for _, w in ipairs(list) do
    if waiting[w[1]] then
      local ok, err = pcall(w[2], "shutdown")
      if not ok then require("moongate.log").error("gate shutdown: %s", tostring(err)) end
    end
  end
end

--- cool(policy, provider, seconds): a provider's 429 pauses its gate
function M.cool(policy, provider, seconds)
  if policy and policy.providers[provider] then
    local s = tonumber(seconds) or 1
    if s ~= s then s = 1 end
    -- at most 5 minutes: a limited upstream is tried again by then anyway
    core._gate_cool("provider:" .. provider, math.min(math.max(0, s), 300) * 1000)
  end
end

--- waiting_count() -> requests of this state waiting for a permit
function M.waiting_count()
  local n = 0
  for _ in pairs(waiting) do n = n + 1 end
  return n
end

return M
