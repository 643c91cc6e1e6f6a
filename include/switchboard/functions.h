/*
 * functions.h — the Redis Functions library built from the lua/ scripts.
 *
 * At build time cmake/embed_lua.cmake concatenates the lua/ scripts (sorted by name)
 * behind a "#!lua name=switchboard" line and a generated version function into
 * one library text, embedded into the binary as sb_functions_source, with
 * sb_functions_version = the SHA1 of the concatenated bytes of the lua/ scripts (40 hex).
 *
 * Functions in the library are named sb_<op> and take their keys/args as
 * documented in each lua file's header. `FCALL sb_version 0` returns the
 * version the library was built with.
 */
#ifndef SWITCHBOARD_FUNCTIONS_H
#define SWITCHBOARD_FUNCTIONS_H

#include <hiredis/hiredis.h>

extern const char sb_functions_source[];
extern const char sb_functions_version[];

/* Loads the library with FUNCTION LOAD REPLACE on a synchronous connection,
 * then checks that FCALL sb_version 0 returns sb_functions_version. Returns 0,
 * or a negative SB_E* with *why set to a static (or thread-local) message such
 * as "Redis 7 or newer is required (FUNCTION LOAD failed: …)". */
int sb_functions_load(redisContext *c, const char **why);

/* Checks only (no load): 0 when the loaded library's version is ours,
 * SB_ENOTFOUND when not loaded, SB_EINVAL when a different version is loaded. */
int sb_functions_check(redisContext *c, const char **why);

#endif
