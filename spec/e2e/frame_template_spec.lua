-- Translated stream frames written by the host (src/tmpl.c): while a
-- stream is steady, each plain text or thinking delta of the upstream goes
-- into the client's frame without Lua. The oracle is the Lua path itself:
-- the same upstream frames through a daemon at log_level "debug" (where
-- every frame goes through Lua, to be logged) must give the client the same
-- bytes, ids and timestamps aside. The upstream frames are written by hand,
-- with every way JSON can write a string's bytes.
local helpers = require "helpers"
local client = helpers.client
local json = require "moongate.json"

-- a delta string written as raw JSON text (what an upstream may send)
local TRICKY = {
  [["plain words "]], [["a\/b and a/b "]], [["caf\u00e9 café "]], [["\ud83d\ude00 😀 "]],
  [["quote \" backslash \\ "]], [["new\nline\ttab\r\b\f "]], [["ctl \u0001 \u001f del \u007f "]],
  [["</script> <b>&amp;</b> "]], [["\u0000nul "]], [["\u00E9 upper hex "]], [["long ]] .. string.rep("x", 5000) .. [[ "]],
}

local function oa_chunk(delta, extra)
  return { data = '{"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"m",'
    .. (extra or "") .. '"choices":[{"index":0,"delta":' .. delta .. ',"logprobs":null,"finish_reason":null}]}' }
end

-- an OpenAI upstream stream: thinking, text with every escape, a tool
-- call, text again, a chunk with a key the host does not know, the end
local function openai_frames()
  local f = { oa_chunk('{"role":"assistant","content":""}') }
  for _, s in ipairs(TRICKY) do f[#f + 1] = oa_chunk('{"reasoning_content":' .. s .. '}') end
  for _, s in ipairs(TRICKY) do f[#f + 1] = oa_chunk('{"content":' .. s .. '}') end
  f[#f + 1] = oa_chunk('{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}')
  f[#f + 1] = oa_chunk('{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a\\":1}"}}]}')
  for _, s in ipairs(TRICKY) do f[#f + 1] = oa_chunk('{"content":' .. s .. '}') end
  -- the host takes a frame like the last one but for its string without
  -- checking it again: these differ only after the string, or in its spacing
  f[#f + 1] = oa_chunk('{"content":"then a key after it ","role":"assistant"}')
  f[#f + 1] = oa_chunk('{"content":"plain again "}')
  -- (usage on a delta, as vLLM's continuous usage sends it: Lua's to count)
  local with_usage = oa_chunk('{"content":"with usage "}')
  with_usage.data = with_usage.data:gsub("}$", ',"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}')
  f[#f + 1] = with_usage
  f[#f + 1] = oa_chunk('{"content" : "spaced "}')
  f[#f + 1] = oa_chunk('{"content":"odd key "}', '"x_unknown":1,')
  f[#f + 1] = oa_chunk('{"content":"refusal null ","refusal":null}')
  f[#f + 1] = oa_chunk('{"content":""}')
  f[#f + 1] = oa_chunk('{"content":"after empty "}')
  f[#f + 1] = { data = '{"id":"chatcmpl-up","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}' }
  f[#f + 1] = { data = "[DONE]" }
  return f
end

local function an_delta(index, kind, s)
  local field = kind == "text_delta" and "text" or "thinking"
  return { event = "content_block_delta", data = string.format(
    '{"type":"content_block_delta","index":%d,"delta":{"type":"%s","%s":%s}}', index, kind, field, s) }
end

-- an Anthropic upstream stream: a thinking block, a text block, a tool
-- use, another text block
local function anthropic_frames()
  local f = {
    { event = "message_start", data = '{"type":"message_start","message":{"id":"msg_up","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}' },
    { event = "content_block_start", data = '{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}' },
  }
  for _, s in ipairs(TRICKY) do f[#f + 1] = an_delta(0, "thinking_delta", s) end
  f[#f + 1] = { event = "content_block_delta", data = '{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}' }
  f[#f + 1] = { event = "content_block_stop", data = '{"type":"content_block_stop","index":0}' }
  f[#f + 1] = { event = "content_block_start", data = '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}' }
  for _, s in ipairs(TRICKY) do f[#f + 1] = an_delta(1, "text_delta", s) end
  f[#f + 1] = { event = "content_block_stop", data = '{"type":"content_block_stop","index":1}' }
  f[#f + 1] = { event = "content_block_start", data = '{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}' }
  f[#f + 1] = { event = "content_block_delta", data = '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"a\\":1}"}}' }
  f[#f + 1] = { event = "content_block_stop", data = '{"type":"content_block_stop","index":2}' }
  f[#f + 1] = { event = "content_block_start", data = '{"type":"content_block_start","index":3,"content_block":{"type":"text","text":""}}' }
  for _, s in ipairs(TRICKY) do f[#f + 1] = an_delta(3, "text_delta", s) end
  f[#f + 1] = { event = "content_block_delta", data = '{"type":"content_block_delta","index":3,"delta":{"type":"text_delta","text":"extra key"},"x":1}' }
  f[#f + 1] = { event = "content_block_stop", data = '{"type":"content_block_stop","index":3}' }
  f[#f + 1] = { event = "message_delta", data = '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":9}}' }
  f[#f + 1] = { event = "message_stop", data = '{"type":"message_stop"}' }
  return f
end

-- the ids and clocks a daemon makes itself, out of the way
local function normal(body)
  return (body:gsub('"id":"msg_[%w]+"', '"id":"ID"'):gsub('"id":"chatcmpl%-[%w]+"', '"id":"ID"')
    :gsub('"created":%d+', '"created":0'):gsub('"id":"toolu_[%w]+"', '"id":"TID"'))
end

describe("translated stream frames written by the host", function()
  local up, fast, slow
  setup(function()
    up = helpers.mock()
    local cfg = string.format([[
return { log_level = "%%s",
  providers = { oa = { kind = "openai", base_url = %q, api_key = "k" }, an = { kind = "anthropic", base_url = %q, api_key = "k" } },
  routes = { { match = "claude-*", provider = "an" }, { match = "*", provider = "oa" } } }]], up.url .. "/v1", up.url)
    fast = helpers.start { config = cfg:format("info") }
    slow = helpers.start { config = cfg:format("debug") }
  end)
  teardown(function()
    if fast then fast:stop() end
    if slow then slow:stop() end
    if up then up:stop() end
  end)

  -- a frame whose key order is a Lua table's (a tool call's chunk: the
  -- order differs from one process to the next) compares decoded; every
  -- other frame, byte for byte
  local function keyed(body)
    local lines, tables = {}, {}
    for line in body:gmatch("[^\n]*\n?") do
      if line:find('"tool_calls"', 1, true) then
        tables[#tables + 1] = json.decode(line:match("^data: (.-)\n?$"))
        line = "data: TOOL_CALLS\n"
      end
      lines[#lines + 1] = line
    end
    return table.concat(lines), tables
  end

  local function templated(s) return json.decode(s:request("GET", "/stats").body).templated_frames end

  local function both(frames, path, body, headers)
    local out, tabs = {}, {}
    local f0, s0 = templated(fast), templated(slow)
    for i, s in ipairs { fast, slow } do
      up:queue { { frames = frames } }
      local res = assert(s:request("POST", path, json.encode(body), headers, 20000))
      assert.equal(200, res.status, res.body)
      out[i], tabs[i] = keyed(normal(res.body))
    end
    assert.same(tabs[2], tabs[1])
    -- the host wrote most deltas itself in the one, none in the other
    if not path:find("chat/completions", 1, true) or body.model:find("^claude") then
      assert.is_true(templated(fast) - f0 > 2 * #TRICKY, "templated: " .. (templated(fast) - f0))
    end
    assert.equal(s0, templated(slow))
    return out[1], out[2]
  end

  it("gives an Anthropic client the same bytes from an OpenAI upstream as the Lua path does", function()
    local a, b = both(openai_frames(), "/v1/messages", { model = "gpt-x", max_tokens = 100, stream = true,
      messages = { { role = "user", content = "hi" } } }, { ["anthropic-version"] = "2023-06-01" })
    assert.equal(b, a)
    assert.truthy(a:find('"text":"caf\\u00e9', 1, true) == nil) -- written as cjson writes it: é itself
    assert.truthy(a:find('"text":"caf\195\169 caf\195\169 "', 1, true))
    assert.truthy(a:find('a\\/b and a\\/b', 1, true))
    local _, n = a:gsub("event: content_block_delta", "")
    assert.is_true(n >= 3 * #TRICKY)
  end)

  it("gives an OpenAI client the same bytes from an Anthropic upstream as the Lua path does", function()
    local a, b = both(anthropic_frames(), "/v1/chat/completions", { model = "claude-x", stream = true,
      messages = { { role = "user", content = "hi" } } })
    assert.equal(b, a)
    assert.truthy(a:find('"reasoning_content":"quote \\" backslash \\\\ "', 1, true))
    assert.truthy(a:find('"content":"ctl \\u0001 \\u001f del \\u007f "', 1, true))
  end)

  it("leaves a passthrough's frames to the upstream: the same bytes either way", function()
    -- (an OpenAI client to an OpenAI upstream: nothing is translated, so
    -- no template is asked for)
    local a, b = both(openai_frames(), "/v1/chat/completions", { model = "gpt-x", stream = true,
      stream_options = { include_usage = true }, messages = { { role = "user", content = "hi" } } })
    assert.equal(b, a) -- a passthrough: the upstream's own frames either way
  end)
end)
