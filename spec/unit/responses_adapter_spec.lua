-- The Responses upstream adapter (lua/moongate/adapters/openai_responses.lua)
-- against its fixtures (spec/fixtures/adapter/openai_responses/<case>/, the
-- same files spec/unit/fixtures_spec.lua reads), and what the fixtures do
-- not say: a Responses client's own fields, whole items, the byte-for-byte
-- reasoning, and how providers/upstream.lua picks, passes through and
-- forwards for this format. No daemon: core._fetch is stood in for.
local json = require "moongate.json"
local errors = require "moongate.errors"
local fx = require "support.fixtures"
local A = require "moongate.adapters.openai_responses"

local DIR = "spec/fixtures/adapter/openai_responses/"

-- what JSON says of a wire table, written as the provider writes it
-- (encode_raw: an empty list stays [])
local function plain(v) return json.decode(json.encode_raw(v)) end

local function user(text) return { role = "user", content = { { type = "text", text = text } } } end

-- the events of a list of frames ({event, json} or {data}) through a decoder
local function run(frames, creq)
  local dec, out = A.decoder(creq), {}
  for _, f in ipairs(frames) do
    local data = f.data or json.encode(f.json)
    for _, e in ipairs(dec:frame(data, f.event or (f.json and f.json.type))) do out[#out + 1] = e end
  end
  for _, e in ipairs(dec:finish()) do out[#out + 1] = e end
  return out
end

local function types(events)
  local t = {}
  for i, e in ipairs(events) do t[i] = e.type end
  return t
end

describe("Responses adapter fixtures", function()
  local cases = fx.list(DIR)
  it("has the cases the brief lists", function()
    assert.is_true(#cases >= 14)
  end)
  -- (spec/unit/fixtures_spec.lua runs each case; here, what holds for all)
  for _, case in ipairs(cases) do
    local dir = DIR .. case .. "/"
    it(case .. ": stateless toward the upstream", function()
      local creq = fx.read(dir .. "canonical.json")
      -- a Responses client here is one whose request is translated (packed
      -- reasoning, passthrough = false): its tools carry their raw form
      if creq.client == "responses" then
        for _, t in ipairs(creq.tools or {}) do assert.is_table(t.raw) end
      end
      creq.upstream_model = creq.upstream_model or creq.model
      local ok, wire = errors.catch(A.request, creq, fx.maybe(dir .. "conf.json", {}))
      if fx.exists(dir .. "error.json") then return assert.is_false(ok) end
      assert(ok, wire and wire.message)
      assert.is_false(wire.store)
      assert.same({ "reasoning.encrypted_content" }, wire.include)
      if fx.exists(dir .. "upstream.json") then -- the events come in the order the fixture says
        local got = fx.upstream_events(A, fx.read(dir .. "upstream.json"), creq)
        assert.same(types(fx.read(dir .. "events.json")), types(got))
      end
    end)
  end
end)

describe("Responses adapter requests", function()
  it("hands a reasoning item back byte for byte, [] for a summary with no text", function()
    local enc = 'gAAAAABo\\"/+=~odd bytes\1\127'
    local creq = { client = "openai", model = "m", messages = { user("a"),
      { role = "assistant", content = {
        { type = "thinking", text = "", signature = enc, origin = "responses", item_id = "rs_x" },
        { type = "tool_call", id = "c1", name = "f", arguments = "{}" } } },
      { role = "tool", content = { { type = "tool_result", tool_call_id = "c1", content = "ok" } } } } }
    local text = json.encode_raw(A.request(creq, {}))
    assert.truthy(text:find('"summary":[]', 1, true))
    local item = json.decode(text).input[2]
    assert.equal("reasoning", item.type)
    assert.equal("rs_x", item.id)
    assert.equal(enc, item.encrypted_content)
    assert.equal("function_call", json.decode(text).input[3].type)
  end)

  it("drops a Responses thinking block that lost its encrypted content", function()
    local creq = { client = "anthropic", model = "m", messages = { user("a"),
      { role = "assistant", content = { { type = "thinking", text = "t", origin = "responses", item_id = "rs_1" },
        { type = "text", text = "b" } } } } }
    local wire = A.request(creq, {})
    assert.equal(2, #wire.input)
    assert.same({ "thinking without its encrypted reasoning" }, creq.dropped)
  end)

  it("says strict outright: false for a schema outside the strict subset, true for one inside", function()
    local open = { type = "object", properties = { a = { type = "string" } } }
    local closed = { type = "object", properties = { a = { type = "string" } }, required = { "a" }, additionalProperties = false }
    local creq = { client = "anthropic", model = "m", messages = { user("x") }, tools = {
      { name = "plain", parameters = open },
      { name = "wants_strict", parameters = open, strict = true },
      { name = "is_strict", parameters = closed, strict = true } } }
    local tools = A.request(creq, {}).tools
    assert.is_false(tools[1].strict)
    assert.is_false(tools[2].strict)
    assert.is_true(tools[3].strict)
    assert.same({ "strict (the schema of tool wants_strict is not in OpenAI's strict subset)" }, creq.dropped)
  end)

  it("drops Anthropic server tools and maps tool choices", function()
    local creq = { client = "anthropic", model = "m", messages = { user("x") },
      tools = { { name = "web_search", server = true, raw = { type = "web_search_20250305", name = "web_search" } },
        { name = "f", parameters = { type = "object" } } },
      tool_choice = { type = "tool", name = "f" } }
    local wire = A.request(creq, {})
    assert.equal(1, #wire.tools)
    assert.same({ type = "function", name = "f" }, wire.tool_choice)
    creq.tool_choice, creq.dropped = { type = "any" }, nil
    assert.equal("required", A.request(creq, {}).tool_choice)
  end)

  it("copies a Responses client's own fields, tools and include values, never previous_response_id", function()
    local raw = { model = "m", input = "x", previous_response_id = "resp_old", prompt_cache_key = "k1",
      service_tier = "flex", include = { "reasoning.encrypted_content", "message.output_text.logprobs" },
      reasoning = { summary = "detailed", generate_summary = "auto" }, text = { verbosity = "low" },
      tools = { { type = "function", name = "f", parameters = { type = "object", properties = {} } },
        { type = "web_search" } } }
    local creq = { client = "responses", expanded = true, model = "m", raw = raw, messages = { user("x") },
      reasoning = { effort = "low" }, format = { type = "json_object" },
      tools = { { name = "f", parameters = raw.tools[1].parameters, raw = raw.tools[1] },
        { name = "web_search", native = "web_search", raw = raw.tools[2] } },
      tool_choice = { type = "native", format = "responses", raw = { type = "web_search" } } }
    local wire = A.request(creq, {})
    assert.is_nil(wire.previous_response_id)
    assert.equal("k1", wire.prompt_cache_key)
    assert.equal("flex", wire.service_tier)
    assert.same({ "reasoning.encrypted_content", "message.output_text.logprobs" }, wire.include)
    assert.same({ effort = "low", summary = "detailed", generate_summary = "auto" }, wire.reasoning)
    assert.same({ format = { type = "json_object" }, verbosity = "low" }, wire.text)
    assert.same({ type = "web_search" }, wire.tools[2])
    assert.same({ type = "web_search" }, wire.tool_choice)
    assert.is_false(wire.store)
    -- a Responses client's own items, as they came
    creq.messages = { { role = "assistant", content = { { type = "native", format = "responses",
      block = { type = "custom_tool_call", call_id = "c", name = "g", input = "x" } } } } }
    assert.same({ type = "custom_tool_call", call_id = "c", name = "g", input = "x" }, A.request(creq, {}).input[1])
  end)

  -- a Responses client's request, translated (packed reasoning in it, or
  -- passthrough = false): what only this API knows keeps its shape
  describe("a Responses client, translated", function()
    local ns_raw = { type = "namespace", name = "fs", description = "Files.", tools = {
      { type = "function", name = "read", parameters = { type = "object", properties = {}, required = {} } },
      { type = "custom", name = "patch" } } }
    local function responses_creq(input)
      local raw = { model = "m", input = input, tools = { { type = "function", name = "top" }, ns_raw,
        { type = "web_search" } }, tool_choice = { type = "custom", name = "patch" } }
      return { client = "responses", model = "m", raw = raw,
        messages = { user("x"),
          { role = "assistant", content = {
            { type = "tool_call", id = "c_read", name = "read", arguments = "{}" },
            { type = "tool_call", id = "c_patch", name = "patch", arguments = '{"input":"diff"}' } } },
          { role = "tool", content = { { type = "tool_result", tool_call_id = "c_read", content = "r" } } },
          { role = "tool", content = { { type = "tool_result", tool_call_id = "c_patch", content = "p" } } } },
        tools = { { name = "top", raw = raw.tools[1] },
          { name = "read", parameters = ns_raw.tools[1].parameters, namespace = "fs", raw = ns_raw.tools[1] },
          { name = "patch", custom = true, namespace = "fs", raw = ns_raw.tools[2] },
          { name = "web_search", native = "web_search", hosted = true, raw = raw.tools[3] } },
        tool_choice = { type = "tool", name = "patch" } }
    end

    it("sends a namespace's tools grouped as the client sent them, its calls with their namespace", function()
      local creq = responses_creq({ { type = "function_call", call_id = "c_read", name = "read", namespace = "fs" } })
      local wire = plain(A.request(creq, {}))
      assert.equal(3, #wire.tools)
      assert.same({ type = "function", name = "top" }, wire.tools[1])
      assert.same({ type = "namespace", name = "fs", description = "Files.", tools = {
        { type = "function", name = "read", parameters = { type = "object", properties = {}, required = {} } },
        { type = "custom", name = "patch" } } }, wire.tools[2])
      assert.same({ type = "web_search" }, wire.tools[3])
      assert.same({ type = "function_call", call_id = "c_read", name = "read", arguments = "{}", namespace = "fs" }, wire.input[2])
      assert.same({ type = "custom_tool_call", call_id = "c_patch", name = "patch", input = "diff", namespace = "fs" }, wire.input[3])
      assert.same({ type = "function_call_output", call_id = "c_read", output = "r" }, wire.input[4])
      assert.same({ type = "custom_tool_call_output", call_id = "c_patch", output = "p" }, wire.input[5])
      -- the client's own choice, custom as it came
      assert.same({ type = "custom", name = "patch" }, wire.tool_choice)
    end)

    it("takes a call's namespace from the client's own item when two namespaces share a name", function()
      local creq = responses_creq({ { type = "function_call", call_id = "c_read", name = "read", namespace = "other" } })
      assert.equal("other", plain(A.request(creq, {})).input[2].namespace)
    end)

    it("names no namespace for another client, and says custom for a custom tool's choice", function()
      local creq = responses_creq()
      creq.client, creq.raw = "openai", nil
      creq.tools = { { name = "patch", custom = true, namespace = "fs" } }
      local wire = plain(A.request(creq, {}))
      assert.is_nil(wire.input[2].namespace)
      assert.equal("custom_tool_call", wire.input[3].type)
      assert.same({ type = "custom", name = "patch" }, wire.tool_choice)
    end)

    it("keeps a custom call's input that is not the wrapped form as it is", function()
      local creq = responses_creq()
      creq.messages[2].content[2].arguments = "raw text"
      assert.equal("raw text", A.request(creq, {}).input[3].input)
    end)
  end)

  it("round trip: the Responses door's custom tool and its calls, translated, and a custom call answered", function()
    local door = require "moongate.frontdoor.openai_responses"
    local body = json.encode({ model = "m", tools = { { type = "custom", name = "patch", description = "Edit." } },
      tool_choice = { type = "custom", name = "patch" },
      input = { { role = "user", content = "x" },
        { type = "reasoning", id = "rs_1", summary = {}, encrypted_content = "mg1~anthropic~~c2ln" },
        { type = "custom_tool_call", call_id = "c1", name = "patch", input = "a/b" },
        { type = "custom_tool_call_output", call_id = "c1", output = "ok" } } })
    local creq = assert(door.decode(body, {}))
    local wire = plain(A.request(creq, {}))
    assert.same({ { type = "custom", name = "patch", description = "Edit." } }, wire.tools)
    assert.same({ type = "custom", name = "patch" }, wire.tool_choice)
    assert.same({ type = "custom_tool_call", call_id = "c1", name = "patch", input = "a/b" }, wire.input[2])
    assert.same({ type = "custom_tool_call_output", call_id = "c1", output = "ok" }, wire.input[3])
    local col = door.collector(creq, { id = "resp_1", created = 1 })
    for _, ev in ipairs(A.response({ id = "u", model = "m", status = "completed", output = {
      { type = "custom_tool_call", id = "ctc_u", call_id = "c2", name = "patch", input = "line1\nline2" } } }, creq)) do
      col:event(ev)
    end
    local out = col:result().output
    assert.equal(1, #out)
    assert.same({ "custom_tool_call", "c2", "patch", "line1\nline2" }, { out[1].type, out[1].call_id, out[1].name, out[1].input })
  end)

  it("words a chat client's refused fields for any upstream, not as Anthropic's", function()
    local chat = require "moongate.frontdoor.openai_chat"
    local canonical = require "moongate.canonical"
    for _, field in ipairs { '"logit_bias":{"1":2}', '"audio":{"voice":"x","format":"mp3"}', '"web_search_options":{}' } do
      local creq = assert(chat.decode('{"model":"m","messages":[{"role":"user","content":"x"}],' .. field .. "}", {}))
      local ok, err = errors.catch(canonical.foreign_fields, creq, "responses")
      assert.is_false(ok)
      assert.is_nil(err.message:find("Anthropic", 1, true), err.message)
      assert.truthy(err.message:find("another format", 1, true), err.message)
    end
  end)

  it("refuses another format's native tool choice", function()
    local creq = { client = "openai", model = "m", messages = { user("x") }, tools = { { name = "f" } },
      tool_choice = { type = "native", format = "openai", raw = { type = "allowed_tools" }, kind = "allowed_tools" } }
    local ok, err = errors.catch(A.request, creq, {})
    assert.is_false(ok)
    assert.equal("tool_choice", err.param)
  end)

  it("effort_fields: the whole reasoning value, with the client's other reasoning keys", function()
    local f = A.effort_fields({ reasoning = { effort = "max" }, raw = { reasoning = { summary = "auto" } } },
      { efforts = { "low", "high" } })
    assert.same({ effort = "high", summary = "auto" }, json.decode(f.reasoning))
    assert.same({ effort = "low" }, json.decode(A.effort_fields({ reasoning = { effort = "low" }, raw = {} }).reasoning))
  end)

  it("sends no effort the upstream was not asked for, and no summary with effort none", function()
    assert.is_nil(A.request({ client = "openai", model = "m", messages = { user("x") } }, {}).reasoning)
    assert.same({ effort = "none" }, A.request({ client = "openai", model = "m", messages = { user("x") },
      reasoning = { effort = "none" } }, {}).reasoning)
  end)
end)

describe("Responses adapter answers", function()
  it("tells an item sent only whole (output_item.done, no deltas)", function()
    local events = run({
      { json = { type = "response.created", response = { id = "r", model = "m" } } },
      { json = { type = "response.output_item.done", output_index = 0, item = { type = "message", id = "msg",
        content = { { type = "output_text", text = "whole" } } } } },
      { json = { type = "response.output_item.added", output_index = 1,
        item = { type = "function_call", id = "fc", call_id = "c", name = "f", arguments = "" } } },
      { json = { type = "response.output_item.done", output_index = 1,
        item = { type = "function_call", id = "fc", call_id = "c", name = "f", arguments = '{"a":1}' } } },
      { json = { type = "response.completed", response = { id = "r", status = "completed" } } },
    })
    assert.same({ "start", "text_delta", "toolcall_start", "toolcall_delta", "toolcall_end", "done" }, types(events))
    assert.equal("whole", events[2].text)
    assert.equal('{"a":1}', events[4].arguments)
    assert.equal("tool_use", events[6].reason)
  end)

  it("ends a custom call cut short with the input so far, wrapped", function()
    local events = run({
      { json = { type = "response.created", response = { id = "r" } } },
      { json = { type = "response.output_item.added", output_index = 0,
        item = { type = "custom_tool_call", id = "ctc", call_id = "c", name = "patch", input = "" } } },
      { json = { type = "response.custom_tool_call_input.delta", item_id = "ctc", output_index = 0, delta = 'say "hi' } },
      { json = { type = "response.incomplete", response = { id = "r", incomplete_details = { reason = "max_output_tokens" } } } },
    })
    assert.same({ "start", "toolcall_start", "toolcall_delta", "toolcall_end", "done" }, types(events))
    assert.same({ input = 'say "hi' }, json.decode(events[3].arguments))
    assert.equal("length", events[5].reason)
  end)

  it("tells a custom call sent only whole, and one whose deltas came without the item's input", function()
    local events = run({
      { json = { type = "response.created", response = { id = "r" } } },
      { json = { type = "response.output_item.done", output_index = 0,
        item = { type = "custom_tool_call", id = "ctc", call_id = "c1", name = "patch", input = "a\nb" } } },
      { json = { type = "response.output_item.added", output_index = 1,
        item = { type = "custom_tool_call", id = "ctc2", call_id = "c2", name = "patch" } } },
      { json = { type = "response.custom_tool_call_input.delta", item_id = "ctc2", output_index = 1, delta = "x/" } },
      { json = { type = "response.custom_tool_call_input.delta", item_id = "ctc2", output_index = 1, delta = "y" } },
      { json = { type = "response.output_item.done", output_index = 1,
        item = { type = "custom_tool_call", id = "ctc2", call_id = "c2", name = "patch" } } },
      { json = { type = "response.completed", response = { id = "r", status = "completed" } } },
    })
    assert.same({ "start", "toolcall_start", "toolcall_delta", "toolcall_end", "toolcall_start", "toolcall_delta",
      "toolcall_end", "done" }, types(events))
    assert.same({ 0, "c1", "patch" }, { events[2].index, events[2].id, events[2].name })
    assert.equal("a\nb", json.decode(events[3].arguments).input)
    assert.equal(1, events[5].index)
    assert.equal('{"input":"x/y"}', events[6].arguments)
    assert.equal("tool_use", events[8].reason)
  end)

  it("tells the final response's output when no item came before it", function()
    local events = run({
      { json = { type = "response.completed", response = { id = "r", model = "m", status = "completed",
        output = { { type = "message", content = { { type = "output_text", text = "late" } } } } } } },
    })
    assert.same({ "start", "text_delta", "done" }, types(events))
  end)

  it("takes a refusal as text, the end as content_filter", function()
    local events = run({
      { json = { type = "response.created", response = { id = "r" } } },
      { json = { type = "response.refusal.delta", item_id = "m", delta = "I can't." } },
      { json = { type = "response.completed", response = { status = "completed" } } },
    })
    assert.equal("I can't.", events[2].text)
    assert.equal("content_filter", events[#events].reason)
  end)

  it("ignores a [DONE] some servers add, and still wants a terminal event", function()
    local events = run({ { json = { type = "response.created", response = {} } }, { data = "[DONE]" } })
    assert.same({ "start", "error" }, types(events))
  end)

  it("turns an error event into an error, retryable when the code says so", function()
    local events = run({ { event = "error", json = { type = "error", code = "rate_limit_exceeded", message = "slow down" } } })
    assert.same({ "error" }, types(events))
    assert.equal("slow down", events[1].message)
    assert.is_true(events[1].retryable)
  end)

  it("takes whole answers that did not complete", function()
    local ev = A.response({ id = "r", status = "incomplete", output = {},
      incomplete_details = { reason = "content_filter" } }, {})
    assert.equal("content_filter", ev[#ev].reason)
    ev = A.response({ id = "r", status = "failed", error = { code = "server_error", message = "boom" } }, {})
    assert.same({ "error" }, types(ev))
    assert.equal("boom", ev[1].message)
    assert.equal("error", A.response({ nothing = true }, {})[1].type)
  end)
end)

describe("providers/upstream.lua and the Responses format", function()
  local upstream = require "moongate.providers.upstream"
  local openai_kind = require "moongate.providers.openai"
  local core = require "moongate.core"

  it("passthrough ends a Responses stream at any of its terminal events, by name or by type", function()
    for _, case in ipairs {
      { '{"type":"response.completed"}', "response.completed" },
      { '{"type":"response.incomplete"}', "response.incomplete" },
      { '{"type":"response.failed"}', "response.failed" },
      { '{"type":"response.completed","response":{}}', nil },
      { '{"type":"error","message":"x"}', "error" },
    } do
      local d = upstream.passthrough(A.stream_end)
      assert.equal("raw", d:frame('{"type":"response.created"}', "response.created")[1].type)
      local evs = d:frame(case[1], case[2])
      if case[2] == "error" then -- a failure: the client's door writes response.failed, in its numbering
        assert.same({ type = "error", status = 502, passed = 1, upstream = true, message = "x" }, evs[1])
        assert.same({}, d:finish())
      else -- a terminal event ends the client's stream at once, whatever follows
        assert.equal("raw", evs[1].type)
        assert.same({ type = "done", passthrough = true }, evs[2])
        assert.same({}, d:finish())
      end
    end
    local d = upstream.passthrough(A.stream_end)
    d:frame('{"type":"response.output_text.delta","delta":"x"}', "response.output_text.delta")
    assert.same({}, d:frame("[DONE]")) -- not forwarded
    assert.equal("error", d:finish()[1].type)
    assert.is_true(d.pipe) -- C hands it the terminal events, the error event, and frames with no event line
    assert.same({ events = { "error", "response.completed", "response.failed", "response.incomplete" },
      unnamed = true }, d.c_marks)
  end)

  it("passthrough keeps OpenAI's [DONE] and Anthropic's message_stop", function()
    local d = upstream.passthrough(require("moongate.adapters.openai").stream_end)
    local evs = d:frame("[DONE]")
    assert.equal("[DONE]", evs[1].data)
    assert.equal("done", evs[2].type)
    assert.is_true(d.pipe)
    -- C pipes every frame but an error event and OpenAI's / vLLM's error objects
    assert.same({ events = { "error" }, unnamed = false, error_keys = { "error", "object=error" } }, d.c_marks)
    d = upstream.passthrough(require("moongate.adapters.openai").stream_end)
    assert.equal(1, #d:frame('{"object": "error", "message": "boom"}')) -- vLLM's error: handed on as the end
    assert.is_true(d.ended)
    d = upstream.passthrough(require("moongate.adapters.anthropic").stream_end)
    assert.same({ events = { "error", "message_stop" }, unnamed = false }, d.c_marks)
    assert.equal("done", d:frame('{"type":"message_stop"}', "message_stop")[2].type)
  end)

  it("picks the adapter by the provider's api", function()
    local p = openai_kind.new("r", { base_url = "http://127.0.0.1:1/v1", api = "responses" })
    assert.equal("responses", p.adapter.format)
    assert.is_false(p.count_tokens)
    local c = openai_kind.new("c", { base_url = "http://127.0.0.1:1/v1" })
    assert.equal("openai", c.adapter.format)
    assert.has_error(function() openai_kind.new("x", { api = "graph" }) end, 'provider x: unknown api "graph"')
    local anthropic = require("moongate.providers.anthropic").new("a", { base_url = "http://127.0.0.1:1" })
    assert.is_function(anthropic.count_tokens)
  end)

  it("serves the endpoints its conf declares", function()
    local p = openai_kind.new("v", { base_url = "http://x/v1", completions = true })
    assert.is_true(p:serves("completions"))
    assert.is_false(p:serves("embeddings"))
    assert.is_false(p:serves("api"))
  end)

  describe("start()", function()
    local saved, calls, piped
    before_each(function()
      saved = { _fetch = core._fetch, _fetch_pipe = core._fetch_pipe }
      calls, piped = {}, 0
      core._fetch = function(opts, cbs)
        calls[#calls + 1] = { url = opts.url, body = opts.body, stream = opts.stream, cbs = cbs,
          total = opts.total_timeout_ms }
        return {}
      end
      core._fetch_pipe = function(_, _, ends) piped = piped + 1; calls.ends = ends end
    end)
    after_each(function()
      core._fetch, core._fetch_pipe = saved._fetch, saved._fetch_pipe
    end)

    local function sink(list)
      return { emit = function(ev) list[#list + 1] = ev; return true end,
        guard = function(fn) return fn end, guard_value = function(fn) return fn end,
        closed = function() return false end, pipe_handle = function() return {} end,
        on_drain = function() end }
    end

    it("passes a Responses client through to a Responses upstream, piped but for its terminal events", function()
      local p = openai_kind.new("r", { base_url = "http://u/v1", api = "responses" })
      local body = '{"model":"m","input":"hi","stream":true,"previous_response_id":null}'
      local got = {}
      p:start({ client = "responses", model = "m", upstream_model = "m", stream = true, raw_body = body,
        raw = json.decode(body), messages = { user("hi") } }, sink(got))
      assert.equal(body, calls[1].body)
      assert.equal("http://u/v1/responses", calls[1].url)
      calls[1].cbs.on_frame('{"type":"response.created"}', "response.created")
      -- C queues the ordinary frames from here on, and hands Lua the end
      assert.equal(1, piped)
      assert.same({ "error", "response.completed", "response.failed", "response.incomplete" }, calls.ends.events)
      assert.is_true(calls.ends.unnamed)
      calls[1].cbs.on_frame('{"type":"response.completed"}', "response.completed")
      calls[1].cbs.on_done(nil, nil, "", 200)
      assert.same({ "raw", "raw", "done" }, types(got))
    end)

    it("bounds a whole answer by 10 minutes by default, a stream by its idle timeouts; timeout_ms bounds both", function()
      local body = '{"model":"m","input":"hi"}'
      local function total(conf, stream)
        local p = openai_kind.new("r", conf)
        p:start({ client = "responses", model = "m", upstream_model = "m", stream = stream, raw_body = body,
          raw = json.decode(body), messages = { user("hi") } }, sink({}))
        return calls[#calls].total
      end
      assert.equal(600000, total({ base_url = "http://u/v1", api = "responses" }, false))
      assert.equal(0, total({ base_url = "http://u/v1", api = "responses" }, true))
      assert.equal(5000, total({ base_url = "http://u/v1", api = "responses", timeout_ms = 5000 }, false))
      assert.equal(5000, total({ base_url = "http://u/v1", api = "responses", timeout_ms = 5000 }, true))
      assert.equal(0, total({ base_url = "http://u/v1", api = "responses", timeout_ms = 0 }, false))
    end)

    it("passes through a history the gateway expanded, but translates packed reasoning", function()
      local p = openai_kind.new("r", { base_url = "http://u/v1", api = "responses" })
      local body = '{"model":"m","input":[{"role":"user","content":"earlier"},{"role":"user","content":"hi"}],"previous_response_id":null}'
      p:start({ client = "responses", expanded = true, model = "m", upstream_model = "m", raw_body = body,
        raw = json.decode(body), messages = { user("earlier"), user("hi") } }, sink({}))
      assert.equal(body, calls[1].body) -- the store's turns, written in by the door
      -- a reasoning item another upstream made (packed): translated, and dropped
      body = '{"model":"m","input":[{"role":"user","content":"x"},{"type":"reasoning","id":"rs_1","summary":[],'
        .. '"encrypted_content":"mg1~anthropic~~c2ln"},{"role":"assistant","content":"y"},{"role":"user","content":"z"}]}'
      local creq = { client = "responses", model = "m", upstream_model = "m", raw_body = body, raw = json.decode(body),
        messages = { user("x"), { role = "assistant", content = { { type = "thinking", text = "", signature = "c2ln",
          origin = "anthropic" }, { type = "text", text = "y" } } }, user("z") } }
      p:start(creq, sink({}))
      local sent = json.decode(calls[2].body)
      assert.not_equal(body, calls[2].body)
      for _, it in ipairs(sent.input) do assert.not_equal("reasoning", it.type) end
      assert.same({ "thinking from an anthropic upstream" }, creq.dropped)
    end)

    it("forwards an endpoint as is, answers untouched; 404 where the provider has none", function()
      local p = openai_kind.new("v", { base_url = "http://u/v1", embeddings = true })
      local body = '{"model":"alias","input":["a"],"encoding_format":"base64"}'
      local got = {}
      p:start({ client = "openai", endpoint = "embeddings", model = "alias", upstream_model = "real",
        raw_body = body }, sink(got))
      assert.equal("http://u/v1/embeddings", calls[1].url)
      assert.equal('{"model":"real","input":["a"],"encoding_format":"base64"}', calls[1].body)
      assert.is_nil(p.fetch_opts.url) -- nothing of this request stays on the provider
      calls[1].cbs.on_done(nil, nil, '{"object":"list","data":[]}', 200)
      assert.same({ type = "raw_body", body = '{"object":"list","data":[]}' }, got[1])
      -- a streamed completion: frames as they came, to [DONE]
      p = openai_kind.new("v", { base_url = "http://u/v1", completions = true })
      got = {}
      p:start({ client = "openai", endpoint = "completions", model = "m", upstream_model = "m", stream = true,
        raw_body = '{"model":"m","prompt":"x","stream":true}' }, sink(got))
      assert.equal("http://u/v1/completions", calls[2].url)
      calls[2].cbs.on_frame('{"object":"text_completion","choices":[]}')
      calls[2].cbs.on_frame("[DONE]")
      calls[2].cbs.on_done(nil, nil, "", 200)
      assert.same({ "raw", "raw", "done" }, types(got))
      assert.equal(1, piped)
      -- no such endpoint here
      got = {}
      openai_kind.new("n", { base_url = "http://u/v1" }):start({ client = "openai", endpoint = "embeddings",
        model = "m", raw_body = body }, sink(got))
      assert.equal(404, got[1].status)
      assert.equal(2, #calls)
    end)
  end)
end)
