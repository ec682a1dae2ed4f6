/* The response store (see store.h for threads and ownership) and its
 * primitives:
 *   _store_put  _store_get  _store_delete  _store_stats  _store_limits
 * A hash table of entries (chained, doubled when it fills up) and a list
 * of the same entries from the most to the least recently used, both
 * guarded by one mutex. */
#include "store.h"
#include "lua_host.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct entry {
	struct entry *hnext;       /* bucket chain */
	struct entry *prev, *next; /* the LRU list; after unlink_entry(): a free list */
	uint64_t hash;
	size_t klen, vlen;
	char data[];               /* the key's bytes, then the value's */
} entry;

static uv_once_t once = UV_ONCE_INIT;
static uv_mutex_t lock;
static uint64_t seed;              /* set once, before any hash */
static entry *first_table[64];     /* the table until it grows */
static entry **buckets = first_table;
static size_t nbuckets = 64;       /* a power of two */
static entry *head, *tail;         /* most / least recently used */
static size_t n_entries, n_bytes;
static size_t max_entries = MG_STORE_DEFAULT_ENTRIES;
static size_t max_bytes = MG_STORE_DEFAULT_BYTES;
static unsigned long long evictions;

static void init(void)
{
	uv_mutex_init(&lock);
	/* a per-process seed: the chains do not depend on keys alone */
	seed = uv_hrtime() ^ (uint64_t)(uintptr_t)&seed;
}

static uint64_t hash(const char *k, size_t n)
{
	uint64_t h = 14695981039346656037ull ^ seed;

	while (n--)
		h = (h ^ (unsigned char)*k++) * 1099511628211ull;
	return h;
}

/* ---- the table and the list (lock held) -------------------------------- */

static entry *find(const char *key, size_t klen, uint64_t h)
{
	for (entry *e = buckets[h & (nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && e->klen == klen && !memcmp(e->data, key, klen))
			return e;
	return NULL;
}

static void list_push_front(entry *e)
{
	e->prev = NULL;
	e->next = head;
	if (head)
		head->prev = e;
	else
		tail = e;
	head = e;
}

static void list_remove(entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		tail = e->prev;
}

/* Doubles the table before it holds more entries than buckets. When memory
 * is short it stays as it is: chains grow longer, nothing breaks. */
static void grow(void)
{
	size_t n = nbuckets * 2;
	entry **b;

	if (n_entries < nbuckets || !(b = calloc(n, sizeof *b)))
		return;
	for (size_t i = 0; i < nbuckets; i++)
		for (entry *e = buckets[i], *next; e; e = next) {
			next = e->hnext;
			e->hnext = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	if (buckets != first_table)
		free(buckets);
	buckets = b;
	nbuckets = n;
}

/* Takes e out of the table and the list, and puts it on *gone (to be
 * freed once the lock is released). */
static void unlink_entry(entry *e, entry **gone)
{
	entry **pp = &buckets[e->hash & (nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	list_remove(e);
	n_entries--;
	n_bytes -= e->klen + e->vlen;
	e->next = *gone;
	*gone = e;
}

/* Evicts least recently used entries until `entries` more entries and
 * `bytes` more bytes fit within the limits. */
static void make_room(size_t entries, size_t bytes, entry **gone)
{
	while (tail && (n_entries + entries > max_entries || n_bytes + bytes > max_bytes)) {
		unlink_entry(tail, gone);
		evictions++;
	}
}

static void free_list(entry *e)
{
	while (e) {
		entry *next = e->next;
		free(e);
		e = next;
	}
}

void mg_store_clear(void)
{
	entry *gone;
	entry **b;

	uv_once(&once, init);
	uv_mutex_lock(&lock);
	gone = head;
	b = buckets != first_table ? buckets : NULL;
	head = tail = NULL;
	memset(first_table, 0, sizeof first_table);
	buckets = first_table;
	nbuckets = 64;
	n_entries = n_bytes = 0;
	uv_mutex_unlock(&lock);
	free(b);
	free_list(gone);
}

/* ---- primitives -------------------------------------------------------- */

static const char *check_key(lua_State *L, int idx, size_t *len)
{
	const char *key = luaL_checklstring(L, idx, len);

	if (!*len || *len > MG_STORE_MAX_KEY)
		luaL_argerror(L, idx, "key: 1 to 256 bytes");
	return key;
}

/* _store_put(key, value) -> true | false, "disabled" | "too large" | "out of memory"
 * Stores a copy of value under key (replacing what was there), evicting
 * the least recently used entries until it fits. A put refused changes
 * nothing. */
static int l_store_put(lua_State *L)
{
	size_t klen, vlen;
	const char *key = check_key(L, 1, &klen);
	const char *value = luaL_checklstring(L, 2, &vlen);
	entry *e = malloc(sizeof *e + klen + vlen), *old, *gone = NULL;
	const char *why = NULL;

	if (!e) {
		lua_pushboolean(L, 0);
		lua_pushliteral(L, "out of memory");
		return 2;
	}
	uv_once(&once, init);
	e->hash = hash(key, klen);
	e->klen = klen;
	e->vlen = vlen;
	memcpy(e->data, key, klen);
	memcpy(e->data + klen, value, vlen);

	uv_mutex_lock(&lock);
	if (!max_entries) {
		why = "disabled";
	} else if (klen + vlen > max_bytes) {
		why = "too large";
	} else {
		if ((old = find(key, klen, e->hash)))
			unlink_entry(old, &gone); /* replaced, not evicted */
		make_room(1, klen + vlen, &gone);
		grow();
		e->hnext = buckets[e->hash & (nbuckets - 1)];
		buckets[e->hash & (nbuckets - 1)] = e;
		list_push_front(e);
		n_entries++;
		n_bytes += klen + vlen;
		e = NULL;
	}
	uv_mutex_unlock(&lock);
	free(e);
	free_list(gone);
	if (why) {
		lua_pushboolean(L, 0);
		lua_pushstring(L, why);
		return 2;
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* _store_get(key) -> a copy of the value | nil; the entry becomes the most
 * recently used. The value is copied under the lock into a userdata
 * allocated before the lock was taken (so no Lua allocation happens with
 * the lock held); if the value grew in between, once more with its size. */
static int l_store_get(lua_State *L)
{
	size_t klen, cap = 0, want;
	const char *key = check_key(L, 1, &klen);
	char *buf = NULL;
	uint64_t h;
	entry *e;

	uv_once(&once, init);
	h = hash(key, klen);
	for (;;) {
		uv_mutex_lock(&lock);
		e = find(key, klen, h);
		want = e ? e->vlen : 0;
		if (e && want <= cap) {
			if (want)
				memcpy(buf, e->data + klen, want);
			list_remove(e);
			list_push_front(e);
		}
		uv_mutex_unlock(&lock);
		if (!e) {
			lua_pushnil(L);
			return 1;
		}
		if (want <= cap) {
			lua_pushlstring(L, want ? buf : "", want);
			return 1;
		}
		buf = lua_newuserdata(L, want); /* Lua's: collected whatever happens next */
		cap = want;
	}
}

/* _store_delete(key) -> true if there was an entry */
static int l_store_delete(lua_State *L)
{
	size_t klen;
	const char *key = check_key(L, 1, &klen);
	entry *e, *gone = NULL;
	uint64_t h;

	uv_once(&once, init);
	h = hash(key, klen);
	uv_mutex_lock(&lock);
	if ((e = find(key, klen, h)))
		unlink_entry(e, &gone);
	uv_mutex_unlock(&lock);
	free_list(gone);
	lua_pushboolean(L, e != NULL);
	return 1;
}

/* _store_stats() -> {entries, bytes, max_entries, max_bytes, evictions} */
static int l_store_stats(lua_State *L)
{
	size_t s[4];
	unsigned long long ev;

	uv_once(&once, init);
	uv_mutex_lock(&lock);
	s[0] = n_entries;
	s[1] = n_bytes;
	s[2] = max_entries;
	s[3] = max_bytes;
	ev = evictions;
	uv_mutex_unlock(&lock);
	lua_createtable(L, 0, 5);
	lua_pushnumber(L, (lua_Number)s[0]);
	lua_setfield(L, -2, "entries");
	lua_pushnumber(L, (lua_Number)s[1]);
	lua_setfield(L, -2, "bytes");
	lua_pushnumber(L, (lua_Number)s[2]);
	lua_setfield(L, -2, "max_entries");
	lua_pushnumber(L, (lua_Number)s[3]);
	lua_setfield(L, -2, "max_bytes");
	lua_pushnumber(L, (lua_Number)ev);
	lua_setfield(L, -2, "evictions");
	return 1;
}

static size_t check_size(lua_State *L, int idx)
{
	lua_Number v = luaL_checknumber(L, idx);

	/* 2^53: every integer up to it is exact in a Lua number */
	if (!(v >= 0 && v <= 9007199254740992.0) || v != (lua_Number)(uint64_t)v ||
	    (uint64_t)v > SIZE_MAX)
		luaL_argerror(L, idx, "an integer from 0 to 2^53");
	return (size_t)v;
}

/* _store_limits(max_entries, max_bytes): the bounds from now on (the
 * config's response_store, set at start); entries beyond them are evicted
 * at once. max_entries 0 turns storing off (and empties the store). */
static int l_store_limits(lua_State *L)
{
	size_t me = check_size(L, 1), mb = check_size(L, 2);
	entry *gone = NULL;

	uv_once(&once, init);
	uv_mutex_lock(&lock);
	max_entries = me;
	max_bytes = mb;
	make_room(0, 0, &gone);
	uv_mutex_unlock(&lock);
	free_list(gone);
	return 0;
}

int mg_store_open(lua_State *L)
{
	static const luaL_Reg fns[] = {
		{ "_store_put", l_store_put },
		{ "_store_get", l_store_get },
		{ "_store_delete", l_store_delete },
		{ "_store_stats", l_store_stats },
		{ "_store_limits", l_store_limits },
		{ NULL, NULL }
	};

	mg_set_funcs(L, fns);
	return 0;
}
