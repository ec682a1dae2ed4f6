-- moongate.jscan (src/jscan.c): the one-pass JSON checker a passthrough
-- routes by. Whatever it accepts, lua-cjson (moongate.json's decoder) must
-- decode to the same top level; what it refuses the caller decodes with
-- cjson for cjson's own words, so a refusal is never wrong, only slower.
local jscan = require "moongate.jscan"
local cjson = require("cjson").new()
cjson.decode_invalid_numbers(false)
cjson.decode_max_depth(200)

local function cj(text)
  local ok, v = pcall(cjson.decode, text)
  if ok then return v end
end

-- jscan's view of the top level, rebuilt as cjson would decode it
local function rebuilt(text)
  local fields, spans = jscan.top(text)
  if not fields then return nil, spans end
  local out = {}
  for k, v in pairs(fields) do out[k] = v end
  for k, sp in pairs(spans) do
    local v = cjson.decode(text:sub(sp.from, sp.to))
    if sp.kind == "scalar" then
      -- where a scalar is: its text decodes to the value given
      assert(v == fields[k] or (v ~= v and fields[k] ~= fields[k]), "the span of " .. k)
      goto next
    end
    out[k] = v
    local n = 0
    for _ in pairs(out[k]) do n = n + 1 end
    assert.equal(n, sp.n, "count of " .. k)
    assert.equal(sp.kind == "array" and "[" or "{", text:sub(sp.from, sp.from))
    ::next::
  end
  return out
end

local same = require "support.same"

describe("moongate.jscan", function()
  it("indexes a request's top level: scalars decoded, nested values as spans", function()
    local text = ' {"model":"gpt-\\u00e9","stream":true,"n":-1.5e2,"user":null,"messages":[{"role":"user"},[],3],'
      .. '"metadata":{"a":1,"b":{}},"x\\"y":"q\\n\\ud83d\\ude00"} '
    local f, s, marked = jscan.top(text)
    assert.equal("gpt-é", f.model)
    assert.is_true(f.stream)
    assert.equal(-150, f.n)
    assert.equal(cjson.null, f.user)
    assert.equal("q\n😀", f['x"y'])
    assert.same({ kind = "array", from = 72, to = 93, n = 3 }, s.messages)
    assert.equal('[{"role":"user"},[],3]', text:sub(s.messages.from, s.messages.to))
    assert.equal(2, s.metadata.n)
    assert.equal('"gpt-\\u00e9"', text:sub(s.model.from, s.model.to))
    assert.equal("scalar", s.model.kind)
    assert.is_false(marked)
  end)

  it("says when a string begins with the marker", function()
    assert.is_true(select(3, jscan.top('{"a":[{"b":"mg1~xyz"}]}', "mg1~")))
    assert.is_false(select(3, jscan.top('{"a":[{"b":"x mg1~xyz"}]}', "mg1~")))
    assert.is_true(select(3, jscan.top('{"mg1~":1}', "mg1~")))
  end)

  it("refuses a key given twice at the top level, however it is written", function()
    assert.same({ nil, "duplicate", "model" }, { jscan.top('{"model":"a","x":{"model":1},"model":"b"}') })
    assert.same({ nil, "duplicate", "model" }, { jscan.top('{"model":"a","mo\\u0064el":"b"}') })
    assert.same({ nil, "duplicate", "tools" }, { jscan.top('{"tools":[],"tools":{}}') })
    assert.truthy(jscan.top('{"a":{"k":1,"k":2}}')) -- nested: the upstream's to judge
  end)

  it("refuses what is not a JSON object, as cjson does", function()
    local bad = { "", " ", "[]", '"x"', "1", "{", "}", '{"a"}', '{"a":}', '{"a":1,}', '{"a":1 "b":2}', '{"a":01}',
      '{"a":-}', '{"a":.5}', '{"a":1e}', '{"a":"\\ud800"}', '{"a":"\\udc00"}', '{"a":"\\ud800\\u0041"}', '{"a":"\\x"}',
      '\f{"a":1}', '{"a":1}\v', '{"a":1} x', '{"a":+1}', '{"a":0x10}', '{"a":Infinity}', '{"a":NaN}', '[1,]',
      '{"a":[1,2,]}', '{"a":tru}', '{"a":00}', '{"a":"\\uZZZZ"}', '{"a":1.5.5}', '{"a":--1}', '{"a":"x\0y"}',
      '{"a":1}{', '{"a":"abc', '{"a":"\\', '{"a":"\\u12', '{"a":[}', '{"a":{]}', '{"a" 1}', "{'a':1}" }
    for _, t in ipairs(bad) do
      assert.is_nil(jscan.top(t), t)
    end
    -- lua-cjson's leniencies it does not share (a caller decodes those with cjson)
    for _, t in ipairs { '{"a":1.}', '{"a":1}\0' } do assert.is_nil(jscan.top(t), t) end
    assert.equal("not_object", select(2, jscan.top("[1]")))
    assert.equal("syntax", select(2, jscan.top('{"a":}')))
  end)

  it("takes nesting to 200 as cjson does, not deeper", function()
    local function nest(n) return '{"a":' .. string.rep("[", n - 1) .. string.rep("]", n - 1) .. "}" end
    assert.truthy(jscan.top(nest(200)))
    assert.truthy(cj(nest(200)))
    assert.is_nil(jscan.top(nest(201)))
    assert.is_nil(cj(nest(201)))
  end)

  it("agrees with cjson on generated texts and on every mutation of them", function()
    math.randomseed(7)
    local atoms = { '0', '-0', '12', '-3.25', '1e5', '2E-3', '6.02e+23', 'true', 'false', 'null', '""', '"a b"',
      '"\\"q\\""', '"\\\\"', '"\\/"', '"\\b\\f\\n\\r\\t"', '"\\u00e9"', '"\\ud83d\\ude00"', '"é"', '"x\1y"', '[]', '{}' }
    local function gen(d)
      local r = math.random(1, d > 3 and 1 or 3)
      if r == 1 then return atoms[math.random(#atoms)] end
      local n, parts = math.random(0, 4), {}
      if r == 2 then
        for i = 1, n do parts[i] = gen(d + 1) end
        return "[" .. table.concat(parts, math.random(2) == 1 and "," or " , ") .. "]"
      end
      for i = 1, n do parts[i] = string.format('"k%d"%s:%s', i, math.random(2) == 1 and " " or "", gen(d + 1)) end
      return "{" .. table.concat(parts, ",") .. "}"
    end
    local chars = { "", "{", "}", "[", "]", ",", ":", '"', "\\", "u", "0", "-", ".", "e", " ", "\0", "\n", "\f", "a", "d8" }
    local accepted, refused, cjson_only = 0, 0, 0
    for round = 1, 1500 do
      local parts = {}
      for i = 1, math.random(1, 5) do parts[i] = string.format('"f%d":%s', i, gen(1)) end
      local text = "{" .. table.concat(parts, ",") .. "}"
      local texts = { text }
      for _ = 1, 6 do -- a byte replaced, inserted or removed
        local at = math.random(1, #text)
        local c = chars[math.random(#chars)]
        local how = math.random(3)
        texts[#texts + 1] = how == 1 and text:sub(1, at - 1) .. c .. text:sub(at + 1)
          or how == 2 and text:sub(1, at - 1) .. c .. text:sub(at) or text:sub(1, at - 1) .. text:sub(at + 1)
      end
      for i, t in ipairs(texts) do
        local mine, why = rebuilt(t)
        local theirs = cj(t)
        if mine then
          accepted = accepted + 1
          assert(type(theirs) == "table", "jscan accepted what cjson refuses: " .. t)
          assert(same(mine, theirs), "a different top level: " .. t)
        else
          refused = refused + 1
          if i == 1 then assert(why == "duplicate", "jscan refused valid JSON: " .. t) end
          if theirs ~= nil and why ~= "duplicate" then cjson_only = cjson_only + 1 end
        end
      end
    end
    assert.is_true(accepted > 2000 and refused > 2000, accepted .. " " .. refused)
    -- only cjson's leniencies (1., a NUL after the end) may pass there alone
    assert.is_true(cjson_only < refused / 20, cjson_only .. " of " .. refused)
  end)
end)

describe("jscan.decode", function()
  local STR, OBJ = "\1t-str", "\1t-obj"
  -- jscan.decode's answer with its spans as tables {from, to, n, marker}
  local function decode(text, from, to, paths, base)
    local v, flat, used = jscan.decode(text, from, to, paths, STR, OBJ, base or 0)
    if v == nil then return nil end
    assert.equal(0, #flat % 4)
    local spans, orphans = {}, 0
    for k = 1, #flat, 4 do
      if flat[k + 3] then
        spans[#spans + 1] = { from = flat[k], to = flat[k + 1], n = flat[k + 2], marker = flat[k + 3] }
      else
        orphans = orphans + 1
      end
    end
    return v, spans, used, orphans
  end
  -- the array, each marker swapped back for what its span decodes to:
  -- must be what cjson decodes -> the spans
  local function rebuilt(text, key, paths, want_n)
    local _, top = jscan.top(text)
    local sp = top[key]
    local v, spans, used = decode(text, sp.from, sp.to, paths, 10)
    assert.is_table(v, text)
    local seen = {}
    for _, s in ipairs(spans) do
      assert.is_true(s.n > 10 and s.n <= 10 + used and not seen[s.n])
      seen[s.n] = true
      local value = cjson.decode(text:sub(s.from, s.to))
      -- find the marker in v and put the value there
      local function swap(t)
        for k, x in pairs(t) do
          if x == s.marker then t[k] = value return true end
          if type(x) == "table" and swap(x) then return true end
        end
      end
      if type(s.marker) == "table" then
        assert.same({ [OBJ .. s.n] = true }, s.marker)
        assert.equal("table", type(value))
        assert.is_not_nil(next(value), "an empty object left raw")
      else
        assert.equal(STR .. s.n, s.marker)
        assert.equal("string", type(value))
      end
      assert.is_true(swap(v), "the marker is in the array")
    end
    assert.same(cjson.decode(text)[key], v)
    if want_n then assert.equal(want_n, #spans, text) end
    return spans
  end

  it("decodes an array as cjson does", function()
    local texts = { '[]', ' [ 1 , "a" ] ', '[{"b":1,"a":2,"c":{"z":null,"y":[true,false]}},"\\u00e9\\ud83d\\ude00\\n\\/"]',
      '[-0,1e400,-1.5E-3,12345678901234567890,0.1]', '[{"k":1,"k":2,"\\u006b":3}]', '[{},[],[[]],{"":""}]' }
    for _, t in ipairs(texts) do
      local v = decode(t, 1, #t, {})
      assert.is_true(same(cjson.decode(t), v), t)
    end
    -- a span inside a longer text
    local text = '{"x":1,"a":[1,{"b":"c"}],"y":2}'
    local _, top = jscan.top(text)
    assert.same({ 1, { b = "c" } }, (decode(text, top.a.from, top.a.to, {})))
  end)

  it("answers nil where the text is no array, or not JSON", function()
    for _, t in ipairs { '{}', '1', '[1,]', '[1 2]', '["\\ud800"]', '["\\x"]', '[01]', '[tru]', '[1', '["a\0b"]', '[{"a"}]',
      '[{"a":1,}]', '[1] x', '[1.]', '[' .. string.rep("[", 200) .. string.rep("]", 200) .. ']' } do
      assert.is_nil((decode(t, 1, #t, {})), t)
    end
    local deep = '[' .. string.rep("[", 199) .. string.rep("]", 199) .. ']'
    assert.is_table((decode(deep, 1, #deep, {})))
  end)

  it("leaves a tool's schema and description raw, not an empty schema", function()
    local text = '{"tools":[{"name":"a","description":"finds \\"x\\"","input_schema":{"type":"object"}},'
      .. '{"description":7,"input_schema":{ }},{"description":"d","description":"e"},'
      .. '{"type":"function","function":{"description":"f","parameters":{"type":"object"}}}]}'
    local spans = rebuilt(text, "tools", { { "input_schema", kind = "object" }, { "description", kind = "string" } }, 3)
    -- a's two, and the third's last description (cjson keeps the last one)
    assert.equal('"finds \\"x\\""', text:sub(spans[1].from, spans[1].to))
    assert.equal('{"type":"object"}', text:sub(spans[2].from, spans[2].to))
    assert.equal('"e"', text:sub(spans[3].from, spans[3].to))
    -- through an object, two names under the same first one
    rebuilt(text, "tools", { { "function", "parameters", kind = "object" }, { "function", "description", kind = "string" } }, 2)
  end)

  it("leaves a value raw only in an object whose member `when` names says so", function()
    local text = '{"messages":[{"role":"user","content":"u"},{"role":"tool","content":"t"},{"content":"x","role":"system"},'
      .. '{"role":"assistant","content":"a"},{"content":"n"},{"role":7,"content":"r"}]}'
    local spans = rebuilt(text, "messages", { { "content", kind = "string", when = { "role", "tool", "system" } } }, 2)
    assert.equal('"t"', text:sub(spans[1].from, spans[1].to))
    assert.equal('"x"', text:sub(spans[2].from, spans[2].to)) -- (its role after it)
    text = '{"messages":[{"role":"user","content":[{"type":"tool_result","content":"a \\"quoted\\" \\u00e9\\/x"},'
      .. '{"type":"tool_result","content":[{"type":"text","text":"t"}]},{"type":"text","text":"hi","content":"no"},'
      .. '{"content":"","type":"tool_result"}]},[],{"content":{"content":"x","type":"tool_result"}}]}'
    spans = rebuilt(text, "messages", { { "content", "content", kind = "string", when = { "type", "tool_result" } } }, 3)
    assert.equal('"a \\"quoted\\" \\u00e9\\/x"', text:sub(spans[1].from, spans[1].to))
  end)

  it("keeps what cjson keeps of a member given twice, however it is written: the last", function()
    local text = '{"m":[{"content":[{"content":"A"}],"content":[{"content":"B"}]},{"c\\u006fntent":"x","content":"C"},'
      .. '{"content":"D","content":7}]}'
    local paths = { { "content", "content", kind = "string" }, { "content", kind = "string" } }
    local spans = rebuilt(text, "m", paths)
    local texts = {}
    for _, s in ipairs(spans) do texts[#texts + 1] = text:sub(s.from, s.to) end
    -- A went with its array (its span says so: false), D was given again as 7
    assert.same({ '"B"', '"C"' }, texts)
    local _, top = jscan.top(text)
    assert.equal(1, select(4, decode(text, top.m.from, top.m.to, paths)))
  end)

  it("gives back what cjson decodes, on generated arrays", function()
    math.randomseed(11)
    local atoms = { '0', '-3.25', '1e5', 'true', 'null', '""', '"a b"', '"\\"q\\""', '"\\\\"', '"\\u00e9"', '"\\ud83d\\ude00"',
      '"x]}"', '[]', '{}', '{ }' }
    local function gen(d)
      local r = math.random(1, d > 3 and 1 or 3)
      if r == 1 then return atoms[math.random(#atoms)] end
      local parts = {}
      if r == 2 then
        for i = 1, math.random(0, 4) do parts[i] = gen(d + 1) end
        return "[" .. table.concat(parts, math.random(2) == 1 and "," or " , ") .. "]"
      end
      local keys = { "k", "c", "s", "x", "t" }
      for i = 1, math.random(0, 3) do
        parts[i] = string.format('"%s%d"%s:%s', keys[math.random(#keys)], i, math.random(2) == 1 and " " or "", gen(d + 1))
      end
      if math.random(2) == 1 then table.insert(parts, math.random(#parts + 1), '"s":' .. gen(d + 1)) end
      if math.random(3) == 1 then table.insert(parts, math.random(#parts + 1), '"t":' .. (math.random(2) == 1 and '"y"' or '"n"')) end
      if math.random(2) == 1 then
        local inner = {}
        for i = 1, math.random(0, 3) do inner[i] = gen(d + 1) end
        table.insert(parts, math.random(#parts + 1), '"c" :\t[' .. table.concat(inner, ",") .. "]")
      elseif math.random(3) == 1 then
        table.insert(parts, math.random(#parts + 1), '"c":' .. gen(d + 1))
      end
      -- a path's name given twice, or written with an escape
      if math.random(6) == 1 then
        table.insert(parts, math.random(#parts + 1), (math.random(2) == 1 and '"s":' or '"\\u0073":') .. gen(d + 1))
      end
      return "{" .. table.concat(parts, ",") .. "}"
    end
    local raw = 0
    for _ = 1, 2000 do
      local items = {}
      for i = 1, math.random(0, 6) do items[i] = gen(1) end
      local text = '{"a": [' .. table.concat(items, ", ") .. ' ] }'
      local _, top = jscan.top(text)
      local want = cjson.decode(text).a
      assert(same(want, (decode(text, top.a.from, top.a.to, {}))), "a different array: " .. text)
      for _, paths in ipairs { { { "s", kind = "object" } }, { { "s", kind = "string" } }, { { "c", "s", kind = "string" } },
        { { "c", "s", kind = "object", when = { "t", "y" } } }, { { "s", kind = "object" }, { "c", kind = "string" } },
        { { "c", "s", kind = "string" }, { "c", "x", kind = "object" }, { "s", kind = "string", when = { "t", "y", "n" } } } } do
        raw = raw + #rebuilt(text, "a", paths)
      end
    end
    assert.is_true(raw > 1000, raw)
  end)
end)

describe("jscan.utf8", function()
  local json = require "moongate.json"
  local FFFD = "\239\191\189"

  it("leaves well-formed text as it is, the same string", function()
    for _, s in ipairs { "", "plain", "caf\195\169 \226\130\172 \240\159\152\128", "\244\143\191\191" } do
      assert.equal(s, jscan.utf8(s))
    end
  end)

  it("writes one U+FFFD for each ill-formed sequence, as Unicode's maximal subparts", function()
    local cases = {
      { "a\255b", "a" .. FFFD .. "b" },
      { "\226\130", FFFD },                                  -- cut short: one
      { "\226\130x", FFFD .. "x" },
      { "\192\175", FFFD .. FFFD },                          -- overlong '/'
      { "\237\160\128", FFFD .. FFFD .. FFFD },              -- a surrogate
      { "\244\144\128\128", FFFD .. FFFD .. FFFD .. FFFD },  -- past U+10FFFF
      { "\240\159\152", FFFD },
      { "ok\128\128ok", "ok" .. FFFD .. FFFD .. "ok" },
    }
    for _, c in ipairs(cases) do
      assert.equal(c[2], jscan.utf8(c[1]))
      assert.equal(c[2], json.lua_utf8(c[1])) -- a host without the module: the same
    end
  end)

  it("agrees with the pure Lua version on random bytes", function()
    math.randomseed(7)
    for _ = 1, 3000 do
      local t = {}
      for i = 1, math.random(0, 12) do
        t[i] = string.char(math.random() < 0.5 and math.random(0x80, 0xff) or math.random(0x20, 0x7e))
      end
      local s = table.concat(t)
      local fixed = jscan.utf8(s)
      assert.equal(json.lua_utf8(s), fixed)
      assert.equal(fixed, jscan.utf8(fixed)) -- the result is well-formed
    end
  end)
end)
