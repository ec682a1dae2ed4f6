-- Do two decoded JSON values hold the same? (tables by their keys and
-- values, however they were made; NaN equals NaN). For the specs and the
-- doors fuzz target, which compare jscan's decoding with lua-cjson's.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b or (a ~= a and b ~= b) end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

return same
