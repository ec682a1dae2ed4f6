local log = require "moongate.log"

describe("log.redact", function()
  it("hides keys, bearer tokens and cookies", function()
    local s = log.redact('Authorization: Bearer abc.def-123 and sk-proj-ABCdef123 and sk-ant-api03-xyz "x-api-key": "k123" Cookie: a=b; c=d')
    assert.not_matches("abc%.def%-123", s)
    assert.not_matches("ABCdef123", s)
    assert.not_matches("api03%-xyz", s)
    assert.not_matches("k123", s)
    assert.not_matches("a=b", s)
    assert.matches("%[REDACTED%]", s)
  end)

  it("hides configured secrets verbatim", function()
    log.add_secret("plain-secret-value")
    assert.equal("key=[REDACTED]!", log.redact("key=plain-secret-value!"))
  end)
end)
