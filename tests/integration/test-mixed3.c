/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * mixed-3: two GPUs in an XGMI hive and one reachable only over PCIe without
 * peer-to-peer. Mapping VRAM across the non-P2P pair fails with a clear error
 * and leaves nothing mapped; system memory maps everywhere.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

static TestContext T;

int main(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint32_t lone = 0, hive = 0, peers[TEST_MAX_GPUS];
        uint64_t id, va;
        const char *path;
        int r;

        test_setup(&T);
        ASSERT_EQ(T.n_gpus, 3);
        for (size_t i = 0; i < T.n_gpus; i++) {
                if (test_gpu_peers(&T, T.gpus[i], peers, ELEMENTSOF(peers)) == 0)
                        lone = T.gpus[i];
                else
                        hive = T.gpus[i];
        }
        ASSERT_TRUE(lone != 0 && hive != 0);

        _cleanup_free_ char *before = test_dump(&T);

        /* Allocate-with-map across the pair: refused before any ioctl, nothing left. */
        r = test_call(T.bus, "Allocate", &error, NULL, "tusa{sv}", UINT64_C(2) << 20, hive, "vram", 1, "map", "au", 2,
                      hive, lone);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        printf("cross map refused: %s\n", error.message);
        ASSERT_TRUE(strstr(error.message, "peer-to-peer") != NULL);
        sd_bus_error_free(&error);
        _cleanup_free_ char *after = test_dump(&T);
        ASSERT_STREQ(before, after);

        /* Map of an existing range across the pair: the range stays as it was. */
        r = test_call(T.bus, "Allocate", &error, &reply, "tusa{sv}", UINT64_C(2) << 20, lone, "vram", 1, "map", "au", 1,
                      lone);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        _cleanup_free_ char *mapped = test_dump(&T);
        r = test_call(T.bus, "Map", &error, NULL, "taua{sv}", id, 1, hive, 0);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);
        _cleanup_free_ char *still = test_dump(&T);
        ASSERT_STREQ(mapped, still);
        r = test_call(T.bus, "Free", &error, NULL, "t", id);
        ASSERT_BUS_OK(r, &error);

        /* GTT is system memory: every GPU maps it. */
        sd_bus_message_unref(reply);
        reply = NULL;
        r = test_call(T.bus, "Allocate", &error, &reply, "tusa{sv}", UINT64_C(1) << 20, 0u, "gtt", 1, "map", "au", 3,
                      T.gpus[0], T.gpus[1], T.gpus[2]);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        r = test_call(T.bus, "Free", &error, NULL, "t", id);
        ASSERT_BUS_OK(r, &error);

        _cleanup_free_ char *end = test_dump(&T);
        ASSERT_STREQ(before, end);
        sd_bus_error_free(&error);
        test_teardown(&T);
        printf("mixed-3: ok\n");
        return 0;
}
