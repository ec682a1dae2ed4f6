-- moongate.frames' spans: where each event's bytes end, so that a host can
-- hand on an upstream's own bytes a whole event at a time
local frames = require "moongate.frames"

describe("frames.sse_parser(spans)", function()
  local text = ": hello\n\nevent: a\ndata: 1\n\ndata: 2\r\n\r\n: ping\n\ndata: 3\r\rdata: 4\n"

  -- the pieces a host hands on (each frame's bytes, then what is left up to
  -- the last blank line), fed at the given piece size; and what it holds
  local function spans(size)
    local p, held, got, order = frames.sse_parser(true), "", {}, {}
    for i = 1, #text, size do
      local piece = text:sub(i, i + size - 1)
      local base = #held
      held = held .. piece
      local from = 1
      for _, f in ipairs(p:feed(piece)) do
        got[#got + 1] = { data = f.data, bytes = held:sub(from, base + f.stop) }
        order[#order + 1] = got[#got].bytes
        from = base + f.stop + 1
      end
      if p.cut then
        order[#order + 1] = held:sub(from, base + p.cut)
        held = held:sub(base + p.cut + 1)
      else
        held = held:sub(from)
      end
    end
    return got, table.concat(order), held
  end

  it("gives each frame the end of its blank line, at any split", function()
    for size = 1, #text do
      local got, passed, held = spans(size)
      assert.same({ "1", "2", "3" }, { got[1].data, got[2].data, got[3].data }, "size " .. size)
      assert.matches("event: a\ndata: 1\n\n$", got[1].bytes)
      assert.matches("data: 3\r\r$", got[3].bytes)
      assert.equal("data: 4\n", held, "size " .. size) -- not ended: held
      assert.equal(text, passed .. held, "size " .. size) -- every byte once, in order
    end
  end)

  it("ends a CRLF event after its LF when the LF came with it", function()
    local got = spans(#text)
    assert.equal("data: 2\r\n\r\n", got[2].bytes)
    assert.equal(": hello\n\nevent: a\ndata: 1\n\n", got[1].bytes)
  end)

  it("leaves the frames as they are without spans", function()
    local f = frames.sse_parser():feed("data: x\n\n")
    assert.same({ { data = "x" } }, f)
  end)
end)
