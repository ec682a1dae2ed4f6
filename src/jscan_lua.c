/* moongate.jscan: the JSON checker and top-level index (jscan.h) for Lua.
 * A module of its own, with no part of the daemon in it, so that the pure
 * Lua layer (lua/moongate/json.lua) can use it in any host that loads C
 * modules, and does without it elsewhere.
 *
 *   top(text [, marker]) -> fields, spans, marked
 *     fields: key -> value, for each top-level key whose value is a string,
 *       a number, a boolean or null (cjson.null: the NULL light userdata)
 *     spans: key -> {kind, from = i, to = j, n = count} for every key:
 *       where its value is (text:sub(i, j), 1-based; a caller may splice
 *       there), kind "object" | "array" (n: its count) | "scalar"
 *     marked: some string in the text begins with marker
 *   or nil, "syntax" (not JSON, nested past 200 as lua-cjson counts, too
 *     many top-level keys) | "not_object", or nil, "duplicate", key
 *
 *   decode(text, from, to, paths, str_tag, obj_tag, base) -> value, spans, used | nil
 *     text:sub(from, to) is an array value of a text top() accepted; value
 *     is what cjson decodes it to, but for the values paths reach (up to
 *     8, each a list of one or two member names, kind = "string" |
 *     "object", and when = {key, value, ...}: only where the object
 *     holding the value has member key equal to one of the values; see
 *     jdecode.h): in place of each, str_tag .. n (a string) or
 *     {[obj_tag .. n] = true} (an object). spans: 4 entries a value left
 *     so: from, to (1-based, in text), n, the marker (false: a member
 *     given again took its place, as cjson keeps the last one). n runs from base + 1
 *     to base + used (some may be unused). nil when the text is not an
 *     array there.
 *
 *   splice(s, cuts) -> s with cuts made: cuts is a flat list of 5 a cut,
 *     a, b, src, from, to: s:sub(a, b) becomes src:sub(from, to); cuts in
 *     order, not overlapping (json.encode_raw's; raises otherwise)
 *
 *   unmark(s, tag, owners) -> s with each raw value's marker (json.lua:
 *     "<tag>strN" or {"<tag>objN":true}) replaced by its text, and each
 *     "<tag><number or list text>" by that text; owners[N] = {text = ...,
 *     [N] = from, [-N] = to} says where value N's text is. nil, "gone"
 *     when a marker's value has no owner; nil, "misplaced" when a marker
 *     stands where no text can go (joined into a longer string)
 *     (json.encode_raw's, in one pass: its Lua loop is the fallback)
 *
 * Nothing raises on bad input; a wrong argument type does (luaL_check*). */
#define _GNU_SOURCE /* memmem */
#include "jdecode.h"
#include "jscan.h"
#include "jscan_lua.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 256
#define MAX_DEPTH MG_JSCAN_LUA_DEPTH

/* the key (unescaped when it must be) onto the stack */
static void push_key(lua_State *L, const mg_jfield *f, char *tmp)
{
	if (!f->key_esc) {
		lua_pushlstring(L, f->key_at, f->key_len);
		return;
	}
	lua_pushlstring(L, tmp, mg_junescape(f->key_at, f->key_len, tmp));
}

int mg_jscan_push_top(lua_State *L, const char *text, const mg_jscan_out *scan)
{
	const mg_jfield *fields = scan->fields;
	mg_jscan_out out = *scan;
	char small[256], *tmp = small;
	size_t need = 0;
	int t_fields = lua_gettop(L) + 1, t_spans = t_fields + 1;

	/* one scratch buffer, as long as the longest escaped key or string */
	for (size_t i = 0; i < out.n; i++) {
		if (fields[i].key_esc && fields[i].key_len > need)
			need = fields[i].key_len;
		if (fields[i].esc && fields[i].to - fields[i].from > need)
			need = fields[i].to - fields[i].from;
	}
	if (need > sizeof small && !(tmp = malloc(need)))
		return luaL_error(L, "out of memory");
	lua_createtable(L, 0, (int)out.n); /* 3: fields */
	lua_newtable(L);                   /* 4: spans */
	for (size_t i = 0; i < out.n; i++) {
		const mg_jfield *f = &fields[i];
		push_key(L, f, tmp);
		/* given twice? (spans holds every key) */
		lua_pushvalue(L, -1);
		lua_rawget(L, t_spans);
		if (!lua_isnil(L, -1)) {
			if (tmp != small)
				free(tmp);
			lua_pushnil(L);
			lua_pushliteral(L, "duplicate");
			lua_pushvalue(L, t_spans + 1); /* the key */
			return 3;
		}
		lua_pop(L, 1);
		/* spans[key]: where the value is, for every key */
		lua_pushvalue(L, -1);
		lua_createtable(L, 0, 4);
		lua_pushstring(L, f->type == MG_JOBJ ? "object" : f->type == MG_JARR ? "array" : "scalar");
		lua_setfield(L, -2, "kind");
		lua_pushnumber(L, (lua_Number)f->from + 1);
		lua_setfield(L, -2, "from");
		lua_pushnumber(L, (lua_Number)f->to);
		lua_setfield(L, -2, "to");
		lua_pushnumber(L, (lua_Number)f->count);
		lua_setfield(L, -2, "n");
		lua_rawset(L, t_spans);
		switch (f->type) {
		case MG_JOBJ:
		case MG_JARR:
			lua_pop(L, 1); /* the key: no value in fields */
			continue;
		case MG_JSTR:
			if (f->esc)
				lua_pushlstring(L, tmp, mg_junescape(text + f->from + 1, f->to - f->from - 2, tmp));
			else
				lua_pushlstring(L, text + f->from + 1, f->to - f->from - 2);
			break;
		case MG_JNUM: {
			/* strtod, as lua-cjson reads numbers; the text ends in a
			 * delimiter (or the closing brace), so it stops in place */
			char num[64];
			size_t n = f->to - f->from;
			if (n < sizeof num) {
				memcpy(num, text + f->from, n);
				num[n] = 0;
				lua_pushnumber(L, strtod(num, NULL));
			} else {
				char *big = malloc(n + 1);
				if (!big) {
					if (tmp != small)
						free(tmp);
					return luaL_error(L, "out of memory");
				}
				memcpy(big, text + f->from, n);
				big[n] = 0;
				lua_pushnumber(L, strtod(big, NULL));
				free(big);
			}
			break;
		}
		case MG_JTRUE:
			lua_pushboolean(L, 1);
			break;
		case MG_JFALSE:
			lua_pushboolean(L, 0);
			break;
		default:
			lua_pushlightuserdata(L, NULL);
		}
		lua_rawset(L, t_fields);
	}
	if (tmp != small)
		free(tmp);
	lua_pushboolean(L, out.marked);
	return 3;
}

static int l_top(lua_State *L)
{
	size_t len, mlen = 0;
	const char *text = luaL_checklstring(L, 1, &len);
	const char *marker = luaL_optlstring(L, 2, NULL, &mlen);
	mg_jfield fields[MAX_FIELDS];
	mg_jscan_opts o = { MAX_DEPTH, marker, mlen };
	mg_jscan_out out = { fields, MAX_FIELDS, 0, 0, 0 };
	int rc;

	lua_settop(L, 2);
	rc = mg_jscan(text, len, &o, &out);
	if (rc != MG_JSCAN_OK) {
		lua_pushnil(L);
		lua_pushstring(L, rc == MG_JSCAN_NOT_OBJECT ? "not_object" : "syntax");
		return 2;
	}
	return mg_jscan_push_top(L, text, &out);
}

/* utf8(s) -> s itself when it is well-formed UTF-8, else a copy with
 * U+FFFD for each ill-formed sequence */
static int l_utf8(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	char *out;

	if (mg_utf8_valid(s, len)) {
		lua_settop(L, 1);
		return 1;
	}
	out = malloc(len * 3);
	if (!out)
		return luaL_error(L, "out of memory");
	lua_pushlstring(L, out, mg_utf8_fix(s, len, out));
	free(out);
	return 1;
}

/* A buffer of at least n bytes, left on the stack: the one this Lua state
 * keeps in its registry (grown as needed, up to 1 MiB), or a larger one of
 * this call's own. Either way the GC owns it: nothing leaks when a push
 * after it raises (out of memory). */
#define SCRATCH_KEPT (1u << 20)
static char scratch_key;

static char *scratch(lua_State *L, size_t n)
{
	if (n > SCRATCH_KEPT)
		return lua_newuserdata(L, n);
	lua_pushlightuserdata(L, &scratch_key);
	lua_rawget(L, LUA_REGISTRYINDEX);
	if (lua_type(L, -1) != LUA_TUSERDATA || lua_objlen(L, -1) < n) {
		lua_pop(L, 1);
		lua_newuserdata(L, n < 65536 ? 65536 : n);
		lua_pushlightuserdata(L, &scratch_key);
		lua_pushvalue(L, -2);
		lua_rawset(L, LUA_REGISTRYINDEX);
	}
	return lua_touserdata(L, -1);
}

/* A piece put in place of s[a .. e) (0-based, e past the end). */
typedef struct cut {
	size_t a, e;
	const char *put;
	size_t put_len;
} cut;

/* Pushes s[lo .. hi) with each cut made (in order, inside it, none
 * overlapping): one buffer and one copy into the Lua string (a luaL_Buffer
 * would make and join a string per 8 KiB). */
static void push_cut(lua_State *L, const char *s, size_t lo, size_t hi, const cut *cuts, size_t m)
{
	size_t total = hi - lo, at = lo;
	char *out, *w;

	for (size_t k = 0; k < m; k++)
		total = total - (cuts[k].e - cuts[k].a) + cuts[k].put_len;
	w = out = scratch(L, total ? total : 1);
	for (size_t k = 0; k < m; k++) {
		memcpy(w, s + at, cuts[k].a - at);
		w += cuts[k].a - at;
		memcpy(w, cuts[k].put, cuts[k].put_len);
		w += cuts[k].put_len;
		at = cuts[k].e;
	}
	memcpy(w, s + at, hi - at);
	lua_pushlstring(L, out, total);
	lua_remove(L, -2); /* the scratch buffer */
}

/* a string field of table t (at idx) or NULL; held by t */
static const char *str_field(lua_State *L, int idx, int k, size_t *len)
{
	const char *v;

	lua_rawgeti(L, idx, k);
	v = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, len) : NULL;
	lua_pop(L, 1);
	return v;
}

static int l_decode(lua_State *L)
{
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len);
	lua_Integer from = luaL_checkinteger(L, 2), to = luaL_checkinteger(L, 3);
	mg_jdpath paths[MG_JDECODE_PATHS];
	mg_jdecode_in in;
	long used;
	int npaths;

	luaL_checktype(L, 4, LUA_TTABLE);
	memset(&in, 0, sizeof in);
	in.str_tag = luaL_checklstring(L, 5, &in.str_tag_len);
	in.obj_tag = luaL_checklstring(L, 6, &in.obj_tag_len);
	in.base = luaL_checknumber(L, 7);
	luaL_argcheck(L, in.str_tag_len <= 64 && in.obj_tag_len <= 64, 5, "a tag of at most 64 bytes");
	luaL_argcheck(L, in.base >= 0 && in.base < 1e15 && in.base == (lua_Number)(long long)in.base, 7,
		      "a whole number from 0 to 10^15"); /* (the numbers stay whole and short) */
	npaths = (int)lua_objlen(L, 4);
	if (npaths > MG_JDECODE_PATHS)
		return luaL_argerror(L, 4, "at most eight paths");
	lua_settop(L, 7);
	memset(paths, 0, sizeof paths);
	for (int x = 0; x < npaths; x++) {
		mg_jdpath *pa = &paths[x];
		const char *kind;
		lua_rawgeti(L, 4, x + 1); /* 8: the path (held by the list, and it holds its strings) */
		if (!lua_istable(L, 8))
			return luaL_argerror(L, 4, "each path a list of names");
		pa->depth = (int)lua_objlen(L, 8);
		if (pa->depth < 1 || pa->depth > 2)
			return luaL_argerror(L, 4, "a path of one or two names");
		for (int k = 0; k < pa->depth; k++)
			if (!(pa->key[k] = str_field(L, 8, k + 1, &pa->key_len[k])))
				return luaL_argerror(L, 4, "a path of names");
		lua_getfield(L, 8, "kind");
		kind = lua_tostring(L, -1);
		pa->kind = kind && strcmp(kind, "object") == 0 ? 'o' : 's';
		lua_getfield(L, 8, "when"); /* 10: {key, value, ...} or nil */
		if (lua_istable(L, 10)) {
			pa->nwhen = (int)lua_objlen(L, 10) - 1;
			if (pa->nwhen < 1 || pa->nwhen > 8 || !(pa->when_key = str_field(L, 10, 1, &pa->when_key_len)))
				return luaL_argerror(L, 4, "when: a key and one to eight strings");
			for (int k = 0; k < pa->nwhen; k++)
				if (!(pa->when[k] = str_field(L, 10, k + 2, &pa->when_len[k])))
					return luaL_argerror(L, 4, "when: a key and one to eight strings");
		}
		lua_settop(L, 7);
	}
	if (from < 1 || to < from || (size_t)to > len)
		return 0;
	in.text = text;
	in.from = (size_t)from - 1;
	in.to = (size_t)to;
	in.paths = paths;
	in.npaths = npaths;
	in.scratch = scratch(L, in.to - in.from + 1); /* 8 */
	lua_newtable(L);                               /* 9: spans */
	in.spans = 9;
	used = mg_jdecode(L, &in); /* 10: the array */
	if (used < 0)
		return 0;
	lua_pushvalue(L, 9);
	lua_pushnumber(L, (lua_Number)used);
	return 3;
}

static int l_splice(lua_State *L)
{
	size_t len, at = 0, n, m;
	const char *s = luaL_checklstring(L, 1, &len);
	cut *cuts;

	luaL_checktype(L, 2, LUA_TTABLE);
	n = lua_objlen(L, 2);
	if (n % 5)
		return luaL_argerror(L, 2, "cuts come 5 a cut");
	m = n / 5;
	lua_settop(L, 2);
	cuts = lua_newuserdata(L, (m ? m : 1) * sizeof *cuts); /* 3: freed by the GC */
	for (size_t k = 0; k < m; k++) {
		size_t slen;
		lua_Integer v[5];
		const char *src;
		for (int x = 0; x < 5; x++)
			lua_rawgeti(L, 2, (int)(5 * k) + x + 1); /* 4 .. 8 */
		for (int x = 0; x < 5; x++)
			v[x] = x == 2 ? 0 : lua_tointeger(L, 4 + x);
		if (lua_type(L, 6) != LUA_TSTRING) /* (a number made a string here would go with the stack slot) */
			return luaL_error(L, "splice: cut %d: the text to put is not a string", (int)k + 1);
		src = lua_tolstring(L, 6, &slen); /* (held by the cuts table) */
		if (v[0] < 1 || (size_t)v[0] <= at || v[1] < v[0] - 1 || (size_t)v[1] > len || v[3] < 1 || v[4] < v[3] - 1 ||
		    (size_t)v[4] > slen)
			return luaL_error(L, "splice: cut %d out of order or out of range", (int)k + 1);
		/* s:sub(a, b) becomes src:sub(f, t) */
		cuts[k] = (cut){ (size_t)v[0] - 1, (size_t)v[1], src + v[3] - 1, (size_t)(v[4] - v[3] + 1) };
		at = (size_t)v[1];
		lua_settop(L, 3);
	}
	push_cut(L, s, 0, len, cuts, m);
	return 1;
}

/* Whether s[0 .. n) starts as a raw marker's name does: "str", "obj" (or
 * any [so][tb][rj]) and a digit */
static int marker_like(const char *s, size_t n)
{
	return n >= 4 && (s[0] == 's' || s[0] == 'o') && (s[1] == 't' || s[1] == 'b') && (s[2] == 'r' || s[2] == 'j') &&
	       s[3] >= '0' && s[3] <= '9';
}

/* the number of a marker named kind .. digits (all of t): -1 when t is not
 * one; a number past 2^53 (no raw value has one) reads as -2 ("gone") */
static double marker_number(const char *t, size_t n, const char *kind)
{
	double v = 0;

	if (n < 4 || memcmp(t, kind, 3))
		return -1;
	for (size_t i = 3; i < n; i++) {
		if (t[i] < '0' || t[i] > '9')
			return -1;
		if (v < 9007199254740992.0)
			v = v * 10 + (t[i] - '0');
	}
	return v < 9007199254740992.0 ? v : -2;
}

static int l_unmark(lua_State *L)
{
	size_t len, tlen, cap = 0, m = 0, p = 0;
	const char *s = luaL_checklstring(L, 1, &len);
	const char *tag = luaL_checklstring(L, 2, &tlen), *x;
	cut *cuts;

	luaL_checktype(L, 3, LUA_TTABLE);
	if (!tlen)
		return luaL_argerror(L, 2, "an empty tag");
	lua_settop(L, 3);
	/* room for every marker first: nothing is allocated once texts are pointed at */
	for (x = s; (x = memmem(x, len - (size_t)(x - s), tag, tlen)); x += tlen)
		cap++;
	cuts = lua_newuserdata(L, (cap ? cap : 1) * sizeof *cuts); /* 4: freed by the GC */
	/* 5: each text a cut points into, held till push_cut has copied it (its
	 * owner may be held only weakly, and push_cut allocates); sized now,
	 * so that setting its entries allocates nothing */
	lua_createtable(L, (int)(cap ? cap : 1), 0);
	while (p < len && (x = memmem(s + p, len - p, tag, tlen))) {
		size_t at = (size_t)(x - s), after = at + tlen, j = 0, a = 0, e = 0, next = at + 1;
		const char *put = NULL, *t = s + after, *q;
		size_t put_len = 0, tl = 0;
		double n = -1;
		int quoted = at >= 1 && s[at - 1] == '"' && !(at >= 2 && s[at - 2] == '\\');

		if (quoted && (q = memchr(s + after, '"', len - after))) {
			j = (size_t)(q - s);
			tl = j - after;
			next = j + 1;
			if ((n = marker_number(t, tl, "obj")) != -1 && at >= 2 && s[at - 2] == '{' && j + 7 <= len &&
			    !memcmp(s + j + 1, ":true}", 6)) {
				a = at - 2; /* {"<tag>objN":true} */
				e = j + 7;
			} else if ((n = marker_number(t, tl, "str")) != -1) {
				a = at - 1; /* "<tag>strN" */
				e = j + 1;
			} else if (strspn(t, "0123456789.eE+-[]") >= tl) {
				/* M.raw's own text, in the marker */
				a = at - 1;
				e = j + 1;
				put = t;
				put_len = tl;
			}
		}
		if (!e) {
			if (marker_like(t, len - after)) {
				lua_pushnil(L);
				lua_pushliteral(L, "misplaced");
				return 2;
			}
			p = next;
			continue;
		}
		if (!put) { /* the text of raw value n: owners[n] = {text = ..., [n] = from, [-n] = to} */
			lua_Number from, to;
			size_t olen;
			const char *otext;
			lua_pushnumber(L, n);
			lua_rawget(L, 3);
			if (n < 0 || !lua_istable(L, -1)) {
				lua_pushnil(L);
				lua_pushliteral(L, "gone");
				return 2;
			}
			lua_getfield(L, -1, "text");
			lua_pushnumber(L, n);
			lua_rawget(L, -3);
			lua_pushnumber(L, -n);
			lua_rawget(L, -4);
			otext = lua_type(L, -3) == LUA_TSTRING ? lua_tolstring(L, -3, &olen) : NULL;
			from = lua_tonumber(L, -2);
			to = lua_tonumber(L, -1);
			if (!otext || from < 1 || to < from - 1 || to > (lua_Number)olen) {
				lua_pushnil(L);
				lua_pushliteral(L, "gone");
				return 2;
			}
			lua_pushvalue(L, -3);
			lua_rawseti(L, 5, (int)m + 1); /* held (above) */
			lua_pop(L, 4);
			put = otext + (size_t)from - 1;
			put_len = (size_t)(to - from + 1);
		}
		cuts[m++] = (cut){ a, e, put, put_len };
		p = e;
	}
	push_cut(L, s, 0, len, cuts, m);
	return 1;
}

int luaopen_moongate_jscan(lua_State *L)
{
	lua_newtable(L);
	lua_pushcfunction(L, l_top);
	lua_setfield(L, -2, "top");
	lua_pushcfunction(L, l_utf8);
	lua_setfield(L, -2, "utf8");
	lua_pushcfunction(L, l_decode);
	lua_setfield(L, -2, "decode");
	lua_pushcfunction(L, l_splice);
	lua_setfield(L, -2, "splice");
	lua_pushcfunction(L, l_unmark);
	lua_setfield(L, -2, "unmark");
	return 1;
}
