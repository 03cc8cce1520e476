/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The handle id allocator: lowest free id first, like idr_alloc(..., 0, 0). */

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "emu-idr.h"

static uint64_t *new_bitmap(uint32_t capacity, EmuIdrGeometry *g) {
        uint64_t *bits;

        assert(emu_idr_geometry(capacity, g) == 0);
        bits = calloc(g->total_words, sizeof(uint64_t));
        assert(bits);
        emu_idr_init(g, bits);
        return bits;
}

static void test_capacities(void) {
        static const uint32_t caps[] = { 1, 2, 63, 64, 65, 4095, 4096, 4097, 262144, 262145 };

        for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
                EmuIdrGeometry g;
                uint64_t *bits = new_bitmap(caps[c], &g);

                for (uint32_t i = 0; i < caps[c]; i++)
                        assert(emu_idr_alloc(&g, bits) == (int64_t) i);
                assert(emu_idr_alloc(&g, bits) == -ENOSPC);
                assert(emu_idr_next(&g, bits, 0) == 0);
                free(bits);
        }
}

static void test_lowest_free_reused(void) {
        const uint32_t n = 1U << 20;
        EmuIdrGeometry g;
        uint64_t *bits = new_bitmap(n, &g);
        struct timespec a, b;

        for (uint32_t i = 0; i < n; i++)
                assert(emu_idr_alloc(&g, bits) == (int64_t) i);
        /* Free a scattered set, then every alloc must return the lowest of them. */
        srand(1);
        static uint32_t freed[4096];
        for (uint32_t i = 0; i < 4096; i++) {
                uint32_t id;
                do
                        id = (uint32_t) rand() % n;
                while (!emu_idr_test(&g, bits, id));
                emu_idr_remove(&g, bits, id);
                freed[i] = id;
        }
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (uint32_t i = 0; i < 4096; i++) {
                int64_t id = emu_idr_alloc(&g, bits), lowest = -1;

                for (uint32_t j = 0; j < 4096; j++)
                        if (freed[j] != UINT32_MAX && (lowest < 0 || freed[j] < lowest))
                                lowest = freed[j];
                assert(id == lowest);
                for (uint32_t j = 0; j < 4096; j++)
                        if (freed[j] == (uint32_t) id)
                                freed[j] = UINT32_MAX;
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        assert(emu_idr_alloc(&g, bits) == -ENOSPC);

        /* Free then alloc at 10^6 live ids stays cheap. */
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (uint32_t i = 0; i < 1000000; i++) {
                uint32_t id = (uint32_t) rand() % n;
                emu_idr_remove(&g, bits, id);
                assert(emu_idr_alloc(&g, bits) == (int64_t) id);
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        printf("free+alloc at 2^20 live ids: %.1f ns\n",
               ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e6);
        free(bits);
}

int main(void) {
        test_capacities();
        test_lowest_free_reused();
        printf("ok\n");
        return 0;
}
