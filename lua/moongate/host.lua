-- The host interface: all that the pure layer (front doors, adapters,
-- router, models, reasoning, canonical, json, errors, wire) needs from the
-- program it runs in. docs/EMBEDDING.md describes it. The defaults below
-- are pure Lua; a host puts its own in with use() before it serves:
-- the daemon its C primitives (moongate.host.daemon), the nginx shim
-- ngx's log and clock (moongate.host.nginx). The pure layer reads the
-- fields at each call (host.write(...), never a local copy), so that use()
-- takes effect whenever it is called.
--
--   write(level, line)    one log line, already redacted and escaped
--                         (level: "error" | "warn" | "info" | "debug")
--   request_id([id])      -> the id the log lines carry now; with an
--                         argument, sets it (nil: none) and returns the old
--   wall()                -> seconds since the epoch, with a fraction
--   mono()                -> a monotonic clock in nanoseconds, or nil
--   random_hex(n)         -> n random hex digits
--   sse_parser(), ndjson_splitter(), sse_frame(data [, event]),
--   ndjson_frame(data)    framing (moongate.frames has the contract)
-- JSON is moongate.json, over lua-cjson, which every host has.
local frames = require "moongate.frames"

local M = {}

function M.write(level, line)
  io.stderr:write(level:upper(), " ", line, "\n")
end

function M.request_id() return nil end

function M.wall() return os.time() end

function M.mono() return nil end

-- /dev/urandom; without it, the time and an address (never for a secret)
function M.random_hex(n)
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(math.ceil(n / 2))
  if f then f:close() end
  if not bytes or #bytes < n / 2 then
    local s = tostring(os.time()) .. tostring({}):match("0x(%x+)")
    while #s < n do s = s .. s end
    return s:sub(-n)
  end
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end)):sub(1, n)
end

M.sse_parser = frames.sse_parser
M.ndjson_splitter = frames.ndjson_splitter
M.sse_frame = frames.sse_frame
M.ndjson_frame = frames.ndjson_frame

--- use(impl): the host's own functions in place of the defaults (any of
-- the fields above; the others stay)
function M.use(impl)
  for k, v in pairs(impl) do
    assert(k ~= "use" and M[k] ~= nil, "moongate.host: no field " .. tostring(k))
    M[k] = v
  end
end

return M
