-- The command line, run as a user would.
local helpers = require "helpers"
local json = require "moongate.json"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"exit:$?\""))
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("exit:(%d+)%s*$"))
  return out:gsub("exit:%d+%s*$", ""), code
end

local bin = "MOONGATE_LUA_DIR=lua " .. helpers.bin

describe("moongate command line", function()
  it("prints its version", function()
    local out, code = sh(bin .. " version")
    assert.equal(0, code)
    assert.matches("^moongate %d+%.%d+%.%d+\n$", out)
    assert.equal(out, (sh(bin .. " --version")))
  end)

  it("has --help for every command", function()
    for _, cmd in ipairs { "", "serve ", "check ", "version " } do
      local out, code = sh(bin .. " " .. cmd .. "--help")
      assert.equal(0, code)
      assert.matches("Usage: moongate", out)
    end
  end)

  it("refuses an unknown command or option with exit code 2", function()
    local out, code = sh(bin .. " frobnicate")
    assert.equal(2, code)
    assert.matches("unknown command", out)
    out, code = sh(bin .. " serve --colour red")
    assert.equal(2, code)
    assert.matches("unknown option %-%-colour", out)
  end)

  it("checks a good config", function()
    local path = helpers.tmpfile([[return { providers = { e = { kind = "echo" } }, routes = { { match = "e-*", provider = "e" } } }]])
    local out, code = sh(bin .. " check --config " .. path)
    assert.equal(0, code)
    assert.matches("ok %(1 provider%(s%), 1 route%(s%)%)", out)
  end)

  it("reports every problem of a bad config with its key path and exits 1", function()
    local path = helpers.tmpfile([[return { workers = "two", providers = { up = { kind = "openai", base_url = 1, extra = true } } }]])
    local out, code = sh(bin .. " check --config " .. path)
    assert.equal(1, code)
    assert.matches("config workers: expected an integer, got string", out, 1, true)
    assert.matches("config providers.up.base_url: expected a string, got integer", out, 1, true)
    assert.matches("config providers.up.extra: unknown key", out, 1, true)
  end)

  it("says clearly when it cannot listen", function()
    local blocker = require("luv").new_tcp()
    blocker:bind("127.0.0.1", 0)
    blocker:listen(1, function() end)
    local port = blocker:getsockname().port
    local out, code = sh(bin .. " serve --workers 1 --listen 127.0.0.1:" .. port)
    blocker:close()
    assert.equal(1, code)
    assert.matches("listen on 127.0.0.1:" .. port .. ": Address already in use", out, 1, true)
    assert.matches("could not start serving", out)
  end)

  it("lets flags beat MOONGATE_* variables, which beat the file", function()
    local function workers(opts)
      local srv = helpers.start { config = "return { workers = 1 }", env = opts.env, workers = opts.flag or false }
      local w = json.decode(srv:request("GET", "/health").body).workers
      srv:stop_clean()
      return w
    end
    assert.equal(1, workers {})
    assert.equal(3, workers { env = { MOONGATE_WORKERS = "3" } })
    assert.equal(2, workers { env = { MOONGATE_WORKERS = "3" }, flag = 2 })
  end)

  it("stops cleanly on SIGINT and on SIGTERM", function()
    for _, sig in ipairs { "sigint", "sigterm" } do
      local s = helpers.start {}
      assert.equal(200, s:request("GET", "/health").status)
      local code, signal = s:stop(sig)
      assert.equal(0, code)
      assert.equal(0, signal)
      assert.matches("stopping", s.log)
      assert.matches("stopped", s.log)
    end
  end)
end)
