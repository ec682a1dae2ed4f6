/* WebSocket message assembly: a message arrives from lws in pieces (its
 * frames, each possibly cut where lws's reads end); they are gathered here
 * up to the size limit, and a text message must be UTF-8 (RFC 6455, 8.1)
 * before Lua sees it. The outcome does not depend on how the message was
 * cut. Floor 1: calls buf.c and jscan.c (mg_utf8_valid). */
#include "ws_rx.h"
#include "jscan.h"

int mg_ws_rx_feed(mg_ws_rx *rx, const void *in, size_t len, int last, int text, size_t max)
{
	if (!rx->too_big) {
		if (len > max || rx->msg.len > max - len) {
			rx->too_big = 1;
			mg_buf_free(&rx->msg);
		} else if (len && mg_buf_append(&rx->msg, in, len)) {
			return MG_WS_RX_NOMEM;
		}
	}
	if (!last)
		return MG_WS_RX_MORE;
	if (rx->too_big)
		return MG_WS_RX_TOO_BIG;
	if (text && !mg_utf8_valid(rx->msg.data, rx->msg.len))
		return MG_WS_RX_BAD_UTF8;
	return MG_WS_RX_MESSAGE;
}

void mg_ws_rx_taken(mg_ws_rx *rx)
{
	rx->msg.len = 0;
	rx->too_big = 0;
	if (rx->msg.cap > 65536) /* a large message's: not for the next */
		mg_buf_free(&rx->msg);
}

void mg_ws_rx_free(mg_ws_rx *rx)
{
	mg_buf_free(&rx->msg);
	rx->too_big = 0;
}
