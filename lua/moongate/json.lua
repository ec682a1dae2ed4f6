-- JSON helpers over lua-cjson: decoding that never raises, and encoding
-- that keeps its settings in one place.
local cjson = require "cjson"

local M = {}
local byte = string.byte

M.null = cjson.null

local codec = cjson.new()
codec.encode_sparse_array(true)
codec.decode_invalid_numbers(false)
codec.encode_invalid_numbers(false)
codec.decode_max_depth(200)
codec.encode_max_depth(200)

-- cjson's words for what went wrong, without where in the Lua source
local function cjson_message(err)
  return (tostring(err):gsub("^.-:%d+: ", ""))
end

--- decode(text) -> value | nil, message
function M.decode(text)
  if type(text) ~= "string" then
    return nil, "expected a string to decode"
  end
  local ok, value = pcall(codec.decode, text)
  if not ok then
    return nil, cjson_message(value)
  end
  return value
end

--- encode(value) -> string (raises on values JSON cannot hold)
function M.encode(value)
  return codec.encode(value)
end

-- Debian's lua-cjson 2.1.0 writes an empty table as {} and a number with 14
-- significant digits. Where the JSON text must say more, put M.raw(text) in
-- the value and encode it with encode_raw(): the marker string raw() makes
-- (a control character, 16 random hex digits drawn at start, then the text)
-- is swapped for the text itself after encoding. Client strings are encoded
-- by the same call, so a client must not be able to forge a marker: the id
-- comes from /dev/urandom, and only a number or [] is ever swapped in, so
-- even a guessed id could not add a key to a request.
local marker_id = require("moongate.host").random_hex(16)
local raw_tag = "\1raw-" .. marker_id .. ":"
local raw_json_tag = '"\\u0001raw-' .. marker_id .. ':' -- as cjson writes it

--- raw(text) -> a value that encode_raw writes as text: a JSON number or []
function M.raw(text)
  assert(text:find("^[%d%.eE+%-%[%]]*$"), "json.raw takes a number or []")
  return raw_tag .. text
end

M.empty_array = M.raw("[]")

-- Raw values: a client's JSON string or object carried upstream as its
-- text, not decoded unless something reads it (json.object's `hollow`).
-- A raw string is a Lua string, the marker tag .. "str" .. n, that
-- encode_raw writes as the text; json.str(s) gives what it says. A raw
-- object is a table holding one key, tag .. "obj" .. n (cjson writes it as
-- {"\u0001raw-<id>:objn":true}), that decodes itself in place when a key
-- is read or written (pairs() or next() before that see its one key: an
-- object, not empty, as its text is). n is unique in the process. As with
-- raw(), the id keeps clients from forging a marker: one that knew it
-- could have another live request's text spliced into its own, so no
-- marker ever leaves the process (encode_raw swaps each, and refuses one
-- it cannot swap). The texts belong to the decoded request: its owner
-- table, {text = the request's text, [n] = from, [-n] = to} (raw value n
-- is text:sub(from, to), no copy made till needed), held for as long as
-- the request's table is; raw_owners holds owners weakly. A raw value
-- used after its request is gone has no text: reading or writing it fails.
local raw_owners = setmetatable({}, { __mode = "v" }) -- n -> owner
-- a decoded request -> its owner: held as long as the request is (json.whole
-- takes the metatable off, so the owner cannot live there)
local raw_owner_of = setmetatable({}, { __mode = "k" })
local raw_n = setmetatable({}, { __mode = "k" }) -- raw object -> its n
local raw_count = 0
local str_tag, obj_tag = raw_tag .. "str", raw_tag .. "obj"

-- raw value n is owner.text:sub(from, to) from now on
local function raw_keep(owner, n, from, to)
  owner[n], owner[-n], raw_owners[n] = from, to, owner
end

-- where raw value n is: its request's text, from, to, and the owner
local function raw_place(n)
  local owner = raw_owners[n]
  if not owner then error("a raw value's text is gone (used after its request)") end
  return owner.text, owner[n], owner[-n], owner
end

local function raw_text_of(n)
  local owner = raw_owners[n]
  return owner and owner.text:sub(owner[n], owner[-n])
end

-- the raw object h becomes the table its text decodes to
local function materialize(h)
  local n = raw_n[h]
  if not n then return end
  local text, from, to = raw_place(n)
  raw_n[h] = nil
  setmetatable(h, nil)
  for k in pairs(h) do h[k] = nil end
  for k, v in pairs(codec.decode(text:sub(from, to))) do h[k] = v end
end
local RawObject = {
  __index = function(h, k) materialize(h); return rawget(h, k) end,
  __newindex = function(h, k, v) materialize(h); rawset(h, k, v) end,
}

-- t, a table holding its one key obj_tag .. n, becomes raw object n
local function raw_object(t, n)
  raw_n[t] = n
  return setmetatable(t, RawObject)
end

--- raw_text(value) -> the client's JSON text of a raw string or of a raw
-- object not decoded yet, else nil
function M.raw_text(v)
  if type(v) == "string" then
    if byte(v, 1) == 1 and v:find(str_tag, 1, true) == 1 then return raw_text_of(tonumber(v:sub(#str_tag + 1))) end
    return nil
  end
  local n = raw_n[v]
  return n and raw_text_of(n)
end

--- str(v) -> the string a raw string says (decoded now); any other value
-- as it is
function M.str(v)
  local text = type(v) == "string" and byte(v, 1) == 1 and M.raw_text(v)
  if text then return codec.decode(text) end
  return v
end

--- encode_raw(value) -> string, with each M.raw(text) and each raw value
-- written as its text. A marker anywhere else (a raw string joined into
-- a longer one) is an error: the text would be lost.
local tag_len = #raw_json_tag
local inner_tag = raw_json_tag:sub(2) -- (without the quote)
local splice -- (below: cuts made into one string)
local unmark -- (moongate.jscan's, below: the same in one C pass)
function M.encode_raw(value)
  local s = codec.encode(value)
  local i = s:find(inner_tag, 1, true)
  if not i then return s end
  if unmark then
    local out, why = unmark(s, inner_tag, raw_owners)
    if out then return out end
    if why == "gone" then error("a raw value's text is gone (used after its request)") end
    error("a raw value's marker where its text cannot go")
  end
  -- each marker swapped for its text, found by plain search (a pattern
  -- tried at every byte costs more than the encoding itself); cuts: 5 a
  -- cut, s:sub(a, b) to become src:sub(from, to)
  local cuts, c = {}, 0
  while i do
    local q = i - 1 -- the quote before the tag
    local j = byte(s, q) == 34 and byte(s, q - 1) ~= 92 and s:find('"', i + tag_len - 1, true)
    local text = j and s:sub(q + tag_len, j - 1)
    local kind, n = (text or ""):match("^(%l%l%l)(%d+)$")
    local a, b, src, from, to
    if kind == "obj" and byte(s, q - 1) == 123 and s:sub(j + 1, j + 6) == ":true}" then
      a, b = q - 1, j + 6
    elseif kind == "str" then
      a, b = q, j
    elseif text and text:find("^[%d%.eE+%-%[%]]*$") then
      a, b, src, from, to = q, j, text, 1, #text
    elseif s:find("^[so][tb][rj]%d", i + tag_len - 1) then
      -- a raw value joined into a longer string, or copied: a bug that
      -- would send the marker, not the text
      error("a raw value's marker where its text cannot go")
    end
    if a and not src then src, from, to = raw_place(tonumber(n)) end
    if a then
      cuts[c + 1], cuts[c + 2], cuts[c + 3], cuts[c + 4], cuts[c + 5] = a, b, src, from, to
      c = c + 5
    end
    i = s:find(inner_tag, (b or j or i) + 1, true)
  end
  return splice(s, cuts)
end

--- try_encode_raw(value) -> string | nil, why JSON cannot carry it (a
-- number such as 1e999 read as infinity, nesting past the limit)
function M.try_encode_raw(value)
  local ok, s = pcall(M.encode_raw, value)
  if ok then return s end
  return nil, cjson_message(s)
end

local fmt, huge = string.format, math.huge

-- a number cjson would write shorter than it is: the 17 digits that keep it
local function full_number(n)
  if n ~= n or n == huge or n == -huge or tonumber(fmt("%.14g", n)) == n then return n end
  return M.raw(fmt("%.17g", n))
end

-- JSON Schema: does schema s (resolved against root for "$ref") allow an
-- array, and not an object?
local function resolve(s, root)
  local ref = type(s) == "table" and s["$ref"]
  if type(ref) == "string" and type(root) == "table" then
    local name = ref:match("^#/%$defs/([^/]+)$") or ref:match("^#/definitions/([^/]+)$")
    local defs = root["$defs"] or root.definitions
    if name and type(defs) == "table" and type(defs[name]) == "table" then return defs[name] end
  end
  return s
end

local function says(s, what)
  local t = s.type
  if t == what then return true end
  if type(t) == "table" then
    for _, x in ipairs(t) do if x == what then return true end end
  end
  return false
end

-- the schemas a value may match: s itself and its anyOf / oneOf / allOf
local function alternatives(s, root)
  local list = { s }
  for _, k in ipairs { "anyOf", "oneOf", "allOf" } do
    if type(s[k]) == "table" then
      for _, sub in ipairs(s[k]) do
        sub = resolve(sub, root)
        if type(sub) == "table" then list[#list + 1] = sub end
      end
    end
  end
  return list
end

-- copy-on-write: out holds the changed members of orig (or is nil when
-- none changed); fills in the rest and returns it, or orig itself
local function merged(out, orig)
  if not out then return orig end
  for k, x in pairs(orig) do if out[k] == nil then out[k] = x end end
  return out
end

local function typed(v, s, root)
  local tv = type(v)
  if tv == "number" then return full_number(v) end
  if tv ~= "table" then return v end
  s = resolve(s, root)
  local alts = type(s) == "table" and alternatives(s, root) or {}
  if next(v) == nil then
    local array, object = false, false
    for _, a in ipairs(alts) do
      array = array or says(a, "array") or a.items ~= nil or a.prefixItems ~= nil
      object = object or says(a, "object") or a.properties ~= nil
    end
    return (array and not object) and M.empty_array or v
  end
  local out
  for k, x in pairs(v) do
    local sub
    for _, a in ipairs(alts) do
      if type(k) == "number" then
        sub = type(a.prefixItems) == "table" and a.prefixItems[k] or a.items
      else
        sub = type(a.properties) == "table" and a.properties[k] or a.additionalProperties
      end
      if type(sub) == "table" then break end
      sub = nil
    end
    local y = typed(x, sub, root)
    if y ~= x then
      out = out or {}
      out[k] = y
    end
  end
  return merged(out, v)
end

--- typed(value, schema) -> value for encode_raw: each empty table the JSON
-- Schema says is an array (not an object) becomes [], and each number
-- cjson would round is written in full. Tables that change are copies;
-- value itself is left as it was. Without a schema only numbers change.
-- The schema is read only when value holds an empty table (it may be a
-- raw object: reading it decodes it).
local function has_empty(v, depth)
  if next(v) == nil then return true end
  if depth > 200 then return false end
  for _, x in pairs(v) do
    if type(x) == "table" and has_empty(x, depth + 1) then return true end
  end
  return false
end
function M.typed(value, schema)
  if schema ~= nil and not (type(value) == "table" and has_empty(value, 0)) then schema = nil end
  return typed(value, schema, schema)
end

-- the keywords of a JSON Schema that hold a list, and those that hold one
-- schema or a map of them (walked for more of the same)
local list_keys = { required = true, enum = true, anyOf = true, oneOf = true, allOf = true,
  prefixItems = true, type = true, examples = true }
local sub_keys = { items = "one", additionalProperties = "one", ["not"] = "one", ["if"] = "one",
  ["then"] = "one", ["else"] = "one", contains = "one", propertyNames = "one",
  unevaluatedItems = "one", unevaluatedProperties = "one",
  properties = "map", patternProperties = "map", ["$defs"] = "map", definitions = "map",
  dependentSchemas = "map" }

local typed_list

local function schema(s, root)
  if type(s) ~= "table" then return s end
  local out
  local function set(k, y)
    if y ~= s[k] then
      out = out or {}
      out[k] = y
    end
  end
  for k, x in pairs(s) do
    if type(x) == "table" then
      if list_keys[k] then
        if next(x) == nil then
          set(k, M.empty_array)
        elseif k == "anyOf" or k == "oneOf" or k == "allOf" or k == "prefixItems" then
          set(k, typed_list(x, root))
        elseif k == "enum" or k == "examples" then -- values of this schema's type
          set(k, typed_list(x, root, s))
        end
      elseif k == "dependentRequired" then -- a map of lists of names
        local m
        for name, list in pairs(x) do
          if type(list) == "table" and next(list) == nil then m = m or {}; m[name] = M.empty_array end
        end
        set(k, merged(m, x))
      elseif sub_keys[k] == "one" then
        set(k, schema(x, root))
      elseif sub_keys[k] == "map" then
        local m
        for name, sub in pairs(x) do
          local y = schema(sub, root)
          if y ~= sub then m = m or {}; m[name] = y end
        end
        set(k, merged(m, x))
      elseif k == "default" or k == "const" then
        set(k, typed(x, s, root))
      end
    elseif type(x) == "number" then -- minimum, maximum, multipleOf, default, ...
      set(k, full_number(x))
    end
  end
  return merged(out, s)
end

-- a list of schemas, each walked (or, given the schema they are values of,
-- a list of values, each typed by it); copied only if one changed
typed_list = function(list, root, of)
  local out
  for i, sub in ipairs(list) do
    local y
    if of then y = typed(sub, of, root) else y = schema(sub, root) end
    if y ~= sub then out = out or {}; out[i] = y end
  end
  return merged(out, list)
end

--- schema(s) -> a JSON Schema for encode_raw: its empty lists (required,
-- enum, ...) and the empty defaults of its array properties written as [],
-- instead of the {} a decoded-and-encoded schema gets. Copies what
-- changes; s is left as it was.
function M.schema(s)
  local n = raw_n[s]
  if n then -- a raw object: the client's text, as it was, in a raw object of
    -- its own (s itself may be read, and so decoded, before it is written)
    local _, from, to, owner = raw_place(n)
    raw_count = raw_count + 1
    raw_keep(owner, raw_count, from, to)
    return raw_object({ [obj_tag .. raw_count] = true }, raw_count)
  end
  return schema(s, s)
end

--- with(t, key, value) -> a copy of table t (one level) with key set to
-- value; t is left as it was
function M.with(t, key, value)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  out[key] = value
  return out
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

-- A request's top level without decoding the rest -------------------------
-- A passthrough needs a body's model (and a few small fields) to route it;
-- decoding a 170 KB agent request into tables costs more than the rest of
-- the request together. The host's moongate.jscan (src/jscan.c) checks the
-- whole text in one pass and indexes its top level; object() gives a table
-- whose scalars are there at once and whose nested values are decoded the
-- first time they are read. A host without the module decodes all at once.

local has_jscan, jscan = pcall(require, "moongate.jscan")

-- splice(s, cuts) -> s with each cut made (encode_raw): in C, or here
unmark = has_jscan and jscan.unmark
--- _unmark(fn | false) -> the previous one: which unmark encode_raw uses
-- (false: its Lua loop), for a spec that compares the two
function M._unmark(fn)
  local was = unmark
  unmark = fn or nil
  return was
end
splice = has_jscan and jscan.splice or function(s, cuts)
  local out, pos = {}, 1
  for k = 1, #cuts, 5 do
    out[#out + 1] = s:sub(pos, cuts[k] - 1)
    out[#out + 1] = cuts[k + 2]:sub(cuts[k + 3], cuts[k + 4])
    pos = cuts[k + 1] + 1
  end
  out[#out + 1] = s:sub(pos)
  return table.concat(out)
end

-- the array at span sp of text with the values its paths reach left as
-- raw values (specs: a list of {path, kind, when = {key, value, ...}: only
-- in an object whose member key is one of the values}), their places held
-- by owner: decoded by jscan.decode in one pass, as cjson would but for
-- those values
local c_paths = setmetatable({}, { __mode = "k" }) -- specs -> jscan.decode's paths
local function hollow_array(text, sp, specs, owner)
  local paths = c_paths[specs]
  if not paths then
    paths = {}
    for x, h in ipairs(specs) do paths[x] = { h.path[1], h.path[2], kind = h.kind, when = h.when } end
    c_paths[specs] = paths
  end
  -- spans: 4 entries a raw value: from, to, n, its marker (false: none
  -- holds it, a member given twice)
  local v, spans, used = jscan.decode(text, sp.from, sp.to, paths, str_tag, obj_tag, raw_count)
  if not v then return codec.decode(text:sub(sp.from, sp.to)) end -- (cannot happen: the scan checked it)
  raw_count = raw_count + used
  for k = 1, #spans, 4 do
    local n, m = spans[k + 2], spans[k + 3]
    if m then
      if type(m) == "table" then raw_object(m, n) end
      raw_keep(owner, n, spans[k], spans[k + 1])
    end
  end
  return v
end

local function read_span(t, k)
  local mt = getmetatable(t)
  local sp = mt.spans[k]
  if not sp or sp.kind == "scalar" then return nil end
  -- cannot fail: the scan checked this text, nested less deep than here
  local h = has_jscan and mt.hollow and sp.kind == "array" and mt.hollow[k]
  local v
  if h then
    local owner = raw_owner_of[t] or { text = mt.text }
    raw_owner_of[t] = owner
    v = hollow_array(mt.text, sp, h, owner)
  else
    v = codec.decode(mt.text:sub(sp.from, sp.to))
  end
  rawset(t, k, v)
  return v
end

--- object(text [, marker [, once [, hollow]]]) -> obj, marked | nil, why [, key]
-- obj: the top-level JSON object of text, its nested values read when
-- first indexed (a lazy object); marked: some string of the text begins
-- with marker. why: "syntax" (decode(text) says what is wrong), "not_object",
-- "duplicate" (a top-level key given twice: key; without moongate.jscan,
-- only the keys of the list `once` are looked at). hollow: {key = {{path =
-- {name [, name]}, kind = "string" | "object", when = {name, value, ...}},
-- ...}}: in the array at top-level key, the values each path reaches
-- (jscan.decode: through an object or each element of an array) of its
-- kind are raw values (above); with when, only those in an object whose
-- member name is one of the values.
local pre_text, pre_top -- a scan the host made of one text already (prescanned)

--- prescanned(text, top): the next object(text, marker) takes top =
-- {fields, spans, marked, marker = marker} (what jscan.top(text, marker)
-- gives, from the host's own scan: src/fast.c) instead of scanning again
function M.prescanned(text, top)
  pre_text, pre_top = text, top
end

function M.object(text, marker, once, hollow)
  if has_jscan then
    local fields, spans, third
    if pre_text == text and pre_top.marker == marker then
      fields, spans, third = pre_top[1], pre_top[2], pre_top[3]
    else
      fields, spans, third = jscan.top(text, marker)
    end
    pre_text, pre_top = nil, nil
    if fields then
      setmetatable(fields, { __index = read_span, spans = spans, text = text, hollow = hollow })
      return fields, third -- marked
    end
    if spans == "duplicate" then return nil, "duplicate", third end -- the key
    -- refused: a text only cjson's leniency takes ("1.") decodes below
  end
  local v = M.decode(text)
  if v == nil then return nil, "syntax" end
  if type(v) ~= "table" or not string.find(text, "^%s*{") then return nil, "not_object" end
  local dup = once and M.duplicate_key(text, once)
  if dup then return nil, "duplicate", dup end
  return v, marker ~= nil and string.find(text, '"' .. marker, 1, true) ~= nil
end

--- raw_top(obj, key) -> a raw string (above) for the top-level string at
-- key of a lazy object, when it is not empty and has its text; else nil.
-- (Its value as read stays in obj: a passthrough never needs the marker.)
function M.raw_top(t, k)
  local mt = getmetatable(t)
  local sp = mt and mt.__index == read_span and mt.spans[k]
  if not (sp and sp.kind == "scalar" and sp.to - sp.from > 1 and byte(mt.text, sp.from) == 34) then return nil end
  local owner = raw_owner_of[t] or { text = mt.text }
  raw_owner_of[t] = owner
  raw_count = raw_count + 1
  raw_keep(owner, raw_count, sp.from, sp.to)
  return str_tag .. raw_count
end

--- span_kind(obj, key) -> "array" | "object" for a nested value of a lazy
-- object not read yet (its element count second), else nil
function M.span_kind(t, k)
  if rawget(t, k) ~= nil then return nil end
  local mt = getmetatable(t)
  local sp = mt and mt.spans and mt.spans[k]
  if sp and sp.kind ~= "scalar" then return sp.kind, sp.n end
end

--- whole(obj) -> obj with every nested value read (for pairs(): a
-- translation walks every field)
function M.whole(t)
  local mt = type(t) == "table" and getmetatable(t)
  if mt and mt.__index == read_span then
    for k, sp in pairs(mt.spans) do
      if sp.kind ~= "scalar" and rawget(t, k) == nil then read_span(t, k) end
    end
    setmetatable(t, nil)
  end
  return t
end

-- Top-level keys of an object text --------------------------------------

local find, sub = string.find, string.sub

-- the index of the quote that ends the string opening at i: the next quote
-- not escaped (an even number of backslashes before it); plain finds, which
-- LuaJIT runs as a fast search, not a pattern match per byte
local function string_end(s, i)
  local j = i + 1
  while true do
    local k = find(s, '"', j, true)
    if not k then return nil end
    local b = k - 1
    while byte(s, b) == 92 do b = b - 1 end
    if (k - 1 - b) % 2 == 0 then return k end
    j = k + 1
  end
end

-- the index of the last byte of the value starting at i
local function value_end(s, i)
  local c = byte(s, i)
  if c == 34 then return string_end(s, i) end
  if c == 123 or c == 91 then
    local depth, j = 0, i
    while true do
      local k = find(s, '["{}%[%]]', j)
      if not k then return nil end
      local b = byte(s, k)
      if b == 34 then
        k = string_end(s, k)
        if not k then return nil end
      elseif b == 123 or b == 91 then
        depth = depth + 1
      else
        depth = depth - 1
        if depth == 0 then return k end
      end
      j = k + 1
    end
  end
  local k = find(s, "[,}%s]", i)
  return k and k - 1 or #s
end

--- top_level(text, names) -> {name = {count = n, from = i, to = j}} for
-- each top-level key of the object text that names (a set) holds: how often
-- it occurs and where its first value is (text:sub(from, to)). Keys are
-- compared as JSON reads them (an escaped "mo\u0064el" is "model"). text
-- must be a JSON object that decode() accepted.
function M.top_level(s, names, first_only)
  local out = {}
  local i = find(s, "{", 1, true)
  while i do
    local k = find(s, "[^%s,{]", i)
    if not k or byte(s, k) ~= 34 then break end
    local e = string_end(s, k)
    local key = sub(s, k + 1, e - 1)
    if find(key, "\\", 1, true) then key = M.decode(sub(s, k, e)) end
    local v = find(s, "[^%s:]", e + 1)
    local ve = value_end(s, v)
    if names[key] then
      local r = out[key]
      if r then r.count = r.count + 1 else out[key] = { count = 1, from = v, to = ve } end
      if first_only then break end
    end
    i = ve and ve + 1
  end
  return out
end

-- does the text write a letter as an escape (\u0041 .. \u007a), which may
-- spell a key name otherwise than plainly?
local function escaped_letter(s)
  local i = 1
  while true do
    local k = find(s, "\\u00", i, true)
    if not k then return false end
    local c = byte(s, k + 4)
    if c and c >= 52 and c <= 55 then return true end -- "4" .. "7"
    i = k + 4
  end
end

--- duplicate_key(text, names) -> the first of names (a list) that the
-- object text holds twice at its top level, or nil. Cheap when no name
-- occurs twice anywhere and no letter is written escaped: plain searches
-- then, about 0.5 ms a MB; else one walk over the top level.
function M.duplicate_key(s, names)
  local suspect = escaped_letter(s)
  if not suspect then
    for _, name in ipairs(names) do
      local q = '"' .. name .. '"'
      local a = find(s, q, 1, true)
      if a and find(s, q, a + #q, true) then suspect = true break end
    end
  end
  if not suspect then return nil end
  local set = {}
  for _, name in ipairs(names) do set[name] = true end
  local seen = M.top_level(s, set)
  for _, name in ipairs(names) do
    if seen[name] and seen[name].count > 1 then return name end
  end
end

--- set_top(text, name, json_value) -> text with its top-level key name
-- set to json_value (JSON text): replaced where it is, else added first;
-- every other byte as it was
function M.set_top(s, name, value)
  local out = M.replace_top(s, name, value)
  if out then return out end
  local i = find(s, "{", 1, true)
  local empty = find(s, "^%s*}", i + 1)
  return sub(s, 1, i) .. M.encode(name) .. ":" .. value .. (empty and "" or ",") .. sub(s, i + 1)
end

--- replace_top(text, name, json_value [, obj]) -> text with the value of
-- its top-level key name replaced by json_value (JSON text), the rest byte
-- for byte as it was; nil when the key is not there. obj: the lazy object
-- object() made of text, which knows where each value is (no search then)
function M.replace_top(s, name, value, obj)
  local mt = obj and getmetatable(obj)
  local sp = mt and mt.text == s and mt.spans and mt.spans[name]
  if sp then return sub(s, 1, sp.from - 1) .. value .. sub(s, sp.to + 1) end
  local r = M.top_level(s, { [name] = true }, true)[name]
  if not r then return nil end
  return sub(s, 1, r.from - 1) .. value .. sub(s, r.to + 1)
end

--- utf8(text) -> text with U+FFFD for each ill-formed UTF-8 sequence (the
-- text itself when it has none). A translation runs an upstream's answers
-- through it, so that a client never gets raw bytes in a JSON string;
-- passthrough leaves them as they came.
local FFFD = "\239\191\189"
local function lua_utf8(s)
  if not s:find("[\128-\255]") then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = s:byte(i)
    local want, lo, hi = 0, 0x80, 0xbf
    if c < 0x80 then want = 1
    elseif c >= 0xc2 and c <= 0xdf then want = 2
    elseif c >= 0xe0 and c <= 0xef then want = 3
      if c == 0xe0 then lo = 0xa0 elseif c == 0xed then hi = 0x9f end
    elseif c >= 0xf0 and c <= 0xf4 then want = 4
      if c == 0xf0 then lo = 0x90 elseif c == 0xf4 then hi = 0x8f end
    end
    local seen, ok = 1, want > 0
    for k = 1, want - 1 do
      local b = s:byte(i + k)
      if not b or b < lo or b > hi then ok = false break end
      lo, hi, seen = 0x80, 0xbf, k + 1
    end
    if ok then out[#out + 1] = s:sub(i, i + want - 1); i = i + want
    else out[#out + 1] = FFFD; i = i + seen end
  end
  return table.concat(out)
end
M.utf8 = has_jscan and jscan.utf8 or lua_utf8
M.lua_utf8 = lua_utf8 -- (for the specs: the same answers as the host's)

return M
