-- moongate's Lua layer inside nginx (the lua-nginx-module, OpenResty):
-- nginx does the I/O, these phase handlers the rest. docs/EMBEDDING.md has
-- the config an operator copies (examples/nginx/nginx.conf) and what this
-- host does and does not do.
--   init_by_lua        moongate.init(config)       the daemon's config table (or its file)
--   access_by_lua      moongate.access()           decode, route, the upstream request
--   header_filter_by_lua moongate.header_filter()  the answer's headers in the client's format
--   body_filter_by_lua moongate.body_filter()      a translated stream, frame by frame
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
      mono = function() ngx.update_time() return ngx.now() * 1e9 end,
    }
  end
  if type(cfg) == "string" then cfg = assert(config.load_file(cfg)) end
  local ok, errs = config.validate(cfg)
  errs = ok and {} or errs
  for k in pairs(cfg) do
    if not TOP[k] then errs[#errs + 1] = string.format("%s: not served by the nginx host (docs/EMBEDDING.md)", k) end
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
end

-- nginx's own error answers (no upstream answered), in words for the client
local OWN = {
  [502] = "no answer from the upstream (it could not be reached, or it closed the connection first)",
  [504] = "the upstream did not answer in time",
  [413] = "the request body is larger than this gateway takes",
  [408] = "the request did not arrive in time",
}

-- Answers ---------------------------------------------------------------------

local function send(status, body, content_type, headers)
  ngx.ctx.moongate_sent = true -- (the filters leave this answer alone)
  ngx.status = status
  ngx.header["content-type"] = content_type or "application/json"
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  ngx.print(body)
  return ngx.exit(status)
end

-- a message for the client: no secret the gateway holds, by value
local function secrets_safe(message) return require("moongate.secrets").redact(message or "upstream error") end

-- an error value (errors.new's, or an error event) in the client's format
local function fail(client, err)
  local e = errors.new(err.status or 502, secrets_safe(err.message), { type = err.type or err.error_type,
    code = err.code, param = err.param })
  local headers
  if err.retry_after then headers = { ["retry-after"] = tostring(math.max(1, math.ceil(err.retry_after))) } end
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
  local meta = { id = nil, created = math.floor(ngx.now()) }
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
      local e = errors.new(ev.status or 502, secrets_safe(ev.message), { type = ev.error_type, code = ev.code, param = ev.param })
      e.upstream, e.passed = ev.upstream, ev.passed
      frames, c.ended = c.enc:error(e), true
    else
      frames = c.enc:event(ev)
      if ev.type == "done" then c.ended = true end
    end
    for i = 1, #frames do out[#out + 1] = frame_text(kind, frames[i]) end
  end
end

-- Phases ------------------------------------------------------------------------

-- the upstream request's headers: the adapter's (with the provider's key),
-- the provider's own, the request id; none of the client's (its key stays here)
local function set_headers(p, creq)
  for name in pairs(ngx.req.get_headers(200, true)) do ngx.req.clear_header(name) end
  local h = p.adapter.headers(p.conf, p.key, creq)
  for k, v in pairs(p.conf.headers or {}) do h[k] = v end
  h["x-request-id"] = creq.request_id
  for k, v in pairs(h) do ngx.req.set_header(k, v) end
end

local function url_of(p, creq)
  local a = p.adapter
  if a.url then return a.url(p.base_url, creq) end
  return p.base_url .. a.path
end

--- access(): decode the client's request, route it, and make the upstream
-- request; answers an error in the client's format itself
function M.access()
  local method, path = ngx.req.get_method(), ngx.var.uri
  if method == "GET" and path == "/v1/models" then return M.models() end
  local fd = S.doors[method .. " " .. path]
  if not fd then
    local client = errors.client_for_path(path)
    return fail(client, errors.new(404, string.format("no route for %s %s", method, path)))
  end
  local body = request_body()
  if not body then return fail(fd.client, errors.new(500, "the request body could not be read")) end
  local headers = ngx.req.get_headers(200)
  local creq, err = fd.decode(body, headers)
  if not creq then return fail(fd.client, err) end
  if fd.prepare then
    local _, perr = errors.catch(fd.prepare, creq, nil)
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
  if plan.pass or plan.stream then
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

-- a whole translated answer, through the subrequest
function M.whole(c)
  local res = ngx.location.capture(S.location, { method = ngx.HTTP_POST, body = c.plan.body,
    vars = { moongate_upstream = ngx.var.moongate_upstream } })
  local a, creq, client = c.plan.a, c.creq, c.fd.client
  c.done = true -- (the filters leave this answer alone)
  if res.status >= 400 or res.status < 200 then
    -- an answer not from the upstream (nginx's page: it was not reached, or not in time)
    if OWN[res.status] and not wire.object_text(res.body or "") then
      return fail(client, errors.new(res.status, "upstream " .. c.p.name .. ": " .. OWN[res.status]))
    end
    if res.status < 200 or res.status > 599 or res.truncated then
      return fail(client, errors.new(502, string.format("upstream %s: no answer (status %d)", c.p.name, res.status)))
    end
    local ev = wire.error_answer(a, creq, res.status, res.body, wire.retry_after(res.header["Retry-After"]))
    return fail(client, ev)
  end
  if res.truncated then return fail(client, errors.new(502, "upstream " .. c.p.name .. ": the answer was cut short")) end
  local events = wire.adapt(c.p.name, a.response, json.decode(json.utf8(res.body)), creq)
  client_side(c)
  for _, ev in ipairs(events) do
    if ev.type == "error" then return fail(client, ev) end
    c.col:event(ev)
  end
  local ok, text = pcall(function() return c.col.json_text and c.col:json_text() or json.encode_raw(c.col:result()) end)
  if not ok then return fail(client, errors.new(502, "the upstream's answer cannot be written in the client's format")) end
  return send(200, text)
end

--- header_filter(): a translated stream's headers (its body comes through body_filter)

-- is this error answer nginx's own? Nothing came from an upstream: no
-- upstream was asked (a body too large), or the last one sent no header
local function own_error(status)
  if status < 400 then return false end
  local t = ngx.var.upstream_header_time
  return t == nil or t == "" or t:match("([^,%s]+)%s*$") == "-"
end

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
  if not c or c.done or c.plan.pass then return end
  ngx.header["content-length"] = nil
  ngx.header["content-encoding"] = nil
  if status < 200 or status >= 300 then
    -- an error answer, whole: rewritten in the client's format at its end
    c.mode = "error"
    if status < 200 or status > 599 then ngx.status = 502 end
    ngx.header["content-type"] = "application/json"
    c.buf = {}
    return
  end
  local ctype = ngx.header["content-type"] or ""
  c.mode = ctype:find("text/event-stream", 1, true) and "sse" or "whole"
  if c.mode == "sse" then
    c.parser = host.sse_parser()
    c.dec = c.plan.a.decoder(c.creq)
  else
    c.buf = {}
  end
  ngx.header["content-type"] = c.fd.stream_kind == "ndjson" and "application/x-ndjson" or "text/event-stream; charset=utf-8"
  ngx.header["cache-control"] = "no-cache"
  client_side(c)
end

-- a translated stream's end when nginx stops without the upstream's end
local BROKE = "the upstream stream broke off before it finished"

--- body_filter(): a translated stream's bytes -> the client's frames
function M.body_filter()
  local own = ngx.ctx.moongate_own
  if own then
    ngx.arg[1] = ngx.arg[2] and errors.body(own.client, errors.new(own.status, own.message)) or nil
    return
  end
  local c = ngx.ctx.moongate
  if not c or c.done or not c.mode then return end
  local chunk, eof = ngx.arg[1], ngx.arg[2]
  local out = {}
  if c.mode == "sse" then
    if not c.ended then
      for _, f in ipairs(c.parser:feed(chunk)) do
        stream_events(c, wire.adapt(c.p.name, c.dec.frame, c.dec, json.utf8(f.data), f.event), out)
        if c.ended then break end
      end
    end
    if eof and not c.ended then stream_events(c, c.dec:finish(), out) end
    -- an upstream that failed (a reset, a timeout) ends with an empty
    -- flush and no end: nginx has timed the upstream by then (before,
    -- the variable says "-"), and sends no more. The client gets the
    -- error frame first.
    if not c.ended and (eof or (chunk == "" and ngx.var.upstream_response_time ~= "-")) then
      stream_events(c, { { type = "error", status = 502, message = "upstream " .. c.p.name .. ": " .. BROKE } }, out)
      ngx.arg[2] = true -- the client's stream ends whole (its last chunk), after the error
    end
    ngx.arg[1] = table.concat(out)
    return
  end
  c.buf[#c.buf + 1] = chunk
  if not eof then
    ngx.arg[1] = nil
    return
  end
  local text = table.concat(c.buf)
  local a, creq = c.plan.a, c.creq
  if c.mode == "error" then
    local ev = wire.error_answer(a, creq, ngx.status, text)
    local e = errors.new(ev.status, secrets_safe(ev.message), { type = ev.error_type, code = ev.code, param = ev.param })
    ngx.arg[1] = errors.body(c.fd.client, e)
    return
  end
  -- a whole answer to a stream request: the client's encoder makes a stream of it
  stream_events(c, wire.adapt(c.p.name, a.response, json.decode(json.utf8(text)), creq), out)
  if not c.ended then stream_events(c, { { type = "error", status = 502, message = BROKE } }, out) end
  ngx.arg[1] = table.concat(out)
end

return M
