/* Fuzz target: the frame templates (src/tmpl.c). An upstream frame of
 * either format, fuzzed, is either left to Lua or written as prefix, a JSON
 * string and suffix; what it writes must be that, and the string must be
 * one a JSON parser takes. A template that took a frame before takes the
 * next one as a fresh template does. */
#include "../src/jscan.h"
#include "../src/tmpl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* d applied to t: 1 when written (as above), 0 when left to Lua; out
 * holds what it wrote */
static int check(mg_tmpl *t, const char *d, size_t n, const char *ev, size_t elen, mg_buf *out)
{
	int rc = mg_tmpl_apply(t, d, n, ev, elen, out);

	if (rc == 1) {
		mg_buf doc = { 0 };
		mg_jfield f[2];
		mg_jscan_opts opts = { 10, NULL, 0 };
		mg_jscan_out o = { f, 2, 0, 0, 0 };
		if (out->len < t->plen + t->slen + 2 || memcmp(out->data, t->prefix, t->plen) ||
		    memcmp(out->data + out->len - t->slen, t->suffix, t->slen))
			abort();
		mg_buf_append(&doc, "{\"s\":", 5);
		mg_buf_append(&doc, out->data + t->plen, out->len - t->plen - t->slen);
		mg_buf_append(&doc, "}", 1);
		if (mg_jscan(doc.data, doc.len, &opts, &o) != MG_JSCAN_OK || o.n != 1 || f[0].type != MG_JSTR)
			abort();
		if (!mg_utf8_valid(out->data, out->len)) /* ill-formed text goes to Lua */
			abort();
		mg_buf_free(&doc);
	} else if (rc == 0 && out->len) {
		abort();
	}
	return rc;
}

/* The input is one frame, or two cut at the first 0xff byte: the second
 * is taken by a template that saw the first (its shortcut for a frame
 * like the last one) exactly as by a fresh one. */
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	static char prefix[] = "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":";
	static char suffix[] = "}}";
	static char ev[] = "content_block_delta";
	const char *cut = memchr(d, 0xff, n);
	const char *a = (const char *)d, *b = cut ? cut + 1 : a;
	size_t an = cut ? (size_t)(cut - a) : n, bn = cut ? n - an - 1 : n;

	for (int from = MG_TMPL_OPENAI; from <= MG_TMPL_ANTHROPIC; from++) {
		for (int kind = MG_TMPL_TEXT; kind <= MG_TMPL_THINKING; kind++) {
			mg_tmpl warm = { from, kind, prefix, suffix, sizeof prefix - 1, sizeof suffix - 1, ev, sizeof ev - 1, NULL, 0, 0 };
			mg_tmpl cold = warm;
			const char *e = from == MG_TMPL_ANTHROPIC ? ev : NULL;
			size_t el = from == MG_TMPL_ANTHROPIC ? sizeof ev - 1 : 0;
			mg_buf o1 = { 0 }, o2 = { 0 }, o3 = { 0 };
			int r2, r3;
			check(&warm, a, an, e, el, &o1);
			r2 = check(&warm, b, bn, e, el, &o2);
			r3 = check(&cold, b, bn, e, el, &o3);
			if (r2 != r3 || o2.len != o3.len || (o2.len && memcmp(o2.data, o3.data, o2.len)))
				abort();
			free(warm.seen);
			free(cold.seen);
			mg_buf_free(&o1);
			mg_buf_free(&o2);
			mg_buf_free(&o3);
		}
	}
	return 0;
}
