/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * One tenant's request ids must not push out another's. Tenant A (uid 1)
 * commits a persistent allocation with a request id. Tenant B (uid 2) then
 * floods: 17 000 no-op Maps with distinct request ids (more than the whole
 * cache once held), and 4 200 real Maps with distinct ids (more than a scope
 * keeps). A's retry of its Commit, from a new connection, must get the first
 * answer: the same range, and no second one charged to A.
 */

#include <inttypes.h>
#include <stdio.h>

#include "hostile-util.h"

#define MiB (UINT64_C(1) << 20)
#define NOOP_FLOOD 17000U
#define REAL_FLOOD 4200U

static TestContext T;

typedef struct Shared {
        uint64_t first_id;
        uint64_t retry_id;
        uint64_t ranges_before, ranges_after;
        uint64_t noop_usec, real_usec;
} Shared;

static Shared *S;

/* A's Commit; the id of the range it made. */
static uint64_t victim_commit(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = test_call(bus, "Commit", &error, &reply, "a(sa{sv})a{sv}", 1,
                      "Allocate", 4, "size", "t", 4 * MiB, "gpu", "u", T.gpus[0], "domain", "s", "gtt",
                      "persistent", "b", 1,
                      1, "request-id", "s", "victim-commit-1");
        ASSERT_BUS_OK(r, &error);
        return test_commit_first_id(reply);
}

static void victim_first(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        S->first_id = victim_commit(bus);
        S->ranges_before = hu_usage(bus, "ranges");
}

static void victim_retry(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();

        S->retry_id = victim_commit(bus);
        S->ranges_after = hu_usage(bus, "ranges");
}

static void map_with_id(sd_bus *bus, uint64_t id, uint32_t gpu, const char *prefix, unsigned i) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char request[64];
        int r;

        snprintf(request, sizeof(request), "%s-%u", prefix, i);
        r = test_call(bus, "Map", &error, NULL, "taua{sv}", id, 1, gpu, 1, "request-id", "s", request);
        ASSERT_BUS_OK(r, &error);
}

static void attacker(void *arg) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = hu_connect();
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;
        uint64_t id, va, t0;
        int r;

        r = test_call(bus, "Allocate", &error, &reply, "tusa{sv}", 4 * MiB, T.gpus[0], "vram", 1, "map", "au", 1,
                      T.gpus[0]);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));

        /* Mapped there already: nothing to do, each with a new request id. */
        t0 = hu_now_usec();
        for (unsigned i = 0; i < NOOP_FLOOD; i++)
                map_with_id(bus, id, T.gpus[0], "noop", i);
        S->noop_usec = hu_now_usec() - t0;

        /* Real changes: each is remembered, in B's scope. */
        t0 = hu_now_usec();
        for (unsigned i = 0; i < REAL_FLOOD; i++) {
                map_with_id(bus, id, T.gpus[1], "real", i);
                r = test_call(bus, "Unmap", &error, NULL, "tau", id, 1, T.gpus[1]);
                ASSERT_BUS_OK(r, &error);
        }
        S->real_usec = hu_now_usec() - t0;
}

int main(void) {
        test_setup(&T);
        ASSERT_TRUE(T.n_gpus >= 2);
        S = hu_shared(sizeof(Shared));

        hu_as_uid(HU_UID_A, victim_first, NULL);
        hu_as_uid(HU_UID_B, attacker, NULL);
        fprintf(stderr, "%u no-op Maps with distinct request ids: %.2f s; %u real Map+Unmap: %.2f s\n", NOOP_FLOOD,
                S->noop_usec / 1e6, REAL_FLOOD, S->real_usec / 1e6);
        hu_as_uid(HU_UID_A, victim_retry, NULL);

        fprintf(stderr, "first Commit: range %" PRIu64 "; retry: range %" PRIu64 "; ranges charged: %" PRIu64
                " before, %" PRIu64 " after\n", S->first_id, S->retry_id, S->ranges_before, S->ranges_after);
        ASSERT_UEQ(S->retry_id, S->first_id);
        ASSERT_UEQ(S->ranges_after, S->ranges_before);

        test_free(T.bus, S->first_id);
        test_teardown(&T);
        return 0;
}
