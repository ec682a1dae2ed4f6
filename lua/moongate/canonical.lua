-- Helpers over the canonical request (DESIGN.md "Canonical request and
-- events"), shared by front doors and providers.
local M = {}

--- text(blocks) -> the text blocks joined
function M.text(blocks)
  local out = {}
  for _, b in ipairs(blocks or {}) do
    if b.type == "text" then out[#out + 1] = b.text end
  end
  return table.concat(out)
end

--- last_user_text(creq) -> text of the last user message ("" if none)
function M.last_user_text(creq)
  for i = #creq.messages, 1, -1 do
    local m = creq.messages[i]
    if m.role == "user" then return M.text(m.content) end
  end
  return ""
end

--- estimate_tokens(text) -> a rough count (4 bytes a token), for upstreams
-- and providers that report none. Documented as an estimate.
function M.estimate_tokens(text)
  if not text or text == "" then return 0 end
  return math.ceil(#text / 4)
end

--- prompt_tokens(creq) -> estimate over the system prompt and all messages
function M.prompt_tokens(creq)
  local n = M.estimate_tokens(creq.system)
  for _, m in ipairs(creq.messages) do
    for _, b in ipairs(m.content) do
      n = n + M.estimate_tokens(b.text or b.arguments or b.content)
    end
    n = n + 3 -- per-message framing
  end
  return n
end

--- tool_schema(creq, name) -> the JSON Schema of the request's tool of that
-- name (its parameters), or nil
function M.tool_schema(creq, name)
  for _, t in ipairs(creq and creq.tools or {}) do
    if t.name == name then return t.parameters end
  end
end

--- tool_call_events(out, index, id, name, arguments): appends the events of
-- one whole tool call (start, its arguments at once, end) to out
function M.tool_call_events(out, index, id, name, arguments)
  out[#out + 1] = { type = "toolcall_start", index = index, id = id, name = name }
  out[#out + 1] = { type = "toolcall_delta", index = index, arguments = arguments }
  out[#out + 1] = { type = "toolcall_end", index = index }
end

local digits = {} -- the 62 letters and digits of an id, one string each
for c in ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"):gmatch(".") do
  digits[#digits + 1] = c
end
local scratch = {} -- random_id's digits, reused: no table per id
local concat, random, floor = table.concat, math.random, math.floor

--- random_id(prefix, n) -> prefix followed by n random letters and digits
-- (one math.random() holds 8 such digits: 62^8 < 2^52)
function M.random_id(prefix, n)
  local x, left = 0, 0
  for i = 1, n do
    if left == 0 then x, left = floor(random() * 62 ^ 8), 8 end
    local d = x % 62
    scratch[i] = digits[d + 1]
    x, left = (x - d) / 62, left - 1
  end
  return prefix .. concat(scratch, "", 1, n)
end

--- client_key(headers) -> the key the client sent (Bearer or x-api-key)
function M.client_key(headers)
  if not headers then return nil end
  local auth = headers.authorization
  return (auth and auth:match("^[Bb]earer%s+(.+)$")) or headers["x-api-key"]
end

return M
