-- The built-in echo provider: answers with the last user message, split at
-- word boundaries into text deltas, one word per token. Useful from the first
-- minute and in tests: chunk_delay_ms paces the stream, max_tokens truncates
-- it with reason "length".
--
-- Provider interface (every kind implements it):
--   M.new(name, conf) -> provider
--   provider:start(creq, sink) -> job with job:cancel()
--   provider:stop() (optional): at shutdown, ends its background work
-- sink.emit(ev) -> more (false: wait for sink.on_drain(fn) before emitting
-- again); sink.guard(fn) wraps an async callback so an error in it ends the
-- request in the client's format; sink.closed() tells whether to stop.
local canonical = require "moongate.canonical"

local M = {}
M.schema = { chunk_delay_ms = { type = "number", min = 0 } } -- its config fields (config.lua)
local Echo = {}
Echo.__index = Echo

function M.new(name, conf)
  conf = conf or {}
  return setmetatable({ name = name, delay = conf.chunk_delay_ms or 0 }, Echo)
end

-- iterator over words with their trailing whitespace
local function pieces(text)
  local pos = 1
  return function()
    if pos > #text then return nil end
    local s, e = text:find("^%s*%S+%s*", pos)
    if not s then s, e = pos, #text end
    local piece = text:sub(s, e)
    pos = e + 1
    return piece
  end
end

function Echo:start(creq, sink)
  local text = canonical.last_user_text(creq)
  local limit = creq.max_tokens
  local next_piece = pieces(text)
  local count, state = 0, "start"
  local job = { cancelled = false }
  local timer

  local function step()
    while not job.cancelled and not sink.closed() do
      local ev
      if state == "start" then
        ev, state = { type = "start" }, "text"
      elseif state == "text" then
        local piece = (not limit or count < limit) and next_piece() or nil
        if piece then
          count = count + 1
          ev = { type = "text_delta", text = piece }
        else
          ev, state = { type = "usage", input_tokens = canonical.prompt_tokens(creq), output_tokens = count }, "done"
          job.reason = (limit and count >= limit and next_piece()) and "length" or "stop"
        end
      elseif state == "done" then
        ev, state = { type = "done", reason = job.reason }, "finished"
      else
        return
      end
      local more = sink.emit(ev)
      if state == "finished" then return job.cancel() end
      if not more then
        sink.on_drain(sink.guard(step))
        return
      end
      if self.delay > 0 and ev.type == "text_delta" then
        if not timer then
          local uv = require "luv"
          timer = uv.new_timer()
        end
        timer:start(self.delay, 0, sink.guard(step))
        return
      end
    end
  end

  function job.cancel()
    job.cancelled = true
    if timer and not timer:is_closing() then timer:close() end
  end

  step()
  return job
end

return M
