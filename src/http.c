/* The transport-independent half of HTTP: request objects, dispatch into
 * Lua, the response writer and its primitives. See http.h for the life of a
 * request and who frees what. Uses decode.c for compressed bodies and
 * access.c for the access log line. */
#include "http.h"
#include "access.h"
#include "cork.h"
#include "decode.h"
#include "log.h"
#include "lstate.h"
#include "lua_host.h"
#include "ctx.h"
#include "metrics.h"
#include "sse.h"
#include "stats.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQ_HANDLE_MT "moongate.request"

/* A worker thread's http state: ctx->slot[MG_SLOT_HTTP], owned by the thread. */
typedef struct http_thread {
	mg_buf scratch; /* each stream frame is framed here, then queued */
} http_thread;

int mg_http_thread_init(mg_ctx *ctx)
{
	http_thread *t = calloc(1, sizeof *t);

	if (!t)
		return -1;
	ctx->slot[MG_SLOT_HTTP] = t;
	return 0;
}

void mg_http_thread_stop(mg_ctx *ctx)
{
	http_thread *t = ctx->slot[MG_SLOT_HTTP];

	if (!t)
		return;
	ctx->slot[MG_SLOT_HTTP] = NULL;
	mg_buf_free(&t->scratch);
	free(t);
}

/* ---- corking (cork.h) ---------------------------------------------------- */

static void cork_flush(mg_cork_item *it)
{
	mg_req *r = mg_queue_data(it, mg_req, cork);

	if (r->conn)
		r->t->want_write(r);
}

static void want_write(mg_req *r)
{
	if (!r->conn)
		return;
	/* a finished response has nothing more to wait for: it goes now, not
	 * after whatever the caller does next (curl's cleanup of the transfer) */
	if (!r->finished && mg_cork_hold(&r->cork))
		return;
	r->t->want_write(r);
}

mg_req *mg_req_new(mg_ctx *ctx, const mg_transport *t, void *conn)
{
	mg_req *r = calloc(1, sizeof *r);

	if (!r)
		return NULL;
	r->t = t;
	r->conn = conn;
	r->ctx = ctx;
	r->ls = ctx->ls; /* a reload after this leaves it on this state */
	mg_lstate_hold(r->ls);
	mg_cork_init(&r->cork, cork_flush);
	r->high_water = ctx->cfg->stream_high_water;
	r->on_drain_ref = r->on_close_ref = r->handle_ref = LUA_NOREF;
	if (mg_buf_reserve(&r->out, MG_OUT_HEADROOM + 512)) {
		free(r);
		return NULL;
	}
	r->out.len = r->out_off = MG_OUT_HEADROOM;
	r->started_ns = uv_hrtime();
	mg_stats_add(&mg_global_stats.requests, 1);
	mg_stats_add(&mg_global_stats.open_requests, 1);
	return r;
}

int mg_req_header(mg_req *r, const char *name, size_t nlen, const char *value, size_t vlen)
{
	return mg_buf_append_pair(&r->headers, name, nlen, value, vlen);
}

_Static_assert(sizeof ((mg_req *)0)->rid == MG_REQUEST_ID_MAX, "a request id fits mg_req's");

/* Makes the request's id once: its first x-request-id when sane, else a
 * new one (access.h). */
static void ensure_rid(mg_req *r)
{
	const char *id = NULL;
	size_t i = 0, idlen = 0;

	if (r->rid_len)
		return;
	while (i < r->headers.len) {
		const char *name = r->headers.data + i;
		size_t nl = strlen(name);
		const char *value = name + nl + 1;
		size_t vl = strlen(value);
		if (nl == 12 && !memcmp(name, "x-request-id", 12)) {
			id = value;
			idlen = vl;
			break;
		}
		i += nl + vl + 2;
	}
	r->rid_len = (unsigned char)mg_access_request_id(id, idlen, r->rid);
}

/* The access log line of a request that was answered or handed to Lua. */
static void log_access(mg_req *r)
{
	mg_access a;

	a.method = r->method[0] ? r->method : "-";
	a.path = r->path.data;
	a.path_len = r->path.len;
	a.status = r->status ? r->status : 499; /* nginx's "client closed request" */
	a.ms = (double)(uv_hrtime() - r->started_ns) / 1e6;
	a.bytes = r->bytes_sent;
	a.model = r->model_len ? r->model : NULL;
	a.model_len = r->model_len;
	a.provider = r->provider_len ? r->provider : NULL;
	a.provider_len = r->provider_len;
	a.key = r->key_len ? r->key : NULL;
	a.key_len = r->key_len;
	a.reason = r->reason_len ? r->reason : NULL;
	a.reason_len = r->reason_len;
	ensure_rid(r);
	a.request_id = r->rid;
	a.request_id_len = r->rid_len;
	a.tokens_in = r->has_tokens ? r->tokens_in : -1;
	a.tokens_out = r->has_tokens ? r->tokens_out : -1;
	a.upstream_ms = r->has_upstream ? r->upstream_ms : -1;
	a.ttfb_ms = r->first_byte_ns ? (double)(r->first_byte_ns - r->started_ns) / 1e6 : -1;
	if (!r->dispatched) { /* only a request line, some headers or part of the body */
		a.reason = "the client left before sending the whole request";
		a.reason_len = strlen(a.reason);
	} else if (!a.reason && r->client_gone) {
		a.reason = r->status ? "the client left before the end of the answer"
				     : "the client left before the answer";
		a.reason_len = strlen(a.reason);
	}
	mg_access_log(&a);
}

void mg_req_free(mg_req *r)
{
	lua_State *L = r->ls->L;

	if ((r->dispatched || r->line_read) && mg_log_get_level() >= MG_LOG_INFO)
		log_access(r);
	if (r->dispatched || r->line_read)
		mg_metrics_request(&(mg_metrics_req){ r->path.data, r->path.len, r->model, r->model_len,
			r->provider, r->provider_len, r->status ? r->status : 499,
			(double)(uv_hrtime() - r->started_ns) / 1e9,
			r->first_byte_ns ? (double)(r->first_byte_ns - r->started_ns) / 1e9 : -1 });
	if (r->c_gone) {
		void (*gone)(mg_req *) = r->c_gone;
		r->c_gone = NULL;
		gone(r);
	}
	if (r->handle)
		*r->handle = NULL;
	mg_cork_forget(&r->cork);
	if (L) { /* NULL: the state closed at the worker's end */
		luaL_unref(L, LUA_REGISTRYINDEX, r->on_drain_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, r->on_close_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, r->handle_ref);
	}
	mg_lstate_release(r->ls);
	mg_stats_buffered(-(long long)mg_req_pending(r));
	if (r->streaming && !r->finished)
		mg_stats_add(&mg_global_stats.open_streams, -1);
	mg_stats_add(&mg_global_stats.open_requests, -1);
	mg_buf_free(&r->out);
	mg_buf_free(&r->hdr);
	mg_buf_free(&r->body);
	mg_buf_free(&r->path);
	mg_buf_free(&r->query);
	mg_buf_free(&r->headers);
	mg_buf_free(&r->origin);
	free(r);
}

/* Runs a Lua callback kept in the registry, with the handle as argument. */
static void call_ref(mg_req *r, int ref, const char *what)
{
	lua_State *L = r->ls->L;
	mg_log_rid saved;

	if (!L || ref == LUA_NOREF || ref == LUA_REFNIL)
		return;
	lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
	lua_rawgeti(L, LUA_REGISTRYINDEX, r->handle_ref);
	mg_log_request_swap(r->rid, r->rid_len, &saved); /* (r may be gone after the call) */
	if (mg_pcall(L, 1, 0, what)) {
		mg_stats_add(&mg_global_stats.lua_errors, 1);
		lua_pop(L, 1);
	}
	mg_log_request_restore(&saved);
}

void mg_req_gone(mg_req *r)
{
	int ref = r->on_close_ref;

	r->conn = NULL;
	if (r->finished && !mg_req_pending(r))
		return;
	r->client_gone = 1;
	mg_stats_add(&mg_global_stats.client_disconnects, 1);
	if (r->c_gone) { /* a C server of it (fast.c) */
		void (*gone)(mg_req *) = r->c_gone;
		r->c_gone = NULL;
		gone(r);
	}
	r->on_close_ref = LUA_NOREF;
	call_ref(r, ref, "close callback");
	if (r->ls->L)
		luaL_unref(r->ls->L, LUA_REGISTRYINDEX, ref); /* the transport frees r after */
}

void mg_req_drain_check(mg_req *r)
{
	if (r->on_drain_ref != LUA_NOREF && !r->finished &&
	    mg_req_pending(r) <= r->high_water / 2) {
		lua_State *L = r->ls->L;
		int ref = r->on_drain_ref;
		r->on_drain_ref = LUA_NOREF;
		call_ref(r, ref, "drain callback"); /* r may be gone after this */
		if (L)
			luaL_unref(L, LUA_REGISTRYINDEX, ref);
	}
}

void mg_req_sent(mg_req *r, size_t n)
{
	r->out_off += n;
	r->bytes_sent += n;
	mg_stats_buffered(-(long long)n);
	if (r->out_off == r->out.len) {
		/* all out: a large frame's allocation is not kept for the rest
		 * of the stream (what a stream holds is its unsent bytes) */
		mg_buf small = { 0 };
		if (r->out.cap > (1 << 20) && !mg_buf_reserve(&small, MG_OUT_HEADROOM + 512)) {
			mg_buf_free(&r->out);
			r->out = small;
		}
		r->out_off = r->out.len = MG_OUT_HEADROOM;
	}
	mg_req_drain_check(r);
}

size_t mg_req_take(mg_req *r, mg_buf *dst, size_t *off)
{
	size_t n = mg_req_pending(r);
	mg_buf tmp;

	if (!n)
		return 0;
	tmp = *dst;
	*dst = r->out;
	*off = r->out_off;
	r->out = tmp;
	r->out.len = 0;
	if (mg_buf_reserve(&r->out, MG_OUT_HEADROOM + 512)) {
		/* keep going with what we had: give the bytes back */
		tmp = r->out;
		r->out = *dst;
		*dst = tmp;
		return 0;
	}
	r->out.len = r->out_off = MG_OUT_HEADROOM;
	r->bytes_sent += n;
	return n;
}

/* ---- queueing ---------------------------------------------------------- */

typedef struct {
	const char *p;
	size_t n;
} mg_piece;

/* Queues the pieces (up to 3) one after another, with one reservation and
 * one update of the buffered-bytes count. */
static void queue_pieces(mg_req *r, const mg_piece *pc, int count)
{
	size_t n = 0;

	for (int i = 0; i < count; i++)
		n += pc[i].n;
	if (!n)
		return;
	if (r->out_off > MG_OUT_HEADROOM && r->out_off > r->out.cap / 2) {
		size_t left = mg_req_pending(r);
		memmove(r->out.data + MG_OUT_HEADROOM, r->out.data + r->out_off, left);
		r->out_off = MG_OUT_HEADROOM;
		r->out.len = MG_OUT_HEADROOM + left;
	}
	if (mg_buf_reserve(&r->out, n)) {
		mg_log(MG_LOG_ERROR, "out of memory queueing %zu bytes", n);
		r->close_after = 1;
		return;
	}
	for (int i = 0; i < count; i++)
		mg_buf_append(&r->out, pc[i].p, pc[i].n); /* reserved: cannot fail */
	mg_stats_buffered((long long)n);
}

static void queue_bytes(mg_req *r, const char *p, size_t n)
{
	mg_piece pc = { p, n };

	queue_pieces(r, &pc, 1);
}

/* Queues body bytes, with chunk framing on an HTTP/1.1 stream. */
static void queue_body(mg_req *r, const char *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char head[24];
	size_t hl = 0, v = n;

	if (!n || mg_req_is_head(r)) /* HEAD: the headers of the answer only */
		return;
	if (!r->chunked) {
		queue_bytes(r, p, n);
		return;
	}
	/* the chunk size in hex, then CRLF, written backwards from the end */
	hl = sizeof head;
	head[--hl] = '\n';
	head[--hl] = '\r';
	do {
		head[--hl] = digits[v & 15];
		v >>= 4;
	} while (v);
	mg_piece pc[3] = { { head + hl, sizeof head - hl }, { p, n }, { "\r\n", 2 } };
	queue_pieces(r, pc, 3);
}

static int add_header(mg_req *r, const char *name, const char *value)
{
	return r->t->hdr_add(r, name, strlen(name), value, strlen(value));
}

/* Status line and headers through the transport. `L`/`hidx` name an optional
 * Lua table of extra headers (no L and hidx -1: cache-control: no-store).
 * content_length < 0 means a stream. */
static int encode_headers(mg_req *r, int status, const char *ctype, size_t ctlen,
			  long long content_length, lua_State *L, int hidx);

/* Transports that write headers into r->out (HTTP/1.1) count them as
 * buffered like any other byte. */
static int start_headers(mg_req *r, int status, const char *ctype, size_t ctlen,
			 long long content_length, lua_State *L, int hidx)
{
	size_t before = mg_req_pending(r);
	int rc = encode_headers(r, status, ctype, ctlen, content_length, L, hidx);

	mg_stats_buffered((long long)mg_req_pending(r) - (long long)before);
	return rc;
}

static int encode_headers(mg_req *r, int status, const char *ctype, size_t ctlen,
			  long long content_length, lua_State *L, int hidx)
{
	char cl[24];

	r->status = status;
	r->first_byte_ns = uv_hrtime();
	if (r->t->hdr_begin(r, status) ||
	    (ctlen && r->t->hdr_add(r, "content-type", 12, ctype, ctlen)))
		return -1;
	/* an allowed Origin gets these on every answer: errors, streams, C's;
	 * and every answer depends on the Origin (a cache must know) */
	if (r->cors == MG_CORS_ALLOWED &&
	    (r->t->hdr_add(r, "access-control-allow-origin", 27, r->origin.data, r->origin.len) ||
	     add_header(r, "access-control-expose-headers", "retry-after, x-request-id, request-id")))
		return -1;
	/* every answer says its request's id, C's errors too: x-request-id
	 * (OpenAI's SDKs: _request_id), request-id (Anthropic's) */
	ensure_rid(r);
	if (r->t->hdr_add(r, "x-request-id", 12, r->rid, r->rid_len) ||
	    r->t->hdr_add(r, "request-id", 10, r->rid, r->rid_len))
		return -1;
	if (add_header(r, "vary", "origin"))
		return -1;
	if (status == 204 || status == 304) {
		/* no body, and no content-length either (RFC 9110 8.6) */
	} else if (content_length >= 0) {
		mg_fmt_u(cl, (unsigned long long)content_length);
		if (add_header(r, "content-length", cl))
			return -1;
	} else if (!r->h2) {
		if (r->http10) {
			r->close_after = 1;
		} else {
			if (add_header(r, "transfer-encoding", "chunked"))
				return -1;
			r->chunked = 1;
		}
	}
	if (!r->h2 && r->close_after && add_header(r, "connection", "close"))
		return -1;
	if (!L && hidx < 0 && add_header(r, "cache-control", "no-store"))
		return -1; /* (a JSON answer C writes, as Lua's http.json does) */
	if (L && lua_istable(L, hidx)) {
		lua_pushnil(L);
		while (lua_next(L, hidx)) {
			size_t nl, vl;
			const char *name, *value;
			if (lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1)) {
				name = lua_tolstring(L, -2, &nl);
				value = lua_tolstring(L, -1, &vl);
				/* no header injection: one line, a token name */
				if (nl && nl < 128 && !memchr(value, '\n', vl) && !memchr(value, '\r', vl) &&
				    strcspn(name, " :\r\n\t") == nl &&
				    r->t->hdr_add(r, name, nl, value, vl)) {
					lua_pop(L, 2);
					return -1;
				}
			}
			lua_pop(L, 1);
		}
	}
	return r->t->hdr_end(r);
}

/* Remembers the reason for the access log (cut to fit). */
static void note_reason(mg_req *r, const char *s, size_t n)
{
	if (n > sizeof r->reason)
		n = sizeof r->reason;
	memcpy(r->reason, s, n);
	r->reason_len = (unsigned short)n;
}

static void cors_decide(mg_req *r, const char *origin, size_t olen, int origins);
static void scan_headers(const mg_buf *h, const char **origin, size_t *olen, int *origins, int *encs);

/* The body of an error C answers itself, in the shape the clients of the
 * request's path expect: Lua's error_body(path, status, message) says it
 * (the front doors own their shapes; C holds no API's). Left on the Lua
 * stack (*keep: how much to pop after use), or, when Lua cannot say it, a
 * plain OpenAI-style object written into fallback. */
static const char *error_body(mg_req *r, int status, const char *message, char *fallback, size_t cap,
			      size_t *len, int *keep)
{
	lua_State *L = r->ls->L;
	int n;

	*keep = 0;
	if (mg_lstate_push_fn(r->ls, "error_body")) {
		lua_pushlstring(L, r->path.data ? r->path.data : "", r->path.len);
		lua_pushinteger(L, status);
		lua_pushstring(L, message);
		if (!mg_pcall(L, 3, 1, "error body")) {
			*keep = 1;
			if (lua_type(L, -1) == LUA_TSTRING)
				return lua_tolstring(L, -1, len);
		}
		lua_pop(L, 1);
		*keep = 0;
	}
	n = snprintf(fallback, cap, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":null}}",
		     message, status >= 500 ? "server_error" : "invalid_request_error");
	if (n < 0 || (size_t)n >= cap)
		n = snprintf(fallback, cap, "{\"error\":{\"message\":\"error %d\"}}", status);
	*len = (size_t)n;
	return fallback;
}

void mg_req_fail(mg_req *r, int status, const char *message)
{
	char fallback[512];
	const char *body;
	size_t n;
	int keep;

	if (!r->conn || r->started)
		return;
	if (r->cors == MG_CORS_UNDECIDED) { /* an answer before dispatch */
		const char *origin = NULL;
		size_t olen = 0;
		int origins, encs;
		scan_headers(&r->headers, &origin, &olen, &origins, &encs);
		cors_decide(r, origin, olen, origins);
	}
	note_reason(r, message, strlen(message));
	body = error_body(r, status, message, fallback, sizeof fallback, &n, &keep);
	r->started = 1;
	r->close_after = r->close_after || status >= 500 || status == 400;
	if (start_headers(r, status, "application/json", 16, (long long)n, NULL, 0)) {
		if (keep)
			lua_pop(r->ls->L, keep);
		r->t->abort(r);
		return;
	}
	queue_body(r, body, n);
	if (keep)
		lua_pop(r->ls->L, keep); /* the body is copied: Lua's string may go */
	r->finished = 1;
	want_write(r);
}

/* ---- dispatch ---------------------------------------------------------- */

static void set_string(lua_State *L, const char *key, const mg_buf *b)
{
	lua_pushlstring(L, b->data ? b->data : "", b->len);
	lua_setfield(L, -2, key);
}

/* One pass over the request headers for the two that C looks at: origin
 * (the last, and how many: *origins) and content-encoding (how many lines:
 * *encs). */
static void scan_headers(const mg_buf *h, const char **origin, size_t *olen, int *origins, int *encs)
{
	size_t i = 0;

	*encs = *origins = 0;
	while (i < h->len) {
		const char *name = h->data + i;
		size_t nl = strlen(name);
		const char *value = name + nl + 1;
		size_t vl = strlen(value);
		if (nl == 6 && !memcmp(name, "origin", 6)) {
			*origin = value;
			*olen = vl;
			(*origins)++;
		} else if (nl == 16 && !memcmp(name, "content-encoding", 16)) {
			(*encs)++;
		}
		i += nl + vl + 2;
	}
}

/* Decides once whether the request's Origin may read the answers: Lua's
 * origin_allowed(origin) says (the one rule WebSockets use too). The origin
 * is kept to be echoed when it may. */
static void cors_decide(mg_req *r, const char *origin, size_t olen, int origins)
{
	lua_State *L = r->ls->L;
	int ok = 0;

	if (origins <= 1 && (!origin || !olen)) {
		r->cors = MG_CORS_NONE;
		return;
	}
	r->cors = MG_CORS_REFUSED;
	/* a request has one Origin, and one origin in it: several (two header
	 * lines, or what lws joined with commas) are refused, whatever each says */
	if (origins > 1 || memchr(origin, ',', olen)) {
		r->origin_dup = 1;
		return;
	}
	if (!mg_lstate_push_fn(r->ls, "origin_allowed"))
		return;
	lua_pushlstring(L, origin, olen);
	if (mg_pcall(L, 1, 1, "origin check")) {
		lua_pop(L, 1);
		return;
	}
	ok = lua_toboolean(L, -1);
	lua_pop(L, 1);
	/* it goes back in a header: one line, of a sane size */
	if (ok && olen <= 1024 && !memchr(origin, '\r', olen) && !memchr(origin, '\n', olen) &&
	    !mg_buf_append(&r->origin, origin, olen))
		r->cors = MG_CORS_ALLOWED;
}

/* Undoes the body's Content-Encoding in place: every line of it, in order,
 * makes one list. 0, or -1 when out of memory; a body that cannot be decoded
 * sets r->body_error, and the connection is closed after the answer (the
 * work a request may cost is bounded, not what a pipeline of them does). */
static int decode_body(mg_req *r)
{
	mg_codings cs = { .n = 0 };
	const char *bad = NULL;
	size_t badlen = 0, i = 0;
	mg_buf out = { 0 };
	int rc = MG_DECODE_OK;

	while (rc == MG_DECODE_OK && i < r->headers.len) {
		const char *name = r->headers.data + i;
		size_t nl = strlen(name);
		const char *value = name + nl + 1;
		size_t vl = strlen(value);
		if (nl == 16 && !memcmp(name, "content-encoding", 16))
			rc = mg_decode_codings(&cs, value, vl, &bad, &badlen);
		i += nl + vl + 2;
	}
	if (rc == MG_DECODE_OK)
		rc = mg_decode_body(&cs, r->body.data, r->body.len, r->ctx->cfg->max_body_bytes, &out);
	switch (rc) {
	case MG_DECODE_OK:
		if (cs.n) {
			mg_buf_free(&r->body);
			r->body = out;
		}
		return 0;
	case MG_DECODE_TOO_LARGE:
		r->body_error = MG_BODY_DECODED_TOO_LARGE;
		break;
	case MG_DECODE_RATIO:
		r->body_error = MG_BODY_DECODED_RATIO;
		break;
	case MG_DECODE_CORRUPT:
		r->body_error = MG_BODY_BAD_ENCODING;
		break;
	case MG_DECODE_TOO_MANY:
		r->body_error = MG_BODY_TOO_MANY_CODINGS;
		break;
	case MG_DECODE_UNSUPPORTED:
		if (badlen >= sizeof r->bad_coding)
			badlen = sizeof r->bad_coding - 1;
		memcpy(r->bad_coding, bad, badlen);
		r->bad_coding[badlen] = 0;
		r->body_error = MG_BODY_UNSUPPORTED_ENCODING;
		break;
	default:
		return -1;
	}
	r->close_after = 1;
	mg_buf_free(&r->body);
	return 0;
}

void mg_req_dispatch(mg_req *r)
{
	mg_req_dispatch_with(r, NULL, NULL);
}

void mg_req_begin(mg_req *r)
{
	r->dispatched = 1;
	ensure_rid(r);
}

int mg_req_respond(mg_req *r, int status, const char *ctype, const char *body, size_t blen)
{
	if (!r->conn || r->started)
		return -1;
	r->started = 1;
	if (start_headers(r, status, ctype, strlen(ctype), (long long)blen, NULL, -1))
		return -1;
	queue_body(r, body, blen);
	r->finished = 1;
	want_write(r);
	return 0;
}

void mg_req_note_c(mg_req *r, const char *model, size_t mlen, const char *provider, size_t plen)
{
	if (mlen > sizeof r->model)
		mlen = sizeof r->model;
	memcpy(r->model, model, mlen);
	r->model_len = (unsigned char)mlen;
	if (plen > sizeof r->provider)
		plen = sizeof r->provider;
	memcpy(r->provider, provider, plen);
	r->provider_len = (unsigned char)plen;
}

/* Builds the Lua request table and calls handle(req); an error there goes to
 * on_error(req, message) so the client gets it in its own format. */
void mg_req_dispatch_with(mg_req *r, void (*extra)(lua_State *L, void *ud), void *ud)
{
	lua_State *L = r->ls->L;
	mg_req **slot;
	const char *origin = NULL;
	size_t olen = 0;
	int origins, encs, top, decoded = 0;
	mg_log_rid saved;

	r->dispatched = 1;
	ensure_rid(r);
	if (r->ctx->phase >= MG_PHASE_END || !L || r->body_error == MG_UPGRADE_DRAINING) {
		/* Lua's shutdown ran, or a WebSocket would outlive the drain: nothing new starts */
		r->close_after = 1;
		mg_req_fail(r, 503, "the gateway is shutting down");
		return;
	}
	top = lua_gettop(L);
	scan_headers(&r->headers, &origin, &olen, &origins, &encs);
	if (r->cors == MG_CORS_UNDECIDED)
		cors_decide(r, origin, olen, origins);
	if (r->cors == MG_CORS_REFUSED) {
		/* a page the gateway does not serve: Lua answers 403 and nothing
		 * else runs (not even decoding); the body is not looked at */
		mg_buf_free(&r->body);
	} else if (encs && !r->body_error && r->body.len) {
		if (decode_body(r)) {
			mg_req_fail(r, 500, "out of memory decoding the request body");
			return;
		}
		decoded = !r->body_error;
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, r->ls->handler_ref);
	lua_getfield(L, -1, "handle");

	lua_createtable(L, 0, 10);
	slot = (mg_req **)mg_push_handle(L, r, REQ_HANDLE_MT, &r->handle_ref);
	r->handle = slot;
	lua_setfield(L, -2, "h");
	lua_pushstring(L, r->method);
	lua_setfield(L, -2, "method");
	set_string(L, "path", &r->path);
	if (r->query.len)
		set_string(L, "query", &r->query);
	lua_pushboolean(L, r->h2);
	lua_setfield(L, -2, "http2");
	if (r->peer[0]) {
		lua_pushstring(L, r->peer);
		lua_setfield(L, -2, "peer");
	}
	lua_pushlstring(L, r->rid, r->rid_len);
	lua_setfield(L, -2, "id");
	if (r->cors != MG_CORS_NONE) {
		lua_pushboolean(L, r->cors == MG_CORS_ALLOWED);
		lua_setfield(L, -2, "origin_allowed");
		if (r->origin_dup) {
			lua_pushboolean(L, 1);
			lua_setfield(L, -2, "origin_duplicate");
		}
	}
	if (r->body_error == MG_BODY_TOO_LARGE || r->body_error == MG_BODY_DECODED_TOO_LARGE) {
		if (r->body_error == MG_BODY_TOO_LARGE)
			lua_pushliteral(L, "too_large");
		else
			lua_pushliteral(L, "decoded_too_large");
		lua_setfield(L, -2, "body_error");
		lua_pushinteger(L, (lua_Integer)r->ctx->cfg->max_body_bytes);
		lua_setfield(L, -2, "max_body_bytes");
	} else if (r->body_error == MG_BODY_DECODED_RATIO) {
		lua_pushliteral(L, "decoded_ratio");
		lua_setfield(L, -2, "body_error");
		lua_pushinteger(L, MG_DECODE_MAX_RATIO);
		lua_setfield(L, -2, "max_ratio");
		lua_pushinteger(L, (lua_Integer)MG_DECODE_SLACK);
		lua_setfield(L, -2, "ratio_slack");
	} else if (r->body_error == MG_BODY_TOO_MANY_CODINGS) {
		lua_pushliteral(L, "too_many_codings");
		lua_setfield(L, -2, "body_error");
		lua_pushinteger(L, MG_DECODE_MAX_CODINGS);
		lua_setfield(L, -2, "max_codings");
	} else if (r->body_error == MG_BODY_BAD_ENCODING) {
		lua_pushliteral(L, "bad_encoding");
		lua_setfield(L, -2, "body_error");
	} else if (r->body_error == MG_BODY_UNSUPPORTED_ENCODING) {
		lua_pushliteral(L, "unsupported_encoding");
		lua_setfield(L, -2, "body_error");
		lua_pushstring(L, r->bad_coding);
		lua_setfield(L, -2, "content_coding");
	} else if (r->body_error == MG_HEADERS_TOO_LARGE) {
		lua_pushliteral(L, "headers_too_large");
		lua_setfield(L, -2, "body_error");
		lua_pushinteger(L, (lua_Integer)r->ctx->cfg->max_header_bytes);
		lua_setfield(L, -2, "max_header_bytes");
	} else {
		set_string(L, "body", &r->body);
	}
	mg_push_pairs(L, &r->headers);
	if (decoded) { /* Lua sees the body as if it had come plain */
		lua_pushnil(L);
		lua_setfield(L, -2, "content-encoding");
		lua_pushnil(L);
		lua_setfield(L, -2, "content-length");
	}
	lua_setfield(L, -2, "headers");
	if (extra)
		extra(L, ud);
	mg_buf_free(&r->body);
	mg_buf_free(&r->headers);

	lua_pushvalue(L, -1); /* keep req for on_error */
	lua_insert(L, -3);    /* handler table, req, handle fn, req */
	mg_log_request_swap(r->rid, r->rid_len, &saved); /* the lines it logs carry its id */
	if (mg_pcall(L, 1, 0, "request handler")) {
		mg_stats_add(&mg_global_stats.lua_errors, 1);
		/* stack: handler table, req, message */
		lua_getfield(L, -3, "on_error");
		lua_pushvalue(L, -3);
		lua_pushvalue(L, -3);
		if (mg_pcall(L, 2, 0, "error handler"))
			lua_pop(L, 1);
		if (*slot == r && !r->started)
			mg_req_fail(r, 500, "internal error");
	}
	mg_log_request_restore(&saved);
	lua_settop(L, top);
}

/* ---- primitives -------------------------------------------------------- */

mg_req **mg_req_check_handle(lua_State *L, int idx)
{
	return (mg_req **)luaL_checkudata(L, idx, REQ_HANDLE_MT);
}

static mg_req *check_req(lua_State *L, int idx)
{
	return *mg_req_check_handle(L, idx);
}

static mg_req *start_response(lua_State *L, long long content_length, int hidx)
{
	mg_req *r = check_req(L, 1);
	int status = (int)luaL_checkinteger(L, 2);
	size_t ctlen;
	const char *ctype = luaL_checklstring(L, 3, &ctlen);

	if (status < 200 || status > 599)
		luaL_argerror(L, 2, "status must be 200..599");
	if (!lua_isnoneornil(L, hidx))
		luaL_checktype(L, hidx, LUA_TTABLE);
	if (!r || !r->conn)
		return NULL;
	if (r->started)
		luaL_error(L, "response already started");
	r->started = 1;
	if (start_headers(r, status, ctype, ctlen, content_length, L, hidx))
		luaL_error(L, "response headers too large");
	return r;
}

/* _respond(h, status, content_type, body [, headers]) -> true | nil, "closed" */
static int l_respond(lua_State *L)
{
	size_t blen;
	const char *body = luaL_checklstring(L, 4, &blen);
	mg_req *r = start_response(L, (long long)blen, 5);

	if (!r)
		return mg_push_closed(L);
	queue_body(r, body, blen);
	r->finished = 1;
	want_write(r);
	lua_pushboolean(L, 1);
	return 1;
}

/* _stream_start(h, status, content_type [, headers]) -> true | nil, "closed" */
static int l_stream_start(lua_State *L)
{
	mg_req *r = start_response(L, -1, 4);

	if (!r)
		return mg_push_closed(L);
	r->streaming = 1;
	mg_stats_add(&mg_global_stats.open_streams, 1);
	want_write(r);
	lua_pushboolean(L, 1);
	return 1;
}

static mg_req *check_stream(lua_State *L)
{
	mg_req *r = check_req(L, 1);

	if (r && r->conn && (!r->streaming || r->finished))
		luaL_error(L, "no stream open on this request");
	return r;
}

/* Every stream write answers: more? (queue below high water), queued bytes. */
static int write_result(lua_State *L, mg_req *r)
{
	want_write(r);
	lua_pushboolean(L, mg_req_pending(r) <= r->high_water);
	lua_pushinteger(L, (lua_Integer)mg_req_pending(r));
	return 2;
}

/* Frames and queues one SSE or NDJSON frame; 0, or -1 out of memory. The
 * frame is made in the thread's scratch buffer (http_thread: kept between
 * frames, freed by mg_http_thread_stop), then copied into r->out with its
 * chunk framing. */
static int queue_frame(mg_req *r, int sse, const char *event, size_t elen, const char *data, size_t dlen)
{
	mg_buf *frame = &((http_thread *)r->ctx->slot[MG_SLOT_HTTP])->scratch;
	int rc;

	frame->len = 0;
	rc = sse ? mg_sse_frame(frame, event, elen, data, dlen)
		 : mg_ndjson_frame(frame, data, dlen);
	if (!rc)
		queue_body(r, frame->data, frame->len);
	if (frame->cap > 65536) /* one big frame does not stay held */
		mg_buf_free(frame);
	return rc;
}

int mg_req_pipe_sse(mg_req *r, const char *event, size_t elen, const char *data, size_t dlen)
{
	if (!r || !r->conn || !r->streaming || r->finished || mg_req_pending(r) > r->high_water)
		return -1;
	if (queue_frame(r, 1, event, elen, data, dlen))
		return -1;
	want_write(r);
	return 0;
}

/* _stream_sse(h, data [, event]) -> more, queued | nil, "closed"
 * _stream_ndjson(h, data)        -> more, queued | nil, "closed" */
static int stream_framed(lua_State *L, int sse)
{
	size_t dlen, elen = 0;
	const char *data = luaL_checklstring(L, 2, &dlen);
	const char *event = sse ? luaL_optlstring(L, 3, NULL, &elen) : NULL;
	mg_req *r = check_stream(L);

	if (event && (memchr(event, '\n', elen) || memchr(event, '\r', elen)))
		return luaL_argerror(L, 3, "event name must be one line");
	if (!r || !r->conn)
		return mg_push_closed(L);
	if (queue_frame(r, sse, event, elen, data, dlen))
		return luaL_error(L, "out of memory");
	return write_result(L, r);
}

static int l_stream_sse(lua_State *L) { return stream_framed(L, 1); }
static int l_stream_ndjson(lua_State *L) { return stream_framed(L, 0); }

/* _stream_end(h) -> true | nil, "closed" */
static int l_stream_end(lua_State *L)
{
	mg_req *r = check_stream(L);

	if (!r || !r->conn)
		return mg_push_closed(L);
	if (r->chunked && !mg_req_is_head(r))
		queue_bytes(r, "0\r\n\r\n", 5);
	r->finished = 1;
	mg_stats_add(&mg_global_stats.open_streams, -1);
	want_write(r);
	lua_pushboolean(L, 1);
	return 1;
}

static int set_callback(lua_State *L, int which)
{
	mg_req *r = check_req(L, 1);
	int *ref;

	if (!lua_isnoneornil(L, 2))
		luaL_checktype(L, 2, LUA_TFUNCTION);
	if (!r || !r->conn)
		return mg_push_closed(L);
	ref = which ? &r->on_close_ref : &r->on_drain_ref;
	luaL_unref(L, LUA_REGISTRYINDEX, *ref);
	*ref = LUA_NOREF;
	if (!lua_isnoneornil(L, 2)) {
		lua_pushvalue(L, 2);
		*ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* _on_drain(h, fn | nil): fn(h) runs once, when the queue is below half the
 * high water mark. _on_close(h, fn | nil): fn(h) runs if the client goes
 * away before the response is complete. */
static int l_on_drain(lua_State *L) { return set_callback(L, 0); }
static int l_on_close(lua_State *L) { return set_callback(L, 1); }

/* Copies a string argument, cut to cap bytes; a nil leaves the field. */
static void note_arg(lua_State *L, int idx, char *dst, size_t cap, size_t *len)
{
	size_t n;
	const char *s;

	if (lua_type(L, idx) != LUA_TSTRING)
		return;
	s = lua_tolstring(L, idx, &n);
	if (n > cap)
		n = cap;
	memcpy(dst, s, n);
	*len = n;
}

/* _req_note(h, model, provider, reason, key, tokens_in, tokens_out, upstream_ms):
 * what the request's access log line says besides what C knows; a nil
 * argument leaves that field as it was (the tokens: both, or neither).
 * Kept at any log level (the metrics' labels, metrics.h). No secret may be passed. */
static int l_req_note(lua_State *L)
{
	mg_req *r = check_req(L, 1);
	size_t n;

	if (!r) /* kept at any log level: the metrics' labels too */
		return 0;
	n = r->model_len;
	note_arg(L, 2, r->model, sizeof r->model, &n);
	r->model_len = (unsigned char)n;
	n = r->provider_len;
	note_arg(L, 3, r->provider, sizeof r->provider, &n);
	r->provider_len = (unsigned char)n;
	n = r->reason_len;
	note_arg(L, 4, r->reason, sizeof r->reason, &n);
	r->reason_len = (unsigned short)n;
	n = r->key_len;
	note_arg(L, 5, r->key, sizeof r->key, &n);
	r->key_len = (unsigned char)n;
	if (lua_type(L, 6) == LUA_TNUMBER && lua_type(L, 7) == LUA_TNUMBER) {
		double tin = lua_tonumber(L, 6), tout = lua_tonumber(L, 7);
		r->tokens_in = tin > 0 && tin < 1e15 ? (long long)tin : 0;
		r->tokens_out = tout > 0 && tout < 1e15 ? (long long)tout : 0;
		r->has_tokens = 1;
	}
	if (lua_type(L, 8) == LUA_TNUMBER) {
		double ms = lua_tonumber(L, 8);
		r->upstream_ms = ms > 0 && ms < 1e12 ? ms : 0;
		r->has_upstream = 1;
	}
	return 0;
}

static int l_handle_tostring(lua_State *L)
{
	mg_req *r = *(mg_req **)luaL_checkudata(L, 1, REQ_HANDLE_MT);
	lua_pushfstring(L, "moongate.request (%s)", r ? (r->conn ? "open" : "gone") : "done");
	return 1;
}

/* _request_headers(names): the request headers the front doors read, beyond
 * the ones lws knows as tokens, for the TLS transport to copy (h1 copies
 * every header). Set once per worker, at start. */
static int l_request_headers(lua_State *L)
{
	mg_ctx *ctx = mg_ctx_of(L);
	size_t i, n;

	luaL_checktype(L, 1, LUA_TTABLE);
	if (!ctx)
		return 0; /* no worker thread: no TLS listener either */
	ctx->req_headers.len = 0;
	n = lua_objlen(L, 1);
	for (i = 1; i <= n; i++) {
		size_t len, k;
		const char *name;
		char lower[128];
		lua_rawgeti(L, 1, (int)i);
		name = lua_tolstring(L, -1, &len);
		if (name && len && len < sizeof lower - 1) {
			for (k = 0; k < len; k++)
				lower[k] = (char)((name[k] >= 'A' && name[k] <= 'Z') ? name[k] + 32 : name[k]);
			lower[len] = ':';
			if (mg_buf_append(&ctx->req_headers, lower, len + 1) ||
			    mg_buf_append(&ctx->req_headers, "", 1))
				return luaL_error(L, "out of memory");
		}
		lua_pop(L, 1);
	}
	return 0;
}

int mg_http_open(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "_respond", l_respond },
		{ "_stream_start", l_stream_start },
		{ "_stream_sse", l_stream_sse },
		{ "_stream_ndjson", l_stream_ndjson },
		{ "_stream_end", l_stream_end },
		{ "_on_drain", l_on_drain },
		{ "_on_close", l_on_close },
		{ "_req_note", l_req_note },
		{ "_request_headers", l_request_headers },
		{ NULL, NULL }
	};

	mg_handle_mt(L, REQ_HANDLE_MT, l_handle_tostring);
	mg_set_funcs(L, fns);
	return 0;
}
