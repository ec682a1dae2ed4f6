/* Worker threads: each owns one libuv loop, one libwebsockets context and
 * one Lua state, and serves the shared listening port (SO_REUSEPORT).
 *
 * Thread ownership: everything in an mg_worker belongs to its thread once the
 * thread runs, except `stop_async` with `want` and `reloads` (the main
 * thread sets those atomically, then signals), and `ctx.ob`, which other
 * worker threads reach through outbox.c, under its lock. The fields here are
 * server.c's alone; what other modules read is in `ctx` (ctx.h), and their
 * own per-thread state behind its slots. */
#ifndef MG_SERVER_H
#define MG_SERVER_H

struct lws_context;
#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <uv.h>
#include "ctx.h"

/* Why the last reload's trial load failed: written by the main thread, read
 * by the workers, under mu. */
typedef struct mg_reload_news {
	uv_mutex_t mu;
	char error[1024];
} mg_reload_news;

typedef struct mg_worker {
	mg_ctx ctx;             /* first: what the modules see (ctx.h); the lws
				 * context's user pointer and MG_CTX_KEY point
				 * here, and server.c casts back */
	uv_thread_t thread;
	uv_loop_t loop;         /* ctx.loop points here */
	uv_async_t stop_async;  /* the main thread's word: see want and reloads */
	int want;               /* atomic, set by the main thread: MG_PHASE_* asked for */
	unsigned reloads;       /* atomic, bumped by the main thread per SIGHUP */
	unsigned reloads_done;  /* the worker's own: reloads handed to Lua */
	unsigned reload_fails;  /* atomic, bumped by the main thread when a reload's
				 * trial load failed (why: news->error) */
	unsigned reload_fails_done; /* the worker's own */
	struct mg_reload_news *news; /* the main thread's, shared */
	uv_timer_t force_stop; /* ends a shutdown that a leaked handle would hang */
	int force_stop_armed;
	struct lws_context *lws_ctx;
	int listen_fd;          /* our own SO_REUSEPORT socket; lws adopts accepts */
	int shut_fd;            /* atomic: listen_fd while it is open, else -1 (for the watchdog) */
	int stuck;              /* atomic, set by the watchdog: stuck in a call, not joined */
	int exited;             /* atomic: worker_main has returned (or is about to) */
	int joined;             /* the main thread's own */
	uv_poll_t listen_poll;
	int listen_poll_open;
	/* start-up handshake with the main thread */
	uv_mutex_t *start_mutex;
	uv_cond_t *start_cond;
	int start_state; /* 0 starting, 1 serving, -1 failed */
} mg_worker;

/* Registers _serve(options) on the table at -1; each worker's Lua state
 * gets `preload` (mg_lua_new, lua_host.h), which the caller names. */
int mg_server_open(lua_State *L, const luaL_Reg *preload);

#endif
