/* Logging: one line per call on stderr, safe from any thread. While the
 * daemon serves (between mg_log_async_start and mg_log_async_stop) a call
 * only queues its line, never waits on stderr: see logq.h; lines are cut at
 * 64 KiB.
 * The host never logs request bodies or headers; secrets are redacted by the
 * Lua layer before a message reaches mg_log (see lua/moongate/log.lua). */
#ifndef MG_LOG_H
#define MG_LOG_H

#include <lua.h>
#include <stddef.h>

enum mg_log_level { MG_LOG_ERROR = 0, MG_LOG_WARN, MG_LOG_INFO, MG_LOG_DEBUG };

void mg_log_set_level(int level);
int mg_log_get_level(void);
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

/* Registers _log(level, msg) and _log_level([level]) on the table at -1. */
int mg_log_open(lua_State *L);

#endif
