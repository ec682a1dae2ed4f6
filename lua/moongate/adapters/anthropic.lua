-- Provider adapter: Anthropic messages.
-- Pure: canonical request -> wire request; wire frame -> canonical events.
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"
local reasoning = require "moongate.reasoning"

local M = { format = "anthropic" }
local null = json.null

local function refuse(msg, param)
  errors.refuse(400, msg, { param = param })
end

-- a canonical image -> an Anthropic image block; by file id only from an
-- Anthropic client (another API's file id means nothing to Anthropic)
local function image_block(b, creq)
  if b.file_id then
    if creq.client ~= "anthropic" then
      local name = canonical.format_names[creq.client]
      refuse(string.format("an image given by file id from %s cannot be read by an Anthropic-format upstream, "
        .. "which reads only its own file ids; send it as base64 or a URL", name and ("an " .. name .. " client") or "a client of another API"))
    end
    return { type = "image", source = { type = "file", file_id = b.file_id } }
  end
  if b.url then return { type = "image", source = { type = "url", url = b.url } } end
  return { type = "image", source = { type = "base64", media_type = b.mime or "image/png", data = b.data or "" } }
end

-- base64 (and base64url) digit -> its value
local b64 = {}
do
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  for i = 1, 64 do b64[alphabet:byte(i)] = i - 1 end
  b64[("-"):byte()], b64[("_"):byte()] = 62, 63
end

-- base64 -> bytes (a text document sent as a file)
local function unbase64(s)
  local map = b64
  local out, acc, bits = {}, 0, 0
  for i = 1, #s do
    local v = map[s:byte(i)]
    if v then
      acc, bits = acc * 64 + v, bits + 6
      if bits >= 8 then
        bits = bits - 8
        local c = math.floor(acc / 2 ^ bits)
        out[#out + 1] = string.char(c)
        acc = acc - c * 2 ^ bits
      end
    end
  end
  return table.concat(out)
end

-- a canonical file -> an Anthropic block: a PDF is a document, an image
-- an image, plain text a text document
local function file_block(b, creq)
  if b.file_id then
    if creq.client ~= "anthropic" then
      refuse("a file given by OpenAI file id cannot be read by an Anthropic-format upstream; send it as file_data")
    end
    return { type = "document", source = { type = "file", file_id = b.file_id }, title = b.name }
  end
  if b.url then return { type = "document", source = { type = "url", url = b.url }, title = b.name } end
  local mime = b.mime or "application/pdf"
  if mime:find("^image/") then return image_block(b, creq) end
  if mime == "application/pdf" then
    return { type = "document", source = { type = "base64", media_type = mime, data = b.data or "" }, title = b.name }
  end
  if mime:find("^text/") then
    return { type = "document", source = { type = "text", media_type = "text/plain", data = unbase64(b.data or "") }, title = b.name }
  end
  refuse(string.format("a file of type %s cannot be sent to an Anthropic-format upstream, which reads PDFs, images and text", mime))
end

-- fields of an Anthropic client's request the translation writes itself;
-- the rest are copied as they came when the upstream speaks Anthropic too
local built = { model = true, messages = true, max_tokens = true, system = true, stream = true,
  temperature = true, top_p = true, stop_sequences = true, metadata = true, thinking = true,
  tools = true, tool_choice = true, output_config = true }

local function decode_args(s)
  local v = json.decode(s or "")
  if type(v) ~= "table" then return json.decode("{}") end
  return v
end

-- does the last assistant message call a tool without a thinking block
-- (signed, as Anthropic gave it) at its start?
local function tool_turn_without_thinking(msgs)
  for i = #msgs, 1, -1 do
    local m = msgs[i]
    if m.role == "assistant" then
      local first = m.content[1]
      if first and (first.type == "thinking" or first.type == "redacted_thinking") then return false end
      for _, b in ipairs(m.content) do
        if b.type == "tool_use" then return true end
      end
      return false
    end
  end
  return false
end

-- Anthropic's usage -> the canonical usage event: input_tokens counts the
-- whole prompt (OpenAI's prompt_tokens), cached_tokens and
-- cache_creation_tokens the parts read from and written to the cache
local function usage_event(u, output)
  local cached = tonumber(u.cache_read_input_tokens) or 0
  local created = tonumber(u.cache_creation_input_tokens) or 0
  return { type = "usage", input_tokens = (tonumber(u.input_tokens) or 0) + cached + created,
    output_tokens = output or tonumber(u.output_tokens) or 0,
    cached_tokens = cached > 0 and cached or nil, cache_creation_tokens = created > 0 and created or nil }
end

-- may an Anthropic upstream take system messages among the others? Only
-- with a beta that allows them, which the client asked for (Claude Code
-- 2.1 sends them under per-turn-control or mid-conversation-tool-changes)
local system_betas = { "mid-conversation-system", "per-turn-control", "mid-conversation-tool-changes" }
local function mid_system(creq)
  local b = creq.anthropic_beta
  if type(b) ~= "string" then return false end
  for _, name in ipairs(system_betas) do
    if b:find(name, 1, true) then return true end
  end
  return false
end

--- request(creq, conf) -> wire table
function M.request(creq, conf)
  conf = conf or {}
  canonical.foreign_fields(creq, "anthropic")
  if creq.n and creq.n > 1 then
    refuse("n: an Anthropic-format upstream gives one choice per request; send n: 1 (or none) and make several requests", "n")
  end
  if creq.logprobs or creq.top_logprobs then
    refuse("logprobs: an Anthropic-format upstream does not report log probabilities", creq.logprobs and "logprobs" or "top_logprobs")
  end
  if creq.audio_out then refuse("modalities: an Anthropic-format upstream does not answer with audio", "modalities") end
  local msgs, system = {}, {}
  if creq.system and creq.system ~= "" then system[1] = creq.system end
  local keep_system = mid_system(creq)
  local function push(role, block)
    local last = msgs[#msgs]
    if last and last.role == role then
      last.content[#last.content + 1] = block
    else
      msgs[#msgs + 1] = { role = role, content = { block } }
    end
  end
  for _, m in ipairs(creq.messages) do
    if m.role == "system" then
      local text = canonical.text(m.content, "\n\n")
      if keep_system then
        msgs[#msgs + 1] = { role = "system", content = text, output_config = m.output_config }
      elseif text ~= "" then -- folded into the system prompt, in order
        system[#system + 1] = text
      end
    else
      local role = m.role == "assistant" and "assistant" or "user"
      for _, b in ipairs(m.content) do
        if b.type == "text" then
          -- Anthropic refuses an empty text block (an OpenAI client's
          -- content "" beside its tool calls)
          if b.text ~= "" then push(role, { type = "text", text = b.text }) end
        elseif b.type == "image" then
          push(role, image_block(b, creq))
        elseif b.type == "file" then
          push(role, file_block(b, creq))
        elseif b.type == "audio" then
          refuse("input_audio: an Anthropic-format upstream does not take audio")
        elseif b.type == "tool_call" then
          push("assistant", { type = "tool_use", id = b.id, name = b.name,
            input = json.typed(decode_args(b.arguments), canonical.tool_schema(creq, b.name)) })
        elseif b.type == "tool_result" then
          local content = type(b.content) == "string" and b.content or json.encode(b.content)
          if b.attachments then
            -- Anthropic refuses an empty text block: the text only when there is some
            local list = content ~= "" and { { type = "text", text = content } } or {}
            for _, a in ipairs(b.attachments) do
              if a.type == "image" then list[#list + 1] = image_block(a, creq)
              elseif a.type == "file" then list[#list + 1] = file_block(a, creq)
              else refuse("a tool result holds text, images and documents only, not " .. tostring(a.type)) end
            end
            content = list
          end
          push("user", { type = "tool_result", tool_use_id = b.tool_call_id, content = content,
            is_error = b.is_error or nil })
        elseif b.type == "thinking" then
          if b.signature and b.signature ~= "" and (b.origin or "anthropic") == "anthropic" then
            push("assistant", { type = "thinking", thinking = b.text or "", signature = b.signature })
          elseif b.signature and b.signature ~= "" then -- only its maker can read it
            canonical.dropped(creq, "thinking from a " .. b.origin .. " upstream")
          else
            canonical.dropped(creq, "thinking without a signature")
          end
        elseif b.type == "redacted_thinking" then
          push("assistant", { type = "redacted_thinking", data = b.data })
        elseif b.type == "native" then
          if b.format == "anthropic" then push(role, b.block)
          elseif b.refuse then refuse(b.refuse)
          elseif b.text then push(role, { type = "text", text = b.text })
          else canonical.dropped(creq, b.drop or "block") end
        end
      end
    end
  end
  if #msgs == 0 then
    refuse("messages: an Anthropic-format upstream needs at least one user or assistant message with content", "messages")
  end
  local max_tokens = creq.max_tokens or conf.default_max_tokens or 4096
  if conf.max_output_tokens and max_tokens > conf.max_output_tokens then max_tokens = conf.max_output_tokens end
  local req = {
    model = creq.upstream_model or creq.model,
    messages = msgs,
    max_tokens = max_tokens,
    system = #system > 0 and canonical.join(system, "\n\n") or nil,
    stream = creq.stream or nil,
    temperature = creq.temperature,
    top_p = creq.top_p,
    stop_sequences = creq.stop,
    metadata = creq.user and { user_id = creq.user } or nil,
  }
  local r = creq.reasoning or {}
  local effort = r.effort
  if effort == "minimal" then effort = "low" end -- Anthropic's least
  effort = reasoning.clamp(effort, conf.efforts)
  local adaptive = r.adaptive or (conf.thinking == "adaptive" and r.effort and r.effort ~= "none" and not r.budget_tokens and not r.effort_only)
  local budget = not adaptive and not r.effort_only and (r.budget_tokens or reasoning.budget_for(r.effort))
  if (budget or adaptive) and tool_turn_without_thinking(msgs) then
    -- Anthropic refuses thinking when the last assistant turn called a tool
    -- without its signed thinking block first (an OpenAI client has nowhere
    -- to keep one): this request goes without thinking instead
    budget, adaptive = nil, nil
    canonical.dropped(creq, "thinking (the last tool call has no signed thinking block)")
  end
  local forced = creq.tool_choice and (creq.tool_choice.type == "any" or creq.tool_choice.type == "tool"
    or creq.tool_choice.type == "required")
  if (budget or adaptive) and forced and creq.tools and #creq.tools > 0 then
    -- Anthropic thinks only with tool_choice auto or none: the forced tool
    -- is what the client asked for, the thinking goes
    budget, adaptive = nil, nil
    canonical.dropped(creq, "thinking (a forced tool choice)")
  end
  local cap = conf.max_output_tokens
  if budget and cap and budget >= cap then
    -- the budget must fit under max_tokens, which the provider caps
    budget = cap - 1024
    if budget < 1024 then
      budget = nil
      canonical.dropped(creq, "thinking (max_output_tokens leaves no room for it)")
    end
  end
  if adaptive then
    req.thinking = { type = "adaptive" }
    if effort then req.output_config = { effort = effort } end
    req.temperature, req.top_p = nil, nil
  elseif budget and budget > 0 then
    req.thinking = { type = "enabled", budget_tokens = budget }
    if req.max_tokens <= budget then req.max_tokens = math.min(budget + 4096, cap or math.huge) end
    req.temperature, req.top_p = nil, nil -- thinking requires the defaults
  elseif r.effort_only and effort then
    req.output_config = { effort = effort }
  elseif r.disabled then
    req.thinking = { type = "disabled" }
  end
  if creq.format then
    if creq.format.type ~= "json_schema" or not creq.format.schema then
      refuse("response_format: an Anthropic-format upstream holds answers to a JSON schema only; send type json_schema with a schema", "response_format")
    end
    req.output_config = req.output_config or {}
    req.output_config.format = { type = "json_schema", schema = json.schema(creq.format.schema) }
    if creq.client ~= "anthropic" and (creq.format.name or creq.format.description) then
      canonical.dropped(creq, "response_format.json_schema name and description")
    end
  end
  if creq.tools and #creq.tools > 0 then
    req.tools = {}
    for i, t in ipairs(creq.tools) do
      if t.hosted then -- run by OpenAI's servers (web_search, file_search, ...): nothing to call here
        canonical.dropped(creq, "hosted tool " .. tostring(t.native))
      elseif t.native then
        refuse(string.format("tools[%d]: a tool of type '%s' cannot be sent to an Anthropic-format upstream; use a function tool", i - 1, t.native), "tools")
      elseif t.server or (t.raw and creq.client == "anthropic") then
        -- a server tool (only an Anthropic client names one), or an
        -- Anthropic client's own tool: as it came, its schema's lists kept
        req.tools[#req.tools + 1] = t.raw.input_schema and json.with(t.raw, "input_schema", json.schema(t.raw.input_schema)) or t.raw
      else
        req.tools[#req.tools + 1] = { name = t.name, description = t.description, strict = t.strict,
          input_schema = json.schema(t.parameters) or { type = "object", properties = json.decode("{}") } }
      end
    end
    if #req.tools == 0 then req.tools = nil end
  end
  -- one call at a time is a property of the tool choice here: "auto" when
  -- the client chose none
  local tc = creq.tool_choice or (creq.disable_parallel and { type = "auto" })
  if tc and req.tools then
    if tc.type == "native" then
      refuse(string.format("tool_choice: a choice of type '%s' cannot be sent to an Anthropic-format upstream; "
        .. "choose a function tool, auto, required or none", tostring(tc.kind)), "tool_choice")
    elseif tc.type == "none" then
      req.tool_choice = { type = "none" }
    else
      req.tool_choice = { type = tc.type == "required" and "any" or tc.type, name = tc.name,
        disable_parallel_tool_use = creq.disable_parallel }
    end
  end
  -- an Anthropic client's own fields reach an Anthropic upstream as they came
  if creq.client == "anthropic" and creq.raw then
    local th = creq.raw.thinking
    if req.thinking and type(th) == "table" and th.type == req.thinking.type then
      for k, v in pairs(th) do if req.thinking[k] == nil then req.thinking[k] = v end end
    end
    for k, v in pairs(json.whole(creq.raw)) do
      if req[k] == nil and not built[k] then req[k] = json.typed(v) end -- numbers in full
    end
    -- and so do the parts of output_config, metadata and thinking the
    -- translation does not write
    for _, k in ipairs { "output_config", "metadata" } do
      local orig = creq.raw[k]
      if type(orig) == "table" and orig ~= null then
        req[k] = req[k] or {}
        for kk, vv in pairs(orig) do if req[k][kk] == nil then req[k][kk] = vv end end
      end
    end
  end
  return req
end

M.stop_reasons = {
  end_turn = "stop", stop_sequence = "stop", pause_turn = "stop", max_tokens = "length",
  tool_use = "tool_use", refusal = "content_filter", model_context_window_exceeded = "length",
}

local error_status = {
  invalid_request_error = 400, authentication_error = 401, permission_error = 403,
  not_found_error = 404, request_too_large = 413, rate_limit_error = 429,
  api_error = 500, overloaded_error = 529,
}

-- a stream decoder's methods (dec:frame, dec:finish), shared by every stream
local Decoder = {}
Decoder.__index = Decoder

--- decoder() -> dec; dec:frame(data, event) -> events; dec:finish() -> events
function M.decoder()
  return setmetatable({ blocks = {}, ntools = 0, input = 0, output = 0, reason = nil, done = false, started = false }, Decoder)
end

function Decoder:frame(data, event)
  local ev = json.decode(data)
  if type(ev) ~= "table" then
    return { { type = "error", status = 502, message = "malformed frame from upstream: " .. tostring(data) } }
  end
  local t = ev.type or event
  local out = {}
  if t == "message_start" then
    local msg = type(ev.message) == "table" and ev.message or {}
    local u = type(msg.usage) == "table" and msg.usage or {}
    self.usage_in = u
    self.output = tonumber(u.output_tokens) or 0
    self.started = true
    out[1] = { type = "start", id = msg.id, model = msg.model, input_tokens = tonumber(u.input_tokens) }
  elseif t == "content_block_start" then
    local cb = type(ev.content_block) == "table" and ev.content_block or {}
    local b = { kind = cb.type }
    self.blocks[ev.index or 0] = b
    if cb.type == "tool_use" then
      b.tool = self.ntools
      self.ntools = self.ntools + 1
      out[1] = { type = "toolcall_start", index = b.tool, id = cb.id, name = cb.name }
    elseif cb.type == "text" and type(cb.text) == "string" and cb.text ~= "" then
      out[1] = { type = "text_delta", text = cb.text }
    elseif cb.type == "redacted_thinking" and type(cb.data) == "string" then
      out[1] = { type = "redacted_thinking", data = cb.data }
    end
  elseif t == "content_block_delta" then
    local b = self.blocks[ev.index or 0] or {}
    local delta = type(ev.delta) == "table" and ev.delta or {}
    if delta.type == "text_delta" then
      out[1] = { type = "text_delta", text = delta.text or "" }
    elseif delta.type == "input_json_delta" then
      if delta.partial_json and delta.partial_json ~= "" then
        out[1] = { type = "toolcall_delta", index = b.tool or 0, arguments = delta.partial_json }
      end
    elseif delta.type == "thinking_delta" then
      out[1] = { type = "thinking_delta", text = delta.thinking or "" }
    elseif delta.type == "signature_delta" then
      out[1] = { type = "thinking_signature", signature = delta.signature }
    end
  elseif t == "content_block_stop" then
    local b = self.blocks[ev.index or 0] or {}
    if b.kind == "tool_use" then out[1] = { type = "toolcall_end", index = b.tool } end
  elseif t == "message_delta" then
    local delta = type(ev.delta) == "table" and ev.delta or {}
    if delta.stop_reason and delta.stop_reason ~= null then
      self.reason = M.stop_reasons[delta.stop_reason] or "stop"
    end
    if type(delta.stop_sequence) == "string" then self.stop_sequence = delta.stop_sequence end
    local u = type(ev.usage) == "table" and ev.usage or {}
    if u.output_tokens then self.output = tonumber(u.output_tokens) or self.output end
    if u.input_tokens and u.input_tokens ~= null then self.usage_in = u end
  elseif t == "message_stop" then
    return self:finish()
  elseif t == "error" then
    local e = type(ev.error) == "table" and ev.error or {}
    out[1] = { type = "error", status = error_status[e.type] or 502, message = errors.words(e.message) or "upstream error",
      retryable = e.type == "overloaded_error" or e.type == "api_error" }
  end
  return out
end

function Decoder:finish()
  if self.done then return {} end
  self.done = true
  if not self.reason then
    return { { type = "error", status = 502, message = "the upstream stream ended before message_stop" } }
  end
  return {
    usage_event(self.usage_in or {}, self.output),
    { type = "done", reason = self.reason, stop_sequence = self.stop_sequence },
  }
end

--- response(body_table, creq) -> events for a whole answer
function M.response(body, creq)
  if type(body) ~= "table" or type(body.content) ~= "table" then
    return { { type = "error", status = 502, message = "malformed answer from upstream" } }
  end
  local out = { { type = "start", id = body.id, model = body.model } }
  local ntools = 0
  for _, b in ipairs(body.content) do
    if b.type == "text" then
      out[#out + 1] = { type = "text_delta", text = b.text or "" }
    elseif b.type == "thinking" then
      out[#out + 1] = { type = "thinking_delta", text = b.thinking or "" }
      if b.signature then out[#out + 1] = { type = "thinking_signature", signature = b.signature } end
    elseif b.type == "redacted_thinking" and type(b.data) == "string" then
      out[#out + 1] = { type = "redacted_thinking", data = b.data }
    elseif b.type == "tool_use" then
      canonical.tool_call_events(out, ntools, b.id, b.name,
        json.encode_raw(json.typed(b.input or {}, canonical.tool_schema(creq, b.name))))
      ntools = ntools + 1
    end
  end
  local u = type(body.usage) == "table" and body.usage or {}
  out[#out + 1] = usage_event(u)
  out[#out + 1] = { type = "done", reason = M.stop_reasons[body.stop_reason] or "stop",
    stop_sequence = type(body.stop_sequence) == "string" and body.stop_sequence or nil }
  return out
end


M.error_message = errors.upstream_message

M.path = "/v1/messages"
M.defaults = { base_url = "https://api.anthropic.com", key_env = "ANTHROPIC_API_KEY" }

-- How its stream ends (message_stop) and its error frames (an error event)
-- Its content_block_delta frames of text_delta and thinking_delta the host
-- may match itself (src/tmpl.c): the decoder turns each into one event and
-- keeps nothing of it.
M.text_frames = "anthropic"

M.stream_end = { events = { message_stop = true }, error_events = { error = true } }
M.count_path = "/v1/messages/count_tokens"

function M.headers(conf, key, creq)
  local h = { ["content-type"] = "application/json", ["anthropic-version"] = "2023-06-01",
    accept = "application/json, text/event-stream" }
  if key then h["x-api-key"] = key end
  if creq and creq.anthropic_beta then h["anthropic-beta"] = creq.anthropic_beta end
  return h
end

return M
