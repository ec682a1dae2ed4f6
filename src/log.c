/* Log lines: level filter, the two formats (text: a prefix of time, level
 * and thread tag; JSON: one object), the thread's current request id, and
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
static int log_format = MG_LOG_TEXT;
/* the calling thread's current request id (mg_log_request_swap) */
static _Thread_local mg_log_rid cur_rid;
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
static const char *const level_json[] = { "error", "warn", "info", "debug" };
static const char hexd[] = "0123456789abcdef";

void mg_log_set_level(int level)
{
	if (level >= MG_LOG_ERROR && level <= MG_LOG_DEBUG)
		__atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

int mg_log_get_level(void)
{
	return __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

void mg_log_set_format(int format)
{
	__atomic_store_n(&log_format, format == MG_LOG_JSON ? MG_LOG_JSON : MG_LOG_TEXT, __ATOMIC_RELAXED);
}

int mg_log_get_format(void)
{
	return __atomic_load_n(&log_format, __ATOMIC_RELAXED);
}

void mg_log_request_swap(const char *id, size_t len, mg_log_rid *saved)
{
	if (saved)
		*saved = cur_rid;
	if (!id)
		len = 0;
	if (len > MG_LOG_RID_MAX)
		len = MG_LOG_RID_MAX;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)id[i];
		cur_rid.id[i] = c > 0x20 && c < 0x7f ? (char)c : '_';
	}
	cur_rid.len = (unsigned char)len;
}

void mg_log_request_restore(const mg_log_rid *saved)
{
	cur_rid = *saved;
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

/* "2026-01-01T12:00:00.000Z" (STAMP bytes) into p */
#define STAMP 24
static void stamp(char *p)
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
}

/* text: "2026-01-01T12:00:00.000Z INFO  [tag] "; JSON:
 * '{"ts":"2026-01-01T12:00:00.000Z","level":"info","thread":"tag",'; into p
 * (room for MAX_PREFIX) */
#define MAX_PREFIX 160
static size_t prefix(char *p, int level, const char *tag, size_t taglen)
{
	size_t n;

	if (mg_log_get_format() == MG_LOG_JSON) {
		memcpy(p, "{\"ts\":\"", 7);
		stamp(p + 7);
		n = 7 + STAMP;
		memcpy(p + n, "\",\"level\":\"", 11);
		n += 11;
		memcpy(p + n, level_json[level], strlen(level_json[level]));
		n += strlen(level_json[level]);
		memcpy(p + n, "\",\"thread\":", 11);
		n += 11;
		mg_log_json_str(p, &n, MAX_PREFIX - 1, tag, taglen);
		p[n++] = ',';
		return n;
	}
	stamp(p);
	n = STAMP;
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

static int plain_json(unsigned char c)
{
	return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

/* the length of the valid UTF-8 sequence that starts s[0..n) (s[0] >=
 * 0x80), or 0: overlong forms, surrogates and code points past U+10FFFF are
 * invalid too */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t need;

	if (c >= 0xc2 && c <= 0xdf) {
		need = 1;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 2;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n <= need || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i <= need; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return need + 1;
}

int mg_log_json_str(char *out, size_t *len, size_t cap, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t o = *len, i = 0, end = cap - 1; /* room for the closing quote */

	out[o++] = '"';
	while (i < n) {
		char esc[6];
		const char *src = esc;
		size_t el, used = 1;
		unsigned char c = u[i];
		if (plain_json(c)) {
			size_t j = i + 1, k;
			while (j < n && plain_json(u[j]))
				j++;
			k = j - i;
			if (k > end - o)
				k = end - o;
			memcpy(out + o, s + i, k);
			o += k;
			i += k;
			if (i < j)
				break;
			continue;
		}
		if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t') {
			esc[0] = '\\';
			esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : (char)c;
			el = 2;
		} else if (c < 0x80) { /* another control byte, or DEL */
			memcpy(esc, "\\u00", 4);
			esc[4] = hexd[c >> 4];
			esc[5] = hexd[c & 15];
			el = 6;
		} else if ((used = utf8_len(u + i, n - i))) {
			src = s + i;
			el = used;
		} else {
			src = "\\ufffd";
			el = 6;
			used = 1;
		}
		if (el > end - o)
			break;
		memcpy(out + o, src, el);
		o += el;
		i += used;
	}
	out[o++] = '"';
	*len = o;
	return i < n;
}

/* the writer's line when the queue had to drop some (logq.h) */
static size_t dropped_notice(char *buf, size_t cap, unsigned long long dropped)
{
	int json = mg_log_get_format() == MG_LOG_JSON;
	size_t n = prefix(buf, MG_LOG_WARN, "log", 3);
	int m = snprintf(buf + n, cap - n, "%s%llu log line%s dropped (the log's reader is too slow)%s\n",
			 json ? "\"msg\":\"" : "", dropped, dropped == 1 ? "" : "s", json ? "\"}" : "");

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

/* ` request_id="..."` (text) or `,"request_id":"..."` (JSON) */
#define RID_ROOM (2 * MG_LOG_RID_MAX + 32)
#define MAX_MSG (MG_LOGQ_MAX_LINE - MAX_PREFIX - RID_ROOM - 32)

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

/* The thread's current request id as a line's last member, into p (room
 * for RID_ROOM); 0 bytes when there is none. Its bytes are visible ASCII
 * (mg_log_request_swap). */
static size_t rid_suffix(char *p, int json)
{
	size_t n;

	if (!cur_rid.len)
		return 0;
	if (json) {
		memcpy(p, ",\"request_id\":", 14);
		n = 14;
		mg_log_json_str(p, &n, RID_ROOM, cur_rid.id, cur_rid.len);
		return n;
	}
	memcpy(p, " request_id=\"", 13);
	n = 13;
	for (size_t i = 0; i < cur_rid.len; i++) {
		if (cur_rid.id[i] == '"' || cur_rid.id[i] == '\\')
			p[n++] = '\\';
		p[n++] = cur_rid.id[i];
	}
	p[n++] = '"';
	return n;
}

static void note_first_error(const char *msg, size_t len)
{
	size_t n = len < sizeof first_error - 1 ? len : sizeof first_error - 1;

	pthread_mutex_lock(&file_lock);
	if (!first_error[0]) {
		memcpy(first_error, msg, n);
		first_error[n] = 0;
	}
	pthread_mutex_unlock(&file_lock);
}

/* A JSON line: {ts, level, thread, msg, request_id?, cut?}, msg escaped
 * and cut to fit MAX_MSG. */
static void emit_json(int level, const char *msg, size_t len)
{
	char head[MAX_PREFIX], tail[RID_ROOM + 32], small[2048], *buf = small;
	struct iovec iov[3];
	size_t cap = len < MAX_MSG / 6 ? len * 6 + 16 : MAX_MSG, n = 6, t;
	int cut;

	if (cap > sizeof small && !(buf = malloc(cap))) {
		buf = small;
		msg = "(a log line is lost: out of memory)";
		len = strlen(msg);
		cap = sizeof small;
	}
	memcpy(buf, "\"msg\":", 6);
	cut = mg_log_json_str(buf, &n, cap, msg, len);
	t = rid_suffix(tail, 1);
	if (cut) {
		memcpy(tail + t, ",\"cut\":true", 11);
		t += 11;
	}
	tail[t++] = '}';
	tail[t++] = '\n';
	iov[0].iov_base = head;
	iov[0].iov_len = prefix(head, level, me.tag, me.taglen);
	iov[1].iov_base = buf;
	iov[1].iov_len = n;
	iov[2].iov_base = tail;
	iov[2].iov_len = t;
	mg_logq_write(iov, 3);
	if (buf != small)
		free(buf);
}

/* One line: msg with its trailing newlines dropped and its control
 * characters escaped, so that no value in it (a worker's name, a path, a Lua
 * error) can start a line of its own; cut at MAX_MSG. */
static void emit(int level, const char *msg, size_t len)
{
	char head[MAX_PREFIX], tail[RID_ROOM + 16], small[1024], *esc = NULL;
	struct iovec iov[3];
	size_t i, used, t = 0;
	int cut;

	if (level == MG_LOG_ERROR)
		note_first_error(msg, len);
	while (len && msg[len - 1] == '\n')
		len--;
	if (mg_log_get_format() == MG_LOG_JSON) {
		emit_json(level, msg, len);
		return;
	}
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
	if (cut) {
		memcpy(tail, "... (cut)", 9);
		t = 9;
	}
	t += rid_suffix(tail + t, 0);
	tail[t++] = '\n';
	iov[0].iov_base = head;
	iov[0].iov_len = prefix(head, level, me.tag, me.taglen);
	iov[1].iov_base = (void *)msg;
	iov[1].iov_len = len > MAX_MSG ? MAX_MSG : len;
	iov[2].iov_base = tail;
	iov[2].iov_len = t;
	mg_logq_write(iov, 3);
	free(esc);
}

void mg_log_record(int level, const char *body, size_t len)
{
	char head[MAX_PREFIX];
	int json = mg_log_get_format() == MG_LOG_JSON;
	struct iovec iov[3];

	if (level > mg_log_get_level())
		return;
	if (len > MAX_MSG)
		len = MAX_MSG; /* callers make short lines: never in practice */
	iov[0].iov_base = head;
	iov[0].iov_len = prefix(head, level, me.tag, me.taglen);
	iov[1].iov_base = (void *)body;
	iov[1].iov_len = len;
	iov[2].iov_base = json ? "}\n" : "\n";
	iov[2].iov_len = json ? 2 : 1;
	mg_logq_write(iov, 3);
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

/* _log_format([format]) -> the current format's name ("text" or "json") */
static int l_log_format(lua_State *L)
{
	if (!lua_isnoneornil(L, 1)) {
		const char *f = luaL_checkstring(L, 1);
		if (strcmp(f, "text") && strcmp(f, "json"))
			return luaL_argerror(L, 1, "format must be text or json");
		mg_log_set_format(!strcmp(f, "json") ? MG_LOG_JSON : MG_LOG_TEXT);
	}
	lua_pushstring(L, mg_log_get_format() == MG_LOG_JSON ? "json" : "text");
	return 1;
}

/* _log_request() -> the thread's current request id | nil
 * _log_request(id | nil) -> the one it replaces | nil: id is current from
 * now on (nil: none) */
static int l_log_request(lua_State *L)
{
	mg_log_rid saved = cur_rid;
	size_t len = 0;
	const char *id = NULL;

	if (lua_gettop(L) >= 1) {
		if (!lua_isnil(L, 1))
			id = luaL_checklstring(L, 1, &len);
		mg_log_request_swap(id, len, NULL);
	}
	if (saved.len)
		lua_pushlstring(L, saved.id, saved.len);
	else
		lua_pushnil(L);
	return 1;
}

int mg_log_open(lua_State *L)
{
	lua_pushcfunction(L, l_log);
	lua_setfield(L, -2, "_log");
	lua_pushcfunction(L, l_log_level);
	lua_setfield(L, -2, "_log_level");
	lua_pushcfunction(L, l_log_format);
	lua_setfield(L, -2, "_log_format");
	lua_pushcfunction(L, l_log_request);
	lua_setfield(L, -2, "_log_request");
	return 0;
}
