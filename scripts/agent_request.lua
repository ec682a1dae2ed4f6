-- An agent-sized request, built the way a coding agent's turn looks: a long
-- system prompt, tools with JSON schemas, and a conversation that mixes
-- text, tool calls and tool results. Deterministic: the same arguments give
-- the same bytes. Used by scripts/bench and the fast-path specs.
--
--   M.build(format, opts) -> body text
--     format: "openai" (chat completions) | "anthropic" (messages)
--     opts: model ("zero"), messages (120), tools (40), system_kb (15),
--       result_bytes (1200), stream (false)
--   With the defaults a body is about 167 KiB; messages = 1200 and
--   result_bytes = 1500 make about 1 MiB.
package.path = "lua/?.lua;" .. package.path
local json = require "moongate.json"

local M = {}

local WORDS = { "the", "file", "function", "returns", "value", "buffer", "when", "config", "reads", "test",
  "module", "error", "line", "table", "string", "index", "list", "path", "call", "result", "user", "agent",
  "parser", "token", "stream", "frame", "client", "server", "request", "answer" }

-- n bytes or so of text, from a seed; quotes, newlines and a tab in it, so
-- that the JSON carries escapes as real prompts do
local function text(seed, n)
  local out, len, x = {}, 0, seed
  while len < n do
    x = (x * 1103515245 + 12345) % 2147483648
    local w = WORDS[x % #WORDS + 1]
    if x % 97 == 0 then w = w .. '\n' elseif x % 89 == 0 then w = '"' .. w .. '"' elseif x % 83 == 0 then w = w .. '\t' end
    out[#out + 1] = w
    len = len + #w + 1
  end
  return table.concat(out, " ")
end

local function tool(i)
  local props = {}
  for j = 1, 6 do
    props["arg_" .. j] = { type = j % 3 == 0 and "integer" or "string", description = text(i * 31 + j, 120) }
  end
  props.mode = { type = "string", enum = { "read", "write", "append", "list" }, description = text(i * 7, 60) }
  return { name = "tool_" .. i, description = text(i * 13, 500),
    schema = { type = "object", properties = props, required = { "arg_1", "mode" }, additionalProperties = false } }
end

function M.build(format, opts)
  opts = opts or {}
  local nmsg, ntools = opts.messages or 120, opts.tools or 40
  local rb = opts.result_bytes or 1200
  local system = text(1, (opts.system_kb or 15) * 1024)
  local tools, msgs = {}, {}
  for i = 1, ntools do
    local t = tool(i)
    if format == "anthropic" then
      tools[i] = { name = t.name, description = t.description, input_schema = t.schema }
    else
      tools[i] = { type = "function", ["function"] = { name = t.name, description = t.description, parameters = t.schema } }
    end
  end
  if format ~= "anthropic" then msgs[1] = { role = "system", content = system } end
  -- turns of three: the user asks, the assistant calls a tool, the result
  local i = 0
  while #msgs < nmsg + (format ~= "anthropic" and 1 or 0) do
    i = i + 1
    local id = string.format("call_%06d", i)
    local args = json.encode({ arg_1 = "src/file_" .. i .. ".c", mode = "read" })
    local k = i % 3
    if k == 1 then
      msgs[#msgs + 1] = { role = "user", content = text(i * 101, 200) }
    elseif format == "anthropic" then
      msgs[#msgs + 1] = { role = "assistant", content = {
        { type = "text", text = text(i * 103, 150) },
        { type = "tool_use", id = id, name = "tool_" .. (i % ntools + 1), input = json.decode(args) } } }
      msgs[#msgs + 1] = { role = "user", content = {
        { type = "tool_result", tool_use_id = id, content = text(i * 107, rb) } } }
    else
      msgs[#msgs + 1] = { role = "assistant", content = text(i * 103, 150),
        tool_calls = { { id = id, type = "function", ["function"] = { name = "tool_" .. (i % ntools + 1), arguments = args } } } }
      msgs[#msgs + 1] = { role = "tool", tool_call_id = id, content = text(i * 107, rb) }
    end
  end
  -- the conversation ends with the user's turn
  if msgs[#msgs].role ~= "user" then msgs[#msgs + 1] = { role = "user", content = text(9, 100) } end
  local body = { model = opts.model or "zero", max_tokens = 4096, messages = msgs, tools = tools, stream = opts.stream or nil }
  if format == "anthropic" then body.system = system end
  return json.encode(body)
end

return M
