-- kind = "openai": every OpenAI-compatible upstream.
return require("moongate.providers.upstream").kind(require "moongate.adapters.openai")
