/*
 * map.h — a string-keyed hash map (open addressing, linear probing,
 * tombstones, grows at 70% load) mapping a byte string to a void*. Keys are
 * copied into the map, except in a map made by sb_map_init_borrowed; values
 * are not owned. Used for per-thread indexes (sid -> connection, socket id ->
 * socket, room -> member list). Not thread-safe: one owner thread.
 */
#ifndef SWITCHBOARD_MAP_H
#define SWITCHBOARD_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct sb_map_entry {
    char *key; /* NULL empty; (char*)1 tombstone; else the key: a NUL-terminated malloc'd copy, or the caller's
                  bytes in a borrowed map */
    void *value;
    uint32_t keylen; /* keys are at most UINT32_MAX bytes (sb_map_set refuses longer ones) */
    uint32_t hash;   /* low half of the key's hash: 24-byte entries, and tables never reach 2^32 slots */
} sb_map_entry_t;

typedef struct sb_map {
    sb_map_entry_t *entries;
    size_t cap;   /* power of two or 0 */
    size_t count; /* live entries */
    size_t used;  /* live + tombstones */
    int borrowed; /* keys are not copied (sb_map_init_borrowed) */
} sb_map_t;

void sb_map_init(sb_map_t *m);
/* A map whose keys live in their values: sb_map_set keeps the caller's key
 * pointer instead of a copy, so those bytes must stay unchanged at that
 * address until the entry is deleted or replaced (a replacement keeps the new
 * value's key pointer). For the per-connection indexes, where
 * the key is the value's own id or name: one allocation and one cache miss
 * less per entry. */
void sb_map_init_borrowed(sb_map_t *m);
/* Frees the map's storage and key copies (not the values); the map stays of its kind, empty. */
void sb_map_free(sb_map_t *m);
/* Returns the value or NULL. */
void *sb_map_get(const sb_map_t *m, const char *key, size_t keylen);
/* Inserts or replaces. Returns 0 or SB_ENOMEM (map unchanged). */
int sb_map_set(sb_map_t *m, const char *key, size_t keylen, void *value);
/* Removes and returns the old value (NULL when absent). */
void *sb_map_del(sb_map_t *m, const char *key, size_t keylen);
/* Iteration: for (size_t i = 0; sb_map_next(m, &i, &e);) … ; do not insert while iterating (deleting the current entry is allowed). */
int sb_map_next(const sb_map_t *m, size_t *iter, const sb_map_entry_t **out);

#endif
