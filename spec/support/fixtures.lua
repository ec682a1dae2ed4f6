-- Reading the fixture directories of spec/fixtures: their JSON files, the
-- cases in a directory, and the subset comparison every fixture uses.
local json = require "moongate.json"
local errors = require "moongate.errors"
local lfs = require "lfs" -- (busted's own: these specs also run without luv, spec/unit/pure_layer_spec.lua)

local M = {}

function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- text(path) -> the file's bytes
function M.text(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

--- read(path) -> the file's JSON value
function M.read(path)
  return assert(json.decode(M.text(path)), "bad JSON in " .. path)
end

--- maybe(path, default) -> the file's JSON value, or default when it is absent
function M.maybe(path, default)
  if M.exists(path) then return M.read(path) end
  return default
end

--- list(dir) -> the names of its subdirectories, sorted
function M.list(dir)
  local out = {}
  if not lfs.attributes(dir, "mode") then return out end
  for name in lfs.dir(dir) do
    if name ~= "." and name ~= ".." and lfs.attributes(dir .. "/" .. name, "mode") == "directory" then
      out[#out + 1] = name
    end
  end
  table.sort(out)
  return out
end

--- contains(got, want [, path]): every key of want is in got with the same
-- value, recursively; lists match in length too
function M.contains(got, want, path)
  path = path or "$"
  if type(want) ~= "table" then
    assert(got == want, string.format("%s: expected %s, got %s", path, tostring(want), tostring(got)))
    return
  end
  assert(type(got) == "table", string.format("%s: expected a table, got %s", path, tostring(got)))
  if json.is_array(want) and next(want) ~= nil then
    assert(#got == #want, string.format("%s: expected %d items, got %d", path, #want, #got))
  end
  for k, v in pairs(want) do M.contains(got[k], v, path .. "." .. tostring(k)) end
end

--- frames(list) -> stream frames as {event?, data}, data decoded (but "[DONE]")
function M.frames(list)
  local out = {}
  for _, f in ipairs(list) do
    local event, data = nil, f
    if type(f) == "table" then event, data = f.event, f.data end
    out[#out + 1] = { event = event, data = data == "[DONE]" and data or json.decode(data) }
  end
  return out
end

--- absent(value, paths, what): none of the dotted paths is in value
function M.absent(value, paths, what)
  for _, path in ipairs(paths or {}) do
    local v = value
    for k in path:gmatch("[^.]+") do v = type(v) == "table" and v[tonumber(k) or k] or nil end
    assert(v == nil, what .. ": " .. path .. " should be absent")
  end
end

--- refused(want, ok, err): a refusal as error.json describes it
-- ({status, message (a part of it), param?})
function M.refused(want, ok, err)
  assert(not ok, "expected a refusal: " .. tostring(want.message))
  assert(err.status == want.status, string.format("status: expected %s, got %s (%s)",
    tostring(want.status), tostring(err.status), tostring(err.message)))
  assert(tostring(err.message):find(want.message, 1, true),
    string.format("message: expected a part %q, got %q", want.message, tostring(err.message)))
  if want.param then assert(want.param == err.param, "param: expected " .. want.param .. ", got " .. tostring(err.param)) end
end

--- upstream_events(adapter, up) -> the canonical events an adapter makes of
-- an upstream's answer ({json = body} or {frames = [{event?, data | json}]})
function M.upstream_events(ad, up, creq)
  if up.fixture then up = M.read("spec/fixtures/upstream/" .. up.fixture .. ".json") end
  local events = {}
  local function add(evs) for _, e in ipairs(evs) do events[#events + 1] = e end end
  if up.frames then
    local dec = ad.decoder()
    for _, f in ipairs(up.frames) do add(dec:frame(f.data or json.encode(f.json), f.event)) end
    add(dec:finish())
  else
    add(ad.response(up.json, creq or {}))
  end
  return events
end

--- client_answer(fd, creq, events) -> what the client gets: the stream
-- frames (decoded) or the collected body
function M.client_answer(fd, creq, events)
  if creq.stream then
    local enc, frames = fd.stream_encoder(creq, { id = "ID", created = 1 }), {}
    for _, e in ipairs(events) do
      -- an error event reaches the encoder as the exchange hands it on
      local out = e.type == "error" and enc:error(errors.new(e.status or 502, e.message,
        { type = e.error_type, code = e.code, param = e.param })) or enc:event(e)
      for _, f in ipairs(out) do frames[#frames + 1] = f end
    end
    return M.frames(frames)
  end
  local col = fd.collector(creq, { id = "ID", created = 1 })
  for _, e in ipairs(events) do col:event(e) end
  return col:result()
end

return M
