/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * One function per KFD ioctl. Each takes the /dev/kfd fd first, returns 0 or
 * -errno, restarts EINTR/EAGAIN (bounded) where the kernel makes that safe, and
 * never hides partial state: MAP/UNMAP report how many devices are done even
 * on failure, so the caller can undo exactly that prefix.
 */

#include <stdint.h>

#include <linux/kfd_ioctl.h>

/* How often an interrupted ioctl is re-issued before -EINTR is returned. */
#define KFD_IOCTL_MAX_RESTARTS 64U

/* The ioctl size field has 14 bits: 24-byte header + 8 bytes per attribute must fit. */
#define KFD_SVM_MAX_ATTRS ((((1U << 14) - 1U) - 24U) / 8U)

/*
 * Every KFD ioctl of the wrappers below goes through hook (one ioctl(2) call each; the restarts stay
 * here). svmd's executor runs them on worker threads; NULL: ioctl(2) on the caller's thread.
 */
void kfd_set_ioctl_hook(int (*hook)(int fd, unsigned long request, void *arg));

int kfd_get_version(int kfd_fd, uint32_t *ret_major, uint32_t *ret_minor);
int kfd_acquire_vm(int kfd_fd, uint32_t gpu_id, int drm_fd);
/* CREATE_PROCESS (1.19+): turn this fd, opened on the primary context, into a new secondary context. */
int kfd_create_process(int kfd_fd);

/* misc_process_flag (bit 0: MFMA high precision) needs interface ≥ 1.18; before, it is a pad that must be 0. */
int kfd_set_memory_policy(int kfd_fd, uint32_t gpu_id, uint32_t default_policy,
                          uint32_t alternate_policy, uint64_t alternate_aperture_base,
                          uint64_t alternate_aperture_size, uint32_t misc_process_flag);

/*
 * All-or-nothing; interruptions are restarted. userptr is the CPU address for
 * KFD_IOC_ALLOC_MEM_FLAGS_USERPTR and must be 0 otherwise.
 */
int kfd_alloc(int kfd_fd, uint64_t va, uint64_t size, uint32_t gpu_id, uint32_t flags,
              uint64_t userptr, uint64_t *ret_handle, uint64_t *ret_mmap_offset);

/* An interrupted FREE leaves the handle valid; it is retried. -EBUSY: still mapped somewhere. */
int kfd_free(int kfd_fd, uint64_t handle);

/*
 * Map/unmap handle on gpu_ids[0..n). Interruptions are restarted with the same
 * argument struct so the kernel resumes after the devices already done.
 * *ret_n_success is written on success (== n) AND on failure: gpu_ids[0 ..
 * *ret_n_success) are done, gpu_ids[*ret_n_success] is the one that failed.
 * It is the one output of this module written on failure.
 */
int kfd_map(int kfd_fd, uint64_t handle, const uint32_t *gpu_ids, uint32_t n, uint32_t *ret_n_success);
int kfd_unmap(int kfd_fd, uint64_t handle, const uint32_t *gpu_ids, uint32_t n, uint32_t *ret_n_success);

/* O_CLOEXEC is always added to flags. */
int kfd_export_dmabuf(int kfd_fd, uint64_t handle, uint32_t flags, int *ret_dmabuf_fd);
int kfd_import_dmabuf(int kfd_fd, int dmabuf_fd, uint32_t gpu_id, uint64_t va, uint64_t *ret_handle);
int kfd_get_dmabuf_info(int kfd_fd, int dmabuf_fd, uint64_t *ret_size, uint32_t *ret_gpu_id,
                        uint32_t *ret_flags);
int kfd_available_memory(int kfd_fd, uint32_t gpu_id, uint64_t *ret_bytes);
/* SMI_EVENTS (1.3+): a listener on one GPU, made close-on-exec (the kernel's fd is not). */
int kfd_smi_events_open(int kfd_fd, uint32_t gpu_id, int *ret_fd);

/*
 * SVM attributes of [start, start+size). kfd_svm_get() updates attrs in place:
 * the kernel rewrites values, and types for ACCESS queries.
 * SET is not transactional in the kernel: callers record the old attributes first.
 */
int kfd_svm_set(int kfd_fd, uint64_t start, uint64_t size,
                const struct kfd_ioctl_svm_attribute *attrs, uint32_t n_attrs);
int kfd_svm_get(int kfd_fd, uint64_t start, uint64_t size,
                struct kfd_ioctl_svm_attribute *attrs, uint32_t n_attrs);

/* mode < 0 queries. *ret_current (may be NULL) is the mode in effect afterwards. */
int kfd_set_xnack_mode(int kfd_fd, int mode, int *ret_current);
