/* The access log line: see access.h. */
#include "access.h"
#include "log.h"

#include <string.h>

#define LINE 3072 /* holds the longest line: every value is cut before */
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

/* ` key=` and v in decimal; with tenths, v / 10 "." v % 10 */
static void put_num(line_t *l, const char *key, unsigned long long v, int tenths)
{
	char d[24];
	size_t i = sizeof d;

	put(l, key, strlen(key));
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

void mg_access_log(const mg_access *a)
{
	char buf[LINE];
	line_t l = { buf, 0, sizeof buf };

	if (mg_log_get_level() < MG_LOG_INFO)
		return;
	put(&l, "access method=", 14);
	put(&l, a->method, strlen(a->method));
	put_quoted(&l, "path", a->path ? a->path : "", a->path ? a->path_len : 0, MAX_PATH_SHOWN);
	put_num(&l, " status=", (unsigned long long)(a->status > 0 ? a->status : 0), 0);
	put_num(&l, " ms=", a->ms > 0 ? (unsigned long long)(a->ms * 10 + 0.5) : 0, 1);
	put_num(&l, " bytes=", a->bytes, 0);
	if (a->key)
		put_quoted(&l, "key", a->key, a->key_len, a->key_len);
	if (a->model)
		put_quoted(&l, "model", a->model, a->model_len, a->model_len);
	if (a->provider)
		put_quoted(&l, "provider", a->provider, a->provider_len, a->provider_len);
	if (a->reason)
		put_quoted(&l, "reason", a->reason, a->reason_len, a->reason_len);
	mg_log_line(MG_LOG_INFO, buf, l.len);
}
