-- What the gateway has for a client at one moment leaves in one write: a
-- stream's headers with its first frame, the several frames a translated
-- event makes, the frames of one upstream read (some through Lua, the rest
-- piped by C). The client then has them in one read, not one wake-up each.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"

local function frame(text)
  return 'data: {"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"m",'
    .. '"choices":[{"index":0,"delta":{"content":"' .. text .. '"},"finish_reason":null}]}\n\n'
end

describe("writes to a streaming client", function()
  local up = helpers.upstream_fixture()

  -- every read the client makes, until the stream's last chunk
  local function reads_of(path, body)
    up.mock:queue { { frames = {
      { raw = frame("Hel") .. frame("lo"), delay_ms = 50 }, -- one upstream read
      { raw = frame(" world"), delay_ms = 300 },
      { data = "[DONE]" },
    } } }
    local c = assert(up.server:connect())
    local reads = {}
    c.on_data = function(data) reads[#reads + 1] = data end
    c:send(client.request_bytes("POST", path, json.encode(body)))
    assert.truthy(c:wait(function(cc) return cc.buf:find("\r\n0\r\n\r\n", 1, true) end, 5000), c.buf)
    c:close()
    return reads
  end

  local function has(s, needle) return s:find(needle, 1, true) ~= nil end

  it("sends a passthrough's headers with the frames of the first upstream read", function()
    local reads = reads_of("/v1/chat/completions",
      { model = "m", stream = true, messages = { { role = "user", content = "hi" } } })
    local first = reads[1]
    assert.is_true(has(first, "HTTP/1.1 200"), first)
    assert.is_true(has(first, '"content":"Hel"'), first)
    assert.is_true(has(first, '"content":"lo"'), first)
    assert.is_false(has(first, " world"), first) -- that one came 300 ms later
    local all = table.concat(reads)
    assert.is_true(has(all, '"content":" world"') and has(all, "data: [DONE]"), all)
  end)

  it("sends a translated stream's opening events and first deltas in one write", function()
    local reads = reads_of("/v1/messages",
      { model = "m", max_tokens = 64, stream = true, messages = { { role = "user", content = "hi" } } })
    local first = reads[1]
    assert.is_true(has(first, "HTTP/1.1 200"), first)
    assert.is_true(has(first, "event: message_start"), first)
    assert.is_true(has(first, "event: content_block_start"), first)
    assert.is_true(has(first, '"text":"Hel"') and has(first, '"text":"lo"'), first)
    assert.is_false(has(first, " world"), first)
    assert.is_true(has(table.concat(reads), "event: message_stop"))
  end)
end)
