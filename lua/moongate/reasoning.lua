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

return M
