-- The strict mock upstream standing in for the account upstreams, driven
-- over HTTP as the daemon will drive it: the GitHub Copilot API under
-- /copilot and the ChatGPT Codex backend under /backend-api/codex. GET
-- .../models answered by the mock (never from the queue) in each shape, and
-- settable; /_mock/auth's 401s in each path's error format; the Codex
-- backend's refusals ({"detail"}) and its Responses stream with reasoning
-- summaries; Copilot's required headers and routing by supported_endpoints.
-- A refused request uses up no script.
local H = require "helpers"
local json = require "moongate.json"
local client = H.client

local COPILOT = { Authorization = "Bearer cop-token", ["Editor-Version"] = "vscode/1.99.0",
  ["Copilot-Integration-Id"] = "vscode-chat", ["Content-Type"] = "application/json" }
local CODEX = { Authorization = "Bearer chatgpt-access", ["chatgpt-account-id"] = "acct_1",
  ["OpenAI-Beta"] = "responses=experimental", originator = "codex_cli_rs", session_id = "s1",
  ["Content-Type"] = "application/json" }

-- headers: base with changes (false removes one)
local function with(base, changes)
  local h = {}
  for k, v in pairs(base) do h[k] = v end
  for k, v in pairs(changes or {}) do h[k] = v or nil end
  return h
end

-- a body the Codex backend takes, with changes (json.null... removes a field)
local function codex_body(changes)
  local b = { model = "gpt-5.1-codex", instructions = "You are a helpful assistant.", stream = true, store = false,
    input = { { type = "message", role = "user", content = { { type = "input_text", text = "hello there" } } } },
    include = { "reasoning.encrypted_content" }, reasoning = { effort = "medium", summary = "auto" },
    tool_choice = "auto", parallel_tool_calls = true, prompt_cache_key = "thread-1" }
  for k, v in pairs(changes or {}) do
    if v == json.null then b[k] = nil else b[k] = v end
  end
  return b
end

describe("the mock upstream as the account upstreams", function()
  local mock

  setup(function() mock = H.mock() end)
  teardown(function() if mock then mock:stop() end end)
  before_each(function() mock:reset() end)

  local function req(method, path, body, headers)
    local b = body
    if type(body) == "table" then b = json.encode(body) end
    local res = assert(client.request(mock.port, method, path, b, headers))
    res.json = json.decode(res.body)
    return res
  end
  local function post(path, body, headers) return req("POST", path, body, headers) end
  local function control(path, body) return post(path, body, { ["Content-Type"] = "application/json" }) end
  local function last_record()
    local rs = mock:requests()
    return rs[#rs]
  end
  -- the SSE events of a body: their types in order, and the decoded data
  local function events(body)
    local data = client.sse_data(body)
    local types, out = {}, {}
    for i, d in ipairs(data) do
      out[i] = json.decode(d)
      types[i] = out[i].type
    end
    return types, out
  end

  describe("GET .../models", function()
    it("answers the Copilot list itself, in Copilot's shape, and leaves the queue alone", function()
      mock:queue { { reply = { text = "scripted" } } }
      local res = req("GET", "/copilot/models", nil, COPILOT)
      assert.equal(200, res.status)
      assert.equal("list", res.json.object)
      local by = {}
      for _, m in ipairs(res.json.data) do by[m.id] = m end
      assert.same({ "/chat/completions" }, by["gpt-4.1"].supported_endpoints)
      assert.same({ "/v1/messages", "/chat/completions" }, by["claude-sonnet-4.5"].supported_endpoints)
      assert.same({ "/responses" }, by["gpt-5.1-codex"].supported_endpoints)
      assert.same({ "/chat/completions", "/responses" }, by["gpt-5-mini"].supported_endpoints)
      local claude = by["claude-sonnet-4.5"]
      assert.equal("model", claude.object)
      assert.equal("Anthropic", claude.vendor)
      assert.equal("claude-sonnet-4.5", claude.name)
      assert.equal("chat", claude.capabilities.type)
      assert.equal("claude-sonnet-4.5", claude.capabilities.family)
      assert.is_number(claude.capabilities.limits.max_context_window_tokens)
      assert.is_true(claude.capabilities.supports.tool_calls)
      assert.equal("enabled", claude.policy.state)
      assert.is_true(claude.billing.is_premium)
      local embed = by["text-embedding-3-small"]
      assert.equal("embeddings", embed.capabilities.type)
      assert.is_nil(embed.supported_endpoints)
      -- the script is still there for the next API request
      res = post("/copilot/chat/completions", { model = "gpt-4.1", messages = { { role = "user", content = "hi" } } },
        COPILOT)
      assert.equal("scripted", res.json.choices[1].message.content)
      local rs = mock:requests()
      assert.equal(2, #rs)
      assert.equal("/copilot/models", rs[1].path)
      assert.equal("vscode-chat", rs[1].headers["copilot-integration-id"])
    end)

    it("answers the Codex backend's list in its shape (ModelInfo)", function()
      local res = req("GET", "/backend-api/codex/models?client_version=0.58.0", nil, CODEX)
      assert.equal(200, res.status)
      assert.is_nil(res.json.data)
      local slugs = {}
      for i, m in ipairs(res.json.models) do slugs[i] = m.slug end
      assert.same({ "gpt-5.1-codex", "gpt-5.1" }, slugs)
      local m = res.json.models[1]
      assert.equal("gpt-5.1-codex", m.display_name)
      assert.same({ "low", "medium", "high" }, { m.supported_reasoning_levels[1].effort,
        m.supported_reasoning_levels[2].effort, m.supported_reasoning_levels[3].effort })
      assert.is_string(m.supported_reasoning_levels[1].description)
      assert.equal("medium", m.default_reasoning_level)
      assert.is_true(m.supports_reasoning_summaries)
      assert.equal("list", m.visibility)
      assert.is_string(m.base_instructions)
      assert.equal("tokens", m.truncation_policy.mode)
      assert.is_number(m.context_window)
      assert.equal("/backend-api/codex/models?client_version=0.58.0", last_record().path)
    end)

    it("serves the lists POST /_mock/models sets, each kept until set again or reset", function()
      local res = control("/_mock/models", { copilot = { { id = "gpt-x", supported_endpoints = { "/responses" } },
        "claude-opus-4" } })
      assert.equal(200, res.status)
      local data = req("GET", "/copilot/models", nil, COPILOT).json.data
      assert.equal(2, #data)
      assert.equal("gpt-x", data[1].id)
      assert.same({ "/responses" }, data[1].supported_endpoints)
      assert.equal("Anthropic", data[2].vendor)
      -- the Codex list was not given: it stays
      assert.equal(2, #req("GET", "/backend-api/codex/models", nil, CODEX).json.models)
      control("/_mock/models", { codex = { { slug = "gpt-9", efforts = { "high" }, context_window = 5 } } })
      local models = req("GET", "/backend-api/codex/models", nil, CODEX).json.models
      assert.equal(1, #models)
      assert.equal("gpt-9", models[1].slug)
      assert.equal(5, models[1].context_window)
      assert.equal(1, #models[1].supported_reasoning_levels)
      assert.equal(2, #req("GET", "/copilot/models", nil, COPILOT).json.data)
      -- an empty list is []
      control("/_mock/models", '{"codex": []}')
      -- a list that is no list is refused, and changes nothing
      assert.equal(400, control("/_mock/models", { copilot = "gpt-4.1" }).status)
      local raw = req("GET", "/backend-api/codex/models", nil, CODEX).body
      assert.truthy(raw:find('"models":[]', 1, true), raw)
      mock:reset()
      assert.equal(5, #req("GET", "/copilot/models", nil, COPILOT).json.data)
      assert.equal(2, #req("GET", "/backend-api/codex/models", nil, CODEX).json.models)
    end)

    it("routes by the models it serves: a list set changes what each endpoint takes", function()
      local body = { model = "gpt-4.1", input = "hi" }
      local res = post("/copilot/responses", body, COPILOT)
      assert.equal(400, res.status)
      control("/_mock/models", { copilot = { { id = "gpt-4.1", supported_endpoints = { "/responses" } } } })
      res = post("/copilot/responses", body, COPILOT)
      assert.equal(200, res.status)
      assert.equal("response", res.json.object)
    end)
  end)

  describe("POST /_mock/auth", function()
    it("answers a bearer other than the one set with 401 in the path's error format, using up no script", function()
      assert.equal(200, control("/_mock/auth", { bearer = "good" }).status)
      mock:queue { { reply = { text = "kept" } } }
      local chat = { model = "m", messages = { { role = "user", content = "hi" } } }
      local res = post("/v1/chat/completions", chat, { Authorization = "Bearer bad" })
      assert.equal(401, res.status)
      assert.equal("invalid_api_key", res.json.error.code)
      local r = last_record()
      assert.equal("unauthorized", r.rejected)
      res = post("/v1/messages", { model = "m", max_tokens = 5, messages = { { role = "user", content = "hi" } } },
        { ["x-api-key"] = "bad" })
      assert.equal(401, res.status)
      assert.equal("authentication_error", res.json.error.type)
      res = post("/copilot/chat/completions", { model = "gpt-4.1", messages = { { role = "user", content = "hi" } } },
        with(COPILOT, { Authorization = "Bearer bad" }))
      assert.equal(401, res.status)
      assert.equal("text/plain", res.headers["content-type"]:match("^[^;]+"))
      assert.truthy(res.body:find("unauthorized", 1, true))
      res = post("/backend-api/codex/responses", codex_body(), with(CODEX, { Authorization = "Bearer bad" }))
      assert.equal(401, res.status)
      assert.truthy(res.json.detail:find("authentication token", 1, true))
      -- even GET .../models asks for the bearer
      assert.equal(401, req("GET", "/copilot/models", nil, with(COPILOT, { Authorization = false })).status)
      -- a missing Authorization is refused too; the right one is served the script
      assert.equal(401, post("/v1/chat/completions", chat, {}).status)
      res = post("/v1/chat/completions", chat, { Authorization = "Bearer good" })
      assert.equal(200, res.status)
      assert.equal("kept", res.json.choices[1].message.content)
      -- an Anthropic client's x-api-key
      res = post("/v1/messages", { model = "m", max_tokens = 5, messages = { { role = "user", content = "hey" } } },
        { ["x-api-key"] = "good" })
      assert.equal(200, res.status)
      -- stopped: anything goes again
      control("/_mock/auth", { bearer = json.null })
      assert.equal(200, post("/v1/chat/completions", chat, { Authorization = "Bearer whatever" }).status)
    end)

    it("holds with strict off, and is forgotten by a reset", function()
      control("/_mock/auth", { bearer = "good" })
      control("/_mock/strict", { strict = false })
      local chat = { model = "m", messages = { { role = "user", content = "hi" } } }
      assert.equal(401, post("/v1/chat/completions", chat, { Authorization = "Bearer bad" }).status)
      mock:reset()
      assert.equal(200, post("/v1/chat/completions", chat, { Authorization = "Bearer bad" }).status)
    end)
  end)

  describe("the Codex backend", function()
    it("answers a request Codex would send as a Responses stream with a reasoning summary", function()
      local res = post("/backend-api/codex/responses", codex_body(), CODEX)
      assert.equal(200, res.status, res.body)
      assert.equal("text/event-stream", res.headers["content-type"])
      local types, evs = events(res.body)
      assert.equal("response.created", types[1])
      assert.equal("response.completed", types[#types])
      local done = evs[#evs].response
      assert.equal("reasoning", done.output[1].type)
      assert.equal("The user said: hello there", done.output[1].summary[1].text)
      assert.is_string(done.output[1].encrypted_content)
      assert.equal("hello there", done.output[2].content[1].text)
      assert.truthy(types[4] == "response.reasoning_summary_part.added", table.concat(types, " "))
      -- the next turn brings that reasoning item back, as a stateless client does
      local body = codex_body()
      body.input[#body.input + 1] = done.output[1]
      -- (the message as a client writes it back: this JSON library reads [] as {})
      body.input[#body.input + 1] = { type = "message", role = "assistant",
        content = { { type = "output_text", text = done.output[2].content[1].text } } }
      body.input[#body.input + 1] = { type = "message", role = "user", content = { { type = "input_text", text = "more" } } }
      local res2 = post("/backend-api/codex/responses", body, CODEX)
      assert.equal(200, res2.status, res2.body)
      -- a forged encrypted_content is refused by the Responses checks, in OpenAI's shape
      body.input[2].encrypted_content = "gAAAAforged"
      res = post("/backend-api/codex/responses", body, CODEX)
      assert.equal(400, res.status)
      assert.truthy(res.json.error.message:find("could not be verified", 1, true))
    end)

    it("writes a scripted reasoning summary only when the request asks one", function()
      mock:queue { { reply = { thinking = "plan it", text = "done" } }, { reply = { thinking = "plan it", text = "done" } } }
      local _, evs = events(post("/backend-api/codex/responses", codex_body(), CODEX).body)
      local out = evs[#evs].response.output
      assert.equal("plan it", out[1].summary[1].text)
      local body = codex_body { reasoning = { effort = "low" } }
      local types
      types, evs = events(post("/backend-api/codex/responses", body, CODEX).body)
      out = evs[#evs].response.output
      assert.equal("reasoning", out[1].type)
      assert.same({}, out[1].summary)
      assert.is_string(out[1].encrypted_content)
      for _, t in ipairs(types) do assert.not_equal("response.reasoning_summary_text.delta", t) end
      -- and the echo does not think without being asked
      _, evs = events(post("/backend-api/codex/responses", body, CODEX).body)
      assert.equal("message", evs[#evs].response.output[1].type)
    end)

    it("refuses what the real backend refuses, in its {detail} shape, using up no script", function()
      mock:queue { { reply = { text = "kept" } } }
      local cases = {
        { { temperature = 0.5 }, "Unsupported parameter: temperature" },
        { { max_output_tokens = 100 }, "Unsupported parameter: max_output_tokens" },
        { { top_p = 1 }, "Unsupported parameter: top_p" },
        { { previous_response_id = "resp_1" }, "Unsupported parameter: previous_response_id" },
        { { metadata = { a = "b" } }, "Unsupported parameter: metadata" },
        { { truncation = "auto" }, "Unsupported parameter: truncation" },
        { { safety_identifier = "u" }, "Unsupported parameter: safety_identifier" },
        { { stream_options = { include_obfuscation = false } }, "Unsupported parameter: stream_options" },
        { { service_tier = "auto" }, "Unsupported parameter: service_tier" },
        { { instructions = json.null }, "Instructions are required" },
        { { store = json.null }, "Store must be set to false" },
        { { store = true }, "Store must be set to false" },
        { { stream = false }, "Stream must be set to true" },
        { { stream = json.null }, "Stream must be set to true" },
        { { model = "gpt-4o" }, "The 'gpt-4o' model is not supported when using Codex with a ChatGPT account." },
      }
      for _, c in ipairs(cases) do
        local res = post("/backend-api/codex/responses", codex_body(c[1]), CODEX)
        assert.equal(400, res.status, c[2])
        assert.same({ detail = c[2] }, res.json)
        assert.equal(c[2], last_record().rejected)
      end
      -- an effort the model does not list: the Responses API's words
      local res = post("/backend-api/codex/responses", codex_body { reasoning = { effort = "xhigh", summary = "auto" } },
        CODEX)
      assert.equal(400, res.status)
      assert.equal("unsupported_value", res.json.error.code)
      assert.equal("reasoning.effort", res.json.error.param)
      assert.truthy(res.json.error.message:find("'xhigh'", 1, true))
      -- the Responses API's own checks still hold behind the backend's
      res = post("/backend-api/codex/responses", codex_body { input = { { type = "message", role = "user" } } }, CODEX)
      assert.equal(400, res.status)
      assert.equal("Missing required parameter: 'input[0].content'.", res.json.error.message)
      -- what Codex sends for its fast mode is taken, and the script was kept for it
      res = post("/backend-api/codex/responses", codex_body { service_tier = "priority", text = { verbosity = "low" },
        client_metadata = { x = "y" } }, CODEX)
      assert.equal(200, res.status, res.body)
      local _, evs = events(res.body)
      assert.equal("kept", evs[#evs].response.output[1].content[1].text)
    end)

    it("needs Authorization and chatgpt-account-id, and records the other headers", function()
      local res = post("/backend-api/codex/responses", codex_body(), with(CODEX, { Authorization = false }))
      assert.equal(401, res.status)
      assert.truthy(res.json.detail:find("authentication token", 1, true))
      res = post("/backend-api/codex/responses", codex_body(), with(CODEX, { Authorization = "Basic abc" }))
      assert.equal(401, res.status)
      res = post("/backend-api/codex/responses", codex_body(), with(CODEX, { ["chatgpt-account-id"] = false }))
      assert.equal(400, res.status)
      assert.equal("Missing chatgpt-account-id header", res.json.detail)
      assert.equal("Missing chatgpt-account-id header", last_record().rejected)
      assert.equal(400, req("GET", "/backend-api/codex/models", nil, with(CODEX, { ["chatgpt-account-id"] = false })).status)
      -- OpenAI-Beta, originator and session_id are not required, but recorded
      res = post("/backend-api/codex/responses", codex_body(), with(CODEX, { ["OpenAI-Beta"] = false }))
      assert.equal(200, res.status)
      post("/backend-api/codex/responses", codex_body(), CODEX)
      local h = last_record().headers
      assert.equal("responses=experimental", h["openai-beta"])
      assert.equal("codex_cli_rs", h.originator)
      assert.equal("s1", h.session_id)
      assert.equal("acct_1", h["chatgpt-account-id"])
    end)

    it("takes anything with strict off", function()
      control("/_mock/strict", { strict = false })
      local res = post("/backend-api/codex/responses", codex_body { temperature = 1, stream = json.null, store = true },
        with(CODEX, { ["chatgpt-account-id"] = false }))
      assert.equal(200, res.status)
      assert.equal("response", res.json.object)
    end)
  end)

  describe("the Copilot API", function()
    local chat = { model = "gpt-4.1", messages = { { role = "user", content = "hi" } } }

    it("needs Editor-Version and Copilot-Integration-Id (400, text/plain) and a bearer (401)", function()
      mock:queue { { reply = { text = "kept" } } }
      local res = post("/copilot/chat/completions", chat, with(COPILOT, { ["Editor-Version"] = false }))
      assert.equal(400, res.status)
      assert.equal("text/plain", res.headers["content-type"]:match("^[^;]+"))
      assert.equal("bad request: missing Editor-Version header for IDE auth\n", res.body)
      res = post("/copilot/chat/completions", chat, with(COPILOT, { ["Copilot-Integration-Id"] = false }))
      assert.equal(400, res.status)
      assert.truthy(res.body:find("Copilot-Integration-Id", 1, true))
      assert.equal(401, post("/copilot/chat/completions", chat, with(COPILOT, { Authorization = false })).status)
      assert.equal(400, req("GET", "/copilot/models", nil, with(COPILOT, { ["Editor-Version"] = false })).status)
      res = post("/copilot/chat/completions", chat, COPILOT)
      assert.equal(200, res.status)
      assert.equal("kept", res.json.choices[1].message.content)
    end)

    it("serves each model at the endpoints its supported_endpoints name, and refuses the others", function()
      local ok = {
        { "/copilot/chat/completions", chat },
        { "/copilot/chat/completions", { model = "claude-sonnet-4.5", messages = { { role = "user", content = "hi" } } } },
        { "/copilot/v1/messages", { model = "claude-sonnet-4.5", max_tokens = 100,
          messages = { { role = "user", content = "hi" } } } },
        { "/copilot/responses", { model = "gpt-5.1-codex", input = "hi" } },
        { "/copilot/responses", { model = "gpt-5-mini", input = "hi" } },
        { "/copilot/chat/completions", { model = "gpt-5-mini", messages = { { role = "user", content = "hi" } } } },
        { "/copilot/embeddings", { model = "text-embedding-3-small", input = "hi" } },
      }
      for _, c in ipairs(ok) do
        local res = post(c[1], c[2], COPILOT)
        assert.equal(200, res.status, c[1] .. " " .. c[2].model .. ": " .. res.body)
      end
      local refused = {
        { "/copilot/responses", { model = "gpt-4.1", input = "hi" }, "/responses" },
        { "/copilot/chat/completions", { model = "gpt-5.1-codex", messages = { { role = "user", content = "hi" } } },
          "/chat/completions" },
        { "/copilot/v1/messages", { model = "gpt-4.1", max_tokens = 10, messages = { { role = "user", content = "hi" } } },
          "/v1/messages" },
        { "/copilot/chat/completions", { model = "text-embedding-3-small", messages = { { role = "user", content = "x" } } },
          "/chat/completions" },
      }
      for _, c in ipairs(refused) do
        local res = post(c[1], c[2], COPILOT)
        assert.equal(400, res.status, c[1])
        assert.equal("unsupported_api_for_model", res.json.error.code)
        local want = string.format('model "%s" is not accessible via the %s endpoint', c[2].model, c[3])
        assert.equal(want, res.json.error.message)
        assert.equal(want, last_record().rejected)
      end
      local res = post("/copilot/chat/completions", { model = "gpt-nope", messages = { { role = "user", content = "hi" } } },
        COPILOT)
      assert.equal(400, res.status)
      assert.equal("model_not_supported", res.json.error.code)
      assert.equal("The requested model is not supported.", res.json.error.message)
    end)

    it("checks each endpoint as strictly as its API", function()
      -- Anthropic messages: max_tokens required, in Anthropic's shape
      local res = post("/copilot/v1/messages", { model = "claude-sonnet-4.5", messages = { { role = "user", content = "hi" } } },
        COPILOT)
      assert.equal(400, res.status)
      assert.equal("invalid_request_error", res.json.error.type)
      assert.equal("max_tokens: Field required", res.json.error.message)
      -- Responses: unknown parameters refused
      res = post("/copilot/responses", { model = "gpt-5.1-codex", input = "hi", max_tokens = 5 }, COPILOT)
      assert.equal(400, res.status)
      assert.equal("Unknown parameter: 'max_tokens'.", res.json.error.message)
      -- chat: a tool message answering no call
      res = post("/copilot/chat/completions", { model = "gpt-4.1", messages = { { role = "user", content = "hi" },
        { role = "tool", tool_call_id = "call_x", content = "r" } } }, COPILOT)
      assert.equal(400, res.status)
      assert.is_string(last_record().rejected)
      -- a Claude answer streamed at /v1/messages is Anthropic's SSE, with its thinking
      mock:queue { { reply = { thinking = "hmm", signature = "sig", text = "hello" } } }
      res = post("/copilot/v1/messages", { model = "claude-sonnet-4.5", max_tokens = 3000, stream = true,
        thinking = { type = "enabled", budget_tokens = 1024 }, messages = { { role = "user", content = "hi" } } },
        with(COPILOT, { ["anthropic-beta"] = "interleaved-thinking-2025-05-14" }))
      assert.equal(200, res.status, res.body)
      local _, evs = client.sse_data(res.body)
      assert.equal("message_start", evs[1])
      assert.truthy(res.body:find('"thinking":"hmm"', 1, true), res.body)
    end)
  end)
end)
