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

describe("a gateway on another address", function()
  local server
  setup(function() server = helpers.start { listen = "0.0.0.0:0" } end)
  teardown(function() if server then server:stop_clean() end end)

  it("serves any Host", function()
    local res = assert(server:request("GET", "/v1/models", nil, { Host = "gateway.example.com" }))
    assert.equal(200, res.status)
  end)

  it("takes pool workers with no worker_token from this machine only", function()
    local W = require "support.ws_client"
    -- this machine's own non-loopback address: a peer that is not loopback
    local p = io.popen("hostname -I 2>/dev/null")
    local addr = (p:read("*a") or ""):match("(%d+%.%d+%.%d+%.%d+)")
    p:close()
    if not addr or addr:find("^127%.") then return pending("no non-loopback IPv4 address here") end
    local ws = assert(W.connect(server.port, "/ws", nil, addr))
    ws:wait(function() return ws.closed end, 3000)
    assert.equal(4403, ws.close_code)
    assert.matches("worker_token", ws.close_reason)
    -- from loopback it joins
    ws = assert(W.connect(server.port, "/ws"))
    ws:wait(function() return ws.closed end, 300)
    assert.is_false(ws.closed)
    ws:close_tcp()
    -- a chat socket from anywhere is not a pool worker: it opens
    ws = assert(W.connect(server.port, "/ws/tab-1", nil, addr))
    ws:wait(function() return ws.closed end, 300)
    assert.is_false(ws.closed)
    ws:close_tcp()
  end)
end)

describe("inbound keys", function()
  local server
  setup(function()
    server = helpers.start {
      config = [[return { keys = {
        { key = "mg-team-a-key-1234", name = "team-a" },
        { key_env = "TEAM_B_KEY", name = "team-b", models = { "gpt-*" } },
      } }]],
      env = { TEAM_B_KEY = "mg-team-b-key-5678", MOONGATE_API_KEYS = " mg-env-key-abcdef , mg-env-key-ghijkl" },
    }
  end)
  teardown(function() if server then server:stop_clean() end end)

  local function post(path, headers, body)
    return assert(server:request("POST", path, body or hi, headers, 15000))
  end
  local msg = json.encode { model = "echo", max_tokens = 10, messages = { { role = "user", content = "hi" } } }

  it("answers a request without a key, or with a wrong one, 401 in the client's own format", function()
    local res = post("/v1/chat/completions", {})
    assert.equal(401, res.status)
    local e = json.decode(res.body).error
    assert.equal("invalid_api_key", e.code)
    assert.matches("Missing API key", e.message)
    res = post("/v1/chat/completions", { authorization = "Bearer mg-team-a-key-1235" })
    assert.equal(401, res.status)
    assert.matches("Invalid API key", json.decode(res.body).error.message)
    res = post("/v1/messages", { ["x-api-key"] = "nope" }, msg)
    assert.equal(401, res.status)
    local body = json.decode(res.body)
    assert.equal("error", body.type)
    assert.equal("authentication_error", body.error.type)
    res = post("/v1/responses", {}, json.encode { model = "echo", input = "hi" })
    assert.equal(401, res.status)
    -- /stats and the model list too; /health and the preflight stay open
    assert.equal(401, assert(server:request("GET", "/stats")).status)
    assert.equal(401, assert(server:request("GET", "/v1/models")).status)
    local health = assert(server:request("GET", "/health"))
    assert.equal(200, health.status)
    assert.equal("keys", json.decode(health.body).auth)
    assert.equal(204, assert(server:request("OPTIONS", "/v1/messages", nil, -- (204: no length, so close)
      { Origin = "http://localhost:3000", Connection = "close" })).status)
  end)

  it("takes a key as Bearer, x-api-key or x-goog-api-key, from the config, its env or MOONGATE_API_KEYS", function()
    assert.equal(200, post("/v1/chat/completions", { authorization = "Bearer mg-team-a-key-1234" }).status)
    assert.equal(200, post("/v1/messages", { ["x-api-key"] = "mg-team-a-key-1234" }, msg).status)
    assert.equal(200, post("/v1/chat/completions", { ["x-goog-api-key"] = "mg-env-key-abcdef" }).status)
    assert.equal(200, post("/v1/chat/completions", { authorization = "Bearer mg-env-key-ghijkl" }).status)
    assert.equal(200, assert(server:request("GET", "/stats", nil, { authorization = "Bearer mg-team-a-key-1234" })).status)
  end)

  it("gives a key limited to some models 403 for the others, in the client's format", function()
    local res = post("/v1/chat/completions", { authorization = "Bearer mg-team-b-key-5678" })
    assert.equal(403, res.status)
    assert.equal("model_not_allowed", json.decode(res.body).error.code)
    res = post("/v1/messages", { ["x-api-key"] = "mg-team-b-key-5678" }, msg)
    assert.equal(403, res.status)
    assert.equal("permission_error", json.decode(res.body).error.type)
  end)

  it("wants a key on both WebSocket endpoints too (headers, or ?key= from a browser)", function()
    local W = require "support.ws_client"
    -- refused: the socket opens and is closed at once with 4401
    local function refused(path, headers)
      local ws = assert(W.connect(server.port, path, headers))
      ws:wait(function() return ws.closed end, 3000)
      return ws.close_code == 4401
    end
    local function kept(path, headers)
      local ws = assert(W.connect(server.port, path, headers))
      ws:wait(function() return ws.closed end, 300)
      local open, why = not ws.closed, tostring(ws.close_code) .. " " .. tostring(ws.close_reason)
      ws:close_tcp()
      return open, why
    end
    for _, path in ipairs { "/ws", "/ws/tab-1" } do
      assert.is_true(refused(path), path)
      assert.is_true(refused(path, { ["x-api-key"] = "mg-wrong-key-0000" }), path)
      local ok, why = kept(path, { authorization = "Bearer mg-team-a-key-1234" })
      assert.is_true(ok, path .. ": " .. why)
    end
    assert.is_true(kept("/ws/tab-2?key=mg-env-key-abcdef"))
  end)

  it("writes the key's name in the access log, never the key", function()
    post("/v1/chat/completions", { authorization = "Bearer mg-team-a-key-1234" })
    local log = server.log
    assert.matches('key="team-a"', log, 1, true)
    for _, k in ipairs { "mg-team-a-key-1234", "mg-team-b-key-5678", "mg-env-key-abcdef" } do
      assert.not_matches(k, log, 1, true)
    end
  end)
end)

describe("secrets in a passed-through stream", function()
  local mock, server
  setup(function()
    mock = helpers.mock()
    server = helpers.start { config = string.format([[
return { providers = { up = { kind = "openai", base_url = %q, api_key = "mg-operator-secret-999", retries = 0 } },
  routes = { { match = "*", provider = "up" } } }]], mock.url .. "/v1") }
  end)
  teardown(function()
    if server then server:stop_clean() end
    if mock then mock:stop() end
  end)

  it("keeps the operator's key out of an upstream error frame the client gets", function()
    mock:queue { { frames = {
      { json = { id = "c", object = "chat.completion.chunk", created = 1, model = "m",
        choices = { { index = 0, delta = { content = "par" }, finish_reason = json.null } } } },
      { json = { error = { message = "the key mg-operator-secret-999 was revoked", type = "invalid_request_error" } } },
    } } }
    local res = assert(server:request("POST", "/v1/chat/completions", json.encode { model = "gpt-x", stream = true,
      messages = { { role = "user", content = "hi" } } }, nil, 15000))
    assert.equal(200, res.status)
    assert.matches("was revoked", res.body, 1, true)
    assert.not_matches("mg-operator-secret-999", res.body, 1, true)
    assert.matches("[redacted]", res.body, 1, true)
    assert.not_matches("mg-operator-secret-999", server.log, 1, true)
  end)
end)
