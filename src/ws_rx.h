/* WebSocket message assembly (see ws_rx.c): the fragments lws hands over,
 * gathered into whole messages within a size limit. No I/O: ws.c feeds it
 * what lws receives, fuzz/ws.c what a fuzzer makes. */
#ifndef MG_WS_RX_H
#define MG_WS_RX_H

#include <stddef.h>
#include "buf.h"

typedef struct mg_ws_rx {
	mg_buf msg;    /* the message so far */
	int too_big;   /* it went over the limit: the rest is dropped */
} mg_ws_rx;

enum {
	MG_WS_RX_MORE = 0,    /* the message goes on */
	MG_WS_RX_MESSAGE,     /* rx->msg holds a whole message: take it, then mg_ws_rx_taken */
	MG_WS_RX_TOO_BIG,     /* it ended over max bytes: close 1009 */
	MG_WS_RX_BAD_UTF8,    /* a text message that is not UTF-8: close 1007 */
	MG_WS_RX_NOMEM = -1
};

/* Adds len bytes of a message's payload; last: they end it (lws: a final
 * fragment with nothing of its frame left); text: it is a text message. */
int mg_ws_rx_feed(mg_ws_rx *rx, const void *in, size_t len, int last, int text, size_t max);
/* The message in rx->msg was taken: the next one starts. */
void mg_ws_rx_taken(mg_ws_rx *rx);
void mg_ws_rx_free(mg_ws_rx *rx);

#endif
