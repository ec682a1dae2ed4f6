/* The log's queue and its writer thread: see logq.h.
 *
 * The queue is a ring of MG_LOGQ_BYTES; head and tail count bytes since the
 * start (never wrap in practice: 2^64), so head - tail is what is queued.
 * Writers of lines append at head under the lock; the writer thread takes
 * the bytes from tail up to head (or the ring's end), writes them with the
 * lock released, then moves tail: bytes between tail and head are never
 * touched by anyone else meanwhile, so the lock orders every access. */
#define _GNU_SOURCE
#include "logq.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MASK (MG_LOGQ_BYTES - 1)
#define NOTICE_MAX 256
#define WRITE_MAX 65536 /* the writer's largest write */
#define NAP_BATCH 16384 /* after writing this much at one go, the writer */
#define NAP_MS 2          /* naps this long before the next write */

_Static_assert((MG_LOGQ_BYTES & MASK) == 0, "the ring's size is a power of two");

static struct {
	pthread_mutex_t mu;
	pthread_cond_t wake;     /* the writer waits here for lines */
	pthread_cond_t progress; /* mg_logq_stop waits here for the writer */
	int conds_ready;
	int on;                  /* lines are queued (a writer runs) */
	int stopping;            /* the writer ends once the queue is empty */
	int writer_waiting;      /* the writer sleeps on `wake` */
	int writer_done;         /* the writer has ended */
	pthread_t thread;
	mg_logq_notice_fn notice;
	size_t head, tail;
	unsigned long long dropped;       /* since the last notice */
	unsigned long long dropped_total; /* since the start */
	unsigned long long writes;        /* writes the writer completed */
} q = { .mu = PTHREAD_MUTEX_INITIALIZER };

static char ring[MG_LOGQ_BYTES];

/* Writes all of iov to stderr, waiting as long as it takes. A descriptor
 * left non-blocking by whoever gave it to us is polled; an error (the reader
 * is gone: EPIPE, SIGPIPE is ignored) drops the rest. */
static void write_all(struct iovec *iov, int count)
{
	while (count > 0) {
		ssize_t n = writev(STDERR_FILENO, iov, count);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = { .fd = STDERR_FILENO, .events = POLLOUT };
				poll(&p, 1, 1000);
				continue;
			}
			return;
		}
		while (count > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			count--;
		}
		if (count > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
}

static size_t room(void)
{
	return MG_LOGQ_BYTES - (q.head - q.tail);
}

/* Appends n bytes at head (the caller checked the room). Lock held. */
static void put(const char *p, size_t n)
{
	size_t off = q.head & MASK, first = MG_LOGQ_BYTES - off;

	if (first > n)
		first = n;
	memcpy(ring + off, p, first);
	memcpy(ring, p + first, n - first);
	q.head += n;
}

/* the time `ms` milliseconds from now, on the conds' clock */
static struct timespec after_ms(long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += ms * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

static void *writer_main(void *arg)
{
	sigset_t all;
	size_t batch = 0; /* bytes written since the queue was last empty */

	(void)arg;
	sigfillset(&all); /* signals are the event loops' business */
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&q.mu);
	for (;;) {
		if (q.head != q.tail) {
			size_t off = q.tail & MASK, n = q.head - q.tail;
			struct iovec iov;
			if (n > MG_LOGQ_BYTES - off)
				n = MG_LOGQ_BYTES - off;
			if (n > WRITE_MAX)
				n = WRITE_MAX; /* progress shows to mg_logq_stop as it is made */
			iov.iov_base = ring + off;
			iov.iov_len = n;
			pthread_mutex_unlock(&q.mu);
			write_all(&iov, 1);
			pthread_mutex_lock(&q.mu);
			q.tail += n;
			q.writes++;
			batch += n;
			pthread_cond_broadcast(&q.progress);
			continue;
		}
		if (q.dropped) {
			/* caught up, and no line came since the gap: say so now */
			char buf[NOTICE_MAX];
			struct iovec iov = { buf, q.notice(buf, sizeof buf, q.dropped) };
			q.dropped = 0;
			pthread_mutex_unlock(&q.mu);
			write_all(&iov, 1);
			pthread_mutex_lock(&q.mu);
			q.writes++;
			pthread_cond_broadcast(&q.progress);
			continue;
		}
		if (q.stopping)
			break;
		if (batch >= NAP_BATCH) {
			/* a busy log (lines came while we wrote): nap a little,
			 * unsignalled, and take what comes meanwhile in one write,
			 * rather than be woken for each line */
			struct timespec ts = after_ms(NAP_MS);
			batch = 0;
			pthread_cond_timedwait(&q.wake, &q.mu, &ts);
			continue;
		}
		batch = 0;
		q.writer_waiting = 1; /* an idle log: the next line wakes us */
		pthread_cond_wait(&q.wake, &q.mu);
		q.writer_waiting = 0;
	}
	q.writer_done = 1;
	q.on = 0; /* nobody drains the queue now: lines are written at once */
	pthread_cond_broadcast(&q.progress);
	pthread_mutex_unlock(&q.mu);
	return NULL;
}

int mg_logq_start(mg_logq_notice_fn notice)
{
	int rc = 0;

	pthread_mutex_lock(&q.mu);
	if (!q.conds_ready) {
		pthread_condattr_t a;
		pthread_condattr_init(&a);
		pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
		pthread_cond_init(&q.progress, &a);
		pthread_cond_init(&q.wake, &a);
		pthread_condattr_destroy(&a);
		q.conds_ready = 1;
	}
	q.notice = notice;
	q.stopping = 0;
	if (q.on) {
		/* a writer given up on by mg_logq_stop still runs: keep it */
		pthread_mutex_unlock(&q.mu);
		return 0;
	}
	q.writer_done = 0;
	q.writer_waiting = 0;
	if (pthread_create(&q.thread, NULL, writer_main, NULL))
		rc = -1;
	q.on = !rc;
	pthread_mutex_unlock(&q.mu);
	return rc;
}

void mg_logq_write(const struct iovec *iov, int count)
{
	size_t len = 0;

	for (int i = 0; i < count; i++)
		len += iov[i].iov_len;
	if (!len || len > MG_LOGQ_MAX_LINE)
		return;
	pthread_mutex_lock(&q.mu);
	if (!q.on) {
		/* synchronous: one writev per line keeps lines whole */
		struct iovec copy[8];
		if (count > 8)
			count = 8;
		memcpy(copy, iov, (size_t)count * sizeof *iov);
		write_all(copy, count);
		pthread_mutex_unlock(&q.mu);
		return;
	}
	if (q.dropped && room() >= NOTICE_MAX + len) {
		/* there is room again: the notice goes where the gap was */
		char buf[NOTICE_MAX];
		put(buf, q.notice(buf, sizeof buf, q.dropped));
		q.dropped = 0;
	}
	if (room() < len) {
		q.dropped++;
		q.dropped_total++;
		pthread_mutex_unlock(&q.mu);
		return;
	}
	for (int i = 0; i < count; i++)
		put(iov[i].iov_base, iov[i].iov_len);
	if (q.writer_waiting)
		pthread_cond_signal(&q.wake);
	pthread_mutex_unlock(&q.mu);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int mg_logq_stop(int stall_ms, int max_ms)
{
	uint64_t start = now_ms(), last_progress = start;
	unsigned long long writes;
	int done;

	pthread_mutex_lock(&q.mu);
	if (!q.on || q.stopping) { /* nothing to stop, or given up on already */
		done = !q.on;
		pthread_mutex_unlock(&q.mu);
		return done ? 0 : -1;
	}
	q.stopping = 1;
	pthread_cond_signal(&q.wake);
	writes = q.writes;
	while (!q.writer_done) {
		uint64_t now = now_ms();
		struct timespec ts;
		if (q.writes != writes) {
			writes = q.writes;
			last_progress = now;
		}
		if (now - last_progress >= (uint64_t)stall_ms || now - start >= (uint64_t)max_ms)
			break;
		ts = after_ms(50);
		pthread_cond_timedwait(&q.progress, &q.mu, &ts);
	}
	done = q.writer_done; /* it set q.on = 0 */
	pthread_mutex_unlock(&q.mu);
	if (done)
		pthread_join(q.thread, NULL);
	else
		pthread_detach(q.thread); /* stuck in a write: the process ends without it */
	return done ? 0 : -1;
}

unsigned long long mg_logq_dropped(void)
{
	unsigned long long n;

	pthread_mutex_lock(&q.mu);
	n = q.dropped_total;
	pthread_mutex_unlock(&q.mu);
	return n;
}
