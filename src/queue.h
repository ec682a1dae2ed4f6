/* One intrusive list for the whole host, in libuv's queue.h style (Debian's
 * libuv headers do not export theirs): a circular doubly linked list whose
 * head is an mg_queue too. A node is "on no list" when it points at itself,
 * which mg_queue_init and mg_queue_remove both leave it doing, so removing
 * twice, or removing a node that was never added, is harmless.
 *
 * Floor 0: no calls. Not thread-safe: a list belongs to whoever owns the
 * objects on it (a worker thread, or the holder of a lock). */
#ifndef MG_QUEUE_H
#define MG_QUEUE_H

#include <stddef.h>

typedef struct mg_queue {
	struct mg_queue *next, *prev;
} mg_queue;

/* The object that holds node `q` as its member `field`. */
#define mg_queue_data(q, type, field) ((type *)((char *)(q) - offsetof(type, field)))

/* Each node of head h, in order; do not remove q inside (use mg_queue_move
 * into a local head, then pop, for that). */
#define mg_queue_foreach(q, h) for ((q) = (h)->next; (q) != (h); (q) = (q)->next)

static inline void mg_queue_init(mg_queue *q)
{
	q->next = q;
	q->prev = q;
}

/* For a head: no nodes. For a node: on no list. */
static inline int mg_queue_empty(const mg_queue *q)
{
	return q->next == q;
}

static inline mg_queue *mg_queue_head(const mg_queue *h)
{
	return h->next;
}

static inline void mg_queue_insert_tail(mg_queue *h, mg_queue *q)
{
	q->next = h;
	q->prev = h->prev;
	q->prev->next = q;
	h->prev = q;
}

static inline void mg_queue_insert_head(mg_queue *h, mg_queue *q)
{
	q->next = h->next;
	q->prev = h;
	q->next->prev = q;
	h->next = q;
}

static inline void mg_queue_remove(mg_queue *q)
{
	q->prev->next = q->next;
	q->next->prev = q->prev;
	mg_queue_init(q);
}

/* Moves every node of h, in order, onto the empty head n; h ends empty. */
static inline void mg_queue_move(mg_queue *h, mg_queue *n)
{
	if (mg_queue_empty(h)) {
		mg_queue_init(n);
		return;
	}
	n->next = h->next;
	n->prev = h->prev;
	n->next->prev = n;
	n->prev->next = n;
	mg_queue_init(h);
}

#endif
