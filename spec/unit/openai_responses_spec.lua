-- The Responses front door (lua/moongate/frontdoor/openai_responses.lua):
-- the wire facts of its event stream over every stream fixture, decode's
-- refusals in OpenAI's words, the response store (previous_response_id,
-- GET, DELETE) against the pure-Lua store, and opaque reasoning's round
-- trip through a client.
local fd = require "moongate.frontdoor.openai_responses"
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"
local store = require "moongate.store"
local fx = require "support.fixtures"

local DIR = "spec/fixtures/frontdoor/openai_responses/"

local function decode(t) return fd.decode(type(t) == "string" and t or json.encode(t), {}) end

-- the frames an encoder writes for events (error events through enc:error)
local function run(creq, events, meta)
  local enc, frames = fd.stream_encoder(creq, meta), {}
  for _, e in ipairs(events) do
    for _, f in ipairs(e.type == "error" and enc:error(e) or enc:event(e)) do frames[#frames + 1] = f end
  end
  return frames
end

local terminal = { ["response.completed"] = true, ["response.incomplete"] = true, ["response.failed"] = true }

-- every wire fact a client's stream parser leans on (the SDKs' snapshot
-- accumulation, Codex's reading of output_item.done and the end)
local function check_stream(frames)
  local open, done_items, seen = {}, {}, {}
  local parts, summaries = {}, {}
  assert.is_true(#frames >= 3)
  for i, f in ipairs(frames) do
    assert.is_string(f.event)
    assert.is_not.equal("[DONE]", f.data)
    local d = assert(json.decode(f.data), f.data)
    -- the event name and the type agree; sequence numbers count from 0 by one
    assert.equal(f.event, d.type)
    assert.equal(i - 1, d.sequence_number)
    if i == 1 then assert.equal("response.created", d.type) end
    if i == 2 then assert.equal("response.in_progress", d.type) end
    if i <= 2 then
      assert.equal("in_progress", d.response.status)
      assert.matches('"output":%[%]', f.data) -- an empty list, not {}
    end
    -- exactly one end, the last event
    assert.equal(i == #frames, terminal[d.type] == true, "terminal event at " .. i .. ": " .. d.type)
    local t = d.type
    if t == "response.output_item.added" then
      -- items open in order, one at a time, each with a fresh id
      assert.equal(#done_items + (next(open) and 1 or 0), d.output_index)
      assert.is_nil(next(open), "an item added while another is open")
      assert.is_nil(seen[d.item.id])
      seen[d.item.id] = true
      open[d.output_index] = d.item
    elseif t == "response.output_item.done" then
      local added = open[d.output_index]
      assert.truthy(added, "done for an item never added")
      assert.equal(added.id, d.item.id)
      assert.equal(added.type, d.item.type)
      assert.is_nil(parts[d.item.id], "an item done with its content part open")
      assert.is_nil(summaries[d.item.id], "an item done with its summary part open")
      open[d.output_index] = nil
      done_items[#done_items + 1] = d.item
      assert.equal(#done_items - 1, d.output_index)
    elseif d.item_id then
      -- deltas and parts name the open item, at its index
      local item = open[d.output_index]
      assert.truthy(item, t .. " for no open item")
      assert.equal(item.id, d.item_id)
      if t == "response.content_part.added" then
        assert.is_nil(parts[d.item_id])
        parts[d.item_id] = d.content_index
      elseif t == "response.content_part.done" then
        assert.equal(parts[d.item_id], d.content_index)
        parts[d.item_id] = nil
      elseif t == "response.output_text.delta" or t == "response.output_text.done" then
        assert.equal(parts[d.item_id], d.content_index)
        assert.is_table(d.logprobs)
      elseif t == "response.reasoning_summary_part.added" then
        assert.is_nil(summaries[d.item_id])
        summaries[d.item_id] = d.summary_index
      elseif t == "response.reasoning_summary_part.done" then
        assert.equal(summaries[d.item_id], d.summary_index)
        summaries[d.item_id] = nil
      elseif t:find("^response%.reasoning_summary_text") then
        assert.equal(summaries[d.item_id], d.summary_index)
      end
    end
    if terminal[t] then
      local r = d.response
      -- the fields the SDKs' Response type requires
      for _, k in ipairs { "id", "created_at", "model", "object", "output", "parallel_tool_calls", "tool_choice", "tools" } do
        assert.is_not_nil(r[k], "response." .. k)
      end
      assert.equal("response", r.object)
      if t ~= "response.failed" then
        -- every item added is done, and the response lists them in order
        assert.is_nil(next(open), "an item still open at the end")
        assert.equal(#done_items, #r.output)
        for k, item in ipairs(done_items) do assert.same(item, r.output[k]) end
        assert.is_number(r.usage.total_tokens)
        assert.equal(r.usage.input_tokens + r.usage.output_tokens, r.usage.total_tokens)
      else
        assert.is_string(r.error.code)
        assert.is_string(r.error.message)
      end
    end
  end
end

describe("openai_responses stream encoder", function()
  for _, case in ipairs(fx.list(DIR)) do
    if fx.exists(DIR .. case .. "/stream.json") then
      it("keeps the wire facts: " .. case, function()
        local creq = assert(fd.decode(fx.text(DIR .. case .. "/request.json"), {}))
        check_stream(run(creq, fx.read(DIR .. case .. "/events.json")))
      end)
    end
  end

  it("writes empty lists as [] and deltas in one line each", function()
    local creq = assert(decode { model = "m", input = "x", stream = true, include = { "reasoning.encrypted_content" } })
    local frames = run(creq, { { type = "thinking_signature", signature = "s" }, { type = "text_delta", text = "a\"b" },
      { type = "done", reason = "stop" } })
    local text = {}
    for _, f in ipairs(frames) do text[#text + 1] = f.data end
    text = table.concat(text, "\n")
    assert.matches('"summary":%[%]', text)
    assert.matches('"annotations":%[%]', text)
    assert.matches('"content":%[%]', text)
    assert.matches('"tools":%[%]', text)
    assert.matches('"delta":"a\\"b","logprobs":%[%]', text)
  end)

  it("opens with response.created even when the first thing is an error", function()
    local creq = assert(decode { model = "m", input = "x", stream = true })
    local frames = run(creq, { { type = "error", status = 529, message = "overloaded", code = "server_is_overloaded" } })
    check_stream(frames)
    local last = json.decode(frames[#frames].data)
    assert.same({ code = "server_is_overloaded", message = "overloaded" }, last.response.error)
  end)

  it("says nothing more once the response has ended", function()
    local creq = assert(decode { model = "m", input = "x", stream = true })
    local enc = fd.stream_encoder(creq)
    enc:event({ type = "text_delta", text = "a" })
    assert.is_true(#enc:event({ type = "done", reason = "stop" }) > 0)
    assert.same({}, enc:error({ status = 502, message = "late" }))
  end)

  it("names the reasoning item by the upstream's id, and packs a value whose id it could not keep", function()
    local creq = assert(decode { model = "m", input = "x", stream = true, include = { "reasoning.encrypted_content" } })
    local frames = run(creq, {
      { type = "thinking_delta", text = "a" }, -- no id yet: one of the gateway's
      { type = "thinking_signature", signature = "ENC", origin = "responses", item_id = "rs_up" },
      { type = "done", reason = "stop" } })
    local item = json.decode(frames[#frames].data).response.output[1]
    assert.is_not.equal("rs_up", item.id)
    assert.equal(canonical.pack_opaque("responses", "rs_up", "ENC"), item.encrypted_content)
    -- and back from the client: the upstream's id and value again
    local back = assert(decode { model = "m", input = { item } })
    local b = back.messages[1].content[1]
    assert.same({ "responses", "rs_up", "ENC" }, { b.origin, b.item_id, b.signature })
  end)

  it("writes an upstream's item id as JSON, whatever it holds", function()
    local creq = assert(decode { model = "m", input = "x", stream = true })
    local frames = run(creq, { { type = "thinking_delta", text = "t", origin = "responses", item_id = 'rs_"\\' },
      { type = "done", reason = "stop" } })
    check_stream(frames)
    assert.equal('rs_"\\', json.decode(frames[5].data).item_id)
  end)

  it("keeps encrypted_content out of the client's items unless include asks, but stores it", function()
    local creq = assert(decode { model = "m", input = "x", stream = true })
    local kept
    creq.on_complete = function(resp, output) kept = { resp, output } end
    local frames = run(creq, { { type = "thinking_delta", text = "t" }, { type = "thinking_signature", signature = "S" },
      { type = "done", reason = "stop" } })
    for _, f in ipairs(frames) do assert.is_nil(f.data:find("encrypted_content", 1, true)) end
    assert.equal("completed", kept[1].status)
    assert.equal(canonical.pack_opaque("anthropic", nil, "S"), json.decode(kept[2])[1].encrypted_content)
  end)

  it("carries redacted thinking through a client and back", function()
    local creq = assert(decode { model = "m", input = "x", include = { "reasoning.encrypted_content" } })
    local col = fd.collector(creq)
    col:event({ type = "redacted_thinking", data = "OPAQUE" })
    col:event({ type = "done", reason = "stop" })
    local item = col:result().output[1]
    assert.equal("reasoning", item.type)
    local back = assert(decode { model = "m", input = { { role = "user", content = "q" }, item } })
    assert.same({ type = "redacted_thinking", data = "OPAQUE" }, back.messages[2].content[1])
  end)
end)

describe("openai_responses collector", function()
  it("makes the response the stream ends with, and tells the store once", function()
    local creq = assert(decode { model = "m", input = "x", max_output_tokens = 20 })
    local calls = 0
    creq.on_complete = function() calls = calls + 1 end
    local col = fd.collector(creq, { id = "resp_X", created = 5 })
    for _, e in ipairs { { type = "text_delta", text = "par" }, { type = "usage", input_tokens = 1, output_tokens = 20 },
      { type = "done", reason = "length" } } do col:event(e) end
    local r = col:result()
    col:result()
    assert.equal(1, calls)
    assert.equal("resp_X", r.id)
    assert.equal(5, r.created_at)
    assert.equal("incomplete", r.status)
    assert.same({ reason = "max_output_tokens" }, r.incomplete_details)
    assert.equal("incomplete", r.output[1].status)
    assert.equal(20, r.max_output_tokens)
    -- the whole answer as the exchange writes it
    local text = json.encode_raw(r)
    assert.matches('"annotations":%[%]', text)
  end)

  it("says content_filter as the incomplete reason", function()
    local col = fd.collector(assert(decode { model = "m", input = "x" }))
    col:event({ type = "done", reason = "content_filter" })
    assert.same({ reason = "content_filter" }, col:result().incomplete_details)
  end)
end)

describe("openai_responses.decode", function()
  local cases = {
    { "empty body", "", 400, nil, "could not parse" },
    { "malformed JSON", "{nope", 400, nil, "could not parse" },
    { "not an object", "[1]", 400, nil, "expected a JSON object" },
    { "missing model", { input = "x" }, 400, "model", "Missing required parameter: 'model'." },
    { "model twice", '{"model":"a","model":"b","input":"x"}', 400, "model", "given twice" },
    { "input of the wrong type", { model = "m", input = { a = 1 } }, 400, "input", "expected one of a string or an array, but got an object" },
    { "stream not a boolean", { model = "m", stream = "yes" }, 400, "stream", "Invalid type for 'stream': expected a boolean" },
    { "max_output_tokens below 16", { model = "m", max_output_tokens = 15 }, 400, "max_output_tokens", "Expected a value >= 16, but got 15 instead." },
    { "max_output_tokens not an integer", { model = "m", max_output_tokens = 20.5 }, 400, "max_output_tokens", "expected an integer" },
    { "temperature above 2", { model = "m", temperature = 2.5 }, 400, "temperature", "above maximum value" },
    { "top_p below 0", { model = "m", top_p = -1 }, 400, "top_p", "below minimum value" },
    { "tools not a list", { model = "m", tools = { type = "function" } }, 400, "tools", "expected an array" },
    { "a function tool without a name", { model = "m", tools = { { type = "function" } } }, 400, "tools[0].name", "Missing required parameter: 'tools[0].name'." },
    { "a namespace's tool without a name", { model = "m", tools = { { type = "namespace", name = "n", tools = { { type = "custom" } } } } },
      400, "tools[0].tools[0].name", "Missing required parameter" },
    { "an unknown tool_choice", { model = "m", tool_choice = "always" }, 400, "tool_choice", "'always' is not one of" },
    { "a function tool_choice without a name", { model = "m", tool_choice = { type = "function" } }, 400, "tool_choice.name", "Missing required parameter" },
    { "a bad effort", { model = "m", reasoning = { effort = "max" } }, 400, "reasoning.effort", "'max' is not one of" },
    { "a bad summary", { model = "m", reasoning = { summary = "long" } }, 400, "reasoning.summary", "'long' is not one of" },
    { "a bad text format", { model = "m", text = { format = { type = "xml" } } }, 400, "text.format.type", "'xml' is not one of" },
    { "a json_schema without a name", { model = "m", text = { format = { type = "json_schema", schema = { type = "object" } } } },
      400, "text.format.name", "Missing required parameter: 'text.format.name'." },
    { "previous_response_id not a string", { model = "m", previous_response_id = 1 }, 400, "previous_response_id", "expected a string" },
    { "include not a list of strings", { model = "m", include = { 1 } }, 400, "include[0]", "expected a string" },
    { "background", { model = "m", background = true }, 400, "background", "not supported" },
  }
  for _, c in ipairs(cases) do
    it("rejects " .. c[1], function()
      local creq, err = decode(c[2])
      assert.is_nil(creq)
      assert.equal(c[3], err.status)
      assert.equal(c[4], err.param)
      assert.matches(c[5], err.message, 1, true)
      -- OpenAI's error object, all four keys
      local body = json.decode(errors.body(fd.client, err))
      assert.equal("invalid_request_error", body.error.type)
      assert.equal(err.message, body.error.message)
    end)
  end

  it("reads a null as absent", function()
    local creq = assert(decode { model = "m", input = "x", reasoning = { effort = json.null, summary = json.null },
      max_output_tokens = json.null, tool_choice = json.null, text = { format = json.null } })
    assert.is_nil(creq.reasoning)
    assert.is_nil(creq.max_tokens)
    assert.is_nil(creq.tool_choice)
    assert.is_nil(creq.format)
  end)

  it("leaves the items unread until a translation reads them", function()
    local creq = assert(decode { model = "m", input = { { role = "user", content = "q" }, { type = "nonsense" } } })
    assert.is_nil(rawget(creq, "messages"))
    assert.is_nil(rawget(creq, "system"))
    assert.is_nil(rawget(creq, "untranslatable"))
    -- an upstream of this format gets the item as it came; another refuses it
    local b = creq.messages[2].content[1]
    assert.same({ "native", "responses", "nonsense" }, { b.type, b.format, b.block.type })
    assert.is_true((errors.catch(canonical.foreign_fields, creq, "responses")))
    local ok, err = errors.catch(canonical.foreign_fields, creq, "openai")
    assert.is_false(ok)
    assert.equal("input", err.param)
    assert.matches("input[1]: an item of type 'nonsense' cannot be translated", err.message, 1, true)
  end)

  it("refuses an item that is not an object by its place", function()
    local creq = assert(decode { model = "m", input = { { role = "user", content = "a" }, 42 } })
    local ok, err = errors.catch(function() return creq.messages end)
    assert.is_false(ok)
    assert.equal("input[1]", err.param)
    assert.matches("expected an object, but got an integer", err.message, 1, true)
  end)

  it("names the fate of every documented request field", function()
    local documented = { "background", "context_management", "conversation", "include", "input", "instructions",
      "max_output_tokens", "max_tool_calls", "metadata", "model", "moderation", "parallel_tool_calls",
      "previous_response_id", "prompt", "prompt_cache_key", "prompt_cache_options", "prompt_cache_retention",
      "reasoning", "safety_identifier", "service_tier", "store", "stream", "stream_options", "temperature", "text",
      "tool_choice", "tools", "top_logprobs", "top_p", "truncation", "user" }
    for _, k in ipairs(documented) do assert.is_string(fd.fields[k], k) end
  end)

  it("decodes Codex CLI's captured requests, and translates them", function()
    for _, case in ipairs { "codex_oneshot", "codex_tool_followup", "codex_reasoning_followup", "codex_responses_lite" } do
      local creq = assert(fd.decode(fx.text(DIR .. case .. "/request.json"), fx.read(DIR .. case .. "/headers.json")))
      assert.equal("test-key", creq.client_key)
      local ok, err = errors.catch(function()
        canonical.snapshot(creq)
        canonical.foreign_fields(creq, "anthropic")
      end)
      assert(ok, case .. ": " .. tostring(err and err.message))
      assert.equal("user", creq.messages[1].role)
      assert.truthy(creq.system:find("Codex", 1, true))
      assert.is_true(#creq.tools > 0)
    end
  end)
end)

-- a fake app with the pure-Lua store, and routes that resolve to a provider
-- of the given format
local function app() return { store = store.memory(100, 1e6) } end
local function route(format) return { chain = { { provider = { adapter = { format = format } } } } } end

-- one whole turn: decode, prepare, collect the events
local function turn(a, req, events)
  local creq = assert(decode(req))
  local err = fd.prepare(creq, a)
  if err then return nil, err end
  local col = fd.collector(creq)
  for _, e in ipairs(events or { { type = "text_delta", text = "ok" }, { type = "done", reason = "stop" } }) do col:event(e) end
  return col:result(), creq
end

describe("openai_responses store", function()
  it("continues a conversation from previous_response_id", function()
    local a = app()
    local first = turn(a, { model = "m", input = "my name is Ada", instructions = "first rules" }, {
      { type = "thinking_delta", text = "noted" }, { type = "thinking_signature", signature = "SIG" },
      { type = "text_delta", text = "Hi Ada" }, { type = "done", reason = "stop" } })
    assert.truthy(a.store:get(first.id))
    local creq = assert(decode { model = "m", input = { { role = "user", content = "my name?" } },
      previous_response_id = first.id, instructions = "new rules" })
    assert.is_nil(fd.prepare(creq, a))
    assert.is_nil(fd.accepts(creq, route("anthropic")))
    assert.is_true(creq.expanded)
    -- the earlier input and output come first; instructions are this turn's own
    assert.equal("new rules", creq.system)
    local m = creq.messages
    assert.equal(3, #m)
    assert.same({ { type = "text", text = "my name is Ada" } }, m[1].content)
    assert.equal("assistant", m[2].role)
    assert.same({ "thinking", "noted", "SIG", "anthropic" },
      { m[2].content[1].type, m[2].content[1].text, m[2].content[1].signature, m[2].content[1].origin })
    assert.same({ type = "text", text = "Hi Ada" }, m[2].content[2])
    assert.same({ { type = "text", text = "my name?" } }, m[3].content)
    -- nothing of the earlier turn is a translation's refusal
    assert(errors.catch(canonical.foreign_fields, creq, "anthropic"))
    -- an upstream of this format gets the whole input and no id it cannot know
    local body = json.decode(creq.raw_body)
    assert.equal(json.null, body.previous_response_id)
    assert.equal(4, #body.input)
    assert.equal("reasoning", body.input[2].type)
    assert.equal("my name?", body.input[4].content)
    -- and the next turn's record holds all of it, the chain goes on
    local col = fd.collector(creq)
    col:event({ type = "text_delta", text = "Ada" })
    col:event({ type = "done", reason = "stop" })
    local second = col:result()
    assert.equal(first.id, second.previous_response_id)
    local third = assert(decode { model = "m", input = "again?", previous_response_id = second.id })
    fd.prepare(third, a)
    local roles = {}
    for i, msg in ipairs(third.messages) do roles[i] = msg.role end
    assert.same({ "user", "assistant", "user", "assistant", "user" }, roles)
    assert.equal("Ada", third.messages[4].content[1].text)
  end)

  it("says an unknown previous_response_id in OpenAI's words, unless the upstream may hold it", function()
    local a = app()
    local creq = assert(decode { model = "m", input = "x", previous_response_id = "resp_gone" })
    assert.is_nil(fd.prepare(creq, a))
    assert.is_nil(creq.on_complete) -- the chain, if any, lives upstream
    local err = fd.accepts(creq, route("openai"))
    assert.equal(404, err.status)
    assert.equal("previous_response_not_found", err.code)
    assert.equal("previous_response_id", err.param)
    assert.equal("Previous response with id 'resp_gone' not found.", err.message)
    assert.is_nil(fd.accepts(creq, route("responses")))
  end)

  it("keeps nothing with store: false, and nothing without a store", function()
    local a = app()
    local r = turn(a, { model = "m", input = "x", store = false })
    assert.is_false(r.store)
    assert.is_nil(a.store:get(r.id))
    local creq = assert(decode { model = "m", input = "x", previous_response_id = "resp_1" })
    assert.is_nil(fd.prepare(creq, {}))
    assert.is_nil(creq.on_complete)
    assert.is_nil(fd.accepts(creq, route("anthropic")))
  end)

  it("keeps no failed response", function()
    local a = app()
    local creq = assert(decode { model = "m", input = "x", stream = true })
    fd.prepare(creq, a)
    local enc = fd.stream_encoder(creq, { id = "resp_failed" })
    enc:event({ type = "text_delta", text = "a" })
    enc:error({ status = 500, message = "boom" })
    assert.is_nil(a.store:get("resp_failed"))
  end)

  it("stores a passthrough's own response object (text or table)", function()
    local a = app()
    local creq = assert(decode { model = "m", input = "hello" })
    fd.prepare(creq, a)
    creq.on_complete('{"id":"resp_up","object":"response","status":"completed","output":[' ..
      '{"type":"reasoning","id":"rs_u","summary":[]},' ..
      '{"type":"message","role":"assistant","content":[{"type":"output_text","text":"yo","annotations":[]}]}]}')
    local next_ = assert(decode { model = "m", input = "more", previous_response_id = "resp_up" })
    fd.prepare(next_, a)
    assert.same({ "user", "assistant", "user" }, { next_.messages[1].role, next_.messages[2].role, next_.messages[3].role })
    -- the upstream's bytes as they came: an empty list stays []
    assert.truthy(next_.raw_body:find('{"type":"reasoning","id":"rs_u","summary":[]}', 1, true))
    assert.truthy(next_.raw_body:find('"annotations":[]', 1, true))
  end)

  it("stores what a passthrough's stream ends with", function()
    local a = app()
    local creq = assert(decode { model = "m", input = "hello", stream = true })
    fd.prepare(creq, a)
    fd.on_raw(creq, { type = "raw", event = "response.output_text.delta", data = '{"type":"response.output_text.delta","delta":"x"}' })
    assert.is_nil(a.store:get("resp_s"))
    fd.on_raw(creq, { type = "raw", data = '{"type":"response.completed","sequence_number":9,"response":' ..
      '{"id":"resp_s","object":"response","status":"completed","output":[{"type":"reasoning","id":"rs_1","summary":[]}]}}' })
    local text = a.store:get("resp_s")
    assert.truthy(text)
    assert.truthy(text:find('"output":[{"type":"reasoning","id":"rs_1","summary":[]}]', 1, true))
    -- a whole answer, and a failed one (not kept)
    fd.on_raw(creq, { type = "raw_body", body = '{"id":"resp_b","object":"response","status":"completed","output":[]}' })
    assert.truthy(a.store:get("resp_b"))
    fd.on_raw(creq, { type = "raw", event = "response.failed", data = '{"type":"response.failed","response":{"id":"resp_f","status":"failed"}}' })
    assert.is_nil(a.store:get("resp_f"))
  end)

  -- the GET and DELETE routes, with moongate.http stood in for
  local function with_http(fn)
    local saved = package.loaded["moongate.http"]
    local said = {}
    package.loaded["moongate.http"] = {
      json = function(_, status, value) said[#said + 1] = { status = status, value = value } end,
      error = function(_, client, err) said[#said + 1] = { status = err.status, client = client, err = err } end,
    }
    local ok, e = pcall(fn, said)
    package.loaded["moongate.http"] = saved
    assert(ok, e)
  end

  it("answers GET and DELETE /v1/responses/{id}", function()
    local a = app()
    local r = turn(a, { model = "m", input = "x" })
    local get, del = fd.routes["GET /v1/responses/*"], fd.routes["DELETE /v1/responses/*"]
    with_http(function(said)
      get(a, {}, "/v1/responses/" .. r.id, r.id)
      assert.equal(200, said[1].status)
      local got = json.decode(said[1].value)
      assert.equal(r.id, got.id)
      assert.equal("ok", got.output[1].content[1].text)
      del(a, {}, "/v1/responses/" .. r.id, r.id)
      assert.same({ id = r.id, object = "response.deleted", deleted = true }, said[2].value)
      get(a, {}, "/v1/responses/" .. r.id, r.id)
      assert.equal(404, said[3].status)
      assert.equal("responses", said[3].client)
      assert.equal("Response with id '" .. r.id .. "' not found.", said[3].err.message)
      del(a, {}, "/v1/responses/" .. r.id, r.id)
      assert.equal(404, said[4].status)
      get({}, {}, "/v1/responses/x", "x") -- no store at all
      assert.equal(404, said[5].status)
    end)
  end)
end)
