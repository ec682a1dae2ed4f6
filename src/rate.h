/* Per-key rate limits that every worker thread shares: requests per minute
 * and tokens per minute (token buckets that refill continuously), and token
 * budgets per UTC day and per UTC month. Which key has which limits is the
 * config's (lua/moongate/gate.lua reads it; a reload may change them); the
 * counts live here, so a reload keeps them.
 *
 * A request is let in when the key's request bucket has a whole request and
 * its token bucket and budgets are not spent; its tokens (from the upstream's
 * usage) are taken when it ends, and may take the token bucket below zero:
 * the next request then waits until it refills.
 *
 * Threads: a table behind its own mutex (counters, not the cross-thread
 * message path). Nothing here calls Lua with the mutex held.
 *
 * Floor: no calls (libuv's mutex only). */
#ifndef MG_RATE_H
#define MG_RATE_H

#include <lua.h>
#include <time.h>

typedef struct mg_rate_limits {
	double rpm, tpm;          /* 0: none */
	double per_day, per_month; /* tokens; 0: none */
} mg_rate_limits;

enum { MG_RATE_OK = 0, MG_RATE_RPM, MG_RATE_TPM, MG_RATE_DAY, MG_RATE_MONTH };

/* Lets a request of key in (takes one request from its bucket): MG_RATE_OK,
 * or which limit refused it, with *retry_s until it would pass. now: seconds
 * (monotonic) for the buckets; wall: the UTC time for the budgets' periods. */
int mg_rate_take(const char *key, const mg_rate_limits *lim, double now, time_t wall, double *retry_s);

/* A request of key ended having used tokens (input + output). */
void mg_rate_spend(const char *key, const mg_rate_limits *lim, double tokens, double now, time_t wall);

/* Every key, at exit. */
void mg_rate_clear(void);

/* Registers _rate_take, _rate_spend and _rate_state on the table at -1. */
int mg_rate_open(lua_State *L);

#endif
