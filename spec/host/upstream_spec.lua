-- core._fetch against the mock upstream, on busted's own luv loop.
local helpers = require "helpers"
local core = require "moongate.core"
local json = require "moongate.json"
local uv = require "luv"
local run_until = helpers.client.run_until

describe("core._fetch", function()
  local mock
  setup(function() mock = helpers.mock() end)
  teardown(function() if mock then mock:stop() end end)
  before_each(function() mock:reset() end)

  local function fetch(opts)
    local got = { frames = {} }
    opts.url = opts.url or (mock.url .. "/v1/chat/completions")
    got.h = core._fetch(opts, {
      on_headers = function(status, headers) got.status, got.headers = status, headers end,
      on_frame = function(data, event)
        got.frames[#got.frames + 1] = { data = data, event = event }
        if got.pause_after and #got.frames == got.pause_after then return false end
        return true
      end,
      on_done = function(err, code, body, status)
        got.done, got.err, got.code, got.body, got.final_status = true, err, code, body, status
      end,
    })
    return got
  end

  it("posts a body and gets a whole JSON answer", function()
    local got = fetch { body = json.encode { model = "m", messages = { { role = "user", content = "hi you" } } },
      headers = { ["content-type"] = "application/json", authorization = "Bearer sk-x" } }
    assert.truthy(run_until(function() return got.done end, 5000))
    assert.is_nil(got.err)
    assert.equal(200, got.status)
    assert.equal("hi you", json.decode(got.body).choices[1].message.content)
    local seen = mock:requests()[1]
    assert.equal("POST", seen.method)
    assert.equal("Bearer sk-x", seen.headers.authorization)
  end)

  it("asks for and decodes a compressed answer only when told to", function()
    local answer = { id = "z", text = string.rep("compress me ", 200) }
    mock:queue { { json = answer, gzip = true } }
    local got = fetch { body = "{}", compressed = true }
    assert.truthy(run_until(function() return got.done end, 5000))
    assert.is_nil(got.err)
    assert.same(answer, json.decode(got.body))
    assert.equal("gzip", got.headers["content-encoding"])
    assert.matches("gzip", mock:requests()[1].headers["accept-encoding"])
    mock:reset()
    got = fetch { body = "{}" }
    assert.truthy(run_until(function() return got.done end, 5000))
    assert.is_nil(mock:requests()[1].headers["accept-encoding"])
  end)

  it("parses an SSE stream into frames", function()
    local got = fetch { stream = "sse", body = json.encode { model = "m", stream = true,
      messages = { { role = "user", content = "a b c" } } } }
    assert.truthy(run_until(function() return got.done end, 5000))
    assert.is_nil(got.err)
    assert.equal("[DONE]", got.frames[#got.frames].data)
    assert.equal("a ", json.decode(got.frames[2].data).choices[1].delta.content)
  end)

  it("keeps event names", function()
    local got = fetch { url = mock.url .. "/v1/messages", stream = "sse",
      body = json.encode { model = "m", stream = true, messages = { { role = "user", content = "x" } } } }
    assert.truthy(run_until(function() return got.done end, 5000))
    assert.equal("message_start", got.frames[1].event)
    assert.equal("message_stop", got.frames[#got.frames].event)
  end)

  it("hands an error status its headers and whole body, even when streaming", function()
    mock:queue { { status = 429, headers = { ["retry-after"] = "2" }, json = { error = { message = "slow down" } } } }
    local got = fetch { stream = "sse", body = "{}" }
    assert.truthy(run_until(function() return got.done end, 5000))
    assert.equal(429, got.status)
    assert.equal("2", got.headers["retry-after"])
    assert.equal("slow down", json.decode(got.body).error.message)
    assert.equal(0, #got.frames)
  end)

  it("reaches each of more URLs than it keeps parsed (16), each at its own path", function()
    local gots = {}
    for i = 1, 20 do
      gots[i] = fetch { url = mock.url .. "/v1/p" .. i .. "/chat/completions",
        body = json.encode { model = "m", messages = { { role = "user", content = "n" .. i } } } }
    end
    assert.truthy(run_until(function()
      for _, g in ipairs(gots) do if not g.done then return false end end
      return true
    end, 5000))
    for i, g in ipairs(gots) do
      assert.is_nil(g.err)
      assert.equal("n" .. i, json.decode(g.body).choices[1].message.content)
    end
    local paths = {}
    for _, r in ipairs(mock:requests()) do paths[r.path] = true end
    for i = 1, 20 do assert.truthy(paths["/v1/p" .. i .. "/chat/completions"], i) end
    -- and again, from the parsed ones and the strings
    local again = fetch { url = mock.url .. "/v1/p3/chat/completions", body = "{}" }
    local last = fetch { url = mock.url .. "/v1/p20/chat/completions", body = "{}" }
    assert.truthy(run_until(function() return again.done and last.done end, 5000))
    assert.equal(200, again.final_status)
    assert.equal(200, last.final_status)
  end)

  it("takes upstream options, and says which value is wrong", function()
    assert.has_no.errors(function() core._upstream_options { http2_streams = 100 } end)
    assert.has_no.errors(function() core._upstream_options {} end)
    for _, bad in ipairs { 0, -1, 1.5, 2 ^ 31, 0 / 0, "100" } do
      assert.has_error(function() core._upstream_options { http2_streams = bad } end,
        "bad argument #1 to '_upstream_options' (http2_streams must be an integer from 1 to 2147483647)")
    end
  end)

  it("reports a refused connection", function()
    local got = fetch { url = "http://127.0.0.1:1/v1/x", body = "{}" }
    assert.truthy(run_until(function() return got.done end, 5000))
    assert.equal("ECONNREFUSED", got.code)
    assert.is_string(got.err)
  end)

  it("times out when the first byte is late", function()
    mock:queue { { delay_ms = 1000, json = {} } }
    local got = fetch { body = "{}", first_byte_timeout_ms = 100 }
    assert.truthy(run_until(function() return got.done end, 5000))
    assert.equal("ETIMEDOUT", got.code)
    assert.matches("first%-byte", got.err)
  end)

  it("times out when the stream goes quiet", function()
    mock:queue { { frames = { { data = "1" }, { data = "2", delay_ms = 1000 } } } }
    local got = fetch { stream = "sse", body = "{}", idle_timeout_ms = 150 }
    assert.truthy(run_until(function() return got.done end, 5000))
    assert.equal("ETIMEDOUT", got.code)
    assert.matches("idle", got.err)
    assert.equal(1, #got.frames)
  end)

  it("pauses when on_frame answers false and resumes", function()
    local got = fetch { stream = "sse", body = json.encode { stream = true, messages = { { role = "user", content = "a b c d e" } } } }
    got.pause_after = 2
    assert.truthy(run_until(function() return #got.frames >= 2 end, 5000))
    run_until(function() return false end, 200)
    assert.equal(2, #got.frames)
    assert.is_nil(got.done)
    core._fetch_resume(got.h)
    assert.truthy(run_until(function() return got.done end, 5000))
    assert.equal("[DONE]", got.frames[#got.frames].data)
  end)

  it("closes the upstream connection at once when cancelled", function()
    mock:queue { { frames = { { data = "1" }, { data = "2", delay_ms = 5000 } } } }
    local got = fetch { stream = "sse", body = "{}" }
    assert.truthy(run_until(function() return #got.frames == 1 end, 5000))
    local s, us = uv.gettimeofday()
    local cancelled_at = s * 1000 + us / 1000
    core._fetch_cancel(got.h)
    run_until(function() return false end, 300)
    assert.is_nil(got.done) -- on_done never runs after a cancel
    local seen = mock:requests()[1]
    assert.is_number(seen.closed_at_ms)
    assert.is_true(seen.closed_at_ms - cancelled_at < 100, "closed after " .. (seen.closed_at_ms - cancelled_at) .. " ms")
  end)
end)
