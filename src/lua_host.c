#include "lua_host.h"
#include "cork.h"
#include "log.h"
#include "watchdog.h"

#include <lauxlib.h>
#include <lualib.h>
#include <lua5.1/lua-cjson.h>
#include "jscan_lua.h"
#include <lua5.1/luv/luv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef MOONGATE_LUA_DIR
#define MOONGATE_LUA_DIR "lua"
#endif

/* Where an installed binary's modules are, relative to its prefix
 * (PREFIX/bin/moongate): cmake --install's place, then a luarocks tree's. */
static const char *const installed_dirs[] = { "share/moongate/lua", "share/lua/5.1", NULL };

static char lua_dir[4096];
static uv_once_t lua_dir_once = UV_ONCE_INIT;

static int has_modules(const char *dir)
{
	char path[sizeof lua_dir + 32];

	snprintf(path, sizeof path, "%s/moongate/main.lua", dir);
	return access(path, R_OK) == 0;
}

/* Once per process: the first of installed_dirs under the binary's prefix
 * that holds moongate/main.lua, else the build tree's (MOONGATE_LUA_DIR). */
static void find_lua_dir(void)
{
	char exe[4096];
	size_t n = sizeof exe;
	char *slash;

	snprintf(lua_dir, sizeof lua_dir, "%s", MOONGATE_LUA_DIR);
	if (uv_exepath(exe, &n) != 0) return;
	for (int up = 0; up < 2; up++) { /* PREFIX/bin/moongate -> PREFIX */
		slash = strrchr(exe, '/');
		if (!slash) return;
		*slash = '\0';
	}
	for (int i = 0; installed_dirs[i]; i++) {
		char dir[sizeof lua_dir];
		if ((size_t)snprintf(dir, sizeof dir, "%s/%s", exe, installed_dirs[i]) >= sizeof dir)
			continue;
		if (has_modules(dir)) {
			memcpy(lua_dir, dir, sizeof dir);
			return;
		}
	}
}

const char *mg_lua_dir(void)
{
	const char *d = getenv("MOONGATE_LUA_DIR");

	if (d && *d) return d;
	uv_once(&lua_dir_once, find_lua_dir);
	return lua_dir;
}

void mg_push_pairs(lua_State *L, const mg_buf *h)
{
	size_t i = 0;

	lua_createtable(L, 0, 16);
	while (i < h->len) {
		const char *name = h->data + i;
		size_t nl = strlen(name);
		const char *value = name + nl + 1;
		size_t vl = strlen(value);
		lua_pushlstring(L, name, nl);
		lua_pushvalue(L, -1);
		lua_rawget(L, -3);
		if (lua_isstring(L, -1)) {
			lua_pushliteral(L, ", ");
			lua_pushlstring(L, value, vl);
			lua_concat(L, 3);
		} else {
			lua_pop(L, 1);
			lua_pushlstring(L, value, vl);
		}
		lua_rawset(L, -3);
		i += nl + vl + 2;
	}
}

void **mg_push_handle(lua_State *L, void *ptr, const char *mt, int *ref)
{
	void **slot = lua_newuserdata(L, sizeof *slot);

	*slot = ptr;
	luaL_getmetatable(L, mt);
	lua_setmetatable(L, -2);
	lua_pushvalue(L, -1);
	*ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return slot;
}

int mg_push_closed(lua_State *L)
{
	lua_pushnil(L);
	lua_pushliteral(L, "closed");
	lua_pushliteral(L, "ECLOSED");
	return 3;
}

void *mg_registry_udata(lua_State *L, const char *key, size_t size, lua_CFunction gc)
{
	void *p = lua_newuserdata(L, size);

	memset(p, 0, size);
	lua_newtable(L);
	lua_pushcfunction(L, gc);
	lua_setfield(L, -2, "__gc");
	lua_setmetatable(L, -2);
	lua_setfield(L, LUA_REGISTRYINDEX, key);
	return p;
}

void mg_set_funcs(lua_State *L, const luaL_Reg *fns)
{
	for (; fns->name; fns++) {
		lua_pushcfunction(L, fns->func);
		lua_setfield(L, -2, fns->name);
	}
}

void mg_handle_mt(lua_State *L, const char *mt, lua_CFunction tostring)
{
	if (luaL_newmetatable(L, mt)) {
		if (tostring) {
			lua_pushcfunction(L, tostring);
			lua_setfield(L, -2, "__tostring");
		}
		lua_pushstring(L, mt);
		lua_setfield(L, -2, "__metatable");
	}
	lua_pop(L, 1);
}

int mg_push_ref_fn(lua_State *L, int ref, const char *name)
{
	lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
	lua_getfield(L, -1, name);
	lua_remove(L, -2);
	if (lua_isfunction(L, -1))
		return 1;
	lua_pop(L, 1);
	return 0;
}

static int traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);

	if (!msg) {
		if (luaL_callmeta(L, 1, "__tostring") && lua_isstring(L, -1))
			msg = lua_tostring(L, -1);
		else
			msg = lua_pushfstring(L, "(error object is a %s value)",
					      luaL_typename(L, 1));
	}
	/* LuaJIT's debug.traceback(msg, level) */
	lua_getglobal(L, "debug");
	lua_getfield(L, -1, "traceback");
	lua_pushstring(L, msg);
	lua_pushinteger(L, 2);
	lua_call(L, 2, 1);
	return 1;
}

/* The message handler of every mg_pcall: made once per state and kept in
 * the registry (lua_pushcfunction would make a new function each call). */
static char traceback_key;

static void push_traceback(lua_State *L)
{
	lua_pushlightuserdata(L, &traceback_key);
	lua_rawget(L, LUA_REGISTRYINDEX);
	if (lua_isfunction(L, -1))
		return;
	lua_pop(L, 1);
	lua_pushcfunction(L, traceback);
	lua_pushlightuserdata(L, &traceback_key);
	lua_pushvalue(L, -2);
	lua_rawset(L, LUA_REGISTRYINDEX);
}

int mg_pcall(lua_State *L, int nargs, int nresults, const char *what)
{
	int base = lua_gettop(L) - nargs, rc;
	lua_State *outer;

	push_traceback(L);
	lua_insert(L, base);
	outer = mg_watchdog_call_begin(L); /* timed on a worker thread */
	mg_cork();
	rc = lua_pcall(L, nargs, nresults, base);
	lua_remove(L, base);
	mg_watchdog_call_end(L, outer); /* before the flushes, which may call Lua */
	mg_uncork();
	if (rc)
		mg_log(MG_LOG_ERROR, "%s: %s", what ? what : "lua",
		       lua_tostring(L, -1) ? lua_tostring(L, -1) : "(no message)");
	return rc;
}

/* luv calls this for every callback it runs (timers, sockets, ...). The
 * default would exit the process on an error; we log it and go on. */
static int luv_callback_pcall(lua_State *L, int nargs, int nresults, int flags)
{
	int top = lua_gettop(L) - nargs - 1;

	(void)flags;
	if (mg_pcall(L, nargs, nresults, "luv callback")) {
		lua_pop(L, 1);
		return -1;
	}
	return nresults == LUA_MULTRET ? lua_gettop(L) - top : nresults;
}

static int preload(lua_State *L, const char *name, lua_CFunction f)
{
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	lua_pushcfunction(L, f);
	lua_setfield(L, -2, name);
	lua_pop(L, 2);
	return 0;
}

lua_State *mg_lua_new(uv_loop_t *loop, const char *lua_dir, const luaL_Reg *preloads)
{
	lua_State *L = luaL_newstate();

	if (!L)
		return NULL;
	luaL_openlibs(L);
	preload(L, "cjson", luaopen_cjson);
	preload(L, "moongate.jscan", luaopen_moongate_jscan);
	for (; preloads && preloads->name; preloads++)
		preload(L, preloads->name, preloads->func);
	if (loop) {
		luv_set_loop(L, loop);
		luv_set_callback(L, luv_callback_pcall);
		lua_pushcfunction(L, luaopen_luv);
		if (mg_pcall(L, 0, 1, "luaopen_luv")) {
			lua_close(L);
			return NULL;
		}
		lua_getglobal(L, "package");
		lua_getfield(L, -1, "loaded");
		lua_pushvalue(L, -3);
		lua_setfield(L, -2, "luv");
		lua_pop(L, 3);
	}
	/* package.path = "<dir>/?.lua;<dir>/?/init.lua;" .. package.path */
	lua_getglobal(L, "package");
	lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", lua_dir, lua_dir);
	lua_getfield(L, -2, "path");
	lua_concat(L, 2);
	lua_setfield(L, -2, "path");
	lua_pop(L, 1);
	return L;
}
