-- Subscriptions served to ordinary clients (issue 18): the real daemon with
-- providers of kind copilot and chatgpt, their accounts stored under
-- MOONGATE_HOME, in front of the mock GitHub (spec/support/mock_accounts.lua:
-- the Copilot token exchange) and the mock upstream standing in for the
-- Copilot API (/copilot) and the Codex backend (/backend-api/codex), both as
-- strict as the real ones about headers, endpoints and fields. Every answer
-- the clients got and the daemon's verbose log are searched at the end for
-- every secret used, finding none.
local H = require "helpers"
local json = require "moongate.json"

local GH_TOKEN = "gho_specGithubToken0123456789"
local CG = { -- two ChatGPT accounts (a pool)
  { name = "cga", access = "cg-access-aaaa-0123456789", refresh = "cg-refresh-aaaa-0123456789", id = "acct-a" },
  { name = "cgb", access = "cg-access-bbbb-0123456789", refresh = "cg-refresh-bbbb-0123456789", id = "acct-b" },
}

local write_account = H.write_account

-- write_accounts(home): the Copilot account "work" and the ChatGPT accounts of CG
local function write_accounts(home)
  write_account(home, { name = "work", kind = "copilot", login = "octocat", github_token = GH_TOKEN,
    created_at = os.time(), refreshed_at = os.time() })
  for _, a in ipairs(CG) do
    write_account(home, { name = a.name, kind = "chatgpt", login = a.name .. "@example.com",
      access_token = a.access, refresh_token = a.refresh, id_token = "x", account_id = a.id,
      expires_at = os.time() + 86400, created_at = os.time(), refreshed_at = os.time() })
  end
end

-- mocks() -> the mock upstream, the mock GitHub (taking GH_TOKEN), a scratch
-- folder, and a home in it with write_accounts' accounts
local function mocks()
  local up, gh = H.mock(), H.mock("spec/support/mock_accounts.lua")
  gh:post("/_mock/github_token", { token = GH_TOKEN })
  local dirs = H.scratch()
  local home = dirs.fresh().home
  write_accounts(home)
  return up, gh, dirs, home
end

describe("accounts: copilot and chatgpt providers", function()
  local up, gh, server, dirs, home
  local answers = {} -- every body a client got, for the leak search

  local function post(path, body, headers)
    local res = assert(server:request("POST", path, json.encode(body), headers, 20000))
    answers[#answers + 1] = res.body
    return res
  end
  local function chat(model, messages, extra)
    local body = { model = model, messages = messages }
    for k, v in pairs(extra or {}) do body[k] = v end
    return post("/v1/chat/completions", body)
  end
  local function last_request(path_part)
    local reqs = up:requests()
    for i = #reqs, 1, -1 do
      if reqs[i].path:find(path_part, 1, true) and reqs[i].method == "POST" then return reqs[i] end
    end
  end
  local function exchanges()
    local n = 0
    for _, r in ipairs(gh:get("/_mock/requests")) do
      if r.path:find("/copilot_internal/v2/token", 1, true) then n = n + 1 end
    end
    return n
  end

  setup(function()
    up, gh, dirs, home = mocks()
    server = H.start { workers = 1, env = { MOONGATE_HOME = home, MOONGATE_GITHUB_API_URL = gh.url },
      config = string.format([[
return {
  log_level = "debug",
  providers = {
    gh = { kind = "copilot", account = "work", base_url = %q, retries = 0 },
    cg = { kind = "chatgpt", accounts = { "cga", "cgb" }, base_url = %q, retries = 0 },
  },
  routes = {
    { match = "gh/*", provider = "gh", strip = "gh/" },
    { match = "cg/*", provider = "cg", strip = "cg/" },
  },
}]], up.url .. "/copilot", up.url .. "/backend-api/codex") }
  end)
  teardown(function()
    if server then server:stop_clean() end
    if up then up:stop() end
    if gh then gh:stop() end
    if dirs then dirs.remove() end
  end)
  before_each(function()
    -- (the model lists stay: a reset keeps the mock's default lists)
    up:reset()
  end)

  describe("copilot", function()
    it("sends every Copilot header; X-Initiator is user for the user's own turn, agent for a tool result", function()
      local res = chat("gh/gpt-4.1", { { role = "user", content = "hello" } })
      assert.equal(200, res.status, res.body)
      local r = assert(last_request("/copilot/chat/completions"))
      local h = r.headers
      assert.matches("^Bearer tid=", h.authorization) -- the Copilot token, not the GitHub one
      assert.equal("vscode-chat", h["copilot-integration-id"])
      assert.matches("^vscode/", h["editor-version"])
      assert.matches("^copilot%-chat/", h["editor-plugin-version"])
      assert.matches("^GitHubCopilotChat/", h["user-agent"])
      assert.equal("conversation-panel", h["openai-intent"])
      assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", h["x-request-id"])
      assert.equal("user", h["x-initiator"])
      assert.is_nil(h["copilot-vision-request"])
      assert.equal("gpt-4.1", json.decode(r.body).model) -- the prefix stripped

      res = chat("gh/gpt-4.1", {
        { role = "user", content = "weather?" },
        { role = "assistant", content = json.null, tool_calls = { { id = "call_1", type = "function",
          ["function"] = { name = "get_weather", arguments = "{}" } } } },
        { role = "tool", tool_call_id = "call_1", content = "sunny" },
      }, { tools = { { type = "function", ["function"] = { name = "get_weather", parameters = { type = "object" } } } } })
      assert.equal(200, res.status, res.body)
      assert.equal("agent", last_request("/copilot/chat/completions").headers["x-initiator"])

      res = chat("gh/gpt-4.1", { { role = "user", content = {
        { type = "text", text = "what is this?" },
        { type = "image_url", image_url = { url = "data:image/png;base64,iVBORw0KGgo=" } } } } })
      assert.equal(200, res.status, res.body)
      local v = last_request("/copilot/chat/completions").headers
      assert.equal("true", v["copilot-vision-request"])
      assert.equal("user", v["x-initiator"])
    end)

    it("routes each model to the endpoint its supported_endpoints name", function()
      -- a Claude model, asked by a chat client: Anthropic messages, with interleaved thinking
      local res = chat("gh/claude-sonnet-4.5", { { role = "user", content = "hi" } })
      assert.equal(200, res.status, res.body)
      local r = assert(last_request("/copilot/v1/messages"))
      assert.matches("interleaved%-thinking%-2025%-05%-14", r.headers["anthropic-beta"])
      assert.matches("^Bearer ", r.headers.authorization)
      assert.is_nil(r.headers["x-api-key"])
      -- a codex model, asked by an Anthropic client: the Responses API
      res = post("/v1/messages", { model = "gh/gpt-5.1-codex", max_tokens = 64,
        messages = { { role = "user", content = "hi" } } }, { ["anthropic-version"] = "2023-06-01" })
      assert.equal(200, res.status, res.body)
      assert.equal("message", json.decode(res.body).type)
      assert.truthy(last_request("/copilot/responses"))
      -- a model with both chat and Responses: a Responses client keeps its format
      res = post("/v1/responses", { model = "gh/gpt-5-mini", input = "hi" })
      assert.equal(200, res.status, res.body)
      assert.equal("gpt-5-mini", json.decode(last_request("/copilot/responses").body).model)
      -- the models are listed, with the provider's prefix
      local list = json.decode(assert(server:request("GET", "/v1/models")).body)
      local ids = {}
      for _, m in ipairs(list.data) do ids[m.id] = true end
      assert.is_true(ids["gh/gpt-4.1"] and ids["gh/claude-sonnet-4.5"] and true or false)
    end)

    it("exchanges the GitHub token once for many requests, again after a 401 (then retries once), and before expiry", function()
      chat("gh/gpt-4.1", { { role = "user", content = "warm" } })
      local before = exchanges()
      for i = 1, 3 do assert.equal(200, chat("gh/gpt-4.1", { { role = "user", content = "n" .. i } }).status) end
      assert.equal(before, exchanges()) -- cached: no exchange per request

      -- the Copilot API refuses the token: one new exchange, the request again
      gh:post("/_mock/config", { copilot_refresh_in = 2 }) -- the next token is due in 1 s (half its life)
      up:queue { { status = 401, body = "unauthorized: token expired", headers = { ["content-type"] = "text/plain" } } }
      local res = chat("gh/gpt-4.1", { { role = "user", content = "again" } })
      assert.equal(200, res.status, res.body)
      assert.equal(before + 1, exchanges())
      local reqs, auths = up:requests(), {}
      for _, r in ipairs(reqs) do
        if r.path == "/copilot/chat/completions" then auths[#auths + 1] = r.headers.authorization end
      end
      assert.equal(6, #auths) -- warm, 3, then the refused one and its retry
      assert.equal(auths[1], auths[5])
      assert.not_equal(auths[5], auths[6])

      -- refresh_in - 60 s has passed: the next request exchanges first
      H.client.run_until(function() return false end, 1300)
      assert.equal(200, chat("gh/gpt-4.1", { { role = "user", content = "later" } }).status)
      assert.equal(before + 2, exchanges())
      gh:post("/_mock/config", { copilot_refresh_in = 1500 })
    end)
  end)

  describe("chatgpt", function()
    local REPLY = { reply = { thinking = "Weighing the cities", text = "Checking Paris.",
      tool_calls = { { id = "call_w1", name = "get_weather", input = { city = "Paris" } } } } }
    local TOOLS_CHAT = { { type = "function", ["function"] = { name = "get_weather",
      parameters = { type = "object", properties = { city = { type = "string" } } } } } }

    it("sends the backend what it takes, and streams text, a reasoning summary and a call to a chat client", function()
      up:queue { REPLY }
      local res = chat("cg/gpt-5.1-codex", { { role = "system", content = "Be brief." },
        { role = "user", content = "weather in Paris?" } },
        { stream = true, tools = TOOLS_CHAT, max_tokens = 500, temperature = 0.2, reasoning_effort = "minimal" })
      assert.equal(200, res.status, res.body)
      local r = assert(last_request("/backend-api/codex/responses"))
      assert.is_nil(r.rejected)
      local b = json.decode(r.body)
      assert.is_false(b.store)
      assert.is_true(b.stream)
      assert.equal("Be brief.", b.instructions)
      assert.same({ "reasoning.encrypted_content" }, b.include)
      assert.equal("auto", b.reasoning.summary)
      assert.equal("low", b.reasoning.effort) -- the nearest the model offers
      assert.is_nil(b.max_output_tokens)
      assert.is_nil(b.temperature)
      local h = r.headers
      assert.equal("Bearer " .. CG[1].access, h.authorization)
      assert.equal("acct-a", h["chatgpt-account-id"])
      assert.equal("responses=experimental", h["openai-beta"])
      assert.equal("codex_cli_rs", h.originator)
      assert.truthy(h.session_id)
      local thinking, text, call = "", "", nil
      for _, d in ipairs(H.client.sse_data(res.body)) do
        if d ~= "[DONE]" then
          local delta = json.decode(d).choices[1].delta
          thinking = thinking .. (delta.reasoning_content or "")
          text = text .. (delta.content or "")
          if delta.tool_calls then call = call or delta.tool_calls[1]["function"].name end
        end
      end
      assert.equal("Weighing the cities", thinking)
      assert.equal("Checking Paris.", text)
      assert.equal("get_weather", call)
    end)

    it("serves an Anthropic client and a Responses client, and a whole answer collected from the stream", function()
      up:queue { REPLY, REPLY, REPLY }
      local res = post("/v1/messages", { model = "cg/gpt-5.1-codex", max_tokens = 256,
        messages = { { role = "user", content = "weather in Paris?" } },
        tools = { { name = "get_weather", input_schema = { type = "object" } } } },
        { ["anthropic-version"] = "2023-06-01" })
      assert.equal(200, res.status, res.body)
      local types = {}
      for _, blk in ipairs(json.decode(res.body).content) do types[#types + 1] = blk.type end
      assert.same({ "thinking", "text", "tool_use" }, types)

      res = post("/v1/responses", { model = "cg/gpt-5.1-codex", input = "weather in Paris?", stream = true,
        tools = { { type = "function", name = "get_weather", parameters = { type = "object" } } } })
      assert.equal(200, res.status, res.body)
      local summary, called
      for _, d in ipairs(H.client.sse_data(res.body)) do
        local ev = json.decode(d)
        if ev.type == "response.output_item.done" and ev.item.type == "reasoning" then
          summary = ev.item.summary[1] and ev.item.summary[1].text
        end
        if ev.type == "response.output_item.done" and ev.item.type == "function_call" then called = ev.item.name end
      end
      assert.equal("Weighing the cities", summary)
      assert.equal("get_weather", called)

      res = chat("cg/gpt-5.1-codex", { { role = "user", content = "weather in Paris?" } }, { tools = TOOLS_CHAT })
      assert.equal(200, res.status, res.body)
      local msg = json.decode(res.body).choices[1].message
      assert.equal("Checking Paris.", msg.content)
      assert.equal("get_weather", msg.tool_calls[1]["function"].name)
      assert.is_true(json.decode(last_request("/backend-api/codex/responses").body).stream)
    end)

    it("rests an account that hits its quota while the other serves; both limited: 429 with Retry-After", function()
      local quota = { status = 429, json = { error = { type = "usage_limit_reached",
        message = "The usage limit has been reached", resets_in_seconds = 120 } } }
      up:queue { quota, { reply = { text = "from b" } } }
      local res = chat("cg/gpt-5.1", { { role = "user", content = "hi" } })
      assert.equal(200, res.status, res.body)
      assert.equal("from b", json.decode(res.body).choices[1].message.content)
      local ids = {}
      for _, r in ipairs(up:requests()) do
        if r.method == "POST" then ids[#ids + 1] = r.headers["chatgpt-account-id"] end
      end
      assert.same({ "acct-a", "acct-b" }, ids)
      -- a rests: the next request goes to b at once
      up:reset()
      assert.equal(200, chat("cg/gpt-5.1", { { role = "user", content = "again" } }).status)
      assert.equal("acct-b", last_request("/backend-api/codex/responses").headers["chatgpt-account-id"])
      local stats = json.decode(assert(server:request("GET", "/stats")).body)
      local pool = {}
      for _, m in ipairs(stats.accounts.cg) do pool[m.name] = m end
      assert.equal(1, pool.cga.limited)
      assert.is_true(pool.cga.resting_s > 100)
      assert.is_nil(pool.cgb.resting_s)
      -- b hits its quota too (the backend's "try again in N s"): the client gets 429 and when to come back
      up:queue { { status = 429, json = { error = { code = "rate_limit_exceeded",
        message = "Rate limit reached. Please try again in 7s." } } } }
      res = chat("cg/gpt-5.1", { { role = "user", content = "more" } })
      assert.equal(429, res.status, res.body)
      assert.equal("7", res.headers["retry-after"])
      res = chat("cg/gpt-5.1", { { role = "user", content = "still" } })
      assert.equal(429, res.status)
      assert.truthy(tonumber(res.headers["retry-after"]))
      assert.matches("every account is rate limited", json.decode(res.body).error.message)

      -- moongate info shows the pool as the daemon has it, and no token
      local bin = H.sh("realpath " .. H.bin):gsub("%s+$", "")
      local lua_dir = H.sh("realpath " .. (os.getenv("MOONGATE_LUA_DIR") or "lua")):gsub("%s+$", "")
      local env = { "MOONGATE_HOME=" .. home, "MOONGATE_LUA_DIR=" .. lua_dir }
      for _, name in ipairs { "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS" } do
        if os.getenv(name) then env[#env + 1] = name .. "=" .. H.shell_quote(os.getenv(name)) end
      end
      local run = H.run_cli(dirs.fresh().work, env, bin .. " info --listen 127.0.0.1:" .. server.port)
      assert.equal(0, run.code, run.err)
      assert.matches("cga%s+chatgpt%s+cga@example%.com", run.out)
      assert.matches("cg: served %d+, limited 1, resting %d+ s", run.out)
      assert.matches("pool state from the daemon at http://127%.0%.0%.1:" .. server.port, run.out)
      for _, a in ipairs(CG) do assert.is_nil(run.out:find(a.access, 1, true)) end
    end)
  end)

  it("never shows a token, key or cookie: not in any answer, not in the verbose log", function()
    local secrets = { GH_TOKEN }
    for _, a in ipairs(CG) do secrets[#secrets + 1] = a.access; secrets[#secrets + 1] = a.refresh end
    for _, v in ipairs(gh:get("/_mock/issued")) do secrets[#secrets + 1] = v end
    assert.is_true(#secrets > 5)
    local stats = assert(server:request("GET", "/stats")).body
    local log = server.log
    assert.matches("DEBUG", log) -- verbose indeed
    for _, s in ipairs(secrets) do
      assert.is_nil(log:find(s, 1, true), "the log holds a secret")
      assert.is_nil(stats:find(s, 1, true), "/stats holds a secret")
      for _, body in ipairs(answers) do assert.is_nil(body:find(s, 1, true), "an answer holds a secret") end
    end
  end)
end)

describe("accounts without a config file, key pools, keyed presets", function()
  local up, gh, dirs, home

  setup(function()
    up, gh, dirs, home = mocks()
  end)
  teardown(function()
    if up then up:stop() end
    if gh then gh:stop() end
    if dirs then dirs.remove() end
  end)
  before_each(function() up:reset() end)

  it("serves every stored account: its models listed, routed by their own names and by NAME/model", function()
    local server = H.start { env = { MOONGATE_HOME = home, MOONGATE_GITHUB_API_URL = gh.url,
      MOONGATE_COPILOT_API_URL = up.url .. "/copilot", MOONGATE_CHATGPT_URL = up.url .. "/backend-api/codex",
      MOONGATE_OPENAI_AUTH_URL = gh.url } }
    finally(function() server:stop_clean() end)
    local ids = {}
    H.client.run_until(function()
      ids = {}
      for _, m in ipairs(json.decode(assert(server:request("GET", "/v1/models")).body).data) do ids[m.id] = true end
      return ids["gpt-4.1"]
    end, 5000)
    assert.is_true(ids["gpt-4.1"] and ids["work/gpt-4.1"] and ids["echo"] or false)
    assert.is_true(ids["cga/gpt-5.1"] and ids["cgb/gpt-5.1"] or false) -- every stored account
    for _, model in ipairs { "gpt-4.1", "work/gpt-4.1" } do
      local res = assert(server:request("POST", "/v1/chat/completions", json.encode {
        model = model, messages = { { role = "user", content = "hi" } } }, nil, 15000))
      assert.equal(200, res.status, res.body)
      local r = up:requests()
      assert.equal("/copilot/chat/completions", r[#r].path)
      assert.equal("gpt-4.1", json.decode(r[#r].body).model)
    end
    -- a model no account has is still the client's 404
    local res = assert(server:request("POST", "/v1/chat/completions", json.encode {
      model = "no-such-model", messages = { { role = "user", content = "hi" } } }))
    assert.equal(404, res.status)
  end)

  it("serves a client's own GitHub token as its account (forward_client_key), exchanging it once", function()
    local server = H.start { env = { MOONGATE_HOME = home, MOONGATE_GITHUB_API_URL = gh.url }, config = string.format([[
return { providers = { own = { kind = "copilot", forward_client_key = true, base_url = %q, retries = 0 } },
         routes = { { match = "*", provider = "own" } } }]], up.url .. "/copilot") }
    finally(function() server:stop_clean() end)
    local CLIENT_GH = "gho_clientOwnToken9876543210"
    gh:post("/_mock/github_token", { token = CLIENT_GH })
    local before = #gh:get("/_mock/requests")
    for _ = 1, 2 do
      local res = assert(server:request("POST", "/v1/chat/completions", json.encode {
        model = "gpt-4.1", messages = { { role = "user", content = "hi" } } },
        { authorization = "Bearer " .. CLIENT_GH }, 15000))
      assert.equal(200, res.status, res.body)
      assert.is_nil(res.body:find(CLIENT_GH, 1, true))
    end
    local got = gh:get("/_mock/requests")
    assert.equal(before + 1, #got) -- one exchange for two requests
    assert.equal("token " .. CLIENT_GH, got[#got].headers.authorization)
    -- no token: 401 in the client's format, never the operator's account
    local res = assert(server:request("POST", "/v1/chat/completions", json.encode {
      model = "gpt-4.1", messages = { { role = "user", content = "hi" } } }))
    assert.equal(401, res.status)
    assert.is_nil(server.log:find(CLIENT_GH, 1, true))
  end)

  it("rotates a pool of API keys on 429, and sends Qwen's bearer and cookies", function()
    local server = H.start { env = { MG_SPEC_QWEN_COOKIES = "token=qwen-cookie-secret-123; ssxmod=abc" }, config = string.format([[
return {
  providers = {
    keys = { kind = "openai", base_url = %q, api_keys = { "key-one-0123456789", "key-two-0123456789" }, retries = 0 },
    qw = { kind = "qwen", base_url = %q, api_key = "qwen-bearer-0123456789", cookies_env = "MG_SPEC_QWEN_COOKIES", retries = 0 },
  },
  routes = { { match = "qwen-*", provider = "qw" }, { match = "*", provider = "keys" } },
}]], up.url .. "/v1", up.url .. "/api") }
    finally(function() server:stop_clean() end)
    up:queue { { status = 429, headers = { ["retry-after"] = "30" },
      json = { error = { message = "Rate limit reached for key-one-0123456789", type = "requests", code = "rate_limit_exceeded" } } },
      { reply = { text = "two" } } }
    local res = assert(server:request("POST", "/v1/chat/completions", json.encode {
      model = "gpt-4o", messages = { { role = "user", content = "hi" } } }, nil, 15000))
    assert.equal(200, res.status, res.body)
    local auths = {}
    for _, r in ipairs(up:requests()) do auths[#auths + 1] = r.headers.authorization end
    assert.same({ "Bearer key-one-0123456789", "Bearer key-two-0123456789" }, auths)
    local stats = json.decode(assert(server:request("GET", "/stats")).body)
    assert.equal(1, stats.accounts.keys[1].limited)
    assert.equal("api_keys[1]", stats.accounts.keys[1].name)
    assert.is_nil(json.encode(stats):find("key-one", 1, true))

    up:reset()
    res = assert(server:request("POST", "/v1/chat/completions", json.encode {
      model = "qwen-max", messages = { { role = "user", content = "hi" } } }, nil, 15000))
    assert.equal(200, res.status, res.body)
    local r = up:requests()[1]
    assert.equal("/api/chat/completions", r.path)
    assert.equal("Bearer qwen-bearer-0123456789", r.headers.authorization)
    assert.equal("token=qwen-cookie-secret-123; ssxmod=abc", r.headers.cookie)
    for _, s in ipairs { "qwen-cookie-secret-123", "qwen-bearer-0123456789", "key-two-0123456789" } do
      assert.is_nil(server.log:find(s, 1, true))
    end
  end)

  it("takes a quota failure inside a ChatGPT stream as the account's limit: another serves, else 429", function()
    local h2 = dirs.fresh().home -- a pool of its own, no account resting
    write_accounts(h2)
    local server = H.start { env = { MOONGATE_HOME = h2 }, config = string.format([[
return { providers = { cg = { kind = "chatgpt", accounts = { "cga", "cgb" }, base_url = %q, retries = 0 } },
         routes = { { match = "*", provider = "cg" } } }]], up.url .. "/backend-api/codex") }
    finally(function() server:stop_clean() end)
    local function failed(msg)
      local resp = { id = "resp_f", object = "response", status = "in_progress", output = {}, model = "gpt-5.1" }
      local done = { id = "resp_f", object = "response", status = "failed", output = {}, model = "gpt-5.1",
        error = { code = "rate_limit_exceeded", message = msg } }
      return { status = 200, headers = { ["content-type"] = "text/event-stream" }, frames = {
        { event = "response.created", json = { type = "response.created", sequence_number = 0, response = resp } },
        { event = "response.failed", json = { type = "response.failed", sequence_number = 1, response = done } } } }
    end
    local function ask(stream)
      return assert(server:request("POST", "/v1/chat/completions", json.encode {
        model = "gpt-5.1", stream = stream, messages = { { role = "user", content = "hi" } } }, nil, 15000))
    end
    -- a's stream fails with its quota before any content: b serves, the client sees one clean stream
    up:queue { failed("Rate limit reached for gpt-5.1. Please try again in 11.054s."), { reply = { text = "from b" } } }
    local res = ask(true)
    assert.equal(200, res.status, res.body)
    local text = ""
    for _, d in ipairs(H.client.sse_data(res.body)) do
      if d ~= "[DONE]" then text = text .. (json.decode(d).choices[1].delta.content or "") end
    end
    assert.equal("from b", text)
    local ids = {}
    for _, r in ipairs(up:requests()) do if r.method == "POST" then ids[#ids + 1] = r.headers["chatgpt-account-id"] end end
    assert.same({ "acct-a", "acct-b" }, ids)
    -- b fails the same way, whole and streamed: 429 with Retry-After, not a started stream
    up:queue { failed("Please try again in 4s.") }
    res = ask(false)
    assert.equal(429, res.status, res.body)
    assert.equal("4", res.headers["retry-after"])
    res = ask(true)
    assert.equal(429, res.status, res.body)
    assert.truthy(tonumber(res.headers["retry-after"]))
  end)
end)
