/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The fault matrix on mi300x-8: for each mutating operation, every KFD ioctl
 * it issues, at every position, fails with ENOMEM, EINVAL or EFAULT (for
 * MAP/UNMAP after every k of its N devices), or is interrupted (EINTR before
 * a device, or at the final fence). Each failure must give the documented
 * D-Bus error and leave the emulator's kernel state and svmd's range table
 * exactly as before the call; each interruption must be restarted into a
 * success. Then undos that fail themselves: RollbackFailed, a degraded
 * range, and a background repair that converges once the fault is gone.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)

static TestContext T;
static unsigned n_cases, n_eintr;

typedef struct OpState {
        uint64_t id;            /* range the operation works on, or created */
        uint64_t host;          /* batch: the host range */
        uint64_t host_va;
} OpState;

typedef struct Call {
        const char *ioctl;
        unsigned devices;       /* MAP/UNMAP: devices in this call; 0 for ALLOC/FREE */
} Call;

typedef struct Op {
        const char *name;
        void (*prepare)(OpState *s);
        int (*run)(OpState *s, sd_bus_error *error);
        void (*cleanup)(OpState *s, bool succeeded);
        Call calls[8];          /* the ioctls the operation issues, in order */
} Op;

static uint64_t alloc_plain(const char *domain, uint64_t size, unsigned n_map, uint64_t *ret_va) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL, *m = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;
        uint64_t id, va;
        int r;

        ASSERT_OK(sd_bus_message_new_method_call(T.bus, &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                                 "Allocate"));
        ASSERT_OK(sd_bus_message_append(m, "tus", size, T.gpus[0], domain));
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "{sv}"));
        if (n_map > 0) {
                ASSERT_OK(sd_bus_message_open_container(m, 'e', "sv"));
                ASSERT_OK(sd_bus_message_append(m, "s", "map"));
                ASSERT_OK(sd_bus_message_open_container(m, 'v', "au"));
                ASSERT_OK(sd_bus_message_append_array(m, 'u', T.gpus, n_map * sizeof(uint32_t)));
                ASSERT_OK(sd_bus_message_close_container(m));
                ASSERT_OK(sd_bus_message_close_container(m));
        }
        ASSERT_OK(sd_bus_message_close_container(m));
        r = sd_bus_call(T.bus, m, 0, &error, &reply);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        if (ret_va)
                *ret_va = va;
        sd_bus_error_free(&error);
        return id;
}

static int read_alloc_reply(sd_bus_message *reply, OpState *s) {
        const char *path;
        uint64_t va;
        return sd_bus_message_read(reply, "tto", &s->id, &va, &path);
}

/* -- operations -- */

static void prepare_nothing(OpState *s) {
        *s = (OpState) {};
}

static int run_allocate_map8(OpState *s, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = test_call(T.bus, "Allocate", error, &reply, "tusa{sv}", 2 * MiB, T.gpus[0], "vram", 1, "map", "au", 8,
                          T.gpus[0], T.gpus[1], T.gpus[2], T.gpus[3], T.gpus[4], T.gpus[5], T.gpus[6], T.gpus[7]);
        return r < 0 ? r : read_alloc_reply(reply, s);
}

static void cleanup_free_id(OpState *s, bool succeeded) {
        if (s->id != 0 && succeeded)
                test_free(T.bus, s->id);
}

static void prepare_unmapped(OpState *s) {
        *s = (OpState) { .id = alloc_plain("vram", 2 * MiB, 0, NULL) };
}

static void prepare_mapped8(OpState *s) {
        *s = (OpState) { .id = alloc_plain("vram", 2 * MiB, 8, NULL) };
}

static int run_map8(OpState *s, sd_bus_error *error) {
        return test_call(T.bus, "Map", error, NULL, "taua{sv}", s->id, 8, T.gpus[0], T.gpus[1], T.gpus[2], T.gpus[3],
                         T.gpus[4], T.gpus[5], T.gpus[6], T.gpus[7], 0);
}

static int run_unmap8(OpState *s, sd_bus_error *error) {
        return test_call(T.bus, "Unmap", error, NULL, "tau", s->id, 8, T.gpus[0], T.gpus[1], T.gpus[2], T.gpus[3],
                         T.gpus[4], T.gpus[5], T.gpus[6], T.gpus[7]);
}

static void cleanup_always_free(OpState *s, bool succeeded) {
        test_free(T.bus, s->id);
}

static int run_free(OpState *s, sd_bus_error *error) {
        return test_call(T.bus, "Free", error, NULL, "t", s->id);
}

static void cleanup_free_on_failure(OpState *s, bool succeeded) {
        if (!succeeded)
                test_free(T.bus, s->id);
}

static void prepare_host(OpState *s) {
        *s = (OpState) {};
        s->host = alloc_plain("host", 4 * 4096, 0, &s->host_va);
}

static int run_batch(OpState *s, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = test_call(T.bus, "AllocateBatch", error, &reply, "a(tt)ua{sv}", 3, s->host_va, UINT64_C(4096),
                          s->host_va + 2 * 4096, UINT64_C(4096), s->host_va + 3 * 4096, UINT64_C(4096), T.gpus[0], 1,
                          "map", "au", 2, T.gpus[0], T.gpus[1]);
        return r < 0 ? r : read_alloc_reply(reply, s);
}

static void cleanup_batch(OpState *s, bool succeeded) {
        if (succeeded)
                test_free(T.bus, s->id);
        test_free(T.bus, s->host);
}

static int run_commit3(OpState *s, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = test_call(T.bus, "Commit", error, &reply, "a(sa{sv})a{sv}", 3,
                          "Allocate", 4, "size", "t", 4 * MiB, "gpu", "u", T.gpus[0], "domain", "s", "vram", "map",
                          "au", 2, T.gpus[0], T.gpus[1],
                          "Map", 2, "ref", "u", 0u, "gpus", "au", 2, T.gpus[2], T.gpus[3],
                          "Unmap", 2, "ref", "u", 0u, "gpus", "au", 1, T.gpus[1],
                          0);
        if (r < 0)
                return r;
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(a{sv})"));
        ASSERT_OK(sd_bus_message_enter_container(reply, 'r', "a{sv}"));
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "{sv}"));
        while (sd_bus_message_enter_container(reply, 'e', "sv") > 0) {
                const char *key;
                ASSERT_OK(sd_bus_message_read(reply, "s", &key));
                if (streq(key, "id"))
                        ASSERT_OK(sd_bus_message_read(reply, "v", "t", &s->id));
                else
                        ASSERT_OK(sd_bus_message_skip(reply, "v"));
                ASSERT_OK(sd_bus_message_exit_container(reply));
        }
        return 0;
}

static const Op ops[] = {
        { "Allocate+map8", prepare_nothing, run_allocate_map8, cleanup_free_id,
          { { "ALLOC_MEMORY_OF_GPU", 0 }, { "MAP_MEMORY_TO_GPU", 8 } } },
        { "Map8", prepare_unmapped, run_map8, cleanup_always_free,
          { { "MAP_MEMORY_TO_GPU", 8 } } },
        { "Unmap8", prepare_mapped8, run_unmap8, cleanup_always_free,
          { { "UNMAP_MEMORY_FROM_GPU", 8 } } },
        { "Free", prepare_mapped8, run_free, cleanup_free_on_failure,
          { { "UNMAP_MEMORY_FROM_GPU", 8 }, { "FREE_MEMORY_OF_GPU", 0 } } },
        { "AllocateBatch", prepare_host, run_batch, cleanup_batch,
          { { "ALLOC_MEMORY_OF_GPU", 0 }, { "ALLOC_MEMORY_OF_GPU", 0 }, { "ALLOC_MEMORY_OF_GPU", 0 },
            { "MAP_MEMORY_TO_GPU", 2 }, { "MAP_MEMORY_TO_GPU", 2 }, { "MAP_MEMORY_TO_GPU", 2 } } },
        { "Commit3", prepare_nothing, run_commit3, cleanup_free_id,
          { { "ALLOC_MEMORY_OF_GPU", 0 }, { "MAP_MEMORY_TO_GPU", 2 }, { "MAP_MEMORY_TO_GPU", 2 },
            { "UNMAP_MEMORY_FROM_GPU", 1 } } },
};

static const char *expected_error(const char *errno_name) {
        if (streq(errno_name, "ENOMEM"))
                return SVMD_ERROR_OUT_OF_MEMORY;
        return SVMD_ERROR_KERNEL;
}

/* The nth call of this ioctl within the operation (1-based), for the fault's nth=. */
static unsigned nth_of(const Op *op, size_t idx) {
        unsigned n = 0;
        for (size_t i = 0; i <= idx; i++)
                if (streq(op->calls[i].ioctl, op->calls[idx].ioctl))
                        n++;
        return n;
}

/* Arm `fault`, run the operation, and check the outcome. */
static void run_case(const Op *op, const char *fault, const char *error_name) {
        _cleanup_free_ char *base = test_dump(&T), *base_list = test_list_ranges(T.bus);
        _cleanup_free_ char *before = NULL, *before_list = NULL, *after = NULL, *after_list = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        OpState s;
        int r;

        op->prepare(&s);
        before = test_dump(&T);
        before_list = test_list_ranges(T.bus);

        test_fault(&T, "%s", fault);
        r = op->run(&s, &error);
        /* A case whose fault never fired would prove nothing. */
        if (test_faults_fired(&T) != 1) {
                fprintf(stderr, "%s: fault '%s' fired %" PRIu64 " times, expected once\n", op->name, fault,
                        test_faults_fired(&T));
                abort();
        }
        test_fault_clear(&T);
        n_cases++;

        if (!error_name) {
                if (r < 0) {
                        fprintf(stderr, "%s with fault '%s': expected success after restart, got %s: %s\n",
                                op->name, fault, error.name, error.message);
                        abort();
                }
                n_eintr++;
        } else {
                if (r >= 0 || !sd_bus_error_has_name(&error, error_name)) {
                        fprintf(stderr, "%s with fault '%s': expected %s, got r=%d %s: %s\n", op->name, fault,
                                error_name, r, strna(error.name), strna(error.message));
                        abort();
                }
                after = test_dump(&T);
                after_list = test_list_ranges(T.bus);
                if (!streq(before, after) || !streq(before_list, after_list)) {
                        fprintf(stderr, "%s with fault '%s' changed state:\n--- before\n%s\n%s\n+++ after\n%s\n%s\n",
                                op->name, fault, before, before_list, after, after_list);
                        abort();
                }
        }

        op->cleanup(&s, r >= 0);
        free(after);
        after = test_dump(&T);
        ASSERT_STREQ(base, after);
        free(after_list);
        after_list = test_list_ranges(T.bus);
        ASSERT_STREQ(base_list, after_list);
        sd_bus_error_free(&error);
}

static void test_matrix(void) {
        static const char *const errnos[] = { "ENOMEM", "EINVAL", "EFAULT" };
        char fault[256];

        for (size_t o = 0; o < ELEMENTSOF(ops); o++) {
                const Op *op = &ops[o];
                unsigned before = n_cases;

                for (size_t c = 0; c < ELEMENTSOF(op->calls) && op->calls[c].ioctl; c++) {
                        const Call *call = &op->calls[c];
                        unsigned nth = nth_of(op, c);

                        if (call->devices == 0) {
                                for (size_t e = 0; e < ELEMENTSOF(errnos); e++) {
                                        snprintf(fault, sizeof(fault), "ioctl=%s nth=%u errno=%s", call->ioctl, nth,
                                                 errnos[e]);
                                        run_case(op, fault, expected_error(errnos[e]));
                                }
                                snprintf(fault, sizeof(fault), "ioctl=%s nth=%u errno=EINTR", call->ioctl, nth);
                                run_case(op, fault, NULL);
                                continue;
                        }

                        for (unsigned k = 0; k < call->devices; k++) {
                                for (size_t e = 0; e < ELEMENTSOF(errnos); e++) {
                                        snprintf(fault, sizeof(fault), "ioctl=%s nth=%u errno=%s after=%u",
                                                 call->ioctl, nth, errnos[e], k);
                                        run_case(op, fault, expected_error(errnos[e]));
                                }
                                /* Interrupted before device k: restarted with n_success = k. */
                                snprintf(fault, sizeof(fault), "ioctl=%s nth=%u errno=EINTR after=%u", call->ioctl,
                                         nth, k);
                                run_case(op, fault, NULL);
                        }
                        if (streq(call->ioctl, "MAP_MEMORY_TO_GPU")) {
                                /* Interrupted at the fence, every device done: the restart only waits. */
                                snprintf(fault, sizeof(fault), "ioctl=%s nth=%u errno=EINTR at=fence", call->ioctl,
                                         nth);
                                run_case(op, fault, NULL);
                        }
                }
                printf("  %-14s %3u cases\n", op->name, n_cases - before);
        }
}

static char *range_state(uint64_t id) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[64], *state = NULL;
        int r;

        snprintf(path, sizeof(path), "/org/svmd1/range/%" PRIu64, id);
        r = sd_bus_get_property_string(T.bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "State", &error, &state);
        sd_bus_error_free(&error);
        return r < 0 ? NULL : state;
}

/* Wait until the repair timer has converged: the dump equals `want`. */
static void wait_for_dump(const char *want) {
        for (int i = 0; i < 200; i++) {
                _cleanup_free_ char *now = test_dump(&T);
                if (streq(now, want))
                        return;
                struct timespec ts = { 0, 50 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        _cleanup_free_ char *now = test_dump(&T);
        ASSERT_STREQ(want, now);
}

static void test_rollback_failures(void) {
        _cleanup_free_ char *base = test_dump(&T), *before = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char *state;
        uint64_t id;
        int r;

        /* Map to 8 fails at device 5; undoing the 5 done fails once: degraded, then repaired. */
        id = alloc_plain("vram", 2 * MiB, 0, NULL);
        before = test_dump(&T);
        test_fault(&T, "ioctl=MAP_MEMORY_TO_GPU nth=1 errno=ENOMEM after=5");
        test_fault(&T, "ioctl=UNMAP_MEMORY_FROM_GPU nth=1 errno=EIO after=2");
        r = run_map8(&(OpState) { .id = id }, &error);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_ROLLBACK_FAILED);
        printf("  RollbackFailed: %s\n", error.message);
        sd_bus_error_free(&error);
        state = range_state(id);
        /* The repair timer may already have run; degraded or repaired are both truthful. */
        ASSERT_TRUE(state && (streq(state, "degraded") || streq(state, "active")));
        free(state);
        test_fault_clear(&T);
        wait_for_dump(before);
        state = range_state(id);
        ASSERT_STREQ(state, "active");
        free(state);
        n_cases++;

        /* While degraded, changes are refused with Busy. */
        test_fault(&T, "ioctl=MAP_MEMORY_TO_GPU nth=1 errno=ENOMEM after=3");
        test_fault(&T, "ioctl=UNMAP_MEMORY_FROM_GPU nth=1 count=0 errno=EIO");
        r = run_map8(&(OpState) { .id = id }, &error);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_ROLLBACK_FAILED);
        sd_bus_error_free(&error);
        r = test_call(T.bus, "Free", &error, NULL, "t", id);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_BUSY);
        sd_bus_error_free(&error);
        test_fault_clear(&T);
        wait_for_dump(before);
        n_cases++;
        test_free(T.bus, id);

        /* Allocate+map fails and the undo's FREE fails: the half-made range is repaired away. */
        test_fault(&T, "ioctl=MAP_MEMORY_TO_GPU nth=1 errno=EFAULT after=4");
        test_fault(&T, "ioctl=FREE_MEMORY_OF_GPU nth=1 errno=EIO");
        r = run_allocate_map8(&(OpState) {}, &error);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_ROLLBACK_FAILED);
        sd_bus_error_free(&error);
        test_fault_clear(&T);
        wait_for_dump(base);
        n_cases++;

        /* Unmap fails half-way and re-mapping fails too: repair maps it back. */
        id = alloc_plain("vram", 2 * MiB, 8, NULL);
        free(before);
        before = test_dump(&T);
        test_fault(&T, "ioctl=UNMAP_MEMORY_FROM_GPU nth=1 errno=ENOMEM after=6");
        test_fault(&T, "ioctl=MAP_MEMORY_TO_GPU nth=1 errno=EIO");
        r = run_unmap8(&(OpState) { .id = id }, &error);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_ROLLBACK_FAILED);
        sd_bus_error_free(&error);
        test_fault_clear(&T);
        wait_for_dump(before);
        n_cases++;
        test_free(T.bus, id);

        free(before);
        before = test_dump(&T);
        ASSERT_STREQ(base, before);
}

int main(void) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        printf("fault matrix:\n");
        test_matrix();
        printf("rollback failures:\n");
        test_rollback_failures();
        printf("%u injected cases (%u interrupted calls restarted), 0 leaks\n", n_cases, n_eintr);
        test_teardown(&T);
        return 0;
}
