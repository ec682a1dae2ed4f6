-- One request's way from a provider's canonical events to the client:
-- the front door's encoder, the C writer with backpressure, retries with
-- backoff and fallbacks along the route's chain while nothing has reached
-- the client, failures in the client's format before and after the first
-- byte, and cancellation when the client goes away.
local core = require "moongate.core"
local http = require "moongate.http"
local errors = require "moongate.errors"
local json = require "moongate.json"
local log = require "moongate.log"
local metrics = require "moongate.metrics"
local secrets = require "moongate.secrets"

local M = {}
local Exchange = {}
Exchange.__index = Exchange

-- the longest wait before a retry: an upstream that asks for more is not
-- retried (the next provider, or the client, gets its answer at once)
M.RETRY_CAP_MS = 30000

--- backoff(n, retry_after_s, base_ms) -> ms to wait before try n+1
function M.backoff(n, retry_after, base)
  base = base or 250
  local d = base * 2 ^ (n - 1)
  d = d + math.random() * d / 2 -- jitter
  if retry_after and retry_after > 0 then d = math.max(d, retry_after * 1000) end
  return math.min(d, M.RETRY_CAP_MS)
end

-- The client side of an exchange. An HTTP request is the usual one; a chat
-- socket brings its own object with the same methods (sockets.lua):
--   key        identifies the exchange in the registry
--   stream()   -> an http.stream-like object (start, send, finish, on_drain, started)
--   json(status, value), error(client, err), on_close(fn)
local HttpClient = {}
HttpClient.__index = HttpClient

function M.http_client(req)
  return setmetatable({ req = req, key = req.h }, HttpClient)
end
function HttpClient:stream(kind) return http.stream(self.req, kind or "sse") end
function HttpClient:json(status, value) return http.json(self.req, status, value) end
function HttpClient:error(client, err) return http.error(self.req, client, err) end
function HttpClient:on_close(fn) return core._on_close(self.req.h, fn) end

--- run(req, frontdoor, creq, route, registry [, client [, spend]]) -> exchange
-- client defaults to the HTTP request req (see HttpClient above). spend:
-- called with the tokens the upstream reported, once, before the answer's
-- end goes to the client (an inbound key's limits: another worker may take
-- the client's next request as soon as it has the answer).
function M.run(req, frontdoor, creq, route, registry, client, spend)
  client = client or M.http_client(req)
  local x = setmetatable({
    client = client, fd = frontdoor, creq = creq, route = route,
    done = false, registry = registry, link = 1, tries = 0, attempts = 0, spend = spend,
  }, Exchange)
  -- the front door's encoder or collector is made when first needed: a
  -- passthrough answer never needs one
  if creq.stream then x.stream = client:stream(frontdoor.stream_kind) end
  if registry then registry[client.key] = x end
  client:on_close(function() x:cancel("client closed") end)
  if route.effort and not creq.reasoning then
    creq.reasoning = { effort = route.effort }
    creq.effort_from_suffix = true
  end
  creq.upstream_model = route.model
  -- the request's id (req.id: the client's x-request-id or C's own) goes
  -- upstream (providers/upstream.lua) and on each line logged for it
  x.id = req and req.id
  creq.request_id = x.id
  if req then log.body("request body", req.body) end -- (--verbose only)
  log.with(x.id, x.attempt, x)
  return x
end

function Exchange:provider_name()
  local l = self.route.chain[self.link]
  return l and l.name or "?"
end

-- The sink a provider gets for one attempt: sink.emit, closed, on_drain,
-- pipe_handle, guard, guard_value, made together so that they share their
-- upvalues. An attempt is live while it is its exchange's current one and
-- the exchange has not ended.
local function new_sink(x, gen, link)
  local function live() return x.gen == gen and not x.done end
  -- fn made safe to call from C or a timer: an error in it ends the
  -- exchange (if still this attempt's) with a 500 in the client's format,
  -- and the call gives `failed`
  local function guarded(fn, failed)
    local function call(...)
      local ok, res = xpcall(fn, debug.traceback, ...)
      if ok then return res end
      log.error("provider %s: %s", link.name, res)
      if live() then x:fail(errors.new(500, "internal error in provider " .. link.name)) end
      return failed
    end
    return function(...) return log.with(x.id, call, ...) end -- its lines carry the request's id
  end
  return {
    emit = function(ev) if not live() then return false end return x:emit(ev) end,
    closed = function() return not live() end,
    on_drain = function(fn)
      if live() and x.stream then return x.stream:on_drain(fn) end
    end,
    -- the handle of the client's started SSE stream, for a provider whose
    -- frames C may queue there as they come (core._fetch_pipe); nil when
    -- they must go through emit (a chat socket, an ended attempt)
    pipe_handle = function()
      local s = x.stream
      if live() and s and s.started and s.kind == "sse" then x.piped = true; return s.h end
    end,
    -- the frame a text (or thinking) delta becomes while the client's
    -- stream is steady (the encoder's template), and the stream's handle:
    -- the host may write such deltas itself (core._fetch_template); nil
    -- when it may not now, false when this client's format never allows it
    template = function(kind)
      if not live() then return nil end
      return x:template(kind)
    end,
    guard = function(fn) return guarded(fn, nil) end,
    guard_value = function(fn) return guarded(fn, false) end,
  }
end

function Exchange:attempt()
  local link = self.route.chain[self.link]
  if not link.provider then
    return self:fail(errors.new(500, "no provider named " .. tostring(link.name)))
  end
  self.tries = self.tries + 1
  self.attempts = self.attempts + 1
  self.attempt_ns = require("luv").hrtime() -- the access line's upstream_ms
  -- (an answer the fast path got already: its time counts, src/fast.c)
  local first = self.creq.first_answer
  if first and first.ms then self.attempt_ns = self.attempt_ns - first.ms * 1e6 end
  local gen = self.attempts
  self.gen = gen
  -- a translator's refusal (a field this provider cannot carry) is the
  -- client's 400; any other error goes on up
  local ok, job = errors.catch(link.provider.start, link.provider, self.creq, new_sink(self, gen, link))
  if not ok then
    return self:fail({ status = job.status, message = job.message, error_type = job.type, code = job.code, param = job.param })
  end
  self.job = job
end

function Exchange:template(kind)
  local s = self.stream
  if not (s and s.started and s.kind == "sse" and self.enc) then return nil end
  if not self.enc.template then return false end
  if log.enabled("debug") then return false end -- (--verbose: every frame is logged)
  local t = self.enc:template(kind)
  if t then return t, s.h end
end

-- a front door's frame is SSE data, or {data, event}
function Exchange:send(frame)
  if type(frame) == "table" then return self.stream:send(frame.data, frame.event) end
  return self.stream:send(frame)
end

function Exchange:finish()
  self.done = true
  -- the tokens the upstream reported (a frame with a usage object always
  -- reaches Lua, piped stream or not: upstream.c), counted once: on the
  -- access line, in /metrics, and against the key's rate limits (x.tokens,
  -- read by the app's on_finish); and the upstream time (ms from the last
  -- attempt's start to the end of its answer)
  if self.tokens_in or self.tokens_out then
    self.tokens = (self.tokens_in or 0) + (self.tokens_out or 0)
    metrics.tokens(self, self.tokens_in, self.tokens_out)
    -- against the key's limits now, before the answer's last bytes are
    -- written: a client's next request, on another worker, must see them
    if self.spend then self.spend(self.tokens) end
  end
  http.note(self.client.req, nil, nil, nil, nil, self.tokens_in, self.tokens_in and self.tokens_out or nil,
    self.attempt_ns and (require("luv").hrtime() - self.attempt_ns) / 1e6 or nil)
  if self.timer and not self.timer:is_closing() then self.timer:close() end
  if self.registry then self.registry[self.client.key] = nil end
  if self.on_finish then self.on_finish() end
end

-- the collected answer as the client's JSON text (a collector that has
-- made it already says it: col:json_text())
local function whole_answer(x)
  local col = x.col
  return col.json_text and col:json_text() or json.encode_raw(col:result())
end

--- emit(ev) -> more: false asks the provider to wait for on_drain
function Exchange:emit(ev)
  if self.done then return false end
  local usage = ev.type == "usage" and ev
  if not usage and (ev.type == "raw_body" or (ev.type == "raw" and type(ev.data) == "string" and ev.data:find('"usage"', 1, true))) then
    local i, o = metrics.body_usage(ev.body or ev.data) -- passed through: the usage in the upstream's words
    usage = i and { input_tokens = i, output_tokens = o }
  end
  if usage then -- for the access line (a stream's may come in parts: the largest counts)
    self.tokens_in = math.max(self.tokens_in or 0, tonumber(usage.input_tokens) or 0)
    self.tokens_out = math.max(self.tokens_out or 0, tonumber(usage.output_tokens) or 0)
  end
  if ev.type == "error" then
    self:upstream_error(ev)
    return false
  end
  -- the usage chunk the gateway asked for (providers/upstream.lua:
  -- usage_added), counted above, is not the client's
  if usage and ev.type == "raw" and self.creq.usage_added and ev.data:find('"choices"%s*:%s*%[%s*%]') then
    return true
  end
  if (ev.type == "raw_body" or ev.type == "raw") and self.fd.on_raw then
    self.fd.on_raw(self.creq, ev) -- what passes through, for a front door that keeps answers
  end
  if ev.type == "raw_body" then -- passthrough of a whole answer
    self:finish()
    self.client:json(200, ev.body)
    return true
  end
  if not self.stream then
    self.col = self.col or self.fd.collector(self.creq)
    self.col:event(ev)
    if ev.type == "done" then
      -- made whole before the exchange ends, so that an answer the client's
      -- format cannot hold (a number JSON cannot carry) is a 502, not silence
      local ok, body = pcall(whole_answer, self)
      if not ok then
        log.warn("provider %s: an answer the client's format cannot hold: %s", self:provider_name(), tostring(body))
        self:fail(errors.new(502, "the upstream's answer cannot be written in the client's format"))
        return false
      end
      self:finish()
      self.client:json(200, body)
    end
    return true
  end
  if not self.stream.started then
    if not self.stream:start(200) then self:cancel("client closed"); return false end
  end
  if ev.type == "raw" then -- passthrough: the upstream's frame as it came
    local m = self.stream:send(ev.data, ev.event)
    if m == nil then self:cancel("client closed"); return false end
    return m
  end
  if ev.passthrough then -- the upstream's own closing frames are out already
    self:finish()
    self.stream:finish()
    return false
  end
  local more = true
  self.enc = self.enc or self.fd.stream_encoder(self.creq)
  local frames = self.enc:event(ev)
  for i = 1, #frames do
    local m = self:send(frames[i])
    if m == nil then self:cancel("client closed"); return false end
    more = more and m
  end
  if ev.type == "done" then
    self:finish()
    self.stream:finish()
    return false
  end
  return more
end

--- x.regate(from, to, go): set when a gate applies (gate.permits): before
-- a fallback from link `from` to link `to`, trade the permits for the new
-- provider's, then go(nil), or go(err) with the client's 429 (err.cooling:
-- that provider cools down; the next link is tried). x.on_cancel(): the
-- client left

--- on_limited(provider name, retry_after seconds | nil): set by the app;
-- an upstream's 429 feeds the gate's cooldown of that provider (gate.lua)
M.on_limited = nil

-- the next attempt, wait ms from now (a retry's backoff, or 0: a fallback)
local function later(self, wait)
  local uv = require "luv"
  self.timer = self.timer or uv.new_timer()
  self.timer:start(math.floor(wait), 0, function()
    if self.done then return end
    log.with(self.id, function()
      local ok, err = xpcall(function() self:attempt() end, debug.traceback)
      if not ok then
        log.error("retry: %s", err)
        self:fail(errors.new(500, "internal error while retrying"))
      end
    end)
  end)
end

--- upstream_error(ev): retry, fall back, or fail
function Exchange:upstream_error(ev)
  if ev.status == 429 and M.on_limited then
    local link = self.route.chain[self.link]
    M.on_limited(link and link.name, ev.retry_after)
  end
  local committed = self.stream and self.stream.started
  if committed or not ev.retryable then return self:fail(ev) end
  local link = self.route.chain[self.link]
  local retries = link.provider and link.provider.retries or 0
  local wait, fell
  -- a Retry-After past the cap: waiting the cap out would only delay the
  -- same refusal
  local too_long = ev.retry_after and ev.retry_after * 1000 > M.RETRY_CAP_MS
  if self.tries <= retries and not too_long then
    wait = M.backoff(self.tries, ev.retry_after, link.provider.conf and link.provider.conf.retry_base_ms)
    if core._metrics_retry then core._metrics_retry(link.name) end
    log.warn("provider %s failed (%s %s); retry %d in %d ms", link.name, tostring(ev.status), ev.message,
      self.tries, wait)
  elseif self.link < #self.route.chain then
    self.link, self.tries, wait, fell = self.link + 1, 0, 0, true
    if core._metrics_fallback then core._metrics_fallback(link.name) end
    log.warn("provider %s failed (%s %s); falling back to %s", link.name, tostring(ev.status), ev.message,
      self:provider_name())
  else
    return self:fail(ev)
  end
  self.gen = nil -- nothing more from the failed attempt
  -- a fallback to a provider behind another gate waits for its permit
  -- first (the app's regate: gate.lua); a full queue or a timeout there
  -- is the client's 429
  if fell and self.regate then
    local function go(err)
      if self.done then return end
      if err and err.cooling and self.link < #self.route.chain then
        self.link = self.link + 1 -- that provider cools down: the next one
        return self.regate(self.link - 1, self.link, go)
      end
      if err then return self:fail(err) end
      later(self, 0)
    end
    return self.regate(self.link - 1, self.link, go)
  end
  later(self, wait)
end

--- fail(err): before the first byte an HTTP error, after it an in-format
-- error event and a clean end of the stream.
function Exchange:fail(err)
  if self.done then return end
  -- no secret the gateway holds reaches the client in an upstream's words
  err.message = secrets.redact(err.message, self.creq and self.creq.client_key)
  http.note(self.client.req, nil, self:provider_name(), err.message or "upstream error") -- the access log's
  self:finish()
  if self.job then self.job.cancel() end
  local e = errors.new(err.status or 502, err.message or "upstream error",
    { type = err.error_type, code = err.code, param = err.param })
  e.retry_after, e.upstream, e.passed = err.retry_after, err.upstream, err.passed
  if self.stream and self.stream.started then
    self.enc = self.enc or self.fd.stream_encoder(self.creq)
    for _, frame in ipairs(self.enc:error(e)) do self:send(frame) end
    self.stream:finish()
  else
    self.client:error(self.fd.client, e)
  end
end

--- stop(message): the daemon stops and this exchange outlived shutdown_timeout:
-- a 503 in the client's format, as an error event when the stream has started
function Exchange:stop(message)
  return self:fail({ status = 503, message = message or "the gateway is shutting down" })
end

function Exchange:cancel(why)
  if self.done then return end
  if self.on_cancel then self.on_cancel() end -- (waiting at a fallback's gate)
  self:finish()
  log.debug("request cancelled: %s", why)
  if self.job then self.job.cancel() end
end

return M
