/*
 * functions.c — loads the embedded Redis Functions library (the lua/ scripts, see
 * cmake/embed_lua.cmake) and checks which version a server has loaded.
 *
 * Both calls run at start-up (and from readiness checks) on a synchronous
 * hiredis connection; they block the calling thread for one or two round trips.
 */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "switchboard/common.h"
#include "switchboard/functions.h"

/* Messages that quote the server's error are formatted into a per-thread
 * buffer, so *why stays valid until the next call on the same thread. */
static _Thread_local char why_buf[512];

#define REDIS7_REQUIRED "Redis 7 or newer is required"

static int starts_with(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

static void set_why(const char **why, const char *msg)
{
    if (why != NULL)
        *why = msg;
}

/* Formats "<what>: <detail>" (detail may lack a NUL) into why_buf. */
static void set_why_fmt(const char **why, const char *what, const char *detail, size_t detail_len)
{
    if (detail_len > 300)
        detail_len = 300;
    snprintf(why_buf, sizeof(why_buf), "%s: %.*s", what, (int)detail_len, detail);
    set_why(why, why_buf);
}

/* Turns a NULL reply (connection-level failure) into SB_EIO with a reason. */
static int io_failure(redisContext *c, const char **why, const char *what)
{
    const char *detail = c->errstr[0] != '\0' ? c->errstr : "no reply";
    set_why_fmt(why, what, detail, strlen(detail));
    return SB_EIO;
}

/* Error replies that mean "try again later" rather than a broken setup. */
static int is_transient(const redisReply *r)
{
    static const char *const prefixes[] = {"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "READONLY"};
    for (size_t i = 0; i < SB_ARRAY_SIZE(prefixes); i++)
        if (starts_with(r->str, r->len, prefixes[i]))
            return 1;
    return 0;
}

int sb_functions_check(redisContext *c, const char **why)
{
    if (c == NULL) {
        set_why(why, "no Redis connection");
        return SB_EINVAL;
    }
    redisReply *r = redisCommand(c, "FCALL sb_version 0");
    if (r == NULL)
        return io_failure(c, why, "FCALL sb_version failed");

    int rc;
    if (r->type == REDIS_REPLY_ERROR) {
        if (starts_with(r->str, r->len, "ERR Function not found")) {
            set_why(why, "the switchboard Functions library is not loaded");
            rc = SB_ENOTFOUND;
        } else if (starts_with(r->str, r->len, "ERR unknown command")) {
            set_why_fmt(why, REDIS7_REQUIRED " (FCALL failed)", r->str, r->len);
            rc = SB_EINVAL;
        } else {
            set_why_fmt(why, "FCALL sb_version failed", r->str, r->len);
            rc = is_transient(r) ? SB_EAGAIN : SB_EIO;
        }
    } else if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS) {
        set_why(why, "FCALL sb_version returned an unexpected reply type");
        rc = SB_EINVAL;
    } else if (r->len != strlen(sb_functions_version) || memcmp(r->str, sb_functions_version, r->len) != 0) {
        /* Another node (older or newer build) loaded its own library; both
         * cannot be served by one set of Functions, so say which is which. */
        snprintf(why_buf, sizeof(why_buf),
                 "the loaded switchboard Functions library is version %.*s, this build needs %s",
                 (int)(r->len > 64 ? 64 : r->len), r->str, sb_functions_version);
        set_why(why, why_buf);
        rc = SB_EINVAL;
    } else {
        set_why(why, NULL);
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

int sb_functions_load(redisContext *c, const char **why)
{
    if (c == NULL) {
        set_why(why, "no Redis connection");
        return SB_EINVAL;
    }
    const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", sb_functions_source};
    size_t argvlen[] = {8, 4, 7, strlen(sb_functions_source)};
    redisReply *r = redisCommandArgv(c, (int)SB_ARRAY_SIZE(argv), argv, argvlen);
    if (r == NULL)
        return io_failure(c, why, "FUNCTION LOAD failed");

    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        if (starts_with(r->str, r->len, "ERR unknown command") ||
            starts_with(r->str, r->len, "ERR unknown subcommand")) {
            /* Redis 6 has no FUNCTION; 7.0 release candidates spelled it differently. */
            set_why_fmt(why, REDIS7_REQUIRED " (FUNCTION LOAD failed)", r->str, r->len);
            rc = SB_EINVAL;
        } else {
            /* A compile error in a lua/ script lands here too, with Redis's message. */
            set_why_fmt(why, "FUNCTION LOAD failed", r->str, r->len);
            rc = is_transient(r) ? SB_EAGAIN : SB_EIO;
        }
    }
    freeReplyObject(r);
    if (rc != 0)
        return rc;
    /* The load answered with the library name; reading the version back
     * proves that the library now served is this build's. */
    return sb_functions_check(c, why);
}
