-- Stored responses (the Responses API's `store` and `previous_response_id`):
-- text kept under an id, bounded by a number of entries and of bytes (ids'
-- and texts' sizes summed), the least recently used going first.
--
--   store.new()                     the process-wide store in C (src/store.c),
--                                   shared by every worker thread; its limits
--                                   are set once at start from the config's
--                                   response_store. Without moongate.core's
--                                   primitives: store.memory() with the
--                                   default limits.
--   store.memory(max_entries, max_bytes)  the same in pure Lua, for one Lua
--                                   state (unit specs, embedding without C).
--
-- Both have the same interface:
--   s:put(id, text) -> true | false, why ("disabled", "too large", "invalid id")
--   s:get(id) -> text | nil      (the entry becomes the most recently used)
--   s:delete(id) -> bool         (whether there was an entry)
--   s:stats() -> {entries, bytes, max_entries, max_bytes, evictions}
-- An id is a string of 1 to 256 bytes. Ids come from clients
-- (previous_response_id, a URL), so any other id is simply not there: get
-- gives nil, delete false, put false. max_entries 0 keeps nothing.
local M = {}

M.MAX_ID = 256
M.DEFAULT_ENTRIES = 10000
M.DEFAULT_BYTES = 64 * 1024 * 1024

local function valid_id(id)
  return type(id) == "string" and #id > 0 and #id <= M.MAX_ID
end

local function check_text(text)
  if type(text) ~= "string" then
    error("store: text must be a string, got " .. type(text), 3)
  end
end

-- The C store -----------------------------------------------------------------

local C = {}
C.__index = C

function C:put(id, text)
  check_text(text)
  if not valid_id(id) then return false, "invalid id" end
  return self.core._store_put(id, text)
end

function C:get(id)
  if not valid_id(id) then return nil end
  return self.core._store_get(id)
end

function C:delete(id)
  if not valid_id(id) then return false end
  return self.core._store_delete(id)
end

function C:stats()
  return self.core._store_stats()
end

-- The pure-Lua store ------------------------------------------------------------
-- A table id -> node, and a doubly linked list of the nodes from the most
-- (self.head) to the least (self.tail) recently used: every operation is O(1).

local Mem = {}
Mem.__index = Mem

local function unlink(self, n)
  if n.prev then n.prev.next = n.next else self.head = n.next end
  if n.next then n.next.prev = n.prev else self.tail = n.prev end
  n.prev, n.next = nil, nil
end

local function push_front(self, n)
  n.next = self.head
  if self.head then self.head.prev = n else self.tail = n end
  self.head = n
end

local function remove(self, n)
  unlink(self, n)
  self.nodes[n.id] = nil
  self.entries = self.entries - 1
  self.bytes = self.bytes - #n.id - #n.text
end

function Mem:put(id, text)
  check_text(text)
  if not valid_id(id) then return false, "invalid id" end
  if self.max_entries == 0 then return false, "disabled" end
  local size = #id + #text
  if size > self.max_bytes then return false, "too large" end
  local old = self.nodes[id]
  if old then remove(self, old) end -- replaced, not evicted
  while self.tail and (self.entries + 1 > self.max_entries or self.bytes + size > self.max_bytes) do
    remove(self, self.tail)
    self.evictions = self.evictions + 1
  end
  local n = { id = id, text = text }
  self.nodes[id] = n
  push_front(self, n)
  self.entries = self.entries + 1
  self.bytes = self.bytes + size
  return true
end

function Mem:get(id)
  local n = valid_id(id) and self.nodes[id]
  if not n then return nil end
  if self.head ~= n then
    unlink(self, n)
    push_front(self, n)
  end
  return n.text
end

function Mem:delete(id)
  local n = valid_id(id) and self.nodes[id]
  if not n then return false end
  remove(self, n)
  return true
end

function Mem:stats()
  return { entries = self.entries, bytes = self.bytes, max_entries = self.max_entries,
    max_bytes = self.max_bytes, evictions = self.evictions }
end

local function check_limit(v, name)
  if type(v) ~= "number" or v < 0 or v % 1 ~= 0 then
    error(string.format("store.memory: %s must be an integer >= 0, got %s", name, tostring(v)), 3)
  end
  return v
end

--- memory(max_entries, max_bytes) -> a store in this Lua state alone
function M.memory(max_entries, max_bytes)
  return setmetatable({
    max_entries = check_limit(max_entries or M.DEFAULT_ENTRIES, "max_entries"),
    max_bytes = check_limit(max_bytes or M.DEFAULT_BYTES, "max_bytes"),
    nodes = {}, entries = 0, bytes = 0, evictions = 0,
  }, Mem)
end

--- new() -> the process-wide store (C), or a memory store without the C primitives
function M.new()
  local ok, core = pcall(require, "moongate.core")
  if ok and type(core) == "table" and core._store_put then
    return setmetatable({ core = core }, C)
  end
  return M.memory()
end

return M
