#include "log.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static int log_level = MG_LOG_INFO;
static _Thread_local char thread_tag[16] = "main";
static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

void mg_log_set_level(int level)
{
	if (level >= MG_LOG_ERROR && level <= MG_LOG_DEBUG)
		__atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

int mg_log_get_level(void)
{
	return __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

void mg_log_set_thread_tag(const char *tag)
{
	snprintf(thread_tag, sizeof thread_tag, "%s", tag);
}

static void emit(int level, const char *msg, size_t len)
{
	char line[4096];
	struct timeval tv;
	struct tm tm;
	int n;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		     tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000),
		     level_names[level], thread_tag);
	if (n < 0)
		return;
	while (len && msg[len - 1] == '\n')
		len--;
	if ((size_t)n + len + 1 <= sizeof line) {
		/* the usual case: one write of the whole line (stderr is unbuffered) */
		memcpy(line + n, msg, len);
		line[(size_t)n + len] = '\n';
		fwrite(line, 1, (size_t)n + len + 1, stderr);
		return;
	}
	/* one locked stdio call per line keeps lines whole across threads */
	flockfile(stderr);
	fwrite(line, 1, (size_t)n, stderr);
	fwrite(msg, 1, len, stderr);
	fputc('\n', stderr);
	funlockfile(stderr);
}

void mg_log_line(int level, const char *msg, size_t len)
{
	if (level <= mg_log_get_level())
		emit(level, msg, len);
}

void mg_log(int level, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	int n;

	if (level > mg_log_get_level())
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	emit(level, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

static int level_from_lua(lua_State *L, int idx)
{
	const char *s = luaL_checkstring(L, idx);
	for (int i = 0; i <= MG_LOG_DEBUG; i++)
		if (!strcasecmp(s, level_names[i]))
			return i;
	return luaL_argerror(L, idx, "level must be error, warn, info or debug");
}

/* _log(level, message) */
static int l_log(lua_State *L)
{
	int level = level_from_lua(L, 1);
	size_t len;
	const char *msg = luaL_checklstring(L, 2, &len);

	if (level <= mg_log_get_level())
		emit(level, msg, len);
	return 0;
}

/* _log_level([level]) -> current level name */
static int l_log_level(lua_State *L)
{
	if (!lua_isnoneornil(L, 1))
		mg_log_set_level(level_from_lua(L, 1));
	lua_pushstring(L, level_names[mg_log_get_level()]);
	return 1;
}

int mg_log_open(lua_State *L)
{
	lua_pushcfunction(L, l_log);
	lua_setfield(L, -2, "_log");
	lua_pushcfunction(L, l_log_level);
	lua_setfield(L, -2, "_log_level");
	return 0;
}
