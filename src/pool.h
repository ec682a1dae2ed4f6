/* The WS worker pool: the registry of workers that dialed in on /ws, the
 * rendezvous table of requests waiting for or served by them, and the queue
 * of requests that found no free worker. Shared by every worker thread.
 *
 * Threads and locks:
 *   Everything in this file's tables (mg_pool_worker, mg_pending, each
 *   thread's inbox and queued count) is read and written only with the pool
 *   lock held (mg_pool_lock). The lock also guards each WS connection's
 *   outbox (ws.c), so a thread can hand a message to a worker that another
 *   thread owns.
 *   A request (mg_pending) belongs to the thread whose Lua submitted it: the
 *   worker's messages for it are copied into that thread's inbox and the
 *   thread is woken with uv_async_send; only that thread's Lua sees them.
 *   A pool worker belongs to the thread that owns its socket; that thread
 *   frees it when the socket closes, after taking it out of the registry.
 *   Nothing here calls Lua with the lock held.
 */
#ifndef MG_POOL_H
#define MG_POOL_H

#include <lua.h>
#include <stddef.h>

struct mg_worker;
struct mg_ws_conn;

enum { MG_POOL_MESSAGE = 1, MG_POOL_LOST, MG_POOL_EXPIRED };

/* One message for a thread's Lua, in its inbox. Owned by the inbox, then
 * by the thread that takes it; freed with free(). */
typedef struct mg_pool_event {
	struct mg_pool_event *next;
	int kind;        /* MG_POOL_* */
	int status;      /* EXPIRED: 503 (no worker serves the model) or 429 */
	char *id;        /* the request id, NUL-terminated, inside this block */
	size_t len;
	char data[];     /* MESSAGE: the worker's JSON text */
} mg_pool_event;

void mg_pool_lock(void);
void mg_pool_unlock(void);

/* Owner thread, at start: its inbox may receive events from now on. */
void mg_pool_thread_start(struct mg_worker *w);
/* Owner thread, at stop: no more events; its requests are withdrawn. */
void mg_pool_thread_stop(struct mg_worker *w);
/* Owner thread: takes the inbox (a list in arrival order; caller frees). */
mg_pool_event *mg_pool_take_events(struct mg_worker *w);
/* Owner thread, from its tick: moves requests of this thread whose queue
 * time is up into its inbox as EXPIRED events. Returns how many. */
int mg_pool_expire(struct mg_worker *w, double now_ms);

/* The connection's thread, when a /ws socket closes: the worker leaves the
 * registry; its requests go back to the queue if nothing of theirs reached
 * their client yet, or end with a LOST event. */
void mg_pool_conn_gone(struct mg_ws_conn *c);

/* The connection's thread, when Lua accepts a /ws socket: the worker joins
 * the registry, not yet ready. 0, or -1 out of memory. */
int mg_pool_join(struct mg_ws_conn *c);

/* Registers _pool_* on the table at -1. */
int mg_pool_open(lua_State *L);

#endif
