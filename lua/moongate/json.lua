-- JSON helpers over lua-cjson: decoding that never raises, and encoding
-- that keeps its settings in one place.
local cjson = require "cjson"

local M = {}

M.null = cjson.null

local codec = cjson.new()
codec.encode_sparse_array(true)
codec.decode_invalid_numbers(false)
codec.encode_invalid_numbers(false)
codec.decode_max_depth(200)
codec.encode_max_depth(200)

--- decode(text) -> value | nil, message
function M.decode(text)
  if type(text) ~= "string" then
    return nil, "expected a string to decode"
  end
  local ok, value = pcall(codec.decode, text)
  if not ok then
    return nil, (tostring(value):gsub("^.-:%d+: ", ""))
  end
  return value
end

--- encode(value) -> string (raises on values JSON cannot hold)
function M.encode(value)
  return codec.encode(value)
end

-- Debian's lua-cjson 2.1.0 writes an empty table as {}. Where a format
-- needs [], put M.empty_array in the value and encode it with
-- encode_arrays(): a marker string no client can send (it holds a control
-- character and a per-process number) is swapped for [] after encoding.
local marker_id = tostring(math.floor(os.time() % 1e6)) .. tostring({}):match("0x(%x+)")
M.empty_array = "\1empty-array-" .. marker_id
local marker_json = '"\\u0001empty%-array%-' .. marker_id .. '"'

--- encode_arrays(value) -> string, with M.empty_array written as []
function M.encode_arrays(value)
  return (codec.encode(value):gsub(marker_json, "[]"))
end

--- is_array(t): a table whose keys are exactly 1..n (an empty table counts)
function M.is_array(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then return false end
    n = n + 1
  end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return true
end

function M.is_object(t)
  if type(t) ~= "table" then return false end
  for k in pairs(t) do
    if type(k) ~= "string" then return false end
  end
  return true
end

return M
