-- Front door: Anthropic messages (POST /v1/messages).
-- decode: wire request -> canonical request (or an error in Anthropic's shape)
-- stream_encoder / collector: canonical events -> Anthropic SSE / message.
-- Pure: no host globals.
local json = require "moongate.json"
local errors = require "moongate.errors"
local reasoning = require "moongate.reasoning"
local canonical = require "moongate.canonical"

local M = { client = "anthropic" }
local null = json.null
local INT_MAX = 2147483647 -- the largest count an API takes (32 bits)

-- What this front door serves (app.lua reads it): its routes (the value
-- names the App method; "serve" is the shared one), the prefix of its paths
-- (also without /v1: /messages), its stream kind, the request headers it
-- reads.
M.routes = { ["POST /v1/messages"] = "serve", ["POST /v1/messages/count_tokens"] = "count_tokens" }
M.prefixes = { "/messages" }
M.stream_kind = "sse"
M.request_headers = { "authorization", "x-api-key", "anthropic-version", "anthropic-beta" }

-- Its error shape, for every answer on its paths
local error_types = {
  [400] = "invalid_request_error", [401] = "authentication_error",
  [403] = "permission_error", [404] = "not_found_error",
  [405] = "invalid_request_error", [413] = "request_too_large",
  [429] = "rate_limit_error", [500] = "api_error", [529] = "overloaded_error",
}
errors.shape("anthropic", {
  prefixes = M.prefixes,
  type_for = function(status)
    return error_types[status] or (status >= 500 and "api_error" or "invalid_request_error")
  end,
  object = function(err, etype) return { type = "error", error = { type = etype, message = err.message } } end,
  -- a prompt too long, as Anthropic says it (Claude Code compacts on it)
  overflow = function(n, m)
    return errors.new(400, string.format("prompt is too long: %d tokens > %d maximum", n, m), { type = "invalid_request_error" })
  end,
  says_overflow = function(err)
    return type(err.message) == "string" and err.message:find("^prompt is too long: %d+ tokens > %d+ maximum") ~= nil
  end,
})

local function bad(msg)
  return nil, errors.new(400, msg)
end
local function refuse(msg) errors.refuse(400, msg) end

local function is_array(v) return type(v) == "table" and json.is_array(v) end
local function is_object(v) return type(v) == "table" and v ~= null and (next(v) == nil or not json.is_array(v)) end

-- the text blocks of content (a string or a list of blocks), joined by sep
local function text_of(content, sep)
  if type(content) == "string" then return content end
  local out = {}
  for _, b in ipairs(is_array(content) and content or {}) do
    if type(b) == "table" and b.type == "text" and type(b.text) == "string" then out[#out + 1] = b.text end
  end
  return table.concat(out, sep)
end

-- The fate of each top-level field on its way to an upstream of another
-- format (canonical.foreign_fields, docs/TRANSLATION.md): "mapped", "drop",
-- or why it is refused.
M.fields = {
  model = "mapped", messages = "mapped", max_tokens = "mapped", system = "mapped", stream = "mapped",
  temperature = "mapped", top_p = "mapped", stop_sequences = "mapped", tools = "mapped",
  tool_choice = "mapped", thinking = "mapped", output_config = "mapped", metadata = "mapped",
  output_format = "mapped",
  top_k = "drop", context_management = "drop", service_tier = "drop", inference_geo = "drop",
  safeguards = "drop",
  container = "a code-execution container lives on Anthropic's servers; an OpenAI-format upstream has none",
  mcp_servers = "MCP servers are called by Anthropic's servers; an OpenAI-format upstream cannot call them",
}

-- where a message (i) or one of its blocks (i, j) is, for an error (0-based,
-- as Anthropic names it)
local function loc(i, j)
  if j then return string.format("messages.%d.content.%d", i - 1, j - 1) end
  return string.format("messages.%d", i - 1)
end

-- Canonical blocks are made only when a request is translated; what
-- cannot be carried to another format is refused then (errors.refuse),
-- by its place in the request. A passthrough never looks at them: the
-- upstream judges what it does not know.

-- an image or document source -> canonical fields, or a refusal
local function source_of(s, at, kind)
  if not is_object(s) then refuse(at .. ".source: Field required") end
  if s.type == "base64" then
    if type(s.data) ~= "string" or s.data == "" then refuse(at .. ".source.data: Field required") end
    if type(s.media_type) ~= "string" then refuse(at .. ".source.media_type: Field required") end
    return { mime = s.media_type, data = s.data }
  elseif s.type == "url" then
    if type(s.url) ~= "string" or s.url == "" then refuse(at .. ".source.url: Field required") end
    return { url = s.url }
  elseif s.type == "file" then
    if type(s.file_id) ~= "string" then refuse(at .. ".source.file_id: Field required") end
    return { file_id = s.file_id }
  elseif kind == "document" and s.type == "text" then
    if type(s.data) ~= "string" then refuse(at .. ".source.data: Field required") end
    return { text = s.data }
  elseif kind == "document" and s.type == "content" then
    for k, c in ipairs(is_array(s.content) and s.content or {}) do
      if type(c) == "table" and c.type ~= "text" then
        refuse(string.format("%s.source.content.%d: a document's %s block cannot be translated; only its text can", at, k - 1, tostring(c.type)))
      end
    end
    return { text = type(s.content) == "string" and s.content or text_of(s.content, "\n\n") }
  end
  refuse(string.format("%s.source.type: unsupported %s source '%s'", at, kind, tostring(s.type)))
end

local function document_block(b, at)
  local src = source_of(b.source, at, "document")
  local title = type(b.title) == "string" and b.title or nil
  if src.text then -- a text document: its text, under its title
    return { type = "text", text = title and (title .. "\n\n" .. src.text) or src.text }
  end
  return { type = "file", mime = src.mime or "application/pdf", data = src.data, url = src.url,
    file_id = src.file_id, name = title }
end

-- the text a model can read of a search result or a web search's results
local function search_result_text(b)
  local parts = {}
  if type(b.title) == "string" then parts[#parts + 1] = b.title end
  if type(b.source) == "string" then parts[#parts + 1] = b.source end
  parts[#parts + 1] = text_of(b.content, "\n\n")
  return table.concat(parts, "\n")
end

local function web_results_text(b)
  if not is_array(b.content) then return "web search: no results" end
  local lines = {}
  for _, r in ipairs(b.content) do
    if is_object(r) then
      lines[#lines + 1] = string.format("%s (%s)", type(r.title) == "string" and r.title or "",
        type(r.url) == "string" and r.url or "")
    end
  end
  return "web search results:\n" .. table.concat(lines, "\n")
end

local decode_tool_result

-- decode_block(b, i, j, creq, at) -> canonical block, or nil for a block
-- that has none (dropped, noted in creq.dropped)
local function decode_block(b, i, j, creq, at)
  at = at or loc(i, j)
  if not is_object(b) then refuse(at .. ": Input should be an object") end
  local t = b.type
  if b.cache_control ~= nil then canonical.dropped(creq, "cache_control") end
  if t == "text" then
    if type(b.text) ~= "string" then refuse(at .. ".text: Input should be a valid string") end
    if b.citations ~= nil then canonical.dropped(creq, "text.citations") end
    return { type = "text", text = b.text }
  elseif t == "image" then
    local src = source_of(b.source, at, "image")
    return { type = "image", mime = src.mime, data = src.data, url = src.url, file_id = src.file_id }
  elseif t == "document" then
    if b.citations ~= nil then canonical.dropped(creq, "document.citations") end
    if b.context ~= nil then canonical.dropped(creq, "document.context") end
    return document_block(b, at)
  elseif t == "tool_use" then
    local args, why = json.try_encode_raw(json.typed(is_object(b.input) and b.input or json.decode("{}"),
      canonical.tool_schema(creq, b.name)))
    if not args then refuse(at .. ".input: " .. why) end
    return { type = "tool_call", id = b.id, name = b.name, arguments = args }
  elseif t == "tool_result" then
    return decode_tool_result(b, at, creq)
  elseif t == "thinking" then
    -- a signature another kind of upstream made comes back packed (docs/CANONICAL.md)
    local origin, item_id, signature = canonical.unpack_opaque(b.signature, "anthropic")
    return { type = "thinking", text = type(b.thinking) == "string" and b.thinking or "", signature = signature,
      origin = signature and origin or nil, item_id = item_id }
  elseif t == "redacted_thinking" then
    if type(b.data) ~= "string" then refuse(at .. ".data: Field required") end
    return { type = "redacted_thinking", data = b.data }
  -- blocks only Anthropic's own servers make sense of: carried as they are
  -- to an Anthropic upstream; for another format, what the model read of
  -- them becomes text, the rest is dropped or refused (docs/TRANSLATION.md)
  elseif t == "search_result" then
    return { type = "native", format = "anthropic", block = b, text = search_result_text(b) }
  elseif t == "web_search_tool_result" then
    return { type = "native", format = "anthropic", block = b, text = web_results_text(b) }
  elseif t == "mcp_tool_result" then
    return { type = "native", format = "anthropic", block = b, text = text_of(b.content, "\n\n") }
  elseif t == "server_tool_use" or t == "mcp_tool_use" then
    return { type = "native", format = "anthropic", block = b, drop = t }
  elseif t == "container_upload" then
    return { type = "native", format = "anthropic", block = b,
      refuse = at .. ": a container_upload names a file in Anthropic's code-execution container, which an upstream of another format cannot read" }
  end
  refuse(string.format("%s.type: content block type '%s' cannot be translated", at, tostring(t)))
end

-- a tool result: its text, and its images and documents as attachments
decode_tool_result = function(b, at, creq)
  local out = { type = "tool_result", tool_call_id = b.tool_use_id, is_error = b.is_error == true or nil }
  if type(b.content) == "string" or b.content == nil or b.content == null then
    out.content = type(b.content) == "string" and b.content or ""
    return out
  end
  if not is_array(b.content) then refuse(at .. ".content: Input should be a valid string or list") end
  local texts = {}
  for k, c in ipairs(b.content) do
    local blk = decode_block(c, nil, nil, creq, string.format("%s.content.%d", at, k - 1))
    if blk and blk.type == "text" then
      texts[#texts + 1] = blk.text
    elseif blk and (blk.type == "image" or blk.type == "file") then
      out.attachments = out.attachments or {}
      out.attachments[#out.attachments + 1] = blk
    elseif blk and blk.type == "native" and blk.text then
      texts[#texts + 1] = blk.text
    elseif blk then
      refuse(string.format("%s.content.%d.type: '%s' inside a tool_result cannot be translated", at, k - 1, tostring(c.type)))
    end
  end
  out.content = table.concat(texts, "\n\n")
  return out
end

local roles = { user = true, assistant = true, system = true }

-- the canonical messages of the client's list
local function decode_messages(msgs, creq)
  local list = {}
  for i, m in ipairs(msgs) do
    if not is_object(m) then refuse(loc(i) .. ": Input should be an object") end
    if not roles[m.role] then refuse(loc(i) .. ".role: Input should be 'user', 'assistant' or 'system'") end
    local blocks = {}
    if type(m.content) == "string" then
      blocks[1] = { type = "text", text = m.content }
    elseif is_array(m.content) then
      for j, b in ipairs(m.content) do
        local blk = decode_block(b, i, j, creq)
        if blk then blocks[#blocks + 1] = blk end
      end
    else
      refuse(loc(i) .. ".content: Input should be a valid string or list")
    end
    local msg = { role = m.role, content = blocks }
    for k, v in pairs(m) do
      if k == "output_config" and m.role == "system" and is_object(v) then
        msg.output_config = v -- a per-turn setting: kept for an Anthropic upstream
        canonical.dropped(creq, "messages[].output_config")
      elseif k ~= "role" and k ~= "content" then
        canonical.dropped(creq, "messages[]." .. tostring(k))
      end
    end
    list[#list + 1] = msg
  end
  return list
end

-- The canonical messages are made the first time something reads
-- creq.messages: a translation does, a passthrough that forwards the
-- client's bytes never does. What cannot be translated is refused then.
-- What of the top-level fields a translation cannot carry, looked at only
-- when one asks (canonical.foreign_fields): the first part it would have to
-- refuse ({param, message}, or false), and the parts it leaves out, noted.
local function untranslatable(creq)
  local req, u = creq.raw, false
  for k, b in ipairs(is_array(req.system) and req.system or {}) do
    if not is_object(b) or b.type ~= "text" or type(b.text) ~= "string" then
      u = u or { param = "system", message = string.format("system.%d: only text blocks can be translated", k - 1) }
    elseif b.cache_control ~= nil then
      canonical.dropped(creq, "system.cache_control")
    end
  end
  if is_object(req.metadata) then
    for k, v in pairs(req.metadata) do
      if k ~= "user_id" or type(v) ~= "string" then canonical.dropped(creq, "metadata." .. tostring(k)) end
    end
  end
  local th = req.thinking
  if th ~= nil and th ~= null then
    local t = is_object(th) and th.type
    if t ~= "enabled" and t ~= "adaptive" and t ~= "disabled" then
      u = u or { param = "thinking",
        message = "thinking: expected {\"type\": \"enabled\" | \"adaptive\" | \"disabled\"}; it cannot be translated as it is" }
    elseif t == "adaptive" and th.display ~= nil then
      canonical.dropped(creq, "thinking.display")
    end
  end
  for k in pairs(is_object(req.output_config) and req.output_config or {}) do
    if k ~= "effort" and k ~= "format" then canonical.dropped(creq, "output_config." .. tostring(k)) end
  end
  return u
end

local tools_of -- (below: the tools as canonical tools)

local Lazy = { __index = function(creq, k)
  if k == "messages" then
    local list = decode_messages(creq.raw.messages, creq)
    rawset(creq, "messages", list)
    return list
  end
  -- the system blocks, when the decode left them unread
  if k == "system" and not rawget(creq, "system_made") then
    rawset(creq, "system_made", true)
    local sys = creq.raw.system
    if is_array(sys) then
      rawset(creq, "system", text_of(sys, "\n\n"))
      return rawget(creq, "system")
    end
    return nil
  end
  -- the tools, made once; a bad one is refused as the decode would have
  if k == "tools" and not rawget(creq, "tools_made") then return canonical.lazy_tools(creq, tools_of) end
  if k == "fields" then return M.fields end
  if k == "untranslatable" then
    local u = untranslatable(creq)
    rawset(creq, "untranslatable", u)
    return u
  end
end }

-- the sampling numbers Anthropic takes from 0 to their maximum
local unit_range = { temperature = 1, top_p = 1 }

local function tool_of(t, i)
  if not is_object(t) then return bad(string.format("tools.%d: Input should be an object", i - 1)) end
  local custom = t.type == nil or t.type == null or t.type == "custom"
  if custom and type(t.name) ~= "string" then
    return bad(string.format("tools.%d.name: Field required", i - 1))
  end
  if not custom then
    -- a server tool (web_search_20250305, code_execution_...): Anthropic's
    -- servers run it
    return { name = type(t.name) == "string" and t.name or tostring(t.type), server = true, raw = t }
  end
  return { name = t.name, description = type(t.description) == "string" and t.description or nil,
    parameters = t.input_schema, strict = t.strict == true or nil,
    cache_control = t.cache_control ~= nil or nil, defer_loading = t.defer_loading ~= nil or nil, raw = t }
end

-- the request's tools as canonical tools -> list | nil (none) | nil, err
function tools_of(req)
  if req.tools == nil or req.tools == null then return nil end
  if not is_array(req.tools) then return bad("tools: Input should be a valid list") end
  local out = {}
  for i, t in ipairs(req.tools) do
    local tool, err = tool_of(t, i)
    if not tool then return nil, err end
    out[i] = tool
  end
  return out
end

-- what is carried upstream as the client's text unless read (json.object's
-- hollow, docs/TRANSLATION.md): each tool's input_schema and description,
-- and each tool result's content when it is a string (the bulk of an
-- agent's turn: files, command output)
local hollow = {
  tools = { { path = { "input_schema" }, kind = "object" }, { path = { "description" }, kind = "string" } },
  messages = { { path = { "content", "content" }, kind = "string",
    when = { "type", "tool_result" } } },
}

--- decode(body, headers [, opts]) -> canonical request | nil, err
-- Checks what the gateway reads to route and to translate; the rest
-- (roles, blocks) is looked at only when the request is translated.
-- opts.count_only: a count_tokens request (no max_tokens).
function M.decode(body, headers, opts)
  opts = opts or {}
  if body == nil or body == "" then return bad("the request body is empty; expected a JSON object") end
  -- the top level, its nested values decoded when first read (json.object):
  -- a passthrough reads few of them; some stay the client's text (hollow)
  local req, why, key = json.object(body, canonical.PACKED, { "model", "stream" }, hollow)
  if req == nil then
    if why == "duplicate" then return bad(key .. ": the field is given twice; give it once") end
    local _, perr = json.decode(body)
    if perr then return bad("invalid JSON in the request body: " .. perr) end
    return bad("the request body must be a JSON object")
  end
  local packed = why -- a string begins with canonical.PACKED
  if req.model == nil or req.model == null or req.model == "" then return bad("model: Field required") end
  if type(req.model) ~= "string" then return bad("model: Input should be a valid string") end
  if not opts.count_only then
    if req.max_tokens == nil then return bad("max_tokens: Field required") end
    if type(req.max_tokens) ~= "number" or req.max_tokens % 1 ~= 0 or req.max_tokens < 1 then
      return bad("max_tokens: Input should be a valid integer greater than 0")
    end
    if req.max_tokens > INT_MAX then -- 1e308 is an integer to JSON
      return bad(string.format("max_tokens: Input should be less than or equal to %d", INT_MAX))
    end
  end
  local mkind, mcount = json.span_kind(req, "messages")
  if not mkind then
    if not is_array(req.messages) then
      return bad(req.messages == nil and "messages: Field required" or "messages: Input should be a valid list")
    end
    mcount = #req.messages
  elseif mkind ~= "array" and mcount > 0 then
    return bad("messages: Input should be a valid list")
  end
  if mcount == 0 then return bad("messages: at least one message is required") end
  if req.stream ~= nil and type(req.stream) ~= "boolean" then return bad("stream: Input should be a valid boolean") end
  for name, hi in pairs(unit_range) do
    local v = req[name]
    if v ~= nil and v ~= null then
      if type(v) ~= "number" then return bad(name .. ": Input should be a valid number") end
      if not (v >= 0) then return bad(name .. ": Input should be greater than or equal to 0") end
      if v > hi then return bad(string.format("%s: Input should be less than or equal to %s", name, hi)) end
    end
  end
  if req.top_k ~= nil and req.top_k ~= null and (type(req.top_k) ~= "number" or req.top_k % 1 ~= 0 or req.top_k < 0) then
    return bad("top_k: Input should be a valid integer greater than or equal to 0")
  end
  if type(req.top_k) == "number" and req.top_k > INT_MAX then
    return bad(string.format("top_k: Input should be less than or equal to %d", INT_MAX))
  end
  if req.stop_sequences ~= nil and req.stop_sequences ~= null then
    if not is_array(req.stop_sequences) then return bad("stop_sequences: Input should be a valid list") end
    for i, s in ipairs(req.stop_sequences) do
      if type(s) ~= "string" then return bad(string.format("stop_sequences.%d: Input should be a valid string", i - 1)) end
    end
  end
  if req.tool_choice ~= nil and req.tool_choice ~= null and not is_object(req.tool_choice) then
    return bad("tool_choice: Input should be an object")
  end
  local creq = {
    client = "anthropic", model = req.model, stream = req.stream == true,
    max_tokens = req.max_tokens, temperature = req.temperature ~= null and req.temperature or nil,
    top_p = req.top_p ~= null and req.top_p or nil,
    stop = is_array(req.stop_sequences) and #req.stop_sequences > 0 and req.stop_sequences or nil,
    metadata = is_object(req.metadata) and req.metadata or nil,
    raw = req, include_usage = true,
  }
  if is_object(req.metadata) and type(req.metadata.user_id) == "string" then creq.user = req.metadata.user_id end
  -- system blocks and tools not read yet (a lazy object's) are judged by
  -- their kind now and made when a translation reads them (Lazy)
  local skind, scount = json.span_kind(req, "system")
  if skind then
    if skind ~= "array" and scount > 0 then return bad("system: Input should be a valid string or list of text blocks") end
  elseif req.system ~= nil and req.system ~= null then
    if type(req.system) ~= "string" and not is_array(req.system) then
      return bad("system: Input should be a valid string or list of text blocks")
    end
    -- blocks are separate paragraphs; a string goes upstream as the
    -- client wrote it (a raw string, json.raw_top) unless something reads it
    creq.system = json.raw_top(req, "system") or text_of(req.system, "\n\n")
  end
  setmetatable(creq, Lazy)
  local tkind, tcount = json.span_kind(req, "tools")
  if tkind then
    if tkind ~= "array" and tcount > 0 then return bad("tools: Input should be a valid list") end
  else
    local tools, terr = tools_of(req)
    if terr then return nil, terr end
    creq.tools = tools
  end
  creq.system_made, creq.tools_made = not skind, not tkind
  if is_object(req.tool_choice) then
    local tc = req.tool_choice
    creq.tool_choice = { type = tc.type, name = tc.name }
    creq.disable_parallel = tc.disable_parallel_tool_use == true or nil
  end
  local oc = req.output_config
  if oc ~= nil and oc ~= null and not is_object(oc) then return bad("output_config: Input should be an object") end
  oc = is_object(oc) and oc or {}
  if oc.effort ~= nil and oc.effort ~= null and type(oc.effort) ~= "string" then
    return bad("output_config.effort: Input should be a valid string")
  end
  local th = is_object(req.thinking) and req.thinking or {}
  if th.type == "enabled" then
    local budget = th.budget_tokens
    if budget == nil or budget == null then return bad("thinking.budget_tokens: Field required") end
    if type(budget) ~= "number" or budget % 1 ~= 0 or budget < 1 then
      return bad("thinking.budget_tokens: Input should be a valid integer greater than 0")
    end
    creq.reasoning = { budget_tokens = budget, effort = oc.effort or reasoning.effort_for(budget) }
  elseif th.type == "adaptive" then
    creq.reasoning = { adaptive = true, effort = oc.effort }
  elseif type(oc.effort) == "string" and th.type ~= "disabled" then
    creq.reasoning = { effort = oc.effort, effort_only = true }
  end
  if th.type == "disabled" then creq.reasoning = { disabled = true } end
  local fmt = oc.format
  if (fmt == nil or fmt == null) and req.output_format ~= nil and req.output_format ~= null then
    fmt = req.output_format -- the structured-outputs beta's name for it
  end
  if fmt ~= nil and fmt ~= null then
    if not is_object(fmt) or fmt.type ~= "json_schema" or not is_object(fmt.schema) then
      return bad((oc.format and "output_config.format" or "output_format") .. ": expected {\"type\": \"json_schema\", \"schema\": {...}}")
    end
    creq.format = { type = "json_schema", schema = fmt.schema, strict = true } -- Anthropic's always holds
  end
  creq.raw_body = body
  creq.packed = packed
  creq.client_key = canonical.client_key(headers)
  creq.anthropic_beta = headers and headers["anthropic-beta"]
  return creq
end

-- Encoding ------------------------------------------------------------------

local stop_reasons = { stop = "end_turn", length = "max_tokens", tool_use = "tool_use", content_filter = "refusal" }

local random_id = canonical.random_id

local function frame(event, value)
  return { event = event, data = type(value) == "string" and value or json.encode(value) }
end

-- a content_block_delta frame, written out in Anthropic's own key order
-- (one string encoded per token, no tables to encode)
local function delta_frame(index, kind, field, text)
  return { event = "content_block_delta", data = string.format(
    '{"type":"content_block_delta","index":%d,"delta":{"type":"%s","%s":%s}}', index, kind, field, json.encode(text or "")) }
end

local Encoder = {}
Encoder.__index = Encoder

-- the canonical usage in Anthropic's words: input_tokens is the part of the
-- prompt neither read from nor written to the cache
local function usage_object(u)
  u = u or {}
  local cached, created = u.cached_tokens or 0, u.cache_creation_tokens or 0
  local out = { input_tokens = math.max((u.input_tokens or 0) - cached - created, 0), output_tokens = u.output_tokens or 0 }
  if u.cached_tokens then out.cache_read_input_tokens = cached end
  if u.cache_creation_tokens then out.cache_creation_input_tokens = created end
  return out
end

-- the same as JSON text, in Anthropic's key order when there is no cache
local function usage_json(u)
  local o = usage_object(u)
  if o.cache_read_input_tokens or o.cache_creation_input_tokens then return json.encode(o) end
  return string.format('{"input_tokens":%d,"output_tokens":%d}', o.input_tokens, o.output_tokens)
end

function M.stream_encoder(creq, meta)
  meta = meta or {}
  return setmetatable({ creq = creq, id = meta.id or random_id("msg_", 24), started = false,
    index = -1, open = nil, usage = nil, signature = nil }, Encoder)
end

-- ev: the first event; a "start" may know the prompt's tokens (an
-- Anthropic upstream's message_start does; OpenAI's count comes at the end)
function Encoder:ensure_started(out, ev)
  if self.started then return end
  self.started = true
  -- content: [] by hand: cjson would write an empty table as {}
  out[#out + 1] = frame("message_start", string.format(
    '{"type":"message_start","message":{"id":%s,"type":"message","role":"assistant","model":%s,' ..
    '"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":%d,"output_tokens":0}}}',
    json.encode(self.id), json.encode(self.creq.model), ev.type == "start" and ev.input_tokens or 0))
end

-- a thinking_signature event's value as the client carries it: another
-- kind of upstream's packed with its origin (docs/CANONICAL.md)
local function signature_of(ev)
  if ev.origin and ev.origin ~= "anthropic" then
    return canonical.pack_opaque(ev.origin, ev.item_id, ev.signature)
  end
  return ev.signature or ""
end

function Encoder:close_block(out)
  if not self.open then return end
  if self.open == "thinking" and self.signature then
    out[#out + 1] = delta_frame(self.index, "signature_delta", "signature", self.signature)
    self.signature = nil
  end
  out[#out + 1] = frame("content_block_stop", string.format('{"type":"content_block_stop","index":%d}', self.index))
  self.open = nil
end

function Encoder:open_block(out, kind, block)
  self:close_block(out)
  self.index = self.index + 1
  self.open = kind
  out[#out + 1] = frame("content_block_start", string.format(
    '{"type":"content_block_start","index":%d,"content_block":%s}', self.index, block))
end

--- enc:template(kind) -> {prefix, suffix, event} | nil: while the block a
-- delta of kind ("text" | "thinking") goes to is open, each such delta is
-- this frame around its JSON string, and changes nothing here; so the host
-- may write them itself (core._fetch_template) until another event comes
function Encoder:template(kind)
  if self.started and self.open == kind then
    local dt, field = kind == "text" and "text_delta" or "thinking_delta", kind == "text" and "text" or "thinking"
    return { prefix = string.format('{"type":"content_block_delta","index":%d,"delta":{"type":"%s","%s":', self.index,
      dt, field), suffix = "}}", event = "content_block_delta" }
  end
end

function Encoder:event(ev)
  local out = {}
  local t = ev.type
  if t ~= "usage" then self:ensure_started(out, ev) end
  if t == "text_delta" then
    if ev.text == "" then return out end
    if self.open ~= "text" then self:open_block(out, "text", '{"type":"text","text":""}') end
    out[#out + 1] = delta_frame(self.index, "text_delta", "text", ev.text)
  elseif t == "thinking_delta" then
    if self.open ~= "thinking" then
      self:open_block(out, "thinking", '{"type":"thinking","thinking":"","signature":""}')
    end
    out[#out + 1] = delta_frame(self.index, "thinking_delta", "thinking", ev.text)
  elseif t == "thinking_signature" then -- ends the thinking block (one with no text too)
    if self.open ~= "thinking" then
      self:open_block(out, "thinking", '{"type":"thinking","thinking":"","signature":""}')
    end
    self.signature = signature_of(ev)
    self:close_block(out)
  elseif t == "redacted_thinking" then -- a whole block: opened and closed at once
    self:open_block(out, "redacted_thinking", string.format('{"type":"redacted_thinking","data":%s}', json.encode(ev.data)))
    self:close_block(out)
  elseif t == "toolcall_start" then
    self:open_block(out, "tool", string.format('{"type":"tool_use","id":%s,"name":%s,"input":{}}',
      json.encode(ev.id or ("toolu_" .. self.index)), json.encode(ev.name or "")))
  elseif t == "toolcall_delta" then
    out[#out + 1] = delta_frame(self.index, "input_json_delta", "partial_json", ev.arguments)
  elseif t == "toolcall_end" then
    self:close_block(out)
  elseif t == "usage" then
    self.usage = ev
  elseif t == "done" then
    self:close_block(out)
    out[#out + 1] = frame("message_delta", string.format(
      '{"type":"message_delta","delta":{"stop_reason":%s,"stop_sequence":%s},"usage":%s}',
      json.encode(ev.stop_sequence and "stop_sequence" or stop_reasons[ev.reason] or "end_turn"),
      ev.stop_sequence and json.encode(ev.stop_sequence) or "null", usage_json(self.usage)))
    out[#out + 1] = frame("message_stop", '{"type":"message_stop"}')
  end
  return out
end

function Encoder:error(err)
  return { frame("error", errors.object("anthropic", err)) }
end

local Collector = {}
Collector.__index = Collector

function M.collector(creq, meta)
  meta = meta or {}
  return setmetatable({ creq = creq, id = meta.id or random_id("msg_", 24), blocks = {}, tools = {},
    reason = "stop" }, Collector)
end

function Collector:event(ev)
  local t, blocks = ev.type, self.blocks
  local last = blocks[#blocks]
  if t == "text_delta" then
    if ev.text == "" then return end
    if last and last.type == "text" then last.text = last.text .. ev.text
    else blocks[#blocks + 1] = { type = "text", text = ev.text } end
  elseif t == "thinking_delta" then
    if last and last.type == "thinking" and last.signature == "" then last.thinking = last.thinking .. ev.text
    else blocks[#blocks + 1] = { type = "thinking", thinking = ev.text, signature = "" } end
  elseif t == "thinking_signature" then -- ends the thinking block (one with no text too)
    if not (last and last.type == "thinking" and last.signature == "") then
      last = { type = "thinking", thinking = "" }
      blocks[#blocks + 1] = last
    end
    last.signature = signature_of(ev)
  elseif t == "redacted_thinking" then
    blocks[#blocks + 1] = { type = "redacted_thinking", data = ev.data }
  elseif t == "toolcall_start" then
    local b = { type = "tool_use", id = ev.id, name = ev.name, args = {} }
    self.tools[ev.index] = b
    blocks[#blocks + 1] = b
  elseif t == "toolcall_delta" then
    local b = self.tools[ev.index]
    if b then b.args[#b.args + 1] = ev.arguments end
  elseif t == "usage" then
    self.usage = ev
  elseif t == "done" then
    self.reason, self.stop_sequence = ev.reason, ev.stop_sequence
  end
end

function Collector:result()
  local content = {}
  for i, b in ipairs(self.blocks) do
    if b.type == "tool_use" then
      local input = json.decode(table.concat(b.args))
      -- typed by the tool's schema: an argument list that is empty stays []
      content[i] = { type = "tool_use", id = b.id, name = b.name,
        input = type(input) == "table" and json.typed(input, canonical.tool_schema(self.creq, b.name)) or json.decode("{}") }
    else
      content[i] = b
    end
  end
  if #content == 0 then content[1] = { type = "text", text = "" } end
  local u = self.usage or {}
  return {
    id = self.id, type = "message", role = "assistant", model = self.creq.model, content = content,
    stop_reason = self.stop_sequence and "stop_sequence" or stop_reasons[self.reason] or "end_turn",
    stop_sequence = self.stop_sequence or null,
    usage = usage_object(u),
  }
end

return M
