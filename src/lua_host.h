/* The Lua VM's life: creation with every preloaded module, and the one
 * traceback-pcall wrapper through which C enters Lua.
 *
 * Thread ownership: a lua_State belongs to the thread that created it and is
 * only touched from that thread's loop. */
#ifndef MG_LUA_HOST_H
#define MG_LUA_HOST_H

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>
#include "buf.h"
#include "watchdog.h" /* a thread whose mg_pcalls are timed registers there */

/* A new state with the standard libraries, cjson and each module of
 * `preloads` (ended by a NULL name; may be NULL) preloaded, luv sharing
 * `loop` (may be NULL for a state without a loop), and package.path led by
 * `lua_dir`. The caller names the modules (core.h's mg_core_preload gives
 * moongate.core), so this floor never calls up to them. The caller owns
 * the state: lua_close() it. */
lua_State *mg_lua_new(uv_loop_t *loop, const char *lua_dir, const luaL_Reg *preloads);

/* The only way C calls Lua. Like lua_pcall, with a traceback handler, and
 * corked (cork.h): the writes Lua asks for go out once it returns. On
 * error it logs "<what>: <message + traceback>", leaves that string on the
 * stack in place of the results, and returns non-zero. On a worker thread
 * the outermost call is timed (watchdog.h): one that runs past
 * script_timeout_ms fails with "script ran longer than script_timeout_ms". */
int mg_pcall(lua_State *L, int nargs, int nresults, const char *what);

/* Pushes a table of the "name\0value\0" pairs in h; a repeated name gets
 * its values joined with ", " as HTTP allows. */
void mg_push_pairs(lua_State *L, const mg_buf *h);

/* Pushes a new userdata slot holding `ptr`, with metatable `mt`, and keeps a
 * registry reference to it in *ref (dropped by the owner with luaL_unref).
 * The C object points back at the slot and sets it to NULL when it is freed,
 * so Lua can hold the handle longer than the object lives. */
void **mg_push_handle(lua_State *L, void *ptr, const char *mt, int *ref);

/* Pushes nil, "closed", "ECLOSED" (a handle whose object is gone): 3. */
int mg_push_closed(lua_State *L);

/* A zeroed userdata of `size` bytes kept in the registry under `key`,
 * with `gc` as its __gc (called at lua_close at the latest): one per state,
 * for a module's per-state struct. Returns it (the caller fills it). */
void *mg_registry_udata(lua_State *L, const char *key, size_t size, lua_CFunction gc);

/* Sets each function of fns (ended by a NULL name) on the table at -1. */
void mg_set_funcs(lua_State *L, const luaL_Reg *fns);

/* Creates the metatable of handles named `mt` (once per state): its
 * __metatable is mt, its __tostring the given function (may be NULL). */
void mg_handle_mt(lua_State *L, const char *mt, lua_CFunction tostring);

/* Pushes field `name` of the table that registry ref holds, if that field
 * is a function: returns 1. Otherwise pushes nothing and returns 0. */
int mg_push_ref_fn(lua_State *L, int ref, const char *name);

/* The directory holding the moongate modules (moongate/main.lua, ...):
 * $MOONGATE_LUA_DIR when set and not empty; else, found once from the
 * binary's own path (uv_exepath), PREFIX/share/moongate/lua (cmake
 * --install) or PREFIX/share/lua/5.1 (a luarocks tree), the first that
 * holds moongate/main.lua; else the source tree's lua/ the binary was
 * built from. The string is static: never free it. Safe from any thread. */
const char *mg_lua_dir(void);

#endif
