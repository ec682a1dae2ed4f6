-- The Lua half of the `doors` fuzz target (fuzz/doors.c): fuzzed bytes as
-- a request body to every front door, and each request a door decodes,
-- translated for an OpenAI and an Anthropic upstream. A door answers bad
-- input with an error value (its 400); a translation refuses with a
-- refusal (errors.refuse). Any other Lua error would be the client's 500:
-- it is a failure here. And each top-level array the scan accepts,
-- jscan.decode decodes as cjson does.
package.path = "lua/?.lua;spec/?.lua;" .. package.path
local errors = require "moongate.errors"
local knows_marker = require "support.knows_marker"
local doors = {
  openai_chat = require "moongate.frontdoor.openai_chat",
  anthropic_messages = require "moongate.frontdoor.anthropic_messages",
  openai_responses = require "moongate.frontdoor.openai_responses",
  openai_completions = require "moongate.frontdoor.openai_completions",
  openai_embeddings = require "moongate.frontdoor.openai_embeddings",
  ollama = require "moongate.frontdoor.ollama",
}
local adapters = {
  openai = require "moongate.adapters.openai",
  anthropic = require "moongate.adapters.anthropic",
}
local headers = { ["content-type"] = "application/json" }
local jscan = require "moongate.jscan"
local cjson = require("cjson").new()
cjson.decode_max_depth(200)

-- jscan.decode builds what cjson would: the same values
local same = require "support.same"
local function decodes_as_cjson(bytes)
  local _, spans = jscan.top(bytes)
  if type(spans) ~= "table" then return end
  for key, sp in pairs(spans) do
    if sp.kind == "array" then
      local mine = jscan.decode(bytes, sp.from, sp.to, {}, "s", "o", 0)
      local ok, theirs = pcall(cjson.decode, bytes:sub(sp.from, sp.to))
      if not (ok and mine ~= nil and same(mine, theirs)) then
        return "jscan.decode and cjson differ on the array " .. tostring(key)
      end
    end
  end
end

local function fails(where, e)
  return string.format("%s raised: %s", where, tostring(e))
end

local function fuzz_one(bytes)
  local differ = decodes_as_cjson(bytes)
  if differ then return differ end
  for name, door in pairs(doors) do
    local ok, creq, err = pcall(door.decode, bytes, headers, name == "ollama" and "chat" or nil)
    if not ok then -- (the app calls decode without a catch: even a refusal would be a 500)
      return fails(name .. ".decode", type(creq) == "table" and creq.message or creq)
    elseif creq == nil then
      if type(err) ~= "table" or type(err.status) ~= "number" or type(err.message) ~= "string" then
        return name .. ".decode gave neither a request nor an error"
      end
    elseif type(creq) == "table" then
      creq.upstream_model = creq.model
      for aname, a in pairs(adapters) do
        if a.request then
          local tok, terr = pcall(errors.catch, a.request, creq, {})
          if not tok then return fails(name .. " -> " .. aname, terr) end
        end
      end
    end
  end
end

-- (an input that names the process's raw-value marker id fails by design:
-- support/knows_marker says why it is not counted)
return knows_marker.counted(fuzz_one)
