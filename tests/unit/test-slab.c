/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "slab.h"
#include "unit-assert.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(Slab *, slab_free);

#define OBJECT_SIZE 200

static void test_args(void) {
        Slab *s = NULL;

        ASSERT_RET(slab_new(&s, 0), -EINVAL);
        ASSERT_RET(slab_new(&s, SLAB_BLOCK_SIZE), -EINVAL);
        ASSERT_RET(slab_new(&s, 1), 0);
        slab_put(s, NULL);
        ASSERT_UEQ(slab_n_objects(s), 0);
        s = slab_free(s);
}

/*
 * Objects are zeroed, distinct and do not overlap: each is filled with its own pattern, which must
 * survive every other object's life. Freed objects are reused; emptied blocks are unmapped (one
 * spare aside), so memory follows the live count down.
 */
static void test_fill_and_drain(void) {
        enum { N = 5000 };
        _cleanup_(slab_freep) Slab *s = NULL;
        _cleanup_free_ uint8_t **p = calloc(N, sizeof(uint8_t *));
        size_t peak;

        ASSERT_NOT_NULL(p);
        ASSERT_RET(slab_new(&s, OBJECT_SIZE), 0);

        for (size_t i = 0; i < N; i++) {
                p[i] = slab_alloc0(s);
                ASSERT_NOT_NULL(p[i]);
                ASSERT_UEQ((uintptr_t) p[i] % sizeof(void *), 0);
                for (size_t k = 0; k < OBJECT_SIZE; k++)
                        ASSERT_UEQ(p[i][k], 0);
                memset(p[i], (int) (i % 251) + 1, OBJECT_SIZE);
        }
        ASSERT_UEQ(slab_n_objects(s), N);
        peak = slab_memory(s);
#if !defined(__SANITIZE_ADDRESS__)
        /* No per-object header: the blocks hold the objects and little else. */
        ASSERT_TRUE(peak <= (size_t) N * OBJECT_SIZE * 105 / 100 + 2 * SLAB_BLOCK_SIZE);
#endif

        /* Every other object goes, then comes back: reuse, not growth. */
        for (size_t i = 0; i < N; i += 2) {
                slab_put(s, p[i]);
                p[i] = NULL;
        }
        for (size_t i = 0; i < N; i += 2) {
                p[i] = slab_alloc0(s);
                ASSERT_NOT_NULL(p[i]);
                for (size_t k = 0; k < OBJECT_SIZE; k++)
                        ASSERT_UEQ(p[i][k], 0);
                memset(p[i], (int) (i % 251) + 1, OBJECT_SIZE);
        }
        ASSERT_UEQ(slab_memory(s), peak);
        for (size_t i = 0; i < N; i++)
                for (size_t k = 0; k < OBJECT_SIZE; k++)
                        ASSERT_UEQ(p[i][k], (i % 251) + 1);

        for (size_t i = 0; i < N; i++)
                slab_put(s, p[i]);
        ASSERT_UEQ(slab_n_objects(s), 0);
#if !defined(__SANITIZE_ADDRESS__)
        ASSERT_TRUE(slab_memory(s) <= SLAB_BLOCK_SIZE);
#endif
}

/* One object allocated and freed in turn at an empty slab: the spare block serves, nothing grows. */
static void test_churn(void) {
        _cleanup_(slab_freep) Slab *s = NULL;

        ASSERT_RET(slab_new(&s, OBJECT_SIZE), 0);
        for (unsigned i = 0; i < 10000; i++) {
                void *p = slab_alloc0(s);

                ASSERT_NOT_NULL(p);
                slab_put(s, p);
        }
        ASSERT_UEQ(slab_n_objects(s), 0);
        ASSERT_TRUE(slab_memory(s) <= SLAB_BLOCK_SIZE);
}

int main(void) {
        test_args();
        test_fill_and_drain();
        test_churn();
        return 0;
}
