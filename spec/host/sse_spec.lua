-- The C framing primitives, loaded from build/lua/moongate/core.so.
local core = require "moongate.core"

describe("core._sse_frame", function()
  it("frames one line of data", function()
    assert.equal("data: {\"a\":1}\n\n", core._sse_frame('{"a":1}'))
  end)

  it("adds the event name when given", function()
    assert.equal("event: message_start\ndata: {}\n\n", core._sse_frame("{}", "message_start"))
  end)

  it("splits LF, CRLF and CR into data lines", function()
    assert.equal("data: a\ndata: b\ndata: c\ndata: d\n\n", core._sse_frame("a\nb\r\nc\rd"))
  end)

  it("keeps empty and trailing lines", function()
    assert.equal("data: \n\n", core._sse_frame(""))
    assert.equal("data: a\ndata: \n\n", core._sse_frame("a\n"))
    assert.equal("data: a\ndata: \ndata: b\n\n", core._sse_frame("a\n\nb"))
  end)

  it("refuses an event name that would break the framing", function()
    assert.has_error(function() core._sse_frame("x", "a\nb") end)
    assert.has_error(function() core._sse_frame(nil) end)
  end)

  it("is byte-exact on binary-safe payloads", function()
    local s = "x\0y"
    assert.equal("data: x\0y\n\n", core._sse_frame(s))
  end)
end)

describe("core._ndjson_frame", function()
  it("ends each frame with one newline", function()
    assert.equal('{"done":true}\n', core._ndjson_frame('{"done":true}'))
  end)

  it("never lets a raw newline split a frame", function()
    assert.equal('a\\nb\\rc\n', core._ndjson_frame("a\nb\rc"))
  end)
end)

describe("core basics", function()
  it("has a version and clocks", function()
    assert.matches("^%d+%.%d+%.%d+", core.version)
    local a = core._now_ms()
    assert.is_true(core._now_ms() >= a)
    assert.is_true(core._cpu_count() >= 1)
  end)
end)
