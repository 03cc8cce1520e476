/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * libsvmd's pools against a running svmd (under svmd-harness, pool-test.conf: uid 0 may hold
 * 16 MiB of VRAM): chunks are ranges svmd lists and charges, blocks stay in the client, idle
 * chunks go back, the quota and max_bytes stop growth without changing anything, eight threads
 * share one pool without two blocks ever overlapping, and a client that dies leaves nothing.
 * Only <svmd/svmd.h> is used, as an application would.
 */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <svmd/svmd.h>

#include "macro.h"
#include "svmd-assert.h"
#include "unit-assert.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)

static uint32_t gpu;

static svmd_client *connect_client(void) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_client *c = NULL;

        ASSERT_SVMD_OK(svmd_client_new(&c, NULL, NULL, 0, &e), &e);
        return c;
}

static svmd_usage usage(svmd_client *c) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_usage u;

        ASSERT_SVMD_OK(svmd_get_usage(c, NULL, &u, &e), &e);
        return u;
}

static void expect_error(int r, svmd_error *e, int err, const char *name) {
        ASSERT_EQ(r, -err);
        ASSERT_NOT_NULL(e->name);
        if (name)
                ASSERT_STREQ(e->name, name);
        ASSERT_TRUE(e->message && strlen(e->message) > 0);
        fprintf(stderr, "   expected failure: %s: %s\n", e->name, e->message);
        svmd_error_free(e);
}

static void test_chunks_are_ranges(svmd_client *c) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_pool_block b[1000];
        svmd_pool_stats s;
        svmd_range_info info;
        svmd_pool *p = NULL;

        ASSERT_SVMD_OK(svmd_pool_new(&p, c, gpu, "vram", NULL, &e), &e);
        ASSERT_OK(svmd_pool_get_stats(p, &s));
        ASSERT_UEQ(s.chunks, 0);        /* nothing until the first block */
        ASSERT_UEQ(usage(c).ranges, 0);

        for (size_t i = 0; i < ELEMENTSOF(b); i++) {
                ASSERT_SVMD_OK(svmd_pool_alloc(p, 4 * KiB, 0, &b[i], &e), &e);
                ASSERT_UEQ(b[i].size, 4 * KiB);
                ASSERT_UEQ(b[i].va % 256, 0);
        }
        /* 1000 × 4 KiB in 2 MiB chunks: two chunks, two Allocate calls, the rest in the client. */
        ASSERT_OK(svmd_pool_get_stats(p, &s));
        ASSERT_UEQ(s.chunks, 2);
        ASSERT_UEQ(s.chunk_bytes, 4 * MiB);
        ASSERT_UEQ(s.used_bytes, 1000 * 4 * KiB);
        ASSERT_UEQ(s.blocks, 1000);
        ASSERT_UEQ(s.chunk_allocations, 2);
        ASSERT_UEQ(usage(c).ranges, 2);
        ASSERT_UEQ(usage(c).vram, 4 * MiB);

        /* Each block lies inside the range svmd says its chunk is. */
        for (size_t i = 0; i < ELEMENTSOF(b); i += 97) {
                _cleanup_free_ svmd_holder *holders = NULL;
                size_t n_holders;

                ASSERT_SVMD_OK(svmd_get_range(c, b[i].range_id, &info, &holders, &n_holders, &e), &e);
                ASSERT_UEQ(info.range.va + b[i].offset, b[i].va);
                ASSERT_TRUE(b[i].offset + b[i].size <= info.range.size);
                ASSERT_STREQ(info.range.label, "pool");
        }

        /* A block larger than a chunk gets a chunk of its own, rounded to 2 MiB. */
        {
                svmd_pool_block big;

                ASSERT_SVMD_OK(svmd_pool_alloc(p, 5 * MiB + 1, 64 * KiB, &big, &e), &e);
                ASSERT_UEQ(big.va % (64 * KiB), 0);
                ASSERT_UEQ(big.offset, 0);
                ASSERT_UEQ(usage(c).vram, 4 * MiB + 6 * MiB);
                ASSERT_SVMD_OK(svmd_pool_dealloc(p, big.va, &e), &e);
                ASSERT_UEQ(usage(c).vram, 4 * MiB);   /* idle beyond keep_bytes 0: returned at once */
        }

        /* Bad input changes nothing. */
        expect_error(svmd_pool_alloc(p, 0, 0, &b[0], &e), &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        expect_error(svmd_pool_alloc(p, 4 * KiB, 3 * 256, &b[0], &e), &e, EINVAL, NULL);
        expect_error(svmd_pool_alloc(p, UINT64_MAX, 0, &b[0], &e), &e, EINVAL, NULL);
        expect_error(svmd_pool_dealloc(p, b[1].va + 256, &e), &e, ENOENT, NULL);
        ASSERT_OK(svmd_pool_get_stats(p, &s));
        ASSERT_UEQ(s.blocks, 1000);

        /* Give everything back: the chunks go as they become idle. */
        for (size_t i = 0; i < ELEMENTSOF(b); i++)
                ASSERT_SVMD_OK(svmd_pool_dealloc(p, b[i].va, &e), &e);
        expect_error(svmd_pool_dealloc(p, b[0].va, &e), &e, ENOENT, NULL);
        ASSERT_OK(svmd_pool_get_stats(p, &s));
        ASSERT_UEQ(s.chunks, 0);
        ASSERT_UEQ(s.chunk_frees, 3);
        ASSERT_UEQ(usage(c).ranges, 0);
        svmd_pool_free(p);
        printf("chunks are ranges: ok\n");
}

static void test_keep_and_trim(svmd_client *c) {
        svmd_pool_options o = { .chunk_size = 1 * MiB, .keep_bytes = UINT64_MAX, .label = "trim-me" };
        svmd_error e = SVMD_ERROR_NULL;
        svmd_pool_block b[3];
        svmd_pool *p = NULL;

        ASSERT_SVMD_OK(svmd_pool_new(&p, c, gpu, "vram", &o, &e), &e);
        for (size_t i = 0; i < ELEMENTSOF(b); i++)
                ASSERT_SVMD_OK(svmd_pool_alloc(p, 1 * MiB, 0, &b[i], &e), &e);
        ASSERT_UEQ(usage(c).ranges, 3);
        for (size_t i = 0; i < ELEMENTSOF(b); i++)
                ASSERT_SVMD_OK(svmd_pool_dealloc(p, b[i].va, &e), &e);
        ASSERT_UEQ(usage(c).ranges, 3);         /* keep_bytes UINT64_MAX: idle chunks stay */
        /* A block reuses an idle chunk: no new range. */
        ASSERT_SVMD_OK(svmd_pool_alloc(p, 512 * KiB, 0, &b[0], &e), &e);
        ASSERT_UEQ(usage(c).ranges, 3);
        ASSERT_EQ(svmd_pool_trim(p, 1 * MiB, &e), 1);   /* two idle, keep one */
        ASSERT_UEQ(usage(c).ranges, 2);
        ASSERT_EQ(svmd_pool_trim(p, 0, &e), 1);
        ASSERT_UEQ(usage(c).ranges, 1);         /* the chunk in use stays */
        ASSERT_EQ(svmd_pool_trim(p, 0, &e), 0);
        /* Destroying the pool frees chunks with blocks still out. */
        svmd_pool_free(p);
        ASSERT_UEQ(usage(c).ranges, 0);
        printf("keep and trim: ok\n");
}

static void test_limits(svmd_client *c) {
        svmd_pool_options o = { .max_bytes = 4 * MiB };
        svmd_error e = SVMD_ERROR_NULL;
        svmd_pool_block b[9], extra;
        svmd_pool_stats s;
        svmd_pool *p = NULL;

        expect_error(svmd_pool_new(&p, c, gpu, "host", NULL, &e), &e, EINVAL, "org.freedesktop.DBus.Error.InvalidArgs");
        ASSERT_NULL(p);

        /* max_bytes: two chunks, the third is refused before svmd is asked. */
        ASSERT_SVMD_OK(svmd_pool_new(&p, c, gpu, "vram", &o, &e), &e);
        ASSERT_SVMD_OK(svmd_pool_alloc(p, 2 * MiB, 0, &b[0], &e), &e);
        ASSERT_SVMD_OK(svmd_pool_alloc(p, 2 * MiB, 0, &b[1], &e), &e);
        expect_error(svmd_pool_alloc(p, 1 * KiB, 0, &extra, &e), &e, ENOSPC, "org.freedesktop.DBus.Error.LimitsExceeded");
        ASSERT_OK(svmd_pool_get_stats(p, &s));
        ASSERT_UEQ(s.chunk_allocations, 2);
        svmd_pool_free(p);

        /* The quota (16 MiB of VRAM for uid 0): eight chunks, then svmd's QuotaExceeded, nothing changed. */
        p = NULL;
        ASSERT_SVMD_OK(svmd_pool_new(&p, c, gpu, "vram", NULL, &e), &e);
        for (size_t i = 0; i < 8; i++)
                ASSERT_SVMD_OK(svmd_pool_alloc(p, 2 * MiB, 0, &b[i], &e), &e);
        ASSERT_UEQ(usage(c).vram, 16 * MiB);
        expect_error(svmd_pool_alloc(p, 4 * KiB, 0, &b[8], &e), &e, EDQUOT, "org.svmd1.Error.QuotaExceeded");
        ASSERT_OK(svmd_pool_get_stats(p, &s));
        ASSERT_UEQ(s.chunks, 8);
        ASSERT_UEQ(s.blocks, 8);
        ASSERT_UEQ(usage(c).ranges, 8);
        /* Room again after a block goes back (its chunk with it). */
        ASSERT_SVMD_OK(svmd_pool_dealloc(p, b[3].va, &e), &e);
        ASSERT_SVMD_OK(svmd_pool_alloc(p, 4 * KiB, 0, &b[3], &e), &e);
        svmd_pool_free(p);
        ASSERT_UEQ(usage(c).ranges, 0);
        printf("limits: ok\n");
}

/* ---- threads ---- */

#define THREADS 8
#define SLOTS 256               /* chunks tracked at once, by range id modulo */
#define GRANULES (2 * MiB / 256)

static _Atomic uint8_t owner[SLOTS][GRANULES];
static svmd_pool *shared_pool;
static atomic_uint overlaps;

static void claim(const svmd_pool_block *b, uint8_t me, uint8_t expect) {
        for (uint64_t g = b->offset / 256; g < (b->offset + b->size) / 256; g++) {
                uint8_t want = expect;

                if (!atomic_compare_exchange_strong(&owner[b->range_id % SLOTS][g], &want, me))
                        atomic_fetch_add(&overlaps, 1);
        }
}

static void *thread_main(void *arg) {
        uint8_t me = (uint8_t) (uintptr_t) arg;
        svmd_pool_block live[64];
        size_t n_live = 0;
        uint64_t seed = me * UINT64_C(0x9E3779B97F4A7C15) + 1;

        for (int step = 0; step < 20000; step++) {
                svmd_error e = SVMD_ERROR_NULL;

                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if (n_live == ELEMENTSOF(live) || (n_live > 0 && seed % 2)) {
                        size_t i = (seed >> 8) % n_live;

                        claim(&live[i], 0, me);
                        ASSERT_SVMD_OK(svmd_pool_dealloc(shared_pool, live[i].va, &e), &e);
                        live[i] = live[--n_live];
                } else {
                        svmd_pool_block *b = &live[n_live++];

                        ASSERT_SVMD_OK(svmd_pool_alloc(shared_pool, 256 * (1 + (seed >> 8) % 128), 0, b, &e), &e);
                        claim(b, me, 0);
                }
        }
        while (n_live > 0) {
                svmd_error e = SVMD_ERROR_NULL;

                n_live--;
                claim(&live[n_live], 0, me);
                ASSERT_SVMD_OK(svmd_pool_dealloc(shared_pool, live[n_live].va, &e), &e);
        }
        return NULL;
}

static void test_threads(void) {
        svmd_pool_options o = { .chunk_size = 2 * MiB, .keep_bytes = UINT64_MAX };
        svmd_error e = SVMD_ERROR_NULL;
        svmd_client *c = connect_client();   /* the pool's own: the threads never touch it */
        pthread_t t[THREADS];
        svmd_pool_stats s;

        ASSERT_SVMD_OK(svmd_pool_new(&shared_pool, c, gpu, "vram", &o, &e), &e);
        for (uintptr_t i = 0; i < THREADS; i++)
                ASSERT_EQ(pthread_create(&t[i], NULL, thread_main, (void *) (i + 1)), 0);
        for (size_t i = 0; i < THREADS; i++)
                ASSERT_EQ(pthread_join(t[i], NULL), 0);
        ASSERT_OK(svmd_pool_get_stats(shared_pool, &s));
        printf("threads: %d × 20000 steps, %" PRIu64 " chunks, %u overlaps\n", THREADS, s.chunks, overlaps);
        ASSERT_UEQ(overlaps, 0);
        ASSERT_UEQ(s.blocks, 0);
        ASSERT_UEQ(s.used_bytes, 0);
        ASSERT_TRUE(s.chunks >= 1 && s.chunks < SLOTS);
        ASSERT_UEQ(usage(c).ranges, s.chunks);
        ASSERT_EQ(svmd_pool_trim(shared_pool, 0, &e), (int) s.chunks);
        ASSERT_UEQ(usage(c).ranges, 0);
        svmd_pool_free(shared_pool);
        svmd_client_free(c);
}

/* A client that dies with a pool's chunks: svmd frees them with its other ranges. */
static void test_client_death(svmd_client *c) {
        pid_t pid;
        int status;
        uint64_t start = (uint64_t) time(NULL);

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                svmd_client *child = connect_client();
                svmd_error e = SVMD_ERROR_NULL;
                svmd_pool_block b;
                svmd_pool *p = NULL;

                ASSERT_SVMD_OK(svmd_pool_new(&p, child, gpu, "gtt", NULL, &e), &e);
                for (int i = 0; i < 3; i++)
                        ASSERT_SVMD_OK(svmd_pool_alloc(p, 1536 * KiB, 0, &b, &e), &e);
                ASSERT_UEQ(usage(child).ranges, 3);
                _exit(0);       /* no svmd_pool_free(), no svmd_client_free() */
        }
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        while (usage(c).ranges > 0) {
                ASSERT_TRUE((uint64_t) time(NULL) - start < 20);
                usleep(10000);
        }
        printf("client death: ok\n");
}

/* Not a timed test: what a block costs against a range, both printed. */
static void report_cost(svmd_client *c) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_pool_block b;
        svmd_allocation a;
        svmd_pool *p = NULL;
        struct timespec t0, t1, t2;
        const int n = 2000;

        ASSERT_SVMD_OK(svmd_pool_new(&p, c, gpu, "gtt", NULL, &e), &e);
        ASSERT_SVMD_OK(svmd_pool_alloc(p, 64 * KiB, 0, &b, &e), &e);  /* the chunk stays: one block out */
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < n; i++) {
                svmd_pool_block x;

                ASSERT_SVMD_OK(svmd_pool_alloc(p, 64 * KiB, 0, &x, &e), &e);
                ASSERT_SVMD_OK(svmd_pool_dealloc(p, x.va, &e), &e);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        for (int i = 0; i < n / 10; i++) {
                ASSERT_SVMD_OK(svmd_allocate(c, 64 * KiB, gpu, "gtt", NULL, &a, &e), &e);
                ASSERT_SVMD_OK(svmd_free(c, a.id, &e), &e);
        }
        clock_gettime(CLOCK_MONOTONIC, &t2);
        printf("64 KiB GTT alloc+free: pool %.3f µs, svmd %.1f µs\n",
               ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3 / n,
               ((t2.tv_sec - t1.tv_sec) * 1e9 + (t2.tv_nsec - t1.tv_nsec)) / 1e3 / (n / 10));
        svmd_pool_free(p);
}

int main(void) {
        _cleanup_free_ svmd_gpu *gpus = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        svmd_client *c = connect_client();
        size_t n;

        ASSERT_SVMD_OK(svmd_list_gpus(c, &gpus, &n, &e), &e);
        ASSERT_TRUE(n > 0);
        gpu = gpus[0].gpu_id;

        test_chunks_are_ranges(c);
        test_keep_and_trim(c);
        test_limits(c);
        test_threads();
        test_client_death(c);
        report_cost(c);
        svmd_client_free(c);
        return 0;
}
