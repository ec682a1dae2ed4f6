-- The token sources the daemon's copilot and chatgpt providers use, run on
-- busted's own luv loop with core._fetch (build/lua) against the mock
-- account servers (spec/support/mock_accounts.lua), the account store in a
-- scratch MOONGATE_HOME. Two sources of one account stand for two worker
-- threads: they share nothing but the account file.
local H = require "helpers"
local uv = require "luv"
local json = require "moongate.json"
local secrets = require "moongate.secrets"
local store = require "moongate.auth.store"
local copilot = require "moongate.auth.copilot"
local chatgpt = require "moongate.auth.chatgpt"
local client = H.client
local run_until = client.run_until

-- token(src, stale) -> tok, err, whether cb ran before token() returned
local function token(src, stale)
  local got
  src:token(function(tok, err) got = { tok = tok, err = err } end, stale)
  local sync = got ~= nil
  assert(run_until(function() return got end, 10000), "token() never called back")
  return got.tok, got.err, sync
end

describe("token sources", function()
  local mock, dirs, now

  setup(function()
    mock = H.mock("spec/support/mock_accounts.lua")
    dirs = H.scratch()
  end)
  teardown(function()
    uv.os_unsetenv("MOONGATE_HOME")
    if mock then mock:stop() end
    if dirs then dirs.remove() end
  end)
  before_each(function()
    mock:post("/_mock/reset")
    uv.os_setenv("MOONGATE_HOME", dirs.fresh().home)
    now = os.time()
  end)
  local function clock() return now end

  describe("copilot", function()
    local GH = "gho_spec_github_token_0001"
    before_each(function()
      assert(store.save { name = "gh", kind = "copilot", login = "octocat", github_token = GH,
        created_at = now, refreshed_at = now })
      mock:post("/_mock/github_token", { token = GH })
    end)
    local function source(extra)
      local o = { account = "gh", github_api_url = mock.url, clock = clock,
        headers = { ["editor-version"] = "vscode/1.99.0", ["copilot-integration-id"] = "vscode-chat" } }
      for k, v in pairs(extra or {}) do o[k] = v end
      return copilot.source(o)
    end

    it("exchanges the GitHub token once and serves the Copilot token from memory until refresh_in - 60 s", function()
      local src = source()
      local tok, err = token(src)
      assert.is_nil(err)
      assert.matches("proxy%-ep=proxy%.individual%.githubcopilot%.com", tok.token)
      assert.equal("https://api.individual.githubcopilot.com", tok.base_url)
      assert.is_true(tok.expires_at >= now + 1800 and tok.expires_at <= now + 1802) -- the mock's clock
      local seen = mock:requests("/copilot_internal/v2/token")
      assert.equal(1, #seen)
      assert.equal("token " .. GH, seen[1].headers.authorization)
      assert.equal("vscode/1.99.0", seen[1].headers["editor-version"])
      assert.equal("vscode-chat", seen[1].headers["copilot-integration-id"])
      -- both tokens are redacted from now on
      assert.equal(secrets.MARK, secrets.redact(tok.token))
      assert.equal(secrets.MARK, secrets.redact(GH))

      now = now + 1500 - 61 -- refresh_in 1500, minus the 60 s margin, not yet
      local again, _, sync = token(src)
      assert.is_true(sync)
      assert.equal(tok.token, again.token)
      assert.equal(1, #mock:requests("/copilot_internal/v2/token"))

      now = now + 2 -- past refresh_in - 60: a new one
      local fresh = token(src)
      assert.are_not.equal(tok.token, fresh.token)
      assert.equal(2, #mock:requests("/copilot_internal/v2/token"))
    end)

    it("exchanges once more after an upstream 401 (stale), even before expiry", function()
      local src = source()
      local first = token(src)
      local second = token(src, true)
      assert.are_not.equal(first.token, second.token)
      assert.equal(2, #mock:requests("/copilot_internal/v2/token"))
      -- a caller refused with the first token, after the second came: served the second
      local third = token(src, first.token)
      assert.equal(second.token, third.token)
      assert.equal(2, #mock:requests("/copilot_internal/v2/token"))
    end)

    it("makes one exchange for callers that arrive while it is under way", function()
      local src = source()
      local a, b
      src:token(function(t) a = t end)
      src:token(function(t) b = t end)
      assert.is_nil(a)
      assert.truthy(run_until(function() return a and b end, 5000))
      assert.equal(a.token, b.token)
      assert.equal(1, #mock:requests("/copilot_internal/v2/token"))
    end)

    it("takes the API base from copilot_api_url over proxy-ep", function()
      local tok = token(source { copilot_api_url = "http://127.0.0.1:9/copilot/" })
      assert.equal("http://127.0.0.1:9/copilot", tok.base_url)
      mock:post("/_mock/config", { proxy_ep = "proxy.business.githubcopilot.com" })
      assert.equal("https://api.business.githubcopilot.com", token(source()).base_url)
    end)

    it("says which account to log in again when GitHub refuses its token, and never names the token", function()
      assert(store.save { name = "old", kind = "copilot", login = "x", github_token = "gho_revoked_token_0002" })
      local tok, err = token(source { account = "old" })
      assert.is_nil(tok)
      assert.equal(401, err.status)
      assert.equal("the GitHub token of account old was refused; run moongate login copilot --name old", err.message)
      local _, missing = token(source { account = "nobody" })
      assert.equal(503, missing.status)
      assert.matches("run moongate login copilot %-%-name nobody", missing.message)
    end)

    it("serves a client's own GitHub token in pass-through mode", function()
      mock:post("/_mock/github_token", { token = "gho_client_own_token_03" })
      local tok = token(copilot.source { github_token = "gho_client_own_token_03", github_api_url = mock.url })
      assert.matches("proxy%-ep=", tok.token)
      assert.equal("token gho_client_own_token_03", mock:requests("/copilot_internal/v2/token")[1].headers.authorization)
      local _, err = token(copilot.source { github_token = "gho_not_known_token_04", github_api_url = mock.url })
      assert.equal(401, err.status)
      assert.equal("the GitHub token sent as the key was refused", err.message)
    end)
  end)

  describe("chatgpt", function()
    before_each(function()
      local rec = assert(chatgpt.login({ name = "gpt", headless = true, auth_url = mock.url }, function() end))
      assert.equal("acct-1234", rec.account_id)
      now = os.time()
    end)
    local function source()
      return chatgpt.source { account = "gpt", auth_url = mock.url, clock = clock, poll_ms = 20 }
    end
    local function file() return json.decode(assert(io.open(store.dir() .. "/gpt.json")):read("*a")) end

    it("serves the stored access token while it is fresh, and the account id", function()
      local tok, err, sync = token(source())
      assert.is_nil(err)
      assert.is_true(sync)
      assert.equal(file().access_token, tok.token)
      assert.equal("acct-1234", tok.account_id)
      assert.equal(0, #mock:requests("/oauth/token") - 1) -- the login's exchange only
      assert.equal(secrets.MARK, secrets.redact(file().refresh_token))
    end)

    it("refreshes within 5 minutes of expiry, rotating the refresh token, and saves the new tokens", function()
      local before = file()
      now = before.expires_at - 299
      local tok = token(source())
      local after = file()
      assert.are_not.equal(before.access_token, tok.token)
      assert.equal(after.access_token, tok.token)
      assert.are_not.equal(before.refresh_token, after.refresh_token)
      assert.equal(now, after.refreshed_at)
      assert.equal("user@example.com", after.login)
      assert.equal("600", string.format("%o", uv.fs_stat(store.dir() .. "/gpt.json").mode % 512))
      local refresh = mock:requests("/oauth/token")[2]
      assert.matches("grant_type=refresh_token", refresh.body)
      assert.matches("refresh_token=" .. before.refresh_token, refresh.body, 1, true)
      assert.equal("application/x-www-form-urlencoded", refresh.headers["content-type"])
      assert.is_nil(uv.fs_stat(store.dir() .. "/gpt.lock"))
      -- the old refresh token is spent
      local res = client.request(mock.port, "POST", "/oauth/token",
        "grant_type=refresh_token&client_id=app_EMoamEEZ73f0CkXaXp7hrann&refresh_token=" .. before.refresh_token,
        { ["Content-Type"] = "application/x-www-form-urlencoded" })
      assert.equal(401, res.status)
    end)

    it("refreshes once after an upstream 401, and once for callers that arrive meanwhile", function()
      local src = source()
      local first = token(src)
      local a, b
      src:token(function(t) a = t end, true)
      src:token(function(t) b = t end, true)
      assert.truthy(run_until(function() return a and b end, 5000))
      assert.are_not.equal(first.token, a.token)
      assert.equal(a.token, b.token)
      assert.equal(2, #mock:requests("/oauth/token")) -- the login's, then one refresh
    end)

    it("takes another thread's refresh from the file instead of spending the rotated token", function()
      local t1, t2 = source(), source()
      local old = token(t1)
      assert.equal(old.token, token(t2).token)
      local new = token(t1, true)
      assert.are_not.equal(old.token, new.token)
      -- t2 still holds the old token; its upstream answered 401
      local got, err = token(t2, true)
      assert.is_nil(err)
      assert.equal(new.token, got.token)
      assert.equal(2, #mock:requests("/oauth/token"))
    end)

    it("serialises two threads refreshing at once with the lock file: one refresh, one token", function()
      mock:post("/_mock/config", { refresh_delay_ms = 300 })
      local t1, t2 = source(), source()
      token(t1)
      token(t2)
      local a, b, aerr, berr
      t1:token(function(t, e) a, aerr = t, e end, true)
      t2:token(function(t, e) b, berr = t, e end, true)
      assert.truthy(run_until(function() return (a or aerr) and (b or berr) end, 10000))
      assert.is_nil(aerr)
      assert.is_nil(berr)
      assert.equal(a.token, b.token)
      assert.equal(2, #mock:requests("/oauth/token"))
      assert.equal(a.token, file().access_token)
      assert.is_nil(uv.fs_stat(store.dir() .. "/gpt.lock"))
    end)

    it("removes a lock left behind by a crash (older than 30 s)", function()
      local lock = store.dir() .. "/gpt.lock"
      local fd = assert(uv.fs_open(lock, "wx", tonumber("600", 8)))
      uv.fs_close(fd)
      local old = os.time() - 60
      assert(uv.fs_utime(lock, old, old))
      local tok, err = token(source(), true)
      assert.is_nil(err)
      assert.equal(file().access_token, tok.token)
      assert.is_nil(uv.fs_stat(lock))
    end)

    it("waits for a live lock, then uses the token its holder saved", function()
      local lock = store.dir() .. "/gpt.lock"
      local fd = assert(uv.fs_open(lock, "wx", tonumber("600", 8)))
      uv.fs_close(fd)
      local src = source()
      local old = token(src)
      local got
      src:token(function(t, e) got = { t = t, e = e } end, true)
      run_until(function() return got end, 300)
      assert.is_nil(got) -- still waiting
      -- the holder (another process) refreshes and saves, then unlocks
      local rec = file()
      rec.access_token = "eyJhbGciOiJub25lIn0.eyJleHAiOjB9.other-process-token"
      rec.expires_at = os.time() + 3600
      assert(store.save(rec))
      uv.fs_unlink(lock)
      assert.truthy(run_until(function() return got end, 5000))
      assert.is_nil(got.e)
      assert.are_not.equal(old.token, got.t.token)
      assert.equal(rec.access_token, got.t.token)
      assert.equal(1, #mock:requests("/oauth/token")) -- no refresh of its own
    end)

    it("says to log in again when the refresh token is refused", function()
      local rec = file()
      rec.refresh_token = "rt_spent_refresh_token_05"
      assert(store.save(rec))
      local tok, err = token(source(), true)
      assert.is_nil(tok)
      assert.equal(401, err.status)
      assert.matches("run moongate login chatgpt %-%-name gpt", err.message)
      assert.is_nil(err.message:find("rt_spent", 1, true))
      assert.is_nil(uv.fs_stat(store.dir() .. "/gpt.lock"))
    end)
  end)
end)
