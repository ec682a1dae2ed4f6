/* The access log: one line per HTTP request, at info level, and the
 * request ids that tie a request's lines together.
 *
 * text (one line; the fields after bytes only when known):
 *   access method=POST path="/v1/messages" status=200 ms=12.3 bytes=4567
 *          key="team-a" model="claude-x" provider="claude" tokens_in=12
 *          tokens_out=34 upstream_ms=810.2 ttfb_ms=95.1
 *          request_id="req_..." reason="..."
 * json (log_format = "json"): the log's object (log.h) with msg "access"
 *   and each field as its own member, numbers as numbers:
 *   {"ts":...,"level":"info","thread":"w1","msg":"access","method":"POST",
 *    "path":"/v1/messages","status":200,"ms":12.3,"bytes":4567,...}
 *
 * Every value that comes from a client or an upstream is quoted and
 * escaped (text: ", \ and every byte outside printable ASCII as \xHH;
 * JSON: log.h's mg_log_json_str), so no value can end the line or fake
 * another. The caller passes no query string, header, key or body.
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
	const char *request_id;        /* may be NULL */
	size_t request_id_len;
	long long tokens_in, tokens_out; /* < 0: not known */
	double upstream_ms, ttfb_ms;     /* < 0: not known */
} mg_access;

/* Writes the line when the log level is info or more verbose. */
void mg_access_log(const mg_access *a);

/* Request ids: at most MG_REQUEST_ID_MAX bytes of visible ASCII. */
#define MG_REQUEST_ID_MAX 128
/* The id of a request into out (room for MG_REQUEST_ID_MAX bytes, no NUL
 * written); returns its length. The client's own (from its x-request-id:
 * client[0..n)) when it sent a sane one (1 to MG_REQUEST_ID_MAX bytes, each
 * visible ASCII: 0x21..0x7e); else (client NULL, or not sane) a new one,
 * "req_" and 24 base62 characters (about 143 random bits) from the calling
 * thread's generator, which is seeded from getrandom(2) at its first use. */
size_t mg_access_request_id(const char *client, size_t n, char *out);

#endif
