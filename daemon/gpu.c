/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <systemd/sd-event.h>

#include "bus-util.h"
#include "executor.h"
#include "gpu.h"
#include "kfd-ioctl.h"
#include "manager.h"
#include "svmd-protocol.h"

int gpu_new(Gpu **ret, Manager *m, unsigned index, const KfdGpu *kfd) {
        _cleanup_free_ Gpu *g = NULL;
        int r;

        g = calloc(1, sizeof(Gpu));
        if (!g)
                return -ENOMEM;
        *g = (Gpu) {
                .manager = m,
                .index = index,
                .kfd = kfd,
                .gpu_id = kfd->gpu_id,
        };
        r = bus_path_from_id(SVMD_GPU_PATH_PREFIX, kfd->gpu_id, &g->path);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(g);
        return 0;
}

Gpu *gpu_free(Gpu *g) {
        if (!g)
                return NULL;
        free(g->path);
        free(g);
        return NULL;
}

/* Read AVAILABLE_MEMORY unless the last reading is younger than max_age_usec. */
static int read_available(Gpu *g, uint64_t max_age_usec) {
        Manager *m = g->manager;
        uint64_t now = 0, avail;
        bool offload;
        int r;

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        if (g->available_read_usec != 0 && now >= g->available_read_usec &&
            now - g->available_read_usec < max_age_usec)
                return 0;
        /* In a request's job on the executor: the kernel takes the process lock for it, which
         * another request's ALLOC may hold for milliseconds (executor.h). On the loop itself
         * (ListGpus, properties) it runs here, at most once a second per GPU. */
        offload = job_set_offload(true);
        r = kfd_available_memory(m->kfd_fd, g->gpu_id, &avail);
        (void) job_set_offload(offload);
        if (r < 0)
                return r;
        g->available_read = avail;
        g->allocated_at_read = g->vram_allocated;
        g->available_read_usec = now ?: 1;
        return 0;
}

int gpu_vram_available(Gpu *g, uint64_t max_age_usec, uint64_t *ret) {
        Manager *m = g->manager;
        uint64_t total = g->kfd->vram_size, a;
        int r;

        if (!kfd_device_has_feature(m->kfd, KFD_FEATURE_AVAILABLE_MEMORY)) {
                /* Before 1.9 the kernel cannot tell; what we allocated ourselves is the best we know. */
                *ret = total > g->vram_allocated ? total - g->vram_allocated : 0;
                return 0;
        }
        r = read_available(g, max_age_usec);
        if (r < 0)
                return r;
        /* The reading, less what svmd allocated since, plus what it freed. */
        a = g->available_read;
        if (g->vram_allocated >= g->allocated_at_read) {
                uint64_t more = g->vram_allocated - g->allocated_at_read;

                a = a > more ? a - more : 0;
        } else
                a += g->allocated_at_read - g->vram_allocated;
        *ret = MIN(a, total);
        return 0;
}

char *gpu_mask_to_string(Manager *m, uint64_t mask, char *buf, size_t len) {
        size_t o = 0;
        Gpu *g;

        buf[0] = '\0';
        FOREACH_GPU_IN_MASK(g, m, mask) {
                if (o >= len)
                        break;
                int n = snprintf(buf + o, len - o, "%s0x%x", o > 0 ? ", " : "", g->gpu_id);
                if (n < 0)
                        break;
                o += (size_t) n;
        }
        return buf;
}
