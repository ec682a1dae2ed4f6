/* Watches for hot reload: directories whose files, when one of them changes,
 * ask for a reload, once the changes have stopped for a moment.
 *
 * A directory is watched (inotify through libuv fs events), not the file, so
 * an editor that saves by writing a new file and renaming it over the old
 * one is seen too. Directories are not watched recursively: the caller
 * names each one (main.lua names lua_path's directories and those below).
 *
 * Ownership: mg_watch_start copies what it is given; the watch belongs to
 * the loop's thread and is freed by the close callbacks of its handles after
 * mg_watch_stop. Floor: calls log.c only. */
#ifndef MG_WATCH_H
#define MG_WATCH_H

#include <uv.h>

typedef struct mg_watch_spec {
	const char *dir;
	const char *name; /* the one file of dir that counts; "*": any; NULL: any *.lua */
} mg_watch_spec;

typedef struct mg_watch mg_watch;

/* Watches specs[0..n-1]; fire(arg, file) runs debounce_ms after the last
 * change to a file that counts (file: the last one changed, "dir/name").
 * A directory that cannot be watched is logged and skipped. NULL when
 * nothing could be watched (or n is 0). */
mg_watch *mg_watch_start(uv_loop_t *loop, const mg_watch_spec *specs, int n, unsigned debounce_ms,
			 void (*fire)(void *arg, const char *file), void *arg);

/* Stops and frees (in close callbacks: run the loop after). NULL is fine. */
void mg_watch_stop(mg_watch *w);

#endif
