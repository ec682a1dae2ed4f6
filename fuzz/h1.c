/* Fuzz target: the HTTP/1.1 request parse (src/h1_parse.c over http-parser),
 * driven as h1.c drives it: bytes appended to the connection's input as
 * reads bring them, one request at a time, each served (and the parser
 * resumed) before the next is parsed, the connection given up at a refusal,
 * a request that closes it, or a WebSocket upgrade. The oracle is split
 * invariance: the input read at once and read in pieces (cut where the
 * input's own bytes say) must give the same outcome: each request's method,
 * path, query, headers, body and refusal, the parse errors' statuses, the
 * bytes handed over after an upgrade. Each request's header pairs must walk
 * ("name\0value\0") to their exact end, and its path hold no NUL. */
#include "../src/h1_parse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEADER 2048
#define MAX_BODY 16384

static mg_req *begin(mg_h1_parse *p)
{
	(void)p;
	return calloc(1, sizeof(mg_req));
}

static void req_free(mg_req *r)
{
	if (!r)
		return;
	mg_buf_free(&r->path);
	mg_buf_free(&r->query);
	mg_buf_free(&r->headers);
	mg_buf_free(&r->body);
	free(r);
}

static void put(mg_buf *b, const char *s, size_t n)
{
	mg_buf_appendf(b, "%zu:", n);
	mg_buf_append(b, s ? s : "", n);
}

/* the walk h1.c (ws_handoff) and http.c make over r->headers */
static void check_pairs(const mg_buf *h)
{
	size_t i = 0;

	while (i < h->len) {
		const char *name = memchr(h->data + i, 0, h->len - i);
		const char *value;
		if (!name || name == h->data + i)
			abort(); /* no name, or no end to it */
		value = name + 1;
		if (value >= h->data + h->len || !memchr(value, 0, (size_t)(h->data + h->len - value)))
			abort(); /* a value without its end: a strlen walk reads past the buffer */
		i = (size_t)(value - h->data) + strlen(value) + 1;
	}
	if (i != h->len)
		abort();
}

static void record(mg_buf *o, const mg_req *r)
{
	check_pairs(&r->headers);
	if (r->path.data && strlen(r->path.data) != r->path.len)
		abort(); /* a NUL in the path: "GET %s" would cut it */
	mg_buf_appendf(o, "req %s http10=%d close=%d error=%d ", r->method, r->http10, r->close_after,
		       r->body_error);
	put(o, r->path.data, r->path.len);
	put(o, r->query.data, r->query.len);
	put(o, r->headers.data, r->headers.len);
	put(o, r->body.data, r->body.len);
	mg_buf_append(o, "\n", 1);
}

static void run(const uint8_t *d, size_t n, int pieces, mg_buf *out)
{
	mg_h1_parse p;
	mg_buf in = { 0 };
	size_t off = 0, at = 0;
	uint32_t seed = n ? d[0] * 2654435761u + n : 1;
	int done = 0;

	mg_h1_parse_init(&p, MAX_HEADER, MAX_BODY, begin, NULL);
	while (at < n && !done) {
		size_t len = n - at;
		if (pieces) {
			seed = seed * 1103515245u + 12345u;
			len = (seed >> 16) % 4 ? 1 + (seed >> 18) % 9 : 1 + (seed >> 18) % 700;
			if (len > n - at)
				len = n - at;
		}
		mg_buf_append(&in, (const char *)d + at, len);
		at += len;
		while (!done && off < in.len) {
			size_t k = mg_h1_parse_execute(&p, in.data + off, in.len - off);
			enum http_errno err = HTTP_PARSER_ERRNO(&p.parser);

			if (k > in.len - off)
				abort();
			off += k;
			if (p.send_continue) {
				p.send_continue = 0;
				mg_buf_append(out, "100 continue\n", 13);
			}
			if (p.ws_upgrade) {
				if (err != HPE_PAUSED || !p.req)
					abort();
				mg_buf_append(out, "upgrade ", 8);
				record(out, p.req);
				/* what lws gets after the rebuilt head */
				mg_buf_appendf(out, "%zu:", in.len - off + n - at);
				mg_buf_append(out, in.data + off, in.len - off);
				mg_buf_append(out, (const char *)d + at, n - at);
				done = 1;
			} else if (err == HPE_PAUSED && p.req) {
				int close = p.req->close_after || p.req->body_error;
				record(out, p.req);
				req_free(p.req);
				mg_h1_parse_next(&p); /* answered: the next one */
				if (close)
					done = 1;
			} else if (err != HPE_OK) {
				/* h1.c answers with this status and closes */
				mg_buf_appendf(out, "refused %d\n", mg_h1_parse_refusal(err));
				done = 1;
			} else if (off != in.len) {
				abort(); /* neither done nor waiting for more */
			}
		}
	}
	req_free(p.req);
	mg_h1_parse_free(&p);
	mg_buf_free(&in);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	mg_h1_parse_setup(MAX_HEADER);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	mg_buf whole = { 0 }, cut = { 0 };

	run(d, n, 0, &whole);
	run(d, n, 1, &cut);
	if (getenv("FUZZ_SHOW")) /* what an input gives: FUZZ_SHOW=1 build-fuzz/h1 FILE */
		fwrite(whole.data ? whole.data : "", 1, whole.len, stderr);
	if (whole.len != cut.len || (whole.len && memcmp(whole.data, cut.data, whole.len))) {
		fputs("at once:\n", stderr);
		fwrite(whole.data ? whole.data : "", 1, whole.len, stderr);
		fputs("\nin pieces:\n", stderr);
		fwrite(cut.data ? cut.data : "", 1, cut.len, stderr);
		fputs("\n", stderr);
		abort(); /* the outcome depends on where reads happen to end */
	}
	mg_buf_free(&whole);
	mg_buf_free(&cut);
	return 0;
}
