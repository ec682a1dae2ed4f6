-- moongate.wire.adapt: what an adapter makes of an upstream's answer, with
-- the tool calls' ids and names as a client's SDK takes them
local wire = require "moongate.wire"
local openai = require "moongate.adapters.openai"
local json = require "moongate.json"

local function answer(calls)
  return json.decode(json.encode { id = "c1", model = "m", choices = { { index = 0, finish_reason = "tool_calls",
    message = { role = "assistant", tool_calls = calls } } } })
end

local function starts(events)
  local out = {}
  for _, ev in ipairs(events) do if ev.type == "toolcall_start" then out[#out + 1] = ev end end
  return out
end

describe("wire.adapt", function()
  it("says a numbered tool call's id as a string, and makes one where there is none", function()
    local ev = starts(wire.adapt("up", openai.response, answer {
      { id = 7, type = "function", ["function"] = { name = "a", arguments = "{}" } },
      { type = "function", ["function"] = { name = "b", arguments = "{}" } },
      { id = "call_x", type = "function", ["function"] = { name = "c", arguments = "{}" } } }, {}))
    assert.equal("7", ev[1].id)
    assert.matches("^call_%w+$", ev[2].id)
    assert.equal("call_x", ev[3].id)
    ev = starts(wire.adapt("up", openai.response, answer {
      { id = 1.5, type = "function", ["function"] = { name = "a", arguments = "{}" } } }, {}))
    assert.equal("1.5", ev[1].id)
  end)

  it("answers a tool call without a name as a malformed answer", function()
    local events = wire.adapt("up", openai.response, answer {
      { id = "call_1", type = "function", ["function"] = { arguments = "{}" } } }, {})
    local last = events[#events]
    assert.equal("error", last.type)
    assert.equal(502, last.status)
    assert.matches("without a name", last.message)
    for i = 1, #events - 1 do assert.not_equal("toolcall_start", events[i].type) end
    -- streamed too: the decoder's frames
    local dec = openai.decoder({})
    local frame = json.encode { id = "c1", object = "chat.completion.chunk", choices = { { index = 0,
      delta = { tool_calls = { { index = 0, id = "call_1", type = "function", ["function"] = { name = json.null, arguments = "" } } } } } } }
    events = wire.adapt("up", dec.frame, dec, frame)
    assert.equal("error", events[#events].type)
    -- what came before the nameless call in the same answer stands
    local body = answer { { id = "call_1", type = "function", ["function"] = { arguments = "{}" } } }
    body.choices[1].message.content = "before"
    events = wire.adapt("up", openai.response, body, {})
    assert.equal("start", events[1].type)
    assert.equal("before", events[2].text)
    assert.equal("error", events[#events].type)
  end)

  it("leaves an adapter's fault a malformed answer, never a Lua error", function()
    local events = wire.adapt("up", function() error("boom") end)
    assert.equal("error", events[1].type)
    assert.equal("malformed answer from upstream", events[1].message)
  end)

  it("never shows part of a secret in a malformed frame's message, however long the frame", function()
    local secrets = require "moongate.secrets"
    local anthropic = require "moongate.adapters.anthropic"
    local key = "sk-ant-wire-spec-1234567890abcdef"
    secrets.add(key)
    for pad = 150, 200 do
      local ev = wire.passthrough(anthropic.stream_end):frame(("x"):rep(pad) .. " " .. key)[1]
      assert.equal("error", ev.type)
      assert.is_nil(ev.message:find("sk-ant-wire", 1, true), ev.message)
    end
  end)

  it("says an error frame's object message as its JSON text, in each format's stream", function()
    local anthropic = require "moongate.adapters.anthropic"
    local responses = require "moongate.adapters.openai_responses"
    local nested = { detail = "nested words" }
    local cases = {
      { openai.decoder({}), json.encode { error = { message = nested, type = "x" } } },
      { anthropic.decoder({}), json.encode { type = "error", error = { type = "api_error", message = nested } }, "error" },
      { responses.decoder({}), json.encode { type = "error", code = "server_error", message = nested }, "error" },
    }
    for i, c in ipairs(cases) do
      local events = wire.adapt("up", c[1].frame, c[1], c[2], c[3])
      local ev = events[#events]
      assert.equal("error", ev.type, "case " .. i)
      assert.is_nil(ev.message:find("table: ", 1, true), ev.message)
      assert.matches("nested words", ev.message, 1, true)
    end
  end)
end)
