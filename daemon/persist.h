/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Nothing lost on restart (docs/architecture.md, "Persistence and restart"). Persistent ranges are journaled
 * (journal.c) as part of every change, before it commits, and keep one fd each in the
 * service manager's fd store (FDSTORE=1, FDNAME=range-<id>): the dma-buf of a
 * VRAM/GTT buffer, or the memfd of a host range. At start the records and the
 * fds are matched: each fd is checked (a dma-buf of the recorded size, or a
 * memfd of it), imported again at its VA and mapped to its GPUs; owners,
 * holders and tokens come back; fds no record names are dropped; records
 * without an fd are reported lost. Only then does svmd report READY=1.
 *
 * Non-persistent ranges belong to client connections, which a restart ends:
 * like at a client's disconnect, they are gone.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <systemd/sd-bus.h>

#include "journal.h"

typedef struct Manager Manager;
typedef struct Range Range;
typedef struct Token Token;

/*
 * Recover at start, in two calls: persist_begin() starts reading the journal (on a thread of its
 * own) before the kernel side is set up; persist_setup() then restores the ranges, in a job that
 * steps aside for the loop (the watchdog, signals) every slice, and writes the recovered snapshot.
 * persist_setup() runs the loop until it is done; -ECANCELED: SIGTERM came meanwhile, the fd store
 * and the journal are as they were.
 */
int persist_begin(Manager *m);
int persist_setup(Manager *m);
void persist_done(Manager *m);

/*
 * One journal line per committed change: the commit record (docs/architecture.md,
 * "Persistence"). A transaction writes its line before its commit point and rolls back
 * when the line cannot be written; the frees the kernel already did are written into
 * the journal's reserve.
 */
typedef struct PersistBatch {
        json_t *changes;
        int error;              /* building the line failed (-ENOMEM) */
} PersistBatch;

void persist_batch_init(PersistBatch *b);
/* Drop the line unwritten. */
void persist_batch_done(PersistBatch *b);
/* Record the current state of a persistent range (created or changed). */
void persist_batch_put(Manager *m, PersistBatch *b, Range *range);
/* Record that a persistent range is gone. */
void persist_batch_del(Manager *m, PersistBatch *b, uint64_t id);
bool persist_batch_empty(const PersistBatch *b);
/*
 * Write the line (if anything changed) and drop it. Returns the error of a line that could not
 * be written (nothing of it is in the journal then); a compaction follows after the request
 * when the journal has grown or a write failed.
 */
int persist_batch_write(Manager *m, PersistBatch *b, JournalAppendMode mode);
/* The same for a change that happened anyway: into the reserve if need be, logged on failure. */
void persist_batch_commit(Manager *m, PersistBatch *b);
/* The D-Bus error for a line persist_batch_write() could not write (QuotaExceeded when the directory is full). */
int persist_set_error(Manager *m, int k, sd_bus_error *error);

/* Before any kernel work for a new persistent range: is there room for its line? (error set if not) */
int persist_check_room(Manager *m, sd_bus_error *error);

/* Put a new persistent range's fd into the fd store; before its record is written. */
int persist_store_fd(Manager *m, Range *range, sd_bus_error *error);
/* Take it out again (freed, or its creation rolled back). */
void persist_remove_fd(Manager *m, Range *range);
/* A persistent range is gone: its "del" line (unless its transaction wrote it) and its fd. */
void persist_range_gone(Manager *m, Range *range);

/* Compact the journal if it has grown or a compaction failed since the last change. */
void persist_compact(Manager *m);
/*
 * Validation of a request that will change or create a persistent range: while a compaction is
 * due, JOB_RETRY (wait for it with job_wait(), executor.h), else 0.
 */
int persist_wait_compaction(Manager *m);
/* At exit, before the last jobs are drained: nobody waits for a compaction any more. */
void persist_stop_waiting(Manager *m);
/* A transaction touching a persistent range began or ended: a compaction waits for the last one. */
void persist_transaction_opened(Manager *m);
void persist_transaction_closed(Manager *m);
/* Measure the runtime directory's free space; warn when it runs low. */
void persist_check_space(Manager *m);

/*
 * Range ids are never reused, across restarts too: ids are handed out from
 * blocks whose end is journaled before the first id of a block is used.
 */
void persist_reserve_id(Manager *m, uint64_t id);

/* Shorthand for a change outside a transaction (the owner detached). */
void persist_range(Manager *m, Range *range);

/*
 * Share, Attach, Release, revocation: a line with the one token or hold that changed. A new
 * grant returns the error of a line that could not be written (the caller takes it back); a
 * withdrawal is written into the reserve if need be.
 */
int persist_token_added(Manager *m, Token *t);
void persist_token_removed(Manager *m, Range *range, const char *token);
int persist_hold_added(Manager *m, Range *range, uid_t uid, bool read_only);
void persist_hold_removed(Manager *m, Range *range, uid_t uid, bool read_only);
