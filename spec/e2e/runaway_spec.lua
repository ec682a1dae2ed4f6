-- A runaway operator script (issue #20): a provider script on lua_path, or a
-- function in the config file, that loops forever is stopped by the
-- watchdog after script_timeout_ms; only its own request fails, with a 500
-- in the client's format (an error event when its stream has started), and
-- the worker goes on serving.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"
local uv = require "luv"

local BUDGET = 300 -- script_timeout_ms of the daemons below
local SLACK = 2500 -- the watchdog wakes every BUDGET/4; sanitizer builds are slow

-- An operator's provider script: what it does depends on the last user
-- message; anything else is answered "ok <text>".
local spin_script = [[
local canonical = require "moongate.canonical"
local uv = require "luv"
local M = {}
M.schema = { hook = "function" } -- a function of the config file, called on each request

local function answer(sink, text)
  sink.emit({ type = "start" })
  sink.emit({ type = "text_delta", text = text })
  sink.emit({ type = "usage", input_tokens = 1, output_tokens = 1 })
  sink.emit({ type = "done", reason = "stop" })
end

function M.new(name, conf)
  return { name = name, start = function(_, creq, sink)
    local text = canonical.last_user_text(creq)
    local job = { cancel = function() end }
    if conf.hook then text = conf.hook(text) end
    if text == "spin" then
      while true do end
    elseif text == "spin-after-start" then -- the stream has started, in the same call
      sink.emit({ type = "start" })
      sink.emit({ type = "text_delta", text = "partial " })
      while true do end
    elseif text == "spin-later" then -- the stream has started; a later call loops
      sink.emit({ type = "start" })
      sink.emit({ type = "text_delta", text = "partial " })
      local t = uv.new_timer()
      t:start(10, 0, sink.guard(function() t:close() while true do end end))
      job.cancel = function() if not t:is_closing() then t:close() end end
    elseif text == "stubborn" then -- catches the stop and loops on
      while true do pcall(function() while true do end end) end
    elseif text == "spin-timer" then -- answers, and leaves a timer that loops, unguarded
      local t = uv.new_timer()
      t:start(10, 0, function() t:close() while true do end end)
      answer(sink, "ok timer")
    elseif text == "long" then -- a loop that would end, in tens of seconds
      local n = 0
      for i = 1, 1e11 do n = n + i end
      answer(sink, "ok long " .. n)
    elseif text:match("^busy ") then -- a loop that ends after MS: busy MS
      local stop = uv.hrtime() + tonumber(text:match("%d+")) * 1e6
      local n = 0
      while uv.hrtime() < stop do n = n + 1 end
      answer(sink, "ok busy")
    else
      answer(sink, "ok " .. text)
    end
    return job
  end }
end

return M
]]

-- a lua_path folder holding moongate/providers/spin.lua
local function script_dir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. "/moongate/providers") == 0)
  local f = assert(io.open(dir .. "/moongate/providers/spin.lua", "wb"))
  f:write(spin_script)
  f:close()
  return dir
end

local function config(dir, budget)
  return string.format([[
return {
  lua_path = %q,
  script_timeout_ms = %d,
  providers = {
    spin = { kind = "spin" },
    -- a function of the config file (a hook the script calls) that loops on "hook-spin"
    hooked = { kind = "spin", hook = function(text)
      if text == "hook-spin" then while true do end end
      return text
    end },
  },
  routes = {
    { match = "spin", provider = "spin" },
    { match = "hooked", provider = "hooked" },
  },
}]], dir .. "/?.lua", budget)
end

local function chat(model, text, stream)
  return json.encode { model = model, stream = stream or nil, messages = { { role = "user", content = text } } }
end

local function messages_body(model, text, stream)
  return json.encode { model = model, max_tokens = 20, stream = stream or nil,
    messages = { { role = "user", content = text } } }
end

local function now_ms() uv.update_time() return uv.hrtime() / 1e6 end

-- an OpenAI error object of a 500
local function openai_500(res)
  assert.equal(500, res.status, res.body)
  assert.equal("application/json", res.headers["content-type"])
  local e = assert(json.decode(res.body)).error
  assert.is_table(e, res.body)
  assert.equal("server_error", e.type)
  assert.is_string(e.message)
  return e
end

-- a chat request that a runaway script fails -> the ms it took (its 500 checked)
local function timed_500(server, model, text)
  local t0 = now_ms()
  local res = assert(server:request("POST", "/v1/chat/completions", chat(model, text)))
  local took = now_ms() - t0
  openai_500(res)
  return took
end

-- a request sent on its own connection, read later (several at once)
local function send(server, path, body, headers)
  local c = server:connect()
  c:send(client.request_bytes("POST", path, body, headers))
  return c
end

local function read(c, timeout)
  local res, err = c:read_response(timeout or 10000)
  c:close()
  return assert(res, err)
end

local function healthy(server)
  local res = assert(server:request("GET", "/health"))
  assert.equal(200, res.status)
  assert.equal("ok", json.decode(res.body).status)
end

describe("a runaway script", function()
  local server, dir
  setup(function()
    dir = script_dir()
    server = helpers.start { config = config(dir, BUDGET), workers = 1 }
  end)
  teardown(function()
    if server then server:stop_clean() end
    if dir then os.execute("rm -rf " .. dir) end
  end)
  after_each(function() healthy(server) end)

  it("is stopped after script_timeout_ms: its request gets a 500 in OpenAI's format", function()
    local took = timed_500(server, "spin", "spin")
    assert.is_true(took >= BUDGET - 20, "stopped after " .. took .. " ms")
    assert.is_true(took < BUDGET + SLACK, "stopped after " .. took .. " ms")
    local log = server.log
    assert.matches("spin.lua:%d+: script ran longer than script_timeout_ms %(300 ms%)", log)
    assert.matches("a Lua call ran longer than script_timeout_ms %(300 ms%): stopping it", log)
  end)

  it("gets a 500 in Anthropic's format on /v1/messages", function()
    local t0 = now_ms()
    local res = assert(server:request("POST", "/v1/messages", messages_body("spin", "spin"),
      { ["anthropic-version"] = "2023-06-01" }))
    local took = now_ms() - t0
    assert.equal(500, res.status, res.body)
    local body = assert(json.decode(res.body))
    assert.equal("error", body.type)
    assert.equal("api_error", body.error.type)
    assert.is_string(body.error.message)
    assert.is_true(took < BUDGET + SLACK, "stopped after " .. took .. " ms")
  end)

  it("fails only its own request: the worker serves the requests made at the same time and after", function()
    -- one worker: the loop holds it, the others wait their turn and are served
    local spinning = send(server, "/v1/chat/completions", chat("spin", "spin"))
    local others = {}
    for i = 1, 3 do
      others[i] = send(server, "/v1/chat/completions", chat("spin", "hello " .. i))
    end
    local echo = send(server, "/v1/chat/completions", chat("echo", "plain echo"))
    local stream = send(server, "/v1/messages", messages_body("spin", "streamed", true),
      { ["anthropic-version"] = "2023-06-01" })
    openai_500(read(spinning))
    for i = 1, 3 do
      local res = read(others[i])
      assert.equal(200, res.status, res.body)
      assert.equal("ok hello " .. i, json.decode(res.body).choices[1].message.content)
    end
    local res = read(echo)
    assert.equal(200, res.status, res.body)
    assert.equal("plain echo", json.decode(res.body).choices[1].message.content)
    res = read(stream)
    assert.equal(200, res.status, res.body)
    assert.matches('"text":"ok streamed"', res.body, 1, true)
    assert.matches("event: message_stop", res.body, 1, true)
    -- and after
    res = assert(server:request("POST", "/v1/chat/completions", chat("spin", "after")))
    assert.equal(200, res.status, res.body)
    assert.equal("ok after", json.decode(res.body).choices[1].message.content)
  end)

  it("ends a stream that has started with an in-format error event (the loop in the same call)", function()
    local res = assert(server:request("POST", "/v1/chat/completions", chat("spin", "spin-after-start", true)))
    assert.equal(200, res.status)
    local data = client.sse_data(res.body)
    assert.matches('"content":"partial "', res.body, 1, true)
    local last = json.decode(data[#data])
    assert.is_table(last.error, res.body)
    assert.equal("server_error", last.error.type)
  end)

  it("ends a stream that has started with an in-format error event (the loop in a later callback)", function()
    local res = assert(server:request("POST", "/v1/messages", messages_body("spin", "spin-later", true),
      { ["anthropic-version"] = "2023-06-01" }))
    assert.equal(200, res.status)
    assert.matches('"text":"partial "', res.body, 1, true)
    local data, events = client.sse_data(res.body)
    assert.equal("error", events[#events], res.body)
    local last = json.decode(data[#data])
    assert.equal("error", last.type)
    assert.equal("api_error", last.error.type)
    assert.matches("provider spin: .-script ran longer than script_timeout_ms", server.log)
  end)

  it("stops a function of the config file (a hook)", function()
    local took = timed_500(server, "hooked", "hook-spin")
    assert.is_true(took < BUDGET + SLACK, "stopped after " .. took .. " ms")
    assert.matches("moongate%-spec%-[^\n]-:%d+: script ran longer than script_timeout_ms", server.log)
    res = assert(server:request("POST", "/v1/chat/completions", chat("hooked", "fine")))
    assert.equal(200, res.status, res.body)
    assert.equal("ok fine", json.decode(res.body).choices[1].message.content)
  end)

  it("stops for good a script that catches the stop and loops on", function()
    local took = timed_500(server, "spin", "stubborn")
    assert.is_true(took >= 2 * BUDGET - 20, "stopped after " .. took .. " ms")
    assert.is_true(took < 2 * BUDGET + SLACK, "stopped after " .. took .. " ms")
    assert.matches("stopping it again %(it caught the first stop%)", server.log)
  end)

  it("stops a loop in a timer callback: logged, and the worker goes on", function()
    local res = assert(server:request("POST", "/v1/chat/completions", chat("spin", "spin-timer")))
    assert.equal(200, res.status, res.body)
    assert.equal("ok timer", json.decode(res.body).choices[1].message.content)
    assert.is_true(client.run_until(function()
      return server.log:find("luv callback: [^\n]-script ran longer than script_timeout_ms") ~= nil
    end, BUDGET + SLACK), server.log)
    res = assert(server:request("POST", "/v1/chat/completions", chat("spin", "next")))
    assert.equal(200, res.status, res.body)
    assert.equal("ok next", json.decode(res.body).choices[1].message.content)
  end)

  it("stops a long loop that would end, too: the budget is for any call", function()
    local t0 = now_ms()
    openai_500(assert(server:request("POST", "/v1/chat/completions", chat("spin", "long"))))
    assert.is_true(now_ms() - t0 < BUDGET + SLACK)
  end)
end)

describe("script_timeout_ms = 0", function()
  it("turns the watchdog off: a long loop runs to its end", function()
    local dir = script_dir()
    local server = helpers.start { config = config(dir, 0), workers = 1 }
    local res = assert(server:request("POST", "/v1/chat/completions", chat("spin", "busy 700")))
    assert.equal(200, res.status, res.body)
    assert.equal("ok busy", json.decode(res.body).choices[1].message.content)
    local log = server:stop_clean()
    os.execute("rm -rf " .. dir)
    assert.not_matches("script_timeout_ms", log)
  end)
end)
