-- The account store (files, modes, names), the PKCE and JWT helpers, and
-- the command line's account commands.
local uv = require "luv"
local util = require "moongate.auth.util"
local store = require "moongate.auth.store"
local chatgpt = require "moongate.auth.chatgpt"
local copilot = require "moongate.auth.copilot"
local cli = require "moongate.cli"

local function mode_of(path)
  return string.format("%o", assert(uv.fs_stat(path)).mode % 512)
end

local function files_in(dir)
  local out, h = {}, uv.fs_scandir(dir)
  while h do
    local name = uv.fs_scandir_next(h)
    if not name then break end
    out[#out + 1] = name
  end
  table.sort(out)
  return out
end

describe("auth.store", function()
  local root
  before_each(function()
    root = os.tmpname()
    os.remove(root)
    uv.os_setenv("MOONGATE_HOME", root .. "/home")
  end)
  after_each(function()
    uv.os_unsetenv("MOONGATE_HOME")
    os.execute("rm -rf " .. root)
  end)

  it("finds its home in MOONGATE_HOME, else XDG_CONFIG_HOME/moongate, else ~/.config/moongate", function()
    local function env(t) return function(k) return t[k] end end
    assert.equal("/m", store.home(env { MOONGATE_HOME = "/m", XDG_CONFIG_HOME = "/x", HOME = "/h" }))
    assert.equal("/x/moongate", store.home(env { MOONGATE_HOME = "", XDG_CONFIG_HOME = "/x", HOME = "/h" }))
    assert.equal("/h/.config/moongate", store.home(env { HOME = "/h" }))
  end)

  it("saves a record as a 0600 file in 0700 folders, atomically, and loads it back", function()
    local rec = { name = "work", kind = "copilot", login = "octocat", github_token = "gho_x", created_at = 1, refreshed_at = 2 }
    assert.is_true(store.save(rec))
    assert.equal("700", mode_of(root .. "/home"))
    assert.equal("700", mode_of(root .. "/home/accounts"))
    assert.equal("600", mode_of(root .. "/home/accounts/work.json"))
    assert.same(rec, store.load("work"))
    rec.login = "someone"
    assert.is_true(store.save(rec))
    assert.equal("someone", store.load("work").login)
    -- the temp file was renamed over the old one: nothing else is left
    assert.same({ "work.json" }, files_in(root .. "/home/accounts"))
  end)

  it("fixes the mode of an accounts folder that is too open", function()
    assert(os.execute("mkdir -p " .. root .. "/home/accounts && chmod 755 " .. root .. "/home/accounts") == 0)
    assert.is_true(store.save { name = "a", kind = "copilot", github_token = "t" })
    assert.equal("700", mode_of(root .. "/home/accounts"))
  end)

  it("refuses names that are not letters, digits, '.', '_' and '-'", function()
    for _, bad in ipairs { "", "../x", "a/b", "a b", "..", "é" } do
      local ok, err = store.save { name = bad, kind = "copilot" }
      assert.is_nil(ok)
      assert.matches("invalid account name", err)
    end
    assert.is_nil(uv.fs_stat(root .. "/home/accounts/x.json"))
    assert.truthy(store.check_name("work-2.old_one"))
    assert.matches("invalid account name", select(2, store.load("../x")))
  end)

  it("lists records by name and skips a broken file with a warning", function()
    assert(store.save { name = "b", kind = "chatgpt", access_token = "x" })
    assert(store.save { name = "a", kind = "copilot", github_token = "y" })
    local f = assert(io.open(root .. "/home/accounts/broken.json", "w"))
    f:write("{oops")
    f:close()
    f = assert(io.open(root .. "/home/accounts/c.lock", "w"))
    f:close()
    local log = require "moongate.log"
    local warned = {}
    local orig = log.warn
    log.warn = function(fmt, ...) warned[#warned + 1] = string.format(fmt, ...) end
    local list = store.list()
    log.warn = orig
    assert.same({ "a", "b" }, { list[1].name, list[2].name })
    assert.equal(2, #list)
    assert.equal(1, #warned)
    assert.matches("broken%.json", warned[1])
  end)

  it("removes an account, and says so when there is none", function()
    assert(store.save { name = "a", kind = "copilot", github_token = "y" })
    assert.is_true(store.remove("a"))
    assert.is_nil(uv.fs_stat(root .. "/home/accounts/a.json"))
    local ok, err = store.remove("a")
    assert.is_nil(ok)
    assert.matches('no account named "a"', err)
    assert.matches('no account named "zz"', select(2, store.load("zz")))
  end)
end)

describe("auth.util", function()
  it("makes the S256 challenge of RFC 7636's appendix B", function()
    assert.equal("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
      util.challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"))
  end)

  it("makes a PKCE pair of a 43-character verifier and its challenge, new each time", function()
    local v, c = util.pkce()
    assert.equal(43, #v)
    assert.matches("^[%w_%-]+$", v)
    assert.equal(util.challenge(v), c)
    assert.are_not.equal(v, (util.pkce()))
  end)

  it("encodes and decodes base64url without padding", function()
    for _, s in ipairs { "", "f", "fo", "foo", "foob", "\255\254\253", string.rep("x", 100) } do
      assert.equal(s, util.b64url_decode(util.b64url(s)))
      assert.is_nil(util.b64url(s):find("[=+/]"))
    end
    assert.equal("_-8", util.b64url("\255\239"))
  end)

  it("reads a JWT's claims", function()
    local payload = util.b64url('{"exp":1700000000,"email":"a@b.c","https://api.openai.com/auth":{"chatgpt_account_id":"acc-9"}}')
    local claims = assert(util.jwt_claims("eyJhbGciOiJSUzI1NiJ9." .. payload .. ".c2ln"))
    assert.equal(1700000000, claims.exp)
    assert.equal("acc-9", claims["https://api.openai.com/auth"].chatgpt_account_id)
    assert.is_nil(util.jwt_claims("not-a-jwt"))
    assert.is_nil(util.jwt_claims("a." .. util.b64url("[1") .. ".c"))
  end)

  it("encodes forms and reads queries", function()
    assert.equal("a=1&b=x%20y%26z", util.form { b = "x y&z", a = 1 })
    assert.same({ code = "a b", state = "s/t" }, util.parse_query("code=a+b&state=s%2Ft"))
  end)
end)

describe("auth records", function()
  it("takes a ChatGPT account's id, email and expiry from its tokens", function()
    local auth = { chatgpt_account_id = "acct-7" }
    local json = require "moongate.json"
    local function jwt(c) return "h." .. util.b64url(json.encode(c)) .. ".s" end
    local rec = chatgpt.record_from({
      access_token = jwt { exp = 5000, ["https://api.openai.com/auth"] = auth },
      id_token = jwt { email = "me@example.com", ["https://api.openai.com/auth"] = auth },
      refresh_token = "rt_1",
    }, "gpt", 1000)
    assert.equal("acct-7", rec.account_id)
    assert.equal("me@example.com", rec.login)
    assert.equal(5000, rec.expires_at)
    assert.equal(1000, rec.refreshed_at)
    assert.equal("chatgpt", rec.kind)
  end)

  it("takes the Copilot API base from the token's proxy-ep", function()
    assert.equal("https://api.individual.githubcopilot.com",
      copilot.base_from_token("tid=1;exp=2;proxy-ep=proxy.individual.githubcopilot.com;x=1:sig"))
    assert.equal("https://api.enterprise.githubcopilot.com",
      copilot.base_from_token("tid=1;proxy-ep=proxy.enterprise.githubcopilot.com"))
    assert.is_nil(copilot.base_from_token("tid=1;exp=2"))
  end)
end)

describe("cli.parse for the account commands", function()
  it("parses login, logout and info", function()
    assert.same({ kind = "copilot", name = "work" }, cli.parse { "login", "copilot", "--name", "work" }.flags)
    assert.same({ kind = "chatgpt", headless = true }, cli.parse { "login", "chatgpt", "--headless" }.flags)
    assert.same({ account = "work" }, cli.parse { "logout", "work" }.flags)
    assert.equal("info", cli.parse { "info" }.command)
    assert.same({ command = "help", flags = { topic = "login" } }, cli.parse { "login", "--help" })
    for _, topic in ipairs { "login", "logout", "info" } do
      assert.is_string(cli.usage[topic])
      assert.matches(topic, cli.usage.main)
    end
  end)

  it("refuses what the account commands do not take", function()
    assert.matches("copilot or chatgpt", select(2, cli.parse { "login" }))
    assert.matches('unknown kind "github"', select(2, cli.parse { "login", "github" }))
    assert.matches("%-%-headless is for chatgpt", select(2, cli.parse { "login", "copilot", "--headless" }))
    assert.matches("needs a value", select(2, cli.parse { "login", "copilot", "--name" }))
    assert.matches("NAME is required", select(2, cli.parse { "logout" }))
    assert.matches("unexpected argument", select(2, cli.parse { "logout", "a", "b" }))
    assert.matches("unexpected argument", select(2, cli.parse { "info", "x" }))
    assert.matches("unknown option %-%-name", select(2, cli.parse { "serve", "--name", "x" }))
  end)
end)
