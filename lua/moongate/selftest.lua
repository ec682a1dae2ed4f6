-- The check a freshly loaded Lua state passes before it takes traffic (a
-- hot reload swaps it in only then): one canned request per front door is
-- decoded, routed, and translated by every provider that has an adapter,
-- without being sent. A refusal (a front door or an adapter saying no to the canned
-- request, a model no route serves) is an answer, not a failure; a Lua error
-- anywhere in the path is a failure. Pure: the app is handed in.
local json = require "moongate.json"
local errors = require "moongate.errors"

local M = {}

local function user(text) return { { role = "user", content = text } } end

-- front door module name -> canned body for model m (and the decode's extra argument)
M.canned = {
  openai_chat = function(m) return { model = m, messages = user("hi"), max_tokens = 8 } end,
  anthropic_messages = function(m) return { model = m, messages = user("hi"), max_tokens = 8 } end,
  openai_responses = function(m) return { model = m, input = "hi", max_output_tokens = 16 } end,
  openai_completions = function(m) return { model = m, prompt = "hi", max_tokens = 8 } end,
  openai_embeddings = function(m) return { model = m, input = "hi" } end,
  ollama = function(m) return { model = m, messages = user("hi"), stream = false }, "chat" end,
}

-- the model the checks route: the first one the routes list, else "echo"
local function model_of(app)
  local ok, list = pcall(app.router.models, app.router)
  if ok and type(list) == "table" and list[1] then return list[1] end
  return "echo"
end

-- one front door: nil, or what failed in the front door or the router; the
-- providers' failures go into `failed` (provider name -> message). The
-- canned request is decoded and routed; then every provider with an
-- adapter translates it (the route's own and the rest: a broken script
-- shows whatever the model).
local function check(app, name, fd, model, providers, failed)
  local make = M.canned[name]
  if not make or type(fd.decode) ~= "function" then return nil end
  local body, arg = make(model)
  local text = json.encode(body)
  local function decode() return fd.decode(text, { ["content-type"] = "application/json" }, arg) end
  local ok, creq = pcall(decode)
  if not ok then return string.format("front door %s: decoding a canned request raised: %s", name, tostring(creq)) end
  if not creq then return nil end -- refused: nothing more to check
  local rok, route = pcall(app.router.resolve, app.router, creq.model)
  if not rok then return string.format("front door %s: routing %q raised: %s", name, model, tostring(route)) end
  for _, pname in ipairs(providers) do
    local p = app.providers[pname]
    local a = type(p) == "table" and p.adapter
    if not failed[pname] and type(a) == "table" and type(a.request) == "function" then
      local fresh = decode() -- each its own: a translation may note things on it
      fresh.upstream_model = route and route.model or fresh.model
      local cok, err = pcall(errors.catch, a.request, fresh, p.conf)
      if not cok then
        failed[pname] = string.format("front door %s: provider %s translating a canned request raised: %s", name,
          pname, tostring(err))
      end
    end
  end
  return nil
end

--- run(app) -> nil | message, {provider name -> message}: message when a
-- front door or the router fails (nothing can be served right); the table
-- holds each provider whose translation fails (its requests would fail;
-- the caller decides what that means: worker.lua)
function M.run(app)
  local model = model_of(app)
  local providers = {}
  for pname in pairs(app.providers or {}) do providers[#providers + 1] = pname end
  table.sort(providers)
  local names = {}
  for name in pairs(M.canned) do names[#names + 1] = name end
  table.sort(names)
  local failed = {}
  for _, name in ipairs(names) do
    local err = check(app, name, require("moongate.frontdoor." .. name), model, providers, failed)
    if err then return err, failed end
  end
  return nil, failed
end

return M
