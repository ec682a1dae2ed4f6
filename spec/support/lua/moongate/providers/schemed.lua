-- A provider kind for the config specs: it exports its own config fields
-- (schema), merged over the shared base, and overrides one base field.
local M = {}

M.schema = {
  flavour = { type = "string", enum = { sweet = true, sour = true } },
  scoops = { type = "integer", min = 1, required = true },
  retries = { type = "integer", min = 0, max = 2 }, -- tighter than the base's 10
}

function M.new(name)
  return { name = name, models = {}, start = function() error("schemed: not for requests") end }
end

return M
