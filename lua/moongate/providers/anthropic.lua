-- kind = "anthropic": Anthropic's messages API.
return require("moongate.providers.upstream").kind(require "moongate.adapters.anthropic")
