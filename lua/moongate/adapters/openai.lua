-- Provider adapter: OpenAI chat completions (every OpenAI-compatible
-- upstream: OpenAI, xAI, OpenRouter, vLLM, llama.cpp, Ollama's /v1).
-- Pure: canonical request -> wire request; wire frame -> canonical events.
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"
local common = require "moongate.adapters.openai_common"

local M = { format = "openai" }
local null = json.null

local function image_url(b)
  if b.url then return b.url end
  return "data:" .. (b.mime or "image/png") .. ";base64," .. (b.data or "")
end

local refuse = common.refuse

-- a canonical image or file block -> an OpenAI content part
local function media_part(b, creq)
  if b.type == "image" then
    if b.file_id then
      -- (whoever's: OpenAI's chat API takes images only as URLs)
      refuse("an image given by file id cannot be read by an OpenAI-format upstream, which takes images only "
        .. "as base64 or a URL; send it as one")
    end
    return { type = "image_url", image_url = { url = image_url(b) } }
  end
  -- a file: OpenAI takes a PDF as a data URL, or its own file ids
  if b.file_id then
    if creq.client ~= "openai" then
      refuse(string.format("a document given by file id from %s cannot be read by an OpenAI-format upstream, "
        .. "which takes file ids only from OpenAI chat clients; send it as base64", common.client_name(creq)))
    end
    return { type = "file", file = { file_id = b.file_id, filename = b.name } }
  end
  if b.url then
    refuse("a document given by URL cannot be sent to an OpenAI-format upstream, which takes files only as data; send it as base64")
  end
  if b.mime and b.mime:find("^image/") then
    return { type = "image_url", image_url = { url = image_url(b) } }
  end
  return { type = "file", file = { filename = b.name or "document.pdf",
    file_data = "data:" .. (b.mime or "application/pdf") .. ";base64," .. (b.data or "") } }
end

-- a block of another format's own (Anthropic's server-side blocks): its
-- text, dropped, or refused (docs/TRANSLATION.md)
local function native_part(b, creq)
  local text = common.native_text(b, creq)
  if text then return { type = "text", text = text } end
end

local function content_parts(blocks, creq)
  local parts, only_text, texts = {}, true, {}
  for _, b in ipairs(blocks) do
    local p
    if b.type == "text" then
      p = { type = "text", text = b.text }
    elseif b.type == "image" or b.type == "file" then
      p = media_part(b, creq)
    elseif b.type == "audio" then
      p = { type = "input_audio", input_audio = { data = b.data, format = b.format } }
    elseif b.type == "native" then
      p = native_part(b, creq)
    elseif b.type == "thinking" or b.type == "redacted_thinking" then
      canonical.dropped(creq, "thinking in a user turn")
    end
    if p then
      parts[#parts + 1] = p
      if p.type == "text" then texts[#texts + 1] = p.text else only_text = false end
    end
  end
  if only_text then return table.concat(texts) end
  return parts
end

-- a tool result's text as a tool message; its images and files, which a
-- tool message cannot hold, go in a user message after the tool messages
-- of that turn (pending)
local function tool_message(msgs, b, pending, creq)
  msgs[#msgs + 1] = { role = "tool", tool_call_id = b.tool_call_id, content = common.tool_result(b, pending, creq) }
end

local function flush_attachments(msgs, pending, creq)
  if #pending == 0 then return end
  local parts = content_parts(pending, creq)
  msgs[#msgs + 1] = { role = "user", content = parts }
  for i = #pending, 1, -1 do pending[i] = nil end
end

-- models that take max_completion_tokens and refuse max_tokens (OpenAI's
-- reasoning models), by name with or without a vendor prefix
local function wants_completion_tokens(model)
  local m = model:match("([^/]+)$") or model
  return m:find("^o%d") ~= nil or m:find("^gpt%-5") ~= nil
end

-- fields of an OpenAI client's request the translation writes itself; the
-- rest are copied as they came when the upstream speaks OpenAI too
local built = { model = true, messages = true, stream = true, stream_options = true, temperature = true,
  top_p = true, stop = true, max_tokens = true, max_completion_tokens = true, reasoning_effort = true,
  tools = true, tool_choice = true, parallel_tool_calls = true, response_format = true,
  functions = true, function_call = true, user = true }

local function response_format(f, creq)
  if f.type == "json_object" then return { type = "json_object" } end
  local strict = f.strict
  if strict and not common.keeps_strict(f.schema, creq, "openai", "the schema") then strict = nil end
  local name, description, schema = common.schema_format(f)
  return { type = "json_schema", json_schema = { name = name, description = description, schema = schema, strict = strict } }
end

--- request(creq, conf) -> wire table (model is creq.upstream_model or creq.model)
function M.request(creq, conf)
  conf = conf or {}
  canonical.foreign_fields(creq, "openai")
  local msgs, pending = {}, {}
  if creq.system and creq.system ~= "" then
    msgs[1] = { role = "system", content = creq.system }
  end
  for _, m in ipairs(creq.messages) do
    if m.role ~= "tool" then flush_attachments(msgs, pending, creq) end
    if m.role == "tool" then
      for _, b in ipairs(m.content) do
        if b.type == "tool_result" then tool_message(msgs, b, pending, creq) end
      end
    elseif m.role == "system" then
      msgs[#msgs + 1] = { role = "system", content = canonical.text(m.content, "\n\n") }
    elseif m.role == "assistant" then
      local text, calls, thoughts = {}, {}, {}
      for _, b in ipairs(m.content) do
        if b.type == "text" then text[#text + 1] = b.text
        elseif b.type == "thinking" then thoughts[#thoughts + 1] = b.text
        elseif b.type == "tool_call" then
          calls[#calls + 1] = { id = b.id, type = "function",
            ["function"] = { name = b.name, arguments = b.arguments or "{}" } }
        elseif b.type == "native" and b.format == "openai" then
          calls[#calls + 1] = b.block -- an OpenAI client's own call, as it came
        elseif b.type == "native" then
          local p = native_part(b, creq)
          if p then text[#text + 1] = p.text end
        elseif b.type == "redacted_thinking" then
          canonical.dropped(creq, "redacted_thinking")
        elseif b.type == "image" or b.type == "file" or b.type == "audio" then
          refuse("an assistant message of an OpenAI-format upstream holds text and tool calls only, not " .. b.type .. "s")
        end
      end
      local msg = { role = "assistant", content = #text > 0 and table.concat(text, "\n\n") or (#calls > 0 and null or "") }
      if #calls > 0 then msg.tool_calls = calls end
      if #thoughts > 0 then
        if conf.send_reasoning then msg.reasoning_content = table.concat(thoughts)
        else canonical.dropped(creq, "thinking") end
      end
      msgs[#msgs + 1] = msg
    else
      -- tool results inside a user turn (Anthropic style) become tool
      -- messages, which must come first, right after the calls
      local rest = {}
      for _, b in ipairs(m.content) do
        if b.type == "tool_result" then
          tool_message(msgs, b, pending, creq)
        else
          rest[#rest + 1] = b
        end
      end
      flush_attachments(msgs, pending, creq)
      if #rest > 0 or #m.content == 0 then
        msgs[#msgs + 1] = { role = "user", content = content_parts(rest, creq) }
      end
    end
  end
  flush_attachments(msgs, pending, creq)
  local req = {
    model = creq.upstream_model or creq.model,
    messages = msgs,
    stream = creq.stream or nil,
    temperature = creq.temperature,
    top_p = creq.top_p,
    stop = creq.stop,
    user = creq.user,
    seed = creq.seed, -- (an Ollama client's options.seed)
  }
  local max_tokens = common.max_tokens(creq, conf)
  if max_tokens then
    local field = conf.max_tokens_field
      or (wants_completion_tokens(req.model) and "max_completion_tokens" or "max_tokens")
    req[field] = max_tokens
  end
  if creq.stream then req.stream_options = { include_usage = true } end
  local r = creq.reasoning
  if r and r.effort then req.reasoning_effort = common.effort(r.effort, conf) end
  if creq.format then req.response_format = response_format(creq.format, creq) end
  if creq.tools and #creq.tools > 0 then
    req.tools = {}
    for _, t in ipairs(creq.tools) do
      if t.server then -- run by Anthropic's servers: no function to call here
        canonical.dropped(creq, "server tool " .. tostring(t.name))
      elseif t.hosted then -- run by OpenAI's Responses servers: nothing to call here
        canonical.dropped(creq, "hosted tool " .. tostring(t.native))
      elseif t.raw and creq.client == "openai" then
        -- an OpenAI client's own tool: as it came, its schema's lists kept
        local fn = t.raw["function"]
        req.tools[#req.tools + 1] = type(fn) == "table" and fn.parameters
          and json.with(t.raw, "function", json.with(fn, "parameters", json.schema(fn.parameters))) or t.raw
      else
        common.drop_tool_extras(t, creq)
        req.tools[#req.tools + 1] = { type = "function", ["function"] = { name = t.name, description = t.description,
          parameters = json.schema(t.parameters) or { type = "object", properties = {} }, strict = t.strict } }
      end
    end
    if #req.tools == 0 then req.tools = nil end
  end
  if creq.disable_parallel and req.tools then req.parallel_tool_calls = false end
  local tc = creq.tool_choice
  if tc and (req.tools or not creq.tools) then
    if tc.type == "tool" then req.tool_choice = { type = "function", ["function"] = { name = tc.name } }
    elseif tc.type == "any" then req.tool_choice = "required"
    elseif tc.type == "native" and tc.format == "openai" then req.tool_choice = tc.raw -- an OpenAI client's own
    elseif tc.type == "native" then
      refuse(string.format("tool_choice: a choice of type '%s' cannot be sent to an OpenAI chat upstream; "
        .. "choose a function tool, auto, required or none", tostring(tc.kind)), "tool_choice")
    else req.tool_choice = tc.type end
  end
  -- an OpenAI client's own fields reach an OpenAI upstream as they came
  if creq.client == "openai" and creq.raw then common.copy_own(req, creq.raw, built) end
  return req
end

--- effort_fields(creq, conf) -> the top-level fields (JSON text) that ask
-- this upstream for creq's reasoning effort, spliced into a client's own
-- body (a model suffix's effort on a passthrough)
function M.effort_fields(creq, conf)
  local effort = creq.reasoning and creq.reasoning.effort
  return { reasoning_effort = json.encode(common.effort(effort, conf)) }
end

M.stop_reasons = {
  stop = "stop", length = "length", tool_calls = "tool_use", function_call = "tool_use",
  content_filter = "content_filter",
}

local function reasoning_of(delta)
  local r = delta.reasoning_content
  if r == nil or r == null then r = delta.reasoning end
  if r == nil or r == null then r = delta.reasoning_text end
  if type(r) == "string" and r ~= "" then return r end
end

-- reasoning and text of a delta or a whole message, as events
local function text_events(out, m)
  local r = reasoning_of(m)
  if r then out[#out + 1] = { type = "thinking_delta", text = r } end
  if type(m.content) == "string" and m.content ~= "" then
    out[#out + 1] = { type = "text_delta", text = m.content }
  end
  -- a refusal is what the model said instead of an answer: its text
  if type(m.refusal) == "string" and m.refusal ~= "" then
    out[#out + 1] = { type = "text_delta", text = m.refusal }
    return true
  end
end

local function usage_event(u)
  if type(u) ~= "table" then return nil end
  local details = type(u.completion_tokens_details) == "table" and u.completion_tokens_details or {}
  local pdetails = type(u.prompt_tokens_details) == "table" and u.prompt_tokens_details or {}
  local cached = tonumber(pdetails.cached_tokens)
  return { type = "usage", input_tokens = tonumber(u.prompt_tokens) or 0,
    output_tokens = tonumber(u.completion_tokens) or 0,
    reasoning_tokens = tonumber(details.reasoning_tokens),
    cached_tokens = cached and cached > 0 and cached or nil }
end

-- a stream decoder's methods (dec:frame, dec:finish), shared by every stream
local Decoder = {}
Decoder.__index = Decoder

--- decoder() -> dec; dec:frame(data) -> events (SSE data of a stream), dec:finish() -> events
-- Tool calls are re-numbered from 0 in order of appearance and come out one
-- after another (start, argument fragments, end), as Anthropic's blocks
-- must: a call whose fragments arrive while an earlier one is still open
-- (a server that interleaves parallel calls) waits, buffered, until the
-- open call's arguments are a whole JSON value or the stream ends.
function M.decoder()
  return setmetatable({ started = false, calls = {}, ncalls = 0, done = false, waiting = {} }, Decoder)
end

local byte = string.byte

-- whole(c) -> are call c's arguments one whole JSON object (or array) yet?
-- Counts brackets outside strings over the fragments that came since it
-- last looked, so each byte is read once however often it is asked.
local function whole(c)
  if c.whole then return true end
  local parts, depth, in_str, esc = c.parts, c.depth or 0, c.in_str, c.esc
  for i = (c.scanned or 0) + 1, #parts do
    local s = parts[i]
    for j = 1, #s do
      local b = byte(s, j)
      if in_str then
        if esc then esc = false
        elseif b == 92 then esc = true -- backslash
        elseif b == 34 then in_str = false end
      elseif b == 34 then in_str = true
      elseif b == 123 or b == 91 then depth = depth + 1
      elseif (b == 125 or b == 93) and depth > 0 then
        depth = depth - 1
        if depth == 0 then c.whole = true; return true end
      end
    end
  end
  c.scanned, c.depth, c.in_str, c.esc = #parts, depth, in_str, esc
  return false
end

-- ends the open call and opens the next waiting one (with what it has
-- buffered), for as long as the open call's arguments are whole
local function next_call(self, out, force)
  while self.open and (#self.waiting > 0 or force) and (force or whole(self.open)) do
    out[#out + 1] = { type = "toolcall_end", index = self.open.index }
    local c = table.remove(self.waiting, 1)
    self.open = c
    if c then
      out[#out + 1] = { type = "toolcall_start", index = c.index, id = c.id, name = c.name }
      if #c.parts > 0 then
        out[#out + 1] = { type = "toolcall_delta", index = c.index, arguments = table.concat(c.parts) }
      end
    end
  end
end

function Decoder:frame(data)
  local out = {}
  if data == "[DONE]" then
    self.got_done = true
    return self:finish()
  end
  local chunk, err = json.decode(data)
  if type(chunk) ~= "table" then
    return { { type = "error", status = 502, message = "malformed frame from upstream: " .. tostring(err or data) } }
  end
  if chunk.error then
    local e = type(chunk.error) == "table" and chunk.error or { message = chunk.error }
    return { { type = "error", status = 502, message = errors.words(e.message) or "upstream error" } }
  end
  if not self.started then
    self.started = true
    out[#out + 1] = { type = "start", id = chunk.id, model = chunk.model }
  end
  local ch = type(chunk.choices) == "table" and chunk.choices[1]
  if type(ch) == "table" then
    local delta = type(ch.delta) == "table" and ch.delta or {}
    if text_events(out, delta) then self.refused = true end
    if type(delta.tool_calls) == "table" then
      for _, tc in ipairs(delta.tool_calls) do
        local key = tc.index or tc.id or 0
        local c = self.calls[key]
        if not c or (tc.id and tc.id ~= null and c.id ~= tc.id) then
          c = { index = self.ncalls, id = tc.id ~= null and tc.id or ("call_" .. self.ncalls),
            name = tc["function"] and tc["function"].name, parts = {} }
          self.ncalls = self.ncalls + 1
          self.calls[key] = c
          if self.open then
            self.waiting[#self.waiting + 1] = c
          else
            self.open = c
            out[#out + 1] = { type = "toolcall_start", index = c.index, id = c.id, name = c.name }
          end
        end
        local args = tc["function"] and tc["function"].arguments
        if type(args) == "string" and args ~= "" then
          c.parts[#c.parts + 1] = args
          if c == self.open then
            out[#out + 1] = { type = "toolcall_delta", index = c.index, arguments = args }
          end
        end
        next_call(self, out)
      end
    end
    if ch.finish_reason and ch.finish_reason ~= null then
      self.finish_reason = M.stop_reasons[ch.finish_reason] or "stop"
    end
  end
  local u = usage_event(chunk.usage ~= null and chunk.usage)
  if u then self.usage = u end
  return out
end

function Decoder:finish()
  if self.done then return {} end
  self.done = true
  if not self.got_done and not self.finish_reason then
    return { { type = "error", status = 502, message = "the upstream stream ended before it finished" } }
  end
  local out = {}
  if not self.started then out[#out + 1] = { type = "start" } end
  next_call(self, out, true)
  if self.usage then out[#out + 1] = self.usage end
  out[#out + 1] = { type = "done", reason = self.refused and "content_filter" or self.finish_reason or "stop" }
  return out
end

--- response(body_table, creq) -> events for a whole (non-streamed) answer
function M.response(body, creq)
  if type(body) ~= "table" or type(body.choices) ~= "table" then
    return { { type = "error", status = 502, message = "malformed answer from upstream" } }
  end
  local out = { { type = "start", id = body.id, model = body.model } }
  local ch = body.choices[1] or {}
  local msg = type(ch.message) == "table" and ch.message or {}
  local refused = text_events(out, msg)
  for i, tc in ipairs(type(msg.tool_calls) == "table" and msg.tool_calls or {}) do
    local fn = tc["function"] or {}
    canonical.tool_call_events(out, i - 1, tc.id, fn.name,
      type(fn.arguments) == "string" and fn.arguments
        or json.encode_raw(json.typed(fn.arguments or {}, canonical.tool_schema(creq, fn.name))))
  end
  local u = usage_event(body.usage)
  if u then out[#out + 1] = u end
  out[#out + 1] = { type = "done", reason = refused and "content_filter" or M.stop_reasons[ch.finish_reason] or "stop" }
  return out
end


M.error_message = errors.upstream_message

M.path = "/chat/completions"
M.defaults = { base_url = "https://api.openai.com/v1", key_env = "OPENAI_API_KEY" }

-- How its stream ends ([DONE]) and what an error frame looks like: OpenAI's
-- {"error": ...} or vLLM's {"object": "error", ...} (providers/upstream.lua)
-- Its plain text and reasoning deltas the host may match itself (src/tmpl.c:
-- a chunk of one choice whose delta holds only content, or only reasoning
-- text): the decoder turns each into one text_delta (thinking_delta) and
-- keeps nothing of it, so a steady stream's deltas need not come here.
M.text_frames = "openai"

M.stream_end = { data = "[DONE]", error_keys = { "error", "object=error" }, error_events = { error = true } }

--- headers(conf, key) -> request headers for the upstream
M.headers = common.headers

return M
