/* Worker threads: each owns one libuv loop, one libwebsockets context and
 * one Lua state, and serves the shared listening port (SO_REUSEPORT).
 *
 * Thread ownership: everything in an mg_worker belongs to its thread once the
 * thread runs, except `stop_async` with `want` and `reloads` (the main
 * thread sets those atomically, then signals), and `ob`, which other worker
 * threads reach through outbox.c, under its lock. */
#ifndef MG_SERVER_H
#define MG_SERVER_H

struct lws_context;
struct lws_vhost;
#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <uv.h>
#include "buf.h"
#include "outbox.h"

typedef struct mg_server_config {
	char host[256];
	int port;               /* 0: pick one; the first worker fills it in */
	int workers;
	size_t max_body_bytes;
	size_t max_header_bytes;
	size_t stream_high_water; /* queued bytes per stream before pausing */
	int keepalive_timeout;    /* seconds an idle keep-alive connection lives */
	int request_timeout;      /* seconds a request being received may go without bytes */
	double shutdown_timeout;  /* seconds running requests get after SIGTERM */
	int ws_heartbeat_ms;      /* a heartbeat to each pool worker this often */
	int ws_timeout_ms;        /* drop a pool worker silent this long */
	int ws_queue_timeout_ms;  /* a request waits this long for a free worker */
	size_t ws_max_message;    /* largest WebSocket message accepted */
	char *tls_cert, *tls_key; /* owned; both set or both NULL */
	int tls_http2;            /* offer h2 by ALPN (else HTTP/1.1 only) */
	struct ssl_ctx_st *client_ssl_ctx; /* owned; lws wants one (see server.c) */
	char *init_json;          /* owned; handed to moongate.worker.init */
	char *pidfile;            /* owned or NULL: written once serving, removed at exit */
	char *log_file;           /* owned or NULL: the log goes there (log.h) */
	int daemon;               /* detach (fork, setsid) before the workers start */
	const luaL_Reg *preload;  /* each worker state's preloaded modules */
	struct mg_watch_spec *watch; /* owned (dir, name strings too): what a
				      * change to asks for a reload (watch.h) */
	int nwatch;
	int verbose;
} mg_server_config;

typedef struct mg_worker {
	int index; /* 1-based */
	const mg_server_config *cfg;
	uv_thread_t thread;
	uv_loop_t loop;
	uv_async_t stop_async;  /* the main thread's word: see want and reloads */
	int want;               /* atomic, set by the main thread: MG_PHASE_* asked for */
	unsigned reloads;       /* atomic, bumped by the main thread per SIGHUP */
	int phase;              /* the worker's own: MG_PHASE_* reached */
	unsigned reloads_done;  /* the worker's own: reloads handed to Lua */
	uv_timer_t force_stop; /* ends a shutdown that a leaked handle would hang */
	int force_stop_armed;
	struct lws_context *ctx;
	struct lws_vhost *vhost;
	int listen_fd;          /* our own SO_REUSEPORT socket; lws adopts accepts */
	uv_poll_t listen_poll;
	int listen_poll_open;
	void *h1_conns;         /* h1.c's list of open connections */
	void *h1_deferred;      /* h1.c: connections whose pipelined request waits */
	uv_idle_t h1_idle;      /* ... for this, in the loop's idle phase (h1.c) */
	int h1_idle_open;
	mg_queue ws_conns;      /* ws.c's open WebSockets (queue.h) */
	uv_timer_t ws_tick;     /* heartbeats and queue expiry */
	int ws_tick_open;
	mg_outbox_thread ob;    /* the wake handle, inbox and wake list that other
				 * threads reach (outbox.h, under its lock) */
	struct mg_lstate *ls;   /* the current Lua state: new work goes to it */
	mg_queue states;        /* every live one (lstate.h): the current one,
				 * and those a reload retired that still serve */
	unsigned loads;         /* Lua states made so far (the next one's id - 1) */
	mg_buf scratch;  /* http.c: each stream frame is framed here, then queued */
	mg_buf req_headers; /* the request headers beyond lws's own tokens that the
			     * front doors read, "name:\0" each (core._request_headers,
			     * from the descriptors); http_lws.c copies them */
	/* start-up handshake with the main thread */
	uv_mutex_t *start_mutex;
	uv_cond_t *start_cond;
	int start_state; /* 0 starting, 1 serving, -1 failed */
} mg_worker;

/* A worker's way to its end (want / phase): it stops accepting (DRAIN),
 * ends what still runs with an error in the client's format (END: Lua's
 * shutdown), then closes everything (STOP). */
enum { MG_PHASE_SERVING = 0, MG_PHASE_DRAIN, MG_PHASE_END, MG_PHASE_STOP };

/* Registry key of the lightuserdata pointing at the Lua state's mg_worker. */
#define MG_WORKER_KEY "moongate.worker"

/* Registers _serve(options) on the table at -1; each worker's Lua state
 * gets `preload` (mg_lua_new, lua_host.h), which the caller names. */
int mg_server_open(lua_State *L, const luaL_Reg *preload);

#endif
