/* moongate.core: the one Lua module of C primitives. Each group lives in its
 * own file with an mg_*_open(L) that adds its functions to the module table. */
#ifndef MG_CORE_H
#define MG_CORE_H

#include <lauxlib.h>
#include <lua.h>

int luaopen_moongate_core(lua_State *L);

/* { "moongate.core", luaopen_moongate_core }, { NULL }: what a caller of
 * mg_lua_new (lua_host.h) preloads to give its state the primitives. */
extern const luaL_Reg mg_core_preload[];

#endif
