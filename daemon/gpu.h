/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* One GPU of the node as the daemon sees it: topology facts plus svmd's own accounting. */

#include <stdbool.h>
#include <stdint.h>

#include "kfd-topology.h"

typedef struct Manager Manager;

/*
 * Every GPU of manager m whose bit (Gpu.index) is set in mask, in index order:
 *         Gpu *g;
 *         FOREACH_GPU_IN_MASK(g, m, mask)
 *                 ids[n++] = g->gpu_id;
 * Needs manager.h.
 */
#define FOREACH_GPU_IN_MASK(g, m, mask)                                                         \
        for (Gpu *const *_gp = (m)->gpus; _gp < (m)->gpus + (m)->n_gpus && ((g) = *_gp, true); _gp++) \
                if (!((mask) & (UINT64_C(1) << (g)->index))) {} else

typedef struct Gpu {
        Manager *manager;
        unsigned index;                 /* bit in Range mapping masks */
        const KfdGpu *kfd;              /* owned by the KfdDevice */
        uint32_t gpu_id;
        char *path;                     /* /org/svmd1/gpu/<gpu_id> */

        uint64_t vram_allocated;        /* VRAM ranges homed here */
        uint64_t gtt_allocated;         /* GTT and host ranges homed here */
        uint64_t bytes_mapped;          /* bytes of ranges mapped into this GPU's VM */

        /* The kernel's AVAILABLE_MEMORY at the last reading, and svmd's own VRAM then. */
        uint64_t available_read;
        uint64_t allocated_at_read;
        uint64_t available_read_usec;   /* CLOCK_MONOTONIC of the reading; 0: none yet */
        bool resetting;                 /* between the kernel's pre- and post-reset events (health.c) */
        uint32_t resets;                /* resets seen since svmd started */
} Gpu;

/* How old the free VRAM that ListGpus and the Gpu properties report may be (docs/architecture.md, "Free VRAM"). */
#define GPU_AVAILABLE_MAX_AGE_USEC UINT64_C(1000000)

int gpu_new(Gpu **ret, Manager *m, unsigned index, const KfdGpu *kfd);
Gpu *gpu_free(Gpu *g);

/*
 * Free VRAM for new allocations (docs/architecture.md, "Free VRAM"): the kernel's AVAILABLE_MEMORY,
 * read again when the last reading is older than max_age_usec (0: always; UINT64_MAX: only if there
 * is none), moved by what svmd allocated and freed since; before interface 1.9, total − svmd's use.
 */
int gpu_vram_available(Gpu *g, uint64_t max_age_usec, uint64_t *ret);

/* Bit mask → "0x3a1f, 0x3a20" for messages. */
char *gpu_mask_to_string(Manager *m, uint64_t mask, char *buf, size_t len);
