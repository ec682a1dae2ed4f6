local json = require "moongate.json"

describe("json", function()
  it("writes raw() markers as their text, and leaves other encodings alone", function()
    assert.equal('{"a":[]}', json.encode_raw({ a = json.empty_array }))
    assert.equal('[1,12345678901234567]', json.encode_raw({ 1, json.raw("12345678901234567") }))
    assert.equal('{"s":"raw-looking text"}', json.encode_raw({ s = "raw-looking text" }))
    -- a string that copies the marker, id and all, can add no key
    local forged = json.empty_array:sub(1, -3) .. '1,"model":"other"'
    local text = json.encode_raw({ s = forged, model = "m" })
    assert.equal(forged, json.decode(text).s)
    assert.equal("m", json.decode(text).model)
    assert.has_error(function() json.raw('1,"x":2') end)
  end)

  it("writes a schema's empty lists and array defaults as [], objects as {}", function()
    local s = json.decode('{"type":"object","required":[],"properties":{"t":{"type":["array","null"],'
      .. '"default":[]},"o":{"type":"object","properties":{}},"e":{"enum":[]}},'
      .. '"$defs":{"L":{"type":"array","default":[]}},"anyOf":[{"required":[]}]}')
    local out = json.decode(json.encode_raw(json.schema(s)))
    local text = json.encode_raw(json.schema(s))
    assert.matches('"required":[]', text, 1, true)
    assert.matches('"default":[]', text, 1, true)
    assert.matches('"properties":{}', text, 1, true)
    assert.matches('"enum":[]', text, 1, true)
    assert.not_matches('"default":{}', text, 1, true)
    assert.matches('"anyOf":[{"required":[]}]', text, 1, true)
    assert.equal(2, select(2, text:gsub('"default":%[%]', ""))) -- t's and L's
    assert.same(json.decode(json.encode(s)), out)
    -- the schema it was given is untouched: encoded plainly, as before
    assert.matches('"required":{}', json.encode(s), 1, true)
    -- every number in full, enum and examples typed by their schema,
    -- dependentRequired's lists
    local s2 = json.decode('{"type":"object","properties":{"n":{"type":"integer","maximum":9007199254740991,'
      .. '"enum":[9007199254740991,1]},"a":{"type":"array","examples":[[]]}},"dependentRequired":{"a":[]}}')
    text = json.encode_raw(json.schema(s2))
    for _, want in ipairs { '"maximum":9007199254740991', '"enum":[9007199254740991,1]', '"examples":[[]]',
      '"dependentRequired":{"a":[]}' } do
      assert.matches(want, text, 1, true)
    end
  end)

  it("types a value by its schema, $ref and anyOf included, and keeps long numbers", function()
    local schema = json.decode('{"type":"object","properties":{"a":{"type":"array"},'
      .. '"o":{"type":"object"},"r":{"$ref":"#/$defs/L"},"u":{"anyOf":[{"type":"null"},{"type":"array"}]},'
      .. '"list":{"type":"array","items":{"type":"object","properties":{"x":{"type":"array"}}}}},'
      .. '"$defs":{"L":{"type":"array"}}}')
    local v = json.decode('{"a":[],"o":{},"r":[],"u":[],"free":[],"list":[{"x":[]}],'
      .. '"big":9007199254740991,"f":0.12345678901234568,"small":2.5}')
    local text = json.encode_raw(json.typed(v, schema))
    for _, want in ipairs { '"a":[]', '"o":{}', '"r":[]', '"u":[]', '"free":{}', '"list":[{"x":[]}]',
      '"big":9007199254740991', '"f":0.12345678901234568', '"small":2.5' } do
      assert.matches(want, text, 1, true)
    end
    assert.equal(9007199254740991, json.decode(text).big)
    -- without a schema only the numbers change
    assert.matches('"a":{}', json.encode_raw(json.typed(v)), 1, true)
    assert.matches('"big":9007199254740991', json.encode_raw(json.typed(v)), 1, true)
    -- the value it was given is untouched
    assert.matches('"a":{}', json.encode(v), 1, true)
  end)
end)

-- raw values (json.object's hollow): need moongate.jscan (the pure layer's
-- specs run without it, and then nothing is raw)
local has_jscan = pcall(require, "moongate.jscan")
describe(has_jscan and "json raw values" or "json raw values (no moongate.jscan: skipped)", function()
  if not has_jscan then return end
  local hollow = {
    tools = { { path = { "input_schema" }, kind = "object" } },
    messages = { { path = { "content", "content" }, kind = "string",
      when = { "type", "tool_result" } } },
  }
  local schema = '{ "type" : "object", "properties": {"p": {"type":"array","default":[]}, "n": {"maximum": 9007199254740993}} }'
  local text = '{"model":"m","tools":[{"name":"f","input_schema":' .. schema .. '}],"messages":[{"role":"user",'
    .. '"content":[{"type":"tool_result","tool_use_id":"t","content":"caf\\u00e9 \\/ \\"q\\""},'
    .. '{"type":"text","text":"hi","content":"not a tool result"}]}]}'

  it("carries a tool's schema and a tool result's text as the client wrote them", function()
    local req = assert(json.object(text, nil, nil, hollow))
    local raw_schema = req.tools[1].input_schema
    assert.equal(schema, json.raw_text(raw_schema))
    local content = req.messages[1].content[1].content
    assert.equal('"caf\\u00e9 \\/ \\"q\\""', json.raw_text(content))
    assert.equal('café / "q"', json.str(content))
    -- only where keep() says: the text block's "content" is decoded
    assert.equal("not a tool result", req.messages[1].content[2].content)
    -- written back byte for byte, where a decode and encode would change it
    local out = json.encode_raw({ a = raw_schema, b = { content } })
    assert.equal('{"a":' .. schema .. ',"b":["caf\\u00e9 \\/ \\"q\\""]}', (out:gsub('^{"b":(.-),"a":(.*)}$', '{"a":%2,"b":%1}')))
    assert.equal("9007199254740993", out:match('"maximum": (%d+)'))
    assert.equal('"default":[]', out:match('"default":%[%]'))
    -- json.schema gives a raw object of its own with the same text: the
    -- schema may be read (decoded in place) before the request is written
    local copy = json.schema(raw_schema)
    assert.are_not.equal(raw_schema, copy)
    assert.equal(schema, json.raw_text(copy))
    assert.equal("object", raw_schema.type)
    assert.equal(schema, json.raw_text(copy))
    assert.equal('{"p":' .. schema .. '}', json.encode_raw({ p = copy }))
  end)

  it("keeps the last of a member given twice, as cjson does, raw where a path reaches it", function()
    local dup = '{"model":"m","tools":[{"name":"f","input_schema":{"a":1},"input_sch\\u0065ma":{"b":2}}],'
      .. '"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"tool_result","content":"X"}],'
      .. '"content":[{"type":"tool_result","content":"Y"}]},{"role":"user","content":[{"type":"tool_result","content":"Z"}],'
      .. '"cont\\u0065nt":[{"type":"text","text":"KEPT"}]}]}'
    local req = assert(json.object(dup, nil, nil, hollow))
    assert.equal('{"b":2}', json.raw_text(req.tools[1].input_schema))
    assert.equal(2, req.tools[1].input_schema.b)
    assert.is_nil(req.tools[1].input_schema.a)
    local blocks = req.messages[1].content
    assert.equal(1, #blocks)
    assert.equal("Y", json.str(blocks[1].content))
    assert.same({ type = "tool_result", content = "Y" }, json.decode(json.encode_raw(blocks[1])))
    assert.same({ { type = "text", text = "KEPT" } }, req.messages[2].content)
  end)

  it("decodes a raw object in place when a key is read or written", function()
    local req = assert(json.object(text, nil, nil, hollow))
    local s = req.tools[1].input_schema
    assert.equal("object", s.type) -- read: decoded now
    assert.is_nil(json.raw_text(s))
    assert.same({ "properties", "type" }, (function() local k = {} for x in pairs(s) do k[#k + 1] = x end table.sort(k) return k end)())
    assert.matches('"type":"object"', json.encode_raw(s), 1, true)
    local req2 = assert(json.object(text, nil, nil, hollow))
    local s2 = req2.tools[1].input_schema
    s2.extra = true -- written: decoded first, then set
    assert.equal("object", s2.type)
    assert.is_true(s2.extra)
  end)

  it("refuses to write a raw string joined into another (its text would be lost)", function()
    local req = assert(json.object(text, nil, nil, hollow))
    local content = req.messages[1].content[1].content
    assert.has_error(function() json.encode_raw({ x = "see: " .. content }) end)
    local ok, why = json.try_encode_raw({ x = content .. "!" })
    assert.is_nil(ok)
    assert.matches("marker", why)
  end)

  it("keeps the texts while the request's table lives, after json.whole too", function()
    local req = assert(json.object(text, nil, nil, hollow))
    local content = req.messages[1].content[1].content
    local s = req.tools[1].input_schema
    json.whole(req) -- (takes the lazy object's metatable off)
    collectgarbage("collect")
    collectgarbage("collect")
    assert.equal('["caf\\u00e9 \\/ \\"q\\"",' .. schema .. ']', json.encode_raw({ content, s }))
    assert.is_table(req) -- (held till here)
  end)

  it("lets a raw value's text go with its request", function()
    local req = assert(json.object(text, nil, nil, hollow))
    local content = req.messages[1].content[1].content
    assert.is_not_nil(json.raw_text(content))
    req = nil -- luacheck: ignore
    collectgarbage("collect")
    collectgarbage("collect")
    assert.is_nil(json.raw_text(content))
  end)
end)

describe("encode_raw's C pass (jscan.unmark)", function()
  local json = require "moongate.json"
  local c = json._unmark(false)
  json._unmark(c)
  if not c then
    pending("needs build/lua/moongate/jscan.so")
    return
  end
  it("gives what its Lua loop gives: the same text, or the same refusal", function()
    -- raw strings and objects of a decoded request, numbers of json.raw,
    -- markers joined into longer strings or used as keys
    local body = '{"tools":[{"name":"a","input_schema":{"type":"object","x":1e3},"description":"d\\u00e9 \\"q\\""},'
      .. '{"name":"b","input_schema":{"properties":{}},"description":"\\/"}]}'
    local req = assert(json.object(body, nil, nil, { tools = {
      { path = { "input_schema" }, kind = "object" }, { path = { "description" }, kind = "string" } } }))
    local t = req.tools
    local tag = json.raw("") -- (the marker's prefix: forged markers below)
    local pieces = { t[1].input_schema, t[1].description, t[2].input_schema, t[2].description,
      json.raw("12345678901234567890"), json.raw("[]"), json.raw(""), "plain", "\1", 7, json.null,
      tag .. "str0", tag .. "str1000000010", tag .. "str123456789012345678901234", tag .. "obj7", tag .. "strx" }
    math.randomseed(7)
    local n = 0
    for _ = 1, 2000 do
      local v = {}
      for i = 1, math.random(1, 6) do
        local p = pieces[math.random(#pieces)]
        local r = math.random(10)
        if r == 1 and type(p) == "string" then p = "x" .. p -- joined: refused
        elseif r == 2 and type(p) == "string" then v[p] = 1; p = nil end -- a key
        if p ~= nil then v[#v + 1] = p end
      end
      local ok_c, out_c = pcall(json.encode_raw, v)
      json._unmark(false)
      local ok_l, out_l = pcall(json.encode_raw, v)
      json._unmark(c)
      assert.equal(ok_l, ok_c, out_l)
      if ok_l then
        assert.equal(out_l, out_c)
        n = n + 1
      else
        assert.equal(tostring(out_l):match("a raw value.*"), tostring(out_c):match("a raw value.*"))
      end
    end
    assert.is_true(n > 500)
  end)
end)

describe("json.prescanned", function()
  local json = require "moongate.json"
  local ok_jscan, jscan = pcall(require, "moongate.jscan")
  if not ok_jscan then
    pending("needs build/lua/moongate/jscan.so")
    return
  end
  it("hands the host's scan of a text to the next object() of that text and marker, once", function()
    local text = '{"model":"m","messages":[1]}'
    local fields, spans, marked = jscan.top(text, "MARK")
    fields.model = "from the host's scan" -- (to tell it from a scan of its own)
    json.prescanned(text, { fields, spans, marked, marker = "MARK" })
    assert.equal("from the host's scan", (json.object(text, "MARK")).model)
    assert.equal("m", (json.object(text, "MARK")).model) -- once
    json.prescanned(text, { fields, spans, marked, marker = "MARK" })
    assert.equal("m", (json.object(text, "OTHER")).model) -- another marker: its own scan
    assert.same({ 1 }, json.object(text, "MARK").messages)
  end)
end)
