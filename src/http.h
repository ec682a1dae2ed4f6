/* HTTP requests handed to Lua, and the response writer (SSE / NDJSON /
 * chunked framing with backpressure), independent of the transport.
 *
 * Two transports feed it, both on the worker's loop:
 *   h1.c        cleartext HTTP/1.1 on libuv with http-parser (keep-alive,
 *               pipelining, Expect: 100-continue, chunked request bodies)
 *   http_lws.c  TLS listeners through libwebsockets: HTTP/1.1 and HTTP/2
 *               negotiated by ALPN
 *
 * Life of a request (all on the worker thread that accepted it):
 *   mg_req_new()     by the transport once the request line has arrived
 *   mg_req_header()  each request header, as it is parsed
 *   body bytes       collected in r->body up to max_body_bytes
 *   mg_req_dispatch  the Origin is decided (a refused one: Lua answers 403
 *                    and nothing else is done), a compressed body decoded,
 *                    then Lua's handle(req) runs with a userdata handle
 *                    that points back at the mg_req
 *   _respond / _stream_*  bytes queued in r->out, transport told to write
 *   mg_req_free()    by the transport when the response is out or the
 *                    client is gone: the Lua handle is detached (its pointer
 *                    set to NULL, so later calls from Lua answer nil,
 *                    "closed"), Lua refs dropped, the access log line
 *                    written (access.h), memory freed.
 *
 * Backpressure: r->out holds what the client has not taken yet. A write that
 * leaves more than high_water bytes queued returns false; the producer then
 * waits for the drain callback, which fires once the queue is below
 * high_water / 2 (mg_req_sent() checks). Nothing else buffers response bytes.
 */
#ifndef MG_HTTP_H
#define MG_HTTP_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "buf.h"
#include "cork.h"

struct mg_ctx;
struct mg_lstate;
struct mg_req;

enum { MG_BODY_OK = 0, MG_BODY_TOO_LARGE, MG_HEADERS_TOO_LARGE,
       /* set by mg_req_dispatch while decoding a Content-Encoding */
       MG_BODY_DECODED_TOO_LARGE, MG_BODY_DECODED_RATIO, MG_BODY_BAD_ENCODING,
       MG_BODY_UNSUPPORTED_ENCODING, MG_BODY_TOO_MANY_CODINGS,
       /* set by a transport: a WebSocket upgrade while the daemon drains
        * (a new session would outlive it): answered 503 */
       MG_UPGRADE_DRAINING };

/* What the access log line says about a request besides what C knows
 * (method, path, status, time, bytes): noted by Lua through _req_note, held
 * inline so that noting allocates nothing, cut at these sizes. */
#define MG_NOTE_MODEL 96
#define MG_NOTE_PROVIDER 48
#define MG_NOTE_KEY 48 /* an inbound key's name (never the key) */
#define MG_NOTE_REASON 200

/* r->cors: the request's Origin, decided once (mg_req_dispatch, or
 * mg_req_fail for an answer C gives before that) by Lua's origin_allowed */
enum { MG_CORS_UNDECIDED = 0, MG_CORS_NONE, MG_CORS_ALLOWED, MG_CORS_REFUSED };

/* What a transport does for the writer. */
typedef struct mg_transport {
	/* Encode the status line and headers: begin, add each, end. */
	int (*hdr_begin)(struct mg_req *r, int status);
	int (*hdr_add)(struct mg_req *r, const char *name, size_t nlen,
		       const char *value, size_t vlen);
	int (*hdr_end)(struct mg_req *r);
	/* Bytes were queued in r->out (or the response finished): send. */
	void (*want_write)(struct mg_req *r);
	/* Drop the connection at once. */
	void (*abort)(struct mg_req *r);
} mg_transport;

typedef struct mg_req {
	const mg_transport *t;
	void *conn;          /* the transport's connection; NULL once gone */
	struct mg_ctx *ctx;  /* the thread it runs on (ctx.h) */
	struct mg_lstate *ls; /* held (lstate.h): the Lua state current when the
			       * request came; its refs below are in that state */
	struct mg_req **handle; /* the Lua userdata's slot pointing at us */
	int h2;
	char peer[48];       /* the client's address (no port), set by the transport; "" unknown */
	int hdr_sent;        /* lws: the header block has been written */
	int chunked;         /* HTTP/1.1 stream: chunk framing on the body */
	int http10;          /* HTTP/1.0 client: no chunking, close at end */
	char method[8];      /* NUL-terminated */
	mg_buf path;         /* NUL-terminated once mg_req_dispatch runs */
	mg_buf query;
	mg_buf headers;      /* "name\0value\0" pairs, names lower-case */
	mg_buf body;
	int body_error;
	char bad_coding[40]; /* MG_BODY_UNSUPPORTED_ENCODING: the coding refused (cut) */
	int dispatched;
	int line_read;       /* set by the transport once the request line is in:
			      * freed undispatched, the request is logged as 499 */
	int cors;            /* MG_CORS_*; with ALLOWED, every answer carries CORS headers */
	int origin_dup;      /* REFUSED because it had more than one Origin */
	mg_buf origin;       /* the allowed Origin, echoed in access-control-allow-origin */

	/* response */
	int started;         /* Lua called _respond or _stream_start */
	int streaming;
	int finished;        /* every byte of the response is queued */
	int close_after;     /* close the connection once the response is out */
	mg_buf hdr;          /* HTTP/2: the encoded header block (LWS_PRE first) */
	mg_buf out;          /* headroom (MG_OUT_HEADROOM), then pending bytes */
	size_t out_off;      /* first unsent byte in out */
	size_t high_water;
	int on_drain_ref, on_close_ref, handle_ref;
	mg_cork_item cork;   /* held while a write waits for the cork to lift (cork.h) */

	/* access log (written by mg_req_free for a request that was answered
	 * or handed to Lua) */
	int status;              /* the response's, 0 until one starts */
	int client_gone;         /* the client left before the response was out */
	uint64_t started_ns;     /* uv_hrtime() at mg_req_new */
	uint64_t first_byte_ns;  /* uv_hrtime() when the status line was queued; 0: not yet (metrics) */
	unsigned long long bytes_sent; /* handed to the socket (or to lws) */
	unsigned char model_len, provider_len, key_len;
	unsigned short reason_len;
	char model[MG_NOTE_MODEL], provider[MG_NOTE_PROVIDER], reason[MG_NOTE_REASON], key[MG_NOTE_KEY];
	/* noted by Lua too (_req_note); has_*: they were */
	long long tokens_in, tokens_out;
	double upstream_ms;
	unsigned char has_tokens, has_upstream;
	/* the request id (access.h): the client's x-request-id or a new one,
	 * made once (mg_req_dispatch, or the first answer C writes); it goes
	 * back on every answer's headers, upstream (req.id), on the access line
	 * and on each line logged while the request is handled (log.h) */
	unsigned char rid_len; /* 0: not made yet */
	char rid[128];         /* MG_REQUEST_ID_MAX */
	/* a C server of the request (fast.c), told once when the client goes
	 * or the request is freed, whichever comes first; c_ud is its own */
	void (*c_gone)(struct mg_req *r);
	void *c_ud;
} mg_req;

/* Space kept before the bytes in r->out, for transports (lws) that write
 * frame headers in front of what they send. */
#define MG_OUT_HEADROOM 16

mg_req *mg_req_new(struct mg_ctx *ctx, const mg_transport *t, void *conn);
/* Adds one request header (name is lower-cased). 0, or -1 out of memory. */
int mg_req_header(mg_req *r, const char *name, size_t nlen, const char *value, size_t vlen);
/* Runs Lua's handler for the request. First, once per request: the Origin
 * is decided (Lua's origin_allowed; more than one Origin is refused), and,
 * unless it was refused, a body with a Content-Encoding is decoded
 * (decode.h) within max_body_bytes and the ratio cap; what went wrong, if
 * anything, reaches Lua as req.body_error, and the connection closes after
 * the answer. */
void mg_req_dispatch(mg_req *r);
/* The same, with extra(L, ud) called on the request table (at -1) before
 * handle(req) runs: fields a C server that gave the request up adds. */
void mg_req_dispatch_with(mg_req *r, void (*extra)(lua_State *L, void *ud), void *ud);
/* For a C server of the request (fast.c): marks it dispatched (it gets its
 * access line and metrics) and makes its id (r->rid). */
void mg_req_begin(mg_req *r);
/* Answers it whole from C: status, content type, body (copied), with
 * cache-control: no-store and the headers every answer gets. 0, or -1 when
 * the client is gone or an answer started. */
int mg_req_respond(mg_req *r, int status, const char *ctype, const char *body, size_t blen);
/* What _req_note notes of the model and the provider, from C (cut to fit). */
void mg_req_note_c(mg_req *r, const char *model, size_t mlen, const char *provider, size_t plen);
/* The transport sent `n` bytes from r->out: account, maybe fire on_drain
 * (which runs Lua: the request may have more queued, or be finished, after). */
void mg_req_sent(mg_req *r, size_t n);
/* Moves every pending byte of r->out into *dst (an empty buffer), without a
 * copy, for a transport that writes asynchronously; *off is where they start.
 * The bytes stay counted as buffered until the transport reports them
 * written with mg_stats_buffered(-n) (stats.h). Returns how many moved. */
size_t mg_req_take(mg_req *r, mg_buf *dst, size_t *off);
/* Fires on_drain if the producer is waiting and the queue is low enough. */
void mg_req_drain_check(mg_req *r);
/* The client is gone before the response completed: tell Lua (on_close). */
void mg_req_gone(mg_req *r);
/* Frees the request; the transport calls it once per mg_req_new. A request
 * that was dispatched (or answered by C) gets its access log line here, at
 * info level; so does one with r->line_read that never was (status 499: the
 * client left before sending all of it). */
void mg_req_free(mg_req *r);
/* Queues a JSON error from C when Lua cannot answer (before dispatch, or
 * after the handler failed): its body in the path's error shape as Lua's
 * error_body(path, status, message) makes it, or an OpenAI-style object
 * when Lua cannot (headers only to a HEAD), with the CORS headers an
 * allowed Origin gets. message: plain text with no character JSON must
 * escape; it is also the access log's reason. */
void mg_req_fail(mg_req *r, int status, const char *message);

/* Queues one SSE frame on r's open stream for a C producer (an upstream
 * piped straight through), only while the client keeps up: 0 when queued;
 * -1, nothing queued, when there is no open stream (client gone, response
 * finished) or more than high_water bytes already wait. The caller then
 * hands the frame to Lua, whose path deals with both. */
int mg_req_pipe_sse(mg_req *r, const char *event, size_t elen, const char *data, size_t dlen);
/* The request behind the Lua handle at idx (raises if it is not one): the
 * handle's slot, which reads NULL once the request is freed. The slot lives
 * as long as the userdata. */
mg_req **mg_req_check_handle(lua_State *L, int idx);

/* A HEAD request: its answers have headers only, never a body. */
static inline int mg_req_is_head(const mg_req *r)
{
	return r->method[0] == 'H' && !memcmp(r->method, "HEAD", 5);
}

static inline size_t mg_req_pending(const mg_req *r)
{
	return r->out.len - r->out_off;
}

/* Owner thread, at start: http.c's per-thread state (the frame scratch
 * buffer) in ctx->slot[MG_SLOT_HTTP]. 0, or -1 out of memory. */
int mg_http_thread_init(struct mg_ctx *ctx);
/* Owner thread, at its very end (no request left): frees that state; the
 * slot is NULL after. Harmless without mg_http_thread_init. */
void mg_http_thread_stop(struct mg_ctx *ctx);

/* Registers the request/response primitives on the table at -1. */
int mg_http_open(lua_State *L);

#endif
