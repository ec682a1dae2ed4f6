/* mg_main: C creates the main thread's Lua state and hands the command line
 * to moongate.main, which does the rest (and calls _serve for `serve`).
 * The state has a libuv loop of its own, so that luv and core._fetch work
 * in the commands that talk to the network (`moongate login`); `serve`
 * runs its own loops and never touches this one. */
#include "moongate.h"
#include "core.h"
#include "log.h"
#include "lua_host.h"

#include <lauxlib.h>
#include <signal.h>
#include <uv.h>

static void close_left(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* After lua_close: run the close callbacks of what luv and the upstream
 * engine closed, then close whatever is left, so that nothing leaks. */
static void loop_finish(uv_loop_t *loop)
{
	uv_run(loop, UV_RUN_NOWAIT);
	if (uv_loop_close(loop)) {
		uv_walk(loop, close_left, NULL);
		uv_run(loop, UV_RUN_NOWAIT);
		if (uv_loop_close(loop))
			mg_log(MG_LOG_WARN, "the command's loop still had handles at exit");
	}
}

int mg_main(int argc, char **argv)
{
	lua_State *L;
	uv_loop_t loop;
	int code = 1;

	signal(SIGPIPE, SIG_IGN);
	if (uv_loop_init(&loop)) {
		mg_log(MG_LOG_ERROR, "cannot create the command's libuv loop");
		return 1;
	}
	L = mg_lua_new(&loop, mg_lua_dir(), mg_core_preload);
	if (!L) {
		mg_log(MG_LOG_ERROR, "cannot create a Lua state");
		uv_loop_close(&loop);
		return 1;
	}
	lua_getglobal(L, "require");
	lua_pushliteral(L, "moongate.main");
	if (mg_pcall(L, 1, 1, "loading moongate.main (is MOONGATE_LUA_DIR right?)")) {
		lua_close(L);
		loop_finish(&loop);
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
	/* luv's close callbacks use the state: a handle closed just before
	 * the command ended (a timer that fired) must finish closing first */
	uv_run(&loop, UV_RUN_NOWAIT);
	lua_close(L);
	loop_finish(&loop);
	return code;
}
