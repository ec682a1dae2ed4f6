-- Codex CLI itself (`codex exec`, @openai/codex in spec/compat) against the
-- real daemon's /v1/responses and the mock upstream: a one-shot answer and
-- a shell tool loop, each through a Responses upstream (passed through), an
-- Anthropic upstream and a chat completions upstream (translated), a tool
-- loop with reasoning through the first two (a chat upstream makes no
-- opaque reasoning), and
-- Codex's own catalog model (its "responses lite" request shape) through
-- the Responses upstream.
--
-- Loopback only: each run has a throwaway CODEX_HOME whose config.toml
-- declares the daemon as a custom provider (wire_api "responses", the key
-- from an environment variable), turns off the update check, analytics and
-- the plugins feature (whose startup sync of the curated plugins reaches
-- github.com, api.github.com and chatgpt.com), and gives the mock as the
-- HTTP(S) proxy, so any other try to reach the internet shows up in the
-- mock's request log (a refused CONNECT) and goes nowhere; every case
-- checks there was none.
--
-- What Codex CLI 0.171.0 sends (captured in
-- spec/fixtures/frontdoor/openai_responses/codex_*): one POST
-- {base_url}/responses per model turn, nothing else (no GET /models, no
-- websocket), uncompressed JSON (accept-encoding: zstd,gzip for the
-- answer), authorization Bearer <env_key>, originator codex_exec,
-- session-id / thread-id / x-client-request-id, x-codex-turn-metadata,
-- x-codex-window-id, x-codex-beta-features; no openai-beta. The body: model,
-- stream true, input (developer messages - no `instructions` - then the
-- user's; items carry ids: msg_..., fco_...), tools, tool_choice "auto",
-- parallel_tool_calls, reasoning {summary "auto"}, store false, include
-- ["reasoning.encrypted_content"], prompt_cache_key, client_metadata. For a
-- model it does not know (gpt-test, claude-test) its shell tool is the
-- function tool exec_command {cmd, workdir, yield_time_ms, ...}, next to
-- a "namespace" tool (multi_agent_v1) and a "web_search" tool; for one of
-- its catalog models (gpt-6.2-sol) the tools come as an input item of type
-- "additional_tools" instead, with x-openai-internal-codex-responses-lite.
-- A turn counts as complete only with response.completed (an end without
-- it, response.failed or response.incomplete is an error, exit 1), and the
-- answer is what the response.output_item.done items carry: deltas alone
-- print nothing.
local helpers = require "helpers"
local json = require "moongate.json"

local PACKAGE = "spec/compat/node_modules/@openai/codex"
local CATALOG_MODEL = "gpt-6.2-sol" -- a model Codex 0.171.0 knows (its default)

-- the launcher (bin/codex.js, run by node) and the native binary it starts,
-- from the platform package npm installs as an optional dependency
local function installed()
  local native = helpers.sh("ls -d spec/compat/node_modules/@openai/codex-linux-*/vendor/*/bin/codex 2>/dev/null | head -1")
    :gsub("%s+$", "")
  local f = io.open(PACKAGE .. "/bin/codex.js")
  if f then f:close() end
  return f ~= nil and native ~= ""
end

local function text_of(content)
  if type(content) == "string" then return content end
  local out = {}
  for _, p in ipairs(type(content) == "table" and content or {}) do
    if type(p) == "table" and type(p.text) == "string" then out[#out + 1] = p.text end
    if type(p) == "table" and type(p.content) == "string" then out[#out + 1] = p.content end
  end
  return table.concat(out, "\n")
end

if not installed() then
  describe("Codex CLI (codex exec) through the daemon", function()
    pending("Codex CLI is not installed (" .. PACKAGE .. " and its platform package): run scripts/setup --test")
  end)
  return
end

describe("Codex CLI (codex exec) through the daemon", function()
  local node, launcher
  setup(function()
    node = helpers.sh("command -v node"):gsub("%s+$", "")
    assert(node ~= "", "node is not installed: run scripts/setup --test")
    launcher = helpers.sh("realpath " .. PACKAGE .. "/bin/codex.js"):gsub("%s+$", "")
    local version = helpers.sh(node .. " " .. launcher .. " --version")
    assert(version:find("codex-cli", 1, true), "Codex CLI does not run: " .. version)
  end)
  local gw = helpers.gateway_fixture {
    providers = {
      resp = { kind = "openai", api = "responses", api_key = "sk-up", retries = 0 },
      claude = { kind = "anthropic", api_key = "sk-ant-up", retries = 0 },
      chat = { kind = "openai", api_key = "sk-up", retries = 0 },
    },
    routes = { { match = "claude-*", provider = "claude" }, { match = "chat-*", provider = "chat" },
      { match = "gpt-*", provider = "resp" } },
    scratch = true,
  }

  -- a fresh CODEX_HOME (with its config.toml) and working folder
  local function fresh(model)
    local d = gw.dirs.fresh()
    helpers.codex_config(d.home, model, gw.server.port)
    return d
  end

  -- run(prompt, model) -> {code, out (stdout: Codex's last message), err
  -- (stderr: the transcript)}; the sandbox off, so its shell tool runs;
  -- --strict-config, so that a key a later Codex no longer knows (one that
  -- keeps it off the internet) fails the run instead of being ignored
  local function run(prompt, model)
    local d = fresh(model)
    local env = {
      "PATH=/usr/bin:/bin", "HOME=" .. d.home, "CODEX_HOME=" .. d.home, "TERM=dumb",
      "MOONGATE_API_KEY=sk-codex-dummy",
      -- anything not for the daemon goes to the mock, which logs it (a
      -- CONNECT for an https:// host is refused)
      "HTTPS_PROXY=" .. gw.mock.url, "HTTP_PROXY=" .. gw.mock.url, "ALL_PROXY=" .. gw.mock.url,
      "NO_PROXY=127.0.0.1,localhost",
    }
    return helpers.run_cli(d.work, env, string.format("timeout 90 %s %s exec --strict-config "
      .. "--skip-git-repo-check --dangerously-bypass-approvals-and-sandbox --color never %s",
      node, launcher, helpers.shell_quote(prompt)))
  end

  local function describe_run(res, api)
    local lines = { "exit " .. tostring(res.code), "stdout: " .. res.out:sub(1, 600), "stderr: " .. res.err:sub(-1500) }
    for i, r in ipairs(api) do
      local kinds = {}
      for _, m in ipairs(r.json and (r.json.messages or r.json.input) or {}) do
        kinds[#kinds + 1] = m.role or m.type
      end
      local rejected = r.rejected ~= nil and r.rejected ~= json.null
      lines[#lines + 1] = string.format("request %d: %s %s [%s] %s", i, r.method, r.path, table.concat(kinds, ","),
        rejected and ("REJECTED: " .. tostring(r.rejected)) or "")
    end
    return table.concat(lines, "\n")
  end

  -- the common checks: no internet (a proxy try is Codex reaching for
  -- it), nothing refused by the mock, exit 0, the answer printed as Codex's
  -- last message, no error in its transcript
  local function ran(res, want_out, calls)
    local api, proxy = gw.mock:received()
    local info = describe_run(res, api)
    assert.same({}, proxy, "Codex tried to leave the machine:\n" .. info)
    for _, r in ipairs(api) do
      assert(r.rejected == nil or r.rejected == json.null,
        "the mock (as strict as the real API) refused a request:\n" .. info)
    end
    assert.equal(0, res.code, info)
    assert.equal(want_out, (res.out:gsub("^%s+", ""):gsub("%s+$", "")), "Codex did not print the answer:\n" .. info)
    assert.falsy(res.err:find("\nERROR", 1, true), "Codex reported an error:\n" .. info)
    assert.equal(calls, #api, info)
    return api, info
  end

  -- the Responses input items of type t (and role, for messages)
  local function items(body, t, role)
    local out = {}
    for _, it in ipairs(body.input or {}) do
      if it.type == t and (role == nil or it.role == role) then out[#out + 1] = it end
    end
    return out
  end

  local function has_function_tool(tools, name)
    for _, t in ipairs(tools or {}) do
      if t.name == name and (t.type == nil or t.type == "function" or t.type == "custom") then return true end
    end
    return false
  end

  before_each(function() gw.mock:reset() end)

  local UPSTREAMS = {
    { name = "a Responses upstream (passthrough)", model = "gpt-test", api = "responses", path = "/v1/responses",
      id = "call_codex_exec1" },
    { name = "an Anthropic upstream (translated)", model = "claude-test", api = "anthropic", path = "/v1/messages",
      id = "toolu_codex_exec1" },
    { name = "a chat completions upstream (translated)", model = "chat-test", api = "chat",
      path = "/v1/chat/completions", id = "call_codex_chat1" },
  }

  for _, case in ipairs(UPSTREAMS) do
    describe(case.name, function()
      it("answers a one-shot prompt", function()
        gw.mock:queue { { reply = { text = "Hello from the mock." } } }
        local res = run("Say hello.", case.model)
        local api, info = ran(res, "Hello from the mock.", 1)
        local r = api[1]
        assert.equal(case.path, (r.path:gsub("%?.*$", "")), info)
        assert.equal(case.model, r.json.model)
        if case.api == "responses" then
          -- Codex's request as it sent it: its prompt as developer messages,
          -- its tools, no stored state
          assert.is_true(r.json.stream)
          assert.equal(false, r.json.store)
          local developer = items(r.json, "message", "developer")[1]
          assert.truthy(developer, "no developer message reached the upstream:\n" .. info)
          assert.truthy(text_of(developer.content):find("Codex", 1, true), info)
          local users = items(r.json, "message", "user")
          assert.truthy(text_of(users[#users].content):find("Say hello.", 1, true), info)
          assert.is_true(has_function_tool(r.json.tools, "exec_command"), info)
          assert.same({ "reasoning.encrypted_content" }, r.json.include)
        elseif case.api == "chat" then
          -- translated: the developer messages become the system message,
          -- the prompt a user message, exec_command a function tool
          assert.equal("system", r.json.messages[1].role, info)
          assert.truthy(text_of(r.json.messages[1].content):find("Codex", 1, true), info)
          local last = r.json.messages[#r.json.messages]
          assert.equal("user", last.role)
          assert.truthy(text_of(last.content):find("Say hello.", 1, true), info)
          local tool
          for _, t in ipairs(r.json.tools or {}) do
            if t["function"] and t["function"].name == "exec_command" then tool = t["function"] end
          end
          assert.truthy(tool, "exec_command did not reach the upstream as a function:\n" .. info)
          assert.truthy(tool.parameters.properties.cmd, json.encode(tool))
        else
          -- translated: the developer messages become the system prompt,
          -- the prompt a user message, exec_command a custom tool
          local system = text_of(r.json.system)
          assert.truthy(system:find("Codex", 1, true), "Codex's developer prompt is not in the system prompt:\n" .. info)
          local last = r.json.messages[#r.json.messages]
          assert.equal("user", last.role)
          assert.truthy(text_of(last.content):find("Say hello.", 1, true), info)
          local tool
          for _, t in ipairs(r.json.tools or {}) do
            if t.name == "exec_command" then tool = t end
          end
          assert.truthy(tool, "exec_command did not reach the upstream as a tool:\n" .. info)
          assert.equal("object", tool.input_schema.type)
          assert.truthy(tool.input_schema.properties.cmd, json.encode(tool))
        end
      end)

      it("runs exec_command on the upstream's tool call and sends the output back", function()
        local marker = "moongate-codex-" .. math.random(100000, 999999)
        gw.mock:queue {
          { reply = { text = "Running it.", tool_calls = { { id = case.id, name = "exec_command",
            input = { cmd = "echo " .. marker } } } } },
          { reply = { text = "The command printed the marker." } },
        }
        local res = run("Run echo for me.", case.model)
        local api, info = ran(res, "The command printed the marker.", 2)
        assert.truthy(res.err:find(marker, 1, true), "the command's output is not in Codex's transcript:\n" .. info)
        local body = api[2].json
        if case.api == "responses" then
          local call = items(body, "function_call")[1]
          assert.truthy(call, info)
          assert.equal(case.id, call.call_id)
          assert.equal("exec_command", call.name)
          assert.equal("echo " .. marker, json.decode(call.arguments).cmd)
          local out = items(body, "function_call_output")[1]
          assert.truthy(out, "no function_call_output reached the upstream:\n" .. info)
          assert.equal(case.id, out.call_id)
          assert.truthy(text_of(out.output):find(marker, 1, true), json.encode(out))
        elseif case.api == "chat" then
          local call, out
          for _, m in ipairs(body.messages) do
            for _, tc in ipairs(m.role == "assistant" and type(m.tool_calls) == "table" and m.tool_calls or {}) do
              if tc.id == case.id then call = tc end
            end
            if m.role == "tool" and m.tool_call_id == case.id then out = m end
          end
          assert.truthy(call, info)
          assert.equal("exec_command", call["function"].name)
          assert.equal("echo " .. marker, json.decode(call["function"].arguments).cmd)
          assert.truthy(out, "no tool message reached the upstream:\n" .. info)
          assert.truthy(text_of(out.content):find(marker, 1, true), json.encode(out))
        else
          local use, result = helpers.tool_turn(body.messages)
          assert.truthy(use, info)
          assert.equal(case.id, use.id)
          assert.equal("exec_command", use.name)
          assert.equal("echo " .. marker, use.input.cmd)
          assert.truthy(result, "no tool_result reached the upstream:\n" .. info)
          assert.equal(case.id, result.tool_use_id)
          assert.truthy(text_of(result.content):find(marker, 1, true), json.encode(result))
        end
      end)

      -- (a chat completions upstream makes no opaque reasoning to hand back)
      if case.api ~= "chat" then it("hands the upstream's reasoning back to it, byte for byte, in a tool loop", function()
        local marker = "moongate-codex-" .. math.random(100000, 999999)
        local signature = "opaque-" .. case.api .. "-" .. math.random(100000, 999999)
        gw.mock:queue {
          { reply = { thinking = "I will run echo.", signature = signature, tool_calls = { { id = case.id,
            name = "exec_command", input = { cmd = "echo " .. marker } } } } },
          { reply = { text = "The command printed the marker." } },
        }
        local res = run("Run echo for me.", case.model)
        local api, info = ran(res, "The command printed the marker.", 2)
        local body = api[2].json
        if case.api == "responses" then
          -- the reasoning item Codex kept (store false: by its
          -- encrypted_content) comes back before the call it led to
          local reasoning = items(body, "reasoning")[1]
          assert.truthy(reasoning, "no reasoning item reached the upstream:\n" .. info)
          assert.equal(signature, reasoning.encrypted_content)
          local call = items(body, "function_call")[1]
          assert.truthy(call, info)
          assert.equal(case.id, call.call_id)
          assert.equal(case.id, items(body, "function_call_output")[1].call_id)
        else
          -- the thinking block comes back first in the assistant turn that
          -- has the tool_use, its signature as the upstream made it
          local turn
          for _, m in ipairs(body.messages) do
            for _, b in ipairs(type(m.content) == "table" and m.content or {}) do
              if m.role == "assistant" and b.type == "tool_use" and b.id == case.id then turn = m end
            end
          end
          assert.truthy(turn, info)
          local thinking = turn.content[1]
          assert.equal("thinking", thinking.type, json.encode(turn))
          assert.equal(signature, thinking.signature)
          assert.equal("I will run echo.", thinking.thinking)
        end
      end) end
    end)
  end

  describe("its own catalog model (" .. CATALOG_MODEL .. "), to a Responses upstream (passthrough)", function()
    it("answers a one-shot prompt; the tools Codex sends as an additional_tools item reach the upstream", function()
      gw.mock:queue { { reply = { text = "Hello from the mock." } } }
      local res = run("Say hello.", CATALOG_MODEL)
      local api, info = ran(res, "Hello from the mock.", 1)
      local r = api[1]
      assert.equal("/v1/responses", r.path, info)
      assert.equal(CATALOG_MODEL, r.json.model)
      local extra = items(r.json, "additional_tools")[1]
      assert.truthy(extra, "Codex's additional_tools item did not reach the upstream:\n" .. info)
      assert.truthy(#extra.tools > 0, json.encode(extra):sub(1, 400))
    end)
  end)
end)
