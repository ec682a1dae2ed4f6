-- Claude Code itself (`claude -p`, the native binary of
-- @anthropic-ai/claude-code in spec/compat) against the real daemon and the
-- mock upstream: its default model passed through to an Anthropic upstream,
-- a non-Claude model translated to an OpenAI upstream, a tool loop and a PDF
-- read with each. Loopback only: Claude Code runs with a throwaway HOME,
-- CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 (and the updater, telemetry and
-- error reports off), and the mock as its HTTP(S) proxy, so any try to reach
-- the internet shows up in the mock's request log (a CONNECT, refused, or an
-- absolute URL) and goes nowhere; every case checks there was none.
--
-- What Claude Code 2.1.332 sends (see the report in the issue): POST
-- /v1/messages?beta=true, stream true, model claude-opus-5-5 by default,
-- max_tokens 128000, thinking {type adaptive, display omitted},
-- context_management, output_config {effort}, and - under anthropic-beta
-- per-turn-control-2026-07-01 and mid-conversation-tool-changes-2026-07-01 -
-- a {"role": "system"} message after the first user message (carrying its
-- own output_config). Refused with a 400, it tries once more without them.
-- A PDF read with the Read tool comes back as a document block inside the
-- tool_result.
local helpers = require "helpers"
local json = require "moongate.json"

-- the native binary: the platform package's (npm may skip the postinstall
-- that copies it over bin/claude.exe), else the bin link
local function claude_bin()
  local found = helpers.sh("ls -d spec/compat/node_modules/@anthropic-ai/claude-code-linux-*/claude 2>/dev/null | head -1")
    :gsub("%s+$", "")
  if found ~= "" then return found end
  return "spec/compat/node_modules/.bin/claude"
end

-- a one-page PDF that says `text` (a valid xref, so any reader opens it)
local function tiny_pdf(text)
  local stream = "BT /F1 12 Tf 20 50 Td (" .. text .. ") Tj ET"
  local objs = { "<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
    "<< /Length " .. #stream .. " >>\nstream\n" .. stream .. "\nendstream",
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>" }
  local out, offsets = "%PDF-1.4\n", {}
  for i, o in ipairs(objs) do
    offsets[i] = #out
    out = out .. i .. " 0 obj\n" .. o .. "\nendobj\n"
  end
  local xref = #out
  out = out .. "xref\n0 " .. (#objs + 1) .. "\n0000000000 65535 f \n"
  for _, off in ipairs(offsets) do out = out .. string.format("%010d 00000 n \n", off) end
  return out .. "trailer\n<< /Size " .. (#objs + 1) .. " /Root 1 0 R >>\nstartxref\n" .. xref .. "\n%%EOF\n"
end

local base64 = require "support.base64"

describe("Claude Code (claude -p) through the daemon", function()
  local bin
  setup(function()
    bin = helpers.sh("realpath " .. claude_bin()):gsub("%s+$", "")
    assert(helpers.sh(bin .. " --version"):find("Claude Code"),
      "Claude Code is not installed: run scripts/setup --test (" .. bin .. ")")
  end)
  local gw = helpers.gateway_fixture {
    providers = {
      up = { kind = "openai", api_key = "sk-up", retries = 0 },
      claude = { kind = "anthropic", api_key = "sk-ant-up", retries = 0 },
    },
    routes = { { match = "claude-*", provider = "claude" }, { match = "gpt-*", provider = "up" } },
    scratch = true,
  }

  -- run(prompt, {model =, tools =, files = {name = bytes}, dirs = gw.dirs.fresh()})
  -- -> {code, out, err}
  local function run(prompt, opts)
    opts = opts or {}
    local d = opts.dirs or gw.dirs.fresh() -- a fresh HOME and working folder
    local home, work = d.home, d.work
    for name, bytes in pairs(opts.files or {}) do
      local f = assert(io.open(work .. "/" .. name, "wb"))
      f:write(bytes)
      f:close()
    end
    local env = {
      "PATH=/usr/bin:/bin", "HOME=" .. home, "TERM=dumb",
      "ANTHROPIC_BASE_URL=http://127.0.0.1:" .. gw.server.port, "ANTHROPIC_API_KEY=sk-ant-dummy",
      "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1", "DISABLE_TELEMETRY=1",
      "DISABLE_ERROR_REPORTING=1",
      -- anything not for the daemon goes to the mock, which logs it (a
      -- CONNECT for an https:// host is refused)
      "HTTPS_PROXY=" .. gw.mock.url, "HTTP_PROXY=" .. gw.mock.url, "NO_PROXY=127.0.0.1,localhost",
    }
    local args = { "-p", helpers.shell_quote(prompt) }
    if opts.model then args[#args + 1] = "--model " .. opts.model end
    if opts.tools then args[#args + 1] = "--allowedTools " .. opts.tools end
    return helpers.run_cli(work, env, string.format("timeout 60 %s %s", bin, table.concat(args, " ")))
  end

  local function rejected(api)
    local out = {}
    for _, r in ipairs(api) do
      if r.rejected then out[#out + 1] = r.path .. ": " .. r.rejected end
    end
    return out
  end

  local function describe_run(res, api)
    local lines = { "exit " .. tostring(res.code), "stdout: " .. res.out:sub(1, 600), "stderr: " .. res.err:sub(1, 600) }
    for i, r in ipairs(api) do
      local roles = {}
      for _, m in ipairs(r.json and r.json.messages or {}) do roles[#roles + 1] = m.role end
      lines[#lines + 1] = string.format("request %d: %s %s roles [%s] %s", i, r.method, r.path, table.concat(roles, ","),
        r.rejected and ("REJECTED: " .. r.rejected) or "")
    end
    return table.concat(lines, "\n")
  end

  local function text_of(content)
    if type(content) == "string" then return content end
    local out = {}
    for _, p in ipairs(content or {}) do
      if type(p) == "table" and p.text then out[#out + 1] = p.text end
    end
    return table.concat(out, "\n")
  end

  -- the common checks: the answer printed, no internet, nothing refused,
  -- and each request Claude Code's first try: with its mid-conversation
  -- system message (refused, Claude Code tries again without it, folded
  -- into the user's turn, and still answers - so the answer alone proves
  -- little)
  local function ran(res, want_out)
    local api, proxy = gw.mock:received() -- a proxy try: Claude Code reaching for the internet
    local info = describe_run(res, api)
    assert.same({}, proxy, "Claude Code tried to leave the machine:\n" .. info)
    assert.same({}, rejected(api), "the mock (as strict as the real API) refused a request:\n" .. info)
    assert.equal(0, res.code, info)
    assert.truthy(res.out:find(want_out, 1, true), "Claude Code did not print the answer:\n" .. info)
    for i, r in ipairs(api) do
      local found = false
      for j, m in ipairs(r.json.messages or {}) do
        if j > 1 and (m.role == "system" or m.role == "developer") and text_of(m.content):find("# Environment", 1, true) then
          found = true
        end
      end
      assert.is_true(found, string.format("request %d is not Claude Code's first try (no mid-conversation system message):\n%s",
        i, info))
    end
    return api, info
  end

  before_each(function() gw.mock:reset() end)

  describe("its default model, to an Anthropic upstream (passthrough)", function()
    it("answers a one-shot prompt; the request reaches the upstream as Claude Code sent it", function()
      gw.mock:queue { { reply = { text = "Hello from the Anthropic mock." } } }
      local res = run("Say hello.")
      local api, info = ran(res, "Hello from the Anthropic mock.")
      -- one request: the first try passed, no second try without the betas
      assert.equal(1, #api, info)
      local r = api[1]
      assert.truthy(r.path:find("^/v1/messages"), info)
      assert.truthy(r.json.model:find("^claude%-"), r.json.model)
      assert.is_true(r.json.stream)
      local beta = r.headers["anthropic-beta"] or ""
      assert.truthy(beta:find("claude-code-20250219", 1, true), beta)
      assert.truthy(beta:find("mid-conversation-tool-changes-2026-07-01", 1, true),
        "the beta that lets Claude Code send system messages did not reach the upstream: " .. beta .. "\n" .. info)
      -- its mid-conversation system message, as it sent it
      local system
      for _, m in ipairs(r.json.messages) do
        if m.role == "system" then system = m end
      end
      assert.truthy(system, "Claude Code's {role: system} message did not reach the upstream:\n" .. info)
      assert.truthy(text_of(system.content):find("# Environment", 1, true))
      assert.equal("user", r.json.messages[1].role)
      assert.truthy(text_of(r.json.messages[1].content):find("Say hello.", 1, true))
    end)
  end)

  describe("a non-Claude model (gpt-test), to an OpenAI upstream (translated)", function()
    it("answers a one-shot prompt; Claude Code's system message arrives as an OpenAI system message", function()
      gw.mock:queue { { reply = { text = "Hello from the OpenAI mock." } } }
      local res = run("Say hello.", { model = "gpt-test" })
      local api, info = ran(res, "Hello from the OpenAI mock.")
      assert.equal(1, #api, info)
      local r = api[1]
      assert.equal("/v1/chat/completions", r.path)
      assert.equal("gpt-test", r.json.model)
      assert.is_true(r.json.stream)
      -- the top-level system prompt first, the user's prompt, then the
      -- mid-conversation system message where Claude Code put it: after the
      -- user's message, as a system (or developer) message
      local msgs = r.json.messages
      assert.truthy(msgs[1].role == "system" or msgs[1].role == "developer", info)
      local prompt_at, env_at
      for i, m in ipairs(msgs) do
        local text = text_of(m.content)
        if m.role == "user" and text:find("Say hello.", 1, true) then prompt_at = prompt_at or i end
        if prompt_at and i > prompt_at and (m.role == "system" or m.role == "developer")
          and text:find("# Environment", 1, true) then env_at = i end
      end
      assert.truthy(prompt_at, info)
      assert.truthy(env_at, "Claude Code's {role: system} message did not arrive as a system message after the prompt:\n" .. info)
    end)
  end)

  for _, case in ipairs {
    { name = "an Anthropic upstream (passthrough)", model = nil, api = "anthropic", id = "toolu_cc_bash1" },
    { name = "an OpenAI upstream (translated)", model = "gpt-test", api = "openai", id = "call_cc_bash1" },
  } do
    describe("a tool loop with " .. case.name, function()
      it("runs Bash on the upstream's tool call and sends the result back", function()
        local marker = "moongate-tool-" .. math.random(100000, 999999)
        gw.mock:queue {
          { reply = { text = "Running it.", tool_calls = { { id = case.id, name = "Bash",
            input = { command = "echo " .. marker, description = "Print a marker" } } } } },
          { reply = { text = "The command printed the marker." } },
        }
        local res = run("Run echo for me.", { model = case.model, tools = "Bash" })
        local api, info = ran(res, "The command printed the marker.")
        assert.equal(2, #api, info)
        local msgs = api[2].json.messages
        if case.api == "anthropic" then
          -- the assistant turn with its tool_use, then the user turn with the result
          local use, result = helpers.tool_turn(msgs)
          assert.truthy(use, info)
          assert.equal(case.id, use.id)
          assert.equal("echo " .. marker, use.input.command)
          assert.truthy(result, info)
          assert.equal(case.id, result.tool_use_id)
          assert.truthy(text_of(result.content):find(marker, 1, true), json.encode(result))
        else
          local call, result
          for _, m in ipairs(msgs) do
            if m.role == "assistant" and m.tool_calls then call = m.tool_calls[1] end
            if m.role == "tool" then result = m end
          end
          assert.truthy(call, info)
          assert.equal(case.id, call.id)
          assert.equal("Bash", call["function"].name)
          assert.equal("echo " .. marker, json.decode(call["function"].arguments).command)
          assert.truthy(result, info)
          assert.equal(case.id, result.tool_call_id)
          assert.truthy(text_of(result.content):find(marker, 1, true), json.encode(result))
        end
      end)
    end)
  end

  for _, case in ipairs {
    { name = "an Anthropic upstream (passthrough)", model = nil, api = "anthropic", id = "toolu_cc_read1" },
    { name = "an OpenAI upstream (translated)", model = "gpt-test", api = "openai", id = "call_cc_read1" },
  } do
    describe("a PDF read with " .. case.name, function()
      it("sends the PDF the Read tool returned on to the upstream", function()
        local pdf = tiny_pdf("moongate pdf " .. math.random(1000, 9999))
        local b64 = base64(pdf)
        local d = gw.dirs.fresh()
        local path = d.work .. "/doc.pdf"
        gw.mock:queue {
          { reply = { text = "Reading it.", tool_calls = { { id = case.id, name = "Read", input = { file_path = path } } } } },
          { reply = { text = "The PDF has one page." } },
        }
        local res = run("Read doc.pdf and tell me what it says.", { model = case.model, tools = "Read",
          files = { ["doc.pdf"] = pdf }, dirs = d })
        local api, info = ran(res, "The PDF has one page.")
        assert.equal(2, #api, info)
        local msgs = api[2].json.messages
        if case.api == "anthropic" then
          local doc
          for _, m in ipairs(msgs) do
            for _, b in ipairs(type(m.content) == "table" and m.content or {}) do
              if b.type == "tool_result" and b.tool_use_id == case.id and type(b.content) == "table" then
                for _, c in ipairs(b.content) do
                  if c.type == "document" then doc = c end
                end
              end
            end
          end
          assert.truthy(doc, "no document block in the tool_result:\n" .. info)
          assert.equal("base64", doc.source.type)
          assert.equal("application/pdf", doc.source.media_type)
          assert.equal(b64, doc.source.data)
        else
          -- the tool message answers the call; the PDF (which a tool message
          -- cannot hold) arrives as a file part with a data URL
          local answered, file
          for _, m in ipairs(msgs) do
            if m.role == "tool" and m.tool_call_id == case.id then answered = true end
            if type(m.content) == "table" then
              for _, p in ipairs(m.content) do
                if p.type == "file" then file = p end
              end
            end
          end
          assert.is_true(answered, info)
          assert.truthy(file, "no file part reached the OpenAI upstream:\n" .. info)
          assert.equal("data:application/pdf;base64," .. b64, file.file.file_data)
        end
      end)
    end)
  end
end)
