-- ChatGPT subscription accounts: the OAuth login (`moongate login chatgpt`,
-- browser PKCE or --headless device code) and the token source the daemon's
-- chatgpt providers ask for access tokens.
--
--   source(opts) -> src   opts: account = NAME, auth_url (default env
--       MOONGATE_OPENAI_AUTH_URL or https://auth.openai.com), insecure,
--       clock (epoch seconds; for tests), poll_ms (lock wait step, 100)
--   src:token(cb, stale)  cb({token = access_token, account_id}) |
--       cb(nil, {status, message}). Refreshes (POST {auth_url}/oauth/token,
--       grant_type=refresh_token) when the access token expires within
--       5 minutes or when stale is given (an upstream answered 401); stale
--       may also be the refused access token: a source holding another,
--       fresh one serves that. Refresh tokens rotate and every worker thread
--       (and process) shares the account file, so a refresh first re-reads
--       the file (another may have refreshed: its token is used), then takes
--       <accounts>/<name>.lock (created exclusively; one older than 30 s is
--       taken as abandoned), re-reads again, refreshes and saves. Waiters
--       poll and re-read. Within a thread, callers arriving during a refresh
--       wait for it. A fresh token is given at once (cb runs before token()
--       returns).
--   login(opts, out) -> record | nil, err   opts: name, headless, auth_url,
--       insecure, clock, timeout_s; out(line) prints. The browser login
--       listens on 127.0.0.1:1455 (1457 when taken; MOONGATE_CHATGPT_CALLBACK_PORT
--       beats both, 0 for any: for tests) and prints the URL to open.
--   record_from(tokens, name, now) -> record fields from a token answer
local uv = require "luv"
local secrets = require "moongate.secrets"
local store = require "moongate.auth.store"
local util = require "moongate.auth.util"

local M = {}

M.CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
M.SCOPE = "openid profile email offline_access"
M.ORIGINATOR = "codex_cli_rs"
M.PORTS = { 1455, 1457 }
M.EARLY = 300        -- refresh when the access token expires within this (s)
M.FAIL_S = 5         -- seconds a failed refresh is remembered
M.LOCK_STALE = 30    -- a lock file older than this (s) was left by a crash
M.LOCK_WAIT = 60     -- give up waiting for another refresh after this (s)
M.AUTH_CLAIM = "https://api.openai.com/auth"

local env = util.env

function M.auth_url() return env("MOONGATE_OPENAI_AUTH_URL", "https://auth.openai.com") end

-- an account's tokens are replaced at each refresh: each kind keeps its
-- last values only (secrets.add_rotating), so refreshes do not grow the list
local function remember(rec)
  local slot = "chatgpt:" .. tostring(rec.name)
  secrets.add_rotating(slot .. ":access", rec.access_token)
  secrets.add_rotating(slot .. ":refresh", rec.refresh_token)
  secrets.add_rotating(slot .. ":id", rec.id_token)
end

--- claims of the id token (else the access token): email, account id
local function account_claims(id_token, access_token)
  local c = util.jwt_claims(id_token) or {}
  local a = util.jwt_claims(access_token) or {}
  local function auth(t) return type(t[M.AUTH_CLAIM]) == "table" and t[M.AUTH_CLAIM] or {} end
  local profile = type(a["https://api.openai.com/profile"]) == "table" and a["https://api.openai.com/profile"] or {}
  return {
    email = c.email or profile.email,
    account_id = auth(c).chatgpt_account_id or auth(a).chatgpt_account_id,
    exp = tonumber(a.exp),
  }
end

function M.record_from(tokens, name, now, old)
  local rec = {}
  for k, v in pairs(old or {}) do rec[k] = v end
  rec.name, rec.kind = name, "chatgpt"
  rec.access_token = tokens.access_token
  rec.refresh_token = tokens.refresh_token or rec.refresh_token
  rec.id_token = tokens.id_token or rec.id_token
  local c = account_claims(rec.id_token, rec.access_token)
  rec.account_id = c.account_id or rec.account_id
  rec.login = rec.login or c.email
  rec.expires_at = c.exp or (now + (tonumber(tokens.expires_in) or 3600))
  rec.refreshed_at = now
  rec.created_at = rec.created_at or now
  return rec
end

---------------------------------------------------------------------------
-- the token source
---------------------------------------------------------------------------
local Source = {}
Source.__index = Source

function M.source(opts)
  opts = opts or {}
  return setmetatable({
    account = opts.account,
    auth_url = (opts.auth_url or M.auth_url()):gsub("/+$", ""),
    insecure = opts.insecure,
    clock = opts.clock or os.time,
    poll_ms = opts.poll_ms or 100,
    rec = nil,
    waiting = nil,
    refreshes = 0, -- refresh requests this source made (for tests)
  }, Source)
end

function Source:load()
  local rec, err = store.load_for(self.account, "chatgpt", "access_token")
  if not rec then return nil, err end
  remember(rec)
  return rec
end

function Source:fresh(rec)
  return rec and tonumber(rec.expires_at) and rec.expires_at - self.clock() > M.EARLY
end

local function give(rec) return { token = rec.access_token, account_id = rec.account_id } end

function Source:token(cb, stale)
  if not self.rec then
    local rec, err = self:load()
    if not rec then return cb(nil, err) end
    self.rec = rec
  end
  if stale and stale ~= true then
    local refused = type(stale) == "table" and stale.token or stale
    if refused ~= self.rec.access_token and self:fresh(self.rec) then return cb(give(self.rec)) end
  end
  if not stale and self:fresh(self.rec) then return cb(give(self.rec)) end
  -- one refresh at a time; a failed one (a dead refresh token, an
  -- outage) is not tried again for FAIL_S: not one refresh per request
  util.once(self, cb, function(done)
    self:refresh(self.rec.access_token, function(rec, err)
      if not rec then return done(nil, err) end
      self.rec = rec
      done(give(rec))
    end)
  end, M.FAIL_S)
end

function Source:lock_path() return store.dir() .. "/" .. self.account .. ".lock" end

-- the file holds a token other than the one we hold, and it is fresh:
-- another thread or process refreshed already
function Source:newer(rec, old_access)
  return rec.access_token ~= old_access and self:fresh(rec)
end

function Source:refresh(old_access, done)
  local lock = self:lock_path()
  local started = self.clock()
  local function attempt()
    local rec, err = self:load()
    if not rec then return done(nil, err) end
    if self:newer(rec, old_access) then return done(rec) end
    local fd, _, code = uv.fs_open(lock, "wx", tonumber("600", 8))
    if not fd then
      if code ~= "EEXIST" then
        return done(nil, { status = 503, message = "cannot lock account " .. self.account .. " for a refresh: " .. tostring(code) })
      end
      local st = uv.fs_stat(lock)
      if st and os.time() - st.mtime.sec > M.LOCK_STALE then
        uv.fs_unlink(lock) -- left by a process that died mid-refresh
        return attempt()
      end
      if self.clock() - started > M.LOCK_WAIT then
        return done(nil, { status = 503, message = "timed out waiting for another refresh of account " .. self.account })
      end
      return util.after(self.poll_ms, attempt)
    end
    uv.fs_write(fd, tostring(uv.os_getpid()), 0)
    uv.fs_close(fd)
    local function unlock(...)
      uv.fs_unlink(lock)
      return done(...)
    end
    -- under the lock: the file again, for a refresh that ended just now
    rec, err = self:load()
    if not rec then return unlock(nil, err) end
    if self:newer(rec, old_access) then return unlock(rec) end
    self.refreshes = self.refreshes + 1
    util.request({ url = self.auth_url .. "/oauth/token", method = "POST", insecure = self.insecure,
      headers = { ["content-type"] = "application/x-www-form-urlencoded" },
      body = util.form { grant_type = "refresh_token", refresh_token = rec.refresh_token,
        client_id = M.CLIENT_ID, scope = "openid profile email" } }, function(res, ferr)
      if not res then
        return unlock(nil, { status = 502, message = "cannot reach the OpenAI auth server: " .. ferr })
      end
      local j = res.json
      if res.status ~= 200 or not j or type(j.access_token) ~= "string" then
        if res.status == 400 or res.status == 401 or res.status == 403 then
          return unlock(nil, { status = 401, message = string.format(
            "the ChatGPT login of account %s was refused (%s); run moongate login chatgpt --name %s",
            self.account, util.reason(res), self.account) })
        end
        return unlock(nil, { status = 502, message = "the ChatGPT token refresh failed: " .. util.reason(res) })
      end
      local new = M.record_from(j, self.account, self.clock(), rec)
      remember(new)
      local ok, serr = store.save(new)
      if not ok then
        -- the old refresh token is spent: keep the new one in memory at least
        require("moongate.log").error("account %s: cannot save the refreshed tokens: %s", self.account, serr)
      end
      unlock(new)
    end)
  end
  attempt()
end

---------------------------------------------------------------------------
-- the logins
---------------------------------------------------------------------------
local function exchange_code(o, code, verifier, redirect_uri, cb)
  secrets.add(code)
  util.request({ url = o.auth_url .. "/oauth/token", method = "POST", insecure = o.insecure,
    headers = { ["content-type"] = "application/x-www-form-urlencoded" },
    body = util.form { grant_type = "authorization_code", code = code, redirect_uri = redirect_uri,
      client_id = M.CLIENT_ID, code_verifier = verifier } }, function(res, err)
    if not res then return cb(nil, "cannot reach the OpenAI auth server: " .. err) end
    local j = res.json
    if res.status ~= 200 or not j or type(j.access_token) ~= "string" then
      return cb(nil, "the OpenAI auth server refused the login: " .. util.reason(res))
    end
    cb(j)
  end)
end

local function store_tokens(o, tokens, out, done)
  local now = o.clock()
  local rec = M.record_from(tokens, o.name, now)
  remember(rec)
  if not rec.login then return done(nil, "the id token names no email") end
  if not rec.account_id then out("warning: the tokens name no ChatGPT account id") end
  local ok, err = store.save(rec)
  if not ok then return done(nil, err) end
  out(string.format("logged in as %s; stored as account %s", rec.login, o.name))
  done(rec)
end

-- the local server the browser comes back to; ports tried in order
local function listen(ports, on_conn)
  local last
  for _, port in ipairs(ports) do
    local tcp = uv.new_tcp()
    local ok, err = tcp:bind("127.0.0.1", port)
    if ok then ok, err = tcp:listen(16, function() on_conn(tcp) end) end
    if ok then return tcp, tcp:getsockname().port end
    tcp:close()
    last = err
  end
  return nil, last
end

local function page(status, text)
  local body = "<!doctype html><html><body><p>" .. text .. "</p></body></html>"
  return string.format("HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
    status, status == 200 and "OK" or status == 404 and "Not Found" or "Bad Request", #body, body)
end

local function browser_login(o, out, done)
  local verifier, challenge = util.pkce()
  local state = util.random_id(24)
  local ports = M.PORTS
  local forced = os.getenv("MOONGATE_CHATGPT_CALLBACK_PORT")
  if forced and tonumber(forced) then ports = { tonumber(forced) } end
  local conns, finished = {}, false
  local server, port, timer
  local function finish(...)
    if finished then return end
    finished = true
    if timer and not timer:is_closing() then timer:close() end
    if server and not server:is_closing() then server:close() end
    done(...)
  end
  local function reply(c, text)
    c:write(text, function()
      conns[c] = nil
      if not c:is_closing() then c:close() end
    end)
  end
  local redirect_uri
  local function on_request(c, line)
    local target = line:match("^GET (%S+) HTTP/")
    local path, query = (target or ""):match("^([^?]*)%??(.*)$")
    if path ~= "/auth/callback" then return reply(c, page(404, "Not found.")) end
    local q = util.parse_query(query)
    if q.state ~= state then
      -- not the browser we sent: refuse, and keep waiting for the right one
      out("refused a callback whose state does not match")
      return reply(c, page(400, "The login state does not match; start the login again from moongate."))
    end
    if q.error then
      reply(c, page(400, "The login was refused."))
      return finish(nil, "the login was refused: " .. (q.error_description or q.error))
    end
    if not q.code or q.code == "" then return reply(c, page(400, "No code in the callback.")) end
    exchange_code(o, q.code, verifier, redirect_uri, function(tokens, err)
      if not tokens then
        reply(c, page(400, "The login failed; see the terminal."))
        return finish(nil, err)
      end
      reply(c, page(200, "Logged in to moongate. You can close this window."))
      store_tokens(o, tokens, out, finish)
    end)
  end
  local err
  server, port = listen(ports, function(srv)
    local c = uv.new_tcp()
    srv:accept(c)
    conns[c] = true
    local buf = ""
    c:read_start(function(rerr, data)
      if rerr or not data then
        conns[c] = nil
        if not c:is_closing() then c:close() end
        return
      end
      buf = buf .. data
      if #buf > 16384 then return reply(c, page(400, "Request too large.")) end
      local he = buf:find("\r\n\r\n", 1, true)
      if he then
        c:read_stop()
        on_request(c, buf:sub(1, (buf:find("\r\n", 1, true))))
      end
    end)
  end)
  if not server then
    err = port
    return done(nil, "cannot listen for the login callback on 127.0.0.1 port " ..
      table.concat(ports, " or ") .. ": " .. tostring(err))
  end
  redirect_uri = string.format("http://localhost:%d/auth/callback", port)
  local params = {
    { "response_type", "code" }, { "client_id", M.CLIENT_ID }, { "redirect_uri", redirect_uri },
    { "scope", M.SCOPE }, { "code_challenge", challenge }, { "code_challenge_method", "S256" },
    { "state", state }, { "id_token_add_organizations", "true" }, { "codex_cli_simplified_flow", "true" },
    { "originator", M.ORIGINATOR },
  }
  local q = {}
  for i, p in ipairs(params) do q[i] = p[1] .. "=" .. util.urlencode(p[2]) end
  local url = o.auth_url .. "/oauth/authorize?" .. table.concat(q, "&")
  out("Open this URL in a browser to log in to ChatGPT:")
  out(url)
  out(string.format("Waiting for the browser to come back to %s ...", redirect_uri))
  local browser = os.getenv("BROWSER")
  if browser and browser ~= "" then
    local h = uv.spawn(browser, { args = { url }, detached = true, stdio = { nil, nil, nil } }, function() end)
    if h then h:unref() end
  end
  timer = util.after((o.timeout_s or 600) * 1000, function()
    timer = nil
    finish(nil, "no browser came back within " .. (o.timeout_s or 600) .. " s; run the command again")
  end)
end

local function device_login(o, out, done)
  local json = require "moongate.json"
  util.request({ url = o.auth_url .. "/api/accounts/deviceauth/usercode", method = "POST", insecure = o.insecure,
    headers = { ["content-type"] = "application/json" }, body = json.encode { client_id = M.CLIENT_ID } },
    function(res, err)
      if not res then return done(nil, "cannot reach the OpenAI auth server: " .. err) end
      local j = res.json
      local user_code = j and (j.user_code or j.usercode)
      if res.status ~= 200 or not j or type(j.device_auth_id) ~= "string" or type(user_code) ~= "string" then
        return done(nil, "the OpenAI auth server did not start the device login: " .. util.reason(res))
      end
      secrets.add(j.device_auth_id)
      local interval = tonumber(j.interval) or 5
      if interval <= 0 then interval = 5 end
      local deadline = uv.now() + (o.timeout_s or 900) * 1000 -- monotonic
      out(string.format("Open %s/codex/device and enter the code %s", o.auth_url, user_code))
      out("Waiting for the login to be approved...")
      local poll
      local function again() util.after(interval * 1000, poll) end
      poll = function()
        if uv.now() >= deadline then
          return done(nil, "the code expired before the login was approved; run the command again")
        end
        util.request({ url = o.auth_url .. "/api/accounts/deviceauth/token", method = "POST", insecure = o.insecure,
          headers = { ["content-type"] = "application/json" },
          body = json.encode { device_auth_id = j.device_auth_id, user_code = user_code } }, function(r, perr)
          if not r then return done(nil, "cannot reach the OpenAI auth server: " .. perr) end
          if r.status == 403 or r.status == 404 then return again() end -- not approved yet
          local a = r.json
          if r.status ~= 200 or not a or type(a.authorization_code) ~= "string" or type(a.code_verifier) ~= "string" then
            return done(nil, "the OpenAI auth server refused the login: " .. util.reason(r))
          end
          secrets.add(a.code_verifier)
          exchange_code(o, a.authorization_code, a.code_verifier, o.auth_url .. "/deviceauth/callback",
            function(tokens, xerr)
              if not tokens then return done(nil, xerr) end
              store_tokens(o, tokens, out, done)
            end)
        end)
      end
      again()
    end)
end

function M.login_async(opts, out, done)
  local o = {
    name = opts.name or "chatgpt",
    auth_url = (opts.auth_url or M.auth_url()):gsub("/+$", ""),
    insecure = opts.insecure, clock = opts.clock or os.time, timeout_s = opts.timeout_s,
  }
  local ok, err = store.check_name(o.name)
  if not ok then return done(nil, err) end
  if opts.headless then return device_login(o, out, done) end
  browser_login(o, out, done)
end

function M.login(opts, out) return util.run(M.login_async, opts or {}, out or print) end

return M
