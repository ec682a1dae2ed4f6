-- What the OpenAI-family front doors (chat completions, legacy
-- completions, embeddings, the Responses API) share: OpenAI's words for
-- what is wrong with a request (how it names a value's type, and its
-- invalid_type / invalid_value / missing_required_parameter errors), the
-- checks all of them make in those words (the JSON body and its model,
-- optional typed fields, ranges, stop), and the usage object that chat and
-- legacy completions both answer with.
-- The errors are errors.new values: invalid_type, invalid_value and
-- missing return nil, err (a decode returns them as they are), body()
-- returns the request or nil, err, the other checks nil or err; the
-- refuse_* variants raise the error while a request is translated
-- (errors.refuse, caught by errors.catch).
-- Pure: no host globals.
local json = require "moongate.json"
local errors = require "moongate.errors"

local M = {}

local null = json.null

-- Types ----------------------------------------------------------------------

function M.is_array(v) return type(v) == "table" and json.is_array(v) end
function M.is_object(v) return type(v) == "table" and v ~= null and (next(v) == nil or not json.is_array(v)) end
-- given, and not null
function M.present(v) return v ~= nil and v ~= null end
-- an integer (NaN and the infinities are none: their remainder is NaN)
function M.is_int(v) return type(v) == "number" and v % 1 == 0 end
function M.is_number(v) return type(v) == "number" end
function M.is_bool(v) return type(v) == "boolean" end
function M.is_string(v) return type(v) == "string" end

--- jtype(v) -> the type of a JSON value as OpenAI's messages name it
function M.jtype(v)
  local t = type(v)
  if v == null then return "null" end
  if t == "table" then return json.is_array(v) and next(v) ~= nil and "an array" or (next(v) == nil and "an empty object" or "an object") end
  if t == "number" then return (v % 1 == 0) and "an integer" or "a number" end
  if t == "string" then return "a string" end
  if t == "boolean" then return "a boolean" end
  return t
end
local jtype = M.jtype

-- Errors ---------------------------------------------------------------------

local function type_message(param, expected, v)
  return string.format("Invalid type for '%s': expected %s, but got %s instead.", param, expected, jtype(v))
end

--- invalid_type(param, expected, v) -> nil, err
function M.invalid_type(param, expected, v)
  return nil, errors.new(400, type_message(param, expected, v), { param = param, code = "invalid_type" })
end

--- invalid_value(param, msg [, code]) -> nil, err (code: invalid_value
-- unless another is given)
function M.invalid_value(param, msg, code)
  return nil, errors.new(400, string.format("Invalid '%s': %s", param, msg), { param = param, code = code or "invalid_value" })
end

--- missing(param) -> nil, err
function M.missing(param)
  return nil, errors.new(400, string.format("Missing required parameter: '%s'.", param),
    { param = param, code = "missing_required_parameter" })
end

-- the same three, raised while a request is translated
function M.refuse_type(param, expected, v)
  errors.refuse(400, type_message(param, expected, v), { param = param, code = "invalid_type" })
end
function M.refuse_value(param, msg)
  errors.refuse(400, string.format("Invalid '%s': %s", param, msg), { param = param, code = "invalid_value" })
end
function M.refuse_missing(param)
  errors.refuse(400, string.format("Missing required parameter: '%s'.", param),
    { param = param, code = "missing_required_parameter" })
end

-- the largest count (tokens, choices) a request may ask for: every API
-- reads them as 32-bit integers, and 1e308 is an integer to JSON
M.INT_MAX = 2147483647

--- range(kind, lo, hi) -> check(v) -> nil | what is wrong (kind: "decimal"
-- or "integer", in OpenAI's words); not a number (NaN, 1e999 read as
-- infinity) is out of every range
-- each range's bounds, for the fast path's rules (fast.lua)
M.bounds = setmetatable({}, { __mode = "k" })

function M.range(kind, lo, hi)
  local fn
  fn = function(v)
    if v ~= v or (lo and v < lo) then
      return string.format("%s below minimum value. Expected a value >= %s, but got %s instead.", kind, lo, v)
    elseif hi and v > hi or v == math.huge then
      return string.format("%s above maximum value. Expected a value <= %s, but got %s instead.", kind, hi or lo, v)
    end
  end
  M.bounds[fn] = { lo = lo, hi = hi }
  return fn
end

-- Checks ---------------------------------------------------------------------

local function parse_error(what)
  return nil, errors.new(400, "We could not parse the JSON body of your request: " .. what)
end

--- body(body, once [, marker]) -> req, marked | nil, err: the request body
-- as a JSON object (json.object: its nested values read when first
-- indexed), no top-level key given twice (without moongate.jscan, none of
-- the list `once`), with a model that is a non-empty string; marked: a
-- string in it begins with marker; hollow: what json.object leaves raw
function M.body(body, once, marker, hollow)
  if body == nil or body == "" then
    return parse_error("the body is empty. The API expects a JSON object.")
  end
  local req, why, key = json.object(body, marker, once, hollow)
  if req == nil then
    if why == "duplicate" then
      return M.invalid_value(key, "the field is given twice in the request body; give it once.")
    end
    local v, perr = json.decode(body)
    if v == nil then return parse_error(perr .. ". The API expects a JSON object.") end
    -- (an empty array decodes to the same empty table as {}: the text says which)
    return parse_error("expected a JSON object, got " .. (type(v) == "table" and "an array" or jtype(v)) .. ".")
  end
  if not M.present(req.model) then return M.missing("model") end
  if type(req.model) ~= "string" then return M.invalid_type("model", "a string", req.model) end
  if req.model == "" then return M.invalid_value("model", "must not be empty.") end
  return req, why -- marked
end

-- the error of a nil, err pair
local function err_of(_, err) return err end

--- fields(req, checks) -> nil | err: the optional typed fields a door
-- lists, checks = {name = {what, check(v) -> ok [, range(v) -> nil |
-- message]}}, each looked at when present
function M.fields(req, checks)
  for name, c in pairs(checks) do
    -- a nested value not read yet (a passthrough's tools) is judged by its
    -- kind, which the scan saw: reading it would decode it
    local kind, n = json.span_kind(req, name)
    local v = not (kind and (c[2] == M.is_array or c[2] == M.is_object)) and req[name] or nil
    if kind and v == nil then
      -- (an empty one passes either: cjson reads [] and {} alike)
      if n > 0 and (c[2] == M.is_array) ~= (kind == "array") then return err_of(M.invalid_type(name, c[1], req[name])) end
    elseif M.present(v) then
      if not c[2](v) then return err_of(M.invalid_type(name, c[1], v)) end
      local wrong = c[3] and c[3](v)
      if wrong then return err_of(M.invalid_value(name, wrong)) end
    end
  end
end

--- stop(stop) -> nil | err: stop is absent, a string or a list of strings
function M.stop(stop)
  if M.present(stop) and type(stop) ~= "string" then
    if not M.is_array(stop) then return err_of(M.invalid_type("stop", "one of a string or an array", stop)) end
    for i, s in ipairs(stop) do
      if type(s) ~= "string" then return err_of(M.invalid_type(string.format("stop[%d]", i - 1), "a string", s)) end
    end
  end
end

--- stop_list(stop) -> the canonical stop list (nil when there is none)
function M.stop_list(stop)
  if type(stop) == "string" then return { stop } end
  return M.is_array(stop) and #stop > 0 and stop or nil
end

-- Answers ----------------------------------------------------------------------

--- usage_object(u) -> the usage of a chat completion or a legacy completion
-- (u: the canonical usage event, or nil)
function M.usage_object(u)
  local p, c = u and u.input_tokens or 0, u and u.output_tokens or 0
  local out = { prompt_tokens = p, completion_tokens = c, total_tokens = p + c }
  if u and u.cached_tokens then out.prompt_tokens_details = { cached_tokens = u.cached_tokens } end
  if u and u.reasoning_tokens then out.completion_tokens_details = { reasoning_tokens = u.reasoning_tokens } end
  return out
end

return M
