-- Provider adapter: OpenAI's Responses API (POST /responses): OpenAI
-- itself and the backends that speak only Responses (GitHub Copilot's
-- gpt-5.x and codex models, the ChatGPT subscription). Chosen by a
-- provider's `api = "responses"` (providers/openai.lua).
-- Pure: canonical request -> wire request; wire event -> canonical events.
--
-- The gateway keeps no state at the upstream: every request says
-- store = false and asks for include = ["reasoning.encrypted_content"], so
-- the model's reasoning comes back as reasoning items (id + encrypted
-- content) that the next turn hands back whole. They travel in canonical
-- thinking blocks with origin "responses" and go back byte for byte; the
-- thinking of any other kind of upstream is dropped here
-- (docs/TRANSLATION.md).
--
-- A Responses client's custom tools (free-form input) stay custom here:
-- a call of one goes as a custom_tool_call item, its result as a
-- custom_tool_call_output, and such calls in an answer come back as tool
-- calls whose arguments are {"input": "<the input>"}, as the front door
-- reads them. Its namespace tools go grouped as it sent them.
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"
local common = require "moongate.adapters.openai_common"

local M = { format = "responses", path = "/responses",
  defaults = { base_url = "https://api.openai.com/v1", key_env = "OPENAI_API_KEY" } }
local null = json.null

-- How a stream of this format ends, for a passthrough (providers/
-- upstream.lua): one of these events, named by the SSE event line or, when
-- a server sends none, by the data's leading "type". C pipes the other
-- frames of a passthrough itself and hands Lua these (and any frame with no
-- event line, which could be one of them: core._fetch_pipe).
M.stream_end = {
  events = { ["response.completed"] = true, ["response.incomplete"] = true, ["response.failed"] = true },
  -- an error event: the client gets response.failed instead (a stream never just stops)
  failure_events = { error = true }, failure = function(data) return M.failure_event(data) end,
  typed = true,
}

local refuse = common.refuse

local function data_url(mime, data)
  return "data:" .. mime .. ";base64," .. (data or "")
end

-- a canonical image or file block -> a Responses input content part
local function media_part(b, creq)
  if b.type == "image" then
    if b.file_id then
      if creq.client ~= "responses" then
        refuse(string.format("an image given by file id from %s cannot be read by a Responses-format upstream, "
          .. "which takes image file ids only from Responses clients; send it as base64 or a URL", common.client_name(creq)))
      end
      return { type = "input_image", file_id = b.file_id }
    end
    return { type = "input_image", image_url = b.url or data_url(b.mime or "image/png", b.data) }
  end
  if b.file_id then
    if creq.client ~= "responses" and creq.client ~= "openai" then -- only OpenAI's own file ids
      refuse(string.format("a document given by file id from %s cannot be read by a Responses-format upstream, "
        .. "which takes file ids only from OpenAI and Responses clients; send it as base64", common.client_name(creq)))
    end
    return { type = "input_file", file_id = b.file_id }
  end
  if b.url then return { type = "input_file", file_url = b.url } end
  if b.mime and b.mime:find("^image/") then
    return { type = "input_image", image_url = data_url(b.mime, b.data) }
  end
  return { type = "input_file", filename = b.name or "document.pdf",
    file_data = data_url(b.mime or "application/pdf", b.data) }
end

local native_text = common.native_text

-- the input content parts of a user (or system) turn's blocks
local function input_parts(blocks, creq)
  local parts = {}
  for _, b in ipairs(blocks) do
    local p
    if b.type == "text" then
      p = { type = "input_text", text = b.text }
    elseif b.type == "image" or b.type == "file" then
      p = media_part(b, creq)
    elseif b.type == "audio" then
      p = { type = "input_audio", input_audio = { data = b.data, format = b.format } }
    elseif b.type == "native" then
      local text = native_text(b, creq)
      if text then p = { type = "input_text", text = text } end
    elseif b.type == "thinking" or b.type == "redacted_thinking" then
      canonical.dropped(creq, "thinking in a user turn")
    end
    parts[#parts + 1] = p
  end
  return parts
end

-- a thinking block -> a reasoning item, when a Responses upstream made it
-- (its id and encrypted content, as they came); else nil, noted as dropped
local function reasoning_item(b, creq)
  if b.origin ~= "responses" then
    canonical.dropped(creq, b.origin and ("thinking from an " .. b.origin .. " upstream")
      or "thinking (no reasoning item to hand back)")
    return nil
  end
  if type(b.signature) ~= "string" or b.signature == "" or not b.item_id then
    -- with store false the upstream knows an item only by its content
    canonical.dropped(creq, "thinking without its encrypted reasoning")
    return nil
  end
  local summary = json.empty_array
  if type(b.text) == "string" and b.text ~= "" then summary = { { type = "summary_text", text = b.text } } end
  return { type = "reasoning", id = b.item_id, summary = summary, encrypted_content = b.signature }
end

-- the request's tools by name (the first of each name)
local function tools_by_name(creq)
  local by = {}
  for _, t in ipairs(creq.tools or {}) do
    if t.name and by[t.name] == nil then by[t.name] = t end
  end
  return by
end

local custom_input = canonical.custom_input

-- the namespace of each call the client's own items name (call_id ->
-- namespace): the canonical call has none, and two namespaces may hold
-- tools of one name
local function call_namespaces(creq)
  local out = {}
  local raw = type(creq.raw) == "table" and creq.raw or {}
  for _, list in ipairs { rawget(creq, "history") or {}, type(raw.input) == "table" and raw.input or {} } do
    for _, it in ipairs(list) do
      if type(it) == "table" and type(it.call_id) == "string" and type(it.namespace) == "string" then
        out[it.call_id] = it.namespace
      end
    end
  end
  return out
end

-- the input items of the canonical messages, in order
local function input_items(creq)
  local items, pending = {}, {}
  local function push(item) items[#items + 1] = item end
  -- calls of a custom tool, and their results, keep their own item types;
  -- a Responses client's calls keep their namespace (the tools go grouped)
  local tools, custom_calls = tools_by_name(creq), {}
  local namespaces = creq.client == "responses" and call_namespaces(creq) or {}
  local function call_item(b)
    local t = tools[b.name] or {}
    local ns = creq.client == "responses" and (namespaces[b.id] or t.namespace) or nil
    if t.custom then
      custom_calls[b.id or ""] = true
      return { type = "custom_tool_call", call_id = b.id, name = b.name, input = custom_input(b.arguments), namespace = ns }
    end
    return { type = "function_call", call_id = b.id, name = b.name, arguments = b.arguments or "{}", namespace = ns }
  end
  -- a tool result's images and files, which function_call_output cannot
  -- hold, go in a user message after the results of that turn
  local function flush()
    if #pending == 0 then return end
    push({ type = "message", role = "user", content = input_parts(pending, creq) })
    for i = #pending, 1, -1 do pending[i] = nil end
  end
  local function tool_output(b)
    push({ type = custom_calls[b.tool_call_id or ""] and "custom_tool_call_output" or "function_call_output",
      call_id = b.tool_call_id, output = common.tool_result(b, pending, creq) })
  end
  for _, m in ipairs(creq.messages) do
    if m.role ~= "tool" then flush() end
    if m.role == "tool" then
      for _, b in ipairs(m.content) do
        if b.type == "tool_result" then tool_output(b) end
      end
    elseif m.role == "system" then
      push({ type = "message", role = "system",
        content = { { type = "input_text", text = canonical.text(m.content, "\n\n") } } })
    elseif m.role == "assistant" then
      -- items in the order of the blocks: a reasoning item must come right
      -- before the message or call it led to
      local msg
      local function text(s)
        if s == "" then return end
        if not msg then
          msg = { type = "message", role = "assistant", content = {} }
          push(msg)
        end
        msg.content[#msg.content + 1] = { type = "output_text", text = s }
      end
      for _, b in ipairs(m.content) do
        if b.type == "text" then
          text(b.text)
        elseif b.type == "thinking" then
          local item = reasoning_item(b, creq)
          if item then msg = nil; push(item) end
        elseif b.type == "redacted_thinking" then
          canonical.dropped(creq, "redacted_thinking")
        elseif b.type == "tool_call" then
          msg = nil
          push(call_item(b))
        elseif b.type == "native" and b.format == "responses" then
          msg = nil
          push(b.block) -- a Responses client's own item, as it came
          if type(b.block) == "table" and b.block.type == "custom_tool_call" and type(b.block.call_id) == "string" then
            custom_calls[b.block.call_id] = true
          end
        elseif b.type == "native" then
          local s = native_text(b, creq)
          if s then text(s) end
        elseif b.type == "image" or b.type == "file" or b.type == "audio" then
          refuse("an assistant message of a Responses-format upstream holds text, reasoning and tool calls only, not " .. b.type .. "s")
        end
      end
    else
      -- tool results inside a user turn (Anthropic style) come first, as
      -- function_call_output items right after their calls
      local rest = {}
      for _, b in ipairs(m.content) do
        if b.type == "tool_result" then
          tool_output(b)
        elseif b.type == "native" and b.format == "responses" then
          flush()
          push(b.block)
        else
          rest[#rest + 1] = b
        end
      end
      flush()
      if #rest > 0 or #m.content == 0 then
        local parts = input_parts(rest, creq)
        if #parts == 0 then parts[1] = { type = "input_text", text = "" } end
        push({ type = "message", role = "user", content = parts })
      end
    end
  end
  flush()
  return items
end

-- strict, said outright: a Responses upstream left without it makes the
-- schema strict itself (every property required), which would change
-- what a client's tool may be called with
local function strict_flag(wanted, schema, creq, what)
  if wanted ~= true then return false end
  return common.keeps_strict(schema, creq, "responses", what)
end

local function text_format(f, creq)
  if f.type == "json_object" then return { type = "json_object" } end
  local name, description, schema = common.schema_format(f)
  return { type = "json_schema", name = name, description = description, schema = schema,
    strict = strict_flag(f.strict, f.schema, creq, "the schema") }
end

local function function_tool(t, creq)
  common.drop_tool_extras(t, creq)
  return { type = "function", name = t.name, description = t.description,
    parameters = json.schema(t.parameters) or { type = "object", properties = json.decode("{}") },
    strict = strict_flag(t.strict, t.parameters, creq, "the schema of tool " .. tostring(t.name)) }
end

-- a Responses client's namespace tool of that name, without its tools (the
-- translation lists them again): its other keys as the client sent them
local function namespace_tool(creq, name)
  local raw = type(creq.raw) == "table" and creq.raw or {}
  local lists = { type(raw.tools) == "table" and raw.tools or {} }
  for _, it in ipairs(type(raw.input) == "table" and raw.input or {}) do
    if type(it) == "table" and it.type == "additional_tools" and type(it.tools) == "table" then lists[#lists + 1] = it.tools end
  end
  local out = { type = "namespace", name = name, tools = {} }
  for _, list in ipairs(lists) do
    for _, t in ipairs(list) do
      if type(t) == "table" and t.type == "namespace" and t.name == name then
        for k, v in pairs(t) do if k ~= "tools" then out[k] = json.typed(v) end end
        return out
      end
    end
  end
  return out
end

-- fields of a Responses client's request the translation writes itself;
-- the rest are copied as they came (previous_response_id never: the
-- gateway has put the history it names into input)
local built = { model = true, input = true, instructions = true, stream = true, temperature = true,
  top_p = true, max_output_tokens = true, reasoning = true, tools = true, tool_choice = true,
  parallel_tool_calls = true, text = true, user = true, store = true, include = true,
  previous_response_id = true }

-- the least max_output_tokens the Responses API takes
local MIN_OUTPUT = 16

--- request(creq, conf) -> wire table (model is creq.upstream_model or creq.model)
function M.request(creq, conf)
  conf = conf or {}
  canonical.foreign_fields(creq, "responses")
  if creq.n and creq.n > 1 then
    refuse("n: a Responses-format upstream gives one answer per request; send n: 1 (or none) and make several requests", "n")
  end
  if creq.logprobs or creq.top_logprobs then
    refuse("logprobs: the gateway does not carry log probabilities from a Responses-format upstream",
      creq.logprobs and "logprobs" or "top_logprobs")
  end
  if creq.audio_out then refuse("modalities: a Responses-format upstream does not answer with audio", "modalities") end
  local req = {
    model = creq.upstream_model or creq.model,
    instructions = creq.system ~= "" and creq.system or nil,
    input = input_items(creq),
    stream = creq.stream or nil,
    temperature = creq.temperature,
    top_p = creq.top_p,
    user = creq.user,
    store = false,
    include = { "reasoning.encrypted_content" },
  }
  if #req.input == 0 then req.input = json.empty_array end
  if creq.stop and #creq.stop > 0 then
    canonical.dropped(creq, "stop (the Responses API has no stop sequences)")
  end
  local max_tokens = common.max_tokens(creq, conf)
  if max_tokens and max_tokens < MIN_OUTPUT then
    max_tokens = MIN_OUTPUT
    canonical.dropped(creq, "max_tokens below 16 (raised to the Responses API's least)")
  end
  req.max_output_tokens = max_tokens
  local raw = creq.client == "responses" and type(creq.raw) == "table" and creq.raw or nil
  local r = creq.reasoning
  local summary = r and r.summary
  if not summary and raw and type(raw.reasoning) == "table" and type(raw.reasoning.summary) == "string" then
    summary = raw.reasoning.summary
  end
  if r and r.effort then
    local effort = common.effort(r.effort, conf)
    -- a summary makes the reasoning visible (as thinking) where the model shows any
    req.reasoning = { effort = effort, summary = effort ~= "none" and (summary or "auto") or nil }
  elseif summary then
    req.reasoning = { summary = summary }
  end
  if creq.format then req.text = { format = text_format(creq.format, creq) } end
  if creq.tools and #creq.tools > 0 then
    req.tools = {}
    local group -- the namespace tool the last tools went into
    for i, t in ipairs(creq.tools) do
      local wire
      if t.server then -- run by Anthropic's servers: no function to call here
        canonical.dropped(creq, "server tool " .. tostring(t.name))
      elseif t.native and creq.client == "responses" then
        wire = t.raw -- a hosted tool: the upstream judges it
      elseif t.native then
        refuse(string.format("tools[%d]: a tool of type '%s' cannot be sent to a Responses-format upstream; use a function tool",
          i - 1, tostring(t.native)), "tools")
      elseif t.raw and creq.client == "responses" then
        -- a Responses client's own function or custom tool: as it came,
        -- its schema's lists kept
        wire = type(t.raw.parameters) == "table"
          and json.with(t.raw, "parameters", json.schema(t.raw.parameters)) or t.raw
      else
        wire = function_tool(t, creq)
      end
      if wire and t.namespace and creq.client == "responses" then
        -- a namespace's tools are listed one after another: grouped again
        if not (group and group.name == t.namespace) then
          group = namespace_tool(creq, t.namespace)
          req.tools[#req.tools + 1] = group
        end
        group.tools[#group.tools + 1] = wire
      elseif wire then
        group = nil
        req.tools[#req.tools + 1] = wire
      end
    end
    if #req.tools == 0 then req.tools = nil end
  end
  if creq.disable_parallel and req.tools then req.parallel_tool_calls = false end
  local tc = creq.tool_choice
  if tc and (req.tools or not creq.tools) then
    if tc.type == "tool" and raw and type(raw.tool_choice) == "table" then
      req.tool_choice = raw.tool_choice -- the client's own {type: function | custom, name, ...}
    elseif tc.type == "tool" then
      local t = tools_by_name(creq)[tc.name]
      req.tool_choice = { type = t and t.custom and "custom" or "function", name = tc.name }
    elseif tc.type == "any" or tc.type == "required" then req.tool_choice = "required"
    elseif tc.type == "native" then
      if tc.format ~= "responses" then
        refuse(string.format("tool_choice: a choice of type '%s' cannot be translated for a Responses-format upstream",
          tostring(tc.kind or tc.type)), "tool_choice")
      end
      req.tool_choice = tc.raw
    else req.tool_choice = tc.type end
  end
  -- a Responses client's own fields reach a Responses upstream as they came
  if raw then
    common.copy_own(req, raw, built)
    -- and so do the parts of reasoning and text the translation does not write
    for _, k in ipairs { "reasoning", "text" } do
      if type(raw[k]) == "table" and req[k] then
        for kk, vv in pairs(raw[k]) do if req[k][kk] == nil then req[k][kk] = vv end end
      end
    end
    -- and the client's include values beside the gateway's own
    if type(raw.include) == "table" then
      for _, v in ipairs(raw.include) do
        if v ~= "reasoning.encrypted_content" then req.include[#req.include + 1] = v end
      end
    end
  end
  return req
end

--- effort_fields(creq, conf) -> the top-level fields (JSON text) that ask
-- this upstream for creq's reasoning effort, spliced into a client's own
-- body (a model suffix's effort on a passthrough). set_top replaces the
-- whole value of "reasoning", so the client's other reasoning keys
-- (summary) are copied into it.
function M.effort_fields(creq, conf)
  local effort = creq.reasoning and creq.reasoning.effort
  effort = common.effort(effort, conf)
  local r = {}
  local orig = type(creq.raw) == "table" and creq.raw.reasoning
  if type(orig) == "table" then
    for k, v in pairs(orig) do r[k] = v end
  end
  r.effort = effort
  return { reasoning = json.encode_raw(json.typed(r)) }
end

-- Answers -------------------------------------------------------------------

local function usage_event(u)
  if type(u) ~= "table" then return nil end
  local idet = type(u.input_tokens_details) == "table" and u.input_tokens_details or {}
  local odet = type(u.output_tokens_details) == "table" and u.output_tokens_details or {}
  local cached = tonumber(idet.cached_tokens)
  return { type = "usage", input_tokens = tonumber(u.input_tokens) or 0,
    output_tokens = tonumber(u.output_tokens) or 0,
    reasoning_tokens = tonumber(odet.reasoning_tokens),
    cached_tokens = cached and cached > 0 and cached or nil }
end

-- a response that did not finish (status incomplete) -> its done reason
local incomplete_reasons = { max_output_tokens = "length", content_filter = "content_filter" }
local function incomplete_reason(resp)
  local d = type(resp) == "table" and resp.incomplete_details
  return incomplete_reasons[type(d) == "table" and d.reason or ""] or "length"
end

-- the codes of failures that may pass if asked again
local retry_codes = { server_error = true, rate_limit_exceeded = true, overloaded = true }

local function error_event(e, fallback)
  e = type(e) == "table" and e or {}
  return { type = "error", status = 502, message = errors.words(e.message) or tostring(fallback),
    code = type(e.code) == "string" and e.code or nil, retryable = retry_codes[e.code] or nil }
end

-- A reasoning item's text reaches the client as thinking_delta events
-- that also say which item and summary part they belong to (item_id,
-- origin "responses", summary_index): a Responses client's front door
-- rebuilds the same items from them. Between two summary parts comes a
-- blank line, for the formats that have one thinking text; it is marked
-- separator = true, and a front door that keeps the parts apart skips it.
--- failure_event(data) -> the error event of a Responses error frame
function M.failure_event(data)
  local e = json.decode(data)
  e = type(e) == "table" and (type(e.error) == "table" and e.error or e) or nil
  return error_event(e, "the upstream's stream failed")
end

local function thinking(out, text, item_id, index, separator)
  out[#out + 1] = { type = "thinking_delta", text = text, item_id = item_id, origin = "responses",
    summary_index = index, separator = separator }
end

-- a whole reasoning item's text (its summary parts, or its raw reasoning
-- text) -> thinking_delta events
local function reasoning_text(out, item)
  local id, n = type(item.id) == "string" and item.id or nil, 0
  for _, list in ipairs { item.summary, item.content } do
    for _, p in ipairs(type(list) == "table" and list or {}) do
      if type(p) == "table" and type(p.text) == "string" and p.text ~= "" then
        if n > 0 then thinking(out, "\n\n", id, n, true) end
        thinking(out, p.text, id, list == item.summary and n or nil)
        n = n + 1
      end
    end
  end
end

-- a whole reasoning item -> its events: its text, then its encrypted
-- content (also with no text: the next turn needs it all the same)
local function reasoning_events(out, item, with_text)
  if with_text then reasoning_text(out, item) end
  if type(item.encrypted_content) == "string" then
    out[#out + 1] = { type = "thinking_signature", signature = item.encrypted_content, origin = "responses",
      item_id = type(item.id) == "string" and item.id or nil }
  end
end

-- a whole message item's text -> text_delta events; true if it refused
local function message_events(out, item)
  local refused
  for _, p in ipairs(type(item.content) == "table" and item.content or {}) do
    if type(p) == "table" then
      if p.type == "output_text" and type(p.text) == "string" and p.text ~= "" then
        out[#out + 1] = { type = "text_delta", text = p.text }
      elseif p.type == "refusal" and type(p.refusal) == "string" then
        -- a refusal is what the model said instead of an answer: its text
        out[#out + 1] = { type = "text_delta", text = p.refusal }
        refused = true
      end
    end
  end
  return refused
end

local function arguments_of(item, creq)
  if type(item.arguments) == "string" then return item.arguments end
  return json.encode_raw(json.typed(item.arguments or json.decode("{}"), canonical.tool_schema(creq, item.name)))
end

-- the end of a response (completed or incomplete) -> usage and done
local function end_events(out, resp, calls, refused)
  local u = usage_event(type(resp) == "table" and resp.usage)
  if u then out[#out + 1] = u end
  local reason
  if type(resp) == "table" and resp.status == "incomplete" then reason = incomplete_reason(resp)
  elseif refused then reason = "content_filter"
  else reason = calls > 0 and "tool_use" or "stop" end
  out[#out + 1] = { type = "done", reason = reason }
end

-- a custom tool call's input -> its canonical arguments, JSON text (with
-- "/" as it is: cjson writes "\/", and every "/" it writes is so escaped)
local function custom_arguments(input)
  return (json.encode({ input = type(input) == "string" and input or "" }):gsub("\\/", "/"))
end

-- the items of a whole output list -> events; returns the number of calls
-- and whether the model refused. A hosted tool's items (web_search_call,
-- file_search_call, ...) are the upstream's own work, which no canonical
-- event carries: they are left out, and the message items around them
-- (the answer's text) told as usual.
local function output_events(out, output, creq, ncalls)
  local refused
  for _, item in ipairs(type(output) == "table" and output or {}) do
    if type(item) == "table" then
      if item.type == "reasoning" then
        reasoning_events(out, item, true)
      elseif item.type == "message" then
        refused = message_events(out, item) or refused
      elseif item.type == "function_call" then
        canonical.tool_call_events(out, ncalls, item.call_id, item.name, arguments_of(item, creq))
        ncalls = ncalls + 1
      elseif item.type == "custom_tool_call" then
        canonical.tool_call_events(out, ncalls, item.call_id, item.name, custom_arguments(item.input))
        ncalls = ncalls + 1
      end
    end
  end
  return ncalls, refused
end

--- response(body_table, creq) -> events for a whole (non-streamed) answer
function M.response(body, creq)
  if type(body) ~= "table" or (type(body.output) ~= "table" and body.status ~= "failed") then
    if type(body) == "table" and type(body.error) == "table" then return { error_event(body.error, "upstream error") } end
    return { { type = "error", status = 502, message = "malformed answer from upstream" } }
  end
  if body.status == "failed" then return { error_event(body.error, "the upstream's response failed") } end
  local out = { { type = "start", id = body.id, model = body.model } }
  local calls, refused = output_events(out, body.output, creq, 0)
  end_events(out, body, calls, refused)
  return out
end

M.error_message = errors.upstream_message

--- headers(conf, key) -> request headers for the upstream
M.headers = common.headers

-- Streams -------------------------------------------------------------------

-- a stream decoder's methods (dec:frame, dec:finish), shared by every stream
local Decoder = {}
Decoder.__index = Decoder

--- decoder([creq]) -> dec; dec:frame(data, event) -> events, dec:finish() -> events
-- Output items come one after another; each function call is numbered
-- from 0 in order of appearance. A server that sends an item only whole
-- (output_item.done with no deltas before it) still has its content
-- told, and one that sends no items at all, only its final response, has
-- that response's output told.
function M.decoder(creq)
  return setmetatable({ creq = creq, started = false, items = {}, ncalls = 0, seen = 0, done = false }, Decoder)
end

-- the state of an output item, by its id or, failing that, its index
function Decoder:item(ev)
  local key = ev.item_id or ev.output_index or 0
  local it = self.items[key]
  if not it and ev.output_index ~= nil then it = self.items[ev.output_index] end
  return it
end

function Decoder:start(out, resp)
  if self.started then return end
  self.started = true
  resp = type(resp) == "table" and resp or {}
  out[#out + 1] = { type = "start", id = resp.id, model = resp.model }
end

-- the end of the stream, whatever ends it
function Decoder:close(out, resp)
  self.done = true
  self:start(out, resp)
  -- calls whose output_item.done never came are ended now
  for _, it in pairs(self.open_calls or {}) do
    if not it.ended then
      if it.input then -- a custom call's input so far
        out[#out + 1] = { type = "toolcall_delta", index = it.index, arguments = custom_arguments(table.concat(it.input)) }
      end
      it.ended = true
      out[#out + 1] = { type = "toolcall_end", index = it.index }
    end
  end
  if self.seen == 0 and type(resp) == "table" and type(resp.output) == "table" then
    self.ncalls, self.refused = output_events(out, resp.output, self.creq, self.ncalls)
  end
  end_events(out, resp, self.ncalls, self.refused)
  return out
end

local handlers = {}

handlers["response.created"] = function(self, ev, out) self:start(out, ev.response) end
handlers["response.in_progress"] = handlers["response.created"]

handlers["response.output_item.added"] = function(self, ev, out)
  local item = type(ev.item) == "table" and ev.item or {}
  local it = { kind = item.type, id = item.id }
  self.seen = self.seen + 1
  self.items[item.id or ev.output_index or 0] = it
  if ev.output_index ~= nil then self.items[ev.output_index] = it end
  -- (a hosted tool's item, web_search_call and the like, is kept track
  -- of but told nothing of: see output_events)
  if item.type == "function_call" or item.type == "custom_tool_call" then
    it.index = self.ncalls
    self.ncalls = self.ncalls + 1
    self.open_calls = self.open_calls or {}
    self.open_calls[it.index] = it
    -- a custom call's input is gathered and told whole, wrapped in JSON
    if item.type == "custom_tool_call" then it.input = {} end
    out[#out + 1] = { type = "toolcall_start", index = it.index, id = item.call_id, name = item.name }
  end
end

local function text_delta(self, ev, out)
  local it = self:item(ev)
  if it then it.told = true end
  if type(ev.delta) == "string" and ev.delta ~= "" then out[#out + 1] = { type = "text_delta", text = ev.delta } end
end
handlers["response.output_text.delta"] = text_delta
handlers["response.refusal.delta"] = function(self, ev, out)
  self.refused = true
  text_delta(self, ev, out)
end

-- a new summary part of a reasoning item that has told some text: a
-- blank line between the two
handlers["response.reasoning_summary_part.added"] = function(self, ev, out)
  local it = self:item(ev)
  if it and it.told then thinking(out, "\n\n", it.id, tonumber(ev.summary_index), true) end
end

local function thinking_delta(self, ev, out)
  local it = self:item(ev)
  if type(ev.delta) == "string" and ev.delta ~= "" then
    if it then it.told = true end
    thinking(out, ev.delta, it and it.id or ev.item_id, tonumber(ev.summary_index))
  end
end
handlers["response.reasoning_summary_text.delta"] = thinking_delta
handlers["response.reasoning_text.delta"] = thinking_delta

handlers["response.function_call_arguments.delta"] = function(self, ev, out)
  local it = self:item(ev)
  if it and it.index and type(ev.delta) == "string" and ev.delta ~= "" then
    it.told = true
    out[#out + 1] = { type = "toolcall_delta", index = it.index, arguments = ev.delta }
  end
end

handlers["response.custom_tool_call_input.delta"] = function(self, ev)
  local it = self:item(ev)
  if it and it.input and type(ev.delta) == "string" then it.input[#it.input + 1] = ev.delta end
end

handlers["response.custom_tool_call_input.done"] = function(self, ev)
  local it = self:item(ev)
  if it and it.input and type(ev.input) == "string" then it.input = { ev.input } end
end

handlers["response.output_item.done"] = function(self, ev, out)
  local item = type(ev.item) == "table" and ev.item or {}
  local it = self:item({ item_id = item.id, output_index = ev.output_index })
  if not it then -- an item told only whole
    handlers["response.output_item.added"](self, { item = item, output_index = ev.output_index }, out)
    it = self:item({ item_id = item.id, output_index = ev.output_index })
  end
  if item.type == "reasoning" then
    reasoning_events(out, item, not it.told)
  elseif item.type == "message" then
    if not it.told then self.refused = message_events(out, item) or self.refused end
  elseif item.type == "function_call" and it.index and not it.ended then
    if not it.told then
      local args = arguments_of(item, self.creq)
      if args ~= "" then out[#out + 1] = { type = "toolcall_delta", index = it.index, arguments = args } end
    end
    it.ended = true
    out[#out + 1] = { type = "toolcall_end", index = it.index }
  elseif item.type == "custom_tool_call" and it.index and not it.ended then
    local input = type(item.input) == "string" and item.input or table.concat(it.input or {})
    out[#out + 1] = { type = "toolcall_delta", index = it.index, arguments = custom_arguments(input) }
    it.ended = true
    out[#out + 1] = { type = "toolcall_end", index = it.index }
  end
end

handlers["response.completed"] = function(self, ev, out) self:close(out, ev.response) end
handlers["response.incomplete"] = function(self, ev, out)
  local resp = type(ev.response) == "table" and ev.response or {}
  if resp.status == nil then resp.status = "incomplete" end
  self:close(out, resp)
end
handlers["response.failed"] = function(self, ev, out)
  self.done = true
  local resp = type(ev.response) == "table" and ev.response or {}
  out[#out + 1] = error_event(resp.error, "the upstream's response failed")
end
handlers["error"] = function(self, ev, out)
  self.done = true
  out[#out + 1] = error_event(type(ev.error) == "table" and ev.error or ev, "upstream error")
end

function Decoder:frame(data, event)
  if self.done then return {} end
  if data == "[DONE]" then return {} end -- not this format's end; some servers add it
  local ev, err = json.decode(data)
  if type(ev) ~= "table" then
    return { { type = "error", status = 502, message = "malformed frame from upstream: " .. tostring(err or data) } }
  end
  local out = {}
  local h = handlers[type(ev.type) == "string" and ev.type or event]
  if h then h(self, ev, out) end
  return out
end

function Decoder:finish()
  if self.done then return {} end
  self.done = true
  return { { type = "error", status = 502,
    message = "the upstream stream ended before response.completed" } }
end

return M
