/* The cross-thread outbox: the one lock, each worker thread's inbox and wake
 * handle, and each WebSocket connection's outgoing messages, so that a
 * thread can hand a message to a socket or a request another thread owns.
 *
 * Floor 3: calls log.c and stats.c only. The pool (pool.c) and WebSockets
 * (ws.c) stand above it; the pool knows connections by id only, so it never
 * calls ws.c, and neither calls the other for the lock.
 *
 * Threads and the lock:
 *   mg_outbox_lock() is the one lock shared by the pool's tables and every
 *   outbox; the pool takes it too, so "pick a worker and queue to it" is
 *   atomic. Every field marked "lock" is read and written with it held.
 *   A thread (mg_outbox_thread) is owned by its worker thread; others only
 *   append to its inbox or wake list, with the lock held, then signal
 *   `wake` (only while wake_open, which its owner clears before closing it).
 *   A connection (mg_outbox_conn) is owned by its thread; others find it by
 *   id in this file's table (lock), queue to it, and wake its owner. The
 *   owner takes it out of the table (mg_outbox_conn_close) before freeing
 *   it, so a stale id just misses.
 *   Nothing here calls Lua, and nothing is called with the lock held except
 *   the *_locked functions. */
#ifndef MG_OUTBOX_H
#define MG_OUTBOX_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "queue.h"

/* The metatable of WebSocket handles (ws.c makes them): a userdata slot
 * pointing at an object whose first member is its mg_outbox_conn, or NULL
 * once the connection is gone. */
#define MG_WS_HANDLE_MT "moongate.ws"

/* One message for a thread's Lua, in its inbox. Owned by the inbox, then
 * by the thread that takes it; freed with free(). */
typedef struct mg_outbox_event {
	struct mg_outbox_event *next;
	int kind;        /* the poster's (pool.h: MG_POOL_*) */
	int status;
	char *id;        /* the request id, NUL-terminated, inside this block */
	size_t len;
	char data[];     /* the message text, NUL-terminated */
} mg_outbox_event;

typedef struct mg_outbox_thread {
	int index;               /* the worker thread's, 1-based */
	uv_async_t wake;         /* other threads: "look at your inbox / wake list" */
	int wake_open;           /* lock: wake may be signalled */
	mg_outbox_event *inbox_head, *inbox_tail; /* lock */
	mg_queue wake_list;      /* lock: connections with queued output or a
				  * changed rx_hold */
	void (*on_wake)(struct mg_outbox_thread *t);
	void *data;              /* the owner's */
} mg_outbox_thread;

typedef struct mg_outbox_msg {
	struct mg_outbox_msg *next;
	size_t len;
	unsigned char data[];    /* MG_OUTBOX_HEADROOM bytes, then len bytes */
} mg_outbox_msg;
/* Room before each message for a transport's frame header (lws's LWS_PRE
 * is 16 on 64-bit builds; ws.c checks). */
#define MG_OUTBOX_HEADROOM 16

typedef struct mg_outbox_conn {
	uint64_t id;              /* set by mg_outbox_conn_open; never reused */
	mg_outbox_thread *owner;
	uint64_t last_seen_ms;    /* atomic: written by the owner, read by all */
	/* lock */
	mg_outbox_msg *out_head, *out_tail;
	size_t out_bytes;
	int close_code;           /* close once the outbox is empty */
	int rx_hold;              /* the pool asks the owner not to read the
				   * socket (flow control, pool.h); the owner
				   * applies it when woken */
	mg_queue wake_node;       /* on owner->wake_list while it wants a write
				   * (or to apply rx_hold) */
	struct mg_outbox_conn *hnext; /* the id table's bucket chain */
} mg_outbox_conn;

void mg_outbox_lock(void);
void mg_outbox_unlock(void);

/* Owner thread, at start: sets up t and its wake handle on loop; on_wake
 * runs on the owner's loop when another thread queued something. Events
 * may be posted once mg_outbox_thread_open() ran. */
int mg_outbox_thread_init(mg_outbox_thread *t, uv_loop_t *loop, int index,
			  void (*on_wake)(mg_outbox_thread *t), void *data);
void mg_outbox_thread_open(mg_outbox_thread *t);
/* Owner thread, at stop: no more wakes; the inbox is dropped, and the wake
 * handle closed (in that order: a closed handle is never signalled). */
void mg_outbox_thread_stop(mg_outbox_thread *t);

/* Lock held: appends an event for t's Lua and wakes t (nothing when t is
 * stopping). 0, or -1 when nothing was posted (stopping, out of memory). */
int mg_outbox_post_locked(mg_outbox_thread *t, int kind, int status, const char *id,
			   const char *data, size_t len);
/* Owner thread: takes the inbox (a list in arrival order; caller frees). */
mg_outbox_event *mg_outbox_take_events(mg_outbox_thread *t);
/* Owner thread: takes the connections that want a write, calling fn on each
 * without the lock held (they stay valid: only the owner frees them). */
void mg_outbox_take_wakes(mg_outbox_thread *t, void (*fn)(mg_outbox_conn *c));

/* Owner thread: gives c an id and makes it reachable from other threads. */
void mg_outbox_conn_open(mg_outbox_conn *c, mg_outbox_thread *owner);
/* Owner thread: unreachable from now on; its queued messages are freed. */
void mg_outbox_conn_close(mg_outbox_conn *c);
/* Lock held, any thread: queues text for connection id and wakes its
 * owner. 0, or -1 when it is gone or closing, or memory ran out. */
int mg_outbox_send_locked(uint64_t id, const char *text, size_t len);
/* Lock held, any thread: sets connection id's rx_hold and, when it changed,
 * wakes its owner (through the wake list, as for a message). */
void mg_outbox_hold_locked(uint64_t id, int hold);
/* Owner thread: the connection's rx_hold. */
int mg_outbox_held(mg_outbox_conn *c);
/* Owner thread: queues text (the caller asks for a write). Returns the
 * bytes now queued, or -1 (closing, or out of memory). */
long mg_outbox_queue(mg_outbox_conn *c, const char *text, size_t len);
/* Owner thread: takes the oldest message (NULL: none; caller frees it and
 * counts it written with mg_stats_buffered(-len)); *more: others wait;
 * *queued: bytes still queued; *close_code: the close asked for. */
mg_outbox_msg *mg_outbox_pop(mg_outbox_conn *c, int *more, size_t *queued, int *close_code);
/* Owner thread: asks for a close once the outbox is empty (first code
 * wins), or with drop, at once: queued messages are dropped and code set. */
void mg_outbox_set_close(mg_outbox_conn *c, int code, int drop);
/* Lock held: when connection id was last heard from (ms), 0 if unknown. */
uint64_t mg_outbox_last_seen_locked(uint64_t id);

/* The connection of the WebSocket handle at idx (NULL once it is gone);
 * raises on a value that is not one. Owner thread (the state's). */
mg_outbox_conn *mg_outbox_check(lua_State *L, int idx);

#endif
