/* mg_main: C creates the main thread's Lua state and hands the command line
 * to moongate.main, which does the rest (and calls _serve for `serve`). */
#include "moongate.h"
#include "log.h"
#include "lua_host.h"

#include <lauxlib.h>
#include <signal.h>

int mg_main(int argc, char **argv)
{
	lua_State *L;
	int code = 1;

	signal(SIGPIPE, SIG_IGN);
	L = mg_lua_new(NULL, mg_lua_dir());
	if (!L) {
		mg_log(MG_LOG_ERROR, "cannot create a Lua state");
		return 1;
	}
	lua_getglobal(L, "require");
	lua_pushliteral(L, "moongate.main");
	if (mg_pcall(L, 1, 1, "loading moongate.main (is MOONGATE_LUA_DIR right?)")) {
		lua_close(L);
		return 1;
	}
	lua_getfield(L, -1, "run");
	lua_createtable(L, argc, 0);
	for (int i = 1; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i);
	}
	if (!mg_pcall(L, 1, 1, "moongate"))
		code = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : 0;
	lua_close(L);
	return code;
}
