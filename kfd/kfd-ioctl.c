/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * KFD ioctl wrappers. The restart rules follow kfd_chardev.c: an interrupted
 * call (EINTR, the user-visible face of -ERESTARTSYS, or EAGAIN) is re-issued
 * with the same, unmodified argument struct. For MAP/UNMAP that struct carries
 * n_success, which the kernel updates after every device and always copies back,
 * so the re-issued call skips the devices already done. Resetting it would make
 * UNMAP fail with EINVAL on the devices already unmapped.
 */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "kfd-ioctl.h"
#include "kfd-uapi.h"
#include "macro.h"

/* Where svmd runs KFD ioctls: on its executor's workers (daemon/executor.c); NULL: here. */
static int (*kfd_ioctl_hook)(int fd, unsigned long request, void *arg);

void kfd_set_ioctl_hook(int (*hook)(int fd, unsigned long request, void *arg)) {
        kfd_ioctl_hook = hook;
}

/*
 * Unit tests include this file with KFD_IOCTL_TEST_SEAM defined and point
 * kfd_ioctl_fn at a fake kernel. Production builds call ioctl(), or the hook.
 */
#ifdef KFD_IOCTL_TEST_SEAM
static int kfd_ioctl_default(int fd, unsigned long request, void *arg) {
        return ioctl(fd, request, arg);
}
static int (*kfd_ioctl_fn)(int fd, unsigned long request, void *arg) = kfd_ioctl_default;
#define kfd_sys_ioctl(fd, request, arg) kfd_ioctl_fn((fd), (request), (arg))
#else
#define kfd_sys_ioctl(fd, request, arg) \
        (kfd_ioctl_hook ? kfd_ioctl_hook((fd), (request), (arg)) : ioctl((fd), (request), (arg)))
#endif

static bool errno_is_interrupt(int e) {
        return e == EINTR || e == EAGAIN;
}

/* Issue request, re-issuing it with the same arg while it is interrupted. */
static int kfd_ioctl_restart(int fd, unsigned long request, void *arg) {
        for (unsigned i = 0; i < KFD_IOCTL_MAX_RESTARTS; i++) {
                if (kfd_sys_ioctl(fd, request, arg) >= 0)
                        return 0;
                if (!errno_is_interrupt(errno))
                        return negative_errno();
        }
        return -EINTR;
}

int kfd_create_process(int kfd_fd) {
        return kfd_ioctl_restart(kfd_fd, AMDKFD_IOC_CREATE_PROCESS, NULL);
}

int kfd_get_version(int kfd_fd, uint32_t *ret_major, uint32_t *ret_minor) {
        struct kfd_ioctl_get_version_args args = {};
        int r;

        r = kfd_ioctl_restart(kfd_fd, AMDKFD_IOC_GET_VERSION, &args);
        if (r < 0)
                return r;

        if (ret_major)
                *ret_major = args.major_version;
        if (ret_minor)
                *ret_minor = args.minor_version;
        return 0;
}

int kfd_acquire_vm(int kfd_fd, uint32_t gpu_id, int drm_fd) {
        struct kfd_ioctl_acquire_vm_args args = {
                .drm_fd = (uint32_t) drm_fd,
                .gpu_id = gpu_id,
        };

        if (drm_fd < 0)
                return -EBADF;

        /* Idempotent for the same open file, so a restart is safe. */
        return kfd_ioctl_restart(kfd_fd, AMDKFD_IOC_ACQUIRE_VM, &args);
}

int kfd_set_memory_policy(int kfd_fd, uint32_t gpu_id, uint32_t default_policy,
                          uint32_t alternate_policy, uint64_t alternate_aperture_base,
                          uint64_t alternate_aperture_size, uint32_t misc_process_flag) {
        struct kfd_ioctl_set_memory_policy_args args = {
                .alternate_aperture_base = alternate_aperture_base,
                .alternate_aperture_size = alternate_aperture_size,
                .gpu_id = gpu_id,
                .default_policy = default_policy,
                .alternate_policy = alternate_policy,
#if KFD_IOCTL_MINOR_VERSION >= 18
                .misc_process_flag = misc_process_flag,
#else
                .pad = misc_process_flag,       /* the same 4 bytes at offset 28 */
#endif
        };

        return kfd_ioctl_restart(kfd_fd, AMDKFD_IOC_SET_MEMORY_POLICY, &args);
}

int kfd_alloc(int kfd_fd, uint64_t va, uint64_t size, uint32_t gpu_id, uint32_t flags,
              uint64_t userptr, uint64_t *ret_handle, uint64_t *ret_mmap_offset) {
        struct kfd_ioctl_alloc_memory_of_gpu_args args;
        int r;

        if (size == 0)
                return -EINVAL;

        /* mmap_offset is in/out: re-arm it for every attempt in case the kernel wrote it. */
        for (unsigned i = 0; i < KFD_IOCTL_MAX_RESTARTS; i++) {
                args = (struct kfd_ioctl_alloc_memory_of_gpu_args) {
                        .va_addr = va,
                        .size = size,
                        .mmap_offset = userptr,
                        .gpu_id = gpu_id,
                        .flags = flags,
                };

                r = kfd_sys_ioctl(kfd_fd, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &args);
                if (r >= 0) {
                        if (ret_handle)
                                *ret_handle = args.handle;
                        if (ret_mmap_offset)
                                *ret_mmap_offset = args.mmap_offset;
                        return 0;
                }
                if (!errno_is_interrupt(errno))
                        return negative_errno();
        }

        return -EINTR;
}

int kfd_free(int kfd_fd, uint64_t handle) {
        struct kfd_ioctl_free_memory_of_gpu_args args = {
                .handle = handle,
        };

        /* An interrupted FREE keeps the handle in the kernel's IDR: re-issuing finishes it. */
        return kfd_ioctl_restart(kfd_fd, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &args);
}

static int kfd_map_unmap(int kfd_fd, unsigned long request, uint64_t handle,
                         const uint32_t *gpu_ids, uint32_t n, uint32_t *ret_n_success) {
        struct kfd_ioctl_map_memory_to_gpu_args args = {
                .handle = handle,
                .device_ids_array_ptr = (uint64_t) (uintptr_t) gpu_ids,
                .n_devices = n,
                .n_success = 0,
        };
        int r = -EINTR;

        _Static_assert(sizeof(struct kfd_ioctl_map_memory_to_gpu_args) ==
                       sizeof(struct kfd_ioctl_unmap_memory_from_gpu_args), "map/unmap layouts differ");

        assert(ret_n_success);

        if (n == 0 || !gpu_ids) {
                *ret_n_success = 0;
                return -EINVAL;
        }

        for (unsigned i = 0; i < KFD_IOCTL_MAX_RESTARTS; i++) {
                /* Same struct every time: n_success carries over into the restart. */
                if (kfd_sys_ioctl(kfd_fd, request, &args) >= 0) {
                        r = 0;
                        break;
                }
                r = negative_errno();
                if (!errno_is_interrupt(-r))
                        break;
        }

        /* Never report more than we asked for, whatever came back. */
        *ret_n_success = r == 0 ? n : MIN(args.n_success, n);
        return r;
}

int kfd_map(int kfd_fd, uint64_t handle, const uint32_t *gpu_ids, uint32_t n, uint32_t *ret_n_success) {
        return kfd_map_unmap(kfd_fd, AMDKFD_IOC_MAP_MEMORY_TO_GPU, handle, gpu_ids, n, ret_n_success);
}

int kfd_unmap(int kfd_fd, uint64_t handle, const uint32_t *gpu_ids, uint32_t n, uint32_t *ret_n_success) {
        return kfd_map_unmap(kfd_fd, AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, handle, gpu_ids, n, ret_n_success);
}

int kfd_export_dmabuf(int kfd_fd, uint64_t handle, uint32_t flags, int *ret_dmabuf_fd) {
        struct kfd_ioctl_export_dmabuf_args args = {
                .handle = handle,
                .flags = flags | O_CLOEXEC,
        };
        int r;

        r = kfd_ioctl_restart(kfd_fd, AMDKFD_IOC_EXPORT_DMABUF, &args);
        if (r < 0)
                return r;

        if (ret_dmabuf_fd)
                *ret_dmabuf_fd = (int) args.dmabuf_fd;
        else
                safe_close((int) args.dmabuf_fd);
        return 0;
}

int kfd_import_dmabuf(int kfd_fd, int dmabuf_fd, uint32_t gpu_id, uint64_t va, uint64_t *ret_handle) {
        struct kfd_ioctl_import_dmabuf_args args = {
                .va_addr = va,
                .gpu_id = gpu_id,
                .dmabuf_fd = (uint32_t) dmabuf_fd,
        };
        int r;

        if (dmabuf_fd < 0)
                return -EBADF;

        r = kfd_ioctl_restart(kfd_fd, AMDKFD_IOC_IMPORT_DMABUF, &args);
        if (r < 0)
                return r;

        if (ret_handle)
                *ret_handle = args.handle;
        return 0;
}

int kfd_get_dmabuf_info(int kfd_fd, int dmabuf_fd, uint64_t *ret_size, uint32_t *ret_gpu_id,
                        uint32_t *ret_flags) {
        struct kfd_ioctl_get_dmabuf_info_args args = {
                .metadata_ptr = 0,      /* no metadata wanted */
                .metadata_size = 0,
                .dmabuf_fd = (uint32_t) dmabuf_fd,
        };
        int r;

        if (dmabuf_fd < 0)
                return -EBADF;

        r = kfd_ioctl_restart(kfd_fd, AMDKFD_IOC_GET_DMABUF_INFO, &args);
        if (r < 0)
                return r;

        if (ret_size)
                *ret_size = args.size;
        if (ret_gpu_id)
                *ret_gpu_id = args.gpu_id;
        if (ret_flags)
                *ret_flags = args.flags;
        return 0;
}

int kfd_available_memory(int kfd_fd, uint32_t gpu_id, uint64_t *ret_bytes) {
        struct kfd_ioctl_get_available_memory_args args = {
                .gpu_id = gpu_id,
        };
        int r;

        r = kfd_ioctl_restart(kfd_fd, AMDKFD_IOC_AVAILABLE_MEMORY, &args);
        if (r < 0)
                return r;

        if (ret_bytes)
                *ret_bytes = args.available;
        return 0;
}

int kfd_smi_events_open(int kfd_fd, uint32_t gpu_id, int *ret_fd) {
        struct kfd_ioctl_smi_events_args args = {
                .gpuid = gpu_id,
        };
        int fd, r;

        r = kfd_ioctl_restart(kfd_fd, AMDKFD_IOC_SMI_EVENTS, &args);
        if (r < 0)
                return r;
        fd = (int) args.anon_fd;
        /* anon_inode_getfd(..., O_RDWR) in kfd_smi_event_open: no O_CLOEXEC. */
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
                r = -errno;
                safe_close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

static int kfd_svm(int kfd_fd, uint32_t op, uint64_t start, uint64_t size,
                   struct kfd_ioctl_svm_attribute *attrs, uint32_t n_attrs) {
        _cleanup_free_ struct kfd_ioctl_svm_args *args = NULL;
        size_t args_size;
        int r;

        if (n_attrs > KFD_SVM_MAX_ATTRS || (n_attrs > 0 && !attrs))
                return -EINVAL;

        args_size = sizeof(struct kfd_ioctl_svm_args) + (size_t) n_attrs * sizeof(struct kfd_ioctl_svm_attribute);
        args = malloc(args_size);
        if (!args)
                return -ENOMEM;

        *args = (struct kfd_ioctl_svm_args) {
                .start_addr = start,
                .size = size,
                .op = op,
                .nattr = n_attrs,
        };
        if (n_attrs > 0)
                memcpy(args->attrs, attrs, (size_t) n_attrs * sizeof(struct kfd_ioctl_svm_attribute));

        /*
         * The real length goes into the command's size field: the dispatcher copies
         * _IOC_SIZE bytes in and out, which is how the attribute array travels.
         */
        r = kfd_ioctl_restart(kfd_fd, _IOC(_IOC_READ | _IOC_WRITE, AMDKFD_IOCTL_BASE, 0x20, args_size), args);
        if (r < 0)
                return r;

        if (op == KFD_IOCTL_SVM_OP_GET_ATTR && n_attrs > 0)
                memcpy(attrs, args->attrs, (size_t) n_attrs * sizeof(struct kfd_ioctl_svm_attribute));
        return 0;
}

int kfd_svm_set(int kfd_fd, uint64_t start, uint64_t size,
                const struct kfd_ioctl_svm_attribute *attrs, uint32_t n_attrs) {
        /* SET does not write the attributes back; the cast only serves the shared helper. */
        return kfd_svm(kfd_fd, KFD_IOCTL_SVM_OP_SET_ATTR, start, size,
                       (struct kfd_ioctl_svm_attribute *) attrs, n_attrs);
}

int kfd_svm_get(int kfd_fd, uint64_t start, uint64_t size,
                struct kfd_ioctl_svm_attribute *attrs, uint32_t n_attrs) {
        return kfd_svm(kfd_fd, KFD_IOCTL_SVM_OP_GET_ATTR, start, size, attrs, n_attrs);
}

int kfd_set_xnack_mode(int kfd_fd, int mode, int *ret_current) {
        struct kfd_ioctl_set_xnack_mode_args args = {
                .xnack_enabled = mode,
        };
        int r;

        r = kfd_ioctl_restart(kfd_fd, AMDKFD_IOC_SET_XNACK_MODE, &args);
        if (r < 0)
                return r;

        if (ret_current)
                *ret_current = mode < 0 ? args.xnack_enabled : mode;
        return 0;
}
