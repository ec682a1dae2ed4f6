-- The logs against the real daemon (docs/LOGS.md): log_format = "json"
-- (every line of a run with traffic, errors and a reload parses, and the
-- access line carries each field), request ids (the client's own echoed and
-- sent upstream, a new one made when it sent none or an absurd one, the
-- same on the access line and on a retry's warn line, the official SDKs'
-- _request_id), and --verbose bodies with every secret redacted.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"

local INBOUND = "sk-inbound-logs-0123456789"   -- the gateway's own key, in the config
local UPKEY = "sk-up-logs-secret-abcdef123456" -- the upstream's key, in the config
local NEW_ID = "^req_[0-9A-Za-z]+$"            -- an id the gateway made

local function config(mock, extra)
  return string.format([[
return {
  %s
  keys = { { key = %q, name = "team-a" } },
  providers = {
    up = { kind = "openai", base_url = %q, api_key = %q, retries = 1, retry_base_ms = 20 },
    echo = { kind = "echo" },
  },
  routes = { { match = "echo", provider = "echo" }, { match = "*", provider = "up" } },
}]], extra or "", INBOUND, mock.url .. "/v1", UPKEY)
end

local function wait_log(server, pattern, from)
  local function find() return server._log:sub((from or 0) + 1):match(pattern) end
  client.run_until(function() return find() ~= nil end, 5000)
  return find()
end

local auth = { Authorization = "Bearer " .. INBOUND }
local function with(h)
  local out = { Authorization = auth.Authorization }
  for k, v in pairs(h or {}) do out[k] = v end
  return out
end

local function chat(server, body, headers)
  return assert(server:request("POST", "/v1/chat/completions", json.encode(body), with(headers), 15000))
end

local function hi(model, extra)
  local b = { model = model or "gpt-logs", messages = { { role = "user", content = "hello logs" } } }
  for k, v in pairs(extra or {}) do b[k] = v end
  return b
end

-- the x-request-id the mock received on its last API request
local function upstream_id(mock)
  local list = mock:requests()
  local last = list[#list]
  return last and last.headers and last.headers["x-request-id"]
end

-- every line of text, each checked by node's JSON.parse (strict): {n, bad}
local function node_parse(text)
  local path = helpers.tmpfile(text, ".log")
  local p = assert(io.popen("node -e '" .. [[
const fs = require("fs");
const lines = fs.readFileSync(process.argv[1], "utf8").split("\n").filter((l) => l.length);
const bad = [];
for (const l of lines) {
  try {
    const o = JSON.parse(l);
    if (typeof o !== "object" || typeof o.ts !== "string" || typeof o.level !== "string" ||
        typeof o.thread !== "string" || typeof o.msg !== "string") bad.push(l);
  } catch (e) { bad.push(l); }
}
console.log(JSON.stringify({ n: lines.length, bad }));
]] .. "' " .. path .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return assert(json.decode(out), out)
end

-- the decoded JSON lines of text
local function json_lines(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do out[#out + 1] = assert(json.decode(line), line) end
  return out
end

describe("log_format = json", function()
  local mock, server, log
  local ids = {}
  setup(function()
    mock = helpers.mock()
    server = helpers.start { config = config(mock, 'log_format = "json",'), workers = 2 }

    -- a plain request with the client's own id
    local res = chat(server, hi(), { ["x-request-id"] = "client-id-1" })
    assert(res.status == 200, res.body)
    ids.own, ids.own_header, ids.own_upstream = "client-id-1", res.headers["x-request-id"], upstream_id(mock)
    ids.own_request_id_header = res.headers["request-id"]
    -- a retry: the first try fails with a 500
    mock:reset()
    mock:queue { { status = 500, json = { error = { message = "boom for the retry", type = "server_error" } } } }
    res = chat(server, hi(), { ["x-request-id"] = "retry-id-2" })
    assert(res.status == 200, res.body)
    local tries = mock:requests()
    ids.retry_upstream = { tries[1] and tries[1].headers["x-request-id"], tries[2] and tries[2].headers["x-request-id"] }
    -- no id: one is made
    mock:reset()
    res = chat(server, hi())
    ids.made, ids.made_upstream = res.headers["x-request-id"], upstream_id(mock)
    -- absurd ids are replaced
    ids.absurd = {}
    for _, bad in ipairs { string.rep("x", 129), "has space", "bad\255\254bytes", "" } do
      mock:reset()
      res = chat(server, hi(), { ["x-request-id"] = bad })
      ids.absurd[#ids.absurd + 1] = { sent = bad, got = res.headers["x-request-id"], upstream = upstream_id(mock),
        status = res.status }
    end
    -- the longest sane one is kept
    mock:reset()
    res = chat(server, hi(), { ["x-request-id"] = string.rep("y", 128) })
    ids.longest, ids.longest_upstream = res.headers["x-request-id"], upstream_id(mock)
    -- errors: no key (401, Lua's), an unknown URL, a malformed request (C's 400)
    res = assert(server:request("POST", "/v1/chat/completions", json.encode(hi()), { ["x-request-id"] = "no-key-3" }))
    ids.unauthorized = { status = res.status, id = res.headers["x-request-id"] }
    res = assert(server:request("GET", "/no/such/path", nil, with()))
    ids.not_found = res.headers["x-request-id"]
    local c = server:connect()
    c:send("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n")
    res = c:read_response(3000)
    c:close()
    ids.malformed = res and { status = res.status, id = res.headers["x-request-id"] }
    -- a stream, and a model name with invalid UTF-8 and control characters
    chat(server, hi(nil, { stream = true, stream_options = { include_usage = true } }), { ["x-request-id"] = "stream-id-4" })
    chat(server, hi("evil\255\254\n\"\1model"), { ["x-request-id"] = "evil-id-5" })
    -- a reload, then more traffic
    local from = #server.log
    server.handle:kill("sighup")
    assert(wait_log(server, "reloaded in", from), server.log)
    assert(chat(server, hi("echo")).status == 200)
    log = server:stop_clean()
  end)
  teardown(function()
    if server and not server.exited then server:stop() end
    if mock then mock:stop() end
  end)

  it("writes every line as one JSON object that parses, with ts, level, thread and msg", function()
    local r = node_parse(log)
    assert.same({}, r.bad)
    assert.is_true(r.n >= 20, log)
    local lines = json_lines(log)
    assert.equal(r.n, #lines)
    local levels, msgs = {}, {}
    for _, l in ipairs(lines) do
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", l.ts)
      levels[l.level] = true
      msgs[#msgs + 1] = l.msg
    end
    assert.is_true(levels.info and levels.warn)
    local all = table.concat(msgs, "\n")
    assert.matches("listening on http://", all)
    assert.matches("reloaded in", all)
    assert.matches("stopped", all)
    assert.not_matches(INBOUND, log, 1, true)
    assert.not_matches(UPKEY, log, 1, true)
  end)

  it("gives the access line each field as its own member", function()
    local a
    for _, l in ipairs(json_lines(log)) do
      if l.msg == "access" and l.request_id == "client-id-1" then a = l end
    end
    assert.truthy(a, log)
    assert.equal("info", a.level)
    assert.matches("^w%d$", a.thread)
    assert.equal("POST", a.method)
    assert.equal("/v1/chat/completions", a.path)
    assert.equal(200, a.status)
    assert.is_number(a.ms)
    assert.is_true(a.bytes > 0)
    assert.equal("team-a", a.key)
    assert.equal("gpt-logs", a.model)
    assert.equal("up", a.provider)
    assert.equal(7, a.tokens_in) -- the mock's usage
    assert.equal(2, a.tokens_out)
    assert.is_number(a.upstream_ms)
    assert.is_number(a.ttfb_ms)
    assert.is_true(a.ttfb_ms <= a.ms + 0.1)
    assert.is_true(a.upstream_ms <= a.ms + 0.1)
    assert.is_nil(a.reason)
  end)

  it("escapes what a client wrote: invalid UTF-8 as U+FFFD, control characters, quotes", function()
    local a
    for _, l in ipairs(json_lines(log)) do
      if l.msg == "access" and l.request_id == "evil-id-5" then a = l end
    end
    assert.truthy(a, log)
    assert.equal("evil\239\191\189\239\191\189\n\"\1model", a.model)
    -- and no raw byte of it reached the log
    assert.is_nil(log:find("\255", 1, true))
    assert.is_nil(log:find("\1", 1, true))
  end)

  it("notes the reason of an error, and an access line for C's own errors", function()
    local got = {}
    for _, l in ipairs(json_lines(log)) do
      if l.msg == "access" then got[l.status] = got[l.status] or l end
    end
    assert.matches("Missing API key", got[401].reason)
    assert.matches("Unknown request URL", got[404].reason)
    assert.matches("malformed HTTP request", got[400].reason)
    assert.matches(NEW_ID, got[400].request_id)
  end)

  describe("request ids", function()
    it("echoes the client's own id, in x-request-id and request-id, and sends it upstream", function()
      assert.equal("client-id-1", ids.own_header)
      assert.equal("client-id-1", ids.own_request_id_header)
      assert.equal("client-id-1", ids.own_upstream)
      assert.equal(string.rep("y", 128), ids.longest)
      assert.equal(string.rep("y", 128), ids.longest_upstream)
    end)

    it("makes a new one when the client sent none, the same upstream", function()
      assert.matches(NEW_ID, ids.made)
      assert.equal(28, #ids.made)
      assert.equal(ids.made, ids.made_upstream)
    end)

    it("replaces an absurd one (too long, a space, bytes past ASCII, empty)", function()
      local seen = {}
      for _, a in ipairs(ids.absurd) do
        assert.equal(200, a.status)
        assert.matches(NEW_ID, a.got)
        assert.equal(a.got, a.upstream)
        assert.is_nil(seen[a.got])
        seen[a.got] = true
      end
    end)

    it("is on every answer, the errors Lua and C write too", function()
      assert.equal(401, ids.unauthorized.status)
      assert.equal("no-key-3", ids.unauthorized.id)
      assert.matches(NEW_ID, ids.not_found)
      assert.truthy(ids.malformed)
      assert.equal(400, ids.malformed.status)
      assert.matches(NEW_ID, ids.malformed.id)
    end)

    it("is the same on each try upstream, on the retry's warn line and on the access line", function()
      assert.same({ "retry-id-2", "retry-id-2" }, ids.retry_upstream)
      local warn, access
      for _, l in ipairs(json_lines(log)) do
        if l.level == "warn" and l.msg:find("retry 1", 1, true) then warn = l end
        if l.msg == "access" and l.request_id == "retry-id-2" then access = l end
      end
      assert.truthy(warn, log)
      assert.equal("retry-id-2", warn.request_id)
      assert.matches("boom for the retry", warn.msg)
      assert.truthy(access, log)
      assert.equal(200, access.status)
      -- a line of no request carries no id
      for _, l in ipairs(json_lines(log)) do
        if l.msg:find("listening on", 1, true) or l.msg:find("reloaded in", 1, true) then
          assert.is_nil(l.request_id)
        end
      end
    end)
  end)
end)

describe("log_format (text) and its config", function()
  it("puts the new fields and the request id on the text access line and on Lua's lines", function()
    local mock = helpers.mock()
    local server = helpers.start { config = config(mock) }
    mock:queue { { status = 503, json = { error = { message = "busy now", type = "server_error" } } } }
    local res = chat(server, hi(), { ["x-request-id"] = "text-id-1" })
    assert.equal(200, res.status)
    local line = wait_log(server, "[^\n]*access method=POST[^\n]*request_id=\"text%-id%-1\"[^\n]*")
    assert.truthy(line, server.log)
    assert.matches(' key="team%-a" model="gpt%-logs" provider="up" tokens_in=7 tokens_out=2 upstream_ms=%d+%.%d ttfb_ms=%d+%.%d request_id="text%-id%-1"', line)
    local warn = wait_log(server, "[^\n]* WARN  %[w1%] provider up failed[^\n]*")
    assert.truthy(warn, server.log)
    assert.matches(' request_id="text%-id%-1"$', warn)
    server:stop_clean()
    mock:stop()
  end)

  it("counts the tokens of a passed-through stream (C pipes its frames; the one with the usage reaches Lua)", function()
    local mock = helpers.mock()
    local server = helpers.start { config = config(mock, "") }
    mock:queue { { reply = { text = "one two three four five", stream = true } } }
    local res = chat(server, hi(nil, { stream = true, stream_options = { include_usage = true } }),
      { ["x-request-id"] = "pipe-id-1" })
    assert.equal(200, res.status)
    assert.matches('"usage":{', res.body, 1, true) -- the client got it, as the upstream wrote it
    local line = wait_log(server, "[^\n]*access method=POST[^\n]*request_id=\"pipe%-id%-1\"[^\n]*")
    assert.truthy(line, server.log)
    assert.matches(" tokens_in=7 tokens_out=5 ", line)
    server:stop_clean()
    mock:stop()
  end)

  it("refuses a log_format that is neither text nor json", function()
    local path = helpers.tmpfile('return { log_format = "xml" }')
    local p = assert(io.popen(string.format("MOONGATE_LUA_DIR=lua %s check --config %s 2>&1", helpers.bin, path)))
    local out = p:read("*a")
    p:close()
    assert.matches("log_format", out)
  end)
end)

describe("--verbose", function()
  local mock, server, log
  local BASIC = "dXNlcjpzZWNyZXQtYmFzaWMtcGFzcw=="
  local REFRESH = "rt-very-secret-777"
  local PASSWORD = "pw-secret-888"
  setup(function()
    mock = helpers.mock()
    server = helpers.start { config = config(mock), args = { "--verbose" } }
    -- the client pastes every kind of secret into its message
    local text = string.format('{"refresh_token":"%s","password":"%s"} Authorization: Basic %s and %s',
      REFRESH, PASSWORD, BASIC, INBOUND)
    -- the upstream answers with its own key in the text
    mock:queue { { reply = { text = "the key is " .. UPKEY .. " " .. text } } }
    local res = chat(server, { model = "gpt-logs", messages = { { role = "user", content = text } } },
      { ["x-request-id"] = "verbose-id-1" })
    assert(res.status == 200, res.body)
    -- streamed: each frame is redacted on its own (the mock's frames are a
    -- word each, so a header line is not one frame: docs/LOGS.md)
    local words = string.format('{"refresh_token":"%s"} %s %s', REFRESH, INBOUND, UPKEY)
    res = chat(server, { model = "gpt-logs", stream = true, messages = { { role = "user", content = words } } },
      { ["x-request-id"] = "verbose-id-2" })
    assert(res.status == 200, res.body)
    -- a body over 64 KiB
    res = chat(server, { model = "echo", messages = { { role = "user", content = string.rep("z", 100000) } } },
      { ["x-request-id"] = "verbose-id-3" })
    assert(res.status == 200, res.body)
    log = server:stop_clean()
  end)
  teardown(function()
    if server and not server.exited then server:stop() end
    if mock then mock:stop() end
  end)

  it("logs the request and response bodies, upstream's too, and the stream frames", function()
    assert.matches('DEBUG [^\n]*request body %(%d+ bytes%): {[^\n]*request_id="verbose%-id%-1"', log)
    assert.matches('DEBUG [^\n]*upstream up request http://[^\n]*request_id="verbose%-id%-1"', log)
    assert.matches('DEBUG [^\n]*upstream up answer 200 %(%d+ bytes%)[^\n]*request_id="verbose%-id%-1"', log)
    assert.matches('DEBUG [^\n]*response body 200 %(%d+ bytes%)[^\n]*request_id="verbose%-id%-1"', log)
    assert.matches('DEBUG [^\n]*upstream up frame [^\n]*request_id="verbose%-id%-2"', log)
    assert.matches('DEBUG [^\n]*stream frame [^\n]*request_id="verbose%-id%-2"', log)
  end)

  it("redacts every secret: config keys, Authorization values, credential fields", function()
    for _, secret in ipairs { INBOUND, UPKEY, REFRESH, PASSWORD, BASIC } do
      assert.is_nil(log:find(secret, 1, true), secret .. " is in the log")
    end
    assert.matches('refresh_token\\":\\"%[redacted%]', log)
    assert.matches("Authorization: %[redacted%]", log)
  end)

  it("cuts a body at 64 KiB and says so first", function()
    local line = log:match("[^\n]*request body %(%d+ bytes, cut at 65536%)[^\n]*")
    assert.truthy(line, "no cut body line")
    assert.truthy(line:find("...[cut]", 1, true) or line:find("(cut)", 1, true))
    assert.is_true(#line < 70000)
  end)
end)

describe("the official SDKs' request ids", function()
  it("are the gateway's x-request-id (openai) and request-id (anthropic)", function()
    local server = helpers.start {}
    local p = assert(io.popen(string.format("node spec/compat/request_id.mjs http://127.0.0.1:%d 2>&1", server.port)))
    local text = p:read("*a")
    p:close()
    local r = assert(json.decode(text:match("[^\n]*\n?$") or text), text)
    local log = server:stop_clean()
    local function logged(id)
      return log:find('request_id="' .. id .. '"', 1, true) ~= nil
    end
    for _, name in ipairs { "openai", "openai_with_response", "openai_stream", "anthropic" } do
      assert.is_nil(r[name].thrown, name .. ": " .. tostring(r[name].message))
      assert.matches(NEW_ID, r[name].request_id, 1, false, name)
      assert.equal("hello from the request id script", r[name].content)
      assert.is_true(logged(r[name].request_id), name)
    end
    assert.equal("sdk-own-id-42", r.openai_own.request_id)
    assert.is_true(logged("sdk-own-id-42"))
    for _, name in ipairs { "openai_error", "anthropic_error" } do
      assert.equal("NotFoundError", r[name].thrown)
      assert.matches(NEW_ID, r[name].request_id)
      assert.is_true(logged(r[name].request_id), name)
    end
  end)
end)

describe("request ids over TLS (libwebsockets: HTTP/2 and HTTP/1.1)", function()
  it("are on every answer and go upstream; the client's own is read over HTTP/1.1", function()
    local dir = helpers.self_signed()
    local mock = helpers.mock()
    local server = helpers.start { config = string.format([[
return { tls = { cert = %q, key = %q, http2 = true },
  providers = { up = { kind = "openai", base_url = %q, retries = 0 } },
  routes = { { match = "*", provider = "up" } } }]], dir .. "/cert.pem", dir .. "/key.pem", mock.url .. "/v1") }
    local body = json.encode(hi())
    local function curl(version, path, own)
      return helpers.sh(string.format("curl -sk -D - -o /dev/null --max-time 10 %s -H 'content-type: application/json' "
        .. "-H 'x-request-id: %s' https://127.0.0.1:%d%s -d %s", version, own, server.port, path, helpers.shell_quote(body)))
    end
    -- HTTP/1.1: the client's own
    local out = curl("--http1.1", "/v1/chat/completions", "tls-own-1")
    assert.matches("\nx%-request%-id: tls%-own%-1\r\n", out)
    assert.equal("tls-own-1", upstream_id(mock))
    -- HTTP/2: libwebsockets 4.1 hands over no header it has no token for
    -- (docs/LOGS.md), so the gateway makes one; it still goes upstream
    out = curl("--http2", "/v1/chat/completions", "tls-own-2")
    assert.matches("^HTTP/2 200", out)
    local id = out:match("\nx%-request%-id: (req_[0-9A-Za-z]+)\r\n")
    assert.truthy(id, out)
    assert.equal(id, upstream_id(mock))
    assert.matches("\nrequest%-id: " .. id .. "\r\n", out)
    -- an error answer, both ways
    for _, version in ipairs { "--http2", "--http1.1" } do
      out = curl(version, "/nope", "x")
      assert.matches("\nx%-request%-id: [^\r]+\r\n", out)
    end
    server:stop_clean()
    mock:stop()
  end)
end)
