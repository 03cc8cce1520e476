/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Kernel-side state as JSON, for tests that prove nothing leaked: memory use
 * per GPU, every context with its handles and mappings, every buffer with its
 * dma-buf state, armed faults and ioctl counters. Deterministic order (pid,
 * then creation, then handle) so dumps taken before and after compare.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "emu-arena.h"
#include "emu-smi.h"
#include "macro.h"

static json_t *gpu_ids(EmuKernel *k, uint32_t mask) {
        json_t *a = json_array();

        for (uint32_t g = 0; a && g < k->a->n_gpus; g++)
                if (mask & (UINT32_C(1) << g))
                        json_array_append_new(a, json_integer(k->a->gpus[g].gpu_id));
        return a;
}

static int append(json_t *array, json_t *v) {
        if (!v)
                return -ENOMEM;
        return json_array_append_new(array, v) < 0 ? -ENOMEM : 0;
}

static json_t *dump_gpus(EmuKernel *k) {
        json_t *a = json_array();

        for (uint32_t g = 0; a && g < k->a->n_gpus; g++) {
                EmuGpu *gpu = &k->a->gpus[g];

                if (append(a, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                                        "gpu_id", (json_int_t) gpu->gpu_id,
                                        "node", (json_int_t) gpu->node,
                                        "vram_total", (json_int_t) gpu->vram_total,
                                        "vram_limit", (json_int_t) emu_gpu_vram_limit(k->a, gpu),
                                        "vram_used", (json_int_t) gpu->vram_used,
                                        "vram_available", (json_int_t) emu_gpu_available(k->a, gpu),
                                        "gtt_used", (json_int_t) gpu->gtt_used)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

static json_t *dump_handles(EmuKernel *k, uint32_t proc) {
        json_t *a = json_array();

        /* By handle value: GPU order is topology order, and idr order within a GPU. */
        for (uint32_t g = 0; a && g < k->a->n_gpus; g++) {
                uint64_t *bits = emu_idr_bits(k, proc, g);

                for (int64_t id = emu_idr_next(&k->a->idr, bits, 0); id >= 0;
                     id = emu_idr_next(&k->a->idr, bits, (uint32_t) id + 1)) {
                        EmuHandle *h = emu_handles(k, proc, g) + id;
                        EmuBo *bo = h->bo != EMU_NIL ? emu_bo(k, h->bo) : NULL;
                        uint32_t gpu_id = k->a->gpus[g].gpu_id;

                        if (append(a, json_pack("{s:I,s:I,s:I,s:s,s:I,s:I,s:o,s:b,s:I}",
                                                "handle", (json_int_t) ((uint64_t) gpu_id << 32 | (uint64_t) id),
                                                "gpu_id", (json_int_t) gpu_id,
                                                "size", (json_int_t) (bo ? bo->size : 0),
                                                "domain", emu_domain_to_string(bo ? bo->domain : _EMU_DOMAIN_MAX),
                                                "flags", (json_int_t) h->alloc_flags,
                                                "va", (json_int_t) h->va,
                                                "mapped", gpu_ids(k, h->mapped),
                                                "imported", (int) h->imported,
                                                "buffer", (json_int_t) h->bo)) < 0) {
                                json_decref(a);
                                return NULL;
                        }
                }
        }
        return a;
}

static json_t *dump_proc(EmuKernel *k, uint32_t i) {
        EmuProc *p = emu_proc(k, i);
        json_t *vms = json_array(), *policies = json_array();

        for (uint32_t g = 0; vms && policies && g < k->a->n_gpus; g++) {
                if (p->pdd[g].render_file != EMU_NIL)
                        json_array_append_new(vms, json_integer(k->a->gpus[g].gpu_id));
                if (p->pdd[g].policy_set)
                        json_array_append_new(policies,
                                              json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}",
                                                        "gpu_id", (json_int_t) k->a->gpus[g].gpu_id,
                                                        "default_policy", (json_int_t) p->pdd[g].default_policy,
                                                        "alternate_policy", (json_int_t) p->pdd[g].alternate_policy,
                                                        "alternate_aperture_base", (json_int_t) p->pdd[g].alt_base,
                                                        "alternate_aperture_size", (json_int_t) p->pdd[g].alt_size,
                                                        "misc_process_flag", (json_int_t) p->pdd[g].misc_process_flag));
        }
        return json_pack("{s:I,s:b,s:I,s:o*,s:o*,s:b,s:b,s:o*,s:o*}",
                         "pid", (json_int_t) p->pid,
                         "secondary", (int) p->secondary,
                         "context_id", (json_int_t) p->context_id,
                         "vms", vms,
                         "memory_policy", policies,
                         "xnack", (int) p->xnack,
                         "runtime_enabled", (int) p->runtime_enabled,
                         "handles", dump_handles(k, i),
                         "svm", emu_svm_dump(k, i));
}

static int proc_cmp(const void *x, const void *y, void *userdata) {
        EmuKernel *k = userdata;
        EmuProc *a = emu_proc(k, *(const uint32_t *) x), *b = emu_proc(k, *(const uint32_t *) y);

        if (a->pid != b->pid)
                return a->pid < b->pid ? -1 : 1;
        return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int dump_locked(EmuKernel *k, json_t **ret) {
        EmuArena *a = k->a;
        json_auto_t *root = NULL;
        json_t *procs, *bufs, *faults, *ioctls, *gpus;
        _cleanup_free_ uint32_t *order = NULL;
        uint32_t n = 0;
        char version[32];

        snprintf(version, sizeof(version), "%u.%u", a->kfd_major, a->kfd_minor);
        gpus = dump_gpus(k);
        root = json_pack("{s:s,s:s,s:s,s:o*,s:{s:I,s:I,s:I,s:I,s:I},s:[],s:[],s:[],s:{},s:I}",
                         "kfd_version", version,
                         "topology", a->topo.name,
                         "profile", emu_profile_to_string(a->profile) ?: "none",
                         "gpus", gpus,
                         "system", "limit", (json_int_t) a->system_limit, "used", (json_int_t) a->system_used,
                         "ttm_limit", (json_int_t) a->ttm_limit, "ttm_used", (json_int_t) a->ttm_used,
                         "reserved_for_pt", (json_int_t) a->reserved_for_pt,
                         "processes", "buffers", "faults", "ioctls",
                         "ioctls_unknown", (json_int_t) a->ioctl_unknown);
        if (!root)
                return -ENOMEM;
        procs = json_object_get(root, "processes");
        bufs = json_object_get(root, "buffers");
        faults = json_object_get(root, "faults");
        ioctls = json_object_get(root, "ioctls");

        order = calloc(MAX(a->max_processes, 1U), sizeof(uint32_t));
        if (!order)
                return -ENOMEM;
        for (uint32_t i = 0; i < a->max_processes; i++)
                if (emu_proc(k, i)->in_use)
                        order[n++] = i;
        qsort_r(order, n, sizeof(uint32_t), proc_cmp, k);
        for (uint32_t i = 0; i < n; i++)
                if (append(procs, dump_proc(k, order[i])) < 0)
                        return -ENOMEM;

        for (uint32_t i = 0; i < a->bo_high_water; i++) {
                EmuBo *bo = emu_bo(k, i);
                bool open = false;

                if (!bo->in_use)
                        continue;
                if (bo->exported) {
                        char path[PATH_MAX];
                        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
                        int fd;

                        if (emu_bo_backing_path(k, i, path, sizeof(path)) == 0 &&
                            (fd = emu_sys_open(path, O_RDWR | O_CLOEXEC, 0)) >= 0) {
                                open = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
                                emu_sys_close(fd);
                        }
                }
                if (append(bufs, json_pack("{s:I,s:I,s:I,s:s,s:I,s:I,s:b,s:b}",
                                           "id", (json_int_t) i,
                                           "gpu_id", (json_int_t) a->gpus[bo->gpu].gpu_id,
                                           "size", (json_int_t) bo->size,
                                           "domain", emu_domain_to_string(bo->domain),
                                           "flags", (json_int_t) bo->alloc_flags,
                                           "handles", (json_int_t) bo->handles,
                                           "exported", (int) bo->exported,
                                           "dmabuf_open", (int) open)) < 0)
                        return -ENOMEM;
        }

        for (size_t i = 0; i < EMU_MAX_FAULTS; i++) {
                EmuFault *f = &a->faults[i];

                if (!f->in_use)
                        continue;
                if (append(faults, json_pack("{s:s,s:I,s:I}", "spec", f->spec,
                                             "seen", (json_int_t) f->seen,
                                             "fired", (json_int_t) f->fired)) < 0)
                        return -ENOMEM;
        }

        for (uint32_t nr = 0; nr < EMU_IOCTL_NR_MAX; nr++) {
                const char *name = emu_ioctl_name(nr);
                uint64_t c = __atomic_load_n(&a->ioctl_count[nr], __ATOMIC_RELAXED);

                if (name && c > 0 && json_object_set_new(ioctls, name, json_integer((json_int_t) c)) < 0)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(root);
        return 0;
}

int emu_kernel_dump(EmuKernel *k, json_t **ret) {
        int r;

        emu_check_fork(k);
        r = emu_lock(k);
        if (r < 0)
                return r;
        emu_reap(k);
        r = dump_locked(k, ret);
        if (r >= 0) {
                json_t *smi = emu_smi_dump(k);
                if (smi)
                        json_object_set_new(*ret, "smi", smi);
        }
        emu_unlock(k);
        return r;
}
