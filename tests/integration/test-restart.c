/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Nothing lost on restart: svmd is killed with SIGKILL while persistent ranges
 * live, svmd-harness restarts it and hands back the fds svmd kept in its fd
 * store, as systemd does. Every persistent range must come back at the same VA
 * with the same mappings, owner and tokens, and with its bytes; non-persistent
 * ones are gone with their connections. Then the journal's tail is corrupted,
 * an fd goes missing, a stray one appears and one has the wrong size: each is
 * reported clearly and nothing else is lost.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)

static TestContext T;

static uint64_t allocate(const char *domain, uint64_t size, uint32_t gpu, bool persistent, bool public_,
                         size_t n_map, const uint32_t *map) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id, va;
        const char *path;
        int r;

        ASSERT_OK(sd_bus_message_new_method_call(T.bus, &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                                 "Allocate"));
        ASSERT_OK(sd_bus_message_append(m, "tus", size, gpu, domain));
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "{sv}"));
        ASSERT_OK(sd_bus_message_append(m, "{sv}", "persistent", "b", (int) persistent));
        if (public_)
                ASSERT_OK(sd_bus_message_append(m, "{sv}", "flags", "as", 2, "writable", "public"));
        ASSERT_OK(sd_bus_message_open_container(m, 'e', "sv"));
        ASSERT_OK(sd_bus_message_append(m, "s", "map"));
        ASSERT_OK(sd_bus_message_open_container(m, 'v', "au"));
        ASSERT_OK(sd_bus_message_append_array(m, 'u', map, n_map * sizeof(uint32_t)));
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_close_container(m));
        r = sd_bus_call(T.bus, m, 0, &error, &reply);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        return id;
}

/* Map the range's memory (Export) and run fn on it. */
static void with_bytes(uint64_t id, void (*fn)(uint8_t *p, uint64_t size, uint64_t id)) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t va, size;
        void *p;
        int fd, r;

        r = test_call(T.bus, "Export", &error, &reply, "t", id);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "htt", &fd, &va, &size));
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ASSERT_TRUE(p != MAP_FAILED);
        fn(p, size, id);
        munmap(p, size);
}

static void write_pattern(uint8_t *p, uint64_t size, uint64_t id) {
        for (uint64_t i = 0; i < size; i += 4096)
                p[i] = (uint8_t) (id * 31 + i / 4096);
}

static void check_pattern(uint8_t *p, uint64_t size, uint64_t id) {
        for (uint64_t i = 0; i < size; i += 4096)
                ASSERT_EQ(p[i], (uint8_t) (id * 31 + i / 4096));
}

static bool exists(uint64_t id) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[64];
        uint64_t v;
        int r;

        snprintf(path, sizeof(path), "/org/svmd1/range/%" PRIu64, id);
        r = sd_bus_get_property_trivial(T.bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "Id", &error, 't', &v);
        sd_bus_error_free(&error);
        return r >= 0;
}

static char *lost_ranges(void) {
        return test_lost_ranges(T.bus);
}

/* Speak to the fd store as svmd would (the harness plays systemd). */
static void notify(const char *msg, int fd) {
        test_notify(msg, fd);
}

static void test_ranges_survive_kill(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *list_before = NULL, *list_after = NULL, *maps_before = NULL, *maps_after = NULL, *lost = NULL;
        uint64_t vram, gtt, host, temp, later, id, va, size;
        const char *token;
        int fd, r;

        vram = allocate("vram", 8 * MiB, T.gpus[0], true, true, 3, (uint32_t[]) { T.gpus[0], T.gpus[1], T.gpus[2] });
        gtt = allocate("gtt", 1 * MiB, T.gpus[1], true, false, 2, (uint32_t[]) { T.gpus[1], T.gpus[3] });
        host = allocate("host", 64 * 4096, 0, true, false, 1, (uint32_t[]) { T.gpus[2] });
        temp = allocate("vram", 2 * MiB, T.gpus[3], false, false, 1, (uint32_t[]) { T.gpus[3] });
        with_bytes(vram, write_pattern);
        with_bytes(gtt, write_pattern);
        with_bytes(host, write_pattern);

        r = test_call(T.bus, "Share", &error, &reply, "ta{sv}", host, 1, "read-only", "b", 1);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &token));
        token = strdupa(token);

        /* The non-persistent range goes away with svmd; take it out of the expected picture. */
        r = test_call(T.bus, "Free", &error, NULL, "t", temp);
        ASSERT_BUS_OK(r, &error);
        list_before = test_list_ranges(T.bus);
        maps_before = test_kernel_mappings(&T);
        temp = allocate("vram", 2 * MiB, T.gpus[3], false, false, 1, (uint32_t[]) { T.gpus[3] });

        test_kill_and_wait_restart(&T);

        ASSERT_FALSE(exists(temp));
        list_after = test_list_ranges(T.bus);
        ASSERT_STREQ(list_before, list_after);                  /* ids, VAs, sizes, mappings, owners */
        maps_after = test_kernel_mappings(&T);
        ASSERT_STREQ(maps_before, maps_after);                  /* the kernel maps the same at the same VAs */
        with_bytes(vram, check_pattern);                        /* and the bytes are still there */
        with_bytes(gtt, check_pattern);
        with_bytes(host, check_pattern);
        lost = lost_ranges();
        ASSERT_STREQ(lost, "");

        /* The token still works. */
        sd_bus_message_unref(reply);
        reply = NULL;
        r = test_call(T.bus, "Attach", &error, &reply, "s", token);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "ttth", &id, &va, &size, &fd));
        ASSERT_UEQ(id, host);
        r = test_call(T.bus, "Release", &error, NULL, "t", host);
        ASSERT_BUS_OK(r, &error);

        /* Ids are never reused. */
        later = allocate("gtt", 4096, 0, false, false, 0, NULL);
        ASSERT_TRUE(later > temp);

        /* A second kill changes nothing either, and a persistent range freed before it stays freed:
         * not back, not reported lost. */
        r = test_call(T.bus, "Free", &error, NULL, "t", later);
        ASSERT_BUS_OK(r, &error);
        r = test_call(T.bus, "Free", &error, NULL, "t", gtt);
        ASSERT_BUS_OK(r, &error);
        free(list_before);
        list_before = test_list_ranges(T.bus);
        test_kill_and_wait_restart(&T);
        ASSERT_FALSE(exists(gtt));
        free(list_after);
        list_after = test_list_ranges(T.bus);
        ASSERT_STREQ(list_before, list_after);
        free(lost);
        lost = lost_ranges();
        ASSERT_STREQ(lost, "");
}

static void test_bad_journal_and_fds(void) {
        _cleanup_free_ char *list_before = NULL, *list_after = NULL, *lost = NULL, *journal = NULL, *b_name = NULL,
                            *c_name = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t a, b, c;
        char name[64];
        FILE *f;
        int fd, r;

        a = allocate("host", 4 * 4096, 0, true, false, 0, NULL);
        b = allocate("host", 4 * 4096, 0, true, false, 0, NULL);
        c = allocate("host", 4 * 4096, 0, true, false, 0, NULL);

        /* A torn last line, as from a crash mid-write: the rest is recovered. */
        ASSERT_TRUE(asprintf(&journal, "%s/journal", getenv("SVMD_RUNTIME_DIR")) >= 0);
        f = fopen(journal, "ae");
        ASSERT_TRUE(f);
        fputs("{\"seq\": 99999, \"changes\": [ {\"op\": \"put\", \"ra", f);
        fclose(f);

        /* b's fd goes missing; c's is replaced by one of the wrong size; a stray one appears. */
        b_name = test_fd_store_name(b);
        c_name = test_fd_store_name(c);
        snprintf(name, sizeof(name), "FDSTOREREMOVE=1\nFDNAME=%s", b_name);
        notify(name, -1);
        snprintf(name, sizeof(name), "FDSTOREREMOVE=1\nFDNAME=%s", c_name);
        notify(name, -1);
        fd = memfd_create("wrong-size", MFD_CLOEXEC);
        ASSERT_TRUE(fd >= 0 && ftruncate(fd, 4096) == 0);
        snprintf(name, sizeof(name), "FDSTORE=1\nFDNAME=%s", c_name);
        notify(name, fd);
        close(fd);
        fd = memfd_create("stray", MFD_CLOEXEC);
        ASSERT_TRUE(fd >= 0 && ftruncate(fd, 4096) == 0);
        notify("FDSTORE=1\nFDNAME=range-987654321", fd);
        close(fd);

        test_kill_and_wait_restart(&T);

        ASSERT_TRUE(exists(a));
        ASSERT_FALSE(exists(b));
        ASSERT_FALSE(exists(c));
        ASSERT_FALSE(exists(987654321));
        lost = lost_ranges();
        fprintf(stderr, "lost ranges reported:\n%s", lost);
        snprintf(name, sizeof(name), "%" PRIu64 ": its fd is missing", b);
        ASSERT_TRUE(strstr(lost, name) != NULL);
        snprintf(name, sizeof(name), "%" PRIu64 ": its fd is not a memfd", c);
        ASSERT_TRUE(strstr(lost, name) != NULL);

        /* A lost record does not come back at the next restart, and a is still fine. */
        test_kill_and_wait_restart(&T);
        ASSERT_TRUE(exists(a));
        free(lost);
        lost = lost_ranges();
        ASSERT_STREQ(lost, "");
        r = test_call(T.bus, "Free", &error, NULL, "t", a);
        ASSERT_BUS_OK(r, &error);
}

/* The ids of a Commit's results, in order. */
static void commit_result_ids(sd_bus_message *reply, uint64_t *ids, size_t n) {
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(a{sv})"));
        for (size_t i = 0; i < n; i++) {
                const char *key;
                int r;

                ids[i] = 0;
                ASSERT_OK(sd_bus_message_enter_container(reply, 'r', "a{sv}"));
                ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "{sv}"));
                while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                        ASSERT_OK(sd_bus_message_read(reply, "s", &key));
                        if (strcmp(key, "id") == 0)
                                ASSERT_OK(sd_bus_message_read(reply, "v", "t", &ids[i]));
                        else
                                ASSERT_OK(sd_bus_message_skip(reply, "v"));
                        ASSERT_OK(sd_bus_message_exit_container(reply));
                }
                ASSERT_OK(r);
                ASSERT_OK(sd_bus_message_exit_container(reply));
                ASSERT_OK(sd_bus_message_exit_container(reply));
                ASSERT_TRUE(ids[i] != 0);
        }
}

/* Three persistent allocations and a Map of persistent range e to GPU 1, as one Commit. */
static void commit_three(uint64_t e, uint64_t ids[4]) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = test_call(T.bus, "Commit", &error, &reply, "a(sa{sv})a{sv}", 4,
                      "Allocate", 3, "size", "t", UINT64_C(4) * 4096, "domain", "s", "host", "persistent", "b", 1,
                      "Allocate", 3, "size", "t", UINT64_C(8) * 4096, "domain", "s", "host", "persistent", "b", 1,
                      "Allocate", 4, "size", "t", UINT64_C(2) * 4096, "domain", "s", "host", "persistent", "b", 1,
                      "map", "au", 1, T.gpus[2],
                      "Map", 2, "id", "t", e, "gpus", "au", 1, T.gpus[1], 0);
        ASSERT_BUS_OK(r, &error);
        commit_result_ids(reply, ids, 4);
}

static off_t file_size(const char *path) {
        struct stat st;

        ASSERT_OK(stat(path, &st));
        return st.st_size;
}

/*
 * A Commit's changes are one journal line, its commit record (docs/architecture.md, "The commit
 * record"): a crash while writing it leaves a torn line, and recovery applies none of the
 * Commit's changes, not some; written whole, all of them come back.
 */
static void test_commit_record_torn(void) {
        _cleanup_free_ char *journal = NULL, *list_before = NULL, *list_after = NULL, *lost = NULL, *tail = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t e, ids[4];
        off_t before, after;
        size_t lines = 0;
        FILE *f;
        int r;

        ASSERT_TRUE(asprintf(&journal, "%s/journal", getenv("SVMD_RUNTIME_DIR")) >= 0);
        e = allocate("host", 4 * 4096, 0, true, false, 1, (uint32_t[]) { T.gpus[0] });
        list_before = test_list_ranges(T.bus);

        before = file_size(journal);
        commit_three(e, ids);
        after = file_size(journal);
        ASSERT_UEQ(ids[3], e);

        /* One line for the whole Commit. */
        tail = calloc(1, (size_t) (after - before) + 1);
        ASSERT_NOT_NULL(tail);
        f = fopen(journal, "re");
        ASSERT_NOT_NULL(f);
        ASSERT_OK(fseeko(f, before, SEEK_SET));
        ASSERT_UEQ(fread(tail, 1, (size_t) (after - before), f), (size_t) (after - before));
        fclose(f);
        for (char *p = tail; *p; p++)
                lines += *p == '\n';
        ASSERT_UEQ(lines, 1);

        /* Cut in the middle, as a crash mid-write leaves it (svmd writes nothing more before the kill). */
        ASSERT_OK(truncate(journal, before + (after - before) / 2));
        test_kill_and_wait_restart(&T);
        for (size_t i = 0; i < 3; i++)
                ASSERT_FALSE(exists(ids[i]));
        list_after = test_list_ranges(T.bus);
        ASSERT_STREQ(list_before, list_after);  /* e mapped on GPU 0 only, as before the Commit */
        lost = lost_ranges();
        ASSERT_STREQ(lost, "");

        /* Written whole, every change of it comes back. */
        commit_three(e, ids);
        free(list_before);
        list_before = test_list_ranges(T.bus);
        test_kill_and_wait_restart(&T);
        free(list_after);
        list_after = test_list_ranges(T.bus);
        ASSERT_STREQ(list_before, list_after);
        for (size_t i = 0; i < 3; i++) {
                ASSERT_TRUE(exists(ids[i]));
                r = test_call(T.bus, "Free", &error, NULL, "t", ids[i]);
                ASSERT_BUS_OK(r, &error);
        }
        r = test_call(T.bus, "Free", &error, NULL, "t", e);
        ASSERT_BUS_OK(r, &error);
}

/* How many fds of the fd store (svmd-harness keeps it: our parent) are files whose path starts with what. */
static int store_holds(const char *what) {
        char dir[64], path[512], target[256];
        struct dirent *de;
        int n = 0;
        DIR *d;

        snprintf(dir, sizeof(dir), "/proc/%d/fd", (int) getppid());
        d = opendir(dir);
        ASSERT_NOT_NULL(d);
        while ((de = readdir(d))) {
                ssize_t len;

                snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                len = readlink(path, target, sizeof(target) - 1);
                if (len <= 0)
                        continue;
                target[len] = '\0';
                n += strncmp(target, what, strlen(what)) == 0;
        }
        closedir(d);
        return n;
}

/*
 * Older versions named a range's fd "range-<id>" and wrote no "fd" into its record: such a record
 * finds its fd, and freeing the range takes that name out of the store.
 */
static void test_legacy_fd_name(void) {
        _cleanup_free_ char *journal = NULL, *slot = NULL, *line = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char msg[128], legacy[64];
        json_t *rec, *l;
        uint64_t d;
        FILE *f;
        int fd, r;

        d = allocate("host", 4 * 4096, 0, true, false, 0, NULL);
        rec = test_range_record(d);
        slot = strdup(json_string_value(json_object_get(rec, "fd")));
        ASSERT_NOT_NULL(slot);
        ASSERT_OK(json_object_del(rec, "fd"));
        l = json_pack("{sIs[{ssso}]}", "seq", (json_int_t) 1000000000, "changes", "op", "put", "range", rec);
        ASSERT_NOT_NULL(l);
        line = json_dumps(l, JSON_COMPACT);
        json_decref(l);
        ASSERT_TRUE(asprintf(&journal, "%s/journal", getenv("SVMD_RUNTIME_DIR")) >= 0);
        f = fopen(journal, "ae");
        ASSERT_TRUE(f);
        fprintf(f, "%s\n", line);
        fclose(f);

        snprintf(legacy, sizeof(legacy), "range-%" PRIu64, d);
        snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", slot);
        notify(msg, -1);
        fd = memfd_create("legacy", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        ASSERT_TRUE(fd >= 0 && ftruncate(fd, 4 * 4096) == 0);
        snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", legacy);
        notify(msg, fd);
        close(fd);

        test_kill_and_wait_restart(&T);
        ASSERT_TRUE(exists(d));
        ASSERT_EQ(store_holds("/memfd:legacy"), 1);
        r = test_call(T.bus, "Free", &error, NULL, "t", d);
        ASSERT_BUS_OK(r, &error);
        /* Freed: the store (svmd-harness, our parent) lets go of the fd named "range-<id>" when it
         * reads svmd's FDSTOREREMOVE, a moment after the reply. */
        for (int i = 0; i < 500 && store_holds("/memfd:legacy") > 0; i++)
                usleep(10000);
        ASSERT_EQ(store_holds("/memfd:legacy"), 0);
        test_kill_and_wait_restart(&T);
        ASSERT_FALSE(exists(d));
}

/* Every buffer gone once its ranges are freed: nothing (the fd store's copies, stray fds) keeps one. */
static void test_nothing_left(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id, va;
        const char *path;
        int r;

        /* Free whatever the earlier steps left, through a restart in between. */
        for (;;) {
                sd_bus_message_unref(reply);
                reply = NULL;
                r = test_call(T.bus, "ListRanges", &error, &reply, "a{sv}", 0);
                ASSERT_BUS_OK(r, &error);
                ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(ttttsuausus)"));
                if (sd_bus_message_enter_container(reply, 'r', "ttttsuausus") <= 0)
                        break;
                ASSERT_OK(sd_bus_message_read(reply, "tt", &id, &va));
                r = test_call(T.bus, "Free", &error, NULL, "t", id);
                ASSERT_BUS_OK(r, &error);
        }
        (void) path;

        /* The fd store drops its copies asynchronously (FDSTOREREMOVE), as systemd does. */
        for (int i = 0; i < 200; i++) {
                json_t *v = NULL;
                size_t n;

                ASSERT_OK(emu_kernel_dump(T.emu, &v));
                n = json_array_size(json_object_get(v, "buffers"));
                json_decref(v);
                if (n == 0)
                        return;
                usleep(20 * 1000);
        }
        _cleanup_free_ char *dump = test_dump(&T);
        fprintf(stderr, "buffers outlive their ranges:\n%s\n", dump);
        abort();
}

int main(void) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        printf("test ranges_survive_kill ... ");
        test_ranges_survive_kill();
        printf("ok\ntest bad_journal_and_fds ... ");
        test_bad_journal_and_fds();
        printf("test commit_record_torn ... ");
        test_commit_record_torn();
        printf("ok\n");
        printf("test legacy_fd_name ... ");
        test_legacy_fd_name();
        printf("ok\n");
        printf("ok\ntest nothing_left ... ");
        test_nothing_left();
        printf("ok\n");
        test_teardown(&T);
        return 0;
}
