/* The request headers of an lws wsi as "name\0value\0" pairs.
 *
 * Floor 1: calls buf.c only. Used by http_lws.c and ws.c, which both stand
 * above it, so neither calls the other for it. */
#ifndef MG_LWS_HDR_H
#define MG_LWS_HDR_H

#include <libwebsockets.h>
#include "buf.h"

/* Appends every lws header token of wsi that is set, then each header named
 * in `custom` ("name:\0" each: the names beyond lws's own tokens that the
 * front doors read, from core._request_headers), to out. 0, or -1 out of
 * memory. */
int mg_lws_copy_headers(struct lws *wsi, const mg_buf *custom, mg_buf *out);

#endif
