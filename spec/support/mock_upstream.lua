-- A mock upstream speaking OpenAI chat completions and Anthropic messages,
-- scripted per test. Run: luajit spec/support/mock_upstream.lua [port]
-- It prints "mock listening on PORT" once it listens.
--
-- Control endpoints:
--   POST /_mock/queue     JSON list of scripted responses, served in order to
--                         the next requests (any path but /_mock/*)
--   GET  /_mock/requests  JSON list of what it received: method, path,
--                         headers, body, at_ms, closed_at_ms (wall clock)
--   POST /_mock/reset     forget the queue and the requests
-- A scripted response: {status = 200, headers = {...}, json = value |
--   body = "raw bytes", frames = {{data = "..." | json = value, event = "x",
--   delay_ms = n | pad = n (n bytes of a data line that never ends)}},
--   drop_after = n (close the connection after n frames),
--   gzip = true (the body compressed, with content-encoding: gzip),
--   delay_ms = n (before the status line)}.
-- With nothing queued it echoes the last user message in the format of the
-- path (/v1/chat/completions or /v1/messages), streamed when asked.
package.path = "lua/?.lua;" .. package.path
local uv = require "luv"
local cjson = require "cjson"

local queue, requests = {}, {}

-- lua-cjson writes an empty table as {}; the fields these APIs define as
-- lists must go out as []
local function encode(v)
  return (cjson.encode(v):gsub('"(content)":{}', '"%1":[]'):gsub('"(choices)":{}', '"%1":[]'))
end

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
  local msgs = req.messages or {}
  for i = #msgs, 1, -1 do
    local m = msgs[i]
    if m.role == "user" then
      if type(m.content) == "string" then return m.content end
      local out = {}
      for _, p in ipairs(m.content or {}) do
        if p.type == "text" then out[#out + 1] = p.text end
      end
      return table.concat(out)
    end
  end
  return ""
end

-- the default answers: an echo in the format of the path
local function default_script(path, req)
  local text = last_user_text(req)
  local words = {}
  for w in text:gmatch("%S+%s*") do words[#words + 1] = w end
  if path:find("/messages$") then
    if not req.stream then
      return { json = { id = "msg_mock", type = "message", role = "assistant", model = req.model,
        content = { { type = "text", text = text } }, stop_reason = "end_turn", stop_sequence = cjson.null,
        usage = { input_tokens = 7, output_tokens = #words } } }
    end
    local frames = {
      { event = "message_start", json = { type = "message_start", message = { id = "msg_mock", type = "message",
        role = "assistant", model = req.model, content = {}, stop_reason = cjson.null, stop_sequence = cjson.null,
        usage = { input_tokens = 7, output_tokens = 1 } } } },
      { event = "content_block_start", json = { type = "content_block_start", index = 0,
        content_block = { type = "text", text = "" } } },
    }
    for _, w in ipairs(words) do
      frames[#frames + 1] = { event = "content_block_delta", json = { type = "content_block_delta", index = 0,
        delta = { type = "text_delta", text = w } } }
    end
    frames[#frames + 1] = { event = "content_block_stop", json = { type = "content_block_stop", index = 0 } }
    frames[#frames + 1] = { event = "message_delta", json = { type = "message_delta",
      delta = { stop_reason = "end_turn", stop_sequence = cjson.null }, usage = { output_tokens = #words } } }
    frames[#frames + 1] = { event = "message_stop", json = { type = "message_stop" } }
    return { frames = frames }
  end
  if not req.stream then
    return { json = { id = "chatcmpl-mock", object = "chat.completion", created = 1, model = req.model,
      choices = { { index = 0, message = { role = "assistant", content = text }, finish_reason = "stop" } },
      usage = { prompt_tokens = 7, completion_tokens = #words, total_tokens = 7 + #words } } }
  end
  local function chunk(delta, finish)
    return { json = { id = "chatcmpl-mock", object = "chat.completion.chunk", created = 1, model = req.model,
      choices = { { index = 0, delta = delta, finish_reason = finish or cjson.null } } } }
  end
  local frames = { chunk({ role = "assistant", content = "" }) }
  for _, w in ipairs(words) do frames[#frames + 1] = chunk({ content = w }) end
  frames[#frames + 1] = chunk({}, "stop")
  frames[#frames + 1] = { json = { id = "chatcmpl-mock", object = "chat.completion.chunk", created = 1,
    model = req.model, choices = {}, usage = { prompt_tokens = 7, completion_tokens = #words, total_tokens = 7 + #words } } }
  frames[#frames + 1] = { data = "[DONE]" }
  return { frames = frames }
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
          send(tcp, data)
          step()
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

local function on_request(tcp, method, path, headers, body, done, conn)
  if path == "/_mock/queue" then
    for _, s in ipairs(cjson.decode(body)) do queue[#queue + 1] = s end
    respond_json(tcp, 200, { queued = #queue })
    return done(true)
  elseif path == "/_mock/requests" then
    respond_json(tcp, 200, #requests > 0 and requests or cjson.empty_array or {})
    return done(true)
  elseif path == "/_mock/reset" then
    queue, requests = {}, {}
    respond_json(tcp, 200, { ok = true })
    return done(true)
  end
  local record = { method = method, path = path, headers = headers, body = body, at_ms = now_ms(), conn = conn.id }
  requests[#requests + 1] = record
  conn.records[#conn.records + 1] = record
  local script = table.remove(queue, 1)
  if not script then
    local ok, req = pcall(cjson.decode, body)
    script = default_script(path, ok and type(req) == "table" and req or {})
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
    local he = buf:find("\r\n\r\n", 1, true)
    if not he then return end
    local headtext = buf:sub(1, he - 1)
    local method, path = headtext:match("^(%u+) (%S+)")
    local headers = {}
    for line in headtext:gmatch("[^\r\n]+") do
      local k, v = line:match("^([^:]+):%s*(.*)$")
      if k then headers[k:lower()] = v end
    end
    local len = tonumber(headers["content-length"] or 0)
    if #buf < he + 3 + len then return end
    local body = buf:sub(he + 4, he + 3 + len)
    buf = buf:sub(he + 4 + len)
    busy = true
    on_request(tcp, method, path, headers, body, function(keep)
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
