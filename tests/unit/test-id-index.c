/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "id-index.h"
#include "macro.h"
#include "unit-assert.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(IdIndex *, id_index_free);

typedef struct Object {
        char pad[24];           /* the id need not come first */
        uint64_t id;
} Object;

static IdIndex *index_new(void) {
        IdIndex *x = NULL;

        ASSERT_RET(id_index_new(&x, offsetof(Object, id)), 0);
        return x;
}

static void test_sequence(void) {
        _cleanup_(id_index_freep) IdIndex *x = index_new();
        static Object o[8];

        for (size_t i = 0; i < ELEMENTSOF(o); i++)
                o[i].id = i;

        ASSERT_TRUE(!id_index_get(x, 1) && !id_index_from(x, 0) && !id_index_remove(x, 1));
        ASSERT_RET(id_index_put(x, &o[0]), -EINVAL); /* id 0 */
        ASSERT_RET(id_index_put(x, NULL), -EINVAL);
        ASSERT_RET(id_index_put(x, (char *) &o[1] + 1), -EINVAL); /* odd address */
        o[7].id = UINT64_C(1) << 63;
        ASSERT_RET(id_index_put(x, &o[7]), -EINVAL);

        /* In order: appends. Then 2 out of order, between 1 and 3. */
        ASSERT_RET(id_index_put(x, &o[1]), 0);
        ASSERT_RET(id_index_put(x, &o[3]), 0);
        ASSERT_RET(id_index_put(x, &o[5]), 0);
        ASSERT_RET(id_index_put(x, &o[2]), 0);
        ASSERT_RET(id_index_put(x, &o[2]), -EEXIST);
        ASSERT_UEQ(id_index_size(x), 4);
        ASSERT_RET(id_index_verify(x), 0);

        ASSERT_TRUE(id_index_get(x, 2) == &o[2] && id_index_get(x, 5) == &o[5] && !id_index_get(x, 4));
        ASSERT_TRUE(id_index_from(x, 0) == &o[1] && id_index_from(x, 4) == &o[5] && !id_index_from(x, 6));
        ASSERT_TRUE(id_index_next(x, &o[1]) == &o[2] && id_index_next(x, &o[3]) == &o[5] && !id_index_next(x, &o[5]));

        /* A removed entry in the middle is skipped; its id can come back. */
        ASSERT_TRUE(id_index_remove(x, 3) == &o[3] && !id_index_remove(x, 3));
        ASSERT_TRUE(!id_index_get(x, 3) && id_index_from(x, 3) == &o[5] && id_index_next(x, &o[2]) == &o[5]);
        ASSERT_RET(id_index_verify(x), 0);
        ASSERT_RET(id_index_put(x, &o[4]), 0); /* takes the place of 3's marker */
        ASSERT_RET(id_index_put(x, &o[3]), 0);
        ASSERT_RET(id_index_verify(x), 0);
        ASSERT_TRUE(id_index_next(x, &o[2]) == &o[3] && id_index_next(x, &o[3]) == &o[4]);

        for (uint64_t id = 1; id <= 5; id++)
                ASSERT_TRUE(id_index_remove(x, id) == &o[id]);
        ASSERT_UEQ(id_index_size(x), 0);
        ASSERT_TRUE(!id_index_from(x, 0));
        ASSERT_RET(id_index_verify(x), 0);
}

static uint64_t rng_next(uint64_t *s) {
        uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

/*
 * Against a reference: objects with ids 1..N, mostly appended as a counter does, some put back out
 * of order, removed at random and in runs (so that compaction and marker reuse happen); every
 * lookup and walk compared with the reference after each step.
 */
static void test_random(void) {
        enum { N = 20000 };
        _cleanup_(id_index_freep) IdIndex *x = index_new();
        _cleanup_free_ Object *o = calloc(N + 1, sizeof(Object));
        _cleanup_free_ bool *in = calloc(N + 1, sizeof(bool));
        uint64_t seed = 42, next = 1;
        size_t live = 0;

        ASSERT_NOT_NULL(o);
        ASSERT_NOT_NULL(in);
        for (uint64_t id = 1; id <= N; id++)
                o[id].id = id;

        for (unsigned step = 0; step < 200000; step++) {
                uint64_t r = rng_next(&seed), id = 1 + rng_next(&seed) % N;

                switch (r % 8) {
                case 0 ... 2: /* the counter, past ids restored meanwhile */
                        while (next <= N && in[next])
                                next++;
                        if (next <= N) {
                                ASSERT_RET(id_index_put(x, &o[next]), 0);
                                in[next++] = true;
                                live++;
                        }
                        break;
                case 3: /* restored out of order */
                        ASSERT_RET(id_index_put(x, &o[id]), in[id] ? -EEXIST : 0);
                        live += !in[id];
                        in[id] = true;
                        break;
                case 4 ... 5:
                        ASSERT_TRUE(id_index_remove(x, id) == (in[id] ? &o[id] : NULL));
                        live -= in[id];
                        in[id] = false;
                        break;
                case 6: /* a run of removals: a client going away */
                        for (uint64_t k = id; k < id + 300 && k <= N; k++) {
                                ASSERT_TRUE(id_index_remove(x, k) == (in[k] ? &o[k] : NULL));
                                live -= in[k];
                                in[k] = false;
                        }
                        break;
                default: {
                        uint64_t e = id;
                        Object *f;

                        while (e <= N && !in[e])
                                e++;
                        f = id_index_from(x, id);
                        ASSERT_TRUE(f == (e <= N ? &o[e] : NULL));
                        ASSERT_TRUE(id_index_get(x, id) == (in[id] ? &o[id] : NULL));
                        /* Walk on a little, as a page of ListRanges does. */
                        for (unsigned k = 0; f && k < 20; k++) {
                                Object *g = id_index_next(x, f);

                                e = f->id + 1;
                                while (e <= N && !in[e])
                                        e++;
                                ASSERT_TRUE(g == (e <= N ? &o[e] : NULL));
                                f = g;
                        }
                        break;
                }
                }
                ASSERT_UEQ(id_index_size(x), live);
                if (step % 1000 == 0)
                        ASSERT_RET(id_index_verify(x), 0);
        }
        ASSERT_RET(id_index_verify(x), 0);
        /* The memory follows the live entries down (compaction gives it back). */
        for (uint64_t id = 1; id <= N; id++)
                (void) id_index_remove(x, id);
        ASSERT_UEQ(id_index_size(x), 0);
        ASSERT_TRUE(id_index_memory(x) <= 1024);
}

/* A million ids from a counter: 8 bytes per entry, plus slack up to the next power of two. */
static void test_memory(void) {
        enum { N = 1000000 };
        _cleanup_(id_index_freep) IdIndex *x = index_new();
        _cleanup_free_ Object *o = calloc(N + 1, sizeof(Object));

        ASSERT_NOT_NULL(o);
        for (uint64_t id = 1; id <= N; id++) {
                o[id].id = id;
                ASSERT_RET(id_index_put(x, &o[id]), 0);
        }
        ASSERT_TRUE(id_index_memory(x) <= 8 * ((size_t) 1 << 20) + 64);
        for (uint64_t id = 1; id <= N; id++)
                ASSERT_TRUE(id_index_get(x, id) == &o[id]);
        ASSERT_RET(id_index_verify(x), 0);
}

int main(void) {
        test_sequence();
        test_random();
        test_memory();
        return 0;
}
