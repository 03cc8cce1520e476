/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * svmd_pool: chunks from svmd, blocks in the client (docs/libsvmd.3, "POOLS").
 * The heap (pool-heap.c) carves blocks; this file gets and returns the chunks,
 * holds the lock and keeps the limits.
 */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "svmd-protocol.h"
#include "pool-heap.h"
#include "size-util.h"

#define POOL_CHUNK_DEFAULT (UINT64_C(2) << 20)
#define POOL_CHUNK_GRANULE (UINT64_C(2) << 20)
#define POOL_PAGE UINT64_C(4096)
/* svmd's largest alignment (docs/dbus-api.md, Allocate "alignment"). */
#define POOL_ALIGNMENT_MAX (UINT64_C(1) << 30)

struct svmd_pool {
        pthread_mutex_t lock;
        svmd_client *client;
        uint32_t gpu_id;
        char *domain;
        char *label;
        char **flags;           /* NULL-terminated, or NULL */
        uint32_t *map;
        size_t n_map;
        uint64_t chunk_size, max_bytes, keep_bytes;
        uint64_t idle_bytes;    /* in chunks without a used block */
        uint64_t chunk_allocations, chunk_frees;
        PoolHeap heap;
};

static void strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
}

static int strv_copy(const char *const *l, char ***ret) {
        size_t n = 0;
        char **c;

        *ret = NULL;
        if (!l)
                return 0;
        while (l[n])
                n++;
        c = calloc(n + 1, sizeof(char *));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                c[i] = strdup(l[i]);
                if (!c[i]) {
                        strv_free(c);
                        return -ENOMEM;
                }
        }
        *ret = c;
        return 0;
}

static uint64_t round_up(uint64_t v, uint64_t to) {
        return v + (to - v % to) % to;
}

_public_ int svmd_pool_new(svmd_pool **ret, svmd_client *c, uint32_t gpu_id, const char *domain,
                           const svmd_pool_options *options, svmd_error *error) {
        const svmd_pool_options defaults = { .keep_bytes = 0 };
        const svmd_pool_options *o = options ?: &defaults;
        svmd_pool *p;
        int r;

        if (!ret || !c || !domain)
                return error_setf(error, -EINVAL, NULL, "svmd_pool_new() needs a result pointer, a client and a domain.");
        if (!streq(domain, SVMD_DOMAIN_VRAM) && !streq(domain, SVMD_DOMAIN_GTT))
                return error_setf(error, -EINVAL, SVMD_ERROR_INVALID_ARGS,
                                  "A pool takes domain \"vram\" or \"gtt\", not \"%s\": host and svm memory "
                                  "come from the application's own pages.", domain);
        if (o->chunk_size > (UINT64_C(1) << 40))
                return error_setf(error, -EINVAL, SVMD_ERROR_INVALID_ARGS,
                                  "A chunk size of %" PRIu64 " bytes is over the pool's limit of 1 TiB.",
                                  o->chunk_size);
        if (o->n_map > 0 && !o->map)
                return error_setf(error, -EINVAL, SVMD_ERROR_INVALID_ARGS, "n_map is %zu but map is NULL.", o->n_map);

        p = calloc(1, sizeof(*p));
        if (!p)
                return error_setf(error, -ENOMEM, NULL, "Out of memory.");
        *p = (svmd_pool) {
                .client = c,
                .gpu_id = gpu_id,
                .chunk_size = round_up(o->chunk_size ?: POOL_CHUNK_DEFAULT, POOL_PAGE),
                .max_bytes = o->max_bytes,
                .keep_bytes = o->keep_bytes,
                .n_map = o->n_map,
        };
        heap_init(&p->heap);
        r = pthread_mutex_init(&p->lock, NULL);
        if (r != 0) {
                free(p);
                return error_setf(error, -r, NULL, "Cannot make the pool's lock: %s.", strerror(r));
        }
        p->domain = strdup(domain);
        p->label = strdup(o->label ?: "pool");
        if (!p->domain || !p->label || strv_copy(o->flags, &p->flags) < 0)
                goto oom;
        if (o->n_map > 0) {
                p->map = calloc(o->n_map, sizeof(uint32_t));
                if (!p->map)
                        goto oom;
                memcpy(p->map, o->map, o->n_map * sizeof(uint32_t));
        }
        *ret = p;
        return 0;
oom:
        svmd_pool_free(p);
        return error_setf(error, -ENOMEM, NULL, "Out of memory.");
}

/* Return chunk c, idle, to svmd. On failure it stays in the pool, idle. */
static int chunk_release(svmd_pool *p, HeapChunk *c, svmd_error *error) {
        int r;

        r = svmd_free(p->client, c->id, error);
        if (r < 0)
                return r;
        p->chunk_frees++;
        p->idle_bytes -= c->size;
        heap_remove_chunk(&p->heap, c);
        return 0;
}

/* Free idle chunks while more than keep bytes of them are left. Returns how many were freed. */
static int trim_locked(svmd_pool *p, uint64_t keep, svmd_error *error) {
        int n = 0, r;

        for (HeapChunk *c = p->heap.chunks, *next; c && p->idle_bytes > keep; c = next) {
                next = c->next;
                if (c->used > 0)
                        continue;
                r = chunk_release(p, c, error);
                if (r < 0)
                        return r;
                n++;
        }
        return n;
}

_public_ svmd_pool *svmd_pool_free(svmd_pool *p) {
        if (!p)
                return NULL;
        /* Every chunk goes, blocks still handed out included: the pool is being destroyed. */
        for (HeapChunk *c = p->heap.chunks; c; c = c->next)
                (void) svmd_free(p->client, c->id, NULL);
        heap_done(&p->heap);
        pthread_mutex_destroy(&p->lock);
        strv_free(p->flags);
        free(p->map);
        free(p->label);
        free(p->domain);
        free(p);
        return NULL;
}

/* A new chunk with room for size bytes at alignment. */
static int chunk_add(svmd_pool *p, uint64_t size, uint64_t alignment, svmd_error *error) {
        svmd_allocate_options o = {
                .flags = (const char *const *) p->flags,
                .map = p->map,
                .n_map = p->n_map,
                .label = p->label,
                /* svmd aligns to pages at least: ask only for more. */
                .alignment = alignment > POOL_PAGE ? alignment : 0,
        };
        svmd_allocation a;
        uint64_t chunk = p->chunk_size;
        int r;

        if (size > chunk)
                chunk = round_up(size, POOL_CHUNK_GRANULE);
        if (p->max_bytes > 0 && (chunk > p->max_bytes || p->heap.stats.chunk_bytes > p->max_bytes - chunk))
                return error_setf(error, -ENOSPC, SVMD_ERROR_LIMITS_EXCEEDED,
                                  "The pool holds %s in chunks; a new chunk of %s would pass its max_bytes of %s.",
                                  FORMAT_BYTES(p->heap.stats.chunk_bytes), FORMAT_BYTES(chunk),
                                  FORMAT_BYTES(p->max_bytes));
        r = svmd_allocate(p->client, chunk, p->gpu_id, p->domain, &o, &a, error);
        if (r < 0)
                return r;
        p->chunk_allocations++;
        r = heap_add_chunk(&p->heap, a.id, a.va, chunk, NULL);
        if (r < 0) {
                (void) svmd_free(p->client, a.id, NULL);
                p->chunk_frees++;
                return error_setf(error, r, NULL, "Cannot keep the pool's new chunk: %s.", strerror(-r));
        }
        p->idle_bytes += chunk;
        return 0;
}

/* Account a block carved from chunk c. */
static void note_used(svmd_pool *p, HeapChunk *c, uint64_t size) {
        if (c->used == size)    /* it was idle */
                p->idle_bytes -= c->size;
}

_public_ int svmd_pool_alloc(svmd_pool *p, uint64_t size, uint64_t alignment, svmd_pool_block *ret,
                             svmd_error *error) {
        HeapChunk *c;
        uint64_t va;
        int r;

        if (!p || !ret)
                return error_setf(error, -EINVAL, NULL, "svmd_pool_alloc() needs a pool and a result pointer.");
        if (size == 0)
                return error_setf(error, -EINVAL, SVMD_ERROR_INVALID_ARGS, "A block of 0 bytes is not a block.");
        if (size > (UINT64_C(1) << 48))
                return error_setf(error, -EINVAL, SVMD_ERROR_INVALID_ARGS,
                                  "A block of %" PRIu64 " bytes is larger than any GPU address space.", size);
        if (alignment == 0)
                alignment = HEAP_GRANULE;
        if ((alignment & (alignment - 1)) != 0 || alignment > POOL_ALIGNMENT_MAX)
                return error_setf(error, -EINVAL, SVMD_ERROR_INVALID_ARGS,
                                  "Alignment %" PRIu64 " is not a power of two up to 1 GiB.", alignment);
        if (alignment < HEAP_GRANULE)
                alignment = HEAP_GRANULE;
        size = round_up(size, HEAP_GRANULE);

        pthread_mutex_lock(&p->lock);
        r = heap_alloc(&p->heap, size, alignment, &va, &c);
        if (r == -ENOSPC) {
                r = chunk_add(p, size, alignment, error);
                if (r >= 0)
                        r = heap_alloc(&p->heap, size, alignment, &va, &c);
        }
        if (r >= 0)
                note_used(p, c, size);
        pthread_mutex_unlock(&p->lock);
        if (r == -ENOMEM)
                return error_setf(error, r, NULL, "Out of memory.");
        if (r < 0)
                return r;       /* error set by chunk_add() */

        *ret = (svmd_pool_block) { .va = va, .size = size, .range_id = c->id, .offset = va - c->va };
        return 0;
}

_public_ int svmd_pool_dealloc(svmd_pool *p, uint64_t va, svmd_error *error) {
        HeapChunk *c;
        int r;

        if (!p)
                return error_setf(error, -EINVAL, NULL, "svmd_pool_dealloc() needs a pool.");
        pthread_mutex_lock(&p->lock);
        r = heap_free(&p->heap, va, NULL, &c);
        if (r >= 0 && c->used == 0) {
                p->idle_bytes += c->size;
                /* A Free that fails leaves the chunk idle in the pool; the next trim tries again. */
                if (p->keep_bytes != UINT64_MAX)
                        (void) trim_locked(p, p->keep_bytes, NULL);
        }
        pthread_mutex_unlock(&p->lock);
        if (r < 0)
                return error_setf(error, r, NULL, "No block of this pool starts at 0x%" PRIx64 ".", va);
        return 0;
}

_public_ int svmd_pool_trim(svmd_pool *p, uint64_t keep_bytes, svmd_error *error) {
        int r;

        if (!p)
                return error_setf(error, -EINVAL, NULL, "svmd_pool_trim() needs a pool.");
        pthread_mutex_lock(&p->lock);
        r = trim_locked(p, keep_bytes, error);
        pthread_mutex_unlock(&p->lock);
        return r;
}

_public_ int svmd_pool_get_stats(svmd_pool *p, svmd_pool_stats *ret) {
        if (!p || !ret)
                return -EINVAL;
        pthread_mutex_lock(&p->lock);
        *ret = (svmd_pool_stats) {
                .chunks = p->heap.stats.chunks,
                .chunk_bytes = p->heap.stats.chunk_bytes,
                .used_bytes = p->heap.stats.used_bytes,
                .blocks = p->heap.stats.blocks,
                .chunk_allocations = p->chunk_allocations,
                .chunk_frees = p->chunk_frees,
        };
        pthread_mutex_unlock(&p->lock);
        return 0;
}
