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

/* The worker's shutdown_timeout is over (its thread): each request still
 * waiting on the fast path gets 503 in its client's format, as Lua's
 * shutdown hook gives the requests on its path. */
void mg_fast_shutdown(void);

/* Registers _fast_config, _fast_route and _fast_state on the table at -1. */
int mg_fast_open(lua_State *L);

#endif
