/* Prometheus metrics: see metrics.h. The series of every metric live in
 * `families`, behind `lock` (this file's own mutex); a series is made once
 * and lives as long as the process (at most MAX_ROWS of them per metric). */
#include "metrics.h"
#include "buf.h"
#include "log.h"
#include "stats.h"

#include <fcntl.h>
#include <lauxlib.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define OTHER_ROWS 200 /* series kept, once a metric is full, for "other" label sets */
#define MAX_ROWS (MG_METRICS_MAX_SERIES + OTHER_ROWS + 1) /* + the all-"other" one */
#define MAX_LABELS 4

/* Seconds, for LLM calls: a cached answer to a five-minute generation. */
static const double buckets[] = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300 };
#define NBUCKETS (sizeof buckets / sizeof buckets[0])
/* a histogram's values: each bucket's own count, +Inf's, then sum, count */
#define HIST_VALUES (NBUCKETS + 3)

typedef struct series {
	uint32_t hash;
	unsigned short len;      /* of labels */
	char *labels;            /* owned: each value NUL-ended, in the family's order */
	double v[];              /* 1 (counter), or HIST_VALUES (histogram) */
} series;

typedef struct family {
	const char *name, *help;
	int histogram;
	int nlabels;
	const char *label[MAX_LABELS];
	unsigned free_mask;      /* the labels that read "other" once the family is full */
	int n;                   /* lock */
	series *row[MAX_ROWS];   /* lock */
} family;

enum { F_REQUESTS, F_DURATION, F_FIRST_BYTE, F_TOKENS, F_RETRIES, F_FALLBACKS, F_COUNT };

static family families[F_COUNT] = {
	[F_REQUESTS] = { "moongate_requests_total",
		"Requests answered, by front door, provider, model and status.",
		0, 4, { "door", "provider", "model", "status" }, 1u << 2 },
	[F_DURATION] = { "moongate_request_duration_seconds",
		"Time from the request line to the last byte of the answer.",
		1, 2, { "door", "provider" }, 0 },
	[F_FIRST_BYTE] = { "moongate_time_to_first_byte_seconds",
		"Time from the request line to the status line (a stream's starts with the upstream's first event).",
		1, 2, { "door", "provider" }, 0 },
	[F_TOKENS] = { "moongate_tokens_total",
		"Tokens the upstreams reported, by inbound key name, model and direction (in: prompt, out: completion).",
		0, 3, { "key", "model", "direction" }, 1u << 1 },
	[F_RETRIES] = { "moongate_retries_total",
		"Retries of a provider after it failed.", 0, 1, { "provider" }, 0 },
	[F_FALLBACKS] = { "moongate_fallbacks_total",
		"Fallbacks from a provider to the next of its route's chain.", 0, 1, { "provider" }, 0 },
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long overflowed; /* lock: records that went to an "other" series */
static long long reloads_ok, reloads_failed, lua_states; /* atomics */

/* ---- label values -------------------------------------------------------- */

/* Copies s into dst (cap bytes): valid UTF-8 kept, any other byte and any
 * control character as '?', cut before MG_METRICS_VALUE_MAX bytes without
 * splitting a character. Returns the length. */
static size_t clean_value(char *dst, size_t cap, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0;

	while (i < n) {
		unsigned c = p[i];
		size_t k = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c & 0xF0) == 0xE0 ? 3
			 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
		int ok = k > 0 && i + k <= n;

		for (size_t j = 1; ok && j < k; j++)
			ok = (p[i + j] & 0xC0) == 0x80;
		if (ok && k == 3) /* no overlong form, no surrogate */
			ok = !(c == 0xE0 && p[i + 1] < 0xA0) && !(c == 0xED && p[i + 1] >= 0xA0);
		if (ok && k == 4)
			ok = !(c == 0xF0 && p[i + 1] < 0x90) && !(c == 0xF4 && p[i + 1] >= 0x90);
		if (ok && k == 1 && (c < 0x20 || c == 0x7F))
			ok = 0;
		if (!ok)
			k = 1;
		if (o + k > cap)
			break;
		if (ok)
			memcpy(dst + o, p + i, k);
		else
			dst[o] = '?';
		o += k;
		i += k;
	}
	return o;
}

typedef struct labels {
	int n;
	char v[MAX_LABELS][MG_METRICS_VALUE_MAX];
	size_t len[MAX_LABELS];
} labels;

static void set_label(labels *l, int i, const char *s, size_t n)
{
	if (!s) {
		s = "none";
		n = 4;
	}
	l->len[i] = clean_value(l->v[i], sizeof l->v[i], s, n);
}

static void set_label_z(labels *l, int i, const char *s)
{
	set_label(l, i, s, s ? strlen(s) : 0);
}

/* The labels packed ("v1\0v2\0..."), those in `other` as "other". */
static size_t pack(const labels *l, unsigned other, char *out)
{
	size_t o = 0;

	for (int i = 0; i < l->n; i++) {
		const char *s = (other & (1u << i)) ? "other" : l->v[i];
		size_t n = (other & (1u << i)) ? 5 : l->len[i];
		memcpy(out + o, s, n);
		o += n;
		out[o++] = 0;
	}
	return o;
}

static uint32_t fnv(const char *p, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ (unsigned char)*p++) * 16777619u;
	return h;
}

/* ---- series (under the lock) --------------------------------------------- */

static series *find(family *f, const char *packed, size_t len, uint32_t h)
{
	for (int i = 0; i < f->n; i++) {
		series *s = f->row[i];
		if (s->hash == h && s->len == len && !memcmp(s->labels, packed, len))
			return s;
	}
	return NULL;
}

static series *make(family *f, const char *packed, size_t len, uint32_t h)
{
	size_t nv = f->histogram ? HIST_VALUES : 1;
	series *s;

	if (f->n >= MAX_ROWS || !(s = calloc(1, sizeof *s + nv * sizeof(double))))
		return NULL;
	if (!(s->labels = malloc(len))) {
		free(s);
		return NULL;
	}
	memcpy(s->labels, packed, len);
	s->len = (unsigned short)len;
	s->hash = h;
	f->row[f->n++] = s;
	return s;
}

/* The series of these labels: made while the family has room; once full,
 * the one with the free labels as "other", then the all-"other" one. NULL
 * only out of memory. */
static series *row_for(family *f, const labels *l)
{
	char packed[MAX_LABELS * (MG_METRICS_VALUE_MAX + 1)];
	size_t len = pack(l, 0, packed);
	uint32_t h = fnv(packed, len);
	series *s = find(f, packed, len, h);

	if (s)
		return s;
	if (f->n < MG_METRICS_MAX_SERIES)
		return make(f, packed, len, h);
	overflowed++;
	len = pack(l, f->free_mask, packed);
	h = fnv(packed, len);
	if ((s = find(f, packed, len, h)))
		return s;
	if (f->n < MG_METRICS_MAX_SERIES + OTHER_ROWS)
		return make(f, packed, len, h);
	len = pack(l, (1u << l->n) - 1, packed);
	h = fnv(packed, len);
	if ((s = find(f, packed, len, h)))
		return s;
	return make(f, packed, len, h);
}

static void count(int fi, const labels *l, double delta)
{
	series *s;

	pthread_mutex_lock(&lock);
	if ((s = row_for(&families[fi], l)))
		s->v[0] += delta;
	pthread_mutex_unlock(&lock);
}

static void observe(int fi, const labels *l, double x)
{
	series *s;
	size_t b = 0;

	while (b < NBUCKETS && x > buckets[b])
		b++;
	pthread_mutex_lock(&lock);
	if ((s = row_for(&families[fi], l))) {
		s->v[b]++;
		s->v[NBUCKETS + 1] += x;
		s->v[NBUCKETS + 2]++;
	}
	pthread_mutex_unlock(&lock);
}

/* ---- recording ----------------------------------------------------------- */

/* path, after an optional /v1, is p exactly or p then '/' */
static int under(const char *path, size_t len, const char *p)
{
	size_t n = strlen(p);

	return len >= n && !memcmp(path, p, n) && (len == n || path[n] == '/');
}

const char *mg_metrics_door(const char *path, size_t len)
{
	static const struct { const char *prefix, *door; } v1[] = {
		{ "/chat/completions", "openai_chat" },
		{ "/messages/count_tokens", "count_tokens" },
		{ "/messages", "anthropic_messages" },
		{ "/responses", "openai_responses" },
		{ "/completions", "openai_completions" },
		{ "/embeddings", "openai_embeddings" },
		{ "/models", "models" },
	}, plain[] = {
		{ "/api", "ollama" },
		{ "/health", "health" },
		{ "/stats", "stats" },
		{ "/metrics", "metrics" },
		{ "/openapi.json", "openapi" },
		{ "/docs", "docs" },
		{ "/ws", "ws" },
	};

	if (!path || !len)
		return "other";
	if (len == 1 && path[0] == '/')
		return "root";
	for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
		if (under(path, len, plain[i].prefix))
			return plain[i].door;
	if (len >= 4 && !memcmp(path, "/v1/", 4)) { /* clients also leave /v1 out */
		path += 3;
		len -= 3;
	}
	for (size_t i = 0; i < sizeof v1 / sizeof v1[0]; i++)
		if (under(path, len, v1[i].prefix))
			return v1[i].door;
	return "other";
}

void mg_metrics_request(const mg_metrics_req *q)
{
	const char *door = mg_metrics_door(q->path, q->path_len);
	const char *model = q->model_len ? q->model : NULL;
	size_t model_len = q->model_len;
	char status[16];
	labels l = { 4 };

	if (!q->provider_len && model) { /* no route matched it: the client's words */
		model = "unknown";
		model_len = 7;
	}
	mg_fmt_u(status, (unsigned)q->status);
	set_label_z(&l, 0, door);
	set_label(&l, 1, q->provider_len ? q->provider : NULL, q->provider_len);
	set_label(&l, 2, model, model_len);
	set_label_z(&l, 3, status);
	count(F_REQUESTS, &l, 1);
	l.n = 2; /* door, provider */
	observe(F_DURATION, &l, q->seconds);
	if (q->first_byte >= 0)
		observe(F_FIRST_BYTE, &l, q->first_byte);
}

void mg_metrics_reload(int ok)
{
	__atomic_add_fetch(ok ? &reloads_ok : &reloads_failed, 1, __ATOMIC_RELAXED);
}

void mg_metrics_lua_states(int delta)
{
	__atomic_add_fetch(&lua_states, delta, __ATOMIC_RELAXED);
}

/* ---- exposition ---------------------------------------------------------- */

/* A label value with \, " and newline escaped. */
static int put_value(mg_buf *b, const char *s)
{
	int rc = 0;

	for (const char *p = s; *p && !rc; p++) {
		if (*p == '\\' || *p == '"')
			rc = mg_buf_append(b, "\\", 1) || mg_buf_append(b, p, 1);
		else if (*p == '\n')
			rc = mg_buf_append(b, "\\n", 2);
		else
			rc = mg_buf_append(b, p, 1);
	}
	return rc;
}

/* name{l1="v1",...[,le="x"]} */
static int put_labels(mg_buf *b, const family *f, const series *s, const char *le)
{
	const char *v = s->labels;
	int rc = mg_buf_append(b, "{", 1);

	for (int i = 0; i < f->nlabels && !rc; i++) {
		rc = mg_buf_appendf(b, "%s%s=\"", i ? "," : "", f->label[i]) || put_value(b, v) ||
		     mg_buf_append(b, "\"", 1);
		v += strlen(v) + 1;
	}
	if (le && !rc)
		rc = mg_buf_appendf(b, "%sle=\"%s\"", f->nlabels ? "," : "", le);
	return rc || mg_buf_append(b, "}", 1);
}

static int put_family(mg_buf *b, const family *f)
{
	int rc = mg_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
				f->histogram ? "histogram" : "counter");

	for (int i = 0; i < f->n && !rc; i++) {
		const series *s = f->row[i];
		if (!f->histogram) {
			rc = mg_buf_appendf(b, "%s", f->name) || put_labels(b, f, s, NULL) ||
			     mg_buf_appendf(b, " %.17g\n", s->v[0]);
			continue;
		}
		double cum = 0;
		char le[32];
		for (size_t k = 0; k <= NBUCKETS && !rc; k++) {
			cum += s->v[k];
			if (k < NBUCKETS)
				snprintf(le, sizeof le, "%g", buckets[k]);
			else
				snprintf(le, sizeof le, "+Inf");
			rc = mg_buf_appendf(b, "%s_bucket", f->name) || put_labels(b, f, s, le) ||
			     mg_buf_appendf(b, " %.17g\n", cum);
		}
		rc = rc || mg_buf_appendf(b, "%s_sum", f->name) || put_labels(b, f, s, NULL) ||
		     mg_buf_appendf(b, " %.17g\n", s->v[NBUCKETS + 1]) ||
		     mg_buf_appendf(b, "%s_count", f->name) || put_labels(b, f, s, NULL) ||
		     mg_buf_appendf(b, " %.17g\n", s->v[NBUCKETS + 2]);
	}
	return rc;
}

static int put_one(mg_buf *b, const char *name, const char *type, const char *help, double v)
{
	return mg_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

/* Open file descriptors: the entries of /proc/self/fd (less the one that
 * reads it); -1 where there is no /proc. open() and getdents64 rather than
 * opendir(): ThreadSanitizer sees open() make a descriptor, not opendir(). */
static long open_fds(void)
{
	struct dirent64_rec { /* the kernel's linux_dirent64 */
		uint64_t ino;
		int64_t off;
		unsigned short reclen;
		unsigned char type;
		char name[];
	};
	uint64_t buf[512];
	long n = 0, got;
	int fd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((got = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
		for (long off = 0; off < got;) {
			const struct dirent64_rec *d = (const void *)((const char *)buf + off);
			if (d->name[0] != '.')
				n++;
			off += d->reclen;
		}
	close(fd);
	return n - 1;
}

/* Resident memory in bytes (/proc/self/statm's second field); -1 unknown. */
static double resident_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size, rss;
	int got;

	if (!f)
		return -1;
	got = fscanf(f, "%lu %lu", &size, &rss);
	fclose(f);
	return got == 2 ? (double)rss * (double)sysconf(_SC_PAGESIZE) : -1;
}

#define LOAD(x) ((double)__atomic_load_n(&(x), __ATOMIC_RELAXED))

int mg_metrics_render(mg_buf *b)
{
	long fds = open_fds();
	double rss = resident_bytes();
	struct rlimit rl;
	int rc;

	rc = mg_buf_appendf(b, "# HELP moongate_reloads_total Reloads of the Lua layer, each worker thread's "
			    "counted, by outcome (ok: the new scripts serve; failed: the old ones kept serving).\n"
			    "# TYPE moongate_reloads_total counter\n"
			    "moongate_reloads_total{outcome=\"ok\"} %.17g\nmoongate_reloads_total{outcome=\"failed\"} %.17g\n",
			    LOAD(reloads_ok), LOAD(reloads_failed)) ||
	     put_one(b, "moongate_uptime_seconds", "gauge", "Seconds since the daemon started.", mg_uptime()) ||
	     put_one(b, "moongate_lua_states", "gauge", "Lua states live in all worker threads (more than one "
		     "per thread while a state a reload retired still serves).", LOAD(lua_states)) ||
	     put_one(b, "moongate_requests_in_flight", "gauge", "HTTP requests under way.",
		     LOAD(mg_global_stats.open_requests)) ||
	     put_one(b, "moongate_streams_in_flight", "gauge", "Streamed answers under way.",
		     LOAD(mg_global_stats.open_streams)) ||
	     put_one(b, "moongate_ws_answers_in_flight", "gauge", "Chat-socket answers under way.",
		     LOAD(mg_global_stats.open_ws_answers)) ||
	     put_one(b, "moongate_buffered_bytes", "gauge", "Response bytes held in memory, not yet taken by clients.",
		     LOAD(mg_global_stats.buffered_bytes)) ||
	     put_one(b, "moongate_buffered_bytes_peak", "gauge", "The most response bytes held in memory at once.",
		     LOAD(mg_global_stats.buffered_peak)) ||
	     put_one(b, "moongate_client_disconnects_total", "counter", "Clients that left before their answer was out.",
		     LOAD(mg_global_stats.client_disconnects)) ||
	     put_one(b, "moongate_lua_errors_total", "counter", "Errors raised by Lua handlers and callbacks.",
		     LOAD(mg_global_stats.lua_errors)) ||
	     put_one(b, "moongate_log_lines_dropped_total", "counter", "Log lines dropped because the writer fell behind.",
		     (double)mg_log_dropped());
	if (!rc && fds >= 0)
		rc = put_one(b, "moongate_process_open_fds", "gauge", "Open file descriptors.", (double)fds);
	if (!rc && !getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY)
		rc = put_one(b, "moongate_process_max_fds", "gauge", "The limit on open file descriptors.",
			     (double)rl.rlim_cur);
	if (!rc && rss >= 0)
		rc = put_one(b, "moongate_process_resident_memory_bytes", "gauge", "Resident memory.", rss);

	pthread_mutex_lock(&lock);
	for (int i = 0; i < F_COUNT && !rc; i++)
		rc = put_family(b, &families[i]);
	if (!rc)
		rc = put_one(b, "moongate_metrics_label_overflow_total", "counter", "Records counted under an \"other\" "
			     "label set because their metric already had its most series.", (double)overflowed);
	pthread_mutex_unlock(&lock);
	return rc ? -1 : 0;
}

/* ---- Lua primitives ------------------------------------------------------ */

#define TEXT_MT "moongate.metrics_text"

/* The exposition's buffer, as a userdata: Lua frees it if pushing raises. */
static int text_gc(lua_State *L)
{
	mg_buf_free((mg_buf *)lua_touserdata(L, 1));
	return 0;
}

/* _metrics_text() -> the exposition of what C holds */
static int l_metrics_text(lua_State *L)
{
	mg_buf *b = lua_newuserdata(L, sizeof *b);

	memset(b, 0, sizeof *b);
	if (luaL_newmetatable(L, TEXT_MT)) {
		lua_pushcfunction(L, text_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_setmetatable(L, -2);
	if (mg_metrics_render(b))
		return luaL_error(L, "out of memory");
	lua_pushlstring(L, b->data ? b->data : "", b->len);
	mg_buf_free(b);
	return 1;
}

static const char *opt_string(lua_State *L, int idx, size_t *len)
{
	if (lua_type(L, idx) != LUA_TSTRING) {
		*len = 0;
		return NULL;
	}
	return lua_tolstring(L, idx, len);
}

/* _metrics_tokens(key, model, input, output): tokens an upstream reported;
 * key: the inbound key's name (never the key), nil without keys; model:
 * the name a route matched */
void mg_metrics_tokens(const char *key, size_t klen, const char *model, size_t mlen, double in, double out)
{
	labels l = { 3 };

	set_label(&l, 0, key, klen);
	set_label(&l, 1, model, mlen);
	if (in > 0) {
		set_label_z(&l, 2, "in");
		count(F_TOKENS, &l, in);
	}
	if (out > 0) {
		set_label_z(&l, 2, "out");
		count(F_TOKENS, &l, out);
	}
}

static int l_metrics_tokens(lua_State *L)
{
	size_t klen, mlen;
	const char *key = opt_string(L, 1, &klen), *model = opt_string(L, 2, &mlen);

	mg_metrics_tokens(key, klen, model, mlen, luaL_optnumber(L, 3, 0), luaL_optnumber(L, 4, 0));
	return 0;
}

static int provider_count(lua_State *L, int fi)
{
	size_t n;
	const char *name = opt_string(L, 1, &n);
	labels l = { 1 };

	set_label(&l, 0, name, n);
	count(fi, &l, 1);
	return 0;
}

/* _metrics_retry(provider) */
static int l_metrics_retry(lua_State *L)
{
	return provider_count(L, F_RETRIES);
}

/* _metrics_fallback(provider): the one fallen back from */
static int l_metrics_fallback(lua_State *L)
{
	return provider_count(L, F_FALLBACKS);
}

int mg_metrics_open(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "_metrics_text", l_metrics_text },
		{ "_metrics_tokens", l_metrics_tokens },
		{ "_metrics_retry", l_metrics_retry },
		{ "_metrics_fallback", l_metrics_fallback },
		{ NULL, NULL }
	};

	for (const luaL_Reg *f = fns; f->name; f++) {
		lua_pushcfunction(L, f->func);
		lua_setfield(L, -2, f->name);
	}
	return 0;
}
