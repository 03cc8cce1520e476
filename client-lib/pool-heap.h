/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The sub-allocator under svmd_pool (pool.c): blocks carved from chunks of
 * virtual addresses. It knows nothing of svmd; pool.c gets chunks from svmd and
 * hands them to a heap. Not thread-safe (pool.c holds the lock).
 *
 * Each chunk is one list of blocks in address order, free and used alike, with
 * neighbours merged when they are both free. Free blocks also sit in one of 64
 * bins by the position of their size's highest bit, so a search starts at the
 * first bin whose blocks may fit. Used blocks are found by address in an open
 * addressing table. Sizes and addresses are multiples of HEAP_GRANULE.
 *
 * Every call that can fail changes nothing when it fails.
 */

#include <stdbool.h>
#include <stdint.h>

#define HEAP_GRANULE UINT64_C(256)
#define HEAP_BINS 64

typedef struct HeapBlock HeapBlock;
typedef struct HeapChunk HeapChunk;

struct HeapChunk {
        uint64_t id;            /* the caller's name for it (an svmd range id) */
        uint64_t va, size;
        uint64_t used;          /* bytes in used blocks */
        HeapBlock *first;
        HeapChunk *prev, *next;
};

typedef struct HeapStats {
        uint64_t chunks, chunk_bytes, used_bytes, blocks;
} HeapStats;

typedef struct PoolHeap {
        HeapChunk *chunks;
        HeapBlock *bins[HEAP_BINS];
        HeapBlock *spare;       /* unused block structs, linked by next */
        HeapBlock **table;      /* used blocks by va; NULL: empty slot */
        uint64_t table_size;    /* a power of two, or 0 */
        HeapStats stats;
} PoolHeap;

void heap_init(PoolHeap *h);
/* Frees the heap's memory (not the chunks': they are the caller's). */
void heap_done(PoolHeap *h);

/* Add a chunk of size bytes at va, all free. -EINVAL: va or size not granule-aligned, size 0. */
int heap_add_chunk(PoolHeap *h, uint64_t id, uint64_t va, uint64_t size, HeapChunk **ret);
/* Remove chunk c, which must be idle (used == 0). */
void heap_remove_chunk(PoolHeap *h, HeapChunk *c);

/*
 * A used block of size bytes (a granule multiple) at an address aligned to alignment (a power of
 * two ≥ the granule). -ENOSPC: no free block fits; -ENOMEM.
 */
int heap_alloc(PoolHeap *h, uint64_t size, uint64_t alignment, uint64_t *ret_va, HeapChunk **ret_chunk);
/* Free the used block at va; *ret_size its size. -ENOENT: no used block starts at va. */
int heap_free(PoolHeap *h, uint64_t va, uint64_t *ret_size, HeapChunk **ret_chunk);
