/* The HTTP front: libwebsockets' HTTP/1.1 and HTTP/2 callback, request
 * objects handed to Lua, and the response writer (SSE / NDJSON / chunked
 * framing with backpressure). */
#ifndef MG_HTTP_H
#define MG_HTTP_H

#include <libwebsockets.h>
#include <lua.h>

struct mg_req;
/* Per-connection (per-stream for HTTP/2) data that lws allocates. */
typedef struct mg_http_pss {
	struct mg_req *req; /* the request in flight on this wsi, or NULL */
} mg_http_pss;

int mg_http_callback(struct lws *wsi, enum lws_callback_reasons reason,
		     void *user, void *in, size_t len);

/* Registers the request/response primitives on the table at -1. */
int mg_http_open(lua_State *L);

#endif
