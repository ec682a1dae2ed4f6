-- Logging for the Lua layer. Every message is redacted before it leaves:
-- the secrets the daemon holds (moongate.secrets, by value), API keys,
-- bearer tokens, Authorization headers, cookies and JSON fields named like
-- a credential (api_key, access_token, refresh_token, password, secret...)
-- never reach the log. Then its control characters are escaped (\n, \r,
-- \t, else \xHH), so that no input (a model name, a worker's name, an
-- upstream's message) can start a line of its own.
--
-- The host writes the line (moongate.host; in the daemon C, in the
-- configured format, text or JSON: src/log.h), with the id of the request the thread is handling (request(id), with():
-- each line logged meanwhile carries it). body() writes request and
-- response bodies and stream frames at debug level (--verbose), redacted
-- and cut at BODY_MAX. See docs/LOGS.md.
local secrets = require "moongate.secrets"
local host = require "moongate.host" -- where the lines go (the daemon: C's writer)

local M = {}

local function sink(level, msg) return host.write(level, msg) end

--- add_secret(value): redact this exact string wherever it appears (the
-- same as secrets.add: values under 8 bytes are ignored)
M.add_secret = secrets.add

-- a word as a pattern that takes it in any case ("ab" -> "[Aa][Bb]")
local function anycase(word)
  return (word:gsub("%a", function(c) return "[" .. c:upper() .. c:lower() .. "]" end):gsub("%-", "%%-"))
end

local patterns = {
  { "(" .. anycase("authorization") .. ":%s*)[^\r\n\"]+", "%1[redacted]" }, -- a header's value, whatever its scheme
  { "(" .. anycase("proxy-authorization") .. ":%s*)[^\r\n\"]+", "%1[redacted]" },
  { "(" .. anycase("bearer") .. "%s+)[%w%-%._~%+/=]+", "%1[redacted]" },
  { "(sk%-ant%-)[%w%-_]+", "%1[redacted]" },
  { "(sk%-)[%w%-_]+", "%1[redacted]" },
  { "(gh[opusr]_)[%w]+", "%1[redacted]" },
  { "(\"?" .. anycase("x-api-key") .. "\"?%s*[:=]%s*\"?)[^\",%s}]+", "%1[redacted]" },
  { "(\"?" .. anycase("x-goog-api-key") .. "\"?%s*[:=]%s*\"?)[^\",%s}]+", "%1[redacted]" },
  { "(\"?api_key\"?%s*[:=]%s*\"?)[^\",%s}]+", "%1[redacted]" },
  { "(" .. anycase("cookie") .. ":%s*)[^\r\n]+", "%1[redacted]" },
  { "(AKIA)[%u%d]+", "%1[redacted]" }, -- an AWS access key id
  { "(xox[abposr]%-)[%w%-]+", "%1[redacted]" }, -- a Slack token
}

-- a JSON (or form) field whose value is a credential, by its name
local function sensitive(name)
  -- a name written with escapes ("api\u005fkey") is read as JSON reads it
  name = name:gsub("\\u00(%x%x)", function(h) return string.char(tonumber(h, 16)) end):lower()
  return name:find("api[_%-]?key") or name:find("passw") or name:find("secret") or name:find("token$")
    or name:find("private[_%-]?key") or name:find("access[_%-]?key") or name:find("credential")
    or name == "key" or name == "auth" or name == "authorization" or name == "cookie" or name == "set-cookie"
end

-- the end of the JSON string whose text starts at i (its closing quote's
-- index; #text + 1 when it never closes); esc: inside another string, where
-- its quotes are \" and it ends at the first of them
local function string_end(text, i, esc)
  if esc then
    local j = text:find('\\"', i, true)
    return j or #text + 1
  end
  while true do
    local j = text:find('["\\]', i)
    if not j then return #text + 1 end
    if text:byte(j) == 34 then return j end
    i = j + 2
  end
end

-- the string values of fields named like a credential, replaced: "k": "v",
-- and the same JSON inside a JSON string ({\"k\":\"v\"}, tool arguments)
local function redact_fields(text, open, esc)
  if not text:find(open, 1, true) then return text end
  local pat = esc and '\\"([%w_%-%.]+)\\"%s*:%s*\\"' or '"([%w_%-%.\\]+)"%s*:%s*"'
  local out, n, pos = {}, 0, 1
  while true do
    local s, e, name = text:find(pat, pos)
    if not s then break end
    n = n + 1
    if sensitive(name) then
      out[n] = text:sub(pos, e) .. secrets.MARK
      pos = string_end(text, e + 1, esc)
    else
      out[n] = text:sub(pos, e)
      pos = e + 1
    end
  end
  if n == 0 then return text end
  out[n + 1] = text:sub(pos)
  return table.concat(out)
end

-- name=value in a form or query string
local function redact_form(text)
  if not text:find("=", 1, true) then return text end
  return (text:gsub("([%w_%-]+)=([^&%s\"]+)", function(name, value)
    if sensitive(name) and value ~= secrets.MARK then return name .. "=" .. secrets.MARK end
  end))
end

--- redact(text) -> text with secrets replaced by [redacted]
function M.redact(text)
  text = secrets.redact(tostring(text))
  -- the JSON-aware pass first: it knows where a value with an escaped
  -- quote in it ends, which the patterns below do not
  text = redact_fields(text, '"', false)
  text = redact_fields(text, '\\"', true)
  for i = 1, #patterns do
    text = text:gsub(patterns[i][1], patterns[i][2])
  end
  return redact_form(text)
end

local CONTROL = "[%z\1-\31\127]"
local escapes = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
for b = 0, 31 do
  local c = string.char(b)
  escapes[c] = escapes[c] or string.format("\\x%02x", b)
end
escapes["\127"] = "\\x7f"

--- escape(text) -> text with its control characters written out; text
-- without any (nearly every line) is returned after one find
function M.escape(text)
  if not text:find(CONTROL) then return text end
  return (text:gsub(CONTROL, escapes))
end

local levels = { error = 0, warn = 1, info = 2, debug = 3 }
local threshold = levels.info

--- set_level(name): messages above it are dropped before any formatting
function M.set_level(name)
  threshold = levels[name] or threshold
end

--- enabled(name) -> true when messages at this level are written
function M.enabled(name)
  return levels[name] <= threshold
end

local function emit(level, fmt, ...)
  if levels[level] > threshold then return end -- no formatting, no redaction
  local msg = select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt)
  sink(level, M.escape(M.redact(msg)))
end

-- The request whose work this thread is doing: the host's (the daemon's is
-- C's, src/log.h, so that its own lines and Lua's carry the same id)
local function swap(...) return host.request_id(...) end

--- request(id | nil) -> the id it replaces | nil: each line logged from now
-- on carries id (nil: none), until the next call
function M.request(id) return swap(id) end

--- request_id() -> the current request's id | nil
function M.request_id() return swap() end

local function restore(prev, ok_, ...)
  swap(prev)
  if not ok_ then error((...), 0) end
  return ...
end

--- with(id, fn, ...) -> fn(...): fn runs with id as the current request's
-- (an error in it goes on up, after the previous id is back)
function M.with(id, fn, ...)
  if not id then return fn(...) end
  return restore(swap(id), pcall(fn, ...))
end

M.BODY_MAX = 65536

--- body(what, text): at debug level (--verbose) only, "<what> (N bytes):
-- <text>", redacted, then cut at BODY_MAX (a longer one says so first)
function M.body(what, text)
  if threshold < levels.debug then return end
  text = M.redact(tostring(text or ""))
  local n = #text
  if n > M.BODY_MAX then
    sink("debug", M.escape(string.format("%s (%d bytes, cut at %d): %s ...[cut]", what, n, M.BODY_MAX,
      text:sub(1, M.BODY_MAX))))
  else
    sink("debug", M.escape(string.format("%s (%d bytes): %s", what, n, text)))
  end
end

function M.error(fmt, ...) emit("error", fmt, ...) end
function M.warn(fmt, ...) emit("warn", fmt, ...) end
function M.info(fmt, ...) emit("info", fmt, ...) end
function M.debug(fmt, ...) emit("debug", fmt, ...) end

return M
