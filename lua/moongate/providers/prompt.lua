-- kind = "prompt": chat requests served by a raw completion back end that
-- knows no chat format (prompt mode, docs/LOCAL.md; the adapter:
-- adapters/prompt.lua). Its config:
--   completion_api  "openai" (default): POST {base_url}/completions, OpenAI's
--                   legacy completions (vLLM, llama-server's /v1, ...);
--                   "llamacpp": POST {base_url}/completion, llama.cpp's own
--   template        function(messages, creq) -> prompt, in place of the
--                   role-tagged default ("[User]: ..." lines, then "[Assistant]:")
--   stop            the stop sequences added to the client's (default
--                   {"\n[User]:"}; {} adds none)
-- base_url defaults to llama-server's address (http://127.0.0.1:8080, with
-- /v1 for the OpenAI API); no key is needed unless one is configured.
-- Each request is logged at info (model, messages, the prompt's size), and
-- an answer with no text at warn: the client gets it as an empty answer.
local upstream = require "moongate.providers.upstream"
local prompt = require "moongate.adapters.prompt"
local log = require "moongate.log"

local apis = { openai = prompt.openai, llamacpp = prompt.llamacpp }

local function model_of(creq) return tostring(creq.upstream_model or creq.model) end

-- events on their way to the client; the first "done" with no text before
-- it is an empty generation, worth a warning (never an error)
local function watch(p, creq, state, events)
  for _, ev in ipairs(events) do
    if ev.type == "text_delta" and ev.text ~= "" then
      state.text = true
    elseif ev.type == "done" and not state.text and not state.warned then
      state.warned = true
      log.warn("provider %s: the back end generated no text for model %s; the client gets an empty answer",
        p.name, model_of(creq))
    end
  end
  return events
end

-- the adapter of one API, its answers watched for an empty generation
local function watched(p, a)
  local w = setmetatable({}, { __index = a })
  function w.response(body, creq)
    return watch(p, creq, {}, a.response(body, creq))
  end
  function w.decoder(creq)
    local dec, state = a.decoder(creq), {}
    return {
      frame = function(_, data, event) return watch(p, creq, state, dec:frame(data, event)) end,
      finish = function() return watch(p, creq, state, dec:finish()) end,
    }
  end
  return w
end

return upstream.kind {
  adapter = prompt.openai,
  schema = {
    completion_api = { type = "string", enum = { openai = true, llamacpp = true } },
    template = "function",
    stop = { type = "list", values = "string" },
  },
  init = function(p)
    local a = apis[p.conf.completion_api or "openai"]
    p.adapter = watched(p, a)
    if not p.conf.base_url then p.base_url = a.defaults.base_url end
  end,
  -- the request as built: one info line per request (its messages: those
  -- the prompt was made of, the system prompt one of them)
  shape = function(p, wire, creq)
    local n = #creq.messages + ((creq.system and creq.system ~= "") and 1 or 0)
    log.info("provider %s: model %s, %d messages, a prompt of %d bytes", p.name, model_of(creq), n, #wire.prompt)
  end,
}
