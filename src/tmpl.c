/* Frame templates: see tmpl.h. */
#include "tmpl.h"
#include "jscan.h"

#include <stdlib.h>
#include <string.h>

#define MAX_KEYS 16
#define DEPTH 200

/* is f's key `name` (written without escapes)? */
static int is(const mg_jfield *f, const char *name)
{
	size_t n = strlen(name);
	return !f->key_esc && f->key_len == n && !memcmp(f->key_at, name, n);
}

/* the field named `name`, or NULL */
static const mg_jfield *field(const mg_jscan_out *o, const char *name)
{
	for (size_t i = 0; i < o->n; i++)
		if (is(&o->fields[i], name))
			return &o->fields[i];
	return NULL;
}

/* the value's text is exactly lit (a string with its quotes, a number) */
static int value_is(const char *text, const mg_jfield *f, const char *lit)
{
	size_t n = strlen(lit);
	return f && f->to - f->from == n && !memcmp(text + f->from, lit, n);
}

static int scan(const char *text, size_t len, mg_jfield *fields, mg_jscan_out *o)
{
	mg_jscan_opts opts = { DEPTH, NULL, 0 };

	o->fields = fields;
	o->cap = MAX_KEYS;
	return mg_jscan(text, len, &opts, o) == MG_JSCAN_OK;
}

/* a non-empty string value: its body (between the quotes) */
static int string_body(const char *text, const mg_jfield *f, const char **s, size_t *len)
{
	if (!f || f->type != MG_JSTR || f->to - f->from < 3)
		return 0;
	*s = text + f->from + 1;
	*len = f->to - f->from - 2;
	return 1;
}

/* OpenAI: {"id", "object", "created", "model", ..., "choices": [{"index": 0,
 * "delta": {"content": S}, "logprobs": null, "finish_reason": null}]}, with
 * no other key than these (a null one aside), no usage, one choice */
static int openai(const mg_tmpl *t, const char *d, size_t n, const char **s, size_t *slen)
{
	static const char *const known[] = { "id", "object", "created", "model", "system_fingerprint",
					     "service_tier", "obfuscation", "provider", NULL };
	mg_jfield top[MAX_KEYS], ch[MAX_KEYS], dl[MAX_KEYS];
	mg_jscan_out o = { 0 }, oc = { 0 }, od = { 0 };
	const mg_jfield *choices = NULL, *delta, *str = NULL;
	const char *c;
	size_t a, b;

	if (!scan(d, n, top, &o))
		return 0;
	for (size_t i = 0; i < o.n; i++) {
		const mg_jfield *f = &top[i];
		int ok = f->type == MG_JNULL;
		for (int k = 0; !ok && known[k]; k++)
			ok = is(f, known[k]);
		if (is(f, "choices") && f->type == MG_JARR && f->count == 1)
			ok = 1, choices = f;
		if (!ok)
			return 0;
	}
	if (!choices)
		return 0;
	/* the one element of the array: its text without the brackets */
	a = choices->from + 1;
	b = choices->to - 1;
	while (a < b && (d[a] == ' ' || d[a] == '\t' || d[a] == '\n' || d[a] == '\r'))
		a++;
	while (b > a && (d[b - 1] == ' ' || d[b - 1] == '\t' || d[b - 1] == '\n' || d[b - 1] == '\r'))
		b--;
	c = d + a;
	if (b - a < 2 || c[0] != '{' || !scan(c, b - a, ch, &oc))
		return 0;
	for (size_t i = 0; i < oc.n; i++) {
		const mg_jfield *f = &ch[i];
		if (f->type != MG_JNULL && !is(f, "delta") && !(is(f, "index") && value_is(c, f, "0")))
			return 0;
	}
	delta = field(&oc, "delta");
	if (!delta || delta->type != MG_JOBJ || !scan(c + delta->from, delta->to - delta->from, dl, &od))
		return 0;
	c += delta->from;
	for (size_t i = 0; i < od.n; i++) {
		const mg_jfield *f = &dl[i];
		if (f->type == MG_JNULL)
			continue;
		if (str || !(t->kind == MG_TMPL_TEXT ? is(f, "content")
			     : is(f, "reasoning_content") || is(f, "reasoning") || is(f, "reasoning_text")))
			return 0;
		str = f;
	}
	return string_body(c, str, s, slen);
}

/* Anthropic: {"type": "content_block_delta", "index": N, "delta": {"type":
 * "text_delta", "text": S}} (thinking_delta, "thinking" for thinking); its
 * SSE event (when named) content_block_delta, which the caller checks */
static int anthropic(const mg_tmpl *t, const char *d, size_t n, const char **s, size_t *slen)
{
	mg_jfield top[MAX_KEYS], dl[MAX_KEYS];
	mg_jscan_out o = { 0 }, od = { 0 };
	const mg_jfield *delta, *str;
	const char *dt = t->kind == MG_TMPL_TEXT ? "\"text_delta\"" : "\"thinking_delta\"";

	if (!scan(d, n, top, &o) || o.n != 3 || !value_is(d, field(&o, "type"), "\"content_block_delta\"") ||
	    !field(&o, "index") || field(&o, "index")->type != MG_JNUM)
		return 0;
	delta = field(&o, "delta");
	if (!delta || delta->type != MG_JOBJ || !scan(d + delta->from, delta->to - delta->from, dl, &od) || od.n != 2)
		return 0;
	d += delta->from;
	if (!value_is(d, field(&od, "type"), dt))
		return 0;
	str = field(&od, t->kind == MG_TMPL_TEXT ? "text" : "thinking");
	return string_body(d, str, s, slen);
}

static const char hex[] = "0123456789abcdef";

int mg_tmpl_cjson_string(const char *s, size_t len, mg_buf *out)
{
	size_t i;
	char *tmp;
	size_t n;
	int rc;

	/* most text has nothing to change: as it came */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\\' || c == '/' || c < 0x20 || c == 0x7f)
			break;
	}
	if (i == len) {
		if (mg_buf_reserve(out, len + 2))
			return -1;
		mg_buf_append(out, "\"", 1);
		mg_buf_append(out, s, len);
		return mg_buf_append(out, "\"", 1);
	}
	/* else the string's own value, written again as cjson writes it */
	if (!(tmp = malloc(len ? len : 1)))
		return -1;
	n = mg_junescape(s, len, tmp);
	rc = mg_buf_reserve(out, n * 6 + 2);
	if (!rc) {
		mg_buf_append(out, "\"", 1);
		for (i = 0; i < n; i++) {
			unsigned char c = (unsigned char)tmp[i];
			char e[6] = { '\\', 0 };
			size_t el = 2;
			switch (c) {
			case '"': e[1] = '"'; break;
			case '\\': e[1] = '\\'; break;
			case '/': e[1] = '/'; break;
			case '\b': e[1] = 'b'; break;
			case '\f': e[1] = 'f'; break;
			case '\n': e[1] = 'n'; break;
			case '\r': e[1] = 'r'; break;
			case '\t': e[1] = 't'; break;
			default:
				if (c < 0x20 || c == 0x7f) {
					e[1] = 'u';
					e[2] = '0';
					e[3] = '0';
					e[4] = hex[c >> 4];
					e[5] = hex[c & 15];
					el = 6;
				} else {
					e[0] = (char)c;
					el = 1;
				}
			}
			mg_buf_append(out, e, el);
		}
		rc = mg_buf_append(out, "\"", 1);
	}
	free(tmp);
	return rc;
}

/* Is d the frame t took last but for its string (a non-empty one)? The
 * same bytes before and after a string token read as the same JSON around
 * it: what came before ends where a value may start, and a string ends
 * where it ends. */
static int seen_before(const mg_tmpl *t, const char *d, size_t n, const char **s, size_t *slen)
{
	const char *e, *at;
	int esc;

	if (!t->seen || n < t->pre + t->post + 3 || memcmp(d, t->seen, t->pre) != 0 || d[t->pre] != '"')
		return 0;
	at = d + n - t->post;
	e = mg_jstr_end(d + t->pre, at, &esc);
	if (e != at || memcmp(at, t->seen + t->pre, t->post) != 0)
		return 0;
	*s = d + t->pre + 1;
	*slen = (size_t)(at - *s - 1);
	return 1;
}

/* t takes d (whose string is s[0 .. slen)) as the frame it saw last, in
 * the buffer it keeps (an upstream whose frames all differ, such as one
 * that adds a random field to each, comes here for every frame) */
static void remember(mg_tmpl *t, const char *d, size_t n, const char *s, size_t slen)
{
	size_t pre = (size_t)(s - 1 - d), post = n - pre - slen - 2;

	if (pre + post > t->seen_cap || !t->seen) {
		char *seen = realloc(t->seen, pre + post ? pre + post : 1);
		if (!seen) { /* (the next frame is checked in full) */
			free(t->seen);
			t->seen = NULL;
			t->seen_cap = 0;
			return;
		}
		t->seen = seen;
		t->seen_cap = pre + post;
	}
	memcpy(t->seen, d, pre);
	memcpy(t->seen + pre, s + slen + 1, post);
	t->pre = pre;
	t->post = post;
}

int mg_tmpl_apply(mg_tmpl *t, const char *data, size_t dlen, const char *ev, size_t elen, mg_buf *out)
{
	const char *s;
	size_t slen, mark = out->len;
	int ok;

	if (t->from == MG_TMPL_ANTHROPIC && elen && !(elen == 19 && !memcmp(ev, "content_block_delta", 19)))
		return 0;
	ok = seen_before(t, data, dlen, &s, &slen);
	if (!ok) {
		ok = t->from == MG_TMPL_OPENAI ? openai(t, data, dlen, &s, &slen)
					       : t->from == MG_TMPL_ANTHROPIC && anthropic(t, data, dlen, &s, &slen);
		if (ok)
			remember(t, data, dlen, s, slen);
	}

	/* ill-formed UTF-8 goes to Lua, which writes U+FFFD for it */
	if (!ok || !mg_utf8_valid(s, slen))
		return 0;
	if (mg_buf_append(out, t->prefix, t->plen) || mg_tmpl_cjson_string(s, slen, out) ||
	    mg_buf_append(out, t->suffix, t->slen)) {
		out->len = mark;
		return -1;
	}
	return 1;
}

void mg_tmpl_free(mg_tmpl *t)
{
	if (!t)
		return;
	free(t->prefix);
	free(t->suffix);
	free(t->event);
	free(t->seen);
	free(t);
}
