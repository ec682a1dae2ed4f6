/* TLS listeners served by libwebsockets (see http_lws.c). */
#ifndef MG_HTTP_LWS_H
#define MG_HTTP_LWS_H

#include <libwebsockets.h>

struct mg_req;
/* Per-connection (per-stream for HTTP/2) data that lws allocates. */
struct mg_ws_conn;
typedef struct mg_http_pss {
	struct mg_req *req; /* the request in flight on this wsi, or NULL */
	struct mg_ws_conn *ws; /* once upgraded to a WebSocket (ws.c) */
	int draining; /* the last bytes are written, lws still holds some */
} mg_http_pss;

int mg_http_lws_callback(struct lws *wsi, enum lws_callback_reasons reason,
			 void *user, void *in, size_t len);

#endif
