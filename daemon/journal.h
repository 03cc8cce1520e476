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

/* Append one committed line with these changes (steals nothing). */
int journal_append(Journal *j, json_t *changes);

/* Whether the journal has grown enough to be worth compacting. */
bool journal_wants_compaction(const Journal *j);

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
