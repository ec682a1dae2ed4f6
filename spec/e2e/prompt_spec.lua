-- Prompt mode against the real daemon and the mock completion server: the
-- exact prompt and stops each back end receives (OpenAI legacy completions
-- and llama.cpp's /completion), a stream from each, an empty generation
-- (a 200 with empty content and a warning in the log), a template replaced
-- in the config file, the info line each request writes, and what a prompt
-- cannot hold refused before anything is sent.
local helpers = require "helpers"
local json = require "moongate.json"
local client = require "support.client"

describe("prompt mode", function()
  local mock, server
  setup(function()
    mock = helpers.mock()
    server = helpers.start { config = string.format([[
return {
  providers = {
    oai = { kind = "prompt", base_url = %q, retries = 0 },
    llama = { kind = "prompt", completion_api = "llamacpp", base_url = %q, retries = 0 },
    chatml = { kind = "prompt", completion_api = "llamacpp", base_url = %q, retries = 0,
      stop = { "<|im_end|>" },
      template = function(messages, creq)
        local out = {}
        for _, m in ipairs(messages) do
          out[#out + 1] = "<|im_start|>" .. m.role .. "\n" .. m.content .. "<|im_end|>\n"
        end
        return table.concat(out) .. "<|im_start|>assistant\n"
      end },
    broken = { kind = "prompt", base_url = %q, retries = 0,
      template = function() error("no template today") end },
  },
  routes = {
    { match = "oai-*", provider = "oai" },
    { match = "llama-*", provider = "llama" },
    { match = "chatml", provider = "chatml" },
    { match = "broken", provider = "broken" },
  },
}]], mock.url .. "/v1", mock.url, mock.url, mock.url .. "/v1") }
  end)
  teardown(function()
    if server then server:stop_clean() end
    if mock then mock:stop() end
  end)
  before_each(function() mock:reset() end)

  local function post(path, body)
    return assert(server:request("POST", path, json.encode(body), nil, 15000))
  end
  local function chat(body) return post("/v1/chat/completions", body) end

  local conversation = {
    { role = "system", content = "Be brief." },
    { role = "user", content = "Hi" },
    { role = "assistant", content = "Hello!" },
    { role = "user", content = "What is 2+2?" },
  }
  local expected = "[System]: Be brief.\n[User]: Hi\n[Assistant]: Hello!\n[User]: What is 2+2?\n[Assistant]:"

  -- the one request the mock got, its body decoded
  local function sent(path)
    local got = mock:requests()
    assert.equal(1, #got)
    assert.equal(path, got[1].path)
    assert.is_nil(got[1].rejected)
    return json.decode(got[1].body)
  end

  it("sends OpenAI legacy completions the role-tagged prompt, the stops merged, top_p 0.95", function()
    local res = chat { model = "oai-7b", messages = conversation, stop = { "END" }, temperature = 0.3, max_tokens = 50 }
    assert.equal(200, res.status)
    local body = sent("/v1/completions")
    assert.equal(expected, body.prompt)
    assert.same({ "END", "\n[User]:" }, body.stop)
    assert.equal("oai-7b", body.model)
    assert.equal(0.95, body.top_p)
    assert.equal(0.3, body.temperature)
    assert.equal(50, body.max_tokens)
    assert.is_nil(body.messages)
    -- the mock echoes the prompt: it comes back as the assistant's text
    local answer = json.decode(res.body)
    assert.equal("chat.completion", answer.object)
    assert.equal(expected, answer.choices[1].message.content)
    assert.equal("stop", answer.choices[1].finish_reason)
    assert.equal(7, answer.usage.prompt_tokens)
  end)

  it("sends llama.cpp's /completion the same prompt with n_predict, and reads its counts", function()
    local res = chat { model = "llama-3", messages = conversation, max_tokens = 20, top_p = 0.5 }
    assert.equal(200, res.status)
    local body = sent("/completion")
    assert.equal(expected, body.prompt)
    assert.same({ "\n[User]:" }, body.stop)
    assert.equal(20, body.n_predict)
    assert.equal(0.5, body.top_p)
    assert.is_nil(body.model)
    assert.is_nil(body.max_tokens)
    local answer = json.decode(res.body)
    assert.equal(expected, answer.choices[1].message.content)
    assert.equal(7, answer.usage.prompt_tokens) -- tokens_evaluated
    assert.equal(12, answer.usage.completion_tokens) -- tokens_predicted: the echo's words
  end)

  it("says when the back end stopped at its limit (length)", function()
    mock:queue { { reply = { text = "one two", stop = "length" } }, { reply = { text = "one two", stop = "length" } } }
    assert.equal("length", json.decode(chat({ model = "llama-3", messages = conversation }).body).choices[1].finish_reason)
    assert.equal("length", json.decode(chat({ model = "oai-3", messages = conversation }).body).choices[1].finish_reason)
  end)

  it("streams what each back end streams", function()
    for _, model in ipairs { "oai-7b", "llama-3" } do
      mock:reset()
      mock:queue { { reply = { text = "Two plus two is four." } } }
      local res = chat { model = model, stream = true, stream_options = { include_usage = true }, messages = conversation }
      assert.equal(200, res.status)
      assert.matches("text/event%-stream", res.headers["content-type"])
      local data = client.sse_data(res.body)
      assert.equal("[DONE]", data[#data])
      local text, finish, usage = {}, nil, nil
      for i = 1, #data - 1 do
        local c = json.decode(data[i])
        local ch = c.choices[1]
        if ch and ch.delta.content then text[#text + 1] = ch.delta.content end
        if ch and ch.finish_reason ~= json.null then finish = ch.finish_reason end
        if c.usage ~= nil and c.usage ~= json.null then usage = c.usage end
      end
      assert.is_true(#text >= 5, model) -- word by word, as the back end sent it
      assert.equal("Two plus two is four.", table.concat(text))
      assert.equal("stop", finish)
      assert.equal(5, usage.completion_tokens)
      local body = sent(model == "oai-7b" and "/v1/completions" or "/completion")
      assert.is_true(body.stream)
      assert.equal(expected, body.prompt)
    end
  end)

  it("streams to an Anthropic client too", function()
    mock:queue { { reply = { text = "Four." } } }
    local res = post("/v1/messages", { model = "llama-3", max_tokens = 100, stream = true, system = "Be brief.",
      messages = { { role = "user", content = "What is 2+2?" } } })
    assert.equal(200, res.status)
    local data, events = client.sse_data(res.body)
    assert.equal("message_stop", events[#events])
    local text = {}
    for i, d in ipairs(data) do
      if events[i] == "content_block_delta" then text[#text + 1] = json.decode(d).delta.text end
    end
    assert.equal("Four.", table.concat(text))
    assert.equal("[System]: Be brief.\n[User]: What is 2+2?\n[Assistant]:", sent("/completion").prompt)
  end)

  it("answers an empty or missing generation with a 200, empty content and a warning in the log", function()
    local cases = {
      { "oai-7b", { reply = { text = "" } }, false },
      { "oai-7b", { reply = { missing = true } }, false },
      { "llama-3", { reply = { text = "" } }, false },
      { "llama-3", { reply = { missing = true } }, false },
      { "oai-7b", { reply = { text = "" } }, true },
      { "llama-3", { reply = { text = "" } }, true },
    }
    for i, case in ipairs(cases) do
      local model, script, stream = case[1], case[2], case[3]
      mock:queue { script }
      local before = select(2, server.log:gsub("generated no text", ""))
      local res = chat { model = model, stream = stream or nil, messages = conversation }
      assert.equal(200, res.status, "case " .. i)
      if stream then
        local data = client.sse_data(res.body)
        assert.equal("[DONE]", data[#data])
        for j = 1, #data - 1 do
          local ch = json.decode(data[j]).choices[1]
          assert.is_true(ch == nil or ch.delta.content == nil or ch.delta.content == "", "case " .. i)
        end
      else
        local msg = json.decode(res.body).choices[1].message
        assert.equal("", msg.content, "case " .. i)
      end
      local after = select(2, server.log:gsub("generated no text", ""))
      assert.equal(before + 1, after, "case " .. i)
    end
    assert.matches("WARN[^\n]*provider llama: the back end generated no text for model llama%-3; the client gets an empty answer",
      server.log)
  end)

  it("builds the prompt with a template written in the config file, with its own stop", function()
    local res = chat { model = "chatml", messages = conversation, stop = { "###" } }
    assert.equal(200, res.status)
    local body = sent("/completion")
    assert.equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
      .. "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
      body.prompt)
    assert.same({ "###", "<|im_end|>" }, body.stop)
  end)

  it("logs each request at info: the model, the number of messages and the prompt's size", function()
    chat { model = "oai-7b", messages = conversation }
    assert.matches(string.format("INFO[^\n]*provider oai: model oai%%-7b, 4 messages, a prompt of %d bytes", #expected),
      server.log)
  end)

  it("refuses tools, tool results and images by name before anything is sent", function()
    local res = chat { model = "llama-3", messages = conversation,
      tools = { { type = "function", ["function"] = { name = "get_weather", parameters = { type = "object", properties = {} } } } } }
    assert.equal(400, res.status)
    local err = json.decode(res.body).error
    assert.equal("tools", err.param)
    assert.matches("prompt%-mode provider", err.message)
    res = chat { model = "llama-3", messages = { { role = "user", content = {
      { type = "text", text = "what is this?" },
      { type = "image_url", image_url = { url = "data:image/png;base64,iVBORw0KGgo=" } } } } } }
    assert.equal(400, res.status)
    assert.matches("^an image cannot be sent to a prompt%-mode provider", json.decode(res.body).error.message)
    res = chat { model = "oai-7b", messages = {
      { role = "user", content = "weather?" },
      { role = "assistant", content = json.null, tool_calls = { { id = "call_1", type = "function",
        ["function"] = { name = "get_weather", arguments = "{}" } } } },
      { role = "tool", tool_call_id = "call_1", content = "sunny" } } }
    assert.equal(400, res.status)
    assert.matches("^a tool call cannot be sent", json.decode(res.body).error.message)
    assert.equal(0, #mock:requests())
  end)

  it("fails a request whose template fails with a 500, and says why in the log", function()
    local res = chat { model = "broken", messages = conversation }
    assert.equal(500, res.status)
    assert.matches("no template today", server.log)
    assert.equal(0, #mock:requests())
  end)
end)
