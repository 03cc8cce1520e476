/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * A node where one GPU lacks SVM support: svm ranges work on the others
 * (the kernel refuses any SVM attribute naming that GPU, NO_ACCESS too, so
 * svmd never names it), and naming it is refused up front.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)

static TestContext T;

int main(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *before = NULL, *after = NULL;
        uint32_t capable = 0, other = 0;
        const char *path;
        uint64_t id, va;
        int r;

        test_setup(&T);
        ASSERT_UEQ(T.n_gpus, 3);
        capable = T.gpus[0];
        other = T.gpus[2];   /* the topology's last GPU has no SVM */

        r = test_call(T.bus, "Allocate", &error, &reply, "tusa{sv}", 2 * MiB, capable, SVMD_DOMAIN_SVM, 2,
                      SVMD_OPT_MAP, "au", 2, T.gpus[0], T.gpus[1], SVMD_OPT_SVM_GRANULARITY, "u", 3);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));

        before = test_dump(&T);
        r = test_call(T.bus, "Map", &error, NULL, "taua{sv}", id, 1, other, 0);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NOT_SUPPORTED);
        sd_bus_error_free(&error);
        r = test_call(T.bus, "SetAttributes", &error, NULL, "ta{sv}", id, 1, SVMD_OPT_SVM_PREFERRED, "u", other);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NOT_SUPPORTED);
        sd_bus_error_free(&error);
        r = test_call(T.bus, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, other, SVMD_DOMAIN_SVM, 0);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NOT_SUPPORTED);
        sd_bus_error_free(&error);
        after = test_dump(&T);
        ASSERT_STREQ(after, before);

        /* Changes on the others work, rollback included. */
        test_fault(&T, "ioctl=SVM op=set after=1 errno=EIO");
        r = test_call(T.bus, "SetAttributes", &error, NULL, "ta{sv}", id, 2, SVMD_OPT_SVM_GRANULARITY, "u", 5,
                      SVMD_OPT_SVM_NO_ACCESS, "au", 1, T.gpus[1]);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_KERNEL);
        sd_bus_error_free(&error);
        test_fault_clear(&T);
        free(after);
        after = test_dump(&T);
        ASSERT_STREQ(after, before);
        r = test_call(T.bus, "SetAttributes", &error, NULL, "ta{sv}", id, 2, SVMD_OPT_SVM_GRANULARITY, "u", 5,
                      SVMD_OPT_SVM_NO_ACCESS, "au", 1, T.gpus[1]);
        ASSERT_BUS_OK(r, &error);
        r = test_call(T.bus, "Free", &error, NULL, "t", id);
        ASSERT_BUS_OK(r, &error);

        test_teardown(&T);
        return 0;
}
