/* A plain HTTP/1.1 client for http:// upstreams, on a libuv loop, with
 * http-parser reading the answers (see hc.c for ownership). */
#ifndef MG_HC_H
#define MG_HC_H

#include <stddef.h>
#include <uv.h>

typedef struct mg_hc mg_hc;         /* one per loop: idle connections, DNS cache */
typedef struct mg_hc_req mg_hc_req; /* one request and its answer */

/* How a request ended, for on_done. */
enum {
	MG_HC_OK = 0,
	MG_HC_ECONNECT,  /* no connection: refused, unresolved, no socket */
	MG_HC_ETIMEDOUT, /* the connect or the total time limit */
	MG_HC_EUPSTREAM, /* reset, truncated or malformed answer */
	MG_HC_EABORT     /* a callback said stop */
};

/* The caller's callbacks. on_head and on_body return 1 to go on, 0 to
 * stop (on_done then comes with MG_HC_EABORT). `pairs` holds the answer's
 * headers as "name\0value\0", names lower-cased. on_done comes once, unless
 * the request was cancelled; after it the request is gone. No callback runs
 * inside mg_hc_send. */
typedef struct mg_hc_cbs {
	int (*on_head)(void *ud, int status, const char *pairs, size_t len);
	int (*on_body)(void *ud, const char *data, size_t len);
	void (*on_done)(void *ud, int code, const char *message);
} mg_hc_cbs;

/* The parts of an http:// URL this client takes. */
typedef struct mg_hc_url {
	const char *host; /* not NUL-terminated; brackets of an IPv6 literal dropped */
	size_t hostlen;
	int port;
	const char *path; /* from the first '/' (query included), or "/" */
} mg_hc_url;

/* 0 when `url` is http://host[:port][/path] this client can reach (no
 * user info, no fragment, a port 1..65535), else -1 (use another client). */
int mg_hc_parse_url(const char *url, mg_hc_url *u);

mg_hc *mg_hc_new(uv_loop_t *loop);
/* Ends every request silently (no callbacks) and closes every connection. */
void mg_hc_free(mg_hc *hc);

/* A request to u: the request line now, then headers, then mg_hc_send.
 * NULL when out of memory. */
mg_hc_req *mg_hc_begin(mg_hc *hc, const mg_hc_url *u, const char *method,
		       const mg_hc_cbs *cbs, void *ud);
/* Adds "name: value"; a pair holding a line break is dropped, as are
 * Host, Content-Length, Transfer-Encoding and Connection, which the client
 * writes itself. */
void mg_hc_header(mg_hc_req *r, const char *name, const char *value);
/* Sends it. `body` (may be NULL) is read in place until on_done or cancel:
 * the caller keeps it alive. Timeouts in ms, 0 for none: connect_ms until
 * connected, total_ms for the whole request. */
/* Returns 0, or -1 when out of memory (the request is then gone, silently). */
int mg_hc_send(mg_hc_req *r, const char *body, size_t blen, long connect_ms, long total_ms);
/* Stop reading the answer (1) or read again (0). */
void mg_hc_pause(mg_hc_req *r, int paused);
/* Ends it now: its connection is closed and no callback runs. May be
 * called from inside its own callbacks. */
void mg_hc_cancel(mg_hc_req *r);

#endif
