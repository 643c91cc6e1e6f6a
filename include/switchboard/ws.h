/*
 * ws.h — a small RFC 6455 WebSocket server layer on a raw h2o socket.
 *
 * Why not h2o's own websocket.c: h2o 2.2.5 writes one syscall per frame, has
 * an unbounded send queue and no idle handling (DESIGN §6). Here every frame
 * queued on a connection during one loop iteration leaves in ONE write, and
 * the queue is bounded in bytes.
 *
 * Lifecycle: the engine upgrades an HTTP request with sb_ws_upgrade (the 101
 * is written by h2o), receives the raw h2o_socket_t in its callback (possibly
 * moves it to another thread's loop with h2o_socket_export/import), then calls
 * sb_ws_create on the loop that will own it. on_message is called for every
 * complete (reassembled) data message; on_close exactly once, whatever the
 * cause; the sb_ws_t is freed by this layer after on_close returns — never
 * use it afterwards. All calls on one sb_ws_t must come from its loop's thread.
 */
#ifndef SWITCHBOARD_WS_H
#define SWITCHBOARD_WS_H

#include <stddef.h>
#include <stdint.h>
#include <h2o.h>

typedef struct sb_ws sb_ws_t;
typedef struct sb_ws_ctx sb_ws_ctx_t;

/* A pre-encoded frame (header + payload), reference-counted, shared by every
 * recipient of a broadcast: encoded once, written to N sockets. */
typedef struct sb_ws_frame {
    size_t refcnt; /* only touched on the owning thread */
    size_t len;    /* bytes in data */
    char data[];   /* header followed by payload */
} sb_ws_frame_t;

/* Builds an unmasked server frame (FIN set) of opcode text (binary=0) or
 * binary (binary=1). Returns NULL on allocation failure. refcnt starts at 1. */
sb_ws_frame_t *sb_ws_frame_new(int binary, const void *payload, size_t len);
void sb_ws_frame_addref(sb_ws_frame_t *f);
void sb_ws_frame_release(sb_ws_frame_t *f);

typedef struct sb_ws_callbacks {
    /* A complete data message. data is valid only during the call. */
    void (*on_message)(sb_ws_t *ws, void *ud, int binary, const char *data, size_t len);
    /* The connection is closed; reason is a short static text ("peer closed",
     * "message too big", "protocol error", "write error", "send queue full",
     * "closed by server", "invalid utf-8"). */
    void (*on_close)(sb_ws_t *ws, void *ud, const char *reason);
} sb_ws_callbacks_t;

/* One per loop (worker thread): schedules the batched flush of every
 * connection that queued frames in this loop iteration. */
sb_ws_ctx_t *sb_ws_ctx_create(h2o_loop_t *loop);
void sb_ws_ctx_destroy(sb_ws_ctx_t *ctx);

/* 1 when req is a valid WebSocket handshake (GET, Upgrade: websocket,
 * Connection: upgrade, Sec-WebSocket-Version: 13, a Sec-WebSocket-Key). */
int sb_ws_is_handshake(h2o_req_t *req);

/* Called once the 101 response has been written; sock is NULL when the
 * upgrade failed (the request is then gone). The socket's input buffer may
 * already hold WebSocket bytes; sb_ws_create processes them. */
typedef void (*sb_ws_upgrade_cb)(void *data, h2o_socket_t *sock);

/* Sends 101 Switching Protocols with Sec-WebSocket-Accept (plus the extra
 * headers already added to req->res.headers, e.g. CORS) and hands over the raw
 * socket. first (first_len bytes, may be NULL) is sent as a text frame in the
 * same write as the response. Returns 0, or SB_EPROTO when req is not a valid
 * handshake (nothing was sent; the caller answers 400 and cb is never called). */
int sb_ws_upgrade(h2o_req_t *req, const void *first, size_t first_len, sb_ws_upgrade_cb cb, void *data);

/* Takes ownership of an upgraded socket on ctx's loop and starts reading.
 * max_message bounds a reassembled incoming message (close 1009 past it);
 * max_queue bounds queued outgoing bytes (see sb_ws_send). Never NULL unless
 * allocation fails (the socket is then closed). */
sb_ws_t *sb_ws_create(sb_ws_ctx_t *ctx, h2o_socket_t *sock, const sb_ws_callbacks_t *cb, void *ud, size_t max_message,
                      size_t max_queue);

/* Queues one data frame (the payload is copied). Returns 0, SB_ETOOBIG when
 * the queue would exceed max_queue (nothing queued; the caller decides — the
 * engine closes the connection), SB_EIO when the connection is closing. */
int sb_ws_send(sb_ws_t *ws, int binary, const void *payload, size_t len);
/* Queues a shared frame (adds a reference, no copy). Same returns. */
int sb_ws_send_frame(sb_ws_t *ws, sb_ws_frame_t *f);

/* Cache hints (see sb_eio_prefetch): stage 0 the connection's hot fields, stage 1 its queue's next slot. */
void sb_ws_prefetch(const sb_ws_t *ws, int stage);

/* Bytes queued and not yet written. */
size_t sb_ws_queued(const sb_ws_t *ws);

/* Number of socket writes issued on this connection so far (one write
 * carries every frame queued before it started, up to 256): for tests and
 * metrics. */
size_t sb_ws_writes(const sb_ws_t *ws);

/* Flushes what is queued, sends a close frame with code (1000 normal) and
 * closes the socket; on_close is called (from the loop, not from inside this
 * call) with reason "closed by server". Idempotent. */
void sb_ws_close(sb_ws_t *ws, uint16_t code);

/* Incremental frame-header parser, exposed for unit tests and fuzzing.
 * Returns the header length (>0) when a complete header is present, 0 when
 * more bytes are needed, SB_EPROTO for an invalid header (reserved bits set,
 * unknown opcode, unmasked client frame, control frame >125 bytes or not FIN,
 * non-minimal length encoding, 64-bit length with the top bit set). */
typedef struct sb_ws_header {
    int fin;
    int opcode;
    int masked;
    uint8_t mask[4];
    uint64_t payload_len;
} sb_ws_header_t;
int sb_ws_parse_header(const uint8_t *buf, size_t len, sb_ws_header_t *out);

/* 1 when s is valid UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
int sb_ws_utf8_valid(const char *s, size_t len);

#endif
