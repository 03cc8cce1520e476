/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The KFD ioctls: kfd_chardev.c's dispatcher (kfd_ioctl) and handlers, with
 * the memory work of amdgpu_amdkfd_gpuvm.c folded in. Each handler names the
 * kernel function whose checks it reproduces, in the kernel's order.
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "emu-arena.h"
#include "emu-smi.h"
#include "macro.h"

typedef struct EmuCall {
        EmuKernel *k;
        uint32_t proc;          /* the fd's context */
        uint32_t file;
        size_t size;            /* max(caller's size, kernel's struct size) */
        EmuFault *fault;        /* SVM: an armed fault that fires part-way */
        EmuCost cost;           /* realistic profile: what this call costs */
} EmuCall;

typedef int (*emu_handler_t)(EmuCall *c, void *data);

typedef struct EmuIoctl {
        const char *name;
        uint32_t size;          /* the kernel's struct size */
        uint32_t dir;           /* the kernel's direction bits: its cmd wins over the caller's */
        uint32_t min_minor;     /* first interface minor version with this nr */
        int32_t gpu_off;        /* where the call's gpu_id is, for faults; -1 none */
        bool gpu_in_handle;     /* gpu_off points at a handle: gpu_id = handle >> 32 */
        bool pmutex;            /* the handler runs under p->mutex */
        emu_handler_t handler;
} EmuIoctl;

static int ioctl_get_version(EmuCall *c, void *data);
static int ioctl_get_clock_counters(EmuCall *c, void *data);
static int ioctl_set_scratch_backing_va(EmuCall *c, void *data);
static int ioctl_get_tile_config(EmuCall *c, void *data);
static int ioctl_set_memory_policy(EmuCall *c, void *data);
static int ioctl_get_process_apertures(EmuCall *c, void *data);
static int ioctl_get_process_apertures_new(EmuCall *c, void *data);
static int ioctl_acquire_vm(EmuCall *c, void *data);
static int ioctl_alloc(EmuCall *c, void *data);
static int ioctl_free(EmuCall *c, void *data);
static int ioctl_map(EmuCall *c, void *data);
static int ioctl_unmap(EmuCall *c, void *data);
static int ioctl_get_dmabuf_info(EmuCall *c, void *data);
static int ioctl_import_dmabuf(EmuCall *c, void *data);
static int ioctl_svm(EmuCall *c, void *data);
static int ioctl_set_xnack_mode(EmuCall *c, void *data);
static int ioctl_available_memory(EmuCall *c, void *data);
static int ioctl_export_dmabuf(EmuCall *c, void *data);
static int ioctl_runtime_enable(EmuCall *c, void *data);
static int ioctl_create_process(EmuCall *c, void *data);
static int ioctl_smi_events(EmuCall *c, void *data);

#define R _IOC_READ
#define W _IOC_WRITE
#define RW (_IOC_READ | _IOC_WRITE)

/* amdkfd_ioctls[] of kfd_chardev.c. Entries without a handler exist in the kernel but are not emulated. */
static const EmuIoctl ioctl_table[EMU_IOCTL_NR_MAX] = {
        [0x01] = { "GET_VERSION", 8, R, 0, -1, false, false, ioctl_get_version },
        [0x02] = { "CREATE_QUEUE", 96, RW, 0, -1 },
        [0x03] = { "DESTROY_QUEUE", 8, RW, 0, -1 },
        [0x04] = { "SET_MEMORY_POLICY", 32, W, 0, 16, false, true, ioctl_set_memory_policy },
        [0x05] = { "GET_CLOCK_COUNTERS", 40, RW, 0, 32, false, false, ioctl_get_clock_counters },
        [0x06] = { "GET_PROCESS_APERTURES", 400, R, 0, -1, false, true, ioctl_get_process_apertures },
        [0x07] = { "UPDATE_QUEUE", 24, W, 0, -1 },
        [0x08] = { "CREATE_EVENT", 32, RW, 0, -1 },
        [0x09] = { "DESTROY_EVENT", 8, W, 0, -1 },
        [0x0A] = { "SET_EVENT", 8, W, 0, -1 },
        [0x0B] = { "RESET_EVENT", 8, W, 0, -1 },
        [0x0C] = { "WAIT_EVENTS", 24, RW, 0, -1 },
        [0x0D] = { "DBG_REGISTER", 8, W, 0, -1 },
        [0x0E] = { "DBG_UNREGISTER", 8, W, 0, -1 },
        [0x0F] = { "DBG_ADDRESS_WATCH", 16, W, 0, -1 },
        [0x10] = { "DBG_WAVE_CONTROL", 16, W, 0, -1 },
        [0x11] = { "SET_SCRATCH_BACKING_VA", 16, RW, 0, 8, false, true, ioctl_set_scratch_backing_va },
        [0x12] = { "GET_TILE_CONFIG", 40, RW, 0, 24, false, false, ioctl_get_tile_config },
        [0x13] = { "SET_TRAP_HANDLER", 24, W, 0, -1 },
        [0x14] = { "GET_PROCESS_APERTURES_NEW", 16, RW, 0, -1, false, true, ioctl_get_process_apertures_new },
        [0x15] = { "ACQUIRE_VM", 8, W, 0, 4, false, true, ioctl_acquire_vm },
        [0x16] = { "ALLOC_MEMORY_OF_GPU", 40, RW, 0, 32, false, true, ioctl_alloc },
        [0x17] = { "FREE_MEMORY_OF_GPU", 8, W, 0, 0, true, true, ioctl_free },
        [0x18] = { "MAP_MEMORY_TO_GPU", 24, RW, 0, -1, false, true, ioctl_map },
        [0x19] = { "UNMAP_MEMORY_FROM_GPU", 24, RW, 0, -1, false, true, ioctl_unmap },
        [0x1A] = { "SET_CU_MASK", 16, W, 0, -1 },
        [0x1B] = { "GET_QUEUE_WAVE_STATE", 24, RW, 0, -1 },
        [0x1C] = { "GET_DMABUF_INFO", 32, RW, SVMD_KFD_MINOR_DMABUF_IMPORT, -1, false, false, ioctl_get_dmabuf_info },
        [0x1D] = { "IMPORT_DMABUF", 24, RW, SVMD_KFD_MINOR_DMABUF_IMPORT, 16, false, true, ioctl_import_dmabuf },
        [0x1E] = { "ALLOC_QUEUE_GWS", 16, RW, SVMD_KFD_MINOR_DMABUF_IMPORT, -1 },
        [0x1F] = { "SMI_EVENTS", 8, RW, 3, -1, false, false, ioctl_smi_events },
        [0x20] = { "SVM", 24, RW, SVMD_KFD_MINOR_SVM, -1, false, false, ioctl_svm },
        [0x21] = { "SET_XNACK_MODE", 4, RW, SVMD_KFD_MINOR_SVM, -1, false, true, ioctl_set_xnack_mode },
        [0x22] = { "CRIU_OP", 56, RW, 7, -1 },
        [0x23] = { "AVAILABLE_MEMORY", 16, RW, SVMD_KFD_MINOR_AVAILABLE_MEMORY, 8, false, true, ioctl_available_memory },
        [0x24] = { "EXPORT_DMABUF", 16, RW, SVMD_KFD_MINOR_EXPORT_DMABUF, 0, true, true, ioctl_export_dmabuf },
        [0x25] = { "RUNTIME_ENABLE", 16, RW, SVMD_KFD_MINOR_RUNTIME_ENABLE, -1, false, true, ioctl_runtime_enable },
        [0x26] = { "DBG_TRAP", 48, RW, SVMD_KFD_MINOR_RUNTIME_ENABLE, -1 },
        [0x27] = { "CREATE_PROCESS", 0, 0, SVMD_KFD_MINOR_CREATE_PROCESS, -1, false, false, ioctl_create_process },
};

#undef R
#undef W
#undef RW

const char *emu_ioctl_name(uint32_t nr) {
        return nr < EMU_IOCTL_NR_MAX ? ioctl_table[nr].name : NULL;
}

int emu_ioctl_nr_from_name(const char *name) {
        if (!name)
                return -EINVAL;
        if (strncmp(name, "AMDKFD_IOC_", 11) == 0)
                name += 11;
        for (uint32_t nr = 0; nr < EMU_IOCTL_NR_MAX; nr++)
                if (ioctl_table[nr].name && strcasecmp(name, ioctl_table[nr].name) == 0)
                        return (int) nr;
        /* The names libhsakmt and the UAPI header use for the same numbers. */
        if (strcasecmp(name, "ALLOC") == 0)
                return 0x16;
        if (strcasecmp(name, "FREE") == 0)
                return 0x17;
        if (strcasecmp(name, "MAP") == 0)
                return 0x18;
        if (strcasecmp(name, "UNMAP") == 0)
                return 0x19;
        if (strcasecmp(name, "GET_AVAILABLE_MEMORY") == 0)
                return 0x23;
        return -ENOENT;
}

static EmuProc *call_proc(EmuCall *c) {
        return emu_proc(c->k, c->proc);
}

/* kfd_bind_process_to_device(): a device without an acquired VM cannot be used. */
static int bind(EmuCall *c, int g) {
        return call_proc(c)->pdd[g].render_file == EMU_NIL ? -ENODEV : 0;
}

/* ------------------------------------------------------------------------ */

static int ioctl_get_version(EmuCall *c, void *data) {
        struct kfd_ioctl_get_version_args *args = data;

        /* kfd_ioctl_get_version: the interface version this emulated kernel implements. */
        args->major_version = c->k->a->kfd_major;
        args->minor_version = c->k->a->kfd_minor;
        return 0;
}

/*
 * The opening of most handlers: the emulator's lock, then kfd_process_device_data_by_id(). The
 * GPU's index with the lock held, or a negative errno (-EINVAL: unknown gpu_id) without it.
 */
static int lock_gpu(EmuCall *c, uint32_t gpu_id) {
        int g = emu_lock(c->k);

        if (g < 0)
                return g;
        g = emu_gpu_index(c->k, gpu_id);
        if (g < 0) {
                emu_unlock(c->k);
                return -EINVAL;
        }
        return g;
}

/* The same for handlers that need nothing else locked: the GPU's index, the lock released. */
static int gpu_index_locked(EmuCall *c, uint32_t gpu_id) {
        int g = lock_gpu(c, gpu_id);

        if (g >= 0)
                emu_unlock(c->k);
        return g;
}

static int ioctl_get_clock_counters(EmuCall *c, void *data) {
        struct kfd_ioctl_get_clock_counters_args *args = data;
        struct timespec ts;
        int g;

        /* kfd_ioctl_get_clock_counters: an unknown gpu_id is no error, its GPU counter reads 0. */
        g = gpu_index_locked(c, args->gpu_id);
        if (g < 0 && g != -EINVAL)
                return g;
        args->gpu_clock_counter = g >= 0 ? emu_kernel_gpu_clock() : 0;
        /* ktime_get_raw_ns() and ktime_get_boottime_ns(), both in ns: system_clock_freq is 1 GHz. */
        (void) clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
        args->cpu_clock_counter = (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
        (void) clock_gettime(CLOCK_BOOTTIME, &ts);
        args->system_clock_counter = (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
        args->system_clock_freq = 1000000000ULL;
        return 0;
}

static int ioctl_set_scratch_backing_va(EmuCall *c, void *data) {
        struct kfd_ioctl_set_scratch_backing_va_args *args = data;
        EmuKernel *k = c->k;
        int g, r;

        /*
         * kfd_ioctl_set_scratch_backing_va: unknown gpu_id → EINVAL, no VM → ENODEV
         * (kfd_bind_process_to_device), else the VA is kept in qpd.sh_hidden_private_base. Only
         * the no-HWS scheduler writes it to hardware; nothing else is checked.
         */
        g = lock_gpu(c, args->gpu_id);
        if (g < 0)
                return g;
        r = bind(c, g);
        if (r >= 0)
                call_proc(c)->pdd[g].scratch_backing_va = args->va_addr;
        emu_unlock(k);
        return r;
}

/* ARRAY_SIZE(adev->gfx.config.tile_mode_array) and macrotile_mode_array (amdgpu_gfx.h). */
#define EMU_TILE_CONFIGS 32
#define EMU_MACRO_TILE_CONFIGS 16

static int ioctl_get_tile_config(EmuCall *c, void *data) {
        static const uint32_t tiles[EMU_TILE_CONFIGS] = {}, macro[EMU_MACRO_TILE_CONFIGS] = {};
        struct kfd_ioctl_get_tile_config_args *args = data;
        int g;

        /* kfd_ioctl_get_tile_config: unknown gpu_id → EINVAL; no VM needed. */
        g = gpu_index_locked(c, args->gpu_id);
        if (g < 0)
                return g;

        /*
         * amdgpu_amdkfd_get_tile_config(): GB_ADDR_CONFIG and the tiling tables. The emulator's
         * registers read 0 (AMDGPU_INFO READ_MMR_REG, emu-drm.c), and from GFX9 on the kernel leaves
         * the tables and num_banks/num_ranks unset (0) too, so the two sides agree.
         */
        args->gb_addr_config = 0;
        args->num_banks = 0;
        args->num_ranks = 0;
        /* Counts are clamped to the tables, then copied; a bad pointer is EFAULT with the count 0. */
        if (args->num_tile_configs > EMU_TILE_CONFIGS)
                args->num_tile_configs = EMU_TILE_CONFIGS;
        if (emu_copy_to_user(args->tile_config_ptr, tiles, args->num_tile_configs * sizeof(uint32_t)) < 0) {
                args->num_tile_configs = 0;
                return -EFAULT;
        }
        if (args->num_macro_tile_configs > EMU_MACRO_TILE_CONFIGS)
                args->num_macro_tile_configs = EMU_MACRO_TILE_CONFIGS;
        if (emu_copy_to_user(args->macro_tile_config_ptr, macro,
                             args->num_macro_tile_configs * sizeof(uint32_t)) < 0) {
                args->num_macro_tile_configs = 0;
                return -EFAULT;
        }
        return 0;
}

static int ioctl_set_memory_policy(EmuCall *c, void *data) {
        struct kfd_ioctl_set_memory_policy_args *args = data;
        EmuKernel *k = c->k;
        int g, r;

        /* kfd_ioctl_set_memory_policy: policies first, then the device, then bind → ESRCH. */
        if (args->default_policy != KFD_IOC_CACHE_POLICY_COHERENT &&
            args->default_policy != KFD_IOC_CACHE_POLICY_NONCOHERENT)
                return -EINVAL;
        if (args->alternate_policy != KFD_IOC_CACHE_POLICY_COHERENT &&
            args->alternate_policy != KFD_IOC_CACHE_POLICY_NONCOHERENT)
                return -EINVAL;

        g = lock_gpu(c, args->gpu_id);
        if (g < 0)
                return g;
        r = 0;
        if (bind(c, g) < 0)
                r = -ESRCH;
        else {
                EmuPdd *pdd = &call_proc(c)->pdd[g];

                pdd->policy_set = 1;
                pdd->default_policy = args->default_policy;
                pdd->alternate_policy = args->alternate_policy;
                pdd->alt_base = args->alternate_aperture_base;
                pdd->alt_size = args->alternate_aperture_size;
                /* set_memory_policy_args.pad is misc_process_flag from 1.18 on. */
                pdd->misc_process_flag = k->a->kfd_minor >= SVMD_KFD_MINOR_MISC_PROC_FLAG ? args->pad : 0;
        }
        emu_unlock(k);
        return r;
}

static void fill_apertures(EmuKernel *k, uint32_t g, struct kfd_process_device_apertures *ap) {
        /* kfd_init_apertures_v9 (kfd_flat_memory.c). */
        *ap = (struct kfd_process_device_apertures) {
                .lds_base = EMU_LDS_BASE,
                .lds_limit = EMU_APERTURE_LIMIT(EMU_LDS_BASE),
                .scratch_base = EMU_SCRATCH_BASE,
                .scratch_limit = EMU_APERTURE_LIMIT(EMU_SCRATCH_BASE),
                .gpuvm_base = EMU_GPUVM_BASE,
                .gpuvm_limit = EMU_GPUVM_LIMIT,
                .gpu_id = k->a->gpus[g].gpu_id,
        };
}

static int ioctl_get_process_apertures(EmuCall *c, void *data) {
        struct kfd_ioctl_get_process_apertures_args *args = data;
        uint32_t n = MIN(c->k->a->n_gpus, (uint32_t) NUM_OF_SUPPORTED_GPUS);

        /* kfd_ioctl_get_process_apertures: the old fixed array of 7 entries. */
        for (uint32_t g = 0; g < n; g++)
                fill_apertures(c->k, g, &args->process_apertures[g]);
        args->num_of_nodes = n;
        return 0;
}

static int ioctl_get_process_apertures_new(EmuCall *c, void *data) {
        struct kfd_ioctl_get_process_apertures_new_args *args = data;
        EmuKernel *k = c->k;
        _cleanup_free_ struct kfd_process_device_apertures *pa = NULL;
        uint32_t n;

        /* kfd_ioctl_get_process_apertures_new: 0 asks for the count. */
        if (args->num_of_nodes == 0) {
                args->num_of_nodes = k->a->n_gpus;
                return 0;
        }
        n = MIN(args->num_of_nodes, k->a->n_gpus);
        pa = calloc(MAX(n, 1U), sizeof(*pa));
        if (!pa)
                return -ENOMEM;
        for (uint32_t g = 0; g < n; g++)
                fill_apertures(k, g, &pa[g]);
        args->num_of_nodes = n;
        return emu_copy_to_user(args->kfd_process_device_apertures_ptr, pa, (size_t) n * sizeof(*pa));
}

static int ioctl_acquire_vm(EmuCall *c, void *data) {
        struct kfd_ioctl_acquire_vm_args *args = data;
        EmuKernel *k = c->k;
        struct stat st;
        uint32_t kind, fi;
        EmuPdd *pdd;
        int g, r;

        /* kfd_ioctl_acquire_vm: fget() failing is EINVAL, not EBADF. */
        if (emu_sys_fstat((int) args->drm_fd, &st) < 0)
                return -EINVAL;

        g = lock_gpu(c, args->gpu_id);
        if (g < 0)
                return g;
        pdd = &call_proc(c)->pdd[g];
        if (emu_lookup(k, st.st_dev, st.st_ino, &kind, &fi) < 0)
                kind = EMU_FILE_NONE;

        /* kfd_process_device_init_vm: a VM already there — same open file is fine, another is EBUSY. */
        if (pdd->render_file != EMU_NIL) {
                r = kind == EMU_FILE_RENDER && fi == pdd->render_file ? 0 : -EBUSY;
                goto out;
        }
        /* amdgpu_file_to_fpriv: not an amdgpu DRM file. */
        if (kind != EMU_FILE_RENDER) {
                r = -EINVAL;
                goto out;
        }
        /* amdgpu_amdkfd_gpuvm_acquire_process_vm: that VM is already a compute VM. */
        if (emu_file(k, fi)->acq_proc != EMU_NIL) {
                r = -EINVAL;
                goto out;
        }
        emu_file(k, fi)->acq_proc = c->proc;
        emu_file(k, fi)->acq_gpu = (uint32_t) g;
        pdd->render_file = fi;
        c->cost = emu_cost(0x15, 0, 0, 1);
        r = 0;
out:
        emu_unlock(k);
        return r;
}

/* Whether [start, start+len) is backed by mapped pages of this process (hmm_range_fault's view). */
static int user_range_mapped(uint64_t start, uint64_t len) {
        uint64_t s = start & ~(EMU_PAGE_SIZE - 1), e;
        unsigned char vec[256];

        if (__builtin_add_overflow(start, len, &e))
                return -EFAULT;
        while (s < e) {
                uint64_t chunk = MIN(e - s, (uint64_t) sizeof(vec) * EMU_PAGE_SIZE);

                /* mincore fails with ENOMEM for any unmapped page in the range. */
                if (mincore((void *) (uintptr_t) s, chunk, vec) < 0)
                        return -EFAULT;
                s += chunk;
        }
        return 0;
}

/*
 * What amdgpu_amdkfd_reserve_mem_limit() charges, from the allocation flags, in its order: GTT
 * first, then VRAM, then USERPTR. This is not the order that picks the domain (VRAM first), so a
 * VRAM|GTT buffer lives in VRAM and is charged as GTT. DOORBELL and MMIO_REMAP are charged nothing.
 */
static EmuDomain charge_of(uint32_t flags) {
        if (flags & KFD_IOC_ALLOC_MEM_FLAGS_GTT)
                return EMU_DOMAIN_GTT;
        if (flags & KFD_IOC_ALLOC_MEM_FLAGS_VRAM)
                return EMU_DOMAIN_VRAM;
        if (flags & KFD_IOC_ALLOC_MEM_FLAGS_USERPTR)
                return EMU_DOMAIN_USERPTR;
        return EMU_DOMAIN_DOORBELL;
}

static bool reserve_fits(EmuKernel *k, EmuDomain charge, int g, uint64_t size) {
        EmuArena *a = k->a;

        /*
         * amdgpu_amdkfd_reserve_mem_limit() on a dGPU: GTT counts against both the system limit and
         * the TTM limit (half of RAM), USERPTR against the system limit only, VRAM against the GPU's
         * VRAM less the page-table estimate (emu_gpu_vram_limit()). The kernel refuses with -ENOMEM.
         */
        switch (charge) {
        case EMU_DOMAIN_VRAM:
                return a->gpus[g].vram_used + size <= emu_gpu_vram_limit(a, &a->gpus[g]);
        case EMU_DOMAIN_GTT:
                return a->system_used + size <= a->system_limit && a->ttm_used + size <= a->ttm_limit;
        case EMU_DOMAIN_USERPTR:
                return a->system_used + size <= a->system_limit;
        default:
                return true;
        }
}

static uint64_t gem_offset(uint32_t bo) {
        return EMU_GEM_OFFSET_BASE + ((uint64_t) bo << EMU_GEM_WINDOW_SHIFT);
}

static int ioctl_alloc(EmuCall *c, void *data) {
        struct kfd_ioctl_alloc_memory_of_gpu_args *args = data;
        EmuKernel *k = c->k;
        EmuArena *a = k->a;
        uint32_t flags = args->flags, domain, bo_index, idr;
        uint64_t size, span;
        EmuProc *p;
        EmuBo *bo;
        EmuHandle *h;
        int g, r;

        /* kfd_ioctl_alloc_memory_of_gpu, in its order. */
        if (args->size == 0)
                return -EINVAL;

        r = emu_lock(k);
        if (r < 0)
                return r;
        p = call_proc(c);

        if (p->secondary && (flags & KFD_IOC_ALLOC_MEM_FLAGS_USERPTR)) {
                r = -EOPNOTSUPP;
                goto out;
        }
        /* svm_range_is_valid overlap check: a BO may not shadow an SVM range. */
        if (emu_svm_overlaps(k, c->proc, args->va_addr, args->va_addr + args->size) ||
            ((flags & KFD_IOC_ALLOC_MEM_FLAGS_USERPTR) &&
             emu_svm_overlaps(k, c->proc, args->mmap_offset, args->mmap_offset + args->size))) {
                r = -EADDRINUSE;
                goto out;
        }
        g = emu_gpu_index(k, args->gpu_id);
        if (g < 0) {
                r = -EINVAL;
                goto out;
        }
        /* kfd_dev_is_large_bar */
        if ((flags & KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC) && (flags & KFD_IOC_ALLOC_MEM_FLAGS_VRAM) &&
            !a->gpus[g].large_bar) {
                r = -EINVAL;
                goto out;
        }
        r = bind(c, g);
        if (r < 0)
                goto out;
        if ((flags & KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL) && args->size != EMU_DOORBELL_SLICE) {
                r = -EINVAL;
                goto out;
        }
        if ((flags & KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP) && args->size != EMU_PAGE_SIZE) {
                r = -EINVAL;
                goto out;
        }

        /* amdgpu_amdkfd_gpuvm_alloc_memory_of_gpu: the first type bit decides the domain. */
        size = args->size;
        if (flags & KFD_IOC_ALLOC_MEM_FLAGS_AQL_QUEUE_MEM)
                size >>= 1;     /* half the size, mapped twice back to back */
        if (size > UINT64_MAX - EMU_PAGE_SIZE) {
                r = -ENOMEM;
                goto out;
        }
        size = ALIGN_POW2(size, EMU_PAGE_SIZE);
        if (size == 0)
                size = EMU_PAGE_SIZE;
        span = flags & KFD_IOC_ALLOC_MEM_FLAGS_AQL_QUEUE_MEM ? 2 * size : size;

        if (flags & KFD_IOC_ALLOC_MEM_FLAGS_VRAM)
                domain = EMU_DOMAIN_VRAM;
        else if (flags & KFD_IOC_ALLOC_MEM_FLAGS_GTT)
                domain = EMU_DOMAIN_GTT;
        else if (flags & KFD_IOC_ALLOC_MEM_FLAGS_USERPTR) {
                domain = EMU_DOMAIN_USERPTR;
                if (args->mmap_offset == 0) {
                        r = -EINVAL;
                        goto out;
                }
        } else if (flags & (KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL | KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP)) {
                domain = flags & KFD_IOC_ALLOC_MEM_FLAGS_DOORBELL ? EMU_DOMAIN_DOORBELL : EMU_DOMAIN_MMIO;
                if (args->size > UINT32_MAX) {
                        r = -EINVAL;
                        goto out;
                }
        } else {
                r = -EINVAL;
                goto out;
        }

        if ((uint64_t) size >> EMU_GEM_WINDOW_SHIFT) {
                r = -ENOMEM;
                goto out;
        }
        if (!reserve_fits(k, charge_of(flags), g, size)) {
                /* Memory of dead processes and closed dma-bufs is released asynchronously: look first. */
                emu_reap(k);
                if (!reserve_fits(k, charge_of(flags), g, size)) {
                        r = -ENOMEM;
                        goto out;
                }
        }

        r = emu_bo_new(k, (uint32_t) g, domain, size, &bo_index);
        if (r < 0)
                goto out;
        bo = emu_bo(k, bo_index);
        bo->alloc_flags = flags;
        if (domain == EMU_DOMAIN_USERPTR)
                bo->userptr = args->mmap_offset;
        /* Where it lives, for the DRM side's usage queries (amdgpu_vram_mgr/gtt_mgr usage). */
        if (domain == EMU_DOMAIN_VRAM)
                a->gpus[g].vram_placed += size;
        else if (domain == EMU_DOMAIN_GTT)
                a->gpus[g].gtt_used += size;
        /* What it is charged as (charge_of()), released again by amdgpu_amdkfd_release_notify(). */
        switch (charge_of(flags)) {
        case EMU_DOMAIN_VRAM:
                bo->acct_vram = size;
                a->gpus[g].vram_used += size;
                a->gpus[g].vram_used_aligned += ALIGN_POW2(size, EMU_VRAM_ALIGN);
                break;
        case EMU_DOMAIN_GTT:
                bo->acct_system = size;
                bo->acct_ttm = size;
                a->system_used += size;
                a->ttm_used += size;
                break;
        case EMU_DOMAIN_USERPTR:
                bo->acct_system = size;
                a->system_used += size;
                break;
        default:
                break;
        }

        /* init_user_pages → hmm_range_fault: the CPU range must exist. */
        if (domain == EMU_DOMAIN_USERPTR && user_range_mapped(args->mmap_offset, args->size) < 0) {
                emu_bo_put(k, bo_index);
                r = -EFAULT;
                goto out;
        }

        r = emu_handle_new(k, c->proc, (uint32_t) g, &idr);
        if (r < 0) {
                /* idr_alloc failure is reported as EFAULT after the BO is dropped again. */
                emu_bo_put(k, bo_index);
                r = -EFAULT;
                goto out;
        }
        h = emu_handles(k, c->proc, (uint32_t) g) + idr;
        h->bo = bo_index;
        h->alloc_flags = flags;
        h->va = args->va_addr;
        h->span = span;
        bo->handles = 1;
        /* drm_vma_node_allow: the render file of this VM may mmap the BO. */
        emu_bo_allow(k, bo, p->pdd[g].render_file);

        args->handle = (uint64_t) args->gpu_id << 32 | idr;
        if (domain == EMU_DOMAIN_MMIO)
                args->mmap_offset = EMU_KFD_MMAP_TYPE_MMIO | EMU_KFD_MMAP_GPU_ID(args->gpu_id);
        else
                args->mmap_offset = gem_offset(bo_index);
        c->cost = emu_cost(0x16, domain, size, 1);
        r = 0;
out:
        emu_unlock(k);
        return r;
}

/* Handle → (GPU index, idr) with the existence check; -EINVAL for an unknown GPU. */
static int handle_lookup(EmuCall *c, uint64_t handle, int *ret_g, uint32_t *ret_idr, bool *ret_found) {
        EmuKernel *k = c->k;
        int g = emu_gpu_index(k, (uint32_t) (handle >> 32));
        uint32_t idr = (uint32_t) handle;

        if (g < 0)
                return -EINVAL;
        *ret_g = g;
        *ret_idr = idr;
        *ret_found = emu_idr_test(&k->a->idr, emu_idr_bits(k, c->proc, (uint32_t) g), idr);
        return 0;
}

static int ioctl_free(EmuCall *c, void *data) {
        struct kfd_ioctl_free_memory_of_gpu_args *args = data;
        EmuKernel *k = c->k;
        EmuHandle *h;
        uint32_t idr;
        bool found;
        int g, r;

        r = emu_lock(k);
        if (r < 0)
                return r;
        /* kfd_ioctl_free_memory_of_gpu: no event page exists here, so no EPERM case. */
        r = handle_lookup(c, args->handle, &g, &idr, &found);
        if (r < 0)
                goto out;
        if (!found) {
                r = -EINVAL;
                goto out;
        }
        h = emu_handles(k, c->proc, (uint32_t) g) + idr;
        /* amdgpu_amdkfd_gpuvm_free_memory_of_gpu: still mapped somewhere. */
        if (h->mapped) {
                r = -EBUSY;
                goto out;
        }
        c->cost = emu_cost(0x17, emu_bo(k, h->bo)->domain, emu_bo(k, h->bo)->size, 1);
        emu_handle_free(k, c->proc, (uint32_t) g, idr, true);
        r = 0;
out:
        emu_unlock(k);
        return r;
}

typedef struct OverlapQuery {
        uint32_t self;
        uint32_t gpu_bit;
} OverlapQuery;

static int overlap_in_vm(EmuKernel *k, uint32_t proc, uint32_t link, void *userdata) {
        OverlapQuery *q = userdata;
        EmuHandle *h = emu_link(k, proc, link);

        return link != q->self && (h->mapped & q->gpu_bit) ? 1 : 0;
}

/*
 * amdgpu_device_is_peer_accessible(owner, peer) without the XGMI shortcut:
 * the owner's whole VRAM must be CPU/PCIe visible (large BAR) and the peer
 * must be able to DMA to it. The topology states the latter as a link
 * owner→peer without "no P2P" (a p2p link, or a direct link between hive
 * members, which sit behind P2P-capable switches).
 */
static bool pcie_peer_accessible(EmuKernel *k, uint32_t owner, uint32_t peer) {
        const EmuTopology *t = &k->a->topo;
        unsigned on = k->a->gpus[owner].node, pn = k->a->gpus[peer].node;

        if (!k->a->gpus[owner].large_bar)
                return false;
        for (unsigned i = 0; i < t->n_p2p_links && i < EMU_MAX_LINKS; i++)
                if (t->p2p_links[i].node_from == on && t->p2p_links[i].node_to == pn &&
                    !(t->p2p_links[i].flags & 0x10))
                        return true;
        for (unsigned i = 0; i < t->n_links && i < EMU_MAX_LINKS; i++)
                if (t->io_links[i].node_from == on && t->io_links[i].node_to == pn &&
                    !(t->io_links[i].flags & 0x10))
                        return true;
        return false;
}

/* amdgpu_amdkfd_gpuvm_map_memory_to_gpu for one VM. */
static int map_one(EmuCall *c, int owner_g, uint32_t idr, int peer) {
        EmuKernel *k = c->k;
        EmuHandle *h = emu_handles(k, c->proc, (uint32_t) owner_g) + idr;
        EmuBo *bo = emu_bo(k, h->bo);
        uint32_t link = (uint32_t) owner_g * k->a->max_handles + idr;
        uint64_t end;

        /* An attachment already mapped in this VM is skipped: mapping twice is a no-op. */
        if (h->mapped & (UINT32_C(1) << peer))
                return 0;
        /*
         * kfd_mem_attach: VRAM of another device needs XGMI (same hive) or
         * PCIe peer access; doorbell and MMIO pages are always reached over
         * PCIe, so the hive does not help them.
         */
        if (h->va == 0)
                return -EINVAL;
        if (bo->gpu != (uint32_t) peer) {
                unsigned owner_node = k->a->gpus[bo->gpu].node, peer_node = k->a->gpus[peer].node;

                if (bo->domain == EMU_DOMAIN_VRAM &&
                    !emu_topology_peer_accessible(&k->a->topo, owner_node, peer_node))
                        return -EINVAL;
                if ((bo->domain == EMU_DOMAIN_DOORBELL || bo->domain == EMU_DOMAIN_MMIO) &&
                    !pcie_peer_accessible(k, bo->gpu, (uint32_t) peer))
                        return -EINVAL;
        }
        /* amdgpu_vm_bo_map → amdgpu_vm_verify_parameters, then the interval tree conflict check. */
        if (h->va & (EMU_PAGE_SIZE - 1))
                return -EINVAL;
        if (__builtin_add_overflow(h->va, h->span, &end) || end > EMU_VM_SIZE)
                return -EINVAL;
        OverlapQuery q = { .self = link, .gpu_bit = UINT32_C(1) << peer };
        if (emu_va_overlaps(k, c->proc, h->va, end, overlap_in_vm, &q) != 0)
                return -EINVAL;

        if (h->mapped == 0)
                emu_va_insert(k, c->proc, link);
        h->mapped |= UINT32_C(1) << peer;
        return 0;
}

static int unmap_one(EmuCall *c, int owner_g, uint32_t idr, int peer) {
        EmuKernel *k = c->k;
        EmuHandle *h = emu_handles(k, c->proc, (uint32_t) owner_g) + idr;

        /* amdgpu_amdkfd_gpuvm_unmap_memory_from_gpu: "no VMs reserved" when not mapped there. */
        if (!(h->mapped & (UINT32_C(1) << peer)))
                return -EINVAL;
        h->mapped &= ~(UINT32_C(1) << peer);
        if (h->mapped == 0)
                emu_va_remove(k, c->proc, (uint32_t) owner_g * k->a->max_handles + idr);
        return 0;
}

static int map_or_unmap(EmuCall *c, struct kfd_ioctl_map_memory_to_gpu_args *args, bool map) {
        EmuKernel *k = c->k;
        uint32_t nr = map ? 0x18 : 0x19;
        _cleanup_free_ uint32_t *ids = NULL;
        uint32_t idr = 0, fault_index = UINT32_MAX, done = 0;
        EmuFault *fault;
        bool found = false;
        int g = -1, r;

        /* kfd_ioctl_map_memory_to_gpu / kfd_ioctl_unmap_memory_from_gpu */
        if (args->n_devices == 0 || args->n_success > args->n_devices)
                return -EINVAL;
        /* kmalloc_array of the id array fails above KMALLOC_MAX_SIZE. */
        if (args->n_devices > (UINT32_C(4) << 20) / sizeof(uint32_t))
                return -ENOMEM;
        ids = malloc((size_t) args->n_devices * sizeof(uint32_t));
        if (!ids)
                return -ENOMEM;
        r = emu_copy_from_user(ids, args->device_ids_array_ptr, (size_t) args->n_devices * sizeof(uint32_t));
        if (r < 0)
                return r;

        g = lock_gpu(c, (uint32_t) (args->handle >> 32));
        if (g < 0)
                return g;
        /* MAP binds the owning device; UNMAP does not need its VM. */
        if (map) {
                r = bind(c, g);
                if (r < 0)
                        goto out;
        }
        r = handle_lookup(c, args->handle, &g, &idr, &found);
        if (r < 0)
                goto out;
        if (!found) {
                /* The IDR miss is ENOMEM in both handlers (sic). */
                r = -ENOMEM;
                goto out;
        }

        fault = emu_fault_check_devices(k, nr, ids, args->n_success, args->n_devices, &fault_index);

        for (uint32_t i = args->n_success; i < args->n_devices; i++) {
                int peer;

                if (fault && fault_index == i) {
                        r = -fault->err;
                        goto out;
                }
                peer = emu_gpu_index(k, ids[i]);
                if (peer < 0) {
                        r = -EINVAL;
                        goto out;
                }
                if (map) {
                        r = bind(c, peer);
                        if (r < 0)
                                goto out;
                        r = map_one(c, g, idr, peer);
                } else
                        r = unmap_one(c, g, idr, peer);
                if (r < 0)
                        goto out;
                args->n_success = i + 1;
                done++;
        }
        /* The interruptible fence wait after the loop: n_success == n_devices, mappings stay. */
        if (fault && fault_index == args->n_devices)
                r = -fault->err;
out:
        if (g >= 0 && found) {
                EmuHandle *h = emu_handles(k, c->proc, (uint32_t) g) + idr;
                if (h->bo != EMU_NIL)
                        c->cost = emu_cost(nr, emu_bo(k, h->bo)->domain, h->span, done);
        }
        emu_unlock(k);
        return r;
}

static int ioctl_map(EmuCall *c, void *data) {
        return map_or_unmap(c, data, true);
}

static int ioctl_unmap(EmuCall *c, void *data) {
        return map_or_unmap(c, data, false);
}

static int dmabuf_bo(EmuKernel *k, int fd, uint32_t *ret_bo, int not_dmabuf_errno) {
        struct stat st;
        uint32_t kind, index;

        if (emu_sys_fstat(fd, &st) < 0)
                return -EBADF;
        if (emu_lookup(k, st.st_dev, st.st_ino, &kind, &index) < 0 || kind != EMU_FILE_DMABUF)
                return not_dmabuf_errno;
        *ret_bo = index;
        return 0;
}

static int ioctl_get_dmabuf_info(EmuCall *c, void *data) {
        struct kfd_ioctl_get_dmabuf_info_args *args = data;
        EmuKernel *k = c->k;
        uint32_t bi;
        EmuBo *bo;
        int r;

        r = emu_lock(k);
        if (r < 0)
                return r;
        /* amdgpu_amdkfd_get_dmabuf_info: the first KFD device the process may use. */
        if (k->a->n_gpus == 0) {
                r = -EINVAL;
                goto out;
        }
        r = dmabuf_bo(k, (int) args->dmabuf_fd, &bi, -EINVAL);
        if (r < 0)
                goto out;
        bo = emu_bo(k, bi);
        if (bo->domain != EMU_DOMAIN_VRAM && bo->domain != EMU_DOMAIN_GTT) {
                r = -EINVAL;
                goto out;
        }
        args->size = bo->size;
        args->gpu_id = k->a->gpus[bo->gpu].gpu_id;
        args->flags = bo->domain == EMU_DOMAIN_VRAM ? KFD_IOC_ALLOC_MEM_FLAGS_VRAM : KFD_IOC_ALLOC_MEM_FLAGS_GTT;
        if (bo->domain == EMU_DOMAIN_VRAM && (bo->alloc_flags & KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC))
                args->flags |= KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC;
        /* amdgpu_bo_get_metadata: KFD BOs carry no metadata, so any buffer is large enough. */
        args->metadata_size = 0;
        r = 0;
out:
        emu_unlock(k);
        return r;
}

static int ioctl_import_dmabuf(EmuCall *c, void *data) {
        struct kfd_ioctl_import_dmabuf_args *args = data;
        EmuKernel *k = c->k;
        uint32_t bi, idr;
        EmuHandle *h;
        EmuBo *bo;
        int g, r, fd;

        /* kfd_ioctl_import_dmabuf → amdgpu_amdkfd_gpuvm_import_dmabuf_fd */
        g = lock_gpu(c, args->gpu_id);
        if (g < 0)
                return g;
        r = bind(c, g);
        if (r < 0)
                goto out;
        r = dmabuf_bo(k, (int) args->dmabuf_fd, &bi, -EINVAL);
        if (r < 0)
                goto out;
        bo = emu_bo(k, bi);
        if (bo->domain != EMU_DOMAIN_VRAM && bo->domain != EMU_DOMAIN_GTT) {
                r = -EINVAL;
                goto out;
        }
        /* mem->dmabuf keeps a reference on the dma-buf for as long as the handle lives. */
        fd = fcntl((int) args->dmabuf_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0) {
                r = -ENOMEM;
                goto out;
        }
        r = emu_private_fd_add(k, fd);
        if (r < 0) {
                emu_sys_close(fd);
                goto out;
        }
        r = emu_handle_new(k, c->proc, (uint32_t) g, &idr);
        if (r < 0) {
                emu_private_fd_close(k, fd);
                r = -EFAULT;
                goto out;
        }
        h = emu_handles(k, c->proc, (uint32_t) g) + idr;
        h->bo = bi;
        /* import_obj_create: VRAM or GTT, writable and executable; not counted against the limits. */
        h->alloc_flags = (bo->domain == EMU_DOMAIN_VRAM ? KFD_IOC_ALLOC_MEM_FLAGS_VRAM : KFD_IOC_ALLOC_MEM_FLAGS_GTT) |
                         EMU_ALLOC_FLAGS_WRITABLE | KFD_IOC_ALLOC_MEM_FLAGS_EXECUTABLE;
        h->va = args->va_addr;
        h->span = bo->size;
        h->imported = 1;
        h->dmabuf_fd = fd;
        emu_bo_get(k, bi);
        emu_bo_allow(k, bo, call_proc(c)->pdd[g].render_file);
        args->handle = (uint64_t) args->gpu_id << 32 | idr;
        c->cost = emu_cost(0x1D, bo->domain, bo->size, 1);
        r = 0;
out:
        emu_unlock(k);
        return r;
}

static int ioctl_export_dmabuf(EmuCall *c, void *data) {
        struct kfd_ioctl_export_dmabuf_args *args = data;
        EmuKernel *k = c->k;
        EmuHandle *h;
        EmuBo *bo;
        uint32_t idr;
        bool found;
        int g, r, fd;

        r = emu_lock(k);
        if (r < 0)
                return r;
        /* kfd_ioctl_export_dmabuf: device, pdd and IDR misses are all EINVAL. */
        r = handle_lookup(c, args->handle, &g, &idr, &found);
        if (r < 0)
                goto out;
        if (!found) {
                r = -EINVAL;
                goto out;
        }
        h = emu_handles(k, c->proc, (uint32_t) g) + idr;
        bo = emu_bo(k, h->bo);
        /* kfd_mem_export_dmabuf → amdgpu_gem_prime_export: userptr BOs cannot be exported. */
        if (bo->domain == EMU_DOMAIN_USERPTR) {
                r = -EPERM;
                goto out;
        }
        if (h->dmabuf_fd < 0) {
                char path[PATH_MAX];
                struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET };

                /* One dma-buf per BO, cached in mem->dmabuf: read-write only for WRITABLE BOs. */
                r = emu_bo_backing_path(k, h->bo, path, sizeof(path));
                if (r < 0)
                        goto out;
                fd = emu_sys_open(path, ((h->alloc_flags & EMU_ALLOC_FLAGS_WRITABLE) ? O_RDWR : O_RDONLY) |
                                  O_CLOEXEC, 0);
                if (fd < 0) {
                        r = -ENOMEM;
                        goto out;
                }
                /* The lock lives as long as the description: "is any dma-buf fd left" is F_OFD_GETLK. */
                if (fcntl(fd, F_OFD_SETLK, &fl) < 0 || emu_private_fd_add(k, fd) < 0) {
                        emu_sys_close(fd);
                        r = -ENOMEM;
                        goto out;
                }
                h->dmabuf_fd = fd;
                bo->exported = 1;
        }
        /* dma_buf_fd(): a new fd for the same dma-buf on every call. */
        fd = fcntl(h->dmabuf_fd, (args->flags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD, 0);
        if (fd < 0) {
                r = -errno;
                goto out;
        }
        args->dmabuf_fd = (uint32_t) fd;
        c->cost = emu_cost(0x24, bo->domain, bo->size, 1);
        r = 0;
out:
        emu_unlock(k);
        return r;
}

static int ioctl_svm(EmuCall *c, void *data) {
        EmuKernel *k = c->k;
        int r;

        r = emu_lock(k);
        if (r < 0)
                return r;
        /* kfd_ioctl_svm: secondary contexts have no SVM (CREATE_PROCESS series). */
        if (call_proc(c)->secondary)
                r = -EOPNOTSUPP;
        else
                r = emu_svm_ioctl(k, c->proc, data, c->size, c->fault);
        if (r >= 0) {
                struct kfd_ioctl_svm_args *args = data;
                c->cost = emu_cost(0x20, 0, args->size, 1);
        }
        emu_unlock(k);
        return r;
}

static int ioctl_set_xnack_mode(EmuCall *c, void *data) {
        struct kfd_ioctl_set_xnack_mode_args *args = data;
        EmuKernel *k = c->k;
        EmuProc *p;
        int r;

        r = emu_lock(k);
        if (r < 0)
                return r;
        p = call_proc(c);
        /* kfd_ioctl_set_xnack_mode: negative queries; no user queues exist, so no EBUSY. */
        if (args->xnack_enabled < 0)
                args->xnack_enabled = (int32_t) p->xnack;
        else if ((args->xnack_enabled != 0) == (p->xnack != 0))
                r = 0;
        else if (args->xnack_enabled != 0) {
                /* kfd_process_xnack_mode(p, true): every GPU of the process must support it. */
                bool ok = true;
                for (uint32_t g = 0; g < k->a->n_gpus; g++)
                        ok = ok && k->a->gpus[g].xnack_capable;
                if (!ok)
                        r = -EPERM;
                else
                        p->xnack = 1;
        } else
                p->xnack = 0;
        emu_unlock(k);
        return r;
}

static int ioctl_available_memory(EmuCall *c, void *data) {
        struct kfd_ioctl_get_available_memory_args *args = data;
        EmuKernel *k = c->k;
        int g;

        g = lock_gpu(c, args->gpu_id);
        if (g < 0)
                return g;
        /* The asynchronous releases the kernel would have finished by now. */
        emu_reap(k);
        args->available = emu_gpu_available(k->a, &k->a->gpus[g]);
        emu_unlock(k);
        return 0;
}

/* kfd_ioctl_smi_events: a listener on one GPU of this process (emu-smi.c). */
static int ioctl_smi_events(EmuCall *c, void *data) {
        struct kfd_ioctl_smi_events_args *args = data;

        return emu_smi_open(c->k, c->proc, args->gpuid, &args->anon_fd);
}

static int ioctl_runtime_enable(EmuCall *c, void *data) {
        struct kfd_ioctl_runtime_enable_args *args = data;
        EmuKernel *k = c->k;
        EmuProc *p;
        int r;

        r = emu_lock(k);
        if (r < 0)
                return r;
        p = call_proc(c);
        /* kfd_ioctl_runtime_enable → runtime_enable / runtime_disable; no queues, no debugger. */
        if (args->mode_mask & KFD_RUNTIME_ENABLE_MODE_ENABLE_MASK) {
                if (p->runtime_enabled)
                        r = -EBUSY;
                else
                        p->runtime_enabled = 1;
        } else
                p->runtime_enabled = 0;
        emu_unlock(k);
        return r;
}

static int ioctl_create_process(EmuCall *c, void *data) {
        EmuKernel *k = c->k;
        uint32_t ctx;
        int r;

        r = emu_lock(k);
        if (r < 0)
                return r;
        /* kfd_ioctl_create_process: only the primary context's fd can become a secondary one. */
        if (call_proc(c)->secondary || emu_file(k, c->file)->proc != c->proc) {
                r = -EINVAL;
                goto out;
        }
        r = emu_proc_create(k, true, &ctx);
        if (r < 0)
                goto out;
        emu_file(k, c->file)->proc = ctx;
out:
        emu_unlock(k);
        return r;
}

/* ------------------------------------------------------------------------ */

static void fifo_lock(EmuFifoLock *l) {
        uint32_t ticket = __atomic_fetch_add(&l->next, 1, __ATOMIC_SEQ_CST), serving;

        /* A shared futex: the arena is mapped by every process that uses the emulator. */
        while ((serving = __atomic_load_n(&l->serving, __ATOMIC_ACQUIRE)) != ticket)
                (void) syscall(SYS_futex, &l->serving, FUTEX_WAIT, serving, NULL, NULL, 0);
}

static void fifo_unlock(EmuFifoLock *l) {
        uint32_t serving = __atomic_add_fetch(&l->serving, 1, __ATOMIC_SEQ_CST);

        /* Nobody drew a later ticket: nobody waits (one who draws it now finds the lock free). */
        if (__atomic_load_n(&l->next, __ATOMIC_SEQ_CST) == serving)
                return;
        /* Every waiter checks its ticket; there are at most as many as the process has threads. */
        (void) syscall(SYS_futex, &l->serving, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

static int fault_gpu_of_args(const EmuIoctl *e, const uint8_t *kdata, size_t asize, uint32_t *ret) {
        if (e->gpu_off < 0 || (size_t) e->gpu_off + (e->gpu_in_handle ? 8 : 4) > asize) {
                *ret = 0;
                return 0;
        }
        if (e->gpu_in_handle) {
                uint64_t h;
                memcpy(&h, kdata + e->gpu_off, sizeof(h));
                *ret = (uint32_t) (h >> 32);
        } else
                memcpy(ret, kdata + e->gpu_off, sizeof(*ret));
        return 0;
}

static int kfd_ioctl(EmuKernel *k, uint32_t file, unsigned long cmd, void *arg) {
        uint32_t nr = _IOC_NR(cmd);
        const EmuIoctl *e = nr < EMU_IOCTL_NR_MAX ? &ioctl_table[nr] : NULL;
        uint8_t stack[128];
        _cleanup_free_ uint8_t *heap = NULL;
        uint8_t *kdata = stack;
        size_t usize = _IOC_SIZE(cmd), asize;
        EmuCall c = { .k = k, .file = file };
        struct timespec start;
        bool realistic, pmutex = false;
        EmuFault *fault = NULL;
        EmuProc *p;
        int r;

        /* kfd_ioctl: indexed by nr only; outside this version's table → EINVAL. */
        if (!e || !e->name || k->a->kfd_minor < e->min_minor ||
            (nr == 0x27 && k->a->kfd_minor < SVMD_KFD_MINOR_CREATE_PROCESS)) {
                __atomic_fetch_add(&k->a->ioctl_unknown, 1, __ATOMIC_RELAXED);
                return -EINVAL;
        }
        __atomic_fetch_add(&k->a->ioctl_count[nr], 1, __ATOMIC_RELAXED);
        if (!e->handler)
                return -EINVAL;

        /* The lead_thread check: the fd's context belongs to another process (fork, SCM_RIGHTS). */
        r = emu_lock(k);
        if (r < 0)
                return r;
        c.proc = emu_file(k, file)->proc;
        p = c.proc != EMU_NIL ? emu_proc(k, c.proc) : NULL;
        if (!p || !p->in_use || p->pid != getpid())
                r = -EBADF;
        emu_unlock(k);
        if (r < 0)
                return r;

        asize = MAX(usize, (size_t) e->size);
        c.size = asize;
        if (asize > sizeof(stack)) {
                heap = malloc(asize);
                if (!heap)
                        return -ENOMEM;
                kdata = heap;
        }
        if (e->dir & (_IOC_READ | _IOC_WRITE))
                if (asize > usize)
                        memset(kdata + usize, 0, asize - usize);
        if (e->dir & _IOC_WRITE) {
                r = emu_copy_from_user(kdata, (uint64_t) (uintptr_t) arg, usize);
                if (r < 0)
                        return r;
        } else if (e->dir & _IOC_READ)
                memset(kdata, 0, usize);

        realistic = __atomic_load_n(&k->a->profile, __ATOMIC_RELAXED) == EMU_PROFILE_REALISTIC;
        if (realistic && e->pmutex) {
                fifo_lock(&p->mutex);
                pmutex = true;
        }
        clock_gettime(CLOCK_MONOTONIC, &start);

        /* Armed faults for whole calls fire before any state change; MAP/UNMAP place their own. */
        if (nr != 0x18 && nr != 0x19) {
                int32_t svm_op = -1;
                uint32_t gpu_id;

                fault_gpu_of_args(e, kdata, asize, &gpu_id);
                if (nr == 0x20) {
                        /* For op=set|get faults; asize covers at least the kernel's struct. */
                        uint32_t op;

                        memcpy(&op, kdata + offsetof(struct kfd_ioctl_svm_args, op), sizeof(op));
                        svm_op = op <= INT32_MAX ? (int32_t) op : INT32_MAX;
                }
                if (emu_lock(k) == 0) {
                        fault = emu_fault_check(k, nr, gpu_id, svm_op);
                        emu_unlock(k);
                }
        }
        if (fault && nr != 0x20)
                r = -fault->err;
        else {
                /* SVM takes its fault along: it can fire after some attributes were applied. */
                c.fault = fault;
                r = e->handler(&c, kdata);
        }

        if (realistic) {
                /* Bookkeeping and page-table updates under p->mutex; fence wait and TLB flushes after. */
                emu_sleep_until(&start, c.cost.locked_ns);
                if (pmutex)
                        fifo_unlock(&p->mutex);
                emu_sleep_until(&start, c.cost.locked_ns + c.cost.unlocked_ns);
        }

        /* Copied back whatever happened: n_success and friends must be visible after an error. */
        if (e->dir & _IOC_READ)
                if (emu_copy_to_user((uint64_t) (uintptr_t) arg, kdata, usize) < 0)
                        r = -EFAULT;
        return r;
}

int emu_kernel_ioctl(EmuKernel *k, int fd, unsigned long cmd, void *arg) {
        struct stat st;
        uint32_t kind, index, minor = 0;
        int r;

        emu_check_fork(k);
        if (emu_sys_fstat(fd, &st) < 0)
                return EMU_KERNEL_NOT_OURS;
        if (k->memfd_dev != 0 && st.st_dev != k->memfd_dev)
                return EMU_KERNEL_NOT_OURS;

        r = emu_lock(k);
        if (r < 0)
                return r;
        r = emu_lookup(k, st.st_dev, st.st_ino, &kind, &index);
        if (r == 0 && kind == EMU_FILE_RENDER)
                minor = emu_file(k, index)->minor;
        emu_unlock(k);
        if (r < 0 || (kind != EMU_FILE_KFD && kind != EMU_FILE_RENDER))
                return EMU_KERNEL_NOT_OURS;

        if (kind == EMU_FILE_RENDER)
                /* drm_ioctl dispatches by nr too; the DRM side decides. */
                return emu_drm_ioctl(k, minor, cmd, arg);
        return kfd_ioctl(k, index, cmd, arg);
}
