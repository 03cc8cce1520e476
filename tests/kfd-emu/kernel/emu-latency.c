/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The `realistic` latency profile: what each ioctl costs on real hardware,
 * in one table. Sources (shared/reference/perf-anchors.md §1.1):
 *
 *  - kfdtest MMBench on a Rembrandt APU, system memory, per buffer
 *    (Shikai Guo, amd-gfx 2022-07-13):
 *        size     alloc     map one   unmap one   free
 *        4 KiB    26.6 µs   10.4 µs   5.2 µs      12.4 µs
 *        64 KiB   42.9 µs   6.6 µs    4.0 µs      15.1 µs
 *        2 MiB    313 µs    12.6 µs   4.4 µs      70 µs
 *        32 MiB   4.42 ms   130 µs    21.6 µs     0.93 ms
 *        1 GiB    132 ms    2.74 ms   0.58 ms     39 ms
 *  - tinygrad ioctl traces: 2 MiB VRAM alloc 0.21–0.24 ms (RX 6000, Steam
 *    Deck), 4 KiB 0.02–0.04 ms, ACQUIRE_VM 0.17 ms, SVM on 2.7 MiB 2.27 ms.
 *
 * Sizes between the points are interpolated log-log, sizes beyond the last
 * point scale linearly. Mapping cost is per device ("linear with the number
 * of GPUs"). Where the time goes relative to p->mutex follows
 * kfd_ioctl_map_memory_to_gpu: page-table updates per device under the
 * mutex, then the fence wait and the per-device TLB flush after dropping it;
 * we split the per-device cost half and half between the two.
 */

#include <errno.h>
#include <math.h>
#include <time.h>

#include "emu-arena.h"
#include "macro.h"

typedef struct CostPoint {
        double size;    /* bytes */
        double us;      /* microseconds */
} CostPoint;

#define KiB 1024.0
#define MiB (1024.0 * KiB)
#define GiB (1024.0 * MiB)

static const CostPoint sysmem_alloc[] = {
        { 4 * KiB, 26.6 }, { 64 * KiB, 42.9 }, { 2 * MiB, 313 }, { 32 * MiB, 4420 }, { 1 * GiB, 132000 },
};
/* VRAM: no CPU zeroing of pages; tinygrad's 4 KiB and 2 MiB points, then the system curve × 220/313. */
static const CostPoint vram_alloc[] = {
        { 4 * KiB, 30 }, { 2 * MiB, 220 }, { 32 * MiB, 3107 }, { 1 * GiB, 92780 },
};
static const CostPoint map_one[] = {
        { 4 * KiB, 10.4 }, { 64 * KiB, 6.6 }, { 2 * MiB, 12.6 }, { 32 * MiB, 130 }, { 1 * GiB, 2740 },
};
static const CostPoint unmap_one[] = {
        { 4 * KiB, 5.2 }, { 64 * KiB, 4.0 }, { 2 * MiB, 4.4 }, { 32 * MiB, 21.6 }, { 1 * GiB, 580 },
};
static const CostPoint free_cost[] = {
        { 4 * KiB, 12.4 }, { 64 * KiB, 15.1 }, { 2 * MiB, 70 }, { 32 * MiB, 930 }, { 1 * GiB, 39000 },
};
static const double acquire_vm_us = 170;
static const double svm_base_us = 50, svm_us_per_mib = 820;    /* 2.27 ms for 2.7 MiB */
static const double import_us = 15, export_us = 10;

static double interp(const CostPoint *t, size_t n, double size) {
        if (size <= t[0].size)
                return t[0].us;
        for (size_t i = 1; i < n; i++)
                if (size <= t[i].size) {
                        double f = log(size / t[i - 1].size) / log(t[i].size / t[i - 1].size);
                        return exp(log(t[i - 1].us) + f * (log(t[i].us) - log(t[i - 1].us)));
                }
        return t[n - 1].us * size / t[n - 1].size;
}

#define INTERP(t, s) interp((t), ELEMENTSOF(t), (double) (s))

static uint64_t ns(double us) {
        return (uint64_t) (us * 1000.0);
}

EmuCost emu_cost(uint32_t nr, uint32_t domain, uint64_t size, uint32_t n_devices) {
        double per;

        switch (nr) {
        case 0x15: /* ACQUIRE_VM */
                return (EmuCost) { .locked_ns = ns(acquire_vm_us) };
        case 0x16: /* ALLOC_MEMORY_OF_GPU */
                if (domain == EMU_DOMAIN_VRAM)
                        return (EmuCost) { .locked_ns = ns(INTERP(vram_alloc, size)) };
                if (domain == EMU_DOMAIN_DOORBELL || domain == EMU_DOMAIN_MMIO)
                        return (EmuCost) { .locked_ns = ns(sysmem_alloc[0].us) };
                return (EmuCost) { .locked_ns = ns(INTERP(sysmem_alloc, size)) };
        case 0x17: /* FREE_MEMORY_OF_GPU */
                return (EmuCost) { .locked_ns = ns(INTERP(free_cost, size)) };
        case 0x18: /* MAP_MEMORY_TO_GPU */
                per = INTERP(map_one, size);
                return (EmuCost) { .locked_ns = ns(per * n_devices / 2), .unlocked_ns = ns(per * n_devices / 2) };
        case 0x19: /* UNMAP_MEMORY_FROM_GPU */
                per = INTERP(unmap_one, size);
                return (EmuCost) { .locked_ns = ns(per * n_devices / 2), .unlocked_ns = ns(per * n_devices / 2) };
        case 0x1D: /* IMPORT_DMABUF */
                return (EmuCost) { .locked_ns = ns(import_us) };
        case 0x20: /* SVM: under the mmap lock and svms->lock, not p->mutex */
                return (EmuCost) { .unlocked_ns = ns(svm_base_us + svm_us_per_mib * (double) size / MiB) };
        case 0x24: /* EXPORT_DMABUF */
                return (EmuCost) { .locked_ns = ns(export_us) };
        default:
                return (EmuCost) {};
        }
}

void emu_sleep_until(const struct timespec *start, uint64_t delay_ns) {
        struct timespec t;

        if (delay_ns == 0)
                return;
        t.tv_sec = start->tv_sec + (time_t) (delay_ns / 1000000000u);
        t.tv_nsec = start->tv_nsec + (long) (delay_ns % 1000000000u);
        if (t.tv_nsec >= 1000000000L) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000L;
        }
        /* Absolute deadlines: time spent computing counts, and signals do not stretch the delay. */
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
                ;
}
