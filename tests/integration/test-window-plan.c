/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The plan of a Commit counts the SVM window space its allocations take together
 * (docs/architecture.md, "The path of a request"): in a 64 MiB window, two allocations of
 * 40 MiB each fit the largest hole, but not both; validation refuses them, dry-run included,
 * and nothing changes. One of them alone passes.
 */

#include <stdlib.h>
#include <string.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (1024ULL * 1024ULL)

static TestContext T;

static int commit_two(uint64_t size, bool dry_run, sd_bus_error *error) {
        return test_call(T.bus, "Commit", error, NULL, "a(sa{sv})a{sv}", 2,
                         "Allocate", 3, "size", "t", size, "gpu", "u", T.gpus[0], "domain", "s", "gtt",
                         "Allocate", 3, "size", "t", size, "gpu", "u", T.gpus[0], "domain", "s", "gtt",
                         1, "dry-run", "b", (int) dry_run);
}

int main(void) {
        _cleanup_free_ char *before = NULL, *after = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        test_setup(&T);
        before = test_dump(&T);

        for (int dry_run = 1; dry_run >= 0; dry_run--) {
                r = commit_two(40 * MiB, dry_run, &error);
                ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_OUT_OF_MEMORY);
                fprintf(stderr, "Commit of 2 × 40 MiB%s: %s\n", dry_run ? " (dry-run)" : "", error.message);
                ASSERT_NOT_NULL(strstr(error.message, "Operation 1 (Allocate): The SVM window has 64.0 MiB free"));
                sd_bus_error_free(&error);
        }
        after = test_dump(&T);
        ASSERT_STREQ(before, after);

        /* Together they fit: both are planned, both are made. */
        r = commit_two(24 * MiB, false, &error);
        ASSERT_BUS_OK(r, &error);

        test_teardown(&T);
        return 0;
}
