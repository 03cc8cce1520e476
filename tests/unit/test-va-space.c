/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "macro.h"
#include "unit-assert.h"
#include "va-space.h"

#define KiB UINT64_C(0x400)
#define MiB UINT64_C(0x100000)
#define GiB UINT64_C(0x40000000)
#define TiB UINT64_C(0x10000000000)

/* A base that is 4 KiB- but not 2 MiB-aligned, so that default alignment has to pad. */
#define ODD_BASE (VA_SPACE_DEFAULT_BASE + 4 * KiB)

/*
 * The VaSpace places nodes its caller embeds in its objects (va-space.h). The tests' object is a
 * TestNode with a data pointer, allocated and freed by these wrappers, which answer as the
 * address-based interface the tests are written against.
 */
typedef struct TestNode {
        VaNode node;
        void *data;
} TestNode;

static TestNode *test_node(VaNode *n) {
        return n ? (TestNode *) ((char *) n - offsetof(TestNode, node)) : NULL;
}

static TestNode *test_node_new(void *data) {
        TestNode *t = calloc(1, sizeof(TestNode));

        ASSERT_NOT_NULL(t);
        t->data = data;
        return t;
}

static int tn_alloc(VaSpace *s, uint64_t size, uint64_t alignment, void *data, uint64_t *ret_va) {
        TestNode *t = test_node_new(data);
        int r;

        r = va_space_alloc(s, &t->node, size, alignment);
        if (r < 0) {
                free(t);
                return r;
        }
        if (ret_va)
                *ret_va = t->node.start;
        return 0;
}

static int tn_reserve(VaSpace *s, uint64_t va, uint64_t size, void *data) {
        TestNode *t = test_node_new(data);
        int r;

        r = va_space_reserve(s, &t->node, va, size);
        if (r < 0) {
                /* Refused: releasing the node changes nothing, even with the start of another. */
                t->node.start = va;
                t->node.size = size;
                ASSERT_RET(va_space_release(s, &t->node), -ENOENT);
                ASSERT_RET(va_space_verify(s), 0);
                free(t);
                return r;
        }
        ASSERT_TRUE(t->node.start == va && t->node.size == size);
        return 0;
}

static int tn_release(VaSpace *s, uint64_t va, uint64_t *ret_size) {
        VaNode *n = va_space_lookup(s, va);
        uint64_t size;

        if (!n || n->start != va)
                return -ENOENT;
        size = n->size;
        ASSERT_RET(va_space_release(s, n), 0);
        /* Its place stays readable; a second release finds it gone. */
        ASSERT_TRUE(n->start == va && n->size == size);
        ASSERT_RET(va_space_release(s, n), -ENOENT);
        free(test_node(n));
        if (ret_size)
                *ret_size = size;
        return 0;
}

static int tn_found(VaNode *n, uint64_t *ret_start, uint64_t *ret_size, void **ret_data) {
        if (!n)
                return -ENOENT;
        if (ret_start)
                *ret_start = n->start;
        if (ret_size)
                *ret_size = n->size;
        if (ret_data)
                *ret_data = test_node(n)->data;
        return 0;
}

static int tn_lookup(VaSpace *s, uint64_t addr, uint64_t *ret_start, uint64_t *ret_size, void **ret_data) {
        return tn_found(va_space_lookup(s, addr), ret_start, ret_size, ret_data);
}

static int tn_next(VaSpace *s, uint64_t addr, uint64_t *ret_start, uint64_t *ret_size, void **ret_data) {
        return tn_found(va_space_next(s, addr), ret_start, ret_size, ret_data);
}

/* The nodes are the tests': freed with the space. */
static VaSpace *space_free(VaSpace *s) {
        VaNode *n;

        while (s && (n = va_space_next(s, 0))) {
                ASSERT_RET(va_space_release(s, n), 0);
                free(test_node(n));
        }
        return va_space_free(s);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(VaSpace *, space_free);

static VaSpace *space_new(uint64_t base, uint64_t size) {
        VaSpace *s = NULL;

        ASSERT_RET(va_space_new(&s, base, size), 0);
        ASSERT_RET(va_space_verify(s), 0);
        return s;
}

static VaSpaceStats space_stats(VaSpace *s) {
        VaSpaceStats st;

        va_space_get_stats(s, &st);
        return st;
}

static void test_new(void) {
        static const struct {
                uint64_t base, size;
                int ret;
        } table[] = {
                { VA_SPACE_DEFAULT_BASE, VA_SPACE_DEFAULT_SIZE, 0 },
                { 0, 4 * KiB, 0 },
                { UINT64_MAX - 8 * KiB + 1, 4 * KiB, 0 },
                { VA_SPACE_DEFAULT_BASE, 0, -EINVAL },
                { VA_SPACE_DEFAULT_BASE + 1, 4 * KiB, -EINVAL },
                { VA_SPACE_DEFAULT_BASE, 4 * KiB + 1, -EINVAL },
                { UINT64_MAX - 4 * KiB + 1, 4 * KiB, -EINVAL }, /* end would be 2^64 */
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                VaSpace *s = NULL;

                ASSERT_RET(va_space_new(&s, table[i].base, table[i].size), table[i].ret);
                if (table[i].ret < 0) {
                        ASSERT_TRUE(!s); /* ret_ is written only on success */
                        continue;
                }

                VaSpaceStats st = space_stats(s);
                ASSERT_UEQ(st.base, table[i].base);
                ASSERT_UEQ(st.size, table[i].size);
                ASSERT_UEQ(st.bytes_used, 0);
                ASSERT_UEQ(st.n_ranges, 0);
                ASSERT_UEQ(st.n_holes, 1);
                ASSERT_UEQ(st.largest_hole, table[i].size);
                ASSERT_RET(va_space_verify(s), 0);
                s = va_space_free(s);
        }

        ASSERT_TRUE(!va_space_free(NULL));
}

/* One allocation in a fresh 1 GiB window at ODD_BASE. */
static void test_alloc_args(void) {
        static const struct {
                uint64_t size, alignment;
                int ret;
                uint64_t offset; /* expected va − base */
                uint64_t rounded;
        } table[] = {
                { 0, 0, -EINVAL, 0, 0 },
                { UINT64_MAX, 0, -EINVAL, 0, 0 },
                { UINT64_MAX - 4 * KiB + 2, 0, -EINVAL, 0, 0 },
                { 4 * KiB, 3, -EINVAL, 0, 0 },
                { 4 * KiB, 2 * KiB, -EINVAL, 0, 0 },
                { 4 * KiB, 12 * KiB, -EINVAL, 0, 0 },
                { 1 * GiB + 4 * KiB, 0, -ENOMEM, 0, 0 },
                { 1 * GiB, 0, -ENOMEM, 0, 0 },                  /* fits only unaligned */
                { 1 * GiB, 4 * KiB, 0, 0, 1 * GiB },
                { 1, 0, 0, 0, 4 * KiB },
                { 4 * KiB, 0, 0, 0, 4 * KiB },
                { 4 * KiB + 1, 0, 0, 0, 8 * KiB },
                { 2 * MiB - 4 * KiB, 0, 0, 0, 2 * MiB - 4 * KiB },
                { 2 * MiB - 1, 0, 0, 2 * MiB - 4 * KiB, 2 * MiB }, /* rounds up to 2 MiB: aligned */
                { 2 * MiB, 0, 0, 2 * MiB - 4 * KiB, 2 * MiB },
                { 3 * MiB + 1, 0, 0, 2 * MiB - 4 * KiB, 3 * MiB + 4 * KiB },
                { 4 * KiB, 4 * KiB, 0, 0, 4 * KiB },
                { 4 * KiB, 8 * KiB, 0, 4 * KiB, 4 * KiB },
                { 4 * KiB, 64 * KiB, 0, 60 * KiB, 4 * KiB },
                { 4 * KiB, 2 * MiB, 0, 2 * MiB - 4 * KiB, 4 * KiB },
                { 4 * KiB, 4 * MiB, 0, 4 * MiB - 4 * KiB, 4 * KiB },
                { 4 * KiB, 1 * GiB, 0, 1 * GiB - 4 * KiB, 4 * KiB }, /* the last page */
                { 8 * KiB, 1 * GiB, -ENOMEM, 0, 0 },
                { 8 * MiB, 4 * KiB, 0, 0, 8 * MiB },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                _cleanup_(space_freep) VaSpace *s = space_new(ODD_BASE, 1 * GiB);
                uint64_t va = UINT64_C(0xdead), start, size;

                ASSERT_RET(tn_alloc(s, table[i].size, table[i].alignment, NULL, &va), table[i].ret);
                if (table[i].ret < 0) {
                        ASSERT_UEQ(va, 0xdead);
                        ASSERT_UEQ(space_stats(s).n_ranges, 0);
                        continue;
                }

                ASSERT_UEQ(va - ODD_BASE, table[i].offset);
                ASSERT_RET(tn_lookup(s, va, &start, &size, NULL), 0);
                ASSERT_UEQ(start, va);
                ASSERT_UEQ(size, table[i].rounded);
                ASSERT_UEQ(space_stats(s).bytes_used, table[i].rounded);
                ASSERT_RET(va_space_verify(s), 0);
        }
}

/* Holes of the listed sizes (in 4 KiB pages) separated by one-page ranges; the rest is filled. */
static VaSpace *space_with_holes(const unsigned *pages, size_t n) {
        uint64_t base = VA_SPACE_DEFAULT_BASE, size = 256 * MiB, at = base;
        VaSpace *s = space_new(base, size);

        for (size_t i = 0; i < n; i++) {
                ASSERT_RET(tn_reserve(s, at, 4 * KiB, NULL), 0);
                at += 4 * KiB + pages[i] * 4 * KiB;
        }
        ASSERT_RET(tn_reserve(s, at, base + size - at, NULL), 0);
        ASSERT_UEQ(space_stats(s).n_holes, n);
        return s;
}

static void test_best_fit(void) {
        static const unsigned holes[] = { 16, 2, 64, 4, 3, 1024, 8, 600 };
        static const struct {
                uint64_t size, alignment;
                int ret;
                unsigned hole; /* index into holes[] the range must land in */
        } table[] = {
                { 4 * KiB, 0, 0, 1 },       /* the 2-page hole, not the first one */
                { 5 * KiB, 0, 0, 1 },       /* 8 KiB: 2 pages */
                { 9 * KiB, 0, 0, 4 },       /* 3 pages */
                { 16 * KiB, 0, 0, 3 },
                { 20 * KiB, 0, 0, 6 },
                { 64 * KiB, 0, 0, 0 },
                { 65 * KiB, 0, 0, 2 },
                { 2400 * KiB, 4 * KiB, 0, 7 }, /* with the default 2 MiB alignment it would not fit */
                { 2 * MiB, 0, 0, 5 },       /* 4 MiB hole, 2 MiB-aligned inside; not the 2.34 MiB one */
                { 4 * MiB, 4 * KiB, 0, 5 },
                { 4 * MiB, 0, -ENOMEM, 0 }, /* would need 2 MiB alignment inside the 4 MiB hole */
                { 5 * MiB, 0, -ENOMEM, 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                _cleanup_(space_freep) VaSpace *s = space_with_holes(holes, ELEMENTSOF(holes));
                uint64_t va, hole_start = VA_SPACE_DEFAULT_BASE + 4 * KiB;

                ASSERT_RET(tn_alloc(s, table[i].size, table[i].alignment, NULL, &va), table[i].ret);
                if (table[i].ret < 0)
                        continue;

                for (unsigned h = 0; h < table[i].hole; h++)
                        hole_start += holes[h] * 4 * KiB + 4 * KiB;
                ASSERT_TRUE(va >= hole_start);
                ASSERT_TRUE(va < hole_start + holes[table[i].hole] * 4 * KiB);
                ASSERT_RET(va_space_verify(s), 0);
        }
}

static void test_reserve(void) {
        const uint64_t B = VA_SPACE_DEFAULT_BASE, W = 64 * MiB;
        static const struct {
                uint64_t offset, size;
                int ret;
        } table[] = {
                /* [B + 1 MiB, B + 2 MiB) is taken */
                { 1 * MiB, 1 * MiB, -EEXIST },
                { 1 * MiB, 4 * KiB, -EEXIST },
                { 1 * MiB - 4 * KiB, 8 * KiB, -EBUSY },
                { 1 * MiB + 4 * KiB, 4 * KiB, -EBUSY },
                { 2 * MiB - 4 * KiB, 8 * KiB, -EBUSY },
                { 0, 64 * MiB, -EBUSY },
                { 1 * MiB - 4 * KiB, 4 * KiB, 0 },
                { 2 * MiB, 4 * KiB, 0 },
                { 0, 1 * MiB, 0 },
                { 2 * MiB, 62 * MiB, 0 },
                { 63 * MiB, 1 * MiB, 0 },
                { 63 * MiB, 1 * MiB + 4 * KiB, -ERANGE },
                { 64 * MiB, 4 * KiB, -ERANGE },
                { -4 * KiB, 4 * KiB, -ERANGE },
                { -4 * KiB, 8 * KiB, -ERANGE },
                { 4 * KiB, -8 * KiB, -ERANGE }, /* va + size wraps */
                { 4 * KiB, 0, -EINVAL },
                { 4 * KiB + 1, 4 * KiB, -EINVAL },
                { 4 * KiB, 4 * KiB + 1, -EINVAL },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                _cleanup_(space_freep) VaSpace *s = space_new(B, W);
                uint64_t start, size;

                ASSERT_RET(tn_reserve(s, B + 1 * MiB, 1 * MiB, NULL), 0);
                ASSERT_RET(tn_reserve(s, B + table[i].offset, table[i].size, NULL), table[i].ret);
                ASSERT_RET(va_space_verify(s), 0);
                if (table[i].ret < 0) {
                        ASSERT_UEQ(space_stats(s).n_ranges, 1);
                        continue;
                }
                ASSERT_RET(tn_lookup(s, B + table[i].offset, &start, &size, NULL), 0);
                ASSERT_UEQ(start, B + table[i].offset);
                ASSERT_UEQ(size, table[i].size);
                ASSERT_UEQ(space_stats(s).bytes_used, 1 * MiB + table[i].size);
        }
}

/* Three adjacent ranges A B C in a 1 MiB window, released in every order: holes merge each time. */
static void test_release_coalesce(void) {
        static const struct {
                unsigned order[3];
                uint64_t n_holes[3];      /* after each release */
                uint64_t largest_hole[3]; /* in pages */
        } table[] = {
                /* A at pages 0–1, B at 2–3, C at 4–5; the tail hole is 250 pages */
                { { 0, 1, 2 }, { 2, 2, 1 }, { 250, 250, 256 } },
                { { 1, 0, 2 }, { 2, 2, 1 }, { 250, 250, 256 } },
                { { 1, 2, 0 }, { 2, 1, 1 }, { 250, 254, 256 } },
                { { 2, 1, 0 }, { 1, 1, 1 }, { 252, 254, 256 } },
                { { 0, 2, 1 }, { 2, 2, 1 }, { 250, 252, 256 } },
                { { 2, 0, 1 }, { 1, 2, 1 }, { 252, 252, 256 } },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                _cleanup_(space_freep) VaSpace *s = space_new(VA_SPACE_DEFAULT_BASE, 1 * MiB);
                uint64_t va[3], size;

                for (unsigned k = 0; k < 3; k++) {
                        ASSERT_RET(tn_alloc(s, 8 * KiB, 0, NULL, &va[k]), 0);
                        ASSERT_UEQ(va[k], VA_SPACE_DEFAULT_BASE + k * 8 * KiB);
                }
                ASSERT_UEQ(space_stats(s).n_holes, 1);

                for (unsigned k = 0; k < 3; k++) {
                        uint64_t v = va[table[i].order[k]];

                        ASSERT_RET(tn_release(s, v + 4 * KiB, NULL), -ENOENT); /* not a start */
                        ASSERT_RET(tn_release(s, v, &size), 0);
                        ASSERT_UEQ(size, 8 * KiB);
                        ASSERT_RET(tn_release(s, v, &size), -ENOENT);
                        ASSERT_RET(va_space_verify(s), 0);

                        VaSpaceStats st = space_stats(s);
                        ASSERT_UEQ(st.n_ranges, 2 - k);
                        ASSERT_UEQ(st.n_holes, table[i].n_holes[k]);
                        ASSERT_UEQ(st.largest_hole, table[i].largest_hole[k] * 4 * KiB);
                }
                ASSERT_UEQ(space_stats(s).bytes_used, 0);
        }
}

static void test_lookup_next(void) {
        const uint64_t B = VA_SPACE_DEFAULT_BASE;
        _cleanup_(space_freep) VaSpace *s = space_new(B, 16 * MiB);
        static const struct {
                uint64_t offset;
                int ret;
                uint64_t start; /* offset of the containing range */
                uint64_t next;  /* offset of the first range starting at or after, or -1 */
        } table[] = {
                { -1, -ENOENT, 0, 0 }, /* below the window */
                { 0, 0, 0, 0 },
                { 1, 0, 0, 8 * KiB },
                { 8 * KiB - 1, 0, 0, 8 * KiB },
                { 8 * KiB, 0, 8 * KiB, 8 * KiB },
                { 12 * KiB, -ENOENT, 0, 1 * MiB },
                { 1 * MiB, 0, 1 * MiB, 1 * MiB },
                { 3 * MiB - 1, 0, 1 * MiB, -1 },
                { 3 * MiB, -ENOENT, 0, -1 },
                { 16 * MiB, -ENOENT, 0, -1 },
                { UINT64_MAX - B, -ENOENT, 0, -1 },
        };

        /* Each range's data is a distinct pointer: lookups must return the one of the range found. */
        static char objects[3 * MiB];

        ASSERT_RET(tn_reserve(s, B, 8 * KiB, &objects[0]), 0);
        ASSERT_RET(tn_reserve(s, B + 8 * KiB, 4 * KiB, &objects[8 * KiB]), 0);
        ASSERT_RET(tn_reserve(s, B + 1 * MiB, 2 * MiB, &objects[1 * MiB]), 0);

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                uint64_t start = 0xdead, size = 0xdead, addr = B + table[i].offset;
                void *data = NULL;

                ASSERT_RET(tn_lookup(s, addr, &start, &size, &data), table[i].ret);
                if (table[i].ret == 0) {
                        ASSERT_UEQ(start, B + table[i].start);
                        ASSERT_TRUE(data == &objects[table[i].start]);
                } else
                        ASSERT_TRUE(start == 0xdead && size == 0xdead && !data);

                if (table[i].next == (uint64_t) -1)
                        ASSERT_RET(tn_next(s, addr, &start, &size, &data), -ENOENT);
                else {
                        ASSERT_RET(tn_next(s, addr, &start, &size, &data), 0);
                        ASSERT_UEQ(start, B + table[i].next);
                        ASSERT_TRUE(data == &objects[table[i].next]);
                }
        }
}

/* Fill a window with single pages, then reuse freed pages exactly. */
static void test_exhaust(void) {
        _cleanup_(space_freep) VaSpace *s = space_new(ODD_BASE, 1 * MiB);
        uint64_t va;

        for (unsigned i = 0; i < 256; i++) {
                ASSERT_RET(tn_alloc(s, 1, 0, NULL, &va), 0);
                ASSERT_UEQ(va, ODD_BASE + i * 4 * KiB);
        }
        ASSERT_RET(tn_alloc(s, 1, 0, NULL, &va), -ENOMEM);

        VaSpaceStats st = space_stats(s);
        ASSERT_UEQ(st.n_holes, 0);
        ASSERT_UEQ(st.largest_hole, 0);
        ASSERT_UEQ(st.bytes_used, 1 * MiB);

        ASSERT_RET(tn_release(s, ODD_BASE + 100 * 4 * KiB, NULL), 0);
        ASSERT_RET(tn_release(s, ODD_BASE + 101 * 4 * KiB, NULL), 0);
        ASSERT_RET(tn_alloc(s, 12 * KiB, 0, NULL, &va), -ENOMEM);
        ASSERT_RET(tn_alloc(s, 8 * KiB, 8 * KiB, NULL, &va), -ENOMEM); /* page 100 is odd */
        ASSERT_RET(tn_alloc(s, 8 * KiB, 0, NULL, &va), 0);
        ASSERT_UEQ(va, ODD_BASE + 100 * 4 * KiB);
        ASSERT_RET(va_space_verify(s), 0);
}

/*
 * Alignments other than 4 KiB and 2 MiB: many small holes that fit the size but not the alignment
 * come first in best-fit order; a suitable one is found as long as a hole certainly fits.
 */
static void test_probe(void) {
        const uint64_t B = VA_SPACE_DEFAULT_BASE, W = 1 * GiB;
        _cleanup_(space_freep) VaSpace *s = space_new(B, W);
        uint64_t va, at;

        /*
         * 200 two-page holes, pages 1–2 of each 64 KiB block: page 0 of the first block is taken, then
         * each range covers pages 3–15 of one block and page 0 of the next.
         */
        ASSERT_RET(tn_reserve(s, B, 4 * KiB, NULL), 0);
        for (unsigned i = 0; i < 200; i++) {
                at = B + 64 * KiB * i + 12 * KiB;
                ASSERT_RET(tn_reserve(s, at, i == 199 ? B + W - at : 56 * KiB, NULL), 0);
        }
        ASSERT_UEQ(space_stats(s).n_holes, 200);

        ASSERT_RET(tn_alloc(s, 8 * KiB, 4 * KiB, NULL, &va), 0);
        ASSERT_UEQ(va, B + 4 * KiB);
        /* No hole has an 8 KiB-aligned 8 KiB extent. */
        ASSERT_RET(tn_alloc(s, 8 * KiB, 8 * KiB, NULL, &va), -ENOMEM);
        ASSERT_RET(tn_alloc(s, 8 * KiB, 16 * KiB, NULL, &va), -ENOMEM);
        ASSERT_RET(tn_alloc(s, 4 * KiB, 2 * MiB, NULL, &va), -ENOMEM);

        /* One larger hole (≥ size + alignment − 4 KiB), far away in address and probe order. */
        ASSERT_RET(tn_release(s, B + 64 * KiB * 150 + 12 * KiB, NULL), 0);
        ASSERT_RET(tn_alloc(s, 8 * KiB, 8 * KiB, NULL, &va), 0);
        ASSERT_UEQ(va, B + 64 * KiB * 150 + 8 * KiB);
        ASSERT_RET(tn_alloc(s, 4 * KiB, 16 * KiB, NULL, &va), 0);
        ASSERT_UEQ(va, B + 64 * KiB * 150 + 16 * KiB);
        ASSERT_RET(va_space_verify(s), 0);
}

static void test_window_reservation(void) {
        uint64_t base, size = 64 * MiB, start, end;
        _cleanup_free_ char *name = NULL;
        VaSpace *a = NULL, *b = NULL, *c = NULL;
        void *p;
        int r;

        /* Find room for two windows: map it, note the address, unmap. Single-threaded, so it stays free. */
        p = mmap(NULL, 2 * size + 2 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        ASSERT_TRUE(p != MAP_FAILED);
        ASSERT_RET(munmap(p, 2 * size + 2 * MiB), 0);
        base = ALIGN_POW2((uint64_t) (uintptr_t) p, 2 * MiB);

        ASSERT_RET(va_space_new(&a, base, size), 0);
        ASSERT_RET(va_space_new(&b, base, size), 0);
        ASSERT_RET(va_space_new(&c, base + size / 2, size), 0);
        ASSERT_RET(va_space_find_window_conflict(base, size, &start, &end, NULL), -ENOENT);

        ASSERT_TRUE(!va_space_window_reserved(a));
        ASSERT_RET(va_space_reserve_window(a), 0);
        ASSERT_TRUE(va_space_window_reserved(a));
        ASSERT_RET(va_space_find_window_conflict(base, size, &start, &end, &name), 0);
        ASSERT_UEQ(start, base);
        ASSERT_UEQ(end, base + size);
        free(name);
        name = NULL;

        ASSERT_RET(va_space_reserve_window(a), -EEXIST);
        ASSERT_RET(va_space_reserve_window(b), -EEXIST);
        ASSERT_RET(va_space_reserve_window(c), -EEXIST);
        ASSERT_TRUE(!va_space_window_reserved(b));

        /* Freeing the owner unmaps the window. */
        a = va_space_free(a);
        ASSERT_RET(va_space_find_window_conflict(base, size, &start, &end, NULL), -ENOENT);
        ASSERT_RET(va_space_reserve_window(b), 0);
        b = va_space_free(b);

        /* Somebody else's page in the middle of the window. */
        p = mmap((void *) (uintptr_t) (base + size - 4 * KiB), 4 * KiB, PROT_READ,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        ASSERT_TRUE(p != MAP_FAILED);
        ASSERT_RET(va_space_reserve_window(c), -EEXIST);
        ASSERT_RET(va_space_find_window_conflict(base + size / 2, size, &start, &end, &name), 0);
        ASSERT_UEQ(start, base + size - 4 * KiB);
        ASSERT_UEQ(end, base + size);
        ASSERT_TRUE(streq(name, ""));
        free(name);
        name = NULL;
        ASSERT_RET(munmap(p, 4 * KiB), 0);
        ASSERT_RET(va_space_reserve_window(c), 0);
        c = va_space_free(c);

        /* The daemon's default window: 16 TiB at 0x4000_0000_0000. */
        ASSERT_RET(va_space_new(&a, VA_SPACE_DEFAULT_BASE, VA_SPACE_DEFAULT_SIZE), 0);
        r = va_space_reserve_window(a);
        if (r == -EEXIST &&
            va_space_find_window_conflict(VA_SPACE_DEFAULT_BASE, VA_SPACE_DEFAULT_SIZE, &start, &end,
                                          &name) >= 0)
                printf("default window: taken by 0x%" PRIx64 "-0x%" PRIx64 " %s, skipping that check\n",
                       start, end, name);
        else {
                ASSERT_RET(r, 0);
                printf("default window: reserved 0x%" PRIx64 "-0x%" PRIx64 "\n", VA_SPACE_DEFAULT_BASE,
                       VA_SPACE_DEFAULT_BASE + VA_SPACE_DEFAULT_SIZE);
        }
        a = va_space_free(a);
}

/* ------------------------------------------------------------------------------------------------- */
/* Randomized comparison with a brute-force model */

static uint64_t rng_next(uint64_t *state) {
        /* splitmix64 */
        uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static uint64_t rng_range(uint64_t *state, uint64_t n) {
        return rng_next(state) % n;
}

/* Log-uniform in [lo, hi] */
static uint64_t rng_log(uint64_t *state, uint64_t lo, uint64_t hi) {
        unsigned lo_bits = 63 - __builtin_clzll(lo), hi_bits = 63 - __builtin_clzll(hi);
        unsigned bits = lo_bits + rng_range(state, hi_bits - lo_bits + 1);
        uint64_t v = (UINT64_C(1) << bits) + rng_range(state, UINT64_C(1) << bits);

        return MIN(MAX(v, lo), hi);
}

typedef struct ModelRange {
        uint64_t start, size;
} ModelRange;

typedef struct Model {
        uint64_t base, size;
        ModelRange *v;
        size_t n, allocated;
} Model;

/* Index of the first range starting at or after va */
static size_t model_search(const Model *m, uint64_t va) {
        size_t lo = 0, hi = m->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (m->v[mid].start < va)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static void model_insert(Model *m, uint64_t start, uint64_t size) {
        size_t i = model_search(m, start);

        if (m->n == m->allocated) {
                m->allocated = MAX(m->allocated * 2, (size_t) 64);
                m->v = realloc(m->v, m->allocated * sizeof(ModelRange));
                ASSERT_TRUE(m->v);
        }
        memmove(m->v + i + 1, m->v + i, (m->n - i) * sizeof(ModelRange));
        m->v[i] = (ModelRange) { start, size };
        m->n++;
}

static void model_remove(Model *m, size_t i) {
        memmove(m->v + i, m->v + i + 1, (m->n - i - 1) * sizeof(ModelRange));
        m->n--;
}

/* The hole before range i (i == n: the tail hole) */
static void model_hole(const Model *m, size_t i, uint64_t *ret_start, uint64_t *ret_end) {
        *ret_start = i == 0 ? m->base : m->v[i - 1].start + m->v[i - 1].size;
        *ret_end = i == m->n ? m->base + m->size : m->v[i].start;
}

/*
 * Whether some hole fits size at alignment; ret_best receives the smallest such hole's length and
 * ret_certain whether a hole of size + alignment − 4 KiB exists (which fits wherever it is).
 */
static bool model_feasible(const Model *m, uint64_t size, uint64_t alignment, uint64_t *ret_best,
                           bool *ret_certain) {
        uint64_t best = UINT64_MAX;
        bool certain = false;

        for (size_t i = 0; i <= m->n; i++) {
                uint64_t h, e, a;

                model_hole(m, i, &h, &e);
                if (e - h >= size + alignment - 4 * KiB)
                        certain = true;
                if (!align_up_ok(h, alignment, &a) || a > e || e - a < size)
                        continue;
                best = MIN(best, e - h);
        }
        *ret_best = best;
        *ret_certain = certain;
        return best != UINT64_MAX;
}

static void model_compare(const Model *m, VaSpace *s) {
        uint64_t holes = 0, largest = 0, used = 0, addr = 0, start, size;
        VaSpaceStats st;

        ASSERT_RET(va_space_verify(s), 0);

        for (size_t i = 0; i <= m->n; i++) {
                uint64_t h, e;

                model_hole(m, i, &h, &e);
                ASSERT_TRUE(h <= e);
                if (e > h)
                        holes++;
                largest = MAX(largest, e - h);
                if (i < m->n)
                        used += m->v[i].size;
        }

        va_space_get_stats(s, &st);
        ASSERT_UEQ(st.n_ranges, m->n);
        ASSERT_UEQ(st.bytes_used, used);
        ASSERT_UEQ(st.n_holes, holes);
        ASSERT_UEQ(st.largest_hole, largest);

        for (size_t i = 0; i < m->n; i++) {
                ASSERT_RET(tn_next(s, addr, &start, &size, NULL), 0);
                ASSERT_UEQ(start, m->v[i].start);
                ASSERT_UEQ(size, m->v[i].size);
                addr = start + 1;
        }
        ASSERT_RET(tn_next(s, addr, &start, &size, NULL), -ENOENT);
}

typedef struct RandomConfig {
        uint64_t seed;
        uint64_t base, size;
        uint64_t max_size; /* allocation sizes are log-uniform up to this */
        unsigned ops;
} RandomConfig;

typedef struct RandomCounts {
        unsigned alloc_ok, alloc_enomem, alloc_einval, release_ok, release_enoent, reserve_ok, reserve_fail,
                lookups, probe_misses;
        size_t max_live;
} RandomCounts;

static void random_alloc(VaSpace *s, Model *m, uint64_t *rng, RandomCounts *c) {
        static const uint64_t alignments[] = {
                4 * KiB, 8 * KiB, 64 * KiB, 1 * MiB, 2 * MiB, 4 * MiB, 1 * GiB,
        };
        uint64_t size, alignment = 0, effective, rounded, va = 0, best;
        bool certain;
        int r;

        size = rng_log(rng, 1, m->size / 16);
        if (rng_range(rng, 8) == 0)
                alignment = alignments[rng_range(rng, ELEMENTSOF(alignments))];
        if (rng_range(rng, 200) == 0)
                size = 0; /* invalid */

        r = tn_alloc(s, size, alignment, NULL, &va);
        if (size == 0) {
                ASSERT_RET(r, -EINVAL);
                c->alloc_einval++;
                return;
        }

        rounded = ALIGN_POW2(size, 4 * KiB);
        effective = alignment ?: (rounded >= 2 * MiB ? 2 * MiB : 4 * KiB);
        bool exact = effective == 4 * KiB || effective == 2 * MiB;
        bool feasible = model_feasible(m, rounded, effective, &best, &certain);

        if (r == -ENOMEM) {
                c->alloc_enomem++;
                if (feasible && (exact || certain)) {
                        fprintf(stderr,
                                "alloc(size 0x%" PRIx64 ", alignment 0x%" PRIx64 ") failed, "
                                "but a hole of 0x%" PRIx64 " fits\n",
                                rounded, effective, best);
                        abort();
                }
                if (feasible)
                        c->probe_misses++;
                return;
        }
        ASSERT_RET(r, 0);
        c->alloc_ok++;

        /* Inside the window, aligned, and inside one hole of the model (so no overlap). */
        ASSERT_TRUE(va >= m->base && va + rounded <= m->base + m->size);
        ASSERT_UEQ(va % effective, 0);
        size_t i = model_search(m, va);
        uint64_t h, e;
        model_hole(m, i, &h, &e);
        ASSERT_TRUE(h <= va && va + rounded <= e);

        /* Best fit, where the allocator promises it. */
        if (exact)
                ASSERT_UEQ(e - h, best);

        model_insert(m, va, rounded);
}

static void random_reserve(VaSpace *s, Model *m, uint64_t *rng, RandomCounts *c) {
        uint64_t va, size, end;
        int expected;

        /* Mostly inside the window, sometimes a bit outside; mostly near live ranges. */
        if (m->n > 0 && rng_range(rng, 2) == 0) {
                const ModelRange *near = &m->v[rng_range(rng, m->n)];
                va = near->start + (rng_range(rng, 64) - 32) * 4 * KiB;
        } else
                va = m->base - 64 * KiB + rng_range(rng, (m->size + 128 * KiB) / (4 * KiB)) * 4 * KiB;
        size = rng_log(rng, 4 * KiB, m->size / 64) & ~(4 * KiB - 1);
        if (rng_range(rng, 100) == 0)
                va++;

        if (va % (4 * KiB) != 0)
                expected = -EINVAL;
        else if (__builtin_add_overflow(va, size, &end) || va < m->base || end > m->base + m->size)
                expected = -ERANGE;
        else {
                size_t i = model_search(m, va);

                if (i < m->n && m->v[i].start == va)
                        expected = -EEXIST;
                else if ((i > 0 && m->v[i - 1].start + m->v[i - 1].size > va) ||
                         (i < m->n && m->v[i].start < end))
                        expected = -EBUSY;
                else
                        expected = 0;
        }

        ASSERT_RET(tn_reserve(s, va, size, NULL), expected);
        if (expected < 0) {
                c->reserve_fail++;
                return;
        }
        c->reserve_ok++;
        model_insert(m, va, size);
}

static void random_release(VaSpace *s, Model *m, uint64_t *rng, RandomCounts *c) {
        uint64_t size;

        if (m->n == 0 || rng_range(rng, 50) == 0) {
                /* Not the start of a range */
                uint64_t va = m->base + rng_range(rng, m->size);
                size_t i = model_search(m, va);

                if (i < m->n && m->v[i].start == va)
                        return;
                ASSERT_RET(tn_release(s, va, &size), -ENOENT);
                c->release_enoent++;
                return;
        }

        size_t i = rng_range(rng, m->n);
        ASSERT_RET(tn_release(s, m->v[i].start, &size), 0);
        ASSERT_UEQ(size, m->v[i].size);
        model_remove(m, i);
        c->release_ok++;
}

static void random_lookup(VaSpace *s, Model *m, uint64_t *rng, RandomCounts *c) {
        uint64_t addr = m->base - 4 * KiB + rng_range(rng, m->size + 8 * KiB), start, size;
        size_t i = model_search(m, addr + 1); /* first range starting after addr */

        c->lookups++;
        if (i > 0 && addr - m->v[i - 1].start < m->v[i - 1].size) {
                ASSERT_RET(tn_lookup(s, addr, &start, &size, NULL), 0);
                ASSERT_UEQ(start, m->v[i - 1].start);
                ASSERT_UEQ(size, m->v[i - 1].size);
        } else
                ASSERT_RET(tn_lookup(s, addr, &start, &size, NULL), -ENOENT);
}

static void test_random(void) {
        static const RandomConfig table[] = {
                /* small window, mostly full: ENOMEM and feasibility checks matter */
                { 1, VA_SPACE_DEFAULT_BASE, 64 * MiB, 0, 50000 },
                { 2, ODD_BASE, 256 * MiB, 0, 50000 },
                { 0xdeadbeef, VA_SPACE_DEFAULT_BASE + 1 * GiB - 12 * KiB, 1 * GiB, 0, 50000 },
                { 20240607, 0x1000, 16 * MiB, 0, 50000 },
        };
        unsigned total = 0;

        for (size_t t = 0; t < ELEMENTSOF(table); t++) {
                const RandomConfig *cfg = &table[t];
                _cleanup_(space_freep) VaSpace *s = space_new(cfg->base, cfg->size);
                Model m = { .base = cfg->base, .size = cfg->size };
                RandomCounts c = {};
                uint64_t rng = cfg->seed;

                printf("random: seed %" PRIu64 ", window 0x%" PRIx64 "+0x%" PRIx64 ", %u ops\n", cfg->seed,
                       cfg->base, cfg->size, cfg->ops);

                for (unsigned op = 0; op < cfg->ops; op++) {
                        /* Phases tilt towards filling or emptying: both a full and a sparse window occur. */
                        unsigned p = rng_range(&rng, 100), fill = (op / 5000) % 2 == 0 ? 60 : 30;

                        if (p < fill)
                                random_alloc(s, &m, &rng, &c);
                        else if (p < fill + 5)
                                random_reserve(s, &m, &rng, &c);
                        else if (p < 90)
                                random_release(s, &m, &rng, &c);
                        else
                                random_lookup(s, &m, &rng, &c);

                        c.max_live = MAX(c.max_live, m.n);
                        if (op % 997 == 0)
                                model_compare(&m, s);
                }
                model_compare(&m, s);

                /* No leak: releasing everything leaves one hole, the whole window. */
                while (m.n > 0) {
                        size_t i = rng_range(&rng, m.n);

                        ASSERT_RET(tn_release(s, m.v[i].start, NULL), 0);
                        model_remove(&m, i);
                }
                model_compare(&m, s);
                VaSpaceStats st = space_stats(s);
                ASSERT_UEQ(st.n_holes, 1);
                ASSERT_UEQ(st.largest_hole, cfg->size);
                ASSERT_UEQ(st.bytes_used, 0);

                printf("        alloc %u ok / %u ENOMEM / %u EINVAL, release %u ok / %u ENOENT, "
                       "reserve %u ok / %u refused, %u lookups, max %zu live; %u ENOMEM with a fitting hole "
                       "beyond the probe (alignment other than 4 KiB/2 MiB)\n",
                       c.alloc_ok, c.alloc_enomem, c.alloc_einval, c.release_ok, c.release_enoent,
                       c.reserve_ok, c.reserve_fail, c.lookups, c.max_live, c.probe_misses);
                ASSERT_TRUE(c.alloc_ok > 0 && c.alloc_enomem > 0 && c.reserve_ok > 0 && c.release_ok > 0);
                total += cfg->ops;
                free(m.v);
        }
        printf("random: %u operations checked against the model\n", total);
}

/* ------------------------------------------------------------------------------------------------- */
/* Scale: cost per operation and memory per range at 10^3 and 10^6 live ranges (figures, no asserts) */

static uint64_t now_ns(void) {
        struct timespec ts;

        ASSERT_RET(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
        return (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
}

/* Mostly small ranges, one in 16 of 2–8 MiB (2 MiB-aligned), as a GPU workload's mix might be. */
static uint64_t scale_size(uint64_t *rng) {
        if (rng_range(rng, 16) == 0)
                return rng_log(rng, 2 * MiB, 8 * MiB);
        return rng_log(rng, 4 * KiB, 256 * KiB);
}

static void scale_run(size_t live, uint64_t seed) {
        _cleanup_(space_freep) VaSpace *s = space_new(VA_SPACE_DEFAULT_BASE, VA_SPACE_DEFAULT_SIZE);
        _cleanup_free_ uint64_t *va = calloc(live, sizeof(uint64_t));
        size_t batch = MIN(live / 4, (size_t) 1024), rounds = 256;
        uint64_t rng = seed, t, t_fill, t_alloc = 0, t_release = 0, t_lookup = 0, t_harness,
                 start, size;
        VaSpaceStats st;

        ASSERT_TRUE(va);

        t = now_ns();
        for (size_t i = 0; i < live; i++)
                ASSERT_RET(tn_alloc(s, scale_size(&rng), 0, NULL, &va[i]), 0);
        t_fill = now_ns() - t;

        /* Churn: release a random batch, allocate as many again; reaches a fragmented steady state. */
        for (size_t round = 0; round < rounds; round++) {
                for (size_t j = 0; j < batch; j++) {
                        size_t r = rng_range(&rng, live - j);
                        uint64_t tmp = va[r];

                        va[r] = va[live - 1 - j];
                        va[live - 1 - j] = tmp;
                }

                t = now_ns();
                for (size_t j = live - batch; j < live; j++)
                        ASSERT_RET(tn_release(s, va[j], NULL), 0);
                t_release += now_ns() - t;

                t = now_ns();
                for (size_t j = live - batch; j < live; j++)
                        ASSERT_RET(tn_alloc(s, scale_size(&rng), 0, NULL, &va[j]), 0);
                t_alloc += now_ns() - t;
        }

        /* Lookups of random addresses inside random live ranges. */
        t = now_ns();
        for (size_t j = 0; j < rounds * batch; j++)
                ASSERT_RET(tn_lookup(s, va[rng_range(&rng, live)] + 1, &start, &size, NULL), 0);
        t_lookup = now_ns() - t;

        /* What picking the random address costs by itself (the va[] access misses cache at 10^6). */
        t = now_ns();
        for (size_t j = 0; j < rounds * batch; j++) {
                volatile uint64_t sink = va[rng_range(&rng, live)] + 1;
                (void) sink;
        }
        t_harness = now_ns() - t;

        va_space_get_stats(s, &st);
        ASSERT_RET(va_space_verify(s), 0);
        printf("scale: %7zu live: fill %6.0f ns/alloc; churn %6.0f ns/alloc, %6.0f ns/release; "
               "lookup %6.0f ns (+%3.0f ns picking the address); %" PRIu64 " holes, %zu bytes/range "
               "(the caller's VaNode)\n",
               live, (double) t_fill / (double) live, (double) t_alloc / (double) (rounds * batch),
               (double) t_release / (double) (rounds * batch),
               (double) (t_lookup - MIN(t_lookup, t_harness)) / (double) (rounds * batch),
               (double) t_harness / (double) (rounds * batch),
               st.n_holes, sizeof(VaNode));
}

static void test_scale(void) {
        const char *e = getenv("SVMD_TEST_SCALE_MAX");
        size_t max = e ? strtoull(e, NULL, 0) : 1000000;

        scale_run(1000, 42);
        if (max >= 10000)
                scale_run(MIN(max, (size_t) 1000000), 42);
}

int main(void) {
        setvbuf(stdout, NULL, _IOLBF, 0);

        test_new();
        test_alloc_args();
        test_best_fit();
        test_reserve();
        test_release_coalesce();
        test_lookup_next();
        test_exhaust();
        test_probe();
        test_window_reservation();
        test_random();
        test_scale();
        return 0;
}
