/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A daemon transaction: the kfd/ undo log plus what the daemon needs around it.
 * Every mutating method (and a whole Commit) runs in one:
 *
 *   transaction_new → steps (range_create/map/unmap/free) → transaction_commit
 *                                           ↘ on any failure: transaction_abort
 *
 * Frees are the one irreversible kernel step; they are queued and run by
 * transaction_commit() after every reversible step succeeded. If an undo fails
 * during abort, the ranges concerned become `degraded` with the state they had
 * before the transaction as their goal, the repair timer takes over, and the
 * caller gets RollbackFailed.
 */

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-bus.h>

#include "ptr-index.h"
#include "txn.h"

typedef struct Manager Manager;
typedef struct Range Range;
typedef struct KfdSvmAttrs KfdSvmAttrs;
typedef struct RangeExtra RangeExtra;

typedef struct TouchedRange {
        Range *range;
        bool created;           /* created in this transaction */
        uint64_t mapped_before;
        KfdSvmAttrs *svm_before;        /* svm ranges that existed before: all their attributes */
        /* A range that existed, mapped, without a RangeExtra: where a failed rollback leaves repair
         * heading needs one (range_set_want_mapped()), and a rollback must not allocate. */
        RangeExtra *spare_extra;
        int rollback_error;     /* an undo failed: its errno (negative), for the log */
        uint32_t rollback_gpu;  /* and the GPU it failed on, 0: none in particular */
} TouchedRange;

typedef struct Transaction {
        Manager *manager;
        Txn *txn;
        TouchedRange *touched;
        size_t n_touched, n_touched_allocated;
        PtrIndex touched_index;
        Range **frees;
        size_t n_frees, n_frees_allocated;
        PtrIndex frees_index;
        bool journaled;         /* its commit record is in the journal (persist_prepare()) */
        bool persistent;        /* it touches or frees a persistent range: a snapshot waits for it */
        bool finished;
} Transaction;

int transaction_new(Transaction **ret, Manager *m);
/* Aborts an unfinished transaction. */
Transaction *transaction_free(Transaction *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Transaction *, transaction_free);

/* Remember range's state before its first change in this transaction. */
int transaction_touch(Transaction *t, Range *range, bool created);
/* An undo of range (touched by t) failed with error on gpu_id (0: no GPU in particular): repair
 * takes over. Called by the undos during the rollback; never allocates. */
void transaction_rollback_failed(Transaction *t, Range *range, int error, uint32_t gpu_id);
int transaction_queue_free(Transaction *t, Range *range);
/* Whether range is queued to be freed when t commits. */
bool transaction_frees(const Transaction *t, const Range *range);

/*
 * Run queued frees, drop the undo log, publish (signals, PropertiesChanged).
 * If the first free fails nothing irreversible happened: returns the error
 * (error set) and the caller aborts. A later failing free leaves that range
 * degraded with the repair timer finishing it; the transaction still commits.
 */
int transaction_commit(Transaction *t, sd_bus_error *error);

/*
 * Undo everything. `error` already holds the failure; if an undo fails too it
 * is replaced by RollbackFailed naming the degraded ranges.
 */
void transaction_abort(Transaction *t, sd_bus_error *error);

/*
 * After the last step: r ≥ 0 commits, r < 0 (or a failing commit) aborts. Returns the result,
 * error set on failure: a step ends its transaction with r = transaction_finish(t, r, error).
 */
int transaction_finish(Transaction *t, int r, sd_bus_error *error);

/* Turn the recorded kernel failure into a D-Bus error (OutOfMemory, Busy, Kernel …). */
/* The D-Bus error name for a failed ioctl's errno (docs/dbus-api.md, "Errors"). */
const char *transaction_kernel_error_name(int r);
int transaction_set_kernel_error(Transaction *t, int r, sd_bus_error *error);
