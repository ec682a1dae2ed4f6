-- The HTTP application: one per worker thread. Dispatches requests by method
-- and path to the front doors and the built-in endpoints.
local core = require "moongate.core"
local json = require "moongate.json"
local http = require "moongate.http"
local errors = require "moongate.errors"
local log = require "moongate.log"
local router = require "moongate.router"
local providers = require "moongate.providers"
local exchange = require "moongate.exchange"
local openai_chat = require "moongate.frontdoor.openai_chat"
local anthropic_messages = require "moongate.frontdoor.anthropic_messages"
local canonical = require "moongate.canonical"
local sockets = require "moongate.sockets"

local M = {}
local App = {}
App.__index = App

--- new(cfg, info) -> app; info: {worker = k, workers = n}
function M.new(cfg, info)
  local registry = providers.build(cfg)
  local self = setmetatable({
    cfg = cfg, info = info or {}, providers = registry,
    -- models the WS workers announce route to the built-in "workers" pool
    router = router.new(cfg, registry, { dynamic = function(model)
      if core._pool_serves(model) then return "workers" end
    end, dynamic_models = core._pool_models }),
    active = setmetatable({}, { __mode = "k" }), -- request handle -> exchange
    created = os.time(),
  }, App)
  self.sockets = sockets.new(self)
  self.routes = {
    ["GET /health"] = self.health,
    ["GET /stats"] = self.stats,
    ["GET /v1/models"] = self.models,
    ["POST /v1/chat/completions"] = self.chat,
    ["POST /v1/messages"] = self.messages,
    ["POST /v1/messages/count_tokens"] = self.count_tokens,
  }
  return self
end

local function normalize(path)
  -- clients configured with a base URL without /v1 reach the same endpoints
  if path:sub(1, 4) ~= "/v1/" and (path == "/models" or path:find("^/chat/") or path:find("^/models/")
      or path:find("^/messages")) then
    return "/v1" .. path
  end
  return path
end

function App:handle(req)
  local path = normalize(req.path)
  local client = errors.client_for_path(path)
  if req.body_error == "headers_too_large" then
    return http.error(req, client, errors.new(431, string.format(
      "Request header fields too large: the limit is %d bytes.", req.max_header_bytes),
      { code = "request_header_fields_too_large" }))
  end
  if req.body_error == "too_large" then
    return http.error(req, client, errors.new(413, string.format(
      "Request body too large: the limit is %d bytes.", req.max_body_bytes),
      { code = "request_too_large" }))
  end
  local fn = self.routes[req.method .. " " .. path]
  if not fn and req.method == "GET" and path:find("^/v1/models/.") then
    fn = self.model
  end
  if fn then return fn(self, req, path) end
  for key in pairs(self.routes) do
    if key:match("^%S+ (.*)$") == path then
      return http.error(req, client, errors.new(405, string.format(
        "Method %s is not allowed on %s.", req.method, path), { code = "method_not_allowed" }))
    end
  end
  if path == "/ws" or path:find("^/ws/[^/]+$") then
    return http.error(req, client, errors.new(426, string.format(
      "%s is a WebSocket endpoint: connect with an Upgrade: websocket request.", path),
      { code = "upgrade_required" }), { upgrade = "websocket" })
  end
  return http.error(req, client, errors.new(404, string.format(
    "Unknown request URL: %s %s. Please check the URL for typos.", req.method, req.path),
    { code = "unknown_url" }))
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

function App:health(req)
  local s = core._stats()
  return http.json(req, 200, json.encode_raw({
    status = "ok", version = core.version, uptime = math.floor(s.uptime * 1000) / 1000,
    workers = s.workers, thread = self.info.worker, ws_pool = ws_pool(),
  }))
end

function App:stats(req)
  local s = core._stats()
  s.ws_pool = ws_pool()
  return http.json(req, 200, json.encode_raw(s))
end

-- One shape both SDKs accept: OpenAI's keys and Anthropic's side by side.
local function model_object(self, id)
  return { id = id, object = "model", created = self.created, owned_by = "moongate",
    type = "model", display_name = id, created_at = os.date("!%Y-%m-%dT%H:%M:%SZ", self.created) }
end

function App:models(req)
  local data = {}
  for i, id in ipairs(self.router:models()) do data[i] = model_object(self, id) end
  return http.json(req, 200, { object = "list", data = data, has_more = false,
    first_id = data[1] and data[1].id or json.null, last_id = data[#data] and data[#data].id or json.null })
end

function App:model(req, path)
  -- the SDKs percent-encode the id ("org/model" comes as org%2Fmodel)
  local id = path:sub(#"/v1/models/" + 1):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  if self.router:resolve(id) then return http.json(req, 200, model_object(self, id)) end
  -- both SDKs ask this path; Anthropic's says which API it speaks
  local client = req.headers and req.headers["anthropic-version"] and "anthropic" or "openai"
  return http.error(req, client, errors.new(404, string.format(
    "The model `%s` does not exist or you do not have access to it.", id), { code = "model_not_found" }))
end

function App:chat(req)
  local creq, err = openai_chat.decode(req.body, req.headers)
  if not creq then return http.error(req, "openai", err) end
  local route, rerr = self.router:resolve(creq.model)
  if not route then return http.error(req, "openai", rerr) end
  log.debug("chat model=%s provider=%s stream=%s", creq.model, route.chain[1].name, tostring(creq.stream))
  exchange.run(req, openai_chat, creq, route, self.active)
end

function App:messages(req)
  local creq, err = anthropic_messages.decode(req.body, req.headers)
  if not creq then return http.error(req, "anthropic", err) end
  local route, rerr = self.router:resolve(creq.model)
  if not route then
    rerr.type = "not_found_error"
    return http.error(req, "anthropic", rerr)
  end
  log.debug("messages model=%s provider=%s stream=%s", creq.model, route.chain[1].name, tostring(creq.stream))
  exchange.run(req, anthropic_messages, creq, route, self.active)
end

--- count_tokens: the first provider's own counter when it has one
-- (count_tokens(creq, cb)), else an estimate of 4 bytes a token.
function App:count_tokens(req)
  local creq, err = anthropic_messages.decode(req.body, req.headers, { count_only = true })
  if not creq then return http.error(req, "anthropic", err) end
  local route, rerr = self.router:resolve(creq.model)
  if not route then return http.error(req, "anthropic", rerr) end -- as /v1/messages would
  local p = route.chain[1].provider
  if p and p.count_tokens then
    creq.upstream_model = route.model
    return p:count_tokens(creq, function(n, cerr)
      if n then return http.json(req, 200, { input_tokens = n }) end
      http.error(req, "anthropic", cerr)
    end)
  end
  return http.json(req, 200, { input_tokens = canonical.prompt_tokens(creq) })
end

function App:shutdown()
  for _, x in pairs(self.active) do x:cancel("shutdown") end
end

return M
