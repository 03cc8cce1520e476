/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Where svm ranges cannot be had, svmd says why and changes nothing: a KFD
 * interface older than 1.5 (no AMDKFD_IOC_SVM) names the version needed; a
 * node whose GPUs lack SVM support names that. The other domains still work.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)

static TestContext T;

static char *kfd_version(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char *v = NULL;
        int r;

        r = sd_bus_get_property_string(T.bus, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "KfdVersion",
                                       &error, &v);
        ASSERT_BUS_OK(r, &error);
        return v;
}

int main(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *version = NULL, *before = NULL, *after = NULL;
        const char *expect;
        unsigned major = 0, minor = 0;
        int xnack = -1, r;

        test_setup(&T);
        version = kfd_version();
        ASSERT_TRUE(sscanf(version, "%u.%u", &major, &minor) == 2);
        expect = minor < 5 ? "need KFD interface 1.5" : "does not support SVM";

        r = sd_bus_get_property_trivial(T.bus, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "Xnack",
                                        &error, 'b', &xnack);
        ASSERT_BUS_OK(r, &error);
        ASSERT_EQ(xnack, 0);

        before = test_dump(&T);
        r = test_call(T.bus, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, T.gpus[0], SVMD_DOMAIN_SVM, 0);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NOT_SUPPORTED);
        if (!strstr(error.message, expect)) {
                fprintf(stderr, "expected \"%s\" in: %s\n", expect, error.message);
                abort();
        }
        sd_bus_error_free(&error);
        r = test_call(T.bus, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, UINT32_C(0), SVMD_DOMAIN_SVM, 1,
                      SVMD_OPT_SVM_GRANULARITY, "u", 4);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NOT_SUPPORTED);
        sd_bus_error_free(&error);
        after = test_dump(&T);
        ASSERT_STREQ(after, before);

        /* Host memory needs no SVM. */
        r = test_call(T.bus, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, T.gpus[0], SVMD_DOMAIN_HOST, 0);
        ASSERT_BUS_OK(r, &error);

        test_teardown(&T);
        return 0;
}
