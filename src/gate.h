/* The gate: concurrency permits that every worker thread shares, handed out
 * fairly between inbound key names, with a queue timeout, and a cooldown a
 * provider's 429 sets. Which gates a request passes and their limits are
 * Lua's (lua/moongate/gate.lua: the policy, reloadable); the counts and
 * queues are here, so they outlive a reload.
 *
 * A gate is a name ("global", "provider:NAME", "model:NAME") with a limit
 * (0: none) and the permits in use. A request that finds its gate full
 * waits in the gate's queue: one FIFO per key name, and the names served in
 * turn (round robin), so one busy key cannot starve the others. A permit
 * that frees goes to the next waiter at once; its thread hears of it through
 * its outbox inbox (event MG_GATE_GRANTED with the request id), as a queue
 * timeout is heard of (MG_GATE_TIMEOUT, found by that thread's tick).
 *
 * Threads and the lock: every table here is guarded by the outbox lock
 * (outbox.h: a permit granted and its event queued are one step). The
 * functions take the lock themselves. Waiters are owned by the gate, and
 * freed when granted, timed out, cancelled or their thread stops.
 *
 * Floor: calls outbox.c and log.c. */
#ifndef MG_GATE_H
#define MG_GATE_H

#include <lua.h>
#include "outbox.h"

/* outbox event kinds (the pool's are 1..3) */
enum { MG_GATE_GRANTED = 16, MG_GATE_TIMEOUT = 17 };

enum { MG_GATE_OK = 0, MG_GATE_QUEUED, MG_GATE_FULL, MG_GATE_COOLING };

/* Takes a permit of gate `name` (limit: its limit from now on, 0 for none)
 * for request id of key `key`, or queues it (timeout_ms, at most max_queue
 * of that key waiting) to be granted on thread t. MG_GATE_COOLING: the gate
 * cools down, and the request may not wait it out (longer than timeout_ms,
 * no room in the key's queue, or `no_wait`: it has somewhere else to go);
 * *retry_ms says how long. */
int mg_gate_acquire(const char *name, int limit, const char *key, const char *id, mg_outbox_thread *t,
		    double now_ms, double timeout_ms, int max_queue, int no_wait, double *retry_ms);

/* A permit of gate name is given back: the next waiter gets it. */
void mg_gate_release(const char *name, double now_ms);

/* Request id stops waiting: 1 if it was waiting; 0 if it was not (granted
 * already: its permit is the caller's to give back). */
int mg_gate_cancel(const char *name, const char *id);

/* Gate name cools down until until_ms (a provider's 429): no permit is given
 * until then; a later until_ms extends it. */
void mg_gate_cool(const char *name, double until_ms);

/* Thread t's tick: its waiters past their time get MG_GATE_TIMEOUT, and
 * gates whose cooldown ended let waiters in. */
void mg_gate_tick(mg_outbox_thread *t, double now_ms);

/* Thread t stops: its waiters go (their permits were never given). */
void mg_gate_thread_gone(mg_outbox_thread *t);

/* Every gate and its permits, at exit (no thread uses them any more). */
void mg_gate_clear(void);

/* Registers _gate_acquire, _gate_release, _gate_cancel, _gate_cool and
 * _gate_state on the table at -1. */
int mg_gate_open(lua_State *L);

#endif
