/* Log lines: level filter, the line's prefix (time, level, thread tag), and
 * the Lua primitives. Lines go to logq.c, which queues them for its writer
 * thread while the daemon serves (so a stuck reader of stderr never blocks
 * an event loop) and writes them at once otherwise. */
#include "log.h"
#include "logq.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int log_level = MG_LOG_INFO;
/* the calling thread's tag, and the start of its lines' timestamp
 * ("2026-01-01T12:00:00.") for the second it was made in: a line in the
 * same second costs a clock read and a copy, no formatting */
static _Thread_local struct {
	char tag[16];
	size_t taglen;
	time_t sec;
	char date[20];
} me = { "main", 4, -1, "" };
/* the first error line's message (since a reset), and the log file's path: both behind
 * file_lock (the path is set once, before the workers start, but read by
 * whichever thread reopens) */
static pthread_mutex_t file_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_error[512];
static char *log_path;     /* owned; NULL: no log file */
static int log_also_stdout;
static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };
static const char level_cols[][6] = { "ERROR", "WARN ", "INFO ", "DEBUG" };

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
	size_t n = strlen(tag);

	if (n >= sizeof me.tag)
		n = sizeof me.tag - 1;
	memcpy(me.tag, tag, n);
	me.tag[n] = 0;
	me.taglen = n;
}

/* "2026-01-01T12:00:00.000Z INFO  [tag] " into p (room for MAX_PREFIX) */
#define MAX_PREFIX 64
static size_t prefix(char *p, int level, const char *tag, size_t taglen)
{
	struct timespec ts;
	unsigned ms;
	size_t n;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != me.sec) {
		struct tm tm;
		char tmp[64];
		gmtime_r(&ts.tv_sec, &tm);
		snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		memcpy(me.date, tmp, sizeof me.date);
		me.sec = ts.tv_sec;
	}
	ms = (unsigned)(ts.tv_nsec / 1000000);
	memcpy(p, me.date, sizeof me.date);
	n = sizeof me.date;
	p[n++] = (char)('0' + ms / 100);
	p[n++] = (char)('0' + ms / 10 % 10);
	p[n++] = (char)('0' + ms % 10);
	p[n++] = 'Z';
	p[n++] = ' ';
	memcpy(p + n, level_cols[level], 5);
	n += 5;
	p[n++] = ' ';
	p[n++] = '[';
	memcpy(p + n, tag, taglen);
	n += taglen;
	p[n++] = ']';
	p[n++] = ' ';
	return n;
}

/* the writer's line when the queue had to drop some (logq.h) */
static size_t dropped_notice(char *buf, size_t cap, unsigned long long dropped)
{
	size_t n = prefix(buf, MG_LOG_WARN, "log", 3);
	int m = snprintf(buf + n, cap - n, "%llu log line%s dropped (the log's reader is too slow)\n",
			 dropped, dropped == 1 ? "" : "s");

	if (m < 0 || (size_t)m >= cap - n)
		return 0;
	return n + (size_t)m;
}

int mg_log_async_start(void)
{
	return mg_logq_start(dropped_notice);
}

int mg_log_async_stop(void)
{
	/* a reader that takes nothing for a second is not waited for longer */
	return mg_logq_stop(1000, 10000);
}

unsigned long long mg_log_dropped(void)
{
	return mg_logq_dropped();
}

#define MAX_MSG (MG_LOGQ_MAX_LINE - MAX_PREFIX - 16)

static int control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* msg[0..len) with its control characters written out (\n, \r, \t, else
 * \xHH) into out, at most cap bytes and never half an escape; returns the
 * length written, and in *used how much of msg it holds */
static size_t escape(const char *msg, size_t len, char *out, size_t cap, size_t *used)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)msg[i];
		if (!control(c)) {
			if (n + 1 > cap)
				break;
			out[n++] = (char)c;
		} else if (c == '\n' || c == '\r' || c == '\t') {
			if (n + 2 > cap)
				break;
			out[n++] = '\\';
			out[n++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
		} else {
			if (n + 4 > cap)
				break;
			out[n++] = '\\';
			out[n++] = 'x';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	*used = i;
	return n;
}

/* One line: msg with its trailing newlines dropped and its control
 * characters escaped, so that no value in it (a worker's name, a path, a Lua
 * error) can start a line of its own; cut at MAX_MSG. */
static void emit(int level, const char *msg, size_t len)
{
	char head[MAX_PREFIX], small[1024], *esc = NULL;
	struct iovec iov[3];
	size_t i, used;
	int cut;

	if (level == MG_LOG_ERROR) {
		size_t n = len < sizeof first_error - 1 ? len : sizeof first_error - 1;
		pthread_mutex_lock(&file_lock);
		if (!first_error[0]) {
			memcpy(first_error, msg, n);
			first_error[n] = 0;
		}
		pthread_mutex_unlock(&file_lock);
	}

	while (len && msg[len - 1] == '\n')
		len--;
	cut = len > MAX_MSG; /* one line is not the place for a dump */
	for (i = 0; i < len && !control((unsigned char)msg[i]); i++)
		;
	if (i < len) { /* rare: a line with control characters */
		size_t cap = len < MAX_MSG / 4 ? len * 4 : MAX_MSG;
		char *out = cap <= sizeof small ? small : (esc = malloc(cap));
		if (out) {
			size_t n = escape(msg, len, out, cap, &used);
			cut = used < len; /* the escaped text outgrew MAX_MSG */
			msg = out;
			len = n;
		} else {
			msg = "(a log line with control characters is lost: out of memory)";
			len = strlen(msg);
			cut = 0;
		}
	}
	iov[0].iov_base = head;
	iov[0].iov_len = prefix(head, level, me.tag, me.taglen);
	iov[1].iov_base = (void *)msg;
	iov[1].iov_len = len > MAX_MSG ? MAX_MSG : len;
	iov[2].iov_base = cut ? "... (cut)\n" : "\n";
	iov[2].iov_len = cut ? 10 : 1;
	mg_logq_write(iov, 3);
	free(esc);
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

void mg_log_first_error(char *buf, size_t cap)
{
	if (!cap)
		return;
	pthread_mutex_lock(&file_lock);
	snprintf(buf, cap, "%s", first_error);
	pthread_mutex_unlock(&file_lock);
}

void mg_log_first_error_reset(void)
{
	pthread_mutex_lock(&file_lock);
	first_error[0] = 0;
	pthread_mutex_unlock(&file_lock);
}

/* opens path for appending and dup2s it over stderr (and stdout) */
static int put_in_place(const char *path, int also_stdout)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	int e;

	if (fd < 0)
		return -1;
	if (dup2(fd, STDERR_FILENO) < 0 || (also_stdout && dup2(fd, STDOUT_FILENO) < 0)) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	close(fd);
	return 0;
}

int mg_log_file_open(const char *path, int also_stdout)
{
	char *copy = strdup(path);

	if (!copy)
		return -1;
	if (put_in_place(path, also_stdout)) {
		int e = errno;
		free(copy);
		errno = e;
		return -1;
	}
	pthread_mutex_lock(&file_lock);
	free(log_path);
	log_path = copy;
	log_also_stdout = also_stdout;
	pthread_mutex_unlock(&file_lock);
	return 0;
}

int mg_log_file_reopen(void)
{
	int rc = 1;

	pthread_mutex_lock(&file_lock);
	if (log_path)
		rc = put_in_place(log_path, log_also_stdout);
	pthread_mutex_unlock(&file_lock);
	return rc;
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
