/*
 * durable.h — pure helpers of durable emits to users (CONTRACT §6).
 *
 * A durable emit is written by the Redis Function sb_emit_durable (lua/durable.lua): one entry in each target
 * user's inbox stream P{user:<uid>}:inbox, then one bus entry whose `inbox` field maps every user to the id of
 * its inbox entry. Nodes deliver it with a server ack id and delete the inbox entry when the client acks; on
 * connect they read the inbox (sb_inbox_read). The session (session.c) uses these helpers to order inbox ids
 * and never deliver one entry twice to a socket. Everything here is pure: no I/O, no allocation.
 */
#ifndef SWITCHBOARD_DURABLE_H
#define SWITCHBOARD_DURABLE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* Most users one durable emit may target (the Function and the REST API refuse more). */
#define SB_DURABLE_MAX_USERS 1000
/* Inbox entries read per sb_inbox_read call on connect. */
#define SB_DURABLE_READ_COUNT 100
/* Longest stream id text: "<20 digits>-<20 digits>". */
#define SB_DURABLE_ID_MAX 41

/* A stream entry id <ms>-<seq>. {0, 0} sorts before every real id. */
typedef struct sb_stream_id {
    uint64_t ms;
    uint64_t seq;
} sb_stream_id_t;

/* Parses "<ms>-<seq>" (both decimal, no sign, no spaces; len bytes, no NUL needed). 0 or SB_EINVAL. */
int sb_durable_id_parse(const char *s, size_t len, sb_stream_id_t *out);
/* <0, 0, >0 as a sorts before, equal to, after b. */
int sb_durable_id_cmp(const sb_stream_id_t *a, const sb_stream_id_t *b);
/* Writes "<ms>-<seq>" with a NUL into out (at least SB_DURABLE_ID_MAX + 1 bytes); returns its length. */
size_t sb_durable_id_format(const sb_stream_id_t *id, char *out, size_t outlen);

/* The inbox entry id of `user` in a bus entry's inbox field (a parsed JSON object {"<uid>":"<id>",…}).
 * 0 with *out set, SB_ENOTFOUND when the user is not listed, SB_EINVAL when its value is not an id. */
int sb_durable_inbox_id(json_t *inbox, const char *user, sb_stream_id_t *out);

#endif
