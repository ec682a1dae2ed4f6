#include "buf.h"

#include <malloc.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mg_buf_reserve(mg_buf *b, size_t extra)
{
	size_t need = b->len + extra, cap;
	char *p;

	if (need < b->len)
		return -1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p)
		return -1;
	b->data = p;
	b->cap = cap;
	return 0;
}

int mg_buf_cat(mg_buf *b, ...)
{
	va_list ap;
	size_t total = 0, len = b->len;
	const char *s;

	va_start(ap, b);
	while ((s = va_arg(ap, const char *)))
		total += strlen(s);
	va_end(ap);
	if (mg_buf_reserve(b, total))
		return -1;
	va_start(ap, b);
	while ((s = va_arg(ap, const char *))) {
		size_t n = strlen(s);
		memcpy(b->data + len, s, n);
		len += n;
	}
	va_end(ap);
	b->len = len;
	return 0;
}

size_t mg_fmt_u(char *out, unsigned long long v)
{
	char tmp[24];
	size_t n = 0, k = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		out[k++] = tmp[--n];
	out[k] = 0;
	return k;
}

int mg_buf_appendf(mg_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || mg_buf_reserve(b, (size_t)n + 1))
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void mg_buf_free(mg_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* big buffers given back by this thread since its last malloc_trim */
static _Thread_local size_t given_back;

void mg_buf_empty(mg_buf *b, size_t keep)
{
	if (b->cap > keep) {
		if (b->cap >= (1u << 20))
			given_back += b->cap;
		mg_buf_free(b);
		/* glibc keeps freed big blocks in its heaps once its moving mmap
		 * threshold has risen past them: after 32 MiB of them, the pages
		 * go back to the system (a fixed threshold would cost an mmap per
		 * 1 MiB body instead) */
		if (given_back >= (32u << 20)) {
			given_back = 0;
			malloc_trim(0);
		}
	}
	b->len = 0;
}

int mg_buf_append_pair(mg_buf *b, const char *name, size_t nlen,
		       const char *value, size_t vlen)
{
	char *p;

	if (mg_buf_reserve(b, nlen + vlen + 2))
		return -1;
	p = b->data + b->len;
	for (size_t i = 0; i < nlen; i++)
		p[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
	p[nlen] = 0;
	memcpy(p + nlen + 1, value, vlen);
	p[nlen + 1 + vlen] = 0;
	b->len += nlen + vlen + 2;
	return 0;
}

const char *mg_buf_pair(const mg_buf *b, const char *name)
{
	const char *p = b->data, *end = b->data + b->len;

	while (p && p < end) {
		const char *v = p + strlen(p) + 1;
		if (v >= end)
			break;
		if (!strcmp(p, name))
			return v;
		p = v + strlen(v) + 1;
	}
	return NULL;
}
