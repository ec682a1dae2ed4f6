-- SSE and NDJSON framing in pure Lua: the incremental parsers and the frame
-- writers, with the same results as the daemon's C ones (src/sse.c), byte
-- for byte. moongate.host hands these to a host without the C module (the
-- nginx shim); spec/host/frames_spec.lua holds the two to the same answers.
--   sse_parser([spans]):feed(bytes) -> {{data, event?, id?, stop?}, ...} (whole frames)
--   ndjson_splitter():feed(bytes) -> {line, ...} (CR and empty lines dropped)
--   sse_frame(data [, event])     -> "event: e\ndata: ...\n\n"
--   ndjson_frame(data)            -> data with CR and LF escaped, then "\n"
local find, sub, byte = string.find, string.sub, string.byte
local concat = table.concat

local M = {}

-- index of the first CR or LF at or after i, or nil
local function line_end(s, i) return (find(s, "[\r\n]", i)) end

local Parser = {}
Parser.__index = Parser

-- one line of a frame (without its end)
local function sse_line(p, l, out)
  if l == "" then -- blank line: dispatch
    if p.data then
      local d = concat(p.data, "\n")
      local f = { data = d }
      if p.event and p.event ~= "" then f.event = p.event end
      if p.id and p.id ~= "" then f.id = p.id end
      out[#out + 1] = f
    end
    p.data, p.event = nil, nil
    return
  end
  if byte(l, 1) == 58 then return end -- ":" a comment
  local colon = find(l, ":", 1, true)
  local field, v = l, ""
  if colon then
    field, v = sub(l, 1, colon - 1), sub(l, colon + 1)
    if byte(v, 1) == 32 then v = sub(v, 2) end
  end
  if field == "data" then
    local d = p.data or {}
    d[#d + 1] = v
    p.data = d
  elseif field == "event" then
    p.event = v
  elseif field == "id" then
    p.id = v
  end -- retry and unknown fields are ignored
end

--- parser:feed(bytes) -> the frames the bytes complete
function Parser:feed(s)
  local out, i, n = {}, 1, #s
  self.cut = nil
  while i <= n do
    if self.skip_lf then
      self.skip_lf = false
      if byte(s, i) == 10 then i = i + 1 end
    end
    if i > n then break end
    local e = line_end(s, i)
    if not e then
      local part = self.line
      part[#part + 1] = sub(s, i)
      break
    end
    local l = sub(s, i, e - 1)
    if #self.line > 0 then
      self.line[#self.line + 1] = l
      l = concat(self.line)
      self.line = {}
    end
    local n0 = #out
    sse_line(self, l, out)
    if byte(s, e) == 13 then self.skip_lf = true end
    if l == "" and self.spans then
      -- where the blank line ends (a CRLF's LF, when it is in s)
      local stop = (self.skip_lf and byte(s, e + 1) == 10) and e + 1 or e
      self.cut = stop
      if #out > n0 then out[#out].stop = stop end
    end
    i = e + 1
  end
  return out
end

-- spans: each frame also says where its blank line ends in the bytes fed
-- (f.stop), and parser.cut where the last blank line of a feed ends (a
-- comment-only event's too): a host that hands on the upstream's own bytes
-- a whole event at a time cuts there
function M.sse_parser(spans)
  return setmetatable({ line = {}, skip_lf = false, spans = spans }, Parser)
end

local Splitter = {}
Splitter.__index = Splitter

--- splitter:feed(bytes) -> the lines the bytes complete
function Splitter:feed(s)
  local out, i = {}, 1
  while true do
    local nl = find(s, "\n", i, true)
    if not nl then
      if i <= #s then self.partial[#self.partial + 1] = sub(s, i) end
      return out
    end
    local l = sub(s, i, nl - 1)
    if #self.partial > 0 then
      self.partial[#self.partial + 1] = l
      l = concat(self.partial)
      self.partial = {}
    end
    if byte(l, -1) == 13 then l = sub(l, 1, -2) end
    if l ~= "" then out[#out + 1] = l end
    i = nl + 1
  end
end

function M.ndjson_splitter()
  return setmetatable({ partial = {} }, Splitter)
end

--- sse_frame(data [, event]) -> the frame's text; each line of data (CR,
-- LF or CRLF ends one) its own data line
function M.sse_frame(data, event)
  assert(type(data) == "string", "sse_frame: data must be a string")
  if event ~= nil then
    assert(type(event) == "string" and not find(event, "[\r\n]"), "event name must be one line")
  end
  local out = {}
  if event and event ~= "" then out[1] = "event: " .. event .. "\n" end
  local i, n = 1, #data
  repeat
    local e = line_end(data, i)
    out[#out + 1] = "data: " .. sub(data, i, (e or n + 1) - 1) .. "\n"
    if e then
      if byte(data, e) == 13 and byte(data, e + 1) == 10 then e = e + 1 end
      i = e + 1
      if i > n then out[#out + 1] = "data: \n" end -- a trailing newline ends one more, empty, line
    else
      i = n + 1
    end
  until i > n
  out[#out + 1] = "\n"
  return concat(out)
end

local nd_escape = { ["\n"] = "\\n", ["\r"] = "\\r" }

--- ndjson_frame(data) -> one line: data with its CR and LF written \r, \n
function M.ndjson_frame(data)
  return (data:gsub("[\r\n]", nd_escape)) .. "\n"
end

return M
