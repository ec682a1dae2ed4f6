/* Logging: one line per call on stderr, safe from any thread. While the
 * daemon serves (between mg_log_async_start and mg_log_async_stop) a call
 * only queues its line, never waits on stderr: see logq.h; lines are cut at
 * 64 KiB.
 *
 * Two formats (mg_log_set_format, the config's log_format; docs/LOGS.md):
 *   text  2026-01-01T12:00:00.000Z WARN  [w1] message request_id="req_..."
 *   json  {"ts":"2026-01-01T12:00:00.000Z","level":"warn","thread":"w1",
 *          "msg":"message","request_id":"req_..."}
 * one line each; request_id only while the thread handles a request
 * (mg_log_request_swap). In JSON every string is escaped (quotes, control
 * characters, invalid UTF-8 as \ufffd), so every line parses.
 * The host never logs request bodies or headers; secrets are redacted by the
 * Lua layer before a message reaches mg_log (see lua/moongate/log.lua),
 * which alone writes bodies, at debug level (--verbose). */
#ifndef MG_LOG_H
#define MG_LOG_H

#include <lua.h>
#include <stddef.h>

enum mg_log_level { MG_LOG_ERROR = 0, MG_LOG_WARN, MG_LOG_INFO, MG_LOG_DEBUG };

void mg_log_set_level(int level);
int mg_log_get_level(void);

enum { MG_LOG_TEXT = 0, MG_LOG_JSON = 1 };
/* The format of every line from now on, any thread's: MG_LOG_TEXT (the
 * default) or MG_LOG_JSON. Set once at start, before the workers. */
void mg_log_set_format(int format);
int mg_log_get_format(void);

/* The calling thread's current request id, which each line it logs
 * carries (the access line says its own instead). */
#define MG_LOG_RID_MAX 128
typedef struct mg_log_rid {
	unsigned char len; /* 0: none */
	char id[MG_LOG_RID_MAX];
} mg_log_rid;
/* Makes id[0..len) the current request id (NULL or len 0: none), copied
 * (cut at MG_LOG_RID_MAX; a byte outside visible ASCII becomes '_'); the
 * one it replaces goes into *saved (may be NULL), to be put back with
 * mg_log_request_restore once the request's work on this thread is done. */
void mg_log_request_swap(const char *id, size_t len, mg_log_rid *saved);
void mg_log_request_restore(const mg_log_rid *saved);

/* Writes s[0..n) as a JSON string, its quotes included, at out + *len,
 * never past out + cap (cap - *len >= 2): escaped ("\\", "\"", \n, \r,
 * \t, other control bytes as \u00XX, a byte that is not part of valid
 * UTF-8 as \ufffd) and, when it does not fit, cut between two whole
 * characters so that the closing quote still does. Moves *len past what it
 * wrote; returns 1 when s was cut, else 0. */
int mg_log_json_str(char *out, size_t *len, size_t cap, const char *s, size_t n);

/* A line whose text the caller made for the current format (access.c): in
 * text, the prefix then body[0..len); in JSON, the object's ts, level and
 * thread, then body[0..len) (more members: `"msg":"access","status":200`),
 * then its closing brace. Written as it is (the caller escaped it), with no
 * request id of the thread's. Level-filtered. */
void mg_log_record(int level, const char *body, size_t len);
/* Tag used for the calling thread's lines ("main", "w1", ...). */
void mg_log_set_thread_tag(const char *tag);
void mg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Logs msg[0..len) as one line, as it is (no formatting). */
void mg_log_line(int level, const char *msg, size_t len);

/* Lines are queued for a writer thread from now on (logq.h). 0, or -1:
 * they stay synchronous. */
int mg_log_async_start(void);
/* Writes out what is queued, waiting for a reader that keeps reading but
 * not for one that stopped (1 s without progress, 10 s at most), and makes
 * lines synchronous again. 0, or -1 when it gave up. */
int mg_log_async_stop(void);
/* Lines dropped because the queue was full, since the start. */
unsigned long long mg_log_dropped(void);

/* The log file (--log-file): opens path for appending and puts it in place
 * of stderr (and of stdout too when also_stdout), so every line, the
 * writer thread's included, goes there. Remembers path for
 * mg_log_file_reopen. 0, or -1 with errno set (nothing changed). */
int mg_log_file_open(const char *path, int also_stdout);
/* Opens the remembered path again (after logrotate moved the file) and puts
 * it in place of the old one, atomically (dup2): a line being written goes
 * wholly to one or the other. 0; 1 when there is no log file; -1 with errno
 * set (the old file stays). Any thread. */
int mg_log_file_reopen(void);
/* The first error-level line's message (no prefix) since the last
 * mg_log_first_error_reset (or the start), cut to cap - 1 bytes; "" when
 * there was none: the cause, not the summaries after it. Any thread. */
void mg_log_first_error(char *buf, size_t cap);
void mg_log_first_error_reset(void);

/* Registers _log(level, msg), _log_level([level]), _log_format([format])
 * and _log_request([id | nil]) on the table at -1. */
int mg_log_open(lua_State *L);

#endif
