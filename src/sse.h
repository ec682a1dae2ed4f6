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

/* Incremental SSE parser for upstream streams: LF, CRLF and CR line ends,
 * multi-line data, comments, event and id fields, input split at any byte.
 * Each complete event goes to the callback (data without its last newline).
 * The parser owns its buffers; mg_sse_parser_free() releases them. */
typedef void (*mg_sse_cb)(void *ud, const char *event, size_t elen,
			  const char *data, size_t dlen, const char *id, size_t ilen);
typedef struct mg_sse_parser {
	mg_buf line, data, event, id;
	int has_data;
	int skip_lf;  /* the last chunk ended in CR: a leading LF is its pair */
	int stop;     /* set by the callback to stop feeding */
} mg_sse_parser;

/* Returns the bytes consumed: all of them, unless the callback set p->stop. */
size_t mg_sse_parse(mg_sse_parser *p, const char *buf, size_t n, mg_sse_cb cb, void *ud);
void mg_sse_parser_free(mg_sse_parser *p);

/* NDJSON splitter: one callback per non-empty line (a CR before LF dropped). */
typedef void (*mg_line_cb)(void *ud, const char *line, size_t len);
size_t mg_ndjson_split(mg_buf *partial, int *stop, const char *buf, size_t n,
		       mg_line_cb cb, void *ud);

/* Registers _sse_frame(data [, event]), _ndjson_frame(data) and
 * _sse_parser() / _ndjson_splitter() (objects with :feed(bytes) -> frames). */
int mg_sse_open(lua_State *L);

#endif
