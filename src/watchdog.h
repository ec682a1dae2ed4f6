/* The watchdog: stops an operator's script that runs too long (an endless
 * loop in a provider script or a config hook), so that only the call that
 * ran it fails and its worker thread goes on serving.
 *
 * How: worker threads register (mg_watchdog_enter_thread). mg_pcall
 * (lua_host.c) marks each C->Lua call on a registered thread
 * (mg_watchdog_call_begin / _end): the outermost call's start time and a
 * sequence number. One watchdog thread wakes every budget/4; for a thread
 * whose outermost call has run longer than the budget it sends a signal
 * (pthread_kill). The handler, on that thread, still in that same call,
 * sets a count hook on the running Lua state (lua_sethook, as luajit.c does
 * on SIGINT); the hook raises the Lua error "script ran longer than
 * script_timeout_ms (N ms)", which fails the call like any other Lua error.
 * The hook only runs in interpreted code, which is why operator code runs
 * without the JIT (lua/moongate/operator.lua). A call stopped once that
 * catches the error and runs another whole budget is stopped for good: every
 * Lua instruction it still runs raises, until it is back in C.
 *
 * The main thread never registers (it sits in one Lua call for the daemon's
 * whole life); nor do threads of busted specs: for them these calls cost a
 * thread-local read and do nothing.
 *
 * Threads: the table of registered threads is behind one mutex, which the
 * watchdog thread holds while it signals (a thread leaves under it, so it
 * is never signalled once gone). A thread's own slot is touched by that
 * thread and read (atomically) by the watchdog. The watchdog thread starts
 * when a thread registers with a budget set (or a budget is set with a
 * thread registered), and is stopped and joined when the last thread leaves.
 *
 * Floor: calls log.c only. */
#ifndef MG_WATCHDOG_H
#define MG_WATCHDOG_H

#include <lua.h>

/* The budget: a Lua call on a registered thread that runs longer than ms
 * milliseconds is stopped; 0 turns the watchdog off. Process-wide, any
 * thread; the default is 0 until the config sets it (script_timeout_ms).
 * A call is timed by the budget in force when it began. The calling
 * thread's current call (the worker's init, which sets it and then builds
 * the providers) is timed from now on, with at least 10 s: a slow start is
 * no runaway, an endless one is still stopped. */
void mg_watchdog_set_budget(unsigned ms);
unsigned mg_watchdog_budget(void);

/* Registers the calling thread: from now on its calls into Lua are timed.
 * `name` (copied; may be NULL) names it in the log ("w1"). Calling it twice
 * is harmless. The thread leaves by itself when it exits (a pthread key
 * destructor), or earlier by mg_watchdog_leave_thread. 0, or -1 when the
 * thread could not be registered (it then runs untimed). */
int mg_watchdog_enter_thread(const char *name);
void mg_watchdog_leave_thread(void);

/* For the calling (registered) thread: fn(arg) runs, on the watchdog's
 * thread, once per call that has run 5 budgets (at least 10 s) past its
 * deadline without being stopped: a hang no hook reaches (an xpcall message
 * handler or a __gc finalizer that loops, a C function that never returns).
 * fn must be safe from another thread; it may log. */
void mg_watchdog_on_stuck(void (*fn)(void *arg), void *arg);

/* Around every C->Lua call (mg_pcall): begin returns what end needs (the
 * state of the call it nests in, or NULL); only the outermost call of a
 * registered thread starts the clock, nested ones do not restart it. The
 * end of the outermost call takes off a stop hook still set. */
lua_State *mg_watchdog_call_begin(lua_State *L);
void mg_watchdog_call_end(lua_State *L, lua_State *outer);

#endif
