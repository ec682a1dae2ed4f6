-- Prompt mode (kind "prompt", adapters/prompt.lua) without the daemon: the
-- exact prompt the default template builds, the stops merged, top_p's
-- default, a replaced template, both completion APIs' request bodies, what
-- a prompt refuses and drops, the answers and stream frames of both APIs
-- as canonical events (an empty generation an empty answer), and the kind:
-- its endpoint per completion_api, its info line per request and its
-- warning for an empty generation.
local json = require "moongate.json"
local errors = require "moongate.errors"
local core = require "moongate.core"
local log = require "moongate.log"
local prompt = require "moongate.adapters.prompt"
local kind = require "moongate.providers.prompt"

local function text(role, t) return { role = role, content = { { type = "text", text = t } } } end

local function chat(extra)
  local creq = { client = "openai", model = "local", upstream_model = "local-7b", system = "Be brief.",
    messages = { text("user", "Hi"), text("assistant", "Hello!"), text("user", "What is 2+2?") } }
  for k, v in pairs(extra or {}) do creq[k] = v end
  return creq
end

local function types(events)
  local out = {}
  for i, ev in ipairs(events) do out[i] = ev.type end
  return out
end

-- the refusal a request raises while it is built (errors.catch)
local function refusal(a, creq, conf)
  local ok, err = errors.catch(a.request, creq, conf or {})
  assert.is_false(ok)
  return err
end

describe("prompt mode: the prompt", function()
  it("tags each message by role, system prompt first, one per line, and ends with [Assistant]:", function()
    assert.equal("[System]: Be brief.\n[User]: Hi\n[Assistant]: Hello!\n[User]: What is 2+2?\n[Assistant]:",
      prompt.prompt(chat(), {}))
  end)

  it("writes a system message among the others as [System], joins a turn's text blocks, keeps newlines", function()
    local creq = { model = "m", messages = {
      { role = "user", content = { { type = "text", text = "line one\nline two" }, { type = "text", text = "more" } } },
      text("system", "Now in French."),
      { role = "assistant", content = {} },
      text("user", "Salut"),
    } }
    assert.equal("[User]: line one\nline two\n\nmore\n[System]: Now in French.\n[Assistant]:\n[User]: Salut\n[Assistant]:",
      prompt.prompt(creq, {}))
  end)

  it("drops thinking in the history (noted) and takes a foreign block's text", function()
    local creq = { model = "m", messages = {
      text("user", "q"),
      { role = "assistant", content = { { type = "thinking", text = "hmm", signature = "s", origin = "anthropic" },
        { type = "text", text = "a" } } },
      { role = "user", content = { { type = "native", format = "anthropic", text = "search result: x" } } },
    }, reasoning = { effort = "high" } }
    assert.equal("[User]: q\n[Assistant]: a\n[User]: search result: x\n[Assistant]:", prompt.prompt(creq, {}))
    assert.same({ "reasoning", "thinking" }, creq.dropped)
  end)

  it("refuses tools, tool calls and results, images, files, audio and a JSON format by name", function()
    local a = prompt.openai
    local err = refusal(a, chat({ tools = { { name = "get_weather", parameters = { type = "object" } } } }))
    assert.equal(400, err.status)
    assert.equal("tools", err.param)
    assert.matches("tools cannot be offered through a prompt%-mode provider", err.message)
    local call = { role = "assistant", content = { { type = "tool_call", id = "c1", name = "f", arguments = "{}" } } }
    assert.matches("^a tool call cannot be sent to a prompt%-mode provider", refusal(a, { model = "m", messages = { call } }).message)
    local result = { role = "tool", content = { { type = "tool_result", tool_call_id = "c1", content = "42" } } }
    assert.matches("^a tool result cannot be sent", refusal(a, { model = "m", messages = { result } }).message)
    for what, block in pairs { ["an image"] = { type = "image", mime = "image/png", data = "iVBO" },
      ["a file"] = { type = "file", mime = "application/pdf", data = "JVBE" },
      audio = { type = "audio", data = "UklG", format = "wav" } } do
      local err2 = refusal(prompt.llamacpp, { model = "m", messages = { { role = "user", content = { block } } } })
      assert.equal(400, err2.status)
      assert.equal(what .. " cannot be sent to a prompt-mode provider, whose back end completes plain text; send text only",
        err2.message)
    end
    assert.matches("JSON output format", refusal(a, chat({ format = { type = "json_object" } })).message)
    assert.equal("n", refusal(a, chat({ n = 2 })).param) -- one choice only, never silently
    assert.equal("logprobs", refusal(a, chat({ logprobs = true })).param)
    -- a field the client's front door cannot translate is refused by name, as for any translation
    assert.equal("logit_bias", refusal(a, chat({ raw = { logit_bias = {} }, fields = { logit_bias = "not here" } })).param)
  end)

  it("uses a replaced template: it gets the messages (system first) and the request", function()
    local seen
    local conf = { template = function(messages, creq)
      seen = { messages = messages, model = creq.model }
      local out = {}
      for _, m in ipairs(messages) do out[#out + 1] = "<|" .. m.role .. "|>" .. m.content end
      return table.concat(out) .. "<|assistant|>"
    end }
    local wire = prompt.openai.request(chat(), conf)
    assert.equal("<|system|>Be brief.<|user|>Hi<|assistant|>Hello!<|user|>What is 2+2?<|assistant|>", wire.prompt)
    assert.same({ { role = "system", content = "Be brief." }, { role = "user", content = "Hi" },
      { role = "assistant", content = "Hello!" }, { role = "user", content = "What is 2+2?" } }, seen.messages)
    assert.equal("local", seen.model)
    assert.same({ "\n[User]:" }, wire.stop) -- the default stop still goes with it
  end)

  it("raises a template's failure, or a template that gives no string, as the operator's error", function()
    assert.has_error(function() prompt.prompt(chat(), { template = function() error("boom", 0) end }) end,
      "the prompt template failed: boom")
    assert.has_error(function() prompt.prompt(chat(), { template = function() return 42 end }) end,
      "the prompt template gave a number, not a string")
  end)

  it("adds the default stop to the client's, each once; conf.stop replaces the default", function()
    assert.same({ "\n[User]:" }, prompt.stops(chat(), {}))
    assert.same({ "END", "\n[User]:" }, prompt.stops(chat({ stop = { "END", "\n[User]:" } }), {}))
    assert.same({ "END", "###" }, prompt.stops(chat({ stop = { "END" } }), { stop = { "###", "END" } }))
    assert.is_nil(prompt.stops(chat(), { stop = {} })) -- none at all: the field is left out
  end)
end)

describe("prompt mode: request bodies", function()
  it("OpenAI legacy completions: model, prompt, max_tokens, temperature, top_p, stop, stream", function()
    local wire = prompt.openai.request(chat({ temperature = 0.2, max_tokens = 64, stop = { "END" }, stream = true }), {})
    assert.same({ model = "local-7b", prompt = prompt.prompt(chat(), {}), max_tokens = 64, temperature = 0.2, top_p = 0.95,
      stop = { "END", "\n[User]:" }, stream = true, stream_options = { include_usage = true } }, wire)
    assert.equal("/completions", prompt.openai.path)
  end)

  it("llama.cpp's /completion: prompt, n_predict, temperature, top_p, stop, stream (no model)", function()
    local wire = prompt.llamacpp.request(chat({ temperature = 0, max_tokens = 32, top_p = 0.5 }), {})
    assert.same({ prompt = prompt.prompt(chat(), {}), n_predict = 32, temperature = 0, top_p = 0.5,
      stop = { "\n[User]:" } }, wire)
    assert.equal("/completion", prompt.llamacpp.path)
  end)

  it("defaults top_p to 0.95 and leaves out what the client did not give; caps and defaults the output", function()
    local wire = prompt.openai.request(chat(), {})
    assert.equal(0.95, wire.top_p)
    assert.is_nil(wire.temperature)
    assert.is_nil(wire.max_tokens)
    assert.is_nil(wire.stream)
    assert.equal(100, prompt.openai.request(chat({ max_tokens = 5000 }), { max_output_tokens = 100 }).max_tokens)
    assert.equal(256, prompt.llamacpp.request(chat(), { default_max_tokens = 256 }).n_predict)
    -- it goes out as JSON the back end reads (numbers whole, no empty object for a list)
    local text = json.encode_raw(prompt.llamacpp.request(chat({ stop = { "x" } }), { stop = {} }))
    assert.matches('"stop":%["x"%]', text)
  end)
end)

describe("prompt mode: answers", function()
  it("reads an OpenAI text_completion: text, usage, finish reason", function()
    local events = prompt.openai.response({ id = "cmpl-1", model = "m", choices = { { text = " 4", finish_reason = "stop" } },
      usage = { prompt_tokens = 30, completion_tokens = 2 } })
    assert.same({ { type = "start", id = "cmpl-1", model = "m" }, { type = "text_delta", text = " 4" },
      { type = "usage", input_tokens = 30, output_tokens = 2 }, { type = "done", reason = "stop" } }, events)
    local cut = prompt.openai.response({ choices = { { text = "abc", finish_reason = "length" } } })
    assert.same({ type = "done", reason = "length" }, cut[#cut])
  end)

  it("reads llama.cpp's answer: content, tokens_evaluated / tokens_predicted, stop_type", function()
    local events = prompt.llamacpp.response({ content = " 4", stop = true, model = "q.gguf", stop_type = "word",
      stopping_word = "\n[User]:", tokens_evaluated = 30, tokens_predicted = 2 })
    assert.same({ { type = "start", model = "q.gguf" }, { type = "text_delta", text = " 4" },
      { type = "usage", input_tokens = 30, output_tokens = 2 }, { type = "done", reason = "stop" } }, events)
    for stop_type, reason in pairs { eos = "stop", word = "stop", limit = "length" } do
      local e = prompt.llamacpp.response({ content = "x", stop = true, stop_type = stop_type })
      assert.same({ type = "done", reason = reason }, e[#e])
    end
  end)

  it("makes an empty or missing generation an empty answer, never an error", function()
    for _, body in ipairs { { choices = { { text = "", finish_reason = "stop" } } }, { choices = { {} } },
      { choices = {} }, { id = "x" } } do
      assert.same({ "start", "done" }, types(prompt.openai.response(body)))
    end
    assert.same({ "start", "usage", "done" }, types(prompt.llamacpp.response({ content = "", stop = true,
      tokens_evaluated = 3, tokens_predicted = 0 })))
    assert.same({ "start", "done" }, types(prompt.llamacpp.response({ stop = true })))
    -- an answer that is no JSON object is still malformed
    assert.same({ { type = "error", status = 502, message = "malformed answer from upstream" } }, prompt.openai.response(nil))
  end)

  it("turns OpenAI completion chunks into events until [DONE]", function()
    local dec, out = prompt.openai.decoder(), {}
    local function feed(data) for _, e in ipairs(dec:frame(data)) do out[#out + 1] = e end end
    feed('{"id":"c1","model":"m","choices":[{"text":"Hel","index":0,"finish_reason":null}]}')
    feed('{"id":"c1","model":"m","choices":[{"text":"lo","index":0,"finish_reason":null}]}')
    feed('{"id":"c1","model":"m","choices":[{"text":"","index":0,"finish_reason":"length"}]}')
    feed('{"id":"c1","model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}')
    feed("[DONE]")
    assert.same({ { type = "start", id = "c1", model = "m" }, { type = "text_delta", text = "Hel" },
      { type = "text_delta", text = "lo" }, { type = "usage", input_tokens = 9, output_tokens = 2 },
      { type = "done", reason = "length" } }, out)
    assert.same({}, dec:finish())
    -- an empty generation: start and done only
    dec = prompt.openai.decoder()
    local events = dec:frame('{"choices":[{"text":"","finish_reason":"stop"}]}')
    for _, e in ipairs(dec:frame("[DONE]")) do events[#events + 1] = e end
    assert.same({ "start", "done" }, types(events))
    -- a stream cut before its end, an error frame
    dec = prompt.openai.decoder()
    dec:frame('{"choices":[{"text":"a","finish_reason":null}]}')
    assert.same({ { type = "error", status = 502, message = "the upstream stream ended before it finished" } }, dec:finish())
    assert.same({ { type = "error", status = 502, message = "overloaded" } },
      prompt.openai.decoder():frame('{"error":{"message":"overloaded"}}'))
  end)

  it("turns llama.cpp's frames into events until the one with stop: true", function()
    local dec, out = prompt.llamacpp.decoder(), {}
    local function feed(data) for _, e in ipairs(dec:frame(data)) do out[#out + 1] = e end end
    feed('{"index":0,"content":"Hel","tokens":[1],"stop":false,"id_slot":0,"tokens_predicted":1,"tokens_evaluated":9}')
    feed('{"index":0,"content":"lo","tokens":[2],"stop":false,"id_slot":0,"tokens_predicted":2,"tokens_evaluated":9}')
    feed('{"index":0,"content":"","tokens":[],"stop":true,"model":"q.gguf","tokens_predicted":2,"tokens_evaluated":9,'
      .. '"stop_type":"limit","stopping_word":"","truncated":false}')
    assert.same({ { type = "start" }, { type = "text_delta", text = "Hel" }, { type = "text_delta", text = "lo" },
      { type = "usage", input_tokens = 9, output_tokens = 2 }, { type = "done", reason = "length" } }, out)
    assert.same({}, dec:finish()) -- the connection closing after it ends nothing more
    -- an empty generation: the final frame alone
    assert.same({ "start", "usage", "done" }, types(prompt.llamacpp.decoder():frame(
      '{"content":"","stop":true,"stop_type":"eos","tokens_predicted":0,"tokens_evaluated":4}')))
    dec = prompt.llamacpp.decoder()
    dec:frame('{"content":"a","stop":false}')
    assert.same({ { type = "error", status = 502, message = "the upstream stream ended before it finished" } }, dec:finish())
    assert.same({ { type = "error", status = 502, message = "context full" } },
      prompt.llamacpp.decoder():frame('{"error":{"code":400,"message":"context full","type":"invalid_request_error"}}'))
  end)
end)

describe("kind prompt", function()
  local saved, calls
  before_each(function()
    saved = { _fetch = core._fetch, info = log.info, warn = log.warn }
    calls = { fetch = {}, info = {}, warn = {} }
    core._fetch = function(opts, cbs)
      calls.fetch[#calls.fetch + 1] = { url = opts.url, body = opts.body, stream = opts.stream, cbs = cbs }
      return {}
    end
    log.info = function(fmt, ...) calls.info[#calls.info + 1] = string.format(fmt, ...) end
    log.warn = function(fmt, ...) calls.warn[#calls.warn + 1] = string.format(fmt, ...) end
  end)
  after_each(function()
    core._fetch, log.info, log.warn = saved._fetch, saved.info, saved.warn
  end)

  local function sink(list)
    return { emit = function(ev) list[#list + 1] = ev; return true end,
      guard = function(fn) return fn end, guard_value = function(fn) return fn end,
      closed = function() return false end, pipe_handle = function() return nil end,
      on_drain = function() end }
  end

  it("declares its fields: completion_api, template (a function), stop", function()
    assert.same({ type = "string", enum = { openai = true, llamacpp = true } }, kind.schema.completion_api)
    assert.equal("function", kind.schema.template)
    assert.same({ type = "list", values = "string" }, kind.schema.stop)
  end)

  it("posts to {base_url}/completions or /completion by completion_api; llama-server's address by default", function()
    local creq = chat({ raw_body = "{}" })
    kind.new("a", { base_url = "http://h:1/v1" }):start(creq, sink({}))
    kind.new("b", { base_url = "http://h:2", completion_api = "llamacpp" }):start(creq, sink({}))
    kind.new("c", { completion_api = "llamacpp" }):start(creq, sink({}))
    kind.new("d", {}):start(creq, sink({}))
    assert.equal("http://h:1/v1/completions", calls.fetch[1].url)
    assert.equal("http://h:2/completion", calls.fetch[2].url)
    assert.equal("http://127.0.0.1:8080/completion", calls.fetch[3].url)
    assert.equal("http://127.0.0.1:8080/v1/completions", calls.fetch[4].url)
    local sent = json.decode(calls.fetch[2].body)
    assert.equal(prompt.prompt(chat(), {}), sent.prompt)
    assert.is_nil(sent.model)
    assert.equal("local-7b", json.decode(calls.fetch[1].body).model)
  end)

  it("logs each request at info: the model, the number of messages, the prompt's size", function()
    kind.new("local", { base_url = "http://h/v1" }):start(chat(), sink({}))
    local size = #prompt.prompt(chat(), {})
    assert.same({ string.format("provider local: model local-7b, 4 messages, a prompt of %d bytes", size) }, calls.info)
  end)

  it("answers an empty generation with an empty answer and a warning, whole or streamed", function()
    local got = {}
    kind.new("p", { base_url = "http://h/v1" }):start(chat(), sink(got))
    calls.fetch[1].cbs.on_done(nil, nil, '{"choices":[{"text":"","finish_reason":"stop"}]}', 200)
    assert.same({ "start", "done" }, types(got))
    assert.same({ "provider p: the back end generated no text for model local-7b; the client gets an empty answer" },
      calls.warn)
    got = {}
    kind.new("q", { base_url = "http://h", completion_api = "llamacpp" }):start(chat({ stream = true }), sink(got))
    assert.equal("sse", calls.fetch[2].stream)
    calls.fetch[2].cbs.on_frame('{"content":"","stop":true,"stop_type":"eos","tokens_predicted":0,"tokens_evaluated":4}')
    calls.fetch[2].cbs.on_done(nil, nil, "", 200)
    assert.same({ "start", "usage", "done" }, types(got))
    assert.equal(2, #calls.warn)
    -- text: no warning
    got = {}
    kind.new("r", { base_url = "http://h", completion_api = "llamacpp" }):start(chat({ stream = true }), sink(got))
    calls.fetch[3].cbs.on_frame('{"content":"4","stop":false}')
    calls.fetch[3].cbs.on_frame('{"content":"","stop":true,"stop_type":"eos"}')
    calls.fetch[3].cbs.on_done(nil, nil, "", 200)
    assert.same({ "start", "text_delta", "done" }, types(got))
    assert.equal(2, #calls.warn)
  end)
end)

describe("prompt mode: a system prompt carried as the client wrote it", function()
  -- an Anthropic client's request through its front door: its string
  -- system prompt carried raw (json.raw_top)
  local function decoded(system, extra)
    local door = require "moongate.frontdoor.anthropic_messages"
    return assert(door.decode('{"model":"local","max_tokens":5,' .. (extra or "") .. '"system":' .. system
      .. ',"messages":[{"role":"user","content":"hi"}]}', {}))
  end

  it("reaches the template in words, in the messages and in creq.system", function()
    local creq = decoded('"be \\u0062rief  "')
    assert.is_string(json.raw_text(creq.system)) -- (carried raw)
    local seen
    local text = prompt.prompt(creq, { template = function(msgs, c)
      seen = c.system
      return msgs[1].content .. "|" .. c.system .. "|" .. #c.system
    end })
    assert.equal("be brief  |be brief  |10", text)
    assert.equal("be brief  ", seen)
  end)

  it("gives the template a creq that holds every field of the request", function()
    local creq = decoded('"sys"', '"temperature":0.5,')
    local keys = {}
    prompt.prompt(creq, { template = function(_, c)
      for k in pairs(c) do keys[k] = true end
      return c.system .. c.temperature
    end })
    assert.is_true(keys.system and keys.messages and keys.temperature and keys.model)
  end)
end)
