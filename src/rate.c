/* Per-key request and token limits: see rate.h. */
#include "rate.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct rate_key {
	struct rate_key *next;
	char *name;               /* owned */
	double req, req_at;       /* request bucket: level, when last refilled */
	double tok, tok_at;       /* token bucket (may go below 0) */
	int req_init, tok_init;
	long day, month;          /* the periods the counts below are of */
	double day_used, month_used;
	double admitted, refused; /* counts, for /stats */
} rate_key;

static uv_mutex_t mu;
static uv_once_t mu_once = UV_ONCE_INIT;
static rate_key *keys; /* mu */

static void init_mu(void)
{
	uv_mutex_init(&mu);
}

static rate_key *find(const char *name)
{
	rate_key *k;

	for (k = keys; k; k = k->next)
		if (!strcmp(k->name, name))
			return k;
	if (!(k = calloc(1, sizeof *k)))
		return NULL;
	if (!(k->name = strdup(name))) {
		free(k);
		return NULL;
	}
	k->next = keys;
	keys = k;
	return k;
}

/* Refills a bucket of `per_min` to now (capacity: one minute's worth). */
static void refill(double *level, double *at, int *init, double per_min, double now)
{
	if (!*init) {
		*level = per_min;
		*at = now;
		*init = 1;
		return;
	}
	*level += (now - *at) * per_min / 60.0;
	if (*level > per_min)
		*level = per_min;
	*at = now;
}

static long day_of(time_t wall)
{
	return (long)(wall / 86400);
}

static long month_of(time_t wall)
{
	struct tm tm;

	gmtime_r(&wall, &tm);
	return (long)tm.tm_year * 12 + tm.tm_mon;
}

static double to_next_day(time_t wall)
{
	return (double)(86400 - wall % 86400);
}

static double to_next_month(time_t wall)
{
	struct tm tm;

	gmtime_r(&wall, &tm);
	tm.tm_mday = 1;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	if (++tm.tm_mon == 12) {
		tm.tm_mon = 0;
		tm.tm_year++;
	}
	return difftime(timegm(&tm), wall);
}

/* The budgets' periods roll over at UTC midnight and the first of the month. */
static void roll(rate_key *k, time_t wall)
{
	if (k->day != day_of(wall)) {
		k->day = day_of(wall);
		k->day_used = 0;
	}
	if (k->month != month_of(wall)) {
		k->month = month_of(wall);
		k->month_used = 0;
	}
}

int mg_rate_take(const char *key, const mg_rate_limits *lim, double now, time_t wall, double *retry_s)
{
	rate_key *k;
	int rc = MG_RATE_OK;

	*retry_s = 0;
	uv_once(&mu_once, init_mu);
	uv_mutex_lock(&mu);
	if (!(k = find(key)))
		goto out;
	roll(k, wall);
	if (lim->per_month > 0 && k->month_used >= lim->per_month) {
		rc = MG_RATE_MONTH;
		*retry_s = to_next_month(wall);
	} else if (lim->per_day > 0 && k->day_used >= lim->per_day) {
		rc = MG_RATE_DAY;
		*retry_s = to_next_day(wall);
	}
	if (!rc && lim->tpm > 0) {
		refill(&k->tok, &k->tok_at, &k->tok_init, lim->tpm, now);
		if (k->tok <= 0) {
			rc = MG_RATE_TPM;
			*retry_s = (1 - k->tok) * 60.0 / lim->tpm;
		}
	}
	if (!rc && lim->rpm > 0) {
		refill(&k->req, &k->req_at, &k->req_init, lim->rpm, now);
		if (k->req < 1) {
			rc = MG_RATE_RPM;
			*retry_s = (1 - k->req) * 60.0 / lim->rpm;
		} else {
			k->req -= 1;
		}
	}
	if (rc)
		k->refused++;
	else
		k->admitted++;
out:
	uv_mutex_unlock(&mu);
	return rc;
}

void mg_rate_spend(const char *key, const mg_rate_limits *lim, double tokens, double now, time_t wall)
{
	rate_key *k;

	if (tokens <= 0)
		return;
	uv_once(&mu_once, init_mu);
	uv_mutex_lock(&mu);
	if ((k = find(key))) {
		roll(k, wall);
		k->day_used += tokens;
		k->month_used += tokens;
		if (lim->tpm > 0) {
			refill(&k->tok, &k->tok_at, &k->tok_init, lim->tpm, now);
			k->tok -= tokens;
		}
	}
	uv_mutex_unlock(&mu);
}

void mg_rate_clear(void)
{
	uv_once(&mu_once, init_mu);
	uv_mutex_lock(&mu);
	while (keys) {
		rate_key *k = keys;
		keys = k->next;
		free(k->name);
		free(k);
	}
	uv_mutex_unlock(&mu);
}

/* ---- primitives -------------------------------------------------------- */

static double mono_s(void)
{
	return (double)uv_hrtime() / 1e9;
}

static void check_limits(lua_State *L, int idx, mg_rate_limits *lim)
{
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_getfield(L, idx, "rpm");
	lim->rpm = lua_tonumber(L, -1);
	lua_getfield(L, idx, "tpm");
	lim->tpm = lua_tonumber(L, -1);
	lua_getfield(L, idx, "tokens_per_day");
	lim->per_day = lua_tonumber(L, -1);
	lua_getfield(L, idx, "tokens_per_month");
	lim->per_month = lua_tonumber(L, -1);
	lua_pop(L, 4);
}

static const char *const why_names[] = { "", "requests per minute", "tokens per minute", "tokens per day",
					 "tokens per month" };

/* _rate_take(key, {rpm, tpm, tokens_per_day, tokens_per_month}) -> true |
 * nil, which ("requests per minute", ...), seconds until it passes */
static int l_rate_take(lua_State *L)
{
	const char *key = luaL_checkstring(L, 1);
	mg_rate_limits lim;
	double retry;
	int rc;

	check_limits(L, 2, &lim);
	rc = mg_rate_take(key, &lim, mono_s(), time(NULL), &retry);
	if (rc == MG_RATE_OK) {
		lua_pushboolean(L, 1);
		return 1;
	}
	lua_pushnil(L);
	lua_pushstring(L, why_names[rc]);
	lua_pushnumber(L, retry);
	return 3;
}

/* _rate_spend(key, limits, tokens) */
static int l_rate_spend(lua_State *L)
{
	const char *key = luaL_checkstring(L, 1);
	mg_rate_limits lim;

	check_limits(L, 2, &lim);
	mg_rate_spend(key, &lim, luaL_checknumber(L, 3), mono_s(), time(NULL));
	return 0;
}

typedef struct rate_snap {
	char name[96];
	double admitted, refused, day_used, month_used;
} rate_snap;

#define SNAP_MAX 256

/* _rate_state() -> {key name = {admitted, refused, tokens_today,
 * tokens_this_month}} (the first 256 keys) */
static int l_rate_state(lua_State *L)
{
	rate_snap *snap = lua_newuserdata(L, SNAP_MAX * sizeof *snap); /* Lua's: an error leaks nothing */
	time_t wall = time(NULL);
	int n = 0;

	uv_once(&mu_once, init_mu);
	uv_mutex_lock(&mu);
	for (rate_key *k = keys; k && n < SNAP_MAX; k = k->next, n++) {
		roll(k, wall);
		snprintf(snap[n].name, sizeof snap[n].name, "%s", k->name);
		snap[n].admitted = k->admitted;
		snap[n].refused = k->refused;
		snap[n].day_used = k->day_used;
		snap[n].month_used = k->month_used;
	}
	uv_mutex_unlock(&mu);
	lua_newtable(L);
	for (int i = 0; i < n; i++) {
		lua_createtable(L, 0, 4);
		lua_pushnumber(L, snap[i].admitted);
		lua_setfield(L, -2, "admitted");
		lua_pushnumber(L, snap[i].refused);
		lua_setfield(L, -2, "refused");
		lua_pushnumber(L, snap[i].day_used);
		lua_setfield(L, -2, "tokens_today");
		lua_pushnumber(L, snap[i].month_used);
		lua_setfield(L, -2, "tokens_this_month");
		lua_setfield(L, -2, snap[i].name);
	}
	lua_remove(L, -2);
	return 1;
}

int mg_rate_open(lua_State *L)
{
	lua_pushcfunction(L, l_rate_take);
	lua_setfield(L, -2, "_rate_take");
	lua_pushcfunction(L, l_rate_spend);
	lua_setfield(L, -2, "_rate_spend");
	lua_pushcfunction(L, l_rate_state);
	lua_setfield(L, -2, "_rate_state");
	return 0;
}
