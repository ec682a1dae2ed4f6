-- TLS listeners (libwebsockets): HTTP/1.1, and HTTP/2 by ALPN when
-- tls.http2 asks for it, driven by curl.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"

local sh = helpers.sh

describe("TLS with HTTP/2 (tls.http2 = true)", function()
  local server, base, mock
  setup(function()
    local dir = helpers.self_signed()
    mock = helpers.mock()
    server = helpers.start { config = string.format([[
return { tls = { cert = %q, key = %q, http2 = true },
  providers = { up = { kind = "openai", base_url = %q, retries = 0 } },
  routes = { { match = "up-*", provider = "up" } } }]], dir .. "/cert.pem", dir .. "/key.pem", mock.url .. "/v1") }
    base = string.format("https://127.0.0.1:%d", server.port)
    assert.matches("listening on https://.*%(HTTP/2 and HTTP/1.1%)", server.log)
  end)
  teardown(function()
    server:stop_clean()
    mock:stop()
  end)

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

  it("serves a passthrough on the fast path over HTTP/2 and HTTP/1.1 (src/fast.c), as Lua's path does", function()
    local function served()
      local text = curl("", "/stats")
      return json.decode(text).fast_path.served
    end
    local body = json.encode { model = "up-fast", messages = { { role = "user", content = "x" } } }
    mock:queue { { json = { id = "c", object = "chat.completion", created = 1, model = "m",
      choices = { { index = 0, message = { role = "assistant", content = "lua's" }, finish_reason = "stop" } } } } }
    local text, _, code = curl("--http2", "/v1/chat/completions", body) -- Lua's path: publishes the route
    assert.equal(200, code)
    local before = served()
    for _, v in ipairs { "--http2", "--http1.1" } do
      mock:queue { { json = { id = "c", object = "chat.completion", created = 1, model = "m",
        choices = { { index = 0, message = { role = "assistant", content = "fast " .. v }, finish_reason = "stop" } } } } }
      local t, version, c = curl(v, "/v1/chat/completions", body)
      assert.equal(200, c)
      assert.equal(v == "--http2" and "2" or "1.1", version)
      assert.equal("fast " .. v, json.decode(t).choices[1].message.content)
    end
    assert.equal(before + 2, served())
    assert.equal(json.decode(text).choices[1].message.content, "lua's")
  end)

  it("guards the Host over HTTP/2 as over HTTP/1.1: :authority is the Host", function()
    for _, v in ipairs { "--http2", "--http1.1" } do
      local out = sh(string.format("curl -sk --max-time 10 %s --resolve evil.example:%d:127.0.0.1 -w '\\n%%{http_code}' "
        .. "https://evil.example:%d/v1/chat/completions -d %q", v, server.port, server.port,
        json.encode { model = "echo", messages = { { role = "user", content = "x" } } }))
      assert.matches("\n403$", out, nil, false)
      assert.matches("host_not_allowed", out, 1, true)
    end
    local _, _, code = curl("--http2", "/v1/chat/completions",
      json.encode { model = "echo", messages = { { role = "user", content = "x" } } })
    assert.equal(200, code)
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

  it("passes an upstream's stream through over HTTP/2, frame for frame", function()
    local frames = {}
    for i = 1, 40 do
      frames[i] = { json = { id = "chatcmpl-up", object = "chat.completion.chunk", created = 1, model = "up-m",
        choices = { { index = 0, delta = { content = "w" .. i .. " " }, finish_reason = json.null } } } }
    end
    frames[#frames + 1] = { data = "[DONE]" }
    mock:queue { { frames = frames } }
    local text, version, code = curl("--http2 -N", "/v1/chat/completions",
      json.encode { model = "up-m", stream = true, messages = { { role = "user", content = "x" } } })
    assert.equal("2", version)
    assert.equal(200, code)
    local data = client.sse_data(text)
    assert.equal(41, #data, text:sub(-200))
    for i = 1, 40 do assert.equal("w" .. i .. " ", json.decode(data[i]).choices[1].delta.content) end
    assert.equal("[DONE]", data[41])
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

describe("inbound keys over TLS (HTTP/1.1)", function()
  it("takes x-api-key as sent (each request header the front doors read is copied once)", function()
    local dir = helpers.self_signed()
    local mock = helpers.mock()
    local server = helpers.start { config = string.format([[
return { tls = { cert = %q, key = %q }, keys = { { name = "t", key = "sk-tls-key-0123456789" } },
  providers = { up = { kind = "anthropic", base_url = %q, forward_client_key = true, retries = 0 } },
  routes = { { match = "*", provider = "up" } } }]], dir .. "/cert.pem", dir .. "/key.pem", mock.url) }
    finally(function() server:stop(); mock:stop() end)
    local out = sh(string.format("curl -sk --max-time 10 --http1.1 -w '\n%%{http_code}' -H 'x-api-key: sk-tls-key-0123456789' "
      .. "-H 'anthropic-version: 2023-06-01' https://127.0.0.1:%d/v1/messages -d %q", server.port,
      json.encode { model = "claude-x", max_tokens = 5, messages = { { role = "user", content = "hi" } } }))
    assert.equal("200", out:match("(%d+)$"), out)
    assert.equal("sk-tls-key-0123456789", mock:requests()[1].headers["x-api-key"])
    server:stop_clean()
  end)
end)

describe("TLS by default", function()
  local server, base
  setup(function()
    local dir = helpers.self_signed()
    server = helpers.start { config = string.format("return { tls = { cert = %q, key = %q } }",
      dir .. "/cert.pem", dir .. "/key.pem") }
    base = string.format("https://127.0.0.1:%d", server.port)
  end)
  teardown(function() server:stop_clean() end)

  it("offers HTTP/1.1 only, also to a client that asks for HTTP/2", function()
    assert.matches("listening on https://.*%(HTTP/1.1%)", server.log)
    local out = sh(string.format("curl -sk --max-time 10 --http2 -w '\\n%%{http_version} %%{http_code}' %s/v1/chat/completions -d %q",
      base, json.encode { model = "echo", messages = { { role = "user", content = "over h1" } } }))
    local text, version, code = out:match("^(.*)\n(%S+) (%d+)$")
    assert.equal("1.1", version)
    assert.equal("200", code)
    assert.equal("over h1", json.decode(text).choices[1].message.content)
  end)
end)
