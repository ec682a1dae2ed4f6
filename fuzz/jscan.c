/* Fuzz target: the one-pass JSON checker (src/jscan.c) and its UTF-8
 * helpers. Oracles: every field it reports lies inside the text, a string
 * value unescapes within its own length, the UTF-8 repair always gives
 * well-formed text and leaves well-formed text as it was; for each
 * top-level array, mg_jmembers' spans lie inside it, in order, each a
 * value of the kind asked for (its first byte says so). */
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
			if (f->type == MG_JARR) {
				/* paths of one and two names, one at a time and together */
				static const mg_jpath paths[] = {
					{ { "s", NULL }, { 1, 0 }, 1, MG_JOBJ },
					{ { "s", NULL }, { 1, 0 }, 1, MG_JSTR },
					{ { "c", "s" }, { 1, 1 }, 2, MG_JSTR },
					{ { "c", "s" }, { 1, 1 }, 2, MG_JOBJ },
					{ { "c", "k" }, { 1, 1 }, 2, MG_JSTR },
				};
				static const int sets[][2] = { { 0, 1 }, { 1, 1 }, { 2, 1 }, { 3, 1 }, { 0, 5 } };
				mg_jspan spans[16];
				for (size_t q = 0; q < sizeof sets / sizeof *sets; q++) {
					const mg_jpath *ps = &paths[sets[q][0]];
					long m = mg_jmembers(text, f->from, f->to, ps, sets[q][1], spans, 16);
					size_t at = f->from;
					if (m < 0 || m > 16)
						abort();
					for (long k = 0; k < m; k++) {
						const mg_jspan *sp = &spans[k];
						if (sp->path < 0 || sp->path >= sets[q][1])
							abort();
						if (sp->from < at || sp->to <= sp->from || sp->to > f->to)
							abort();
						if (text[sp->from] != (ps[sp->path].kind == MG_JOBJ ? '{' : '"'))
							abort();
						at = sp->to;
					}
				}
			}
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
