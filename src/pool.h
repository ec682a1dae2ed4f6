/* The WS worker pool: the registry of workers that dialed in on /ws, the
 * rendezvous table of requests waiting for or served by them, and the queue
 * of requests that found no free worker. Shared by every worker thread.
 *
 * Floor 4: calls outbox.c (the lock, inboxes, and sending to a worker's
 * socket by connection id), log.c and lua_host.c; never ws.c.
 *
 * Threads and locks:
 *   Everything in this file's tables (mg_pool_worker, mg_pending) is read
 *   and written only with the outbox lock held (mg_outbox_lock, outbox.h),
 *   the same lock that guards each WS connection's outbox, so "pick a
 *   worker and queue to it" is atomic.
 *   A request (mg_pending) belongs to the thread whose Lua submitted it: the
 *   worker's messages for it are posted to that thread's inbox (outbox.h),
 *   which wakes it; only that thread's Lua sees them.
 *   A pool worker is known by its connection's id; the thread that owns the
 *   socket takes it out of the registry (mg_pool_conn_gone) when it closes.
 *   Nothing here calls Lua with the lock held.
 *
 * Flow control (issue #23): a worker's socket is not read while one of its
 * requests is held: its client is behind (the owner's Lua, _pool_hold), or
 * more than stream_high_water bytes of its messages wait in the owner's
 * inbox (counted up by _pool_deliver on the worker's thread, down by
 * mg_pool_taken on the owner's). The pool only sets the connection's
 * rx_hold (outbox.h, lock held), which wakes the socket's thread; that
 * thread alone pauses or resumes the socket (ws.c). A request that ends,
 * is cancelled or whose thread stops releases its hold.
 */
#ifndef MG_POOL_H
#define MG_POOL_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include "outbox.h"

enum { MG_POOL_MESSAGE = 1, MG_POOL_LOST, MG_POOL_EXPIRED };

/* The events the pool posts to a thread's inbox (outbox.h). */
typedef mg_outbox_event mg_pool_event;

/* Owner thread, at stop: its requests are withdrawn (their workers told). */
void mg_pool_thread_stop(mg_outbox_thread *t);
/* Owner thread, from its tick: moves requests of this thread whose queue
 * time is up into its inbox as EXPIRED events. Returns how many. */
int mg_pool_expire(mg_outbox_thread *t, double now_ms);

/* Owner thread t, after its Lua had the events ev (a list, from its
 * inbox): their bytes no longer count against their requests' inboxes,
 * which may release a worker's hold. */
void mg_pool_taken(mg_outbox_thread *t, const mg_pool_event *ev);

/* The connection's thread, when a /ws socket closes: the worker leaves the
 * registry; its requests go back to the queue if nothing of theirs reached
 * their client yet, or end with a LOST event. */
void mg_pool_conn_gone(uint64_t conn_id);

/* The connection's thread, when Lua accepts a /ws socket: the worker on
 * connection conn_id (outbox.h) joins the registry, not yet ready.
 * 0, or -1 out of memory. */
int mg_pool_join(uint64_t conn_id, int thread_index);

/* Registers _pool_* on the table at -1. */
int mg_pool_open(lua_State *L);

#endif
