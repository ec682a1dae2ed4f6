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
