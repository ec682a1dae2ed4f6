/* Fuzz target: the frame templates (src/tmpl.c). An upstream frame of
 * either format, fuzzed, is either left to Lua or written as prefix, a JSON
 * string and suffix; what it writes must be that, and the string must be
 * one a JSON parser takes. */
#include "../src/jscan.h"
#include "../src/tmpl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(const mg_tmpl *t, const char *d, size_t n, const char *ev, size_t elen)
{
	mg_buf out = { 0 };
	int rc = mg_tmpl_apply(t, d, n, ev, elen, &out);

	if (rc == 1) {
		mg_buf doc = { 0 };
		mg_jfield f[2];
		mg_jscan_opts opts = { 10, NULL, 0 };
		mg_jscan_out o = { f, 2, 0, 0, 0 };
		if (out.len < t->plen + t->slen + 2 || memcmp(out.data, t->prefix, t->plen) ||
		    memcmp(out.data + out.len - t->slen, t->suffix, t->slen))
			abort();
		mg_buf_append(&doc, "{\"s\":", 5);
		mg_buf_append(&doc, out.data + t->plen, out.len - t->plen - t->slen);
		mg_buf_append(&doc, "}", 1);
		if (mg_jscan(doc.data, doc.len, &opts, &o) != MG_JSCAN_OK || o.n != 1 || f[0].type != MG_JSTR)
			abort();
		if (!mg_utf8_valid(out.data, out.len)) /* ill-formed text goes to Lua */
			abort();
		mg_buf_free(&doc);
	} else if (rc == 0 && out.len) {
		abort();
	}
	mg_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	static char prefix[] = "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":";
	static char suffix[] = "}}";
	static char ev[] = "content_block_delta";
	mg_tmpl t = { MG_TMPL_OPENAI, MG_TMPL_TEXT, prefix, suffix, sizeof prefix - 1, sizeof suffix - 1, ev, sizeof ev - 1 };

	for (int from = MG_TMPL_OPENAI; from <= MG_TMPL_ANTHROPIC; from++) {
		for (int kind = MG_TMPL_TEXT; kind <= MG_TMPL_THINKING; kind++) {
			t.from = from;
			t.kind = kind;
			check(&t, (const char *)d, n, from == MG_TMPL_ANTHROPIC ? ev : NULL,
			      from == MG_TMPL_ANTHROPIC ? sizeof ev - 1 : 0);
		}
	}
	return 0;
}
