/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The sub-allocator under svmd_pool: see pool-heap.h. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "pool-heap.h"

struct HeapBlock {
        uint64_t va, size;
        HeapChunk *chunk;
        HeapBlock *prev, *next;         /* address order in the chunk; next also links spares */
        HeapBlock *bin_prev, *bin_next; /* in its bin, while free */
        bool used;
};

static unsigned bin_of(uint64_t size) {
        return 63U - (unsigned) __builtin_clzll(size);
}

static void bin_insert(PoolHeap *h, HeapBlock *b) {
        HeapBlock **head = &h->bins[bin_of(b->size)];

        LIST_PREPEND(*head, b, bin_prev, bin_next);
}

static void bin_remove(PoolHeap *h, HeapBlock *b) {
        LIST_REMOVE(h->bins[bin_of(b->size)], b, bin_prev, bin_next);
}

/* Make sure n block structs are at hand, so that what follows cannot fail. */
static int spare_reserve(PoolHeap *h, unsigned n) {
        unsigned have = 0;

        for (HeapBlock *b = h->spare; b && have < n; b = b->next)
                have++;
        for (; have < n; have++) {
                HeapBlock *b = calloc(1, sizeof(*b));

                if (!b)
                        return -ENOMEM;
                b->next = h->spare;
                h->spare = b;
        }
        return 0;
}

static HeapBlock *spare_take(PoolHeap *h) {
        HeapBlock *b = h->spare;

        h->spare = b->next;
        memset(b, 0, sizeof(*b));
        return b;
}

static void spare_put(PoolHeap *h, HeapBlock *b) {
        b->next = h->spare;
        h->spare = b;
}

/* ---- used blocks by address: linear probing, deletion by backward shift ---- */

static uint64_t table_slot(const PoolHeap *h, uint64_t va) {
        return ((va / HEAP_GRANULE) * UINT64_C(0x9E3779B97F4A7C15)) & (h->table_size - 1);
}

static void table_put(PoolHeap *h, HeapBlock *b) {
        uint64_t i = table_slot(h, b->va);

        while (h->table[i])
                i = (i + 1) & (h->table_size - 1);
        h->table[i] = b;
}

/* Room for one more entry at a load of at most one half. */
static int table_reserve(PoolHeap *h) {
        HeapBlock **old = h->table;
        uint64_t old_size = h->table_size, size;

        if ((h->stats.blocks + 1) * 2 <= h->table_size)
                return 0;
        size = old_size ? old_size * 2 : 64;
        h->table = calloc(size, sizeof(HeapBlock *));
        if (!h->table) {
                h->table = old;
                return -ENOMEM;
        }
        h->table_size = size;
        for (uint64_t i = 0; i < old_size; i++)
                if (old[i])
                        table_put(h, old[i]);
        free(old);
        return 0;
}

static uint64_t table_find(const PoolHeap *h, uint64_t va) {
        if (h->table_size == 0)
                return UINT64_MAX;
        for (uint64_t i = table_slot(h, va);; i = (i + 1) & (h->table_size - 1)) {
                if (!h->table[i])
                        return UINT64_MAX;
                if (h->table[i]->va == va)
                        return i;
        }
}

static void table_delete(PoolHeap *h, uint64_t i) {
        uint64_t mask = h->table_size - 1;

        h->table[i] = NULL;
        /* Move back every entry of the run after i that probing from its home slot would miss now. */
        for (uint64_t j = (i + 1) & mask; h->table[j]; j = (j + 1) & mask) {
                uint64_t home = table_slot(h, h->table[j]->va);

                if (((j - home) & mask) >= ((j - i) & mask)) {
                        h->table[i] = h->table[j];
                        h->table[j] = NULL;
                        i = j;
                }
        }
}

/* ---- chunks and blocks ---- */

void heap_init(PoolHeap *h) {
        memset(h, 0, sizeof(*h));
}

void heap_done(PoolHeap *h) {
        while (h->chunks) {
                HeapChunk *c = h->chunks;

                h->chunks = c->next;
                for (HeapBlock *b = c->first, *next; b; b = next) {
                        next = b->next;
                        free(b);
                }
                free(c);
        }
        while (h->spare) {
                HeapBlock *b = h->spare;

                h->spare = b->next;
                free(b);
        }
        free(h->table);
        memset(h, 0, sizeof(*h));
}

int heap_add_chunk(PoolHeap *h, uint64_t id, uint64_t va, uint64_t size, HeapChunk **ret) {
        HeapChunk *c;
        HeapBlock *b;

        if (size == 0 || va % HEAP_GRANULE != 0 || size % HEAP_GRANULE != 0 || va + size < va)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        b = calloc(1, sizeof(*b));
        if (!c || !b) {
                free(c);
                free(b);
                return -ENOMEM;
        }
        *c = (HeapChunk) { .id = id, .va = va, .size = size, .first = b };
        *b = (HeapBlock) { .va = va, .size = size, .chunk = c };
        LIST_PREPEND(h->chunks, c, prev, next);
        bin_insert(h, b);
        h->stats.chunks++;
        h->stats.chunk_bytes += size;
        if (ret)
                *ret = c;
        return 0;
}

void heap_remove_chunk(PoolHeap *h, HeapChunk *c) {
        /* An idle chunk is one free block: neighbours always merge. */
        bin_remove(h, c->first);
        spare_put(h, c->first);
        LIST_REMOVE(h->chunks, c, prev, next);
        h->stats.chunks--;
        h->stats.chunk_bytes -= c->size;
        free(c);
}

/* Where a block of size at alignment would start in free block b, or UINT64_MAX if it does not fit. */
static uint64_t fit(const HeapBlock *b, uint64_t size, uint64_t alignment) {
        uint64_t start = (b->va + alignment - 1) & ~(alignment - 1);

        if (start < b->va || start - b->va > b->size || b->size - (start - b->va) < size)
                return UINT64_MAX;
        return start;
}

/* Split off [b->va, at) of b as a new free block before it. */
static void split_front(PoolHeap *h, HeapBlock *b, uint64_t at) {
        HeapBlock *front = spare_take(h);

        *front = (HeapBlock) { .va = b->va, .size = at - b->va, .chunk = b->chunk, .prev = b->prev, .next = b };
        if (b->prev)
                b->prev->next = front;
        else
                b->chunk->first = front;
        b->prev = front;
        b->size -= front->size;
        b->va = at;
        bin_insert(h, front);
}

/* Split off what lies beyond size bytes of b as a new free block after it. */
static void split_back(PoolHeap *h, HeapBlock *b, uint64_t size) {
        HeapBlock *back = spare_take(h);

        *back = (HeapBlock) { .va = b->va + size, .size = b->size - size, .chunk = b->chunk, .prev = b,
                              .next = b->next };
        if (b->next)
                b->next->prev = back;
        b->next = back;
        b->size = size;
        bin_insert(h, back);
}

int heap_alloc(PoolHeap *h, uint64_t size, uint64_t alignment, uint64_t *ret_va, HeapChunk **ret_chunk) {
        HeapBlock *found = NULL;
        uint64_t start = 0;
        int r;

        if (size == 0 || size % HEAP_GRANULE != 0 || alignment < HEAP_GRANULE || (alignment & (alignment - 1)))
                return -EINVAL;
        for (unsigned i = bin_of(size); i < HEAP_BINS && !found; i++)
                for (HeapBlock *b = h->bins[i]; b; b = b->bin_next) {
                        start = fit(b, size, alignment);
                        if (start != UINT64_MAX) {
                                found = b;
                                break;
                        }
                }
        if (!found)
                return -ENOSPC;

        r = spare_reserve(h, 2);
        if (r < 0)
                return r;
        r = table_reserve(h);
        if (r < 0)
                return r;

        bin_remove(h, found);
        if (start > found->va)
                split_front(h, found, start);
        if (found->size > size)
                split_back(h, found, size);
        found->used = true;
        table_put(h, found);
        found->chunk->used += size;
        h->stats.used_bytes += size;
        h->stats.blocks++;
        *ret_va = found->va;
        if (ret_chunk)
                *ret_chunk = found->chunk;
        return 0;
}

/* Let b take in its successor, which is in no bin. */
static void absorb_next(PoolHeap *h, HeapBlock *b) {
        HeapBlock *n = b->next;

        b->size += n->size;
        b->next = n->next;
        if (n->next)
                n->next->prev = b;
        spare_put(h, n);
}

int heap_free(PoolHeap *h, uint64_t va, uint64_t *ret_size, HeapChunk **ret_chunk) {
        uint64_t i = table_find(h, va);
        HeapBlock *b;

        if (i == UINT64_MAX)
                return -ENOENT;
        b = h->table[i];
        table_delete(h, i);
        b->used = false;
        b->chunk->used -= b->size;
        h->stats.used_bytes -= b->size;
        h->stats.blocks--;
        if (ret_size)
                *ret_size = b->size;
        if (ret_chunk)
                *ret_chunk = b->chunk;

        if (b->next && !b->next->used) {
                bin_remove(h, b->next);
                absorb_next(h, b);
        }
        if (b->prev && !b->prev->used) {
                b = b->prev;
                bin_remove(h, b);
                absorb_next(h, b);
        }
        bin_insert(h, b);
        return 0;
}
