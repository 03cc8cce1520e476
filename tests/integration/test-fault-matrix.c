/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The generated fault matrix. Nothing here lists which ioctls an operation
 * issues: for every mutating operation (Allocate with map, AllocateBatch, Map,
 * Unmap, Free, Commit of 2–5 mixed operations) the test first runs it cleanly
 * and reads the emulator's per-ioctl counters, then learns the device count of
 * every MAP/UNMAP call (an EINTR at that call makes the daemon issue it twice;
 * never-firing counter faults with after=K count how many of its devices lie
 * beyond K). From that it derives every injection point:
 *
 *   each ioctl, each nth call × ENOMEM, EINVAL, EBUSY, EFAULT, EINTR
 *   each MAP/UNMAP call, each device index k × the same errnos (partial success
 *   after k of N devices), plus EINTR at the final fence
 *
 * (the CI size takes EINVAL/EBUSY/EFAULT at the first and last device only and
 * queries at their first and last position; --full takes everything),
 *
 * and for each checks: the fault fired exactly once; the D-Bus error is the
 * documented one (ENOMEM → OutOfMemory, EBUSY → Busy, others → Kernel; EINTR →
 * success, the restart succeeds and leaves the same kernel state as a clean
 * run); after a failure the daemon's range table (ListRanges), the emulator's
 * kernel state (dump, counters excluded) and the caller's quota usage
 * (GetUsage) are exactly as before the call.
 *
 * Then faults in the rollback itself: for every failing case whose undo issues
 * UNMAP/FREE/MAP calls the forward path never issues, each of those undo calls
 * fails too (and keeps failing while armed): RollbackFailed, a range in state
 * `degraded`, and once the fault is cleared the background repair converges to
 * the state before the call, with nothing leaked.
 *
 * The topology (mi300x-8 or mixed-3) is whatever svmd-harness started; the
 * operations adapt to which GPUs can map which VRAM.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define MAX_CALLS 32            /* calls of one ioctl within one operation */
#define MAX_NAMES 16
#define NEVER_NTH 100000000U    /* a counter fault that never fires */
#define PROBE_MAX_DEVICES 32

static TestContext T;

/* The node as the operations see it. */
static uint32_t home;                   /* the GPU with the most peers: VRAM lives here */
static uint32_t reach[TEST_MAX_GPUS];   /* home first, then every GPU that can map its VRAM */
static size_t n_reach;
static uint32_t all[TEST_MAX_GPUS];     /* every GPU, home first */
static size_t n_all;

/* Figures. */
static unsigned n_cases, n_errors, n_restarts, n_forward, n_rollback, n_degraded_seen, n_probes;
static unsigned n_ops_measured;
static unsigned n_failed;
static bool arg_full;

/* A case that did not behave: report it, keep going, fail at the end. */
static void case_failed(const char *fmt, ...) _printf_(1, 2);
static void case_failed(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        fputs("FAIL: ", stderr);
        n_failed++;
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        if (getenv("SVMD_FAULT_MATRIX_ABORT"))
                abort();
}

/* ---- bus helpers ---- */

static sd_bus_message *call_new(const char *member) {
        sd_bus_message *m = NULL;

        ASSERT_OK(sd_bus_message_new_method_call(T.bus, &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                                 member));
        return m;
}

static void opt_au(sd_bus_message *m, const char *key, const uint32_t *ids, size_t n) {
        ASSERT_OK(sd_bus_message_open_container(m, 'e', "sv"));
        ASSERT_OK(sd_bus_message_append(m, "s", key));
        ASSERT_OK(sd_bus_message_open_container(m, 'v', "au"));
        ASSERT_OK(sd_bus_message_append_array(m, 'u', ids, n * sizeof(uint32_t)));
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_close_container(m));
}

static void opt_t(sd_bus_message *m, const char *key, uint64_t v) {
        ASSERT_OK(sd_bus_message_append(m, "{sv}", key, "t", v));
}

static void opt_u(sd_bus_message *m, const char *key, uint32_t v) {
        ASSERT_OK(sd_bus_message_append(m, "{sv}", key, "u", v));
}

static void opt_s(sd_bus_message *m, const char *key, const char *v) {
        ASSERT_OK(sd_bus_message_append(m, "{sv}", key, "s", v));
}

static void opt_pairs(sd_bus_message *m, const char *key, const uint64_t *pairs, size_t n) {
        ASSERT_OK(sd_bus_message_open_container(m, 'e', "sv"));
        ASSERT_OK(sd_bus_message_append(m, "s", key));
        ASSERT_OK(sd_bus_message_open_container(m, 'v', "a(tt)"));
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "(tt)"));
        for (size_t i = 0; i < n; i++)
                ASSERT_OK(sd_bus_message_append(m, "(tt)", pairs[2 * i], pairs[2 * i + 1]));
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_close_container(m));
}

static int call_send(sd_bus_message *m, sd_bus_error *error, sd_bus_message **reply) {
        sd_bus_message *rep = NULL;
        int r = sd_bus_call(T.bus, m, 30 * 1000 * 1000ULL, error, &rep);

        sd_bus_message_unref(m);
        if (reply)
                *reply = rep;
        else
                sd_bus_message_unref(rep);
        return r;
}

/* Allocate(size, gpu, domain, {map: ids}) → id (the test's own set-up: must succeed). */
static uint64_t alloc_range(const char *domain, uint64_t size, uint32_t gpu, const uint32_t *map, size_t n_map,
                            uint64_t *ret_va) {
        sd_bus_message *m = call_new("Allocate"), *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;
        uint64_t id, va;
        int r;

        ASSERT_OK(sd_bus_message_append(m, "tus", size, gpu, domain));
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "{sv}"));
        if (n_map > 0)
                opt_au(m, SVMD_OPT_MAP, map, n_map);
        ASSERT_OK(sd_bus_message_close_container(m));
        r = call_send(m, &error, &reply);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        sd_bus_message_unref(reply);
        if (ret_va)
                *ret_va = va;
        return id;
}

static int read_alloc_reply(sd_bus_message *reply) {
        uint64_t id, va;
        const char *path;

        return sd_bus_message_read(reply, "tto", &id, &va, &path);
}

/* GetUsage of the caller's own scope, as a canonical string. */
/* The ids of every listed range, highest first (batch ranges before the host ranges they use). */
static size_t list_ids(uint64_t *ids, size_t max, size_t *ret_degraded) {
        sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        size_t n = 0, degraded = 0;
        int r;

        r = test_call(T.bus, "ListRanges", &error, &reply, "a{sv}", 1, "limit", "t", (uint64_t) 4096);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(ttttsuausus)"));
        while ((r = sd_bus_message_enter_container(reply, 'r', "ttttsuausus")) > 0) {
                const char *state;
                uint64_t id;

                ASSERT_OK(sd_bus_message_read(reply, "t", &id));
                ASSERT_OK(sd_bus_message_skip(reply, "ttts"));
                ASSERT_OK(sd_bus_message_skip(reply, "uausu"));
                ASSERT_OK(sd_bus_message_read(reply, "s", &state));
                if (streq(state, "degraded"))
                        degraded++;
                ASSERT_TRUE(n < max);
                ids[n++] = id;
                ASSERT_OK(sd_bus_message_exit_container(reply));
        }
        ASSERT_OK(r);
        sd_bus_message_unref(reply);
        for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++)
                        if (ids[j] > ids[i]) {
                                uint64_t x = ids[i];
                                ids[i] = ids[j];
                                ids[j] = x;
                        }
        if (ret_degraded)
                *ret_degraded = degraded;
        return n;
}

/* Free every range the daemon lists: each case starts and ends with none. */
static void free_all(void) {
        uint64_t ids[256];
        size_t n = list_ids(ids, ELEMENTSOF(ids), NULL);

        for (size_t i = 0; i < n; i++) {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                int r = test_call(T.bus, "Free", &error, NULL, "t", ids[i]);
                ASSERT_BUS_OK(r, &error);
                sd_bus_error_free(&error);
        }
}

/* ---- the emulator's counters ---- */

typedef struct Counters {
        char *names[MAX_NAMES];
        uint64_t n[MAX_NAMES];
        size_t count;
} Counters;

static void counters_read(Counters *c) {
        json_t *v = NULL, *val;
        const char *name;

        for (size_t i = 0; i < c->count; i++)
                free(c->names[i]);
        *c = (Counters) {};
        ASSERT_OK(emu_kernel_dump(T.emu, &v));
        json_object_foreach(json_object_get(v, "ioctls"), name, val) {
                ASSERT_TRUE(c->count < MAX_NAMES);
                c->names[c->count] = strdup(name);
                c->n[c->count++] = (uint64_t) json_integer_value(val);
        }
        json_decref(v);
}

static uint64_t counters_get(const Counters *c, const char *name) {
        for (size_t i = 0; i < c->count; i++)
                if (streq(c->names[i], name))
                        return c->n[i];
        return 0;
}

static void counters_done(Counters *c) {
        for (size_t i = 0; i < c->count; i++)
                free(c->names[i]);
        *c = (Counters) {};
}

/* seen/fired of each armed fault, in the order armed. */
static size_t faults_read(uint64_t *seen, uint64_t *fired, size_t max) {
        json_t *v = NULL, *f;
        size_t i, n = 0;

        ASSERT_OK(emu_kernel_dump(T.emu, &v));
        json_array_foreach(json_object_get(v, "faults"), i, f) {
                ASSERT_TRUE(n < max);
                if (seen)
                        seen[n] = (uint64_t) json_integer_value(json_object_get(f, "seen"));
                if (fired)
                        fired[n] = (uint64_t) json_integer_value(json_object_get(f, "fired"));
                n++;
        }
        json_decref(v);
        return n;
}

static bool is_device_ioctl(const char *name) {
        return streq(name, "MAP_MEMORY_TO_GPU") || streq(name, "UNMAP_MEMORY_FROM_GPU");
}

/* ---- operations ---- */

typedef struct OpState {
        uint64_t id;            /* the existing range the operation works on */
        uint64_t id2;
        uint64_t host_va;       /* a host range whose pages batch operations use */
} OpState;

typedef struct Op {
        const char *name;
        void (*prepare)(OpState *s);
        int (*run)(OpState *s, sd_bus_error *error);
} Op;

static void prepare_nothing(OpState *s) {
        *s = (OpState) {};
}

static void prepare_vram(OpState *s) {
        *s = (OpState) { .id = alloc_range("vram", 2 * MiB, home, NULL, 0, NULL) };
}

static void prepare_vram_mapped(OpState *s) {
        *s = (OpState) { .id = alloc_range("vram", 2 * MiB, home, reach, n_reach, NULL) };
}

static void prepare_gtt_home(OpState *s) {
        *s = (OpState) { .id = alloc_range("gtt", 1 * MiB, home, all, 1, NULL) };
}

static void prepare_gtt_all(OpState *s) {
        *s = (OpState) { .id = alloc_range("gtt", 1 * MiB, home, all, n_all, NULL) };
}

static void prepare_host_mapped(OpState *s) {
        *s = (OpState) { .id = alloc_range("host", 64 * KiB, home, all, MIN(n_all, 2U), NULL) };
}

static void prepare_host(OpState *s) {
        *s = (OpState) {};
        (void) alloc_range("host", 4 * 4096, home, NULL, 0, &s->host_va);
}

static void batch_pieces(const OpState *s, uint64_t pairs[6]) {
        /* Three non-contiguous pages of the host range, as one contiguous GPU range. */
        uint64_t p[6] = { s->host_va, 4096, s->host_va + 2 * 4096, 4096, s->host_va + 3 * 4096, 4096 };
        memcpy(pairs, p, sizeof(p));
}

static int run_batch_with(OpState *s, const uint32_t *map, size_t n_map, sd_bus_error *error) {
        sd_bus_message *m = call_new("AllocateBatch"), *reply = NULL;
        uint64_t pairs[6];
        int r;

        batch_pieces(s, pairs);
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "(tt)"));
        for (size_t i = 0; i < 3; i++)
                ASSERT_OK(sd_bus_message_append(m, "(tt)", pairs[2 * i], pairs[2 * i + 1]));
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_append(m, "u", home));
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "{sv}"));
        if (n_map > 0)
                opt_au(m, SVMD_OPT_MAP, map, n_map);
        ASSERT_OK(sd_bus_message_close_container(m));
        r = call_send(m, error, &reply);
        if (r >= 0)
                r = read_alloc_reply(reply);
        sd_bus_message_unref(reply);
        return r;
}

static void prepare_batch_mapped(OpState *s) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t ids[8];
        int r;

        prepare_host(s);
        r = run_batch_with(s, all, MIN(n_all, 2U), &error);
        ASSERT_BUS_OK(r, &error);
        ASSERT_TRUE(list_ids(ids, ELEMENTSOF(ids), NULL) == 2);
        s->id = ids[0]; /* the batch range: the newer one */
}

static int run_allocate(const char *domain, uint64_t size, const uint32_t *map, size_t n_map, sd_bus_error *error) {
        sd_bus_message *m = call_new("Allocate"), *reply = NULL;
        int r;

        ASSERT_OK(sd_bus_message_append(m, "tus", size, home, domain));
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "{sv}"));
        opt_au(m, SVMD_OPT_MAP, map, n_map);
        ASSERT_OK(sd_bus_message_close_container(m));
        r = call_send(m, error, &reply);
        if (r >= 0)
                r = read_alloc_reply(reply);
        sd_bus_message_unref(reply);
        return r;
}

static int run_alloc_vram_map(OpState *s, sd_bus_error *error) {
        return run_allocate("vram", 2 * MiB, reach, n_reach, error);
}

static int run_alloc_gtt_map(OpState *s, sd_bus_error *error) {
        return run_allocate("gtt", 1 * MiB, all, n_all, error);
}

static int run_alloc_host_map(OpState *s, sd_bus_error *error) {
        return run_allocate("host", 64 * KiB, all, MIN(n_all, 2U), error);
}

static int run_batch_map(OpState *s, sd_bus_error *error) {
        return run_batch_with(s, all, MIN(n_all, 3U), error);
}

static int run_map(uint64_t id, const uint32_t *ids, size_t n, sd_bus_error *error) {
        sd_bus_message *m = call_new("Map");

        ASSERT_OK(sd_bus_message_append(m, "t", id));
        ASSERT_OK(sd_bus_message_append_array(m, 'u', ids, n * sizeof(uint32_t)));
        ASSERT_OK(sd_bus_message_append(m, "a{sv}", 0));
        return call_send(m, error, NULL);
}

static int run_unmap(uint64_t id, const uint32_t *ids, size_t n, sd_bus_error *error) {
        sd_bus_message *m = call_new("Unmap");

        ASSERT_OK(sd_bus_message_append(m, "t", id));
        ASSERT_OK(sd_bus_message_append_array(m, 'u', ids, n * sizeof(uint32_t)));
        return call_send(m, error, NULL);
}

static int run_map_vram(OpState *s, sd_bus_error *error) {
        return run_map(s->id, reach, n_reach, error);
}

static int run_map_gtt_all(OpState *s, sd_bus_error *error) {
        return run_map(s->id, all, n_all, error);
}

static int run_unmap_vram(OpState *s, sd_bus_error *error) {
        return run_unmap(s->id, reach, n_reach, error);
}

static int run_unmap_gtt_partial(OpState *s, sd_bus_error *error) {
        return run_unmap(s->id, all + 1, n_all - 1, error);
}

static int run_free(OpState *s, sd_bus_error *error) {
        return test_call(T.bus, "Free", error, NULL, "t", s->id);
}

/* Commit operations: (kind, a{sv}). */
static void commit_begin(sd_bus_message *m) {
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "(sa{sv})"));
}

static void commit_op_begin(sd_bus_message *m, const char *kind) {
        ASSERT_OK(sd_bus_message_open_container(m, 'r', "sa{sv}"));
        ASSERT_OK(sd_bus_message_append(m, "s", kind));
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "{sv}"));
}

static void commit_op_end(sd_bus_message *m) {
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_close_container(m));
}

static void commit_allocate(sd_bus_message *m, const char *domain, uint64_t size, const uint32_t *map, size_t n_map) {
        commit_op_begin(m, "Allocate");
        opt_t(m, SVMD_OPT_SIZE, size);
        opt_u(m, SVMD_OPT_GPU, home);
        opt_s(m, SVMD_OPT_DOMAIN, domain);
        if (n_map > 0)
                opt_au(m, SVMD_OPT_MAP, map, n_map);
        commit_op_end(m);
}

static void commit_batch(sd_bus_message *m, const OpState *s, const uint32_t *map, size_t n_map) {
        uint64_t pairs[6];

        batch_pieces(s, pairs);
        commit_op_begin(m, "AllocateBatch");
        opt_pairs(m, SVMD_OPT_HOST_RANGES, pairs, 3);
        opt_u(m, SVMD_OPT_GPU, home);
        if (n_map > 0)
                opt_au(m, SVMD_OPT_MAP, map, n_map);
        commit_op_end(m);
}

/* Map/Unmap/Free of an existing id (ref_or_id has bit 63 set) or of an earlier Allocate (ref). */
#define EXISTING(id) ((id) | (UINT64_C(1) << 63))

static void commit_target(sd_bus_message *m, uint64_t ref_or_id) {
        if (ref_or_id & (UINT64_C(1) << 63))
                opt_t(m, SVMD_OPT_ID, ref_or_id & ~(UINT64_C(1) << 63));
        else
                opt_u(m, SVMD_OPT_REF, (uint32_t) ref_or_id);
}

static void commit_gpus(sd_bus_message *m, const char *kind, uint64_t target, const uint32_t *ids, size_t n) {
        commit_op_begin(m, kind);
        commit_target(m, target);
        opt_au(m, SVMD_OPT_GPUS, ids, n);
        commit_op_end(m);
}

static void commit_free(sd_bus_message *m, uint64_t target) {
        commit_op_begin(m, "Free");
        commit_target(m, target);
        commit_op_end(m);
}

static int commit_send(sd_bus_message *m, sd_bus_error *error) {
        sd_bus_message *reply = NULL;
        int r;

        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_append(m, "a{sv}", 0));
        r = call_send(m, error, &reply);
        if (r >= 0)
                ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(a{sv})"));
        sd_bus_message_unref(reply);
        return r;
}

/* 2 ops: allocate VRAM mapped at home, then map it to the rest of its peers. */
static int run_commit2(OpState *s, sd_bus_error *error) {
        sd_bus_message *m = call_new("Commit");

        commit_begin(m);
        commit_allocate(m, "vram", 4 * MiB, reach, 1);
        commit_gpus(m, "Map", 0, reach + 1, n_reach - 1);
        return commit_send(m, error);
}

/* 3 ops: allocate GTT on two GPUs, map the rest, unmap the second. */
static int run_commit3(OpState *s, sd_bus_error *error) {
        sd_bus_message *m = call_new("Commit");

        commit_begin(m);
        commit_allocate(m, "gtt", 2 * MiB, all, 2);
        commit_gpus(m, "Map", 0, all + 2, n_all - 2);
        commit_gpus(m, "Unmap", 0, all + 1, 1);
        return commit_send(m, error);
}

/* 4 ops: VRAM mapped to its peers, GTT then mapped everywhere, an existing range freed. */
static int run_commit4(OpState *s, sd_bus_error *error) {
        sd_bus_message *m = call_new("Commit");

        commit_begin(m);
        commit_allocate(m, "vram", 2 * MiB, reach, n_reach);
        commit_allocate(m, "gtt", 1 * MiB, NULL, 0);
        commit_gpus(m, "Map", 1, all, n_all);
        commit_free(m, EXISTING(s->id));
        return commit_send(m, error);
}

static void prepare_commit5(OpState *s) {
        prepare_host(s);
        s->id = alloc_range("gtt", 1 * MiB, home, all, 1, NULL);
}

/* 5 ops: GTT, a batch range, an existing range mapped further, the GTT unmapped and freed. */
static int run_commit5(OpState *s, sd_bus_error *error) {
        sd_bus_message *m = call_new("Commit");

        commit_begin(m);
        commit_allocate(m, "gtt", 1 * MiB, all, n_all);
        commit_batch(m, s, all, MIN(n_all, 2U));
        commit_gpus(m, "Map", EXISTING(s->id), all + 1, n_all - 1);
        commit_gpus(m, "Unmap", 0, all, 1);
        commit_free(m, 0);
        return commit_send(m, error);
}

/* svm ranges: SVM GET_ATTR/SET_ATTR instead of buffers; every failure must leave the attributes as before. */
static void prepare_svm(OpState *s) {
        *s = (OpState) { .id = alloc_range("svm", 2 * MiB, home, NULL, 0, NULL) };
}

static void prepare_svm_mapped(OpState *s) {
        *s = (OpState) { .id = alloc_range("svm", 2 * MiB, home, all, MIN(n_all, 2U), NULL) };
}

static int run_alloc_svm_map(OpState *s, sd_bus_error *error) {
        return run_allocate("svm", 2 * MiB, all, MIN(n_all, 2U), error);
}

static int run_map_svm(OpState *s, sd_bus_error *error) {
        return run_map(s->id, all, n_all, error);
}

static int run_unmap_svm(OpState *s, sd_bus_error *error) {
        return run_unmap(s->id, all, 1, error);
}

static int run_set_attributes(OpState *s, sd_bus_error *error) {
        sd_bus_message *m = call_new("SetAttributes");

        ASSERT_OK(sd_bus_message_append(m, "t", s->id));
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "{sv}"));
        opt_u(m, SVMD_OPT_SVM_PREFERRED, all[n_all - 1]);
        opt_u(m, SVMD_OPT_SVM_GRANULARITY, 4);
        opt_au(m, SVMD_OPT_SVM_ACCESS_IN_PLACE, all, 1);
        ASSERT_OK(sd_bus_message_append(m, "{sv}", SVMD_OPT_SVM_FLAGS, "as", 1, "gpu-read-mostly"));
        ASSERT_OK(sd_bus_message_close_container(m));
        return call_send(m, error, NULL);
}

/* 3 ops: an svm range with attributes and access, and an existing one unmapped. */
static int run_commit_svm(OpState *s, sd_bus_error *error) {
        sd_bus_message *m = call_new("Commit");

        commit_begin(m);
        commit_allocate(m, "svm", 1 * MiB, all, 1);
        commit_op_begin(m, "SetAttributes");
        commit_target(m, 0);
        opt_u(m, SVMD_OPT_SVM_PREFETCH, all[n_all - 1]);
        opt_au(m, SVMD_OPT_SVM_NO_ACCESS, all, 1);
        commit_op_end(m);
        commit_gpus(m, "Unmap", EXISTING(s->id), all + 1, 1);
        return commit_send(m, error);
}

static const Op ops[] = {
        { "Allocate vram +map peers",  prepare_nothing,      run_alloc_vram_map },
        { "Allocate gtt +map all",     prepare_nothing,      run_alloc_gtt_map },
        { "Allocate host +map 2",      prepare_nothing,      run_alloc_host_map },
        { "AllocateBatch 3 +map 3",    prepare_host,         run_batch_map },
        { "Map vram to peers",         prepare_vram,         run_map_vram },
        { "Map gtt home→all",          prepare_gtt_home,     run_map_gtt_all },
        { "Unmap vram from peers",     prepare_vram_mapped,  run_unmap_vram },
        { "Unmap gtt all but home",    prepare_gtt_all,      run_unmap_gtt_partial },
        { "Free vram mapped",          prepare_vram_mapped,  run_free },
        { "Free host mapped",          prepare_host_mapped,  run_free },
        { "Free batch mapped",         prepare_batch_mapped, run_free },
        { "Commit2 alloc+map",         prepare_nothing,      run_commit2 },
        { "Commit3 alloc+map+unmap",   prepare_nothing,      run_commit3 },
        { "Commit4 2alloc+map+free",   prepare_vram_mapped,  run_commit4 },
        { "Commit5 mixed",             prepare_commit5,      run_commit5 },
        { "Allocate svm +map 2",       prepare_nothing,      run_alloc_svm_map },
        { "Map svm to all",            prepare_svm,          run_map_svm },
        { "Unmap svm from 1",          prepare_svm_mapped,   run_unmap_svm },
        { "SetAttributes svm",         prepare_svm_mapped,   run_set_attributes },
        { "Free svm mapped",           prepare_svm_mapped,   run_free },
        { "Commit svm alloc+attr+unmap", prepare_svm_mapped, run_commit_svm },
};

/* ---- measuring an operation ---- */

typedef struct Measured {
        Counters clean;                 /* per-ioctl calls of a clean run */
        char *clean_mappings;           /* the kernel's mappings after a clean run */
        /* per device ioctl: the device count of each call, in order */
        struct {
                const char *name;
                unsigned n_calls;
                unsigned devices[MAX_CALLS];
        } dev[2];
} Measured;

static unsigned *devices_of(Measured *ms, const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(ms->dev); i++)
                if (ms->dev[i].name && streq(ms->dev[i].name, name))
                        return ms->dev[i].devices;
        return NULL;
}

/*
 * Device count of the p-th call (1-based) of a MAP/UNMAP ioctl: interrupt that
 * call before its first device, so the daemon issues it again from n_success 0,
 * while never-firing faults with after=K count the calls that reach device K.
 */
static unsigned probe_devices(const Op *op, const char *name, unsigned p) {
        uint64_t seen_clean[PROBE_MAX_DEVICES + 1], seen_eintr[PROBE_MAX_DEVICES + 1], fired[PROBE_MAX_DEVICES + 1];
        sd_bus_error error = SD_BUS_ERROR_NULL;
        unsigned devices = 0;
        OpState s;
        int r;

        for (int pass = 0; pass < 2; pass++) {
                uint64_t *seen = pass == 0 ? seen_clean : seen_eintr;

                op->prepare(&s);
                if (pass == 1)
                        test_fault(&T, "ioctl=%s nth=%u errno=EINTR", name, p);
                for (unsigned k = 0; k < PROBE_MAX_DEVICES; k++)
                        test_fault(&T, "ioctl=%s nth=%u after=%u errno=EIO", name, NEVER_NTH, k);
                r = op->run(&s, &error);
                ASSERT_BUS_OK(r, &error);
                sd_bus_error_free(&error);
                if (pass == 1) {
                        ASSERT_UEQ(faults_read(seen, fired, PROBE_MAX_DEVICES + 1), PROBE_MAX_DEVICES + 1);
                        ASSERT_UEQ(fired[0], 1);
                        memmove(seen, seen + 1, PROBE_MAX_DEVICES * sizeof(uint64_t));
                } else
                        ASSERT_UEQ(faults_read(seen, NULL, PROBE_MAX_DEVICES + 1), PROBE_MAX_DEVICES);
                test_fault_clear(&T);
                free_all();
        }
        for (unsigned k = 0; k < PROBE_MAX_DEVICES; k++) {
                ASSERT_TRUE(seen_eintr[k] - seen_clean[k] <= 1);
                devices += (unsigned) (seen_eintr[k] - seen_clean[k]);
        }
        ASSERT_TRUE(devices > 0 && devices < PROBE_MAX_DEVICES);
        n_probes++;
        return devices;
}

static void measure(const Op *op, Measured *ms) {
        Counters before = {}, after = {};
        sd_bus_error error = SD_BUS_ERROR_NULL;
        OpState s;
        size_t nd = 0;
        int r;

        op->prepare(&s);
        counters_read(&before);
        r = op->run(&s, &error);
        ASSERT_BUS_OK(r, &error);
        counters_read(&after);
        ms->clean_mappings = test_kernel_mappings(&T);
        free_all();

        ms->clean = (Counters) {};
        for (size_t i = 0; i < after.count; i++) {
                uint64_t d = after.n[i] - counters_get(&before, after.names[i]);
                if (d == 0)
                        continue;
                ASSERT_TRUE(d <= MAX_CALLS);
                ms->clean.names[ms->clean.count] = strdup(after.names[i]);
                ms->clean.n[ms->clean.count++] = d;
        }
        counters_done(&before);
        counters_done(&after);

        for (size_t i = 0; i < ms->clean.count; i++) {
                const char *name = ms->clean.names[i];

                if (!is_device_ioctl(name))
                        continue;
                ms->dev[nd].name = name;
                ms->dev[nd].n_calls = (unsigned) ms->clean.n[i];
                for (unsigned p = 1; p <= ms->clean.n[i]; p++)
                        ms->dev[nd].devices[p - 1] = probe_devices(op, name, p);
                nd++;
        }

        printf("%-26s issues", op->name);
        for (size_t i = 0; i < ms->clean.count; i++) {
                unsigned *d = devices_of(ms, ms->clean.names[i]);

                printf(" %s×%" PRIu64, ms->clean.names[i], ms->clean.n[i]);
                if (d) {
                        printf(" (devices");
                        for (unsigned p = 0; p < ms->clean.n[i]; p++)
                                printf(" %u", d[p]);
                        printf(")");
                }
        }
        printf("\n");
        n_ops_measured++;
}

static void measured_done(Measured *ms) {
        counters_done(&ms->clean);
        free(ms->clean_mappings);
}

/*
 * The nth= that selects call p at device k: a fault with after=k only counts
 * calls that reach device k, so the calls before p with fewer devices do not count.
 */
static unsigned nth_for(const unsigned *devices, unsigned p, unsigned k) {
        unsigned nth = 1;

        for (unsigned q = 1; q < p; q++)
                if (devices[q - 1] > k)
                        nth++;
        return nth;
}

/* ---- running a case ---- */

static const char *expected_error(const char *errno_name) {
        if (streq(errno_name, "EINTR"))
                return NULL;
        if (streq(errno_name, "ENOMEM"))
                return SVMD_ERROR_OUT_OF_MEMORY;
        if (streq(errno_name, "EBUSY"))
                return SVMD_ERROR_BUSY;
        return SVMD_ERROR_KERNEL;
}

typedef struct Snapshot {
        char *dump, *list, *usage;
} Snapshot;

static void snapshot_take(Snapshot *s) {
        *s = (Snapshot) { test_dump(&T), test_list_ranges(T.bus), test_usage(T.bus) };
}

static void snapshot_done(Snapshot *s) {
        free(s->dump);
        free(s->list);
        free(s->usage);
        *s = (Snapshot) {};
}

static bool snapshot_equal(const Snapshot *a, const Snapshot *b) {
        return streq(a->dump, b->dump) && streq(a->list, b->list) && streq(a->usage, b->usage);
}

static void snapshot_print(const char *what, const Snapshot *s) {
        fprintf(stderr, "--- %s\n%s\n%s\nusage: %s\n", what, s->dump, s->list, s->usage);
}

/* Per-ioctl deltas of the last failed run (for the rollback cases). */
static Counters last_delta;

/* Ioctls that only read (the cases sample their positions unless --full). */
static bool is_query_ioctl(const char *name) {
        static const char *const mutating[] = {
                "ALLOC_MEMORY_OF_GPU", "FREE_MEMORY_OF_GPU", "MAP_MEMORY_TO_GPU", "UNMAP_MEMORY_FROM_GPU",
                "IMPORT_DMABUF", "EXPORT_DMABUF", "SVM", "ACQUIRE_VM", "SET_MEMORY_POLICY", "CREATE_PROCESS",
        };
        for (size_t i = 0; i < ELEMENTSOF(mutating); i++)
                if (streq(name, mutating[i]))
                        return false;
        return true;
}

static size_t n_degraded_now(void) {
        uint64_t ids[256];
        size_t degraded = 0;

        (void) list_ids(ids, ELEMENTSOF(ids), &degraded);
        return degraded;
}

/* The repair timer starts at 100 ms and backs off: 200 rounds is ample. */
static int wait_rounds(void) {
        return 200;
}

static void wait_no_degraded(void) {
        size_t n;

        for (int i = 0; i < wait_rounds() && n_degraded_now() > 0; i++)
                nanosleep(&(struct timespec) { 0, 25 * 1000 * 1000 }, NULL);
        n = n_degraded_now();
        if (n > 0)
                case_failed("%zu ranges still degraded after %d rounds of repair\n", n, wait_rounds());
}

/*
 * Arm `fault` on the ioctl `name`, run the operation and check the outcome:
 *  - EINTR: success, and the kernel holds what a clean run leaves;
 *  - otherwise the documented error, and ListRanges, the emulator's dump and
 *    GetUsage exactly as before the call;
 *  - except where the fault hits a step past the point of no return: a query
 *    after the change (the reply may be success, with the clean run's state) or
 *    FREE (success, the free is finished in the background: the state must
 *    converge to the clean run's once the fault is gone).
 */
static void run_case(const Op *op, const Measured *ms, const char *name, const char *fault, const char *errno_name) {
        const char *error_name = expected_error(errno_name);
        Snapshot before, after;
        Counters c0 = {}, c1 = {};
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t fired[4] = {};
        OpState s;
        int r;

        op->prepare(&s);
        snapshot_take(&before);
        counters_read(&c0);

        test_fault(&T, "%s", fault);
        r = op->run(&s, &error);
        counters_read(&c1);
        if (faults_read(NULL, fired, ELEMENTSOF(fired)) != 1 || fired[0] != 1)
                case_failed("%s: fault '%s' fired %" PRIu64 " times, expected once\n", op->name, fault, fired[0]);
        test_fault_clear(&T);
        n_cases++;

        counters_done(&last_delta);
        for (size_t i = 0; i < c1.count; i++) {
                uint64_t d = c1.n[i] - counters_get(&c0, c1.names[i]);
                if (d == 0)
                        continue;
                last_delta.names[last_delta.count] = strdup(c1.names[i]);
                last_delta.n[last_delta.count++] = d;
        }
        counters_done(&c0);
        counters_done(&c1);

        /* Only a FREE may be finished in the background instead of failing: it is past the point of no
         * return. Every other failing ioctl, queries included, must give its documented error. */
        if (!error_name || (r >= 0 && streq(name, "FREE_MEMORY_OF_GPU"))) {
                _cleanup_free_ char *mappings = NULL;

                if (r < 0)
                        case_failed("%s with fault '%s': expected success after the restart, got %s: %s\n",
                                    op->name, fault, error.name, error.message);
                else {
                        if (error_name) {
                                wait_no_degraded();
                                n_forward++;
                        } else
                                n_restarts++;
                        /* The operation left what a clean run leaves. */
                        mappings = test_kernel_mappings(&T);
                        if (!streq(mappings, ms->clean_mappings))
                                case_failed("%s with fault '%s': kernel state differs from a clean run:\n"
                                            "--- clean\n%s+++ now\n%s",
                                            op->name, fault, ms->clean_mappings, mappings);
                }
        } else {
                if (r >= 0 || !sd_bus_error_has_name(&error, error_name))
                        case_failed("%s with fault '%s': expected %s, got r=%d %s: %s\n", op->name, fault,
                                    error_name, r, strna(error.name), strna(error.message));
                snapshot_take(&after);
                if (!snapshot_equal(&before, &after)) {
                        case_failed("%s with fault '%s' (%s) changed state:\n", op->name, fault,
                                    strna(error.message));
                        snapshot_print("before", &before);
                        snapshot_print("after", &after);
                }
                snapshot_done(&after);
                n_errors++;
        }
        sd_bus_error_free(&error);
        snapshot_done(&before);
        wait_no_degraded();
        free_all();
}

/* Wait until the repair timer has converged to `want`. */
static void wait_for(const Snapshot *want, const char *what) {
        Snapshot now = {};

        for (int i = 0; i < wait_rounds(); i++) {
                snapshot_take(&now);
                if (snapshot_equal(&now, want)) {
                        snapshot_done(&now);
                        return;
                }
                snapshot_done(&now);
                nanosleep(&(struct timespec) { 0, 25 * 1000 * 1000 }, NULL);
        }
        snapshot_take(&now);
        case_failed("%s: the repair did not converge\n", what);
        snapshot_print("want", want);
        snapshot_print("now", &now);
        snapshot_done(&now);
}

/*
 * The primary fault fails the operation; `undo` fails the rollback (and keeps
 * failing while armed). RollbackFailed, a degraded range, then a repair back to
 * the state before the call once the fault is cleared.
 */
static void run_rollback_case(const Op *op, const char *primary, const char *undo) {
        Snapshot before;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t fired[4] = {}, ids[64];
        size_t degraded = 0;
        OpState s;
        char what[512];
        int r;

        op->prepare(&s);
        snapshot_take(&before);
        test_fault(&T, "%s", primary);
        test_fault(&T, "%s count=0", undo);
        r = op->run(&s, &error);
        snprintf(what, sizeof(what), "%s with '%s' and '%s'", op->name, primary, undo);
        ASSERT_UEQ(faults_read(NULL, fired, ELEMENTSOF(fired)), 2);
        if (fired[0] != 1 || fired[1] < 1)
                case_failed("%s: faults fired %" PRIu64 " and %" PRIu64 " times\n", what, fired[0], fired[1]);
        if (r >= 0 || !sd_bus_error_has_name(&error, SVMD_ERROR_ROLLBACK_FAILED))
                case_failed("%s: expected %s, got r=%d %s: %s\n", what, SVMD_ERROR_ROLLBACK_FAILED, r,
                            strna(error.name), strna(error.message));
        /* While the undo keeps failing, the range stays degraded (the repair retries). */
        (void) list_ids(ids, ELEMENTSOF(ids), &degraded);
        if (degraded == 0)
                case_failed("%s: no range is degraded after RollbackFailed (%s)\n", what, strna(error.message));
        else
                n_degraded_seen++;
        test_fault_clear(&T);
        wait_for(&before, what);
        (void) list_ids(ids, ELEMENTSOF(ids), &degraded);
        if (degraded != 0)
                case_failed("%s: %zu ranges still degraded after the repair\n", what, degraded);
        sd_bus_error_free(&error);
        snapshot_done(&before);
        n_rollback++;
        n_cases++;
        wait_no_degraded();
        free_all();
}

static const char *const errnos[] = { "ENOMEM", "EINVAL", "EBUSY", "EFAULT", "EINTR" };
static const char *const undo_ioctls[] = { "UNMAP_MEMORY_FROM_GPU", "FREE_MEMORY_OF_GPU", "MAP_MEMORY_TO_GPU" };

/* After a failed case: every undo call the forward path never issues fails in turn. */
static void rollback_cases(const Op *op, const Measured *ms, const char *primary) {
        Counters delta = {};

        /* last_delta is overwritten by nothing here, but keep our own copy. */
        for (size_t i = 0; i < last_delta.count; i++) {
                delta.names[i] = strdup(last_delta.names[i]);
                delta.n[i] = last_delta.n[i];
        }
        delta.count = last_delta.count;

        for (size_t u = 0; u < ELEMENTSOF(undo_ioctls); u++) {
                const char *name = undo_ioctls[u];
                uint64_t n = counters_get(&delta, name);
                char undo[128];

                if (counters_get(&ms->clean, name) > 0)
                        continue; /* the forward path issues it too: not attributable to the undo */
                for (uint64_t nth = 1; nth <= n; nth++) {
                        snprintf(undo, sizeof(undo), "ioctl=%s nth=%" PRIu64 " errno=EIO", name, nth);
                        run_rollback_case(op, primary, undo);
                }
        }
        counters_done(&delta);
}

/*
 * The CI-sized matrix takes every position of every mutating ioctl and every
 * device index with ENOMEM (partial success after k of N) and EINTR, the other
 * errnos at the first and last device, queries at their first and last
 * position, and failing rollbacks behind the first and last device. --full
 * (or SVMD_FAULT_MATRIX_FULL=1) takes everything.
 */
static bool wanted(bool edge, const char *errno_name) {
        return arg_full || edge || streq(errno_name, "ENOMEM") || streq(errno_name, "EINTR");
}

static void run_op(const Op *op) {
        Measured ms = {};
        unsigned cases0 = n_cases, rollback0 = n_rollback;
        char fault[256];

        measure(op, &ms);
        for (size_t i = 0; i < ms.clean.count; i++) {
                const char *name = ms.clean.names[i];
                const unsigned *devices = devices_of(&ms, name);
                unsigned n = (unsigned) ms.clean.n[i];

                for (unsigned p = 1; p <= n; p++) {
                        if (!devices) {
                                if (!arg_full && is_query_ioctl(name) && p != 1 && p != n)
                                        continue;
                                for (size_t e = 0; e < ELEMENTSOF(errnos); e++) {
                                        snprintf(fault, sizeof(fault), "ioctl=%s nth=%u errno=%s", name, p, errnos[e]);
                                        run_case(op, &ms, name, fault, errnos[e]);
                                        if (streq(errnos[e], "ENOMEM"))
                                                rollback_cases(op, &ms, fault);
                                }
                                continue;
                        }
                        /* Partial success: devices [0, k) done, device k fails. */
                        for (unsigned k = 0; k < devices[p - 1]; k++) {
                                bool edge = k == 0 || k == devices[p - 1] - 1;

                                for (size_t e = 0; e < ELEMENTSOF(errnos); e++) {
                                        if (!wanted(edge, errnos[e]))
                                                continue;
                                        snprintf(fault, sizeof(fault), "ioctl=%s nth=%u after=%u errno=%s", name,
                                                 nth_for(devices, p, k), k, errnos[e]);
                                        run_case(op, &ms, name, fault, errnos[e]);
                                        if (streq(errnos[e], "ENOMEM") && (arg_full || edge))
                                                rollback_cases(op, &ms, fault);
                                }
                        }
                        /* Every device done, interrupted at the fence: the restart only waits. */
                        snprintf(fault, sizeof(fault), "ioctl=%s nth=%u at=fence errno=EINTR", name, p);
                        run_case(op, &ms, name, fault, "EINTR");
                }
        }
        printf("  %4u cases, %3u of them with a failing rollback\n", n_cases - cases0, n_rollback - rollback0);
        measured_done(&ms);
}

/* ---- the node ---- */

static void learn_node(void) {
        uint32_t peers[TEST_MAX_GPUS];
        size_t best = 0;

        ASSERT_TRUE(T.n_gpus >= 3);
        home = T.gpus[0];
        for (size_t i = 0; i < T.n_gpus; i++) {
                size_t n = test_gpu_peers(&T, T.gpus[i], peers, ELEMENTSOF(peers));
                if (n > best) {
                        best = n;
                        home = T.gpus[i];
                }
        }
        n_reach = 0;
        reach[n_reach++] = home;
        n_reach += test_gpu_peers(&T, home, reach + 1, ELEMENTSOF(reach) - 1);
        ASSERT_TRUE(n_reach >= 2);
        n_all = 0;
        all[n_all++] = home;
        for (size_t i = 0; i < T.n_gpus; i++)
                if (T.gpus[i] != home)
                        all[n_all++] = T.gpus[i];
}

static char *topology_name(void) {
        json_t *v = NULL;
        char *s;

        ASSERT_OK(emu_kernel_dump(T.emu, &v));
        s = strdup(json_string_value(json_object_get(v, "topology")) ?: "?");
        json_decref(v);
        return s;
}

int main(int argc, char *argv[]) {
        _cleanup_free_ char *topo = NULL;
        Snapshot base, end;
        struct timespec t0, t1;

        setvbuf(stdout, NULL, _IOLBF, 0);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        arg_full = getenv("SVMD_FAULT_MATRIX_FULL") && streq(getenv("SVMD_FAULT_MATRIX_FULL"), "1");
        if (argc > 1 && streq(argv[1], "--full")) {
                arg_full = true;
                argc--;
                argv++;
        }
        test_setup(&T);
        learn_node();
        topo = topology_name();
        printf("fault matrix on %s (%s): %zu GPUs, home 0x%x maps VRAM on %zu of them\n", topo,
               arg_full ? "full" : "CI-sized; --full for everything", n_all, home, n_reach);

        snapshot_take(&base);
        for (size_t o = 0; o < ELEMENTSOF(ops); o++) {
                /* Narrow the run to one operation: test-fault-matrix "Commit5" */
                if (argc > 1 && !strstr(ops[o].name, argv[1]))
                        continue;
                run_op(&ops[o]);
        }
        snapshot_take(&end);
        if (!snapshot_equal(&base, &end)) {
                case_failed("%s: the node is not back where it started\n", topo);
                snapshot_print("start", &base);
                snapshot_print("end", &end);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("%s: %u operations measured (%u device-count probes), %u injected cases: %u failed as documented, "
               "%u restarted into success, %u completed past the point of no return, %u with a failing rollback (%u degraded, all repaired); "
               "%u cases misbehaved; %.1f s\n",
               topo, n_ops_measured, n_probes, n_cases, n_errors, n_restarts, n_forward, n_rollback, n_degraded_seen,
               n_failed, (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9);
        snapshot_done(&base);
        snapshot_done(&end);
        counters_done(&last_delta);
        test_teardown(&T);
        return n_failed == 0 ? 0 : 1;
}
