/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * A request id names one request. Tenant A (uid 1) reuses its ids with other
 * arguments (Allocate of another size, Map to another GPU, Commit of other
 * operations, a persistent Allocate also after a restart of svmd): each is
 * refused with RequestIdReused and nothing is done, while the same arguments
 * still get the first answer. Tenant B (uid 2) sends A's request ids with A's
 * arguments: B gets ranges of its own, never A's reply.
 */

#include <inttypes.h>
#include <stdio.h>

#include "hostile-util.h"
#include "svmd-protocol.h"

#define MiB (UINT64_C(1) << 20)

static TestContext T;

typedef struct Shared {
        uint64_t a_id, a_persistent_id;
        uint64_t b_id, b_persistent_id;
        volatile int a_ready, a_done;
} Shared;

static Shared *S;

static int allocate(sd_bus *bus, uint64_t size, bool persistent, const char *request_id, uint64_t *ret,
                    sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *path;
        uint64_t va;
        int r;

        r = test_call(bus, "Allocate", error, &reply, "tusa{sv}", size, T.gpus[0], "gtt", 2, "persistent", "b",
                      (int) persistent, "request-id", "s", request_id);
        if (r < 0)
                return r;
        ASSERT_OK(sd_bus_message_read(reply, "tto", ret, &va, &path));
        return 0;
}

static uint64_t allocate_ok(sd_bus *bus, uint64_t size, bool persistent, const char *request_id) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id = 0;
        int r = allocate(bus, size, persistent, request_id, &id, &error);

        ASSERT_BUS_OK(r, &error);
        return id;
}

static void allocate_refused(sd_bus *bus, uint64_t size, bool persistent, const char *request_id) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id = 0, before = hu_usage(bus, "ranges");
        int r = allocate(bus, size, persistent, request_id, &id, &error);

        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_REQUEST_ID_REUSED);
        fprintf(stderr, "refused: %s\n", error.message);
        sd_bus_error_free(&error);
        ASSERT_UEQ(hu_usage(bus, "ranges"), before);
}

static uint32_t mapped_count(sd_bus *bus, uint64_t id) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const uint32_t *gpus = NULL;
        char path[64];
        size_t n = 0;
        int r;

        snprintf(path, sizeof(path), SVMD_RANGE_PATH_PREFIX "/%" PRIu64, id);
        r = sd_bus_get_property(bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "MappedGpus", &error, &reply, "au");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read_array(reply, 'u', (const void **) &gpus, &n));
        return (uint32_t) (n / sizeof(uint32_t));
}

static int map(sd_bus *bus, uint64_t id, uint32_t gpu, const char *request_id, sd_bus_error *error) {
        return test_call(bus, "Map", error, NULL, "taua{sv}", id, 1, gpu, 1, "request-id", "s", request_id);
}

static int commit_map(sd_bus *bus, uint64_t id, uint32_t gpu, const char *request_id, sd_bus_error *error) {
        return test_call(bus, "Commit", error, NULL, "a(sa{sv})a{sv}", 1, "Map", 2, "id", "t", id, "gpus", "au", 1,
                         gpu, 1, "request-id", "s", request_id);
}

static void tenant_a(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        /* Allocate: the same arguments get the first answer, others are refused. */
        S->a_id = allocate_ok(bus, 4 * MiB, false, "a-alloc");
        ASSERT_UEQ(allocate_ok(bus, 4 * MiB, false, "a-alloc"), S->a_id);
        allocate_refused(bus, 8 * MiB, false, "a-alloc");
        ASSERT_UEQ(allocate_ok(bus, 4 * MiB, false, "a-alloc"), S->a_id);

        /* Map: another GPU under the same id is refused and not mapped. */
        r = map(bus, S->a_id, T.gpus[1], "a-map", &error);
        ASSERT_BUS_OK(r, &error);
        ASSERT_UEQ(mapped_count(bus, S->a_id), 1);
        r = map(bus, S->a_id, T.gpus[2], "a-map", &error);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_REQUEST_ID_REUSED);
        sd_bus_error_free(&error);
        ASSERT_UEQ(mapped_count(bus, S->a_id), 1);

        /* Commit: the same. */
        r = commit_map(bus, S->a_id, T.gpus[2], "a-commit", &error);
        ASSERT_BUS_OK(r, &error);
        ASSERT_UEQ(mapped_count(bus, S->a_id), 2);
        r = commit_map(bus, S->a_id, T.gpus[3], "a-commit", &error);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_REQUEST_ID_REUSED);
        sd_bus_error_free(&error);
        ASSERT_UEQ(mapped_count(bus, S->a_id), 2);
        r = commit_map(bus, S->a_id, T.gpus[2], "a-commit", &error);
        ASSERT_BUS_OK(r, &error);

        /* Persistent: remembered with the range. */
        S->a_persistent_id = allocate_ok(bus, 4 * MiB, true, "a-persistent");
        allocate_refused(bus, 8 * MiB, true, "a-persistent");

        /* A stays connected while B tries A's ids. */
        S->a_ready = 1;
        hu_wait_flag(&S->a_done);
}

static void tenant_b(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        /* A's ids and arguments: B's own requests, answered with B's own ranges. */
        S->b_id = allocate_ok(bus, 4 * MiB, false, "a-alloc");
        S->b_persistent_id = allocate_ok(bus, 4 * MiB, true, "a-persistent");
        ASSERT_UEQ(hu_usage(bus, "ranges"), 2);
        /* B's own ids stay B's. */
        ASSERT_UEQ(allocate_ok(bus, 4 * MiB, true, "a-persistent"), S->b_persistent_id);
}

static void tenant_a_after_restart(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        /* The cache is gone with the old svmd; the persistent range kept its id and digest. */
        allocate_refused(bus, 8 * MiB, true, "a-persistent");
        ASSERT_UEQ(allocate_ok(bus, 4 * MiB, true, "a-persistent"), S->a_persistent_id);
}

int main(void) {
        pid_t a;

        test_setup(&T);
        ASSERT_TRUE(T.n_gpus >= 4);
        S = hu_shared(sizeof(Shared));

        a = hu_spawn(HU_UID_A, tenant_a, NULL);
        hu_wait_flag(&S->a_ready);
        hu_as_uid(HU_UID_B, tenant_b, NULL);
        fprintf(stderr, "A: ranges %" PRIu64 ", %" PRIu64 "; B with A's request ids: %" PRIu64 ", %" PRIu64 "\n",
                S->a_id, S->a_persistent_id, S->b_id, S->b_persistent_id);
        ASSERT_TRUE(S->b_id != S->a_id && S->b_id != S->a_persistent_id);
        ASSERT_TRUE(S->b_persistent_id != S->a_id && S->b_persistent_id != S->a_persistent_id);
        S->a_done = 1;
        hu_wait(a);

        test_kill_and_wait_restart(&T);
        hu_as_uid(HU_UID_A, tenant_a_after_restart, NULL);

        test_free(T.bus, S->a_persistent_id);
        test_free(T.bus, S->b_persistent_id);
        test_teardown(&T);
        return 0;
}
