/* Logging: one line per call on stderr, safe from any thread.
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

/* Registers _log(level, msg) and _log_level([level]) on the table at -1. */
int mg_log_open(lua_State *L);

#endif
