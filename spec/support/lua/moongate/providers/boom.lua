-- A provider that fails on purpose, for the specs: an operator's provider
-- script with a bug. "sync" raises inside start(); "async" raises in a timer
-- callback after the first delta has gone out.
local uv = require "luv"

local M = {}

function M.new(name)
  return {
    name = name,
    start = function(_, creq, sink)
      local text = creq.messages[#creq.messages].content[1].text
      if text == "sync" then
        error("boom: provider script bug")
      end
      sink.emit({ type = "start" })
      sink.emit({ type = "text_delta", text = "partial " })
      local timer = uv.new_timer()
      timer:start(20, 0, sink.guard(function()
        timer:close()
        error("boom: async provider bug")
      end))
      return { cancel = function() if not timer:is_closing() then timer:close() end end }
    end,
  }
end

return M
