/* A worker thread's Lua states and their close: see lstate.h. */
#include "lstate.h"
#include "log.h"
#include "lua_host.h"
#include "metrics.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char lstate_key; /* registry[&lstate_key] = the mg_lstate (light userdata) */

mg_lstate *mg_lstate_new(uv_loop_t *loop, mg_queue *live, const char *lua_dir, const luaL_Reg *preloads,
			 unsigned id)
{
	mg_lstate *s = calloc(1, sizeof *s);

	if (!s)
		return NULL;
	s->L = mg_lua_new(loop, lua_dir, preloads);
	if (!s->L) {
		free(s);
		return NULL;
	}
	s->loop = loop;
	s->id = id;
	s->handler_ref = LUA_NOREF;
	lua_pushlightuserdata(s->L, &lstate_key);
	lua_pushlightuserdata(s->L, s);
	lua_rawset(s->L, LUA_REGISTRYINDEX);
	uv_check_init(loop, &s->check);
	uv_timer_init(loop, &s->timer);
	s->check.data = s->timer.data = s;
	s->open_handles = 2;
	mg_queue_insert_tail(live, &s->node);
	mg_metrics_lua_states(1);
	return s;
}

void mg_lstate_error(lua_State *L, char *err, size_t cap)
{
	const char *m = lua_tostring(L, -1);
	const char *tb = m ? strstr(m, "\nstack traceback:") : NULL;
	size_t n = tb ? (size_t)(tb - m) : m ? strlen(m) : 0;

	snprintf(err, cap, "%.*s", (int)n, m ? m : "unknown error");
}

mg_lstate *mg_lstate_of(lua_State *L)
{
	mg_lstate *s;

	lua_pushlightuserdata(L, &lstate_key);
	lua_rawget(L, LUA_REGISTRYINDEX);
	s = lua_touserdata(L, -1);
	lua_pop(L, 1);
	return s;
}

int mg_lstate_push_fn(mg_lstate *s, const char *name)
{
	if (!s || !s->L || s->handler_ref == LUA_NOREF)
		return 0;
	return mg_push_ref_fn(s->L, s->handler_ref, name);
}

void mg_lstate_hold(mg_lstate *s)
{
	s->users++;
}

/* Closes the luv handles the state's Lua made (moongate.handles keeps
 * them), so that their close callbacks run while the state still exists. */
static void close_lua_handles(mg_lstate *s)
{
	lua_State *L = s->L;

	lua_getglobal(L, "package");
	lua_getfield(L, -1, "loaded");
	lua_getfield(L, -1, "moongate.handles");
	if (lua_istable(L, -1)) {
		lua_getfield(L, -1, "close_all");
		if (lua_isfunction(L, -1)) {
			if (mg_pcall(L, 0, 0, "closing a Lua state's handles"))
				lua_pop(L, 1);
		} else {
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 3);
}

static void close_vm(mg_lstate *s)
{
	if (!s->L)
		return;
	mg_queue_remove(&s->node);
	mg_metrics_lua_states(-1);
	lua_close(s->L); /* the upstream engine's __gc cancels its transfers */
	s->L = NULL;
	s->handler_ref = LUA_NOREF;
}

static void handle_closed(uv_handle_t *h)
{
	mg_lstate *s = h->data;

	if (--s->open_handles == 0 && !s->users)
		free(s);
}

static void free_later(mg_lstate *s)
{
	uv_close((uv_handle_t *)&s->check, handle_closed);
	uv_close((uv_handle_t *)&s->timer, handle_closed);
}

static void on_timer(uv_timer_t *t)
{
	mg_lstate *s = t->data;

	close_vm(s);
	free_later(s);
}

static void on_check(uv_check_t *c)
{
	mg_lstate *s = c->data;

	uv_check_stop(c);
	close_lua_handles(s);
	/* started from the check phase, it fires in the next turn's timer
	 * phase: after this turn's close callbacks */
	uv_timer_start(&s->timer, on_timer, 0, 0);
}

static void schedule_close(mg_lstate *s)
{
	if (s->closing || !s->L)
		return;
	s->closing = 1;
	uv_check_start(&s->check, on_check);
}

void mg_lstate_release(mg_lstate *s)
{
	if (s->users)
		s->users--;
	if (s->users)
		return;
	if (!s->L) { /* closed at the worker's end while held */
		if (!s->open_handles)
			free(s);
	} else if (s->retired) {
		schedule_close(s);
	}
}

void mg_lstate_retire(mg_lstate *s)
{
	s->retired = 1;
	if (!s->users)
		schedule_close(s);
}

void mg_lstate_end(mg_lstate *s)
{
	s->retired = 1;
	schedule_close(s);
}

void mg_lstate_close_now(mg_lstate *s)
{
	s->retired = 1;
	if (!s->L) /* its close is already past lua_close */
		return;
	if (s->closing) { /* scheduled: do it now instead */
		uv_check_stop(&s->check);
		uv_timer_stop(&s->timer);
	}
	s->closing = 1;
	close_lua_handles(s);
	uv_run(s->loop, UV_RUN_NOWAIT); /* their close callbacks use the state */
	close_vm(s);
	free_later(s);
}
