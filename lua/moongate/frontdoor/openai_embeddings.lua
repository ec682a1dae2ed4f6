-- Front door: OpenAI embeddings (POST /v1/embeddings).
-- decode: wire request -> a request to forward (or an error in OpenAI's
-- shape). Embeddings are never translated: the client's body goes, as it
-- came, to an OpenAI-compatible provider that declares embeddings
-- (`embeddings = true`), and its answer comes back as it came. accepts()
-- answers 404 for a model whose provider declares none, before anything is
-- sent. There are no canonical messages, and no canonical events to encode:
-- the collector and the stream encoder exist for the descriptor's sake and
-- fail loudly if the exchange ever hands them events.
-- Pure: no host globals, tested without the daemon.
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"
local oc = require "moongate.frontdoor.openai_common"

-- client "embeddings": its own format name, which no adapter speaks; its
-- errors in OpenAI's shape (errors.lua's default). It never streams, so it
-- names no stream kind.
local M = { client = "embeddings" }

M.routes = { ["POST /v1/embeddings"] = "serve" }
M.prefixes = { "/embeddings" }
M.request_headers = { "authorization", "x-api-key" }

local is_array, is_int, present = oc.is_array, oc.is_int, oc.present
local invalid_type, invalid_value, missing = oc.invalid_type, oc.invalid_value, oc.missing

local input_kinds = "one of a string, an array of strings, an array of integers, or an array of arrays of integers"

-- input_error(input) -> nil | err: input is a string, or a non-empty list
-- of strings, of token ids, or of lists of token ids (one kind throughout)
local function input_error(input)
  if type(input) == "string" then return nil end
  if not is_array(input) then return select(2, invalid_type("input", input_kinds, input)) end
  if #input == 0 then
    return errors.new(400, "Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead.",
      { param = "input", code = "empty_array" })
  end
  local first = input[1]
  local kind = type(first) == "string" and "string" or is_int(first) and "integer"
    or (is_array(first) and next(first) ~= nil) and "tokens" or nil
  for i, v in ipairs(input) do
    local ok
    if kind == "string" then ok = type(v) == "string"
    elseif kind == "integer" then ok = is_int(v)
    elseif kind == "tokens" then
      ok = is_array(v) and next(v) ~= nil
      for j = 1, ok and #v or 0 do
        if not is_int(v[j]) then
          return select(2, invalid_type(string.format("input[%d][%d]", i - 1, j - 1), "an integer", v[j]))
        end
      end
    end
    if not ok then
      local expected = kind == "string" and "a string" or kind == "integer" and "an integer"
        or kind == "tokens" and "a non-empty array of integers" or "one of a string, an integer, or an array of integers"
      return select(2, invalid_type(string.format("input[%d]", i - 1), expected, v))
    end
  end
end

-- What a translation would meet, were one ever attempted (a fallback link
-- whose provider serves no embeddings): canonical.foreign_fields refuses
-- with this before an adapter reads anything else.
local Untranslatable = { __index = function(creq, k)
  if k == "untranslatable" then
    return { param = "model", message = string.format(
      "model: the embeddings of '%s' cannot be translated for another upstream; route the model to a provider that declares embeddings",
      tostring(creq.model)) }
  end
end }

--- decode(body, headers) -> request | nil, err
-- {client, endpoint = "embeddings", model, stream = false, raw, raw_body,
-- client_key}: what routing and forwarding need.
function M.decode(body, headers)
  local req, err = oc.body(body, { "model" })
  if not req then return nil, err end
  if not present(req.input) then return missing("input") end
  local ierr = input_error(req.input)
  if ierr then return nil, ierr end
  local ef = req.encoding_format
  if present(ef) then
    if type(ef) ~= "string" then return invalid_type("encoding_format", "a string", ef) end
    if ef ~= "float" and ef ~= "base64" then
      return nil, errors.new(400, string.format("Invalid value: '%s'. Supported values are: 'float' and 'base64'.", ef),
        { param = "encoding_format", code = "invalid_value" })
    end
  end
  local dims = req.dimensions
  if present(dims) then
    if not is_int(dims) then return invalid_type("dimensions", "an integer", dims) end
    if dims < 1 then
      return invalid_value("dimensions", string.format("integer below minimum value. Expected a value >= 1, but got %d instead.", dims))
    end
  end
  if present(req.user) and type(req.user) ~= "string" then return invalid_type("user", "a string", req.user) end
  return setmetatable({
    client = "embeddings", endpoint = "embeddings", model = req.model, stream = false,
    raw = req, raw_body = body, client_key = canonical.client_key(headers),
  }, Untranslatable)
end

--- accepts(creq, route) -> nil | err: the route's first provider must serve
-- embeddings (an HTTP upstream provider answers P:serves("embeddings") from
-- its `embeddings` setting; other kinds, the echo provider and the worker
-- pool, have no such method and serve none)
function M.accepts(creq, route)
  local link = route and route.chain and route.chain[1]
  local p = link and link.provider
  if p and p.serves and p:serves("embeddings") then return nil end
  local name = link and (link.name or p and p.name) or "?"
  return errors.new(404, string.format(
    "The model '%s' does not support embeddings: its provider '%s' declares none (set embeddings = true on an OpenAI-compatible provider).",
    tostring(creq.model), tostring(name)), { param = "model", code = "model_not_found" })
end

-- An embeddings answer is always the upstream's own (a raw_body event):
-- canonical events here mean a provider translated what it must not. The
-- collector fails at result(), which the exchange answers as a 502 and
-- logs with this message; the stream encoder (a stream is never opened)
-- fails on its first event.
local not_canonical = "an embeddings answer is forwarded as the upstream gave it; canonical events cannot make one " ..
  "(the provider translated an embeddings request)"

local Collector = {}
Collector.__index = Collector
function Collector:event() end
function Collector:result() error(not_canonical, 0) end

--- collector(creq) -> col whose result() raises (see above)
function M.collector(creq) return setmetatable({ creq = creq }, Collector) end

local Encoder = {}
Encoder.__index = Encoder
function Encoder:event() error(not_canonical, 0) end
function Encoder:error(err) return { errors.body(M.client, err) } end

--- stream_encoder(creq) -> enc whose event() raises; error() writes the
-- error object, as any OpenAI stream would
function M.stream_encoder(creq) return setmetatable({ creq = creq }, Encoder) end

return M
