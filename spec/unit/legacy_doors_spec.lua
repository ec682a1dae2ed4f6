-- The legacy front doors: completions (POST /v1/completions, translated for
-- a chat upstream or forwarded to one that serves completions) and
-- embeddings (POST /v1/embeddings, always forwarded). No daemon.
package.path = "spec/?.lua;lua/?.lua;lua/?/init.lua;" .. package.path
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"
local completions = require "moongate.frontdoor.openai_completions"
local embeddings = require "moongate.frontdoor.openai_embeddings"
local openai_adapter = require "moongate.adapters.openai"
local anthropic_adapter = require "moongate.adapters.anthropic"

local function enc(t) return type(t) == "string" and t or json.encode(t) end

-- catch(fn, ...) -> the refusal fn raised (nil when it raised none)
local function refusal(fn, ...)
  local ok, err = errors.catch(fn, ...)
  if ok then return nil end
  return err
end

describe("openai_completions descriptor", function()
  it("names its route, prefix, stream kind and error shape", function()
    assert.equal("serve", completions.routes["POST /v1/completions"])
    assert.same({ "/completions" }, completions.prefixes)
    assert.equal("sse", completions.stream_kind)
    assert.equal("completions", completions.client)
    -- its errors are OpenAI's shape: all four keys
    local body = json.decode(errors.body(completions.client, errors.new(400, "x", { param = "prompt" })))
    assert.same({ message = "x", type = "invalid_request_error", param = "prompt", code = json.null }, body.error)
  end)
end)

describe("openai_completions.decode", function()
  local function decode(t, headers) return completions.decode(enc(t), headers) end

  it("turns a string prompt into one user message, lazily", function()
    local creq = assert(decode({ model = "m", prompt = "Say hi", max_tokens = 5, stop = "\n" },
      { authorization = "Bearer sk-1" }))
    assert.is_nil(rawget(creq, "messages")) -- made only when read
    assert.equal("sk-1", creq.client_key)
    assert.equal("completions", creq.endpoint)
    assert.same({ { role = "user", content = { { type = "text", text = "Say hi" } } } }, creq.messages)
    assert.is_nil(creq.system)
    assert.equal(5, creq.max_tokens)
    assert.same({ "\n" }, creq.stop)
    assert.is_false(creq.stream)
  end)

  it("gives max_tokens OpenAI's legacy default, 16, when absent or null", function()
    assert.equal(16, decode({ model = "m", prompt = "x" }).max_tokens)
    assert.equal(16, decode({ model = "m", prompt = "x", max_tokens = json.null }).max_tokens)
    assert.equal(0, decode({ model = "m", prompt = "x", max_tokens = 0 }).max_tokens)
  end)

  it("leaves the prompt's items unread until it is translated", function()
    -- a provider that serves completions forwards token prompts and lists
    -- as they came: decode accepts them
    for _, p in ipairs { { 1, 2, 3 }, { { 1, 2 }, { 3 } }, { "a", "b" } } do
      local creq = assert(decode({ model = "m", prompt = p }))
      assert.equal(creq.raw_body, enc({ model = "m", prompt = p }))
      assert.is_nil(rawget(creq, "messages"))
    end
  end)

  local cases = {
    { "empty body", "", nil, "could not parse" },
    { "malformed JSON", "{nope", nil, "could not parse" },
    { "not an object", "[1]", nil, "expected a JSON object" },
    { "a doubled model", '{"model":"a","model":"b","prompt":"x"}', "model", "given twice" },
    { "missing model", { prompt = "x" }, "model", "Missing required parameter: 'model'" },
    { "missing prompt", { model = "m" }, "prompt", "Missing required parameter: 'prompt'" },
    { "null prompt", { model = "m", prompt = json.null }, "prompt", "Missing required parameter: 'prompt'" },
    { "prompt of the wrong type", { model = "m", prompt = 5 }, "prompt", "expected one of a string or an array, but got an integer" },
    { "prompt an object", { model = "m", prompt = { a = 1 } }, "prompt", "but got an object" },
    { "temperature above 2", { model = "m", prompt = "x", temperature = 3 }, "temperature", "above maximum value" },
    { "negative max_tokens", { model = "m", prompt = "x", max_tokens = -1 }, "max_tokens", "below minimum value" },
    { "max_tokens not an integer", { model = "m", prompt = "x", max_tokens = 1.5 }, "max_tokens", "expected an integer" },
    { "echo not a boolean", { model = "m", prompt = "x", echo = "yes" }, "echo", "expected a boolean" },
    { "logprobs not an integer", { model = "m", prompt = "x", logprobs = true }, "logprobs", "expected an integer" },
    { "suffix not a string", { model = "m", prompt = "x", suffix = 1 }, "suffix", "expected a string" },
    { "n below 1", { model = "m", prompt = "x", n = 0 }, "n", "below minimum value" },
    { "stop of numbers", { model = "m", prompt = "x", stop = { "a", 1 } }, "stop[1]", "expected a string" },
    { "include_usage not a boolean", { model = "m", prompt = "x", stream_options = { include_usage = 1 } },
      "stream_options.include_usage", "expected a boolean" },
  }
  for _, c in ipairs(cases) do
    it("rejects " .. c[1], function()
      local creq, err = decode(c[2])
      assert.is_nil(creq)
      assert.equal(400, err.status)
      assert.equal(c[3], err.param)
      assert.matches(c[4], err.message, 1, true)
    end)
  end
end)

describe("openai_completions translated", function()
  local function decode(t) return assert(completions.decode(json.encode(t))) end

  it("reaches an OpenAI chat upstream as one user message", function()
    local creq = decode({ model = "m", prompt = { "Write a haiku" }, max_tokens = 20, temperature = 0.2,
      stop = { "END" }, user = "u", stream = true, seed = 7, presence_penalty = 0.5, frequency_penalty = 0 })
    creq.upstream_model = "gpt-4o-mini"
    local wire = openai_adapter.request(creq, {})
    assert.same({ { role = "user", content = "Write a haiku" } }, wire.messages)
    assert.equal("gpt-4o-mini", wire.model)
    assert.equal(20, wire.max_tokens)
    assert.equal(0.2, wire.temperature)
    assert.same({ "END" }, wire.stop)
    assert.equal("u", wire.user)
    assert.is_true(wire.stream)
    assert.is_nil(wire.prompt)
    assert.is_nil(wire.seed) -- dropped, and said so
    table.sort(creq.dropped)
    assert.same({ "frequency_penalty", "presence_penalty", "seed" }, creq.dropped)
  end)

  it("reaches an Anthropic upstream with the legacy default of 16 tokens", function()
    local creq = decode({ model = "m", prompt = "Hello" })
    creq.upstream_model = "claude-x"
    local wire = anthropic_adapter.request(creq, {})
    assert.equal(16, wire.max_tokens)
    assert.same({ { role = "user", content = { { type = "text", text = "Hello" } } } }, wire.messages)
    assert.is_nil(wire.system)
  end)

  it("lets through the values clients send as defaults", function()
    -- what the SDKs and LangChain send when nothing is asked: harmless
    local creq = decode({ model = "m", prompt = "x", n = 1, best_of = 1, echo = false, suffix = json.null,
      logprobs = json.null, logit_bias = {}, max_tokens = 256 })
    assert.is_nil(refusal(canonical.foreign_fields, creq, "openai"))
    assert.is_nil(refusal(canonical.snapshot, creq))
    assert.is_nil(refusal(canonical.foreign_fields, decode({ model = "m", prompt = "x", suffix = "" }), "anthropic"))
  end)

  local refused = {
    { "several prompts", { prompt = { "a", "b" } }, "prompt", "not 2" },
    { "a token prompt", { prompt = { 1, 2, 3 } }, "prompt", "token ids" },
    { "token array prompts", { prompt = { { 1, 2 } } }, "prompt", "token ids" },
    { "an empty prompt list", { prompt = {} }, "prompt", "empty list" },
    { "a prompt list of objects", { prompt = { { a = 1 } } }, "prompt[0]", "expected a string" },
    { "echo", { prompt = "x", echo = true }, "echo", "echo the prompt" },
    { "a suffix", { prompt = "x", suffix = "y" }, "suffix", "suffix" },
    { "logprobs", { prompt = "x", logprobs = 2 }, "logprobs", "log probabilities" },
    { "best_of > 1", { prompt = "x", best_of = 3 }, "best_of", "best of several" },
    { "n > 1", { prompt = "x", n = 2 }, "n", "one completion per request" },
    { "max_tokens 0", { prompt = "x", max_tokens = 0 }, "max_tokens", "no completion" },
    { "a logit bias", { prompt = "x", logit_bias = { ["50256"] = -100 } }, "logit_bias", "token ids" },
    { "an unknown field", { prompt = "x", top_k = 5 }, "top_k", "unknown field" },
  }
  for _, c in ipairs(refused) do
    for _, ad in ipairs { { "OpenAI", openai_adapter }, { "Anthropic", anthropic_adapter } } do
      it("refuses " .. c[1] .. " for an " .. ad[1] .. "-format upstream, by name", function()
        local t = c[2]
        t.model = "m"
        local creq = decode(t)
        creq.upstream_model = "x"
        local err = refusal(ad[2].request, creq, {})
        assert(err, "expected a refusal")
        assert.equal(400, err.status)
        assert.equal(c[3], err.param)
        assert.matches(c[4], err.message, 1, true)
      end)
    end
  end
end)

describe("openai_completions answers", function()
  local creq = assert(completions.decode('{"model":"inst","prompt":"x","stream":true,"stream_options":{"include_usage":true}}'))

  local function stream(events, c)
    local e = completions.stream_encoder(c or creq, { id = "cmpl-1", created = 5 })
    local out = {}
    for _, ev in ipairs(events) do
      -- an error reaches the encoder as the exchange makes it of the event
      local frames = ev.type == "error" and e:error(errors.new(ev.status, ev.message)) or e:event(ev)
      for _, f in ipairs(frames) do out[#out + 1] = f end
    end
    return out
  end

  it("streams text_completion chunks the SDK reads, then usage and [DONE]", function()
    local frames = stream {
      { type = "start" }, { type = "thinking_delta", text = "hmm" }, { type = "text_delta", text = "a\"b" },
      { type = "usage", input_tokens = 2, output_tokens = 1, reasoning_tokens = 1 }, { type = "done", reason = "tool_use" },
    }
    assert.equal(4, #frames)
    local first = json.decode(frames[1])
    assert.same({ id = "cmpl-1", object = "text_completion", created = 5, model = "inst",
      choices = { { text = "a\"b", index = 0, logprobs = json.null, finish_reason = json.null } } }, first)
    -- no finish reason the SDK does not know: tool_use reads as stop
    assert.equal("stop", json.decode(frames[2]).choices[1].finish_reason)
    assert.equal("", json.decode(frames[2]).choices[1].text)
    local usage = json.decode(frames[3])
    assert.equal(0, #usage.choices)
    assert.same({ prompt_tokens = 2, completion_tokens = 1, total_tokens = 3,
      completion_tokens_details = { reasoning_tokens = 1 } }, usage.usage)
    assert.equal("[DONE]", frames[4])
  end)

  it("sends no usage chunk unless asked", function()
    local plain = assert(completions.decode('{"model":"inst","prompt":"x","stream":true}'))
    local frames = stream({ { type = "usage", input_tokens = 1, output_tokens = 1 }, { type = "done", reason = "content_filter" } }, plain)
    assert.equal(2, #frames)
    assert.equal("content_filter", json.decode(frames[1]).choices[1].finish_reason)
    assert.equal("[DONE]", frames[2])
  end)

  it("ends a failed stream with OpenAI's error object", function()
    local frames = stream { { type = "text_delta", text = "x" }, { type = "error", status = 429, message = "slow down" } }
    assert.equal(2, #frames)
    assert.same({ message = "slow down", type = "rate_limit_error", param = json.null, code = json.null },
      json.decode(frames[2]).error)
  end)

  it("collects one choice with its usage, thinking left out", function()
    local col = completions.collector(creq, { id = "cmpl-2", created = 9 })
    for _, ev in ipairs { { type = "thinking_delta", text = "hmm" }, { type = "text_delta", text = "4" },
      { type = "text_delta", text = "2" }, { type = "usage", input_tokens = 3, output_tokens = 2 },
      { type = "done", reason = "length" } } do
      col:event(ev)
    end
    local r = json.decode(json.encode(col:result()))
    assert.same({ id = "cmpl-2", object = "text_completion", created = 9, model = "inst",
      choices = { { text = "42", index = 0, logprobs = json.null, finish_reason = "length" } },
      usage = { prompt_tokens = 3, completion_tokens = 2, total_tokens = 5 } }, r)
  end)

  it("makes fresh cmpl- ids", function()
    local a = completions.collector(creq):result().id
    local b = completions.collector(creq):result().id
    assert.matches("^cmpl%-%w+$", a)
    assert.are_not.equal(a, b)
  end)
end)

describe("openai_embeddings", function()
  local function decode(t) return embeddings.decode(enc(t), { ["x-api-key"] = "k" }) end

  it("describes itself", function()
    assert.equal("serve", embeddings.routes["POST /v1/embeddings"])
    assert.same({ "/embeddings" }, embeddings.prefixes)
    assert.equal("embeddings", embeddings.client)
  end)

  it("decodes what routing and forwarding need, and nothing else", function()
    local body = '{"model":"e","input":["a","b"],"encoding_format":"base64","dimensions":8,"user":"u"}'
    local creq = assert(embeddings.decode(body, { authorization = "Bearer t" }))
    assert.equal("e", creq.model)
    assert.equal("embeddings", creq.endpoint)
    assert.is_false(creq.stream)
    assert.equal(body, creq.raw_body)
    assert.equal("t", creq.client_key)
    assert.same({ "a", "b" }, creq.raw.input)
    assert.is_nil(creq.messages)
  end)

  it("takes every input form OpenAI takes", function()
    for _, input in ipairs { "a", { "a", "b" }, { 1, 2, 3 }, { { 1, 2 }, { 3 } } } do
      assert(decode({ model = "e", input = input }))
    end
  end)

  local cases = {
    { "missing model", { input = "a" }, "model", "Missing required parameter: 'model'" },
    { "missing input", { model = "e" }, "input", "Missing required parameter: 'input'" },
    { "null input", { model = "e", input = json.null }, "input", "Missing required parameter: 'input'" },
    { "input a number", { model = "e", input = 3 }, "input", "expected one of a string, an array of strings" },
    { "an empty input list", { model = "e", input = {} }, "input", "empty array" },
    { "mixed strings and ids", { model = "e", input = { "a", 1 } }, "input[1]", "expected a string, but got an integer" },
    { "a float token id", { model = "e", input = { 1, 2.5 } }, "input[1]", "expected an integer" },
    { "a bad token in a token list", { model = "e", input = { { 1 }, { 2, "x" } } }, "input[1][1]", "expected an integer" },
    { "an empty token list", { model = "e", input = { { 1 }, {} } }, "input[1]", "non-empty array of integers" },
    { "an unknown encoding_format", { model = "e", input = "a", encoding_format = "int8" }, "encoding_format", "Supported values are: 'float' and 'base64'" },
    { "encoding_format not a string", { model = "e", input = "a", encoding_format = 1 }, "encoding_format", "expected a string" },
    { "dimensions 0", { model = "e", input = "a", dimensions = 0 }, "dimensions", "below minimum value" },
    { "dimensions not an integer", { model = "e", input = "a", dimensions = 1.5 }, "dimensions", "expected an integer" },
    { "user not a string", { model = "e", input = "a", user = 1 }, "user", "expected a string" },
  }
  for _, c in ipairs(cases) do
    it("rejects " .. c[1], function()
      local creq, err = decode(c[2])
      assert.is_nil(creq)
      assert.equal(400, err.status)
      assert.equal(c[3], err.param)
      assert.matches(c[4], err.message, 1, true)
    end)
  end

  it("refuses to be translated, should a provider try", function()
    local creq = assert(decode({ model = "e", input = "a" }))
    creq.upstream_model = "e"
    for _, ad in ipairs { openai_adapter, anthropic_adapter } do
      local err = refusal(ad.request, creq, {})
      assert.equal(400, err.status)
      assert.equal("model", err.param)
      assert.matches("cannot be translated", err.message, 1, true)
    end
  end)

  describe("accepts", function()
    local creq = assert(decode({ model = "nomic", input = "a" }))
    local function provider(serves)
      return { name = "p", serves = function(self, endpoint)
        assert.is_table(self) -- called as a method
        return serves[endpoint] == true
      end }
    end
    local function route(p, name) return { model = "nomic", chain = { { name = name or "local", provider = p } } } end

    it("lets through a model whose provider serves embeddings", function()
      assert.is_nil(embeddings.accepts(creq, route(provider { embeddings = true })))
    end)

    it("answers 404 naming the model and provider otherwise", function()
      for _, p in ipairs { provider { completions = true }, { name = "echo" }, false } do
        local err = embeddings.accepts(creq, route(p or nil, "local"))
        assert.equal(404, err.status)
        assert.equal("model_not_found", err.code)
        assert.equal("model", err.param)
        assert.equal("The model 'nomic' does not support embeddings: its provider 'local' declares none " ..
          "(set embeddings = true on an OpenAI-compatible provider).", err.message)
      end
    end)

    it("looks at the first provider of the chain only", function()
      local r = route({ name = "echo" }, "first")
      r.chain[2] = { name = "second", provider = provider { embeddings = true } }
      assert.matches("provider 'first'", embeddings.accepts(creq, r).message, 1, true)
    end)
  end)

  it("has no canonical answer: the collector and encoder fail loudly", function()
    local creq = assert(decode({ model = "e", input = "a" }))
    local col = embeddings.collector(creq)
    col:event({ type = "text_delta", text = "x" })
    col:event({ type = "done", reason = "stop" })
    local ok, err = pcall(col.result, col)
    assert.is_false(ok)
    assert.matches("forwarded as the upstream gave it", err, 1, true)
    local e = embeddings.stream_encoder(creq)
    assert.is_false(pcall(e.event, e, { type = "text_delta", text = "x" }))
    assert.same({ message = "boom", type = "server_error", param = json.null, code = json.null },
      json.decode(e:error(errors.new(500, "boom"))[1]).error)
  end)
end)

