-- What real HTTP clients need of the gateway, against the real daemon over
-- real sockets: HEAD on every GET resource (headers only, errors included,
-- the connection still usable after), GET /, CORS (preflights, the headers
-- on every answer to an allowed Origin, cors.allowed_origins), request
-- bodies compressed with gzip, deflate or zstd (bombs, corrupt data,
-- encodings not served), pipelined translated streams on one connection,
-- and the access log. The same over TLS (libwebsockets) with curl.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"
local ffi = require "ffi"

local sh = helpers.sh

local hi = json.encode { model = "echo", messages = { { role = "user", content = "hello there" } } }
local hi_stream = json.encode { model = "echo", stream = true, messages = { { role = "user", content = "one two three" } } }

-- compression, made the way clients make it -----------------------------------

local function through(cmd, data)
  local path = helpers.tmpfile(data, ".bin")
  local out = sh(cmd .. " < " .. path)
  os.remove(path)
  return out
end
local function gzip(data) return through("gzip -c -n", data) end
local function zstd(data) return through("zstd -q -c", data) end

ffi.cdef [[
unsigned long compressBound(unsigned long sourceLen);
int compress2(uint8_t *dest, unsigned long *destLen, const uint8_t *source, unsigned long sourceLen, int level);
]]
local zlib = ffi.load("z")
-- HTTP's "deflate": zlib's format (RFC 1950)
local function deflate(data)
  local cap = ffi.new("unsigned long[1]", zlib.compressBound(#data))
  local buf = ffi.new("uint8_t[?]", cap[0])
  assert(zlib.compress2(buf, cap, data, #data, 6) == 0)
  return ffi.string(buf, cap[0])
end
-- raw deflate (RFC 1951), which some clients send as "deflate": a gzip
-- member without its 10-byte header and 8-byte trailer
local function raw_deflate(data) return gzip(data):sub(11, -9) end

-- raw exchanges ----------------------------------------------------------------

local function raw(server, bytes, pred, timeout)
  local c = server:connect()
  c:send(bytes)
  c:wait(pred, timeout or 5000)
  local buf = c.buf
  c:close()
  return buf
end

-- the head of the first response in buf: status, headers (lower-case), and
-- whatever came after its blank line
local function split_head(buf)
  local e = buf:find("\r\n\r\n", 1, true)
  if not e then return nil end
  local head = buf:sub(1, e - 1)
  local headers = {}
  for line in head:gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  return tonumber(head:match("^HTTP/1%.1 (%d%d%d)")), headers, buf:sub(e + 4)
end

-- the first line matching pattern that the daemon logged after byte `from`
-- of its log (#server.log before the request), once it is there
local function wait_log(server, pattern, from)
  local function find() return server._log:sub((from or 0) + 1):match(pattern) end
  client.run_until(function() return find() ~= nil end, 3000)
  return find()
end

-- OPTIONS: a 204 has no body and no content-length, so the spec client
-- (which reads a body of unknown length to the end) asks the server to close
local function options(server, path, headers)
  headers.Connection = "close"
  return server:request("OPTIONS", path, nil, headers)
end

local function access_lines(log)
  local out = {}
  for line in log:gmatch("[^\n]*access method=[^\n]*") do out[#out + 1] = line end
  return out
end

describe("HTTP for real clients", function()
  local server
  setup(function()
    server = helpers.start { config = "return { max_body_bytes = 65536, request_timeout = 1 }" }
  end)
  teardown(function() server:stop_clean() end)

  describe("HEAD", function()
    local stable = { "/", "/v1/models", "/v1/models/echo", "/models", "/models/echo" }
    local varying = { "/health", "/stats" } -- uptime and counters change the length

    it("answers every GET resource with GET's status and headers and no body", function()
      for _, path in ipairs(stable) do
        local get = assert(server:request("GET", path))
        local status, headers, rest = split_head(raw(server, client.request_bytes("HEAD", path, nil, { Connection = "close" }),
          function(c) return c.eof end))
        assert.equal(get.status, status, path)
        assert.equal(200, status, path)
        assert.equal(get.headers["content-type"], headers["content-type"], path)
        assert.equal(get.headers["content-length"], headers["content-length"], path)
        assert.equal(get.headers["cache-control"], headers["cache-control"], path)
        assert.equal("", rest, path) -- not one byte of body, up to the close
      end
      for _, path in ipairs(varying) do
        local status, headers, rest = split_head(raw(server, client.request_bytes("HEAD", path, nil, { Connection = "close" }),
          function(c) return c.eof end))
        assert.equal(200, status, path)
        assert.equal("application/json", headers["content-type"], path)
        assert.truthy(tonumber(headers["content-length"]) > 10, path)
        assert.equal("", rest, path)
      end
    end)

    it("answers an unknown path and a POST endpoint with the error's headers only", function()
      for _, case in ipairs { { "/nope", 404 }, { "/v1/chat/completions", 405 }, { "/v1/models/nope", 404 } } do
        local status, headers, rest = split_head(raw(server, client.request_bytes("HEAD", case[1], nil, { Connection = "close" }),
          function(c) return c.eof end))
        assert.equal(case[2], status, case[1])
        assert.equal("application/json", headers["content-type"])
        assert.truthy(tonumber(headers["content-length"]) > 0) -- the GET's error body's length
        assert.equal("", rest, case[1])
      end
    end)

    it("answers the errors C writes itself (431, 408) with headers only, and logs them as HEAD", function()
      local from = #server.log
      -- a head over max_header_bytes: C's 431
      local status, headers, rest = split_head(raw(server, "HEAD /health HTTP/1.1\r\nHost: localhost\r\nX-Big: " ..
        string.rep("a", 20000) .. "\r\n\r\n", function(c) return c.eof end))
      assert.equal(431, status)
      assert.truthy(tonumber(headers["content-length"]) > 0)
      assert.equal("", rest)
      assert.truthy(wait_log(server, "access method=HEAD path=\"/health\" status=431", from), server.log)
      -- headers that stop coming (request_timeout = 1): C's 408
      from = #server.log
      status, headers, rest = split_head(raw(server, "HEAD /v1/models HTTP/1.1\r\nHost: localhost\r\nX-A: b\r\n",
        function(c) return c.eof end, 5000))
      assert.equal(408, status)
      assert.truthy(tonumber(headers["content-length"]) > 0)
      assert.equal("", rest)
      assert.truthy(wait_log(server, "access method=HEAD path=\"/v1/models\" status=408", from), server.log)
      -- a request line too long for the parser, HEAD all the same
      status, _, rest = split_head(raw(server, "HEAD /" .. string.rep("p", 20000) .. " HTTP/1.1\r\nHost: localhost\r\n\r\n",
        function(c) return c.eof end))
      assert.equal(431, status)
      assert.equal("", rest)
    end)

    it("leaves a keep-alive connection ready for the next request, after a 200 and after a 404", function()
      local c = server:connect()
      -- pipelined: any body byte after a HEAD answer would be read as the next status line
      c:send(client.request_bytes("HEAD", "/") .. client.request_bytes("HEAD", "/nope") ..
        client.request_bytes("GET", "/health"))
      assert.truthy(c:wait(function(cc)
        return cc.buf:find('"status":"ok"', 1, true) and cc.buf:sub(-1) == "}"
      end, 5000))
      local s1, _, rest = split_head(c.buf)
      assert.equal(200, s1)
      local s2, _, rest2 = split_head(rest)
      assert.equal(404, s2)
      assert.matches("^HTTP/1%.1 200 ", rest2)
      c.buf = rest2
      local r3 = assert(c:read_response(2000))
      assert.equal("ok", json.decode(r3.body).status)
      -- and it still serves
      c:send(client.request_bytes("GET", "/v1/models"))
      assert.equal(200, assert(c:read_response(2000)).status)
      c:close()
    end)

    it("works with Node's http client on one keep-alive socket (HEAD /, HEAD 404, then GET)", function()
      local script = [[
const http = require("http");
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const port = process.argv[2];
function req(method, path) {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: "127.0.0.1", port, method, path, agent }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, body, reused: r.reusedSocket }));
    });
    r.on("error", reject);
    r.end();
  });
}
(async () => {
  const out = [];
  out.push(await req("HEAD", "/"));
  out.push(await req("HEAD", "/nope"));
  out.push(await req("GET", "/health"));
  out.push(await req("HEAD", "/v1/models"));
  out.push(await req("GET", "/"));
  console.log(JSON.stringify(out.map((r) => [r.status, r.body.length, r.reused])));
  agent.destroy();
})().catch((e) => { console.log("ERROR " + e.message); process.exit(1); });
]]
      local path = helpers.tmpfile(script, ".js")
      local out = sh(string.format("node %s %d", path, server.port))
      os.remove(path)
      local res = json.decode(out)
      assert(res, "node said: " .. out)
      assert.same({ 200, 0, false }, res[1])
      assert.same({ 404, 0, true }, res[2])
      assert.equal(200, res[3][1])
      assert.truthy(res[3][2] > 0)
      assert.is_true(res[3][3])
      assert.same({ 200, 0, true }, res[4])
      assert.equal(200, res[5][1])
      assert.is_true(res[5][3])
    end)
  end)

  it("answers GET / with 200 JSON naming the gateway and its endpoints", function()
    local res = assert(server:request("GET", "/"))
    assert.equal(200, res.status)
    assert.equal("application/json", res.headers["content-type"])
    local body = json.decode(res.body)
    assert.equal("moongate", body.name)
    assert.matches("^%d+%.%d+%.%d+", body.version)
    assert.equal("/health", body.links.health)
    assert.equal("/v1/models", body.links.models)
    assert.equal("/v1/chat/completions", body.links.chat_completions)
    assert.equal("/v1/messages", body.links.messages)
  end)

  it("keeps error bodies ASCII JSON: bytes it echoes from a path or a model id that are not text come as \\xHH", function()
    for _, case in ipairs {
      { "GET /caf\195\169/\255 HTTP/1.1", "Unknown request URL: GET /caf\\xc3\\xa9/\\xff." },
      { "GET /v1/models/%ff%00x HTTP/1.1", "The model `\\xff\\x00x` does not exist" },
      { "GET /ws/\254 HTTP/1.1", "/ws/\\xfe is a WebSocket endpoint" },
    } do
      local status, _, rest = split_head(raw(server, case[1] .. "\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        function(c) return c.eof end))
      assert.truthy(status == 404 or status == 426, case[1])
      assert.is_nil(rest:find("[\128-\255]"), rest)
      assert.matches(case[2], json.decode(rest).error.message, 1, true)
    end
  end)

  describe("CORS (default: pages served from this machine)", function()
    local page = "http://localhost:5173"

    it("answers an allowed preflight with 204 and what the page may send", function()
      local res = assert(options(server, "/v1/messages", {
        Origin = page, ["Access-Control-Request-Method"] = "POST",
        ["Access-Control-Request-Headers"] = "content-type, x-api-key, anthropic-version, x-stainless-os" }))
      assert.equal(204, res.status)
      assert.equal(page, res.headers["access-control-allow-origin"])
      assert.matches("POST", res.headers["access-control-allow-methods"])
      assert.equal("content-type, x-api-key, anthropic-version, x-stainless-os", res.headers["access-control-allow-headers"])
      assert.truthy(tonumber(res.headers["access-control-max-age"]) >= 600)
      assert.equal("origin", res.headers["vary"]:lower())
      assert.equal("", res.body)
      assert.is_nil(res.headers["content-length"])
      -- without Access-Control-Request-Headers: a list that covers both SDKs
      for _, origin in ipairs { "http://127.0.0.1:8080", "https://[::1]:3000", "http://LOCALHOST" } do
        res = assert(options(server, "/v1/chat/completions", { Origin = origin }))
        assert.equal(204, res.status)
        assert.equal(origin, res.headers["access-control-allow-origin"])
        local allowed = res.headers["access-control-allow-headers"]
        for _, h in ipairs { "authorization", "x-api-key", "anthropic-version", "anthropic-beta", "content-type" } do
          assert.matches(h, allowed, 1, true)
        end
      end
    end)

    it("refuses a preflight from another origin with 403 in the path's error format, and no CORS headers", function()
      for _, origin in ipairs { "https://evil.example", "http://localhost.evil.example", "null" } do
        local res = assert(options(server, "/v1/messages", { Origin = origin,
          ["Access-Control-Request-Method"] = "POST" }))
        assert.equal(403, res.status)
        assert.is_nil(res.headers["access-control-allow-origin"])
        assert.is_nil(res.headers["access-control-allow-methods"])
        local e = json.decode(res.body)
        assert.equal("error", e.type) -- Anthropic's shape on /v1/messages
        assert.equal("permission_error", e.error.type)
        assert.matches("not allowed", e.error.message)
      end
      local res = assert(options(server, "/v1/chat/completions", { Origin = "https://evil.example" }))
      assert.equal(403, res.status)
      assert.equal("origin_not_allowed", json.decode(res.body).error.code) -- OpenAI's shape
    end)

    it("puts the headers on a 200, a 404, a stream and a 413 to an allowed origin, and only to it", function()
      local function check(res, what)
        assert.equal(page, res.headers["access-control-allow-origin"], what)
        assert.equal("origin", (res.headers["vary"] or ""):lower(), what)
        assert.matches("retry-after", res.headers["access-control-expose-headers"], 1, true)
      end
      local res = assert(server:request("GET", "/v1/models", nil, { Origin = page }))
      assert.equal(200, res.status)
      check(res, "200")
      res = assert(server:request("GET", "/nothing", nil, { Origin = page }))
      assert.equal(404, res.status)
      check(res, "404")
      res = assert(server:request("POST", "/v1/chat/completions", hi_stream, { Origin = page }))
      assert.equal(200, res.status)
      assert.equal("chunked", res.headers["transfer-encoding"])
      check(res, "stream")
      local data = client.sse_data(res.body)
      assert.equal("[DONE]", data[#data])
      res = assert(server:request("POST", "/v1/chat/completions", string.rep("x", 70000), { Origin = page }))
      assert.equal(413, res.status)
      check(res, "413")
      -- from no page: served, with no CORS header but the Vary every answer has
      res = assert(server:request("GET", "/v1/models"))
      assert.equal(200, res.status)
      assert.is_nil(res.headers["access-control-allow-origin"])
      assert.is_nil(res.headers["access-control-expose-headers"])
      assert.equal("origin", res.headers["vary"])
      -- from a foreign page: refused (see below), with no CORS header either
      res = assert(server:request("GET", "/v1/models", nil, { Origin = "https://evil.example" }))
      assert.equal(403, res.status)
      assert.is_nil(res.headers["access-control-allow-origin"])
      assert.is_nil(res.headers["access-control-expose-headers"])
      assert.equal("origin", res.headers["vary"])
    end)

    it("refuses every request from another origin with 403 in the path's format before anything runs", function()
      local evil = { Origin = "https://evil.example", ["Content-Type"] = "text/plain" }
      -- a cross-site form-like POST (no preflight): Anthropic's shape on /v1/messages
      local res = assert(server:request("POST", "/v1/messages", json.encode {
        model = "echo", max_tokens = 5, messages = { { role = "user", content = "spend my quota" } } }, evil))
      assert.equal(403, res.status)
      local e = json.decode(res.body)
      assert.equal("permission_error", e.error.type)
      assert.equal("Origin https://evil.example is not allowed to call this gateway: add it to cors.allowed_origins in the config.",
        e.error.message)
      assert.not_matches("spend my quota", res.body)
      -- OpenAI's elsewhere; the body is not even read: not a 400 for bad JSON, not a 413 for a bomb
      res = assert(server:request("POST", "/v1/chat/completions", "{not json", evil))
      assert.equal(403, res.status)
      assert.equal("origin_not_allowed", json.decode(res.body).error.code)
      res = assert(server:request("POST", "/v1/chat/completions", sh("head -c 10000000 /dev/zero | zstd -q -c"),
        { Origin = "https://evil.example", ["Content-Encoding"] = "zstd" }))
      assert.equal(403, res.status)
      -- a GET, an unknown path, and a HEAD (headers only)
      for _, path in ipairs { "/v1/models", "/health", "/nope" } do
        res = assert(server:request("GET", path, nil, evil))
        assert.equal(403, res.status, path)
        assert.is_nil(res.headers["access-control-allow-origin"], path)
      end
      local status, headers, rest = split_head(raw(server, client.request_bytes("HEAD", "/v1/models", nil,
        { Origin = "https://evil.example", Connection = "close" }), function(c) return c.eof end))
      assert.equal(403, status)
      assert.truthy(tonumber(headers["content-length"]) > 0)
      assert.equal("", rest)
      -- an Origin that is not text: echoed as \xHH, the answer stays ASCII JSON
      local bytes = "GET /v1/models HTTP/1.1\r\nHost: localhost\r\nOrigin: http://\255\254x.example\r\nConnection: close\r\n\r\n"
      status, headers, rest = split_head(raw(server, bytes, function(c) return c.eof end))
      assert.equal(403, status)
      assert.is_nil(rest:find("[\128-\255]"))
      assert.matches("Origin http://\\xff\\xfex.example is not allowed", json.decode(rest).error.message, 1, true)
      -- the same requests without an Origin are served as always
      assert.equal(200, assert(server:request("GET", "/v1/models")).status)
      res = assert(server:request("POST", "/v1/messages", json.encode {
        model = "echo", max_tokens = 5, messages = { { role = "user", content = "mine" } } },
        { ["anthropic-version"] = "2023-06-01", ["x-api-key"] = "sk-ant-none" }))
      assert.equal(200, res.status)
    end)

    it("refuses a request with more than one Origin header, even of allowed pages", function()
      for _, origins in ipairs { { page, page }, { page, "http://localhost:3000" }, { page, "" } } do
        local bytes = "GET /v1/models HTTP/1.1\r\nHost: localhost\r\nOrigin: " .. origins[1] .. "\r\nOrigin: " ..
          origins[2] .. "\r\nConnection: close\r\n\r\n"
        local status, headers, rest = split_head(raw(server, bytes, function(c) return c.eof end))
        assert.equal(403, status, origins[2])
        assert.is_nil(headers["access-control-allow-origin"])
        assert.equal("origin_not_allowed", json.decode(rest).error.code)
        assert.matches("one Origin header", json.decode(rest).error.message, 1, true)
      end
      -- a preflight too
      local bytes = "OPTIONS /v1/messages HTTP/1.1\r\nHost: localhost\r\nOrigin: " .. page .. "\r\nOrigin: " .. page ..
        "\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n"
      local status, headers = split_head(raw(server, bytes, function(c) return c.eof end))
      assert.equal(403, status)
      assert.is_nil(headers["access-control-allow-methods"])
    end)

    it("sends Vary: Origin on every answer, with an Origin or without, the errors C writes included", function()
      local function vary(bytes, what)
        local status, headers = split_head(raw(server, bytes, function(c) return c.eof end, 5000))
        assert.truthy(status, what)
        assert.equal("origin", headers["vary"], what)
        return status
      end
      local function req(method, path, body, headers)
        headers = headers or {}
        headers.Connection = "close"
        return client.request_bytes(method, path, body, headers)
      end
      assert.equal(200, vary(req("GET", "/health"), "200"))
      assert.equal(200, vary(req("HEAD", "/"), "HEAD"))
      assert.equal(404, vary(req("GET", "/nope"), "404"))
      assert.equal(200, vary(req("POST", "/v1/chat/completions", hi_stream), "stream"))
      assert.equal(204, vary(req("OPTIONS", "/v1/messages", nil, { Origin = page }), "preflight"))
      assert.equal(204, vary(req("OPTIONS", "/v1/messages"), "OPTIONS without Origin"))
      assert.equal(403, vary(req("GET", "/health", nil, { Origin = "https://evil.example" }), "403"))
      assert.equal(413, vary(req("POST", "/v1/chat/completions", string.rep("x", 70000)), "413"))
      assert.equal(400, vary("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n", "C's 400"))
      assert.equal(408, vary("POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n{", "C's 408"))
    end)

    it("puts them on the errors C writes itself: a malformed chunked body (400), a stalled body (408)", function()
      local bytes = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nOrigin: " .. page ..
        "\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
      local status, headers, rest = split_head(raw(server, bytes, function(c) return c.eof end))
      assert.equal(400, status)
      assert.equal(page, headers["access-control-allow-origin"])
      assert.matches("malformed HTTP request", json.decode(rest).error.message)
      -- request_timeout = 1: a body that stops coming
      bytes = "POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nOrigin: " .. page .. "\r\nContent-Length: 100\r\n\r\n{\"mo"
      status, headers, rest = split_head(raw(server, bytes, function(c) return c.eof end, 5000))
      assert.equal(408, status)
      assert.equal(page, headers["access-control-allow-origin"])
      assert.equal("error", json.decode(rest).type) -- Anthropic's shape on /v1/messages
    end)
  end)

  describe("compressed request bodies", function()
    local function post(path, body, encoding, headers)
      headers = headers or {}
      headers["Content-Encoding"] = encoding
      return assert(server:request("POST", path, body, headers))
    end

    it("decodes gzip, deflate (zlib and raw), zstd and a list of them before Lua sees the body", function()
      local cases = {
        { "gzip", gzip(hi) }, { "x-gzip", gzip(hi) }, { "deflate", deflate(hi) },
        { "deflate", raw_deflate(hi) }, { "zstd", zstd(hi) }, { "identity", hi },
        { "GZIP", gzip(hi) }, { "gzip, zstd", zstd(gzip(hi)) }, { "deflate, identity", deflate(hi) },
      }
      for _, case in ipairs(cases) do
        assert.are_not.equal(hi, case[1] ~= "identity" and case[2] or "", case[1])
        local res = post("/v1/chat/completions", case[2], case[1])
        assert.equal(200, res.status, case[1] .. ": " .. res.body)
        assert.equal("hello there", json.decode(res.body).choices[1].message.content, case[1])
      end
      -- a gzip stream of two members (gzip a; gzip b; cat) is one body
      local half = math.floor(#hi / 2)
      local res = post("/v1/chat/completions", gzip(hi:sub(1, half)) .. gzip(hi:sub(half + 1)), "gzip")
      assert.equal(200, res.status)
      -- and an Anthropic request, streamed
      local body = json.encode { model = "echo", max_tokens = 20, stream = true, messages = { { role = "user", content = "squeezed" } } }
      res = post("/v1/messages", zstd(body), "zstd")
      assert.equal(200, res.status)
      assert.matches("squeezed", res.body)
    end)

    it("applies max_body_bytes to the decoded size: a bomb gets 413 at once, without being inflated", function()
      local pid_status = "/proc/" .. server.pid .. "/status"
      local function peak_kb()
        local f = io.open(pid_status)
        if not f then return nil end
        local kb = tonumber(f:read("*a"):match("VmHWM:%s*(%d+)"))
        f:close()
        return kb
      end
      local before = peak_kb()
      -- 1 GiB of zeros in about 36 KB of zstd, and 60 MB in about 58 KB of gzip
      local bomb = sh("head -c 1073741824 /dev/zero | zstd -q -1 -c")
      assert.truthy(#bomb < 65536)
      local res = post("/v1/messages", bomb, "zstd")
      assert.equal(413, res.status)
      local e = json.decode(res.body)
      assert.equal("request_too_large", e.error.type) -- Anthropic's shape
      assert.matches("once decoded: the limit is 65536 bytes", e.error.message)
      local gz = sh("head -c 60000000 /dev/zero | gzip -c -n")
      assert.truthy(#gz < 65536)
      res = post("/v1/chat/completions", gz, "gzip")
      assert.equal(413, res.status)
      assert.equal("request_too_large", json.decode(res.body).error.code) -- OpenAI's shape
      -- decoding stopped at the limit: the daemon never held the gigabyte
      local after = peak_kb()
      if before and after then
        assert.truthy(after - before < 200 * 1024, string.format("peak RSS grew from %d to %d kB", before, after))
      end
      -- just under the limit still passes; a little over does not
      local fits = json.encode { model = "echo", messages = { { role = "user", content = string.rep("a", 60000) } } }
      assert.equal(200, post("/v1/chat/completions", gzip(fits), "gzip").status)
      local over = json.encode { model = "echo", messages = { { role = "user", content = string.rep("a", 66000) } } }
      assert.equal(413, post("/v1/chat/completions", gzip(over), "gzip").status)
    end)

    it("answers corrupt or cut-short data with 400, and an encoding it does not serve with 415 naming it", function()
      local gz = gzip(hi)
      for _, case in ipairs {
        { "gzip", "this is not gzip" }, { "gzip", gz:sub(1, #gz - 12) }, { "gzip", gz .. "trailing" },
        { "deflate", "\120\156garbage" }, { "zstd", zstd(hi):sub(1, 20) }, { "zstd", "nope" },
      } do
        local res = post("/v1/chat/completions", case[2], case[1])
        assert.equal(400, res.status, case[1])
        local e = json.decode(res.body).error
        assert.equal("invalid_content_encoding", e.code)
        assert.matches("could not be decoded", e.message)
      end
      local res = post("/v1/messages", "\x1b\x1a\x00\x00", "br")
      assert.equal(415, res.status)
      local e = json.decode(res.body)
      assert.equal("error", e.type) -- Anthropic's shape
      assert.matches("Content-Encoding br is not supported", e.error.message, 1, true)
      res = post("/v1/chat/completions", gzip(hi), "gzip, compress")
      assert.equal(415, res.status)
      assert.matches("Content-Encoding compress is not supported", json.decode(res.body).error.message, 1, true)
    end)

    it("closes the connection after any body it could not decode: what follows in a pipeline is not served", function()
      local after = client.request_bytes("POST", "/v1/chat/completions", gzip(hi), { ["Content-Encoding"] = "gzip" })
      for _, case in ipairs {
        { "br", "xx", 415 }, { "gzip", "this is not gzip", 400 },
        { "zstd", sh("head -c 1000000 /dev/zero | zstd -q -c"), 413 },
        { "gzip, gzip, gzip, gzip, gzip", "xx", 415 },
      } do
        local buf = raw(server, client.request_bytes("POST", "/v1/chat/completions", case[2],
          { ["Content-Encoding"] = case[1] }) .. after, function(c) return c.eof end)
        local status, headers, rest = split_head(buf)
        assert.equal(case[3], status, case[1])
        assert.equal("close", headers["connection"], case[1])
        assert.equal(tonumber(headers["content-length"]), #rest, case[1]) -- and nothing after it
      end
      -- a fresh connection serves the same pipeline's second request
      local c = server:connect()
      c:send(after .. after)
      for _ = 1, 2 do
        local res = assert(c:read_response(3000))
        assert.equal(200, res.status)
        assert.equal("hello there", json.decode(res.body).choices[1].message.content)
      end
      c:close()
    end)

    it("names too many codings as such, takes any number of identity lines, and escapes a coding it echoes", function()
      -- five gzip: the fifth is refused for being one too many, not for being gzip
      local res = post("/v1/chat/completions", "xx", "gzip, identity, gzip, gzip, gzip, gzip")
      assert.equal(415, res.status)
      local e = json.decode(res.body).error
      assert.equal("unsupported_content_encoding", e.code)
      assert.matches("Content-Encoding lists more than 4 codings", e.message, 1, true)
      assert.not_matches("gzip is not supported", e.message, 1, true)
      -- four, over several lines, are undone
      local bytes = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Encoding: gzip, gzip\r\n" ..
        "Content-Encoding: identity\r\nContent-Encoding: gzip\r\nContent-Encoding: gzip\r\n"
      local body = gzip(gzip(gzip(gzip(hi))))
      local status, _, rest = split_head(raw(server, bytes .. "Content-Length: " .. #body .. "\r\nConnection: close\r\n\r\n" .. body,
        function(c) return c.eof end))
      assert.equal(200, status, rest)
      -- a hundred identity lines are still the body as it is
      bytes = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n" .. string.rep("Content-Encoding: identity\r\n", 100) ..
        "Content-Length: " .. #hi .. "\r\nConnection: close\r\n\r\n" .. hi
      status, _, rest = split_head(raw(server, bytes, function(c) return c.eof end))
      assert.equal(200, status, rest)
      assert.equal("hello there", json.decode(rest).choices[1].message.content)
      -- bytes that are not text, echoed as \xHH: the answer stays ASCII JSON
      for _, path in ipairs { "/v1/chat/completions", "/v1/messages" } do
        bytes = "POST " .. path .. " HTTP/1.1\r\nHost: localhost\r\nContent-Encoding: \255\254\"zz\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        status, _, rest = split_head(raw(server, bytes, function(c) return c.eof end))
        assert.equal(415, status)
        assert.is_nil(rest:find("[\128-\255]"), rest)
        local m = json.decode(rest).error.message
        assert.matches('Content-Encoding \\xff\\xfe"zz is not supported', m, 1, true)
      end
      bytes = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Encoding: gzip\255\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
      status, _, rest = split_head(raw(server, bytes, function(c) return c.eof end))
      assert.equal(415, status)
      assert.is_nil(rest:find("[\128-\255]"), rest)
    end)
  end)

  describe("access log", function()
    it("writes one escaped line per request with method, path, status, model, provider, time and bytes", function()
      local from = #server.log
      local c = server:connect()
      c:send(client.request_bytes("POST", "/v1/chat/completions?api_key=sk-querysecret1234", hi,
        { Authorization = "Bearer sk-headersecret5678", Cookie = "session=cookiesecret9" }))
      local res = assert(c:read_response(3000))
      assert.equal(200, res.status)
      local received = c.received
      c:close()
      local line = wait_log(server, "[^\n]*access method=POST path=\"/v1/chat/completions\" status=200[^\n]*", from)
      assert.truthy(line, server.log)
      assert.matches(" INFO ", line)
      assert.matches('model="echo"', line, 1, true)
      assert.matches('provider="echo"', line, 1, true)
      assert.matches(" ms=%d+%.%d ", line)
      assert.equal(received, tonumber(line:match(" bytes=(%d+)")))
      assert.not_matches("reason=", line)
      assert.not_matches("sk%-querysecret", server.log)
      assert.not_matches("api_key", server.log)
      assert.not_matches("headersecret", server.log)
      assert.not_matches("cookiesecret", server.log)
    end)

    it("logs the gateway's own 4xx with their reason, and escapes what a client wrote", function()
      local from = #server.log
      assert.equal(404, assert(server:request("GET", "/no/such\"path")).status)
      local line = wait_log(server, "[^\n]*access method=GET path=\"/no/such\\\"path\" status=404[^\n]*", from)
      assert.truthy(line, server.log)
      assert.matches('reason="Unknown request URL: GET /no/such\\"path. Please check the URL for typos."', line, 1, true)
      -- a bad body: 400
      from = #server.log
      assert.equal(400, assert(server:request("POST", "/v1/messages", "{not json")).status)
      line = wait_log(server, "[^\n]*access method=POST path=\"/v1/messages\" status=400[^\n]*", from)
      assert.truthy(line, server.log)
      assert.matches('reason="[^"]+"', line)
      -- a model name that tries to start a log line of its own
      from = #server.log
      local evil = "gpt-evil\nINFO  [w1] access method=GET path=\"/forged\" status=200\r\27[31m"
      local res = assert(server:request("POST", "/v1/chat/completions", json.encode {
        model = evil, messages = { { role = "user", content = "x" } } }))
      assert.equal(404, res.status)
      line = wait_log(server, "[^\n]*access method=POST path=\"/v1/chat/completions\" status=404[^\n]*", from)
      assert.truthy(line, server.log)
      assert.matches('model="gpt-evil\\x0aINFO  [w1] access method=GET path=\\"/forged\\" status=200\\x0d\\x1b[31m"', line, 1, true)
      assert.not_matches('\nINFO  %[w1%] access method=GET path="/forged"', server.log)
      assert.not_matches("\27", server.log)
      for _, l in ipairs(access_lines(server.log)) do
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT[^ ]+ INFO  %[w%d+%] access method=%u+ path=\"", l)
      end
    end)

    it("logs a request the client left before sending all of it as 499, once its request line is in", function()
      local function send_and_leave(bytes)
        local c = server:connect()
        c:send(bytes)
        client.run_until(function() return false end, 100)
        c:close()
      end
      local reason = 'reason="the client left before sending the whole request"'
      local from = #server.log
      send_and_leave("POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: appl")
      local line = wait_log(server, "[^\n]*access method=POST path=\"/v1/messages\" status=499[^\n]*", from)
      assert.truthy(line, server.log)
      assert.matches(reason, line, 1, true)
      assert.matches(" bytes=0", line, 1, true)
      from = #server.log
      send_and_leave("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{\"model\":")
      line = wait_log(server, "[^\n]*access method=POST path=\"/v1/chat/completions\" status=499[^\n]*", from)
      assert.truthy(line, server.log)
      assert.matches(reason, line, 1, true)
      -- after a whole request on the same connection: the one it left unfinished
      from = #server.log
      send_and_leave("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\nGET /v1/models HTTP/1.1\r\n")
      line = wait_log(server, "[^\n]*access method=GET path=\"/v1/models\" status=499[^\n]*", from)
      assert.truthy(line, server.log)
      assert.truthy(wait_log(server, "access method=GET path=\"/health\" status=200", from))
      -- less than a request line is no request: no line
      from = #server.log
      send_and_leave("POST /v1/mess")
      send_and_leave("")
      assert.equal(200, assert(server:request("GET", "/v1/models?marker")).status)
      assert.truthy(wait_log(server, "access method=GET path=\"/v1/models\" status=200", from))
      assert.equal(0, #access_lines(server.log:sub(from + 1)) - 1, server.log:sub(from + 1))
    end)

    it("logs the errors C writes itself, with their reason", function()
      local bytes = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n"
      raw(server, bytes, function(c) return c.eof end)
      local line = wait_log(server, "[^\n]*access method=[^\n]*status=400[^\n]*malformed HTTP request[^\n]*")
      assert.truthy(line, server.log)
    end)
  end)
end)

describe("CORS with cors.allowed_origins", function()
  local server
  setup(function()
    server = helpers.start { config = [[return { cors = { allowed_origins = { "https://app.example.com", "https://*.example.org" } } }]] }
  end)
  teardown(function() server:stop_clean() end)

  it("allows the configured origins (globs) and no longer the loopback default", function()
    for _, origin in ipairs { "https://app.example.com", "https://chat.example.org" } do
      local res = assert(options(server, "/v1/messages", { Origin = origin }))
      assert.equal(204, res.status)
      assert.equal(origin, res.headers["access-control-allow-origin"])
      res = assert(server:request("GET", "/v1/models", nil, { Origin = origin }))
      assert.equal(origin, res.headers["access-control-allow-origin"])
    end
    for _, origin in ipairs { "http://localhost:5173", "https://app.example.com.evil.net", "http://app.example.com" } do
      local res = assert(options(server, "/v1/messages", { Origin = origin }))
      assert.equal(403, res.status, origin)
      res = assert(server:request("GET", "/v1/models", nil, { Origin = origin }))
      assert.equal(403, res.status)
      assert.is_nil(res.headers["access-control-allow-origin"], origin)
    end
    assert.equal(200, assert(server:request("GET", "/v1/models")).status)
  end)

  it("is checked like every config key", function()
    local path = helpers.tmpfile([[return { cors = { allowed_origins = { "https://a.example/", 3 }, nope = 1 } }]])
    local out = sh(helpers.bin .. " check --config " .. path .. " 2>&1 | cat")
    assert.matches("cors.nope: unknown key", out, 1, true)
    assert.matches("cors.allowed_origins[2]: expected a string, got integer", out, 1, true)
    assert.matches('cors.allowed_origins[1]: "https://a.example/" is not an origin', out, 1, true)
  end)
end)

describe("CORS with allowed_origins = { \"*\" }", function()
  local server
  setup(function() server = helpers.start { config = [[return { cors = { allowed_origins = { "*" } } }]] } end)
  teardown(function() server:stop_clean() end)

  it("allows any origin, echoing it", function()
    local res = assert(options(server, "/v1/chat/completions", { Origin = "https://anything.example" }))
    assert.equal(204, res.status)
    assert.equal("https://anything.example", res.headers["access-control-allow-origin"])
  end)
end)

describe("pipelined translated streams on one connection", function()
  local mock, server
  setup(function()
    mock = helpers.mock()
    server = helpers.start { config = string.format([[
return {
  providers = { claude = { kind = "anthropic", base_url = %q, api_key = "sk-ant-pipesecret", retries = 0 } },
  routes = { { match = "claude-*", provider = "claude" } },
}]], mock.url) }
  end)
  teardown(function()
    if server then server:stop_clean() end
    if mock then mock:stop() end
  end)
  before_each(function() mock:reset() end)

  it("answers three /v1/chat/completions streams sent in one write, each whole, in order", function()
    local c = server:connect()
    local reqs = {}
    for i = 1, 3 do
      reqs[i] = client.request_bytes("POST", "/v1/chat/completions", json.encode {
        model = "claude-test", stream = true, messages = { { role = "user", content = "answer number " .. i } } })
    end
    c:send(table.concat(reqs))
    for i = 1, 3 do
      local res = assert(c:read_response(10000))
      assert.equal(200, res.status, res.body)
      assert.matches("^text/event%-stream", res.headers["content-type"])
      local data = client.sse_data(res.body)
      assert.equal("[DONE]", data[#data])
      local text = {}
      for k = 1, #data - 1 do
        local d = json.decode(data[k]).choices[1]
        if d and d.delta and d.delta.content then text[#text + 1] = d.delta.content end
      end
      assert.equal("answer number " .. i, table.concat(text))
    end
    -- and the connection still serves
    c:send(client.request_bytes("GET", "/health"))
    assert.equal(200, assert(c:read_response(3000)).status)
    c:close()
    assert.equal(3, #mock:requests())
  end)

  it("carries out nothing for a refused Origin (no upstream call), and serves Claude Code's requests (no Origin)", function()
    local body = json.encode { model = "claude-x", max_tokens = 5, messages = { { role = "user", content = "spend" } } }
    -- what a page on another site can send without a preflight: text/plain
    for _, path in ipairs { "/v1/messages", "/v1/chat/completions", "/messages" } do
      local res = assert(server:request("POST", path, body, { Origin = "https://evil.example", ["Content-Type"] = "text/plain" }))
      assert.equal(403, res.status, path)
    end
    assert.same({}, mock:requests())
    -- Claude Code / the Anthropic SDK under Node: no Origin; served
    local res = assert(server:request("POST", "/v1/messages", json.encode {
      model = "claude-x", max_tokens = 5, stream = true, messages = { { role = "user", content = "hi" } } }, {
        ["anthropic-version"] = "2023-06-01", ["x-api-key"] = "sk-ant-client", ["anthropic-beta"] = "claude-code-20250219",
        ["User-Agent"] = "claude-cli/2.1.332 (external, cli)", ["x-app"] = "cli", ["anthropic-dangerous-direct-browser-access"] = "true" }))
    assert.equal(200, res.status, res.body)
    assert.matches("message_stop", res.body, 1, true)
    assert.equal("origin", res.headers["vary"])
    assert.is_nil(res.headers["access-control-allow-origin"])
    assert.equal(1, #mock:requests())
  end)

  it("logs the provider used, and an upstream's error with its reason", function()
    assert.equal(200, assert(server:request("POST", "/v1/chat/completions", json.encode {
      model = "claude-log", messages = { { role = "user", content = "x" } } })).status)
    local line = wait_log(server, "[^\n]*access method=POST[^\n]*model=\"claude%-log\"[^\n]*")
    assert.truthy(line, server.log)
    assert.matches('status=200', line, 1, true)
    assert.matches('provider="claude"', line, 1, true)
    mock:queue { { status = 400, json = { type = "error", error = { type = "invalid_request_error", message = "upstream says no" } } } }
    local res = assert(server:request("POST", "/v1/messages", json.encode {
      model = "claude-refused", max_tokens = 5, messages = { { role = "user", content = "x" } } }))
    assert.equal(400, res.status)
    line = wait_log(server, "[^\n]*access method=POST[^\n]*model=\"claude%-refused\"[^\n]*")
    assert.truthy(line, server.log)
    assert.matches('status=400', line, 1, true)
    assert.matches('provider="claude"', line, 1, true)
    assert.matches('reason="[^"]*upstream says no', line)
    assert.not_matches("pipesecret", server.log)
  end)
end)

describe("compressed bodies with the default body limit (10 MiB)", function()
  local server
  setup(function() server = helpers.start { config = "return { request_timeout = 5 }" } end)
  teardown(function() server:stop_clean() end)

  local function big_json(content)
    return json.encode { model = "echo", messages = { { role = "user", content = content } } }
  end

  it("refuses a body that decodes to more than 200 times its size plus 1 MiB (413), and closes", function()
    -- 5 MiB of JSON in about 200 bytes of zstd: under max_body_bytes, but a bomb's ratio
    local bomb = zstd(big_json(string.rep("a", 5 * 1024 * 1024)))
    assert.truthy(#bomb < 1000)
    local c = server:connect()
    c:send(client.request_bytes("POST", "/v1/messages", bomb, { ["Content-Encoding"] = "zstd" }) ..
      client.request_bytes("GET", "/health"))
    local res = assert(c:read_response(5000))
    assert.equal(413, res.status)
    assert.equal("close", res.headers["connection"])
    local e = json.decode(res.body)
    assert.equal("request_too_large", e.error.type)
    assert.matches("more than 200 times the size it was sent in (plus 1 MiB)", e.error.message, 1, true)
    assert.truthy(c:wait(function(cc) return cc.eof end, 3000))
    assert.equal("", c.buf) -- the pipelined GET was not served
    c:close()
    -- the same in gzip, and as a 1.5 MiB body
    res = assert(server:request("POST", "/v1/chat/completions", gzip(big_json(string.rep("b", 3 * 1024 * 1024))),
      { ["Content-Encoding"] = "gzip" }))
    assert.equal(413, res.status)
    res = assert(server:request("POST", "/v1/chat/completions", gzip(big_json(string.rep("b", 1536 * 1024))),
      { ["Content-Encoding"] = "gzip" }))
    assert.equal(413, res.status)
  end)

  it("still takes compressed bodies of any size up to the limit that compress like real requests", function()
    -- under 1 MiB once decoded: any ratio
    local res = assert(server:request("POST", "/v1/chat/completions", zstd(big_json(string.rep("a", 1000 * 1000))),
      { ["Content-Encoding"] = "zstd" }))
    assert.equal(200, res.status)
    -- 8 MiB of words, compressed about 4 times
    local rnd = 12345
    local function random(n) -- Park and Miller's: exact in doubles
      rnd = rnd * 16807 % 2147483647
      return rnd % n
    end
    local words = {}
    for i = 1, 5000 do
      local w = {}
      for k = 1, 3 + i % 7 do w[k] = string.char(97 + random(26)) end
      words[i] = table.concat(w)
    end
    local text = {}
    for i = 1, 1300000 do text[i] = words[1 + random(#words)] end
    local body = big_json(table.concat(text, " "):sub(1, 8 * 1024 * 1024))
    for _, case in ipairs { { "zstd", zstd(body) }, { "gzip", gzip(body) } } do
      assert.truthy(#case[2] * 2 < #body and #case[2] * 200 > #body, case[1] .. ": " .. #case[2])
      res = assert(server:request("POST", "/v1/chat/completions", case[2], { ["Content-Encoding"] = case[1] }, 20000))
      assert.equal(200, res.status, case[1])
      assert.equal(#body - #big_json(""), #json.decode(res.body).choices[1].message.content, case[1])
    end
  end)

  it("spends about a megabyte of work on a bomb: 300 pipelined ones do not stall the worker", function()
    -- 10 MiB + 1 once decoded, in a few hundred bytes
    local bomb = zstd(string.rep("a", 10 * 1024 * 1024 + 1))
    local one = client.request_bytes("POST", "/v1/chat/completions", bomb, { ["Content-Encoding"] = "zstd" })
    local c = server:connect()
    c:send(string.rep(one, 300))
    -- meanwhile another client is answered at once
    local t0 = require("luv").hrtime()
    local res = assert(server:request("GET", "/health", nil, nil, 3000))
    local ms = (require("luv").hrtime() - t0) / 1e6
    assert.equal(200, res.status)
    assert.truthy(ms < 1000, string.format("/health took %.0f ms", ms))
    assert.truthy(c:wait(function(cc) return cc.eof end, 3000))
    local _, n = c.buf:gsub("HTTP/1%.1 413", "")
    assert.equal(1, n) -- one answer, then the connection closed
    c:close()
  end)
end)

describe("a log nobody reads", function()
  local uv = require "luv"

  -- The daemon with its stderr on a FIFO whose read end this process holds
  -- open (O_RDWR: the open does not wait) and does not read: its log fills
  -- the pipe after a few hundred lines. helpers.start reads the log for
  -- the port, so the daemon is started here, on a port picked beforehand.
  local function start_on_fifo()
    local d = { exited = false }
    d.fifo = os.tmpname()
    os.remove(d.fifo)
    assert(os.execute("mkfifo " .. d.fifo) == 0)
    d.rfd = assert(uv.fs_open(d.fifo, "r+", 0))
    local wfd = assert(uv.fs_open(d.fifo, "w", 0))
    local probe = uv.new_tcp()
    probe:bind("127.0.0.1", 0)
    d.port = probe:getsockname().port
    probe:close()
    local env = { "PATH=" .. os.getenv("PATH"), "MOONGATE_LUA_DIR=" .. (os.getenv("MOONGATE_LUA_DIR") or "lua") }
    for _, name in ipairs { "ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "LSAN_OPTIONS" } do
      if os.getenv(name) then env[#env + 1] = name .. "=" .. os.getenv(name) end
    end
    d.handle = helpers.spawn(helpers.bin, { args = { "serve", "--listen", "127.0.0.1:" .. d.port, "--workers", "1" },
      env = env, stdio = { nil, nil, wfd } }, function(code, signal) d.exited, d.code, d.signal = true, code, signal end)
    uv.fs_close(wfd)
    assert(d.handle, "cannot start the daemon")
    assert.truthy(client.run_until(function()
      local c = client.connect(d.port)
      if c then c:close() return true end
      return d.exited
    end, 15000) and not d.exited)
    return d
  end

  -- n requests on one keep-alive connection, each answered in time; a
  -- long path makes each access line about 600 bytes
  local function requests(d, n)
    local c = assert(client.connect(d.port))
    local path = "/" .. string.rep("p", 400)
    for i = 1, n do
      c:send(client.request_bytes("GET", path))
      local res, err = c:read_response(3000)
      assert(res, string.format("request %d of %d: %s", i, n, tostring(err)))
      assert.equal(404, res.status)
    end
    c:close()
  end

  local function stats(d)
    return json.decode(assert(client.request(d.port, "GET", "/stats")).body)
  end

  local function stop(d, limit_ms)
    local t0 = uv.hrtime()
    d.handle:kill("sigterm")
    client.run_until(function() return d.exited end, 20000)
    local ms = (uv.hrtime() - t0) / 1e6
    if not d.exited then d.handle:kill("sigkill") client.run_until(function() return d.exited end, 5000) end
    d.handle:close()
    assert.truthy(d.exited, "the daemon did not stop on SIGTERM")
    assert.truthy(ms < limit_ms, string.format("stopping took %.0f ms", ms))
    assert.equal(0, d.code)
    assert.equal(0, d.signal)
  end

  it("answers 3000 requests and stops on SIGTERM while nobody reads its stderr", function()
    local d = start_on_fifo()
    local ok, err = pcall(function()
      requests(d, 3000)
      assert.truthy(stats(d).log_lines_dropped > 0)
      stop(d, 10000)
    end)
    if not d.exited then d.handle:kill("sigkill") end
    uv.fs_close(d.rfd)
    os.remove(d.fifo)
    assert(ok, err)
  end)

  it("counts every line it had to drop, and says how many once the reader catches up", function()
    local d = start_on_fifo()
    local log = ""
    local pipe = uv.new_pipe(false)
    local ok, err = pcall(function()
      requests(d, 3000)
      local dropped = stats(d).log_lines_dropped
      assert.truthy(dropped > 0)
      -- now read: what was queued comes, then the notice
      pipe:open(d.rfd)
      pipe:read_start(function(_, data) if data then log = log .. data end end)
      local function tally()
        local lines, said = #access_lines(log), 0
        for n in log:gmatch("WARN  %[log%] (%d+) log lines? dropped %(the log's reader is too slow%)") do
          said = said + tonumber(n)
        end
        return lines, said
      end
      -- 3000 requests and the /stats: each line written, or counted in a notice
      assert.truthy(client.run_until(function()
        local lines, said = tally()
        return lines + said == 3001 and said >= dropped
      end, 10000), string.format("%d lines written, %d said dropped, %d counted", tally(), select(2, tally()), dropped))
      -- the log goes on after the gap
      assert.equal(200, assert(client.request(d.port, "GET", "/health")).status)
      assert.truthy(client.run_until(function() return log:find('access method=GET path="/health" status=200') end, 3000))
      stop(d, 5000)
    end)
    if not d.exited then d.handle:kill("sigkill") end
    pipe:close()
    os.remove(d.fifo)
    assert(ok, err)
  end)
end)

describe("request bytes the parser refuses or drops (fuzz/h1.c found or checks them)", function()
  local server
  setup(function()
    server = helpers.start { config = "return { max_header_bytes = 1024 }" }
  end)
  teardown(function() server:stop_clean() end)

  -- the status the connection is answered with, the bytes written at once
  -- or in pieces of `piece` bytes (separate reads)
  local function status_of(bytes, piece)
    local c = server:connect()
    if piece then
      for i = 1, #bytes, piece do
        c:send(bytes:sub(i, i + piece - 1))
        client.run_until(function() return false end, 20)
      end
    else
      c:send(bytes)
    end
    c:wait(function(cc) return cc.eof or (cc.buf:find("\r\n\r\n", 1, true) and not piece) end, 5000)
    c:wait(function(cc) return cc.eof end, 3000)
    local status = split_head(c.buf)
    c:close()
    return status, c.buf
  end

  it("refuses a control byte (NUL) in a header value with 400, and stays up", function()
    assert.equal(400, status_of("GET /health HTTP/1.1\r\nHost: localhost\r\nX-A: \0b\r\nX-B: c\r\n\r\n"))
    assert.equal(400, status_of("GET /health HTTP/1.1\r\nHost: localhost\r\nX-A: \1\r\n\r\n"))
    assert.equal(200, server:request("GET", "/health").status)
  end)

  it("refuses a space before a header's colon (\"Transfer-Encoding : chunked\") with 400", function()
    -- (read as a header named "transfer-encoding ", the chunk would be the next request)
    assert.equal(400, status_of("GET /health HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n" ..
      "0\r\n\r\n"))
  end)

  it("drops a chunked body's trailers: they never become headers", function()
    local body = hi
    local bytes = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" ..
      "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" .. string.format("%x\r\n%s\r\n", #body, body) ..
      "0\r\nX-Request-Id: from-trailer\r\nOrigin: https://evil.example\r\nX-Last: 1\r\n\r\n"
    for _, piece in ipairs { false, 7 } do
      local status, buf = status_of(bytes, piece or nil)
      local _, headers = split_head(buf)
      assert.equal(200, status, buf)
      assert.not_equal("from-trailer", headers["x-request-id"])
    end
  end)

  it("answers a head over max_header_bytes with 431 however it arrives, whatever follows the limit", function()
    -- a byte http-parser refuses, past the limit: seen first when the
    -- head comes in one read, after the limit when it comes in pieces
    local bytes = "GET /health HTTP/1.1\r\nHost: localhost\r\nX-A: " .. string.rep("a", 4000) .. "\1\r\n\r\n"
    assert.equal(431, status_of(bytes))
    assert.equal(431, status_of(bytes, 500))
    assert.equal(431, status_of(bytes, 1000))
    -- the same byte before the limit: 400 both ways
    bytes = "GET /health HTTP/1.1\r\nHost: localhost\r\nX-A: " .. string.rep("a", 100) .. "\1" .. string.rep("a", 4000) .. "\r\n\r\n"
    assert.equal(400, status_of(bytes))
    assert.equal(400, status_of(bytes, 50))
    -- and a head just within it is served
    local head = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-A: "
    bytes = head .. string.rep("a", 1024 - #head - 4) .. "\r\n\r\n"
    assert.equal(1024, #bytes)
    assert.equal(200, status_of(bytes))
    assert.equal(200, status_of(bytes, 100))
  end)

  it("refuses a head whose last LF is another byte: nothing of it reaches the WebSocket", function()
    local up = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    assert.equal(400, status_of(up:sub(1, -2) .. "X"))
    assert.equal(400, status_of("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\rGET /health HTTP/1.1\r\n\r\n"))
    -- a well-made upgrade still is one
    local c = server:connect()
    c:send(up)
    c:wait(function(cc) return cc.buf:find("\r\n\r\n", 1, true) end, 5000)
    assert.equal(101, (split_head(c.buf)))
    c:close()
  end)
end)

describe("access log below info", function()
  it("writes no access line at log level warn", function()
    -- helpers.start waits for the "listening" line, which is info: start it here
    local uv = require "luv"
    local probe = uv.new_tcp()
    probe:bind("127.0.0.1", 0)
    local port = probe:getsockname().port
    probe:close()
    local log, exited, code = "", false, nil
    local stderr = uv.new_pipe(false)
    local env = { "PATH=" .. os.getenv("PATH"), "MOONGATE_LOG_LEVEL=warn",
      "MOONGATE_LUA_DIR=" .. (os.getenv("MOONGATE_LUA_DIR") or "lua") }
    for _, name in ipairs { "ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS" } do
      if os.getenv(name) then env[#env + 1] = name .. "=" .. os.getenv(name) end
    end
    local handle = helpers.spawn(helpers.bin, { args = { "serve", "--listen", "127.0.0.1:" .. port, "--workers", "1" },
      env = env, stdio = { nil, nil, stderr } }, function(c) exited, code = true, c end)
    stderr:read_start(function(_, data) if data then log = log .. data end end)
    assert.truthy(client.run_until(function()
      local c = client.connect(port)
      if c then c:close() return true end
      return exited
    end, 15000) and not exited, log)
    assert.equal(200, assert(client.request(port, "GET", "/health")).status)
    assert.equal(404, assert(client.request(port, "GET", "/nope")).status)
    handle:kill("sigterm")
    client.run_until(function() return exited end, 15000)
    client.run_until(function() return false end, 50)
    stderr:close()
    handle:close()
    assert.equal(0, code, log)
    assert.not_matches("Sanitizer", log)
    assert.not_matches("runtime error:", log)
    assert.not_matches("access method=", log)
    assert.not_matches("listening", log) -- the level held
  end)
end)

describe("HEAD, CORS and compressed bodies over TLS (libwebsockets)", function()
  local server, base
  setup(function()
    local dir = helpers.self_signed()
    server = helpers.start { config = string.format([[
return { tls = { cert = %q, key = %q, http2 = true } }]], dir .. "/cert.pem", dir .. "/key.pem") }
    base = string.format("https://127.0.0.1:%d", server.port)
  end)
  teardown(function() server:stop_clean() end)

  -- what curl printed: with -i / -I, each response's head (then its body)
  local function curl(args) return sh("curl -sk --max-time 10 " .. args) end

  for _, version in ipairs { "--http1.1", "--http2" } do
    it("answers HEAD with headers only, then serves the same connection (" .. version .. ")", function()
      local from = #server.log
      local out = curl(string.format("%s -I %s/ --next -k %s -I -w '[connects %%{num_connects}]' %s/nope " ..
        "--next -k %s -i -w '[connects %%{num_connects}]' %s/health", version, base, version, base, version, base))
      -- curl kept the first connection for the other two
      local connects = {}
      for n in out:gmatch("%[connects (%d+)%]") do connects[#connects + 1] = tonumber(n) end
      assert.same({ 0, 0 }, connects)
      out = out:gsub("%[connects %d+%]", "")
      local statuses = {}
      for st in out:gmatch("HTTP/[%d%.]+ (%d%d%d)") do statuses[#statuses + 1] = tonumber(st) end
      assert.same({ 200, 404, 200 }, statuses)
      -- GET /'s length, as GET would say
      local get_len = curl(string.format("%s -i %s/", version, base)):match("content%-length: (%d+)\r\n")
      assert.truthy(get_len)
      assert.equal(get_len, out:match("content%-length: (%d+)\r\n"))
      -- the heads, then only the GET's body: nothing of / or of the 404's
      local body = out:match("\r\n\r\n({.*})$")
      assert.truthy(body, out)
      assert.equal("ok", json.decode(body).status)
      assert.not_matches("moongate\",\"links", out)
      assert.not_matches("Unknown request URL", out)
      assert.truthy(wait_log(server, "access method=HEAD path=\"/nope\" status=404", from))
    end)

    it("puts CORS headers on answers and decodes gzip bodies (" .. version .. ")", function()
      local path = helpers.tmpfile(gzip(hi), ".gz")
      local out = curl(string.format("%s -i -H 'Origin: http://localhost:3000' -H 'Content-Encoding: gzip' " ..
        "-H 'Content-Type: application/json' --data-binary @%s %s/v1/chat/completions", version, path, base))
      os.remove(path)
      assert.matches("access%-control%-allow%-origin: http://localhost:3000\r\n", out)
      assert.equal("hello there", json.decode(out:match("\r\n\r\n(.*)$")).choices[1].message.content)
      out = curl(string.format("%s -i -X OPTIONS -H 'Origin: http://localhost:3000' -H 'Access-Control-Request-Headers: x-api-key' %s/v1/messages",
        version, base))
      assert.matches("^HTTP/[%d%.]+ 204", out)
      assert.matches("access%-control%-allow%-headers: x%-api%-key\r\n", out)
      out = curl(string.format("%s -i -X OPTIONS -H 'Origin: https://evil.example' %s/v1/messages", version, base))
      assert.matches("^HTTP/[%d%.]+ 403", out)
      assert.not_matches("access%-control", out)
      assert.equal("permission_error", json.decode(out:match("\r\n\r\n(.*)$")).error.type)
      -- refused for any request, as over cleartext; and two Origins (lws joins them) too
      out = curl(string.format("%s -i -H 'Origin: https://evil.example' %s/v1/models", version, base))
      assert.matches("^HTTP/[%d%.]+ 403", out)
      assert.matches("vary: origin\r\n", out)
      out = curl(string.format("%s -i -H 'Origin: http://localhost:3000' -H 'Origin: http://localhost:3000' %s/v1/models",
        version, base))
      assert.matches("^HTTP/[%d%.]+ 403", out)
      assert.not_matches("access%-control", out)
      out = curl(string.format("%s -i %s/v1/models", version, base))
      assert.matches("^HTTP/[%d%.]+ 200", out)
      assert.matches("vary: origin\r\n", out)
    end)
  end

  it("logs an HTTP/2 stream the client cancels before its body is whole as 499", function()
    local from = #server.log
    local script = [[
const http2 = require("http2");
const s = http2.connect("https://127.0.0.1:" + process.argv[2], { rejectUnauthorized: false });
s.on("error", () => {});
const r = s.request({ ":method": "POST", ":path": "/v1/messages", "content-type": "application/json", "content-length": "100" });
r.on("error", () => {});
r.write('{"model":');
setTimeout(() => { r.close(http2.constants.NGHTTP2_CANCEL); setTimeout(() => { s.close(); console.log("done"); }, 300); }, 200);
]]
    local path = helpers.tmpfile(script, ".js")
    local out = sh(string.format("node %s %d", path, server.port))
    os.remove(path)
    assert.matches("done", out)
    local line = wait_log(server, "[^\n]*access method=POST path=\"/v1/messages\" status=499[^\n]*", from)
    assert.truthy(line, server.log)
    assert.matches('reason="the client left before sending the whole request"', line, 1, true)
  end)
end)
