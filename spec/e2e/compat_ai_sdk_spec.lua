-- The Vercel AI SDK (spec/compat/ai_sdk.mjs: ai, @ai-sdk/openai,
-- @ai-sdk/anthropic, zod) through the real daemon to the mock upstream:
-- openai.chat(model) and anthropic(model), each on a passthrough route and a
-- translated one; generateText with a PDF file part, generateObject with a
-- zod schema. Checked: what the SDK returned, and the shapes the (strict)
-- mock received.
local helpers = require "helpers"
local json = require "moongate.json"

describe("the Vercel AI SDK", function()
  local r = helpers.gateway_fixture {
    providers = {
      up = { kind = "openai", api_key = "sk-up", retries = 0 },
      claude = { kind = "anthropic", api_key = "sk-ant-up", retries = 0 },
    },
    routes = { { match = "claude-*", provider = "claude" }, { match = "gpt-*", provider = "up" } },
    script = "spec/compat/ai_sdk.mjs",
  }.r

  -- the one request the mock received for a case, checked and accepted
  local function one_request(v, upstream)
    local info = json.encode(v)
    assert.is_nil(v.thrown, v.message)
    assert.equal(1, #v.received, info)
    local req = v.received[1]
    assert.is_false(req.proxy)
    assert.is_nil(req.rejected, req.rejected)
    assert.equal(upstream == "openai" and "/v1/chat/completions" or "/v1/messages", req.path, info)
    return req.body, info
  end

  for _, route in ipairs {
    { name = "openai_passthrough", title = "openai.chat(), passthrough to an OpenAI upstream", upstream = "openai" },
    { name = "openai_translated", title = "openai.chat(), translated to an Anthropic upstream", upstream = "anthropic" },
    { name = "anthropic_passthrough", title = "anthropic(), passthrough to an Anthropic upstream", upstream = "anthropic" },
    { name = "anthropic_translated", title = "anthropic(), translated to an OpenAI upstream", upstream = "openai" },
  } do
    describe(route.title, function()
      it("generateText with a PDF file part", function()
        local v = r[route.name .. "_pdf"]
        local body, info = one_request(v, route.upstream)
        assert.equal("The PDF is a single empty page.", v.result.text)
        assert.equal("stop", v.result.finishReason)
        local user = body.messages[#body.messages]
        assert.equal("user", user.role)
        local text, pdf
        for _, p in ipairs(user.content) do
          if p.type == "text" then text = p.text end
          if p.type == "file" or p.type == "document" then pdf = p end
        end
        assert.equal("What is in this PDF?", text)
        assert.truthy(pdf, "no PDF in the request:\n" .. info)
        if route.upstream == "openai" then
          -- an OpenAI file part, the bytes as a data URL
          assert.equal("file", pdf.type)
          assert.equal("data:application/pdf;base64," .. r.pdf_base64, pdf.file.file_data)
          assert.equal("doc.pdf", pdf.file.filename)
        else
          -- an Anthropic document block, base64
          assert.equal("document", pdf.type)
          assert.same({ type = "base64", media_type = "application/pdf", data = r.pdf_base64 }, pdf.source)
        end
      end)

      it("generateObject with a zod schema", function()
        local v = r[route.name .. "_object"]
        local body, info = one_request(v, route.upstream)
        assert.equal("Oslo", v.result.object.city)
        assert.equal(21.5, v.result.object.temperature)
        assert.equal(0, #v.result.object.tags)
        local schema
        if route.name == "anthropic_translated" then
          -- on a model it does not know, the anthropic provider forces a tool
          -- named "json"; it arrives as a forced OpenAI function
          assert.equal("json", body.tools[1]["function"].name, info)
          schema = body.tools[1]["function"].parameters
          assert.truthy(body.tool_choice == "required"
            or type(body.tool_choice) == "table" and body.tool_choice["function"].name == "json", info)
        elseif route.upstream == "openai" then
          assert.equal("json_schema", body.response_format.type, info)
          assert.is_string(body.response_format.json_schema.name)
          schema = body.response_format.json_schema.schema
        else
          assert.equal("json_schema", body.output_config.format.type, info)
          schema = body.output_config.format.schema
        end
        assert.equal("object", schema.type)
        assert.equal("string", schema.properties.city.type)
        assert.equal("array", schema.properties.tags.type)
        assert.same({ "city", "temperature", "tags" }, schema.required)
      end)
    end)
  end
end)
