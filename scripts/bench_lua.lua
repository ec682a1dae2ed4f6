-- The Lua layer's own cost per request, without the daemon: the app runs
-- with moongate.core replaced by a host that answers at once (no sockets,
-- no curl), so the figure is the routing, front doors, adapters and
-- exchange alone. For changes to the Lua layer and to provider scripts;
-- scripts/bench measures the whole gateway.
--   luajit scripts/bench_lua.lua [--requests N] [--rounds R] [--only TEXT]
-- (--only: the cases whose name holds TEXT)
-- Prints, per case, the median over R rounds of the time per request and
-- the bytes the Lua heap allocated per request.
local ROOT = (arg[0]:match("^(.*)/scripts/[^/]*$") or ".")
package.path = ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. package.path
-- the JSON scanner the daemon has built in (scripts/build makes it as a
-- module too); without it a passthrough decodes the whole body
package.cpath = ROOT .. "/build/lua/?.so;" .. package.cpath

local opts = { requests = 100000, rounds = 5 }
for i = 1, #arg do
  if arg[i] == "--requests" then opts.requests = tonumber(arg[i + 1]) end
  if arg[i] == "--rounds" then opts.rounds = tonumber(arg[i + 1]) end
  if arg[i] == "--only" then opts.only = arg[i + 1] end
end

-- the host: each primitive does what C would, minus the I/O, and records
-- how the request ended so that a case that fails cannot pass for fast
local fetches, ended = {}, {}
local function ends(h, status) ended[h] = status end
local core = {
  version = "bench", _cpu_count = function() return 1 end,
  _log = function() end, _log_level = function() end,
  _on_close = function() end, _on_drain = function() end, _req_note = function() end,
  _pool_serves = function() return false end, _pool_models = function() return {} end,
  _respond = function(h, status) ends(h, status) return true end,
  _stream_start = function(h, status) ended[h] = -status return true end, -- negative: open
  _stream_sse = function() return true, 0 end,
  _stream_end = function(h) ends(h, -ended[h]) return true end,
  _fetch = function(o, cbs)
    assert(o.url and o.body and o.headers, "a fetch without url, body or headers")
    fetches[#fetches + 1] = cbs
    return {}
  end,
  _fetch_cancel = function() end, _fetch_pipe = function() end, _fetch_resume = function() end,
  -- (in the daemon C then writes the text deltas itself; here they keep
  -- coming to Lua, so a translated stream's figure is an upper bound)
  _fetch_template = function() end,
  -- the response store is C's, outside the Lua heap: a put is a copy
  _store_put = function(_, text) return #text > 0 end, _store_get = function() return nil end,
  _store_delete = function() return false end, _store_stats = function() return {} end,
}
package.loaded["moongate.core"] = core
package.loaded["luv"] = { hrtime = function() return 0 end }

local config = require "moongate.config"
local json = require "moongate.json"
local cfg = config.defaults()
cfg.workers = 1
cfg.providers = { up = { kind = "openai", base_url = "http://127.0.0.1:1/v1", api_key = "sk-bench" },
  claude = { kind = "anthropic", base_url = "http://127.0.0.1:1", api_key = "sk-bench" } }
cfg.routes = { { match = "claude-*", provider = "claude" }, { match = "*", provider = "up" } }
assert(config.validate(cfg))
local app = require("moongate.app").new(cfg, { worker = 1, workers = 1 })

local chat = '{"model":"m","messages":[{"role":"user","content":"Say hello."}]}'
local messages = '{"model":"m","max_tokens":64,"messages":[{"role":"user","content":"Say hello."}]}'
local responses = '{"model":"m","input":"Say hello.","max_output_tokens":64}'
-- an agent's turn as coding agents send it (scripts/agent_request.lua, about 167 KiB)
package.path = ROOT .. "/scripts/?.lua;" .. package.path
local agent = require "agent_request"
local agent_openai, agent_anthropic = agent.build("openai"), agent.build("anthropic")
local agent_openai_to_claude = agent.build("openai", { model = "claude-zero" })
local function streamed(body) return (body:gsub("}$", ',"stream":true}')) end
local answer = json.encode({ id = "chatcmpl-1", object = "chat.completion", created = 1, model = "m",
  choices = { { index = 0, message = { role = "assistant", content = "Hello." }, finish_reason = "stop" } },
  usage = { prompt_tokens = 3, completion_tokens = 2, total_tokens = 5 } })
local function delta(i)
  return string.format('{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":' ..
    '[{"index":0,"delta":{"content":"tok%d "},"finish_reason":null}]}', i)
end
local deltas = {}
for i = 1, 64 do deltas[i] = delta(i) end
local last = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":' ..
  '[{"index":0,"delta":{},"finish_reason":"stop"}]}'
local sse = { ["content-type"] = "text/event-stream" }
local js = { ["content-type"] = "application/json" }

-- each case: the client's path and body, and what the upstream does with
-- the fetch (the frames Lua sees: on a passthrough stream C pipes the
-- ordinary frames once the first is through, so Lua sees that one and the end)
-- the upstream's whole answer, and its stream of 64 deltas, as C hands them on
local function whole(cb) cb.on_done(nil, nil, answer, 200, js) end
local anthropic_answer = json.encode({ id = "msg_1", type = "message", role = "assistant", model = "claude-zero",
  content = { { type = "text", text = "Hello." } }, stop_reason = "end_turn", stop_sequence = json.null,
  usage = { input_tokens = 3, output_tokens = 2 } })
local function whole_anthropic(cb) cb.on_done(nil, nil, anthropic_answer, 200, js) end
local function stream64(cb)
  for i = 1, 64 do cb.on_frame(deltas[i], nil) end
  cb.on_frame(last, nil)
  cb.on_frame("[DONE]", nil)
  cb.on_done(nil, nil, "", 200, sse)
end

local cases = {
  { name = "passthrough, whole answer", path = "/v1/chat/completions", body = chat, upstream = whole },
  { name = "passthrough, stream of 64", path = "/v1/chat/completions", body = streamed(chat),
    upstream = function(cb)
      cb.on_frame(deltas[1], nil)
      cb.on_frame(last, nil)
      cb.on_frame("[DONE]", nil)
      cb.on_done(nil, nil, "", 200, sse)
    end },
  { name = "translating, whole answer", path = "/v1/messages", body = messages, upstream = whole },
  { name = "agent turn, passthrough", path = "/v1/chat/completions", body = agent_openai, upstream = whole, agent = true },
  { name = "agent turn, translating", path = "/v1/messages", body = agent_anthropic, upstream = whole, agent = true },
  { name = "agent turn, translating OpenAI to Anthropic", path = "/v1/chat/completions", body = agent_openai_to_claude,
    upstream = whole_anthropic, agent = true },
  { name = "translating, stream of 64", path = "/v1/messages", body = streamed(messages), upstream = stream64 },
  -- the Responses door (its answer kept in the response store, as by default)
  { name = "Responses, whole answer", path = "/v1/responses", body = responses, upstream = whole },
  { name = "Responses, stream of 64", path = "/v1/responses", body = streamed(responses), upstream = stream64 },
}

local headers = { ["content-type"] = "application/json", host = "127.0.0.1" }
local function one(case, h)
  app:handle({ h = h, method = "POST", path = case.path, headers = headers, body = case.body })
  local cb = table.remove(fetches)
  if not cb then error(case.name .. ": no upstream request (answered " .. tostring(ended[h]) .. ")") end
  case.upstream(cb)
  if ended[h] ~= 200 then error(case.name .. ": the request ended with " .. tostring(ended[h])) end
  ended[h] = nil
end

local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

print(string.format("Lua layer per request, core stubbed: %d requests a round, median of %d rounds (%s)",
  opts.requests, opts.rounds, jit and jit.version or _VERSION))
for _, case in ipairs(cases) do
  if opts.only and not case.name:find(opts.only, 1, true) then goto next end
  local h = 0
  -- (an agent's turn is a thousand times the work: a thousandth of the requests)
  local n = case.agent and math.max(1, math.floor(opts.requests / 1000)) or opts.requests
  for _ = 1, case.agent and 20 or 2000 do h = h + 1; one(case, h) end -- warm: traces compiled, heap grown
  local times = {}
  for r = 1, opts.rounds do
    local t0 = os.clock()
    for _ = 1, n do h = h + 1; one(case, h) end
    times[r] = (os.clock() - t0) / n * 1e6
  end
  collectgarbage("collect")
  collectgarbage("stop")
  local before = collectgarbage("count")
  local m = case.agent and 10 or 1000
  for _ = 1, m do h = h + 1; one(case, h) end
  local bytes = (collectgarbage("count") - before) * 1024 / m
  collectgarbage("restart")
  print(string.format("  %-28s %7.2f us  %7.0f bytes allocated", case.name, median(times), bytes))
  ::next::
end
