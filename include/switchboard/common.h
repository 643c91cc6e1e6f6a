/*
 * common.h — error codes, bounded growable buffers and small helpers shared by
 * every module of switchboard.
 *
 * Every buffer that can grow is an sb_buf_t created with a hard cap: appending
 * past the cap fails with SB_ETOOBIG and leaves the buffer unchanged. Nothing
 * here touches the event loop; all functions are safe to call from any thread
 * on distinct objects.
 */
#ifndef SWITCHBOARD_COMMON_H
#define SWITCHBOARD_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* Error codes: functions return 0 on success or one of these (negative). */
#define SB_OK 0
#define SB_ENOMEM (-1)  /* allocation failed */
#define SB_ETOOBIG (-2) /* a bound was exceeded (buffer cap, maxPayload, counts) */
#define SB_EPROTO (-3)  /* malformed input (protocol violation) */
#define SB_EINVAL (-4)  /* invalid argument / configuration value */
#define SB_ENOTFOUND (-5)
#define SB_EIO (-6)    /* system or network error */
#define SB_EAGAIN (-7) /* try again later (not connected, busy) */

/* Returns a static, human-readable name for an SB_E* code. */
const char *sb_strerror(int err);

/* Copies src into dst (cap > 0 bytes), truncating, always NUL-terminated; returns strlen(src), so a result >= cap
 * means truncated. What snprintf(dst, cap, "%s", src) does, without printf's cost on the hot paths. */
size_t sb_strcopy(char *dst, size_t cap, const char *src);

/* Length of the UTF-8 sequence at s (avail > 0 bytes readable) as jansson and RFC 3629 accept it (no overlong
 * forms, no surrogates, at most U+10FFFF), 0 when invalid. */
size_t sb_utf8_seq(const unsigned char *s, size_t avail);

/* Dotted-quad text of an IPv4 address (4 bytes, network order) into out (at least 16 bytes); returns its length.
 * glibc's inet_ntop formats IPv4 with sprintf, a cost every handshake paid twice. */
size_t sb_ipv4_text(const unsigned char a[4], char *out);

/* A byte buffer with a hard cap. Zero-initialise, or use sb_buf_init. */
typedef struct sb_buf {
    char *base; /* malloc'd; NULL while empty and never grown */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
    size_t max; /* hard cap on len; 0 means SIZE_MAX */
} sb_buf_t;

void sb_buf_init(sb_buf_t *b, size_t max);
/* Frees the storage; the buffer is left empty and reusable (max kept). */
void sb_buf_free(sb_buf_t *b);
/* Makes room for `extra` more bytes. SB_ETOOBIG past max, SB_ENOMEM. */
int sb_buf_reserve(sb_buf_t *b, size_t extra);
/* Appends; on failure nothing is appended. */
int sb_buf_append(sb_buf_t *b, const void *data, size_t len);
int sb_buf_append_str(sb_buf_t *b, const char *s);
int sb_buf_append_char(sb_buf_t *b, char c);
/* Appends the decimal form of v. */
int sb_buf_append_u64(sb_buf_t *b, uint64_t v);
int sb_buf_append_i64(sb_buf_t *b, int64_t v);
/* Appends s as a JSON string literal (with quotes), escaping as JSON requires. */
int sb_buf_append_json_str(sb_buf_t *b, const char *s, size_t len);
/* Detaches the storage: returns base (caller frees) and leaves b empty. */
char *sb_buf_steal(sb_buf_t *b);

/* Base64 (RFC 4648, standard alphabet, with padding). */
size_t sb_base64_encoded_len(size_t n);
/* Writes sb_base64_encoded_len(n) bytes (no NUL) to out. */
void sb_base64_encode(const void *in, size_t n, char *out);
/* Decodes into out (capacity at least 3*(len/4)+3); *outlen gets the length.
 * Accepts padded or unpadded input; any other character is SB_EPROTO. */
int sb_base64_decode(const char *in, size_t len, void *out, size_t *outlen);

/* Unpadded base64url (RFC 4648 §5, as JWS uses it): same output capacity rule; '=' is SB_EPROTO. */
int sb_base64url_decode(const char *in, size_t len, void *out, size_t *outlen);
/* 1 when c is in the base64url alphabet. */
int sb_base64url_char(unsigned char c);

/* Milliseconds since the epoch (CLOCK_REALTIME). */
uint64_t sb_now_ms(void);
/* Milliseconds from CLOCK_MONOTONIC. */
uint64_t sb_mono_ms(void);

/* Fills `out` with n random characters of the base64url alphabet
 * (A-Z a-z 0-9 - _) from a CSPRNG (getrandom). No NUL is written. */
void sb_random_id(char *out, size_t n);

#define SB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
