-- The local inference servers' presets (kinds vllm, llamacpp, ollama):
-- OpenAI-compatible providers with the server's default base URL, no key
-- required, model discovery on, and the request fields that server reads
-- for reasoning. presets.kind(defaults, reasoning) -> a kind module.
--   reasoning(wire, creq): last touches for the server's reasoning switch
local upstream = require "moongate.providers.upstream"
local chat = require "moongate.adapters.openai"

local M = {}

--- thinking_switch(wire, creq): chat templates that take enable_thinking
-- (Qwen3, DeepSeek's, GLM's: vLLM and llama.cpp hand chat_template_kwargs
-- to the template) hear whether the client asked for reasoning
function M.thinking_switch(wire, creq)
  local r = creq.reasoning
  if r and (r.effort or r.disabled) then -- (a client's "off" too: these templates think by default)
    wire.chat_template_kwargs = type(wire.chat_template_kwargs) == "table" and wire.chat_template_kwargs or {}
    wire.chat_template_kwargs.enable_thinking = not r.disabled and r.effort ~= "none"
  end
end

function M.kind(defaults, reasoning)
  return upstream.kind {
    adapter = chat,
    defaults = defaults,
    discover = true,
    shape = reasoning and function(_, wire, creq) reasoning(wire, creq) end or nil,
  }
end

return M
