/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Identity, authorization, sharing and quotas with real clients of different
 * uids (setresuid), against svmd started with tests/integration/data/quota.conf:
 * uid 1 may have 64 MiB of VRAM, 16 MiB of host memory and 4 ranges. The uids
 * are Debian's static ones (daemon, nobody, bin): dbus-daemon only admits
 * users that exist.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)
#define UID_A 1      /* daemon */
#define UID_B 65534  /* nobody */
#define UID_C 2      /* bin */

static TestContext T;   /* root's view */

/* ---- running code as another uid ---- */

typedef TestChild Child;       /* line-based pipes */

static sd_bus *user_bus(void) {
        sd_bus *bus = NULL;

        ASSERT_OK(sd_bus_new(&bus));
        ASSERT_OK(sd_bus_set_address(bus, getenv("SVMD_BUS_ADDRESS")));
        ASSERT_OK(sd_bus_set_bus_client(bus, 1));
        ASSERT_OK(sd_bus_negotiate_fds(bus, 1));
        ASSERT_OK(sd_bus_start(bus));
        return bus;
}

static void send_line(int fd, const char *fmt, ...) _printf_(2, 3);
static void send_line(int fd, const char *fmt, ...) {
        char buf[512];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
        va_end(ap);
        buf[n++] = '\n';
        ASSERT_TRUE(write(fd, buf, (size_t) n) == n);
}

static char *recv_line(int fd) {
        static char buf[512];
        size_t n = 0;

        while (n < sizeof(buf) - 1) {
                ssize_t k = read(fd, buf + n, 1);
                ASSERT_TRUE(k == 1);
                if (buf[n] == '\n')
                        break;
                n++;
        }
        buf[n] = '\0';
        return buf;
}

static int reap(Child *c) {
        int status;

        close(c->to_child);
        close(c->from_child);
        ASSERT_TRUE(waitpid(c->pid, &status, 0) == c->pid);
        return status;
}

static void expect_exit_ok(Child *c) {
        int status = reap(c);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
}

/* ---- A: owner, uid 1000 ---- */

static uint64_t call_allocate(sd_bus *bus, uint64_t size, uint32_t gpu, const char *domain, bool public_,
                              bool persistent, uint64_t *ret_va, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        uint64_t id = 0, va = 0;
        const char *path;
        int r;

        if (public_)
                r = test_call(bus, "Allocate", error, &reply, "tusa{sv}", size, gpu, domain, 2, "flags", "as", 2,
                              "writable", "public", "persistent", "b", (int) persistent);
        else
                r = test_call(bus, "Allocate", error, &reply, "tusa{sv}", size, gpu, domain, 1, "persistent", "b",
                              (int) persistent);
        if (r < 0)
                return 0;
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        if (ret_va)
                *ret_va = va;
        return id;
}

static const char pattern[] = "svmd shares bytes across processes";

static void owner_main(int in, int out) {
        sd_bus *bus = user_bus();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        uint64_t id, size, ids[4];
        const char *token;
        char *map;
        int fd, r;

        /* Host-visible VRAM with a pattern written through the exported dma-buf. */
        id = call_allocate(bus, 2 * MiB, (uint32_t) strtoul(getenv("GPU0"), NULL, 0), "vram", true, false, NULL,
                           &error);
        ASSERT_BUS_OK(id ? 0 : -1, &error);
        fd = test_export(bus, id, &size);
        ASSERT_UEQ(size, 2 * MiB);
        map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ASSERT_TRUE(map != MAP_FAILED);
        memcpy(map, pattern, sizeof(pattern));
        munmap(map, size);

        r = test_call(bus, "Share", &error, &reply, "ta{sv}", id, 1, "uid", "u", (uint32_t) UID_B);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &token));
        send_line(out, "%" PRIu64 " %s", id, token);

        /* Wait until B is done and gone, then free: nothing may remain. */
        ASSERT_STREQ(recv_line(in), "free");
        r = test_call(bus, "Free", &error, NULL, "t", id);
        ASSERT_BUS_OK(r, &error);
        close(fd);

        /* Quota: 64 MiB of VRAM, 4 ranges. */
        ids[0] = call_allocate(bus, 48 * MiB, (uint32_t) strtoul(getenv("GPU0"), NULL, 0), "vram", false, false,
                               NULL, &error);
        ASSERT_TRUE(ids[0] != 0);
        sd_bus_error_free(&error);
        id = call_allocate(bus, 32 * MiB, (uint32_t) strtoul(getenv("GPU0"), NULL, 0), "vram", false, false, NULL,
                           &error);
        ASSERT_BUS_ERROR(id ? 0 : -EDQUOT, &error, SVMD_ERROR_QUOTA_EXCEEDED);
        fprintf(stderr, "uid %d refused: %s\n", UID_A, error.message);
        ASSERT_TRUE(strstr(error.message, "uid:1") != NULL);
        sd_bus_error_free(&error);
        for (int i = 1; i < 4; i++) {
                ids[i] = call_allocate(bus, 4096, 0, "host", false, false, NULL, &error);
                ASSERT_BUS_OK(ids[i] ? 0 : -1, &error);
        }
        id = call_allocate(bus, 4096, 0, "host", false, false, NULL, &error);
        ASSERT_BUS_ERROR(id ? 0 : -EDQUOT, &error, SVMD_ERROR_QUOTA_EXCEEDED);
        sd_bus_error_free(&error);
        for (int i = 0; i < 4; i++) {
                r = test_call(bus, "Free", &error, NULL, "t", ids[i]);
                ASSERT_BUS_OK(r, &error);
        }
        send_line(out, "done");
        sd_bus_flush_close_unref(bus);
}

/* ---- B: holder, uid 1001 ---- */

static void holder_main(int in, int out) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = user_bus();
        uint64_t id, aid, va, size;
        char token[128], *map, *line;
        int fd, r;

        line = recv_line(in);
        ASSERT_EQ(sscanf(line, "%" SCNu64 " %127s", &aid, token), 2);

        r = test_call(bus, "Attach", &error, &reply, "s", token);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "ttth", &id, &va, &size, &fd));
        ASSERT_UEQ(id, aid);
        /* A holder reads the range's object. */
        {
                char path[64];
                uint64_t v;

                snprintf(path, sizeof(path), "/org/svmd1/range/%" PRIu64, id);
                r = sd_bus_get_property_trivial(bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "Va", &error, 't', &v);
                ASSERT_BUS_OK(r, &error);
                ASSERT_UEQ(v, va);
        }
        map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        ASSERT_TRUE(map != MAP_FAILED);
        ASSERT_STREQ(map, pattern);
        fprintf(stderr, "uid %d read through its attached mapping: \"%s\"\n", UID_B, map);

        /* A holder may not change or free what it does not own. */
        r = test_call(bus, "Free", &error, NULL, "t", id);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_ACCESS_DENIED);
        fprintf(stderr, "uid %d refused: %s\n", UID_B, error.message);
        sd_bus_error_free(&error);
        r = test_call(bus, "Map", &error, NULL, "taua{sv}", id, 1, (uint32_t) strtoul(getenv("GPU1"), NULL, 0), 0);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_ACCESS_DENIED);
        sd_bus_error_free(&error);
        r = test_call(bus, "Share", &error, NULL, "ta{sv}", id, 0);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_ACCESS_DENIED);
        sd_bus_error_free(&error);
        /* Guessing tokens gets nowhere. */
        r = test_call(bus, "Attach", &error, NULL, "s", "00000000000000000000000000000000");
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NO_SUCH_TOKEN);
        sd_bus_error_free(&error);

        send_line(out, "attached");
        /* Crash while holding it: the reference must go with the connection. */
        ASSERT_STREQ(recv_line(in), "crash");
        raise(SIGKILL);
}

/* ---- C: a third uid, not granted ---- */

static void stranger_main(int in, int out) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = user_bus();
        char token[128], *line;
        uint64_t id;
        int r;

        line = recv_line(in);
        ASSERT_EQ(sscanf(line, "%" SCNu64 " %127s", &id, token), 2);
        r = test_call(bus, "Attach", &error, NULL, "s", token);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_ACCESS_DENIED);
        sd_bus_error_free(&error);
        /* Another tenant's range answers like an id that does not exist. */
        r = test_call(bus, "Export", &error, NULL, "t", id);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
        sd_bus_error_free(&error);
        r = test_call(bus, "Free", &error, NULL, "t", id);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
        sd_bus_error_free(&error);
        r = test_call(bus, "Reload", &error, NULL, "");
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_ACCESS_DENIED);
        sd_bus_error_free(&error);
        r = test_call(bus, "GetUsage", &error, NULL, "s", "uid:1");
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_ACCESS_DENIED);
        sd_bus_error_free(&error);

        /* It cannot read another tenant's range object either. */
        {
                char path[64];
                uint64_t va;

                snprintf(path, sizeof(path), "/org/svmd1/range/%" PRIu64, id);
                r = sd_bus_get_property_trivial(bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "Va", &error, 't', &va);
                ASSERT_BUS_ERROR(r, &error, "org.freedesktop.DBus.Error.UnknownObject");
                sd_bus_error_free(&error);
        }

        /* It sees none of the others' ranges. */
        r = test_call(bus, "ListRanges", &error, &reply, "a{sv}", 0);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(ttttsuausus)"));
        ASSERT_EQ(sd_bus_message_at_end(reply, false), 1);
        send_line(out, "done");
}

static char *holders_of(uint64_t id) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[64], *buf = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&buf, &n);
        uint32_t uid;
        const char *unit;
        int r;

        snprintf(path, sizeof(path), "/org/svmd1/range/%" PRIu64, id);
        r = sd_bus_get_property(T.bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "Holders", &error, &reply, "a(us)");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(us)"));
        while ((r = sd_bus_message_read(reply, "(us)", &uid, &unit)) > 0)
                fprintf(f, "%u ", uid);
        fclose(f);
        return buf;
}

static void wait_until(bool (*cond)(void *), void *userdata) {
        for (int i = 0; i < 200 && !cond(userdata); i++) {
                struct timespec ts = { 0, 20 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        ASSERT_TRUE(cond(userdata));
}

static bool no_holders(void *userdata) {
        _cleanup_free_ char *h = holders_of(*(uint64_t *) userdata);
        return streq(h, "");
}

static bool range_gone(void *userdata) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[64];
        uint64_t id;
        int r;

        snprintf(path, sizeof(path), "/org/svmd1/range/%" PRIu64, *(uint64_t *) userdata);
        r = sd_bus_get_property_trivial(T.bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "Id", &error, 't', &id);
        sd_bus_error_free(&error);
        return r < 0;
}

static void test_share_between_uids(void) {
        _cleanup_free_ char *before = test_dump(&T), *after = NULL, *h = NULL;
        Child a, b, c;
        char *line, copy[256];
        uint64_t id;

        a = test_spawn(UID_A, owner_main);
        b = test_spawn(UID_B, holder_main);
        c = test_spawn(UID_C, stranger_main);

        line = recv_line(a.from_child);
        snprintf(copy, sizeof(copy), "%s", line);
        ASSERT_EQ(sscanf(copy, "%" SCNu64, &id), 1);
        send_line(b.to_child, "%s", copy);
        send_line(c.to_child, "%s", copy);
        ASSERT_STREQ(recv_line(c.from_child), "done");
        expect_exit_ok(&c);
        ASSERT_STREQ(recv_line(b.from_child), "attached");

        h = holders_of(id);
        ASSERT_STREQ(h, "65534 ");

        /* B crashes: its reference goes with its connection. */
        send_line(b.to_child, "crash");
        ASSERT_TRUE(WIFSIGNALED(reap(&b)));
        wait_until(no_holders, &id);

        /* A frees; with no holder left the range goes, and so does the kernel buffer. */
        send_line(a.to_child, "free");
        ASSERT_STREQ(recv_line(a.from_child), "done");
        expect_exit_ok(&a);
        after = test_dump(&T);
        ASSERT_STREQ(before, after);
}

static void detached_main(int in, int out) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = user_bus();
        const char *token;
        uint64_t id;
        int r;

        id = call_allocate(bus, 8192, 0, "host", false, false, NULL, &error);
        ASSERT_BUS_OK(id ? 0 : -1, &error);
        r = test_call(bus, "Share", &error, &reply, "ta{sv}", id, 1, "read-only", "b", 1);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &token));
        send_line(out, "%" PRIu64 " %s", id, token);
        ASSERT_STREQ(recv_line(in), "free");
        r = test_call(bus, "Free", &error, NULL, "t", id);
        ASSERT_BUS_OK(r, &error);
        /* Retried (a scheduler plugin after a timeout): the same answer, no second effect. */
        r = test_call(bus, "Free", &error, NULL, "t", id);
        ASSERT_BUS_OK(r, &error);
        send_line(out, "freed");
        ASSERT_STREQ(recv_line(in), "exit");
}

static void test_free_with_holders(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *before = test_dump(&T), *after = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id, rid, va, size;
        char token[128], *line, *map;
        Child a;
        int fd, r;

        a = test_spawn(UID_A, detached_main);
        line = recv_line(a.from_child);
        ASSERT_EQ(sscanf(line, "%" SCNu64 " %127s", &id, token), 2);

        /* Root attaches (any uid matches an unrestricted token); read-only: no writable mapping. */
        r = test_call(T.bus, "Attach", &error, &reply, "s", token);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "ttth", &rid, &va, &size, &fd));
        ASSERT_UEQ(rid, id);
        map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ASSERT_TRUE(map == MAP_FAILED && errno == EACCES);

        /* The owner frees: the range lives on for its holder. */
        send_line(a.to_child, "free");
        ASSERT_STREQ(recv_line(a.from_child), "freed");
        ASSERT_FALSE(range_gone(&id));

        /* The owner's connection goes: nothing changes for the holder either. */
        send_line(a.to_child, "exit");
        expect_exit_ok(&a);
        ASSERT_FALSE(range_gone(&id));

        /* The last holder lets go: now it is freed. */
        r = test_call(T.bus, "Release", &error, NULL, "t", id);
        ASSERT_BUS_OK(r, &error);
        ASSERT_TRUE(range_gone(&id));
        r = test_call(T.bus, "Release", &error, NULL, "t", id);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
        sd_bus_error_free(&error);
        after = test_dump(&T);
        ASSERT_STREQ(before, after);
}

static void crash_main(int in, int out) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = user_bus();
        uint64_t a, b;

        a = call_allocate(bus, 2 * MiB, (uint32_t) strtoul(getenv("GPU0"), NULL, 0), "vram", false, false, NULL,
                          &error);
        b = call_allocate(bus, 2 * MiB, (uint32_t) strtoul(getenv("GPU0"), NULL, 0), "vram", false, true, NULL,
                          &error);
        ASSERT_TRUE(a && b);
        send_line(out, "%" PRIu64 " %" PRIu64, a, b);
        ASSERT_STREQ(recv_line(in), "die");
        raise(SIGKILL);
}

static void test_crash_cleanup(void) {
        _cleanup_free_ char *before = test_dump(&T), *after = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t a, b;
        Child c;
        int r;

        c = test_spawn(UID_A, crash_main);
        ASSERT_EQ(sscanf(recv_line(c.from_child), "%" SCNu64 " %" SCNu64, &a, &b), 2);
        send_line(c.to_child, "die");
        ASSERT_TRUE(WIFSIGNALED(reap(&c)));

        /* Non-persistent: freed with the connection. Persistent: stays, owner recorded. */
        wait_until(range_gone, &a);
        ASSERT_FALSE(range_gone(&b));
        uint32_t uid;
        const char *unit;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        char path[64];
        snprintf(path, sizeof(path), "/org/svmd1/range/%" PRIu64, b);
        r = sd_bus_get_property(T.bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "Owner", &error, &reply, "(us)");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "(us)", &uid, &unit));
        ASSERT_EQ(uid, UID_A);

        /* An administrator (root) may free it. */
        r = test_call(T.bus, "Free", &error, NULL, "t", b);
        ASSERT_BUS_OK(r, &error);
        after = test_dump_settled(&T, before);
        ASSERT_STREQ(before, after);
}

static void test_usage_and_reload(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[256], *bad;
        const char *key;
        uint64_t quota_ranges = 0, id;
        FILE *f;
        int r;

        r = test_call(T.bus, "GetUsage", &error, &reply, "s", "uid:1");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "{sv}"));
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                ASSERT_OK(sd_bus_message_read(reply, "s", &key));
                if (streq(key, "quota-ranges"))
                        ASSERT_OK(sd_bus_message_read(reply, "v", "t", &quota_ranges));
                else
                        ASSERT_OK(sd_bus_message_skip(reply, "v"));
                ASSERT_OK(sd_bus_message_exit_container(reply));
        }
        ASSERT_UEQ(quota_ranges, 4);

        /* A broken file is refused and the old configuration stays. */
        snprintf(path, sizeof(path), "%s", getenv("SVMD_TEST_CONFIG"));
        f = fopen(path, "we");
        ASSERT_TRUE(f);
        fputs("{ \"quotas\": [ { \"match\": { \"uid\": 1 }, \"vram\": \"lots\" } ] }\n", f);
        fclose(f);
        r = test_call(T.bus, "Reload", &error, NULL, "");
        ASSERT_BUS_ERROR(r, &error, "org.freedesktop.DBus.Error.InvalidFileContent");
        bad = strstr(error.message, "\"vram\"");
        ASSERT_TRUE(bad != NULL);
        fprintf(stderr, "bad config refused: %s\n", error.message);
        sd_bus_error_free(&error);

        /* A good one takes effect at once: root now has a quota of 0 ranges. */
        f = fopen(path, "we");
        ASSERT_TRUE(f);
        fputs("{ \"quotas\": [ { \"match\": { \"uid\": 0 }, \"ranges\": 0 } ] }\n", f);
        fclose(f);
        r = test_call(T.bus, "Reload", &error, NULL, "");
        ASSERT_BUS_OK(r, &error);
        id = call_allocate(T.bus, 4096, 0, "gtt", false, false, NULL, &error);
        ASSERT_BUS_ERROR(id ? 0 : -EDQUOT, &error, SVMD_ERROR_QUOTA_EXCEEDED);
        sd_bus_error_free(&error);

        f = fopen(path, "we");
        ASSERT_TRUE(f);
        fputs("{}\n", f);
        fclose(f);
        r = test_call(T.bus, "Reload", &error, NULL, "");
        ASSERT_BUS_OK(r, &error);
        id = call_allocate(T.bus, 4096, 0, "gtt", false, false, NULL, &error);
        ASSERT_BUS_OK(id ? 0 : -1, &error);
        r = test_call(T.bus, "Free", &error, NULL, "t", id);
        ASSERT_BUS_OK(r, &error);
}

/* A grant to a unit glob: only callers in a matching unit attach, whatever their uid. */
static void test_unit_grant(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char other[64], mine[64];
        const char *token;
        uint64_t id;
        int r;

        id = call_allocate(T.bus, 8192, 0, "host", false, false, NULL, &error);
        ASSERT_BUS_OK(id ? 0 : -1, &error);

        r = test_call(T.bus, "Share", &error, &reply, "ta{sv}", id, 1, "unit", "s", "svmd-no-such-unit-*.service");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &token));
        snprintf(other, sizeof(other), "%s", token);
        r = test_call(T.bus, "Attach", &error, NULL, "s", other);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_ACCESS_DENIED);
        sd_bus_error_free(&error);

        /* "*" matches every unit, also none. */
        sd_bus_message_unref(reply);
        reply = NULL;
        r = test_call(T.bus, "Share", &error, &reply, "ta{sv}", id, 1, "unit", "s", "*");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &token));
        snprintf(mine, sizeof(mine), "%s", token);
        r = test_call(T.bus, "Attach", &error, NULL, "s", mine);
        ASSERT_BUS_OK(r, &error);
        r = test_call(T.bus, "Release", &error, NULL, "t", id);
        ASSERT_BUS_OK(r, &error);
        r = test_call(T.bus, "Free", &error, NULL, "t", id);
        ASSERT_BUS_OK(r, &error);
}

int main(void) {
        char gpu[32];

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        snprintf(gpu, sizeof(gpu), "%u", T.gpus[0]);
        setenv("GPU0", gpu, 1);
        snprintf(gpu, sizeof(gpu), "%u", T.gpus[1]);
        setenv("GPU1", gpu, 1);

        printf("test share_between_uids ... ");
        test_share_between_uids();
        printf("ok\ntest free_with_holders ... ");
        test_free_with_holders();
        printf("ok\ntest crash_cleanup ... ");
        test_crash_cleanup();
        printf("ok\ntest usage_and_reload ... ");
        test_usage_and_reload();
        printf("ok\ntest unit_grant ... ");
        test_unit_grant();
        printf("ok\n");
        test_teardown(&T);
        return 0;
}
