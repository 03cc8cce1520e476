/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The complete SVM attribute state of one address range, as AMDKFD_IOC_SVM
 * knows it, and what it takes to make a change to it undoable.
 *
 * The kernel's SET_ATTR is not transactional: it applies attributes one by
 * one and stops at the first that fails, leaving the earlier ones in place.
 * So a change is made as
 *
 *         kfd_svm_attrs_get(fd, va, size, gpus, n, &before);   record the prior state
 *         (add an undo that calls kfd_svm_attrs_restore(..., &before))
 *         kfd_svm_set(fd, va, size, attrs, n_attrs);           the change
 *
 * and the undo sets every attribute back and reads them again to prove it.
 *
 * Values are the kernel's: locations are gpu_ids, KFD_IOCTL_SVM_LOCATION_SYSMEM
 * (0) or _UNDEFINED; flags are KFD_IOCTL_SVM_FLAG_* bits; access is the
 * attribute type (ACCESS, ACCESS_IN_PLACE or NO_ACCESS) per listed GPU.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kfd_ioctl.h>

/* HSA_CAP_SVMAPI_SUPPORTED in a topology node's capability word: the GPU takes part in SVM. */
#define KFD_SVM_CAP_SUPPORTED 0x08000000U

#define KFD_SVM_MAX_GPUS 64U
/* Attributes of a full description: locations, set/clear flags, granularity, one per GPU. */
#define KFD_SVM_ATTRS_MAX (5U + KFD_SVM_MAX_GPUS)
#define KFD_SVM_GRANULARITY_MAX 0x3FU

typedef struct KfdSvmAttrs {
        uint32_t preferred_loc;
        uint32_t prefetch_loc;
        uint32_t flags;
        uint32_t granularity;
        uint32_t n_gpus;
        uint32_t gpu_ids[KFD_SVM_MAX_GPUS];
        uint32_t access[KFD_SVM_MAX_GPUS];      /* KFD_IOCTL_SVM_ATTR_ACCESS / _ACCESS_IN_PLACE / _NO_ACCESS */
} KfdSvmAttrs;

/* Read every attribute of [va, va+size) for the GPUs gpu_ids[0..n). One GET_ATTR. */
int kfd_svm_attrs_get(int kfd_fd, uint64_t va, uint64_t size, const uint32_t *gpu_ids, uint32_t n,
                      KfdSvmAttrs *ret);

/*
 * The SET_ATTR list that makes a range have exactly a: both locations, flags
 * set and cleared, granularity, access per GPU. Returns the count (≤ KFD_SVM_ATTRS_MAX).
 * An undefined prefetch location cannot be set; it is left out.
 */
uint32_t kfd_svm_attrs_to_list(const KfdSvmAttrs *a, struct kfd_ioctl_svm_attribute *out);

/* What a successful SET_ATTR of attrs makes of *a (the kernel's order: later entries win). */
void kfd_svm_attrs_apply(KfdSvmAttrs *a, const struct kfd_ioctl_svm_attribute *attrs, uint32_t n);

bool kfd_svm_attrs_equal(const KfdSvmAttrs *a, const KfdSvmAttrs *b);

/* The access type of gpu_id, NO_ACCESS when it is not listed. */
uint32_t kfd_svm_attrs_access(const KfdSvmAttrs *a, uint32_t gpu_id);

/*
 * Set every attribute back to want, then read them again: 0 when the kernel
 * now reports exactly want, -ENOTRECOVERABLE when it reports something else,
 * or the -errno of the ioctl that failed (EINTR restarted inside). The
 * kernel takes no "undefined" prefetch location: when want has one, the
 * prefetch location is neither set nor compared, so callers that must be able
 * to undo everything give every range a defined one from the start.
 */
int kfd_svm_attrs_restore(int kfd_fd, uint64_t va, uint64_t size, const KfdSvmAttrs *want);

/* Names of the SVM flags ("coherent", "gpu-read-mostly", …) and of access types ("access", "in-place", "none"). */
const char *kfd_svm_flag_to_string(uint32_t flag);
int kfd_svm_flag_from_string(const char *s, uint32_t *ret);
const char *kfd_svm_access_to_string(uint32_t type);
#define KFD_SVM_FLAG_NAMES \
        "host-access, coherent, hive-local, gpu-ro, gpu-exec, gpu-read-mostly, gpu-always-mapped, ext-coherent"
