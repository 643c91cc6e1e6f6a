/*
 * map.c — open-addressing hash map from byte strings to void* (see
 * include/switchboard/map.h).
 *
 * Keys include client-chosen strings (room names), so the hash is keyed
 * (SipHash-1-3 with a per-process random key): an attacker cannot precompute
 * colliding keys to turn linear probing into O(n^2).
 */
#include "switchboard/map.h"
#include "switchboard/common.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define TOMBSTONE ((char *)1)
#define MIN_CAP 8

static uint64_t sip_k0, sip_k1;
static pthread_once_t sip_once = PTHREAD_ONCE_INIT;

static void sip_seed(void)
{
    uint64_t k[2] = {0, 0};
    if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k)) {
        /* getrandom cannot really fail for 16 bytes after boot; a weaker
         * seed still beats a fixed one. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        k[0] ^= (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
        k[1] ^= (uint64_t)ts.tv_sec * 0xbf58476d1ce4e5b9ULL ^ (uint64_t)(uintptr_t)&k;
    }
    sip_k0 = k[0];
    sip_k1 = k[1];
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                                       \
    do {                                                                                                               \
        v0 += v1;                                                                                                      \
        v1 = ROTL(v1, 13);                                                                                             \
        v1 ^= v0;                                                                                                      \
        v0 = ROTL(v0, 32);                                                                                             \
        v2 += v3;                                                                                                      \
        v3 = ROTL(v3, 16);                                                                                             \
        v3 ^= v2;                                                                                                      \
        v0 += v3;                                                                                                      \
        v3 = ROTL(v3, 21);                                                                                             \
        v3 ^= v0;                                                                                                      \
        v2 += v1;                                                                                                      \
        v1 = ROTL(v1, 17);                                                                                             \
        v1 ^= v2;                                                                                                      \
        v2 = ROTL(v2, 32);                                                                                             \
    } while (0)

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* SipHash-1-3: one compression round per block is plenty for a hash table
 * (the same choice as Rust's and Python's tables). */
static uint64_t hash_bytes(const char *key, size_t len)
{
    pthread_once(&sip_once, sip_seed);
    uint64_t v0 = 0x736f6d6570736575ULL ^ sip_k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ sip_k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ sip_k0;
    uint64_t v3 = 0x7465646279746573ULL ^ sip_k1;
    const unsigned char *p = (const unsigned char *)key;
    size_t blocks = len / 8;
    for (size_t i = 0; i < blocks; i++) {
        uint64_t m = load_le64(p + 8 * i);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    const unsigned char *tail = p + 8 * blocks;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)tail[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

void sb_map_init(sb_map_t *m)
{
    m->entries = NULL;
    m->cap = 0;
    m->count = 0;
    m->used = 0;
    m->borrowed = 0;
}

void sb_map_init_borrowed(sb_map_t *m)
{
    sb_map_init(m);
    m->borrowed = 1;
}

void sb_map_free(sb_map_t *m)
{
    for (size_t i = 0; !m->borrowed && i < m->cap; i++) {
        char *k = m->entries[i].key;
        if (k != NULL && k != TOMBSTONE)
            free(k);
    }
    free(m->entries);
    m->entries = NULL;
    m->cap = 0;
    m->count = 0;
    m->used = 0;
}

static int live(const sb_map_entry_t *e)
{
    return e->key != NULL && e->key != TOMBSTONE;
}

/* Index of the live entry holding key, or SIZE_MAX. */
static size_t find(const sb_map_t *m, const char *key, size_t keylen, uint32_t h)
{
    if (m->cap == 0)
        return SIZE_MAX;
    size_t mask = m->cap - 1;
    /* The table is never full (load <= 70%), so the probe ends on an empty slot. */
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const sb_map_entry_t *e = &m->entries[i];
        if (e->key == NULL)
            return SIZE_MAX;
        if (e->key != TOMBSTONE && e->hash == h && e->keylen == keylen &&
            (keylen == 0 || memcmp(e->key, key, keylen) == 0))
            return i;
    }
}

/* Rebuilds the table with newcap slots, dropping tombstones. */
static int rehash(sb_map_t *m, size_t newcap)
{
    sb_map_entry_t *ne = calloc(newcap, sizeof(*ne));
    if (ne == NULL)
        return SB_ENOMEM;
    size_t mask = newcap - 1;
    for (size_t i = 0; i < m->cap; i++) {
        sb_map_entry_t *e = &m->entries[i];
        if (!live(e))
            continue;
        size_t j = e->hash & mask;
        while (ne[j].key != NULL)
            j = (j + 1) & mask;
        ne[j] = *e;
    }
    free(m->entries);
    m->entries = ne;
    m->cap = newcap;
    m->used = m->count;
    return 0;
}

void *sb_map_get(const sb_map_t *m, const char *key, size_t keylen)
{
    if (m->cap == 0)
        return NULL;
    size_t i = find(m, key, keylen, (uint32_t)hash_bytes(key, keylen));
    return i == SIZE_MAX ? NULL : m->entries[i].value;
}

int sb_map_set(sb_map_t *m, const char *key, size_t keylen, void *value)
{
    uint32_t h = (uint32_t)hash_bytes(key, keylen); /* the entries keep its low half */
    size_t i = find(m, key, keylen, h);
    if (i != SIZE_MAX) {
        if (m->borrowed) /* the key now lives in the new value; never written through */
            m->entries[i].key = (char *)key;
        m->entries[i].value = value;
        return 0;
    }
    if (keylen > UINT32_MAX)
        return SB_ENOMEM;

    /* Keep live + tombstones at or below 70% so probes stay short and always
     * terminate. The new size targets <= 50% live load, so a rehash is
     * followed by many cheap inserts, and a table full of tombstones is
     * cleaned without growing. (A key copy that then fails leaves the same
     * entries in a larger table.) */
    if ((m->used + 1) * 10 > m->cap * 7) {
        size_t newcap = MIN_CAP;
        while ((m->count + 1) * 2 > newcap) {
            if (newcap > SIZE_MAX / 2 / sizeof(sb_map_entry_t))
                return SB_ENOMEM;
            newcap *= 2;
        }
        if (rehash(m, newcap) != 0)
            return SB_ENOMEM;
    }
    char *k;
    if (m->borrowed) {
        k = (char *)key; /* never written through: only compared and handed back as the entry's key */
    } else {
        if ((k = malloc(keylen + 1)) == NULL)
            return SB_ENOMEM;
        if (keylen != 0)
            memcpy(k, key, keylen);
        k[keylen] = '\0';
    }

    size_t mask = m->cap - 1;
    size_t j = h & mask;
    /* Reuse the first tombstone on the probe path: the key is known absent. */
    while (live(&m->entries[j]))
        j = (j + 1) & mask;
    sb_map_entry_t *e = &m->entries[j];
    if (e->key == NULL)
        m->used++;
    e->key = k;
    e->keylen = (uint32_t)keylen;
    e->hash = h;
    e->value = value;
    m->count++;
    return 0;
}

void *sb_map_del(sb_map_t *m, const char *key, size_t keylen)
{
    if (m->cap == 0)
        return NULL;
    size_t i = find(m, key, keylen, (uint32_t)hash_bytes(key, keylen));
    if (i == SIZE_MAX)
        return NULL;
    sb_map_entry_t *e = &m->entries[i];
    void *value = e->value;
    if (!m->borrowed)
        free(e->key);
    /* A tombstone keeps the probe chains of later keys intact; it is also what
     * makes deleting the current entry during iteration safe (nothing moves). */
    e->key = TOMBSTONE;
    e->keylen = 0;
    e->hash = 0;
    e->value = NULL;
    m->count--;
    return value;
}

int sb_map_next(const sb_map_t *m, size_t *iter, const sb_map_entry_t **out)
{
    for (size_t i = *iter; i < m->cap; i++) {
        if (live(&m->entries[i])) {
            *out = &m->entries[i];
            *iter = i + 1;
            return 1;
        }
    }
    *iter = m->cap;
    return 0;
}
