-- Model discovery and the local servers' presets (issue 19): the real
-- daemon lists a provider's models from its upstream's /v1/models, routes
-- them by name when no config route claims them, follows the list as it
-- changes, and keeps the last list (marked in /stats) while the upstream
-- is down. The mock upstream's own model list stands in for the server's.
local H = require "helpers"
local json = require "moongate.json"

local function ids_of(server)
  local out = {}
  for _, m in ipairs(json.decode(assert(server:request("GET", "/v1/models")).body).data) do out[m.id] = true end
  return out
end

describe("model discovery", function()
  local up, server

  setup(function()
    up = H.mock()
    up:post("/_mock/models", { copilot = { "llama-3.1-8b", "qwen3-32b" } })
    server = H.start { config = string.format([[
return {
  providers = {
    gpu = { kind = "vllm", base_url = %q, models_ttl_s = 1, retries = 0 },
    cpp = { kind = "llamacpp", base_url = %q, discover = false, retries = 0 },
  },
  routes = { { match = "cpp-*", provider = "cpp" } },
}]], up.url .. "/v1", up.url .. "/v1") }
  end)
  teardown(function()
    if server then server:stop_clean() end
    if up then up:stop() end
  end)

  it("routes the upstream's own models by name and lists them", function()
    assert.truthy(H.client.run_until(function() return ids_of(server)["qwen3-32b"] end, 5000))
    local res = assert(server:request("POST", "/v1/chat/completions", json.encode {
      model = "qwen3-32b", reasoning_effort = "high", messages = { { role = "user", content = "hi" } } }, nil, 15000))
    assert.equal(200, res.status, res.body)
    local sent
    for _, r in ipairs(up:requests()) do if r.method == "POST" then sent = r end end
    assert.equal("/v1/chat/completions", sent.path)
    local body = json.decode(sent.body)
    assert.equal("qwen3-32b", body.model)
    -- vLLM's reasoning switches: the effort, and the chat template's enable_thinking
    assert.equal("high", body.reasoning_effort)
    assert.is_true(body.chat_template_kwargs.enable_thinking)
    assert.is_nil(sent.headers.authorization) -- a local server needs no key
    -- a preset with discovery off is asked by its route only; llama.cpp's reasoning format
    res = assert(server:request("POST", "/v1/chat/completions", json.encode {
      model = "cpp-model", reasoning_effort = "none", messages = { { role = "user", content = "hi" } } }, nil, 15000))
    assert.equal(200, res.status, res.body)
    local reqs = up:requests()
    body = json.decode(reqs[#reqs].body)
    assert.equal("deepseek", body.reasoning_format)
    assert.is_false(body.chat_template_kwargs.enable_thinking)
    -- a name nobody lists is still the client's 404
    res = assert(server:request("POST", "/v1/chat/completions", json.encode {
      model = "nobody-has-it", messages = { { role = "user", content = "hi" } } }))
    assert.equal(404, res.status)
  end)

  it("follows the list as it changes, and keeps the last one while the upstream is down", function()
    up:post("/_mock/models", { copilot = { "mistral-7b" } })
    assert.truthy(H.client.run_until(function() return ids_of(server)["mistral-7b"] end, 5000))
    assert.is_nil(ids_of(server)["qwen3-32b"]) -- gone from the upstream: gone here
    local res = assert(server:request("POST", "/v1/chat/completions", json.encode {
      model = "qwen3-32b", messages = { { role = "user", content = "hi" } } }))
    assert.equal(404, res.status)
    local stats = json.decode(assert(server:request("GET", "/stats")).body)
    assert.equal(1, stats.discovery.gpu.models)
    assert.is_nil(stats.discovery.gpu.down)
    assert.is_nil(stats.discovery.cpp) -- discovery off

    up:stop()
    up = nil
    assert.truthy(H.client.run_until(function()
      return json.decode(assert(server:request("GET", "/stats")).body).discovery.gpu.down
    end, 5000))
    assert.is_true(ids_of(server)["mistral-7b"]) -- the last list stands
    assert.matches("cannot list its models", server.log)
  end)
end)

describe("local server presets", function()
  it("send no key of the environment's, switch thinking off when asked, and find a server that starts later", function()
    local port = H.refused_port()
    local server = H.start { env = { OPENAI_API_KEY = "sk-must-not-leave-0123456789" }, config = string.format([[
return { providers = { gpu = { kind = "vllm", base_url = "http://127.0.0.1:%d/v1", retries = 0 } } }]], port) }
    local up
    finally(function() -- (one finally per test: busted keeps the last one given)
      server:stop_clean()
      if up then up:stop() end
    end)
    H.client.run_until(function() return false end, 500) -- the first listing fails: nothing there yet
    H.release(port)
    up = H.mock(nil, port)
    up:post("/_mock/models", { copilot = { "qwen3:latest" } })
    -- retried within seconds, not after models_ttl_s (600)
    assert.truthy(H.client.run_until(function() return ids_of(server)["qwen3:latest"] end, 9000))
    local res = assert(server:request("POST", "/v1/messages", json.encode {
      model = "qwen3", max_tokens = 64, thinking = { type = "disabled" },
      messages = { { role = "user", content = "hi" } } }, { ["anthropic-version"] = "2023-06-01" }, 15000))
    assert.equal(200, res.status, res.body)
    local sent = up:requests("/v1/chat/completions")[1]
    local body = json.decode(sent.body)
    assert.equal("qwen3:latest", body.model) -- the bare name, as Ollama's users type it
    assert.is_false(body.chat_template_kwargs.enable_thinking)
    for _, r in ipairs(up:requests()) do assert.is_nil(r.headers.authorization) end
  end)
end)
