-- Builds the fuzz targets' seed corpora from the spec fixtures:
--   luajit fuzz/seeds.lua OUTDIR
-- OUTDIR/jscan and OUTDIR/doors: every JSON fixture as it is; OUTDIR/sse: each scripted
-- upstream stream ({"frames": [...]}) as SSE bytes and as NDJSON lines;
-- OUTDIR/frames: the fixtures and the streams as SSE bytes;
-- OUTDIR/tmpl: each of those frames' data alone, and after the one before
-- it (cut by a 0xff byte); OUTDIR/h1: each fixture as
-- a POST body, with a content-length and chunked (with a trailer), some
-- pipelined behind a GET, and request shapes a smuggler tries; OUTDIR/ws:
-- each fixture as a text message (fuzz/ws.c's framing), some in pairs.
package.path = "lua/?.lua;" .. package.path
local cjson = require("cjson").new()
local out = assert(arg[1], "usage: luajit fuzz/seeds.lua OUTDIR")

local function write(dir, name, bytes)
  os.execute("mkdir -p " .. out .. "/" .. dir)
  local f = assert(io.open(out .. "/" .. dir .. "/" .. name, "wb"))
  f:write(bytes)
  f:close()
end

local function post(path, body, chunked)
  local head = "POST " .. path .. " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
  if not chunked then
    return head .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
  end
  local cut = math.floor(#body / 2)
  local function chunk(s) return #s > 0 and string.format("%x\r\n%s\r\n", #s, s) or "" end
  return head .. "Transfer-Encoding: chunked\r\n\r\n" .. chunk(body:sub(1, cut)) ..
    chunk(body:sub(cut + 1)) .. "0\r\nX-Trailer: t\r\n\r\n"
end

-- a message as fuzz/ws.c reads one: flags (bit 0: binary), length (2 bytes, little-endian), bytes
local function ws_message(text, binary)
  text = text:sub(1, 65535)
  return string.char(binary and 1 or 0, #text % 256, math.floor(#text / 256)) .. text
end

local get = "GET /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n"
local smuggle = {
  cl_te = "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
  te_cl = "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
  two_cl = "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello, world",
  te_twice = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
  te_space = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
  chunk_overflow = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nx\r\n0\r\n\r\n",
  chunk_ext = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n" .. get,
  trailers = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nContent-Length: 9\r\nAuthorization: x\r\nOrigin: http://e\r\n\r\n" .. get,
  nul_value = "GET / HTTP/1.1\r\nHost: a\r\nX-A: \0b\r\nX-B: c\r\n\r\n",
  bare_cr_end = "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\rX\x81\x80abcd",
  upgrade = "GET /ws/c1?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85abcd\x09\x07\x0f\x08\x0e",
  expect = "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
  http10 = "GET /health HTTP/1.0\r\n\r\n" .. get,
  obs_fold = "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
  lf_only = "GET / HTTP/1.1\nHost: a\n\n" .. get,
  big_header = "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " .. string.rep("b", 2100) .. "\r\n\r\n",
}
for name, bytes in pairs(smuggle) do write("h1", name, bytes) end

local n = 0
local p = io.popen("find spec/fixtures -type f -name '*.json' | sort")
for path in p:lines() do
  n = n + 1
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  write("jscan", "fixture" .. n, text)
  write("doors", "fixture" .. n, text)
  write("frames", "fixture" .. n, text) -- (a whole answer, or a request: the decoders take anything)
  write("h1", "post" .. n, post("/v1/chat/completions", text))
  write("h1", "chunked" .. n, post("/v1/chat/completions", text, true))
  if n % 10 == 0 then write("h1", "pipelined" .. n, post("/v1/messages", text) .. get) end
  write("ws", "message" .. n, ws_message(text))
  if n % 10 == 0 then write("ws", "pair" .. n, ws_message(text) .. ws_message(text, true)) end
  local ok, v = pcall(cjson.decode, text)
  local frames = ok and type(v) == "table" and (v.frames or (v[1] and v)) or nil
  if type(frames) == "table" and type(frames[1]) == "table" then
    local sse, nd, last = {}, {}, nil
    for i, fr in ipairs(frames) do
      if type(fr) == "table" then
        local data = fr.json ~= nil and cjson.encode(fr.json) or fr.data ~= nil and
          (type(fr.data) == "string" and fr.data or cjson.encode(fr.data)) or nil
        if data then
          sse[#sse + 1] = (fr.event and ("event: " .. fr.event .. "\n") or "") .. "data: " .. data .. "\n\n"
          nd[#nd + 1] = data .. "\n"
          write("tmpl", "frame" .. n .. "_" .. i, data)
          -- and after the one before it (the template's shortcut for a
          -- frame like the last one)
          if last then write("tmpl", "pair" .. n .. "_" .. i, last .. "\255" .. data) end
          last = data
        end
      end
    end
    write("sse", "stream" .. n, table.concat(sse))
    write("frames", "stream" .. n, table.concat(sse))
    write("sse", "lines" .. n, table.concat(nd))
  end
end
p:close()
print(string.format("seeds from %d fixtures in %s", n, out))
