/*
 * bus.h — the cross-node broadcast stream `<prefix>bus`.
 *
 * Every worker of every node reads the whole stream with XREAD BLOCK (COUNT
 * bus_count) from the id it last processed and applies each entry to its own
 * sockets (session.h). Entry format (CONTRACT §4):
 *   XADD <prefix>bus * op <emit|join|leave|disconnect|ack> msg <JSON>
 * A malformed entry is logged and skipped; it never stops the reader.
 * On (re)connect the reader resumes after the last id it processed; at first
 * start it begins at the stream's current end.
 */
#ifndef SWITCHBOARD_BUS_H
#define SWITCHBOARD_BUS_H

#include <stddef.h>
#include "switchboard/server.h"

/* Called by the bus connection's state callback. */
void sb_bus_on_state(sb_worker_t *w, int connected);

/* One bus entry as read from the stream. `id` is the stream entry id ("<ms>-<seq>"; empty when the entry did not
 * come from the stream); `inbox` is the optional field a durable emit carries: a JSON object mapping each target
 * user to the id of the entry in that user's inbox stream (NULL when absent). */
typedef struct sb_bus_entry {
    const char *id;
    size_t idlen;
    const char *op;
    size_t oplen;
    const char *msg;
    size_t msglen;
    const char *inbox;
    size_t inboxlen;
} sb_bus_entry_t;

/* Reads an XRANGE/XREAD entry ({id, {field, value, ...}}) into `out` (pointers into the reply). SB_EINVAL when it
 * is not an entry or lacks op or msg (the id is still set when there is one). */
int sb_bus_entry_parse(const redisReply *entry, sb_bus_entry_t *out);

/* Applies one entry. Exposed for tests. */
int sb_bus_apply(sb_worker_t *w, const sb_bus_entry_t *e);

#endif
