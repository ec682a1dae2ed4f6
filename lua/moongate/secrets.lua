-- The secrets this Lua state holds (provider keys, from the config or the
-- environment, the worker token, forwarded client keys), so that they can be
-- cut out by value from every log line and from every upstream message
-- relayed to a client: an upstream that quotes a key in its error
-- ("Incorrect API key provided: sk-...") must not hand it on.
--
-- Per Lua state: each worker thread has its own, and each registers the same
-- config secrets at start. Values shorter than MIN bytes are ignored: they
-- would match ordinary text and no real key is that short.
--
--   add(value)           a secret for the life of the state (config keys)
--   add_client(value)    a forwarded client key: one of the last CLIENTS
--                        kept, so that many clients do not grow the list
--   add_rotating(slot, value)  a token that is replaced now and then (an
--                        OAuth access token, a Copilot token): the slot
--                        (e.g. "copilot:work") keeps its last KEEP values,
--                        so refreshes do not grow the list
--   redact(text [, extra]) -> text with each known secret (and extra, one
--                        more value, e.g. the request's own client key)
--                        replaced by MARK; text that is not a string is
--                        returned as it is
--   count() -> how many secrets are known (for tests)
local M = {}

M.MARK = "[redacted]"
M.MIN = 8
M.CLIENTS = 64
M.KEEP = 2

local fixed = {}       -- list of permanent secrets, longest first
local client_ring = {} -- the last CLIENTS forwarded client keys
local client_next = 1
local is_fixed, in_ring = {}, {} -- value -> true: adding one again is free

local function usable(value)
  return type(value) == "string" and #value >= M.MIN and not is_fixed[value]
end

function M.add(value)
  if not usable(value) then return end
  is_fixed[value] = true
  fixed[#fixed + 1] = value
  -- longest first: a secret that holds a shorter one is cut whole
  table.sort(fixed, function(a, b) return #a > #b end)
end

local function remove_fixed(value)
  is_fixed[value] = nil
  for i = #fixed, 1, -1 do
    if fixed[i] == value then table.remove(fixed, i) end
  end
end

local slots = {} -- slot -> list of its values, newest last

function M.add_rotating(slot, value)
  if not usable(value) then return end
  local list = slots[slot] or {}
  slots[slot] = list
  list[#list + 1] = value
  M.add(value)
  while #list > M.KEEP do remove_fixed(table.remove(list, 1)) end
end

function M.add_client(value)
  if not usable(value) or in_ring[value] then return end
  local old = client_ring[client_next]
  if old then in_ring[old] = nil end
  in_ring[value] = true
  client_ring[client_next] = value
  client_next = client_next % M.CLIENTS + 1
end

-- every occurrence of s in text by MARK, found plainly (no pattern)
local function cut(text, s)
  local i, j = text:find(s, 1, true)
  if not i then return text end
  local out, n, pos = {}, 0, 1
  while i do
    out[n + 1], out[n + 2] = text:sub(pos, i - 1), M.MARK
    n = n + 2
    pos = j + 1
    i, j = text:find(s, pos, true)
  end
  out[n + 1] = text:sub(pos)
  return table.concat(out)
end

function M.redact(text, extra)
  if type(text) ~= "string" then return text end
  if type(extra) == "string" and #extra >= M.MIN then text = cut(text, extra) end
  for i = 1, #fixed do text = cut(text, fixed[i]) end
  for i = 1, M.CLIENTS do
    local s = client_ring[i]
    if not s then break end
    text = cut(text, s)
  end
  return text
end

function M.count()
  local n = #fixed
  for i = 1, M.CLIENTS do if client_ring[i] then n = n + 1 end end
  return n
end

return M
