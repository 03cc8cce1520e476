/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The emulated kernel: everything behind /dev/kfd and the render nodes.
 *
 * Kernel-side state lives in a shared arena (DIR/state, mmapped by every
 * emulated process and by kfdemu-ctl) so that it is node-wide like the real
 * kernel's: VRAM accounting, buffer objects and their dma-bufs, per-process
 * KFD contexts with handles and mappings, armed faults. Buffer objects are
 * backed by shmem files under DIR/bo/ so CPU mappings, dma-buf export and
 * import in other processes share real bytes.
 *
 * The preload layer (preload.c) never interprets an ioctl itself: it creates
 * the file behind an open() of a device node, then hands every ioctl/mmap on
 * such a file to this API. Functions return 0 or a negative errno.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <jansson.h>

#include "emu-topology.h"

typedef struct EmuKernel EmuKernel;

typedef enum EmuProfile {
        EMU_PROFILE_NONE,       /* no added latency (tests) */
        EMU_PROFILE_REALISTIC,  /* per-ioctl costs from docs/emulator.md, with the per-process lock */
        _EMU_PROFILE_MAX,
} EmuProfile;

typedef struct EmuOptions {
        EmuProfile profile;
        uint32_t kfd_major, kfd_minor;  /* 0,0: take the topology's (default 1.16) */
        uint32_t max_processes;         /* 0: default */
        uint32_t max_buffers;           /* 0: default */
        uint32_t max_handles;           /* per process and GPU; 0: default */
} EmuOptions;

typedef enum EmuFileKind {
        EMU_FILE_NONE,          /* not one of ours: the caller passes the call through */
        EMU_FILE_KFD,           /* an open of /dev/kfd */
        EMU_FILE_RENDER,        /* an open of /dev/dri/renderD<minor> */
        EMU_FILE_DMABUF,        /* a dma-buf exported by EXPORT_DMABUF */
} EmuFileKind;

/* kfdemu-run / kfdemu-ctl init: create DIR/state and DIR/bo for this topology. */
int emu_kernel_create(const char *dir, const EmuTopology *topo, const EmuOptions *opts);

/* Map an existing DIR/state into this process. One per process; freed at exit. */
int emu_kernel_attach(const char *dir, EmuKernel **ret);
void emu_kernel_detach(EmuKernel *k);

/* The topology the arena was created from (read-only). */
const EmuTopology *emu_kernel_topology(EmuKernel *k);

/*
 * Device opens. The preload layer creates `fd` (a memfd, O_CLOEXEC as the
 * caller asked) and registers it; the file's identity is its inode, so dup()s
 * and fds passed to other processes are recognised without interposition.
 * open_render returns -ENOENT for a minor the topology does not have.
 */
int emu_kernel_open_kfd(EmuKernel *k, int fd);
int emu_kernel_open_render(EmuKernel *k, int fd, unsigned minor);

/* What an fd is, from fstat(). For RENDER, *ret_minor is set; for KFD, *ret_minor = 0. */
EmuFileKind emu_kernel_classify(EmuKernel *k, const struct stat *st, unsigned *ret_minor);

/*
 * ioctl on a KFD or render file. cmd is the caller's full request (the size
 * field is honoured as the kernel does: kfd_ioctl). Returns 0 or -errno; for
 * _IOWR ioctls the argument is copied back even on failure.
 * EMU_KERNEL_NOT_OURS (positive): fd is no emulated device; pass the call on.
 */
#define EMU_KERNEL_NOT_OURS 1
int emu_kernel_ioctl(EmuKernel *k, int fd, unsigned long cmd, void *arg);

/*
 * mmap of a KFD/render/dma-buf file. Returns the mapped address or MAP_FAILED
 * with errno set (kfd_mmap, drm_gem_mmap semantics).
 */
void *emu_kernel_mmap(EmuKernel *k, void *addr, size_t len, int prot, int flags, int fd, off_t off);

/*
 * The CPU mapping of [addr, addr+len) in this process went away: munmap, an
 * mmap with MAP_FIXED over it, or mremap moving or shrinking it (the MMU
 * notifier's MMU_NOTIFY_UNMAP). The caller reports it after the call
 * succeeded. Like svm_range_unmap_from_cpu, the interval (widened to whole
 * pages) is removed from the SVM ranges of the process's KFD context: ranges
 * inside it disappear, ranges across its edges are split. A process without a
 * KFD context or without SVM ranges returns at once, with no lock and no
 * system call; the function never maps or unmaps memory itself.
 */
int emu_kernel_cpu_unmap(EmuKernel *k, uint64_t addr, uint64_t len);

/* Called by close() of an fd of kind KFD after the real close (secondary contexts die with their file). */
void emu_kernel_file_closed(EmuKernel *k);

/*
 * stat of an fd or path: if st describes one of our device files, rewrite it
 * as the character device it stands for (/dev/kfd 235:0, renderD<n> 226:n).
 * Returns whether it did.
 */
bool emu_kernel_fake_stat(EmuKernel *k, struct stat *st);

/* The process is exiting (atexit): tear its KFD contexts down now rather than lazily. */
void emu_kernel_process_exit(EmuKernel *k);

/*
 * SIGKILL pid the way the kernel lets a process die: never inside an ioctl.
 * A real ioctl runs to its end before the signal takes effect; an emulated
 * one is a sequence of stores into the shared arena, and a process killed
 * among them would leave them half-done. This holds the emulator's lock,
 * sends the signal, and releases the lock only once pid is dead (a zombie or
 * gone, at most timeout_usec later: -ETIMEDOUT). -ESRCH: no such process.
 */
int emu_kernel_kill(EmuKernel *k, pid_t pid, uint64_t timeout_usec);

/* The emulator directory this view is attached to. */
const char *emu_kernel_dir(EmuKernel *k);

/* Kernel-side state as JSON (see docs/emulator.md "dump"). Reaps dead processes first. */
int emu_kernel_dump(EmuKernel *k, json_t **ret);

/*
 * Faults: spec as in kfdemu-ctl ('ioctl=MAP_MEMORY_TO_GPU gpu=0x1234 nth=1 errno=ENOMEM after=2 count=1',
 * 'ioctl=SVM op=set errno=EIO after=1'); see docs/emulator.md.
 */
int emu_kernel_fault_add(EmuKernel *k, const char *spec, char **ret_error);
int emu_kernel_fault_clear(EmuKernel *k);

/* Node-wide memory use of a GPU (what AMDGPU_INFO VRAM_USAGE/GTT_USAGE report). */
/* The GPU clock counter (amdgpu_gfx get_gpu_clock_counter): 100 MHz, what both AMDGPU_INFO_TIMESTAMP
 * and AMDKFD_IOC_GET_CLOCK_COUNTERS read. */
uint64_t emu_kernel_gpu_clock(void);

int emu_kernel_mem_usage(EmuKernel *k, uint32_t gpu_id, uint64_t *ret_vram_used, uint64_t *ret_gtt_used);

/* DRM ioctls on a render node (tests/kfd-emu/drm/emu-drm.c); emu_kernel_ioctl hands 'd' ioctls here. */
int emu_drm_ioctl(EmuKernel *k, unsigned minor, unsigned long cmd, void *arg);

/* Change the latency profile while processes run. */
int emu_kernel_set_profile(EmuKernel *k, EmuProfile p);

const char *emu_profile_to_string(EmuProfile p);
EmuProfile emu_profile_from_string(const char *s);
