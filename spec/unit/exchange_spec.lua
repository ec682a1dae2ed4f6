-- The sink an exchange hands its provider for each attempt, tested with a
-- client object of its own (exchange.run takes one), without the daemon.
local exchange = require "moongate.exchange"
local openai_chat = require "moongate.frontdoor.openai_chat"
local log = require "moongate.log"
local uv = require "luv"

-- a client that records what the exchange sends it
local function fake_client()
  local c = { key = {}, sent = {} }
  function c:stream() return nil end
  function c:json(status, value) self.sent[#self.sent + 1] = { "json", status, value } end
  function c:error(client, err) self.sent[#self.sent + 1] = { "error", client, err } end
  function c:on_close(fn) self.close = fn end
  return c
end

-- a provider that keeps the sink of each attempt
local function recorder(name, retries)
  local p = { name = name, retries = retries or 0, sinks = {} }
  function p:start(_, sink)
    self.sinks[#self.sinks + 1] = sink
    return { cancel = function() end }
  end
  return p
end

local function run(chain, spend)
  local route = { model = "m", chain = {} }
  for i, p in ipairs(chain) do route.chain[i] = { name = p.name, provider = p } end
  local client = fake_client()
  local creq = { model = "m", stream = false }
  local x = exchange.run({}, openai_chat, creq, route, {}, client, spend)
  return x, client
end

describe("exchange sink", function()
  it("has the six functions of the provider interface, and no others", function()
    local p = recorder("a")
    run({ p })
    local sink = p.sinks[1]
    for _, name in ipairs({ "emit", "closed", "on_drain", "pipe_handle", "guard", "guard_value" }) do
      assert.equal("function", type(sink[name]), name)
      assert.equal(sink[name], sink[name], name)
    end
    assert.is_nil(sink.other)
    assert.is_nil(sink.pipe_handle()) -- no client stream
  end)

  it("hands a whole answer to the client once, then is closed", function()
    local p = recorder("a")
    local x, client = run({ p })
    local sink = p.sinks[1]
    assert.is_false(sink.closed())
    assert.is_true(sink.emit({ type = "raw_body", body = '{"ok":true}' }))
    assert.same({ { "json", 200, '{"ok":true}' } }, client.sent)
    assert.is_true(x.done)
    assert.is_true(sink.closed())
    assert.is_false(sink.emit({ type = "raw_body", body = "again" }))
    assert.equal(1, #client.sent)
  end)

  it("spends the reported tokens once, before the answer goes to the client", function()
    local p, spent, box = recorder("a"), {}, {}
    local _, client = run({ p }, function(tokens) spent[#spent + 1] = { tokens, #box.client.sent } end)
    box.client = client
    local sink = p.sinks[1]
    assert.is_true(sink.emit({ type = "usage", input_tokens = 7, output_tokens = 5 }))
    assert.is_true(sink.emit({ type = "raw_body", body = '{"ok":true}' }))
    assert.equal(1, #client.sent)
    -- (another worker may take the client's next request as soon as it has
    -- this answer: the tokens must be counted by then)
    assert.same({ { 12, 0 } }, spent)
  end)

  it("closes a failed attempt's sink when the next provider takes over", function()
    local a, b = recorder("a"), recorder("b")
    local _, client = run({ a, b })
    local old = a.sinks[1]
    local warn = log.warn
    log.warn = function() end
    assert.is_false(old.emit({ type = "error", status = 503, message = "busy", retryable = true }))
    log.warn = warn
    uv.run() -- the fallback starts from a timer
    assert.equal(1, #b.sinks)
    assert.is_true(old.closed())
    assert.is_false(old.emit({ type = "raw_body", body = "stale" }))
    local new = b.sinks[1]
    assert.is_false(new.closed())
    assert.is_true(new.emit({ type = "raw_body", body = "fresh" }))
    assert.same({ { "json", 200, "fresh" } }, client.sent)
    uv.run("nowait") -- the exchange closed its timer: let the close finish
  end)

  it("turns an error in a guarded callback into a 500 in the client's format", function()
    local p = recorder("prov")
    local _, client = run({ p })
    local sink = p.sinks[1]
    local logged
    local err = log.error
    log.error = function(fmt, ...) logged = string.format(fmt, ...) end
    local cb = sink.guard_value(function() error("boom") end)
    local res = cb()
    log.error = err
    assert.is_false(res)
    assert.truthy(logged:find("provider prov: .*boom"))
    assert.equal(1, #client.sent)
    assert.equal("error", client.sent[1][1])
    assert.equal("openai", client.sent[1][2])
    assert.equal(500, client.sent[1][3].status)
    assert.equal("internal error in provider prov", client.sent[1][3].message)
    assert.is_true(sink.closed())
    -- a guarded callback that works hands its value back
    assert.equal(7, sink.guard(function(v) return v + 1 end)(6))
  end)
end)
