/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "client.h"
#include "executor.h"
#include "gpu.h"
#include "id-table.h"
#include "journal.h"
#include "kfd-ioctl.h"
#include "log.h"
#include "manager.h"
#include "persist.h"
#include "range-svm.h"
#include "range.h"
#include "size-util.h"
#include "str-table.h"
#include "svmd-protocol.h"
#include "transaction.h"
#include "va-space.h"

/* Names of older versions, still recognized: "range-<id>". */
#define FDNAME_PREFIX "range-"

static uint64_t now_usec_monotonic(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

/* How a stored fd is found: by its slot name, by the "range-<id>" of older versions, or not at all. */
typedef enum StoredFdKind {
        STORED_FD_SLOT,
        STORED_FD_LEGACY,
        STORED_FD_UNKNOWN,
} StoredFdKind;

typedef struct StoredFd {
        StoredFdKind kind;
        uint64_t key;           /* the slot, or the range id of a legacy name */
        char *name;
        int fd;
        bool claimed;
} StoredFd;

/*
 * A recovery in steps (docs/architecture.md, "Persistence and restart"), none of them one long
 * dispatch of the loop: the journal is read on a thread of its own while the kernel side is set
 * up; the ranges are restored, and the recovered state written as the snapshot, in a job that
 * steps aside every EXECUTOR_SLICE_USEC, so the watchdog and signals are served throughout.
 */
typedef struct Recovery {
        Manager *m;
        json_t *ranges;         /* "id" → range record */
        uint64_t next_id;
        uint64_t t0;
        uint64_t parse_usec, restore_usec, snapshot_usec;      /* for the log line at the end */

        /* reading the journal */
        pthread_t thread;
        bool thread_running;
        int efd;                /* written by the thread when it is done */
        sd_event_source *efd_source;
        bool parsed;
        int parse_result;
        Journal *journal;
        char *warning;

        /* restoring */
        StoredFd *fds;
        size_t n_fds;
        uint64_t *ids;
        size_t n_ids, next, restored;
        bool out_of_memory, cancelled, job_done;
        /* writing the recovered snapshot, a slice at a time; a change journaled meanwhile (a GPU reset
         * degrading a range) is in the tables, and the snapshot is written again after it */
        bool in_snapshot, lines_deferred;
} Recovery;

/* ---- range ↔ JSON ---- */

static json_t *mask_to_json(Manager *m, uint64_t mask) {
        json_t *a = json_array();
        Gpu *g;

        if (!a)
                return NULL;
        FOREACH_GPU_IN_MASK(g, m, mask)
                json_array_append_new(a, json_integer(g->gpu_id));
        return a;
}

static json_t *token_to_json(const Token *t) {
        json_t *tj = json_pack("{sssbsI}", "token", t->token, "read-only", t->read_only, "expires-usec",
                               (json_int_t) t->expires_usec);

        if (tj && t->has_uid)
                json_object_set_new(tj, "uid", json_integer(t->uid));
        if (tj && t->unit)
                json_object_set_new(tj, "unit", json_string(t->unit));
        if (tj && t->cgroup)
                json_object_set_new(tj, "cgroup", json_string(t->cgroup));
        return tj;
}

static json_t *hold_to_json(uid_t uid, bool read_only) {
        return json_pack("{sIsb}", "uid", (json_int_t) uid, "read-only", read_only);
}

/* The name range's fd has in the store. */
static const char *stored_fd_name(Range *range, char buf[static 32]) {
        char slot[FD_SLOT_NAME_MAX];

        if (range->fd_slot == FD_SLOT_LEGACY)
                snprintf(buf, 32, FDNAME_PREFIX "%" PRIu64, range->id);
        else
                snprintf(buf, 32, "%s", fd_slot_name(range->fd_slot, slot));
        return buf;
}

static json_t *range_to_json(Range *range) {
        Manager *m = range->manager;
        json_t *tokens = json_array(), *holders = json_array(), *o;

        for (Token *t = range_tokens(range); t; t = t->range_next)
                json_array_append_new(tokens, token_to_json(t));
        for (Hold *h = range_holds(range); h; h = h->range_next)
                json_array_append_new(holders, hold_to_json(h->uid, h->read_only));

        o = json_pack("{sIsIsIsssIsIsosbsoso}",
                      "id", (json_int_t) range->id,
                      "va", (json_int_t) range_va(range),
                      "size", (json_int_t) range_size(range),
                      "domain", range_domain_to_string(range->domain),
                      "home", (json_int_t) m->gpus[range->home]->gpu_id,
                      "flags", (json_int_t) range->flags,
                      /* a degraded range is recorded as where its repair is heading */
                      "mapped", mask_to_json(m, range->state == RANGE_STATE_DEGRADED ? range_want_mapped(range) : range_mapped(range)),
                      "detached", range->owner_detached,
                      "holders", holders,
                      "tokens", tokens);
        if (!o)
                return NULL;
        if (range->owner)
                json_object_set_new(o, "owner", json_pack("{sIssss}", "uid", (json_int_t) range->owner->uid, "unit",
                                                          range->owner->unit, "cgroup", range->owner->cgroup));
        if (range_label(range))
                json_object_set_new(o, "label", json_string(range_label(range)));
        if (range->fd_stored) {
                char name[32];

                json_object_set_new(o, "fd", json_string(stored_fd_name(range, name)));
        }
        if (range_request_id(range))
                json_object_set_new(o, "request-id", json_string(range_request_id(range)));
        if (range_request_id(range) && range_request_digest(range) != 0) {
                char hex[17];

                snprintf(hex, sizeof(hex), "%016" PRIx64, range_request_digest(range));
                json_object_set_new(o, "request-digest", json_string(hex));
        }
        if (range_svm(range))
                json_object_set_new(o, "svm", svm_attrs_to_json(range->state == RANGE_STATE_DEGRADED ? &range_svm(range)->want
                                                                                                : &range_svm(range)->attrs));
        return o;
}

/* ---- the fd store ---- */

int persist_store_fd(Manager *m, Range *range, sd_bus_error *error) {
        _cleanup_close_ int fd = -EBADF;
        char msg[64], name[32];
        uint32_t slot;
        int k;

        if (!m->fdstore || range->fd_stored)
                return 0;
        k = fd_slots_take(&m->fd_slots, &slot);
        if (k < 0)
                return sd_bus_error_set_errnof(error, k, "The fd store has no name left for range %" PRIu64
                                               "'s fd (%u are in use, the most LISTEN_FDNAMES can pass).",
                                               range->id, FD_SLOTS_MAX);
        k = range_export_fd(range, false, &fd, error);
        if (k < 0) {
                fd_slots_release(&m->fd_slots, slot);
                return k;
        }
        range->fd_slot = slot;
        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", stored_fd_name(range, name));
        k = sd_pid_notify_with_fds(0, false, msg, &fd, 1);
        if (k <= 0) {
                fd_slots_release(&m->fd_slots, slot);
                k = k < 0 ? k : -ENOTCONN;
                return sd_bus_error_set_errnof(error, k, "Handing range %" PRIu64 "'s fd to the service manager's "
                                               "fd store failed (%s); the range could not survive a restart.",
                                               range->id, strerror(-k));
        }
        range->fd_stored = true;
        m->n_stored_fds++;
        m->fdnames_bytes += strlen(name) + 1;
        return 0;
}

void persist_remove_fd(Manager *m, Range *range) {
        char name[32];

        if (!range->fd_stored)
                return;
        range->fd_stored = false;
        m->n_stored_fds--;
        (void) sd_notifyf(false, "FDSTOREREMOVE=1\nFDNAME=%s", stored_fd_name(range, name));
        m->fdnames_bytes -= strlen(name) + 1;
        if (range->fd_slot != FD_SLOT_LEGACY)
                fd_slots_release(&m->fd_slots, range->fd_slot);
}

/* ---- journal batches ---- */

void persist_batch_init(PersistBatch *b) {
        b->changes = NULL;
        b->error = 0;
}

void persist_batch_done(PersistBatch *b) {
        json_decref(b->changes);
        b->changes = NULL;
}

static void batch_add(PersistBatch *b, json_t *change) {
        if (!change) {
                b->error = -ENOMEM;
                return;
        }
        if (!b->changes)
                b->changes = json_array();
        if (!b->changes || json_array_append_new(b->changes, change) < 0)
                b->error = -ENOMEM;
}

void persist_batch_put(Manager *m, PersistBatch *b, Range *range) {
        if (!m->journal || !range->persistent)
                return;
        batch_add(b, json_pack("{ssso}", "op", "put", "range", range_to_json(range)));
}

void persist_batch_del(Manager *m, PersistBatch *b, uint64_t id) {
        if (!m->journal)
                return;
        batch_add(b, json_pack("{sssI}", "op", "del", "id", (json_int_t) id));
}

bool persist_batch_empty(const PersistBatch *b) {
        return !b->changes && b->error == 0;
}

/*
 * The state for a snapshot, {"next-id":N,"ranges":{"<id>":record,…}}, one
 * record at a time: each is dumped and freed before the next is built, so no
 * tree of every range is built and freed (at 10^4 ranges that was a third of
 * the post-restart snapshot). A record that cannot be built fails the
 * snapshot rather than leaving the range out of it.
 */
static int write_state(JournalWriter *w, void *userdata) {
        Manager *m = userdata;
        char buf[64];
        bool first = true;
        int k;

        snprintf(buf, sizeof(buf), "{\"next-id\":%" PRIu64 ",\"ranges\":{", MAX(m->ids_reserved, m->next_range_id));
        k = journal_write_raw(w, buf);
        for (Range *range = manager_ranges_from(m, 0); k >= 0 && range; range = manager_ranges_next(m, range)) {
                json_t *o;

                /* Freed as far as the journal knows, though the kernel may still hold it. */
                if (!range->persistent || range->want_gone || range->gone_journaled)
                        continue;
                o = range_to_json(range);
                if (!o)
                        return -ENOMEM;
                snprintf(buf, sizeof(buf), "%s\"%" PRIu64 "\":", first ? "" : ",", range->id);
                first = false;
                k = journal_write_raw(w, buf);
                if (k >= 0)
                        k = journal_write_json(w, o);
                json_decref(o);
                /* The snapshot after a recovery runs in its job: 10^4 records are not one dispatch.
                 * Nothing else changes the tables meanwhile (nobody is connected yet). Elsewhere: nothing. */
                if (m->recovery)
                        job_maybe_yield();
        }
        if (k < 0)
                return k;
        return journal_write_raw(w, "}}");
}

#define ID_BLOCK 4096U

void persist_reserve_id(Manager *m, uint64_t id) {
        PersistBatch b;

        if (!m->journal || m->recovering || id < m->ids_reserved)
                return;
        persist_batch_init(&b);
        batch_add(&b, json_pack("{sssI}", "op", "next-id", "value", (json_int_t) (id + ID_BLOCK)));
        /* A small line every 4096 ids, for persistent and other ranges alike: it may use the reserve.
         * If even that fails, the block is not taken and the next range tries again. */
        if (persist_batch_write(m, &b, JOURNAL_APPEND_USE_RESERVE) >= 0)
                m->ids_reserved = id + ID_BLOCK;
}

static int on_compact(sd_event_source *s, void *userdata) {
        Manager *m = userdata;

        m->compact_event = sd_event_source_disable_unref(m->compact_event);
        persist_compact(m);
        return 0;
}

/*
 * Compaction snapshots svmd's tables, so it never runs inside a transaction (whose changes are in
 * the tables before they commit or roll back): it is deferred to the loop, after the request.
 * False: none will run.
 */
static bool schedule_compaction(Manager *m) {
        int k;

        if (m->compact_event)
                return true;
        if (!m->event || m->recovering)
                return false;
        k = sd_event_add_defer(m->event, &m->compact_event, on_compact, m);
        if (k < 0) {
                log_warning_errno(k, "Scheduling a compaction of the journal failed, ignoring: %m");
                return false;
        }
        return true;
}

/*
 * A compaction is due and waits for the open transactions of persistent ranges: new ones wait
 * for it (persist_wait_compaction()), so that a steady stream of them cannot put it off for ever.
 */
static void compaction_due(Manager *m) {
        if (m->compact_deferred)
                return;
        m->compact_deferred = true;
        if (m->executor)
                executor_claim_hold(m->executor, &m->compact_gate);
}

static void compaction_done(Manager *m) {
        if (!m->compact_deferred)
                return;
        m->compact_deferred = false;
        if (m->compact_gate.job)
                executor_claim_release(m->executor, &m->compact_gate);
}

int persist_wait_compaction(Manager *m) {
        return job_claim_check(&m->compact_gate);
}

void persist_stop_waiting(Manager *m) {
        compaction_done(m);
}

/*
 * The runtime directory's free space, after every write: a warning when it gets low (and when it
 * recovers), the numbers for STATUS= and svmctl status.
 */
#define RUNTIME_LOW_BYTES (4 * JOURNAL_RESERVE_BYTES)

void persist_check_space(Manager *m) {
        struct statvfs sv;
        bool low;

        if (!m->runtime_dir || statvfs(m->runtime_dir, &sv) < 0)
                return;
        m->runtime_free = (uint64_t) sv.f_bavail * sv.f_frsize;
        m->runtime_size = (uint64_t) sv.f_blocks * sv.f_frsize;
        low = m->runtime_free < RUNTIME_LOW_BYTES || m->runtime_free < m->runtime_size / 20 ||
              (m->journal && journal_reserved(m->journal) < JOURNAL_RESERVE_BYTES);
        if (low && !m->runtime_low)
                log_warning("The runtime directory %s is running out of space (%s free of %s): new persistent "
                            "ranges and changes to them are refused once the journal cannot grow.",
                            m->runtime_dir, FORMAT_BYTES(m->runtime_free), FORMAT_BYTES(m->runtime_size));
        else if (!low && m->runtime_low)
                log_info("The runtime directory %s has room again (%s free).", m->runtime_dir,
                         FORMAT_BYTES(m->runtime_free));
        if (low != m->runtime_low) {
                m->runtime_low = low;
                manager_update_status(m);
        }
}

void persist_compact(Manager *m) {
        int k;

        if (!m->journal || !journal_wants_compaction(m->journal) ||
            (m->recovery && m->recovery->in_snapshot)) {
                /* Not needed any more, or the recovery writes one (and another if something changed
                 * meanwhile): nobody waits. */
                compaction_done(m);
                return;
        }
        /*
         * A transaction that stepped aside for the kernel (docs/architecture.md, "The kernel
         * executor") has changed the tables but not written its record yet, or has written it and
         * not finished its frees: a snapshot now would keep what it may still roll back, or bring
         * back what the journal already says is freed. It runs once the last one has ended.
         */
        if (m->n_transactions_open > 0) {
                compaction_due(m);
                return;
        }
        k = journal_compact_with(m->journal, write_state, m);
        if (k < 0)
                log_warning_errno(k, "Compacting the journal in %s failed; the journal stays as it is and "
                                  "compaction is retried after the next change: %m", m->runtime_dir);
        persist_check_space(m);
        compaction_done(m);
}

void persist_transaction_opened(Manager *m) {
        m->n_transactions_open++;
}

void persist_transaction_closed(Manager *m) {
        assert(m->n_transactions_open > 0);
        /* The gate stays closed until the compaction has run, unless none will. */
        if (--m->n_transactions_open == 0 && m->compact_deferred && !schedule_compaction(m))
                compaction_done(m);
}

int persist_batch_write(Manager *m, PersistBatch *b, JournalAppendMode mode) {
        int k = b->error;

        if (!m->journal || !b->changes) {
                persist_batch_done(b);
                return k;
        }
        if (m->recovery && m->recovery->in_snapshot) {
                /* The recovery's snapshot is being written a slice at a time and the journal is reset after
                 * it: this change, in the tables already, goes into a second snapshot right after it. */
                m->recovery->lines_deferred = true;
                persist_batch_done(b);
                return k;
        }
        if (k >= 0)
                k = journal_append(m->journal, b->changes, mode);
        persist_batch_done(b);
        if (k < 0)
                /* A snapshot may be smaller than the journal it replaces: try one after this request. */
                journal_request_compaction(m->journal);
        if (k < 0 || journal_wants_compaction(m->journal))
                schedule_compaction(m);
        if (k < 0 || m->runtime_low || journal_reserved(m->journal) < JOURNAL_RESERVE_BYTES)
                persist_check_space(m);
        return k;
}

/* Room for a range's line (a few KiB) behind the reserve, asked for before any kernel work. */
#define PERSIST_ROOM_BYTES UINT64_C(4096)

int persist_check_room(Manager *m, sd_bus_error *error) {
        int k;

        if (!m->journal || m->recovering)
                return 0;
        k = journal_reserve(m->journal, PERSIST_ROOM_BYTES);
        if (k < 0) {
                journal_request_compaction(m->journal);
                schedule_compaction(m);
                return persist_set_error(m, k, error);
        }
        return 0;
}

int persist_set_error(Manager *m, int k, sd_bus_error *error) {
        if (k == -ENOSPC || k == -EDQUOT) {
                persist_check_space(m);
                return sd_bus_error_setf(error, SVMD_ERROR_QUOTA_EXCEEDED,
                                         "svmd's runtime directory %s is full (%s free of %s), so this change to a "
                                         "persistent range could not be journaled and was not made; free space there "
                                         "or use a range without \"persistent\".", m->runtime_dir,
                                         FORMAT_BYTES(m->runtime_free), FORMAT_BYTES(m->runtime_size));
        }
        if (k == -ENOMEM)
                return k;
        return sd_bus_error_set_errnof(error, k, "Writing svmd's journal in %s failed (%s), so this change to a "
                                       "persistent range was not made.", m->runtime_dir, strerror(-k));
}

void persist_batch_commit(Manager *m, PersistBatch *b) {
        int k = persist_batch_write(m, b, JOURNAL_APPEND_USE_RESERVE);

        if (k < 0)
                log_error_errno(k, "Writing the journal in %s failed; svmd keeps retrying by compacting it, and a "
                                "restart before that succeeds would not see this change: %m", m->runtime_dir);
}

void persist_range(Manager *m, Range *range) {
        PersistBatch b;

        if (!range->persistent)
                return;
        persist_batch_init(&b);
        persist_batch_put(m, &b, range);
        persist_batch_commit(m, &b);
}

void persist_range_gone(Manager *m, Range *range) {
        PersistBatch b;

        if (!range->persistent || m->recovering)
                return;
        if (!range->gone_journaled) {
                persist_batch_init(&b);
                persist_batch_del(m, &b, range->id);
                persist_batch_commit(m, &b);
                range->gone_journaled = true;
        }
        /* Even when the line could not be written: with its fd gone, a restart cannot bring it back. */
        persist_remove_fd(m, range);
}

/*
 * Tokens and holds change one at a time and a range may have many: each change
 * is a line of its own size ("token-add", "token-del", "hold-add", "hold-del"),
 * not the whole record again. Recovery applies them to the record; a snapshot
 * folds them in.
 */
static int persist_change(Manager *m, Range *range, json_t *change, bool grant) {
        PersistBatch b;
        int k;

        if (!change)
                return -ENOMEM;
        if (!m->journal || !range->persistent || m->recovering) {
                json_decref(change);
                return 0;
        }
        json_object_set_new(change, "id", json_integer((json_int_t) range->id));
        persist_batch_init(&b);
        batch_add(&b, change);
        /* A grant is refused when it cannot be kept; a withdrawal happens anyway (it may use the reserve). */
        if (grant)
                return persist_batch_write(m, &b, JOURNAL_APPEND_KEEP_RESERVE);
        k = persist_batch_write(m, &b, JOURNAL_APPEND_USE_RESERVE);
        if (k < 0)
                log_error_errno(k, "Writing the journal in %s failed; a withdrawn share of range %" PRIu64 " would "
                                "come back at a restart before the next compaction succeeds: %m", m->runtime_dir,
                                range->id);
        return 0;
}

int persist_token_added(Manager *m, Token *t) {
        return persist_change(m, t->range, json_pack("{ssso}", "op", "token-add", "token", token_to_json(t)), true);
}

void persist_token_removed(Manager *m, Range *range, const char *token) {
        (void) persist_change(m, range, json_pack("{ssss}", "op", "token-del", "token", token), false);
}

int persist_hold_added(Manager *m, Range *range, uid_t uid, bool read_only) {
        return persist_change(m, range, json_pack("{sssIsb}", "op", "hold-add", "uid", (json_int_t) uid, "read-only",
                                              read_only), true);
}

void persist_hold_removed(Manager *m, Range *range, uid_t uid, bool read_only) {
        (void) persist_change(m, range, json_pack("{sssIsb}", "op", "hold-del", "uid", (json_int_t) uid, "read-only",
                                              read_only), false);
}

/* ---- recovery ---- */


/* A range id as svmd hands them out: positive, and with room for the next one in a json_int_t. */
static bool id_valid(json_t *id) {
        return json_is_integer(id) && json_integer_value(id) > 0 && json_integer_value(id) < INT64_MAX;
}

static bool change_valid(json_t *c) {
        const char *op = json_string_value(json_object_get(c, "op"));
        json_t *v;

        if (streq_ptr(op, "put"))
                return id_valid(json_object_get(json_object_get(c, "range"), "id"));
        if (streq_ptr(op, "del"))
                return id_valid(json_object_get(c, "id"));
        if (streq_ptr(op, "next-id")) {
                v = json_object_get(c, "value");
                return json_is_integer(v) && json_integer_value(v) >= 0;
        }
        if (!id_valid(json_object_get(c, "id")))
                return false;
        if (streq_ptr(op, "token-add"))
                return json_is_string(json_object_get(json_object_get(c, "token"), "token"));
        if (streq_ptr(op, "token-del"))
                return json_is_string(json_object_get(c, "token"));
        if (streq_ptr(op, "hold-add") || streq_ptr(op, "hold-del")) {
                v = json_object_get(c, "uid");
                return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= UINT32_MAX &&
                       json_is_boolean(json_object_get(c, "read-only"));
        }
        return false;
}

/* A token or hold change on a record (a range deleted since has none: nothing to do). */
static int replay_share_change(Recovery *rec, json_t *c, const char *op) {
        const char *list_name = strncmp(op, "token-", 6) == 0 ? "tokens" : "holders";
        json_t *record, *list, *e;
        char key[32];
        size_t i;

        snprintf(key, sizeof(key), "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(c, "id")));
        record = json_object_get(rec->ranges, key);
        if (!record)
                return 0;
        list = json_object_get(record, list_name);
        if (!json_is_array(list)) {
                list = json_array();
                if (!list || json_object_set_new(record, list_name, list) < 0)
                        return -ENOMEM;
        }

        if (streq(op, "token-add"))
                return json_array_append(list, json_object_get(c, "token")) < 0 ? -ENOMEM : 0;
        if (streq(op, "hold-add"))
                return json_array_append_new(list, json_pack("{sOsO}", "uid", json_object_get(c, "uid"), "read-only",
                                                             json_object_get(c, "read-only"))) < 0 ? -ENOMEM : 0;
        json_array_foreach(list, i, e) {
                bool match = streq(op, "token-del")
                        ? json_equal(json_object_get(e, "token"), json_object_get(c, "token"))
                        : json_equal(json_object_get(e, "uid"), json_object_get(c, "uid")) &&
                          json_equal(json_object_get(e, "read-only"), json_object_get(c, "read-only"));
                if (match)
                        return json_array_remove(list, i) < 0 ? -ENOMEM : 0;
        }
        return 0;
}

/* One journal line: all of its changes or, if any is malformed, none of them. */
static int replay_change(json_t *changes, void *userdata) {
        Recovery *rec = userdata;
        size_t i;
        json_t *c;

        json_array_foreach(changes, i, c)
                if (!change_valid(c))
                        return -EBADMSG;

        json_array_foreach(changes, i, c) {
                const char *op = json_string_value(json_object_get(c, "op"));
                char key[32];

                if (streq(op, "put")) {
                        json_t *r = json_object_get(c, "range");
                        snprintf(key, sizeof(key), "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(r, "id")));
                        json_object_set(rec->ranges, key, r);
                } else if (streq(op, "del")) {
                        snprintf(key, sizeof(key), "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(c, "id")));
                        json_object_del(rec->ranges, key);
                } else if (streq(op, "next-id"))
                        rec->next_id = MAX(rec->next_id, (uint64_t) json_integer_value(json_object_get(c, "value")));
                else {
                        int k = replay_share_change(rec, c, op);
                        if (k < 0)
                                return k;
                }
        }
        return 0;
}

static StoredFdKind parse_fd_name(const char *name, uint64_t *ret_key) {
        uint32_t slot;
        char *end;

        *ret_key = 0;
        if (!name)
                return STORED_FD_UNKNOWN;
        if (fd_slot_from_name(name, &slot)) {
                *ret_key = slot;
                return STORED_FD_SLOT;
        }
        if (strncmp(name, FDNAME_PREFIX, strlen(FDNAME_PREFIX)) == 0) {
                errno = 0;
                *ret_key = strtoull(name + strlen(FDNAME_PREFIX), &end, 10);
                if (errno == 0 && *end == '\0' && *ret_key > 0)
                        return STORED_FD_LEGACY;
        }
        *ret_key = 0;
        return STORED_FD_UNKNOWN;
}

static int listen_fds(StoredFd **ret, size_t *ret_n) {
        _cleanup_free_ StoredFd *fds = NULL;
        char **names = NULL;
        int n;

        n = sd_listen_fds_with_names(true, &names);
        if (n <= 0) {
                *ret = NULL;
                *ret_n = 0;
                return n;
        }
        fds = calloc((size_t) n, sizeof(StoredFd));
        if (!fds) {
                for (int i = 0; names && names[i]; i++)
                        free(names[i]);
                free(names);
                return -ENOMEM;
        }
        for (int i = 0; i < n; i++) {
                const char *name = names ? names[i] : NULL;

                fds[i].fd = SD_LISTEN_FDS_START + i;
                fds[i].kind = parse_fd_name(name, &fds[i].key);
                fds[i].name = name ? strdup(name) : NULL;
                /* sd_listen_fds_with_names() made each close-on-exec already */
        }
        for (int i = 0; names && names[i]; i++)
                free(names[i]);
        free(names);
        *ret = TAKE_PTR(fds);
        *ret_n = (size_t) n;
        return n;
}

/* By kind and key, then in the order the store passed them (fd numbers follow it): the first of equal names wins. */
static int cmp_stored_fd(const void *a, const void *b) {
        const StoredFd *x = a, *y = b;

        if (x->kind != y->kind)
                return x->kind < y->kind ? -1 : 1;
        if (x->key != y->key)
                return x->key < y->key ? -1 : 1;
        return (x->fd > y->fd) - (x->fd < y->fd);
}

/* The first unclaimed fd of that kind and key in fds sorted by cmp_stored_fd(): O(log n), not a scan per record. */
static StoredFd *find_stored_fd(StoredFd *fds, size_t n_fds, StoredFdKind kind, uint64_t key) {
        const StoredFd want = { .kind = kind, .key = key, .fd = -1 };
        size_t lo = 0, hi = n_fds;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (cmp_stored_fd(&fds[mid], &want) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        for (; lo < n_fds && fds[lo].kind == kind && fds[lo].key == key; lo++)
                if (!fds[lo].claimed)
                        return &fds[lo];
        return NULL;
}

/* The stored fd a record names: "fd" since names became slots, "range-<id>" before. */
static StoredFd *find_record_fd(StoredFd *fds, size_t n_fds, uint64_t id, json_t *rec) {
        const char *name = json_string_value(json_object_get(rec, "fd"));
        StoredFdKind kind = STORED_FD_LEGACY;
        uint64_t key = id;

        if (name) {
                kind = parse_fd_name(name, &key);
                if (kind == STORED_FD_UNKNOWN || (kind == STORED_FD_LEGACY && key != id))
                        return NULL;
        }
        return find_stored_fd(fds, n_fds, kind, key);
}

static int json_u64(json_t *o, const char *key, uint64_t *ret) {
        json_t *v = json_object_get(o, key);

        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return -EBADMSG;
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

/* Why a record is not restored, into *reason; returns error (or -ENOMEM). */
static int refuse(char **reason, int error, const char *fmt, ...) _printf_(3, 4);
static int refuse(char **reason, int error, const char *fmt, ...) {
        va_list ap;
        int k;

        va_start(ap, fmt);
        k = vasprintf(reason, fmt, ap);
        va_end(ap);
        if (k < 0) {
                *reason = NULL;
                return -ENOMEM;
        }
        return error;
}

/* A uid as the kernel has them: 0 … 2^32 − 2 ((uid_t) −1 means "none"). */
static bool uid_valid(json_t *uid) {
        return json_is_integer(uid) && json_integer_value(uid) >= 0 && json_integer_value(uid) < (json_int_t) UINT32_MAX;
}

static bool optional_bool(json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);
        return !v || json_is_boolean(v);
}

static bool optional_string(json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);
        return !v || json_is_string(v);
}

static bool token_hex_valid(const char *hex) {
        if (!hex || strlen(hex) != TOKEN_HEX_LEN)
                return false;
        for (const char *p = hex; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

/*
 * The VA a record claims: page-aligned, inside the SVM window, and free. Recovery would refuse an
 * overlap anyway (va_space_reserve()), but a record that contradicts another is named as such.
 */
static int check_va(Manager *m, uint64_t va, uint64_t size, char **reason) {
        uint64_t end;
        VaNode *n;

        if (size == 0 || size % PAGE_SIZE_4K != 0 || va % PAGE_SIZE_4K != 0)
                return refuse(reason, -EBADMSG, "its record is refused: VA 0x%" PRIx64 " and size %" PRIu64
                              " are not page-aligned", va, size);
        if (__builtin_add_overflow(va, size, &end) || va < m->config.va_base ||
            end > m->config.va_base + m->config.va_size)
                return refuse(reason, -EBADMSG, "its record is refused: VA 0x%" PRIx64 "+%s lies outside the SVM "
                              "window 0x%" PRIx64 "-0x%" PRIx64, va, FORMAT_BYTES(size), m->config.va_base,
                              m->config.va_base + m->config.va_size);
        n = va_space_lookup(m->va, va) ?: va_space_next(m->va, va);
        if (!n || n->start >= end)
                return 0;
        return refuse(reason, -EBADMSG, "its record is refused: VA 0x%" PRIx64 "+%s overlaps range %" PRIu64
                      " at 0x%" PRIx64, va, FORMAT_BYTES(size), range_from_va_node(n)->id, n->start);
}

/*
 * Tokens, holders and the owner: every uid a valid one, every token well-formed and nobody else's,
 * read-only grants only where the kernel can make them (host and svm). Checked before anything is
 * created, so that a range is restored with all of its grants or not at all.
 */
static int check_grants(Manager *m, json_t *rec, RangeDomain domain, char **reason) {
        json_t *tokens = json_object_get(rec, "tokens"), *holders = json_object_get(rec, "holders"), *e;
        json_t *owner = json_object_get(rec, "owner");
        size_t i;

        if (owner && (!json_is_object(owner) || !uid_valid(json_object_get(owner, "uid")) ||
                      !optional_string(owner, "unit") || !optional_string(owner, "cgroup")))
                return refuse(reason, -EBADMSG, "its record is refused: its owner has no valid uid");
        if ((tokens && !json_is_array(tokens)) || (holders && !json_is_array(holders)) ||
            !optional_bool(rec, "detached"))
                return refuse(reason, -EBADMSG, "its record is refused: its tokens or holders are malformed");

        json_array_foreach(tokens, i, e) {
                const char *hex = json_string_value(json_object_get(e, "token"));
                json_t *uid = json_object_get(e, "uid"), *expires = json_object_get(e, "expires-usec");
                Token *t;

                if (!token_hex_valid(hex))
                        return refuse(reason, -EBADMSG, "its record is refused: token %zu is malformed", i);
                t = manager_find_token(m, hex);
                if (t)
                        return refuse(reason, -EBADMSG, "its record is refused: token %zu is that of range %" PRIu64,
                                      i, t->range->id);
                for (size_t j = 0; j < i; j++)
                        if (streq_ptr(hex, json_string_value(json_object_get(json_array_get(tokens, j), "token"))))
                                return refuse(reason, -EBADMSG, "its record is refused: token %zu is listed twice", i);
                if ((uid && !uid_valid(uid)) || (expires && (!json_is_integer(expires) || json_integer_value(expires) < 0)) ||
                    !optional_bool(e, "read-only") || !optional_string(e, "unit") || !optional_string(e, "cgroup"))
                        return refuse(reason, -EBADMSG, "its record is refused: token %zu has a malformed uid, "
                                      "expiry or grant", i);
                if (json_is_true(json_object_get(e, "read-only")) && !range_domain_is_memfd(domain))
                        return refuse(reason, -EBADMSG, "its record is refused: token %zu is read-only, which a %s "
                                      "range cannot be", i, range_domain_to_string(domain));
        }
        json_array_foreach(holders, i, e) {
                if (!uid_valid(json_object_get(e, "uid")) || !optional_bool(e, "read-only"))
                        return refuse(reason, -EBADMSG, "its record is refused: holder %zu has no valid uid", i);
                if (json_is_true(json_object_get(e, "read-only")) && !range_domain_is_memfd(domain))
                        return refuse(reason, -EBADMSG, "its record is refused: holder %zu is read-only, which a %s "
                                      "range cannot be", i, range_domain_to_string(domain));
        }
        return 0;
}

/* Is fd what the record says: a dma-buf of an amdgpu buffer of this size, or a memfd of it? */
static int check_fd(Manager *m, int fd, RangeDomain domain, uint64_t size, uint32_t home, char **reason) {
        struct stat st;
        uint64_t bsize = 0;
        uint32_t gpu = 0, flags = 0;
        int k;

        if (range_domain_is_memfd(domain)) {
                if (fstat(fd, &st) < 0)
                        return asprintf(reason, "its fd cannot be inspected (%m)") < 0 ? -ENOMEM : -EBADF;
                /* Only shmem files have seals, and a memfd has no name anybody could open it by. */
                if (!S_ISREG(st.st_mode) || (uint64_t) st.st_size != size || st.st_nlink != 0 ||
                    fcntl(fd, F_GET_SEALS) < 0)
                        return asprintf(reason, "its fd is not a memfd of %s", FORMAT_BYTES(size)) < 0 ? -ENOMEM : -EBADF;
                if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDWR)
                        return asprintf(reason, "its memfd is not writable") < 0 ? -ENOMEM : -EBADF;
                return 0;
        }
        k = kfd_get_dmabuf_info(m->kfd_fd, fd, &bsize, &gpu, &flags);
        if (k < 0)
                return asprintf(reason, "its fd is not an amdgpu dma-buf (%s)", strerror(-k)) < 0 ? -ENOMEM : -EBADF;
        if (bsize != size)
                return asprintf(reason, "its dma-buf has %s instead of %s", FORMAT_BYTES(bsize), FORMAT_BYTES(size)) < 0
                               ? -ENOMEM : -EBADF;
        if (gpu != home)
                return asprintf(reason, "its dma-buf belongs to GPU 0x%x, not 0x%x", gpu, home) < 0 ? -ENOMEM : -EBADF;
        return 0;
}

static int restore_tokens_and_holders(Manager *m, Range *range, json_t *rec) {
        size_t i;
        json_t *e;
        int k;

        json_array_foreach(json_object_get(rec, "tokens"), i, e) {
                const char *hex = json_string_value(json_object_get(e, "token"));
                json_t *uid = json_object_get(e, "uid");
                const char *unit = json_string_value(json_object_get(e, "unit"));
                const char *cgroup = json_string_value(json_object_get(e, "cgroup"));
                uint64_t expires = 0;
                Token *t;

                /* check_grants() made sure of the types and values */
                (void) json_u64(e, "expires-usec", &expires);
                k = token_restore(m, range, hex, &t);
                if (k < 0)
                        return k;
                t->has_uid = json_is_integer(uid);
                t->uid = t->has_uid ? (uid_t) json_integer_value(uid) : 0;
                t->unit = unit ? strdup(unit) : NULL;
                t->cgroup = cgroup ? strdup(cgroup) : NULL;
                if ((unit && !t->unit) || (cgroup && !t->cgroup))
                        return -ENOMEM;
                t->read_only = json_is_true(json_object_get(e, "read-only"));
                t->expires_usec = expires;
        }
        json_array_foreach(json_object_get(rec, "holders"), i, e) {
                uint64_t uid = 0;
                Hold *h;

                (void) json_u64(e, "uid", &uid);
                k = hold_new_orphan(range, (uid_t) uid, json_is_true(json_object_get(e, "read-only")), &h);
                if (k < 0)
                        return k;
        }
        range->owner_detached = json_is_true(json_object_get(rec, "detached"));
        return 0;
}

static int restore_one(Manager *m, uint64_t want_id, json_t *rec, int fd, uint32_t fd_slot, char **reason) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id, va, size, flags = 0, mask = 0, home_id;
        KfdSvmAttrs svm;
        json_t *owner = json_object_get(rec, "owner"), *g;
        Identity *identity = NULL;
        const char *digest;
        RangeDomain domain;
        RangeSpec spec;
        Gpu *home;
        Range *range;
        bool offload;
        size_t i;
        int k;

        if (json_u64(rec, "id", &id) < 0 || json_u64(rec, "va", &va) < 0 || json_u64(rec, "size", &size) < 0 ||
            json_u64(rec, "home", &home_id) < 0 || json_u64(rec, "flags", &flags) < 0)
                return asprintf(reason, "its record is malformed") < 0 ? -ENOMEM : -EBADMSG;
        if (id != want_id)
                return refuse(reason, -EBADMSG, "its record is refused: it is filed under id %" PRIu64
                              " but names range %" PRIu64, want_id, id);
        if (flags & ~(uint64_t) _RANGE_FLAG_ALL)
                return refuse(reason, -EBADMSG, "its record is refused: flags 0x%" PRIx64 " are unknown", flags);
        k = check_va(m, va, size, reason);
        if (k < 0)
                return k;
        domain = range_domain_from_string(json_string_value(json_object_get(rec, "domain")) ?: "");
        home = home_id <= UINT32_MAX ? manager_find_gpu(m, (uint32_t) home_id) : NULL;
        if (!home && domain >= 0 && range_domain_is_memfd(domain) && m->n_gpus > 0) {
                /* System memory: its GPU only owns the bookkeeping, and any GPU can. */
                log_fields(LOG_WARNING, &((LogFields) { .range_id = id }),
                           "Range %" PRIu64 " belonged to GPU 0x%" PRIx64 ", which this node no longer has; "
                           "it is host memory and goes to GPU 0x%x.", id, home_id, m->gpus[0]->gpu_id);
                home = m->gpus[0];
        }
        if (domain < 0 || !home)
                return asprintf(reason, "its domain or GPU 0x%" PRIx64 " is unknown on this node", home_id) < 0 ? -ENOMEM : -EBADMSG;
        json_array_foreach(json_object_get(rec, "mapped"), i, g) {
                Gpu *gp = json_is_integer(g) ? manager_find_gpu(m, (uint32_t) json_integer_value(g)) : NULL;
                if (!gp)
                        return asprintf(reason, "it was mapped to a GPU this node no longer has") < 0 ? -ENOMEM : -EBADMSG;
                mask |= UINT64_C(1) << gp->index;
        }

        if (domain == RANGE_DOMAIN_SVM) {
                k = svm_attrs_from_json(m, json_object_get(rec, "svm"), &svm);
                if (k < 0)
                        return asprintf(reason, "its SVM attributes are malformed or give access to GPUs this node "
                                        "lacks") < 0 ? -ENOMEM : -EBADMSG;
                if (k > 0)
                        log_fields(LOG_WARNING, &((LogFields) { .range_id = id }),
                                   "Range %" PRIu64 " preferred or prefetched to a GPU this node no longer has; "
                                   "that location is dropped.", id);
        }

        k = check_grants(m, rec, domain, reason);
        if (k < 0)
                return k;
        k = check_fd(m, fd, domain, size, home->gpu_id, reason);
        if (k < 0)
                return k;

        if (owner) {
                uint64_t uid = 0;
                (void) json_u64(owner, "uid", &uid); /* check_grants() made sure */
                k = manager_get_identity(m, (uid_t) uid, json_string_value(json_object_get(owner, "unit")) ?: "",
                                         json_string_value(json_object_get(owner, "cgroup")) ?: "", &identity);
                if (k < 0)
                        return k;
        }

        digest = json_string_value(json_object_get(rec, "request-digest"));
        spec = (RangeSpec) {
                .request_digest = digest ? strtoull(digest, NULL, 16) : 0,
                .size = size,
                .home = home->index,
                .domain = domain,
                .flags = (uint16_t) flags,
                .label = json_string_value(json_object_get(rec, "label")),
                .persistent = true,
                .owner = identity,
                .request_id = (char *) json_string_value(json_object_get(rec, "request-id")),
                .restore_id = id,
                .restore_va = va,
                .restore_fd = fd,
                .svm = domain == RANGE_DOMAIN_SVM ? &svm : NULL,
        };

        /* In the recovery's job: a large range's ioctls run on a worker while the loop serves others
         * (executor.h); a small one's here, where they take less time than the trip to a worker and
         * back, and the job steps aside between ranges. */
        offload = job_set_offload(size > EXECUTOR_SMALL_BYTES);
        k = transaction_new(&t, m);
        if (k >= 0)
                k = range_create(t, &spec, &range, &error);
        if (k >= 0)
                k = range_map(t, range, mask, &error);
        k = transaction_finish(t, k, &error);
        (void) job_set_offload(offload);
        identity_unref(m, identity);
        if (k < 0) {
                k = asprintf(reason, "importing it failed: %s", error.message ?: strerror(-k)) < 0 ? -ENOMEM : k;
                sd_bus_error_free(&error);
                return k;
        }
        /* Its fd stays in the store, named as before. */
        if (m->fdstore) {
                char name[32];

                range->fd_stored = true;
                range->fd_slot = fd_slot;
                m->n_stored_fds++;
                m->fdnames_bytes += strlen(stored_fd_name(range, name)) + 1;
                if (fd_slot != FD_SLOT_LEGACY)
                        (void) fd_slots_claim(&m->fd_slots, fd_slot);  /* its name is unique: found once */
        }
        return restore_tokens_and_holders(m, range, rec);
}

static int add_lost(Manager *m, uint64_t id, const char *reason) {
        LostRange *n = reallocarray(m->lost, m->n_lost + 1, sizeof(LostRange));

        if (!n)
                return -ENOMEM;
        m->lost = n;
        m->lost[m->n_lost].id = id;
        m->lost[m->n_lost].reason = strdup(reason);
        if (!m->lost[m->n_lost].reason)
                return -ENOMEM;
        m->n_lost++;
        log_fields(LOG_ERR, &((LogFields) { .range_id = id }), "Range %" PRIu64 " is lost: %s.", id, reason);
        return 0;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static int apply_snapshot(json_t *state, void *userdata) {
        Recovery *rec = userdata;
        json_t *ranges = json_object_get(state, "ranges"), *v;
        uint64_t next = 0;
        const char *key;

        if (!json_is_object(ranges))
                return -EBADMSG;
        /* Filed under the range's id as svmd writes it ("12", never "012" or "x"): others name no fd. */
        json_object_foreach(ranges, key, v) {
                char canonical[32];
                uint64_t id = strtoull(key, NULL, 10);

                snprintf(canonical, sizeof(canonical), "%" PRIu64, id);
                if (id == 0 || !streq(key, canonical)) {
                        log_warning("The journal's snapshot files a record under \"%.32s\", which is no range id; "
                                    "ignoring it.", key);
                        continue;
                }
                if (json_object_set(rec->ranges, key, v) < 0)
                        return -ENOMEM;
        }
        if (json_u64(state, "next-id", &next) >= 0)
                rec->next_id = MAX(rec->next_id, next);
        return 0;
}

static void parse_journal(Recovery *rec) {
        uint64_t t = now_usec_monotonic();

        rec->parse_result = journal_open(&rec->journal, rec->m->runtime_dir, apply_snapshot, replay_change, rec,
                                         &rec->warning);
        rec->parse_usec = now_usec_monotonic() - t;
}

static void *parse_thread(void *userdata) {
        Recovery *rec = userdata;

        parse_journal(rec);
        (void) eventfd_write(rec->efd, 1);
        return NULL;
}

static void parse_join(Recovery *rec) {
        if (!rec->thread_running)
                return;
        (void) pthread_join(rec->thread, NULL);
        rec->thread_running = false;
        rec->parsed = true;
}

static int on_parsed(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Recovery *rec = userdata;

        rec->efd_source = sd_event_source_disable_unref(rec->efd_source);
        parse_join(rec);
        return 0;
}

static Recovery *recovery_free(Recovery *rec) {
        if (!rec)
                return NULL;
        parse_join(rec);
        rec->efd_source = sd_event_source_disable_unref(rec->efd_source);
        safe_close(rec->efd);
        for (size_t j = 0; j < rec->n_fds; j++) {
                safe_close(rec->fds[j].fd);
                free(rec->fds[j].name);
        }
        free(rec->fds);
        free(rec->ids);
        journal_free(rec->journal);
        free(rec->warning);
        json_decref(rec->ranges);
        return mfree(rec);
}

int persist_begin(Manager *m) {
        Recovery *rec;
        int k;

        assert(!m->recovery);
        m->fdstore = !!getenv("NOTIFY_SOCKET");
        if (!m->fdstore)
                log_notice("Not started by a service manager with an fd store: persistent ranges survive their "
                           "clients, not a restart of svmd.");

        rec = new0(Recovery, 1);
        if (!rec)
                return -ENOMEM;
        *rec = (Recovery) { .m = m, .efd = -EBADF, .t0 = now_usec_monotonic() };
        m->recovery = rec;
        rec->ranges = json_object();
        if (!rec->ranges)
                return -ENOMEM;

        /* The journal is read while the kernel side is set up (the kernel may still be tearing the
         * previous run down: a new open of /dev/kfd waits for that). */
        rec->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (rec->efd < 0)
                k = -errno;
        else
                k = -pthread_create(&rec->thread, NULL, parse_thread, rec);
        if (k < 0) {
                log_debug_errno(k, "Reading the journal on a thread of its own failed, reading it now: %m");
                parse_journal(rec);
                rec->parsed = true;
                return 0;
        }
        rec->thread_running = true;
        return 0;
}

/* One record: restored, or lost with its reason. */
static void restore_next(Recovery *rec) {
        _cleanup_free_ char *reason = NULL;
        Manager *m = rec->m;
        uint64_t id = rec->ids[rec->next];
        StoredFd *stored;
        char idkey[32];
        int k;

        snprintf(idkey, sizeof(idkey), "%" PRIu64, id);
        stored = find_record_fd(rec->fds, rec->n_fds, id, json_object_get(rec->ranges, idkey));
        if (!stored)
                k = asprintf(&reason, "its fd is missing from the fd store") < 0 ? -ENOMEM : -ENOENT;
        else {
                stored->claimed = true;
                k = restore_one(m, id, json_object_get(rec->ranges, idkey), stored->fd,
                                stored->kind == STORED_FD_SLOT ? (uint32_t) stored->key : FD_SLOT_LEGACY, &reason);
                /* Done with it now (a host range keeps a copy): at no time twice as many fds. */
                stored->fd = safe_close(stored->fd);
        }
        if (k == -ENOMEM || (k < 0 && add_lost(m, id, reason ?: "unknown") < 0)) {
                rec->out_of_memory = true;
                return;
        }
        if (k < 0 && stored && stored->name && m->fdstore)
                (void) sd_notifyf(false, "FDSTOREREMOVE=1\nFDNAME=%s", stored->name);
        else if (k >= 0)
                rec->restored++;
        /* Done with its record: freeing 10^4 records in one go at the end cost about 60 ms
         * (glibc consolidating the freed chunks), freeing each here far less. */
        (void) json_object_del(rec->ranges, idkey);
        if ((rec->next + 1) % 1000 == 0)
                (void) sd_notifyf(false, "STATUS=Recovering persistent ranges: %zu/%zu", rec->next + 1, rec->n_ids);
}

static int recovery_job_run(void *userdata) {
        Recovery *rec = userdata;
        Manager *m = rec->m;
        uint64_t t = now_usec_monotonic();
        unsigned pass;
        int k = 0;

        /* Oldest first: ids increase with time. */
        m->recovering = true;
        for (; rec->next < rec->n_ids; rec->next++) {
                /* SIGTERM: stop here, with the fd store and the journal as they are. */
                if (m->exiting) {
                        rec->cancelled = true;
                        break;
                }
                restore_next(rec);
                if (rec->out_of_memory)
                        break;
                job_maybe_yield();
        }
        m->recovering = false;
        rec->restore_usec = now_usec_monotonic() - t;

        if (!rec->out_of_memory && !rec->cancelled) {
                /* Ids continue after every id the previous run may have handed out. */
                m->next_range_id = MAX(m->next_range_id, rec->next_id);
                m->ids_reserved = m->next_range_id;

                /* Start the journal over from what was recovered. On a full runtime directory the old
                 * snapshot and journal stay: they still describe every recovered range (and name the
                 * lost ones again, which a later compaction drops), so svmd starts anyway and retries. */
                t = now_usec_monotonic();
                rec->in_snapshot = true;
                /* Again while changes came in during the snapshot (written in slices), 4 passes at most. */
                pass = 0;
                do {
                        rec->lines_deferred = false;
                        journal_request_compaction(m->journal);
                        k = journal_compact_with(m->journal, write_state, m);
                } while (k >= 0 && rec->lines_deferred && ++pass < 4);
                rec->in_snapshot = false;
                if (k >= 0 && rec->lines_deferred) {
                        /* Changes kept coming: the next compaction, after the job, writes them. */
                        journal_request_compaction(m->journal);
                        schedule_compaction(m);
                }
                if (k < 0)
                        log_warning_errno(k, "Writing the recovered state to the journal in %s failed; continuing "
                                          "with the journal as it is and retrying after the next change: %m",
                                          m->runtime_dir);
                rec->snapshot_usec = now_usec_monotonic() - t;
        }
        return 0;
}

static void recovery_job_done(void *userdata, int result) {
        Recovery *rec = userdata;

        rec->job_done = true;
}

/* Serve the loop until *done: the watchdog, signals, the executor's completions. */
static int run_loop_until(Manager *m, const bool *done) {
        int k, state;

        while (!*done) {
                state = sd_event_get_state(m->event);
                if (state == SD_EVENT_FINISHED || state == SD_EVENT_EXITING)
                        return -ECANCELED;
                k = sd_event_run(m->event, UINT64_MAX);
                if (k < 0)
                        return k;
        }
        return 0;
}

int persist_setup(Manager *m) {
        Recovery *rec = m->recovery;
        const char *key;
        json_t *v;
        int k;

        assert(rec);
        if (!rec->parsed) {
                k = sd_event_add_io(m->event, &rec->efd_source, rec->efd, EPOLLIN, on_parsed, rec);
                if (k < 0)
                        parse_join(rec);
                else {
                        k = run_loop_until(m, &rec->parsed);
                        if (k < 0)
                                goto finish;
                }
        }
        if (rec->parse_result < 0) {
                k = log_error_errno(rec->parse_result, "Opening the journal in %s failed: %m", m->runtime_dir);
                goto finish;
        }
        m->journal = TAKE_PTR(rec->journal);
        journal_set_compact_size(m->journal, m->config.limit_journal_compact_size);
        if (rec->warning)
                log_warning("Journal: %s.", rec->warning);

        k = listen_fds(&rec->fds, &rec->n_fds);
        if (k < 0)
                log_warning_errno(k, "Reading the fds passed by the service manager failed, ignoring: %m");
        if (rec->n_fds > 1)
                qsort(rec->fds, rec->n_fds, sizeof(StoredFd), cmp_stored_fd);

        rec->ids = calloc(json_object_size(rec->ranges) + 1, sizeof(uint64_t));
        if (!rec->ids) {
                k = -ENOMEM;
                goto finish;
        }
        json_object_foreach(rec->ranges, key, v)
                rec->ids[rec->n_ids++] = strtoull(key, NULL, 10);
        qsort(rec->ids, rec->n_ids, sizeof(uint64_t), cmp_u64);

        k = executor_spawn(m->executor, recovery_job_run, recovery_job_done, rec);
        if (k == -EINPROGRESS) {
                k = run_loop_until(m, &rec->job_done);
                if (!rec->job_done) {
                        /* The loop failed or ended under the job: stop it at the next range, and wait for it,
                         * before what it works on is freed. */
                        m->exiting = true;
                        executor_drain(m->executor);
                }
        }
        if (k < 0 && k != -ECANCELED)
                log_error_errno(k, "Running the recovery failed: %m");
        if (k < 0)
                goto finish;

        if (rec->cancelled) {
                k = -ECANCELED;
                goto finish;
        }
        /* The kernel objects hold their own references now; fds no record names are dropped. After
         * running out of memory nothing is: dropping the fds not reached yet, or writing a snapshot
         * without their ranges, would lose them for good. */
        for (size_t j = 0; j < rec->n_fds && !rec->out_of_memory; j++)
                if (!rec->fds[j].claimed) {
                        log_warning("The fd store holds fd \"%s\" that no committed record names; dropping it.",
                                    strna(rec->fds[j].name));
                        if (m->fdstore && rec->fds[j].name)
                                (void) sd_notifyf(false, "FDSTOREREMOVE=1\nFDNAME=%s", rec->fds[j].name);
                }
        if (rec->out_of_memory) {
                k = log_error_errno(ENOMEM, "Out of memory while recovering persistent ranges; exiting with the "
                                    "fd store and the journal untouched.");
                goto finish;
        }
        persist_check_space(m);

        if (rec->n_ids > 0 || rec->n_fds > 0)
                log_info("Recovered %zu of %zu persistent ranges in %" PRIu64 " ms (journal read in %" PRIu64 " ms "
                         "while the GPUs were set up, ranges restored in %" PRIu64 " ms, snapshot written in %" PRIu64
                         " ms)%s.", rec->restored, rec->n_ids, (now_usec_monotonic() - rec->t0) / 1000,
                         rec->parse_usec / 1000, rec->restore_usec / 1000, rec->snapshot_usec / 1000,
                         m->n_lost > 0 ? "; see the lost ones above" : "");
        k = 0;
finish:
        m->recovery = recovery_free(m->recovery);
        return k;
}

void persist_done(Manager *m) {
        m->recovery = recovery_free(m->recovery);
        fd_slots_done(&m->fd_slots);
        m->compact_event = sd_event_source_disable_unref(m->compact_event);
        m->journal = journal_free(m->journal);
        for (size_t i = 0; i < m->n_lost; i++)
                free(m->lost[i].reason);
        free(m->lost);
        m->lost = NULL;
        m->n_lost = 0;
}
