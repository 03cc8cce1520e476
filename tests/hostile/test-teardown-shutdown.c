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

/* "<pid> <ready> <starts>" of svmd-harness (svmd-harness.c). */
static void read_state(int *ret_pid, int *ret_starts) {
        char path[4096];
        int pid = -1, ready = 0, starts = 0;
        FILE *f;

        snprintf(path, sizeof(path), "%s/svmd.state", getenv("KFDEMU_DIR"));
        f = fopen(path, "re");
        ASSERT_TRUE(f);
        ASSERT_TRUE(fscanf(f, "%d %d %d", &pid, &ready, &starts) == 3);
        fclose(f);
        *ret_pid = pid;
        *ret_starts = starts;
}

static uint64_t handles(void) {
        json_t *v = NULL, *p;
        uint64_t n = 0;
        size_t i;

        ASSERT_OK(emu_kernel_dump(T.emu, &v));
        json_array_foreach(json_object_get(v, "processes"), i, p)
                n += json_array_size(json_object_get(p, "handles"));
        json_decref(v);
        return n;
}

int main(void) {
        TeardownFiller *f;
        uint64_t allocs0, frees0, allocs, frees, left = 0, h0;
        int pid, starts, starts0;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        read_state(&pid, &starts0);
        ASSERT_TRUE(pid > 0);
        h0 = handles();
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
        for (unsigned i = 0; i < 120000; i++) {
                int p;

                read_state(&p, &starts);
                if (p == 0)
                        break;
                nanosleep(&(struct timespec) { 0, 1000 * 1000 }, NULL);
        }
        read_state(&pid, &starts);
        ASSERT_TRUE(pid == 0);
        ASSERT_TRUE(starts == starts0);

        /* Every buffer it allocated was freed by svmd, not by its exit. */
        ASSERT_OK(emu_kernel_attach(getenv("KFDEMU_DIR"), &T.emu));
        allocs = test_ioctl_count(&T, "ALLOC_MEMORY_OF_GPU") - allocs0;
        frees = test_ioctl_count(&T, "FREE_MEMORY_OF_GPU") - frees0;
        printf("after the exit: %" PRIu64 " ALLOC, %" PRIu64 " FREE, %" PRIu64 " handles left (%" PRIu64 " before)\n",
               allocs, frees, handles(), h0);
        ASSERT_TRUE(allocs == N_RANGES);
        ASSERT_TRUE(frees == allocs);
        ASSERT_TRUE(handles() <= h0);
        printf("ok\n");
        return 0;
}
