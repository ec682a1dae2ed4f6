-- End-to-end translation pairings, kept beside the N + M fixtures
-- (spec/unit/fixtures_spec.lua) for a few cases where the client's own
-- request meets an upstream in one go: spec/fixtures/<frontdoor>-<adapter>/<case>/
--   request.json           what the client sends
--   upstream_request.json  what must reach the upstream (a subset)
--   upstream.json          the upstream's answer: {json = body} or {frames = [...]}
--                          or {fixture = name} for spec/fixtures/upstream/<name>.json
--   expected.json          what the client gets: a subset of the body, or the
--                          list of stream frames ({event?, data}) in order
-- Optional: headers.json (the client's request headers), conf.json (the
-- provider's config), absent.json (dotted paths the upstream request must
-- not hold), dropped.json (what the translation lists as left out),
-- error.json ({status, message, param?}: the translation refuses the
-- request; nothing else is read). Without upstream.json a case checks the
-- request only.
-- No daemon: front door and adapter modules only.
local json = require "moongate.json"
local fx = require "support.fixtures"

local frontdoors = {
  openai_chat = require "moongate.frontdoor.openai_chat",
  anthropic_messages = require "moongate.frontdoor.anthropic_messages",
}
local adapters = {
  openai = require "moongate.adapters.openai",
  anthropic = require "moongate.adapters.anthropic",
}

local errors = require "moongate.errors"
local exists, read, list, contains = fx.exists, fx.read, fx.list, fx.contains

for _, pairing in ipairs(list("spec/fixtures")) do
  local fd_name, ad_name = pairing:match("^(.-)%-(.+)$")
  if fd_name and frontdoors[fd_name] then
    describe("translation " .. pairing, function()
      local fd, ad = frontdoors[fd_name], adapters[ad_name]
      for _, case in ipairs(list("spec/fixtures/" .. pairing)) do
        it(case, function()
          local dir = "spec/fixtures/" .. pairing .. "/" .. case .. "/"
          local creq = assert(fd.decode(fx.text(dir .. "request.json"), fx.maybe(dir .. "headers.json", {})))
          creq.upstream_model = creq.model
          local ok, wire = errors.catch(ad.request, creq, fx.maybe(dir .. "conf.json", {}))
          if exists(dir .. "error.json") then return fx.refused(read(dir .. "error.json"), ok, wire) end
          assert(ok, wire and wire.message)
          contains(wire, read(dir .. "upstream_request.json"), "upstream request")
          fx.absent(wire, fx.maybe(dir .. "absent.json"), "upstream request")
          if exists(dir .. "dropped.json") then -- what the translation left out, as the debug log lists it
            local want, got = read(dir .. "dropped.json"), { unpack(creq.dropped or {}) }
            table.sort(want)
            table.sort(got)
            assert.same(want, got)
          end
          if not exists(dir .. "upstream.json") then return end -- a request-only case

          local events = fx.upstream_events(ad, read(dir .. "upstream.json"))
          for _, e in ipairs(events) do assert(e.type ~= "error", "error event: " .. tostring(e.message)) end
          contains(fx.client_answer(fd, creq, events), read(dir .. "expected.json"),
            creq.stream and "client stream" or "client body")
        end)
      end
    end)
  end
end

describe("anthropic_messages.decode", function()
  local fd = require "moongate.frontdoor.anthropic_messages"
  local errors = require "moongate.errors"
  -- decode takes what a passthrough forwards as it is; a translation (to
  -- either format) refuses it, naming the place
  local function fails(req, message)
    local creq = assert(fd.decode(json.encode(req), {}))
    for _, a in pairs(adapters) do
      local ok, err = errors.catch(a.request, creq, {})
      assert.is_false(ok)
      assert.equal(400, err.status)
      assert.equal(message, err.message)
      rawset(creq, "messages", nil)
    end
  end

  it("makes the canonical messages only when read (a passthrough never reads them)", function()
    local creq = assert(fd.decode(json.encode { model = "m", max_tokens = 5, system = "be brief", messages = {
      { role = "user", content = "hi" },
      { role = "assistant", content = { { type = "redacted_thinking", data = "x" },
        { type = "tool_use", id = "t1", name = "f", input = { a = 1 } } } },
      { role = "user", content = { { type = "tool_result", tool_use_id = "t1", content = "42" } } } } }, {}))
    assert.is_nil(rawget(creq, "messages"))
    assert.equal("be brief", json.str(creq.system)) -- (carried raw: json.str reads it)
    assert.equal(3, #creq.messages)
    assert.same({ { type = "redacted_thinking", data = "x" },
      { type = "tool_call", id = "t1", name = "f", arguments = '{"a":1}' } }, creq.messages[2].content)
    -- (a tool result's text is carried raw: json.str reads it)
    assert.equal("42", json.str(creq.messages[3].content[1].content))
  end)

  it("passes what it does not read; a translation names the message and block at fault, counted from 0", function()
    local ok = { role = "user", content = "hi" }
    fails({ model = "m", max_tokens = 5, messages = { ok, 7 } }, "messages.1: Input should be an object")
    fails({ model = "m", max_tokens = 5, messages = { { role = "robot", content = "x" } } },
      "messages.0.role: Input should be 'user', 'assistant' or 'system'")
    fails({ model = "m", max_tokens = 5, messages = { ok, { role = "user", content = 5 } } },
      "messages.1.content: Input should be a valid string or list")
    fails({ model = "m", max_tokens = 5, messages = { ok, { role = "user", content = { { type = "text", text = "a" }, { type = "text" } } } } },
      "messages.1.content.1.text: Input should be a valid string")
    fails({ model = "m", max_tokens = 5, messages = { { role = "user", content = { { type = "video" } } } } },
      "messages.0.content.0.type: content block type 'video' cannot be translated")
    fails({ model = "m", max_tokens = 5, messages = { { role = "user", content = { { type = "image", source = {} } } } } },
      "messages.0.content.0.source.type: unsupported image source 'nil'")
    fails({ model = "m", max_tokens = 5, messages = { { role = "user", content = { 3 } } } },
      "messages.0.content.0: Input should be an object")
  end)
end)

describe("canonical.random_id", function()
  local canonical = require "moongate.canonical"
  it("is the prefix and n letters or digits, different each time", function()
    local a, b = canonical.random_id("msg_", 24), canonical.random_id("msg_", 24)
    assert.matches("^msg_[%w]+$", a)
    assert.equal(28, #a)
    assert.not_equal(a, b)
    assert.equal("x", canonical.random_id("x", 0))
  end)
end)

describe("anthropic_messages stream encoder", function()
  local fd = require "moongate.frontdoor.anthropic_messages"
  it("writes delta frames byte for byte in Anthropic's key order", function()
    local enc = fd.stream_encoder({ model = "m" }, { id = "msg_1" })
    local frames = enc:event({ type = "text_delta", text = 'say "hi"\n' })
    assert.equal(3, #frames) -- message_start, content_block_start, the delta
    assert.equal("content_block_delta", frames[3].event)
    assert.equal('{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"say \\"hi\\"\\n"}}',
      frames[3].data)
    frames = enc:event({ type = "toolcall_start", id = "toolu_1", name = "f" })
    assert.equal('{"type":"content_block_stop","index":0}', frames[1].data)
    frames = enc:event({ type = "toolcall_delta", arguments = '{"a":' })
    assert.equal('{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"a\\":"}}',
      frames[1].data)
    frames = enc:event({ type = "toolcall_delta" }) -- no arguments: an empty piece, never null
    assert.equal('{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}',
      frames[1].data)
  end)

  it("opens with the prompt's tokens when the start event knows them, else 0", function()
    local anthropic = require "moongate.adapters.anthropic"
    local dec = anthropic.decoder()
    local start = dec:frame('{"type":"message_start","message":{"id":"msg_u","model":"m","usage":{"input_tokens":42,"output_tokens":1}}}')[1]
    local frames = fd.stream_encoder({ model = "m" }, { id = "msg_1" }):event(start)
    assert.matches('"usage":{"input_tokens":42,"output_tokens":0}', frames[1].data, 1, true)
    frames = fd.stream_encoder({ model = "m" }, { id = "msg_1" }):event({ type = "text_delta", text = "x" })
    assert.matches('"usage":{"input_tokens":0,"output_tokens":0}', frames[1].data, 1, true)
  end)
end)

describe("openai decoder, parallel tool calls", function()
  local openai = require "moongate.adapters.openai"
  local function chunk(calls, finish)
    return json.encode { id = "c", choices = { { index = 0, delta = { tool_calls = calls },
      finish_reason = finish or json.null } } }
  end
  local function run(frames)
    local dec, evs = openai.decoder(), {}
    for _, f in ipairs(frames) do
      for _, e in ipairs(dec:frame(f)) do evs[#evs + 1] = e end
    end
    for _, e in ipairs(dec:finish()) do evs[#evs + 1] = e end
    return evs
  end
  -- the tool events as "start0 d0:... end0" in order
  local function trace(evs)
    local t = {}
    for _, e in ipairs(evs) do
      if e.type == "toolcall_start" then t[#t + 1] = "start" .. e.index .. ":" .. e.name end
      if e.type == "toolcall_delta" then t[#t + 1] = "d" .. e.index .. ":" .. e.arguments end
      if e.type == "toolcall_end" then t[#t + 1] = "end" .. e.index end
    end
    return table.concat(t, " ")
  end

  it("streams calls that come one after another as they come, each fragment with its frame", function()
    local dec = openai.decoder()
    local per_frame = {}
    for _, f in ipairs {
      chunk { { index = 0, id = "a", ["function"] = { name = "f", arguments = "" } } },
      chunk { { index = 0, ["function"] = { arguments = '{"x":"}' } } }, -- a brace inside a string
      chunk { { index = 0, ["function"] = { arguments = '"}' } } },
      chunk { { index = 1, id = "b", ["function"] = { name = "g", arguments = '{"y"' } } },
      chunk { { index = 1, ["function"] = { arguments = ':2}' } } },
      chunk({}, "tool_calls") } do
      per_frame[#per_frame + 1] = trace(dec:frame(f))
    end
    per_frame[#per_frame + 1] = trace(dec:finish())
    assert.same({ "start0:f", 'd0:{"x":"}', 'd0:"}', 'end0 start1:g d1:{"y"', "d1::2}", "", "end1" }, per_frame)
  end)

  it("puts the fragments of interleaved calls back in order, each in its own call", function()
    local evs = run {
      chunk { { index = 0, id = "a", ["function"] = { name = "f", arguments = "" } },
        { index = 1, id = "b", ["function"] = { name = "g", arguments = "" } } },
      chunk { { index = 0, ["function"] = { arguments = '{"x":' } } },
      chunk { { index = 1, ["function"] = { arguments = '{"y":' } } },
      chunk { { index = 0, ["function"] = { arguments = '1}' } } },
      chunk { { index = 1, ["function"] = { arguments = '2}' } } },
      chunk({}, "tool_calls"), "[DONE]" }
    assert.equal('start0:f d0:{"x": d0:1} end0 start1:g d1:{"y": d1:2} end1', trace(evs))
  end)

  it("ends with every waiting call even when the open one never became whole JSON", function()
    local evs = run {
      chunk { { index = 0, id = "a", ["function"] = { name = "f", arguments = '{"x"' } },
        { index = 1, id = "b", ["function"] = { name = "g", arguments = '{}' } } },
      chunk({}, "tool_calls"), "[DONE]" }
    assert.equal('start0:f d0:{"x" end0 start1:g d1:{} end1', trace(evs))
  end)
end)
