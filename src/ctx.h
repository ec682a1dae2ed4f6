/* The per-thread context: what every module of a worker thread reads about
 * the thread it runs on (its index, loop, config, phase, Lua states, the
 * outbox other threads reach it through), and one opaque slot per module
 * for that module's own per-thread state.
 *
 * Floor 0: header only, no calls. server.c makes one per worker thread (the
 * first member of its mg_worker, server.h) and fills it in; the modules
 * above the floor take an `mg_ctx *` and never see mg_worker. The lws
 * context's user pointer and the registry's MG_CTX_KEY point at it.
 *
 * Threads: a context belongs to its worker thread; only that thread touches
 * it, except `ob`, which other threads reach through outbox.c under its
 * lock (outbox.h). Each field below says who writes it; everyone on the
 * thread may read it.
 *
 * Slots: a module that keeps per-thread state (h1.c, http.c, ws.c) defines
 * its own struct in its .c file, allocates it in its thread-init function
 * (server.c calls it before the first Lua state loads), keeps it in
 * slot[MG_SLOT_<module>], and frees it in its own stop function. No other
 * file reads a slot it does not own. */
#ifndef MG_CTX_H
#define MG_CTX_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <uv.h>
#include "buf.h"
#include "outbox.h"
#include "queue.h"

struct lws_vhost;
struct ssl_ctx_st;
struct mg_lstate;
struct mg_watch_spec;

/* What _serve was given (server.c parses it, on the main thread, before the
 * workers start; they only read it, except port, see below). */
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

/* A worker's way to its end (mg_worker.want asks, mg_ctx.phase says where it
 * is): it stops accepting (DRAIN), ends what still runs with an error in the
 * client's format (END: Lua's shutdown), then closes everything (STOP). */
enum { MG_PHASE_SERVING = 0, MG_PHASE_DRAIN, MG_PHASE_END, MG_PHASE_STOP };

/* One opaque slot per module that keeps per-thread state. */
enum {
	MG_SLOT_H1 = 0, /* h1.c: its connections, the deferred list, the idle handle */
	MG_SLOT_HTTP,   /* http.c: the frame scratch buffer */
	MG_SLOT_WS,     /* ws.c: the open WebSockets and the heartbeat tick */
	MG_CTX_SLOTS
};

typedef struct mg_ctx {
	int index;                   /* server.c: the thread's, 1-based */
	uv_loop_t *loop;             /* server.c: the thread's loop (in mg_worker) */
	const mg_server_config *cfg; /* server.c: shared by every thread, read only */
	int phase;                   /* server.c: MG_PHASE_* reached */
	struct lws_vhost *vhost;     /* server.c: where accepted and upgraded
				      * sockets go (h1.c, ws.c adopt into it) */
	struct mg_lstate *ls;        /* server.c: the current Lua state; new work
				      * (a request, a WebSocket) holds it */
	mg_queue states;             /* lstate.c's list (lstate.h), server.c owns
				      * it: every live state, the current one and
				      * those a reload retired that still serve */
	unsigned loads;              /* server.c: Lua states made so far */
	mg_outbox_thread ob;         /* server.c sets it up; other threads reach it
				      * through outbox.c, under its lock: the
				      * wake handle, inbox and wake list */
	mg_buf req_headers;          /* http.c (_request_headers, from the front
				      * doors' descriptors): the request headers
				      * beyond lws's own tokens the front doors
				      * read, "name:\0" each; http_lws.c and ws.c
				      * copy them. server.c frees it at the end */
	void *slot[MG_CTX_SLOTS];    /* each module's own, MG_SLOT_* (see the top) */
} mg_ctx;

/* Registry key of the light userdata pointing at the mg_ctx of the thread a
 * serving Lua state runs on (server.c sets it in each state it makes). */
#define MG_CTX_KEY "moongate.ctx"

/* The context of the thread L serves on, or NULL (the CLI's state, core.so
 * under busted). */
static inline mg_ctx *mg_ctx_of(lua_State *L)
{
	mg_ctx *x;

	lua_getfield(L, LUA_REGISTRYINDEX, MG_CTX_KEY);
	x = (mg_ctx *)lua_touserdata(L, -1);
	lua_pop(L, 1);
	return x;
}

#endif
