local echo = require "moongate.providers.echo"

local function run(creq, opts)
  opts = opts or {}
  local events, drains = {}, {}
  local sink = {
    emit = function(ev)
      events[#events + 1] = ev
      return not (opts.pause_after and #events == opts.pause_after)
    end,
    on_drain = function(fn) drains[#drains + 1] = fn end,
    closed = function() return false end,
    guard = function(fn) return fn end,
  }
  local job = echo.new("echo", {}):start(creq, sink)
  return events, drains, job
end

local function user(text, extra)
  local creq = { model = "echo", messages = { { role = "user", content = { { type = "text", text = text } } } } }
  for k, v in pairs(extra or {}) do creq[k] = v end
  return creq
end

describe("echo provider", function()
  it("answers with the last user message, word by word", function()
    local events = run(user("hello brave  new world"))
    local text, deltas = {}, 0
    for _, ev in ipairs(events) do
      if ev.type == "text_delta" then text[#text + 1] = ev.text; deltas = deltas + 1 end
    end
    assert.equal("hello brave  new world", table.concat(text))
    assert.equal(4, deltas)
    assert.equal("start", events[1].type)
    assert.equal("usage", events[#events - 1].type)
    assert.equal(4, events[#events - 1].output_tokens)
    assert.same({ type = "done", reason = "stop" }, events[#events])
  end)

  it("truncates at max_tokens with reason length", function()
    local events = run(user("one two three four", { max_tokens = 2 }))
    assert.same({ type = "done", reason = "length" }, events[#events])
    assert.equal(2, events[#events - 1].output_tokens)
  end)

  it("stops when the sink is full and resumes on drain", function()
    local events, drains = run(user("a b c d"), { pause_after = 2 })
    assert.equal(2, #events)
    assert.equal(1, #drains)
    drains[1]()
    assert.equal("done", events[#events].type)
  end)

  it("answers an empty string when there is no user message", function()
    local events = run({ model = "echo", messages = { { role = "assistant", content = {} } } })
    assert.equal("done", events[#events].type)
    assert.equal(0, events[#events - 1].output_tokens)
  end)
end)
