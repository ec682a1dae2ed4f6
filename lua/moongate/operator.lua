-- The operator's code: the config file's functions and the modules found on
-- the config's lua_path (provider scripts moongate.providers.<kind>, hooks).
-- It runs interpreted, without the JIT, so that the watchdog can stop it
-- (src/watchdog.h): LuaJIT runs no hook inside compiled code, so a
-- `while true do end` the JIT had compiled could never be stopped. The
-- gateway's own modules keep the JIT.
local M = {}

local searchpath = package.searchpath

--- off(fn) -> fn: the function, and every function it defines, interpreted
function M.off(fn)
  if jit and type(fn) == "function" then jit.off(fn, true) end
  return fn
end

-- The operator's lua_path (the config's), searched before the gateway's own
-- package.path; nil: none
local path

-- package.loaders entry: a module on the operator's lua_path, loaded with
-- the JIT off. Nothing found: nil, and require goes on to the next loader.
local function loader(name)
  if not path then return nil end
  local file = searchpath(name, path)
  if not file then return nil end
  local fn, err = loadfile(file)
  if not fn then
    error(string.format("error loading module '%s' from file '%s':\n\t%s", name, file, err), 0)
  end
  return M.off(fn)
end
M.loader = loader

--- use(lua_path): modules on lua_path load interpreted from now on, found
-- by a loader put before the default Lua searcher (package.loaders[2]).
-- Installing twice is a no-op; a later lua_path replaces the earlier one
-- (nil: none).
function M.use(lua_path)
  path = type(lua_path) == "string" and lua_path or nil
  local loaders = package.loaders or package.searchers
  for i = 1, #loaders do
    if loaders[i] == loader then return end
  end
  table.insert(loaders, 2, loader) -- after package.preload's, before the Lua files'
end

--- path() -> the operator's lua_path in use, or nil
function M.path() return path end

return M
