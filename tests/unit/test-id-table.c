/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "id-table.h"
#include "macro.h"
#include "unit-assert.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(IdTable *, id_table_free);

/* Values are never dereferenced; any non-NULL pointer derived from the id will do. */
#define VALUE(id) ((void *) (uintptr_t) ((id) * 2 + 1))

static IdTable *table_new(void) {
        IdTable *t = NULL;

        ASSERT_RET(id_table_new(&t), 0);
        return t;
}

static void test_sequence(void) {
        enum { PUT, GET, REMOVE };
        static const struct {
                int op;
                uint64_t id;
                int ret;       /* PUT: return value; GET/REMOVE: 1 if present */
                uint64_t size; /* afterwards */
        } table[] = {
                { GET, 1, 0, 0 },
                { REMOVE, 1, 0, 0 },
                { PUT, 1, 0, 1 },
                { PUT, 1, -EEXIST, 1 },
                { GET, 1, 1, 1 },
                { PUT, 0, -EINVAL, 1 },
                { GET, 0, 0, 1 },
                { REMOVE, 0, 0, 1 },
                { PUT, UINT64_MAX, 0, 2 },
                { PUT, 2, 0, 3 },
                { GET, UINT64_MAX, 1, 3 },
                { REMOVE, 1, 1, 2 },
                { REMOVE, 1, 0, 2 },
                { GET, 1, 0, 2 },
                { GET, 2, 1, 2 },
                { PUT, 1, 0, 3 },
                { REMOVE, UINT64_MAX, 1, 2 },
                { REMOVE, 2, 1, 1 },
                { REMOVE, 1, 1, 0 },
        };
        _cleanup_(id_table_freep) IdTable *t = table_new();

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                switch (table[i].op) {
                case PUT:
                        ASSERT_RET(id_table_put(t, table[i].id, VALUE(table[i].id)), table[i].ret);
                        break;
                case GET:
                        ASSERT_UEQ(id_table_get(t, table[i].id), table[i].ret ? VALUE(table[i].id) : NULL);
                        break;
                case REMOVE:
                        ASSERT_UEQ(id_table_remove(t, table[i].id), table[i].ret ? VALUE(table[i].id) : NULL);
                        break;
                }
                ASSERT_UEQ(id_table_size(t), table[i].size);
        }

        ASSERT_RET(id_table_put(t, 5, NULL), -EINVAL);
        ASSERT_TRUE(!id_table_free(NULL));
        ASSERT_TRUE(!id_table_get(NULL, 1));
        ASSERT_UEQ(id_table_size(NULL), 0);
}

/* Sequential ids as the daemon's counter makes them: grow to many, shrink back to the minimum. */
static void test_grow_shrink(void) {
        _cleanup_(id_table_freep) IdTable *t = table_new();
        size_t min_memory = id_table_memory(t);
        const uint64_t n = 100000;

        for (uint64_t id = 1; id <= n; id++)
                ASSERT_RET(id_table_put(t, id, VALUE(id)), 0);
        ASSERT_UEQ(id_table_size(t), n);
        ASSERT_TRUE(id_table_memory(t) > min_memory);

        for (uint64_t id = 1; id <= n; id++)
                ASSERT_UEQ(id_table_get(t, id), VALUE(id));
        ASSERT_TRUE(!id_table_get(t, n + 1));

        for (uint64_t id = 1; id <= n; id += 2)
                ASSERT_UEQ(id_table_remove(t, id), VALUE(id));
        for (uint64_t id = 1; id <= n; id++)
                ASSERT_UEQ(id_table_get(t, id), id % 2 == 0 ? VALUE(id) : NULL);

        for (uint64_t id = 2; id <= n; id += 2)
                ASSERT_UEQ(id_table_remove(t, id), VALUE(id));
        ASSERT_UEQ(id_table_size(t), 0);
        ASSERT_UEQ(id_table_memory(t), min_memory);
}

static uint64_t rng_next(uint64_t *state) {
        uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

/* Model slot i stands for one id: small ones dense, others spread over 64 bits. */
static uint64_t model_id(size_t i) {
        uint64_t s = i;

        return i < 3000 ? i + 1 : rng_next(&s) | 1;
}

/*
 * Random put/get/remove against a presence array; small tables and dense ids make long probe
 * clusters, which is where backward-shift deletion can go wrong.
 */
static void test_random(void) {
        static const uint64_t seeds[] = { 1, 7, 0xfeedface };
        enum { N = 4000 };

        for (size_t k = 0; k < ELEMENTSOF(seeds); k++) {
                _cleanup_(id_table_freep) IdTable *t = table_new();
                _cleanup_free_ bool *present = calloc(N, sizeof(bool));
                uint64_t rng = seeds[k], size = 0;
                const unsigned ops = 200000;

                ASSERT_TRUE(present);
                printf("random: seed %" PRIu64 ", %u ops\n", seeds[k], ops);

                for (unsigned op = 0; op < ops; op++) {
                        /* Alternate growing and shrinking phases so resizes happen both ways. */
                        unsigned p = rng_next(&rng) % 100, put = (op / 20000) % 2 == 0 ? 55 : 35;
                        size_t i = rng_next(&rng) % N;
                        uint64_t id = model_id(i);

                        if (p < put) {
                                ASSERT_RET(id_table_put(t, id, VALUE(id)), present[i] ? -EEXIST : 0);
                                if (!present[i])
                                        size++;
                                present[i] = true;
                        } else if (p < 90) {
                                ASSERT_UEQ(id_table_remove(t, id), present[i] ? VALUE(id) : NULL);
                                if (present[i])
                                        size--;
                                present[i] = false;
                        } else
                                ASSERT_UEQ(id_table_get(t, id), present[i] ? VALUE(id) : NULL);
                        ASSERT_UEQ(id_table_size(t), size);

                        if (op % 9973 == 0) {
                                size_t state = 0, seen = 0;
                                uint64_t got_id;
                                void *got;

                                for (size_t j = 0; j < N; j++) {
                                        uint64_t jd = model_id(j);

                                        ASSERT_UEQ(id_table_get(t, jd), present[j] ? VALUE(jd) : NULL);
                                }
                                while (id_table_iterate(t, &state, &got_id, &got)) {
                                        ASSERT_UEQ(got, VALUE(got_id));
                                        seen++;
                                }
                                ASSERT_UEQ(seen, size);
                        }
                }
        }
}

/* Draining with steal_first returns every entry once, also when puts interleave. */
static void test_steal_first(void) {
        _cleanup_(id_table_freep) IdTable *t = table_new();
        _cleanup_free_ bool *seen = calloc(20001, sizeof(bool));
        uint64_t id, next = 10001;
        size_t n = 0;
        void *v;

        ASSERT_TRUE(seen);
        for (id = 1; id <= 10000; id++)
                ASSERT_RET(id_table_put(t, id, VALUE(id)), 0);

        while ((v = id_table_steal_first(t, &id))) {
                ASSERT_UEQ(v, VALUE(id));
                ASSERT_TRUE(id >= 1 && id <= 20000);
                ASSERT_TRUE(!seen[id]);
                seen[id] = true;
                n++;
                if (n % 3 == 0 && next <= 20000) {
                        ASSERT_RET(id_table_put(t, next, VALUE(next)), 0);
                        next++;
                }
        }
        ASSERT_UEQ(n, next - 1);
        ASSERT_UEQ(id_table_size(t), 0);
        ASSERT_TRUE(!id_table_steal_first(t, &id));
}

static uint64_t now_ns(void) {
        struct timespec ts;

        ASSERT_RET(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
        return (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
}

/* Figures only: cost per operation and bytes per entry at 10^6 entries. */
static void test_scale(void) {
        _cleanup_(id_table_freep) IdTable *t = table_new();
        const uint64_t n = 1000000;
        uint64_t rng = 3, t0, t_put, t_get, t_remove;

        t0 = now_ns();
        for (uint64_t id = 1; id <= n; id++)
                ASSERT_RET(id_table_put(t, id, VALUE(id)), 0);
        t_put = now_ns() - t0;

        t0 = now_ns();
        for (uint64_t j = 0; j < n; j++) {
                uint64_t id = rng_next(&rng) % n + 1;
                ASSERT_UEQ(id_table_get(t, id), VALUE(id));
        }
        t_get = now_ns() - t0;

        printf("scale: %" PRIu64 " entries, %.1f bytes/entry; put %.0f ns (with resizes), "
               "random get %.0f ns",
               n, (double) id_table_memory(t) / (double) n, (double) t_put / (double) n,
               (double) t_get / (double) n);

        t0 = now_ns();
        for (uint64_t id = 1; id <= n; id++)
                ASSERT_UEQ(id_table_remove(t, id), VALUE(id));
        t_remove = now_ns() - t0;
        printf(", remove %.0f ns (with shrinks)\n", (double) t_remove / (double) n);
}

int main(void) {
        setvbuf(stdout, NULL, _IOLBF, 0);

        test_sequence();
        test_grow_shrink();
        test_random();
        test_steal_first();
        test_scale();
        return 0;
}
