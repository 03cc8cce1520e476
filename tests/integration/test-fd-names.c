/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * More persistent ranges than LISTEN_FDNAMES could name as "range-<id>" (about 10 900 at 12
 * bytes a name under the kernel's 128 KiB for one environment string) survive a restart:
 * svmd names each stored fd by a slot of one to three characters (docs/architecture.md,
 * "The fd store's names"). 12 000 persistent GTT ranges, a kill, all back; freed, all gone.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "svmd-test.h"

#define N 12000

static TestContext T;

static uint64_t usage_ranges(sd_bus *bus) {
        _cleanup_free_ char *u = test_usage(bus);
        const char *p = strstr(u, "ranges=");

        ASSERT_NOT_NULL(p);
        return strtoull(p + strlen("ranges="), NULL, 10);
}

int main(void) {
        static uint64_t ids[N];
        _cleanup_free_ char *first = NULL, *last = NULL;
        sd_bus *bus;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        bus = test_direct(&T);

        for (size_t i = 0; i < N; i++)
                ids[i] = test_allocate(bus, 4096, T.gpus[0], "gtt", true, NULL);
        ASSERT_UEQ(usage_ranges(bus), N);
        first = test_fd_store_name(ids[0]);
        last = test_fd_store_name(ids[N - 1]);
        printf("%d persistent ranges; fd names \"%s\" … \"%s\"\n", N, first, last);
        ASSERT_UEQ(strlen(first), 1);
        ASSERT_UEQ(strlen(last), 3);

        test_kill_and_wait_restart(&T);
        bus = test_direct(&T);
        printf("after the restart: %" PRIu64 " ranges\n", usage_ranges(bus));
        ASSERT_UEQ(usage_ranges(bus), N);
        {
                _cleanup_free_ char *lost = test_lost_ranges(bus);

                ASSERT_STREQ(lost, "");
        }

        for (size_t i = 0; i < N; i++)
                test_free(bus, ids[i]);
        ASSERT_UEQ(usage_ranges(bus), 0);

        /* Names are taken lowest first again: a new range's fd gets the first one back. */
        ids[0] = test_allocate(bus, 4096, T.gpus[0], "gtt", true, NULL);
        free(last);
        last = test_fd_store_name(ids[0]);
        ASSERT_STREQ(last, first);
        test_free(bus, ids[0]);

        test_teardown(&T);
        return 0;
}
