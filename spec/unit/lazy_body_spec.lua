-- A passthrough reads a request's body without decoding it (json.object
-- over moongate.jscan): the doors look at the top level, the nested values
-- (messages, tools, system blocks) are decoded only when a translation
-- reads them, and what the doors used to refuse at once is refused then.
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"
local chat = require "moongate.frontdoor.openai_chat"
local messages = require "moongate.frontdoor.anthropic_messages"

local function body(t) return json.encode(t) end

describe("a request body read lazily", function()
  it("uses the C scanner in this host", function()
    assert.truthy(package.loaded["moongate.jscan"] or pcall(require, "moongate.jscan"))
  end)

  it("leaves an OpenAI chat body's messages and tools undecoded until a translation reads them", function()
    local creq = assert(chat.decode(body { model = "m", stream = true, messages = { { role = "user", content = "hi" } },
      tools = { { type = "function", ["function"] = { name = "f", parameters = { type = "object" } } } } }))
    assert.is_nil(rawget(creq.raw, "messages"))
    assert.is_nil(rawget(creq.raw, "tools"))
    assert.is_nil(rawget(creq, "tools"))
    assert.equal("f", creq.tools[1].name) -- made when read
    assert.equal("hi", creq.messages[1].content[1].text)
    assert.is_false(creq.packed)
  end)

  it("leaves an Anthropic body's messages, system blocks and tools undecoded until read", function()
    local creq = assert(messages.decode(body { model = "m", max_tokens = 5, system = { { type = "text", text = "be brief" } },
      messages = { { role = "user", content = "hi" } }, tools = { { name = "f", input_schema = { type = "object" } } } }))
    assert.is_nil(rawget(creq.raw, "messages"))
    assert.is_nil(rawget(creq.raw, "system"))
    assert.is_nil(rawget(creq, "system"))
    assert.equal("be brief", creq.system)
    assert.equal("f", creq.tools[1].name)
  end)

  it("refuses a bad tool when a translation reads it, in the door's words", function()
    local creq = assert(chat.decode(body { model = "m", messages = { { role = "user", content = "hi" } },
      tools = { { type = "function", ["function"] = { description = "no name" } } } }))
    local ok, err = errors.catch(function() return creq.tools end)
    assert.is_false(ok)
    assert.equal(400, err.status)
    assert.equal("tools[0].function.name", err.param)
    creq = assert(messages.decode(body { model = "m", max_tokens = 5, messages = { { role = "user", content = "hi" } },
      tools = { { description = "no name" } } }))
    ok, err = errors.catch(function() return creq.tools end)
    assert.is_false(ok)
    assert.matches("tools.0.name: Field required", err.message)
  end)

  it("still refuses at once what the scan sees: the kind of messages, an empty list, a key given twice", function()
    local _, err = chat.decode('{"model":"m","messages":{"a":1}}')
    assert.equal("messages", err.param)
    _, err = chat.decode('{"model":"m","messages":[]}')
    assert.equal("empty_array", err.code)
    _, err = chat.decode('{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":1,"temperature":2}')
    assert.equal("temperature", err.param)
    assert.matches("given twice", err.message)
    _, err = messages.decode('{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":{"a":1}}')
    assert.matches("^tools: Input should be a valid list", err.message)
    _, err = messages.decode('{"model":"m","max_tokens":5,"messages":"x"}')
    assert.matches("^messages: Input should be a valid list", err.message)
  end)

  it("answers bad JSON with cjson's words, as before", function()
    local _, err = chat.decode('{"model":"m",}')
    assert.matches("^We could not parse the JSON body of your request: Expected object key string", err.message)
    _, err = chat.decode('[1,2]')
    assert.matches("expected a JSON object, got an array", err.message)
    -- what only cjson takes (a number ending in a dot) is decoded by it
    local creq = assert(chat.decode('{"model":"m","temperature":1.,"messages":[{"role":"user","content":"x"}]}'))
    assert.equal(1, creq.temperature)
  end)

  it("marks a body that carries a value the gateway packed, wherever it is", function()
    local creq = assert(chat.decode(body { model = "m", messages = { { role = "assistant", content = "x",
      reasoning_content = canonical.PACKED .. "abc" } } }))
    assert.is_true(creq.packed)
  end)

  it("rewrites the model where the scan saw it, every other byte as it was", function()
    local text = '{ "messages":[{"role":"user","content":"\\"model\\": x"}], "model" : "a\\u0062c" ,"n":1}'
    local obj = assert(json.object(text))
    assert.equal("abc", obj.model)
    local fast = json.replace_top(text, "model", '"xyz"', obj)
    assert.equal('{ "messages":[{"role":"user","content":"\\"model\\": x"}], "model" : "xyz" ,"n":1}', fast)
    assert.equal(json.replace_top(text, "model", '"xyz"'), fast)
    -- positions of another text are not used
    assert.equal('{"model":"q"}', json.replace_top('{"model":"p"}', "model", '"q"', obj))
  end)

  it("gives every field to a translation that walks them all", function()
    local creq = assert(chat.decode(body { model = "m", messages = { { role = "user", content = "x" } },
      metadata = { a = "b" }, seed = 3 }))
    local seen = {}
    for k in pairs(json.whole(creq.raw)) do seen[k] = true end
    assert.same({ model = true, messages = true, metadata = true, seed = true }, seen)
    assert.is_nil(getmetatable(creq.raw))
  end)
end)
