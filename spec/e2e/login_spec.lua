-- `moongate login | logout | info` as the binary runs them, against the mock
-- GitHub and OpenAI auth servers (spec/support/mock_accounts.lua), with
-- MOONGATE_HOME in a scratch folder and standard input closed. After every
-- run, its stdout and stderr are searched for every secret the mock handed
-- out, finding none.
local H = require "helpers"
local uv = require "luv"
local json = require "moongate.json"
local client = H.client
local run_until = client.run_until

local function mode_of(path)
  local st = assert(uv.fs_stat(path), "no " .. path)
  return string.format("%o", st.mode % 512)
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end


describe("moongate login / logout / info", function()
  local mock, dirs, home

  setup(function()
    mock = H.mock("spec/support/mock_accounts.lua")
    dirs = H.scratch()
  end)
  teardown(function()
    if mock then mock:stop() end
    if dirs then dirs.remove() end
  end)
  before_each(function()
    mock:post("/_mock/reset", {})
    home = dirs.fresh().home .. "/mg" -- made by the login itself
  end)

  -- run(args) -> {code, out, err}; on_out(proc) is called as stdout grows
  local function start(args, on_out)
    local p = { out = "", err = "", exited = false }
    local env = { "PATH=" .. (os.getenv("PATH") or "/usr/bin:/bin"),
      "MOONGATE_LUA_DIR=" .. (os.getenv("MOONGATE_LUA_DIR") or "lua"),
      "MOONGATE_HOME=" .. home,
      "MOONGATE_GITHUB_URL=" .. mock.url, "MOONGATE_GITHUB_API_URL=" .. mock.url,
      "MOONGATE_OPENAI_AUTH_URL=" .. mock.url, "MOONGATE_CHATGPT_CALLBACK_PORT=0" }
    for _, name in ipairs { "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS" } do
      if os.getenv(name) then env[#env + 1] = name .. "=" .. os.getenv(name) end
    end
    local so, se = uv.new_pipe(false), uv.new_pipe(false)
    p.handle = H.spawn(H.bin, { args = args, env = env, stdio = { nil, so, se } }, function(code, signal)
      p.exited, p.code, p.signal = true, code, signal
    end)
    assert(p.handle, "cannot start " .. H.bin)
    so:read_start(function(_, d)
      if d then
        p.out = p.out .. d
        if on_out then on_out(p) end
      end
    end)
    se:read_start(function(_, d) if d then p.err = p.err .. d end end)
    function p.wait()
      assert(run_until(function() return p.exited end, 20000), "the command did not end:\n" .. p.out .. p.err)
      run_until(function() return false end, 30) -- the last output
      for _, h in ipairs { so, se, p.handle } do if not h:is_closing() then h:close() end end
      uv.run("nowait")
      if not p.signal_expected then assert.equal(0, p.signal, "the command died of signal " .. tostring(p.signal) .. ":\n" .. p.err) end
      -- no secret the mock issued in anything the command printed
      for _, s in ipairs(mock:get("/_mock/issued")) do
        assert.is_nil((p.out .. p.err):find(s, 1, true), "a secret was printed: " .. s)
      end
      assert.is_nil(p.err:find("AddressSanitizer") or p.err:find("LeakSanitizer"), p.err)
      return p
    end
    return p
  end
  local function run(args, on_out) return start(args, on_out).wait() end

  local function requests(path)
    local out = {}
    for _, r in ipairs(mock:get("/_mock/requests")) do
      if not path or r.path == path then out[#out + 1] = r end
    end
    return out
  end

  describe("copilot", function()
    it("polls through pending and slow_down to success and stores the account 0600 in a 0700 folder", function()
      local p = run { "login", "copilot", "--name", "work" }
      assert.equal(0, p.code, p.err)
      assert.matches("enter the code WDJB%-MJHT", p.out)
      assert.matches("https://github.com/login/device", p.out, 1, true)
      assert.matches("logged in as octocat; stored as account work", p.out)

      assert.equal("700", mode_of(home))
      assert.equal("700", mode_of(home .. "/accounts"))
      assert.equal("600", mode_of(home .. "/accounts/work.json"))
      local rec = json.decode(read(home .. "/accounts/work.json"))
      assert.equal("copilot", rec.kind)
      assert.equal("work", rec.name)
      assert.equal("octocat", rec.login)
      assert.matches("^gho_", rec.github_token)
      assert.is_number(rec.created_at)

      local start_req = requests("/login/device/code")[1]
      assert.equal("Iv1.b507a08c87ecfe98", start_req.body:match("client_id=([^&]+)"))
      assert.matches("scope=read%%3Auser", start_req.body)
      local polls = requests("/login/oauth/access_token")
      assert.equal(3, #polls) -- pending, slow_down, success
      -- the slow_down raised the interval from 50 ms to the 300 ms it named
      assert.is_true(polls[2].at_ms - polls[1].at_ms < 250)
      assert.is_true(polls[3].at_ms - polls[2].at_ms >= 280)
      -- the login asked who it is and whether a Copilot token comes, with the new token
      assert.equal("token " .. rec.github_token, requests("/user")[1].headers.authorization)
      assert.equal("token " .. rec.github_token, requests("/copilot_internal/v2/token")[1].headers.authorization)
    end)

    it("ends with exit 1 when the code expires unapproved", function()
      mock:post("/_mock/config", { device_steps = {}, device_expires_in = 1 })
      local p = run { "login", "copilot" }
      assert.equal(1, p.code)
      assert.matches("the code expired before the login was approved", p.err)
      assert.is_nil(uv.fs_stat(home .. "/accounts/copilot.json"))
      assert.is_true(#requests("/login/oauth/access_token") >= 2)
    end)

    it("ends with exit 1 when GitHub says the code expired", function()
      mock:post("/_mock/config", { device_steps = { "pending", "expired" } })
      local p = run { "login", "copilot" }
      assert.equal(1, p.code)
      assert.matches("the code expired", p.err)
    end)

    it("ends with exit 1 when the login is denied", function()
      mock:post("/_mock/config", { device_steps = { "pending", "denied" } })
      local p = run { "login", "copilot" }
      assert.equal(1, p.code)
      assert.matches("the login was denied on GitHub", p.err)
      assert.is_nil(uv.fs_stat(home .. "/accounts/copilot.json"))
    end)

    it("refuses an account name that is not a plain word", function()
      local p = run { "login", "copilot", "--name", "../evil" }
      assert.equal(1, p.code)
      assert.matches("invalid account name", p.err)
      assert.equal(0, #requests())
    end)
  end)

  describe("chatgpt", function()
    -- the spec plays the browser: it opens the printed URL at the mock and
    -- follows the 302 to the login's callback (first with a forged state
    -- when asked)
    local function browser(forge)
      local state = { done = false }
      return function(p)
        if state.started then return end
        local url = p.out:match("(http://127%.0%.0%.1:%d+/oauth/authorize%?%S+)")
        if not url then return end
        state.started = true
        state.url = url
        local res = assert(client.request(mock.port, "GET", url:match("^http://[^/]+(/.*)$")))
        state.authorize = res
        if res.status ~= 302 then return end
        local cb_port, cb_path = res.headers.location:match("^http://localhost:(%d+)(/auth/callback%?.*)$")
        state.callback_port = tonumber(cb_port)
        if forge then
          local forged = cb_path:gsub("state=[^&]+", "state=forged-state-value-0123456789")
          state.forged = assert(client.request(tonumber(cb_port), "GET", forged))
        end
        state.callback = assert(client.request(tonumber(cb_port), "GET", cb_path))
      end, state
    end

    it("logs in through the browser with PKCE (S256) and a checked state", function()
      local on_out, b = browser(true)
      local p = run({ "login", "chatgpt" }, on_out)
      assert.equal(0, p.code, p.out .. p.err)
      assert.equal(302, b.authorize.status, b.authorize.body)
      -- the URL names the port the login listens on
      assert.equal(b.callback_port, tonumber(b.url:match("redirect_uri=http%%3A%%2F%%2Flocalhost%%3A(%d+)")))
      assert.equal(400, b.forged.status)
      assert.matches("state does not match", b.forged.body)
      assert.equal(200, b.callback.status)
      assert.matches("logged in as user@example.com; stored as account chatgpt", p.out)

      local token_req = requests("/oauth/token")[1]
      assert.matches("grant_type=authorization_code", token_req.body)
      assert.matches("code_verifier=", token_req.body)
      assert.equal("600", mode_of(home .. "/accounts/chatgpt.json"))
      local rec = json.decode(read(home .. "/accounts/chatgpt.json"))
      assert.equal("chatgpt", rec.kind)
      assert.equal("acct-1234", rec.account_id)
      assert.equal("user@example.com", rec.login)
      assert.matches("^rt_", rec.refresh_token)
      assert.equal(2, select(2, rec.access_token:gsub("%.", ""))) -- header.payload.sig
      assert.is_true(rec.expires_at > os.time() + 3000)
    end)

    it("does not take a callback whose state is forged alone", function()
      -- only the forged callback comes; the login keeps waiting, then is stopped
      local sent
      local p = start({ "login", "chatgpt" }, function(pp)
        if sent then return end
        local url = pp.out:match("(http://127%.0%.0%.1:%d+/oauth/authorize%?%S+)")
        if not url then return end
        sent = true
        local res = assert(client.request(mock.port, "GET", url:match("^http://[^/]+(/.*)$")))
        local cb_port, cb_path = res.headers.location:match("^http://localhost:(%d+)(/auth/callback%?.*)$")
        sent = assert(client.request(tonumber(cb_port), "GET", (cb_path:gsub("state=[^&]+", "state=nope-nope-nope-nope"))))
      end)
      run_until(function() return type(sent) == "table" end, 5000)
      assert.equal(400, sent.status)
      run_until(function() return false end, 200)
      assert.is_false(p.exited)
      p.handle:kill("sigterm")
      p.signal_expected = true
      p.wait()
      assert.is_nil(uv.fs_stat(home .. "/accounts/chatgpt.json"))
      assert.equal(0, #requests("/oauth/token"))
    end)

    it("logs in headless with the device code", function()
      local p = run { "login", "chatgpt", "--headless", "--name", "laptop" }
      assert.equal(0, p.code, p.err)
      assert.matches("/codex/device and enter the code ABCD%-1234", p.out)
      assert.matches("logged in as user@example.com; stored as account laptop", p.out)
      assert.equal(3, #requests("/api/accounts/deviceauth/token")) -- two 403s, then the code
      local form = {}
      for k, v in requests("/oauth/token")[1].body:gmatch("([^&=]+)=([^&]*)") do
        form[k] = v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
      end
      assert.equal("authorization_code", form.grant_type)
      assert.equal(mock.url .. "/deviceauth/callback", form.redirect_uri)
      assert.equal("600", mode_of(home .. "/accounts/laptop.json"))
    end)
  end)

  describe("info and logout", function()
    it("lists the stored accounts without a token, and logout removes one", function()
      local p = run { "info" }
      assert.equal(0, p.code)
      assert.matches("no accounts stored in " .. home:gsub("%p", "%%%0") .. "/accounts", p.out)

      assert.equal(0, run({ "login", "copilot", "--name", "gh" }).code)
      assert.equal(0, run({ "login", "chatgpt", "--headless", "--name", "gpt" }).code)
      p = run { "info" }
      assert.equal(0, p.code)
      local gh_line = p.out:match("\ngh%s[^\n]+")
      local gpt_line = p.out:match("\ngpt%s[^\n]+")
      assert.matches("copilot%s+octocat%s+GitHub token", gh_line)
      assert.matches("chatgpt%s+user@example.com%s+expires %d+%-%d+%-%d+ %d+:%d+ UTC", gpt_line)
      local rec = json.decode(read(home .. "/accounts/gpt.json"))
      for _, field in ipairs { "access_token", "refresh_token", "id_token" } do
        assert.is_nil(p.out:find(rec[field], 1, true))
      end

      p = run { "logout", "gh" }
      assert.equal(0, p.code)
      assert.matches("removed account gh", p.out)
      assert.is_nil(uv.fs_stat(home .. "/accounts/gh.json"))
      p = run { "logout", "gh" }
      assert.equal(1, p.code)
      assert.matches("no account named \"gh\"", p.err)
      p = run { "info" }
      assert.is_nil(p.out:match("\ngh%s"))
      assert.truthy(p.out:match("\ngpt%s"))
    end)

    it("skips a broken account file with a warning", function()
      assert.equal(0, run({ "login", "copilot", "--name", "ok" }).code)
      local f = assert(io.open(home .. "/accounts/broken.json", "w"))
      f:write("{not json")
      f:close()
      local p = run { "info" }
      assert.equal(0, p.code)
      assert.truthy(p.out:match("\nok%s"))
      assert.matches("broken.json", p.err)
    end)
  end)
end)
