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
	MG_DECODE_RATIO,       /* ... or MG_DECODE_MAX_RATIO times what was sent, plus slack */
	MG_DECODE_CORRUPT,     /* not valid data in its encoding, or cut short */
	MG_DECODE_UNSUPPORTED, /* an encoding other than gzip, deflate, zstd, identity */
	MG_DECODE_TOO_MANY,    /* more than MG_DECODE_MAX_CODINGS codings to undo */
	MG_DECODE_NOMEM,
};

#define MG_DECODE_MAX_CODINGS 4
/* A body may decode to at most MG_DECODE_MAX_RATIO times its encoded size
 * plus MG_DECODE_SLACK (and never past `max`): real JSON compresses 5 to
 * 50 times, a bomb thousands of times, and each decoded byte costs the
 * event loop time. Any body that decodes to 1 MiB or less passes. */
#define MG_DECODE_MAX_RATIO 200
#define MG_DECODE_SLACK ((size_t)1 << 20)

/* The codings a request's Content-Encoding lists, in the order applied. */
typedef struct mg_codings {
	int c[MG_DECODE_MAX_CODINGS];
	int n;
} mg_codings;

/* Adds the codings of one Content-Encoding header value (a list such as
 * "gzip" or "deflate, zstd"; "identity" is skipped, x-gzip is gzip) to *cs:
 * call it once per header line, in order. Returns MG_DECODE_OK,
 * MG_DECODE_UNSUPPORTED (*bad / *badlen name the coding refused: it
 * points into enc) or MG_DECODE_TOO_MANY. Does no work on the body. */
int mg_decode_codings(mg_codings *cs, const char *enc, size_t enclen, const char **bad, size_t *badlen);

/* Undoes the codings of cs on `in` (n bytes), the last applied first. On
 * MG_DECODE_OK, *out holds the decoded body (possibly empty) when cs has
 * any coding (else *out is left empty: the body is `in` as it was).
 * Decoding stops as soon as the output passes `max` bytes or the ratio
 * cap (MG_DECODE_TOO_LARGE, MG_DECODE_RATIO): a small bomb never inflates
 * whole, and costs at most about a megabyte of work. */
int mg_decode_body(const mg_codings *cs, const char *in, size_t n, size_t max, mg_buf *out);

#endif
