/* The access log line: see access.h. */
#include "access.h"
#include "log.h"

#include <stdio.h>
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

/* ` key="value"` with value escaped, cut to `max` input bytes */
static void put_quoted(line_t *l, const char *key, const char *s, size_t n, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	int cut = n > max;

	put(l, " ", 1);
	put(l, key, strlen(key));
	put(l, "=\"", 2);
	if (cut)
		n = max;
	for (size_t i = 0; i < n && l->len + 8 < l->cap; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			l->p[l->len++] = '\\';
			l->p[l->len++] = (char)c;
		} else if (c >= 0x20 && c < 0x7f) {
			l->p[l->len++] = (char)c;
		} else {
			l->p[l->len++] = '\\';
			l->p[l->len++] = 'x';
			l->p[l->len++] = hex[c >> 4];
			l->p[l->len++] = hex[c & 15];
		}
	}
	if (cut)
		put(l, "...", 3);
	put(l, "\"", 1);
}

void mg_access_log(const mg_access *a)
{
	char buf[LINE], num[96];
	line_t l = { buf, 0, sizeof buf };
	int n;

	if (mg_log_get_level() < MG_LOG_INFO)
		return;
	put(&l, "access method=", 14);
	put(&l, a->method, strlen(a->method));
	put_quoted(&l, "path", a->path ? a->path : "", a->path ? a->path_len : 0, MAX_PATH_SHOWN);
	n = snprintf(num, sizeof num, " status=%d ms=%.1f bytes=%llu", a->status, a->ms, a->bytes);
	if (n > 0)
		put(&l, num, (size_t)n < sizeof num ? (size_t)n : sizeof num - 1);
	if (a->model)
		put_quoted(&l, "model", a->model, a->model_len, a->model_len);
	if (a->provider)
		put_quoted(&l, "provider", a->provider, a->provider_len, a->provider_len);
	if (a->reason)
		put_quoted(&l, "reason", a->reason, a->reason_len, a->reason_len);
	mg_log_line(MG_LOG_INFO, buf, l.len);
}
