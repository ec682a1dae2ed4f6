-- Auth by API key (kinds openai, anthropic and every kind that takes a
-- static key): the provider's key (api_key, or the env variable api_key_env
-- names, or the adapter's default variable), a pool of keys (api_keys,
-- api_key_envs: see auth/pool.lua), or the client's own key
-- (forward_client_key). Every key is registered as a secret.
--
-- The auth contract every provider kind's auth object keeps (providers/
-- upstream.lua calls it before each upstream request):
--   auth:headers(creq, cb, ctx): cb(grant) or cb(nil, err {status, message, code})
--     ctx = {adapter = the adapter about to be used, stale = true when the
--     previous grant was answered 401 (refresh, then it is retried once),
--     previous = that grant}; grant = {headers = {...}, base_url = ...,
--     member = the pool member used, if any}
--   auth:limited(grant, seconds) -> true when another member can serve now
--     (optional: pools only); auth:served(grant): the member answered
--   auth:state() -> the pool's state for /stats (optional)
--   auth.refreshable: a 401 is worth asking again (a token that refreshes)
local errors = require "moongate.errors"
local secrets = require "moongate.secrets"
local pool = require "moongate.auth.pool"

local M = {}
local Auth = {}
Auth.__index = Auth

--- new(provider) -> auth; provider: {name, conf, base_url, adapter (for
-- its defaults.key_env)}
function M.new(p, getenv)
  getenv = getenv or os.getenv
  -- the kind's defaults (a local server's preset names no key variable)
  local conf, d = p.conf, p.defaults or p.adapter.defaults or {}
  local self = setmetatable({ p = p, conf = conf }, Auth)
  local members = {}
  for i, k in ipairs(conf.api_keys or {}) do members[#members + 1] = { name = "api_keys[" .. i .. "]", key = k } end
  for _, env in ipairs(conf.api_key_envs or {}) do
    local v = getenv(env)
    if v and v ~= "" then members[#members + 1] = { name = env, key = v } end
  end
  for _, m in ipairs(members) do secrets.add(m.key) end
  if #members > 0 then
    self.pool, self.rotates = pool.new(members), #members > 1
  else
    self.key = conf.api_key or (conf.api_key_env and getenv(conf.api_key_env))
      or (not conf.api_key_env and d.key_env and getenv(d.key_env)) or nil
    if self.key == "" then self.key = nil end
    secrets.add(self.key) -- configured or from the environment: never logged, never relayed
  end
  return self
end

--- pick(creq) -> the key for this request, member | nil, err: a provider
-- that forwards the client's key never falls back to its own (a client
-- that sends none, or Basic auth, gets 401: the operator's key is not lent)
function Auth:pick(creq)
  if self.conf.forward_client_key then
    if creq.client_key then
      secrets.add_client(creq.client_key) -- out of the log from now on
      return creq.client_key
    end
    return nil, nil, errors.new(401, string.format("provider %s uses the client's own key: send it as "
      .. "Authorization: Bearer or x-api-key", self.p.name), { code = "missing_api_key" })
  end
  if not self.pool then return self.key end
  local m, err = self.pool:take(self.p.name, "key")
  if not m then return nil, nil, err end
  return m.key, m
end

function Auth:headers(creq, cb, ctx)
  local key, member, err = self:pick(creq)
  if err then return cb(nil, err) end
  cb({ headers = ctx.adapter.headers(self.conf, key, creq), base_url = self.p.base_url, member = member })
end

--- static_headers(adapter) -> the headers every request gets, when they
-- never change (one key of the provider's own, or none), else nil
function Auth:static_headers(adapter)
  if self.pool or self.conf.forward_client_key then return nil end
  return adapter.headers(self.conf, self.key, nil)
end

pool.methods(Auth)

return M
