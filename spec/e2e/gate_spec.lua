-- The gate against the real daemon: concurrency permits shared by the
-- worker threads, handed out fairly between inbound keys, a queue timeout
-- and a full queue answered with 429 and Retry-After in the client's
-- format, the counts in /stats, and permits that outlive a reload.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"

local BUSY, CALM = "sk-gate-busy-0123456789", "sk-gate-calm-0123456789"

local function config(extra)
  return string.format([[
return {
  keys = { { name = "busy", key = %q }, { name = "calm", key = %q } },
  gate = { queue_timeout_ms = %d, max_queue = %d },
  providers = { slow = { kind = "echo", chunk_delay_ms = %d, max_concurrent = %d } },
  routes = { { match = "*", provider = "slow" } },
}]], BUSY, CALM, extra.timeout or 30000, extra.max_queue or 1000, extra.delay or 50, extra.permits or 2)
end

local function body(text, stream)
  return json.encode({ model = "m", messages = { { role = "user", content = text } }, stream = stream or nil })
end

-- sends a chat request on its own connection; returns the connection
local function send(s, key, text, stream)
  local c = s:connect()
  assert(c:send(client.request_bytes("POST", "/v1/chat/completions", body(text, stream),
    { Authorization = "Bearer " .. key })))
  return c
end

local function done(c)
  local st = c:response_state()
  return st and st.complete
end

describe("the gate", function()
  it("shares a provider's permits fairly: a second key is not queued behind the first one's burst", function()
    local s = helpers.start { workers = 2, config = config { permits = 2, delay = 40 } }
    finally(function() s:stop() end)
    local order, conns = {}, {}
    -- how many requests have reached the gate (let in, or waiting)
    local function arrived()
      local g = json.decode(s:request("GET", "/stats", nil, { Authorization = "Bearer " .. CALM }).body).gate["provider:slow"]
      return g and g.granted + g.queued or 0
    end
    for i = 1, 50 do conns[#conns + 1] = { key = "busy", n = i, c = send(s, BUSY, "b" .. i .. " x x") } end
    assert.is_true(client.run_until(function() return arrived() == 50 end, 20000))
    local before = 0 -- busy answers already over when the calm key comes (a slow run: many)
    for _, t in ipairs(conns) do if done(t.c) then before = before + 1 end end
    for i = 1, 5 do -- each at the gate before the next is sent: two worker threads take them
      conns[#conns + 1] = { key = "calm", n = i, c = send(s, CALM, "c" .. i .. " x x") }
      assert.is_true(client.run_until(function() return arrived() == 50 + i end, 20000))
    end
    assert.is_true(client.run_until(function()
      for _, t in ipairs(conns) do
        if not t.finished and done(t.c) then
          t.finished = true
          local st = t.c:response_state()
          assert.equal(200, st.status, st.body)
          order[#order + 1] = t
        end
      end
      return #order == #conns
    end, 60000), "not every request was answered")
    -- the calm key's five came in order (two permits: neighbours may end
    -- in either order), and none waited for the busy key's whole burst:
    -- round robin puts them within the first dozen or so
    local calm_at, last_calm = {}, 0
    for pos, t in ipairs(order) do
      if t.key == "calm" then
        calm_at[#calm_at + 1] = t.n
        last_calm = pos
      end
    end
    local sorted = { unpack(calm_at) }
    table.sort(sorted)
    assert.same({ 1, 2, 3, 4, 5 }, sorted)
    for pos, n in ipairs(calm_at) do
      assert.is_true(math.abs(pos - n) <= 1, "calm request " .. n .. " ended " .. pos .. "th: " .. table.concat(calm_at, " "))
    end
    assert.is_true(last_calm - before <= 20, "the calm key's last request finished at position " .. last_calm
      .. ", " .. before .. " busy ones had ended before it came")
    local stats = json.decode(s:request("GET", "/stats", nil, { Authorization = "Bearer " .. CALM }).body)
    local g = stats.gate["provider:slow"]
    assert.equal(2, g.limit)
    assert.equal(0, g.in_use)
    assert.equal(55, g.granted)
    assert.is_true(g.waited >= 40, "waited: " .. g.waited)
    for _, t in ipairs(conns) do t.c:close() end
    s:stop_clean()
  end)

  it("answers 429 with Retry-After when the wait passes queue_timeout_ms, or the queue is full", function()
    local s = helpers.start { workers = 2, config = config { permits = 1, timeout = 300, max_queue = 1, delay = 100 } }
    finally(function() s:stop() end)
    local long = send(s, BUSY, helpers.words(30), true) -- holds the one permit for 3 s
    assert(long:wait(function(c) return c.buf:find("\r\n\r\n", 1, true) end, 5000))
    local waiting = send(s, CALM, "hi")
    client.run_until(function() return false end, 50)
    -- the queue holds one: a third request is refused at once
    local res = s:request("POST", "/v1/messages", json.encode({ model = "m", max_tokens = 5,
      messages = { { role = "user", content = "hi" } } }), { ["x-api-key"] = CALM, ["anthropic-version"] = "2023-06-01" })
    assert.equal(429, res.status)
    assert.equal("error", json.decode(res.body).type) -- Anthropic's shape
    assert.equal("rate_limit_error", json.decode(res.body).error.type)
    assert.truthy(res.headers["retry-after"])
    -- the waiting one times out (the thread's tick sees it within a second)
    assert.is_true(waiting:wait(done, 3000))
    local st = waiting:response_state()
    assert.equal(429, st.status)
    assert.equal("1", st.headers["retry-after"])
    local err = json.decode(st.body).error
    assert.equal("rate_limit_exceeded", err.code)
    assert.matches("provider:slow", err.message)
    -- the long stream was never disturbed
    assert.is_true(long:wait(done, 10000))
    assert.matches("%[DONE%]", long:response_state().body)
    local g = json.decode(s:request("GET", "/stats", nil, { Authorization = "Bearer " .. CALM }).body).gate["provider:slow"]
    assert.equal(1, g.timed_out)
    assert.equal(1, g.rejected)
    s:stop_clean()
  end)

  it("makes a fallback wait at its new provider's gate, and give back the first one's permits", function()
    local dead = helpers.refused_port()
    local s = helpers.start { workers = 2, config = string.format([[
return {
  keys = { { name = "busy", key = %q }, { name = "calm", key = %q } },
  gate = { queue_timeout_ms = 2000 },
  providers = {
    gone = { kind = "openai", base_url = "http://127.0.0.1:%d/v1", api_key = "k", retries = 0, max_concurrent = 1 },
    spare = { kind = "echo", chunk_delay_ms = 100, max_concurrent = 1 },
  },
  routes = { { match = "direct", provider = "spare" }, { match = "*", provider = { "gone", "spare" } } },
}]], BUSY, CALM, dead) }
    finally(function() s:stop() end)
    local function gate_of(name)
      return json.decode(s:request("GET", "/stats", nil, { Authorization = "Bearer " .. CALM }).body).gate[name]
    end
    -- the spare's one permit is held by a long stream
    local c = s:connect()
    assert(c:send(client.request_bytes("POST", "/v1/chat/completions", json.encode({ model = "direct", stream = true,
      messages = { { role = "user", content = helpers.words(12) } } }), { Authorization = "Bearer " .. BUSY })))
    assert(c:wait(function(x) return x.buf:find("\r\n\r\n", 1, true) end, 5000))
    -- the fallback request fails at "gone" and waits for the spare's permit
    local f = send(s, CALM, "fall back")
    assert.is_true(client.run_until(function()
      local g = gate_of("provider:spare")
      return g and g.queued == 1
    end, 5000), "the fallback did not wait at the spare's gate")
    assert.equal(0, gate_of("provider:gone").in_use) -- given back as it fell back
    assert.is_falsy(done(f))
    assert.is_true(f:wait(done, 10000))
    assert.equal(200, f:response_state().status, f:response_state().body)
    assert.matches("fall back", f:response_state().body)
    assert.is_true(c:wait(done, 10000))
    local g = gate_of("provider:spare")
    assert.equal(0, g.in_use)
    assert.equal(2, g.granted)
    assert.equal(0, gate_of("provider:gone").in_use)
    -- a fallback that waits past queue_timeout_ms gets its 429
    c = s:connect()
    assert(c:send(client.request_bytes("POST", "/v1/chat/completions", json.encode({ model = "direct", stream = true,
      messages = { { role = "user", content = helpers.words(40) } } }), { Authorization = "Bearer " .. BUSY })))
    assert(c:wait(function(x) return x.buf:find("\r\n\r\n", 1, true) end, 5000))
    f = send(s, CALM, "fall back")
    assert.is_true(f:wait(done, 6000))
    assert.equal(429, f:response_state().status)
    assert.matches("provider:spare", json.decode(f:response_state().body).error.message)
    c:close()
    s:stop_clean()
  end)

  it("skips a first provider that cools down after its 429 while a fallback remains; a client that leaves a fallback's wait cancels it", function()
    local up, s = helpers.mock(), nil
    finally(function() -- (one finally: a second would replace the first)
      if s then s:stop() end
      up:stop()
    end)
    s = helpers.start { workers = 1, config = string.format([[
return {
  gate = { queue_timeout_ms = 5000 },
  providers = {
    a = { kind = "openai", base_url = %q, api_key = "sk-a", retries = 0, max_concurrent = 2 },
    b = { kind = "echo", chunk_delay_ms = 100, max_concurrent = 1 },
  },
  routes = { { match = "bonly", provider = "b" }, { match = "*", provider = { "a", "b" } } },
}]], up.url .. "/v1") }
    -- a cooldown shorter than the queue timeout: still not waited for
    up:queue { { status = 429, headers = { ["retry-after"] = "4" }, json = { error = { message = "slow down", type = "requests" } } } }
    local function ask()
      return s:request("POST", "/v1/chat/completions", json.encode({ model = "m", messages = { { role = "user", content = "hi there" } } }))
    end
    assert.equal(200, ask().status) -- a's 429, then b
    local n = #up:requests()
    for _ = 1, 3 do
      local t0 = require("luv").hrtime()
      local res = ask()
      assert.equal(200, res.status, res.body) -- a cools for 4 s: b answers at once
      assert.is_true((require("luv").hrtime() - t0) / 1e6 < 2000, "waited for the cooling provider")
    end
    assert.equal(n, #up:requests()) -- and a was not asked again
    local g = json.decode(s:request("GET", "/stats").body).gate
    assert.equal(0, g["provider:a"].in_use)
    assert.equal(0, g["provider:b"].in_use)
    -- a client that leaves while its fallback waits at b's gate: out of the queue
    local c = s:connect()
    assert(c:send(client.request_bytes("POST", "/v1/chat/completions", json.encode({ model = "bonly", stream = true,
      messages = { { role = "user", content = helpers.words(20) } } }))))
    assert(c:wait(function(x) return x.buf:find("\r\n\r\n", 1, true) end, 5000))
    local d = s:connect()
    assert(d:send(client.request_bytes("POST", "/v1/chat/completions", json.encode({ model = "m", stream = true,
      messages = { { role = "user", content = "leave" } } }))))
    assert.is_true(client.run_until(function()
      return json.decode(s:request("GET", "/stats").body).gate["provider:b"].queued == 1
    end, 5000))
    d:close()
    assert.is_true(client.run_until(function()
      return json.decode(s:request("GET", "/stats").body).gate["provider:b"].queued == 0
    end, 3000), "the leaving client stayed in b's queue")
    assert.is_true(c:wait(done, 10000))
    g = json.decode(s:request("GET", "/stats").body).gate["provider:b"]
    assert.equal(0, g.in_use)
    c:close()
    s:stop_clean()
  end)

  it("refuses at once with max_queue = 0, and counts a passthrough stream's tokens for a key with token limits", function()
    local up, s = helpers.mock(), nil
    finally(function() -- (one finally: a second would replace the first)
      if s then s:stop() end
      up:stop()
    end)
    local K = "sk-gate-tokens-0123456789"
    s = helpers.start { workers = 1, config = string.format([[
return {
  keys = { { name = "t", key = %q, tokens_per_day = 1000 } },
  gate = { max_queue = 0 },
  providers = { up = { kind = "openai", base_url = %q, api_key = "sk-a", retries = 0 },
    slow = { kind = "echo", chunk_delay_ms = 100, max_concurrent = 1 } },
  routes = { { match = "slow", provider = "slow" }, { match = "*", provider = "up" } },
}]], K, up.url .. "/v1") }
    local auth = { Authorization = "Bearer " .. K }
    local c = s:connect()
    assert(c:send(client.request_bytes("POST", "/v1/chat/completions", json.encode({ model = "slow", stream = true,
      messages = { { role = "user", content = helpers.words(10) } } }), auth)))
    assert(c:wait(function(x) return x.buf:find("\r\n\r\n", 1, true) end, 5000))
    local res = s:request("POST", "/v1/chat/completions", json.encode({ model = "slow",
      messages = { { role = "user", content = "hi" } } }), auth)
    assert.equal(429, res.status) -- no queue at all: at once
    assert.matches("queue is full", json.decode(res.body).error.message)
    assert.is_true(c:wait(done, 10000))
    -- a stream that did not ask for usage: the gateway asks, counts, and
    -- keeps the usage chunk from the client
    up:queue { { reply = { text = "one two three" } } }
    res = s:request("POST", "/v1/chat/completions", json.encode({ model = "gpt-4o", stream = true,
      messages = { { role = "user", content = "hi" } } }), auth)
    assert.equal(200, res.status, res.body)
    assert.not_matches('"usage"', res.body)
    assert.matches("%[DONE%]", res.body)
    local sent = json.decode(up:requests()[1].body)
    assert.same({ include_usage = true }, sent.stream_options)
    local rate = json.decode(s:request("GET", "/stats", nil, auth).body).rate
    assert.is_true((rate.t.tokens_today or 0) > 0, json.encode(rate))
    c:close()
    s:stop_clean()
  end)

  it("keeps its permits across a reload: a request under way still holds one", function()
    local s = helpers.start { workers = 1, config = config { permits = 1, timeout = 5000, delay = 100 } }
    finally(function() s:stop() end)
    local long = send(s, BUSY, helpers.words(10), true) -- about 1 s
    assert(long:wait(function(c) return c.buf:find("\r\n\r\n", 1, true) end, 5000))
    s.handle:kill("sighup")
    assert.is_true(client.run_until(function() return s.log:find("reloaded in", 1, true) ~= nil end, 5000))
    local t0 = require("luv").hrtime()
    local res = s:request("POST", "/v1/chat/completions", body("after"), { Authorization = "Bearer " .. CALM })
    local waited = (require("luv").hrtime() - t0) / 1e6
    assert.equal(200, res.status)
    assert.is_true(waited > 300, "served after " .. waited .. " ms: the permit the stream holds was forgotten")
    assert.is_true(long:wait(done, 10000))
    s:stop_clean()
  end)

  it("holds a key to its requests per minute and tokens per minute, which refill", function()
    local s = helpers.start { workers = 2, config = string.format([[
return {
  keys = { { name = "rpm", key = %q, rpm = 120 }, { name = "tpm", key = %q, tpm = 600 },
           { name = "day", key = "sk-gate-day-0123456789", tokens_per_day = 10 } },
  providers = { e = { kind = "echo" } },
  routes = { { match = "*", provider = "e" } },
}]], BUSY, CALM) }
    finally(function() s:stop() end)
    local function ask(key, text)
      return s:request("POST", "/v1/chat/completions", body(text or "hi"), { Authorization = "Bearer " .. key })
    end
    -- 120 a minute: a burst of 120 passes, then one is refused with the
    -- wait (a slow run, under valgrind, sees a few more refill meanwhile)
    local res, passed = nil, 0
    for _ = 1, 400 do
      res = ask(BUSY)
      if res.status ~= 200 then break end
      passed = passed + 1
    end
    assert.is_true(passed >= 120, "passed " .. passed)
    assert.equal(429, res.status)
    assert.equal("1", res.headers["retry-after"])
    assert.matches("over its requests per minute limit", json.decode(res.body).error.message)
    -- a token count is a request of the key's too
    local ct = s:request("POST", "/v1/messages/count_tokens", json.encode({ model = "m",
      messages = { { role = "user", content = "hi" } } }), { Authorization = "Bearer " .. BUSY })
    assert.equal(429, ct.status)
    assert.equal("error", json.decode(ct.body).type)
    client.run_until(function() return false end, 1200) -- 2 a second come back
    assert.equal(200, ask(BUSY).status)

    -- 600 tokens a minute (10 a second): a few long answers spend them
    local refused
    for _ = 1, 30 do
      res = ask(CALM, helpers.words(80))
      if res.status == 429 then refused = res break end
      assert.equal(200, res.status)
    end
    assert.truthy(refused, "the token limit never tripped")
    assert.matches("tokens per minute", json.decode(refused.body).error.message)
    local wait = tonumber(refused.headers["retry-after"])
    assert.is_true(wait >= 1 and wait <= 60, "retry-after " .. tostring(wait))
    client.run_until(function() return false end, wait * 1000 + 300)
    assert.equal(200, ask(CALM).status)

    -- a daily budget: spent by the first answer, refused until midnight UTC
    assert.equal(200, ask("sk-gate-day-0123456789", helpers.words(20)).status)
    res = ask("sk-gate-day-0123456789")
    assert.equal(429, res.status)
    assert.matches("tokens per day", json.decode(res.body).error.message)
    local until_midnight = 86400 - os.time() % 86400
    assert.is_true(math.abs(tonumber(res.headers["retry-after"]) - until_midnight) <= 5)
    local stats = json.decode(s:request("GET", "/stats", nil, { Authorization = "Bearer " .. BUSY }).body)
    assert.equal(1, stats.rate.day.refused)
    assert.is_true(stats.rate.rpm.admitted >= 121)
    s:stop_clean()
  end)

  it("holds a chat socket's answers to its key too: models, rate limits and the gate", function()
    local W = require "support.ws_client"
    local s = helpers.start { workers = 1, config = string.format([[
return {
  keys = { { name = "small", key = %q, rpm = 2, models = { "allowed-*" } } },
  providers = { slow = { kind = "echo", chunk_delay_ms = 100, max_concurrent = 1 } },
  routes = { { match = "*", provider = "slow" } },
}]], CALM) }
    finally(function() s:stop() end)
    local ws = assert(W.connect(s.port, "/ws/c1?key=" .. CALM))
    local function ask(id, model)
      ws:send(json.encode({ type = "chat_message", id = id, model = model, message = { content = "x y z" } }))
    end
    local function until_done(ids)
      local got = {}
      assert.is_true(ws:wait(function(self)
        for _, t in ipairs(self.messages) do
          local m = json.decode(t)
          if m.type == "response_complete" or m.type == "error" then got[m.id] = got[m.id] or m end
        end
        for _, id in ipairs(ids) do if not got[id] then return false end end
        return true
      end, 10000))
      return got
    end
    ask("f", "forbidden-model")
    local got = until_done({ "f" })
    assert.equal("error", got.f.type)
    assert.matches("may not use the model", got.f.message or got.f.error or json.encode(got.f))
    -- two a minute; one permit: the second answer waits for the first
    ask("a", "allowed-1")
    ask("b", "allowed-1")
    ask("c", "allowed-1")
    got = until_done({ "a", "b", "c" })
    assert.equal("response_complete", got.a.type)
    assert.equal("response_complete", got.b.type)
    assert.equal("error", got.c.type)
    assert.matches("requests per minute", json.encode(got.c))
    local g = json.decode(s:request("GET", "/stats", nil, { Authorization = "Bearer " .. CALM }).body).gate["provider:slow"]
    assert.equal(2, g.granted)
    assert.equal(1, g.waited)
    assert.equal(0, g.in_use)
    ws:close()
    s:stop_clean()
  end)

  it("makes a chat socket's fallback wait at its new provider's gate, and takes a closed socket out of the queue", function()
    local W = require "support.ws_client"
    local dead = helpers.refused_port()
    local s = helpers.start { workers = 1, config = string.format([[
return {
  gate = { queue_timeout_ms = 5000 },
  providers = {
    gone = { kind = "openai", base_url = "http://127.0.0.1:%d/v1", api_key = "k", retries = 0 },
    spare = { kind = "echo", chunk_delay_ms = 100, max_concurrent = 1 },
  },
  routes = { { match = "direct", provider = "spare" }, { match = "*", provider = { "gone", "spare" } } },
}]], dead) }
    finally(function() s:stop() end)
    local function spare() return json.decode(s:request("GET", "/stats").body).gate["provider:spare"] end
    local c = s:connect()
    assert(c:send(client.request_bytes("POST", "/v1/chat/completions", json.encode({ model = "direct", stream = true,
      messages = { { role = "user", content = helpers.words(15) } } }))))
    assert(c:wait(function(x) return x.buf:find("\r\n\r\n", 1, true) end, 5000))
    local ws = assert(W.connect(s.port, "/ws/c1"))
    ws:send(json.encode({ type = "chat_message", id = "a", model = "m", message = { content = "fall back" } }))
    assert.is_true(client.run_until(function() return spare().queued == 1 end, 5000), "the socket's fallback did not wait")
    assert.equal(1, spare().in_use)
    assert.is_true(ws:wait(function(self)
      for _, t in ipairs(self.messages) do if json.decode(t).type == "response_complete" then return true end end
    end, 10000))
    -- a socket that closes while its answer waits leaves the queue
    assert.is_true(c:wait(done, 10000))
    c = s:connect()
    assert(c:send(client.request_bytes("POST", "/v1/chat/completions", json.encode({ model = "direct", stream = true,
      messages = { { role = "user", content = helpers.words(15) } } }))))
    assert(c:wait(function(x) return x.buf:find("\r\n\r\n", 1, true) end, 5000))
    ws:send(json.encode({ type = "chat_message", id = "b", model = "direct", message = { content = "wait" } }))
    assert.is_true(client.run_until(function() return spare().queued == 1 end, 5000))
    ws:close()
    assert.is_true(client.run_until(function() return spare().queued == 0 end, 3000), "the closed socket stayed queued")
    assert.is_true(c:wait(done, 10000))
    assert.equal(0, spare().in_use)
    s:stop_clean()
  end)
end)
