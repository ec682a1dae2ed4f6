-- The side-by-side benchmark (run it through scripts/bench, which installs
-- and builds what it needs). In one run, on loopback, against the same C mock
-- upstream: the mock directly, moongate passthrough (OpenAI client, OpenAI
-- upstream), moongate translating (Anthropic client, OpenAI upstream), nginx
-- proxy_pass, Portkey's gateway, and claude-code-router (an Anthropic
-- messages front end for OpenAI-compatible providers: the translated rows'
-- peer). Every figure is a median over rounds and a ratio to the direct call
-- or to nginx of the same round.
--
-- Pinning: the proxy under test runs on CPU 0; the mock and wrk on CPU 1
-- (taskset), so the gateway and the load do not share a core. The stream
-- clients run in this process, not pinned (docs/BENCHMARK.md says why).
package.path = "lua/?.lua;spec/?.lua;scripts/?.lua;" .. package.path
local uv = require "luv"
local json = require "moongate.json"
local client = require "support.client"

local opts = { rounds = 3, duration = 3, streams = 10000, quick = false }
for i = 1, #arg do
  if arg[i] == "--rounds" then opts.rounds = tonumber(arg[i + 1]) end
  if arg[i] == "--quick" then opts.quick, opts.rounds, opts.streams, opts.duration = true, 1, 1000, 2 end
  if arg[i] == "--streams" then opts.streams = tonumber(arg[i + 1]) end
  if arg[i] == "--report" then opts.report = true end
end

local ROOT = uv.cwd()
local OUT = ROOT .. "/bench-results"
local WORK = ROOT .. "/.bench"
-- callgrind counts two runs of the same requests (CG_FEW, CG_MANY): the
-- difference is per request, free of start-up
local CG_FEW, CG_MANY = 300, 1300
local STAGGERED, BURST = 50, 20 -- paced streams: started 10 ms apart, and all at once
-- h2: nghttpx in front of the mock, HTTP/2 over TLS as the hosted APIs speak
local P = { mock = 19501, moongate = 19502, nginx = 19503, portkey = 19504, h2 = 19505, ccr = 19506 }
local function log(...) io.stderr:write(string.format(...), "\n") end

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  return out
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return text
end

local function sleep(ms) client.run_until(function() return false end, ms) end

-- processes ------------------------------------------------------------------

local procs = {}
local function spawn(name, cpu, cmd, args, env)
  local full = { "-c", tostring(cpu), cmd }
  for _, a in ipairs(args or {}) do full[#full + 1] = a end
  local outpipe, errpipe = uv.new_pipe(false), uv.new_pipe(false)
  local p = { name = name, log = "" }
  p.handle, p.pid = uv.spawn("taskset", { args = full, env = env, stdio = { nil, outpipe, errpipe } },
    function(code) p.exited, p.code = true, code end)
  assert(p.handle, "cannot start " .. name .. ": " .. tostring(p.pid))
  local function keep(_, d) if d then p.log = (p.log .. d):sub(-20000) end end
  outpipe:read_start(keep)
  errpipe:read_start(keep)
  procs[#procs + 1] = p
  return p
end

-- A process left on one of our ports would be measured in place of ours
-- (under callgrind, ours would fail to listen unnoticed).
local function assert_free(port, what)
  local c = client.connect(port)
  if c then
    c:close()
    error(string.format("port %d (for %s) is already in use: stop what listens there first", port, what), 0)
  end
end

local function wait_port(port, what)
  assert(client.run_until(function()
    local c = client.connect(port)
    if c then c:close() return true end
  end, 20000), what .. " did not listen on " .. port)
end

local function stop_all()
  for _, p in ipairs(procs) do
    if not p.exited then p.handle:kill("sigterm") end
  end
  client.run_until(function()
    for _, p in ipairs(procs) do if not p.exited then return false end end
    return true
  end, 5000)
  for _, p in ipairs(procs) do if not p.exited then p.handle:kill("sigkill") end end
  sleep(100)
end

local function rss_kb(pid, field)
  local text = read("/proc/" .. pid .. "/status")
  if not text then return nil end
  return tonumber(text:match((field or "VmRSS") .. ":%s+(%d+)"))
end

-- CPU time a process has used so far, user and system, in seconds
local CLK_TCK = 100
do
  local p = io.popen("getconf CLK_TCK")
  if p then CLK_TCK = tonumber(p:read("*l")) or CLK_TCK; p:close() end
end
local function cpu_s(pid)
  local text = pid and read("/proc/" .. pid .. "/stat")
  if not text then return nil end
  -- the fields after the command name (which may hold spaces), from field 3
  local rest = text:match("%) (.*)$")
  local f = {}
  for v in rest:gmatch("%S+") do f[#f + 1] = v end
  return tonumber(f[12]) / CLK_TCK, tonumber(f[13]) / CLK_TCK
end

-- nginx's worker: the master's child
local function child_pid(pid)
  local kids = read(string.format("/proc/%d/task/%d/children", pid, pid)) or ""
  return tonumber(kids:match("%d+"))
end

-- targets ----------------------------------------------------------------------

local oa_body = json.encode { model = "zero", messages = { { role = "user", content = "Say hello." } } }
local an_body = json.encode { model = "zero", max_tokens = 64, messages = { { role = "user", content = "Say hello." } } }
-- an agent's request: a conversation of 100 messages (about 7 KB)
local long_body
do
  local msgs = {}
  for i = 1, 100 do
    msgs[i] = { role = i % 2 == 1 and "user" or "assistant",
      content = string.format("message %d of a long conversation, with some text in it.", i) }
  end
  long_body = json.encode { model = "zero", messages = msgs }
end
-- claude-code-router sends every request to its Router's default ("mock,
-- zero") unless the model names a provider and model ("mock,burst"): "zero"
-- goes the default way, as a Claude Code model name would, the mock's other
-- models by name (its router counts the request's tokens either way)
local function body_for(t, model)
  if t.route and model ~= "zero" then model = t.route .. "," .. model end
  return (t.anthropic and an_body or oa_body):gsub('"zero"', '"' .. model .. '"')
end
-- an agent's turn as coding agents send it (scripts/agent_request.lua: a
-- 15 KB system prompt, 40 tools with JSON schemas, 120 messages mixing
-- text, tool calls and tool results): about 167 KiB, and a 1 MiB one
local agent = require "agent_request"
local AGENT = { openai = agent.build("openai"), anthropic = agent.build("anthropic"),
  openai_to_claude = agent.build("openai", { model = "claude-zero" }),
  openai_1m = agent.build("openai", { messages = 1200, result_bytes = 1500 }) }

local targets = {
  { key = "direct", name = "mock directly", port = P.mock, path = "/v1/chat/completions" },
  { key = "passthrough", name = "moongate passthrough", port = P.moongate, path = "/v1/chat/completions", gateway = true },
  { key = "translating", name = "moongate translating", port = P.moongate, path = "/v1/messages", anthropic = true, gateway = true },
  { key = "nginx", name = "nginx proxy_pass", port = P.nginx, path = "/v1/chat/completions" },
  { key = "portkey", name = "Portkey gateway", port = P.portkey, path = "/v1/chat/completions",
    headers = { ["x-portkey-provider"] = "openai", ["x-portkey-custom-host"] = "http://127.0.0.1:" .. P.mock .. "/v1",
      authorization = "Bearer sk-bench" }, peer = true },
  -- claude-code-router 2.0.0 (npm @musistudio/claude-code-router): an
  -- Anthropic client, the mock as its OpenAI-compatible provider "mock";
  -- its rows are CPU figures (a quick run must stay under 3 minutes: no
  -- 20 ms mock run for it)
  { key = "ccr", name = "claude-code-router", port = P.ccr, path = "/v1/messages", anthropic = true,
    route = "mock", peer = true, cpu_only = true },
}

--- wrk(t, model, conns, seconds) -> {p50, p99, rps, errors, raw, user_us,
-- sys_us}; user_us and sys_us: the CPU time t.pid used per request (when
-- the target names its process)
local function wrk(t, model, conns, seconds, body)
  local lines = { "wrk.method = 'POST'", "wrk.headers['content-type'] = 'application/json'",
    string.format("wrk.body = %q", body or body_for(t, model)) }
  for k, v in pairs(t.headers or {}) do lines[#lines + 1] = string.format("wrk.headers[%q] = %q", k, v) end
  local script = WORK .. "/wrk-" .. t.key .. ".lua"
  write(script, table.concat(lines, "\n") .. "\n")
  local u0, s0 = cpu_s(t.pid)
  local out = sh(string.format("taskset -c 1 wrk -t1 -c%d -d%ds --latency -s %s http://127.0.0.1:%d%s",
    conns, seconds, script, t.port, t.path))
  local u1, s1 = cpu_s(t.pid)
  local n = tonumber(out:match("(%d+) requests in"))
  local function ms(s)
    local v, unit = s:match("([%d%.]+)(%a+)")
    v = tonumber(v)
    if not v then return nil end
    return unit == "us" and v / 1000 or unit == "ms" and v or unit == "s" and v * 1000 or v
  end
  local errors = 0
  for n in out:gmatch("Non%-2xx or 3xx responses: (%d+)") do errors = errors + tonumber(n) end
  local c, r, w, to = out:match("Socket errors: connect (%d+), read (%d+), write (%d+), timeout (%d+)")
  errors = errors + (tonumber(c) or 0) + (tonumber(r) or 0) + (tonumber(w) or 0) + (tonumber(to) or 0)
  return {
    p50 = ms(out:match("%s50%%%s+(%S+)") or ""), p99 = ms(out:match("%s99%%%s+(%S+)") or ""),
    rps = tonumber(out:match("Requests/sec:%s+([%d%.]+)")), errors = errors, raw = out,
    user_us = u0 and u1 and n and n > 0 and (u1 - u0) / n * 1e6 or nil,
    sys_us = s0 and s1 and n and n > 0 and (s1 - s0) / n * 1e6 or nil,
  }
end

-- FRAME_STREAMS streams of the mock's "burst" model (2,000 deltas at once),
-- one after the other -> {us = CPU per frame of t.pid (nil when no stream
-- came whole), n, short = streams that did not bring every delta, why = how
-- the first of those ended}
local FRAME_STREAMS = opts.quick and 10 or 25
local function frames_cpu(t, n)
  local body = body_for(t, "burst"):gsub("}$", ',"stream":true}')
  local u0, s0 = cpu_s(t.pid)
  local short, why = 0, nil
  for _ = 1, n do
    local res, err = client.request(t.port, "POST", t.path, body, t.headers, 30000)
    local got = 0
    for _ in ((res and res.body) or ""):gmatch("tok%d+ ") do got = got + 1 end
    if not res or res.status ~= 200 or got < 2000 then
      short = short + 1
      why = why or (not res and "no whole answer: " .. tostring(err)
        or res.status ~= 200 and string.format("status %d: %s", res.status, (res.body or ""):sub(1, 120):gsub("[\r\n|]+", " "))
        or string.format("%d of 2,000 deltas", got))
    end
  end
  local u1, s1 = cpu_s(t.pid)
  return { us = u0 and u1 and short < n and ((u1 - u0) + (s1 - s0)) / (n * 2000) * 1e6 or nil, n = n, short = short,
    why = why }
end

-- streams: time to first token, gaps between tokens, many open at once ----------

--- streams(t, n, model, timeout_ms [, stagger_ms]) -> list of {ttft, gaps,
-- tokens, done, error}; runs the loop until every stream ended or
-- `timeout_ms` passed. Stream i starts (i - 1) * stagger_ms after the first
-- (all at once without it).
local function streams(t, n, model, timeout_ms, stagger_ms)
  local results, pending = {}, n
  local body = body_for(t, model):gsub("}$", ',"stream":true}')
  local req = client.request_bytes("POST", t.path, body, t.headers)
  local function start(i)
    local r = results[i]
    local tcp = uv.new_tcp()
    r.tcp = tcp
    local t0, last
    local function finish(err)
      if r.done or r.error then return end
      if err then r.error = err else r.done = true end
      pending = pending - 1
      if not tcp:is_closing() then tcp:close() end
    end
    tcp:connect("127.0.0.1", t.port, function(err)
      if err then return finish("connect: " .. err) end
      tcp:nodelay(true)
      t0 = uv.hrtime()
      tcp:write(req)
      local tail = ""
      tcp:read_start(function(rerr, data)
        if rerr or not data then return finish(r.finished_ok and nil or "closed early") end
        local now = uv.hrtime()
        if not r.head then r.head = data:sub(1, 300) end
        local text = tail .. data
        -- a token wholly inside the tail was counted with the read before
        for e in text:gmatch("tok%d+ ()") do
          if e - 1 > #tail then
            if not r.ttft then
              r.ttft = (now - t0) / 1e6
            else
              r.gaps[#r.gaps + 1] = (now - last) / 1e6
            end
            last = now
            r.tokens = r.tokens + 1
          end
        end
        if text:find("[DONE]", 1, true) or text:find("message_stop", 1, true) or text:find("\r\n0\r\n\r\n", 1, true) then
          r.finished_ok = true
          finish(nil)
        end
        tail = text:sub(-16)
      end)
    end)
  end
  for i = 1, n do results[i] = { gaps = {}, tokens = 0 } end
  local timer
  if stagger_ms and stagger_ms > 0 then
    local next_i = 1
    timer = uv.new_timer()
    timer:start(0, stagger_ms, function()
      start(next_i)
      next_i = next_i + 1
      if next_i > n then timer:stop() end
    end)
  else
    for i = 1, n do start(i) end
  end
  client.run_until(function() return pending == 0 end, timeout_ms)
  if timer then timer:close() end
  for _, r in ipairs(results) do
    if not r.done and not r.error then r.error = "timeout" end
    if r.tcp and not r.tcp:is_closing() then r.tcp:close() end
  end
  uv.run("nowait")
  return results
end

-- statistics -----------------------------------------------------------------

local function median(t)
  local s = {}
  for _, v in pairs(t) do if type(v) == "number" then s[#s + 1] = v end end
  if #s == 0 then return nil end
  table.sort(s)
  local m = math.floor((#s + 1) / 2)
  return #s % 2 == 1 and s[m] or (s[m] + s[m + 1]) / 2
end

local function pct(t, p)
  local s = {}
  for _, v in ipairs(t) do s[#s + 1] = v end
  if #s == 0 then return nil end
  table.sort(s)
  return s[math.max(1, math.ceil(#s * p))]
end

-- set-up -------------------------------------------------------------------------

local function start_moongate()
  return spawn("moongate", 0, ROOT .. "/build/moongate", { "serve", "--config", WORK .. "/moongate.lua" },
    { "MOONGATE_LUA_DIR=" .. ROOT .. "/lua", "PATH=" .. os.getenv("PATH") })
end

-- a fresh daemon in place of mg: memory the last one freed (to the C heap
-- and the Lua heap, which keep it) would be reused and hide what the next
-- measurement costs
local function restart_moongate(mg)
  mg.handle:kill("sigterm")
  assert(client.run_until(function() return mg.exited end, 10000), "moongate did not stop")
  for i, p in ipairs(procs) do if p == mg then table.remove(procs, i) break end end
  mg = start_moongate()
  wait_port(P.moongate, "moongate")
  sleep(500)
  return mg
end

local function start_all()
  spawn("mock", 1, WORK .. "/mock", { tostring(P.mock) })
  if not read(WORK .. "/cert.pem") then
    sh(string.format("openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/key.pem -out %s/cert.pem -days 3650 -subj /CN=localhost",
      WORK, WORK))
  end
  -- one TLS connection from moongate carries every stream (10,000 allowed
  -- on both sides); nghttpx opens one HTTP/1.1 connection to the mock each
  spawn("nghttpx", 1, "nghttpx", { "--frontend=127.0.0.1," .. P.h2, "--backend=127.0.0.1," .. P.mock,
    "--conf=/dev/null", "--log-level=WARN", "--workers=1", "--backend-connections-per-host=20000",
    "--frontend-http2-max-concurrent-streams=10000", "--no-ocsp", "--accesslog-file=/dev/null",
    WORK .. "/key.pem", WORK .. "/cert.pem" })
  -- model "hold-h2" reaches the mock's "hold" through the HTTP/2 front,
  -- "zero-h2" its "zero"; every other model goes to the mock over HTTP/1.1
  write(WORK .. "/moongate.lua", string.format([[
return {
  listen = "127.0.0.1:%d", workers = 1, log_level = "warn", upstream_http2_streams = 10000,
  providers = { up = { kind = "openai", base_url = "http://127.0.0.1:%d/v1", api_key = "sk-bench" },
    h2 = { kind = "openai", base_url = "https://127.0.0.1:%d/v1", api_key = "sk-bench", insecure = true },
    claude = { kind = "anthropic", base_url = "http://127.0.0.1:%d", api_key = "sk-bench" } },
  routes = { { match = "hold-h2", provider = "h2", model = "hold" }, { match = "zero-h2", provider = "h2", model = "zero" },
    { match = "claude-zero", provider = "claude", model = "zero" }, { match = "*", provider = "up" } },
}]], P.moongate, P.mock, P.h2, P.mock))
  local mg = start_moongate()
  write(WORK .. "/nginx.conf", string.format([[
worker_processes 1;
daemon off;
pid %s/nginx.pid;
error_log %s/nginx-error.log warn;
events { worker_connections 65536; }
worker_rlimit_nofile 200000;
http {
  access_log off;
  client_body_temp_path %s/nginx-body;
  proxy_temp_path %s/nginx-proxy;
  upstream mock { server 127.0.0.1:%d; keepalive 256; }
  server {
    listen 127.0.0.1:%d;
    # an agent's request (up to 1 MiB here) kept in memory, as moongate
    # keeps it, not written to a temporary file first
    client_max_body_size 16m;
    client_body_buffer_size 2m;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}]], WORK, WORK, WORK, WORK, P.mock, P.nginx))
  local ng = spawn("nginx", 0, "/usr/sbin/nginx", { "-c", WORK .. "/nginx.conf", "-e", WORK .. "/nginx-error.log" })
  local pk = spawn("portkey", 0, "node", { WORK .. "/node_modules/.bin/gateway", "--port=" .. P.portkey, "--headless" },
    { "PATH=" .. os.getenv("PATH"), "NODE_ENV=production" })
  -- claude-code-router reads $HOME/.claude-code-router/config.json: a HOME
  -- of its own under .bench/ (TMPDIR too: it keeps a count file there). No
  -- APIKEY, so no auth; LOG false, so no log files. `ccr start` serves in
  -- the foreground, unless the PID file it leaves names a live process
  -- (then it says "running" and exits): the file goes first.
  local ccr_home = WORK .. "/ccr-home"
  sh(string.format("mkdir -p '%s/.claude-code-router' && rm -f '%s/.claude-code-router/.claude-code-router.pid'",
    ccr_home, ccr_home))
  write(ccr_home .. "/.claude-code-router/config.json", json.encode {
    PORT = P.ccr, HOST = "127.0.0.1", LOG = false,
    Providers = { { name = "mock", api_base_url = string.format("http://127.0.0.1:%d/v1/chat/completions", P.mock),
      api_key = "sk-bench", models = { "zero", "delay20", "burst" } } },
    Router = { default = "mock,zero" },
  })
  local ccr = spawn("claude-code-router", 0, "node",
    { WORK .. "/node_modules/@musistudio/claude-code-router/dist/cli.js", "start" },
    { "PATH=" .. os.getenv("PATH"), "NODE_ENV=production", "HOME=" .. ccr_home, "TMPDIR=" .. ccr_home })
  for k, port in pairs(P) do wait_port(port, k) end
  return mg, pk, ng, ccr
end

-- the run ---------------------------------------------------------------------------

local function main()
  uv.fs_mkdir(OUT, 493)
  for name, port in pairs(P) do assert_free(port, name) end
  log("pinning: proxies on CPU 0 (taskset -c 0), mock and load generators on CPU 1 (taskset -c 1)")
  local mg, pk, ng, ccr = start_all()
  sleep(500)
  -- the processes whose CPU time per request the c64 runs count
  for _, t in ipairs(targets) do
    t.pid = t.gateway and mg.pid or t.key == "nginx" and child_pid(ng.pid) or t.key == "portkey" and pk.pid
      or t.key == "ccr" and ccr.pid or nil
  end
  local R = { rounds = {} }
  R.idle_rss_kb = rss_kb(mg.pid)
  for round = 1, opts.rounds do
    log("round %d/%d", round, opts.rounds)
    local r = { lat = {}, rps0 = {}, rps20 = {}, stream = {} }
    for _, t in ipairs(targets) do
      r.lat[t.key] = wrk(t, "zero", 1, opts.duration)
      local x = r.lat[t.key]
      log("  %-22s c1    p50 %.3f ms  p99 %.3f ms%s", t.name, x.p50 or -1, x.p99 or -1,
        x.user_us and string.format(", CPU per request: user %.1f us, system %.1f us", x.user_us, x.sys_us) or "")
    end
    -- an agent's turn (about 167 KiB), one at a time: the added latency and
    -- the CPU each proxy spends on it; the translating target gets it in
    -- Anthropic's format, the others in OpenAI's; and 1 MiB passed through
    r.agent, r.agent1m = {}, {}
    for _, t in ipairs(targets) do
      r.agent[t.key] = wrk(t, "zero", 1, opts.duration, t.anthropic and AGENT.anthropic or AGENT.openai)
      local x = r.agent[t.key]
      log("  %-22s agent c1 p50 %.3f ms p99 %.3f ms%s%s", t.name, x.p50 or -1, x.p99 or -1,
        x.user_us and string.format(", CPU per request: %.0f us", x.user_us + x.sys_us) or "",
        x.errors > 0 and string.format(" (%d errors)", x.errors) or "")
      if t.key == "translating" then -- the other way too: an OpenAI client, an Anthropic upstream
        local oa = { key = "translating_oa", name = "moongate OpenAI to Anthropic", port = t.port,
          path = "/v1/chat/completions", pid = t.pid }
        r.agent.translating_oa = wrk(oa, "zero", 1, opts.duration, AGENT.openai_to_claude)
        x = r.agent.translating_oa
        log("  %-22s agent c1 p50 %.3f ms p99 %.3f ms%s%s", oa.name, x.p50 or -1, x.p99 or -1,
          x.user_us and string.format(", CPU per request: %.0f us", x.user_us + x.sys_us) or "",
          x.errors > 0 and string.format(" (%d errors)", x.errors) or "")
      end
      if not t.anthropic and not t.peer then
        r.agent1m[t.key] = wrk(t, "zero", 1, opts.duration, AGENT.openai_1m)
        x = r.agent1m[t.key]
        log("  %-22s 1 MiB c1 p50 %.3f ms%s", t.name, x.p50 or -1,
          x.user_us and string.format(", CPU per request: %.0f us", x.user_us + x.sys_us) or "")
      end
    end
    -- stream frames: 2,000 deltas sent at once, the proxy's CPU per frame
    r.frames = {}
    for _, t in ipairs(targets) do
      if t.pid and t.key ~= "portkey" then
        r.frames[t.key] = frames_cpu(t, FRAME_STREAMS)
        log("  %-22s burst of 2,000 deltas: %.2f us CPU per frame (%d short%s)", t.name, r.frames[t.key].us or -1,
          r.frames[t.key].short, r.frames[t.key].why and ", the first: " .. r.frames[t.key].why or "")
      end
    end
    for _, t in ipairs(targets) do
      r.rps0[t.key] = wrk(t, "zero", 64, opts.duration)
      local x = r.rps0[t.key]
      log("  %-22s c64   %8.0f req/s (errors %d)%s", t.name, x.rps or -1, x.errors,
        x.user_us and string.format(", CPU per request: user %.1f us, system %.1f us", x.user_us, x.sys_us) or "")
    end
    R.load_rss_kb = math.max(R.load_rss_kb or 0, rss_kb(mg.pid) or 0)
    for _, t in ipairs(targets) do
      if not t.cpu_only then
        r.rps20[t.key] = wrk(t, "delay20", 64, opts.duration)
        log("  %-22s c64 20 ms %8.0f req/s", t.name, r.rps20[t.key].rps or -1)
      end
    end
    for _, t in ipairs(targets) do
      if not t.peer then
        -- the target figure: streams that start 10 ms apart, as chat
        -- clients do, so each first token measures the path, not a queue
        local res = streams(t, STAGGERED, "paced", 20000, 10)
        local ttft, gaps, errs, stalls = {}, {}, 0, 0
        for _, x in ipairs(res) do
          if x.error or x.tokens ~= 64 then errs = errs + 1 end
          ttft[#ttft + 1] = x.ttft
          for _, g in ipairs(x.gaps) do
            gaps[#gaps + 1] = g
            if g > 100 then stalls = stalls + 1 end
          end
        end
        -- and a burst: BURST streams that connect in the same instant
        local burst = {}
        for _, x in ipairs(streams(t, BURST, "paced", 20000)) do
          if x.error or x.tokens ~= 64 then errs = errs + 1 end
          burst[#burst + 1] = x.ttft
        end
        r.stream[t.key] = { ttft50 = pct(ttft, 0.5), ttft99 = pct(ttft, 0.99), gap50 = pct(gaps, 0.5),
          gap99 = pct(gaps, 0.99), errors = errs, stalls = stalls, burst99 = pct(burst, 0.99),
          ttft = ttft, gaps = gaps, burst = burst } -- the samples, pooled over rounds in the table
        log("  %-22s paced ttft p50 %.2f p99 %.2f ms (burst of %d: p99 %.2f), gap p50 %.2f p99 %.2f ms, errors %d, stalls %d",
          t.name, r.stream[t.key].ttft50 or -1, r.stream[t.key].ttft99 or -1, BURST, r.stream[t.key].burst99 or -1,
          r.stream[t.key].gap50 or -1, r.stream[t.key].gap99 or -1, errs, stalls)
      end
    end
    R.rounds[round] = r
  end

  -- many open streams at once through moongate
  local fd_limit = tonumber(sh("ulimit -n"):match("%d+"))
  R.fd_limit, R.streams_wanted = fd_limit, opts.streams
  -- hold(n, model, port) -> {n, ok, errors, before_kb, peak_kb, conns}:
  -- n streams at once, RSS sampled while they are open, and moongate's own
  -- established connections to port (nginx keeps some to the mock too)
  -- counted 3 s in
  local function hold(n, model, port, warm)
    mg = restart_moongate(mg)
    if warm then
      -- one answer first, so the burst finds the connection up: until the
      -- server's SETTINGS arrive, curl 7.88 assumes 100 streams a
      -- connection and opens one more for each stream past that
      local c = assert(client.connect(P.moongate))
      c:send(client.request_bytes("POST", "/v1/chat/completions", (body_for(targets[2], warm))))
      local res = c:read_response(10000)
      c:close()
      assert(res and res.status == 200, "the warm-up answer through " .. warm .. " failed")
    end
    log("holding %d streams open through moongate (model %s), from a fresh daemon", n, model)
    local before = rss_kb(mg.pid)
    local at_peak, conns, ticks = 0, nil, 0
    local sampler = uv.new_timer()
    sampler:start(250, 250, function()
      at_peak = math.max(at_peak, rss_kb(mg.pid) or 0)
      ticks = ticks + 1
      if ticks == 12 then
        conns = select(2, sh(string.format("ss -Htnp state established '( dport = :%d )'", port))
          :gsub("pid=" .. mg.pid .. ",", ""))
      end
    end)
    local held = streams(targets[2], n, model, 120000)
    sampler:close()
    local ok, errs = 0, {}
    for _, x in ipairs(held) do
      if x.done and x.tokens == 10 then
        ok = ok + 1
      else
        local why = x.error or ("tokens " .. x.tokens)
        errs[why] = (errs[why] or 0) + 1
        if not R.stream_error_sample then R.stream_error_sample = (x.head or ""):sub(1, 300) end
      end
    end
    log("  %d/%d complete on %s upstream connection(s); RSS before %s KiB, with all open %s KiB",
      ok, n, tostring(conns), tostring(before), tostring(at_peak))
    return { n = n, ok = ok, errors = errs, before_kb = before, peak_kb = at_peak, conns = conns }
  end
  -- Over HTTP/1.1 a stream holds two of moongate's descriptors (client and
  -- upstream): a machine whose hard file limit is lower holds what fits and
  -- says so instead of counting EMFILE. Over HTTP/2 the upstream side is
  -- one connection, so a stream holds one.
  local n1 = opts.streams
  if fd_limit and 2 * n1 + 100 > fd_limit then
    n1 = math.floor((fd_limit - 100) / 2)
    log("the open file limit here is %d: moongate needs 2 per stream over HTTP/1.1, so %d streams are held instead of %d",
      fd_limit, n1, opts.streams)
  end
  R.streams = hold(n1, "hold", P.mock)
  local n2 = fd_limit and math.min(opts.streams, fd_limit - 100) or opts.streams
  R.streams_h2 = hold(n2, "hold-h2", P.h2, "zero-h2")
  R.portkey_rss_kb = rss_kb(pk.pid)
  R.ccr_rss_kb = rss_kb(ccr.pid)
  stop_all()

  -- instructions per request on the passthrough path (valgrind counts, not
  -- time), and nginx's on the same requests for scale
  local function count(key, port, cmd, args, env, body)
    R.instructions[key] = {}
    for _, n in ipairs { CG_FEW, CG_MANY } do
      local out = WORK .. "/callgrind." .. key .. "." .. n
      os.remove(out)
      procs = {}
      assert_free(P.mock, "mock")
      assert_free(port, key)
      spawn("mock", 1, WORK .. "/mock", { tostring(P.mock) })
      local vargs = { "--tool=callgrind", "--callgrind-out-file=" .. out, cmd }
      for _, a in ipairs(args) do vargs[#vargs + 1] = a end
      spawn("valgrind", 0, "valgrind", vargs, env)
      wait_port(P.mock, "mock")
      wait_port(port, key .. " under callgrind")
      local c = assert(client.connect(port))
      for _ = 1, n do
        c:send(client.request_bytes("POST", "/v1/chat/completions", body or oa_body))
        local res = assert(c:read_response(10000), "no answer under callgrind")
        assert(res.status == 200, key .. " under callgrind answered " .. tostring(res.status))
      end
      c:close()
      stop_all()
      local text = read(out) or ""
      R.instructions[key][n] = tonumber(text:match("\ntotals:%s*(%d+)") or text:match("\nsummary:%s*(%d+)"))
      log("  callgrind, %s, %d requests: %s instructions", key, n, tostring(R.instructions[key][n]))
    end
  end
  R.instructions = {}
  local mg_args = { "serve", "--config", WORK .. "/moongate.lua" }
  local mg_env = { "MOONGATE_LUA_DIR=" .. ROOT .. "/lua", "PATH=" .. os.getenv("PATH") }
  count("moongate", P.moongate, ROOT .. "/build/moongate", mg_args, mg_env)
  count("moongate_long", P.moongate, ROOT .. "/build/moongate", mg_args, mg_env, long_body)
  -- one process, so that callgrind counts the worker's instructions; and
  -- one connection for all the requests (nginx closes one after 1,000)
  write(WORK .. "/nginx-callgrind.conf", (read(WORK .. "/nginx.conf"):gsub("worker_processes 1;", "master_process off;")
    :gsub("access_log off;", "access_log off;\n  keepalive_requests 100000;")))
  local ng_args = { "-c", WORK .. "/nginx-callgrind.conf", "-e", WORK .. "/nginx-error.log" }
  count("nginx", P.nginx, "/usr/sbin/nginx", ng_args)
  count("nginx_long", P.nginx, "/usr/sbin/nginx", ng_args, nil, long_body)
  count("moongate_agent", P.moongate, ROOT .. "/build/moongate", mg_args, mg_env, AGENT.openai)
  count("nginx_agent", P.nginx, "/usr/sbin/nginx", ng_args, nil, AGENT.openai)
  return R
end

-- report -------------------------------------------------------------------------

local function report(R)
  local function over(field, sub, key)
    local vals = {}
    for _, r in ipairs(R.rounds) do
      local v = r[field][key]
      vals[#vals + 1] = v and v[sub]
    end
    return median(vals)
  end
  local function ratio_rounds(field, sub, a, b, op)
    local vals = {}
    for _, r in ipairs(R.rounds) do
      local x, y = r[field][a] and r[field][a][sub], r[field][b] and r[field][b][sub]
      if x and y and y ~= 0 then vals[#vals + 1] = op == "minus" and (x - y) or x / y end
    end
    return median(vals)
  end
  local rows, checks = {}, {}
  -- pass: true (met), false (missed), nil (no target), "short" when this
  -- run was too small to test the target (--quick), or "fd" when the
  -- machine's open file limit was too low for the target
  -- row(figure, value, unit [, target, pass [, note]]): note follows the verdict
  local function row(figure, value, unit, target, pass, note)
    rows[#rows + 1] = string.format("| %s | %s%s | %s | %s%s |", figure,
      value and string.format(value % 1 == 0 and "%d" or "%.3f", value) or "n/a", unit, target or "",
      pass == nil and "" or pass == "short" and "not tested: a quick run"
        or pass == "fd" and string.format("not tested: the open file limit here (%d) holds %d", R.fd_limit, R.streams.n)
        or (pass and "met" or "**missed**"), note and ((pass == nil and "(" or " (") .. note .. ")") or "")
    if type(pass) == "boolean" then checks[#checks + 1] = pass end
  end
  -- how the floor, nginx, fares against a latency target in the same run
  local function floor_note(v, limit)
    return v and string.format("nginx %.3f ms: %s", v, v <= limit and "within it" or "misses it too")
  end
  local add_p99_pass = ratio_rounds("lat", "p99", "passthrough", "direct", "minus")
  local add_p99_tr = ratio_rounds("lat", "p99", "translating", "direct", "minus")
  row("added latency p50, passthrough, c1", ratio_rounds("lat", "p50", "passthrough", "direct", "minus"), " ms")
  local add_p99_ng = ratio_rounds("lat", "p99", "nginx", "direct", "minus")
  row("added latency p99, passthrough, c1", add_p99_pass, " ms", "<= 0.1 ms", add_p99_pass and add_p99_pass <= 0.1,
    floor_note(add_p99_ng, 0.1))
  row("added latency p50, translating, c1", ratio_rounds("lat", "p50", "translating", "direct", "minus"), " ms")
  row("added latency p99, translating, c1", add_p99_tr, " ms", "<= 0.25 ms", add_p99_tr and add_p99_tr <= 0.25,
    floor_note(add_p99_ng, 0.25))
  row("added latency p50, nginx, c1", ratio_rounds("lat", "p50", "nginx", "direct", "minus"), " ms")
  row("added latency p99, nginx, c1", add_p99_ng, " ms")
  row("added latency p99, Portkey, c1", ratio_rounds("lat", "p99", "portkey", "direct", "minus"), " ms")
  for _, t in ipairs(targets) do
    row("req/s c64 zero delay, " .. t.name, over("rps0", "rps", t.key), "")
  end
  local vs_nginx = ratio_rounds("rps0", "rps", "passthrough", "nginx")
  row("throughput passthrough / nginx", vs_nginx, "x", ">= 0.9", vs_nginx and vs_nginx >= 0.9)
  local vs_pk = ratio_rounds("rps0", "rps", "passthrough", "portkey")
  row("throughput passthrough / Portkey", vs_pk, "x", ">= 10", vs_pk and vs_pk >= 10)
  -- where a throughput goes: the proxy's CPU time per request in the same
  -- runs, in user space and in the kernel (steadier than req/s here); at
  -- c1 the same work costs several times more (every request wakes an idle
  -- CPU with cold caches), which is what the c1 latency is made of
  for _, run in ipairs { { "rps0", "c64 zero delay" }, { "lat", "c1" } } do
    for _, t in ipairs(targets) do
      local u, k = over(run[1], "user_us", t.key), over(run[1], "sys_us", t.key)
      if u and k then
        row("CPU per request " .. run[2] .. ", " .. t.name, u + k,
          string.format(" us (user %.1f, system %.1f)", u, k))
      end
    end
  end
  for _, t in ipairs(targets) do
    if not t.cpu_only then row("req/s c64 20 ms mock, " .. t.name, over("rps20", "rps", t.key), "") end
  end
  -- stream figures: percentiles over the samples of every round together
  -- (a p99 of one round's 50 first tokens is the luck of one stream), the
  -- proxy's minus the direct call's. A first token's added time subtracts
  -- the direct call's median: the direct first token takes 0.1 ms, but its
  -- p99 is whatever the machine's worst hiccup was (0.3 to 6 ms on the same
  -- machine within an hour), and subtracting that could make a slow proxy
  -- look fast, even "added" below zero. The median never flatters.
  local function pooled_add(key, field, p, base_p)
    local function all(k, q)
      local v = {}
      for _, r in ipairs(R.rounds) do
        for _, x in ipairs((r.stream[k] or {})[field] or {}) do v[#v + 1] = x end
      end
      return pct(v, q)
    end
    local a, b = all(key, p), all("direct", base_p or p)
    return a and b and a - b
  end
  local ttft_add = pooled_add("passthrough", "ttft", 0.99, 0.5)
  local stalls = 0
  for _, r in ipairs(R.rounds) do stalls = stalls + ((r.stream.passthrough or {}).stalls or 0) end
  row("added TTFT p50, paced, passthrough", pooled_add("passthrough", "ttft", 0.5), " ms")
  local ttft_ng = pooled_add("nginx", "ttft", 0.99, 0.5)
  row("added TTFT p99, paced, passthrough", ttft_add, " ms", "<= 0.2 ms, no stalls", ttft_add and ttft_add <= 0.2 and stalls == 0,
    floor_note(ttft_ng, 0.2))
  row("added TTFT p99, paced, translating", pooled_add("translating", "ttft", 0.99, 0.5), " ms")
  row("added TTFT p99, paced, nginx", ttft_ng, " ms")
  row(string.format("added TTFT p99, %d streams at once, passthrough", BURST), pooled_add("passthrough", "burst", 0.99, 0.5), " ms")
  row(string.format("added TTFT p99, %d streams at once, nginx", BURST), pooled_add("nginx", "burst", 0.99, 0.5), " ms")
  row("added gap p99 between chunks, passthrough", pooled_add("passthrough", "gaps", 0.99), " ms")
  row("stalls (gap > 100 ms), passthrough", stalls, "")
  local serr = 0
  for _, r in ipairs(R.rounds) do serr = serr + ((r.stream.passthrough or {}).errors or 0) end
  row("paced streams failed or short, passthrough", serr, "")
  local idle = R.idle_rss_kb and R.idle_rss_kb / 1024
  row("idle resident memory", idle, " MiB", "<= 16 MiB", idle and idle <= 16)
  row("resident memory after load", R.load_rss_kb and R.load_rss_kb / 1024, " MiB")
  -- held streams: over HTTP/1.1 to the mock, and over HTTP/2 (TLS) through
  -- nghttpx, the way hosted APIs are reached
  local function held_rows(s, how, fd_n)
    if not s then return end
    local per = s.peak_kb and s.before_kb and (s.peak_kb - s.before_kb) / s.n
    row(string.format("memory per open stream, %s (%d held)", how, s.n), per, " KiB", "<= 48 KiB", per and per <= 48)
    row(string.format("streams complete of %d, %s", s.n, how), s.ok, "", "10,000, all, no errors",
      s.n < 10000 and (s.ok == s.n and (R.streams_wanted > s.n and fd_n and "fd" or "short") or false) or s.ok == s.n)
    row(string.format("upstream connections carrying them, %s", how), s.conns, "")
  end
  local s = R.streams
  held_rows(s, "HTTP/1.1 upstream", true)
  held_rows(R.streams_h2, "HTTP/2 upstream")
  -- the difference between the two runs, per request (keys are request
  -- counts: results.json from before holds 200 and 600)
  local function ipr(key)
    local lo, hi
    for n in pairs(R.instructions[key] or {}) do
      n = tonumber(n)
      if not lo or n < lo then lo = n end
      if not hi or n > hi then hi = n end
    end
    local c = R.instructions[key]
    local a, b = c and (c[lo] or c[tostring(lo)]), c and (c[hi] or c[tostring(hi)])
    return a and b and hi > lo and math.floor((b - a) / (hi - lo) + 0.5) or nil
  end
  row("instructions per request, passthrough (callgrind)", ipr("moongate"), "")
  row("instructions per request, nginx proxy_pass (callgrind)", ipr("nginx"), "")
  row("instructions per request, passthrough, 100-message conversation (callgrind)", ipr("moongate_long"), "")
  row("instructions per request, nginx, 100-message conversation (callgrind)", ipr("nginx_long"), "")
  row("instructions per request, passthrough, agent request (callgrind)", ipr("moongate_agent"), "")
  row("instructions per request, nginx, agent request (callgrind)", ipr("nginx_agent"), "")
  row("Portkey resident memory", R.portkey_rss_kb and R.portkey_rss_kb / 1024, " MiB")

  -- the work agents send: a 167 KiB turn, passed through and translated,
  -- its CPU per request against nginx's in the same run; stream frames
  local function cpu(field, key)
    local u, k = over(field, "user_us", key), over(field, "sys_us", key)
    return u and k and u + k
  end
  local function cpu_ratio(field, a, b)
    local vals = {}
    for _, r in ipairs(R.rounds) do
      local x, y = r[field] and r[field][a], r[field] and r[field][b]
      if x and y and x.user_us and y.user_us and (y.user_us + y.sys_us) > 0 then
        vals[#vals + 1] = (x.user_us + x.sys_us) / (y.user_us + y.sys_us)
      end
    end
    return median(vals)
  end
  local function frame(key)
    local vals = {}
    for _, r in ipairs(R.rounds) do vals[#vals + 1] = r.frames and r.frames[key] and r.frames[key].us end
    return median(vals)
  end
  if R.rounds[1] and R.rounds[1].agent then
    rows[#rows + 1] = "| **agent-sized work (167 KiB turn)** | | | |"
    local ag_pass, ag_ng = cpu("agent", "passthrough"), cpu("agent", "nginx")
    local ag_ratio = cpu_ratio("agent", "passthrough", "nginx")
    row("agent request passthrough, CPU per request", ag_pass, " us", "<= 2x nginx", ag_ratio and ag_ratio <= 2,
      ag_ratio and string.format("%.1fx nginx's %.0f us", ag_ratio, ag_ng or 0))
    local ag_add = ratio_rounds("agent", "p50", "passthrough", "direct", "minus")
    row("agent request passthrough, added p50 c1", ag_add, " ms", "<= 0.3 ms", ag_add and ag_add <= 0.3,
      floor_note(ratio_rounds("agent", "p50", "nginx", "direct", "minus"), 0.3))
    local ag_tr = cpu("agent", "translating")
    row("agent request translated (Anthropic client, OpenAI upstream), CPU", ag_tr and ag_tr / 1000, " ms", "<= 1.0 ms",
      ag_tr and ag_tr <= 1000)
    local ag_oa = cpu("agent", "translating_oa")
    row("agent request translated (OpenAI client, Anthropic upstream), CPU", ag_oa and ag_oa / 1000, " ms", "<= 1.0 ms",
      ag_oa and ag_oa <= 1000)
    row("agent request, nginx proxy_pass, CPU per request", ag_ng, " us")
    row("agent request, Portkey, CPU per request", cpu("agent", "portkey"), " us")
    local pk_ratio = cpu_ratio("agent", "portkey", "passthrough")
    row("agent request passthrough, Portkey's CPU / moongate's", pk_ratio, "x", ">= 30x", pk_ratio and pk_ratio >= 30)
    row("1 MiB request passthrough, CPU per request", cpu("agent1m", "passthrough"), " us", nil, nil,
      cpu_ratio("agent1m", "passthrough", "nginx") and string.format("%.1fx nginx's %.0f us",
        cpu_ratio("agent1m", "passthrough", "nginx"), cpu("agent1m", "nginx") or 0))
    local ft, fp, fn = frame("translating"), frame("passthrough"), frame("nginx")
    row("translated stream frame, CPU (burst of 2,000)", ft, " us", "<= 2 us", ft and ft <= 2)
    row("passthrough stream frame, CPU (burst of 2,000)", fp, " us", "<= 1.5x nginx", fp and fn and fp <= 1.5 * fn,
      fn and string.format("nginx %.2f us", fn))
    local small = cpu_ratio("rps0", "passthrough", "nginx")
    row("small request passthrough, CPU / nginx's (c64)", small, "x", "<= 1.5x", small and small <= 1.5)
    local p99_pass = ratio_rounds("lat", "p99", "passthrough", "direct", "minus")
    local p99_ratio = p99_pass and add_p99_ng and add_p99_ng > 0 and p99_pass / add_p99_ng
    row("small request passthrough, added p99 c1 / nginx's", p99_ratio, "x", "<= 1.5x", p99_ratio and p99_ratio <= 1.5)

    -- claude-code-router serves the translated rows only (an Anthropic
    -- client, the OpenAI-format mock upstream): its CPU against moongate
    -- translating's in the same round
    rows[#rows + 1] = "| **claude-code-router (Anthropic client, OpenAI upstream)** | | | |"
    local function vs_mg(v, mg)
      return v and mg and string.format("moongate translating %.1f us", mg)
    end
    local sm_ccr, sm_mg = cpu("rps0", "ccr"), cpu("rps0", "translating")
    row("small request translated, claude-code-router, CPU per request (c64)", sm_ccr, " us", nil, nil, vs_mg(sm_ccr, sm_mg))
    local sm_ratio = cpu_ratio("rps0", "ccr", "translating")
    row("small request translated, claude-code-router's CPU / moongate's (c64)", sm_ratio, "x", ">= 30x",
      sm_ratio and sm_ratio >= 30)
    local ag_ccr = cpu("agent", "ccr")
    row("agent request translated, claude-code-router, CPU per request", ag_ccr, " us", nil, nil, vs_mg(ag_ccr, ag_tr))
    local ag_ccr_ratio = cpu_ratio("agent", "ccr", "translating")
    row("agent request translated, claude-code-router's CPU / moongate's", ag_ccr_ratio, "x", ">= 30x",
      ag_ccr_ratio and ag_ccr_ratio >= 30)
    -- its stream frames, when its streams bring every delta
    local fr_ratios, short, n, why = {}, 0, 0, nil
    for _, r in ipairs(R.rounds) do
      local x, y = r.frames and r.frames.ccr, r.frames and r.frames.translating
      if x then
        short, n, why = short + (x.short or 0), n + (x.n or 0), why or x.why
        if x.us and y and y.us and y.us > 0 then fr_ratios[#fr_ratios + 1] = x.us / y.us end
      end
    end
    local fail = n > 0 and short > 0 and (short == n and "streams fail: " or string.format("%d of %d streams short: ", short, n))
      .. (why or "?")
    local fc, fr = frame("ccr"), median(fr_ratios)
    row("translated stream frame, claude-code-router, CPU (burst of 2,000)", fc, " us", nil, nil,
      fail or (fc and ft and string.format("moongate translating %.2f us", ft)))
    row("translated stream frame, claude-code-router's CPU / moongate's", fr, "x", ">= 30x", fr and fr >= 30, fail or nil)
    row("claude-code-router resident memory", R.ccr_rss_kb and R.ccr_rss_kb / 1024, " MiB")
  end

  local md = { "# moongate benchmark", "",
    string.format("%s; %d round(s) of %d s per wrk run; medians over rounds; added = gateway minus the direct call in the same round.",
      os.date("!%Y-%m-%d %H:%M UTC"), opts.rounds, opts.duration),
    "Pinning: proxies on CPU 0, mock upstream and load generators on CPU 1 (taskset).", "",
    "| figure | value | target | |", "|---|---|---|---|" }
  for _, l in ipairs(rows) do md[#md + 1] = l end
  md[#md + 1] = ""
  md[#md + 1] = "Stream errors: HTTP/1.1 " .. json.encode(s.errors) ..
    (R.streams_h2 and (", HTTP/2 " .. json.encode(R.streams_h2.errors)) or "") ..
    (R.stream_error_sample and ("; first failed answer began: `" .. R.stream_error_sample:gsub("[\r\n]+", " ") .. "`") or "")
  write(OUT .. "/results.md", table.concat(md, "\n") .. "\n")
  write(OUT .. "/results.json", json.encode(R))

  -- chart: throughput and p99 latency per target
  local dat = {}
  for _, t in ipairs(targets) do
    dat[#dat + 1] = string.format('"%s" %f %f', t.name, over("rps0", "rps", t.key) or 0, over("lat", "p99", t.key) or 0)
  end
  write(WORK .. "/chart.dat", table.concat(dat, "\n") .. "\n")
  write(WORK .. "/chart.gp", string.format([[
set terminal png size 1000,500 noenhanced
set output "%s/chart.png"
set multiplot layout 1,2 title "moongate vs direct, nginx, Portkey and claude-code-router (loopback, 2 cores)"
set style data histograms
set style fill solid 0.8
set xtics rotate by -30
set title "requests/s, c64, zero-delay mock"
plot "%s/chart.dat" using 2:xtic(1) notitle
set title "p99 latency ms, c1"
plot "%s/chart.dat" using 3:xtic(1) notitle
unset multiplot
]], OUT, WORK, WORK))
  sh("gnuplot " .. WORK .. "/chart.gp")
  io.stdout:write(table.concat(md, "\n"), "\n")
  local met = 0
  for _, c in ipairs(checks) do if c then met = met + 1 end end
  io.stdout:write(string.format("\ntargets met: %d of %d; results in %s/results.md and chart.png\n", met, #checks, OUT))
end

if opts.report then -- the table again from the last run's raw numbers
  local R = json.decode(assert(read(OUT .. "/results.json"), "no " .. OUT .. "/results.json: run the bench first"))
  for key, c in pairs(R.instructions or {}) do -- JSON made the counts' keys strings
    local n = {}
    for k, v in pairs(c) do n[tonumber(k)] = v end
    R.instructions[key] = n
  end
  report(R)
  os.exit(0)
end
local ok, R = xpcall(main, debug.traceback)
if not ok then
  stop_all()
  for _, p in ipairs(procs) do if p.log ~= "" then log("%s: %s", p.name, p.log:sub(-2000)) end end
  error(R, 0)
end
report(R)
