-- Front door: OpenAI chat completions (POST /v1/chat/completions).
-- decode: wire request -> canonical request (or an error in OpenAI's shape)
-- stream_encoder / collector: canonical events -> OpenAI chunks / body.
-- Pure: no host globals, tested without the daemon.
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"
local oc = require "moongate.frontdoor.openai_common"

local M = { client = "openai" }

-- What this front door serves (app.lua reads it): its routes (the value
-- names the App method; "serve" is the shared one), the prefix of its paths
-- (also without /v1: /chat/completions), its stream kind, the request
-- headers it reads. Its error shape is OpenAI's, errors.lua's default.
M.routes = { ["POST /v1/chat/completions"] = "serve" }
M.prefixes = { "/chat/" }
M.stream_kind = "sse"
M.request_headers = { "authorization", "x-api-key" }

local null = json.null

local roles = { system = true, developer = true, user = true, assistant = true, tool = true, ["function"] = true }
local efforts = { none = true, minimal = true, low = true, medium = true, high = true, xhigh = true }

local is_array, is_object, is_int, is_bool, is_string, is_number = oc.is_array, oc.is_object, oc.is_int, oc.is_bool, oc.is_string, oc.is_number
local invalid_type, invalid_value, missing = oc.invalid_type, oc.invalid_value, oc.missing
local refuse_type, refuse_value, range = oc.refuse_type, oc.refuse_value, oc.range

-- optional typed fields: name -> {what, check(v) -> ok [, range(v) -> nil | message]}
local checks = {
  stream = { "a boolean", is_bool },
  temperature = { "a number", is_number, range("decimal", 0, 2) },
  top_p = { "a number", is_number, range("decimal", 0, 1) },
  max_tokens = { "an integer", is_int, range("integer", 1, oc.INT_MAX) },
  max_completion_tokens = { "an integer", is_int, range("integer", 1, oc.INT_MAX) },
  n = { "an integer", is_int, range("integer", 1, oc.INT_MAX) },
  seed = { "an integer", is_int },
  stream_options = { "an object", is_object },
  tools = { "an array", is_array },
  metadata = { "an object", is_object },
  reasoning_effort = { "a string", is_string },
  logprobs = { "a boolean", is_bool },
  top_logprobs = { "an integer", is_int, range("integer", 0, 20) },
  parallel_tool_calls = { "a boolean", is_bool },
  user = { "a string", is_string },
}

-- the checks above as the fast path's rules (fast.lua), and the fields
-- decode() reads beyond them: a request that carries one of those (not
-- null) takes Lua's path
M.fast_checks = checks
M.fast_slow = { "stop", "reasoning_effort", "stream_options", "response_format", "functions", "function_call",
  "tool_choice", "modalities" }

-- The fate of each top-level field on its way to an upstream of another
-- format (canonical.foreign_fields, docs/TRANSLATION.md): "mapped", "drop",
-- or why it is refused.
M.fields = {
  model = "mapped", messages = "mapped", stream = "mapped", stream_options = "mapped",
  temperature = "mapped", top_p = "mapped", max_tokens = "mapped", max_completion_tokens = "mapped",
  stop = "mapped", tools = "mapped", tool_choice = "mapped", parallel_tool_calls = "mapped",
  response_format = "mapped", reasoning_effort = "mapped", n = "mapped", logprobs = "mapped",
  top_logprobs = "mapped", user = "mapped", functions = "mapped", function_call = "mapped",
  seed = "drop", metadata = "drop", store = "drop", frequency_penalty = "drop", presence_penalty = "drop",
  prediction = "drop", service_tier = "drop", verbosity = "drop", prompt_cache_key = "drop",
  prompt_cache_retention = "drop", safety_identifier = "drop",
  -- (refusals in words true of every other format: Anthropic's and the
  -- Responses API's alike)
  logit_bias = "token ids are the upstream model's own; an upstream of another format takes no logit_bias",
  modalities = "mapped", audio = "an upstream of another format does not answer with audio",
  web_search_options = "an upstream of another format searches the web only with a tool of its own, "
    .. "which the gateway does not make of web_search_options",
}

-- where message i, or part j of its content, is for an error (0-based, as
-- OpenAI names it); made only then
local function loc(i, suffix)
  return string.format("messages[%d]%s", i - 1, suffix or "")
end
local function part_loc(i, j, suffix)
  return loc(i, string.format(".content[%d]%s", j - 1, suffix or ""))
end

-- Canonical blocks are made only when a request is translated; what
-- cannot be carried to another format is refused then. A passthrough never
-- looks at them: the upstream judges what it does not know.

-- content (string | parts | null) of message mi -> canonical blocks
local function decode_content(content, mi, creq)
  local blocks = {}
  if content == nil or content == null then return blocks end
  if type(content) == "string" then
    blocks[1] = { type = "text", text = content }
    return blocks
  end
  if not is_array(content) then refuse_type(loc(mi, ".content"), "one of a string or an array", content) end
  for i, part in ipairs(content) do
    if not is_object(part) then refuse_type(part_loc(mi, i), "an object", part) end
    local t, b = part.type, nil
    if t == "text" or t == "input_text" or t == "output_text" then
      if type(part.text) ~= "string" then refuse_type(part_loc(mi, i, ".text"), "a string", part.text) end
      b = { type = "text", text = part.text }
    elseif t == "image_url" then
      local iu = part.image_url
      local url = type(iu) == "table" and iu.url or iu
      if type(url) ~= "string" then refuse_type(part_loc(mi, i, ".image_url.url"), "a string", url) end
      if type(iu) == "table" and iu.detail ~= nil then canonical.dropped(creq, "image_url.detail") end
      local mime, data = canonical.data_url(url)
      b = mime and { type = "image", mime = mime, data = data } or { type = "image", url = url }
    elseif t == "file" then
      local f = part.file
      if not is_object(f) then refuse_type(part_loc(mi, i, ".file"), "an object", f) end
      if type(f.file_data) == "string" then
        local mime, data = canonical.data_url(f.file_data)
        -- a bare base64 string (no data: URL) is a PDF, as OpenAI reads it
        b = { type = "file", mime = mime or "application/pdf", data = data or f.file_data,
          name = type(f.filename) == "string" and f.filename or nil }
      elseif type(f.file_id) == "string" then
        b = { type = "file", file_id = f.file_id, name = type(f.filename) == "string" and f.filename or nil }
      else
        refuse_value(part_loc(mi, i, ".file"), "expected file_data or file_id.")
      end
    elseif t == "input_audio" then
      local a = part.input_audio
      if not is_object(a) or type(a.data) ~= "string" then refuse_type(part_loc(mi, i, ".input_audio.data"), "a string", a) end
      b = { type = "audio", data = a.data, format = a.format }
    elseif t == "refusal" then
      b = { type = "text", text = type(part.refusal) == "string" and part.refusal or "" }
    else
      refuse_value(part_loc(mi, i, ".type"), string.format("content part type '%s' cannot be translated.", tostring(t)))
    end
    blocks[#blocks + 1] = b
  end
  return blocks
end

local text_of = canonical.text

-- the client's messages -> creq.messages and creq.system: the system and
-- developer messages before the first other one make the system prompt;
-- later ones stay in place, as canonical system messages
-- the keys of a message the translation reads; any other (a participant's
-- name, an assistant message's audio or annotations) is dropped, noted
local message_keys = { role = true, content = true, tool_calls = true, tool_call_id = true,
  function_call = true, reasoning_content = true, refusal = true }

local function decode_messages(msgs, creq)
  local system, list = {}, {}
  creq.messages = list
  for i, m in ipairs(msgs) do
    if not is_object(m) then refuse_type(loc(i), "an object", m) end
    for k, v in pairs(m) do
      if not message_keys[k] and v ~= null and not (k == "name" and m.role == "function") then
        canonical.dropped(creq, "messages[]." .. tostring(k))
      end
    end
    if m.role == "assistant" and type(m.refusal) == "string" and m.refusal ~= "" and (m.content == nil or m.content == null) then
      m = setmetatable({ content = m.refusal }, { __index = m }) -- what the model said instead of an answer
    end
    if type(m.role) ~= "string" or not roles[m.role] then
      errors.refuse(400, string.format("Invalid value: '%s'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.", tostring(m.role)),
        { param = loc(i, ".role"), code = "invalid_value" })
    end
    local blocks = decode_content(m.content, i, creq)
    if m.role == "system" or m.role == "developer" then
      local text = text_of(blocks, "\n\n")
      if json.raw_text(text) == '""' then text = "" end -- (an empty one is none)
      if #list == 0 then
        system[#system + 1] = text -- (raw, the client's text, when it is the one)
      else
        list[#list + 1] = { role = "system", content = { { type = "text", text = json.str(text) } } }
      end
    elseif m.role == "tool" or m.role == "function" then
      local id = m.role == "tool" and m.tool_call_id or m.name
      if type(id) ~= "string" then
        errors.refuse(400, string.format("Missing required parameter: '%s'.", loc(i, m.role == "tool" and ".tool_call_id" or ".name")),
          { param = loc(i, ".tool_call_id"), code = "missing_required_parameter" })
      end
      local result = { type = "tool_result", tool_call_id = id, content = text_of(blocks) }
      for _, b in ipairs(blocks) do
        if b.type ~= "text" then
          result.attachments = result.attachments or {}
          result.attachments[#result.attachments + 1] = b
        end
      end
      list[#list + 1] = { role = "tool", content = { result } }
    else
      if m.role == "assistant" then
        if m.tool_calls ~= nil and m.tool_calls ~= null then
          if not is_array(m.tool_calls) then refuse_type(loc(i, ".tool_calls"), "an array", m.tool_calls) end
          for j, tc in ipairs(m.tool_calls) do
            if not is_object(tc) then refuse_type(loc(i, string.format(".tool_calls[%d]", j - 1)), "an object", tc) end
            if is_object(tc["function"]) then
              blocks[#blocks + 1] = { type = "tool_call", id = tc.id, name = tc["function"].name,
                arguments = type(tc["function"].arguments) == "string" and tc["function"].arguments or "{}" }
            else -- a custom tool's call: only an OpenAI upstream knows it
              blocks[#blocks + 1] = { type = "native", format = "openai", block = tc,
                refuse = string.format("%s: a tool call of type '%s' cannot be translated; only function calls can",
                  loc(i, string.format(".tool_calls[%d]", j - 1)), tostring(tc.type)) }
            end
          end
        elseif is_object(m.function_call) then -- the legacy single call
          blocks[#blocks + 1] = { type = "tool_call", id = "call_" .. (m.function_call.name or i),
            name = m.function_call.name, arguments = type(m.function_call.arguments) == "string" and m.function_call.arguments or "{}" }
        end
        if type(m.reasoning_content) == "string" and m.reasoning_content ~= "" then
          table.insert(blocks, 1, { type = "thinking", text = m.reasoning_content })
        end
      end
      list[#list + 1] = { role = m.role, content = blocks }
    end
  end
  if #system > 0 then creq.system = canonical.join(system, "\n\n") end
end

-- the request's tools (or the legacy functions) as canonical tools -> list
-- | nil (none) | nil, err
local function tools_of(req)
  local tools = is_array(req.tools) and req.tools or nil
  if not tools and is_array(req.functions) then -- the legacy form of tools
    tools = {}
    for i, fn in ipairs(req.functions) do tools[i] = { type = "function", ["function"] = fn } end
  end
  if not tools then return nil end
  local out = {}
  for i, t in ipairs(tools) do
    local fn = is_object(t) and t["function"]
    if is_object(t) and t.type ~= nil and t.type ~= "function" then
      -- a tool of another type (custom, ...): the upstream judges it
      fn = { name = is_object(t[t.type]) and t[t.type].name or tostring(t.type) }
    elseif not is_object(fn) or type(fn.name) ~= "string" then
      return missing(string.format("tools[%d].function.name", i - 1))
    end
    out[i] = { name = fn.name, description = type(fn.description) == "string" and fn.description or nil,
      parameters = fn.parameters ~= null and fn.parameters or nil, strict = fn.strict == true or nil,
      raw = t, native = t.type ~= nil and t.type ~= "function" and t.type or nil }
  end
  return out
end

-- The canonical messages (and the system text drawn from them) are made the
-- first time something reads creq.messages or creq.system: a translation
-- does, a passthrough that forwards the client's bytes never does. What
-- cannot be translated is refused then.
local Lazy = { __index = function(creq, k)
  if (k == "messages" or k == "system") and rawget(creq, "messages") == nil then
    decode_messages(creq.raw.messages, creq)
    return rawget(creq, k)
  end
  -- tools the decode left for later (a lazy object's, unread): made now,
  -- once; a bad one is refused as the decode would have
  if k == "tools" and not rawget(creq, "tools_made") then return canonical.lazy_tools(creq, tools_of) end
  if k == "fields" then return M.fields end
end }

-- response_format -> the canonical format, or an error
local function format_of(rf)
  if not is_object(rf) then return invalid_type("response_format", "an object", rf) end
  if rf.type == "text" then return false end
  if rf.type == "json_object" then return { type = "json_object" } end
  if rf.type == "json_schema" then
    local js = rf.json_schema
    if not is_object(js) then return missing("response_format.json_schema") end
    if type(js.name) ~= "string" then return missing("response_format.json_schema.name") end
    return { type = "json_schema", name = js.name, schema = is_object(js.schema) and js.schema or nil,
      strict = js.strict == true or nil, description = type(js.description) == "string" and js.description or nil }
  end
  return invalid_value("response_format.type", string.format("'%s' is not one of 'text', 'json_object', 'json_schema'.", tostring(rf.type)))
end

-- what is carried upstream as the client's text unless read (json.object's
-- hollow, docs/TRANSLATION.md): each function tool's parameters and
-- description, and each tool message's content when it is a string
local hollow = {
  tools = { { path = { "function", "parameters" }, kind = "object" }, { path = { "function", "description" }, kind = "string" } },
  messages = { { path = { "content" }, kind = "string",
    when = { "role", "tool", "system", "developer" } } },
}

--- decode(body, headers) -> canonical request | nil, err
-- Checks what the gateway reads to route and to translate; the rest
-- (roles, content parts) is looked at only when the request is translated.
function M.decode(body, headers)
  local req, err = oc.body(body, { "model", "stream" }, canonical.PACKED, hollow)
  if not req then return nil, err end
  local packed = err -- a string begins with canonical.PACKED
  -- messages as the scan saw them: read (decoded) only by a translation
  local mkind, mcount = json.span_kind(req, "messages")
  if not mkind then
    if req.messages == nil or req.messages == null then return missing("messages") end
    if not is_array(req.messages) then return invalid_type("messages", "an array", req.messages) end
    mcount = #req.messages
  elseif mkind ~= "array" and mcount > 0 then
    return invalid_type("messages", "an array", req.messages)
  end
  if mcount == 0 then
    return nil, errors.new(400, "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
      { param = "messages", code = "empty_array" })
  end
  err = oc.fields(req, checks) or oc.stop(req.stop)
  if err then return nil, err end
  if type(req.reasoning_effort) == "string" and not efforts[req.reasoning_effort] then
    return invalid_value("reasoning_effort", string.format("'%s' is not one of 'none', 'minimal', 'low', 'medium', 'high', 'xhigh'.", req.reasoning_effort))
  end
  local so = req.stream_options
  if is_object(so) and so.include_usage ~= nil and type(so.include_usage) ~= "boolean" then
    return invalid_type("stream_options.include_usage", "a boolean", so.include_usage)
  end

  local creq = {
    client = "openai",
    model = req.model,
    stream = req.stream == true,
    include_usage = is_object(so) and so.include_usage == true or false,
    max_tokens = (req.max_completion_tokens ~= null and req.max_completion_tokens) or (req.max_tokens ~= null and req.max_tokens) or nil,
    temperature = req.temperature ~= null and req.temperature or nil,
    top_p = req.top_p ~= null and req.top_p or nil,
    stop = oc.stop_list(req.stop),
    reasoning = type(req.reasoning_effort) == "string" and { effort = req.reasoning_effort } or nil,
    metadata = is_object(req.metadata) and req.metadata or nil,
    raw = req,
  }
  -- fields most requests do not carry, set only when they do (a table
  -- constructor sizes itself for every key it names, nil or not)
  if type(req.n) == "number" then creq.n = req.n end
  if req.logprobs == true then creq.logprobs = true end
  if type(req.top_logprobs) == "number" and req.top_logprobs > 0 then creq.top_logprobs = req.top_logprobs end
  if type(req.user) == "string" then creq.user = req.user end
  if is_array(req.modalities) then
    for _, m in ipairs(req.modalities) do if m == "audio" then creq.audio_out = true end end
  end
  if req.response_format ~= nil and req.response_format ~= null then
    local f, err = format_of(req.response_format)
    if f == nil then return nil, err end
    creq.format = f or nil
  end
  setmetatable(creq, Lazy)
  creq.raw_body = body
  creq.packed = packed
  creq.client_key = canonical.client_key(headers)
  -- the canonical tools are made when a translation reads them (Lazy)
  if json.span_kind(req, "tools") == nil and json.span_kind(req, "functions") == nil then
    local tools, terr = tools_of(req)
    if terr then return nil, terr end
    creq.tools, creq.tools_made = tools, true
  end
  local tc = req.tool_choice
  if (tc == nil or tc == null) and req.function_call ~= nil and req.function_call ~= null then
    tc = type(req.function_call) == "string" and req.function_call or { ["function"] = req.function_call }
  end
  if tc ~= nil and tc ~= null then
    if type(tc) == "string" then
      creq.tool_choice = { type = tc == "required" and "any" or tc }
    elseif is_object(tc) and is_object(tc["function"]) then
      creq.tool_choice = { type = "tool", name = tc["function"].name }
    elseif is_object(tc) then -- allowed_tools, custom: the upstream judges
      creq.tool_choice = { type = "native", format = "openai", raw = tc, kind = tostring(tc.type) }
    else
      return invalid_type("tool_choice", "one of a string or an object", tc)
    end
  end
  creq.disable_parallel = req.parallel_tool_calls == false or nil
  return creq
end

-- Encoding ------------------------------------------------------------------

local finish_reasons = { stop = "stop", length = "length", tool_use = "tool_calls", content_filter = "content_filter" }

local random_id = canonical.random_id

local Encoder = {}
Encoder.__index = Encoder

--- stream_encoder(creq, meta) -> enc; enc:event(ev) -> list of SSE data strings
-- meta: {id?, created?}
function M.stream_encoder(creq, meta)
  meta = meta or {}
  local id = meta.id or random_id("chatcmpl-", 24)
  local created = meta.created or os.time()
  local head = string.format('{"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s,"system_fingerprint":null,"choices":',
    json.encode(id), created, json.encode(creq.model))
  return setmetatable({
    creq = creq, head = head,
    pre = head .. '[{"index":0,"delta":',
    started = false, usage = nil, tool_index = {},
  }, Encoder)
end

-- chunk(delta, finish): delta is a table, or its JSON text
function Encoder:chunk(delta, finish)
  return self.pre .. (type(delta) == "string" and delta or json.encode(delta)) .. ',"logprobs":null,"finish_reason":' ..
    (finish and json.encode(finish) or "null") .. "}]}"
end

--- enc:template(kind) -> {prefix, suffix} | nil: once started, each text
-- (or thinking) delta is this chunk around its JSON string, and changes
-- nothing here; so the host may write them itself (core._fetch_template)
function Encoder:template(kind)
  if self.started then
    return { prefix = self.pre .. (kind == "text" and '{"content":' or '{"reasoning_content":'),
      suffix = '},"logprobs":null,"finish_reason":null}]}' }
  end
end

function Encoder:ensure_started(out)
  if not self.started then
    self.started = true
    out[#out + 1] = self:chunk('{"role":"assistant","content":""}') -- in OpenAI's key order
  end
end

function Encoder:event(ev)
  local out = {}
  local t = ev.type
  if t == "start" then
    self:ensure_started(out)
  elseif t == "text_delta" then
    self:ensure_started(out)
    if ev.text ~= "" then out[#out + 1] = self:chunk({ content = ev.text }) end
  elseif t == "thinking_delta" then
    self:ensure_started(out)
    out[#out + 1] = self:chunk({ reasoning_content = ev.text })
  elseif t == "toolcall_start" then
    self:ensure_started(out)
    out[#out + 1] = self:chunk({ tool_calls = { { index = ev.index, id = ev.id, type = "function",
      ["function"] = { name = ev.name, arguments = "" } } } })
  elseif t == "toolcall_delta" then
    out[#out + 1] = self:chunk({ tool_calls = { { index = ev.index, ["function"] = { arguments = ev.arguments } } } })
  elseif t == "usage" then
    self.usage = ev
  elseif t == "done" then
    self:ensure_started(out)
    out[#out + 1] = self.pre .. '{},"logprobs":null,"finish_reason":' ..
      json.encode(finish_reasons[ev.reason] or "stop") .. "}]}"
    if self.creq.include_usage then
      out[#out + 1] = self.head .. '[],"usage":' .. json.encode(oc.usage_object(self.usage)) .. "}"
    end
    out[#out + 1] = "[DONE]"
  end
  return out
end

--- error(err) -> list of SSE data strings: an error object the SDK throws on
function Encoder:error(err)
  return { errors.body("openai", err) }
end

local Collector = {}
Collector.__index = Collector

--- collector(creq, meta) -> col; col:event(ev); col:result() -> response table
function M.collector(creq, meta)
  meta = meta or {}
  return setmetatable({
    creq = creq, id = meta.id or random_id("chatcmpl-", 24), created = meta.created or os.time(),
    text = {}, reasoning = {}, calls = {}, reason = "stop",
  }, Collector)
end

function Collector:event(ev)
  local t = ev.type
  if t == "text_delta" then
    self.text[#self.text + 1] = ev.text
  elseif t == "thinking_delta" then
    self.reasoning[#self.reasoning + 1] = ev.text
  elseif t == "toolcall_start" then
    self.calls[#self.calls + 1] = { index = ev.index, id = ev.id, name = ev.name, args = {} }
  elseif t == "toolcall_delta" then
    for _, c in ipairs(self.calls) do
      if c.index == ev.index then c.args[#c.args + 1] = ev.arguments end
    end
  elseif t == "usage" then
    self.usage = ev
  elseif t == "done" then
    self.reason = ev.reason
  end
end

function Collector:result()
  local message = { role = "assistant", refusal = null }
  local text = table.concat(self.text)
  message.content = (text == "" and #self.calls > 0) and null or text
  if #self.reasoning > 0 then message.reasoning_content = table.concat(self.reasoning) end
  if #self.calls > 0 then
    message.tool_calls = {}
    for i, c in ipairs(self.calls) do
      message.tool_calls[i] = { id = c.id, type = "function",
        ["function"] = { name = c.name, arguments = table.concat(c.args) } }
    end
  end
  return {
    id = self.id, object = "chat.completion", created = self.created, model = self.creq.model,
    system_fingerprint = null,
    choices = { { index = 0, message = message, logprobs = null,
      finish_reason = finish_reasons[self.reason] or "stop" } },
    usage = oc.usage_object(self.usage),
  }
end

return M
