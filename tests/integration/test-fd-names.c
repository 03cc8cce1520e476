/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * More persistent ranges than LISTEN_FDNAMES could name as "range-<id>" (about 10 900 at 12
 * bytes a name under the kernel's 128 KiB for one environment string) survive a restart:
 * svmd names each stored fd by a slot of one to three characters (docs/architecture.md,
 * "The fd store's names"). 12 000 persistent GTT ranges, a kill, all back; freed, all gone.
 *
 * The recovery runs in slices (docs/architecture.md, "Recovery order"): with a watchdog of 20 ms
 * (SVMD_HARNESS_WATCHDOG_USEC), WATCHDOG=1 keeps coming while the 12 000 ranges are restored
 * (between svmd's STATUS=Recovering… messages), before READY=1. A SIGTERM in the middle of the
 * restore stops it with the fd store and the journal as they were: the next start brings every
 * range back.
 */

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "svmd-test.h"

#define N 12000

static TestContext T;

static uint64_t usage_ranges(sd_bus *bus) {
        _cleanup_free_ char *u = test_usage(bus);
        const char *p = strstr(u, "ranges=");

        ASSERT_NOT_NULL(p);
        return strtoull(p + strlen("ranges="), NULL, 10);
}

/* The harness's count of the restarted svmd's pings: before READY=1, during the restore, the longest gap. */
static void watchdog_pings(unsigned *ret_before_ready, unsigned *ret_recovering, uint64_t *ret_longest_usec) {
        _cleanup_free_ char *path = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        unsigned total = 0;
        int pid = 0;

        ASSERT_TRUE(asprintf(&path, "%s/svmd.watchdog", getenv("KFDEMU_DIR")) > 0);
        f = fopen(path, "re");
        ASSERT_NOT_NULL(f);
        ASSERT_TRUE(fscanf(f, "%d %u %u %" SCNu64 " %u", &pid, ret_before_ready, &total, ret_longest_usec,
                           ret_recovering) == 5);
}

static void read_watchdog(int *ret_pid, unsigned *ret_recovering) {
        _cleanup_free_ char *path = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        unsigned before_ready = 0, total = 0;
        uint64_t longest = 0;

        ASSERT_TRUE(asprintf(&path, "%s/svmd.watchdog", getenv("KFDEMU_DIR")) > 0);
        *ret_pid = 0;
        *ret_recovering = 0;
        f = fopen(path, "re");
        if (f && fscanf(f, "%d %u %u %" SCNu64 " %u", ret_pid, &before_ready, &total, &longest, ret_recovering) != 5)
                *ret_pid = 0;
}

/* Kill svmd; SIGTERM the new one while it restores (WATCHDOG=1 came during its restore); start it again. */
static void sigterm_during_recovery(TestContext *t) {
        _cleanup_free_ char *path = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        int old, starts, pid = 0, harness = 0;
        unsigned recovering = 0;

        test_svmd_state(&old, &starts);
        ASSERT_OK(emu_kernel_kill(t->emu, old, UINT64_C(10) * 1000 * 1000));
        for (unsigned i = 0; i < 60000 && !(pid > 0 && pid != old && recovering > 0); i++) {
                read_watchdog(&pid, &recovering);
                nanosleep(&(struct timespec) { 0, 1000 * 1000 }, NULL);
        }
        ASSERT_TRUE(pid > 0 && pid != old && recovering > 0);
        ASSERT_TRUE(kill(pid, SIGTERM) == 0);
        test_svmd_state(&old, &starts);
        test_wait_svmd_exit(starts);
        printf("SIGTERM to svmd %d while it restored; it exited\n", pid);

        /* What `systemctl start svmd` does: the harness starts it with the fd store. */
        ASSERT_TRUE(asprintf(&path, "%s/harness.pid", getenv("KFDEMU_DIR")) > 0);
        f = fopen(path, "re");
        ASSERT_NOT_NULL(f);
        ASSERT_TRUE(fscanf(f, "%d", &harness) == 1 && harness > 0);
        ASSERT_TRUE(kill(harness, SIGUSR1) == 0);
        for (unsigned i = 0; i < 120000; i++) {
                int now;

                test_svmd_state(&pid, &now);
                if (pid > 0 && now > starts && test_svmd_ready())
                        break;
                nanosleep(&(struct timespec) { 0, 1000 * 1000 }, NULL);
        }
        ASSERT_TRUE(test_svmd_ready());
        t->direct = sd_bus_flush_close_unref(t->direct);
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
        {
                unsigned before_ready = 0, recovering = 0;
                uint64_t longest = 0;

                watchdog_pings(&before_ready, &recovering, &longest);
                printf("WATCHDOG=1 before READY=1: %u, while restoring: %u, the longest gap %" PRIu64 " µs "
                       "(WATCHDOG_USEC=%s)\n", before_ready, recovering, longest,
                       getenv("SVMD_HARNESS_WATCHDOG_USEC") ?: "unset");
                /* Pings every 10 ms: a restore of 12 000 ranges in one dispatch would get none in. */
                ASSERT_TRUE(recovering >= 3);
        }
        bus = test_direct(&T);
        printf("after the restart: %" PRIu64 " ranges\n", usage_ranges(bus));
        ASSERT_UEQ(usage_ranges(bus), N);
        {
                _cleanup_free_ char *lost = test_lost_ranges(bus);

                ASSERT_STREQ(lost, "");
        }

        sigterm_during_recovery(&T);
        bus = test_direct(&T);
        printf("after a SIGTERM during the recovery and a start: %" PRIu64 " ranges\n", usage_ranges(bus));
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
