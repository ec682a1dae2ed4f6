local fd = require "moongate.frontdoor.openai_chat"
local json = require "moongate.json"

local function decode(t) return fd.decode(type(t) == "string" and t or json.encode(t)) end

describe("openai_chat.decode", function()
  it("turns a request into the canonical form", function()
    local creq = assert(decode {
      model = "echo", stream = true, stream_options = { include_usage = true }, max_tokens = 7,
      stop = "END", reasoning_effort = "high",
      messages = {
        { role = "system", content = "be brief" },
        { role = "user", content = { { type = "text", text = "look" },
          { type = "image_url", image_url = { url = "data:image/png;base64,AAAA" } } } },
        { role = "assistant", content = json.null, tool_calls = { { id = "c1", type = "function",
          ["function"] = { name = "f", arguments = '{"a":1}' } } } },
        { role = "tool", tool_call_id = "c1", content = "42" },
      },
      tools = { { type = "function", ["function"] = { name = "f", parameters = { type = "object" } } } },
      tool_choice = "required",
    })
    assert.equal("echo", creq.model)
    assert.is_true(creq.stream)
    assert.is_true(creq.include_usage)
    assert.equal(7, creq.max_tokens)
    assert.same({ "END" }, creq.stop)
    assert.same({ effort = "high" }, creq.reasoning)
    assert.equal("be brief", json.str(creq.system)) -- (carried raw: json.str reads it)
    assert.same({ type = "image", mime = "image/png", data = "AAAA" }, creq.messages[1].content[2])
    assert.same({ type = "tool_call", id = "c1", name = "f", arguments = '{"a":1}' }, creq.messages[2].content[1])
    local result = creq.messages[3].content[1] -- (its text carried raw: json.str reads it)
    assert.same({ type = "tool_result", tool_call_id = "c1", content = "42" },
      { type = result.type, tool_call_id = result.tool_call_id, content = json.str(result.content) })
    assert.equal("f", creq.tools[1].name)
    assert.same({ type = "any" }, creq.tool_choice)
  end)

  local cases = {
    { "empty body", "", 400, nil, "could not parse" },
    { "malformed JSON", "{nope", 400, nil, "could not parse" },
    { "not an object", "[1,2]", 400, nil, "expected a JSON object" },
    { "missing model", { messages = { { role = "user", content = "x" } } }, 400, "model", "Missing required parameter: 'model'" },
    { "missing messages", { model = "echo" }, 400, "messages", "Missing required parameter: 'messages'" },
    { "messages of the wrong type", { model = "echo", messages = "hi" }, 400, "messages", "expected an array, but got a string" },
    { "empty messages", { model = "echo", messages = {} }, 400, "messages", "empty array" },
    { "stream not a boolean", { model = "echo", stream = "yes", messages = { { role = "user", content = "x" } } }, 400, "stream", "expected a boolean" },
    { "max_tokens not an integer", { model = "echo", max_tokens = 1.5, messages = { { role = "user", content = "x" } } }, 400, "max_tokens", "expected an integer" },
    { "bad reasoning effort", { model = "echo", reasoning_effort = "max", messages = { { role = "user", content = "x" } } }, 400, "reasoning_effort", "'max' is not one of" },
  }
  for _, c in ipairs(cases) do
    it("rejects " .. c[1], function()
      local creq, err = decode(c[2])
      assert.is_nil(creq)
      assert.equal(c[3], err.status)
      assert.equal(c[4], err.param)
      assert.matches(c[5], err.message, 1, true)
    end)
  end

  -- what a passthrough forwards unread: the upstream judges it; a
  -- translation refuses it by its place
  local errors = require "moongate.errors"
  local adapters = { require "moongate.adapters.openai", require "moongate.adapters.anthropic" }
  local translated = {
    { "bad role", { model = "echo", messages = { { role = "robot", content = "x" } } }, 400, "messages[0].role", "Invalid value: 'robot'" },
    { "content of the wrong type", { model = "echo", messages = { { role = "user", content = 5 } } }, 400, "messages[0].content", "expected one of a string or an array" },
    { "a message that is not an object", { model = "echo", messages = { { role = "user", content = "x" }, 7 } }, 400, "messages[1]", "expected an object" },
    { "a missing tool_call_id", { model = "echo", messages = { { role = "tool", content = "x" } } }, 400, "messages[0].tool_call_id", "Missing required parameter" },
    { "a bad content part type", { model = "echo", messages = { { role = "user", content = "x" },
      { role = "user", content = { { type = "text", text = "a" }, { type = "video" } } } } }, 400, "messages[1].content[1].type", "content part type 'video' cannot be translated" },
    { "a content part without text", { model = "echo", messages = { { role = "user", content = { { type = "text" } } } } }, 400, "messages[0].content[0].text", "expected a string" },
    { "a tool call that is not an object", { model = "echo", messages = { { role = "assistant", tool_calls = { 1 } } } }, 400, "messages[0].tool_calls[0]", "expected an object" },
  }
  for _, c in ipairs(translated) do
    it("passes " .. c[1] .. " through unread, and refuses it when translating", function()
      assert(decode(c[2]))
      for _, a in ipairs(adapters) do
        local ok, err = errors.catch(a.request, decode(c[2]), {})
        assert.is_false(ok)
        assert.equal(c[3], err.status)
        assert.equal(c[4], err.param)
        assert.matches(c[5], err.message, 1, true)
      end
    end)
  end
end)

describe("openai_chat encoders", function()
  local creq = { model = "echo", include_usage = true }
  local events = {
    { type = "start" }, { type = "text_delta", text = "hi " }, { type = "text_delta", text = "there" },
    { type = "usage", input_tokens = 5, output_tokens = 2 }, { type = "done", reason = "stop" },
  }

  it("streams OpenAI chunks: role first, same id, finish chunk, usage, [DONE]", function()
    local enc = fd.stream_encoder(creq, { id = "chatcmpl-x", created = 1 })
    local frames = {}
    for _, ev in ipairs(events) do
      for _, f in ipairs(enc:event(ev)) do frames[#frames + 1] = f end
    end
    assert.equal("[DONE]", frames[#frames])
    local chunks = {}
    for i = 1, #frames - 1 do chunks[i] = assert(json.decode(frames[i])) end
    for _, c in ipairs(chunks) do
      assert.equal("chatcmpl-x", c.id)
      assert.equal("chat.completion.chunk", c.object)
      assert.equal(1, c.created)
    end
    assert.equal("assistant", chunks[1].choices[1].delta.role)
    assert.matches('"delta":{"role":"assistant","content":""}', frames[1], 1, true) -- OpenAI's key order
    assert.equal("hi ", chunks[2].choices[1].delta.content)
    assert.equal("stop", chunks[4].choices[1].finish_reason)
    assert.same({}, chunks[4].choices[1].delta)
    assert.same({}, chunks[5].choices)
    assert.matches('"choices":%[%]', frames[5])
    assert.same({ prompt_tokens = 5, completion_tokens = 2, total_tokens = 7 }, chunks[5].usage)
  end)

  it("leaves the usage chunk out unless asked", function()
    local enc = fd.stream_encoder({ model = "echo" })
    local frames = enc:event({ type = "done", reason = "length" })
    assert.equal(3, #frames) -- role chunk, finish chunk, [DONE]
    assert.equal("length", json.decode(frames[2]).choices[1].finish_reason)
  end)

  it("maps tool calls and stop reasons", function()
    local enc = fd.stream_encoder({ model = "m" })
    local f = enc:event({ type = "toolcall_start", index = 0, id = "call_1", name = "get" })
    local tc = json.decode(f[2]).choices[1].delta.tool_calls[1]
    assert.same({ index = 0, id = "call_1", type = "function", ["function"] = { name = "get", arguments = "" } }, tc)
    f = enc:event({ type = "done", reason = "tool_use" })
    assert.equal("tool_calls", json.decode(f[1]).choices[1].finish_reason)
  end)

  it("collects a non-streamed body", function()
    local col = fd.collector(creq, { id = "chatcmpl-y", created = 2 })
    for _, ev in ipairs(events) do col:event(ev) end
    local body = col:result()
    assert.equal("chat.completion", body.object)
    assert.equal("hi there", body.choices[1].message.content)
    assert.equal("assistant", body.choices[1].message.role)
    assert.equal("stop", body.choices[1].finish_reason)
    assert.same({ prompt_tokens = 5, completion_tokens = 2, total_tokens = 7 }, body.usage)
  end)

  it("shapes mid-stream errors so the SDK throws", function()
    local enc = fd.stream_encoder({ model = "m" })
    local frame = json.decode(enc:error({ status = 502, message = "boom" })[1])
    assert.same({ message = "boom", type = "server_error", param = json.null, code = json.null }, frame.error)
  end)
end)

describe("openai_chat.decode, canonical messages", function()
  local fd = require "moongate.frontdoor.openai_chat"
  local json = require "moongate.json"
  it("are made only when read (a passthrough never reads them), and then in full", function()
    local creq = assert(fd.decode(json.encode { model = "m", messages = {
      { role = "system", content = "be brief" }, { role = "user", content = { { type = "text", text = "hi" } } },
      { role = "assistant", tool_calls = { { id = "c1", type = "function", ["function"] = { name = "f", arguments = "{}" } } } },
      { role = "tool", tool_call_id = "c1", content = "42" } } }, {}))
    assert.is_nil(rawget(creq, "messages"))
    assert.equal("be brief", json.str(creq.system)) -- (carried raw: json.str reads it)
    assert.equal(3, #creq.messages)
    assert.same({ role = "user", content = { { type = "text", text = "hi" } } }, creq.messages[1])
    assert.equal("tool_call", creq.messages[2].content[1].type)
    assert.equal("tool_result", creq.messages[3].content[1].type)
    local again = assert(fd.decode(json.encode { model = "m", messages = { { role = "user", content = "x" } } }, {}))
    assert.is_nil(again.system) -- read first: the messages are made, and there is no system text
    assert.equal(1, #again.messages)
  end)
end)
