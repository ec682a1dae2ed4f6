-- moongate.secrets: known values cut out by plain search. The module keeps
-- its state per Lua state, so each test loads a fresh copy.
local function fresh()
  package.loaded["moongate.secrets"] = nil
  local s = require "moongate.secrets"
  package.loaded["moongate.secrets"] = nil
  return s
end

describe("secrets", function()
  it("returns the text as it is while it knows none", function()
    local s = fresh()
    assert.equal(0, s.count())
    local text = "Incorrect API key provided: sk-operator-secret-123"
    assert.equal(text, s.redact(text))
  end)

  it("replaces every occurrence of each secret, as plain text", function()
    local s = fresh()
    s.add("sk-operator-secret-123")
    s.add("100%.key(+)")
    assert.equal("Incorrect API key provided: [redacted]; again [redacted]!",
      s.redact("Incorrect API key provided: sk-operator-secret-123; again sk-operator-secret-123!"))
    assert.equal("[redacted][redacted] and 100%xkey(+)", s.redact("100%.key(+)100%.key(+) and 100%xkey(+)"))
  end)

  it("ignores nil, non-strings and values under 8 bytes, and counts a value once", function()
    local s = fresh()
    s.add(nil); s.add(12345678); s.add("short"); s.add("1234567")
    assert.equal(0, s.count())
    s.add("12345678"); s.add("12345678")
    assert.equal(1, s.count())
    assert.equal("x[redacted]y 1234567", s.redact("x12345678y 1234567"))
  end)

  it("cuts a longer secret whole when it holds a shorter one", function()
    local s = fresh()
    s.add("token-abc")
    s.add("token-abc-and-more")
    assert.equal("[[redacted]] [redacted]", s.redact("[token-abc-and-more] token-abc"))
  end)

  it("passes what is not a string through", function()
    local s = fresh()
    s.add("sk-operator-secret-123")
    assert.is_nil(s.redact(nil))
    assert.equal(401, s.redact(401))
  end)

  it("redacts one extra value for a single call", function()
    local s = fresh()
    assert.equal("key [redacted]", s.redact("key client-key-0001", "client-key-0001"))
    assert.equal("key short", s.redact("key short", "short")) -- under 8 bytes: left alone
    assert.equal("key client-key-0001", s.redact("key client-key-0001")) -- not kept
  end)

  it("keeps the last CLIENTS forwarded client keys only", function()
    local s = fresh()
    s.add("operator-key-0000")
    for i = 1, s.CLIENTS + 1 do s.add_client(string.format("client-key-%04d", i)) end
    s.add_client("client-key-0064") -- again: no new slot
    assert.equal(1 + s.CLIENTS, s.count())
    assert.equal("client-key-0001", s.redact("client-key-0001")) -- the oldest is gone
    assert.equal("[redacted] [redacted] [redacted]",
      s.redact("client-key-0002 client-key-0065 operator-key-0000"))
  end)

  it("never lets a client key's eviction drop a configured secret", function()
    local s = fresh()
    s.add_client("shared-key-123")
    s.add("shared-key-123")
    for i = 1, s.CLIENTS do s.add_client(string.format("client-key-%04d", i)) end
    assert.equal("[redacted]", s.redact("shared-key-123"))
  end)

  it("keeps the last KEEP values of a rotating token's slot, so refreshes do not grow the list", function()
    local s = fresh()
    for i = 1, 10 do s.add_rotating("copilot:work", string.format("copilot-token-%04d", i)) end
    s.add_rotating("chatgpt:home", "chatgpt-access-0001")
    assert.equal(s.KEEP + 1, s.count())
    assert.equal("copilot-token-0008", s.redact("copilot-token-0008")) -- long replaced
    assert.equal("[redacted] [redacted] [redacted]",
      s.redact("copilot-token-0009 copilot-token-0010 chatgpt-access-0001"))
  end)
end)
