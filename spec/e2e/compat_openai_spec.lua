-- The official openai npm package against the real daemon (spec/compat).
local helpers = require "helpers"
local json = require "moongate.json"

local function run_sdk(script, base)
  local p = assert(io.popen(string.format("node spec/compat/%s %s 2>&1", script, base)))
  local text = p:read("*a")
  p:close()
  local result = json.decode(text:match("[^\n]*$") ~= "" and text:match("[^\n]*$") or text)
  assert(result, "the SDK script printed no JSON:\n" .. text)
  return result
end

describe("the official openai SDK", function()
  local server, r
  setup(function()
    server = helpers.start {}
    r = run_sdk("openai_chat.mjs", string.format("http://127.0.0.1:%d/v1", server.port))
  end)
  teardown(function() server:stop_clean() end)

  it("gets the echo answer from create()", function()
    assert.is_nil(r.create.thrown, r.create.message)
    assert.equal("hello from the official sdk", r.create.content)
    assert.equal("assistant", r.create.role)
    assert.equal("stop", r.create.finish_reason)
    assert.equal("chat.completion", r.create.object)
    assert.equal(5, r.create.usage.completion_tokens)
  end)

  it("streams with create({stream: true}), usage included", function()
    local s = r.create_stream
    assert.is_nil(s.thrown, s.message)
    assert.equal("hello from the official sdk", s.content)
    assert.equal("stop", s.finish_reason)
    assert.equal(1, s.ids)
    assert.is_true(s.chunks >= 5)
    assert.equal(5, s.usage.completion_tokens)
  end)

  it("works with the streaming helper and finalChatCompletion()", function()
    local s = r.stream_helper
    assert.is_nil(s.thrown, s.message)
    assert.equal("hello from the official sdk", s.content)
    assert.equal("stop", s.finish_reason)
    assert.equal("assistant", s.role)
    assert.equal(5, s.deltas)
  end)

  it("raises BadRequestError with the error's fields", function()
    local e = r.bad_request
    assert.equal("BadRequestError", e.thrown)
    assert.equal(400, e.status)
    assert.equal("empty_array", e.code)
    assert.equal("messages", e.param)
    assert.equal("invalid_request_error", e.type)
  end)

  it("raises NotFoundError for an unknown model", function()
    assert.equal("NotFoundError", r.unknown_model.thrown)
    assert.equal(404, r.unknown_model.status)
    assert.equal("model_not_found", r.unknown_model.code)
  end)

  it("lists models", function()
    assert.same({ "echo" }, r.models.ids)
  end)
end)
