/* The fast path: an OpenAI chat request passed through whole, served in C
 * with no Lua call, on a route Lua published (see fast.c). */
#ifndef MG_FAST_H
#define MG_FAST_H

#include <lua.h>

struct mg_req;

/* For a transport, before mg_req_dispatch: 1 when the fast path took the
 * request (it answers, or hands it to Lua itself), 0 when Lua's path must
 * (nothing was done to it). */
int mg_fast_try(struct mg_req *r);

/* Registers _fast_config, _fast_route and _fast_state on the table at -1. */
int mg_fast_open(lua_State *L);

#endif
