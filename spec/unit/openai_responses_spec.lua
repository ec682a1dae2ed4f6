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

  -- every adapter ends a cut-off call with toolcall_end before done
  local call = { { type = "toolcall_start", index = 0, id = "c1", name = "f" },
    { type = "toolcall_delta", index = 0, arguments = '{"a":' }, { type = "toolcall_end", index = 0 } }
  local function with(list, more)
    local out = {}
    for _, e in ipairs(list) do out[#out + 1] = e end
    for _, e in ipairs(more) do out[#out + 1] = e end
    return out
  end

  it("ends the call an answer was cut off in incomplete, though the upstream ended it", function()
    local creq = assert(decode { model = "m", input = "x", stream = true })
    local evs = with(call, { { type = "usage", input_tokens = 1, output_tokens = 16 }, { type = "done", reason = "length" } })
    local col = fd.collector(creq)
    for _, e in ipairs(evs) do col:event(e) end
    local r = col:result()
    assert.equal("incomplete", r.status)
    assert.same({ "function_call", "incomplete", '{"a":' }, { r.output[1].type, r.output[1].status, r.output[1].arguments })
    -- the stream says it so in the item's output_item.done, one of them
    local frames = run(creq, evs)
    check_stream(frames)
    local done = {}
    for _, f in ipairs(frames) do
      if f.event == "response.output_item.done" then done[#done + 1] = json.decode(f.data).item end
    end
    assert.equal(1, #done)
    assert.equal("incomplete", done[1].status)
    assert.equal('{"a":', done[1].arguments)
  end)

  it("keeps a call that another item followed completed in a cut-off answer", function()
    local creq = assert(decode { model = "m", input = "x" })
    local col = fd.collector(creq)
    for _, e in ipairs(with(call, { { type = "toolcall_delta", index = 0, arguments = "late" },
      { type = "text_delta", text = "and" }, { type = "done", reason = "length" } })) do col:event(e) end
    local r = col:result()
    assert.same({ "completed", '{"a":' }, { r.output[1].status, r.output[1].arguments })
    assert.same({ "message", "incomplete" }, { r.output[2].type, r.output[2].status })
    -- and a whole answer's call is completed
    col = fd.collector(creq)
    for _, e in ipairs(with(call, { { type = "done", reason = "tool_use" } })) do col:event(e) end
    assert.equal("completed", col:result().output[1].status)
  end)

  it("says a whole call done before the failure that ends a stream", function()
    local creq = assert(decode { model = "m", input = "x", stream = true })
    local frames = run(creq, with(call, { { type = "error", status = 502, message = "gone" } }))
    check_stream(frames)
    local d = json.decode(frames[#frames - 1].data)
    assert.equal("response.output_item.done", d.type)
    assert.same({ "completed", '{"a":' }, { d.item.status, d.item.arguments })
    local failed = json.decode(frames[#frames].data)
    assert.equal("response.failed", failed.type)
    assert.equal("completed", failed.response.output[1].status)
  end)

  it("says content_filter as the incomplete reason", function()
    local col = fd.collector(assert(decode { model = "m", input = "x" }))
    col:event({ type = "done", reason = "content_filter" })
    assert.same({ reason = "content_filter" }, col:result().incomplete_details)
  end)
end)

describe("openai_responses errors", function()
  it("tells a prompt too long in the Responses API's words, in OpenAI's error object", function()
    local e = errors.context_error(fd.client, { tokens = 130512, max = 128000 })
    assert.same({ 400, "context_length_exceeded", "input", "invalid_request_error" }, { e.status, e.code, e.param, e.type })
    assert.matches("^Your input exceeds the context window of this model%. Please adjust your input and try again%.", e.message)
    assert.matches("128000 tokens; your input has 130512 tokens", e.message, 1, true)
    assert.not_matches("messages", e.message, 1, true)
    local body = json.decode(errors.body(fd.client, e))
    assert.same({ error = { message = e.message, type = "invalid_request_error", param = "input", code = "context_length_exceeded" } }, body)
    -- a chat API's overflow is said again; a Responses upstream's own stays
    assert.is_false(errors.says_overflow(fd.client, { code = "context_length_exceeded", param = "messages" }))
    assert.is_true(errors.says_overflow(fd.client, { code = "context_length_exceeded", param = "input" }))
    -- chat clients keep their own words
    assert.equal("messages", errors.context_error("openai", { tokens = 2, max = 1 }).param)
  end)

  it("writes its other errors as OpenAI's object, nulls included", function()
    local body = json.decode(errors.body(fd.client, errors.new(404, "gone")))
    assert.same({ error = { message = "gone", type = "invalid_request_error", param = json.null, code = json.null } }, body)
    body = json.decode(errors.body(fd.client, errors.new(429, "slow", { code = "rate_limit_exceeded" })))
    assert.same({ "rate_limit_error", "rate_limit_exceeded" }, { body.error.type, body.error.code })
  end)
end)

describe("openai_responses.decode", function()
  local cases = {
    { "empty body", "", 400, nil, "could not parse" },
    { "malformed JSON", "{nope", 400, nil, "could not parse" },
    { "not an object", "[1]", 400, nil, "expected a JSON object" },
    { "an empty array", " [] ", 400, nil, "expected a JSON object, got an array." },
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

  it("refuses a body that is an empty array at every OpenAI door, and takes {}'s missing model", function()
    for _, name in ipairs { "openai_chat", "openai_completions", "openai_embeddings", "openai_responses" } do
      local door = require("moongate.frontdoor." .. name)
      local creq, err = door.decode("[]", {})
      assert.is_nil(creq, name)
      assert.equal("We could not parse the JSON body of your request: expected a JSON object, got an array.", err.message, name)
      creq, err = door.decode("{}", {})
      assert.is_nil(creq, name)
      assert.equal("model", err.param, name)
    end
  end)

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
-- the store as the door keeps a keyless client's entries (under "-~")
local function keyless(a)
  return { get = function(_, id) return a.store:get("-~" .. id) end,
    delete = function(_, id) return a.store:delete("-~" .. id) end,
    put = function(_, id, text) return a.store:put("-~" .. id, text) end }
end
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
    assert.truthy(keyless(a):get(first.id))
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
    -- and the next turn's entry names this one: the chain goes on
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

  -- n turns, each continuing the one before: the ids, oldest first
  local function conversation(a, n, first_prev)
    local ids, prev = {}, first_prev
    for i = 1, n do
      local r = assert(turn(a, { model = "m", input = "q" .. i, previous_response_id = prev },
        { { type = "text_delta", text = "a" .. i }, { type = "done", reason = "stop" } }))
      ids[i], prev = r.id, r.id
    end
    return ids
  end

  it("keeps one turn an entry: a long conversation's entries do not grow with it", function()
    local a = app()
    local ids = conversation(a, 40)
    local sizes = {}
    for i = 1, 40 do sizes[i] = #assert(keyless(a):get(ids[i])) end
    -- an entry of the 40th turn is about the size of the 2nd's (ids and
    -- numbers a few bytes longer), not 20 times it
    assert.is_true(sizes[40] < sizes[2] + 64, sizes[2] .. " then " .. sizes[40])
    local entry = json.decode(keyless(a):get(ids[40]))
    assert.equal(ids[39], entry.previous)
    assert.same({ { role = "user", content = "q40" } }, entry.input)
    assert.equal(ids[40], entry.response.id)
    assert.equal(json.null, json.decode(keyless(a):get(ids[1])).previous)
    -- the next turn still gets the whole conversation, oldest first, the
    -- bytes as they were sent
    local creq = assert(decode { model = "m", input = "q41", previous_response_id = ids[40] })
    assert.is_nil(fd.prepare(creq, a))
    assert.equal(81, #creq.messages)
    for i = 1, 40 do
      assert.equal("q" .. i, creq.messages[2 * i - 1].content[1].text)
      assert.equal("a" .. i, creq.messages[2 * i].content[1].text)
    end
    local input = json.decode(creq.raw_body).input
    assert.equal(81, #input)
    assert.same({ role = "user", content = "q1" }, input[1])
    assert.equal("a40", input[80].content[1].text)
    assert.equal("q41", input[81].content)
  end)

  it("walks the chain back, each turn it reads becoming recently used", function()
    local a = { store = store.memory(4, 1e6) }
    local ids = conversation(a, 3)
    local other = turn(a, { model = "m", input = "unrelated" }).id
    -- the store is full, the conversation's first turn its least recently
    -- used: the walk makes the other the one to go
    conversation(a, 1, ids[3])
    assert.is_nil(keyless(a):get(other))
    for i = 1, 3 do assert.truthy(keyless(a):get(ids[i]), "turn " .. i .. " evicted") end
  end)

  it("keeps each client's responses to itself: another key finds nothing", function()
    local a = app()
    local mine = { authorization = "Bearer sk-mine" }
    local creq = assert(fd.decode(json.encode { model = "m", input = "hi" }, mine))
    assert.is_nil(fd.prepare(creq, a))
    local col = fd.collector(creq)
    col:event({ type = "text_delta", text = "hello" })
    col:event({ type = "done", reason = "stop" })
    local id = col:result().id
    -- the same key continues it; another key, or none, does not see it
    local again = assert(fd.decode(json.encode { model = "m", input = "more", previous_response_id = id }, mine))
    assert.is_nil(fd.prepare(again, a))
    assert.is_true(rawget(again, "expanded"))
    for _, h in ipairs { { authorization = "Bearer sk-other" }, { ["x-api-key"] = "sk-other" }, {} } do
      local other = assert(fd.decode(json.encode { model = "m", input = "more", previous_response_id = id }, h))
      assert.is_nil(fd.prepare(other, a))
      assert.is_nil(rawget(other, "expanded"))
      assert.equal(404, fd.accepts(other, route("anthropic")).status)
    end
    -- the key is not in the store's ids, only a hash of it
    assert.is_nil(fd._owner("sk-mine"):find("sk-mine", 1, true))
    assert.not_equal(fd._owner("sk-mine"), fd._owner("sk-other"))
    assert.equal("-~", fd._owner(nil)) -- no key: a space no key's hash can name
    assert.equal("-~", fd._owner(""))
  end)

  it("says so when part of the conversation is no longer stored, to every upstream (the gateway made it)", function()
    local a = app()
    local ids = conversation(a, 3)
    assert.is_true(keyless(a):delete(ids[2]))
    local body = json.encode { model = "m", input = "more", previous_response_id = ids[3] }
    local creq = assert(fd.decode(body, {}))
    assert.is_nil(fd.prepare(creq, a))
    assert.is_nil(rawget(creq, "expanded"))
    assert.is_nil(rawget(creq, "history"))
    assert.equal(body, creq.raw_body) -- the id goes on as it came
    local err = fd.accepts(creq, route("anthropic"))
    assert.same({ 404, "previous_response_not_found", "previous_response_id" }, { err.status, err.code, err.param })
    assert.matches("part of its conversation (response '" .. ids[2] .. "') is no longer stored", err.message, 1, true)
    assert.equal(err, fd.accepts(creq, route("responses"))) -- the gateway's id: not the upstream's to judge
    -- a translation refuses it too, by name
    local ok, ferr = errors.catch(canonical.foreign_fields, creq, "anthropic")
    assert.is_false(ok)
    assert.equal("previous_response_id", ferr.param)
    -- the turn is still kept, naming the one it continued
    local col = fd.collector(creq)
    col:event({ type = "done", reason = "stop" })
    assert.equal(ids[3], json.decode(keyless(a):get(col:result().id)).previous)
  end)

  it("stops at a loop and at MAX_CHAIN", function()
    local a = app()
    local function put(id, prev)
      assert(keyless(a):put(id, '{"response":{"id":"' .. id .. '"},"previous":"' .. prev .. '","input":[],"output":[]}'))
    end
    put("resp_a", "resp_b")
    put("resp_b", "resp_a")
    local creq = assert(decode { model = "m", input = "x", previous_response_id = "resp_a" })
    assert.is_nil(fd.prepare(creq, a))
    local err = fd.accepts(creq, route("anthropic"))
    assert.equal(404, err.status)
    assert.matches("name each other in a loop", err.message, 1, true)
    local ids = conversation(a, 4)
    local saved = fd.MAX_CHAIN
    fd.MAX_CHAIN = 3
    local ok, e = pcall(function()
      local long = assert(decode { model = "m", input = "x", previous_response_id = ids[4] })
      assert.is_nil(fd.prepare(long, a))
      assert.matches("longer than the 3 responses", fd.accepts(long, route("openai")).message, 1, true)
      local short = assert(decode { model = "m", input = "x", previous_response_id = ids[3] })
      assert.is_nil(fd.prepare(short, a))
      assert.is_true(short.expanded)
    end)
    fd.MAX_CHAIN = saved
    assert(ok, e)
  end)

  it("keeps nothing, and breaks nothing, when the store refuses the entry", function()
    for _, a in ipairs { { store = store.memory(100, 300) }, { store = store.memory(0, 1e6) } } do
      local r = assert(turn(a, { model = "m", input = string.rep("long ", 100) }))
      assert.equal("completed", r.status)
      assert.equal("ok", r.output[1].content[1].text)
      assert.is_nil(keyless(a):get(r.id))
      local creq = assert(decode { model = "m", input = "x", previous_response_id = r.id })
      assert.is_nil(fd.prepare(creq, a))
      assert.equal("Previous response with id '" .. r.id .. "' not found.", fd.accepts(creq, route("anthropic")).message)
    end
  end)

  it("keeps no answer under an id of its own conversation", function()
    local a = app()
    local creq = assert(decode { model = "m", input = "hello" })
    fd.prepare(creq, a)
    creq.on_complete('{"id":"resp_up","object":"response","status":"completed","output":[]}')
    local next_ = assert(decode { model = "m", input = "more", previous_response_id = "resp_up" })
    fd.prepare(next_, a)
    -- an upstream that answers under the same id again
    next_.on_complete('{"id":"resp_up","object":"response","status":"completed","output":[{"type":"message"}]}')
    local entry = json.decode(keyless(a):get("resp_up"))
    assert.equal(json.null, entry.previous)
    assert.same({ { role = "user", content = "hello" } }, entry.input)
  end)

  it("says an unknown previous_response_id in OpenAI's words, unless the upstream may hold it", function()
    local a = app()
    local creq = assert(decode { model = "m", input = "x", previous_response_id = "resp_gone" })
    assert.is_nil(fd.prepare(creq, a))
    -- the chain, if any, lives upstream; this turn is kept naming it
    assert.is_function(creq.on_complete)
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
    assert.is_nil(keyless(a):get(r.id))
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
    assert.is_nil(keyless(a):get("resp_failed"))
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
    assert.is_nil(keyless(a):get("resp_s"))
    fd.on_raw(creq, { type = "raw", data = '{"type":"response.completed","sequence_number":9,"response":' ..
      '{"id":"resp_s","object":"response","status":"completed","output":[{"type":"reasoning","id":"rs_1","summary":[]}]}}' })
    local text = keyless(a):get("resp_s")
    assert.truthy(text)
    assert.truthy(text:find('"output":[{"type":"reasoning","id":"rs_1","summary":[]}]', 1, true))
    -- a whole answer, and a failed one (not kept)
    fd.on_raw(creq, { type = "raw_body", body = '{"id":"resp_b","object":"response","status":"completed","output":[]}' })
    assert.truthy(keyless(a):get("resp_b"))
    fd.on_raw(creq, { type = "raw", event = "response.failed", data = '{"type":"response.failed","response":{"id":"resp_f","status":"failed"}}' })
    assert.is_nil(keyless(a):get("resp_f"))
  end)

  -- the GET and DELETE routes, with the app's answer writer (app.http) stood in for
  local function with_http(fn)
    local said = {}
    local writer = {
      json = function(_, status, value) said[#said + 1] = { status = status, value = value } end,
      error = function(_, client, err) said[#said + 1] = { status = err.status, client = client, err = err } end,
    }
    fn(said, writer)
  end

  it("answers GET and DELETE /v1/responses/{id}", function()
    local a = app()
    local r = turn(a, { model = "m", input = "x" })
    local get, del = fd.routes["GET /v1/responses/*"], fd.routes["DELETE /v1/responses/*"]
    with_http(function(said, writer)
      a.http = writer
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
      get({ http = writer }, {}, "/v1/responses/x", "x") -- no store at all
      assert.equal(404, said[5].status)
    end)
  end)

  it("reads a percent-encoded id, and quotes at most 300 bytes of an unknown one", function()
    local a = app()
    local creq = assert(decode { model = "m", input = "x" })
    fd.prepare(creq, a)
    creq.on_complete('{"id":"org/resp 1","object":"response","status":"completed","output":[]}')
    local get, del = fd.routes["GET /v1/responses/*"], fd.routes["DELETE /v1/responses/*"]
    with_http(function(said, writer)
      a.http = writer
      get(a, {}, "/v1/responses/org%2Fresp%201", "org%2Fresp%201")
      assert.equal(200, said[1].status)
      assert.equal("org/resp 1", json.decode(said[1].value).id)
      del(a, {}, "/v1/responses/org%2fresp%201", "org%2fresp%201")
      assert.same({ id = "org/resp 1", object = "response.deleted", deleted = true }, said[2].value)
      local long = "resp_%0A" .. string.rep("z", 5000)
      get(a, {}, "/v1/responses/" .. long, long)
      assert.equal(404, said[3].status)
      assert.equal("Response with id 'resp_\\x0a" .. string.rep("z", 294) .. "...' not found.", said[3].err.message)
      del(a, {}, "/v1/responses/" .. long, long)
      assert.equal(said[3].err.message, said[4].err.message)
    end)
    -- and of a previous_response_id
    local long = assert(decode { model = "m", input = "x", previous_response_id = string.rep("\1", 1000) })
    fd.prepare(long, a)
    local err = fd.accepts(long, route("anthropic"))
    assert.equal("Previous response with id '" .. string.rep("\\x01", 300) .. "...' not found.", err.message)
  end)
end)
