-- moongate's config: a Lua chunk returning a table (README "Configuration"
-- lists every key). This example is installed as
-- PREFIX/share/moongate/moongate.conf.lua; copy it to
-- /etc/moongate/config.lua, where the systemd unit reads it, and edit it
-- there. Validate it with: moongate check --config /etc/moongate/config.lua
-- A change takes effect at the next restart (systemctl restart moongate).
return {
  listen = "127.0.0.1:8080",     -- behind a reverse proxy; "0.0.0.0:8080" to serve the network
  log_level = "info",            -- error | warn | info | debug
  -- workers = 4,                -- worker threads (default: the number of cores)
  -- lua_path = "/etc/moongate/lua/?.lua", -- your own provider scripts

  providers = {
    -- The model "echo" is always served: it answers with your last message.
    -- An OpenAI-format upstream, its key from the service's environment
    -- (systemctl edit moongate: [Service] Environment=OPENAI_API_KEY=...):
    -- openai = { kind = "openai", base_url = "https://api.openai.com/v1", api_key_env = "OPENAI_API_KEY" },
    -- anthropic = { kind = "anthropic", base_url = "https://api.anthropic.com", api_key_env = "ANTHROPIC_API_KEY" },
    -- A GitHub Copilot subscription (log in first: README "Installing the service"):
    -- gh = { kind = "copilot", account = "copilot" },
  },
  routes = {                     -- first match wins
    -- { match = "claude-*", provider = "anthropic" },
    -- { match = "gh/*", provider = "gh", strip = "gh/" },
    -- { match = "*", provider = "openai" },
  },
}
