-- Front door: OpenAI legacy completions (POST /v1/completions).
-- decode: wire request -> canonical request (or an error in OpenAI's shape)
-- stream_encoder / collector: canonical events -> text_completion chunks /
-- body.
-- A provider that serves /v1/completions itself (`completions = true`) gets
-- the client's body as it came and its answer goes back as it came: neither
-- the canonical messages nor this encoder are made then. Any other upstream
-- (a chat one, of any format) serves it translated: the prompt becomes one
-- user message, and what a chat upstream cannot do (several prompts, token
-- prompts, suffix, echo, logprobs, best_of, n > 1) is refused by name
-- (docs/TRANSLATION.md).
-- Pure: no host globals, tested without the daemon.
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"
local oc = require "moongate.frontdoor.openai_common"

-- client "completions": its own format name (no adapter speaks it, so a
-- request is always translated unless its provider serves the endpoint),
-- its errors in OpenAI's shape (errors.lua's default, as no shape is
-- registered for it)
local M = { client = "completions" }

M.routes = { ["POST /v1/completions"] = "serve" }
M.prefixes = { "/completions" }
M.stream_kind = "sse"
M.request_headers = { "authorization", "x-api-key" }

-- max_tokens when the client gives none: OpenAI's legacy default, so that
-- an answer is as long whichever upstream serves it (vLLM's default is 16
-- too)
M.default_max_tokens = 16

local null = json.null

local is_array, is_object, is_int, is_bool, is_string, is_number = oc.is_array, oc.is_object, oc.is_int, oc.is_bool, oc.is_string, oc.is_number
local present, range = oc.present, oc.range
local invalid_type, missing = oc.invalid_type, oc.missing

-- optional typed fields: name -> {what, check(v) -> ok [, range(v) -> nil | message]}
-- The fields a translation reads are checked; an upper bound only where it
-- is OpenAI's and every upstream's (logprobs: OpenAI takes up to 5, vLLM
-- more, so its bound is left to the upstream).
local checks = {
  stream = { "a boolean", is_bool },
  temperature = { "a number", is_number, range("decimal", 0, 2) },
  top_p = { "a number", is_number, range("decimal", 0, 1) },
  max_tokens = { "an integer", is_int, range("integer", 0, oc.INT_MAX) },
  n = { "an integer", is_int, range("integer", 1, oc.INT_MAX) },
  best_of = { "an integer", is_int, range("integer", 1, oc.INT_MAX) },
  logprobs = { "an integer", is_int, range("integer", 0, oc.INT_MAX) },
  seed = { "an integer", is_int },
  echo = { "a boolean", is_bool },
  suffix = { "a string", is_string },
  user = { "a string", is_string },
  logit_bias = { "an object", is_object },
  stream_options = { "an object", is_object },
}

-- The fate of each top-level field on its way to a chat upstream
-- (canonical.foreign_fields, docs/TRANSLATION.md): "mapped", "drop", or why
-- it is refused. n, best_of, echo, suffix, logprobs and logit_bias are
-- "mapped" here because their fate depends on their value (n: 1 is
-- harmless, n: 2 is not): untranslatable() below judges them.
M.fields = {
  model = "mapped", prompt = "mapped", stream = "mapped", stream_options = "mapped",
  max_tokens = "mapped", temperature = "mapped", top_p = "mapped", stop = "mapped", user = "mapped",
  n = "mapped", best_of = "mapped", echo = "mapped", suffix = "mapped", logprobs = "mapped",
  logit_bias = "mapped",
  seed = "drop", presence_penalty = "drop", frequency_penalty = "drop",
}

-- untranslatable(raw) -> {message, param} | nil: what a chat upstream
-- cannot do of what the client asked, by value (read only when translating)
local function untranslatable(raw)
  local function no(param, why) return { message = param .. ": " .. why, param = param } end
  if raw.echo == true then
    return no("echo", "a chat upstream does not echo the prompt back; send echo: false (or none)")
  end
  if type(raw.suffix) == "string" and raw.suffix ~= "" then
    return no("suffix", "a chat upstream does not insert a completion before a suffix")
  end
  if present(raw.logprobs) then
    return no("logprobs", "the gateway does not carry log probabilities from a chat upstream")
  end
  if is_int(raw.best_of) and raw.best_of > 1 then
    return no("best_of", "a chat upstream does not pick the best of several completions; send best_of: 1 (or none)")
  end
  if is_int(raw.n) and raw.n > 1 then
    return no("n", "a chat upstream gives one completion per request here; send n: 1 (or none) and make several requests")
  end
  if raw.max_tokens == 0 then
    return no("max_tokens", "0 asks for no completion (a use of echo), which a chat upstream cannot give; send 1 or more")
  end
  if is_object(raw.logit_bias) and next(raw.logit_bias) ~= nil then
    return no("logit_bias", "token ids are the upstream model's own; a chat upstream is not given them")
  end
end

-- the prompt -> the canonical messages: one user message holding its text.
-- Only a single text prompt can be; anything else is refused by name.
local function prompt_messages(prompt)
  local text = prompt
  if type(prompt) ~= "string" then
    local first = prompt[1]
    if #prompt == 0 then
      errors.refuse(400, "prompt: an empty list holds no prompt", { param = "prompt" })
    elseif type(first) == "number" or is_array(first) then
      errors.refuse(400, "prompt: a prompt of token ids cannot be translated for a chat upstream, which reads text; send the prompt as a string",
        { param = "prompt" })
    elseif #prompt > 1 then
      errors.refuse(400, string.format("prompt: a chat upstream answers one prompt per request, not %d; send them one at a time", #prompt),
        { param = "prompt" })
    elseif type(first) ~= "string" then
      oc.refuse_type("prompt[0]", "a string", first)
    end
    text = first
  end
  return { { role = "user", content = { { type = "text", text = text } } } }
end

-- The canonical messages are made the first time something reads them (a
-- translation does; a passthrough to a provider that serves completions
-- never does). What cannot be translated is refused then.
local Lazy = { __index = function(creq, k)
  if k == "messages" then
    local msgs = prompt_messages(creq.raw.prompt)
    rawset(creq, "messages", msgs)
    return msgs
  end
  if k == "fields" then return M.fields end
  if k == "untranslatable" then return untranslatable(creq.raw) end
end }

--- decode(body, headers) -> canonical request | nil, err
-- Checks the types of what the gateway reads to route and to translate;
-- the prompt's items are looked at only when the request is translated.
function M.decode(body, headers)
  local req, err = oc.body(body, { "model", "stream" })
  if not req then return nil, err end
  if not present(req.prompt) then return missing("prompt") end
  if type(req.prompt) ~= "string" and not is_array(req.prompt) then
    return invalid_type("prompt", "one of a string or an array", req.prompt)
  end
  err = oc.fields(req, checks) or oc.stop(req.stop)
  if err then return nil, err end
  local so = req.stream_options
  if is_object(so) and present(so.include_usage) and type(so.include_usage) ~= "boolean" then
    return invalid_type("stream_options.include_usage", "a boolean", so.include_usage)
  end

  local creq = {
    client = "completions",
    endpoint = "completions",
    model = req.model,
    stream = req.stream == true,
    include_usage = is_object(so) and so.include_usage == true or false,
    max_tokens = present(req.max_tokens) and req.max_tokens or M.default_max_tokens,
    temperature = present(req.temperature) and req.temperature or nil,
    top_p = present(req.top_p) and req.top_p or nil,
    stop = oc.stop_list(req.stop),
    user = type(req.user) == "string" and req.user or nil,
    raw = req,
  }
  setmetatable(creq, Lazy)
  creq.raw_body = body
  creq.client_key = canonical.client_key(headers)
  return creq
end

-- Encoding ------------------------------------------------------------------
-- A completion has no tool calls and no reasoning: thinking_delta events
-- (a reasoning model behind a chat upstream) are dropped, and a tool_use
-- stop (which no request here can ask for) reads as "stop", the only
-- finish reasons the SDK knows being stop, length and content_filter.

local finish_reasons = { stop = "stop", length = "length", content_filter = "content_filter" }

local random_id = canonical.random_id

local Encoder = {}
Encoder.__index = Encoder

--- stream_encoder(creq, meta) -> enc; enc:event(ev) -> list of SSE data strings
-- meta: {id?, created?}
function M.stream_encoder(creq, meta)
  meta = meta or {}
  local head = string.format('{"id":%s,"object":"text_completion","created":%d,"model":%s,"choices":',
    json.encode(meta.id or random_id("cmpl-", 24)), meta.created or os.time(), json.encode(creq.model))
  return setmetatable({ creq = creq, head = head, pre = head .. '[{"text":' }, Encoder)
end

-- chunk(text, finish) -> one choice's chunk
function Encoder:chunk(text, finish)
  return self.pre .. json.encode(text) .. ',"index":0,"logprobs":null,"finish_reason":' ..
    (finish and json.encode(finish) or "null") .. "}]}"
end

function Encoder:event(ev)
  local t = ev.type
  if t == "text_delta" then
    if ev.text ~= "" then return { self:chunk(ev.text) } end
  elseif t == "usage" then
    self.usage = ev
  elseif t == "done" then
    local out = { self:chunk("", finish_reasons[ev.reason] or "stop") }
    if self.creq.include_usage then
      out[#out + 1] = self.head .. '[],"usage":' .. json.encode(oc.usage_object(self.usage)) .. "}"
    end
    out[#out + 1] = "[DONE]"
    return out
  end
  return {}
end

--- error(err) -> list of SSE data strings: an error object the SDK throws on
function Encoder:error(err)
  return { errors.body(M.client, err) }
end

local Collector = {}
Collector.__index = Collector

--- collector(creq, meta) -> col; col:event(ev); col:result() -> response table
function M.collector(creq, meta)
  meta = meta or {}
  return setmetatable({
    creq = creq, id = meta.id or random_id("cmpl-", 24), created = meta.created or os.time(),
    text = {}, reason = "stop",
  }, Collector)
end

function Collector:event(ev)
  local t = ev.type
  if t == "text_delta" then
    self.text[#self.text + 1] = ev.text
  elseif t == "usage" then
    self.usage = ev
  elseif t == "done" then
    self.reason = ev.reason
  end
end

function Collector:result()
  return {
    id = self.id, object = "text_completion", created = self.created, model = self.creq.model,
    choices = { { text = table.concat(self.text), index = 0, logprobs = null,
      finish_reason = finish_reasons[self.reason] or "stop" } },
    usage = oc.usage_object(self.usage),
  }
end

return M
