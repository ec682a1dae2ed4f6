/* The gate's permits, fair queues and cooldowns: see gate.h. */
#include "gate.h"
#include "ctx.h"
#include "log.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct waiter {
	mg_queue node;           /* on its key's FIFO */
	mg_outbox_thread *thread;
	double since_ms, deadline_ms;
	char *id;                /* owned */
} waiter;

typedef struct keyq {            /* one key name's waiters in one gate */
	mg_queue node;           /* on the gate's ring (only while it has waiters) */
	mg_queue waiters;
	int n;                   /* how many */
	char *key;               /* owned */
} keyq;

typedef struct gate {
	struct gate *next;
	char *name;              /* owned */
	int limit, in_use, queued;
	double cool_until_ms;
	mg_queue ring;           /* keyq: the next to serve at the head */
	/* counts, for /stats and /metrics */
	unsigned long long granted, waited, rejected, timed_out;
	double wait_ms;          /* summed over the waits that ended in a grant */
} gate;

static gate *gates; /* outbox lock */

static char *dup_str(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);

	if (d)
		memcpy(d, s, n);
	return d;
}

static gate *find(const char *name, int make)
{
	gate *g;

	for (g = gates; g; g = g->next)
		if (!strcmp(g->name, name))
			return g;
	if (!make || !(g = calloc(1, sizeof *g)))
		return NULL;
	if (!(g->name = dup_str(name))) {
		free(g);
		return NULL;
	}
	mg_queue_init(&g->ring);
	g->next = gates;
	gates = g;
	return g;
}

/* The key's waiters in g, or NULL (make: a new, empty one on the ring). */
static keyq *find_key(gate *g, const char *key, int make)
{
	mg_queue *q;
	keyq *k;

	mg_queue_foreach(q, &g->ring) {
		k = mg_queue_data(q, keyq, node);
		if (!strcmp(k->key, key))
			return k;
	}
	if (!make)
		return NULL;
	if (!(k = calloc(1, sizeof *k)) || !(k->key = dup_str(key))) {
		free(k);
		return NULL;
	}
	mg_queue_init(&k->waiters);
	mg_queue_insert_tail(&g->ring, &k->node);
	return k;
}

static void free_waiter(waiter *w)
{
	free(w->id);
	free(w);
}

/* Takes w off its FIFO; a key left with none leaves the ring. */
static void unlink_waiter(gate *g, keyq *k, waiter *w)
{
	mg_queue_remove(&w->node);
	g->queued--;
	k->n--;
	if (mg_queue_empty(&k->waiters)) {
		mg_queue_remove(&k->node);
		free(k->key);
		free(k);
	}
}

static int has_room(const gate *g, double now_ms)
{
	return (g->limit <= 0 || g->in_use < g->limit) && g->cool_until_ms <= now_ms;
}

/* Permits to waiters while there is room: the key at the ring's head gives
 * its oldest waiter, then goes to the tail. */
static void grant_next(gate *g, double now_ms)
{
	while (g->queued && has_room(g, now_ms)) {
		keyq *k = mg_queue_data(mg_queue_head(&g->ring), keyq, node);
		waiter *w = mg_queue_data(mg_queue_head(&k->waiters), waiter, node);
		mg_queue_remove(&k->node);
		mg_queue_insert_tail(&g->ring, &k->node);
		unlink_waiter(g, k, w);
		g->in_use++;
		g->granted++;
		g->wait_ms += now_ms - w->since_ms;
		mg_outbox_post_locked(w->thread, MG_GATE_GRANTED, 200, w->id, g->name, strlen(g->name));
		free_waiter(w);
	}
}

int mg_gate_acquire(const char *name, int limit, const char *key, const char *id, mg_outbox_thread *t,
		    double now_ms, double timeout_ms, int max_queue, int no_wait, double *retry_ms)
{
	gate *g;
	keyq *k;
	waiter *w;
	int rc = MG_GATE_FULL;

	*retry_ms = 0;
	mg_outbox_lock();
	if (!(g = find(name, 1)))
		goto out;
	g->limit = limit;
	if (!g->queued && has_room(g, now_ms)) {
		g->in_use++;
		g->granted++;
		rc = MG_GATE_OK;
		goto out;
	}
	/* max_queue is each key's: a busy key fills its own queue, not the
	 * others' (and the gate holds at most that many per key) */
	k = find_key(g, key, 0);
	if (g->cool_until_ms > now_ms && (no_wait || g->cool_until_ms - now_ms > timeout_ms || !t ||
					  max_queue <= 0 || (k && k->n >= max_queue))) {
		*retry_ms = g->cool_until_ms - now_ms;
		g->rejected++;
		rc = MG_GATE_COOLING;
		goto out;
	}
	if (!t || max_queue <= 0 || (k && k->n >= max_queue) || timeout_ms <= 0) {
		g->rejected++;
		goto out;
	}
	if (!(w = calloc(1, sizeof *w)) || !(w->id = dup_str(id)) || !(k = find_key(g, key, 1))) {
		if (w)
			free(w->id);
		free(w);
		goto out;
	}
	w->thread = t;
	w->since_ms = now_ms;
	w->deadline_ms = now_ms + timeout_ms;
	mg_queue_insert_tail(&k->waiters, &w->node);
	k->n++;
	g->queued++;
	g->waited++;
	rc = MG_GATE_QUEUED;
out:
	mg_outbox_unlock();
	return rc;
}

void mg_gate_release(const char *name, double now_ms)
{
	gate *g;

	mg_outbox_lock();
	if ((g = find(name, 0))) {
		if (g->in_use > 0)
			g->in_use--;
		grant_next(g, now_ms);
	}
	mg_outbox_unlock();
}

/* Calls fn on each waiter of g (it may unlink the one it is given). */
static void each_waiter(gate *g, int (*fn)(gate *, keyq *, waiter *, void *), void *arg)
{
	mg_queue *kq = mg_queue_head(&g->ring);

	while (kq != &g->ring) {
		keyq *k = mg_queue_data(kq, keyq, node);
		mg_queue *next_k = kq->next, *q = mg_queue_head(&k->waiters);
		while (q != &k->waiters) {
			mg_queue *next = q->next;
			int last = next == &k->waiters; /* k may go with its last waiter */
			if (fn(g, k, mg_queue_data(q, waiter, node), arg) && last)
				break;
			q = next;
		}
		kq = next_k;
	}
}

struct cancel_arg {
	const char *id;
	int found;
};

static int cancel_one(gate *g, keyq *k, waiter *w, void *arg)
{
	struct cancel_arg *a = arg;

	if (a->found || strcmp(w->id, a->id))
		return 0;
	a->found = 1;
	unlink_waiter(g, k, w);
	free_waiter(w);
	return 1;
}

int mg_gate_cancel(const char *name, const char *id)
{
	struct cancel_arg a = { id, 0 };
	gate *g;

	mg_outbox_lock();
	if ((g = find(name, 0)))
		each_waiter(g, cancel_one, &a);
	mg_outbox_unlock();
	return a.found;
}

void mg_gate_cool(const char *name, double until_ms)
{
	gate *g;

	mg_outbox_lock();
	if ((g = find(name, 1)) && until_ms > g->cool_until_ms)
		g->cool_until_ms = until_ms;
	mg_outbox_unlock();
}

struct tick_arg {
	mg_outbox_thread *t;
	double now_ms;
	int gone; /* the thread stops: drop, do not post */
};

static int expire_one(gate *g, keyq *k, waiter *w, void *arg)
{
	struct tick_arg *a = arg;

	if (w->thread != a->t || (!a->gone && w->deadline_ms > a->now_ms))
		return 0;
	unlink_waiter(g, k, w);
	if (!a->gone) {
		g->timed_out++;
		mg_outbox_post_locked(a->t, MG_GATE_TIMEOUT, 429, w->id, g->name, strlen(g->name));
	}
	free_waiter(w);
	return 1;
}

void mg_gate_tick(mg_outbox_thread *t, double now_ms)
{
	struct tick_arg a = { t, now_ms, 0 };

	mg_outbox_lock();
	for (gate *g = gates; g; g = g->next) {
		each_waiter(g, expire_one, &a);
		grant_next(g, now_ms); /* a cooldown may have ended */
	}
	mg_outbox_unlock();
}

void mg_gate_thread_gone(mg_outbox_thread *t)
{
	struct tick_arg a = { t, 0, 1 };

	mg_outbox_lock();
	for (gate *g = gates; g; g = g->next)
		each_waiter(g, expire_one, &a);
	mg_outbox_unlock();
}

void mg_gate_clear(void)
{
	struct tick_arg a = { NULL, 0, 1 };

	mg_outbox_lock();
	while (gates) {
		gate *g = gates;
		gates = g->next;
		while (!mg_queue_empty(&g->ring)) {
			keyq *k = mg_queue_data(mg_queue_head(&g->ring), keyq, node);
			a.t = mg_queue_data(mg_queue_head(&k->waiters), waiter, node)->thread;
			each_waiter(g, expire_one, &a);
		}
		free(g->name);
		free(g);
	}
	mg_outbox_unlock();
}

/* ---- primitives -------------------------------------------------------- */

static double now_ms(void)
{
	return (double)uv_hrtime() / 1e6;
}

/* _gate_acquire(name, limit, key, id, timeout_ms, max_queue [, no_wait]) ->
 *   "ok" | "queued" | nil, "full" | nil, "cooling", retry_ms
 * (no_wait: a cooling gate answers "cooling" at once) */
static int l_gate_acquire(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	int limit = (int)luaL_checkinteger(L, 2);
	const char *key = luaL_checkstring(L, 3);
	const char *id = luaL_checkstring(L, 4);
	double timeout = luaL_optnumber(L, 5, 0), retry;
	int max_queue = (int)luaL_optinteger(L, 6, 100);
	mg_ctx *ctx = mg_ctx_of(L);
	int rc = mg_gate_acquire(name, limit, key, id, ctx ? &ctx->ob : NULL, now_ms(), timeout, max_queue,
				 lua_toboolean(L, 7), &retry);

	switch (rc) {
	case MG_GATE_OK:
		lua_pushliteral(L, "ok");
		return 1;
	case MG_GATE_QUEUED:
		lua_pushliteral(L, "queued");
		return 1;
	case MG_GATE_COOLING:
		lua_pushnil(L);
		lua_pushliteral(L, "cooling");
		lua_pushnumber(L, retry);
		return 3;
	default:
		lua_pushnil(L);
		lua_pushliteral(L, "full");
		return 2;
	}
}

/* _gate_release(name) */
static int l_gate_release(lua_State *L)
{
	mg_gate_release(luaL_checkstring(L, 1), now_ms());
	return 0;
}

/* _gate_cancel(name, id) -> true (it was waiting) | false (granted already:
 * give the permit back) */
static int l_gate_cancel(lua_State *L)
{
	lua_pushboolean(L, mg_gate_cancel(luaL_checkstring(L, 1), luaL_checkstring(L, 2)));
	return 1;
}

/* _gate_cool(name, ms): no permit for ms from now */
static int l_gate_cool(lua_State *L)
{
	mg_gate_cool(luaL_checkstring(L, 1), now_ms() + luaL_checknumber(L, 2));
	return 0;
}

/* One gate's numbers, copied under the lock (Lua is called without it). */
typedef struct gate_snap {
	char name[128];
	int limit, in_use, queued;
	double granted, waited, rejected, timed_out, wait_ms, cooling_ms;
} gate_snap;

#define SNAP_MAX 256

static void push_snap(lua_State *L, const gate_snap *s)
{
	lua_createtable(L, 0, 9);
	lua_pushinteger(L, s->limit);
	lua_setfield(L, -2, "limit");
	lua_pushinteger(L, s->in_use);
	lua_setfield(L, -2, "in_use");
	lua_pushinteger(L, s->queued);
	lua_setfield(L, -2, "queued");
	lua_pushnumber(L, s->granted);
	lua_setfield(L, -2, "granted");
	lua_pushnumber(L, s->waited);
	lua_setfield(L, -2, "waited");
	lua_pushnumber(L, s->rejected);
	lua_setfield(L, -2, "rejected");
	lua_pushnumber(L, s->timed_out);
	lua_setfield(L, -2, "timed_out");
	lua_pushnumber(L, s->wait_ms);
	lua_setfield(L, -2, "wait_ms");
	lua_pushnumber(L, s->cooling_ms);
	lua_setfield(L, -2, "cooling_ms");
	lua_setfield(L, -2, s->name);
}

/* _gate_state() -> {name = {limit, in_use, queued, granted, waited,
 * rejected, timed_out, wait_ms, cooling_ms}} (the first 256 gates) */
static int l_gate_state(lua_State *L)
{
	double now = now_ms();
	/* Lua's memory: an error while pushing leaks nothing */
	gate_snap *snap = lua_newuserdata(L, SNAP_MAX * sizeof *snap);
	int n = 0;

	mg_outbox_lock();
	for (gate *g = gates; g && n < SNAP_MAX; g = g->next, n++) {
		gate_snap *s = &snap[n];
		snprintf(s->name, sizeof s->name, "%s", g->name);
		s->limit = g->limit;
		s->in_use = g->in_use;
		s->queued = g->queued;
		s->granted = (double)g->granted;
		s->waited = (double)g->waited;
		s->rejected = (double)g->rejected;
		s->timed_out = (double)g->timed_out;
		s->wait_ms = g->wait_ms;
		s->cooling_ms = g->cool_until_ms > now ? g->cool_until_ms - now : 0;
	}
	mg_outbox_unlock();
	lua_newtable(L);
	for (int i = 0; i < n; i++)
		push_snap(L, &snap[i]);
	lua_remove(L, -2);
	return 1;
}

int mg_gate_open(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "_gate_acquire", l_gate_acquire },
		{ "_gate_release", l_gate_release },
		{ "_gate_cancel", l_gate_cancel },
		{ "_gate_cool", l_gate_cool },
		{ "_gate_state", l_gate_state },
		{ NULL, NULL }
	};

	for (const luaL_Reg *f = fns; f->name; f++) {
		lua_pushcfunction(L, f->func);
		lua_setfield(L, -2, f->name);
	}
	return 0;
}
