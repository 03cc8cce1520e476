/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "size-util.h"

static int parse_u64_prefix(const char *s, uint64_t *ret, const char **ret_end) {
        char *end;
        unsigned long long v;
        int base = 10;

        /* strtoull accepts leading space and a sign; a size has neither. */
        if (!isdigit((unsigned char) s[0]))
                return -EINVAL;
        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
                if (!isxdigit((unsigned char) s[2]))
                        return -EINVAL;
                base = 16;
        }

        errno = 0;
        v = strtoull(s, &end, base);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno != 0 || end == s)
                return -EINVAL;

        *ret = v;
        *ret_end = end;
        return 0;
}

int parse_size(const char *s, uint64_t *ret) {
        static const struct {
                const char *suffix;
                unsigned shift;
        } table[] = {
                { "",    0 },
                { "B",   0 },
                { "K",   10 }, { "KiB", 10 },
                { "M",   20 }, { "MiB", 20 },
                { "G",   30 }, { "GiB", 30 },
                { "T",   40 }, { "TiB", 40 },
                { "P",   50 }, { "PiB", 50 },
        };
        const char *end;
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;

        r = parse_u64_prefix(s, &v, &end);
        if (r < 0)
                return r;

        /* Hex digits include 'B': a hex number takes no suffix. */
        if ((s[1] == 'x' || s[1] == 'X') && *end != '\0')
                return -EINVAL;

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
                if (strcasecmp(end, table[i].suffix) != 0)
                        continue;
                if (table[i].shift > 0 && v > (UINT64_MAX >> table[i].shift))
                        return -ERANGE;
                *ret = v << table[i].shift;
                return 0;
        }

        return -EINVAL;
}

char *format_bytes(char *buf, size_t len, uint64_t bytes) {
        static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
        double v = (double) bytes;
        size_t u = 0;

        if (bytes < 1024) {
                snprintf(buf, len, "%" PRIu64 " B", bytes);
                return buf;
        }

        v /= 1024.0;
        while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
                v /= 1024.0;
                u++;
        }
        snprintf(buf, len, "%.1f %s", v, units[u]);
        return buf;
}

int parse_u32(const char *s, uint32_t *ret) {
        const char *end;
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;
        r = parse_u64_prefix(s, &v, &end);
        if (r < 0)
                return r;
        if (*end != '\0')
                return -EINVAL;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}
