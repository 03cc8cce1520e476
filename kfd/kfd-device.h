/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The process's KFD context: /dev/kfd, its interface version and features, the
 * topology, and per GPU the render-node fd whose VM was acquired for compute
 * (CPU mappings of VRAM/GTT go through it). A KFD context belongs to the
 * process that opened /dev/kfd, so the fd is never handed to anyone else.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <amdgpu.h>

#include "kfd-topology.h"
#include "macro.h"

typedef enum KfdFeature {
        KFD_FEATURE_SVM,                /* AMDKFD_IOC_SVM, SET_XNACK_MODE: 1.5 */
        KFD_FEATURE_AVAILABLE_MEMORY,   /* 1.9 */
        KFD_FEATURE_EXPORT_DMABUF,      /* 1.12 */
        KFD_FEATURE_CONTIGUOUS,         /* ALLOC flag CONTIGUOUS: 1.16 */
        KFD_FEATURE_MISC_PROCESS_FLAG,  /* SET_MEMORY_POLICY misc_process_flag: 1.18 */
        KFD_FEATURE_CREATE_PROCESS,     /* 1.19 */
        _KFD_FEATURE_MAX,
        _KFD_FEATURE_INVALID = -EINVAL,
} KfdFeature;

/* priority is a syslog level (LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG). */
typedef void (*KfdLogFunc)(int priority, const char *message, void *userdata);

typedef struct KfdDeviceConfig {
        /*
         * gfx7/gfx8 default cache policy: KFD_IOC_CACHE_POLICY_COHERENT (0) or
         * KFD_IOC_CACHE_POLICY_NONCOHERENT (1). The alternate aperture is not used.
         */
        uint32_t default_cache_policy;
        /* gfx9.4.x/9.5: KFD_PROC_FLAG_MFMA_HIGH_PRECISION (needs interface 1.18). */
        bool mfma_high_precision;
        /*
         * Where messages go; NULL: stderr. Every failure of kfd_device_new() is
         * logged here once at LOG_ERR as an actionable sentence, and warnings
         * (e.g. a VRAM size mismatch between amdgpu and KFD) at LOG_WARNING,
         * so callers only need to act on the returned -errno.
         */
        KfdLogFunc log;
        void *log_userdata;
} KfdDeviceConfig;

typedef struct KfdDevice KfdDevice;

/* Open /dev/kfd, load the topology, open and acquire every GPU. config may be NULL. */
int kfd_device_new(KfdDevice **ret, const KfdDeviceConfig *config);
KfdDevice *kfd_device_free(KfdDevice *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(KfdDevice *, kfd_device_free);

/* The /dev/kfd fd, for the kfd_* ioctl wrappers. Owned by d; never pass it to another process. */
int kfd_device_get_fd(const KfdDevice *d);
void kfd_device_get_version(const KfdDevice *d, uint32_t *ret_major, uint32_t *ret_minor);

const KfdTopology *kfd_device_get_topology(const KfdDevice *d);
size_t kfd_device_get_n_gpus(const KfdDevice *d);
const KfdGpu *kfd_device_get_gpu(const KfdDevice *d, size_t index);
const KfdGpu *kfd_device_find_gpu(const KfdDevice *d, uint32_t gpu_id);

/* The render-node fd acquired for gpu_id (owned by d), or -ENODEV. */
int kfd_device_get_render_fd(const KfdDevice *d, uint32_t gpu_id);
/* libdrm_amdgpu handle of gpu_id's render node (owned by d), or NULL. */
amdgpu_device_handle kfd_device_get_amdgpu(const KfdDevice *d, uint32_t gpu_id);

/*
 * A secondary KFD context (CREATE_PROCESS, interface 1.19+): its own /dev/kfd
 * fd, handles and, per GPU, its own render-node file whose VM it acquired. It
 * takes no USERPTR buffers and no SVM ranges, and it is destroyed (with every
 * buffer in it) when freed. Errors are logged like kfd_device_new()'s.
 */
typedef struct KfdContext KfdContext;
int kfd_context_new(KfdContext **ret, KfdDevice *d);
KfdContext *kfd_context_free(KfdContext *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(KfdContext *, kfd_context_free);
/* The context's /dev/kfd fd, owned by c. */
int kfd_context_get_fd(const KfdContext *c);

bool kfd_device_has_feature(const KfdDevice *d, KfdFeature f);
/*
 * 0 if the running kernel has f. Otherwise -EOPNOTSUPP, and *ret_needed_version
 * (if non-NULL) is set to the interface version that introduced it ("1.12"),
 * the output written on failure, for a NotSupported message.
 */
int kfd_device_require_feature(const KfdDevice *d, KfdFeature f, const char **ret_needed_version);

/* Feature detection by interface version alone. */
bool kfd_version_has_feature(uint32_t major, uint32_t minor, KfdFeature f);
const char *kfd_feature_to_string(KfdFeature f);
/* "1.12", or NULL for an invalid feature. */
const char *kfd_feature_min_version(KfdFeature f);

/* What SET_MEMORY_POLICY a GPU of gfx_target_version needs on interface 1.<minor>. */
typedef enum KfdMemoryPolicy {
        KFD_MEMORY_POLICY_NONE,         /* not needed: skipped */
        KFD_MEMORY_POLICY_CACHE,        /* gfx7/gfx8: default cache policy */
        KFD_MEMORY_POLICY_MISC_FLAG,    /* gfx9.4.x/9.5 on ≥ 1.18: misc_process_flag */
        _KFD_MEMORY_POLICY_MAX,
} KfdMemoryPolicy;

KfdMemoryPolicy kfd_memory_policy_for(uint32_t gfx_target_version, uint32_t kfd_minor);
