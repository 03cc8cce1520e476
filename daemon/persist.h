/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Nothing lost on restart (SPEC §8). Persistent ranges are journaled
 * (journal.c) after every committed change and keep one fd each in the
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

typedef struct Manager Manager;
typedef struct Range Range;
typedef struct Token Token;

/* Recover at start; opens the journal. */
int persist_setup(Manager *m);
void persist_done(Manager *m);

/* One journal line per committed change. */
typedef struct PersistBatch {
        json_t *changes;
} PersistBatch;

void persist_batch_init(PersistBatch *b);
/* Record the current state of a persistent range (created or changed). */
void persist_batch_put(Manager *m, PersistBatch *b, Range *r);
/* Record that a persistent range is gone, and drop its fd from the store. */
void persist_batch_del(Manager *m, PersistBatch *b, uint64_t id);
/* Write the line (if anything changed), compacting when the journal has grown. */
void persist_batch_commit(Manager *m, PersistBatch *b);

/* Put a new persistent range's fd into the fd store; before its record is written. */
int persist_store_fd(Manager *m, Range *r);

/*
 * Range ids are never reused, across restarts too: ids are handed out from
 * blocks whose end is journaled before the first id of a block is used.
 */
void persist_reserve_id(Manager *m, uint64_t id);

/* Shorthand for a change outside a transaction (the owner detached). */
void persist_range(Manager *m, Range *r);

/* Share, Attach, Release, revocation: a line with the one token or hold that changed. */
void persist_token_added(Manager *m, Token *t);
void persist_token_removed(Manager *m, Range *r, const char *token);
void persist_hold_added(Manager *m, Range *r, uid_t uid, bool read_only);
void persist_hold_removed(Manager *m, Range *r, uid_t uid, bool read_only);
