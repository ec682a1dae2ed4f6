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

describe("HTTP upstream providers", function()
  it("ask for compressed answers from https:// upstreams unless told otherwise", function()
    local upstream = require "moongate.providers.upstream"
    local adapter = require "moongate.adapters.openai"
    local kind = upstream.kind(adapter)
    assert.is_true(kind.new("a", { base_url = "https://api.example.com/v1" }).compressed)
    assert.is_false(kind.new("b", { base_url = "http://127.0.0.1:8000/v1" }).compressed)
    assert.is_false(kind.new("c", { base_url = "https://api.example.com/v1", accept_compressed = false }).compressed)
    assert.is_true(kind.new("d", { base_url = "http://10.0.0.2/v1", accept_compressed = true }).compressed)
  end)
end)
