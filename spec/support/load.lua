-- Asynchronous clients on the caller's luv loop, for load (scripts/soak.lua,
-- spec/faults/run.lua): each request goes on its own connection and ends
-- when the server closes it or a deadline passes. Nothing here runs the
-- loop: the caller does (client.run_until).
local uv = require "luv"

local M = {}

--- whole(raw) -> true when raw (all a connection received) is one complete
-- HTTP/1.1 answer: its head, and a body as long as its framing says
-- (Content-Length, chunked to its last chunk, or up to the close)
function M.whole(raw)
  local he = raw:find("\r\n\r\n", 1, true)
  if not he or not raw:find("^HTTP/1%.[01] %d%d%d") then return false end
  local head, body = raw:sub(1, he + 3):lower(), raw:sub(he + 4)
  if head:find("^http/1%.1 1%d%d") then return M.whole(body) end -- an interim answer first
  local len = head:match("\ncontent%-length: *(%d+)")
  if len then return #body == tonumber(len) end
  if head:find("\ntransfer%-encoding: *chunked") then
    return body:find("\r\n0\r\n\r\n$") ~= nil or body:find("^0\r\n\r\n$") ~= nil
  end
  return true
end

--- status(raw) -> the final answer's status code, or nil
function M.status(raw)
  local s = raw
  while true do
    local code = tonumber(s:match("^HTTP/1%.[01] (%d%d%d)"))
    if not code or code >= 200 then return code end
    local he = s:find("\r\n\r\n", 1, true)
    if not he then return nil end
    s = s:sub(he + 4)
  end
end

--- request(port, bytes, opts, done): writes bytes on a new connection to
-- 127.0.0.1:port and calls done(raw, why) once the server closed it (why
-- nil), the deadline passed (why "timeout"), or the connection failed.
-- opts: timeout_ms (30000); parts = {{bytes, delay_ms}, ...} written after
-- bytes; leave_after = n (close once n bytes came back: a client that goes
-- away); leave_ms = n (close n ms after the last byte written); shut = true
-- (half-close once everything is written); read = false (never read: a
-- slow reader, closed at the deadline).
function M.request(port, bytes, opts, done)
  opts = opts or {}
  local tcp, timer = uv.new_tcp(), uv.new_timer()
  local raw, n, finished = {}, 0, false
  local function finish(why)
    if finished then return end
    finished = true
    timer:stop()
    if not timer:is_closing() then timer:close() end
    if not tcp:is_closing() then tcp:close() end
    done(table.concat(raw), why)
  end
  timer:start(opts.timeout_ms or 30000, 0, function() finish("timeout") end)
  tcp:connect("127.0.0.1", port, function(err)
    if err then return finish("connect: " .. err) end
    if opts.read ~= false then
      tcp:read_start(function(e, data)
        if e or not data then return finish(nil) end
        raw[#raw + 1] = data
        n = n + #data
        if opts.leave_after and n >= opts.leave_after then finish("left") end
      end)
    end
    local parts, i = opts.parts or {}, 0
    local function next_part()
      if finished then return end
      i = i + 1
      local p = parts[i]
      if not p then
        if opts.shut then tcp:shutdown() end
        if opts.leave_ms then
          local t = uv.new_timer()
          t:start(opts.leave_ms, 0, function() t:close() finish("left") end)
        end
        return
      end
      local t = uv.new_timer()
      t:start(p[2] or 0, 0, function()
        t:close()
        if finished or tcp:is_closing() then return end
        tcp:write(p[1], function() next_part() end)
      end)
    end
    if bytes and #bytes > 0 then tcp:write(bytes, function() next_part() end) else next_part() end
  end)
end

--- post(path, body [, headers]) -> the bytes of a POST that closes after its answer
function M.post(port, path, body, headers)
  local h = { "POST " .. path .. " HTTP/1.1", "Host: 127.0.0.1:" .. port, "Content-Type: application/json",
    "Content-Length: " .. #body, "Connection: close" }
  for k, v in pairs(headers or {}) do h[#h + 1] = k .. ": " .. v end
  return table.concat(h, "\r\n") .. "\r\n\r\n" .. body
end

return M
