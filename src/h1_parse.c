/* The HTTP/1.1 request parse: http-parser's callbacks, which fill the
 * transport's mg_req (its method, path, query, headers and body, or the
 * reason it is refused), and the rules that make the outcome independent of
 * how the bytes arrive. No I/O: h1.c reads and answers, fuzz/h1.c feeds it
 * pieces. Floor 1: calls buf.c only (mg_req is the struct of http.h).
 *
 * What it refuses, besides what http-parser refuses:
 *   - a head (request line and headers) of more than max_header_bytes,
 *     counted in the bytes received; so is a trailer section: 431 (http-
 *     parser's own count would depend on where the reads end, so it is set
 *     far above, and execute stops feeding it at the limit)
 *   - a control byte (NUL, ...) in a header value, which http-parser lets
 *     through as a value's first byte: 400 (the headers are "name\0value\0"
 *     pairs: a NUL in one would shift every pair after it)
 *   - a space in a header name ("Transfer-Encoding : chunked", which
 *     http-parser takes as a header named "transfer-encoding "): 400
 *   - a body over max_body_bytes (declared or received): body_error 413
 *   - a WebSocket Upgrade while the daemon drains: body_error 503
 *   - a head whose last byte is not LF ("\r\n\rX": http-parser takes any
 *     byte there, which would then be lost, or reach lws): 400
 * A chunked body's trailers are read and dropped: they never become
 * headers (they arrive after the head was judged). */
#define _GNU_SOURCE /* strcasestr */
#include "h1_parse.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static http_parser_settings settings;

static mg_h1_parse *parse_of(http_parser *hp)
{
	return hp->data;
}

void mg_h1_parse_method(mg_req *r, const http_parser *hp)
{
	const char *m = http_method_str((enum http_method)hp->method);
	size_t n = strlen(m);

	if (n >= sizeof r->method)
		n = sizeof r->method - 1;
	memcpy(r->method, m, n);
	r->method[n] = 0;
}

static int on_message_begin(http_parser *hp)
{
	mg_h1_parse *p = parse_of(hp);

	p->req = p->begin(p);
	if (!p->req)
		return -1;
	p->last_was_value = 0;
	p->field.len = p->value.len = 0;
	p->expect_continue = p->send_continue = 0;
	p->in_body = p->in_trailers = 0;
	hp->http_major = 0; /* set again once this request line has its version */
	return 0;
}

static int on_url(http_parser *hp, const char *at, size_t n)
{
	mg_h1_parse *p = parse_of(hp);

	/* known once its URL starts: every answer from then on (C's 408 and
	 * 431 too) knows a HEAD gets no body */
	if (!p->req->method[0])
		mg_h1_parse_method(p->req, hp);
	return mg_buf_append(&p->req->path, at, n);
}

static int flush_header(mg_h1_parse *p)
{
	mg_req *r = p->req;
	int rc = 0;

	if (!p->field.len)
		return 0;
	if (p->field.len == 6 && !strncasecmp(p->field.data, "expect", 6) &&
	    p->value.len == 12 && !strncasecmp(p->value.data, "100-continue", 12))
		p->expect_continue = 1;
	if (!r->body_error)
		rc = mg_buf_append_pair(&r->headers, p->field.data, p->field.len,
					p->value.data ? p->value.data : "", p->value.len);
	p->field.len = p->value.len = 0;
	return rc;
}

static int on_header_field(http_parser *hp, const char *at, size_t n)
{
	mg_h1_parse *p = parse_of(hp);

	/* http-parser lets spaces into a name: "Transfer-Encoding : chunked"
	 * would be a header that is not the one a proxy in front reads */
	if (memchr(at, ' ', n) || memchr(at, '\t', n)) {
		p->bad_token = 1;
		return -1;
	}
	if (p->in_body)
		return 0; /* a trailer: dropped */
	if (p->last_was_value && flush_header(p))
		return -1;
	p->last_was_value = 0;
	return mg_buf_append(&p->field, at, n);
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
	mg_h1_parse *p = parse_of(hp);

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)at[i];
		if ((ch < 32 && ch != '\t') || ch == 127) {
			p->bad_token = 1;
			return -1;
		}
	}
	if (p->in_body)
		return 0;
	p->last_was_value = 1;
	return mg_buf_append(&p->value, at, n);
}

static void split_query(mg_req *r)
{
	char *q = r->path.data ? memchr(r->path.data, '?', r->path.len) : NULL;

	if (q) {
		size_t at = (size_t)(q - r->path.data);
		mg_buf_append(&r->query, q + 1, r->path.len - at - 1);
		r->path.len = at;
	}
	mg_buf_append(&r->path, "", 1); /* NUL-terminate */
	r->path.len--;
}

int mg_h1_wants_websocket(const mg_req *r)
{
	size_t i = 0;

	if (r->path.len < 3 || memcmp(r->path.data, "/ws", 3) ||
	    (r->path.len > 3 && r->path.data[3] != '/'))
		return 0;
	while (i < r->headers.len) {
		const char *name = r->headers.data + i;
		const char *value = name + strlen(name) + 1;
		if (!strcmp(name, "upgrade") && strcasestr(value, "websocket"))
			return 1;
		i += strlen(name) + strlen(value) + 2;
	}
	return 0;
}

static int on_headers_complete(http_parser *hp)
{
	mg_h1_parse *p = parse_of(hp);
	mg_req *r = p->req;

	if (p->last_was_value && flush_header(p))
		return -1;
	p->last_was_value = 0;
	p->in_body = 1;
	mg_h1_parse_method(r, hp);
	r->http10 = hp->http_major == 1 && hp->http_minor == 0;
	if (!http_should_keep_alive(hp))
		r->close_after = 1;
	split_query(r);
	if (hp->upgrade) {
		if (!r->body_error && hp->method == HTTP_GET && mg_h1_wants_websocket(r)) {
			if (p->draining) { /* 503, then the connection closes */
				r->body_error = MG_UPGRADE_DRAINING;
				r->close_after = 1;
			} else {
				p->ws_upgrade = 1;
			}
			http_parser_pause(hp, 1);
			return 0;
		}
		/* h2c and other upgrades are not served: answer in HTTP/1.1 */
		r->close_after = 1;
		r->body_error = 0;
	}
	if (!r->body_error && (hp->flags & F_CONTENTLENGTH) && hp->content_length > p->max_body_bytes)
		r->body_error = MG_BODY_TOO_LARGE;
	if (r->body_error) {
		/* answered now, and the connection closes: the rest is not read */
		r->close_after = 1;
		http_parser_pause(hp, 1);
		return 0;
	}
	/* the whole body in one allocation, not a doubling series of copies */
	if ((hp->flags & F_CONTENTLENGTH) && hp->content_length > 0)
		mg_buf_reserve(&r->body, (size_t)hp->content_length);
	if (p->expect_continue && !(hp->flags & F_CHUNKED) && hp->content_length > 0 &&
	    hp->content_length != ULLONG_MAX)
		p->send_continue = 1;
	/* execute goes on from here without the head's limit */
	p->yield = 1;
	http_parser_pause(hp, 1);
	return 0;
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
	mg_h1_parse *p = parse_of(hp);
	mg_req *r = p->req;

	if (r->body.len + n > p->max_body_bytes) {
		r->body_error = MG_BODY_TOO_LARGE;
		r->close_after = 1;
		mg_buf_free(&r->body);
		http_parser_pause(hp, 1);
		return 0;
	}
	return mg_buf_append(&r->body, at, n);
}

static int on_chunk_header(http_parser *hp)
{
	mg_h1_parse *p = parse_of(hp);

	if (hp->content_length == 0) { /* the last chunk: trailers follow, within the head's limit */
		p->in_trailers = 1;
		p->head_bytes = 0;
		p->yield = 1;
		http_parser_pause(hp, 1);
	}
	return 0;
}

static int on_message_complete(http_parser *hp)
{
	/* one request at a time: the parser waits until this one is answered */
	http_parser_pause(hp, 1);
	return 0;
}

void mg_h1_parse_setup(size_t max_header_bytes)
{
	/* execute stops at max_header_bytes: http-parser's own count (which
	 * counts some bytes twice) must never stop it first */
	size_t hp_max = max_header_bytes * 2 + 65536;
	http_parser_set_max_header_size(hp_max > 0xffffffffu ? 0xffffffffu : (uint32_t)hp_max);
	http_parser_settings_init(&settings);
	settings.on_message_begin = on_message_begin;
	settings.on_url = on_url;
	settings.on_header_field = on_header_field;
	settings.on_header_value = on_header_value;
	settings.on_headers_complete = on_headers_complete;
	settings.on_body = on_body;
	settings.on_chunk_header = on_chunk_header;
	settings.on_message_complete = on_message_complete;
}

void mg_h1_parse_init(mg_h1_parse *p, size_t max_header_bytes, size_t max_body_bytes,
		      mg_req *(*begin)(mg_h1_parse *p), void *ud)
{
	memset(p, 0, sizeof *p);
	http_parser_init(&p->parser, HTTP_REQUEST);
	p->parser.data = p;
	p->max_header_bytes = max_header_bytes;
	p->max_body_bytes = max_body_bytes;
	p->begin = begin;
	p->ud = ud;
}

void mg_h1_parse_free(mg_h1_parse *p)
{
	mg_buf_free(&p->field);
	mg_buf_free(&p->value);
}

static int in_head(const mg_h1_parse *p)
{
	return !p->in_body || p->in_trailers;
}

size_t mg_h1_parse_execute(mg_h1_parse *p, const char *data, size_t len)
{
	size_t done = 0;

	while (done < len) {
		size_t chunk = len - done, n;
		int head = in_head(p);
		enum http_errno err;

		if (head) {
			if (p->head_bytes >= p->max_header_bytes) {
				p->parser.http_errno = HPE_HEADER_OVERFLOW;
				return done;
			}
			if (chunk > p->max_header_bytes - p->head_bytes)
				chunk = p->max_header_bytes - p->head_bytes;
		}
		n = http_parser_execute(&p->parser, &settings, data + done, chunk);
		done += n;
		if (head)
			p->head_bytes += n;
		err = HTTP_PARSER_ERRNO(&p->parser);
		if (err == HPE_PAUSED && head && !p->in_trailers && p->in_body) {
			/* paused in on_headers_complete, on the byte http-parser
			 * took for the head's last LF: it takes any byte there
			 * ("\r\n\rX"), which must not start the body, the next
			 * request or the upgraded protocol */
			if (done >= len || data[done] != '\n') {
				p->yield = p->ws_upgrade = 0;
				p->parser.http_errno = HPE_LF_EXPECTED;
				return done;
			}
			if (p->ws_upgrade)
				return done + 1; /* the upgraded protocol starts after it */
		}
		if (err == HPE_PAUSED && p->yield) {
			p->yield = 0;
			http_parser_pause(&p->parser, 0);
			continue;
		}
		if ((err == HPE_CB_header_value || err == HPE_CB_header_field) && p->bad_token) {
			p->parser.http_errno = HPE_INVALID_HEADER_TOKEN;
			return done;
		}
		if (err != HPE_OK)
			return done;
		if (head && in_head(p) && p->head_bytes >= p->max_header_bytes) {
			p->parser.http_errno = HPE_HEADER_OVERFLOW;
			return done;
		}
	}
	return done;
}

void mg_h1_parse_next(mg_h1_parse *p)
{
	p->req = NULL;
	p->head_bytes = 0;
	p->in_body = p->in_trailers = 0;
	http_parser_pause(&p->parser, 0);
}

int mg_h1_parse_refusal(enum http_errno err)
{
	return err == HPE_HEADER_OVERFLOW ? 431 : 400;
}
