-- GitHub Copilot accounts: the device-flow login (`moongate login copilot`)
-- and the token source the daemon's copilot providers ask for tokens.
--
--   source(opts) -> src   opts: account = NAME (a stored account) or
--       github_token = "..." (pass-through: a client's own GitHub token),
--       github_api_url (default env MOONGATE_GITHUB_API_URL or
--       https://api.github.com), copilot_api_url (beats the token's
--       proxy-ep; default env MOONGATE_COPILOT_API_URL), headers (editor
--       headers sent on the exchange), insecure, clock (a function giving
--       epoch seconds; for tests)
--   src:token(cb, stale)  cb(tok) | cb(nil, {status, message}); tok =
--       {token, base_url, expires_at}. Exchanges the GitHub token for a
--       Copilot token only when there is none, when refresh_in - 60 s has
--       passed (or expires_at is near), or when stale is given (an upstream
--       answered 401): stale == true exchanges once more; stale may also be
--       the refused token (string or tok), and when this source already
--       holds another one that is served instead. Callers arriving while an
--       exchange is under way wait for it: one request to GitHub, not N. A
--       cached token is given at once (cb runs before token() returns).
--   login(opts, out) -> record | nil, err   the device flow, run on this
--       thread's loop until it ends; out(line) prints. opts: name, github_url,
--       github_api_url, insecure, clock.
local uv = require "luv"
local secrets = require "moongate.secrets"
local store = require "moongate.auth.store"
local util = require "moongate.auth.util"

local M = {}

M.CLIENT_ID = "Iv1.b507a08c87ecfe98" -- the one VS Code's Copilot uses
M.DEFAULT_BASE = "https://api.githubcopilot.com"
M.MARGIN = 60 -- seconds before refresh_in / expires_at that we exchange
M.FAIL_S = 5  -- seconds a failed exchange is remembered

local env = util.env

function M.github_url() return env("MOONGATE_GITHUB_URL", "https://github.com") end
function M.github_api_url() return env("MOONGATE_GITHUB_API_URL", "https://api.github.com") end

--- base_url(copilot_token) -> the API base from its proxy-ep field
-- ("proxy.individual.githubcopilot.com" -> https://api.individual...)
function M.base_from_token(token)
  local ep = type(token) == "string" and token:match("proxy%-ep=([^;]+)")
  if not ep then return nil end
  ep = ep:gsub("^https?://", ""):gsub("^proxy%.", "api.")
  return "https://" .. ep
end

---------------------------------------------------------------------------
-- the token source
---------------------------------------------------------------------------
local Source = {}
Source.__index = Source

function M.source(opts)
  opts = opts or {}
  local self = setmetatable({
    account = opts.account,
    github_token = opts.github_token,
    passthrough = opts.github_token ~= nil,
    github_api_url = (opts.github_api_url or M.github_api_url()):gsub("/+$", ""),
    copilot_api_url = opts.copilot_api_url or env("MOONGATE_COPILOT_API_URL"),
    headers = opts.headers or {},
    insecure = opts.insecure,
    clock = opts.clock or os.time,
    tok = nil,        -- {token, base_url, expires_at}
    refresh_at = 0,   -- epoch seconds: exchange again from then on
    waiting = nil,    -- callbacks of an exchange under way
    exchanges = 0,    -- how many exchanges were made (for tests and stats)
  }, Source)
  if self.copilot_api_url then self.copilot_api_url = self.copilot_api_url:gsub("/+$", "") end
  if self.github_token then self:remember(self.github_token) end
  return self
end

-- a client's own token is one of many: kept in secrets' bounded ring; an
-- account's token is the gateway's own
function Source:remember(value, rotating)
  if self.passthrough then secrets.add_client(value)
  elseif rotating then secrets.add_rotating("copilot:" .. tostring(self.account), value) -- a refresh replaces it
  else secrets.add(value) end
end

function Source:whose()
  if self.passthrough then return "the GitHub token sent as the key" end
  return string.format("the GitHub token of account %s", self.account)
end

-- the GitHub token: given, or read once from the store
function Source:github()
  if self.github_token then return self.github_token end
  local rec, err = store.load_for(self.account, "copilot", "github_token")
  if not rec then return nil, err end
  self.github_token = rec.github_token
  self:remember(self.github_token)
  return self.github_token
end

function Source:fresh()
  return self.tok and self.clock() < self.refresh_at
end

function Source:token(cb, stale)
  if stale and stale ~= true and self.tok then
    -- the refused token is not ours any more: another call exchanged already
    local refused = type(stale) == "table" and stale.token or stale
    if refused ~= self.tok.token and self:fresh() then return cb(self.tok) end
  end
  if not stale and self:fresh() then return cb(self.tok) end
  -- one exchange at a time; a failed one (a dead token, a GitHub outage)
  -- is not tried again for FAIL_S: not one exchange per request
  util.once(self, cb, function(done) self:exchange(done) end, M.FAIL_S)
end

function Source:exchange(done)
  local gh, err = self:github()
  if not gh then return done(nil, err) end
  local headers = { authorization = "token " .. gh }
  for k, v in pairs(self.headers) do headers[k] = v end
  self.exchanges = self.exchanges + 1
  util.request({ url = self.github_api_url .. "/copilot_internal/v2/token", headers = headers,
    insecure = self.insecure }, function(res, ferr)
    if not res then
      return done(nil, { status = 502, message = "cannot reach GitHub for a Copilot token: " .. ferr })
    end
    local j = res.json
    if res.status == 401 then
      local msg = self:whose() .. " was refused"
      if not self.passthrough then
        msg = msg .. string.format("; run moongate login copilot --name %s", self.account)
      end
      return done(nil, { status = 401, message = msg })
    end
    if res.status == 403 or res.status == 404 then
      return done(nil, { status = 403, message = string.format("GitHub gives no Copilot token for %s (%s)",
        self:whose(), util.reason(res)) })
    end
    if res.status ~= 200 or not j or type(j.token) ~= "string" then
      return done(nil, { status = 502, message = "GitHub's Copilot token exchange failed: " .. util.reason(res) })
    end
    self:remember(j.token, true)
    local now = self.clock()
    local expires_at = tonumber(j.expires_at) or (now + 1500)
    -- MARGIN early, or half the token's life when that is shorter (a token
    -- good for a minute must not be exchanged on every request)
    local life = expires_at - now
    if tonumber(j.refresh_in) then life = math.min(life, tonumber(j.refresh_in)) end
    local refresh_at = now + life - math.min(M.MARGIN, life / 2)
    local endpoints = type(j.endpoints) == "table" and j.endpoints or {}
    self.tok = {
      token = j.token,
      base_url = self.copilot_api_url or M.base_from_token(j.token)
        or (type(endpoints.api) == "string" and endpoints.api:gsub("/+$", "")) or M.DEFAULT_BASE,
      expires_at = expires_at,
    }
    self.refresh_at = refresh_at
    done(self.tok)
  end)
end

---------------------------------------------------------------------------
-- the device-flow login
---------------------------------------------------------------------------
local function form_post(url, fields, insecure, cb)
  util.request({ url = url, method = "POST", insecure = insecure,
    headers = { ["content-type"] = "application/x-www-form-urlencoded" }, body = util.form(fields) }, cb)
end

-- login_async(opts, out, done): done(record) | done(nil, message)
function M.login_async(opts, out, done)
  local github_url = (opts.github_url or M.github_url()):gsub("/+$", "")
  local api_url = (opts.github_api_url or M.github_api_url()):gsub("/+$", "")
  local name = opts.name or "copilot"
  local ok, nerr = store.check_name(name)
  if not ok then return done(nil, nerr) end

  form_post(github_url .. "/login/device/code", { client_id = M.CLIENT_ID, scope = "read:user" }, opts.insecure,
    function(res, err)
      if not res then return done(nil, "cannot reach GitHub: " .. err) end
      local j = res.json
      if res.status ~= 200 or not j or type(j.device_code) ~= "string" or type(j.user_code) ~= "string" then
        return done(nil, "GitHub did not start the device login: " .. util.reason(res))
      end
      secrets.add(j.device_code)
      local interval = tonumber(j.interval) or 5
      if interval <= 0 then interval = 5 end
      -- the loop's monotonic clock, in ms: a wall clock may jump
      local deadline = uv.now() + (tonumber(j.expires_in) or 900) * 1000
      out(string.format("Open %s and enter the code %s", j.verification_uri or (github_url .. "/login/device"), j.user_code))
      out("Waiting for the login to be approved...")

      local poll
      local function again() util.after(interval * 1000, poll) end
      poll = function()
        if uv.now() >= deadline then
          return done(nil, "the code expired before the login was approved; run the command again")
        end
        form_post(github_url .. "/login/oauth/access_token", { client_id = M.CLIENT_ID, device_code = j.device_code,
          grant_type = "urn:ietf:params:oauth:grant-type:device_code" }, opts.insecure, function(r, perr)
          if not r then return done(nil, "cannot reach GitHub: " .. perr) end
          local a = r.json or {}
          if type(a.access_token) == "string" then return M.finish(a.access_token, name, api_url, opts, out, done) end
          local e = a.error
          if e == "authorization_pending" then return again() end
          if e == "slow_down" then
            -- RFC 8628: 5 s more from now on, unless GitHub names a longer wait
            local told = tonumber(a.interval)
            interval = (told and told > interval) and told or interval + 5
            return again()
          end
          if e == "expired_token" then
            return done(nil, "the code expired before the login was approved; run the command again")
          end
          if e == "access_denied" then return done(nil, "the login was denied on GitHub") end
          return done(nil, "GitHub refused the login: " .. util.reason(r))
        end)
      end
      again()
    end)
end

-- the GitHub token is in: who it is, whether it has Copilot, then the store
function M.finish(github_token, name, api_url, opts, out, done)
  secrets.add(github_token)
  util.request({ url = api_url .. "/user", headers = { authorization = "token " .. github_token },
    insecure = opts.insecure }, function(res, err)
    if not res then return done(nil, "cannot reach GitHub: " .. err) end
    if res.status ~= 200 or not res.json or type(res.json.login) ~= "string" then
      return done(nil, "GitHub did not say whose token this is: " .. util.reason(res))
    end
    local login = res.json.login
    local src = M.source { github_token = github_token, github_api_url = api_url, insecure = opts.insecure }
    src.passthrough = false -- our own token now
    src:token(function(tok, terr)
      if not tok then
        out(string.format("warning: %s has no Copilot token yet (%s)", login, terr.message))
      end
      local now = (opts.clock or os.time)()
      local rec = { name = name, kind = "copilot", login = login, github_token = github_token,
        created_at = now, refreshed_at = now }
      local ok, serr = store.save(rec)
      if not ok then return done(nil, serr) end
      out(string.format("logged in as %s; stored as account %s", login, name))
      done(rec)
    end)
  end)
end

function M.login(opts, out) return util.run(M.login_async, opts or {}, out or print) end

return M
