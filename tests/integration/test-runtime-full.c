/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * svmd's runtime directory on a small tmpfs (svmd-harness --runtime-tmpfs-size),
 * as /run is on many nodes. Persistent GTT ranges with long labels are allocated
 * until svmd refuses one: the refusal is QuotaExceeded naming the runtime
 * directory, and neither the kernel nor svmd's tables changed. Every range that
 * was acknowledged is kept: non-persistent ranges still work, svmd restarts
 * (kill -9) on the full directory with exactly the acknowledged ranges, frees
 * still work, and after them persistent ranges work again — and survive one more
 * restart.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MAX_RANGES 400
#define LABEL_LEN 200

static TestContext T;

typedef struct Acked {
        uint64_t id, va;
} Acked;

static Acked acked[MAX_RANGES];
static size_t n_acked;

/* Allocate a persistent 4 KiB GTT range with a 200-byte label; 0 and the error on refusal. */
static int allocate_persistent(unsigned n, bool persistent, sd_bus_error *error, Acked *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        char label[LABEL_LEN + 1];
        const char *path;
        int r;

        snprintf(label, sizeof(label), "durable-%05u-", n);
        memset(label + strlen(label), 'x', LABEL_LEN - strlen(label));
        label[LABEL_LEN] = '\0';
        r = test_call(T.bus, "Allocate", error, &reply, "tusa{sv}", UINT64_C(4096), T.gpus[0], SVMD_DOMAIN_GTT, 2,
                      "persistent", "b", (int) persistent, "label", "s", label);
        if (r < 0)
                return r;
        ASSERT_OK(sd_bus_message_read(reply, "tto", &ret->id, &ret->va, &path));
        return 0;
}

/* "id va" lines of every range svmd lists, and of the acknowledged ones: they must be equal. */
static void assert_exactly_acked(const char *when) {
        _cleanup_free_ char *list = test_list_ranges(T.bus);
        _cleanup_free_ char *want = NULL, *have = NULL;
        size_t wl = 0, hl = 0;
        FILE *w = open_memstream(&want, &wl), *h = open_memstream(&have, &hl);

        ASSERT_TRUE(w && h);
        for (size_t i = 0; i < n_acked; i++)
                fprintf(w, "%" PRIu64 " 0x%" PRIx64 "\n", acked[i].id, acked[i].va);
        for (char *line = list; line && *line;) {
                char *nl = strchr(line, '\n');
                uint64_t id, va;

                if (sscanf(line, "%" SCNu64 " 0x%" SCNx64, &id, &va) == 2)
                        fprintf(h, "%" PRIu64 " 0x%" PRIx64 "\n", id, va);
                line = nl ? nl + 1 : NULL;
        }
        fclose(w);
        fclose(h);
        if (!streq(want, have)) {
                fprintf(stderr, "%s: svmd has\n%s\nbut these were acknowledged:\n%s\n", when, have, want);
                abort();
        }
        /* And the kernel holds exactly those buffers. */
        _cleanup_free_ char *maps = test_kernel_mappings(&T);
        size_t n = 0;
        for (const char *p = maps; *p; p++)
                n += *p == '\n';
        ASSERT_EQ(n, n_acked);
}

/*
 * Allocate until refused twice in a row (a refusal has svmd compact its journal, which may make
 * room for a few more); returns how many were acknowledged in this round.
 */
static size_t fill(unsigned *next) {
        size_t before = n_acked;
        unsigned refused = 0;

        for (;;) {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                _cleanup_free_ char *dump = test_dump(&T), *list = test_list_ranges(T.bus);
                _cleanup_free_ char *dump_after = NULL, *list_after = NULL;
                Acked a;
                int r;

                if (n_acked == MAX_RANGES) {
                        fprintf(stderr, "all %d persistent ranges acknowledged on a %s runtime directory: its journal "
                                "cannot have kept them\n", MAX_RANGES, "128 KiB");
                        abort();
                }
                r = allocate_persistent((*next)++, true, &error, &a);
                if (r >= 0) {
                        acked[n_acked++] = a;
                        refused = 0;
                        continue;
                }
                /* Refused for the right reason, with a sentence naming the cause … */
                ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_QUOTA_EXCEEDED);
                if (!strstr(error.message, "runtime directory")) {
                        fprintf(stderr, "refusal does not name the runtime directory: %s\n", error.message);
                        abort();
                }
                if (refused == 0)
                        printf("refused after %zu: %s\n", n_acked - before, error.message);
                sd_bus_error_free(&error);
                /* … and nothing changed, in the kernel or in svmd (the fd store lets go of the rolled-back
                 * range's fd when it gets to svmd's FDSTOREREMOVE: wait for the dump to settle). */
                dump_after = test_dump_settled(&T, dump);
                list_after = test_list_ranges(T.bus);
                ASSERT_STREQ(dump_after, dump);
                ASSERT_STREQ(list_after, list);
                if (++refused == 2)
                        return n_acked - before;
        }
}

/*
 * A change of a persistent range on the full directory: its line is written at the commit point,
 * after the kernel steps, so a refusal here is a rollback. Maps to another GPU until one is
 * refused; the refusal must leave the kernel and svmd as they were.
 */
static void refused_map_rolls_back(void) {
        unsigned refusals = 0;

        for (unsigned i = 0; i < 64 && refusals == 0; i++) {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                _cleanup_free_ char *dump = test_dump(&T), *list = test_list_ranges(T.bus);
                _cleanup_free_ char *dump_after = NULL, *list_after = NULL;
                Acked *a = &acked[i % n_acked];
                uint32_t gpu = T.gpus[1 + i % (T.n_gpus - 1)];
                int r;

                r = test_call(T.bus, i / n_acked % 2 ? "Unmap" : "Map", &error, NULL,
                              i / n_acked % 2 ? "tau" : "taua{sv}", a->id, 1, gpu, 0);
                if (r >= 0)
                        continue;
                ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_QUOTA_EXCEEDED);
                printf("map refused: %s\n", error.message);
                sd_bus_error_free(&error);
                dump_after = test_dump(&T);
                list_after = test_list_ranges(T.bus);
                ASSERT_STREQ(dump_after, dump);
                ASSERT_STREQ(list_after, list);
                refusals++;
        }
        ASSERT_TRUE(refusals > 0);
}

int main(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        unsigned next = 0;
        size_t first;
        Acked a;
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);

        first = fill(&next);
        ASSERT_TRUE(first > 0);
        ASSERT_TRUE(first < MAX_RANGES);
        refused_map_rolls_back();
        /* What the maps did that was acknowledged shows in ListRanges, not in "id va": the check
         * below holds whatever got through. */

        /* Non-persistent ranges never touch the directory. */
        r = allocate_persistent(next++, false, &error, &a);
        ASSERT_BUS_OK(r, &error);
        test_free(T.bus, a.id);
        assert_exactly_acked("full");

        /* svmd starts again on the full directory, with exactly what it acknowledged. */
        test_kill_and_wait_restart(&T);
        assert_exactly_acked("after a restart on the full directory");

        /* Frees work on a full directory (they make room) … */
        for (size_t i = 0; i < n_acked / 2; i++)
                test_free(T.bus, acked[i].id);
        memmove(acked, acked + n_acked / 2, (n_acked - n_acked / 2) * sizeof(Acked));
        n_acked -= n_acked / 2;
        assert_exactly_acked("after freeing half");

        /* … and then persistent ranges work again, until the directory is full once more. */
        ASSERT_TRUE(fill(&next) > 0);
        test_kill_and_wait_restart(&T);
        assert_exactly_acked("after the last restart");

        printf("%zu persistent ranges acknowledged before the directory was full, all kept; %zu at the end\n",
               first, n_acked);
        test_teardown(&T);
        return 0;
}
