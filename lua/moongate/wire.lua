-- The upstream side of one request, pure: what is sent (the client's own
-- body on a passthrough, else the adapter's translation), and what an
-- upstream's answer becomes (canonical events, an error in the client's
-- terms). providers/upstream.lua carries it over the daemon's fetch; the
-- nginx shim (moongate.host.nginx) over nginx's proxy.
local json = require "moongate.json"
local errors = require "moongate.errors"
local log = require "moongate.log"
local secrets = require "moongate.secrets"
local canonical = require "moongate.canonical"

local M = {}

-- a whole answer's text looks like a JSON object: its first and last bytes
-- past white space are braces (a passthrough forwards it undecoded; this
-- turns away an empty body, HTML, a list, a truncated object)
function M.object_text(text)
  local first, last = text:find("^%s*{"), #text
  while last > 0 and text:byte(last) <= 32 do last = last - 1 end
  return first ~= nil and text:byte(last) == 125
end

-- what an adapter makes of an answer or a frame; an answer it cannot read
-- (a shape it does not expect) is a malformed answer, not a gateway fault
-- a tool call's id and name as a client's SDK takes them: an id a string
-- (a server that numbers its calls: the number's digits; none: one made
-- here), a name a string that is not empty (else the answer is malformed)
local function tool_calls_checked(name, events)
  for i = 1, #events do
    local ev = events[i]
    if ev.type == "toolcall_start" then
      if type(ev.name) ~= "string" or ev.name == "" then
        -- what came before it stands; the call and the rest are the error
        log.warn("upstream %s: a tool call without a name", name)
        for j = #events, i + 1, -1 do events[j] = nil end
        events[i] = { type = "error", status = 502, message = "malformed answer from upstream: a tool call without a name" }
        return events
      end
      local id = ev.id
      if type(id) == "number" then
        ev.id = (id == math.floor(id) and math.abs(id) < 2 ^ 53) and string.format("%d", id) or string.format("%.17g", id)
      elseif type(id) ~= "string" or id == "" then
        ev.id = canonical.random_id("call_", 24)
      end
    end
  end
  return events
end

function M.adapt(name, fn, ...)
  local ok, events = pcall(fn, ...)
  if ok then return tool_calls_checked(name, events) end
  log.warn("upstream %s: an answer the adapter cannot read: %s", name, tostring(events))
  return { { type = "error", status = 502, message = "malformed answer from upstream" } }
end

-- wire_text(provider, adapter, creq [, for_count]) -> the upstream request's
-- JSON | nil, why not (a value JSON cannot carry: 1e999 in a tool schema,
-- nesting past the limit once translated): the client's fault, a 400
-- A refusal of the translator (a field the upstream's format cannot carry)
-- is the client's fault too: its error, with its param and code.
function M.wire_text(p, a, creq, for_count)
  local ok, wire = errors.catch(a.request, creq, p.conf)
  if not ok then return nil, wire end
  if p.spec.shape then p.spec.shape(p, wire, creq, a) end
  if creq.dropped and log.enabled("debug") then
    log.debug("upstream %s: translation left out %s (docs/TRANSLATION.md)", p.name,
      table.concat(creq.dropped, ", "))
  end
  if for_count then wire.max_tokens, wire.stream, wire.metadata = nil, nil, nil end
  local text, why = json.try_encode_raw(wire)
  if text then return text end
  return nil, errors.new(400, "the request cannot be sent upstream: " .. why)
end

-- the client's own body for an upstream of its format: as it came, with
-- the route's model in place of the client's when the route rewrites it
-- (every other byte as the client wrote it)
function M.client_body(creq)
  if creq.upstream_model == creq.model then return creq.raw_body end
  return json.replace_top(creq.raw_body, "model", json.encode(creq.upstream_model), creq.raw)
end

-- an error value (errors.new's) as the sink's error event
function M.error_event(err)
  return { type = "error", status = err.status or 502, message = err.message, error_type = err.type,
    code = err.code, param = err.param, retry_after = err.retry_after, retryable = err.retryable }
end

--- plan(p, creq, a) -> the request as the upstream gets it, for adapter a:
-- plan | nil, error event. p: the provider ({name, conf, spec, serves(endpoint)});
-- plan: {a, pass, forward, body, stream (ask the upstream for one)}
function M.plan(p, creq, a)
  -- an endpoint this provider forwards as is (completions, embeddings):
  -- the client's body to base_url/<endpoint>, the answer back untouched
  local forward = creq.endpoint ~= nil and p:serves(creq.endpoint) and creq.raw_body ~= nil
  if creq.endpoint and not forward and creq.messages == nil then
    return nil, { type = "error", status = 404, message = string.format(
      "provider %s does not serve /v1/%s", p.name, tostring(creq.endpoint)) }
  end
  local stream = creq.stream or (p.spec.stream_always and not forward) or false
  -- same format on both sides and nothing to rewrite: forward the client's
  -- body and the upstream's frames as they are
  -- a model suffix's effort (gpt-5-high) is spliced in too, where the
  -- adapter can say it as top-level fields (effort_fields). A body that
  -- carries reasoning packed by the gateway (another upstream's, or this
  -- kind's under another id: canonical.pack_opaque) is translated, so
  -- that each value goes back only to its maker, unpacked.
  local packed = creq.packed -- the front door's scan saw it (nil: it did not look)
  if packed == nil then packed = creq.raw_body ~= nil and creq.raw_body:find('"' .. canonical.PACKED, 1, true) ~= nil end
  local pass = forward or (creq.raw_body and creq.client == a.format and p.conf.passthrough ~= false
    and not p.spec.shape and stream == (creq.stream or false)
    and (not creq.effort_from_suffix or a.effort_fields ~= nil) and not packed)
  local body, err
  if pass then
    body = M.client_body(creq)
    if creq.effort_from_suffix and not forward then
      for k, v in pairs(a.effort_fields(creq, p.conf)) do body = json.set_top(body, k, v) end
    end
    -- a key with token limits needs the upstream's count: an OpenAI
    -- stream gives it only when asked (the exchange keeps that last
    -- chunk from a client that did not ask)
    if creq.need_usage and stream and not forward and a.format == "openai" and creq.client == "openai"
      and not creq.include_usage then
      local so = creq.raw and creq.raw.stream_options
      local merged = { include_usage = true }
      if type(so) == "table" then for k, v in pairs(so) do if merged[k] == nil then merged[k] = v end end end
      body = json.set_top(body, "stream_options", json.encode(merged))
      creq.usage_added = true
    end
  else
    body, err = M.wire_text(p, a, creq, false)
    if not body then
      return nil, { type = "error", status = 400, message = err.message, error_type = err.type,
        code = err.code, param = err.param }
    end
  end
  return { a = a, pass = pass, forward = forward, body = body, stream = stream }
end

--- error_answer(a, creq, status, text, retry_after [, same]) -> the error
-- event of an upstream's error answer (status >= 400, its body text) to a
-- request for adapter a. same: the client's body went as it was (an
-- endpoint forwarded), so the upstream's type, code and param hold even
-- across formats.
function M.error_answer(a, creq, status, text, retry_after, same)
  local ev = { type = "error", status = status, upstream = true,
    message = secrets.redact(a.error_message(text) or ("upstream answered " .. status), creq.client_key),
    retry_after = retry_after,
    retryable = status == 429 or status >= 500 }
  if creq.client == a.format or same then -- the same format: its type, code and param hold
    ev.error_type, ev.code, ev.param = errors.upstream_detail(text)
    ev.code, ev.param = secrets.redact(ev.code, creq.client_key), secrets.redact(ev.param, creq.client_key)
  end
  -- a prompt too long, in the words the client's own API uses (whatever
  -- the upstream's: vLLM's and llama.cpp's differ from OpenAI's own)
  local overflow = (status == 400 or status == 413 or status == 422) and errors.context_overflow(text)
  if overflow and not errors.says_overflow(creq.client, ev) then
    local ok, est = pcall(canonical.prompt_tokens, creq)
    local e = errors.context_error(creq.client, overflow, ok and est or nil)
    ev.status, ev.message, ev.error_type, ev.code, ev.param = e.status, e.message, e.type, e.code, e.param
    ev.retryable = false
  end
  return ev
end

--- retry_after(header) -> seconds | nil: a Retry-After of delta-seconds
-- (digits only: "inf", "1e9", "-5" and an HTTP date are not taken), capped
-- at a day, so that no upstream can close a gate or hold a client for ever
function M.retry_after(v)
  local n = type(v) == "string" and tonumber(v:match("^%s*(%d+)%s*$"))
  if not n then return nil end
  return math.min(n, 86400)
end

-- The marks C needs to pipe a passthrough's ordinary frames itself
-- (core._fetch_pipe): the events Lua must still see (its end, its
-- failures, its errors), whether unnamed frames could be one, and the
-- first keys of its error frames. Made once per stream_end table.
local function c_marks(m)
  if m.c == nil then
    local names = {}
    for _, set in ipairs { m.events or {}, m.failure_events or {}, m.error_events or {} } do
      for name in pairs(set) do names[#names + 1] = name end
    end
    table.sort(names)
    m.c = { events = names, unnamed = m.typed == true, error_keys = m.error_keys }
  end
  return m.c
end

-- Lua patterns for an error frame's first key (and value): "error" or "object=error"
local function error_patterns(m)
  if not m.error_patterns then
    local pats = {}
    for i, k in ipairs(m.error_keys or {}) do
      local key, value = k:match("^([^=]*)=(.*)$")
      pats[i] = value and ('^{%s*"' .. key .. '"%s*:%s*"' .. value .. '"') or ('^{%s*"' .. k .. '"')
    end
    m.error_patterns = pats
  end
  return m.error_patterns
end

local function is_error_frame(m, data, event)
  if event == "error" or (m.error_events and m.error_events[event]) then return true end
  for _, pat in ipairs(error_patterns(m)) do
    if data:find(pat) then return true end
  end
  return false
end

local Passthrough = {}
Passthrough.__index = Passthrough

--- passthrough(marks) -> a decoder that hands frames on untouched, only
-- watching for the end (a stream that stops before it is an error);
-- marks: the format's stream_end (its adapter's).
-- d.pipe: may C pipe the rest; d.c_marks: what C must still hand it then
-- (core._fetch_pipe); d.count: the frames the client got (an error after
-- some carries it as `passed`)

function M.passthrough(marks)
  return setmetatable({ ended = false, done = false, count = 0, marks = marks, pipe = marks.pipe ~= false,
    c_marks = c_marks(marks) }, Passthrough)
end

-- the frame that ends the stream, then the end itself: the client's
-- stream ends there, whatever the upstream does after it (holds the
-- connection open, times out, resets it)
local function last(self, data, event)
  self.count = self.count + 1
  self.ended, self.done = true, true
  return { { type = "raw", data = data, event = event }, { type = "done", passthrough = true } }
end

--- passed() -> how many of the upstream's frames the client has: those
-- this decoder handed on, and those C queued itself (piped)
function Passthrough:passed() return self.count + (self.piped or 0) end

function Passthrough:frame(data, event)
  local m = self.marks
  if m.data and data == m.data then
    return last(self, data, event)
  elseif data == "[DONE]" then
    return {} -- not this format's end: some servers add it anyway
  elseif not (data:sub(1, 1) == "{" and data:sub(-1) == "}") then
    return { { type = "error", status = 502, message = "malformed frame from upstream: " .. secrets.redact(data):sub(1, 200),
      passed = self:passed() } }
  end
  local name = event
  if not name and m.typed then name = data:match('^{%s*"type"%s*:%s*"([^"]*)"') end
  if name and m.events and m.events[name] then return last(self, data, event) end
  if name and m.failure and m.failure_events[name] then
    -- a failure the client's format says its own way (a Responses
    -- stream's error event: the client gets response.failed, in the
    -- numbering of what it has)
    self.ended, self.done = true, true
    local ev = m.failure(data)
    ev.passed, ev.upstream, ev.retryable = self:passed(), true, nil
    return { ev }
  end
  if is_error_frame(m, data, event) then
    self.ended = true -- an error frame the client gets as the end, without a secret the gateway holds
    data = secrets.redact(data)
  end
  self.count = self.count + 1
  return { { type = "raw", data = data, event = event } }
end

function Passthrough:finish()
  if self.done then return {} end
  self.done = true
  if not self.ended then
    return { { type = "error", status = 502, message = "the upstream stream ended before it finished",
      passed = self:passed() } }
  end
  return { { type = "done", passthrough = true } }
end

return M
