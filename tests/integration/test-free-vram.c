/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Free VRAM (docs/architecture.md, "Free VRAM"): svmd reads the kernel's AVAILABLE_MEMORY at start,
 * for ListGpus at most once a second per GPU, and for an allocation only when its own estimate
 * would refuse it. Checked against another process's allocations on the same emulated GPUs (this
 * test's own KFD context, under svmd-harness --emulate-command):
 *   - Allocate+Free of VRAM issue no AVAILABLE_MEMORY at all; ListGpus at most one per GPU a second;
 *   - svmd's own allocation moves VramFree at once, by its size;
 *   - another process's allocation shows within a second;
 *   - an estimate that is too high: the kernel refuses the ALLOC, OutOfMemory, nothing changed;
 *   - an estimate that is too low: svmd asks the kernel again and the allocation succeeds.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kfd-device.h"
#include "kfd-ioctl.h"
#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define OTHER_VA UINT64_C(0x600000000000)

static TestContext T;
/* In a constant initializer: the uapi's (1 << 31) is not shifted at run time. */
static const uint32_t vram_writable = KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE;
static uint32_t gpu;
static size_t n_gpus;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* ListGpus' free VRAM of GPU id; the first GPU's id into gpu if it is 0. */
static uint64_t list_free(uint32_t id) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *target, *name;
        uint64_t total, used, avail, found = UINT64_MAX;
        uint32_t g, node;
        uint16_t minor;
        int r;

        r = test_call(T.bus, "ListGpus", &error, &reply, "");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(uusstttq)"));
        n_gpus = 0;
        while ((r = sd_bus_message_read(reply, "(uusstttq)", &g, &node, &target, &name, &total, &used, &avail,
                                        &minor)) > 0) {
                if (gpu == 0)
                        gpu = g;
                if (g == (id ?: gpu))
                        found = avail;
                n_gpus++;
        }
        ASSERT_OK(r);
        ASSERT_TRUE(found != UINT64_MAX);
        return found;
}

static int try_allocate(uint64_t size, uint64_t *ret_id, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        uint64_t va;
        int r;

        r = test_call(T.bus, "Allocate", error, &reply, "tusa{sv}", size, gpu, "vram", 0);
        if (r < 0)
                return r;
        ASSERT_OK(sd_bus_message_read(reply, "tt", ret_id, &va));
        return 0;
}

static void test_no_reads_on_the_call_path(void) {
        uint64_t before, after, t0, elapsed, f0, f1, id;

        (void) list_free(0);
        before = test_ioctl_count(&T, "AVAILABLE_MEMORY");
        for (int i = 0; i < 50; i++)
                test_free(T.bus, test_allocate(T.bus, 64 * MiB, gpu, "vram", false, NULL));
        after = test_ioctl_count(&T, "AVAILABLE_MEMORY");
        printf("50 VRAM Allocate+Free: %" PRIu64 " AVAILABLE_MEMORY ioctls\n", after - before);
        ASSERT_UEQ(after, before);

        t0 = now_usec();
        before = test_ioctl_count(&T, "AVAILABLE_MEMORY");
        for (int i = 0; i < 200; i++)
                (void) list_free(0);
        after = test_ioctl_count(&T, "AVAILABLE_MEMORY");
        elapsed = now_usec() - t0;
        printf("200 ListGpus in %.2f s: %" PRIu64 " AVAILABLE_MEMORY ioctls for %zu GPUs\n", elapsed / 1e6,
               after - before, n_gpus);
        ASSERT_TRUE(after - before <= n_gpus * (elapsed / 1000000 + 2));

        /* svmd's own allocation moves the figure at once, by its size. */
        f0 = list_free(0);
        id = test_allocate(T.bus, 1 * GiB, gpu, "vram", false, NULL);
        f1 = list_free(0);
        ASSERT_UEQ(f0 - f1, 1 * GiB);
        test_free(T.bus, id);
        ASSERT_UEQ(list_free(0), f0);
}

static void test_other_process(void) {
        _cleanup_free_ char *usage_before = NULL, *usage_after = NULL, *ranges_before = NULL, *ranges_after = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        KfdDevice *kdev = NULL;
        uint64_t h1, h2, f0, f1, id;
        int kfd, r;

        ASSERT_OK(kfd_device_new(&kdev, NULL));
        kfd = kfd_device_get_fd(kdev);

        /* Another process takes 100 GiB: ListGpus shows it within a second. */
        f0 = list_free(0);
        ASSERT_OK(kfd_alloc(kfd, OTHER_VA, 100 * GiB, gpu, vram_writable, 0, &h1, NULL));
        usleep(1100 * 1000);
        f1 = list_free(0);
        printf("free VRAM %" PRIu64 " MiB → %" PRIu64 " MiB after another process took 100 GiB\n", f0 / MiB,
               f1 / MiB);
        ASSERT_TRUE(f0 - f1 >= 100 * GiB);

        /* It takes 80 GiB more; svmd's estimate, read a moment ago, still says f1 is free. The
         * kernel refuses svmd's ALLOC: OutOfMemory, nothing changed. */
        ASSERT_OK(kfd_alloc(kfd, OTHER_VA + 128 * GiB, 80 * GiB, gpu, vram_writable, 0, &h2, NULL));
        usage_before = test_usage(T.bus);
        ranges_before = test_list_ranges(T.bus);
        ASSERT_TRUE(f1 > 40 * GiB);
        r = try_allocate(40 * GiB, &id, &error);
        ASSERT_EQ(r, -ENOMEM);
        ASSERT_STREQ(error.name, SVMD_ERROR_OUT_OF_MEMORY);
        printf("estimate too high: %s: %s\n", error.name, error.message);
        sd_bus_error_free(&error);
        usage_after = test_usage(T.bus);
        ranges_after = test_list_ranges(T.bus);
        ASSERT_STREQ(usage_after, usage_before);
        ASSERT_STREQ(ranges_after, ranges_before);

        /* svmd reads the 180 GiB in use; then the other process frees it all. svmd's estimate is now
         * too low, so it asks the kernel again before refusing, and 150 GiB fit. */
        usleep(1100 * 1000);
        ASSERT_TRUE(list_free(0) < 20 * GiB);
        ASSERT_OK(kfd_free(kfd, h1));
        ASSERT_OK(kfd_free(kfd, h2));
        r = try_allocate(150 * GiB, &id, &error);
        ASSERT_BUS_OK(r, &error);
        printf("estimate too low: 150 GiB allocated after a second reading\n");
        test_free(T.bus, id);

        kfd_device_free(kdev);
}

int main(void) {
        test_setup(&T);
        test_no_reads_on_the_call_path();
        test_other_process();
        test_teardown(&T);
        return 0;
}
