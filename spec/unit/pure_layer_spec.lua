-- The pure layer without the daemon's host: every pure module loads, and
-- the specs of the front doors, adapters, router and translation pass, with
-- moongate.core, luv and moongate.jscan absent (spec/support/no_host.lua
-- makes requiring them raise). docs/EMBEDDING.md lists the pure modules.
local PURE = {
  "moongate.host", "moongate.frames", "moongate.json", "moongate.errors", "moongate.secrets", "moongate.log",
  "moongate.canonical", "moongate.models", "moongate.reasoning", "moongate.router", "moongate.wire",
  "moongate.config", "moongate.operator", "moongate.host.nginx",
  "moongate.frontdoor.openai_chat", "moongate.frontdoor.openai_common", "moongate.frontdoor.openai_completions",
  "moongate.frontdoor.openai_embeddings", "moongate.frontdoor.openai_responses", "moongate.frontdoor.anthropic_messages",
  "moongate.frontdoor.ollama", "moongate.frontdoor.ws_chat",
  "moongate.adapters.openai", "moongate.adapters.openai_common", "moongate.adapters.openai_responses",
  "moongate.adapters.anthropic", "moongate.adapters.prompt",
  -- the kinds the nginx host reads config fields from (their fetch is the daemon's, found when first used)
  "moongate.providers.openai", "moongate.providers.anthropic",
}
local SPECS = { "fixtures", "translate", "json", "legacy_doors", "ollama_door", "openai_chat", "openai_responses",
  "router", "secrets", "nginx_host" }

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok, _, code = p:close()
  return out, ok == true or code == 0
end

describe("the pure layer without moongate.core, luv or moongate.jscan", function()
  it("loads every pure module", function()
    local script = "dofile('spec/support/no_host.lua'); package.path = 'lua/?.lua;lua/?/init.lua;' .. package.path; "
      .. "for _, m in ipairs{" .. ("%q,"):rep(#PURE):format(unpack(PURE)) .. "} do require(m) end; print('loaded')"
    local out, ok = run("luajit -e " .. string.format("%q", script))
    assert(ok and out:find("loaded", 1, true), out)
  end)

  it("passes the specs of the front doors, adapters, router and translation", function()
    local files = {}
    for i, s in ipairs(SPECS) do files[i] = "spec/unit/" .. s .. "_spec.lua" end
    local out, ok = run("luajit /usr/bin/busted -o TAP --helper=spec/support/no_host.lua --cpath=/nonexistent/?.so "
      .. table.concat(files, " "))
    assert(ok and not out:find("\nnot ok", 1, true), out:sub(-3000))
    local n = 0
    for _ in out:gmatch("\nok ") do n = n + 1 end
    assert.is_true(n > 300, "ran only " .. n .. " cases:\n" .. out:sub(-2000))
  end)
end)
