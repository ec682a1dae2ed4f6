/* WebSocket connections (libwebsockets), for the worker pool (/ws) and chat
 * sockets (/ws/{client_id}), on TLS and cleartext listeners alike: a
 * cleartext Upgrade request parsed by h1.c reaches lws through ws_relay.c.
 *
 * Threads: an mg_ws_conn belongs to the worker thread whose lws context
 * serves its socket; only that thread touches wsi, the Lua handle, rx and
 * the callbacks. Its outbox (outbox.h, the first member) is reachable from
 * other threads by the connection's id, because another thread may queue a
 * message for a pool worker; outbox.c then wakes the owner. The owner frees
 * the connection when lws reports it closed, after taking it out of the
 * pool's registry and the outbox's table, so no other thread can reach it.
 *
 * Flow control of pool workers: the pool sets a connection's rx_hold
 * (outbox.h) from any thread and wakes the owner; only the owner calls
 * lws_rx_flow_control, at that wake and after each message it hands to Lua
 * (the worker's own delivery may have set it). A socket held so is not
 * read, so its pongs are not seen: while held the worker counts as heard
 * from, and its heartbeat timeout starts again when it is resumed.
 *
 * Floor 5: calls pool.c, outbox.c, lws_hdr.c, stats.c, lua_host.c, log.c.
 *
 * Lua sees a connection as a handle (userdata, metatable "moongate.ws") and
 * through functions of the worker's handler table:
 *   ws_open(h, path, query, headers) -> "worker" | "chat" | nil, reason, status
 *   ws_message(h, text)
 *   ws_close(h)
 *   ws_export(h) -> text | nil (busy), ws_import(h, text): a move to a
 *   newer Lua state after a reload
 * A connection holds the Lua state its handle is in (lstate.h).
 */
#ifndef MG_WS_H
#define MG_WS_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "ws_rx.h"

#include "outbox.h"

struct lws;
struct mg_ctx;
struct mg_lstate;

typedef struct mg_ws_conn {
	/* first: a handle's slot is read as an mg_outbox_conn * (outbox.h);
	 * its id, last_seen_ms and queued output live there */
	mg_outbox_conn ob;
	/* owner thread only */
	struct lws *wsi;         /* NULL once lws has closed it */
	struct mg_ctx *ctx;      /* its thread (ctx.h) */
	struct mg_lstate *ls;    /* held (lstate.h): the Lua state its handle is in */
	mg_queue node;           /* on the owner's open connections (ws.c's slot) */
	struct mg_ws_conn **handle;     /* the Lua handle's slot */
	int handle_ref, on_drain_ref;
	int established;
	int is_worker;           /* a pool worker: heartbeats apply */
	int rx_off;              /* its socket is not read: the pool's rx_hold
				  * (outbox.h) as last applied (flow_apply) */
	char refused[100];       /* why Lua refused it: closed once open */
	mg_ws_rx rx;             /* the message being assembled (ws_rx.h) */
	uint64_t last_ping_ms;   /* when the last heartbeat went out */
} mg_ws_conn;

/* Hands lws's end of a socketpair to the worker's vhost: ws_relay.c relays a
 * cleartext client through the other end (its Upgrade request first) and
 * checks the frames on the way. peer is the client's address, which
 * ws_open is given instead of the pair's (a copy, owned by the wsi's
 * opaque user data until mg_ws_wsi_destroyed). lws owns fd from then on;
 * on failure (-1) it is closed. */
int mg_ws_adopt(struct mg_ctx *ctx, int fd, const char *peer);

/* The client's address for a wsi of the worker's vhost, into buf (empty
 * if unknown): the one mg_ws_adopt was given for a relayed socket, else
 * lws's (TLS). Every WebSocket or lws request reads its peer here. */
const char *mg_ws_peer(struct lws *wsi, char *buf, size_t len);

/* For every wsi lws destroys (LWS_CALLBACK_WSI_DESTROY, http_lws.c): frees
 * the peer mg_ws_adopt left on it, if any. */
void mg_ws_wsi_destroyed(struct lws *wsi);

/* The lws callback cases for WebSocket reasons (from http_lws.c's
 * callback); `slot` is the per-connection pointer lws keeps for us. */
int mg_ws_callback(struct lws *wsi, int reason, mg_ws_conn **slot, void *in, size_t len);

/* Owner thread, at start: ws.c's per-thread state in ctx->slot[MG_SLOT_WS]:
 * the list of open connections, and the tick (heartbeats, queue expiry, a
 * few times per shortest period of the config's), started here. 0, or -1
 * out of memory. */
int mg_ws_thread_init(struct mg_ctx *ctx);
/* Owner thread, at stop: the tick is closed. The connections close with
 * the lws context after (lws_context_destroy), so the list stays. */
void mg_ws_thread_stop(struct mg_ctx *ctx);
/* Owner thread, at its very end (lws context destroyed, no connection
 * left): the per-thread state goes, now, or in the tick's close callback
 * if that has not run; the slot is NULL after. Harmless without init. */
void mg_ws_thread_free(struct mg_ctx *ctx);

/* Owner thread: the wake handle fired (messages queued by other threads,
 * pool events). Sockets close with the lws context at stop
 * (lws_context_destroy). */
void mg_ws_on_wake(struct mg_ctx *ctx);

/* After a reload: each connection of the thread moves to the current Lua
 * state when its Lua side is idle (mg_ws_move: one connection). Those that
 * are not move later, at a message or a tick. */
void mg_ws_migrate(struct mg_ctx *ctx);
void mg_ws_move(mg_ws_conn *c);

/* The handle at idx, or NULL once the connection is gone; raises on a
 * value that is not a handle. */
mg_ws_conn *mg_ws_check(lua_State *L, int idx);

/* Registers _ws_send, _ws_close, _ws_on_drain on the table at -1. */
int mg_ws_open(lua_State *L);

#endif
