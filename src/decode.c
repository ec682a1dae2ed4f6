/* Content-Encoding of request bodies: gzip and deflate through zlib, zstd
 * through libzstd. See decode.h; every buffer belongs to the caller. */
#include "decode.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

enum { C_GZIP = 1, C_DEFLATE, C_ZSTD };
#define PAST_LIMIT (-1) /* inner result: the output passed the limit it was given */
#define FEED (1u << 20) /* input handed to zlib at a time (its counts are 32-bit) */
#define ZSTD_WINDOW_CAP 27 /* libzstd's own default limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT) */

/* Room to write into *out: at most up to max + 1 bytes in all (one byte
 * past the limit is how passing it shows). Grows the buffer geometrically;
 * returns the room, 0 when out of memory. */
static size_t room(mg_buf *out, size_t max, size_t hint)
{
	size_t limit = max + 1, cap;
	char *p;

	if (out->cap > out->len)
		return (out->cap < limit ? out->cap : limit) - out->len;
	cap = out->cap ? out->cap * 2 : (hint > 16384 ? hint : 16384);
	if (cap > limit)
		cap = limit;
	if (cap <= out->len)
		return 0;
	p = realloc(out->data, cap);
	if (!p)
		return 0;
	out->data = p;
	out->cap = cap;
	return cap - out->len;
}

/* zlib's own header (RFC 1950) in front of the deflate data, as HTTP's
 * "deflate" means; some clients send raw deflate (RFC 1951) instead. */
static int zlib_wrapped(const unsigned char *p, size_t n)
{
	return n >= 2 && (p[0] & 0x0f) == 8 && (p[0] >> 4) <= 7 && ((p[0] << 8) | p[1]) % 31 == 0;
}

static int inflate_body(int gzip, const char *in, size_t n, size_t max, mg_buf *out)
{
	z_stream z;
	size_t off = 0, r;
	int rc, res = MG_DECODE_CORRUPT;

	memset(&z, 0, sizeof z);
	if (inflateInit2(&z, gzip ? 15 + 16 : zlib_wrapped((const unsigned char *)in, n) ? 15 : -15) != Z_OK)
		return MG_DECODE_NOMEM;
	for (;;) {
		if (!z.avail_in && off < n) {
			size_t k = n - off > FEED ? FEED : n - off;
			z.next_in = (Bytef *)(in + off);
			z.avail_in = (uInt)k;
			off += k;
		}
		r = room(out, max, n * 4);
		if (!r) {
			res = out->len > max ? PAST_LIMIT : MG_DECODE_NOMEM;
			break;
		}
		if (r > UINT_MAX)
			r = UINT_MAX;
		z.next_out = (Bytef *)(out->data + out->len);
		z.avail_out = (uInt)r;
		rc = inflate(&z, Z_NO_FLUSH);
		out->len += r - z.avail_out;
		if (out->len > max) {
			res = PAST_LIMIT;
			break;
		}
		if (rc == Z_STREAM_END) {
			if (!z.avail_in && off == n) {
				res = MG_DECODE_OK;
				break;
			}
			if (!gzip || inflateReset(&z) != Z_OK)
				break; /* bytes after the end of the data */
			continue;  /* gzip: the next member */
		}
		if (rc == Z_OK || (rc == Z_BUF_ERROR && !z.avail_out))
			continue;
		/* Z_BUF_ERROR with room left: the input ended mid-stream */
		if (rc == Z_MEM_ERROR)
			res = MG_DECODE_NOMEM;
		break;
	}
	inflateEnd(&z);
	return res;
}

/* zstd's window, which the decoder allocates whole when the frame does not
 * say its size (a stream): enough for what compressors use up to level 19
 * (8 MiB) or for the body limit, whichever is more, up to libzstd's default
 * cap. A frame asking more is refused (413), rather than allocated. */
static int window_log(size_t max)
{
	int w = 23;

	while (w < ZSTD_WINDOW_CAP && ((size_t)1 << w) < max)
		w++;
	return w;
}

/* max: where to stop; body_max: the body limit, which sizes the window */
static int zstd_body(const char *in, size_t n, size_t max, size_t body_max, mg_buf *out)
{
	ZSTD_DCtx *d = ZSTD_createDCtx();
	ZSTD_inBuffer ib = { in, n, 0 };
	int res = MG_DECODE_CORRUPT;

	if (!d)
		return MG_DECODE_NOMEM;
	ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, window_log(body_max));
	for (;;) {
		size_t r = room(out, max, n * 4), ret;
		ZSTD_outBuffer ob;

		if (!r) {
			res = out->len > max ? PAST_LIMIT : MG_DECODE_NOMEM;
			break;
		}
		ob.dst = out->data + out->len;
		ob.size = r;
		ob.pos = 0;
		ret = ZSTD_decompressStream(d, &ob, &ib);
		out->len += ob.pos;
		if (ZSTD_isError(ret)) {
			ZSTD_ErrorCode e = ZSTD_getErrorCode(ret);
			res = e == ZSTD_error_memory_allocation ? MG_DECODE_NOMEM :
			      e == ZSTD_error_frameParameter_windowTooLarge ? MG_DECODE_TOO_LARGE :
			      MG_DECODE_CORRUPT;
			break;
		}
		if (out->len > max) {
			res = PAST_LIMIT;
			break;
		}
		if (ib.pos == ib.size && (ret == 0 || ob.pos < ob.size)) {
			/* all input taken: whole frames, or one cut short */
			res = ret == 0 ? MG_DECODE_OK : MG_DECODE_CORRUPT;
			break;
		}
	}
	ZSTD_freeDCtx(d);
	return res;
}

/* The coding a token names: 0 for identity, -1 for one not served. */
static int coding(const char *p, size_t n)
{
	if (n == 8 && !strncasecmp(p, "identity", 8))
		return 0;
	if ((n == 4 && !strncasecmp(p, "gzip", 4)) || (n == 6 && !strncasecmp(p, "x-gzip", 6)))
		return C_GZIP;
	if (n == 7 && !strncasecmp(p, "deflate", 7))
		return C_DEFLATE;
	if (n == 4 && !strncasecmp(p, "zstd", 4))
		return C_ZSTD;
	return -1;
}

int mg_decode_codings(mg_codings *cs, const char *enc, size_t enclen, const char **bad, size_t *badlen)
{
	size_t i = 0;

	/* every coding is checked before any work: an unknown one is a 415 */
	while (i < enclen) {
		size_t start, end;
		int c;

		while (i < enclen && (enc[i] == ' ' || enc[i] == '\t' || enc[i] == ','))
			i++;
		start = i;
		while (i < enclen && enc[i] != ',')
			i++;
		end = i;
		while (end > start && (enc[end - 1] == ' ' || enc[end - 1] == '\t'))
			end--;
		if (end == start)
			continue;
		c = coding(enc + start, end - start);
		if (c < 0) {
			*bad = enc + start;
			*badlen = end - start;
			return MG_DECODE_UNSUPPORTED;
		}
		if (!c)
			continue; /* identity */
		if (cs->n == MG_DECODE_MAX_CODINGS)
			return MG_DECODE_TOO_MANY;
		cs->c[cs->n++] = c;
	}
	return MG_DECODE_OK;
}

int mg_decode_body(const mg_codings *cs, const char *in, size_t n, size_t max, mg_buf *out)
{
	size_t limit = max;
	int res = MG_DECODE_OK;
	mg_buf cur = { 0 };

	/* the ratio cap, checked as the output grows (each stage's) */
	if (max > MG_DECODE_SLACK && n <= (max - MG_DECODE_SLACK) / MG_DECODE_MAX_RATIO)
		limit = n * MG_DECODE_MAX_RATIO + MG_DECODE_SLACK;
	/* undone in the reverse of the order they were applied */
	for (int k = cs->n - 1; k >= 0 && res == MG_DECODE_OK; k--) {
		mg_buf next = { 0 };
		const char *src = k == cs->n - 1 ? in : cur.data;
		size_t srclen = k == cs->n - 1 ? n : cur.len;

		if (cs->c[k] == C_ZSTD)
			res = zstd_body(src, srclen, limit, max, &next);
		else
			res = inflate_body(cs->c[k] == C_GZIP, src, srclen, limit, &next);
		mg_buf_free(&cur);
		cur = next;
	}
	if (res == PAST_LIMIT)
		res = limit < max ? MG_DECODE_RATIO : MG_DECODE_TOO_LARGE;
	if (res != MG_DECODE_OK) {
		mg_buf_free(&cur);
		return res;
	}
	*out = cur;
	return MG_DECODE_OK;
}
