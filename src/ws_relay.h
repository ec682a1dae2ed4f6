/* The relay of a cleartext WebSocket between its client and lws: h1.c
 * parses the Upgrade request, then hands the client's socket here. lws
 * adopts one end of a socketpair, and the relay carries bytes between the
 * client and the other end, reading every frame header the client sends
 * (ws_guard.h): lws 4.1.6 takes an unmasked client frame, which RFC 6455
 * (5.1) says must fail the connection; the relay fails it with 1002.
 *
 * Ownership: a relay owns the client's descriptor it is given, its end of
 * the pair, a timer and what is queued either way; it frees itself once
 * they are closed. It lives on the thread that started it, on the list the
 * caller keeps (h1.c's per-thread state), until it closes. */
#ifndef MG_WS_RELAY_H
#define MG_WS_RELAY_H

#include "queue.h"

#include <stddef.h>

struct mg_ctx;

/* Relays the client socket fd (ours from now on, closed on failure too):
 * lws gets the rebuilt request head (head), then the bytes read after it
 * (rest, through the guard: they may already be frames). peer: the
 * client's address, for lws's side (mg_ws_adopt). 0, or -1. */
int mg_ws_relay_start(struct mg_ctx *ctx, mg_queue *list, int fd, const char *peer, const char *head,
		      size_t head_len, const char *rest, size_t rest_len);

/* Closes every relay on list (the daemon stops): lws sees its end of each
 * pair close and closes the WebSocket. */
void mg_ws_relay_close_all(mg_queue *list);

#endif
