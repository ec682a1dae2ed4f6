local log = require "moongate.log"

-- a fresh moongate.log whose sink records its lines instead of writing them
-- (core._log stubbed while it loads); the real one is put back afterwards
-- a log module of its own, whose lines the host interface hands here (until
-- the test ends)
local function recording_log()
  local host = require "moongate.host"
  local lines = {}
  local saved_log, saved_write = package.loaded["moongate.log"], host.write
  package.loaded["moongate.log"] = nil
  local fresh = require "moongate.log"
  package.loaded["moongate.log"] = saved_log
  host.use { write = function(level, msg) lines[#lines + 1] = { level, msg } end }
  finally(function() host.use { write = saved_write } end)
  return fresh, lines
end

describe("log.redact", function()
  it("hides keys, bearer tokens and cookies", function()
    local s = log.redact('Authorization: Bearer abc.def-123 and sk-proj-ABCdef123 and sk-ant-api03-xyz "x-api-key": "k123" Cookie: a=b; c=d')
    assert.not_matches("abc%.def%-123", s)
    assert.not_matches("ABCdef123", s)
    assert.not_matches("api03%-xyz", s)
    assert.not_matches("k123", s)
    assert.not_matches("a=b", s)
    assert.matches("%[redacted%]", s)
  end)

  it("hides header values whatever the name's case, and a credential field with an escaped quote in it", function()
    for _, line in ipairs { "AUTHORIZATION: Basic dXNlcjpwYXNzd29yZA==", "X-API-KEY: leakleak-0001",
      "x-goog-api-key: leakgoog-0002", "COOKIE: session=leakcookie-0003", "Bearer\tleaktab-0004" } do
      local out = log.redact(line)
      assert.is_nil(out:find("leak", 1, true), out)
      assert.is_nil(out:find("dXNlcjpw", 1, true), out)
    end
    local out = log.redact('{"api_key":"abc\\"leakafterquote-0005","x":1}')
    assert.equal('{"api_key":"[redacted]","x":1}', out)
  end)

  it("hides configured secrets verbatim", function()
    log.add_secret("plain-secret-value")
    assert.equal("note=[redacted]!", log.redact("note=plain-secret-value!"))
  end)

  it("hides what moongate.secrets knows, with no pattern of its own", function()
    require("moongate.secrets").add("no.pattern(would)[match]%this")
    assert.equal("a [redacted] b", log.redact("a no.pattern(would)[match]%this b"))
  end)
end)

describe("log.escape", function()
  it("leaves a line without control characters as it is", function()
    local s = 'plain "line" with \\n written out and ünïcode'
    assert.equal(s, log.escape(s))
  end)

  it("writes out newlines, returns, tabs, other control bytes and DEL", function()
    assert.equal("a\\nb\\rc\\td\\x00e\\x1bf\\x7fg\\x01", log.escape("a\nb\rc\td\0e\27f\127g\1"))
  end)
end)

describe("log lines", function()
  it("are redacted and escaped at every level, so an input cannot forge a line", function()
    local l, lines = recording_log()
    l.set_level("debug")
    require("moongate.secrets").add("hook-secret-0123456789")
    local model = "gpt\n2026-01-01T00:00:00.000Z ERROR [w1] FORGED hook-secret-0123456789"
    l.error("model %s", model)
    l.warn("model %s", model)
    l.info("model %s", model)
    l.debug("model %s", model)
    l.info(model) -- no arguments: the message as it is
    assert.equal(5, #lines)
    for _, line in ipairs(lines) do
      assert.is_nil(line[2]:find("\n", 1, true))
      assert.is_nil(line[2]:find("hook-secret-0123456789", 1, true))
      assert.truthy(line[2]:find("gpt\\n2026-01-01T00:00:00.000Z ERROR [w1] FORGED [redacted]", 1, true))
    end
    assert.same({ "error", "warn", "info", "debug", "info" },
      { lines[1][1], lines[2][1], lines[3][1], lines[4][1], lines[5][1] })
  end)
end)

describe("log levels", function()
  it("drops messages above the level before formatting them", function()
    log.set_level("warn")
    local formatted = false
    local probe = setmetatable({}, { __tostring = function() formatted = true return "x" end })
    log.debug("%s", probe)
    log.info("%s", probe)
    assert.is_false(formatted)
    log.set_level("info")
  end)
end)
