-- Provider adapter: prompt mode (kind "prompt", docs/LOCAL.md). A chat
-- request served by a raw completion back end that knows no chat format:
-- the conversation becomes one prompt (a template, a Lua function the
-- operator may replace: conf.template), sent to an OpenAI-style legacy
-- completions endpoint (M.openai: POST {base_url}/completions) or to
-- llama.cpp's own (M.llamacpp: POST {base_url}/completion); the generated
-- text comes back as the assistant's text. A prompt holds text only: tools,
-- tool calls and results, images, files, audio and a JSON output format are
-- refused by name; thinking in the history and a reasoning effort are
-- dropped (noted). An empty or missing generation is an empty answer, never
-- an error (the kind logs a warning: providers/prompt.lua).
-- M.openai and M.llamacpp are each a whole adapter (docs/PROVIDERS.md); M
-- also has the pieces the kind and the specs use: messages, default
-- template, prompt, stops.
-- Pure: no host globals.
local json = require "moongate.json"
local errors = require "moongate.errors"
local secrets = require "moongate.secrets"
local canonical = require "moongate.canonical"
local common = require "moongate.adapters.openai_common"

local M = {}

-- the format name no client has: a prompt-mode request is always built
-- here, never a client's body passed through
local FORMAT = "prompt"

M.DEFAULT_STOP = { "\n[User]:" } -- the model must not write the user's next turn
M.DEFAULT_TOP_P = 0.95

local refuse = common.refuse

-- Prompt ---------------------------------------------------------------------

local labels = { system = "System", user = "User", assistant = "Assistant" }

--- default_template(messages, creq) -> the prompt: one "[Role]: text" line
-- per message, joined by newlines, ending with "[Assistant]:" (the model
-- writes the assistant's turn after it)
function M.default_template(messages)
  local lines = {}
  for i, m in ipairs(messages) do
    local label = "[" .. (labels[m.role] or m.role) .. "]:"
    lines[i] = m.content ~= "" and (label .. " " .. m.content) or label
  end
  lines[#lines + 1] = "[Assistant]:"
  return table.concat(lines, "\n")
end

-- what a prompt cannot hold, in a refusal's words
local not_text = {
  image = "an image", file = "a file", audio = "audio",
  tool_call = "a tool call", tool_result = "a tool result",
}

-- a block's text (nil: nothing of it goes in the prompt)
local function block_text(b, creq)
  if b.type == "text" then return json.str(b.text) end
  if b.type == "thinking" or b.type == "redacted_thinking" then
    canonical.dropped(creq, "thinking") -- a completion back end takes no reasoning back
    return nil
  end
  if b.type == "native" then return common.native_text(b, creq) end
  refuse(string.format("%s cannot be sent to a prompt-mode provider, whose back end completes plain text; "
    .. "send text only", not_text[b.type] or ("a block of type " .. tostring(b.type))))
end

--- messages(creq) -> the conversation as the template gets it: a list of
-- {role = "system" | "user" | "assistant", content = text}, the system
-- prompt (creq.system) first. Raises a refusal (errors.catch) for what a
-- prompt cannot hold.
function M.messages(creq)
  canonical.foreign_fields(creq, FORMAT)
  if creq.tools and #creq.tools > 0 then
    refuse("tools cannot be offered through a prompt-mode provider: its back end completes plain text "
      .. "and calls no tools", "tools")
  end
  if creq.format then
    refuse("a JSON output format cannot be asked of a prompt-mode provider: its back end completes plain text")
  end
  if (tonumber(creq.n) or 1) > 1 then
    refuse("n: a prompt-mode provider gives one choice per request", "n")
  end
  if creq.logprobs or creq.top_logprobs then
    refuse("logprobs: a prompt-mode provider does not report log probabilities", creq.logprobs and "logprobs" or "top_logprobs")
  end
  if creq.reasoning then canonical.dropped(creq, "reasoning") end
  local out = {}
  if creq.system and creq.system ~= "" then out[1] = { role = "system", content = json.str(creq.system) } end
  for _, m in ipairs(creq.messages) do
    local texts = {}
    for _, b in ipairs(m.content) do
      local t = block_text(b, creq)
      if t and t ~= "" then texts[#texts + 1] = t end
    end
    -- (a tool message holds tool results only: refused above)
    out[#out + 1] = { role = m.role, content = table.concat(texts, "\n\n") }
  end
  return out
end

-- what a template sees of creq: a copy with its system prompt in words
-- (carried as the client's text otherwise, a raw string: json.lua)
local function template_view(creq)
  if json.raw_text(creq.system) == nil then return creq end
  local view = {}
  for k, v in pairs(creq) do view[k] = v end
  view.system = json.str(creq.system)
  return setmetatable(view, getmetatable(creq))
end

--- prompt(creq, conf) -> the prompt text: conf.template (or the default)
-- applied to messages(creq). A template that fails or gives no string is
-- the operator's error: raised as such (the client gets a 500, the log the
-- reason).
function M.prompt(creq, conf)
  local template = conf and conf.template or M.default_template
  local msgs = M.messages(creq)
  local ok, text = pcall(template, msgs, template_view(creq))
  if not ok then error("the prompt template failed: " .. tostring(text), 0) end
  if type(text) ~= "string" then
    error("the prompt template gave a " .. type(text) .. ", not a string", 0)
  end
  return text
end

--- stops(creq, conf) -> the client's stop sequences, then the provider's
-- (conf.stop, default DEFAULT_STOP), each once; nil when there are none
function M.stops(creq, conf)
  local out, seen = {}, {}
  local function add(list)
    for _, s in ipairs(list or {}) do
      if type(s) == "string" and s ~= "" and not seen[s] then
        seen[s] = true
        out[#out + 1] = s
      end
    end
  end
  add(creq.stop)
  add(conf and conf.stop or M.DEFAULT_STOP)
  if #out == 0 then return nil end
  return out
end

-- the sampling settings both APIs share: the client's, top_p 0.95 unless it says
local function sampling(creq)
  local top_p = creq.top_p
  if top_p == nil then top_p = M.DEFAULT_TOP_P end
  return creq.temperature, top_p
end

-- the output cap: the client's (capped at max_output_tokens), else the
-- provider's default_max_tokens, else none (the back end's own)
local function max_tokens(creq, conf)
  return common.max_tokens(creq, conf) or conf.default_max_tokens
end

-- Answers -------------------------------------------------------------------

local function malformed(what)
  return { { type = "error", status = 502, message = "malformed " .. what .. " from upstream" } }
end

local function str(v) return type(v) == "string" and v or nil end

-- an error frame inside a stream ({"error": {...}} or {"error": "..."})
local function frame_error(chunk)
  local e = type(chunk.error) == "table" and chunk.error or { message = chunk.error }
  return { { type = "error", status = 502, message = errors.words(e.message) or "upstream error" } }
end

-- a stream decoder's frame: the JSON chunk, or the events that end it
local function chunk_of(data)
  local chunk, err = json.decode(data)
  if type(chunk) ~= "table" then return nil, malformed("frame (" .. secrets.redact(tostring(err or data)):sub(1, 200) .. ")") end
  if chunk.error ~= nil and chunk.error ~= json.null then return nil, frame_error(chunk) end
  return chunk
end

local Decoder = {}
Decoder.__index = Decoder

-- the text of a chunk, as an event (none for an empty one)
local function text_event(out, text)
  if type(text) == "string" and text ~= "" then out[#out + 1] = { type = "text_delta", text = text } end
end

-- the last events of a stream: start (if none came), usage, done
function Decoder:ending(out)
  self.done = true
  if not self.started then out[#out + 1] = { type = "start" } end
  if self.usage then out[#out + 1] = self.usage end
  out[#out + 1] = { type = "done", reason = self.reason or "stop" }
  return out
end

-- OpenAI legacy completions ---------------------------------------------------

local O = { format = FORMAT, path = "/completions", headers = common.headers,
  error_message = errors.upstream_message,
  defaults = { base_url = "http://127.0.0.1:8080/v1" }, -- llama-server's OpenAI endpoints
  -- (a passthrough never happens: no client speaks this format)
  stream_end = { data = "[DONE]", error_keys = { "error", "object=error" }, error_events = { error = true } } }
M.openai = O

local oa_reasons = { stop = "stop", length = "length", content_filter = "content_filter" }

local function oa_usage(u)
  if type(u) ~= "table" then return nil end
  return { type = "usage", input_tokens = tonumber(u.prompt_tokens) or 0,
    output_tokens = tonumber(u.completion_tokens) or 0 }
end

--- request(creq, conf) -> {model, prompt, max_tokens, temperature, top_p, stop, stream}
function O.request(creq, conf)
  conf = conf or {}
  local temperature, top_p = sampling(creq)
  return {
    model = creq.upstream_model or creq.model,
    prompt = M.prompt(creq, conf),
    max_tokens = max_tokens(creq, conf),
    temperature = temperature,
    top_p = top_p,
    stop = M.stops(creq, conf),
    stream = creq.stream or nil,
    stream_options = creq.stream and { include_usage = true } or nil,
  }
end

local function first_choice(body)
  local ch = type(body.choices) == "table" and body.choices[1]
  return type(ch) == "table" and ch or {}
end

--- response(body) -> events of a whole text_completion (no text: an empty answer)
function O.response(body)
  if type(body) ~= "table" then return malformed("answer") end
  local out = { { type = "start", id = str(body.id), model = str(body.model) } }
  local ch = first_choice(body)
  text_event(out, ch.text)
  local u = oa_usage(body.usage)
  if u then out[#out + 1] = u end
  out[#out + 1] = { type = "done", reason = oa_reasons[ch.finish_reason] or "stop" }
  return out
end

local OD = setmetatable({}, { __index = Decoder })
OD.__index = OD

--- decoder() -> dec: text_completion chunks until [DONE]
function O.decoder()
  return setmetatable({ started = false, done = false }, OD)
end

function OD:frame(data)
  if self.done then return {} end
  if data == "[DONE]" then
    self.got_done = true
    return self:finish()
  end
  local chunk, events = chunk_of(data)
  if not chunk then return events end
  local out = {}
  if not self.started then
    self.started = true
    out[1] = { type = "start", id = str(chunk.id), model = str(chunk.model) }
  end
  local ch = first_choice(chunk)
  text_event(out, ch.text)
  if ch.finish_reason ~= nil and ch.finish_reason ~= json.null then
    self.reason = oa_reasons[ch.finish_reason] or "stop"
  end
  self.usage = oa_usage(chunk.usage) or self.usage
  return out
end

function OD:finish()
  if self.done then return {} end
  if not self.got_done and not self.reason then
    self.done = true
    return { { type = "error", status = 502, message = "the upstream stream ended before it finished" } }
  end
  return self:ending({})
end

-- llama.cpp's /completion ------------------------------------------------------

local L = { format = FORMAT, path = "/completion", headers = common.headers,
  error_message = errors.upstream_message,
  defaults = { base_url = "http://127.0.0.1:8080" }, -- llama-server's own endpoints
  -- its stream ends with a frame whose "stop" is true, then the connection
  -- closes (no [DONE]; a passthrough never happens)
  stream_end = { error_keys = { "error" }, error_events = { error = true } } }
M.llamacpp = L

-- stop_type: eos (the model ended), word (a stop sequence), limit (n_predict)
local lc_reasons = { eos = "stop", word = "stop", limit = "length", none = "stop" }

local function lc_usage(body)
  local i, o = tonumber(body.tokens_evaluated), tonumber(body.tokens_predicted)
  if not i and not o then return nil end
  return { type = "usage", input_tokens = i or 0, output_tokens = o or 0 }
end

--- request(creq, conf) -> {prompt, n_predict, temperature, top_p, stop, stream}
function L.request(creq, conf)
  conf = conf or {}
  local temperature, top_p = sampling(creq)
  return {
    prompt = M.prompt(creq, conf),
    n_predict = max_tokens(creq, conf),
    temperature = temperature,
    top_p = top_p,
    stop = M.stops(creq, conf),
    stream = creq.stream or nil,
  }
end

--- response(body) -> events of a whole answer ({content, stop_type,
-- tokens_evaluated, tokens_predicted, ...}; no content: an empty answer)
function L.response(body)
  if type(body) ~= "table" then return malformed("answer") end
  local out = { { type = "start", model = str(body.model) } }
  text_event(out, body.content)
  local u = lc_usage(body)
  if u then out[#out + 1] = u end
  out[#out + 1] = { type = "done", reason = lc_reasons[body.stop_type] or "stop" }
  return out
end

local LD = setmetatable({}, { __index = Decoder })
LD.__index = LD

--- decoder() -> dec: {content, stop: false} frames until one with stop: true
function L.decoder()
  return setmetatable({ started = false, done = false }, LD)
end

function LD:frame(data)
  if self.done or data == "[DONE]" then return {} end -- (not llama.cpp's end; some builds add it)
  local chunk, events = chunk_of(data)
  if not chunk then return events end
  local out = {}
  if not self.started then
    self.started = true
    out[1] = { type = "start", model = str(chunk.model) }
  end
  -- the last frame's content is "" (its text came before); taken if not
  text_event(out, chunk.content)
  if chunk.stop == true then
    self.reason = lc_reasons[chunk.stop_type] or "stop"
    self.usage = lc_usage(chunk)
    return self:ending(out)
  end
  return out
end

function LD:finish()
  if self.done then return {} end
  self.done = true
  return { { type = "error", status = 502, message = "the upstream stream ended before it finished" } }
end

return M
