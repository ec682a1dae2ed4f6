/* TLS connections through libwebsockets: HTTP/1.1 and HTTP/2 (ALPN); the
 * WebSocket reasons go to ws.c.
 *
 * Each lws wsi (a connection, or an HTTP/2 stream) carries an mg_http_pss
 * that lws allocates; pss->req is the request in flight on it, owned by this
 * file until mg_req_free(). r->conn is the wsi while it lives.
 */
#include "http_lws.h"
#include "lws_hdr.h"
#include "http.h"
#include "fast.h"
#include "log.h"
#include "ctx.h"
#include "ws.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(MG_OUT_HEADROOM >= LWS_PRE, "r->out needs LWS_PRE bytes of headroom");

#define MAX_WRITE (64 * 1024)
#define H2_MAX_WRITE 16384
#define HDR_SPACE 4096

/* ---- transport --------------------------------------------------------- */

static int hdr_room(mg_req *r, unsigned char **p, unsigned char **end)
{
	if (!r->hdr.cap && mg_buf_reserve(&r->hdr, LWS_PRE + HDR_SPACE))
		return -1;
	if (!r->hdr.len)
		r->hdr.len = LWS_PRE;
	*p = (unsigned char *)r->hdr.data + r->hdr.len;
	*end = (unsigned char *)r->hdr.data + r->hdr.cap - 1;
	return 0;
}

static int lws_hdr_begin(mg_req *r, int status)
{
	unsigned char *p, *end;

	if (hdr_room(r, &p, &end) ||
	    lws_add_http_header_status(r->conn, (unsigned)status, &p, end))
		return -1;
	r->hdr.len = (size_t)((char *)p - r->hdr.data);
	return 0;
}

static int lws_hdr_add(mg_req *r, const char *name, size_t nlen, const char *value, size_t vlen)
{
	unsigned char *p, *end;
	char hname[132];

	if (nlen + 2 > sizeof hname || hdr_room(r, &p, &end))
		return -1;
	memcpy(hname, name, nlen);
	hname[nlen] = ':';
	hname[nlen + 1] = 0;
	if (lws_add_http_header_by_name(r->conn, (unsigned char *)hname,
					(const unsigned char *)value, (int)vlen, &p, end))
		return -1;
	r->hdr.len = (size_t)((char *)p - r->hdr.data);
	return 0;
}

static int lws_hdr_end(mg_req *r)
{
	unsigned char *p, *end;

	if (hdr_room(r, &p, &end) || lws_finalize_http_header(r->conn, &p, end))
		return -1;
	r->hdr.len = (size_t)((char *)p - r->hdr.data);
	return 0;
}

static void lws_want_write(mg_req *r)
{
	lws_callback_on_writable(r->conn);
}

static void lws_abort(mg_req *r)
{
	r->close_after = 1;
	lws_set_timeout(r->conn, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
}

static const mg_transport lws_transport = {
	lws_hdr_begin, lws_hdr_add, lws_hdr_end, lws_want_write, lws_abort,
};

/* ---- writing ----------------------------------------------------------- */

/* Returns 0 to keep the connection, -1 to close it. */
static int on_writable(struct lws *wsi, mg_http_pss *pss)
{
	mg_req *r = pss->req;
	size_t n, left;
	int flags, last, m;

	if (!r || !r->started)
		return 0;
	if (pss->draining) /* lws calls back only once it sent what it held */
		goto complete;
	if (!r->hdr_sent) {
		flags = LWS_WRITE_HTTP_HEADERS;
		last = r->h2 && r->finished && !mg_req_pending(r);
		if (last)
			flags |= LWS_WRITE_H2_STREAM_END;
		n = r->hdr.len - LWS_PRE;
		if (lws_write(wsi, (unsigned char *)r->hdr.data + LWS_PRE, n, flags) != (int)n)
			return -1;
		r->bytes_sent += n;
		r->hdr_sent = 1;
		mg_buf_free(&r->hdr);
		if (last)
			goto complete;
		if (mg_req_pending(r) || r->finished)
			lws_callback_on_writable(wsi);
		return 0;
	}

	left = mg_req_pending(r);
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
		mg_req_sent(r, n); /* may run Lua */
		if (pss->req != r)
			return 0;
	}
	if (last && lws_partial_buffered(lws_get_network_wsi(wsi))) {
		/* lws took the last bytes but could not send them all yet (an
		 * HTTP/2 stream's go out on its connection): ending the
		 * transaction now would leave them there */
		pss->draining = 1;
		lws_callback_on_writable(wsi);
		return 0;
	}
	if (!last) {
		if (mg_req_pending(r) || r->finished)
			lws_callback_on_writable(wsi);
		return 0;
	}
complete:
	m = r->close_after;
	pss->req = NULL;
	pss->draining = 0;
	mg_req_free(r);
	if (m)
		return -1;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---- requests ---------------------------------------------------------- */

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
	mg_ctx *ctx = lws_context_user(lws_get_context(wsi));
	char tmp[24];
	mg_req *r;
	int n, expect_body = 0;

	if (pss->req)
		return -1;
	r = mg_req_new(ctx, &lws_transport, wsi);
	if (!r)
		return -1;
	pss->req = r;
	r->line_read = 1; /* and every header: a client that leaves now gets a 499 line */
	r->h2 = lws_get_network_wsi(wsi) != wsi;
	mg_ws_peer(wsi, r->peer, sizeof r->peer); /* (a relayed socket's too) */
	if (ctx->phase >= MG_PHASE_DRAIN && !r->h2)
		r->close_after = 1; /* the daemon stops: the connection's last request */
	snprintf(r->method, sizeof r->method, "OTHER");
	for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
		if (lws_hdr_total_length(wsi, methods[i].token) > 0) {
			snprintf(r->method, sizeof r->method, "%s", methods[i].name);
			break;
		}
	if (mg_buf_append(&r->path, uri, ulen) || mg_buf_append(&r->path, "", 1))
		return -1;
	r->path.len--;
	n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
	if (n > 0 && !mg_buf_reserve(&r->query, (size_t)n + 1)) {
		int m = lws_hdr_copy(wsi, r->query.data, n + 1, WSI_TOKEN_HTTP_URI_ARGS);
		r->query.len = m > 0 ? (size_t)m : 0;
	}
	if (mg_lws_copy_headers(wsi, &ctx->req_headers, &r->headers))
		return -1;

	if (lws_hdr_copy(wsi, tmp, sizeof tmp, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
		unsigned long long cl = strtoull(tmp, NULL, 10);
		if (cl > ctx->cfg->max_body_bytes) {
			r->body_error = MG_BODY_TOO_LARGE;
			r->close_after = 1;
		} else if (cl > 0) {
			expect_body = 1;
		}
	} else if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0 ||
		   (r->h2 && strcmp(r->method, "GET") && strcmp(r->method, "HEAD") &&
		    strcmp(r->method, "OPTIONS"))) {
		expect_body = 1;
	}
	/* no lws timeout while Lua owns the request; streams may be long */
	if (!expect_body) {
		lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
		mg_req_dispatch(r);
	}
	return 0;
}

static int on_body(mg_http_pss *pss, const char *in, size_t len)
{
	mg_req *r = pss->req;

	if (!r || r->dispatched)
		return 0; /* the rest of a body we already refused */
	if (r->body.len + len > r->ctx->cfg->max_body_bytes) {
		r->body_error = MG_BODY_TOO_LARGE;
		r->close_after = 1;
		mg_buf_free(&r->body);
		mg_req_dispatch(r);
		return 0;
	}
	return mg_buf_append(&r->body, in, len) ? -1 : 0;
}

static void on_gone(mg_http_pss *pss)
{
	mg_req *r = pss ? pss->req : NULL;

	if (!r)
		return;
	pss->req = NULL;
	pss->draining = 0;
	if (r->dispatched)
		mg_req_gone(r);
	mg_req_free(r);
}

int mg_http_lws_callback(struct lws *wsi, enum lws_callback_reasons reason,
			 void *user, void *in, size_t len)
{
	mg_http_pss *pss = user;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
	case LWS_CALLBACK_ESTABLISHED:
	case LWS_CALLBACK_RECEIVE:
	case LWS_CALLBACK_RECEIVE_PONG:
	case LWS_CALLBACK_SERVER_WRITEABLE:
	case LWS_CALLBACK_CLOSED:
		return mg_ws_callback(wsi, (int)reason, pss ? &pss->ws : NULL, in, len);
	case LWS_CALLBACK_WSI_DESTROY:
		if (pss && pss->ws)
			mg_ws_callback(wsi, (int)reason, &pss->ws, in, len);
		mg_ws_wsi_destroyed(wsi);
		break;
	case LWS_CALLBACK_HTTP:
		return on_request(wsi, pss, in, len);
	case LWS_CALLBACK_HTTP_BODY:
		return on_body(pss, in, len);
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (pss->req && !pss->req->dispatched) {
			lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
			if (!mg_fast_try(pss->req)) /* (no Lua call when it takes it) */
				mg_req_dispatch(pss->req);
		}
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
