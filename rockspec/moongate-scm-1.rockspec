-- The Lua layer of moongate as a rock, for embedding it in other LuaJIT
-- hosts (OpenResty-like setups). The C primitives it calls (moongate.core)
-- come from the host: build/lua/moongate/core.so, or the daemon itself.
package = "moongate"
version = "scm-1"
source = { url = "git+file:///moongate" }
description = {
  summary = "LLM gateway: routing, translation and provider adapters in Lua",
  license = "MIT",
}
dependencies = { "lua == 5.1", "lua-cjson", "luv" }
build = {
  type = "builtin",
  modules = {
    ["moongate.app"] = "lua/moongate/app.lua",
    ["moongate.canonical"] = "lua/moongate/canonical.lua",
    ["moongate.cli"] = "lua/moongate/cli.lua",
    ["moongate.config"] = "lua/moongate/config.lua",
    ["moongate.errors"] = "lua/moongate/errors.lua",
    ["moongate.exchange"] = "lua/moongate/exchange.lua",
    ["moongate.frontdoor.openai_chat"] = "lua/moongate/frontdoor/openai_chat.lua",
    ["moongate.http"] = "lua/moongate/http.lua",
    ["moongate.json"] = "lua/moongate/json.lua",
    ["moongate.log"] = "lua/moongate/log.lua",
    ["moongate.secrets"] = "lua/moongate/secrets.lua",
    ["moongate.main"] = "lua/moongate/main.lua",
    ["moongate.providers"] = "lua/moongate/providers/init.lua",
    ["moongate.providers.echo"] = "lua/moongate/providers/echo.lua",
    ["moongate.router"] = "lua/moongate/router.lua",
    ["moongate.models"] = "lua/moongate/models.lua",
    ["moongate.reasoning"] = "lua/moongate/reasoning.lua",
    ["moongate.adapters.openai"] = "lua/moongate/adapters/openai.lua",
    ["moongate.adapters.anthropic"] = "lua/moongate/adapters/anthropic.lua",
    ["moongate.frontdoor.anthropic_messages"] = "lua/moongate/frontdoor/anthropic_messages.lua",
    ["moongate.providers.upstream"] = "lua/moongate/providers/upstream.lua",
    ["moongate.providers.openai"] = "lua/moongate/providers/openai.lua",
    ["moongate.providers.anthropic"] = "lua/moongate/providers/anthropic.lua",
    ["moongate.worker"] = "lua/moongate/worker.lua",
    ["moongate.sockets"] = "lua/moongate/sockets.lua",
    ["moongate.pool"] = "lua/moongate/pool.lua",
    ["moongate.frontdoor.ws_chat"] = "lua/moongate/frontdoor/ws_chat.lua",
    ["moongate.providers.ws"] = "lua/moongate/providers/ws.lua",
    ["moongate.providers.copilot"] = "lua/moongate/providers/copilot.lua",
    ["moongate.providers.chatgpt"] = "lua/moongate/providers/chatgpt.lua",
    ["moongate.providers.qwen"] = "lua/moongate/providers/qwen.lua",
    ["moongate.providers.listing"] = "lua/moongate/providers/listing.lua",
    ["moongate.auth.api_key"] = "lua/moongate/auth/api_key.lua",
    ["moongate.auth.pool"] = "lua/moongate/auth/pool.lua",
    ["moongate.auth.accounts"] = "lua/moongate/auth/accounts.lua",
    ["moongate.auth.store"] = "lua/moongate/auth/store.lua",
    ["moongate.auth.copilot"] = "lua/moongate/auth/copilot.lua",
    ["moongate.auth.chatgpt"] = "lua/moongate/auth/chatgpt.lua",
    ["moongate.auth.util"] = "lua/moongate/auth/util.lua",
    ["moongate.frontdoor.openai_common"] = "lua/moongate/frontdoor/openai_common.lua",
    ["moongate.frontdoor.openai_responses"] = "lua/moongate/frontdoor/openai_responses.lua",
    ["moongate.frontdoor.openai_completions"] = "lua/moongate/frontdoor/openai_completions.lua",
    ["moongate.frontdoor.openai_embeddings"] = "lua/moongate/frontdoor/openai_embeddings.lua",
    ["moongate.adapters.openai_common"] = "lua/moongate/adapters/openai_common.lua",
    ["moongate.adapters.openai_responses"] = "lua/moongate/adapters/openai_responses.lua",
    ["moongate.store"] = "lua/moongate/store.lua",
    ["moongate.keys"] = "lua/moongate/keys.lua",
  },
}
