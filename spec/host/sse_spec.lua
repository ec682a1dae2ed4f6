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

describe("core._sse_parser", function()
  local function feed_all(chunks)
    local p, frames = core._sse_parser(), {}
    for _, c in ipairs(chunks) do
      for _, f in ipairs(p:feed(c)) do frames[#frames + 1] = f end
    end
    return frames
  end

  local stream = "event: message_start\r\ndata: {\"a\":1}\r\n\r\n: a comment\n\ndata: line one\ndata: line two\nid: 7\n\ndata:no-space\r\rdata: [DONE]\n\n"

  local function check(frames)
    assert.equal(4, #frames)
    assert.same({ event = "message_start", data = '{"a":1}' }, frames[1])
    assert.same({ data = "line one\nline two", id = "7" }, frames[2])
    assert.same({ data = "no-space", id = "7" }, frames[3])
    assert.same({ data = "[DONE]", id = "7" }, frames[4])
  end

  it("parses LF, CRLF and CR ends, multi-line data, comments, event and id", function()
    check(feed_all { stream })
  end)

  it("gives the same frames when the input is split at every byte", function()
    local chunks = {}
    for i = 1, #stream do chunks[i] = stream:sub(i, i) end
    check(feed_all(chunks))
  end)

  it("gives the same frames for every split into two parts", function()
    for i = 1, #stream - 1 do
      check(feed_all { stream:sub(1, i), stream:sub(i + 1) })
    end
  end)

  it("drops an event without data and keeps an unfinished one back", function()
    local p = core._sse_parser()
    assert.same({}, p:feed("event: ping\n\n"))
    assert.same({}, p:feed("data: partial"))
    assert.same({ { data = "partial" } }, p:feed("\n\n"))
  end)
end)

describe("core._ndjson_splitter", function()
  it("splits lines at any byte, drops CR and empty lines", function()
    local s, lines = core._ndjson_splitter(), {}
    local text = '{"a":1}\r\n\n{"b":2}\n{"c"'
    for i = 1, #text do
      for _, l in ipairs(s:feed(text:sub(i, i))) do lines[#lines + 1] = l end
    end
    assert.same({ '{"a":1}', '{"b":2}' }, lines)
    assert.same({ '{"c":3}' }, s:feed(':3}\n'))
  end)
end)
