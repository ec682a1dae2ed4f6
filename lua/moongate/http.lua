-- Responses over the C writer: whole JSON bodies, errors in the client's
-- format, and SSE / NDJSON streams with backpressure.
local core = require "moongate.core"
local json = require "moongate.json"
local errors = require "moongate.errors"
local log = require "moongate.log"
local secrets = require "moongate.secrets"

local M = {}

--- note(req, model, provider, reason, key): what the request's access log line
-- says besides what C knows (method, path, status, time, bytes); nil leaves
-- a field as it was (key: the inbound key's name, never the key). C escapes
-- the values; the reason is redacted here. req
-- may be nil (a chat socket's answer: no access log line).
-- tokens_in, tokens_out: the upstream's usage (both or neither);
-- upstream_ms: the upstream's time (exchange.lua says which).
function M.note(req, model, provider, reason, key, tokens_in, tokens_out, upstream_ms)
  if not req then return end -- at any log level: the metrics' labels too
  if reason then reason = log.enabled("info") and log.redact(reason) or nil end
  -- a model name is the client's text: one that holds a secret the gateway
  -- knows (a key pasted as the model) reaches no log line and no label
  if model then model = secrets.redact(model) end
  core._req_note(req.h, model, provider, reason, key, tokens_in, tokens_out, upstream_ms)
end

--- empty(req, status [, headers]) -> true | nil, "closed": an answer with no
-- body and no content-type (204)
function M.empty(req, status, headers)
  return core._respond(req.h, status, "", "", headers)
end

local json_headers = { ["cache-control"] = "no-store" }

--- json(req, status, value [, headers]) -> true | nil, "closed"
function M.json(req, status, value, headers)
  local body = type(value) == "string" and value or json.encode_raw(value)
  if log.enabled("debug") then log.body("response body " .. status, body) end -- (--verbose)
  return core._respond(req.h, status, "application/json", body, headers or json_headers)
end

--- error(req, client, err [, headers]) -> true | nil, "closed"
-- err: {status, message, type?, param?, code?} (errors.new); retry_after:
-- the seconds an upstream asked for, passed on; upstream: the error is an
-- upstream's answer, which gets no Retry-After it did not send (the
-- gateway's own 429 and 503 say 1 s)
function M.error(req, client, err, headers)
  M.note(req, nil, nil, err.message)
  if err.retry_after or ((err.status == 429 or err.status == 503) and not err.upstream) then
    headers = headers or {}
    -- whole seconds, at least 1 (what the header allows)
    local s = tonumber(err.retry_after) or 1
    s = (s == s and s < math.huge) and math.max(1, math.ceil(s)) or 1
    headers["retry-after"] = tostring(s)
  end
  return M.json(req, err.status, errors.body(client, err), headers)
end

local Stream = {}
Stream.__index = Stream

local content_types = {
  sse = "text/event-stream; charset=utf-8",
  ndjson = "application/x-ndjson",
}

--- stream(req, kind) -> a stream; kind is "sse" or "ndjson"
function M.stream(req, kind)
  return setmetatable({ h = req.h, kind = kind, started = false, ended = false }, Stream)
end

local stream_headers = { ["cache-control"] = "no-cache", ["x-accel-buffering"] = "no" }

function Stream:start(status, headers)
  local h = stream_headers -- C only reads it
  if headers then
    h = {}
    for k, v in pairs(stream_headers) do h[k] = v end
    for k, v in pairs(headers) do h[k] = v end
  end
  local ok, err = core._stream_start(self.h, status or 200, content_types[self.kind], h)
  self.started = ok and true or false
  return ok, err
end

--- send(data [, event]) -> more | nil, "closed"
-- more is false when the client is behind: wait for on_drain before sending more.
function Stream:send(data, event)
  if log.enabled("debug") then log.body(event and "stream frame " .. event or "stream frame", data) end
  if self.kind == "sse" then
    return core._stream_sse(self.h, data, event)
  end
  return core._stream_ndjson(self.h, data)
end

function Stream:on_drain(fn)
  return core._on_drain(self.h, fn)
end

function Stream:finish()
  if self.ended then return true end
  self.ended = true
  return core._stream_end(self.h)
end

return M
