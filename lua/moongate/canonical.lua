-- Helpers over the canonical request and events (what each field becomes:
-- docs/TRANSLATION.md), shared by front doors and providers.
local errors = require "moongate.errors"
local json = require "moongate.json"

local M = {}

--- text(blocks [, sep]) -> the text blocks joined (by sep, default "")
function M.text(blocks, sep)
  local out = {}
  for _, b in ipairs(blocks or {}) do
    if b.type == "text" then out[#out + 1] = b.text end
  end
  return M.join(out, sep)
end

--- join(list, sep) -> the texts of list joined by sep; one text alone is
-- itself (a raw string stays raw: json.lua), several are their words
function M.join(list, sep)
  if #list == 1 then return list[1] end
  for i = 1, #list do list[i] = json.str(list[i]) end
  return table.concat(list, sep)
end

--- data_url(url) -> mime, base64 data of a data: URL, or nil
function M.data_url(url)
  if type(url) ~= "string" then return nil end
  return url:match("^data:([%w/%+%.%-]+);base64,(.*)$")
end

--- dropped(creq, what): notes that the translation left out a field that
-- changes nothing the client relies on (docs/TRANSLATION.md); the provider
-- logs the list at debug level
function M.dropped(creq, what)
  local d = rawget(creq, "dropped")
  if not d then d = {}; rawset(creq, "dropped", d) end
  for i = 1, #d do if d[i] == what then return end end
  d[#d + 1] = what
end

M.format_names = { openai = "OpenAI", anthropic = "Anthropic", responses = "OpenAI Responses",
  prompt = "raw completion (prompt mode)", ollama = "Ollama" }

--- lazy_tools(creq, tools_of) -> the canonical tools, made now from the
-- client's (a door left them unread: a passthrough never needs them), once;
-- tools_of(raw) -> list | nil | nil, err. A bad tool is refused as the
-- door's decode would have refused it.
function M.lazy_tools(creq, tools_of)
  rawset(creq, "tools_made", true)
  local tools, err = tools_of(creq.raw)
  if err then errors.refuse(err.status, err.message, { param = err.param, code = err.code, type = err.type }) end
  rawset(creq, "tools", tools)
  return tools
end

--- foreign_fields(creq, format): the client's top-level fields on their
-- way to an upstream of another format. Each has a fate in its front
-- door's table (creq.fields, docs/TRANSLATION.md): "mapped" (the canonical
-- form carries it), "drop" (noted by dropped()), or a string that says why
-- it is refused; a field the table does not know is refused by name.
function M.foreign_fields(creq, format)
  if creq.client == format then return end
  local u = creq.untranslatable -- what the front door says cannot be carried (read only now)
  if u then errors.refuse(400, u.message, { param = u.param }) end
  local fields, raw = creq.fields, creq.raw
  if not fields or not raw then return end
  for k, v in pairs(json.whole(raw)) do
    local fate = fields[k]
    if v == json.null then fate = "mapped" end -- null: as if absent
    if fate == "drop" then
      M.dropped(creq, k)
    elseif fate == nil then
      errors.refuse(400, string.format("%s: unknown field, which the gateway cannot translate for an upstream of the %s format",
        tostring(k), M.format_names[format] or tostring(format)), { param = tostring(k) })
    elseif fate ~= "mapped" then
      errors.refuse(400, string.format("%s: %s", tostring(k), fate), { param = tostring(k) })
    end
  end
end

--- Reasoning that only its maker can read back. A canonical thinking block
-- (and the thinking_signature event) carries it as `signature`, an opaque
-- string, with `origin`, the kind of upstream that made it ("anthropic":
-- a thinking signature; "responses": a reasoning item's encrypted_content,
-- with the item's id as `item_id`). It is handed back, byte for byte, only
-- to an upstream of that kind; elsewhere it is dropped (docs/TRANSLATION.md).
-- A client whose format has no place for another kind's value carries it
-- packed in its own field (an Anthropic signature, a Responses
-- encrypted_content): "mg1~<origin>~<item id>~<value>" (base64 and the ids
-- hold no "~").

M.PACKED = "mg1~" -- how a packed value begins

--- pack_opaque(origin, item_id, value) -> the packed string
function M.pack_opaque(origin, item_id, value)
  return M.PACKED .. origin .. "~" .. (item_id or "") .. "~" .. (value or "")
end

--- unpack_opaque(s, native) -> origin, item_id, value: a packed string's
-- parts, or (native, nil, s) for a value the client's own kind made
function M.unpack_opaque(s, native)
  if type(s) ~= "string" then return native, nil, nil end
  if s:sub(1, #M.PACKED) == M.PACKED then
    local origin, id, value = s:match("^mg1~([%w_]+)~([^~]*)~(.*)$")
    if origin then return origin, id ~= "" and id or nil, value end
  end
  return native, nil, s
end

-- the fields of a canonical request that are the client's own bytes or
-- the gateway's bookkeeping, not the canonical form (snapshot leaves them out)
local not_canonical = { raw = true, raw_body = true, client_key = true, fields = true,
  untranslatable = true, dropped = true, packed = true, tools_made = true, system_made = true, need_usage = true, usage_added = true,
  ollama_model = true, t0 = true, load_only = true } -- (the Ollama door's own notes)

--- snapshot(creq) -> the canonical request as a plain table (messages made
-- if they are lazy; the client's raw bytes and each function tool's raw
-- form left out): what fixtures compare and docs/CANONICAL.md describes
function M.snapshot(creq)
  local _ = creq.messages -- a lazy front door decodes them now
  _ = creq.tools -- (and its tools)
  local out = {}
  for k, v in pairs(creq) do
    if not not_canonical[k] and type(v) ~= "function" then out[k] = v end
  end
  if rawget(creq, "system") == nil and creq.system ~= nil then out.system = creq.system end
  if creq.messages then out.messages = creq.messages end
  if type(out.tools) == "table" then
    local tools = {}
    for i, t in ipairs(out.tools) do
      local c = {}
      -- a function tool's raw form is the client's bytes; a server or
      -- native tool is carried as it came (raw is all there is of it)
      for k, v in pairs(t) do if k ~= "raw" or t.server or t.native then c[k] = v end end
      tools[i] = c
    end
    out.tools = tools
  end
  return out
end

--- custom_input(arguments) -> a custom tool call's free-form input: the
-- canonical arguments wrap it as {"input": "..."}; other text is the input
function M.custom_input(arguments)
  local v = json.decode(arguments or "")
  if type(v) == "table" and type(v.input) == "string" then return v.input end
  return arguments or ""
end

--- last_user_text(creq) -> text of the last user message ("" if none)
function M.last_user_text(creq)
  for i = #creq.messages, 1, -1 do
    local m = creq.messages[i]
    if m.role == "user" then return M.text(m.content) end
  end
  return ""
end

--- estimate_tokens(text) -> a rough count (4 bytes a token), for upstreams
-- and providers that report none. Documented as an estimate.
function M.estimate_tokens(text)
  if not text or text == "" then return 0 end
  return math.ceil(#text / 4)
end

--- prompt_tokens(creq) -> estimate over the system prompt, all messages
-- and the tools' definitions
function M.prompt_tokens(creq)
  local n = M.estimate_tokens(json.str(creq.system))
  for _, m in ipairs(creq.messages) do
    for _, b in ipairs(m.content) do
      local t = b.text or b.arguments or b.content
      t = json.str(t) -- (a raw string: decoded for this estimate)
      n = n + M.estimate_tokens(type(t) == "string" and t or nil)
    end
    n = n + 3 -- per-message framing
  end
  for _, t in ipairs(creq.tools or {}) do
    local ok, schema = true, json.raw_text(t.parameters)
    if not schema then ok, schema = pcall(json.encode, t.parameters or t.raw or {}) end
    n = n + M.estimate_tokens(t.name) + M.estimate_tokens(json.str(t.description))
      + M.estimate_tokens(ok and schema or nil) + 8
  end
  return n
end

--- tool_schema(creq, name) -> the JSON Schema of the request's tool of that
-- name (its parameters), or nil
function M.tool_schema(creq, name)
  for _, t in ipairs(creq and creq.tools or {}) do
    if t.name == name then return t.parameters end
  end
end

--- tool_call_events(out, index, id, name, arguments): appends the events of
-- one whole tool call (start, its arguments at once, end) to out
function M.tool_call_events(out, index, id, name, arguments)
  out[#out + 1] = { type = "toolcall_start", index = index, id = id, name = name }
  out[#out + 1] = { type = "toolcall_delta", index = index, arguments = arguments }
  out[#out + 1] = { type = "toolcall_end", index = index }
end

local digits = {} -- the 62 letters and digits of an id, one string each
for c in ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"):gmatch(".") do
  digits[#digits + 1] = c
end
local scratch = {} -- random_id's digits, reused: no table per id
local concat, random, floor = table.concat, math.random, math.floor

--- random_id(prefix, n) -> prefix followed by n random letters and digits
-- (one math.random() holds 8 such digits: 62^8 < 2^52)
function M.random_id(prefix, n)
  local x, left = 0, 0
  for i = 1, n do
    if left == 0 then x, left = floor(random() * 62 ^ 8), 8 end
    local d = x % 62
    scratch[i] = digits[d + 1]
    x, left = (x - d) / 62, left - 1
  end
  return prefix .. concat(scratch, "", 1, n)
end

--- client_key(headers) -> the key the client sent (Bearer or x-api-key)
function M.client_key(headers)
  if not headers then return nil end
  local auth = headers.authorization
  return (auth and auth:match("^[Bb]earer%s+(.+)$")) or headers["x-api-key"]
end

return M
