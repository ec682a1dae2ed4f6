/* A plain HTTP/1.1 client for http:// upstreams: the request head built
 * once and sent with the body in one writev, Debian's http-parser for the
 * answer, kept-alive connections per loop. libcurl costs about 75k
 * instructions and two poll() calls per transfer whatever the options; this
 * path costs a fraction of it (docs/BENCHMARK.md). upstream.c uses it for
 * http:// URLs unless a provider says `http_client = "curl"`.
 *
 * Ownership (one loop, one thread):
 *   mg_hc      made by mg_hc_new, freed by mg_hc_free, which ends every
 *              request silently and closes every connection.
 *   mg_hc_req  malloc'd by mg_hc_begin; freed once on_done has returned, or
 *              by mg_hc_cancel (later, if that comes from inside one of its
 *              own callbacks). It owns its head, headers and timer.
 *   hc_conn    one per TCP connection, freed in its uv_close callback, which
 *              touches nothing else (the engine may be gone by then). Its
 *              connect and write requests live in it, so their callbacks
 *              always find it. A connection serves one request at a time;
 *              between requests it waits on the engine's idle list, read so
 *              that a hang-up closes it at once.
 *   The timer and a getaddrinfo request are malloc'd and freed in their own
 *   callbacks; a request that goes first leaves them pointing at nothing.
 */
#include "hc.h"
#include "buf.h"
#include "cork.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IDLE_MAX 256      /* idle connections kept per loop */
#define DNS_SLOTS 16      /* host names kept resolved per loop */
#define DNS_TTL_MS 60000  /* as curl's DNS cache */
#define MAX_ADDRS 4       /* addresses tried per name */
#define READ_BUF 65536
#define MAX_HEAD 65536    /* an answer's headers, all together */

typedef struct hc_conn hc_conn;

typedef struct hc_dns {
	char *name; /* "host" malloc'd */
	int port;
	struct sockaddr_storage addr[MAX_ADDRS];
	int n;
	uint64_t expires;
} hc_dns;

struct mg_hc {
	uv_loop_t *loop;
	hc_conn *idle;      /* most recently used first */
	int nidle;
	mg_hc_req *live;    /* every request not yet ended */
	hc_dns dns[DNS_SLOTS];
	int ndns;
	uint64_t warn_at;   /* next "cannot open an upstream socket" may log */
	char rbuf[READ_BUF];
};

struct hc_conn {
	uv_tcp_t tcp;       /* first: the handle's address is the connection's */
	uv_connect_t connect;
	uv_write_t write;
	mg_hc *hc;          /* NULL once it is closing */
	hc_conn *prev, *next; /* on hc->idle */
	mg_hc_req *req;     /* the request on it; NULL while idle */
	char *key;          /* "host:port", malloc'd */
	http_parser parser;
	int reused;         /* served an earlier request */
	int writing;        /* a request is still being written on it */
	int idle;           /* on hc->idle (counted in hc->nidle) */
	int reading;        /* libuv reads it (conn_read) */
};

struct mg_hc_req {
	mg_hc *hc;
	mg_hc_req *prev, *next; /* on hc->live */
	const mg_hc_cbs *cb;
	void *ud;
	hc_conn *conn;
	char *key;          /* "host:port" */
	char *host;         /* NUL-terminated, for the resolver */
	int port;
	mg_buf head;        /* the request head; the body is the caller's */
	const char *body;
	size_t blen;
	uv_timer_t *timer;  /* connect and total limits */
	uv_getaddrinfo_t *gai;
	struct sockaddr_storage addr[MAX_ADDRS];
	int naddr, ai;
	long connect_ms, total_ms;
	int connected;
	int has_host;
	int skip_body;      /* HEAD */
	int got_bytes;      /* answer bytes seen on this connection */
	int retried;        /* sent again once after a kept-alive connection died */
	int paused;
	int in_cb;
	int cancelled;      /* mg_hc_cancel from inside a callback */
	int stopped;        /* a callback said stop */
	int complete;       /* the whole answer is in */
	int bad;            /* refused by its headers: fail_buf says why */
	int no_reuse;       /* the connection ended, or bytes followed the answer */
	int done_pending;   /* complete while paused: ends once resumed */
	int in_send;        /* inside mg_hc_send: failures wait for the loop */
	uint64_t started;   /* for total_ms */
	uint64_t connect_at; /* for connect_ms: the start, or the retry's new connection */
	int status;
	mg_buf pairs, field, value;
	int last_was_value;
	int fail_code;
	char fail_buf[160];
};

static void conn_closed(uv_handle_t *h)
{
	hc_conn *c = (hc_conn *)h;

	free(c->key);
	free(c);
}

/* Takes c off the idle list, if it is on it. */
static void idle_take(hc_conn *c)
{
	if (!c->idle)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		c->hc->idle = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	c->idle = 0;
	c->hc->nidle--;
}

static void conn_close(hc_conn *c)
{
	if (!c->hc)
		return;
	idle_take(c);
	c->hc = NULL;
	c->req = NULL;
	uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

static void alloc_read(uv_handle_t *h, size_t want, uv_buf_t *b)
{
	hc_conn *c = (hc_conn *)h;

	(void)want;
	if (!c->hc) {
		b->base = NULL;
		b->len = 0;
		return;
	}
	b->base = c->hc->rbuf;
	b->len = sizeof c->hc->rbuf;
}

/* Reading on or off. One callback serves an idle connection and one with
 * a request (on_conn_read): swapping callbacks takes a stop and a start,
 * and libuv then asks epoll to add the descriptor again (EEXIST, then a
 * modify: two system calls each time, twice a request). */
static int conn_read(hc_conn *c, int on)
{
	int rc = 0;

	if (on && !c->reading) {
		rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_read, on_conn_read);
		c->reading = rc == 0;
	} else if (!on && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = 0;
	}
	return rc;
}

/* A connection whose answer ended cleanly waits for the next request. */
static void conn_park(hc_conn *c)
{
	mg_hc *hc = c->hc;

	c->req = NULL;
	c->reused = 1;
	c->idle = 1;
	c->prev = NULL;
	c->next = hc->idle;
	if (hc->idle)
		hc->idle->prev = c;
	hc->idle = c;
	hc->nidle++;
	conn_read(c, 1); /* (a hang-up while idle ends it: on_idle_read) */
	if (hc->nidle > IDLE_MAX) { /* the least recently used goes */
		hc_conn *last = hc->idle;
		while (last->next)
			last = last->next;
		conn_close(last);
	}
}

/* Any byte or hang-up on an idle connection ends it. */
static void on_idle_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	(void)b;
	if (n != 0)
		conn_close((hc_conn *)s);
}

static void timer_closed(uv_handle_t *h)
{
	free(h);
}

static void gai_drop(mg_hc_req *r)
{
	if (r->gai) {
		r->gai->data = NULL; /* its callback frees it */
		uv_cancel((uv_req_t *)r->gai);
		r->gai = NULL;
	}
}

/* Unlinks r, keeps or closes its connection, then frees it: on_done first
 * unless it was cancelled. */
static void req_end(mg_hc_req *r, int code, const char *msg)
{
	mg_hc *hc = r->hc;
	hc_conn *c = r->conn;

	if (r->prev)
		r->prev->next = r->next;
	else if (hc->live == r)
		hc->live = r->next;
	if (r->next)
		r->next->prev = r->prev;
	if (r->timer) {
		uv_timer_stop(r->timer);
		uv_close((uv_handle_t *)r->timer, timer_closed);
	}
	gai_drop(r);
	if (c) {
		r->conn = NULL;
		/* (an answer that came before its request was all sent, a 413
		 * say: the rest of that body would reach the next request's
		 * upstream, so the connection goes) */
		if (code == MG_HC_OK && !r->no_reuse && !c->writing && http_should_keep_alive(&c->parser) && !r->cancelled)
			conn_park(c);
		else
			conn_close(c);
	}
	if (!r->cancelled && r->cb) {
		r->in_cb = 1;
		r->cb->on_done(r->ud, code, msg);
	}
	mg_buf_free(&r->head);
	mg_buf_free(&r->pairs);
	mg_buf_free(&r->field);
	mg_buf_free(&r->value);
	free(r->key);
	free(r->host);
	free(r);
}

static void on_deferred(uv_timer_t *t)
{
	mg_hc_req *r = t->data;

	req_end(r, r->fail_code, r->fail_code == MG_HC_OK ? NULL : r->fail_buf);
}

/* Ends r from the loop, not from inside the caller's call. */
static void end_later(mg_hc_req *r, int code)
{
	r->fail_code = code;
	uv_timer_stop(r->timer);
	uv_timer_start(r->timer, on_deferred, 0, 0);
}

static void fail(mg_hc_req *r, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->fail_buf, sizeof r->fail_buf, fmt, ap);
	va_end(ap);
	if (r->in_send)
		end_later(r, code);
	else
		req_end(r, code, r->fail_buf);
}

/* ---- the answer ---------------------------------------------------------- */

static mg_hc_req *parser_req(http_parser *p)
{
	return ((hc_conn *)p->data)->req;
}

/* after a callback: 0 to go on, nonzero to stop the parser */
static int went_on(mg_hc_req *r, int go)
{
	r->in_cb = 0;
	if (!go)
		r->stopped = 1;
	return r->cancelled || r->stopped;
}

static int flush_pair(mg_hc_req *r)
{
	int rc = 0;

	if (r->field.len) {
		if (r->pairs.len + r->field.len + r->value.len > MAX_HEAD)
			rc = -1;
		else
			rc = mg_buf_append_pair(&r->pairs, r->field.data, r->field.len,
						r->value.data ? r->value.data : "", r->value.len);
	}
	r->field.len = r->value.len = 0;
	r->last_was_value = 0;
	return rc;
}

static int on_begin(http_parser *p)
{
	mg_hc_req *r = parser_req(p);

	if (r->complete) { /* bytes after the answer: never reuse it */
		r->no_reuse = 1;
		return -1;
	}
	r->pairs.len = r->field.len = r->value.len = 0;
	r->last_was_value = 0;
	return 0;
}

static int on_field(http_parser *p, const char *at, size_t n)
{
	mg_hc_req *r = parser_req(p);

	if (r->last_was_value && flush_pair(r))
		return -1;
	if (r->field.len + n > MAX_HEAD)
		return -1;
	return mg_buf_append(&r->field, at, n);
}

static int on_value(http_parser *p, const char *at, size_t n)
{
	mg_hc_req *r = parser_req(p);

	r->last_was_value = 1;
	if (r->value.len + n > MAX_HEAD)
		return -1;
	return mg_buf_append(&r->value, at, n);
}

static int on_headers_done(http_parser *p)
{
	mg_hc_req *r = parser_req(p);

	if (flush_pair(r))
		return -1;
	r->status = p->status_code;
	if (r->status >= 100 && r->status < 200)
		return 0; /* an interim answer: the real one follows */
	{ /* a transfer coding other than chunked (gzip, chunked) would reach
	   * the client still coded: refused */
		const char *te = mg_buf_pair(&r->pairs, "transfer-encoding");
		size_t n = te ? strlen(te) : 0;
		while (n && (te[n - 1] == ' ' || te[n - 1] == '\t'))
			n--;
		if (te && !(n == 7 && !strncasecmp(te, "chunked", 7))) {
			snprintf(r->fail_buf, sizeof r->fail_buf,
				 "the upstream's answer has a transfer coding other than chunked");
			r->bad = 1;
			return -1;
		}
	}
	r->in_cb = 1;
	if (went_on(r, r->cb->on_head(r->ud, r->status, r->pairs.data ? r->pairs.data : "", r->pairs.len)))
		return -1;
	return r->skip_body ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	mg_hc_req *r = parser_req(p);

	r->in_cb = 1;
	return went_on(r, r->cb->on_body(r->ud, at, n)) ? -1 : 0;
}

static int on_complete(http_parser *p)
{
	mg_hc_req *r = parser_req(p);

	if (r->status >= 100 && r->status < 200)
		return 0;
	r->complete = 1;
	return 0;
}

static const http_parser_settings answer = {
	.on_message_begin = on_begin,
	.on_header_field = on_field,
	.on_header_value = on_value,
	.on_headers_complete = on_headers_done,
	.on_body = on_body,
	.on_message_complete = on_complete,
};

static void try_connect(mg_hc_req *r);
static void resolve(mg_hc_req *r);
static void on_timer(uv_timer_t *t);
static void arm_limits(mg_hc_req *r);
static hc_dns *dns_slot(const mg_hc_req *r);
static void start_on(mg_hc_req *r, hc_conn *c);

/* The connection died before the answer began: a kept-alive connection
 * the upstream had already closed gets one more try on a new one. */
static int retry_fresh(mg_hc_req *r)
{
	hc_conn *c = r->conn;

	if (!c || !c->reused || r->got_bytes || r->retried)
		return 0;
	r->retried = 1;
	r->no_reuse = 0; /* (it was the old connection's: the new one may stay) */
	r->conn = NULL;
	c->req = NULL;
	conn_close(c);
	r->ai = 0;
	/* a new connection: connect_ms again, within what is left of total_ms */
	r->connected = 0;
	r->connect_at = uv_now(r->hc->loop);
	arm_limits(r);
	resolve(r);
	return 1;
}

/* The answer is in: the request ends now, or once the caller reads again. */
static void answered(mg_hc_req *r)
{
	/* (an answer before its request was all sent: the connection goes,
	 * decided now, as the write may end while the caller pauses) */
	if (r->conn && r->conn->writing)
		r->no_reuse = 1;
	if (r->paused) {
		r->done_pending = 1;
		conn_read(r->conn, 0);
		return;
	}
	req_end(r, MG_HC_OK, NULL);
}

static void read_answer(hc_conn *c, mg_hc_req *r, ssize_t n, const uv_buf_t *b)
{
	if (n < 0) {
		r->no_reuse = 1;
		if (n == UV_EOF) /* the end of a close-delimited answer, or one cut short */
			http_parser_execute(&c->parser, &answer, NULL, 0);
		if (r->complete) {
			answered(r);
		} else if (r->cancelled || r->stopped) {
			req_end(r, MG_HC_EABORT, NULL);
		} else if (!retry_fresh(r)) {
			if (n != UV_EOF)
				fail(r, MG_HC_EUPSTREAM, "Recv failure: %s", uv_strerror((int)n));
			else
				fail(r, MG_HC_EUPSTREAM, r->got_bytes ?
				     "the upstream closed the connection before its answer ended" :
				     "Empty reply from server");
		}
		return;
	}
	r->got_bytes = 1;
	http_parser_execute(&c->parser, &answer, b->base, (size_t)n);
	if (r->bad && !r->cancelled)
		req_end(r, MG_HC_EUPSTREAM, r->fail_buf);
	else if (r->cancelled || (r->stopped && !r->complete))
		req_end(r, MG_HC_EABORT, NULL);
	else if (r->complete)
		answered(r);
	else if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK)
		fail(r, MG_HC_EUPSTREAM, "invalid HTTP answer from the upstream: %s",
		     http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
}

/* Corked: what one read makes the caller write leaves in one write. */
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	hc_conn *c = (hc_conn *)s;
	mg_hc_req *r = c->req;

	if (!r || n == 0 || r->done_pending)
		return;
	mg_cork();
	read_answer(c, r, n, b);
	mg_uncork();
}

static void on_conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	if (((hc_conn *)s)->idle)
		on_idle_read(s, n, b);
	else
		on_read(s, n, b);
}

/* ---- sending -------------------------------------------------------------- */

static void on_written(uv_write_t *w, int status)
{
	hc_conn *c = w->data;
	mg_hc_req *r = c->req;

	c->writing = 0;
	if (!r || status >= 0 || status == UV_ECANCELED)
		return;
	if (retry_fresh(r))
		return;
	if (!r->complete)
		fail(r, MG_HC_EUPSTREAM, "Send failure: %s", uv_strerror(status));
}

static void start_on(mg_hc_req *r, hc_conn *c)
{
	uv_buf_t bufs[2];
	unsigned nb = 1, first = 0;
	int rc;

	r->conn = c;
	c->req = r;
	r->got_bytes = 0;
	r->status = 0;
	http_parser_init(&c->parser, HTTP_RESPONSE);
	c->parser.data = c;
	/* Transfer-Encoding chunked with a Content-Length: chunked wins and the
	 * length is ignored (RFC 9112, 6.3), as curl does */
	c->parser.allow_chunked_length = 1;
	bufs[0] = uv_buf_init(r->head.data, (unsigned)r->head.len);
	if (r->blen)
		bufs[nb++] = uv_buf_init((char *)r->body, (unsigned)r->blen);
	c->write.data = c;
	/* written at once when the socket takes it all (most requests): a
	 * uv_write that completes at once still has libuv ask epoll to modify
	 * the descriptor, one system call a request for nothing */
	rc = uv_try_write((uv_stream_t *)&c->tcp, bufs, nb);
	for (unsigned k = 0; rc > 0 && k < nb; k++) { /* what is left of the bufs */
		size_t took = (size_t)rc < bufs[k].len ? (size_t)rc : bufs[k].len;
		bufs[k].base += took;
		bufs[k].len -= took;
		rc -= (int)took;
	}
	while (first < nb && bufs[first].len == 0)
		first++;
	if (rc == 0 || rc == UV_EAGAIN) {
		rc = 0;
		if (first < nb) {
			c->writing = 1;
			rc = uv_write(&c->write, (uv_stream_t *)&c->tcp, bufs + first, nb - first, on_written);
			if (rc < 0)
				c->writing = 0;
		}
	}
	if (rc < 0 || r->paused)
		conn_read(c, 0);
	else
		rc = conn_read(c, 1);
	if (rc < 0 && !retry_fresh(r))
		fail(r, MG_HC_EUPSTREAM, "Send failure: %s", uv_strerror(rc));
}

static void on_connected(uv_connect_t *cr, int status)
{
	hc_conn *c = cr->data;
	mg_hc_req *r = c->req;

	if (!r) /* the request went first */
		return;
	if (status < 0) {
		r->conn = NULL;
		c->req = NULL;
		conn_close(c);
		if (++r->ai < r->naddr) {
			try_connect(r);
			return;
		}
		fail(r, MG_HC_ECONNECT, "Failed to connect to %s port %d: %s", r->host, r->port, uv_strerror(status));
		return;
	}
	r->connected = 1;
	if (r->ai) {
		/* the address that answered is tried first next time */
		hc_dns *d = dns_slot(r);
		if (d && d->n > r->ai) {
			struct sockaddr_storage t = d->addr[0];
			d->addr[0] = d->addr[r->ai];
			d->addr[r->ai] = t;
		}
	}
	uv_tcp_nodelay(&c->tcp, 1);
	start_on(r, c);
}

static void try_connect(mg_hc_req *r)
{
	mg_hc *hc = r->hc;
	hc_conn *c;
	int rc;

	if (r->ai >= r->naddr) {
		fail(r, MG_HC_ECONNECT, "Failed to connect to %s port %d: no address", r->host, r->port);
		return;
	}
	c = calloc(1, sizeof *c);
	if (!c || !(c->key = strdup(r->key))) {
		free(c);
		fail(r, MG_HC_ECONNECT, "Failed to connect to %s port %d: out of memory", r->host, r->port);
		return;
	}
	uv_tcp_init(hc->loop, &c->tcp);
	c->hc = hc;
	c->req = r;
	r->conn = c;
	c->connect.data = c;
	rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&r->addr[r->ai], on_connected);
	if (rc < 0) {
		r->conn = NULL;
		c->req = NULL;
		conn_close(c);
		if (rc == UV_EMFILE || rc == UV_ENFILE) {
			/* say why, once a second: the client only sees "connect" */
			if (uv_now(hc->loop) >= hc->warn_at) {
				hc->warn_at = uv_now(hc->loop) + 1000;
				mg_log(MG_LOG_WARN, "cannot open an upstream socket: %s (raise the open file limit)",
				       strerror(-rc));
			}
		} else if (++r->ai < r->naddr) {
			try_connect(r);
			return;
		}
		fail(r, MG_HC_ECONNECT, "Failed to connect to %s port %d: %s", r->host, r->port, uv_strerror(rc));
	}
}

/* Ms to the nearer of the two limits still running (connect_ms from
 * connect_at while not connected, total_ms from started), or 0 for none;
 * *which says whether the connect limit is the nearer. */
static uint64_t next_limit(mg_hc_req *r, uint64_t now, int *connect)
{
	uint64_t c = 0, t = 0;

	if (!r->connected && r->connect_ms) {
		uint64_t end = r->connect_at + (uint64_t)r->connect_ms;
		c = end > now ? end - now : 1;
	}
	if (r->total_ms) {
		uint64_t end = r->started + (uint64_t)r->total_ms;
		t = end > now ? end - now : 1;
	}
	*connect = c && (!t || c <= t);
	return *connect ? c : t;
}

static void arm_limits(mg_hc_req *r)
{
	int connect;
	uint64_t ms = next_limit(r, uv_now(r->hc->loop), &connect);

	if (ms)
		uv_timer_start(r->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t)
{
	mg_hc_req *r = t->data;
	uint64_t now = uv_now(r->hc->loop);
	int connect;

	if (!r->connected && r->connect_ms && now - r->connect_at >= (uint64_t)r->connect_ms)
		fail(r, MG_HC_ETIMEDOUT, "Connection timed out after %ld milliseconds", r->connect_ms);
	else if (r->total_ms && now - r->started >= (uint64_t)r->total_ms)
		fail(r, MG_HC_ETIMEDOUT, "Operation timed out after %ld milliseconds", r->total_ms);
	else if (next_limit(r, now, &connect)) /* (connected in time: the total limit goes on) */
		arm_limits(r);
}

/* r's host and port in the DNS cache, fresh or not, or NULL */
static hc_dns *dns_slot(const mg_hc_req *r)
{
	for (int i = 0; i < r->hc->ndns; i++) {
		hc_dns *d = &r->hc->dns[i];
		if (d->port == r->port && !strcmp(d->name, r->host))
			return d;
	}
	return NULL;
}

static hc_dns *dns_find(mg_hc_req *r)
{
	hc_dns *d = dns_slot(r);

	return d && uv_now(r->hc->loop) < d->expires ? d : NULL;
}

static void dns_keep(mg_hc *hc, mg_hc_req *r)
{
	hc_dns *d = dns_slot(r);

	if (!d) {
		if (hc->ndns == DNS_SLOTS) { /* the oldest entry goes */
			free(hc->dns[0].name);
			memmove(&hc->dns[0], &hc->dns[1], (DNS_SLOTS - 1) * sizeof hc->dns[0]);
			hc->ndns--;
		}
		d = &hc->dns[hc->ndns];
		memset(d, 0, sizeof *d);
		if (!(d->name = strdup(r->host)))
			return;
		hc->ndns++;
	}
	d->port = r->port;
	d->n = r->naddr;
	memcpy(d->addr, r->addr, sizeof d->addr);
	d->expires = uv_now(hc->loop) + DNS_TTL_MS;
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
	mg_hc_req *r = g->data;

	free(g);
	if (!r) { /* the request went first */
		uv_freeaddrinfo(res);
		return;
	}
	r->gai = NULL;
	r->naddr = 0;
	for (struct addrinfo *a = status == 0 ? res : NULL; a && r->naddr < MAX_ADDRS; a = a->ai_next) {
		if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) || a->ai_addrlen > sizeof r->addr[0])
			continue;
		memcpy(&r->addr[r->naddr], a->ai_addr, a->ai_addrlen);
		if (a->ai_family == AF_INET)
			((struct sockaddr_in *)&r->addr[r->naddr])->sin_port = htons((uint16_t)r->port);
		else
			((struct sockaddr_in6 *)&r->addr[r->naddr])->sin6_port = htons((uint16_t)r->port);
		r->naddr++;
	}
	uv_freeaddrinfo(res);
	if (!r->naddr) {
		fail(r, MG_HC_ECONNECT, "Could not resolve host: %s", r->host);
		return;
	}
	dns_keep(r->hc, r);
	try_connect(r);
}

static void resolve(mg_hc_req *r)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)&r->addr[0];
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&r->addr[0];
	hc_dns *d;
	struct addrinfo hints;
	int rc;

	memset(&r->addr[0], 0, sizeof r->addr[0]);
	if (uv_ip4_addr(r->host, r->port, v4) == 0 || uv_ip6_addr(r->host, r->port, v6) == 0) {
		r->naddr = 1;
		try_connect(r);
		return;
	}
	if ((d = dns_find(r))) {
		memcpy(r->addr, d->addr, sizeof r->addr);
		r->naddr = d->n;
		try_connect(r);
		return;
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	r->gai = malloc(sizeof *r->gai);
	if (!r->gai) {
		fail(r, MG_HC_ECONNECT, "Could not resolve host: %s (out of memory)", r->host);
		return;
	}
	r->gai->data = r;
	rc = uv_getaddrinfo(r->hc->loop, r->gai, on_resolved, r->host, NULL, &hints);
	if (rc < 0) {
		free(r->gai);
		r->gai = NULL;
		fail(r, MG_HC_ECONNECT, "Could not resolve host: %s (%s)", r->host, uv_strerror(rc));
	}
}

/* ---- the interface ---------------------------------------------------------- */

int mg_hc_parse_url(const char *url, mg_hc_url *u)
{
	const char *p, *h, *he, *end;
	long port = 80;

	if (strncasecmp(url, "http://", 7))
		return -1;
	h = url + 7;
	end = h + strcspn(h, "/?#");
	if (memchr(h, '@', (size_t)(end - h)) || strchr(url, '#'))
		return -1;
	if (*h == '[') {
		he = memchr(h, ']', (size_t)(end - h));
		if (!he)
			return -1;
		u->host = h + 1;
		u->hostlen = (size_t)(he - h - 1);
		p = he + 1;
	} else {
		he = memchr(h, ':', (size_t)(end - h));
		p = he ? he : end;
		u->host = h;
		u->hostlen = (size_t)(p - h);
	}
	if (!u->hostlen || u->hostlen > 255)
		return -1;
	if (p < end) {
		char *q;
		if (*p != ':' || p + 1 == end)
			return -1;
		port = strtol(p + 1, &q, 10);
		if (q != end || port < 1 || port > 65535)
			return -1;
	}
	for (size_t i = 0; i < u->hostlen; i++) {
		char ch = u->host[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '.' || ch == '-' || ch == ':' || ch == '_'))
			return -1;
	}
	u->port = (int)port;
	u->path = *end == '/' ? end : *end ? NULL : "/";
	return u->path ? 0 : -1; /* "http://h?q": let curl make it "/?q" */
}

mg_hc *mg_hc_new(uv_loop_t *loop)
{
	mg_hc *hc = calloc(1, sizeof *hc);

	if (hc)
		hc->loop = loop;
	return hc;
}

void mg_hc_free(mg_hc *hc)
{
	if (!hc)
		return;
	while (hc->live) {
		hc->live->cancelled = 1;
		req_end(hc->live, MG_HC_EABORT, NULL);
	}
	while (hc->idle)
		conn_close(hc->idle);
	for (int i = 0; i < hc->ndns; i++)
		free(hc->dns[i].name);
	free(hc);
}

mg_hc_req *mg_hc_begin(mg_hc *hc, const mg_hc_url *u, const char *method,
		       const mg_hc_cbs *cbs, void *ud)
{
	mg_hc_req *r;

	if (u->port < 1 || u->port > 65535) /* (mg_hc_parse_url's range: r->key has room for 5 digits) */
		return NULL;
	if (!(r = calloc(1, sizeof *r)))
		return NULL;
	r->hc = hc;
	r->cb = cbs;
	r->ud = ud;
	r->port = u->port;
	r->host = strndup(u->host, u->hostlen);
	r->key = malloc(u->hostlen + 8);
	if (!r->host || !r->key ||
	    mg_buf_cat(&r->head, method, " ", u->path, " HTTP/1.1\r\n", (char *)NULL)) {
		free(r->host);
		free(r->key);
		mg_buf_free(&r->head);
		free(r);
		return NULL;
	}
	memcpy(r->key, r->host, u->hostlen); /* host:port */
	r->key[u->hostlen] = ':';
	mg_fmt_u(r->key + u->hostlen + 1, (unsigned)r->port); /* (at most 5 digits and the NUL: room for 7) */
	r->skip_body = !strcmp(method, "HEAD");
	r->next = hc->live;
	if (r->next)
		r->next->prev = r;
	hc->live = r;
	return r;
}

void mg_hc_header(mg_hc_req *r, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);

	if (!nl || strpbrk(name, "\r\n: ") || strpbrk(value, "\r\n"))
		return;
	if (!strcasecmp(name, "content-length") || !strcasecmp(name, "transfer-encoding") ||
	    !strcasecmp(name, "connection"))
		return;
	if (!strcasecmp(name, "host"))
		r->has_host = 1;
	if (!mg_buf_reserve(&r->head, nl + vl + 4)) {
		memcpy(r->head.data + r->head.len, name, nl);
		r->head.len += nl;
		memcpy(r->head.data + r->head.len, ": ", 2);
		r->head.len += 2;
		memcpy(r->head.data + r->head.len, value, vl);
		r->head.len += vl;
		memcpy(r->head.data + r->head.len, "\r\n", 2);
		r->head.len += 2;
	}
}

int mg_hc_send(mg_hc_req *r, const char *body, size_t blen, long connect_ms, long total_ms)
{
	mg_hc *hc = r->hc;
	int ok = 1;

	r->body = body;
	r->blen = body ? blen : 0;
	r->connect_ms = connect_ms > 0 ? connect_ms : 0;
	r->total_ms = total_ms > 0 ? total_ms : 0;
	if (!r->has_host) {
		char port[8];
		mg_fmt_u(port, (unsigned)r->port);
		if (strchr(r->host, ':') && r->port == 80)
			ok = !mg_buf_cat(&r->head, "Host: [", r->host, "]\r\n", (char *)NULL);
		else if (strchr(r->host, ':'))
			ok = !mg_buf_cat(&r->head, "Host: [", r->host, "]:", port, "\r\n", (char *)NULL);
		else if (r->port == 80)
			ok = !mg_buf_cat(&r->head, "Host: ", r->host, "\r\n", (char *)NULL);
		else
			ok = !mg_buf_cat(&r->head, "Host: ", r->key, "\r\n", (char *)NULL);
	}
	/* a body's length; a POST without one says 0 */
	if (ok && (body || !(r->skip_body || !strncmp(r->head.data, "GET ", 4) || !strncmp(r->head.data, "DELETE ", 7))))
	{
		char n[24];
		mg_fmt_u(n, r->blen);
		ok = !mg_buf_cat(&r->head, "Content-Length: ", n, "\r\n", (char *)NULL);
	}
	ok = ok && !mg_buf_append(&r->head, "\r\n", 2);
	r->timer = ok ? malloc(sizeof *r->timer) : NULL;
	if (!r->timer) {
		r->cancelled = 1;
		req_end(r, MG_HC_EABORT, NULL);
		return -1;
	}
	uv_timer_init(hc->loop, r->timer);
	r->timer->data = r;
	r->started = r->connect_at = uv_now(hc->loop);
	arm_limits(r);
	r->in_send = 1;
	/* a kept-alive connection to the same place, else a new one */
	for (hc_conn *c = hc->idle; c; c = c->next) {
		if (strcmp(c->key, r->key))
			continue;
		idle_take(c);
		r->connected = 1;
		start_on(r, c);
		r->in_send = 0;
		return 0;
	}
	resolve(r);
	r->in_send = 0;
	return 0;
}

void mg_hc_pause(mg_hc_req *r, int paused)
{
	r->paused = paused;
	if (!paused && r->done_pending) {
		r->done_pending = 0;
		end_later(r, MG_HC_OK);
		return;
	}
	if (!r->conn || !r->connected || r->complete)
		return;
	conn_read(r->conn, !paused);
}

void mg_hc_cancel(mg_hc_req *r)
{
	r->cancelled = 1;
	if (!r->in_cb)
		req_end(r, MG_HC_EABORT, NULL);
}
