-- An upstream that speaks HTTP/2 over TLS (as the hosted APIs do): requests
-- that start together share one connection instead of opening one each, up
-- to upstream_http2_streams at once on a connection.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"

local sh = helpers.sh

-- n streams that start at once and stay open until every one has its first
-- frame; -> the daemon's established connections to the front at that
-- moment. Every stream must then complete. warm: one stream starts first,
-- and the rest once it has its first frame (see the last spec).
local function streams_at_once(server, mock, front, n, warm)
  local scripts = {}
  for i = 1, n do
    scripts[i] = { frames = {
      { json = { id = "c" .. i, object = "chat.completion.chunk", created = 1, model = "m",
        choices = { { index = 0, delta = { content = "first " }, finish_reason = json.null } } } },
      { json = { id = "c" .. i, object = "chat.completion.chunk", created = 1, model = "m",
        choices = { { index = 0, delta = { content = "last" }, finish_reason = "stop" } } }, delay_ms = 800 },
      { data = "[DONE]" },
    } }
  end
  local before = #mock:requests()
  mock:queue(scripts)
  local body = client.request_bytes("POST", "/v1/chat/completions",
    json.encode { model = "m", stream = true, messages = { { role = "user", content = "hi" } } })
  local conns = {}
  for i = 1, n do
    conns[i] = assert(server:connect())
    conns[i]:send(body)
    if warm and i == 1 then
      assert.truthy(conns[1]:wait(function(c) return c.buf:find("first ", 1, true) end, 10000), conns[1].buf)
    end
  end
  -- every stream has its first frame: all n are open upstream at once
  assert.truthy(client.run_until(function()
    for _, c in ipairs(conns) do if not c.buf:find("first ", 1, true) then return false end end
    return true
  end, 10000), "not every stream started")
  local established = sh(string.format("ss -Htn state established '( dport = :%d )'", front.port))
  local count = select(2, established:gsub("\n", "\n"))
  for _, c in ipairs(conns) do
    assert.truthy(c:wait(function(cc) return cc.buf:find("\r\n0\r\n\r\n", 1, true) end, 10000), c.buf)
    assert.truthy(c.buf:find('"content":"last"', 1, true))
    assert.truthy(c.buf:find("data: [DONE]", 1, true))
    c:close()
  end
  assert.equal(n, #mock:requests() - before)
  return count, established
end

describe("an HTTP/2 upstream over TLS", function()
  local t = helpers.upstream_fixture(nil, { h2_front = true })

  it("carries 20 streams that start at once on one connection", function()
    local count, established = streams_at_once(t.server, t.mock, t.front, 20)
    assert.equal(1, count, established)
  end)

  it("puts no more than 100 streams on one connection (the default upstream_http2_streams)", function()
    -- the front allows 1000; curl 7.88 opens a connection for each stream
    -- past the limit of the first (the count varies with timing, but is
    -- never 1)
    local count, established = streams_at_once(t.server, t.mock, t.front, 120)
    assert.is_true(count >= 2, established)
  end)
end)

describe("an HTTP/2 upstream with upstream_http2_streams = 150", function()
  local t = helpers.upstream_fixture("upstream_http2_streams = 150,", { h2_front = true })

  -- Until the server's SETTINGS frame has arrived, curl 7.88 assumes it
  -- allows 100 streams: a burst of more that starts with the connection
  -- may open more connections, depending on timing. Once the connection
  -- is up, the two limits apply (the front allows 1000).
  it("carries 120 streams on one connection once it is up", function()
    local count, established = streams_at_once(t.server, t.mock, t.front, 120, true)
    assert.equal(1, count, established)
  end)
end)
