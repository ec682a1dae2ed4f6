/* Fuzz target: the Lua front doors, fed through a Lua state as the host
 * makes one (LuaJIT, lua-cjson, moongate.jscan preloaded): fuzzed bytes as
 * a request body to every door, and what a door decodes translated for
 * both upstream formats (fuzz/doors.lua says what must hold). A Lua error
 * that escapes is the client's 500: the target stops on it. */
#include "../src/jscan_lua.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef FUZZ_SCRIPT /* (fuzz/frames.c runs its own script on this harness) */
#define FUZZ_SCRIPT "fuzz/doors.lua"
#endif

static lua_State *L;

/* LuaJIT's heap is its own mappings, which LeakSanitizer does not scan: what
 * lua-cjson mallocs for a state would read as leaked unless the state is
 * closed first (this runs before the sanitizer's own exit check) */
static void close_state(void)
{
	lua_close(L);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	L = luaL_newstate();
	if (!L)
		abort();
	luaL_openlibs(L);
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	lua_pushcfunction(L, luaopen_moongate_jscan);
	lua_setfield(L, -2, "moongate.jscan");
	lua_pop(L, 2);
	if (luaL_dofile(L, FUZZ_SCRIPT)) {
		fprintf(stderr, FUZZ_SCRIPT ": %s\n", lua_tostring(L, -1));
		abort();
	}
	lua_setglobal(L, "fuzz_one");
	atexit(close_state);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	lua_getglobal(L, "fuzz_one");
	lua_pushlstring(L, (const char *)d, n);
	if (lua_pcall(L, 1, 1, 0)) {
		fprintf(stderr, "fuzz_one raised: %s\n", lua_tostring(L, -1));
		abort();
	}
	if (!lua_isnil(L, -1)) {
		fprintf(stderr, "%s\n", lua_tostring(L, -1));
		abort();
	}
	lua_pop(L, 1);
	return 0;
}
