/* Copying a request's headers out of libwebsockets, for both of its users
 * (http_lws.c's requests and ws.c's WebSocket upgrades). See lws_hdr.h. */
#include "lws_hdr.h"

#include <string.h>

int mg_lws_copy_headers(struct lws *wsi, const mg_buf *custom, mg_buf *out)
{
	/* the names beyond lws's tokens come from the front doors' descriptors
	 * (core._request_headers): C holds no API's header list */
	char buf[8192];
	int host = 0;

	for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
		const char *name = (const char *)lws_token_to_string(t);
		size_t nlen;
		int n;

		if (!name || name[0] == ':' || t == WSI_TOKEN_HTTP_URI_ARGS)
			continue;
		nlen = strlen(name);
		if (nlen < 2 || name[nlen - 1] != ':')
			continue; /* method tokens ("get ", "post ") and the like */
		if (lws_hdr_total_length(wsi, t) <= 0)
			continue;
		n = lws_hdr_copy(wsi, buf, sizeof buf, t);
		if (n >= 0 && mg_buf_append_pair(out, name, nlen - 1, buf, (size_t)n))
			return -1;
		host |= t == WSI_TOKEN_HOST && n >= 0;
	}
	/* HTTP/2 names the host :authority: it is the Host the guard reads */
	if (!host && lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_COLON_AUTHORITY) > 0) {
		int n = lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_COLON_AUTHORITY);
		if (n >= 0 && mg_buf_append_pair(out, "host", 4, buf, (size_t)n))
			return -1;
	}
	for (size_t i = 0; i < custom->len;) {
		const char *name = custom->data + i;
		int nlen = (int)strlen(name);
		int n;
		i += (size_t)nlen + 1;
		n = lws_hdr_custom_length(wsi, name, nlen);
		if (n <= 0 || n >= (int)sizeof buf)
			continue;
		if (lws_hdr_custom_copy(wsi, buf, sizeof buf, name, nlen) >= 0 &&
		    mg_buf_append_pair(out, name, (size_t)nlen - 1, buf, (size_t)n))
			return -1;
	}
	return 0;
}
