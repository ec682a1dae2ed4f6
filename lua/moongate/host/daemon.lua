-- The daemon's side of the host interface (moongate.host): C's log line
-- writer and request id, luv's clocks, C's framing. worker.lua and main.lua
-- put it in before anything logs.
local core = require "moongate.core"
local uv = require "luv"

return {
  write = core._log,
  request_id = core._log_request,
  wall = function() local s, us = uv.gettimeofday() return s + us / 1e6 end,
  mono = uv.hrtime,
  sse_parser = core._sse_parser,
  ndjson_splitter = core._ndjson_splitter,
  sse_frame = core._sse_frame,
  ndjson_frame = core._ndjson_frame,
}
