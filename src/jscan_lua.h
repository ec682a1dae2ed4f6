/* moongate.jscan's entry point (jscan_lua.c): the host preloads it. */
#ifndef MG_JSCAN_LUA_H
#define MG_JSCAN_LUA_H

#include <lua.h>

int luaopen_moongate_jscan(lua_State *L);

#endif
