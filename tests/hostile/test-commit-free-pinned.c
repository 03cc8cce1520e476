/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * A batch range pins the host range under its pieces: its userptr buffers use
 * that range's pages. A Commit that frees the host range and creates a batch
 * inside it, in either order, must be refused at validation (dry-run gives the
 * same answer) with nothing changed: otherwise the host range's struct is freed
 * under the batch range (a use after free in svmd) and its VA, handed out
 * again, would be aliased by the batch's buffers.
 *
 * Also: Free of a pinned range, plain and inside a Commit, is refused alike,
 * and a batch freed earlier in the same Commit still pins (frees happen at the
 * end). Afterwards the host range still works and everything goes away cleanly.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)

static TestContext T;
static uint64_t X, XVA; /* the host range */

static uint64_t allocate_host(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *path;
        uint64_t id;
        int r;

        r = test_call(T.bus, "Allocate", &error, &reply, "tusa{sv}", 2 * MiB, T.gpus[0], "host", 1, "map", "au", 1,
                      T.gpus[0]);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &XVA, &path));
        sd_bus_message_unref(reply);
        return id;
}

static uint64_t allocate_batch(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *path;
        uint64_t id, va;
        int r;

        r = test_call(T.bus, "AllocateBatch", &error, &reply, "a(tt)ua{sv}", 2, XVA, 64 * KiB, XVA + 128 * KiB,
                      64 * KiB, T.gpus[0], 1, "map", "au", 1, T.gpus[1]);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        sd_bus_message_unref(reply);
        return id;
}

/* The operations, in order; "F" = Free(X), "B" = AllocateBatch inside X, "b" = Free(batch). */
static int commit(const char *ops, uint64_t batch, bool dry_run, sd_bus_error *error) {
        sd_bus_message *m = NULL;
        int r;

        ASSERT_OK(sd_bus_message_new_method_call(T.bus, &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                                 "Commit"));
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "(sa{sv})"));
        for (const char *o = ops; *o; o++)
                switch (*o) {
                case 'F':
                        ASSERT_OK(sd_bus_message_append(m, "(sa{sv})", "Free", 1, "id", "t", X));
                        break;
                case 'b':
                        ASSERT_OK(sd_bus_message_append(m, "(sa{sv})", "Free", 1, "id", "t", batch));
                        break;
                case 'B':
                        ASSERT_OK(sd_bus_message_append(m, "(sa{sv})", "AllocateBatch", 3, "host-ranges", "a(tt)", 2,
                                                        XVA, 64 * KiB, XVA + 1 * MiB, 128 * KiB, "gpu", "u",
                                                        T.gpus[0], "map", "au", 1, T.gpus[1]));
                        break;
                default:
                        abort();
                }
        ASSERT_OK(sd_bus_message_close_container(m));
        if (dry_run)
                ASSERT_OK(sd_bus_message_append(m, "a{sv}", 1, "dry-run", "b", 1));
        else
                ASSERT_OK(sd_bus_message_append(m, "a{sv}", 0));
        r = sd_bus_call(T.bus, m, 0, error, NULL);
        sd_bus_message_unref(m);
        return r;
}

/* Refused with name, a message containing words, and nothing changed. */
static void expect_refused(const char *what, const char *ops, uint64_t batch, bool dry_run, const char *name,
                           const char *words) {
        _cleanup_free_ char *dump = test_dump(&T), *list = test_list_ranges(T.bus), *after_dump = NULL,
                            *after_list = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = commit(ops, batch, dry_run, &error);
        if (r >= 0) {
                fprintf(stderr, "%s%s: accepted, must be refused\n", what, dry_run ? " (dry-run)" : "");
                abort();
        }
        ASSERT_BUS_ERROR(r, &error, name);
        if (!strstr(error.message, words)) {
                fprintf(stderr, "%s: message \"%s\" does not say \"%s\"\n", what, error.message, words);
                abort();
        }
        printf("  %-50s refused: %s\n", what, error.message);
        sd_bus_error_free(&error);
        after_dump = test_dump(&T);
        after_list = test_list_ranges(T.bus);
        ASSERT_STREQ(dump, after_dump);
        ASSERT_STREQ(list, after_list);
}

/* X still works: map it to another GPU and back. */
static void check_x_usable(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = test_call(T.bus, "Map", &error, NULL, "taua{sv}", X, 1, T.gpus[2], 0);
        ASSERT_BUS_OK(r, &error);
        r = test_call(T.bus, "Unmap", &error, NULL, "tau", X, 1, T.gpus[2]);
        ASSERT_BUS_OK(r, &error);
}

int main(void) {
        _cleanup_free_ char *base = NULL, *base_list = NULL, *end = NULL, *end_list = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char plain[512];
        uint64_t batch;
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        ASSERT_TRUE(T.n_gpus >= 3);
        base = test_dump(&T);
        base_list = test_list_ranges(T.bus);

        X = allocate_host();
        printf("host range %" PRIu64 " at 0x%" PRIx64 "\n", X, XVA);

        /* The hole: the host range freed, then a batch over its pages. */
        for (int dry = 0; dry < 2; dry++) {
                expect_refused("Commit [Free(X), AllocateBatch inside X]", "FB", 0, dry,
                               SD_BUS_ERROR_INVALID_ARGS, "which an earlier operation of this Commit frees");
                expect_refused("Commit [AllocateBatch inside X, Free(X)]", "BF", 0, dry, SVMD_ERROR_BUSY,
                               "backs pieces of batch ranges");
        }
        check_x_usable();

        /* An existing batch pins X: plain Free and Commit's Free refuse it with the same words. */
        batch = allocate_batch();
        r = test_call(T.bus, "Free", &error, NULL, "t", X);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_BUSY);
        snprintf(plain, sizeof(plain), "Operation 0 (Free): %s", error.message);
        printf("  %-50s refused: %s\n", "Free(X) while a batch pins it", error.message);
        sd_bus_error_free(&error);
        for (int dry = 0; dry < 2; dry++) {
                r = commit("F", batch, dry, &error);
                ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_BUSY);
                ASSERT_STREQ(plain, error.message);
                sd_bus_error_free(&error);
                /* Freeing the batch first in the same Commit does not unpin before the end. */
                expect_refused("Commit [Free(batch), Free(X)]", "bF", batch, dry, SVMD_ERROR_BUSY,
                               "backs pieces of batch ranges");
        }

        /* In order, in one Commit each, it all goes. */
        r = commit("b", batch, false, &error);
        ASSERT_BUS_OK(r, &error);
        check_x_usable();
        r = commit("F", 0, false, &error);
        ASSERT_BUS_OK(r, &error);

        end = test_dump(&T);
        end_list = test_list_ranges(T.bus);
        ASSERT_STREQ(base, end);
        ASSERT_STREQ(base_list, end_list);
        printf("commit-free-pinned: refused in both orders and in dry-run, nothing changed, "
               "emulator dump and ListRanges as at the start\n");
        test_teardown(&T);
        return 0;
}
