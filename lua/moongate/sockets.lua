-- The WebSocket side of the app, one per worker thread. C calls, through the
-- worker's handler table:
--   open(h, path, query, headers) -> "worker" | "chat" | nil, reason, status
--   message(h, text), close(h)
-- /ws is the worker pool (AIProxy protocol; the pool itself is C's, see
-- src/pool.c), /ws/{client_id} a chat socket (AI WebSocket service
-- protocol) whose answers come from the router like any HTTP request's.
local core = require "moongate.core"
local json = require "moongate.json"
local log = require "moongate.log"
local keys = require "moongate.keys"
local exchange = require "moongate.exchange"
local ws_chat = require "moongate.frontdoor.ws_chat"
local router_mod = require "moongate.router"
local gate = require "moongate.gate"

local M = {}
local Sockets = {}
Sockets.__index = Sockets

--- new(app) -> sockets; uses app.cfg.websocket, app.router, app.active
function M.new(app)
  local ws = app.cfg.websocket or {}
  local origins
  if ws.allowed_origins then
    origins = {}
    for i, o in ipairs(ws.allowed_origins) do origins[i] = router_mod.glob_to_pattern(o) end
  end
  return setmetatable({ app = app, conf = ws, origins = origins, conns = {} }, Sockets)
end

local loopback = { localhost = true, ["127.0.0.1"] = true, ["[::1]"] = true }

--- host_guard(cfg) -> nil, or the server names a request's Host may give
-- when the gateway listens on loopback only (localhost, loopback addresses,
-- and cfg.server_names): the defence against DNS rebinding, where a page
-- from a name the attacker points at 127.0.0.1 reads the gateway as its own
-- origin. On any other address the Host is not looked at.
function M.host_guard(cfg)
  local config = require "moongate.config"
  local host = config.parse_listen(cfg.listen or "")
  if not host or not (host:find("^127%.") or host == "::1") then return nil end
  local names = { localhost = true }
  for _, n in ipairs(cfg.server_names or {}) do names[n:lower()] = true end
  return names
end

--- host_allowed(host, names) -> bool: a Host header (port and all) the
-- guard lets in; no guard, or no Host (HTTP/1.0: no browser), lets in any
function M.host_allowed(host, names)
  if not names or not host or host == "" then return true end
  local name = host:match("^%[([%x:]+)%]") or host:match("^([^:]+)")
  if not name then return false end
  name = name:lower()
  return names[name] == true or name == "::1" or name:find("^127%.%d+%.%d+%.%d+$") ~= nil
    or name:find("%.localhost$") ~= nil
end

--- origin_allowed(origin, patterns) -> bool
-- No Origin header (not a browser): allowed. Without a configured list, only
-- pages served from this machine (localhost, 127.0.0.1, [::1]) may connect.
function M.origin_allowed(origin, patterns)
  if not origin or origin == "" then return true end
  if not patterns then
    local host = origin:match("^https?://(%[[^%]]+%])") or origin:match("^https?://([^:/]+)")
    return host ~= nil and loopback[host:lower()] == true
  end
  for _, p in ipairs(patterns) do
    if origin:find(p) then return true end
  end
  return false
end

local function query_arg(query, name)
  for k, v in (query or ""):gmatch("([^&=]+)=([^&]*)") do
    if k == name then
      return (v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
    end
  end
end

local same = keys.same -- constant time over the expected token's length

-- a peer address on this machine (IPv4, IPv6, or IPv4 mapped into IPv6)
local function loopback_peer(peer)
  return type(peer) == "string" and (peer:find("^127%.") or peer == "::1" or peer:find("^::ffff:127%.")) ~= nil
end

--- open(h, path, query, headers, peer) -> kind | nil, why, status
function Sockets:open(h, path, query, headers, peer)
  path = path:gsub("^/v1/", "/")
  local kind, client_id
  if path == "/ws" or path == "/ws/" then
    kind = "worker"
  else
    client_id = path:match("^/ws/([%w%-_%.~]+)$")
    if not client_id then return nil, "no WebSocket endpoint at " .. path, 404 end
    kind = "chat"
  end
  if not M.origin_allowed(headers.origin, self.origins) then
    return nil, "origin " .. tostring(headers.origin) .. " is not allowed", 403
  end
  if not M.host_allowed(headers.host, self.app and self.app.host_names) then
    return nil, "Host " .. tostring(headers.host) .. " is not a name of this gateway (server_names)", 403
  end
  if kind == "worker" and not self.conf.worker_token and peer and not loopback_peer(peer) then
    -- with no token, only a worker on this machine may join the pool
    return nil, "pool workers from other machines need websocket.worker_token", 403
  end
  if kind == "worker" and self.conf.worker_token then
    local auth = headers.authorization
    local token = (auth and auth:match("^[Bb]earer%s+(.+)$")) or query_arg(query, "token")
    if not same(token, self.conf.worker_token) then return nil, "worker token missing or wrong", 401 end
  end
  local inbound
  if not (kind == "worker" and self.conf.worker_token) and self.app and self.app.keys then
    -- with inbound keys, a socket wants one too (a browser, which cannot
    -- set headers on a WebSocket, gives it as ?key=); its answers are held
    -- to that key's models, rate limits and place in the gate
    local k = keys.presented(headers) or query_arg(query, "key")
    inbound = k and keys.check(self.app.keys, { ["x-api-key"] = k })
    if not inbound then
      return nil, "API key missing or wrong: send it as Authorization: Bearer, x-api-key or ?key=", 401
    end
  end
  self.conns[h] = { kind = kind, client_id = client_id, answers = {}, inflight = 0, inbound = inbound,
    peer = peer ~= "" and peer or nil }
  log.debug("WebSocket %s open (%s)", tostring(h), kind)
  return kind
end

local function send(h, t, fields)
  return core._ws_send(h, ws_chat.message(t, nil, fields))
end

-- worker pool ----------------------------------------------------------------

local function string_list(v)
  if type(v) == "string" then return { v } end
  if type(v) ~= "table" then return nil end
  local out = {}
  for _, s in ipairs(v) do
    if type(s) == "string" and s ~= "" then out[#out + 1] = s end
  end
  return out
end

local final = { completion_response = true, completion_error = true }

-- Warnings about a worker's messages for unknown request ids: at most
-- WARN_BURST per WARN_WINDOW_MS per worker, then one line saying how many
-- were left out, so no worker can flood the log.
local WARN_BURST, WARN_WINDOW_MS = 5, 10000

local function warn_unknown(h, conn, t, id)
  local now = require("luv").now()
  local rl = conn.unknown_ids
  if not rl or now - rl.since >= WARN_WINDOW_MS then
    if rl and rl.dropped > 0 then
      log.warn("WS worker %s: %d more messages for unknown requests dropped without a warning", tostring(h),
        rl.dropped)
    end
    rl = { since = now, n = 0, dropped = 0 }
    conn.unknown_ids = rl
  end
  rl.n = rl.n + 1
  if rl.n > WARN_BURST then
    rl.dropped = rl.dropped + 1
    return
  end
  log.warn("WS worker %s: %s for unknown or finished request %s dropped%s", tostring(h), t,
    (id:sub(1, 100):gsub("%c", "?")), rl.n == WARN_BURST and " (more such warnings held back for a while)" or "")
end

function Sockets:worker_message(h, m, text)
  local t = m.type
  if t == "completion_chunk" or final[t] then
    local id = m.request_id
    if type(id) ~= "string" then
      return send(h, "error", { message = t .. " needs a request_id string" })
    end
    if not core._pool_deliver(h, id, text, final[t] or false) then
      warn_unknown(h, self.conns[h], t, id)
    end
  elseif t == "client_ready" then
    core._pool_ready(h, {
      models = string_list(m.models), name = type(m.name) == "string" and m.name or nil,
      capacity = math.floor(math.max(0, math.min(tonumber(m.capacity) or 0, 1000))),
    })
  elseif t == "heartbeat_response" or t == "pong" then
    return -- C noted the time it arrived
  elseif t == "ping" or t == "heartbeat" then
    send(h, t == "ping" and "pong" or "heartbeat_response")
  else
    send(h, "error", { message = "unknown message type: " .. tostring(t) })
  end
end

-- chat sockets ---------------------------------------------------------------

local ChatClient = {}
ChatClient.__index = ChatClient

local ChatStream = {}
ChatStream.__index = ChatStream

function ChatClient:stream() return setmetatable({ h = self.h, conn = self.conn, started = false }, ChatStream) end
function ChatClient:json() error("chat sockets always stream") end
function ChatClient:error(_, err)
  return core._ws_send(self.h, ws_chat.message("error", self.id, { message = err.message, status = err.status }))
end
function ChatClient:on_close(fn) self.conn.answers[self.key] = fn end

function ChatStream:start() self.started = true; return true end
function ChatStream:send(data) return core._ws_send(self.h, data) end
-- A socket has one drain callback, and several answers may wait on it at
-- once (each a provider held back while the client reads): they wait in the
-- connection's list, and each runs once when the socket drains. (One
-- answer's callback replacing another's left that answer stalled for good,
-- its end never sent.)
local function drained(conn)
  return function(h)
    local waiting = conn.drain_waiting
    conn.drain_waiting = nil
    for _, fn in ipairs(waiting or {}) do
      local ok, err = pcall(fn, h)
      if not ok then log.error("chat socket: %s", tostring(err)) end
    end
  end
end
function ChatStream:on_drain(fn)
  local conn = self.conn
  local waiting = conn.drain_waiting
  if waiting then
    waiting[#waiting + 1] = fn
    return true
  end
  local ok, err = core._ws_on_drain(self.h, drained(conn))
  if ok then conn.drain_waiting = { fn } end
  return ok, err
end
function ChatStream:finish() return true end

function Sockets:chat_message(h, conn, m)
  local app = self.app
  local creq, err = ws_chat.decode(m, { model = self.conf.chat_model or "echo" })
  if not creq then
    return core._ws_send(h, ws_chat.message("error", m.id ~= nil and tostring(m.id) or nil,
      { message = err.message, status = err.status }))
  end
  -- a bound on the answers one socket has under way: past it a message
  -- is refused, not queued, so one client cannot hold every upstream
  local cap = self.conf.max_inflight or 8
  if conn.inflight >= cap then
    return core._ws_send(h, ws_chat.message("error", creq.answer_id, { status = 429,
      message = string.format("this socket already has %d answers under way (websocket.max_inflight)", cap) }))
  end
  local route, rerr = app.router:resolve(creq.model)
  if not route then
    return core._ws_send(h, ws_chat.message("error", creq.answer_id, { message = rerr.message, status = rerr.status }))
  end
  -- as an HTTP request is: the key's models, its rate limits, the gate
  local inbound = conn.inbound
  if conn.revoked then
    return core._ws_send(h, ws_chat.message("error", creq.answer_id, { status = 401,
      message = "the key this socket opened with is no longer accepted (the config changed)" }))
  end
  local function refuse(e) return core._ws_send(h, ws_chat.message("error", creq.answer_id,
    { message = e.message, status = e.status, retry_after = e.retry_after })) end
  if inbound and not keys.allows(inbound, creq.model) then
    return refuse({ status = 403, message = string.format("The key %s may not use the model `%s`.", inbound.name,
      tostring(creq.model)) })
  end
  local limits = inbound and inbound.limits
  local rerr = gate.take_rate(inbound)
  if rerr then return refuse(rerr) end
  if not app.gate then return self:chat_answer(h, conn, creq, route, limits) end
  local gkey, wait = inbound and inbound.name or conn.peer or "-", {}
  local abort = gate.enter(app.gate, nil, route, gkey, function(release, gerr, groute)
    wait.done = true
    conn.answers[wait] = nil
    if not release then return refuse(gerr) end
    local conn_now = self.conns[h]
    if not conn_now then return release() end -- the socket closed while it waited
    self:chat_answer(h, conn_now, creq, groute, limits, release, gkey)
  end)
  -- the socket closes while the answer waits: out of the queue
  if not wait.done and self.conns[h] then conn.answers[wait] = abort end
end

-- one chat answer through the exchange; release (the gate's permits, if
-- any) goes back when it ends, however it ends
function Sockets:chat_answer(h, conn, creq, route, limits, release, gkey)
  local app = self.app
  local key = {}
  local client = setmetatable({ h = h, id = creq.answer_id, conn = conn, key = key }, ChatClient)
  local spend = limits and function(tokens) core._rate_spend(conn.inbound.name, limits, tokens) end
  local ok, x = xpcall(exchange.run, debug.traceback, nil, ws_chat, creq, route, app.active, client, spend)
  if not ok then -- a provider raised while starting (a script stopped by script_timeout_ms included)
    if release then release() end
    log.error("chat socket: %s", tostring(x))
    local started = app.active[key]
    conn.answers[key] = nil
    if started and not started.done then
      return started:fail(require("moongate.errors").new(500, "internal error"))
    end
    return core._ws_send(h, ws_chat.message("error", creq.answer_id, { status = 500, message = "internal error" }))
  end
  -- the permits held, traded at a fallback to a provider with its own gate
  if release then release = gate.permits(app.gate, route, gkey, release, x).release end
  local function ended()
    if release then release() end
  end
  -- the answer is done: forget its close hook; one still under way holds
  -- a place until it finishes
  if x.done then
    conn.answers[key] = nil
    ended()
  else
    -- counted process-wide too: the daemon's shutdown waits for it as for
    -- an HTTP request (server.c, running_requests)
    conn.inflight = conn.inflight + 1
    core._ws_answers(1)
    local counted = true
    x.on_finish = function()
      conn.answers[key] = nil
      ended()
      if counted then
        counted = false
        conn.inflight = conn.inflight - 1
        core._ws_answers(-1)
      end
    end
  end
end

function Sockets:message(h, text)
  local conn = self.conns[h]
  if not conn then return end
  local m = json.decode(text)
  if type(m) ~= "table" or type(m.type) ~= "string" then
    return send(h, "error", { message = "messages are JSON objects with a \"type\"" })
  end
  if conn.kind == "worker" then return self:worker_message(h, m, text) end
  if m.type == "chat_message" then return self:chat_message(h, conn, m) end
  if m.type == "ping" then return send(h, "pong", { timestamp = m.timestamp }) end
  send(h, "error", { message = "unknown message type: " .. m.type })
end

--- close(h): the socket is gone; a chat socket's answers are cancelled
--- export(h) -> text | nil: the connection moves to a newer Lua state
-- (hot reload) unless something of it is under way here (a chat answer)
function Sockets:export(h)
  local conn = self.conns[h]
  if not conn or conn.inflight > 0 or next(conn.answers) then return nil end
  self.conns[h] = nil
  return json.encode({ kind = conn.kind, client_id = conn.client_id, key = conn.inbound and conn.inbound.name,
    peer = conn.peer })
end

--- import(h, text): a connection an older state exported
function Sockets:import(h, text)
  local t = json.decode(text) or {}
  local inbound -- the key it opened with, by name, in this state's keys
  for _, e in ipairs(self.app and self.app.keys or {}) do
    if e.name == t.key then inbound = e break end
  end
  self.conns[h] = { kind = t.kind, client_id = t.client_id, answers = {}, inflight = 0, inbound = inbound, peer = t.peer,
    -- its key is gone from the config (or keys are on now): nothing more is answered
    revoked = (t.key and not inbound) or (not t.key and t.kind ~= "worker" and self.app and self.app.keys ~= nil) or nil }
end

function Sockets:close(h)
  local conn = self.conns[h]
  if not conn then return end
  self.conns[h] = nil
  for _, cancel in pairs(conn.answers) do cancel() end
  log.debug("WebSocket %s closed", tostring(h))
end

return M
