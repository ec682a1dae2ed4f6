-- Configuration: defaults, the config file (a Lua chunk returning a table),
-- MOONGATE_* environment variables and command-line flags, merged with the
-- precedence flag > environment > file > default, then validated. Every
-- problem names the key's path. Pure: file reading and the environment are
-- passed in, so specs drive it without the daemon.
local operator = require "moongate.operator"

local M = {}

local MiB = 1024 * 1024

function M.defaults()
  return {
    listen = "127.0.0.1:8080",
    workers = nil, -- filled by resolve(): the number of cores
    log_level = "info",
    log_format = "text", -- "json": one JSON object a line (docs/LOGS.md)
    max_body_bytes = 10 * MiB,
    max_header_bytes = 16384,
    stream_high_water = 65536,
    keepalive_timeout = 60,
    request_timeout = 30,
    shutdown_timeout = 30, -- seconds running requests get to finish after SIGTERM / SIGINT
    script_timeout_ms = 2000, -- a Lua call running longer is stopped (src/watchdog.h); 0: never
    watch = true, -- a change to the config file or a script on lua_path reloads (docs/RELOAD.md)
    upstream_http2_streams = 100,
    fast_path = true, -- whole chat passthroughs served in C once their route is known (docs/BENCHMARK.md)
    providers = {},
    routes = {},
    aliases = {},
    websocket = M.websocket_defaults(),
    response_store = { max_entries = 10000, max_bytes = 64 * MiB }, -- stored responses, all threads
  }
end

function M.websocket_defaults()
  return {
    heartbeat_interval_ms = 25000, -- a heartbeat to each pool worker this often
    heartbeat_timeout_ms = 30000,  -- a worker silent this long is dropped
    queue_timeout_ms = 30000,      -- a request waits this long for a free worker
    max_queue = 1000,              -- requests waiting at once, then 429
    max_message_bytes = 16 * MiB,
    chat_model = "echo",           -- chat sockets' model when a message names none
    wait_for_worker_ms = 0,        -- a pool request with no worker connected: 503 at once
    max_inflight = 8,              -- answers one chat socket may have under way at once
  }
end

-- Schema --------------------------------------------------------------------
-- A spec is a type name, or a table {type=..., fields=..., values=..., ...}.

local function integer(min, max)
  return { type = "integer", min = min, max = max }
end

-- The kinds this build ships; any other kind is a module
-- moongate.providers.<kind> on lua_path (an operator's provider script).
local builtin_kinds = { "echo", "openai", "anthropic", "ws", "copilot", "chatgpt", "qwen", "prompt", "vllm", "llamacpp",
  "ollama" }

local list_of_strings = { type = "list", values = "string" }

-- What every provider table may hold, whatever its kind: the fields of an
-- HTTP upstream and of an account pool. A kind module adds its own fields
-- by exporting `schema` (field name -> spec), merged over these (see
-- provider_spec()); a kind without one takes these only.
M.provider_base = {
  kind = { type = "string", required = true }, -- checked in validate()
  base_url = "string",
  api_key = "string",
  api_key_env = "string",
  models = list_of_strings,
  headers = { type = "map", values = "string" },
  timeout_ms = integer(0),             -- whole request; 0: none; unset: 10 min for a whole answer, none for a stream
  connect_timeout_ms = integer(1),
  first_byte_timeout_ms = integer(1),
  idle_timeout_ms = integer(1),        -- longest gap between stream frames
  retries = integer(0, 10),            -- per provider, before the next in the chain
  max_concurrent = integer(0, 1000000), -- the gate's permits for this provider (0: no limit; gate.lua)
  retry_base_ms = integer(1),
  forward_client_key = "boolean",      -- use the client's own key upstream
  insecure = "boolean",                -- skip TLS verification (tests only)
  accept_compressed = "boolean",       -- ask for gzip/br/zstd answers
  http_client = { type = "string", enum = { builtin = true, curl = true } }, -- who carries plain http:// (docs/CONFIG.md)
  default_max_tokens = integer(1),
  send_reasoning = "boolean",
  passthrough = "boolean",             -- false: always translate, even format to same format
  max_output_tokens = integer(1),      -- translated requests ask for at most this many tokens
  efforts = { type = "list", values = { type = "string", enum = { none = true, minimal = true,
    low = true, medium = true, high = true, xhigh = true, max = true } } }, -- the reasoning efforts the upstream takes
  -- pools: several stored accounts or keys of one kind, the least recently
  -- limited serving; a limited one rests for the upstream's Retry-After,
  -- else cooldown_ms
  accounts = { type = "list", values = "account_name" }, -- stored account names (moongate login ... --name NAME)
  account = "account_name",            -- one stored account
  api_keys = list_of_strings,
  api_key_envs = list_of_strings,
  cooldown_ms = integer(0),
  models_ttl_s = integer(1),           -- how long a fetched models list is kept
  discover = "boolean",                -- list the upstream's models (docs/LOCAL.md)
  models_url = "string",               -- where: a path after base_url (/models) or a whole URL
}

local route_schema = {
  type = "table",
  fields = {
    match = { type = "string", required = true },
    provider = { type = "string_or_list", required = true },
    model = "string",                  -- the model name sent upstream instead of the client's
    strip = "string",                  -- a prefix taken off the client's model name before it goes upstream
  },
}

M.schema = {
  type = "table",
  fields = {
    listen = "string",
    workers = integer(1, 256),
    log_level = { type = "string", enum = { error = true, warn = true, info = true, debug = true } },
    log_format = { type = "string", enum = { text = true, json = true } },
    max_body_bytes = integer(1024),
    max_header_bytes = integer(1024, 65535),
    stream_high_water = integer(1024),
    keepalive_timeout = integer(1),
    request_timeout = integer(1),
    shutdown_timeout = { type = "number", min = 0, max = 86400 }, -- seconds (a fraction is fine)
    upstream_http2_streams = integer(1, 2147483647), -- streams at once on one HTTP/2 upstream connection
    script_timeout_ms = integer(0, 86400000), -- longest run of one call into Lua; 0: no limit
    lua_path = "string",
    watch = "boolean",
    fast_path = "boolean",
    tls = { type = "table", fields = { cert = { type = "string", required = true },
                                       key = { type = "string", required = true },
                                       http2 = "boolean" } },
    providers = { type = "map", values = "provider" }, -- each checked in validate(), by its kind
    routes = { type = "list", values = route_schema },
    aliases = { type = "map", values = "string" },
    keys = { type = "list", values = { type = "table", fields = { -- inbound keys (README, "Security")
      key = "string", key_env = "string", name = "string", models = { type = "list", values = "string" },
      -- rate limits of this key, shared by every worker (docs/GATE.md)
      rpm = integer(1, 1000000000), tpm = integer(1, 1000000000000),
      tokens_per_day = integer(1, 1000000000000000), tokens_per_month = integer(1, 1000000000000000),
    } } },
    server_names = { type = "list", values = "string" }, -- Hosts let in besides localhost, on loopback
    cors = { type = "table", fields = {
      allowed_origins = { type = "list", values = "string" }, -- globs ("*": any); default: loopback pages
    } },
    gate = { type = "table", fields = { -- concurrency permits and fair queuing (docs/GATE.md)
      global = integer(0, 1000000),           -- requests upstream at once, all providers (0: no limit)
      queue_timeout_ms = integer(0, 3600000), -- a request waits this long for a permit, then 429
      max_queue = integer(0, 1000000),        -- waiting requests per key name at each gate; past it, 429 at once
      models = { type = "map", values = integer(1, 1000000) }, -- model glob -> permits
    } },
    response_store = { type = "table", fields = { -- least recently used out first; 0 entries: store nothing
      max_entries = integer(0, 2147483647),
      max_bytes = integer(0, 1099511627776), -- the ids' and texts' sizes summed (at most 1 TiB)
    } },
    websocket = { type = "table", fields = {
      heartbeat_interval_ms = integer(10),
      heartbeat_timeout_ms = integer(10),
      queue_timeout_ms = integer(0),
      max_queue = integer(0),
      max_message_bytes = integer(1024),
      worker_token = "string",                             -- workers must present it
      allowed_origins = { type = "list", values = "string" }, -- globs; default: loopback pages
      chat_model = "string",
      wait_for_worker_ms = integer(0),
      max_inflight = integer(1),
    } },
  },
}

local function typename(v)
  local t = type(v)
  if t == "number" and v % 1 == 0 then return "integer" end
  return t
end

local function is_list(t)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then return false end
    n = n + 1
  end
  return n == #t
end

local function join(path, key)
  if type(key) == "number" then return path .. "[" .. key .. "]" end
  if path == "" then return key end
  if not key:match("^[%a_][%w_]*$") then
    return path .. "[" .. string.format("%q", key) .. "]"
  end
  return path .. "." .. key
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local check, check_provider

local function check_value(spec, v, path, errs)
  if type(spec) == "string" then spec = { type = spec } end
  local t = spec.type
  local function bad(expected)
    errs[#errs + 1] = string.format("%s: expected %s, got %s", path, expected, typename(v))
  end
  if t == "string" or t == "account_name" then
    if type(v) ~= "string" then return bad("a string") end
    if t == "account_name" and not v:find("^[%w._-]+$") then
      errs[#errs + 1] = string.format("%s: %q is not an account name (letters, digits, '.', '_', '-')", path, v)
    end
    if spec.enum and not spec.enum[v] then
      local names = sorted_keys(spec.enum)
      errs[#errs + 1] = string.format("%s: %q is not one of %s", path, v, table.concat(names, ", "))
    end
  elseif t == "integer" or t == "number" then
    if type(v) ~= "number" or (t == "integer" and v % 1 ~= 0) then
      return bad(t == "integer" and "an integer" or "a number")
    end
    if spec.min and v < spec.min then
      errs[#errs + 1] = string.format("%s: must be at least %s, got %s", path, spec.min, v)
    elseif spec.max and v > spec.max then
      errs[#errs + 1] = string.format("%s: must be at most %s, got %s", path, spec.max, v)
    end
  elseif t == "boolean" then
    if type(v) ~= "boolean" then return bad("a boolean") end
  elseif t == "function" then -- a hook an operator writes in the config (a prompt template)
    if type(v) ~= "function" then return bad("a function") end
  elseif t == "string_or_list" then
    if type(v) == "string" then return end
    if type(v) ~= "table" or not is_list(v) or #v == 0 then
      return bad("a string or a non-empty list of strings")
    end
    for i, item in ipairs(v) do
      if type(item) ~= "string" then
        errs[#errs + 1] = string.format("%s: expected a string, got %s", join(path, i), typename(item))
      end
    end
  elseif t == "list" then
    if type(v) ~= "table" or not is_list(v) then return bad("a list") end
    for i, item in ipairs(v) do check_value(spec.values, item, join(path, i), errs) end
  elseif t == "map" then
    if type(v) ~= "table" then return bad("a table") end
    for _, k in ipairs(sorted_keys(v)) do
      if type(k) ~= "string" then
        errs[#errs + 1] = string.format("%s: keys must be strings, got %s", path, typename(k))
      else
        check_value(spec.values, v[k], join(path, k), errs)
      end
    end
  elseif t == "table" then
    if type(v) ~= "table" then return bad("a table") end
    check(spec, v, path, errs)
  end
  -- "provider": checked by validate(), which knows the kind's own fields
end

-- A table spec may say why a key is unknown (unknown_note), or let
-- unknown keys through (open: when its kind is unknown, the kind's own
-- error says what is wrong, not every key of the kind).
check = function(spec, t, path, errs)
  for _, k in ipairs(sorted_keys(t)) do
    local field = type(k) == "string" and spec.fields[k]
    if not field then
      if not spec.open then
        errs[#errs + 1] = string.format("%s: unknown key%s", join(path, type(k) == "string" and k or tostring(k)),
          spec.unknown_note or "")
      end
    else
      check_value(field, t[k], join(path, k), errs)
    end
  end
  for _, k in ipairs(sorted_keys(spec.fields)) do
    local field = spec.fields[k]
    if type(field) == "table" and field.required and t[k] == nil then
      errs[#errs + 1] = string.format("%s: required", join(path, k))
    end
  end
end

--- kind_module(kind, lua_path) -> module | nil, "unknown" | nil, "load", message
-- The module moongate.providers.<kind>, searched on lua_path first (as the
-- daemon's workers will search it), and loaded from there without the JIT
-- (moongate.operator). A module that raised while loading is
-- forgotten again, so that the next attempt reports the same error rather
-- than Lua's "loop or previous error".
function M.kind_module(kind, lua_path)
  if type(kind) ~= "string" or not kind:match("^[%w_]+$") then return nil, "unknown" end
  local name = "moongate.providers." .. kind
  if package.loaded[name] == nil and not package.preload[name]
      and not package.searchpath(name, (lua_path and lua_path .. ";" or "") .. package.path) then
    return nil, "unknown"
  end
  local saved, saved_op = package.path, operator.path()
  if lua_path then
    package.path = lua_path .. ";" .. saved
    operator.use(lua_path)
  end
  local ok, mod = pcall(require, name)
  package.path = saved
  if lua_path then operator.use(saved_op) end
  if not ok then
    package.loaded[name] = nil
    return nil, "load", tostring(mod)
  end
  return mod
end

-- The spec of one provider table: the shared base with the kind's own
-- fields over it. A kind of its own that cannot be found or loaded is
-- reported once, on .kind, and the table checked against the base only.
local function provider_spec(path, kind, lua_path, errs)
  local mod, why, msg = M.kind_module(kind, lua_path)
  if not mod then
    if why == "unknown" then
      errs[#errs + 1] = string.format("%s.kind: unknown kind %q (built in: %s; or a module moongate.providers.%s on lua_path)",
        path, kind, table.concat(builtin_kinds, ", "), kind)
    else
      errs[#errs + 1] = string.format("%s.kind: the module of kind %q failed to load: %s", path, kind, msg)
    end
    return { type = "table", fields = M.provider_base, open = true }
  end
  local own = type(mod) == "table" and mod.schema or nil
  if own ~= nil and type(own) ~= "table" then
    errs[#errs + 1] = string.format("%s.kind: the module of kind %q exports a schema that is not a table", path, kind)
    own = nil
  end
  local fields = {}
  for k, v in pairs(M.provider_base) do fields[k] = v end
  for k, v in pairs(own or {}) do
    if k ~= "kind" then fields[k] = v end -- kind stays the base's: required, a string
  end
  return { type = "table", fields = fields, unknown_note = string.format(" (kind %q does not take it)", kind) }
end

check_provider = function(path, p, lua_path, errs)
  if type(p) ~= "table" then
    errs[#errs + 1] = string.format("%s: expected a table, got %s", path, typename(p))
    return
  end
  local spec
  if type(p.kind) == "string" then
    spec = provider_spec(path, p.kind, lua_path, errs)
  else -- missing or not a string: check() says so; the other keys cannot be judged
    spec = { type = "table", fields = M.provider_base, open = true }
  end
  check(spec, p, path, errs)
end

--- parse_listen("host:port") -> host, port | nil, message
function M.parse_listen(s)
  if type(s) ~= "string" then return nil, "expected HOST:PORT" end
  local host, port = s:match("^%[([%x:]+)%]:(%d+)$")
  if not host then host, port = s:match("^([^:]*):(%d+)$") end
  if not host then
    if s:match("^%d+$") then host, port = "127.0.0.1", s
    else return nil, string.format("%q is not HOST:PORT", s) end
  end
  port = tonumber(port)
  if port > 65535 then return nil, string.format("port %d is out of range", port) end
  if host == "" or host == "*" then host = "0.0.0.0" end
  if host == "localhost" then host = "127.0.0.1" end
  return host, port
end

-- a host name that reaches this machine's loopback (or, as a listen
-- address, every address: 0.0.0.0 and ::)
local any_or_loopback = { ["localhost"] = true, ["::1"] = true, ["0.0.0.0"] = true, ["::"] = true }
local function local_host(h) return any_or_loopback[h] or h:match("^127%.") ~= nil end

--- self_url(url, host, port) -> does url lead to this daemon's own listening
-- socket (host:port)? A provider there would send each request back to the
-- daemon, which sends it on again, without end.
local function self_url(url, host, port)
  local scheme, h, p = url:match("^(https?)://%[([%x:]+)%]:?(%d*)")
  if not scheme then scheme, h, p = url:match("^(https?)://([^/:?#]+):?(%d*)") end
  if not scheme or port == 0 then return false end -- (port 0: the kernel's pick, unknown here)
  if (tonumber(p) or (scheme == "https" and 443 or 80)) ~= port then return false end
  h = h:lower()
  return h == host or (local_host(h) and local_host(host))
end
M.self_url = self_url

--- validate(cfg) -> true | nil, {messages}
function M.validate(cfg)
  local errs = {}
  if type(cfg) ~= "table" then
    return nil, { "config: expected a table, got " .. typename(cfg) }
  end
  check(M.schema, cfg, "", errs)
  local host, port -- the listen address, when it parses
  if type(cfg.listen) == "string" then
    host, port = M.parse_listen(cfg.listen)
    if not host then errs[#errs + 1] = "listen: " .. port end
  end
  if type(cfg.providers) == "table" then
    local lua_path = type(cfg.lua_path) == "string" and cfg.lua_path or nil
    for _, name in ipairs(sorted_keys(cfg.providers)) do
      if type(name) == "string" then
        local p = cfg.providers[name]
        check_provider(join("providers", name), p, lua_path, errs)
        if host and type(p) == "table" and type(p.base_url) == "string" and self_url(p.base_url, host, port) then
          errs[#errs + 1] = string.format("%s.base_url: %s is this daemon's own address (listen = %q): each request would be sent back to it, without end",
            join("providers", name), p.base_url, cfg.listen)
        end
      end
    end
  end
  -- a key's name is what its rate limits, metrics and logs know it by: one each
  local named = {}
  for i, k in ipairs(type(cfg.keys) == "table" and cfg.keys or {}) do
    local name = type(k) == "table" and k.name
    if type(name) == "string" then
      if named[name] then
        errs[#errs + 1] = string.format("keys[%d].name: %q is the name of keys[%d] too (each key's name is its own)",
          i, name, named[name])
      end
      named[name] = named[name] or i
    end
  end
  local origins = type(cfg.cors) == "table" and type(cfg.cors.allowed_origins) == "table" and cfg.cors.allowed_origins
  for i, o in ipairs(origins or {}) do
    -- an Origin is scheme://host[:port], never with a path: "https://a.b/" would match nothing
    if type(o) == "string" and o ~= "*" and o ~= "null" and not o:find("^[%w%*%?%+%.%-]+://[^/%s]+$") then
      errs[#errs + 1] = string.format("cors.allowed_origins[%d]: %q is not an origin (scheme://host[:port], with * or ? as wildcards, or \"*\" for any)", i, o)
    end
  end
  if type(cfg.routes) == "table" and type(cfg.providers) == "table" then
    for i, route in ipairs(cfg.routes) do
      if type(route) == "table" then
        local names = type(route.provider) == "table" and route.provider or { route.provider }
        for j, name in ipairs(names) do
          if type(name) == "string" and not cfg.providers[name] and name ~= "echo" and name ~= "workers" then
            local p = type(route.provider) == "table" and string.format("routes[%d].provider[%d]", i, j)
              or string.format("routes[%d].provider", i)
            errs[#errs + 1] = string.format("%s: no provider named %q", p, name)
          end
        end
      end
    end
  end
  if #errs > 0 then return nil, errs end
  return true
end

--- load_file(path) -> table | nil, message
-- The file is a Lua chunk that returns a table; it runs in an environment
-- with the safe standard functions and os.getenv, nothing else. It is the
-- operator's code: it and the functions it defines (hooks) run without the
-- JIT, so that the watchdog can stop them (moongate.operator).
function M.load_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, string.format("cannot read config %s: %s", path, err) end
  local text = f:read("*a")
  f:close()
  local chunk, perr = loadstring(text, "@" .. path)
  if not chunk then return nil, "config " .. perr end
  operator.off(chunk)
  local env = {
    os = { getenv = os.getenv }, string = string, table = table, math = math,
    tonumber = tonumber, tostring = tostring, pairs = pairs, ipairs = ipairs,
    type = type, error = error, assert = assert, select = select,
  }
  setfenv(chunk, env)
  local ok, value = pcall(chunk)
  if not ok then return nil, "config " .. tostring(value) end
  if type(value) ~= "table" then
    return nil, string.format("config %s must return a table, got %s", path, typename(value))
  end
  return value
end

-- Environment variables: name -> {key, kind}
M.env_vars = {
  MOONGATE_LISTEN = { "listen", "string" },
  MOONGATE_WORKERS = { "workers", "integer" },
  MOONGATE_LOG_LEVEL = { "log_level", "string" },
  MOONGATE_LOG_FORMAT = { "log_format", "string" },
  MOONGATE_MAX_BODY_BYTES = { "max_body_bytes", "integer" },
}

local function from_env(getenv, errs)
  local out = {}
  for _, name in ipairs(sorted_keys(M.env_vars)) do
    local key, kind = M.env_vars[name][1], M.env_vars[name][2]
    local v = getenv(name)
    if v and v ~= "" then
      if kind == "integer" then
        local n = tonumber(v)
        if not n then
          errs[#errs + 1] = string.format("%s: expected an integer, got %q", name, v)
        else
          out[key] = n
        end
      else
        out[key] = v
      end
    end
  end
  return out
end

-- Without a config file: a provider for each key in the environment, with
-- routes by the usual model prefixes. Base URLs come from MOONGATE_<NAME>_BASE_URL.
M.env_provider_table = {
  { name = "openai", kind = "openai", key = "OPENAI_API_KEY", base = "https://api.openai.com/v1",
    routes = { "gpt-*", "o1*", "o3*", "o4*", "chatgpt-*", "text-embedding-*" } },
  { name = "anthropic", kind = "anthropic", key = "ANTHROPIC_API_KEY", base = "https://api.anthropic.com",
    routes = { "claude-*" } },
  { name = "xai", kind = "openai", key = "XAI_API_KEY", base = "https://api.x.ai/v1", routes = { "grok-*" } },
  { name = "openrouter", kind = "openai", key = "OPENROUTER_API_KEY", base = "https://openrouter.ai/api/v1",
    routes = { "*/*" } },
}

function M.env_providers(cfg, getenv)
  for _, p in ipairs(M.env_provider_table) do
    if (getenv(p.key) or "") ~= "" then
      cfg.providers[p.name] = { kind = p.kind, api_key_env = p.key,
        base_url = getenv("MOONGATE_" .. p.name:upper() .. "_BASE_URL") or p.base }
      for _, m in ipairs(p.routes) do
        cfg.routes[#cfg.routes + 1] = { match = m, provider = p.name }
      end
    end
  end
end

-- Without a config file, every stored account is served: a provider named
-- after the account, and a route NAME/* that takes the prefix off (the
-- router also serves the account's models by their own names). Names the
-- daemon already uses, or that a route glob cannot hold, are skipped with
-- a warning. -> the names added, sorted; warnings appended to `warnings`.
local reserved = { echo = "the built-in echo provider", workers = "the WS worker pool" }

function M.account_providers(cfg, accounts, warnings)
  local added, routes, recs = {}, {}, {}
  local seen = {}
  for _, rec in ipairs(accounts or {}) do
    if type(rec) == "table" and type(rec.name) == "string" and not seen[rec.name] then
      seen[rec.name] = true
      recs[#recs + 1] = rec
    end
  end
  table.sort(recs, function(a, b) return a.name < b.name end)
  local from_env = {}
  for _, p in ipairs(M.env_provider_table) do from_env[p.name] = "from " .. p.key end
  for _, rec in ipairs(recs) do
    local name = rec.name
    local mod, why = M.kind_module(rec.kind)
    if name == "" or name:find("[%*%?/%s]") then
      warnings[#warnings + 1] = string.format("stored account %q is not served: its name cannot name a provider and a NAME/model route", name)
    elseif cfg.providers[name] or reserved[name] then
      warnings[#warnings + 1] = string.format("stored account %q is not served: a provider of that name already exists (%s)",
        name, reserved[name] or from_env[name] or "from the environment")
    elseif not mod and why == "unknown" then -- a load failure is validate()'s to report
      warnings[#warnings + 1] = string.format("stored account %q is not served: this build has no provider kind %q",
        name, tostring(rec.kind))
    else
      cfg.providers[name] = { kind = rec.kind, account = name }
      routes[#routes + 1] = { match = name .. "/*", provider = name, strip = name .. "/" }
      added[#added + 1] = name
    end
  end
  -- before the environment's routes: its catch-all "*/*" (OpenRouter)
  -- would take NAME/model otherwise
  for _, r in ipairs(cfg.routes) do routes[#routes + 1] = r end
  cfg.routes = routes
  return added
end

--- resolve(flags, getenv, cpu_count [, accounts]) -> config | nil, {messages}
-- flags: {config = path?, listen = ?, workers = ?, verbose = bool?}
-- accounts: the stored accounts, {{name, kind}} (moongate.auth.store's
-- list()), served only when there is no config file. The answer also has
-- warnings (strings for the log) and account_providers (the accounts'
-- provider names, sorted; the router asks them for models no route takes).
function M.resolve(flags, getenv, cpu_count, accounts)
  flags = flags or {}
  getenv = getenv or os.getenv
  local errs, warnings, added = {}, {}, {}
  local cfg = M.defaults()
  local path = flags.config or getenv("MOONGATE_CONFIG")
  if path and path ~= "" then
    local file, err = M.load_file(path)
    if not file then return nil, { err } end
    local ok, verrs = M.validate(file)
    if not ok then
      for i = 1, #verrs do verrs[i] = "config " .. verrs[i] end
      return nil, verrs
    end
    for k, v in pairs(file) do
      if k == "websocket" or k == "response_store" then -- keys the file leaves out keep their defaults
        for wk, wv in pairs(v) do cfg[k][wk] = wv end
      else
        cfg[k] = v
      end
    end
  else
    M.env_providers(cfg, getenv)
    added = M.account_providers(cfg, accounts, warnings)
  end
  for k, v in pairs(from_env(getenv, errs)) do cfg[k] = v end
  if flags.listen then cfg.listen = flags.listen end
  if flags.workers then cfg.workers = flags.workers end
  if flags.verbose then cfg.log_level = "debug" end
  cfg.workers = cfg.workers or cpu_count or 1
  local ok, verrs = M.validate(cfg)
  if not ok then
    for i = 1, #verrs do errs[#errs + 1] = verrs[i] end
  end
  if #errs > 0 then return nil, errs end
  cfg.host, cfg.port = M.parse_listen(cfg.listen)
  cfg.warnings, cfg.account_providers = warnings, added -- after validate(): not config keys
  -- modules on lua_path, whenever they are required, load without the JIT
  if cfg.lua_path then operator.use(cfg.lua_path) end
  return cfg
end

--- fixed(cfg) -> the settings the running daemon took at start, which a
-- reload cannot change (the listening socket, the threads, the limits C
-- holds): as one comparable table
function M.fixed(cfg)
  local json = require "moongate.json"
  local ws = cfg.websocket or {}
  return {
    listen = cfg.listen, workers = cfg.workers, max_body_bytes = cfg.max_body_bytes,
    max_header_bytes = cfg.max_header_bytes, stream_high_water = cfg.stream_high_water,
    keepalive_timeout = cfg.keepalive_timeout, request_timeout = cfg.request_timeout,
    shutdown_timeout = cfg.shutdown_timeout, tls = cfg.tls and json.encode(cfg.tls) or false,
    watch = cfg.watch, log_format = cfg.log_format,
    websocket = json.encode({ ws.heartbeat_interval_ms, ws.heartbeat_timeout_ms, ws.queue_timeout_ms,
      ws.max_message_bytes }),
    response_store = json.encode({ cfg.response_store.max_entries, cfg.response_store.max_bytes }),
  }
end

return M
