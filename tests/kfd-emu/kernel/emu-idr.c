/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <string.h>

#include "emu-idr.h"

int emu_idr_geometry(uint32_t capacity, EmuIdrGeometry *ret) {
        EmuIdrGeometry g = { .capacity = capacity };
        uint64_t n = capacity;

        if (capacity == 0)
                return -EINVAL;

        for (;;) {
                if (g.levels >= EMU_IDR_MAX_LEVELS)
                        return -E2BIG;
                n = (n + 63) / 64;
                g.offset[g.levels] = g.total_words;
                g.words[g.levels] = (uint32_t) n;
                g.total_words += (uint32_t) n;
                g.levels++;
                if (n == 1)
                        break;
        }

        *ret = g;
        return 0;
}

static void mark_used(const EmuIdrGeometry *g, uint64_t *bits, uint64_t id) {
        /* Set the bit and carry "this word is full" upwards. */
        for (uint32_t l = 0; l < g->levels; l++) {
                uint64_t *w = &bits[g->offset[l] + id / 64];

                *w |= UINT64_C(1) << (id % 64);
                if (*w != UINT64_MAX)
                        return;
                id /= 64;
        }
}

void emu_idr_init(const EmuIdrGeometry *g, uint64_t *bits) {
        memset(bits, 0, (size_t) g->total_words * sizeof(uint64_t));

        /* Padding at every level: ids past the capacity, and summary bits of words that do not exist. */
        uint64_t n = g->capacity;
        for (uint32_t l = 0; l < g->levels; l++) {
                uint64_t span = (uint64_t) g->words[l] * 64;

                for (uint64_t i = n; i < span; i++) {
                        /* Only the level itself: mark_used() would double-count the carries. */
                        bits[g->offset[l] + i / 64] |= UINT64_C(1) << (i % 64);
                }
                n = g->words[l];
        }
        /* Carry words that the padding filled completely. */
        for (uint32_t l = 0; l + 1 < g->levels; l++)
                for (uint32_t w = 0; w < g->words[l]; w++)
                        if (bits[g->offset[l] + w] == UINT64_MAX)
                                bits[g->offset[l + 1] + w / 64] |= UINT64_C(1) << (w % 64);
}

int64_t emu_idr_alloc(const EmuIdrGeometry *g, uint64_t *bits) {
        uint64_t w = 0;

        for (uint32_t l = g->levels; l-- > 0;) {
                uint64_t word = bits[g->offset[l] + w];

                if (word == UINT64_MAX)
                        return -ENOSPC;
                w = w * 64 + (uint64_t) __builtin_ctzll(~word);
        }
        if (w >= g->capacity)
                return -ENOSPC;

        mark_used(g, bits, w);
        return (int64_t) w;
}

void emu_idr_remove(const EmuIdrGeometry *g, uint64_t *bits, uint32_t id) {
        uint64_t i = id;

        for (uint32_t l = 0; l < g->levels; l++) {
                uint64_t *w = &bits[g->offset[l] + i / 64];
                bool was_full = *w == UINT64_MAX;

                *w &= ~(UINT64_C(1) << (i % 64));
                if (!was_full)
                        return;
                i /= 64;
        }
}

bool emu_idr_test(const EmuIdrGeometry *g, const uint64_t *bits, uint32_t id) {
        if (id >= g->capacity)
                return false;
        return bits[id / 64] & (UINT64_C(1) << (id % 64));
}

int64_t emu_idr_next(const EmuIdrGeometry *g, const uint64_t *bits, uint32_t from) {
        for (uint64_t i = from; i < g->capacity;) {
                uint64_t word = bits[i / 64] >> (i % 64);

                if (word != 0) {
                        uint64_t r = i + (uint64_t) __builtin_ctzll(word);
                        return r < g->capacity ? (int64_t) r : -1;
                }
                i = (i / 64 + 1) * 64;
        }
        return -1;
}
