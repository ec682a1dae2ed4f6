-- The two clients that carry plain http:// upstream requests (the built-in
-- one, src/hc.c, and libcurl with `http_client = "curl"`) against an
-- upstream scripted byte by byte: framing (chunked, close-delimited,
-- interim answers), faults (resets, truncation, broken chunks, stalls) and
-- connection reuse. Every case runs on both clients and must end the same.
local helpers = require("spec.helpers")
local client = helpers.client
local json = require("cjson")
local uv = require("luv")

-- A raw upstream in this process: each request (head and Content-Length
-- body read whole) takes the next scripted answer: {bytes = "...", parts =
-- {{bytes, delay_ms}, ...}, close = true (after writing), drop = true
-- (close without a byte), hang = true (never answer)}. t.requests lists
-- {conn = n, head = "...", body = "..."}.
local function raw_upstream()
  local t = { answers = {}, requests = {}, conns = {}, socks = {} }
  local server = uv.new_tcp()
  assert(server:bind("127.0.0.1", 0))
  t.port = server:getsockname().port
  local nconn = 0
  local function serve(sock, id)
    local buf = ""
    local function next_request()
      local he = buf:find("\r\n\r\n", 1, true)
      if not he then return end
      local head = buf:sub(1, he + 3)
      local len = tonumber(head:lower():match("\ncontent%-length: *(%d+)")) or 0
      if t.answers[1] and t.answers[1].early and not t.answered_early then
        -- answered on the head alone, the body left unread (a 413)
        t.answered_early = true
        t.requests[#t.requests + 1] = { conn = id, head = head, body = "" }
        local a = table.remove(t.answers, 1)
        sock:read_stop()
        sock:write(a.bytes)
        return
      end
      if #buf < he + 3 + len then return end
      local body = buf:sub(he + 4, he + 3 + len)
      buf = buf:sub(he + 4 + len)
      t.requests[#t.requests + 1] = { conn = id, head = head, body = body }
      local a = table.remove(t.answers, 1) or { drop = true }
      if a.hang then return end
      if a.drop then sock:close() return end
      local parts = a.parts or { { a.bytes, 0 } }
      local i = 0
      local function step()
        i = i + 1
        local p = parts[i]
        if not p then
          if a.close and not sock:is_closing() then sock:shutdown(function() if not sock:is_closing() then sock:close() end end) end
          if a.shut and not sock:is_closing() then sock:shutdown() end -- its side only: it reads on
          return
        end
        local function write()
          if sock:is_closing() then return end
          if p.reset then sock:close() return end
          sock:write(p[1], function() step() end)
        end
        if (p[2] or 0) > 0 then
          local tm = uv.new_timer()
          tm:start(p[2], 0, function() tm:close() write() end)
        else
          write()
        end
      end
      step()
    end
    sock:read_start(function(err, data)
      if err or not data then
        t.conns[id] = "closed"
        if not sock:is_closing() then sock:close() end
        return
      end
      buf = buf .. data
      next_request()
    end)
  end
  assert(server:listen(64, function()
    local sock = uv.new_tcp()
    server:accept(sock)
    t.socks[#t.socks + 1] = sock
    nconn = nconn + 1
    t.conns[nconn] = "open"
    serve(sock, nconn)
  end))
  function t.queue(list) for _, a in ipairs(list) do t.answers[#t.answers + 1] = a end end
  function t.reset() t.answers, t.requests, t.answered_early = {}, {}, nil end
  function t.stop()
    for _, sock in ipairs(t.socks) do if not sock:is_closing() then sock:close() end end
    server:close()
    client.run_until(function() return false end, 50)
  end
  return t
end

local COMPLETION = json.encode { id = "c1", object = "chat.completion", created = 1, model = "m",
  choices = { { index = 0, message = { role = "assistant", content = "hi there" }, finish_reason = "stop" } },
  usage = { prompt_tokens = 1, completion_tokens = 2, total_tokens = 3 } }

local function chunk(delta, finish)
  return "data: " .. json.encode { id = "c1", object = "chat.completion.chunk", created = 1, model = "m",
    choices = { { index = 0, delta = delta, finish_reason = finish or json.null } } } .. "\n\n"
end

-- s in chunks of `size` bytes; `open`: without the last, empty chunk
local function chunked(s, size, open)
  local out = {}
  for i = 1, #s, size do
    local piece = s:sub(i, i + size - 1)
    out[#out + 1] = string.format("%x\r\n%s\r\n", #piece, piece)
  end
  return table.concat(out) .. (open and "" or "0\r\n\r\n")
end

local STREAM = chunk({ role = "assistant", content = "" }) .. chunk({ content = "hel" }) ..
  chunk({ content = "lo" }) .. chunk({}, "stop") .. "data: [DONE]\n\n"

local BODY = json.encode { model = "m", messages = { { role = "user", content = "x" } } }
local SBODY = json.encode { model = "m", stream = true, messages = { { role = "user", content = "x" } } }

local function text_of(res)
  local s = ""
  for _, d in ipairs(client.sse_data(res.body)) do
    if d ~= "[DONE]" then
      local c = json.decode(d)
      if c.choices and c.choices[1] and c.choices[1].delta.content then s = s .. c.choices[1].delta.content end
      if c.error then s = s .. "<error:" .. c.error.message .. ">" end
    end
  end
  return s
end

for _, which in ipairs { "builtin", "curl" } do
  describe("the " .. which .. " HTTP/1.1 client", function()
    local up, server

    setup(function()
      up = raw_upstream()
      server = helpers.start { config = string.format([[
return { providers = { up = { kind = "openai", base_url = "http://127.0.0.1:%d/v1", retries = 0,
  api_key = "sk-test-upstream", http_client = %q, first_byte_timeout_ms = 400, idle_timeout_ms = 400 } },
  routes = { { match = "*", provider = "up" } } }]], up.port, which) }
    end)
    teardown(function()
      if server then server:stop_clean() end
      if up then up.stop() end
    end)
    before_each(function() up.reset() end)

    local function chat(body) return assert(server:request("POST", "/v1/chat/completions", body or BODY)) end

    it("reads an answer with a Content-Length, and sends the request head and body as they should be", function()
      up.queue { { bytes = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " .. #COMPLETION .. "\r\n\r\n" .. COMPLETION } }
      local res = chat()
      assert.equal(200, res.status)
      assert.equal("hi there", json.decode(res.body).choices[1].message.content)
      local req = up.requests[1]
      assert.matches("^POST /v1/chat/completions HTTP/1.1\r\n", req.head)
      assert.matches("\r\n[Hh]ost: 127.0.0.1:" .. up.port .. "\r\n", req.head)
      assert.matches("\r\n[Cc]ontent%-[Ll]ength: " .. #BODY .. "\r\n", req.head)
      assert.matches("\r\n[Aa]uthorization: Bearer ", req.head)
      assert.equal(BODY, req.body)
    end)

    it("reads a chunked answer, whole and streamed, with frames split across chunks", function()
      up.queue { { bytes = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n" .. chunked(COMPLETION, 7) } }
      local res = chat()
      assert.equal(200, res.status)
      assert.equal("hi there", json.decode(res.body).choices[1].message.content)
      up.queue { { bytes = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" .. chunked(STREAM, 5) } }
      res = chat(SBODY)
      assert.equal(200, res.status)
      assert.equal("hello", text_of(res))
      assert.equal(1, up.requests[2].conn, "the chunked answer's connection is kept")
    end)

    it("reads an HTTP/1.0 answer that ends when the connection closes, and opens a new connection after it", function()
      up.queue { { bytes = "HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" .. STREAM, close = true } }
      local res = chat(SBODY)
      assert.equal(200, res.status)
      assert.equal("hello", text_of(res))
      up.queue { { bytes = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " .. #COMPLETION .. "\r\n\r\n" .. COMPLETION } }
      assert.equal(200, chat().status)
      assert.not_equal(up.requests[1].conn, up.requests[2].conn)
    end)

    it("skips an interim 100 answer", function()
      up.queue { { bytes = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " .. #COMPLETION .. "\r\n\r\n" .. COMPLETION } }
      local res = chat()
      assert.equal(200, res.status)
      assert.equal("hi there", json.decode(res.body).choices[1].message.content)
    end)

    it("answers 502 for an answer cut short of its Content-Length", function()
      up.queue { { bytes = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " .. (#COMPLETION + 10) .. "\r\n\r\n" .. COMPLETION, close = true } }
      local res = chat()
      assert.equal(502, res.status)
      assert.truthy(json.decode(res.body).error.message)
    end)

    it("answers 502 for broken chunked encoding", function()
      up.queue { { bytes = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n" .. COMPLETION .. "\r\n0\r\n\r\n", close = true } }
      assert.equal(502, chat().status)
    end)

    it("answers 502 for a connection closed before any byte, and for garbage", function()
      up.queue { { drop = true } }
      assert.equal(502, chat().status)
      up.queue { { bytes = "<html>bad gateway</html>\r\n\r\n", close = true } }
      assert.equal(502, chat().status)
    end)

    it("ends a stream reset mid-way with an error event", function()
      up.queue { { parts = { { "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" .. chunked(chunk({ role = "assistant", content = "a" }), 100, true), 0 },
        { "", 30, reset = true } } } }
      local res = chat(SBODY)
      assert.equal(200, res.status)
      assert.matches("^a<error:.+>$", text_of(res))
    end)

    it("times out an upstream that never answers, and one that stalls between frames", function()
      up.queue { { hang = true } }
      assert.equal(504, chat().status)
      up.queue { { parts = { { "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" .. chunked(chunk({ role = "assistant", content = "a" }), 100, true), 0 },
        { chunked(chunk({}, "stop"), 100), 2000 } } } }
      local res = chat(SBODY)
      assert.matches("^a<error:.*idle.*>$", text_of(res))
    end)

    it("sends a request again on a new connection when a kept-alive one turns out closed, and keeps that one", function()
      local ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " .. #COMPLETION .. "\r\n\r\n" .. COMPLETION
      up.queue { { bytes = ok }, { drop = true }, { bytes = ok }, { bytes = ok } }
      assert.equal(200, chat().status)
      local res = chat()
      assert.equal(200, res.status)
      assert.equal(3, #up.requests)
      assert.equal(up.requests[1].conn, up.requests[2].conn)
      assert.not_equal(up.requests[2].conn, up.requests[3].conn)
      -- the new connection ended its answer cleanly: the next request takes it
      assert.equal(200, chat().status)
      assert.equal(up.requests[3].conn, up.requests[4].conn)
    end)

    it("never reuses a connection that sent bytes after its answer, or said close", function()
      up.queue { { bytes = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " .. #COMPLETION .. "\r\n\r\n" .. COMPLETION .. "HTTP/1.1 200 OK\r\n" },
        { bytes = "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: " .. #COMPLETION .. "\r\n\r\n" .. COMPLETION },
        { bytes = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " .. #COMPLETION .. "\r\n\r\n" .. COMPLETION } }
      for _ = 1, 3 do assert.equal(200, chat().status) end
      assert.not_equal(up.requests[1].conn, up.requests[2].conn)
      assert.not_equal(up.requests[2].conn, up.requests[3].conn)
    end)

    it("never reuses a connection whose request was still being sent when the answer came", function()
      local err = json.encode { error = { message = "too large", type = "invalid_request_error" } }
      up.queue { { early = true, bytes = "HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\ncontent-length: "
        .. #err .. "\r\n\r\n" .. err },
        { bytes = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " .. #COMPLETION .. "\r\n\r\n" .. COMPLETION } }
      local big = json.encode { model = "m", messages = { { role = "user", content = string.rep("x", 8 * 1024 * 1024) } } }
      local res = assert(server:request("POST", "/v1/chat/completions", big, nil, 15000))
      assert.equal(413, res.status)
      res = chat()
      assert.equal(200, res.status)
      assert.not_equal(up.requests[1].conn, up.requests[2].conn)
    end)

    it("reads chunked over a Content-Length, refuses other transfer codings, and answers 502 for a status no client takes", function()
      up.queue { { bytes = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"
        .. chunked(COMPLETION, 50) } }
      local res = chat()
      assert.equal(200, res.status)
      assert.equal("hi there", json.decode(res.body).choices[1].message.content)
      up.queue { { bytes = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: gzip, chunked\r\n\r\n"
        .. chunked("not really gzip", 50), close = true } }
      assert.equal(502, chat().status)
      up.queue { { bytes = "HTTP/1.1 999 Odd\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}" } }
      res = assert(server:request("POST", "/v1/chat/completions", BODY, nil, 5000))
      assert.equal(502, res.status)
      assert.matches("status 999", json.decode(res.body).error.message)
    end)

    if which == "builtin" then
      it("closes a kept-alive connection as soon as the upstream hangs it up", function()
        up.queue { { bytes = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " .. #COMPLETION .. "\r\n\r\n"
          .. COMPLETION, shut = true } }
        assert.equal(200, chat().status)
        local id = up.requests[1].conn
        assert.truthy(client.run_until(function() return up.conns[id] == "closed" end, 1000),
          "the idle connection stayed open after the upstream closed its side")
      end)
    end

    it("passes a 429 through with its Retry-After", function()
      local err = json.encode { error = { message = "slow down", type = "rate_limit_error" } }
      up.queue { { bytes = "HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-type: application/json\r\ncontent-length: " .. #err .. "\r\n\r\n" .. err } }
      local res = chat()
      assert.equal(429, res.status)
      assert.equal("7", res.headers["retry-after"])
      assert.equal("slow down", json.decode(res.body).error.message)
    end)

    it("answers 502 when nothing listens", function()
      local port = helpers.refused_port()
      local s2 = helpers.start { config = string.format([[
return { providers = { up = { kind = "openai", base_url = "http://127.0.0.1:%d/v1", retries = 0, http_client = %q } },
  routes = { { match = "*", provider = "up" } } }]], port, which) }
      local res = assert(s2:request("POST", "/v1/chat/completions", BODY))
      s2:stop_clean()
      assert.equal(502, res.status)
      assert.matches("connect", json.decode(res.body).error.message)
    end)
  end)
end
