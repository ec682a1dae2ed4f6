/* Fuzz target: the one-pass JSON checker (src/jscan.c) and its UTF-8
 * helpers. Oracles: every field it reports lies inside the text, a string
 * value unescapes within its own length, the UTF-8 repair always gives
 * well-formed text and leaves well-formed text as it was; the token
 * helpers (mg_jskip, mg_jstr_end, mg_jnum_end) end each top-level value
 * where the scan said it ends. */
#include "../src/jscan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MARKER "\x01mg:"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	const char *text = (const char *)d;
	mg_jfield fields[32];
	mg_jscan_opts opts = { 200, MARKER, sizeof MARKER - 1 };
	mg_jscan_out out = { fields, 32, 0, 0, 0 };
	char *buf = malloc(3 * n + 1);

	if (!buf)
		return 0;
	if (mg_jscan(text, n, &opts, &out) == MG_JSCAN_OK) {
		if (out.n > out.cap)
			abort();
		for (size_t i = 0; i < out.n; i++) {
			const mg_jfield *f = &fields[i];
			if (f->from >= f->to || f->to > n || f->key_at < text || f->key_at + f->key_len > text + n)
				abort();
			/* the token helpers a walker uses (jdecode.c) agree with the scan */
			if (mg_jskip(text + f->from, text + n) != text + f->to)
				abort();
			if (f->type == MG_JSTR) {
				int esc;
				if (mg_jstr_end(text + f->from, text + n, &esc) != text + f->to || esc != f->esc)
					abort();
			}
			if (f->type == MG_JNUM && mg_jnum_end(text + f->from, text + n) != text + f->to)
				abort();
			if (f->type == MG_JSTR) {
				size_t len = f->to - f->from - 2;
				if (mg_junescape(text + f->from + 1, len, buf) > len)
					abort();
			}
		}
	}
	{
		size_t m = mg_utf8_fix(text, n, buf);
		if (!mg_utf8_valid(buf, m) || m > 3 * n)
			abort();
		if (mg_utf8_valid(text, n) && (m != n || memcmp(buf, text, n)))
			abort();
	}
	free(buf);
	return 0;
}
