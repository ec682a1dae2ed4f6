-- moongate's Lua layer inside nginx (the lua-nginx-module, OpenResty):
-- nginx does the I/O, these phase handlers the rest. docs/EMBEDDING.md has
-- the config an operator copies (examples/nginx/nginx.conf) and what this
-- host does and does not do.
--   init_by_lua        moongate.init(config)       the daemon's config table (or its file)
--   access_by_lua      moongate.access()           decode, route, the upstream request
--   header_filter_by_lua moongate.header_filter()  the answer's headers in the client's format
--   body_filter_by_lua return moongate.body_filter()  a stream, frame by frame (its value: ngx.ERROR stops an upstream that goes on past the client's error)
-- A whole (not streamed) translated answer is fetched in the access phase
-- through a subrequest to the location named by `upstream_location`, so
-- that its status can still change (an upstream error in the client's
-- format, a malformed answer: 502). A stream goes through proxy_pass and
-- the two filters. A passthrough (the client's format is the upstream's)
-- goes through proxy_pass untouched: its body as the client sent it (the
-- route's model in place of the client's), its answer as it came.
local host = require "moongate.host"
local json = require "moongate.json"
local errors = require "moongate.errors"
local config = require "moongate.config"
local router = require "moongate.router"
local wire = require "moongate.wire"
local log = require "moongate.log"
local secrets = require "moongate.secrets"
local frames = require "moongate.frames"

local M = {}

-- the kinds this host serves, and the provider fields it takes (any other
-- field the daemon knows is refused by name at init: nothing is ignored)
local KINDS = { openai = true, anthropic = true }
local FIELDS = {
  kind = true, base_url = true, api_key = true, api_key_env = true, models = true, headers = true,
  passthrough = true, default_max_tokens = true, send_reasoning = true, max_output_tokens = true,
  efforts = true, api = true, preset = true, thinking = true, max_tokens_field = true,
}
-- the config's top-level keys this host reads; the daemon's others are
-- refused, so that a limit or a key an operator set is never silently off
local TOP = { providers = true, routes = true, aliases = true, log_level = true }

-- the front doors, by "METHOD path" (their routes that "serve")
local DOORS = { "openai_chat", "anthropic_messages", "openai_responses", "openai_completions", "ollama" }

local S -- the state init() builds: {router, doors, location}

-- a monotonic clock (lua-resty-core's), in nanoseconds
local function mono_ns()
  local ok, t = pcall(require, "resty.core.time")
  if ok and t.monotonic_msec then return t.monotonic_msec() * 1e6 end
  return nil
end

local ngx_levels -- ngx's log levels, by ours
local function ngx_write(level, line)
  ngx.log(ngx_levels[level] or ngx.NOTICE, line)
end

local function upstream_provider(name, conf)
  -- the kind's adapter, preset and defaults, as providers/upstream.lua picks them
  local spec = assert(config.kind_module(conf.kind)).spec
  local adapter = conf.api ~= nil and spec.apis[conf.api] or spec.adapter
  local d = conf.preset and spec.presets[conf.preset] or spec.defaults or adapter.defaults or {}
  local key = conf.api_key
  if key == nil then key = os.getenv(conf.api_key_env or d.key_env or "") end
  if key == "" then key = nil end
  if key then log.add_secret(key) end
  return {
    name = name, kind = conf.kind, conf = conf, adapter = adapter, spec = spec, models = conf.models,
    base_url = (conf.base_url or d.base_url or ""):gsub("/+$", ""), key = key,
    serves = function() return false end, -- no endpoint is forwarded as is here
  }
end

--- init(cfg | path [, opts]): once, in init_by_lua. cfg is the daemon's
-- config table (or the path of its file). opts.upstream_location: the
-- internal location that proxies a whole answer's subrequest (default
-- "/_moongate_upstream"). Raises with every problem found, by name.
function M.init(cfg, opts)
  if ngx then
    ngx_levels = { error = ngx.ERR, warn = ngx.WARN, info = ngx.INFO, debug = ngx.DEBUG }
    host.use {
      write = ngx_write,
      wall = function() return ngx.now() end,
      mono = mono_ns,
    }
  end
  if type(cfg) == "string" then cfg = assert(config.load_file(cfg)) end
  local ok, errs = config.validate(cfg)
  errs = ok and {} or errs
  for k in pairs(cfg) do
    if not TOP[k] then errs[#errs + 1] = string.format("%s: not served by the nginx host (docs/EMBEDDING.md)", k) end
  end
  for i, r in ipairs(type(cfg.routes) == "table" and cfg.routes or {}) do
    if type(r) == "table" and type(r.provider) == "table" and #r.provider > 1 then
      errs[#errs + 1] = string.format("routes[%d].provider: a fallback list is not served by the nginx host (one provider a route)", i)
    end
  end
  local providers = {}
  for name, conf in pairs(type(cfg.providers) == "table" and cfg.providers or {}) do
    if not KINDS[conf.kind] then
      errs[#errs + 1] = string.format("providers.%s.kind: %q is not served by the nginx host (openai and anthropic are)",
        name, tostring(conf.kind))
    else
      for k in pairs(conf) do
        if not FIELDS[k] then
          errs[#errs + 1] = string.format("providers.%s.%s: not served by the nginx host (docs/EMBEDDING.md)", name, k)
        end
      end
    end
  end
  if #errs > 0 then
    table.sort(errs)
    error("moongate config:\n  " .. table.concat(errs, "\n  "), 0)
  end
  for name, conf in pairs(cfg.providers or {}) do providers[name] = upstream_provider(name, conf) end
  if cfg.log_level then log.set_level(cfg.log_level) end
  local doors = {}
  for _, name in ipairs(DOORS) do
    local fd = require("moongate.frontdoor." .. name)
    for route, method in pairs(fd.routes or {}) do
      if method == "serve" then doors[route] = fd end
    end
  end
  -- Ollama's two serve through functions of the daemon's app: decoded for their endpoint here
  local ollama = require "moongate.frontdoor.ollama"
  for endpoint, route in pairs { chat = "POST /api/chat", generate = "POST /api/generate" } do
    doors[route] = setmetatable({ decode = function(body, headers) return ollama.decode(body, headers, endpoint) end },
      { __index = ollama })
  end
  S = { router = router.new(cfg, providers), doors = doors, started = os.time(),
    location = opts and opts.upstream_location or "/_moongate_upstream" }
  S.app = { router = S.router } -- what a front door's prepare may look at (no response store here)
end

-- Answers ---------------------------------------------------------------------

local function send(status, body, content_type, headers)
  ngx.ctx.moongate_sent = true -- (the filters leave this answer alone)
  ngx.status = status
  ngx.header["content-type"] = content_type or "application/json"
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  ngx.print(body)
  return ngx.exit(status)
end

-- an error value (errors.new's, or an error event: its type is "error",
-- its error type error_type) as errors.new's, no secret in its words
local function client_error(err)
  local etype = err.error_type
  if etype == nil and err.type ~= "error" then etype = err.type end
  local e = errors.new(err.status or 502, secrets.redact(err.message or "upstream error"),
    { type = etype, code = err.code, param = err.param })
  e.upstream, e.passed, e.retry_after = err.upstream, err.passed, err.retry_after
  return e
end

-- an error in the client's format, as the whole answer
local function fail(client, err)
  local e = client_error(err)
  local headers
  if e.retry_after then headers = { ["retry-after"] = tostring(math.max(1, math.ceil(e.retry_after))) } end
  return send(e.status, errors.body(client, e), nil, headers)
end

-- the request's body: in memory, or the file nginx wrote it to
local function request_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local file = ngx.req.get_body_file()
  if not file then return "" end
  local f = io.open(file, "rb")
  if not f then return nil end
  body = f:read("*a")
  f:close()
  return body
end

-- the client's encoder (stream) or collector (whole) for this request
local function client_side(c)
  local meta = { created = math.floor(ngx.now()) }
  if c.creq.stream then c.enc = c.fd.stream_encoder(c.creq, meta) else c.col = c.fd.collector(c.creq, meta) end
end

-- a stream frame of the client's kind
local function frame_text(kind, f)
  local data, event = f, nil
  if type(f) == "table" then data, event = f.data, f.event end
  if kind == "ndjson" then return host.ndjson_frame(data) end
  return host.sse_frame(data, event)
end

-- events -> the client's stream frames, appended to out; c.ended once it ended
local function stream_events(c, events, out)
  local kind = c.fd.stream_kind
  for _, ev in ipairs(events) do
    if c.ended then return end
    local frames
    if ev.type == "error" then
      frames, c.ended, c.error_end = c.enc:error(client_error(ev)), true, true
    else
      frames = c.enc:event(ev)
      if ev.type == "done" then c.ended = true end
    end
    for i = 1, #frames do out[#out + 1] = frame_text(kind, frames[i]) end
  end
end

-- a header of a table the way nginx hands them (any case)
local function header_of(h, name)
  for k, v in pairs(h or {}) do
    if type(k) == "string" and k:lower() == name then return type(v) == "table" and v[1] or v end
  end
end

-- Phases ------------------------------------------------------------------------

-- the upstream request's headers: the adapter's (with the provider's key),
-- the provider's own, the request id; none of the client's (its key stays here)
local function set_headers(p, creq)
  for name in pairs(ngx.req.get_headers(0, true)) do ngx.req.clear_header(name) end
  local h = p.adapter.headers(p.conf, p.key, creq)
  for k, v in pairs(p.conf.headers or {}) do h[k] = v end
  h["x-request-id"] = creq.request_id
  h["accept-encoding"] = "identity" -- the answer is read here: never compressed
  for k, v in pairs(h) do ngx.req.set_header(k, v) end
end

local function url_of(p, creq)
  local a = p.adapter
  if a.url then return a.url(p.base_url, creq) end
  return p.base_url .. a.path
end

-- each worker draws its own ids (the front doors' random ids use math.random)
local seeded = false
local function seed()
  math.randomseed(tonumber(host.random_hex(8), 16) % 2147483647 + (ngx.worker and ngx.worker.pid() or 0))
  seeded = true
end

--- access(): decode the client's request, route it, and make the upstream
-- request; answers an error in the client's format itself
function M.access()
  if not seeded then seed() end
  local method, path = ngx.req.get_method(), ngx.var.uri
  if method == "GET" and path == "/v1/models" then return M.models() end
  local fd = S.doors[method .. " " .. path]
  if not fd then
    local client = errors.client_for_path(path)
    return fail(client, errors.new(404, string.format("no route for %s %s", method, errors.shown(path, 200))))
  end
  local body = request_body()
  if not body then return fail(fd.client, errors.new(500, "the request body could not be read")) end
  local creq, err = fd.decode(body, ngx.req.get_headers(0))
  if not creq then return fail(fd.client, err) end
  if fd.prepare then
    local _, perr = errors.catch(fd.prepare, creq, S.app)
    if perr then return fail(fd.client, perr) end
  end
  local route, rerr = S.router:resolve(creq.model)
  if not route then return fail(fd.client, rerr) end
  local p = route.chain[1].provider
  if not p then
    return fail(fd.client, errors.new(404, string.format("The model `%s` is not served here (provider %s is the daemon's).",
      errors.shown(creq.model, 200), route.chain[1].name), { code = "model_not_found" }))
  end
  if fd.accepts then
    local aerr = fd.accepts(creq, route)
    if aerr then return fail(fd.client, aerr) end
  end
  if route.effort and not creq.reasoning then
    creq.reasoning = { effort = route.effort }
    creq.effort_from_suffix = true
  end
  creq.upstream_model = route.model
  creq.request_id = ngx.var.request_id
  local plan, perr = wire.plan(p, creq, p.adapter)
  if not plan then return fail(fd.client, perr) end
  set_headers(p, creq)
  ngx.var.moongate_upstream = url_of(p, creq)
  local c = { fd = fd, creq = creq, plan = plan, p = p }
  ngx.ctx.moongate = c
  if plan.stream then
    ngx.req.set_body_data(plan.body)
    return -- proxy_pass, and the filters below
  end
  return M.whole(c)
end

-- GET /v1/models: the models the routes serve here (in both SDKs' shape)
function M.models()
  local ids = {}
  for _, id in ipairs(S.router:models()) do
    local route = S.router:resolve(id)
    if route and route.chain[1].provider then ids[#ids + 1] = id end
  end
  return send(200, json.encode_raw(router.model_list(ids, S.started)))
end

-- nginx's own error answers (no upstream answered), in words for the client
local OWN = {
  [502] = "no answer from the upstream (it could not be reached, or it closed the connection first)",
  [504] = "the upstream did not answer in time",
  [413] = "the request body is larger than this gateway takes",
  [408] = "the request did not arrive in time",
}

-- what an upstream's answer status and headers rule out before its body:
-- an error event, or nil
local function refused_answer(name, status, encoding)
  if status < 200 or status > 599 then
    return { type = "error", status = 502, message = string.format("upstream %s: malformed answer from upstream: status %d", name, status) }
  elseif status >= 300 and status < 400 then
    return { type = "error", status = 502, message = string.format("upstream %s: answered a redirect (%d), which is not followed", name, status) }
  elseif encoding and encoding ~= "" and encoding ~= "identity" then
    return { type = "error", status = 502, message = string.format("upstream %s: compressed its answer (%s) unasked", name, encoding) }
  end
end

--- whole(c): a whole (not streamed) answer, through the subrequest:
-- passthrough (the upstream's bytes, when they are a JSON object) or
-- translated
function M.whole(c)
  local res = ngx.location.capture(S.location, { method = ngx.HTTP_POST, body = c.plan.body,
    vars = { moongate_upstream = ngx.var.moongate_upstream } })
  local a, creq, client, name = c.plan.a, c.creq, c.fd.client, c.p.name
  c.done = true -- (the filters leave this answer alone)
  local body = res.body or ""
  -- an answer not from the upstream (nginx's page: it was not reached, or not in time)
  if OWN[res.status] and not wire.object_text(body) then
    return fail(client, errors.new(res.status, "upstream " .. name .. ": " .. OWN[res.status]))
  end
  local refused = refused_answer(name, res.status, header_of(res.header, "content-encoding"))
  if refused then return fail(client, refused) end
  if res.truncated then return fail(client, errors.new(502, "upstream " .. name .. ": the answer was cut short")) end
  if res.status >= 400 then
    return fail(client, wire.error_answer(a, creq, res.status, body, wire.retry_after(header_of(res.header, "retry-after"))))
  end
  if c.plan.pass then
    if not wire.object_text(body) then
      return fail(client, errors.new(502, "malformed answer from upstream: " .. (body == "" and "an empty body" or "not a JSON object")))
    end
    return send(200, body) -- byte for byte
  end
  local events = wire.adapt(name, a.response, json.decode(json.utf8(body)), creq)
  client_side(c)
  for _, ev in ipairs(events) do
    if ev.type == "error" then return fail(client, ev) end
    c.col:event(ev)
  end
  local ok, text = pcall(function() return c.col.json_text and c.col:json_text() or json.encode_raw(c.col:result()) end)
  if not ok then return fail(client, errors.new(502, "the upstream's answer cannot be written in the client's format")) end
  return send(200, text)
end

-- is this error answer nginx's own? Nothing came from an upstream: no
-- upstream was asked (a body too large), or the last one sent no header
local function own_error(status)
  if status < 400 then return false end
  local t = ngx.var.upstream_header_time
  return t == nil or t == "" or t:match("([^,%s]+)%s*$") == "-"
end

-- the upstream's headers a client gets (with the ones set here)
local KEEP = { ["content-type"] = true, ["retry-after"] = true }

--- header_filter(): a stream's headers; what its body becomes is set here
-- (c.mode) and done by body_filter
function M.header_filter()
  local ctx = ngx.ctx
  if ctx.moongate_sent then return end
  local c = ctx.moongate
  local status = ngx.status
  if own_error(status) then
    -- an HTML page otherwise: the client's error format instead, whatever the request
    ctx.moongate_own = { client = c and c.fd.client or errors.client_for_path(ngx.var.uri), status = status,
      message = (c and ("upstream " .. c.p.name .. ": ") or "") .. (OWN[status] or ("the gateway answered " .. status)) }
    ngx.header["content-type"] = "application/json"
    ngx.header["content-length"] = nil
    ngx.header["content-encoding"] = nil
    return
  end
  if not c or c.done then return end
  local ctype = ngx.header["content-type"] or ""
  local encoding = ngx.header["content-encoding"]
  -- none of the upstream's other headers (cookies, its own ids, hop-by-hop)
  for k in pairs(ngx.resp.get_headers(0, true)) do
    if not KEEP[k:lower()] then ngx.header[k] = nil end
  end
  local refused = refused_answer(c.p.name, status, encoding)
  if refused or status >= 400 then
    -- an error answer, whole: rewritten in the client's format at its end,
    -- its Retry-After in whole seconds as the daemon says it
    local ra = ngx.header["retry-after"]
    c.mode, c.buf, c.refused = "error", {}, refused
    c.retry_after = wire.retry_after(type(ra) == "table" and ra[1] or ra)
    ngx.header["retry-after"] = c.retry_after and tostring(math.max(1, math.ceil(c.retry_after))) or nil
    if refused then ngx.status = refused.status end
    ngx.header["content-type"] = "application/json"
    return
  end
  ngx.status = 200 -- (a 201 or 203 is the client's 200)
  ngx.header["retry-after"] = nil -- (said of errors alone, as by the daemon)
  if ctype:find("text/event-stream", 1, true) then
    c.parser = host.sse_parser()
    if c.plan.pass then
      -- the upstream's bytes as they come (no secret of the gateway's in
      -- them); watched for the stream's end, so that one cut short still
      -- ends with the client's error frame
      c.mode, c.watch, c.pend, c.pend_n = "pass", wire.passthrough(c.plan.a.stream_end), {}, 0
      c.parser = frames.sse_parser(true)
      client_side(c)
      return
    end
    c.mode, c.dec = "sse", c.plan.a.decoder(c.creq)
  else
    c.mode, c.buf = "whole", {} -- a whole answer to a stream request: made a stream here
  end
  ngx.header["content-type"] = c.fd.stream_kind == "ndjson" and "application/x-ndjson" or "text/event-stream; charset=utf-8"
  ngx.header["cache-control"] = "no-cache"
  client_side(c)
end

-- a stream's end when nginx stops without the upstream's end
local BROKE = "the upstream stream broke off before it finished"

local function broke(c)
  return { { type = "error", status = 502, message = "upstream " .. c.p.name .. ": " .. BROKE,
    passed = c.watch and c.watch:passed() or nil } }
end

-- the most of an upstream's event held (as the daemon's frame limit), and
-- of a whole answer (as the daemon's body limit)
local MAX_EVENT = 16 * 1024 * 1024
local MAX_BODY = 64 * 1024 * 1024

local function too_big(c, what, limit)
  return { { type = "error", status = 502, passed = c.watch and c.watch:passed() or nil,
    message = string.format("upstream %s: %s is over %d MiB", c.p.name, what, limit / 1048576) } }
end

-- a passthrough stream's bytes -> out, a whole event at a time: each as
-- the upstream wrote it, but for an error frame (without the gateway's
-- secrets) and a frame the watcher ends the stream with an error for (a
-- failure event, a malformed frame: the client's error frame instead); a
-- partial event waits for its end (c.pend), so that an error frame after a
-- cut never lands inside one
local function pass_events(c, chunk, out)
  local frames = c.parser:feed(chunk)
  local cut = c.parser.cut
  if not cut then -- no event ends here: held (a list, not one growing string)
    c.pend[#c.pend + 1], c.pend_n = chunk, c.pend_n + #chunk
    if c.pend_n > MAX_EVENT then
      c.pend, c.pend_n = {}, 0
      stream_events(c, too_big(c, "an upstream stream frame", MAX_EVENT), out)
    end
    return
  end
  local base = c.pend_n
  c.pend[#c.pend + 1] = chunk
  local text = table.concat(c.pend)
  local from = 1
  for _, f in ipairs(frames) do
    local span = text:sub(from, base + f.stop)
    from = base + f.stop + 1
    local done = false
    for _, ev in ipairs(c.watch:frame(f.data, f.event)) do
      if ev.type == "raw" then
        -- a front door that reads what passes (the Responses one: the id a
        -- failure is written under)
        if c.fd.on_raw then c.fd.on_raw(c.creq, ev) end
        -- an error frame the watcher redacted is written anew; any other as it came
        out[#out + 1] = ev.data == f.data and span or frame_text("sse", ev)
      elseif ev.type == "error" then
        stream_events(c, { ev }, out)
      elseif ev.type == "done" then
        done = true
      end
    end
    if c.ended or c.watch.ended then
      -- the upstream's own error frame ends it as an error too
      if not done then c.error_end = true end
      -- a CRLF whose LF has not come yet (the frame ends the bytes so far,
      -- in a CR): owed to the client with the next bytes
      c.lf_owed = out[#out] == span and base + f.stop == #text and c.parser.skip_lf or nil
      return
    end
  end
  if base + cut >= from then out[#out + 1] = text:sub(from, base + cut) end -- comments, blank lines
  local rest = text:sub(base + cut + 1)
  c.pend, c.pend_n = { rest }, #rest
end

--- body_filter(): a stream's bytes -> the client's. A client's stream
-- ends with the upstream's answer (nginx holds the request until then):
-- what comes after its last frame is dropped; a failure ends it at once
function M.body_filter()
  local own = ngx.ctx.moongate_own
  if own then
    ngx.arg[1] = ngx.arg[2] and errors.body(own.client, errors.new(own.status, own.message)) or nil
    return
  end
  local c = ngx.ctx.moongate
  if not c or c.done or not c.mode then return end
  local chunk, eof = ngx.arg[1], ngx.arg[2]
  -- an upstream that failed (a reset, a timeout) ends with an empty flush
  -- and no end: nginx has timed the upstream by then (before, the variable
  -- says "-"), and sends no more
  local failed = not eof and chunk == "" and ngx.var.upstream_response_time ~= "-"
  if failed then ngx.arg[2] = true end -- the client's answer ends whole, not cut
  if c.ended and c.error_end and chunk ~= "" and not eof then
    if c.lf_owed and chunk == "\n" then -- (its last frame's LF, alone)
      c.lf_owed, ngx.arg[1] = nil, chunk
      return
    end
    -- the client has its error, and the upstream goes on: stopped here (the
    -- daemon cancels it), which closes the client's connection too
    ngx.arg[1] = nil
    return ngx.ERROR
  end
  local out = {}
  if c.mode == "pass" then
    if not c.ended then
      pass_events(c, chunk, out)
      if c.watch.ended then c.ended = true end
      if (eof or failed) and not c.ended then stream_events(c, broke(c), out) end
    elseif c.lf_owed and chunk ~= "" then
      if chunk:byte(1) == 10 then out[1] = "\n" end
      c.lf_owed = nil
    end
    ngx.arg[1] = table.concat(out)
    return
  end
  if c.mode == "sse" then
    if not c.ended then
      local frames = c.parser:feed(chunk)
      -- bytes with no frame end in them: an open event, held by the parser
      c.open_n = #frames > 0 and 0 or (c.open_n or 0) + #chunk
      for _, f in ipairs(frames) do
        stream_events(c, wire.adapt(c.p.name, c.dec.frame, c.dec, json.utf8(f.data), f.event), out)
        if c.ended then break end
      end
      if not c.ended and c.open_n > MAX_EVENT then
        c.parser = host.sse_parser() -- (what it held, let go)
        stream_events(c, too_big(c, "an upstream stream frame", MAX_EVENT), out)
      end
    end
    if eof and not c.ended then stream_events(c, c.dec:finish(), out) end
    if (eof or failed) and not c.ended then stream_events(c, broke(c), out) end
    ngx.arg[1] = table.concat(out)
    return
  end
  c.buf[#c.buf + 1] = chunk
  c.buf_n = (c.buf_n or 0) + #chunk
  if c.buf_n > MAX_BODY and not (eof or failed) then
    -- a whole answer past the limit: its end is not waited for
    c.buf, c.buf_n, c.ended, c.error_end = {}, 0, true, true
    ngx.arg[2] = true
    if c.mode == "error" then
      ngx.arg[1] = errors.body(c.fd.client, client_error(too_big(c, "an error answer", MAX_BODY)[1]))
    else
      stream_events(c, too_big(c, "an answer", MAX_BODY), out)
      ngx.arg[1] = table.concat(out)
    end
    return
  end
  if not (eof or failed) then
    ngx.arg[1] = nil
    return
  end
  local text = table.concat(c.buf)
  local a, creq = c.plan.a, c.creq
  if c.mode == "error" then
    local ev = c.refused or wire.error_answer(a, creq, ngx.status, text, c.retry_after)
    ngx.arg[1] = errors.body(c.fd.client, client_error(ev))
    return
  end
  -- a whole answer to a stream request: the client's encoder makes a stream of it
  if failed then
    stream_events(c, broke(c), out)
  else
    stream_events(c, wire.adapt(c.p.name, a.response, json.decode(json.utf8(text)), creq), out)
    if not c.ended then stream_events(c, broke(c), out) end
  end
  ngx.arg[1] = table.concat(out)
end

return M
