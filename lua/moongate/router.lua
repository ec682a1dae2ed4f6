-- Routing: model name -> provider chain. Routes match the model exactly or
-- by glob (* and ?), may rewrite it (model) or take a prefix off it
-- (strip), and name a provider or a fallback list. A name no route takes
-- may still be served by a provider that lists its upstream's models (the
-- stored accounts' providers, cfg.account_providers, in that order, then
-- every other provider with a listing, by name; asked through
-- provider:has_model(name)), then by the WS workers.
-- Pure but for one info line: built from the config table and a provider
-- registry.
local errors = require "moongate.errors"
local models = require "moongate.models"
local log = require "moongate.log"

local M = {}
local Router = {}
Router.__index = Router

local function glob_to_pattern(glob)
  local p = glob:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".")
  return "^" .. p .. "$"
end
M.glob_to_pattern = glob_to_pattern

local function match(self, name)
  for _, r in ipairs(self.routes) do
    if name:find(r.pattern) then return r end
  end
end

--- new(cfg, providers [, opts]) -> router; providers: name -> provider instance
-- opts.dynamic(model) -> a provider name for a model no route matches (the
-- WS workers' announced models); opts.dynamic_models() -> the names it
-- serves, for models(). Config routes always win over announced models,
-- globs and the catch-all included: a worker names its own models, so were
-- it asked first, any worker could take the traffic the operator sent to
-- an upstream by announcing that model. Workers serve a routed name only
-- through a route that names the pool.
function M.new(cfg, providers, opts)
  local routes = { { match = "echo", pattern = "^echo$", chain = { "echo" }, exact = true } }
  for _, r in ipairs(cfg.routes or {}) do
    routes[#routes + 1] = {
      match = r.match,
      pattern = glob_to_pattern(r.match),
      exact = not r.match:find("[%*%?]"),
      chain = type(r.provider) == "table" and r.provider or { r.provider },
      model = r.model,
      strip = r.strip,
    }
  end
  -- the providers that can say which models they have: the stored
  -- accounts' first, then those that discover their upstream's models
  local accounts, seen, others = {}, {}, {}
  for _, pname in ipairs(cfg.account_providers or {}) do
    local p = providers[pname]
    if p then accounts[#accounts + 1] = { name = pname, provider = p }; seen[pname] = true end
  end
  for pname, p in pairs(providers) do
    if not seen[pname] and type(p) == "table" and p.listing then others[#others + 1] = pname end
  end
  table.sort(others)
  for _, pname in ipairs(others) do accounts[#accounts + 1] = { name = pname, provider = providers[pname] } end
  opts = opts or {}
  local self = setmetatable({ routes = routes, providers = providers, aliases = cfg.aliases or {},
    accounts = accounts, told = {},
    dynamic = opts.dynamic, dynamic_models = opts.dynamic_models, known = {}, known_n = 0 }, Router)
  -- made once: a closure per request keeps LuaJIT from compiling resolve()
  function self.is_exact(n)
    local r = match(self, n)
    return r and r.exact
  end
  return self
end

-- A chain ends at its first WS pool link: a request meant for a local
-- worker never falls back to another provider (with no worker connected,
-- its prompt would go to a third party instead).
local function route_for(self, r, name, model, effort)
  local chain = {}
  for i, pname in ipairs(r.chain) do
    local p = self.providers[pname]
    chain[i] = { name = pname, provider = p }
    if p and p.kind == "ws" then break end
  end
  local upstream = r.model or name
  local strip = not r.model and r.strip
  -- only a prefix with something after it: "work/" alone stays as it is
  if strip and #name > #strip and name:sub(1, #strip) == strip then upstream = name:sub(#strip + 1) end
  return { model = upstream, requested = model, effort = effort, chain = chain }
end

-- The first provider (account or discovering) that has this model serves it. Their lists
-- change as they are fetched again, so this is asked on each request, never
-- kept. While a model has not been logged yet, every account is asked, to
-- say once which others offer it too.
local function by_account(self, name)
  local first, others
  for _, a in ipairs(self.accounts) do
    local p = a.provider
    if p.has_model and p:has_model(name) then
      if not first then
        first = a.name
        if self.told[name] then break end
      else
        others = others or {}
        others[#others + 1] = a.name
      end
    end
  end
  if others then
    self.told[name] = true
    log.info("model %s: served by provider %s (also offered by %s)", name, first, table.concat(others, ", "))
  end
  return first
end

local KNOWN_MAX = 1024 -- model names whose static answer a router keeps

--- resolve(model) -> {model, requested, effort?, chain = {{name, provider}}} | nil, err
-- An answer may be shared between requests for the same model: read it,
-- never change it.
function Router:resolve(model)
  -- what the config says about this name never changes for this router;
  -- only the accounts' and the WS workers' models do, so they are asked
  -- each time, and only for a name no route matches
  local k = self.known[model]
  if not k then
    local name, effort = models.normalize(model, self.aliases, self.is_exact)
    local r = match(self, name)
    k = { name = name, effort = effort, route = r and route_for(self, r, name, model, effort) }
    -- the config's answer for a name never changes with this router (the
    -- fast path may keep it: fast.lua)
    if k.route then k.route.fixed = true end
    if self.known_n >= KNOWN_MAX then self.known, self.known_n = {}, 0 end
    self.known[model], self.known_n = k, self.known_n + 1
  end
  if k.route then return k.route end
  if self.accounts[1] then
    local pname = by_account(self, k.name)
    if pname then return route_for(self, { chain = { pname } }, k.name, model, k.effort) end
    -- a name of the account's own that merely looks like NAME-effort
    if k.name ~= model then
      pname = by_account(self, model)
      if pname then return route_for(self, { chain = { pname } }, model, model) end
    end
    -- Ollama lists llama3.2:latest; its users type llama3.2
    if not k.name:find(":", 1, true) then
      local tagged = k.name .. ":latest"
      pname = by_account(self, tagged)
      if pname then return route_for(self, { chain = { pname }, model = tagged }, k.name, model, k.effort) end
    end
  end
  if self.dynamic then
    local pname = self.dynamic(k.name)
    if pname then return route_for(self, { chain = { pname } }, k.name, model, k.effort) end
  end
  return nil, errors.new(404, string.format("The model `%s` does not exist or you do not have access to it.", model),
    { code = "model_not_found" })
end

--- models() -> sorted list of model ids the routes serve
function Router:models()
  local seen, out = {}, {}
  local function add(id)
    if not seen[id] then seen[id] = true; out[#out + 1] = id end
  end
  for _, r in ipairs(self.routes) do
    if r.exact then add(r.match) end
    for _, pname in ipairs(r.chain) do
      local p = self.providers[pname]
      for _, m in ipairs(p and p.models or {}) do
        -- a route that strips a prefix serves the provider's models with it
        local id = r.strip and not r.model and r.strip .. m or m
        if id:find(r.pattern) then add(id) end
      end
    end
  end
  -- the accounts' own names (their NAME/model forms come from their routes)
  for _, a in ipairs(self.accounts) do
    if a.provider.has_model then
      for _, m in ipairs(a.provider.models or {}) do add(m) end
    end
  end
  for alias in pairs(self.aliases) do add(alias) end
  -- announced names a route takes are not the workers' to list
  for _, id in ipairs(self.dynamic_models and self.dynamic_models() or {}) do
    if not match(self, id) then add(id) end
  end
  table.sort(out)
  return out
end

-- One shape both SDKs accept: OpenAI's keys and Anthropic's side by side.
local function model_object(id, created)
  return { id = id, object = "model", created = created, owned_by = "moongate",
    type = "model", display_name = id, created_at = os.date("!%Y-%m-%dT%H:%M:%SZ", created) }
end
M.model_object = model_object

--- model_list(ids, created) -> GET /v1/models's answer: each id as both
-- SDKs read a model (created: when the gateway started, epoch seconds)
function M.model_list(ids, created)
  local json = require "moongate.json"
  local data = {}
  for i, id in ipairs(ids) do data[i] = model_object(id, created) end
  return { object = "list", data = #data > 0 and data or json.empty_array, has_more = false,
    first_id = data[1] and data[1].id or json.null, last_id = data[#data] and data[#data].id or json.null }
end

return M
