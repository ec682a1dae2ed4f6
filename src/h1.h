/* Cleartext HTTP/1.1 connections (see h1.c). */
#ifndef MG_H1_H
#define MG_H1_H

#include <stddef.h>

struct mg_worker;

/* Process-wide set-up of the parser; call once before serving. */
void mg_h1_init(size_t max_header_bytes);
/* Closes every connection of the worker (at shutdown). */
void mg_h1_close_all(struct mg_worker *w);
/* Takes over an accepted, non-blocking socket. Returns 0, or -1 after
 * closing fd. */
int mg_h1_adopt(struct mg_worker *w, int fd);

/* The worker drains (its phase is MG_PHASE_DRAIN): idle keep-alive
 * connections close, and the request on each other one is its last
 * (Connection: close when its headers are not out yet); requests that begin
 * from now on are the last too. */
void mg_h1_drain(struct mg_worker *w);

#endif
