/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Authorization before validation (under svmd-harness with hostile.conf). uid 1
 * owns ranges in every state a check could tell apart: VRAM mapped to one GPU,
 * a host range backing a batch range, the batch range, and a degraded range
 * (a map whose undo fails). uid 2, over the bus and over the direct socket,
 * calls every method that takes a range id, every Commit operation, and
 * AllocateBatch on their addresses, with every shape of arguments that would
 * hit a validation error on its own range, and the same on an id (an address)
 * never used. Each pair must be answered with the same error name and the
 * same message (the id and the address aside): another tenant's range is
 * indistinguishable from no range.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)
#define UID_OWNER 1
#define UID_OTHER 2
#define NONE_ID UINT64_C(900000)

static TestContext T;

typedef struct Victim {
        uint64_t vram, host, batch, degraded;
        uint64_t vram_va, host_va;
        unsigned compared, mismatched;
} Victim;

static Victim *V;

/* The message with range ids ("range 12") and addresses (0x400000001000) replaced. */
static void normalize(const char *in, char *out, size_t size) {
        size_t o = 0;

        for (const char *p = in; *p && o + 8 < size;) {
                if ((strncmp(p, "ange ", 5) == 0) && p[5] >= '0' && p[5] <= '9') {
                        memcpy(out + o, "ange <ID>", 9);
                        o += 9;
                        for (p += 5; *p >= '0' && *p <= '9'; p++)
                                ;
                        continue;
                }
                if (p[0] == '0' && p[1] == 'x' && strspn(p + 2, "0123456789abcdef") >= 9) {
                        memcpy(out + o, "<VA>", 4);
                        o += 4;
                        p += 2 + strspn(p + 2, "0123456789abcdef");
                        continue;
                }
                out[o++] = *p++;
        }
        out[o] = '\0';
}

typedef struct Answer {
        int r;
        char name[256], message[1024];
} Answer;

/*
 * Call member with the arguments built by fn for the id (or address) of one
 * range, then for one never used; the answers must match.
 */
typedef void (*AppendFn)(sd_bus_message *m, uint64_t id, uint64_t va);

static void call(sd_bus *bus, const char *member, AppendFn fn, uint64_t id, uint64_t va, Answer *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;

        ASSERT_OK(sd_bus_message_new_method_call(bus, &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                                 member));
        fn(m, id, va);
        ret->r = sd_bus_call(bus, m, 30 * 1000 * 1000ULL, &error, NULL);
        snprintf(ret->name, sizeof(ret->name), "%s", strna(error.name));
        normalize(strempty(error.message), ret->message, sizeof(ret->message));
        sd_bus_error_free(&error);
}

static void compare(sd_bus *bus, const char *via, const char *what, const char *member, AppendFn fn, uint64_t id,
                    uint64_t va, const char *target) {
        Answer a, b;

        call(bus, member, fn, id, va, &a);
        call(bus, member, fn, NONE_ID, 0x600000000000ULL, &b);
        V->compared++;
        if (a.r >= 0 || b.r >= 0 || !streq(a.name, b.name) || !streq(a.message, b.message)) {
                V->mismatched++;
                fprintf(stderr,
                        "MISMATCH %s: %s on uid %d's %s range:\n    %s: %s\n  on an id never used:\n    %s: %s\n",
                        via, what, UID_OWNER, target, a.r >= 0 ? "(success)" : a.name, a.message,
                        b.r >= 0 ? "(success)" : b.name, b.message);
        }
}

/* ---- argument shapes ---- */

static uint32_t G(size_t i) {
        return T.gpus[i % T.n_gpus];
}

static void a_id(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "t", id));
}
static void a_map_g0(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "taua{sv}", id, 1, G(0), 0));
}
static void a_map_g5(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "taua{sv}", id, 1, G(5), 0));
}
static void a_map_dry(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "taua{sv}", id, 1, G(0), 1, "dry-run", "b", 1));
}
static void a_map_request(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "taua{sv}", id, 2, G(0), G(1), 1, "request-id", "s", "probe"));
}
static void a_unmap_g0(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "tau", id, 1, G(0)));
}
static void a_unmap_g5(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "tau", id, 1, G(5)));
}
static void a_attr_ok(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "ta{sv}", id, 1, "svm-granularity", "u", 9u));
}
static void a_attr_big(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "ta{sv}", id, 1, "svm-granularity", "u", 99u));
}
static void a_attr_nogpu(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "ta{sv}", id, 1, "svm-preferred", "u", 0x1u));
}
static void a_attr_dry(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "ta{sv}", id, 2, "svm-preferred", "u", 0u, "dry-run", "b", 1));
}
static void a_revoke_hold(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "tu", id, (uint32_t) 65534));
}
static void a_share(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "ta{sv}", id, 0));
}
static void a_share_ro(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "ta{sv}", id, 1, "read-only", "b", 1));
}
static void a_share_uid(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "ta{sv}", id, 1, "uid", "u", (uint32_t) UID_OTHER));
}
static void a_batch(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "a(tt)ua{sv}", 1, va, UINT64_C(4096), 0u, 0));
}
static void a_batch_dry(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "a(tt)ua{sv}", 1, va, UINT64_C(4096), 0u, 1, "dry-run", "b", 1));
}

/* Commit: one operation on the range, or an allocation first and then the operation. */
static void commit(sd_bus_message *m, uint64_t id, const char *kind, const char *key, char type, uint32_t v,
                   bool alloc_first, bool dry_run) {
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "(sa{sv})"));
        if (alloc_first)
                ASSERT_OK(sd_bus_message_append(m, "(sa{sv})", "Allocate", 3, "size", "t", UINT64_C(4096), "gpu", "u",
                                                0u, "domain", "s", "gtt"));
        ASSERT_OK(sd_bus_message_open_container(m, 'r', "sa{sv}"));
        ASSERT_OK(sd_bus_message_append(m, "s", kind));
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "{sv}"));
        ASSERT_OK(sd_bus_message_append(m, "{sv}", "id", "t", id));
        if (key && type == 'u')
                ASSERT_OK(sd_bus_message_append(m, "{sv}", key, "u", v));
        else if (key)
                ASSERT_OK(sd_bus_message_append(m, "{sv}", key, "au", 1, v));
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_close_container(m));
        if (dry_run)
                ASSERT_OK(sd_bus_message_append(m, "a{sv}", 1, "dry-run", "b", 1));
        else
                ASSERT_OK(sd_bus_message_append(m, "a{sv}", 0));
}
static void c_map(sd_bus_message *m, uint64_t id, uint64_t va) {
        commit(m, id, "Map", "gpus", 'a', G(0), false, false);
}
static void c_map_g5(sd_bus_message *m, uint64_t id, uint64_t va) {
        commit(m, id, "Map", "gpus", 'a', G(5), true, false);
}
static void c_unmap(sd_bus_message *m, uint64_t id, uint64_t va) {
        commit(m, id, "Unmap", "gpus", 'a', G(5), false, false);
}
static void c_unmap_dry(sd_bus_message *m, uint64_t id, uint64_t va) {
        commit(m, id, "Unmap", "gpus", 'a', G(0), true, true);
}
static void c_free(sd_bus_message *m, uint64_t id, uint64_t va) {
        commit(m, id, "Free", NULL, 0, 0, false, false);
}
static void c_free_dry(sd_bus_message *m, uint64_t id, uint64_t va) {
        commit(m, id, "Free", NULL, 0, 0, true, true);
}
static void c_attr(sd_bus_message *m, uint64_t id, uint64_t va) {
        commit(m, id, "SetAttributes", "svm-granularity", 'u', 9, false, false);
}
static void c_attr_big(sd_bus_message *m, uint64_t id, uint64_t va) {
        commit(m, id, "SetAttributes", "svm-granularity", 'u', 99, false, true);
}
static void c_batch(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "(sa{sv})"));
        ASSERT_OK(sd_bus_message_open_container(m, 'r', "sa{sv}"));
        ASSERT_OK(sd_bus_message_append(m, "s", "AllocateBatch"));
        ASSERT_OK(sd_bus_message_append(m, "a{sv}", 1, "host-ranges", "a(tt)", 1, va, UINT64_C(4096)));
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_append(m, "a{sv}", 0));
}

static const struct {
        const char *what, *member;
        AppendFn fn;
} shapes[] = {
        { "Free", "Free", a_id },
        { "Map to a mapped GPU", "Map", a_map_g0 },
        { "Map to an unmapped GPU", "Map", a_map_g5 },
        { "Map dry-run", "Map", a_map_dry },
        { "Map with a request id", "Map", a_map_request },
        { "Unmap a mapped GPU", "Unmap", a_unmap_g0 },
        { "Unmap an unmapped GPU", "Unmap", a_unmap_g5 },
        { "SetAttributes", "SetAttributes", a_attr_ok },
        { "SetAttributes granularity 99", "SetAttributes", a_attr_big },
        { "SetAttributes unknown GPU", "SetAttributes", a_attr_nogpu },
        { "SetAttributes dry-run", "SetAttributes", a_attr_dry },
        { "Export", "Export", a_id },
        { "Share", "Share", a_share },
        { "Share read-only", "Share", a_share_ro },
        { "Share to a uid", "Share", a_share_uid },
        { "Release", "Release", a_id },
        { "ListTokens", "ListTokens", a_id },
        { "RevokeHold", "RevokeHold", a_revoke_hold },
        { "Commit Map", "Commit", c_map },
        { "Commit Allocate, Map to an unmapped GPU", "Commit", c_map_g5 },
        { "Commit Unmap an unmapped GPU", "Commit", c_unmap },
        { "Commit Allocate, Unmap dry-run", "Commit", c_unmap_dry },
        { "Commit Free", "Commit", c_free },
        { "Commit Allocate, Free dry-run", "Commit", c_free_dry },
        { "Commit SetAttributes", "Commit", c_attr },
        { "Commit SetAttributes granularity 99 dry-run", "Commit", c_attr_big },
        { "AllocateBatch on its address", "AllocateBatch", a_batch },
        { "AllocateBatch dry-run on its address", "AllocateBatch", a_batch_dry },
        { "Commit AllocateBatch on its address", "Commit", c_batch },
};

static void attack(sd_bus *bus, const char *via) {
        const struct {
                const char *name;
                uint64_t id, va;
        } targets[] = {
                { "VRAM", V->vram, V->vram_va },
                { "host (backing a batch)", V->host, V->host_va },
                { "batch", V->batch, V->host_va + 4096 },
                { "degraded", V->degraded, V->vram_va },
        };

        for (size_t t = 0; t < ELEMENTSOF(targets); t++)
                for (size_t s = 0; s < ELEMENTSOF(shapes); s++)
                        compare(bus, via, shapes[s].what, shapes[s].member, shapes[s].fn, targets[t].id, targets[t].va,
                                targets[t].name);
}

/* Another scope's usage and another uid's ranges: the same refusal for a scope or uid in use, or not. */
static void a_usage(sd_bus_message *m, uint64_t id, uint64_t va) {
        char scope[64];

        snprintf(scope, sizeof(scope), "uid:%" PRIu64, id);
        ASSERT_OK(sd_bus_message_append(m, "s", scope));
}
static void a_usage_bad(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "s", id == NONE_ID ? "unit:nothing.service" : "uid:1"));
}
static void a_list_owner(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "a{sv}", 1, "owner", "u", (uint32_t) id));
}
static void a_list_owner_gpu(sd_bus_message *m, uint64_t id, uint64_t va) {
        ASSERT_OK(sd_bus_message_append(m, "a{sv}", 2, "owner", "u", (uint32_t) id, "gpu", "u", 0x1u));
}

static void attack_scopes(sd_bus *bus, const char *via) {
        compare(bus, via, "GetUsage", "GetUsage", a_usage, UID_OWNER, 0, "scope");
        compare(bus, via, "GetUsage of a scope no rule matches", "GetUsage", a_usage_bad, UID_OWNER, 0, "scope");
        compare(bus, via, "ListRanges by owner", "ListRanges", a_list_owner, UID_OWNER, 0, "uid");
        compare(bus, via, "ListRanges by owner and an unknown GPU", "ListRanges", a_list_owner_gpu, UID_OWNER, 0,
                "uid");
}

static void other_main(void) {
        sd_bus *bus = test_connect(false), *direct = test_connect(true);

        attack(bus, "bus");
        attack(direct, "direct");
        attack_scopes(bus, "bus");
        attack_scopes(direct, "direct");
        sd_bus_flush_close_unref(bus);
        sd_bus_flush_close_unref(direct);
}

/* ---- the owner ---- */

static int ready_pipe[2], go_pipe[2];

static uint64_t allocate(sd_bus *bus, uint64_t size, uint32_t gpu, const char *domain, uint64_t *ret_va) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;
        uint64_t id, va;
        int r;

        r = test_call(bus, "Allocate", &error, &reply, "tusa{sv}", size, gpu, domain, 1, "map", "au", 1, G(0));
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        if (ret_va)
                *ret_va = va;
        return id;
}

static void owner_main(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = test_connect(false);
        const char *path;
        uint64_t va;
        char c;
        int r;

        V->vram = allocate(bus, 2 * MiB, G(0), "vram", &V->vram_va);
        V->host = allocate(bus, 64 * 1024, 0, "host", &V->host_va);
        r = test_call(bus, "AllocateBatch", &error, &reply, "a(tt)ua{sv}", 1, V->host_va + 4096, UINT64_C(4096), 0u,
                      0);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &V->batch, &va, &path));
        V->degraded = allocate(bus, 2 * MiB, G(0), "vram", NULL);

        /* The owner itself gets the specific errors the comparisons are about. */
        r = test_call(bus, "Unmap", &error, NULL, "tau", V->vram, 1, G(5));
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);
        r = test_call(bus, "SetAttributes", &error, NULL, "ta{sv}", V->host, 1, "svm-granularity", "u", 9u);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);
        r = test_call(bus, "Free", &error, NULL, "t", V->host);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_BUSY);
        sd_bus_error_free(&error);
        ASSERT_TRUE(write(ready_pipe[1], "a", 1) == 1);

        /* Faults are armed: the map fails at the fourth GPU and its undo fails, the range is degraded. */
        ASSERT_TRUE(read(go_pipe[0], &c, 1) == 1);
        {
                sd_bus_message *m = NULL;

                ASSERT_OK(sd_bus_message_new_method_call(bus, &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH,
                                                         SVMD_MANAGER_INTERFACE, "Map"));
                ASSERT_OK(sd_bus_message_append(m, "t", V->degraded));
                ASSERT_OK(sd_bus_message_append_array(m, 'u', T.gpus + 1, (T.n_gpus - 1) * sizeof(uint32_t)));
                ASSERT_OK(sd_bus_message_append(m, "a{sv}", 0));
                r = sd_bus_call(bus, m, 30 * 1000 * 1000ULL, &error, NULL);
                sd_bus_message_unref(m);
        }
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_ROLLBACK_FAILED);
        sd_bus_error_free(&error);
        r = test_call(bus, "Free", &error, NULL, "t", V->degraded);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_BUSY);
        sd_bus_error_free(&error);
        ASSERT_TRUE(write(ready_pipe[1], "d", 1) == 1);

        /* Until the end. */
        while (read(go_pipe[0], &c, 1) > 0)
                ;
        sd_bus_flush_close_unref(bus);
}

static void run_as(uid_t uid, void (*fn)(void), pid_t *ret) {
        pid_t pid = fork();

        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                close(go_pipe[1]); /* the owner waits for the parent's end to close */
                test_become(uid);
                fn();
                _exit(0);
        }
        *ret = pid;
}

static void reap(pid_t pid) {
        int status;

        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void) {
        pid_t owner, other;
        char c;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        ASSERT_TRUE(T.n_gpus >= 6);
        V = mmap(NULL, sizeof(Victim), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(V != MAP_FAILED);
        ASSERT_OK(pipe2(ready_pipe, O_CLOEXEC));
        ASSERT_OK(pipe2(go_pipe, O_CLOEXEC));

        run_as(UID_OWNER, owner_main, &owner);
        ASSERT_TRUE(read(ready_pipe[0], &c, 1) == 1);
        test_fault(&T, "ioctl=MAP_MEMORY_TO_GPU nth=1 errno=ENOMEM after=3");
        test_fault(&T, "ioctl=UNMAP_MEMORY_FROM_GPU nth=1 count=0 errno=EIO");
        ASSERT_TRUE(write(go_pipe[1], "g", 1) == 1);
        ASSERT_TRUE(read(ready_pipe[0], &c, 1) == 1);
        printf("uid %d owns VRAM range %" PRIu64 ", host range %" PRIu64 " backing batch range %" PRIu64
               ", degraded range %" PRIu64 "\n", UID_OWNER, V->vram, V->host, V->batch, V->degraded);

        run_as(UID_OTHER, other_main, &other);
        reap(other);

        test_fault_clear(&T);
        close(go_pipe[1]);
        reap(owner);
        printf("auth-before-validation: %u calls of uid %d on uid %d's ranges compared with an id never used, "
               "%u answered differently\n", V->compared, UID_OTHER, UID_OWNER, V->mismatched);
        ASSERT_EQ(V->mismatched, 0u);
        test_teardown(&T);
        return 0;
}
