/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The kernel-contract probe. Each check_*() function exercises one behaviour
 * svmd relies on (docs/hardware.md, "The checks", which also says which
 * outcomes are fatal and why), on every GPU, with scratch buffers at the
 * probe's own VAs, and records a ProbeResult. Scratch buffers are tracked so
 * that check_cleanup() frees whatever a failed check left behind: the node
 * holds nothing of the probe afterwards (docs/hardware.md).
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "health.h"
#include "kfd-device.h"
#include "kfd-ioctl.h"
#include "kfd-svm.h"
#include "kfd-uapi.h"
#include "probe.h"

#define PROBE_MAX_GPUS 64U
#define PROBE_SCRATCH_MAX 64U
#define PROBE_VA_BASE (UINT64_C(1) << 32)
#define PROBE_SZ_2M (UINT64_C(2) << 20)
#define PROBE_SZ_64K (UINT64_C(64) << 10)
/* KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE: the UAPI header spells it (1 << 31), which overflows an int
 * where it is computed at run time (UBSan says so). */
#define PROBE_WRITABLE (UINT32_C(1) << 31)
#define PROBE_VRAM_FLAGS (KFD_IOC_ALLOC_MEM_FLAGS_VRAM | PROBE_WRITABLE)
#define PROBE_GTT_FLAGS (KFD_IOC_ALLOC_MEM_FLAGS_GTT | PROBE_WRITABLE)
/* A gpu_id no topology has: the kernel's pdd lookup fails on 0. */
#define PROBE_BAD_GPU_ID 0U

typedef struct Scratch {
        uint64_t handle;
        bool used;
} Scratch;

typedef struct Probe {
        ProbeReport *report;
        KfdDevice *kfd;
        int fd;
        size_t n_gpus;
        uint32_t gpu_ids[PROBE_MAX_GPUS];
        char on_all[48];                /* "On the GPU" or "On all 4 GPUs", for results */
        uint64_t next_va;
        Scratch scratch[PROBE_SCRATCH_MAX];
        uint64_t available_start[PROBE_MAX_GPUS];
        bool have_available_start;
        char *device_error;
} Probe;

static const char *const status_table[_PROBE_STATUS_MAX] = {
        [PROBE_PASS]    = "pass",
        [PROBE_DIFFERS] = "differs",
        [PROBE_FAIL]    = "fail",
        [PROBE_SKIPPED] = "skipped",
};

static const char *const check_table[_PROBE_CHECK_MAX] = {
        [PROBE_CHECK_INTERFACE_VERSION] = "interface-version",
        [PROBE_CHECK_GPUS]              = "gpus",
        [PROBE_CHECK_ACQUIRE_VM]        = "acquire-vm",
        [PROBE_CHECK_AVAILABLE_MEMORY]  = "available-memory",
        [PROBE_CHECK_MAP_RESTART]       = "map-restart",
        [PROBE_CHECK_MAP_MAPPED]        = "map-mapped-noop",
        [PROBE_CHECK_UNMAP_UNMAPPED]    = "unmap-unmapped-einval",
        [PROBE_CHECK_FREE_MAPPED]       = "free-mapped-ebusy",
        [PROBE_CHECK_HANDLE_REUSE]      = "handle-reuse",
        [PROBE_CHECK_DMABUF]            = "dmabuf-between-processes",
        [PROBE_CHECK_SVM_ATTRIBUTES]    = "svm-attributes",
        [PROBE_CHECK_XNACK]             = "xnack-mode",
        [PROBE_CHECK_SECONDARY_CONTEXT] = "secondary-context",
        [PROBE_CHECK_SMI_EVENTS]        = "smi-events",
        [PROBE_CHECK_CLEANUP]           = "cleanup",
};

const char *probe_status_to_string(ProbeStatus s) {
        return s >= 0 && s < _PROBE_STATUS_MAX ? status_table[s] : NULL;
}

const char *probe_check_to_string(ProbeCheck c) {
        return c >= 0 && c < _PROBE_CHECK_MAX ? check_table[c] : NULL;
}

_printf_(1, 0)
static char *vstrf(const char *format, va_list ap) {
        char *s;

        if (vasprintf(&s, format, ap) < 0)
                return NULL;
        return s;
}

_printf_(1, 2)
static char *strf(const char *format, ...) {
        va_list ap;
        char *s;

        va_start(ap, format);
        s = vstrf(format, ap);
        va_end(ap);
        return s;
}

/* Record check c. found is formatted; svmd is a fixed sentence (or NULL). A check is recorded once. */
_printf_(5, 6)
static void result(Probe *p, ProbeCheck c, ProbeStatus s, const char *svmd, const char *found, ...) {
        ProbeResult *res = &p->report->results[c];
        va_list ap;

        va_start(ap, found);
        free(res->found);
        res->found = vstrf(found, ap);
        va_end(ap);
        free(res->svmd);
        res->svmd = svmd ? strdup(svmd) : NULL;
        res->status = s;
}

static ProbeStatus result_status(Probe *p, ProbeCheck c) {
        return p->report->results[c].status;
}

/* ---- scratch buffers ---- */

static int scratch_alloc(Probe *p, uint32_t gpu_id, uint64_t size, uint32_t flags, uint64_t *ret_handle,
                         uint64_t *ret_mmap_offset) {
        Scratch *s = NULL;
        uint64_t handle, offset;
        int r;

        for (size_t i = 0; i < PROBE_SCRATCH_MAX; i++)
                if (!p->scratch[i].used) {
                        s = &p->scratch[i];
                        break;
                }
        if (!s)
                return -ENOSPC;

        /* ALLOC does not check the VA, MAP does: every buffer gets its own, with a gap. */
        r = kfd_alloc(p->fd, p->next_va, size, gpu_id, flags, 0, &handle, &offset);
        if (r < 0)
                return r;
        p->next_va += ALIGN_POW2(size, PROBE_SZ_2M) + PROBE_SZ_2M;

        *s = (Scratch) { .handle = handle, .used = true };
        *ret_handle = handle;
        if (ret_mmap_offset)
                *ret_mmap_offset = offset;
        return 0;
}

static Scratch *scratch_find(Probe *p, uint64_t handle) {
        for (size_t i = 0; i < PROBE_SCRATCH_MAX; i++)
                if (p->scratch[i].used && p->scratch[i].handle == handle)
                        return &p->scratch[i];
        return NULL;
}

/* FREE; a buffer still mapped somewhere (EBUSY) is unmapped from every GPU first. */
static int scratch_free(Probe *p, uint64_t handle) {
        Scratch *s = scratch_find(p, handle);
        int r;

        r = kfd_free(p->fd, handle);
        if (r == -EBUSY) {
                for (size_t i = 0; i < p->n_gpus; i++) {
                        uint32_t n;
                        (void) kfd_unmap(p->fd, handle, &p->gpu_ids[i], 1, &n);
                }
                r = kfd_free(p->fd, handle);
        }
        if (r >= 0 && s)
                s->used = false;
        return r;
}

/* A scratch allocation failed: the check cannot go on. ENOMEM is a busy node, not a broken kernel. */
static void result_alloc_failed(Probe *p, ProbeCheck c, uint32_t gpu_id, const char *what, int r) {
        if (r == -ENOMEM || r == -ENOSPC)
                result(p, c, PROBE_SKIPPED, NULL, "No room for a scratch %s on GPU 0x%x (%s).", what, gpu_id,
                       strerror(-r));
        else
                result(p, c, PROBE_FAIL, "svmd cannot allocate memory on this GPU; every Allocate would fail.",
                       "ALLOC_MEMORY_OF_GPU of a scratch %s on GPU 0x%x failed: %s.", what, gpu_id, strerror(-r));
}

/* A 64 KiB VRAM scratch buffer on gpu_id for check c; a failure is recorded as c's result. */
static int scratch_vram(Probe *p, ProbeCheck c, uint32_t gpu_id, uint64_t *ret_handle) {
        int r;

        r = scratch_alloc(p, gpu_id, PROBE_SZ_64K, PROBE_VRAM_FLAGS, ret_handle, NULL);
        if (r < 0)
                result_alloc_failed(p, c, gpu_id, "64 KiB of VRAM", r);
        return r;
}

/* ---- checks ---- */

static const struct {
        KfdFeature feature;
        const char *without;
} feature_consequences[] = {
        { KFD_FEATURE_SVM,               "svm ranges are refused with NotSupported, XNACK is taken as off and \"xnack\" in svmd.conf is ignored" },
        { KFD_FEATURE_AVAILABLE_MEMORY,  "free VRAM is the topology's VRAM size minus what svmd allocated itself (other processes are not seen)" },
        { KFD_FEATURE_EXPORT_DMABUF,     "persistent VRAM/GTT ranges and Export are refused with NotSupported (persistent host ranges still work)" },
        { KFD_FEATURE_CONTIGUOUS,        "the \"contiguous\" flag is refused with NotSupported" },
        { KFD_FEATURE_MISC_PROCESS_FLAG, "\"mfma-high-precision\" is ignored with a warning" },
        { KFD_FEATURE_CREATE_PROCESS,    "svmd runs one KFD context, so every range's ioctls wait on one kernel lock (\"kfd-contexts\" is ignored)" },
};

/* false, with check c recorded as "differs", when the kernel lacks f (the ioctl named what). */
static bool require_feature(Probe *p, ProbeCheck c, KfdFeature f, const char *what) {
        const char *without = NULL;
        _cleanup_free_ char *svmd = NULL;

        if (kfd_device_has_feature(p->kfd, f))
                return true;

        for (size_t i = 0; i < ELEMENTSOF(feature_consequences); i++)
                if (feature_consequences[i].feature == f)
                        without = feature_consequences[i].without;
        svmd = strf("Without it, %s.", strna(without));
        result(p, c, PROBE_DIFFERS, svmd, "No %s: it needs interface %s.", what, kfd_feature_min_version(f));
        return false;
}

static void check_interface_version(Probe *p) {
        _cleanup_close_ int fd = -EBADF;
        char missing[512] = "", consequences[1024] = "";
        size_t lm = 0, lc = 0;
        bool differs = false;
        uint32_t major, minor;
        int r;

        fd = open("/dev/kfd", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                result(p, PROBE_CHECK_INTERFACE_VERSION, PROBE_FAIL,
                       "svmd cannot start: load amdgpu with KFD (HSA) support and let svmd's user open /dev/kfd.",
                       "Cannot open /dev/kfd: %s.", strerror(errno));
                return;
        }

        r = kfd_get_version(fd, &major, &minor);
        if (r < 0) {
                result(p, PROBE_CHECK_INTERFACE_VERSION, PROBE_FAIL, "svmd cannot start without the interface version.",
                       "AMDKFD_IOC_GET_VERSION failed: %s.", strerror(-r));
                return;
        }
        p->report->kfd_major = major;
        p->report->kfd_minor = minor;
        p->report->have_version = true;

        if (major != 1) {
                result(p, PROBE_CHECK_INTERFACE_VERSION, PROBE_FAIL,
                       "svmd refuses to start: it knows interface 1.x only.",
                       "KFD interface %u.%u.", major, minor);
                return;
        }

        for (size_t i = 0; i < ELEMENTSOF(feature_consequences); i++) {
                KfdFeature f = feature_consequences[i].feature;

                if (kfd_version_has_feature(major, minor, f))
                        continue;
                lm += (size_t) snprintf(missing + lm, sizeof(missing) - MIN(lm, sizeof(missing)), "%s%s (%s)",
                                        lm > 0 ? ", " : "", kfd_feature_to_string(f), kfd_feature_min_version(f));
                lc += (size_t) snprintf(consequences + lc, sizeof(consequences) - MIN(lc, sizeof(consequences)),
                                        "%sWithout %s: %s.", lc > 0 ? " " : "", kfd_feature_to_string(f),
                                        feature_consequences[i].without);
                if (f != KFD_FEATURE_CREATE_PROCESS)
                        differs = true;
                lm = MIN(lm, sizeof(missing) - 1);
                lc = MIN(lc, sizeof(consequences) - 1);
        }

        if (lm == 0)
                result(p, PROBE_CHECK_INTERFACE_VERSION, PROBE_PASS, "svmd uses every feature it knows.",
                       "KFD interface %u.%u; every feature svmd knows is there.", major, minor);
        else
                result(p, PROBE_CHECK_INTERFACE_VERSION, differs ? PROBE_DIFFERS : PROBE_PASS, consequences,
                       "KFD interface %u.%u; missing: %s.", major, minor, missing);
}

static void probe_device_log(int priority, const char *message, void *userdata) {
        Probe *p = userdata;

        if (priority <= LOG_ERR && !p->device_error)
                p->device_error = strdup(message);
}

static void check_gpus(Probe *p) {
        const KfdDeviceConfig config = {
                .log = probe_device_log,
                .log_userdata = p,
        };
        const KfdTopology *t;
        char list[1024] = "";
        size_t l = 0;
        int r;

        r = kfd_device_new(&p->kfd, &config);
        if (r < 0) {
                result(p, PROBE_CHECK_GPUS, PROBE_FAIL, "svmd exits at start with the same message.",
                       "Opening the KFD device, its GPUs and their VMs failed: %s.",
                       p->device_error ?: strerror(-r));
                return;
        }
        p->fd = kfd_device_get_fd(p->kfd);
        p->n_gpus = kfd_device_get_n_gpus(p->kfd);
        if (p->n_gpus > PROBE_MAX_GPUS) {
                result(p, PROBE_CHECK_GPUS, PROBE_FAIL, "svmd refuses to start: it supports up to 64 GPUs.",
                       "The node has %zu GPUs.", p->n_gpus);
                p->kfd = kfd_device_free(p->kfd);
                return;
        }

        for (size_t i = 0; i < p->n_gpus; i++) {
                const KfdGpu *g = kfd_device_get_gpu(p->kfd, i);

                p->gpu_ids[i] = g->gpu_id;
                l += (size_t) snprintf(list + l, sizeof(list) - MIN(l, sizeof(list)), "%s0x%x (%s, %s%s)",
                                       i > 0 ? ", " : "", g->gpu_id, g->target, g->pci_location,
                                       g->large_bar ? ", large BAR" : "");
                l = MIN(l, sizeof(list) - 1);
        }

        if (p->n_gpus == 1)
                (void) snprintf(p->on_all, sizeof(p->on_all), "On the node's GPU");
        else
                (void) snprintf(p->on_all, sizeof(p->on_all), "On all %zu GPUs", p->n_gpus);

        t = kfd_device_get_topology(p->kfd);
        result(p, PROBE_CHECK_GPUS, PROBE_PASS, "svmd serves every GPU listed here.",
               "%zu GPU%s with the render node open and the VM acquired: %s.%s", p->n_gpus,
               p->n_gpus == 1 ? "" : "s", list,
               t->n_denied > 0 ? " Some GPU nodes are hidden by the device cgroup." : "");
}

/*
 * What ALLOC returns in a new KFD process (a forked child) that has not acquired
 * gpu_id's VM: ENODEV in the kernel. The child answers with the positive errno, 0 for success.
 */
static int alloc_without_vm(uint32_t gpu_id) {
        int status, r;
        pid_t pid;

        pid = fork();
        if (pid < 0)
                return negative_errno();
        if (pid == 0) {
                uint64_t h;
                int fd;

                fd = open("/dev/kfd", O_RDWR | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        _exit(255);
                r = kfd_alloc(fd, PROBE_VA_BASE, PROBE_SZ_64K, gpu_id, PROBE_VRAM_FLAGS, 0, &h, NULL);
                if (r >= 0)
                        (void) kfd_free(fd, h);
                _exit(MIN(-r, 254));
        }
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return negative_errno();
        if (!WIFEXITED(status) || WEXITSTATUS(status) == 255)
                return -ECHILD;
        return WEXITSTATUS(status);
}

static void check_acquire_vm(Probe *p) {
        int e;

        /* svmd acquires every VM before its first allocation; the kernel insists. */
        e = alloc_without_vm(p->gpu_ids[0]);
        if (e != ENODEV) {
                result(p, PROBE_CHECK_ACQUIRE_VM, e < 0 ? PROBE_SKIPPED : PROBE_DIFFERS,
                       "svmd acquires every GPU's VM at start, before any allocation, so this does not matter to it.",
                       "ALLOC on GPU 0x%x in a new process without ACQUIRE_VM %s%s, not ENODEV.", p->gpu_ids[0],
                       e < 0 ? "could not be tried: " : e == 0 ? "succeeded" : "failed with ",
                       e < 0 ? strerror(-e) : e == 0 ? "" : strerror(e));
                return;
        }

        for (size_t i = 0; i < p->n_gpus; i++) {
                const KfdGpu *g = kfd_device_get_gpu(p->kfd, i);
                _cleanup_close_ int other = -EBADF;
                char path[64];
                int r;

                r = kfd_acquire_vm(p->fd, g->gpu_id, kfd_device_get_render_fd(p->kfd, g->gpu_id));
                if (r < 0) {
                        result(p, PROBE_CHECK_ACQUIRE_VM, PROBE_DIFFERS,
                               "svmd acquires each VM once at start, so this does not matter to it.",
                               "ACQUIRE_VM again with the same render-node file on GPU 0x%x failed (%s) instead of being a no-op.",
                               g->gpu_id, strerror(-r));
                        return;
                }

                (void) snprintf(path, sizeof(path), "/dev/dri/renderD%u", g->drm_render_minor);
                other = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
                if (other < 0) {
                        result(p, PROBE_CHECK_ACQUIRE_VM, PROBE_SKIPPED, NULL,
                               "Cannot open %s a second time: %s.", path, strerror(errno));
                        return;
                }
                r = kfd_acquire_vm(p->fd, g->gpu_id, other);
                if (r != -EBUSY) {
                        result(p, PROBE_CHECK_ACQUIRE_VM, PROBE_DIFFERS,
                               "svmd acquires each VM once at start with a render-node file it keeps; only its error message on EBUSY assumes this rule.",
                               "ACQUIRE_VM on GPU 0x%x with another open file of %s returned %s, not EBUSY.",
                               g->gpu_id, path, r < 0 ? strerror(-r) : "success");
                        return;
                }
        }

        result(p, PROBE_CHECK_ACQUIRE_VM, PROBE_PASS,
               "svmd acquires each VM once at start with a render-node file it keeps for CPU mappings, and says which GPU is taken on EBUSY.",
               "ALLOC before ACQUIRE_VM is ENODEV (in a new process, on GPU 0x%x). %s: ACQUIRE_VM with the same "
               "render-node file again is a no-op; with another file of the same node it is EBUSY.",
               p->gpu_ids[0], p->on_all);
}

static void check_available_memory(Probe *p) {
        if (!require_feature(p, PROBE_CHECK_AVAILABLE_MEMORY, KFD_FEATURE_AVAILABLE_MEMORY, "AVAILABLE_MEMORY"))
                return;

        for (size_t i = 0; i < p->n_gpus; i++) {
                const KfdGpu *g = kfd_device_get_gpu(p->kfd, i);
                uint64_t before, during, after, h;
                int r;

                r = kfd_available_memory(p->fd, g->gpu_id, &before);
                if (r < 0) {
                        result(p, PROBE_CHECK_AVAILABLE_MEMORY, PROBE_FAIL,
                               "svmd trusts the interface version and reads AVAILABLE_MEMORY at start, for ListGpus and before refusing a VRAM allocation: those would fail.",
                               "AVAILABLE_MEMORY on GPU 0x%x failed: %s.", g->gpu_id, strerror(-r));
                        return;
                }
                p->available_start[i] = before;

                r = scratch_alloc(p, g->gpu_id, PROBE_SZ_2M, PROBE_VRAM_FLAGS, &h, NULL);
                if (r < 0) {
                        result_alloc_failed(p, PROBE_CHECK_AVAILABLE_MEMORY, g->gpu_id, "2 MiB of VRAM", r);
                        return;
                }
                r = kfd_available_memory(p->fd, g->gpu_id, &during);
                if (r >= 0) {
                        r = scratch_free(p, h);
                        if (r < 0) {
                                result(p, PROBE_CHECK_AVAILABLE_MEMORY, PROBE_FAIL,
                                       "svmd cannot free memory on this GPU.",
                                       "FREE of a 2 MiB scratch buffer on GPU 0x%x failed: %s.", g->gpu_id, strerror(-r));
                                return;
                        }
                        r = kfd_available_memory(p->fd, g->gpu_id, &after);
                } else
                        (void) scratch_free(p, h);
                if (r < 0) {
                        result(p, PROBE_CHECK_AVAILABLE_MEMORY, PROBE_FAIL,
                               "svmd reads AVAILABLE_MEMORY at start, for ListGpus and before refusing a VRAM allocation: those would fail.",
                               "AVAILABLE_MEMORY on GPU 0x%x failed: %s.", g->gpu_id, strerror(-r));
                        return;
                }

                if (before > g->vram_size || before - during != PROBE_SZ_2M || after != before) {
                        result(p, PROBE_CHECK_AVAILABLE_MEMORY, PROBE_DIFFERS,
                               "svmd shows the kernel's figure as VramFree, moved by the size of its own allocations between readings (at most a second apart for ListGpus): here that estimate is off by the difference until the next reading; the kernel still decides at ALLOC.",
                               "GPU 0x%x (%" PRIu64 " bytes of VRAM): %" PRIu64 " bytes available, %" PRIu64
                               " with a 2 MiB scratch buffer, %" PRIu64 " after freeing it (expected a 2 MiB drop and the same figure back).",
                               g->gpu_id, g->vram_size, before, during, after);
                        return;
                }
        }
        p->have_available_start = true;

        result(p, PROBE_CHECK_AVAILABLE_MEMORY, PROBE_PASS,
               "svmd shows the kernel's figure as VramFree and checks VRAM requests against it, moved by its own allocations between readings.",
               "%s: AVAILABLE_MEMORY is at most the VRAM size, drops by 2 MiB for a 2 MiB buffer and comes back when it is freed.",
               p->on_all);
}

static int map_preset(Probe *p, uint64_t handle, const uint32_t *ids, uint32_t n, uint32_t n_success,
                      uint32_t *ret_n_success) {
        struct kfd_ioctl_map_memory_to_gpu_args args = {
                .handle = handle,
                .device_ids_array_ptr = (uint64_t) (uintptr_t) ids,
                .n_devices = n,
                .n_success = n_success,
        };
        int r;

        /* Not kfd_map(): it always starts at 0, and the start index is what is checked here. */
        r = ioctl(p->fd, AMDKFD_IOC_MAP_MEMORY_TO_GPU, &args) < 0 ? negative_errno() : 0;
        *ret_n_success = args.n_success;
        return r;
}

static const char map_restart_svmd[] =
        "An interrupted MAP/UNMAP is re-issued with the n_success the kernel returned (kfd/kfd-ioctl.c); "
        "after any other error the transaction unmaps exactly the first n_success GPUs.";

static void check_map_restart(Probe *p) {
        uint32_t ids[PROBE_MAX_GPUS + 1], n = (uint32_t) p->n_gpus, n_success, bad[2];
        uint64_t h;
        int r;

        memcpy(ids, p->gpu_ids, n * sizeof(uint32_t));

        /* GTT can be mapped on every GPU, peers or not. */
        r = scratch_alloc(p, ids[0], PROBE_SZ_64K, PROBE_GTT_FLAGS, &h, NULL);
        if (r < 0) {
                result_alloc_failed(p, PROBE_CHECK_MAP_RESTART, ids[0], "64 KiB GTT buffer", r);
                return;
        }

        /* n_success preset to 1: the kernel starts at index 1, so GPU ids[0] stays unmapped. */
        r = map_preset(p, h, ids, n, 1, &n_success);
        if (r < 0 || n_success != n) {
                result(p, PROBE_CHECK_MAP_RESTART, PROBE_FAIL, map_restart_svmd,
                       "MAP of a GTT buffer to %u GPU%s with n_success preset to 1 returned %s with n_success %u (expected success, %u).",
                       n, n == 1 ? "" : "s", r < 0 ? strerror(-r) : "success", n_success, n);
                goto out;
        }
        r = kfd_unmap(p->fd, h, &ids[0], 1, &n_success);
        if (r == 0) {
                result(p, PROBE_CHECK_MAP_RESTART, PROBE_DIFFERS,
                       "A restarted MAP maps the first GPUs again; that is correct only because MAP of a mapped buffer is a no-op (see map-mapped-noop).",
                       "MAP with n_success preset to 1 mapped GPU 0x%x (index 0) anyway: the kernel ignores the start index.",
                       ids[0]);
                goto out;
        }
        if (r != -EINVAL) {
                result(p, PROBE_CHECK_MAP_RESTART, PROBE_FAIL, map_restart_svmd,
                       "UNMAP of GPU 0x%x, which MAP with n_success preset to 1 skipped, returned %s (expected EINVAL: not mapped).",
                       ids[0], strerror(-r));
                goto out;
        }
        if (n > 1) {
                r = kfd_unmap(p->fd, h, ids + 1, n - 1, &n_success);
                if (r < 0) {
                        result(p, PROBE_CHECK_MAP_RESTART, PROBE_FAIL, map_restart_svmd,
                               "MAP with n_success preset to 1 reported success, but unmapping GPUs [1, %u) failed at index %u: %s.",
                               n, n_success + 1, strerror(-r));
                        goto out;
                }
        }

        /* A failure at index 1 (a gpu_id no node has) must come back with n_success = 1. */
        bad[0] = ids[0];
        bad[1] = PROBE_BAD_GPU_ID;
        r = kfd_map(p->fd, h, bad, 2, &n_success);
        if (r != -EINVAL || n_success != 1) {
                result(p, PROBE_CHECK_MAP_RESTART, PROBE_FAIL, map_restart_svmd,
                       "MAP to [0x%x, 0x%x] returned %s with n_success %u (expected EINVAL with n_success 1): "
                       "the count of mapped GPUs is not reported after a failure.",
                       bad[0], bad[1], r < 0 ? strerror(-r) : "success", n_success);
                goto out;
        }
        r = kfd_unmap(p->fd, h, &ids[0], 1, &n_success);
        if (r < 0) {
                result(p, PROBE_CHECK_MAP_RESTART, PROBE_FAIL, map_restart_svmd,
                       "After MAP failed at index 1 with n_success 1, GPU 0x%x was not mapped (UNMAP: %s).",
                       ids[0], strerror(-r));
                goto out;
        }

        result(p, PROBE_CHECK_MAP_RESTART, PROBE_PASS, map_restart_svmd,
               "MAP starts at the n_success passed in (preset to 1 on %u GPU%s, index 0 stayed unmapped) and a MAP "
               "failing at index 1 returns EINVAL with n_success 1 and that GPU mapped. An EINTR cannot be forced "
               "on a real kernel; these are the two facts the restart rests on.",
               n, n == 1 ? "" : "s");
out:
        (void) scratch_free(p, h);
}

static void check_map_mapped(Probe *p) {
        for (size_t i = 0; i < p->n_gpus; i++) {
                uint32_t id = p->gpu_ids[i], twice[2] = { id, id }, n;
                uint64_t h;
                int r;

                if (scratch_vram(p, PROBE_CHECK_MAP_MAPPED, id, &h) < 0)
                        return;
                r = kfd_map(p->fd, h, &id, 1, &n);
                if (r >= 0)
                        r = kfd_map(p->fd, h, &id, 1, &n);
                if (r >= 0)
                        r = kfd_map(p->fd, h, twice, 2, &n);
                if (r < 0) {
                        result(p, PROBE_CHECK_MAP_MAPPED, PROBE_DIFFERS,
                               "svmd keeps each GPU's mapping state exact and never maps a mapped GPU; a restart skips the done GPUs by n_success.",
                               "MAP of a buffer already mapped on GPU 0x%x failed: %s.", id, strerror(-r));
                        (void) scratch_free(p, h);
                        return;
                }
                (void) kfd_unmap(p->fd, h, &id, 1, &n);
                (void) scratch_free(p, h);
        }

        result(p, PROBE_CHECK_MAP_MAPPED, PROBE_PASS,
               "A MAP restarted after the fence wait was interrupted (n_success = all) changes nothing.",
               "%s: MAP of a mapped buffer, and a device list naming the GPU twice, succeed without change.",
               p->on_all);
}

static void check_unmap_unmapped(Probe *p) {
        for (size_t i = 0; i < p->n_gpus; i++) {
                uint32_t id = p->gpu_ids[i], n;
                uint64_t h;
                int r, r2 = 0, r3 = 0;

                if (scratch_vram(p, PROBE_CHECK_UNMAP_UNMAPPED, id, &h) < 0)
                        return;
                r = kfd_unmap(p->fd, h, &id, 1, &n);
                if (r == -EINVAL) {
                        r2 = kfd_map(p->fd, h, &id, 1, &n);
                        if (r2 >= 0)
                                r2 = kfd_unmap(p->fd, h, &id, 1, &n);
                        if (r2 >= 0)
                                r3 = kfd_unmap(p->fd, h, &id, 1, &n);
                }
                (void) scratch_free(p, h);

                if (r2 < 0) {
                        result(p, PROBE_CHECK_UNMAP_UNMAPPED, PROBE_FAIL,
                               "svmd cannot map or unmap on this GPU.",
                               "MAP or UNMAP of a scratch buffer on GPU 0x%x failed: %s.", id, strerror(-r2));
                        return;
                }
                if (r != -EINVAL || r3 != -EINVAL) {
                        result(p, PROBE_CHECK_UNMAP_UNMAPPED, PROBE_DIFFERS,
                               "svmd keeps each GPU's mapping state exact and unmaps only mapped GPUs, so a lenient UNMAP does not matter.",
                               "UNMAP of a buffer not mapped on GPU 0x%x returned %s, not EINVAL.", id,
                               r != -EINVAL ? (r < 0 ? strerror(-r) : "success") : (r3 < 0 ? strerror(-r3) : "success"));
                        return;
                }
        }

        result(p, PROBE_CHECK_UNMAP_UNMAPPED, PROBE_PASS,
               "svmd keeps each GPU's mapping state exact and unmaps only mapped GPUs; an interrupted UNMAP is restarted with n_success, never from 0.",
               "%s: UNMAP of a never-mapped buffer and of an already unmapped one is EINVAL.", p->on_all);
}

static void check_free_mapped(Probe *p) {
        for (size_t i = 0; i < p->n_gpus; i++) {
                uint32_t id = p->gpu_ids[i], n;
                uint64_t h;
                int r;

                if (scratch_vram(p, PROBE_CHECK_FREE_MAPPED, id, &h) < 0)
                        return;
                r = kfd_map(p->fd, h, &id, 1, &n);
                if (r < 0) {
                        (void) scratch_free(p, h);
                        result(p, PROBE_CHECK_FREE_MAPPED, PROBE_FAIL, "svmd cannot map on this GPU.",
                               "MAP of a scratch buffer on GPU 0x%x failed: %s.", id, strerror(-r));
                        return;
                }
                r = kfd_free(p->fd, h);
                if (r != -EBUSY) {
                        if (r >= 0)
                                scratch_find(p, h)->used = false;
                        else
                                (void) scratch_free(p, h);
                        result(p, PROBE_CHECK_FREE_MAPPED, PROBE_DIFFERS,
                               "svmd always unmaps every GPU before FREE, so this does not matter to it.",
                               "FREE of a buffer mapped on GPU 0x%x returned %s, not EBUSY.", id,
                               r < 0 ? strerror(-r) : "success");
                        return;
                }
                /* The handle must have survived the refused FREE. */
                r = kfd_unmap(p->fd, h, &id, 1, &n);
                if (r >= 0)
                        r = scratch_free(p, h);
                if (r < 0) {
                        (void) scratch_free(p, h);
                        result(p, PROBE_CHECK_FREE_MAPPED, PROBE_FAIL,
                               "svmd's undo of a half-done free would lose the buffer.",
                               "After FREE was refused with EBUSY on GPU 0x%x, unmapping and freeing the buffer failed: %s.",
                               id, strerror(-r));
                        return;
                }
        }

        result(p, PROBE_CHECK_FREE_MAPPED, PROBE_PASS, "svmd unmaps every GPU before FREE and treats EBUSY as a bug in its own state.",
               "%s: FREE of a mapped buffer is EBUSY and leaves the handle usable.", p->on_all);
}

static void check_handle_reuse(Probe *p) {
        static const char svmd[] =
                "svmd never shows KFD handles: ranges have svmd's own 64-bit ids, and a handle is forgotten once its FREE succeeds.";
        bool reused = true, encoded = true;

        for (size_t i = 0; i < p->n_gpus; i++) {
                uint32_t id = p->gpu_ids[i];
                uint64_t a, b, c;
                int r;

                if (scratch_vram(p, PROBE_CHECK_HANDLE_REUSE, id, &a) < 0)
                        return;
                if (scratch_vram(p, PROBE_CHECK_HANDLE_REUSE, id, &b) < 0) {
                        (void) scratch_free(p, a);
                        return;
                }
                r = scratch_free(p, a);
                if (r >= 0)
                        r = scratch_alloc(p, id, PROBE_SZ_64K, PROBE_VRAM_FLAGS, &c, NULL);
                if (r < 0) {
                        (void) scratch_free(p, b);
                        result(p, PROBE_CHECK_HANDLE_REUSE, PROBE_FAIL, "svmd cannot free and allocate on this GPU.",
                               "FREE or ALLOC of a scratch buffer on GPU 0x%x failed: %s.", id, strerror(-r));
                        return;
                }
                reused = reused && c == a;
                encoded = encoded && (a >> 32) == id && (b >> 32) == id;
                (void) scratch_free(p, b);
                (void) scratch_free(p, c);
        }

        if (reused && encoded)
                result(p, PROBE_CHECK_HANDLE_REUSE, PROBE_PASS, svmd,
                       "%s: handles are gpu_id << 32 | index, and a freed handle's index is given to the next buffer.",
                       p->on_all);
        else
                result(p, PROBE_CHECK_HANDLE_REUSE, PROBE_DIFFERS, svmd, "Handles %s; a freed handle %s.",
                       encoded ? "are gpu_id << 32 | index" : "do not carry the gpu_id in their upper 32 bits",
                       reused ? "is reused" : "is not reused at once");
}

typedef struct DmabufAnswer {
        int step;       /* 0: done; otherwise the step that failed */
        int error;      /* errno of that step, 0 for a content mismatch */
} DmabufAnswer;

static const char *const dmabuf_steps[] = {
        [1] = "opening /dev/kfd and acquiring the VMs",
        [2] = "IMPORT_DMABUF",
        [3] = "MAP of the imported buffer",
        [4] = "mmap of the dma-buf",
        [5] = "reading the exporter's bytes",
        [6] = "UNMAP and FREE of the imported buffer",
};

static void dmabuf_child_log(int priority, const char *message, void *userdata) {
}

/*
 * In the forked child: its own KFD process imports the dma-buf and maps it; with
 * cpu, it also checks the bytes through a mapping of the dma-buf and answers in them.
 */
static DmabufAnswer dmabuf_child(int dmabuf_fd, uint32_t gpu_id, uint8_t seed, bool cpu) {
        const KfdDeviceConfig config = { .log = dmabuf_child_log };
        KfdDevice *d = NULL;
        uint64_t h;
        uint32_t n;
        uint8_t *b;
        int fd, r;

        r = kfd_device_new(&d, &config);
        if (r < 0)
                return (DmabufAnswer) { 1, -r };
        fd = kfd_device_get_fd(d);

        r = kfd_import_dmabuf(fd, dmabuf_fd, gpu_id, PROBE_VA_BASE, &h);
        if (r < 0) {
                kfd_device_free(d);
                return (DmabufAnswer) { 2, -r };
        }
        r = kfd_map(fd, h, &gpu_id, 1, &n);
        if (r < 0) {
                (void) kfd_free(fd, h);
                kfd_device_free(d);
                return (DmabufAnswer) { 3, -r };
        }

        b = cpu ? mmap(NULL, PROBE_SZ_2M, PROT_READ | PROT_WRITE, MAP_SHARED, dmabuf_fd, 0) : NULL;
        if (b == MAP_FAILED) {
                r = errno;
                (void) kfd_unmap(fd, h, &gpu_id, 1, &n);
                (void) kfd_free(fd, h);
                kfd_device_free(d);
                return (DmabufAnswer) { 4, r };
        }
        for (size_t i = 0; b && i < PROBE_SZ_2M; i += 4096)
                if (b[i] != (uint8_t) (seed + i / 4096)) {
                        munmap(b, PROBE_SZ_2M);
                        (void) kfd_unmap(fd, h, &gpu_id, 1, &n);
                        (void) kfd_free(fd, h);
                        kfd_device_free(d);
                        return (DmabufAnswer) { 5, 0 };
                }
        if (b) {
                b[0] = 0xA5;
                b[1] = 0x5A;
                munmap(b, PROBE_SZ_2M);
        }

        r = kfd_unmap(fd, h, &gpu_id, 1, &n);
        if (r >= 0)
                r = kfd_free(fd, h);
        kfd_device_free(d);
        if (r < 0)
                return (DmabufAnswer) { 6, -r };
        return (DmabufAnswer) {};
}

/*
 * Export a GTT or VRAM buffer of gpu_id and let another process import and map it;
 * the bytes are compared both ways where the CPU can map the buffer (GTT, and VRAM
 * on a large-BAR GPU). 0, or a sentence in *ret_error.
 */
static int dmabuf_one(Probe *p, const KfdGpu *g, bool vram, char **ret_error) {
        const char *domain = vram ? "VRAM" : "GTT";
        uint32_t gpu_id = g->gpu_id;
        bool cpu = !vram || g->large_bar;
        uint32_t flags = !vram ? PROBE_GTT_FLAGS :
                         PROBE_VRAM_FLAGS | (g->large_bar ? KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC : 0);
        _cleanup_close_ int dmabuf = -EBADF, answer_read = -EBADF;
        int answer_pipe[2];
        DmabufAnswer answer = { .step = 1, .error = EPIPE };
        uint8_t seed = (uint8_t) (gpu_id * 31);
        uint64_t h, offset, size;
        uint32_t owner;
        uint8_t *b = MAP_FAILED;
        int r, render_fd, status;
        pid_t pid;

        r = scratch_alloc(p, gpu_id, PROBE_SZ_2M, flags, &h, &offset);
        if (r < 0) {
                *ret_error = strf("ALLOC of a 2 MiB %s buffer on GPU 0x%x failed: %s.", domain, gpu_id, strerror(-r));
                return r == -ENOMEM ? -ENOMEM : -EIO;
        }

        if (cpu) {
                render_fd = kfd_device_get_render_fd(p->kfd, gpu_id);
                b = mmap(NULL, PROBE_SZ_2M, PROT_READ | PROT_WRITE, MAP_SHARED, render_fd, (off_t) offset);
                if (b == MAP_FAILED) {
                        *ret_error = strf("mmap of a %s buffer of GPU 0x%x through its render node failed: %s.",
                                          domain, gpu_id, strerror(errno));
                        r = -EIO;
                        goto out;
                }
                for (size_t i = 0; i < PROBE_SZ_2M; i += 4096)
                        b[i] = (uint8_t) (seed + i / 4096);
        }

        r = kfd_export_dmabuf(p->fd, h, O_RDWR, &dmabuf);
        if (r < 0) {
                *ret_error = strf("EXPORT_DMABUF of a %s buffer of GPU 0x%x failed: %s.", domain, gpu_id, strerror(-r));
                goto out;
        }
        r = kfd_get_dmabuf_info(p->fd, dmabuf, &size, &owner, NULL);
        if (r < 0 || size != PROBE_SZ_2M || owner != gpu_id) {
                *ret_error = r < 0 ? strf("GET_DMABUF_INFO failed: %s.", strerror(-r))
                                   : strf("GET_DMABUF_INFO says %" PRIu64 " bytes of GPU 0x%x; exported 2 MiB of GPU 0x%x.",
                                          size, owner, gpu_id);
                r = -EIO;
                goto out;
        }

        if (pipe2(answer_pipe, O_CLOEXEC) < 0) {
                r = negative_errno();
                *ret_error = strf("pipe: %s", strerror(-r));
                goto out;
        }
        answer_read = answer_pipe[0];
        pid = fork();
        if (pid < 0) {
                r = negative_errno();
                safe_close(answer_pipe[1]);
                *ret_error = strf("fork: %s", strerror(-r));
                goto out;
        }
        if (pid == 0) {
                /* A new process: its own KFD context. The parent's /dev/kfd fd is EBADF here. */
                DmabufAnswer a = dmabuf_child(dmabuf, gpu_id, seed, cpu);
                _exit(write(answer_pipe[1], &a, sizeof(a)) == sizeof(a) ? 0 : 1);
        }
        safe_close(answer_pipe[1]);
        if (read(answer_read, &answer, sizeof(answer)) != sizeof(answer))
                answer = (DmabufAnswer) { .step = 1, .error = EPIPE };
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;

        if (answer.step != 0) {
                size_t step = (size_t) answer.step < ELEMENTSOF(dmabuf_steps) ? (size_t) answer.step : 1;

                *ret_error = answer.error != 0
                        ? strf("A second process importing %s of GPU 0x%x failed at %s: %s.", domain, gpu_id,
                               dmabuf_steps[step], strerror(answer.error))
                        : strf("A second process importing %s of GPU 0x%x read other bytes than the exporter wrote.",
                               domain, gpu_id);
                r = -EIO;
                goto out;
        }
        if (cpu && (b[0] != 0xA5 || b[1] != 0x5A)) {
                *ret_error = strf("Bytes the importing process wrote into %s of GPU 0x%x did not reach the exporter.",
                                  domain, gpu_id);
                r = -EIO;
                goto out;
        }
        r = 0;
out:
        if (b != MAP_FAILED)
                munmap(b, PROBE_SZ_2M);
        dmabuf = safe_close(dmabuf);
        (void) scratch_free(p, h);
        return r;
}

static void check_dmabuf(Probe *p) {
        static const char svmd[] =
                "Persistent VRAM/GTT ranges survive svmd's restart as dma-bufs in the fd store, and Export gives clients "
                "dma-buf fds they import into their own KFD process.";

        if (!require_feature(p, PROBE_CHECK_DMABUF, KFD_FEATURE_EXPORT_DMABUF, "EXPORT_DMABUF"))
                return;

        for (size_t i = 0; i < 2 * p->n_gpus; i++) {
                _cleanup_free_ char *error = NULL;
                int r;

                r = dmabuf_one(p, kfd_device_get_gpu(p->kfd, i / 2), i % 2 == 1, &error);
                if (r == -ENOMEM) {
                        result(p, PROBE_CHECK_DMABUF, PROBE_SKIPPED, NULL, "%s", strna(error));
                        return;
                }
                if (r < 0) {
                        result(p, PROBE_CHECK_DMABUF, PROBE_FAIL, svmd, "%s", strna(error));
                        return;
                }
        }

        result(p, PROBE_CHECK_DMABUF, PROBE_PASS, svmd,
               "%s: a GTT and a VRAM buffer exported as dma-bufs were imported and mapped by another process "
               "with its own /dev/kfd, which read the exporter's bytes and wrote bytes back that the exporter read "
               "(for VRAM where the GPU has a large BAR).",
               p->on_all);
}

static void check_svm_attributes(Probe *p) {
        static const char svmd[] =
                "svm ranges record the old attributes with GET_ATTR before every SET_ATTR and restore them on failure.";
        struct kfd_ioctl_svm_attribute attrs[3 + PROBE_MAX_GPUS];
        uint32_t ids[PROBE_MAX_GPUS], n = 0, n_attrs = 0;
        KfdSvmAttrs got;
        const char *problem = NULL;
        void *mem;
        int r;

        if (!require_feature(p, PROBE_CHECK_SVM_ATTRIBUTES, KFD_FEATURE_SVM, "AMDKFD_IOC_SVM"))
                return;
        for (size_t i = 0; i < p->n_gpus; i++)
                if (kfd_device_get_gpu(p->kfd, i)->capability & KFD_SVM_CAP_SUPPORTED)
                        ids[n++] = p->gpu_ids[i];
        if (n == 0) {
                result(p, PROBE_CHECK_SVM_ATTRIBUTES, PROBE_SKIPPED, "svm ranges are refused with NotSupported.",
                       "No GPU of this node supports SVM (capability bit 0x%x).", KFD_SVM_CAP_SUPPORTED);
                return;
        }

        /* Our own pages: the kernel drops the SVM range when they are unmapped. */
        mem = mmap(NULL, PROBE_SZ_2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) {
                result(p, PROBE_CHECK_SVM_ATTRIBUTES, PROBE_SKIPPED, NULL, "mmap of 2 MiB failed: %s.", strerror(errno));
                return;
        }

        attrs[n_attrs++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, KFD_IOCTL_SVM_LOCATION_SYSMEM };
        attrs[n_attrs++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_SET_FLAGS, KFD_IOCTL_SVM_FLAG_GPU_RO };
        attrs[n_attrs++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_GRANULARITY, 4 };
        for (uint32_t i = 0; i < n; i++)
                attrs[n_attrs++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_ACCESS, ids[i] };

        r = kfd_svm_set(p->fd, (uintptr_t) mem, PROBE_SZ_2M, attrs, n_attrs);
        if (r < 0) {
                result(p, PROBE_CHECK_SVM_ATTRIBUTES, PROBE_FAIL, svmd, "SVM SET_ATTR on 2 MiB of host memory failed: %s.",
                       strerror(-r));
                goto out;
        }
        r = kfd_svm_attrs_get(p->fd, (uintptr_t) mem, PROBE_SZ_2M, ids, n, &got);
        if (r < 0) {
                result(p, PROBE_CHECK_SVM_ATTRIBUTES, PROBE_FAIL, svmd, "SVM GET_ATTR failed: %s.", strerror(-r));
                goto out;
        }
        if (got.preferred_loc != KFD_IOCTL_SVM_LOCATION_SYSMEM)
                problem = "the preferred location";
        else if (!(got.flags & KFD_IOCTL_SVM_FLAG_GPU_RO))
                problem = "the gpu-ro flag";
        else if (got.granularity != 4)
                problem = "the granularity";
        else
                for (uint32_t i = 0; i < n; i++)
                        if (kfd_svm_attrs_access(&got, ids[i]) != KFD_IOCTL_SVM_ATTR_ACCESS)
                                problem = "the access of a GPU";
        if (!problem) {
                /* Clearing works too: the undo of a change needs it. */
                attrs[0] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_CLR_FLAGS, KFD_IOCTL_SVM_FLAG_GPU_RO };
                r = kfd_svm_set(p->fd, (uintptr_t) mem, PROBE_SZ_2M, attrs, 1);
                if (r >= 0)
                        r = kfd_svm_attrs_get(p->fd, (uintptr_t) mem, PROBE_SZ_2M, ids, n, &got);
                if (r < 0 || (got.flags & KFD_IOCTL_SVM_FLAG_GPU_RO))
                        problem = "the cleared gpu-ro flag";
        }
        if (problem) {
                result(p, PROBE_CHECK_SVM_ATTRIBUTES, PROBE_FAIL, svmd,
                       "SVM GET_ATTR did not return %s that SET_ATTR set on 2 MiB of host memory.", problem);
                goto out;
        }

        result(p, PROBE_CHECK_SVM_ATTRIBUTES, PROBE_PASS, svmd,
               "SET_ATTR of the preferred location, a flag, the granularity and access on %u GPU%s reads back the same "
               "with GET_ATTR; clearing the flag does too.",
               n, n == 1 ? "" : "s");
out:
        munmap(mem, PROBE_SZ_2M);
}

static void check_xnack(Probe *p) {
        int mode, other, r;

        if (!require_feature(p, PROBE_CHECK_XNACK, KFD_FEATURE_SVM, "SET_XNACK_MODE"))
                return;

        r = kfd_set_xnack_mode(p->fd, -1, &mode);
        if (r < 0) {
                result(p, PROBE_CHECK_XNACK, PROBE_DIFFERS, "svmd takes XNACK as off.",
                       "Querying the XNACK mode failed: %s.", strerror(-r));
                return;
        }

        /* The mode is per KFD process: changing the probe's own touches nobody. */
        r = kfd_set_xnack_mode(p->fd, !mode, NULL);
        if (r == 0) {
                int back;

                r = kfd_set_xnack_mode(p->fd, mode, NULL);
                if (r >= 0)
                        r = kfd_set_xnack_mode(p->fd, -1, &back);
                if (r < 0 || back != mode) {
                        result(p, PROBE_CHECK_XNACK, PROBE_DIFFERS, "svmd sets the mode once at start and then reads it back.",
                               "XNACK could be switched %s but not back: %s.", mode ? "off" : "on",
                               r < 0 ? strerror(-r) : "the query reports the other mode");
                        return;
                }
                result(p, PROBE_CHECK_XNACK, PROBE_PASS, "\"xnack\": \"on\" or \"off\" in svmd.conf takes effect at start.",
                       "XNACK is %s for a new process and can be switched either way.", mode ? "on" : "off");
                return;
        }
        if (r == -EPERM) {
                result(p, PROBE_CHECK_XNACK, PROBE_PASS,
                       "\"xnack\" in svmd.conf cannot change it: svmd logs that and serves with the kernel's mode.",
                       "XNACK is %s and cannot be switched (EPERM: a GPU has no per-process XNACK).", mode ? "on" : "off");
                return;
        }
        (void) kfd_set_xnack_mode(p->fd, mode, &other);
        result(p, PROBE_CHECK_XNACK, PROBE_DIFFERS, "svmd logs the failure and serves with the kernel's mode.",
               "XNACK is %s; switching it failed with %s (expected success or EPERM).", mode ? "on" : "off", strerror(-r));
}

static void check_secondary_context(Probe *p) {
        static const char svmd[] =
                "svmd opens \"kfd-contexts\" KFD contexts (default 4) and puts each tenant's VRAM/GTT ranges in a "
                "secondary one; host and svm ranges stay in the primary. If one cannot be set up, svmd runs with "
                "the contexts it has.";
        _cleanup_close_ int fd = -EBADF, render = -EBADF;
        const KfdGpu *gpu = kfd_device_get_gpu(p->kfd, 0);
        char path[64];
        uint64_t h;
        void *host;
        int r;

        fd = open("/dev/kfd", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                result(p, PROBE_CHECK_SECONDARY_CONTEXT, PROBE_SKIPPED, svmd, "Cannot open /dev/kfd again: %s.",
                       strerror(errno));
                return;
        }

        r = kfd_create_process(fd);
        if (!kfd_device_has_feature(p->kfd, KFD_FEATURE_CREATE_PROCESS)) {
                if (r == 0)
                        result(p, PROBE_CHECK_SECONDARY_CONTEXT, PROBE_DIFFERS, svmd,
                               "CREATE_PROCESS succeeded although interface %u.%u is older than %s.",
                               p->report->kfd_major, p->report->kfd_minor,
                               kfd_feature_min_version(KFD_FEATURE_CREATE_PROCESS));
                else
                        result(p, PROBE_CHECK_SECONDARY_CONTEXT, PROBE_SKIPPED,
                               "svmd runs one KFD context.",
                               "No CREATE_PROCESS: it needs interface %s (here the ioctl fails: %s).",
                               kfd_feature_min_version(KFD_FEATURE_CREATE_PROCESS), strerror(-r));
                return;
        }
        if (r < 0) {
                result(p, PROBE_CHECK_SECONDARY_CONTEXT, PROBE_DIFFERS, svmd,
                       "CREATE_PROCESS on a new /dev/kfd fd failed: %s.", strerror(-r));
                return;
        }

        r = kfd_create_process(fd);
        if (r != -EINVAL) {
                result(p, PROBE_CHECK_SECONDARY_CONTEXT, PROBE_DIFFERS, svmd,
                       "CREATE_PROCESS on a secondary context returned %s, not EINVAL.", r < 0 ? strerror(-r) : "success");
                return;
        }

        /* A new context has no VM: ALLOC needs ACQUIRE_VM first. Closing the fd destroys it either way. */
        r = kfd_alloc(fd, PROBE_VA_BASE, PROBE_SZ_64K, p->gpu_ids[0], PROBE_VRAM_FLAGS, 0, &h, NULL);
        if (r != -ENODEV) {
                result(p, PROBE_CHECK_SECONDARY_CONTEXT, PROBE_DIFFERS, svmd,
                       "ALLOC in a secondary context without ACQUIRE_VM returned %s, not ENODEV.",
                       r < 0 ? strerror(-r) : "success");
                return;
        }

        /* What svmd does with it: its own render-node file (a DRM file's VM is acquired once), then VRAM. */
        (void) snprintf(path, sizeof(path), "/dev/dri/renderD%u", gpu->drm_render_minor);
        render = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (render < 0) {
                result(p, PROBE_CHECK_SECONDARY_CONTEXT, PROBE_DIFFERS, svmd, "Cannot open %s again: %s.", path,
                       strerror(errno));
                return;
        }
        r = kfd_acquire_vm(fd, gpu->gpu_id, render);
        if (r < 0) {
                result(p, PROBE_CHECK_SECONDARY_CONTEXT, PROBE_DIFFERS, svmd,
                       "ACQUIRE_VM of GPU 0x%x in a secondary context with a new file of %s failed: %s.",
                       gpu->gpu_id, path, strerror(-r));
                return;
        }
        r = kfd_alloc(fd, PROBE_VA_BASE, PROBE_SZ_64K, gpu->gpu_id, PROBE_VRAM_FLAGS, 0, &h, NULL);
        if (r < 0) {
                result(p, PROBE_CHECK_SECONDARY_CONTEXT, PROBE_DIFFERS, svmd,
                       "ALLOC of VRAM in a secondary context failed: %s.", strerror(-r));
                return;
        }
        (void) kfd_free(fd, h);

        /* USERPTR is refused there: svmd keeps host ranges in the primary. */
        host = mmap(NULL, PROBE_SZ_64K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (host == MAP_FAILED) {
                result(p, PROBE_CHECK_SECONDARY_CONTEXT, PROBE_SKIPPED, svmd, "mmap of 64 KiB failed: %s.",
                       strerror(errno));
                return;
        }
        r = kfd_alloc(fd, PROBE_VA_BASE + PROBE_SZ_2M, PROBE_SZ_64K, gpu->gpu_id,
                      KFD_IOC_ALLOC_MEM_FLAGS_USERPTR | PROBE_WRITABLE, (uint64_t) (uintptr_t) host, &h, NULL);
        (void) munmap(host, PROBE_SZ_64K);
        if (r != -EOPNOTSUPP) {
                if (r >= 0)
                        (void) kfd_free(fd, h);
                result(p, PROBE_CHECK_SECONDARY_CONTEXT, PROBE_DIFFERS, svmd,
                       "USERPTR in a secondary context returned %s, not EOPNOTSUPP.",
                       r < 0 ? strerror(-r) : "success");
                return;
        }

        result(p, PROBE_CHECK_SECONDARY_CONTEXT, PROBE_PASS, svmd,
               "CREATE_PROCESS makes a secondary context once per fd (again: EINVAL), with no VM until ACQUIRE_VM "
               "(ALLOC: ENODEV); with its own render-node file it takes VRAM, and refuses USERPTR (EOPNOTSUPP).");
}

/*
 * What health.c relies on (docs/architecture.md, "GPU health"): a listener per GPU, the mask
 * written as 8 bytes (fewer: EFAULT), a read that never waits, lines in the kernel's format.
 */
static void check_smi_events(Probe *p) {
        static const char svmd[] =
                "svmd watches resets, VM faults and thermal throttling of every GPU through SMI events.";
        uint64_t mask = UINT64_C(1) << (HEALTH_SMI_GPU_PRE_RESET - 1);
        int fd, r;

        if (p->report->kfd_major != 1 || p->report->kfd_minor < SVMD_KFD_MINOR_SMI_EVENTS) {
                result(p, PROBE_CHECK_SMI_EVENTS, PROBE_DIFFERS,
                       "svmd does not notice GPU resets (VRAM ranges are not marked contents-lost) or VM faults.",
                       "No SMI events: they need interface 1.%d.", SVMD_KFD_MINOR_SMI_EVENTS);
                return;
        }
        r = kfd_smi_events_open(p->fd, 0, &fd);
        if (r != -EINVAL) {
                if (r >= 0)
                        safe_close(fd);
                result(p, PROBE_CHECK_SMI_EVENTS, PROBE_DIFFERS, svmd,
                       "SMI_EVENTS for gpu_id 0 returned %s, not EINVAL.", r < 0 ? strerror(-r) : "a listener");
                return;
        }
        for (size_t i = 0; i < p->n_gpus; i++) {
                char buf[256];
                ssize_t n;

                r = kfd_smi_events_open(p->fd, p->gpu_ids[i], &fd);
                if (r < 0) {
                        result(p, PROBE_CHECK_SMI_EVENTS, PROBE_DIFFERS,
                               "svmd does not notice this GPU's resets or VM faults.",
                               "SMI_EVENTS on GPU 0x%x failed: %s.", p->gpu_ids[i], strerror(-r));
                        return;
                }
                n = write(fd, &mask, 4);
                if (n >= 0 || errno != EFAULT) {
                        result(p, PROBE_CHECK_SMI_EVENTS, PROBE_DIFFERS, svmd,
                               "A 4-byte mask write on GPU 0x%x returned %s, not EFAULT.", p->gpu_ids[i],
                               n >= 0 ? "success" : strerror(errno));
                        safe_close(fd);
                        return;
                }
                n = write(fd, &mask, sizeof(mask));
                if (n != (ssize_t) sizeof(mask)) {
                        result(p, PROBE_CHECK_SMI_EVENTS, PROBE_FAIL,
                               "svmd would not hear this GPU's resets.",
                               "Writing the event mask on GPU 0x%x returned %s.", p->gpu_ids[i],
                               n >= 0 ? "a short count" : strerror(errno));
                        safe_close(fd);
                        return;
                }
                /* Nothing queued (or a reset line, on a node that resets right now): no wait either way. */
                n = read(fd, buf, sizeof(buf) - 1);
                r = n < 0 ? -errno : 0;
                safe_close(fd);
                if (n < 0 && r != -EAGAIN) {
                        result(p, PROBE_CHECK_SMI_EVENTS, PROBE_FAIL, "svmd would stop watching this GPU.",
                               "Reading a new listener on GPU 0x%x failed with %s, not EAGAIN.", p->gpu_ids[i],
                               strerror(-r));
                        return;
                }
                if (n > 0) {
                        SmiEvent ev;

                        buf[n] = '\0';
                        buf[strcspn(buf, "\n")] = '\0';
                        if (smi_event_parse(buf, &ev) < 0) {
                                result(p, PROBE_CHECK_SMI_EVENTS, PROBE_DIFFERS,
                                       "svmd logs such lines as unknown and ignores them.",
                                       "GPU 0x%x sent '%s', not in a format svmd knows.", p->gpu_ids[i], buf);
                                return;
                        }
                }
        }
        result(p, PROBE_CHECK_SMI_EVENTS, PROBE_PASS, svmd,
               "%s: a listener each; a short mask write is EFAULT, an 8-byte one takes; reads do not wait.",
               p->on_all);
}

static void check_cleanup(Probe *p) {
        unsigned left = 0, failed = 0;
        int first = 0;

        for (size_t i = 0; i < PROBE_SCRATCH_MAX; i++) {
                int r;

                if (!p->scratch[i].used)
                        continue;
                left++;
                r = scratch_free(p, p->scratch[i].handle);
                if (r < 0) {
                        failed++;
                        first = first ?: r;
                }
        }
        if (failed > 0) {
                result(p, PROBE_CHECK_CLEANUP, PROBE_FAIL,
                       "svmd cannot free memory on this kernel; the probe's buffers go when its process exits.",
                       "%u scratch buffer%s could not be freed: %s.", failed, failed == 1 ? "" : "s", strerror(-first));
                return;
        }

        if (p->have_available_start)
                for (size_t i = 0; i < p->n_gpus; i++) {
                        uint64_t now;

                        if (kfd_available_memory(p->fd, p->gpu_ids[i], &now) >= 0 && now != p->available_start[i]) {
                                result(p, PROBE_CHECK_CLEANUP, PROBE_DIFFERS,
                                       "Nothing: another process on the node may have allocated or freed meanwhile.",
                                       "Every scratch buffer was freed, but AVAILABLE_MEMORY of GPU 0x%x is %" PRIu64
                                       " bytes, %" PRIu64 " at the start.", p->gpu_ids[i], now, p->available_start[i]);
                                return;
                        }
                }

        result(p, PROBE_CHECK_CLEANUP, PROBE_PASS, NULL,
               "Every scratch buffer was freed%s%s.", left > 0 ? " (some only here, after a check failed)" : "",
               p->have_available_start ? " and AVAILABLE_MEMORY is back at its value at the start" : "");
}

/* ---- running and reporting ---- */

int probe_run(ProbeReport **ret) {
        _cleanup_(probe_report_freep) ProbeReport *report = NULL;
        Probe p = { .fd = -EBADF, .next_va = PROBE_VA_BASE };
        static void (*const checks[])(Probe *p) = {
                check_acquire_vm,
                check_available_memory,
                check_map_restart,
                check_map_mapped,
                check_unmap_unmapped,
                check_free_mapped,
                check_handle_reuse,
                check_dmabuf,
                check_svm_attributes,
                check_xnack,
                check_secondary_context,
                check_smi_events,
        };

        report = new0(ProbeReport, 1);
        if (!report)
                return -ENOMEM;
        for (ProbeCheck c = 0; c < _PROBE_CHECK_MAX; c++)
                report->results[c] = (ProbeResult) { .name = check_table[c], .status = PROBE_SKIPPED };
        p.report = report;

        check_interface_version(&p);
        if (result_status(&p, PROBE_CHECK_INTERFACE_VERSION) != PROBE_FAIL)
                check_gpus(&p);

        if (p.kfd) {
                for (size_t i = 0; i < ELEMENTSOF(checks); i++)
                        checks[i](&p);
                check_cleanup(&p);
        }

        for (ProbeCheck c = 0; c < _PROBE_CHECK_MAX; c++)
                if (!report->results[c].found)
                        result(&p, c, PROBE_SKIPPED, NULL, "Not run: it needs /dev/kfd open with every GPU's VM acquired.");

        kfd_device_free(p.kfd);
        free(p.device_error);
        *ret = TAKE_PTR(report);
        return 0;
}

ProbeReport *probe_report_free(ProbeReport *r) {
        if (!r)
                return NULL;
        for (ProbeCheck c = 0; c < _PROBE_CHECK_MAX; c++) {
                free(r->results[c].found);
                free(r->results[c].svmd);
        }
        return mfree(r);
}

bool probe_report_svmd_can_run(const ProbeReport *r) {
        for (ProbeCheck c = 0; c < _PROBE_CHECK_MAX; c++)
                if (r->results[c].status == PROBE_FAIL)
                        return false;
        return true;
}

void probe_report_print(const ProbeReport *r, FILE *f) {
        bool can_run = probe_report_svmd_can_run(r);

        if (r->have_version)
                fprintf(f, "svmd kernel-contract probe: KFD interface %u.%u\n\n", r->kfd_major, r->kfd_minor);
        else
                fprintf(f, "svmd kernel-contract probe: KFD interface unknown\n\n");

        for (ProbeCheck c = 0; c < _PROBE_CHECK_MAX; c++) {
                const ProbeResult *res = &r->results[c];

                fprintf(f, "%-8s %s\n", probe_status_to_string(res->status), res->name);
                fprintf(f, "         found: %s\n", strna(res->found));
                if (res->svmd)
                        fprintf(f, "         svmd:  %s\n", res->svmd);
        }

        fprintf(f, "\n%s\n", can_run ? "svmd can run correctly on this kernel."
                                     : "svmd cannot run correctly on this kernel: see the checks marked \"fail\".");
}

int probe_report_to_json(const ProbeReport *r, json_t **ret) {
        json_auto_t *root = NULL, *checks = NULL;
        char version[32];

        checks = json_array();
        if (!checks)
                return -ENOMEM;
        for (ProbeCheck c = 0; c < _PROBE_CHECK_MAX; c++) {
                const ProbeResult *res = &r->results[c];
                json_t *o;

                o = json_pack("{s:s, s:s, s:s?, s:s?, s:b}",
                              "name", res->name,
                              "status", probe_status_to_string(res->status),
                              "found", res->found,
                              "svmd", res->svmd,
                              "svmd_can_run", res->status != PROBE_FAIL);
                if (!o || json_array_append_new(checks, o) < 0)
                        return -ENOMEM;
        }

        (void) snprintf(version, sizeof(version), "%u.%u", r->kfd_major, r->kfd_minor);
        root = json_pack("{s:s?, s:b, s:O}",
                         "kfd_version", r->have_version ? version : NULL,
                         "svmd_can_run", probe_report_svmd_can_run(r),
                         "checks", checks);
        if (!root)
                return -ENOMEM;

        *ret = TAKE_PTR(root);
        return 0;
}
