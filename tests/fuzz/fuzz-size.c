/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * svmctl's value parsers: parse_size() and parse_u32() of the kfd layer and
 * svmctl's GPU list parser. Whatever they accept must print back to a value
 * they accept again.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "size-util.h"
#include "svmctl-format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint32_t *ids = NULL, u;
        size_t n = 0;
        uint64_t v, w;
        char *s, buf[32];

        if (size > 4096)
                return 0;
        s = strndup((const char *) data, size);
        if (!s)
                return 0;

        if (parse_size(s, &v) >= 0) {
                snprintf(buf, sizeof(buf), "%" PRIu64, v);
                if (parse_size(buf, &w) < 0 || w != v)
                        abort();
                (void) FORMAT_BYTES(v);
        }
        if (parse_u32(s, &u) >= 0) {
                uint32_t u2;

                snprintf(buf, sizeof(buf), "0x%" PRIx32, u);
                if (parse_u32(buf, &u2) < 0 || u2 != u)
                        abort();
        }
        if (parse_gpu_list(s, &ids, &n) >= 0) {
                char *back = format_gpu_list(ids, n);
                uint32_t *again = NULL;
                size_t m = 0;

                if (!back)
                        abort();
                if (n > 0 && (parse_gpu_list(back, &again, &m) < 0 || m != n ||
                              memcmp(again, ids, n * sizeof(uint32_t)) != 0))
                        abort();
                free(again);
                free(back);
                free(ids);
        }
        free(s);
        return 0;
}
