-- What the two OpenAI adapters (chat completions, adapters/openai.lua; the
-- Responses API, adapters/openai_responses.lua) share: OpenAI's strict
-- subset of JSON Schema and whether a strict flag may go with a schema,
-- the fields of a json_schema output format, the reasoning effort asked
-- for, the output cap, a tool result's text with its attachments set
-- aside, a foreign block's text, the copy of a client's own fields, and the
-- request headers. Where the two APIs write the same thing in different
-- words (content parts, tool and tool_choice shapes, usage), each adapter
-- keeps its own.
-- Pure: no host globals.
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"
local reasoning = require "moongate.reasoning"

local M = {}

--- refuse(msg [, param]): raises a 400 refusal (errors.catch) while a
-- request is translated
function M.refuse(msg, param)
  errors.refuse(400, msg, { param = param })
end

-- JSON Schema ------------------------------------------------------------------

local one_schema, schema_lists, schema_maps = { "items", "not" }, { "anyOf", "oneOf", "allOf" }, { "$defs", "definitions" }

-- does a JSON Schema fit OpenAI's strict mode: every object closed
-- (additionalProperties: false) and requiring each of its properties?
local function strict_ok(sc, depth)
  if type(sc) ~= "table" or depth > 64 then return depth <= 64 end
  local props = type(sc.properties) == "table" and sc.properties or nil
  if sc.type == "object" or props then
    if sc.additionalProperties ~= false then return false end
    local req = {}
    for _, k in ipairs(type(sc.required) == "table" and sc.required or {}) do req[k] = true end
    for k, sub in pairs(props or {}) do
      if not req[k] or not strict_ok(sub, depth + 1) then return false end
    end
  end
  for _, k in ipairs(one_schema) do
    if type(sc[k]) == "table" and not strict_ok(sc[k], depth + 1) then return false end
  end
  for _, k in ipairs(schema_lists) do
    for _, sub in ipairs(type(sc[k]) == "table" and sc[k] or {}) do
      if not strict_ok(sub, depth + 1) then return false end
    end
  end
  for _, k in ipairs(schema_maps) do
    for _, sub in pairs(type(sc[k]) == "table" and sc[k] or {}) do
      if not strict_ok(sub, depth + 1) then return false end
    end
  end
  return true
end

--- strict_ok(schema) -> does it fit OpenAI's strict mode (every object
-- closed and requiring each of its properties; at most 64 levels deep)?
function M.strict_ok(schema) return strict_ok(schema, 0) end

--- keeps_strict(schema, creq, own, what) -> may strict go to the upstream
-- with this schema? Yes when the client speaks the upstream's own format
-- (`own`: its schema is the upstream's to judge) or the schema is in the
-- strict subset; else no, noted as dropped (what: whose schema). Anthropic
-- holds any schema; OpenAI's strict mode only a closed one.
function M.keeps_strict(schema, creq, own, what)
  if creq.client == own or strict_ok(schema, 0) then return true end
  canonical.dropped(creq, "strict (" .. what .. " is not in OpenAI's strict subset)")
  return false
end

--- schema_format(f) -> name, description, schema: the fields of canonical
-- json_schema format f as both APIs write them (a name and a schema always)
function M.schema_format(f)
  return f.name or "output", f.description, json.schema(f.schema) or { type = "object" }
end

-- Request fields ---------------------------------------------------------------

--- client_name(creq) -> the client's API in a refusal's words ("an
-- Anthropic client", "an OpenAI Responses client"): whose file id a block
-- carries, which only that API's upstreams can read
function M.client_name(creq)
  local name = canonical.format_names[creq.client]
  return name and ("an " .. name .. " client") or "a client of another API"
end

--- effort(effort, conf) -> the reasoning effort to ask for: "max" (an
-- Anthropic client's) is OpenAI's "xhigh", then clamped to what the
-- provider takes (conf.efforts)
function M.effort(effort, conf)
  return reasoning.clamp(effort == "max" and "xhigh" or effort, conf and conf.efforts)
end

--- max_tokens(creq, conf) -> creq.max_tokens, capped at the provider's
-- max_output_tokens
function M.max_tokens(creq, conf)
  local max_tokens = creq.max_tokens
  if max_tokens and conf.max_output_tokens and max_tokens > conf.max_output_tokens then
    max_tokens = conf.max_output_tokens
  end
  return max_tokens
end

--- drop_tool_extras(t, creq): what an Anthropic tool carries that an
-- OpenAI function tool has no place for, noted as dropped
function M.drop_tool_extras(t, creq)
  if t.cache_control then canonical.dropped(creq, "tools.cache_control") end
  if t.defer_loading then canonical.dropped(creq, "tools.defer_loading") end
end

--- copy_own(req, raw, built): the client's own fields (raw, the request
-- of a client of the upstream's format) that the translation did not
-- write (built: their names) go as they came, numbers in full
function M.copy_own(req, raw, built)
  for k, v in pairs(json.whole(raw)) do
    if req[k] == nil and not built[k] then req[k] = json.typed(v) end
  end
end

-- Blocks -----------------------------------------------------------------------

--- tool_result(b, pending, creq) -> the text of tool_result block b; its
-- images and files, which OpenAI's tool outputs cannot hold, are appended
-- to pending (after a line that names the call), to go in a user message
-- after the results of that turn
function M.tool_result(b, pending, creq)
  if b.is_error then canonical.dropped(creq, "tool_result.is_error") end
  if b.attachments then
    pending[#pending + 1] = { type = "text", text = "The result of tool call " .. tostring(b.tool_call_id) .. " includes:" }
    for _, a in ipairs(b.attachments) do pending[#pending + 1] = a end
  end
  return type(b.content) == "string" and b.content or json.encode(b.content)
end

--- native_text(b, creq) -> the text of a block of another format's own
-- (Anthropic's server-side blocks), or nil: dropped, noted; refused when
-- the block says so (docs/TRANSLATION.md)
function M.native_text(b, creq)
  if b.refuse then M.refuse(b.refuse) end
  if b.text then return b.text end
  canonical.dropped(creq, b.drop or b.block and b.block.type or "block")
end

-- Transport --------------------------------------------------------------------

--- headers(conf, key) -> request headers for the upstream
function M.headers(conf, key)
  local h = { ["content-type"] = "application/json", accept = "application/json, text/event-stream" }
  if key then h.authorization = "Bearer " .. key end
  return h
end

return M
