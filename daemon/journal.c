/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "macro.h"

#define JOURNAL_COMPACT_BYTES (UINT64_C(4) << 20)
#define JOURNAL_MAX_LINE (64U << 20)
#define JOURNAL_ALLOC_STEP UINT64_C(4096)

struct Journal {
        char *dir;
        char *path;
        int fd;
        uint64_t seq;
        uint64_t bytes;
        uint64_t allocated;     /* bytes of the file the filesystem has given us (fallocate), ≥ bytes */
        bool no_fallocate;      /* the filesystem cannot preallocate: appends just write */
        char *tmp_path;         /* the next snapshot, written here and renamed */
        int tmp_fd;             /* kept open and preallocated: room for the next snapshot */
        uint64_t tmp_allocated;
        uint64_t snapshot_bytes;        /* the current snapshot's size */
        uint64_t compact_failed_seq; /* seq when compaction last failed (0: it did not) */
        uint64_t compact_bytes;         /* compact once the journal has this many */
        bool compact_failed;
};

/* A sequence number as journal_append() writes them: 1 … INT64_MAX (0 in an empty snapshot). */
static bool seq_valid(json_t *seq) {
        return json_is_integer(seq) && json_integer_value(seq) >= 0;
}

static int read_all(const char *path, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, allocated = 0;
        ssize_t n;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        for (;;) {
                if (allocated - size < 65536) {
                        size_t na = allocated ? allocated * 2 : 65536;
                        char *nb;

                        if (na > (size_t) JOURNAL_MAX_LINE * 16)
                                return -EFBIG;
                        nb = realloc(buf, na + 1);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                        allocated = na;
                }
                n = read(fd, buf + size, allocated - size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        if (!buf) {
                buf = strdup("");
                if (!buf)
                        return -ENOMEM;
        }
        buf[size] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

static void add_warning(char **warning, const char *fmt, ...) _printf_(2, 3);
static void add_warning(char **warning, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        char *joined = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!msg)
                return;
        if (*warning) {
                if (asprintf(&joined, "%s; %s", *warning, msg) < 0)
                        return;
                free(*warning);
                *warning = joined;
        } else
                *warning = TAKE_PTR(msg);
}

static int load_snapshot(Journal *j, JournalSnapshotFunc apply, void *userdata, char **warning) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t size = 0;
        json_error_t jerr;
        json_t *root, *state, *seq;
        int r;

        if (asprintf(&path, "%s/snapshot.json", j->dir) < 0)
                return -ENOMEM;
        /* Read in one go: json_load_file() takes the file a character at a time through stdio. */
        r = read_all(path, &text, &size);
        if (r == -ENOENT)
                return 0;
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                add_warning(warning, "%s is unreadable (%s), ignoring it", path, strerror(-r));
                return 0;
        }
        root = json_loadb(text, size, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
                add_warning(warning, "%s is unreadable (%s), ignoring it", path, jerr.text);
                return 0;
        }
        seq = json_object_get(root, "seq");
        state = json_object_get(root, "state");
        if (!seq_valid(seq) || !state) {
                add_warning(warning, "%s is malformed, ignoring it", path);
                json_decref(root);
                return 0;
        }
        r = apply(state, userdata);
        if (r < 0)
                add_warning(warning, "%s could not be applied (%s), ignoring it", path, strerror(-r));
        else
                j->seq = (uint64_t) json_integer_value(seq);
        j->snapshot_bytes = size;
        json_decref(root);
        return r == -ENOMEM ? r : 0;
}

static int replay_journal(Journal *j, JournalReplayFunc replay, void *userdata, char **warning,
                          size_t *ret_good_bytes) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, pos = 0, good = 0;
        unsigned n = 0, skipped = 0;
        int r;

        r = read_all(j->path, &buf, &size);
        if (r == -ENOENT) {
                *ret_good_bytes = 0;
                return 0;
        }
        if (r < 0)
                return r;

        while (pos < size) {
                char *nl = memchr(buf + pos, '\n', size - pos);
                json_error_t jerr;
                json_t *line, *seq, *changes;

                if (!nl) {
                        add_warning(warning, "the journal ends in an incomplete line at byte %zu; recovered up to the last complete one", pos);
                        break;
                }
                *nl = '\0';
                line = json_loads(buf + pos, JSON_REJECT_DUPLICATES, &jerr);
                seq = json_object_get(line, "seq");
                changes = json_object_get(line, "changes");
                if (!line || !seq_valid(seq) || !json_is_array(changes)) {
                        add_warning(warning, "journal line %u (byte %zu) is corrupt (%s); recovered up to the line before",
                                    n + 1, pos, line ? "malformed record" : jerr.text);
                        json_decref(line);
                        break;
                }
                if ((uint64_t) json_integer_value(seq) <= j->seq)
                        skipped++; /* already in the snapshot */
                else {
                        r = replay(changes, userdata);
                        if (r < 0) {
                                add_warning(warning, "journal line %u could not be applied (%s); recovered up to the line before",
                                            n + 1, strerror(-r));
                                json_decref(line);
                                break;
                        }
                        j->seq = (uint64_t) json_integer_value(seq);
                }
                json_decref(line);
                n++;
                pos = (size_t) (nl - buf) + 1;
                good = pos;
        }
        (void) skipped;
        *ret_good_bytes = good;
        return 0;
}

static int open_tmp(Journal *j, bool reuse);

int journal_open(Journal **ret, const char *dir, JournalSnapshotFunc snapshot, JournalReplayFunc replay,
                 void *userdata, char **ret_warning) {
        _cleanup_free_ char *warning = NULL;
        Journal *j;
        size_t good = 0;
        int r;

        j = calloc(1, sizeof(Journal));
        if (!j)
                return -ENOMEM;
        j->fd = j->tmp_fd = -EBADF;
        j->compact_bytes = JOURNAL_COMPACT_BYTES;
        j->dir = strdup(dir);
        if (!j->dir || asprintf(&j->path, "%s/journal", dir) < 0 ||
            asprintf(&j->tmp_path, "%s/snapshot.json.tmp", dir) < 0) {
                journal_free(j);
                return -ENOMEM;
        }

        r = load_snapshot(j, snapshot, userdata, &warning);
        if (r >= 0)
                r = replay_journal(j, replay, userdata, &warning, &good);
        if (r < 0) {
                journal_free(j);
                return r;
        }

        j->fd = open(j->path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (j->fd < 0) {
                r = negative_errno();
                journal_free(j);
                return r;
        }
        /* Cut off a torn tail so that new lines follow the last good one. */
        if (ftruncate(j->fd, (off_t) good) < 0 || lseek(j->fd, (off_t) good, SEEK_SET) < 0) {
                r = negative_errno();
                journal_free(j);
                return r;
        }
        j->bytes = good;
        j->allocated = good;
        r = open_tmp(j, true);
        if (r < 0) {
                journal_free(j);
                return r;
        }
        /* Room for the lines that must not fail and for the next snapshot (see journal_reserve());
         * without it svmd still starts. */
        (void) journal_reserve(j, 0);

        if (ret_warning)
                *ret_warning = TAKE_PTR(warning);
        *ret = j;
        return 0;
}

Journal *journal_free(Journal *j) {
        if (!j)
                return NULL;
        safe_close(j->fd);
        safe_close(j->tmp_fd);
        free(j->dir);
        free(j->path);
        free(j->tmp_path);
        free(j);
        return NULL;
}

static int write_all(int fd, const char *buf, size_t size) {
        while (size > 0) {
                ssize_t n = write(fd, buf, size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                buf += n;
                size -= (size_t) n;
        }
        return 0;
}

static uint64_t align_up_step(uint64_t x) {
        return (x + JOURNAL_ALLOC_STEP - 1) / JOURNAL_ALLOC_STEP * JOURNAL_ALLOC_STEP;
}

/*
 * The file the next snapshot is written to, kept open so that the room preallocated in it stays
 * ours. One left by an earlier run is taken over with its room (kill -9 on a full directory), as
 * long as it is a plain file of ours; anything else there is replaced.
 */
static int open_tmp(Journal *j, bool reuse) {
        struct stat st;
        int fd;

        j->tmp_fd = safe_close(j->tmp_fd);
        j->tmp_allocated = 0;
        if (reuse) {
                fd = open(j->tmp_path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
                if (fd >= 0 && fstat(fd, &st) >= 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
                    st.st_uid == geteuid()) {
                        j->tmp_fd = fd;
                        j->tmp_allocated = (uint64_t) st.st_size;
                        return 0;
                }
                safe_close(fd);
        }
        (void) unlink(j->tmp_path);
        j->tmp_fd = open(j->tmp_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (j->tmp_fd < 0)
                return negative_errno();
        return 0;
}

static int preallocate(Journal *j, int fd, int mode, uint64_t *allocated, uint64_t want) {
        if (j->no_fallocate || want <= *allocated)
                return 0;
        if (fallocate(fd, mode, (off_t) *allocated, (off_t) (want - *allocated)) < 0) {
                if (errno == EOPNOTSUPP || errno == ENOSYS) {
                        j->no_fallocate = true;
                        return 0;
                }
                return negative_errno();
        }
        *allocated = want;
        return 0;
}

/*
 * Make sure the next `need` bytes are the journal's with the reserve behind them, and that the
 * next snapshot has room: preallocated, so that a write cannot run out of space half-way and
 * a compaction can always run. A snapshot holds no more than the old one and the journal
 * folded together, so that is the room kept for it. Nothing is written.
 */
int journal_reserve(Journal *j, uint64_t need) {
        int r;

        r = preallocate(j, j->fd, FALLOC_FL_KEEP_SIZE, &j->allocated,
                        align_up_step(j->bytes + need + JOURNAL_RESERVE_BYTES));
        if (r < 0)
                return r;
        return preallocate(j, j->tmp_fd, 0, &j->tmp_allocated,
                           align_up_step(j->snapshot_bytes + j->bytes + need + JOURNAL_ALLOC_STEP));
}

uint64_t journal_reserved(const Journal *j) {
        if (j->no_fallocate)
                return UINT64_MAX;
        return j->allocated > j->bytes ? j->allocated - j->bytes : 0;
}

int journal_append(Journal *j, json_t *changes, JournalAppendMode mode) {
        _cleanup_free_ char *line = NULL;
        json_t *rec;
        size_t l;
        int r;

        /* Unreachable by appending (2^63 lines), but a corrupt file may claim it: never wrap. */
        if (j->seq >= (uint64_t) INT64_MAX)
                return -EOVERFLOW;
        rec = json_pack("{sIsO}", "seq", (json_int_t) (j->seq + 1), "changes", changes);
        if (!rec)
                return -ENOMEM;
        line = json_dumps(rec, JSON_COMPACT);
        json_decref(rec);
        if (!line)
                return -ENOMEM;
        l = strlen(line);
        line[l] = '\n'; /* json_dumps allocated l + 1 bytes: the NUL becomes the newline */

        /* Space first: a line that does not fit is refused before a byte of it is written. A line
         * that must not fail may use the reserve, never more. */
        r = journal_reserve(j, l + 1);
        if (r < 0 && (mode != JOURNAL_APPEND_USE_RESERVE || j->bytes + l + 1 > j->allocated))
                return r;

        /* One write of the whole line: a crash leaves at most a torn last line, which replay drops. */
        r = write_all(j->fd, line, l + 1);
        if (r < 0) {
                /* Whatever part got out must not be mistaken for a record: cut it again. */
                (void) ftruncate(j->fd, (off_t) j->bytes);
                (void) lseek(j->fd, (off_t) j->bytes, SEEK_SET);
                return r;
        }
        j->seq++;
        j->bytes += l + 1;
        j->allocated = MAX(j->allocated, j->bytes);
        return 0;
}

bool journal_wants_compaction(const Journal *j) {
        /* After a failed attempt, only once something changed (a retry per request would cost a
         * snapshot each while the directory stays full). */
        if (j->compact_failed && j->compact_failed_seq == j->seq)
                return false;
        return j->bytes >= j->compact_bytes || j->compact_failed;
}

void journal_set_compact_size(Journal *j, uint64_t bytes) {
        j->compact_bytes = bytes;
}

void journal_request_compaction(Journal *j) {
        if (!j->compact_failed) {
                j->compact_failed = true;
                j->compact_failed_seq = UINT64_MAX;
        }
}

bool journal_compaction_pending(const Journal *j) {
        return j->compact_failed;
}

/*
 * The snapshot is written through a block buffer: json_dumpfd() issues one
 * write() per token, about 60 per range, and at 10^4 ranges those system calls
 * were most of svmd's restart. The block bounds the memory however many ranges
 * there are, and the caller hands the state over piece by piece
 * (journal_compact_with()), so no tree of every record is built and freed.
 * The block stays under glibc's mmap threshold (128 KiB): a larger one would be
 * mmapped, and freeing it raises that threshold for the rest of the process.
 */
#define SNAPSHOT_BLOCK (64U << 10)

struct JournalWriter {
        int fd;
        int error;              /* the first write error, as -errno */
        size_t n;
        char buf[SNAPSHOT_BLOCK];
};

static int writer_flush(JournalWriter *w) {
        int r;

        if (w->error < 0)
                return w->error;
        r = write_all(w->fd, w->buf, w->n);
        w->n = 0;
        if (r < 0)
                w->error = r;
        return r;
}

static int writer_put(const char *buffer, size_t size, void *data) {
        JournalWriter *w = data;

        while (size > 0) {
                size_t c;

                if (w->n == sizeof(w->buf) && writer_flush(w) < 0)
                        return -1;
                c = MIN(size, sizeof(w->buf) - w->n);
                memcpy(w->buf + w->n, buffer, c);
                w->n += c;
                buffer += c;
                size -= c;
        }
        return 0;
}

int journal_write_raw(JournalWriter *w, const char *text) {
        if (writer_put(text, strlen(text), w) < 0)
                return w->error;
        return 0;
}

int journal_write_json(JournalWriter *w, json_t *value) {
        if (json_dump_callback(value, writer_put, w, JSON_COMPACT) < 0)
                return w->error < 0 ? w->error : -EIO; /* else jansson refused the value */
        return 0;
}

static int write_whole_state(JournalWriter *w, void *userdata) {
        return journal_write_json(w, userdata);
}

int journal_compact(Journal *j, json_t *state) {
        return journal_compact_with(j, write_whole_state, state);
}

static int compact_once(Journal *j, JournalStateWriteFunc write_state, void *userdata);

/*
 * A failed compaction leaves the old snapshot and journal as they were (valid), and is retried
 * by journal_wants_compaction() once the journal has changed.
 */
int journal_compact_with(Journal *j, JournalStateWriteFunc write_state, void *userdata) {
        int r;

        r = compact_once(j, write_state, userdata);
        if (r < 0) {
                j->compact_failed = true;
                j->compact_failed_seq = j->seq;
        } else
                j->compact_failed = false;
        (void) journal_reserve(j, 0);
        return r;
}

static int compact_once(Journal *j, JournalStateWriteFunc write_state, void *userdata) {
        _cleanup_free_ char *path = NULL;
        _cleanup_free_ JournalWriter *w = NULL;
        off_t written;
        char head[64];
        int r;

        if (asprintf(&path, "%s/snapshot.json", j->dir) < 0)
                return -ENOMEM;
        w = malloc(sizeof(JournalWriter));
        if (!w)
                return -ENOMEM;
        if (j->tmp_fd < 0) {
                r = open_tmp(j, false);
                if (r < 0)
                        return r;
        }
        /* Into the room preallocated for it (journal_reserve()): from the start, cut after. */
        if (lseek(j->tmp_fd, 0, SEEK_SET) < 0)
                return negative_errno();
        w->fd = j->tmp_fd;
        w->error = 0;
        w->n = 0;

        /* {"seq":N,"state":…}, as json_dumps(JSON_COMPACT) writes it. */
        snprintf(head, sizeof(head), "{\"seq\":%" PRIu64 ",\"state\":", j->seq);
        r = journal_write_raw(w, head);
        if (r >= 0)
                r = write_state(w, userdata);
        if (r >= 0)
                r = journal_write_raw(w, "}");
        if (r >= 0)
                r = writer_flush(w);
        if (r < 0)
                return r;
        written = lseek(j->tmp_fd, 0, SEEK_CUR);
        if (written < 0 || ftruncate(j->tmp_fd, written) < 0 || fsync(j->tmp_fd) < 0)
                return negative_errno();
        j->tmp_allocated = (uint64_t) written;
        if (rename(j->tmp_path, path) < 0)
                return negative_errno();
        j->snapshot_bytes = (uint64_t) written;
        /* The file is the snapshot now: the next one gets a new file (and room, journal_reserve()). */
        j->tmp_fd = safe_close(j->tmp_fd);
        j->tmp_allocated = 0;
        (void) open_tmp(j, false);

        /* The snapshot holds everything up to seq: the journal starts over. */
        if (ftruncate(j->fd, 0) < 0 || lseek(j->fd, 0, SEEK_SET) < 0)
                return negative_errno();
        j->bytes = 0;
        j->allocated = 0;
        return 0;
}

uint64_t journal_seq(const Journal *j) {
        return j->seq;
}
