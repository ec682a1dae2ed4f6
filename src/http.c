/* HTTP requests and the streaming response writer.
 *
 * Life of a request (all on the worker thread that accepted it):
 *   LWS_CALLBACK_HTTP          mg_req allocated, owned by the wsi's pss
 *   LWS_CALLBACK_HTTP_BODY     body collected up to max_body_bytes
 *   dispatch                   Lua's handle(req) runs; it gets a userdata
 *                              handle that points back at the mg_req
 *   _respond / _stream_*       bytes queued in r->out; lws asks for POLLOUT
 *   LWS_CALLBACK_HTTP_WRITEABLE queued bytes go out, one lws_write per call
 *   completion or disconnect   req_free(): the handle is detached (its
 *                              pointer set to NULL, so later calls from Lua
 *                              answer nil, "closed"), Lua refs dropped, memory
 *                              freed.
 *
 * Backpressure: r->out holds what the client has not taken yet. A write that
 * leaves more than high_water bytes queued returns false; the producer then
 * waits for the drain callback, which fires once the queue is below
 * high_water / 2. Nothing else buffers response bytes.
 */
#include "http.h"
#include "buf.h"
#include "log.h"
#include "lua_host.h"
#include "server.h"
#include "sse.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define REQ_HANDLE_MT "moongate.request"
#define MAX_WRITE (64 * 1024)
#define H2_MAX_WRITE 16384

enum { BODY_OK = 0, BODY_TOO_LARGE = 1 };

typedef struct mg_req {
	struct lws *wsi;     /* NULL once the client is gone */
	mg_worker *w;
	struct mg_req **handle; /* the Lua userdata's slot pointing at us */
	int h2;
	char method[8];      /* NUL-terminated */
	char *path;          /* owned */
	char *query;         /* owned, may be NULL */
	mg_buf body;
	int body_error;
	int expect_body;
	int dispatched;

	/* response */
	int started;         /* Lua called _respond or _stream_start */
	int chunked;         /* HTTP/1.1 stream: we write chunk framing */
	int hdr_sent;        /* HTTP/2: header frame written */
	int finished;        /* every byte of the response is queued */
	int close_after;     /* close the connection once the response is out */
	mg_buf hdr;          /* HTTP/2 only: LWS_PRE + encoded header block */
	mg_buf out;          /* LWS_PRE headroom, then pending bytes */
	size_t out_off;      /* first unsent byte in out; always >= LWS_PRE */
	size_t high_water;
	int on_drain_ref, on_close_ref, handle_ref;
} mg_req;

static size_t pending(const mg_req *r)
{
	return r->out.len - r->out_off;
}

static void stats_buffered(long long delta)
{
	mg_stats_add(&mg_global_stats.buffered_bytes, delta);
	if (delta > 0) {
		long long now = __atomic_load_n(&mg_global_stats.buffered_bytes, __ATOMIC_RELAXED);
		long long peak = __atomic_load_n(&mg_global_stats.buffered_peak, __ATOMIC_RELAXED);
		while (now > peak && !__atomic_compare_exchange_n(&mg_global_stats.buffered_peak,
				&peak, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			;
	}
}

static mg_req *req_new(struct lws *wsi, mg_worker *w)
{
	mg_req *r = calloc(1, sizeof *r);

	if (!r)
		return NULL;
	r->wsi = wsi;
	r->w = w;
	r->h2 = lws_get_network_wsi(wsi) != wsi;
	r->high_water = w->cfg->stream_high_water;
	r->on_drain_ref = r->on_close_ref = r->handle_ref = LUA_NOREF;
	if (mg_buf_reserve(&r->out, LWS_PRE + 1024)) {
		free(r);
		return NULL;
	}
	r->out.len = r->out_off = LWS_PRE;
	mg_stats_add(&mg_global_stats.requests, 1);
	mg_stats_add(&mg_global_stats.open_requests, 1);
	return r;
}

/* Frees the request. Lua keeps its handle userdata; it now points nowhere. */
static void req_free(mg_req *r)
{
	lua_State *L = r->w->L;

	if (r->handle)
		*r->handle = NULL;
	luaL_unref(L, LUA_REGISTRYINDEX, r->on_drain_ref);
	luaL_unref(L, LUA_REGISTRYINDEX, r->on_close_ref);
	luaL_unref(L, LUA_REGISTRYINDEX, r->handle_ref);
	stats_buffered(-(long long)pending(r));
	mg_stats_add(&mg_global_stats.open_requests, -1);
	mg_buf_free(&r->out);
	mg_buf_free(&r->hdr);
	mg_buf_free(&r->body);
	free(r->path);
	free(r->query);
	free(r);
}

/* ---- Lua side ---------------------------------------------------------- */

static mg_req *check_req(lua_State *L, int idx)
{
	mg_req **slot = luaL_checkudata(L, idx, REQ_HANDLE_MT);
	return *slot;
}

/* Runs a Lua callback kept in the registry, with the handle as argument. */
static void call_ref(mg_req *r, int ref, const char *what)
{
	lua_State *L = r->w->L;

	if (ref == LUA_NOREF || ref == LUA_REFNIL)
		return;
	lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
	lua_rawgeti(L, LUA_REGISTRYINDEX, r->handle_ref);
	if (mg_pcall(L, 1, 0, what)) {
		mg_stats_add(&mg_global_stats.lua_errors, 1);
		lua_pop(L, 1);
	}
}

static void push_headers(lua_State *L, struct lws *wsi)
{
	static const char *const custom[] = {
		"x-api-key:", "anthropic-version:", "anthropic-beta:",
		"x-request-id:", "openai-organization:", "openai-project:",
		"openai-beta:", "x-stainless-retry-count:", "x-stainless-timeout:",
		NULL
	};
	char buf[8192];

	lua_createtable(L, 0, 16);
	for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
		const char *name = (const char *)lws_token_to_string(t);
		size_t nlen;
		int n;

		if (!name || name[0] == ':' || t == WSI_TOKEN_HTTP_URI_ARGS)
			continue;
		nlen = strlen(name);
		if (nlen < 2 || name[nlen - 1] != ':')
			continue; /* method tokens ("get ", "post ") and the like */
		if (lws_hdr_total_length(wsi, t) <= 0)
			continue;
		n = lws_hdr_copy(wsi, buf, sizeof buf, t);
		if (n < 0)
			continue;
		lua_pushlstring(L, name, nlen - 1);
		lua_pushlstring(L, buf, (size_t)n);
		lua_rawset(L, -3);
	}
	for (int i = 0; custom[i]; i++) {
		int nlen = (int)strlen(custom[i]);
		int n = lws_hdr_custom_length(wsi, custom[i], nlen);
		if (n <= 0 || n >= (int)sizeof buf)
			continue;
		if (lws_hdr_custom_copy(wsi, buf, sizeof buf, custom[i], nlen) < 0)
			continue;
		lua_pushlstring(L, custom[i], (size_t)nlen - 1);
		lua_pushlstring(L, buf, (size_t)n);
		lua_rawset(L, -3);
	}
}

static void queue_bytes(mg_req *r, const char *p, size_t n);

/* The last resort when Lua could not answer: a plain JSON 500. */
static void fallback_500(mg_req *r);

/* Builds the Lua request table and calls handle(req); an error there goes to
 * on_error(req, message) so the client gets it in its own format. */
static void dispatch(mg_req *r)
{
	lua_State *L = r->w->L;
	mg_req **slot;
	int top = lua_gettop(L);

	r->dispatched = 1;
	/* no lws timeout while Lua owns the request; streams may be long */
	lws_set_timeout(r->wsi, NO_PENDING_TIMEOUT, 0);

	lua_rawgeti(L, LUA_REGISTRYINDEX, r->w->handler_ref);
	lua_getfield(L, -1, "handle");

	lua_createtable(L, 0, 10);
	slot = lua_newuserdata(L, sizeof *slot);
	*slot = r;
	r->handle = slot;
	luaL_getmetatable(L, REQ_HANDLE_MT);
	lua_setmetatable(L, -2);
	lua_pushvalue(L, -1);
	r->handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_setfield(L, -2, "h");
	lua_pushstring(L, r->method);
	lua_setfield(L, -2, "method");
	lua_pushstring(L, r->path);
	lua_setfield(L, -2, "path");
	if (r->query) {
		lua_pushstring(L, r->query);
		lua_setfield(L, -2, "query");
	}
	lua_pushboolean(L, r->h2);
	lua_setfield(L, -2, "http2");
	if (r->body_error == BODY_TOO_LARGE) {
		lua_pushliteral(L, "too_large");
		lua_setfield(L, -2, "body_error");
		lua_pushinteger(L, (lua_Integer)r->w->cfg->max_body_bytes);
		lua_setfield(L, -2, "max_body_bytes");
	} else {
		lua_pushlstring(L, r->body.data ? r->body.data : "", r->body.len);
		lua_setfield(L, -2, "body");
	}
	push_headers(L, r->wsi);
	lua_setfield(L, -2, "headers");
	mg_buf_free(&r->body);

	lua_pushvalue(L, -1); /* keep req for on_error */
	lua_insert(L, -3);    /* handler, req, handle, req */
	if (mg_pcall(L, 1, 0, "request handler")) {
		mg_stats_add(&mg_global_stats.lua_errors, 1);
		/* stack: handler, req, message */
		lua_getfield(L, -3, "on_error");
		lua_pushvalue(L, -3);
		lua_pushvalue(L, -3);
		if (mg_pcall(L, 2, 0, "error handler"))
			lua_pop(L, 1);
		/* the handle may be gone if on_error failed badly: check r */
		if (*slot == r && !r->started)
			fallback_500(r);
	}
	lua_settop(L, top);
}

/* ---- writing ----------------------------------------------------------- */

static void queue_bytes(mg_req *r, const char *p, size_t n)
{
	if (!n)
		return;
	if (r->out_off > LWS_PRE && r->out_off > r->out.cap / 2) {
		size_t left = pending(r);
		memmove(r->out.data + LWS_PRE, r->out.data + r->out_off, left);
		r->out_off = LWS_PRE;
		r->out.len = LWS_PRE + left;
	}
	if (mg_buf_append(&r->out, p, n)) {
		mg_log(MG_LOG_ERROR, "out of memory queueing %zu bytes", n);
		r->close_after = 1;
		return;
	}
	stats_buffered((long long)n);
}

static void want_write(mg_req *r)
{
	if (r->wsi)
		lws_callback_on_writable(r->wsi);
}

/* Encodes the status line and headers with lws (h1 text or h2 HPACK). */
static int build_headers(mg_req *r, int status, const char *ctype, size_t ctlen,
			 long long content_length, lua_State *L, int hidx)
{
	unsigned char tmp[LWS_PRE + 4096];
	unsigned char *start = tmp + LWS_PRE, *p = start, *end = tmp + sizeof tmp - 1;
	struct lws *wsi = r->wsi;

	if (lws_add_http_header_status(wsi, (unsigned)status, &p, end) ||
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
					 (const unsigned char *)ctype, (int)ctlen, &p, end))
		return -1;
	if (content_length >= 0) {
		char cl[24];
		int n = snprintf(cl, sizeof cl, "%lld", content_length);
		/* by name, not lws_add_http_header_content_length(): we count bytes */
		if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
						 (unsigned char *)cl, n, &p, end))
			return -1;
	} else if (!r->h2) {
		if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING,
						 (unsigned char *)"chunked", 7, &p, end))
			return -1;
		r->chunked = 1;
	}
	if (!r->h2 && r->close_after &&
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
					 (unsigned char *)"close", 5, &p, end))
		return -1;
	if (L && lua_istable(L, hidx)) {
		lua_pushnil(L);
		while (lua_next(L, hidx)) {
			size_t nl, vl;
			const char *name, *value;
			char hname[128];
			if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1)) {
				lua_pop(L, 1);
				continue;
			}
			name = lua_tolstring(L, -2, &nl);
			value = lua_tolstring(L, -1, &vl);
			if (nl + 2 > sizeof hname || memchr(value, '\n', vl) || memchr(value, '\r', vl)) {
				lua_pop(L, 1);
				continue;
			}
			for (size_t i = 0; i < nl; i++)
				hname[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
			hname[nl] = ':';
			hname[nl + 1] = 0;
			if (lws_add_http_header_by_name(wsi, (unsigned char *)hname,
							(const unsigned char *)value, (int)vl, &p, end)) {
				lua_pop(L, 2);
				return -1;
			}
			lua_pop(L, 1);
		}
	}
	if (lws_finalize_http_header(wsi, &p, end))
		return -1;
	if (r->h2) {
		/* HTTP/2 headers go out in their own frame */
		if (mg_buf_reserve(&r->hdr, LWS_PRE + (size_t)(p - start)))
			return -1;
		r->hdr.len = LWS_PRE;
		mg_buf_append(&r->hdr, start, (size_t)(p - start));
	} else {
		queue_bytes(r, (const char *)start, (size_t)(p - start));
	}
	return 0;
}

/* Queues body bytes, with chunk framing on an HTTP/1.1 stream. */
static void queue_body(mg_req *r, const char *p, size_t n)
{
	char head[24];

	if (!n)
		return;
	if (r->chunked) {
		int hl = snprintf(head, sizeof head, "%zx\r\n", n);
		queue_bytes(r, head, (size_t)hl);
		queue_bytes(r, p, n);
		queue_bytes(r, "\r\n", 2);
	} else {
		queue_bytes(r, p, n);
	}
}

static void fallback_500(mg_req *r)
{
	static const char body[] =
		"{\"error\":{\"message\":\"internal error\",\"type\":\"server_error\","
		"\"param\":null,\"code\":null}}";

	if (!r->wsi || r->started)
		return;
	r->started = 1;
	if (build_headers(r, 500, "application/json", 16, sizeof body - 1, NULL, 0)) {
		r->close_after = 1;
		lws_set_timeout(r->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
		return;
	}
	queue_body(r, body, sizeof body - 1);
	r->finished = 1;
	want_write(r);
}

/* Returns 0 to keep the connection, -1 to close it. */
static int on_writable(struct lws *wsi, mg_http_pss *pss)
{
	mg_req *r = pss->req;
	size_t n, left;
	int flags, last, m;

	if (!r || !r->started)
		return 0;
	if (r->h2 && !r->hdr_sent) {
		flags = LWS_WRITE_HTTP_HEADERS;
		last = r->finished && !pending(r);
		if (last)
			flags |= LWS_WRITE_H2_STREAM_END;
		n = r->hdr.len - LWS_PRE;
		if (lws_write(wsi, (unsigned char *)r->hdr.data + LWS_PRE, n, flags) != (int)n)
			return -1;
		r->hdr_sent = 1;
		mg_buf_free(&r->hdr);
		if (!last) {
			if (pending(r) || r->finished)
				lws_callback_on_writable(wsi);
			return 0;
		}
		goto complete;
	}

	left = pending(r);
	n = left > MAX_WRITE ? MAX_WRITE : left;
	if (r->h2) {
		lws_fileofs_t allow = lws_get_peer_write_allowance(wsi);
		if (n > H2_MAX_WRITE)
			n = H2_MAX_WRITE;
		if (allow >= 0 && (lws_fileofs_t)n > allow)
			n = (size_t)allow;
		if (!n && left) {
			lws_callback_on_writable(wsi);
			return 0;
		}
	}
	last = r->finished && n == left;
	if (n || (last && r->h2)) {
		flags = (r->h2 && last) ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP;
		m = lws_write(wsi, (unsigned char *)r->out.data + r->out_off, n, flags);
		if (m < (int)n)
			return -1;
		r->out_off += n;
		stats_buffered(-(long long)n);
		if (r->out_off == r->out.len)
			r->out_off = r->out.len = LWS_PRE;
	}
	if (!last) {
		if (pending(r))
			lws_callback_on_writable(wsi);
		if (r->on_drain_ref != LUA_NOREF && pending(r) <= r->high_water / 2) {
			int ref = r->on_drain_ref;
			r->on_drain_ref = LUA_NOREF;
			call_ref(r, ref, "drain callback");
			luaL_unref(r->w->L, LUA_REGISTRYINDEX, ref);
		}
		return 0;
	}
complete:
	m = r->close_after;
	pss->req = NULL;
	req_free(r);
	if (m)
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---- primitives -------------------------------------------------------- */

static int closed(lua_State *L)
{
	lua_pushnil(L);
	lua_pushliteral(L, "closed");
	lua_pushliteral(L, "ECLOSED");
	return 3;
}

static mg_req *start_response(lua_State *L, long long content_length)
{
	mg_req *r = check_req(L, 1);
	int status = (int)luaL_checkinteger(L, 2);
	size_t ctlen;
	const char *ctype = luaL_checklstring(L, 3, &ctlen);

	if (status < 100 || status > 599)
		luaL_argerror(L, 2, "status must be 100..599");
	if (!r || !r->wsi)
		return NULL;
	if (r->started)
		luaL_error(L, "response already started");
	r->started = 1;
	if (build_headers(r, status, ctype, ctlen, content_length, L,
			  content_length >= 0 ? 5 : 4)) {
		luaL_error(L, "response headers too large");
	}
	return r;
}

/* _respond(h, status, content_type, body [, headers]) -> true | nil, "closed" */
static int l_respond(lua_State *L)
{
	size_t blen;
	mg_req *r;

	luaL_checklstring(L, 4, &blen);
	r = start_response(L, (long long)blen);
	if (!r)
		return closed(L);
	const char *body = lua_tostring(L, 4);
	queue_body(r, body, blen);
	r->finished = 1;
	want_write(r);
	lua_pushboolean(L, 1);
	return 1;
}

/* _stream_start(h, status, content_type [, headers]) -> true | nil, "closed" */
static int l_stream_start(lua_State *L)
{
	mg_req *r = start_response(L, -1);

	if (!r)
		return closed(L);
	mg_stats_add(&mg_global_stats.open_streams, 1);
	want_write(r);
	lua_pushboolean(L, 1);
	return 1;
}

static mg_req *check_stream(lua_State *L)
{
	mg_req *r = check_req(L, 1);

	if (r && (!r->started || r->finished || !(r->chunked || r->h2) ))
		luaL_error(L, "no stream open on this request");
	return r;
}

/* The answer of every stream write: more? (queue below high water), queued. */
static int write_result(lua_State *L, mg_req *r)
{
	want_write(r);
	lua_pushboolean(L, pending(r) <= r->high_water);
	lua_pushinteger(L, (lua_Integer)pending(r));
	return 2;
}

/* _stream_write(h, bytes) -> more, queued | nil, "closed" */
static int l_stream_write(lua_State *L)
{
	size_t n;
	const char *p = luaL_checklstring(L, 2, &n);
	mg_req *r = check_stream(L);

	if (!r || !r->wsi)
		return closed(L);
	queue_body(r, p, n);
	return write_result(L, r);
}

/* _stream_sse(h, data [, event]) -> more, queued | nil, "closed"
 * _stream_ndjson(h, data)        -> more, queued | nil, "closed" */
static int stream_framed(lua_State *L, int sse)
{
	size_t dlen, elen = 0;
	const char *data = luaL_checklstring(L, 2, &dlen);
	const char *event = sse ? luaL_optlstring(L, 3, NULL, &elen) : NULL;
	mg_req *r = check_stream(L);
	mg_buf frame = { 0 };
	int rc;

	if (!r || !r->wsi)
		return closed(L);
	rc = sse ? mg_sse_frame(&frame, event, elen, data, dlen)
		 : mg_ndjson_frame(&frame, data, dlen);
	if (rc) {
		mg_buf_free(&frame);
		return luaL_error(L, "out of memory");
	}
	queue_body(r, frame.data, frame.len);
	mg_buf_free(&frame);
	return write_result(L, r);
}

static int l_stream_sse(lua_State *L) { return stream_framed(L, 1); }
static int l_stream_ndjson(lua_State *L) { return stream_framed(L, 0); }

/* _stream_end(h) -> true | nil, "closed" */
static int l_stream_end(lua_State *L)
{
	mg_req *r = check_stream(L);

	if (!r || !r->wsi)
		return closed(L);
	if (r->chunked)
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
	if (!r || !r->wsi)
		return closed(L);
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

/* _req_alive(h) -> boolean */
static int l_req_alive(lua_State *L)
{
	mg_req *r = check_req(L, 1);
	lua_pushboolean(L, r && r->wsi);
	return 1;
}

/* _req_close(h): drop the client connection now (an unrecoverable stream). */
static int l_req_close(lua_State *L)
{
	mg_req *r = check_req(L, 1);

	if (r && r->wsi) {
		r->close_after = 1;
		lws_set_timeout(r->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
	}
	return 0;
}

static int l_handle_tostring(lua_State *L)
{
	mg_req *r = *(mg_req **)luaL_checkudata(L, 1, REQ_HANDLE_MT);
	lua_pushfstring(L, "moongate.request (%s)", r ? (r->wsi ? "open" : "gone") : "done");
	return 1;
}

int mg_http_open(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "_respond", l_respond },
		{ "_stream_start", l_stream_start },
		{ "_stream_write", l_stream_write },
		{ "_stream_sse", l_stream_sse },
		{ "_stream_ndjson", l_stream_ndjson },
		{ "_stream_end", l_stream_end },
		{ "_on_drain", l_on_drain },
		{ "_on_close", l_on_close },
		{ "_req_alive", l_req_alive },
		{ "_req_close", l_req_close },
		{ NULL, NULL }
	};

	if (luaL_newmetatable(L, REQ_HANDLE_MT)) {
		lua_pushcfunction(L, l_handle_tostring);
		lua_setfield(L, -2, "__tostring");
		lua_pushliteral(L, "moongate.request");
		lua_setfield(L, -2, "__metatable");
	}
	lua_pop(L, 1);
	for (const luaL_Reg *f = fns; f->name; f++) {
		lua_pushcfunction(L, f->func);
		lua_setfield(L, -2, f->name);
	}
	return 0;
}

/* ---- the lws callback -------------------------------------------------- */

static const struct {
	int token;
	const char *name;
} methods[] = {
	{ WSI_TOKEN_GET_URI, "GET" },       { WSI_TOKEN_POST_URI, "POST" },
	{ WSI_TOKEN_OPTIONS_URI, "OPTIONS" }, { WSI_TOKEN_PUT_URI, "PUT" },
	{ WSI_TOKEN_PATCH_URI, "PATCH" },   { WSI_TOKEN_DELETE_URI, "DELETE" },
	{ WSI_TOKEN_HEAD_URI, "HEAD" },
};

static int on_request(struct lws *wsi, mg_http_pss *pss, const char *uri, size_t ulen)
{
	mg_worker *w = lws_context_user(lws_get_context(wsi));
	char tmp[16];
	mg_req *r;
	int n;

	if (pss->req) /* a request already in flight on this wsi */
		return -1;
	r = req_new(wsi, w);
	if (!r)
		return -1;
	pss->req = r;
	snprintf(r->method, sizeof r->method, "OTHER");
	for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
		if (lws_hdr_total_length(wsi, methods[i].token) > 0) {
			snprintf(r->method, sizeof r->method, "%s", methods[i].name);
			break;
		}
	if (!strcmp(r->method, "OTHER") &&
	    lws_hdr_copy(wsi, tmp, sizeof r->method, WSI_TOKEN_HTTP_COLON_METHOD) > 0)
		memcpy(r->method, tmp, sizeof r->method);
	r->path = strndup(uri, ulen);
	n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
	if (n > 0) {
		r->query = malloc((size_t)n + 1);
		if (r->query && lws_hdr_copy(wsi, r->query, n + 1, WSI_TOKEN_HTTP_URI_ARGS) < 0)
			r->query[0] = 0;
	}
	if (!r->path)
		return -1;

	if (lws_hdr_copy(wsi, tmp, sizeof tmp, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
		char *end;
		unsigned long long cl = strtoull(tmp, &end, 10);
		if (cl > w->cfg->max_body_bytes) {
			r->body_error = BODY_TOO_LARGE;
			r->close_after = 1;
		} else if (cl > 0) {
			r->expect_body = 1;
		}
	} else if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0 ||
		   (r->h2 && strcmp(r->method, "GET") && strcmp(r->method, "HEAD") &&
		    strcmp(r->method, "OPTIONS"))) {
		r->expect_body = 1;
	}
	if (!r->expect_body)
		dispatch(r);
	return 0;
}

static int on_body(mg_http_pss *pss, const char *in, size_t len)
{
	mg_req *r = pss->req;

	if (!r || r->dispatched)
		return 0; /* the rest of a body we already refused */
	if (r->body.len + len > r->w->cfg->max_body_bytes) {
		r->body_error = BODY_TOO_LARGE;
		r->close_after = 1;
		mg_buf_free(&r->body);
		dispatch(r);
		return 0;
	}
	if (mg_buf_append(&r->body, in, len))
		return -1;
	return 0;
}

/* The client went away (or the stream was reset): tell Lua, free. */
static void on_gone(mg_http_pss *pss)
{
	mg_req *r = pss ? pss->req : NULL;

	if (!r)
		return;
	pss->req = NULL;
	r->wsi = NULL;
	if (r->started && (r->chunked || r->h2) && !r->finished)
		mg_stats_add(&mg_global_stats.open_streams, -1);
	if (!r->finished || pending(r)) {
		mg_stats_add(&mg_global_stats.client_disconnects, 1);
		call_ref(r, r->on_close_ref, "close callback");
	}
	req_free(r);
}

int mg_http_callback(struct lws *wsi, enum lws_callback_reasons reason,
		     void *user, void *in, size_t len)
{
	mg_http_pss *pss = user;

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		return on_request(wsi, pss, in, len);
	case LWS_CALLBACK_HTTP_BODY:
		return on_body(pss, in, len);
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (pss->req && !pss->req->dispatched)
			dispatch(pss->req);
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return on_writable(wsi, pss);
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		on_gone(pss);
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}
