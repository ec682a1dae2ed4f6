-- Every libuv handle this Lua state makes (uv.new_timer, new_tcp, ...), so
-- that the host can close them all before it closes the state: a handle
-- still open at lua_close would have its close callback run on a state that
-- is gone. Requiring the module wraps luv's constructors once per state;
-- close_all() closes what is still open (the host calls it when a state a
-- reload retired has finished its work, and at shutdown).
local uv = require "luv"

local M = {}
local open = setmetatable({}, { __mode = "k" }) -- handle -> true (weak: a collected one is gone)

if not uv._moongate_tracked then
  uv._moongate_tracked = true
  for name, fn in pairs(uv) do
    if type(fn) == "function" and name:find("^new_") and name ~= "new_thread" and name ~= "new_work" then
      uv[name] = function(...)
        local h, err, code = fn(...)
        if h then open[h] = true end
        return h, err, code
      end
    end
  end
end

-- whether h is still a live handle that is not closing (a handle luv has
-- finalized already answers neither: pcall)
local function live(h)
  local ok, closing = pcall(h.is_closing, h)
  return ok and not closing
end

--- count() -> handles made and not yet closing (for specs)
function M.count()
  local n = 0
  for h in pairs(open) do
    if live(h) then n = n + 1 end
  end
  return n
end

--- close_all(): closes every handle still open; their callbacks will not run
function M.close_all()
  for h in pairs(open) do
    if live(h) then
      if h.stop then pcall(h.stop, h) end
      pcall(h.close, h)
    end
    open[h] = nil
  end
end

return M
