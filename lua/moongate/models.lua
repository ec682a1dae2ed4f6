-- Model normalization (ChatMock style): aliases first; a name that an exact
-- route or alias knows is kept; otherwise an effort suffix (-low, _high, ...)
-- comes off and becomes the reasoning effort. Pure.
local reasoning = require "moongate.reasoning"

local M = {}

--- normalize(model, aliases, is_exact) -> name, effort?
-- is_exact(name) tells whether a route names this model exactly.
function M.normalize(model, aliases, is_exact)
  aliases = aliases or {}
  if aliases[model] then return aliases[model], nil end
  if is_exact and is_exact(model) then return model, nil end
  local base, effort = reasoning.split_suffix(model)
  if effort then return aliases[base] or base, effort end
  return model, nil
end

return M
