-- Errors in each client's own wire format (PROTOCOLS.md).
local json = require "moongate.json"

local M = {}

local openai_types = {
  [400] = "invalid_request_error", [401] = "authentication_error",
  [403] = "permission_error", [404] = "invalid_request_error",
  [405] = "invalid_request_error", [408] = "timeout_error",
  [409] = "conflict_error", [413] = "invalid_request_error",
  [422] = "invalid_request_error", [429] = "rate_limit_error",
}

local anthropic_types = {
  [400] = "invalid_request_error", [401] = "authentication_error",
  [403] = "permission_error", [404] = "not_found_error",
  [405] = "invalid_request_error", [413] = "request_too_large",
  [429] = "rate_limit_error", [500] = "api_error", [529] = "overloaded_error",
}

--- type_for(client, status) -> the error type string a client expects
function M.type_for(client, status)
  if client == "anthropic" then
    return anthropic_types[status] or (status >= 500 and "api_error" or "invalid_request_error")
  end
  return openai_types[status] or (status >= 500 and "server_error" or "invalid_request_error")
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
  if client == "anthropic" then
    return { type = "error", error = { type = etype, message = err.message } }
  elseif client == "ollama" then
    return { error = err.message }
  end
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
-- Ollama's {"error":"..."}, or a bare {"message"}), else the text itself
function M.upstream_message(text)
  local body = json.decode(text or "")
  if type(body) == "table" then
    if type(body.error) == "table" and body.error.message then return tostring(body.error.message) end
    if type(body.error) == "string" then return body.error end
    if body.message then return tostring(body.message) end
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

--- client_for_path(path) -> which error format a path's clients expect
function M.client_for_path(path)
  if path:sub(1, 12) == "/v1/messages" then return "anthropic" end
  if path:sub(1, 5) == "/api/" then return "ollama" end
  return "openai"
end

return M
