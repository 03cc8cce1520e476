/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <amdgpu.h>
#include <amdgpu_drm.h>
#include <xf86drm.h>

#include "kfd-device.h"
#include "kfd-ioctl.h"
#include "kfd-uapi.h"
#include "macro.h"

#define KFD_DEVICE_PATH "/dev/kfd"
#define KFD_SUPPORTED_MAJOR 1U

typedef struct KfdDeviceGpu {
        const KfdGpu *info;             /* points into KfdDevice.topology */
        int render_fd;
        amdgpu_device_handle amdgpu;
} KfdDeviceGpu;

struct KfdDevice {
        int fd;
        uint32_t major;
        uint32_t minor;
        KfdTopology *topology;
        KfdDeviceGpu *gpus;             /* parallel to topology->gpus */
        size_t n_gpus;

        uint32_t default_cache_policy;
        bool mfma_high_precision;
        KfdLogFunc log;
        void *log_userdata;
};

static const struct {
        const char *name;
        uint32_t minor;
        const char *version;
} feature_table[_KFD_FEATURE_MAX] = {
        [KFD_FEATURE_SVM]               = { "svm",               SVMD_KFD_MINOR_SVM,              "1.5"  },
        [KFD_FEATURE_AVAILABLE_MEMORY]  = { "available-memory",  SVMD_KFD_MINOR_AVAILABLE_MEMORY, "1.9"  },
        [KFD_FEATURE_EXPORT_DMABUF]     = { "export-dmabuf",     SVMD_KFD_MINOR_EXPORT_DMABUF,    "1.12" },
        [KFD_FEATURE_CONTIGUOUS]        = { "contiguous",        SVMD_KFD_MINOR_CONTIGUOUS,       "1.16" },
        [KFD_FEATURE_MISC_PROCESS_FLAG] = { "misc-process-flag", SVMD_KFD_MINOR_MISC_PROC_FLAG,   "1.18" },
        [KFD_FEATURE_CREATE_PROCESS]    = { "create-process",    SVMD_KFD_MINOR_CREATE_PROCESS,   "1.19" },
};

_printf_(3, 4)
static void device_log(const KfdDevice *d, int priority, const char *format, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        va_start(ap, format);
        if (vasprintf(&msg, format, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!msg)
                return;

        if (d->log)
                d->log(priority, msg, d->log_userdata);
        else
                fprintf(stderr, "%s\n", msg);
}

/* Log an error once and return it. */
#define device_error(d, r, ...)                                 \
        ({                                                      \
                int _r = (r);                                   \
                device_log((d), LOG_ERR, __VA_ARGS__);          \
                _r;                                             \
        })

bool kfd_version_has_feature(uint32_t major, uint32_t minor, KfdFeature f) {
        if (f < 0 || f >= _KFD_FEATURE_MAX)
                return false;
        if (major != KFD_SUPPORTED_MAJOR)
                return false;
        return minor >= feature_table[f].minor;
}

const char *kfd_feature_to_string(KfdFeature f) {
        if (f < 0 || f >= _KFD_FEATURE_MAX)
                return NULL;
        return feature_table[f].name;
}

const char *kfd_feature_min_version(KfdFeature f) {
        if (f < 0 || f >= _KFD_FEATURE_MAX)
                return NULL;
        return feature_table[f].version;
}

KfdMemoryPolicy kfd_memory_policy_for(uint32_t gfx_target_version, uint32_t kfd_minor) {
        uint32_t major = KFD_GFX_MAJOR(gfx_target_version);
        uint32_t minor = KFD_GFX_MINOR(gfx_target_version);

        /* GFX7/8 (CIK/VI) use the per-process default MTYPE from this call. */
        if (major == 7 || major == 8)
                return KFD_MEMORY_POLICY_CACHE;

        /*
         * GFX 9.4.x and 9.5 read MFMA high precision from misc_process_flag;
         * before 1.18 that field is a pad the kernel ignores, so don't bother.
         */
        if (major == 9 && (minor == 4 || minor == 5) && kfd_minor >= SVMD_KFD_MINOR_MISC_PROC_FLAG)
                return KFD_MEMORY_POLICY_MISC_FLAG;

        return KFD_MEMORY_POLICY_NONE;
}

static int device_identify_render(KfdDevice *d, KfdDeviceGpu *g) {
        const KfdGpu *gpu = g->info;
        struct amdgpu_gpu_info info = {};
        struct drm_amdgpu_memory_info mem = {};
        drmVersionPtr version;
        uint32_t drm_major, drm_minor;
        bool is_amdgpu;
        int r;

        version = drmGetVersion(g->render_fd);
        if (!version)
                return device_error(d, -ENODEV,
                                    "renderD%u of GPU 0x%x is not a DRM device: %s",
                                    gpu->drm_render_minor, gpu->gpu_id, strerror(errno ?: ENODEV));
        is_amdgpu = version->name && streq(version->name, "amdgpu");
        if (!is_amdgpu) {
                r = device_error(d, -ENODEV,
                                 "renderD%u of GPU 0x%x is driven by \"%s\", not amdgpu; the KFD topology and the DRM devices disagree",
                                 gpu->drm_render_minor, gpu->gpu_id, strna(version->name));
                drmFreeVersion(version);
                return r;
        }
        drmFreeVersion(version);

        r = amdgpu_device_initialize(g->render_fd, &drm_major, &drm_minor, &g->amdgpu);
        if (r < 0) {
                g->amdgpu = NULL;
                return device_error(d, r, "cannot initialize amdgpu on renderD%u of GPU 0x%x: %s",
                                    gpu->drm_render_minor, gpu->gpu_id, strerror(-r));
        }

        r = amdgpu_query_gpu_info(g->amdgpu, &info);
        if (r < 0)
                return device_error(d, r, "cannot query amdgpu device info of renderD%u (GPU 0x%x): %s",
                                    gpu->drm_render_minor, gpu->gpu_id, strerror(-r));
        if (info.asic_id != gpu->device_id)
                return device_error(d, -ENODEV,
                                    "renderD%u is PCI device 0x%04x, but the KFD topology says GPU 0x%x (node %u) is 0x%04x",
                                    gpu->drm_render_minor, info.asic_id, gpu->gpu_id, gpu->node_id,
                                    gpu->device_id);

        /*
         * The KFD topology's memory bank is the GPU's real_vram_size (or its memory partition's
         * share), and so is AMDGPU_INFO_MEMORY's vram.total_heap_size. Not VRAM_GTT's vram_size
         * (amdgpu_query_heap_info()): that one is less what amdgpu pinned and AMDGPU_VM_RESERVED_VRAM,
         * so it never matches. Only a render node with more VRAM than the topology hints at a
         * wrong match; less is a memory partition (docs/emulator.md, "Memory accounting").
         */
        r = amdgpu_query_info(g->amdgpu, AMDGPU_INFO_MEMORY, sizeof(mem), &mem);
        if (r < 0)
                device_log(d, LOG_WARNING, "cannot query the VRAM of renderD%u (GPU 0x%x): %s, ignoring",
                           gpu->drm_render_minor, gpu->gpu_id, strerror(-r));
        else if (mem.vram.total_heap_size != gpu->vram_size)
                device_log(d, mem.vram.total_heap_size < gpu->vram_size ? LOG_WARNING : LOG_DEBUG,
                           "VRAM of GPU 0x%x: amdgpu reports %" PRIu64 " bytes on renderD%u, the KFD topology %" PRIu64 ", ignoring",
                           gpu->gpu_id, (uint64_t) mem.vram.total_heap_size, gpu->drm_render_minor,
                           gpu->vram_size);

        return 0;
}

static int device_acquire_gpu(const KfdDevice *d, int kfd_fd, const KfdGpu *gpu, int render_fd);

/* A new open file of gpu's render node (a new DRM file, so a VM of its own), or a logged -errno. */
static int device_open_render(const KfdDevice *d, const KfdGpu *gpu) {
        char path[64];
        int fd;

        (void) snprintf(path, sizeof(path), "/dev/dri/renderD%u", gpu->drm_render_minor);
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return device_error(d, negative_errno(), "cannot open %s for GPU 0x%x (%s): %s",
                                    path, gpu->gpu_id, gpu->pci_location, strerror(errno));
        return fd;
}

static int device_setup_gpu(KfdDevice *d, KfdDeviceGpu *g) {
        const KfdGpu *gpu = g->info;
        int r;

        g->render_fd = device_open_render(d, gpu);
        if (g->render_fd < 0)
                return g->render_fd;

        r = device_identify_render(d, g);
        if (r < 0)
                return r;

        return device_acquire_gpu(d, d->fd, gpu, g->render_fd);
}

/* ACQUIRE_VM of gpu in the context of kfd_fd with render_fd's VM, then its memory policy. */
static int device_acquire_gpu(const KfdDevice *d, int kfd_fd, const KfdGpu *gpu, int render_fd) {
        int r;

        r = kfd_acquire_vm(kfd_fd, gpu->gpu_id, render_fd);
        if (r == -EBUSY)
                return device_error(d, r,
                                    "cannot acquire the VM of GPU 0x%x: the GPU's VM is already acquired by this process with another render-node file",
                                    gpu->gpu_id);
        if (r == -EINVAL)
                return device_error(d, r,
                                    "cannot acquire the VM of GPU 0x%x: render node renderD%u is not an amdgpu device of this GPU or is used as another GPU's VM",
                                    gpu->gpu_id, gpu->drm_render_minor);
        if (r < 0)
                return device_error(d, r, "cannot acquire the VM of GPU 0x%x with renderD%u: %s",
                                    gpu->gpu_id, gpu->drm_render_minor, strerror(-r));

        switch (kfd_memory_policy_for(gpu->gfx_target_version, d->minor)) {

        case KFD_MEMORY_POLICY_CACHE:
                /* The alternate (APE1) aperture is unused: size 0, same policy. */
                r = kfd_set_memory_policy(kfd_fd, gpu->gpu_id, d->default_cache_policy,
                                          d->default_cache_policy, 0, 0, 0);
                if (r < 0)
                        return device_error(d, r, "cannot set the memory policy of GPU 0x%x (%s): %s",
                                            gpu->gpu_id, gpu->target, strerror(-r));
                break;

        case KFD_MEMORY_POLICY_MISC_FLAG:
                r = kfd_set_memory_policy(kfd_fd, gpu->gpu_id, d->default_cache_policy,
                                          d->default_cache_policy, 0, 0,
                                          d->mfma_high_precision ? KFD_PROC_FLAG_MFMA_HIGH_PRECISION : 0);
                if (r < 0)
                        return device_error(d, r, "cannot set the process flags of GPU 0x%x (%s): %s",
                                            gpu->gpu_id, gpu->target, strerror(-r));
                break;

        default:
                if (kfd_fd == d->fd && d->mfma_high_precision && KFD_GFX_MAJOR(gpu->gfx_target_version) == 9 &&
                    (KFD_GFX_MINOR(gpu->gfx_target_version) == 4 || KFD_GFX_MINOR(gpu->gfx_target_version) == 5))
                        device_log(d, LOG_WARNING,
                                   "MFMA high precision on GPU 0x%x needs KFD interface 1.18, the kernel has %u.%u, ignoring",
                                   gpu->gpu_id, d->major, d->minor);
                break;
        }

        return 0;
}

int kfd_device_new(KfdDevice **ret, const KfdDeviceConfig *config) {
        _cleanup_(kfd_device_freep) KfdDevice *d = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        assert(ret);

        d = new0(KfdDevice, 1);
        if (!d)
                return -ENOMEM;
        d->fd = -EBADF;
        if (config) {
                d->default_cache_policy = config->default_cache_policy;
                d->mfma_high_precision = config->mfma_high_precision;
                d->log = config->log;
                d->log_userdata = config->log_userdata;
        }

        if (d->default_cache_policy > KFD_IOC_CACHE_POLICY_NONCOHERENT)
                return device_error(d, -EINVAL, "invalid default cache policy %u (0 coherent, 1 non-coherent)",
                                    d->default_cache_policy);

        d->fd = open(KFD_DEVICE_PATH, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (d->fd < 0)
                return device_error(d, negative_errno(), "cannot open " KFD_DEVICE_PATH ": %s%s",
                                    strerror(errno),
                                    errno == ENOENT ? " (is the amdgpu driver loaded with KFD support?)" : "");

        r = kfd_get_version(d->fd, &d->major, &d->minor);
        if (r < 0)
                return device_error(d, r, "cannot read the KFD interface version: %s", strerror(-r));
        if (d->major != KFD_SUPPORTED_MAJOR)
                return device_error(d, -EPROTONOSUPPORT,
                                    "KFD interface %u.%u is not supported (major version %u is needed)",
                                    d->major, d->minor, KFD_SUPPORTED_MAJOR);

        r = kfd_topology_load(&d->topology, KFD_TOPOLOGY_ROOT, &error);
        if (r < 0)
                return device_error(d, r, "cannot read the KFD topology: %s",
                                    error ?: strerror(-r));
        if (d->topology->n_gpus == 0)
                return device_error(d, -ENODEV, "the KFD topology lists no GPU");

        d->gpus = new0(KfdDeviceGpu, d->topology->n_gpus);
        if (!d->gpus)
                return -ENOMEM;
        for (size_t i = 0; i < d->topology->n_gpus; i++)
                d->gpus[i] = (KfdDeviceGpu) {
                        .info = &d->topology->gpus[i],
                        .render_fd = -EBADF,
                };
        d->n_gpus = d->topology->n_gpus;

        for (size_t i = 0; i < d->n_gpus; i++) {
                r = device_setup_gpu(d, &d->gpus[i]);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(d);
        return 0;
}

KfdDevice *kfd_device_free(KfdDevice *d) {
        if (!d)
                return NULL;

        for (size_t i = 0; i < d->n_gpus; i++) {
                if (d->gpus[i].amdgpu)
                        (void) amdgpu_device_deinitialize(d->gpus[i].amdgpu);
                safe_close(d->gpus[i].render_fd);
        }
        free(d->gpus);
        kfd_topology_free(d->topology);
        /* The KFD process itself lives until this process exits; closing only drops the fd. */
        safe_close(d->fd);
        return mfree(d);
}

int kfd_device_get_fd(const KfdDevice *d) {
        assert(d);
        return d->fd;
}

void kfd_device_get_version(const KfdDevice *d, uint32_t *ret_major, uint32_t *ret_minor) {
        assert(d);

        if (ret_major)
                *ret_major = d->major;
        if (ret_minor)
                *ret_minor = d->minor;
}

const KfdTopology *kfd_device_get_topology(const KfdDevice *d) {
        assert(d);
        return d->topology;
}

size_t kfd_device_get_n_gpus(const KfdDevice *d) {
        assert(d);
        return d->n_gpus;
}

const KfdGpu *kfd_device_get_gpu(const KfdDevice *d, size_t index) {
        assert(d);
        return index < d->n_gpus ? d->gpus[index].info : NULL;
}

static const KfdDeviceGpu *device_find(const KfdDevice *d, uint32_t gpu_id) {
        assert(d);

        for (size_t i = 0; i < d->n_gpus; i++)
                if (d->gpus[i].info->gpu_id == gpu_id)
                        return &d->gpus[i];
        return NULL;
}

const KfdGpu *kfd_device_find_gpu(const KfdDevice *d, uint32_t gpu_id) {
        const KfdDeviceGpu *g = device_find(d, gpu_id);
        return g ? g->info : NULL;
}

int kfd_device_get_render_fd(const KfdDevice *d, uint32_t gpu_id) {
        const KfdDeviceGpu *g = device_find(d, gpu_id);
        return g ? g->render_fd : -ENODEV;
}

amdgpu_device_handle kfd_device_get_amdgpu(const KfdDevice *d, uint32_t gpu_id) {
        const KfdDeviceGpu *g = device_find(d, gpu_id);
        return g ? g->amdgpu : NULL;
}

bool kfd_device_has_feature(const KfdDevice *d, KfdFeature f) {
        assert(d);
        return kfd_version_has_feature(d->major, d->minor, f);
}

int kfd_device_require_feature(const KfdDevice *d, KfdFeature f, const char **ret_needed_version) {
        assert(d);

        if (f < 0 || f >= _KFD_FEATURE_MAX)
                return -EINVAL;
        if (kfd_device_has_feature(d, f))
                return 0;

        if (ret_needed_version)
                *ret_needed_version = feature_table[f].version;
        return -EOPNOTSUPP;
}

struct KfdContext {
        int fd;
        int *render_fds;                /* parallel to KfdDevice.gpus */
        size_t n_gpus;
};

int kfd_context_new(KfdContext **ret, KfdDevice *d) {
        _cleanup_(kfd_context_freep) KfdContext *c = NULL;
        int r;

        assert(d);
        assert(ret);

        r = kfd_device_require_feature(d, KFD_FEATURE_CREATE_PROCESS, NULL);
        if (r < 0)
                return device_error(d, r, "cannot create a secondary KFD context: it needs interface %s, the kernel has %u.%u",
                                    feature_table[KFD_FEATURE_CREATE_PROCESS].version, d->major, d->minor);

        c = new0(KfdContext, 1);
        if (!c)
                return -ENOMEM;
        c->fd = -EBADF;
        c->render_fds = new(int, d->n_gpus);
        if (!c->render_fds)
                return -ENOMEM;
        for (size_t i = 0; i < d->n_gpus; i++)
                c->render_fds[i] = -EBADF;
        c->n_gpus = d->n_gpus;

        /* kfd_open hands out the primary context; kfd_ioctl_create_process replaces it with a new
         * secondary one on this fd alone (docs/architecture.md, "KFD contexts"). */
        c->fd = open(KFD_DEVICE_PATH, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (c->fd < 0)
                return device_error(d, negative_errno(), "cannot open " KFD_DEVICE_PATH " for a secondary context: %s",
                                    strerror(errno));
        r = kfd_create_process(c->fd);
        if (r < 0)
                return device_error(d, r, "cannot create a secondary KFD context (CREATE_PROCESS): %s", strerror(-r));

        for (size_t i = 0; i < d->n_gpus; i++) {
                const KfdGpu *gpu = d->gpus[i].info;

                /* A DRM file's VM becomes a compute VM once: each context needs its own open file. */
                c->render_fds[i] = device_open_render(d, gpu);
                if (c->render_fds[i] < 0)
                        return c->render_fds[i];
                r = device_acquire_gpu(d, c->fd, gpu, c->render_fds[i]);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(c);
        return 0;
}

KfdContext *kfd_context_free(KfdContext *c) {
        if (!c)
                return NULL;
        /* Closing a secondary context's fd destroys it: its buffers are freed, its VMs released
         * (exported dma-bufs keep their buffers). The render files go with the VMs. */
        safe_close(c->fd);
        for (size_t i = 0; i < c->n_gpus; i++)
                safe_close(c->render_fds[i]);
        free(c->render_fds);
        return mfree(c);
}

int kfd_context_get_fd(const KfdContext *c) {
        assert(c);
        return c->fd;
}
