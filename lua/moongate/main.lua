-- The command line's entry point, called by C's mg_main with argv.
local cli = require "moongate.cli"
local config = require "moongate.config"
local json = require "moongate.json"
local core = require "moongate.core"

local M = {}

local function fail(msg, code)
  io.stderr:write(msg, "\n")
  return code or 1
end

local function load_config(flags)
  local cfg, errs = config.resolve(flags, os.getenv, core._cpu_count())
  if not cfg then
    return nil, table.concat(errs, "\n")
  end
  return cfg
end

local commands = {}

function commands.help(flags)
  local text = cli.usage[flags.topic]
  if not text then return fail(string.format("no help for %q", flags.topic), 2) end
  io.stdout:write(text)
  return 0
end

function commands.version()
  io.stdout:write("moongate ", core.version, "\n")
  return 0
end

function commands.check(flags)
  local cfg, err = load_config(flags)
  if not cfg then return fail(err, 1) end
  io.stdout:write(string.format("%s: ok (%d provider(s), %d route(s))\n", flags.config,
    (function() local n = 0 for _ in pairs(cfg.providers) do n = n + 1 end return n end)(),
    #cfg.routes))
  return 0
end

function commands.serve(flags)
  local cfg, err = load_config(flags)
  if not cfg then return fail(err, 1) end
  core._log_level(cfg.log_level)
  -- before the worker threads start: the stored responses' bounds, for all of them
  core._store_limits(cfg.response_store.max_entries, cfg.response_store.max_bytes)
  local ok, serr = core._serve {
    host = cfg.host, port = cfg.port, workers = cfg.workers,
    max_body_bytes = cfg.max_body_bytes, max_header_bytes = cfg.max_header_bytes,
    stream_high_water = cfg.stream_high_water, keepalive_timeout = cfg.keepalive_timeout,
    request_timeout = cfg.request_timeout,
    tls_cert = cfg.tls and cfg.tls.cert, tls_key = cfg.tls and cfg.tls.key,
    tls_http2 = cfg.tls and cfg.tls.http2 == true,
    verbose = cfg.log_level == "debug",
    ws_heartbeat_ms = cfg.websocket.heartbeat_interval_ms, ws_timeout_ms = cfg.websocket.heartbeat_timeout_ms,
    ws_queue_timeout_ms = cfg.websocket.queue_timeout_ms, ws_max_message = cfg.websocket.max_message_bytes,
    -- every worker resolves the same flags into its own config
    init = json.encode { flags = flags },
  }
  if not ok then return fail("moongate serve: " .. serr, 1) end
  return 0
end

--- run(argv) -> exit code
function M.run(argv)
  local cmd, err = cli.parse(argv)
  if not cmd then return fail(err, 2) end
  return commands[cmd.command](cmd.flags)
end

return M
