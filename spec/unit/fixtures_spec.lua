-- The N + M fixtures: each front door and each adapter against the
-- canonical form alone (docs/CANONICAL.md). No daemon.
--
-- spec/fixtures/frontdoor/<door>/<case>/ (lua/moongate/frontdoor/<door>.lua)
--   request.json (+ headers.json)  what the client sends, as bytes
--   canonical.json   a subset of canonical.snapshot(creq) it must decode to
--   error.json       {status, message (a part), param?, target?}: the request
--                    is refused, by decode or when translated (building the
--                    canonical messages, or a field's fate toward `target`)
--   dropped.json     what translating it lists as left out (creq.dropped:
--                    decoding's, and the fields whose fate is "drop")
--   events.json      canonical events; with stream.json (the frames the
--                    stream encoder writes, a subset each, same count) and/or
--                    response.json (a subset of the collected answer)
-- spec/fixtures/adapter/<adapter>/<case>/ (lua/moongate/adapters/<adapter>.lua)
--   canonical.json (+ conf.json)  a canonical request
--   upstream_request.json  a subset of what the adapter sends
--   absent.json      dotted paths that must not be in it
--   dropped.json     what the translation lists as left out
--   error.json       {status, message, param?}: the adapter refuses it
--   upstream.json + events.json  an upstream answer ({json} or {frames})
--                    and the canonical events made of it (same count, a
--                    subset each)
local json = require "moongate.json"
local errors = require "moongate.errors"
local canonical = require "moongate.canonical"
local fx = require "support.fixtures"

local function sorted(t) t = { unpack(t or {}) }; table.sort(t); return t end

-- a JSON round trip, so that what is compared is what JSON can say
local function plain(v) return json.decode(json.encode_raw(v)) end

local function module(kind, name)
  local ok, mod = pcall(require, "moongate." .. kind .. "." .. name)
  return ok and mod or nil
end

for _, name in ipairs(fx.list("spec/fixtures/frontdoor")) do
  describe("front door " .. name, function()
    local fd = module("frontdoor", name)
    for _, case in ipairs(fx.list("spec/fixtures/frontdoor/" .. name)) do
      local dir = "spec/fixtures/frontdoor/" .. name .. "/" .. case .. "/"
      it(case, function()
        assert(fd, "no module moongate.frontdoor." .. name)
        local body = fx.text(dir .. "request.json")
        local creq, err = fd.decode(body, fx.maybe(dir .. "headers.json", {}))
        local want_err = fx.maybe(dir .. "error.json")
        if want_err then
          if not creq then return fx.refused(want_err, false, err) end
          local ok, rerr = errors.catch(function()
            canonical.snapshot(creq)
            canonical.foreign_fields(creq, want_err.target or "another")
          end)
          return fx.refused(want_err, ok, rerr)
        end
        assert(creq, err and err.message)
        local ok, snap = errors.catch(canonical.snapshot, creq)
        assert(ok, snap and snap.message)
        if fx.exists(dir .. "canonical.json") then
          fx.contains(plain(snap), fx.read(dir .. "canonical.json"), "canonical")
        end
        if fx.exists(dir .. "dropped.json") then -- decoding's and the fields' fates on translation
          canonical.foreign_fields(creq, "another")
          assert.same(sorted(fx.read(dir .. "dropped.json")), sorted(creq.dropped))
        end
        local events = fx.maybe(dir .. "events.json")
        if not events then return end
        for file, stream in pairs { ["stream.json"] = true, ["response.json"] = false } do
          if fx.exists(dir .. file) then
            creq.stream = stream
            fx.contains(plain(fx.client_answer(fd, creq, events)), fx.read(dir .. file), file)
          end
        end
      end)
    end
  end)
end

for _, name in ipairs(fx.list("spec/fixtures/adapter")) do
  describe("adapter " .. name, function()
    local ad = module("adapters", name)
    for _, case in ipairs(fx.list("spec/fixtures/adapter/" .. name)) do
      local dir = "spec/fixtures/adapter/" .. name .. "/" .. case .. "/"
      it(case, function()
        assert(ad, "no module moongate.adapters." .. name)
        local creq = fx.read(dir .. "canonical.json")
        creq.upstream_model = creq.upstream_model or creq.model
        local conf = fx.maybe(dir .. "conf.json", {})
        local ok, wire = errors.catch(ad.request, creq, conf)
        local want_err = fx.maybe(dir .. "error.json")
        if want_err then return fx.refused(want_err, ok, wire) end
        assert(ok, wire and wire.message)
        if fx.exists(dir .. "upstream_request.json") then
          fx.contains(plain(wire), fx.read(dir .. "upstream_request.json"), "upstream request")
        end
        fx.absent(wire, fx.maybe(dir .. "absent.json"), "upstream request")
        if fx.exists(dir .. "dropped.json") then
          assert.same(sorted(fx.read(dir .. "dropped.json")), sorted(creq.dropped))
        end
        if fx.exists(dir .. "upstream.json") then
          local got = fx.upstream_events(ad, fx.read(dir .. "upstream.json"), creq)
          fx.contains(plain(got), fx.read(dir .. "events.json"), "events")
        end
      end)
    end
  end)
end
