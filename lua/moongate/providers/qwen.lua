-- kind = "qwen": Qwen's chat service with a logged-in browser session: its
-- bearer token (QWEN_AUTH_TOKEN, or api_key) and cookies (QWEN_COOKIES, or
-- cookies) on every request, in the OpenAI chat completions format.
local upstream = require "moongate.providers.upstream"
local chat = require "moongate.adapters.openai"
local secrets = require "moongate.secrets"

local mod = upstream.kind {
  adapter = chat,
  defaults = { base_url = "https://chat.qwen.ai/api", key_env = "QWEN_AUTH_TOKEN" },
  schema = {
    cookies = "string",          -- the Cookie header (default: env QWEN_COOKIES)
    cookies_env = "string",      -- the variable that holds it
  },
  init = function(p)
    local c = p.conf.cookies or os.getenv(p.conf.cookies_env or "QWEN_COOKIES")
    if c and c ~= "" then
      secrets.add(c)
      -- each cookie's value too: an upstream may quote one alone
      for v in c:gmatch("=([^;]+)") do secrets.add((v:gsub("^%s+", ""):gsub("%s+$", ""))) end
      local headers = {}
      for k, v in pairs(p.conf.headers or {}) do headers[k] = v end
      headers.cookie = headers.cookie or c
      p.conf = setmetatable({ headers = headers }, { __index = p.conf })
    end
  end,
}
return mod
