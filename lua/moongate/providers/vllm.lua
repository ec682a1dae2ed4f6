-- kind = "vllm": a vLLM server (OpenAI-compatible, http://127.0.0.1:8000/v1).
-- Reasoning: reasoning_effort (gpt-oss) and the chat template's
-- enable_thinking switch; its reasoning_content comes back as thinking.
local ls = require "moongate.presets"
return ls.kind({ base_url = "http://127.0.0.1:8000/v1" }, ls.thinking_switch)
