/* Builds moongate.core as a loadable Lua module (build/lua/moongate/core.so)
 * so busted specs under luajit reach the same primitives the daemon uses. */
#include "core.h"

/* Keep the entry point (defined in core.c, inside the static host library)
 * in the module. */
int (*const mg_core_module_entry)(lua_State *) = luaopen_moongate_core;
