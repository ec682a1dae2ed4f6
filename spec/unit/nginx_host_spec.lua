-- The nginx shim's config check (moongate.host.nginx's init), without
-- nginx: what it takes, and what it refuses by name. Also run with no
-- daemon host at all (spec/unit/pure_layer_spec.lua).
local shim = require "moongate.host.nginx"

local function refusal(cfg)
  local ok, err = pcall(shim.init, cfg)
  assert.is_false(ok, "expected a refusal")
  return err
end

describe("the nginx host's init", function()
  it("takes openai and anthropic providers, routes and aliases", function()
    shim.init {
      providers = { a = { kind = "openai", base_url = "http://127.0.0.1:1/v1", api_key = "sk-a" },
        b = { kind = "anthropic", base_url = "http://127.0.0.1:1", api_key_env = "NO_SUCH_VAR_FOR_SPEC" },
        r = { kind = "openai", api = "responses", base_url = "http://127.0.0.1:1/v1" } },
      routes = { { match = "claude-*", provider = "b" }, { match = "gpt-resp", provider = { "r" } }, { match = "*", provider = "a" } },
      aliases = { fast = "claude-x" },
    }
  end)

  it("refuses by name what it does not serve: other kinds, provider fields, top-level keys", function()
    local err = refusal {
      providers = { c = { kind = "copilot" }, a = { kind = "openai", api_key = "k", retries = 3, accounts = { "x" } } },
      routes = { { match = "x", provider = { "a", "c" } }, { match = "*", provider = "a" } },
      gate = { concurrency = 4 }, keys = { { name = "k", key = "sk-inbound-key-123" } },
    }
    assert.matches('providers.c.kind: "copilot" is not served by the nginx host', err, 1, true)
    assert.matches("providers.a.retries: not served by the nginx host", err, 1, true)
    assert.matches("providers.a.accounts: not served by the nginx host", err, 1, true)
    assert.matches("gate: not served by the nginx host", err, 1, true)
    assert.matches("routes[1].provider: a fallback list is not served by the nginx host", err, 1, true)
    assert.matches("keys: not served by the nginx host", err, 1, true)
    assert.is_nil(err:find("sk-inbound-key-123", 1, true))
  end)

  it("reports the daemon's own config errors too", function()
    local err = refusal { providers = { a = { kind = "openai", base_url = 5 } }, routes = { { match = "*", provider = "nope" } } }
    assert.matches("providers.a.base_url", err, 1, true)
    assert.matches('no provider named "nope"', err, 1, true)
  end)
end)
