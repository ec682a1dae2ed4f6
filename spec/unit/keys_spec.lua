-- lua/moongate/keys.lua: inbound keys, read, checked, limited to models.
local keys = require "moongate.keys"

describe("keys", function()
  local function env(t) return function(name) return t[name] end end

  it("reads keys from the config, key_env and MOONGATE_API_KEYS; none set: nil", function()
    assert.is_nil(keys.load({}, env {}))
    assert.is_nil(keys.load({ keys = { { key_env = "UNSET" } } }, env {}))
    local list = keys.load({ keys = { { key = "k-one-12345", name = "one" }, { key_env = "K2", models = { "gpt-*" } } } },
      env { K2 = "k-two-12345", MOONGATE_API_KEYS = "a-key-12345, ,b-key-12345" })
    local names = {}
    for i, e in ipairs(list) do names[i] = e.name end
    assert.same({ "one", "key-2", "env-1", "env-2" }, names)
    assert.equal("a-key-12345", list[3].key)
  end)

  it("finds the key a request carries, by any of its three headers, and no other", function()
    local list = keys.load({ keys = { { key = "k-one-12345", name = "one" } } }, env {})
    assert.equal("one", keys.check(list, { authorization = "Bearer k-one-12345" }).name)
    assert.equal("one", keys.check(list, { authorization = "bearer k-one-12345 " }).name)
    assert.equal("one", keys.check(list, { ["x-api-key"] = "k-one-12345" }).name)
    assert.equal("one", keys.check(list, { ["x-goog-api-key"] = "k-one-12345" }).name)
    assert.is_nil(keys.check(list, { authorization = "Basic k-one-12345" }))
    assert.is_nil(keys.check(list, { authorization = "Bearer k-one-12346" }))
    assert.is_nil(keys.check(list, { authorization = "Bearer k-one-1234" }))
    assert.is_nil(keys.check(list, {}))
  end)

  it("compares every byte whatever differs first (constant time for a length)", function()
    assert.is_true(keys.same("abcdef", "abcdef"))
    assert.is_false(keys.same("xbcdef", "abcdef"))
    assert.is_false(keys.same("abcdex", "abcdef"))
    assert.is_false(keys.same("abcde", "abcdef"))
    assert.is_false(keys.same(nil, "abcdef"))
  end)

  it("limits a key to its models' globs", function()
    local list = keys.load({ keys = { { key = "k-one-12345", models = { "gpt-*", "echo" } } } }, env {})
    assert.is_true(keys.allows(list[1], "gpt-4o"))
    assert.is_true(keys.allows(list[1], "echo"))
    assert.is_false(keys.allows(list[1], "claude-x"))
    assert.is_false(keys.allows(list[1], "echo-2"))
    assert.is_true(keys.allows({ name = "any" }, "claude-x"))
  end)
end)
