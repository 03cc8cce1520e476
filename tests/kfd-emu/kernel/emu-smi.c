/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * SMI events: kfd_smi_events.c (the listeners, their mask and FIFO, the line
 * formats), and the two GPU events svmd acts on, as the kernel produces them:
 * a reset (kgd2kfd_pre_reset / kgd2kfd_post_reset of kfd_device.c) and a VM
 * fault (kfd_smi_event_update_vmfault). See emu-smi.h and docs/emulator.md.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#include "emu-arena.h"
#include "emu-smi.h"
#include "kfd-uapi.h"
#include "macro.h"

#define SMI_MAGIC UINT64_C(0x31494d5344464b00)  /* "\0KFDSMI1" */
#define SMI_MAX_CLIENTS 64
/* The kernel's kfifo is MAX_KFIFO_SIZE (1024, 8192 in newer kernels); a pipe holds at least a page. */
#define SMI_FIFO_SIZE 4096
#define SMI_LOCAL_FDS 64

/* Event ids of include/uapi/linux/kfd_ioctl.h (the system header may predate some). */
enum {
        SMI_VMFAULT = 1,
        SMI_GPU_PRE_RESET = 3,
        SMI_GPU_POST_RESET = 4,
        SMI_QUEUE_EVICTION = 9,
        SMI_ALL_PROCESS = 64,
};
#define SMI_MASK(i) (UINT64_C(1) << ((i) - 1))
#define SMI_MSG_SIZE 96                         /* KFD_SMI_EVENT_MSG_SIZE */
#define SMI_TRIGGER_SUSPEND 3                   /* KFD_QUEUE_EVICTION_TRIGGER_SUSPEND */

typedef struct SmiClient {
        uint32_t in_use;
        uint32_t id;                    /* DIR/smi/<id> */
        int32_t pid;                    /* current->tgid at open */
        uint32_t gpu;                   /* GPU index */
        uint32_t suser;                 /* capable(CAP_SYS_ADMIN) at open */
        uint64_t events;                /* the mask last written */
} SmiClient;

typedef struct SmiState {
        uint64_t magic;
        uint32_t next_id;
        uint32_t locked;                /* kfd_locked: GPUs between pre- and post-reset */
        uint32_t reset_seq[EMU_MAX_GPUS];       /* kfd_node.reset_seq_num */
        uint32_t resetting[EMU_MAX_GPUS];
        SmiClient clients[SMI_MAX_CLIENTS];
} SmiState;

/* Process-local: the mapped state and this process's listener fds. */
static SmiState *smi;
static pid_t smi_pid;
static struct {
        int fd;
        uint32_t id;
} local_fds[SMI_LOCAL_FDS];
unsigned emu_smi_n_fds;

static int smi_path(EmuKernel *k, const char *name, char *buf, size_t n) {
        int r = snprintf(buf, n, "%s/smi/%s", emu_kernel_dir(k), name);
        return r < 0 || (size_t) r >= n ? -ENAMETOOLONG : 0;
}

/* Map DIR/smi/state, creating it on first use. Under the arena lock. */
static int smi_get(EmuKernel *k) {
        char path[4096];
        struct stat st;
        void *p;
        int fd, r;

        if (smi && smi_pid == getpid())
                return 0;
        r = smi_path(k, "", path, sizeof(path));
        if (r < 0)
                return r;
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
                return -errno;
        r = smi_path(k, "state", path, sizeof(path));
        if (r < 0)
                return r;
        fd = emu_sys_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        if (emu_sys_fstat(fd, &st) < 0 || (st.st_size < (off_t) sizeof(SmiState) &&
                                            ftruncate(fd, sizeof(SmiState)) < 0)) {
                r = -errno;
                emu_sys_close(fd);
                return r;
        }
        p = emu_sys_mmap(NULL, sizeof(SmiState), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        r = p == MAP_FAILED ? -errno : 0;
        emu_sys_close(fd);
        if (r < 0)
                return r;
        smi = p;
        smi_pid = getpid();
        if (smi->magic != SMI_MAGIC) {
                memset(smi, 0, sizeof(*smi));
                smi->magic = SMI_MAGIC;
        }
        return 0;
}

static bool self_cap_sys_admin(void) {
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct d[2] = {};

        if (syscall(SYS_capget, &h, d) < 0)
                return false;
        return d[CAP_SYS_ADMIN / 32].effective & (1U << (CAP_SYS_ADMIN % 32));
}

int emu_smi_open(EmuKernel *k, uint32_t proc, uint32_t gpu_id, uint32_t *ret_fd) {
        char name[32], path[4096];
        SmiClient *c = NULL;
        int g, fd, r;

        (void) proc;
        r = emu_lock(k);
        if (r < 0)
                return r;
        r = smi_get(k);
        if (r < 0)
                goto out;
        /* kfd_ioctl_smi_events: no device data for gpuid in this process → EINVAL. */
        g = emu_gpu_index(k, gpu_id);
        if (g < 0) {
                r = -EINVAL;
                goto out;
        }
        for (size_t i = 0; i < SMI_MAX_CLIENTS && !c; i++)
                if (!smi->clients[i].in_use)
                        c = &smi->clients[i];
        if (!c || emu_smi_n_fds >= SMI_LOCAL_FDS) {
                /* kfd_smi_event_open: kzalloc/kfifo_alloc failures. */
                r = -ENOMEM;
                goto out;
        }
        *c = (SmiClient) { .id = ++smi->next_id, .pid = getpid(), .gpu = (uint32_t) g,
                           .suser = self_cap_sys_admin() };
        snprintf(name, sizeof(name), "%" PRIu32, c->id);
        r = smi_path(k, name, path, sizeof(path));
        if (r < 0)
                goto out;
        (void) unlink(path);
        if (mkfifo(path, 0600) < 0) {
                r = -errno;
                goto out;
        }
        /* anon_inode_getfd(..., O_RDWR): no O_CLOEXEC, as the kernel's. Nonblocking: the kernel's read
         * never waits, it returns EAGAIN on an empty FIFO. */
        fd = emu_sys_open(path, O_RDWR | O_NONBLOCK, 0);
        if (fd < 0) {
                r = -errno;
                (void) unlink(path);
                goto out;
        }
        (void) fcntl(fd, F_SETPIPE_SZ, SMI_FIFO_SIZE);
        c->in_use = 1;
        local_fds[emu_smi_n_fds].fd = fd;
        local_fds[emu_smi_n_fds].id = c->id;
        __atomic_store_n(&emu_smi_n_fds, emu_smi_n_fds + 1, __ATOMIC_RELEASE);
        *ret_fd = (uint32_t) fd;
        r = 0;
out:
        emu_unlock(k);
        return r;
}

static SmiClient *client_by_id(uint32_t id) {
        for (size_t i = 0; i < SMI_MAX_CLIENTS; i++)
                if (smi->clients[i].in_use && smi->clients[i].id == id)
                        return &smi->clients[i];
        return NULL;
}

static int local_index(int fd) {
        unsigned n = __atomic_load_n(&emu_smi_n_fds, __ATOMIC_ACQUIRE);

        for (unsigned i = 0; i < n; i++)
                if (local_fds[i].fd == fd)
                        return (int) i;
        return -1;
}

bool emu_smi_write(EmuKernel *k, int fd, const void *buf, size_t n, ssize_t *ret) {
        uint64_t events;
        SmiClient *c;
        int i = local_index(fd);

        if (i < 0)
                return false;
        /* kfd_smi_ev_write: fewer than 8 bytes (or an unreadable buffer) → EFAULT. */
        if (n < sizeof(events) || !buf) {
                *ret = -EFAULT;
                return true;
        }
        memcpy(&events, buf, sizeof(events));
        if (emu_lock(k) < 0) {
                *ret = -EIO;
                return true;
        }
        c = smi_get(k) < 0 ? NULL : client_by_id(local_fds[i].id);
        if (c)
                c->events = events;
        emu_unlock(k);
        *ret = sizeof(events);
        return true;
}

static void client_release(EmuKernel *k, SmiClient *c) {
        char name[32], path[4096];

        snprintf(name, sizeof(name), "%" PRIu32, c->id);
        if (smi_path(k, name, path, sizeof(path)) >= 0)
                (void) unlink(path);
        c->in_use = 0;
}

void emu_smi_closed(EmuKernel *k, int fd) {
        int i = local_index(fd);
        SmiClient *c;

        if (i < 0)
                return;
        if (emu_lock(k) >= 0) {
                /* kfd_smi_ev_release: the listener leaves the device's list. */
                c = smi_get(k) < 0 ? NULL : client_by_id(local_fds[i].id);
                if (c)
                        client_release(k, c);
                local_fds[i] = local_fds[emu_smi_n_fds - 1];
                __atomic_store_n(&emu_smi_n_fds, emu_smi_n_fds - 1, __ATOMIC_RELEASE);
                emu_unlock(k);
        }
}

/* kfd_smi_ev_enabled: events of one process (pid != 0) reach its own listeners, and a
 * CAP_SYS_ADMIN listener that asked for KFD_SMI_EVENT_ALL_PROCESS; pid 0 reaches everyone. */
static bool client_wants(const SmiClient *c, pid_t pid, unsigned event) {
        if (pid != 0 && c->pid != pid && !(c->suser && (c->events & SMI_MASK(SMI_ALL_PROCESS))))
                return false;
        return c->events & SMI_MASK(event);
}

/* add_event_to_kfifo: the whole line or, when the FIFO has no room for it, nothing. Under the lock. */
static void deliver(EmuKernel *k, uint32_t gpu, pid_t pid, unsigned event, const char *line) {
        size_t len = strlen(line);

        for (size_t i = 0; i < SMI_MAX_CLIENTS; i++) {
                SmiClient *c = &smi->clients[i];
                char name[32], path[4096];
                int fd;

                if (!c->in_use || c->gpu != gpu || !client_wants(c, pid, event))
                        continue;
                snprintf(name, sizeof(name), "%" PRIu32, c->id);
                if (smi_path(k, name, path, sizeof(path)) < 0)
                        continue;
                fd = emu_sys_open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC, 0);
                if (fd < 0) {
                        /* ENXIO: no reader, the listener's process is gone without a close we saw. */
                        if (errno == ENXIO || errno == ENOENT)
                                client_release(k, c);
                        continue;
                }
                /* Under PIPE_BUF a pipe write is all or nothing: EAGAIN is the kernel's "no space left". */
                (void) syscall(SYS_write, fd, line, len);
                emu_sys_close(fd);
        }
}

/* kfd_smi_event_add: "<event in hex> " and the event's format, at most KFD_SMI_EVENT_MSG_SIZE. */
__attribute__((format(printf, 5, 6)))
static void smi_event(EmuKernel *k, uint32_t gpu, pid_t pid, unsigned event, const char *fmt, ...) {
        char line[SMI_MSG_SIZE];
        va_list ap;
        int n;

        n = snprintf(line, sizeof(line), "%x ", event);
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof(line) - (size_t) n, fmt, ap);
        va_end(ap);
        deliver(k, gpu, pid, event, line);
}

static long long boottime_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_BOOTTIME, &ts);
        return (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* VRAM contents are lost: the backing pages of every VRAM buffer of the GPU go (they read as zeros). */
static void lose_vram(EmuKernel *k, uint32_t gpu) {
        for (uint32_t i = 0; i < k->a->bo_high_water; i++) {
                EmuBo *bo = emu_bo(k, i);
                char path[4096];
                int fd;

                if (!bo->in_use || bo->gpu != gpu || bo->domain != EMU_DOMAIN_VRAM)
                        continue;
                if (emu_bo_backing_path(k, i, path, sizeof(path)) < 0)
                        continue;
                fd = emu_sys_open(path, O_RDWR | O_CLOEXEC, 0);
                if (fd < 0)
                        continue;
                (void) fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t) bo->size);
                emu_sys_close(fd);
        }
}

/* Take the lock and find the GPU's index: on success the caller unlocks. */
static int smi_lock_gpu(EmuKernel *k, uint32_t gpu_id, int *ret_g) {
        int g, r;

        r = emu_lock(k);
        if (r < 0)
                return r;
        r = smi_get(k);
        if (r >= 0 && (g = emu_gpu_index(k, gpu_id)) < 0)
                r = -ENODEV;
        if (r < 0) {
                emu_unlock(k);
                return r;
        }
        *ret_g = g;
        return 0;
}

int emu_smi_reset_begin(EmuKernel *k, uint32_t gpu_id, const char *cause, bool drop_line) {
        int g, r;

        r = smi_lock_gpu(k, gpu_id, &g);
        if (r < 0)
                return r;
        if (smi->resetting[g]) {
                r = -EBUSY;
                goto out;
        }
        emu_reap(k);
        /* kgd2kfd_pre_reset → kfd_smi_event_update_gpu_reset(node, false, reset_context): the
         * sequence number counts pre-resets; the line carries amdgpu_reset_get_desc()'s text. */
        smi->reset_seq[g]++;
        smi->resetting[g] = 1;
        if (!drop_line)
                smi_event(k, (uint32_t) g, 0, SMI_GPU_PRE_RESET, "%x %s\n", smi->reset_seq[g], cause ?: "unknown");

        /* kgd2kfd_suspend(kfd, false): the first locked device suspends every KFD process
         * (kfd_suspend_all_processes → kfd_process_evict_queues), which reports a queue eviction
         * for each of the process's devices (kfd_smi_event_queue_eviction, trigger SUSPEND). */
        if (smi->locked++ == 0)
                for (uint32_t p = 0; p < k->a->max_processes; p++) {
                        EmuProc *proc = emu_proc(k, p);

                        if (!proc->in_use)
                                continue;
                        for (uint32_t i = 0; i < k->a->n_gpus; i++)
                                smi_event(k, i, proc->pid, SMI_QUEUE_EVICTION, "%lld -%d %x %d\n", boottime_ns(),
                                          (int) proc->pid, k->a->gpus[i].gpu_id, SMI_TRIGGER_SUSPEND);
                }
        /* The ASIC reset itself: VRAM is not preserved (kfd_signal_reset_event tells every process
         * memory_lost = 1). Buffers, handles, mappings and dma-bufs stay; their VRAM bytes do not. */
        lose_vram(k, (uint32_t) g);
out:
        emu_unlock(k);
        return r;
}

int emu_smi_reset_end(EmuKernel *k, uint32_t gpu_id) {
        int g, r;

        r = smi_lock_gpu(k, gpu_id, &g);
        if (r < 0)
                return r;
        if (!smi->resetting[g]) {
                r = -EALREADY;
                goto out;
        }
        /* kgd2kfd_post_reset: kfd_resume(node), --kfd_locked, then the POST_RESET line with an empty
         * cause (reset_context is NULL). Existing processes are not resumed ("Fix me" in the kernel):
         * their queues stay evicted, so no QUEUE_RESTORE follows. */
        smi->resetting[g] = 0;
        if (smi->locked > 0)
                smi->locked--;
        smi_event(k, (uint32_t) g, 0, SMI_GPU_POST_RESET, "%x %s\n", smi->reset_seq[g], "");
out:
        emu_unlock(k);
        return r;
}

bool emu_smi_locked(EmuKernel *k) {
        bool locked;

        if (emu_lock(k) < 0)
                return false;
        locked = smi_get(k) >= 0 && smi->locked > 0;
        emu_unlock(k);
        return locked;
}

typedef struct MapsAddr {
        uint32_t gpu;
        bool found;
} MapsAddr;

static int maps_addr_cb(EmuKernel *k, uint32_t proc, uint32_t link, void *userdata) {
        MapsAddr *m = userdata;

        if (emu_link(k, proc, link)->mapped & (UINT32_C(1) << m->gpu)) {
                m->found = true;
                return 1;
        }
        return 0;
}

static void read_comm(pid_t pid, char *buf, size_t n) {
        char path[64];
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/comm", (int) pid);
        buf[0] = 0;
        f = fopen(path, "re");
        if (!f)
                return;
        if (fgets(buf, (int) n, f))
                buf[strcspn(buf, "\n")] = 0;
        fclose(f);
}

int emu_smi_vmfault(EmuKernel *k, uint32_t gpu_id, uint64_t addr, pid_t pid, pid_t *ret_pid) {
        char comm[17];          /* TASK_COMM_LEN */
        pid_t found = 0;
        int g, r;

        r = smi_lock_gpu(k, gpu_id, &g);
        if (r < 0)
                return r;
        emu_reap(k);
        if (pid == 0) {
                for (uint32_t p = 0; p < k->a->max_processes; p++) {
                        EmuProc *proc = emu_proc(k, p);
                        MapsAddr m = { .gpu = (uint32_t) g };

                        if (!proc->in_use)
                                continue;
                        (void) emu_va_overlaps(k, p, addr, addr + 1, maps_addr_cb, &m);
                        if (!m.found && !emu_svm_overlaps(k, p, addr & ~(EMU_PAGE_SIZE - 1),
                                                          (addr & ~(EMU_PAGE_SIZE - 1)) + EMU_PAGE_SIZE))
                                continue;
                        if (found != 0 && found != proc->pid) {
                                r = -ENOTUNIQ;
                                goto out;
                        }
                        found = proc->pid;
                }
                if (found == 0) {
                        r = -ENOENT;
                        goto out;
                }
                pid = found;
        }
        /* kfd_smi_event_update_vmfault: "pid:task name" of the faulting VM's task; the address is
         * not part of the line (the kernel logs it, and signals it to the faulting process's own
         * memory exception events, kfd_signal_vm_fault_event). Reported to every listener. */
        read_comm(pid, comm, sizeof(comm));
        smi_event(k, (uint32_t) g, 0, SMI_VMFAULT, "%x:%s\n", (unsigned) pid, comm);
        *ret_pid = pid;
out:
        emu_unlock(k);
        return r;
}

json_t *emu_smi_dump(EmuKernel *k) {
        json_t *o = json_object(), *gpus = json_array(), *clients = json_array();

        if (!o || !gpus || !clients || smi_get(k) < 0) {
                json_decref(o);
                json_decref(gpus);
                json_decref(clients);
                return NULL;
        }
        for (uint32_t i = 0; i < k->a->n_gpus; i++)
                json_array_append_new(gpus, json_pack("{s:I, s:I, s:b}", "gpu_id", (json_int_t) k->a->gpus[i].gpu_id,
                                                      "reset_seq", (json_int_t) smi->reset_seq[i],
                                                      "resetting", (int) smi->resetting[i]));
        for (size_t i = 0; i < SMI_MAX_CLIENTS; i++) {
                SmiClient *c = &smi->clients[i];

                if (c->in_use)
                        json_array_append_new(clients, json_pack("{s:I, s:I, s:I, s:b}",
                                                                 "pid", (json_int_t) c->pid,
                                                                 "gpu_id", (json_int_t) k->a->gpus[c->gpu].gpu_id,
                                                                 "events", (json_int_t) c->events,
                                                                 "all_process_allowed", (int) c->suser));
        }
        json_object_set_new(o, "gpus", gpus);
        json_object_set_new(o, "listeners", clients);
        return o;
}
