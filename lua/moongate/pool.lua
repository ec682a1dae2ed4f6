-- This thread's side of the WS worker pool: the requests it handed to C's
-- shared pool (core._pool_submit), by id. C wakes the thread and calls
-- event(id, kind, data) for each worker message or outcome:
--   "message"  data is the worker's JSON text (completion_chunk,
--              completion_response or completion_error)
--   "lost"     the worker went away after something reached the client
--   "expired"  no worker became free in time; data is 503 or 429
local core = require "moongate.core"

local M = {}
local pending = {}

--- submit(id, model, message, opts, handler) -> "assigned" | "queued" | nil, err
-- opts: {queue_timeout_ms, max_queue, wait_for_worker_ms}; handler(kind, data)
-- until finish(id). err "no worker": no ready worker serves the model and
-- wait_for_worker_ms is 0 (the default): the caller answers 503 at once
-- rather than hold a client for the whole queue time.
function M.submit(id, model, message, opts, handler)
  local res, err = core._pool_submit(id, model, message, opts.queue_timeout_ms, opts.max_queue,
    opts.wait_for_worker_ms or 0)
  if res then pending[id] = handler end
  return res, err
end

--- finish(id): the request is over on this side (its last message arrived)
function M.finish(id)
  pending[id] = nil
end

--- cancel(id): withdraw the request; its worker is told and freed
function M.cancel(id)
  if pending[id] == nil then return false end
  pending[id] = nil
  return core._pool_cancel(id)
end

--- pending(id) -> whether the request is still this thread's
function M.pending(id)
  return pending[id] ~= nil
end

--- hold(id, full): the request's client is behind (true: its worker's
-- socket is not read until hold(id, false)) or caught up (false)
function M.hold(id, full)
  if pending[id] == nil then return end
  core._pool_hold(id, full and true or false)
end

--- event(id, kind, data): called by C (through the worker's handler table)
function M.event(id, kind, data)
  local handler = pending[id]
  if not handler then return end -- cancelled while the message was on its way
  if kind ~= "message" then pending[id] = nil end
  handler(kind, data)
end

--- count() -> requests of this thread still pending
function M.count()
  local n = 0
  for _ in pairs(pending) do n = n + 1 end
  return n
end

return M
