-- The fast path's decisions (lua/moongate/fast.lua), without the daemon:
-- what C is told to check, and which routes it may serve.
local fast = require "moongate.fast"
local door = require "moongate.frontdoor.openai_chat"
local providers = require "moongate.providers"
local router = require "moongate.router"
local secrets = require "moongate.secrets"

local function rule(rules, name)
  for _, r in ipairs(rules) do if r[1] == name then return r end end
end

describe("fast path decisions", function()
  it("gives C the chat door's checks as data, and the fields decode reads beyond them as Lua's", function()
    local rules = assert(fast.rules(door))
    assert.same({ "temperature", "n", 0, 2 }, rule(rules, "temperature"))
    assert.same({ "top_p", "n", 0, 1 }, rule(rules, "top_p"))
    assert.equal("i", rule(rules, "max_tokens")[2])
    assert.equal(1, rule(rules, "max_tokens")[3])
    assert.same({ "top_logprobs", "i", 0, 20 }, rule(rules, "top_logprobs"))
    assert.same({ "seed", "i" }, rule(rules, "seed"))
    assert.same({ "tools", "a" }, rule(rules, "tools"))
    assert.same({ "metadata", "o" }, rule(rules, "metadata"))
    assert.same({ "logprobs", "b" }, rule(rules, "logprobs"))
    for _, name in ipairs { "stop", "reasoning_effort", "stream_options", "response_format", "functions",
      "function_call", "tool_choice", "modalities" } do
      assert.same({ name, "x" }, rule(rules, name), name)
    end
    assert.is_nil(rule(rules, "stream")) -- C judges stream itself: false or absent only
    -- every check the door makes is either a rule or Lua's
    for name in pairs(door.fast_checks) do
      assert.truthy(name == "stream" or rule(rules, name), name)
    end
    -- a check C cannot repeat keeps the door off the fast path
    assert.is_nil(fast.rules({ fast_slow = {}, fast_checks = { x = { "odd", function() return true end } } }))
  end)

  it("is off with a gate, with fast_path = false, or when every body is logged", function()
    local app = { cfg = {} }
    assert.truthy(fast.config(app, door))
    assert.is_nil(fast.config({ cfg = {}, gate = {} }, door))
    assert.is_nil(fast.config({ cfg = { fast_path = false } }, door))
    assert.is_nil(fast.config(app, door, "debug"))
  end)

  it("tells C the Hosts and keys the general path lets in, and which keys need Lua", function()
    local c = fast.config({ cfg = {}, host_names = { ["gw.example"] = true },
      keys = { { key = "k1", name = "a" }, { key = "k2", name = "b", limits = { rpm = 1 } },
        { key = "k3", name = "c", models = { "^x$" } } } }, door)
    table.sort(c.hosts)
    assert.same({ "127.0.0.1", "::1", "gw.example", "localhost" }, c.hosts)
    assert.same({ { key = "k1", name = "a", slow = false }, { key = "k2", name = "b", slow = true },
      { key = "k3", name = "c", slow = true } }, c.keys)
    assert.is_nil(fast.config({ cfg = {} }, door).hosts) -- not on loopback: any Host, as Lua's path
  end)

  describe("routes", function()
    local reg = providers.build({ providers = {
      up = { kind = "openai", base_url = "http://127.0.0.1:9/v1", api_key = "sk-unit-fast", timeout_ms = 5000,
        headers = { ["x-team"] = "t1" } },
      pool = { kind = "openai", base_url = "http://127.0.0.1:9/v1", api_keys = { "sk-a", "sk-b" } },
      byok = { kind = "openai", base_url = "http://127.0.0.1:9/v1", forward_client_key = true },
      claude = { kind = "anthropic", base_url = "http://127.0.0.1:9", api_key = "sk-ant" },
    } })
    local r = router.new({ routes = {
      { match = "renamed", provider = "up", model = "real-name" },
      { match = "pooled", provider = "pool" },
      { match = "mine", provider = "byok" },
      { match = "claude-*", provider = "claude" },
      { match = "*", provider = "up" },
    } }, reg)
    local function creq(model, extra)
      local c = { client = "openai", model = model }
      for k, v in pairs(extra or {}) do c[k] = v end
      return c
    end

    it("publishes a config route to a provider with a fixed key: its url, headers and timeouts", function()
      local f = assert(fast.route(door, creq("renamed"), r:resolve("renamed")))
      assert.equal("http://127.0.0.1:9/v1/chat/completions", f.url)
      assert.equal("Bearer sk-unit-fast", f.headers.authorization)
      assert.equal("t1", f.headers["x-team"])
      assert.equal('"real-name"', f.upstream_model)
      assert.equal("up", f.provider)
      assert.equal(5000, f.total_ms)
      assert.equal(10000, f.connect_ms)
      assert.is_nil(fast.route(door, creq("other"), r:resolve("other")).upstream_model)
    end)

    it("keeps on Lua's path what needs a script or a choice per request", function()
      assert.is_nil(fast.route(door, creq("x", { stream = true }), r:resolve("x")))
      assert.is_nil(fast.route(door, creq("pooled"), r:resolve("pooled"))) -- keys rotate
      assert.is_nil(fast.route(door, creq("mine"), r:resolve("mine")))     -- the client's own key
      assert.is_nil(fast.route(door, creq("claude-x"), r:resolve("claude-x"))) -- another format
      assert.is_nil(fast.route(door, creq("x", { packed = true }), r:resolve("x")))
      assert.is_nil(fast.route(door, creq("x", { need_usage = true }), r:resolve("x")))
      assert.is_nil(fast.route(door, creq("x-high"), r:resolve("x-high"))) -- an effort suffix
      local unfixed = r:resolve("x")
      assert.is_nil(fast.route(door, creq("x"), { model = "x", chain = unfixed.chain })) -- not the config's
      assert.is_nil(fast.route({}, creq("x"), r:resolve("x"))) -- a door without rules
    end)

    it("names the model on the access line without a secret", function()
      secrets.add("sk-pasted-as-model-1234")
      local f = assert(fast.route(door, creq("sk-pasted-as-model-1234"), r:resolve("sk-pasted-as-model-1234")))
      assert.is_nil(f.note_model:find("sk-pasted", 1, true))
      assert.is_nil(f.upstream_model) -- (the model itself goes upstream as the client wrote it)
    end)
  end)
end)
