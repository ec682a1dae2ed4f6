/* WebSocket connections (libwebsockets), for the worker pool (/ws) and chat
 * sockets (/ws/{client_id}), on TLS and cleartext listeners alike: h1.c
 * hands a cleartext Upgrade request to lws with the bytes it has read.
 *
 * Threads: an mg_ws_conn belongs to the worker thread whose lws context
 * serves its socket; only that thread touches wsi, the Lua handle, rx and
 * the callbacks. The outbox and the "wants to write" link are guarded by the
 * pool lock (pool.h), because another thread may queue a message for a pool
 * worker; that thread then wakes the owner with uv_async_send(&w->wake).
 * The owner frees the connection when lws reports it closed, after taking
 * it out of the pool's registry, so no other thread can still reach it.
 *
 * Lua sees a connection as a handle (userdata, metatable "moongate.ws") and
 * through three functions of the worker's handler table:
 *   ws_open(h, path, query, headers) -> "worker" | "chat" | nil, reason, status
 *   ws_message(h, text)
 *   ws_close(h)
 */
#ifndef MG_WS_H
#define MG_WS_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"

struct lws;
struct mg_worker;
struct mg_pool_worker;

typedef struct mg_ws_msg {
	struct mg_ws_msg *next;
	size_t len;
	unsigned char data[]; /* LWS_PRE bytes of headroom, then len bytes */
} mg_ws_msg;

typedef struct mg_ws_conn {
	/* owner thread only */
	struct lws *wsi;         /* NULL once lws has closed it */
	struct mg_worker *w;
	struct mg_ws_conn *prev, *next; /* the owner's open connections */
	struct mg_ws_conn **handle;     /* the Lua handle's slot */
	int handle_ref, on_drain_ref;
	int established;
	int is_worker;           /* a pool worker: heartbeats apply */
	char refused[100];       /* why Lua refused it: closed once open */
	mg_buf rx;               /* the message being assembled */
	int rx_too_big;
	uint64_t last_ping_ms;   /* when the last heartbeat went out */
	uint64_t last_seen_ms;   /* atomic: read by other threads for stats */
	uint64_t id;
	/* guarded by the pool lock */
	mg_ws_msg *out_head, *out_tail;
	size_t out_bytes;
	int close_code;          /* close once the outbox is empty */
	int want_write;          /* linked in the owner's wake list */
	struct mg_ws_conn *wake_next;
	struct mg_pool_worker *pw; /* the pool's record of this worker */
} mg_ws_conn;

/* Queues text for the connection; caller holds the pool lock and may be on
 * any thread. 0, or -1 when the connection is gone or memory ran out. */
int mg_ws_queue_locked(mg_ws_conn *c, const char *text, size_t len);

/* Hands an accepted socket whose first bytes (an HTTP Upgrade request) were
 * already read to the worker's lws vhost; lws owns fd from then on, and
 * closes it on failure. */
void mg_ws_adopt(struct mg_worker *w, int fd, const char *head, size_t len);

/* The lws callback cases for WebSocket reasons (from http_lws.c's
 * callback); `slot` is the per-connection pointer lws keeps for us. */
int mg_ws_callback(struct lws *wsi, int reason, mg_ws_conn **slot, void *in, size_t len);

/* Owner thread: the wake handle fired (messages queued by other threads,
 * pool events); and its periodic tick (heartbeats, queue expiry). Sockets
 * close with the lws context at stop (lws_context_destroy). */
void mg_ws_on_wake(struct mg_worker *w);
void mg_ws_tick(struct mg_worker *w);

/* The handle at idx, or NULL once the connection is gone; raises on a
 * value that is not a handle. */
mg_ws_conn *mg_ws_check(lua_State *L, int idx);

/* Registers _ws_send, _ws_close, _ws_on_drain on the table at -1. */
int mg_ws_open(lua_State *L);

#endif
