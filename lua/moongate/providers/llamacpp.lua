-- kind = "llamacpp": llama.cpp's llama-server (OpenAI-compatible,
-- http://127.0.0.1:8080/v1). Reasoning: the chat template's enable_thinking
-- switch, and reasoning_format "deepseek" so that thinking comes back apart
-- (reasoning_content) instead of inside the text.
local ls = require "moongate.presets"
return ls.kind({ base_url = "http://127.0.0.1:8080/v1" }, function(wire, creq)
  ls.thinking_switch(wire, creq)
  wire.reasoning_format = wire.reasoning_format or "deepseek"
end)
