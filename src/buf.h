/* Growable byte buffer.
 *
 * Ownership: an mg_buf owns `data`; mg_buf_free() releases it and leaves an
 * empty buffer that may be reused. No function here takes ownership of the
 * bytes it is given: they are copied. */
#ifndef MG_BUF_H
#define MG_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct mg_buf {
	char *data;
	size_t len;
	size_t cap;
} mg_buf;

/* Make room for `extra` more bytes. Returns 0, or -1 when out of memory. */
int mg_buf_reserve(mg_buf *b, size_t extra);
/* Append `n` bytes. Returns 0, or -1 when out of memory (b unchanged).
 * Inline: a stream's frame is a dozen small appends. */
static inline int mg_buf_append(mg_buf *b, const void *p, size_t n)
{
	if (b->cap - b->len < n && mg_buf_reserve(b, n))
		return -1;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}
int mg_buf_appendf(mg_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends the pieces, each a NUL-terminated string, ending with NULL: the
 * hot paths' header lines without printf. 0, or -1 (b unchanged). */
int mg_buf_cat(mg_buf *b, ...) __attribute__((sentinel));
/* v in decimal into out (room for 21 bytes, NUL written): its length */
size_t mg_fmt_u(char *out, unsigned long long v);
void mg_buf_free(mg_buf *b);
/* Empties b; an allocation over `keep` bytes is given back, so that one
 * large frame does not stay allocated for the rest of a stream. */
void mg_buf_empty(mg_buf *b, size_t keep);
/* Appends a header as "name\0value\0", the name lower-cased. 0 or -1. */
int mg_buf_append_pair(mg_buf *b, const char *name, size_t nlen,
		       const char *value, size_t vlen);
/* The value of the first pair named `name` (lower-case), or NULL. */
const char *mg_buf_pair(const mg_buf *b, const char *name);

#endif
