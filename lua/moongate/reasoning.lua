-- Reasoning parameters: OpenAI's effort and Anthropic's thinking budget,
-- converted into each other by one table, and the ChatMock-style model
-- suffix (gpt-5-high, o3_low) that names an effort.
local M = {}

--- effort -> Anthropic thinking budget_tokens
M.budgets = { minimal = 1024, low = 4096, medium = 8192, high = 16384, xhigh = 32768 }
M.order = { "minimal", "low", "medium", "high", "xhigh" }

--- budget_for(effort) -> tokens | nil ("none" and unknown efforts: no thinking)
function M.budget_for(effort)
  return effort and M.budgets[effort] or nil
end

--- effort_for(budget) -> the smallest effort whose budget covers it
function M.effort_for(budget)
  if not budget or budget <= 0 then return nil end
  for _, e in ipairs(M.order) do
    if budget <= M.budgets[e] then return e end
  end
  return "xhigh"
end

--- split_suffix(model) -> base, effort | model, nil
-- The suffix is the last "-" or "_" and a lowercase effort name after it.
function M.split_suffix(model)
  local base, effort = model:match("^(.+)[-_](%l+)$")
  if base and M.budgets[effort] then return base, effort end
  return model, nil
end

-- every effort either API names, from least to most
local rank = { none = 0, minimal = 1, low = 2, medium = 3, high = 4, xhigh = 5, max = 5 }

--- clamp(effort, allowed) -> effort when the provider takes it (or lists
-- no efforts), else the one it takes that is nearest (the lower of two)
function M.clamp(effort, allowed)
  if not effort or not allowed or #allowed == 0 then return effort end
  local want, best, dist = rank[effort], nil, math.huge
  for _, e in ipairs(allowed) do
    if e == effort then return effort end
    local d = want and rank[e] and math.abs(rank[e] - want + 0.1) or math.huge
    if d < dist then best, dist = e, d end
  end
  return best
end

return M
