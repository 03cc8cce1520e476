/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * /etc/svmd/svmd.conf: strict JSON. Unknown keys, duplicate keys and values of
 * the wrong type are errors that name the key; a missing file means defaults.
 * Documented in svmd.conf(5).
 */

#include <stdbool.h>
#include <stdint.h>

#define CONFIG_DEFAULT_VA_BASE UINT64_C(0x400000000000)
#define CONFIG_DEFAULT_VA_SIZE (UINT64_C(16) << 40)

typedef enum CachePolicy {
        CACHE_POLICY_COHERENT = 0,      /* KFD policy values: cache_policy_coherent */
        CACHE_POLICY_NONCOHERENT = 1,
} CachePolicy;

typedef struct Config {
        uint64_t va_base;
        uint64_t va_size;

        /* SET_MEMORY_POLICY, applied where the GPU generation needs it */
        CachePolicy default_policy;
        CachePolicy alternate_policy;
        bool mfma_high_precision;       /* gfx 9.4/9.5 misc_process_flag, interface 1.18+ */
} Config;

void config_init_defaults(Config *c);

/*
 * Load path into *ret. -ENOENT is returned as is (the caller decides whether a
 * missing file means defaults); any other error comes with a message in
 * *ret_error naming the file, key and reason (caller frees).
 */
int config_load(const char *path, Config *ret, char **ret_error);

/* Same, from a string (tests, fuzzing). */
int config_parse(const char *text, const char *origin, Config *ret, char **ret_error);
