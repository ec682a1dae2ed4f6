-- A capture server for finding out what a Responses client (Codex CLI)
-- sends: it records every request (method, path, headers, body - the body
-- decompressed when it came with content-encoding zstd, gzip or deflate) and
-- answers POST .../responses with a scripted Responses event stream, the
-- way the real API streams one, so the client completes its turn.
-- Run: luajit spec/support/capture.lua OUTDIR [port]
-- It prints "capture listening on PORT" once it listens.
--
-- OUTDIR/script.json (optional, read at each request): a JSON list of
-- replies, the n-th served to the n-th POST .../responses since the file
-- was last written:
--   {"text": "...", "tool_calls": [{"call_id", "name", "arguments": "{...}"}],
--    "reasoning": {"summary": "...", "encrypted_content": "..."},
--    "custom_calls": [{"call_id", "name", "input": "..."}], "status": 500,
--    "omit": ["response.completed", ...], "strip": ["sequence_number", ...],
--    "no_usage": true, "finish": "response.failed" | "response.incomplete",
--    "no_event_lines": true}
-- status: answer that HTTP error instead. To learn what the client needs
-- of a stream: omit leaves those events out, strip those fields out of
-- every event, no_usage the usage, no_event_lines the `event:` lines;
-- finish ends with that event instead of response.completed. Past the end
-- of the list, or with no script, it answers "ok".
-- For request n it writes OUTDIR/NNN.json: {method, path, headers,
-- content_encoding, raw_bytes, body (the decoded body text)}.
-- Other requests (GET /models, a websocket upgrade, ...) are recorded and
-- answered 404, so a client that needs them shows it.
package.path = "lua/?.lua;" .. package.path
local uv = require "luv"
local cjson = require "cjson"
local json = require "moongate.json" -- encode_raw: an empty list as []

local outdir = assert(arg[1], "usage: capture.lua OUTDIR [port]")
local count, posts, last_script = 0, 0, nil

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- the body as the client meant it: decompressed by the command line tool
-- of its content-encoding
local function decoded(body, encoding)
  local tool = ({ zstd = "zstd -dcq", gzip = "gzip -dc", deflate = "zlib-flate -uncompress" })[encoding or ""]
  if not tool or body == "" then return body end
  local tmp = os.tmpname()
  write_file(tmp, body)
  local p = assert(io.popen(tool .. " < " .. tmp .. " 2>/dev/null"))
  local out = p:read("*a")
  p:close()
  os.remove(tmp)
  return out
end

---------------------------------------------------------------------------
-- the Responses event stream for one reply
---------------------------------------------------------------------------
-- lua-cjson writes an empty table as {}: an empty list goes out as []
local function list(t) return next(t) == nil and json.empty_array or t end

local function stream_for(model, r, n)
  local seq, frames, output = -1, {}, {}
  local rid = string.format("resp_capture_%03d", n)
  local omit, strip = {}, {}
  for _, t in ipairs(r.omit or {}) do omit[t] = true end
  for _, k in ipairs(r.strip or {}) do strip[k] = true end
  local function emit(ev)
    if omit[ev.type] then return end
    seq = seq + 1
    ev.sequence_number = seq
    for k in pairs(strip) do ev[k] = nil end
    frames[#frames + 1] = (r.no_event_lines and "" or "event: " .. ev.type .. "\n") .. "data: " .. json.encode_raw(ev) .. "\n\n"
  end
  local function response(status, out, usage)
    return { id = rid, object = "response", created_at = 1700000000, status = status, model = model,
      output = list(out or {}), usage = usage or cjson.null, error = cjson.null, incomplete_details = cjson.null,
      parallel_tool_calls = true, tool_choice = "auto", tools = list({}) }
  end
  emit { type = "response.created", response = response("in_progress") }
  emit { type = "response.in_progress", response = response("in_progress") }
  local index = -1
  if r.reasoning then -- a reasoning item: its summary streamed, its encrypted_content whole at the end
    index = index + 1
    local id = string.format("rs_capture_%03d", n)
    local summary = r.reasoning.summary or ""
    emit { type = "response.output_item.added", output_index = index,
      item = { id = id, type = "reasoning", summary = list({}) } }
    emit { type = "response.reasoning_summary_part.added", item_id = id, output_index = index, summary_index = 0,
      part = { type = "summary_text", text = "" } }
    emit { type = "response.reasoning_summary_text.delta", item_id = id, output_index = index, summary_index = 0,
      delta = summary }
    emit { type = "response.reasoning_summary_text.done", item_id = id, output_index = index, summary_index = 0,
      text = summary }
    emit { type = "response.reasoning_summary_part.done", item_id = id, output_index = index, summary_index = 0,
      part = { type = "summary_text", text = summary } }
    local item = { id = id, type = "reasoning", summary = list({ { type = "summary_text", text = summary } }),
      encrypted_content = r.reasoning.encrypted_content }
    emit { type = "response.output_item.done", output_index = index, item = item }
    output[#output + 1] = item
  end
  if r.text then
    index = index + 1
    local id = string.format("msg_capture_%03d", n)
    emit { type = "response.output_item.added", output_index = index,
      item = { id = id, type = "message", status = "in_progress", role = "assistant", content = list({}) } }
    emit { type = "response.content_part.added", item_id = id, output_index = index, content_index = 0,
      part = { type = "output_text", text = "", annotations = list({}) } }
    for w in r.text:gmatch("%S+%s*") do
      emit { type = "response.output_text.delta", item_id = id, output_index = index, content_index = 0, delta = w,
        logprobs = list({}) }
    end
    emit { type = "response.output_text.done", item_id = id, output_index = index, content_index = 0, text = r.text,
      logprobs = list({}) }
    local part = { type = "output_text", text = r.text, annotations = list({}) }
    emit { type = "response.content_part.done", item_id = id, output_index = index, content_index = 0, part = part }
    local item = { id = id, type = "message", status = "completed", role = "assistant", content = list({ part }) }
    emit { type = "response.output_item.done", output_index = index, item = item }
    output[#output + 1] = item
  end
  for i, c in ipairs(r.tool_calls or {}) do
    index = index + 1
    local id = string.format("fc_capture_%03d_%d", n, i)
    local args = type(c.arguments) == "string" and c.arguments or cjson.encode(c.arguments or {})
    emit { type = "response.output_item.added", output_index = index,
      item = { id = id, type = "function_call", status = "in_progress", call_id = c.call_id, name = c.name, arguments = "" } }
    emit { type = "response.function_call_arguments.delta", item_id = id, output_index = index, delta = args }
    emit { type = "response.function_call_arguments.done", item_id = id, output_index = index, arguments = args }
    local item = { id = id, type = "function_call", status = "completed", call_id = c.call_id, name = c.name, arguments = args }
    emit { type = "response.output_item.done", output_index = index, item = item }
    output[#output + 1] = item
  end
  for i, c in ipairs(r.custom_calls or {}) do
    index = index + 1
    local id = string.format("ctc_capture_%03d_%d", n, i)
    emit { type = "response.output_item.added", output_index = index,
      item = { id = id, type = "custom_tool_call", status = "in_progress", call_id = c.call_id, name = c.name, input = "" } }
    emit { type = "response.custom_tool_call_input.delta", item_id = id, output_index = index, delta = c.input }
    emit { type = "response.custom_tool_call_input.done", item_id = id, output_index = index, input = c.input }
    local item = { id = id, type = "custom_tool_call", status = "completed", call_id = c.call_id, name = c.name, input = c.input }
    emit { type = "response.output_item.done", output_index = index, item = item }
    output[#output + 1] = item
  end
  if r.finish == "response.failed" then -- the upstream failed mid-stream
    local resp = response("failed", output)
    resp.error = { code = "server_error", message = "scripted failure" }
    emit { type = "response.failed", response = resp }
    return table.concat(frames)
  elseif r.finish == "response.incomplete" then
    local resp = response("incomplete", output)
    resp.incomplete_details = { reason = "max_output_tokens" }
    emit { type = "response.incomplete", response = resp }
    return table.concat(frames)
  end
  emit { type = "response.completed", response = response("completed", output, not r.no_usage and {
    input_tokens = 11, input_tokens_details = { cached_tokens = 0 },
    output_tokens = 5, output_tokens_details = { reasoning_tokens = 0 }, total_tokens = 16 } or nil) }
  return table.concat(frames)
end

---------------------------------------------------------------------------
-- HTTP/1.1
---------------------------------------------------------------------------
local function head(status, headers)
  local lines = { "HTTP/1.1 " .. status .. " X" }
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

local function on_request(tcp, method, path, headers, body)
  count = count + 1
  local text = decoded(body, headers["content-encoding"])
  local rec = { method = method, path = path, headers = headers, content_encoding = headers["content-encoding"] or cjson.null,
    raw_bytes = #body, body = text }
  write_file(string.format("%s/%03d.json", outdir, count), cjson.encode(rec))
  if method == "POST" and path:gsub("%?.*$", ""):find("/responses$") then
    local script = read_file(outdir .. "/script.json")
    local st = uv.fs_stat(outdir .. "/script.json")
    local version = st and string.format("%d.%09d:%s", st.mtime.sec, st.mtime.nsec, script) or ""
    if version ~= last_script then posts, last_script = 0, version end -- a script written anew starts over
    posts = posts + 1
    local r = script and cjson.decode(script)[posts] or { text = "ok" }
    if r.status then
      local msg = cjson.encode { error = { message = "scripted failure", type = "server_error", param = cjson.null, code = cjson.null } }
      tcp:write(head(r.status, { ["content-type"] = "application/json", ["content-length"] = #msg }) .. msg)
      return true
    end
    local ok, req = pcall(cjson.decode, text)
    local model = ok and type(req) == "table" and req.model or "capture"
    tcp:write(head(200, { ["content-type"] = "text/event-stream", connection = "close" }) .. stream_for(model, r, posts))
    return false
  end
  local msg = "not here: " .. method .. " " .. path
  tcp:write(head(404, { ["content-type"] = "text/plain", ["content-length"] = #msg }) .. msg)
  return true
end

-- a chunked body: the bytes of its chunks and how many bytes it took, or
-- nil while incomplete (no trailers expected)
local function dechunk(s)
  local out, pos = {}, 1
  while true do
    local e = s:find("\r\n", pos, true)
    if not e then return nil end
    local size = tonumber(s:sub(pos, e - 1):match("^%x+"), 16)
    if not size then return nil end
    if #s < e + 3 + size then return nil end
    if size == 0 then return table.concat(out), e + 3 end
    out[#out + 1] = s:sub(e + 2, e + 1 + size)
    pos = e + 2 + size + 2
  end
end

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", tonumber(arg[2]) or 0))
server:listen(64, function()
  local tcp = uv.new_tcp()
  server:accept(tcp)
  local buf = ""
  local function close() if not tcp:is_closing() then tcp:close() end end
  local function try_parse()
    local he = buf:find("\r\n\r\n", 1, true)
    if not he then return end
    local headtext = buf:sub(1, he - 1)
    local method, path = headtext:match("^(%u+) (%S+)")
    local headers = {}
    for line in headtext:gmatch("[^\r\n]+") do
      local k, v = line:match("^([^:]+):%s*(.*)$")
      if k then headers[k:lower()] = v end
    end
    local rest, body, used = buf:sub(he + 4), nil, nil
    if (headers["transfer-encoding"] or ""):lower():find("chunked") then
      body, used = dechunk(rest)
      if not body then return end
    else
      local len = tonumber(headers["content-length"] or 0)
      if #rest < len then return end
      body, used = rest:sub(1, len), len
    end
    buf = rest:sub(used + 1)
    if on_request(tcp, method, path, headers, body) then return try_parse() end
    tcp:shutdown(close)
  end
  tcp:read_start(function(err, data)
    if err or not data then return close() end
    buf = buf .. data
    try_parse()
  end)
end)
io.stdout:write("capture listening on ", server:getsockname().port, "\n")
io.stdout:flush()
uv.run()
