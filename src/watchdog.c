/* The watchdog: a thread that stops Lua calls running past the budget
 * (script_timeout_ms). See watchdog.h for the design.
 *
 * Ownership: each registered thread owns its slot (calloc'd at
 * registration, freed when it leaves); the slot is on the table `threads`
 * from registration to leaving, under `mu`. The watchdog thread reads a
 * slot only under `mu` and only through atomics (seq, start, deadline,
 * target), plus
 * the fields set before the slot went on the table (thread, name). The
 * signal handler and the stop hook run on the slot's own thread.
 *
 * Floor: calls log.c only. */
#include "watchdog.h"
#include "log.h"
#include "queue.h"

#include <errno.h>
#include <lauxlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

/* Under ThreadSanitizer an asynchronous signal waits until its thread calls
 * into libc, which a script spinning in the interpreter never does: there
 * the signal is SIGSYS, which TSan delivers at once (as it does faults).
 * Elsewhere a real-time signal nothing else in the process uses. */
#if defined(__SANITIZE_THREAD__)
#define WD_SIGNAL SIGSYS
#else
#define WD_SIGNAL (SIGRTMIN + 4)
#endif

/* How many different states one outermost call may have hooked (a call
 * nested in another state: a reload's new state, say). */
#define WD_HOOKED 4

typedef struct wd_slot {
	mg_queue node;          /* on `threads`, under mu */
	pthread_t thread;
	char name[16];
	/* the thread's own; its signal handler reads them too (relaxed atomics
	 * and signal fences: the same thread, so order is all that counts) */
	int depth;              /* C->Lua calls under way on this thread */
	lua_State *L;           /* the state of the innermost call, or NULL */
	int stops;              /* stop errors raised in this outermost call */
	lua_State *hooked[WD_HOOKED]; /* states the handler set the hook on */
	/* written by the thread, read by the watchdog thread */
	uint64_t seq;           /* outermost calls begun */
	uint64_t start;         /* ns the current outermost call began; 0: none */
	uint64_t deadline;      /* ns it is stopped at; 0: none (no call, or
				 * no budget when it began) */
	/* written by the watchdog thread (before it signals), read by the handler */
	uint64_t target;        /* the call (seq) it wants stopped */
	/* the watchdog thread's own */
	uint64_t stuck_logged;  /* the seq it said cannot be stopped */
	uint64_t stuck_fired;   /* the seq on_stuck ran for */
	void (*on_stuck)(void *arg); /* under mu */
	void *stuck_arg;
} wd_slot;

static _Thread_local wd_slot *me; /* NULL: this thread is not registered */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static uv_mutex_t mu;
static uv_cond_t cond;
static mg_queue threads;        /* wd_slot.node; under mu */
static int nthreads;            /* under mu */
static int have_thread;         /* a watchdog thread runs; under mu */
static unsigned gen;            /* a watchdog thread runs while gen is its own; under mu */
static uv_thread_t wd_thread;   /* under mu */
static unsigned budget_ms;      /* atomic */

/* The call that sets the budget (a worker's init, which goes on to build
 * the providers) gets at least this long from then on: a slow start (a
 * sanitizer build, valgrind) is no runaway. */
#define WD_SETTER_MS 10000u

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts); /* async-signal-safe */
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define FENCE() __atomic_signal_fence(__ATOMIC_SEQ_CST)

static uint64_t deadline_after(uint64_t now, uint64_t ms)
{
	return ms ? now + ms * 1000000u : 0;
}

/* ---- on the worker thread ----------------------------------------------- */

/* The count hook the handler sets: raises the stop error at the next Lua
 * instruction the call runs. The first stop of a call takes the hook off
 * and moves the call's deadline a budget on, so that the code that catches
 * the error (the exchange answering the 500) gets a whole budget. A call that caught
 * it and ran another budget is stopped for good: the hook stays, raising at
 * every instruction until the call is back in C (mg_pcall takes it off). */
static void stop_hook(lua_State *L, lua_Debug *ar)
{
	wd_slot *s = me;
	unsigned ms = __atomic_load_n(&budget_ms, __ATOMIC_RELAXED);
	int stops = 1;

	(void)ar;
	if (s) {
		__atomic_store_n(&s->deadline, deadline_after(now_ns(), ms), __ATOMIC_RELEASE);
		stops = LOAD(&s->stops) + 1;
		STORE(&s->stops, stops);
	}
	if (stops < 2)
		lua_sethook(L, NULL, 0, 0);
	else
		lua_sethook(L, stop_hook, LUA_MASKCOUNT, 1);
	/* as luajit.c's lstop: a C hook adds no frame, so level 0 is the
	 * function that was running */
	luaL_where(L, 0);
	if (stops <= 2)
		mg_log(MG_LOG_WARN, "%sa Lua call ran longer than script_timeout_ms (%u ms): stopping it%s",
		       lua_tostring(L, -1), ms,
		       stops == 2 ? " again (it caught the first stop): from now on every Lua instruction it runs fails" : "");
	lua_pushfstring(L, "%sscript ran longer than script_timeout_ms (%d ms)", lua_tostring(L, -1), (int)ms);
	lua_error(L);
}

/* The watchdog's signal. Still in the call it was sent for (and that call
 * still past its deadline: a stop moves it), set the stop hook on
 * the state running, and note it so the end of the call takes it off. */
#if defined(__SANITIZE_THREAD__)
__attribute__((no_sanitize_thread))
#endif
static void on_signal(int sig, siginfo_t *si, void *uc)
{
	wd_slot *s = me;
	int saved = errno, free_at = -1;
	lua_State *L;
	uint64_t dl;

	(void)sig, (void)si, (void)uc;
	if (!s || LOAD(&s->depth) <= 0 || !(L = LOAD(&s->L)))
		goto out;
	if (__atomic_load_n(&s->target, __ATOMIC_ACQUIRE) != LOAD(&s->seq))
		goto out;
	dl = LOAD(&s->deadline);
	if (!dl || now_ns() <= dl)
		goto out;
	for (int i = 0; i < WD_HOOKED; i++) {
		lua_State *h = LOAD(&s->hooked[i]);
		if (h == L) {
			free_at = -2;
			break;
		}
		if (!h && free_at == -1)
			free_at = i;
	}
	if (free_at == -1) /* no room to note it: it could not be taken off */
		goto out;
	if (free_at >= 0)
		STORE(&s->hooked[free_at], L);
	FENCE();
	lua_sethook(L, stop_hook, LUA_MASKCOUNT, LOAD(&s->stops) ? 1 : 1000);
out:
	errno = saved;
}

lua_State *mg_watchdog_call_begin(lua_State *L)
{
	wd_slot *s = me;
	lua_State *outer;
	int d;

	if (!s)
		return NULL;
	outer = s->L;
	d = s->depth;
	STORE(&s->L, L);
	FENCE();
	STORE(&s->depth, d + 1);
	if (d == 0) {
		uint64_t now = now_ns();
		STORE(&s->stops, 0);
		__atomic_store_n(&s->seq, s->seq + 1, __ATOMIC_RELEASE);
		__atomic_store_n(&s->start, now, __ATOMIC_RELEASE);
		__atomic_store_n(&s->deadline, deadline_after(now, __atomic_load_n(&budget_ms, __ATOMIC_RELAXED)),
				 __ATOMIC_RELEASE);
	}
	return outer;
}

void mg_watchdog_call_end(lua_State *L, lua_State *outer)
{
	wd_slot *s = me;
	int d;

	if (!s)
		return;
	d = s->depth - 1;
	STORE(&s->L, outer);
	STORE(&s->depth, d);
	if (d == 0) {
		__atomic_store_n(&s->deadline, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&s->start, 0, __ATOMIC_RELEASE);
	}
	FENCE();
	/* from here on the handler does nothing for this call (depth 0), or
	 * hooks `outer`, not L. Take off a hook on L when no call on L is left
	 * around this one; the outermost call's end takes off every one. */
	for (int i = 0; i < WD_HOOKED; i++) {
		lua_State *h = LOAD(&s->hooked[i]);
		if (h && (d == 0 || (h == L && outer != L))) {
			STORE(&s->hooked[i], NULL);
			FENCE();
			lua_sethook(h, NULL, 0, 0);
		}
	}
}

/* ---- the watchdog thread ---------------------------------------------- */

/* Under mu. Signals each thread whose outermost call is past its deadline
 * (again every period while it is: the hook may have been taken off by a
 * nested call's end, or not be reached yet). */
static void scan(uint64_t ms, uint64_t now)
{
	mg_queue *q;

	mg_queue_foreach(q, &threads) {
		wd_slot *s = mg_queue_data(q, wd_slot, node);
		uint64_t seq = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
		uint64_t dl = __atomic_load_n(&s->deadline, __ATOMIC_ACQUIRE);
		uint64_t st = __atomic_load_n(&s->start, __ATOMIC_ACQUIRE);
		uint64_t ran = st && now > st ? now - st : 0;

		if (!dl || __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) != seq || now <= dl)
			continue;
		__atomic_store_n(&s->target, seq, __ATOMIC_RELEASE);
		pthread_kill(s->thread, WD_SIGNAL);
		/* the hook moves the deadline when it fires: still past it a
		 * budget later, the call is where no hook runs */
		if (now - dl > ms * 1000000u && s->stuck_logged != seq) {
			s->stuck_logged = seq;
			mg_log(MG_LOG_ERROR, "%s: a Lua call has run %llu ms, past script_timeout_ms (%u ms), and cannot be stopped "
			       "yet: no hook runs where it is (a long C function, a loop the JIT compiled, an xpcall "
			       "message handler or a __gc finalizer)",
			       s->name, (unsigned long long)(ran / 1000000u), (unsigned)ms);
		}
		if (s->on_stuck && s->stuck_fired != seq &&
		    now - dl > (ms * 5 > 10000 ? ms * 5 : 10000) * (uint64_t)1000000u) {
			s->stuck_fired = seq;
			s->on_stuck(s->stuck_arg);
		}
	}
}

static void watchdog_main(void *arg)
{
	unsigned mine = (unsigned)(uintptr_t)arg;
	sigset_t all;

	sigfillset(&all); /* the process's signals go to the other threads */
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	mg_log_set_thread_tag("watchdog");
	uv_mutex_lock(&mu);
	while (gen == mine) {
		uint64_t ms = __atomic_load_n(&budget_ms, __ATOMIC_RELAXED), period;

		if (!ms) {
			uv_cond_wait(&cond, &mu);
			continue;
		}
		period = ms * 1000000u / 4;
		if (period < 1000000u)
			period = 1000000u;
		uv_cond_timedwait(&cond, &mu, period);
		if (gen != mine)
			break;
		ms = __atomic_load_n(&budget_ms, __ATOMIC_RELAXED);
		if (ms)
			scan(ms, now_ns());
	}
	uv_mutex_unlock(&mu);
}

/* Under mu: a watchdog thread, if there is a thread to watch and a budget. */
static void start_locked(void)
{
	if (have_thread || !nthreads || !__atomic_load_n(&budget_ms, __ATOMIC_RELAXED))
		return;
	if (uv_thread_create(&wd_thread, watchdog_main, (void *)(uintptr_t)gen)) {
		mg_log(MG_LOG_ERROR, "could not start the watchdog thread: runaway scripts will not be stopped");
		return;
	}
	have_thread = 1;
}

/* ---- registration ------------------------------------------------------ */

static void leave(wd_slot *s)
{
	uv_thread_t t;
	int join = 0;

	me = NULL;
	FENCE();
	uv_mutex_lock(&mu);
	mg_queue_remove(&s->node);
	if (--nthreads == 0 && have_thread) {
		gen++;
		have_thread = 0;
		t = wd_thread;
		join = 1;
		uv_cond_broadcast(&cond);
	}
	uv_mutex_unlock(&mu);
	if (join)
		uv_thread_join(&t);
	free(s);
}

static void on_thread_exit(void *slot)
{
	leave(slot);
}

static void init_once(void)
{
	struct sigaction sa;

	uv_mutex_init(&mu);
	uv_cond_init(&cond);
	mg_queue_init(&threads);
	if (pthread_key_create(&key, on_thread_exit))
		abort();
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(WD_SIGNAL, &sa, NULL);
}

int mg_watchdog_enter_thread(const char *name)
{
	wd_slot *s;

	pthread_once(&once, init_once);
	if (me)
		return 0;
	s = calloc(1, sizeof *s);
	if (!s)
		return -1;
	s->thread = pthread_self();
	snprintf(s->name, sizeof s->name, "%s", name ? name : "thread");
	if (pthread_setspecific(key, s)) {
		free(s);
		return -1;
	}
	me = s;
	uv_mutex_lock(&mu);
	mg_queue_insert_tail(&threads, &s->node);
	nthreads++;
	start_locked();
	uv_mutex_unlock(&mu);
	return 0;
}

void mg_watchdog_on_stuck(void (*fn)(void *arg), void *arg)
{
	if (!me)
		return;
	uv_mutex_lock(&mu);
	me->on_stuck = fn;
	me->stuck_arg = arg;
	uv_mutex_unlock(&mu);
}

void mg_watchdog_leave_thread(void)
{
	wd_slot *s = me;

	if (!s)
		return;
	pthread_setspecific(key, NULL);
	leave(s);
}

void mg_watchdog_set_budget(unsigned ms)
{
	pthread_once(&once, init_once);
	__atomic_store_n(&budget_ms, ms, __ATOMIC_RELAXED);
	if (me && me->depth > 0) /* the call setting it: timed from now, and given time */
		__atomic_store_n(&me->deadline, deadline_after(now_ns(), ms && ms < WD_SETTER_MS ? WD_SETTER_MS : ms),
				 __ATOMIC_RELEASE);
	uv_mutex_lock(&mu);
	start_locked();
	uv_cond_broadcast(&cond); /* a new period */
	uv_mutex_unlock(&mu);
}

unsigned mg_watchdog_budget(void)
{
	return __atomic_load_n(&budget_ms, __ATOMIC_RELAXED);
}
