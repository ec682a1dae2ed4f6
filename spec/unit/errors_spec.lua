local errors = require "moongate.errors"

describe("errors.upstream_message", function()
  it("finds the message in each format's error body", function()
    assert.equal("bad", errors.upstream_message('{"error":{"message":"bad","type":"x"}}'))
    assert.equal("over", errors.upstream_message('{"type":"error","error":{"type":"overloaded_error","message":"over"}}'))
    assert.equal("no model", errors.upstream_message('{"error":"no model"}'))
    assert.equal("plain", errors.upstream_message('{"message":"plain"}'))
    assert.equal("<html>down</html>", errors.upstream_message("<html>down</html>"))
    assert.is_nil(errors.upstream_message(""))
  end)

  it("says a message that is an object or a list as its JSON text, never a Lua address", function()
    local m = errors.upstream_message('{"error":{"message":{"detail":"quota","code":7}}}')
    assert.is_nil(m:find("table: ", 1, true))
    assert.matches('"detail":"quota"', m, 1, true)
    m = errors.upstream_message('{"message":["a","b"]}')
    assert.equal('["a","b"]', m)
    assert.equal("42", errors.upstream_message('{"error":{"message":42}}'))
    -- null: no words; the body itself is said
    assert.equal('{"error":{"message":null}}', errors.upstream_message('{"error":{"message":null}}'))
  end)
end)
