/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * svmd_attach_local(): make a range usable in the caller's own process at its
 * SVM address. The daemon hands over an fd (Export for an owner, Attach for a
 * token holder); the rest happens here, in this process's own KFD context
 * (a KFD context belongs to the process that opened /dev/kfd, so the daemon
 * cannot do it for us):
 *
 *   reserve [va, va+size)         mmap PROT_NONE, MAP_FIXED_NOREPLACE
 *   CPU-map host-visible memory   mmap of the dma-buf (gtt, public vram) or memfd (host, svm) at va
 *   import at va                  IMPORT_DMABUF (vram, gtt) or ALLOC USERPTR over the memfd (host)
 *   map to the listed GPUs        one MAP_MEMORY_TO_GPU with all device ids
 *
 * An svm range has no buffer to import: after the first two steps its pages
 * are registered with AMDKFD_IOC_SVM at va, with the range's attributes (as
 * svmd reports them) and access for the listed GPUs:
 *
 *   record the prior attributes   GET_ATTR, and an undo that sets them back and reads them again
 *   set the range's attributes    SET_ATTR (not transactional in the kernel: hence the undo first)
 *
 * as one transaction of the kfd layer (kfd/txn.h): on failure the completed
 * steps are undone newest first, the map exactly for the n_success prefix the
 * kernel reports, and a reference Attach took is released. Undos that fail are
 * kept and retried at the next attach or detach; nothing is dropped silently.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <syslog.h>
#include <unistd.h>

#include "client.h"
#include "kfd-device.h"
#include "kfd-ioctl.h"
#include "kfd-svm.h"
#include "svmd-protocol.h"
#include "txn.h"

/* <linux/kfd_ioctl.h> spells it (1 << 31), which overflows int. */
#define ALLOC_FLAG_WRITABLE (UINT32_C(1) << 31)

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* The public SVM values are the kernel's. */
_Static_assert(SVMD_SVM_LOCATION_SYSTEM == KFD_IOCTL_SVM_LOCATION_SYSMEM, "SVM location");
_Static_assert(SVMD_SVM_LOCATION_NONE == KFD_IOCTL_SVM_LOCATION_UNDEFINED, "SVM location");
_Static_assert(SVMD_SVM_FLAG_HOST_ACCESS == KFD_IOCTL_SVM_FLAG_HOST_ACCESS, "SVM flag");
_Static_assert(SVMD_SVM_FLAG_COHERENT == KFD_IOCTL_SVM_FLAG_COHERENT, "SVM flag");
_Static_assert(SVMD_SVM_FLAG_HIVE_LOCAL == KFD_IOCTL_SVM_FLAG_HIVE_LOCAL, "SVM flag");
_Static_assert(SVMD_SVM_FLAG_GPU_RO == KFD_IOCTL_SVM_FLAG_GPU_RO, "SVM flag");
_Static_assert(SVMD_SVM_FLAG_GPU_EXEC == KFD_IOCTL_SVM_FLAG_GPU_EXEC, "SVM flag");
_Static_assert(SVMD_SVM_FLAG_GPU_READ_MOSTLY == KFD_IOCTL_SVM_FLAG_GPU_READ_MOSTLY, "SVM flag");
_Static_assert(SVMD_SVM_FLAG_GPU_ALWAYS_MAPPED == KFD_IOCTL_SVM_FLAG_GPU_ALWAYS_MAPPED, "SVM flag");
#ifdef KFD_IOCTL_SVM_FLAG_EXT_COHERENT
_Static_assert(SVMD_SVM_FLAG_EXT_COHERENT == KFD_IOCTL_SVM_FLAG_EXT_COHERENT, "SVM flag");
#endif

struct LocalImport {
        LocalImport *next;
        uint64_t id;
        uint64_t va;
        uint64_t size;
        bool by_token;          /* Attach took a reference: Release it on detach */
        bool has_handle;
        uint64_t handle;        /* in this process's KFD context */
        size_t n_gpus;
        uint32_t gpus[SVMD_MAX_GPUS];
        /* svm ranges: registered in this process's KFD context; detach's munmap unregisters it */
        bool svm_registered;
};

/* The process's KFD context, opened on first use and kept for the life of the process. */
static pthread_mutex_t kfd_lock = PTHREAD_MUTEX_INITIALIZER;
static KfdDevice *kfd_device;
static pid_t kfd_pid;
/* Transactions whose rollback did not complete, retried under kfd_lock. */
static Txn **failed_txns;
static size_t n_failed_txns;

typedef struct LogCapture {
        char message[512];
} LogCapture;

static void capture_log(int priority, const char *message, void *userdata) {
        LogCapture *l = userdata;

        if (priority <= LOG_ERR && !l->message[0])
                snprintf(l->message, sizeof(l->message), "%s", message);
}

/* Called with kfd_lock held. */
static int kfd_acquire(KfdDevice **ret, svmd_error *error) {
        LogCapture capture = {};
        KfdDeviceConfig config = { .log = capture_log, .log_userdata = &capture };
        int r;

        if (kfd_device && kfd_pid != getpid()) {
                /*
                 * Inherited over fork(): that context belongs to the parent. Our copies of its fds
                 * are closed; the child opens its own.
                 */
                kfd_device = kfd_device_free(kfd_device);
        }
        if (!kfd_device) {
                r = kfd_device_new(&kfd_device, &config);
                if (r < 0)
                        return error_setf(error, r, NULL, "Opening this process's KFD context failed: %s.",
                                          capture.message[0] ? capture.message : strerror(-r));
                kfd_pid = getpid();
        }
        *ret = kfd_device;
        return 0;
}

static void retry_failed_txns(void) {
        size_t kept = 0;

        for (size_t i = 0; i < n_failed_txns; i++) {
                size_t n = 0;

                (void) txn_retry_failed(failed_txns[i]);
                (void) txn_get_failed(failed_txns[i], &n);
                if (n == 0)
                        txn_free(failed_txns[i]);
                else
                        failed_txns[kept++] = failed_txns[i];
        }
        n_failed_txns = kept;
}

static void keep_failed_txn(Txn *t) {
        Txn **p = reallocarray(failed_txns, n_failed_txns + 1, sizeof(Txn *));

        if (!p) {
                /* Cannot remember it: run what is left once more now rather than forget it. */
                (void) txn_retry_failed(t);
                txn_free(t);
                return;
        }
        failed_txns = p;
        failed_txns[n_failed_txns++] = t;
}

/* ---- undo steps ---- */

typedef struct KfdUndo {
        int kfd_fd;
        uint64_t handle;
        uint32_t n;
        uint32_t gpus[SVMD_MAX_GPUS];
} KfdUndo;

static int undo_free(void *userdata) {
        KfdUndo *u = userdata;

        return kfd_free(u->kfd_fd, u->handle);
}

static int undo_unmap(void *userdata) {
        KfdUndo *u = userdata;
        uint32_t done = 0;
        int r;

        r = kfd_unmap(u->kfd_fd, u->handle, u->gpus, u->n, &done);
        if (r < 0 && done > 0) {
                /* Those are unmapped now; a retry must not unmap them again (EINVAL). */
                memmove(u->gpus, u->gpus + done, (u->n - done) * sizeof(uint32_t));
                u->n -= done;
        }
        return r;
}

typedef struct VaUndo {
        uint64_t va;
        uint64_t size;
} VaUndo;

static int undo_reserve(void *userdata) {
        VaUndo *u = userdata;

        return munmap((void *) (uintptr_t) u->va, u->size) < 0 ? negative_errno() : 0;
}

_printf_(7, 0)
static int add_kfd_undo(Txn *t, TxnUndoFunc f, int kfd_fd, uint64_t handle, const uint32_t *gpus, uint32_t n,
                        const char *format, uint64_t va) {
        KfdUndo *u = calloc(1, sizeof(KfdUndo));

        if (!u)
                return -ENOMEM;
        *u = (KfdUndo) { .kfd_fd = kfd_fd, .handle = handle, .n = n };
        if (n > 0)
                memcpy(u->gpus, gpus, n * sizeof(uint32_t));
        return txn_add_undo(t, f, u, free, format, va);
}

typedef struct SvmUndo {
        int kfd_fd;
        uint64_t va;
        uint64_t size;
        KfdSvmAttrs before;
} SvmUndo;

/*
 * Set the prior attributes back. A restore that fails is not a failed rollback: the undo that runs next
 * unmaps [va, va+size), and the kernel drops the SVM range with all its attributes then (its MMU notifier),
 * which is the state before the attach, when nothing was registered there. Keeping the restore for a later
 * retry would even do harm: by then the address may belong to the next attach of the same range.
 */
static int undo_svm_set(void *userdata) {
        SvmUndo *u = userdata;

        (void) kfd_svm_attrs_restore(u->kfd_fd, u->va, u->size, &u->before);
        return 0;
}

/* "0x3a1f,0x4b20" */
static void format_gpus(char *buf, size_t size, const uint32_t *gpus, size_t n) {
        size_t len = 0;

        buf[0] = 0;
        for (size_t i = 0; i < n && len < size; i++)
                len += (size_t) snprintf(buf + len, size - len, "%s0x%x", i > 0 ? "," : "", gpus[i]);
}

/* ---- attach ---- */

typedef struct Source {
        uint64_t id;
        uint64_t va;
        uint64_t size;
        int fd;
        bool by_token;
        /* A memfd is the backing of a host or an svm range; for svm ranges, its attributes. */
        bool is_memfd;
        bool is_svm;
        svmd_svm_state svm;
} Source;

static int parse_id(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!*s || strspn(s, "0123456789") != strlen(s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end || v == 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int get_source(svmd_client *c, const char *id_or_token, Source *ret, svmd_error *error) {
        uint64_t id;
        int r;

        if (parse_id(id_or_token, &id) >= 0) {
                uint64_t va, size;
                int fd;

                r = svmd_export(c, id, &fd, &va, &size, error);
                if (r < 0)
                        return r;
                *ret = (Source) { .id = id, .va = va, .size = size, .fd = fd };
        } else {
                svmd_attachment a;

                r = svmd_attach(c, id_or_token, &a, error);
                if (r < 0)
                        return r;
                *ret = (Source) { .id = a.id, .va = a.va, .size = a.size, .fd = a.fd, .by_token = true };
        }
        if (ret->size == 0 || ret->va % 4096 || ret->size % 4096 || ret->va + ret->size < ret->va) {
                safe_close(ret->fd);
                return error_setf(error, -EBADMSG, NULL,
                                  "svmd described range %" PRIu64 " as 0x%" PRIx64 "+0x%" PRIx64
                                  ", which is not a page-aligned range.", ret->id, ret->va, ret->size);
        }

        /*
         * A dma-buf says what it is itself (GET_DMABUF_INFO); a memfd (it has seals, a dma-buf has none)
         * backs a host or an svm range, and which one only svmd knows: ask it every time.
         */
        ret->is_memfd = fcntl(ret->fd, F_GET_SEALS) >= 0;
        if (ret->is_memfd) {
                r = range_get_svm(c, ret->id, NULL, 0, &ret->is_svm, &ret->svm, error);
                if (r < 0) {
                        safe_close(ret->fd);
                        /* Attach took a reference for us; without the import nobody holds it. */
                        if (ret->by_token)
                                (void) svmd_release(c, ret->id, NULL);
                        return r;
                }
        }
        return 0;
}

static int fail(Txn **tp, svmd_error *error, int r, const char *name, const char *format, ...) _printf_(5, 6);
static int fail(Txn **tp, svmd_error *error, int r, const char *name, const char *format, ...) {
        _cleanup_free_ char *what = NULL;
        va_list ap;
        int k;

        va_start(ap, format);
        if (vasprintf(&what, format, ap) < 0)
                what = NULL;
        va_end(ap);

        k = txn_rollback(*tp);
        if (k < 0) {
                keep_failed_txn(TAKE_PTR(*tp));
                return error_setf(error, -ENOTRECOVERABLE, SVMD_ERROR_ROLLBACK_FAILED,
                                  "%s; undoing the completed steps failed too (%s), the rest is retried at the "
                                  "next attach or detach.", strempty(what), strerror(-k));
        }
        return error_setf(error, r, name, "%s; nothing was changed.", strempty(what));
}

/* Step 1: the SVM address, in this process too. */
static int reserve_va(Txn **tp, const Source *src, svmd_error *error) {
        uint64_t va = src->va, size = src->size;
        VaUndo *u;
        void *p;
        int r;

        p = mmap((void *) (uintptr_t) va, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
                 MAP_FIXED_NOREPLACE, -1, 0);
        if (p == MAP_FAILED || p != (void *) (uintptr_t) va) {
                r = p == MAP_FAILED ? negative_errno() : -EEXIST;
                if (p != MAP_FAILED)
                        (void) munmap(p, size); /* a kernel without MAP_FIXED_NOREPLACE took it as a hint */
                if (r == -EEXIST)
                        return fail(tp, error, r, NULL,
                                    "Range %" PRIu64 " lives at 0x%" PRIx64 "–0x%" PRIx64 ", but this process "
                                    "already has a mapping there; keep svmd's window (see svmd.conf "
                                    "\"va-window\") free of other mappings", src->id, va, va + size);
                return fail(tp, error, r, NULL, "Reserving 0x%" PRIx64 "+0x%" PRIx64 " for range %" PRIu64
                            " failed: %s", va, size, src->id, strerror(-r));
        }
        u = calloc(1, sizeof(VaUndo));
        if (!u) {
                (void) munmap(p, size);
                return fail(tp, error, -ENOMEM, NULL, "Out of memory");
        }
        *u = (VaUndo) { .va = va, .size = size };
        r = txn_add_undo(*tp, undo_reserve, u, free, "unreserve 0x%" PRIx64, va);
        if (r < 0)
                return fail(tp, error, r, NULL, "Out of memory");
        return 0;
}

/* Step 2: CPU access at the same address (the reservation's undo unmaps it). */
static int map_cpu(Txn **tp, const Source *src, bool writable, svmd_error *error) {
        void *p;

        p = mmap((void *) (uintptr_t) src->va, src->size, PROT_READ | (writable ? PROT_WRITE : 0),
                 MAP_SHARED | MAP_FIXED, src->fd, 0);
        if (p == MAP_FAILED)
                return fail(tp, error, negative_errno(), NULL,
                            "Mapping range %" PRIu64 " for the CPU at 0x%" PRIx64 " failed: %m", src->id, src->va);
        return 0;
}

/*
 * The SVM flags the pages get in this process: every flag svmd names for the range (also one this libsvmd
 * has no public bit for yet, as long as the kernel layer knows it), and gpu-ro for a read-only import.
 */
static int svm_attach_flags(Txn **tp, const Source *src, bool writable, uint32_t *ret, svmd_error *error) {
        const svmd_svm_state *st = &src->svm;
        uint32_t flags = 0;

        if (st->granularity > KFD_SVM_GRANULARITY_MAX)
                return fail(tp, error, -EBADMSG, NULL,
                            "svmd reports SVM granularity %u for range %" PRIu64 ", more than the kernel's %u",
                            st->granularity, src->id, KFD_SVM_GRANULARITY_MAX);
        for (const char *p = st->flag_names; *p;) {
                size_t len = strcspn(p, ",");
                char name[64];
                uint32_t bit;

                snprintf(name, sizeof(name), "%.*s", (int) MIN(len, sizeof(name) - 1), p);
                if (kfd_svm_flag_from_string(name, &bit) < 0)
                        return fail(tp, error, -EOPNOTSUPP, SVMD_ERROR_NOT_SUPPORTED,
                                    "Range %" PRIu64 " has the SVM flag \"%s\", which this libsvmd does not "
                                    "know; update libsvmd", src->id, name);
                flags |= bit;
                p += len + (p[len] == ',');
        }
        if (!writable)
                flags |= KFD_IOCTL_SVM_FLAG_GPU_RO;
        *ret = flags;
        return 0;
}

/*
 * The SET_ATTR list that gives the pages at va, in this process, the attributes svmd reports for the
 * range, and access for gpus[0..n): ACCESS_IN_PLACE where the range has it for that GPU, else ACCESS;
 * no access for the process's other GPUs that take part in SVM.
 * Left out: a preferred or prefetch location on a GPU this process cannot open (the kernel would refuse
 * it), and a prefetch location where before has none, because no SET can make it "undefined" again, so
 * the change could not be undone. (Prefetching is an action, not a lasting attribute: it migrates the
 * pages now, and the pages of a memfd are system memory already.) Returns the count.
 */
static uint32_t svm_attach_list(KfdDevice *d, const Source *src, const uint32_t *gpus, size_t n, uint32_t flags,
                                const KfdSvmAttrs *before, struct kfd_ioctl_svm_attribute *list) {
        const svmd_svm_state *st = &src->svm;
        uint32_t nl = 0;

        if (st->preferred == SVMD_SVM_LOCATION_SYSTEM || st->preferred == SVMD_SVM_LOCATION_NONE ||
            kfd_device_find_gpu(d, st->preferred))
                list[nl++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, st->preferred };
        if (before->prefetch_loc != KFD_IOCTL_SVM_LOCATION_UNDEFINED &&
            (st->prefetch == SVMD_SVM_LOCATION_SYSTEM ||
             (st->prefetch != SVMD_SVM_LOCATION_NONE && kfd_device_find_gpu(d, st->prefetch))))
                list[nl++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, st->prefetch };
        list[nl++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_SET_FLAGS, flags };
        list[nl++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_CLR_FLAGS, ~flags };
        list[nl++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_GRANULARITY, st->granularity };
        for (size_t i = 0; i < n; i++) {
                uint32_t type = KFD_IOCTL_SVM_ATTR_ACCESS;

                for (uint32_t j = 0; j < st->n_access_in_place; j++)
                        if (st->access_in_place[j] == gpus[i])
                                type = KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE;
                list[nl++] = (struct kfd_ioctl_svm_attribute) { type, gpus[i] };
        }
        /* Explicitly none for this process's other SVM GPUs: with XNACK on, the kernel's default is access. */
        for (size_t g = 0; g < kfd_device_get_n_gpus(d) && nl < KFD_SVM_ATTRS_MAX; g++) {
                const KfdGpu *k = kfd_device_get_gpu(d, g);
                bool listed = false;

                for (size_t i = 0; i < n; i++)
                        listed = listed || gpus[i] == k->gpu_id;
                if (!listed && (k->capability & KFD_SVM_CAP_SUPPORTED))
                        list[nl++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_NO_ACCESS, k->gpu_id };
        }
        return nl;
}

/*
 * An svm range: reserve, CPU-map the memfd, then (for n > 0) register the pages in this process's KFD
 * context. The kernel's SET_ATTR stops at the first attribute it cannot apply and keeps the others, so
 * the prior attributes are read first and the undo sets them back (and reads them again to prove it).
 */
static int attach_svm_locked(KfdDevice *d, Txn **tp, const Source *src, const uint32_t *gpus, size_t n,
                             bool writable, LocalImport *imp, svmd_error *error) {
        struct kfd_ioctl_svm_attribute list[KFD_SVM_ATTRS_MAX];
        int kfd_fd = kfd_device_get_fd(d);
        KfdSvmAttrs before = {};
        char list_s[SVMD_MAX_GPUS * 12];
        uint32_t nl, flags = 0;
        SvmUndo *u;
        int r;

        if (n > 0) {
                const char *needed = NULL;
                uint32_t major, minor;

                if (kfd_device_require_feature(d, KFD_FEATURE_SVM, &needed) < 0) {
                        kfd_device_get_version(d, &major, &minor);
                        return fail(tp, error, -EOPNOTSUPP, SVMD_ERROR_NOT_SUPPORTED,
                                    "Range %" PRIu64 " is an svm range, which needs KFD interface %s for GPU "
                                    "access, but this kernel has %u.%u; attach it with no GPUs for CPU access",
                                    src->id, strna(needed), major, minor);
                }
                r = svm_attach_flags(tp, src, writable, &flags, error);
                if (r < 0)
                        return r;
        }

        r = reserve_va(tp, src, error);
        if (r < 0)
                return r;
        r = map_cpu(tp, src, writable, error);
        if (r < 0)
                return r;

        if (n > 0) {
                format_gpus(list_s, sizeof(list_s), gpus, n);

                r = kfd_svm_attrs_get(kfd_fd, src->va, src->size, gpus, (uint32_t) n, &before);
                if (r < 0)
                        return fail(tp, error, r, SVMD_ERROR_KERNEL,
                                    "Reading the SVM attributes at 0x%" PRIx64 " for range %" PRIu64 " failed: %s",
                                    src->va, src->id, strerror(-r));
                u = calloc(1, sizeof(SvmUndo));
                if (!u)
                        return fail(tp, error, -ENOMEM, NULL, "Out of memory");
                *u = (SvmUndo) { .kfd_fd = kfd_fd, .va = src->va, .size = src->size, .before = before };
                r = txn_add_undo(*tp, undo_svm_set, u, free, "restore SVM attributes at 0x%" PRIx64, src->va);
                if (r < 0)
                        return fail(tp, error, r, NULL, "Out of memory");

                nl = svm_attach_list(d, src, gpus, n, flags, &before, list);
                r = kfd_svm_set(kfd_fd, src->va, src->size, list, nl);
                if (r < 0)
                        return fail(tp, error, r, r == -ENOMEM ? SVMD_ERROR_OUT_OF_MEMORY : SVMD_ERROR_KERNEL,
                                    "Registering svm range %" PRIu64 " with its SVM attributes for GPU %s failed: %s",
                                    src->id, list_s, strerror(-r));
        }

        txn_commit(*tp);
        *imp = (LocalImport) {
                .id = src->id,
                .va = src->va,
                .size = src->size,
                .by_token = src->by_token,
                .n_gpus = n,
                .svm_registered = n > 0,
        };
        if (n > 0)
                memcpy(imp->gpus, gpus, n * sizeof(uint32_t));
        return 0;
}

static int attach_locked(const Source *src, const uint32_t *gpus, size_t n, LocalImport *imp, svmd_error *error) {
        _cleanup_(txn_freep) Txn *t = NULL;
        uint64_t va = src->va, size = src->size, info_size = 0, handle = 0;
        uint32_t info_gpu = 0, info_flags = 0, done = 0;
        bool is_memfd = false, host_visible, writable;
        KfdDevice *d = NULL;
        int r, kfd_fd, fl;

        r = txn_new(&t);
        if (r < 0)
                return error_setf(error, r, NULL, "Out of memory.");
        r = kfd_acquire(&d, error);
        if (r < 0)
                return r;
        kfd_fd = kfd_device_get_fd(d);
        for (size_t i = 0; i < n; i++)
                if (!kfd_device_find_gpu(d, gpus[i]))
                        return fail(&t, error, -ENXIO, SVMD_ERROR_NO_SUCH_GPU,
                                    "GPU 0x%x is not among the GPUs this process can open", gpus[i]);
        fl = fcntl(src->fd, F_GETFL);
        if (fl < 0)
                return fail(&t, error, negative_errno(), NULL, "Reading the fd of range %" PRIu64 " failed: %m",
                            src->id);
        writable = (fl & O_ACCMODE) == O_RDWR;

        if (src->is_svm)
                return attach_svm_locked(d, &t, src, gpus, n, writable, imp, error);

        /* What the fd is decides how it is imported: a dma-buf says so itself, a memfd is a host range. */
        r = kfd_get_dmabuf_info(kfd_fd, src->fd, &info_size, &info_gpu, &info_flags);
        if (r == -EINVAL)
                is_memfd = true;
        else if (r < 0)
                return fail(&t, error, r, SVMD_ERROR_KERNEL, "Reading the dma-buf of range %" PRIu64 " failed: %s",
                            src->id, strerror(-r));
        else if (info_size < size)
                return fail(&t, error, -EBADMSG, NULL,
                            "The dma-buf of range %" PRIu64 " holds %" PRIu64 " bytes, less than its %" PRIu64,
                            src->id, info_size, size);
        host_visible = is_memfd || (info_flags & KFD_IOC_ALLOC_MEM_FLAGS_GTT) ||
                       (info_flags & KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC);

        /* 1. The SVM address, in this process too. */
        r = reserve_va(&t, src, error);
        if (r < 0)
                return r;

        /* 2. CPU access at the same address where the memory is host-visible. */
        if (host_visible) {
                r = map_cpu(&t, src, writable, error);
                if (r < 0)
                        return r;
        }

        if (n > 0) {
                /* 3. The buffer in our KFD context, at va. */
                if (is_memfd)
                        /* The kernel does not export userptr memory: register the same pages again. */
                        r = kfd_alloc(kfd_fd, va, size, gpus[0],
                                      KFD_IOC_ALLOC_MEM_FLAGS_USERPTR |
                                              (writable ? ALLOC_FLAG_WRITABLE : 0),
                                      va, &handle, NULL);
                else
                        r = kfd_import_dmabuf(kfd_fd, src->fd, gpus[0], va, &handle);
                if (r < 0)
                        return fail(&t, error, r, SVMD_ERROR_KERNEL, "%s range %" PRIu64 " on GPU 0x%x failed: %s",
                                    is_memfd ? "Registering the host memory of" : "Importing", src->id, gpus[0],
                                    strerror(-r));
                r = add_kfd_undo(t, undo_free, kfd_fd, handle, NULL, 0, "free import at 0x%" PRIx64, va);
                if (r < 0)
                        return fail(&t, error, r, NULL, "Out of memory");

                /* 4. Every GPU in one ioctl; undo exactly what the kernel says it did. */
                r = kfd_map(kfd_fd, handle, gpus, (uint32_t) n, &done);
                if (done > 0) {
                        int k = add_kfd_undo(t, undo_unmap, kfd_fd, handle, gpus, done, "unmap 0x%" PRIx64, va);
                        if (k < 0)
                                return fail(&t, error, k, NULL, "Out of memory");
                }
                if (r < 0)
                        return fail(&t, error, r, r == -ENOMEM ? SVMD_ERROR_OUT_OF_MEMORY : SVMD_ERROR_KERNEL,
                                    "Mapping range %" PRIu64 " to GPU 0x%x failed: %s", src->id, gpus[done],
                                    strerror(-r));
        }

        txn_commit(t);
        *imp = (LocalImport) {
                .id = src->id,
                .va = va,
                .size = size,
                .by_token = src->by_token,
                .has_handle = n > 0,
                .handle = handle,
                .n_gpus = n,
        };
        if (n > 0)
                memcpy(imp->gpus, gpus, n * sizeof(uint32_t));
        return 0;
}

_public_ int svmd_attach_local(svmd_client *c, const char *id_or_token, const uint32_t *gpus, size_t n,
                               uint64_t *ret_va, svmd_error *error) {
        _cleanup_free_ LocalImport *imp = NULL;
        Source src;
        int r;

        if (!c || !id_or_token || !ret_va)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = request_check_gpus(gpus, n, false, error);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < i; j++)
                        if (gpus[i] == gpus[j])
                                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                                  "GPU 0x%x is listed twice.", gpus[i]);
        imp = calloc(1, sizeof(LocalImport));
        if (!imp)
                return error_setf(error, -ENOMEM, NULL, "Out of memory.");

        r = get_source(c, id_or_token, &src, error);
        if (r < 0)
                return r;

        pthread_mutex_lock(&kfd_lock);
        retry_failed_txns();
        r = attach_locked(&src, gpus, n, imp, error);
        pthread_mutex_unlock(&kfd_lock);
        /* Mappings and imports hold the buffer now; the fd is not needed any more. */
        safe_close(src.fd);
        if (r < 0) {
                /* Attach took a reference for us; without the import nobody holds it. */
                if (src.by_token)
                        (void) svmd_release(c, src.id, NULL);
                return r;
        }

        imp->next = c->imports;
        c->imports = imp;
        *ret_va = TAKE_PTR(imp)->va;
        return 0;
}

/* Called with kfd_lock held. On failure the import stays, with what is left to undo. */
static int detach_locked(LocalImport *imp, svmd_error *error) {
        int kfd_fd, r;

        if ((imp->has_handle || imp->svm_registered) && (!kfd_device || kfd_pid != getpid()))
                return error_setf(error, -ECHILD, NULL,
                                  "Range %" PRIu64 " was attached by another process (before a fork).", imp->id);

        /*
         * An svm registration needs no step of its own: attach found nothing mapped at va (it reserved it
         * with MAP_FIXED_NOREPLACE), so nothing was registered there, and the munmap below makes the kernel
         * drop the range with every attribute. Setting them back first could only fail and strand the rest.
         */

        if (imp->has_handle) {
                uint32_t done = 0;

                kfd_fd = kfd_device_get_fd(kfd_device);
                if (imp->n_gpus > 0) {
                        r = kfd_unmap(kfd_fd, imp->handle, imp->gpus, (uint32_t) imp->n_gpus, &done);
                        if (done > 0) {
                                memmove(imp->gpus, imp->gpus + done, (imp->n_gpus - done) * sizeof(uint32_t));
                                imp->n_gpus -= done;
                        }
                        if (r < 0)
                                return error_setf(error, r, SVMD_ERROR_KERNEL,
                                                  "Unmapping range %" PRIu64 " from GPU 0x%x failed: %s; "
                                                  "detach again to retry.", imp->id, imp->gpus[0], strerror(-r));
                }
                r = kfd_free(kfd_fd, imp->handle);
                if (r < 0)
                        return error_setf(error, r, SVMD_ERROR_KERNEL,
                                          "Freeing the import of range %" PRIu64 " failed: %s; detach again to retry.",
                                          imp->id, strerror(-r));
                imp->has_handle = false;
        }
        if (munmap((void *) (uintptr_t) imp->va, imp->size) < 0)
                return error_setf(error, negative_errno(), NULL, "Unmapping 0x%" PRIx64 " failed: %m.", imp->va);
        return 0;
}

static int detach(svmd_client *c, LocalImport **link, svmd_error *error) {
        LocalImport *imp = *link;
        int r;

        pthread_mutex_lock(&kfd_lock);
        retry_failed_txns();
        r = detach_locked(imp, error);
        pthread_mutex_unlock(&kfd_lock);
        if (r < 0)
                return r;

        *link = imp->next;
        if (imp->by_token) {
                r = svmd_release(c, imp->id, error);
                if (r == -ENOENT)
                        r = 0; /* freed by its owner meanwhile */
        }
        free(imp);
        return r;
}

_public_ int svmd_detach_local(svmd_client *c, uint64_t va, svmd_error *error) {
        if (!c)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        for (LocalImport **l = &c->imports; *l; l = &(*l)->next)
                if ((*l)->va == va)
                        return detach(c, l, error);
        return error_setf(error, -ENOENT, SVMD_ERROR_NO_SUCH_RANGE,
                          "Nothing is attached at 0x%" PRIx64 " through this client.", va);
}

void attach_local_detach_all(svmd_client *c) {
        while (c->imports) {
                LocalImport *imp = c->imports;

                if (detach(c, &c->imports, NULL) < 0 && c->imports == imp) {
                        /* What could not be undone goes with the process's KFD context at exit. */
                        c->imports = imp->next;
                        free(imp);
                }
        }
}
