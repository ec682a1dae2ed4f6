/* Fuzz target: WebSocket message assembly (src/ws_rx.c), as ws.c drives it
 * from lws's receive callback. The input is a series of messages, each a
 * flags byte (bit 0: binary), a 2-byte length and its payload; each
 * message is fed whole, then again cut into pieces (frames, and frames cut
 * where reads end, empty ones too) chosen from the input's own bytes. The
 * oracle: the same outcome either way, message by message (its bytes, or
 * the close for one over the limit or a text one that is not UTF-8), and a
 * delivered message is exactly the payload sent. */
#include "../src/ws_rx.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGE 4096

static void run(const uint8_t *d, size_t n, int pieces, mg_buf *out)
{
	mg_ws_rx rx = { { 0 } };
	uint32_t seed = n ? d[0] * 2654435761u + n : 1;
	size_t at = 0;

	while (at + 3 <= n) {
		int text = !(d[at] & 1);
		size_t len = (size_t)d[at + 1] | (size_t)d[at + 2] << 8, off = 0;
		const uint8_t *m;
		int rc = MG_WS_RX_MORE;

		at += 3;
		if (len > n - at)
			len = n - at;
		m = d + at;
		at += len;
		while (rc == MG_WS_RX_MORE) {
			size_t k = len - off;
			int last;
			if (pieces) {
				seed = seed * 1103515245u + 12345u;
				k = (seed >> 16) % 5 == 0 ? 0 : 1 + (seed >> 19) % 97;
				if (k > len - off)
					k = len - off;
			}
			last = off + k == len && (!pieces || (seed >> 24) % 3);
			rc = mg_ws_rx_feed(&rx, m + off, k, last, text, MAX_MESSAGE);
			off += k;
			if (rc != MG_WS_RX_MORE && !last)
				abort(); /* an outcome before the message ended */
		}
		if (rc == MG_WS_RX_MESSAGE) {
			if (rx.msg.len != len || (len && memcmp(rx.msg.data, m, len)))
				abort(); /* not what was sent */
			mg_buf_appendf(out, "message %d %zu:", text, rx.msg.len);
			mg_buf_append(out, rx.msg.data, rx.msg.len);
			mg_ws_rx_taken(&rx);
		} else {
			mg_buf_appendf(out, "close %d", rc); /* ws.c closes the connection */
			break;
		}
	}
	mg_ws_rx_free(&rx);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	mg_buf whole = { 0 }, cut = { 0 };

	run(d, n, 0, &whole);
	run(d, n, 1, &cut);
	if (whole.len != cut.len || (whole.len && memcmp(whole.data, cut.data, whole.len)))
		abort(); /* the messages depend on how they were cut */
	mg_buf_free(&whole);
	mg_buf_free(&cut);
	return 0;
}
