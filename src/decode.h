/* Request bodies sent with Content-Encoding: gzip, deflate or zstd, decoded
 * before Lua sees them (zlib and libzstd).
 *
 * Ownership: the caller owns every buffer; mg_decode_body() writes into an
 * mg_buf the caller passed in (empty) and frees it again on failure. Nothing
 * here keeps state between calls, so any thread may call it. Pure: no Lua,
 * no logging. */
#ifndef MG_DECODE_H
#define MG_DECODE_H

#include <stddef.h>
#include "buf.h"

enum {
	MG_DECODE_OK = 0,
	MG_DECODE_TOO_LARGE,   /* the decoded body would pass `max` bytes */
	MG_DECODE_CORRUPT,     /* not valid data in its encoding, or cut short */
	MG_DECODE_UNSUPPORTED, /* an encoding other than gzip, deflate, zstd, identity */
	MG_DECODE_NOMEM,
};

/* Decodes `in` as the Content-Encoding header value `enc` says (a list of
 * codings in the order they were applied, e.g. "gzip" or "deflate, zstd";
 * "identity" and x-gzip are understood). On MG_DECODE_OK, *out holds the
 * decoded body (possibly empty) and *changed is 1 when a coding other than
 * identity was undone (else *out is left empty: the body is `in` as it
 * was). Decoding stops as soon as the output would pass `max` bytes: a
 * small bomb never inflates whole. On MG_DECODE_UNSUPPORTED, *bad / *badlen
 * name the coding refused (it points into enc). */
int mg_decode_body(const char *enc, size_t enclen, const char *in, size_t n, size_t max,
		   mg_buf *out, int *changed, const char **bad, size_t *badlen);

#endif
