/*
 * fuzz_api.c — libFuzzer target for the REST body validation (sb_api_validate).
 * The first byte picks the operation; the rest is the body. Checks that every
 * refusal names a field and a message, and that nothing crashes or leaks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/api.h"
#include "switchboard/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *ops[] = {"emit", "join", "leave", "disconnect", "ack", "nope"};
    static sb_config_t cfg;
    static int ready;
    if (!ready) {
        sb_config_init(&cfg);
        char *argv[] = {"fuzz", "--namespace", "/chat", NULL};
        char err[256];
        if (sb_config_parse(&cfg, 3, argv, (char *[]){NULL}, err, sizeof(err)) != 0)
            abort();
        ready = 1;
    }
    if (size < 1)
        return 0;
    char field[128], message[160];
    int rv = sb_api_validate(&cfg, ops[data[0] % 6], (const char *)data + 1, size - 1, field, sizeof(field), message,
                             sizeof(message));
    if (rv != 0 && message[0] == '\0')
        abort(); /* a refusal must say what is wrong (the field may be "", the name of an unknown empty key) */
    return 0;
}
