#define _GNU_SOURCE /* accept4 */
/* _serve: detach (--daemon) and write the pidfile, start the worker
 * threads, handle signals (serve_ctl below: drain on SIGINT / SIGTERM,
 * SIGHUP, SIGUSR1), stop every worker at once and join them.
 *
 * Threads and what they own:
 *   main thread   the mg_worker array, the signal handles and its own loop;
 *                 it only touches a worker through its atomics want and
 *                 reloads followed by uv_async_send(stop_async), and, at
 *                 start-up, the mutex-guarded start_state.
 *   worker k      its loop, lws context, Lua state and every request on them.
 *   log writer    logq.c's: started before the workers, stopped (a bounded
 *                 wait for what is queued) after them.
 * Workers are started one after the other: lws context creation touches
 * process-wide state (plugin loading, OpenSSL), so it is never concurrent.
 */
#include <libwebsockets.h>
#include <openssl/ssl.h>
#include "server.h"
#include "check.h"
#include "gate.h"
#include "rate.h"
#include "h1.h"
#include "fast.h"
#include "http.h"
#include "http_lws.h"
#include "log.h"
#include "lstate.h"
#include "lua_host.h"
#include "metrics.h"
#include "pool.h"
#include "stats.h"
#include "store.h"
#include "watch.h"
#include "ws.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua5.1/luv/luv.h>
#include <signal.h>
#include <stdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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
	lws_context_destroy(w->lws_ctx);
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
	mg_server_config *c = (mg_server_config *)w->ctx.cfg;
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
	__atomic_store_n(&w->shut_fd, fd, __ATOMIC_RELEASE);
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
		if (!w->ctx.cfg->tls_cert) {
			if (mg_h1_adopt(&w->ctx, fd))
				mg_log(MG_LOG_WARN, "could not take a connection");
		} else if (!lws_adopt_socket_vhost(w->ctx.vhost, fd)) {
			mg_log(MG_LOG_WARN, "could not adopt a connection");
			close(fd);
		}
	}
}

static void on_listen_closed(uv_handle_t *h)
{
	mg_worker *w = h->data;

	__atomic_store_n(&w->shut_fd, -1, __ATOMIC_RELEASE);
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
		__atomic_store_n(&w->shut_fd, -1, __ATOMIC_RELEASE);
		close(w->listen_fd);
		w->listen_fd = -1;
	}
}

/* The watchdog's word (its thread): this worker is stuck in a call no hook
 * reaches. It is taken out of service: its listening socket stops taking
 * connections (the other workers take them), and the stop does not wait for
 * it. */
static void on_worker_stuck(void *arg)
{
	mg_worker *w = arg;
	int fd = __atomic_load_n(&w->shut_fd, __ATOMIC_ACQUIRE);

	__atomic_store_n(&w->stuck, 1, __ATOMIC_RELEASE);
	mg_log(MG_LOG_ERROR, "worker %d is stuck in a Lua call that cannot be stopped: it takes no new connections "
	       "from now on; restart the daemon to get it back", w->ctx.index);
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
}

static void on_wake(mg_outbox_thread *t)
{
	mg_ws_on_wake(t->data); /* the thread's mg_ctx */
}

static void close_pool_handles(mg_worker *w)
{
	mg_pool_thread_stop(&w->ctx.ob);
	mg_gate_thread_gone(&w->ctx.ob);
	mg_ws_thread_stop(&w->ctx);
	mg_outbox_thread_stop(&w->ctx.ob);
}

/* Calls function `name` of the handler table of every live Lua state (the
 * current one and those still serving what they started), with no
 * arguments; an error in it is logged (mg_pcall) and goes no further. */
static void call_hook(mg_worker *w, const char *name)
{
	mg_queue *q;

	mg_queue_foreach(q, &w->ctx.states) {
		mg_lstate *s = mg_queue_data(q, mg_lstate, node);
		if (mg_lstate_push_fn(s, name) && mg_pcall(s->L, 0, 0, name))
			lua_pop(s->L, 1);
	}
}

static void stop_worker(mg_worker *w)
{
	close_listener(w);
	mg_h1_close_all(&w->ctx);
	if (w->lws_ctx)
		destroy_lws(w);
	close_pool_handles(w);
	uv_close((uv_handle_t *)&w->stop_async, NULL);
	/* each state closes (its upstream engine's __gc closes the pooled
	 * upstream connections, which would otherwise keep the loop alive) */
	{
		mg_queue *q;
		mg_queue_foreach(q, &w->ctx.states)
			mg_lstate_end(mg_queue_data(q, mg_lstate, node));
	}
	/* a leaked handle must not hang the shutdown */
	uv_timer_init(&w->loop, &w->force_stop);
	uv_timer_start(&w->force_stop, on_force_stop, 2000, 0);
	uv_unref((uv_handle_t *)&w->force_stop);
	w->force_stop_armed = 1;
}

/* A new Lua state for the worker, loaded: moongate.worker.init(init_json,
 * index, workers, load, started_ns, tolerated) built the app from the files
 * as they are now and checked it (worker.lua; tolerated: the providers that
 * failed the check in the state it replaces, comma-separated). NULL when
 * that failed, with why in err (cut to cap; a Lua error was logged with its
 * traceback, a refusal was * not). The state is on w->ctx.states; the caller makes it current. */
static mg_lstate *load_state(mg_worker *w, uint64_t t0, const char *tolerated, char *err, size_t cap)
{
	mg_lstate *s = mg_lstate_new(&w->loop, &w->ctx.states, mg_lua_dir(), w->ctx.cfg->preload, ++w->ctx.loads);
	lua_State *L;
	int top;

	snprintf(err, cap, "cannot make a Lua state (out of memory)");
	if (!s)
		return NULL;
	L = s->L;
	top = lua_gettop(L);
	lua_pushlightuserdata(L, &w->ctx);
	lua_setfield(L, LUA_REGISTRYINDEX, MG_CTX_KEY);
	lua_getglobal(L, "require");
	lua_pushliteral(L, "moongate.worker");
	if (mg_pcall(L, 1, 1, "loading moongate.worker"))
		goto failed;
	lua_getfield(L, -1, "init");
	lua_pushstring(L, w->ctx.cfg->init_json);
	lua_pushinteger(L, w->ctx.index);
	lua_pushinteger(L, w->ctx.cfg->workers);
	lua_pushinteger(L, (lua_Integer)s->id);
	lua_pushnumber(L, (lua_Number)t0);
	lua_pushstring(L, tolerated ? tolerated : "");
	if (mg_pcall(L, 6, 2, "moongate.worker.init"))
		goto failed;
	if (!lua_istable(L, -2)) { /* nil, why */
		if (!lua_isstring(L, -1))
			lua_pushliteral(L, "moongate.worker.init must return a table");
		goto failed;
	}
	lua_pop(L, 1);
	s->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_settop(L, top);
	return s;
failed:
	mg_lstate_error(L, err, cap);
	lua_settop(L, top);
	mg_lstate_retire(s);
	return NULL;
}

/* The current state's Lua hears that a reload failed (/health shows it). */
static void tell_failure(mg_worker *w, const char *err)
{
	mg_lstate *s = w->ctx.ls;

	if (mg_lstate_push_fn(s, "reload_failed")) {
		lua_pushstring(s->L, err);
		if (mg_pcall(s->L, 1, 0, "reload_failed"))
			lua_pop(s->L, 1);
	}
}

/* SIGHUP (or a watched file changed): a new state from the files as they
 * are; once it loaded and passed its checks, new work goes to it, and the
 * old one closes when what it serves is over. A state that fails leaves the
 * old one serving, and the old one's Lua hears why (reload_failed). */
static void reload(mg_worker *w)
{
	uint64_t t0 = uv_hrtime();
	char err[1024], tolerated[1024] = "";
	mg_lstate *s, *old = w->ctx.ls;

	/* the providers that fail the check now may fail it in the new state */
	if (mg_lstate_push_fn(old, "check_failures")) {
		if (!mg_pcall(old->L, 0, 1, "check_failures") && lua_isstring(old->L, -1))
			snprintf(tolerated, sizeof tolerated, "%s", lua_tostring(old->L, -1));
		lua_pop(old->L, 1);
	}
	s = load_state(w, t0, tolerated, err, sizeof err);

	if (!s) {
		mg_log(MG_LOG_ERROR, "worker %d: reload failed, the old scripts keep serving: %s", w->ctx.index, err);
		mg_metrics_reload(0);
		tell_failure(w, err);
		return;
	}
	if (old && mg_lstate_push_fn(old, "carry")) { /* the old state's word to the new */
		if (mg_pcall(old->L, 0, 1, "carry") || !lua_isstring(old->L, -1)) {
			lua_pop(old->L, 1);
		} else {
			size_t n;
			const char *text = lua_tolstring(old->L, -1, &n);
			if (mg_lstate_push_fn(s, "carried")) {
				lua_pushlstring(s->L, text, n);
				if (mg_pcall(s->L, 1, 0, "carried"))
					lua_pop(s->L, 1);
			}
			lua_pop(old->L, 1);
		}
	}
	w->ctx.ls = s;
	if (old) {
		if (mg_lstate_push_fn(old, "retire") && mg_pcall(old->L, 0, 0, "retire"))
			lua_pop(old->L, 1);
		mg_lstate_retire(old);
	}
	mg_ws_migrate(&w->ctx);
	mg_log(MG_LOG_INFO, "worker %d: reloaded in %.1f ms (Lua state %u)", w->ctx.index,
	       (double)(uv_hrtime() - t0) / 1e6, s->id);
	mg_metrics_reload(1);
}

/* The main thread's word (want, reloads): each phase once, in order. */
static void on_stop(uv_async_t *a)
{
	mg_worker *w = a->data;
	int want = __atomic_load_n(&w->want, __ATOMIC_ACQUIRE);
	unsigned reloads = __atomic_load_n(&w->reloads, __ATOMIC_ACQUIRE);

	unsigned fails = __atomic_load_n(&w->reload_fails, __ATOMIC_ACQUIRE);

	if (reloads != w->reloads_done) {
		w->reloads_done = reloads;
		if (w->ctx.phase == MG_PHASE_SERVING)
			reload(w);
	}
	if (fails != w->reload_fails_done) { /* the trial load refused one: /health says why */
		char err[sizeof w->news->error];
		w->reload_fails_done = fails;
		uv_mutex_lock(&w->news->mu);
		memcpy(err, w->news->error, sizeof err);
		uv_mutex_unlock(&w->news->mu);
		tell_failure(w, err);
	}
	if (want >= MG_PHASE_DRAIN && w->ctx.phase < MG_PHASE_DRAIN) {
		w->ctx.phase = MG_PHASE_DRAIN;
		close_listener(w); /* new connections are refused from now on */
		mg_h1_drain(&w->ctx);    /* and kept-alive ones take no new work */
	}
	if (want >= MG_PHASE_END && w->ctx.phase < MG_PHASE_END) {
		w->ctx.phase = MG_PHASE_END;
		call_hook(w, "shutdown"); /* ends running exchanges, in format */
		mg_fast_shutdown();       /* and those on the fast path */
	}
	if (want >= MG_PHASE_STOP && w->ctx.phase < MG_PHASE_STOP) {
		w->ctx.phase = MG_PHASE_STOP;
		stop_worker(w);
	}
}

static void worker_cleanup(mg_worker *w)
{
	while (!mg_queue_empty(&w->ctx.states)) /* the loop stopped before they closed */
		mg_lstate_close_now(mg_queue_data(mg_queue_head(&w->ctx.states), mg_lstate, node));
	w->ctx.ls = NULL;
	if (w->force_stop_armed) {
		uv_close((uv_handle_t *)&w->force_stop, NULL);
		w->force_stop_armed = 0;
	}
	uv_run(&w->loop, UV_RUN_DEFAULT);
	if (w->lws_ctx) { /* finish an lws teardown that needed the loop */
		destroy_lws(w);
		uv_run(&w->loop, UV_RUN_DEFAULT);
	}
	if (uv_loop_close(&w->loop)) {
		uv_walk(&w->loop, report_walk, NULL);
		mg_log(MG_LOG_WARN, "worker %d: loop still had handles at exit", w->ctx.index);
	}
	mg_http_thread_stop(&w->ctx);
	mg_ws_thread_free(&w->ctx);
	mg_buf_free(&w->ctx.req_headers);
}

static int worker_lws_init(mg_worker *w)
{
	struct lws_context_creation_info info;
	void *loops[1] = { &w->loop };
	const mg_server_config *c = w->ctx.cfg;

	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* we listen, lws serves */
	info.protocols = protocols;
	/* UTF-8: a text frame that is not UTF-8 closes the socket with 1007
	 * (RFC 6455 8.1), as the fault suite checks */
	info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8;
	info.foreign_loops = loops;
	info.user = &w->ctx; /* what http_lws.c and ws.c read (ctx.h) */
	info.pcontext = &w->lws_ctx;
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
		 * content-length. See docs/KNOWN_ISSUES.md. */
		info.alpn = c->tls_http2 ? "h2,http/1.1" : "http/1.1";
	}
	w->lws_ctx = lws_create_context(&info);
	if (!w->lws_ctx)
		return -1;
	w->ctx.vhost = lws_get_vhost_by_name(w->lws_ctx, "default");
	if (!w->ctx.vhost || open_listener(w))
		return -1;
	if (uv_poll_init(&w->loop, &w->listen_poll, w->listen_fd)) {
		__atomic_store_n(&w->shut_fd, -1, __ATOMIC_RELEASE);
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
	int ok;

	snprintf(tag, sizeof tag, "w%d", w->ctx.index);
	mg_log_set_thread_tag(tag);
	__atomic_store_n(&w->shut_fd, -1, __ATOMIC_RELEASE);
	mg_watchdog_enter_thread(tag); /* its calls into Lua are timed (script_timeout_ms) */
	mg_watchdog_on_stuck(on_worker_stuck, w);
	w->listen_fd = -1;
	mg_queue_init(&w->ctx.states);
	if (uv_loop_init(&w->loop)) {
		set_start_state(w, -1);
		return;
	}
	uv_async_init(&w->loop, &w->stop_async, on_stop);
	w->stop_async.data = w;
	mg_outbox_thread_init(&w->ctx.ob, &w->loop, w->ctx.index, on_wake, &w->ctx);
	/* each module's per-thread state, in its slot (ctx.h) */
	ok = !mg_h1_thread_init(&w->ctx) && !mg_http_thread_init(&w->ctx) &&
	     !mg_ws_thread_init(&w->ctx);
	mg_outbox_thread_open(&w->ctx.ob);
	if (!ok) {
		mg_log(MG_LOG_ERROR, "worker %d: out of memory", w->ctx.index);
	} else {
		char err[1024];
		w->ctx.ls = load_state(w, uv_hrtime(), NULL, err, sizeof err);
		if (!w->ctx.ls)
			mg_log(MG_LOG_ERROR, "worker %d: %s", w->ctx.index, err);
	}
	if (!w->ctx.ls || worker_lws_init(w)) {
		mg_log(MG_LOG_ERROR, "worker %d could not start", w->ctx.index);
		close_listener(w);
		mg_h1_close_all(&w->ctx);
		if (w->lws_ctx)
			destroy_lws(w);
		close_pool_handles(w);
		uv_close((uv_handle_t *)&w->stop_async, NULL);
		worker_cleanup(w);
		__atomic_store_n(&w->exited, 1, __ATOMIC_RELEASE);
		set_start_state(w, -1);
		return;
	}
	set_start_state(w, 1);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	worker_cleanup(w);
	__atomic_store_n(&w->exited, 1, __ATOMIC_RELEASE);
}

/* ---- main thread ------------------------------------------------------- */

/* Joins every worker that ends; one the watchdog found stuck (in a call no
 * hook reaches) is not waited for. Returns how many were left. */
static int join_workers(mg_worker *ws, int n)
{
	int left, stuck;

	do {
		left = stuck = 0;
		for (int i = 0; i < n; i++) {
			if (ws[i].joined)
				continue;
			if (__atomic_load_n(&ws[i].exited, __ATOMIC_ACQUIRE)) {
				uv_thread_join(&ws[i].thread);
				ws[i].joined = 1;
			} else if (__atomic_load_n(&ws[i].stuck, __ATOMIC_ACQUIRE)) {
				stuck++;
			} else {
				left++;
			}
		}
		if (left)
			uv_sleep(5);
	} while (left);
	return stuck;
}

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

/* The main thread while the workers serve: signals, and the way to the end.
 *   SIGTERM / SIGINT  every worker stops accepting (MG_PHASE_DRAIN); the
 *                     requests still running get shutdown_timeout seconds;
 *                     then those left are ended with an error in their
 *                     client's format (MG_PHASE_END) and get END_GRACE_MS to
 *                     write it; then every worker is told to stop, all at
 *                     once, and joined. A second signal stops at once.
 *   SIGHUP            "reload requested": each worker's Lua `reload` hook.
 *   SIGUSR1           reopens the --log-file (logrotate).
 * All of it on the main loop, so it is single-threaded; the workers learn
 * through their stop_async (want / reloads, atomics). */
#define END_GRACE_MS 2000
#define STOP_GRACE_MS 100

typedef struct serve_ctl {
	uv_loop_t *loop;
	mg_worker *ws;
	int n;
	double timeout_s;
	int stopping;            /* 0 serving, then the MG_PHASE_* told */
	uv_signal_t sigint, sigterm, sighup, sigusr1;
	uv_timer_t poll;         /* are the running requests done yet? */
	uv_timer_t deadline;     /* shutdown_timeout, then END_GRACE_MS */
	mg_watch *watch;         /* the config file and lua_path (watch.h), or NULL */
	const mg_server_config *cfg;
	mg_check *check;         /* the trial load of a reload under way (check.h), or NULL */
	int check_again;         /* a reload was asked for while it ran */
	uint64_t check_t0;       /* when it began */
	mg_reload_news news;     /* a refused reload's word to the workers */
} serve_ctl;

/* HTTP requests and chat-socket answers (sockets.lua counts those) */
static long long running_requests(void)
{
	return __atomic_load_n(&mg_global_stats.open_requests, __ATOMIC_RELAXED) +
	       __atomic_load_n(&mg_global_stats.open_ws_answers, __ATOMIC_RELAXED);
}

static void tell_all(serve_ctl *sc, int phase)
{
	sc->stopping = phase;
	for (int i = 0; i < sc->n; i++) {
		__atomic_store_n(&sc->ws[i].want, phase, __ATOMIC_RELEASE);
		uv_async_send(&sc->ws[i].stop_async);
	}
}

static void stop_all(serve_ctl *sc)
{
	tell_all(sc, MG_PHASE_STOP);
	uv_timer_stop(&sc->poll);
	uv_timer_stop(&sc->deadline);
	uv_stop(sc->loop);
}

static void on_stop_grace(uv_timer_t *t)
{
	stop_all(t->data);
}

/* every worker stops at once; the main loop ends (l_serve joins them).
 * Lua's shutdown (MG_PHASE_END) runs first, and what it queued (error
 * frames on WebSockets, written when their socket is writable) gets
 * STOP_GRACE_MS of loop turns before the connections close; from END on,
 * finish stops at once. */
static void finish(serve_ctl *sc)
{
	if (sc->stopping == MG_PHASE_STOP)
		return;
	if (sc->stopping < MG_PHASE_END) {
		tell_all(sc, MG_PHASE_END);
		uv_timer_stop(&sc->poll);
		uv_timer_start(&sc->deadline, on_stop_grace, STOP_GRACE_MS, 0);
		return;
	}
	stop_all(sc);
}

static void on_poll(uv_timer_t *t)
{
	serve_ctl *sc = t->data;

	if (running_requests() > 0)
		return;
	mg_log(MG_LOG_INFO, "stopping: every request has finished");
	finish(sc);
}

static void on_deadline(uv_timer_t *t)
{
	serve_ctl *sc = t->data;
	long long n = running_requests();

	if (sc->stopping == MG_PHASE_DRAIN) {
		mg_log(MG_LOG_WARN, "stopping: shutdown_timeout (%g s) is over; ending %lld request%s still running",
		       sc->timeout_s, n, n == 1 ? "" : "s");
		tell_all(sc, MG_PHASE_END);
		uv_timer_start(&sc->deadline, on_deadline, END_GRACE_MS, 0);
		/* what ended counts as ended at once: its error still needs a
		 * few loop turns to be written before the stop */
		uv_timer_start(&sc->poll, on_poll, STOP_GRACE_MS, 20);
		return;
	}
	mg_log(MG_LOG_WARN, "stopping: closing %lld request%s that did not end", n, n == 1 ? "" : "s");
	finish(sc);
}

static void on_signal(uv_signal_t *s, int signum)
{
	serve_ctl *sc = s->data;
	long long n;

	if (sc->stopping) {
		mg_log(MG_LOG_WARN, "signal %d while stopping: stopping at once", signum);
		finish(sc);
		return;
	}
	mg_log(MG_LOG_INFO, "signal %d: stopping", signum);
	tell_all(sc, MG_PHASE_DRAIN);
	n = running_requests();
	if (n <= 0) {
		finish(sc);
		return;
	}
	mg_log(MG_LOG_INFO, "stopping: %lld request%s still running, waiting up to %g s", n,
	       n == 1 ? "" : "s", sc->timeout_s);
	uv_timer_start(&sc->poll, on_poll, 20, 20);
	uv_timer_start(&sc->deadline, on_deadline, (uint64_t)(sc->timeout_s * 1000), 0);
}

/* Each worker makes a new Lua state from the files as they are now (reload
 * in the worker's thread). */
static void tell_reload(serve_ctl *sc)
{
	for (int i = 0; i < sc->n; i++) {
		__atomic_add_fetch(&sc->ws[i].reloads, 1, __ATOMIC_RELEASE);
		uv_async_send(&sc->ws[i].stop_async);
	}
}

static void ask_reload(serve_ctl *sc);

/* The trial load ended: the workers load the scripts, or hear why not. */
static void on_checked(void *arg, int ok, const char *why)
{
	serve_ctl *sc = arg;

	sc->check = NULL;
	if (sc->stopping)
		return;
	if (ok) {
		mg_log(MG_LOG_INFO, "reload: the scripts passed their trial load in %.1f ms; the workers load them",
		       (double)(uv_hrtime() - sc->check_t0) / 1e6);
		tell_reload(sc);
	} else {
		mg_log(MG_LOG_ERROR, "reload failed, the old scripts keep serving: %s", why);
		mg_metrics_reload(0);
		uv_mutex_lock(&sc->news.mu);
		snprintf(sc->news.error, sizeof sc->news.error, "%s", why);
		uv_mutex_unlock(&sc->news.mu);
		for (int i = 0; i < sc->n; i++) {
			__atomic_add_fetch(&sc->ws[i].reload_fails, 1, __ATOMIC_RELEASE);
			uv_async_send(&sc->ws[i].stop_async);
		}
	}
	if (sc->check_again) {
		sc->check_again = 0;
		ask_reload(sc);
	}
}

/* A reload: first a trial load on a thread of its own (check.h), so that
 * scripts that loop or hang at load never hold up a worker; the workers
 * load them once that passed. Asked again meanwhile: once more after it. */
static void ask_reload(serve_ctl *sc)
{
	unsigned budget = mg_watchdog_budget();
	unsigned timeout = budget ? (budget * 5 > 10000 ? budget * 5 : 10000) : 30000;

	if (sc->stopping)
		return;
	if (sc->check) {
		sc->check_again = 1;
		return;
	}
	sc->check_t0 = uv_hrtime();
	sc->check = mg_check_start(sc->loop, sc->cfg, timeout, on_checked, sc);
	if (!sc->check) {
		mg_log(MG_LOG_WARN, "reload: cannot start the trial load; the workers load the scripts directly");
		tell_reload(sc);
	}
}

static void on_hup(uv_signal_t *s, int signum)
{
	(void)signum;
	mg_log(MG_LOG_INFO, "SIGHUP: reloading");
	ask_reload(s->data);
}

static void on_watched_change(void *arg, const char *file)
{
	mg_log(MG_LOG_INFO, "%s changed: reloading", file);
	ask_reload(arg);
}

static void on_usr1(uv_signal_t *s, int signum)
{
	int rc = mg_log_file_reopen();

	(void)s;
	(void)signum;
	if (rc < 0)
		mg_log(MG_LOG_ERROR, "SIGUSR1: cannot reopen the log file: %s (still writing to the old one)",
		       strerror(errno));
	else if (rc > 0)
		mg_log(MG_LOG_INFO, "SIGUSR1: no --log-file to reopen");
	else
		mg_log(MG_LOG_INFO, "SIGUSR1: log file reopened");
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

/* ---- --pidfile and --daemon --------------------------------------------- */

/* The pid path names, or 0 (no file, no number in it). */
static pid_t pid_in(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	long v;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	v = strtol(buf, NULL, 10);
	return v > 1 && v < 1L << 30 ? (pid_t)v : 0;
}

/* 0, or -1 with the reason in err when path names a live process */
static int pidfile_check(const char *path, char *err, size_t cap)
{
	pid_t pid = pid_in(path);

	if (pid && pid != getpid() && (!kill(pid, 0) || errno == EPERM)) {
		snprintf(err, cap, "the pidfile %s names a running process (pid %d)", path, (int)pid);
		return -1;
	}
	return 0;
}

/* Writes our pid into path and holds an exclusive flock on it until *fd is
 * closed (at exit): two daemons started at once both pass pidfile_check,
 * and the second one's lock fails. 0 with *fd set; -1 with err. */
static int pidfile_write(const char *path, int *fd, char *err, size_t cap)
{
	char buf[32];
	int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());

	*fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (*fd < 0) {
		snprintf(err, cap, "cannot write the pidfile %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(*fd, LOCK_EX | LOCK_NB)) {
		if (errno == EWOULDBLOCK)
			snprintf(err, cap, "the pidfile %s is held by another running moongate (pid %d)", path,
				 (int)pid_in(path));
		else
			snprintf(err, cap, "cannot lock the pidfile %s: %s", path, strerror(errno));
		close(*fd);
		*fd = -1;
		return -1;
	}
	if (ftruncate(*fd, 0) || write(*fd, buf, (size_t)n) != n) {
		snprintf(err, cap, "cannot write the pidfile %s: %s", path, strerror(errno));
		close(*fd);
		*fd = -1;
		return -1;
	}
	return 0;
}

/* The daemon keeps none of its caller's descriptors: one left open (the
 * write end of a pipe the caller reads) would keep that reader waiting for
 * as long as the daemon lives. Ours (libuv's, the report pipe) are all
 * close-on-exec; what came without that flag came from the caller. */
static void close_inherited(void)
{
	int fds[256], n = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) && n < (int)(sizeof fds / sizeof fds[0])) {
		int fd = atoi(e->d_name);
		if (fd > 2 && fd != dirfd(d))
			fds[n++] = fd;
	}
	closedir(d);
	for (int i = 0; i < n; i++) {
		int fl = fcntl(fds[i], F_GETFD);
		if (fl >= 0 && !(fl & FD_CLOEXEC))
			close(fds[i]);
	}
}

/* Tells the waiting parent how the start went ("O", or "E" and why), once. */
static void report_start(int *fd, const char *error)
{
	if (*fd < 0)
		return;
	if (!error) {
		if (write(*fd, "O", 1) < 0)
			(void)0; /* the parent is gone: nobody to tell */
	} else {
		char msg[600];
		int n = snprintf(msg, sizeof msg, "E%s", error);
		if (n > 0 && write(*fd, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1) < 0)
			(void)0;
	}
	close(*fd);
	*fd = -1;
}

/* The parent's side: waits until the child reports (or dies). 0 when it
 * serves; -1 with the child's reason in err. */
static int wait_for_child(int fd, char *err, size_t cap)
{
	char buf[600];
	size_t got = 0;

	for (;;) {
		ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == sizeof buf - 1)
			break;
	}
	close(fd);
	buf[got] = 0;
	if (got && buf[0] == 'O')
		return 0;
	snprintf(err, cap, "%.500s", got > 1 ? buf + 1 : "the daemon exited before it listened (see its log)");
	return -1;
}

/* --daemon: fork; the parent waits for the child's word and returns 1; the
 * child, in a session of its own with stdin from /dev/null and stdout and
 * stderr on the log file (or /dev/null), returns 0 with *report_fd set.
 * -1 with err: nothing forked. Called before any thread of ours exists. */
static int detach(lua_State *L, const char *log_file, int *report_fd, char *err, size_t cap)
{
	int p[2], nul;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC)) {
		snprintf(err, cap, "pipe: %s", strerror(errno));
		return -1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		snprintf(err, cap, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		return wait_for_child(p[0], err, cap) ? -1 : 1;
	}
	close(p[0]);
	*report_fd = p[1];
	close_inherited();
	setsid();
	uv_loop_fork(luv_loop(L)); /* the command's loop (cli.c): its epoll is the parent's */
	nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul >= 0) {
		dup2(nul, STDIN_FILENO);
		if (!log_file) {
			dup2(nul, STDOUT_FILENO);
			dup2(nul, STDERR_FILENO);
		}
		close(nul);
	}
	if (log_file && mg_log_file_open(log_file, 1)) {
		snprintf(err, cap, "cannot open the log file %s: %s", log_file, strerror(errno));
		report_start(report_fd, err);
		return -1;
	}
	return 0;
}

static void free_config(mg_server_config *c)
{
	SSL_CTX_free(c->client_ssl_ctx);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->init_json);
	free(c->pidfile);
	free(c->log_file);
	for (int i = 0; i < c->nwatch; i++) {
		free((char *)c->watch[i].dir);
		free((char *)c->watch[i].name);
	}
	free(c->watch);
}

/* opts.watch: a list of {dir = "...", name = "file" | nil}; -1 when it is
 * not one */
static int opt_watch(lua_State *L, int idx, mg_server_config *c)
{
	int n;

	lua_getfield(L, idx, "watch");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_istable(L, -1) || (n = (int)lua_objlen(L, -1)) > 1024 ||
	    !(c->watch = calloc((size_t)n + 1, sizeof *c->watch))) {
		lua_pop(L, 1);
		return -1;
	}
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, i);
		if (!lua_istable(L, -1)) {
			lua_pop(L, 2);
			return -1;
		}
		c->watch[c->nwatch].dir = opt_string(L, -1, "dir");
		c->watch[c->nwatch].name = opt_string(L, -1, "name");
		lua_pop(L, 1);
		if (!c->watch[c->nwatch++].dir) {
			lua_pop(L, 1);
			return -1;
		}
	}
	lua_pop(L, 1);
	return 0;
}

/* _serve{host, port, workers, max_body_bytes, max_header_bytes,
 *        stream_high_water, keepalive_timeout, request_timeout, shutdown_timeout,
 *        tls_cert, tls_key, tls_http2, init, verbose, ws_heartbeat_ms,
 *        ws_timeout_ms, ws_queue_timeout_ms, ws_max_message, daemon, pidfile,
 *        log_file, watch} -> true | nil, message
 * Blocks until SIGINT or SIGTERM has stopped the workers (see serve_ctl).
 * `init` is the string every worker passes to moongate.worker.init. With
 * `daemon`, the calling process returns true as soon as its detached child
 * listens (or nil and the child's reason); the child serves and returns as
 * above. */
static int l_serve(lua_State *L)
{
	mg_server_config c;
	mg_worker *ws;
	uv_loop_t loop;
	serve_ctl sc;
	uv_mutex_t mu;
	uv_cond_t cond;
	char *host, err[512];
	const char *lws_debug;
	int started = 0, failed = 0, report_fd = -1, wrote_pidfile = 0, pid_fd = -1, watch_bad, stuck;

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
	c.shutdown_timeout = opt_number(L, 1, "shutdown_timeout", 30);
	c.ws_heartbeat_ms = (int)opt_number(L, 1, "ws_heartbeat_ms", 25000);
	c.ws_timeout_ms = (int)opt_number(L, 1, "ws_timeout_ms", 30000);
	c.ws_queue_timeout_ms = (int)opt_number(L, 1, "ws_queue_timeout_ms", 30000);
	c.ws_max_message = (size_t)opt_number(L, 1, "ws_max_message", 16 * 1024 * 1024);
	c.tls_cert = opt_string(L, 1, "tls_cert");
	c.tls_key = opt_string(L, 1, "tls_key");
	c.pidfile = opt_string(L, 1, "pidfile");
	c.log_file = opt_string(L, 1, "log_file");
	lua_getfield(L, 1, "daemon");
	c.daemon = lua_toboolean(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, 1, "tls_http2");
	c.tls_http2 = lua_toboolean(L, -1);
	lua_pop(L, 1);
	c.init_json = opt_string(L, 1, "init");
	watch_bad = opt_watch(L, 1, &c);
	lua_getfield(L, 1, "verbose");
	c.verbose = lua_toboolean(L, -1);
	lua_pop(L, 1);
	if (c.workers < 1 || c.workers > 256 || c.port < 0 || c.port > 65535 ||
	    c.max_header_bytes > 65535 || !c.init_json || (!c.tls_cert != !c.tls_key) ||
	    c.ws_heartbeat_ms < 1 || c.ws_timeout_ms < 1 || c.ws_queue_timeout_ms < 0 ||
	    c.ws_max_message < 1 || !(c.shutdown_timeout >= 0 && c.shutdown_timeout <= 86400) || watch_bad) {
		free_config(&c);
		return luaL_argerror(L, 1, "invalid server options");
	}

	/* what can be refused is refused here, on the caller's terminal */
	err[0] = 0;
	if (c.pidfile && pidfile_check(c.pidfile, err, sizeof err))
		goto refused;
	if (c.log_file) {
		int fd = open(c.log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0) {
			snprintf(err, sizeof err, "cannot open the log file %s: %s", c.log_file, strerror(errno));
			goto refused;
		}
		close(fd);
	}
	if (c.daemon) {
		int d = detach(L, c.log_file, &report_fd, err, sizeof err);
		if (d < 0)
			goto refused;
		if (d > 0) { /* the parent: the child serves */
			free_config(&c);
			lua_pushboolean(L, 1);
			return 1;
		}
	} else if (c.log_file && mg_log_file_open(c.log_file, 0)) {
		snprintf(err, sizeof err, "cannot open the log file %s: %s", c.log_file, strerror(errno));
		goto refused;
	}
	if (c.pidfile) {
		if (pidfile_write(c.pidfile, &pid_fd, err, sizeof err))
			goto refused;
		wrote_pidfile = 1;
	}
	if (c.tls_cert)
		c.client_ssl_ctx = SSL_CTX_new(TLS_client_method());

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
		snprintf(err, sizeof err, "out of memory");
		goto refused;
	}
	uv_mutex_init(&mu);
	uv_cond_init(&cond);
	/* from here on no thread waits on stderr: a full pipe drops lines */
	if (mg_log_async_start())
		mg_log(MG_LOG_WARN, "could not start the log's writer thread: lines are written as they come");
	mg_stats_set_workers(c.workers);
	raise_file_limit();
	mg_h1_init(c.max_header_bytes);
	mg_log_first_error_reset(); /* a start that fails reports its cause */
	/* before anything says "listening": a stop request from then on is ours,
	 * and SIGHUP no longer ends the process */
	memset(&sc, 0, sizeof sc);
	sc.loop = &loop;
	sc.ws = ws;
	sc.timeout_s = c.shutdown_timeout;
	sc.cfg = &c;
	uv_mutex_init(&sc.news.mu);
	uv_timer_init(&loop, &sc.poll);
	uv_timer_init(&loop, &sc.deadline);
	sc.poll.data = sc.deadline.data = &sc;
	uv_signal_init(&loop, &sc.sigint);
	uv_signal_init(&loop, &sc.sigterm);
	uv_signal_init(&loop, &sc.sighup);
	uv_signal_init(&loop, &sc.sigusr1);
	sc.sigint.data = sc.sigterm.data = sc.sighup.data = sc.sigusr1.data = &sc;
	uv_signal_start(&sc.sigint, on_signal, SIGINT);
	uv_signal_start(&sc.sigterm, on_signal, SIGTERM);
	uv_signal_start(&sc.sighup, on_hup, SIGHUP);
	uv_signal_start(&sc.sigusr1, on_usr1, SIGUSR1);

	for (int i = 0; i < c.workers; i++) {
		mg_worker *w = &ws[i];
		w->ctx.index = i + 1;
		w->ctx.cfg = &c;
		w->news = &sc.news;
		w->ctx.loop = &w->loop;
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
		sc.n = started;
		/* before "listening": a change made once that is said is seen */
		sc.watch = mg_watch_start(&loop, c.watch, c.nwatch, 200, on_watched_change, &sc);
		mg_log(MG_LOG_INFO, "moongate %s listening on %s://%s:%d with %d worker%s%s%s",
		       MOONGATE_VERSION, c.tls_cert ? "https" : "http", c.host, c.port,
		       c.workers, c.workers == 1 ? "" : "s",
		       !c.tls_cert ? "" : c.tls_http2 ? " (HTTP/2 and HTTP/1.1)" : " (HTTP/1.1)",
		       c.daemon ? " (daemon)" : "");
		report_start(&report_fd, NULL);
		uv_run(&loop, UV_RUN_DEFAULT);
	} else {
		char last[400];
		mg_log_first_error(last, sizeof last);
		snprintf(err, sizeof err, "could not start serving on %.100s:%d%s%.300s", c.host, c.port,
			 last[0] ? ": " : " (see the log)", last);
		report_start(&report_fd, err);
		/* the workers that did start serve nothing yet: stop them too */
		for (int i = 0; i < started; i++)
			if (ws[i].start_state > 0) {
				__atomic_store_n(&ws[i].want, MG_PHASE_STOP, __ATOMIC_RELEASE);
				uv_async_send(&ws[i].stop_async);
			}
	}
	uv_close((uv_handle_t *)&sc.sigint, NULL);
	uv_close((uv_handle_t *)&sc.sigterm, NULL);
	uv_close((uv_handle_t *)&sc.sighup, NULL);
	uv_close((uv_handle_t *)&sc.sigusr1, NULL);
	uv_close((uv_handle_t *)&sc.poll, NULL);
	uv_close((uv_handle_t *)&sc.deadline, NULL);
	mg_watch_stop(sc.watch);
	mg_check_cancel(sc.check);
	uv_run(&loop, UV_RUN_DEFAULT);
	/* every worker was told to stop (finish, or just above) before any join:
	 * they stop in parallel */
	stuck = join_workers(ws, started);
	if (stuck) { /* a thread still runs: nothing it may touch is freed */
		mg_log(MG_LOG_ERROR, "stopped, leaving %d worker%s stuck in a Lua call that cannot be stopped", stuck,
		       stuck == 1 ? "" : "s");
		if (wrote_pidfile && pid_in(c.pidfile) == getpid())
			unlink(c.pidfile);
		mg_log_async_stop();
		_exit(70); /* EX_SOFTWARE */
	}
	mg_store_clear(); /* no thread uses the stored responses any more */
	mg_gate_clear();  /* nor the gate */
	mg_rate_clear();  /* nor the rate limits */
	uv_loop_close(&loop);
	uv_cond_destroy(&cond);
	uv_mutex_destroy(&mu);
	free(ws);
	if (wrote_pidfile && pid_in(c.pidfile) == getpid())
		unlink(c.pidfile);
	if (pid_fd >= 0)
		close(pid_fd); /* the lock goes with it */
	if (!failed)
		mg_log(MG_LOG_INFO, "stopped");
	mg_log_async_stop(); /* bounded: a reader that stopped reading is not waited for */
	free_config(&c);
	if (failed) {
		lua_pushnil(L);
		lua_pushstring(L, err);
		return 2;
	}
	lua_pushboolean(L, 1);
	return 1;

refused:
	report_start(&report_fd, err);
	if (wrote_pidfile)
		unlink(c.pidfile);
	if (pid_fd >= 0)
		close(pid_fd);
	free_config(&c);
	lua_pushnil(L);
	lua_pushstring(L, err);
	return 2;
}

/* _lua_states() -> how many Lua states this worker thread has live (the
 * current one, and those a reload retired that still serve); 0 outside a
 * worker thread */
static int l_lua_states(lua_State *L)
{
	mg_ctx *ctx = mg_ctx_of(L);
	mg_queue *q;
	int n = 0;

	if (ctx)
		mg_queue_foreach(q, &ctx->states)
			n++;
	lua_pushinteger(L, n);
	return 1;
}

int mg_server_open(lua_State *L, const luaL_Reg *preload)
{
	lua_pushlightuserdata(L, (void *)preload);
	lua_pushcclosure(L, l_serve, 1);
	lua_setfield(L, -2, "_serve");
	lua_pushcfunction(L, l_lua_states);
	lua_setfield(L, -2, "_lua_states");
	return 0;
}
