/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "log.h"
#include "manager.h"
#include "metrics.h"
#include "persist.h"
#include "range-svm.h"
#include "range.h"
#include "svmd-protocol.h"
#include "transaction.h"

int transaction_new(Transaction **ret, Manager *m) {
        _cleanup_free_ Transaction *t = NULL;
        int r;

        t = calloc(1, sizeof(Transaction));
        if (!t)
                return -ENOMEM;
        t->manager = m;
        r = txn_new(&t->txn);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

Transaction *transaction_free(Transaction *t) {
        if (!t)
                return NULL;
        if (!t->finished)
                transaction_abort(t, NULL);
        txn_free(t->txn);
        for (size_t i = 0; i < t->n_touched; i++) {
                free(t->touched[i].svm_before);
                free(t->touched[i].spare_extra);
        }
        free(t->touched);
        ptr_index_done(&t->touched_index);
        free(t->frees);
        ptr_index_done(&t->frees_index);
        if (t->persistent)
                persist_transaction_closed(t->manager);
        free(t);
        return NULL;
}

/* The ranges are the keys of their PtrIndex. */
_Static_assert(offsetof(TouchedRange, range) == 0, "TouchedRange.range must come first");

static TouchedRange *find_touched(Transaction *t, Range *range) {
        ssize_t i = ptr_index_find(&t->touched_index, t->touched, sizeof(TouchedRange), t->n_touched, range);

        return i >= 0 ? &t->touched[i] : NULL;
}

/* The snapshot leaves out what only a persistent range's transaction could make wrong. */
static void note_persistent(Transaction *t, const Range *range) {
        if (range->persistent && !t->persistent) {
                t->persistent = true;
                persist_transaction_opened(t->manager);
        }
}

int transaction_touch(Transaction *t, Range *range, bool created) {
        _cleanup_free_ KfdSvmAttrs *svm_before = NULL;
        RangeExtra *spare_extra = NULL;
        uint64_t mapped_before = created ? 0 : range_mapped_any(range);

        if (find_touched(t, range))
                return 0;
        note_persistent(t, range);
        if (t->n_touched == t->n_touched_allocated) {
                size_t n = t->n_touched_allocated ? t->n_touched_allocated * 2 : 4;
                TouchedRange *nt = reallocarray(t->touched, n, sizeof(TouchedRange));
                if (!nt)
                        return -ENOMEM;
                t->touched = nt;
                t->n_touched_allocated = n;
        }
        if (!created && range_svm(range)) {
                /* Where a failed rollback leaves repair heading. */
                svm_before = malloc(sizeof(KfdSvmAttrs));
                if (!svm_before)
                        return -ENOMEM;
                *svm_before = range_svm(range)->attrs;
        }
        if (mapped_before != 0 && !range->extra) {
                spare_extra = range_extra_new();
                if (!spare_extra)
                        return -ENOMEM;
        }
        t->touched[t->n_touched++] = (TouchedRange) {
                .range = range,
                .created = created,
                .mapped_before = mapped_before,
                .svm_before = TAKE_PTR(svm_before),
                .spare_extra = spare_extra,
        };
        ptr_index_added(&t->touched_index, t->touched, sizeof(TouchedRange), t->n_touched);
        return 0;
}

int transaction_queue_free(Transaction *t, Range *range) {
        if (transaction_frees(t, range))
                return 0;
        note_persistent(t, range);
        if (t->n_frees == t->n_frees_allocated) {
                size_t n = t->n_frees_allocated ? t->n_frees_allocated * 2 : 4;
                Range **nf = reallocarray(t->frees, n, sizeof(Range *));
                if (!nf)
                        return -ENOMEM;
                t->frees = nf;
                t->n_frees_allocated = n;
        }
        t->frees[t->n_frees++] = range;
        ptr_index_added(&t->frees_index, t->frees, sizeof(Range *), t->n_frees);
        return 0;
}

bool transaction_frees(const Transaction *t, const Range *range) {
        /* A free finished in the background (transaction_commit()) is NULL there: not found. */
        return ptr_index_find(&t->frees_index, t->frees, sizeof(Range *), t->n_frees, range) >= 0;
}

const char *transaction_kernel_error_name(int r) {
        switch (r) {
        case -ENOMEM:
        case -ENOSPC:
                return SVMD_ERROR_OUT_OF_MEMORY;
        case -EBUSY:
                return SVMD_ERROR_BUSY;
        case -ENODEV:
        case -ENXIO:
                return SVMD_ERROR_DEVICE_LOST;
        case -EOPNOTSUPP:
                return SVMD_ERROR_NOT_SUPPORTED;
        default:
                return SVMD_ERROR_KERNEL;
        }
}

int transaction_set_kernel_error(Transaction *t, int r, sd_bus_error *error) {
        _cleanup_free_ char *msg = NULL;
        const char *name = transaction_kernel_error_name(r);
        const TxnError *e = txn_get_error(t->txn);
        uint64_t range_id = t->n_touched > 0 ? t->touched[t->n_touched - 1].range->id : 0;
        uint32_t gpu_id = e ? e->gpu_id : 0;

        if (txn_error_to_string(t->txn, &msg) < 0) {
                msg = strdup(strerror(-r));
                if (!msg)
                        return -ENOMEM;
        }

        /* Once per failed kernel call, for the operator: what failed where (the caller undoes the
         * rest, and says so only if that fails too). The client gets the same words. */
        char gpu[32] = "";

        if (gpu_id != 0)
                snprintf(gpu, sizeof(gpu), ", GPU 0x%x", gpu_id);
        log_fields(LOG_WARNING, &((LogFields) { .range_id = range_id, .gpu_id = gpu_id }),
                   "Kernel call failed, rolling back: %s (range %" PRIu64 "%s, %s).", msg, range_id, gpu,
                   strerrorname_np(-r) ?: "unknown errno");

        /* The GPU's VM is gone (reset, hot-unplug): tell whoever watches. */
        if ((r == -ENODEV || r == -ENXIO) && txn_get_error(t->txn) && txn_get_error(t->txn)->gpu_id != 0)
                manager_emit_gpu_lost(t->manager, txn_get_error(t->txn)->gpu_id);

        /* Every message is a sentence. */
        sd_bus_error_setf(error, name, "%c%s.", msg[0] >= 'a' && msg[0] <= 'z' ? msg[0] - 'a' + 'A' : msg[0],
                          msg + 1);
        return r;
}

/*
 * The commit record (docs/architecture.md, "Persistence"): new persistent ranges go to the fd
 * store, then one journal line names every persistent range this transaction creates, changes or
 * frees — before the first irreversible step (a free) and before anything is published or
 * answered. When that cannot be done the caller rolls back and nothing changed. A transaction that
 * only frees is the exception: freeing must work on a full directory (it is how room is made), so
 * its line may use the journal's reserve, and if even that fails the frees happen anyway and the
 * ranges' fds leave the fd store (persist_range_gone()), which keeps a restart from bringing them
 * back.
 */
static int persist_prepare(Transaction *t, sd_bus_error *error) {
        Manager *m = t->manager;
        PersistBatch b;
        bool puts = false;
        int k;

        if (m->recovering || !m->journal)
                return 0;
        persist_batch_init(&b);
        for (size_t i = 0; i < t->n_touched; i++) {
                Range *range = t->touched[i].range;

                if (!range->persistent || transaction_frees(t, range))
                        continue;
                if (t->touched[i].created) {
                        k = persist_store_fd(m, range, error);
                        if (k < 0) {
                                persist_batch_done(&b);
                                return k;
                        }
                }
                persist_batch_put(m, &b, range);
                puts = true;
        }
        for (size_t i = 0; i < t->n_frees; i++)
                if (t->frees[i]->persistent)
                        persist_batch_del(m, &b, t->frees[i]->id);
        if (persist_batch_empty(&b))
                return 0;

        k = persist_batch_write(m, &b, puts ? JOURNAL_APPEND_KEEP_RESERVE : JOURNAL_APPEND_USE_RESERVE);
        if (k < 0 && puts)
                return persist_set_error(m, k, error);
        if (k < 0) {
                log_error_errno(k, "Journaling a free in %s failed; the range is freed anyway and its fd leaves the "
                                "fd store, so a restart before the next compaction lists it as lost: %m",
                                m->runtime_dir);
                return 0;
        }
        t->journaled = true;
        for (size_t i = 0; i < t->n_frees; i++)
                t->frees[i]->gone_journaled = t->frees[i]->persistent;
        return 0;
}

/*
 * A rollback after the commit record was written (the first free failed): a line that takes back
 * what the record said (created ranges deleted, the others as they are again), into the reserve
 * if need be.
 */
static void persist_compensate(Transaction *t, PersistBatch *b) {
        Manager *m = t->manager;

        for (size_t i = 0; i < t->n_touched; i++)
                if (!t->touched[i].created && t->touched[i].range->persistent)
                        persist_batch_put(m, b, t->touched[i].range);
        for (size_t i = 0; i < t->n_frees; i++) {
                Range *range = t->frees[i];

                if (!range || !range->persistent || !range->gone_journaled)
                        continue;
                range->gone_journaled = false;
                if (!find_touched(t, range))
                        persist_batch_put(m, b, range);
        }
        persist_batch_commit(m, b);
}

static void set_rollback_failed(Transaction *t, sd_bus_error *error, const char *ids) {
        _cleanup_free_ char *first = NULL;
        const TxnStep *failed;
        size_t n_failed = 0;
        char undo[256] = "";

        failed = txn_get_failed(t->txn, &n_failed);
        if (n_failed > 0)
        if (n_failed > 0) {
                char what[TXN_DESCRIPTION_MAX];

                txn_step_describe(&failed[0], what, sizeof(what));
                snprintf(undo, sizeof(undo), " (%s: %s)", what, strerror(-failed[0].error));
        }

        if (!error)
                return;
        if (sd_bus_error_is_set(error))
                first = strdup(error->message ?: error->name);
        sd_bus_error_free(error);
        sd_bus_error_setf(error, SVMD_ERROR_ROLLBACK_FAILED,
                          "%s%sUndoing it failed as well%s; range %s is degraded and svmd keeps repairing it in the background.",
                          strempty(first), first ? " " : "", undo, ids);
}

void transaction_rollback_failed(Transaction *t, Range *range, int error, uint32_t gpu_id) {
        TouchedRange *tr = find_touched(t, range);

        /* Every step touches its range first (transaction_touch()). */
        assert(tr);
        range->rollback_failed = true;
        tr->rollback_error = error;
        tr->rollback_gpu = gpu_id;
}

void transaction_abort(Transaction *t, sd_bus_error *error) {
        Manager *m = t->manager;
        char ids[256] = "";
        size_t o = 0;
        bool degraded = false;
        PersistBatch b;

        if (t->finished)
                return;
        t->finished = true;

        (void) txn_rollback(t->txn);

        persist_batch_init(&b);
        for (size_t i = 0; i < t->n_touched; i++) {
                TouchedRange *tr = &t->touched[i];
                Range *range = tr->range;

                if (t->journaled && range->persistent && tr->created)
                        persist_batch_del(m, &b, range->id);
                if (tr->created && range->fd_stored && !range->rollback_failed)
                        persist_remove_fd(m, range);

                if (range->rollback_failed) {
                        range->rollback_failed = false;
                        if (range->state != RANGE_STATE_DEGRADED) {
                                range->state = RANGE_STATE_DEGRADED;
                                m->n_degraded++;
                        }
                        range->want_gone = tr->created;
                        if (tr->mapped_before != 0)
                                range_extra_adopt(range, TAKE_PTR(tr->spare_extra));
                        range_set_want_mapped(range, tr->mapped_before);
                        if (range_svm(range) && tr->svm_before)
                                range_svm(range)->want = *tr->svm_before;
                        degraded = true;
                        range_emit_changed(range, (const char *const[]) { "State", "MappedGpus", NULL });
                        if (o < sizeof(ids))
                                o += (size_t) snprintf(ids + o, sizeof(ids) - o, "%s%" PRIu64, o ? ", " : "", range->id);
                        char gpu[32] = "";

                        if (tr->rollback_gpu != 0)
                                snprintf(gpu, sizeof(gpu), "GPU 0x%x, ", tr->rollback_gpu);
                        log_fields(LOG_WARNING, &((LogFields) { .range_id = range->id, .gpu_id = tr->rollback_gpu }),
                                   "Rolling back a change of range %" PRIu64 " failed (%s%s); it is degraded "
                                   "until repaired.", range->id, gpu,
                                   strerrorname_np(-tr->rollback_error) ?: "unknown errno");
                } else if (tr->created)
                        range_free_struct(range); /* every undo ran: it is out of all tables */
        }
        if (t->journaled)
                persist_compensate(t, &b);
        else
                persist_batch_done(&b);

        metrics_rollback(m->metrics, degraded);
        if (degraded) {
                set_rollback_failed(t, error, ids);
                manager_schedule_repair(m);
        }
}

/*
 * Signals for what changed. Per range right away; the counters of GPUs and of
 * the manager are coalesced (manager_properties_dirty(): at most one
 * PropertiesChanged each per 50 ms), so a burst of requests announces them once.
 */
static void publish(Transaction *t) {
        Manager *m = t->manager;
        static const char *const range_props[] = { "MappedGpus", "State", NULL };
        static const char *const svm_props[] = { "MappedGpus", "State", "SvmAttributes", NULL };
        /* A range's signals go to subscribers only (manager_send_about_range()): without any,
         * a Commit of many ranges should not build a path and a message list per range. */
        bool signals = m->subscribers != NULL;
        uint64_t gpus_changed = 0;
        bool counts_changed = false;

        for (size_t i = 0; i < t->n_touched; i++) {
                TouchedRange *tr = &t->touched[i];
                Range *range = tr->range;

                gpus_changed |= tr->mapped_before | (UINT64_C(1) << range->home);
                if (transaction_frees(t, range))
                        continue;
                gpus_changed |= range_mapped_any(range);
                counts_changed = counts_changed || tr->created;
                if (!signals)
                        continue;
                if (tr->created)
                        manager_emit_range_created(m, range);
                else if (range_svm(range) && tr->svm_before && !kfd_svm_attrs_equal(&range_svm(range)->attrs, tr->svm_before))
                        range_emit_changed(range, svm_props);
                else if (range_mapped_any(range) != tr->mapped_before)
                        range_emit_changed(range, range_props);
        }
        if (t->n_frees > 0)
                counts_changed = true;

        manager_properties_dirty(m, gpus_changed, counts_changed);
}

int transaction_commit(Transaction *t, sd_bus_error *error) {
        Manager *m = t->manager;
        bool irreversible = false;
        int k;

        k = persist_prepare(t, error);
        if (k < 0)
                return k;

        /* Frees last: FREE is the one step that cannot be undone. */
        for (size_t i = 0; i < t->n_frees; i++) {
                Range *range = t->frees[i];
                uint32_t failed_gpu = 0;
                bool any_freed = false;

                k = range_release_kernel(range, &failed_gpu);
                if (k >= 0) {
                        irreversible = true;
                        continue;
                }

                /* A batch range may have lost some pieces before the failing one: those frees
                 * cannot be undone, so this one must be finished rather than rolled back. */
                for (uint32_t p = 0; p < range->n_pieces; p++)
                        any_freed = any_freed || !range_piece_allocated(&range->pieces[p]);

                if (!irreversible && !any_freed) {
                        /* Nothing irreversible happened yet: the caller rolls everything back. */
                        (void) txn_fail(t->txn, k, failed_gpu, "freeing range %" PRIu64, range->id);
                        return transaction_set_kernel_error(t, k, error);
                }

                /* Past the point of no return: finish this free in the background. */
                log_fields(LOG_WARNING, &((LogFields) { .range_id = range->id, .gpu_id = failed_gpu }),
                           "Freeing range %" PRIu64 " failed (%s); it is degraded and freed in the background.",
                           range->id, strerror(-k));
                if (range->state != RANGE_STATE_DEGRADED) {
                        range->state = RANGE_STATE_DEGRADED;
                        m->n_degraded++;
                }
                range->want_gone = true;
                range_set_want_mapped(range, 0);
                /* The free is acknowledged: a restart must not bring it back. */
                persist_range_gone(m, range);
                manager_schedule_repair(m);
                t->frees[i] = NULL;
                irreversible = true;
        }

        txn_commit(t->txn);
        t->finished = true;

        publish(t);

        for (size_t i = 0; i < t->n_frees; i++)
                if (t->frees[i])
                        range_destroy(t->frees[i]);

        manager_update_status(m);
        return 0;
}

int transaction_finish(Transaction *t, int r, sd_bus_error *error) {
        if (r >= 0)
                r = transaction_commit(t, error);
        if (r < 0)
                transaction_abort(t, error);
        return r;
}
