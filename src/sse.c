#include "sse.h"

#include <lauxlib.h>
#include <string.h>

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
		while (i < dlen && data[i] != '\n' && data[i] != '\r')
			i++;
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
	for (size_t i = 0; i < dlen; i++) {
		if (data[i] != '\n' && data[i] != '\r')
			continue;
		if (mg_buf_append(out, data + start, i - start) ||
		    mg_buf_append(out, data[i] == '\n' ? "\\n" : "\\r", 2))
			return -1;
		start = i + 1;
	}
	if (mg_buf_append(out, data + start, dlen - start))
		return -1;
	return mg_buf_append(out, "\n", 1);
}

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
	return 0;
}
