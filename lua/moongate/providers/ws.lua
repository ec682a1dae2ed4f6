-- Provider kind "ws": the WS worker pool. Browser tabs and agents dial in on
-- /ws and serve models (docs/WEBSOCKETS.md; AIProxy): the request goes out as a
-- completion_request to the free worker that serves its model and was most
-- recently active (C's pool picks it and queues the request when none is
-- free); completion_chunk and completion_response messages come back as
-- canonical events. With no worker serving the model connected, the request
-- gets 503 at once, or waits websocket.wait_for_worker_ms for one; it
-- never goes to another provider (router.lua ends a chain at the pool).
--
-- Worker messages this provider understands, per request_id:
--   completion_chunk    {content?, reasoning?}           streamed pieces
--   completion_response {content?, finish_reason?, usage?} the end; content is
--                       the whole answer, used when no chunk came before it
--   completion_error    {message?, status?}               the worker failed
local json = require "moongate.json"
local log = require "moongate.log"
local canonical = require "moongate.canonical"
local openai = require "moongate.adapters.openai"
local pool = require "moongate.pool"

local M = {}
local P = {}
P.__index = P

function M.new(name, conf, cfg)
  local ws = cfg and cfg.websocket or {}
  return setmetatable({
    name = name, conf = conf, models = conf.models,
    retries = conf.retries or 0,
    queue = { queue_timeout_ms = ws.queue_timeout_ms or 30000, max_queue = ws.max_queue or 1000,
      -- how long a request waits for a worker serving its model to connect
      -- (0: answer 503 at once; the request never goes elsewhere)
      wait_for_worker_ms = ws.wait_for_worker_ms or 0 },
  }, P)
end

--- message(creq, id) -> the completion_request text for a worker | nil,
-- why JSON cannot carry it
function M.message(creq, id, conf)
  local wire = openai.request(creq, conf)
  return json.try_encode_raw({
    type = "completion_request", request_id = id, model = wire.model,
    messages = wire.messages, temperature = wire.temperature, top_p = wire.top_p,
    max_tokens = creq.max_tokens, stream = creq.stream and true or false,
    stop = wire.stop, tools = wire.tools, tool_choice = wire.tool_choice,
  })
end

local function usage_of(u, creq, text)
  if type(u) == "table" then
    local i = tonumber(u.input_tokens or u.prompt_tokens)
    local o = tonumber(u.output_tokens or u.completion_tokens)
    if i or o then return { type = "usage", input_tokens = i or 0, output_tokens = o or 0 } end
  end
  return { type = "usage", input_tokens = canonical.prompt_tokens(creq),
    output_tokens = canonical.estimate_tokens(text) }
end

function P:start(creq, sink)
  local id = canonical.random_id("wsreq_", 24)
  local model = creq.upstream_model or creq.model
  local started, chunks, text = false, 0, {}
  local job, timer = {}, nil
  local conf = self.conf

  local function stop_timer()
    if timer and not timer:is_closing() then timer:close() end
  end
  -- flow control: an emit the client's stream is behind on (false) holds
  -- the request, so C stops reading its worker's socket until the stream
  -- drains (pool.hold; docs/WEBSOCKETS.md); a slow client is not an idle
  -- worker, so the idle timer waits too
  local behind, held = false, false
  local function emit(ev)
    if sink.closed() then return false end
    local more = sink.emit(ev)
    if not more then behind = true end
    return more
  end
  local function begin()
    if not started then started = true; emit({ type = "start" }) end
  end
  local function fail(status, message, retryable, retry_after)
    stop_timer()
    emit({ type = "error", status = status, message = message, retryable = retryable, retry_after = retry_after })
  end
  -- a worker that holds a request and says nothing for this long loses it
  local function arm(ms)
    if not timer then timer = require("luv").new_timer() end
    timer:start(ms, 0, sink.guard(function()
      pool.cancel(id)
      fail(504, string.format("the WS worker serving %s sent nothing for %d ms", model, ms), chunks == 0)
    end))
  end

  local function on_message(m)
    local t = m.type
    if t == "completion_chunk" then
      begin()
      chunks = chunks + 1
      arm(conf.idle_timeout_ms or 120000)
      if type(m.reasoning) == "string" and m.reasoning ~= "" then
        emit({ type = "thinking_delta", text = m.reasoning })
      end
      if type(m.content) == "string" and m.content ~= "" then
        text[#text + 1] = m.content
        return emit({ type = "text_delta", text = m.content })
      end
    elseif t == "completion_response" then
      pool.finish(id)
      stop_timer()
      begin()
      if chunks == 0 and type(m.content) == "string" and m.content ~= "" then
        text[#text + 1] = m.content
        emit({ type = "text_delta", text = m.content })
      end
      emit(usage_of(m.usage, creq, table.concat(text)))
      emit({ type = "done", reason = openai.stop_reasons[m.finish_reason] or "stop" })
    elseif t == "completion_error" then
      pool.finish(id)
      local status = tonumber(m.status)
      fail((status and status >= 400 and status <= 599) and status or 502,
        "WS worker: " .. (type(m.message) == "string" and m.message or "the worker failed"), false)
    end
  end

  local handler = sink.guard(function(kind, data)
    if sink.closed() then return pool.cancel(id) end
    if kind == "expired" then
      return fail(data, data == 429
        and string.format("every WS worker serving %s stayed busy for %d ms", model, self.queue.queue_timeout_ms)
        or string.format("no WS worker serving %s connected within %d ms", model,
          self.queue.wait_for_worker_ms > 0 and self.queue.wait_for_worker_ms or self.queue.queue_timeout_ms),
        false, 1)
    elseif kind == "lost" then
      return fail(502, "the WS worker serving this request went away mid-answer", false)
    end
    local m = json.decode(data)
    if type(m) ~= "table" then
      log.warn("WS worker sent a message that is not JSON for %s", id)
      return
    end
    on_message(m)
    if behind and not held and not sink.closed() and pool.pending(id) then
      held = true
      pool.hold(id, true)
      if timer and not timer:is_closing() then timer:stop() end
      sink.on_drain(sink.guard(function()
        held, behind = false, false
        if not pool.pending(id) then return end
        arm(conf.idle_timeout_ms or 120000)
        pool.hold(id, false)
      end))
    end
    behind = false
  end)

  local text, why = M.message(creq, id, conf)
  if not text then -- a value JSON cannot carry (1e999, nesting past the limit)
    fail(400, "the request cannot be sent to a WS worker: " .. why, false)
    job.cancel = function() end
    return job
  end
  local res, err = pool.submit(id, model, text, self.queue, handler)
  if err == "no worker" then
    fail(503, string.format("no WS worker serving %s is connected", model), false, 1)
  elseif not res then
    fail(429, "the WS worker queue is full (" .. tostring(err) .. ")", false, 1)
  else
    arm(self.queue.queue_timeout_ms + (conf.first_byte_timeout_ms or 120000))
  end

  function job.cancel()
    stop_timer()
    pool.cancel(id)
  end
  return job
end

return M
