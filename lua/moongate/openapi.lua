-- The OpenAPI 3.1 document of what the daemon serves (GET /openapi.json,
-- rendered by GET /docs). It is made from the tables the daemon routes by,
-- so it cannot drift from them: the app's routes (app.routes, app.wild),
-- each front door's descriptor (routes, prefixes, fields, stream_kind,
-- request_headers, client) and the error shapes the front doors register
-- (errors.lua). What this module knows besides is words and the response
-- shapes; a route it has no words for is still listed, as a bare operation.
-- Pure: no luv, no moongate.core (the caller hands over the version).
local json = require "moongate.json"
local errors = require "moongate.errors"

local M = {}

local null = json.null
local empty = json.empty_array -- encode with M.encode (json.encode_raw)

-- Paths ----------------------------------------------------------------------

-- the paths that need no inbound key (app.lua's open_paths)
M.open_paths = { ["/"] = true, ["/health"] = true, ["/docs"] = true }

-- what App:handle serves that no route table holds: one model by id (any
-- GET under /v1/models/, as "GET /v1/models/*" would be)
M.handled_in_code = { "GET /v1/models/*" }

-- the path parameter a wildcard route takes, by its prefix
local param_names = { ["/v1/models/"] = "model_id", ["/v1/responses/"] = "response_id", ["/ws/"] = "client_id" }

--- path_of(path_with_star) -> OpenAPI path, parameter name | nil
-- "/v1/responses/*" -> "/v1/responses/{response_id}", "response_id"
function M.path_of(p)
  local prefix = p:match("^(.-/)%*$")
  if not prefix then return p end
  local name = param_names[prefix] or "id"
  return prefix .. "{" .. name .. "}", name
end

--- unprefixed(frontdoors) -> the path prefixes (after /v1) clients also
-- reach without /v1, and the exact paths: app.lua's normalize()
function M.unprefixed(frontdoors)
  local list = { "/models/" }
  for _, fd in ipairs(frontdoors or {}) do
    for _, p in ipairs(fd.prefixes or {}) do list[#list + 1] = p end
  end
  return list, { ["/models"] = true }
end

--- alias(path, frontdoors) -> the same endpoint without /v1, or nil
function M.alias(path, frontdoors)
  if path:sub(1, 4) ~= "/v1/" then return nil end
  local rest = path:sub(4)
  local prefixes, exact = M.unprefixed(frontdoors)
  if exact[rest] then return rest end
  for _, p in ipairs(prefixes) do
    if rest:sub(1, #p) == p then return rest end
  end
end

-- Request fields ---------------------------------------------------------------

local S = { string = { type = "string" }, number = { type = "number" }, integer = { type = "integer" },
  boolean = { type = "boolean" }, object = { type = "object" }, array = { type = "array", items = {} } }
local function one_of(...) return { anyOf = { ... } } end
local strings = { type = "array", items = S.string }
local messages = { type = "array", items = { type = "object", properties = { role = S.string } } }

-- the JSON type of a request field, by name (and by client, where front
-- doors use a name differently); a field not named here takes any value
local field_types = {
  model = S.string, messages = messages, stream = S.boolean, stream_options = S.object,
  temperature = S.number, top_p = S.number, frequency_penalty = S.number, presence_penalty = S.number,
  top_k = S.integer, seed = S.integer, n = S.integer,
  best_of = S.integer, max_tokens = S.integer, max_completion_tokens = S.integer,
  max_output_tokens = S.integer, max_tool_calls = S.integer, top_logprobs = S.integer,
  stop = one_of(S.string, strings), stop_sequences = strings,
  tools = S.array, functions = S.array, include = strings, images = strings, context = { type = "array", items = S.integer },
  modalities = strings, mcp_servers = S.array,
  tool_choice = one_of(S.string, S.object), function_call = one_of(S.string, S.object),
  metadata = S.object, response_format = S.object, reasoning = S.object, text = S.object, thinking = S.object,
  output_config = S.object, output_format = S.object, options = S.object, prediction = S.object, audio = S.object,
  web_search_options = S.object, logit_bias = S.object, context_management = S.object, client_metadata = S.object,
  prompt_cache_options = S.object,
  user = S.string, instructions = S.string, previous_response_id = S.string, prompt_cache_key = S.string,
  prompt_cache_retention = S.string, safety_identifier = S.string, service_tier = S.string, truncation = S.string,
  reasoning_effort = S.string, verbosity = S.string, suffix = S.string, template = S.string, inference_geo = S.string,
  parallel_tool_calls = S.boolean, store = S.boolean, background = S.boolean, echo = S.boolean, raw = S.boolean,
  truncate = S.boolean, shift = S.boolean, _debug_render_only = S.boolean,
  keep_alive = one_of(S.string, S.number), conversation = one_of(S.string, S.object),
  system = one_of(S.string, { type = "array", items = S.object }),
  input = one_of(S.string, S.array), prompt = one_of(S.string, S.array), logprobs = S.boolean,
}
local client_field_types = {
  completions = { logprobs = S.integer },
  responses = { prompt = S.object },
  embeddings = { input = one_of(S.string, strings, { type = "array", items = S.integer },
    { type = "array", items = { type = "array", items = S.integer } }) },
  ollama = { system = S.string, prompt = S.string, format = one_of(S.string, S.object),
    think = one_of(S.boolean, { type = "string", enum = { "low", "medium", "high" } }) },
}

-- the fields a request must have, by route
local required = {
  ["POST /v1/chat/completions"] = { "model", "messages" },
  ["POST /v1/messages"] = { "model", "messages", "max_tokens" },
  ["POST /v1/messages/count_tokens"] = { "model", "messages" },
  ["POST /v1/responses"] = { "model" },
  ["POST /v1/completions"] = { "model", "prompt" },
  ["POST /v1/embeddings"] = { "model", "input" },
  ["POST /api/chat"] = { "model" },
  ["POST /api/generate"] = { "model" },
}

-- a minimal request, by route (model: a model the gateway routes)
local examples = {
  ["POST /v1/chat/completions"] = function(m) return { model = m, messages = { { role = "user", content = "Hello" } } } end,
  ["POST /v1/messages"] = function(m) return { model = m, max_tokens = 256, messages = { { role = "user", content = "Hello" } } } end,
  ["POST /v1/messages/count_tokens"] = function(m) return { model = m, messages = { { role = "user", content = "Hello" } } } end,
  ["POST /v1/responses"] = function(m) return { model = m, input = "Hello" } end,
  ["POST /v1/completions"] = function(m) return { model = m, prompt = "Hello" } end,
  ["POST /v1/embeddings"] = function(m) return { model = m, input = "Hello" } end,
  ["POST /api/chat"] = function(m) return { model = m, messages = { { role = "user", content = "Hello" } }, stream = false } end,
  ["POST /api/generate"] = function(m) return { model = m, prompt = "Hello", stream = false } end,
  ["POST /api/show"] = function(m) return { model = m } end,
}
M.required, M.examples = required, examples

local fates = {
  mapped = "Carried to an upstream of any format.",
  drop = "Passed on to an upstream of this API's own format; dropped when the request is translated for another.",
}

local function copy(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do out[k] = copy(v) end
  return out
end

local function sorted_keys(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = k end
  table.sort(list)
  return list
end

--- body_schema(fd, fields, key) -> the JSON Schema of a front door's request
-- body: every field of fd.fields (or the endpoint's own fields table), typed,
-- with what becomes of it when the request is translated
function M.body_schema(fd, fields, key, exchange)
  local props = {}
  local types = client_field_types[fd.client] or {}
  for _, name in ipairs(sorted_keys(fields)) do
    local fate = fields[name]
    local s = copy(types[name] or field_types[name] or {})
    s.description = fates[fate] or ("Passed on to an upstream of this API's own format; refused (400) when "
      .. "the request is translated: " .. tostring(fate) .. ".")
    props[name] = s
  end
  local s = { type = "object", properties = props }
  local req = required[key]
  if req then
    s.required = copy(req)
    for _, name in ipairs(req) do -- a front door that names no fields (embeddings: never translated)
      if not props[name] then
        props[name] = copy(types[name] or field_types[name] or {})
        props[name].description = "Passed on as it came: this API's requests are never translated."
      end
    end
  end
  -- Ollama's requests are always translated: an unknown field is refused
  if exchange and fd.client == "ollama" then s.additionalProperties = false end
  return s
end

-- Response shapes ---------------------------------------------------------------

local function obj(props, req, extra)
  local s = { type = "object", properties = props }
  if req and #req > 0 then s.required = req end
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end
local function ref(name) return { ["$ref"] = "#/components/schemas/" .. name } end
local function const(v) return { type = "string", const = v } end
local nullable_string = { type = { "string", "null" } }
local count = { type = "integer", minimum = 0 }

local openai_usage = obj({ prompt_tokens = count, completion_tokens = count, total_tokens = count,
  prompt_tokens_details = S.object, completion_tokens_details = S.object },
  { "prompt_tokens", "completion_tokens", "total_tokens" })
local tool_call = obj({ id = S.string, type = const("function"),
  ["function"] = obj({ name = S.string, arguments = S.string }) })

local shapes = {
  Root = obj({ name = const("moongate"), version = S.string,
    links = { type = "object", additionalProperties = S.string } }, { "name", "version", "links" }),
  Health = obj({ status = const("ok"), version = S.string, auth = { type = "string", enum = { "keys", "none" } },
    uptime = S.number, workers = S.integer, thread = S.integer, ws_pool = S.object, reload = S.object },
    { "status", "version", "auth", "uptime", "workers" }),
  Stats = obj({ ws_pool = S.object, response_store = S.object, reload = S.object, accounts = S.object,
    discovery = S.object }, { "ws_pool" }, { additionalProperties = true,
    description = "Counters: requests, open requests and streams, bytes buffered now and at peak, "
      .. "client disconnects, Lua errors, dropped log lines; the WS worker pool, the response store, "
      .. "the last reload, and the pools of accounts and keys (names and counts, never a credential)." }),
  Model = obj({ id = S.string, object = const("model"), created = S.integer, owned_by = S.string,
    type = const("model"), display_name = S.string, created_at = { type = "string", format = "date-time" } },
    { "id", "object", "created", "owned_by" }),
  ModelList = obj({ object = const("list"), data = { type = "array", items = ref("Model") },
    has_more = S.boolean, first_id = nullable_string, last_id = nullable_string }, { "object", "data" }),
  CountTokens = obj({ input_tokens = count }, { "input_tokens" }),
  ChatCompletion = obj({ id = S.string, object = const("chat.completion"), created = S.integer, model = S.string,
    system_fingerprint = nullable_string,
    choices = { type = "array", items = obj({ index = S.integer,
      message = obj({ role = const("assistant"), content = nullable_string, refusal = nullable_string,
        reasoning_content = S.string, tool_calls = { type = "array", items = tool_call } }, { "role" }),
      logprobs = {}, finish_reason = S.string }, { "index", "message", "finish_reason" }) },
    usage = openai_usage }, { "id", "object", "created", "model", "choices" }),
  ChatCompletionChunk = obj({ id = S.string, object = const("chat.completion.chunk"), created = S.integer,
    model = S.string, choices = { type = "array", items = obj({ index = S.integer,
      delta = obj({ role = S.string, content = nullable_string, reasoning_content = S.string,
        tool_calls = S.array }), logprobs = {}, finish_reason = nullable_string }) },
    usage = openai_usage }, { "id", "object", "choices" },
    { description = "One `data:` line of the stream; the stream ends with `data: [DONE]`. With "
      .. "stream_options.include_usage, a last chunk with no choices carries the usage." }),
  TextCompletion = obj({ id = S.string, object = const("text_completion"), created = S.integer, model = S.string,
    choices = { type = "array", items = obj({ index = S.integer, text = S.string, logprobs = {},
      finish_reason = nullable_string }, { "index", "text" }) }, usage = openai_usage },
    { "id", "object", "created", "model", "choices" },
    { description = "The whole answer, and (streamed) each `data:` line; the stream ends with `data: [DONE]`." }),
  EmbeddingList = obj({ object = const("list"), model = S.string,
    data = { type = "array", items = obj({ object = const("embedding"), index = S.integer,
      embedding = one_of({ type = "array", items = S.number }, S.string) }, { "index", "embedding" }) },
    usage = obj({ prompt_tokens = count, total_tokens = count }) }, { "data" },
    { description = "The upstream's answer as it came (embeddings are never translated)." }),
  AnthropicMessage = obj({ id = S.string, type = const("message"), role = const("assistant"), model = S.string,
    content = { type = "array", items = obj({ type = S.string, text = S.string, thinking = S.string,
      id = S.string, name = S.string, input = S.object }, { "type" }) },
    stop_reason = nullable_string, stop_sequence = nullable_string,
    usage = obj({ input_tokens = count, output_tokens = count, cache_creation_input_tokens = count,
      cache_read_input_tokens = count }, { "input_tokens", "output_tokens" }) },
    { "id", "type", "role", "model", "content", "stop_reason", "usage" }),
  AnthropicStreamEvent = obj({ type = { type = "string", enum = { "message_start", "content_block_start",
    "content_block_delta", "content_block_stop", "message_delta", "message_stop", "ping", "error" } },
    index = S.integer, message = ref("AnthropicMessage"), content_block = S.object, delta = S.object,
    usage = S.object, error = S.object }, { "type" },
    { description = "One event of the stream: an `event:` line naming its type, then its `data:` line." }),
  Response = obj({ id = S.string, object = const("response"), created_at = S.integer,
    status = { type = "string", enum = { "completed", "incomplete", "failed", "in_progress", "queued", "cancelled" } },
    model = S.string, output = { type = "array", items = obj({ type = S.string, id = S.string }, { "type" }) },
    output_text = S.string, error = { type = { "object", "null" } }, incomplete_details = { type = { "object", "null" } },
    usage = { type = { "object", "null" }, properties = { input_tokens = count, output_tokens = count, total_tokens = count } },
    previous_response_id = nullable_string, store = S.boolean },
    { "id", "object", "created_at", "status", "model", "output" }, { additionalProperties = true,
    description = "A response object; the request's own settings are echoed in it as OpenAI's API does." }),
  ResponseStreamEvent = obj({ type = S.string, sequence_number = S.integer, response = ref("Response"),
    item = S.object, item_id = S.string, output_index = S.integer, content_index = S.integer, delta = S.string },
    { "type" }, { description = "One event of the stream (`event:` and `data:` lines): response.created, "
      .. "response.in_progress, response.output_item.added, response.output_text.delta, ..., response.completed "
      .. "(or response.incomplete, response.failed, error)." }),
  ResponseDeleted = obj({ id = S.string, object = const("response.deleted"), deleted = S.boolean },
    { "id", "object", "deleted" }),
}
local ollama_stats = { total_duration = S.integer, load_duration = S.integer, prompt_eval_count = count,
  prompt_eval_duration = S.integer, eval_count = count, eval_duration = S.integer }
local function with_stats(props)
  for k, v in pairs(ollama_stats) do props[k] = v end
  return props
end
shapes.OllamaChatResponse = obj(with_stats { model = S.string, created_at = S.string,
  message = obj({ role = S.string, content = S.string, thinking = S.string, tool_calls = S.array }, { "role", "content" }),
  done = S.boolean, done_reason = S.string }, { "model", "created_at", "message", "done" },
  { description = "The whole answer, and each line of the NDJSON stream (done: false until the last line, "
    .. "which has done_reason, the token counts and the durations in nanoseconds)." })
shapes.OllamaGenerateResponse = obj(with_stats { model = S.string, created_at = S.string, response = S.string,
  thinking = S.string, done = S.boolean, done_reason = S.string }, { "model", "created_at", "response", "done" },
  { description = shapes.OllamaChatResponse.description })
local ollama_details = obj({ parent_model = S.string, format = S.string, family = S.string, families = strings,
  parameter_size = S.string, quantization_level = S.string })
shapes.OllamaTags = obj({ models = { type = "array", items = obj({ name = S.string, model = S.string,
  modified_at = S.string, size = S.integer, digest = S.string, details = ollama_details }, { "name", "model" }) } },
  { "models" })
shapes.OllamaShow = obj({ modelfile = S.string, parameters = S.string, template = S.string, details = ollama_details,
  model_info = S.object, capabilities = strings, modified_at = S.string }, { "details", "capabilities" })
shapes.OllamaVersion = obj({ version = S.string }, { "version" })
shapes.OllamaPs = obj({ models = S.array }, { "models" })
M.shapes = shapes

-- each front door's answers: the whole one, and one event of its stream
local answers = {
  openai = { whole = "ChatCompletion", event = "ChatCompletionChunk", title = "OpenAI chat completions" },
  anthropic = { whole = "AnthropicMessage", event = "AnthropicStreamEvent", title = "Anthropic messages" },
  responses = { whole = "Response", event = "ResponseStreamEvent", title = "OpenAI Responses" },
  completions = { whole = "TextCompletion", event = "TextCompletion", title = "OpenAI legacy completions" },
  embeddings = { whole = "EmbeddingList", title = "OpenAI embeddings" },
  ollama = { title = "Ollama API" },
}
local ollama_answers = {
  ["POST /api/chat"] = { whole = "OllamaChatResponse", event = "OllamaChatResponse" },
  ["POST /api/generate"] = { whole = "OllamaGenerateResponse", event = "OllamaGenerateResponse" },
}

local stream_types = {
  sse = "text/event-stream",
  ndjson = "application/x-ndjson",
}

-- Operations ------------------------------------------------------------------

-- the words and answers of the routes that are not a front door's "serve",
-- by route key
local known = {
  ["GET /"] = { tag = "gateway", summary = "What this is",
    description = "The gateway's name, version and main endpoints, so a probe gets a 200 "
      .. "(Claude Code sends HEAD / when it starts).", answer = "Root" },
  ["GET /health"] = { tag = "gateway", summary = "Health",
    description = "Liveness, version, whether inbound keys are asked for, uptime, worker threads (thread: the one "
      .. "that answered), the WS worker pool and the last reload's outcome.", answer = "Health" },
  ["GET /stats"] = { tag = "gateway", summary = "Counters", answer = "Stats",
    description = "What this worker thread and the daemon count (see the schema)." },
  ["GET /v1/models"] = { tag = "gateway", summary = "List models", answer = "ModelList",
    description = "The models the routes serve, in a shape both OpenAI's and Anthropic's SDKs read." },
  ["GET /v1/models/*"] = { tag = "gateway", summary = "One model", answer = "Model",
    description = "A model the routes serve, by id (percent-decoded: the SDKs send org/model as org%2Fmodel). "
      .. "An unknown id is a 404, in Anthropic's format when the request has anthropic-version." },
  ["GET /metrics"] = { tag = "gateway", summary = "Prometheus metrics",
    description = "Requests, durations, tokens, retries, streams, gate queues and the WS pool, in the Prometheus "
      .. "text format.", media = "text/plain", schema = S.string },
  ["GET /openapi.json"] = { tag = "gateway", summary = "This document",
    description = "The OpenAPI 3.1 document of every endpoint the daemon serves.",
    media = "application/json", schema = { type = "object", description = "An OpenAPI 3.1 document." } },
  ["GET /docs"] = { tag = "gateway", summary = "API documentation page",
    description = "One self-contained HTML page that renders /openapi.json in a browser, with nothing "
      .. "fetched from anywhere else.", media = "text/html", schema = S.string },
  ["POST /v1/messages/count_tokens"] = { summary = "Count tokens", answer = "CountTokens",
    description = "The prompt's tokens: the first provider's own count when it has one, else an estimate "
      .. "(4 bytes a token). A model no route serves is a 404, as /v1/messages answers.", body = true },
  ["GET /v1/responses/*"] = { summary = "Get a stored response", answer = "Response",
    description = "A response from the gateway's own store (store: true), as the client with this key stored it." },
  ["DELETE /v1/responses/*"] = { summary = "Delete a stored response", answer = "ResponseDeleted",
    description = "Removes a response from the gateway's store." },
  ["GET /api/tags"] = { summary = "Ollama: list models", answer = "OllamaTags",
    description = "The models the routes serve, as Ollama lists its local models." },
  ["POST /api/show"] = { summary = "Ollama: show a model", answer = "OllamaShow", body = true,
    description = "A model's details and capabilities (by its route's first provider)." },
  ["GET /api/version"] = { summary = "Ollama: version", answer = "OllamaVersion",
    description = "The Ollama release whose API this front door follows." },
  ["GET /api/ps"] = { summary = "Ollama: loaded models", answer = "OllamaPs",
    description = "The models loaded in memory: none (the upstreams hold them)." },
}
M.known = known

local function op_id(method, path)
  local id = (method:lower() .. path:gsub("[^%w]+", "_")):gsub("_+$", "")
  return id
end

local function json_content(schema, example)
  return { ["application/json"] = { schema = schema, example = example } }
end

-- infer(v) -> a JSON Schema of a value's shape (null: a string or null)
local function infer(v)
  if v == null then return { type = { "string", "null" } } end
  local t = type(v)
  if t == "table" then
    local props, req = {}, {}
    for k, x in pairs(v) do props[k] = infer(x); req[#req + 1] = k end
    table.sort(req)
    return { type = "object", properties = props, required = req }
  end
  if t == "number" then return { type = v % 1 == 0 and "integer" or "number" } end
  return { type = t }
end

local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

--- error_object(client) -> the error body a client of that format gets
function M.error_object(client)
  return errors.object(client, errors.new(400, "A message saying what was wrong."))
end

local Doc = {}
Doc.__index = Doc

--- error_ref(client) -> $ref, example: the error answer of a client format,
-- named in components (Error_<client>; a client whose shape is another's
-- shares its schema)
function Doc:error_ref(client)
  local example = M.error_object(client)
  local schema = infer(example)
  for name, s in pairs(self.error_schemas) do
    if same(s, schema) then return ref(name), example end
  end
  local name = "Error_" .. client
  self.error_schemas[name] = schema
  self.doc.components.schemas[name] = json.with(schema, "description",
    "An error, in the format " .. client .. " clients read.")
  return ref(name), example
end

-- the error answers of an operation: the statuses every request may meet
-- (and those of a request with a body), in its client's format
function Doc:errors_for(client, with_body, secured)
  local schema, example = self:error_ref(client)
  local function e(desc) return { description = desc, content = json_content(schema, example) } end
  local out = {
    ["403"] = e("Refused: a page from an Origin that may not call the gateway, a Host that is not one of its "
      .. "names (on loopback), or a key that may not use the model."),
    default = e("An error (the gateway's or the upstream's), in this endpoint's client format."),
  }
  if secured then out["401"] = e("Missing or invalid API key (only when the gateway has inbound keys).") end
  if with_body then
    out["400"] = e("The request is malformed, or asks what the route's upstream cannot do.")
    out["404"] = e("No route serves the model.")
    out["413"] = e("The request body is too large (max_body_bytes), or decodes to too much.")
    out["429"] = e("Rate limited, or the queue for the provider is full or timed out (retry-after says when).")
  end
  return out
end

-- parameters: the request headers a front door reads (the auth headers are
-- the security schemes)
local auth_headers = { authorization = true, ["x-api-key"] = true, ["x-goog-api-key"] = true }
local function header_params(fd)
  local out = {}
  for _, h in ipairs(fd and fd.request_headers or {}) do
    if not auth_headers[h] then
      out[#out + 1] = { name = h, ["in"] = "header", required = false, schema = S.string,
        description = "Read by the " .. fd.client .. " front door and passed on to an upstream of its format." }
    end
  end
  return out
end

function Doc:operation(method, key, path, fd, how)
  local info = known[key] or {}
  local client = fd and fd.client or errors.client_for_path(path)
  local secured = not M.open_paths[path]
  -- a front door's exchange: its shared "serve", or a POST of its own
  -- (Ollama's chat and generate) that the words above do not describe
  if fd and (how == "serve" or (method == "POST" and not known[key])) then how = "serve" end
  local op = { operationId = op_id(method, path), tags = { info.tag or (fd and fd.client) or "gateway" } }
  op.summary = info.summary or (how == "serve" and fd and answers[fd.client] and answers[fd.client].title) or key
  op.description = info.description
  local params = header_params(fd)
  if #params > 0 then op.parameters = params end
  if not secured then op.security = { {} } end
  local responses = self:errors_for(client, how == "serve" or info.body, secured)
  if how == "serve" then
    local fields = fd.fields or {}
    local endpoint = path:match("([%w_]+)$")
    if endpoint and fd[endpoint .. "_fields"] then fields = fd[endpoint .. "_fields"] end
    local example = examples[key] and examples[key](self.model)
    op.requestBody = { required = true, content = json_content(M.body_schema(fd, fields, key, true), example) }
    local a = ollama_answers[key] or answers[fd.client] or {}
    local ok = { description = "The answer." }
    ok.content = a.whole and json_content(ref(a.whole)) or { ["application/json"] = { schema = S.object } }
    local kind = stream_types[fd.stream_kind or ""]
    if kind and a.event then
      ok.description = fd.stream_kind == "ndjson"
        and "The answer: a stream of NDJSON lines unless the request says stream: false, else the whole answer."
        or "The whole answer, or with stream: true a stream of server-sent events."
      ok.content[kind] = { schema = { type = "string",
        description = "Each " .. (fd.stream_kind == "ndjson" and "line" or "event's data") .. " is a JSON object: "
          .. a.event .. " (components/schemas)." }, ["x-moongate-event"] = ref(a.event) }
    end
    responses["200"] = ok
    op.description = op.description or string.format("%s. Routed by its model to a provider (translated when "
      .. "the provider speaks another format); the request fields below say what becomes of each then.%s",
      op.summary, fd.client == "ollama" and " Every Ollama request is translated." or "")
  else
    if info.body then
      local schema
      if key == "POST /api/show" then
        schema = obj({ model = S.string, name = { type = "string", description = "The same as model (older clients)." } },
          nil, { description = "The model, as model or name." })
      else
        schema = M.body_schema(fd or { client = client }, fd and fd.fields or { model = "mapped" }, key)
      end
      op.requestBody = { required = true, content = json_content(schema, examples[key] and examples[key](self.model)) }
    end
    local content
    if info.answer then content = json_content(ref(info.answer))
    elseif info.media then content = { [info.media] = { schema = info.schema } }
    else content = { ["application/json"] = { schema = {} } } end
    responses["200"] = { description = "The answer.", content = content }
  end
  op.responses = responses
  return op
end

-- HEAD: GET's status and headers (content-length included), never a body
local function head_of(get)
  local responses = {}
  for status, r in pairs(get.responses) do responses[status] = { description = r.description .. " (headers only)" } end
  return { operationId = "head" .. get.operationId:sub(4), tags = get.tags, summary = get.summary .. " (headers only)",
    description = "GET's status and headers, content-length included, and no body.", parameters = get.parameters,
    security = get.security, responses = responses }
end

-- OPTIONS: CORS preflights (and a plain OPTIONS), on every path, no key asked
local function options_of(path, tags)
  local h = function(d) return { description = d, schema = S.string } end
  return { operationId = op_id("options", path), tags = tags, summary = "CORS preflight",
    description = "From an allowed Origin (cors.allowed_origins; by default pages served from this machine): 204 "
      .. "with what it may send. Without Origin: 204 with Allow. From any other Origin: 403. No key is asked.",
    security = { {} },
    responses = {
      ["204"] = { description = "Allowed.", headers = {
        allow = h("GET, HEAD, POST, DELETE, OPTIONS"),
        ["access-control-allow-methods"] = h("The methods (to an allowed Origin)."),
        ["access-control-allow-headers"] = h("What Access-Control-Request-Headers asked, or the headers the APIs use."),
        ["access-control-max-age"] = h("86400"),
      } },
      ["403"] = { description = "The Origin may not call the gateway." },
    } }
end

local function websocket_ops(self)
  local upgrade = { name = "upgrade", ["in"] = "header", required = true,
    schema = { type = "string", const = "websocket" }, description = "A WebSocket upgrade (with Connection: Upgrade)." }
  local function ws(path, summary, description, params, path_params)
    local list = { upgrade }
    for _, p in ipairs(params) do list[#list + 1] = p end
    local get = { operationId = op_id("get", path), tags = { "websocket" }, summary = summary,
      description = description .. " See docs/WEBSOCKETS.md for the messages.", parameters = list,
      responses = {
        ["101"] = { description = "Switching to the WebSocket protocol. A refused socket opens and closes at once with "
          .. "close code 4000 + the HTTP status (4401, 4403, 4404) and the reason." },
        ["426"] = { description = "A plain HTTP request (no Upgrade: websocket).",
          headers = { upgrade = { schema = const("websocket") } },
          content = json_content(self:error_ref("openai")) },
      } }
    if not self.keys then get.security = { {} } end
    get.security = get.security or { { bearer = empty }, { x_api_key = empty }, { key_query = empty } }
    local head = { operationId = op_id("head", path), tags = get.tags, summary = summary .. " (headers only)",
      description = "No upgrade: 426's headers, no body.", security = get.security,
      responses = { ["426"] = { description = "Not a WebSocket upgrade (headers only)." } } }
    return { get = get, head = head, options = options_of(path, { "websocket" }), parameters = path_params }
  end
  local key_q = { name = "key", ["in"] = "query", required = false, schema = S.string,
    description = "The inbound key, for a browser (which cannot set headers on a WebSocket)." }
  self.doc.paths["/ws"] = ws("/ws", "WS worker pool",
    "Workers (a browser tab, an agent) dial in here and serve models with the AIProxy protocol. With "
      .. "websocket.worker_token, a worker presents it as Authorization: Bearer or ?token=; without it, only "
      .. "workers on this machine may join.",
    { { name = "token", ["in"] = "query", required = false, schema = S.string, description = "websocket.worker_token." } })
  self.doc.paths["/ws/{client_id}"] = ws("/ws/{client_id}", "Chat socket",
    "A chat socket (the AI WebSocket service protocol): chat_message in, answers streamed back, routed like any HTTP request.",
    { key_q }, { { name = "client_id", ["in"] = "path", required = true,
      schema = { type = "string", pattern = "^[A-Za-z0-9._~-]+$" }, example = "my-client" } })
end

--- routes_of(src) -> list of {method, key, path (with *)}: every route of an
-- app (app.routes, app.wild) or of a plain table of route keys, and those
-- App:handle serves in code, sorted
function M.routes_of(src)
  local list, seen = {}, {}
  local function add(key)
    if seen[key] then return end
    seen[key] = true
    local m, p = key:match("^(%S+) (/.*)$")
    if m then list[#list + 1] = { method = m, key = key, path = p } end
  end
  local routes = type(src.routes) == "table" and src.routes or src
  for key in pairs(routes) do if type(key) == "string" then add(key) end end
  for _, w in ipairs(type(src.wild) == "table" and src.wild or {}) do add(w.method .. " " .. w.prefix .. "*") end
  if seen["GET /v1/models"] then
    for _, key in ipairs(M.handled_in_code) do add(key) end
  end
  table.sort(list, function(a, b) return a.key < b.key end)
  return list
end

--- document(src [, opts]) -> the OpenAPI 3.1 document (a Lua table: encode
-- it with M.encode). src: an app (its routes, wild, keys, router) or a table
-- of route keys ("GET /x", "GET /prefix/*"); opts: {frontdoors = list (the
-- app's, app.lua's M.frontdoors), version = string, keys = bool (inbound
-- keys asked for), model = a model id for the examples}
function M.document(src, opts)
  opts = opts or {}
  local frontdoors = opts.frontdoors or {}
  local keys = opts.keys
  if keys == nil then keys = src.keys ~= nil and type(src.routes) == "table" end
  local model = opts.model
  if not model and type(src.router) == "table" and src.router.models then
    local ok, list = pcall(src.router.models, src.router)
    model = ok and type(list) == "table" and list[1] or nil
  end
  model = model or "my-model"

  local doc = {
    openapi = "3.1.0",
    info = { title = "moongate", version = opts.version or "unknown",
      description = "An LLM gateway: the OpenAI, Anthropic, OpenAI Responses and Ollama APIs in front of any "
        .. "provider the routes name. Every endpoint this daemon serves is listed here, made from the tables it "
        .. "routes by. Paths under /v1 are also served without /v1 where a client configured with a base URL "
        .. "without it would ask them (x-moongate-alias-of)." },
    paths = {},
    components = { schemas = {}, securitySchemes = {
      bearer = { type = "http", scheme = "bearer", description = "An inbound key as Authorization: Bearer." },
      x_api_key = { type = "apiKey", ["in"] = "header", name = "x-api-key", description = "An inbound key (Anthropic's header)." },
      x_goog_api_key = { type = "apiKey", ["in"] = "header", name = "x-goog-api-key", description = "An inbound key." },
      key_query = { type = "apiKey", ["in"] = "query", name = "key", description = "An inbound key, on WebSocket upgrades only." },
    } },
    tags = { { name = "gateway", description = "The gateway's own endpoints." } },
  }
  -- with inbound keys, every endpoint but / and /health wants one; without, none
  doc.security = { { bearer = empty }, { x_api_key = empty }, { x_goog_api_key = empty } }
  if not keys then doc.security[#doc.security + 1] = {} end
  for name, s in pairs(shapes) do doc.components.schemas[name] = s end
  local self = setmetatable({ doc = doc, model = model, keys = keys, error_schemas = {} }, Doc)

  -- the front door of each route key, and how it serves it
  local owner, how = {}, {}
  for _, fd in ipairs(frontdoors) do
    doc.tags[#doc.tags + 1] = { name = fd.client, description = (answers[fd.client] or {}).title }
    for key, h in pairs(fd.routes or {}) do owner[key], how[key] = fd, h end
  end
  doc.tags[#doc.tags + 1] = { name = "websocket", description = "WebSocket endpoints (docs/WEBSOCKETS.md)." }

  self:error_ref("openai") -- the default shape, named first
  for _, r in ipairs(M.routes_of(src)) do
    local path, param = M.path_of(r.path)
    local fd = owner[r.key]
    local item = doc.paths[path] or {}
    doc.paths[path] = item
    if param then -- on the path, for every method
      item.parameters = { { name = param, ["in"] = "path", required = true, schema = S.string,
        example = param == "model_id" and model or "resp_0123456789abcdef",
        description = param == "model_id" and "A model id, percent-encoded as the SDKs send it." or nil } }
    end
    local op = self:operation(r.method, r.key, path, fd, how[r.key])
    item[r.method:lower()] = op
    if r.method == "GET" then item.head = head_of(op) end
    item.options = item.options or options_of(path, op.tags)
  end
  websocket_ops(self)

  -- the same endpoints without /v1 (app.lua's normalize)
  local aliases = {}
  for path, item in pairs(doc.paths) do
    local alias = M.alias(path, frontdoors)
    if alias and not doc.paths[alias] then
      local copyitem = { ["x-moongate-alias-of"] = path }
      for method, op in pairs(item) do
        if method == "parameters" then
          copyitem.parameters = op
        else
          local o = json.with(op, "operationId", op_id(method, alias))
          o.summary = op.summary .. " (without /v1)"
          copyitem[method] = o
        end
      end
      aliases[alias] = copyitem
    end
  end
  for alias, item in pairs(aliases) do doc.paths[alias] = item end
  return doc
end

--- encode(doc) -> JSON text
function M.encode(doc)
  return json.encode_raw(doc)
end

--- operations(doc) -> list of {method, path} (upper-case methods), sorted
function M.operations(doc)
  local out = {}
  for path, item in pairs(doc.paths) do
    for method in pairs(item) do
      if not method:find("^x%-") and method ~= "parameters" then out[#out + 1] = { method = method:upper(), path = path } end
    end
  end
  table.sort(out, function(a, b) return a.path .. a.method < b.path .. b.method end)
  return out
end

return M
