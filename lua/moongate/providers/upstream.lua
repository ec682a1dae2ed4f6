-- Providers that call an HTTP upstream (kinds "openai" and "anthropic"):
-- the adapter turns the canonical request into the wire request, C's _fetch
-- carries it (curl multi on this worker's loop, SSE parsed in C), and the
-- adapter turns frames back into canonical events for the sink.
-- A kind may have several wire formats (kind "openai": chat completions,
-- or Responses with api = "responses"); each provider takes its adapter
-- from its conf.api. A provider may also forward a client's body as is to
-- an endpoint it declares (completions = true, embeddings = true).
local core = require "moongate.core"
local json = require "moongate.json"
local errors = require "moongate.errors"
local log = require "moongate.log"
local secrets = require "moongate.secrets"
local canonical = require "moongate.canonical"

local M = {}

local defaults = {
  openai = { base_url = "https://api.openai.com/v1", key_env = "OPENAI_API_KEY" },
  anthropic = { base_url = "https://api.anthropic.com", key_env = "ANTHROPIC_API_KEY" },
}
defaults.responses = defaults.openai

-- How a stream of each format ends, for a passthrough: data (a frame's
-- whole data), events (event names; typed: also the data's leading "type"
-- when the frame has no event line), failure_events and failure(data) ->
-- error event (frames that end it in failure, which the client's front
-- door writes its own way), and pipe: whether C may queue the
-- ordinary frames itself (true, or the event name, or a list of up to 4,
-- that C must still hand to Lua: core._fetch_pipe). An adapter may say its own
-- (adapter.stream_end); these are OpenAI's [DONE] and Anthropic's
-- message_stop.
local STREAM_END = {
  openai = { data = "[DONE]", pipe = true },
  anthropic = { events = { message_stop = true }, pipe = "message_stop" },
}

local function stream_end(a)
  return a.stream_end or STREAM_END[a.format] or STREAM_END.openai
end

local Passthrough = {}
Passthrough.__index = Passthrough

--- passthrough([marks]) -> a decoder that hands frames on untouched, only
-- watching for the end (a stream that stops before it is an error);
-- marks: a format's stream_end (default OpenAI's [DONE]).
-- d.pipe: may C pipe the rest (false: no); d.end_event: the frames C must
-- still hand it when it does; d.count: the frames the client got (an
-- error after some carries it as `passed`)
function M.passthrough(marks)
  marks = marks or STREAM_END.openai
  return setmetatable({ ended = false, done = false, count = 0, marks = marks, pipe = marks.pipe ~= false,
    end_event = type(marks.pipe) ~= "boolean" and marks.pipe or nil }, Passthrough)
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
    return { { type = "error", status = 502, message = "malformed frame from upstream: " .. data:sub(1, 200),
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
  if event == "error" or data:find('^{%s*"error"') or data:find('^{%s*"object"%s*:%s*"error"') then
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

-- a whole answer's text looks like a JSON object: its first and last bytes
-- past white space are braces (a passthrough forwards it undecoded; this
-- turns away an empty body, HTML, a list, a truncated object)
local function object_text(text)
  local first, last = text:find("^%s*{"), #text
  while last > 0 and text:byte(last) <= 32 do last = last - 1 end
  return first ~= nil and text:byte(last) == 125
end

-- what an adapter makes of an answer or a frame; an answer it cannot read
-- (a shape it does not expect) is a malformed answer, not a gateway fault
local function adapt(name, fn, ...)
  local ok, events = pcall(fn, ...)
  if ok then return events end
  log.warn("upstream %s: an answer the adapter cannot read: %s", name, tostring(events))
  return { { type = "error", status = 502, message = "malformed answer from upstream" } }
end

-- wire_text(adapter, creq, conf [, for_count]) -> the upstream request's
-- JSON | nil, why not (a value JSON cannot carry: 1e999 in a tool schema,
-- nesting past the limit once translated): the client's fault, a 400
-- A refusal of the translator (a field the upstream's format cannot carry)
-- is the client's fault too: its error, with its param and code.
local function wire_text(a, creq, conf, for_count, name)
  local ok, wire = errors.catch(a.request, creq, conf)
  if not ok then return nil, wire end
  if creq.dropped and log.enabled("debug") then
    log.debug("upstream %s: translation left out %s (docs/TRANSLATION.md)", name or "?",
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
local function client_body(creq)
  if creq.upstream_model == creq.model then return creq.raw_body end
  return json.replace_top(creq.raw_body, "model", json.encode(creq.upstream_model))
end

-- events to the sink, in order, while it takes them -> more (false: wait
-- for on_drain)
local function emit_all(sink, events)
  local more = true
  for _, ev in ipairs(events) do
    if sink.closed() then return false end
    more = sink.emit(ev) and more
  end
  return more
end

-- the endpoints a provider may forward as they are, when its conf says so
local forwardable = { completions = true, embeddings = true }

--- kind(adapter [, apis]) -> a provider module ({new = ...}) for that wire
-- format; apis: name -> adapter, of which a provider's conf.api picks one
-- (default: adapter)
function M.kind(default_adapter, apis)
  local P = {}
  P.__index = P

  local mod = {}
  function mod.new(name, conf)
    local adapter = default_adapter
    if conf.api ~= nil then
      adapter = apis and apis[conf.api]
      if not adapter then error(string.format("provider %s: unknown api %q", name, tostring(conf.api)), 0) end
    end
    local d = defaults[adapter.format] or {}
    local self = setmetatable({
      name = name, conf = conf, adapter = adapter,
      base_url = (conf.base_url or d.base_url):gsub("/+$", ""),
      key = conf.api_key or (conf.api_key_env and os.getenv(conf.api_key_env))
        or (not conf.api_key_env and d.key_env and os.getenv(d.key_env)) or nil,
      models = conf.models,
      retries = conf.retries or 2,
    }, P)
    secrets.add(self.key) -- configured or from the environment: never logged, never relayed
    self.url = self.base_url .. adapter.path -- made once, not per request
    self.compressed = conf.accept_compressed
    if self.compressed == nil then self.compressed = self.base_url:find("^https://") ~= nil end
    -- what every request of this provider hands core._fetch; start() adds
    -- the headers, the body and the stream mode
    self.fetch_opts = {
      url = self.url, method = "POST",
      connect_timeout_ms = conf.connect_timeout_ms or 10000,
      first_byte_timeout_ms = conf.first_byte_timeout_ms or 120000,
      idle_timeout_ms = conf.idle_timeout_ms or 120000,
      total_timeout_ms = conf.timeout_ms, -- nil: start() bounds a whole answer only
      insecure = conf.insecure, compressed = self.compressed,
    }
    if not adapter.count_path then self.count_tokens = false end -- app.lua estimates instead
    return self
  end

  --- serves(endpoint) -> whether this provider forwards that endpoint's
  -- requests as they are (conf.completions, conf.embeddings)
  function P:serves(endpoint)
    return forwardable[endpoint] == true and self.conf[endpoint] == true
  end

  --- api_key(creq) -> the key for the upstream | nil, err: a provider that
  -- forwards the client's key never falls back to its own (a client that
  -- sends none, or Basic auth, gets 401: the operator's key is not lent)
  function P:api_key(creq)
    if not self.conf.forward_client_key then return self.key end
    if creq.client_key then
      secrets.add_client(creq.client_key) -- out of the log from now on
      return creq.client_key
    end
    return nil, errors.new(401, string.format("provider %s uses the client's own key: send it as "
      .. "Authorization: Bearer or x-api-key", self.name), { code = "missing_api_key" })
  end

  --- count_tokens(creq, cb): cb(n) or cb(nil, err) with the upstream's
  -- count (false on a provider whose adapter has no count_path)
  function P:count_tokens(creq, cb)
    local adapter = self.adapter
    local body, err
    if creq.client == adapter.format and creq.raw_body and self.conf.passthrough ~= false then
      body = client_body(creq)
    else
      body, err = wire_text(adapter, creq, self.conf, true, self.name)
      if not body then return cb(nil, err) end
    end
    local key, kerr = self:api_key(creq)
    if kerr then return cb(nil, kerr) end
    core._fetch({
      url = self.base_url .. adapter.count_path, method = "POST", body = body,
      headers = adapter.headers(self.conf, key, creq),
      connect_timeout_ms = self.conf.connect_timeout_ms or 10000, total_timeout_ms = 30000,
      insecure = self.conf.insecure, compressed = self.compressed,
    }, {
      on_done = function(err, _, text, status)
        local body = json.decode(text or "")
        if not err and status == 200 and type(body) == "table" and tonumber(body.input_tokens) then
          return cb(tonumber(body.input_tokens))
        end
        local failed = status and status >= 400
        cb(nil, { status = failed and status or 502,
          message = err or (failed and adapter.error_message(text))
            or "the upstream's count_tokens answer holds no input_tokens" })
      end,
    })
  end

  function P:start(creq, sink)
    local a = self.adapter
    -- an endpoint this provider forwards as is (completions, embeddings):
    -- the client's body to base_url/<endpoint>, the answer back untouched
    local forward = creq.endpoint ~= nil and self:serves(creq.endpoint) and creq.raw_body ~= nil
    if creq.endpoint and not forward and creq.messages == nil then
      sink.emit({ type = "error", status = 404, message = string.format(
        "provider %s does not serve /v1/%s", self.name, tostring(creq.endpoint)) })
      return { cancel = function() end }
    end
    -- same format on both sides and nothing to rewrite: forward the client's
    -- body and the upstream's frames as they are
    -- a model suffix's effort (gpt-5-high) is spliced in too, where the
    -- adapter can say it as top-level fields (effort_fields). A body that
    -- carries reasoning packed by the gateway (another upstream's, or this
    -- kind's under another id: canonical.pack_opaque) is translated, so
    -- that each value goes back only to its maker, unpacked.
    local pass = forward or (creq.raw_body and creq.client == a.format and self.conf.passthrough ~= false
      and (not creq.effort_from_suffix or a.effort_fields ~= nil)
      and not creq.raw_body:find('"' .. canonical.PACKED, 1, true))
    local body, err
    if pass then
      body = client_body(creq)
      if creq.effort_from_suffix and not forward then
        for k, v in pairs(a.effort_fields(creq, self.conf)) do body = json.set_top(body, k, v) end
      end
    else
      body, err = wire_text(a, creq, self.conf, false, self.name)
      if not body then
        sink.emit({ type = "error", status = 400, message = err.message, error_type = err.type,
          code = err.code, param = err.param })
        return { cancel = function() end }
      end
    end
    local key, kerr = self:api_key(creq)
    if kerr then
      sink.emit({ type = "error", status = kerr.status, message = kerr.message, code = kerr.code })
      return { cancel = function() end }
    end
    local headers = a.headers(self.conf, key, creq)
    if self.conf.headers then
      for k, v in pairs(self.conf.headers) do headers[k] = v end
    end
    local dec = creq.stream and (pass and M.passthrough(forward and STREAM_END.openai or stream_end(a))
      or a.decoder(creq)) or nil
    local handle, piped
    local job = {}

    local cbs = {
      on_done = sink.guard(function(err, code, text, st, hdrs, piped_n)
        if sink.closed() then return end
        local status = st ~= 0 and st or nil
        -- how many of the upstream's own frames the client has (a
        -- passthrough's), for a front door that ends its stream in their numbering
        local passed
        if dec and dec.passed then dec.piped = piped_n or 0; passed = dec:passed() end
        if err then
          -- curl's words for a failed connect name the upstream's address:
          -- the log keeps them, the client is told less
          if code == "ECONNREFUSED" then
            log.warn("upstream %s: %s", self.name, err)
            err = "cannot connect"
          end
          return sink.emit({ type = "error", status = code == "ETIMEDOUT" and 504 or 502,
            message = string.format("upstream %s: %s", self.name, err), passed = passed,
            retryable = code ~= "ELUA" and code ~= "ETOOBIG" }) -- the same again would fail again
        end
        if status and status >= 400 then
          local ev = { type = "error", status = status, upstream = true,
            message = secrets.redact(a.error_message(text) or ("upstream answered " .. status), creq.client_key),
            retry_after = tonumber(hdrs and hdrs["retry-after"]),
            retryable = status == 429 or status >= 500 }
          if creq.client == a.format or forward then -- the same format: its type, code and param hold
            ev.error_type, ev.code, ev.param = errors.upstream_detail(text)
            ev.code, ev.param = secrets.redact(ev.code, creq.client_key), secrets.redact(ev.param, creq.client_key)
          end
          -- a prompt too long, in the words the client's own API uses
          -- (whatever the upstream's: vLLM's and llama.cpp's differ from
          -- OpenAI's own)
          local overflow = (status == 400 or status == 413 or status == 422) and errors.context_overflow(text)
          if overflow and not errors.says_overflow(creq.client, ev) then
            local ok, est = pcall(canonical.prompt_tokens, creq)
            local e = errors.context_error(creq.client, overflow, ok and est or nil)
            ev.status, ev.message, ev.error_type, ev.code, ev.param = e.status, e.message, e.type, e.code, e.param
            ev.retryable = false
          end
          return sink.emit(ev)
        end
        if dec and text == "" then
          return emit_all(sink, dec:finish())
        end
        if pass and (not dec or forward) then
          if not object_text(text) then
            return sink.emit({ type = "error", status = 502, message = "malformed answer from upstream: "
              .. (text == "" and "an empty body" or "not a JSON object") })
          end
          return sink.emit({ type = "raw_body", body = text })
        end
        -- a whole answer, also one to a stream request (C reads a JSON
        -- answer whole): the client's encoder makes it a stream if asked
        emit_all(sink, adapt(self.name, a.response, json.decode(text), creq))
      end),
    }
    if dec then -- frames come only on a stream
      cbs.on_frame = sink.guard_value(function(data, event, piped_n)
        -- (piped_n: the frames C queued itself so far, which the client has too)
        if dec.passed then dec.piped = piped_n or 0 end
        local more = emit_all(sink, adapt(self.name, dec.frame, dec, data, event))
        if pass and more and not piped and dec.pipe and sink.pipe_handle then
          -- the client's stream is open: C queues the upstream's ordinary
          -- frames there itself from now on; this decoder still sees the
          -- rest (the end frames, anything malformed)
          local h = sink.pipe_handle()
          if h then core._fetch_pipe(handle, h, dec.end_event); piped = true end
        end
        if not more and not sink.closed() then
          sink.on_drain(sink.guard(function() core._fetch_resume(handle) end))
        end
        return more or sink.closed()
      end)
    end
    -- the provider's one options table: C reads it during the call only
    local opts = self.fetch_opts
    opts.headers, opts.body, opts.stream = headers, body, dec and "sse" or nil
    -- a whole answer is bounded by default (10 minutes); a stream by its
    -- idle and first-byte timeouts (timeout_ms bounds both when set)
    opts.total_timeout_ms = self.conf.timeout_ms or (dec and 0 or 600000)
    if forward then opts.url = self.base_url .. "/" .. creq.endpoint end
    handle = core._fetch(opts, cbs)
    opts.headers, opts.body, opts.url = nil, nil, self.url

    function job.cancel()
      if handle then core._fetch_cancel(handle) end
    end
    return job
  end

  return mod
end

return M
