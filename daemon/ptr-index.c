/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stdint.h>
#include <stdlib.h>

#include "ptr-index.h"

static const void *key_at(const void *base, size_t stride, size_t pos) {
        return *(const void *const *) ((const uint8_t *) base + pos * stride);
}

static size_t hash(const void *key) {
        uint64_t h = (uint64_t) (uintptr_t) key;

        /* Heap pointers share their low bits: mix them all down (the murmur3 finalizer). */
        h ^= h >> 33;
        h *= UINT64_C(0xff51afd7ed558ccd);
        h ^= h >> 33;
        return (size_t) h;
}

static void insert(size_t *slots, size_t n_slots, const void *key, size_t pos) {
        size_t i = hash(key) & (n_slots - 1);

        while (slots[i] != 0)
                i = (i + 1) & (n_slots - 1);
        slots[i] = pos + 1;
}

ssize_t ptr_index_find(const PtrIndex *x, const void *base, size_t stride, size_t n, const void *key) {
        if (x->n_slots == 0) {
                for (size_t pos = 0; pos < n; pos++)
                        if (key_at(base, stride, pos) == key)
                                return (ssize_t) pos;
                return -1;
        }
        for (size_t i = hash(key) & (x->n_slots - 1); x->slots[i] != 0; i = (i + 1) & (x->n_slots - 1))
                if (key_at(base, stride, x->slots[i] - 1) == key)
                        return (ssize_t) (x->slots[i] - 1);
        return -1;
}

void ptr_index_added(PtrIndex *x, const void *base, size_t stride, size_t n) {
        size_t *slots, n_slots;

        if (n <= PTR_INDEX_SCAN)
                return;
        /* At most half full: probes stay short. */
        if (2 * n <= x->n_slots) {
                if (key_at(base, stride, n - 1))
                        insert(x->slots, x->n_slots, key_at(base, stride, n - 1), n - 1);
                return;
        }
        n_slots = x->n_slots ? x->n_slots * 2 : 4 * PTR_INDEX_SCAN;
        while (2 * n > n_slots)
                n_slots *= 2;
        slots = calloc(n_slots, sizeof(size_t));
        if (!slots) {
                /* Out of memory: scan (slower, never wrong); the next entry tries again. */
                ptr_index_done(x);
                return;
        }
        for (size_t pos = 0; pos < n; pos++)
                if (key_at(base, stride, pos))
                        insert(slots, n_slots, key_at(base, stride, pos), pos);
        free(x->slots);
        x->slots = slots;
        x->n_slots = n_slots;
}

void ptr_index_done(PtrIndex *x) {
        free(x->slots);
        *x = (PtrIndex) {};
}
