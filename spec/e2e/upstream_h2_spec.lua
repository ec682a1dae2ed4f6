-- An upstream that speaks HTTP/2 over TLS (as the hosted APIs do): requests
-- that start together share one connection instead of opening one each.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"

local sh = helpers.sh

describe("an HTTP/2 upstream over TLS", function()
  local mock, front, server
  setup(function()
    mock = helpers.mock()
    front = helpers.h2_front(mock.port)
    server = helpers.start { config = string.format([[
return { providers = { up = { kind = "openai", base_url = %q, insecure = true, retries = 0 } },
  routes = { { match = "*", provider = "up" } } }]], front.url .. "/v1") }
  end)
  teardown(function()
    if server then server:stop_clean() end
    if front then front.stop() end
    if mock then mock:stop() end
  end)

  it("carries 20 streams that start at once on one connection", function()
    local n = 20
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
    mock:queue(scripts)
    local body = client.request_bytes("POST", "/v1/chat/completions",
      json.encode { model = "m", stream = true, messages = { { role = "user", content = "hi" } } })
    local conns = {}
    for i = 1, n do
      conns[i] = assert(server:connect())
      conns[i]:send(body)
    end
    -- every stream has its first frame: all n are open upstream at once
    assert.truthy(client.run_until(function()
      for _, c in ipairs(conns) do if not c.buf:find("first ", 1, true) then return false end end
      return true
    end, 10000), "not every stream started")
    local established = sh(string.format("ss -Htn state established '( dport = :%d )'", front.port))
    local count = select(2, established:gsub("\n", "\n"))
    assert.equal(1, count, established)
    for _, c in ipairs(conns) do
      assert.truthy(c:wait(function(cc) return cc.buf:find("\r\n0\r\n\r\n", 1, true) end, 10000), c.buf)
      assert.truthy(c.buf:find('"content":"last"', 1, true))
      assert.truthy(c.buf:find("data: [DONE]", 1, true))
      c:close()
    end
    assert.equal(n, #mock:requests())
  end)
end)
