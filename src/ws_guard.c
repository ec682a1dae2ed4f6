/* WebSocket frame headers watched in a byte stream (see ws_guard.h): a
 * header is read byte by byte (2 to 14 bytes), a payload skipped by its
 * length in one step. Floor 0: calls nothing. */
#include "ws_guard.h"

#include <string.h>

void mg_ws_guard_init(mg_ws_guard *g, int server)
{
	memset(g, 0, sizeof *g);
	g->server = (uint8_t)!!server;
	g->in_head = g->server;
}

int mg_ws_guard_at_boundary(const mg_ws_guard *g)
{
	return !g->err && !g->in_head && !g->have && !g->left;
}

/* the refused frame's bytes before this piece (start) are already out */
static size_t refuse(mg_ws_guard *g, int err, uint64_t start)
{
	g->err = (uint8_t)err;
	g->err_at = g->frame_at;
	return g->frame_at > start ? (size_t)(g->frame_at - start) : 0;
}

size_t mg_ws_guard_feed(mg_ws_guard *g, const void *p, size_t n, int stop_at_boundary)
{
	const uint8_t *b = p;
	uint64_t start = g->pos;
	size_t i = 0;

	if (g->err)
		return 0;
	while (i < n) {
		uint8_t c;

		if (stop_at_boundary && mg_ws_guard_at_boundary(g))
			break;
		if (g->in_head) { /* up to "\r\n\r\n" */
			c = b[i++];
			g->pos++;
			if (c == (g->crlf & 1 ? '\n' : '\r'))
				g->crlf++;
			else
				g->crlf = c == '\r';
			if (g->crlf == 4)
				g->in_head = 0;
			continue;
		}
		if (g->left) { /* payload: skipped whole */
			uint64_t k = n - i < g->left ? n - i : g->left;
			i += (size_t)k;
			g->pos += k;
			g->left -= k;
			continue;
		}
		c = b[i++];
		g->pos++;
		if (!g->have) {
			if (g->server && (c & 0x0f) == 0x8)
				g->close_seen = 1;
			g->frame_at = g->pos - 1;
			g->need = 2;
			g->len = 0;
		}
		g->have++;
		if (g->have == 2) {
			unsigned l7 = c & 0x7f;
			int masked = c & 0x80;
			if (!masked && !g->server)
				return refuse(g, MG_WS_GUARD_UNMASKED, start);
			g->ext = l7 == 126 ? 2 : l7 == 127 ? 8 : 0;
			g->need = (uint8_t)(2 + g->ext + (masked ? 4 : 0));
			g->len = l7 < 126 ? l7 : 0;
		} else if (g->have <= 2 + g->ext) { /* the extended length, big-endian */
			if (g->have == 3 && g->ext == 8 && (c & 0x80) && !g->server)
				return refuse(g, MG_WS_GUARD_BAD_LENGTH, start);
			g->len = g->len << 8 | c;
		}
		if (g->have == g->need) { /* header over (mask key skipped) */
			g->have = 0;
			g->left = g->len;
		}
	}
	return i;
}
