/* Upstream HTTP through libcurl multi on the Lua state's libuv loop
 * (see upstream.c for ownership). */
#ifndef MG_UPSTREAM_H
#define MG_UPSTREAM_H

#include <lua.h>
#include <stddef.h>

enum { MODE_BODY, MODE_SSE, MODE_NDJSON };

typedef struct mg_fetch mg_fetch;

/* One upstream request, as _fetch's options say it (read during the call
 * only, but for body: see mg_fetch_start). */
typedef struct mg_fetch_req {
	const char *url, *method;
	const char *const *headers; /* name, value, name, value, ..., NULL */
	const char *body;           /* NULL: none */
	size_t blen;
	int mode;                   /* MODE_BODY only, for a C caller */
	long connect_ms, first_byte_ms, idle_ms, total_ms; /* 0: none */
	int insecure, compressed, curl; /* curl: never hc.c */
} mg_fetch_req;

/* How a C caller's transfer ended: err and code as _fetch's on_done has
 * them (NULL, NULL: it went well), the status (0: none), the whole answer
 * and its headers ("name\0value\0", names lower-case). The bytes are valid
 * during the call only; the transfer is gone after it. */
typedef void (*mg_fetch_done_fn)(void *ud, const char *err, const char *code, int status,
				 const char *body, size_t blen, const char *pairs, size_t plen);

/* A transfer for a C caller on L's engine (the worker's Lua state whose
 * upstream engine carries it; no Lua runs). q->body is read in place until
 * done runs or mg_fetch_stop: the caller keeps it. done runs once, never
 * inside this call, never after mg_fetch_stop, and not at all when L's
 * engine closes first (the state closed: the caller must not touch the
 * transfer then). NULL when it cannot start (out of memory). */
mg_fetch *mg_fetch_start(lua_State *L, const mg_fetch_req *q, mg_fetch_done_fn done, void *ud);
/* Ends f now; done never runs. */
void mg_fetch_stop(mg_fetch *f);

/* Registers _fetch, _fetch_cancel and _fetch_resume on the table at -1. */
int mg_upstream_open(lua_State *L);

#endif
