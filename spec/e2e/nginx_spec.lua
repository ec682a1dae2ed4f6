-- moongate's Lua layer inside nginx (moongate.host.nginx): the example
-- config (examples/nginx/nginx.conf) run by Debian's nginx with Debian's
-- Lua module (unpacked by scripts/setup --test into .cache/nginx-lua),
-- pointed at the mock upstream. Translation both ways, whole and streamed,
-- tool calls and thinking, errors in the client's format, a stream split at
-- every byte, mid-stream failures, passthrough byte for byte, and both
-- official SDKs (spec/compat/pairings.mjs).
local helpers = require "helpers"
local client = require "support.client"
local json = require "moongate.json"
local uv = require "luv"

local ROOT = uv.cwd()
local NLX = ROOT .. "/.cache/nginx-lua/root"

-- the example config, with this run's paths and port; each change must find
-- its place, so that the example and this spec cannot drift apart
local function nginx_conf(dir, port, config_path)
  local f = assert(io.open("examples/nginx/nginx.conf", "rb"))
  local text = f:read("*a")
  f:close()
  local function sub(from, to)
    local i, j = text:find(from, 1, true)
    assert(i, "examples/nginx/nginx.conf no longer has: " .. from)
    text = text:sub(1, i - 1) .. to .. text:sub(j + 1)
  end
  sub("load_module /usr/lib/nginx/modules/ngx_http_lua_module.so", "load_module " .. NLX .. "/usr/lib/nginx/modules/ngx_http_lua_module.so")
  sub('lua_package_path "/usr/share/moongate/lua/?.lua;/usr/share/moongate/lua/?/init.lua;;"',
    string.format('lua_package_path "%s/usr/share/lua/5.1/?.lua;%s/lua/?.lua;%s/lua/?/init.lua;;"', NLX, ROOT, ROOT))
  sub('moongate.init("/etc/moongate/moongate.lua")', string.format("moongate.init(%q)", config_path))
  sub("listen 127.0.0.1:8080", "listen 127.0.0.1:" .. port)
  sub("worker_processes auto;", string.format("worker_processes 1; daemon off; pid %s/nginx.pid; error_log %s/error.log info;", dir, dir))
  sub("proxy_read_timeout 300s;", "proxy_read_timeout 2s;") -- (the stall case)
  return text
end

local function start_nginx(mock)
  local dir = os.tmpname()
  os.remove(dir)
  assert(uv.fs_mkdir(dir, 493))
  assert(uv.fs_mkdir(dir .. "/logs", 493))
  local cfg = string.format([[
return {
  providers = {
    up = { kind = "openai", base_url = "%s/v1" }, -- its key from OPENAI_API_KEY
    claude = { kind = "anthropic", base_url = "%s", api_key = "sk-ant-up-secret-1234" },
    resp = { kind = "openai", api = "responses", base_url = "%s/v1", api_key = "sk-up-resp-5678" },
    dead = { kind = "openai", base_url = "http://127.0.0.1:1/v1", api_key = "sk-dead-0000" }, -- nothing listens
  },
  routes = { { match = "claude-*", provider = "claude" }, { match = "gpt-resp", provider = "resp" },
    { match = "dead-*", provider = "dead" },
    { match = "renamed", provider = "up", model = "gpt-upstream-name" }, { match = "gpt-*", provider = "up" } },
}
]], mock.url, mock.url, mock.url)
  local config_path = dir .. "/moongate.lua"
  local f = assert(io.open(config_path, "wb"))
  f:write(cfg)
  f:close()
  local port = helpers.free_port()
  f = assert(io.open(dir .. "/nginx.conf", "wb"))
  f:write(nginx_conf(dir, port, config_path))
  f:close()
  local n = { dir = dir, port = port, exited = false }
  n.handle = helpers.spawn("nginx", { args = { "-p", dir, "-c", dir .. "/nginx.conf" },
    env = { "PATH=" .. os.getenv("PATH"), "LD_LIBRARY_PATH=" .. NLX .. "/usr/lib/x86_64-linux-gnu",
      "OPENAI_API_KEY=sk-from-env-abcdef" }, stdio = { nil, 2, 2 } }, function() n.exited = true end)
  assert(n.handle, "cannot start nginx")
  client.run_until(function()
    if n.exited then return true end
    local c = client.connect(port)
    if c then c:close() return true end
  end, 10000)
  assert(not n.exited, "nginx did not start")
  return n
end

local function stop_nginx(n)
  if n and not n.exited then
    n.handle:kill("sigterm")
    client.run_until(function() return n.exited end, 5000)
  end
  if n then os.execute("rm -rf " .. helpers.shell_quote(n.dir)) end
end

describe("moongate in nginx", function()
  local mock, ngx_

  setup(function()
    mock = helpers.mock()
    ngx_ = start_nginx(mock)
  end)
  teardown(function()
    stop_nginx(ngx_)
    if mock then mock:stop() end
  end)
  before_each(function() mock:reset() end)

  local function post(path, body, headers)
    local res = assert(client.request(ngx_.port, "POST", path, type(body) == "string" and body or json.encode(body),
      headers or { ["content-type"] = "application/json" }, 15000))
    return res
  end
  -- a stream read to the connection's end, whether its answer ends whole or
  -- is cut (an upstream that goes on past the client's error is stopped,
  -- and the client's connection with it): its body, and whether it ended whole
  local function post_to_close(path, body)
    local c = assert(client.connect(ngx_.port))
    c:send(client.request_bytes("POST", path, json.encode(body)))
    local function read()
      return client.dechunk(c.buf:sub((c.buf:find("\r\n\r\n", 1, true) or 0) + 4))
    end
    client.run_until(function() return c.eof or select(2, read()) end, 10000)
    c:close()
    local text, whole = read()
    assert(c.eof or whole, "neither ended nor cut: " .. c.buf)
    return text, whole
  end
  local function last_sent()
    local reqs = mock:requests()
    return reqs[#reqs]
  end
  local anthropic_headers = { ["content-type"] = "application/json", ["x-api-key"] = "sk-ant-client-key-0000",
    ["anthropic-version"] = "2023-06-01" }

  it("serves an Anthropic client from an OpenAI upstream, with the provider's key from the environment", function()
    local res = post("/v1/messages", { model = "gpt-4o", max_tokens = 50,
      messages = { { role = "user", content = "hello from anthropic" } } }, anthropic_headers)
    assert.equal(200, res.status)
    local m = json.decode(res.body)
    assert.equal("message", m.type)
    assert.equal("hello from anthropic", m.content[1].text)
    assert.equal("end_turn", m.stop_reason)
    local sent = last_sent()
    assert.equal("/v1/chat/completions", sent.path)
    assert.equal("Bearer sk-from-env-abcdef", sent.headers.authorization)
    assert.is_nil(sent.headers["x-api-key"]) -- the client's key stays here
    assert.equal("hello from anthropic", json.decode(sent.body).messages[1].content)
  end)

  it("serves an OpenAI client from an Anthropic upstream", function()
    local res = post("/v1/chat/completions", { model = "claude-x",
      messages = { { role = "user", content = "hello from openai" } } },
      { ["content-type"] = "application/json", authorization = "Bearer sk-client-key-1111" })
    assert.equal(200, res.status)
    local c = json.decode(res.body)
    assert.equal("chat.completion", c.object)
    assert.equal("hello from openai", c.choices[1].message.content)
    local sent = last_sent()
    assert.equal("/v1/messages", sent.path)
    assert.equal("sk-ant-up-secret-1234", sent.headers["x-api-key"])
    assert.is_nil(sent.headers.authorization)
  end)

  it("streams an Anthropic client's answer from an OpenAI upstream", function()
    local res = post("/v1/messages", { model = "gpt-4o", max_tokens = 50, stream = true,
      messages = { { role = "user", content = "streamed words here" } } }, anthropic_headers)
    assert.equal(200, res.status)
    assert.matches("^text/event%-stream", res.headers["content-type"])
    local data, events = client.sse_data(res.body)
    assert.equal("message_start", events[1])
    assert.equal("message_stop", events[#events])
    local text = {}
    for i, d in ipairs(data) do
      local v = json.decode(d)
      assert.equal(events[i], v.type)
      if v.type == "content_block_delta" then text[#text + 1] = v.delta.text end
    end
    assert.equal("streamed words here", table.concat(text))
  end)

  it("makes a stream of a whole answer the upstream gave to a stream request", function()
    mock:queue { { json = { id = "c9", object = "chat.completion", created = 1, model = "m",
      choices = { { index = 0, message = { role = "assistant", content = "all at once" }, finish_reason = "stop" } },
      usage = { prompt_tokens = 3, completion_tokens = 3, total_tokens = 6 } } } }
    local res = post("/v1/messages", { model = "gpt-4o", max_tokens = 50, stream = true,
      messages = { { role = "user", content = "x" } } }, anthropic_headers)
    assert.equal(200, res.status)
    local data, events = client.sse_data(res.body)
    assert.equal("message_start", events[1])
    assert.equal("message_stop", events[#events])
    assert.matches('"text":"all at once"', table.concat(data, "\n"), 1, true)
  end)

  -- an OpenAI client's stream of the Anthropic tool-call fixture -> {reasoning, calls, finish, last}
  local function openai_tool_stream(script)
    mock:queue { script }
    local res = post("/v1/chat/completions", { model = "claude-x", stream = true,
      messages = { { role = "user", content = "weather in Oslo?" } },
      tools = { { type = "function", ["function"] = { name = "get_weather", parameters = { type = "object" } } },
        { type = "function", ["function"] = { name = "get_time", parameters = { type = "object" } } } } })
    assert.equal(200, res.status)
    local data = client.sse_data(res.body)
    local out = { reasoning = "", calls = {}, last = data[#data], frames = #data }
    for _, d in ipairs(data) do
      local v = d ~= "[DONE]" and json.decode(d)
      local ch = v and v.choices and v.choices[1]
      if ch then
        out.reasoning = out.reasoning .. (ch.delta.reasoning_content or "")
        for _, tc in ipairs(ch.delta.tool_calls or {}) do
          local k = tc.index + 1
          out.calls[k] = out.calls[k] or { id = tc.id, name = tc["function"].name, args = "" }
          out.calls[k].args = out.calls[k].args .. (tc["function"].arguments or "")
        end
        out.finish = ch.finish_reason or out.finish
      end
    end
    return out
  end

  local tools_stream = json.decode(io.open("spec/fixtures/upstream/anthropic_tools_stream.json"):read("*a"))

  it("streams tool calls and thinking to an OpenAI client, and takes the round trip back", function()
    local s = openai_tool_stream(tools_stream)
    assert.equal("tool_calls", s.finish)
    assert.equal("thinking it over", s.reasoning)
    assert.equal("get_weather", s.calls[1].name)
    assert.same({ city = "Oslo" }, json.decode(s.calls[1].args))
    assert.same({ tz = "CET" }, json.decode(s.calls[2].args))
    assert.equal("[DONE]", s.last)
    -- the tool results go back as Anthropic tool_result blocks for those ids
    local res = post("/v1/chat/completions", { model = "claude-x", messages = {
      { role = "user", content = "weather in Oslo?" },
      { role = "assistant", content = json.null, tool_calls = {
        { id = s.calls[1].id, type = "function", ["function"] = { name = "get_weather", arguments = s.calls[1].args } },
        { id = s.calls[2].id, type = "function", ["function"] = { name = "get_time", arguments = s.calls[2].args } } } },
      { role = "tool", tool_call_id = s.calls[1].id, content = "sunny" },
      { role = "tool", tool_call_id = s.calls[2].id, content = "noon" } } })
    assert.equal(200, res.status, res.body)
    local sent = json.decode(last_sent().body)
    assert.equal("tool_use", sent.messages[2].content[1].type)
    assert.equal(s.calls[1].id, sent.messages[3].content[1].tool_use_id)
    assert.equal(s.calls[2].id, sent.messages[3].content[2].tool_use_id)
  end)

  it("gives the same stream when the upstream writes it a byte at a time", function()
    local whole = openai_tool_stream(tools_stream)
    local split = openai_tool_stream({ frames = tools_stream.frames, bytewise_ms = 1 })
    whole.last, split.last = nil, nil
    for _, c in ipairs(whole.calls) do c.id = nil end
    for _, c in ipairs(split.calls) do c.id = nil end
    assert.same(whole, split)
  end)

  it("answers errors in the client's format: an upstream's 400, a malformed request, an unknown model", function()
    mock:queue { { status = 400, json = { error = { message = "bad thing upstream", type = "invalid_request_error" } } } }
    local res = post("/v1/messages", { model = "gpt-4o", max_tokens = 5, messages = { { role = "user", content = "x" } } },
      anthropic_headers)
    assert.equal(400, res.status)
    local e = json.decode(res.body)
    assert.equal("error", e.type)
    assert.equal("bad thing upstream", e.error.message)
    -- the same, asked as a stream: an HTTP error still, nothing was started
    mock:queue { { status = 400, json = { error = { message = "bad stream upstream", type = "invalid_request_error" } } } }
    res = post("/v1/messages", { model = "gpt-4o", max_tokens = 5, stream = true,
      messages = { { role = "user", content = "x" } } }, anthropic_headers)
    assert.equal(400, res.status)
    assert.matches("^application/json", res.headers["content-type"])
    assert.equal("bad stream upstream", json.decode(res.body).error.message)
    res = post("/v1/messages", '{"model": "gpt-4o"', anthropic_headers)
    assert.equal(400, res.status)
    assert.equal("invalid_request_error", json.decode(res.body).error.type)
    res = post("/v1/chat/completions", { model = "no-such-model", messages = { { role = "user", content = "x" } } })
    assert.equal(404, res.status)
    assert.equal("model_not_found", json.decode(res.body).error.code)
    -- a model the daemon serves itself (echo) is not served here
    res = post("/v1/chat/completions", { model = "echo", messages = { { role = "user", content = "x" } } })
    assert.equal(404, res.status)
    assert.matches("not served here", json.decode(res.body).error.message)
  end)

  it("answers nginx's own failures in the client's format: an upstream not reached, a body too large", function()
    for _, stream in ipairs { false, true } do
      -- passthrough and translated, whole and streamed: never nginx's HTML page
      local res = post("/v1/chat/completions", { model = "dead-1", stream = stream, messages = { { role = "user", content = "x" } } })
      assert.equal(502, res.status)
      assert.matches("upstream dead: no answer from the upstream", json.decode(res.body).error.message)
      res = post("/v1/messages", { model = "dead-1", max_tokens = 5, stream = stream,
        messages = { { role = "user", content = "x" } } }, anthropic_headers)
      assert.equal(502, res.status)
      local e = json.decode(res.body)
      assert.equal("error", e.type)
      assert.matches("upstream dead: no answer from the upstream", e.error.message)
      assert.is_nil(res.body:find("sk-dead", 1, true))
    end
    local res = post("/v1/messages", string.rep("a", 33 * 1024 * 1024), anthropic_headers)
    assert.equal(413, res.status)
    assert.equal("request_too_large", json.decode(res.body).error.type)
  end)

  it("ends a translated stream with an error event when the upstream fails mid-stream", function()
    -- the upstream hangs up after two frames
    local s = openai_tool_stream({ frames = tools_stream.frames, drop_after = 2 })
    local last = json.decode(s.last)
    assert.is_table(last.error, s.last)
    -- an error event of the upstream's own, mid-stream
    local frames = { tools_stream.frames[1], { event = "error",
      json = { type = "error", error = { type = "overloaded_error", message = "overloaded now" } } } }
    s = openai_tool_stream({ frames = frames })
    assert.equal("overloaded now", json.decode(s.last).error.message)
    -- a stall longer than proxy_read_timeout (2 s here)
    frames = { tools_stream.frames[1], tools_stream.frames[2], { delay_ms = 3500, json = { type = "ping" }, event = "ping" } }
    s = openai_tool_stream({ frames = frames })
    assert.matches("broke off", json.decode(s.last).error.message)
  end)

  it("leaves passthrough byte for byte, whole and streamed, with only the route's model rewritten", function()
    local answer = '{ "id":"x1",  "object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"raw \\u00e9"},"finish_reason":"stop"}] ,"x_vendor":[1,2]}'
    mock:queue { { body = answer } }
    local body = '{"model":"gpt-4o",  "messages":[{"role":"user","content":"keep   me"}],"x_unknown":{"a":[1, 2]}}'
    local res = post("/v1/chat/completions", body)
    assert.equal(200, res.status)
    assert.equal(answer, res.body)
    assert.equal(body, last_sent().body)
    -- a route that renames the model: that value alone changes
    mock:queue { { body = answer } }
    res = post("/v1/chat/completions", '{"model":"renamed",  "messages":[{"role":"user","content":"keep   me"}]}')
    assert.equal(200, res.status)
    assert.equal('{"model":"gpt-upstream-name",  "messages":[{"role":"user","content":"keep   me"}]}', last_sent().body)
    local raw = { 'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"a  b"}}]}',
      'data: {"id":"c1" ,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"x":1}', "data: [DONE]" }
    mock:queue { { frames = { { raw = raw[1] .. "\n\n" }, { raw = raw[2] .. "\n\n" }, { raw = raw[3] .. "\n\n" } } } }
    res = post("/v1/chat/completions", '{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]}')
    assert.equal(200, res.status)
    assert.equal(table.concat(raw, "\n\n") .. "\n\n", res.body)
  end)

  it("serves Ollama's /api/chat (NDJSON stream and whole) and /api/generate", function()
    local res = post("/api/chat", { model = "claude-x", messages = { { role = "user", content = "ollama words" } } })
    assert.equal(200, res.status)
    assert.matches("^application/x%-ndjson", res.headers["content-type"])
    local text, last = {}, nil
    for line in res.body:gmatch("[^\n]+") do
      last = json.decode(line)
      text[#text + 1] = last.message and last.message.content or ""
    end
    assert.equal("ollama words", table.concat(text))
    assert.is_true(last.done)
    res = post("/api/chat", { model = "claude-x", stream = false, messages = { { role = "user", content = "whole" } } })
    assert.equal(200, res.status)
    assert.equal("whole", json.decode(res.body).message.content)
    res = post("/api/generate", { model = "gpt-4o", stream = false, prompt = "generated" })
    assert.equal(200, res.status)
    assert.equal("generated", json.decode(res.body).response)
    res = post("/api/chat", { model = "no-such", messages = { { role = "user", content = "x" } } })
    assert.equal(404, res.status)
    assert.is_string(json.decode(res.body).error)
  end)

  it("keeps the gateway's keys from the client on passthrough, whole and streamed, and the client's from the upstream", function()
    local leak = { error = { message = "Incorrect API key provided: sk-from-env-abcdef", type = "invalid_request_error" } }
    mock:queue { { status = 401, json = leak } }
    local res = post("/v1/chat/completions", { model = "gpt-4o", messages = { { role = "user", content = "x" } } })
    assert.equal(401, res.status)
    assert.is_nil(res.body:find("sk-from-env", 1, true), res.body)
    assert.matches("[redacted]", json.decode(res.body).error.message, 1, true)
    mock:queue { { status = 401, json = leak } }
    res = post("/v1/chat/completions", { model = "gpt-4o", stream = true, messages = { { role = "user", content = "x" } } })
    assert.equal(401, res.status)
    assert.is_nil(res.body:find("sk-from-env", 1, true), res.body)
    -- an error frame mid-stream, written a byte at a time (the key split across reads)
    mock:queue { { bytewise_ms = 1, frames = {
      { json = { id = "c1", object = "chat.completion.chunk", choices = { { index = 0, delta = { content = "a" } } } } },
      { json = { error = { message = "key sk-from-env-abcdef is over its quota", type = "insufficient_quota" } } } } } }
    res = post("/v1/chat/completions", { model = "gpt-4o", stream = true, messages = { { role = "user", content = "x" } } })
    assert.equal(200, res.status)
    assert.is_nil(res.body:find("sk-from-env", 1, true), res.body)
    assert.matches("key [redacted] is over its quota", res.body, 1, true)
    -- more headers than nginx lists by default: still none of the client's goes upstream
    local headers = { ["content-type"] = "application/json", authorization = "Bearer sk-client-key-1111", cookie = "sess=x" }
    for i = 1, 210 do headers["x-junk-" .. i] = "1" end
    res = post("/v1/chat/completions", { model = "claude-x", messages = { { role = "user", content = "x" } } }, headers)
    assert.equal(200, res.status)
    local sent = last_sent()
    assert.is_nil(sent.headers.authorization)
    assert.is_nil(sent.headers.cookie)
    assert.is_nil(sent.headers["x-junk-1"])
    assert.equal("sk-ant-up-secret-1234", sent.headers["x-api-key"])
  end)

  it("says an upstream's error in the client's own error types, with its Retry-After", function()
    mock:queue { { status = 429, headers = { ["retry-after"] = "7" },
      json = { type = "error", error = { type = "rate_limit_error", message = "slow down" } } } }
    local res = post("/v1/chat/completions", { model = "claude-x", messages = { { role = "user", content = "x" } } })
    assert.equal(429, res.status)
    assert.equal("7", res.headers["retry-after"])
    local e = json.decode(res.body).error
    assert.equal("slow down", e.message)
    assert.not_equal("error", e.type)
    mock:queue { { status = 429, json = { error = { message = "slow", type = "rate_limit_exceeded" } } } }
    res = post("/v1/messages", { model = "gpt-4o", max_tokens = 5, messages = { { role = "user", content = "x" } } },
      anthropic_headers)
    assert.equal(429, res.status)
    assert.equal("rate_limit_error", json.decode(res.body).error.type)
  end)

  it("ends a client's stream with the upstream's answer, dropping what comes after its last frame; none of the upstream's own headers", function()
    local frames = {}
    for i, f in ipairs(tools_stream.frames) do frames[i] = f end
    -- after the end, a while later (within proxy_read_timeout: past it,
    -- nginx ends the request as a failed one and closes the connection)
    frames[#frames + 1] = { delay_ms = 600, event = "ping", json = { type = "ping", late = true } }
    mock:queue { { frames = frames, status = 201,
      headers = { ["set-cookie"] = "upstream=1", ["x-upstream-secret"] = "v", ["x-accel-redirect"] = "/v1/models",
        ["retry-after"] = "Wed, 21 Oct 2026 07:28:00 GMT" } } }
    local res = post("/v1/chat/completions", { model = "claude-x", stream = true, messages = { { role = "user", content = "x" } } })
    assert.equal(200, res.status) -- a 201 is the client's 200; X-Accel-Redirect is not followed
    assert.is_nil(res.headers["set-cookie"])
    assert.is_nil(res.headers["x-upstream-secret"])
    assert.is_nil(res.headers["retry-after"])
    assert.is_nil(res.body:find("late", 1, true))
    local data = client.sse_data(res.body)
    assert.equal("[DONE]", data[#data])
    -- a kept-alive connection: each request answered in turn, none lost
    -- to the upstream's timeout on the one before
    local c = assert(client.connect(ngx_.port))
    finally(function() c:close() end)
    for i = 1, 2 do
      mock:queue { { frames = frames } }
      local body = json.encode { model = "claude-x", stream = true, messages = { { role = "user", content = "x" .. i } } }
      c:send(client.request_bytes("POST", "/v1/chat/completions", body))
      local r = assert(c:read_response(5000))
      assert.equal(200, r.status)
      data = client.sse_data(r.body)
      assert.equal("[DONE]", data[#data])
    end
  end)

  it("answers an upstream's redirect as a 502, and ends a passthrough stream cut short with an error frame", function()
    mock:queue { { status = 307, headers = { location = "http://elsewhere.example/" }, json = { error = { message = "moved" } } } }
    local res = post("/v1/messages", { model = "gpt-4o", max_tokens = 5, stream = true,
      messages = { { role = "user", content = "x" } } }, anthropic_headers)
    assert.equal(502, res.status)
    assert.is_nil(res.headers.location)
    assert.matches("redirect", json.decode(res.body).error.message)
    mock:queue { { frames = {
      { json = { id = "c1", object = "chat.completion.chunk", choices = { { index = 0, delta = { content = "a" } } } } },
      { json = { id = "c1", object = "chat.completion.chunk", choices = { { index = 0, delta = { content = "b" } } } } } } } }
    res = post("/v1/chat/completions", { model = "gpt-4o", stream = true, messages = { { role = "user", content = "x" } } })
    assert.equal(200, res.status)
    local data = client.sse_data(res.body)
    assert.equal(3, #data)
    assert.matches("broke off", json.decode(data[3]).error.message)
    -- cut inside a frame: the part is dropped, the error frame stands on its own
    local first = '{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"a"}}]}'
    mock:queue { { bytewise_ms = 1, frames = { { data = first }, { raw = 'data: {"id":"c1","object":"chat.comp' } } } }
    res = post("/v1/chat/completions", { model = "gpt-4o", stream = true, messages = { { role = "user", content = "x" } } })
    assert.equal(200, res.status)
    assert.equal("data: " .. first .. "\n\n", res.body:sub(1, #first + 8))
    data = client.sse_data(res.body)
    assert.equal(2, #data, res.body)
    assert.matches("broke off", json.decode(data[2]).error.message)
    -- a malformed frame: the client's error frame instead, and the end;
    -- an upstream that goes on is cut off (the client's connection with it)
    local more = { { data = first }, { data = "not json" } }
    for i = 1, 8 do more[#more + 1] = { delay_ms = 300, data = first } end
    mock:queue { { frames = more } }
    local body, whole = post_to_close("/v1/chat/completions",
      { model = "gpt-4o", stream = true, messages = { { role = "user", content = "x" } } })
    assert.is_false(whole) -- cut: the client's answer does not end as if whole
    data = client.sse_data(body)
    assert.equal(2, #data, body)
    assert.matches("malformed frame", json.decode(data[2]).error.message)
    assert.is_nil(last_sent().finished_at_ms, "the upstream was let finish")
    assert.is_number(last_sent().closed_at_ms)
    -- a stream whose lines end in CRLF, a byte at a time: byte for byte to its end
    local crlf = "data: " .. first .. "\r\n\r\n"
    mock:queue { { bytewise_ms = 1, frames = { { raw = crlf }, { raw = "data: [DONE]\r\n\r\n" } } } }
    res = post("/v1/chat/completions", { model = "gpt-4o", stream = true, messages = { { role = "user", content = "x" } } })
    assert.equal(crlf .. "data: [DONE]\r\n\r\n", res.body)
    -- an event that never ends: held up to 16 MiB, as the daemon holds a frame
    mock:queue { { frames = { { data = first }, { pad = 17 * 1024 * 1024 } } } }
    body = post_to_close("/v1/chat/completions", { model = "gpt-4o", stream = true, messages = { { role = "user", content = "x" } } })
    assert.is_true(#body < 4096, "the held bytes went out")
    data = client.sse_data(body)
    assert.equal(2, #data, body)
    assert.matches("over 16 MiB", json.decode(data[2]).error.message)
    -- translated too (an Anthropic upstream, an OpenAI client)
    mock:queue { { frames = { { pad = 17 * 1024 * 1024 } } } }
    body = post_to_close("/v1/chat/completions", { model = "claude-x", stream = true, messages = { { role = "user", content = "x" } } })
    assert.is_true(#body < 4096, "the held bytes went out")
    data = client.sse_data(body)
    assert.matches("over 16 MiB", json.decode(data[#data]).error.message)
  end)

  it("passes a Responses stream's failure on as the client's response.failed", function()
    mock:queue { { frames = {
      { event = "response.created", json = { type = "response.created", sequence_number = 0,
        response = { id = "resp_1", object = "response", status = "in_progress", output = {} } } },
      { event = "error", json = { type = "error", sequence_number = 1, code = "server_error", message = "the model broke" } },
      { event = "response.completed", json = { type = "response.completed", sequence_number = 2,
        response = { id = "resp_1", object = "response", status = "completed", output = {} } } } } } }
    local body = post_to_close("/v1/responses", { model = "gpt-resp", stream = true, input = "hi" })
    local events = {}
    for ev in body:gmatch("event: ([%w%._]+)") do events[#events + 1] = ev end
    assert.equal("response.created", events[1])
    assert.equal("response.failed", events[#events], body)
    assert.is_nil(body:find("response.completed", 1, true))
    assert.matches("the model broke", body, 1, true)
    -- the failure is the upstream's response's, under its id
    local data = client.sse_data(body)
    assert.equal("resp_1", json.decode(data[#data]).response.id)
  end)

  it("says a streamed request's upstream error with its Retry-After in whole seconds, a date dropped", function()
    mock:queue { { status = 429, headers = { ["retry-after"] = "12" },
      json = { error = { message = "slow", type = "rate_limit_exceeded" } } } }
    local res = post("/v1/chat/completions", { model = "gpt-4o", stream = true, messages = { { role = "user", content = "x" } } })
    assert.equal(429, res.status)
    assert.equal("12", res.headers["retry-after"])
    mock:queue { { status = 503, headers = { ["retry-after"] = "Wed, 21 Oct 2026 07:28:00 GMT" },
      json = { error = { message = "busy", type = "server_error" } } } }
    res = post("/v1/messages", { model = "gpt-4o", max_tokens = 5, stream = true,
      messages = { { role = "user", content = "x" } } }, anthropic_headers)
    assert.equal(503, res.status)
    assert.is_nil(res.headers["retry-after"])
    assert.equal("busy", json.decode(res.body).error.message)
  end)

  it("lists the models its routes serve", function()
    local res = assert(client.request(ngx_.port, "GET", "/v1/models", nil, {}, 5000))
    assert.equal(200, res.status)
    local ids = {}
    for _, m in ipairs(json.decode(res.body).data) do ids[#ids + 1] = m.id end
    assert.same({ "gpt-resp", "renamed" }, ids)
  end)

  it("serves both official SDKs in every pairing", function()
    local p = assert(io.popen(string.format("node spec/compat/pairings.mjs http://127.0.0.1:%d %s 2>&1", ngx_.port, mock.url)))
    local text = p:read("*a")
    p:close()
    local line
    for l in text:gmatch("[^\n]+") do if l:sub(1, 1) == "{" then line = l end end
    local r = assert(line and json.decode(line), "pairings.mjs printed no JSON:\n" .. text)
    for _, model in ipairs { "gpt-test", "claude-test", "gpt-resp" } do
      for _, case in ipairs { "anthropic_create_", "anthropic_stream_", "anthropic_tools_", "openai_create_",
        "openai_stream_", "openai_tools_" } do
        local v = r[case .. model]
        assert(v and not v.thrown, case .. model .. ": " .. tostring(v and v.message))
      end
      assert.equal("thinking it over", r["anthropic_tools_" .. model].thinking)
      assert.equal("streamed words here", r["openai_stream_" .. model].text)
      assert.equal("hello anthropic sdk", r["anthropic_create_" .. model].text)
    end
    assert.equal("sig123", r["anthropic_tools_claude-test"].sent_reasoning.signature)
    assert.equal("enc-rs-1", r["anthropic_tools_gpt-resp"].sent_reasoning.encrypted_content)
    assert.equal("BadRequestError", r.anthropic_bad_request.thrown)
    assert.same({ "gpt-resp", "renamed" }, r.anthropic_models.ids)
  end)
end)
