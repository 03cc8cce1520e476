/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "txn.h"

#define TXN_INITIAL_STEPS 8U

/*
 * steps[0 .. n_failed) are undos that failed during a rollback, oldest first;
 * steps[n_failed .. n_failed + n_steps) is the live undo log. There is always
 * at least one free slot after it, so txn_add_undo() never loses a step and
 * txn_rollback() never allocates.
 */
struct Txn {
        TxnStep *steps;
        size_t n_failed;
        size_t n_steps;
        size_t n_allocated;
        TxnError error;
};

int txn_new(Txn **ret) {
        _cleanup_free_ Txn *t = NULL;

        assert(ret);

        t = new0(Txn, 1);
        if (!t)
                return -ENOMEM;

        t->steps = new0(TxnStep, TXN_INITIAL_STEPS);
        if (!t->steps)
                return -ENOMEM;
        t->n_allocated = TXN_INITIAL_STEPS;

        *ret = TAKE_PTR(t);
        return 0;
}

static void txn_step_done(TxnStep *s) {
        if (s->free_userdata)
                s->free_userdata(s->userdata);
        *s = (TxnStep) {};
}

Txn *txn_free(Txn *t) {
        if (!t)
                return NULL;

        (void) txn_rollback(t);

        for (size_t i = 0; i < t->n_failed; i++)
                txn_step_done(&t->steps[i]);

        free(t->steps);
        return mfree(t);
}

static int txn_run_undo(TxnStep *s) {
        int r = -EINTR;

        for (unsigned i = 0; i < TXN_UNDO_MAX_RESTARTS; i++) {
                r = s->undo(s->userdata);
                if (r >= 0)
                        return 0;
                if (r != -EINTR && r != -EAGAIN)
                        break;
        }
        return r;
}

static int txn_reserve_slot(Txn *t) {
        TxnStep *s;
        size_t m;

        if (t->n_failed + t->n_steps < t->n_allocated)
                return 0;

        if (__builtin_mul_overflow(t->n_allocated, 2, &m))
                return -ENOMEM;
        s = reallocarray(t->steps, m, sizeof(TxnStep));
        if (!s)
                return -ENOMEM;

        t->steps = s;
        t->n_allocated = m;
        return 0;
}

int txn_add_undo(Txn *t, TxnUndoFunc undo, void *userdata, TxnFreeFunc free_userdata, const char *format,
                 uint64_t object) {
        TxnStep *s;

        assert(t);
        assert(undo);

        if (t->n_failed + t->n_steps >= t->n_allocated && txn_reserve_slot(t) < 0) {
                /*
                 * Only after an earlier -ENOMEM the caller ignored: nowhere to record
                 * the step, so undo it now rather than leak it.
                 */
                TxnStep tmp = { .undo = undo, .userdata = userdata, .free_userdata = free_userdata };

                (void) txn_run_undo(&tmp);
                txn_step_done(&tmp);
                return -ENOMEM;
        }

        s = &t->steps[t->n_failed + t->n_steps++];
        *s = (TxnStep) {
                .undo = undo,
                .userdata = userdata,
                .free_userdata = free_userdata,
                .format = format,
                .object = object,
        };

        /* The step is in; if the spare slot for the next one cannot be had, fail now. */
        return txn_reserve_slot(t);
}

void txn_step_describe(const TxnStep *s, char *buf, size_t size) {
        assert(s);
        assert(buf && size > 0);

        if (!s->format) {
                snprintf(buf, size, "a step");
                return;
        }
        /* txn_add_undo()'s format attribute checked the literal; its one argument is a uint64_t. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(buf, size, s->format, s->object);
#pragma GCC diagnostic pop
}

int txn_fail(Txn *t, int error, uint32_t gpu_id, const char *format, ...) {
        va_list ap;

        assert(t);
        assert(error < 0);

        if (t->error.error != 0)
                return error;

        t->error = (TxnError) {
                .error = error,
                .gpu_id = gpu_id,
        };
        if (format) {
                va_start(ap, format);
                (void) vsnprintf(t->error.description, sizeof(t->error.description), format, ap);
                va_end(ap);
        }
        return error;
}

const TxnError *txn_get_error(const Txn *t) {
        assert(t);

        return t->error.error != 0 ? &t->error : NULL;
}

int txn_error_to_string(const Txn *t, char **ret) {
        char *s;

        assert(t);
        assert(ret);

        if (t->error.error == 0)
                return -ENODATA;

        if (asprintf(&s, "%s failed: %s",
                     t->error.description[0] ? t->error.description : "a step",
                     strerror(-t->error.error)) < 0)
                return -ENOMEM;

        *ret = s;
        return 0;
}

void txn_commit(Txn *t) {
        assert(t);

        for (size_t i = 0; i < t->n_steps; i++)
                txn_step_done(&t->steps[t->n_failed + i]);
        t->n_steps = 0;
        t->error = (TxnError) {};
}

int txn_rollback(Txn *t) {
        size_t base, top;
        int ret = 0;

        assert(t);

        /*
         * Walk the log newest first. Failed steps are packed towards the top of
         * the log (above the cursor, so nothing pending is overwritten), then
         * moved down next to the older failures.
         */
        base = t->n_failed;
        top = base + t->n_steps;
        for (size_t i = base + t->n_steps; i > base; i--) {
                TxnStep *s = &t->steps[i - 1];
                int r;

                r = txn_run_undo(s);
                if (r >= 0) {
                        txn_step_done(s);
                        continue;
                }

                s->error = r;
                if (ret == 0)
                        ret = r;
                t->steps[--top] = *s;
        }

        /* steps[top .. base + n_steps) are the new failures, oldest first. */
        memmove(&t->steps[base], &t->steps[top], (base + t->n_steps - top) * sizeof(TxnStep));
        t->n_failed = base + (base + t->n_steps - top);
        t->n_steps = 0;
        return ret;
}

size_t txn_n_steps(const Txn *t) {
        assert(t);

        return t->n_steps;
}

const TxnStep *txn_get_failed(const Txn *t, size_t *ret_n) {
        assert(t);
        assert(ret_n);

        *ret_n = t->n_failed;
        return t->n_failed > 0 ? t->steps : NULL;
}

int txn_retry_failed(Txn *t) {
        size_t kept = 0;
        int ret = 0;

        assert(t);

        /* Newest first, as in a rollback; the live log above is untouched. */
        for (size_t i = t->n_failed; i > 0; i--) {
                TxnStep *s = &t->steps[i - 1];
                int r;

                r = txn_run_undo(s);
                if (r >= 0) {
                        txn_step_done(s);
                        continue;
                }
                s->error = r;
                if (ret == 0)
                        ret = r;
                kept++;
        }

        /* Compact the survivors to the front, keeping their order. */
        if (kept < t->n_failed) {
                size_t j = 0;

                for (size_t i = 0; i < t->n_failed; i++)
                        if (t->steps[i].undo)
                                t->steps[j++] = t->steps[i];
                memmove(&t->steps[j], &t->steps[t->n_failed], t->n_steps * sizeof(TxnStep));
                t->n_failed = j;
        }
        return ret;
}
