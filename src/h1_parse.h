/* The HTTP/1.1 request parse, without I/O (see h1_parse.c): h1.c feeds it
 * what it reads, fuzz/h1.c what a fuzzer makes. */
#ifndef MG_H1_PARSE_H
#define MG_H1_PARSE_H

#include <http_parser.h>
#include <stddef.h>
#include "http.h"

typedef struct mg_h1_parse {
	http_parser parser;    /* its .data is this */
	size_t max_header_bytes, max_body_bytes;
	/* the transport's: a request begins; its mg_req, or NULL (out of memory) */
	mg_req *(*begin)(struct mg_h1_parse *p);
	void *ud;              /* the transport's */
	int draining;          /* set by the transport: an Upgrade now is answered 503 */
	mg_req *req;           /* being parsed, or paused on (the transport's to free) */
	mg_buf field, value;   /* the header being parsed */
	int last_was_value;
	size_t head_bytes;     /* of the head (or trailer section) so far */
	int in_body;           /* the head is in: its body arrives */
	int in_trailers;       /* ... and after the last chunk, its trailers */
	int expect_continue;   /* the head has Expect: 100-continue */
	int send_continue;     /* ... and a body comes: the transport sends the
				* interim answer and clears this */
	int ws_upgrade;        /* a WebSocket Upgrade to hand over: paused, the
				* bytes after the head start where execute stopped */
	int yield, bad_token;  /* (internal) */
} mg_h1_parse;

/* Process-wide, once: the parser's settings and its own header limit. */
void mg_h1_parse_setup(size_t max_header_bytes);
void mg_h1_parse_init(mg_h1_parse *p, size_t max_header_bytes, size_t max_body_bytes,
		      mg_req *(*begin)(mg_h1_parse *p), void *ud);
void mg_h1_parse_free(mg_h1_parse *p);

/* Parses what it can of data[0..len): returns how many bytes were taken.
 * Then HTTP_PARSER_ERRNO(&p->parser) says: HPE_OK, all taken, more wanted;
 * HPE_PAUSED with p->req: a request to serve (whole, or refused early with
 * r->body_error; or p->ws_upgrade), the parser waits for
 * mg_h1_parse_next; any other: the bytes are refused (mg_h1_parse_refusal).
 * The outcome does not depend on how the bytes were cut into calls: a head
 * (or trailer section) of more than max_header_bytes is HPE_HEADER_OVERFLOW
 * at the same byte however it arrives. */
size_t mg_h1_parse_execute(mg_h1_parse *p, const char *data, size_t len);
/* The request paused on is served: parse the next one. */
void mg_h1_parse_next(mg_h1_parse *p);
/* The status a parse error is answered with: 431 or 400. */
int mg_h1_parse_refusal(enum http_errno err);
/* r->method from the parser's (once the request line's URL has begun). */
void mg_h1_parse_method(mg_req *r, const http_parser *hp);
/* A WebSocket upgrade to a path that serves one: /ws and /ws/{client_id}. */
int mg_h1_wants_websocket(const mg_req *r);

#endif
