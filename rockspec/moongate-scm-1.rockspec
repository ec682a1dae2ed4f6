-- moongate as a rock: the Lua layer (moongate.*), the C primitives as a
-- Lua module (moongate.core, lib/lua/5.1/moongate/core.so) for embedding
-- the layer in another LuaJIT host, and the daemon itself (bin/moongate,
-- which finds the tree's share/lua/5.1 by its own path). The host is built
-- by CMakeLists.txt against Debian's packages (scripts/setup installs them;
-- luv and cjson are linked in, so they are system libraries here, not
-- rocks). From the source tree, offline:
--   luarocks --lua-version 5.1 make --tree TREE rockspec/moongate-scm-1.rockspec
package = "moongate"
version = "scm-1"
source = { url = "git+file:///moongate" }
description = {
  summary = "LLM gateway: routing, translation and provider adapters in Lua",
  license = "MIT",
}
dependencies = { "lua == 5.1" }
-- CMake checks the rest and names the Debian package that is missing.
external_dependencies = {
  LUV = { header = "lua5.1/luv/luv.h" },     -- lua-luv-dev
  CJSON = { header = "lua5.1/lua-cjson.h" }, -- lua-cjson-dev
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "RelWithDebInfo",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    MOONGATE_INSTALL_LUA = "OFF",        -- luarocks installs the modules below
    MOONGATE_INSTALL_SERVICE = "OFF",    -- no systemd unit in a rock tree
    MOONGATE_INSTALL_CMOD_DIR = "$(LIBDIR)", -- core.so as moongate.core
  },
  install = { lua = {
    ["moongate.app"] = "lua/moongate/app.lua",
    ["moongate.canonical"] = "lua/moongate/canonical.lua",
    ["moongate.cli"] = "lua/moongate/cli.lua",
    ["moongate.config"] = "lua/moongate/config.lua",
    ["moongate.errors"] = "lua/moongate/errors.lua",
    ["moongate.exchange"] = "lua/moongate/exchange.lua",
    ["moongate.fast"] = "lua/moongate/fast.lua",
    ["moongate.frontdoor.openai_chat"] = "lua/moongate/frontdoor/openai_chat.lua",
    ["moongate.http"] = "lua/moongate/http.lua",
    ["moongate.json"] = "lua/moongate/json.lua",
    ["moongate.log"] = "lua/moongate/log.lua",
    ["moongate.metrics"] = "lua/moongate/metrics.lua",
    ["moongate.secrets"] = "lua/moongate/secrets.lua",
    ["moongate.main"] = "lua/moongate/main.lua",
    ["moongate.providers"] = "lua/moongate/providers/init.lua",
    ["moongate.providers.echo"] = "lua/moongate/providers/echo.lua",
    ["moongate.router"] = "lua/moongate/router.lua",
    ["moongate.wire"] = "lua/moongate/wire.lua",
    ["moongate.host"] = "lua/moongate/host.lua",
    ["moongate.host.daemon"] = "lua/moongate/host/daemon.lua",
    ["moongate.host.nginx"] = "lua/moongate/host/nginx.lua",
    ["moongate.frames"] = "lua/moongate/frames.lua",
    ["moongate.models"] = "lua/moongate/models.lua",
    ["moongate.reasoning"] = "lua/moongate/reasoning.lua",
    ["moongate.adapters.openai"] = "lua/moongate/adapters/openai.lua",
    ["moongate.adapters.anthropic"] = "lua/moongate/adapters/anthropic.lua",
    ["moongate.frontdoor.anthropic_messages"] = "lua/moongate/frontdoor/anthropic_messages.lua",
    ["moongate.providers.upstream"] = "lua/moongate/providers/upstream.lua",
    ["moongate.providers.openai"] = "lua/moongate/providers/openai.lua",
    ["moongate.providers.anthropic"] = "lua/moongate/providers/anthropic.lua",
    ["moongate.worker"] = "lua/moongate/worker.lua",
    ["moongate.handles"] = "lua/moongate/handles.lua",
    ["moongate.selftest"] = "lua/moongate/selftest.lua",
    ["moongate.operator"] = "lua/moongate/operator.lua",
    ["moongate.gate"] = "lua/moongate/gate.lua",
    ["moongate.openapi"] = "lua/moongate/openapi.lua",
    ["moongate.docs_page"] = "lua/moongate/docs_page.lua",
    ["moongate.sockets"] = "lua/moongate/sockets.lua",
    ["moongate.pool"] = "lua/moongate/pool.lua",
    ["moongate.frontdoor.ws_chat"] = "lua/moongate/frontdoor/ws_chat.lua",
    ["moongate.frontdoor.ollama"] = "lua/moongate/frontdoor/ollama.lua",
    ["moongate.providers.ws"] = "lua/moongate/providers/ws.lua",
    ["moongate.adapters.prompt"] = "lua/moongate/adapters/prompt.lua",
    ["moongate.providers.prompt"] = "lua/moongate/providers/prompt.lua",
    ["moongate.presets"] = "lua/moongate/presets.lua",
    ["moongate.providers.vllm"] = "lua/moongate/providers/vllm.lua",
    ["moongate.providers.llamacpp"] = "lua/moongate/providers/llamacpp.lua",
    ["moongate.providers.ollama"] = "lua/moongate/providers/ollama.lua",
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
  } },
}
