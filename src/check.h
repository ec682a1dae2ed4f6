/* The trial load before a hot reload: on a thread of its own, with its own
 * loop, a throwaway Lua state loads the config and the scripts as they are
 * now and checks them (moongate.worker.init in "check" mode: nothing
 * process-wide changes, nothing is kept). Only if that passes do the worker
 * threads load them, so a script that loops or hangs at load costs the
 * workers nothing: the watchdog stops a loop on the check's thread, and a
 * check that never ends (a hang the watchdog cannot stop) is given up after
 * a timeout, its thread left behind.
 *
 * Ownership: the main thread starts checks and hears of their end on its
 * loop; a check's memory is freed by whichever of the two lets go last
 * (the main thread when it hears, the check's thread when it was given up).
 *
 * Floor: calls lstate.c, lua_host.c, watchdog.c, log.c. */
#ifndef MG_CHECK_H
#define MG_CHECK_H

#include <uv.h>
#include "ctx.h"

typedef struct mg_check mg_check;

/* Starts a check of cfg's scripts (cfg->init_json, cfg->preload; cfg
 * outlives the check). done(arg, ok, why) runs on loop once it ended, or
 * after timeout_ms with ok 0; why is NULL when ok, and valid during the
 * call only. NULL when no thread could be started (done is not called). */
mg_check *mg_check_start(uv_loop_t *loop, const mg_server_config *cfg, unsigned timeout_ms,
			 void (*done)(void *arg, int ok, const char *why), void *arg);

/* The daemon stops: the check's handles close (run the loop after); done is
 * not called; a thread still loading is left behind. NULL is fine. */
void mg_check_cancel(mg_check *c);

#endif
