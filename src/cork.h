/* Corking: a per-thread list of flush callbacks. Between mg_cork() and the
 * matching mg_uncork(), an object that would write asks mg_cork_hold()
 * instead; when the outermost cork lifts, each object held is taken off the
 * list and its flush callback runs once, so everything it queued leaves in
 * one write. C corks around each call into Lua (mg_pcall) and each socket
 * event it feeds curl: a stream's headers leave with its first frame, and
 * the frames one upstream read makes leave together.
 *
 * Per thread (_Thread_local), so it needs no worker context: it also works
 * in the CLI's state and in core.so under busted. A flush may run Lua,
 * whose own cork and uncork nest on the same list.
 *
 * Floor 1: calls nothing (queue.h only). Objects (requests today) embed an
 * mg_cork_item and must mg_cork_forget() it before they are freed. */
#ifndef MG_CORK_H
#define MG_CORK_H

#include "queue.h"

typedef struct mg_cork_item {
	mg_queue node;                          /* on the thread's list while held */
	void (*flush)(struct mg_cork_item *it); /* the cork lifted: write now */
} mg_cork_item;

/* Sets up an item (not held) with its flush callback. */
void mg_cork_init(mg_cork_item *it, void (*flush)(mg_cork_item *it));
void mg_cork(void);
/* Lifts one cork; the outermost flushes every held item (each is off the
 * list before its callback runs). */
void mg_uncork(void);
/* Corked: puts it on the list (once) and returns 1; the caller waits for
 * its flush. Not corked: returns 0; the caller writes now. */
int mg_cork_hold(mg_cork_item *it);
/* Takes it off the list, if it is on it (O(1)); no flush runs. */
void mg_cork_forget(mg_cork_item *it);

#endif
