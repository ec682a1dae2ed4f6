-- Front door: the Ollama API (POST /api/chat, POST /api/generate, GET
-- /api/tags, POST /api/show, GET /api/version, GET /api/ps), so that tools
-- written against Ollama reach any model the gateway routes.
-- decode: an Ollama chat or generate request -> canonical request (or an
-- error in Ollama's shape, {"error": "..."}); stream_encoder / collector:
-- canonical events -> NDJSON lines / the whole answer, the final line with
-- done_reason, the token counts and the durations in nanoseconds.
-- No adapter speaks Ollama's format: every request is translated
-- (docs/TRANSLATION.md, "Ollama client", says what becomes of each field).
-- Pure: the clock it stamps answers with is the host's (moongate.host); its
-- routes that need no upstream answer through the app's writer (app.http).
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"
local bit = require "bit"
local host = require "moongate.host"

local M = { client = "ollama" }

M.stream_kind = "ndjson"
M.request_headers = { "authorization", "x-api-key" }

-- The Ollama release whose API this door follows, for clients that ask
-- /api/version before they use a feature (think levels, tool_name)
M.ollama_version = "0.12.0"

local null = json.null
local fmt = string.format

-- Ollama's error shape: {"error": "..."} on every /api/ path. A model no
-- route serves is said in Ollama's words ("model 'x' not found"), which
-- clients read to offer a pull.
errors.shape(M.client, {
  prefixes = { "/api/" },
  object = function(err)
    if err.code == "model_not_found" then
      local name = tostring(err.message):match("^The model `(.*)` does not exist")
      if name then return { error = fmt("model '%s' not found", name) } end
    end
    return { error = err.message }
  end,
})

-- Clock ----------------------------------------------------------------------
-- The host's (moongate.host): the daemon's is luv's; without one, os.time()
-- and no durations.

-- rfc3339(t) -> t (seconds, with a fraction) as Ollama writes created_at:
-- UTC, the fraction's digits with trailing zeros trimmed (Go's
-- RFC3339Nano); the clock says microseconds, so six digits at most
local function rfc3339(t)
  local s = math.floor(t)
  local us = math.floor((t - s) * 1e6 + 0.5)
  if us >= 1000000 then s, us = s + 1, 0 end
  local frac = fmt("%06d", us):gsub("0+$", "")
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. (frac ~= "" and "." .. frac or "") .. "Z"
end
M.rfc3339 = rfc3339

local function wall() return host.wall() end
local function mono() return host.mono() end

-- Decoding -------------------------------------------------------------------

-- the type of a JSON value, in a refusal's words
local function jtype(v)
  if v == null then return "null" end
  local t = type(v)
  if t == "table" then return (next(v) ~= nil and json.is_array(v)) and "an array" or "an object" end
  if t == "number" then return "a number" end
  if t == "string" then return "a string" end
  if t == "boolean" then return "a boolean" end
  return t
end

local function refuse(param, why)
  errors.refuse(400, param .. ": " .. why, { param = param })
end
local function want(param, what, v) refuse(param, fmt("expected %s, got %s", what, jtype(v))) end

local function present(v) return v ~= nil and v ~= null end
local function is_array(v) return type(v) == "table" and json.is_array(v) end
local function is_object(v) return type(v) == "table" and v ~= null and (next(v) == nil or not json.is_array(v)) end

-- The fate of each top-level field (canonical.foreign_fields,
-- docs/TRANSLATION.md): "mapped", "drop", or why it is refused. Fields
-- whose fate depends on their value (logprobs, suffix, raw, template,
-- context) are "mapped" here and judged in decode.
local common_fields = {
  model = "mapped", stream = "mapped", format = "mapped", options = "mapped", think = "mapped",
  logprobs = "mapped", top_logprobs = "mapped",
  keep_alive = "drop", truncate = "drop", shift = "drop",
  _debug_render_only = "the gateway renders no prompt template: the upstream applies its own",
}
local function with_common(t)
  for k, v in pairs(common_fields) do t[k] = v end
  return t
end
M.chat_fields = with_common { messages = "mapped", tools = "mapped" }
M.generate_fields = with_common { prompt = "mapped", system = "mapped", images = "mapped",
  suffix = "mapped", raw = "mapped", template = "mapped", context = "mapped" }
M.fields = M.chat_fields

-- options: name -> "mapped" (read below), "drop" (a setting of Ollama's
-- runner or a sampling knob the canonical form has no place for)
local option_fates = {
  temperature = "mapped", top_p = "mapped", num_predict = "mapped", stop = "mapped", seed = "mapped",
  num_ctx = "drop", num_keep = "drop", num_batch = "drop", num_gpu = "drop", main_gpu = "drop",
  use_mmap = "drop", num_thread = "drop", draft_num_predict = "drop", top_k = "drop", min_p = "drop",
  typical_p = "drop", repeat_last_n = "drop", repeat_penalty = "drop", presence_penalty = "drop",
  frequency_penalty = "drop",
}

-- options -> canonical sampling fields on creq
local function decode_options(o, creq)
  if not present(o) then return end
  if not is_object(o) then want("options", "an object", o) end
  for k, v in pairs(o) do
    local fate = option_fates[k]
    if fate == nil then
      refuse("options." .. tostring(k), "unknown option, which the gateway cannot translate")
    elseif fate == "drop" and v ~= null then
      canonical.dropped(creq, "options." .. k)
    end
  end
  local function number(name)
    local v = o[name]
    if not present(v) then return nil end
    if type(v) ~= "number" or v ~= v then want("options." .. name, "a number", v) end
    return v
  end
  creq.temperature = number("temperature")
  creq.top_p = number("top_p")
  local n = number("num_predict")
  -- Ollama's -1 (and -2): no limit, the upstream's default
  if n and (n % 1 ~= 0 or n > 2147483647) then want("options.num_predict", "an integer of 32 bits", n) end
  if n and n > 0 then creq.max_tokens = n elseif n == 0 then refuse("options.num_predict", "0 asks for no answer; send 1 or more, or -1 for no limit") end
  local seed = number("seed")
  if seed then creq.seed = seed end
  local stop = o.stop
  if present(stop) then
    if type(stop) == "string" then stop = { stop } end
    if not is_array(stop) then want("options.stop", "an array of strings", stop) end
    for i, s in ipairs(stop) do
      if type(s) ~= "string" then want(fmt("options.stop[%d]", i - 1), "a string", s) end
    end
    if #stop > 0 then creq.stop = stop end
  end
end

-- think: true, false or a level -> the canonical reasoning parameters
local levels = { low = true, medium = true, high = true }
local function decode_think(v, creq)
  if not present(v) then return end
  if v == true then creq.reasoning = { effort = "medium" }
  elseif v == false then creq.reasoning = { disabled = true }
  elseif type(v) == "string" and levels[v] then creq.reasoning = { effort = v }
  else refuse("think", fmt("expected true, false, \"low\", \"medium\" or \"high\", got %s", type(v) == "string" and fmt("%q", v) or jtype(v))) end
end

-- format: "json" or a JSON schema -> the canonical output format
local function decode_format(v, creq)
  if not present(v) or v == "" then return end
  if v == "json" then creq.format = { type = "json_object" }
  elseif is_object(v) then creq.format = { type = "json_schema", schema = v }
  else refuse("format", fmt("expected \"json\" or a JSON schema (an object), got %s", type(v) == "string" and fmt("%q", v) or jtype(v))) end
end

-- the kind of image a bare base64 string holds, by its first bytes
local magic = { { "iVBORw0KGgo", "image/png" }, { "/9j/", "image/jpeg" }, { "R0lGOD", "image/gif" },
  { "UklGR", "image/webp" } }
local function image_block(v, param)
  if type(v) ~= "string" then want(param, "a base64 string", v) end
  local mime, data = canonical.data_url(v)
  if mime then return { type = "image", mime = mime, data = data } end
  for _, m in ipairs(magic) do
    if v:sub(1, #m[1]) == m[1] then return { type = "image", mime = m[2], data = v } end
  end
  refuse(param, "not a PNG, JPEG, GIF or WebP image in base64 (judged by its first bytes)")
end

local function images_of(list, param, blocks)
  if not present(list) then return blocks end
  if not is_array(list) then want(param, "an array of base64 strings", list) end
  for i, v in ipairs(list) do blocks[#blocks + 1] = image_block(v, fmt("%s[%d]", param, i - 1)) end
  return blocks
end

-- tools: Ollama's are OpenAI's function tools
local function decode_tools(tools, creq)
  if not present(tools) then return end
  if not is_array(tools) then want("tools", "an array", tools) end
  if #tools == 0 then return end
  creq.tools = {}
  for i, t in ipairs(tools) do
    local p = fmt("tools[%d]", i - 1)
    if not is_object(t) then want(p, "an object", t) end
    if present(t.type) and t.type ~= "function" then
      refuse(p .. ".type", fmt("a tool of type %q cannot be translated; only function tools can", tostring(t.type)))
    end
    local fn = t["function"]
    if not is_object(fn) or type(fn.name) ~= "string" or fn.name == "" then want(p .. ".function.name", "a non-empty string", is_object(fn) and fn.name or fn) end
    creq.tools[i] = { name = fn.name, description = type(fn.description) == "string" and fn.description ~= "" and fn.description or nil,
      parameters = is_object(fn.parameters) and fn.parameters or nil }
  end
end

-- a tool call's arguments (an object, or JSON text of one) -> JSON text
local function arguments_text(args, name, creq, param)
  if not present(args) then return "{}" end
  if type(args) == "string" then
    local v = json.decode(args)
    if not is_object(v) then want(param, "an object", args) end
    return args
  end
  if not is_object(args) then want(param, "an object", args) end
  -- empty lists the tool's schema says are lists stay lists
  return json.encode_raw(json.typed(args, canonical.tool_schema(creq, name)))
end

local roles = { system = true, user = true, assistant = true, tool = true }
local message_keys = { role = true, content = true, images = true, tool_calls = true, tool_name = true,
  tool_call_id = true, thinking = true }

-- messages -> creq.system (the leading system messages) and creq.messages.
-- Ollama's calls may have no id and its results name the tool, not the
-- call: a call without an id gets one (call_<message>_<n>), and a result
-- answers the first call still open with its tool_call_id, else with its
-- tool_name, else the first one open.
local function decode_messages(msgs, creq)
  if not is_array(msgs) then want("messages", "an array", msgs) end
  local list, system, open = {}, {}, {}
  for i, m in ipairs(msgs) do
    local p = fmt("messages[%d]", i - 1)
    if not is_object(m) then want(p, "an object", m) end
    local role = type(m.role) == "string" and m.role:lower() or m.role
    if not roles[role] then
      refuse(p .. ".role", fmt("expected \"system\", \"user\", \"assistant\" or \"tool\", got %s", type(role) == "string" and fmt("%q", role) or jtype(role)))
    end
    for k, v in pairs(m) do
      if not message_keys[k] and v ~= null then canonical.dropped(creq, "messages[]." .. tostring(k)) end
    end
    local content = m.content
    if present(content) and type(content) ~= "string" then want(p .. ".content", "a string", content) end
    content = present(content) and content or ""
    local blocks = {}
    if content ~= "" or role == "user" then blocks[1] = { type = "text", text = content } end
    images_of(m.images, p .. ".images", blocks)
    if role == "system" then
      if #list == 0 then system[#system + 1] = content
      else list[#list + 1] = { role = "system", content = { { type = "text", text = content } } } end
    elseif role == "tool" then
      local id, name = m.tool_call_id, m.tool_name
      local found
      for j, c in ipairs(open) do
        if (type(id) == "string" and c.id == id) or (type(id) ~= "string" and (type(name) ~= "string" or c.name == name)) then
          found = j
          break
        end
      end
      if found then id = table.remove(open, found).id
      elseif type(id) ~= "string" then
        refuse(p, fmt("a tool result that answers no earlier tool call%s: give the tool_name of a call in an earlier assistant message",
          type(name) == "string" and fmt(" named %q", name) or ""))
      end
      local result = { type = "tool_result", tool_call_id = id, content = content }
      for j = 2, #blocks do
        result.attachments = result.attachments or {}
        result.attachments[#result.attachments + 1] = blocks[j]
      end
      if blocks[1] and blocks[1].type ~= "text" then -- images alone
        result.attachments = result.attachments or {}
        table.insert(result.attachments, 1, blocks[1])
      end
      list[#list + 1] = { role = "tool", content = { result } }
    else
      if role == "assistant" then
        if present(m.thinking) then
          if type(m.thinking) ~= "string" then want(p .. ".thinking", "a string", m.thinking) end
          if m.thinking ~= "" then table.insert(blocks, 1, { type = "thinking", text = m.thinking }) end
        end
        if present(m.tool_calls) then
          if not is_array(m.tool_calls) then want(p .. ".tool_calls", "an array", m.tool_calls) end
          for j, tc in ipairs(m.tool_calls) do
            local tp = fmt("%s.tool_calls[%d]", p, j - 1)
            local fn = is_object(tc) and tc["function"]
            if not is_object(fn) or type(fn.name) ~= "string" then want(tp .. ".function.name", "a string", is_object(fn) and fn.name or fn) end
            local id = type(tc.id) == "string" and tc.id ~= "" and tc.id or fmt("call_%d_%d", i - 1, j - 1)
            blocks[#blocks + 1] = { type = "tool_call", id = id, name = fn.name,
              arguments = arguments_text(fn.arguments, fn.name, creq, tp .. ".function.arguments") }
            open[#open + 1] = { id = id, name = fn.name }
          end
        end
      end
      list[#list + 1] = { role = role, content = blocks }
    end
  end
  if #system > 0 then creq.system = table.concat(system, "\n\n") end
  creq.messages = list
end

-- the fields whose value alone decides (see M.*_fields): refused by name
local function judge_values(req, endpoint)
  if req.logprobs == true then refuse("logprobs", "the gateway does not carry log probabilities") end
  if endpoint ~= "generate" then return end
  if type(req.suffix) == "string" and req.suffix ~= "" then
    refuse("suffix", "a chat upstream does not insert a completion before a suffix")
  end
  if req.raw == true then
    refuse("raw", "the gateway sends no raw prompt: the prompt is templated (by the upstream, or by a prompt-mode provider); send raw: false (or none)")
  end
  if type(req.template) == "string" and req.template ~= "" then
    refuse("template", "the gateway renders no prompt template: the upstream applies its own")
  end
  if is_array(req.context) and #req.context > 0 then
    refuse("context", "the gateway keeps no token context between requests; send the conversation to /api/chat as messages")
  end
end

local function decode_request(body, endpoint)
  if body == nil or body == "" then errors.refuse(400, "missing request body") end
  local req, perr = json.decode(body)
  if not is_object(req) or not body:find("^%s*{") then
    errors.refuse(400, req == nil and ("invalid JSON in the request body: " .. tostring(perr)) or "the request body must be a JSON object")
  end
  local dup = json.duplicate_key(body, { "model", "stream" })
  if dup then refuse(dup, "the field is given twice in the request body; give it once") end
  -- a generate request without a prompt (or messages) is a chat request
  -- when the endpoint is not said: the fixtures' and unit specs' way in
  endpoint = endpoint or ((req.prompt ~= nil and req.messages == nil) and "generate" or "chat")
  if not present(req.model) or req.model == "" then errors.refuse(400, "model is required", { param = "model" }) end
  if type(req.model) ~= "string" then want("model", "a string", req.model) end
  if present(req.stream) and type(req.stream) ~= "boolean" then want("stream", "a boolean", req.stream) end
  local fields = endpoint == "generate" and M.generate_fields or M.chat_fields
  for k, v in pairs(req) do
    local fate = fields[k]
    if v == null then fate = "mapped" end
    if fate == nil then
      refuse(tostring(k), "unknown field, which the gateway cannot translate")
    elseif fate ~= "mapped" and fate ~= "drop" then
      refuse(tostring(k), fate)
    end
  end
  judge_values(req, endpoint)
  local creq = {
    client = M.client, endpoint = endpoint, model = req.model, ollama_model = req.model,
    stream = req.stream ~= false, -- Ollama streams unless told not to
    raw = req, raw_body = body, t0 = mono(),
  }
  for k, v in pairs(req) do
    if fields[k] == "drop" and v ~= null then canonical.dropped(creq, k) end
  end
  decode_options(req.options, creq)
  decode_think(req.think, creq)
  decode_format(req.format, creq)
  if endpoint == "generate" then
    if present(req.prompt) and type(req.prompt) ~= "string" then want("prompt", "a string", req.prompt) end
    if present(req.system) and type(req.system) ~= "string" then want("system", "a string", req.system) end
    local prompt = present(req.prompt) and req.prompt or ""
    local blocks = images_of(req.images, "images", { { type = "text", text = prompt } })
    if prompt == "" and #blocks == 1 then creq.load_only = true end
    creq.messages = { { role = "user", content = blocks } }
    if present(req.system) and req.system ~= "" then creq.system = req.system end
  else
    decode_tools(req.tools, creq) -- first: the calls' arguments are typed by their schemas
    if present(req.messages) then decode_messages(req.messages, creq) else creq.messages = {} end
    if #creq.messages == 0 then creq.load_only = true end
  end
  return setmetatable(creq, { __index = function(_, k) if k == "fields" then return fields end end })
end

--- decode(body, headers [, endpoint]) -> canonical request | nil, err
-- endpoint: "chat" or "generate" (the route says; unsaid, a body with a
-- prompt and no messages is a generate request). A request with nothing
-- to answer (no messages, or an empty prompt without images) is marked
-- load_only: Ollama answers it at once, done_reason "load".
function M.decode(body, headers, endpoint)
  local ok, res = errors.catch(decode_request, body, endpoint)
  if not ok then return nil, res end
  res.client_key = canonical.client_key(headers)
  return res
end

-- Encoding ---------------------------------------------------------------------
-- One NDJSON line per text or thinking delta and one per whole tool call
-- (the canonical call's deltas are kept until its end: Ollama's arguments
-- are an object), then the final line: done_reason ("length" for a cut
-- answer, else "stop": Ollama has no other), the usage's counts and the
-- durations in nanoseconds (total: from the request's decoding; prompt
-- eval: until the upstream's first event; eval: from then on; load: 0,
-- nothing is loaded here). Reasoning only its maker can read
-- (thinking_signature, redacted_thinking) has no place here: left out.

local floor = math.floor

-- stats(creq, first, usage) -> the final line's counts and durations
local function stats(creq, first, usage)
  local t0, now = creq.t0, mono()
  local total, before, after = 0, 0, 0
  if t0 and now then
    first = first or now
    total, before, after = now - t0, first - t0, now - first
  end
  return {
    total_duration = floor(total), load_duration = 0,
    prompt_eval_count = usage and usage.input_tokens or 0, prompt_eval_duration = floor(before),
    eval_count = usage and usage.output_tokens or 0, eval_duration = floor(after),
  }
end
local stat_keys = { "total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
  "eval_count", "eval_duration" }

-- tool_call(c, creq) -> Ollama's call: arguments as an object, its empty
-- lists kept as the tool's schema says (text that is no object: {})
local function tool_call(c, creq)
  local args = json.decode(table.concat(c.args))
  if not is_object(args) then args = {} end
  return { id = c.id, ["function"] = { index = c.n, name = c.name,
    arguments = json.typed(args, canonical.tool_schema(creq, c.name)) } }
end

-- calls: the tool calls being made, by canonical index
local function call_event(calls, ev)
  local t = ev.type
  if t == "toolcall_start" then
    calls.n = (calls.n or 0) + 1
    calls[ev.index] = { id = ev.id, name = ev.name, args = {}, n = calls.n - 1 }
    calls.order = calls.order or {}
    calls.order[#calls.order + 1] = ev.index
  elseif t == "toolcall_delta" then
    local c = calls[ev.index]
    if c then c.args[#c.args + 1] = ev.arguments or "" end
  end
end

local Encoder = {}
Encoder.__index = Encoder

--- stream_encoder(creq, meta) -> enc; enc:event(ev) -> list of NDJSON lines
-- meta: {created?}: a fixed time for every line (specs)
function M.stream_encoder(creq, meta)
  meta = meta or {}
  return setmetatable({ creq = creq, fixed = meta.created, calls = {}, generate = creq.endpoint == "generate",
    model = json.encode(creq.ollama_model or creq.model) }, Encoder)
end

function Encoder:line(body, done)
  return '{"model":' .. self.model .. ',"created_at":"' .. rfc3339(self.fixed or wall()) .. '",' .. body
    .. (done or ',"done":false}')
end

-- part(text, thinking, calls) -> one line's answer: a chat message or
-- generate's response
function Encoder:part(text, thinking, calls)
  if self.generate then
    local s = '"response":' .. json.encode(text)
    if thinking then s = s .. ',"thinking":' .. json.encode(thinking) end
    if calls then s = s .. ',"tool_calls":' .. json.encode_raw(calls) end
    return s
  end
  return '"message":' .. json.encode_raw({ role = "assistant", content = text, thinking = thinking, tool_calls = calls })
end

function Encoder:flush(out, index)
  local c = self.calls[index]
  if not c or c.sent then return end
  c.sent = true
  out[#out + 1] = self:line(self:part("", nil, { tool_call(c, self.creq) }))
end

function Encoder:event(ev)
  local out, t = {}, ev.type
  self.first = self.first or mono()
  if t == "text_delta" then
    if ev.text ~= "" then out[1] = self:line(self:part(ev.text)) end
  elseif t == "thinking_delta" then
    if ev.text ~= "" then out[1] = self:line(self:part("", ev.text)) end
  elseif t == "toolcall_start" or t == "toolcall_delta" then
    call_event(self.calls, ev)
  elseif t == "toolcall_end" then
    self:flush(out, ev.index)
  elseif t == "usage" then
    self.usage = ev
  elseif t == "done" then
    for _, i in ipairs(self.calls.order or {}) do self:flush(out, i) end -- a call the upstream never ended
    local s = stats(self.creq, self.first, self.usage)
    local tail = { ',"done":true,"done_reason":', json.encode(ev.reason == "length" and "length" or "stop") }
    for _, k in ipairs(stat_keys) do tail[#tail + 1] = fmt(',"%s":%.0f', k, s[k]) end
    tail[#tail + 1] = "}"
    out[#out + 1] = self:line(self:part(""), table.concat(tail))
  end
  return out
end

--- error(err) -> one line {"error": "..."}: ollama clients throw on it
function Encoder:error(err)
  return { errors.body(M.client, err) }
end

local Collector = {}
Collector.__index = Collector

--- collector(creq, meta) -> col; col:event(ev); col:result() -> the answer
function M.collector(creq, meta)
  meta = meta or {}
  return setmetatable({ creq = creq, fixed = meta.created, text = {}, thinking = {}, calls = {}, reason = "stop" }, Collector)
end

function Collector:event(ev)
  local t = ev.type
  self.first = self.first or mono()
  if t == "text_delta" then self.text[#self.text + 1] = ev.text
  elseif t == "thinking_delta" then self.thinking[#self.thinking + 1] = ev.text
  elseif t == "toolcall_start" or t == "toolcall_delta" then call_event(self.calls, ev)
  elseif t == "usage" then self.usage = ev
  elseif t == "done" then self.reason = ev.reason
  end
end

function Collector:result()
  local creq = self.creq
  local out = stats(creq, self.first, self.usage)
  out.model = creq.ollama_model or creq.model
  out.created_at = rfc3339(self.fixed or wall())
  out.done = true
  out.done_reason = self.reason == "length" and "length" or "stop"
  local calls
  for _, i in ipairs(self.calls.order or {}) do
    calls = calls or {}
    calls[#calls + 1] = tool_call(self.calls[i], creq)
  end
  local thinking = #self.thinking > 0 and table.concat(self.thinking) or nil
  if creq.endpoint == "generate" then
    out.response, out.thinking, out.tool_calls = table.concat(self.text), thinking, calls
  else
    out.message = { role = "assistant", content = table.concat(self.text), thinking = thinking, tool_calls = calls }
  end
  return out
end

-- Routing ----------------------------------------------------------------------

-- resolve(app, name) -> route | nil, err: Ollama's names may carry the tag
-- ":latest", which Ollama reads as the bare name
local function resolve(app, name)
  local route, err = app.router:resolve(name)
  if not route and type(name) == "string" and name:find(":latest$") then
    local bare = name:sub(1, -#":latest" - 1)
    if bare ~= "" then route = app.router:resolve(bare) end
    if route then return route, nil, bare end
  end
  return route, err, name
end

--- prepare(creq, app): a name with ":latest" that only the bare name routes
function M.prepare(creq, app)
  local route, _, name = resolve(app, creq.model)
  if route then creq.model = name end
end

-- What a model's route can do, by its first provider's wire format: a
-- chat upstream (OpenAI, Anthropic or Responses format) calls tools, reads
-- images and takes the reasoning parameters; any other (the built-in echo,
-- the WS workers, a raw completion back end) completes text only.
local chat_formats = { openai = true, anthropic = true, responses = true }
function M.capabilities(route)
  local p = route and route.chain[1] and route.chain[1].provider
  local a = type(p) == "table" and p.adapter
  if type(a) == "table" and chat_formats[a.format] then return { "completion", "tools", "vision", "thinking" } end
  return { "completion" }
end

local function has(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end

--- accepts(creq, route) -> nil | err: what the model's route cannot do,
-- refused by the Ollama field that asks for it
function M.accepts(creq, route)
  local caps = M.capabilities(route)
  local function no(param, why) return errors.new(400, param .. ": " .. why, { param = param }) end
  if creq.tools and not has(caps, "tools") then
    return no("tools", fmt("model '%s' does not support tools", creq.ollama_model or creq.model))
  end
  for _, m in ipairs(creq.messages or {}) do
    for _, b in ipairs(m.content) do
      if b.type == "image" and not has(caps, "vision") then
        return no(creq.endpoint == "generate" and "images" or "messages[].images",
          fmt("model '%s' does not read images", creq.ollama_model or creq.model))
      end
    end
  end
  local p = route.chain[1].provider
  if creq.format and creq.format.type == "json_object" and type(p) == "table" and p.adapter and p.adapter.format == "anthropic" then
    return no("format", "\"json\" cannot be asked of an Anthropic-format upstream, which holds answers to a JSON schema only; send format as a schema")
  end
end

-- The answers that need no upstream --------------------------------------------

-- digest(name) -> 64 hex digits made of the name (Ollama's is a file's
-- SHA-256; a routed model has no file): stable, so clients that key on it
-- see the same model each time
local function digest(name)
  local out = {}
  for round = 1, 8 do
    local h = bit.tobit(2166136261 + round * 16777619)
    for i = 1, #name do h = bit.tobit(bit.bxor(h, name:byte(i)) * 16777619) end
    out[round] = bit.tohex(h, 8)
  end
  return table.concat(out)
end

local function details(route)
  local p = route and route.chain[1] and route.chain[1].provider
  local family = type(p) == "table" and tostring(p.kind or "moongate") or "moongate"
  local a = type(p) == "table" and p.adapter
  return { parent_model = "", format = type(a) == "table" and a.format or family, family = family,
    families = { family }, parameter_size = "", quantization_level = "" }
end

local function modified_at(app) return rfc3339(app.created or os.time()) end

-- GET /api/tags: the models the routes serve
local function tags(app, req)
  local models = {}
  for i, id in ipairs(app.router:models()) do
    models[i] = { name = id, model = id, modified_at = modified_at(app), size = 0, digest = digest(id),
      details = details(app.router:resolve(id)) }
  end
  return app.http.json(req, 200, { models = #models > 0 and models or json.empty_array })
end

-- POST /api/show {model | name}
local function show(app, req)
  local body = json.decode(req.body or "")
  local name = is_object(body) and (present(body.model) and body.model or body.name) or nil
  if type(name) ~= "string" or name == "" then
    return app.http.error(req, M.client, errors.new(400, "model is required", { param = "model" }))
  end
  local route, err = resolve(app, name)
  if not route then return app.http.error(req, M.client, err) end
  local d = details(route)
  return app.http.json(req, 200, {
    modelfile = fmt("# Served by moongate through provider %s\nFROM %s\n", route.chain[1].name, route.model),
    parameters = "", template = "{{ .Prompt }}", details = d,
    model_info = { ["general.architecture"] = d.family, ["general.basename"] = route.model },
    capabilities = M.capabilities(route), modified_at = modified_at(app),
  })
end

-- GET /api/version
local function version(app, req)
  return app.http.json(req, 200, { version = M.ollama_version })
end

-- GET /api/ps: the models loaded in memory. A gateway loads none: its
-- upstreams hold the models (docs/TRANSLATION.md).
local function ps(app, req)
  return app.http.json(req, 200, { models = json.empty_array })
end

-- the answer to a request with nothing to answer (Ollama loads the model)
local function load_answer(creq)
  local out = { model = creq.ollama_model, created_at = rfc3339(wall()), done = true, done_reason = "load" }
  if creq.endpoint == "generate" then out.response = "" else out.message = { role = "assistant", content = "" } end
  return out
end

-- POST /api/chat and /api/generate: decoded for their endpoint, then
-- served as every front door's request is (app:serve)
local function serve(endpoint)
  return function(app, req)
    local creq, err = M.decode(req.body, req.headers, endpoint)
    if creq and creq.load_only then
      local route, rerr = resolve(app, creq.model)
      if not route then return app.http.error(req, M.client, rerr) end
      return app.http.json(req, 200, load_answer(creq))
    end
    return app:serve(setmetatable({ decode = function() return creq, err end }, { __index = M }), req)
  end
end

-- What this front door serves (app.lua reads it). Its paths have no /v1.
M.routes = {
  ["POST /api/chat"] = serve("chat"),
  ["POST /api/generate"] = serve("generate"),
  ["GET /api/tags"] = tags,
  ["POST /api/show"] = show,
  ["GET /api/version"] = version,
  ["GET /api/ps"] = ps,
}

return M
