/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * What the environment tells libsvmd about where it runs. A container that was
 * given GPUs through CDI (svmctl cdi generate, docs/containers.md) has no
 * system bus, so SVMD_DIRECT_ONLY=1 makes every call go over io.socket; and
 * SVMD_VISIBLE_GPU* variables name the GPUs it was given, which svmd_list_gpus()
 * then lists. Visibility is a default for the container's programs, not a
 * boundary: svmd decides what a caller may do from its peer credentials.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

extern char **environ;

bool environment_direct_only(void) {
        const char *e = getenv("SVMD_DIRECT_ONLY");

        return e && (streq(e, "1") || streq(e, "yes") || streq(e, "true"));
}

static int add_ids(const char *list, uint32_t **ids, size_t *n) {
        const char *p = list;

        while (*p) {
                unsigned long v;
                uint32_t *a;
                char *end;

                errno = 0;
                v = strtoul(p, &end, 0);
                if (end != p && errno == 0 && v > 0 && v <= UINT32_MAX && (*end == ',' || !*end)) {
                        a = reallocarray(*ids, *n + 1, sizeof(uint32_t));
                        if (!a)
                                return -ENOMEM;
                        *ids = a;
                        (*ids)[(*n)++] = (uint32_t) v;
                }
                /* Not an id: skip to the next entry. */
                p = strchrnul(p, ',');
                if (*p == ',')
                        p++;
        }
        return 0;
}

int environment_visible_gpus(uint32_t **ret, size_t *ret_n) {
        _cleanup_free_ uint32_t *ids = NULL;
        size_t n = 0;
        bool named = false;
        int r;

        /* SVMD_VISIBLE_GPUS=0x3a1f,0x3a20 by hand; SVMD_VISIBLE_GPU_<id>=<id>, one per CDI device, so that
         * several devices add up (CDI appends env entries and a later one of the same name wins). */
        for (char **e = environ; e && *e; e++) {
                const char *eq;

                if (strncmp(*e, "SVMD_VISIBLE_GPU", strlen("SVMD_VISIBLE_GPU")) != 0)
                        continue;
                eq = strchr(*e, '=');
                if (!eq || !eq[1])
                        continue;
                named = true;
                r = add_ids(eq + 1, &ids, &n);
                if (r < 0)
                        return r;
        }
        if (!named) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        *ret = TAKE_PTR(ids);
        *ret_n = n;
        return 1;
}
