/* The Lua states of one worker thread: one per load of the Lua layer. Hot
 * reload makes a new one; the old one serves what it had started and is
 * closed when that is over.
 *
 * Ownership: the worker thread owns its states (mg_lstate_new). Each object
 * that calls into a state and may outlive a reload (a request, a WebSocket)
 * holds it (mg_lstate_hold) from its creation and lets go
 * (mg_lstate_release) when freed. Fetches need no hold: the upstream engine
 * belongs to its state, and closing the state cancels them without a call
 * into Lua. The thread's current state takes new work; a reload makes a
 * newer one current and retires the old one. A retired state is closed once
 * nothing holds it: first its Lua handles (luv's) are closed, from the
 * loop's check phase; one loop turn later, when their close callbacks have
 * run, lua_close; then the struct is freed in the close callbacks of its own
 * two handles.
 *
 * Floor: calls lua_host.c and log.c only. Not thread-safe: a state belongs to
 * one thread. */
#ifndef MG_LSTATE_H
#define MG_LSTATE_H

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>
#include "queue.h"

typedef struct mg_lstate {
	lua_State *L;          /* owned; NULL once closed */
	int handler_ref;       /* registry ref: the table moongate.worker.init
				* returned; LUA_NOREF until set */
	unsigned id;           /* 1 for a thread's first state, then one more per load */
	unsigned users;        /* holders (requests, WebSockets) */
	int retired;           /* no new work: closed once users is 0 */
	int closing;           /* 1: its close is under way */
	uv_loop_t *loop;
	uv_check_t check;      /* closes Lua's handles, out of every Lua call */
	uv_timer_t timer;      /* lua_close, one loop turn later */
	int open_handles;      /* of check and timer: the struct goes with the last */
	mg_queue node;         /* on the thread's list of live states */
	void *fast;            /* fast.c's routes (a userdata of this state's,
				* freed with it; fast.c sets and clears this) */
} mg_lstate;

/* A new state on `loop` (mg_lua_new with lua_dir and preloads), put on the
 * list `live`, with a pointer to it in its registry (mg_lstate_of).
 * NULL when the VM cannot be made. The caller owns it: retire it. */
mg_lstate *mg_lstate_new(uv_loop_t *loop, mg_queue *live, const char *lua_dir, const luaL_Reg *preloads,
			 unsigned id);

/* The error message at the top of L's stack, without the traceback
 * mg_pcall added (a message of several lines keeps them), into err. */
void mg_lstate_error(lua_State *L, char *err, size_t cap);

/* The state whose registry points at it (from any coroutine of it), or NULL
 * for a state no mg_lstate made. */
mg_lstate *mg_lstate_of(lua_State *L);

/* Pushes function `name` of the state's handler table: 1, or 0 with nothing
 * pushed (no table yet, no such function, or closed). */
int mg_lstate_push_fn(mg_lstate *s, const char *name);

/* A holder keeps the struct alive, not the VM: at the worker's end the VM
 * may close while held (mg_lstate_end), and s->L is NULL from then on, so a
 * holder checks s->L before it touches Lua. */
void mg_lstate_hold(mg_lstate *s);
/* The last holder of a retired state lets go: its close is scheduled (or,
 * closed already, the struct is freed). */
void mg_lstate_release(mg_lstate *s);

/* No new work goes to s; it closes once nothing holds it. */
void mg_lstate_retire(mg_lstate *s);

/* The worker stops: s closes as a retired one does, whoever holds it (the
 * holders are ended or detached by then). */
void mg_lstate_end(mg_lstate *s);

/* At the worker's end, when its loop stopped before a scheduled close ran:
 * closes s now (running the loop once, for the close callbacks of Lua's
 * handles) and leaves the loop to free it. */
void mg_lstate_close_now(mg_lstate *s);

#endif
