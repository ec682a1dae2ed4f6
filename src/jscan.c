/* The JSON checker and top-level index: see jscan.h. */
#include "jscan.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* bytes that end a run of plain string bytes: the quote, the backslash, NUL */
static const unsigned char stop[256] = { [0] = 1, ['"'] = 1, ['\\'] = 1 };

/* the first byte at or after p (before end) that ends a run of plain
 * string bytes, or end: 16 bytes a step where SSE2 is there (every x86-64) */
static const char *plain_run(const char *p, const char *end)
{
#ifdef __SSE2__
	const __m128i q = _mm_set1_epi8('"'), b = _mm_set1_epi8('\\'), z = _mm_setzero_si128();

	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		__m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, b)), _mm_cmpeq_epi8(v, z));
		int m = _mm_movemask_epi8(hit);
		if (m)
			return p + __builtin_ctz((unsigned)m);
		p += 16;
	}
#endif
	while (p < end && !stop[(unsigned char)*p])
		p++;
	return p;
}

typedef struct scan {
	const char *p, *end;
	const mg_jscan_opts *o;
	mg_jscan_out *out;
	int esc; /* the last string scanned held an escape */
} scan;

static const char *ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static int hex4(const char *p, const char *end)
{
	int v = 0;

	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

const char *mg_jstr_end(const char *p, const char *end, int *esc)
{
	*esc = 0;
	for (p++;;) {
		p = plain_run(p, end);
		if (p >= end || *p == 0)
			return NULL;
		if (*p == '"')
			return p + 1;
		*esc = 1;
		if (end - p < 2)
			return NULL;
		switch (p[1]) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
			p += 2;
			break;
		case 'u': {
			int c = hex4(p + 2, end);
			if (c < 0 || (c & 0xFC00) == 0xDC00)
				return NULL;
			p += 6;
			if ((c & 0xFC00) == 0xD800) {
				int lo;
				if (end - p < 2 || p[0] != '\\' || p[1] != 'u')
					return NULL;
				lo = hex4(p + 2, end);
				if (lo < 0 || (lo & 0xFC00) != 0xDC00)
					return NULL;
				p += 6;
			}
			break;
		}
		default:
			return NULL;
		}
	}
}

/* s->p at the opening quote; leaves it past the closing one */
static int string(scan *s)
{
	const char *p = s->p + 1, *end = s->end;

	/* (the first byte first: most strings do not begin with it) */
	if (s->o->marker && p < end && *p == *s->o->marker && (size_t)(end - p) >= s->o->marker_len &&
	    memcmp(p, s->o->marker, s->o->marker_len) == 0)
		s->out->marked = 1;
	p = mg_jstr_end(s->p, end, &s->esc);
	if (!p)
		return -1;
	s->p = p;
	return 0;
}

static int digits(const char **pp, const char *end)
{
	const char *p = *pp;

	if (p >= end || *p < '0' || *p > '9')
		return -1;
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	*pp = p;
	return 0;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
const char *mg_jnum_end(const char *p, const char *end)
{
	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0')
		p++;
	else if (digits(&p, end))
		return NULL;
	if (p < end && *p == '.') {
		p++;
		if (digits(&p, end))
			return NULL;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (digits(&p, end))
			return NULL;
	}
	return p;
}

static int number(scan *s)
{
	const char *p = mg_jnum_end(s->p, s->end);

	if (!p)
		return -1;
	s->p = p;
	return 0;
}

static int literal(scan *s, const char *word, size_t n)
{
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return -1;
	s->p += n;
	return 0;
}

int mg_jscan(const char *text, size_t len, const mg_jscan_opts *opts, mg_jscan_out *out)
{
	scan s = { text, text + len, opts, out, 0 };
	char stack[1024]; /* 'o' or 'a' per open container */
	int depth = 0, max = opts->max_depth > 0 && opts->max_depth < 1024 ? opts->max_depth : 1023;
	mg_jfield *f = NULL; /* the top-level field whose value is being read */

	out->n = 0;
	out->marked = 0;
	s.p = ws(s.p, s.end);
	if (s.p >= s.end || *s.p != '{') {
		out->error_at = (size_t)(s.p - text);
		return MG_JSCAN_NOT_OBJECT;
	}
	goto value;

key:
	s.p = ws(s.p, s.end);
	if (s.p >= s.end || *s.p != '"')
		goto bad;
	{
		const char *k = s.p;
		if (string(&s))
			goto bad;
		if (depth == 1) {
			if (out->n == out->cap) {
				out->error_at = (size_t)(k - text);
				return MG_JSCAN_TOO_MANY;
			}
			f = &out->fields[out->n++];
			f->key_at = k + 1;
			f->key_len = (size_t)(s.p - k - 2);
			f->key_esc = s.esc;
			f->count = 0;
			f->esc = 0;
		} else if (depth == 2) {
			out->fields[out->n - 1].count++;
		}
	}
	s.p = ws(s.p, s.end);
	if (s.p >= s.end || *s.p != ':')
		goto bad;
	s.p++;

value:
	s.p = ws(s.p, s.end);
	if (s.p >= s.end)
		goto bad;
	if (depth == 1)
		f->from = (size_t)(s.p - text);
	else if (depth == 2 && stack[1] == 'a')
		out->fields[out->n - 1].count++;
	switch (*s.p) {
	case '{':
	case '[':
		if (depth >= max)
			goto bad;
		stack[depth++] = *s.p == '{' ? 'o' : 'a';
		if (depth == 2)
			f->type = stack[1] == 'o' ? MG_JOBJ : MG_JARR;
		s.p = ws(s.p + 1, s.end);
		if (s.p < s.end && *s.p == (stack[depth - 1] == 'o' ? '}' : ']')) {
			s.p++;
			depth--;
			goto after;
		}
		if (stack[depth - 1] == 'o')
			goto key;
		goto value;
	case '"':
		if (string(&s))
			goto bad;
		if (depth == 1) {
			f->type = MG_JSTR;
			f->esc = s.esc;
		}
		break;
	case 't':
		if (literal(&s, "true", 4))
			goto bad;
		if (depth == 1)
			f->type = MG_JTRUE;
		break;
	case 'f':
		if (literal(&s, "false", 5))
			goto bad;
		if (depth == 1)
			f->type = MG_JFALSE;
		break;
	case 'n':
		if (literal(&s, "null", 4))
			goto bad;
		if (depth == 1)
			f->type = MG_JNULL;
		break;
	default:
		if (*s.p != '-' && (*s.p < '0' || *s.p > '9'))
			goto bad;
		if (number(&s))
			goto bad;
		if (depth == 1)
			f->type = MG_JNUM;
		break;
	}

after:
	/* a value just ended, at this depth */
	if (depth == 1)
		f->to = (size_t)(s.p - text);
	if (depth == 0) {
		s.p = ws(s.p, s.end);
		if (s.p != s.end)
			goto bad;
		return MG_JSCAN_OK;
	}
	s.p = ws(s.p, s.end);
	if (s.p >= s.end)
		goto bad;
	if (*s.p == ',') {
		s.p++;
		if (stack[depth - 1] == 'o')
			goto key;
		goto value;
	}
	if (*s.p != (stack[depth - 1] == 'o' ? '}' : ']'))
		goto bad;
	s.p++;
	depth--;
	goto after;

bad:
	out->error_at = (size_t)(s.p - text);
	return MG_JSCAN_SYNTAX;
}

/* Skipping over an already checked text: each returns the position past
 * what it skipped, never past end. */
static const char *skip_string(const char *p, const char *end)
{
	for (p++; p < end;) {
		p = plain_run(p, end);
		if (p >= end || *p == '"')
			return p < end ? p + 1 : end;
		p += *p == '\\' ? 2 : 1; /* (a \u's hex digits are plain bytes) */
	}
	return end;
}

static const char *skip_value(const char *p, const char *end)
{
	int depth = 0;

	if (p < end && *p == '"')
		return skip_string(p, end);
	while (p < end) {
		switch (*p) {
		case '"':
			p = skip_string(p, end);
			continue;
		case '{':
		case '[':
			depth++;
			break;
		case '}':
		case ']':
			if (--depth <= 0)
				return depth < 0 ? p : p + 1; /* (a scalar ends at its container's close) */
			break;
		case ',':
		case ' ':
		case '\t':
		case '\n':
		case '\r':
			if (depth == 0)
				return p;
			break;
		}
		p++;
	}
	return end;
}

const char *mg_jws(const char *p, const char *end)
{
	return ws(p, end);
}

const char *mg_jskip(const char *p, const char *end)
{
	return skip_value(p, end);
}

static size_t utf8(unsigned c, char *d)
{
	if (c < 0x80) {
		d[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		d[0] = (char)(0xC0 | c >> 6);
		d[1] = (char)(0x80 | (c & 0x3F));
		return 2;
	}
	if (c < 0x10000) {
		d[0] = (char)(0xE0 | c >> 12);
		d[1] = (char)(0x80 | (c >> 6 & 0x3F));
		d[2] = (char)(0x80 | (c & 0x3F));
		return 3;
	}
	d[0] = (char)(0xF0 | c >> 18);
	d[1] = (char)(0x80 | (c >> 12 & 0x3F));
	d[2] = (char)(0x80 | (c >> 6 & 0x3F));
	d[3] = (char)(0x80 | (c & 0x3F));
	return 4;
}

size_t mg_junescape(const char *s, size_t len, char *dst)
{
	const char *p = s, *end = s + len;
	char *d = dst;

	while (p < end) {
		if (*p != '\\') {
			*d++ = *p++;
			continue;
		}
		switch (p[1]) {
		case 'b': *d++ = '\b'; p += 2; break;
		case 'f': *d++ = '\f'; p += 2; break;
		case 'n': *d++ = '\n'; p += 2; break;
		case 'r': *d++ = '\r'; p += 2; break;
		case 't': *d++ = '\t'; p += 2; break;
		case 'u': {
			unsigned c = (unsigned)hex4(p + 2, end);
			p += 6;
			if ((c & 0xFC00) == 0xD800) {
				unsigned lo = (unsigned)hex4(p + 2, end);
				c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
				p += 6;
			}
			d += utf8(c, d);
			break;
		}
		default: /* " \ / */
			*d++ = p[1];
			p += 2;
		}
	}
	return (size_t)(d - dst);
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/* The length of the well-formed sequence at s[0 .. n), or 0 with *seen set
 * to the bytes of its longest well-formed start (at least 1): Unicode's
 * "maximal subpart", so that one bad sequence is one U+FFFD. */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *seen)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t want, i;

	*seen = 1;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		want = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		want = 3;
		if (c == 0xe0)
			lo = 0xa0; /* no overlong */
		else if (c == 0xed)
			hi = 0x9f; /* no surrogate */
	} else if (c >= 0xf0 && c <= 0xf4) {
		want = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f; /* nothing past U+10FFFF */
	} else
		return 0;
	for (i = 1; i < want; i++) {
		if (i >= n || s[i] < lo || s[i] > hi)
			return 0;
		lo = 0x80, hi = 0xbf;
		*seen = i + 1;
	}
	return want;
}

int mg_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, seen;

	while (i < len) {
		size_t n;
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if (!(n = utf8_seq(p + i, len - i, &seen)))
			return 0;
		i += n;
	}
	return 1;
}

size_t mg_utf8_fix(const char *s, size_t len, char *out)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0, seen;

	while (i < len) {
		size_t n = utf8_seq(p + i, len - i, &seen);
		if (n) {
			memcpy(out + o, s + i, n);
			o += n;
			i += n;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i += seen;
		}
	}
	return o;
}
