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
  end)

  it("answers a tool call without a name as a malformed answer", function()
    local events = wire.adapt("up", openai.response, answer {
      { id = "call_1", type = "function", ["function"] = { arguments = "{}" } } }, {})
    assert.equal(1, #events)
    assert.equal("error", events[1].type)
    assert.equal(502, events[1].status)
    assert.matches("without a name", events[1].message)
    -- streamed too: the decoder's frames
    local dec = openai.decoder({})
    local frame = json.encode { id = "c1", object = "chat.completion.chunk", choices = { { index = 0,
      delta = { tool_calls = { { index = 0, id = "call_1", type = "function", ["function"] = { name = json.null, arguments = "" } } } } } } }
    events = wire.adapt("up", dec.frame, dec, frame)
    assert.equal("error", events[#events].type)
  end)

  it("leaves an adapter's fault a malformed answer, never a Lua error", function()
    local events = wire.adapt("up", function() error("boom") end)
    assert.equal("error", events[1].type)
    assert.equal("malformed answer from upstream", events[1].message)
  end)
end)
