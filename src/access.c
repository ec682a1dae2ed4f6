/* The access log line in both formats, and request ids: see access.h. */
#include "access.h"
#include "log.h"

#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define LINE 8192 /* holds the longest line, JSON's escapes too: every value is cut before */
#define MAX_PATH_SHOWN 300 /* a longer path is cut, with "..." */

typedef struct {
	char *p;
	size_t len, cap;
} line_t;

static void put(line_t *l, const char *s, size_t n)
{
	if (n > l->cap - l->len)
		n = l->cap - l->len;
	memcpy(l->p + l->len, s, n);
	l->len += n;
}

static int plain(unsigned char c)
{
	return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

/* ` key="value"` with value escaped, cut to `max` input bytes: runs of
 * plain bytes are copied at once */
static void put_quoted(line_t *l, const char *key, const char *s, size_t n, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	int cut = n > max;
	size_t i = 0;

	put(l, " ", 1);
	put(l, key, strlen(key));
	put(l, "=\"", 2);
	if (cut)
		n = max;
	while (i < n && l->len + 8 < l->cap) {
		size_t j = i;
		unsigned char c;
		while (j < n && plain((unsigned char)s[j]))
			j++;
		put(l, s + i, j - i);
		if (j == n || l->len + 8 >= l->cap)
			break;
		c = (unsigned char)s[j];
		l->p[l->len++] = '\\';
		if (c == '"' || c == '\\') {
			l->p[l->len++] = (char)c;
		} else {
			l->p[l->len++] = 'x';
			l->p[l->len++] = hex[c >> 4];
			l->p[l->len++] = hex[c & 15];
		}
		i = j + 1;
	}
	if (cut)
		put(l, "...", 3);
	put(l, "\"", 1);
}

/* v in decimal; with tenths, v / 10 "." v % 10 */
static void put_digits(line_t *l, unsigned long long v, int tenths)
{
	char d[24];
	size_t i = sizeof d;

	if (tenths) {
		d[--i] = (char)('0' + v % 10);
		d[--i] = '.';
		v /= 10;
	}
	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(l, d + i, sizeof d - i);
}

/* ` key=` and a number */
static void put_num(line_t *l, const char *key, unsigned long long v, int tenths)
{
	put(l, " ", 1);
	put(l, key, strlen(key));
	put(l, "=", 1);
	put_digits(l, v, tenths);
}

/* `,"key":"value"` with value a JSON string of at most max input bytes
 * (a longer one ends in "...") */
static void put_jstr(line_t *l, const char *key, const char *s, size_t n, size_t max)
{
	int cut = n > max;

	put(l, ",\"", 2);
	put(l, key, strlen(key));
	put(l, "\":", 2);
	if (l->cap - l->len < 8)
		return; /* never: LINE holds every value */
	mg_log_json_str(l->p, &l->len, l->cap - 4, s, cut ? max : n);
	if (cut) {
		l->len--; /* its closing quote */
		put(l, "...\"", 4);
	}
}

/* `,"key":` and a number */
static void put_jnum(line_t *l, const char *key, unsigned long long v, int tenths)
{
	put(l, ",\"", 2);
	put(l, key, strlen(key));
	put(l, "\":", 2);
	put_digits(l, v, tenths);
}

/* A line's format: how it writes a string field and a number field. */
typedef struct {
	void (*str)(line_t *l, const char *key, const char *s, size_t n, size_t max);
	void (*num)(line_t *l, const char *key, unsigned long long v, int tenths);
} format_t;

static const format_t text_format = { put_quoted, put_num };
static const format_t json_format = { put_jstr, put_jnum };

/* Every field after the method, in either format; ms in tenths, a time
 * only when known (>= 0). */
static void fields(line_t *l, const mg_access *a, const format_t *f)
{
	f->str(l, "path", a->path ? a->path : "", a->path ? a->path_len : 0, MAX_PATH_SHOWN);
	f->num(l, "status", (unsigned long long)(a->status > 0 ? a->status : 0), 0);
	f->num(l, "ms", a->ms > 0 ? (unsigned long long)(a->ms * 10 + 0.5) : 0, 1);
	f->num(l, "bytes", a->bytes, 0);
	if (a->key)
		f->str(l, "key", a->key, a->key_len, a->key_len);
	if (a->model)
		f->str(l, "model", a->model, a->model_len, a->model_len);
	if (a->provider)
		f->str(l, "provider", a->provider, a->provider_len, a->provider_len);
	if (a->tokens_in >= 0)
		f->num(l, "tokens_in", (unsigned long long)a->tokens_in, 0);
	if (a->tokens_out >= 0)
		f->num(l, "tokens_out", (unsigned long long)a->tokens_out, 0);
	if (a->upstream_ms >= 0)
		f->num(l, "upstream_ms", (unsigned long long)(a->upstream_ms * 10 + 0.5), 1);
	if (a->ttfb_ms >= 0)
		f->num(l, "ttfb_ms", (unsigned long long)(a->ttfb_ms * 10 + 0.5), 1);
	if (a->request_id)
		f->str(l, "request_id", a->request_id, a->request_id_len, a->request_id_len);
	if (a->reason)
		f->str(l, "reason", a->reason, a->reason_len, a->reason_len);
}

void mg_access_log(const mg_access *a)
{
	char buf[LINE];
	line_t l = { buf, 0, sizeof buf };

	if (mg_log_get_level() < MG_LOG_INFO)
		return;
	if (mg_log_get_format() == MG_LOG_JSON) {
		put(&l, "\"msg\":\"access\"", 14);
		put_jstr(&l, "method", a->method, strlen(a->method), 16);
		fields(&l, a, &json_format);
	} else {
		put(&l, "access method=", 14);
		put(&l, a->method, strlen(a->method));
		fields(&l, a, &text_format);
	}
	mg_log_record(MG_LOG_INFO, buf, l.len);
}

/* ---- request ids ------------------------------------------------------- */

/* the calling thread's generator (splitmix64): seeded once, then a few
 * multiplications an id; unpredictable enough for ids, not a key */
static _Thread_local struct {
	int seeded;
	uint64_t s;
} rng;

static uint64_t next64(void)
{
	uint64_t z;

	if (!rng.seeded) {
		if (getrandom(&rng.s, sizeof rng.s, GRND_NONBLOCK) != (ssize_t)sizeof rng.s) {
			struct timespec ts; /* no entropy yet (early boot): the clock and the thread */
			clock_gettime(CLOCK_MONOTONIC, &ts);
			rng.s = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)&rng ^
				(uint64_t)ts.tv_sec;
		}
		rng.seeded = 1;
	}
	z = (rng.s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

size_t mg_access_request_id(const char *client, size_t n, char *out)
{
	static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	size_t i, o;

	if (client && n && n <= MG_REQUEST_ID_MAX) {
		for (i = 0; i < n && client[i] > 0x20 && client[i] < 0x7f; i++)
			;
		if (i == n) {
			memcpy(out, client, n);
			return n;
		}
	}
	memcpy(out, "req_", 4);
	o = 4;
	for (int d = 0; d < 3; d++) { /* 8 characters from each 64 bits (62^8 < 2^48) */
		uint64_t v = next64();
		for (int k = 0; k < 8; k++) {
			out[o++] = b62[v % 62];
			v /= 62;
		}
	}
	return o;
}
