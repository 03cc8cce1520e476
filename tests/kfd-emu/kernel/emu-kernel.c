/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The emulated kernel's objects and their lifetimes: the arena, KFD
 * processes (kfd_process.c), open files of /dev/kfd and the render nodes,
 * buffer objects with their memory accounting (amdgpu_amdkfd_gpuvm.c) and
 * dma-bufs, handles. The ioctls themselves are in emu-ioctl.c.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "emu-arena.h"
#include "emu-smi.h"
#include "macro.h"

/* ------------------------------------------------------------------------ */
/* Locking */

int emu_lock(EmuKernel *k) {
        int r = pthread_mutex_lock(&k->a->lock);

        if (r == EOWNERDEAD) {
                /*
                 * A process died holding the lock. Every update under it is a
                 * short sequence of stores, so the state is usable; the dead
                 * process itself is reaped lazily like any other.
                 */
                pthread_mutex_consistent(&k->a->lock);
                return 0;
        }
        return -r;
}

void emu_unlock(EmuKernel *k) {
        pthread_mutex_unlock(&k->a->lock);
}

static int init_robust_mutex(pthread_mutex_t *m) {
        pthread_mutexattr_t attr;
        int r;

        r = pthread_mutexattr_init(&attr);
        if (r != 0)
                return -r;
        r = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
        if (r == 0)
                r = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
        if (r == 0)
                r = pthread_mutex_init(m, &attr);
        pthread_mutexattr_destroy(&attr);
        return -r;
}

/* ------------------------------------------------------------------------ */
/* Creation and attachment */

static uint64_t align_to(uint64_t v, uint64_t a) {
        return (v + a - 1) / a * a;
}

static uint32_t pow2_at_least(uint64_t v) {
        uint32_t r = 1;

        while (r < v && r < (UINT32_C(1) << 31))
                r <<= 1;
        return r;
}

static uint64_t system_limit(uint64_t ram) {
        /* amdgpu_amdkfd_gpuvm_init_mem_limits(): RAM − RAM/64, then − 1.5 GiB, or halved on small machines. */
        uint64_t l = ram - (ram >> 6);

        if (l < 2 * EMU_RESERVE_MEM_LIMIT)
                return l >> 1;
        return l - EMU_RESERVE_MEM_LIMIT;
}

static uint64_t ttm_limit(uint64_t ram) {
        /*
         * amdgpu_amdkfd_gpuvm_init_mem_limits(): max_ttm_mem_limit = ttm_tt_pages_limit() << PAGE_SHIFT,
         * and ttm_global_init() sets that limit to half of RAM (the ttm.pages_limit default). It is the
         * same half of RAM the DRM side reports as the GTT size (emu-drm.c).
         */
        return ram / 2;
}

static uint64_t estimate_pt_size(const EmuTopology *topo) {
        /*
         * ESTIMATE_PT_SIZE(amdgpu_amdkfd_total_mem_size) of amdgpu_amdkfd_gpuvm.c: max(total >> 14,
         * AMDGPU_VM_RESERVED_VRAM). amdgpu_amdkfd_init() starts the total at the system RAM and
         * amdgpu_amdkfd_device_init() adds each GPU's real_vram_size, so every GPU reserves the
         * same estimate, from the whole node's memory.
         */
        uint64_t total = topo->system_memory;

        for (unsigned i = 0; i < topo->n_nodes && i < EMU_MAX_NODES; i++)
                if (topo->nodes[i].is_gpu)
                        total += topo->nodes[i].mem_size;
        return MAX(total >> 14, EMU_VM_RESERVED_VRAM);
}

/*
 * The VRAM amdgpu_amdkfd_reserve_mem_limit() lets KFD reserve on a dGPU: vram_size −
 * reserved_for_pt − reserved_for_ras − vram_pin_size. Nothing is pinned in the emulator's VRAM (no
 * firmware, no display) and no page is retired by RAS, so both are 0 here.
 */
uint64_t emu_gpu_vram_limit(const EmuArena *a, const EmuGpu *gpu) {
        return gpu->vram_total > a->reserved_for_pt ? gpu->vram_total - a->reserved_for_pt : 0;
}

/* amdgpu_amdkfd_get_available_memory() (dGPU): the same limit less vram_used_aligned, rounded down
 * to VRAM_AVAILABLITY_ALIGN (2 MiB), never negative. */
uint64_t emu_gpu_available(const EmuArena *a, const EmuGpu *gpu) {
        uint64_t limit = emu_gpu_vram_limit(a, gpu);

        if (limit <= gpu->vram_used_aligned)
                return 0;
        return (limit - gpu->vram_used_aligned) & ~(EMU_VRAM_ALIGN - 1);
}

int emu_kernel_create(const char *dir, const EmuTopology *topo, const EmuOptions *opts) {
        _cleanup_free_ char *state = NULL, *bodir = NULL;
        _cleanup_close_ int fd = -EBADF;
        EmuOptions o = opts ? *opts : (EmuOptions) {};
        EmuIdrGeometry idr;
        uint32_t n_gpus = 0;
        uint64_t off, idr_stride, handle_stride, total;
        EmuArena *a;
        int r;

        if (!dir || !topo)
                return -EINVAL;
        if (o.profile >= _EMU_PROFILE_MAX)
                return -EINVAL;

        for (unsigned i = 0; i < topo->n_nodes && i < EMU_MAX_NODES; i++)
                if (topo->nodes[i].is_gpu)
                        n_gpus++;
        if (n_gpus > EMU_MAX_GPUS)
                return -E2BIG;

        if (o.max_processes == 0)
                o.max_processes = EMU_DEFAULT_MAX_PROCESSES;
        if (o.max_buffers == 0)
                o.max_buffers = EMU_DEFAULT_MAX_BUFFERS;
        if (o.max_handles == 0)
                o.max_handles = EMU_DEFAULT_MAX_HANDLES;
        /* Treap links are gpu * max_handles + idr in 32 bits. */
        if (o.max_handles > (UINT32_C(1) << 26) || o.max_buffers > (UINT32_C(1) << 24) ||
            o.max_processes > 4096)
                return -E2BIG;

        r = emu_idr_geometry(o.max_handles, &idr);
        if (r < 0)
                return r;

        if (asprintf(&state, "%s/state", dir) < 0 || asprintf(&bodir, "%s/bo", dir) < 0)
                return -ENOMEM;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        /* The kernel is there for every user of the node: emulated processes of any uid (clients
         * switched to other users in tests) update the arena and reopen buffer files. */
        if (mkdir(bodir, 01777) < 0 && errno != EEXIST)
                return -errno;
        if (chmod(bodir, 01777) < 0)
                return -errno;

        /* Layout: header, then fixed-capacity tables, each page aligned. */
        uint32_t max_files = EMU_DEFAULT_MAX_FILES;
        uint32_t max_svm = EMU_DEFAULT_MAX_SVM_RANGES;
        uint32_t hash_capacity = pow2_at_least(2 * ((uint64_t) max_files + o.max_buffers));
        uint64_t off_procs, off_files, off_bos, off_hash, off_svm, off_idr, off_handles;

        off = align_to(sizeof(EmuArena), EMU_PAGE_SIZE);
        off_procs = off;
        off = align_to(off + (uint64_t) o.max_processes * sizeof(EmuProc), EMU_PAGE_SIZE);
        off_files = off;
        off = align_to(off + (uint64_t) max_files * sizeof(EmuFile), EMU_PAGE_SIZE);
        off_bos = off;
        off = align_to(off + (uint64_t) o.max_buffers * sizeof(EmuBo), EMU_PAGE_SIZE);
        off_hash = off;
        off = align_to(off + (uint64_t) hash_capacity * sizeof(EmuHashSlot), EMU_PAGE_SIZE);
        off_svm = off;
        off = align_to(off + (uint64_t) o.max_processes * max_svm * sizeof(EmuSvmRange), EMU_PAGE_SIZE);
        idr_stride = align_to((uint64_t) idr.total_words * sizeof(uint64_t), 64);
        off_idr = off;
        off = align_to(off + (uint64_t) o.max_processes * n_gpus * idr_stride, EMU_PAGE_SIZE);
        handle_stride = align_to((uint64_t) o.max_handles * sizeof(EmuHandle), EMU_PAGE_SIZE);
        off_handles = off;
        total = align_to(off + (uint64_t) o.max_processes * n_gpus * handle_stride, EMU_PAGE_SIZE);

        fd = emu_sys_open(state, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, 0666) < 0) { /* whatever the umask */
                r = -errno;
                emu_sys_close(fd);
                return r;
        }
        /* Sparse: only pages that are touched take memory. */
        if (ftruncate(fd, (off_t) total) < 0)
                return -errno;

        a = emu_sys_mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (a == MAP_FAILED)
                return -errno;

        a->version = EMU_ARENA_VERSION;
        a->header_size = sizeof(EmuArena);
        a->total_size = total;
        r = init_robust_mutex(&a->lock);
        if (r < 0)
                goto fail;

        a->topo = *topo;
        if (o.kfd_major != 0) {
                a->kfd_major = o.kfd_major;
                a->kfd_minor = o.kfd_minor;
        } else if (topo->kfd_major != 0) {
                a->kfd_major = topo->kfd_major;
                a->kfd_minor = topo->kfd_minor;
        } else {
                a->kfd_major = 1;
                a->kfd_minor = 16;
        }
        a->profile = o.profile;

        for (unsigned i = 0; i < topo->n_nodes && i < EMU_MAX_NODES; i++) {
                const EmuNode *n = &topo->nodes[i];
                EmuGpu *g;

                if (!n->is_gpu)
                        continue;
                g = &a->gpus[a->n_gpus++];
                g->gpu_id = n->gpu_id;
                g->node = i;
                g->render_minor = n->drm_render_minor;
                g->large_bar = n->large_bar;
                g->xnack_capable = n->xnack_capable;
                g->svm_capable = n->svm_capable;
                g->vram_total = n->mem_size;
        }
        a->system_limit = system_limit(topo->system_memory);
        a->ttm_limit = ttm_limit(topo->system_memory);
        a->reserved_for_pt = estimate_pt_size(topo);

        a->max_processes = o.max_processes;
        a->max_buffers = o.max_buffers;
        a->max_handles = o.max_handles;
        a->max_files = max_files;
        a->max_svm = max_svm;
        a->hash_capacity = hash_capacity;
        a->idr = idr;
        a->off_procs = off_procs;
        a->off_files = off_files;
        a->off_bos = off_bos;
        a->off_hash = off_hash;
        a->off_svm = off_svm;
        a->off_idr = off_idr;
        a->off_handles = off_handles;
        a->idr_stride = idr_stride;
        a->handle_stride = handle_stride;
        a->bo_free_head = EMU_NIL;
        a->zombie_head = EMU_NIL;

        /* Published last: attach refuses an arena without the magic. */
        __atomic_store_n(&a->magic, EMU_ARENA_MAGIC, __ATOMIC_RELEASE);
        (void) emu_sys_munmap(a, total);
        return 0;

fail:
        (void) emu_sys_munmap(a, total);
        (void) unlink(state);
        return r;
}

static EmuKernel *attached;     /* the one view of this process, for the fork handler */

static void kernel_reset_after_fork(EmuKernel *k) {
        /* The child inherited copies of our private descriptions: a dma-buf must not live on in it. */
        for (size_t i = 0; i < k->n_private; i++)
                emu_sys_close(k->private_fds[i]);
        k->n_private = 0;
        for (size_t i = 0; i < k->n_probes; i++)
                emu_sys_close(k->probes[i].fd);
        k->n_probes = 0;
        k->proc = EMU_NIL;
        k->pid = getpid();
        k->zombie_watch_fd = -1;        /* closed with the private fds */
}

static void atfork_child(void) {
        if (attached)
                kernel_reset_after_fork(attached);
}

int emu_kernel_attach(const char *dir, EmuKernel **ret) {
        _cleanup_free_ char *state = NULL;
        _cleanup_free_ EmuKernel *k = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        EmuArena *a;
        int mfd;

        if (!dir || !ret)
                return -EINVAL;
        if (asprintf(&state, "%s/state", dir) < 0)
                return -ENOMEM;

        fd = emu_sys_open(state, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (emu_sys_fstat(fd, &st) < 0)
                return -errno;
        if ((size_t) st.st_size < sizeof(EmuArena))
                return -EBADMSG;

        a = emu_sys_mmap(NULL, (size_t) st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (a == MAP_FAILED)
                return -errno;
        if (__atomic_load_n(&a->magic, __ATOMIC_ACQUIRE) != EMU_ARENA_MAGIC ||
            a->version != EMU_ARENA_VERSION || a->header_size != sizeof(EmuArena) ||
            a->total_size != (uint64_t) st.st_size) {
                (void) emu_sys_munmap(a, (size_t) st.st_size);
                return -EBADMSG;
        }

        k = calloc(1, sizeof(*k));
        if (!k) {
                (void) emu_sys_munmap(a, (size_t) st.st_size);
                return -ENOMEM;
        }
        k->dir = strdup(dir);
        if (!k->dir) {
                (void) emu_sys_munmap(a, (size_t) st.st_size);
                return -ENOMEM;
        }
        k->a = a;
        k->size = (size_t) st.st_size;
        k->state_fd = TAKE_FD(fd);
        k->pid = getpid();
        k->proc = EMU_NIL;
        k->zombie_watch_fd = -1;

        /* memfds all live on one internal mount: its st_dev lets fstat() skip every other file cheaply. */
        mfd = memfd_create("kfdemu-probe", MFD_CLOEXEC);
        if (mfd >= 0) {
                if (emu_sys_fstat(mfd, &st) == 0)
                        k->memfd_dev = st.st_dev;
                emu_sys_close(mfd);
        }

        if (!attached) {
                attached = k;
                pthread_atfork(NULL, NULL, atfork_child);
        }

        *ret = TAKE_PTR(k);
        return 0;
}

void emu_kernel_detach(EmuKernel *k) {
        if (!k)
                return;
        if (attached == k)
                attached = NULL;
        for (size_t i = 0; i < k->n_probes; i++)
                emu_sys_close(k->probes[i].fd);
        for (size_t i = 0; i < k->n_private; i++)
                emu_sys_close(k->private_fds[i]);
        free(k->probes);
        free(k->private_fds);
        (void) emu_sys_munmap(k->a, k->size);
        emu_sys_close(k->state_fd);
        free(k->dir);
        free(k);
}

const EmuTopology *emu_kernel_topology(EmuKernel *k) {
        return &k->a->topo;
}

const char *emu_kernel_dir(EmuKernel *k) {
        return k->dir;
}

void emu_check_fork(EmuKernel *k) {
        if (_unlikely_(k->pid != getpid()))
                kernel_reset_after_fork(k);
}

/* ------------------------------------------------------------------------ */
/* Small helpers */

int emu_gpu_index(EmuKernel *k, uint32_t gpu_id) {
        /* kfd_process_device_data_by_id(): gpu_id 0 and unknown ids find nothing. */
        if (gpu_id == 0)
                return -1;
        for (uint32_t i = 0; i < k->a->n_gpus; i++)
                if (k->a->gpus[i].gpu_id == gpu_id)
                        return (int) i;
        return -1;
}

const char *emu_domain_to_string(uint32_t d) {
        static const char *const table[_EMU_DOMAIN_MAX] = {
                [EMU_DOMAIN_VRAM] = "vram",
                [EMU_DOMAIN_GTT] = "gtt",
                [EMU_DOMAIN_USERPTR] = "userptr",
                [EMU_DOMAIN_DOORBELL] = "doorbell",
                [EMU_DOMAIN_MMIO] = "mmio",
        };
        return d < _EMU_DOMAIN_MAX ? table[d] : "unknown";
}

static int proc_stat(pid_t pid, char *ret_state, uint64_t *ret_start) {
        char path[64], buf[1024], *p;
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        fd = emu_sys_open(path, O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        emu_sys_close(fd);
        if (n <= 0)
                return -EIO;
        buf[n] = 0;

        /* comm may contain anything: fields restart after the last ')'. */
        p = strrchr(buf, ')');
        if (!p)
                return -EIO;
        p++;
        /* Field 3 is the state, field 22 the start time. */
        for (int field = 3; field <= 22; field++) {
                while (*p == ' ')
                        p++;
                if (!*p)
                        return -EIO;
                if (field == 3)
                        *ret_state = *p;
                if (field == 22) {
                        *ret_start = strtoull(p, NULL, 10);
                        return 0;
                }
                while (*p && *p != ' ')
                        p++;
        }
        return -EIO;
}

static uint64_t self_start_time(void) {
        char state;
        uint64_t start = 0;

        (void) proc_stat(getpid(), &state, &start);
        return start;
}

static bool proc_alive(pid_t pid, uint64_t start) {
        char state = 0;
        uint64_t s = 0;

        if (kill(pid, 0) < 0 && errno == ESRCH)
                return false;
        if (proc_stat(pid, &state, &s) < 0)
                return false;
        /* The mm is released at exit, before the zombie is reaped (kfd_process_notifier_release). */
        if (state == 'Z' || state == 'X')
                return false;
        return s == start;
}

int emu_copy_from_user(void *dst, uint64_t src, size_t n) {
        static int no_vm_rw;
        struct iovec local = { dst, n }, remote = { (void *) (uintptr_t) src, n };

        if (n == 0)
                return 0;
        if (src == 0)
                return -EFAULT;
        /* process_vm_readv on ourselves turns a bad user pointer into EFAULT instead of SIGSEGV. */
        if (!__atomic_load_n(&no_vm_rw, __ATOMIC_RELAXED)) {
                ssize_t r = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
                if (r == (ssize_t) n)
                        return 0;
                if (r >= 0 || errno == EFAULT)
                        return -EFAULT;
                if (errno != ENOSYS && errno != EPERM)
                        return -EFAULT;
                __atomic_store_n(&no_vm_rw, 1, __ATOMIC_RELAXED);
        }
        memcpy(dst, (const void *) (uintptr_t) src, n);
        return 0;
}

int emu_copy_to_user(uint64_t dst, const void *src, size_t n) {
        static int no_vm_rw;
        struct iovec local = { (void *) src, n }, remote = { (void *) (uintptr_t) dst, n };

        if (n == 0)
                return 0;
        if (dst == 0)
                return -EFAULT;
        if (!__atomic_load_n(&no_vm_rw, __ATOMIC_RELAXED)) {
                ssize_t r = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
                if (r == (ssize_t) n)
                        return 0;
                if (r >= 0 || errno == EFAULT)
                        return -EFAULT;
                if (errno != ENOSYS && errno != EPERM)
                        return -EFAULT;
                __atomic_store_n(&no_vm_rw, 1, __ATOMIC_RELAXED);
        }
        memcpy((void *) (uintptr_t) dst, src, n);
        return 0;
}

/* ------------------------------------------------------------------------ */
/* (st_dev, st_ino) → object, open addressing with backward-shift deletion */

static uint32_t hash_of(uint64_t dev, uint64_t ino) {
        uint64_t x = ino * UINT64_C(0x9E3779B97F4A7C15) ^ dev * UINT64_C(0xC2B2AE3D27D4EB4F);
        x ^= x >> 29;
        return (uint32_t) x;
}

static int hash_insert(EmuKernel *k, uint64_t dev, uint64_t ino, uint32_t kind, uint32_t index) {
        EmuHashSlot *t = emu_hash(k);
        uint32_t mask = k->a->hash_capacity - 1;

        for (uint32_t i = hash_of(dev, ino) & mask, n = 0; n <= mask; i = (i + 1) & mask, n++) {
                if (t[i].ino == 0 || (t[i].ino == ino && t[i].dev == dev)) {
                        t[i] = (EmuHashSlot) { .dev = dev, .ino = ino, .kind = kind, .index = index };
                        return 0;
                }
        }
        return -ENOSPC;
}

static void hash_remove(EmuKernel *k, uint64_t dev, uint64_t ino) {
        EmuHashSlot *t = emu_hash(k);
        uint32_t mask = k->a->hash_capacity - 1;
        uint32_t i = hash_of(dev, ino) & mask;

        for (;; i = (i + 1) & mask) {
                if (t[i].ino == 0)
                        return;
                if (t[i].ino == ino && t[i].dev == dev)
                        break;
        }
        /* Shift later members of the cluster back so lookups never stop at a hole. */
        for (uint32_t j = (i + 1) & mask;; j = (j + 1) & mask) {
                uint32_t home;

                if (t[j].ino == 0)
                        break;
                home = hash_of(t[j].dev, t[j].ino) & mask;
                if (((j - home) & mask) >= ((j - i) & mask)) {
                        t[i] = t[j];
                        i = j;
                }
        }
        t[i] = (EmuHashSlot) {};
}

int emu_lookup(EmuKernel *k, uint64_t dev, uint64_t ino, uint32_t *ret_kind, uint32_t *ret_index) {
        EmuHashSlot *t = emu_hash(k);
        uint32_t mask = k->a->hash_capacity - 1;

        if (ino == 0)
                return -ENOENT;
        for (uint32_t i = hash_of(dev, ino) & mask;; i = (i + 1) & mask) {
                if (t[i].ino == 0)
                        return -ENOENT;
                if (t[i].ino == ino && t[i].dev == dev) {
                        *ret_kind = t[i].kind;
                        *ret_index = t[i].index;
                        return 0;
                }
        }
}

int emu_file_of_fd(EmuKernel *k, int fd, uint32_t *ret_kind, uint32_t *ret_index) {
        struct stat st;

        if (emu_sys_fstat(fd, &st) < 0)
                return -EBADF;
        return emu_lookup(k, st.st_dev, st.st_ino, ret_kind, ret_index);
}

/* ------------------------------------------------------------------------ */
/* Process-local descriptors */

int emu_private_fd_add(EmuKernel *k, int fd) {
        if (k->n_private == k->n_private_alloc) {
                size_t n = MAX(k->n_private_alloc * 2, (size_t) 16);
                int *p = realloc(k->private_fds, n * sizeof(int));
                if (!p)
                        return -ENOMEM;
                k->private_fds = p;
                k->n_private_alloc = n;
        }
        k->private_fds[k->n_private++] = fd;
        return 0;
}

void emu_private_fd_close(EmuKernel *k, int fd) {
        for (size_t i = 0; i < k->n_private; i++)
                if (k->private_fds[i] == fd) {
                        k->private_fds[i] = k->private_fds[--k->n_private];
                        break;
                }
        emu_sys_close(fd);
}

static int probe_add(EmuKernel *k, uint32_t file, int fd) {
        if (k->n_probes == k->n_probes_alloc) {
                size_t n = MAX(k->n_probes_alloc * 2, (size_t) 8);
                EmuProbe *p = realloc(k->probes, n * sizeof(EmuProbe));
                if (!p)
                        return -ENOMEM;
                k->probes = p;
                k->n_probes_alloc = n;
        }
        k->probes[k->n_probes++] = (EmuProbe) { .file = file, .fd = fd };
        return 0;
}

/* Whether any open file description other than ours holds a lock on the file behind fd. */
static bool description_alive(int probe_fd) {
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

        if (fcntl(probe_fd, F_OFD_GETLK, &fl) < 0)
                return true;    /* cannot tell: keep it */
        return fl.l_type != F_UNLCK;
}

static int lock_description(int fd) {
        struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET };

        if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
                return -errno;
        return 0;
}

/* ------------------------------------------------------------------------ */
/* Files */

static void file_free(EmuKernel *k, uint32_t i) {
        EmuFile *f = emu_file(k, i);

        hash_remove(k, f->dev, f->ino);
        *f = (EmuFile) {};
        k->a->n_files--;
}

static void probes_gc(EmuKernel *k) {
        for (size_t i = 0; i < k->n_probes;) {
                EmuFile *f = emu_file(k, k->probes[i].file);
                struct stat st;

                if (f->in_use && emu_sys_fstat(k->probes[i].fd, &st) == 0 &&
                    (uint64_t) st.st_ino == f->ino && (uint64_t) st.st_dev == f->dev) {
                        i++;
                        continue;
                }
                emu_sys_close(k->probes[i].fd);
                k->probes[i] = k->probes[--k->n_probes];
        }
}

static int file_new(EmuKernel *k, int fd, uint32_t kind, uint32_t minor, uint32_t proc, uint32_t *ret) {
        struct stat st;
        int r;

        if (emu_sys_fstat(fd, &st) < 0)
                return -errno;
        for (uint32_t i = 0; i < k->a->max_files; i++) {
                EmuFile *f = emu_file(k, i);

                if (f->in_use)
                        continue;
                r = hash_insert(k, st.st_dev, st.st_ino, kind, i);
                if (r < 0)
                        return r;
                *f = (EmuFile) {
                        .in_use = 1,
                        .kind = kind,
                        .minor = minor,
                        .proc = proc,
                        .acq_proc = EMU_NIL,
                        .acq_gpu = EMU_NIL,
                        .opener_pid = getpid(),
                        .opener_start = emu_proc(k, proc == EMU_NIL ? 0 : proc)->start_time,
                        .dev = st.st_dev,
                        .ino = st.st_ino,
                };
                if (proc == EMU_NIL)
                        f->opener_start = self_start_time();
                k->a->n_files++;
                *ret = i;
                return 0;
        }
        return -ENFILE;
}

/* ------------------------------------------------------------------------ */
/* Buffer objects */

int emu_bo_backing_path(EmuKernel *k, uint32_t bo_index, char *buf, size_t n) {
        int r = snprintf(buf, n, "%s/bo/%" PRIu32, k->dir, bo_index);
        return r < 0 || (size_t) r >= n ? -ENAMETOOLONG : 0;
}

int emu_bo_new(EmuKernel *k, uint32_t gpu, uint32_t domain, uint64_t size, uint32_t *ret) {
        EmuArena *a = k->a;
        uint32_t i;
        EmuBo *bo;
        int r;

        if (a->bo_free_head != EMU_NIL) {
                i = a->bo_free_head;
                a->bo_free_head = emu_bo(k, i)->next_free;
        } else if (a->bo_high_water < a->max_buffers) {
                i = a->bo_high_water++;
        } else
                return -ENOMEM;

        bo = emu_bo(k, i);
        *bo = (EmuBo) {
                .in_use = 1,
                .gpu = gpu,
                .domain = domain,
                .size = size,
                .generation = ++a->bo_generation,
                .zprev = EMU_NIL,
                .znext = EMU_NIL,
                .next_free = EMU_NIL,
        };

        if (domain != EMU_DOMAIN_USERPTR) {
                char path[PATH_MAX];
                struct stat st;
                int fd;

                r = emu_bo_backing_path(k, i, path, sizeof(path));
                if (r < 0)
                        goto fail;
                fd = emu_sys_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
                if (fd < 0 && errno == EEXIST) {
                        /* Left over by a crashed emulator run in a reused directory. */
                        (void) unlink(path);
                        fd = emu_sys_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
                }
                if (fd >= 0)
                        (void) fchmod(fd, 0666); /* other users' processes recheck it (dma-buf liveness) */
                if (fd < 0) {
                        r = -ENOMEM;
                        goto fail;
                }
                if (ftruncate(fd, (off_t) size) < 0 || emu_sys_fstat(fd, &st) < 0) {
                        emu_sys_close(fd);
                        (void) unlink(path);
                        r = -ENOMEM;
                        goto fail;
                }
                emu_sys_close(fd);
                bo->dev = st.st_dev;
                bo->ino = st.st_ino;
                r = hash_insert(k, bo->dev, bo->ino, EMU_FILE_DMABUF, i);
                if (r < 0) {
                        (void) unlink(path);
                        r = -ENOMEM;
                        goto fail;
                }
        }

        a->n_bos++;
        *ret = i;
        return 0;

fail:
        bo->in_use = 0;
        bo->next_free = a->bo_free_head;
        a->bo_free_head = i;
        return r;
}

static void zombie_unlink(EmuKernel *k, uint32_t i) {
        EmuBo *bo = emu_bo(k, i);

        if (!bo->zombie)
                return;
        if (bo->zprev != EMU_NIL)
                emu_bo(k, bo->zprev)->znext = bo->znext;
        else
                k->a->zombie_head = bo->znext;
        if (bo->znext != EMU_NIL)
                emu_bo(k, bo->znext)->zprev = bo->zprev;
        bo->zombie = 0;
        bo->zprev = bo->znext = EMU_NIL;
}

static void bo_release(EmuKernel *k, uint32_t i) {
        EmuArena *a = k->a;
        EmuBo *bo = emu_bo(k, i);
        EmuGpu *g = &a->gpus[bo->gpu];

        /* amdgpu_amdkfd_release_notify → amdgpu_amdkfd_unreserve_mem_limit. */
        g->vram_used -= bo->acct_vram;
        g->vram_used_aligned -= align_to(bo->acct_vram, EMU_VRAM_ALIGN);
        a->system_used -= bo->acct_system;
        a->ttm_used -= bo->acct_ttm;
        if (bo->domain == EMU_DOMAIN_VRAM)
                g->vram_placed -= bo->size;
        else if (bo->domain == EMU_DOMAIN_GTT)
                g->gtt_used -= bo->size;

        if (bo->ino != 0) {
                char path[PATH_MAX];

                hash_remove(k, bo->dev, bo->ino);
                if (emu_bo_backing_path(k, i, path, sizeof(path)) == 0)
                        (void) unlink(path);
        }
        zombie_unlink(k, i);
        *bo = (EmuBo) { .next_free = a->bo_free_head, .zprev = EMU_NIL, .znext = EMU_NIL };
        a->bo_free_head = i;
        a->n_bos--;
}

/* Whether some dma-buf fd of this BO is still open anywhere (any process). */
static bool bo_dmabuf_alive(EmuKernel *k, uint32_t i) {
        char path[PATH_MAX];
        bool alive;
        int fd;

        if (!emu_bo(k, i)->exported)
                return false;
        if (emu_bo_backing_path(k, i, path, sizeof(path)) < 0)
                return false;
        fd = emu_sys_open(path, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0)
                return false;
        alive = description_alive(fd);
        emu_sys_close(fd);
        return alive;
}

void emu_bo_get(EmuKernel *k, uint32_t i) {
        /* A dma-buf kept it alive with no handle; an import makes it a live BO again. */
        emu_bo(k, i)->handles++;
        zombie_unlink(k, i);
}

void emu_bo_put(EmuKernel *k, uint32_t i) {
        EmuBo *bo = emu_bo(k, i);

        if (bo->handles > 0)
                bo->handles--;
        if (bo->handles > 0)
                return;
        /* The exported dma-buf holds its own BO reference: the memory lives on until its last fd closes.
         * A dead process's teardown leaves the check of its exported BOs to emu_reap_zombies(), in one batch. */
        if ((k->defer_dmabuf_check && bo->exported) || bo_dmabuf_alive(k, i)) {
                if (!bo->zombie) {
                        k->a->zombie_gen++;
                        bo->zombie = 1;
                        bo->zprev = EMU_NIL;
                        bo->znext = k->a->zombie_head;
                        if (bo->znext != EMU_NIL)
                                emu_bo(k, bo->znext)->zprev = i;
                        k->a->zombie_head = i;
                }
                return;
        }
        bo_release(k, i);
}

/*
 * The (dev, ino) of every file some open file description holds a POSIX or OFD lock on, from one read
 * of /proc/locks: what description_alive() asks of one file, for all of them at once. A dma-buf's
 * description holds its read lock for as long as it lives (EXPORT_DMABUF, emu-ioctl.c).
 */
typedef struct LockedFiles {
        uint64_t *keys;         /* dev ^ ino * prime + 1, 0: empty */
        uint64_t *devs, *inos;
        size_t mask;
} LockedFiles;

static uint64_t locked_key(uint64_t dev, uint64_t ino) {
        return (ino * UINT64_C(0x9E3779B97F4A7C15) ^ dev) | 1;
}

static void locked_files_done(LockedFiles *l) {
        free(l->keys);
        free(l->devs);
        free(l->inos);
        *l = (LockedFiles) {};
}

static bool locked_files_has(const LockedFiles *l, uint64_t dev, uint64_t ino) {
        uint64_t key = locked_key(dev, ino);

        for (size_t i = key & l->mask; l->keys[i] != 0; i = (i + 1) & l->mask)
                if (l->keys[i] == key && l->devs[i] == dev && l->inos[i] == ino)
                        return true;
        return false;
}

static void locked_files_add(LockedFiles *l, uint64_t dev, uint64_t ino) {
        uint64_t key = locked_key(dev, ino);
        size_t i;

        for (i = key & l->mask; l->keys[i] != 0; i = (i + 1) & l->mask)
                if (l->keys[i] == key && l->devs[i] == dev && l->inos[i] == ino)
                        return;
        l->keys[i] = key;
        l->devs[i] = dev;
        l->inos[i] = ino;
}

static int locked_files_load(LockedFiles *l) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, len = 0, lines = 0, slots = 64;
        int fd;

        fd = emu_sys_open("/proc/locks", O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        for (;;) {
                ssize_t n;

                if (size - len < 65536) {
                        char *b = realloc(buf, size + 262144);
                        if (!b) {
                                emu_sys_close(fd);
                                return -ENOMEM;
                        }
                        buf = b;
                        size += 262144;
                }
                n = (ssize_t) syscall(SYS_read, fd, buf + len, size - len - 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        emu_sys_close(fd);
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        emu_sys_close(fd);
        buf[len] = '\0';
        for (size_t i = 0; i < len; i++)
                lines += buf[i] == '\n';
        while (slots < 2 * lines + 2)
                slots *= 2;
        l->keys = calloc(slots, sizeof(uint64_t));
        l->devs = calloc(slots, sizeof(uint64_t));
        l->inos = calloc(slots, sizeof(uint64_t));
        l->mask = slots - 1;
        if (!l->keys || !l->devs || !l->inos) {
                locked_files_done(l);
                return -ENOMEM;
        }
        /* "1: OFDLCK ADVISORY  READ -1 00:2d:3396351 0 EOF"; a waiter's line has "->" and holds nothing. */
        for (char *line = buf, *end; line && *line; line = end ? end + 1 : NULL) {
                unsigned maj, min;
                unsigned long long ino;
                char *p;

                end = strchr(line, '\n');
                if (end)
                        *end = '\0';
                if (strstr(line, "->") || (!strstr(line, " OFDLCK ") && !strstr(line, " POSIX ")))
                        continue;
                p = strchr(line, ':');  /* after the lock's number */
                if (!p)
                        continue;
                for (int field = 0; p && field < 4; field++) {   /* type, mode, access, pid */
                        while (*p == ' ' || *p == ':')
                                p++;
                        p = strchr(p, ' ');
                }
                if (p && sscanf(p, " %x:%x:%llu", &maj, &min, &ino) == 3)
                        locked_files_add(l, (uint64_t) makedev(maj, min), (uint64_t) ino);
        }
        return 0;
}

/* From this many zombies on, one read of /proc/locks is cheaper than an open() and a lock query each. */
#define ZOMBIE_BATCH_MIN 64U

/*
 * Whether a zombie may have died since this view last checked them all: a file description of a
 * buffer's backing file was released since (the kernel reports every last close of a file in DIR/bo
 * to an inotify watch, a process's exit included), or a buffer joined the zombies. Reads the
 * events, so what is released after this call is reported to the next one. Without a watch: yes.
 */
static bool zombies_may_have_died(EmuKernel *k) {
        union {
                struct inotify_event ev;
                char buf[4096];
        } u;
        bool changed = k->zombie_watch_fd < 0 || k->zombie_gen_checked != k->a->zombie_gen;
        ssize_t n;

        if (k->zombie_watch_fd < 0)
                return changed;
        while ((n = (ssize_t) syscall(SYS_read, k->zombie_watch_fd, u.buf, sizeof(u.buf))) != 0) {
                if (n > 0)
                        changed = true;
                else if (errno != EINTR) {
                        changed |= errno != EAGAIN;
                        break;
                }
        }
        return changed;
}

static void zombie_watch_start(EmuKernel *k) {
        char path[PATH_MAX];
        int fd;

        if (k->zombie_watch_fd != -1)
                return;
        k->zombie_watch_fd = -2;
        if ((size_t) snprintf(path, sizeof(path), "%s/bo", k->dir) >= sizeof(path))
                return;
        fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd < 0)
                return;
        if (inotify_add_watch(fd, path, IN_CLOSE_WRITE | IN_CLOSE_NOWRITE) < 0 || emu_private_fd_add(k, fd) < 0) {
                emu_sys_close(fd);
                return;
        }
        k->zombie_watch_fd = fd;
}

void emu_reap_zombies(EmuKernel *k) {
        LockedFiles locked = {};
        bool batch = false;
        uint32_t n = 0;

        for (uint32_t i = k->a->zombie_head; i != EMU_NIL && n < ZOMBIE_BATCH_MIN; i = emu_bo(k, i)->znext)
                n++;
        /* Many zombies: checked again only when one of them may have died (the kernel's check is a
         * reference count, and AVAILABLE_MEMORY does not grow with them). */
        if (n >= ZOMBIE_BATCH_MIN) {
                if (!zombies_may_have_died(k))
                        return;
                zombie_watch_start(k);
                batch = locked_files_load(&locked) >= 0;
        }
        k->zombie_gen_checked = k->a->zombie_gen;

        for (uint32_t i = k->a->zombie_head; i != EMU_NIL;) {
                EmuBo *bo = emu_bo(k, i);
                uint32_t next = bo->znext;
                /* /proc/locks is read a page at a time, and a lock taken or dropped meanwhile may shift
                 * others out of the listing: one listed was held, one missing is asked for itself. */
                bool alive = (batch && bo->exported && bo->ino != 0 && locked_files_has(&locked, bo->dev, bo->ino)) ||
                             bo_dmabuf_alive(k, i);

                if (!alive)
                        bo_release(k, i);
                i = next;
        }
        locked_files_done(&locked);
}

void emu_bo_allow(EmuKernel *k, EmuBo *bo, uint32_t file) {
        if (file == EMU_NIL)
                return;
        for (uint32_t i = 0; i < bo->n_allow; i++)
                if (bo->allow[i].file == file) {
                        bo->allow[i].refs++;
                        return;
                }
        if (bo->n_allow < EMU_BO_ALLOW_MAX)
                bo->allow[bo->n_allow++] = (EmuBoAllow) { .file = file, .refs = 1 };
        else
                bo->allow_overflow = 1; /* more importers than we track: let every file map it */
}

void emu_bo_revoke(EmuKernel *k, EmuBo *bo, uint32_t file) {
        for (uint32_t i = 0; i < bo->n_allow; i++)
                if (bo->allow[i].file == file) {
                        if (--bo->allow[i].refs == 0)
                                bo->allow[i] = bo->allow[--bo->n_allow];
                        return;
                }
}

/* ------------------------------------------------------------------------ */
/* Handles */

int emu_handle_new(EmuKernel *k, uint32_t proc, uint32_t gpu, uint32_t *ret_idr) {
        int64_t id = emu_idr_alloc(&k->a->idr, emu_idr_bits(k, proc, gpu));

        if (id < 0)
                return (int) id;
        EmuHandle *h = emu_handles(k, proc, gpu) + id;
        *h = (EmuHandle) { .bo = EMU_NIL, .dmabuf_fd = -1, .left = EMU_NIL, .right = EMU_NIL };
        emu_proc(k, proc)->pdd[gpu].n_handles++;
        *ret_idr = (uint32_t) id;
        return 0;
}

void emu_handle_free(EmuKernel *k, uint32_t proc, uint32_t gpu, uint32_t idr, bool in_owner) {
        EmuProc *p = emu_proc(k, proc);
        EmuHandle *h = emu_handles(k, proc, gpu) + idr;
        uint32_t bo = h->bo;

        if (h->mapped) {
                h->mapped = 0;
                emu_va_remove(k, proc, gpu * k->a->max_handles + idr);
        }
        if (h->dmabuf_fd >= 0 && in_owner)
                emu_private_fd_close(k, h->dmabuf_fd);
        h->dmabuf_fd = -1;
        if (bo != EMU_NIL) {
                emu_bo_revoke(k, emu_bo(k, bo), p->pdd[gpu].render_file);
                emu_bo_put(k, bo);
        }
        h->bo = EMU_NIL;
        emu_idr_remove(&k->a->idr, emu_idr_bits(k, proc, gpu), idr);
        p->pdd[gpu].n_handles--;
}

/* ------------------------------------------------------------------------ */
/* Processes */

/*
 * kfd_process_alloc_id: a secondary context's id comes from its primary's ida,
 * the lowest free one in [KFD_CONTEXT_ID_MIN = 0, KFD_CONTEXT_ID_PRIMARY - 1];
 * ids are per primary and reused once their context is gone. -ENOSPC when full.
 */
static int secondary_context_id(EmuKernel *k, uint32_t *ret) {
        EmuArena *a = k->a;
        pid_t pid = getpid();
        uint64_t start = self_start_time();

        for (uint32_t id = 0; id < 0xFFFF; id++) {
                bool used = false;

                for (uint32_t i = 0; i < a->max_processes && !used; i++) {
                        EmuProc *q = emu_proc(k, i);

                        used = q->in_use && q->secondary && q->pid == pid && q->start_time == start &&
                               q->context_id == id;
                }
                if (!used) {
                        *ret = id;
                        return 0;
                }
        }
        return -ENOSPC;
}

int emu_proc_create(EmuKernel *k, bool secondary, uint32_t *ret) {
        EmuArena *a = k->a;
        uint32_t context_id = 0xFFFF;   /* KFD_CONTEXT_ID_PRIMARY */

        if (secondary) {
                int r = secondary_context_id(k, &context_id);
                if (r < 0)
                        return r;
        }

        for (uint32_t i = 0; i < a->max_processes; i++) {
                EmuProc *p = emu_proc(k, i);

                if (p->in_use)
                        continue;
                memset(p, 0, sizeof(*p));
                p->pid = getpid();
                p->start_time = self_start_time();
                p->secondary = secondary;
                p->context_id = context_id;
                p->va_root = EMU_NIL;
                p->seq = ++a->proc_seq;
                for (uint32_t g = 0; g < a->n_gpus; g++) {
                        p->pdd[g].render_file = EMU_NIL;
                        emu_idr_init(&a->idr, emu_idr_bits(k, i, g));
                }
                p->in_use = 1;
                a->n_procs++;
                *ret = i;
                return 0;
        }
        /* kfd_create_process: allocation failure. */
        return -ENOMEM;
}

int emu_proc_teardown(EmuKernel *k, uint32_t proc, bool in_owner) {
        EmuArena *a = k->a;
        EmuProc *p = emu_proc(k, proc);

        if (!p->in_use)
                return 0;

        /*
         * kfd_process_wq_release → kfd_process_free_outstanding_kfd_bos: every
         * handle is unmapped from every GPU and freed, errors ignored; then the
         * SVM ranges, then the VMs and their DRM file references.
         */
        for (uint32_t g = 0; g < a->n_gpus; g++) {
                uint64_t *bits = emu_idr_bits(k, proc, g);

                for (int64_t id = emu_idr_next(&a->idr, bits, 0); id >= 0;
                     id = emu_idr_next(&a->idr, bits, (uint32_t) id + 1))
                        emu_handle_free(k, proc, g, (uint32_t) id, in_owner);
        }
        p->n_svm = 0;

        for (uint32_t g = 0; g < a->n_gpus; g++) {
                uint32_t fi = p->pdd[g].render_file;

                if (fi == EMU_NIL)
                        continue;
                EmuFile *f = emu_file(k, fi);
                f->acq_proc = f->acq_gpu = EMU_NIL;
                p->pdd[g].render_file = EMU_NIL;
                if (f->closed)
                        file_free(k, fi);
        }

        /* Files that die with the context: its kfd files, and render files only its process held. */
        for (uint32_t i = 0; i < a->max_files; i++) {
                EmuFile *f = emu_file(k, i);

                if (!f->in_use)
                        continue;
                if (f->kind == EMU_FILE_KFD && f->proc == proc)
                        file_free(k, i);
                else if (f->kind == EMU_FILE_RENDER && !p->secondary && f->acq_proc == EMU_NIL &&
                         f->opener_pid == p->pid && f->opener_start == p->start_time)
                        file_free(k, i);
        }

        p->in_use = 0;
        a->n_procs--;
        if (in_owner)
                probes_gc(k);
        return 0;
}

void emu_reap(EmuKernel *k) {
        pid_t self = getpid();

        for (uint32_t i = 0; i < k->a->max_processes; i++) {
                EmuProc *p = emu_proc(k, i);

                if (!p->in_use || p->pid == self)
                        continue;
                if (!proc_alive(p->pid, p->start_time)) {
                        k->defer_dmabuf_check = true;
                        (void) emu_proc_teardown(k, i, false);
                        k->defer_dmabuf_check = false;
                }
        }
        emu_reap_zombies(k);
}

uint32_t emu_current_proc(EmuKernel *k) {
        return k->proc;
}

/* A record with our pid that this image did not create: left by the image before exec(). */
static void reap_pre_exec(EmuKernel *k) {
        pid_t self = getpid();

        for (uint32_t i = 0; i < k->a->max_processes; i++) {
                EmuProc *p = emu_proc(k, i);

                if (p->in_use && p->pid == self && i != k->proc)
                        (void) emu_proc_teardown(k, i, false);
        }
}

/* ------------------------------------------------------------------------ */
/* Opens and closes */

int emu_kernel_open_kfd(EmuKernel *k, int fd) {
        uint32_t file;
        int probe, r;

        emu_check_fork(k);
        /* kfd_open → kfd_create_process: while a GPU is between pre- and post-reset
         * (kfd_is_locked()) → EINVAL, before it looks for the caller's existing process. */
        if (emu_smi_locked(k))
                return -EINVAL;
        r = emu_lock(k);
        if (r < 0)
                return r;

        emu_reap(k);
        if (k->proc == EMU_NIL || !emu_proc(k, k->proc)->in_use) {
                /* kfd_create_process: flushes the teardown of this mm's previous image first. */
                k->proc = EMU_NIL;
                reap_pre_exec(k);
                r = emu_proc_create(k, false, &k->proc);
                if (r < 0)
                        goto out;
        }

        r = file_new(k, fd, EMU_FILE_KFD, 0, k->proc, &file);
        if (r < 0)
                goto out;

        /*
         * Lifetime of the open file description: a read lock on it, and a
         * private description of the same memfd to ask "is it still locked".
         */
        r = lock_description(fd);
        if (r < 0)
                goto fail_file;
        {
                char path[64];

                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
                probe = emu_sys_open(path, O_RDWR | O_CLOEXEC, 0);
        }
        if (probe >= 0) {
                r = probe_add(k, file, probe);
                if (r < 0)
                        emu_sys_close(probe);
        }
        r = 0;
        goto out;

fail_file:
        file_free(k, file);
out:
        emu_unlock(k);
        return r;
}

int emu_kernel_open_render(EmuKernel *k, int fd, unsigned minor) {
        uint32_t file;
        bool known = false;
        int probe, r;

        emu_check_fork(k);
        for (uint32_t i = 0; i < k->a->n_gpus; i++)
                if (k->a->gpus[i].render_minor == minor)
                        known = true;
        if (!known)
                return -ENOENT;

        r = emu_lock(k);
        if (r < 0)
                return r;
        r = file_new(k, fd, EMU_FILE_RENDER, minor, EMU_NIL, &file);
        if (r == -ENFILE) {
                /* Render files of dead processes are collected lazily. */
                emu_reap(k);
                r = file_new(k, fd, EMU_FILE_RENDER, minor, EMU_NIL, &file);
        }
        if (r < 0)
                goto out;
        r = lock_description(fd);
        if (r < 0) {
                file_free(k, file);
                goto out;
        }
        {
                char path[64];

                snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
                probe = emu_sys_open(path, O_RDWR | O_CLOEXEC, 0);
        }
        if (probe >= 0 && probe_add(k, file, probe) < 0)
                emu_sys_close(probe);
        r = 0;
out:
        emu_unlock(k);
        return r;
}

void emu_kernel_file_closed(EmuKernel *k) {
        emu_check_fork(k);
        if (emu_lock(k) < 0)
                return;

        for (size_t i = 0; i < k->n_probes; i++) {
                uint32_t fi = k->probes[i].file;
                EmuFile *f = emu_file(k, fi);

                if (!f->in_use || description_alive(k->probes[i].fd))
                        continue;

                f->closed = 1;
                if (f->kind == EMU_FILE_KFD) {
                        uint32_t ctx = f->proc;

                        /* kfd_release: a secondary context is destroyed with its file; a primary is not. */
                        if (ctx != EMU_NIL && emu_proc(k, ctx)->in_use && emu_proc(k, ctx)->secondary &&
                            emu_proc(k, ctx)->pid == getpid())
                                (void) emu_proc_teardown(k, ctx, true);
                        if (f->in_use)
                                file_free(k, fi);
                } else if (f->kind == EMU_FILE_RENDER && f->acq_proc == EMU_NIL)
                        /* An acquired render file stays referenced by its VM until teardown. */
                        file_free(k, fi);
        }
        probes_gc(k);
        emu_unlock(k);
}

EmuFileKind emu_kernel_classify(EmuKernel *k, const struct stat *st, unsigned *ret_minor) {
        uint32_t kind, index;
        EmuFileKind r = EMU_FILE_NONE;

        if (ret_minor)
                *ret_minor = 0;
        if (emu_lock(k) < 0)
                return EMU_FILE_NONE;
        if (emu_lookup(k, st->st_dev, st->st_ino, &kind, &index) == 0) {
                r = kind;
                if (kind == EMU_FILE_RENDER && ret_minor)
                        *ret_minor = emu_file(k, index)->minor;
        }
        emu_unlock(k);
        return r;
}

bool emu_kernel_fake_stat(EmuKernel *k, struct stat *st) {
        unsigned minor;

        /* Cheap filter first: device files are memfds, dma-bufs and everything else are not faked. */
        if (k->memfd_dev == 0 || st->st_dev != k->memfd_dev || !S_ISREG(st->st_mode))
                return false;
        switch (emu_kernel_classify(k, st, &minor)) {
        case EMU_FILE_KFD:
                st->st_rdev = makedev(EMU_KFD_MAJOR, 0);
                break;
        case EMU_FILE_RENDER:
                st->st_rdev = makedev(EMU_DRM_MAJOR, minor);
                break;
        default:
                return false;
        }
        st->st_mode = S_IFCHR | 0666;
        st->st_size = 0;
        st->st_blocks = 0;
        return true;
}

void emu_kernel_process_exit(EmuKernel *k) {
        pid_t self = getpid();

        if (!k || k->pid != self)
                return;
        if (emu_lock(k) < 0)
                return;
        /* The mm goes away: kfd_process_notifier_release for the primary and every secondary. */
        for (uint32_t i = 0; i < k->a->max_processes; i++) {
                EmuProc *p = emu_proc(k, i);

                if (p->in_use && p->pid == self)
                        (void) emu_proc_teardown(k, i, true);
        }
        k->proc = EMU_NIL;
        emu_unlock(k);
}

/* ------------------------------------------------------------------------ */
/* mmap: kfd_mmap and drm_gem_mmap → amdgpu_gem_object_mmap */

static void *kfd_mmap(EmuKernel *k, void *addr, size_t len, int prot, int flags, uint64_t off) {
        uint32_t gpu_id = (uint32_t) ((off & EMU_KFD_MMAP_GPU_ID_MASK) >> EMU_KFD_MMAP_GPU_ID_SHIFT);
        bool dev = gpu_id != 0 && emu_gpu_index(k, gpu_id) >= 0;
        /* kfd_mmap: the caller's own process, not the file's (kfd_get_process(current)). */
        if (k->proc == EMU_NIL || !emu_proc(k, k->proc)->in_use) {
                errno = EINVAL;
                return MAP_FAILED;
        }
        switch (off & EMU_KFD_MMAP_TYPE_MASK) {
        case EMU_KFD_MMAP_TYPE_MMIO:
                if (!dev) {
                        errno = ENODEV;
                        return MAP_FAILED;
                }
                /* kfd_mmio_mmap: exactly one page. */
                if (len != EMU_PAGE_SIZE) {
                        errno = EINVAL;
                        return MAP_FAILED;
                }
                /* The HDP flush page: writes go nowhere, like a register nobody reads back. */
                return emu_sys_mmap(addr, len, prot, (flags & ~MAP_TYPE) | MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        case EMU_KFD_MMAP_TYPE_DOORBELL:
                if (!dev) {
                        errno = ENODEV;
                        return MAP_FAILED;
                }
                /* Queue doorbells: queues are not emulated, so no doorbell page exists. */
                errno = EINVAL;
                return MAP_FAILED;
        default:
                /* Events page and reserved memory: not emulated (no event page was created). */
                errno = EINVAL;
                return MAP_FAILED;
        }
}

static void *render_mmap(EmuKernel *k, uint32_t file, void *addr, size_t len, int prot, int flags, uint64_t off) {
        char path[PATH_MAX];
        uint64_t idx, inner;
        EmuBo *bo;
        bool allowed = false, anon_none = false;
        void *p;
        int fd, r;

        if (off < EMU_GEM_OFFSET_BASE || len == 0) {
                errno = EINVAL;
                return MAP_FAILED;
        }
        idx = (off - EMU_GEM_OFFSET_BASE) >> EMU_GEM_WINDOW_SHIFT;
        inner = (off - EMU_GEM_OFFSET_BASE) & ((UINT64_C(1) << EMU_GEM_WINDOW_SHIFT) - 1);

        r = emu_lock(k);
        if (r < 0) {
                errno = -r;
                return MAP_FAILED;
        }
        if (idx >= k->a->max_buffers || !emu_bo(k, (uint32_t) idx)->in_use ||
            inner + align_to(len, EMU_PAGE_SIZE) > emu_bo(k, (uint32_t) idx)->size) {
                /* drm_vma_offset_lookup_locked found no node covering the range. */
                emu_unlock(k);
                errno = EINVAL;
                return MAP_FAILED;
        }
        bo = emu_bo(k, (uint32_t) idx);
        allowed = bo->allow_overflow;
        for (uint32_t i = 0; i < bo->n_allow && !allowed; i++)
                allowed = bo->allow[i].file == file;
        if (!allowed) {
                /* drm_vma_node_is_allowed: this DRM file was never granted the BO. */
                emu_unlock(k);
                errno = EACCES;
                return MAP_FAILED;
        }
        if (bo->domain == EMU_DOMAIN_USERPTR) {
                /* amdgpu_gem_object_mmap: userptr BOs are never CPU-mapped through the device. */
                emu_unlock(k);
                errno = EPERM;
                return MAP_FAILED;
        }
        if (bo->domain == EMU_DOMAIN_VRAM && !(bo->alloc_flags & KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC)) {
                /*
                 * AMDGPU_GEM_CREATE_NO_CPU_ACCESS. amdgpu_gem_object_mmap
                 * tolerates the thunk's PROT_NONE MAP_PRIVATE placeholder
                 * ("Workaround for Thunk bug"); anything accessible is refused.
                 */
                if (prot == PROT_NONE && (flags & MAP_TYPE) == MAP_PRIVATE)
                        anon_none = true;
                else {
                        emu_unlock(k);
                        errno = EPERM;
                        return MAP_FAILED;
                }
        }
        r = emu_bo_backing_path(k, (uint32_t) idx, path, sizeof(path));
        emu_unlock(k);
        if (r < 0) {
                errno = -r;
                return MAP_FAILED;
        }

        if (anon_none)
                return emu_sys_mmap(addr, len, PROT_NONE,
                                    (flags & ~MAP_TYPE) | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

        fd = emu_sys_open(path, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0) {
                errno = EINVAL; /* freed meanwhile */
                return MAP_FAILED;
        }
        p = emu_sys_mmap(addr, len, prot, flags, fd, (off_t) inner);
        r = errno;
        emu_sys_close(fd);
        errno = r;
        return p;
}

void *emu_kernel_mmap(EmuKernel *k, void *addr, size_t len, int prot, int flags, int fd, off_t off) {
        struct stat st;
        uint32_t kind, index;
        void *p;
        int r;

        emu_check_fork(k);
        if (emu_sys_fstat(fd, &st) < 0) {
                errno = EBADF;
                return MAP_FAILED;
        }
        r = emu_lock(k);
        if (r < 0) {
                errno = -r;
                return MAP_FAILED;
        }
        r = emu_lookup(k, st.st_dev, st.st_ino, &kind, &index);
        emu_unlock(k);

        if (r < 0 || kind == EMU_FILE_DMABUF)
                /* A dma-buf is the shmem file itself: the real mmap is the right one. */
                p = emu_sys_mmap(addr, len, prot, flags, fd, off);
        else if (kind == EMU_FILE_KFD)
                p = kfd_mmap(k, addr, len, prot, flags, (uint64_t) off);
        else
                p = render_mmap(k, index, addr, len, prot, flags, (uint64_t) off);
        return p;
}

/* ------------------------------------------------------------------------ */
/* CPU unmaps: the MMU notifier's MMU_NOTIFY_UNMAP → svm_range_unmap_from_cpu */

/* 1: pid has exited (a zombie or reaped), 0: it still runs. */
static int process_dead(pid_t pid) {
        char state = 0;
        uint64_t start;

        if (proc_stat(pid, &state, &start) < 0)
                return 1;
        return state == 'Z' || state == 'X';
}

int emu_kernel_kill(EmuKernel *k, pid_t pid, uint64_t timeout_usec) {
        uint64_t waited = 0;
        int r;

        if (pid <= 0)
                return -EINVAL;
        r = emu_lock(k);
        if (r < 0)
                return r;
        if (kill(pid, SIGKILL) < 0) {
                r = -errno;
                emu_unlock(k);
                return r;
        }
        /* If pid waits for the lock, it dies there; if it runs elsewhere, it dies there: never inside. */
        while (!process_dead(pid)) {
                if (waited >= timeout_usec) {
                        r = -ETIMEDOUT;
                        break;
                }
                (void) usleep(200);
                waited += 200;
        }
        emu_unlock(k);
        return r;
}

int emu_kernel_cpu_unmap(EmuKernel *k, uint64_t addr, uint64_t len) {
        uint64_t start, end;
        uint32_t proc;
        EmuProc *p;
        int r;

        /*
         * Every munmap and MAP_FIXED mmap of the process comes here: without a
         * KFD context or without SVM ranges, no system call and no lock.
         */
        proc = k->proc;
        if (proc == EMU_NIL || len == 0)
                return 0;
        p = emu_proc(k, proc);
        if (__atomic_load_n(&p->n_svm, __ATOMIC_RELAXED) == 0)
                return 0;
        /* A forked child has its own mm: the parent's ranges are not its to drop. */
        emu_check_fork(k);
        proc = k->proc;
        if (proc == EMU_NIL)
                return 0;

        /* The notifier's interval is whole pages: [addr & PAGE_MASK, PAGE_ALIGN(addr + len)). */
        start = addr & ~(EMU_PAGE_SIZE - 1);
        if (__builtin_add_overflow(addr, len, &end) || end > UINT64_MAX - (EMU_PAGE_SIZE - 1))
                end = UINT64_MAX;
        else
                end = align_to(end, EMU_PAGE_SIZE);

        r = emu_lock(k);
        if (r < 0)
                return r;
        /* Only the primary context has SVM ranges (secondary ones refuse the ioctl). */
        p = emu_proc(k, proc);
        if (p->in_use && !p->secondary && p->pid == k->pid)
                emu_svm_unmap(k, proc, start, end);
        emu_unlock(k);
        return 0;
}

/* ------------------------------------------------------------------------ */
/* Misc API */

uint64_t emu_kernel_gpu_clock(void) {
        struct timespec ts;

        /* gpu_counter_freq is 100 MHz (the xclk of DEV_INFO); the counter never stops. */
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 100000000ULL + (uint64_t) ts.tv_nsec / 10;
}

int emu_kernel_mem_usage(EmuKernel *k, uint32_t gpu_id, uint64_t *ret_vram_used, uint64_t *ret_gtt_used) {
        int g, r;

        emu_check_fork(k);
        g = emu_gpu_index(k, gpu_id);
        if (g < 0)
                return -ENODEV;
        r = emu_lock(k);
        if (r < 0)
                return r;
        emu_reap_zombies(k);
        if (ret_vram_used)
                *ret_vram_used = k->a->gpus[g].vram_placed;
        if (ret_gtt_used)
                *ret_gtt_used = k->a->gpus[g].gtt_used;
        emu_unlock(k);
        return 0;
}

int emu_kernel_set_profile(EmuKernel *k, EmuProfile p) {
        if ((unsigned) p >= _EMU_PROFILE_MAX)
                return -EINVAL;
        __atomic_store_n(&k->a->profile, (uint32_t) p, __ATOMIC_RELAXED);
        return 0;
}

static const char *const profile_table[_EMU_PROFILE_MAX] = {
        [EMU_PROFILE_NONE] = "none",
        [EMU_PROFILE_REALISTIC] = "realistic",
};

const char *emu_profile_to_string(EmuProfile p) {
        return (unsigned) p < _EMU_PROFILE_MAX ? profile_table[p] : NULL;
}

EmuProfile emu_profile_from_string(const char *s) {
        for (unsigned i = 0; s && i < _EMU_PROFILE_MAX; i++)
                if (streq(s, profile_table[i]))
                        return (EmuProfile) i;
        return _EMU_PROFILE_MAX;
}

/* Until tests/kfd-emu/drm provides the DRM side, render-node ioctls fail like an unknown one. */
__attribute__((weak)) int emu_drm_ioctl(EmuKernel *k, unsigned minor, unsigned long cmd, void *arg) {
        return -EINVAL;
}
