/* Cleartext HTTP/1.1 connections (see h1.c). */
#ifndef MG_H1_H
#define MG_H1_H

struct mg_worker;

/* Process-wide set-up of the parser callbacks; call once before serving. */
void mg_h1_init(void);
/* Takes over an accepted, non-blocking socket. Returns 0, or -1 after
 * closing fd. */
int mg_h1_adopt(struct mg_worker *w, int fd);

#endif
