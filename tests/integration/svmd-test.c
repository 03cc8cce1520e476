/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

static sd_bus *connect_to(const char *address, bool bus_client) {
        sd_bus *bus = NULL;
        int r;

        r = sd_bus_new(&bus);
        ASSERT_OK(r);
        ASSERT_OK(sd_bus_set_address(bus, address));
        ASSERT_OK(sd_bus_set_bus_client(bus, bus_client));
        ASSERT_OK(sd_bus_negotiate_fds(bus, 1));
        r = sd_bus_start(bus);
        if (r < 0) {
                fprintf(stderr, "connecting to %s failed: %s\n", address, strerror(-r));
                abort();
        }
        return bus;
}

void test_setup(TestContext *t) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *address = getenv("SVMD_BUS_ADDRESS"), *dir = getenv("KFDEMU_DIR");
        uint32_t id, node;
        int r;

        *t = (TestContext) {};
        if (!address || !dir) {
                fprintf(stderr, "run this test under svmd-harness\n");
                exit(2);
        }
        ASSERT_OK(sd_bus_error_add_map(svmd_error_map));
        t->bus = connect_to(address, true);
        ASSERT_OK(emu_kernel_attach(dir, &t->emu));

        r = test_call(t->bus, "ListGpus", &error, &reply, "");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(uusstttq)"));
        while ((r = sd_bus_message_read(reply, "(uusstttq)", &id, &node, NULL, NULL, NULL, NULL, NULL, NULL)) > 0) {
                ASSERT_TRUE(t->n_gpus < TEST_MAX_GPUS);
                t->gpus[t->n_gpus++] = id;
        }
        ASSERT_OK(r);
        sd_bus_error_free(&error);
}

void test_teardown(TestContext *t) {
        sd_bus_flush_close_unref(t->bus);
        sd_bus_flush_close_unref(t->direct);
        emu_kernel_detach(t->emu);
        *t = (TestContext) {};
}

sd_bus *test_connect(bool direct) {
        char address[4096];

        if (direct)
                snprintf(address, sizeof(address), "unix:path=%s/io.socket", getenv("SVMD_RUNTIME_DIR"));
        else
                snprintf(address, sizeof(address), "%s", getenv("SVMD_BUS_ADDRESS"));
        return connect_to(address, !direct);
}

sd_bus *test_connect_bus(void) {
        return test_connect(false);
}

sd_bus *test_direct(TestContext *t) {
        char address[4096];

        if (!t->direct) {
                snprintf(address, sizeof(address), "unix:path=%s/io.socket", getenv("SVMD_RUNTIME_DIR"));
                t->direct = connect_to(address, false);
        }
        return t->direct;
}

int test_call(sd_bus *bus, const char *member, sd_bus_error *error, sd_bus_message **reply, const char *types,
              ...) {
        va_list ap;
        int r;

        va_start(ap, types);
        r = test_callv(bus, member, error, reply, types, ap);
        va_end(ap);
        return r;
}

int test_callv(sd_bus *bus, const char *member, sd_bus_error *error, sd_bus_message **reply, const char *types,
               va_list ap) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *rep = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                           member);
        ASSERT_OK(r);
        r = sd_bus_message_appendv(m, types, ap);
        ASSERT_OK(r);
        r = sd_bus_call(bus, m, 30 * 1000 * 1000ULL, error, &rep);
        if (r >= 0 && reply)
                *reply = TAKE_PTR(rep);
        return r;
}

bool test_outcome_unknown(int r, const sd_bus_error *e) {
        return r == -ETIMEDOUT || r == -ECONNRESET || r == -ENOTCONN || r == -EPIPE ||
               sd_bus_error_has_name(e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
               sd_bus_error_has_name(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER) ||
               sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY) ||
               sd_bus_error_has_name(e, SD_BUS_ERROR_DISCONNECTED) ||
               sd_bus_error_has_name(e, "org.freedesktop.DBus.Error.UnknownObject") ||
               sd_bus_error_has_name(e, "org.freedesktop.DBus.Error.UnknownMethod");
}

uint64_t test_commit_first_id(sd_bus_message *reply) {
        uint64_t id = 0;
        int r;

        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(a{sv})"));
        ASSERT_OK(sd_bus_message_enter_container(reply, 'r', "a{sv}"));
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "{sv}"));
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *key;

                ASSERT_OK(sd_bus_message_read(reply, "s", &key));
                if (streq(key, "id"))
                        ASSERT_OK(sd_bus_message_read(reply, "v", "t", &id));
                else
                        ASSERT_OK(sd_bus_message_skip(reply, "v"));
                ASSERT_OK(sd_bus_message_exit_container(reply));
        }
        ASSERT_OK(r);
        ASSERT_TRUE(id != 0);
        return id;
}

static void strip_counters(json_t *v) {
        if (!json_is_object(v))
                return;
        json_object_del(v, "ioctls");
        json_object_del(v, "ioctls_unknown");
        json_object_del(v, "faults");
}

char *test_dump(TestContext *t) {
        json_t *v = NULL;
        char *s;

        ASSERT_OK(emu_kernel_dump(t->emu, &v));
        strip_counters(v);
        s = json_dumps(v, JSON_SORT_KEYS | JSON_INDENT(1));
        json_decref(v);
        ASSERT_TRUE(s);
        return s;
}

void test_free(sd_bus *bus, uint64_t id) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = test_call(bus, "Free", &error, NULL, "t", id);

        ASSERT_BUS_OK(r, &error);
        sd_bus_error_free(&error);
}

uint64_t test_allocate(sd_bus *bus, uint64_t size, uint32_t gpu, const char *domain, bool persistent,
                       uint64_t *ret_va) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;
        uint64_t id, va;
        int r;

        r = test_call(bus, "Allocate", &error, &reply, "tusa{sv}", size, gpu, domain, 1, "persistent", "b",
                      (int) persistent);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        if (ret_va)
                *ret_va = va;
        return id;
}

int test_export(sd_bus *bus, uint64_t id, uint64_t *ret_size) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t va, size;
        int fd, r;

        r = test_call(bus, "Export", &error, &reply, "t", id);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "htt", &fd, &va, &size));
        fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        ASSERT_TRUE(fd >= 0);
        if (ret_size)
                *ret_size = size;
        return fd;
}

char *test_lost_ranges(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char *buf = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&buf, &n);
        const char *reason;
        uint64_t id;
        int r;

        ASSERT_TRUE(f);
        r = sd_bus_get_property(bus, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "LostRanges", &error,
                                &reply, "a(ts)");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(ts)"));
        while ((r = sd_bus_message_read(reply, "(ts)", &id, &reason)) > 0)
                fprintf(f, "%" PRIu64 ": %s\n", id, reason);
        ASSERT_OK(r);
        fclose(f);
        return buf;
}

size_t test_gpu_peers(TestContext *t, uint32_t gpu, uint32_t *ret, size_t max) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const uint32_t *ids;
        char path[64];
        size_t n;
        int r;

        snprintf(path, sizeof(path), SVMD_GPU_PATH_PREFIX "/%u", gpu);
        r = sd_bus_get_property(t->bus, SVMD_BUS_NAME, path, SVMD_GPU_INTERFACE, "Peers", &error, &reply, "au");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read_array(reply, 'u', (const void **) &ids, &n));
        n /= sizeof(uint32_t);
        for (size_t i = 0; i < n && i < max; i++)
                ret[i] = ids[i];
        sd_bus_error_free(&error);
        return MIN(n, max);
}

char *test_dump_settled(TestContext *t, const char *want) {
        char *s = test_dump(t);

        for (int i = 0; i < 250 && strcmp(s, want) != 0; i++) {
                struct timespec ts = { 0, 20 * 1000 * 1000 };

                nanosleep(&ts, NULL);
                free(s);
                s = test_dump(t);
        }
        return s;
}

uint64_t test_ioctl_count(TestContext *t, const char *name) {
        json_t *v = NULL, *c;
        uint64_t n = 0;

        ASSERT_OK(emu_kernel_dump(t->emu, &v));
        c = json_object_get(json_object_get(v, "ioctls"), name);
        if (json_is_integer(c))
                n = (uint64_t) json_integer_value(c);
        json_decref(v);
        return n;
}

void test_fault(TestContext *t, const char *fmt, ...) {
        _cleanup_free_ char *spec = NULL, *error = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&spec, fmt, ap);
        va_end(ap);
        ASSERT_TRUE(r >= 0);
        r = emu_kernel_fault_add(t->emu, spec, &error);
        if (r < 0) {
                fprintf(stderr, "fault '%s': %s\n", spec, error ?: strerror(-r));
                abort();
        }
}

uint64_t test_faults_fired(TestContext *t) {
        json_t *v = NULL, *f;
        uint64_t n = 0;
        size_t i;

        ASSERT_OK(emu_kernel_dump(t->emu, &v));
        json_array_foreach(json_object_get(v, "faults"), i, f)
                n += (uint64_t) json_integer_value(json_object_get(f, "fired"));
        json_decref(v);
        return n;
}

void test_fault_clear(TestContext *t) {
        ASSERT_OK(emu_kernel_fault_clear(t->emu));
}

static int read_state(pid_t *ret_pid, int *ret_ready) {
        char path[4096];
        FILE *f;
        int pid = 0, ready = 0, n;

        snprintf(path, sizeof(path), "%s/svmd.state", getenv("KFDEMU_DIR"));
        f = fopen(path, "re");
        if (!f)
                return -errno;
        n = fscanf(f, "%d %d", &pid, &ready);
        fclose(f);
        if (n != 2)
                return -EBADMSG;
        *ret_pid = (pid_t) pid;
        *ret_ready = ready;
        return 0;
}

bool test_svmd_ready(void) {
        pid_t pid;
        int ready;

        return read_state(&pid, &ready) >= 0 && pid > 0 && ready;
}

void test_kill_and_wait_restart(TestContext *t) {
        pid_t old, pid;
        int ready;

        ASSERT_OK(read_state(&old, &ready));
        ASSERT_TRUE(old > 0);
        /* Between two of its ioctls, as the kernel would have it. */
        ASSERT_OK(emu_kernel_kill(t->emu, old, UINT64_C(10) * 1000 * 1000));
        for (int i = 0; i < 6000; i++) {
                struct timespec ts = { 0, 10 * 1000 * 1000 };

                if (read_state(&pid, &ready) >= 0 && pid > 0 && pid != old && ready)
                        break;
                nanosleep(&ts, NULL);
        }
        ASSERT_OK(read_state(&pid, &ready));
        ASSERT_TRUE(pid != old && ready);
        /* The direct connection died with the old daemon. */
        t->direct = sd_bus_flush_close_unref(t->direct);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

char *test_kernel_mappings(TestContext *t) {
        json_t *v = NULL, *p, *h, *g;
        char *lines[4096], *buf = NULL;
        size_t n = 0, i, j, k, size = 0;
        FILE *f;

        ASSERT_OK(emu_kernel_dump(t->emu, &v));
        json_array_foreach(json_object_get(v, "processes"), i, p)
                json_array_foreach(json_object_get(p, "handles"), j, h) {
                        char *line = NULL, *gpus = NULL;
                        size_t gl = 0;
                        FILE *gf = open_memstream(&gpus, &gl);
                        uint64_t ids[64];
                        size_t ng = 0;

                        json_array_foreach(json_object_get(h, "mapped"), k, g)
                                if (ng < 64)
                                        ids[ng++] = (uint64_t) json_integer_value(g);
                        for (size_t a = 0; a < ng; a++)
                                for (size_t b = a + 1; b < ng; b++)
                                        if (ids[b] < ids[a]) {
                                                uint64_t x = ids[a];
                                                ids[a] = ids[b];
                                                ids[b] = x;
                                        }
                        for (size_t a = 0; a < ng; a++)
                                fprintf(gf, " %" PRIu64, ids[a]);
                        fclose(gf);
                        ASSERT_TRUE(asprintf(&line, "0x%" PRIx64 " %" PRIu64 " [%s ]",
                                             (uint64_t) json_integer_value(json_object_get(h, "va")),
                                             (uint64_t) json_integer_value(json_object_get(h, "size")), gpus) >= 0);
                        free(gpus);
                        ASSERT_TRUE(n < ELEMENTSOF(lines));
                        lines[n++] = line;
                }
        json_decref(v);
        qsort(lines, n, sizeof(char *), cmp_str);
        f = open_memstream(&buf, &size);
        for (i = 0; i < n; i++) {
                fprintf(f, "%s\n", lines[i]);
                free(lines[i]);
        }
        fclose(f);
        return buf;
}

char *test_list_ranges(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char *buf = NULL;
        size_t size = 0;
        FILE *f;
        uint64_t id, va, size_, flags;
        const char *domain, *label, *state;
        uint32_t home, owner;
        int r;

        r = test_call(bus, "ListRanges", &error, &reply, "a{sv}", 1, "limit", "t", (uint64_t) 4096);
        ASSERT_BUS_OK(r, &error);
        f = open_memstream(&buf, &size);
        ASSERT_TRUE(f);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(ttttsuausus)"));
        while ((r = sd_bus_message_enter_container(reply, 'r', "ttttsuausus")) > 0) {
                const uint32_t *mapped;
                size_t n;

                ASSERT_OK(sd_bus_message_read(reply, "ttttsu", &id, &va, &size_, &flags, &domain, &home));
                ASSERT_OK(sd_bus_message_read_array(reply, 'u', (const void **) &mapped, &n));
                ASSERT_OK(sd_bus_message_read(reply, "sus", &label, &owner, &state));
                fprintf(f, "%" PRIu64 " 0x%" PRIx64 " %" PRIu64 " %" PRIu64 " %s %u [", id, va, size_, flags, domain,
                        home);
                for (size_t i = 0; i < n / sizeof(uint32_t); i++)
                        fprintf(f, " 0x%x", mapped[i]);
                fprintf(f, " ] '%s' %u %s\n", label, owner, state);
                ASSERT_OK(sd_bus_message_exit_container(reply));
        }
        ASSERT_OK(r);
        fclose(f);
        sd_bus_error_free(&error);
        return buf;
}

char *test_svmd_log(void) {
        char path[4096], *buf = NULL;
        size_t size = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/svmd.log", getenv("KFDEMU_DIR"));
        f = fopen(path, "re");
        ASSERT_TRUE(f);
        ASSERT_TRUE(getdelim(&buf, &size, '\0', f) >= 0);
        fclose(f);
        return buf;
}

/* Keep rec in *latest if it is range id's. */
static void take_record(json_t *rec, uint64_t id, json_t **latest) {
        json_t *rid = json_object_get(rec, "id");

        if (!json_is_integer(rid) || (uint64_t) json_integer_value(rid) != id)
                return;
        json_decref(*latest);
        *latest = json_incref(rec);
}

json_t *test_range_record(uint64_t id) {
        char path[4096], idkey[32], *line = NULL;
        const char *dir = getenv("SVMD_RUNTIME_DIR");
        json_t *v, *latest = NULL;
        size_t len = 0;
        FILE *f;

        ASSERT_NOT_NULL(dir);
        snprintf(idkey, sizeof(idkey), "%" PRIu64, id);
        snprintf(path, sizeof(path), "%s/snapshot.json", dir);
        v = json_load_file(path, 0, NULL);
        take_record(json_object_get(json_object_get(v, "ranges"), idkey), id, &latest);
        json_decref(v);

        snprintf(path, sizeof(path), "%s/journal", dir);
        f = fopen(path, "re");
        while (f && getline(&line, &len, f) > 0) {
                json_t *change;
                size_t i;

                v = json_loads(line, 0, NULL);
                json_array_foreach(json_object_get(v, "changes"), i, change)
                        take_record(json_object_get(change, "range"), id, &latest);
                json_decref(v);
        }
        if (f)
                fclose(f);
        free(line);
        ASSERT_NOT_NULL(latest);
        return latest;
}

char *test_fd_store_name(uint64_t id) {
        json_t *rec = test_range_record(id);
        char *name;

        ASSERT_TRUE(json_is_string(json_object_get(rec, "fd")));
        name = strdup(json_string_value(json_object_get(rec, "fd")));
        json_decref(rec);
        ASSERT_NOT_NULL(name);
        return name;
}

void test_notify(const char *msg, int fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char control[CMSG_SPACE(sizeof(int))] = {};
        struct iovec iov = { (void *) msg, strlen(msg) };
        struct msghdr mh = { .msg_name = &sa, .msg_namelen = sizeof(sa), .msg_iov = &iov, .msg_iovlen = 1 };
        int s;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", getenv("KFDEMU_DIR"));
        if (fd >= 0) {
                struct cmsghdr *c;

                mh.msg_control = control;
                mh.msg_controllen = sizeof(control);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &fd, sizeof(int));
        }
        s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(s >= 0);
        ASSERT_TRUE(sendmsg(s, &mh, 0) >= 0);
        close(s);
}

void test_become(uid_t uid) {
        ASSERT_OK(setresgid(uid, uid, uid) < 0 ? -errno : 0);
        ASSERT_OK(setresuid(uid, uid, uid) < 0 ? -errno : 0);
}

TestChild test_spawn(uid_t uid, void (*fn)(int in, int out)) {
        int down[2], up[2];
        TestChild c;

        ASSERT_OK(pipe2(down, O_CLOEXEC) < 0 ? -errno : 0);
        ASSERT_OK(pipe2(up, O_CLOEXEC) < 0 ? -errno : 0);
        c.pid = fork();
        ASSERT_TRUE(c.pid >= 0);
        if (c.pid == 0) {
                close(down[1]);
                close(up[0]);
                test_become(uid);
                fn(down[0], up[1]);
                _exit(0);
        }
        close(down[0]);
        close(up[1]);
        c.to_child = down[1];
        c.from_child = up[0];
        return c;
}

char *test_usage(sd_bus *bus) {
        sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char *buf = NULL;
        size_t size = 0;
        FILE *f;
        int r;

        r = test_call(bus, "GetUsage", &error, &reply, "s", "");
        ASSERT_BUS_OK(r, &error);
        f = open_memstream(&buf, &size);
        ASSERT_TRUE(f);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "{sv}"));
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *key, *contents;
                char type;

                ASSERT_OK(sd_bus_message_read(reply, "s", &key));
                ASSERT_OK(sd_bus_message_peek_type(reply, &type, &contents));
                fprintf(f, "%s=", key);
                if (streq(contents, "t")) {
                        uint64_t v;
                        ASSERT_OK(sd_bus_message_read(reply, "v", "t", &v));
                        fprintf(f, "%" PRIu64, v);
                } else if (streq(contents, "s")) {
                        const char *v;
                        ASSERT_OK(sd_bus_message_read(reply, "v", "s", &v));
                        fprintf(f, "%s", v);
                } else if (streq(contents, "a(ut)")) {
                        uint32_t g;
                        uint64_t v;
                        ASSERT_OK(sd_bus_message_enter_container(reply, 'v', "a(ut)"));
                        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(ut)"));
                        while ((r = sd_bus_message_read(reply, "(ut)", &g, &v)) > 0)
                                fprintf(f, "%x:%" PRIu64 ",", g, v);
                        ASSERT_OK(r);
                        ASSERT_OK(sd_bus_message_exit_container(reply));
                        ASSERT_OK(sd_bus_message_exit_container(reply));
                } else {
                        fprintf(f, "(%s)", contents);
                        ASSERT_OK(sd_bus_message_skip(reply, "v"));
                }
                fputc(' ', f);
                ASSERT_OK(sd_bus_message_exit_container(reply));
        }
        ASSERT_OK(r);
        fclose(f);
        sd_bus_message_unref(reply);
        return buf;
}

void test_svmd_state(int *ret_pid, int *ret_starts) {
        char path[4096];
        int pid = -1, ready = 0, starts = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/svmd.state", getenv("KFDEMU_DIR"));
        f = fopen(path, "re");
        ASSERT_TRUE(f);
        ASSERT_TRUE(fscanf(f, "%d %d %d", &pid, &ready, &starts) == 3);
        fclose(f);
        *ret_pid = pid;
        *ret_starts = starts;
}

void test_wait_svmd_exit(int starts_before) {
        int pid, starts;

        for (unsigned i = 0; i < 120000; i++) {
                test_svmd_state(&pid, &starts);
                if (pid == 0)
                        break;
                nanosleep(&(struct timespec) { 0, 1000 * 1000 }, NULL);
        }
        test_svmd_state(&pid, &starts);
        ASSERT_TRUE(pid == 0);
        ASSERT_TRUE(starts == starts_before);
}

uint64_t test_kernel_handles(TestContext *t) {
        json_t *v = NULL, *p;
        uint64_t n = 0;
        size_t i;

        ASSERT_OK(emu_kernel_dump(t->emu, &v));
        json_array_foreach(json_object_get(v, "processes"), i, p)
                n += json_array_size(json_object_get(p, "handles"));
        json_decref(v);
        return n;
}
