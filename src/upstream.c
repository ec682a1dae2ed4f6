/* Upstream HTTP over two transports: hc.c (the built-in HTTP/1.1 client)
 * for plain http://, and libcurl multi driven by the Lua state's libuv loop
 * the way curl's docs/examples/multi-uv.c does for the rest; incremental SSE
 * / NDJSON parsing in C and callbacks into Lua, whichever carries it.
 *
 * Ownership and threads:
 *   mg_upstream  one per Lua state (so per worker thread), a userdata in the
 *                registry; its __gc (at lua_close) cancels every transfer
 *                and closes its handles. The uv handles are freed in their
 *                close callbacks, which never touch Lua.
 *   mg_hc        one per mg_upstream (hc.c's engine), freed by its __gc
 *                after every fetch; an hc.c request belongs to its fetch
 *                (fetch_free cancels it) until hc_done, where hc.c takes it
 *                back.
 *   mg_fetch     one per transfer, malloc'd by _fetch and freed by
 *                fetch_free() once the transfer is finished or cancelled; the
 *                Lua handle (a userdata slot) points at it until then and at
 *                NULL after.
 *   mg_sock      one per socket curl opens (CURLOPT_OPENSOCKETFUNCTION ..
 *                CLOSESOCKETFUNCTION) or asks us to watch, freed in its
 *                uv_poll close callback; `byfd` (malloc'd, owned by
 *                mg_upstream) holds every one, by descriptor.
 * Calls into Lua happen from curl callbacks; a Lua callback may cancel the
 * transfer, which is then only marked (curl forbids removing an easy handle
 * from inside its own callbacks) and finished when curl reports it done.
 */
#define _GNU_SOURCE /* memmem */
#include "upstream.h"
#include "buf.h"
#include "cork.h"
#include "hc.h"
#include "http.h"
#include "log.h"
#include "lua_host.h"
#include "sse.h"
#include "stats.h"
#include "tmpl.h"

#include <curl/curl.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua5.1/luv/luv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define UPSTREAM_KEY "moongate.upstream"
#define FETCH_MT "moongate.fetch"
#define MAX_BODY (64 * 1024 * 1024)  /* a whole answer */
#define MAX_FRAME (16 * 1024 * 1024) /* one stream frame, or one line of it, unfinished */


#define SPARE_EASY 32
#define KEEP_IDLE 256 /* idle upstream connections kept per thread */
#define URL_CACHE 16  /* provider URLs kept parsed per thread */

/* A URL parsed once for curl (CURLOPT_CURLU): curl would parse the string
 * again on every transfer. */
typedef struct mg_url {
	char *url; /* malloc'd copy of the string it was parsed from */
	CURLU *u;
} mg_url;

typedef struct mg_upstream {
	CURLM *multi;
	uv_loop_t *loop;
	uv_timer_t *timer;    /* malloc'd: outlives this struct until closed */
	lua_State *L;
	mg_fetch *head;       /* live transfers */
	struct mg_sock **byfd; /* every socket of curl's we watch, by descriptor */
	size_t nbyfd;
	CURL *spare[SPARE_EASY]; /* finished easy handles, reset, for reuse */
	int nspare;
	mg_url urls[URL_CACHE];  /* owned; freed only with the engine, since a
				  * transfer still waiting to connect reads its own */
	int nurls;
	int no_proxy_env; /* no *_proxy variable in the environment */
	mg_hc *hc;        /* plain http:// transfers (hc.c); owned */
	int sweep; /* a transfer was cancelled inside a curl callback: check_done
		    * looks for it (so it walks the list only then) */
	uint64_t socket_warn_at; /* next "cannot open an upstream socket" may log */
} mg_upstream;

typedef struct mg_sock {
	uv_poll_t poll;
	curl_socket_t fd;
	mg_upstream *up;
	int owned;  /* opened by on_open_socket, so closed by on_close_socket */
	int want;   /* UV_READABLE | UV_WRITABLE curl asked for; 0 after REMOVE */
	int events; /* what the poll watches now */
} mg_sock;

struct mg_fetch {
	mg_fetch *prev, *next;
	mg_upstream *up;
	CURL *easy;          /* a curl transfer, or ... */
	mg_hc_req *hreq;     /* ... one of hc.c's (plain http://), until its on_done */
	struct curl_slist *req_headers;
	int mode;
	mg_sse_parser sse;
	mg_buf partial;      /* NDJSON line in progress */
	int stop;
	mg_buf body;         /* MODE_BODY, an error, or `whole`: the whole response */
	mg_buf held;         /* received while paused: fed again on resume */
	mg_buf resp_headers; /* "name\0value\0" of the last response */
	long status;
	int headers_sent;    /* on_headers has run */
	int whole;           /* an SSE request answered with one JSON body: 1;
			      * labelled JSON, first byte not seen yet: 2 */
	int in_curl;         /* inside a curl callback: no removal now */
	int cancelled;
	int paused;
	char errbuf[CURL_ERROR_SIZE];
	const char *fail;    /* our own reason to end it (timeouts, Lua, size) */
	const char *fail_code; /* its code for on_done: ETIMEDOUT, ELUA, ETOOBIG */
	uv_timer_t *gap;     /* first-byte and idle timeouts */
	uint64_t first_byte_ms, idle_ms;
	int got_byte;
	int cb_ref;          /* Lua table of callbacks */
	int body_ref;        /* the request body string curl sends from */
	int hdr_ref;         /* the response headers table, made once */
	mg_req **pipe;       /* _fetch_pipe: the client stream's handle slot */
	int pipe_ref;        /* keeps that handle (and so the slot) alive */
	char pipe_end[4][32]; /* frames of these events still go to Lua */
	size_t pipe_end_len[4];
	int pipe_ends;       /* how many */
	int pipe_unnamed;    /* frames without an event name go to Lua too */
	char err_key[4][32]; /* an error frame's first key ... */
	size_t err_key_len[4];
	char err_val[4][32]; /* ... and that key's string value, when set */
	size_t err_val_len[4];
	int err_keys;
	lua_Integer piped;   /* frames queued on the client's stream by C */
	mg_tmpl *tmpl;       /* _fetch_template: text deltas C writes itself (owned) */
	mg_req **tmpl_to;    /* ... on this client stream's handle slot */
	int tmpl_ref;        /* keeps that handle alive */
	mg_buf tbuf;         /* a templated frame being made */
	mg_fetch **slot;
	int slot_ref;
	mg_fetch_done_fn c_done; /* a C caller's (mg_fetch_start): no Lua callbacks */
	void *c_ud;
};

static void check_done(mg_upstream *up);
static void fetch_header(mg_fetch *f, const char *name, const char *value);

/* ---- curl <-> libuv ----------------------------------------------------- */

/* A connection's uv_poll lives as long as its socket, not as long as curl
 * watches it: curl says CURL_POLL_REMOVE after every transfer on a kept-alive
 * connection and asks again on the next one, and each uv_poll_init /
 * uv_poll_start / uv_poll_stop costs epoll_ctl and ioctl calls. So a
 * REMOVE only clears `want`; the poll stays armed for reading (an idle
 * connection is quiet) and is stopped only if the idle socket turns readable
 * (the server closed it). Curl opens and closes connection sockets through
 * our callbacks, which create and drop the mg_sock (`owned`); `byfd` finds
 * it again. Other sockets curl asks us to watch (its resolver's) it closes
 * itself, so their poll goes at REMOVE, before the number can be reused. */
static void on_sock_closed(uv_handle_t *h)
{
	free(h->data);
}

static mg_sock *sock_find(mg_upstream *up, curl_socket_t fd)
{
	return fd >= 0 && (size_t)fd < up->nbyfd ? up->byfd[fd] : NULL;
}

static void sock_close(mg_sock *s)
{
	mg_upstream *up = s->up;

	if (sock_find(up, s->fd) == s)
		up->byfd[s->fd] = NULL;
	uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void sock_arm(mg_sock *s, int events);

/* Lets curl act on one socket event (or its timeout) and finishes what
 * ended, corked: the frames of one read leave in one write. */
static void drive(mg_upstream *up, curl_socket_t fd, int flags)
{
	int running;

	mg_cork();
	curl_multi_socket_action(up->multi, fd, flags, &running);
	check_done(up);
	mg_uncork();
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	mg_sock *s = p->data;
	int flags = 0;

	if (!s->want) { /* an idle kept-alive connection: curl checks it on reuse */
		sock_arm(s, 0);
		return;
	}
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	drive(s->up, s->fd, flags);
}

static void sock_arm(mg_sock *s, int events)
{
	if (events == s->events)
		return;
	s->events = events;
	if (events)
		uv_poll_start(&s->poll, events, on_poll);
	else
		uv_poll_stop(&s->poll);
}

static mg_sock *sock_new(mg_upstream *up, curl_socket_t fd)
{
	mg_sock *s;

	if ((size_t)fd >= up->nbyfd) {
		size_t n = up->nbyfd ? up->nbyfd : 64;
		mg_sock **grown;

		while (n <= (size_t)fd)
			n *= 2;
		grown = realloc(up->byfd, n * sizeof *grown);
		if (!grown)
			return NULL;
		memset(grown + up->nbyfd, 0, (n - up->nbyfd) * sizeof *grown);
		up->byfd = grown;
		up->nbyfd = n;
	}
	s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	if (uv_poll_init_socket(up->loop, &s->poll, fd)) {
		free(s);
		return NULL;
	}
	s->fd = fd;
	s->up = up;
	s->poll.data = s;
	up->byfd[fd] = s;
	return s;
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp)
{
	mg_upstream *up = userp;
	mg_sock *s = sock_find(up, fd);
	int events = 0;

	(void)e;
	(void)sockp;
	if (what == CURL_POLL_REMOVE) {
		if (s && !s->owned) { /* e.g. the resolver's: curl closes it unseen */
			sock_close(s);
		} else if (s) {
			s->want = 0;
			if (s->events != UV_READABLE)
				sock_arm(s, 0);
		}
		return 0;
	}
	if (!s && !(s = sock_new(up, fd)))
		return -1;
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	s->want = events;
	sock_arm(s, events);
	return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION: a number curl closed behind our back (it
 * never does, but a stale poll on a reused number would hang the socket)
 * loses its old watcher first. */
static curl_socket_t on_open_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *a)
{
	mg_upstream *up = userp;
	curl_socket_t fd;
	mg_sock *stale, *s;

	(void)purpose;
	fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	if (fd < 0) {
		/* curl only says "couldn't connect": say why, once a second */
		if (uv_now(up->loop) >= up->socket_warn_at) {
			up->socket_warn_at = uv_now(up->loop) + 1000;
			mg_log(MG_LOG_WARN, "cannot open an upstream socket: %s%s", strerror(errno),
			       errno == EMFILE || errno == ENFILE ? " (raise the open file limit)" : "");
		}
		return CURL_SOCKET_BAD;
	}
	if ((stale = sock_find(up, fd)))
		sock_close(stale);
	if ((s = sock_new(up, fd)))
		s->owned = 1;
	return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the watcher goes before the descriptor */
static int on_close_socket(void *userp, curl_socket_t fd)
{
	mg_sock *s = sock_find(userp, fd);

	if (s)
		sock_close(s);
	return close(fd);
}

static void on_timeout(uv_timer_t *t)
{
	mg_upstream *up = t->data;

	if (up)
		drive(up, CURL_SOCKET_TIMEOUT, 0);
}

static int on_timer(CURLM *m, long ms, void *userp)
{
	mg_upstream *up = userp;

	(void)m;
	if (ms < 0)
		uv_timer_stop(up->timer);
	else
		uv_timer_start(up->timer, on_timeout, (uint64_t)ms, 0); /* 0: next loop turn */
	return 0;
}

/* ---- transfers ---------------------------------------------------------- */

static void gap_closed(uv_handle_t *h)
{
	free(h);
}

static void fetch_free(mg_fetch *f)
{
	lua_State *L = f->up->L;

	if (f->prev)
		f->prev->next = f->next;
	else
		f->up->head = f->next;
	if (f->next)
		f->next->prev = f->prev;
	if (f->easy) {
		curl_multi_remove_handle(f->up->multi, f->easy);
		if (f->up->nspare < SPARE_EASY) {
			/* a new transfer reuses it: curl_easy_init's allocation
			 * and set-up are a good part of a short request's cost */
			curl_easy_reset(f->easy);
			f->up->spare[f->up->nspare++] = f->easy;
		} else {
			curl_easy_cleanup(f->easy);
		}
	}
	if (f->hreq) {
		mg_hc_cancel(f->hreq);
		f->hreq = NULL;
	}
	curl_slist_free_all(f->req_headers);
	if (f->gap) {
		uv_timer_stop(f->gap);
		uv_close((uv_handle_t *)f->gap, gap_closed);
	}
	if (f->slot)
		*f->slot = NULL;
	if (L) {
		luaL_unref(L, LUA_REGISTRYINDEX, f->cb_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, f->slot_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, f->body_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, f->hdr_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, f->pipe_ref);
		luaL_unref(L, LUA_REGISTRYINDEX, f->tmpl_ref);
	}
	mg_tmpl_free(f->tmpl);
	mg_buf_free(&f->tbuf);
	mg_sse_parser_free(&f->sse);
	mg_buf_free(&f->partial);
	mg_buf_free(&f->body);
	mg_buf_free(&f->held);
	mg_buf_free(&f->resp_headers);
	free(f);
}

/* Pushes callback `name` of f; returns 0 if there is none (nothing pushed). */
static int push_cb(mg_fetch *f, const char *name)
{
	if (f->cb_ref == LUA_NOREF) /* a C caller's (mg_fetch_start) */
		return 0;
	return mg_push_ref_fn(f->up->L, f->cb_ref, name);
}

/* Calls the callback on the stack with nargs; returns its first result as a
 * boolean (true when it returned nothing), or -1 if it raised. */
static int call_cb(mg_fetch *f, int nargs, const char *what)
{
	lua_State *L = f->up->L;
	int r;

	f->in_curl++;
	if (mg_pcall(L, nargs, 1, what)) {
		f->in_curl--;
		lua_pop(L, 1);
		f->fail = "error in a Lua callback";
		f->fail_code = "ELUA";
		f->cancelled = 1;
		f->up->sweep = 1;
		return -1;
	}
	f->in_curl--;
	r = lua_isnil(L, -1) || lua_toboolean(L, -1);
	lua_pop(L, 1);
	return r;
}

/* The response headers as a table, made once and handed to both
 * on_headers and on_done. */
static void push_resp_headers(mg_fetch *f)
{
	lua_State *L = f->up->L;

	if (f->hdr_ref != LUA_NOREF) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, f->hdr_ref);
		return;
	}
	mg_push_pairs(L, &f->resp_headers);
	lua_pushvalue(L, -1);
	f->hdr_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void deliver_headers(mg_fetch *f)
{
	lua_State *L = f->up->L;

	if (f->headers_sent)
		return;
	f->headers_sent = 1;
	if (f->easy)
		curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &f->status);
	if (f->mode == MODE_SSE && f->status < 400) {
		/* an upstream that does not stream answers a stream request with
		 * JSON: read it whole, for Lua to turn into events (if its body
		 * starts as an object does: see take) */
		const char *ct = mg_buf_pair(&f->resp_headers, "content-type");
		if (ct && !strncasecmp(ct, "application/json", 16) &&
		    (ct[16] == '\0' || ct[16] == ';' || ct[16] == ' '))
			f->whole = 2;
	}
	if (!push_cb(f, "on_headers"))
		return;
	lua_pushinteger(L, f->status);
	push_resp_headers(f);
	call_cb(f, 2, "upstream on_headers");
}

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
	mg_fetch *f = ud;
	size_t len = size * n, nl, vs, ve;
	const char *colon;

	if (len >= 5 && !strncmp(buf, "HTTP/", 5)) {
		f->resp_headers.len = 0; /* a new response (after 100, redirects) */
		return len;
	}
	colon = memchr(buf, ':', len);
	if (!colon)
		return len;
	nl = (size_t)(colon - buf);
	vs = nl + 1;
	while (vs < len && (buf[vs] == ' ' || buf[vs] == '\t'))
		vs++;
	ve = len;
	while (ve > vs && (buf[ve - 1] == '\r' || buf[ve - 1] == '\n' || buf[ve - 1] == ' '))
		ve--;
	return mg_buf_append_pair(&f->resp_headers, buf, nl, buf + vs, ve - vs) ? 0 : len;
}

static size_t skip_space(const char *s, size_t i, size_t n)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

/* Is this frame (a JSON object) an upstream's error, by its first key
 * (and that key's string value, when the format names one: vLLM's
 * {"object": "error", ...})? The adapter says which (_fetch_pipe's
 * error_keys). A look at a few bytes: it runs on every piped frame. */
static int error_frame(const mg_fetch *f, const char *data, size_t dlen)
{
	size_t i = skip_space(data, 1, dlen), k, klen;

	if (i >= dlen || data[i] != '"')
		return 0;
	for (int e = 0; e < f->err_keys; e++) {
		klen = f->err_key_len[e];
		if (dlen - i < klen + 2 || memcmp(data + i + 1, f->err_key[e], klen) || data[i + 1 + klen] != '"')
			continue;
		if (!f->err_val_len[e])
			return 1;
		k = skip_space(data, i + klen + 2, dlen);
		if (k >= dlen || data[k] != ':')
			continue;
		k = skip_space(data, k + 1, dlen);
		if (dlen - k >= f->err_val_len[e] + 2 && data[k] == '"'
		    && !memcmp(data + k + 1, f->err_val[e], f->err_val_len[e])
		    && data[k + 1 + f->err_val_len[e]] == '"')
			return 1;
	}
	return 0;
}

/* Whether a frame carries a usage object ("usage": {...}, not null): the
 * upstream's token counts, which Lua reads (access line, metrics, rate
 * limits). A key "usage" inside a JSON string would have its quotes
 * escaped, so a match is the real key. Two frames of a stream at most. */
static int usage_frame(const char *data, size_t dlen)
{
	const char *p = data, *end = data + dlen;

	while ((p = memmem(p, (size_t)(end - p), "\"usage\"", 7))) {
		size_t i = skip_space(data, (size_t)(p - data) + 7, dlen);
		if (i < dlen && data[i] == ':') {
			i = skip_space(data, i + 1, dlen);
			if (i < dlen && data[i] == '{')
				return 1;
		}
		p += 7;
	}
	return 0;
}

/* A piped fetch queues an ordinary frame (a JSON object, not of the end
 * event Lua named, with no usage in it) on the client's stream itself; the
 * rest, and every frame while the client is behind or gone, goes to Lua.
 * Returns 1 if queued. */
static int pipe_frame(mg_fetch *f, const char *data, size_t dlen, const char *event, size_t elen)
{
	if (dlen < 2 || data[0] != '{' || data[dlen - 1] != '}')
		return 0;
	if (f->pipe_unnamed && elen == 0)
		return 0; /* the end could be any unnamed frame */
	for (int i = 0; i < f->pipe_ends; i++)
		if (elen == f->pipe_end_len[i] && !memcmp(event, f->pipe_end[i], elen))
			return 0;
	/* an error frame ends the stream: Lua sees it; and the token counts */
	if (error_frame(f, data, dlen) || usage_frame(data, dlen))
		return 0;
	if (mg_req_pipe_sse(*f->pipe, event, elen, data, dlen) != 0)
		return 0;
	f->piped++;
	mg_stats_add(&mg_global_stats.piped_frames, 1);
	return 1;
}

/* A templated fetch writes a plain text delta's client frame itself
 * (tmpl.h). Returns 1 if queued. Any other frame, and every frame while
 * the client is behind or gone, goes to Lua: the template is dropped then
 * (Lua hands a new one when the stream is steady again). */
static int tmpl_frame(mg_fetch *f, const char *data, size_t dlen, const char *event, size_t elen)
{
	mg_tmpl *t = f->tmpl;
	int rc;

	f->tbuf.len = 0;
	rc = mg_tmpl_apply(t, data, dlen, event, elen, &f->tbuf);
	if (rc == 1 && mg_req_pipe_sse(*f->tmpl_to, t->event, t->elen, f->tbuf.data, f->tbuf.len) == 0) {
		mg_stats_add(&mg_global_stats.templated_frames, 1);
		return 1;
	}
	mg_tmpl_free(t);
	f->tmpl = NULL;
	return 0;
}

/* Hands one frame to Lua's on_frame; a false answer pauses the transfer. */
static void deliver(mg_fetch *f, const char *data, size_t dlen, const char *event, size_t elen)
{
	lua_State *L = f->up->L;

	if (f->cancelled)
		return;
	if (f->pipe && pipe_frame(f, data, dlen, event, elen))
		return;
	if (f->tmpl && tmpl_frame(f, data, dlen, event, elen))
		return;
	if (!push_cb(f, "on_frame"))
		return;
	lua_pushlstring(L, data, dlen);
	if (elen)
		lua_pushlstring(L, event, elen);
	else
		lua_pushnil(L);
	lua_pushinteger(L, f->piped);
	if (call_cb(f, 3, "upstream on_frame") == 0)
		f->paused = 1;
}

static void sse_frame(void *ud, const char *event, size_t elen, const char *data,
		      size_t dlen, const char *id, size_t ilen)
{
	mg_fetch *f = ud;

	(void)id;
	(void)ilen;
	deliver(f, data, dlen, event, elen);
	if (f->cancelled || f->paused)
		f->sse.stop = 1;
}

static void ndjson_line(void *ud, const char *line, size_t len)
{
	mg_fetch *f = ud;

	deliver(f, line, len, NULL, 0);
	if (f->cancelled || f->paused)
		f->stop = 1;
}

/* Parses stream bytes into frames for Lua; when a frame pauses the stream,
 * what is left of buf waits in f->held. */
static void feed(mg_fetch *f, const char *buf, size_t len)
{
	size_t used;

	f->sse.stop = f->stop = 0;
	if (f->mode == MODE_SSE)
		used = mg_sse_parse(&f->sse, buf, len, sse_frame, f);
	else
		used = mg_ndjson_split(&f->partial, &f->stop, buf, len, ndjson_line, f);
	if (used < len && !f->cancelled)
		mg_buf_append(&f->held, buf + used, len - used);
}

static void arm_gap(mg_fetch *f);

/* Answer bytes from either transport: returns len, or 0 to stop it. */
static size_t take(mg_fetch *f, const char *buf, size_t len)
{
	if (f->cancelled)
		return 0;
	f->got_byte = 1;
	arm_gap(f);
	deliver_headers(f);
	if (f->cancelled)
		return 0;
	if (f->whole == 2) { /* labelled JSON: an object, or a mislabelled stream? */
		size_t i = 0;
		while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
			i++;
		if (i == len)
			return len; /* white space only so far: decide on what follows */
		f->whole = buf[i] == '{';
	}
	/* an error answer is read whole, whatever the mode, for its message */
	if (f->mode == MODE_BODY || f->status >= 400 || f->whole) {
		if (f->body.len + len > MAX_BODY) {
			f->fail = "the upstream's answer is over 64 MiB";
			f->fail_code = "ETOOBIG";
			return 0; /* curl ends the transfer; finish() says why */
		}
		return mg_buf_append(&f->body, buf, len) ? 0 : len;
	}
	if (f->held.len || f->paused) { /* paused by Lua: keep the order */
		mg_buf_append(&f->held, buf, len);
	} else {
		feed(f, buf, len);
	}
	if (f->cancelled)
		return 0;
	if ((f->mode == MODE_SSE ? f->sse.line.len + f->sse.data.len : f->partial.len) > MAX_FRAME) {
		f->fail = "an upstream stream frame is over 16 MiB";
		f->fail_code = "ETOOBIG";
		return 0;
	}
	if (f->paused) {
		if (f->gap) /* a slow client is not an idle upstream */
			uv_timer_stop(f->gap);
		if (f->easy)
			curl_easy_pause(f->easy, CURLPAUSE_RECV);
		else
			mg_hc_pause(f->hreq, 1);
	}
	return len;
}

static size_t on_write(char *buf, size_t size, size_t n, void *ud)
{
	return take(ud, buf, size * n);
}

/* Ends the transfer: on_done(err, code, body, status, headers, piped), then
 * free. err and code are the transport's (NULL: it went well); our own
 * reason (f->fail) goes first. */
static void finish(mg_fetch *f, const char *err, const char *code)
{
	lua_State *L = f->up->L;
	int pushed = 0;

	if (f->fail) {
		err = f->fail;
		code = f->fail_code;
	}
	if (f->c_done && (!f->cancelled || f->fail)) {
		if (f->easy)
			curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &f->status);
		f->in_curl++;
		f->c_done(f->c_ud, err, code, (int)f->status, f->body.data ? f->body.data : "", f->body.len,
			  f->resp_headers.data ? f->resp_headers.data : "", f->resp_headers.len);
		f->in_curl--;
	} else if (!f->cancelled || f->fail) {
		if (!err)
			deliver_headers(f);
		pushed = push_cb(f, "on_done");
	}
	if (pushed) {
		if (err)
			lua_pushstring(L, err);
		else
			lua_pushnil(L);
		if (code)
			lua_pushstring(L, code);
		else
			lua_pushnil(L);
		lua_pushlstring(L, f->body.data ? f->body.data : "", f->body.len);
		if (f->easy)
			curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &f->status);
		lua_pushinteger(L, f->status);
		if (f->hdr_ref != LUA_NOREF)
			push_resp_headers(f);
		else /* the last use: no reference to keep */
			mg_push_pairs(L, &f->resp_headers);
		lua_pushinteger(L, f->piped);
		f->in_curl++;
		if (mg_pcall(L, 6, 0, "upstream on_done"))
			lua_pop(L, 1);
		f->in_curl--;
	}
	fetch_free(f);
}

static void finish_curl(mg_fetch *f, CURLcode rc)
{
	finish(f, rc == CURLE_OK ? NULL : f->errbuf[0] ? f->errbuf : curl_easy_strerror(rc),
	       rc == CURLE_OK ? NULL :
	       rc == CURLE_OPERATION_TIMEDOUT ? "ETIMEDOUT" :
	       rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ? "ECONNREFUSED" :
	       "EUPSTREAM");
}

static void check_done(mg_upstream *up)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(up->multi, &left))) {
		mg_fetch *f;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&f);
		finish_curl(f, m->data.result);
	}
	/* transfers cancelled from Lua while curl was busy with them */
	if (!up->sweep)
		return;
	up->sweep = 0;
	for (mg_fetch *f = up->head, *next; f; f = next) {
		next = f->next;
		if (f->cancelled && f->in_curl)
			up->sweep = 1; /* still inside its callback: next time */
		else if (f->cancelled)
			finish(f, "aborted", "EUPSTREAM");
	}
}

static void on_gap(uv_timer_t *t)
{
	mg_fetch *f = t->data;

	f->fail = f->got_byte ? "upstream idle timeout: no data within the idle limit"
			      : "upstream first-byte timeout";
	f->fail_code = "ETIMEDOUT";
	f->cancelled = 1;
	finish(f, f->fail, f->fail_code);
}

static void arm_gap(mg_fetch *f)
{
	uint64_t ms = f->got_byte ? f->idle_ms : f->first_byte_ms;

	if (!f->gap || !ms)
		return;
	uv_timer_start(f->gap, on_gap, ms, 0);
}

/* ---- the per-state engine ----------------------------------------------- */

static void timer_closed(uv_handle_t *h)
{
	free(h);
}

static int l_upstream_gc(lua_State *L)
{
	mg_upstream *up = lua_touserdata(L, 1);

	/* the state is going away: no callback may run any more */
	up->L = NULL;
	while (up->head) {
		mg_fetch *f = up->head;
		f->cancelled = 1;
		fetch_free(f);
	}
	if (up->timer) {
		uv_timer_stop(up->timer);
		up->timer->data = NULL;
		uv_close((uv_handle_t *)up->timer, timer_closed);
		up->timer = NULL;
	}
	mg_hc_free(up->hc); /* its requests went with their fetches */
	up->hc = NULL;
	while (up->nspare)
		curl_easy_cleanup(up->spare[--up->nspare]);
	if (up->multi) {
		curl_multi_cleanup(up->multi);
		up->multi = NULL;
	}
	while (up->nurls) {
		mg_url *u = &up->urls[--up->nurls];
		curl_url_cleanup(u->u);
		free(u->url);
	}
	for (size_t i = 0; i < up->nbyfd; i++) /* curl closed its own already */
		if (up->byfd[i])
			sock_close(up->byfd[i]);
	free(up->byfd);
	up->byfd = NULL;
	up->nbyfd = 0;
	return 0;
}

extern char **environ;

/* Whether the environment names a proxy (http_proxy, HTTPS_PROXY,
 * all_proxy, no_proxy, ...: any name ending in _proxy, in any case). Read
 * once: without one, transfers tell curl so, and it stops looking the
 * variables up on every transfer. */
static int proxy_in_env(void)
{
	for (char **e = environ; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		if (eq && eq - *e >= 6 && !strncasecmp(eq - 6, "_proxy", 6))
			return 1;
	}
	return 0;
}

/* The parsed form of url, made on first use; NULL when the cache is full
 * or curl rejects the URL (the caller passes the string, and curl says
 * why). Parsed with the flags curl uses for CURLOPT_URL. */
static CURLU *parsed_url(mg_upstream *up, const char *url)
{
	CURLU *u;
	char *copy;

	for (int i = 0; i < up->nurls; i++)
		if (!strcmp(up->urls[i].url, url))
			return up->urls[i].u;
	if (up->nurls == URL_CACHE)
		return NULL;
	u = curl_url();
	copy = strdup(url);
	if (!u || !copy ||
	    curl_url_set(u, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME)) {
		curl_url_cleanup(u);
		free(copy);
		return NULL;
	}
	up->urls[up->nurls].url = copy;
	up->urls[up->nurls++].u = u;
	return u;
}

static mg_upstream *get_upstream(lua_State *L)
{
	mg_upstream *up;

	lua_getfield(L, LUA_REGISTRYINDEX, UPSTREAM_KEY);
	up = lua_touserdata(L, -1);
	lua_pop(L, 1);
	if (up)
		return up;
	up = mg_registry_udata(L, UPSTREAM_KEY, sizeof *up, l_upstream_gc);
	up->L = L;
	up->loop = luv_loop(L);
	up->no_proxy_env = !proxy_in_env();
	up->multi = curl_multi_init();
	up->hc = mg_hc_new(up->loop); /* none: every transfer goes to curl */
	up->timer = malloc(sizeof *up->timer);
	if (!up->multi || !up->timer || !up->loop) {
		luaL_error(L, "cannot start the upstream engine (no loop or out of memory)");
		return NULL;
	}
	uv_timer_init(up->loop, up->timer);
	up->timer->data = up;
	curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
	curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
	curl_multi_setopt(up->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
	/* curl's default keeps 4 idle connections per transfer in flight, so a
	 * dip in load closes connections that the next burst opens again */
	curl_multi_setopt(up->multi, CURLMOPT_MAXCONNECTS, (long)KEEP_IDLE);
	return up;
}

/* "name: value" onto the request's header list; a line break in either
 * would smuggle a header, so such a pair is dropped */
static void add_header(mg_fetch *f, const char *name, const char *value)
{
	char line[1024], *big = NULL, *p = line;
	size_t nl = strlen(name), vl = strlen(value);

	if (strpbrk(name, "\r\n") || strpbrk(value, "\r\n"))
		return;
	if (nl + vl + 3 > sizeof line && !(p = big = malloc(nl + vl + 3)))
		return;
	memcpy(p, name, nl);
	p[nl] = ':';
	p[nl + 1] = ' ';
	memcpy(p + nl + 2, value, vl + 1);
	f->req_headers = curl_slist_append(f->req_headers, p);
	free(big);
}

static long opt_ms(lua_State *L, const char *key)
{
	long v = 0;

	lua_getfield(L, 1, key);
	if (lua_isnumber(L, -1))
		v = (long)lua_tonumber(L, -1);
	lua_pop(L, 1);
	return v;
}

static int hc_head(void *ud, int status, const char *pairs, size_t len)
{
	mg_fetch *f = ud;

	f->status = status;
	f->resp_headers.len = 0;
	if (mg_buf_append(&f->resp_headers, pairs, len))
		return 0;
	return !f->cancelled;
}

static int hc_body(void *ud, const char *data, size_t len)
{
	mg_fetch *f = ud;

	return take(f, data, len) == len;
}

static void hc_done(void *ud, int code, const char *message)
{
	mg_fetch *f = ud;

	f->hreq = NULL; /* hc.c frees it once this returns */
	finish(f, code == MG_HC_OK ? NULL : message ? message : "aborted",
	       code == MG_HC_OK ? NULL : code == MG_HC_ETIMEDOUT ? "ETIMEDOUT" :
	       code == MG_HC_ECONNECT ? "ECONNREFUSED" : "EUPSTREAM");
}

/* A curl easy handle set up for the transfer (headers come after). */
static int curl_setup(mg_upstream *up, mg_fetch *f, const mg_fetch_req *q)
{
	const char *url = q->url, *method = q->method;

	f->easy = up->nspare ? up->spare[--up->nspare] : curl_easy_init();
	if (!f->easy)
		return -1;
	{
		CURLU *u = parsed_url(up, url);
		if (u)
			curl_easy_setopt(f->easy, CURLOPT_CURLU, u);
		else
			curl_easy_setopt(f->easy, CURLOPT_URL, url);
	}
	if (up->no_proxy_env) {
		curl_easy_setopt(f->easy, CURLOPT_PROXY, "");
		curl_easy_setopt(f->easy, CURLOPT_NOPROXY, "");
	}
	curl_easy_setopt(f->easy, CURLOPT_PRIVATE, f);
	curl_easy_setopt(f->easy, CURLOPT_ERRORBUFFER, f->errbuf);
	curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(f->easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(f->easy, CURLOPT_HEADERDATA, f);
	curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(f->easy, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
	curl_easy_setopt(f->easy, CURLOPT_OPENSOCKETDATA, up);
	curl_easy_setopt(f->easy, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
	curl_easy_setopt(f->easy, CURLOPT_CLOSESOCKETDATA, up);
	curl_easy_setopt(f->easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(f->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
	/* over TLS, a transfer that starts while a connection to the same host
	 * is still in its handshake waits for it instead of opening its own:
	 * if ALPN picks h2 they share it (20 streams started at once: 1
	 * connection, not 20); if HTTP/1.1, each then opens its own */
	if (!strncmp(url, "https://", 8))
		curl_easy_setopt(f->easy, CURLOPT_PIPEWAIT, 1L);
	if (q->compressed) /* every encoding this libcurl decodes */
		curl_easy_setopt(f->easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(f->easy, CURLOPT_CUSTOMREQUEST, method);
	if (q->body) {
		curl_easy_setopt(f->easy, CURLOPT_POSTFIELDSIZE, (long)q->blen);
		curl_easy_setopt(f->easy, CURLOPT_POSTFIELDS, q->body);
		/* an agent's large body in one send, not 64 KiB pieces each with
		 * its own wait for the socket (curl copies it through this buffer
		 * either way); at most 1 MiB, held only while it is sent */
		if (q->blen > 65536)
			curl_easy_setopt(f->easy, CURLOPT_UPLOAD_BUFFERSIZE,
					 (long)(q->blen < (1 << 20) ? q->blen : (1 << 20)));
	} else if (!strcmp(method, "GET")) {
		curl_easy_setopt(f->easy, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(f->easy, CURLOPT_CUSTOMREQUEST, NULL);
	}
	curl_easy_setopt(f->easy, CURLOPT_CONNECTTIMEOUT_MS, q->connect_ms);
	curl_easy_setopt(f->easy, CURLOPT_TIMEOUT_MS, q->total_ms);
	if (q->insecure) {
		curl_easy_setopt(f->easy, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(f->easy, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	/* no "Expect: 100-continue" round trip; curl's own Accept stays off */
	f->req_headers = curl_slist_append(NULL, "Expect:");
	return 0;
}

/* A transfer for q on up's transports, not started: hc.c's for plain
 * http:// with no proxy in the environment, no compressed answer asked for
 * and no q->curl; libcurl's for the rest. NULL when out of memory. */
static mg_fetch *fetch_new(mg_upstream *up, const mg_fetch_req *q)
{
	mg_fetch *f = calloc(1, sizeof *f);
	mg_hc_url hu;

	if (!f)
		return NULL;
	f->up = up;
	f->cb_ref = f->slot_ref = f->body_ref = f->hdr_ref = f->pipe_ref = f->tmpl_ref = LUA_NOREF;
	f->mode = q->mode;
	if (up->hc && up->no_proxy_env && !q->compressed && !q->curl && mg_hc_parse_url(q->url, &hu) == 0) {
		static const mg_hc_cbs hc_cbs = { hc_head, hc_body, hc_done };
		f->hreq = mg_hc_begin(up->hc, &hu, q->method, &hc_cbs, f);
		if (!f->hreq) {
			free(f);
			return NULL;
		}
	} else if (curl_setup(up, f, q)) {
		if (f->easy)
			curl_easy_cleanup(f->easy);
		free(f);
		return NULL;
	}
	for (const char *const *h = q->headers; h && h[0]; h += 2)
		fetch_header(f, h[0], h[1]);
	return f;
}

static void fetch_header(mg_fetch *f, const char *name, const char *value)
{
	if (f->hreq)
		mg_hc_header(f->hreq, name, value);
	else
		add_header(f, name, value);
}

/* Starts f (its headers all added): 0, or -1 when it cannot (f is freed). */
static int fetch_go(mg_fetch *f, const mg_fetch_req *q)
{
	mg_upstream *up = f->up;

	if (f->easy)
		curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->req_headers);
	f->first_byte_ms = (uint64_t)q->first_byte_ms;
	f->idle_ms = (uint64_t)q->idle_ms;
	if (f->first_byte_ms || f->idle_ms) {
		f->gap = malloc(sizeof *f->gap);
		if (f->gap) {
			uv_timer_init(up->loop, f->gap);
			f->gap->data = f;
		}
	}
	f->next = up->head;
	if (f->next)
		f->next->prev = f;
	up->head = f;
	arm_gap(f);
	if (f->hreq ? mg_hc_send(f->hreq, q->body, q->blen, q->connect_ms, q->total_ms)
		    : curl_multi_add_handle(up->multi, f->easy) != CURLM_OK) {
		f->hreq = NULL; /* mg_hc_send let it go */
		fetch_free(f);
		return -1;
	}
	return 0;
}

mg_fetch *mg_fetch_start(lua_State *L, const mg_fetch_req *q, mg_fetch_done_fn done, void *ud)
{
	mg_upstream *up = get_upstream(L);
	mg_fetch *f = up ? fetch_new(up, q) : NULL;

	if (!f)
		return NULL;
	f->c_done = done;
	f->c_ud = ud;
	return fetch_go(f, q) ? NULL : f;
}

/* _fetch(opts, callbacks) -> handle
 * opts: url, method ("POST"), headers {name = value}, body, stream
 *   ("sse" | "ndjson" | nil for a whole body), connect_timeout_ms,
 *   first_byte_timeout_ms, idle_timeout_ms, total_timeout_ms, insecure,
 *   compressed (send Accept-Encoding and decode the answer), client
 *   ("curl" keeps a plain http:// transfer on libcurl; by default hc.c
 *   carries those, unless compressed or a proxy is set). Read during
 *   the call only: nothing keeps a reference to it, so a caller may reuse
 *   one table.
 * callbacks: on_headers(status, headers), on_frame(data, event, piped) -> more?
 *   (false pauses until _fetch_resume), on_done(err, code, body, status,
 *   headers, piped: how many frames _fetch_pipe queued itself); err is nil on success, and with an err, code is one of
 *   ETIMEDOUT, ECONNREFUSED, EUPSTREAM, ELUA (a callback raised), ETOOBIG
 *   (a whole answer over 64 MiB, a stream frame over 16 MiB). on_done
 *   never runs after _fetch_cancel.
 *   An "sse" fetch answered with a JSON content type (an upstream that does
 *   not stream) gets no on_frame: on_done has the whole body. */
static int l_fetch(lua_State *L)
{
	mg_upstream *up;
	mg_fetch *f;
	const char *stream = NULL;
	mg_fetch_req q = { .method = "POST" };

	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_getfield(L, 1, "url");
	q.url = luaL_checkstring(L, -1);
	lua_getfield(L, 1, "method");
	if (lua_isstring(L, -1))
		q.method = lua_tostring(L, -1);
	lua_getfield(L, 1, "stream");
	if (lua_isstring(L, -1))
		stream = lua_tostring(L, -1);
	lua_getfield(L, 1, "body"); /* stays at index 6 */
	if (lua_type(L, 6) == LUA_TSTRING)
		q.body = lua_tolstring(L, 6, &q.blen);
	if (stream && strcmp(stream, "sse") && strcmp(stream, "ndjson"))
		return luaL_argerror(L, 1, "stream must be \"sse\", \"ndjson\" or nil");
	q.mode = !stream ? MODE_BODY : !strcmp(stream, "sse") ? MODE_SSE : MODE_NDJSON;
	q.connect_ms = opt_ms(L, "connect_timeout_ms");
	q.first_byte_ms = opt_ms(L, "first_byte_timeout_ms");
	q.idle_ms = opt_ms(L, "idle_timeout_ms");
	q.total_ms = opt_ms(L, "total_timeout_ms");
	lua_getfield(L, 1, "compressed");
	q.compressed = lua_toboolean(L, -1);
	lua_getfield(L, 1, "insecure");
	q.insecure = lua_toboolean(L, -1);
	lua_getfield(L, 1, "client");
	q.curl = lua_isstring(L, -1) && !strcmp(lua_tostring(L, -1), "curl");
	lua_pop(L, 3);
	up = get_upstream(L);
	if (!(f = fetch_new(up, &q)))
		return luaL_error(L, "out of memory");
	if (q.body) {
		/* the transport reads the Lua string in place; the ref keeps it
		 * alive (LuaJIT never moves a string) until fetch_free */
		lua_pushvalue(L, 6);
		f->body_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_getfield(L, 1, "headers");
	if (lua_istable(L, -1)) {
		lua_pushnil(L);
		while (lua_next(L, -2)) {
			if (lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1))
				fetch_header(f, lua_tostring(L, -2), lua_tostring(L, -1));
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	lua_pushvalue(L, 2);
	f->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	f->slot = (mg_fetch **)mg_push_handle(L, f, FETCH_MT, &f->slot_ref);
	if (fetch_go(f, &q))
		return luaL_error(L, "cannot start the transfer");
	return 1;
}

void mg_fetch_stop(mg_fetch *f)
{
	if (!f || f->cancelled)
		return;
	f->cancelled = 1;
	if (f->slot) {
		*f->slot = NULL;
		f->slot = NULL;
	}
	if (!f->in_curl)
		fetch_free(f); /* removing the easy handle closes its connection */
	else
		f->up->sweep = 1;
}

static mg_fetch *check_fetch(lua_State *L)
{
	return *(mg_fetch **)luaL_checkudata(L, 1, FETCH_MT);
}

/* _fetch_cancel(h): stop now; the connection is closed, on_done never runs */
static int l_fetch_cancel(lua_State *L)
{
	mg_fetch_stop(check_fetch(L));
	return 0;
}

/* _fetch_resume(h): receive again after on_frame returned false */
static int l_fetch_resume(lua_State *L)
{
	mg_fetch *f = check_fetch(L);

	if (f && f->paused && !f->cancelled) {
		mg_upstream *up = f->up;
		f->paused = 0;
		f->in_curl++;
		if (f->held.len) { /* frames that arrived with the one that paused */
			mg_buf held = f->held;
			memset(&f->held, 0, sizeof f->held);
			feed(f, held.data, held.len);
			mg_buf_free(&held);
		}
		if (!f->paused && !f->cancelled) {
			arm_gap(f);
			if (f->easy)
				curl_easy_pause(f->easy, CURLPAUSE_CONT); /* may deliver at once */
			else
				mg_hc_pause(f->hreq, 0);
		}
		f->in_curl--;
		check_done(up);
	}
	return 0;
}

/* a name of 1 to 31 bytes into dst (NUL-terminated) -> its length */
static size_t short_name(lua_State *L, int idx, char *dst, const char *what)
{
	size_t len = 0;
	const char *s = lua_tolstring(L, idx, &len);

	if (!s || len == 0 || len >= 32)
		luaL_error(L, "_fetch_pipe: %s is a name of 1 to 31 bytes", what);
	memcpy(dst, s, len);
	dst[len] = 0;
	return len;
}

/* marks[field] as a list of at most 4 entries -> how many (0 if absent) */
static int short_list(lua_State *L, int marks, const char *field)
{
	int n;

	lua_getfield(L, marks, field);
	if (lua_isnil(L, -1))
		return 0;
	if (!lua_istable(L, -1) || (n = (int)lua_objlen(L, -1)) > 4)
		return luaL_error(L, "_fetch_pipe: %s is a list of at most 4 names", field);
	return n;
}

/* _fetch_pipe(h, req_handle [, marks]): from now on, ordinary SSE frames
 * of fetch h go straight to the open SSE stream of the request behind
 * req_handle, as they came, without a call into Lua; on_frame still gets
 * the others (see pipe_frame) and on_done runs as before. For a
 * passthrough whose client stream started. marks says which frames Lua
 * must still see, as the stream's format has them:
 *   events = {name, ...}   frames of these events (its end, its errors);
 *   unnamed = true         every frame without an event name (could be one);
 *   error_keys = {"key" | "key=value", ...}  an error frame, by its first
 *                          key (and that key's string value)
 * each list of at most 4 names of 1 to 31 bytes. */
static int l_fetch_pipe(lua_State *L)
{
	mg_fetch *f = check_fetch(L);
	mg_req **slot = mg_req_check_handle(L, 2);
	int n;

	if (!lua_isnoneornil(L, 3))
		luaL_checktype(L, 3, LUA_TTABLE);
	if (!f || f->mode != MODE_SSE)
		return 0;
	f->pipe_ends = f->err_keys = f->pipe_unnamed = 0;
	if (lua_istable(L, 3)) {
		n = short_list(L, 3, "events");
		for (int i = 0; i < n; i++) {
			lua_rawgeti(L, -1, i + 1);
			f->pipe_end_len[i] = short_name(L, -1, f->pipe_end[i], "an end event");
			lua_pop(L, 1);
		}
		f->pipe_ends = n;
		lua_pop(L, 1);
		n = short_list(L, 3, "error_keys");
		for (int i = 0; i < n; i++) {
			char both[64];
			size_t len = 0;
			const char *s, *eq;

			lua_rawgeti(L, -1, i + 1);
			s = lua_tolstring(L, -1, &len);
			if (!s || len >= sizeof both)
				return luaL_error(L, "_fetch_pipe: an error key is \"key\" or \"key=value\"");
			eq = memchr(s, '=', len);
			lua_pushlstring(L, s, eq ? (size_t)(eq - s) : len);
			f->err_key_len[i] = short_name(L, -1, f->err_key[i], "an error key");
			f->err_val_len[i] = 0;
			if (eq) {
				lua_pushlstring(L, eq + 1, len - (size_t)(eq - s) - 1);
				f->err_val_len[i] = short_name(L, -1, f->err_val[i], "an error key's value");
				lua_pop(L, 1);
			}
			lua_pop(L, 2);
		}
		f->err_keys = n;
		lua_pop(L, 1);
		lua_getfield(L, 3, "unnamed");
		f->pipe_unnamed = lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
	luaL_unref(L, LUA_REGISTRYINDEX, f->pipe_ref);
	lua_pushvalue(L, 2);
	f->pipe_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	f->pipe = slot;
	return 0;
}

/* a string field of the template spec, copied (NULL when absent) */
static char *spec_string(lua_State *L, const char *name, size_t *len)
{
	const char *s;
	char *out;

	lua_getfield(L, 3, name);
	s = lua_tolstring(L, -1, len);
	if (!s) {
		lua_pop(L, 1);
		*len = 0;
		return NULL;
	}
	if ((out = malloc(*len + 1)))
		memcpy(out, s, *len + 1);
	lua_pop(L, 1);
	return out;
}

/* _fetch_template(h, req_handle, spec | nil): from now on, each upstream
 * frame that is a plain text delta (spec.from "openai" | "anthropic",
 * spec.kind "text" | "thinking") goes to the client stream req_handle as
 * spec.prefix .. the delta's string (written as cjson writes it) ..
 * spec.suffix, under SSE event spec.event (or none), without Lua; the first
 * frame that is not one goes to Lua as before, and ends the template. nil
 * ends it now. */
static int l_fetch_template(lua_State *L)
{
	mg_fetch *f = check_fetch(L);
	mg_req **slot;
	mg_tmpl *t;
	const char *from, *kind;

	if (f && f->tmpl) {
		mg_tmpl_free(f->tmpl);
		f->tmpl = NULL;
	}
	if (lua_isnoneornil(L, 3) || !f || f->mode != MODE_SSE)
		return 0;
	slot = mg_req_check_handle(L, 2);
	luaL_checktype(L, 3, LUA_TTABLE);
	lua_getfield(L, 3, "from");
	lua_getfield(L, 3, "kind");
	from = lua_tostring(L, -2);
	kind = lua_tostring(L, -1);
	if (!from || !kind || (strcmp(from, "openai") && strcmp(from, "anthropic")) ||
	    (strcmp(kind, "text") && strcmp(kind, "thinking")))
		return luaL_error(L, "_fetch_template: from is \"openai\" or \"anthropic\", kind \"text\" or \"thinking\"");
	if (!(t = calloc(1, sizeof *t)))
		return luaL_error(L, "out of memory");
	t->from = from[0] == 'o' ? MG_TMPL_OPENAI : MG_TMPL_ANTHROPIC;
	t->kind = kind[1] == 'e' ? MG_TMPL_TEXT : MG_TMPL_THINKING;
	lua_pop(L, 2);
	/* installed only once every field checks out (nothing below raises
	 * before that) */
	t->prefix = spec_string(L, "prefix", &t->plen);
	t->suffix = spec_string(L, "suffix", &t->slen);
	t->event = spec_string(L, "event", &t->elen);
	if (!t->prefix || !t->suffix || (t->elen && (memchr(t->event, '\n', t->elen) || memchr(t->event, '\r', t->elen)))) {
		mg_tmpl_free(t);
		return luaL_error(L, "_fetch_template: a prefix, a suffix, and an event name of one line");
	}
	f->tmpl = t;
	luaL_unref(L, LUA_REGISTRYINDEX, f->tmpl_ref);
	lua_pushvalue(L, 2);
	f->tmpl_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	f->tmpl_to = slot;
	return 0;
}

/* _upstream_options{http2_streams = N}: at most N transfers at once on one
 * HTTP/2 connection (curl's CURLMOPT_MAX_CONCURRENT_STREAMS; the server's
 * own SETTINGS limit wins when lower). For this Lua state's engine, before
 * its first transfer. */
static int l_upstream_options(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "http2_streams");
	if (!lua_isnil(L, -1)) {
		lua_Number n = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
		if (!(n >= 1 && n <= 2147483647 && n == (lua_Number)(long)n))
			return luaL_argerror(L, 1, "http2_streams must be an integer from 1 to 2147483647");
		curl_multi_setopt(get_upstream(L)->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)n);
	}
	lua_pop(L, 1);
	return 0;
}

static uv_once_t curl_once = UV_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

int mg_upstream_open(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "_fetch", l_fetch },
		{ "_fetch_cancel", l_fetch_cancel },
		{ "_fetch_resume", l_fetch_resume },
		{ "_fetch_pipe", l_fetch_pipe },
		{ "_fetch_template", l_fetch_template },
		{ "_upstream_options", l_upstream_options },
		{ NULL, NULL }
	};

	uv_once(&curl_once, curl_init_once);
	mg_handle_mt(L, FETCH_MT, NULL);
	mg_set_funcs(L, fns);
	return 0;
}
