/* Directory watches with a debounce: see watch.h. */
#include "watch.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct watch_dir {
	uv_fs_event_t ev;
	struct mg_watch *owner;
	char *dir;
	char *name; /* NULL: any *.lua */
} watch_dir;

struct mg_watch {
	uv_timer_t timer;
	watch_dir *dirs;
	int n;
	int open;        /* handles not yet closed: the last close frees */
	unsigned debounce_ms;
	void (*fire)(void *arg, const char *file);
	void *arg;
	char last[512];  /* the last file that changed */
};

static void free_watch(struct mg_watch *w)
{
	for (int i = 0; i < w->n; i++) {
		free(w->dirs[i].dir);
		free(w->dirs[i].name);
	}
	free(w->dirs);
	free(w);
}

static void on_closed(uv_handle_t *h)
{
	struct mg_watch *w = h->data;

	if (--w->open == 0)
		free_watch(w);
}

static void on_timer(uv_timer_t *t)
{
	struct mg_watch *w = t->data;

	w->fire(w->arg, w->last);
}

static int counts(const watch_dir *d, const char *file)
{
	size_t n;

	if (!file)
		return 0;
	if (d->name)
		return !strcmp(d->name, "*") || strcmp(file, d->name) == 0;
	n = strlen(file);
	return n > 4 && strcmp(file + n - 4, ".lua") == 0;
}

static void on_event(uv_fs_event_t *ev, const char *file, int events, int status)
{
	watch_dir *d = ev->data;
	struct mg_watch *w = d->owner;

	(void)events;
	if (status < 0 || !counts(d, file))
		return;
	snprintf(w->last, sizeof w->last, "%s/%s", d->dir, file);
	uv_timer_start(&w->timer, on_timer, w->debounce_ms, 0);
}

mg_watch *mg_watch_start(uv_loop_t *loop, const mg_watch_spec *specs, int n, unsigned debounce_ms,
			 void (*fire)(void *arg, const char *file), void *arg)
{
	struct mg_watch *w;
	int watching = 0;

	if (n <= 0 || !(w = calloc(1, sizeof *w)))
		return NULL;
	if (!(w->dirs = calloc((size_t)n, sizeof *w->dirs))) {
		free(w);
		return NULL;
	}
	w->debounce_ms = debounce_ms;
	w->fire = fire;
	w->arg = arg;
	uv_timer_init(loop, &w->timer);
	w->timer.data = w;
	w->open = 1;
	for (int i = 0; i < n; i++) {
		watch_dir *d = &w->dirs[w->n];
		int rc;
		d->owner = w;
		d->dir = strdup(specs[i].dir);
		d->name = specs[i].name ? strdup(specs[i].name) : NULL;
		if (!d->dir || (specs[i].name && !d->name)) {
			free(d->dir);
			free(d->name);
			continue;
		}
		uv_fs_event_init(loop, &d->ev);
		d->ev.data = d;
		w->n++;
		w->open++;
		rc = uv_fs_event_start(&d->ev, on_event, d->dir, 0);
		if (rc) {
			mg_log(MG_LOG_WARN, "cannot watch %s for changes: %s", d->dir, uv_strerror(rc));
			continue;
		}
		watching++;
	}
	if (!watching) {
		mg_watch_stop(w);
		return NULL;
	}
	return w;
}

static void close_dir(watch_dir *d)
{
	d->ev.data = d->owner;
	uv_close((uv_handle_t *)&d->ev, on_closed);
}

void mg_watch_stop(mg_watch *w)
{
	if (!w)
		return;
	for (int i = 0; i < w->n; i++)
		close_dir(&w->dirs[i]);
	uv_close((uv_handle_t *)&w->timer, on_closed);
}
