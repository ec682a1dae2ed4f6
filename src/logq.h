/* The log's writer: while the daemon serves, log lines go into a bounded
 * queue in memory, and one thread of this file's writes them to stderr. A
 * reader of the log that is slow or stuck (a pipe nobody reads) then blocks
 * that thread only, never an event loop: a line that does not fit in the
 * queue is dropped and counted, and where the gap was, once there is room
 * again (or once the writer has caught up), one line says
 * "N log lines dropped (the log's reader is too slow)".
 *
 * Before mg_logq_start(), after mg_logq_stop(), and in a process that never
 * serves (the CLI, the Lua module under busted), a line is written at once
 * on the caller's thread, as stderr takes it.
 *
 * Ownership: the queue (one static ring) and the writer thread belong to
 * this file. mg_logq_write copies the caller's bytes before it returns.
 * Every function may be called from any thread; start and stop from one
 * (the main thread, in _serve). Pure: no Lua. */
#ifndef MG_LOGQ_H
#define MG_LOGQ_H

#include <stddef.h>
#include <sys/uio.h>

#define MG_LOGQ_BYTES (1u << 20) /* the queue: about 7000 access lines */
#define MG_LOGQ_MAX_LINE 65536   /* a longer line is refused (callers cut) */

/* Writes the dropped-lines notice (one whole line, newline included) into
 * buf; returns its length (<= cap). Called with the queue's lock held. */
typedef size_t (*mg_logq_notice_fn)(char *buf, size_t cap, unsigned long long dropped);

/* Starts the writer thread: from now on lines are queued. 0, or -1 (the
 * thread could not start: lines stay synchronous). */
int mg_logq_start(mg_logq_notice_fn notice);
/* One line, given in pieces (its newline included). */
void mg_logq_write(const struct iovec *iov, int count);
/* Waits until the queue is written out, then ends the writer: lines are
 * synchronous again. Gives up when the writer has written nothing for
 * stall_ms (a reader that no longer reads) or after max_ms in all: the
 * writer is then left to itself (detached) and lines keep being queued.
 * 0 when all was written, -1 when it gave up. */
int mg_logq_stop(int stall_ms, int max_ms);
/* Lines dropped since the process started (for /stats). */
unsigned long long mg_logq_dropped(void);

#endif
