-- kind = "anthropic": Anthropic's messages API.
return require("moongate.providers.upstream").kind {
  adapter = require "moongate.adapters.anthropic",
  schema = {
    thinking = { type = "string", enum = { budget = true, adaptive = true } }, -- how an effort is asked for
  },
}
