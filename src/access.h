/* The access log: one line per HTTP request, at info level.
 *
 *   access method=POST path="/v1/messages" status=200 ms=12.3 bytes=4567
 *          key="team-a" model="claude-x" provider="claude" reason="..."
 *
 * (one line; the inbound key's name, model, provider and reason only when
 * known). Every value that
 * comes from a client or an upstream is quoted and escaped (", \ and every
 * byte outside printable ASCII as \xHH), so no value can end the line or
 * fake another. The caller passes no query string, header, key or body.
 * Nothing is allocated: the line is made on the stack. Any thread. */
#ifndef MG_ACCESS_H
#define MG_ACCESS_H

#include <stddef.h>

typedef struct mg_access {
	const char *method;            /* NUL-terminated, from the parser's list */
	const char *path;              /* without the query string */
	size_t path_len;
	int status;
	double ms;
	unsigned long long bytes;
	const char *key, *model, *provider, *reason; /* may be NULL */
	size_t key_len, model_len, provider_len, reason_len;
} mg_access;

/* Writes the line when the log level is info or more verbose. */
void mg_access_log(const mg_access *a);

#endif
