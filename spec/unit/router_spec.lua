local router = require "moongate.router"

describe("router", function()
  local providers = { echo = { models = {} }, up = { models = { "gpt-4o", "o3" } }, claude = { models = {} } }
  local r = router.new({
    routes = {
      { match = "claude-*", provider = "claude" },
      { match = "fast", provider = "up", model = "gpt-4o-mini" },
      { match = "*", provider = { "up", "echo" } },
    },
    aliases = { sonnet = "claude-sonnet-4" },
  }, providers)

  it("always serves the built-in echo model", function()
    assert.equal("echo", r:resolve("echo").chain[1].name)
  end)

  it("matches globs in order, rewrites, and keeps fallback chains", function()
    assert.equal("claude", r:resolve("claude-3-haiku").chain[1].name)
    local route = r:resolve("fast")
    assert.equal("gpt-4o-mini", route.model)
    assert.equal("fast", route.requested)
    local chain = r:resolve("anything").chain
    assert.same({ "up", "echo" }, { chain[1].name, chain[2].name })
    assert.equal("claude", r:resolve("sonnet").chain[1].name)
  end)

  it("answers model_not_found when nothing matches", function()
    local r2 = router.new({ routes = {} }, providers)
    local route, err = r2:resolve("gpt-9")
    assert.is_nil(route)
    assert.equal(404, err.status)
    assert.equal("model_not_found", err.code)
  end)

  it("asks the WS workers' models each time, only for names no route matches", function()
    local serving = {}
    local r3 = router.new({ routes = { { match = "exact", provider = "up" }, { match = "gpt-*", provider = "up" } } },
      { up = { models = {} }, workers = { models = {}, kind = "ws" }, echo = { models = {} } },
      { dynamic = function(m) if serving[m] then return "workers" end end,
        dynamic_models = function() return { "llama", "gpt-4o", "exact" } end })
    assert.is_nil(r3:resolve("llama"))
    assert.equal("up", r3:resolve("gpt-4o").chain[1].name)
    assert.equal(r3:resolve("gpt-4o"), r3:resolve("gpt-4o")) -- one answer, kept
    serving.llama, serving.exact, serving["gpt-4o"] = true, true, true
    assert.equal("workers", r3:resolve("llama").chain[1].name) -- no route: the workers'
    assert.equal("up", r3:resolve("gpt-4o").chain[1].name)     -- never before a glob route
    assert.equal("up", r3:resolve("exact").chain[1].name)      -- nor an exact one
    serving.llama = nil
    local route, err = r3:resolve("llama")
    assert.is_nil(route)
    assert.equal(404, err.status)
    -- many names: answers stay right after the memory is emptied
    for i = 1, 3000 do assert.equal("gpt-" .. i, r3:resolve("gpt-" .. i).model) end
    assert.equal("up", r3:resolve("gpt-4o").chain[1].name)
    -- only the announced names no route takes are listed
    assert.same({ "echo", "exact", "llama" }, r3:models())
  end)

  it("serves announced models behind a catch-all only through a route naming the pool", function()
    local serving = { llama = true }
    local r4 = router.new({ routes = { { match = "llama", provider = "workers" }, { match = "*", provider = "up" } } },
      { up = { models = {} }, workers = { models = {}, kind = "ws" }, echo = { models = {} } },
      { dynamic = function(m) if serving[m] then return "workers" end end })
    assert.equal("workers", r4:resolve("llama").chain[1].name)
    serving["gpt-4o"] = true
    assert.equal("up", r4:resolve("gpt-4o").chain[1].name)
  end)

  it("ends a fallback chain at the WS pool: its requests never go elsewhere", function()
    local r5 = router.new({ routes = {
      { match = "tab-*", provider = { "pool", "up" } },
      { match = "x", provider = { "up", "pool", "echo" } },
    } }, { up = { models = {} }, pool = { models = {}, kind = "ws" }, echo = { models = {} } })
    local chain = r5:resolve("tab-1").chain
    assert.equal(1, #chain)
    assert.equal("pool", chain[1].name)
    chain = r5:resolve("x").chain
    assert.same({ "up", "pool" }, { chain[1].name, chain[2].name })
    assert.equal(2, #chain)
  end)

  it("lists exact routes, provider models that match, and aliases", function()
    assert.same({ "echo", "fast", "gpt-4o", "o3", "sonnet" }, r:models())
  end)
end)

describe("router with strip and stored accounts", function()
  local log = require "moongate.log"

  -- an account's provider: has_model answers from its current list, as the
  -- copilot and chatgpt providers do once they have fetched their models
  local function account(list)
    local p = { models = list, asked = 0 }
    function p:has_model(name)
      self.asked = self.asked + 1
      for _, m in ipairs(self.models) do if m == name then return true end end
      return false
    end
    return p
  end

  local lines, saved
  before_each(function()
    lines, saved = {}, log.info
    log.info = function(fmt, ...) lines[#lines + 1] = string.format(fmt, ...) end
  end)
  after_each(function() log.info = saved end)

  it("takes a route's strip prefix off the model sent upstream", function()
    local r = router.new({ routes = {
      { match = "work/*", provider = "up", strip = "work/" },
      { match = "fixed/*", provider = "up", strip = "fixed/", model = "gpt-4o" },
      { match = "keep/*", provider = "up" },
    } }, { up = { models = { "gpt-4o", "o3" } }, echo = { models = {} } })
    local route = r:resolve("work/gpt-4.1")
    assert.equal("gpt-4.1", route.model)
    assert.equal("work/gpt-4.1", route.requested)
    assert.equal("up", route.chain[1].name)
    route = r:resolve("work/gpt-5-high") -- the effort comes off first
    assert.equal("gpt-5", route.model)
    assert.equal("high", route.effort)
    assert.equal("gpt-4o", r:resolve("fixed/anything").model) -- model wins over strip
    assert.equal("keep/x", r:resolve("keep/x").model)
    assert.equal("work/", r:resolve("work/").model) -- nothing after the prefix: nothing to send but the name
    -- a stripping route lists its provider's models under the prefix
    assert.same({ "echo", "work/gpt-4o", "work/o3" }, r:models())
  end)

  it("serves a provider's listed NAME:latest by its bare name, as Ollama's users type it", function()
    local ol = account({ "llama3.2:latest", "qwen3:8b" })
    local r = router.new({ routes = {}, account_providers = { "ol" } }, { ol = ol, echo = { models = {} } })
    local route = assert(r:resolve("llama3.2"))
    assert.equal("llama3.2:latest", route.model)
    assert.equal("ol", route.chain[1].name)
    assert.equal("qwen3:8b", r:resolve("qwen3:8b").model)
    assert.is_nil(r:resolve("qwen3")) -- only :latest stands for a bare name
  end)

  it("serves a name no route takes from the first account that has it, and says so once", function()
    local a, b, plain = account({ "gpt-4.1", "shared" }), account({ "claude-sonnet-4", "shared" }), { models = { "x" } }
    local serving = {}
    local r = router.new({
      routes = {
        { match = "a/*", provider = "a", strip = "a/" },
        { match = "b/*", provider = "b", strip = "b/" },
        { match = "gpt-4o", provider = "up" },
      },
      account_providers = { "plain", "a", "b", "gone" }, -- plain has no has_model; gone is not built
    }, { a = a, b = b, plain = plain, up = { models = {} }, echo = { models = {} }, workers = { kind = "ws", models = {} } },
      { dynamic = function(m) if serving[m] then return "workers" end end,
        dynamic_models = function() return { "llama" } end })
    assert.equal("a", r:resolve("gpt-4.1").chain[1].name)
    assert.equal("gpt-4.1", r:resolve("gpt-4.1").model)
    assert.equal("b", r:resolve("claude-sonnet-4").chain[1].name)
    assert.same({}, lines)
    -- first come first served, logged once per model
    local route = r:resolve("shared")
    assert.equal(1, #route.chain)
    assert.equal("a", route.chain[1].name)
    assert.same({ "model shared: served by provider a (also offered by b)" }, lines)
    for _ = 1, 5 do r:resolve("shared") end
    assert.equal(1, #lines)
    -- the effort suffix comes off before the accounts are asked
    route = r:resolve("gpt-4.1-high")
    assert.equal("a", route.chain[1].name)
    assert.equal("gpt-4.1", route.model)
    assert.equal("high", route.effort)
    -- a config route wins over an account that has the name too
    table.insert(a.models, "gpt-4o")
    assert.equal("up", r:resolve("gpt-4o").chain[1].name)
    -- the lists change: answers follow them, nothing is kept
    assert.is_nil(r:resolve("gpt-5"))
    table.insert(b.models, "gpt-5")
    assert.equal("b", r:resolve("gpt-5").chain[1].name)
    table.insert(a.models, "gpt-5")
    assert.equal("a", r:resolve("gpt-5").chain[1].name)
    b.models = { "claude-sonnet-4" }
    a.models = { "gpt-4.1" }
    assert.is_nil(r:resolve("shared"))
    -- the WS workers come after the accounts
    serving.llama, serving["gpt-4.1"] = true, true
    assert.equal("workers", r:resolve("llama").chain[1].name)
    assert.equal("a", r:resolve("gpt-4.1").chain[1].name)
    -- NAME/model through the account's own route
    assert.equal("claude-sonnet-4", r:resolve("b/claude-sonnet-4").model)
    assert.equal("b", r:resolve("b/claude-sonnet-4").chain[1].name)
    -- models(): the accounts' own names, their NAME/model forms, the workers'
    a.models = { "gpt-4.1", "both" }
    b.models = { "both", "claude-sonnet-4" }
    assert.same({ "a/both", "a/gpt-4.1", "b/both", "b/claude-sonnet-4", "both", "claude-sonnet-4", "echo",
      "gpt-4.1", "gpt-4o", "llama" }, r:models())
  end)

  it("keeps config routes' answers as before when there are accounts", function()
    local a = account({ "m" })
    local r = router.new({ routes = { { match = "gpt-*", provider = "up" } }, account_providers = { "a" } },
      { a = a, up = { models = {} }, echo = { models = {} } })
    assert.equal(r:resolve("gpt-4o"), r:resolve("gpt-4o")) -- one answer, kept
    assert.equal(0, a.asked)                                -- the accounts not asked
    assert.equal("a", r:resolve("m").chain[1].name)
    assert.equal(1, a.asked)
    -- an account's own name that looks like NAME-effort is served as it is
    a.models = { "m", "o3-high" }
    local route = r:resolve("o3-high")
    assert.equal("a", route.chain[1].name)
    assert.equal("o3-high", route.model)
    assert.is_nil(route.effort)
    a.models = { "o3" }
    route = r:resolve("o3-high")
    assert.equal("o3", route.model)
    assert.equal("high", route.effort)
  end)
end)

describe("models.normalize", function()
  local models = require "moongate.models"
  it("applies aliases, keeps exact names, and takes effort suffixes off", function()
    local exact = function(n) return n == "o3-high" end
    assert.same({ "claude-sonnet-4" }, { models.normalize("sonnet", { sonnet = "claude-sonnet-4" }, exact) })
    assert.same({ "o3-high" }, { models.normalize("o3-high", {}, exact) })
    assert.same({ "gpt-5", "low" }, { models.normalize("gpt-5_low", {}, exact) })
    assert.same({ "claude-sonnet-4", "high" }, { models.normalize("sonnet-high", { sonnet = "claude-sonnet-4" }, exact) })
    assert.same({ "gpt-5" }, { models.normalize("gpt-5", {}, exact) })
  end)

  it("routes a suffixed name as its base with the effort", function()
    local router = require "moongate.router"
    local r = router.new({ routes = { { match = "gpt-*", provider = "up" } } }, { up = { models = {} }, echo = { models = {} } })
    local route = r:resolve("gpt-5-high")
    assert.equal("gpt-5", route.model)
    assert.equal("high", route.effort)
    assert.equal("gpt-5-high", route.requested)
  end)
end)
