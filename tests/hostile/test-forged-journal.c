/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Recovery refuses journal records that contradict themselves, the node or
 * each other (see docs/admin.md, "Persistent ranges"). Persistent host ranges
 * are allocated, then a journal line is appended that rewrites some of their
 * records, as a corrupted or forged journal would: a VA over another range,
 * one outside the SVM window, a size its memfd does not have, a holder uid
 * past 32 bits (it would become uid 1), an owner without a valid uid (it would
 * become root), another range's share token, flags svmd does not know, a
 * token uid past 32 bits or of characters svmd never writes, and a named file
 * in the fd store instead of the range's memfd. After
 * svmd is killed and restarted with its fd store, each of those ranges is
 * absent, reported in LostRanges with why, and logged once with its id; the
 * untouched ranges are back, and the token stays with the range it was made
 * for.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define PAGES(n) (UINT64_C(4096) * (n))

static TestContext T;

typedef struct Forgery {
        const char *what;
        const char *reason;     /* in LostRanges, after "<id>: " */
        uint64_t id, va;
} Forgery;

static bool exists(uint64_t id) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[64];
        uint64_t v;
        int r;

        snprintf(path, sizeof(path), SVMD_RANGE_PATH_PREFIX "/%" PRIu64, id);
        r = sd_bus_get_property_trivial(T.bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "Id", &error, 't', &v);
        sd_bus_error_free(&error);
        return r >= 0;
}

/* A record as svmd writes it for a 4-page host range of root's, unmapped. */
static json_t *record(uint64_t id, uint64_t va) {
        json_t *o = json_pack("{sIsIsIsssIsIs[]sbs[]s[]s{sIssss}}", "id", (json_int_t) id, "va", (json_int_t) va,
                              "size", (json_int_t) PAGES(4), "domain", "host", "home", (json_int_t) T.gpus[0],
                              "flags", (json_int_t) 1, "mapped", "detached", 0, "holders", "tokens", "owner", "uid",
                              (json_int_t) 0, "unit", "", "cgroup", "");
        ASSERT_TRUE(o);
        return o;
}

static unsigned count(const char *haystack, const char *needle) {
        unsigned n = 0;

        for (const char *p = haystack; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

int main(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *journal = NULL, *lost = NULL, *log = NULL, *line = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t a, a_va, h, id, va, size;
        Forgery f[] = {
                { "VA over another range", "its record is refused: VA 0x" },
                { "VA outside the SVM window", "its record is refused: VA 0x1000+16.0 KiB lies outside the SVM window" },
                { "size its memfd does not have", "its fd is not a memfd of 32.0 KiB" },
                { "holder uid 2^32 + 1", "its record is refused: holder 0 has no valid uid" },
                { "owner uid -1", "its record is refused: its owner has no valid uid" },
                { "another range's token", "its record is refused: token 0 is that of range " },
                { "unknown flags", "its record is refused: flags 0x10001 are unknown" },
                { "token uid 2^32", "its record is refused: token 0 has a malformed uid, expiry or grant" },
                { "token of other characters", "its record is refused: token 0 is malformed" },
                { "a named file as its memfd", "its fd is not a memfd of 16.0 KiB" },
        };
        size_t n = sizeof(f) / sizeof(f[0]);
        json_t *changes, *rec;
        char want[256], token[64];
        const char *t;
        unsigned bad = 0;
        FILE *jf;
        int fd, r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);

        a = test_allocate(T.bus, PAGES(4), 0, "host", true, &a_va);
        h = test_allocate(T.bus, PAGES(4), 0, "host", true, NULL);
        r = test_call(T.bus, "Share", &error, &reply, "ta{sv}", h, 0);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &t));
        snprintf(token, sizeof(token), "%s", t);
        reply = sd_bus_message_unref(reply);
        for (size_t i = 0; i < n; i++)
                f[i].id = test_allocate(T.bus, PAGES(4), 0, "host", true, &f[i].va);

        /* One journal line that rewrites the records of f[]. */
        changes = json_array();
        ASSERT_TRUE(changes);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *fdname = test_fd_store_name(f[i].id);

                rec = record(f[i].id, f[i].va);
                json_object_set_new(rec, "fd", json_string(fdname));
                switch (i) {
                case 0:
                        json_object_set_new(rec, "va", json_integer((json_int_t) a_va));
                        break;
                case 1:
                        json_object_set_new(rec, "va", json_integer(0x1000));
                        break;
                case 2:
                        json_object_set_new(rec, "size", json_integer((json_int_t) PAGES(8)));
                        break;
                case 3:
                        json_array_append_new(json_object_get(rec, "holders"),
                                              json_pack("{sIsb}", "uid", (json_int_t) ((INT64_C(1) << 32) + 1),
                                                        "read-only", 0));
                        break;
                case 4:
                        json_object_set_new(json_object_get(rec, "owner"), "uid", json_integer(-1));
                        break;
                case 5:
                        json_array_append_new(json_object_get(rec, "tokens"),
                                              json_pack("{sssbsI}", "token", token, "read-only", 0, "expires-usec",
                                                        (json_int_t) 0));
                        break;
                case 6:
                        json_object_set_new(rec, "flags", json_integer(0x10001));
                        break;
                case 7:
                        json_array_append_new(json_object_get(rec, "tokens"),
                                              json_pack("{sssIsbsI}", "token", "0123456789abcdef0123456789abcdef",
                                                        "uid", (json_int_t) (INT64_C(1) << 32), "read-only", 0,
                                                        "expires-usec", (json_int_t) 0));
                        break;
                case 8:
                        json_array_append_new(json_object_get(rec, "tokens"),
                                              json_pack("{sssbsI}", "token", "0123456789abcdef0123456789abcde\"",
                                                        "read-only", 0, "expires-usec", (json_int_t) 0));
                        break;
                case 9:
                        /* The record is right; the fd store holds a named file of the right size instead. */
                        snprintf(want, sizeof(want), "%s/not-a-memfd", getenv("SVMD_TEST_DIR"));
                        fd = open(want, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                        ASSERT_TRUE(fd >= 0 && ftruncate(fd, (off_t) PAGES(4)) == 0);
                        snprintf(want, sizeof(want), "FDSTOREREMOVE=1\nFDNAME=%s", fdname);
                        test_notify(want, -1);
                        snprintf(want, sizeof(want), "FDSTORE=1\nFDNAME=%s", fdname);
                        test_notify(want, fd);
                        close(fd);
                        break;
                }
                json_array_append_new(changes, json_pack("{ssso}", "op", "put", "range", rec));
        }
        rec = json_pack("{sIso}", "seq", (json_int_t) 1000000, "changes", changes);
        ASSERT_TRUE(rec);
        line = json_dumps(rec, JSON_COMPACT);
        json_decref(rec);
        ASSERT_TRUE(line);
        ASSERT_TRUE(asprintf(&journal, "%s/journal", getenv("SVMD_RUNTIME_DIR")) >= 0);
        jf = fopen(journal, "ae");
        ASSERT_TRUE(jf);
        fprintf(jf, "%s\n", line);
        fclose(jf);

        test_kill_and_wait_restart(&T);

        lost = test_lost_ranges(T.bus);
        log = test_svmd_log();
        printf("LostRanges after the restart:\n%s", lost);
        for (size_t i = 0; i < n; i++) {
                bool restored = exists(f[i].id), reported, logged;

                snprintf(want, sizeof(want), "%" PRIu64 ": %s", f[i].id, f[i].reason);
                reported = strstr(lost, want);
                snprintf(want, sizeof(want), "Range %" PRIu64 " is lost: ", f[i].id);
                logged = count(log, want) == 1;
                printf("  %-32s range %" PRIu64 ": %s, %s, %s\n", f[i].what, f[i].id,
                       restored ? "RESTORED" : "not restored", reported ? "reported" : "NOT REPORTED AS EXPECTED",
                       logged ? "logged once" : "NOT LOGGED ONCE");
                bad += restored || !reported || !logged;
        }
        if (bad > 0) {
                fprintf(stderr, "%u forged records were not refused as they should be; svmd's log:\n%s", bad, log);
                abort();
        }
        snprintf(want, sizeof(want), "overlaps range %" PRIu64 " at 0x%" PRIx64, a, a_va);
        ASSERT_TRUE(strstr(lost, want) != NULL);
        snprintf(want, sizeof(want), "token 0 is that of range %" PRIu64 "\n", h);
        ASSERT_TRUE(strstr(lost, want) != NULL);

        /* The others are back, and the token still opens the range it was made for. */
        ASSERT_TRUE(exists(a));
        ASSERT_TRUE(exists(h));
        r = test_call(T.bus, "Attach", &error, &reply, "s", token);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "ttth", &id, &va, &size, &fd));
        ASSERT_UEQ(id, h);
        reply = sd_bus_message_unref(reply);
        r = test_call(T.bus, "Release", &error, NULL, "t", h);
        ASSERT_BUS_OK(r, &error);

        /* Refused once is gone for good: the next restart neither brings them back nor reports them again. */
        test_kill_and_wait_restart(&T);
        free(lost);
        lost = test_lost_ranges(T.bus);
        ASSERT_STREQ(lost, "");
        for (size_t i = 0; i < n; i++)
                ASSERT_FALSE(exists(f[i].id));
        ASSERT_TRUE(exists(a) && exists(h));
        test_free(T.bus, a);
        test_free(T.bus, h);

        test_teardown(&T);
        printf("forged-journal: %zu forged records refused, the others restored\n", n);
        return 0;
}
