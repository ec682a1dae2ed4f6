-- A mock upstream speaking OpenAI chat completions, OpenAI Responses,
-- OpenAI's legacy completions and embeddings, Anthropic messages, and
-- llama.cpp's own completion endpoint (llama-server's POST /completion),
-- scripted per test, and as strict as the real APIs about what it is sent.
-- It stands in for the account upstreams too: the GitHub Copilot API under
-- /copilot (POST /copilot/chat/completions, /copilot/v1/messages,
-- /copilot/responses, /copilot/embeddings, GET /copilot/models) and the
-- ChatGPT Codex backend under /backend-api/codex (POST .../responses, GET
-- .../models?client_version=...): see "Accounts" below.
-- Run: luajit spec/support/mock_upstream.lua [port]
-- It prints "mock listening on PORT" once it listens.
--
-- Control endpoints:
--   POST /_mock/queue     JSON list of scripted responses, served in order to
--                         the next requests (any path but /_mock/*) that pass
--                         the checks below
--   GET  /_mock/requests  JSON list of what it received: method, path,
--                         headers, body, at_ms, closed_at_ms (wall clock),
--                         rejected (the refusal's message, when the checks
--                         failed; "unauthorized" for a bearer /_mock/auth
--                         refused), proxy = true (the mock used as an
--                         HTTP(S)_PROXY: an absolute-URI request, served as
--                         any other, or a CONNECT - a client reaching for an
--                         https:// host, answered 403)
--   POST /_mock/reset     forget the queue and the requests (strict again,
--                         no bearer asked, the default models)
--   POST /_mock/strict    {"strict": false}: answer every request, checked or
--                         not (until the next reset; /_mock/auth still holds)
--   POST /_mock/auth      {"bearer": "T"}: from then on a request (any path but
--                         /_mock/*) whose Authorization is not exactly
--                         "Bearer T" (for a plain Anthropic path, nor its
--                         x-api-key T) is answered 401 in its path's error
--                         format, using up no script; {"bearer": null} stops it
--   POST /_mock/models    {"copilot": [...], "codex": [...]}: the models lists
--                         GET .../models serves and the account checks use
--                         (a list not given stays). A Copilot model: "id" or
--                         {id, supported_endpoints, type = "chat" |
--                         "embeddings", vendor, name, family, premium, any
--                         other field of the model object}; a Codex model:
--                         "slug" or {slug, efforts = {"low", ...}, any field
--                         of ModelInfo}
-- GET <anything>/models is answered by the mock itself, never from the
-- queue (a daemon fetches models in the background): under
-- /backend-api/codex/ {"models": [ModelInfo]}, elsewhere Copilot's
-- {"data": [{id, name, vendor, object, capabilities {family, type, limits,
-- supports}, policy, billing, supported_endpoints}], "object": "list"}.
-- Default models: Copilot gpt-4.1 (/chat/completions), claude-sonnet-4.5
-- (/v1/messages, /chat/completions), gpt-5.1-codex (/responses), gpt-5-mini
-- (/chat/completions, /responses), text-embedding-3-small (embeddings, no
-- supported_endpoints); Codex gpt-5.1-codex, gpt-5.1 (efforts low, medium,
-- high).
-- A scripted response: {status = 200, headers = {...}, json = value |
--   body = "raw bytes", frames = {{data = "..." | json = value, event = "x",
--   delay_ms = n | pad = n (n bytes of a data line that never ends)}},
--   drop_after = n (close the connection after n frames),
--   bytewise_ms = n (the frames written a byte at a time, n ms apart),
--   gzip = true (the body compressed, with content-encoding: gzip),
--   delay_ms = n (before the status line)}
-- or a reply, written in the format of the request (path, stream or not):
--   {reply = {text = "...", thinking = "...", signature = "...",
--     tool_calls = {{id = "toolu_1", name = "Bash", input = {...}}, ...},
--     stop = "end_turn" (default: tool_use / tool_calls when there are calls),
--     reasoning_id = "rs_..." (Responses), embeddings = {{...}, ...}},
--    delay_ms = n}
--   Responses: thinking is a reasoning item (id rs_mock_N or reasoning_id;
--   its summary; its encrypted_content, the signature or one of the
--   mock's, when the request's include asks for reasoning.encrypted_content,
--   and only that value is taken back for that id), text a message, tool_calls function_call items; stop =
--   "length" / "content_filter" ends it incomplete; streamed as the API's
--   events with sequence_number. Completions: text ("" for an empty
--   completion; missing = true: no text field at all), stop = "length"
--   for finish_reason length. llama.cpp
--   (.../completion): text ("" for an empty completion), stop = "length" |
--   "limit" (stop_type limit), "word" (stopping_word: the request's first
--   stop, or r.stopping_word), else stop_type eos; `missing = true` leaves
--   content out of the answer (a back end that says nothing at all).
--   Embeddings: a vector of
--   EMBED_DIM values (or the request's dimensions) per input, base64
--   float32 when encoding_format asks for it.
-- With nothing queued it echoes the last user message (a completion's
-- prompt) in the format of the path (.../chat/completions, .../responses,
-- .../completions, .../completion, /v1/messages; a ?query ignored),
-- streamed when asked,
-- and answers .../embeddings with the mock's vectors.
--
-- Strictness. A JSON POST (content-type: application/json, as the daemon
-- sends them all) to .../chat/completions, .../responses, .../completions,
-- .../embeddings or .../messages[/count_tokens] is checked the way the real
-- API checks it, before any script is used up: a request the real API
-- would refuse gets its 400, in its shape
--   OpenAI    {"error": {"message", "type": "invalid_request_error", "param", "code"}}
--   Anthropic {"type": "error", "error": {"type": "invalid_request_error", "message"}}
-- and the messages the real APIs use ("messages.1.role: Input should be 'user'
-- or 'assistant'", "Missing required parameter: 'messages[0].content'.").
-- What is checked is written as data: SHAPES.<api> (the fields of a
-- request, of each message, item and content part / block: types, enums,
-- ranges, required, extra keys where the API refuses them) and RULES.<api>
-- (the rules that look across fields and messages), each rule with a
-- sentence saying what it checks. In short:
-- OpenAI chat completions
--   - top-level fields: the API's are checked; of the others only the
--     Anthropic API's are refused ("Unrecognized request argument supplied":
--     a translation leak), as OpenAI-compatible servers take vendor fields;
--     below the top level unknown keys are let through, as the API does;
--     model; messages non-empty; max_tokens and
--     max_completion_tokens (both valid) >= 1; n integer 1..128; logprobs
--     boolean, top_logprobs 0..20 with logprobs; temperature 0..2; top_p
--     0..1; stream_options only with stream; tool_choice and
--     parallel_tool_calls only with tools; reasoning_effort enum
--   - roles system/developer/user/assistant/tool/function
--   - content: a string or parts; part types per role: user text,
--     image_url, input_audio, file (file.file_data a data URL, or file_id);
--     system/developer/tool text; assistant text, refusal
--   - assistant content required unless tool_calls / function_call;
--     tool_calls {id, type "function", function {name, arguments: a string}}
--   - a tool message answers a tool_call id of the assistant message just
--     before it (tool messages in between allowed), and every call of an
--     assistant message is answered before the next non-tool message
--   - response_format: text / json_object / json_schema (json_schema.name
--     required, as the real API; schema optional)
--   - tools: type function, name ^[a-zA-Z0-9_-]{1,64}$, names unique
--   - JSON schemas (tool parameters, response_format): "required" a list,
--     "properties" an object
-- OpenAI Responses
--   - top-level fields: the API's only ("Unknown parameter: 'x'.");
--     model; input a string or items; instructions a string;
--     max_output_tokens >= 16; temperature 0..2; top_p 0..1; store a
--     boolean; include values from the API's list; reasoning {effort,
--     summary} enums; text.format text / json_object / json_schema (name
--     and schema required); tools: function tools {name, parameters,
--     strict}, other types as they are
--   - items: message (roles user/system/developer with input_text,
--     input_image, input_file, input_audio parts; assistant with
--     output_text, refusal; a typeless item with a role is a message),
--     function_call {call_id, name, arguments}, function_call_output
--     {call_id, output}, reasoning {id, summary [summary_text],
--     encrypted_content}, item_reference, and the hosted and custom tools'
--     item types as they are
--   - a function_call_output answers a function_call earlier in input;
--     a reasoning item is followed by the item it led to (not the end, a
--     user message or a tool output); it brings back the encrypted_content
--     the mock gave that id (nothing is stored: "Item with id ... not
--     found", "... could not be verified")
-- OpenAI completions: model, prompt (string, strings, tokens) required;
--   the API's fields checked, others let through. Embeddings: model,
--   input required, encoding_format float | base64, dimensions >= 1
-- llama.cpp's /completion (tools/server/README.md of llama.cpp)
--   - prompt required: a string, tokens (integers), tokens and strings
--     mixed, or a list of those (several prompts, which the mock refuses:
--     the daemon sends one); n_predict an integer >= -1; temperature,
--     top_p, min_p numbers (top_p, min_p 0..1); top_k, seed, n_keep,
--     n_probs integers; stop a list of strings (the server ignores a
--     string stop: refused here); stream, cache_prompt booleans;
--     messages refused (a chat body sent to the raw endpoint, which
--     would complete no prompt); other fields let through, as the server
--     takes them (max_tokens too: its alias of n_predict)
--   - errors {"error": {"code": 400, "message", "type": "invalid_request_error"}}
--   - answer {index, content, tokens, id_slot, stop: true, model,
--     tokens_predicted, tokens_evaluated, generation_settings, prompt,
--     has_new_line, truncated, stop_type (eos | word | limit),
--     stopping_word, tokens_cached, timings}; streamed: data frames
--     {index, content, tokens, stop: false, id_slot, tokens_predicted,
--     tokens_evaluated} per piece, then the final object with content ""
--     and stop: true, then the connection closes (no [DONE])
-- Anthropic messages (count_tokens the same, without max_tokens)
--   - top-level fields: known ones only ("x: Extra inputs are not
--     permitted"); model; max_tokens required >= 1; temperature 0..1
--     (1 only with thinking on); top_k >= 0; stop_sequences strings
--   - messages non-empty, the first one user; roles user/assistant, and
--     system only under a beta that allows it (BETA_ALLOWS: what each beta
--     Claude Code 2.1.332 sends lets a request carry - system messages under
--     per-turn-control-2026-07-01 / mid-conversation-tool-changes-2026-07-01
--     / mid-conversation-system-2026-04-07, output_config {effort} on them,
--     thinking.display "updates", safeguards)
--   - consecutive same-role messages are merged (accepted), as the real API
--   - content: a string or blocks: text, image (base64 jpeg/png/gif/webp,
--     url, file), document (base64 pdf, text, url, content, file),
--     tool_use, tool_result (content a string or text/image/document/
--     search_result blocks), thinking, redacted_thinking, search_result,
--     server_tool_use, web_search_tool_result (and the other server tool
--     results), container_upload, mcp_tool_use, mcp_tool_result; extra keys
--     refused; tool_use only from the assistant, tool_result only from the
--     user; text blocks non-empty; tool ids ^[a-zA-Z0-9_-]+$
--   - every message has content, but the final assistant one; that one does
--     not end with whitespace
--   - a tool_result answers a tool_use of the assistant turn just before it,
--     the tool_results come first in their turn, and each tool_use of an
--     assistant turn followed by a user turn gets its tool_result there
--   - thinking: enabled (budget_tokens >= 1024 and < max_tokens), disabled,
--     adaptive
--   - output_config {effort, format {type "json_schema", schema}}
--   - tools: custom ones with name ^[a-zA-Z0-9_-]{1,128}$ and an object
--     input_schema; server tools (type x_YYYYMMDD) as they are; names unique
-- Accounts (while strict, before any script is used; the findings and
-- their sources are in the "Accounts" section of the code):
-- GitHub Copilot, every /copilot/... request
--   - Authorization: Bearer (else 401 text/plain), Editor-Version and
--     Copilot-Integration-Id (else 400 text/plain "bad request: missing
--     Editor-Version header for IDE auth")
--   - a POST names a model of the list ("The requested model is not
--     supported.", model_not_supported) whose supported_endpoints (or, when
--     it lists none, its type: chat -> /chat/completions, embeddings ->
--     /embeddings) name the endpoint ('model "x" is not accessible via the
--     /chat/completions endpoint', unsupported_api_for_model); then the
--     endpoint's own API checks: strict chat, Anthropic messages, Responses
-- ChatGPT Codex backend, every .../backend-api/codex/... request
--   - Authorization: Bearer (else 401 {"detail": "Could not parse your
--     authentication token. ..."}) and chatgpt-account-id (else 400
--     {"detail": "Missing chatgpt-account-id header"}); OpenAI-Beta,
--     originator and session_id are recorded, not required
--   - POST .../responses: RULES.codex, answered 400 {"detail": "..."}: only
--     the fields Codex CLI sends ("Unsupported parameter: temperature"),
--     service_tier only "priority", instructions present ("Instructions are
--     required"), store false ("Store must be set to false"), stream true
--     ("Stream must be set to true"), a model of the list ("The 'x' model is
--     not supported when using Codex with a ChatGPT account."), a
--     reasoning.effort the model lists (the Responses API's "Unsupported
--     value"); then the Responses API's own checks
--   - the answer is a Responses stream; its reasoning item carries a
--     summary only when the request asks reasoning.summary, and the echo
--     (nothing queued) thinks first ("The user said: ...") when the request
--     asks a summary and its include asks reasoning.encrypted_content
-- JSON is read with a small decoder of its own that tells [] from {}
-- (lua-cjson does not), so an "input": [] or a "required": {} is caught.
-- Other requests (the host specs' bare transport bodies, GETs) are answered
-- unchecked, as is everything after POST /_mock/strict {"strict": false}.
package.path = "lua/?.lua;spec/?.lua;" .. package.path
local uv = require "luv"
-- a write to a connection the daemon closed (a cancelled upstream request)
-- must fail that write, not end the mock: SIGPIPE's default would
local sigpipe = uv.new_signal()
sigpipe:start("sigpipe", function() end)
sigpipe:unref()
local parse_request = require "support.request_parser"
local cjson = require "cjson"

local queue, requests, strict = {}, {}, true

-- lua-cjson writes an empty table as {}; the fields these APIs define as
-- lists must go out as []
-- (and a value EMPTY, "\0[]", goes out as [] wherever it is)
local function encode(v)
  return (cjson.encode(v):gsub('"(content)":{}', '"%1":[]'):gsub('"(choices)":{}', '"%1":[]')
    :gsub('"\\u0000%[%]"', "[]"))
end

---------------------------------------------------------------------------
-- JSON in: arrays carry the ARRAY metatable, null is NULL
---------------------------------------------------------------------------
local ARRAY = { __name = "array" }
local NULL = setmetatable({}, { __name = "null" })

local function decode(s)
  local pos = 1
  local function fail(what) error(string.format("invalid JSON at %d: %s", pos, what), 0) end
  local function skip() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local function str()
    local i = pos + 1
    while true do
      local j = s:find('"', i, true)
      if not j then fail("unterminated string") end
      local k = j - 1
      while s:byte(k) == 92 do k = k - 1 end -- backslashes before the quote
      if (j - 1 - k) % 2 == 0 then
        local text = s:sub(pos, j)
        pos = j + 1
        if not text:find("\\", 1, true) then return text:sub(2, -2) end
        return cjson.decode(text)
      end
      i = j + 1
    end
  end
  function value()
    skip()
    local c = s:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1
      skip()
      if s:sub(pos, pos) == "}" then pos = pos + 1 return t end
      while true do
        skip()
        if s:sub(pos, pos) ~= '"' then fail("expected a key") end
        local k = str()
        skip()
        if s:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        t[k] = value()
        skip()
        c = s:sub(pos, pos)
        pos = pos + 1
        if c == "}" then return t end
        if c ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      local t = setmetatable({}, ARRAY)
      pos = pos + 1
      skip()
      if s:sub(pos, pos) == "]" then pos = pos + 1 return t end
      while true do
        t[#t + 1] = value()
        skip()
        c = s:sub(pos, pos)
        pos = pos + 1
        if c == "]" then return t end
        if c ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then
      return str()
    elseif s:find("^true", pos) then pos = pos + 4 return true
    elseif s:find("^false", pos) then pos = pos + 5 return false
    elseif s:find("^null", pos) then pos = pos + 4 return NULL
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not num or num == "" or not tonumber(num) then fail("unexpected character") end
    pos = pos + #num
    return tonumber(num)
  end
  local v = value()
  skip()
  if pos <= #s then fail("trailing characters") end
  return v
end

local function is_list(v) return type(v) == "table" and getmetatable(v) == ARRAY end
local function is_object(v) return type(v) == "table" and getmetatable(v) == nil end

-- the JSON type of a value, as the error messages name it
local function jtype(v)
  if v == NULL then return "null" end
  if is_list(v) then return "array" end
  if is_object(v) then return "object" end
  if type(v) == "number" then return v == math.floor(v) and "integer" or "number" end
  return type(v) -- string, boolean
end

---------------------------------------------------------------------------
-- Shapes: a tiny schema language. A shape is a function
-- check(value, path, ctx) -> nil | problem, where a problem is
-- {kind = "missing" | "type" | "enum" | "extra" | "min" | "max" | "pattern" | "custom",
--  path = {...}, ...}; each API words problems its own way.
---------------------------------------------------------------------------
local S = {}

local function at(path, key)
  local p = { unpack(path) }
  p[#p + 1] = key
  return p
end

function S.string(opts)
  opts = opts or {}
  return function(v, path)
    if type(v) ~= "string" then return { kind = "type", path = path, want = "string", got = v } end
    if opts.pattern and not v:find(opts.pattern) then
      return { kind = "pattern", path = path, pattern = opts.pattern_text or opts.pattern, got = v }
    end
    if opts.max_len and #v > opts.max_len then
      return { kind = "pattern", path = path, pattern = opts.pattern_text or ("at most " .. opts.max_len .. " characters"), got = v }
    end
  end
end

function S.integer(opts)
  opts = opts or {}
  return function(v, path)
    if type(v) ~= "number" or v ~= math.floor(v) then return { kind = "type", path = path, want = "integer", got = v } end
    if opts.min and v < opts.min then return { kind = "min", path = path, min = opts.min, got = v } end
    if opts.max and v > opts.max then return { kind = "max", path = path, max = opts.max, got = v } end
  end
end

function S.number(opts)
  opts = opts or {}
  return function(v, path)
    if type(v) ~= "number" then return { kind = "type", path = path, want = "number", got = v } end
    if opts.min and v < opts.min then return { kind = "min", path = path, min = opts.min, got = v } end
    if opts.max and v > opts.max then return { kind = "max", path = path, max = opts.max, got = v } end
  end
end

function S.boolean()
  return function(v, path)
    if type(v) ~= "boolean" then return { kind = "type", path = path, want = "boolean", got = v } end
  end
end

function S.any() return function() end end

function S.enum(values)
  local set = {}
  for _, v in ipairs(values) do set[v] = true end
  return function(v, path)
    if not set[v] then return { kind = "enum", path = path, values = values, got = v } end
  end
end

function S.nullable(shape)
  return function(v, path, ctx)
    if v == NULL then return end
    return shape(v, path, ctx)
  end
end

-- first shape that fits; the problem reported is the last one's
function S.either(...)
  local shapes = { ... }
  return function(v, path, ctx)
    local problem
    for _, shape in ipairs(shapes) do
      problem = shape(v, path, ctx)
      if not problem then return end
    end
    return problem
  end
end

function S.list(item, opts)
  opts = opts or {}
  return function(v, path, ctx)
    if not is_list(v) then return { kind = "type", path = path, want = "array", got = v } end
    if opts.min and #v < opts.min then return { kind = "min_items", path = path, min = opts.min, got = v } end
    if opts.max and #v > opts.max then return { kind = "max_items", path = path, max = opts.max, got = v } end
    for i, x in ipairs(v) do
      local problem = item(x, at(path, i - 1), ctx)
      if problem then return problem end
    end
  end
end

-- an object: fields = {name = shape}, required = {names}, open = true lets
-- unknown keys through (closed objects refuse them)
function S.object(fields, opts)
  opts = opts or {}
  return function(v, path, ctx)
    if not is_object(v) then return { kind = "type", path = path, want = "object", got = v } end
    for _, name in ipairs(opts.required or {}) do
      if v[name] == nil then return { kind = "missing", path = at(path, name) } end
    end
    local names = {}
    for k in pairs(v) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do
      local shape = fields[k]
      if shape then
        local problem = shape(v[k], at(path, k), ctx)
        if problem then return problem end
      elseif not opts.open then
        return { kind = "extra", path = at(path, k) }
      end
    end
  end
end

-- one of several object shapes, told apart by the value of key (a "type"
-- or "role"); a missing key or an unknown value is a "tag" problem
function S.tagged(key, shapes, names)
  return function(v, path, ctx)
    if not is_object(v) then return { kind = "type", path = path, want = "object", got = v } end
    if v[key] == nil then return { kind = "missing", path = at(path, key) } end
    local shape = shapes[v[key]]
    if not shape then return { kind = "tag", path = path, key = key, got = v[key], values = names } end
    return shape(v, path, ctx)
  end
end

-- a check of its own: fn(v, path, ctx) -> nil | message [, path] | problem
function S.custom(fn)
  return function(v, path, ctx)
    local msg, where = fn(v, path, ctx)
    if type(msg) == "table" then return msg end
    if msg then return { kind = "custom", path = where or path, message = msg } end
  end
end

function S.all(...)
  local shapes = { ... }
  return function(v, path, ctx)
    for _, shape in ipairs(shapes) do
      local problem = shape(v, path, ctx)
      if problem then return problem end
    end
  end
end

-- a JSON schema as tools and structured outputs carry it: an object whose
-- "required" (anywhere inside) is a list and "properties" an object
local function schema_problem(s, path)
  if not is_object(s) then return { kind = "type", path = path, want = "object", got = s } end
  if s.required ~= nil and not is_list(s.required) then
    return { kind = "type", path = at(path, "required"), want = "array", got = s.required }
  end
  if s.properties ~= nil and not is_object(s.properties) then
    return { kind = "type", path = at(path, "properties"), want = "object", got = s.properties }
  end
  for k, sub in pairs(s) do
    if type(sub) == "table" and sub ~= NULL then
      if k == "properties" or k == "$defs" or k == "definitions" or k == "patternProperties" then
        for name, prop in pairs(sub) do
          if is_object(prop) then
            local problem = schema_problem(prop, at(at(path, k), name))
            if problem then return problem end
          end
        end
      elseif k == "items" or k == "additionalProperties" or k == "not" then
        if is_object(sub) then
          local problem = schema_problem(sub, at(path, k))
          if problem then return problem end
        end
      elseif k == "anyOf" or k == "oneOf" or k == "allOf" or k == "prefixItems" then
        if not is_list(sub) then return { kind = "type", path = at(path, k), want = "array", got = sub } end
        for i, alt in ipairs(sub) do
          if is_object(alt) then
            local problem = schema_problem(alt, at(at(path, k), i - 1))
            if problem then return problem end
          end
        end
      end
    end
  end
end
function S.json_schema() return schema_problem end

-- how OpenAI words a path: messages[0].content[1].type
local function oa_path(path)
  local out = ""
  for i, k in ipairs(path) do
    if type(k) == "number" then out = out .. "[" .. k .. "]"
    else out = out .. (i > 1 and "." or "") .. k end
  end
  return out
end

-- OpenAI's file.file_data: a data URL, not bare base64
local function data_url(v, path)
  if type(v) ~= "string" then return { kind = "type", path = path, want = "string", got = v } end
  if not v:find("^data:[%w.+-]+/[%w.+-]+[^,]*;base64,") then
    return string.format("Invalid file data: '%s'. Expected a base64-encoded data URL with an application/pdf MIME type "
      .. "(e.g. 'data:application/pdf;base64,SGVsbG8sIFdvcmxkIQ=='), but got a value without a MIME type.", oa_path(path))
  end
end

---------------------------------------------------------------------------
-- OpenAI chat completions
---------------------------------------------------------------------------
local OA = {}
local str, int, num, bool, any, enum, obj, list = S.string, S.integer, S.number, S.boolean, S.any, S.enum, S.object, S.list
-- OpenAI's objects take keys they do not know (and ignore them: a message
-- sent back with the SDK's "parsed" or "refusal" fields is fine on current
-- models), so they are open here; Anthropic's refuse them
local function oobj(fields, opts)
  opts = opts or {}
  opts.open = true
  return obj(fields, opts)
end

OA.name = str { pattern = "^[a-zA-Z0-9_-]+$", max_len = 64, pattern_text = "^[a-zA-Z0-9_-]{1,64}$" }

OA.part = {
  text = oobj({ type = any(), text = str() }, { required = { "text" } }),
  image_url = oobj({ type = any(), image_url = oobj({ url = str(), detail = enum { "auto", "low", "high" } },
    { required = { "url" } }) }, { required = { "image_url" } }),
  input_audio = oobj({ type = any(), input_audio = oobj({ data = str(), format = enum { "wav", "mp3" } },
    { required = { "data", "format" } }) }, { required = { "input_audio" } }),
  file = oobj({ type = any(), file = S.all(oobj({ file_data = S.custom(data_url), file_id = str(), filename = str() }),
    S.custom(function(f, path)
      if f.file_data == nil and f.file_id == nil then
        return "Missing required parameter: one of 'file_data' or 'file_id'", at(path, "file_data")
      end
    end)) }, { required = { "file" } }),
  refusal = oobj({ type = any(), refusal = str() }, { required = { "refusal" } }),
}
OA.part_types = { "text", "image_url", "input_audio", "refusal", "file" }

-- the part types each role may send
OA.parts_by_role = {
  system = { "text" }, developer = { "text" }, tool = { "text" },
  user = { "text", "image_url", "input_audio", "file" },
  assistant = { "text", "refusal" },
}

local function oa_content(role)
  local allowed = {}
  for _, t in ipairs(OA.parts_by_role[role]) do allowed[t] = OA.part[t] end
  local part = S.custom(function(p, path, ctx)
    if not is_object(p) then return nil end -- the tagged shape below reports it
    if OA.part[p.type] and not allowed[p.type] then
      return string.format("Invalid 'messages[%d]'. Content parts of type '%s' are not allowed for messages with role '%s'.",
        path[2], p.type, role), at(path, "type")
    end
  end)
  return S.either(str(), list(S.all(part, S.tagged("type", OA.part, OA.part_types)), { min = 1 }))
end

OA.tool_call = S.tagged("type", {
  ["function"] = oobj({ id = str(), type = any(), ["function"] = oobj({ name = str(), arguments = str() },
    { required = { "name", "arguments" } }) }, { required = { "id", "function" } }),
  custom = oobj({ id = str(), type = any(), custom = oobj({ name = str(), input = str() },
    { required = { "name", "input" } }) }, { required = { "id", "custom" } }),
}, { "function", "custom" })

local function oa_message(fields, required)
  fields.role = any()
  return oobj(fields, { required = required })
end

OA.message = S.tagged("role", {
  system = oa_message({ content = oa_content "system", name = str() }, { "content" }),
  developer = oa_message({ content = oa_content "developer", name = str() }, { "content" }),
  user = oa_message({ content = oa_content "user", name = str() }, { "content" }),
  assistant = S.all(oa_message({ content = S.nullable(oa_content "assistant"), name = str(),
    tool_calls = list(OA.tool_call), function_call = S.nullable(oobj({ name = str(), arguments = str() })),
    refusal = S.nullable(str()), audio = S.nullable(oobj({ id = str() })) }, {}),
    S.custom(function(m, path)
      if (m.content == nil or m.content == NULL) and m.tool_calls == nil and (m.function_call == nil or m.function_call == NULL) then
        return string.format("Missing required parameter: 'messages[%d].content'.", path[2]), at(path, "content")
      end
    end)),
  tool = oa_message({ content = oa_content "tool", tool_call_id = str() }, { "content", "tool_call_id" }),
  ["function"] = oa_message({ content = S.nullable(str()), name = str() }, { "content", "name" }),
}, { "system", "assistant", "user", "function", "tool", "developer" })

OA.tool = S.tagged("type", {
  ["function"] = oobj({ type = any(), ["function"] = oobj({ name = OA.name, description = str(),
    parameters = S.json_schema(), strict = S.nullable(bool()) }, { required = { "name" } }) }, { required = { "function" } }),
  custom = oobj({ type = any(), custom = oobj({ name = OA.name, description = str(), format = any() }, { required = { "name" } }) },
    { required = { "custom" } }),
}, { "function", "custom" })

OA.response_format = S.tagged("type", {
  text = oobj({ type = any() }),
  json_object = oobj({ type = any() }),
  json_schema = oobj({ type = any(), json_schema = oobj({ name = OA.name, description = str(), schema = S.json_schema(),
    strict = S.nullable(bool()) }, { required = { "name" } }) }, { required = { "json_schema" } }),
}, { "text", "json_object", "json_schema" })

-- every top-level field the API knows. api.openai.com refuses any other
-- ("Unrecognized request argument supplied"); OpenAI-compatible servers
-- (vLLM, llama.cpp, OpenRouter) take vendor fields, and passthrough specs
-- send some: so only the fields of the Anthropic API are refused here, the
-- sign of a translation that leaked one format into the other
OA.anthropic_only = { "system", "stop_sequences", "thinking", "output_config", "output_format", "context_management",
  "container", "mcp_servers", "anthropic_version", "anthropic_beta", "betas", "inference_geo" }
OA.request_fields = oobj({
  model = str(),
  messages = list(OA.message, { min = 1 }),
  max_tokens = S.nullable(int { min = 1 }),
  max_completion_tokens = S.nullable(int { min = 1 }),
  n = S.nullable(int { min = 1, max = 128 }),
  logprobs = S.nullable(bool()),
  top_logprobs = S.nullable(int { min = 0, max = 20 }),
  temperature = S.nullable(num { min = 0, max = 2 }),
  top_p = S.nullable(num { min = 0, max = 1 }),
  frequency_penalty = S.nullable(num { min = -2, max = 2 }),
  presence_penalty = S.nullable(num { min = -2, max = 2 }),
  logit_bias = S.nullable(oobj({}, { open = true })),
  seed = S.nullable(int()),
  stop = S.nullable(S.either(str(), list(str(), { max = 4 }))),
  stream = S.nullable(bool()),
  stream_options = S.nullable(oobj({ include_usage = bool(), include_obfuscation = bool() })),
  tools = list(OA.tool),
  tool_choice = S.either(enum { "none", "auto", "required" }, S.tagged("type", {
    ["function"] = oobj({ type = any(), ["function"] = oobj({ name = str() }, { required = { "name" } }) }, { required = { "function" } }),
    allowed_tools = oobj({ type = any(), allowed_tools = oobj({}, { open = true }) }),
    custom = oobj({ type = any(), custom = oobj({ name = str() }, { required = { "name" } }) }),
  }, { "function", "allowed_tools", "custom" })),
  parallel_tool_calls = bool(),
  functions = list(oobj({ name = OA.name, description = str(), parameters = S.json_schema() }, { required = { "name" } })),
  function_call = any(),
  response_format = OA.response_format,
  reasoning_effort = S.nullable(enum { "none", "minimal", "low", "medium", "high", "xhigh" }),
  verbosity = S.nullable(enum { "low", "medium", "high" }),
  modalities = S.nullable(list(enum { "text", "audio" })),
  audio = S.nullable(oobj({ voice = any(), format = str() })),
  prediction = S.nullable(oobj({ type = any(), content = any() })),
  service_tier = S.nullable(enum { "auto", "default", "flex", "scale", "priority" }),
  store = S.nullable(bool()),
  metadata = S.nullable(oobj({}, { open = true })),
  user = str(),
  safety_identifier = str(),
  prompt_cache_key = str(),
  prompt_cache_retention = S.nullable(enum { "in-memory", "24h" }),
  web_search_options = oobj({}, { open = true }),
}, { required = { "model", "messages" } })
OA.request = S.all(S.custom(function(req, path)
  if not is_object(req) then return end
  for _, name in ipairs(OA.anthropic_only) do
    if req[name] ~= nil then return { kind = "extra", path = at(path, name) } end
  end
end), OA.request_fields)

local function quoted_list(values)
  local q = {}
  for i, v in ipairs(values) do q[i] = "'" .. tostring(v) .. "'" end
  if #q < 2 then return q[1] or "" end
  return table.concat(q, ", ", 1, #q - 1) .. ", and " .. q[#q]
end

local oa_type_words = { string = "a string", integer = "an integer", number = "a decimal", boolean = "a boolean",
  array = "an array", object = "an object", null = "null" }

-- a problem in OpenAI's words -> message, param, code
local function oa_words(p)
  local param = oa_path(p.path)
  if p.kind == "missing" then return string.format("Missing required parameter: '%s'.", param), param, "missing_required_parameter" end
  if p.kind == "type" then
    return string.format("Invalid type for '%s': expected %s, but got %s instead.", param, oa_type_words[p.want],
      oa_type_words[jtype(p.got)]), param, "invalid_type"
  end
  if p.kind == "enum" or p.kind == "tag" then
    local got = p.got
    param = p.kind == "tag" and oa_path(at(p.path, p.key)) or param
    return string.format("Invalid value: '%s'. Supported values are: %s.", tostring(got), quoted_list(p.values)), param, "invalid_value"
  end
  if p.kind == "extra" then
    if #p.path == 1 then return "Unrecognized request argument supplied: " .. p.path[1], nil, nil end
    return string.format("Unknown parameter: '%s'.", param), param, "unknown_parameter"
  end
  if p.kind == "min" then
    return string.format("Invalid '%s': %s below minimum value. Expected a value >= %s, but got %s instead.", param,
      jtype(p.got) == "integer" and "integer" or "decimal", tostring(p.min), tostring(p.got)), param,
      jtype(p.got) == "integer" and "integer_below_min_value" or "decimal_below_min_value"
  end
  if p.kind == "max" then
    return string.format("Invalid '%s': %s above maximum value. Expected a value <= %s, but got %s instead.", param,
      jtype(p.got) == "integer" and "integer" or "decimal", tostring(p.max), tostring(p.got)), param,
      jtype(p.got) == "integer" and "integer_above_max_value" or "decimal_above_max_value"
  end
  if p.kind == "min_items" then
    if #p.got == 0 then
      return string.format("Invalid '%s': empty array. Expected an array with minimum length %d, but got an empty array instead.",
        param, p.min), param, "empty_array"
    end
    return string.format("Invalid '%s': array too short. Expected an array with minimum length %d, but got an array with length %d instead.",
      param, p.min, #p.got), param, "array_below_min_length"
  end
  if p.kind == "max_items" then
    return string.format("Invalid '%s': array too long. Expected an array with maximum length %d, but got an array with length %d instead.",
      param, p.max, #p.got), param, "array_above_max_length"
  end
  if p.kind == "pattern" then
    return string.format("Invalid '%s': string does not match pattern. Expected a string that matches the pattern '%s'.",
      param, p.pattern), param, "invalid_value"
  end
  return p.message, param, p.code
end

-- the rules across fields and messages: {what it checks, fn(req) -> nil | message, param}
local RULES = {}
RULES.openai = {
  { "stream_options only when stream is on", function(req)
    if req.stream_options ~= nil and req.stream_options ~= NULL and req.stream ~= true then
      return "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
    end
  end },
  { "tool_choice only with tools", function(req)
    if req.tool_choice ~= nil and req.tools == nil then
      return "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", "tool_choice"
    end
  end },
  { "parallel_tool_calls only with tools", function(req)
    if req.parallel_tool_calls ~= nil and req.tools == nil then
      return "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when 'tools' are specified.",
        "parallel_tool_calls"
    end
  end },
  { "top_logprobs only with logprobs", function(req)
    if req.top_logprobs ~= nil and req.top_logprobs ~= NULL and req.logprobs ~= true then
      return "Invalid value for 'logprobs': must be true when 'top_logprobs' is specified.", "logprobs"
    end
  end },
  { "tool names unique", function(req)
    local seen = {}
    for i, t in ipairs(req.tools or {}) do
      local name = (t["function"] or t.custom or {}).name
      if seen[name] then
        return string.format("Invalid 'tools': tool names must be unique, '%s' appears more than once.", name),
          string.format("tools[%d]", i - 1)
      end
      seen[name] = true
    end
  end },
  { "a tool message answers a tool_call of the assistant message before it (tool messages between allowed); "
    .. "every call is answered before the next other message", function(req)
    local open, open_at = nil, nil -- the ids still unanswered, and where they were asked
    local function unanswered()
      local ids = {}
      for id in pairs(open) do ids[#ids + 1] = id end
      table.sort(ids)
      return ids
    end
    for i, m in ipairs(req.messages) do
      if m.role == "tool" then
        if not open then
          return "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
            string.format("messages.[%d].role", i - 1)
        end
        if not open[m.tool_call_id] then
          return string.format("Invalid parameter: 'tool_call_id' of '%s' not found in 'tool_calls' of previous message.",
            tostring(m.tool_call_id)), string.format("messages.[%d].tool_call_id", i - 1)
        end
        open[m.tool_call_id] = nil
      else
        if open and next(open) then
          return "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. "
            .. "The following tool_call_ids did not have response messages: " .. table.concat(unanswered(), ", "),
            string.format("messages.[%d].role", open_at - 1)
        end
        open = nil
        if m.role == "assistant" and is_list(m.tool_calls) and #m.tool_calls > 0 then
          open, open_at = {}, i
          for _, c in ipairs(m.tool_calls) do open[c.id] = true end
        end
      end
    end
    if open and next(open) then
      return "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. "
        .. "The following tool_call_ids did not have response messages: " .. table.concat(unanswered(), ", "),
        string.format("messages.[%d].role", open_at - 1)
    end
  end },
}

---------------------------------------------------------------------------
-- Anthropic messages
---------------------------------------------------------------------------
local AN = {}
AN.tool_id = str { pattern = "^[a-zA-Z0-9_-]+$" }
AN.cache_control = S.nullable(obj({ type = enum { "ephemeral" }, ttl = enum { "5m", "1h" } }, { required = { "type" } }))
AN.citations = any()

-- the fields every block may carry besides its own
local function block(fields, required)
  fields.type = any()
  fields.cache_control = fields.cache_control or AN.cache_control
  return obj(fields, { required = required })
end

AN.text = block({ text = str(), citations = S.nullable(AN.citations) }, { "text" })
AN.image = block({ source = S.tagged("type", {
  base64 = obj({ type = any(), media_type = enum { "image/jpeg", "image/png", "image/gif", "image/webp" }, data = str() },
    { required = { "media_type", "data" } }),
  url = obj({ type = any(), url = str() }, { required = { "url" } }),
  file = obj({ type = any(), file_id = str() }, { required = { "file_id" } }),
}, { "base64", "url", "file" }) }, { "source" })
AN.document = block({ source = S.tagged("type", {
  base64 = obj({ type = any(), media_type = enum { "application/pdf" }, data = str() }, { required = { "media_type", "data" } }),
  text = obj({ type = any(), media_type = enum { "text/plain" }, data = str() }, { required = { "media_type", "data" } }),
  url = obj({ type = any(), url = str() }, { required = { "url" } }),
  content = obj({ type = any(), content = S.either(str(), list(any())) }, { required = { "content" } }),
  file = obj({ type = any(), file_id = str() }, { required = { "file_id" } }),
}, { "base64", "text", "content", "url", "file" }), title = S.nullable(str()), context = S.nullable(str()),
  citations = S.nullable(obj({ enabled = bool() })) }, { "source" })
AN.search_result = block({ source = str(), title = str(), content = list(AN.text),
  citations = S.nullable(obj({ enabled = bool() })) }, { "source", "title", "content" })

AN.blocks = {
  text = AN.text,
  image = AN.image,
  document = AN.document,
  search_result = AN.search_result,
  tool_use = block({ id = AN.tool_id, name = str(), input = obj({}, { open = true }), caller = any() }, { "id", "name", "input" }),
  tool_result = block({ tool_use_id = AN.tool_id, is_error = bool(),
    content = S.either(str(), list(S.tagged("type", { text = AN.text, image = AN.image, document = AN.document,
      search_result = AN.search_result, tool_reference = any() }, { "text", "image", "document", "search_result", "tool_reference" }))) },
    { "tool_use_id" }),
  thinking = block({ thinking = str(), signature = str() }, { "thinking", "signature" }),
  redacted_thinking = block({ data = str() }, { "data" }),
  server_tool_use = block({ id = str(), name = str(), input = obj({}, { open = true }), caller = any() }, { "id", "name", "input" }),
  web_search_tool_result = block({ tool_use_id = str(), content = any() }, { "tool_use_id", "content" }),
  web_fetch_tool_result = block({ tool_use_id = str(), content = any() }, { "tool_use_id", "content" }),
  code_execution_tool_result = block({ tool_use_id = str(), content = any() }, { "tool_use_id", "content" }),
  bash_code_execution_tool_result = block({ tool_use_id = str(), content = any() }, { "tool_use_id", "content" }),
  text_editor_code_execution_tool_result = block({ tool_use_id = str(), content = any() }, { "tool_use_id", "content" }),
  tool_search_tool_result = block({ tool_use_id = str(), content = any() }, { "tool_use_id", "content" }),
  container_upload = block({ file_id = str() }, { "file_id" }),
  mcp_tool_use = block({ id = str(), name = str(), server_name = str(), input = obj({}, { open = true }) },
    { "id", "name", "server_name", "input" }),
  mcp_tool_result = block({ tool_use_id = str(), is_error = bool(), content = S.either(str(), list(AN.text)) },
    { "tool_use_id" }),
}
AN.block_types = { "text", "image", "document", "search_result", "tool_use", "tool_result", "thinking",
  "redacted_thinking", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
  "code_execution_tool_result", "bash_code_execution_tool_result", "text_editor_code_execution_tool_result",
  "tool_search_tool_result", "container_upload", "mcp_tool_use", "mcp_tool_result" }

-- the blocks only one side may send
AN.assistant_only = { tool_use = true, thinking = true, redacted_thinking = true, server_tool_use = true, mcp_tool_use = true }
AN.user_only = { tool_result = true }

local function an_content(role)
  local one = S.all(S.custom(function(b, path)
    if not is_object(b) then return end
    if role == "user" and AN.assistant_only[b.type] or role == "assistant" and AN.user_only[b.type] then
      return string.format("messages.%d.content.%d.type: `%s` blocks can only be in `%s` messages", path[2], path[4], b.type,
        role == "user" and "assistant" or "user")
    end
  end), S.tagged("type", AN.blocks, AN.block_types))
  return S.either(str(), list(one))
end

-- What an anthropic-beta lets a request carry beyond the plain API: each
-- entry {allows, betas}, where allows names what the shapes below ask for
-- (ctx.allows[name]). These are what Claude Code 2.1.332 sends on its first
-- try; refused with a 400, it tries again without (one beta fewer each time).
local BETA_ALLOWS = {
  -- {"role": "system"} messages inside messages (Claude Code 2.1.332 sends
  -- them under per-turn-control / mid-conversation-tool-changes; earlier
  -- versions and other clients under mid-conversation-system)
  { allows = "system_role", betas = { "mid-conversation-system-2026-04-07", "per-turn-control-2026-07-01",
    "mid-conversation-tool-changes-2026-07-01" } },
  -- output_config {effort} on such a system message
  { allows = "system_output_config", betas = { "per-turn-control-2026-07-01" } },
  -- thinking.display "updates" (claude interactive)
  { allows = "thinking_display_updates", betas = { "thinking-display-updates-2026-08-18" } },
  -- the top-level safeguards list (claude interactive, auto mode)
  { allows = "safeguards", betas = { "dangerous-tool-use-2026-09-03" } },
}

-- a field or value only a beta allows: refused as the API refuses it without
local function only_with(allows, shape)
  return function(v, path, ctx)
    if not ctx.allows[allows] then return { kind = "extra", path = path } end
    return shape(v, path, ctx)
  end
end

AN.thinking_display = S.custom(function(v, path, ctx)
  local values = { "summarized", "omitted" }
  if ctx.allows.thinking_display_updates then values[#values + 1] = "updates" end
  return enum(values)(v, path, ctx)
end)

AN.message = S.tagged("role", {
  user = obj({ role = any(), content = an_content "user" }, { required = { "content" } }),
  assistant = obj({ role = any(), content = an_content "assistant" }, { required = { "content" } }),
  system = S.all(S.custom(function(_, path, ctx)
    if not ctx.allows.system_role then
      return string.format("messages.%d.role: Input should be 'user' or 'assistant'", path[2])
    end
  end), obj({ role = any(),
    output_config = only_with("system_output_config", obj({ effort = enum { "low", "medium", "high", "xhigh", "max" } })),
    content = S.either(str(), list(S.tagged("type", { text = AN.text, tool_addition = any(), tool_removal = any() },
      { "text", "tool_addition", "tool_removal" }))) }, { required = { "content" } })),
}, { "user", "assistant" })

AN.tool = S.custom(function(t, path, ctx)
  if not is_object(t) then return end
  if t.type == nil or t.type == "custom" then
    local problem = obj({ type = any(), name = str { pattern = "^[a-zA-Z0-9_-]+$", max_len = 128, pattern_text = "^[a-zA-Z0-9_-]{1,128}$" },
      description = str(), input_schema = S.all(S.json_schema(), S.custom(function(s)
        if s.type ~= "object" then return "input_schema: Input should be a JSON schema of type 'object'" end
      end)), cache_control = AN.cache_control, strict = bool(), defer_loading = bool(), input_examples = any(),
      eager_input_streaming = any(), allowed_callers = any() },
      { required = { "name", "input_schema" } })(t, path, ctx)
    return problem
  elseif type(t.type) ~= "string" or not t.type:find("_%d%d%d%d%d%d%d%d$") then
    return string.format("tools.%d.type: Input tag '%s' found using 'type' does not match any of the expected tags",
      path[2], tostring(t.type))
  end
end)

AN.request = obj({
  model = str(),
  messages = list(AN.message),
  max_tokens = int { min = 1 },
  system = S.either(str(), list(AN.text)),
  metadata = obj({ user_id = S.nullable(str()) }),
  stop_sequences = list(str()),
  stream = bool(),
  temperature = num { min = 0, max = 1 },
  top_p = num { min = 0, max = 1 },
  top_k = int { min = 0 },
  tools = list(AN.tool),
  tool_choice = S.tagged("type", {
    auto = obj({ type = any(), disable_parallel_tool_use = bool() }),
    any = obj({ type = any(), disable_parallel_tool_use = bool() }),
    tool = obj({ type = any(), name = str(), disable_parallel_tool_use = bool() }, { required = { "name" } }),
    none = obj({ type = any() }),
  }, { "auto", "any", "tool", "none" }),
  thinking = S.tagged("type", {
    enabled = obj({ type = any(), budget_tokens = int { min = 1024 }, display = AN.thinking_display },
      { required = { "budget_tokens" } }),
    disabled = obj({ type = any() }),
    adaptive = obj({ type = any(), display = AN.thinking_display }),
  }, { "enabled", "disabled", "adaptive" }),
  output_config = obj({ effort = enum { "low", "medium", "high", "xhigh", "max" },
    format = S.nullable(S.tagged("type", { json_schema = obj({ type = any(), schema = S.json_schema() }, { required = { "schema" } }) },
      { "json_schema" })) }),
  output_format = S.nullable(S.tagged("type", { json_schema = obj({ type = any(), schema = S.json_schema() }, { required = { "schema" } }) },
    { "json_schema" })),
  service_tier = enum { "auto", "standard_only" },
  container = any(),
  mcp_servers = list(obj({}, { open = true })),
  context_management = obj({}, { open = true }),
  inference_geo = str(),
  speed = str(),
  cache_control = AN.cache_control,
  safeguards = only_with("safeguards", list(obj({}, { open = true }))),
}, { required = { "model", "messages", "max_tokens" } })

-- count_tokens: the same, without max_tokens and stream
AN.count_request = S.custom(function(req, path, ctx)
  if not is_object(req) then return "Input should be a valid dictionary" end
  if req.stream ~= nil then return "stream: Extra inputs are not permitted" end
  if req.max_tokens ~= nil then return "max_tokens: Extra inputs are not permitted" end
  local copy = {}
  for k, v in pairs(req) do copy[k] = v end
  copy.max_tokens = 1
  return AN.request(copy, path, ctx)
end)

local function an_path(path)
  local out = {}
  for i, k in ipairs(path) do out[i] = tostring(k) end
  return table.concat(out, ".")
end

local an_type_words = { string = "a valid string", integer = "a valid integer", number = "a valid number",
  boolean = "a valid boolean", array = "a valid list", object = "a valid dictionary" }

local function an_quoted(values)
  local q = {}
  for i, v in ipairs(values) do q[i] = "'" .. tostring(v) .. "'" end
  if #q < 2 then return q[1] or "" end
  return table.concat(q, ", ", 1, #q - 1) .. " or " .. q[#q]
end

-- a problem in Anthropic's words -> message
local function an_words(p)
  local where = an_path(p.path)
  if p.kind == "missing" then return where .. ": Field required" end
  if p.kind == "type" then return where .. ": Input should be " .. an_type_words[p.want] end
  if p.kind == "enum" then return where .. ": Input should be " .. an_quoted(p.values) end
  if p.kind == "tag" then
    if p.key == "role" then return where .. ".role: Input should be " .. an_quoted(p.values) end
    return string.format("%s: Input tag '%s' found using '%s' does not match any of the expected tags: %s", where,
      tostring(p.got), p.key, table.concat((function()
        local q = {}
        for i, v in ipairs(p.values) do q[i] = "'" .. v .. "'" end
        return q
      end)(), ", "))
  end
  if p.kind == "extra" then return where .. ": Extra inputs are not permitted" end
  if p.kind == "min" then return string.format("%s: Input should be greater than or equal to %s", where, tostring(p.min)) end
  if p.kind == "max" then return string.format("%s: Input should be less than or equal to %s", where, tostring(p.max)) end
  if p.kind == "min_items" then return string.format("%s: List should have at least %d item", where, p.min) end
  if p.kind == "pattern" then return string.format("%s: String should match pattern '%s'", where, p.pattern) end
  return p.message
end

-- Anthropic's turns: consecutive same-role messages merged (the API does so),
-- system messages kept apart; each turn {role, blocks, first, last} (indexes)
local function an_turns(messages)
  local turns = {}
  for i, m in ipairs(messages) do
    local blocks = type(m.content) == "string" and { { type = "text", text = m.content } } or m.content
    local last = turns[#turns]
    if last and last.role == m.role and m.role ~= "system" then
      for _, b in ipairs(blocks) do last.blocks[#last.blocks + 1] = b end
      last.last = i
    else
      local copy = {}
      for j, b in ipairs(blocks) do copy[j] = b end
      turns[#turns + 1] = { role = m.role, blocks = copy, first = i, last = i }
    end
  end
  return turns
end

RULES.anthropic = {
  { "at least one message", function(req)
    if #req.messages == 0 then return "messages: at least one message is required" end
  end },
  { "the first message is the user's", function(req)
    if req.messages[1].role ~= "user" then return 'messages: first message must use the "user" role' end
  end },
  { "every message has content (but the final assistant one); text blocks are not empty", function(req)
    for i, m in ipairs(req.messages) do
      local final_assistant = i == #req.messages and m.role == "assistant"
      if (m.content == "" or (is_list(m.content) and #m.content == 0)) and not final_assistant then
        return string.format("messages.%d: all messages must have non-empty content except for the optional final assistant message", i - 1)
      end
      if is_list(m.content) then
        for j, b in ipairs(m.content) do
          if b.type == "text" and b.text == "" then
            return string.format("messages.%d.content.%d.text: text content blocks must be non-empty", i - 1, j - 1)
          end
        end
      end
    end
  end },
  { "the final assistant message does not end with whitespace", function(req)
    local m = req.messages[#req.messages]
    if m.role ~= "assistant" then return end
    local last = type(m.content) == "string" and m.content or (m.content[#m.content] or {}).text
    if type(last) == "string" and last:find("%s$") then
      return "messages: final assistant content cannot end with trailing whitespace"
    end
  end },
  { "a tool_result answers a tool_use of the assistant turn just before it (system messages between ignored); "
    .. "tool_results come first in their turn; every tool_use of a turn followed by a user turn is answered there", function(req)
    local turns = an_turns(req.messages)
    local prev -- the last user or assistant turn
    for _, t in ipairs(turns) do
      if t.role ~= "system" then
        local uses = {}
        if prev and prev.role == "assistant" then
          for _, b in ipairs(prev.blocks) do if b.type == "tool_use" then uses[b.id] = true end end
        end
        if t.role == "user" then
          local results, seen_other = {}, false
          for j, b in ipairs(t.blocks) do
            if b.type == "tool_result" then
              if not uses[b.tool_use_id] then
                return string.format("messages.%d.content.%d: unexpected `tool_use_id` found in `tool_result` blocks: %s. "
                  .. "Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
                  t.first - 1, j - 1, tostring(b.tool_use_id))
              end
              if seen_other then
                return string.format("messages.%d: `tool_result` blocks must come first in the user message's content, "
                  .. "before any other blocks", t.first - 1)
              end
              results[b.tool_use_id] = true
            else
              seen_other = true
            end
          end
          local missing = {}
          for id in pairs(uses) do if not results[id] then missing[#missing + 1] = id end end
          if #missing > 0 then
            table.sort(missing)
            return string.format("messages.%d: `tool_use` ids were found without `tool_result` blocks immediately after: %s. "
              .. "Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
              prev.last - 1, table.concat(missing, ", "))
          end
        end
        prev = t
      end
    end
  end },
  { "thinking.budget_tokens below max_tokens", function(req)
    local t = req.thinking
    if is_object(t) and t.type == "enabled" and req.max_tokens and t.budget_tokens >= req.max_tokens then
      return "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
        .. "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size"
    end
  end },
  { "temperature only 1 with thinking on", function(req)
    local t = req.thinking
    if is_object(t) and t.type == "enabled" and req.temperature ~= nil and req.temperature ~= 1 then
      return "`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at "
        .. "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#feature-compatibility"
    end
  end },
  { "tool names unique", function(req)
    local seen = {}
    for _, t in ipairs(req.tools or {}) do
      if t.name and seen[t.name] then return "tools: Tool names must be unique." end
      if t.name then seen[t.name] = true end
    end
  end },
}

---------------------------------------------------------------------------
-- OpenAI Responses (POST .../responses), legacy completions and embeddings
---------------------------------------------------------------------------
local RS = {}

-- the content parts of an input message, by role: what a user, system or
-- developer sends, and what an assistant said before
RS.input_part = {
  input_text = oobj({ type = any(), text = str() }, { required = { "text" } }),
  input_image = S.all(oobj({ type = any(), image_url = str(), file_id = str(),
    detail = enum { "low", "high", "auto", "original" } }), S.custom(function(p, path)
    if p.image_url == nil and p.file_id == nil then
      return string.format("Invalid '%s': one of 'image_url' or 'file_id' must be provided.", oa_path(path)), path
    end
  end)),
  input_file = S.all(oobj({ type = any(), file_data = str(), file_id = str(), file_url = str(), filename = str() }),
    S.custom(function(p, path)
      if p.file_data == nil and p.file_id == nil and p.file_url == nil then
        return string.format("Invalid '%s': one of 'file_data', 'file_id' or 'file_url' must be provided.", oa_path(path)), path
      end
    end)),
  input_audio = oobj({ type = any(), input_audio = oobj({ data = str(), format = enum { "wav", "mp3" } },
    { required = { "data", "format" } }) }, { required = { "input_audio" } }),
}
RS.input_part_types = { "input_text", "input_image", "input_file", "input_audio" }
RS.output_part = {
  output_text = oobj({ type = any(), text = str(), annotations = list(any()), logprobs = any() }, { required = { "text" } }),
  refusal = oobj({ type = any(), refusal = str() }, { required = { "refusal" } }),
}
RS.output_part_types = { "output_text", "refusal" }

local function rs_content(parts, names)
  return S.either(str(), list(S.tagged("type", parts, names)))
end

RS.message = S.tagged("role", {
  user = oobj({ type = any(), role = any(), id = str(), status = any(),
    content = rs_content(RS.input_part, RS.input_part_types) }, { required = { "content" } }),
  system = oobj({ type = any(), role = any(), id = str(), status = any(),
    content = rs_content(RS.input_part, RS.input_part_types) }, { required = { "content" } }),
  developer = oobj({ type = any(), role = any(), id = str(), status = any(),
    content = rs_content(RS.input_part, RS.input_part_types) }, { required = { "content" } }),
  assistant = oobj({ type = any(), role = any(), id = str(), status = any(), phase = any(),
    content = rs_content(RS.output_part, RS.output_part_types) }, { required = { "content" } }),
}, { "user", "assistant", "system", "developer" })

RS.summary_text = oobj({ type = enum { "summary_text" }, text = str() }, { required = { "type", "text" } })

-- input items by type; the ones the gateway only passes on (hosted tools'
-- calls, custom tools, shells) are taken as they are
RS.item = {
  message = RS.message,
  function_call = oobj({ type = any(), id = str(), call_id = str(), name = str(), arguments = str(), status = any() },
    { required = { "call_id", "name", "arguments" } }),
  function_call_output = oobj({ type = any(), id = str(), call_id = str(), output = S.either(str(), list(any())),
    status = any() }, { required = { "call_id", "output" } }),
  reasoning = oobj({ type = any(), id = str(), summary = list(RS.summary_text), encrypted_content = S.nullable(str()),
    content = any(), status = any() }, { required = { "id", "summary" } }),
  item_reference = oobj({ type = any(), id = str() }, { required = { "id" } }),
}
RS.item_types = { "message", "function_call", "function_call_output", "reasoning", "item_reference" }
for _, t in ipairs { "custom_tool_call", "custom_tool_call_output", "web_search_call", "file_search_call",
  "computer_call", "computer_call_output", "local_shell_call", "local_shell_call_output", "shell_call",
  "shell_call_output", "apply_patch_call", "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
  "mcp_approval_response", "mcp_call", "image_generation_call", "code_interpreter_call", "tool_search_call",
  "tool_search_output", "compaction",
  "additional_tools" } do -- (tools given as an input item: what Codex sends its own models)
  RS.item[t] = oobj({})
  RS.item_types[#RS.item_types + 1] = t
end

-- an item without a type is a message when it has a role (the API's
-- "easy" input message)
RS.input_item = S.custom(function(v, path, ctx)
  if is_object(v) and v.type == nil and v.role ~= nil then return RS.message(v, path, ctx) end
  return S.tagged("type", RS.item, RS.item_types)(v, path, ctx)
end)

-- tools: function tools checked; the hosted and custom types the upstream
-- runs itself are taken as they are
RS.tool = S.custom(function(t, path, ctx)
  if not is_object(t) then return { kind = "type", path = path, want = "object", got = t } end
  if t.type == nil then return { kind = "missing", path = at(path, "type") } end
  if t.type == "function" then
    return oobj({ type = any(), name = OA.name, description = S.nullable(str()), parameters = S.nullable(S.json_schema()),
      strict = S.nullable(bool()), defer_loading = bool() }, { required = { "name" } })(t, path, ctx)
  end
  if type(t.type) ~= "string" then return { kind = "type", path = at(path, "type"), want = "string", got = t.type } end
end)

RS.include_values = { "file_search_call.results", "web_search_call.results", "web_search_call.action.sources",
  "message.input_image.image_url", "computer_call_output.output.image_url", "code_interpreter_call.outputs",
  "reasoning.encrypted_content", "message.output_text.logprobs" }

-- every top-level field the API knows; it refuses any other ("Unknown
-- parameter: 'x'.")
RS.request = obj({
  model = str(),
  input = S.either(str(), list(RS.input_item)),
  instructions = S.nullable(str()),
  tools = list(RS.tool),
  tool_choice = S.either(enum { "none", "auto", "required" }, S.custom(function(tc, path)
    if not is_object(tc) then return { kind = "type", path = path, want = "object", got = tc } end
    if tc.type == "function" and type(tc.name) ~= "string" then return { kind = "missing", path = at(path, "name") } end
    if type(tc.type) ~= "string" then return { kind = "missing", path = at(path, "type") } end
  end)),
  parallel_tool_calls = S.nullable(bool()),
  max_output_tokens = S.nullable(int { min = 16 }),
  max_tool_calls = S.nullable(int { min = 1 }),
  temperature = S.nullable(num { min = 0, max = 2 }),
  top_p = S.nullable(num { min = 0, max = 1 }),
  top_logprobs = S.nullable(int { min = 0, max = 20 }),
  reasoning = S.nullable(oobj({ effort = S.nullable(enum { "none", "minimal", "low", "medium", "high", "xhigh" }),
    summary = S.nullable(enum { "auto", "concise", "detailed" }),
    generate_summary = S.nullable(enum { "auto", "concise", "detailed" }) })),
  store = S.nullable(bool()),
  include = S.nullable(list(enum(RS.include_values))),
  text = oobj({ format = S.tagged("type", {
    text = oobj({ type = any() }),
    json_object = oobj({ type = any() }),
    json_schema = oobj({ type = any(), name = OA.name, schema = S.json_schema(), description = str(),
      strict = S.nullable(bool()) }, { required = { "name", "schema" } }),
  }, { "text", "json_schema", "json_object" }), verbosity = S.nullable(enum { "low", "medium", "high" }) }),
  stream = S.nullable(bool()),
  stream_options = S.nullable(oobj({ include_obfuscation = bool() })),
  metadata = S.nullable(oobj({})),
  user = str(),
  safety_identifier = str(),
  prompt_cache_key = str(),
  prompt_cache_retention = S.nullable(enum { "in-memory", "24h" }),
  service_tier = S.nullable(enum { "auto", "default", "flex", "scale", "priority" }),
  truncation = S.nullable(enum { "auto", "disabled" }),
  background = S.nullable(bool()),
  previous_response_id = S.nullable(str()),
  conversation = any(),
  prompt = any(),
  context_management = any(),
  client_metadata = any(), -- Codex CLI sends it, and the API takes it
}, { required = { "model" } })

-- the reasoning a mock reply hands out for item id: what its next request
-- must bring back, byte for byte
local base64 = require "support.base64"
local function mock_encrypted(id) return "gAAAAB" .. base64("mock reasoning of " .. id) end
-- the encrypted_content handed out for each reasoning item id (until a
-- reset), and how many reasoning items were made (their ids: rs_mock_N)
local issued, nreasoning = {}, 0

RULES.responses = {
  { "a function_call_output answers a function_call earlier in input", function(req)
    local calls = {}
    for _, item in ipairs(is_list(req.input) and req.input or {}) do
      if item.type == "function_call" then calls[item.call_id] = true
      elseif item.type == "function_call_output" and not calls[item.call_id] then
        return string.format("No tool call found for function call output with call_id %s.", tostring(item.call_id)), "input"
      end
    end
  end },
  { "a reasoning item is followed by the item it led to (not the end of input, a user turn or a tool output)", function(req)
    local input = is_list(req.input) and req.input or {}
    for i, item in ipairs(input) do
      local nxt = input[i + 1]
      if item.type == "reasoning" and (not nxt or nxt.type == "function_call_output"
          or ((nxt.type == "message" or nxt.type == nil) and nxt.role ~= "assistant")) then
        return string.format("Item '%s' of type 'reasoning' was provided without its required following item.",
          tostring(item.id)), "input"
      end
    end
  end },
  { "a reasoning item brings back the encrypted_content this mock gave its id (nothing is stored upstream)", function(req)
    for _, item in ipairs(is_list(req.input) and req.input or {}) do
      if item.type == "reasoning" then
        if item.encrypted_content == nil or item.encrypted_content == NULL then
          return string.format("Item with id '%s' not found.%s", tostring(item.id), req.store == false
            and " Items are not persisted when `store` is set to false. Try again with `store` set to true, or remove this item from your input."
            or ""), "input"
        end
        if item.encrypted_content ~= issued[item.id] then
          return string.format("The encrypted content for item %s could not be verified.", tostring(item.id)), "input"
        end
      end
    end
  end },
  { "previous_response_id names a response this upstream keeps (it keeps none)", function(req)
    if type(req.previous_response_id) == "string" then
      return string.format("Previous response with id '%s' not found.", req.previous_response_id), "previous_response_id"
    end
  end },
  { "stream_options only when stream is on", RULES.openai[1][2] },
}

-- POST .../completions (the legacy API): open, as chat completions is
RS.prompt = S.either(str(), list(str(), { min = 1 }), list(int(), { min = 1 }), list(list(int()), { min = 1 }))
RS.completions = S.all(S.custom(function(req, path)
  if not is_object(req) then return end
  for _, name in ipairs(OA.anthropic_only) do
    if req[name] ~= nil then return { kind = "extra", path = at(path, name) } end
  end
end), oobj({
  model = str(),
  prompt = RS.prompt,
  suffix = S.nullable(str()),
  echo = S.nullable(bool()),
  max_tokens = S.nullable(int { min = 0 }),
  n = S.nullable(int { min = 1, max = 128 }),
  best_of = S.nullable(int { min = 0, max = 20 }),
  logprobs = S.nullable(int { min = 0, max = 5 }),
  temperature = S.nullable(num { min = 0, max = 2 }),
  top_p = S.nullable(num { min = 0, max = 1 }),
  frequency_penalty = S.nullable(num { min = -2, max = 2 }),
  presence_penalty = S.nullable(num { min = -2, max = 2 }),
  logit_bias = S.nullable(oobj({})),
  seed = S.nullable(int()),
  stop = S.nullable(S.either(str(), list(str(), { max = 4 }))),
  stream = S.nullable(bool()),
  stream_options = S.nullable(oobj({ include_usage = bool(), include_obfuscation = bool() })),
  user = str(),
}, { required = { "model", "prompt" } }))
RULES.completions = { { "stream_options only when stream is on", RULES.openai[1][2] } }

-- POST .../embeddings
RS.embeddings = oobj({
  model = str(),
  input = RS.prompt,
  encoding_format = enum { "float", "base64" },
  dimensions = int { min = 1 },
  user = str(),
}, { required = { "model", "input" } })
RULES.embeddings = {}

-- POST .../completion (llama.cpp's llama-server, its own API): one prompt
-- (a string, tokens, or both mixed; several prompts are the server's too,
-- but the daemon sends one), the sampling fields typed
local LC = {}
LC.piece = S.either(str(), int())
LC.prompt = S.either(str(), list(LC.piece, { min = 1 }))
LC.request = S.all(S.custom(function(req, path)
  if is_object(req) and req.messages ~= nil then
    return "\"messages\" is not a field of /completion: send a prompt (a chat goes to /v1/chat/completions)", at(path, "messages")
  end
end), oobj({
  prompt = LC.prompt,
  n_predict = int { min = -1 },
  max_tokens = int { min = -1 },
  temperature = num(),
  top_p = num { min = 0, max = 1 },
  min_p = num { min = 0, max = 1 },
  top_k = int(),
  seed = int(),
  n_keep = int(),
  n_probs = int { min = 0 },
  stop = list(str()),
  stream = bool(),
  cache_prompt = bool(),
}, { required = { "prompt" } }))

-- a problem in llama.cpp's words (a missing key as nlohmann::json says it;
-- a value of the wrong type as the server's parameter warning does)
local function lc_words(p)
  local param = oa_path(p.path)
  if p.kind == "missing" then return string.format("[json.exception.out_of_range.403] key '%s' not found", param) end
  if p.kind == "type" or p.kind == "min_items" then
    return string.format("Wrong type supplied for parameter '%s'. Expected '%s'", param, p.want or "array")
  end
  if p.kind == "min" or p.kind == "max" then
    return string.format("Invalid value for parameter '%s': %s", param, tostring(p.got))
  end
  return p.message or ("Invalid request: " .. param)
end

local function llamacpp_error(message)
  return { error = { code = 400, message = message, type = "invalid_request_error" } }
end

-- a problem in the Responses API's words: OpenAI's, but an unknown
-- top-level field is an "Unknown parameter" there too
local function rs_words(p)
  if p.kind == "extra" then
    local param = oa_path(p.path)
    return string.format("Unknown parameter: '%s'.", param), param, "unknown_parameter"
  end
  return oa_words(p)
end

local SHAPES = { openai = OA.request, anthropic = AN.request, anthropic_count = AN.count_request,
  responses = RS.request, completions = RS.completions, embeddings = RS.embeddings, llamacpp = LC.request }

---------------------------------------------------------------------------
-- check(api, headers, body) -> nil, nil, request | message, error body (a JSON value)
---------------------------------------------------------------------------
local function api_of(path)
  local p = path:gsub("%?.*$", "")
  if p:find("/chat/completions$") then return "openai" end
  if p:find("/messages/count_tokens$") then return "anthropic_count" end
  if p:find("/messages$") then return "anthropic" end
  if p:find("/responses$") then return "responses" end
  if p:find("/completions$") then return "completions" end
  if p:find("/completion$") then return "llamacpp" end
  if p:find("/embeddings$") then return "embeddings" end
end

-- the account upstream a path belongs to: "codex" (the ChatGPT Codex
-- backend, .../backend-api/codex/...), "copilot" (the GitHub Copilot API,
-- /copilot/...) or nil (a plain API)
local function family_of(path)
  local p = path:gsub("%?.*$", "")
  if p:find("/backend-api/codex/", 1, true) or p:find("/backend-api/codex$") then return "codex" end
  if p:find("^/copilot/") or p == "/copilot" then return "copilot" end
end

-- the APIs that answer in OpenAI's error shape, and how each words a problem
local OPENAI_STYLE = { openai = oa_words, responses = rs_words, completions = oa_words, embeddings = oa_words }

local function openai_error(message, param, code)
  return { error = { message = message, type = "invalid_request_error", param = param or cjson.null, code = code or cjson.null } }
end

local function anthropic_error(message)
  return { type = "error", error = { type = "invalid_request_error", message = message }, request_id = "req_mock" }
end

local function check(api, headers, body)
  local ok, req = pcall(decode, body)
  if api == "llamacpp" then
    if not ok then
      local message = "[json.exception.parse_error.101] parse error: " .. tostring(req)
      return message, llamacpp_error(message)
    end
    local problem = SHAPES.llamacpp(req, {}, {})
    if problem then
      local message = lc_words(problem)
      return message, llamacpp_error(message)
    end
    return nil, nil, req
  end
  local words = OPENAI_STYLE[api]
  if words then
    if not ok then
      local message = "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
        .. "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
      return message, openai_error(message)
    end
    local problem = SHAPES[api](req, {}, {})
    if problem then
      local message, param, code = words(problem)
      return message, openai_error(message, param, code)
    end
    for _, rule in ipairs(RULES[api]) do
      local message, param = rule[2](req)
      if message then return message, openai_error(message, param) end
    end
    return nil, nil, req
  end
  if not ok then
    local message = "There was an issue with your request body: " .. tostring(req)
    return message, anthropic_error(message)
  end
  local ctx = { allows = {} }
  local beta = "," .. (headers["anthropic-beta"] or ""):gsub("%s", "") .. ","
  for _, b in ipairs(BETA_ALLOWS) do
    for _, name in ipairs(b.betas) do
      if beta:find("," .. name .. ",", 1, true) then ctx.allows[b.allows] = true end
    end
  end
  local problem = SHAPES[api](req, {}, ctx)
  if problem then
    local message = an_words(problem)
    return message, anthropic_error(message)
  end
  for _, rule in ipairs(RULES.anthropic) do
    local message = rule[2](req)
    if message then return message, anthropic_error(message) end
  end
  return nil, nil, req
end

---------------------------------------------------------------------------
-- answers
---------------------------------------------------------------------------
local function now_ms()
  local s, us = uv.gettimeofday()
  return s * 1000 + us / 1000
end

local function send(tcp, data)
  if not tcp:is_closing() then tcp:write(data) end
end

local function head(status, headers)
  local lines = { "HTTP/1.1 " .. status .. " X" }
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

local function last_user_text(req)
  local msgs = is_list(req.messages) and req.messages or {}
  for i = #msgs, 1, -1 do
    local m = msgs[i]
    if is_object(m) and m.role == "user" then
      if type(m.content) == "string" then return m.content end
      local out = {}
      for _, p in ipairs(is_list(m.content) and m.content or {}) do
        if is_object(p) and p.type == "text" and type(p.text) == "string" then out[#out + 1] = p.text end
      end
      return table.concat(out)
    end
  end
  return ""
end

local function model_of(req) return type(req.model) == "string" and req.model or "mock" end

-- an Anthropic message for reply r, whole or as SSE frames
local function anthropic_reply(req, r, stream)
  local content = {}
  if r.thinking then content[#content + 1] = { type = "thinking", thinking = r.thinking, signature = r.signature or "sig_mock" } end
  if r.text then content[#content + 1] = { type = "text", text = r.text } end
  for i, c in ipairs(r.tool_calls or {}) do
    content[#content + 1] = { type = "tool_use", id = c.id or ("toolu_mock_" .. i), name = c.name,
      input = c.input or setmetatable({}, { __jsontype = "object" }) }
  end
  local stop = r.stop or ((r.tool_calls and #r.tool_calls > 0) and "tool_use" or "end_turn")
  local words = 0
  for _ in (r.text or ""):gmatch("%S+") do words = words + 1 end
  local usage = { input_tokens = 7, output_tokens = words }
  if not stream then
    return { json = { id = "msg_mock", type = "message", role = "assistant", model = model_of(req), content = content,
      stop_reason = stop, stop_sequence = cjson.null, usage = usage } }
  end
  local frames = {
    { event = "message_start", json = { type = "message_start", message = { id = "msg_mock", type = "message",
      role = "assistant", model = model_of(req), content = {}, stop_reason = cjson.null, stop_sequence = cjson.null,
      usage = { input_tokens = 7, output_tokens = 1 } } } },
  }
  local function add(event, json) frames[#frames + 1] = { event = event, json = json } end
  for i, b in ipairs(content) do
    local index = i - 1
    if b.type == "thinking" then
      add("content_block_start", { type = "content_block_start", index = index, content_block = { type = "thinking", thinking = "", signature = "" } })
      add("content_block_delta", { type = "content_block_delta", index = index, delta = { type = "thinking_delta", thinking = b.thinking } })
      add("content_block_delta", { type = "content_block_delta", index = index, delta = { type = "signature_delta", signature = b.signature } })
    elseif b.type == "text" then
      add("content_block_start", { type = "content_block_start", index = index, content_block = { type = "text", text = "" } })
      for w in b.text:gmatch("%S+%s*") do
        add("content_block_delta", { type = "content_block_delta", index = index, delta = { type = "text_delta", text = w } })
      end
    else
      add("content_block_start", { type = "content_block_start", index = index,
        content_block = { type = "tool_use", id = b.id, name = b.name, input = {} } })
      add("content_block_delta", { type = "content_block_delta", index = index,
        delta = { type = "input_json_delta", partial_json = cjson.encode(b.input) } })
    end
    add("content_block_stop", { type = "content_block_stop", index = index })
  end
  add("message_delta", { type = "message_delta", delta = { stop_reason = stop, stop_sequence = cjson.null },
    usage = { output_tokens = words } })
  add("message_stop", { type = "message_stop" })
  return { frames = frames }
end

-- an OpenAI chat completion for reply r, whole or as SSE chunks
local function openai_reply(req, r, stream)
  local calls = {}
  for i, c in ipairs(r.tool_calls or {}) do
    calls[i] = { id = c.id or ("call_mock_" .. i), type = "function",
      ["function"] = { name = c.name, arguments = c.input and cjson.encode(c.input) or "{}" } }
  end
  local finish = r.stop or (#calls > 0 and "tool_calls" or "stop")
  local words = 0
  for _ in (r.text or ""):gmatch("%S+") do words = words + 1 end
  local usage = { prompt_tokens = 7, completion_tokens = words, total_tokens = 7 + words }
  if not stream then
    local message = { role = "assistant", content = (r.text and r.text ~= "") and r.text or (#calls > 0 and cjson.null or r.text or "") }
    if r.thinking then message.reasoning_content = r.thinking end
    if #calls > 0 then message.tool_calls = calls end
    return { json = { id = "chatcmpl-mock", object = "chat.completion", created = 1, model = model_of(req),
      choices = { { index = 0, message = message, finish_reason = finish } }, usage = usage } }
  end
  local function chunk(delta, fin)
    return { json = { id = "chatcmpl-mock", object = "chat.completion.chunk", created = 1, model = model_of(req),
      choices = { { index = 0, delta = delta, finish_reason = fin or cjson.null } } } }
  end
  local frames = { chunk({ role = "assistant", content = "" }) }
  if r.thinking then frames[#frames + 1] = chunk({ reasoning_content = r.thinking }) end
  for w in (r.text or ""):gmatch("%S+%s*") do frames[#frames + 1] = chunk({ content = w }) end
  for i, c in ipairs(calls) do
    frames[#frames + 1] = chunk({ tool_calls = { { index = i - 1, id = c.id, type = "function",
      ["function"] = { name = c["function"].name, arguments = "" } } } })
    frames[#frames + 1] = chunk({ tool_calls = { { index = i - 1, ["function"] = { arguments = c["function"].arguments } } } })
  end
  frames[#frames + 1] = chunk({}, finish)
  -- the usage chunk only when asked for, as OpenAI (and vLLM) send it
  if is_object(req.stream_options) and req.stream_options.include_usage == true then
    frames[#frames + 1] = { json = { id = "chatcmpl-mock", object = "chat.completion.chunk", created = 1,
      model = model_of(req), choices = {}, usage = usage } }
  end
  frames[#frames + 1] = { data = "[DONE]" }
  return { frames = frames }
end


-- a list JSON must write as [] even when empty (lua-cjson writes {})
local EMPTY = "\0[]"

local function words_of(text)
  local n = 0
  for _ in (text or ""):gmatch("%S+") do n = n + 1 end
  return n
end

-- the text of the last user message of a Responses input
local function responses_user_text(req)
  if type(req.input) == "string" then return req.input end
  local input = is_list(req.input) and req.input or {}
  for i = #input, 1, -1 do
    local m = input[i]
    if is_object(m) and (m.type == "message" or m.type == nil) and m.role == "user" then
      if type(m.content) == "string" then return m.content end
      local out = {}
      for _, p in ipairs(is_list(m.content) and m.content or {}) do
        if is_object(p) and p.type == "input_text" and type(p.text) == "string" then out[#out + 1] = p.text end
      end
      return table.concat(out)
    end
  end
  return ""
end

-- a Responses answer for reply r, whole or as its event stream: a
-- reasoning item (thinking: its summary; its encrypted_content when the
-- request's include asks for it), a message (text), function_call items
-- (tool_calls); stop = "length" or "content_filter" ends it incomplete
local responses_made = 0 -- how many Responses answers this mock has made
local function responses_reply(req, r, stream)
  local include = {}
  for _, v in ipairs(is_list(req.include) and req.include or {}) do include[v] = true end
  local output = {}
  if r.thinking then
    nreasoning = nreasoning + 1
    local id = r.reasoning_id or ("rs_mock_" .. nreasoning)
    local item = { id = id, type = "reasoning",
      summary = r.thinking ~= "" and { { type = "summary_text", text = r.thinking } } or EMPTY }
    issued[id] = r.signature or mock_encrypted(id)
    if include["reasoning.encrypted_content"] then item.encrypted_content = issued[id] end
    output[#output + 1] = item
  end
  if r.text then
    output[#output + 1] = { id = "msg_mock", type = "message", status = "completed", role = "assistant",
      content = { { type = "output_text", text = r.text, annotations = EMPTY } } }
  end
  for i, c in ipairs(r.tool_calls or {}) do
    output[#output + 1] = { id = "fc_mock_" .. i, type = "function_call", status = "completed",
      call_id = c.id or ("call_mock_" .. i), name = c.name, arguments = c.input and cjson.encode(c.input) or "{}" }
  end
  local reason = (r.stop == "length" or r.stop == "max_output_tokens") and "max_output_tokens"
    or r.stop == "content_filter" and "content_filter" or nil
  local words = words_of(r.text)
  responses_made = responses_made + 1
  local id = "resp_mock" .. responses_made -- a new id each time, as the API's
  local function response(status, out, usage)
    return { id = id, object = "response", created_at = 1, status = status, model = model_of(req),
      output = out, error = cjson.null,
      incomplete_details = status == "incomplete" and { reason = reason } or cjson.null,
      instructions = type(req.instructions) == "string" and req.instructions or cjson.null,
      parallel_tool_calls = req.parallel_tool_calls ~= false, store = req.store ~= false,
      tool_choice = type(req.tool_choice) == "string" and req.tool_choice or "auto",
      tools = is_list(req.tools) and #req.tools > 0 and req.tools or EMPTY,
      usage = usage or cjson.null }
  end
  local usage = { input_tokens = 7, input_tokens_details = { cached_tokens = 0 }, output_tokens = words,
    output_tokens_details = { reasoning_tokens = r.thinking and 3 or 0 }, total_tokens = 7 + words }
  local status = reason and "incomplete" or "completed"
  if not stream then return { json = response(status, #output > 0 and output or EMPTY, usage) } end
  local frames, seq = {}, 0
  local function add(t, fields)
    fields.type, fields.sequence_number = t, seq
    seq = seq + 1
    frames[#frames + 1] = { event = t, json = fields }
  end
  add("response.created", { response = response("in_progress", EMPTY) })
  add("response.in_progress", { response = response("in_progress", EMPTY) })
  for i, item in ipairs(output) do
    local oi = i - 1
    if item.type == "reasoning" then
      add("response.output_item.added", { output_index = oi, item = { id = item.id, type = "reasoning", summary = EMPTY } })
      if item.summary ~= EMPTY then
        local text = item.summary[1].text
        local where = function(t) t.item_id, t.output_index, t.summary_index = item.id, oi, 0; return t end
        add("response.reasoning_summary_part.added", where { part = { type = "summary_text", text = "" } })
        for w in text:gmatch("%S+%s*") do add("response.reasoning_summary_text.delta", where { delta = w }) end
        add("response.reasoning_summary_text.done", where { text = text })
        add("response.reasoning_summary_part.done", where { part = { type = "summary_text", text = text } })
      end
    elseif item.type == "message" then
      local text = item.content[1].text
      add("response.output_item.added", { output_index = oi, item = { id = item.id, type = "message",
        status = "in_progress", role = "assistant", content = EMPTY } })
      local where = function(t) t.item_id, t.output_index, t.content_index = item.id, oi, 0; return t end
      add("response.content_part.added", where { part = { type = "output_text", text = "", annotations = EMPTY } })
      for w in text:gmatch("%S+%s*") do add("response.output_text.delta", where { delta = w, logprobs = EMPTY }) end
      add("response.output_text.done", where { text = text, logprobs = EMPTY })
      add("response.content_part.done", where { part = { type = "output_text", text = text, annotations = EMPTY } })
    else
      add("response.output_item.added", { output_index = oi, item = { id = item.id, type = "function_call",
        status = "in_progress", call_id = item.call_id, name = item.name, arguments = "" } })
      add("response.function_call_arguments.delta", { item_id = item.id, output_index = oi, delta = item.arguments })
      add("response.function_call_arguments.done", { item_id = item.id, output_index = oi, arguments = item.arguments })
    end
    add("response.output_item.done", { output_index = oi, item = item })
  end
  add(reason and "response.incomplete" or "response.completed",
    { response = response(status, #output > 0 and output or EMPTY, usage) })
  return { frames = frames }
end

-- a legacy text completion for reply r (text), whole or as SSE chunks
local function completions_reply(req, r, stream)
  local finish = r.stop or "stop"
  local words = words_of(r.text)
  local usage = { prompt_tokens = 7, completion_tokens = words, total_tokens = 7 + words }
  local function body(text, fin, with_usage)
    return { id = "cmpl-mock", object = "text_completion", created = 1, model = model_of(req),
      choices = { { text = text, index = 0, logprobs = cjson.null, finish_reason = fin or cjson.null } },
      usage = with_usage and usage or nil }
  end
  if not stream then
    local b = body(r.text or "", finish, true)
    if r.missing then b.choices[1].text = nil end -- a back end that says nothing at all
    return { json = b }
  end
  local frames = {}
  for w in (r.text or ""):gmatch("%S+%s*") do frames[#frames + 1] = { json = body(w) } end
  frames[#frames + 1] = { json = body("", finish) }
  if is_object(req.stream_options) and req.stream_options.include_usage == true then
    frames[#frames + 1] = { json = { id = "cmpl-mock", object = "text_completion", created = 1, model = model_of(req),
      choices = EMPTY, usage = usage } }
  end
  frames[#frames + 1] = { data = "[DONE]" }
  return { frames = frames }
end

-- llama.cpp's answer for reply r (text), whole or as SSE frames: stop_type
-- eos, limit (r.stop "length" or "limit") or word (r.stop "word": the
-- request's first stop, or r.stopping_word); r.missing: no content at all
local LC_STOP = { length = "limit", limit = "limit", word = "word" }
local function llamacpp_reply(req, r, stream)
  local words = words_of(r.text)
  local stop_type = LC_STOP[r.stop] or "eos"
  local stops = is_list(req.stop) and req.stop or {}
  local final = { index = 0, content = r.text or "", tokens = EMPTY, id_slot = 0,
    stop = true, model = "mock.gguf", tokens_predicted = words, tokens_evaluated = 7,
    generation_settings = { n_predict = req.n_predict or -1, temperature = req.temperature or 0.8,
      top_p = req.top_p or 0.95, stop = #stops > 0 and stops or EMPTY, stream = req.stream == true },
    prompt = type(req.prompt) == "string" and req.prompt or "", has_new_line = (r.text or ""):find("\n") ~= nil,
    truncated = false, stop_type = stop_type,
    stopping_word = stop_type == "word" and (r.stopping_word or stops[1] or "") or "",
    tokens_cached = 0, timings = { prompt_n = 7, prompt_ms = 1.5, predicted_n = words, predicted_ms = 2.5 } }
  if r.missing then final.content = nil end
  if not stream then return { json = final } end
  if not r.missing then final.content = "" end -- (its text came in the frames before)
  local frames, n = {}, 0
  for w in (r.text or ""):gmatch("%S+%s*") do
    n = n + 1
    frames[#frames + 1] = { json = { index = 0, content = w, tokens = { n }, stop = false, id_slot = 0,
      tokens_predicted = n, tokens_evaluated = 7 } }
  end
  frames[#frames + 1] = { json = final }
  return { frames = frames }
end

-- the mock's embedding of a text: a few values that a float32 holds
-- exactly (sixteenths), so float and base64 answers say the same
local function embedding_of(text, dim)
  local h = 0
  for i = 1, #text do h = (h * 31 + text:byte(i)) % 65536 end
  local v = {}
  for k = 1, dim do v[k] = ((h + k * 7) % 16) / 16 - 0.5 end
  return v
end

-- a vector as OpenAI's base64: its float32s, little-endian
local function float32_base64(v)
  local ffi = require "ffi"
  local a = ffi.new("float[?]", #v)
  for i, x in ipairs(v) do a[i - 1] = x end
  return base64(ffi.string(a, 4 * #v)) -- x86 and ARM Linux are little-endian
end

-- embeddings for each input (r.embeddings: the vectors to give, else the
-- mock's own of EMBED_DIM values, or the request's dimensions)
local EMBED_DIM = 4
local function embeddings_reply(req, r)
  local inputs = req.input
  if type(inputs) == "string" or (is_list(inputs) and type(inputs[1]) == "number") then inputs = { inputs } end
  local data, tokens = {}, 0
  for i, x in ipairs(type(inputs) == "table" and inputs or {}) do
    local text = type(x) == "string" and x or table.concat(x, " ")
    tokens = tokens + math.max(1, words_of(text))
    local v = r.embeddings and r.embeddings[i] or embedding_of(text, tonumber(req.dimensions) or EMBED_DIM)
    data[i] = { object = "embedding", index = i - 1,
      embedding = req.encoding_format == "base64" and float32_base64(v) or v }
  end
  return { json = { object = "list", data = #data > 0 and data or EMPTY, model = model_of(req),
    usage = { prompt_tokens = tokens, total_tokens = tokens } } }
end

-- does a Responses request ask for reasoning summaries (reasoning.summary
-- set, and not "none")?
local function asks_summary(req)
  local r = is_object(req.reasoning) and req.reasoning or {}
  local s = r.summary ~= nil and r.summary ~= NULL and r.summary or r.generate_summary
  return type(s) == "string" and s ~= "none"
end

-- a reply in the format of the path
local function reply_script(path, req, r)
  local api = api_of(path)
  -- the Codex backend writes a reasoning item's summary only when the
  -- request asks for one: without reasoning.summary it is []
  if api == "responses" and family_of(path) == "codex" and r.thinking and not asks_summary(req) then
    local c = {}
    for k, v in pairs(r) do c[k] = v end
    c.thinking = ""
    r = c
  end
  if api == "anthropic" or api == "anthropic_count" then return anthropic_reply(req, r, req.stream == true) end
  if api == "responses" then return responses_reply(req, r, req.stream == true) end
  if api == "completions" then return completions_reply(req, r, req.stream == true) end
  if api == "llamacpp" then return llamacpp_reply(req, r, req.stream == true) end
  if api == "embeddings" then return embeddings_reply(req, r) end
  return openai_reply(req, r, req.stream == true)
end

-- the default answer: an echo of the last user message (of a completion's
-- prompt), or embeddings of the input
local function default_script(path, req)
  local api = api_of(path)
  if api == "anthropic_count" then return { json = { input_tokens = 7 } } end
  if api == "responses" then
    local text = responses_user_text(req)
    -- the Codex backend thinks before it answers: a summary when asked, with
    -- its encrypted_content when include asks for that too
    local thinking
    if family_of(path) == "codex" and asks_summary(req) then
      for _, v in ipairs(is_list(req.include) and req.include or {}) do
        if v == "reasoning.encrypted_content" then thinking = "The user said: " .. text end
      end
    end
    return reply_script(path, req, { text = text, thinking = thinking })
  end
  if api == "completions" or api == "llamacpp" then
    local p = req.prompt
    return reply_script(path, req, { text = type(p) == "string" and p or is_list(p) and type(p[1]) == "string" and p[1] or "" })
  end
  if api == "embeddings" then return reply_script(path, req, {}) end
  return reply_script(path, req, { text = last_user_text(req) })
end

local function serve_script(tcp, script, record, done)
  local function after(ms, fn)
    if not ms or ms <= 0 then return fn() end
    local t = uv.new_timer()
    t:start(ms, 0, function() t:close(); fn() end)
  end
  after(script.delay_ms, function()
    if tcp:is_closing() then return done(false) end
    local status = script.status or 200
    local headers = {}
    for k, v in pairs(script.headers or {}) do headers[k] = v end
    if script.frames then
      headers["content-type"] = headers["content-type"] or "text/event-stream"
      headers["connection"] = "close"
      send(tcp, head(status, headers))
      local i = 0
      local function step()
        if tcp:is_closing() then return done(false) end
        i = i + 1
        local f = script.frames[i]
        if not f or (script.drop_after and i > script.drop_after) then
          record.finished_at_ms = now_ms()
          return done(false) -- close: end of stream or a drop
        end
        after(f.delay_ms, function()
          if tcp:is_closing() then return done(false) end
          local data = f.pad and ("data: " .. string.rep("x", f.pad)) or f.raw or ((f.event and ("event: " .. f.event .. "\n") or "") ..
            "data: " .. (f.data or encode(f.json)) .. "\n\n")
          if not script.bytewise_ms then
            send(tcp, data)
            return step()
          end
          -- a byte at a time, each in a segment of its own: the reader
          -- sees every split a frame can have
          tcp:nodelay(true)
          local k = 0
          local function byte()
            if tcp:is_closing() then return done(false) end
            k = k + 1
            if k > #data then return step() end
            send(tcp, data:sub(k, k))
            after(script.bytewise_ms, byte)
          end
          byte()
        end)
      end
      step()
    else
      local body = script.body or (script.json ~= nil and encode(script.json)) or ""
      if script.gzip then -- compressed with gzip(1), marked content-encoding
        local path = os.tmpname()
        local f = assert(io.open(path, "wb"))
        f:write(body)
        f:close()
        local p = assert(io.popen("gzip -c -n " .. path, "r"))
        body = p:read("*a")
        p:close()
        os.remove(path)
        headers["content-encoding"] = "gzip"
      end
      headers["content-type"] = headers["content-type"] or "application/json"
      headers["content-length"] = #body
      send(tcp, head(status, headers) .. body)
      done(not script.close) -- close: hang up once the answer is out
    end
  end)
end

local function respond_json(tcp, status, value)
  local body = cjson.encode(value)
  send(tcp, head(status, { ["content-type"] = "application/json", ["content-length"] = #body }) .. body)
end

---------------------------------------------------------------------------
-- Accounts: the GitHub Copilot API (/copilot/...) and the ChatGPT Codex
-- backend (.../backend-api/codex/...). What the real ones do, and where it
-- was seen (public issue threads and code; the mock says the same):
--   Codex backend
--   - errors are {"detail": "..."}; a request is refused before any token
--     is made: "Instructions are required", "Store must be set to false",
--     "Stream must be set to true" (each seen in proxies' issue threads and
--     in the notes of projects that probed it one field at a time)
--   - it keeps an allowlist of request fields and answers anything else
--     with 400 "Unsupported parameter: x" (a gateway's live probe, field by
--     field: max_output_tokens, max_tool_calls, prompt_cache_retention,
--     temperature, top_p, top_logprobs, truncation, metadata, background,
--     user, safety_identifier, previous_response_id refused; the same
--     refusals reported one by one in ChatMock, sub2api, Fabric, new-api,
--     CLIProxyAPI, 9router threads). The list taken here is what Codex CLI
--     itself sends (openai/codex, codex-rs/codex-api/src/common.rs,
--     ResponsesApiRequest). service_tier: that probe had it refused, while
--     Codex sends "priority" for its fast mode; the mock takes "priority"
--     only
--   - a model its models list lacks: 400 "The 'x' model is not supported
--     when using Codex with a ChatGPT account."; a reasoning effort the
--     model does not list: the Responses API's own "Unsupported value"
--   - a bad token: 401 "Could not parse your authentication token. Please
--     try signing in again."; a missing chatgpt-account-id is not seen in
--     public threads: the mock answers 400 "Missing chatgpt-account-id
--     header". OpenAI-Beta, originator and session_id are recorded, not
--     required (Codex CLI's HTTP path does not send OpenAI-Beta any more)
--   - GET .../models?client_version=... -> {"models": [ModelInfo]}, the
--     fields of openai/codex codex-rs/protocol/src/openai_models.rs
--   Copilot
--   - without Editor-Version: 400, text/plain "bad request: missing
--     Editor-Version header for IDE auth" (many issue threads: litellm,
--     openclaw, codegate); without Copilot-Integration-Id the mock answers
--     the same way ("bad request: missing Copilot-Integration-Id header",
--     its wording not seen); a bad token: 401 text/plain "unauthorized:
--     token expired"
--   - a model the list lacks: 400 {"error": {"message": "The requested model
--     is not supported.", "code": "model_not_supported", "param": "model",
--     "type": "invalid_request_error"}}; an endpoint the model's
--     supported_endpoints do not name: 400 {"error": {"message": "model \"x\"
--     is not accessible via the /chat/completions endpoint", "code":
--     "unsupported_api_for_model"}} (copilot-api threads)
--   - GET /copilot/models -> {"data": [...], "object": "list"}, each model
--     as copilot-api's get-models types and PROTOCOLS' list of fields
---------------------------------------------------------------------------
local bearer -- POST /_mock/auth {"bearer": "T"}: only "Authorization: Bearer T" is served

-- JSON decoded by the mock's decoder, made plain for cjson: an empty list
-- goes out as [], null as null
local function plain(v)
  if v == NULL then return cjson.null end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = plain(x) end
  if is_list(v) and #v == 0 then return EMPTY end
  return out
end

local function merge(t, spec, skip)
  for k, v in pairs(spec) do
    if not skip[k] then t[k] = v end
  end
  return t
end

-- a Copilot model: spec = "id" or {id, name, vendor, type = "chat" |
-- "embeddings", family, premium, supported_endpoints, ...}; any other
-- top-level field given replaces the default one
local function copilot_model(spec)
  if type(spec) == "string" then spec = { id = spec } end
  local id = tostring(spec.id)
  local embed = spec.type == "embeddings" or (spec.type == nil and id:find("embedding") ~= nil)
  local claude = id:find("^claude") ~= nil
  local caps = {
    family = spec.family or id, object = "model_capabilities", tokenizer = "o200k_base",
    type = embed and "embeddings" or "chat",
    limits = embed and { max_inputs = 512 } or { max_context_window_tokens = 128000, max_output_tokens = 16384,
      max_prompt_tokens = 128000 },
    supports = embed and { dimensions = true } or { tool_calls = true, parallel_tool_calls = true, streaming = true,
      vision = true, structured_outputs = true,
      max_thinking_budget = claude and 32000 or nil, min_thinking_budget = claude and 1024 or nil },
  }
  local premium = spec.premium
  if premium == nil then premium = claude or id:find("codex") ~= nil end
  return merge({
    id = id, name = spec.name or id, object = "model", version = id, preview = false,
    vendor = spec.vendor or (claude and "Anthropic" or embed and "Azure OpenAI" or "OpenAI"),
    model_picker_enabled = not embed, capabilities = caps,
    policy = { state = "enabled", terms = "Enable access to the latest " .. id .. " model." },
    billing = { is_premium = premium, multiplier = premium and 1 or 0 },
    supported_endpoints = spec.supported_endpoints,
  }, spec, { type = true, family = true, premium = true })
end

-- a Codex backend model (ModelInfo): spec = "slug" or {slug, display_name,
-- efforts = {"low", ...}, ...}; any other field given replaces the default
local function codex_model(spec, priority)
  if type(spec) == "string" then spec = { slug = spec } end
  spec.slug = tostring(spec.slug)
  local levels = {}
  local efforts = spec.efforts
  if type(efforts) ~= "table" then efforts = efforts == EMPTY and {} or { "low", "medium", "high" } end
  for _, e in ipairs(efforts) do
    levels[#levels + 1] = { effort = e, description = e .. " reasoning effort" }
  end
  return merge({
    slug = spec.slug, display_name = spec.slug, description = "Mock " .. spec.slug .. ".",
    default_reasoning_level = "medium", supported_reasoning_levels = #levels > 0 and levels or EMPTY,
    shell_type = "shell_command", visibility = "list", supported_in_api = true, priority = priority,
    upgrade = cjson.null, base_instructions = "You are Codex, a coding agent.",
    supports_reasoning_summaries = true, support_verbosity = true, default_verbosity = "low",
    apply_patch_tool_type = "freeform", truncation_policy = { mode = "tokens", limit = 10000 },
    supports_parallel_tool_calls = true, context_window = 272000, effective_context_window_percent = 95,
    experimental_supported_tools = EMPTY, input_modalities = { "text", "image" },
  }, spec, { efforts = true })
end

local MODELS = {
  copilot = {
    { id = "gpt-4.1", supported_endpoints = { "/chat/completions" } },
    { id = "claude-sonnet-4.5", supported_endpoints = { "/v1/messages", "/chat/completions" } },
    { id = "gpt-5.1-codex", supported_endpoints = { "/responses" } },
    { id = "gpt-5-mini", supported_endpoints = { "/chat/completions", "/responses" } },
    { id = "text-embedding-3-small", type = "embeddings" },
  },
  codex = { "gpt-5.1-codex", "gpt-5.1" },
}
local models = {} -- the lists served now: {copilot = {model...}, codex = {model...}}
-- set_models(given): the lists given replace the ones served (the others
-- stay); set_models() goes back to the defaults
local function set_models(given)
  for name, build in pairs { copilot = copilot_model, codex = codex_model } do
    local specs = given == nil and MODELS[name] or given[name]
    if specs then
      local list = {}
      for i, spec in ipairs(specs) do list[i] = build(spec, i) end
      models[name] = list
    end
  end
end
set_models()

local function find_model(family, id)
  for _, m in ipairs(models[family]) do
    if (m.id or m.slug) == id then return m end
  end
end

-- the endpoints a Copilot model is served at: its supported_endpoints, or
-- (a model that lists none) what its type implies
local function endpoints_of(m)
  if type(m.supported_endpoints) == "table" and m.supported_endpoints ~= EMPTY then return m.supported_endpoints end
  local caps = type(m.capabilities) == "table" and m.capabilities or {}
  if caps.type == "embeddings" then return { "/embeddings" } end
  return { "/chat/completions" }
end

-- answers: {status, content_type, body (a string), message (recorded)}
local function text_answer(status, message)
  return { status = status, ctype = "text/plain; charset=utf-8", body = message .. "\n", message = message }
end
local function json_answer(status, message, value)
  return { status = status, ctype = "application/json", body = encode(value), message = message }
end
local function detail(status, message) return json_answer(status, message, { detail = message }) end

-- the 401 for a request whose bearer is not the one /_mock/auth set, in
-- its path's error format
local function unauthorized(path)
  local family = family_of(path)
  if family == "codex" then
    return detail(401, "Could not parse your authentication token. Please try signing in again.")
  elseif family == "copilot" then
    return text_answer(401, "unauthorized: token expired")
  end
  local api = api_of(path)
  if api == "anthropic" or api == "anthropic_count" then
    return json_answer(401, "invalid x-api-key", { type = "error",
      error = { type = "authentication_error", message = "invalid x-api-key" }, request_id = "req_mock" })
  end
  local message = "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
  return json_answer(401, message, { error = { message = message, type = "invalid_request_error",
    param = cjson.null, code = "invalid_api_key" } })
end

local function authorized(path, headers)
  if headers.authorization == "Bearer " .. bearer then return true end
  -- an Anthropic client carries its key in x-api-key
  local api = api_of(path)
  return (api == "anthropic" or api == "anthropic_count") and not family_of(path) and headers["x-api-key"] == bearer
end

-- the headers each account upstream refuses to go without, in order:
-- {header, answer when it is missing (or, for authorization, no bearer)}
local HEADERS = {
  copilot = {
    { "authorization", text_answer(401, "unauthorized: missing or malformed Authorization header") },
    { "editor-version", text_answer(400, "bad request: missing Editor-Version header for IDE auth") },
    { "copilot-integration-id", text_answer(400, "bad request: missing Copilot-Integration-Id header") },
  },
  codex = {
    { "authorization", detail(401, "Could not parse your authentication token. Please try signing in again.") },
    { "chatgpt-account-id", detail(400, "Missing chatgpt-account-id header") },
  },
}
local function check_headers(family, headers)
  for _, h in ipairs(HEADERS[family]) do
    local v = headers[h[1]]
    if v == nil or v == "" or (h[1] == "authorization" and not v:find("^Bearer %S")) then return h[2] end
  end
end

-- the Codex backend's request rules (POST .../backend-api/codex/responses),
-- before the Responses API's own checks; each returns a {"detail"} message,
-- or an answer of its own
local CODEX = {}
-- the request fields the backend takes: what Codex CLI sends
CODEX.accepted = { "model", "instructions", "input", "tools", "tool_choice", "parallel_tool_calls", "reasoning",
  "store", "stream", "include", "service_tier", "prompt_cache_key", "text", "client_metadata" }
local codex_accepted = {}
for _, k in ipairs(CODEX.accepted) do codex_accepted[k] = true end

RULES.codex = {
  { "only the fields of CODEX.accepted (the backend keeps an allowlist): any other is an Unsupported parameter",
    function(req)
      local extra = {}
      for k in pairs(req) do
        if not codex_accepted[k] then extra[#extra + 1] = k end
      end
      table.sort(extra)
      if extra[1] then return "Unsupported parameter: " .. extra[1] end
    end },
  { "service_tier only as Codex sends it (\"priority\", its fast mode)", function(req)
    if req.service_tier ~= nil and req.service_tier ~= NULL and req.service_tier ~= "priority" then
      return "Unsupported parameter: service_tier"
    end
  end },
  { "instructions present", function(req)
    if req.instructions == nil or req.instructions == NULL then return "Instructions are required" end
  end },
  { "store is false (the backend keeps nothing)", function(req)
    if req.store ~= false then return "Store must be set to false" end
  end },
  { "stream is true (the backend only streams)", function(req)
    if req.stream ~= true then return "Stream must be set to true" end
  end },
  { "the model is one of the account's models (GET .../models)", function(req)
    if type(req.model) == "string" and not find_model("codex", req.model) then
      return string.format("The '%s' model is not supported when using Codex with a ChatGPT account.", req.model)
    end
  end },
  { "reasoning.effort is one the model's supported_reasoning_levels name (the Responses API's words)", function(req)
    local m = type(req.model) == "string" and find_model("codex", req.model)
    local effort = is_object(req.reasoning) and req.reasoning.effort
    if not m or type(effort) ~= "string" or type(m.supported_reasoning_levels) ~= "table" then return end
    local names = {}
    for _, l in ipairs(m.supported_reasoning_levels) do
      if l.effort == effort then return end
      names[#names + 1] = l.effort
    end
    local message = string.format("Unsupported value: 'reasoning.effort' does not support '%s' with this model. "
      .. "Supported values are: %s.", effort, quoted_list(names))
    return message, json_answer(400, message, openai_error(message, "reasoning.effort", "unsupported_value"))
  end },
}

-- the Copilot API's routing rules (POST /copilot/<endpoint>), before the
-- endpoint's own API checks
RULES.copilot = {
  { "the model is one of the account's models (GET /copilot/models)", function(req)
    if type(req.model) == "string" and not find_model("copilot", req.model) then
      local message = "The requested model is not supported."
      return message, json_answer(400, message, { error = { message = message, code = "model_not_supported",
        param = "model", type = "invalid_request_error" } })
    end
  end },
  { "the model's supported_endpoints name the endpoint", function(req, endpoint)
    local m = type(req.model) == "string" and find_model("copilot", req.model)
    if not m then return end
    for _, e in ipairs(endpoints_of(m)) do
      if e == endpoint then return end
    end
    local message = string.format('model "%s" is not accessible via the %s endpoint', req.model, endpoint)
    return message, json_answer(400, message, { error = { message = message, code = "unsupported_api_for_model" } })
  end },
}
local COPILOT_ENDPOINTS = { ["/chat/completions"] = true, ["/v1/messages"] = true, ["/responses"] = true,
  ["/embeddings"] = true }

-- check_account(family, path, body) -> an answer, when the account's rules
-- refuse the request; nil to go on to the API's own checks
local function check_account(family, path, body)
  local ok, req = pcall(decode, body)
  if not ok or not is_object(req) then return end -- the API's check words a bad body
  local p = path:gsub("%?.*$", "")
  if family == "codex" then
    if not p:find("/responses$") then return end
    for _, rule in ipairs(RULES.codex) do
      local message, answer = rule[2](req)
      if message then return answer or detail(400, message) end
    end
  else
    local endpoint = p:gsub("^/copilot", "")
    if not COPILOT_ENDPOINTS[endpoint] then return end
    for _, rule in ipairs(RULES.copilot) do
      local message, answer = rule[2](req, endpoint)
      if message then return answer end
    end
  end
end

local function respond(tcp, a)
  send(tcp, head(a.status, { ["content-type"] = a.ctype, ["content-length"] = #a.body }) .. a.body)
end

-- GET <anything>/models: the account's list, in its upstream's shape
local function models_answer(path)
  if family_of(path) == "codex" then
    return json_answer(200, nil, { models = #models.codex > 0 and models.codex or EMPTY })
  end
  return json_answer(200, nil, { data = #models.copilot > 0 and models.copilot or EMPTY, object = "list" })
end

local function on_request(tcp, method, path, headers, body, done, conn)
  if path == "/_mock/queue" then
    for _, s in ipairs(cjson.decode(body)) do queue[#queue + 1] = s end
    respond_json(tcp, 200, { queued = #queue })
    return done(true)
  elseif path == "/_mock/requests" then
    if #requests == 0 then -- lua-cjson writes an empty table as {}
      send(tcp, head(200, { ["content-type"] = "application/json", ["content-length"] = 2 }) .. "[]")
    else
      respond_json(tcp, 200, requests)
    end
    return done(true)
  elseif path == "/_mock/reset" then
    queue, requests, strict = {}, {}, true
    issued, nreasoning = {}, 0
    bearer = nil
    set_models()
    respond_json(tcp, 200, { ok = true })
    return done(true)
  elseif path == "/_mock/auth" then
    local ok, v = pcall(cjson.decode, body)
    bearer = ok and type(v) == "table" and type(v.bearer) == "string" and v.bearer or nil
    respond_json(tcp, 200, { bearer = bearer ~= nil })
    return done(true)
  elseif path == "/_mock/models" then
    local ok, v = pcall(decode, body)
    for _, name in ipairs { "copilot", "codex" } do
      if ok and is_object(v) and v[name] ~= nil and not is_list(v[name]) then ok = false end
    end
    if not ok or not is_object(v) then
      respond_json(tcp, 400, { error = "expected {\"copilot\": [...], \"codex\": [...]}" })
      return done(true)
    end
    local given = plain(v)
    for _, name in ipairs { "copilot", "codex" } do
      if given[name] == EMPTY then given[name] = {} end
    end
    set_models(given)
    respond_json(tcp, 200, { copilot = #models.copilot, codex = #models.codex })
    return done(true)
  elseif path == "/_mock/strict" then
    local ok, v = pcall(cjson.decode, body)
    strict = not (ok and type(v) == "table" and v.strict == false)
    respond_json(tcp, 200, { strict = strict })
    return done(true)
  end
  local record = { method = method, path = path, headers = headers, body = body, at_ms = now_ms(), conn = conn.id }
  requests[#requests + 1] = record
  conn.records[#conn.records + 1] = record
  -- a client using the mock as its HTTP(S) proxy: an absolute URL is served
  -- as any request (the daemon's http_proxy spec), a CONNECT refused
  if path:find("^%a+://") then record.proxy = true end
  if method == "CONNECT" then
    record.proxy = true
    local msg = "the mock is no proxy: " .. method .. " " .. path
    send(tcp, head(403, { ["content-type"] = "text/plain", ["content-length"] = #msg, connection = "close" }) .. msg)
    return done(false)
  end
  -- the account upstreams: a bearer other than the one set, a header they
  -- need, GET .../models (the mock's own lists, never a script)
  local family = family_of(path)
  if bearer and not authorized(path, headers) then
    local a = unauthorized(path)
    record.rejected = "unauthorized"
    respond(tcp, a)
    return done(true)
  end
  if family and strict then
    local a = check_headers(family, headers)
    if a then
      record.rejected = a.message
      respond(tcp, a)
      return done(true)
    end
  end
  if method == "GET" and (path:gsub("%?.*$", "")):find("/models$") then
    respond(tcp, models_answer(path))
    return done(true)
  end
  local api = method == "POST" and (headers["content-type"] or ""):find("^application/json") and api_of(path)
  local req
  if api and family and strict then
    local a = check_account(family, path, body)
    if a then
      record.rejected = a.message
      respond(tcp, a)
      return done(true)
    end
  end
  if api then
    local message, err
    message, err, req = check(api, headers, body)
    if message and strict then
      record.rejected = message
      respond_json(tcp, 400, err)
      return done(true)
    end
  end
  local script = table.remove(queue, 1)
  if not script then
    if not req then
      local ok, r = pcall(decode, body)
      req = ok and is_object(r) and r or {}
    end
    script = default_script(path, req)
  elseif script.reply then
    if not req then
      local ok, r = pcall(decode, body)
      req = ok and is_object(r) and r or {}
    end
    local s = reply_script(path, req, script.reply)
    s.delay_ms, s.headers = script.delay_ms, script.headers
    script = s
  end
  serve_script(tcp, script, record, done)
end

local connections = 0 -- each accepted connection's id, seen in its requests' records
local server = uv.new_tcp()
assert(server:bind("127.0.0.1", tonumber(arg[1]) or 0))
server:listen(256, function()
  local tcp = uv.new_tcp()
  server:accept(tcp)
  tcp:nodelay(true)
  local buf, busy = "", false
  connections = connections + 1
  local conn = { records = {}, id = connections }
  local function close()
    if tcp:is_closing() then return end
    local t = now_ms()
    for _, r in ipairs(conn.records) do r.closed_at_ms = r.closed_at_ms or t end
    tcp:close()
  end
  local function try_parse()
    if busy then return end
    local req, rest = parse_request(buf)
    if not req then return end
    buf = rest
    busy = true
    on_request(tcp, req.method, req.target, req.headers, req.body, function(keep)
      busy = false
      if keep then return try_parse() end
      -- hang up once every byte written is out (a big answer may still
      -- wait in the write queue)
      if tcp:is_closing() then return end
      if not tcp:shutdown(close) then close() end
    end, conn)
  end
  tcp:read_start(function(err, data)
    if err or not data then return close() end
    buf = buf .. data
    try_parse()
  end)
end)
io.stdout:write("mock listening on ", server:getsockname().port, "\n")
io.stdout:flush()
uv.run()
