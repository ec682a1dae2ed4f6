-- TLS listeners (libwebsockets): HTTP/2 by ALPN and HTTP/1.1, driven by curl.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>/dev/null"))
  local out = p:read("*a")
  p:close()
  return out
end

describe("TLS with HTTP/2", function()
  local server, base
  setup(function()
    local dir = helpers.self_signed()
    server = helpers.start { config = string.format(
      'return { tls = { cert = %q, key = %q } }', dir .. "/cert.pem", dir .. "/key.pem") }
    base = string.format("https://127.0.0.1:%d", server.port)
    assert.matches("listening on https://", server.log)
  end)
  teardown(function() server:stop_clean() end)

  local function curl(args, path, body)
    local cmd = string.format("curl -sk --max-time 10 %s -w '\\n%%{http_version} %%{http_code}' %s%s", args, base, path)
    if body then cmd = cmd .. " -d " .. string.format("%q", body) end
    local out = sh(cmd)
    local text, version, code = out:match("^(.*)\n(%S+) (%d+)$")
    return text, version, tonumber(code)
  end

  it("negotiates HTTP/2 and answers a chat completion", function()
    local text, version, code = curl("--http2", "/v1/chat/completions",
      json.encode { model = "echo", messages = { { role = "user", content = "over h2" } } })
    assert.equal("2", version)
    assert.equal(200, code)
    assert.equal("over h2", json.decode(text).choices[1].message.content)
  end)

  it("streams over HTTP/2", function()
    local text, version, code = curl("--http2 -N", "/v1/chat/completions",
      json.encode { model = "echo", stream = true, messages = { { role = "user", content = "a b c" } } })
    assert.equal("2", version)
    assert.equal(200, code)
    local data = client.sse_data(text)
    assert.equal("[DONE]", data[#data])
    local words = {}
    for i = 1, #data - 1 do
      local d = json.decode(data[i]).choices[1].delta
      if d.content then words[#words + 1] = d.content end
    end
    assert.equal("a b c", table.concat(words))
  end)

  it("answers errors in OpenAI's shape over HTTP/2", function()
    local text, version, code = curl("--http2", "/v1/chat/completions", "{broken")
    assert.equal("2", version)
    assert.equal(400, code)
    assert.equal("invalid_request_error", json.decode(text).error.type)
    text, _, code = curl("--http2", "/nope")
    assert.equal(404, code)
    assert.equal("unknown_url", json.decode(text).error.code)
  end)

  it("serves HTTP/1.1 over TLS too", function()
    local text, version, code = curl("--http1.1 -N", "/v1/chat/completions",
      json.encode { model = "echo", stream = true, messages = { { role = "user", content = "tls one" } } })
    assert.equal("1.1", version)
    assert.equal(200, code)
    assert.matches("data: %[DONE%]", text)
  end)
end)
