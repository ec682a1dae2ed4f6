local config = require "moongate.config"
local helpers = require "helpers"

local function env(t) return function(k) return t[k] end end

describe("config", function()
  it("has the documented defaults", function()
    local cfg = assert(config.resolve({}, env {}, 4))
    assert.equal("127.0.0.1:8080", cfg.listen)
    assert.equal("127.0.0.1", cfg.host)
    assert.equal(8080, cfg.port)
    assert.equal(4, cfg.workers)
    assert.equal(10 * 1024 * 1024, cfg.max_body_bytes)
    assert.equal(100, cfg.upstream_http2_streams)
  end)

  it("loads the design's example file", function()
    local path = helpers.tmpfile([[
return {
  listen = "127.0.0.1:9000",
  providers = {
    up = { kind = "openai", base_url = "http://127.0.0.1:9100/v1", api_key = "sk-test" },
    claude = { kind = "anthropic", base_url = "http://127.0.0.1:9100", api_key = "sk-ant-test" },
    spare = { kind = "openai", base_url = "http://127.0.0.1:9200/v1" },
  },
  routes = {
    { match = "claude-*", provider = "claude" },
    { match = "*", provider = { "up", "spare" } },
  },
}]])
    local cfg = assert(config.resolve({ config = path }, env {}, 2))
    assert.equal(9000, cfg.port)
    assert.equal("openai", cfg.providers.up.kind)
    assert.same({ "up", "spare" }, cfg.routes[2].provider)
  end)

  it("refuses two inbound keys of one name (rate limits, metrics and logs know a key by it)", function()
    local ok, errs = config.validate({ keys = { { key = "k-one-0123456789", name = "team" },
      { key = "k-two-0123456789", name = "ops" }, { key = "k-three-012345678", name = "team" } } })
    assert.is_nil(ok)
    assert.same({ 'keys[3].name: "team" is the name of keys[1] too (each key\'s name is its own)' }, errs)
  end)

  it("reports unknown keys and wrong types with the key's path", function()
    local path = helpers.tmpfile([[
return {
  listn = "x",
  workers = "two",
  tls = { cert = "c.pem", key = "k.pem", http2 = "yes" },
  upstream_http2_streams = 0,
  providers = { up = { kind = "openai", base_url = 5, colour = "red" } },
  routes = { { match = "*", provider = "nope" } },
}]])
    local cfg, errs = config.resolve({ config = path }, env {}, 2)
    assert.is_nil(cfg)
    local text = table.concat(errs, "\n")
    assert.matches("config listn: unknown key", text, 1, true)
    assert.matches("config workers: expected an integer, got string", text, 1, true)
    assert.matches("config tls.http2: expected a boolean, got string", text, 1, true)
    assert.matches("config upstream_http2_streams: must be at least 1, got 0", text, 1, true)
    assert.matches("config providers.up.base_url: expected a string, got integer", text, 1, true)
    assert.matches("config providers.up.colour: unknown key", text, 1, true)
    assert.matches('config routes[1].provider: no provider named "nope"', text, 1, true)
  end)

  it("refuses a provider whose base_url is the daemon's own listen address (a request loop)", function()
    local path = helpers.tmpfile([[
return {
  listen = "127.0.0.1:9300",
  providers = { me = { kind = "openai", base_url = "http://localhost:9300/v1" },
    other = { kind = "openai", base_url = "http://127.0.0.1:9301/v1" } },
}]])
    local cfg, errs = config.resolve({ config = path }, env {}, 2)
    assert.is_nil(cfg)
    assert.equal(1, #errs)
    assert.matches('config providers.me.base_url: http://localhost:9300/v1 is this daemon\'s own address (listen = "127.0.0.1:9300")', errs[1], 1, true)
    local self_url = config.self_url
    assert.is_true(self_url("http://127.0.0.1:8080/v1", "0.0.0.0", 8080))
    assert.is_true(self_url("http://[::1]:8080", "::", 8080))
    assert.is_true(self_url("https://10.0.0.5/v1", "10.0.0.5", 443))
    assert.is_true(self_url("http://127.0.0.2:8080", "127.0.0.1", 8080))
    assert.is_false(self_url("http://127.0.0.1:8081/v1", "127.0.0.1", 8080))
    assert.is_false(self_url("https://127.0.0.1/v1", "127.0.0.1", 80))
    assert.is_false(self_url("http://10.0.0.6:8080", "10.0.0.5", 8080))
    assert.is_false(self_url("http://127.0.0.1:8080", "10.0.0.5", 8080)) -- listening elsewhere than loopback
    assert.is_false(self_url("http://127.0.0.1:0", "127.0.0.1", 0)) -- a port the kernel picks: unknown here
    assert.is_false(self_url("unix:/tmp/x", "127.0.0.1", 8080))
  end)

  it("reports a file that does not return a table, or does not parse", function()
    local _, errs = config.resolve({ config = helpers.tmpfile("return 42") }, env {}, 1)
    assert.matches("must return a table, got integer", errs[1])
    _, errs = config.resolve({ config = helpers.tmpfile("return {") }, env {}, 1)
    assert.matches("expected", errs[1])
    _, errs = config.resolve({ config = "/nonexistent/moongate.lua" }, env {}, 1)
    assert.matches("cannot read config", errs[1])
  end)

  it("lets flags beat the environment, which beats the file, which beats defaults", function()
    local path = helpers.tmpfile([[return { listen = "127.0.0.1:7000", workers = 3, log_level = "warn" }]])
    local cfg = assert(config.resolve({ config = path }, env {}, 8))
    assert.equal(7000, cfg.port)
    assert.equal(3, cfg.workers)
    cfg = assert(config.resolve({ config = path }, env { MOONGATE_LISTEN = "127.0.0.1:7001", MOONGATE_WORKERS = "5" }, 8))
    assert.equal(7001, cfg.port)
    assert.equal(5, cfg.workers)
    assert.equal("warn", cfg.log_level)
    cfg = assert(config.resolve({ config = path, listen = "127.0.0.1:7002", workers = 1, verbose = true },
      env { MOONGATE_LISTEN = "127.0.0.1:7001", MOONGATE_WORKERS = "5" }, 8))
    assert.equal(7002, cfg.port)
    assert.equal(1, cfg.workers)
    assert.equal("debug", cfg.log_level)
    -- MOONGATE_CONFIG names the file when no flag does
    cfg = assert(config.resolve({}, env { MOONGATE_CONFIG = path }, 8))
    assert.equal(7000, cfg.port)
  end)

  it("rejects bad environment values by name", function()
    local cfg, errs = config.resolve({}, env { MOONGATE_WORKERS = "many" }, 2)
    assert.is_nil(cfg)
    assert.matches('MOONGATE_WORKERS: expected an integer, got "many"', errs[1], 1, true)
  end)

  it("parses listen addresses", function()
    assert.same({ "127.0.0.1", 80 }, { config.parse_listen("127.0.0.1:80") })
    assert.same({ "0.0.0.0", 80 }, { config.parse_listen(":80") })
    assert.same({ "::1", 8080 }, { config.parse_listen("[::1]:8080") })
    assert.same({ "127.0.0.1", 8080 }, { config.parse_listen("localhost:8080") })
    assert.is_nil((config.parse_listen("nope")))
    assert.is_nil((config.parse_listen("1.2.3.4:99999")))
  end)
end)

describe("config without a file", function()
  it("serves the providers whose keys are in the environment", function()
    local cfg = assert(config.resolve({}, function(k)
      return ({ ANTHROPIC_API_KEY = "sk-ant-x", XAI_API_KEY = "xai-x",
        MOONGATE_XAI_BASE_URL = "http://127.0.0.1:9/v1" })[k]
    end, 1))
    assert.equal("anthropic", cfg.providers.anthropic.kind)
    assert.equal("ANTHROPIC_API_KEY", cfg.providers.anthropic.api_key_env)
    assert.equal("http://127.0.0.1:9/v1", cfg.providers.xai.base_url)
    assert.is_nil(cfg.providers.openai)
    local r = require("moongate.router").new(cfg, { anthropic = {}, xai = {}, echo = {} })
    assert.equal("anthropic", r:resolve("claude-opus-4").chain[1].name)
    assert.equal("xai", r:resolve("grok-4").chain[1].name)
  end)

  it("reports an unknown provider kind", function()
    local path = helpers.tmpfile([[return { providers = { p = { kind = "nonesuch" } } }]])
    local _, errs = config.resolve({ config = path }, env {}, 1)
    assert.matches('providers.p.kind: unknown kind "nonesuch"', errs[1], 1, true)
  end)
end)

describe("provider kinds' own config fields", function()
  -- stub kinds under spec/support/lua: schemed exports a schema, boom none,
  -- brokenload raises while loading
  local function check(providers, routes)
    local text = string.format("return { lua_path = %q, providers = %s, routes = %s }",
      "spec/support/lua/?.lua", providers, routes or "{}")
    local cfg, errs = config.resolve({ config = helpers.tmpfile(text) }, env {}, 1)
    return cfg, errs and table.concat(errs, "\n")
  end

  it("merge the kind's schema over the shared base", function()
    local cfg, text = check([[{ p = { kind = "schemed", flavour = "sweet", scoops = 2, retries = 1,
      base_url = "http://127.0.0.1:9/v1", accounts = { "work", "home" }, api_key_envs = { "K1", "K2" },
      api_keys = { "k1" }, account = "work", cooldown_ms = 0, models_ttl_s = 60 } }]])
    assert.is_nil(text)
    assert.equal("sweet", cfg.providers.p.flavour)
    cfg, text = check([[{ p = { kind = "schemed", flavour = "salty", retries = 5, api = "chat" } }]])
    assert.is_nil(cfg)
    assert.matches('config providers.p.flavour: "salty" is not one of sour, sweet', text, 1, true)
    assert.matches("config providers.p.retries: must be at most 2, got 5", text, 1, true) -- the kind's spec wins
    assert.matches("config providers.p.scoops: required", text, 1, true)
    assert.matches('config providers.p.api: unknown key (kind "schemed" does not take it)', text, 1, true)
  end)

  it("give a kind without a schema the base fields only", function()
    local cfg, text = check([[{ b = { kind = "boom", timeout_ms = 5, api_keys = { "k1" }, headers = { x = "y" } } }]])
    assert.is_nil(text)
    assert.equal(5, cfg.providers.b.timeout_ms)
    cfg, text = check([[{ b = { kind = "boom", completions = true, chunk_delay_ms = 1 } }]])
    assert.is_nil(cfg)
    assert.matches('config providers.b.chunk_delay_ms: unknown key (kind "boom" does not take it)', text, 1, true)
    assert.matches('config providers.b.completions: unknown key (kind "boom" does not take it)', text, 1, true)
  end)

  it("name the kind that does not take a key", function()
    local _, text = check([[{ c = { kind = "anthropic", api = "responses" } }]])
    assert.matches('config providers.c.api: unknown key (kind "anthropic" does not take it)', text, 1, true)
  end)

  it("check the pool fields' types", function()
    local _, text = check([[{ p = { kind = "boom", accounts = "work", api_keys = { 1 }, cooldown_ms = -1,
      models_ttl_s = 0, account = true, api_key_envs = { "A", false } } }]])
    assert.matches("config providers.p.accounts: expected a list, got string", text, 1, true)
    assert.matches("config providers.p.api_keys[1]: expected a string, got integer", text, 1, true)
    assert.matches("config providers.p.cooldown_ms: must be at least 0, got -1", text, 1, true)
    assert.matches("config providers.p.models_ttl_s: must be at least 1, got 0", text, 1, true)
    assert.matches("config providers.p.account: expected a string, got boolean", text, 1, true)
    assert.matches("config providers.p.api_key_envs[2]: expected a string, got boolean", text, 1, true)
  end)

  it("report an unknown kind with the built-in ones, and a module that fails to load", function()
    local cfg, text = check([[{ u = { kind = "nonesuch", colour = "red" }, x = { kind = "brokenload" } }]])
    assert.is_nil(cfg)
    assert.matches('config providers.u.kind: unknown kind "nonesuch" (built in: echo, openai, anthropic, ws, '
      .. "copilot, chatgpt, qwen, prompt, vllm, llamacpp, ollama; or a module moongate.providers.nonesuch on lua_path)", text, 1, true)
    assert.matches('config providers.x.kind: the module of kind "brokenload" failed to load: '
      .. ".*brokenload.lua:%d+: brokenload: this module fails on purpose", text)
    -- the kind is what is wrong: no noise about the keys it might take
    assert.not_matches("colour", text, 1, true)
    -- the same error again, not Lua's "loop or previous error"
    local _, again = check([[{ x = { kind = "brokenload" } }]])
    assert.matches("brokenload: this module fails on purpose", again, 1, true)
    -- a kind that is not a string, or none
    local _, t2 = check([[{ n = { base_url = "x" }, m = { kind = 5 } }]])
    assert.matches("config providers.n.kind: required", t2, 1, true)
    assert.matches("config providers.m.kind: expected a string, got integer", t2, 1, true)
    local _, t3 = check([[{ q = "openai" }]])
    assert.matches("config providers.q: expected a table, got string", t3, 1, true)
  end)

  it("take a route's strip prefix as a string", function()
    local cfg, text = check([[{ b = { kind = "boom" } }]], [[{ { match = "work/*", provider = "b", strip = "work/" } }]])
    assert.is_nil(text)
    assert.equal("work/", cfg.routes[1].strip)
    local _, t2 = check([[{ b = { kind = "boom" } }]], [[{ { match = "work/*", provider = "b", strip = 1 } }]])
    assert.matches("config routes[1].strip: expected a string, got integer", t2, 1, true)
  end)
end)

describe("stored accounts without a config file", function()
  local router = require "moongate.router"
  local accounts = { { name = "work", kind = "openai" }, { name = "home", kind = "anthropic" } }

  it("are served as providers with NAME/* routes that take the name off", function()
    local cfg = assert(config.resolve({}, env {}, 1, accounts))
    assert.same({ kind = "openai", account = "work" }, cfg.providers.work)
    assert.same({ kind = "anthropic", account = "home" }, cfg.providers.home)
    assert.same({ "home", "work" }, cfg.account_providers)
    assert.same({ match = "home/*", provider = "home", strip = "home/" }, cfg.routes[1])
    assert.same({ match = "work/*", provider = "work", strip = "work/" }, cfg.routes[2])
    assert.same({}, cfg.warnings)
    local r = router.new(cfg, { work = {}, home = {}, echo = {} })
    local route = r:resolve("work/gpt-4.1")
    assert.equal("work", route.chain[1].name)
    assert.equal("gpt-4.1", route.model)
    assert.equal("work/gpt-4.1", route.requested)
    assert.equal("claude-sonnet-4", r:resolve("home/claude-sonnet-4").model)
  end)

  it("are not served when there is a config file", function()
    local path = helpers.tmpfile([[return { providers = { up = { kind = "openai" } } }]])
    local cfg = assert(config.resolve({ config = path }, env {}, 1, accounts))
    assert.is_nil(cfg.providers.work)
    assert.same({}, cfg.account_providers)
    assert.same({}, cfg.routes)
  end)

  it("give way to a provider of the same name from the environment, with a warning", function()
    local cfg = assert(config.resolve({}, env { OPENAI_API_KEY = "sk-x", OPENROUTER_API_KEY = "or-x" }, 1, {
      { name = "openai", kind = "chatgpt" }, { name = "work", kind = "openai" },
      { name = "echo", kind = "openai" }, { name = "a*b", kind = "openai" }, { name = "odd", kind = "nonesuch" },
    }))
    assert.same({ kind = "openai", api_key_env = "OPENAI_API_KEY", base_url = "https://api.openai.com/v1" },
      cfg.providers.openai)
    assert.same({ "work" }, cfg.account_providers)
    local text = table.concat(cfg.warnings, "\n")
    assert.matches('stored account "openai" is not served: a provider of that name already exists (from OPENAI_API_KEY)',
      text, 1, true)
    assert.matches('stored account "echo" is not served', text, 1, true)
    assert.matches('stored account "a*b" is not served', text, 1, true)
    assert.matches('stored account "odd" is not served: this build has no provider kind "nonesuch"', text, 1, true)
    assert.equal(4, #cfg.warnings)
    assert.is_nil(cfg.providers.odd)
    -- NAME/model goes to the account, not to OpenRouter's catch-all */*
    local r = router.new(cfg, { work = {}, openai = {}, openrouter = {}, echo = {} })
    assert.equal("work", r:resolve("work/gpt-4.1").chain[1].name)
    assert.equal("openrouter", r:resolve("meta/llama-3").chain[1].name)
    assert.equal("openai", r:resolve("gpt-4.1").chain[1].name)
  end)
end)

describe("HTTP upstream providers", function()
  it("ask for compressed answers from https:// upstreams unless told otherwise", function()
    local kind = require "moongate.providers.openai"
    assert.is_true(kind.new("a", { base_url = "https://api.example.com/v1" }).compressed)
    assert.is_false(kind.new("b", { base_url = "http://127.0.0.1:8000/v1" }).compressed)
    assert.is_false(kind.new("c", { base_url = "https://api.example.com/v1", accept_compressed = false }).compressed)
    assert.is_true(kind.new("d", { base_url = "http://10.0.0.2/v1", accept_compressed = true }).compressed)
  end)

  it("takes only account names a login could have stored", function()
    local ok, errs = config.validate({ providers = {
      gh = { kind = "copilot", account = "../../etc/passwd" },
      cg = { kind = "chatgpt", accounts = { "cg1", "b d" } } } })
    assert.is_nil(ok)
    assert.same({ [[providers.cg.accounts[2]: "b d" is not an account name (letters, digits, '.', '_', '-')]],
      [[providers.gh.account: "../../etc/passwd" is not an account name (letters, digits, '.', '_', '-')]] }, errs)
    assert.is_true(config.validate({ providers = { gh = { kind = "copilot", account = "work.home_1-2" } } }))
  end)
end)
