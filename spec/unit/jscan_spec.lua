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

local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b or (a ~= a and b ~= b) end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

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

describe("jscan.hollow", function()
  local TAG = "\\u0001t-"
  -- jscan.hollow with its spans as tables: {from, to, p, i, j (nil: a
  -- path of one)}, from its flat list of 5 numbers a span
  local function hollow(...)
    local h, flat = jscan.hollow(...)
    if not h then return h end
    assert.equal(0, #flat % 5)
    local out = {}
    for k = 1, #flat / 5 do
      local o = 5 * (k - 1)
      out[k] = { from = flat[o + 1], to = flat[o + 2], p = flat[o + 3], i = flat[o + 4],
        j = flat[o + 5] >= 0 and flat[o + 5] or nil }
    end
    return h, out
  end
  -- the array text:sub(from, to) rebuilt from hollow()'s answer for paths
  -- (each a list of names with a kind): its markers swapped back for what
  -- their spans decode to -> the array, how many spans
  local function rebuilt_paths(text, from, to, paths)
    local hollowed, spans = hollow(text, from, to, paths, TAG, 10)
    if not hollowed then return cjson.decode(text:sub(from, to)), 0 end
    local v, last = cjson.decode(hollowed), 0
    for k, sp in ipairs(spans) do
      assert.is_true(sp.from > last, "spans in text order")
      last = sp.to
      local path = paths[sp.p]
      local parent = v[sp.i]
      if sp.j then parent = parent[path[1]] end
      if sp.j and sp.j > 0 then parent = parent[sp.j] end
      local name = path[#path]
      local value = cjson.decode(text:sub(sp.from, sp.to))
      if path.kind == "object" then
        assert.same({ ["\1t-obj" .. (10 + k)] = true }, parent[name])
        assert.equal("table", type(value))
        assert.is_not_nil(next(value), "an empty object hollowed")
      else
        assert.equal("\1t-str" .. (10 + k), parent[name])
        assert.equal("string", type(value))
      end
      parent[name] = value
    end
    return v, #spans
  end
  local function rebuilt_array(text, from, to, path, kind)
    return rebuilt_paths(text, from, to, { { path[1], path[2], kind = kind } })
  end
  -- the top-level array `key` of text, hollowed for paths: n values
  -- reached, the array as cjson decodes it -> the spans
  local function reaches(text, key, paths, n)
    local _, spans = jscan.top(text)
    local sp = spans[key]
    local v, got = rebuilt_paths(text, sp.from, sp.to, paths)
    assert.equal(n, got)
    assert.same(cjson.decode(text)[key], v)
    return select(2, hollow(text, sp.from, sp.to, paths, TAG, 0))
  end

  it("walks several paths at once: a tool's schema and description", function()
    local text = '{"tools":[{"name":"a","description":"finds \\"x\\"","input_schema":{"type":"object"}},'
      .. '{"description":7,"input_schema":{"type":"object"}},{"description":"d","description":"e"},'
      .. '{"type":"function","function":{"description":"f","parameters":{"type":"object"}}}]}'
    -- a's two, the second's schema (its description is no string); the third names one twice
    local got = reaches(text, "tools", { { "input_schema", kind = "object" }, { "description", kind = "string" } }, 3)
    assert.same({ 2, 1, 1 }, { got[1].p, got[2].p, got[3].p })
    -- through an object, two names under the same first one
    reaches(text, "tools", { { "function", "parameters", kind = "object" }, { "function", "description", kind = "string" } }, 2)
  end)

  it("leaves each tool's input_schema as a span, and nothing else", function()
    local text = '{"tools":[{"name":"a","input_schema":{"type":"object","properties":{"x":{"type":"string"}}}},'
      .. '{"name":"b","input_schema":{}},{"name":"c"},7,{"name":"d","input_schema" : { "type" : "object" } },'
      .. '{"name":"e","input_sch\\u0065ma":{"type":"object"}},{"input_schema":{"a":1},"input_schema":{"b":2}}]}'
    local _, spans = jscan.top(text)
    local sp = spans.tools
    local hollowed, got = hollow(text, sp.from, sp.to, { { "input_schema", kind = "object" } }, TAG, 0)
    assert.equal(2, #got) -- a and d: b's is empty, e's key escaped, the last one's given twice
    assert.same({ 1, 5 }, { got[1].i, got[2].i })
    assert.is_nil(got[1].j)
    assert.equal('{"type":"object","properties":{"x":{"type":"string"}}}', text:sub(got[1].from, got[1].to))
    assert.equal('{ "type" : "object" }', text:sub(got[2].from, got[2].to))
    assert.matches('"input_schema":{"\\u0001t-obj1":true}', hollowed, 1, true)
    assert.matches('"input_schema" : {"\\u0001t-obj2":true} }', hollowed, 1, true)
    assert.same(cjson.decode(text).tools, (rebuilt_array(text, sp.from, sp.to, { "input_schema" }, "object")))
    -- nothing reached: nil
    assert.is_nil(hollow(text, sp.from, sp.to, { { "nope", kind = "object" } }, TAG, 0))
  end)

  it("leaves each tool result's string content as a span, two levels down", function()
    local text = '{"messages":[{"role":"user","content":"top-level string: not reached"},'
      .. '{"role":"user","content":[{"type":"tool_result","content":"a \\"quoted\\" \\u00e9\\/x"},'
      .. '{"type":"tool_result","content":[{"type":"text","text":"t"}]},{"type":"text","text":"hi"},'
      .. '{"type":"tool_result","content":""}]},[],{"content":{"content":"x"}}]}'
    -- the two tool results' strings, and "x" through an object
    local got = reaches(text, "messages", { { "content", "content", kind = "string" } }, 3)
    assert.same({ 2, 1 }, { got[1].i, got[1].j })
    assert.same({ 2, 4 }, { got[2].i, got[2].j })
    assert.equal('"a \\"quoted\\" \\u00e9\\/x"', text:sub(got[1].from, got[1].to))
  end)

  it("goes through an object on the way (an OpenAI tool's function.parameters)", function()
    local text = '{"tools":[{"type":"function","function":{"name":"a","parameters":{"type":"object"}}},'
      .. '{"type":"function","function":{"name":"b"}},{"function":[{"parameters":{"x":1}}]}]}'
    -- through the object of the first, the array of the third
    local got = reaches(text, "tools", { { "function", "parameters", kind = "object" } }, 2)
    assert.same({ 1, 0 }, { got[1].i, got[1].j })
    assert.same({ 3, 1 }, { got[2].i, got[2].j })
  end)

  it("takes nothing through a member given twice (cjson keeps the last one)", function()
    local text = '{"messages":[{"role":"user","content":[{"type":"tool_result","content":"A"}],'
      .. '"content":[{"type":"text","content":"B"}]},{"content":[{"content":"C"}]}]}'
    reaches(text, "messages", { { "content", "content", kind = "string" } }, 1) -- C alone
    -- a key written with an escape may be the same name: nothing taken there
    text = '{"messages":[{"content":[{"content":"A"}],"cont\\u0065nt":[{"content":"B"}]},{"content":[{"content":"C"}]}]}'
    reaches(text, "messages", { { "content", "content", kind = "string" } }, 1)
    local obj = '{"tools":[{"function":{"parameters":{"a":1}},"function":{"parameters":{"b":2}}}]}'
    local _, spans = jscan.top(obj)
    assert.is_nil(hollow(obj, spans.tools.from, spans.tools.to, { { "function", "parameters", kind = "object" } }, TAG, 0))
  end)

  it("gives back what cjson decodes, on generated arrays", function()
    math.randomseed(11)
    local atoms = { '0', '-3.25', 'true', 'null', '""', '"a b"', '"\\"q\\""', '"\\\\"', '"\\u00e9"', '"x]}"', '[]', '{}' }
    local function gen(d)
      local r = math.random(1, d > 3 and 1 or 3)
      if r == 1 then return atoms[math.random(#atoms)] end
      local parts = {}
      if r == 2 then
        for i = 1, math.random(0, 4) do parts[i] = gen(d + 1) end
        return "[" .. table.concat(parts, math.random(2) == 1 and "," or " , ") .. "]"
      end
      local keys = { "k", "c", "s", "x" }
      for i = 1, math.random(0, 3) do
        parts[i] = string.format('"%s%d"%s:%s', keys[math.random(#keys)], i, math.random(2) == 1 and " " or "", gen(d + 1))
      end
      -- the path's names, each at most once (a name given twice is never hollowed: above)
      if math.random(2) == 1 then table.insert(parts, math.random(#parts + 1), '"s":' .. gen(d + 1)) end
      if math.random(2) == 1 then
        local inner = {}
        for i = 1, math.random(0, 3) do inner[i] = gen(d + 1) end
        table.insert(parts, math.random(#parts + 1), '"c" :\t[' .. table.concat(inner, ",") .. "]")
      elseif math.random(3) == 1 then
        table.insert(parts, math.random(#parts + 1), '"c":' .. gen(d + 1))
      end
      -- a path's name given twice (nothing taken through it, or of it)
      if math.random(6) == 1 then
        table.insert(parts, math.random(#parts + 1), (math.random(2) == 1 and '"s":' or '"c":') .. gen(d + 1))
      end
      return "{" .. table.concat(parts, ",") .. "}"
    end
    local hollowed = 0
    for _ = 1, 2000 do
      local items = {}
      for i = 1, math.random(0, 6) do items[i] = gen(1) end
      local text = '{"a": [' .. table.concat(items, ", ") .. ' ] }'
      local _, spans = jscan.top(text)
      local sp = spans.a
      local want = cjson.decode(text).a
      for _, case in ipairs { { { "s" }, "object" }, { { "s" }, "string" }, { { "c", "s" }, "string" }, { { "c", "s" }, "object" } } do
        local v, n = rebuilt_array(text, sp.from, sp.to, case[1], case[2])
        assert(same(v, want), "a different array: " .. text)
        hollowed = hollowed + n
      end
      for _, paths in ipairs { { { "s", kind = "object" }, { "c", kind = "string" } },
        { { "c", "s", kind = "string" }, { "c", "x", kind = "object" }, { "s", kind = "string" } } } do
        local v = rebuilt_paths(text, sp.from, sp.to, paths)
        assert(same(v, want), "a different array (several paths): " .. text)
      end
    end
    assert.is_true(hollowed > 300, hollowed)
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
