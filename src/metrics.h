/* Prometheus metrics (GET /metrics): process-wide counters and histograms
 * with label sets, recorded by every worker thread, and their exposition in
 * the Prometheus text format (version 0.0.4). docs/METRICS.md lists them.
 *
 * Floor 2: calls only log.c (dropped log lines) and stats.c (the open
 * requests, streams and buffered bytes, the start time). Anyone above
 * records here; nothing here calls up, and nothing here calls Lua while
 * holding its lock.
 *
 * Threads: the series live in one table for the whole process, behind one
 * mutex of this file's own (not the outbox lock: no message crosses threads
 * here); the reload and Lua-state counts are atomics.
 *
 * Bounded labels: each metric keeps at most MG_METRICS_MAX_SERIES label
 * sets. Past that, a new set's model reads "other" (the one label a client
 * chooses among many: the door, the provider, the key name and the status
 * are bounded by the config and the code); as many series again are kept
 * for those, and past them every label reads "other". A label value is cut to MG_METRICS_VALUE_MAX bytes, and
 * bytes that are not UTF-8 (or are control characters) become '?'. The
 * values are what the gateway decided (a model a route matched, a
 * configured key's name), never raw client input: a model that no route
 * matched reads "unknown". */
#ifndef MG_METRICS_H
#define MG_METRICS_H

#include <lua.h>
#include <stddef.h>

struct mg_buf;

#define MG_METRICS_MAX_SERIES 200
#define MG_METRICS_VALUE_MAX 96

/* One request's end, as http.c knows it (mg_req_free). Borrowed: nothing
 * is kept past the call. */
typedef struct mg_metrics_req {
	const char *path;         /* may be NULL (the request line never came whole) */
	size_t path_len;
	const char *model;        /* as Lua noted it (_req_note), or NULL */
	size_t model_len;
	const char *provider;     /* as Lua noted it: set once a route matched */
	size_t provider_len;
	int status;               /* the response's (499: the client left first) */
	double seconds;           /* from the request line to the end */
	double first_byte;        /* seconds to the status line; < 0: none was sent */
} mg_metrics_req;

/* Counts a request that ended: moongate_requests_total and the duration and
 * time-to-first-byte histograms. The front door is the path's family
 * (mg_metrics_door); the model counts only when a provider was noted (a
 * route matched it), else it reads "unknown" (or "none" when none was
 * named). Any thread. */
void mg_metrics_request(const mg_metrics_req *q);
/* Tokens an upstream reported (_metrics_tokens' figures): key, the inbound
 * key's name (NULL without keys); model, the name a route matched. */
void mg_metrics_tokens(const char *key, size_t klen, const char *model, size_t mlen, double in, double out);

/* The front door a path belongs to ("openai_chat", "anthropic_messages",
 * ..., "health", "other"): a static string. path may be NULL. */
const char *mg_metrics_door(const char *path, size_t len);

/* A worker's reload ended: ok (1) or failed (0). Any thread. */
void mg_metrics_reload(int ok);

/* A Lua state was made (+1) or closed (-1) (lstate.c). Any thread. */
void mg_metrics_lua_states(int delta);

/* The exposition of everything held here, plus the process's numbers
 * (uptime, open fds, resident memory, Lua states) and stats.c's gauges,
 * appended to *out (the caller's; freed by the caller). 0, or -1 out of
 * memory (*out may hold part of it). Takes and drops the lock; no Lua. */
int mg_metrics_render(struct mg_buf *out);

/* Registers on the table at -1:
 *   _metrics_tokens(key, model, input, output)  tokens an upstream reported
 *   _metrics_retry(provider)                    a retry of that provider
 *   _metrics_fallback(provider)                 a fallback away from it
 *   _metrics_text() -> the exposition (mg_metrics_render) */
int mg_metrics_open(lua_State *L);

#endif
