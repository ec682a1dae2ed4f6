/* Cleartext HTTP/1.1 connections (see h1.c). */
#ifndef MG_H1_H
#define MG_H1_H

#include <stddef.h>

struct mg_ctx;

/* Process-wide set-up of the parser; call once before serving. */
void mg_h1_init(size_t max_header_bytes);
/* Owner thread, at start: h1's per-thread state (its connections, the
 * deferred list and the idle handle) in ctx->slot[MG_SLOT_H1]. 0, or -1 out
 * of memory. */
int mg_h1_thread_init(struct mg_ctx *ctx);
/* Closes every connection of the thread (at shutdown), then lets go of the
 * per-thread state: it is freed in its idle handle's close callback (at
 * once if that was never opened), and the slot is NULL from here on. No
 * other mg_h1_* call on ctx after this. Harmless without mg_h1_thread_init. */
void mg_h1_close_all(struct mg_ctx *ctx);
/* Takes over an accepted, non-blocking socket. Returns 0, or -1 after
 * closing fd. */
int mg_h1_adopt(struct mg_ctx *ctx, int fd);

/* The thread drains (its phase is MG_PHASE_DRAIN): idle keep-alive
 * connections close, and the request on each other one is its last
 * (Connection: close when its headers are not out yet); requests that begin
 * from now on are the last too. */
void mg_h1_drain(struct mg_ctx *ctx);

#endif
