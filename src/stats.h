/* Process-wide counters (requests, streams, buffered bytes, Lua errors),
 * updated atomically from every worker thread, the process's start time,
 * and the _stats() / _uptime() primitives that read them.
 *
 * Floor 2: calls only log.c (the count of dropped log lines). Anyone above
 * may count here; nothing here calls up. */
#ifndef MG_STATS_H
#define MG_STATS_H

#include <lua.h>

typedef struct mg_stats {
	long long requests;
	long long open_requests;
	long long open_ws_answers; /* chat-socket answers under way (sockets.lua) */
	long long open_streams;
	long long buffered_bytes;
	long long buffered_peak;
	long long client_disconnects;
	long long lua_errors;
	long long piped_frames;     /* passthrough frames the host queued itself */
	long long templated_frames; /* translated deltas the host wrote itself (tmpl.h) */
} mg_stats;
extern mg_stats mg_global_stats;

/* Adds delta to one field of mg_global_stats (relaxed atomic). */
void mg_stats_add(long long *field, long long delta);
/* Adjusts the count of response bytes held in memory (and its peak). */
void mg_stats_buffered(long long delta);
/* The worker count _stats() reports (set by server.c once serving). */
void mg_stats_set_workers(int n);
/* Seconds since the process started (the first mg_stats_open). */
double mg_uptime(void);

/* Registers _stats(), _uptime() and _ws_answers(delta) on the table at -1. */
int mg_stats_open(lua_State *L);

#endif
