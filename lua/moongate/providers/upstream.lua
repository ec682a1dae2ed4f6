-- Providers that call an HTTP upstream: every kind but echo and ws is
-- M.kind(spec) (docs/PROVIDERS.md: the contract of a kind and of an
-- adapter). The adapter turns the canonical request into the wire request,
-- the kind's auth object gives the credentials (asked before each request,
-- and once more after a 401), C's _fetch carries it (curl multi on this
-- worker's loop, SSE parsed in C), and the adapter turns frames back into
-- canonical events for the sink. A kind may have several wire formats
-- (kind "openai": chat completions, or Responses with api = "responses";
-- kind "copilot": per model); a provider may also forward a client's body
-- as is to an endpoint it declares (completions = true, embeddings = true).
-- the daemon's fetch (C), found at the first request: a host without it
-- (the nginx shim) still loads a kind to check its config fields
local core = setmetatable({}, { __index = function(t, k)
  setmetatable(t, { __index = require "moongate.core" })
  return t[k]
end })
local json = require "moongate.json"
local errors = require "moongate.errors"
local log = require "moongate.log"
local secrets = require "moongate.secrets"
local wire = require "moongate.wire" -- what is sent, and what an answer becomes
local listing = require "moongate.providers.listing"
-- a forwarded endpoint's stream (completions) ends as a chat stream does
local openai_stream_end = require("moongate.adapters.openai").stream_end

local M = {}

M.retry_after = wire.retry_after -- (the same, for the kinds that read it here)
M.passthrough = wire.passthrough

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

--- hold(p, grant, sink, rotate) -> h: h:frame(events) -> the events to
-- emit now | false: the upstream said, before any content, that this
-- member is limited (p.spec.classify), and rotate() found another to serve
-- (the caller sends the request again). A start is held until the first
-- content or error, or for HOLD_MS at most (then it goes out: a client
-- waits for its stream's headers no longer than that).
M.HOLD_MS = 1000
function M.hold(p, grant, sink, rotate)
  local h = { events = {}, released = false }
  local timer
  local function release()
    if timer then timer:stop(); timer:close(); timer = nil end
    h.released = true
    local out = h.events
    h.events = {}
    return out
  end
  h.release = release
  function h:frame(events)
    if self.released then return events end
    local out = {}
    for _, ev in ipairs(events) do
      if self.released then
        out[#out + 1] = ev
      elseif ev.type == "start" then
        self.events[#self.events + 1] = ev
      elseif ev.type == "error" then
        local status, ra = p.spec.classify(p, ev.status or 502,
          { code = ev.code, type = ev.error_type, message = ev.message }, ev.retry_after)
        if status == 429 then
          ev.status, ev.retry_after, ev.retryable, ev.upstream = 429, ra, true, true
          self.retry_after = ra
          local turn = rotate()
          if turn then
            turn()
            log.info("upstream %s: %s is rate limited; another member of the pool serves", p.name,
              grant.member and grant.member.name or "?")
            release()
            return false
          end
        end
        release() -- the start is dropped: the client gets the error as an HTTP answer
        out[#out + 1] = ev
      else
        for _, e in ipairs(release()) do out[#out + 1] = e end
        out[#out + 1] = ev
      end
    end
    if not self.released and #self.events > 0 and not timer then
      local ok, uv = pcall(require, "luv")
      if ok then
        timer = uv.new_timer()
        timer:start(M.HOLD_MS, 0, sink.guard(function()
          if not sink.closed() and not self.released then emit_all(sink, release()) end
        end))
      end
    end
    return out
  end
  return h
end

-- the endpoints a provider may forward as they are, when its conf says so
local forwardable = { completions = true, embeddings = true }

--- kind(spec) -> a provider kind module ({new = ..., schema = ...}).
-- spec (docs/PROVIDERS.md has the contract):
--   adapter          the default adapter (its format, path or url, defaults,
--                    headers, request/response/decoder, stream_end)
--   apis             name -> adapter, of which conf.api picks one
--   schema           the kind's own config fields (config.lua merges them
--                    with the fields every provider takes)
--   defaults         {base_url, key_env} (default: the adapter's)
--   presets          name -> {base_url, key_env}, picked by conf.preset
--   auth(p)          -> the provider's auth object (auth/api_key.lua has
--                    the contract; default: API keys)
--   init(p)          once, after the provider is built
--   target(p, creq, cb)  cb(adapter) | cb(nil, err): the adapter for this
--                    request (a kind whose models speak several formats)
--   shape(p, wire, creq, adapter)  last touches to a translated request
--   discover         list the upstream's models by default (conf.discover
--                    says otherwise); conf.models_url: where (default /models)
--   stream_always    the upstream is always asked for a stream (a whole
--                    answer is collected from it)
--   classify(p, status, err, retry_after) -> status, retry_after: reads a
--                    limit the upstream says its own way (a quota error;
--                    err: the error object, of an answer or a failed stream)
function M.kind(spec)
  local P = {}
  P.__index = P

  -- (spec too: another host builds its providers from the same adapters,
  -- defaults and presets, moongate.host.nginx)
  local mod = { schema = spec.schema, spec = spec }
  function mod.new(name, conf)
    local adapter = spec.adapter
    if conf.api ~= nil then
      adapter = spec.apis and spec.apis[conf.api]
      if not adapter then error(string.format("provider %s: unknown api %q", name, tostring(conf.api)), 0) end
    end
    local d = spec.defaults or adapter.defaults or {}
    if conf.preset then
      d = spec.presets and spec.presets[conf.preset]
      if not d then error(string.format("provider %s: unknown preset %q", name, tostring(conf.preset)), 0) end
    end
    local self = setmetatable({
      name = name, conf = conf, adapter = adapter, spec = spec, defaults = d,
      base_url = (conf.base_url or d.base_url or ""):gsub("/+$", ""),
      models = conf.models,
      retries = conf.retries or 2,
    }, P)
    self.compressed = conf.accept_compressed
    if self.compressed == nil then self.compressed = self.base_url:find("^https://") ~= nil end
    -- what every request of this provider hands core._fetch; send() adds
    -- the url, headers, the body and the stream mode
    self.fetch_opts = {
      method = "POST",
      connect_timeout_ms = conf.connect_timeout_ms or 10000,
      first_byte_timeout_ms = conf.first_byte_timeout_ms or 120000,
      idle_timeout_ms = conf.idle_timeout_ms or 120000,
      insecure = conf.insecure, compressed = self.compressed, client = conf.http_client,
    }
    if not adapter.count_path then self.count_tokens = false end -- app.lua estimates instead
    self.auth = spec.auth and spec.auth(self) or require("moongate.auth.api_key").new(self)
    if spec.init then spec.init(self) end
    -- model discovery: the upstream's own list (/models, or models_url),
    -- refreshed in the background; the router serves its models by name
    local discover = conf.discover
    if discover == nil then discover = spec.discover end
    if discover and not self.listing then
      self.listing = listing.new(self, listing.from_upstream(self, adapter, conf.models_url or "/models",
        listing.read_models))
      self.listing:watch()
    end
    return self
  end

  --- stop(): at shutdown, its background work ends
  function P:stop()
    if self.listing then self.listing:stop() end
  end

  --- has_model(id) -> whether the upstream's listed models name it
  function P:has_model(id)
    return self.listing ~= nil and self.listing:has(id)
  end

  --- serves(endpoint) -> whether this provider forwards that endpoint's
  -- requests as they are (conf.completions, conf.embeddings)
  function P:serves(endpoint)
    return forwardable[endpoint] == true and self.conf[endpoint] == true
  end

  --- url(adapter, base_url, creq) -> where this request goes
  local function url_of(a, base, creq)
    if a.url then return a.url(base, creq) end
    return base .. a.path
  end

  --- state() -> this provider's pool of accounts or keys, for /stats (nil: none)
  function P:state()
    return self.auth.state and self.auth:state() or nil
  end

  --- discovery() -> its model listing's state, for /stats (nil: it lists none)
  function P:discovery()
    return self.listing and self.listing:state() or nil
  end

  --- count_tokens(creq, cb): cb(n) or cb(nil, err) with the upstream's
  -- count (false on a provider whose adapter has no count_path)
  function P:count_tokens(creq, cb)
    local adapter = self.adapter
    local body, err
    if creq.client == adapter.format and creq.raw_body and self.conf.passthrough ~= false then
      body = wire.client_body(creq)
    else
      body, err = wire.wire_text(self, adapter, creq, true)
      if not body then return cb(nil, err) end
    end
    self.auth:headers(creq, function(grant, aerr)
      if not grant then return cb(nil, aerr or errors.new(401, "no credentials")) end
      grant.headers["x-request-id"] = grant.headers["x-request-id"] or creq.request_id or log.request_id()
      core._fetch({
        url = grant.base_url .. adapter.count_path, method = "POST", body = body,
        headers = grant.headers,
        connect_timeout_ms = self.conf.connect_timeout_ms or 10000, total_timeout_ms = 30000,
        insecure = self.conf.insecure, compressed = self.compressed, client = self.conf.http_client,
      }, {
        on_done = function(ferr, _, text, status)
          local res = json.decode(text or "")
          if not ferr and status == 200 and type(res) == "table" and tonumber(res.input_tokens) then
            return cb(tonumber(res.input_tokens))
          end
          local failed = status and status >= 400
          cb(nil, { status = failed and status or 502,
            message = ferr or (failed and secrets.redact(adapter.error_message(text), creq.client_key))
              or "the upstream's count_tokens answer holds no input_tokens" })
        end,
      })
    end, { adapter = adapter })
  end

  --- fast(creq) -> what C needs to send this passthrough itself
  -- (src/fast.c): {url, headers, connect_ms, first_byte_ms, idle_ms,
  -- total_ms, insecure, compressed, curl}, or nil when a request of this
  -- provider needs a script (a kind's own shaping, credentials that change,
  -- a format that differs, an answer that must be read)
  function P:fast(creq)
    local a, conf = self.adapter, self.conf
    if spec.target or spec.shape or spec.stream_always or spec.classify or a.url or not a.path
      or conf.passthrough == false or a.format ~= creq.client or creq.endpoint or not self.auth.static_headers
      or self.auth.refreshable then
      return nil
    end
    local headers = self.auth:static_headers(a)
    if not headers then return nil end
    if conf.headers then for k, v in pairs(conf.headers) do headers[k] = v end end
    local o = self.fetch_opts
    return { url = self.base_url .. a.path, headers = headers, connect_ms = o.connect_timeout_ms,
      first_byte_ms = o.first_byte_timeout_ms, idle_ms = o.idle_timeout_ms, total_ms = conf.timeout_ms or 600000,
      insecure = o.insecure, compressed = o.compressed, curl = o.client == "curl" }
  end

  function P:start(creq, sink)
    local job, cancelled, handle = {}, false, nil
    function job.cancel()
      cancelled = true
      if handle then core._fetch_cancel(handle) end
    end
    local function fail(ev)
      if not cancelled and not sink.closed() then sink.emit(ev) end
    end
    local plan, rotations, refreshed = nil, 0, false
    local authorize

    -- one upstream request with the credentials of grant
    local function send(grant)
      local a = plan.a
      local headers = grant.headers
      if self.conf.headers then
        for k, v in pairs(self.conf.headers) do headers[k] = v end
      end
      -- the client's request id (or the gateway's), for the upstream's own
      -- logs; a kind that makes its own (Copilot's UUIDs) keeps it
      headers["x-request-id"] = headers["x-request-id"] or creq.request_id or log.request_id()
      local dec = plan.stream and (plan.pass and M.passthrough(plan.forward and openai_stream_end or a.stream_end)
        or a.decoder(creq)) or nil
      local piped, templating -- (templating false: never ask for a template)
      -- a kind that reads limits its own way (classify) may be told one in
      -- the stream itself (the Codex backend's response.failed): its start
      -- is held until the first content, so that such a failure is still
      -- the client's 429 (or another member's turn), not a started stream
      local held
      held = dec and not plan.pass and spec.classify and M.hold(self, grant, sink, function()
        return rotations < 8 and self.auth.limited and self.auth:limited(grant, held.retry_after)
          and function() rotations = rotations + 1 end
      end) or nil

      local cbs = {
        on_done = sink.guard(function(err, code, text, st, hdrs, piped_n)
          handle = nil
          if text and text ~= "" and log.enabled("debug") then
            log.body(string.format("upstream %s answer %s", self.name, tostring(st)), text)
          end
          if sink.closed() then return end
          local status = st ~= 0 and st or nil
          if status and not err and (status < 200 or status > 599) then -- (999: no HTTP status a client takes)
            return sink.emit({ type = "error", status = 502, message = string.format(
              "upstream %s: malformed answer from upstream: status %d", self.name, status), retryable = false })
          end
          -- how many of the upstream's own frames the client has (a
          -- passthrough's), for a front door that ends its stream in their numbering
          local passed
          if dec and dec.passed then dec.piped = piped_n or 0; passed = dec:passed() end
          if err and held then held.release() end
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
            if held then held.release() end
            local retry_after = M.retry_after(hdrs and hdrs["retry-after"])
            if spec.classify then
              local body = json.decode(text or "")
              local e = type(body) == "table" and (type(body.error) == "table" and body.error or body) or {}
              status, retry_after = spec.classify(self, status, e, retry_after)
            end
            -- credentials the upstream refuses: fresh ones once (a token
            -- refreshed), then the request again
            if status == 401 and not refreshed and self.auth.refreshable then
              refreshed = true
              return authorize(true, grant)
            end
            -- a limited member of a pool rests; another one serves at once
            if status == 429 and self.auth.limited and rotations < 8 and self.auth:limited(grant, retry_after) then
              rotations = rotations + 1
              log.info("upstream %s: %s is rate limited; another %s serves", self.name,
                grant.member and grant.member.name or "?", grant.member and "member of the pool" or "")
              return authorize(false, grant)
            end
            return sink.emit(wire.error_answer(a, creq, status, text, retry_after, plan.forward))
          end
          if self.auth.served then self.auth:served(grant) end
          if dec and text == "" then
            local events = dec:finish()
            if held then
              events = held:frame(events)
              if events == false then return authorize(false, grant) end
            end
            return emit_all(sink, events)
          end
          if held then held.release() end -- (a start held back is not wanted now)
          if plan.pass and (not dec or plan.forward) then
            if not wire.object_text(text) then
              return sink.emit({ type = "error", status = 502, message = "malformed answer from upstream: "
                .. (text == "" and "an empty body" or "not a JSON object") })
            end
            return sink.emit({ type = "raw_body", body = text })
          end
          -- a whole answer, also one to a stream request (C reads a JSON
          -- answer whole): the client's encoder makes it a stream if asked
          -- (ill-formed UTF-8 becomes U+FFFD: json.utf8)
          emit_all(sink, wire.adapt(self.name, a.response, json.decode(json.utf8(text)), creq))
        end),
      }
      if dec then -- frames come only on a stream
        cbs.on_frame = sink.guard_value(function(data, event, piped_n)
          if log.enabled("debug") then log.body(string.format("upstream %s frame %s", self.name, event or ""), data) end
          -- (piped_n: the frames C queued itself so far, which the client has too)
          if dec.passed then dec.piped = piped_n or 0 end
          local events = wire.adapt(self.name, dec.frame, dec, plan.pass and data or json.utf8(data), event)
          if held then
            events = held:frame(events)
            if events == false then -- limited before any content: another member serves
              core._fetch_cancel(handle)
              handle = nil
              -- (curl takes no new transfer from its own callback: on the loop's next turn)
              require("moongate.auth.util").after(0, sink.guard(function() authorize(false, grant) end))
              return false
            end
          end
          local more = emit_all(sink, events)
          -- (not under --verbose: every frame is logged, so Lua sees each)
          if plan.pass and more and not piped and dec.pipe and sink.pipe_handle and not log.enabled("debug") then
            -- the client's stream is open: C queues the upstream's ordinary
            -- frames there itself from now on; this decoder still sees the
            -- rest (the end frames, the errors, anything malformed)
            local h = sink.pipe_handle()
            if h then core._fetch_pipe(handle, h, dec.c_marks); piped = true end
          end
          -- a translated stream in a steady state (the client's text or
          -- thinking block open): C writes the plain deltas that follow
          -- itself, until a frame of another kind comes here again
          if more and not plan.pass and a.text_frames and not held and templating ~= false and #events == 1
            and (events[1].type == "text_delta" or events[1].type == "thinking_delta") then
            local kind = events[1].type == "text_delta" and "text" or "thinking"
            local t, h = sink.template(kind)
            if t then
              core._fetch_template(handle, h, { from = a.text_frames, kind = kind, prefix = t.prefix,
                suffix = t.suffix, event = t.event })
            elseif t == false then
              templating = false -- this client's format has none (or every frame is logged)
            end
          end
          if not more and not sink.closed() then
            sink.on_drain(sink.guard(function() if handle then core._fetch_resume(handle) end end))
          end
          return more or sink.closed()
        end)
      end
      -- the answer C's fast path got for this request (src/fast.c): this
      -- attempt's, once, when it was this provider's
      local first = creq.first_answer
      if first then
        creq.first_answer = nil
        if first.provider == self.name and not dec then
          return cbs.on_done(first.err, first.code, first.body, first.status, first.headers, 0)
        end
      end
      -- the provider's one options table: C reads it during the call only
      local opts = self.fetch_opts
      opts.url = plan.forward and (grant.base_url .. "/" .. creq.endpoint) or url_of(a, grant.base_url, creq)
      opts.headers, opts.body, opts.stream = headers, plan.body, dec and "sse" or nil
      -- a whole answer is bounded by default (10 minutes); a stream by its
      -- idle and first-byte timeouts (timeout_ms bounds both when set)
      opts.total_timeout_ms = self.conf.timeout_ms or (dec and 0 or 600000)
      if log.enabled("debug") then log.body(string.format("upstream %s request %s", self.name, opts.url), plan.body) end
      handle = core._fetch(opts, cbs)
      opts.headers, opts.body, opts.url = nil, nil, nil
    end

    -- credentials for the request (stale: the last ones were refused),
    -- then the request
    authorize = function(stale, previous)
      self.auth:headers(creq, sink.guard(function(grant, err)
        if cancelled or sink.closed() then return end
        if not grant then return fail(wire.error_event(err or errors.new(401, "no credentials"))) end
        send(grant)
      end), { adapter = plan.a, stale = stale, previous = previous })
    end

    local function with_adapter(a, err)
      if cancelled or sink.closed() then return end
      if not a then return fail(wire.error_event(err)) end
      local perr
      plan, perr = wire.plan(self, creq, a)
      if not plan then return fail(perr) end
      authorize(false)
    end
    if spec.target then
      spec.target(self, creq, sink.guard(with_adapter))
    else
      with_adapter(self.adapter)
    end
    return job
  end

  return mod
end

return M
