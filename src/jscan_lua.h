/* moongate.jscan's entry point (jscan_lua.c): the host preloads it. */
#ifndef MG_JSCAN_LUA_H
#define MG_JSCAN_LUA_H

#include <lua.h>

int luaopen_moongate_jscan(lua_State *L);

/* What top(text, marker) returns for a scan mg_jscan made of text (with
 * top()'s depth and a marker), pushed: fields, spans, marked (3), or nil,
 * "duplicate", key (3). For a C caller that scanned a body already
 * (fast.c), so that Lua need not scan it again. */
struct mg_jscan_out;
int mg_jscan_push_top(lua_State *L, const char *text, const struct mg_jscan_out *scan);

/* top()'s nesting limit (lua-cjson's decode_max_depth in json.lua) */
#define MG_JSCAN_LUA_DEPTH 200

#endif
