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

local function bad(msg)
  return nil, errors.new(400, msg)
end

local function is_array(v) return type(v) == "table" and json.is_array(v) end
local function is_object(v) return type(v) == "table" and v ~= null and (next(v) == nil or not json.is_array(v)) end

local function text_of(content)
  if type(content) == "string" then return content end
  local out = {}
  for _, b in ipairs(is_array(content) and content or {}) do
    if type(b) == "table" and b.type == "text" then out[#out + 1] = b.text end
  end
  return table.concat(out)
end

-- where a message (i) or one of its blocks (i, j) is, for an error (0-based,
-- as Anthropic names it); made only then
local function loc(i, j)
  if j then return string.format("messages.%d.content.%d", i - 1, j - 1) end
  return string.format("messages.%d", i - 1)
end

-- decode_block(b, i, j [, creq]) -> block | true | false | nil, err: checks
-- block j of message i; given the canonical request (its tools decoded),
-- returns its canonical block (false: a block that has none)
local function decode_block(b, i, j, creq)
  local make = creq ~= nil
  if not is_object(b) then return bad(loc(i, j) .. ": Input should be an object") end
  local t = b.type
  if t == "text" then
    if type(b.text) ~= "string" then return bad(loc(i, j) .. ".text: Input should be a valid string") end
    return make and { type = "text", text = b.text } or true
  elseif t == "image" then
    local s = is_object(b.source) and b.source or {}
    if s.type == "base64" then
      if type(s.data) ~= "string" or s.data == "" then return bad(loc(i, j) .. ".source.data: Field required") end
      if type(s.media_type) ~= "string" then return bad(loc(i, j) .. ".source.media_type: Field required") end
      return make and { type = "image", mime = s.media_type, data = s.data } or true
    end
    if s.type == "url" then
      if type(s.url) ~= "string" or s.url == "" then return bad(loc(i, j) .. ".source.url: Field required") end
      return make and { type = "image", url = s.url } or true
    end
    return bad(loc(i, j) .. ".source: unsupported image source")
  elseif t == "tool_use" then
    return make and { type = "tool_call", id = b.id, name = b.name,
      arguments = json.encode_raw(json.typed(b.input or json.decode("{}"), canonical.tool_schema(creq, b.name))) } or true
  elseif t == "tool_result" then
    return make and { type = "tool_result", tool_call_id = b.tool_use_id, content = text_of(b.content),
      is_error = b.is_error == true or nil } or true
  elseif t == "thinking" then
    return make and { type = "thinking", text = b.thinking or "", signature = b.signature } or true
  elseif t == "redacted_thinking" then
    if type(b.data) ~= "string" then return bad(loc(i, j) .. ".data: Field required") end
    return make and { type = "redacted_thinking", data = b.data } or true
  end
  return bad(string.format("%s.type: unsupported content block type '%s'", loc(i, j), tostring(t)))
end

-- walk_messages(msgs [, creq]) -> true | nil, err: checks every message;
-- given the canonical request, also makes creq.messages
local function walk_messages(msgs, creq)
  for i, m in ipairs(msgs) do
    if not is_object(m) then return bad(loc(i) .. ": Input should be an object") end
    if m.role ~= "user" and m.role ~= "assistant" then
      return bad(loc(i) .. ".role: Input should be 'user' or 'assistant'")
    end
    local blocks = creq and {}
    if type(m.content) == "string" then
      if blocks then blocks[1] = { type = "text", text = m.content } end
    elseif is_array(m.content) then
      for j, b in ipairs(m.content) do
        local blk, err = decode_block(b, i, j, creq)
        if blk == nil then return nil, err end
        if blocks and blk then blocks[#blocks + 1] = blk end
      end
    else
      return bad(loc(i) .. ".content: Input should be a valid string or list")
    end
    if creq then creq.messages[#creq.messages + 1] = { role = m.role, content = blocks } end
  end
  return true
end

-- The canonical messages are made the first time something reads
-- creq.messages: a translation does, a passthrough that forwards the
-- client's bytes never does. decode() has checked them, so this cannot fail.
local Lazy = { __index = function(creq, k)
  if k == "messages" then
    local list = {}
    rawset(creq, "messages", list)
    walk_messages(creq.raw.messages, creq)
    return list
  end
end }

-- the sampling numbers Anthropic takes from 0 to their maximum
local unit_range = { temperature = 1, top_p = 1 }

--- decode(body, headers) -> canonical request | nil, err
function M.decode(body, headers, opts)
  opts = opts or {}
  if body == nil or body == "" then return bad("the request body is empty; expected a JSON object") end
  local req, perr = json.decode(body)
  if req == nil then return bad("invalid JSON in the request body: " .. perr) end
  if not is_object(req) then return bad("the request body must be a JSON object") end
  if req.model == nil or req.model == null or req.model == "" then return bad("model: Field required") end
  if type(req.model) ~= "string" then return bad("model: Input should be a valid string") end
  if not opts.count_only then
    if req.max_tokens == nil then return bad("max_tokens: Field required") end
    if type(req.max_tokens) ~= "number" or req.max_tokens % 1 ~= 0 or req.max_tokens < 1 then
      return bad("max_tokens: Input should be a valid integer greater than 0")
    end
  end
  if not is_array(req.messages) then
    return bad(req.messages == nil and "messages: Field required" or "messages: Input should be a valid list")
  end
  if #req.messages == 0 then return bad("messages: at least one message is required") end
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
  if req.system ~= nil and req.system ~= null then
    if type(req.system) ~= "string" and not is_array(req.system) then
      return bad("system: Input should be a valid string or list of text blocks")
    end
    creq.system = text_of(req.system)
  end
  local ok, err = walk_messages(req.messages)
  if not ok then return nil, err end
  setmetatable(creq, Lazy)
  if req.tools ~= nil then
    if not is_array(req.tools) then return bad("tools: Input should be a valid list") end
    creq.tools = {}
    for i, t in ipairs(req.tools) do
      if not is_object(t) or type(t.name) ~= "string" then
        return bad(string.format("tools.%d.name: Field required", i - 1))
      end
      creq.tools[i] = { name = t.name, description = t.description, parameters = t.input_schema }
    end
  end
  if is_object(req.tool_choice) then
    local tc = req.tool_choice
    creq.tool_choice = { type = tc.type, name = tc.name }
    creq.disable_parallel = tc.disable_parallel_tool_use == true or nil
  end
  if is_object(req.thinking) and req.thinking.type == "enabled" then
    local budget = req.thinking.budget_tokens
    if budget == nil or budget == null then return bad("thinking.budget_tokens: Field required") end
    if type(budget) ~= "number" or budget % 1 ~= 0 or budget < 1 then
      return bad("thinking.budget_tokens: Input should be a valid integer greater than 0")
    end
    creq.reasoning = { budget_tokens = budget, effort = reasoning.effort_for(budget) }
  end
  creq.raw_body = body
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
  elseif t == "thinking_signature" then
    self.signature = ev.signature
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
    if last and last.type == "thinking" then last.thinking = last.thinking .. ev.text
    else blocks[#blocks + 1] = { type = "thinking", thinking = ev.text, signature = "" } end
  elseif t == "thinking_signature" then
    for i = #blocks, 1, -1 do
      if blocks[i].type == "thinking" then blocks[i].signature = ev.signature break end
    end
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
