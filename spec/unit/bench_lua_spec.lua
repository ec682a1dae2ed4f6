-- scripts/bench_lua.lua keeps working: every case ends with 200 (the script
-- stops otherwise) and prints its figures.
describe("scripts/bench_lua.lua", function()
  it("runs each case through the app and prints time and allocation", function()
    local p = io.popen("luajit scripts/bench_lua.lua --requests 200 --rounds 1 2>&1; echo \"exit $?\"")
    local out = p:read("*a")
    p:close()
    assert.truthy(out:find("exit 0\n$"), out)
    local n = 0
    for name, us, bytes in out:gmatch("\n  (%a[^\n]-)%s+([%d%.]+) us%s+(%d+) bytes allocated") do
      n = n + 1
      assert.is_true(tonumber(us) > 0, name)
      assert.is_true(tonumber(bytes) > 0, name)
    end
    assert.equal(9, n, out)
  end)
end)
