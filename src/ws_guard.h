/* WebSocket frame headers watched in a byte stream, without keeping the
 * payloads: the guard ws_relay.c puts between a cleartext client and lws
 * (RFC 6455 5.1: a server must fail the connection on an unmasked client
 * frame, which lws 4.1.6 takes), and the tracker of the other direction's
 * frame boundaries (where a close frame of ours may go in).
 *
 * Pure: no I/O, no allocation, no Lua; the caller owns the struct. The
 * verdict does not depend on how the bytes are cut: feeding a stream in
 * any pieces gives the same error at the same offset, and the same
 * boundaries. Floor 0.
 *
 * Client mode: every frame must be masked, and a 64-bit length must have
 * its top bit clear. Server mode (lws's frames to the client): first an
 * HTTP answer head up to its empty line, then frames, whose headers are
 * only measured (nothing is refused: lws writes them). */
#ifndef MG_WS_GUARD_H
#define MG_WS_GUARD_H

#include <stddef.h>
#include <stdint.h>

enum {
	MG_WS_GUARD_OK = 0,
	MG_WS_GUARD_UNMASKED = 1,   /* a client frame without a mask */
	MG_WS_GUARD_BAD_LENGTH = 2, /* a 64-bit length with its top bit set */
};

typedef struct mg_ws_guard {
	uint64_t pos;      /* bytes fed so far */
	uint64_t frame_at; /* where the frame being read began */
	uint64_t left;     /* payload bytes of the current frame still to pass */
	uint64_t len;      /* the extended length being read */
	uint8_t server;    /* 1: server mode (see above) */
	uint8_t in_head;   /* server mode: still in the HTTP answer head */
	uint8_t crlf;      /* ... and how much of "\r\n\r\n" ends what was read */
	uint8_t have;      /* header bytes of the current frame read */
	uint8_t need;      /* header bytes it has (2 until the second is read) */
	uint8_t ext;       /* of which extended length: 0, 2 or 8 */
	uint8_t err;       /* MG_WS_GUARD_*: once set, the guard takes nothing */
	uint8_t close_seen; /* server mode: a close frame has begun */
	uint64_t err_at;   /* the refused frame's first byte (stream offset) */
} mg_ws_guard;

/* server: 0 for a client's frames, 1 for lws's answer and frames. */
void mg_ws_guard_init(mg_ws_guard *g, int server);

/* Reads n bytes. Returns how many of them may be passed on: all while the
 * stream is fine; after an error, those before the refused frame's first
 * byte (0 when it began in an earlier piece, whose first bytes of it were
 * passed then: up to 2 header bytes, never a whole header; g->err and
 * g->err_at say what and where), and 0 from then on.
 * With stop_at_boundary, stops right after the byte that completes a frame
 * (returning 0 at a boundary already): what may go out before a frame of
 * our own. */
size_t mg_ws_guard_feed(mg_ws_guard *g, const void *p, size_t n, int stop_at_boundary);

/* 1 when what was fed ends a frame (in server mode: the head is over too). */
int mg_ws_guard_at_boundary(const mg_ws_guard *g);

#endif
