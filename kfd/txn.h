/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The undo log (docs/architecture.md, "Transactions"). A transaction is a list of completed steps, each
 * with the callback that undoes it. After every step that succeeded the caller
 * adds its undo; on success it commits (the log is dropped), on failure it
 * records what failed and rolls back (undos run newest first).
 *
 *         r = kfd_map(fd, handle, ids, n, &done);
 *         if (done > 0)
 *                 txn_add_undo(t, undo_map, m, free, "unmap range %" PRIu64, id);
 *         if (r < 0)
 *                 return txn_fail(t, r, ids[done], "mapping to GPU 0x%x", ids[done]);
 *
 * An undo that fails even after restarting EINTR is kept, with its errno, on a
 * failed list: the caller marks the object degraded, reports RollbackFailed and
 * retries the list later (txn_retry_failed). Nothing is dropped silently.
 *
 * One growable array holds the log; recording a failed undo never allocates.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define TXN_DESCRIPTION_MAX 96U
#define TXN_UNDO_MAX_RESTARTS 64U

/* Undo one step: 0 or -errno. -EINTR/-EAGAIN are retried (bounded). */
typedef int (*TxnUndoFunc)(void *userdata);
/* Releases userdata once the step is no longer needed (committed, undone). May be NULL. */
typedef void (*TxnFreeFunc)(void *userdata);

typedef struct TxnStep {
        TxnUndoFunc undo;
        void *userdata;
        TxnFreeFunc free_userdata;
        int error;              /* failed undos: the last -errno; 0 otherwise */
        const char *format;     /* what the undo does, a literal with one uint64_t conversion … */
        uint64_t object;        /* … and its argument: "unmap range %" PRIu64 and 7 (txn_step_describe()) */
} TxnStep;

/* The forward step that made the transaction fail. */
typedef struct TxnError {
        int error;              /* -errno; 0: nothing recorded */
        uint32_t gpu_id;        /* 0: not GPU-specific */
        char description[TXN_DESCRIPTION_MAX];  /* "mapping to GPU 0x3a1f" */
} TxnError;

typedef struct Txn Txn;

int txn_new(Txn **ret);
/* Rolls back uncommitted steps, then frees everything, failed undos included. */
Txn *txn_free(Txn *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Txn *, txn_free);
#define _cleanup_txn_ _cleanup_(txn_freep)

/*
 * Record the undo of a step that succeeded. On -ENOMEM the step is STILL
 * recorded (a slot is always reserved ahead), so a rollback undoes it; the
 * caller fails the transaction. format (a literal with exactly one conversion
 * of a uint64_t) and object describe the undo; they are formatted only when
 * the undo fails (txn_step_describe()), never on the way of a step that succeeds.
 */
_printf_(5, 0)
int txn_add_undo(Txn *t, TxnUndoFunc undo, void *userdata, TxnFreeFunc free_userdata, const char *format,
                 uint64_t object);
/* The description of a failed undo ("unmap range 7"), into buf. */
void txn_step_describe(const TxnStep *s, char *buf, size_t size);

/*
 * Record why the transaction fails: the description of the failing forward step
 * ("mapping to GPU 0x3a1f"), the GPU (0 if none) and the -errno. The first
 * record wins (later failures are consequences). Returns error, for
 * "return txn_fail(t, r, …);".
 */
_printf_(4, 5)
int txn_fail(Txn *t, int error, uint32_t gpu_id, const char *format, ...);

/* The recorded failure, or NULL. */
const TxnError *txn_get_error(const Txn *t);

/* "mapping to GPU 0x3a1f failed: Cannot allocate memory" (malloc()ed). -ENODATA if none. */
int txn_error_to_string(const Txn *t, char **ret);

/* Drop the undo log: the steps stay done. Clears a recorded error. */
void txn_commit(Txn *t);

/*
 * Undo all steps, newest first. Returns 0 if every undo succeeded, else the
 * -errno of the first undo that failed; those steps are then on the failed
 * list and every other step has still been undone.
 */
int txn_rollback(Txn *t);

size_t txn_n_steps(const Txn *t);

/* The undos that failed, oldest step first. */
const TxnStep *txn_get_failed(const Txn *t, size_t *ret_n);

/* Run the failed undos again (background retry); those that succeed leave the list. */
int txn_retry_failed(Txn *t);
