-- The fault suite (docs/RELIABILITY.md): the real daemon (2 workers) under
-- concurrent load, against an upstream scripted byte by byte for each
-- fault, and clients that misbehave. Each case states what every request
-- must end in, sends its requests CLIENTS at a time, and reports how many
-- it sent, how many ended as expected, and how many were lost (ended in
-- anything else: no answer, half an answer, the wrong answer). Then the
-- daemon must still serve, with its memory near where it started.
--   luajit spec/faults/run.lua [--clients N] [--requests N] [--only TEXT] [--bin PATH]
-- (scripts/faults builds and runs it; --asan / --tsan: under a sanitizer)
package.path = "spec/?.lua;spec/support/?.lua;lua/?.lua;" .. package.path
local uv = require "luv"
local H = require "helpers"
local client = H.client
local load = require "load"
local cjson = require "cjson"

local opts = { clients = 16, requests = 48, rounds = 2, only = nil, bin = nil }
for i = 1, #arg, 2 do
  local k = arg[i]:gsub("^%-%-", "")
  if opts[k] == nil and k ~= "only" and k ~= "bin" then error("unknown option " .. arg[i]) end
  opts[k] = tonumber(arg[i + 1]) or arg[i + 1]
end
if opts.bin then H.bin = opts.bin end
local MiB = 1024 * 1024

-- the scripted upstream ---------------------------------------------------------
-- Each request (head and Content-Length body read whole) goes to the
-- current case's behave(sock, req): it writes what the fault needs.
local up = { open = 0, busy = {}, behave = nil }
do
  local server = uv.new_tcp()
  assert(server:bind("127.0.0.1", 0))
  up.port = server:getsockname().port
  up.server = server
  assert(server:listen(512, function()
    local sock = uv.new_tcp()
    server:accept(sock)
    up.open = up.open + 1
    local buf, closed = "", false
    local function gone()
      if closed then return end
      closed = true
      up.open = up.open - 1
      up.busy[sock] = nil
      if not sock:is_closing() then sock:close() end
    end
    sock:read_start(function(err, data)
      if err or not data then return gone() end
      buf = buf .. data
      local he = buf:find("\r\n\r\n", 1, true)
      if not he then return end
      local head = buf:sub(1, he + 3)
      local len = tonumber(head:lower():match("\ncontent%-length: *(%d+)")) or 0
      if #buf < he + 3 + len then return end
      local body = buf:sub(he + 4, he + 3 + len)
      buf = buf:sub(he + 4 + len)
      up.busy[sock] = up.case or true -- until its answer is all written, or the daemon closes it
      local ok, e = pcall(up.behave, sock, { head = head, body = body, stream = body:find('"stream":true', 1, true) ~= nil,
        close = gone })
      if not ok then io.stderr:write("upstream script: ", tostring(e), "\n") gone() end
    end)
  end))
end

-- writes parts {bytes, delay_ms} one after another, then closes when asked
local function play(sock, parts, close_after)
  local i = 0
  local function step()
    i = i + 1
    local p = parts[i]
    if sock:is_closing() then return end
    if not p then
      up.busy[sock] = nil
      if close_after then sock:shutdown(function() if not sock:is_closing() then sock:close() end end) end
      return
    end
    local t = uv.new_timer()
    t:start(p[2] or 0, 0, function()
      t:close()
      if sock:is_closing() then return end
      if p.reset then up.busy[sock] = nil return sock:close_reset() end
      sock:write(p[1], step)
    end)
  end
  step()
end

local function chunk(content, finish)
  return "data: " .. cjson.encode { id = "c", object = "chat.completion.chunk", created = 1, model = "m",
    choices = { { index = 0, delta = content and { content = content } or {}, finish_reason = finish or cjson.null } } } .. "\n\n"
end
local STREAM = chunk("hel") .. chunk("lo") .. chunk(nil, "stop") .. "data: [DONE]\n\n"
local WHOLE = cjson.encode { id = "c", object = "chat.completion", created = 1, model = "m",
  choices = { { index = 0, message = { role = "assistant", content = "hello" }, finish_reason = "stop" } },
  usage = { prompt_tokens = 1, completion_tokens = 1, total_tokens = 2 } }
local function chunked(s) return string.format("%x\r\n%s\r\n", #s, s) end
local SSE_HEAD = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
local function json_answer(status, body, extra)
  return string.format("HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s",
    status, #body, extra or "", body)
end

local AN_WHOLE = cjson.encode { id = "msg_1", type = "message", role = "assistant", model = "m",
  content = { { type = "text", text = "hello" } }, stop_reason = "end_turn", stop_sequence = cjson.null,
  usage = { input_tokens = 1, output_tokens = 1 } }
local function an_event(name, v) return "event: " .. name .. "\ndata: " .. cjson.encode(v) .. "\n\n" end
local AN_STREAM = an_event("message_start", { type = "message_start", message = { id = "msg_1", type = "message",
    role = "assistant", model = "m", content = {}, stop_reason = cjson.null, usage = { input_tokens = 1, output_tokens = 0 } } })
  .. an_event("content_block_start", { type = "content_block_start", index = 0, content_block = { type = "text", text = "" } })
  .. an_event("content_block_delta", { type = "content_block_delta", index = 0, delta = { type = "text_delta", text = "hello" } })
  .. an_event("content_block_stop", { type = "content_block_stop", index = 0 })
  .. an_event("message_delta", { type = "message_delta", delta = { stop_reason = "end_turn", stop_sequence = cjson.null },
    usage = { output_tokens = 1 } })
  .. an_event("message_stop", { type = "message_stop" })

-- a good answer in the request's shape (OpenAI or Anthropic, whole or streamed)
local function good(sock, req)
  local anthropic = req.head:find("^POST /v1/messages")
  if req.stream then
    play(sock, { { SSE_HEAD .. chunked(anthropic and AN_STREAM or STREAM) .. "0\r\n\r\n" } })
  else
    play(sock, { { json_answer(200, anthropic and AN_WHOLE or WHOLE) } })
  end
end

-- the daemon ----------------------------------------------------------------------
local dead = uv.new_tcp()
assert(dead:bind("127.0.0.1", 0))
local dead_port = dead:getsockname().port
dead:close()
local server = H.start { workers = 2, config = string.format([[
return {
  max_body_bytes = 4 * 1024 * 1024, request_timeout = 2,
  providers = {
    up = { kind = "openai", base_url = "http://127.0.0.1:%d/v1", api_key = "sk-faults", retries = 0,
      first_byte_timeout_ms = 1500, idle_timeout_ms = 1500 },
    an = { kind = "anthropic", base_url = "http://127.0.0.1:%d", api_key = "sk-faults-an", retries = 0,
      first_byte_timeout_ms = 1500, idle_timeout_ms = 1500 },
    dead = { kind = "openai", base_url = "http://127.0.0.1:%d/v1", retries = 0 },
    chain = { kind = "openai", base_url = "http://127.0.0.1:%d/v1", retries = 0 },
  },
  routes = { { match = "claude-*", provider = "an" }, { match = "dead-*", provider = "dead" },
    { match = "fallback-*", provider = { "dead", "up" } }, { match = "*", provider = "up" } },
}]], up.port, up.port, dead_port, dead_port) }
local port, pid = server.port, server.pid

local function chat(model, stream, extra)
  local b = { model = model or "gpt-f", stream = stream or nil, messages = { { role = "user", content = "x" } } }
  for k, v in pairs(extra or {}) do b[k] = v end
  return load.post(port, "/v1/chat/completions", cjson.encode(b))
end
local function messages(model, stream)
  return load.post(port, "/v1/messages", cjson.encode { model = model or "gpt-f", max_tokens = 16, stream = stream or nil,
    messages = { { role = "user", content = "x" } } })
end

-- expectations: raw -> true when the request ended as it should
local function status_is(...)
  local want = { ... }
  return function(raw, why)
    if why then return false end
    local st = load.status(raw)
    for _, w in ipairs(want) do if st == w then return load.whole(raw) end end
    return false
  end
end
local function openai_error(...) -- a whole answer with one of these statuses and an OpenAI error body
  local st = status_is(...)
  return function(raw, why)
    if not st(raw, why) then return false end
    local ok, v = pcall(cjson.decode, raw:match("\r\n\r\n(.*)$"))
    return ok and type(v) == "table" and type(v.error) == "table" and type(v.error.message) == "string"
  end
end
local function stream_ends(pattern) -- a 200 stream whose last data frame matches
  return function(raw, why)
    if why or load.status(raw) ~= 200 or not load.whole(raw) then return false end
    return raw:find(pattern) ~= nil
  end
end
local function stream_error(raw, why) -- a stream that ends with an error frame, never silently
  return stream_ends('"error"')(raw, why)
end
local function closed_or_answered(raw, why) -- what the client did, the daemon lived through
  return why == "left" or why == nil or why == "timeout"
end
local function answered(raw, why) -- a whole answer, whatever its status (an error in the client's format)
  return not why and load.whole(raw) and load.status(raw) ~= nil
end

-- the cases --------------------------------------------------------------------------
local nest = string.rep("[", 10000) .. string.rep("]", 10000)
-- the big answers, made once (a scripted upstream that builds 11 MiB per
-- request is slower than the daemon's first-byte limit under a sanitizer)
local BIG11 = SSE_HEAD .. chunked(chunk(string.rep("x", 11 * MiB))) .. chunked("data: [DONE]\n\n") .. "0\r\n\r\n"
local BIG17 = SSE_HEAD .. chunked(chunk(string.rep("x", 17 * MiB))) .. "0\r\n\r\n"
local tools = {}
for i = 1, 5000 do tools[i] = { type = "function", ["function"] = { name = "t" .. i, parameters = { type = "object" } } } end
local big_tools = cjson.encode { model = "claude-f", messages = { { role = "user", content = "x" } }, tools = tools }

local CASES = {
  -- upstream faults
  { "a good upstream (warm-up)", good, function() return chat() end, status_is(200) },
  { "a good stream, translated", good, function() return messages("gpt-f", true) end, stream_ends("message_stop") },
  { "nothing listens", nil, function() return chat("dead-f") end, openai_error(502) },
  { "a fallback past a dead provider", good, function() return chat("fallback-f") end, status_is(200) },
  { "reset before the first byte", function(s) s:close_reset() end, function() return chat() end, openai_error(502) },
  { "reset mid-stream", function(s) play(s, { { SSE_HEAD .. chunked(chunk("a")) }, { "", 20, reset = true } }) end,
    function() return chat(nil, true) end, stream_error },
  { "a stall before the first byte", function() end, function() return chat() end, openai_error(504) },
  { "a stall between frames", function(s) play(s, { { SSE_HEAD .. chunked(chunk("a")) } }) end,
    function() return chat(nil, true) end, stream_error },
  { "429 with Retry-After", function(s) play(s, { { json_answer(429, '{"error":{"message":"slow"}}', "retry-after: 1\r\n") } }) end,
    function() return chat() end, openai_error(429) },
  { "429 with an absurd Retry-After", function(s) play(s, { { json_answer(429, '{"error":{"message":"slow"}}', "retry-after: 999999999\r\n") } }) end,
    function() return chat() end, openai_error(429) },
  { "500", function(s) play(s, { { json_answer(500, '{"error":{"message":"boom"}}') } }) end, function() return chat() end, openai_error(500) },
  { "529, translated for an Anthropic client", function(s) play(s, { { json_answer(529, '{"type":"error","error":{"type":"overloaded_error","message":"busy"}}') } }) end,
    function() return messages("claude-f") end, status_is(529) },
  { "malformed SSE", function(s) play(s, { { SSE_HEAD .. chunked("data: {not json\n\n") .. "0\r\n\r\n" } }) end,
    function() return messages("gpt-f", true) end, function(raw, why) -- before its first frame: a 502
      return status_is(502)(raw, why) or stream_ends("error")(raw, why) end },
  { "truncated JSON", function(s) play(s, { { json_answer(200, '{"id":"c","choices":[') } }) end,
    function() return chat() end, openai_error(502) },
  { "a Content-Length longer than the body", function(s)
      play(s, { { "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9999\r\n\r\n" .. WHOLE } }, true) end,
    function() return chat() end, openai_error(502) },
  { "no Content-Length, the end at the close", function(s)
      play(s, { { "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n" .. WHOLE } }, true) end,
    function() return chat() end, status_is(200) },
  { "broken chunked encoding", function(s)
      play(s, { { "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n" .. WHOLE } }, true) end,
    function() return chat() end, openai_error(502) },
  { "bad gzip", function(s)
      play(s, { { "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: 12\r\n\r\nnot gzip at!" } }) end,
    function() return chat() end, openai_error(502) },
  { "an HTML body", function(s) play(s, { { "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 13\r\n\r\n<html></html>" } }) end,
    function() return chat() end, openai_error(502) },
  { "HTTP/1.0, close-delimited", function(s)
      play(s, { { "HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" .. STREAM } }, true) end,
    function() return chat(nil, true) end, stream_ends("%[DONE%]") },
  { "an 11 MiB frame", function(s) play(s, { { BIG11 } }) end,
    function() return chat(nil, true) end, stream_ends("%[DONE%]"), 8 },
  { "a 17 MiB frame", function(s) play(s, { { BIG17 } }) end,
    function() return chat(nil, true) end, openai_error(502), 4 },
  { "an endless stream, left by its client", function(s)
      local t = uv.new_timer()
      s:write(SSE_HEAD)
      t:start(5, 5, function()
        if s:is_closing() then t:stop() t:close() return end
        s:write(chunked(chunk("more")))
      end) end,
    function() return chat(nil, true), { leave_after = 4000 } end, closed_or_answered },
  { "a trickle: one byte every 2 ms", function(s)
      local all, parts = SSE_HEAD .. chunked(STREAM) .. "0\r\n\r\n", {}
      for i = 1, #all, 8 do parts[#parts + 1] = { all:sub(i, i + 7), 16 } end
      play(s, parts) end,
    function() return chat(nil, true) end, stream_ends("%[DONE%]"), 16 },
  -- clients that misbehave
  { "a client that connects and leaves", good, function() return "", { leave_ms = 1 } end, closed_or_answered },
  { "a client that leaves in its headers", good, function() return "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le", { leave_ms = 5 } end, closed_or_answered },
  { "a client that leaves in its body", good, function() local b = chat() return b:sub(1, #b - 10), { leave_ms = 5 } end, closed_or_answered },
  { "a client that leaves before the answer", function(s) play(s, { { json_answer(200, WHOLE), 300 } }) end,
    function() return chat(), { leave_ms = 20 } end, closed_or_answered },
  { "a client that leaves mid-stream", function(s) play(s, { { SSE_HEAD .. chunked(chunk("a")) }, { chunked(STREAM) .. "0\r\n\r\n", 300 } }) end,
    function() return chat(nil, true), { leave_after = 200 } end, closed_or_answered },
  { "a client that sends two requests at once", good, function()
      local one = chat():gsub("Connection: close", "Connection: keep-alive")
      return one .. chat() end, function(raw, why) return not why and select(2, raw:gsub("HTTP/1%.1 200", "")) == 2 end },
  { "a slow reader of an 11 MiB frame", function(s) play(s, { { BIG11 } }) end,
    function() return chat(nil, true), { read = false, timeout_ms = 1500 } end, closed_or_answered, 8 },
  { "slowloris: headers a byte at a time", good, function()
      local b, parts = chat(), {}
      for i = 2, 40 do parts[#parts + 1] = { b:sub(i, i), 100 } end
      return b:sub(1, 1), { parts = parts, timeout_ms = 8000 } end,
    function(raw, why) return why == nil and (load.status(raw) == 408 or raw == "") end },
  { "a slow body that keeps coming", good, function()
      local b = chat()
      local cut = #b - 20
      local parts = {}
      for i = cut + 1, #b do parts[#parts + 1] = { b:sub(i, i), 60 } end
      return b:sub(1, cut), { parts = parts } end, status_is(200) },
  { "a body over the limit", nil, function()
      return load.post(port, "/v1/chat/completions", string.rep(" ", 5 * MiB)) end, openai_error(413) },
  { "Content-Length and Transfer-Encoding both", nil, function()
      return "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" end,
    status_is(400) },
  { "two Content-Lengths", nil, function()
      return "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}" end, status_is(400) },
  { "a chunk size that overflows", nil, function()
      return "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\n" end,
    status_is(400) },
  { "10,000 levels of nesting", nil, function() return load.post(port, "/v1/chat/completions", nest) end, openai_error(400) },
  { "5,000 tools, translated", good, function() return load.post(port, "/v1/chat/completions", big_tools) end,
    function(raw, why) local st = load.status(raw) return not why and load.whole(raw) and (st == 200 or st == 400) end, 8 },
  { "NUL bytes in a string", good, function()
      return load.post(port, "/v1/chat/completions", '{"model":"claude-f","messages":[{"role":"user","content":"a\\u0000b\u{0}c"}]}') end,
    function(raw, why) local st = load.status(raw) return not why and load.whole(raw) and (st == 200 or st == 400) end },
  { "a lone surrogate", good, function()
      return load.post(port, "/v1/chat/completions", '{"model":"claude-f","messages":[{"role":"user","content":"a\\ud800b"}]}') end,
    function(raw, why) local st = load.status(raw) return not why and load.whole(raw) and (st == 200 or st == 400) end },
  { "a 5 MB model name", nil, function()
      return load.post(port, "/v1/messages", '{"model":"' .. string.rep("m", 3 * MiB) .. '","max_tokens":1,"messages":[{"role":"user","content":"x"}]}') end,
    answered, 8 },
}

-- running ------------------------------------------------------------------------------
local function rss_kib() return H.rss_kib(pid) or 0 end

local total = { sent = 0, expected = 0, lost = 0 }
local failed_cases = {}
local base_rss
local round_rss = {}

-- ordinary traffic for a while: the Lua heaps' garbage (the big frames'
-- strings) goes with the collector's next cycles
local function settle()
  up.behave = good
  for _ = 1, tonumber(os.getenv("FAULTS_SETTLE") or 400) do
    if server.exited then break end
    client.request(port, "POST", "/v1/chat/completions", '{"model":"gpt-f","messages":[{"role":"user","content":"x"}]}')
  end
  client.run_until(function() return false end, 500)
end

print(string.format("faults: daemon pid %d (2 workers), %d clients, up to %d requests a case, %d rounds", pid,
  opts.clients, opts.requests, opts.rounds))
for round = 1, opts.rounds do
  if opts.rounds > 1 then print(string.format("-- round %d", round)) end
  for _, case in ipairs(CASES) do
    local name, behave, make, expect, cap = case[1], case[2], case[3], case[4], case[5]
    if not server.exited and (not opts.only or name:find(opts.only, 1, true)) then
      up.behave = behave or good
      up.case = name
      local n = math.min(opts.requests, cap or opts.requests)
      local sent, expected, lost, running, example = 0, 0, 0, 0, nil
      local function launch()
        if sent >= n then return end
        sent = sent + 1
        running = running + 1
        local bytes, o = make()
        load.request(port, bytes, o, function(raw, why)
          running = running - 1
          if expect(raw, why) then
            expected = expected + 1
          else
            lost = lost + 1
            example = example or string.format("%s: %s", tostring(why), raw:sub(1, 240):gsub("\r\n", " | "))
          end
          launch()
        end)
      end
      local t0 = uv.now()
      for _ = 1, math.min(opts.clients, n) do launch() end
      client.run_until(function() return running == 0 and sent >= n end, 120000)
      if server.exited then
        lost = lost + (n - expected - lost)
        example = "THE DAEMON EXITED"
      end
      total.sent, total.expected, total.lost = total.sent + sent, total.expected + expected, total.lost + lost
      print(string.format("%-44s sent %4d  as expected %4d  lost %d  (%.1f s)%s", name, sent, expected, lost,
        (uv.now() - t0) / 1000, example and ("\n    e.g. " .. example) or ""))
      if lost > 0 then failed_cases[#failed_cases + 1] = name end
      if not base_rss then base_rss = rss_kib() end
    end
  end
  settle()
  round_rss[round] = rss_kib()
end

-- after the suite: the daemon serves, no upstream request is left hanging
-- (kept-alive idle connections aside), memory is back
local hanging = {}
local function busy()
  local n = 0
  hanging = {}
  for s, case in pairs(up.busy) do
    if not s:is_closing() then n = n + 1; hanging[#hanging + 1] = tostring(case) end
  end
  return n
end
client.run_until(function() return busy() == 0 end, 3000)
local health = not server.exited and client.request(port, "GET", "/health", nil, nil, 3000)
local serves = health and health.status == 200
local left_open = busy()
local end_rss = round_rss[#round_rss] or rss_kib()
print(string.format("\n%d requests: %d as expected, %d lost; still serving: %s; upstream requests left hanging: %d; "
  .. "RSS %d KiB after the warm-up case, %s KiB after each round", total.sent, total.expected, total.lost, tostring(serves),
  left_open, base_rss or 0, table.concat(round_rss, ", ")))
-- The first round leaves the allocators' high-water marks (the Lua heaps
-- and malloc's arenas keep pages the burst of big frames used); a leak
-- would grow the mark round after round. Not under a sanitizer, which
-- keeps freed memory on purpose.
local mem_ok = true
if #round_rss >= 2 and not (os.getenv("ASAN_OPTIONS") or os.getenv("TSAN_OPTIONS")) then
  mem_ok = round_rss[#round_rss] <= round_rss[1] * 1.10 + 8 * 1024
  if not mem_ok then print("memory grew from one round to the next: a leak") end
end
if left_open > 0 then print("upstream requests left hanging, from: " .. table.concat(hanging, "; ")) end
up.server:close()
local log = server.exited and server.log or server:stop_clean()
local ok = total.lost == 0 and serves and left_open == 0 and mem_ok
if #failed_cases > 0 then print("cases with losses: " .. table.concat(failed_cases, "; ")) end
print(string.format("%d passed, %d failed", total.expected, total.lost + ((serves and mem_ok and left_open == 0) and 0 or 1)))
if not ok and log then io.stderr:write(log:sub(-4000), "\n") end
os.exit(ok and 0 or 1)
