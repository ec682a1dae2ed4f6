-- GET /metrics against the real daemon (2 worker threads): a scrape that
-- promtool (Debian's prometheus package) accepts, counters and histograms
-- that move as traffic flows (requests, durations, time to first byte,
-- tokens from the usage the upstream reported, retries, fallbacks), a
-- flood of random model names that leaves the series count bounded, the
-- gate's numbers, reloads counted after SIGHUP, and no secret in a scrape.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"

local KEY = "sk-metrics-team-a-0123456789abcdef"
local UP_SECRET = "sk-metrics-upstream-secret-9876543210"
local AUTH = { Authorization = "Bearer " .. KEY }

-- the samples of a scrape: {["name{labels}"] = value}
local function parse(text)
  local t = {}
  for line in text:gmatch("[^\n]+") do
    if line:sub(1, 1) ~= "#" then
      local key, v = line:match("^(.-) (%S+)$")
      assert(key, "not a sample line: " .. line)
      t[key] = tonumber(v) or (v == "+Inf" and math.huge) or v
    end
  end
  return t
end

local function samples(text)
  local n = 0
  for line in text:gmatch("[^\n]+") do if line:sub(1, 1) ~= "#" then n = n + 1 end end
  return n
end

-- the sum of the samples of one metric whose labels hold every one of `want`
local function sum(t, name, want)
  local total = 0
  for key, v in pairs(t) do
    local n, labels = key:match("^([%w_]+)(.*)$")
    if n == name then
      local ok = true
      for k, val in pairs(want or {}) do
        if not labels:find(string.format('[{,]%s="%s"[,}]', k, (val:gsub("%p", "%%%0")))) then ok = false end
      end
      if ok then total = total + v end
    end
  end
  return total
end

-- promtool check metrics on a scrape -> its exit status, what it printed
local function promtool(text)
  local path = helpers.tmpfile(text, ".prom")
  local p = assert(io.popen("promtool check metrics < " .. path .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  local rc = tonumber(out:match("rc=(%d+)%s*$"))
  return rc, (out:gsub("rc=%d+%s*$", ""))
end

local function chat(model, text, stream)
  return json.encode({ model = model, messages = { { role = "user", content = text } }, stream = stream or nil })
end

local function anthropic(model, text, stream)
  return json.encode({ model = model, max_tokens = 50, stream = stream or nil,
    messages = { { role = "user", content = text } } })
end

describe("GET /metrics", function()
  local mock, s
  local function scrape()
    local res = assert(s:request("GET", "/metrics", nil, AUTH, 15000))
    assert.equal(200, res.status, res.body)
    return res.body, parse(res.body), res
  end
  -- a request is counted once the daemon has freed it, a moment after its
  -- client has the whole answer: scrape until pred(samples) holds (or 5 s)
  local function scrape_until(pred)
    local text, t
    client.run_until(function()
      text, t = scrape()
      return pred(t)
    end, 5000)
    return text, t
  end
  local function requests(t, labels) return sum(t, "moongate_requests_total", labels) end
  local function post(path, body, headers)
    local h = { Authorization = AUTH.Authorization }
    for k, v in pairs(headers or {}) do h[k] = v end
    return assert(s:request("POST", path, body, h, 15000))
  end

  setup(function()
    mock = helpers.mock()
    s = helpers.start { workers = 2, config = string.format([[
return {
  keys = { { name = "team-a", key = %q } },
  providers = {
    e = { kind = "echo", max_concurrent = 2 },
    up = { kind = "openai", base_url = %q, api_key = %q, retries = 1, retry_base_ms = 10 },
    dead = { kind = "openai", base_url = "http://127.0.0.1:1/v1", retries = 0 },
    spare = { kind = "openai", base_url = %q, api_key = %q },
  },
  routes = {
    { match = "chain", provider = { "dead", "spare" } },
    { match = "gpt-*", provider = "up" },
    { match = "flood-*", provider = "e" },
    { match = "m*", provider = "e" },
  },
}]], KEY, mock.url .. "/v1", UP_SECRET, mock.url .. "/v1", UP_SECRET) }
  end)
  teardown(function()
    if s then s:stop_clean() end
    if mock then mock:stop() end
  end)
  before_each(function() mock:reset() end)

  it("wants an inbound key as /stats does, and answers text promtool accepts without a complaint", function()
    local res = assert(s:request("GET", "/metrics"))
    assert.equal(401, res.status)
    assert.equal(401, assert(s:request("GET", "/metrics", nil, { Authorization = "Bearer sk-wrong" })).status)
    -- some traffic first, so that every kind of series is there
    assert.equal(200, post("/v1/chat/completions", chat("m1", "one two")).status)
    assert.equal(200, post("/v1/messages", anthropic("m1", "three four", true), { ["anthropic-version"] = "2023-06-01" }).status)
    local text, t
    text, t, res = scrape()
    assert.equal("text/plain; version=0.0.4; charset=utf-8", res.headers["content-type"])
    local rc, out = promtool(text)
    assert.equal(0, rc, out)
    assert.equal("", out)
    for _, name in ipairs { "moongate_requests_total", "moongate_request_duration_seconds",
      "moongate_time_to_first_byte_seconds", "moongate_tokens_total", "moongate_retries_total",
      "moongate_fallbacks_total", "moongate_requests_in_flight", "moongate_streams_in_flight",
      "moongate_buffered_bytes", "moongate_gate_queued", "moongate_gate_rejected_total",
      "moongate_ws_pool_workers", "moongate_reloads_total", "moongate_uptime_seconds",
      "moongate_process_open_fds", "moongate_process_resident_memory_bytes", "moongate_lua_states" } do
      assert.truthy(text:find("\n# TYPE " .. name .. " ", 1, true), name .. " is missing")
    end
    assert.equal(2, t.moongate_workers)
    assert.equal(2, t.moongate_lua_states) -- one per worker thread
    assert.is_true(t.moongate_process_open_fds > 5)
    assert.is_true(t.moongate_process_resident_memory_bytes > 1e6)
    assert.is_true(t.moongate_uptime_seconds > 0)
  end)

  it("counts requests, durations, time to first byte and the upstream's tokens as traffic flows", function()
    local _, before = scrape()
    for i = 1, 3 do
      assert.equal(200, post("/v1/chat/completions", chat("m1", "a b c " .. i)).status)
    end
    local res = post("/v1/chat/completions", chat("m1", "streamed words here", true))
    assert.equal(200, res.status)
    -- an OpenAI client to an OpenAI upstream (its answer passed through
    -- whole) and an Anthropic client to it (translated): the mock reports
    -- 7 prompt tokens and a completion token per word
    assert.equal(200, post("/v1/chat/completions", chat("gpt-x", "one two three")).status)
    assert.equal(200, post("/v1/messages", anthropic("gpt-x", "four five"), { ["anthropic-version"] = "2023-06-01" }).status)
    -- a model no route serves: counted as "unknown", its name nowhere
    assert.equal(404, post("/v1/chat/completions", chat("no-such-model-xyz", "x")).status)
    local n0 = requests(before, { door = "openai_chat" }) + requests(before, { door = "anthropic_messages" })
    local text, after = scrape_until(function(t)
      return requests(t, { door = "openai_chat" }) + requests(t, { door = "anthropic_messages" }) - n0 >= 7
    end)

    local function delta(name, labels) return sum(after, name, labels) - sum(before, name, labels) end
    assert.equal(4, delta("moongate_requests_total", { door = "openai_chat", provider = "e", model = "m1", status = "200" }))
    assert.equal(1, delta("moongate_requests_total", { door = "openai_chat", provider = "up", model = "gpt-x", status = "200" }))
    assert.equal(1, delta("moongate_requests_total", { door = "anthropic_messages", provider = "up", model = "gpt-x" }))
    assert.equal(1, delta("moongate_requests_total", { door = "openai_chat", model = "unknown", status = "404" }))
    assert.is_nil(text:find("no-such-model-xyz", 1, true))
    assert.equal(4, delta("moongate_request_duration_seconds_count", { door = "openai_chat", provider = "e" }))
    assert.equal(4, delta("moongate_request_duration_seconds_bucket", { door = "openai_chat", provider = "e", le = "+Inf" }))
    assert.is_true(delta("moongate_request_duration_seconds_sum", { door = "openai_chat", provider = "e" }) > 0)
    assert.equal(4, delta("moongate_time_to_first_byte_seconds_count", { door = "openai_chat", provider = "e" }))
    -- a bucket counts what took at most its bound: these took well under 5 s
    assert.equal(4, delta("moongate_request_duration_seconds_bucket", { door = "openai_chat", provider = "e", le = "5" }))
    -- tokens by key name and model: the echo provider's and the mock's
    assert.is_true(delta("moongate_tokens_total", { key = "team-a", model = "m1", direction = "in" }) > 0)
    assert.is_true(delta("moongate_tokens_total", { key = "team-a", model = "m1", direction = "out" }) >= 3 * 4 + 3)
    assert.equal(14, delta("moongate_tokens_total", { key = "team-a", model = "gpt-x", direction = "in" }))
    assert.equal(5, delta("moongate_tokens_total", { key = "team-a", model = "gpt-x", direction = "out" }))
    -- nothing left in flight once every answer is out (the last write's
    -- completion may come after the client has read it: under TSan it does)
    local _, settled = scrape_until(function(t)
      return t.moongate_streams_in_flight == 0 and t.moongate_buffered_bytes == 0
    end)
    assert.equal(0, settled.moongate_streams_in_flight)
    assert.equal(0, settled.moongate_buffered_bytes)
  end)

  it("counts retries and fallbacks by provider", function()
    local _, before = scrape()
    mock:queue { { status = 500, json = { error = { message = "down once" } } } }
    assert.equal(200, post("/v1/chat/completions", chat("gpt-x", "again")).status)
    assert.equal(200, post("/v1/chat/completions", chat("chain", "fall back")).status)
    local n0 = requests(before, { door = "openai_chat" })
    local _, after = scrape_until(function(t) return requests(t, { door = "openai_chat" }) - n0 >= 2 end)
    assert.equal(1, sum(after, "moongate_retries_total", { provider = "up" }) - sum(before, "moongate_retries_total", { provider = "up" }))
    assert.equal(1, sum(after, "moongate_fallbacks_total", { provider = "dead" }) - sum(before, "moongate_fallbacks_total", { provider = "dead" }))
    assert.equal(1, sum(after, "moongate_requests_total", { model = "chain", provider = "spare", status = "200" })
      - sum(before, "moongate_requests_total", { model = "chain", provider = "spare", status = "200" }))
  end)

  it("shows the gate's permits, waits and rejections for a provider with max_concurrent", function()
    local _, before = scrape()
    assert.equal(200, post("/v1/chat/completions", chat("m2", "gate me")).status)
    local n0 = requests(before, { model = "m2" })
    local text, after = scrape_until(function(t) return requests(t, { model = "m2" }) - n0 >= 1 end)
    assert.equal(2, after['moongate_gate_limit{gate="provider:e"}'])
    assert.equal(0, after['moongate_gate_in_use{gate="provider:e"}'])
    assert.equal(0, after['moongate_gate_queued{gate="provider:e"}'])
    assert.equal(1, after['moongate_gate_granted_total{gate="provider:e"}'] - before['moongate_gate_granted_total{gate="provider:e"}'])
    assert.is_number(after['moongate_gate_rejected_total{gate="provider:e"}'])
    assert.is_number(after['moongate_gate_timed_out_total{gate="provider:e"}'])
    assert.is_number(after['moongate_gate_wait_seconds_total{gate="provider:e"}'])
    assert.truthy(text:find('moongate_ws_pool_workers{state="idle"} 0', 1, true))
  end)

  it("keeps the series count bounded under a flood of random model names", function()
    local text0, t0 = scrape()
    local before = samples(text0)
    local sent = sum(t0, "moongate_requests_total", { door = "openai_chat" })
    -- names no route serves: one "unknown" series, whatever they are
    for i = 1, 200 do
      post("/v1/chat/completions", chat(string.format("junk-%d-%08x", i, math.random(0, 0x7fffffff)), "x"))
    end
    local text1 = scrape_until(function(t) return requests(t, { door = "openai_chat" }) - sent >= 200 end)
    assert.is_true(samples(text1) - before <= 2, (samples(text1) - before) .. " more samples")
    -- names a route serves (flood-*): each is a model the gateway decided,
    -- and past the cap they count as "other"
    for i = 1, 2000 do
      local res = post("/v1/chat/completions", chat(string.format("flood-%d-%08x", i, math.random(0, 0x7fffffff)), "x"))
      assert.equal(200, res.status)
    end
    local text2, t2 = scrape_until(function(t) return requests(t, { door = "openai_chat" }) - sent >= 2200 end)
    local grown = samples(text2) - before
    -- requests_total and tokens_total (in and out) each stop at 200 series
    -- plus a few "other" ones, far below the 6000 the names would make
    assert.is_true(grown <= 2 * 260, grown .. " more samples")
    assert.is_true(grown >= 200, grown .. " more samples") -- the first names did count
    assert.is_true(t2.moongate_metrics_label_overflow_total > 1000)
    assert.is_true(sum(t2, "moongate_requests_total", { model = "other" }) > 1000)
    -- only the model collapses: the provider (and the key) still read
    assert.is_true(sum(t2, "moongate_requests_total", { model = "other", provider = "e" }) > 1000)
    assert.equal(0, sum(t2, "moongate_requests_total", { provider = "other" }))
    assert.equal(0, sum(t2, "moongate_tokens_total", { key = "other" }))
    -- no request went uncounted
    assert.equal(2200, sum(t2, "moongate_requests_total", { door = "openai_chat" }) - sent)
    local rc, out = promtool(text2)
    assert.equal(0, rc, out)
  end)

  it("shows no secret: neither an inbound key nor an upstream's, only the key's name", function()
    assert.equal(200, post("/v1/chat/completions", chat("gpt-x", "secret test")).status)
    local text = scrape()
    assert.is_nil(text:find(KEY, 1, true))
    assert.is_nil(text:find(KEY:sub(1, 12), 1, true))
    assert.is_nil(text:find(UP_SECRET, 1, true))
    assert.is_nil(text:find("sk-", 1, true))
    assert.truthy(text:find('key="team-a"', 1, true))
  end)
end)

describe("GET /metrics and reloads", function()
  it("counts each worker's reloads after SIGHUP, by outcome", function()
    local cfg = [[return { providers = { e = { kind = "echo" } }, routes = { { match = "*", provider = "e" } } }]]
    local path = helpers.tmpfile(cfg)
    local s = helpers.start { workers = 2, args = { "--config", path } }
    finally(function() s:stop(); os.remove(path) end)
    local function reloads()
      local t = parse(assert(s:request("GET", "/metrics")).body)
      return t['moongate_reloads_total{outcome="ok"}'], t['moongate_reloads_total{outcome="failed"}'], t
    end
    local ok, failed = reloads()
    assert.equal(0, ok)
    assert.equal(0, failed)
    s.handle:kill("sighup")
    assert.is_true(client.run_until(function() return (reloads()) == 2 end, 10000), "no reload counted")
    -- a config that does not load: the old scripts keep serving
    local f = assert(io.open(path, "w"))
    f:write("return { providers = ")
    f:close()
    s.handle:kill("sighup")
    -- each worker's failed load: under a sanitizer one may come seconds after the other
    assert.is_true(client.run_until(function() return select(2, reloads()) == 2 end, 20000), "no failed reload counted")
    ok = reloads()
    assert.equal(2, ok)
    -- the retired states close once nothing holds them: one per worker again
    local states
    assert.is_true(client.run_until(function()
      states = select(3, reloads()).moongate_lua_states
      return states == 2
    end, 20000), "lua_states: " .. tostring(states))
    local rc, out = promtool(assert(s:request("GET", "/metrics")).body)
    assert.equal(0, rc, out)
    s:stop_clean()
  end)
end)
