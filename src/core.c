#include "core.h"
#include "gate.h"
#include "rate.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "sse.h"
#include "stats.h"
#include "upstream.h"
#include "fast.h"
#include "watchdog.h"
#include "pool.h"
#include "store.h"
#include "ws.h"

#include <lauxlib.h>
#include <uv.h>

#ifndef MOONGATE_VERSION
#define MOONGATE_VERSION "0.0.0"
#endif

/* _now_ms() -> monotonic milliseconds (float) */
static int l_now_ms(lua_State *L)
{
	lua_pushnumber(L, (double)uv_hrtime() / 1e6);
	return 1;
}

/* _cpu_count() -> cores this process may use */
static int l_cpu_count(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)uv_available_parallelism());
	return 1;
}

/* _script_timeout(ms): the watchdog's budget (script_timeout_ms; 0: off),
 * for the whole process; the worker's init hands it over (watchdog.h) */
static int l_script_timeout(lua_State *L)
{
	lua_Integer ms = luaL_checkinteger(L, 1);

	luaL_argcheck(L, ms >= 0 && ms <= 86400000, 1, "0..86400000 ms");
	mg_watchdog_set_budget((unsigned)ms);
	return 0;
}

const luaL_Reg mg_core_preload[] = {
	{ "moongate.core", luaopen_moongate_core },
	{ NULL, NULL }
};

int luaopen_moongate_core(lua_State *L)
{
	lua_newtable(L);
	lua_pushliteral(L, MOONGATE_VERSION);
	lua_setfield(L, -2, "version");
	lua_pushcfunction(L, l_now_ms);
	lua_setfield(L, -2, "_now_ms");
	lua_pushcfunction(L, l_cpu_count);
	lua_setfield(L, -2, "_cpu_count");
	lua_pushcfunction(L, l_script_timeout);
	lua_setfield(L, -2, "_script_timeout");
	mg_log_open(L);
	mg_sse_open(L);
	mg_http_open(L);
	mg_server_open(L, mg_core_preload);
	mg_stats_open(L);
	mg_upstream_open(L);
	mg_fast_open(L);
	mg_ws_open(L);
	mg_pool_open(L);
	mg_store_open(L);
	mg_gate_open(L);
	mg_metrics_open(L);
	mg_rate_open(L);
	return 1;
}
