/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * SIGTERM while a closed connection's ranges are still being freed in slices:
 * svmd frees every range that is left before it exits, each with its own FREE
 * ioctl (none is left for process teardown to clean up), exits 0 (the harness
 * does not restart it, and under ASan no leak is reported), and the emulator's
 * kernel has no buffer of svmd left.
 */

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hostile-util.h"
#include "svmd-test.h"
#include "teardown-util.h"

#define N_RANGES 40000

static TestContext T;

int main(void) {
        TeardownFiller *f;
        uint64_t allocs0, frees0, allocs, frees, left = 0, h0;
        int pid, starts0;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        test_svmd_state(&pid, &starts0);
        ASSERT_TRUE(pid > 0);
        h0 = test_kernel_handles(&T);
        allocs0 = test_ioctl_count(&T, "ALLOC_MEMORY_OF_GPU");
        frees0 = test_ioctl_count(&T, "FREE_MEMORY_OF_GPU");

        f = hu_shared(sizeof(TeardownFiller));
        f->n_gpus = T.n_gpus < 8 ? T.n_gpus : 8;
        memcpy(f->gpus, T.gpus, f->n_gpus * sizeof(uint32_t));
        f->n_ranges = N_RANGES;
        pid_t filler = hu_spawn(HU_UID_B, teardown_fill, f);
        hu_wait_flag(&f->filled);
        /* Ioctls at a real kernel's speed from now on: the teardown lasts long enough (about a
         * second) for this test to see it under way however busy the machine is. */
        ASSERT_OK(emu_kernel_set_profile(T.emu, EMU_PROFILE_REALISTIC));
        f->go = 1;
        hu_wait(filler);

        /* Some gone, some left: the teardown is under way. */
        for (unsigned i = 0; i < 60000; i++) {
                left = hu_usage_of(T.bus, "uid:2", "ranges");
                if (left < N_RANGES)
                        break;
                nanosleep(&(struct timespec) { 0, 1000 * 1000 }, NULL);
        }
        printf("SIGTERM with %" PRIu64 " of %d ranges of the closed connection left\n", left, N_RANGES);
        ASSERT_TRUE(left > 0 && left < N_RANGES);
        test_teardown(&T);
        ASSERT_OK(kill(pid, SIGTERM) < 0 ? -errno : 0);

        /* It exits (0: not restarted) within the harness's patience. */
        test_wait_svmd_exit(starts0);

        /* Every buffer it allocated was freed by svmd, not by its exit. */
        ASSERT_OK(emu_kernel_attach(getenv("KFDEMU_DIR"), &T.emu));
        allocs = test_ioctl_count(&T, "ALLOC_MEMORY_OF_GPU") - allocs0;
        frees = test_ioctl_count(&T, "FREE_MEMORY_OF_GPU") - frees0;
        printf("after the exit: %" PRIu64 " ALLOC, %" PRIu64 " FREE, %" PRIu64 " handles left (%" PRIu64 " before)\n",
               allocs, frees, test_kernel_handles(&T), h0);
        ASSERT_TRUE(allocs == N_RANGES);
        ASSERT_TRUE(frees == allocs);
        ASSERT_TRUE(test_kernel_handles(&T) <= h0);
        printf("ok\n");
        return 0;
}
