-- Command-line parsing. Pure: parse(argv) returns what to do; main.lua does it.
local M = {}

M.usage = {
  main = [[
Usage: moongate <command> [options]

Commands:
  serve     run the gateway
  reload    ask a running daemon to reload (SIGHUP to its --pidfile)
  stop      stop a running daemon (SIGTERM to its --pidfile), waiting for it
  check     load and validate a config file
  login     log in to a GitHub Copilot or ChatGPT subscription
  logout    remove a stored account
  info      list the stored accounts
  version   print the version

Run 'moongate <command> --help' for a command's options.
]],
  serve = [[
Usage: moongate serve [--config FILE] [--listen HOST:PORT] [--workers N] [--verbose]
                      [--daemon] [--pidfile FILE] [--log-file FILE]

  --config FILE       config file (a Lua chunk returning a table); env MOONGATE_CONFIG
  --listen HOST:PORT  address to listen on (default 127.0.0.1:8080); env MOONGATE_LISTEN
  --workers N         worker threads (default: the number of cores); env MOONGATE_WORKERS
  --verbose           log at debug level; env MOONGATE_LOG_LEVEL=debug
  --daemon            detach: the command returns (0) once the daemon listens
  --pidfile FILE      write the daemon's pid there (refused when it names a live
                      process; removed at exit)
  --log-file FILE     append the log to FILE (else stderr; with --daemon, else
                      nowhere); SIGUSR1 reopens it (logrotate)

Flags beat MOONGATE_* environment variables, which beat the config file,
which beats the built-in defaults.

Signals: SIGTERM / SIGINT stop accepting and give running requests up to
shutdown_timeout (config, default 30 s), then end them with an error event;
a second one stops at once. SIGHUP: hot reload of the config and the
scripts (docs/RELOAD.md). SIGUSR1 reopens --log-file.

Exit codes: 0 stopped cleanly; 1 config or start error; 2 usage error;
70 stopped leaving a worker stuck in a call that cannot be stopped.
]],
  check = [[
Usage: moongate check --config FILE

Loads FILE, merges the environment and defaults as 'serve' would, and
validates the result. Exits 0 when it is valid, 1 with one line per problem
otherwise.
]],
  login = [[
Usage: moongate login copilot [--name NAME]
       moongate login chatgpt [--name NAME] [--headless]

Logs in to a subscription and stores the account (default name: the kind)
under $MOONGATE_HOME/accounts (default ~/.config/moongate), mode 0600.

  copilot     GitHub's device login: open the URL printed and enter the code
  chatgpt     OpenAI's browser login: open the URL printed; the browser comes
              back to http://localhost:1455 (1457 when 1455 is taken)
  --headless  (chatgpt) a device code instead of the browser callback, for a
              machine whose localhost the browser cannot reach
  --name NAME store the account under NAME (letters, digits, '.', '_', '-')

Environment: MOONGATE_GITHUB_URL, MOONGATE_GITHUB_API_URL,
MOONGATE_OPENAI_AUTH_URL (the servers to log in with), MOONGATE_HOME.
]],
  logout = [[
Usage: moongate logout NAME

Removes the stored account NAME.
]],
  info = [[
Usage: moongate info [--config FILE] [--listen HOST:PORT]

Lists the stored accounts: name, kind, login, token expiry, last refresh,
and, when a daemon answers at the listen address (the config's, or
--listen; default 127.0.0.1:8080), each pooled account's state there
(requests served, times limited, seconds it still rests). Set
MOONGATE_API_KEY when the daemon takes inbound keys. Never prints a token.
]],
  reload = [[
Usage: moongate reload --pidfile FILE

Sends SIGHUP to the daemon whose pid FILE holds. Exits 0 when it was sent,
1 when FILE names no running process.
]],
  stop = [[
Usage: moongate stop --pidfile FILE

Sends SIGTERM to the daemon whose pid FILE holds and waits until it has
exited (it drains running requests first: shutdown_timeout). Exits 0 once
it is gone, 1 when FILE names no running process or it did not exit.
]],
  version = [[
Usage: moongate version

Prints the version.
]],
}

local takes_value = { config = true, listen = true, workers = true, name = true, pidfile = true, ["log-file"] = true }
local allowed = {
  serve = { config = true, listen = true, workers = true, verbose = true, daemon = true, pidfile = true,
    ["log-file"] = true },
  reload = { pidfile = true },
  stop = { pidfile = true },
  check = { config = true, listen = true, workers = true, verbose = true },
  login = { name = true, headless = true },
  logout = {},
  info = { config = true, listen = true },
  version = {},
}
-- the words a command takes besides its options, in order, as flags
local positional = { login = { "kind" }, logout = { "account" } }
local LOGIN_KINDS = { copilot = true, chatgpt = true }

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
  local words = positional[cmd] or {}
  local nwords = 0
  local i = 2
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      return { command = "help", flags = { topic = cmd } }
    end
    local name, value = a:match("^%-%-([%w%-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w%-]+)$") end
    if a == "-v" then name = "verbose" end
    if not name and a:sub(1, 1) ~= "-" and nwords < #words then
      nwords = nwords + 1
      flags[words[nwords]] = a
    elseif not name then
      return nil, string.format("moongate %s: unexpected argument %q", cmd, a)
    elseif not allowed[cmd][name] then
      return nil, string.format("moongate %s: unknown option --%s", cmd, name)
    elseif takes_value[name] then
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
  if nwords < #words then
    return nil, string.format("moongate %s: %s is required (see 'moongate %s --help')", cmd,
      words[nwords + 1] == "kind" and "copilot or chatgpt" or "the account's NAME", cmd)
  end
  if cmd == "login" and not LOGIN_KINDS[flags.kind] then
    return nil, string.format("moongate login: unknown kind %q: use copilot or chatgpt", flags.kind)
  end
  if cmd == "login" and flags.headless and flags.kind ~= "chatgpt" then
    return nil, "moongate login: --headless is for chatgpt (copilot always uses a device code)"
  end
  if (cmd == "reload" or cmd == "stop") and not flags.pidfile then
    return nil, string.format("moongate %s: --pidfile FILE is required", cmd)
  end
  if cmd == "check" and not flags.config then
    return nil, "moongate check: --config FILE is required"
  end
  return { command = cmd, flags = flags }
end

return M
