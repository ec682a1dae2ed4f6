/* Corking: see cork.h. The depth and the list are per thread. */
#include "cork.h"

static _Thread_local int depth;
static _Thread_local mg_queue held; /* zeroed until first use */

static mg_queue *list(void)
{
	if (!held.next)
		mg_queue_init(&held);
	return &held;
}

void mg_cork_init(mg_cork_item *it, void (*flush)(mg_cork_item *it))
{
	mg_queue_init(&it->node);
	it->flush = flush;
}

void mg_cork(void)
{
	depth++;
}

void mg_uncork(void)
{
	mg_queue *h;

	if (--depth)
		return;
	/* pop before calling: a flush may run Lua, whose own cork and uncork
	 * flush (and take off this list) whatever it holds */
	h = list();
	while (!mg_queue_empty(h)) {
		mg_queue *q = mg_queue_head(h);
		mg_cork_item *it = mg_queue_data(q, mg_cork_item, node);

		mg_queue_remove(q);
		it->flush(it);
	}
}

int mg_cork_hold(mg_cork_item *it)
{
	if (!depth)
		return 0;
	if (mg_queue_empty(&it->node))
		mg_queue_insert_tail(list(), &it->node);
	return 1;
}

void mg_cork_forget(mg_cork_item *it)
{
	mg_queue_remove(&it->node);
}
