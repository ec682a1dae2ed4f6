/* WebSocket connections on libwebsockets: opening (Lua decides), message
 * assembly (ws_rx.c gathers the pieces), the outbox and its writer,
 * heartbeats to pool workers, the thread's wake handle, and the Lua
 * primitives _ws_send, _ws_close and _ws_on_drain. See ws.h for who owns
 * what. */
#include <libwebsockets.h>
#include "ws.h"
#include "http.h"
#include "http_lws.h"
#include "lws_hdr.h"
#include "gate.h"
#include "log.h"
#include "lstate.h"
#include "lua_host.h"
#include "outbox.h"
#include "pool.h"
#include "ctx.h"
#include "stats.h"
#include "ws_rx.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WS_HANDLE_MT MG_WS_HANDLE_MT
#define MG_WS_CLOSE_SILENT 4000 /* our close code for a worker that went silent */
#define MG_LWS_WRITE_CLOSE 4

_Static_assert(MG_OUTBOX_HEADROOM >= LWS_PRE, "outbox messages need LWS_PRE bytes of headroom");
_Static_assert(offsetof(mg_ws_conn, ob) == 0, "a ws handle is read as an mg_outbox_conn *");

/* A worker thread's ws state: ctx->slot[MG_SLOT_WS], owned by the thread. */
typedef struct ws_thread {
	mg_queue conns;   /* its open WebSockets (mg_ws_conn.node) */
	uv_timer_t tick;  /* heartbeats and queue expiry */
	int tick_open;    /* until the tick's close callback */
	int tick_closing;
	int freeing;      /* mg_ws_thread_free ran: the close callback frees */
} ws_thread;

static ws_thread *ws_of(mg_ctx *ctx)
{
	return ctx->slot[MG_SLOT_WS];
}

static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000;
}

static void call_lua(lua_State *L, int nargs, const char *what)
{
	if (mg_pcall(L, nargs, 0, what)) {
		mg_stats_add(&mg_global_stats.lua_errors, 1);
		lua_pop(L, 1);
	}
}

/* ---- outbox -------------------------------------------------------------- */

/* Owner thread: queue and ask lws for a writable callback. Returns the
 * bytes now queued, or -1 (closing, or out of memory). */
static long send_text(mg_ws_conn *c, const char *text, size_t len)
{
	long queued = mg_outbox_queue(&c->ob, text, len);

	if (queued >= 0 && c->wsi)
		lws_callback_on_writable(c->wsi);
	return queued;
}

static void call_ref(mg_ws_conn *c, int ref, const char *what)
{
	lua_State *L = c->ls->L;

	if (!L)
		return;
	lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
	lua_rawgeti(L, LUA_REGISTRYINDEX, c->handle_ref);
	call_lua(L, 1, what);
}

static void drain_check(mg_ws_conn *c, size_t queued)
{
	if (c->on_drain_ref != LUA_NOREF && queued <= c->ctx->cfg->stream_high_water / 2) {
		int ref = c->on_drain_ref;
		c->on_drain_ref = LUA_NOREF;
		call_ref(c, ref, "ws drain callback");
		if (c->ls->L)
			luaL_unref(c->ls->L, LUA_REGISTRYINDEX, ref);
	}
}

/* One message per writable callback. Returns -1 to close. */
static int on_writable(mg_ws_conn *c)
{
	mg_outbox_msg *m;
	size_t queued;
	int more, code;

	m = mg_outbox_pop(&c->ob, &more, &queued, &code);
	if (m) {
		int n = lws_write(c->wsi, m->data + MG_OUTBOX_HEADROOM, m->len, LWS_WRITE_TEXT);
		mg_stats_buffered(-(long long)m->len);
		int short_write = n < (int)m->len;
		free(m);
		if (short_write)
			return -1;
	}
	if (more) {
		lws_callback_on_writable(c->wsi);
	} else if (code) {
		/* the close frame, written here: lws 4.1 marks the socket
		 * unusable when a writable callback returns non-zero, so what
		 * lws_close_reason() set is never sent. Opcode 4 is lws's
		 * (ABI-stable, unnamed in the header) LWS_WRITE_CLOSE. */
		const char *why = code == MG_WS_CLOSE_SILENT ? "heartbeat timeout" : c->refused;
		unsigned char frame[LWS_PRE + 125];
		size_t n = strlen(why) > 123 ? 123 : strlen(why);
		frame[LWS_PRE] = (unsigned char)(code >> 8);
		frame[LWS_PRE + 1] = (unsigned char)(code & 0xff);
		memcpy(frame + LWS_PRE + 2, why, n);
		lws_write(c->wsi, frame + LWS_PRE, n + 2, (enum lws_write_protocol)MG_LWS_WRITE_CLOSE);
		return -1;
	}
	drain_check(c, queued);
	return 0;
}

/* ---- flow control (pool workers; ws.h) -------------------------------- */

/* Owner thread: the socket is read or not as the pool's rx_hold says. */
static void flow_apply(mg_ws_conn *c)
{
	int hold;

	if (!c->wsi || !c->is_worker)
		return;
	hold = mg_outbox_held(&c->ob);
	if (hold == c->rx_off)
		return;
	c->rx_off = hold;
	lws_rx_flow_control(c->wsi, !hold);
	/* held, the worker's pongs stay unread: it counts as heard from */
	__atomic_store_n(&c->ob.last_seen_ms, now_ms(), __ATOMIC_RELAXED);
}

/* ---- life -------------------------------------------------------------- */

static mg_ws_conn *conn_new(mg_ctx *ctx, struct lws *wsi)
{
	mg_ws_conn *c = calloc(1, sizeof *c);

	if (!c)
		return NULL;
	mg_outbox_conn_open(&c->ob, &ctx->ob);
	c->wsi = wsi;
	c->ctx = ctx;
	c->ls = ctx->ls;
	mg_lstate_hold(c->ls);
	c->handle_ref = c->on_drain_ref = LUA_NOREF;
	c->last_ping_ms = now_ms();
	mg_queue_insert_head(&ws_of(ctx)->conns, &c->node);
	return c;
}

/* Owner thread: lws is done with the socket. Tells the pool and Lua, then
 * frees the connection. */
static void conn_gone(mg_ws_conn **slot)
{
	mg_ws_conn *c = *slot;
	lua_State *L;

	if (!c)
		return;
	*slot = NULL;
	L = c->ls->L;
	c->wsi = NULL;
	if (c->is_worker)
		mg_pool_conn_gone(c->ob.id);
	mg_outbox_conn_close(&c->ob);
	mg_queue_remove(&c->node);
	if (c->established && mg_lstate_push_fn(c->ls, "ws_close")) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, c->handle_ref);
		call_lua(L, 1, "ws_close");
	}
	if (c->handle)
		*c->handle = NULL;
	if (L) {
		luaL_unref(L, LUA_REGISTRYINDEX, c->on_drain_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, c->handle_ref);
	}
	mg_lstate_release(c->ls);
	mg_ws_rx_free(&c->rx);
	free(c);
}

static int copy_token(struct lws *wsi, int token, mg_buf *b)
{
	int n = lws_hdr_total_length(wsi, (enum lws_token_indexes)token);

	if (n <= 0)
		return 0;
	if (mg_buf_reserve(b, (size_t)n + 1))
		return -1;
	n = lws_hdr_copy(wsi, b->data, n + 1, (enum lws_token_indexes)token);
	b->len = n > 0 ? (size_t)n : 0;
	return 0;
}

/* Before the handshake answer: Lua accepts ("worker" or "chat") or refuses.
 * Returns non-zero to refuse. */
static int on_filter(struct lws *wsi, mg_ws_conn **slot)
{
	mg_ctx *ctx = lws_context_user(lws_get_context(wsi));
	lua_State *L = ctx->ls ? ctx->ls->L : NULL;
	mg_buf path = { 0 }, query = { 0 }, headers = { 0 };
	mg_ws_conn *c;
	int top, ok = 0;

	if (!slot || !L)
		return 1;
	top = lua_gettop(L);
	if (!mg_lstate_push_fn(ctx->ls, "ws_open"))
		return 1;
	c = conn_new(ctx, wsi);
	if (!c || copy_token(wsi, WSI_TOKEN_GET_URI, &path) ||
	    copy_token(wsi, WSI_TOKEN_HTTP_URI_ARGS, &query) ||
	    mg_lws_copy_headers(wsi, &ctx->req_headers, &headers)) {
		lua_settop(L, top);
		goto out;
	}
	*slot = c;
	c->handle = (mg_ws_conn **)mg_push_handle(L, c, WS_HANDLE_MT, &c->handle_ref);
	lua_pushlstring(L, path.data ? path.data : "", path.len);
	lua_pushlstring(L, query.data ? query.data : "", query.len);
	mg_push_pairs(L, &headers);
	{
		char peer[64];
		lua_pushstring(L, mg_ws_peer(wsi, peer, sizeof peer));
	}
	if (mg_pcall(L, 5, 3, "ws_open")) {
		mg_stats_add(&mg_global_stats.lua_errors, 1);
	} else if (lua_isstring(L, -3)) {
		c->is_worker = !strcmp(lua_tostring(L, -3), "worker");
		ok = !c->is_worker || !mg_pool_join(c->ob.id, ctx->index);
	} else {
		const char *why = lua_isstring(L, -2) ? lua_tostring(L, -2) : "refused";
		int status = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : 403;
		mg_log(MG_LOG_INFO, "WebSocket refused on %.*s: %s", (int)path.len,
		       path.data ? path.data : "", why);
		/* lws 4.1 drops the socket without an answer when the filter
		 * refuses: accept, then close at once with 4000 + the HTTP
		 * status and the reason, which a browser's onclose shows */
		snprintf(c->refused, sizeof c->refused, "%s", why);
		mg_outbox_set_close(&c->ob, 4000 + (status >= 400 && status < 600 ? status : 403), 0);
		ok = 1;
	}
	lua_settop(L, top);
out:
	mg_buf_free(&path);
	mg_buf_free(&query);
	mg_buf_free(&headers);
	if (!ok && c) {
		if (!*slot)
			*slot = c;
		conn_gone(slot); /* not established: Lua's ws_close is not called */
	}
	return !ok;
}

static int on_receive(mg_ws_conn *c, const void *in, size_t len)
{
	size_t max = c->ctx->cfg->ws_max_message;
	int last = lws_is_final_fragment(c->wsi) && !lws_remaining_packet_payload(c->wsi);
	int rc = mg_ws_rx_feed(&c->rx, in, len, last, !lws_frame_is_binary(c->wsi), max);

	if (rc == MG_WS_RX_NOMEM)
		return -1;
	if (rc == MG_WS_RX_MORE)
		return 0;
	__atomic_store_n(&c->ob.last_seen_ms, now_ms(), __ATOMIC_RELAXED);
	if (rc == MG_WS_RX_TOO_BIG) {
		static const char reason[] = "message too big";
		mg_log(MG_LOG_WARN, "WebSocket message over %zu bytes: closing", max);
		lws_close_reason(c->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
				 (unsigned char *)reason, sizeof reason - 1);
		return -1;
	}
	if (rc == MG_WS_RX_BAD_UTF8) {
		static const char reason[] = "text message is not UTF-8";
		mg_log(MG_LOG_WARN, "WebSocket text message not UTF-8: closing");
		lws_close_reason(c->wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD,
				 (unsigned char *)reason, sizeof reason - 1);
		return -1;
	}
	if (c->ls != c->ctx->ls)
		mg_ws_move(c);
	if (mg_lstate_push_fn(c->ls, "ws_message")) {
		lua_State *L = c->ls->L;
		lua_rawgeti(L, LUA_REGISTRYINDEX, c->handle_ref);
		lua_pushlstring(L, c->rx.msg.data ? c->rx.msg.data : "", c->rx.msg.len);
		mg_ws_rx_taken(&c->rx);
		call_lua(L, 2, "ws_message");
	}
	mg_ws_rx_taken(&c->rx);
	flow_apply(c); /* its message may have filled a request's share */
	return 0;
}

int mg_ws_callback(struct lws *wsi, int reason, mg_ws_conn **slot, void *in, size_t len)
{
	mg_ws_conn *c = slot ? *slot : NULL;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return on_filter(wsi, slot);
	case LWS_CALLBACK_ESTABLISHED:
		if (!c)
			return -1;
		c->wsi = wsi;
		if (c->refused[0]) {
			lws_callback_on_writable(wsi);
			return 0;
		}
		c->established = 1;
		return 0;
	case LWS_CALLBACK_RECEIVE:
		if (c && c->refused[0])
			return 0;
		return c ? on_receive(c, in, len) : -1;
	case LWS_CALLBACK_RECEIVE_PONG:
		if (c)
			__atomic_store_n(&c->ob.last_seen_ms, now_ms(), __ATOMIC_RELAXED);
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return c ? on_writable(c) : 0;
	case LWS_CALLBACK_CLOSED:
	case LWS_CALLBACK_WSI_DESTROY:
		if (slot)
			conn_gone(slot);
		return 0;
	default:
		return 0;
	}
}

int mg_ws_adopt(mg_ctx *ctx, int fd, const char *peer)
{
	char *copy = strdup(peer ? peer : "");
	struct lws *wsi;

	if (!copy) {
		close(fd);
		return -1;
	}
	wsi = lws_adopt_socket_vhost(ctx->vhost, fd); /* closes fd on failure */
	if (!wsi) {
		free(copy);
		return -1;
	}
	/* lws has only read nothing yet (its first read is a loop turn away),
	 * so no callback has looked for the peer before this */
	lws_set_opaque_user_data(wsi, copy);
	return 0;
}

const char *mg_ws_peer(struct lws *wsi, char *buf, size_t len)
{
	const char *p = lws_get_opaque_user_data(wsi);

	if (p) /* a relayed cleartext socket: the client's (mg_ws_adopt) */
		snprintf(buf, len, "%s", p);
	else if (!lws_get_peer_simple(wsi, buf, len))
		buf[0] = 0;
	return buf;
}

void mg_ws_wsi_destroyed(struct lws *wsi)
{
	char *peer = lws_get_opaque_user_data(wsi);

	if (peer) {
		lws_set_opaque_user_data(wsi, NULL);
		free(peer);
	}
}

/* ---- the thread's wake handle and tick --------------------------------- */

static const char *const event_names[] = { "", "message", "lost", "expired" };

static const char *event_name(int kind)
{
	if (kind == MG_GATE_GRANTED)
		return "granted";
	if (kind == MG_GATE_TIMEOUT)
		return "timeout";
	return kind >= 0 && kind < (int)(sizeof event_names / sizeof *event_names) ? event_names[kind] : "";
}

/* Each event goes to every live Lua state of the thread: the one whose
 * request it answers knows its id, the others pass (a reload may have left
 * requests on an older state). */
static void deliver_events(mg_ctx *ctx, mg_pool_event *list)
{
	for (mg_pool_event *ev = list; ev; ev = ev->next) {
		mg_queue *q;
		mg_queue_foreach(q, &ctx->states) {
			mg_lstate *s = mg_queue_data(q, mg_lstate, node);
			lua_State *L = s->L;
			if (!mg_lstate_push_fn(s, "pool_event"))
				continue;
			lua_pushstring(L, ev->id);
			lua_pushstring(L, event_name(ev->kind));
			if (ev->kind == MG_POOL_MESSAGE)
				lua_pushlstring(L, ev->data, ev->len);
			else
				lua_pushinteger(L, ev->status);
			call_lua(L, 3, "pool_event");
		}
	}
	/* the whole batch went to Lua (which held the requests whose client
	 * fell behind): only now may their workers be read again */
	if (list)
		mg_pool_taken(&ctx->ob, list);
	while (list) {
		mg_pool_event *next = list->next;
		free(list);
		list = next;
	}
}

/* ---- moving to a newer Lua state ----------------------------------------- */

/* Moves c from its Lua state to the thread's current one, when its Lua side
 * says it may (ws_export: nothing of it under way) and nothing of it is
 * pending in C (a drain callback): its Lua handle is made again in the new
 * state, which takes what the old one exported (ws_import). A move that
 * fails half way closes the connection. */
void mg_ws_move(mg_ws_conn *c)
{
	mg_lstate *from = c->ls, *to = c->ctx->ls;
	lua_State *L = from->L, *L2 = to ? to->L : NULL;
	int top, top2, old_ref;
	size_t n;
	const char *text;

	if (from == to || !L || !L2 || !c->established || !c->wsi || c->refused[0] ||
	    c->on_drain_ref != LUA_NOREF)
		return;
	top = lua_gettop(L);
	top2 = lua_gettop(L2);
	if (!mg_lstate_push_fn(to, "ws_import"))
		return;
	if (!mg_lstate_push_fn(from, "ws_export")) {
		lua_settop(L2, top2);
		return;
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, c->handle_ref);
	if (mg_pcall(L, 1, 1, "ws_export") || !lua_isstring(L, -1)) { /* busy */
		lua_settop(L, top);
		lua_settop(L2, top2);
		return;
	}
	text = lua_tolstring(L, -1, &n);
	if (c->handle)
		*c->handle = NULL; /* the old state's handle answers "closed" */
	old_ref = c->handle_ref;
	c->handle = (mg_ws_conn **)mg_push_handle(L2, c, WS_HANDLE_MT, &c->handle_ref);
	lua_pushlstring(L2, text, n);
	lua_settop(L, top);
	luaL_unref(L, LUA_REGISTRYINDEX, old_ref);
	c->ls = to;
	mg_lstate_hold(to);
	if (mg_pcall(L2, 2, 0, "ws_import")) {
		mg_stats_add(&mg_global_stats.lua_errors, 1);
		mg_outbox_set_close(&c->ob, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, 0);
		lws_callback_on_writable(c->wsi);
	}
	lua_settop(L2, top2);
	mg_lstate_release(from);
}

void mg_ws_migrate(mg_ctx *ctx)
{
	mg_queue *q;

	mg_queue_foreach(q, &ws_of(ctx)->conns) {
		mg_ws_conn *c = mg_queue_data(q, mg_ws_conn, node);
		if (c->ls != ctx->ls)
			mg_ws_move(c);
	}
}

static void wake_conn(mg_outbox_conn *oc)
{
	mg_ws_conn *c = (mg_ws_conn *)oc; /* ob is the first member */

	if (c->wsi) {
		flow_apply(c);
		lws_callback_on_writable(c->wsi);
	}
}

void mg_ws_on_wake(mg_ctx *ctx)
{
	mg_outbox_take_wakes(&ctx->ob, wake_conn);
	deliver_events(ctx, mg_outbox_take_events(&ctx->ob));
}

static void on_tick(uv_timer_t *timer)
{
	mg_ctx *ctx = timer->data;
	const mg_server_config *cfg = ctx->cfg;
	uint64_t now = now_ms();
	static const char heartbeat[] = "{\"type\":\"heartbeat\"}";

	mg_queue *q;

	/* nothing below frees a connection: lws closes sockets later */
	mg_queue_foreach(q, &ws_of(ctx)->conns) {
		mg_ws_conn *c = mg_queue_data(q, mg_ws_conn, node);
		uint64_t seen;

		if (c->ls != ctx->ls) /* left on an older state: it may move now */
			mg_ws_move(c);
		if (!c->is_worker || !c->established || !c->wsi)
			continue;
		if (c->rx_off) /* not read while held (flow_apply): heard from */
			__atomic_store_n(&c->ob.last_seen_ms, now, __ATOMIC_RELAXED);
		seen = __atomic_load_n(&c->ob.last_seen_ms, __ATOMIC_RELAXED);
		if (now - seen > (uint64_t)cfg->ws_timeout_ms) {
			mg_log(MG_LOG_WARN, "WS worker %llu silent for %llu ms: dropping it",
			       (unsigned long long)c->ob.id, (unsigned long long)(now - seen));
			/* its requests move on now; the socket closes at the next
			 * writable callback, or in 2 s if the peer takes nothing */
			mg_pool_conn_gone(c->ob.id);
			c->is_worker = 0;
			mg_outbox_set_close(&c->ob, MG_WS_CLOSE_SILENT, 1);
			lws_callback_on_writable(c->wsi);
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 2);
			continue;
		}
		if (now - c->last_ping_ms >= (uint64_t)cfg->ws_heartbeat_ms) {
			c->last_ping_ms = now;
			send_text(c, heartbeat, sizeof heartbeat - 1);
		}
	}
	/* the gate's waiters past their time hear of it through the inbox */
	mg_gate_tick(&ctx->ob, (double)now);
	if (mg_pool_expire(&ctx->ob, (double)now))
		deliver_events(ctx, mg_outbox_take_events(&ctx->ob));
}

/* Heartbeats and queue expiry are checked a few times per shortest period. */
static uint64_t tick_ms(const mg_server_config *c)
{
	int m = c->ws_heartbeat_ms;

	if (c->ws_timeout_ms < m)
		m = c->ws_timeout_ms;
	if (c->ws_queue_timeout_ms < m)
		m = c->ws_queue_timeout_ms;
	m /= 4;
	return (uint64_t)(m < 10 ? 10 : m > 1000 ? 1000 : m);
}

int mg_ws_thread_init(mg_ctx *ctx)
{
	ws_thread *t = calloc(1, sizeof *t);

	if (!t)
		return -1;
	mg_queue_init(&t->conns);
	uv_timer_init(ctx->loop, &t->tick);
	t->tick.data = ctx;
	t->tick_open = 1;
	uv_timer_start(&t->tick, on_tick, tick_ms(ctx->cfg), tick_ms(ctx->cfg));
	uv_unref((uv_handle_t *)&t->tick);
	ctx->slot[MG_SLOT_WS] = t;
	return 0;
}

static void on_tick_closed(uv_handle_t *h)
{
	ws_thread *t = (ws_thread *)((char *)h - offsetof(ws_thread, tick));

	t->tick_open = 0;
	if (t->freeing)
		free(t);
}

void mg_ws_thread_stop(mg_ctx *ctx)
{
	ws_thread *t = ws_of(ctx);

	if (!t || t->tick_closing)
		return;
	t->tick_closing = 1;
	uv_close((uv_handle_t *)&t->tick, on_tick_closed);
}

void mg_ws_thread_free(mg_ctx *ctx)
{
	ws_thread *t = ws_of(ctx);

	if (!t)
		return;
	mg_ws_thread_stop(ctx);
	ctx->slot[MG_SLOT_WS] = NULL;
	if (t->tick_open)
		t->freeing = 1; /* on_tick_closed frees it */
	else
		free(t);
}

/* ---- primitives -------------------------------------------------------- */

mg_ws_conn *mg_ws_check(lua_State *L, int idx)
{
	return *(mg_ws_conn **)luaL_checkudata(L, idx, WS_HANDLE_MT);
}

/* _ws_send(h, text) -> more, queued | nil, "closed"
 * more is false once more than stream_high_water bytes wait: wait for the
 * drain callback before sending more. */
static int l_ws_send(lua_State *L)
{
	size_t len;
	long queued;
	const char *text = luaL_checklstring(L, 2, &len);
	mg_ws_conn *c = mg_ws_check(L, 1);

	if (!c || !c->wsi || (queued = send_text(c, text, len)) < 0)
		return mg_push_closed(L);
	lua_pushboolean(L, (size_t)queued <= c->ctx->cfg->stream_high_water);
	lua_pushinteger(L, (lua_Integer)queued);
	return 2;
}

/* _ws_close(h [, code]) -> true: closes once what is queued is out */
static int l_ws_close(lua_State *L)
{
	mg_ws_conn *c = mg_ws_check(L, 1);
	int code = (int)luaL_optinteger(L, 2, LWS_CLOSE_STATUS_NORMAL);

	if (code < 1000 || code > 4999)
		return luaL_argerror(L, 2, "close code must be 1000..4999");
	if (c && c->wsi) {
		mg_outbox_set_close(&c->ob, code, 0);
		lws_callback_on_writable(c->wsi);
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* _ws_on_drain(h, fn | nil): fn(h) runs once, when the outbox is below half
 * the high water mark. */
static int l_ws_on_drain(lua_State *L)
{
	mg_ws_conn *c = mg_ws_check(L, 1);

	if (!lua_isnoneornil(L, 2))
		luaL_checktype(L, 2, LUA_TFUNCTION);
	if (!c || !c->wsi)
		return mg_push_closed(L);
	luaL_unref(L, LUA_REGISTRYINDEX, c->on_drain_ref);
	c->on_drain_ref = LUA_NOREF;
	if (!lua_isnoneornil(L, 2)) {
		lua_pushvalue(L, 2);
		c->on_drain_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_pushboolean(L, 1);
	return 1;
}

static int l_ws_tostring(lua_State *L)
{
	mg_ws_conn *c = mg_ws_check(L, 1);

	if (c)
		lua_pushfstring(L, "moongate.ws (%d)", (int)c->ob.id);
	else
		lua_pushliteral(L, "moongate.ws (closed)");
	return 1;
}

/* _ws_id(h) -> the connection's number, or nil once closed */
static int l_ws_id(lua_State *L)
{
	mg_ws_conn *c = mg_ws_check(L, 1);

	if (!c)
		return 0;
	lua_pushnumber(L, (lua_Number)c->ob.id);
	return 1;
}

int mg_ws_open(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "_ws_send", l_ws_send },
		{ "_ws_close", l_ws_close },
		{ "_ws_on_drain", l_ws_on_drain },
		{ "_ws_id", l_ws_id },
		{ NULL, NULL }
	};

	mg_handle_mt(L, WS_HANDLE_MT, l_ws_tostring);
	mg_set_funcs(L, fns);
	return 0;
}
