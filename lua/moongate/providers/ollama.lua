-- kind = "ollama": an Ollama server through its OpenAI-compatible /v1
-- endpoints (http://127.0.0.1:11434/v1). Reasoning: reasoning_effort, which
-- Ollama maps to its think switch; its reasoning field comes back as thinking.
local ls = require "moongate.presets"
return ls.kind({ base_url = "http://127.0.0.1:11434/v1" })
