-- Auth by logged-in accounts (kinds copilot and chatgpt): the provider's
-- account (conf.account, default: the provider's own name), a pool of them
-- (conf.accounts: see auth/pool.lua), a token given in the config
-- (conf.api_key / api_key_env), or the client's own token
-- (conf.forward_client_key: one token source per client key, cached).
-- Keeps the contract of auth/api_key.lua; refreshable: after a 401 the
-- source is asked for a fresh token once.
--
--   accounts.new(p, kind) -> auth; kind: {
--     source(p, opts) -> a token source (auth/copilot.lua, auth/chatgpt.lua):
--       opts = {account = NAME} | {token = "..."}; src:token(cb, stale)
--     headers(p, tok, creq, adapter) -> the request's headers for token tok
--     base_url(p, tok) -> where requests go (optional: p.base_url) }
local errors = require "moongate.errors"
local secrets = require "moongate.secrets"
local pool = require "moongate.auth.pool"

local M = {}
local Auth = {}
Auth.__index = Auth

local CLIENT_SOURCES = 256 -- client tokens whose source a provider keeps

function M.new(p, kind, getenv)
  getenv = getenv or os.getenv
  local conf = p.conf
  local self = setmetatable({ p = p, conf = conf, kind = kind, refreshable = true,
    clients = {}, nclients = 0 }, Auth)
  if conf.forward_client_key then return self end
  local members = {}
  local token = conf.api_key or (conf.api_key_env and getenv(conf.api_key_env)) or nil
  if token and token ~= "" then
    secrets.add(token)
    members[1] = { name = conf.api_key and "api_key" or conf.api_key_env, source = kind.source(p, { token = token }) }
  else
    for _, name in ipairs(conf.accounts or { conf.account or p.name }) do
      members[#members + 1] = { name = name, source = kind.source(p, { account = name }) }
    end
  end
  self.members = members
  -- a pool even of one: /stats and moongate info show what it served
  self.pool, self.rotates = pool.new(members), #members > 1
  return self
end

-- the member (with its token source) this request uses | nil, err
function Auth:member(creq)
  if self.conf.forward_client_key then
    local key = creq.client_key
    if not key then
      return nil, errors.new(401, string.format("provider %s uses the client's own token: send it as "
        .. "Authorization: Bearer", self.p.name), { code = "missing_api_key" })
    end
    secrets.add_client(key) -- out of the log from now on
    local m = self.clients[key]
    if not m then
      if self.nclients >= CLIENT_SOURCES then self.clients, self.nclients = {}, 0 end
      m = { name = "client", source = self.kind.source(self.p, { token = key }) }
      self.clients[key], self.nclients = m, self.nclients + 1
    end
    return m
  end
  if not self.rotates then return self.members[1] end
  return self.pool:take(self.p.name, "account")
end

function Auth:headers(creq, cb, ctx)
  local m, err = self:member(creq)
  if not m then return cb(nil, err) end
  local stale = ctx.stale and ctx.previous and ctx.previous.token or nil
  m.source:token(function(tok, terr)
    if not tok then return cb(nil, terr) end
    local base = self.kind.base_url and self.kind.base_url(self.p, tok) or self.p.base_url
    cb({ headers = self.kind.headers(self.p, tok, creq, ctx.adapter), base_url = base, member = m,
      token = tok.token })
  end, stale or ctx.stale or nil)
end

pool.methods(Auth)

return M
