/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "txn.h"
#include "unit-assert.h"

/* A failed undo's description, as txn_step_describe() formats it. */
#define ASSERT_STEP(step, expect)                                               \
        do {                                                                    \
                char _d[TXN_DESCRIPTION_MAX];                                   \
                txn_step_describe((step), _d, sizeof(_d));                      \
                ASSERT_STREQ(_d, (expect));                                     \
        } while (false)

/* A fake resource: which steps are undone, in what order, and how undos fail. */
typedef struct Step {
        int id;
        int fail_with;          /* undo returns this … */
        unsigned fail_times;    /* … this many times (UINT_MAX: always) */
        unsigned calls;
        bool freed;
} Step;

static int undo_order[64];
static size_t n_undo_order;

static void reset_order(void) {
        n_undo_order = 0;
}

static int undo_step(void *userdata) {
        Step *s = userdata;

        s->calls++;
        if (s->fail_times > 0) {
                if (s->fail_times != UINT_MAX)
                        s->fail_times--;
                return s->fail_with;
        }
        ASSERT_TRUE(n_undo_order < ELEMENTSOF(undo_order));
        undo_order[n_undo_order++] = s->id;
        return 0;
}

static void free_step(void *userdata) {
        Step *s = userdata;
        s->freed = true;
}

static void test_rollback_reverse_order(void) {
        _cleanup_txn_ Txn *t = NULL;
        Step steps[20] = {};
        char *msg = NULL;

        reset_order();
        ASSERT_OK(txn_new(&t));

        /* More steps than the initial capacity, so the array grows. */
        for (int i = 0; i < 20; i++) {
                steps[i].id = i;
                ASSERT_OK(txn_add_undo(t, undo_step, &steps[i], free_step, "step %" PRIu64, (uint64_t) i));
        }
        ASSERT_EQ(txn_n_steps(t), 20);

        ASSERT_ERROR(txn_fail(t, -ENOMEM, 0x3a1f, "mapping to GPU 0x%x", 0x3a1fU), ENOMEM);
        /* A later failure is a consequence; the first stays. */
        ASSERT_ERROR(txn_fail(t, -EIO, 0x1234, "something else"), EIO);

        ASSERT_OK(txn_rollback(t));
        ASSERT_EQ(n_undo_order, 20);
        for (int i = 0; i < 20; i++) {
                ASSERT_EQ(undo_order[i], 19 - i);
                ASSERT_TRUE(steps[i].freed);
        }
        ASSERT_EQ(txn_n_steps(t), 0);

        ASSERT_NOT_NULL(txn_get_error(t));
        ASSERT_EQ(txn_get_error(t)->error, -ENOMEM);
        ASSERT_UEQ(txn_get_error(t)->gpu_id, 0x3a1f);
        ASSERT_OK(txn_error_to_string(t, &msg));
        ASSERT_STREQ(msg, "mapping to GPU 0x3a1f failed: Cannot allocate memory");
        free(msg);
}

static void test_undo_failure_recorded(void) {
        _cleanup_txn_ Txn *t = NULL;
        Step steps[5] = {};
        const TxnStep *failed;
        size_t n_failed;

        reset_order();
        ASSERT_OK(txn_new(&t));

        for (int i = 0; i < 5; i++)
                steps[i].id = i;
        /* Step 1 fails hard; step 3 is interrupted twice, then succeeds; step 4 fails hard. */
        steps[1].fail_with = -EBUSY;
        steps[1].fail_times = UINT_MAX;
        steps[3].fail_with = -EINTR;
        steps[3].fail_times = 2;
        steps[4].fail_with = -EIO;
        steps[4].fail_times = 1;

        for (int i = 0; i < 5; i++)
                ASSERT_OK(txn_add_undo(t, undo_step, &steps[i], free_step, "unmap range %" PRIu64, (uint64_t) i));

        /* The first failure met (newest step first) is what rollback returns. */
        ASSERT_ERROR(txn_rollback(t), EIO);

        /* Rollback continued past the failures. */
        ASSERT_EQ(n_undo_order, 3);
        ASSERT_EQ(undo_order[0], 3);
        ASSERT_EQ(undo_order[1], 2);
        ASSERT_EQ(undo_order[2], 0);
        ASSERT_EQ(steps[3].calls, 3);
        ASSERT_EQ(steps[1].calls, 1);   /* hard errors are not retried */

        failed = txn_get_failed(t, &n_failed);
        ASSERT_EQ(n_failed, 2);
        ASSERT_STEP(&failed[0], "unmap range 1");
        ASSERT_EQ(failed[0].error, -EBUSY);
        ASSERT_STEP(&failed[1], "unmap range 4");
        ASSERT_EQ(failed[1].error, -EIO);
        ASSERT_FALSE(steps[1].freed);
        ASSERT_FALSE(steps[4].freed);
        ASSERT_TRUE(steps[0].freed && steps[2].freed && steps[3].freed);

        /* Background retry: step 4 now succeeds, step 1 still fails. */
        ASSERT_ERROR(txn_retry_failed(t), EBUSY);
        failed = txn_get_failed(t, &n_failed);
        ASSERT_EQ(n_failed, 1);
        ASSERT_STEP(&failed[0], "unmap range 1");
        ASSERT_TRUE(steps[4].freed);
        ASSERT_EQ(undo_order[n_undo_order - 1], 4);

        /* A second transaction on the same object keeps the old failure apart. */
        steps[2] = (Step) { .id = 42 };
        ASSERT_OK(txn_add_undo(t, undo_step, &steps[2], free_step, "late step %" PRIu64, 42));
        ASSERT_OK(txn_rollback(t));
        ASSERT_EQ(undo_order[n_undo_order - 1], 42);
        failed = txn_get_failed(t, &n_failed);
        ASSERT_EQ(n_failed, 1);
        ASSERT_STEP(&failed[0], "unmap range 1");

        steps[1].fail_times = 0;
        ASSERT_OK(txn_retry_failed(t));
        ASSERT_NULL(txn_get_failed(t, &n_failed));
        ASSERT_EQ(n_failed, 0);
        ASSERT_TRUE(steps[1].freed);
}

static void test_undo_interrupted_forever(void) {
        _cleanup_txn_ Txn *t = NULL;
        Step s = { .id = 1, .fail_with = -EINTR, .fail_times = UINT_MAX };
        size_t n_failed;

        reset_order();
        ASSERT_OK(txn_new(&t));
        ASSERT_OK(txn_add_undo(t, undo_step, &s, NULL, "free range %" PRIu64, 1));
        ASSERT_ERROR(txn_rollback(t), EINTR);
        ASSERT_EQ(s.calls, TXN_UNDO_MAX_RESTARTS);
        ASSERT_NOT_NULL(txn_get_failed(t, &n_failed));
        ASSERT_EQ(n_failed, 1);
}

static void test_commit_drops_log(void) {
        _cleanup_txn_ Txn *t = NULL;
        Step steps[3] = { { .id = 0 }, { .id = 1 }, { .id = 2 } };

        reset_order();
        ASSERT_OK(txn_new(&t));
        for (int i = 0; i < 3; i++)
                ASSERT_OK(txn_add_undo(t, undo_step, &steps[i], free_step, "step %" PRIu64, (uint64_t) i));

        txn_commit(t);
        ASSERT_EQ(txn_n_steps(t), 0);
        for (int i = 0; i < 3; i++) {
                ASSERT_TRUE(steps[i].freed);
                ASSERT_EQ(steps[i].calls, 0);
        }

        /* Nothing left to undo, and freeing undoes nothing. */
        ASSERT_OK(txn_rollback(t));
        t = txn_free(t);
        ASSERT_EQ(n_undo_order, 0);
}

static void test_cleanup_rolls_back(void) {
        Step steps[3] = { { .id = 0 }, { .id = 1 }, { .id = 2 } };

        reset_order();
        {
                _cleanup_txn_ Txn *t = NULL;

                ASSERT_OK(txn_new(&t));
                for (int i = 0; i < 3; i++)
                        ASSERT_OK(txn_add_undo(t, undo_step, &steps[i], free_step, "step %" PRIu64, (uint64_t) i));
                /* Leaving the scope without commit: an early return in a caller. */
        }

        ASSERT_EQ(n_undo_order, 3);
        ASSERT_EQ(undo_order[0], 2);
        ASSERT_EQ(undo_order[1], 1);
        ASSERT_EQ(undo_order[2], 0);
        for (int i = 0; i < 3; i++)
                ASSERT_TRUE(steps[i].freed);
}

static void test_error_without_failure(void) {
        _cleanup_txn_ Txn *t = NULL;
        char *msg = NULL;

        ASSERT_OK(txn_new(&t));
        ASSERT_NULL(txn_get_error(t));
        ASSERT_ERROR(txn_error_to_string(t, &msg), ENODATA);
        ASSERT_NULL(msg);

        /* A long description is truncated, never overflowed. */
        char big[300];
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        ASSERT_ERROR(txn_fail(t, -EINVAL, 0, "%s", big), EINVAL);
        ASSERT_EQ(strlen(txn_get_error(t)->description), TXN_DESCRIPTION_MAX - 1);
}

int main(void) {
        TEST(test_rollback_reverse_order);
        TEST(test_undo_failure_recorded);
        TEST(test_undo_interrupted_forever);
        TEST(test_commit_drops_log);
        TEST(test_cleanup_rolls_back);
        TEST(test_error_without_failure);
        return EXIT_SUCCESS;
}
