-- One request's way from a provider's canonical events to the client:
-- the front door's encoder, the C writer with backpressure, failures in the
-- client's format before and after the first byte, and cancellation when the
-- client goes away.
local core = require "moongate.core"
local http = require "moongate.http"
local errors = require "moongate.errors"
local log = require "moongate.log"

local M = {}
local Exchange = {}
Exchange.__index = Exchange

--- run(req, frontdoor, creq, route) -> exchange
-- route.chain[1].provider serves it (fallbacks come with the upstream issue).
function M.run(req, frontdoor, creq, route, registry)
  local x = setmetatable({
    req = req, fd = frontdoor, creq = creq, route = route,
    done = false, registry = registry,
  }, Exchange)
  if creq.stream then
    x.enc = frontdoor.stream_encoder(creq)
    x.stream = http.stream(req, "sse")
  else
    x.col = frontdoor.collector(creq)
  end
  if registry then registry[req.h] = x end
  core._on_close(req.h, function() x:cancel("client closed") end)

  local sink = {}
  function sink.emit(ev) return x:emit(ev) end
  function sink.on_drain(fn) return x.stream and x.stream:on_drain(fn) end
  function sink.closed() return x.done end
  function sink.guard(fn)
    return function(...)
      local ok, err = xpcall(fn, debug.traceback, ...)
      if not ok then
        log.error("provider %s: %s", route.chain[1].name, err)
        x:fail(errors.new(500, "internal error in provider " .. route.chain[1].name))
      end
    end
  end
  x.sink = sink

  local provider = route.chain[1].provider
  creq.upstream_model = route.model
  x.job = provider:start(creq, sink)
  return x
end

function Exchange:finish()
  self.done = true
  if self.registry then self.registry[self.req.h] = nil end
end

--- emit(ev) -> more: false asks the provider to wait for on_drain
function Exchange:emit(ev)
  if self.done then return false end
  if ev.type == "error" then
    self:fail(errors.new(ev.status or 502, ev.message or "upstream error", { type = ev.error_type }))
    return false
  end
  if not self.stream then
    self.col:event(ev)
    if ev.type == "done" then
      self:finish()
      http.json(self.req, 200, self.col:result())
    end
    return true
  end
  if not self.stream.started then
    local ok = self.stream:start(200)
    if not ok then self:cancel("client closed"); return false end
  end
  local more = true
  local frames = self.enc:event(ev)
  for i = 1, #frames do
    local m = self.stream:send(frames[i])
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

--- fail(err): before the first byte an HTTP error, after it an in-format
-- error event and a clean end of the stream.
function Exchange:fail(err)
  if self.done then return end
  self:finish()
  if self.job then self.job.cancel() end
  if self.stream and self.stream.started then
    for _, frame in ipairs(self.enc:error(err)) do self.stream:send(frame) end
    self.stream:finish()
  else
    http.error(self.req, self.fd.client, err)
  end
end

function Exchange:cancel(why)
  if self.done then return end
  self:finish()
  log.debug("request cancelled: %s", why)
  if self.job then self.job.cancel() end
end

return M
