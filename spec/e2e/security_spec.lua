-- Security by default, over real sockets: what a stranger on the network or
-- a web page in the user's browser can make the gateway do.
local helpers = require "helpers"
local json = require "moongate.json"

local hi = json.encode { model = "echo", messages = { { role = "user", content = "hi" } } }

describe("DNS rebinding: a gateway on loopback answers only its own names", function()
  local server
  setup(function()
    server = helpers.start { config = [[return { server_names = { "gateway.internal" } }]] }
  end)
  teardown(function() server:stop_clean() end)

  local function status(host, method, path, body)
    return assert(server:request(method or "GET", path or "/v1/models", body, { Host = host })).status
  end

  it("refuses a Host that is not localhost, a loopback address or a server name, in the client's format", function()
    local res = assert(server:request("POST", "/v1/messages", hi, { Host = "attacker.example:8080" }))
    assert.equal(403, res.status)
    local body = json.decode(res.body)
    assert.equal("error", body.type) -- Anthropic's shape on its path
    assert.matches("server_names", body.error.message)
    assert.equal(403, status("attacker.example"))
    assert.equal(403, status("127.0.0.1.attacker.example"))
    assert.equal(403, status("localhost.attacker.example:80"))
  end)

  it("serves localhost, loopback addresses and the configured names", function()
    for _, host in ipairs { "localhost", "localhost:8080", "127.0.0.1", "127.0.0.1:1234", "[::1]:8080",
        "LOCALHOST", "app.localhost", "gateway.internal", "Gateway.Internal:443" } do
      assert.equal(200, status(host), host)
    end
    assert.equal(200, status("localhost", "POST", "/v1/chat/completions", hi))
    -- curl -d: no content type, a loopback Host
    local res = assert(server:request("POST", "/v1/chat/completions", hi, { Host = "localhost:8080",
      ["Content-Type"] = "application/x-www-form-urlencoded" }))
    assert.equal(200, res.status, res.body)
  end)
end)

describe("a gateway on another address does not look at the Host", function()
  local server
  setup(function() server = helpers.start { listen = "0.0.0.0:0" } end)
  teardown(function() if server then server:stop_clean() end end)

  it("serves any Host", function()
    local res = assert(server:request("GET", "/v1/models", nil, { Host = "gateway.example.com" }))
    assert.equal(200, res.status)
  end)
end)
