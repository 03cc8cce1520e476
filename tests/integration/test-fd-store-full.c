/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The fd store's capacity (limits.fd-store-max, systemd's FileDescriptorStoreMax=): svmd-harness
 * --fd-store-max 3 drops a fourth fd as systemd would, and svmd.conf says 3. The fourth persistent
 * range is refused before any kernel work (QuotaExceeded naming the fd store), non-persistent ones
 * still work, every acknowledged range comes back after kill -9, and after a Free there is room
 * for one again.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

static TestContext T;

static int allocate(bool persistent, uint64_t *ret_id, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *path;
        uint64_t va;
        int r;

        r = test_call(T.bus, "Allocate", error, &reply, "tusa{sv}", UINT64_C(65536), T.gpus[0], SVMD_DOMAIN_HOST,
                      2, "persistent", "b", (int) persistent, "map", "au", 1, T.gpus[0]);
        if (r >= 0)
                ASSERT_OK(sd_bus_message_read(reply, "tto", ret_id, &va, &path));
        return r;
}

/* kill -9: exactly the ranges listed before come back, none lost. */
static void assert_restart_keeps_all(void) {
        _cleanup_free_ char *list = test_list_ranges(T.bus), *list_after = NULL, *lost = NULL;

        test_kill_and_wait_restart(&T);
        list_after = test_list_ranges(T.bus);
        ASSERT_STREQ(list_after, list);
        lost = test_lost_ranges(T.bus);
        ASSERT_STREQ(lost, "");
}

int main(void) {
        _cleanup_free_ char *before = NULL, *after = NULL, *list = NULL, *list_after = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t ids[3], id;
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);

        for (size_t i = 0; i < 3; i++) {
                r = allocate(true, &ids[i], &error);
                ASSERT_BUS_OK(r, &error);
        }

        /* The fourth would not come back: refused, and nothing changed. */
        before = test_dump(&T);
        list = test_list_ranges(T.bus);
        r = allocate(true, &id, &error);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_QUOTA_EXCEEDED);
        ASSERT_TRUE(strstr(error.message, "fd store"));
        printf("refused: %s\n", error.message);
        sd_bus_error_free(&error);
        after = test_dump(&T);
        ASSERT_STREQ(after, before);
        list_after = test_list_ranges(T.bus);
        ASSERT_STREQ(list_after, list);

        /* Non-persistent ranges keep no fd there. */
        r = allocate(false, &id, &error);
        ASSERT_BUS_OK(r, &error);
        test_free(T.bus, id);

        /* Exactly the acknowledged ones come back. */
        assert_restart_keeps_all();

        /* A Free makes room for one. */
        test_free(T.bus, ids[0]);
        r = allocate(true, &ids[0], &error);
        ASSERT_BUS_OK(r, &error);
        assert_restart_keeps_all();

        test_teardown(&T);
        return 0;
}
