-- A small HTTP/1.1 client over luv TCP for the specs: whole requests,
-- incremental reads of streamed responses, slow readers, raw bytes, early
-- disconnects. Everything runs the default luv loop until done or timed out.
local uv = require "luv"

local M = {}

-- A write to a socket the server has just closed (a WebSocket close reply,
-- say) raises SIGPIPE, whose default action ends the spec process without a
-- word (busted exits 141): take the signal, and let the write fail instead.
local sigpipe = uv.new_signal()
sigpipe:start("sigpipe", function() end)
sigpipe:unref()

local Conn = {}
Conn.__index = Conn

local function run_until(pred, timeout_ms)
  uv.update_time() -- the loop's clock is stale after anything that blocked
  local deadline = uv.now() + (timeout_ms or 5000)
  local timer = uv.new_timer()
  timer:start(50, 50, function() end) -- wakes the loop so the deadline is seen
  while not pred() and uv.now() < deadline do
    uv.run("once")
    uv.update_time()
  end
  timer:close()
  uv.run("nowait")
  return pred()
end
M.run_until = run_until

--- connect(port [, host]) -> conn | nil, err
function M.connect(port, host)
  local tcp = uv.new_tcp()
  local c = setmetatable({ tcp = tcp, buf = "", eof = false, connected = false, reading = false }, Conn)
  local err
  tcp:connect(host or "127.0.0.1", port, function(e)
    if e then err = e else c.connected = true end
  end)
  run_until(function() return c.connected or err end, 3000)
  if not c.connected then
    tcp:close()
    return nil, err or "connect timeout"
  end
  tcp:nodelay(true)
  c:resume()
  return c
end

function Conn:resume()
  if self.reading or self.eof then return end
  self.reading = true
  self.tcp:read_start(function(e, data)
    if e or not data then
      self.eof = true
      self.error = e
      if not self.tcp:is_closing() then self.tcp:read_stop() end
      return
    end
    self.received = (self.received or 0) + #data
    if self.on_data then self.on_data(data) end -- a test's own look at each read
    if self.count_only then -- big streams: keep only the tail
      self.buf = (self.buf .. data):sub(-8192)
    else
      self.buf = self.buf .. data
    end
  end)
end

--- pause(): stop reading, so the kernel buffers fill and the server must wait
function Conn:pause()
  if self.reading and not self.tcp:is_closing() then
    self.tcp:read_stop()
  end
  self.reading = false
end

function Conn:send(bytes)
  local done, err = false, nil
  self.tcp:write(bytes, function(e) done, err = true, e end)
  run_until(function() return done end, 5000)
  return done and not err, err
end

--- wait(pred, timeout) -> pred() after running the loop
function Conn:wait(pred, timeout_ms)
  return run_until(function() return pred(self) end, timeout_ms)
end

function Conn:close()
  if not self.tcp:is_closing() then self.tcp:close() end
  uv.run("nowait")
end

-- Response parsing ------------------------------------------------------------

local function parse_head(buf)
  local head_end = buf:find("\r\n\r\n", 1, true)
  if not head_end then return nil end
  local head = buf:sub(1, head_end - 1)
  local status = tonumber(head:match("^HTTP/%d%.%d (%d%d%d)"))
  local headers = {}
  for line in head:gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then headers[k:lower()] = v end
  end
  return { status = status, headers = headers, head_len = head_end + 3 }
end

-- decode a chunked body; returns body, complete, bytes consumed
local function dechunk(data)
  local out, pos = {}, 1
  while true do
    local line_end = data:find("\r\n", pos, true)
    if not line_end then return table.concat(out), false, pos - 1 end
    local size = tonumber(data:sub(pos, line_end - 1):match("^%x+"), 16)
    if not size then return table.concat(out), false, pos - 1 end
    if size == 0 then
      local term = data:find("\r\n", line_end + 2, true)
      if term then return table.concat(out), true, term + 1 end
      return table.concat(out), false, pos - 1
    end
    if #data < line_end + 1 + size + 2 then return table.concat(out), false, pos - 1 end
    out[#out + 1] = data:sub(line_end + 2, line_end + 1 + size)
    pos = line_end + 2 + size + 2
  end
end
M.dechunk = dechunk

--- response_state(conn) -> {status, headers, body, complete} from what has arrived
function Conn:response_state()
  local h = parse_head(self.buf)
  if not h then return nil end
  local rest = self.buf:sub(h.head_len + 1)
  if h.headers["transfer-encoding"] == "chunked" then
    local body, complete, used = dechunk(rest)
    h.body, h.complete, h.used = body, complete, h.head_len + used
  elseif h.headers["content-length"] then
    local n = tonumber(h.headers["content-length"])
    h.body = rest:sub(1, n)
    h.complete = #rest >= n
    h.used = h.head_len + n
  else
    h.body = rest
    h.complete = self.eof
    h.used = #self.buf
  end
  return h
end

--- read_response(timeout) -> response | nil, "timeout" | "eof"
-- Consumes the response from the buffer (pipelining-safe).
function Conn:read_response(timeout_ms)
  local ok = self:wait(function(c)
    local s = c:response_state()
    return (s and s.complete) or c.eof
  end, timeout_ms)
  local s = self:response_state()
  if not (s and s.complete) then
    return nil, ok and "eof" or "timeout"
  end
  self.buf = self.buf:sub(s.used + 1)
  return s
end

--- request_bytes(method, path, body, headers) -> raw HTTP/1.1 request
function M.request_bytes(method, path, body, headers)
  headers = headers or {}
  local lines = { string.format("%s %s HTTP/1.1", method, path) }
  if not (headers.Host or headers.host) then lines[2] = "Host: 127.0.0.1" end -- unless the test names one
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  if body and not headers["Content-Length"] and not headers["Transfer-Encoding"] then
    lines[#lines + 1] = "Content-Length: " .. #body
    if not headers["Content-Type"] then lines[#lines + 1] = "Content-Type: application/json" end
  end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

--- request(port, method, path, body, headers, timeout) -> response | nil, err
function M.request(port, method, path, body, headers, timeout_ms)
  local c, err = M.connect(port)
  if not c then return nil, err end
  c:send(M.request_bytes(method, path, body, headers))
  local res, rerr = c:read_response(timeout_ms or 10000)
  c:close()
  return res, rerr
end

--- sse_data(body) -> list of data payloads, and list of event names
function M.sse_data(body)
  local data, events = {}, {}
  for block in body:gmatch("(.-)\n\n") do
    local lines, event = {}, nil
    for line in (block .. "\n"):gmatch("(.-)\n") do
      local v = line:match("^data: ?(.*)$")
      if v then lines[#lines + 1] = v end
      local e = line:match("^event: ?(.*)$")
      if e then event = e end
    end
    if #lines > 0 then
      data[#data + 1] = table.concat(lines, "\n")
      events[#events + 1] = event or false
    end
  end
  return data, events
end

return M
