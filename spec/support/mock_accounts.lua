-- A mock of the account servers the login commands and token sources talk
-- to: GitHub (device login, the Copilot token exchange, /user) and OpenAI's
-- auth server (browser PKCE, refresh with rotating refresh tokens, the
-- device-code variant). As strict as the real ones about what it is sent.
-- Run: luajit spec/support/mock_accounts.lua [port]
-- It prints "mock accounts listening on PORT" once it listens.
--
-- GitHub
--   POST /login/device/code          form client_id, scope -> {device_code,
--                                     user_code, verification_uri, expires_in, interval}
--   POST /login/oauth/access_token   form client_id, device_code, grant_type:
--       answers the next step of cfg.device_steps ("pending", "slow_down",
--       "denied", "expired", "success"; "pending" once they are used up)
--   GET  /copilot_internal/v2/token  authorization: token <github token> ->
--       {token (with proxy-ep), expires_at, refresh_in} or 401
--   GET  /user                       -> {login = cfg.login} or 401
-- OpenAI auth
--   GET  /oauth/authorize            checks every parameter, then 302 to
--       redirect_uri?code=..&state=.. (a 400 naming the bad parameter else)
--   POST /oauth/token                form: authorization_code (code, redirect_uri,
--       client_id, code_verifier checked against the S256 challenge) or
--       refresh_token (a refresh token works once: each refresh rotates it)
--   POST /api/accounts/deviceauth/usercode  JSON {client_id} ->
--       {device_auth_id, user_code, interval}
--   POST /api/accounts/deviceauth/token     JSON {device_auth_id, user_code}:
--       403 for cfg.device_pending polls, then {authorization_code, code_verifier}
-- Tokens are JWT-shaped (header.payload.sig, base64url): access tokens with
-- exp (now + cfg.access_ttl) and "https://api.openai.com/auth":
-- {chatgpt_account_id}; id tokens with email too.
--
-- Control endpoints:
--   POST /_mock/config    JSON object merged into cfg (see CFG below)
--   POST /_mock/github_token {"token": "..."}: accept this GitHub token too
--   GET  /_mock/requests  what it received: method, path, headers, body, at_ms
--   GET  /_mock/issued    every secret it handed out (tokens, codes,
--                         verifiers), for the specs' leak searches
--   POST /_mock/reset     cfg, tokens and requests back to the start
package.path = "lua/?.lua;spec/?.lua;" .. package.path
local uv = require "luv"
local parse_request = require "support.request_parser"
local cjson = require "cjson"
local ffi = require "ffi"
local base64 = require "support.base64"

ffi.cdef [[unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);]]
local crypto = ffi.load("libcrypto.so.3")

local CLIENT_GH = "Iv1.b507a08c87ecfe98"
local CLIENT_OA = "app_EMoamEEZ73f0CkXaXp7hrann"

local function defaults()
  return {
    device_steps = { "pending", "slow_down", "success" },
    device_interval = 0.05,   -- seconds (GitHub says 5; the specs need speed)
    slow_down_interval = 0.3, -- the interval a slow_down answer names
    device_expires_in = 900,
    login = "octocat",
    copilot_ttl = 1800,
    copilot_refresh_in = 1500,
    proxy_ep = "proxy.individual.githubcopilot.com",
    copilot_status = 200,      -- another status: the exchange fails with it
    email = "user@example.com",
    account_id = "acct-1234",
    access_ttl = 3600,
    device_pending = 2,        -- deviceauth/token polls answered 403 first
    chatgpt_interval = "0.05", -- as a string, as the real server sends it
    refresh_delay_ms = 0,      -- the refresh answer waits this long
  }
end

local cfg, requests, issued
local gh_tokens, devices, codes, refresh_tokens, dev_auth
local function reset()
  cfg, requests, issued = defaults(), {}, {}
  gh_tokens, devices, codes, refresh_tokens, dev_auth = {}, {}, {}, {}, {}
end
reset()

local counter = 0
local function rand(prefix, n)
  counter = counter + 1
  local f = assert(io.open("/dev/urandom", "rb"))
  local bytes = f:read(n or 12)
  f:close()
  local t = {}
  for i = 1, #bytes do t[i] = string.format("%02x", bytes:byte(i)) end
  return prefix .. counter .. table.concat(t)
end

local function issue(v)
  issued[#issued + 1] = v
  return v
end

local function b64url(s) return (base64(s):gsub("+", "-"):gsub("/", "_"):gsub("=", "")) end

local function s256(verifier)
  local md = ffi.new("unsigned char[32]")
  crypto.SHA256(verifier, #verifier, md)
  return b64url(ffi.string(md, 32))
end

local function jwt(claims)
  return issue(b64url(cjson.encode { alg = "RS256", typ = "JWT" }) .. "." .. b64url(cjson.encode(claims)) ..
    "." .. b64url(rand("sig", 24)))
end

local function openai_tokens()
  local now = os.time()
  local auth = { chatgpt_account_id = cfg.account_id, chatgpt_plan_type = "plus" }
  local rt = issue(rand("rt_", 16))
  refresh_tokens[rt] = true
  return {
    access_token = jwt { exp = now + cfg.access_ttl, iat = now, jti = rand("j", 8),
      ["https://api.openai.com/auth"] = auth },
    id_token = jwt { exp = now + 3600, iat = now, email = cfg.email, ["https://api.openai.com/auth"] = auth },
    refresh_token = rt,
    expires_in = cfg.access_ttl,
    token_type = "Bearer",
  }
end

---------------------------------------------------------------------------
-- HTTP plumbing
---------------------------------------------------------------------------
local function urldecode(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(s)
  local t = {}
  for pair in (s or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    t[urldecode(k)] = urldecode(v)
  end
  return t
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local REASONS = { [200] = "OK", [302] = "Found", [400] = "Bad Request", [401] = "Unauthorized",
  [403] = "Forbidden", [404] = "Not Found" }

local function answer(status, body, headers)
  local lines = { string.format("HTTP/1.1 %d %s", status, REASONS[status] or "Status") }
  headers = headers or {}
  headers["content-length"] = #body
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. body
end

local function json_answer(status, value)
  return answer(status, cjson.encode(value), { ["content-type"] = "application/json" })
end

local function gh_token_of(headers)
  local t = (headers.authorization or ""):match("^token (%S+)$") or (headers.authorization or ""):match("^Bearer (%S+)$")
  return t and gh_tokens[t] and t
end

---------------------------------------------------------------------------
-- routes: each (req) -> answer text | nil, delay_ms
---------------------------------------------------------------------------
local routes = {}

routes["POST /login/device/code"] = function(req)
  local f = parse_query(req.body)
  if f.client_id ~= CLIENT_GH then return json_answer(400, { error = "incorrect_client_credentials" }) end
  if not (req.headers.accept or ""):find("application/json", 1, true) then
    return answer(400, "send Accept: application/json", {})
  end
  local dc = issue(rand("dc_", 16))
  devices[dc] = { step = 0, interval = cfg.device_interval }
  return json_answer(200, { device_code = dc, user_code = "WDJB-MJHT", verification_uri = "https://github.com/login/device",
    expires_in = cfg.device_expires_in, interval = cfg.device_interval })
end

routes["POST /login/oauth/access_token"] = function(req)
  local f = parse_query(req.body)
  local d = devices[f.device_code]
  if f.client_id ~= CLIENT_GH or not d or f.grant_type ~= "urn:ietf:params:oauth:grant-type:device_code" then
    return json_answer(200, { error = "incorrect_device_code", error_description = "bad client_id, device_code or grant_type" })
  end
  d.step = d.step + 1
  local step = cfg.device_steps[d.step] or "pending"
  if step == "pending" then return json_answer(200, { error = "authorization_pending" }) end
  if step == "slow_down" then
    d.interval = cfg.slow_down_interval
    return json_answer(200, { error = "slow_down", interval = cfg.slow_down_interval })
  end
  if step == "denied" then return json_answer(200, { error = "access_denied" }) end
  if step == "expired" then return json_answer(200, { error = "expired_token" }) end
  devices[f.device_code] = nil
  local t = issue(rand("gho_", 16))
  gh_tokens[t] = true
  return json_answer(200, { access_token = t, token_type = "bearer", scope = "read:user" })
end

routes["GET /copilot_internal/v2/token"] = function(req)
  if not gh_token_of(req.headers) then return json_answer(401, { message = "Bad credentials" }) end
  if cfg.copilot_status ~= 200 then return json_answer(cfg.copilot_status, { message = "no copilot for you" }) end
  local now = os.time()
  local tok = issue(string.format("tid=%s;exp=%d;sku=monthly;proxy-ep=%s;8kp=1:%s", rand("t", 8),
    now + cfg.copilot_ttl, cfg.proxy_ep, rand("", 16)))
  return json_answer(200, { token = tok, expires_at = now + cfg.copilot_ttl, refresh_in = cfg.copilot_refresh_in,
    endpoints = { api = "https://api.individual.githubcopilot.com" } })
end

routes["GET /user"] = function(req)
  if not gh_token_of(req.headers) then return json_answer(401, { message = "Bad credentials" }) end
  return json_answer(200, { login = cfg.login, id = 1 })
end

routes["GET /oauth/authorize"] = function(req)
  local q = parse_query(req.query)
  local function bad(why) return answer(400, "bad authorize request: " .. why, { ["content-type"] = "text/plain" }) end
  if q.response_type ~= "code" then return bad("response_type") end
  if q.client_id ~= CLIENT_OA then return bad("client_id") end
  if not (q.redirect_uri or ""):match("^http://localhost:%d+/auth/callback$") then return bad("redirect_uri") end
  local scopes = " " .. (q.scope or "") .. " "
  for _, s in ipairs { "openid", "profile", "email", "offline_access" } do
    if not scopes:find(" " .. s .. " ", 1, true) then return bad("scope lacks " .. s) end
  end
  if q.code_challenge_method ~= "S256" then return bad("code_challenge_method") end
  if not (q.code_challenge or ""):match("^[%w_%-]+$") or #q.code_challenge ~= 43 then return bad("code_challenge") end
  if not q.state or #q.state < 16 then return bad("state") end
  if q.id_token_add_organizations ~= "true" then return bad("id_token_add_organizations") end
  if q.codex_cli_simplified_flow ~= "true" then return bad("codex_cli_simplified_flow") end
  if not q.originator or q.originator == "" then return bad("originator") end
  local code = issue(rand("ac_", 16))
  codes[code] = { challenge = q.code_challenge, redirect_uri = q.redirect_uri }
  return answer(302, "", { location = q.redirect_uri .. "?code=" .. urlencode(code) .. "&state=" .. urlencode(q.state) })
end

routes["POST /oauth/token"] = function(req)
  if not (req.headers["content-type"] or ""):find("application/x-www-form-urlencoded", 1, true) then
    return json_answer(400, { error = "invalid_request", error_description = "form-encoded body expected" })
  end
  local f = parse_query(req.body)
  if f.client_id ~= CLIENT_OA then return json_answer(401, { error = "invalid_client" }) end
  if f.grant_type == "authorization_code" then
    local c = codes[f.code or ""]
    if not c then return json_answer(400, { error = "invalid_grant", error_description = "unknown or used code" }) end
    codes[f.code] = nil -- a code works once
    if f.redirect_uri ~= c.redirect_uri then
      return json_answer(400, { error = "invalid_grant", error_description = "redirect_uri does not match" })
    end
    if not f.code_verifier or s256(f.code_verifier) ~= c.challenge then
      return json_answer(400, { error = "invalid_grant", error_description = "code_verifier does not match the challenge" })
    end
    return json_answer(200, openai_tokens())
  elseif f.grant_type == "refresh_token" then
    if not refresh_tokens[f.refresh_token or ""] then
      return json_answer(401, { error = { message = "refresh token already used", code = "refresh_token_reused" } })
    end
    refresh_tokens[f.refresh_token] = nil -- rotation: the old one is spent
    return json_answer(200, openai_tokens()), cfg.refresh_delay_ms
  end
  return json_answer(400, { error = "unsupported_grant_type" })
end

routes["POST /api/accounts/deviceauth/usercode"] = function(req)
  local ok, b = pcall(cjson.decode, req.body)
  if not ok or type(b) ~= "table" or b.client_id ~= CLIENT_OA then
    return json_answer(400, { error = "bad client_id" })
  end
  local id = issue(rand("deviceauth_", 12))
  dev_auth[id] = { user_code = "ABCD-1234", polls = 0 }
  return json_answer(200, { device_auth_id = id, user_code = "ABCD-1234", interval = cfg.chatgpt_interval })
end

routes["POST /api/accounts/deviceauth/token"] = function(req)
  local ok, b = pcall(cjson.decode, req.body)
  local d = ok and type(b) == "table" and dev_auth[b.device_auth_id or ""]
  if not d or b.user_code ~= d.user_code then return json_answer(400, { error = "unknown device_auth_id" }) end
  d.polls = d.polls + 1
  if d.polls <= cfg.device_pending then
    return json_answer(403, { error = { message = "Device authorization is pending", code = "deviceauth_authorization_pending" } })
  end
  dev_auth[b.device_auth_id] = nil
  local verifier = issue(rand("cv_", 24))
  local code = issue(rand("ac_dev_", 16))
  codes[code] = { challenge = s256(verifier), redirect_uri = "http://" .. req.headers.host .. "/deviceauth/callback" }
  return json_answer(200, { authorization_code = code, code_verifier = verifier, code_challenge = s256(verifier) })
end

local function control(req)
  if req.path == "/_mock/config" then
    local ok, v = pcall(cjson.decode, req.body)
    if ok and type(v) == "table" then for k, x in pairs(v) do cfg[k] = x end end
    return json_answer(200, { ok = true })
  elseif req.path == "/_mock/github_token" then
    local v = cjson.decode(req.body)
    gh_tokens[v.token] = true
    return json_answer(200, { ok = true })
  elseif req.path == "/_mock/requests" then
    if #requests == 0 then return answer(200, "[]", { ["content-type"] = "application/json" }) end
    return json_answer(200, requests)
  elseif req.path == "/_mock/issued" then
    if #issued == 0 then return answer(200, "[]", { ["content-type"] = "application/json" }) end
    return json_answer(200, issued)
  elseif req.path == "/_mock/reset" then
    reset()
    return json_answer(200, { ok = true })
  end
  return json_answer(404, { error = "no such control" })
end

local function handle(req)
  if req.path:find("^/_mock/") then return control(req) end
  requests[#requests + 1] = { method = req.method, path = req.path, query = req.query, headers = req.headers,
    body = req.body, at_ms = math.floor(uv.now()) }
  local route = routes[req.method .. " " .. req.path]
  if not route then return json_answer(404, { message = "Not Found" }) end
  return route(req)
end

---------------------------------------------------------------------------
-- the server
---------------------------------------------------------------------------
local server = uv.new_tcp()
assert(server:bind("127.0.0.1", tonumber(arg[1]) or 0))
server:listen(128, function()
  local tcp = uv.new_tcp()
  server:accept(tcp)
  local buf = ""
  local function close() if not tcp:is_closing() then tcp:close() end end
  local function try()
    local req, rest = parse_request(buf)
    if not req then return end
    buf = rest
    local method, target, headers, body = req.method, req.target, req.headers, req.body
    local path, query = target:match("^([^?]*)%??(.*)$")
    local ok, out, delay = pcall(handle, { method = method, path = path, query = query, headers = headers, body = body })
    if not ok then out = answer(500, tostring(out), { ["content-type"] = "text/plain" }) end
    local function send()
      if tcp:is_closing() then return end
      tcp:write(out)
      try()
    end
    if delay and delay > 0 then
      local t = uv.new_timer()
      t:start(delay, 0, function() t:close() send() end)
    else
      send()
    end
  end
  tcp:read_start(function(err, data)
    if err or not data then return close() end
    buf = buf .. data
    try()
  end)
end)
io.stdout:write("mock accounts listening on ", server:getsockname().port, "\n")
io.stdout:flush()
uv.run()
