/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The journal of committed state under the runtime directory: append-only
 * JSON lines, one per committed change, plus a compacted snapshot.
 *
 *   <dir>/journal         {"seq":N,"changes":[…]}\n …
 *   <dir>/snapshot.json   {"seq":N,"state":…}          (atomic rename)
 *
 * A line is committed once it is completely written; a torn or corrupt tail
 * (a crash mid-write) ends the replay there, with a warning, and is cut off.
 * Lines at or below the snapshot's seq are skipped (a crash between the
 * snapshot's rename and the journal's truncation). What the lines mean is the
 * caller's business (persist.c).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct Journal Journal;

/* Replay callbacks: the snapshot's state (first, if there is one), then each committed line's changes. */
typedef int (*JournalSnapshotFunc)(json_t *state, void *userdata);
typedef int (*JournalReplayFunc)(json_t *changes, void *userdata);

/*
 * Open dir's journal: hand the snapshot to snapshot(), replay the valid lines
 * through replay(), cut off a bad tail, and keep the file open for appending.
 * Warnings (bad snapshot, torn or corrupt tail) go to *ret_warning (caller
 * frees); they never fail the call.
 */
int journal_open(Journal **ret, const char *dir, JournalSnapshotFunc snapshot, JournalReplayFunc replay,
                 void *userdata, char **ret_warning);
Journal *journal_free(Journal *j);
/* Compact once the journal has grown to bytes (the default: JOURNAL_COMPACT_BYTES). */
void journal_set_compact_size(Journal *j, uint64_t bytes);

/*
 * Room kept preallocated behind the journal's end (docs/architecture.md, "Persistence"): a
 * line that must not fail — a free the kernel already did, an id block — may use it, other
 * lines must leave it. On a full directory new persistent state is refused while frees
 * are still written.
 */
#define JOURNAL_RESERVE_BYTES (UINT64_C(16) << 10)

typedef enum JournalAppendMode {
        JOURNAL_APPEND_KEEP_RESERVE,    /* refused (-ENOSPC) unless the reserve stays whole */
        JOURNAL_APPEND_USE_RESERVE,     /* may eat into the reserve */
} JournalAppendMode;

/*
 * Append one committed line with these changes (steals nothing): one write() of one line,
 * into space preallocated before it, so that a full filesystem refuses the line before any
 * of it is written.
 */
int journal_append(Journal *j, json_t *changes, JournalAppendMode mode);

/* Preallocate room for need more bytes plus the reserve. */
int journal_reserve(Journal *j, uint64_t need);
/* The bytes preallocated behind the end (UINT64_MAX where the filesystem cannot preallocate). */
uint64_t journal_reserved(const Journal *j);

/* Whether the journal has grown enough to be worth compacting, or a failed compaction is due again. */
bool journal_wants_compaction(const Journal *j);
/* Have the next journal_wants_compaction() say yes (a write failed: a snapshot may make room). */
void journal_request_compaction(Journal *j);
/* Whether the last compaction failed and is still to be retried. */
bool journal_compaction_pending(const Journal *j);

/* Write state as the new snapshot (tmp + fsync + rename), then start an empty journal. */
int journal_compact(Journal *j, json_t *state);

/*
 * The same, with the state written piece by piece by write_state(), which must
 * produce one JSON value: raw JSON text and values in between, in order. A
 * caller with many records dumps and frees them one at a time instead of
 * building one tree of all of them. A negative return fails the compaction and
 * keeps the old snapshot and journal.
 */
typedef struct JournalWriter JournalWriter;
typedef int (*JournalStateWriteFunc)(JournalWriter *w, void *userdata);
int journal_compact_with(Journal *j, JournalStateWriteFunc write_state, void *userdata);
int journal_write_raw(JournalWriter *w, const char *text);
int journal_write_json(JournalWriter *w, json_t *value);

uint64_t journal_seq(const Journal *j);
