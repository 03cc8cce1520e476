/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Layout of the shared arena (DIR/state) and the helpers the emulated
 * kernel's files share. Private to tests/kfd-emu/kernel/.
 *
 * Everything in the arena is addressed by index or byte offset, never by
 * pointer: every process maps it at a different address. The whole node's
 * "kernel" state lives here, guarded by one robust process-shared mutex that
 * is held for bookkeeping only (never across a sleep or a blocking call on
 * another process).
 */

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "emu-idr.h"
#include "kfd-uapi.h"
#include "macro.h"
#include "emu-kernel.h"
#include "emu-topology.h"

#define EMU_ARENA_MAGIC UINT64_C(0x31554d4544464b00) /* "\0KFDEMU1" */
#define EMU_ARENA_VERSION 3

#define EMU_PAGE_SIZE 4096ULL
#define EMU_NIL UINT32_MAX

#define EMU_DEFAULT_MAX_PROCESSES 64
#define EMU_DEFAULT_MAX_BUFFERS (1U << 20)
#define EMU_DEFAULT_MAX_HANDLES (1U << 16)
#define EMU_DEFAULT_MAX_FILES 4096
#define EMU_DEFAULT_MAX_SVM_RANGES 1024
#define EMU_MAX_FAULTS 64
#define EMU_FAULT_SPEC_MAX 200
#define EMU_IOCTL_NR_MAX 0x40
#define EMU_BO_ALLOW_MAX 8

/* GPU VM size the emulated ASICs have: amdgpu_vm_verify_parameters() rejects mappings past it. */
#define EMU_VM_SIZE (UINT64_C(1) << 47)
/* Apertures of kfd_flat_memory.c (GFX9+): SVM_USER_BASE and the 4 GiB LDS/scratch windows. */
#define EMU_GPUVM_BASE UINT64_C(0x1000000)
#define EMU_GPUVM_LIMIT (EMU_VM_SIZE - 1)
#define EMU_LDS_BASE (UINT64_C(1) << 48)
#define EMU_SCRATCH_BASE (UINT64_C(2) << 48)
#define EMU_APERTURE_LIMIT(base) ((base) | UINT64_C(0xFFFFFFFF))
/* Doorbell slice per process and device: 2 pages on SOC15 (kfd_doorbell_process_slice()). */
#define EMU_DOORBELL_SLICE (2 * EMU_PAGE_SIZE)
/* amdgpu_amdkfd_get_available_memory() rounds down and accounts VRAM in these units. */
#define EMU_VRAM_ALIGN (UINT64_C(2) << 20)
/* AMDGPU_RESERVE_MEM_LIMIT of amdgpu_amdkfd_gpuvm.c. */
#define EMU_RESERVE_MEM_LIMIT (UINT64_C(3) << 29)
/* AMDGPU_VM_RESERVED_VRAM (amdgpu_vm.h): the floor of ESTIMATE_PT_SIZE(). */
#define EMU_VM_RESERVED_VRAM (UINT64_C(8) << 20)

/* kfd_priv.h mmap offset encoding on /dev/kfd (byte offsets). */
#define EMU_KFD_MMAP_TYPE_SHIFT 62
#define EMU_KFD_MMAP_TYPE_MASK (UINT64_C(3) << EMU_KFD_MMAP_TYPE_SHIFT)
#define EMU_KFD_MMAP_TYPE_DOORBELL (UINT64_C(3) << EMU_KFD_MMAP_TYPE_SHIFT)
#define EMU_KFD_MMAP_TYPE_EVENTS (UINT64_C(2) << EMU_KFD_MMAP_TYPE_SHIFT)
#define EMU_KFD_MMAP_TYPE_RESERVED_MEM (UINT64_C(1) << EMU_KFD_MMAP_TYPE_SHIFT)
#define EMU_KFD_MMAP_TYPE_MMIO (UINT64_C(0) << EMU_KFD_MMAP_TYPE_SHIFT)
#define EMU_KFD_MMAP_GPU_ID_SHIFT 46
#define EMU_KFD_MMAP_GPU_ID_MASK (UINT64_C(0xFFFF) << EMU_KFD_MMAP_GPU_ID_SHIFT)
#define EMU_KFD_MMAP_GPU_ID(id) ((((uint64_t) (id)) << EMU_KFD_MMAP_GPU_ID_SHIFT) & EMU_KFD_MMAP_GPU_ID_MASK)

/*
 * Fake GEM mmap offsets on the render nodes: one 256 GiB window per buffer slot.
 * drm_vma_offset_lookup_locked() finds the node containing [pgoff, pgoff+pages),
 * so an offset inside a window maps from that byte of the buffer on. With at
 * most 2^24 buffers of at most 256 GiB each the offsets stay below 2^63.
 */
#define EMU_GEM_OFFSET_BASE (UINT64_C(1) << 32)
#define EMU_GEM_WINDOW_SHIFT 38

/*
 * <linux/kfd_ioctl.h> of 1.11 spells WRITABLE as (1 << 31), a signed overflow
 * UBSan reports at every use; the same bit, unsigned.
 */
#define EMU_ALLOC_FLAGS_WRITABLE (UINT32_C(1) << 31)

/* Constant fake device numbers so libdrm and friends see character devices. */
#define EMU_KFD_MAJOR 235
#define EMU_DRM_MAJOR 226

typedef enum EmuDomain {
        EMU_DOMAIN_VRAM,
        EMU_DOMAIN_GTT,
        EMU_DOMAIN_USERPTR,
        EMU_DOMAIN_DOORBELL,
        EMU_DOMAIN_MMIO,
        _EMU_DOMAIN_MAX,
} EmuDomain;

typedef struct EmuGpu {
        uint32_t gpu_id;
        uint32_t node;                  /* topology node index */
        uint32_t render_minor;
        uint32_t large_bar;
        uint32_t xnack_capable;
        uint32_t svm_capable;
        uint64_t vram_total;
        uint64_t vram_used;             /* bytes reserved: amdgpu_amdkfd_reserve_mem_limit() vram_used */
        uint64_t vram_used_aligned;     /* the same in 2 MiB units: what AVAILABLE_MEMORY subtracts */
        uint64_t gtt_used;              /* GTT buffers owned by this GPU (for AMDGPU_INFO GTT_USAGE) */
        uint64_t vram_placed;           /* buffers placed in its VRAM (VRAM_USAGE), whatever they count as */
} EmuGpu;

/* The kernel's struct mutex as the realistic profile needs it: waiters are served in the order
 * they came. The kernel queues waiters and, once the first of them was passed over, hands the
 * lock to it on the next unlock (__mutex_handoff()); a glibc mutex lets a newcomer take the
 * lock from a waiter that was woken but not yet running, again and again on a busy machine.
 * Only the threads of the owning process take it, so an owner's death leaves nobody waiting. */
typedef struct EmuFifoLock {
        uint32_t next;                  /* the ticket the next locker draws */
        uint32_t serving;               /* the ticket that holds the lock; a futex word */
} EmuFifoLock;

/* The "pdd": what a KFD process knows about one GPU. */
typedef struct EmuPdd {
        uint32_t render_file;           /* file slot the VM was acquired with, EMU_NIL: no VM */
        uint32_t policy_set;
        uint32_t default_policy, alternate_policy, misc_process_flag;
        uint64_t alt_base, alt_size;
        uint64_t scratch_backing_va;    /* qpd.sh_hidden_private_base: SET_SCRATCH_BACKING_VA */
        uint32_t n_handles;
} EmuPdd;

typedef struct EmuProc {
        uint32_t in_use;
        int32_t pid;
        uint64_t start_time;            /* /proc/pid/stat field 22: defeats pid reuse */
        uint32_t secondary;             /* CREATE_PROCESS context */
        uint32_t context_id;            /* 0xFFFF for the primary (kfd_process.c), else 0.. per primary */
        uint32_t xnack;
        uint32_t runtime_enabled;
        uint32_t va_root;               /* interval treap of mapped handles, by VA */
        uint32_t n_svm;
        uint64_t seq;                   /* creation order */
        EmuFifoLock mutex;              /* the kernel's p->mutex (realistic profile) */
        EmuPdd pdd[EMU_MAX_GPUS];
} EmuProc;

/* One IDR entry: a KFD handle (kgd_mem). */
typedef struct EmuHandle {
        uint32_t bo;
        uint32_t alloc_flags;
        uint64_t va;
        uint64_t span;                  /* bytes of GPU VA the mapping covers (AQL: twice the BO) */
        uint32_t mapped;                /* bit per GPU index */
        uint32_t imported;
        int32_t dmabuf_fd;              /* mem->dmabuf: the cached description, in the owner process */
        uint32_t left, right;           /* treap links */
        uint64_t max_end;               /* treap augmentation */
} EmuHandle;

typedef struct EmuBoAllow {
        uint32_t file;
        uint32_t refs;
} EmuBoAllow;

typedef struct EmuBo {
        uint32_t in_use;
        uint32_t gpu;                   /* owner GPU index */
        uint32_t domain;                /* EmuDomain */
        uint32_t alloc_flags;
        uint64_t size;                  /* page-aligned BO size */
        uint64_t acct_vram;             /* what the memory limit reserved, released in release_notify */
        uint64_t acct_system;
        uint64_t acct_ttm;              /* GTT only: also counted against the TTM limit */
        uint64_t userptr;
        uint64_t dev, ino;              /* backing file identity (0 for userptr) */
        uint64_t generation;
        uint32_t handles;               /* KFD handles referencing it, in any process */
        uint32_t exported;              /* a dma-buf exists or existed */
        uint32_t zombie;                /* freed by KFD, kept alive by dma-buf fds */
        uint32_t zprev, znext;
        uint32_t next_free;
        uint32_t n_allow;
        uint32_t allow_overflow;
        EmuBoAllow allow[EMU_BO_ALLOW_MAX]; /* drm_vma_node_allow(): render files that may mmap it */
} EmuBo;

typedef struct EmuFile {
        uint32_t in_use;
        uint32_t kind;                  /* EmuFileKind */
        uint32_t minor;
        uint32_t proc;                  /* KFD: the context (primary or secondary) */
        uint32_t acq_proc, acq_gpu;     /* RENDER: the VM that was made compute with it */
        uint32_t closed;                /* no fd refers to it any more */
        int32_t opener_pid;
        uint64_t opener_start;
        uint64_t dev, ino;
} EmuFile;

typedef struct EmuHashSlot {
        uint64_t dev, ino;              /* ino == 0: empty */
        uint32_t kind;
        uint32_t index;
} EmuHashSlot;

typedef struct EmuSvmRange {
        uint64_t start, end;            /* bytes, end exclusive */
        uint32_t preferred_loc, prefetch_loc;
        uint32_t flags;
        uint32_t granularity;
        uint32_t access;                /* bit per GPU index */
        uint32_t access_in_place;
} EmuSvmRange;

typedef struct EmuFault {
        uint32_t in_use;
        uint32_t nr;
        uint32_t gpu_id;                /* 0: any */
        uint32_t nth;
        uint32_t count;                 /* 0: every time */
        int32_t err;
        int32_t after;                  /* -1: unset */
        uint32_t at_fence;
        int32_t pid;                    /* 0: any */
        int32_t svm_op;                 /* SVM: only this KFD_IOCTL_SVM_OP_*; -1: any op */
        uint32_t seen;
        uint32_t fired;
        char spec[EMU_FAULT_SPEC_MAX];
} EmuFault;

typedef struct EmuArena {
        uint64_t magic;
        uint32_t version;
        uint32_t header_size;
        uint64_t total_size;
        pthread_mutex_t lock;

        EmuTopology topo;
        uint32_t kfd_major, kfd_minor;
        uint32_t profile;               /* EmuProfile, read without the lock */
        uint32_t n_gpus;
        EmuGpu gpus[EMU_MAX_GPUS];
        uint64_t system_limit, system_used;   /* kfd_mem_limit.max_system_mem_limit, system_mem_used */
        uint64_t ttm_limit, ttm_used;         /* kfd_mem_limit.max_ttm_mem_limit, ttm_mem_used */
        uint64_t reserved_for_pt;             /* ESTIMATE_PT_SIZE(amdgpu_amdkfd_total_mem_size), per GPU */

        uint32_t max_processes, max_buffers, max_handles, max_files, max_svm;
        uint32_t hash_capacity;         /* power of two */
        EmuIdrGeometry idr;

        uint64_t off_procs, off_files, off_bos, off_hash, off_svm, off_idr, off_handles;
        uint64_t idr_stride;            /* bytes of idr bitmap per (process, GPU) */
        uint64_t handle_stride;         /* bytes of handle entries per (process, GPU) */

        uint32_t bo_free_head, bo_high_water;
        uint32_t zombie_head;
        uint64_t zombie_gen;            /* bumped when a buffer joins the zombies */
        uint32_t n_bos, n_files, n_procs;
        uint64_t proc_seq;
        uint64_t bo_generation;

        EmuFault faults[EMU_MAX_FAULTS];
        uint64_t ioctl_count[EMU_IOCTL_NR_MAX];
        uint64_t ioctl_unknown;
} EmuArena;

/* Process-local view of the arena. */
typedef struct EmuProbe {
        uint32_t file;
        int fd;                         /* private description of the file, for F_OFD_GETLK */
} EmuProbe;

struct EmuKernel {
        int state_fd;
        EmuArena *a;
        size_t size;
        char *dir;
        pid_t pid;                      /* the process this view belongs to (fork resets) */
        uint32_t proc;                  /* primary context of this process image, EMU_NIL */
        dev_t memfd_dev;                /* st_dev of memfds: cheap filter for fstat */
        EmuProbe *probes;
        size_t n_probes, n_probes_alloc;
        int *private_fds;               /* fds the emulator keeps in this process */
        size_t n_private, n_private_alloc;
        bool defer_dmabuf_check;        /* emu_reap(): BOs left by a teardown are checked in one batch */
        int zombie_watch_fd;            /* inotify of DIR/bo's closes, a private fd; -1: none yet, -2: none possible */
        uint64_t zombie_gen_checked;    /* EmuArena.zombie_gen at this view's last check of every zombie */
};

/* Raw system calls: the preload layer interposes the libc ones, and we must not re-enter it. */
static inline int emu_sys_open(const char *path, int flags, mode_t mode) {
        return (int) syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}
static inline int emu_sys_close(int fd) {
        return (int) syscall(SYS_close, fd);
}
static inline int emu_sys_fstat(int fd, struct stat *st) {
        return (int) syscall(SYS_newfstatat, fd, "", st, AT_EMPTY_PATH);
}
static inline void *emu_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
        /* syscall() already turns the -errno return into -1 and errno. */
        return (void *) syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}
static inline int emu_sys_munmap(void *addr, size_t len) {
        /* Not libc's munmap: the preload's would tell the emulated kernel about its own arena. */
        return (int) syscall(SYS_munmap, addr, len);
}

/* Table accessors. */
static inline EmuProc *emu_proc(EmuKernel *k, uint32_t i) {
        return (EmuProc *) ((uint8_t *) k->a + k->a->off_procs) + i;
}
static inline EmuFile *emu_file(EmuKernel *k, uint32_t i) {
        return (EmuFile *) ((uint8_t *) k->a + k->a->off_files) + i;
}
static inline EmuBo *emu_bo(EmuKernel *k, uint32_t i) {
        return (EmuBo *) ((uint8_t *) k->a + k->a->off_bos) + i;
}
static inline EmuHashSlot *emu_hash(EmuKernel *k) {
        return (EmuHashSlot *) ((uint8_t *) k->a + k->a->off_hash);
}
static inline EmuSvmRange *emu_svm(EmuKernel *k, uint32_t proc) {
        return (EmuSvmRange *) ((uint8_t *) k->a + k->a->off_svm) + (uint64_t) proc * k->a->max_svm;
}
static inline uint64_t *emu_idr_bits(EmuKernel *k, uint32_t proc, uint32_t gpu) {
        return (uint64_t *) ((uint8_t *) k->a + k->a->off_idr +
                             ((uint64_t) proc * k->a->n_gpus + gpu) * k->a->idr_stride);
}
static inline EmuHandle *emu_handles(EmuKernel *k, uint32_t proc, uint32_t gpu) {
        return (EmuHandle *) ((uint8_t *) k->a + k->a->off_handles +
                              ((uint64_t) proc * k->a->n_gpus + gpu) * k->a->handle_stride);
}
/* Treap links name a handle of one process as gpu * max_handles + idr. */
static inline EmuHandle *emu_link(EmuKernel *k, uint32_t proc, uint32_t link) {
        return emu_handles(k, proc, link / k->a->max_handles) + link % k->a->max_handles;
}

/* emu-kernel.c */
int emu_lock(EmuKernel *k);
void emu_unlock(EmuKernel *k);
int emu_gpu_index(EmuKernel *k, uint32_t gpu_id);
uint64_t emu_gpu_vram_limit(const EmuArena *a, const EmuGpu *gpu);
uint64_t emu_gpu_available(const EmuArena *a, const EmuGpu *gpu);
uint32_t emu_current_proc(EmuKernel *k);
int emu_lookup(EmuKernel *k, uint64_t dev, uint64_t ino, uint32_t *ret_kind, uint32_t *ret_index);
int emu_file_of_fd(EmuKernel *k, int fd, uint32_t *ret_kind, uint32_t *ret_index);
void emu_reap(EmuKernel *k);
void emu_reap_zombies(EmuKernel *k);
int emu_handle_new(EmuKernel *k, uint32_t proc, uint32_t gpu, uint32_t *ret_idr);
void emu_handle_free(EmuKernel *k, uint32_t proc, uint32_t gpu, uint32_t idr, bool in_owner);
void emu_bo_allow(EmuKernel *k, EmuBo *bo, uint32_t file);
void emu_bo_revoke(EmuKernel *k, EmuBo *bo, uint32_t file);
int emu_bo_new(EmuKernel *k, uint32_t gpu, uint32_t domain, uint64_t size, uint32_t *ret);
void emu_bo_get(EmuKernel *k, uint32_t bo_index);
void emu_bo_put(EmuKernel *k, uint32_t bo_index);
void emu_check_fork(EmuKernel *k);
int emu_bo_backing_path(EmuKernel *k, uint32_t bo_index, char *buf, size_t n);
int emu_private_fd_add(EmuKernel *k, int fd);
void emu_private_fd_close(EmuKernel *k, int fd);
int emu_proc_teardown(EmuKernel *k, uint32_t proc, bool in_owner);
int emu_proc_create(EmuKernel *k, bool secondary, uint32_t *ret);
int emu_copy_from_user(void *dst, uint64_t src, size_t n);
int emu_copy_to_user(uint64_t dst, const void *src, size_t n);
const char *emu_domain_to_string(uint32_t d);

/* emu-vatree.c: per-context interval treap over mapped handles. */
void emu_va_insert(EmuKernel *k, uint32_t proc, uint32_t link);
void emu_va_remove(EmuKernel *k, uint32_t proc, uint32_t link);
/* Calls cb for each mapped handle overlapping [start, end); stops when cb returns non-zero. */
int emu_va_overlaps(EmuKernel *k, uint32_t proc, uint64_t start, uint64_t end,
                    int (*cb)(EmuKernel *k, uint32_t proc, uint32_t link, void *userdata), void *userdata);

/* emu-ioctl.c */
const char *emu_ioctl_name(uint32_t nr);
int emu_ioctl_nr_from_name(const char *name);

/* emu-svm.c */
int emu_svm_ioctl(EmuKernel *k, uint32_t proc, void *data, size_t size, const EmuFault *fault);
bool emu_svm_overlaps(EmuKernel *k, uint32_t proc, uint64_t start, uint64_t end);
/* svm_range_unmap_from_cpu: drop [start, end) (page-aligned) from the context's ranges. Under the lock. */
void emu_svm_unmap(EmuKernel *k, uint32_t proc, uint64_t start, uint64_t end);
json_t *emu_svm_dump(EmuKernel *k, uint32_t proc);

/* emu-fault.c */
typedef struct EmuFaultCtx {
        uint32_t nr;
        uint32_t gpu_id;        /* of the call or of the device being processed */
        int32_t device_index;   /* MAP/UNMAP: index in the array; -1 otherwise */
        bool fence;             /* MAP/UNMAP: after all devices */
} EmuFaultCtx;
/*
 * Evaluate armed faults for a call; returns the fault that fires (its seen/fired are updated) or NULL.
 * svm_op: the call's KFD_IOCTL_SVM_OP_* for SVM, -1 otherwise; a fault armed with op= for another op
 * is not counted.
 */
EmuFault *emu_fault_check(EmuKernel *k, uint32_t nr, uint32_t call_gpu_id, int32_t svm_op);
/* MAP/UNMAP: the first firing point in [from, n) or the fence; *ret_index = n for the fence. */
EmuFault *emu_fault_check_devices(EmuKernel *k, uint32_t nr, const uint32_t *ids, uint32_t from,
                                  uint32_t n, uint32_t *ret_index);
const char *emu_errno_name(int err);

/* emu-latency.c */
typedef struct EmuCost {
        uint64_t locked_ns;     /* under p->mutex */
        uint64_t unlocked_ns;   /* fence wait and TLB flushes, after p->mutex is dropped */
} EmuCost;
EmuCost emu_cost(uint32_t nr, uint32_t domain, uint64_t size, uint32_t n_devices);
void emu_sleep_until(const struct timespec *start, uint64_t ns);
