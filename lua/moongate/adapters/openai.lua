-- Provider adapter: OpenAI chat completions (every OpenAI-compatible
-- upstream: OpenAI, xAI, OpenRouter, vLLM, llama.cpp, Ollama's /v1).
-- Pure: canonical request -> wire request; wire frame -> canonical events.
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"

local M = { format = "openai" }
local null = json.null

local function image_url(b)
  if b.url then return b.url end
  return "data:" .. (b.mime or "image/png") .. ";base64," .. (b.data or "")
end

local function content_parts(blocks)
  local parts, only_text, texts = {}, true, {}
  for _, b in ipairs(blocks) do
    if b.type == "text" then
      parts[#parts + 1] = { type = "text", text = b.text }
      texts[#texts + 1] = b.text
    elseif b.type == "image" then
      only_text = false
      parts[#parts + 1] = { type = "image_url", image_url = { url = image_url(b) } }
    end
  end
  if only_text then return table.concat(texts) end
  return parts
end

--- request(creq, conf) -> wire table (model is creq.upstream_model or creq.model)
function M.request(creq, conf)
  local msgs = {}
  if creq.system and creq.system ~= "" then
    msgs[1] = { role = "system", content = creq.system }
  end
  for _, m in ipairs(creq.messages) do
    if m.role == "tool" then
      for _, b in ipairs(m.content) do
        if b.type == "tool_result" then
          msgs[#msgs + 1] = { role = "tool", tool_call_id = b.tool_call_id,
            content = type(b.content) == "string" and b.content or json.encode(b.content) }
        end
      end
    elseif m.role == "assistant" then
      local text, calls, reasoning = {}, {}, {}
      for _, b in ipairs(m.content) do
        if b.type == "text" then text[#text + 1] = b.text
        elseif b.type == "thinking" then reasoning[#reasoning + 1] = b.text
        elseif b.type == "tool_call" then
          calls[#calls + 1] = { id = b.id, type = "function",
            ["function"] = { name = b.name, arguments = b.arguments or "{}" } }
        end
      end
      local msg = { role = "assistant", content = #text > 0 and table.concat(text) or (#calls > 0 and null or "") }
      if #calls > 0 then msg.tool_calls = calls end
      if #reasoning > 0 and conf and conf.send_reasoning then msg.reasoning_content = table.concat(reasoning) end
      msgs[#msgs + 1] = msg
    else
      -- tool results inside a user turn (Anthropic style) become tool messages
      local rest = {}
      for _, b in ipairs(m.content) do
        if b.type == "tool_result" then
          msgs[#msgs + 1] = { role = "tool", tool_call_id = b.tool_call_id,
            content = type(b.content) == "string" and b.content or json.encode(b.content) }
        else
          rest[#rest + 1] = b
        end
      end
      if #rest > 0 or #m.content == 0 then
        msgs[#msgs + 1] = { role = "user", content = content_parts(rest) }
      end
    end
  end
  local req = {
    model = creq.upstream_model or creq.model,
    messages = msgs,
    stream = creq.stream or nil,
    temperature = creq.temperature,
    top_p = creq.top_p,
    stop = creq.stop,
  }
  if creq.max_tokens then
    if conf and conf.max_tokens_field == "max_completion_tokens" then
      req.max_completion_tokens = creq.max_tokens
    else
      req.max_tokens = creq.max_tokens
    end
  end
  if creq.stream then req.stream_options = { include_usage = true } end
  if creq.reasoning and creq.reasoning.effort then req.reasoning_effort = creq.reasoning.effort end
  if creq.tools and #creq.tools > 0 then
    req.tools = {}
    for i, t in ipairs(creq.tools) do
      req.tools[i] = { type = "function", ["function"] = { name = t.name, description = t.description,
        parameters = json.schema(t.parameters) or { type = "object", properties = {} } } }
    end
  end
  if creq.disable_parallel and req.tools then req.parallel_tool_calls = false end
  local tc = creq.tool_choice
  if tc then
    if tc.type == "tool" then req.tool_choice = { type = "function", ["function"] = { name = tc.name } }
    elseif tc.type == "any" then req.tool_choice = "required"
    else req.tool_choice = tc.type end
  end
  -- unknown fields of an OpenAI client's request reach an OpenAI upstream
  if creq.client == "openai" and creq.raw then
    for k, v in pairs(creq.raw) do
      if req[k] == nil and k ~= "max_tokens" and k ~= "max_completion_tokens" and k ~= "stream_options"
        and k ~= "messages" and k ~= "tools" and k ~= "tool_choice" and k ~= "reasoning_effort" then
        req[k] = v
      end
    end
    -- a structured-output schema keeps its empty lists as a tool's does
    local rf = type(req.response_format) == "table" and req.response_format
    local js = rf and type(rf.json_schema) == "table" and rf.json_schema
    if js and type(js.schema) == "table" then -- copies: the client's request stays as it came
      local rf2, js2 = {}, {}
      for k, v in pairs(rf) do rf2[k] = v end
      for k, v in pairs(js) do js2[k] = v end
      js2.schema, rf2.json_schema = json.schema(js.schema), js2
      req.response_format = rf2
    end
  end
  return req
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
    local e = type(chunk.error) == "table" and chunk.error or { message = tostring(chunk.error) }
    return { { type = "error", status = 502, message = tostring(e.message or "upstream error") } }
  end
  if not self.started then
    self.started = true
    out[#out + 1] = { type = "start", id = chunk.id, model = chunk.model }
  end
  local ch = type(chunk.choices) == "table" and chunk.choices[1]
  if type(ch) == "table" then
    local delta = type(ch.delta) == "table" and ch.delta or {}
    text_events(out, delta)
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
  out[#out + 1] = { type = "done", reason = self.finish_reason or "stop" }
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
  text_events(out, msg)
  for i, tc in ipairs(type(msg.tool_calls) == "table" and msg.tool_calls or {}) do
    local fn = tc["function"] or {}
    canonical.tool_call_events(out, i - 1, tc.id, fn.name,
      type(fn.arguments) == "string" and fn.arguments
        or json.encode_raw(json.typed(fn.arguments or {}, canonical.tool_schema(creq, fn.name))))
  end
  local u = usage_event(body.usage)
  if u then out[#out + 1] = u end
  out[#out + 1] = { type = "done", reason = M.stop_reasons[ch.finish_reason] or "stop" }
  return out
end


M.error_message = errors.upstream_message

M.path = "/chat/completions"

--- headers(conf, key) -> request headers for the upstream
function M.headers(conf, key)
  local h = { ["content-type"] = "application/json", accept = "application/json, text/event-stream" }
  if key then h.authorization = "Bearer " .. key end
  return h
end

return M
