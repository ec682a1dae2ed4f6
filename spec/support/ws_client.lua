-- A WebSocket client (RFC 6455) over luv TCP for the specs: the handshake,
-- masked text frames out, frames in (fragmented or not, ping answered),
-- close. Messages are kept in order; on_message(text, ws) may answer at once,
-- which is how a spec plays a pool worker while it waits on an HTTP request.
local uv = require "luv"
local bit = require "bit"
local client = require "support.client"

local M = {}
local WS = {}
WS.__index = WS

local function raw_write(self, bytes)
  if self.closed or self.tcp:is_closing() then return false end
  self.tcp:write(bytes)
  return true
end

local function frame(opcode, payload)
  local len = #payload
  local head
  if len < 126 then
    head = string.char(0x80 + opcode, 0x80 + len)
  elseif len < 65536 then
    head = string.char(0x80 + opcode, 0x80 + 126, bit.rshift(len, 8), bit.band(len, 255))
  else
    local b = {}
    for i = 7, 0, -1 do b[#b + 1] = i >= 4 and 0 or bit.band(bit.rshift(len, i * 8), 255) end
    head = string.char(0x80 + opcode, 0x80 + 127, unpack(b))
  end
  local mask = { math.random(0, 255), math.random(0, 255), math.random(0, 255), math.random(0, 255) }
  local out = {}
  for i = 1, len do
    out[i] = string.char(bit.bxor(payload:byte(i), mask[(i - 1) % 4 + 1]))
  end
  return head .. string.char(unpack(mask)) .. table.concat(out)
end
M.frame = frame

--- connect(port, path [, headers [, host]]) -> ws | nil, status, response head
-- (host: the address to dial, 127.0.0.1 by default)
function M.connect(port, path, headers, host)
  local tcp = uv.new_tcp()
  local ws = setmetatable({ tcp = tcp, buf = "", messages = {}, closed = false, open = false,
    frag = nil }, WS)
  local connected, err = false, nil
  tcp:connect(host or "127.0.0.1", port, function(e) if e then err = e else connected = true end end)
  client.run_until(function() return connected or err end, 3000)
  if not connected then tcp:close() return nil, err or "connect timeout" end
  tcp:nodelay(true)
  local lines = { "GET " .. path .. " HTTP/1.1", "Host: 127.0.0.1:" .. port, "Upgrade: websocket",
    "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13" }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  local head
  ws.reader = function(e, data)
    if e or not data then
      ws.closed = true
      return
    end
    if not head then
      ws.buf = ws.buf .. data
      local i = ws.buf:find("\r\n\r\n", 1, true)
      if not i then return end
      head = ws.buf:sub(1, i + 3)
      ws.buf = ws.buf:sub(i + 4)
      ws.status = tonumber(head:match("^HTTP/1%.1 (%d+)"))
      ws.open = ws.status == 101
      if ws.open then ws:parse() end
      return
    end
    ws.received = (ws.received or 0) + #data
    ws.buf = ws.buf .. data
    ws:parse()
  end
  tcp:read_start(ws.reader)
  tcp:write(table.concat(lines, "\r\n") .. "\r\n\r\n")
  client.run_until(function() return head or ws.closed end, 5000)
  if not ws.open then
    ws:close_tcp()
    return nil, ws.status, head
  end
  return ws
end

function WS:close_tcp()
  self.closed = true
  if not self.tcp:is_closing() then self.tcp:close() end
end

function WS:deliver(text)
  if self.on_message then
    local keep = self.on_message(text, self)
    if keep == false then return end
  end
  self.messages[#self.messages + 1] = text
end

--- split_frame(bytes) -> opcode, payload, fin, rest: the first whole frame
-- a server sent (unmasked), or nil while it is not all there
function M.split_frame(b)
  if #b < 2 then return nil end
  local b1, b2 = b:byte(1, 2)
  local len, off = bit.band(b2, 0x7f), 3
  if len == 126 then
    if #b < 4 then return nil end
    len, off = b:byte(3) * 256 + b:byte(4), 5
  elseif len == 127 then
    if #b < 10 then return nil end
    len = 0
    for i = 3, 10 do len = len * 256 + b:byte(i) end
    off = 11
  end
  if #b < off + len - 1 then return nil end
  return bit.band(b1, 0x0f), b:sub(off, off + len - 1), bit.band(b1, 0x80) ~= 0, b:sub(off + len)
end

function WS:parse()
  while not self.closed do
    local opcode, payload, fin, rest = M.split_frame(self.buf)
    if not opcode then return end
    self.buf = rest
    if opcode == 8 then
      self.close_code = #payload >= 2 and payload:byte(1) * 256 + payload:byte(2) or nil
      self.close_reason = payload:sub(3)
      raw_write(self, frame(8, payload:sub(1, 2)))
      self:close_tcp()
      return
    elseif opcode == 9 then
      raw_write(self, frame(10, payload))
    elseif opcode == 1 or opcode == 2 or opcode == 0 then
      self.frag = (opcode == 0 and self.frag or "") .. payload
      if fin then
        local text = self.frag
        self.frag = nil
        self:deliver(text)
      end
    end
  end
end

--- send(text): one masked text frame (or fragments of `fragment` bytes)
function WS:send(text, fragment)
  if self.closed then return false end
  if fragment and #text > fragment then
    local parts = {}
    for i = 1, #text, fragment do parts[#parts + 1] = text:sub(i, i + fragment - 1) end
    for i, p in ipairs(parts) do
      local opcode = i == 1 and 1 or 0
      local f = frame(opcode, p)
      if i < #parts then f = string.char(bit.band(f:byte(1), 0x7f)) .. f:sub(2) end
      raw_write(self, f)
    end
    return not self.closed
  end
  return raw_write(self, frame(1, text))
end

--- pause() / resume(): stop and restart reading, so the server must wait
function WS:pause()
  if not self.closed then self.tcp:read_stop() end
end

function WS:resume()
  if not self.closed then self.tcp:read_start(self.reader) end
end

--- wait(pred, timeout_ms) -> pred() after running the loop
function WS:wait(pred, timeout_ms)
  return client.run_until(function() return pred(self) end, timeout_ms or 5000)
end

--- next_message(timeout_ms) -> the oldest unread message, or nil
function WS:next_message(timeout_ms)
  self:wait(function() return #self.messages > 0 or self.closed end, timeout_ms)
  return table.remove(self.messages, 1)
end

--- close([code]): a close frame, then the socket
function WS:close(code)
  if not self.closed then
    code = code or 1000
    raw_write(self, frame(8, string.char(bit.rshift(code, 8), bit.band(code, 255))))
    client.run_until(function() return self.closed end, 1000)
  end
  self:close_tcp()
  uv.run("nowait")
end

--- drop(): the TCP connection goes away without a close frame (safe
-- inside a luv callback: it does not run the loop)
function WS:drop()
  self:close_tcp()
end

return M
