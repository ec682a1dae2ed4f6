/* Process-wide counters. Every field is read and written with relaxed
 * atomics: any worker thread counts, _stats() reads from any thread. The
 * start time is set once (uv_once) by the first mg_stats_open. */
#include "stats.h"
#include "log.h"

#include <lauxlib.h>
#include <uv.h>

mg_stats mg_global_stats;
static int served_workers;
static uint64_t started_ns;
static uv_once_t started_once = UV_ONCE_INIT;

void mg_stats_add(long long *field, long long delta)
{
	__atomic_add_fetch(field, delta, __ATOMIC_RELAXED);
}

void mg_stats_buffered(long long delta)
{
	long long now, peak;

	mg_stats_add(&mg_global_stats.buffered_bytes, delta);
	if (delta <= 0)
		return;
	now = __atomic_load_n(&mg_global_stats.buffered_bytes, __ATOMIC_RELAXED);
	peak = __atomic_load_n(&mg_global_stats.buffered_peak, __ATOMIC_RELAXED);
	while (now > peak && !__atomic_compare_exchange_n(&mg_global_stats.buffered_peak,
			&peak, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

void mg_stats_set_workers(int n)
{
	__atomic_store_n(&served_workers, n, __ATOMIC_RELAXED);
}

static void set_started(void)
{
	started_ns = uv_hrtime();
}

double mg_uptime(void)
{
	uv_once(&started_once, set_started);
	return (double)(uv_hrtime() - started_ns) / 1e9;
}

/* _uptime() -> seconds since start (float) */
static int l_uptime(lua_State *L)
{
	lua_pushnumber(L, mg_uptime());
	return 1;
}

/* _stats() -> table of process-wide counters */
static int l_stats(lua_State *L)
{
	mg_stats s;

	__atomic_load(&mg_global_stats.requests, &s.requests, __ATOMIC_RELAXED);
	__atomic_load(&mg_global_stats.open_requests, &s.open_requests, __ATOMIC_RELAXED);
	__atomic_load(&mg_global_stats.open_streams, &s.open_streams, __ATOMIC_RELAXED);
	__atomic_load(&mg_global_stats.open_ws_answers, &s.open_ws_answers, __ATOMIC_RELAXED);
	__atomic_load(&mg_global_stats.buffered_bytes, &s.buffered_bytes, __ATOMIC_RELAXED);
	__atomic_load(&mg_global_stats.buffered_peak, &s.buffered_peak, __ATOMIC_RELAXED);
	__atomic_load(&mg_global_stats.client_disconnects, &s.client_disconnects, __ATOMIC_RELAXED);
	__atomic_load(&mg_global_stats.lua_errors, &s.lua_errors, __ATOMIC_RELAXED);
	__atomic_load(&mg_global_stats.piped_frames, &s.piped_frames, __ATOMIC_RELAXED);
	__atomic_load(&mg_global_stats.templated_frames, &s.templated_frames, __ATOMIC_RELAXED);
	lua_createtable(L, 0, 13);
#define F(name) lua_pushnumber(L, (lua_Number)s.name); lua_setfield(L, -2, #name)
	F(requests);
	F(open_requests);
	F(open_streams);
	F(open_ws_answers);
	F(buffered_bytes);
	F(buffered_peak);
	F(client_disconnects);
	F(lua_errors);
	F(piped_frames);
	F(templated_frames);
#undef F
	lua_pushnumber(L, (lua_Number)mg_log_dropped());
	lua_setfield(L, -2, "log_lines_dropped");
	lua_pushinteger(L, __atomic_load_n(&served_workers, __ATOMIC_RELAXED));
	lua_setfield(L, -2, "workers");
	lua_pushnumber(L, mg_uptime());
	lua_setfield(L, -2, "uptime");
	return 1;
}

/* _ws_answers(delta): a chat-socket answer starts (+1) or ends (-1); the
 * shutdown waits for these as for HTTP requests */
static int l_ws_answers(lua_State *L)
{
	mg_stats_add(&mg_global_stats.open_ws_answers, (long long)luaL_checkinteger(L, 1));
	return 0;
}

int mg_stats_open(lua_State *L)
{
	uv_once(&started_once, set_started);
	lua_pushcfunction(L, l_stats);
	lua_setfield(L, -2, "_stats");
	lua_pushcfunction(L, l_uptime);
	lua_setfield(L, -2, "_uptime");
	lua_pushcfunction(L, l_ws_answers);
	lua_setfield(L, -2, "_ws_answers");
	return 0;
}
