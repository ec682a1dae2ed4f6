-- Front door: the OpenAI Responses API (POST /v1/responses, and GET and
-- DELETE /v1/responses/{id} on the gateway's response store).
-- decode: wire request -> canonical request (or an error in OpenAI's shape);
-- prepare: previous_response_id and store against the response store;
-- stream_encoder / collector: canonical events -> the Responses event
-- stream / the response object.
-- Pure: no host globals (the GET and DELETE handlers load moongate.http
-- when they run), tested without the daemon.
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"
local oc = require "moongate.frontdoor.openai_common"

local M = { client = "responses" }

local null = json.null
local concat = table.concat

local is_array, is_object, given = oc.is_array, oc.is_object, oc.present
local function str(v) return type(v) == "string" and v or nil end
local function num(v) return type(v) == "number" and v or nil end

-- Stored responses -----------------------------------------------------------
-- A stored response (app.store, text) is one turn of a conversation, the
-- JSON object
--   {"response": <the response object the client got>,
--    "previous": <the previous_response_id this turn continued, or null>,
--    "input": [<this turn's own input items, as the client wrote them>],
--    "output": [<its output items, reasoning with its encrypted_content
--               whether the client asked for it or not>]}
-- A later previous_response_id walks the "previous" ids back and continues
-- with each turn's input + output, oldest first: an entry's size does not
-- grow with the conversation. The texts are spliced as they came (the
-- client's bytes, the upstream's), never written again from a decoding.

-- bytes a client sent (an id), quoted in a message: at most 300 of them
local function shown(s) return errors.shown(s, 300) end

-- Whose entries: each client sees only what was stored under its own key
-- (the Bearer or x-api-key it sent; clients that send none share one
-- space, "-~", a prefix no hash makes). An entry's store id is a hash of
-- that key, then the response id: the key itself is never kept. Two 32-bit
-- FNV-1a lanes make 64 bits.
local bit = require "bit"
local bxor, tobit, lshift = bit.bxor, bit.tobit, bit.lshift
local function fnv(s, h)
  for i = 1, #s do
    h = bxor(h, s:byte(i))
    h = tobit(lshift(h, 24) + h * 403) -- h * 16777619, mod 2^32
  end
  return h
end
local function owner(key)
  if type(key) ~= "string" or key == "" then return "-~" end
  return string.format("%08x%08x~", fnv(key, tobit(0x811c9dc5)) % 2 ^ 32, fnv(key, tobit(0x6c62272e)) % 2 ^ 32)
end
local Owned = {}
Owned.__index = Owned
function Owned:get(id) return self.store:get(self.prefix .. id) end
function Owned:put(id, text) return self.store:put(self.prefix .. id, text) end
function Owned:delete(id) return self.store:delete(self.prefix .. id) end
--- owned(store, key) -> the store as the client with this key sees it
local function owned(store, key)
  if not store then return nil end
  return setmetatable({ store = store, prefix = owner(key) }, Owned)
end
M._owner = owner -- (for the specs)

-- an id from the URL: the SDKs percent-encode a path parameter
local function path_id(segment)
  return (segment:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- an unknown id, in OpenAI's words
local function response_not_found(id)
  return errors.new(404, string.format("Response with id '%s' not found.", shown(id)))
end

-- The gateway's own routes on the store (app.lua calls them with the id
-- as the last path segment, as the client encoded it). Their answers go
-- through the app's writer (app.http): decoding and encoding stay pure.
local function get_response(app, req, _, segment)
  local http = app.http
  local id = path_id(segment)
  local store = owned(app.store, canonical.client_key(req.headers))
  local text = store and store:get(id)
  local span = text and text:find('^{"response":') and json.top_level(text, { response = true }, true).response
  if not span then return http.error(req, M.client, response_not_found(id)) end
  return http.json(req, 200, text:sub(span.from, span.to))
end

local function delete_response(app, req, _, segment)
  local http = app.http
  local id = path_id(segment)
  local store = owned(app.store, canonical.client_key(req.headers))
  if not (store and store:delete(id)) then
    return http.error(req, M.client, response_not_found(id))
  end
  return http.json(req, 200, { id = id, object = "response.deleted", deleted = true })
end

-- What this front door serves (app.lua reads it): its routes, the prefix of
-- its paths (also without /v1: /responses), its stream kind, the request
-- headers it reads. Its error shape (registered below) is OpenAI's.
M.routes = {
  ["POST /v1/responses"] = "serve",
  ["GET /v1/responses/*"] = get_response,
  ["DELETE /v1/responses/*"] = delete_response,
}
M.prefixes = { "/responses" }
M.stream_kind = "sse"
M.request_headers = { "authorization", "x-api-key", "openai-beta" }

-- OpenAI's error object, and a prompt too long in the Responses API's own
-- words: code context_length_exceeded, param input (the chat API's say
-- "messages"); the numbers follow OpenAI's two sentences. Registered
-- without path prefixes: what C answers on these paths itself is in
-- OpenAI's shape already, this same object.
errors.shape(M.client, {
  object = function(err, etype)
    return { error = { message = err.message, type = etype,
      param = err.param == nil and null or err.param, code = err.code == nil and null or err.code } }
  end,
  overflow = function(n, m)
    return errors.new(400, string.format("Your input exceeds the context window of this model. Please adjust your "
      .. "input and try again. (This model's maximum context length is %d tokens; your input has %d tokens.)", m, n),
      { type = "invalid_request_error", code = "context_length_exceeded", param = "input" })
  end,
  -- a Responses upstream's own overflow error stays as it came
  says_overflow = function(err) return err.code == "context_length_exceeded" and err.param == "input" end,
})

-- Errors in OpenAI's words (openai_common) -----------------------------------

local invalid_type, invalid_value, missing = oc.invalid_type, oc.invalid_value, oc.missing
local refuse_type, refuse_value, refuse_missing = oc.refuse_type, oc.refuse_value, oc.refuse_missing
local is_int, is_bool, is_string, is_number, range = oc.is_int, oc.is_bool, oc.is_string, oc.is_number, oc.range

-- optional typed fields: name -> {what, check(v) -> ok [, range(v) -> nil | message]}
local checks = {
  stream = { "a boolean", is_bool },
  store = { "a boolean", is_bool },
  background = { "a boolean", is_bool },
  parallel_tool_calls = { "a boolean", is_bool },
  temperature = { "a number", is_number, range("decimal", 0, 2) },
  top_p = { "a number", is_number, range("decimal", 0, 1) },
  -- OpenAI's floor for the Responses API
  max_output_tokens = { "an integer", is_int, range("integer", 16, oc.INT_MAX) },
  max_tool_calls = { "an integer", is_int, range("integer", 1, oc.INT_MAX) },
  top_logprobs = { "an integer", is_int, range("integer", 0, 20) },
  instructions = { "a string", is_string },
  previous_response_id = { "a string", is_string },
  prompt_cache_key = { "a string", is_string },
  safety_identifier = { "a string", is_string },
  user = { "a string", is_string },
  truncation = { "a string", is_string },
  service_tier = { "a string", is_string },
  metadata = { "an object", is_object },
  reasoning = { "an object", is_object },
  text = { "an object", is_object },
  stream_options = { "an object", is_object },
  tools = { "an array", is_array },
  include = { "an array", is_array },
}

local efforts = { none = true, minimal = true, low = true, medium = true, high = true, xhigh = true }
local summaries = { auto = true, concise = true, detailed = true }

-- The fate of each top-level field on its way to an upstream of another
-- format (canonical.foreign_fields, docs/TRANSLATION.md): "mapped",
-- "drop", or why it is refused. Every field of the documented request is
-- here, and the ones Codex CLI adds (client_metadata).
M.fields = {
  model = "mapped", input = "mapped", instructions = "mapped", stream = "mapped",
  max_output_tokens = "mapped", temperature = "mapped", top_p = "mapped", tools = "mapped",
  tool_choice = "mapped", parallel_tool_calls = "mapped", reasoning = "mapped", text = "mapped",
  user = "mapped", include = "mapped",
  -- kept by the gateway itself (prepare): its response store
  store = "mapped", previous_response_id = "mapped",
  metadata = "drop", stream_options = "drop", prompt_cache_key = "drop", prompt_cache_options = "drop",
  prompt_cache_retention = "drop", safety_identifier = "drop", service_tier = "drop", truncation = "drop",
  top_logprobs = "drop", max_tool_calls = "drop", context_management = "drop", background = "drop",
  client_metadata = "drop",
  conversation = "a conversation is kept on OpenAI's servers; an upstream of another format cannot continue it (send its items in input, or use previous_response_id)",
  prompt = "a prompt template is kept on OpenAI's servers; an upstream of another format cannot fill it in",
  moderation = "moderation runs on OpenAI's servers; an upstream of another format cannot run it",
}

-- Canonical messages --------------------------------------------------------
-- Made only when a request is translated; what cannot be carried to another
-- format is refused then, by its place in the request. A passthrough never
-- looks at them: the upstream judges what it does not know.

-- an image part's or a file part's canonical block (at: its place)
local function image_block(part, at, creq)
  if part.detail ~= nil and part.detail ~= null and part.detail ~= "auto" then
    canonical.dropped(creq, "input_image.detail")
  end
  if type(part.image_url) == "string" then
    local mime, data = canonical.data_url(part.image_url)
    if mime then return { type = "image", mime = mime, data = data } end
    return { type = "image", url = part.image_url }
  elseif type(part.file_id) == "string" then
    return { type = "image", file_id = part.file_id }
  end
  refuse_missing(at .. ".image_url")
end

local function file_block(part, at)
  local name = str(part.filename)
  if type(part.file_data) == "string" then
    local mime, data = canonical.data_url(part.file_data)
    -- a bare base64 string (no data: URL) is a PDF, as OpenAI reads it
    return { type = "file", mime = mime or "application/pdf", data = data or part.file_data, name = name }
  elseif type(part.file_id) == "string" then
    return { type = "file", file_id = part.file_id, name = name }
  elseif type(part.file_url) == "string" then
    return { type = "file", url = part.file_url, name = name }
  end
  refuse_value(at, "expected file_data, file_id or file_url.")
end

-- content (string | parts) of the message at `at` -> canonical blocks
local function decode_content(content, at, creq)
  if type(content) == "string" then return { { type = "text", text = content } } end
  if content == nil or content == null then refuse_missing(at .. ".content") end
  if not is_array(content) then refuse_type(at .. ".content", "one of a string or an array", content) end
  local blocks = {}
  for j, part in ipairs(content) do
    local pat = string.format("%s.content[%d]", at, j - 1)
    if not is_object(part) then refuse_type(pat, "an object", part) end
    local t = part.type
    if t == "input_text" or t == "output_text" or t == "text" then
      if type(part.text) ~= "string" then refuse_type(pat .. ".text", "a string", part.text) end
      blocks[#blocks + 1] = { type = "text", text = part.text }
    elseif t == "refusal" then
      blocks[#blocks + 1] = { type = "text", text = str(part.refusal) or "" }
    elseif t == "input_image" then
      blocks[#blocks + 1] = image_block(part, pat, creq)
    elseif t == "input_file" then
      blocks[#blocks + 1] = file_block(part, pat)
    else
      refuse_value(pat .. ".type", string.format("content part type '%s' cannot be translated.", tostring(t)))
    end
  end
  return blocks
end

-- a function call's output (a string, or input_text / input_image /
-- input_file parts) -> a canonical tool result
local function tool_result(item, at, creq)
  local out = { type = "tool_result", tool_call_id = item.call_id }
  local o = item.output
  if type(o) == "string" then
    out.content = o
    return out
  end
  if not is_array(o) then refuse_type(at .. ".output", "one of a string or an array", o) end
  local texts = {}
  for j, part in ipairs(o) do
    local pat = string.format("%s.output[%d]", at, j - 1)
    if not is_object(part) then refuse_type(pat, "an object", part) end
    if part.type == "input_text" or part.type == "output_text" then
      texts[#texts + 1] = str(part.text) or ""
    elseif part.type == "input_image" or part.type == "input_file" then
      out.attachments = out.attachments or {}
      out.attachments[#out.attachments + 1] = part.type == "input_image" and image_block(part, pat, creq) or file_block(part, pat)
    else
      refuse_value(pat .. ".type", string.format("content part type '%s' cannot be translated.", tostring(part.type)))
    end
  end
  out.content = concat(texts, "\n\n")
  return out
end

-- Redacted thinking (an Anthropic upstream's) has no place of its own in a
-- Responses reasoning item: it travels packed in encrypted_content under
-- this origin, and comes back as a redacted_thinking block.
local REDACTED = "anthropic_redacted"

-- a reasoning item -> a canonical thinking (or redacted_thinking) block
local function reasoning_block(item)
  local texts = {}
  for _, s in ipairs(is_array(item.summary) and item.summary or {}) do
    if type(s) == "table" and type(s.text) == "string" then texts[#texts + 1] = s.text end
  end
  if #texts == 0 then -- the raw reasoning text some models give instead
    for _, c in ipairs(is_array(item.content) and item.content or {}) do
      if type(c) == "table" and type(c.text) == "string" then texts[#texts + 1] = c.text end
    end
  end
  local origin, item_id, value = canonical.unpack_opaque(str(item.encrypted_content), "responses")
  if origin == REDACTED then return { type = "redacted_thinking", data = value } end
  if origin == "responses" and not item_id then item_id = str(item.id) end
  return { type = "thinking", text = concat(texts, "\n\n"), signature = value, origin = origin, item_id = item_id }
end

-- why an item only a Responses upstream knows cannot go to another format
local function item_refusal(at, t)
  local why = t == "item_reference"
    and "refers to an item stored on OpenAI's servers, which an upstream of another format cannot read"
    or "cannot be translated; only messages, function calls, their outputs and reasoning can"
  return string.format("%s: an item of type '%s' %s", at, tostring(t), why)
end

local roles = { user = true, assistant = true, system = true, developer = true }

-- the keys of a message item the translation reads or that carry nothing
-- an upstream needs (its id and status); any other is dropped, noted
local message_keys = { type = true, role = true, content = true, id = true, status = true }

-- the client's items (the stored turns' first) -> creq.messages and
-- creq.system: instructions, then the system and developer messages
-- before the first other item, make the system prompt; later ones stay in
-- place, as canonical system messages. An assistant's items in a row
-- (reasoning, its message, its function calls) make one assistant turn.
local function decode_items(creq)
  local raw, items = creq.raw, {}
  local history = rawget(creq, "history")
  for _, it in ipairs(history or {}) do items[#items + 1] = it end
  local nhist = #items
  if type(raw.input) == "string" then
    items[#items + 1] = { role = "user", content = raw.input }
  elseif is_array(raw.input) then
    for _, it in ipairs(raw.input) do items[#items + 1] = it end
  end
  -- where item i is, for an error (0-based, as OpenAI names it)
  local function at(i)
    if i <= nhist then return string.format("previous_response_id: item %d", i - 1) end
    return string.format("input[%d]", i - nhist - 1)
  end
  local system, list = {}, {}
  if type(raw.instructions) == "string" and raw.instructions ~= "" then system[1] = raw.instructions end
  local function assistant_turn()
    local last = list[#list]
    if last and last.role == "assistant" then return last.content end
    local m = { role = "assistant", content = {} }
    list[#list + 1] = m
    return m.content
  end
  for i, it in ipairs(items) do
    if not is_object(it) then refuse_type(at(i), "an object", it) end
    local t = it.type
    if (t == nil or t == null) and it.role ~= nil then t = "message" end
    if t == nil or t == null then refuse_missing(at(i) .. ".type") end
    if t == "message" then
      if type(it.role) ~= "string" or not roles[it.role] then
        errors.refuse(400, string.format("Invalid value: '%s'. Supported values are: 'user', 'assistant', 'system', and 'developer'.",
          tostring(it.role)), { param = at(i) .. ".role", code = "invalid_value" })
      end
      for k, v in pairs(it) do
        if not message_keys[k] and v ~= null then canonical.dropped(creq, "input[]." .. tostring(k)) end
      end
      local blocks = decode_content(it.content, at(i), creq)
      if it.role == "system" or it.role == "developer" then
        local text = canonical.text(blocks, "\n\n")
        if #list == 0 then system[#system + 1] = text
        else list[#list + 1] = { role = "system", content = { { type = "text", text = text } } } end
      elseif it.role == "assistant" then
        local turn = assistant_turn()
        for _, b in ipairs(blocks) do turn[#turn + 1] = b end
      else
        list[#list + 1] = { role = "user", content = blocks }
      end
    elseif t == "function_call" then
      if type(it.call_id) ~= "string" then refuse_missing(at(i) .. ".call_id") end
      if type(it.name) ~= "string" then refuse_missing(at(i) .. ".name") end
      local turn = assistant_turn()
      turn[#turn + 1] = { type = "tool_call", id = it.call_id, name = it.name,
        arguments = type(it.arguments) == "string" and it.arguments or "{}" }
    elseif t == "custom_tool_call" then
      if type(it.call_id) ~= "string" then refuse_missing(at(i) .. ".call_id") end
      if type(it.name) ~= "string" then refuse_missing(at(i) .. ".name") end
      local turn = assistant_turn()
      turn[#turn + 1] = { type = "tool_call", id = it.call_id, name = it.name,
        arguments = json.encode({ input = str(it.input) or "" }) }
    elseif t == "function_call_output" or t == "custom_tool_call_output" then
      if type(it.call_id) ~= "string" then refuse_missing(at(i) .. ".call_id") end
      list[#list + 1] = { role = "tool", content = { tool_result(it, at(i), creq) } }
    elseif t == "additional_tools" then -- its tools are in creq.tools
    elseif t == "reasoning" then
      local turn = assistant_turn()
      turn[#turn + 1] = reasoning_block(it)
    else
      -- an item only a Responses upstream knows (a hosted tool's call or
      -- output, an item_reference to OpenAI's store): carried as it is to
      -- one, refused by name for another (untranslatable says it first)
      local block = { type = "native", format = "responses", block = it, refuse = item_refusal(at(i), t) }
      if type(t) == "string" and t:find("_output$") then
        list[#list + 1] = { role = "user", content = { block } }
      else
        local turn = assistant_turn()
        turn[#turn + 1] = block
      end
    end
  end
  rawset(creq, "messages", list)
  if #system > 0 then rawset(creq, "system", concat(system, "\n\n")) end
end

-- the item types the canonical form carries; any other is a Responses
-- upstream's own (a hosted tool's call, an item_reference)
local translatable = { message = true, function_call = true, function_call_output = true,
  custom_tool_call = true, custom_tool_call_output = true, reasoning = true, additional_tools = true }

-- the first item of a type only a Responses upstream knows: {param, message}
local function native_item(creq)
  local lists = { rawget(creq, "history") or {}, is_array(creq.raw.input) and creq.raw.input or {} }
  for n, list in ipairs(lists) do
    for i, it in ipairs(list) do
      local t = type(it) == "table" and it.type
      if type(t) == "string" and not translatable[t] then
        local at = n == 1 and string.format("previous_response_id: item %d", i - 1) or string.format("input[%d]", i - 1)
        return { param = n == 1 and "previous_response_id" or "input", message = item_refusal(at, t) }
      end
    end
  end
end

-- What of the request a translation cannot carry, looked at only when one
-- asks (canonical.foreign_fields): the first part it would have to refuse
-- ({param, message}, or false: an item only a Responses upstream knows, a
-- previous_response_id the gateway could not expand), and the parts it
-- leaves out, noted.
local function untranslatable(creq)
  local raw = creq.raw
  local u = native_item(creq) or false
  if not u and type(raw.previous_response_id) == "string" and not rawget(creq, "expanded") then
    u = { param = "previous_response_id", message = "previous_response_id: the gateway holds no response with this id, "
      .. "so it cannot send the earlier turns to an upstream of another format; send them in input instead" }
  end
  if not u then -- nothing to say: an upstream of another format needs a turn
    local n = #(rawget(creq, "history") or {})
    if type(raw.input) == "string" then n = n + 1 end
    for _, it in ipairs(is_array(raw.input) and raw.input or {}) do
      if not (type(it) == "table" and it.type == "additional_tools") then n = n + 1 end
    end
    if n == 0 then
      u = { param = "input", message = "input: no input items to send; give the turn to answer in input" }
    end
  end
  if not u then -- namespaces are this format's own: elsewhere, names must differ
    local seen = {}
    for _, t in ipairs(creq.tools or {}) do
      if not t.hosted and seen[t.name] then
        u = { param = "tools", message = string.format("tools: two tools are named '%s' (namespaces %s and %s); "
          .. "an upstream of another format has no namespaces, so the names must differ", t.name,
          seen[t.name], t.namespace or "none") }
        break
      end
      seen[t.name] = t.namespace or "none"
    end
  end
  local text = is_object(raw.text) and raw.text or {}
  if given(text.verbosity) then canonical.dropped(creq, "text.verbosity") end
  for _, v in ipairs(is_array(raw.include) and raw.include or {}) do
    if v ~= "reasoning.encrypted_content" then canonical.dropped(creq, "include " .. tostring(v)) end
  end
  return u
end

-- The canonical messages (and the system text drawn from them) are made the
-- first time something reads creq.messages or creq.system: a translation
-- does, a passthrough that forwards the client's bytes never does.
local Lazy = { __index = function(creq, k)
  if (k == "messages" or k == "system") and rawget(creq, "messages") == nil then
    decode_items(creq)
    return rawget(creq, k)
  end
  if k == "fields" then return M.fields end
  if k == "untranslatable" then
    local u = untranslatable(creq)
    rawset(creq, "untranslatable", u)
    return u
  end
end }

-- Decoding ------------------------------------------------------------------

-- text.format -> the canonical format (false: plain text), or nil, err
local function format_of(f)
  if not is_object(f) then return invalid_type("text.format", "an object", f) end
  if f.type == "text" then return false end
  if f.type == "json_object" then return { type = "json_object" } end
  if f.type == "json_schema" then
    if type(f.name) ~= "string" then return missing("text.format.name") end
    if not is_object(f.schema) then return missing("text.format.schema") end
    return { type = "json_schema", name = f.name, schema = f.schema, strict = f.strict == true or nil,
      description = str(f.description) }
  end
  return invalid_value("text.format.type", string.format("'%s' is not one of 'text', 'json_object', 'json_schema'.", tostring(f.type)))
end

-- A custom tool (free-form input, maybe under a grammar) becomes, for an
-- upstream of another format, a function of one string argument "input":
-- its calls come back as custom_tool_call items, the input unwrapped. The
-- canonical arguments of such a call are {"input": "<the raw input>"}.
local function custom_parameters(t)
  local f = is_object(t.format) and t.format or {}
  local what = "The tool's input, as raw text."
  if f.type == "grammar" and type(f.definition) == "string" then
    what = string.format("The tool's input, as raw text in this %s grammar:\n%s", str(f.syntax) or "", f.definition)
  end
  return { type = "object", properties = { input = { type = "string", description = what } },
    required = { "input" }, additionalProperties = false }
end

-- tool t (at: its place) -> its canonical tools, appended to list; a
-- namespace's functions and custom tools join the list under their own
-- names (ns: the namespace, which their calls name again). nil, err when
-- t is not a tool.
local function add_tool(list, t, at, ns)
  if not is_object(t) then return invalid_type(at, "an object", t) end
  if t.type == "function" or t.type == "custom" then
    if type(t.name) ~= "string" then return missing(at .. ".name") end
    local custom = t.type == "custom"
    list[#list + 1] = { name = t.name, description = str(t.description),
      parameters = custom and custom_parameters(t) or (is_object(t.parameters) and t.parameters or nil),
      strict = t.strict == true or nil, custom = custom or nil, namespace = ns, raw = t }
  elseif t.type == "namespace" and is_array(t.tools) then
    for j, inner in ipairs(t.tools) do
      local ok, err = add_tool(list, inner, string.format("%s.tools[%d]", at, j - 1), str(t.name))
      if not ok then return nil, err end
    end
  elseif type(t.type) == "string" then
    -- a hosted tool (web_search, file_search, mcp, ...): only a Responses
    -- upstream knows it
    list[#list + 1] = { name = str(t.name) or t.type, native = t.type, hosted = true, namespace = ns, raw = t }
  else
    return missing(at .. ".type")
  end
  return true
end

-- tools, and those additional_tools input items bring -> canonical tools,
-- or nil, err
local function tools_of(req)
  local tools = {}
  for i, t in ipairs(is_array(req.tools) and req.tools or {}) do
    local ok, err = add_tool(tools, t, string.format("tools[%d]", i - 1))
    if not ok then return nil, err end
  end
  for i, it in ipairs(is_array(req.input) and req.input or {}) do
    if type(it) == "table" and it.type == "additional_tools" and is_array(it.tools) then
      for j, t in ipairs(it.tools) do
        local ok, err = add_tool(tools, t, string.format("input[%d].tools[%d]", i - 1, j - 1))
        if not ok then return nil, err end
      end
    end
  end
  return #tools > 0 and tools or nil
end

-- tool_choice -> the canonical choice, or nil, err
local choice_strings = { auto = "auto", none = "none", required = "any" }
local function tool_choice_of(tc)
  if type(tc) == "string" then
    if not choice_strings[tc] then
      return invalid_value("tool_choice", string.format("'%s' is not one of 'none', 'auto', 'required'.", tc))
    end
    return { type = choice_strings[tc] }
  end
  if not is_object(tc) then return invalid_type("tool_choice", "one of a string or an object", tc) end
  if tc.type == "function" or tc.type == "custom" then
    if type(tc.name) ~= "string" then return missing("tool_choice.name") end
    return { type = "tool", name = tc.name }
  end
  -- allowed_tools, a hosted tool's type, mcp, custom: the upstream judges
  return { type = "native", format = "responses", raw = tc, kind = tostring(tc.type) }
end

--- decode(body, headers) -> canonical request | nil, err
-- Checks what the gateway reads to route and to translate; the items are
-- looked at only when the request is translated.
function M.decode(body, headers)
  local req, err = oc.body(body, { "model", "stream", "input", "previous_response_id" })
  if not req then return nil, err end
  if given(req.input) and type(req.input) ~= "string" and not is_array(req.input) then
    return invalid_type("input", "one of a string or an array", req.input)
  end
  err = oc.fields(req, checks)
  if err then return nil, err end
  if req.background == true then
    -- a background response is polled at GET /v1/responses/{id}, which is
    -- the gateway's own store: it cannot follow one an upstream runs
    return invalid_value("background", "background responses are not supported by this gateway; send the request without it.",
      "unsupported_parameter")
  end
  for i, v in ipairs(is_array(req.include) and req.include or {}) do
    if type(v) ~= "string" then return invalid_type(string.format("include[%d]", i - 1), "a string", v) end
  end
  local r = is_object(req.reasoning) and req.reasoning or {}
  if given(r.effort) then
    if type(r.effort) ~= "string" then return invalid_type("reasoning.effort", "a string", r.effort) end
    if not efforts[r.effort] then
      return invalid_value("reasoning.effort", string.format("'%s' is not one of 'none', 'minimal', 'low', 'medium', 'high', 'xhigh'.", r.effort))
    end
  end
  local summary = given(r.summary) and r.summary or (given(r.generate_summary) and r.generate_summary or nil)
  if summary ~= nil and not summaries[summary] then
    return invalid_value("reasoning.summary", string.format("'%s' is not one of 'auto', 'concise', 'detailed'.", tostring(summary)))
  end

  local creq = {
    client = "responses",
    model = req.model,
    stream = req.stream == true,
    max_tokens = num(req.max_output_tokens),
    temperature = num(req.temperature),
    top_p = num(req.top_p),
    store = req.store ~= false,
    raw = req,
  }
  -- fields most requests do not carry, set only when they do
  local effort = str(r.effort)
  if effort or summary then creq.reasoning = { effort = effort, summary = summary } end
  if type(req.user) == "string" then creq.user = req.user end
  if is_object(req.metadata) then creq.metadata = req.metadata end
  if type(req.previous_response_id) == "string" then creq.previous_response_id = req.previous_response_id end
  for _, v in ipairs(is_array(req.include) and req.include or {}) do
    if v == "reasoning.encrypted_content" then creq.include_encrypted = true end
  end
  local text = is_object(req.text) and req.text or {}
  if given(text.format) then
    local f, err = format_of(text.format)
    if f == nil then return nil, err end
    creq.format = f or nil
  end
  local tools, terr = tools_of(req)
  if terr then return nil, terr end
  creq.tools = tools
  if given(req.tool_choice) then
    local tc, err = tool_choice_of(req.tool_choice)
    if not tc then return nil, err end
    creq.tool_choice = tc
  end
  creq.disable_parallel = req.parallel_tool_calls == false or nil
  setmetatable(creq, Lazy)
  creq.raw_body = body
  creq.client_key = canonical.client_key(headers)
  return creq
end

-- The response store ----------------------------------------------------------

-- the items of a JSON array text, without its brackets ("" when none)
local function array_inner(text)
  local inner = text:match("^%s*%[(.*)%]%s*$") or ""
  return inner:find("^%s*$") and "" or inner
end

-- the request's own input as the items of a JSON array text, the client's
-- bytes as they came (a string input is one user message)
local function input_inner(body)
  local span = json.top_level(body, { input = true }).input
  if not span then return "" end
  local v = body:sub(span.from, span.to)
  if v:sub(1, 1) == '"' then return '{"role":"user","content":' .. v .. "}" end
  if v:sub(1, 1) == "[" then return array_inner(v) end
  return ""
end

local function join_items(parts)
  local out = {}
  for _, p in ipairs(parts) do if p ~= "" then out[#out + 1] = p end end
  return "[" .. concat(out, ",") .. "]"
end

-- an unknown previous_response_id: a 404, as for GET and DELETE of an id
-- the store does not hold (OpenAI itself answers 400 with this code)
local function previous_not_found(id)
  return errors.new(404, string.format("Previous response with id '%s' not found.", shown(id)),
    { param = "previous_response_id", code = "previous_response_not_found" })
end

-- a chain the store no longer holds whole, or cannot walk: the same 404
-- (held: the gateway holds the response named, but cannot follow it back)
local function chain_broken(id, why)
  local e = errors.new(404, string.format("Previous response with id '%s' cannot be continued: %s", shown(id), why),
    { param = "previous_response_id", code = "previous_response_not_found" })
  e.held = true
  return e
end

-- the stored entry of id, as the text spans of its parts: {input = text,
-- output = text (JSON arrays), previous = id | nil}, or nil (not held)
local function entry(store, id)
  local text = store:get(id) -- the entry becomes the most recently used
  -- (the prefix: only this door's entries are read as JSON)
  if not (text and text:find('^{"response":')) then return nil end
  local s = json.top_level(text, { input = true, output = true, previous = true })
  if not (s.input and s.output) then return nil end
  local input, output = text:sub(s.input.from, s.input.to), text:sub(s.output.from, s.output.to)
  if input:sub(1, 1) ~= "[" or output:sub(1, 1) ~= "[" then return nil end
  local prev = s.previous and json.decode(text:sub(s.previous.from, s.previous.to))
  return { input = input, output = output, previous = type(prev) == "string" and prev or nil }
end

--- MAX_CHAIN: the most responses one previous_response_id expands to (a
-- guard: the store's own bound on entries is lower by default)
M.MAX_CHAIN = 10000

-- the conversation that ends with the response id: its entries oldest
-- first, or nil, err. Each turn's entry names the one before it; every one
-- of them must still be held. ids (a set) gets the ids walked.
local function chain(store, id, ids)
  local entries, at = {}, id
  while at do
    if ids[at] then
      return nil, chain_broken(id, "the stored responses before it name each other in a loop.")
    end
    if #entries >= M.MAX_CHAIN then
      return nil, chain_broken(id, string.format("its conversation is longer than the %d responses the gateway "
        .. "expands; send the earlier turns in input instead.", M.MAX_CHAIN))
    end
    local e = entry(store, at)
    if not e then
      if at == id then return nil, previous_not_found(id) end
      return nil, chain_broken(id, string.format("part of its conversation (response '%s') is no longer stored; "
        .. "send the earlier turns in input instead.", shown(at)))
    end
    ids[at] = true
    entries[#entries + 1] = e
    at = e.previous
  end
  local n = #entries
  for i = 1, math.floor(n / 2) do entries[i], entries[n + 1 - i] = entries[n + 1 - i], entries[i] end
  return entries
end

--- prepare(creq, app) -> nil | err: before the request is routed.
-- previous_response_id: the stored conversation goes before the request's
-- input (creq.history, read by the canonical messages; creq.raw_body
-- rewritten with the whole input and no previous_response_id, so that an
-- upstream of this format gets it too; creq.expanded = true). A chain the
-- store does not hold whole (the id unknown, an earlier response evicted)
-- is left to M.accepts: an upstream of this format may hold it.
-- store (the default): creq.on_complete(response [, output_json]) keeps
-- the finished response for GET and for the next turn: its own entry, one
-- turn's worth (see "Stored responses" above).
function M.prepare(creq, app)
  local store = owned(app and app.store, creq.client_key)
  if not store then return nil end
  local body = creq.raw_body or ""
  local own = (creq.previous_response_id or creq.store) and input_inner(body) or ""
  local own_input = join_items({ own }) -- this turn's own items, as a JSON list
  local input_text = own_input
  local prev = creq.previous_response_id
  local ids = {} -- the conversation's ids: an answer is never kept under one
  if prev then
    local entries, err = chain(store, prev, ids)
    ids[prev] = true
    if not entries then
      -- the chain, if any, lives upstream
      creq.previous_missing = err
    else
      local history, parts = {}, {}
      for _, e in ipairs(entries) do
        for _, part in ipairs({ e.input, e.output }) do
          for _, it in ipairs(json.decode(part) or {}) do history[#history + 1] = it end
          parts[#parts + 1] = array_inner(part)
        end
      end
      parts[#parts + 1] = own
      input_text = join_items(parts)
      creq.history = history
      creq.expanded = true
      local rewritten = json.set_top(body, "input", input_text)
      creq.raw_body = json.replace_top(rewritten, "previous_response_id", "null") or rewritten
    end
  end
  if creq.store then
    local previous = prev and json.encode(prev) or "null"
    -- response: the response object, or its JSON text (an upstream's of
    -- this format, passed through: its bytes are kept as they came);
    -- output_json: its output items as the store keeps them (the
    -- encoder's, with encrypted_content), else the response's own
    -- text: the response's JSON text too, when the caller has it already
    creq.on_complete = function(response, output_json, text)
      if type(response) == "string" then text, response = response, json.decode(response) end
      if type(response) ~= "table" or type(response.id) ~= "string" then return end
      if response.status ~= "completed" and response.status ~= "incomplete" then return end
      -- an upstream that answers under an id of the conversation itself
      -- would make the chain a loop (and replace a turn): not kept
      if ids[response.id] then return end
      if type(text) == "string" and not output_json then
        local span = json.top_level(text, { output = true }).output
        output_json = span and text:sub(span.from, span.to)
      end
      if not (output_json and output_json:find("^%s*%[")) then
        output_json = json.encode_raw(is_array(response.output) and #response.output > 0
          and response.output or json.empty_array)
      end
      -- The store may refuse it ("too large" for its byte bound, "disabled"
      -- with max_entries 0): the response is then simply not kept. The
      -- client has its answer all the same; a GET of its id, or a next turn
      -- naming it, finds nothing (a 404, as for one evicted).
      store:put(response.id, '{"response":' .. (text or json.encode_raw(response)) .. ',"previous":' .. previous
        .. ',"input":' .. own_input .. ',"output":' .. output_json .. "}")
    end
  end
  return nil
end

--- on_raw(creq, ev): what passes through from an upstream of this format
-- (ev: {type = "raw", data, event} a stream's frame, {type = "raw_body",
-- body} a whole answer): the response it ends with is stored as the
-- encoder would store its own (creq.on_complete, when there is one)
function M.on_raw(creq, ev)
  local data = ev.data
  if ev.type == "raw" and type(data) == "string" and rawget(creq, "passed_id") == nil then
    -- the upstream's first event names its response: a failure after it
    -- is written as that response's (Encoder:error)
    local first = json.decode(data)
    local r = type(first) == "table" and first.response
    rawset(creq, "passed_id", type(r) == "table" and str(r.id) or false)
  end
  local keep = creq.on_complete
  if not keep then return end
  if ev.type == "raw_body" then return keep(ev.body) end
  if type(data) ~= "string" then return end
  local name = ev.event or data:match('^{%s*"type"%s*:%s*"([^"]*)"')
  if name ~= "response.completed" and name ~= "response.incomplete" then return end
  local span = json.top_level(data, { response = true }).response
  if span then keep(data:sub(span.from, span.to)) end
end

--- accepts(creq, route) -> nil | err: a previous_response_id the store
-- does not hold is the client's 404, unless the route's upstream speaks
-- this format and may hold it itself
function M.accepts(creq, route)
  local err = rawget(creq, "previous_missing")
  if not err then return nil end
  local link = route and route.chain and route.chain[1]
  local p = link and link.provider
  local format = p and p.adapter and p.adapter.format
  -- an id the gateway never held may be the upstream's own; one it holds
  -- but cannot follow back gets the gateway's own answer
  if format == "responses" and not err.held then return nil end
  return err
end

-- Encoding ------------------------------------------------------------------

local random_id = canonical.random_id
local empty = json.empty_array

local function usage_object(u)
  u = u or {}
  local i, o = u.input_tokens or 0, u.output_tokens or 0
  return {
    input_tokens = i,
    input_tokens_details = { cached_tokens = u.cached_tokens or 0, cache_write_tokens = u.cache_creation_tokens or 0 },
    output_tokens = o,
    output_tokens_details = { reasoning_tokens = u.reasoning_tokens or 0 },
    total_tokens = i + o,
  }
end

-- the error code a Responses client reads in response.failed
local function failure_code(err)
  if type(err.code) == "string" then return err.code end
  if err.status == 429 then return "rate_limit_exceeded" end
  return "server_error"
end

-- One state machine serves the stream encoder (frames on) and the collector
-- (frames off): the output items, each opened, filled and closed in turn.
-- An item record: {kind = "message" | "reasoning" | "function_call" |
-- "custom_tool_call", id, index (its output_index), status, ...}: a
-- message's text (buf), a reasoning item's summary parts (summaries, buf
-- for the open one, part: its index) and opaque value (signature, origin,
-- item_id, or redacted), a call's call_id, name, namespace and argument
-- fragments (args), and ended once its toolcall_end came (State:event).
local State = {}
State.__index = State

local function new_state(creq, meta, streaming)
  meta = meta or {}
  return setmetatable({
    creq = creq, id = meta.id or random_id("resp_", 48), created = meta.created or os.time(),
    streaming = streaming, seq = 0, out = {}, items = {}, open = nil, calls = {},
    started = false, usage = nil, final = nil,
  }, State)
end

-- an event frame: a table (type and sequence_number added here)...
function State:emit(t, ev)
  if not self.streaming then return end
  ev.type = t
  ev.sequence_number = self.seq
  self.seq = self.seq + 1
  local out = self.out
  out[#out + 1] = { event = t, data = json.encode_raw(ev) }
end

-- ... or written out (a delta: one string encoded per token); rest is the
-- JSON text after the sequence number, from its comma on
function State:emit_text(t, rest)
  if not self.streaming then return end
  local out = self.out
  out[#out + 1] = { event = t, data = '{"type":"' .. t .. '","sequence_number":' .. self.seq .. rest .. "}" }
  self.seq = self.seq + 1
end

-- a reasoning item's opaque value, as the client carries it: a Responses
-- upstream's encrypted_content as it came (when the item keeps its id),
-- anything else packed so that it comes back to its maker
local function encrypted(rec)
  if rec.redacted then return canonical.pack_opaque(REDACTED, nil, rec.redacted) end
  if not rec.signature then return nil end
  local origin = rec.origin or "anthropic"
  if origin == "responses" and (rec.item_id == nil or rec.item_id == rec.id) then return rec.signature end
  return canonical.pack_opaque(origin, rec.item_id, rec.signature)
end

-- the item as the API shows it: opened (nothing in it yet) or closed;
-- stored: with its encrypted_content whatever the client asked
function State:item(rec, closed, stored)
  if rec.kind == "message" then
    return { id = rec.id, type = "message", status = closed and rec.status or "in_progress", role = "assistant",
      content = closed and { { type = "output_text", text = rec.text or "", annotations = empty } } or empty }
  elseif rec.kind == "reasoning" then
    local summary = empty
    if closed and #rec.summaries > 0 then
      summary = {}
      for k, s in ipairs(rec.summaries) do summary[k] = { type = "summary_text", text = s } end
    end
    local item = { id = rec.id, type = "reasoning", summary = summary }
    if closed and (stored or self.creq.include_encrypted) then item.encrypted_content = encrypted(rec) end
    return item
  end
  if rec.kind == "custom_tool_call" then
    return { id = rec.id, type = "custom_tool_call", call_id = rec.call_id, name = rec.name,
      input = closed and rec.input or "", namespace = rec.namespace }
  end
  return { id = rec.id, type = "function_call", status = closed and rec.status or "in_progress",
    arguments = closed and rec.arguments or "", call_id = rec.call_id, name = rec.name, namespace = rec.namespace }
end

-- the request's tool of that name (custom, namespace), or nil
function State:tool(name)
  local by = self.tools
  if not by then
    by = {}
    for _, t in ipairs(self.creq.tools or {}) do
      if t.name and by[t.name] == nil then by[t.name] = t end
    end
    self.tools = by
  end
  return by[name]
end

local custom_input = canonical.custom_input

-- the response object: its fields, and those of the request the API echoes
function State:response(status, output)
  local creq = self.creq
  local raw = is_object(creq.raw) and creq.raw or {}
  local text = is_object(raw.text) and raw.text or {}
  local r = is_object(raw.reasoning) and raw.reasoning or {}
  local tier = str(raw.service_tier)
  return {
    id = self.id, object = "response", created_at = self.created, status = status,
    background = false, error = null, incomplete_details = null,
    instructions = str(raw.instructions) or null,
    max_output_tokens = num(raw.max_output_tokens) or null,
    max_tool_calls = num(raw.max_tool_calls) or null,
    model = creq.model,
    output = output or empty,
    parallel_tool_calls = raw.parallel_tool_calls ~= false,
    previous_response_id = str(raw.previous_response_id) or null,
    prompt_cache_key = str(raw.prompt_cache_key) or null,
    reasoning = { effort = str(r.effort) or null, summary = str(r.summary) or null },
    safety_identifier = str(raw.safety_identifier) or null,
    service_tier = (tier == nil or tier == "auto") and "default" or tier,
    store = creq.store ~= false,
    temperature = num(raw.temperature) or 1,
    text = { format = is_object(text.format) and text.format or { type = "text" }, verbosity = str(text.verbosity) or "medium" },
    tool_choice = given(raw.tool_choice) and raw.tool_choice or "auto",
    tools = (is_array(raw.tools) and #raw.tools > 0) and raw.tools or empty,
    top_logprobs = num(raw.top_logprobs) or 0,
    top_p = num(raw.top_p) or 1,
    truncation = str(raw.truncation) or "disabled",
    usage = null,
    user = str(raw.user) or null,
    metadata = is_object(raw.metadata) and raw.metadata or {},
  }
end

function State:start()
  if self.started then return end
  self.started = true
  if self.streaming then
    local rest = ',"response":' .. json.encode_raw(self:response("in_progress")) -- both say the same
    self:emit_text("response.created", rest)
    self:emit_text("response.in_progress", rest)
  end
end

-- the open reasoning item's summary part: opened, closed
function State:open_part(rec)
  rec.part = #rec.summaries
  rec.buf = {}
  self:emit("response.reasoning_summary_part.added", { item_id = rec.id, output_index = rec.index,
    summary_index = rec.part, part = { type = "summary_text", text = "" } })
end

function State:close_part(rec)
  if not rec.buf then return end
  local text = concat(rec.buf)
  rec.buf = nil
  rec.summaries[#rec.summaries + 1] = text
  self:emit("response.reasoning_summary_text.done", { item_id = rec.id, output_index = rec.index,
    summary_index = rec.part, text = text })
  self:emit("response.reasoning_summary_part.done", { item_id = rec.id, output_index = rec.index,
    summary_index = rec.part, part = { type = "summary_text", text = text } })
end

-- closes the open item (status: "completed", or "incomplete" when the
-- answer was cut short)
function State:close(status)
  local rec = self.open
  if not rec then return end
  self.open = nil
  rec.status = status or "completed"
  if rec.kind == "message" then
    rec.text = concat(rec.buf)
    self:emit("response.output_text.done", { item_id = rec.id, output_index = rec.index, content_index = 0,
      text = rec.text, logprobs = empty })
    self:emit("response.content_part.done", { item_id = rec.id, output_index = rec.index, content_index = 0,
      part = { type = "output_text", text = rec.text, annotations = empty } })
  elseif rec.kind == "reasoning" then
    self:close_part(rec)
  elseif rec.kind == "custom_tool_call" then
    -- its input comes whole: the canonical arguments wrap it in JSON
    rec.input = custom_input(concat(rec.args))
    if rec.input ~= "" then
      self:emit("response.custom_tool_call_input.delta", { item_id = rec.id, output_index = rec.index, delta = rec.input })
    end
    self:emit("response.custom_tool_call_input.done", { item_id = rec.id, output_index = rec.index, input = rec.input })
  else
    rec.arguments = concat(rec.args)
    self:emit("response.function_call_arguments.done", { item_id = rec.id, output_index = rec.index,
      arguments = rec.arguments, name = rec.name })
  end
  rec.closed = true
  self:emit("response.output_item.done", { output_index = rec.index, item = self:item(rec, true) })
end

function State:open_item(rec)
  self:close()
  rec.index = #self.items
  self.items[#self.items + 1] = rec
  self.open = rec
  self:emit("response.output_item.added", { output_index = rec.index, item = self:item(rec, false) })
  return rec
end

-- the open reasoning item that may take more (not sealed by its opaque
-- value), else a new one; id: the upstream's item id when it gave one
function State:reasoning(item_id)
  local rec = self.open
  if rec and rec.kind == "reasoning" and not rec.sealed and (item_id == nil or item_id == rec.id) then return rec end
  return self:open_item({ kind = "reasoning", id = item_id or random_id("rs_", 48), summaries = {} })
end

function State:event(ev)
  local t = ev.type
  self:start()
  if t == "text_delta" then
    if not ev.text or ev.text == "" then return end
    local rec = self.open
    if not rec or rec.kind ~= "message" then
      rec = self:open_item({ kind = "message", id = random_id("msg_", 48), buf = {} })
      self:emit("response.content_part.added", { item_id = rec.id, output_index = rec.index, content_index = 0,
        part = { type = "output_text", text = "", annotations = empty } })
    end
    rec.buf[#rec.buf + 1] = ev.text
    if self.streaming then -- written out: the same head for every delta of the item
      rec.head = rec.head or string.format(',"item_id":"%s","output_index":%d,"content_index":0,"delta":',
        rec.id, rec.index)
      local out = self.out
      out[#out + 1] = { event = "response.output_text.delta", data = '{"type":"response.output_text.delta","sequence_number":'
        .. self.seq .. rec.head .. json.encode(ev.text) .. ',"logprobs":[]}' }
      self.seq = self.seq + 1
    end
  elseif t == "thinking_delta" then
    -- (a separator between summary parts: this format keeps the parts apart)
    if not ev.text or ev.text == "" or ev.separator then return end
    local rec = self:reasoning((ev.origin == nil or ev.origin == "responses") and str(ev.item_id) or nil)
    if rec.buf and ev.summary_index and ev.summary_index ~= rec.part then self:close_part(rec) end
    if not rec.buf then self:open_part(rec) end
    rec.buf[#rec.buf + 1] = ev.text
    -- the id may be the upstream's: encoded like any string it sent
    self:emit_text("response.reasoning_summary_text.delta", string.format(',"item_id":%s,"output_index":%d,"summary_index":%d,"delta":%s',
      json.encode(rec.id), rec.index, rec.part, json.encode(ev.text)))
  elseif t == "thinking_signature" then
    -- the reasoning item's opaque value ends it: the open one's, else one
    -- of its own (a reasoning item with no summary)
    local origin = ev.origin or "anthropic"
    local rec = self.open
    if not (rec and rec.kind == "reasoning" and not rec.sealed) then
      rec = self:reasoning(origin == "responses" and str(ev.item_id) or nil)
    end
    rec.signature, rec.origin, rec.item_id, rec.sealed = ev.signature, origin, ev.item_id, true
    self:close()
  elseif t == "redacted_thinking" then
    local rec = self:open_item({ kind = "reasoning", id = random_id("rs_", 48), summaries = {} })
    rec.redacted, rec.sealed = ev.data, true
    self:close()
  elseif t == "toolcall_start" then
    local tool = self:tool(ev.name) or {}
    local custom = tool.custom
    local rec = self:open_item({ kind = custom and "custom_tool_call" or "function_call",
      id = random_id(custom and "ctc_" or "fc_", 48), call_id = ev.id or random_id("call_", 24),
      name = ev.name or "", namespace = tool.namespace, args = {} })
    self.calls[ev.index or 0] = rec
  elseif t == "toolcall_delta" then
    local rec = self.calls[ev.index or 0]
    if not rec or rec.closed or rec.ended or not ev.arguments or ev.arguments == "" then return end
    rec.args[#rec.args + 1] = ev.arguments
    if rec.kind == "custom_tool_call" then return end
    self:emit_text("response.function_call_arguments.delta", string.format(',"item_id":"%s","output_index":%d,"delta":%s',
      rec.id, rec.index, json.encode(ev.arguments)))
  elseif t == "toolcall_end" then
    -- the call stays the open item until the next one opens (it is then
    -- completed) or the answer ends: an answer cut short by the token
    -- limit ends the item it was writing incomplete, as OpenAI marks it,
    -- though every upstream's adapter ends a cut-off call like any other
    local rec = self.calls[ev.index or 0]
    if rec and rec == self.open then rec.ended = true end
  elseif t == "usage" then
    self.usage = ev
  elseif t == "done" then
    self:finish(ev.reason)
  end
end

local incomplete_reasons = { length = "max_output_tokens", content_filter = "content_filter" }

-- the output items as the client sees them, or as the store keeps them
function State:output(stored)
  if #self.items == 0 then return empty end
  local list = {}
  for i, rec in ipairs(self.items) do list[i] = self:item(rec, rec.closed, stored) end
  return list
end

-- the end: the open item closed, the whole response, and the store told
function State:finish(reason)
  if self.final then return end
  local why = incomplete_reasons[reason]
  self:close(why and "incomplete" or "completed")
  local r = self:response(why and "incomplete" or "completed", self:output(false))
  if why then r.incomplete_details = { reason = why } end
  r.usage = usage_object(self.usage)
  self.final = r
  -- the response's text made once: for the event and for the store
  local text = json.encode_raw(r)
  self.final_text = text
  self:emit_text(why and "response.incomplete" or "response.completed", ',"response":' .. text)
  local keep = self.creq.on_complete
  if keep then
    local stored = self:output(true)
    keep(r, json.encode_raw(stored), text)
  end
end

local Encoder = {}
Encoder.__index = Encoder

--- stream_encoder(creq, meta) -> enc; enc:event(ev) -> list of frames
-- {event, data}; meta: {id?, created?}
function M.stream_encoder(creq, meta)
  return setmetatable({ state = new_state(creq, meta, true) }, Encoder)
end

function Encoder:event(ev)
  local s = self.state
  s.out = {}
  s:event(ev)
  return s.out
end

--- error(err) -> frames: response.failed with the error (after
-- response.created, when nothing went before), the stream's last event
function Encoder:error(err)
  local s = self.state
  s.out = {}
  if s.final then return s.out end
  if err.passed and err.passed > 0 then
    -- the client has the upstream's own events (passed through): its
    -- response goes on, in their numbering, to this one failure
    s.started, s.seq = true, err.passed
    s.id = rawget(s.creq, "passed_id") or s.id
  end
  s:start()
  -- a call whose arguments were whole is done, before the failure
  if s.open and s.open.ended then s:close() end
  local r = s:response("failed", s:output(false))
  r.error = { code = failure_code(err), message = err.message or "upstream error" }
  r.usage = s.usage and usage_object(s.usage) or null
  s.final = r
  s:emit("response.failed", { response = r })
  return s.out
end

local Collector = {}
Collector.__index = Collector

--- collector(creq, meta) -> col; col:event(ev); col:result() -> the
-- response object
function M.collector(creq, meta)
  return setmetatable({ state = new_state(creq, meta, false) }, Collector)
end

function Collector:event(ev)
  self.state:event(ev)
end

function Collector:result()
  local s = self.state
  if not s.final then s:finish("stop") end
  return s.final
end

--- json_text() -> the result as JSON text, made once (the exchange sends it)
function Collector:json_text()
  local s = self.state
  if not s.final then s:finish("stop") end
  return s.final_text
end

return M
