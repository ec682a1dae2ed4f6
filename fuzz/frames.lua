-- The Lua half of the `frames` fuzz target (fuzz/frames.c): fuzzed bytes as
-- an upstream's answer to every adapter, the way the host hands them over.
-- As a stream: cut into SSE frames by the host's parser (moongate.frames,
-- the C one's twin), each frame to the adapter's decoder, then its finish;
-- as a whole answer: decoded JSON to the adapter's response(). What an
-- adapter makes of them goes to every front door's client side, streamed
-- and whole. An adapter that raises would be the daemon's "malformed
-- answer" with the reason lost (wire.adapt catches it); an encoder or a
-- collector that raises would be the client's broken stream: either is a
-- failure here. So is an event that is not a table with a type.
package.path = "lua/?.lua;spec/?.lua;" .. package.path
local json = require "moongate.json"
local frames = require "moongate.frames"
local knows_marker = require "support.knows_marker"
local prompt = require "moongate.adapters.prompt"
local adapters = {
  openai = require "moongate.adapters.openai",
  anthropic = require "moongate.adapters.anthropic",
  openai_responses = require "moongate.adapters.openai_responses",
  completions = prompt.openai,
  llamacpp = prompt.llamacpp,
}
local doors = {
  openai_chat = require "moongate.frontdoor.openai_chat",
  anthropic_messages = require "moongate.frontdoor.anthropic_messages",
  openai_responses = require "moongate.frontdoor.openai_responses",
  openai_completions = require "moongate.frontdoor.openai_completions",
  ollama = require "moongate.frontdoor.ollama",
}
-- a request as the doors decode one, with a tool, so that tool calls map
local function creq_for(stream)
  return { model = "m", upstream_model = "m", stream = stream, max_tokens = 64,
    messages = { { role = "user", content = { { type = "text", text = "x" } } } },
    tools = { { name = "f", description = "d", parameters = { type = "object", properties = {} } } } }
end

local function fails(where, e) return string.format("%s raised: %s", where, tostring(e)) end

-- the events to every door's client side; a message on the first failure
local function to_clients(events, stream)
  for name, door in pairs(doors) do
    local creq = creq_for(stream)
    local ok, err = pcall(function()
      if stream then
        local enc = door.stream_encoder(creq, { created = 1 })
        for _, ev in ipairs(events) do
          if ev.type == "error" then enc:error(ev) else enc:event(ev) end
        end
      else
        local col = door.collector(creq, { created = 1 })
        for _, ev in ipairs(events) do
          if ev.type ~= "error" then col:event(ev) end
        end
        if col.json_text then col:json_text() else json.encode_raw(col:result()) end
      end
    end)
    if not ok then return fails(name .. (stream and " encoder" or " collector"), err) end
  end
end

local function checked(where, events)
  if type(events) ~= "table" then return where .. " gave no event list" end
  for _, ev in ipairs(events) do
    if type(ev) ~= "table" or type(ev.type) ~= "string" then return where .. " gave an event without a type" end
  end
end

local function fuzz_one(bytes)
  local parsed = frames.sse_parser():feed(bytes .. "\n\n")
  for aname, a in pairs(adapters) do
    -- streamed
    local creq = creq_for(true)
    local ok, dec = pcall(a.decoder, creq)
    if not ok then return fails(aname .. ".decoder", dec) end
    local all = {}
    for _, f in ipairs(parsed) do
      local fok, events = pcall(dec.frame, dec, json.utf8(f.data), f.event)
      if not fok then return fails(aname .. ".frame", events) end
      local bad = checked(aname .. ".frame", events)
      if bad then return bad end
      for _, ev in ipairs(events) do all[#all + 1] = ev end
    end
    local fok, events = pcall(dec.finish, dec)
    if not fok then return fails(aname .. ".finish", events) end
    for _, ev in ipairs(events or {}) do all[#all + 1] = ev end
    local bad = to_clients(all, true)
    if bad then return aname .. " -> " .. bad end
    -- whole
    local body = json.decode(json.utf8(bytes))
    local rok, revents = pcall(a.response, body, creq_for(false))
    if not rok then return fails(aname .. ".response", revents) end
    bad = checked(aname .. ".response", revents) or to_clients(revents, false)
    if bad then return aname .. " -> " .. bad end
  end
end

-- (an input that names the process's raw-value marker id fails by design:
-- support/knows_marker says why it is not counted)
return knows_marker.counted(fuzz_one)
