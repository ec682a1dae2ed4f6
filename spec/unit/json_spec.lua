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
