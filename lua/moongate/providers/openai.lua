-- kind = "openai": every OpenAI-compatible upstream (OpenAI, xAI,
-- OpenRouter, vLLM, llama.cpp, Ollama's /v1), in chat completions
-- (api = "chat", the default) or OpenAI's Responses API (api = "responses").
-- preset = "xai" | "openrouter" gives that service's base URL and key variable.
local chat = require "moongate.adapters.openai"
return require("moongate.providers.upstream").kind {
  adapter = chat,
  apis = { chat = chat, responses = require "moongate.adapters.openai_responses" },
  presets = {
    xai = { base_url = "https://api.x.ai/v1", key_env = "XAI_API_KEY" },
    openrouter = { base_url = "https://openrouter.ai/api/v1", key_env = "OPENROUTER_API_KEY" },
  },
  schema = {
    api = { type = "string", enum = { chat = true, responses = true } }, -- the upstream's wire format
    preset = { type = "string", enum = { xai = true, openrouter = true } },
    completions = "boolean",             -- forwards /v1/completions as is
    embeddings = "boolean",              -- forwards /v1/embeddings as is
    max_tokens_field = { type = "string", enum = { max_tokens = true, max_completion_tokens = true } },
  },
}
