/* The WS worker pool's shared tables and the primitives over them:
 *   _pool_submit  _pool_cancel  _pool_hold  _pool_ready  _pool_deliver
 *   _pool_state   _pool_serves  _pool_models
 * Every table here is guarded by one mutex; see pool.h for the threads. */
#include "pool.h"
#include "ctx.h"
#include "log.h"
#include "lua_host.h"
#include "outbox.h"
#include "queue.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

typedef struct mg_pool_worker {
	struct mg_pool_worker *next;
	uint64_t conn_id;    /* its WebSocket (outbox.h), by id */
	int thread_index;    /* the worker thread that owns the socket */
	char name[64];
	char **models;       /* owned; nmodels == 0: any model */
	int nmodels;
	int capacity, inflight, ready;
	int nheld;           /* its requests with `held` set: while > 0 its
			      * socket is not read (outbox.h, rx_hold) */
	double last_active, connected_at; /* ms, uv_hrtime clock */
	long long served;
} mg_pool_worker;

typedef struct mg_pending {
	struct mg_pending *hnext;        /* bucket chain */
	mg_queue qnode;                  /* on the queue, while queued */
	char *id, *model, *msg;          /* inside this block, after the struct */
	size_t msg_len;
	mg_outbox_thread *owner;
	mg_pool_worker *worker;          /* while assigned */
	int delivered;                   /* messages passed to the owner */
	/* flow control (docs/WEBSOCKETS.md): the worker's socket is not read
	 * while its client is behind (client_full, set and cleared by the
	 * owner's Lua) or while more than high_water bytes of its messages
	 * wait in the owner's inbox (inbox: added by the worker's thread as it
	 * posts, taken off by the owner's once its Lua had them) */
	int client_full;
	int held;                        /* counted in worker->nheld */
	size_t inbox, high_water;
	int queue_timeout_ms;
	double deadline;                 /* while queued */
} mg_pending;

#define NBUCKETS 4096

static mg_pending *table[NBUCKETS];
static mg_queue queue = { &queue, &queue }; /* oldest first */
static int q_len, n_pending;
static mg_pool_worker *workers;

static double now_ms(void)
{
	return (double)uv_hrtime() / 1e6;
}

/* ---- the rendezvous table and the queue (lock held) -------------------- */

static unsigned bucket(const char *id)
{
	unsigned h = 2166136261u;

	while (*id)
		h = (h ^ (unsigned char)*id++) * 16777619u;
	return h % NBUCKETS;
}

static mg_pending *find(const char *id)
{
	for (mg_pending *p = table[bucket(id)]; p; p = p->hnext)
		if (!strcmp(p->id, id))
			return p;
	return NULL;
}

static void q_remove(mg_pending *p)
{
	if (mg_queue_empty(&p->qnode))
		return;
	mg_queue_remove(&p->qnode);
	q_len--;
}

/* Queues p at the head (first) or the tail, with its queue time starting now. */
static void q_insert(mg_pending *p, int first)
{
	p->deadline = now_ms() + p->queue_timeout_ms;
	q_len++;
	if (first)
		mg_queue_insert_head(&queue, &p->qnode);
	else
		mg_queue_insert_tail(&queue, &p->qnode);
}

/* Sets p->held from its state, and its worker's socket on hold while one
 * of the worker's requests is held (the worker's thread applies it). */
static void hold_update(mg_pending *p)
{
	mg_pool_worker *pw = p->worker;
	int want = pw && (p->client_full || p->inbox > p->high_water);

	if (want == p->held)
		return;
	p->held = want;
	pw->nheld += want ? 1 : -1;
	if (pw->nheld == (want ? 1 : 0))
		mg_outbox_hold_locked(pw->conn_id, want);
}

/* Before p leaves its worker: its hold is released. */
static void unhold(mg_pending *p)
{
	p->client_full = 0;
	p->inbox = 0;
	hold_update(p);
}

/* Takes p out of every table and frees it. */
static void drop(mg_pending *p)
{
	mg_pending **pp = &table[bucket(p->id)];

	unhold(p);

	while (*pp && *pp != p)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = p->hnext;
	q_remove(p);
	n_pending--;
	free(p);
}

static int serves(const mg_pool_worker *pw, const char *model)
{
	if (!pw->nmodels)
		return 1;
	for (int i = 0; i < pw->nmodels; i++)
		if (!strcmp(pw->models[i], model) || !strcmp(pw->models[i], "*"))
			return 1;
	return 0;
}

/* The free worker serving `model` that was most recently active. */
static mg_pool_worker *pick(const char *model)
{
	mg_pool_worker *best = NULL;

	for (mg_pool_worker *pw = workers; pw; pw = pw->next)
		if (pw->ready && pw->inflight < pw->capacity && serves(pw, model) &&
		    (!best || pw->last_active > best->last_active))
			best = pw;
	return best;
}

static int any_serves(const char *model)
{
	for (mg_pool_worker *pw = workers; pw; pw = pw->next)
		if (pw->ready && serves(pw, model))
			return 1;
	return 0;
}

static int assign(mg_pending *p, mg_pool_worker *pw)
{
	if (mg_outbox_send_locked(pw->conn_id, p->msg, p->msg_len)) {
		pw->ready = 0; /* closing: it takes no more */
		return -1;
	}
	q_remove(p);
	p->worker = pw;
	pw->inflight++;
	pw->last_active = now_ms();
	return 0;
}

/* Gives p to the best free worker, if there is one. */
static int place(mg_pending *p)
{
	mg_pool_worker *pw;

	while ((pw = pick(p->model)))
		if (!assign(p, pw))
			return 1;
	return 0;
}

/* Hands queued requests to free workers, oldest first. */
static void dispatch(void)
{
	/* place() takes only p itself off the queue */
	for (mg_queue *q = mg_queue_head(&queue), *next; q != &queue; q = next) {
		next = q->next;
		place(mg_queue_data(q, mg_pending, qnode));
	}
}

/* Tells the worker to stop on a request it holds, and frees its slot. */
static void release(mg_pending *p)
{
	mg_pool_worker *pw = p->worker;
	char msg[200];
	int n;

	if (!pw)
		return;
	unhold(p);
	p->worker = NULL;
	pw->inflight--;
	n = snprintf(msg, sizeof msg, "{\"type\":\"cancel_request\",\"request_id\":\"%s\"}", p->id);
	if (n > 0 && (size_t)n < sizeof msg)
		mg_outbox_send_locked(pw->conn_id, msg, (size_t)n);
}

/* ---- threads and connections -------------------------------------------- */

void mg_pool_thread_stop(mg_outbox_thread *t)
{
	mg_outbox_lock();
	for (int b = 0; b < NBUCKETS; b++) {
		mg_pending *p = table[b];
		while (p) {
			mg_pending *next = p->hnext;
			if (p->owner == t) {
				release(p);
				drop(p);
			}
			p = next;
		}
	}
	dispatch();
	mg_outbox_unlock();
}

int mg_pool_expire(mg_outbox_thread *w, double now)
{
	int n = 0;

	mg_outbox_lock();
	for (mg_queue *q = mg_queue_head(&queue), *next; q != &queue; q = next) {
		mg_pending *p = mg_queue_data(q, mg_pending, qnode);

		next = q->next;
		if (p->owner != w || now < p->deadline)
			continue;
		mg_outbox_post_locked(w, MG_POOL_EXPIRED, any_serves(p->model) ? 429 : 503, p->id, NULL, 0);
		drop(p);
		n++;
	}
	mg_outbox_unlock();
	return n;
}

void mg_pool_taken(mg_outbox_thread *t, const mg_pool_event *ev)
{
	mg_outbox_lock();
	for (; ev; ev = ev->next) {
		mg_pending *p;
		if (ev->kind != MG_POOL_MESSAGE || !(p = find(ev->id)) || p->owner != t)
			continue;
		p->inbox = p->inbox > ev->len ? p->inbox - ev->len : 0;
		hold_update(p);
	}
	mg_outbox_unlock();
}

int mg_pool_join(uint64_t conn_id, int thread_index)
{
	mg_pool_worker *pw = calloc(1, sizeof *pw);

	if (!pw)
		return -1;
	pw->conn_id = conn_id;
	pw->thread_index = thread_index;
	pw->capacity = 1;
	pw->connected_at = pw->last_active = now_ms();
	snprintf(pw->name, sizeof pw->name, "worker-%llu", (unsigned long long)conn_id);
	mg_outbox_lock();
	pw->next = workers;
	workers = pw;
	mg_outbox_unlock();
	return 0;
}

static void free_models(mg_pool_worker *pw)
{
	for (int i = 0; i < pw->nmodels; i++)
		free(pw->models[i]);
	free(pw->models);
	pw->models = NULL;
	pw->nmodels = 0;
}

/* Lock held: the registered worker on connection conn_id, or NULL. */
static mg_pool_worker *find_worker(uint64_t conn_id)
{
	for (mg_pool_worker *pw = workers; pw; pw = pw->next)
		if (pw->conn_id == conn_id)
			return pw;
	return NULL;
}

void mg_pool_conn_gone(uint64_t conn_id)
{
	mg_pool_worker *pw, **pp;
	int requeued = 0, lost = 0;

	mg_outbox_lock();
	for (pp = &workers; *pp && (*pp)->conn_id != conn_id; pp = &(*pp)->next)
		;
	pw = *pp;
	if (!pw) {
		mg_outbox_unlock();
		return;
	}
	*pp = pw->next;
	for (int b = 0; b < NBUCKETS; b++) {
		mg_pending *p = table[b];
		while (p) {
			mg_pending *next = p->hnext;
			if (p->worker == pw) {
				p->worker = NULL;
				p->held = 0; /* pw goes: nobody to release */
				p->client_full = 0;
				if (!p->delivered) { /* nothing reached the client: another worker */
					q_insert(p, 1);
					requeued++;
				} else {
					mg_outbox_post_locked(p->owner, MG_POOL_LOST, 502, p->id, NULL, 0);
					drop(p);
					lost++;
				}
			}
			p = next;
		}
	}
	dispatch();
	mg_outbox_unlock();
	if (requeued || lost)
		mg_log(MG_LOG_WARN, "WS worker %s left with %d request(s): %d requeued, %d failed",
		       pw->name, requeued + lost, requeued, lost);
	free_models(pw);
	free(pw);
}

/* ---- primitives -------------------------------------------------------- */

/* The outbox of the worker thread L serves on (its context, ctx.h). */
static mg_outbox_thread *owner_of(lua_State *L)
{
	mg_ctx *ctx = mg_ctx_of(L);

	if (!ctx)
		luaL_error(L, "the WS worker pool needs a worker thread");
	return &ctx->ob;
}

static const char *check_id(lua_State *L, int idx)
{
	size_t n;
	const char *id = luaL_checklstring(L, idx, &n);

	if (!n || n > 100 || strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:") != n)
		luaL_argerror(L, idx, "request id: 1..100 characters of [A-Za-z0-9_.:-]");
	return id;
}

static char *dup_checked(lua_State *L, const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (!d)
		luaL_error(L, "out of memory");
	memcpy(d, s, n);
	d[n] = 0;
	return d;
}

/* _pool_submit(id, model, message, queue_timeout_ms, max_queue [, wait_ms])
 *   -> "assigned" | "queued" | nil, "queue full" | nil, "no worker"
 * message is the completion_request text sent to the worker. With wait_ms,
 * a request no ready worker serves is refused at once (wait_ms <= 0) or
 * waits that long for one to connect, not the whole queue time: decided
 * under the pool's lock, so no worker can leave between the look and the
 * queueing. */
static int l_pool_submit(lua_State *L)
{
	mg_outbox_thread *w = owner_of(L);
	const char *id = check_id(L, 1);
	size_t mlen, len;
	const char *model = luaL_checklstring(L, 2, &mlen);
	const char *msg = luaL_checklstring(L, 3, &len);
	int timeout = (int)luaL_checkinteger(L, 4);
	int max_queue = (int)luaL_checkinteger(L, 5);
	int has_wait = !lua_isnoneornil(L, 6);
	int wait_ms = has_wait ? (int)luaL_checkinteger(L, 6) : 0;
	size_t idlen = strlen(id);
	mg_pending *p = calloc(1, sizeof *p + idlen + 1 + mlen + 1 + len);
	const char *result = "assigned";

	if (!p)
		return luaL_error(L, "out of memory");
	p->id = (char *)(p + 1);
	p->model = p->id + idlen + 1;
	p->msg = p->model + mlen + 1;
	memcpy(p->id, id, idlen + 1);
	memcpy(p->model, model, mlen + 1);
	memcpy(p->msg, msg, len);
	p->msg_len = len;
	mg_queue_init(&p->qnode);
	p->owner = w;
	p->high_water = mg_ctx_of(L)->cfg->stream_high_water;
	p->queue_timeout_ms = timeout;

	mg_outbox_lock();
	if (find(id)) {
		mg_outbox_unlock();
		free(p);
		return luaL_argerror(L, 1, "a request with this id is in flight");
	}
	p->hnext = table[bucket(id)];
	table[bucket(id)] = p;
	n_pending++;
	if (!place(p)) {
		int nobody = has_wait && !any_serves(model);

		if (nobody && wait_ms <= 0) {
			drop(p);
			mg_outbox_unlock();
			lua_pushnil(L);
			lua_pushliteral(L, "no worker");
			return 2;
		}
		if (q_len >= max_queue) {
			drop(p);
			mg_outbox_unlock();
			lua_pushnil(L);
			lua_pushliteral(L, "queue full");
			return 2;
		}
		q_insert(p, 0);
		if (nobody) /* this wait only; a later requeue gets the queue time */
			p->deadline = now_ms() + wait_ms;
		result = "queued";
	}
	mg_outbox_unlock();
	lua_pushstring(L, result);
	return 1;
}

/* _pool_cancel(id) -> true if the request was still pending */
static int l_pool_cancel(lua_State *L)
{
	mg_outbox_thread *w = owner_of(L);
	const char *id = check_id(L, 1);
	mg_pending *p;

	mg_outbox_lock();
	p = find(id);
	if (p && p->owner == w) {
		release(p);
		drop(p);
		dispatch();
	} else {
		p = NULL;
	}
	mg_outbox_unlock();
	lua_pushboolean(L, p != NULL);
	return 1;
}

/* _pool_hold(id, full): the owner's Lua says whether the client of request
 * id is behind (its stream over the high-water mark: true) or drained
 * (false). While one request of a worker is held, its socket is not read. */
static int l_pool_hold(lua_State *L)
{
	mg_outbox_thread *w = owner_of(L);
	const char *id = check_id(L, 1);
	int full = lua_toboolean(L, 2);
	mg_pending *p;

	mg_outbox_lock();
	p = find(id);
	if (p && p->owner == w) {
		p->client_full = full;
		hold_update(p);
	}
	mg_outbox_unlock();
	return 0;
}

/* _pool_ready(h [, {models = {...}, capacity = n, name = s}]) -> true | nil, "closed"
 * The worker on socket h takes requests, for those models (all if none). */
static int l_pool_ready(lua_State *L)
{
	mg_outbox_conn *c = mg_outbox_check(L, 1);
	uint64_t conn_id = c ? c->id : 0;
	mg_pool_worker *pw;
	char **models = NULL;
	int nmodels = 0, capacity = -1;
	const char *name = NULL;

	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_getfield(L, 2, "models");
		if (lua_istable(L, -1)) {
			int n = (int)lua_objlen(L, -1);
			models = calloc((size_t)(n ? n : 1), sizeof *models);
			if (!models)
				return luaL_error(L, "out of memory");
			for (int i = 1; i <= n; i++) {
				size_t sl;
				const char *s;
				lua_rawgeti(L, -1, i);
				s = lua_tolstring(L, -1, &sl);
				if (s && sl && sl < 256)
					models[nmodels++] = dup_checked(L, s, sl);
				lua_pop(L, 1);
			}
		}
		lua_pop(L, 1);
		lua_getfield(L, 2, "capacity");
		if (lua_isnumber(L, -1))
			capacity = (int)lua_tointeger(L, -1);
		lua_pop(L, 1);
		lua_getfield(L, 2, "name");
		name = lua_tostring(L, -1); /* stays on the stack while used */
	}
	mg_outbox_lock();
	pw = conn_id ? find_worker(conn_id) : NULL;
	if (!pw) {
		mg_outbox_unlock();
		for (int i = 0; i < nmodels; i++)
			free(models[i]);
		free(models);
		lua_pushnil(L);
		lua_pushliteral(L, "closed");
		return 2;
	}
	if (models) {
		free_models(pw);
		pw->models = models;
		pw->nmodels = nmodels;
	}
	if (capacity > 0)
		pw->capacity = capacity > 1000 ? 1000 : capacity;
	if (name && *name)
		snprintf(pw->name, sizeof pw->name, "%s", name);
	pw->ready = 1;
	pw->last_active = now_ms();
	dispatch();
	mg_outbox_unlock();
	lua_pushboolean(L, 1);
	return 1;
}

/* _pool_deliver(h, id, text, final) -> true | false
 * A message of the worker on socket h for request id goes to the request's
 * thread; false when no request of that worker has this id (unknown or
 * finished). final ends the request and frees the worker's slot. */
static int l_pool_deliver(lua_State *L)
{
	mg_outbox_conn *c = mg_outbox_check(L, 1);
	uint64_t conn_id = c ? c->id : 0;
	mg_pool_worker *pw;
	size_t len;
	const char *id = luaL_checkstring(L, 2);
	const char *text = luaL_checklstring(L, 3, &len);
	int final = lua_toboolean(L, 4);
	mg_pending *p;
	int ok = 0;

	mg_outbox_lock();
	p = find(id);
	pw = conn_id ? find_worker(conn_id) : NULL;
	if (pw && p && p->worker == pw) {
		ok = 1;
		p->delivered++;
		if (!mg_outbox_post_locked(p->owner, MG_POOL_MESSAGE, 0, id, text, len)) {
			p->inbox += len;
			hold_update(p);
		}
		if (final) {
			pw->inflight--;
			pw->served++;
			pw->last_active = now_ms();
			drop(p);
			dispatch();
		}
	}
	mg_outbox_unlock();
	lua_pushboolean(L, ok);
	return 1;
}

/* _pool_state() -> {workers = {{id, name, status, thread, models, capacity,
 *   in_flight, served, last_seen_ms_ago, connected_s}...}, queued, pending} */
static int l_pool_state(lua_State *L)
{
	double now = now_ms();
	int i = 0;

	mg_outbox_lock();
	lua_createtable(L, 0, 3);
	lua_newtable(L);
	for (mg_pool_worker *pw = workers; pw; pw = pw->next) {
		uint64_t seen = mg_outbox_last_seen_locked(pw->conn_id);
		lua_createtable(L, 0, 10);
		lua_pushnumber(L, (lua_Number)pw->conn_id);
		lua_setfield(L, -2, "id");
		lua_pushstring(L, pw->name);
		lua_setfield(L, -2, "name");
		lua_pushstring(L, !pw->ready ? "connecting" : pw->inflight >= pw->capacity ? "busy" : "idle");
		lua_setfield(L, -2, "status");
		lua_pushinteger(L, pw->thread_index);
		lua_setfield(L, -2, "thread");
		lua_createtable(L, pw->nmodels, 0);
		for (int m = 0; m < pw->nmodels; m++) {
			lua_pushstring(L, pw->models[m]);
			lua_rawseti(L, -2, m + 1);
		}
		lua_setfield(L, -2, "models");
		lua_pushinteger(L, pw->capacity);
		lua_setfield(L, -2, "capacity");
		lua_pushinteger(L, pw->inflight);
		lua_setfield(L, -2, "in_flight");
		lua_pushnumber(L, (lua_Number)pw->served);
		lua_setfield(L, -2, "served");
		lua_pushnumber(L, now > (double)seen ? (double)(uint64_t)(now - (double)seen) : 0);
		lua_setfield(L, -2, "last_seen_ms_ago");
		lua_pushnumber(L, (double)(uint64_t)((now - pw->connected_at) / 1000));
		lua_setfield(L, -2, "connected_s");
		lua_rawseti(L, -2, ++i);
	}
	lua_setfield(L, -2, "workers");
	lua_pushinteger(L, q_len);
	lua_setfield(L, -2, "queued");
	lua_pushinteger(L, n_pending);
	lua_setfield(L, -2, "pending");
	mg_outbox_unlock();
	return 1;
}

/* _pool_serves(model) -> whether a ready worker announced it (or any model) */
static int l_pool_serves(lua_State *L)
{
	const char *model = luaL_checkstring(L, 1);
	int yes = 0;

	mg_outbox_lock();
	for (mg_pool_worker *pw = workers; pw && !yes; pw = pw->next)
		yes = pw->ready && pw->nmodels && serves(pw, model);
	mg_outbox_unlock();
	lua_pushboolean(L, yes);
	return 1;
}

/* _pool_models() -> the model names ready workers announced (may repeat) */
static int l_pool_models(lua_State *L)
{
	int n = 0;

	mg_outbox_lock();
	lua_newtable(L);
	for (mg_pool_worker *pw = workers; pw; pw = pw->next)
		for (int m = 0; pw->ready && m < pw->nmodels; m++)
			if (strcmp(pw->models[m], "*")) {
				lua_pushstring(L, pw->models[m]);
				lua_rawseti(L, -2, ++n);
			}
	mg_outbox_unlock();
	return 1;
}

int mg_pool_open(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "_pool_submit", l_pool_submit },
		{ "_pool_cancel", l_pool_cancel },
		{ "_pool_hold", l_pool_hold },
		{ "_pool_ready", l_pool_ready },
		{ "_pool_deliver", l_pool_deliver },
		{ "_pool_state", l_pool_state },
		{ "_pool_serves", l_pool_serves },
		{ "_pool_models", l_pool_models },
		{ NULL, NULL }
	};

	mg_set_funcs(L, fns);
	return 0;
}
