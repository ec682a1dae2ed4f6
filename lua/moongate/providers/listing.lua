-- A provider's model list fetched from its upstream (kinds copilot and
-- chatgpt, and any provider with discover = true: the local servers'
-- presets), cached for models_ttl_s (default 600 s) and refreshed in the
-- background. One fetch at a time: requests arriving during it wait for
-- it. The list fills p.models (what /v1/models shows) and p.model_info
-- (id -> the upstream's entry). An upstream that is down keeps its last
-- list; l.down says why until a fetch works again (/stats shows it).
--
--   listing.new(p, fetch) -> l; fetch(cb): cb(list of {id, ...}) | cb(nil, err)
--   listing.from_upstream(p, adapter, path, read) -> a fetch: GET base_url ..
--                  path (or path itself, a whole URL) with the provider's credentials (fresh ones once after
--                  a 401), read(decoded answer) -> the list | nil
--   l:get(cb)      cb(model_info) once fresh (or the old list when the fetch
--                  fails: a stale list beats none)
--   l:refresh()    fetch now if stale (a provider calls it at start)
--   l:has(id)      -> whether the last list names it (a miss fetches the list
--                  again in the background, at most every MISS_S)
--   l:watch()      fetch now and every models_ttl_s, in the background (a
--                  timer that keeps no loop alive); after a failure again in
--                  5, 15, then 60 s (a server that starts after the gateway)
--   l:stop()       the watch ends (at shutdown)
--   l:state()      -> {models = n, age_s (since the last list came), down = why?} for /stats
--   listing.read_models(body) -> the list of an OpenAI /v1/models answer
--                  ({data: [{id}]}) or an Ollama /api/tags one ({models: [{name}]})
local log = require "moongate.log"

local M = {}
M.MAX = 5000     -- models kept from one upstream's list
M.MAX_ID = 200   -- bytes in a model's name
M.RETRY_S = { 5, 15, 60 } -- after a failed fetch, the next tries (then every min(60 s, ttl))
M.MISS_S = 10    -- a name the list lacks fetches it again at most this often
local Listing = {}
Listing.__index = Listing

local function now_s() return require("moongate.core")._now_ms() / 1000 end

function M.new(p, fetch)
  local self = setmetatable({ p = p, fetch = fetch, ttl = p.conf.models_ttl_s or 600, at = nil,
    waiting = nil, clock = now_s }, Listing)
  p.models = p.models or {}
  p.model_info = p.model_info or {}
  return self
end

function Listing:fresh()
  return self.at ~= nil and self.clock() - self.at < self.ttl
end

function Listing:get(cb, force)
  if not force and self:fresh() then return cb(self.p.model_info) end
  if self.waiting then self.waiting[#self.waiting + 1] = cb; return end
  self.waiting = { cb }
  self.fetch(function(list, err)
    local waiting = self.waiting
    self.waiting = nil
    if list then
      local ids, info = {}, {}
      for _, m in ipairs(list) do
        -- an upstream's list is its word, not ours: names a client could
        -- type (no spaces or controls, at most MAX_ID bytes), at most MAX
        if #ids >= M.MAX then break end
        if type(m) == "table" and type(m.id) == "string" and not info[m.id] and #m.id <= M.MAX_ID
            and m.id:find("^[%w][%w%.%-_:/@+]*$") then
          ids[#ids + 1] = m.id
          info[m.id] = m
        end
      end
      table.sort(ids)
      -- configured models stay listed; the upstream's come after
      local p = self.p
      local listed = {}
      for _, id in ipairs(p.conf.models or {}) do listed[#listed + 1] = id end
      for _, id in ipairs(ids) do listed[#listed + 1] = id end
      p.models, p.model_info, self.at, self.down = listed, info, self.clock(), nil
      self.ok_at, self.failures = self.at, 0
      if self.timer and self.retrying then self:arm(self.ttl) end
    else
      self.down = tostring(type(err) == "table" and err.message or err)
      log.warn("provider %s: cannot list its models: %s", self.p.name, self.down)
      -- soon again (a server that starts after the gateway), not per request
      self.failures = (self.failures or 0) + 1
      local wait = math.min(M.RETRY_S[self.failures] or 60, self.ttl)
      self.at = self.clock() - self.ttl + wait
      if self.timer then self:arm(wait) end
    end
    for _, fn in ipairs(waiting) do fn(self.p.model_info) end
  end)
end

function M.from_upstream(p, adapter, path, read)
  local util = require "moongate.auth.util"
  return function(cb)
    local function try(stale, previous)
      p.auth:headers({ messages = {} }, function(grant, err)
        if not grant then return cb(nil, err) end
        -- a listing is neither the user's turn nor a request body
        grant.headers["x-initiator"], grant.headers["content-type"] = nil, nil
        local url = path:find("^https?://") and path or grant.base_url .. path
        util.request({ url = url, headers = grant.headers, insecure = p.conf.insecure },
          function(res, ferr)
            if not res then return cb(nil, ferr) end
            if res.status == 401 and not stale and p.auth.refreshable then return try(true, grant) end
            local list = res.status == 200 and res.json and read(res.json)
            if type(list) ~= "table" then
              return cb(nil, "GET " .. path .. " answered " .. tostring(res.status)
                .. (res.status == 200 and " with no model list" or ""))
            end
            cb(list)
          end)
      end, { adapter = adapter, stale = stale, previous = previous })
    end
    try(false)
  end
end

function M.read_models(body)
  local out = {}
  if type(body.data) == "table" then
    for _, m in ipairs(body.data) do
      if type(m) == "table" and type(m.id) == "string" then out[#out + 1] = m end
    end
    return out
  end
  if type(body.models) == "table" then
    for _, m in ipairs(body.models) do
      local id = type(m) == "table" and (m.name or m.model)
      if type(id) == "string" then out[#out + 1] = { id = id, entry = m } end
    end
    return out
  end
end

-- the watch's next fetch in first_s seconds, then every ttl
function Listing:arm(first_s)
  self.retrying = first_s < self.ttl
  self.timer:stop()
  self.timer:start(math.floor(first_s * 1000), math.floor(self.ttl * 1000), function() self:get(function() end, true) end)
end

function Listing:watch()
  self.timer = require("luv").new_timer()
  self:arm(0)
  self.timer:unref()
end

-- the watch's timer closed: at shutdown, before the Lua state goes (a
-- timer that keeps no loop alive would otherwise outlive it)
function Listing:stop()
  if self.timer then
    if not self.timer:is_closing() then self.timer:close() end
    self.timer = nil
  end
end

function Listing:state()
  return { models = #self.p.models, down = self.down,
    age_s = self.ok_at and math.floor(self.clock() - self.ok_at) or nil }
end

function Listing:refresh()
  if not self:fresh() then self:get(function() end) end
end

function Listing:has(id)
  if self.p.model_info[id] ~= nil then return true end
  -- a name the list lacks: perhaps new upstream (a model pulled a moment
  -- ago); the list is fetched again in the background, at most every MISS_S
  if self.timer and not self.waiting and self.clock() - (self.missed_at or 0) >= M.MISS_S then
    self.missed_at = self.clock()
    self:get(function() end, true)
  end
  return false
end

return M
