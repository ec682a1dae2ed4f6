-- The HTTP application: one per worker thread. Dispatches requests by method
-- and path to the front doors and the built-in endpoints; HEAD is GET without
-- the body (C drops it), OPTIONS answers CORS preflights. Which Origins may
-- call the gateway is decided here (origin_allowed, the rule the WebSocket
-- endpoints use), once per request, for C, which puts the CORS headers on
-- every answer to an allowed one, its own errors included; a request from
-- any other Origin gets 403 and nothing else.
local core = require "moongate.core"
local json = require "moongate.json"
local http = require "moongate.http"
local errors = require "moongate.errors"
local router = require "moongate.router"
local providers = require "moongate.providers"
local exchange = require "moongate.exchange"
local openai_chat = require "moongate.frontdoor.openai_chat"
local anthropic_messages = require "moongate.frontdoor.anthropic_messages"
local openai_responses = require "moongate.frontdoor.openai_responses"
local openai_completions = require "moongate.frontdoor.openai_completions"
local openai_embeddings = require "moongate.frontdoor.openai_embeddings"
local ollama = require "moongate.frontdoor.ollama"
local canonical = require "moongate.canonical"
local sockets = require "moongate.sockets"
local store = require "moongate.store"
local keys = require "moongate.keys"
local log = require "moongate.log"
local gate = require "moongate.gate"
local fast = require "moongate.fast"

local M = {}
local App = {}
App.__index = App

-- The front doors served, each a module that describes itself (routes,
-- path prefixes, stream kind, error shape): a new one is one more line here.
M.frontdoors = { openai_chat, anthropic_messages, openai_responses, openai_completions, openai_embeddings, ollama }

-- App method serving a front door's main route (made once per front door)
local servers = {}
local function serve_with(fd)
  servers[fd] = servers[fd] or function(self, req) return self:serve(fd, req) end
  return servers[fd]
end

--- new(cfg, info) -> app; info: {worker = k, workers = n}
function M.new(cfg, info)
  local registry = providers.build(cfg)
  local self = setmetatable({
    cfg = cfg, info = info or {}, providers = registry,
    -- models the WS workers announce route to the built-in "workers" pool,
    -- for names no config route matches (router.lua)
    router = router.new(cfg, registry, { dynamic = function(model)
      if core._pool_serves(model) then return "workers" end
    end, dynamic_models = core._pool_models }),
    active = setmetatable({}, { __mode = "k" }), -- request handle -> exchange
    created = os.time(),
    http = http, -- the answer writer the front doors' own routes use (pure modules require no host)
  }, App)
  self.host_names = sockets.host_guard(cfg) -- on loopback: the Hosts let in
  self.keys = keys.load(cfg, os.getenv) -- inbound keys: nil, none asked for
  self.gate = gate.policy(cfg) -- nil: nothing limited
  exchange.on_limited = function(name, retry_after) gate.cool(self.gate, name, retry_after or 1) end
  -- the fast path (fast.lua, src/fast.c): chat requests passed through
  -- whole, served in C on the routes published below (self:serve)
  if core._fast_config then
    self.fast = fast.config(self, openai_chat, log.enabled("debug") and "debug" or nil)
    core._fast_config(self.fast)
    self.fast_routes, self.fast_n = {}, 0
  end
  self.sockets = sockets.new(self)
  self.store = store.new() -- stored responses, shared by the worker threads
  local cors = cfg.cors and cfg.cors.allowed_origins
  if cors then -- else the default: pages served from this machine
    self.cors_origins = {}
    for i, o in ipairs(cors) do self.cors_origins[i] = router.glob_to_pattern(o) end
  end
  self.routes = {
    ["GET /"] = self.root,
    ["GET /health"] = self.health,
    ["GET /stats"] = self.stats,
    ["GET /v1/models"] = self.models,
    ["GET /openapi.json"] = self.openapi,
    ["GET /docs"] = self.docs,
    ["GET /metrics"] = self.metrics,
  }
  -- each front door's routes, as it describes them; the request headers
  -- they read, for the TLS transport to copy
  local names = { "x-request-id", "x-stainless-retry-count", "x-stainless-timeout", "x-api-key", "x-goog-api-key",
    "openai-organization", "openai-project", "openai-beta" }
  -- a route's handler: "serve" (the shared one), an App method's name, or
  -- the front door's own function(app, req, path, arg); a key ending in
  -- "/*" takes one more path segment, handed over as arg
  self.wild = {}
  for _, fd in ipairs(M.frontdoors) do
    for key, method in pairs(fd.routes) do
      local fn = method == "serve" and serve_with(fd) or App[method] or method
      assert(type(fn) == "function", "front door route " .. key .. ": no handler " .. tostring(method))
      local m, prefix = key:match("^(%S+) (.-/)%*$")
      if prefix then self.wild[#self.wild + 1] = { method = m, prefix = prefix, fn = fn } else self.routes[key] = fn end
    end
    for _, h in ipairs(fd.request_headers or {}) do names[#names + 1] = h end
  end
  -- each once: the TLS transport copies a header once per time it is named
  -- (twice named, "x-api-key: k, k": every TLS request's key refused)
  local seen, uniq = {}, {}
  for _, n in ipairs(names) do
    local l = n:lower()
    if not seen[l] then seen[l], uniq[#uniq + 1] = true, n end
  end
  if core._request_headers then core._request_headers(uniq) end
  return self
end

-- the path prefixes (after /v1) that clients also reach without /v1
local unprefixed = { "/models/" }
for _, fd in ipairs(M.frontdoors) do
  for _, p in ipairs(fd.prefixes or {}) do unprefixed[#unprefixed + 1] = p end
end

local function normalize(path)
  -- clients configured with a base URL without /v1 reach the same endpoints
  if path:sub(1, 4) == "/v1/" then return path end
  if path == "/models" then return "/v1" .. path end
  for i = 1, #unprefixed do
    local p = unprefixed[i]
    if path:sub(1, #p) == p then return "/v1" .. path end
  end
  return path
end

--- origin_allowed(origin) -> bool: may a page from this Origin read our
-- answers (CORS)? cors.allowed_origins (globs, "*" for any), or by default
-- pages served from this machine. C asks once per request with an Origin.
function App:origin_allowed(origin)
  return sockets.origin_allowed(origin, self.cors_origins)
end

local preflight_default_headers = "authorization, x-api-key, anthropic-version, anthropic-beta, " ..
  "anthropic-dangerous-direct-browser-access, content-type, openai-organization, openai-project, openai-beta"
local methods = "GET, HEAD, POST, DELETE, OPTIONS"

local shown = errors.shown -- bytes a client sent, quoted in an error message

--- origin_refused(req, client): the 403 to a request from a page that may
-- not call the gateway (C decided: req.origin_allowed == false), whatever
-- it asked; nothing else of the request is looked at. A request with more
-- than one Origin header is refused too.
local function origin_refused(req, client)
  local message
  if req.origin_duplicate then
    message = "A request may carry one Origin header, naming one origin: this one names several, so it is refused."
  else
    message = string.format("Origin %s is not allowed to call this gateway: add it to cors.allowed_origins in the config.",
      shown(req.headers.origin, 200))
  end
  return http.error(req, client, errors.new(403, message, { code = "origin_not_allowed" }))
end

--- preflight: OPTIONS. From an allowed Origin, 204 with what it may send
-- (C adds access-control-allow-origin); without Origin (not a preflight),
-- 204 with Allow. (From another Origin, handle() has answered 403.)
function App:preflight(req, client)
  local headers = { allow = methods }
  if req.origin_allowed then
    -- what the browser asks for, when it is a plain list of header names
    local asked = req.headers["access-control-request-headers"]
    if not (asked and #asked <= 2048 and asked:find("^[%w%-_, ]+$")) then asked = preflight_default_headers end
    headers["access-control-allow-methods"] = methods
    headers["access-control-allow-headers"] = asked
    headers["access-control-max-age"] = "86400"
  end
  return http.empty(req, 204, headers)
end

-- the request bodies C could not take: too large, or in an encoding it could
-- not undo (req.body_error)
local function body_refused(req)
  local e = req.body_error
  if e == "too_large" or e == "decoded_too_large" then
    return errors.new(413, string.format("Request body too large%s: the limit is %d bytes.",
      e == "decoded_too_large" and " once decoded" or "", req.max_body_bytes), { code = "request_too_large" })
  elseif e == "decoded_ratio" then
    return errors.new(413, string.format("Request body refused: it decodes to more than %d times the size it was "
      .. "sent in (plus %g MiB), as a compression bomb does. Send it less compressed, or as it is.",
      req.max_ratio, req.ratio_slack / 1048576), { code = "request_too_large" })
  elseif e == "bad_encoding" then
    return errors.new(400, string.format("The request body could not be decoded as Content-Encoding %s: the data is corrupt or cut short.",
      shown(req.headers["content-encoding"] or "?", 64)), { code = "invalid_content_encoding" })
  elseif e == "unsupported_encoding" then
    return errors.new(415, string.format("Content-Encoding %s is not supported: send the body as it is, or as gzip, deflate or zstd.",
      shown(req.content_coding, 40)), { code = "unsupported_content_encoding" })
  elseif e == "too_many_codings" then
    return errors.new(415, string.format("Content-Encoding lists more than %d codings to undo: send the body as it is, "
      .. "or compressed once.", req.max_codings), { code = "unsupported_content_encoding" })
  end
  return errors.new(400, "The request body could not be read.")
end

-- segment(path, prefix) -> the one path segment after prefix, or nil
local function segment(path, prefix)
  if path:sub(1, #prefix) ~= prefix or #path == #prefix then return nil end
  local arg = path:sub(#prefix + 1)
  if not arg:find("/", 1, true) then return arg end
end

-- the paths that need no inbound key
-- (/docs is a static page a browser opens, which cannot send a key; it
-- asks for one and sends it with its fetch of /openapi.json, which needs it)
local open_paths = { ["/health"] = true, ["/"] = true, ["/docs"] = true }

function App:handle(req)
  local path = normalize(req.path)
  local client = errors.client_for_path(path)
  if req.origin_allowed == false then return origin_refused(req, client) end
  if not sockets.host_allowed(req.headers and req.headers.host, self.host_names) then
    return http.error(req, client, errors.new(403, string.format("Host %s is not a name of this gateway: it listens "
      .. "on loopback, where only localhost and loopback addresses are let in (a defence against DNS rebinding); "
      .. "add the name to server_names in the config.", shown(req.headers.host, 200)), { code = "host_not_allowed" }))
  end
  -- with inbound keys, all but /health, / and CORS preflights want one
  if self.keys and not open_paths[path] and req.method ~= "OPTIONS" then
    local entry = keys.check(self.keys, req.headers)
    if not entry then
      return http.error(req, client, errors.new(401, keys.presented(req.headers)
        and "Invalid API key: it is not one of this gateway's keys."
        or "Missing API key: send it as Authorization: Bearer, x-api-key or x-goog-api-key.",
        { code = "invalid_api_key" }))
    end
    req.inbound = entry
    http.note(req, nil, nil, nil, entry.name)
  end
  if req.body_error == "headers_too_large" then
    return http.error(req, client, errors.new(431, string.format(
      "Request header fields too large: the limit is %d bytes.", req.max_header_bytes),
      { code = "request_header_fields_too_large" }))
  end
  if req.body_error then return http.error(req, client, body_refused(req)) end
  local method = req.method
  if method == "OPTIONS" then return self:preflight(req, client) end
  if method == "HEAD" then method = "GET" end -- the same answer; C sends no body
  local fn = self.routes[method .. " " .. path]
  if not fn and method == "GET" and path:find("^/v1/models/.") then
    fn = self.model
  end
  if fn then return fn(self, req, path) end
  for _, w in ipairs(self.wild) do
    local arg = w.method == method and segment(path, w.prefix)
    if arg then return w.fn(self, req, path, arg) end
  end
  -- a path served by other methods: 405, with the methods it takes (Allow)
  local allowed = {}
  for key in pairs(self.routes) do
    local m, p = key:match("^(%S+) (.*)$")
    if p == path then allowed[#allowed + 1] = m end
  end
  for _, w in ipairs(self.wild) do
    if segment(path, w.prefix) then allowed[#allowed + 1] = w.method end
  end
  if #allowed > 0 then
    for i = 1, #allowed do if allowed[i] == "GET" then allowed[#allowed + 1] = "HEAD"; break end end
    allowed[#allowed + 1] = "OPTIONS"
    table.sort(allowed)
    return http.error(req, client, errors.new(405, string.format(
      "Method %s is not allowed on %s.", req.method, shown(req.path, 300)), { code = "method_not_allowed" }),
      { allow = table.concat(allowed, ", ") })
  end
  if path == "/ws" or path:find("^/ws/[^/]+$") then
    return http.error(req, client, errors.new(426, string.format(
      "%s is a WebSocket endpoint: connect with an Upgrade: websocket request.", shown(path, 300)),
      { code = "upgrade_required" }), { upgrade = "websocket" })
  end
  return http.error(req, client, errors.new(404, string.format(
    "Unknown request URL: %s %s. Please check the URL for typos.", req.method, shown(req.path, 300)),
    { code = "unknown_url" }))
end

--- error_body(path, status, message) -> JSON text: an error C answers
-- itself (a malformed request, a timeout), in the shape of the front door
-- whose path it is
function App:error_body(path, status, message)
  return errors.body(errors.client_for_path(normalize(path)), errors.new(status, message))
end

--- on_error(req, message): a Lua error escaped handle(); end the request in
-- the client's format (the traceback is already in the log).
function App:on_error(req, message)
  local err = errors.new(500, "The server had an error while processing your request.")
  local x = self.active[req.h]
  if x then return x:fail(err) end
  return http.error(req, errors.client_for_path(normalize(req.path)), err)
end

-- the WS worker pool as /health and /stats show it
local function ws_pool()
  local p = core._pool_state()
  for _, w in ipairs(p.workers) do
    if #w.models == 0 then w.models = json.empty_array end
  end
  if #p.workers == 0 then p.workers = json.empty_array end
  return p
end

-- GET /: what this is, for probes and people (Claude Code sends HEAD / at start)
function App:root(req)
  return http.json(req, 200, {
    name = "moongate", version = core.version,
    links = {
      health = "/health", stats = "/stats", models = "/v1/models",
      chat_completions = "/v1/chat/completions", messages = "/v1/messages", responses = "/v1/responses",
      completions = "/v1/completions", embeddings = "/v1/embeddings",
      count_tokens = "/v1/messages/count_tokens", websocket = "/ws",
      ollama_chat = "/api/chat", ollama_generate = "/api/generate", ollama_tags = "/api/tags",
    },
  })
end

function App:health(req)
  local s = core._stats()
  return http.json(req, 200, json.encode_raw({
    status = "ok", version = core.version, auth = self.keys and "keys" or "none", uptime = math.floor(s.uptime * 1000) / 1000,
    workers = s.workers, thread = self.info.worker, ws_pool = ws_pool(),
    reload = self:reload_state(),
  }))
end

-- /health's and /stats' reload: the last reload's outcome as this worker
-- thread saw it, and its live Lua states (more than 1 while a retired one
-- finishes what it serves)
function App:reload_state()
  local r = {}
  for k, v in pairs(self.info.reload or { ok = true }) do r[k] = v end
  r.lua_states = core._lua_states and core._lua_states() or nil
  return r
end

function App:stats(req)
  local s = core._stats()
  s.ws_pool = ws_pool()
  s.response_store = self.store:stats()
  s.reload = self:reload_state()
  s.gate = core._gate_state and core._gate_state() or nil -- permits, queues and waits, every thread's
  s.rate = core._rate_state and core._rate_state() or nil -- per key name: admitted, refused, tokens
  -- this worker thread's fast path: routes kept, requests served in C and handed to Lua
  s.fast_path = core._fast_state and core._fast_state() or nil
  -- the pools of accounts and keys (names and counts, never a credential),
  -- as this worker thread sees them
  local pools, lists = {}, {}
  for name, p in pairs(self.providers) do
    local st = p.state and p:state()
    if st then pools[name] = st end
    -- the upstreams whose models are discovered: how many, how old, and
    -- whether the last try failed (an upstream that is down keeps its list)
    local d = p.discovery and p:discovery()
    if d then lists[name] = d end
  end
  if next(pools) then s.accounts = pools end
  if next(lists) then s.discovery = lists end
  return http.json(req, 200, json.encode_raw(s))
end

local function model_object(self, id) return router.model_object(id, self.created) end

function App:models(req)
  return http.json(req, 200, router.model_list(self.router:models(), self.created))
end

function App:model(req, path)
  -- the SDKs percent-encode the id ("org/model" comes as org%2Fmodel)
  local id = path:sub(#"/v1/models/" + 1):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  if self.router:resolve(id) then return http.json(req, 200, model_object(self, id)) end
  -- both SDKs ask this path; Anthropic's says which API it speaks
  local client = req.headers and req.headers["anthropic-version"] and "anthropic" or "openai"
  return http.error(req, client, errors.new(404, string.format(
    "The model `%s` does not exist or you do not have access to it.", shown(id, 200)), { code = "model_not_found" }))
end

-- Runs the exchange and notes, for the access log, the model and the
-- provider that answered (the first of the chain, or the one a fallback
-- reached: the exchange notes the provider of a failure itself).
local function start(self, req, frontdoor, creq, route, release, key)
  local limits = req.inbound and req.inbound.limits
  -- the tokens the upstream reported count against the key's limits
  local spend = limits and function(tokens) core._rate_spend(req.inbound.name, limits, tokens) end
  local x = exchange.run(req, frontdoor, creq, route, self.active, nil, spend)
  -- the permits held, traded at a fallback to a provider with its own gate
  local held = release and gate.permits(self.gate, route, key, release, x).release or function() end
  local function finished()
    if #route.chain > 1 then http.note(req, nil, x:provider_name()) end
    held()
  end
  if x.done then finished() else x.on_finish = finished end
end

-- Through the gate (gate.lua: the permits the policy asks for, waiting
-- fairly between inbound keys) when one is configured, then the exchange;
-- the permits go back when it ends.
local function run(self, req, frontdoor, creq, route)
  http.note(req, creq.model, route.chain[1].name)
  local lim = req.inbound and req.inbound.limits
  -- tokens count against these: the upstream must say how many it used
  if lim and (lim.tpm or lim.tokens_per_day or lim.tokens_per_month) then creq.need_usage = true end
  local rerr = gate.take_rate(req.inbound) -- the key's requests and tokens per minute, its budgets
  if rerr then return http.error(req, frontdoor.client, rerr) end
  if not self.gate then return start(self, req, frontdoor, creq, route) end
  -- fair between key names; without keys, between client addresses
  local key = req.inbound and req.inbound.name or req.peer or "-"
  gate.enter(self.gate, req, route, key, function(release, err, groute)
    if not release then return http.error(req, frontdoor.client, err) end
    route = groute -- (the rest of the chain, when its first provider cools down)
    -- a provider that raises as it starts (a script stopped by the
    -- watchdog too) gives its permits back and gets its 500, whether the
    -- permit came at once or after a wait (then no C frame would answer)
    local ok, e = xpcall(start, debug.traceback, self, req, frontdoor, creq, route, release, key)
    if not ok then
      release()
      log.error("request handler: %s", tostring(e))
      local hok, herr = pcall(self.on_error, self, req, e)
      if not hok then log.error("request handler: %s", tostring(herr)) end
    end
  end)
end

-- a model name for the access log, when the body named one
local function model_of(creq) return type(creq) == "table" and type(creq.model) == "string" and creq.model or nil end

--- serve(fd, req): a front door's request: decode, route, exchange
-- A front door may look at the request with the gateway's services before
-- it is routed (fd.prepare(creq, app): the response store) and at the route
-- before it runs (fd.accepts(creq, route): an endpoint its provider lacks);
-- either answers an error to stop it.
function App:serve(fd, req)
  if req.top then json.prescanned(req.body, req.top) end -- (C's scan of it: src/fast.c)
  local creq, err = fd.decode(req.body, req.headers)
  if not creq then return http.error(req, fd.client, err) end
  if req.inbound and not keys.allows(req.inbound, creq.model) then
    http.note(req, model_of(creq))
    return http.error(req, fd.client, errors.new(403, string.format("The key %s may not use the model `%s`.",
      shown(req.inbound.name, 100), shown(creq.model, 200)), { code = "model_not_allowed" }))
  end
  if fd.prepare then
    local _, perr = errors.catch(fd.prepare, creq, self) -- a refusal, or the error it returns
    if perr then
      http.note(req, model_of(creq))
      return http.error(req, fd.client, perr)
    end
  end
  local route, rerr = self.router:resolve(creq.model)
  if not route then
    http.note(req, model_of(creq))
    return http.error(req, fd.client, rerr)
  end
  if fd.accepts then
    local aerr = fd.accepts(creq, route)
    if aerr then
      http.note(req, model_of(creq), route.chain[1].name)
      return http.error(req, fd.client, aerr)
    end
  end
  if req.first then
    creq.first_answer = req.first -- the fast path's answer: the first attempt's
  elseif self.fast and not self.fast_routes[creq.model] and fd == openai_chat then
    -- requests for this model that C can judge need no Lua from now on
    local f = fast.route(fd, creq, route)
    if f then
      if self.fast_n >= fast.MAX_ROUTES then self.fast_routes, self.fast_n = {}, 0 end
      self.fast_routes[creq.model], self.fast_n = true, self.fast_n + 1
      core._fast_route(creq.model, f)
    end
  end
  run(self, req, fd, creq, route)
end

--- count_tokens: the first provider's own counter when it has one
-- (count_tokens(creq, cb)), else an estimate of 4 bytes a token.
function App:count_tokens(req)
  local creq, err = anthropic_messages.decode(req.body, req.headers, { count_only = true })
  if not creq then return http.error(req, "anthropic", err) end
  http.note(req, model_of(creq))
  if req.inbound and not keys.allows(req.inbound, creq.model) then
    return http.error(req, "anthropic", errors.new(403, string.format("The key %s may not use the model `%s`.",
      shown(req.inbound.name, 100), shown(creq.model, 200)), { code = "model_not_allowed" }))
  end
  local rerr = gate.take_rate(req.inbound) -- a count may reach the upstream: a request of the key's
  if rerr then return http.error(req, "anthropic", rerr) end
  local route, rerr = self.router:resolve(creq.model)
  if not route then return http.error(req, "anthropic", rerr) end -- as /v1/messages would
  http.note(req, nil, route.chain[1].name)
  local p = route.chain[1].provider
  if p and p.count_tokens then
    creq.upstream_model = route.model
    return p:count_tokens(creq, function(n, cerr)
      if n then return http.json(req, 200, { input_tokens = n }) end
      http.error(req, "anthropic", cerr)
    end)
  end
  -- the estimate reads the canonical messages: what cannot be made of
  -- them is refused as a translation would be
  local ok, n = errors.catch(canonical.prompt_tokens, creq)
  if not ok then return http.error(req, "anthropic", n) end
  return http.json(req, 200, { input_tokens = n })
end

--- running() -> how many exchanges (streams and chat-socket answers) are under way
function App:running()
  local n = 0
  for _, x in pairs(self.active) do if not x.done then n = n + 1 end end
  return n
end

--- shutdown(): the daemon stops (its shutdown_timeout is over, or a second
-- signal came): what still runs ends with an error in its client's format
-- (an error event on a started stream), then background work stops.
function App:shutdown()
  gate.shutdown() -- first: a permit the stops below give back must start nothing
  local list = {}
  for _, x in pairs(self.active) do list[#list + 1] = x end
  for _, x in ipairs(list) do
    local ok, err = pcall(x.stop, x, "the gateway is shutting down")
    if not ok then log.error("shutdown: %s", tostring(err)) end
  end
  self:retire()
end

-- the pools of a provider (accounts or keys), by provider name
local function pools(self)
  local out = {}
  for name, p in pairs(self.providers) do
    local pool = type(p) == "table" and type(p.auth) == "table" and p.auth.pool
    if type(pool) == "table" and pool.export then out[name] = pool end
  end
  return out
end

--- carry() -> text: what a hot reload hands the new state (carried):
-- which members of the pools rest, and their counts. The rest of what must
-- outlive a reload (the WS pool, stored responses) is the host's already.
function App:carry()
  local out = {}
  for name, pool in pairs(pools(self)) do out[name] = pool:export() end
  return json.encode(out)
end

--- carried(text): an older state's carry(), for the providers of the same name
function App:carried(text)
  local t = json.decode(text or "")
  if type(t) ~= "table" then return end
  for name, pool in pairs(pools(self)) do pool:import(t[name]) end
end

--- retire(): a newer Lua state took over (a hot reload), or the daemon
-- stops: the providers' background work (model listings) ends; what this
-- state serves goes on to its end.
function App:retire()
  for _, p in pairs(self.providers) do
    if type(p) == "table" and p.stop then p:stop() end
  end
end

--- openapi: GET /openapi.json, the OpenAPI 3.1 document of every endpoint
-- this app serves (moongate.openapi, made from its route tables), made once
function App:openapi(req)
  if not self.openapi_text then
    local openapi = require "moongate.openapi"
    self.openapi_text = openapi.encode(openapi.document(self, { frontdoors = M.frontdoors, version = core.version }))
  end
  return http.json(req, 200, self.openapi_text, { ["cache-control"] = "no-cache" })
end

--- docs: GET /docs, one self-contained page that renders /openapi.json
-- (moongate.docs_page: nothing fetched from anywhere else, which its
-- content-security-policy enforces)
function App:docs(req)
  local page = require "moongate.docs_page"
  return core._respond(req.h, 200, "text/html; charset=utf-8", page.html,
    { ["cache-control"] = "no-cache", ["content-security-policy"] = page.csp })
end

--- metrics: GET /metrics, the Prometheus text format (moongate.metrics,
-- docs/METRICS.md); the same key policy as /stats
function App:metrics(req)
  local metrics = require "moongate.metrics"
  return core._respond(req.h, 200, metrics.content_type, metrics.text(), { ["cache-control"] = "no-store" })
end

return M
