/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The pool's sub-allocator (client-lib/pool-heap.c) against a model: random
 * allocations and frees over several chunks, after each step checking that
 * used blocks lie inside their chunk, are aligned and never overlap, that the
 * counters add up, and that a chunk is one free block again once its last
 * block is freed. Then every allocation of the heap fails in turn (--wrap):
 * the call fails with ENOMEM and the heap is exactly as before.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool-heap.h"
#include "unit-assert.h"

/* ---- an allocator that fails on request ---- */

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
static long fail_countdown = -1;        /* < 0: never; 0: this call fails */

static bool fail_now(void) {
        if (fail_countdown < 0)
                return false;
        return fail_countdown-- == 0;
}

void *__wrap_malloc(size_t size);
void *__wrap_malloc(size_t size) {
        return fail_now() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size) {
        return fail_now() ? NULL : __real_calloc(n, size);
}

/* ---- the model ---- */

#define MAX_LIVE 4096

typedef struct Live {
        uint64_t va, size;
        HeapChunk *chunk;
} Live;

static Live live[MAX_LIVE];
static size_t n_live;

static uint64_t rnd_state = 0x243F6A8885A308D3;

static uint64_t rnd(void) {
        rnd_state ^= rnd_state << 13;
        rnd_state ^= rnd_state >> 7;
        rnd_state ^= rnd_state << 17;
        return rnd_state;
}

static int cmp_live(const void *a, const void *b) {
        const Live *x = a, *y = b;

        return x->va < y->va ? -1 : x->va > y->va;
}

static void check(const PoolHeap *h) {
        static Live sorted[MAX_LIVE];
        uint64_t used = 0, chunk_bytes = 0, chunks = 0;

        memcpy(sorted, live, n_live * sizeof(Live));
        qsort(sorted, n_live, sizeof(Live), cmp_live);
        for (size_t i = 0; i < n_live; i++) {
                ASSERT_TRUE(sorted[i].va >= sorted[i].chunk->va);
                ASSERT_TRUE(sorted[i].va + sorted[i].size <= sorted[i].chunk->va + sorted[i].chunk->size);
                if (i > 0)
                        ASSERT_TRUE(sorted[i - 1].va + sorted[i - 1].size <= sorted[i].va);
                used += sorted[i].size;
        }
        for (const HeapChunk *c = h->chunks; c; c = c->next) {
                uint64_t in_chunk = 0;

                for (size_t i = 0; i < n_live; i++)
                        if (live[i].chunk == c)
                                in_chunk += live[i].size;
                ASSERT_UEQ(c->used, in_chunk);
                chunk_bytes += c->size;
                chunks++;
        }
        ASSERT_UEQ(h->stats.used_bytes, used);
        ASSERT_UEQ(h->stats.blocks, (uint64_t) n_live);
        ASSERT_UEQ(h->stats.chunk_bytes, chunk_bytes);
        ASSERT_UEQ(h->stats.chunks, chunks);
}

static int alloc_one(PoolHeap *h, uint64_t size, uint64_t alignment) {
        uint64_t va;
        HeapChunk *c;
        int r;

        r = heap_alloc(h, size, alignment, &va, &c);
        if (r < 0)
                return r;
        ASSERT_UEQ(va % alignment, 0);
        ASSERT_TRUE(n_live < MAX_LIVE);
        live[n_live++] = (Live) { va, size, c };
        return 0;
}

static void free_one(PoolHeap *h, size_t i) {
        uint64_t size;
        HeapChunk *c;

        ASSERT_OK(heap_free(h, live[i].va, &size, &c));
        ASSERT_UEQ(size, live[i].size);
        ASSERT_TRUE(c == live[i].chunk);
        live[i] = live[--n_live];
}

static void test_random(void) {
        PoolHeap h;
        const uint64_t chunk = UINT64_C(2) << 20;
        unsigned enospc = 0;

        heap_init(&h);
        for (uint64_t i = 0; i < 4; i++)
                ASSERT_OK(heap_add_chunk(&h, i + 1, (UINT64_C(1) << 32) + i * 3 * chunk, chunk, NULL));

        for (unsigned step = 0; step < 200000; step++) {
                if (n_live > 0 && (rnd() % 100 < 48 || n_live == MAX_LIVE)) {
                        free_one(&h, rnd() % n_live);
                } else {
                        uint64_t size = HEAP_GRANULE * (1 + rnd() % (rnd() % 8 == 0 ? 2048 : 32));
                        uint64_t alignment = HEAP_GRANULE << (rnd() % 8 == 0 ? rnd() % 10 : 0);
                        int r = alloc_one(&h, size, alignment);

                        if (r == -ENOSPC)
                                enospc++;
                        else
                                ASSERT_OK(r);
                }
                if (step % 997 == 0)
                        check(&h);
        }
        check(&h);
        ASSERT_TRUE(enospc > 0);        /* the chunks did fill up: the search and the merges were exercised */

        /* Everything freed: each chunk is one free block again, and a chunk-sized block fits. */
        while (n_live > 0)
                free_one(&h, 0);
        check(&h);
        for (HeapChunk *c = h.chunks; c; c = c->next)
                ASSERT_UEQ(c->used, 0);
        for (int i = 0; i < 4; i++)
                ASSERT_OK(alloc_one(&h, chunk, HEAP_GRANULE));
        ASSERT_ERROR(alloc_one(&h, HEAP_GRANULE, HEAP_GRANULE), ENOSPC);
        while (n_live > 0)
                free_one(&h, 0);
        heap_done(&h);
        printf("random: 200000 steps, %u full\n", enospc);
}

static void test_merge_and_remove(void) {
        PoolHeap h;
        HeapChunk *c;
        uint64_t a, b, d, va;

        heap_init(&h);
        ASSERT_OK(heap_add_chunk(&h, 7, 0x100000, 4 * HEAP_GRANULE, &c));
        ASSERT_OK(heap_alloc(&h, HEAP_GRANULE, HEAP_GRANULE, &a, NULL));
        ASSERT_OK(heap_alloc(&h, HEAP_GRANULE, HEAP_GRANULE, &b, NULL));
        ASSERT_OK(heap_alloc(&h, 2 * HEAP_GRANULE, HEAP_GRANULE, &d, NULL));
        ASSERT_ERROR(heap_alloc(&h, HEAP_GRANULE, HEAP_GRANULE, &va, NULL), ENOSPC);
        /* Free the middle, then its neighbours: a block of the whole chunk must fit again. */
        ASSERT_OK(heap_free(&h, b, NULL, NULL));
        ASSERT_ERROR(heap_free(&h, b, NULL, NULL), ENOENT);
        ASSERT_ERROR(heap_free(&h, d + HEAP_GRANULE, NULL, NULL), ENOENT);      /* inside a block */
        ASSERT_ERROR(heap_alloc(&h, 2 * HEAP_GRANULE, HEAP_GRANULE, &va, NULL), ENOSPC);
        ASSERT_OK(heap_free(&h, a, NULL, NULL));
        ASSERT_OK(heap_free(&h, d, NULL, NULL));
        ASSERT_UEQ(c->used, 0);
        ASSERT_TRUE(c->first && h.bins[__builtin_ctzll(4 * HEAP_GRANULE)] == c->first);
        heap_remove_chunk(&h, c);
        ASSERT_NULL(h.chunks);
        ASSERT_UEQ(h.stats.chunk_bytes, 0);
        for (unsigned i = 0; i < HEAP_BINS; i++)
                ASSERT_NULL(h.bins[i]);

        /* Bad input changes nothing. */
        ASSERT_ERROR(heap_add_chunk(&h, 1, 0x100001, HEAP_GRANULE, NULL), EINVAL);
        ASSERT_ERROR(heap_add_chunk(&h, 1, 0x100000, 0, NULL), EINVAL);
        ASSERT_ERROR(heap_add_chunk(&h, 1, UINT64_MAX - HEAP_GRANULE + 1, 2 * HEAP_GRANULE, NULL), EINVAL);
        ASSERT_ERROR(heap_alloc(&h, 0, HEAP_GRANULE, &va, NULL), EINVAL);
        ASSERT_ERROR(heap_alloc(&h, HEAP_GRANULE, 3 * HEAP_GRANULE, &va, NULL), EINVAL);
        ASSERT_NULL(h.chunks);
        heap_done(&h);
}

/* Every allocation heap_alloc() and heap_add_chunk() make fails once: ENOMEM, and nothing changed. */
static void test_oom(void) {
        unsigned failed = 0;

        for (long n = 0;; n++) {
                PoolHeap h;
                HeapStats before;
                int r;

                n_live = 0;
                heap_init(&h);
                ASSERT_OK(heap_add_chunk(&h, 1, 0x200000, UINT64_C(1) << 20, NULL));
                /* Enough blocks that the table grows while the countdown runs. */
                for (int i = 0; i < 40; i++)
                        ASSERT_OK(alloc_one(&h, HEAP_GRANULE, HEAP_GRANULE << (i % 3)));
                free_one(&h, 3);
                before = h.stats;

                fail_countdown = n;
                for (int i = 0; i < 40; i++) {
                        r = alloc_one(&h, HEAP_GRANULE * (1 + i % 5), HEAP_GRANULE << (i % 4));
                        if (r < 0)
                                break;
                }
                if (r >= 0) {
                        fail_countdown = -1;
                        while (n_live > 0)
                                free_one(&h, 0);
                        heap_done(&h);
                        break;          /* nothing failed: every allocation was tried */
                }
                fail_countdown = -1;
                ASSERT_EQ(r, -ENOMEM);
                failed++;
                /* Whatever succeeded is intact, the failed call left no trace. */
                check(&h);
                ASSERT_TRUE(h.stats.blocks >= before.blocks);
                while (n_live > 0)
                        free_one(&h, 0);
                check(&h);
                ASSERT_UEQ(h.chunks->used, 0);
                heap_done(&h);

                r = 0;
                fail_countdown = 0;
                {
                        PoolHeap g;

                        heap_init(&g);
                        r = heap_add_chunk(&g, 1, 0x200000, HEAP_GRANULE, NULL);
                        fail_countdown = -1;
                        ASSERT_EQ(r, -ENOMEM);
                        ASSERT_NULL(g.chunks);
                        heap_done(&g);
                }
        }
        ASSERT_TRUE(failed > 0);
        printf("oom: %u allocations failed in turn\n", failed);
}

int main(void) {
        test_merge_and_remove();
        test_random();
        test_oom();
        return 0;
}
