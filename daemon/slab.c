/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "list.h"
#include "macro.h"
#include "slab.h"

#if defined(__SANITIZE_ADDRESS__)
#define SLAB_USE_MALLOC 1
#else
#define SLAB_USE_MALLOC 0
#endif

typedef struct SlabFree {
        struct SlabFree *next;
} SlabFree;

/* At the start of each block, which is aligned to its size: an object finds its block by masking. */
typedef struct SlabBlock {
        struct SlabBlock *prev, *next;  /* Slab.partial: blocks with room */
        SlabFree *free;                 /* objects given back */
        uint32_t n_used;
        uint32_t n_carved;              /* objects handed out at least once; the rest is untouched */
} SlabBlock;

struct Slab {
        size_t object_size;
        uint32_t per_block;
        SlabBlock *partial;     /* blocks with room, the one allocations come from first */
        SlabBlock *spare;       /* one empty block kept, so that churn at a block's edge maps nothing */
        size_t n_blocks;
        size_t n_objects;
};

/* Objects start after the block's header; they are aligned to 8 bytes (sizes are rounded up to 8). */
#define SLAB_HEADER_SIZE ALIGN_POW2(sizeof(SlabBlock), (size_t) 16)

int slab_new(Slab **ret, size_t object_size) {
        Slab *s;

        assert(ret);
        if (object_size == 0 || object_size > SLAB_BLOCK_SIZE / 4)
                return -EINVAL;
        object_size = MAX(ALIGN_POW2(object_size, sizeof(void *)), sizeof(SlabFree));

        s = malloc(sizeof(Slab));
        if (!s)
                return -ENOMEM;
        *s = (Slab) {
                .object_size = object_size,
                .per_block = (uint32_t) ((SLAB_BLOCK_SIZE - SLAB_HEADER_SIZE) / object_size),
        };
        *ret = s;
        return 0;
}

static SlabBlock *block_of(const void *p) {
        return (SlabBlock *) ((uintptr_t) p & ~(uintptr_t) (SLAB_BLOCK_SIZE - 1));
}

/* SLAB_BLOCK_SIZE bytes aligned to their size: map twice as much and give back the rest. */
static SlabBlock *block_map(void) {
        uint8_t *p, *a;

        p = mmap(NULL, 2 * SLAB_BLOCK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return NULL;
        a = (uint8_t *) ALIGN_POW2((uintptr_t) p, SLAB_BLOCK_SIZE);
        if (a > p)
                (void) munmap(p, (size_t) (a - p));
        if (a + SLAB_BLOCK_SIZE < p + 2 * SLAB_BLOCK_SIZE)
                (void) munmap(a + SLAB_BLOCK_SIZE, (size_t) (p + 2 * SLAB_BLOCK_SIZE - (a + SLAB_BLOCK_SIZE)));
        return (SlabBlock *) a; /* zero-filled: an empty block */
}

static void partial_link(Slab *s, SlabBlock *b) {
        LIST_PREPEND(s->partial, b, prev, next);
}

static void partial_unlink(Slab *s, SlabBlock *b) {
        LIST_REMOVE(s->partial, b, prev, next);
}

Slab *slab_free(Slab *s) {
        SlabBlock *b;

        if (!s)
                return NULL;
        /* Full blocks are on no list: objects still out are the caller's leak, as with malloc. */
        while ((b = s->partial)) {
                partial_unlink(s, b);
                (void) munmap(b, SLAB_BLOCK_SIZE);
        }
        if (s->spare)
                (void) munmap(s->spare, SLAB_BLOCK_SIZE);
        free(s);
        return NULL;
}

void *slab_alloc0(Slab *s) {
        SlabBlock *b;
        void *p;

        assert(s);

        if (SLAB_USE_MALLOC) {
                p = calloc(1, s->object_size);
                if (p)
                        s->n_objects++;
                return p;
        }

        b = s->partial;
        if (!b) {
                b = TAKE_PTR(s->spare);
                if (!b) {
                        b = block_map();
                        if (!b) {
                                errno = ENOMEM;
                                return NULL;
                        }
                        s->n_blocks++;
                }
                partial_link(s, b);
        }

        if (b->free) {
                p = b->free;
                b->free = b->free->next;
        } else {
                assert(b->n_carved < s->per_block);
                p = (uint8_t *) b + SLAB_HEADER_SIZE + (size_t) b->n_carved++ * s->object_size;
        }
        if (++b->n_used == s->per_block)
                partial_unlink(s, b);
        s->n_objects++;
        return memset(p, 0, s->object_size);
}

void slab_put(Slab *s, void *p) {
        SlabBlock *b;
        SlabFree *f = p;

        if (!p)
                return;
        assert(s->n_objects > 0);
        s->n_objects--;

        if (SLAB_USE_MALLOC) {
                free(p);
                return;
        }

        b = block_of(p);
        if (b->n_used == s->per_block)
                partial_link(s, b);
        f->next = b->free;
        b->free = f;
        if (--b->n_used > 0)
                return;

        /* Empty: keep it as the spare (an Allocate and Free in turn map nothing), or give it back. */
        partial_unlink(s, b);
        if (!s->spare) {
                *b = (SlabBlock) {};
                s->spare = b;
                return;
        }
        (void) munmap(b, SLAB_BLOCK_SIZE);
        s->n_blocks--;
}

size_t slab_n_objects(const Slab *s) {
        return s ? s->n_objects : 0;
}

size_t slab_memory(const Slab *s) {
        return s ? s->n_blocks * SLAB_BLOCK_SIZE : 0;
}
