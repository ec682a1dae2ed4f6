-- A proxy named in the daemon's environment carries upstream requests as
-- libcurl's rules say (http_proxy, no_proxy); without one, requests go
-- straight to the upstream (the other upstream specs).
local helpers = require "helpers"
local json = require "moongate.json"

-- nothing listens on port 1: only a proxy can answer for this upstream
local config = [[
return { providers = { up = { kind = "openai", base_url = "http://127.0.0.1:1/v1", retries = 0 } },
  routes = { { match = "*", provider = "up" } } }]]
local body = json.encode { model = "m", messages = { { role = "user", content = "hi" } } }

describe("an http_proxy in the environment", function()
  local proxy, server, direct
  setup(function()
    proxy = helpers.mock()
    server = helpers.start { config = config, env = { http_proxy = proxy.url } }
    direct = helpers.start { config = config, env = { http_proxy = proxy.url, no_proxy = "127.0.0.1" } }
  end)
  teardown(function()
    if server then server:stop_clean() end
    if direct then direct:stop_clean() end
    if proxy then proxy:stop() end
  end)

  it("carries the upstream request", function()
    local res = server:request("POST", "/v1/chat/completions", body, { ["content-type"] = "application/json" })
    assert.equal(200, res.status, res.body)
    local seen = proxy:requests()
    assert.equal(1, #seen)
    assert.equal("http://127.0.0.1:1/v1/chat/completions", seen[1].path) -- a proxy's absolute form
  end)

  it("is passed by for the hosts no_proxy names", function()
    local seen = #proxy:requests()
    local res = direct:request("POST", "/v1/chat/completions", body, { ["content-type"] = "application/json" })
    assert.equal(502, res.status, res.body)
    assert.equal(seen, #proxy:requests()) -- the proxy saw nothing of it
  end)
end)
