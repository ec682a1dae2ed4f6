-- Command-line parsing. Pure: parse(argv) returns what to do; main.lua does it.
local M = {}

M.usage = {
  main = [[
Usage: moongate <command> [options]

Commands:
  serve     run the gateway
  check     load and validate a config file
  version   print the version

Run 'moongate <command> --help' for a command's options.
]],
  serve = [[
Usage: moongate serve [--config FILE] [--listen HOST:PORT] [--workers N] [--verbose]

  --config FILE       config file (a Lua chunk returning a table); env MOONGATE_CONFIG
  --listen HOST:PORT  address to listen on (default 127.0.0.1:8080); env MOONGATE_LISTEN
  --workers N         worker threads (default: the number of cores); env MOONGATE_WORKERS
  --verbose           log at debug level; env MOONGATE_LOG_LEVEL=debug

Flags beat MOONGATE_* environment variables, which beat the config file,
which beats the built-in defaults.
]],
  check = [[
Usage: moongate check --config FILE

Loads FILE, merges the environment and defaults as 'serve' would, and
validates the result. Exits 0 when it is valid, 1 with one line per problem
otherwise.
]],
  version = [[
Usage: moongate version

Prints the version.
]],
}

local takes_value = { config = true, listen = true, workers = true }
local allowed = {
  serve = { config = true, listen = true, workers = true, verbose = true },
  check = { config = true, listen = true, workers = true, verbose = true },
  version = {},
}

--- parse(argv) -> {command, flags} | nil, message
-- command "help" carries the topic in flags.topic.
function M.parse(argv)
  local cmd = argv[1]
  if cmd == nil or cmd == "--help" or cmd == "-h" or cmd == "help" then
    return { command = "help", flags = { topic = argv[2] or "main" } }
  end
  if cmd == "--version" or cmd == "-V" then
    return { command = "version", flags = {} }
  end
  if not allowed[cmd] then
    return nil, string.format("unknown command %q (try 'moongate --help')", cmd)
  end
  local flags = {}
  local i = 2
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      return { command = "help", flags = { topic = cmd } }
    end
    local name, value = a:match("^%-%-([%w%-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w%-]+)$") end
    if a == "-v" then name = "verbose" end
    if not name then
      return nil, string.format("moongate %s: unexpected argument %q", cmd, a)
    end
    if not allowed[cmd][name] then
      return nil, string.format("moongate %s: unknown option --%s", cmd, name)
    end
    if takes_value[name] then
      if value == nil then
        i = i + 1
        value = argv[i]
        if value == nil then
          return nil, string.format("moongate %s: --%s needs a value", cmd, name)
        end
      end
      if name == "workers" then
        local n = tonumber(value)
        if not n or n % 1 ~= 0 or n < 1 then
          return nil, string.format("moongate %s: --workers needs a positive integer, got %q", cmd, value)
        end
        value = n
      end
      flags[name] = value
    else
      if value ~= nil then
        return nil, string.format("moongate %s: --%s takes no value", cmd, name)
      end
      flags[name] = true
    end
    i = i + 1
  end
  if cmd == "check" and not flags.config then
    return nil, "moongate check: --config FILE is required"
  end
  return { command = cmd, flags = flags }
end

return M
