-- The soak (docs/RELIABILITY.md): steady mixed traffic against the real
-- daemon (2 workers) and the repo's mock upstream, with a reload every
-- minute, while RSS and open descriptors are sampled.
--   luajit scripts/soak.lua [--minutes M] [--clients N] [--reload-s S] [--sample-s S] [--out DIR]
-- Traffic: every front door (OpenAI chat, Anthropic messages, Responses,
-- completions, Ollama), streamed and not, passthrough and translated; a WS
-- pool worker that serves a model and reconnects now and then; chat
-- sockets; upstream faults queued on the mock (500, 429, streams cut
-- short, stalls); clients that leave mid-stream. Each request must end in a
-- whole HTTP answer (an error in its format is an answer); one that gets
-- nothing, or half an answer, is lost. Writes DIR/soak.csv (t_s, rss_kib,
-- fds, requests, errors, lost), DIR/soak.png (gnuplot) and a summary, and
-- exits 1 if any request was lost, the daemon died, or RSS or descriptors
-- grew more than 5% between the end of the warm-up and the end.
package.path = "spec/?.lua;spec/support/?.lua;lua/?.lua;" .. package.path
local uv = require "luv"
local H = require "helpers"
local client = H.client
local ws_client = require "ws_client"
local load = require "load"
local cjson = require "cjson"

local opts = { minutes = 30, clients = 16, reload_s = 60, sample_s = 10, out = "soak-results" }
for i = 1, #arg, 2 do
  local k, v = arg[i]:gsub("^%-%-", ""):gsub("%-", "_"), arg[i + 1]
  if opts[k] == nil or v == nil then error("unknown option " .. arg[i]) end
  opts[k] = tonumber(v) or v
end
os.execute("mkdir -p " .. opts.out)

local mock = H.mock()
-- the daemon, its log (warnings and errors only) in OUT/daemon.log
local port = H.free_port()
local cfg = H.tmpfile(string.format([[
return {
  log_level = "warn",
  providers = {
    oa = { kind = "openai", base_url = %q, api_key = "sk-soak", retries = 1, retry_base_ms = 50,
      first_byte_timeout_ms = 2000, idle_timeout_ms = 2000 },
    an = { kind = "anthropic", base_url = %q, api_key = "sk-soak-an", retries = 1, retry_base_ms = 50,
      first_byte_timeout_ms = 2000, idle_timeout_ms = 2000 },
  },
  routes = { { match = "claude-*", provider = "an" }, { match = "gpt-*", provider = "oa" } },
  websocket = { chat_model = "gpt-chat" },
}]], mock.url .. "/v1", mock.url))
local logf = assert(uv.fs_open(opts.out .. "/daemon.log", "w", 420))
local server = { exited = false }
local handle, pid = uv.spawn(H.bin, { args = { "serve", "--listen", "127.0.0.1:" .. port, "--workers", "2",
  "--config", cfg }, env = { "PATH=" .. os.getenv("PATH"), "MOONGATE_LUA_DIR=lua" }, stdio = { nil, logf, logf } },
  function(code, signal) server.exited, server.code, server.signal = true, code, signal end)
assert(handle, "cannot start " .. H.bin .. ": " .. tostring(pid))
assert(client.run_until(function()
  local res = client.request(port, "GET", "/health", nil, nil, 200)
  return res and res.status == 200
end, 15000), "the daemon did not start (see " .. opts.out .. "/daemon.log)")
function server.stop()
  handle:kill("sigterm")
  client.run_until(function() return server.exited end, 15000)
end
print(string.format("soak: daemon pid %d on %d, mock on %d, %d clients, %g min, reload every %d s",
  pid, port, mock.port, opts.clients, opts.minutes, opts.reload_s))

-- the request mix -------------------------------------------------------------
local function msgs(text) return { { role = "user", content = text } } end
local KINDS = {
  { "/v1/chat/completions", function(s) return { model = "gpt-soak", stream = s, messages = msgs("soak a") } end },
  { "/v1/chat/completions", function(s) return { model = "claude-soak", stream = s, messages = msgs("soak b") } end },
  { "/v1/messages", function(s) return { model = "claude-soak", max_tokens = 64, stream = s, messages = msgs("soak c") } end },
  { "/v1/messages", function(s) return { model = "gpt-soak", max_tokens = 64, stream = s, messages = msgs("soak d") } end },
  { "/v1/responses", function(s) return { model = "gpt-soak", stream = s, input = "soak e" } end },
  { "/v1/completions", function(s) return { model = "gpt-soak", stream = s, prompt = "soak f" } end },
  { "/api/chat", function(s) return { model = "gpt-soak", stream = s, messages = msgs("soak g") } end },
  { "/v1/chat/completions", function(s) return { model = "pooled", stream = s, messages = msgs("soak h") } end },
}

local count = { requests = 0, ok = 0, errors = 0, left = 0, lost = 0 }
local lost_examples = {}

local running, quiet, parked = true, false, 0
local function one()
  if not running then return end
  if quiet then parked = parked + 1 return end
  local kind = KINDS[math.random(#KINDS)]
  local stream = math.random() < 0.6
  local body = cjson.encode(kind[2](stream))
  count.requests = count.requests + 1
  -- (a client that goes away mid-stream, now and then)
  local leave = stream and math.random() < 0.05 and { leave_after = 1 } or nil
  load.request(port, load.post(port, kind[1], body), leave, function(raw, why)
    local outcome = why == "left" and "left" or (why or not load.whole(raw)) and "lost"
      or raw:find("^HTTP/1%.1 2") and "ok" or "errors"
    count[outcome] = count[outcome] + 1
    if outcome == "lost" and #lost_examples < 5 then
      lost_examples[#lost_examples + 1] = kind[1] .. " " .. body .. " -> " .. tostring(why) .. " " .. raw:sub(1, 300)
    end
    if outcome == "errors" and os.getenv("SOAK_DEBUG") and math.random() < 0.01 then
      print("error: " .. kind[1] .. " " .. body .. " -> " .. raw:gsub("\r\n", " | "):sub(1, 400))
    end
    local t = uv.new_timer()
    t:start(math.random(0, 5), 0, function() t:close() one() end)
  end)
end

-- a WS pool worker serving "pooled", and chat sockets asking every 1.5 s
-- (opened before the loop runs: the test client connects synchronously)
local worker = assert(ws_client.connect(port, "/ws"), "the pool worker cannot connect")
worker.on_message = function(text)
  local m = cjson.decode(text)
  if m.type == "completion_request" then
    worker:send(cjson.encode { type = "completion_chunk", request_id = m.request_id, content = "pooled " })
    worker:send(cjson.encode { type = "completion_response", request_id = m.request_id, content = "pooled answer",
      finish_reason = "stop" })
  elseif m.type == "heartbeat" then
    worker:send(cjson.encode { type = "heartbeat_response" })
  end
  return false
end
worker:send(cjson.encode { type = "client_ready", models = { "pooled" }, capacity = 4, name = "soak" })

local chats = { sent = 0, answered = 0, errors = 0 }
local sockets = {}
for i = 1, 2 do
  local c = assert(ws_client.connect(port, "/ws/soak-" .. i), "a chat socket cannot connect")
  c.on_message = function(text)
    local m = cjson.decode(text)
    if m.type == "response_complete" then chats.answered = chats.answered + 1
    elseif m.type == "error" then
      chats.errors = chats.errors + 1
      if os.getenv("SOAK_DEBUG") and chats.errors < 3 then print("chat error: " .. text) end
    end
    return false
  end
  sockets[i] = c
end
local function chat_round()
  for _, c in ipairs(sockets) do
    if not c.closed then
      chats.sent = chats.sent + 1
      c:send(cjson.encode { type = "chat_message", message = { role = "user", content = "soak chat" } })
    end
  end
end

-- upstream faults, queued on the mock now and then ------------------------------
local FAULTS = {
  { status = 500, json = { error = { message = "soak: server error" } } },
  { status = 429, headers = { ["retry-after"] = "1" }, json = { error = { message = "soak: slow down" } } },
  { delay_ms = 2500, json = {} },          -- a stall past the first-byte timeout
  { status = 200, body = "<html>soak</html>", headers = { ["content-type"] = "text/html" } },
}
local function fault()
  local body = cjson.encode { FAULTS[math.random(#FAULTS)] }
  local tcp = uv.new_tcp()
  tcp:connect("127.0.0.1", mock.port, function(err)
    if err then tcp:close() return end
    tcp:write(string.format("POST /_mock/queue HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
      #body, body))
    tcp:read_start(function(e, data) if e or not data then tcp:close() end end)
  end)
end

-- samples ----------------------------------------------------------------------
local function rss_kib() return H.rss_kib(pid) end
local function fds()
  local p = io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null | wc -l")
  local n = tonumber(p:read("*a"))
  p:close()
  return n
end

local csv = assert(io.open(opts.out .. "/soak.csv", "w"))
csv:write("t_s,rss_kib,fds,requests,errors,lost\n")
local samples = {}
local t0 = uv.now()
local reloads = 0
local function sample()
  local t = (uv.now() - t0) / 1000
  local r, f = rss_kib(), fds()
  if not r then return end
  samples[#samples + 1] = { t = t, rss = r, fds = f }
  csv:write(string.format("%.0f,%d,%d,%d,%d,%d\n", t, r, f, count.requests, count.errors, count.lost))
  csv:flush()
  print(string.format("%6.0f s  rss %6d KiB  fds %4d  requests %7d  ok %7d  errors %5d  left %4d  lost %d  reloads %d",
    t, r, f, count.requests, count.ok, count.errors, count.left, count.lost, reloads))
end

-- run ------------------------------------------------------------------------
for _ = 1, opts.clients do one() end
local timers = {}
local function every(ms, fn)
  local t = uv.new_timer()
  t:start(ms, ms, fn)
  timers[#timers + 1] = t
end
every(opts.sample_s * 1000, sample)
every(opts.reload_s * 1000, function() reloads = reloads + 1; uv.kill(pid, "sighup") end)
every(2000, fault)
every(1500, chat_round)
-- Two quiet looks, with no request in flight (the clients hold back for 3 s):
-- at the end of the warm-up (the first fifth) and at the end. Between
-- requests the descriptors are the daemon's own and its kept-alive upstream
-- connections, so the two compare; under load they move with what is in
-- flight.
local idle = {}
local function quiet_look(label)
  local t = { rss = rss_kib(), fds = fds() }
  idle[label] = t
  print(string.format("quiet look (%s): rss %d KiB, fds %d", label, t.rss, t.fds))
end
sample()
local warm_ms = opts.minutes * 60000 / 5
client.run_until(function() return server.exited end, warm_ms)
quiet = true
client.run_until(function() return server.exited end, 3000)
quiet_look("after the warm-up")
quiet = false
for _ = 1, parked do one() end
parked = 0
client.run_until(function() return server.exited end, opts.minutes * 60000 - warm_ms)
running = false
for _, t in ipairs(timers) do t:stop() t:close() end
client.run_until(function() return false end, 3000) -- the last requests end
sample()
quiet_look("at the end")
csv:close()

-- verdict ------------------------------------------------------------------------
local died = server.exited
local a, b = idle["after the warm-up"] or { rss = 0, fds = 0 }, idle["at the end"] or { rss = 0, fds = 0 }
-- RSS: the median of the samples in the first third after the warm-up
-- against the last third's. One look alone is noise of a few MiB: whether
-- a reload's retired Lua state is still open, where each heap's collector
-- happens to be. A leak moves the whole series.
local function median(list)
  table.sort(list)
  return list[math.floor((#list + 1) / 2)] or 0
end
-- Descriptors the same way: under load they move with what is in flight,
-- and a quiet look holds however many kept-alive upstream connections the
-- pools happen to keep (two more are 5% of 40); a leak moves the series.
local function thirds(field)
  local after = {}
  for _, s in ipairs(samples) do if s.t >= warm_ms / 1000 then after[#after + 1] = s[field] end end
  local third = math.max(1, math.floor(#after / 3))
  local first, last = {}, {}
  for i = 1, third do first[i], last[i] = after[i], after[#after - third + i] end
  return median(first), median(last)
end
local rss_a, rss_b = thirds("rss")
local fd_a, fd_b = thirds("fds")
local rss_growth = rss_a > 0 and (rss_b - rss_a) / rss_a or 0
local fd_growth = fd_a > 0 and (fd_b - fd_a) / fd_a or 0
local summary = string.format(
  "soak %g min, %d clients, %d reloads: %d requests (%d ok, %d errors in the client's format, %d left by the client, %d lost); "
  .. "chat messages %d, answered %d, errors %d; RSS %.0f -> %.0f KiB (medians of the first and last thirds after the warm-up, %+.1f%%; quiet looks %d and %d KiB), descriptors %.0f -> %.0f (the same medians, %+.1f%%; quiet looks %d and %d)%s",
  opts.minutes, opts.clients, reloads, count.requests, count.ok, count.errors, count.left, count.lost,
  chats.sent, chats.answered, chats.errors, rss_a, rss_b, rss_growth * 100, a.rss, b.rss, fd_a, fd_b, fd_growth * 100, a.fds, b.fds,
  died and "; THE DAEMON DIED" or "")
print(summary)
for _, e in ipairs(lost_examples) do print("lost: " .. e) end
local f = assert(io.open(opts.out .. "/summary.txt", "w"))
f:write(summary, "\n")
f:close()
local gp = io.popen("gnuplot", "w")
if gp then
  gp:write(string.format([[
set terminal pngcairo size 1000,500
set output '%s/soak.png'
set datafile separator ','
set xlabel 'seconds'
set ylabel 'RSS (MiB)'
set y2label 'open descriptors'
set y2tics
set key top left
set title 'moongate soak: %d clients, a reload every %d s'
plot '%s/soak.csv' every ::1 using 1:($2/1024) with lines title 'RSS', '' every ::1 using 1:3 axes x1y2 with lines title 'descriptors'
]], opts.out, opts.clients, opts.reload_s, opts.out))
  gp:close()
end
if not died then server.stop() end
mock:stop()
for _, c in ipairs(sockets) do c:close_tcp() end
worker:close_tcp()
local ok = not died and count.lost == 0 and rss_growth <= 0.05 and fd_growth <= 0.05
os.exit(ok and 0 or 1)
