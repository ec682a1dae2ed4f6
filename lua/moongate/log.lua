-- Logging for the Lua layer. Every message is redacted before it leaves:
-- API keys, bearer tokens and cookies never reach the log.
local M = {}

local ok, core = pcall(require, "moongate.core")
local sink = ok and core._log or function(level, msg)
  io.stderr:write(level:upper(), " ", msg, "\n")
end

local secrets = {} -- exact values known to be secret (configured keys)

--- add_secret(value): redact this exact string wherever it appears
function M.add_secret(value)
  if type(value) == "string" and #value >= 6 then
    secrets[#secrets + 1] = value
  end
end

local patterns = {
  { "([Bb]earer%s+)[%w%-%._~%+/=]+", "%1[REDACTED]" },
  { "(sk%-ant%-)[%w%-_]+", "%1[REDACTED]" },
  { "(sk%-)[%w%-_]+", "%1[REDACTED]" },
  { "(gh[opusr]_)[%w]+", "%1[REDACTED]" },
  { "(\"?x%-api%-key\"?%s*[:=]%s*\"?)[^\",%s}]+", "%1[REDACTED]" },
  { "(\"?api_key\"?%s*[:=]%s*\"?)[^\",%s}]+", "%1[REDACTED]" },
  { "([Cc]ookie:%s*)[^\r\n]+", "%1[REDACTED]" },
}

local function plain(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

--- redact(text) -> text with secrets replaced by [REDACTED]
function M.redact(text)
  text = tostring(text)
  for i = 1, #secrets do
    text = text:gsub(plain(secrets[i]), "[REDACTED]")
  end
  for i = 1, #patterns do
    text = text:gsub(patterns[i][1], patterns[i][2])
  end
  return text
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
  sink(level, M.redact(msg))
end

function M.error(fmt, ...) emit("error", fmt, ...) end
function M.warn(fmt, ...) emit("warn", fmt, ...) end
function M.info(fmt, ...) emit("info", fmt, ...) end
function M.debug(fmt, ...) emit("debug", fmt, ...) end

return M
