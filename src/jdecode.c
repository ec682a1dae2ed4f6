/* The one-pass decoder of an array, some values left raw: see jdecode.h. */
#include "jdecode.h"

#include "jscan.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 200 /* lua-cjson's decode_max_depth in json.lua */
#define MAX_OPEN 64   /* values left raw whose objects have not ended yet */

/* A member of an object not ended yet that a path reached: a value left
 * raw, until its object ends and says whether it may stay so (the path's
 * when), or one walked into (path -1), whose values left raw are spans
 * first .. last of the spans table. key: the string the table holds;
 * NULL once the key came again (cjson keeps the last value). */
typedef struct open_val {
	const char *key;
	size_t key_len, from, to;
	double n;
	int path, depth, first, last;
} open_val;

typedef struct dec {
	lua_State *L;
	const mg_jdecode_in *in;
	const char *end;
	long used;  /* numbers given */
	int nspans; /* values in the spans table */
	int nopen;
	open_val open[MAX_OPEN];
} dec;

static const char *value(dec *d, const char *p, int depth);

/* Each pushes the value at p and returns the position past it, or returns
 * NULL when the text breaks the grammar there (the stack is the caller's
 * to reset). */

static const char *string(dec *d, const char *p)
{
	int esc;
	const char *e = mg_jstr_end(p, d->end, &esc);
	size_t n;

	if (!e)
		return NULL;
	n = (size_t)(e - p - 2);
	if (esc)
		lua_pushlstring(d->L, d->in->scratch, mg_junescape(p + 1, n, d->in->scratch));
	else
		lua_pushlstring(d->L, p + 1, n);
	return e;
}

/* strtod, as lua-cjson reads numbers, on a copy that ends where the number
 * does (the text need not) */
static const char *number(dec *d, const char *p)
{
	const char *e = mg_jnum_end(p, d->end);
	char small[64], *num = small, *stop;
	double v;

	if (!e)
		return NULL;
	if ((size_t)(e - p) >= sizeof small)
		num = d->in->scratch; /* (a number inside the array is shorter than it) */
	memcpy(num, p, (size_t)(e - p));
	num[e - p] = 0;
	v = strtod(num, &stop);
	if (stop != num + (e - p))
		return NULL; /* (a locale whose decimal point is not '.') */
	lua_pushnumber(d->L, v);
	return e;
}

static const char *literal(dec *d, const char *p, const char *word, size_t n)
{
	if ((size_t)(d->end - p) < n || memcmp(p, word, n) != 0)
		return NULL;
	if (*word == 'n')
		lua_pushlightuserdata(d->L, NULL); /* cjson.null */
	else
		lua_pushboolean(d->L, *word == 't');
	return p + n;
}

/* the array at p (its '['); lvl and alive: the paths still followed (its
 * objects are at level lvl of them) */
static const char *array(dec *d, const char *p, int lvl, unsigned alive, int depth);
static const char *object(dec *d, const char *p, int lvl, unsigned alive, int depth);

static const char *value(dec *d, const char *p, int depth)
{
	if (p >= d->end)
		return NULL;
	switch (*p) {
	case '"':
		return string(d, p);
	case '[':
		return array(d, p, 0, 0, depth);
	case '{':
		return object(d, p, 0, 0, depth);
	case 't':
		return literal(d, p, "true", 4);
	case 'f':
		return literal(d, p, "false", 5);
	case 'n':
		return literal(d, p, "null", 4);
	default:
		return number(d, p);
	}
}

static const char *array(dec *d, const char *p, int lvl, unsigned alive, int depth)
{
	lua_State *L = d->L;
	const char *end = d->end;
	int i = 0;

	if (depth > MAX_DEPTH)
		return NULL;
	luaL_checkstack(L, 4, "JSON nested too deep");
	lua_newtable(L);
	p = mg_jws(p + 1, end);
	if (p < end && *p == ']')
		return p + 1;
	for (;;) {
		if (alive && p < end && *p == '{')
			p = object(d, p, lvl, alive, depth + 1);
		else
			p = value(d, p, depth + 1);
		if (!p)
			return NULL;
		lua_rawseti(L, -2, ++i);
		p = mg_jws(p, end);
		if (p >= end)
			return NULL;
		if (*p == ']')
			return p + 1;
		if (*p != ',')
			return NULL;
		p = mg_jws(p + 1, end);
	}
}

/* is the value at p of the kind a path takes? */
static int kind_ok(int kind, const char *p, const char *end)
{
	const char *in;

	if (kind == 's')
		return *p == '"';
	if (*p != '{')
		return 0;
	in = mg_jws(p + 1, end);
	return in < end && *in != '}';
}

/* the marker of value n pushed: "<str_tag><n>", or {["<obj_tag><n>"] = true} */
static void push_marker(dec *d, int kind, double n)
{
	const mg_jdecode_in *in = d->in;
	const char *tag = kind == 's' ? in->str_tag : in->obj_tag;
	size_t tlen = kind == 's' ? in->str_tag_len : in->obj_tag_len, w = 0, k = 0;
	char buf[64 + 24], digits[24];
	unsigned long long num = (unsigned long long)n;

	do { /* (n is a whole number below 10^15: the binding checks) */
		digits[k++] = (char)('0' + num % 10);
		num /= 10;
	} while (num);
	memcpy(buf, tag, tlen); /* (tlen <= 64: the binding checks) */
	w = tlen;
	while (k)
		buf[w++] = digits[--k];
	if (kind == 's') {
		lua_pushlstring(d->L, buf, w);
		return;
	}
	lua_createtable(d->L, 0, 1);
	lua_pushlstring(d->L, buf, w);
	lua_pushboolean(d->L, 1);
	lua_rawset(d->L, -3);
}

/* the value at p left raw for path x: its marker pushed, its place noted
 * till its object ends */
static const char *leave_raw(dec *d, const char *p, const char *key, size_t key_len, int x, int depth)
{
	int kind = d->in->paths[x].kind, esc;
	const char *e = kind == 's' ? mg_jstr_end(p, d->end, &esc) : mg_jskip(p, d->end);
	open_val *v;

	if (!e || (kind == 'o' && e[-1] != '}'))
		return NULL;
	v = &d->open[d->nopen++];
	*v = (open_val){ key, key_len, (size_t)(p - d->in->text), (size_t)(e - d->in->text),
			 d->in->base + (double)++d->used, x, depth, 0, 0 };
	push_marker(d, kind, v->n);
	return e;
}

/* does the object t hold what path pa asks of the object its value is in? */
static int holds(dec *d, int t, const mg_jdpath *pa)
{
	lua_State *L = d->L;
	const char *s;
	size_t n;
	int yes = 0;

	if (!pa->when_key)
		return 1;
	lua_pushlstring(L, pa->when_key, pa->when_key_len);
	lua_rawget(L, t);
	s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
	for (int k = 0; s && k < pa->nwhen && !yes; k++)
		yes = pa->when_len[k] == n && memcmp(pa->when[k], s, n) == 0;
	lua_pop(L, 1);
	return yes;
}

/* object t ended: each value it left raw stays so (into the spans table)
 * or, when the path's when does not hold, is decoded after all; 0 when
 * that one breaks the grammar */
static int settle(dec *d, int t, int first)
{
	lua_State *L = d->L;
	const mg_jdecode_in *in = d->in;

	for (int o = first; o < d->nopen; o++) {
		const open_val *v = &d->open[o];
		if (!v->key || v->path < 0)
			continue;
		lua_pushlstring(L, v->key, v->key_len);
		if (!holds(d, t, &in->paths[v->path])) {
			if (!value(d, in->text + v->from, v->depth))
				return 0;
			lua_rawset(L, t);
			continue;
		}
		lua_rawget(L, t); /* the marker */
		lua_pushnumber(L, (lua_Number)v->from + 1);
		lua_rawseti(L, in->spans, ++d->nspans);
		lua_pushnumber(L, (lua_Number)v->to);
		lua_rawseti(L, in->spans, ++d->nspans);
		lua_pushnumber(L, v->n);
		lua_rawseti(L, in->spans, ++d->nspans);
		lua_rawseti(L, in->spans, ++d->nspans);
	}
	d->nopen = first;
	return 1;
}

static const char *object(dec *d, const char *p, int lvl, unsigned alive, int depth)
{
	lua_State *L = d->L;
	const mg_jdecode_in *in = d->in;
	const char *end = d->end;
	int t, first = d->nopen;

	if (depth > MAX_DEPTH)
		return NULL;
	luaL_checkstack(L, 6, "JSON nested too deep");
	lua_newtable(L);
	t = lua_gettop(L);
	p = mg_jws(p + 1, end);
	if (p < end && *p == '}')
		return p + 1;
	for (;;) {
		const char *k;
		size_t klen;
		unsigned deeper = 0;
		int raw = -1;
		if (p >= end || *p != '"' || !(p = string(d, p)))
			return NULL;
		k = lua_tolstring(L, -1, &klen); /* (held by t once set: interned, one per content) */
		p = mg_jws(p, end);
		if (p >= end || *p != ':')
			return NULL;
		p = mg_jws(p + 1, end);
		if (p >= end)
			return NULL;
		if (alive) {
			for (int x = 0; x < in->npaths; x++) {
				const mg_jdpath *pa = &in->paths[x];
				if (!(alive >> x & 1) || pa->key_len[lvl] != klen || memcmp(pa->key[lvl], k, klen) != 0)
					continue;
				if (pa->depth > lvl + 1)
					deeper |= 1u << x;
				else if (raw < 0 && kind_ok(pa->kind, p, end))
					raw = x;
			}
			/* a key given again: cjson keeps the last value, so what
			 * the first one left raw is no one's now */
			for (int o = first; o < d->nopen; o++)
				if (d->open[o].key == k) {
					d->open[o].key = NULL;
					for (int x = d->open[o].first; x < d->open[o].last; x += 4) {
						lua_pushboolean(L, 0);
						lua_rawseti(L, in->spans, x + 4);
					}
				}
		}
		if (deeper && (*p == '[' || *p == '{') && d->nopen < MAX_OPEN) {
			open_val *v = &d->open[d->nopen++];
			*v = (open_val){ k, klen, 0, 0, 0, -1, depth, d->nspans, 0 };
			p = *p == '[' ? array(d, p, lvl + 1, deeper, depth + 1) : object(d, p, lvl + 1, deeper, depth + 1);
			v->last = d->nspans; /* (v still this object's: the walk gave back what it took) */
		} else if (raw >= 0 && d->nopen < MAX_OPEN) {
			p = leave_raw(d, p, k, klen, raw, depth + 1);
		} else {
			p = value(d, p, depth + 1);
		}
		if (!p)
			return NULL;
		lua_rawset(L, t);
		p = mg_jws(p, end);
		if (p >= end)
			return NULL;
		if (*p == '}')
			break;
		if (*p != ',')
			return NULL;
		p = mg_jws(p + 1, end);
	}
	return settle(d, t, first) ? p + 1 : NULL;
}

long mg_jdecode(lua_State *L, const mg_jdecode_in *in)
{
	dec d = { L, in, in->text + in->to, 0, 0, 0 };
	int top = lua_gettop(L);
	unsigned alive = in->npaths > 0 ? (1u << in->npaths) - 1 : 0;
	const char *p;

	if (in->npaths < 0 || in->npaths > MG_JDECODE_PATHS || in->from >= in->to)
		return -1;
	p = mg_jws(in->text + in->from, d.end);
	if (p < d.end && *p == '[')
		p = array(&d, p, 0, alive, 1);
	else
		p = NULL;
	if (!p || mg_jws(p, d.end) != d.end) {
		lua_settop(L, top);
		return -1;
	}
	return d.used;
}
