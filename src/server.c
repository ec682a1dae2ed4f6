#define _GNU_SOURCE /* accept4 */
/* _serve: start the worker threads, wait for SIGINT / SIGTERM, stop them.
 *
 * Threads and what they own:
 *   main thread   the mg_worker array, the signal handles and its own loop;
 *                 it only touches a worker through uv_async_send(stop_async)
 *                 and, at start-up, the mutex-guarded start_state.
 *   worker k      its loop, lws context, Lua state and every request on them.
 *   log writer    logq.c's: started before the workers, stopped (a bounded
 *                 wait for what is queued) after them.
 * Workers are started one after the other: lws context creation touches
 * process-wide state (plugin loading, OpenSSL), so it is never concurrent.
 */
#include <libwebsockets.h>
#include <openssl/ssl.h>
#include "server.h"
#include "h1.h"
#include "http_lws.h"
#include "log.h"
#include "lua_host.h"
#include "pool.h"
#include "stats.h"
#include "store.h"
#include "ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static const struct lws_protocols protocols[] = {
	{ "http", mg_http_lws_callback, sizeof(mg_http_pss), 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 } /* 4.1.6 has no LWS_PROTOCOL_LIST_TERM */
};

static void lws_log_emit(int level, const char *line)
{
	size_t n = strlen(line);
	int ours = level & LLL_ERR ? MG_LOG_ERROR : level & LLL_WARN ? MG_LOG_WARN :
		   level & (LLL_NOTICE | LLL_USER) ? MG_LOG_INFO : MG_LOG_DEBUG;

	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	/* lws 4.1 reports every adoption with a read buffer at error level */
	if (strstr(line, "adopt_socket_readbuf: calling service"))
		ours = MG_LOG_DEBUG;
	mg_log(ours, "lws: %.*s", (int)n, line);
}

static void set_start_state(mg_worker *w, int state)
{
	uv_mutex_lock(w->start_mutex);
	w->start_state = state;
	uv_cond_signal(w->start_cond);
	uv_mutex_unlock(w->start_mutex);
}

/* lws context creation and teardown touch OpenSSL's process-wide state:
 * creation happens one worker at a time (see the top of this file), and
 * teardown takes this lock, since workers stop together. Two at once leaked
 * an SSL_CTX. */
static uv_mutex_t lws_teardown_lock;
static uv_once_t lws_teardown_once = UV_ONCE_INIT;

static void init_teardown_lock(void)
{
	uv_mutex_init(&lws_teardown_lock);
}

static void destroy_lws(mg_worker *w)
{
	uv_once(&lws_teardown_once, init_teardown_lock);
	uv_mutex_lock(&lws_teardown_lock);
	lws_context_destroy(w->ctx);
	uv_mutex_unlock(&lws_teardown_lock);
}

static void report_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	mg_log(MG_LOG_WARN, "handle still open: %s%s%s",
	       uv_handle_type_name(h->type), uv_is_closing(h) ? " (closing)" : "",
	       uv_is_active(h) ? " (active)" : "");
}

static void on_force_stop(uv_timer_t *t)
{
	mg_log(MG_LOG_WARN, "handles still open 2 s after stop; leaving the loop");
	uv_walk(t->loop, report_walk, NULL);
	uv_stop(t->loop);
}

/* ---- listening ---------------------------------------------------------
 * Each worker binds its own socket with SO_REUSEPORT (lws 4.1 sets it only
 * on Windows), so the kernel spreads connections over the workers; accepted
 * sockets are handed to the worker's lws vhost. */

static int open_listener(mg_worker *w)
{
	mg_server_config *c = (mg_server_config *)w->cfg;
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1, fd, fam;

	memset(&ss, 0, sizeof ss);
	if (strchr(c->host, ':')) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)c->port);
		if (inet_pton(AF_INET6, c->host, &a6->sin6_addr) != 1)
			goto bad_host;
		sl = sizeof *a6;
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)c->port);
		if (inet_pton(AF_INET, c->host, &a4->sin_addr) != 1)
			goto bad_host;
		sl = sizeof *a4;
	}
	fam = ss.ss_family;
	fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, 4096)) {
		int e = errno;
		close(fd);
		errno = e;
		goto fail;
	}
	if (!c->port) { /* the first worker picked the port: the others share it */
		sl = sizeof ss;
		getsockname(fd, (struct sockaddr *)&ss, &sl);
		c->port = ntohs(fam == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						: ((struct sockaddr_in *)&ss)->sin_port);
	}
	w->listen_fd = fd;
	return 0;
bad_host:
	mg_log(MG_LOG_ERROR, "listen: %s is not an IPv4 or IPv6 address", c->host);
	return -1;
fail:
	mg_log(MG_LOG_ERROR, "listen on %s:%d: %s", c->host, c->port, strerror(errno));
	return -1;
}

static void on_accept(uv_poll_t *p, int status, int events)
{
	mg_worker *w = p->data;

	(void)events;
	if (status < 0)
		return;
	for (int i = 0; i < 64; i++) {
		int one = 1, fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				mg_log(MG_LOG_WARN, "accept: %s", strerror(errno));
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (!w->cfg->tls_cert) {
			if (mg_h1_adopt(w, fd))
				mg_log(MG_LOG_WARN, "could not take a connection");
		} else if (!lws_adopt_socket_vhost(w->vhost, fd)) {
			mg_log(MG_LOG_WARN, "could not adopt a connection");
			close(fd);
		}
	}
}

static void on_listen_closed(uv_handle_t *h)
{
	mg_worker *w = h->data;

	close(w->listen_fd);
	w->listen_fd = -1;
}

static void close_listener(mg_worker *w)
{
	if (w->listen_poll_open) {
		w->listen_poll_open = 0;
		uv_poll_stop(&w->listen_poll);
		uv_close((uv_handle_t *)&w->listen_poll, on_listen_closed);
	} else if (w->listen_fd >= 0) {
		close(w->listen_fd);
		w->listen_fd = -1;
	}
}

static void on_wake(mg_outbox_thread *t)
{
	mg_ws_on_wake(t->data);
}

static void on_ws_tick(uv_timer_t *t)
{
	mg_ws_tick(t->data);
}

/* Heartbeats and queue expiry are checked a few times per shortest period. */
static uint64_t tick_ms(const mg_server_config *c)
{
	int m = c->ws_heartbeat_ms;

	if (c->ws_timeout_ms < m)
		m = c->ws_timeout_ms;
	if (c->ws_queue_timeout_ms < m)
		m = c->ws_queue_timeout_ms;
	m /= 4;
	return (uint64_t)(m < 10 ? 10 : m > 1000 ? 1000 : m);
}

static void close_pool_handles(mg_worker *w)
{
	mg_pool_thread_stop(&w->ob);
	if (w->ws_tick_open) {
		w->ws_tick_open = 0;
		uv_close((uv_handle_t *)&w->ws_tick, NULL);
	}
	mg_outbox_thread_stop(&w->ob);
}

static void on_stop(uv_async_t *a)
{
	mg_worker *w = a->data;

	if (w->L && w->handler_ref != LUA_NOREF && mg_push_ref_fn(w->L, w->handler_ref, "shutdown") &&
	    mg_pcall(w->L, 0, 0, "shutdown"))
		lua_pop(w->L, 1);
	close_listener(w);
	mg_h1_close_all(w);
	if (w->ctx)
		destroy_lws(w);
	close_pool_handles(w);
	uv_close((uv_handle_t *)&w->stop_async, NULL);
	/* a leaked handle must not hang the shutdown */
	uv_timer_init(&w->loop, &w->force_stop);
	uv_timer_start(&w->force_stop, on_force_stop, 2000, 0);
	uv_unref((uv_handle_t *)&w->force_stop);
	w->force_stop_armed = 1;
}

static void worker_cleanup(mg_worker *w)
{
	if (w->L) {
		lua_close(w->L); /* luv closes the handles it owns */
		w->L = NULL;
	}
	if (w->force_stop_armed) {
		uv_close((uv_handle_t *)&w->force_stop, NULL);
		w->force_stop_armed = 0;
	}
	uv_run(&w->loop, UV_RUN_DEFAULT);
	if (w->ctx) { /* finish an lws teardown that needed the loop */
		destroy_lws(w);
		uv_run(&w->loop, UV_RUN_DEFAULT);
	}
	if (uv_loop_close(&w->loop)) {
		uv_walk(&w->loop, report_walk, NULL);
		mg_log(MG_LOG_WARN, "worker %d: loop still had handles at exit", w->index);
	}
	mg_buf_free(&w->scratch);
	mg_buf_free(&w->req_headers);
}

static int worker_lua_init(mg_worker *w)
{
	lua_State *L = w->L;

	lua_getglobal(L, "require");
	lua_pushliteral(L, "moongate.worker");
	if (mg_pcall(L, 1, 1, "loading moongate.worker"))
		return -1;
	lua_getfield(L, -1, "init");
	lua_pushstring(L, w->cfg->init_json);
	lua_pushinteger(L, w->index);
	lua_pushinteger(L, w->cfg->workers);
	if (mg_pcall(L, 3, 1, "moongate.worker.init"))
		return -1;
	if (!lua_istable(L, -1)) {
		mg_log(MG_LOG_ERROR, "moongate.worker.init must return a table");
		return -1;
	}
	w->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_pop(L, 1);
	return 0;
}

static int worker_lws_init(mg_worker *w)
{
	struct lws_context_creation_info info;
	void *loops[1] = { &w->loop };
	const mg_server_config *c = w->cfg;

	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* we listen, lws serves */
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_LIBUV;
	info.foreign_loops = loops;
	info.user = w;
	info.pcontext = &w->ctx;
	info.max_http_header_data = (unsigned short)c->max_header_bytes;
	info.max_http_header_pool = 256;
	info.keepalive_timeout = c->keepalive_timeout;
	info.timeout_secs = 30;
	info.server_string = "moongate";
	if (c->tls_cert) {
		/* lws is never a TLS client here (libcurl is), yet it makes a
		 * client SSL_CTX per vhost and tags it with a process-wide
		 * ex_data index that each context's init replaces: with two
		 * workers, one was never freed. All share one we own. */
		info.options |= LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS |
				LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.provided_client_ssl_ctx = c->client_ssl_ctx;
		info.ssl_cert_filepath = c->tls_cert;
		info.ssl_private_key_filepath = c->tls_key;
		/* HTTP/2 only when asked for: lws 4.1.6 sends GOAWAY (all
		 * streams lost) when a DATA frame with a content-length is
		 * followed by more bytes in the same read (two requests with
		 * bodies sent together), and never completes a body without
		 * content-length. See README "HTTPS and HTTP/2". */
		info.alpn = c->tls_http2 ? "h2,http/1.1" : "http/1.1";
	}
	w->ctx = lws_create_context(&info);
	if (!w->ctx)
		return -1;
	w->vhost = lws_get_vhost_by_name(w->ctx, "default");
	if (!w->vhost || open_listener(w))
		return -1;
	if (uv_poll_init(&w->loop, &w->listen_poll, w->listen_fd)) {
		close(w->listen_fd);
		w->listen_fd = -1;
		return -1;
	}
	w->listen_poll.data = w;
	w->listen_poll_open = 1;
	uv_poll_start(&w->listen_poll, UV_READABLE, on_accept);
	return 0;
}

static void worker_main(void *arg)
{
	mg_worker *w = arg;
	char tag[16];

	snprintf(tag, sizeof tag, "w%d", w->index);
	mg_log_set_thread_tag(tag);
	w->handler_ref = LUA_NOREF;
	w->listen_fd = -1;
	if (uv_loop_init(&w->loop)) {
		set_start_state(w, -1);
		return;
	}
	uv_async_init(&w->loop, &w->stop_async, on_stop);
	w->stop_async.data = w;
	mg_outbox_thread_init(&w->ob, &w->loop, w->index, on_wake, w);
	mg_queue_init(&w->ws_conns);
	uv_timer_init(&w->loop, &w->ws_tick);
	w->ws_tick.data = w;
	w->ws_tick_open = 1;
	uv_timer_start(&w->ws_tick, on_ws_tick, tick_ms(w->cfg), tick_ms(w->cfg));
	uv_unref((uv_handle_t *)&w->ws_tick);
	w->L = mg_lua_new(&w->loop, mg_lua_dir(), w->cfg->preload);
	if (w->L) {
		lua_pushlightuserdata(w->L, w);
		lua_setfield(w->L, LUA_REGISTRYINDEX, MG_WORKER_KEY);
		lua_pushlightuserdata(w->L, &w->ob);
		lua_setfield(w->L, LUA_REGISTRYINDEX, MG_OUTBOX_KEY);
		mg_outbox_thread_open(&w->ob);
	}
	if (!w->L || worker_lua_init(w) || worker_lws_init(w)) {
		mg_log(MG_LOG_ERROR, "worker %d could not start", w->index);
		close_listener(w);
		if (w->ctx)
			destroy_lws(w);
		close_pool_handles(w);
		uv_close((uv_handle_t *)&w->stop_async, NULL);
		worker_cleanup(w);
		set_start_state(w, -1);
		return;
	}
	set_start_state(w, 1);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	worker_cleanup(w);
}

/* ---- main thread ------------------------------------------------------- */

/* Each proxied stream holds two descriptors (client and upstream): take the
 * whole open-file limit the system allows, as servers do, and say what it
 * is, since running out shows up as failed connections. */
static void raise_file_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl)) /* an unlimited hard limit */
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	mg_log(MG_LOG_INFO, "open file limit %llu: about %llu streams at once through HTTP/1.1 upstreams",
	       (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_cur / 2);
}

static void on_signal(uv_signal_t *s, int signum)
{
	mg_log(MG_LOG_INFO, "signal %d: stopping", signum);
	uv_stop(s->loop);
}

static char *opt_string(lua_State *L, int idx, const char *key)
{
	char *v = NULL;

	lua_getfield(L, idx, key);
	if (lua_isstring(L, -1))
		v = strdup(lua_tostring(L, -1));
	lua_pop(L, 1);
	return v;
}

static double opt_number(lua_State *L, int idx, const char *key, double def)
{
	double v = def;

	lua_getfield(L, idx, key);
	if (lua_isnumber(L, -1))
		v = lua_tonumber(L, -1);
	lua_pop(L, 1);
	return v;
}

static void free_config(mg_server_config *c)
{
	SSL_CTX_free(c->client_ssl_ctx);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->init_json);
}

/* _serve{host, port, workers, max_body_bytes, max_header_bytes,
 *        stream_high_water, keepalive_timeout, request_timeout, tls_cert, tls_key, tls_http2, init,
 *        verbose, ws_heartbeat_ms, ws_timeout_ms, ws_queue_timeout_ms,
 *        ws_max_message} -> true | nil, message
 * Blocks until SIGINT or SIGTERM. `init` is the string every worker passes to
 * moongate.worker.init. */
static int l_serve(lua_State *L)
{
	mg_server_config c;
	mg_worker *ws;
	uv_loop_t loop;
	uv_signal_t sigint, sigterm;
	uv_mutex_t mu;
	uv_cond_t cond;
	char *host;
	const char *lws_debug;
	int started = 0, failed = 0;

	luaL_checktype(L, 1, LUA_TTABLE);
	memset(&c, 0, sizeof c);
	c.preload = lua_touserdata(L, lua_upvalueindex(1));
	host = opt_string(L, 1, "host");
	snprintf(c.host, sizeof c.host, "%s", host ? host : "127.0.0.1");
	free(host);
	c.port = (int)opt_number(L, 1, "port", 8080);
	c.workers = (int)opt_number(L, 1, "workers", 1);
	c.max_body_bytes = (size_t)opt_number(L, 1, "max_body_bytes", 10 * 1024 * 1024);
	c.max_header_bytes = (size_t)opt_number(L, 1, "max_header_bytes", 16384);
	c.stream_high_water = (size_t)opt_number(L, 1, "stream_high_water", 65536);
	c.keepalive_timeout = (int)opt_number(L, 1, "keepalive_timeout", 60);
	c.request_timeout = (int)opt_number(L, 1, "request_timeout", 30);
	c.ws_heartbeat_ms = (int)opt_number(L, 1, "ws_heartbeat_ms", 25000);
	c.ws_timeout_ms = (int)opt_number(L, 1, "ws_timeout_ms", 30000);
	c.ws_queue_timeout_ms = (int)opt_number(L, 1, "ws_queue_timeout_ms", 30000);
	c.ws_max_message = (size_t)opt_number(L, 1, "ws_max_message", 16 * 1024 * 1024);
	c.tls_cert = opt_string(L, 1, "tls_cert");
	c.tls_key = opt_string(L, 1, "tls_key");
	lua_getfield(L, 1, "tls_http2");
	c.tls_http2 = lua_toboolean(L, -1);
	lua_pop(L, 1);
	if (c.tls_cert)
		c.client_ssl_ctx = SSL_CTX_new(TLS_client_method());
	c.init_json = opt_string(L, 1, "init");
	lua_getfield(L, 1, "verbose");
	c.verbose = lua_toboolean(L, -1);
	lua_pop(L, 1);
	if (c.workers < 1 || c.workers > 256 || c.port < 0 || c.port > 65535 ||
	    c.max_header_bytes > 65535 || !c.init_json || (!c.tls_cert != !c.tls_key) ||
	    c.ws_heartbeat_ms < 1 || c.ws_timeout_ms < 1 || c.ws_queue_timeout_ms < 0 ||
	    c.ws_max_message < 1) {
		free_config(&c);
		return luaL_argerror(L, 1, "invalid server options");
	}

	/* lws 4.1 formats every log line into one static buffer, so two threads
	 * logging at once corrupt each other's lines: lws may log while the
	 * workers start one at a time (certificate and plugin errors), and is
	 * silent once they all serve; failures that matter are logged by us.
	 * MOONGATE_LWS_LOG=<lws log bitmask> keeps lws talking (for debugging
	 * lws itself, best with --workers 1). */
	lws_debug = getenv("MOONGATE_LWS_LOG");
	lws_set_log_level(lws_debug ? atoi(lws_debug) :
			  c.verbose ? LLL_ERR | LLL_WARN | LLL_NOTICE : LLL_ERR | LLL_WARN,
			  lws_log_emit);
	ws = calloc((size_t)c.workers, sizeof *ws);
	if (!ws || uv_loop_init(&loop)) {
		free(ws);
		free_config(&c);
		return luaL_error(L, "out of memory");
	}
	uv_mutex_init(&mu);
	uv_cond_init(&cond);
	/* from here on no thread waits on stderr: a full pipe drops lines */
	if (mg_log_async_start())
		mg_log(MG_LOG_WARN, "could not start the log's writer thread: lines are written as they come");
	mg_stats_set_workers(c.workers);
	raise_file_limit();
	mg_h1_init(c.max_header_bytes);
	/* before anything says "listening": a stop request from then on is ours */
	uv_signal_init(&loop, &sigint);
	uv_signal_init(&loop, &sigterm);
	uv_signal_start(&sigint, on_signal, SIGINT);
	uv_signal_start(&sigterm, on_signal, SIGTERM);

	for (int i = 0; i < c.workers; i++) {
		mg_worker *w = &ws[i];
		w->index = i + 1;
		w->cfg = &c;
		w->start_mutex = &mu;
		w->start_cond = &cond;
		if (uv_thread_create(&w->thread, worker_main, w)) {
			failed = 1;
			break;
		}
		started++;
		uv_mutex_lock(&mu);
		while (!w->start_state)
			uv_cond_wait(&cond, &mu);
		uv_mutex_unlock(&mu);
		if (w->start_state < 0) {
			failed = 1;
			break;
		}
	}

	if (!lws_debug)
		lws_set_log_level(0, lws_log_emit);
	if (!failed) {
		mg_log(MG_LOG_INFO, "moongate %s listening on %s://%s:%d with %d worker%s%s",
		       MOONGATE_VERSION, c.tls_cert ? "https" : "http", c.host, c.port,
		       c.workers, c.workers == 1 ? "" : "s",
		       !c.tls_cert ? "" : c.tls_http2 ? " (HTTP/2 and HTTP/1.1)" : " (HTTP/1.1)");
		uv_run(&loop, UV_RUN_DEFAULT);
	}
	uv_close((uv_handle_t *)&sigint, NULL);
	uv_close((uv_handle_t *)&sigterm, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	for (int i = 0; i < started; i++) {
		if (ws[i].start_state > 0)
			uv_async_send(&ws[i].stop_async);
		uv_thread_join(&ws[i].thread);
	}
	mg_store_clear(); /* no thread uses the stored responses any more */
	uv_loop_close(&loop);
	uv_cond_destroy(&cond);
	uv_mutex_destroy(&mu);
	free(ws);
	free_config(&c);
	if (!failed)
		mg_log(MG_LOG_INFO, "stopped");
	mg_log_async_stop(); /* bounded: a reader that stopped reading is not waited for */
	if (failed) {
		lua_pushnil(L);
		lua_pushfstring(L, "could not start serving on %s:%d (see the log above)",
				c.host, c.port);
		return 2;
	}
	lua_pushboolean(L, 1);
	return 1;
}

int mg_server_open(lua_State *L, const luaL_Reg *preload)
{
	lua_pushlightuserdata(L, (void *)preload);
	lua_pushcclosure(L, l_serve, 1);
	lua_setfield(L, -2, "_serve");
	return 0;
}
