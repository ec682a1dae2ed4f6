-- src/ws_guard.c (the frame header check of the WebSocket relay, ws_relay.c),
-- called through the FFI in core.so: the same verdict, at the same byte,
-- and the same frame boundaries however the stream is cut.
local ffi = require "ffi"
local bit = require "bit"

ffi.cdef [[
typedef struct mg_ws_guard {
  uint64_t pos, frame_at, left, len;
  uint8_t server, in_head, crlf, have, need, ext, err, close_seen;
  uint64_t err_at;
} mg_ws_guard;
void mg_ws_guard_init(mg_ws_guard *g, int server);
size_t mg_ws_guard_feed(mg_ws_guard *g, const void *p, size_t n, int stop_at_boundary);
int mg_ws_guard_at_boundary(const mg_ws_guard *g);
]]
local C = ffi.load(assert(package.searchpath("moongate.core", package.cpath), "core.so not found"))

local function frame(b1, payload, masked, len64)
  local len, mb = #payload, masked and 0x80 or 0
  local head
  if len64 or len >= 65536 then
    head = string.char(b1, mb + 127, 0, 0, 0, 0, bit.band(bit.rshift(len, 24), 255), bit.band(bit.rshift(len, 16), 255),
      bit.band(bit.rshift(len, 8), 255), bit.band(len, 255))
  elseif len >= 126 then
    head = string.char(b1, mb + 126, bit.rshift(len, 8), bit.band(len, 255))
  else
    head = string.char(b1, mb + len)
  end
  return head .. (masked and "\1\2\3\4" or "") .. payload
end

-- run(stream, cuts, server) -> passed bytes, err, err_at, boundaries seen after each piece
local function run(stream, cuts, server)
  local g = ffi.new("mg_ws_guard")
  C.mg_ws_guard_init(g, server and 1 or 0)
  local passed, at, bounds = 0, 0, {}
  for _, k in ipairs(cuts) do
    local piece = stream:sub(at + 1, at + k)
    passed = passed + tonumber(C.mg_ws_guard_feed(g, piece, #piece, 0))
    at = at + k
    if C.mg_ws_guard_at_boundary(g) == 1 then bounds[#bounds + 1] = at end
  end
  return passed, g.err, tonumber(g.err_at), bounds
end
local function whole(s) return { #s } end
local function bytes(s) local t = {} for i = 1, #s do t[i] = 1 end return t end
local function random_cuts(s, seed)
  math.randomseed(seed)
  local t, left = {}, #s
  while left > 0 do local k = math.min(left, math.random(0, 9)) t[#t + 1] = k left = left - k end
  return t
end

describe("ws_guard", function()
  local good = frame(0x81, "hello", true) .. frame(0x82, string.rep("b", 300), true)
    .. frame(0x81, string.rep("c", 70000), true, true) .. frame(0x89, "", true) .. frame(0x80, "x", true)

  it("passes masked frames of every length form, whole or cut anywhere", function()
    local n, err = run(good, whole(good))
    assert.equal(#good, n)
    assert.equal(0, err)
    for seed = 1, 20 do
      local m, e = run(good, random_cuts(good, seed))
      assert.equal(#good, m)
      assert.equal(0, e)
    end
    -- every frame's end is a boundary, and nothing else is
    local _, _, _, b = run(good, bytes(good))
    assert.same({ 11, 11 + 308, 11 + 308 + 70014, 11 + 308 + 70014 + 6, #good }, b)
  end)

  it("refuses an unmasked frame at its first byte, however the stream is cut", function()
    local bad = good .. frame(0x81, "x") .. frame(0x81, "after", true)
    for _, cuts in ipairs { whole(bad), bytes(bad), random_cuts(bad, 7), { #good + 1, #bad - #good - 1 } } do
      local n, err, at = run(bad, cuts)
      assert.equal(1, err) -- MG_WS_GUARD_UNMASKED
      assert.equal(#good, at)
      -- everything before it; of it, only its first byte when that came in
      -- an earlier piece (the mask bit is in the second)
      assert.is_true(n == #good or n == #good + 1)
    end
  end)

  it("refuses a 64-bit length with its top bit set", function()
    local bad = frame(0x81, "ok", true) .. string.char(0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 0)
    for _, cuts in ipairs { whole(bad), bytes(bad), random_cuts(bad, 3) } do
      local n, err, at = run(bad, cuts)
      assert.equal(2, err) -- MG_WS_GUARD_BAD_LENGTH
      assert.equal(8, at)
      assert.is_true(n >= 8 and n <= 10) -- (its first two bytes, when they came in earlier pieces)
    end
  end)

  it("follows an answer head, then unmasked server frames, and stops at a boundary when asked", function()
    local s = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n" .. frame(0x81, "abc") .. frame(0x81, "defg")
    local n, err, _, b = run(s, bytes(s), true)
    assert.equal(#s, n)
    assert.equal(0, err)
    assert.same({ #s - 11, #s - 6, #s }, b)
    local g = ffi.new("mg_ws_guard")
    C.mg_ws_guard_init(g, 1)
    assert.equal(#s - 11, tonumber(C.mg_ws_guard_feed(g, s, #s, 1))) -- to the head's end
    assert.equal(0, tonumber(C.mg_ws_guard_feed(g, s:sub(#s - 10), 11, 1))) -- at a boundary already
    assert.equal(2, tonumber(C.mg_ws_guard_feed(g, s:sub(#s - 10), 2, 0)))
    assert.equal(3, tonumber(C.mg_ws_guard_feed(g, s:sub(#s - 8), 9, 1))) -- the rest of that frame
  end)

  it("notes a close frame of the server's, from its first byte (a close of ours must not follow it)", function()
    local head = "HTTP/1.1 101 Switching Protocols\r\n\r\n"
    local g = ffi.new("mg_ws_guard")
    C.mg_ws_guard_init(g, 1)
    C.mg_ws_guard_feed(g, head .. frame(0x81, "text") .. frame(0x89, "ping"), #head + 12, 0)
    assert.equal(0, g.close_seen)
    local close = frame(0x88, "\3\232")
    C.mg_ws_guard_feed(g, close, 1, 0)
    assert.equal(1, g.close_seen)
    -- a client's close frame is not the server's
    C.mg_ws_guard_init(g, 0)
    local masked = frame(0x88, "\3\232", true)
    C.mg_ws_guard_feed(g, masked, #masked, 0)
    assert.equal(0, g.close_seen)
  end)
end)
