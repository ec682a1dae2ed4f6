-- The operator's code runs without the JIT (moongate.operator), so that the
-- watchdog's count hook can stop it: functions of modules found on lua_path
-- and of the config file never get a trace; the gateway's own keep the JIT.
local operator = require "moongate.operator"
local config = require "moongate.config"
local helpers = require "helpers"

-- a module with a hot loop, in dir/<name>.lua
local hot_source = [[
local M = {}
function M.hot()
  local s = 0
  for i = 1, 20000 do s = s + i % 7 end
  return s
end
function M.make() -- a function it defines later: off too
  return function() local s = 0 for i = 1, 20000 do s = s + i % 5 end return s end
end
return M
]]

local function folder(files)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. "/moongate/providers") == 0)
  for name, text in pairs(files) do
    local f = assert(io.open(dir .. "/" .. name, "wb"))
    f:write(text)
    f:close()
  end
  return dir
end

-- traces LuaJIT starts in fn while running it a few times (its trace
-- events: a function with the JIT off never starts one)
local function traces_in(fn)
  local n = 0
  local function on_trace(what, _, func)
    if what == "start" and func == fn then n = n + 1 end
  end
  jit.flush()
  jit.attach(on_trace, "trace")
  for _ = 1, 5 do fn() end
  jit.attach(on_trace)
  return n
end

-- the loop's opcode after it ran hot: a function with the JIT off has its
-- loop patched to the interpreted variant (IFORL), never JFORL
local function loop_op(fn)
  local vmdef = require "jit.vmdef"
  local util = require "jit.util"
  local info = util.funcinfo(fn)
  for pc = 1, info.bytecodes - 1 do
    local ins = util.funcbc(fn, pc)
    local name = vmdef.bcnames:sub(ins % 256 * 6 + 1, ins % 256 * 6 + 6):gsub("%s+$", "")
    if name:find("FORL$") then return name end
  end
end

describe("operator code", function()
  local saved_path, saved_loaders, loaded = package.path, {}, {}
  local dir, gw
  setup(function()
    assert(jit.status(), "these specs need LuaJIT with the JIT on")
    for i, l in ipairs(package.loaders) do saved_loaders[i] = l end
    dir = folder({ ["opmod.lua"] = hot_source })
    gw = folder({ ["gwmod.lua"] = hot_source }) -- stands for the gateway's own lua/ directory
  end)
  teardown(function()
    package.path = saved_path
    for i = #package.loaders, 1, -1 do package.loaders[i] = nil end
    for i, l in ipairs(saved_loaders) do package.loaders[i] = l end
    operator.use(nil)
    for name in pairs(loaded) do package.loaded[name] = nil end
    os.execute("rm -rf " .. dir .. " " .. gw)
  end)

  it("installs its loader once, before the default Lua searcher", function()
    local n = #package.loaders
    operator.use(dir .. "/?.lua")
    operator.use(dir .. "/?.lua")
    assert.equal(n + 1, #package.loaders)
    assert.equal(operator.loader, package.loaders[2])
    assert.equal(saved_loaders[1], package.loaders[1]) -- package.preload's stays first
    assert.equal(dir .. "/?.lua", operator.path())
  end)

  it("loads the modules on lua_path with the JIT off, the others with it on", function()
    operator.use(dir .. "/?.lua")
    package.path = dir .. "/?.lua;" .. gw .. "/?.lua;" .. package.path -- as worker.lua puts them
    loaded.opmod, loaded.gwmod = true, true
    local op, own = require "opmod", require "gwmod"
    assert.equal(0, traces_in(op.hot))
    assert.equal(0, traces_in(op.make()))
    assert.equal("IFORL", loop_op(op.hot))
    assert.is_true(traces_in(own.hot) > 0)
    assert.equal("JFORL", loop_op(own.hot))
    assert.equal(own.hot(), op.hot()) -- the same code, the same answer
  end)

  it("reports a syntax error in a module on lua_path as require does", function()
    local f = assert(io.open(dir .. "/broken.lua", "wb"))
    f:write("return {")
    f:close()
    operator.use(dir .. "/?.lua")
    loaded.broken = true
    local ok, err = pcall(require, "broken")
    assert.is_false(ok)
    assert.matches("error loading module 'broken' from file '" .. dir .. "/broken.lua'", err, 1, true)
  end)

  it("loads a provider kind from lua_path with the JIT off (config.kind_module)", function()
    local f = assert(io.open(dir .. "/moongate/providers/hotkind.lua", "wb"))
    f:write(hot_source)
    f:close()
    loaded["moongate.providers.hotkind"] = true
    operator.use(nil)
    local mod = assert(config.kind_module("hotkind", dir .. "/?.lua"))
    assert.equal(0, traces_in(mod.hot))
    assert.is_nil(operator.path()) -- the lua_path it was given is not kept
  end)

  it("runs the config file's functions (hooks) with the JIT off", function()
    local path = helpers.tmpfile([[
return {
  hook = function() local s = 0 for i = 1, 20000 do s = s + i % 3 end return s end,
}]])
    local file = assert(config.load_file(path))
    assert.equal(0, traces_in(file.hook))
    assert.equal("IFORL", loop_op(file.hook))
  end)

  it("keeps lua_path for the modules required later (config.resolve)", function()
    operator.use(nil)
    local path = helpers.tmpfile(string.format("return { lua_path = %q }", dir .. "/?.lua"))
    local cfg = assert(config.resolve({ config = path }, function() end, 1))
    assert.equal(dir .. "/?.lua", cfg.lua_path)
    assert.equal(dir .. "/?.lua", operator.path())
  end)
end)

describe("script_timeout_ms", function()
  it("is 2000 by default, 0 turns it off, and it is a whole number of ms", function()
    assert.equal(2000, assert(config.resolve({}, function() end, 1)).script_timeout_ms)
    local function with(v)
      local path = helpers.tmpfile("return { script_timeout_ms = " .. v .. " }")
      return config.resolve({ config = path }, function() end, 1)
    end
    assert.equal(0, assert(with("0")).script_timeout_ms)
    assert.equal(300, assert(with("300")).script_timeout_ms)
    local _, errs = with("-1")
    assert.matches("script_timeout_ms: must be at least 0", errs[1], 1, true)
    _, errs = with("1.5")
    assert.matches("script_timeout_ms: expected an integer", errs[1], 1, true)
  end)
end)
