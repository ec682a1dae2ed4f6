/* moongate.core: the one Lua module of C primitives. Each group lives in its
 * own file with an mg_*_open(L) that adds its functions to the module table. */
#ifndef MG_CORE_H
#define MG_CORE_H

#include <lua.h>

int luaopen_moongate_core(lua_State *L);

/* Seconds since the process started, and a monotonic clock in ms. */
double mg_uptime(void);

#endif
