-- The pieces of the account kinds that need no daemon: the pool's choice,
-- Copilot's X-Initiator, vision flag and endpoint choice, and how a
-- request is fitted to the ChatGPT backend and its quota errors read.
local pool = require "moongate.auth.pool"
local copilot = require "moongate.providers.copilot"
local chatgpt = require "moongate.providers.chatgpt"
local anthropic = require "moongate.adapters.anthropic"
local responses = require "moongate.adapters.openai_responses"
local chat = require "moongate.adapters.openai"

local function text(role, t) return { role = role, content = { { type = "text", text = t } } } end

describe("auth/pool.lua", function()
  it("gives the least recently limited member that is not resting, and says when one is back", function()
    local t = 1000
    local a, b, c = { name = "a" }, { name = "b" }, { name = "c" }
    local p = pool.new({ a, b, c }, function() return t end)
    assert.equal(a, p:pick()) -- never limited: the configured order
    p:limited(a, 30)
    assert.equal(b, p:pick())
    t = t + 1000
    p:limited(b, 10)
    assert.equal(c, p:pick())
    p:limited(c, 5)
    local none, wait = p:pick()
    assert.is_nil(none)
    assert.equal(5, wait) -- c is back first
    t = t + 6000
    assert.equal(c, p:pick())
    t = t + 60000 -- all back: a was limited longest ago
    assert.equal(a, p:pick())
    p:served(a)
    local st = p:state()
    assert.same({ name = "a", served = 1, limited = 1 }, st[1])
    p:limited(b, 0.2) -- at least a second
    assert.same(1, p:state()[2].resting_s)
  end)
end)

describe("kind copilot", function()
  it("says user only for the user's own text; tool results and agent turns are agent", function()
    assert.equal("user", copilot.initiator({ messages = { text("user", "hi") } }))
    assert.equal("agent", copilot.initiator({ messages = { text("user", "hi"), text("assistant", "yo") } }))
    assert.equal("agent", copilot.initiator({ messages = { { role = "tool", content = { { type = "text", text = "x" } } } } }))
    assert.equal("agent", copilot.initiator({ messages = { { role = "user", content = {
      { type = "tool_result", tool_call_id = "t", content = "x" }, { type = "text", text = "and" } } } } }))
    assert.equal("agent", copilot.initiator({ messages = {} }))
    -- a system message after the user's turn does not make it the agent's
    assert.equal("user", copilot.initiator({ messages = { text("user", "hi"), text("system", "# Environment") } }))
    assert.equal("agent", copilot.initiator({ messages = { text("system", "only") } }))
  end)

  it("flags images, also inside tool results", function()
    assert.is_false(copilot.vision({ messages = { text("user", "hi") } }))
    assert.is_true(copilot.vision({ messages = { { role = "user", content = { { type = "image", data = "x" } } } } }))
    assert.is_true(copilot.vision({ messages = { { role = "user", content = { { type = "tool_result",
      attachments = { { type = "image", data = "x" } } } } } } }))
  end)

  it("picks the endpoint from supported_endpoints, else by the model's name", function()
    local claude = { supported_endpoints = { "/v1/messages", "/chat/completions" } }
    local both = { supported_endpoints = { "/chat/completions", "/responses" } }
    assert.equal(anthropic, copilot.pick(claude, "openai"))
    assert.equal(responses, copilot.pick(both, "responses"))
    assert.equal(chat, copilot.pick(both, "openai"))
    assert.equal(chat, copilot.pick(both, "anthropic"))
    assert.equal(responses, copilot.pick({ supported_endpoints = { "/responses" } }, "openai"))
    assert.is_nil(copilot.pick({}, "openai")) -- no endpoint named: the caller guesses by name
    assert.is_nil(copilot.pick({ supported_endpoints = { a = 1 } }, "openai"))
    assert.is_nil(copilot.pick({ supported_endpoints = "/v1/messages" }, "openai"))
    assert.equal(anthropic, copilot.guess("claude-opus-4.5"))
    assert.equal(responses, copilot.guess("gpt-5.1-codex"))
    assert.equal(chat, copilot.guess("gpt-4.1"))
  end)
end)

describe("kind chatgpt", function()
  local p = { conf = {}, model_info = { ["gpt-5.1-codex"] = { id = "gpt-5.1-codex", entry = {
    supported_reasoning_levels = { { effort = "low" }, { effort = "medium" }, { effort = "high" } } } } } }

  it("fits a translated request to the backend, noting what it drops", function()
    local creq = {}
    local wire = { model = "gpt-5.1-codex", input = {}, max_output_tokens = 100, temperature = 0.5,
      reasoning = { effort = "xhigh" }, store = true, stream = false }
    chatgpt.shape(p, wire, creq)
    assert.is_false(wire.store)
    assert.is_true(wire.stream)
    assert.equal("", wire.instructions)
    assert.same({ "reasoning.encrypted_content" }, wire.include)
    assert.same({ effort = "high", summary = "auto" }, wire.reasoning)
    assert.is_nil(wire.max_output_tokens)
    assert.is_nil(wire.temperature)
    table.sort(creq.dropped)
    assert.same({ "max_output_tokens (the ChatGPT backend does not take it)",
      "temperature (the ChatGPT backend does not take it)" }, creq.dropped)
    assert.equal("low", chatgpt.effort(p, "gpt-5.1-codex", "minimal"))
    assert.equal("medium", chatgpt.effort(p, "gpt-5.1-codex", "medium"))
    assert.equal("minimal", chatgpt.effort(p, "unknown-model", "minimal")) -- no list: as asked
    wire = { model = "gpt-5.1-codex", input = {} } -- no effort asked: medium, the backend's usual
    chatgpt.shape(p, wire, {})
    assert.equal("medium", wire.reasoning.effort)
  end)

  it("reads the backend's quota errors as 429 with the wait", function()
    local function classify(status, body) return chatgpt.classify(p, status, body.error or body, nil) end
    assert.same({ 429, 120 }, { classify(429, { error = { type = "usage_limit_reached", resets_in_seconds = 120 } }) })
    assert.same({ 429, 7 }, { classify(429, { error = { code = "rate_limit_exceeded",
      message = "Rate limit reached. Please try again in 6.2s." } }) })
    assert.same({ 429 }, { classify(403, { error = { code = "usage_not_included", message = "Upgrade" } }) })
    assert.same({ 400 }, { classify(400, { detail = "The 'x' model is not supported when using Codex with a ChatGPT account." }) })
    assert.same({ 429, 30 }, { chatgpt.classify(p, 429, nil, 30) })
  end)
end)
