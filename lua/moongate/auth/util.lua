-- Small helpers the account code shares: base64url, SHA-256 and random
-- bytes (from libcrypto through LuaJIT's ffi: the binary links it for
-- libcurl's TLS, so no hand-written digest), PKCE, reading a JWT's claims,
-- form and query encoding, and HTTP through core._fetch on this thread's
-- libuv loop.
--
--   b64url(bytes) -> text; b64url_decode(text) -> bytes | nil
--   sha256(bytes) -> 32 bytes; random_bytes(n) -> n bytes; uuid() -> a v4 UUID
--   pkce() -> verifier, challenge; challenge(verifier) -> S256 challenge
--   jwt_claims(token) -> table | nil, err   (no signature check: the token
--                        came straight from the issuer over TLS)
--   urlencode(s); form(t) -> "a=1&b=2" (keys sorted); parse_query(s) -> t
--   request(opts, cb)  cb(res) with res {status, body, headers, json} or
--                      cb(nil, message): a curl failure (no HTTP answer)
--   after(ms, fn)      fn once, ms milliseconds later (a luv timer)
--   wait(done, timeout_ms) run this thread's loop until done() is true
--   run(async, ...)    async(..., done) run to its end: done's result, err
--   once(holder, cb, start, fail_s)  single flight, with failures remembered
local json = require "moongate.json"

local M = {}

---------------------------------------------------------------------------
-- base64url (RFC 4648 section 5, no padding)
---------------------------------------------------------------------------
local ALPHA = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local DEC = {}
for i = 1, 64 do DEC[ALPHA:byte(i)] = i - 1 end
DEC[("+"):byte()], DEC[("/"):byte()] = 62, 63 -- plain base64 read too

function M.b64url(s)
  local out, n = {}, 0
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
    for k = 1, chars do
      local shift = 18 - (k - 1) * 6
      local idx = math.floor(v / 2 ^ shift) % 64
      n = n + 1
      out[n] = ALPHA:sub(idx + 1, idx + 1)
    end
  end
  return table.concat(out)
end

function M.b64url_decode(s)
  s = s:gsub("=+$", "")
  local out, n, acc, bits = {}, 0, 0, 0
  for i = 1, #s do
    local v = DEC[s:byte(i)]
    if not v then return nil end
    acc, bits = acc * 64 + v, bits + 6
    if bits >= 8 then
      bits = bits - 8
      local byte = math.floor(acc / 2 ^ bits)
      acc = acc - byte * 2 ^ bits
      n = n + 1
      out[n] = string.char(byte)
    end
  end
  return table.concat(out)
end

---------------------------------------------------------------------------
-- libcrypto through ffi
---------------------------------------------------------------------------
local crypto
local function libcrypto()
  if crypto ~= nil then return crypto end
  local ffi = require "ffi"
  pcall(ffi.cdef, [[
    unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
    int RAND_bytes(unsigned char *buf, int num);
  ]])
  -- the moongate binary links libcrypto already (its symbols are global);
  -- a plain luajit (the specs) loads it by name
  if pcall(function() return ffi.C.SHA256 end) then
    crypto = ffi.C
  else
    for _, name in ipairs { "libcrypto.so.3", "crypto", "libcrypto.so.1.1" } do
      local ok, lib = pcall(ffi.load, name)
      if ok then crypto = lib break end
    end
  end
  crypto = crypto or false
  return crypto
end

function M.sha256(s)
  local c = assert(libcrypto(), "libcrypto is not available for SHA-256")
  local ffi = require "ffi"
  local md = ffi.new("unsigned char[32]")
  c.SHA256(s, #s, md)
  return ffi.string(md, 32)
end

function M.random_bytes(n)
  local c = libcrypto()
  if c then
    local ffi = require "ffi"
    local buf = ffi.new("unsigned char[?]", n)
    if c.RAND_bytes(buf, n) == 1 then return ffi.string(buf, n) end
  end
  local f = assert(io.open("/dev/urandom", "rb"))
  local s = f:read(n)
  f:close()
  return s
end

--- env(name, default) -> a URL from the environment (no trailing slash), or default
function M.env(name, default)
  local v = os.getenv(name)
  if v and v ~= "" then return (v:gsub("/+$", "")) end
  return default
end

--- uuid() -> a random UUID (version 4), as request ids are written
function M.uuid()
  local b = { M.random_bytes(16):byte(1, 16) }
  b[7] = bit.bor(bit.band(b[7], 0x0f), 0x40)
  b[9] = bit.bor(bit.band(b[9], 0x3f), 0x80)
  local h = string.format(string.rep("%02x", 16), unpack(b))
  return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-" .. h:sub(13, 16) .. "-" .. h:sub(17, 20) .. "-" .. h:sub(21)
end

--- random_id(n) -> base64url text of n random bytes
function M.random_id(n)
  return M.b64url(M.random_bytes(n or 16))
end

---------------------------------------------------------------------------
-- PKCE (RFC 7636), S256 only
---------------------------------------------------------------------------
function M.challenge(verifier)
  return M.b64url(M.sha256(verifier))
end

function M.pkce()
  local verifier = M.b64url(M.random_bytes(32)) -- 43 characters
  return verifier, M.challenge(verifier)
end

---------------------------------------------------------------------------
-- JWT claims
---------------------------------------------------------------------------
function M.jwt_claims(token)
  if type(token) ~= "string" then return nil, "no token" end
  local payload = token:match("^[%w_%-]+%.([%w_%-]+)%.[%w_%-=]*$")
  if not payload then return nil, "not a JWT" end
  local text = M.b64url_decode(payload)
  local claims = text and json.decode(text)
  if type(claims) ~= "table" then return nil, "a JWT whose claims are not JSON" end
  return claims
end

---------------------------------------------------------------------------
-- forms and queries
---------------------------------------------------------------------------
function M.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

function M.urldecode(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

function M.form(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = M.urlencode(k) .. "=" .. M.urlencode(t[k]) end
  return table.concat(parts, "&")
end

function M.parse_query(s)
  local t = {}
  for pair in (s or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    t[M.urldecode(k)] = M.urldecode(v)
  end
  return t
end

---------------------------------------------------------------------------
-- HTTP and the loop
---------------------------------------------------------------------------
M.USER_AGENT = "moongate"

function M.request(opts, cb)
  local core = require "moongate.core"
  local headers = { accept = "application/json", ["user-agent"] = M.USER_AGENT }
  for k, v in pairs(opts.headers or {}) do headers[k:lower()] = v end
  core._fetch({
    url = opts.url, method = opts.method or "GET", headers = headers, body = opts.body,
    connect_timeout_ms = opts.connect_timeout_ms or 10000,
    total_timeout_ms = opts.total_timeout_ms or 30000, insecure = opts.insecure,
  }, {
    on_done = function(err, _, body, status, hdrs)
      if err then return cb(nil, tostring(err)) end
      local value = body and body ~= "" and json.decode(body) or nil
      cb { status = status, body = body or "", headers = hdrs or {}, json = type(value) == "table" and value or nil }
    end,
  })
end

function M.after(ms, fn)
  local uv = require "luv"
  local t = uv.new_timer()
  t:start(math.max(0, math.floor(ms)), 0, function()
    t:close()
    fn()
  end)
  return t
end

function M.wait(done, timeout_ms)
  local uv = require "luv"
  local deadline = uv.now() + (timeout_ms or 3600 * 1000)
  while not done() do
    if uv.now() >= deadline then return false end
    uv.update_time()
    -- nothing left to wait for: done() can no longer change
    if not uv.run("once") and not done() then return false end
  end
  return true
end

--- once(holder, cb, start, fail_s): start(done) once for every caller
-- that comes while it is under way (they all get what done is given); a
-- failure (done(nil, err)) is given to callers for fail_s seconds by
-- holder.clock() without starting again. holder keeps .waiting, .failed.
function M.once(holder, cb, start, fail_s)
  if holder.waiting then
    holder.waiting[#holder.waiting + 1] = cb
    return
  end
  if holder.failed and holder.clock() < holder.failed.until_s then return cb(nil, holder.failed.err) end
  holder.waiting = { cb }
  start(function(value, err)
    holder.failed = value == nil and { until_s = holder.clock() + fail_s, err = err } or nil
    local list = holder.waiting
    holder.waiting = nil
    for _, f in ipairs(list) do f(value, err) end
  end)
end

--- run(async, ...) -> what async(..., done) gave done: runs this thread's
-- loop until it calls done(result, err) (a command's login)
function M.run(async, ...)
  local result, err, finished
  local args = { ... }
  args[#args + 1] = function(r, e) result, err, finished = r, e, true end
  async(unpack(args))
  M.wait(function() return finished end)
  if not finished then return nil, "the login stopped before it ended" end
  return result, err
end

--- message(res) -> a short reason from an error answer's body (never the
-- whole body: it could quote a token)
function M.reason(res)
  local j = res and res.json
  if j then
    local e = j.error
    if type(e) == "table" then e = e.message or e.code end
    local d = j.error_description or j.message or j.detail
    if type(e) == "string" and type(d) == "string" then return e .. ": " .. d end
    if type(e) == "string" then return e end
    if type(d) == "string" then return d end
  end
  return "HTTP " .. tostring(res and res.status)
end

return M
