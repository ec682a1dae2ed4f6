-- Subscriptions served to the real clients (issue 18): Codex CLI (`codex
-- exec`, @openai/codex in spec/compat) through a provider of kind chatgpt,
-- and Claude Code (`claude -p`, @anthropic-ai/claude-code) through a
-- provider of kind copilot on a Claude model, whose supported_endpoints send
-- it to the Copilot API's /v1/messages. The real daemon, its accounts stored
-- under MOONGATE_HOME, in front of the mock GitHub
-- (spec/support/mock_accounts.lua: the Copilot token exchange) and the mock
-- upstream standing in for the Codex backend (/backend-api/codex) and the
-- Copilot API (/copilot), both as strict as the real ones.
--
-- Loopback only: each client runs with a throwaway home, its updater,
-- telemetry and plugins off, and the mock upstream as its HTTP(S) proxy, so
-- any try to reach the internet shows up in the mock's request log (a
-- refused CONNECT, or an absolute URL) and goes nowhere; every case checks
-- there was none. The last case searches what the clients printed and the
-- daemon's verbose log for every secret used (the GitHub token, the ChatGPT
-- tokens, the Copilot tokens the mock GitHub issued), finding none.
-- (compat_codex_spec.lua and compat_claude_code_spec.lua tell what each
-- client sends; accounts_spec.lua covers the kinds with a plain client.)
local H = require "helpers"
local json = require "moongate.json"

local GH_TOKEN = "gho_subsGithubToken0123456789"
local CG = { name = "cga", access = "cg-access-subs-0123456789", refresh = "cg-refresh-subs-0123456789",
  id = "acct-subs-a" }
local CODEX_MODEL = "cg/gpt-5.1"         -- a model Codex does not know: its plain tools (exec_command)
local CLAUDE_MODEL = "claude-sonnet-4.5" -- the mock Copilot's Claude model (/v1/messages, /chat/completions)
local CURRENT_CLAUDE = "claude-opus-5-5" -- Claude Code 2.1.332's default, added to the mock's list where used

-- the pinned clients, as compat_codex_spec.lua and compat_claude_code_spec.lua find them
local CODEX_JS = "spec/compat/node_modules/@openai/codex/bin/codex.js"
local function codex_installed()
  local native = H.sh("ls -d spec/compat/node_modules/@openai/codex-linux-*/vendor/*/bin/codex 2>/dev/null | head -1")
  local f = io.open(CODEX_JS)
  if f then f:close() end
  return f ~= nil and native:find("%S") ~= nil
end
local function claude_bin()
  local found = H.sh("ls -d spec/compat/node_modules/@anthropic-ai/claude-code-linux-*/claude 2>/dev/null | head -1")
    :gsub("%s+$", "")
  return found ~= "" and found or "spec/compat/node_modules/.bin/claude"
end

-- write_account(home, rec): one stored account, as `moongate login` leaves
-- it (0600 in a 0700 folder)
local write_account = H.write_account

local function text_of(content)
  if type(content) == "string" then return content end
  local out = {}
  for _, p in ipairs(type(content) == "table" and content or {}) do
    if type(p) == "table" and type(p.text) == "string" then out[#out + 1] = p.text end
    if type(p) == "table" and type(p.content) == "string" then out[#out + 1] = p.content end
    if type(p) == "table" and type(p.output) == "string" then out[#out + 1] = p.output end
  end
  return table.concat(out, "\n")
end

-- the Responses input items of type t
local function items(body, t)
  local out = {}
  for _, it in ipairs(body.input or {}) do
    if it.type == t then out[#out + 1] = it end
  end
  return out
end

describe("subscriptions served to the real clients", function()
  local up, gh, dirs, home, server
  local printed = {} -- everything the clients printed, for the leak search

  setup(function()
    up, gh = H.mock(), H.mock("spec/support/mock_accounts.lua")
    gh:post("/_mock/github_token", { token = GH_TOKEN })
    dirs = H.scratch()
    home = dirs.fresh().home
    write_account(home, { name = "work", kind = "copilot", login = "octocat", github_token = GH_TOKEN,
      created_at = os.time(), refreshed_at = os.time() })
    write_account(home, { name = CG.name, kind = "chatgpt", login = "cga@example.com",
      access_token = CG.access, refresh_token = CG.refresh, id_token = "x", account_id = CG.id,
      expires_at = os.time() + 86400, created_at = os.time(), refreshed_at = os.time() })
    server = H.start { workers = 1, env = { MOONGATE_HOME = home, MOONGATE_GITHUB_API_URL = gh.url },
      config = string.format([[
return {
  log_level = "debug",
  providers = {
    gh = { kind = "copilot", account = "work", base_url = %q, retries = 0 },
    cg = { kind = "chatgpt", accounts = { %q }, base_url = %q, retries = 0 },
  },
  routes = {
    { match = "cg/*", provider = "cg", strip = "cg/" },
    { match = "claude-*", provider = "gh" },
  },
}]], up.url .. "/copilot", CG.name, up.url .. "/backend-api/codex") }
  end)
  teardown(function()
    if server then server:stop_clean() end
    if up then up:stop() end
    if gh then gh:stop() end
    if dirs then dirs.remove() end
  end)
  before_each(function() up:reset() end)

  -- the clients' environment: the mock as the proxy for anything not for
  -- the daemon (it logs it; a CONNECT for an https:// host is refused)
  local function base_env(d)
    return { "PATH=/usr/bin:/bin", "HOME=" .. d.home, "TERM=dumb",
      "HTTPS_PROXY=" .. up.url, "HTTP_PROXY=" .. up.url, "ALL_PROXY=" .. up.url, "NO_PROXY=127.0.0.1,localhost" }
  end

  -- ran(res, name) -> posts, info: the common checks: no try to leave the
  -- machine, nothing the strict mock refused, exit 0; posts: the POSTs that
  -- reached the mock (the daemon's model listings are GETs)
  local function ran(res, name)
    printed[#printed + 1] = res.out
    printed[#printed + 1] = res.err
    local api, proxy = up:received()
    local posts = {}
    for _, r in ipairs(api) do
      if r.method == "POST" then posts[#posts + 1] = r end
    end
    local lines = { "exit " .. tostring(res.code), "stdout: " .. res.out:sub(1, 600), "stderr: " .. res.err:sub(-1500) }
    for i, r in ipairs(posts) do
      local rejected = r.rejected ~= nil and r.rejected ~= json.null
      lines[#lines + 1] = string.format("request %d: %s %s initiator=%s %s", i, r.method, r.path,
        tostring(r.headers["x-initiator"]), rejected and ("REJECTED: " .. tostring(r.rejected)) or "")
    end
    local info = table.concat(lines, "\n")
    assert.same({}, proxy, name .. " tried to leave the machine:\n" .. info)
    for _, r in ipairs(posts) do
      assert(r.rejected == nil or r.rejected == json.null,
        "the mock (as strict as the real backend) refused a request:\n" .. info)
    end
    assert.equal(0, res.code, info)
    return posts, info
  end

  describe("Codex CLI (codex exec) -> the Responses door -> kind chatgpt -> the Codex backend", function()
    if not codex_installed() then
      pending("Codex CLI is not installed (" .. CODEX_JS .. " and its platform package): run scripts/setup --test")
      return
    end

    -- run(prompt) -> {code, out (Codex's last message), err (its transcript)}:
    -- a fresh CODEX_HOME whose config.toml declares the daemon a custom
    -- provider (as compat_codex_spec.lua does), the sandbox off so that its
    -- shell tool runs
    local function run(prompt)
      local d = dirs.fresh()
      H.codex_config(d.home, CODEX_MODEL, server.port)
      local env = base_env(d)
      env[#env + 1] = "CODEX_HOME=" .. d.home
      env[#env + 1] = "MOONGATE_API_KEY=sk-codex-dummy"
      local node = H.sh("command -v node"):gsub("%s+$", "")
      local launcher = H.sh("realpath " .. CODEX_JS):gsub("%s+$", "")
      return H.run_cli(d.work, env, string.format("timeout 90 %s %s exec --strict-config --skip-git-repo-check "
        .. "--dangerously-bypass-approvals-and-sandbox --color never %s", node, launcher, H.shell_quote(prompt)))
    end

    -- what every request to the backend must be: the stored account's
    -- token and id, and the fields the backend insists on
    local function backend_request(r, info)
      assert.equal("/backend-api/codex/responses", r.path, info)
      assert.equal("Bearer " .. CG.access, r.headers.authorization, info)
      assert.equal(CG.id, r.headers["chatgpt-account-id"], info)
      assert.equal(false, r.json.store, info)
      assert.equal(true, r.json.stream, info)
      assert.equal("gpt-5.1", r.json.model, info) -- the route's prefix stripped
      assert.equal("string", type(r.json.instructions), info)
      local include = false
      for _, v in ipairs(r.json.include or {}) do
        if v == "reasoning.encrypted_content" then include = true end
      end
      assert.is_true(include, "include lacks reasoning.encrypted_content:\n" .. json.encode(r.json.include))
    end

    it("answers a plain prompt from the subscription", function()
      up:queue { { reply = { text = "Hello from the Codex backend." } } }
      local res = run("Say hello.")
      local posts, info = ran(res, "Codex")
      assert.equal("Hello from the Codex backend.", (res.out:gsub("^%s+", ""):gsub("%s+$", "")),
        "Codex did not print the answer:\n" .. info)
      assert.falsy(res.err:find("\nERROR", 1, true), "Codex reported an error:\n" .. info)
      assert.equal(1, #posts, info)
      backend_request(posts[1], info)
      -- Codex's prompt reached the backend, its shell tool with it
      local said = false
      for _, m in ipairs(items(posts[1].json, "message")) do
        if m.role == "user" and text_of(m.content):find("Say hello.", 1, true) then said = true end
      end
      assert.is_true(said, "the user's prompt did not reach the backend:\n" .. info)
      local tool = false
      for _, t in ipairs(posts[1].json.tools or {}) do
        if t.name == "exec_command" then tool = true end
      end
      assert.is_true(tool, "Codex's exec_command did not reach the backend:\n" .. info)
    end)

    it("runs exec_command on the backend's function call and sends the output back", function()
      local marker = "moongate-subs-" .. math.random(100000, 999999)
      up:queue {
        { reply = { text = "Running it.", tool_calls = { { id = "call_subs_exec1", name = "exec_command",
          input = { cmd = "echo " .. marker } } } } },
        { reply = { text = "The command printed the marker." } },
      }
      local res = run("Run echo for me.")
      local posts, info = ran(res, "Codex")
      assert.equal("The command printed the marker.", (res.out:gsub("^%s+", ""):gsub("%s+$", "")), info)
      assert.truthy(res.err:find(marker, 1, true), "the command's output is not in Codex's transcript:\n" .. info)
      assert.equal(2, #posts, info)
      backend_request(posts[2], info)
      local call = items(posts[2].json, "function_call")[1]
      assert.truthy(call, info)
      assert.equal("call_subs_exec1", call.call_id)
      assert.equal("exec_command", call.name)
      assert.equal("echo " .. marker, json.decode(call.arguments).cmd)
      local out = items(posts[2].json, "function_call_output")[1]
      assert.truthy(out, "no function_call_output reached the backend:\n" .. info)
      assert.equal("call_subs_exec1", out.call_id)
      assert.truthy(text_of(out.output):find(marker, 1, true), json.encode(out))
    end)
  end)

  describe("Claude Code (claude -p) -> the Anthropic door -> kind copilot -> the Copilot API's /v1/messages", function()
    local bin = H.sh("realpath " .. claude_bin() .. " 2>/dev/null"):gsub("%s+$", "")
    if bin == "" or not H.sh(bin .. " --version 2>&1"):find("Claude Code", 1, true) then
      pending("Claude Code is not installed: run scripts/setup --test")
      return
    end

    -- run(prompt [, tools [, model]]) -> {code, out, err}
    local function run(prompt, tools, model)
      local d = dirs.fresh()
      local env = base_env(d)
      for _, v in ipairs { "ANTHROPIC_BASE_URL=http://127.0.0.1:" .. server.port, "ANTHROPIC_API_KEY=sk-ant-dummy",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1",
        "DISABLE_ERROR_REPORTING=1" } do env[#env + 1] = v end
      local args = "-p " .. H.shell_quote(prompt) .. " --model " .. (model or CLAUDE_MODEL)
      if tools then args = args .. " --allowedTools " .. tools end
      return H.run_cli(d.work, env, string.format("timeout 60 %s %s", bin, args))
    end

    -- what every request to the Copilot API must be: the Copilot token (not
    -- the GitHub one), the editor headers, Claude's thinking beta
    local function copilot_request(r, info, model)
      assert.equal("/copilot/v1/messages", (r.path:gsub("%?.*$", "")), info)
      assert.matches("^Bearer tid=", r.headers.authorization)
      assert.is_nil(r.headers["x-api-key"])
      assert.equal("vscode-chat", r.headers["copilot-integration-id"])
      assert.matches("^vscode/", r.headers["editor-version"])
      assert.matches("interleaved%-thinking%-2025%-05%-14", r.headers["anthropic-beta"] or "")
      assert.equal(model or CLAUDE_MODEL, r.json.model, info)
    end

    it("answers a plain prompt from the subscription; the first turn is the user's", function()
      up:queue { { reply = { text = "Hello from the Copilot mock." } } }
      local res = run("Say hello.")
      local posts, info = ran(res, "Claude Code")
      assert.truthy(res.out:find("Hello from the Copilot mock.", 1, true), "Claude Code did not print the answer:\n" .. info)
      assert.equal(1, #posts, info) -- its first try served: no second try without its betas
      copilot_request(posts[1], info)
      assert.equal("user", posts[1].headers["x-initiator"], info) -- billed as the user's premium request
      local first = posts[1].json.messages[1]
      assert.equal("user", first.role)
      assert.truthy(text_of(first.content):find("Say hello.", 1, true), info)
    end)

    it("runs Bash on the model's tool call; the follow-up is the agent's turn", function()
      local marker = "moongate-subs-" .. math.random(100000, 999999)
      up:queue {
        { reply = { text = "Running it.", tool_calls = { { id = "toolu_subs_bash1", name = "Bash",
          input = { command = "echo " .. marker, description = "Print a marker" } } } } },
        { reply = { text = "The command printed the marker." } },
      }
      local res = run("Run echo for me.", "Bash")
      local posts, info = ran(res, "Claude Code")
      assert.truthy(res.out:find("The command printed the marker.", 1, true), info)
      assert.equal(2, #posts, info)
      copilot_request(posts[1], info)
      copilot_request(posts[2], info)
      assert.equal("user", posts[1].headers["x-initiator"], info)
      assert.equal("agent", posts[2].headers["x-initiator"], info) -- a tool result: not billed as a user turn
      local use, result = H.tool_turn(posts[2].json.messages)
      assert.truthy(use, info)
      assert.equal("toolu_subs_bash1", use.id)
      assert.equal("echo " .. marker, use.input.command)
      assert.truthy(result, "no tool_result reached the Copilot API:\n" .. info)
      assert.equal("toolu_subs_bash1", result.tool_use_id)
      assert.truthy(text_of(result.content):find(marker, 1, true), json.encode(result))
    end)

    -- Claude Code's current models (its default, claude-opus-5-5 in the
    -- pinned version) get its mid-conversation {"role": "system"} message
    -- after the user's prompt, under its per-turn betas (see
    -- compat_claude_code_spec.lua): the turn is still the user's own
    it("serves Claude Code's current model, whose first turn ends in its system message; still the user's turn", function()
      up:post("/_mock/models", { copilot = { "gpt-4.1", { id = CURRENT_CLAUDE, supported_endpoints = { "/v1/messages" } } } })
      up:queue { { reply = { text = "Hello from the Copilot mock." } } }
      local res = run("Say hello.", nil, CURRENT_CLAUDE)
      local posts, info = ran(res, "Claude Code")
      assert.truthy(res.out:find("Hello from the Copilot mock.", 1, true), "Claude Code did not print the answer:\n" .. info)
      assert.equal(1, #posts, info) -- its first try served, its system message with it
      local r = posts[1]
      copilot_request(r, info, CURRENT_CLAUDE)
      local msgs = r.json.messages
      assert.equal("user", msgs[1].role, info)
      assert.equal("system", msgs[#msgs].role, "Claude Code's mid-conversation system message did not reach Copilot:\n" .. info)
      assert.truthy(text_of(msgs[#msgs].content):find("# Environment", 1, true), info)
      assert.equal("user", r.headers["x-initiator"], info)
    end)
  end)

  it("never shows a token: not in what the clients printed, not in the verbose log", function()
    local secrets = { GH_TOKEN, CG.access, CG.refresh }
    local issued = gh:get("/_mock/issued")
    for _, v in ipairs(issued) do secrets[#secrets + 1] = v end
    assert.is_true(#printed > 0, "no client ran")
    local log = server.log
    assert.matches("DEBUG", log) -- verbose indeed
    for _, s in ipairs(secrets) do
      assert.is_nil(log:find(s, 1, true), "the daemon's log holds a secret")
      for _, text in ipairs(printed) do assert.is_nil(text:find(s, 1, true), "a client printed a secret") end
    end
  end)
end)
