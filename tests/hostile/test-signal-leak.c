/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Signals must not tell one tenant about another (under svmd-harness with
 * hostile.conf). uid 1 allocates a range, maps it to a second GPU (its
 * object's PropertiesChanged), frees it, and asks for more VRAM than its
 * quota (QuotaExceeded("uid:1", "vram")). Listening meanwhile:
 *
 *   - uid 2 on the direct socket, subscribed, matching every signal;
 *   - uid 2 on the bus, subscribed, with a match rule for every signal;
 *   - uid 2 running `gdbus monitor --dest org.svmd1`, a client svmd did not
 *     write, with its own match rule for everything svmd sends;
 *   - uid 1 on the bus and root on the bus and the direct socket, subscribed.
 *
 * uid 2 must hear nothing about uid 1's range or scope (it still hears about
 * its own range, and gdbus the node-wide PropertiesChanged, so they do
 * listen); uid 1 and root hear all of it. uid 2 cannot read the range's
 * properties or find its object either. The private bus lets everyone
 * eavesdrop, the system bus only root (dbus-daemon(1)), so the listeners here
 * use plain match rules, as a tenant on the system bus must.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)
#define UID_A 1
#define UID_B 2

static TestContext T;

/* ---- a listener: every signal it receives, one line each ---- */

typedef struct Listener {
        const char *who;
        sd_bus *bus;
        char log[65536];
        size_t len;
} Listener;

static int on_any_signal(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Listener *l = userdata;
        const char *member = sd_bus_message_get_member(m), *s = NULL;
        uint64_t id = 0;
        int n;

        if (!sd_bus_message_is_signal(m, NULL, NULL))
                return 0;
        if (streq_ptr(member, "RangeCreated") || streq_ptr(member, "RangeFreed"))
                (void) sd_bus_message_read_basic(m, 't', &id);
        else if (streq_ptr(member, "QuotaExceeded") || streq_ptr(member, "PropertiesChanged"))
                (void) sd_bus_message_read_basic(m, 's', &s);
        n = snprintf(l->log + l->len, sizeof(l->log) - l->len, "%s %s %" PRIu64 " %s\n", strna(member),
                     strna(sd_bus_message_get_path(m)), id, strempty(s));
        if (n > 0 && (size_t) n < sizeof(l->log) - l->len)
                l->len += (size_t) n;
        return 0;
}

static void listen_on(Listener *l, const char *who, bool direct) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        *l = (Listener) { .who = who, .bus = test_connect(direct) };
        /* The broadest rule: every signal, from anyone (on the bus, dbus-daemon gets it too). */
        ASSERT_OK(sd_bus_add_match(l->bus, NULL, "type='signal'", on_any_signal, l));
        r = test_call(l->bus, "Subscribe", &error, NULL, "");
        ASSERT_BUS_OK(r, &error);
}

/* A round trip to svmd: every signal svmd sent before it has arrived and is logged. */
static void drain(Listener *l) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(l->bus, SVMD_BUS_NAME, SVMD_MANAGER_PATH, "org.freedesktop.DBus.Peer", "Ping", &error,
                               NULL, "");
        ASSERT_BUS_OK(r, &error);
        while ((r = sd_bus_process(l->bus, NULL)) > 0)
                ;
        ASSERT_OK(r);
}

static bool heard(const Listener *l, const char *line) {
        return strstr(l->log, line) != NULL;
}

static void expect_all(Listener *l, uint64_t id) {
        char line[256];

        drain(l);
        snprintf(line, sizeof(line), "RangeCreated " SVMD_MANAGER_PATH " %" PRIu64 " \n", id);
        ASSERT_TRUE(heard(l, line));
        snprintf(line, sizeof(line), "PropertiesChanged " SVMD_RANGE_PATH_PREFIX "/%" PRIu64 " 0 " SVMD_RANGE_INTERFACE "\n",
                 id);
        ASSERT_TRUE(heard(l, line));
        snprintf(line, sizeof(line), "RangeFreed " SVMD_MANAGER_PATH " %" PRIu64 " \n", id);
        ASSERT_TRUE(heard(l, line));
        ASSERT_TRUE(heard(l, "QuotaExceeded " SVMD_MANAGER_PATH " 0 uid:1\n"));
        printf("  %-34s heard uid %d's range %" PRIu64 " and its QuotaExceeded\n", l->who, UID_A, id);
}

/* Nothing about uid 1: no range signal but about own, no range object but own, no scope but its own. */
static bool heard_nothing_of_a(Listener *l, uint64_t id_a, uint64_t own) {
        char own_path[64];
        char *p, *save = NULL;

        snprintf(own_path, sizeof(own_path), SVMD_RANGE_PATH_PREFIX "/%" PRIu64 " ", own);
        for (p = strtok_r(l->log, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
                char created[64], freed[64];
                bool leak;

                snprintf(created, sizeof(created), "RangeCreated " SVMD_MANAGER_PATH " %" PRIu64 " ", own);
                snprintf(freed, sizeof(freed), "RangeFreed " SVMD_MANAGER_PATH " %" PRIu64 " ", own);
                leak = strstr(p, "uid:1") ||
                       ((strstr(p, "RangeCreated") || strstr(p, "RangeFreed")) && strncmp(p, created, strlen(created)) != 0 &&
                        strncmp(p, freed, strlen(freed)) != 0) ||
                       (strstr(p, SVMD_RANGE_PATH_PREFIX "/") && !strstr(p, own_path));
                if (leak) {
                        fprintf(stderr, "LEAK: %s heard about uid %d's range %" PRIu64 ": %s\n", l->who, UID_A,
                                id_a, p);
                        return false;
                }
        }
        printf("  %-34s heard its own range %" PRIu64 " and nothing of uid %d\n", l->who, own, UID_A);
        return true;
}

/* ---- the gdbus listener: a client svmd did not write ---- */

static pid_t gdbus_pid;
static char gdbus_out[4096];

static void start_gdbus(void) {
        int fd;

        snprintf(gdbus_out, sizeof(gdbus_out), "%s/gdbus-monitor.out", getenv("SVMD_TEST_DIR"));
        fd = open(gdbus_out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(fchown(fd, UID_B, UID_B) < 0 ? -errno : 0);
        gdbus_pid = fork();
        ASSERT_TRUE(gdbus_pid >= 0);
        if (gdbus_pid == 0) {
                test_become(UID_B);
                /* After the uid change, which clears it: gdbus goes when the test does. */
                (void) prctl(PR_SET_PDEATHSIG, SIGTERM);
                dup2(fd, STDOUT_FILENO);
                /* Line-buffered: the output is a file. */
                execlp("stdbuf", "stdbuf", "-oL", "gdbus", "monitor", "--address", getenv("SVMD_BUS_ADDRESS"), "--dest", SVMD_BUS_NAME,
                       (char *) NULL);
                _exit(127);
        }
        close(fd);
}

static char *read_file(const char *path) {
        char *buf = calloc(1, 1 << 20);
        FILE *f = fopen(path, "re");
        size_t n;

        ASSERT_TRUE(buf && f);
        n = fread(buf, 1, (1 << 20) - 1, f);
        buf[n] = '\0';
        fclose(f);
        return buf;
}

/* gdbus subscribes asynchronously: wait until it shows it hears svmd (a node-wide PropertiesChanged). */
static char *gdbus_wait_for(const char *what) {
        for (int i = 0; i < 200; i++) {
                char *s = read_file(gdbus_out);
                if (strstr(s, what))
                        return s;
                free(s);
                nanosleep(&(struct timespec) { 0, 25 * 1000 * 1000 }, NULL);
        }
        return read_file(gdbus_out);
}

/* ---- the tenants ---- */

static int go_a[2], go_b[2], go_c[2], pipe_done[2]; /* go: one per child, so each gets its own byte */

static void wait_byte(int fd) {
        char c;
        ASSERT_TRUE(read(fd, &c, 1) == 1);
}

static void send_byte(int fd) {
        ASSERT_TRUE(write(fd, "x", 1) == 1);
}

static uint64_t allocate(sd_bus *bus, uint64_t size, uint32_t gpu, const char *domain) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;
        uint64_t id, va;
        int r;

        r = test_call(bus, "Allocate", &error, &reply, "tusa{sv}", size, gpu, domain, 1, "map", "au", 1, T.gpus[0]);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        return id;
}

static uint64_t *shared_id;

/* uid 1: listens on its own, then acts. */
static void tenant_a(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Listener own;
        sd_bus *bus;
        uint64_t id;
        int r;

        test_become(UID_A);
        listen_on(&own, "uid 1 subscribed on the bus", false);
        bus = test_connect(false);
        wait_byte(go_a[0]);

        id = allocate(bus, 2 * MiB, 0, "gtt");
        *shared_id = id;
        r = test_call(bus, "Map", &error, NULL, "taua{sv}", id, 1, T.gpus[1], 0);
        ASSERT_BUS_OK(r, &error);
        test_free(bus, id);
        r = test_call(bus, "Allocate", &error, NULL, "tusa{sv}", UINT64_C(4) << 30, T.gpus[0], "vram", 0);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_QUOTA_EXCEEDED);
        sd_bus_error_free(&error);

        expect_all(&own, id);
        sd_bus_flush_close_unref(bus);
        sd_bus_flush_close_unref(own.bus);
}

/* uid 2: listens on both transports while uid 1 acts, then makes a range of its own. */
static void tenant_b(void) {
        Listener direct, bus;
        uint64_t own;
        bool ok;

        test_become(UID_B);
        listen_on(&direct, "uid 2 subscribed, direct", true);
        listen_on(&bus, "uid 2 subscribed on the bus", false);
        send_byte(pipe_done[1]); /* listening */
        wait_byte(go_b[0]);      /* uid 1 is done */
        drain(&direct);
        drain(&bus);

        /* Its own range: heard, so the listeners do work. */
        own = allocate(bus.bus, 64 * 1024, 0, "gtt");
        test_free(bus.bus, own);
        drain(&direct);
        drain(&bus);
        ok = heard_nothing_of_a(&direct, *shared_id, own);
        ok = heard_nothing_of_a(&bus, *shared_id, own) && ok;
        sd_bus_flush_close_unref(direct.bus);
        sd_bus_flush_close_unref(bus.bus);
        if (!ok)
                _exit(EXIT_FAILURE);
}

static pid_t spawn(void (*fn)(void)) {
        pid_t pid = fork();

        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                fn();
                _exit(0);
        }
        return pid;
}

static bool reaped_ok(pid_t pid, const char *who) {
        int status;

        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "%s failed (status 0x%x)\n", who, status);
                return false;
        }
        return true;
}

static void reap(pid_t pid, const char *who) {
        if (!reaped_ok(pid, who))
                abort();
}

/* A range object uid 2 cannot read or find while it exists: the same answer as for an id never used. */
static void reader_b(void) {
        _cleanup_free_ char *path = NULL, *none = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error e1 = SD_BUS_ERROR_NULL, e2 = SD_BUS_ERROR_NULL, e3 = SD_BUS_ERROR_NULL;
        uint64_t id = *shared_id, va;
        const char *xml;
        char node[64];
        sd_bus *b;
        int r1, r2;

        test_become(UID_B);
        b = test_connect(false);
        ASSERT_TRUE(asprintf(&path, SVMD_RANGE_PATH_PREFIX "/%" PRIu64, id) > 0);
        ASSERT_TRUE(asprintf(&none, SVMD_RANGE_PATH_PREFIX "/%" PRIu64, id + 100000) > 0);
        r1 = sd_bus_get_property_trivial(b, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "Va", &e1, 't', &va);
        r2 = sd_bus_get_property_trivial(b, SVMD_BUS_NAME, none, SVMD_RANGE_INTERFACE, "Va", &e2, 't', &va);
        ASSERT_TRUE(r1 < 0 && r2 < 0);
        ASSERT_STREQ(e1.name, e2.name);
        /* Enumeration: the range directory lists none of uid 1's objects. */
        ASSERT_OK(sd_bus_call_method(b, SVMD_BUS_NAME, SVMD_RANGE_PATH_PREFIX, "org.freedesktop.DBus.Introspectable",
                                     "Introspect", &e3, &reply, ""));
        ASSERT_OK(sd_bus_message_read(reply, "s", &xml));
        snprintf(node, sizeof(node), "<node name=\"%" PRIu64 "\"", id);
        ASSERT_TRUE(!strstr(xml, node));
        printf("  uid 2 reading range %" PRIu64 "'s properties: %s, as for an id never used; not listed\n", id,
               e1.name);
        sd_bus_error_free(&e1);
        sd_bus_error_free(&e2);
        sd_bus_flush_close_unref(b);
}

static void check_properties_hidden(void) {
        sd_bus *own;
        pid_t pid;

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                test_become(UID_A);
                own = test_connect(false);
                *shared_id = allocate(own, 64 * 1024, 0, "gtt");
                send_byte(pipe_done[1]);
                wait_byte(go_c[0]);
                sd_bus_flush_close_unref(own);
                _exit(0);
        }
        wait_byte(pipe_done[0]);
        reap(spawn(reader_b), "uid 2 reading");
        send_byte(go_c[1]);
        reap(pid, "uid 1");
}

/* gdbus subscribes asynchronously: poke svmd (a new client changes the node-wide Clients) until it hears. */
static void gdbus_wait_listening(void) {
        for (int i = 0; i < 200; i++) {
                _cleanup_free_ char *s = read_file(gdbus_out);
                sd_bus_error error = SD_BUS_ERROR_NULL;
                sd_bus *poke;
                int r;

                if (strstr(s, "PropertiesChanged"))
                        return;
                poke = test_connect(false);
                r = test_call(poke, "GetUsage", &error, NULL, "s", "");
                ASSERT_BUS_OK(r, &error);
                sd_bus_flush_close_unref(poke);
                nanosleep(&(struct timespec) { 0, 25 * 1000 * 1000 }, NULL);
        }
        {
                _cleanup_free_ char *s = read_file(gdbus_out);
                fprintf(stderr, "gdbus monitor heard nothing from svmd:\n%s\n", s);
        }
        abort();
}

int main(void) {
        _cleanup_free_ char *seen = NULL;
        Listener root_bus, root_direct;
        pid_t a, b;
        uint64_t id;
        bool ok;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        ASSERT_TRUE(T.n_gpus >= 2);
        shared_id = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(shared_id != MAP_FAILED);
        ASSERT_OK(pipe2(go_a, O_CLOEXEC));
        ASSERT_OK(pipe2(go_b, O_CLOEXEC));
        ASSERT_OK(pipe2(go_c, O_CLOEXEC));
        ASSERT_OK(pipe2(pipe_done, O_CLOEXEC));

        listen_on(&root_bus, "root subscribed on the bus", false);
        listen_on(&root_direct, "root subscribed, direct", true);
        start_gdbus();
        b = spawn(tenant_b);
        wait_byte(pipe_done[0]);
        a = spawn(tenant_a);
        gdbus_wait_listening();

        printf("uid %d allocates, maps, frees and exceeds its quota:\n", UID_A);
        send_byte(go_a[1]);
        reap(a, "uid 1");
        id = *shared_id;
        send_byte(go_b[1]);
        ok = reaped_ok(b, "uid 2");

        expect_all(&root_bus, id);
        expect_all(&root_direct, id);

        /* gdbus: hears svmd's node-wide PropertiesChanged, and nothing about uid 1. */
        {
                char path[64];

                seen = gdbus_wait_for("/org/svmd1/gpu/");
                snprintf(path, sizeof(path), SVMD_RANGE_PATH_PREFIX "/%" PRIu64, id);
                ASSERT_TRUE(strstr(seen, "PropertiesChanged"));
                if (strstr(seen, "RangeCreated") || strstr(seen, "RangeFreed") || strstr(seen, "QuotaExceeded") ||
                    strstr(seen, "uid:1") || strstr(seen, path)) {
                        fprintf(stderr, "LEAK: gdbus monitor as uid %d heard about uid %d:\n%s\n", UID_B, UID_A, seen);
                        ok = false;
                } else
                        printf("  %-34s heard node-wide PropertiesChanged and nothing of uid %d\n",
                               "uid 2 running gdbus monitor", UID_A);
        }
        kill(gdbus_pid, SIGTERM);
        waitpid(gdbus_pid, NULL, 0);

        ASSERT_TRUE(ok);
        check_properties_hidden();

        sd_bus_flush_close_unref(root_bus.bus);
        sd_bus_flush_close_unref(root_direct.bus);
        test_teardown(&T);
        printf("signal-leak: uid %d heard nothing of uid %d on either transport\n", UID_B, UID_A);
        return 0;
}
