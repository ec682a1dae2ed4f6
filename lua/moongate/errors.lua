-- Errors in each client's own wire format (docs/TRANSLATION.md, "Answers").
local json = require "moongate.json"

local M = {}

-- OpenAI's error types by status: the shape of every path no front door
-- claims (/health, /v1/models, unknown URLs) and of OpenAI's front door
local openai_types = {
  [400] = "invalid_request_error", [401] = "authentication_error",
  [403] = "permission_error", [404] = "invalid_request_error",
  [405] = "invalid_request_error", [408] = "timeout_error",
  [409] = "conflict_error", [413] = "invalid_request_error",
  [422] = "invalid_request_error", [429] = "rate_limit_error",
}

-- Error shapes other than OpenAI's, by client name, each registered by its
-- front door (shape()): {object = fn(err, etype) -> table, type_for =
-- fn(status) -> type, prefixes = {path prefix after /v1, ...}, and for a
-- prompt too long: overflow = fn(n, m) -> err, says_overflow = fn(err)}
local shapes = {}
local path_clients = {} -- {prefix, client}: the paths whose clients expect a shape

--- shape(client, s): a front door's error shape (see shapes above)
function M.shape(client, s)
  shapes[client] = s
  for _, prefix in ipairs(s.prefixes or {}) do
    local known = false
    for _, pc in ipairs(path_clients) do known = known or pc[1] == prefix end
    if not known then path_clients[#path_clients + 1] = { prefix, client } end
  end
end

--- type_for(client, status) -> the error type string a client expects
function M.type_for(client, status)
  local s = shapes[client]
  if s and s.type_for then return s.type_for(status) end
  return openai_types[status] or (status >= 500 and "server_error" or "invalid_request_error")
end

--- shown(s, max) -> bytes a client sent, for quoting in an error message:
-- printable ASCII as it is, any other byte as \xHH (the answer stays valid
-- UTF-8 JSON), cut to max bytes with "..." after
function M.shown(s, max)
  s = tostring(s or "")
  local cut = #s > max
  if cut then s = s:sub(1, max) end
  s = s:gsub("[^\32-\126]", function(c) return string.format("\\x%02x", c:byte()) end)
  return cut and s .. "..." or s
end

--- new(status, message, opts) -> error value {status, message, type, param, code}
function M.new(status, message, opts)
  opts = opts or {}
  return {
    status = status, message = message,
    type = opts.type, param = opts.param, code = opts.code,
  }
end

--- object(client, err) -> the error as a Lua table in the client's shape
function M.object(client, err)
  local etype = err.type or M.type_for(client, err.status)
  local s = shapes[client]
  if s then return s.object(err, etype) end
  local null = json.null
  return { error = {
    message = err.message, type = etype,
    param = err.param == nil and null or err.param,
    code = err.code == nil and null or err.code,
  } }
end

--- body(client, err) -> JSON text
function M.body(client, err)
  return json.encode(M.object(client, err))
end

--- upstream_message(text) -> the message inside an upstream's error body
-- (OpenAI's {"error":{"message"}}, Anthropic's {"type":"error","error":{...}},
-- Ollama's {"error":"..."}, or a bare {"message"}; a message that is an
-- object or a list as its JSON text), else the text itself
--- words(v) -> a message field as words: a string or number as it is, an
-- object or a list (some servers nest them) as its JSON text; nil for
-- anything else (null, a boolean)
function M.words(v)
  if type(v) == "string" or type(v) == "number" then return tostring(v) end
  if type(v) ~= "table" then return nil end -- null, a boolean: no words
  local ok, text = pcall(json.encode, v)
  return ok and text or nil
end

function M.upstream_message(text)
  local body = json.decode(text or "")
  if type(body) == "table" then
    local words = type(body.error) == "table" and M.words(body.error.message)
    if words then return words end
    if type(body.error) == "string" then return body.error end
    words = M.words(body.message)
    if words then return words end
  end
  return (text and text ~= "") and text or nil
end

--- upstream_detail(text) -> type, code, param of an upstream's error body
-- (OpenAI's error.type / code / param, Anthropic's error.type), for a client
-- of the upstream's own format; nil for what the body does not say
function M.upstream_detail(text)
  local body = json.decode(text or "")
  local e = type(body) == "table" and body.error
  if type(e) ~= "table" then return nil end
  local function str(v) return type(v) == "string" and v or nil end
  return str(e.type), str(e.code) or (type(e.code) == "number" and e.code or nil), str(e.param)
end

--- client_for_path(path) -> which error format a path's clients expect:
-- the front door's whose prefix it has (/v1 and the prefix, or the prefix
-- alone), else OpenAI's
function M.client_for_path(path)
  local rest = path:sub(1, 4) == "/v1/" and path:sub(4) or path
  for _, pc in ipairs(path_clients) do
    if rest:sub(1, #pc[1]) == pc[1] then return pc[2] end
  end
  return "openai"
end

-- (Ollama's shape, {"error": "..."} on its /api/ paths, is registered by
-- its front door, lua/moongate/frontdoor/ollama.lua, as the others are.)

-- Refusals ---------------------------------------------------------------
-- A translator that meets something it cannot carry to its upstream raises
-- a refusal (an error value, not a string); whoever runs the translation
-- catches it and answers the client with it.

local Refusal = {}

--- refuse(status, message, opts): raises an error value catch() returns
function M.refuse(status, message, opts)
  error(setmetatable(M.new(status, message, opts), Refusal), 0)
end

local function keep(e)
  if getmetatable(e) == Refusal then return e end
  return debug.traceback(tostring(e), 2)
end

--- catch(fn, ...) -> true, fn's first result | false, err: a refusal fn
-- raised; any other error is raised again (with its traceback)
function M.catch(fn, ...)
  local ok, res = xpcall(fn, keep, ...)
  if ok then return true, res end
  if getmetatable(res) == Refusal then return false, res end
  error(res, 0)
end

-- Context length -----------------------------------------------------------
-- Each API says "the prompt is too long" in its own words, and clients key
-- on them (Claude Code compacts on Anthropic's wording; the OpenAI SDKs'
-- users on the code context_length_exceeded).

local function num(s) return s and tonumber(s) end

--- context_overflow(text) -> {tokens = n?, max = m?} when an upstream's
-- error body says the prompt does not fit the model's context, else nil
function M.context_overflow(text)
  local body = json.decode(text or "")
  local e = type(body) == "table" and body.error
  local msg = M.upstream_message(text) or ""
  local code = type(e) == "table" and (e.code or e.type) or nil
  -- Anthropic: "prompt is too long: 210000 tokens > 200000 maximum"
  local n, m = msg:match("prompt is too long: (%d+) tokens > (%d+) maximum")
  if n then return { tokens = tonumber(n), max = tonumber(m) } end
  local lower = msg:lower()
  if code == "context_length_exceeded" or code == "exceed_context_size_error"
      or lower:find("maximum context length", 1, true) or lower:find("context length exceeded", 1, true)
      or lower:find("exceeds the available context size", 1, true) or lower:find("prompt is too long", 1, true) then
    local info = {
      max = num(lower:match("maximum context length is (%d+)")) or num(lower:match("context size %(?(%d+)")),
      tokens = num(lower:match("(%d+) in the messages")) or num(lower:match("resulted in (%d+) tokens"))
        or num(lower:match("has (%d+) input tokens")),
    }
    -- a prompt that fits but leaves no room for the answer: the whole
    -- request's count (vLLM's "you requested N tokens (P in the messages,
    -- C in the completion)")
    local requested = num(lower:match("requested (%d+) tokens"))
    if requested and (not info.tokens or (info.max and info.tokens <= info.max)) then info.tokens = requested end
    if type(e) == "table" then -- llama.cpp's server says them as fields
      info.tokens = info.tokens or tonumber(e.n_prompt_tokens)
      info.max = info.max or tonumber(e.n_ctx)
    end
    return info
  end
end

--- says_overflow(client, err) -> does err already say "prompt too long"
-- the way the client's API does?
function M.says_overflow(client, err)
  local s = shapes[client]
  if s and s.says_overflow then return s.says_overflow(err) end
  return err.code == "context_length_exceeded"
end

--- context_error(client, info, estimate) -> the error a client of that
-- format gets for a prompt too long, in its API's own words; estimate: the
-- prompt's tokens as the gateway counts them, when the upstream said none
function M.context_error(client, info, estimate)
  local n = info.tokens or estimate or 0
  local m = info.max or math.max(n - 1, 0)
  if n <= m then n = m + 1 end
  local s = shapes[client]
  if s and s.overflow then return s.overflow(n, m) end
  return M.new(400, string.format("This model's maximum context length is %d tokens. However, your messages resulted in %d tokens. Please reduce the length of the messages.", m, n),
    { type = "invalid_request_error", code = "context_length_exceeded", param = "messages" })
end

return M
