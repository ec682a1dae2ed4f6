/* The response store: one process-wide map from a key (1..256 bytes) to a
 * value (any bytes), bounded by a number of entries and a number of bytes
 * (the sum of the keys' and values' sizes; the per-entry bookkeeping, about
 * 64 bytes, is not counted). When a put would pass a bound, the least
 * recently used entries go first; a get makes its entry the most recently
 * used. Every worker thread reaches the same entries, so a response stored
 * on one thread is read or deleted on any other.
 *
 * Threads and locks: every field of the store is read and written with its
 * one mutex held; any thread may call anything here. The store exists from
 * the first use (static storage, the mutex made once): main.lua sets its
 * limits before the worker threads start; mg_store_clear() frees every
 * entry once they have stopped. Nothing here calls Lua with the lock held:
 * a Lua allocation may raise (out of memory) or run finalizers, and a Lua
 * error crossing a held lock would stop every thread.
 *
 * Ownership: the store owns its copies of each key and value (one malloc
 * block per entry). A put copies the caller's bytes before it takes the
 * lock; a get copies the value, under the lock, into a buffer Lua owns
 * before making it a Lua string, so no pointer into the store escapes. An
 * entry evicted, replaced or deleted is freed after the lock is released.
 */
#ifndef MG_STORE_H
#define MG_STORE_H

#include <lua.h>

#define MG_STORE_MAX_KEY 256
#define MG_STORE_DEFAULT_ENTRIES 10000
#define MG_STORE_DEFAULT_BYTES (64u * 1024 * 1024)

/* Frees every entry (the limits and the eviction count stay). At exit,
 * once no thread uses the store; the store stays usable afterwards. */
void mg_store_clear(void);

/* Registers _store_put, _store_get, _store_delete, _store_stats and
 * _store_limits on the table at -1. */
int mg_store_open(lua_State *L);

#endif
