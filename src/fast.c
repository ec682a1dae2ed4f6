/* The fast path: an OpenAI chat request passed through whole, served in C
 * with no Lua call (docs/BENCHMARK.md, "The fast path").
 *
 * Lua decides, C only repeats the decision. A request takes Lua's path the
 * first time its model is asked for; when Lua finds that its route needs no
 * script (fast.lua says which), it publishes the route here
 * (_fast_route). The next request for that model that C can judge
 * completely (no Origin, no Content-Encoding, a Host and a key it knows,
 * a body whose top-level fields pass the door's published checks, no
 * stream) goes upstream from here: the model rewritten in place when the
 * route renames it, the provider's headers, the request id. A 2xx answer
 * that is a JSON object goes back as it came, its usage counted for the
 * access line and the metrics. Anything else is handed to Lua with the
 * answer (req.first): Lua's path then runs as if its own first attempt
 * had got it (retries, fallbacks, the client's error format). A request C
 * scanned but does not serve goes to Lua with the scan (req.top), and one
 * still waiting at the end of shutdown_timeout gets 503 (mg_fast_shutdown).
 *
 * Ownership: mg_fast is a userdata of the Lua state that published it (its
 * __gc frees the routes; s->fast points at it until then). A fast_req
 * belongs to its mg_req (r->c_ud) from mg_fast_try until the answer, the
 * hand-over, or the client's leaving (r->c_gone), whichever comes first;
 * its fetch belongs to the state's upstream engine (upstream.h), which
 * never calls back once the state has closed. */
#define _GNU_SOURCE /* memmem */
#include "fast.h"
#include "access.h"
#include "ctx.h"
#include "http.h"
#include "jscan.h"
#include "jscan_lua.h"
#include "log.h"
#include "lstate.h"
#include "lua_host.h"
#include "metrics.h"
#include "queue.h"
#include "upstream.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define FAST_MT "moongate.fast"
#define BUCKETS 256
#define MAX_ROUTES 1024
#define MAX_RULES 48
#define MAX_FIELDS 64
#define NAME_MAX_ 32

typedef struct fast_route {
	struct fast_route *next;
	char *model;          /* the key: the model as the client wrote it */
	size_t mlen;
	char *note_model, *provider, *url, *upstream_model; /* upstream_model: JSON text, or NULL */
	size_t nmlen, plen, umlen;
	char **headers;       /* name, value, ..., NULL; the provider's, x-request-id last */
	int rid_slot;         /* headers[rid_slot] is x-request-id's value (C's per request); -1: the route sets it */
	long connect_ms, first_byte_ms, idle_ms, total_ms;
	int insecure, compressed, curl;
} fast_route;

typedef struct fast_rule {
	char name[NAME_MAX_];
	size_t nlen;
	char kind; /* b n i s o a, or x: present and not null takes Lua's path */
	double lo, hi;
	int has_lo, has_hi;
} fast_rule;

typedef struct fast_key {
	char *key, *name;
	size_t len, nlen;
	int slow; /* limits or a model list: Lua's path */
} fast_key;

typedef struct mg_fast {
	mg_lstate *ls;
	int on;
	fast_route *buckets[BUCKETS];
	size_t nroutes;
	fast_rule rules[MAX_RULES];
	int nrules;
	char **hosts; /* lower-case names; NULL: any Host */
	int nhosts;
	fast_key *keys; /* NULL: no inbound keys */
	int nkeys;
	char marker[64];
	size_t marker_len;
	unsigned long long served, handed;
} mg_fast;

typedef struct fast_req {
	mg_queue node;         /* on this thread's list of live ones */
	mg_req *r;
	mg_fast *F;
	mg_fetch *f;
	mg_buf body;           /* the body with its model rewritten (else unused) */
	uint64_t t0;
	size_t plen;
	char provider[MG_NOTE_PROVIDER];
} fast_req;

/* the requests this thread serves on the fast path now (mg_fast_shutdown) */
static _Thread_local mg_queue live;

/* ---- routes ----------------------------------------------------------- */

static unsigned hash(const char *s, size_t n)
{
	unsigned h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

static void route_free(fast_route *rt)
{
	if (!rt)
		return;
	free(rt->model);
	free(rt->note_model);
	free(rt->provider);
	free(rt->url);
	free(rt->upstream_model);
	if (rt->headers)
		for (char **h = rt->headers; *h; h++)
			free(*h);
	free(rt->headers);
	free(rt);
}

static void routes_clear(mg_fast *F)
{
	for (int i = 0; i < BUCKETS; i++) {
		while (F->buckets[i]) {
			fast_route *rt = F->buckets[i];
			F->buckets[i] = rt->next;
			route_free(rt);
		}
	}
	F->nroutes = 0;
}

static fast_route *route_find(mg_fast *F, const char *model, size_t mlen)
{
	for (fast_route *rt = F->buckets[hash(model, mlen) % BUCKETS]; rt; rt = rt->next)
		if (rt->mlen == mlen && !memcmp(rt->model, model, mlen))
			return rt;
	return NULL;
}

static void config_clear(mg_fast *F)
{
	routes_clear(F);
	for (int i = 0; i < F->nhosts; i++)
		free(F->hosts[i]);
	free(F->hosts);
	F->hosts = NULL;
	F->nhosts = 0;
	for (int i = 0; i < F->nkeys; i++) {
		free(F->keys[i].key);
		free(F->keys[i].name);
	}
	free(F->keys);
	F->keys = NULL;
	F->nkeys = 0;
	F->nrules = 0;
	F->on = 0;
}

/* ---- what C judges ---------------------------------------------------- */

static int same_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
	unsigned char d = 0;

	if (alen != blen)
		return 0;
	for (size_t i = 0; i < alen; i++) /* every byte: no early exit */
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

/* The key the request carries, as keys.lua's presented() reads it:
 * Authorization: Bearer first, then x-api-key, then x-goog-api-key. */
static const char *presented(const char *auth, const char *xkey, const char *gkey, size_t *len)
{
	if (auth && (!strncmp(auth, "Bearer", 6) || !strncmp(auth, "bearer", 6)) &&
	    (auth[6] == ' ' || auth[6] == '\t')) {
		const char *k = auth + 6;
		size_t n;
		while (*k == ' ' || *k == '\t' || *k == '\r' || *k == '\n' || *k == '\f' || *k == '\v')
			k++;
		n = strlen(k);
		while (n && (k[n - 1] == ' ' || k[n - 1] == '\t'))
			n--;
		*len = n;
		return k;
	}
	if (xkey) {
		*len = strlen(xkey);
		return xkey;
	}
	if (gkey) {
		*len = strlen(gkey);
		return gkey;
	}
	return NULL;
}

/* The Host's name (port and the brackets of an IPv6 literal dropped) is one
 * Lua published. Anything else, Lua judges. */
static int host_known(const mg_fast *F, const char *host)
{
	char name[256];
	size_t n = 0;

	if (!F->hosts)
		return 1;
	if (!host || !*host)
		return 1; /* (Lua lets a request without a Host in too) */
	if (*host == '[') { /* an IPv6 literal: hex digits and colons only, as Lua's guard reads it */
		const char *e = strchr(host, ']');
		if (!e || e == host + 1 || (size_t)(e - host - 1) >= sizeof name ||
		    strspn(host + 1, "0123456789abcdefABCDEF:") != (size_t)(e - host - 1))
			return 0;
		n = (size_t)(e - host - 1);
		memcpy(name, host + 1, n);
	} else {
		while (host[n] && host[n] != ':' && n < sizeof name - 1) {
			name[n] = host[n];
			n++;
		}
		if (host[n] && host[n] != ':')
			return 0;
	}
	name[n] = 0;
	for (int i = 0; i < F->nhosts; i++)
		if (!strcasecmp(F->hosts[i], name))
			return 1;
	return 0;
}

static const fast_rule *rule_of(const mg_fast *F, const char *name, size_t n)
{
	for (int i = 0; i < F->nrules; i++)
		if (F->rules[i].nlen == n && !memcmp(F->rules[i].name, name, n))
			return &F->rules[i];
	return NULL;
}

/* A number's value as cjson reads it; 0 when it is not finite. */
static int number_of(const char *s, size_t n, double *v)
{
	char buf[64];

	if (n >= sizeof buf)
		return 0; /* (a long number: Lua judges it) */
	memcpy(buf, s, n);
	buf[n] = 0;
	*v = strtod(buf, NULL);
	return isfinite(*v);
}

/* Whether a field's value passes its rule (a door's check, as Lua's
 * oc.fields judges it) */
static int rule_ok(const fast_rule *ru, const char *text, const mg_jfield *f)
{
	double v;

	if (f->type == MG_JNULL)
		return 1; /* absent, for the door */
	switch (ru->kind) {
	case 'b':
		return f->type == MG_JTRUE || f->type == MG_JFALSE;
	case 's':
		return f->type == MG_JSTR;
	case 'o':
		return f->type == MG_JOBJ || (f->type == MG_JARR && f->count == 0);
	case 'a':
		return f->type == MG_JARR || (f->type == MG_JOBJ && f->count == 0);
	case 'n':
	case 'i':
		if (f->type != MG_JNUM || !number_of(text + f->from, f->to - f->from, &v))
			return 0;
		if (ru->kind == 'i' && floor(v) != v)
			return 0;
		return !(ru->has_lo && v < ru->lo) && !(ru->has_hi && v > ru->hi);
	default:
		return 0;
	}
}

/* ---- usage ------------------------------------------------------------ */

static size_t skip_ws(const char *s, size_t i, size_t n)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
		i++;
	return i;
}

/* The first "key" : digits in s[0 .. n): its value, or -1 */
static double count_of(const char *s, size_t n, const char *key)
{
	size_t kl = strlen(key);

	/* (a plain loop: the usage object is short, and memmem's set-up costs
	 * more than the search) */
	for (size_t at = 0; at + kl <= n; at++) {
		const char *p = s + at;
		size_t i, d = 0;
		double v = 0;
		if (*p != '"' || memcmp(p, key, kl))
			continue;
		i = skip_ws(s, at + kl, n);
		if (i >= n || s[i] != ':')
			continue;
		i = skip_ws(s, i + 1, n);
		while (i + d < n && s[i + d] >= '0' && s[i + d] <= '9')
			v = v * 10 + (s[i + d++] - '0');
		if (d)
			return v;
	}
	return -1;
}

/* metrics.lua's body_usage in C: the "usage" object of a whole answer. */
static int body_usage(const char *s, size_t n, double *in, double *out)
{
	const char *p = s;
	size_t start = 0, i, depth = 1;

	while ((p = memmem(p, n - (size_t)(p - s), "\"usage\"", 7))) {
		i = skip_ws(s, (size_t)(p - s) + 7, n);
		if (i < n && s[i] == ':') {
			i = skip_ws(s, i + 1, n);
			if (i < n && s[i] == '{') {
				start = i;
				break;
			}
		}
		p++;
	}
	if (!p)
		return 0;
	for (i = start + 1; i < n && depth; i++)
		depth += s[i] == '{' ? 1 : s[i] == '}' ? (size_t)-1 : 0;
	if (depth)
		return 0;
	n = i - start;
	s += start;
	*in = count_of(s, n, "\"prompt_tokens\"");
	if (*in < 0)
		*in = count_of(s, n, "\"input_tokens\"");
	*out = count_of(s, n, "\"completion_tokens\"");
	if (*out < 0)
		*out = count_of(s, n, "\"output_tokens\"");
	if (*in >= 0) {
		double c = count_of(s, n, "\"cache_creation_input_tokens\""), r = count_of(s, n, "\"cache_read_input_tokens\"");
		*in += (c > 0 ? c : 0) + (r > 0 ? r : 0);
	}
	if (*in < 0 && *out < 0)
		return 0;
	*in = *in < 0 ? 0 : *in; /* (one of them alone: the other is 0, as in Lua) */
	*out = *out < 0 ? 0 : *out;
	return 1;
}

/* wire.lua's object_text: the text is a JSON object (first and last bytes
 * that are not white space are braces; the rest is the client's concern) */
static int object_text(const char *s, size_t n)
{
	size_t i = skip_ws(s, 0, n);

	while (n > i && (unsigned char)s[n - 1] <= 32)
		n--;
	return i < n && s[i] == '{' && s[n - 1] == '}';
}

/* ---- a request -------------------------------------------------------- */

static void fast_req_free(fast_req *q)
{
	mg_queue_remove(&q->node);
	mg_buf_free(&q->body);
	free(q);
}

/* the client left (or the request is freed) while the upstream answers */
static void on_gone(mg_req *r)
{
	fast_req *q = r->c_ud;

	r->c_ud = NULL;
	r->upstream_ms = (double)(uv_hrtime() - q->t0) / 1e6;
	r->has_upstream = 1;
	if (q->f && r->ls->L) /* (a closed state's engine ended it already) */
		mg_fetch_stop(q->f);
	fast_req_free(q);
}

typedef struct first_answer {
	const char *provider, *err, *code, *body, *pairs;
	size_t plen, blen, hlen;
	int status;
	double ms; /* how long it took */
} first_answer;

/* req.first: the answer the fast path got, for Lua's path to take as its
 * first attempt's (providers/upstream.lua) */
static void push_first(lua_State *L, void *ud)
{
	const first_answer *a = ud;
	mg_buf h = { 0 };

	lua_createtable(L, 0, 6);
	lua_pushlstring(L, a->provider, a->plen);
	lua_setfield(L, -2, "provider");
	if (a->err) {
		lua_pushstring(L, a->err);
		lua_setfield(L, -2, "err");
	}
	if (a->code) {
		lua_pushstring(L, a->code);
		lua_setfield(L, -2, "code");
	}
	lua_pushinteger(L, a->status);
	lua_setfield(L, -2, "status");
	lua_pushnumber(L, a->ms);
	lua_setfield(L, -2, "ms");
	lua_pushlstring(L, a->body, a->blen);
	lua_setfield(L, -2, "body");
	h.data = (char *)a->pairs;
	h.len = a->hlen;
	mg_push_pairs(L, &h);
	lua_setfield(L, -2, "headers");
	lua_setfield(L, -2, "first");
}

static void on_done(void *ud, const char *err, const char *code, int status, const char *body, size_t blen,
		    const char *pairs, size_t plen)
{
	fast_req *q = ud;
	mg_req *r = q->r;
	double in = -1, out = -1, ms = (double)(uv_hrtime() - q->t0) / 1e6;

	q->f = NULL;
	r->c_gone = NULL;
	r->c_ud = NULL;
	if (!err && status >= 200 && status < 300 && object_text(body, blen)) {
		q->F->served++;
		r->upstream_ms = ms;
		r->has_upstream = 1;
		if (body_usage(body, blen, &in, &out)) { /* as _req_note and _metrics_tokens take them */
			r->tokens_in = in < 1e15 ? (long long)in : 0;
			r->tokens_out = out < 1e15 ? (long long)out : 0;
			r->has_tokens = 1;
			mg_metrics_tokens(r->key_len ? r->key : NULL, r->key_len, r->model, r->model_len, in, out);
		}
		fast_req_free(q);
		mg_req_respond(r, 200, "application/json", body, blen); /* (r may be gone after) */
		return;
	}
	/* Lua's path takes it from here, with this answer as its first try's */
	q->F->handed++;
	{
		first_answer a = { q->provider, err, code, body, pairs, q->plen, blen, plen, status, ms };
		mg_req_dispatch_with(r, push_first, &a); /* (r may be gone after; Lua notes the time) */
	}
	fast_req_free(q);
}

typedef struct scan_ud {
	const char *text;
	const mg_jscan_out *out;
	const mg_fast *F;
} scan_ud;

/* req.top = {fields, spans, marked, marker}: what jscan.top(body, marker)
 * would give, from C's scan (json.prescanned) */
static void push_scan(lua_State *L, void *ud)
{
	const scan_ud *s = ud;

	lua_createtable(L, 3, 1);
	if (mg_jscan_push_top(L, s->text, s->out) != 3 || lua_isnil(L, -3)) {
		lua_pop(L, 4); /* (cannot happen: duplicates were sent to Lua unscanned) */
		return;
	}
	lua_rawseti(L, -4, 3);
	lua_rawseti(L, -3, 2);
	lua_rawseti(L, -2, 1);
	lua_pushlstring(L, s->F->marker, s->F->marker_len);
	lua_setfield(L, -2, "marker");
	lua_setfield(L, -2, "top");
}

/* C scanned the body but does not serve it: Lua's path, with the scan */
static int decline(mg_req *r, const mg_jscan_out *out)
{
	scan_ud s = { r->body.data, out, r->ls->fast };

	mg_req_dispatch_with(r, push_scan, &s); /* (r may be gone after) */
	return 1;
}

int mg_fast_try(mg_req *r)
{
	mg_fast *F = r->ls->fast;
	static const char *const watched[4] = { "host", "authorization", "x-api-key", "x-goog-api-key" };
	const char *seen[4] = { NULL, NULL, NULL, NULL };
	int k;
	mg_jfield fields[MAX_FIELDS];
	mg_jscan_opts jo;
	mg_jscan_out out = { fields, MAX_FIELDS, 0, 0, 0 };
	const mg_jfield *model = NULL, *messages = NULL;
	const fast_key *key = NULL;
	fast_route *rt;
	fast_req *q;
	size_t i, nh;

	if (!F || !F->on || !r->ls->L || r->ctx->phase >= MG_PHASE_END || r->body_error || r->cors != MG_CORS_UNDECIDED ||
	    strcmp(r->method, "POST") || r->path.len != 20 || memcmp(r->path.data, "/v1/chat/completions", 20) ||
	    mg_log_get_level() >= MG_LOG_DEBUG)
		return 0;
	for (i = 0; i < r->headers.len;) {
		const char *name = r->headers.data + i;
		size_t nl = strlen(name);
		const char *value = name + nl + 1;
		i += nl + strlen(value) + 2;
		/* one of these given twice: Lua reads them joined (", "), so it judges */
		for (k = 0; k < 4; k++) {
			if (nl == strlen(watched[k]) && !memcmp(name, watched[k], nl)) {
				if (seen[k])
					return 0;
				seen[k] = value;
				break;
			}
		}
		if (k == 4 && ((nl == 6 && !memcmp(name, "origin", 6)) ||
			       (nl == 16 && !memcmp(name, "content-encoding", 16))))
			return 0; /* CORS and decoding: Lua's path */
	}
	if (!host_known(F, seen[0]))
		return 0;
	if (F->keys) {
		size_t klen = 0;
		const char *given = presented(seen[1], seen[2], seen[3], &klen);
		if (!given)
			return 0;
		for (int j = 0; j < F->nkeys; j++) /* every one, whichever matches */
			if (same_bytes(given, klen, F->keys[j].key, F->keys[j].len) && !key)
				key = &F->keys[j];
		if (!key || key->slow)
			return 0;
	}
	jo.max_depth = MG_JSCAN_LUA_DEPTH; /* as top()'s: Lua takes this scan if C declines (decline) */
	jo.marker = F->marker_len ? F->marker : NULL;
	jo.marker_len = F->marker_len;
	if (!r->body.len || mg_jscan(r->body.data, r->body.len, &jo, &out) != MG_JSCAN_OK || out.marked)
		return 0;
	for (i = 0; i < out.n; i++) {
		const mg_jfield *f = &fields[i];
		if (f->key_esc)
			return 0;
		for (size_t j = 0; j < i; j++) /* given twice: Lua's words */
			if (fields[j].key_len == f->key_len && !memcmp(fields[j].key_at, f->key_at, f->key_len))
				return 0;
	}
	/* from here on, a request C does not serve goes to Lua with this scan */
	for (i = 0; i < out.n; i++) {
		const mg_jfield *f = &fields[i];
		const fast_rule *ru;
		if (f->key_len == 5 && !memcmp(f->key_at, "model", 5))
			model = f;
		else if (f->key_len == 8 && !memcmp(f->key_at, "messages", 8))
			messages = f;
		else if (f->key_len == 6 && !memcmp(f->key_at, "stream", 6)) {
			if (f->type != MG_JFALSE && f->type != MG_JNULL)
				return decline(r, &out); /* a stream: Lua's path */
		} else if ((ru = rule_of(F, f->key_at, f->key_len)) && !rule_ok(ru, r->body.data, f))
			return decline(r, &out);
	}
	if (!model || model->type != MG_JSTR || model->esc || !messages || messages->type != MG_JARR ||
	    !messages->count)
		return decline(r, &out);
	rt = route_find(F, r->body.data + model->from + 1, model->to - model->from - 2);
	if (!rt)
		return decline(r, &out);

	if (!(q = calloc(1, sizeof *q)))
		return 0;
	mg_queue_init(&q->node);
	mg_req_begin(r);
	if (rt->upstream_model &&
	    (mg_buf_append(&q->body, r->body.data, model->from) ||
	     mg_buf_append(&q->body, rt->upstream_model, rt->umlen) ||
	     mg_buf_append(&q->body, r->body.data + model->to, r->body.len - model->to))) {
		fast_req_free(q);
		return 0;
	}
	q->r = r;
	q->F = F;
	q->plen = rt->plen < sizeof q->provider ? rt->plen : sizeof q->provider;
	memcpy(q->provider, rt->provider, q->plen);
	mg_req_note_c(r, rt->note_model, rt->nmlen, rt->provider, rt->plen);
	if (key) {
		size_t kl = key->nlen < sizeof r->key ? key->nlen : sizeof r->key;
		memcpy(r->key, key->name, kl);
		r->key_len = (unsigned char)kl;
	}
	q->t0 = uv_hrtime();
	for (nh = 0; rt->headers[nh]; nh++)
		;
	{
		/* the route's headers with this request's id: read during the
		 * call only (mg_fetch_start copies them), so on the stack */
		const char *hv[nh + 1];
		char rid[MG_REQUEST_ID_MAX + 1];
		memcpy(hv, rt->headers, (nh + 1) * sizeof *hv);
		memcpy(rid, r->rid, r->rid_len);
		rid[r->rid_len] = 0;
		if (rt->rid_slot >= 0)
			hv[rt->rid_slot] = rid;
		mg_fetch_req fq = { .url = rt->url, .method = "POST", .headers = hv,
				    .body = q->body.len ? q->body.data : r->body.data,
				    .blen = q->body.len ? q->body.len : r->body.len, .mode = MODE_BODY,
				    .connect_ms = rt->connect_ms, .first_byte_ms = rt->first_byte_ms,
				    .idle_ms = rt->idle_ms, .total_ms = rt->total_ms, .insecure = rt->insecure,
				    .compressed = rt->compressed, .curl = rt->curl };
		q->f = mg_fetch_start(r->ls->L, &fq, on_done, q);
	}
	if (!q->f) {
		fast_req_free(q);
		mg_req_fail(r, 500, "cannot start the upstream request");
		return 1;
	}
	r->c_gone = on_gone;
	r->c_ud = q;
	if (!live.next)
		mg_queue_init(&live);
	mg_queue_insert_tail(&live, &q->node);
	return 1;
}

void mg_fast_shutdown(void)
{
	while (live.next && live.next != &live) {
		fast_req *q = mg_queue_data(live.next, fast_req, node);
		mg_req *r = q->r;
		r->c_gone = NULL;
		r->c_ud = NULL;
		if (q->f && r->ls->L)
			mg_fetch_stop(q->f);
		fast_req_free(q);
		r->close_after = 1;
		mg_req_fail(r, 503, "the gateway is shutting down");
	}
}

/* ---- primitives ------------------------------------------------------- */

static int l_fast_gc(lua_State *L)
{
	mg_fast *F = lua_touserdata(L, 1);

	config_clear(F);
	if (F->ls && F->ls->fast == F)
		F->ls->fast = NULL;
	return 0;
}

/* this state's mg_fast, made once (NULL outside a worker's state: busted) */
static mg_fast *get_fast(lua_State *L, int make)
{
	mg_fast *F;
	mg_lstate *ls = mg_lstate_of(L);

	if (!ls)
		return NULL;
	if (ls->fast || !make)
		return ls->fast;
	F = mg_registry_udata(L, FAST_MT, sizeof *F, l_fast_gc);
	F->ls = ls;
	ls->fast = F;
	return F;
}

static char *dup_field(lua_State *L, int t, const char *name, size_t *len)
{
	size_t n = 0;
	const char *s;
	char *d = NULL;

	lua_getfield(L, t, name);
	s = lua_tolstring(L, -1, &n);
	if (s && (d = malloc(n + 1))) {
		memcpy(d, s, n);
		d[n] = 0;
	}
	lua_pop(L, 1);
	if (len)
		*len = n;
	return d;
}

static long num_field(lua_State *L, int t, const char *name)
{
	long v;

	lua_getfield(L, t, name);
	v = lua_isnumber(L, -1) ? (long)lua_tonumber(L, -1) : 0;
	lua_pop(L, 1);
	return v;
}

static int bool_field(lua_State *L, int t, const char *name)
{
	int v;

	lua_getfield(L, t, name);
	v = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return v;
}

/* _fast_config(opts | nil): this state's fast path, its routes dropped.
 * opts: {hosts = {name, ...} | nil (any Host), keys = {{key, name, slow}}
 * | nil (no inbound keys), rules = {{name, kind, lo, hi}}, marker};
 * nil turns it off. */
static int l_fast_config(lua_State *L)
{
	mg_fast *F = get_fast(L, !lua_isnoneornil(L, 1));
	int n;

	if (!F)
		return 0;
	config_clear(F);
	if (lua_isnoneornil(L, 1))
		return 0;
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "hosts");
	if (lua_istable(L, -1)) {
		n = (int)lua_objlen(L, -1);
		F->hosts = calloc((size_t)n + 1, sizeof *F->hosts);
		for (int i = 1; F->hosts && i <= n; i++) {
			lua_rawgeti(L, -1, i);
			if (lua_type(L, -1) == LUA_TSTRING && (F->hosts[F->nhosts] = strdup(lua_tostring(L, -1))))
				F->nhosts++;
			lua_pop(L, 1);
		}
		if (!F->hosts)
			return luaL_error(L, "out of memory");
	}
	lua_pop(L, 1);
	lua_getfield(L, 1, "keys");
	if (lua_istable(L, -1)) {
		n = (int)lua_objlen(L, -1);
		F->keys = calloc((size_t)n + 1, sizeof *F->keys);
		if (!F->keys)
			return luaL_error(L, "out of memory");
		for (int i = 1; i <= n; i++) {
			fast_key *k = &F->keys[F->nkeys];
			lua_rawgeti(L, -1, i);
			if (lua_istable(L, -1)) {
				k->key = dup_field(L, lua_gettop(L), "key", &k->len);
				k->name = dup_field(L, lua_gettop(L), "name", &k->nlen);
				k->slow = bool_field(L, lua_gettop(L), "slow");
				if (k->key && k->name)
					F->nkeys++;
				else {
					free(k->key);
					free(k->name);
				}
			}
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	lua_getfield(L, 1, "rules");
	if (lua_istable(L, -1)) {
		n = (int)lua_objlen(L, -1);
		for (int i = 1; i <= n && F->nrules < MAX_RULES; i++) {
			fast_rule *ru = &F->rules[F->nrules];
			size_t nl = 0;
			const char *name, *kind;
			lua_rawgeti(L, -1, i);
			lua_rawgeti(L, -1, 1);
			lua_rawgeti(L, -2, 2);
			lua_rawgeti(L, -3, 3);
			lua_rawgeti(L, -4, 4);
			name = lua_tolstring(L, -4, &nl);
			kind = lua_tostring(L, -3);
			if (name && kind && nl < NAME_MAX_ && strchr("bnisoax", kind[0])) {
				memcpy(ru->name, name, nl);
				ru->nlen = nl;
				ru->kind = kind[0];
				ru->has_lo = lua_isnumber(L, -2);
				ru->lo = lua_tonumber(L, -2);
				ru->has_hi = lua_isnumber(L, -1);
				ru->hi = lua_tonumber(L, -1);
				F->nrules++;
			}
			lua_pop(L, 5);
		}
	}
	lua_pop(L, 1);
	lua_getfield(L, 1, "marker");
	if (lua_isstring(L, -1)) {
		size_t ml;
		const char *m = lua_tolstring(L, -1, &ml);
		if (ml < sizeof F->marker) {
			memcpy(F->marker, m, ml);
			F->marker_len = ml;
		}
	}
	lua_pop(L, 1);
	F->on = 1;
	return 0;
}

/* _fast_route(model, route | nil): serve requests for `model` (the
 * client's text) in C, or no more. route: {provider, note_model (for the
 * access line), url, headers = {name = value}, upstream_model (JSON text;
 * nil: unchanged), connect_ms, first_byte_ms, idle_ms, total_ms, insecure,
 * compressed, curl} */
static int l_fast_route(lua_State *L)
{
	mg_fast *F = get_fast(L, 0);
	size_t mlen, nh = 0, i = 0;
	const char *model = luaL_checklstring(L, 1, &mlen);
	fast_route *rt, **pp;
	unsigned b = hash(model, mlen) % BUCKETS;

	if (!F || !F->on)
		return 0;
	for (pp = &F->buckets[b]; *pp; pp = &(*pp)->next) {
		if ((*pp)->mlen == mlen && !memcmp((*pp)->model, model, mlen)) {
			rt = *pp;
			*pp = rt->next;
			route_free(rt);
			F->nroutes--;
			break;
		}
	}
	if (lua_isnoneornil(L, 2))
		return 0;
	luaL_checktype(L, 2, LUA_TTABLE);
	if (F->nroutes >= MAX_ROUTES)
		routes_clear(F); /* (many names: start again) */
	if (!(rt = calloc(1, sizeof *rt)))
		return luaL_error(L, "out of memory");
	rt->model = malloc(mlen + 1);
	if (rt->model) {
		memcpy(rt->model, model, mlen);
		rt->model[mlen] = 0;
	}
	rt->mlen = mlen;
	rt->provider = dup_field(L, 2, "provider", &rt->plen);
	rt->note_model = dup_field(L, 2, "note_model", &rt->nmlen);
	rt->url = dup_field(L, 2, "url", NULL);
	rt->upstream_model = dup_field(L, 2, "upstream_model", &rt->umlen);
	rt->connect_ms = num_field(L, 2, "connect_ms");
	rt->first_byte_ms = num_field(L, 2, "first_byte_ms");
	rt->idle_ms = num_field(L, 2, "idle_ms");
	rt->total_ms = num_field(L, 2, "total_ms");
	rt->insecure = bool_field(L, 2, "insecure");
	rt->compressed = bool_field(L, 2, "compressed");
	rt->curl = bool_field(L, 2, "curl");
	rt->rid_slot = -1;
	lua_getfield(L, 2, "headers");
	if (lua_istable(L, -1)) {
		lua_pushnil(L);
		while (lua_next(L, -2)) {
			nh++;
			lua_pop(L, 1);
		}
	}
	rt->headers = calloc(2 * nh + 3, sizeof *rt->headers);
	if (rt->headers && lua_istable(L, -1)) {
		int has_rid = 0;
		lua_pushnil(L);
		while (lua_next(L, -2)) {
			if (lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1)) {
				rt->headers[i++] = strdup(lua_tostring(L, -2));
				rt->headers[i++] = strdup(lua_tostring(L, -1));
				has_rid |= !strcmp(lua_tostring(L, -2), "x-request-id"); /* (as Lua's headers["x-request-id"]) */
			}
			lua_pop(L, 1);
		}
		if (!has_rid) { /* the request's id: filled in per request */
			rt->headers[i++] = strdup("x-request-id");
			rt->rid_slot = (int)i;
			rt->headers[i++] = strdup("-");
		}
	}
	lua_pop(L, 1);
	if (!rt->model || !rt->provider || !rt->note_model || !rt->url || !rt->headers) {
		route_free(rt);
		return luaL_error(L, "out of memory");
	}
	for (size_t j = 0; j < i; j++) {
		if (!rt->headers[j]) {
			route_free(rt);
			return luaL_error(L, "out of memory");
		}
	}
	rt->next = F->buckets[b];
	F->buckets[b] = rt;
	F->nroutes++;
	return 0;
}

/* _fast_state() -> {on, routes, served, handed} | nil: this state's fast
 * path (served: answered in C; handed: given to Lua with the answer) */
static int l_fast_state(lua_State *L)
{
	mg_fast *F = get_fast(L, 0);

	if (!F)
		return 0;
	lua_createtable(L, 0, 4);
	lua_pushboolean(L, F->on);
	lua_setfield(L, -2, "on");
	lua_pushinteger(L, (lua_Integer)F->nroutes);
	lua_setfield(L, -2, "routes");
	lua_pushnumber(L, (lua_Number)F->served);
	lua_setfield(L, -2, "served");
	lua_pushnumber(L, (lua_Number)F->handed);
	lua_setfield(L, -2, "handed");
	return 1;
}

int mg_fast_open(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "_fast_config", l_fast_config },
		{ "_fast_route", l_fast_route },
		{ "_fast_state", l_fast_state },
		{ NULL, NULL }
	};

	mg_set_funcs(L, fns);
	return 0;
}
