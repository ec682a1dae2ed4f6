-- The fast path (src/fast.c, lua/moongate/fast.lua) against the real
-- daemon and the strict mock: an OpenAI chat request passed through whole,
-- served in C once Lua has published its model's route. Each case checks
-- both that C served it (the worker's /stats: fast_path.served) or did not,
-- and that the answer is what Lua's path gives.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"
local uv = require "luv"
local W = require "support.ws_client"

local function fast_state(s)
  local res = assert(s:request("GET", "/stats", nil, { authorization = "Bearer sk-in-plain" }))
  return assert(json.decode(res.body).fast_path, res.body)
end

-- what the fast path did while fn ran: served and handed, as deltas
local function counted(s, fn)
  local a = fast_state(s)
  local r = fn()
  local b = fast_state(s)
  return r, b.served - a.served, b.handed - a.handed
end

local answer = { id = "chatcmpl-1", object = "chat.completion", created = 1, model = "m",
  choices = { { index = 0, message = { role = "assistant", content = "fast hello" }, finish_reason = "stop" } },
  usage = { prompt_tokens = 11, completion_tokens = 7, total_tokens = 18 } }

local function body(model, extra)
  local b = { model = model, messages = { { role = "user", content = "hi" } } }
  for k, v in pairs(extra or {}) do b[k] = v end
  return json.encode(b)
end

describe("fast path", function()
  local mock, s
  local config
  setup(function()
    mock = helpers.mock()
    config = string.format([[
return {
  log_format = "json",
  providers = {
    up = { kind = "openai", base_url = %q, api_key = "sk-fast-secret", retries = 1, retry_base_ms = 10 },
    spare = { kind = "openai", base_url = %q, retries = 0 },
  },
  keys = {
    { key = "sk-in-plain", name = "plain" },
    { key = "sk-in-limited", name = "limited", rpm = 1000 },
  },
  routes = {
    { match = "renamed", provider = "up", model = "upstream-name" },
    { match = "chain", provider = { "up", "spare" } },
    { match = "fixed-*", provider = "up" },
  },
}]], mock.url .. "/v1", mock.url .. "/v1")
    s = helpers.start { config = config }
  end)
  teardown(function()
    if s then s:stop_clean() end
    if mock then mock:stop() end
  end)
  before_each(function() mock:reset() end)

  local auth = { authorization = "Bearer sk-in-plain" }
  local function chat(b, headers)
    local h = { authorization = auth.authorization }
    for k, v in pairs(headers or {}) do h[k] = v end
    return assert(s:request("POST", "/v1/chat/completions", b, h, 10000))
  end

  it("serves a model's second request in C, the model rewritten in place and the rest as the client sent it", function()
    local text = '{"model":"renamed","messages":[{"role":"user","content":"caf\\u00e9  "}],"temperature":0.5,"x_extra":{"a":[1,2.50]}}'
    mock:queue { { json = answer } }
    local res, served = counted(s, function() return chat(text) end) -- Lua's path: publishes the route
    assert.equal(200, res.status)
    assert.equal(0, served)
    local lua_sent = mock:requests()[1].body
    mock:reset()
    mock:queue { { json = answer } }
    res, served = counted(s, function() return chat(text, { ["x-request-id"] = "fast-id-1" }) end)
    assert.equal(200, res.status)
    assert.equal(1, served)
    assert.same(answer, json.decode(res.body))
    assert.equal("application/json", res.headers["content-type"])
    assert.equal("no-store", res.headers["cache-control"])
    assert.equal("fast-id-1", res.headers["x-request-id"])
    local got = mock:requests()[1]
    -- byte for byte what Lua's path sent, with the model renamed
    assert.equal(lua_sent, got.body)
    assert.equal(text:gsub('"renamed"', '"upstream-name"'), got.body)
    assert.equal("Bearer sk-fast-secret", got.headers.authorization)
    assert.equal("fast-id-1", got.headers["x-request-id"])
    assert.equal("application/json", got.headers["content-type"])
  end)

  it("writes the access line and counts the tokens as Lua's path does", function()
    local function tokens()
      local m = assert(s:request("GET", "/metrics", nil, auth)).body
      for l in m:gmatch("[^\n]+") do
        if l:find("^moongate_tokens_total{") and l:find('key="plain"', 1, true) and l:find('model="fixed-log"', 1, true)
          and l:find('direction="in"', 1, true) then return tonumber(l:match("(%S+)$")) end
      end
      return 0
    end
    chat(body("fixed-log")) -- publishes
    local before = tokens()
    local from = #s.log
    mock:queue { { json = answer } }
    local res, served = counted(s, function() return chat(body("fixed-log"), { ["x-request-id"] = "fast-log-2" }) end)
    assert.equal(200, res.status)
    assert.equal(1, served)
    local line
    assert.is_true(client.run_until(function()
      for l in s.log:sub(from):gmatch("[^\n]+") do
        local v = l:sub(1, 1) == "{" and json.decode(l)
        if v and v.msg == "access" and v.request_id == "fast-log-2" then line = v end
      end
      return line ~= nil
    end, 3000))
    assert.equal(200, line.status)
    assert.equal("fixed-log", line.model)
    assert.equal("up", line.provider)
    assert.equal("plain", line.key)
    assert.equal(11, line.tokens_in)
    assert.equal(7, line.tokens_out)
    assert.is_number(line.upstream_ms)
    assert.equal(11, tokens() - before)
  end)

  it("notes what Lua's path notes: output tokens alone, and the upstream time of an answer it hands over", function()
    chat(body("fixed-note")) -- publishes
    local function access(id)
      local line
      client.run_until(function()
        for l in s.log:gmatch("[^\n]+") do
          local v = l:sub(1, 1) == "{" and json.decode(l)
          if v and v.msg == "access" and v.request_id == id then line = v end
        end
        return line ~= nil
      end, 3000)
      return assert(line, "no access line for " .. id)
    end
    mock:queue { { json = { id = "c", object = "chat.completion", created = 1, model = "m",
      choices = { { index = 0, message = { role = "assistant", content = "x" }, finish_reason = "stop" } },
      usage = { completion_tokens = 7 } } } }
    local _, served = counted(s, function() return chat(body("fixed-note"), { ["x-request-id"] = "note-1" }) end)
    assert.equal(1, served)
    local a = access("note-1")
    assert.equal(0, a.tokens_in)
    assert.equal(7, a.tokens_out)
    mock:queue { { delay_ms = 300, status = 400, json = { error = { message = "no", type = "invalid_request_error" } } } }
    local res, _, handed = counted(s, function() return chat(body("fixed-note"), { ["x-request-id"] = "note-2" }) end)
    assert.equal(400, res.status)
    assert.equal(1, handed)
    assert.is_true(access("note-2").upstream_ms >= 290)
  end)

  it("leaves to Lua what only Lua can judge, and Lua answers as before", function()
    chat(body("fixed-judge")) -- publishes
    mock:reset()
    local cases = {
      { '{"model":"fixed-judge","model":"fixed-judge","messages":[{"role":"user","content":"x"}]}', 400, "given twice" },
      { '{"model":"fixed-judge","messages":[{"role":"user","content":"x"}],"temperature":5}', 400, "above maximum" },
      { '{"model":"fixed-judge","messages":[]}', 400, "empty array" },
      { '{"model":"fixed-judge","messages":[{"role":"user","content":"x"}],"max_tokens":1.5}', 400, "max_tokens" },
      { '{"model":"fixed-judge","messages":[{"role":"user","content":"x"}],"stop":7}', 400, "stop" },
      { '{"mod\\u0065l":"fixed-judge","messages":[{"role":"user","content":"x"}]}', 200 },
      { '{"model":"fixed-judge","messages":[{"role":"user","content":"x"}],"stream":true}', 200 },
      { '{"model":"fixed-judge","messages":[{"role":"user","content":"x"}]', 400, "JSON" },
    }
    for _, c in ipairs(cases) do
      mock:queue { { json = answer } }
      local res, served = counted(s, function() return chat(c[1]) end)
      assert.equal(c[2], res.status, c[1])
      assert.equal(0, served, c[1])
      if c[3] then
        assert.matches(c[3], json.decode(res.body).error.message, 1, true)
        assert.equal(0, #mock:requests(), c[1])
      end
      mock:reset()
    end
    -- an Origin, another Host, a key with limits, no key: Lua's path
    for _, h in ipairs { { origin = "http://localhost:3000" }, { host = "evil.example" },
      { authorization = "Bearer sk-in-limited" }, { authorization = "Bearer nope" } } do
      mock:queue { { json = answer } }
      local res, served = counted(s, function() return chat(body("fixed-judge"), h) end)
      assert.equal(0, served, json.encode(h))
      if h.host then assert.equal(403, res.status)
      elseif h.authorization == "Bearer nope" then assert.equal(401, res.status)
      else assert.equal(200, res.status) end
      mock:reset()
    end
  end)

  it("leaves to Lua a Host it cannot read as Lua does, and a Host or key given twice", function()
    chat(body("fixed-twice")) -- publishes
    local function raw(headers)
      local res, served = counted(s, function()
        return assert(client.request(s.port, "POST", "/v1/chat/completions", body("fixed-twice"), headers, 10000))
      end)
      return res.status, served
    end
    mock:queue { { json = answer } }
    assert.same({ 200, 1 }, { raw { authorization = "Bearer sk-in-plain", host = "localhost" } })
    -- a bracketed name that is not an IPv6 literal; two Hosts; two keys
    assert.same({ 403, 0 }, { raw { authorization = "Bearer sk-in-plain", host = "[localhost]:80" } })
    assert.same({ 403, 0 }, { raw { authorization = "Bearer sk-in-plain", host = "evil.example", Host = "localhost" } })
    assert.same({ 401, 0 }, { raw { authorization = "Bearer nope", Authorization = "Bearer sk-in-plain" } })
    assert.same({ 401, 0 }, { raw { ["x-api-key"] = "nope", ["X-Api-Key"] = "sk-in-plain" } })
    mock:queue { { json = answer } }
    assert.same({ 200, 1 }, { raw { ["x-api-key"] = "sk-in-plain", host = "[::1]:8080" } })
  end)

  it("hands a failed answer to Lua as its first try: a retry, and an upstream's error in the client's format", function()
    chat(body("fixed-fail")) -- publishes
    mock:reset()
    mock:queue { { status = 503, json = { error = { message = "busy" } } }, { json = answer } }
    local res, served, handed = counted(s, function() return chat(body("fixed-fail")) end)
    assert.equal(200, res.status)
    assert.equal("fast hello", json.decode(res.body).choices[1].message.content)
    assert.equal(0, served)
    assert.equal(1, handed)
    assert.equal(2, #mock:requests()) -- the failed one and one retry, not the failed one twice
    mock:reset()
    mock:queue { { status = 400, json = { error = { message = "bad sk-fast-secret here", type = "invalid_request_error" } } } }
    res, served, handed = counted(s, function() return chat(body("fixed-fail")) end)
    assert.equal(400, res.status)
    local e = json.decode(res.body).error
    assert.matches("bad", e.message)
    assert.is_nil(e.message:find("sk-fast-secret", 1, true))
    assert.equal(1, handed)
    assert.equal(1, #mock:requests())
    -- a chain: the first provider's failure falls back to the next
    chat(body("chain"))
    mock:reset()
    mock:queue { { status = 500, json = { error = { message = "down" } } }, { status = 500, json = { error = { message = "down" } } },
      { json = answer } }
    res, served, handed = counted(s, function() return chat(body("chain")) end)
    assert.equal(200, res.status)
    assert.equal(1, handed)
    assert.equal(3, #mock:requests())
  end)

  it("survives a client that leaves while the upstream answers", function()
    chat(body("fixed-gone"))
    mock:queue { { delay_ms = 500, json = answer } }
    local c = assert(client.connect(s.port))
    c:send(client.request_bytes("POST", "/v1/chat/completions", body("fixed-gone"), auth))
    client.run_until(function() return #mock:requests() >= 1 end, 2000)
    c:close()
    client.run_until(function() return false end, 700)
    mock:queue { { json = answer } }
    local res, served = counted(s, function() return chat(body("fixed-gone")) end)
    assert.equal(200, res.status)
    assert.equal(1, served)
    assert.is_false(s.exited)
  end)

  it("starts again on a reload: the new config's route, not the kept one", function()
    local path = helpers.tmpfile(config)
    -- one daemon whose config file changes under it
    local f = assert(io.open(path, "wb")); f:write((config:gsub('model = "upstream%-name"', 'model = "first-name"'))); f:close()
    local d = helpers.start { args = { "--config", path } }
    local function go()
      return assert(d:request("POST", "/v1/chat/completions", body("renamed"), auth, 10000))
    end
    go(); go()
    assert.equal("first-name", json.decode(mock:requests()[2].body).model)
    assert.equal(1, fast_state(d).served)
    f = assert(io.open(path, "wb")); f:write(config); f:close()
    local from = #d.log
    uv.kill(d.pid, "sighup")
    assert.is_true(client.run_until(function() return d.log:find("reloaded in", from, true) ~= nil end, 10000), d.log)
    mock:reset()
    go(); go()
    assert.equal("upstream-name", json.decode(mock:requests()[1].body).model)
    assert.equal("upstream-name", json.decode(mock:requests()[2].body).model)
    assert.equal(1, fast_state(d).served) -- the new state's: its first request was Lua's
    d:stop_clean()
  end)

  it("answers 503 in the client's format to a request still waiting when shutdown_timeout is over", function()
    local d = helpers.start { config = string.format([[
return { shutdown_timeout = 0.5, providers = { up = { kind = "openai", base_url = %q, api_key = "k" } },
  routes = { { match = "*", provider = "up" } } }]], mock.url .. "/v1") }
    assert.equal(200, d:request("POST", "/v1/chat/completions", body("slow")).status) -- publishes
    mock:queue { { delay_ms = 5000, json = answer } }
    local c = assert(client.connect(d.port))
    c:send(client.request_bytes("POST", "/v1/chat/completions", body("slow")))
    assert.is_true(client.run_until(function() return #mock:requests() >= 2 end, 3000))
    d.handle:kill("sigterm")
    local res = assert(c:read_response(4000))
    assert.equal(503, res.status)
    assert.matches("shutting down", json.decode(res.body).error.message)
    assert.is_true(client.run_until(function() return d.exited end, 5000))
    assert.equal(0, d.code)
    c:close()
  end)

  it("never keeps a model the WS pool serves: it goes when the worker goes", function()
    local w = assert(W.connect(s.port, "/ws", { authorization = "Bearer sk-in-plain" }))
    w.on_message = function(text, self)
      local m = json.decode(text)
      if m.type == "heartbeat" then self:send('{"type":"heartbeat_response"}') end
      if m.type == "completion_request" then
        self:send(json.encode({ type = "completion_response", request_id = m.request_id, content = "from the tab",
          finish_reason = "stop" }))
      end
      return false
    end
    w:send(json.encode({ type = "client_ready", models = { "tab-model" } }))
    assert.is_true(client.run_until(function()
      local res = s:request("GET", "/health")
      return #(json.decode(res.body).ws_pool.workers or {}) == 1
    end, 5000))
    for _ = 1, 3 do
      local res, served = counted(s, function() return chat(body("tab-model")) end)
      assert.equal(200, res.status)
      assert.equal("from the tab", json.decode(res.body).choices[1].message.content)
      assert.equal(0, served)
    end
    w:close()
    assert.is_true(client.run_until(function()
      local res = chat(body("tab-model"))
      return res.status == 404
    end, 5000))
    assert.equal(0, #mock:requests())
  end)
end)
