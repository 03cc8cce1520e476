/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "macro.h"
#include "ptr-index.h"
#include "unit-assert.h"

typedef struct Entry {
        void *key;
        int payload;
} Entry;

static char objects[2000];

/* Appends n entries one at a time (the array moving as it grows), checking every lookup as it goes. */
static void test_grow_and_find(void) {
        static const size_t sizes[] = { 0, 1, PTR_INDEX_SCAN, PTR_INDEX_SCAN + 1, 33, 1000 };

        for (size_t s = 0; s < ELEMENTSOF(sizes); s++) {
                PtrIndex x = {};
                Entry *a = NULL;

                for (size_t n = 1; n <= sizes[s]; n++) {
                        a = realloc(a, n * sizeof(Entry));
                        ASSERT_NOT_NULL(a);
                        /* Every other object, so that missing keys sit between present ones. */
                        a[n - 1] = (Entry) { .key = &objects[2 * (n - 1)], .payload = (int) n };
                        ptr_index_added(&x, a, sizeof(Entry), n);
                        ASSERT_EQ(ptr_index_find(&x, a, sizeof(Entry), n, &objects[2 * (n - 1)]), (ssize_t) (n - 1));
                }
                ASSERT_TRUE(sizes[s] <= PTR_INDEX_SCAN ? x.n_slots == 0 : x.n_slots >= 2 * sizes[s]);
                for (size_t i = 0; i < sizes[s]; i++) {
                        ASSERT_EQ(ptr_index_find(&x, a, sizeof(Entry), sizes[s], &objects[2 * i]), (ssize_t) i);
                        ASSERT_EQ(ptr_index_find(&x, a, sizeof(Entry), sizes[s], &objects[2 * i + 1]), -1);
                }
                ASSERT_EQ(ptr_index_find(&x, a, sizeof(Entry), sizes[s], NULL), -1);

                /* An entry set to NULL is not found any more; the others still are. */
                if (sizes[s] > 0) {
                        a[0].key = NULL;
                        ASSERT_EQ(ptr_index_find(&x, a, sizeof(Entry), sizes[s], &objects[0]), -1);
                        if (sizes[s] > 1)
                                ASSERT_EQ(ptr_index_find(&x, a, sizeof(Entry), sizes[s], &objects[2]), 1);
                }
                ptr_index_done(&x);
                ASSERT_EQ(x.n_slots, 0);
                free(a);
        }
}

/* The array of pointers itself (stride of one pointer), as Transaction.frees is. */
static void test_plain_pointer_array(void) {
        void *a[64];
        PtrIndex x = {};

        for (size_t n = 1; n <= ELEMENTSOF(a); n++) {
                a[n - 1] = &objects[n * 3];
                ptr_index_added(&x, a, sizeof(void *), n);
        }
        for (size_t i = 0; i < ELEMENTSOF(a); i++)
                ASSERT_EQ(ptr_index_find(&x, a, sizeof(void *), ELEMENTSOF(a), &objects[(i + 1) * 3]), (ssize_t) i);
        ASSERT_EQ(ptr_index_find(&x, a, sizeof(void *), ELEMENTSOF(a), &objects[1]), -1);
        ptr_index_done(&x);
}

int main(void) {
        test_grow_and_find();
        test_plain_pointer_array();
        printf("test-ptr-index: ok\n");
        return 0;
}
