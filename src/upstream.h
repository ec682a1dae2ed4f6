/* Upstream HTTP through libcurl multi on the Lua state's libuv loop
 * (see upstream.c for ownership). */
#ifndef MG_UPSTREAM_H
#define MG_UPSTREAM_H

#include <lua.h>

/* Registers _fetch, _fetch_cancel and _fetch_resume on the table at -1. */
int mg_upstream_open(lua_State *L);

#endif
