/* The cross-thread outbox; see outbox.h for threads and the lock. */
#include "outbox.h"
#include "log.h"
#include "stats.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 1024

static uv_once_t lock_once = UV_ONCE_INIT;
static uv_mutex_t lock;
static mg_outbox_conn *table[NBUCKETS]; /* lock: open connections by id */
static uint64_t next_conn_id;           /* atomic */

static void init_lock(void)
{
	uv_mutex_init(&lock);
}

void mg_outbox_lock(void)
{
	uv_once(&lock_once, init_lock);
	uv_mutex_lock(&lock);
}

void mg_outbox_unlock(void)
{
	uv_mutex_unlock(&lock);
}

/* ---- threads ------------------------------------------------------------- */

static void on_async(uv_async_t *a)
{
	mg_outbox_thread *t = a->data;

	t->on_wake(t);
}

int mg_outbox_thread_init(mg_outbox_thread *t, uv_loop_t *loop, int index,
			  void (*on_wake)(mg_outbox_thread *t), void *data)
{
	t->index = index;
	t->on_wake = on_wake;
	t->data = data;
	t->wake_open = 0;
	t->inbox_head = t->inbox_tail = NULL;
	mg_queue_init(&t->wake_list);
	t->wake.data = t;
	return uv_async_init(loop, &t->wake, on_async);
}

void mg_outbox_thread_open(mg_outbox_thread *t)
{
	mg_outbox_lock();
	t->wake_open = 1;
	mg_outbox_unlock();
}

static void free_events(mg_outbox_event *ev)
{
	while (ev) {
		mg_outbox_event *next = ev->next;
		free(ev);
		ev = next;
	}
}

void mg_outbox_thread_stop(mg_outbox_thread *t)
{
	mg_outbox_event *ev;

	mg_outbox_lock();
	t->wake_open = 0;
	ev = t->inbox_head;
	t->inbox_head = t->inbox_tail = NULL;
	mg_outbox_unlock();
	free_events(ev);
	if (!uv_is_closing((uv_handle_t *)&t->wake))
		uv_close((uv_handle_t *)&t->wake, NULL);
}

int mg_outbox_post_locked(mg_outbox_thread *t, int kind, int status, const char *id,
			  const char *data, size_t len)
{
	size_t idlen = strlen(id);
	mg_outbox_event *ev;

	if (!t->wake_open)
		return -1;
	ev = malloc(sizeof *ev + len + idlen + 2);
	if (!ev) {
		mg_log(MG_LOG_ERROR, "pool: out of memory; an event for %s is lost", id);
		return -1;
	}
	ev->next = NULL;
	ev->kind = kind;
	ev->status = status;
	ev->len = len;
	if (len)
		memcpy(ev->data, data, len);
	ev->data[len] = 0;
	ev->id = ev->data + len + 1;
	memcpy(ev->id, id, idlen + 1);
	if (t->inbox_tail)
		t->inbox_tail->next = ev;
	else
		t->inbox_head = ev;
	t->inbox_tail = ev;
	uv_async_send(&t->wake);
	return 0;
}

mg_outbox_event *mg_outbox_take_events(mg_outbox_thread *t)
{
	mg_outbox_event *ev;

	mg_outbox_lock();
	ev = t->inbox_head;
	t->inbox_head = t->inbox_tail = NULL;
	mg_outbox_unlock();
	return ev;
}

void mg_outbox_take_wakes(mg_outbox_thread *t, void (*fn)(mg_outbox_conn *c))
{
	mg_outbox_conn *batch[64];
	int n;

	/* in batches, each off the list under the lock: another thread may put
	 * a connection back on it while fn runs */
	do {
		n = 0;
		mg_outbox_lock();
		while (n < 64 && !mg_queue_empty(&t->wake_list)) {
			mg_queue *q = mg_queue_head(&t->wake_list);
			mg_queue_remove(q);
			batch[n++] = mg_queue_data(q, mg_outbox_conn, wake_node);
		}
		mg_outbox_unlock();
		for (int i = 0; i < n; i++)
			fn(batch[i]);
	} while (n == 64);
}

/* ---- connections ----------------------------------------------------------- */

static mg_outbox_conn **slot_of(uint64_t id)
{
	mg_outbox_conn **p = &table[id % NBUCKETS];

	while (*p && (*p)->id != id)
		p = &(*p)->hnext;
	return p;
}

static uint64_t now_ms(void)
{
	return uv_hrtime() / 1000000;
}

void mg_outbox_conn_open(mg_outbox_conn *c, mg_outbox_thread *owner)
{
	memset(c, 0, sizeof *c);
	c->owner = owner;
	c->id = __atomic_add_fetch(&next_conn_id, 1, __ATOMIC_RELAXED);
	c->last_seen_ms = now_ms();
	mg_queue_init(&c->wake_node);
	mg_outbox_lock();
	c->hnext = table[c->id % NBUCKETS];
	table[c->id % NBUCKETS] = c;
	mg_outbox_unlock();
}

/* Lock held: frees the queued messages and leaves the owner's wake list. */
static void drop_locked(mg_outbox_conn *c)
{
	mg_outbox_msg *m = c->out_head;

	while (m) {
		mg_outbox_msg *next = m->next;
		free(m);
		m = next;
	}
	c->out_head = c->out_tail = NULL;
	mg_stats_buffered(-(long long)c->out_bytes);
	c->out_bytes = 0;
	mg_queue_remove(&c->wake_node);
}

void mg_outbox_conn_close(mg_outbox_conn *c)
{
	mg_outbox_conn **p;

	mg_outbox_lock();
	p = slot_of(c->id);
	if (*p == c)
		*p = c->hnext;
	c->hnext = NULL;
	drop_locked(c);
	mg_outbox_unlock();
}

/* Lock held. */
static int queue_locked(mg_outbox_conn *c, const char *text, size_t len)
{
	mg_outbox_msg *m;

	if (c->close_code)
		return -1;
	m = malloc(sizeof *m + MG_OUTBOX_HEADROOM + len);
	if (!m)
		return -1;
	m->next = NULL;
	m->len = len;
	memcpy(m->data + MG_OUTBOX_HEADROOM, text, len);
	if (c->out_tail)
		c->out_tail->next = m;
	else
		c->out_head = m;
	c->out_tail = m;
	c->out_bytes += len;
	mg_stats_buffered((long long)len);
	return 0;
}

/* Lock held: c on its owner's wake list, and the owner woken. */
static void want_wake_locked(mg_outbox_conn *c)
{
	if (mg_queue_empty(&c->wake_node)) {
		mg_queue_insert_tail(&c->owner->wake_list, &c->wake_node);
		if (c->owner->wake_open)
			uv_async_send(&c->owner->wake);
	}
}

int mg_outbox_send_locked(uint64_t id, const char *text, size_t len)
{
	mg_outbox_conn *c = *slot_of(id);

	if (!c || queue_locked(c, text, len))
		return -1;
	want_wake_locked(c);
	return 0;
}

void mg_outbox_hold_locked(uint64_t id, int hold)
{
	mg_outbox_conn *c = *slot_of(id);

	if (!c || c->rx_hold == hold)
		return;
	c->rx_hold = hold;
	want_wake_locked(c);
}

int mg_outbox_held(mg_outbox_conn *c)
{
	int hold;

	mg_outbox_lock();
	hold = c->rx_hold;
	mg_outbox_unlock();
	return hold;
}

long mg_outbox_queue(mg_outbox_conn *c, const char *text, size_t len)
{
	long queued = -1;

	mg_outbox_lock();
	if (!queue_locked(c, text, len))
		queued = (long)c->out_bytes;
	mg_outbox_unlock();
	return queued;
}

mg_outbox_msg *mg_outbox_pop(mg_outbox_conn *c, int *more, size_t *queued, int *close_code)
{
	mg_outbox_msg *m;

	mg_outbox_lock();
	m = c->out_head;
	if (m) {
		c->out_head = m->next;
		if (!c->out_head)
			c->out_tail = NULL;
		c->out_bytes -= m->len;
	}
	*more = c->out_head != NULL;
	*queued = c->out_bytes;
	*close_code = c->close_code;
	mg_outbox_unlock();
	return m;
}

void mg_outbox_set_close(mg_outbox_conn *c, int code, int drop)
{
	mg_outbox_lock();
	if (drop) {
		drop_locked(c);
		c->close_code = code;
	} else if (!c->close_code) {
		c->close_code = code;
	}
	mg_outbox_unlock();
}

uint64_t mg_outbox_last_seen_locked(uint64_t id)
{
	mg_outbox_conn *c = *slot_of(id);

	return c ? __atomic_load_n(&c->last_seen_ms, __ATOMIC_RELAXED) : 0;
}

mg_outbox_conn *mg_outbox_check(lua_State *L, int idx)
{
	return *(mg_outbox_conn **)luaL_checkudata(L, idx, MG_WS_HANDLE_MT);
}
