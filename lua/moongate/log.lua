-- Logging for the Lua layer. Every message is redacted before it leaves:
-- the secrets the daemon holds (moongate.secrets, by value), API keys,
-- bearer tokens and cookies never reach the log. Then its control
-- characters are escaped (\n, \r, \t, else \xHH), so that no input (a model
-- name, a worker's name, an upstream's message) can start a line of its own.
local secrets = require "moongate.secrets"

local M = {}

local ok, core = pcall(require, "moongate.core")
local sink = ok and core._log or function(level, msg)
  io.stderr:write(level:upper(), " ", msg, "\n")
end

--- add_secret(value): redact this exact string wherever it appears (the
-- same as secrets.add: values under 8 bytes are ignored)
M.add_secret = secrets.add

local patterns = {
  { "([Bb]earer%s+)[%w%-%._~%+/=]+", "%1[redacted]" },
  { "(sk%-ant%-)[%w%-_]+", "%1[redacted]" },
  { "(sk%-)[%w%-_]+", "%1[redacted]" },
  { "(gh[opusr]_)[%w]+", "%1[redacted]" },
  { "(\"?x%-api%-key\"?%s*[:=]%s*\"?)[^\",%s}]+", "%1[redacted]" },
  { "(\"?api_key\"?%s*[:=]%s*\"?)[^\",%s}]+", "%1[redacted]" },
  { "([Cc]ookie:%s*)[^\r\n]+", "%1[redacted]" },
}

--- redact(text) -> text with secrets replaced by [redacted]
function M.redact(text)
  text = secrets.redact(tostring(text))
  for i = 1, #patterns do
    text = text:gsub(patterns[i][1], patterns[i][2])
  end
  return text
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

function M.error(fmt, ...) emit("error", fmt, ...) end
function M.warn(fmt, ...) emit("warn", fmt, ...) end
function M.info(fmt, ...) emit("info", fmt, ...) end
function M.debug(fmt, ...) emit("debug", fmt, ...) end

return M
