-- The pure Lua parts of the WebSocket side: the chat front door, the origin
-- rule, routing to the WS worker pool, the worker's completion_request, and
-- the websocket config section.
local ws_chat = require "moongate.frontdoor.ws_chat"
local sockets = require "moongate.sockets"
local router = require "moongate.router"
local config = require "moongate.config"
local json = require "moongate.json"
local ws_provider = require "moongate.providers.ws"

describe("chat socket front door", function()
  it("turns history and the message into a canonical request", function()
    local creq = assert(ws_chat.decode({
      type = "chat_message", id = 7, model = "m", max_tokens = 9,
      message = { role = "user", content = "now" },
      history = { { role = "system", content = "be brief" }, { role = "user", content = "before" },
        { role = "assistant", content = { { type = "text", text = "ok" } } } },
    }, { model = "echo" }))
    assert.equal("m", creq.model)
    assert.equal("7", creq.answer_id)
    assert.equal(9, creq.max_tokens)
    assert.is_true(creq.stream)
    assert.equal("be brief", creq.system)
    assert.equal(3, #creq.messages)
    assert.same({ role = "assistant", content = { { type = "text", text = "ok" } } }, creq.messages[2])
    assert.equal("now", creq.messages[3].content[1].text)
  end)

  it("takes a bare string message and the default model, and makes an id", function()
    local creq = assert(ws_chat.decode({ message = "hi" }, { model = "echo" }))
    assert.equal("echo", creq.model)
    assert.matches("^ans_", creq.answer_id)
  end)

  it("refuses malformed messages with a reason", function()
    for _, case in ipairs {
      { {}, "needs a message" },
      { { message = { content = 5 } }, "message.content must be a string" },
      { { message = "x", history = "no" }, "history must be a list" },
      { { message = "x", history = { { role = "robot", content = "x" } } }, "role must be" },
      { { message = "x", model = "" }, "model must be" },
      { { message = { content = { { type = "image" } } } }, "message.content%[1%]" },
      { { message = "x", max_tokens = 0 }, "max_tokens must be a positive integer" },
      { { message = "x", max_tokens = "9" }, "max_tokens must be" },
      { { message = "x", temperature = "hot" }, "temperature must be a number" },
    } do
      local creq, err = ws_chat.decode(case[1], { model = "echo" })
      assert.is_nil(creq)
      assert.equal(400, err.status)
      assert.matches(case[2], err.message)
    end
  end)

  it("encodes events as response_start, response_chunk and response_complete", function()
    local enc = ws_chat.stream_encoder({ model = "m", answer_id = "a1" })
    local out = {}
    for _, ev in ipairs { { type = "start" }, { type = "text_delta", text = "Hel" }, { type = "text_delta", text = "" },
      { type = "text_delta", text = "lo" }, { type = "usage", input_tokens = 3, output_tokens = 2 },
      { type = "done", reason = "length" } } do
      for _, m in ipairs(enc:event(ev)) do out[#out + 1] = json.decode(m) end
    end
    assert.same({ type = "response_start", id = "a1", model = "m" }, out[1])
    assert.same({ type = "response_chunk", id = "a1", content = "Hel" }, out[2])
    assert.same({ type = "response_chunk", id = "a1", content = "lo" }, out[3])
    assert.same({ type = "response_complete", id = "a1", content = "Hello", finish_reason = "length",
      usage = { input_tokens = 3, output_tokens = 2 } }, out[4])
    assert.equal(4, #out)
    local err = json.decode(enc:error({ status = 502, message = "boom" })[1])
    assert.same({ type = "error", id = "a1", message = "boom", status = 502 }, err)
  end)
end)

describe("WebSocket origins", function()
  it("lets non-browser clients and pages of this machine in by default", function()
    assert.is_true(sockets.origin_allowed(nil, nil))
    assert.is_true(sockets.origin_allowed("http://localhost:5173", nil))
    assert.is_true(sockets.origin_allowed("https://127.0.0.1", nil))
    assert.is_true(sockets.origin_allowed("http://[::1]:8080", nil))
    assert.is_false(sockets.origin_allowed("https://evil.example", nil))
    assert.is_false(sockets.origin_allowed("http://localhost.evil.example", nil))
    assert.is_false(sockets.origin_allowed("null", nil))
  end)

  it("uses the configured globs when there are some", function()
    local pats = { router.glob_to_pattern("https://*.example.com") }
    assert.is_true(sockets.origin_allowed("https://app.example.com", pats))
    assert.is_false(sockets.origin_allowed("http://localhost:3000", pats))
    assert.is_false(sockets.origin_allowed("https://example.com.evil.net", pats))
  end)
end)

describe("routing to the WS worker pool", function()
  local announced = { ["tab-model"] = true }
  local providers = { echo = { models = {} }, workers = { models = {} }, up = { models = {} } }
  local r = router.new({ routes = { { match = "gpt-4o", provider = "up" }, { match = "gpt-*", provider = "up" } } },
    providers, {
      dynamic = function(m) if announced[m] then return "workers" end end,
      dynamic_models = function() return { "tab-model" } end,
    })

  it("sends an announced model to the pool only when no config route matches it", function()
    assert.equal("workers", r:resolve("tab-model").chain[1].name)
    assert.equal("tab-model", r:resolve("tab-model").model)
    assert.equal("up", r:resolve("gpt-5").chain[1].name)
    announced["gpt-4o"], announced["gpt-5"] = true, true
    assert.equal("up", r:resolve("gpt-4o").chain[1].name) -- an exact route wins
    assert.equal("up", r:resolve("gpt-5").chain[1].name)  -- and a glob route
    announced["gpt-4o"], announced["gpt-5"] = nil, nil
  end)

  it("lists announced models", function()
    local found = false
    for _, id in ipairs(r:models()) do found = found or id == "tab-model" end
    assert.is_true(found)
  end)
end)

describe("the WS provider's completion_request", function()
  it("carries the AIProxy fields with OpenAI-shaped messages", function()
    local m = json.decode(ws_provider.message({
      model = "x", upstream_model = "tab-model", stream = true, max_tokens = 5, temperature = 0.2,
      system = "sys", messages = { { role = "user", content = { { type = "text", text = "hi" } } } },
    }, "wsreq_1", {}))
    assert.equal("completion_request", m.type)
    assert.equal("wsreq_1", m.request_id)
    assert.equal("tab-model", m.model)
    assert.is_true(m.stream)
    assert.equal(5, m.max_tokens)
    assert.equal(0.2, m.temperature)
    assert.same({ { role = "system", content = "sys" }, { role = "user", content = "hi" } }, m.messages)
  end)
end)

describe("websocket config", function()
  it("fills defaults and keeps them for keys a file leaves out", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write('return { websocket = { heartbeat_interval_ms = 50, worker_token = "t" } }')
    f:close()
    local cfg = assert(config.resolve({ config = path }, function() end, 1))
    os.remove(path)
    assert.equal(50, cfg.websocket.heartbeat_interval_ms)
    assert.equal(30000, cfg.websocket.heartbeat_timeout_ms)
    assert.equal("t", cfg.websocket.worker_token)
    assert.equal("echo", cfg.websocket.chat_model)
  end)

  it("names bad keys by their path", function()
    local ok, errs = config.validate({ websocket = { heartbeat_interval_ms = "fast", nope = 1,
      allowed_origins = { 3 } } })
    assert.is_nil(ok)
    local text = table.concat(errs, "\n")
    assert.matches("websocket.heartbeat_interval_ms: expected an integer", text, 1, true)
    assert.matches("websocket.nope: unknown key", text, 1, true)
    assert.matches("websocket.allowed_origins[1]: expected a string", text, 1, true)
  end)

  it("lets routes name the built-in workers pool", function()
    assert.is_true(config.validate({ routes = { { match = "tab-*", provider = "workers" } } }))
  end)
end)
