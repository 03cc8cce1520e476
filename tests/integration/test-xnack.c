/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * "xnack" in svmd.conf: svmd sets its KFD process's XNACK mode at start,
 * reports the mode the kernel then runs with (Manager.Xnack), and accepts the
 * SVM flag gpu-always-mapped only while it is on. A reload leaves the mode
 * alone; a restart applies the new setting. On a node that cannot have it on,
 * svmd serves with the kernel's mode.
 *
 * Run under svmd-harness --config data/xnack-on.conf:
 *   test-xnack settable      every GPU has per-process XNACK (mi300x-8)
 *   test-xnack unsettable    a GPU without it (gfx1100-1)
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)

static TestContext T;

static int xnack(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int v = -1, r;

        r = sd_bus_get_property_trivial(T.bus, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "Xnack",
                                        &error, 'b', &v);
        ASSERT_BUS_OK(r, &error);
        return v;
}

/* An svm range with gpu-always-mapped: 0 if svmd made it (and it is freed again), else the error's errno. */
static int allocate_always_mapped(sd_bus_error *error) {
        sd_bus_message *reply = NULL;
        uint64_t id, va;
        int r;

        r = test_call(T.bus, "Allocate", error, &reply, "tusa{sv}", 2 * MiB, T.gpus[0], SVMD_DOMAIN_SVM, 1,
                      SVMD_OPT_SVM_FLAGS, "as", 2, "host-access", "gpu-always-mapped");
        if (r < 0)
                return r;
        ASSERT_OK(sd_bus_message_read(reply, "tt", &id, &va));
        sd_bus_message_unref(reply);
        test_free(T.bus, id);
        return 0;
}

static void write_config(const char *text) {
        const char *path = getenv("SVMD_TEST_CONFIG");
        FILE *f;

        ASSERT_TRUE(path != NULL);
        f = fopen(path, "we");
        ASSERT_TRUE(f != NULL);
        ASSERT_TRUE(fputs(text, f) >= 0);
        ASSERT_EQ(fclose(f), 0);
}

static void test_settable(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        /* The emulated kernel starts every process with XNACK off; the config turned it on. */
        ASSERT_EQ(xnack(), 1);
        r = allocate_always_mapped(&error);
        ASSERT_BUS_OK(r, &error);

        /* A reload does not switch it under live ranges. */
        write_config("{ \"xnack\": \"off\" }\n");
        r = test_call(T.bus, "Reload", &error, NULL, "");
        ASSERT_BUS_OK(r, &error);
        ASSERT_EQ(xnack(), 1);
        r = allocate_always_mapped(&error);
        ASSERT_BUS_OK(r, &error);

        /* The next start does. */
        test_kill_and_wait_restart(&T);
        ASSERT_EQ(xnack(), 0);
        r = allocate_always_mapped(&error);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NOT_SUPPORTED);
        ASSERT_TRUE(strstr(error.message, "XNACK") != NULL);
        sd_bus_error_free(&error);

        /* And back: "on" again after another restart. */
        write_config("{ \"xnack\": \"on\" }\n");
        test_kill_and_wait_restart(&T);
        ASSERT_EQ(xnack(), 1);
}

static void test_unsettable(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        /* The GPU has no per-process XNACK: svmd runs with the kernel's mode, off. */
        ASSERT_EQ(xnack(), 0);
        r = allocate_always_mapped(&error);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NOT_SUPPORTED);
        sd_bus_error_free(&error);

        /* Everything else is served. */
        r = test_call(T.bus, "Allocate", &error, NULL, "tusa{sv}", 2 * MiB, T.gpus[0], SVMD_DOMAIN_GTT, 0);
        ASSERT_BUS_OK(r, &error);
}

int main(int argc, char *argv[]) {
        if (argc != 2 || (strcmp(argv[1], "settable") != 0 && strcmp(argv[1], "unsettable") != 0)) {
                fprintf(stderr, "usage: test-xnack settable|unsettable\n");
                return 2;
        }
        test_setup(&T);
        if (strcmp(argv[1], "settable") == 0)
                test_settable();
        else
                test_unsettable();
        test_teardown(&T);
        return 0;
}
