/* Fuzz target: the incremental SSE parser and the NDJSON splitter
 * (src/sse.c), with split invariance as the oracle: the input fed at once
 * and fed in pieces (cut where the input's own bytes say) must give the
 * same frames, field by field. */
#include "../src/sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct frames {
	mg_buf all; /* each frame written as "len:bytes" fields */
} frames;

static void put(mg_buf *b, const char *s, size_t n)
{
	mg_buf_appendf(b, "%zu:", n);
	mg_buf_append(b, s ? s : "", n);
}

static void on_event(void *ud, const char *ev, size_t elen, const char *data, size_t dlen,
		     const char *id, size_t ilen)
{
	frames *f = ud;

	put(&f->all, ev, elen);
	put(&f->all, data, dlen);
	put(&f->all, id, ilen);
}

static void on_line(void *ud, const char *line, size_t len)
{
	put(&((frames *)ud)->all, line, len);
}

/* feeds data in pieces: the cut points come from a simple generator seeded
 * with the input's first bytes, so that a crash input replays exactly */
static void run(const uint8_t *d, size_t n, int pieces, int ndjson, frames *out)
{
	mg_sse_parser p;
	mg_buf partial = { 0 };
	int stop = 0;
	uint32_t seed = n ? d[0] * 2654435761u + n : 1;
	size_t at = 0;

	memset(&p, 0, sizeof p);
	while (at < n) {
		size_t len = n - at;
		if (pieces) {
			seed = seed * 1103515245u + 12345u;
			len = 1 + (seed >> 16) % 7;
			if (len > n - at)
				len = n - at;
		}
		if (ndjson)
			mg_ndjson_split(&partial, &stop, (const char *)d + at, len, on_line, out);
		else
			mg_sse_parse(&p, (const char *)d + at, len, on_event, out);
		at += len;
	}
	mg_sse_parser_free(&p);
	mg_buf_free(&partial);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	for (int ndjson = 0; ndjson < 2; ndjson++) {
		frames whole = { { 0 } }, cut = { { 0 } };
		run(d, n, 0, ndjson, &whole);
		run(d, n, 1, ndjson, &cut);
		if (whole.all.len != cut.all.len || (whole.all.len && memcmp(whole.all.data, cut.all.data, whole.all.len)))
			abort(); /* the frames depend on where reads happen to end */
		mg_buf_free(&whole.all);
		mg_buf_free(&cut.all);
	}
	return 0;
}
