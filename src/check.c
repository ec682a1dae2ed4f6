/* The trial load before a hot reload: see check.h. */
#include "check.h"
#include "log.h"
#include "lstate.h"
#include "lua_host.h"
#include "watchdog.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mg_check {
	const mg_server_config *cfg;
	uv_thread_t thread;
	uv_async_t finished_async; /* main loop: the thread is done */
	uv_timer_t timer;          /* main loop: it took too long */
	int open_handles;          /* main thread */
	int reported;              /* main thread: done was called (or never will be) */
	void (*done)(void *arg, int ok, const char *why);
	void *arg;
	uv_mutex_t mu;             /* guards the four below */
	int finished, given_up, refs;
	int ok;
	char why[1024];            /* the thread's, read by main once finished */
};

/* Lets go of c: the main thread's part or the check thread's; the last frees. */
static void unref(mg_check *c)
{
	int last;

	uv_mutex_lock(&c->mu);
	last = --c->refs == 0;
	uv_mutex_unlock(&c->mu);
	if (last) {
		uv_mutex_destroy(&c->mu);
		free(c);
	}
}

/* ---- the check's thread ------------------------------------------------ */

/* Loads the Lua layer in "check" mode on a loop of its own: 1 when it
 * passed, else 0 with why. */
static int trial(const mg_server_config *cfg, char *why, size_t cap)
{
	uv_loop_t loop;
	mg_queue live;
	mg_lstate *s;
	lua_State *L;
	int ok = 0;

	snprintf(why, cap, "cannot make a Lua state (out of memory)");
	if (uv_loop_init(&loop))
		return 0;
	mg_queue_init(&live);
	s = mg_lstate_new(&loop, &live, mg_lua_dir(), cfg->preload, 0);
	if (s) {
		L = s->L;
		lua_getglobal(L, "require");
		lua_pushliteral(L, "moongate.worker");
		if (!mg_pcall(L, 1, 1, "the check: loading moongate.worker")) {
			lua_getfield(L, -1, "init");
			lua_pushstring(L, cfg->init_json);
			lua_pushinteger(L, 0);
			lua_pushinteger(L, cfg->workers);
			lua_pushinteger(L, 2);
			lua_pushnumber(L, (lua_Number)uv_hrtime());
			lua_pushliteral(L, "");
			lua_pushliteral(L, "check");
			if (!mg_pcall(L, 7, 2, "the check: moongate.worker.init") && lua_istable(L, -2)) {
				ok = 1;
			} else if (!lua_isstring(L, -1)) {
				lua_pushliteral(L, "moongate.worker.init must return a table");
			}
		}
		if (!ok)
			mg_lstate_error(L, why, cap);
		lua_settop(L, 0);
		mg_lstate_close_now(s); /* its handles, the state; the loop frees s */
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop))
		mg_log(MG_LOG_WARN, "the check's loop still had handles at its end");
	return ok;
}

static void check_main(void *arg)
{
	mg_check *c = arg;
	char why[sizeof c->why];
	int ok;

	mg_log_set_thread_tag("check");
	mg_watchdog_enter_thread("check"); /* a loop at load is stopped */
	ok = trial(c->cfg, why, sizeof why);
	mg_watchdog_leave_thread();
	uv_mutex_lock(&c->mu);
	c->ok = ok;
	memcpy(c->why, why, sizeof why);
	c->finished = 1;
	if (!c->given_up) /* else the handle may be closed already */
		uv_async_send(&c->finished_async);
	uv_mutex_unlock(&c->mu);
	unref(c);
}

/* ---- the main thread ----------------------------------------------------- */

static void handle_closed(uv_handle_t *h)
{
	mg_check *c = h->data;

	if (--c->open_handles == 0)
		unref(c);
}

static void close_handles(mg_check *c)
{
	uv_close((uv_handle_t *)&c->finished_async, handle_closed);
	uv_close((uv_handle_t *)&c->timer, handle_closed);
}

static void on_finished(uv_async_t *a)
{
	mg_check *c = a->data;

	uv_thread_join(&c->thread);
	uv_timer_stop(&c->timer);
	if (!c->reported) {
		c->reported = 1;
		c->done(c->arg, c->ok, c->ok ? NULL : c->why);
	}
	close_handles(c);
}

/* Gives the check up: its thread, if still loading, is left to end alone. */
static int give_up(mg_check *c)
{
	int finished;

	uv_mutex_lock(&c->mu);
	c->given_up = 1;
	finished = c->finished;
	uv_mutex_unlock(&c->mu);
	if (finished)
		uv_thread_join(&c->thread);
	else
		pthread_detach(c->thread);
	return finished;
}

static void on_timeout(uv_timer_t *t)
{
	mg_check *c = t->data;
	char why[160];

	if (give_up(c) && !c->reported) { /* it ended just now */
		c->reported = 1;
		c->done(c->arg, c->ok, c->ok ? NULL : c->why);
	} else if (!c->reported) {
		c->reported = 1;
		snprintf(why, sizeof why, "loading the scripts did not end in %llu ms (a hang the watchdog "
			 "cannot stop?); the check's thread is left behind",
			 (unsigned long long)uv_timer_get_repeat(t));
		c->done(c->arg, 0, why);
	}
	close_handles(c);
}

mg_check *mg_check_start(uv_loop_t *loop, const mg_server_config *cfg, unsigned timeout_ms,
			 void (*done)(void *arg, int ok, const char *why), void *arg)
{
	mg_check *c = calloc(1, sizeof *c);

	if (!c)
		return NULL;
	c->cfg = cfg;
	c->done = done;
	c->arg = arg;
	c->refs = 2; /* this thread's part (its handles), and the check thread's */
	uv_mutex_init(&c->mu);
	uv_async_init(loop, &c->finished_async, on_finished);
	uv_timer_init(loop, &c->timer);
	c->finished_async.data = c->timer.data = c;
	c->open_handles = 2;
	/* the repeat value only carries the timeout to on_timeout's message */
	uv_timer_start(&c->timer, on_timeout, timeout_ms, timeout_ms);
	if (uv_thread_create(&c->thread, check_main, c)) {
		c->reported = 1;
		uv_mutex_lock(&c->mu);
		c->given_up = 1;
		c->refs--; /* no thread: its part goes now */
		uv_mutex_unlock(&c->mu);
		close_handles(c);
		return NULL;
	}
	return c;
}

void mg_check_cancel(mg_check *c)
{
	if (!c || c->reported)
		return;
	c->reported = 1;
	give_up(c);
	close_handles(c);
}
