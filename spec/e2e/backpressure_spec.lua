-- A client that reads slowly makes the gateway stop producing, instead of
-- buffering the stream without bound.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"

describe("streaming backpressure", function()
  local server
  setup(function()
    server = helpers.start { config = "return { stream_high_water = 16384 }" }
  end)
  teardown(function() server:stop_clean() end)

  local function stats()
    return json.decode(assert(server:request("GET", "/stats")).body)
  end

  it("holds at most a bounded queue while the client does not read, then delivers everything", function()
    local words = 100000
    local c = server:connect()
    c.count_only = true
    c:send(client.request_bytes("POST", "/v1/chat/completions", json.encode {
      model = "echo", stream = true, stream_options = { include_usage = true },
      messages = { { role = "user", content = string.rep("word ", words) } } }))
    assert.truthy(c:wait(function(cc) return (cc.received or 0) > 0 end, 5000))
    c:pause()
    -- let the kernel buffers fill and the gateway hit its high water mark
    local s
    local prev = -1
    client.run_until(function()
      s = stats()
      local settled = s.buffered_bytes == prev and s.buffered_bytes > 0
      prev = s.buffered_bytes
      return settled
    end, 10000)
    s = stats()
    assert.equal(1, s.open_streams)
    -- two writes' worth at most: the queue (16 KiB) and one batch in flight,
    -- plus one frame that crossed the mark
    assert.is_true(s.buffered_bytes > 0)
    assert.is_true(s.buffered_bytes <= 3 * 16384, "buffered " .. s.buffered_bytes)
    local held = c.received
    -- a whole stream is ~20 MB: most of it has not been produced yet
    assert.is_true(held < 10 * 1024 * 1024, "received " .. held)

    c:resume()
    assert.truthy(c:wait(function(cc) return cc.buf:find("data: [DONE]", 1, true) end, 60000))
    local usage = c.buf:match('"usage":(%b{})')
    assert.equal(words, json.decode(usage).completion_tokens)
    assert.is_true(c.received > 10 * 1024 * 1024)
    c:close()
    s = stats()
    assert.equal(0, s.open_streams)
    assert.is_true(s.buffered_peak <= 4 * 16384, "peak " .. s.buffered_peak)
  end)
end)

-- A passthrough stream's frames are queued by C straight from the upstream
-- (core._fetch_pipe): the same bound must hold, and nothing may be lost or
-- reordered on the way.
describe("streaming backpressure on a passthrough", function()
  local up = helpers.upstream_fixture("stream_high_water = 16384,")

  it("pauses the upstream while the client does not read, then delivers every frame in order", function()
    local server, mock = up.server, up.mock
    local n = 100000
    local frames = {}
    for i = 1, n do
      frames[i] = 'data: {"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"w'
        .. i .. ' "},"finish_reason":null}]}\n\n'
    end
    local raw = table.concat(frames) -- about 15 MB
    mock:queue { { frames = { { raw = raw }, { data = "[DONE]" } } } }
    local c = server:connect()
    c.count_only = true
    local last, out_of_order, tail = 0, nil, ""
    c.on_data = function(data)
      local text = tail .. data
      local upto = 0
      for k, e in text:gmatch('"content":"w(%d+) "}()') do
        k = tonumber(k)
        if k ~= last + 1 and not out_of_order then out_of_order = string.format("w%d after w%d", k, last) end
        last, upto = k, e
      end
      tail = text:sub(math.max(upto, #text - 200))
    end
    c:send(client.request_bytes("POST", "/v1/chat/completions", json.encode {
      model = "gpt-test", stream = true, messages = { { role = "user", content = "x" } } }))
    assert.truthy(c:wait(function(cc) return (cc.received or 0) > 0 end, 5000))
    c:pause()
    local s, prev = nil, -1
    client.run_until(function()
      s = json.decode(assert(server:request("GET", "/stats")).body)
      local settled = s.buffered_bytes == prev and s.buffered_bytes > 0
      prev = s.buffered_bytes
      return settled
    end, 10000)
    assert.equal(1, s.open_streams)
    assert.is_true(s.buffered_bytes <= 3 * 16384, "buffered " .. s.buffered_bytes)
    assert.is_true(c.received < 10 * 1024 * 1024, "received " .. c.received)

    c:resume()
    assert.truthy(c:wait(function(cc) return cc.buf:find("data: [DONE]", 1, true) end, 60000))
    assert.is_nil(out_of_order)
    assert.equal(n, last)
    assert.is_true(c.received > #raw)
    c:close()
  end)
end)

-- One frame larger than stream_high_water, to several readers that do not
-- read: each stream holds about the frame once (what the kernel has not
-- taken), not once per copy on its way, and gives the memory back when the
-- frame is out. (5 readers of an 11 MiB frame held 209 MB, and kept it.)
describe("a frame larger than the high water mark, to slow readers", function()
  local up = helpers.upstream_fixture("stream_high_water = 65536,")

  local rss_kib = helpers.rss_kib

  it("holds it once per stream, and lets it go once it is out", function()
    if os.getenv("MOONGATE_WRAPPER") or os.getenv("ASAN_OPTIONS") or os.getenv("TSAN_OPTIONS") then
      return pending("a sanitizer or valgrind keeps freed memory: resident sizes mean nothing there")
    end
    local server, mock = up.server, up.mock
    local MiB = 1024 * 1024
    local big = string.rep("x", 11 * MiB)
    for _ = 1, 5 do
      mock:queue { { frames = { { data = '{"choices":[{"index":0,"delta":{"content":"' .. big .. '"}}]}' },
        { data = "[DONE]", delay_ms = 3000 } } } }
    end
    local base = rss_kib(server.pid)
    local cs = {}
    for i = 1, 5 do
      local c = server:connect()
      c.count_only = true
      c:send(client.request_bytes("POST", "/v1/chat/completions", json.encode {
        model = "gpt-test", stream = true, messages = { { role = "user", content = "x" } } }))
      cs[i] = c
    end
    assert.truthy(client.run_until(function()
      for _, c in ipairs(cs) do if (c.received or 0) == 0 then return false end end
      return true
    end, 5000))
    for _, c in ipairs(cs) do c:pause() end
    client.run_until(function() return false end, 1500) -- the frames reach the daemon and wait there
    local held = rss_kib(server.pid) - base
    for _, c in ipairs(cs) do c:resume() end
    assert.truthy(client.run_until(function()
      for _, c in ipairs(cs) do if (c.received or 0) < 11 * MiB then return false end end
      return true
    end, 20000), "a reader never got the whole frame")
    client.run_until(function() return false end, 300)
    local after = rss_kib(server.pid) - base
    -- (the frame once per stream, and what malloc has freed but not yet
    -- given back: it trims after 32 MiB of big blocks)
    assert.is_true(held * 1024 < 5 * 2 * 11 * MiB, string.format("5 streams held %.1f MiB", held / 1024))
    assert.is_true(after * 1024 < 24 * MiB, string.format("%.1f MiB still held once the frames were out", after / 1024))
    assert.truthy(client.run_until(function()
      for _, c in ipairs(cs) do if not c.buf:find("data: [DONE]", 1, true) then return false end end
      return true
    end, 10000))
    for _, c in ipairs(cs) do c:close() end
  end)
end)
