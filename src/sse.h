/* Stream framing: Server-Sent Events and NDJSON, written into an mg_buf.
 * Nothing here allocates beyond the mg_buf it is given. */
#ifndef MG_SSE_H
#define MG_SSE_H

#include <lua.h>
#include "buf.h"

/* Appends one SSE event: an optional "event: NAME" line, one "data: " line
 * per line of `data` (LF, CRLF and CR all end a line), and a blank line.
 * Returns 0, or -1 when out of memory. */
int mg_sse_frame(mg_buf *out, const char *event, size_t elen,
		 const char *data, size_t dlen);

/* Appends `data` and a newline; a newline inside `data` is sent as the JSON
 * escape \n would have been, so every frame stays one line. */
int mg_ndjson_frame(mg_buf *out, const char *data, size_t dlen);

/* Registers _sse_frame(data [, event]) and _ndjson_frame(data). */
int mg_sse_open(lua_State *L);

#endif
