-- kind = "openai": every OpenAI-compatible upstream, in chat completions
-- (api = "chat", the default) or OpenAI's Responses API (api = "responses").
local chat = require "moongate.adapters.openai"
return require("moongate.providers.upstream").kind(chat, {
  chat = chat,
  responses = require "moongate.adapters.openai_responses",
})
