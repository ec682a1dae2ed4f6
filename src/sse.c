#include "sse.h"

#include <lauxlib.h>
#include <string.h>

/* Index of the first CR or LF in s[0..n), or n: two vectorized scans
 * instead of a loop over bytes. */
static size_t line_end(const char *s, size_t n)
{
	const char *lf = n ? memchr(s, '\n', n) : NULL;
	size_t m = lf ? (size_t)(lf - s) : n;
	const char *cr = m ? memchr(s, '\r', m) : NULL;

	return cr ? (size_t)(cr - s) : m;
}

int mg_sse_frame(mg_buf *out, const char *event, size_t elen,
		 const char *data, size_t dlen)
{
	size_t i = 0;

	/* worst case every byte is a line: 7 bytes of prefix+LF per line */
	if (mg_buf_reserve(out, elen + 9 + dlen + 7 + 1))
		return -1;
	if (event && elen) {
		mg_buf_append(out, "event: ", 7);
		mg_buf_append(out, event, elen);
		mg_buf_append(out, "\n", 1);
	}
	do {
		size_t start = i;
		i += line_end(data + i, dlen - i);
		if (mg_buf_append(out, "data: ", 6) ||
		    mg_buf_append(out, data + start, i - start) ||
		    mg_buf_append(out, "\n", 1))
			return -1;
		if (i < dlen) {
			if (data[i] == '\r' && i + 1 < dlen && data[i + 1] == '\n')
				i++;
			i++;
			/* a trailing newline ends one more, empty, line */
			if (i == dlen && mg_buf_append(out, "data: \n", 7))
				return -1;
		}
	} while (i < dlen);
	return mg_buf_append(out, "\n", 1);
}

int mg_ndjson_frame(mg_buf *out, const char *data, size_t dlen)
{
	size_t start = 0;

	if (mg_buf_reserve(out, dlen + 1))
		return -1;
	for (size_t i = line_end(data, dlen); i < dlen; i = start + line_end(data + start, dlen - start)) {
		if (mg_buf_append(out, data + start, i - start) ||
		    mg_buf_append(out, data[i] == '\n' ? "\\n" : "\\r", 2))
			return -1;
		start = i + 1;
	}
	if (mg_buf_append(out, data + start, dlen - start))
		return -1;
	return mg_buf_append(out, "\n", 1);
}

/* what a parser keeps allocated between frames: more goes back at once */
#define KEEP 65536

static void sse_line(mg_sse_parser *p, const char *l, size_t n, mg_sse_cb cb, void *ud)
{
	const char *colon, *v;
	size_t fl, vl;

	if (!n) { /* blank line: dispatch */
		if (p->has_data) {
			size_t dl = p->data.len;
			if (dl && p->data.data[dl - 1] == '\n')
				dl--;
			cb(ud, p->event.data ? p->event.data : "", p->event.len,
			   p->data.data ? p->data.data : "", dl,
			   p->id.data ? p->id.data : "", p->id.len);
		}
		mg_buf_empty(&p->data, KEEP);
		p->event.len = 0;
		p->has_data = 0;
		return;
	}
	if (l[0] == ':')
		return; /* comment */
	colon = memchr(l, ':', n);
	fl = colon ? (size_t)(colon - l) : n;
	v = colon ? colon + 1 : l + n;
	vl = colon ? n - fl - 1 : 0;
	if (vl && v[0] == ' ') {
		v++;
		vl--;
	}
	if (fl == 4 && !memcmp(l, "data", 4)) {
		mg_buf_append(&p->data, v, vl);
		mg_buf_append(&p->data, "\n", 1);
		p->has_data = 1;
	} else if (fl == 5 && !memcmp(l, "event", 5)) {
		p->event.len = 0;
		mg_buf_append(&p->event, v, vl);
	} else if (fl == 2 && !memcmp(l, "id", 2)) {
		p->id.len = 0;
		mg_buf_append(&p->id, v, vl);
	} /* retry and unknown fields are ignored */
}

size_t mg_sse_parse(mg_sse_parser *p, const char *buf, size_t n, mg_sse_cb cb, void *ud)
{
	size_t i = 0;

	while (i < n && !p->stop) {
		size_t start = i;
		if (p->skip_lf) {
			p->skip_lf = 0;
			if (buf[i] == '\n') {
				i++;
				continue;
			}
		}
		i += line_end(buf + i, n - i);
		if (i == n) { /* no line end yet */
			mg_buf_append(&p->line, buf + start, i - start);
			break;
		}
		if (p->line.len) {
			mg_buf_append(&p->line, buf + start, i - start);
			sse_line(p, p->line.data, p->line.len, cb, ud);
			mg_buf_empty(&p->line, KEEP);
		} else {
			sse_line(p, buf + start, i - start, cb, ud);
		}
		if (buf[i] == '\r')
			p->skip_lf = 1;
		i++;
	}
	return i;
}

void mg_sse_parser_free(mg_sse_parser *p)
{
	mg_buf_free(&p->line);
	mg_buf_free(&p->data);
	mg_buf_free(&p->event);
	mg_buf_free(&p->id);
}

size_t mg_ndjson_split(mg_buf *partial, int *stop, const char *buf, size_t n,
		       mg_line_cb cb, void *ud)
{
	size_t i = 0;

	while (i < n && !*stop) {
		const char *nl = memchr(buf + i, '\n', n - i);
		const char *l;
		size_t len;
		if (!nl) {
			mg_buf_append(partial, buf + i, n - i);
			return n;
		}
		if (partial->len) {
			mg_buf_append(partial, buf + i, (size_t)(nl - (buf + i)));
			l = partial->data;
			len = partial->len;
		} else {
			l = buf + i;
			len = (size_t)(nl - (buf + i));
		}
		if (len && l[len - 1] == '\r')
			len--;
		if (len)
			cb(ud, l, len);
		mg_buf_empty(partial, KEEP);
		i = (size_t)(nl - buf) + 1;
	}
	return i;
}

/* ---- parser objects for Lua (specs, and Lua-side streams) ---------------- */

#define SSE_PARSER_MT "moongate.sse_parser"
#define NDJSON_MT "moongate.ndjson_splitter"

typedef struct {
	mg_sse_parser p;
	mg_buf partial;
	int stop;
} parser_ud;

static void push_frame(void *ud, const char *event, size_t elen, const char *data,
		       size_t dlen, const char *id, size_t ilen)
{
	lua_State *L = ud;
	lua_createtable(L, 0, 3);
	lua_pushlstring(L, data, dlen);
	lua_setfield(L, -2, "data");
	if (elen) {
		lua_pushlstring(L, event, elen);
		lua_setfield(L, -2, "event");
	}
	if (ilen) {
		lua_pushlstring(L, id, ilen);
		lua_setfield(L, -2, "id");
	}
	lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
}

static void push_line(void *ud, const char *line, size_t len)
{
	lua_State *L = ud;
	lua_pushlstring(L, line, len);
	lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
}

/* parser:feed(bytes) -> list of {data, event?, id?} */
static int l_parser_feed(lua_State *L)
{
	parser_ud *u = luaL_checkudata(L, 1, SSE_PARSER_MT);
	size_t n;
	const char *b = luaL_checklstring(L, 2, &n);

	lua_newtable(L);
	mg_sse_parse(&u->p, b, n, push_frame, L);
	return 1;
}

/* splitter:feed(bytes) -> list of lines */
static int l_splitter_feed(lua_State *L)
{
	parser_ud *u = luaL_checkudata(L, 1, NDJSON_MT);
	size_t n;
	const char *b = luaL_checklstring(L, 2, &n);

	lua_newtable(L);
	mg_ndjson_split(&u->partial, &u->stop, b, n, push_line, L);
	return 1;
}

static int l_parser_gc(lua_State *L)
{
	parser_ud *u = lua_touserdata(L, 1);
	mg_sse_parser_free(&u->p);
	mg_buf_free(&u->partial);
	return 0;
}

static int new_parser(lua_State *L, const char *mt, lua_CFunction feed)
{
	parser_ud *u = lua_newuserdata(L, sizeof *u);
	memset(u, 0, sizeof *u);
	if (luaL_newmetatable(L, mt)) {
		lua_newtable(L);
		lua_pushcfunction(L, feed);
		lua_setfield(L, -2, "feed");
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, l_parser_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_setmetatable(L, -2);
	return 1;
}

static int l_sse_parser(lua_State *L) { return new_parser(L, SSE_PARSER_MT, l_parser_feed); }
static int l_ndjson_splitter(lua_State *L) { return new_parser(L, NDJSON_MT, l_splitter_feed); }

static int push_buf(lua_State *L, mg_buf *b, int rc)
{
	if (rc) {
		mg_buf_free(b);
		return luaL_error(L, "out of memory");
	}
	lua_pushlstring(L, b->data, b->len);
	mg_buf_free(b);
	return 1;
}

/* _sse_frame(data [, event]) -> string */
static int l_sse_frame(lua_State *L)
{
	size_t dlen, elen = 0;
	const char *data = luaL_checklstring(L, 1, &dlen);
	const char *event = luaL_optlstring(L, 2, NULL, &elen);
	mg_buf b = { 0 };

	if (event && (memchr(event, '\n', elen) || memchr(event, '\r', elen)))
		return luaL_argerror(L, 2, "event name must be one line");
	return push_buf(L, &b, mg_sse_frame(&b, event, elen, data, dlen));
}

/* _ndjson_frame(data) -> string */
static int l_ndjson_frame(lua_State *L)
{
	size_t dlen;
	const char *data = luaL_checklstring(L, 1, &dlen);
	mg_buf b = { 0 };

	return push_buf(L, &b, mg_ndjson_frame(&b, data, dlen));
}

int mg_sse_open(lua_State *L)
{
	lua_pushcfunction(L, l_sse_frame);
	lua_setfield(L, -2, "_sse_frame");
	lua_pushcfunction(L, l_ndjson_frame);
	lua_setfield(L, -2, "_ndjson_frame");
	lua_pushcfunction(L, l_sse_parser);
	lua_setfield(L, -2, "_sse_parser");
	lua_pushcfunction(L, l_ndjson_splitter);
	lua_setfield(L, -2, "_ndjson_splitter");
	return 0;
}
