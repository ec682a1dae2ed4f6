-- The rockspec installs every module of lua/moongate, and names no file
-- that is not there: a module added without it would be missing from an
-- embedding install.
local fx = require "support.fixtures"

local function lua_files(dir, prefix, out)
  local uv = require "luv"
  local h = uv.fs_scandir(dir)
  while h do
    local name, kind = uv.fs_scandir_next(h)
    if not name then break end
    if kind == "directory" then
      lua_files(dir .. "/" .. name, prefix .. name .. ".", out)
    elseif name:match("%.lua$") then
      local mod = prefix .. name:gsub("%.lua$", "")
      out[(mod:gsub("%.init$", ""))] = dir .. "/" .. name
    end
  end
  return out
end

describe("rockspec", function()
  it("lists each module of lua/moongate at its file, and nothing else", function()
    local text = fx.text("rockspec/moongate-scm-1.rockspec")
    local listed = {}
    for mod, file in text:gmatch('%["(moongate[%w%._]*)"%]%s*=%s*"([^"]+)"') do listed[mod] = file end
    local files = lua_files("lua/moongate", "moongate.", {})
    for mod, file in pairs(files) do assert.equal(file, listed[mod], mod .. " is not in the rockspec") end
    for mod in pairs(listed) do assert.is_truthy(files[mod], mod .. " is in the rockspec but not in lua/moongate") end
  end)
end)
