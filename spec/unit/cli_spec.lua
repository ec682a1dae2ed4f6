local cli = require "moongate.cli"

describe("cli.parse", function()
  it("parses serve flags in both spellings", function()
    local cmd = assert(cli.parse { "serve", "--config", "a.lua", "--listen=127.0.0.1:1", "--workers", "3", "--verbose" })
    assert.equal("serve", cmd.command)
    assert.same({ config = "a.lua", listen = "127.0.0.1:1", workers = 3, verbose = true }, cmd.flags)
  end)

  it("answers --help for each command", function()
    assert.same({ command = "help", flags = { topic = "serve" } }, cli.parse { "serve", "--help" })
    assert.same({ command = "help", flags = { topic = "main" } }, cli.parse { "--help" })
    assert.same({ command = "help", flags = { topic = "check" } }, cli.parse { "check", "-h" })
    for _, topic in ipairs { "main", "serve", "check", "version" } do
      assert.is_string(cli.usage[topic])
    end
  end)

  it("rejects what it does not know", function()
    assert.matches("unknown command", select(2, cli.parse { "frobnicate" }))
    assert.matches("unknown option %-%-colour", select(2, cli.parse { "serve", "--colour" }))
    assert.matches("needs a value", select(2, cli.parse { "serve", "--listen" }))
    assert.matches("positive integer", select(2, cli.parse { "serve", "--workers", "0" }))
    assert.matches("%-%-config FILE is required", select(2, cli.parse { "check" }))
    assert.matches("unexpected argument", select(2, cli.parse { "serve", "extra" }))
  end)
end)
