/* The relay of a cleartext WebSocket (see ws_relay.h).
 *
 * client -> lws: each piece goes through r->from_client (ws_guard.h) and
 * only what it passes goes on. An unmasked frame (or a 64-bit length with
 * its top bit set) fails the connection (RFC 6455 5.1): nothing of that
 * frame or after it reaches lws, the client gets a close frame with code
 * 1002 (protocol error), and the connection ends.
 *
 * Where that close goes: a frame of ours may only go in between two of
 * lws's. r->to_client follows lws's answer head and frames; at a boundary
 * the close goes at once, otherwise lws's bytes keep going to the client up
 * to the end of the frame in progress (or of the 101 answer), then the
 * close, and lws's later bytes are dropped. No boundary within FAIL_MS, or
 * lws's side ending first: the connection closes with no close frame
 * (never one cut into a frame of lws's).
 *
 * lws -> client: copied as it comes (r->to_client only measures).
 *
 * Backpressure: a side is not read while more than HIGH bytes (the
 * config's stream_high_water) wait to be written to the other, and a read
 * takes at most HIGH: a slow reader makes the relay hold at most twice it.
 * lws's rx flow control (pool workers, ws.c) thus reaches the client: lws
 * stops reading its end, the pair fills, our queue to it grows, we stop
 * reading the client, its TCP window closes.
 *
 * Ends: the client's FIN goes on as ours on the pair (after what is queued
 * for lws), a client error closes everything at once. lws's end closing
 * (EOF, or a write refused) ends the relay (relay_end): our end of the pair
 * closes, what is queued for the client goes out, then our FIN, then we
 * wait for the client's (at most LINGER_MS), dropping what it sends.
 * WebSocket idleness is ws.c's heartbeats': the timer is only one of the
 * deadlines here, and closes the relay when it fires. Draining the daemon
 * leaves relays alone, like lws's own sockets; its stop closes them
 * (mg_ws_relay_close_all), and closing our end of the pair makes lws close
 * its wsi (ws.c tells Lua and the pool).
 *
 * Calls ws_guard.c, ws.c (mg_ws_adopt), log.c and stats.c; h1.c calls it. */
#include "ws_relay.h"
#include "ctx.h"
#include "log.h"
#include "stats.h"
#include "ws.h"
#include "ws_guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

/* a side is not read while more than this waits for the other; a read
 * takes at most this much too, so a side holds at most twice it */
#define HIGH(r) ((r)->ctx->cfg->stream_high_water > 4096 ? (r)->ctx->cfg->stream_high_water : 4096)
#define FAIL_MS 2000
#define LINGER_MS 2000
#define END_MS 10000 /* for what is queued, to a client that takes nothing */

typedef struct relay {
	uv_tcp_t tcp;           /* the client */
	uv_pipe_t pipe;         /* our end of the socketpair; lws has the other */
	uv_timer_t timer;       /* the deadline in force, if any */
	uv_shutdown_t client_shut, pipe_shut;
	mg_queue node;          /* on the thread's list (mg_ws_relay_start's) */
	mg_ctx *ctx;
	char peer[48];
	int handles_open;       /* freed when all are closed */
	int closing;
	int reading, pipe_open, pipe_reading;
	int client_eof;         /* the client shut its side */
	int failing;            /* a refused frame: waiting for a boundary of lws's */
	int ending;             /* lws is done: the last bytes out, then FIN */
	int lingering;          /* our FIN is out: waiting for the client's */
	mg_ws_guard from_client, to_client;
	size_t q_lws, q_client; /* bytes queued (uv_write) towards each, not yet written */
} relay;

/* A piece queued towards one side; freed by its write callback. */
typedef struct relay_write {
	uv_write_t req; /* first */
	relay *r;
	size_t len;
	int to_client;
	char data[];
} relay_write;

static _Thread_local char read_buf[65536];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	relay *r = h->data;
	size_t n = HIGH(r) < sizeof read_buf ? HIGH(r) : sizeof read_buf;

	(void)suggested;
	*b = uv_buf_init(read_buf, (unsigned)n);
}

static void on_closed(uv_handle_t *h)
{
	relay *r = h->data;

	if (!--r->handles_open)
		free(r);
}

static void relay_close(relay *r)
{
	if (r->closing)
		return;
	r->closing = 1;
	mg_queue_remove(&r->node);
	uv_close((uv_handle_t *)&r->timer, on_closed);
	uv_close((uv_handle_t *)&r->tcp, on_closed);
	if (r->pipe_open) { /* lws sees its end close, and closes the wsi */
		r->pipe_open = 0;
		uv_close((uv_handle_t *)&r->pipe, on_closed);
	}
}

static void on_timeout(uv_timer_t *t)
{
	relay_close(t->data);
}

static void arm(relay *r, uint64_t ms)
{
	if (!r->closing)
		uv_timer_start(&r->timer, on_timeout, ms, 0);
}

static void client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);
static void pipe_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);
static void relay_end(relay *r);

/* Starts or stops reading s, *on saying whether it reads now. */
static void set_reading(uv_stream_t *s, int *on, int want, uv_read_cb cb)
{
	if (want == *on)
		return;
	if (want)
		uv_read_start(s, on_alloc, cb);
	else
		uv_read_stop(s);
	*on = want;
}

/* Reads each side or not, as the other's queue and the state say. */
static void flow(relay *r)
{
	set_reading((uv_stream_t *)&r->tcp, &r->reading,
		     !r->closing && !r->client_eof && (r->failing || r->ending || r->q_lws <= HIGH(r)), client_read);
	set_reading((uv_stream_t *)&r->pipe, &r->pipe_reading,
		     !r->closing && r->pipe_open && r->q_client <= HIGH(r), pipe_read);
}

static void written(uv_write_t *req, int status)
{
	relay_write *w = (relay_write *)req;
	relay *r = w->r;
	int to_client = w->to_client;

	*(to_client ? &r->q_client : &r->q_lws) -= w->len;
	mg_stats_buffered(-(long long)w->len);
	free(w);
	if (r->closing)
		return;
	if (status < 0) {
		if (to_client)
			relay_close(r); /* the client is gone */
		else if (status != UV_ECANCELED)
			relay_end(r); /* lws closed its end */
		return;
	}
	flow(r);
}

/* Sends n bytes towards one side: straight to the kernel when nothing
 * waits before them (so the order holds), the rest copied and queued.
 * -1: that side refuses. */
static int send_to(relay *r, int to_client, const char *p, size_t n)
{
	uv_stream_t *dst = to_client ? (uv_stream_t *)&r->tcp : (uv_stream_t *)&r->pipe;
	size_t *q = to_client ? &r->q_client : &r->q_lws;
	relay_write *w;
	uv_buf_t b;

	if (!n || (!to_client && !r->pipe_open))
		return 0;
	if (!*q) {
		int m;
		b = uv_buf_init((char *)p, (unsigned)n);
		m = uv_try_write(dst, &b, 1);
		if (m < 0 && m != UV_EAGAIN)
			return -1;
		if (m > 0) {
			p += m;
			n -= (size_t)m;
		}
		if (!n)
			return 0;
	}
	w = malloc(sizeof *w + n);
	if (!w)
		return -1;
	memcpy(w->data, p, n);
	w->r = r;
	w->len = n;
	w->to_client = to_client;
	b = uv_buf_init(w->data, (unsigned)n);
	if (uv_write(&w->req, dst, &b, 1, written)) {
		free(w);
		return -1;
	}
	*q += n;
	mg_stats_buffered((long long)n); /* (/stats buffered_bytes) */
	return 0;
}

static void on_pipe_shut(uv_shutdown_t *req, int status)
{
	(void)req;
	(void)status;
}

/* Our FIN is out (after every queued byte): wait for the client's. */
static void client_shut(uv_shutdown_t *req, int status)
{
	relay *r = req->data;

	if (r->closing)
		return;
	if (status < 0 || r->client_eof) {
		relay_close(r);
		return;
	}
	r->lingering = 1;
	arm(r, LINGER_MS);
	flow(r);
}

/* lws's side is over (or cut off): our end of the pair closes, lws closes
 * its wsi; the client gets what is queued for it, then our FIN. */
static void relay_end(relay *r)
{
	if (r->ending || r->closing)
		return;
	r->ending = 1;
	if (r->pipe_open) { /* (queued writes to lws end as cancelled) */
		r->pipe_open = 0;
		r->pipe_reading = 0;
		uv_close((uv_handle_t *)&r->pipe, on_closed);
	}
	r->client_shut.data = r;
	if (uv_shutdown(&r->client_shut, (uv_stream_t *)&r->tcp, client_shut)) {
		relay_close(r);
		return;
	}
	arm(r, END_MS);
	flow(r);
}

/* At a frame boundary of lws's: our close frame, 1002, then the end (only
 * the end when lws has sent a close frame already: one is all a
 * connection may carry). */
static void fail_close(relay *r)
{
	static const char close_1002[4] = { (char)0x88, 0x02, 0x03, (char)0xEA };

	if (!r->to_client.close_seen && send_to(r, 1, close_1002, sizeof close_1002)) {
		relay_close(r);
		return;
	}
	relay_end(r);
}

static void fail(relay *r)
{
	mg_log(MG_LOG_INFO, "WebSocket client %s sent %s at byte %llu: closing with 1002", r->peer[0] ? r->peer : "-",
	       r->from_client.err == MG_WS_GUARD_UNMASKED ? "an unmasked frame" : "a 64-bit length with its top bit set",
	       (unsigned long long)r->from_client.err_at);
	r->failing = 1;
	if (mg_ws_guard_at_boundary(&r->to_client)) {
		fail_close(r);
		return;
	}
	arm(r, FAIL_MS); /* no boundary by then: closed, no close frame */
	flow(r);
}

static void client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	relay *r = s->data;

	if (r->closing)
		return;
	if (nread > 0) {
		size_t ok;
		if (r->failing || r->ending)
			return; /* dropped: nothing more goes to lws */
		ok = mg_ws_guard_feed(&r->from_client, b->base, (size_t)nread, 0);
		if (send_to(r, 0, b->base, ok)) {
			relay_end(r);
			return;
		}
		if (r->from_client.err)
			fail(r);
		else
			flow(r);
		return;
	}
	if (nread == 0)
		return;
	if (nread != UV_EOF || r->lingering) {
		relay_close(r); /* reset, or the FIN we waited for */
		return;
	}
	r->client_eof = 1;
	flow(r); /* stops reading it */
	/* lws reads EOF after what is queued, and closes (its end closing ends
	 * the relay) */
	if (!r->failing && !r->ending && r->pipe_open &&
	    uv_shutdown(&r->pipe_shut, (uv_stream_t *)&r->pipe, on_pipe_shut))
		relay_end(r);
}

static void pipe_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	relay *r = s->data;

	if (r->closing || r->ending)
		return;
	if (nread > 0) {
		/* failing: only up to the end of lws's frame in progress */
		size_t n = mg_ws_guard_feed(&r->to_client, b->base, (size_t)nread, r->failing);
		if (send_to(r, 1, b->base, n)) {
			relay_close(r);
			return;
		}
		if (r->failing && mg_ws_guard_at_boundary(&r->to_client))
			fail_close(r);
		else
			flow(r);
		return;
	}
	if (nread < 0)
		relay_end(r); /* EOF or an error: lws is done */
}

int mg_ws_relay_start(mg_ctx *ctx, mg_queue *list, int fd, const char *peer, const char *head, size_t head_len,
		      const char *rest, size_t rest_len)
{
	relay *r = calloc(1, sizeof *r);
	int sv[2];
	size_t ok;

	if (!r) {
		close(fd);
		return -1;
	}
	r->ctx = ctx;
	snprintf(r->peer, sizeof r->peer, "%s", peer ? peer : "");
	mg_ws_guard_init(&r->from_client, 0);
	mg_ws_guard_init(&r->to_client, 1);
	uv_tcp_init(ctx->loop, &r->tcp);
	uv_timer_init(ctx->loop, &r->timer);
	r->tcp.data = r->timer.data = r;
	r->handles_open = 2;
	mg_queue_insert_tail(list, &r->node);
	if (uv_tcp_open(&r->tcp, fd)) {
		close(fd);
		goto fail;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		goto fail;
	uv_pipe_init(ctx->loop, &r->pipe, 0);
	r->pipe.data = r;
	r->handles_open++;
	r->pipe_open = 1; /* relay_close closes it from here on */
	if (uv_pipe_open(&r->pipe, sv[0])) {
		close(sv[0]);
		close(sv[1]);
		goto fail;
	}
	if (mg_ws_adopt(ctx, sv[1], r->peer)) /* (closes sv[1] on failure) */
		goto fail;
	ok = mg_ws_guard_feed(&r->from_client, rest, rest_len, 0);
	if (send_to(r, 0, head, head_len) || send_to(r, 0, rest, ok))
		goto fail;
	if (r->from_client.err)
		fail(r);
	else
		flow(r);
	return 0;
fail:
	relay_close(r);
	return -1;
}

void mg_ws_relay_close_all(mg_queue *list)
{
	while (!mg_queue_empty(list)) /* relay_close takes it off the list */
		relay_close(mg_queue_data(mg_queue_head(list), relay, node));
}
