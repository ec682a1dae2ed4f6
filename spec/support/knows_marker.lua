-- Do fuzzed bytes name this process's raw-value marker (moongate.json)?
-- A client or an upstream cannot: the marker's id is 16 hex digits drawn
-- from /dev/urandom when the process starts, and never leaves it (see
-- json.lua). A fuzzer can: libFuzzer reads the needles of memmem and memcmp
-- (the C splice that swaps markers searches for the tag), so it writes the
-- id into its next inputs. An input that carries the id, as JSON text
-- would say it (a \u00XX escape for any of its bytes), tests a secret
-- given away, not the gateway: the fuzz targets do not count its failure.
--   knows(bytes) -> does it?
--   counted(fuzz_one) -> fuzz_one, but nil (no failure) for such an input
local json = require "moongate.json"
local cjson = require "cjson"

local id = assert(cjson.encode(json.raw("0")):match("raw%-(%x+):"))
local char = string.char

local function knows(bytes)
  local plain = bytes:gsub("\\u00(%x%x)", function(h) return char(tonumber(h, 16)) end)
  return plain:find(id, 1, true) ~= nil
end

local function counted(fuzz_one)
  return function(bytes)
    local why = fuzz_one(bytes)
    if why and knows(bytes) then return nil end
    return why
  end
end

return { knows = knows, counted = counted }
