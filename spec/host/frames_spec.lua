-- moongate.frames (pure Lua) against the daemon's C framing (src/sse.c):
-- the same frames, lines and bytes for the same input, however it is split.
local core = require "moongate.core"
local frames = require "moongate.frames"

local impls = { C = core, Lua = { _sse_parser = frames.sse_parser, _ndjson_splitter = frames.ndjson_splitter,
  _sse_frame = frames.sse_frame, _ndjson_frame = frames.ndjson_frame } }

local stream = "event: message_start\r\ndata: {\"a\":1}\r\n\r\n: a comment\n\ndata: line one\ndata: line two\nid: 7\n\n"
  .. "data:no-space\r\rdata: [DONE]\n\nevent: ping\n\nevent:\ndata:\n\ndata\n\nretry: 5\nunknown: x\ndata: z\r\n\r\n"
  .. "data: \xff\xfe bytes \0 nul\n\ndata: a\r\ndata: b\rdata: c\n\nevent: tail\ndata: unfinished"

local function feed_all(impl, chunks)
  local p, out = impl._sse_parser(), {}
  for _, c in ipairs(chunks) do
    for _, f in ipairs(p:feed(c)) do out[#out + 1] = f end
  end
  return out
end

describe("moongate.frames", function()
  it("parses SSE as the C parser does, split at every byte and in two at every place", function()
    local whole = feed_all(impls.C, { stream })
    assert.equal(9, #whole)
    assert.same(whole, feed_all(impls.Lua, { stream }))
    local bytes = {}
    for i = 1, #stream do bytes[i] = stream:sub(i, i) end
    assert.same(whole, feed_all(impls.Lua, bytes))
    for i = 1, #stream - 1 do
      assert.same(whole, feed_all(impls.Lua, { stream:sub(1, i), stream:sub(i + 1) }))
    end
  end)

  it("agrees with the C parser on random inputs and random splits", function()
    math.randomseed(7)
    local alphabet = { "data: ", "data:", "event: e", "id: 1", ":", "\r", "\n", "\r\n", "x", "{}", " " }
    for _ = 1, 300 do
      local parts = {}
      for i = 1, math.random(1, 40) do parts[i] = alphabet[math.random(#alphabet)] end
      local text = table.concat(parts)
      local chunks, i = {}, 1
      while i <= #text do
        local n = math.random(1, 7)
        chunks[#chunks + 1] = text:sub(i, i + n - 1)
        i = i + n
      end
      assert.same(feed_all(impls.C, { text }), feed_all(impls.Lua, chunks), text)
    end
  end)

  it("splits NDJSON as the C splitter does", function()
    local text = '{"a":1}\r\n\n{"b":2}\n\r\n{"c"'
    for _, impl in pairs(impls) do
      local s, lines = impl._ndjson_splitter(), {}
      for i = 1, #text do
        for _, l in ipairs(s:feed(text:sub(i, i))) do lines[#lines + 1] = l end
      end
      assert.same({ '{"a":1}', '{"b":2}' }, lines)
      assert.same({ '{"c":3}' }, s:feed(':3}\n'))
    end
  end)

  it("writes the same SSE and NDJSON frames as C", function()
    for _, data in ipairs { "", "a", "a\n", "a\n\nb", "a\r\nb\rc\nd", "{\"x\":1}", "\n", "\r\n", "x\0y" } do
      assert.equal(core._sse_frame(data), frames.sse_frame(data))
      assert.equal(core._sse_frame(data, "ev"), frames.sse_frame(data, "ev"))
      assert.equal(core._ndjson_frame(data), frames.ndjson_frame(data))
    end
    assert.has_error(function() frames.sse_frame("x", "a\nb") end)
  end)
end)
