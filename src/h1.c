/* Cleartext HTTP/1.1 on libuv, parsed by http-parser through h1_parse.c
 * (which fills each mg_req and decides what is refused; h1.c reads, answers
 * and hands over).
 *
 * One mg_h1_conn per TCP connection, owned by the worker thread that
 * accepted it and freed in the uv_close callback of its tcp handle (after
 * its timer is closed too). At most one request is in flight per connection:
 * bytes of pipelined requests wait in conn->in, and the parser stays paused,
 * until the response in flight is out. The socket keeps being read meanwhile
 * (up to a cap) so that a client that goes away is seen at once.
 *
 * A response often ends inside a callback of libcurl's (the upstream's last
 * bytes arrive), where starting another transfer is refused: the pipelined
 * request that follows is therefore dispatched from the event loop, by the
 * thread's idle handle (h1_thread.idle, opened on first use and closed by
 * mg_h1_close_all), never from inside the callback that ended the previous
 * one.
 *
 * Per-thread state (h1_thread) sits in the thread's context slot
 * MG_SLOT_H1 (ctx.h): made by mg_h1_thread_init, freed in the close
 * callback of its idle handle after mg_h1_close_all.
 *
 * A WebSocket Upgrade request is handed to a relay (ws_relay.c) and on to
 * the worker's lws vhost: the socket (dup'ed, since our handle closes its
 * own descriptor), with the request head rebuilt from what was parsed and
 * any bytes read after it. The relays are on the thread's list
 * (h1_thread.relays) and close with its connections.
 *
 * Why not libwebsockets for this: lws 4.1.6 spins on a pipelined request
 * that follows one with a body, and cannot write to a connection whose rx it
 * flow-controls. TLS connections (HTTP/1.1 and HTTP/2) still go to lws.
 */
#include "h1.h"
#include "h1_parse.h"
#include "http.h"
#include "fast.h"
#include "log.h"
#include "ctx.h"
#include "stats.h"
#include "ws_relay.h"

#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct mg_h1_conn {
	uv_tcp_t tcp;          /* first: the handle's address is the conn's */
	mg_queue node;         /* on the worker's open connections (h1_thread.conns) */
	uv_timer_t timer;      /* header/body read timeout, keep-alive idle */
	mg_ctx *ctx;
	mg_h1_parse hp;        /* the parse (h1_parse.c); hp.req is req while parsed */
	mg_buf in;             /* received, not yet parsed */
	size_t in_off;
	mg_req *req;           /* being parsed, or in flight */
	uv_write_t wreq;
	mg_buf inflight;       /* bytes handed to uv_write, until its callback */
	size_t inflight_n;
	int writing;
	int flushing, flush_again; /* flush re-entry guard (Lua runs inside) */
	int processing, again; /* conn_process re-entry guard */
	int reading;
	int deferred;          /* 1: on the worker's list for its idle handle;
				* 2: on the list the idle callback is serving */
	struct mg_h1_conn *defer_next;
	int closing;
	int lingering;         /* response out, FIN sent, draining input */
	int peer_shut;         /* the client shut its side after a whole request: answer, then close */
	int probes;            /* ... and how many times we looked whether it is still there */
	uv_shutdown_t shutdown_req;
	int handles_open;      /* tcp and timer: freed when both are closed */
	char peer[48];         /* the client's address, found once at adopt */
} mg_h1_conn;

/* A worker thread's h1 state: ctx->slot[MG_SLOT_H1], owned by the thread. */
typedef struct h1_thread {
	mg_queue conns;        /* its open connections (mg_h1_conn.node) */
	mg_queue relays;       /* its WebSockets being relayed (ws_relay.h) */
	mg_h1_conn *deferred;  /* those whose pipelined request waits for ... */
	uv_idle_t idle;        /* ... this, in the loop's idle phase */
	int idle_open;
} h1_thread;

static h1_thread *h1_of(mg_ctx *ctx)
{
	return ctx->slot[MG_SLOT_H1];
}

static const mg_transport h1_transport;

/* a request being received may go this long without bytes */
#define READ_TIMEOUT_MS(c) ((uint64_t)(c)->ctx->cfg->request_timeout * 1000)
#define MAX_QUEUED_INPUT(c) ((c)->ctx->cfg->max_body_bytes + 65536)
#define IN_KEEP 4096 /* c->in kept between requests up to this size */

static void conn_close(mg_h1_conn *c);
static void conn_process(mg_h1_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

/* ---- life -------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
	mg_h1_conn *c = h->data;

	if (--c->handles_open)
		return;
	mg_buf_free(&c->in);
	mg_h1_parse_free(&c->hp);
	mg_buf_free(&c->inflight);
	free(c);
}

static void undefer(mg_h1_conn *c)
{
	mg_h1_conn **p = &h1_of(c->ctx)->deferred;

	while (*p && *p != c)
		p = &(*p)->defer_next;
	if (*p)
		*p = c->defer_next;
	c->defer_next = NULL;
	c->deferred = 0;
}

static void conn_close(mg_h1_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	if (c->deferred == 1)
		undefer(c);
	mg_queue_remove(&c->node);
	if (c->req) {
		mg_req *r = c->req;
		c->req = NULL;
		if (r->dispatched)
			mg_req_gone(r);
		else if (r->method[0] && c->hp.parser.http_major && !c->hp.ws_upgrade)
			r->line_read = 1; /* left mid-request: its access line says 499 */
		mg_req_free(r);
	}
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void flush(mg_h1_conn *c);

static void on_timeout(uv_timer_t *t)
{
	mg_h1_conn *c = t->data;

	if (!c->lingering && c->req && c->req->dispatched)
		return; /* Lua owns the request now; upstream timeouts apply */
	if (!c->lingering && c->req && !c->req->started) {
		/* a request that stopped arriving: say so before closing */
		c->req->close_after = 1;
		c->req->dispatched = 1; /* C answers; Lua never sees it */
		mg_req_fail(c->req, 408, "request timeout: the client stopped sending its request");
		flush(c);
		return;
	}
	conn_close(c);
}

/* A half-closed client that has no answer yet: is its socket still there
 * (see on_read)? The interim answer sent at its FIN makes a socket closed
 * for good reset the connection; look soon, then once a second. */
static void probe(uv_timer_t *t)
{
	mg_h1_conn *c = t->data;
	struct tcp_info ti;
	socklen_t len = sizeof ti;
	uv_os_fd_t fd;
	int err = 0;
	socklen_t elen = sizeof err;

	if (c->closing || !c->req || c->req->started)
		return; /* from the first byte of the answer, writes tell */
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 &&
	    ((getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE) ||
	     (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err))) {
		conn_close(c); /* gone: what it asked for is cancelled */
		return;
	}
	c->probes++;
	uv_timer_start(&c->timer, probe, c->probes < 3 ? 20u * c->probes : 1000u, 0);
}

static void arm_timer(mg_h1_conn *c, uint64_t ms)
{
	if (!c->closing)
		uv_timer_start(&c->timer, on_timeout, ms, 0);
}

/* ---- writing ----------------------------------------------------------- */

static void on_shutdown(uv_shutdown_t *req, int status)
{
	(void)req;
	(void)status;
}

/* Closing right after a response to a client that is still sending would
 * reset the connection and could destroy the response in flight: send FIN,
 * then read and drop what comes until EOF or two seconds. */
static void linger(mg_h1_conn *c)
{
	c->lingering = 1;
	if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown)) {
		conn_close(c);
		return;
	}
	arm_timer(c, 2000);
	if (c->peer_shut) { /* nothing more comes: the FIN was the end */
		conn_close(c);
		return;
	}
	if (!c->reading) {
		c->reading = 1;
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	}
}

static void on_idle(uv_idle_t *h)
{
	h1_thread *t = h->data;
	mg_h1_conn *list = t->deferred;

	/* the ones waiting now; any added meanwhile wait for the next turn */
	t->deferred = NULL;
	for (mg_h1_conn *c = list; c; c = c->defer_next)
		c->deferred = 2; /* a close meanwhile leaves this list alone */
	while (list) {
		mg_h1_conn *c = list;
		list = c->defer_next;
		c->defer_next = NULL;
		c->deferred = 0;
		if (!c->closing)
			conn_process(c);
	}
	if (!t->deferred)
		uv_idle_stop(h);
}

/* Has the loop run conn_process(c) soon, from its idle phase. */
static void defer(mg_h1_conn *c)
{
	h1_thread *t = h1_of(c->ctx);

	if (c->deferred)
		return;
	if (!t->idle_open) {
		uv_idle_init(c->ctx->loop, &t->idle);
		t->idle.data = t;
		t->idle_open = 1;
	}
	c->deferred = 1;
	c->defer_next = t->deferred;
	t->deferred = c;
	uv_idle_start(&t->idle, on_idle);
}

static void finish_request(mg_h1_conn *c)
{
	mg_req *r = c->req;
	int keep = !r->close_after;

	c->req = NULL;
	mg_req_free(r);
	if (!keep) {
		linger(c);
		return;
	}
	/* next request: pipelined bytes first, then the socket */
	mg_h1_parse_next(&c->hp);
	arm_timer(c, (uint64_t)c->ctx->cfg->keepalive_timeout * 1000);
	if (c->processing || c->in_off == c->in.len)
		conn_process(c); /* its caller's loop goes on, or nothing waits */
	else
		defer(c); /* we may be inside a curl callback: dispatch from the loop */
}

static void on_written(uv_write_t *wr, int status)
{
	mg_h1_conn *c = wr->data;

	c->writing = 0;
	mg_stats_buffered(-(long long)c->inflight_n);
	c->inflight_n = 0;
	mg_buf_empty(&c->inflight, 1 << 20); /* (a large frame's: not for the rest of the stream) */
	if (c->closing)
		return;
	if (status < 0) {
		conn_close(c);
		return;
	}
	if (c->req)
		mg_req_drain_check(c->req); /* may run Lua */
	if (!c->closing)
		flush(c);
}

static void flush_once(mg_h1_conn *c);

/* Lua may run inside a flush (the drain callback) and queue or end the
 * response: that asks for another round instead of a nested flush, so the
 * request is only ever freed by the outermost one. */
static void flush(mg_h1_conn *c)
{
	if (c->flushing) {
		c->flush_again = 1;
		return;
	}
	c->flushing = 1;
	do {
		c->flush_again = 0;
		flush_once(c);
	} while (c->flush_again && !c->closing);
	c->flushing = 0;
}

static void flush_once(mg_h1_conn *c)
{
	mg_req *r = c->req;
	size_t n, off;
	uv_buf_t b;
	int m;

	if (c->writing || c->closing || !r)
		return;
	n = mg_req_pending(r);
	if (n) {
		b = uv_buf_init(r->out.data + r->out_off, (unsigned)n);
		m = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		if (m < 0 && m != UV_EAGAIN) {
			conn_close(c);
			return;
		}
		if (m > 0)
			mg_req_sent(r, (size_t)m); /* may run Lua, which may queue more */
		if (c->closing || c->req != r || c->writing)
			return;
		n = mg_req_take(r, &c->inflight, &off);
		if (n) {
			/* the kernel is full: uv_write the rest, without a copy */
			b = uv_buf_init(c->inflight.data + off, (unsigned)n);
			c->wreq.data = c;
			c->inflight_n = n;
			c->writing = 1;
			if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written)) {
				c->writing = 0;
				mg_stats_buffered(-(long long)n);
				c->inflight_n = 0;
				conn_close(c);
			}
			return;
		}
	}
	if (r->finished)
		finish_request(c);
}

static void h1_want_write(mg_req *r)
{
	mg_h1_conn *c = r->conn;

	if (c && !c->writing)
		flush(c);
}

static void h1_abort(mg_req *r)
{
	if (r->conn)
		conn_close(r->conn);
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 529: return "Overloaded";
	default: return "Status";
	}
}

static int h1_hdr_begin(mg_req *r, int status)
{
	char code[24];

	mg_fmt_u(code, (unsigned)status);
	return mg_buf_cat(&r->out, "HTTP/1.1 ", code, " ", reason(status), "\r\nserver: moongate\r\n", (char *)NULL);
}

static int h1_hdr_add(mg_req *r, const char *name, size_t nlen, const char *value, size_t vlen)
{
	if (mg_buf_reserve(&r->out, nlen + vlen + 4))
		return -1;
	mg_buf_append(&r->out, name, nlen);
	mg_buf_append(&r->out, ": ", 2);
	mg_buf_append(&r->out, value, vlen);
	return mg_buf_append(&r->out, "\r\n", 2);
}

static int h1_hdr_end(mg_req *r)
{
	return mg_buf_append(&r->out, "\r\n", 2);
}

static const mg_transport h1_transport = {
	h1_hdr_begin, h1_hdr_add, h1_hdr_end, h1_want_write, h1_abort,
};

/* ---- parsing (h1_parse.c) ---------------------------------------------- */

static mg_req *on_begin(mg_h1_parse *p)
{
	mg_h1_conn *c = p->ud;

	c->req = mg_req_new(c->ctx, &h1_transport, c);
	if (!c->req)
		return NULL;
	memcpy(c->req->peer, c->peer, sizeof c->peer);
	p->draining = c->ctx->phase >= MG_PHASE_DRAIN;
	if (p->draining) /* the daemon stops: the last on this connection */
		c->req->close_after = 1;
	arm_timer(c, READ_TIMEOUT_MS(c)); /* for the headers, all of them */
	return c->req;
}

/* Gives the connection to a relay and lws as a WebSocket: the rebuilt head
 * first, then whatever followed it. Our handle and its descriptor close;
 * the relay owns the duplicate. */
static void ws_handoff(mg_h1_conn *c)
{
	mg_req *r = c->req;
	mg_buf head = { 0 };
	uv_os_fd_t fd;
	int nfd = -1, rc;
	size_t i = 0;

	rc = mg_buf_appendf(&head, "GET %s%s", r->path.data ? r->path.data : "/",
			    r->query.len ? "?" : "");
	if (!rc && r->query.len)
		rc = mg_buf_append(&head, r->query.data, r->query.len);
	if (!rc)
		rc = mg_buf_append(&head, " HTTP/1.1\r\n", 11);
	while (!rc && i < r->headers.len) {
		const char *name = r->headers.data + i;
		const char *value = name + strlen(name) + 1;
		rc = mg_buf_appendf(&head, "%s: %s\r\n", name, value);
		i += strlen(name) + strlen(value) + 2;
	}
	if (!rc)
		rc = mg_buf_append(&head, "\r\n", 2);
	/* dup(), not fcntl(F_DUPFD_CLOEXEC): ThreadSanitizer follows dup only */
	if (!rc && !uv_fileno((uv_handle_t *)&c->tcp, &fd) && (nfd = dup(fd)) >= 0)
		fcntl(nfd, F_SETFD, FD_CLOEXEC);
	if (nfd >= 0 && mg_ws_relay_start(c->ctx, &h1_of(c->ctx)->relays, nfd, c->peer, head.data, head.len,
					  c->in.data + c->in_off, c->in.len - c->in_off))
		mg_log(MG_LOG_DEBUG, "WebSocket relay not started");
	mg_buf_free(&head);
	c->in.len = c->in_off = 0;
	conn_close(c);
}

/* Answers a request line or header block http-parser refused. */
static void bad_request(mg_h1_conn *c, enum http_errno err)
{
	mg_req *r = c->req;
	int begun = r != NULL; /* on_message_begin ran: the parser is past its first byte */

	if (!r) {
		r = c->req = mg_req_new(c->ctx, &h1_transport, c);
		if (!r) {
			conn_close(c);
			return;
		}
	}
	mg_log(MG_LOG_DEBUG, "bad request: %s", http_errno_description(err));
	/* past the method (a URL too long for on_url to have seen it): a HEAD
	 * is still a HEAD */
	if (!r->method[0] && begun && err != HPE_INVALID_METHOD && err != HPE_CB_message_begin)
		mg_h1_parse_method(r, &c->hp.parser);
	r->close_after = 1;
	r->dispatched = 1; /* C answers; Lua never sees it */
	if (mg_h1_parse_refusal(err) == 431) {
		char msg[96];
		snprintf(msg, sizeof msg, "Request header fields too large: the limit is %zu bytes.",
			 c->ctx->cfg->max_header_bytes);
		mg_req_fail(r, 431, msg);
	} else {
		/* http_parser's own words: "invalid character in content-length
		 * header", "invalid HTTP method", ... (no quotes or backslashes) */
		char msg[160];
		snprintf(msg, sizeof msg, "malformed HTTP request: %s", http_errno_description(err));
		mg_req_fail(r, 400, msg);
	}
	flush(c);
}

/* Runs the parser over buffered input and dispatches each request it
 * completes (or one that must be refused early), one at a time. */
static void conn_process(mg_h1_conn *c)
{
	if (c->processing) {
		c->again = 1;
		return;
	}
	if (c->lingering)
		return;
	c->processing = 1;
	do {
		c->again = 0;
		while (!c->closing && !(c->req && c->req->dispatched) && c->in_off < c->in.len) {
			size_t n = mg_h1_parse_execute(&c->hp, c->in.data + c->in_off, c->in.len - c->in_off);
			enum http_errno err = HTTP_PARSER_ERRNO(&c->hp.parser);

			c->in_off += n;
			if (c->hp.send_continue) {
				uv_buf_t b = uv_buf_init("HTTP/1.1 100 Continue\r\n\r\n", 25);
				c->hp.send_continue = 0;
				uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
			}
			if (c->hp.ws_upgrade) {
				c->processing = 0;
				ws_handoff(c);
				return;
			}
			if (err == HPE_PAUSED && c->req) {
				uv_timer_stop(&c->timer);
				if (!mg_fast_try(c->req)) /* (no Lua call when it takes it) */
					mg_req_dispatch(c->req); /* may answer and finish at once */
			} else if (err != HPE_OK && err != HPE_PAUSED) {
				bad_request(c, err);
			}
			if (err != HPE_OK && (c->lingering || !c->req))
				break; /* paused with nothing to serve: wait for finish_request */
		}
	} while (c->again && !c->closing && !c->lingering);
	c->processing = 0;
	if (c->closing)
		return;
	if (c->in_off == c->in.len) {
		c->in_off = c->in.len = 0;
		if (c->in.cap > IN_KEEP) /* a large request's: not for the wait */
			mg_buf_free(&c->in);
	} else if (c->in_off > c->in.cap / 2) {
		memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
		c->in.len -= c->in_off;
		c->in_off = 0;
	}
	/* bound what a pipelining client can make us hold */
	if (c->in.len - c->in_off > MAX_QUEUED_INPUT(c)) {
		if (c->reading) {
			uv_read_stop((uv_stream_t *)&c->tcp);
			c->reading = 0;
		}
	} else if (!c->reading && !c->peer_shut) {
		c->reading = 1;
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	}
}

/* Every read lands in this thread's buffer and is copied into the
 * connection's own (c->in), which grows only to what it must hold: a
 * connection waiting on a long stream keeps a few hundred bytes, not the
 * 64 KiB a read may bring. */
static _Thread_local char read_buf[65536];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)h;
	(void)suggested;
	*b = uv_buf_init(read_buf, sizeof read_buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	mg_h1_conn *c = s->data;

	if (nread > 0) {
		if (c->lingering) {
			c->in.len = c->in_off = 0;
			return;
		}
		if (mg_buf_append(&c->in, b->base, (size_t)nread)) {
			conn_close(c); /* out of memory */
			return;
		}
		conn_process(c);
		/* a body still arriving gets READ_TIMEOUT_MS from its last bytes,
		 * not from its first: a slow upload that keeps coming is not cut
		 * off (the headers have one deadline: no slowloris) */
		if (!c->closing && c->req && !c->req->dispatched && c->hp.in_body)
			arm_timer(c, READ_TIMEOUT_MS(c));
		return;
	}
	if (nread == 0)
		return;
	/* A client that sent a whole request and then shut its side (a
	 * half-close: `nc -N`, some scripts) still gets its answer, then the
	 * connection closes; probe() tells it from one that closed for good.
	 * One whose answer has started and that closes is gone: its upstream
	 * is cancelled at once. */
	if (nread == UV_EOF && c->req && c->req->dispatched && !c->req->started && !c->lingering &&
	    !c->req->http10) {
		uv_buf_t cont = uv_buf_init("HTTP/1.1 100 Continue\r\n\r\n", 25);
		c->peer_shut = 1;
		c->req->close_after = 1;
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = 0;
		/* an interim answer, which every HTTP/1.1 client must take before
		 * the real one (RFC 9110, 15.2): a socket closed for good answers
		 * it with a reset, which probe() sees */
		uv_try_write((uv_stream_t *)&c->tcp, &cont, 1);
		uv_timer_start(&c->timer, probe, 5, 0);
		return;
	}
	/* EOF or error: whatever is in flight has lost its client */
	conn_close(c);
}

int mg_h1_adopt(mg_ctx *ctx, int fd)
{
	h1_thread *t = h1_of(ctx);
	mg_h1_conn *c = calloc(1, sizeof *c);

	if (!c) {
		close(fd);
		return -1;
	}
	mg_queue_init(&c->node); /* on no list yet: removing it is harmless */
	c->ctx = ctx;
	if (uv_tcp_init(ctx->loop, &c->tcp)) {
		free(c);
		close(fd);
		return -1;
	}
	c->tcp.data = c;
	c->handles_open = 1;
	if (uv_tcp_open(&c->tcp, fd)) {
		close(fd);
		c->closing = 1;
		uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
		return -1;
	}
	uv_timer_init(ctx->loop, &c->timer);
	c->timer.data = c;
	c->handles_open = 2;
	{ /* the client's address: the gate's stand-in for a key name */
		struct sockaddr_storage sa;
		int len = sizeof sa;
		if (!uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len)) {
			if (sa.ss_family == AF_INET6)
				uv_ip6_name((struct sockaddr_in6 *)&sa, c->peer, sizeof c->peer);
			else if (sa.ss_family == AF_INET)
				uv_ip4_name((struct sockaddr_in *)&sa, c->peer, sizeof c->peer);
		}
	}
	mg_queue_insert_head(&t->conns, &c->node);
	mg_h1_parse_init(&c->hp, ctx->cfg->max_header_bytes, ctx->cfg->max_body_bytes, on_begin, c);
	arm_timer(c, (uint64_t)ctx->cfg->keepalive_timeout * 1000);
	c->reading = 1;
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	return 0;
}

#define DRAIN_IDLE_MS 50

void mg_h1_drain(mg_ctx *ctx)
{
	mg_queue *q;

	/* (nothing below closes a connection: arm_timer only arms its timer) */
	mg_queue_foreach(q, &h1_of(ctx)->conns) {
		mg_h1_conn *c = mg_queue_data(q, mg_h1_conn, node);
		if (c->closing || c->lingering)
			continue;
		c->hp.draining = 1; /* an Upgrade whose head is still coming is answered 503 */
		if (c->req)
			c->req->close_after = 1; /* Connection: close, unless its headers are out */
		else
			/* idle between requests: closed in a moment, unless a
			 * request's first bytes are still on their way in (then
			 * it is the connection's last) */
			arm_timer(c, DRAIN_IDLE_MS);
	}
}

int mg_h1_thread_init(mg_ctx *ctx)
{
	h1_thread *t = calloc(1, sizeof *t);

	if (!t)
		return -1;
	mg_queue_init(&t->conns);
	mg_queue_init(&t->relays);
	ctx->slot[MG_SLOT_H1] = t;
	return 0;
}

static void on_idle_closed(uv_handle_t *h)
{
	free(h->data);
}

void mg_h1_close_all(mg_ctx *ctx)
{
	h1_thread *t = h1_of(ctx);

	if (!t)
		return;
	while (!mg_queue_empty(&t->conns)) /* conn_close takes it off the list */
		conn_close(mg_queue_data(mg_queue_head(&t->conns), mg_h1_conn, node));
	mg_ws_relay_close_all(&t->relays);
	ctx->slot[MG_SLOT_H1] = NULL;
	if (t->idle_open) {
		t->idle_open = 0;
		uv_close((uv_handle_t *)&t->idle, on_idle_closed);
	} else {
		free(t);
	}
}

void mg_h1_init(size_t max_header_bytes)
{
	mg_h1_parse_setup(max_header_bytes);
}
