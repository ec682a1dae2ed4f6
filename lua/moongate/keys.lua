-- Inbound keys: who may call the gateway (README, "Security"). Set in the
-- config (keys = {{key = "...", name = "team-a", models = {"gpt-*"}}}, or
-- key_env instead of key) or in MOONGATE_API_KEYS (comma-separated; named
-- env-1, env-2, ...). When any is set, every API endpoint wants one of them:
-- Authorization: Bearer, x-api-key or x-goog-api-key. A key is compared
-- with every configured one in constant time (no early exit on the first
-- byte that differs), and is never logged: its name stands for it.
-- Pure: no host calls.
local bit = require "bit"
local secrets = require "moongate.secrets"
local router = require "moongate.router"

local M = {}

--- same(a, b) -> bool: a equals b, in time that depends on their lengths only
function M.same(a, b)
  if type(a) ~= "string" or type(b) ~= "string" or #a ~= #b then return false end
  local diff = 0
  for i = 1, #b do diff = bit.bor(diff, bit.bxor(a:byte(i), b:byte(i))) end
  return diff == 0
end

--- load(cfg, getenv) -> list of {key, name, models = patterns | nil, limits =
-- {rpm, tpm, tokens_per_day, tokens_per_month} | nil}, or nil
-- when no key is set (every key also becomes a secret the log never shows)
function M.load(cfg, getenv)
  local list = {}
  local function add(key, name, models, limits)
    if type(key) ~= "string" or key == "" then return end
    local patterns
    if models then
      patterns = {}
      for i, m in ipairs(models) do patterns[i] = router.glob_to_pattern(m) end
    end
    secrets.add(key)
    list[#list + 1] = { key = key, name = name, models = patterns, limits = limits }
  end
  for i, k in ipairs(cfg.keys or {}) do
    local limits
    if k.rpm or k.tpm or k.tokens_per_day or k.tokens_per_month then
      limits = { rpm = k.rpm, tpm = k.tpm, tokens_per_day = k.tokens_per_day, tokens_per_month = k.tokens_per_month }
    end
    add(k.key or (k.key_env and getenv(k.key_env)), k.name or ("key-" .. i), k.models, limits)
  end
  local env = getenv("MOONGATE_API_KEYS")
  if env then
    local n = 0
    for key in env:gmatch("[^,]+") do
      key = key:match("^%s*(.-)%s*$")
      if key ~= "" then
        n = n + 1
        add(key, "env-" .. n)
      end
    end
  end
  return #list > 0 and list or nil
end

--- presented(headers) -> the key a request carries, or nil
function M.presented(headers)
  if not headers then return nil end
  local auth = headers.authorization
  return (auth and auth:match("^[Bb]earer%s+(.-)%s*$")) or headers["x-api-key"] or headers["x-goog-api-key"]
end

--- check(list, headers) -> the entry of the key the request carries, or nil
-- (every entry is compared, whichever matches)
function M.check(list, headers)
  local key = M.presented(headers)
  if not key then return nil end
  local found
  for _, e in ipairs(list) do
    if M.same(key, e.key) then found = found or e end
  end
  return found
end

--- allows(entry, model) -> may this key use the model?
function M.allows(entry, model)
  if not entry.models then return true end
  if type(model) ~= "string" then return false end
  for _, p in ipairs(entry.models) do
    if model:find(p) then return true end
  end
  return false
end

return M
