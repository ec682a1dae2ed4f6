/* Fuzz target: the WebSocket frame header guard (src/ws_guard.c) that ws_relay.c
 * runs over a cleartext client's bytes, and over lws's answer in
 * server mode. The first input byte picks the mode; the rest is the stream.
 * Oracles: a plain reference parse of the whole stream (every frame's end,
 * the first refused frame and why) against the guard fed whole, byte by
 * byte, and in pieces cut from the input's own bytes: the same verdict at
 * the same byte, the bytes passed all before the refused frame (plus at
 * most its first two header bytes, given in earlier pieces), the same
 * boundaries; and stop_at_boundary landing on each boundary in turn. */
#include "../src/ws_guard.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BOUNDS 4096

typedef struct {
	int err;
	uint64_t err_at;
	size_t nb;
	uint64_t bounds[MAX_BOUNDS]; /* stream offsets where a frame ends */
} ref_t;

static void reference(const uint8_t *d, size_t n, int server, ref_t *r)
{
	size_t at = 0, i;

	memset(r, 0, sizeof *r);
	if (server) { /* the head: up to the first "\r\n\r\n" */
		for (i = 0; i + 4 <= n; i++)
			if (!memcmp(d + i, "\r\n\r\n", 4))
				break;
		if (i + 4 > n)
			return;
		at = i + 4;
		r->bounds[r->nb++] = at; /* our frame may follow the head */
	}
	while (at < n) {
		size_t start = at, hl;
		uint64_t len;
		int masked;
		if (n - at < 2)
			return;
		masked = d[at + 1] & 0x80;
		len = d[at + 1] & 0x7f;
		if (!masked && !server) {
			r->err = MG_WS_GUARD_UNMASKED;
			r->err_at = start;
			return;
		}
		hl = 2;
		if (len == 126) {
			if (n - at < 4)
				return;
			len = (uint64_t)d[at + 2] << 8 | d[at + 3];
			hl = 4;
		} else if (len == 127) {
			if (n - at < 3)
				return;
			if ((d[at + 2] & 0x80) && !server) {
				r->err = MG_WS_GUARD_BAD_LENGTH;
				r->err_at = start;
				return;
			}
			if (n - at < 10)
				return;
			len = 0;
			for (i = 0; i < 8; i++)
				len = len << 8 | d[at + 2 + i];
			hl = 10;
		}
		hl += masked ? 4 : 0;
		if (n - at < hl || n - at - hl < len)
			return;
		at += hl + (size_t)len;
		if (r->nb < MAX_BOUNDS)
			r->bounds[r->nb++] = at;
	}
}

static int is_bound(const ref_t *r, uint64_t at)
{
	for (size_t i = 0; i < r->nb; i++)
		if (r->bounds[i] == at)
			return 1;
	return 0;
}

static void check_verdict(const mg_ws_guard *g, const ref_t *r, size_t passed, size_t n)
{
	if (g->err != r->err)
		abort();
	if (!r->err) {
		if (passed != n)
			abort();
		return;
	}
	if (g->err_at != r->err_at || passed < r->err_at || passed > r->err_at + 2)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static ref_t r;
	mg_ws_guard g;
	const uint8_t *d;
	size_t n, passed, at, nb;
	int server;
	uint32_t seed;

	if (!size)
		return 0;
	server = data[0] & 1;
	d = data + 1;
	n = size - 1;
	reference(d, n, server, &r);
	if (r.nb >= MAX_BOUNDS)
		return 0;

	/* whole */
	mg_ws_guard_init(&g, server);
	passed = mg_ws_guard_feed(&g, d, n, 0);
	check_verdict(&g, &r, passed, n);

	/* byte by byte: the boundaries too */
	mg_ws_guard_init(&g, server);
	passed = 0;
	nb = 0;
	for (at = 0; at < n; at++) {
		passed += mg_ws_guard_feed(&g, d + at, 1, 0);
		if (mg_ws_guard_at_boundary(&g)) {
			if (nb >= r.nb || r.bounds[nb] != at + 1)
				abort(); /* a boundary the reference does not see */
			nb++;
		}
	}
	check_verdict(&g, &r, passed, n);
	if (!r.err && nb != r.nb)
		abort();

	/* pieces cut from the input's own bytes */
	seed = (uint32_t)size * 2654435761u + data[0];
	mg_ws_guard_init(&g, server);
	passed = 0;
	for (at = 0; at < n;) {
		size_t k;
		seed = seed * 1103515245u + 12345u;
		k = (seed >> 16) % 7 == 0 ? 0 : 1 + (seed >> 18) % 23;
		if (k > n - at)
			k = n - at;
		passed += mg_ws_guard_feed(&g, d + at, k, 0);
		at += k;
		if (at && mg_ws_guard_at_boundary(&g) && !is_bound(&r, at)) /* (at 0: the start) */
			abort();
	}
	check_verdict(&g, &r, passed, n);

	/* stop_at_boundary: each stop is the next boundary */
	if (!r.err) {
		int have_last = !server; /* a client stream starts at a boundary, not a frame's end */
		uint64_t last = 0;
		mg_ws_guard_init(&g, server);
		at = 0;
		nb = 0;
		while (at < n) {
			size_t k;
			if (mg_ws_guard_at_boundary(&g) && have_last && last == at) {
				at += mg_ws_guard_feed(&g, d + at, 1, 0); /* past it (no frame is 1 byte) */
				continue;
			}
			k = mg_ws_guard_feed(&g, d + at, n - at, 1);
			at += k;
			if (mg_ws_guard_at_boundary(&g)) {
				if (nb >= r.nb || r.bounds[nb] != at)
					abort();
				nb++;
				last = at;
				have_last = 1;
			} else if (at != n) {
				abort(); /* stopped short of a boundary */
			}
		}
		if (nb != r.nb)
			abort();
	}
	return 0;
}
