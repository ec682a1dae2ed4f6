-- Providers that call an HTTP upstream (kinds "openai" and "anthropic"):
-- the adapter turns the canonical request into the wire request, C's _fetch
-- carries it (curl multi on this worker's loop, SSE parsed in C), and the
-- adapter turns frames back into canonical events for the sink.
local core = require "moongate.core"
local json = require "moongate.json"
local errors = require "moongate.errors"
local log = require "moongate.log"
local canonical = require "moongate.canonical"

local M = {}

local defaults = {
  openai = { base_url = "https://api.openai.com/v1", key_env = "OPENAI_API_KEY" },
  anthropic = { base_url = "https://api.anthropic.com", key_env = "ANTHROPIC_API_KEY" },
}

-- the last frame of a stream: Anthropic's event, OpenAI's data
local END_EVENT, END_DATA = "message_stop", "[DONE]"

local Passthrough = {}
Passthrough.__index = Passthrough

--- passthrough() -> a decoder that hands frames on untouched, only
-- watching for the end (a stream that stops before it is an error);
-- d.end_event: the frames C must still hand it when it pipes the rest
function M.passthrough()
  return setmetatable({ ended = false, done = false, end_event = END_EVENT }, Passthrough)
end

function Passthrough:frame(data, event)
  if data == END_DATA then
    self.ended = true
  elseif not (data:sub(1, 1) == "{" and data:sub(-1) == "}") then
    return { { type = "error", status = 502, message = "malformed frame from upstream: " .. data:sub(1, 200) } }
  elseif event == END_EVENT or event == "error" or data:find('^{%s*"error"')
      or data:find('^{%s*"object"%s*:%s*"error"') then
    self.ended = true -- the end, or an error frame the client gets as the end
  end
  return { { type = "raw", data = data, event = event } }
end

function Passthrough:finish()
  if self.done then return {} end
  self.done = true
  if not self.ended then
    return { { type = "error", status = 502, message = "the upstream stream ended before it finished" } }
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

--- kind(adapter) -> a provider module ({new = ...}) for that wire format
function M.kind(adapter)
  local P = {}
  P.__index = P

  local mod = {}
  function mod.new(name, conf)
    local d = defaults[adapter.format] or {}
    local self = setmetatable({
      name = name, conf = conf, adapter = adapter,
      base_url = (conf.base_url or d.base_url):gsub("/+$", ""),
      key = conf.api_key or (conf.api_key_env and os.getenv(conf.api_key_env))
        or (not conf.api_key_env and d.key_env and os.getenv(d.key_env)) or nil,
      models = conf.models,
      retries = conf.retries or 2,
    }, P)
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
      total_timeout_ms = conf.timeout_ms or 0,
      insecure = conf.insecure, compressed = self.compressed,
    }
    return self
  end

  function P:api_key(creq)
    if self.conf.forward_client_key and creq.client_key then return creq.client_key end
    return self.key
  end

  if adapter.count_path then
    --- count_tokens(creq, cb): cb(n) or cb(nil, err) with the upstream's count
    function P:count_tokens(creq, cb)
      local body, err
      if creq.client == adapter.format and creq.raw_body and self.conf.passthrough ~= false then
        body = client_body(creq)
      else
        body, err = wire_text(adapter, creq, self.conf, true, self.name)
        if not body then return cb(nil, err) end
      end
      core._fetch({
        url = self.base_url .. adapter.count_path, method = "POST", body = body,
        headers = adapter.headers(self.conf, self:api_key(creq), creq),
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
  end

  function P:start(creq, sink)
    local a = self.adapter
    -- same format on both sides and nothing to rewrite: forward the client's
    -- body and the upstream's frames as they are
    -- a model suffix's effort (gpt-5-high) is spliced in too, where the
    -- adapter can say it as top-level fields (effort_fields)
    local pass = creq.raw_body and creq.client == a.format and self.conf.passthrough ~= false
      and (not creq.effort_from_suffix or a.effort_fields ~= nil)
    local body, err
    if pass then
      body = client_body(creq)
      if creq.effort_from_suffix then
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
    local headers = a.headers(self.conf, self:api_key(creq), creq)
    if self.conf.headers then
      for k, v in pairs(self.conf.headers) do headers[k] = v end
    end
    local dec = creq.stream and (pass and M.passthrough() or a.decoder()) or nil
    local handle, piped
    local job = {}

    local cbs = {
      on_done = sink.guard(function(err, code, text, st, hdrs)
        if sink.closed() then return end
        local status = st ~= 0 and st or nil
        if err then
          -- curl's words for a failed connect name the upstream's address:
          -- the log keeps them, the client is told less
          if code == "ECONNREFUSED" then
            log.warn("upstream %s: %s", self.name, err)
            err = "cannot connect"
          end
          return sink.emit({ type = "error", status = code == "ETIMEDOUT" and 504 or 502,
            message = string.format("upstream %s: %s", self.name, err),
            retryable = code ~= "ELUA" and code ~= "ETOOBIG" }) -- the same again would fail again
        end
        if status and status >= 400 then
          local ev = { type = "error", status = status, upstream = true,
            message = a.error_message(text) or ("upstream answered " .. status),
            retry_after = tonumber(hdrs and hdrs["retry-after"]),
            retryable = status == 429 or status >= 500 }
          if creq.client == a.format then -- the same format: its type, code and param hold
            ev.error_type, ev.code, ev.param = errors.upstream_detail(text)
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
        if pass and not dec then
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
      cbs.on_frame = sink.guard_value(function(data, event)
        local more = emit_all(sink, adapt(self.name, dec.frame, dec, data, event))
        if pass and more and not piped and sink.pipe_handle then
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
    handle = core._fetch(opts, cbs)
    opts.headers, opts.body = nil, nil

    function job.cancel()
      if handle then core._fetch_cancel(handle) end
    end
    return job
  end

  return mod
end

return M
