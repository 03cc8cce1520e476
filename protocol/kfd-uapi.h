/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * KFD UAPI definitions newer than the system's <linux/kfd_ioctl.h>.
 *
 * Debian bookworm ships interface 1.11. Everything below is guarded so that a
 * newer system header (which defines the same names) wins and this file adds
 * nothing. Numbers and layouts follow include/uapi/linux/kfd_ioctl.h of
 * interface 1.22 (see docs/architecture.md, "Kernel interface").
 */

#include <linux/ioctl.h>
#include <linux/kfd_ioctl.h>
#include <linux/types.h>

/* Interface minor versions at which features appeared (KFD_IOCTL_MINOR_VERSION). */
#define SVMD_KFD_MINOR_DMABUF_IMPORT    2  /* GET_DMABUF_INFO, IMPORT_DMABUF (undocumented bump) */
#define SVMD_KFD_MINOR_SMI_EVENTS       3  /* AMDKFD_IOC_SMI_EVENTS */
#define SVMD_KFD_MINOR_SVM              5  /* AMDKFD_IOC_SVM, SET_XNACK_MODE */
#define SVMD_KFD_MINOR_SVM_CLR_FLAGS    6
#define SVMD_KFD_MINOR_AVAILABLE_MEMORY 9
#define SVMD_KFD_MINOR_EXPORT_DMABUF    12
#define SVMD_KFD_MINOR_RUNTIME_ENABLE   13
#define SVMD_KFD_MINOR_CONTIGUOUS       16
#define SVMD_KFD_MINOR_MISC_PROC_FLAG   18
#define SVMD_KFD_MINOR_CREATE_PROCESS   19

/* Allocation flags added after 1.11. Unknown bits are ignored by older kernels. */
#ifndef KFD_IOC_ALLOC_MEM_FLAGS_CONTIGUOUS
#define KFD_IOC_ALLOC_MEM_FLAGS_CONTIGUOUS   (1U << 23)
#endif
#ifndef KFD_IOC_ALLOC_MEM_FLAGS_EXT_COHERENT
#define KFD_IOC_ALLOC_MEM_FLAGS_EXT_COHERENT (1U << 24)
#endif

/* SVM attribute flag added with EXT_COHERENT. */
#ifndef KFD_IOCTL_SVM_FLAG_EXT_COHERENT
#define KFD_IOCTL_SVM_FLAG_EXT_COHERENT 0x00000080
#endif

/* set_memory_policy_args.pad became misc_process_flag in 1.18; bit 0: */
#ifndef KFD_PROC_FLAG_MFMA_HIGH_PRECISION
#define KFD_PROC_FLAG_MFMA_HIGH_PRECISION (1U << 0)
#endif

/* 0x24 EXPORT_DMABUF (1.12): a new dma-buf fd for a KFD handle. */
#ifndef AMDKFD_IOC_EXPORT_DMABUF
struct kfd_ioctl_export_dmabuf_args {
        __u64 handle;       /* to KFD */
        __u32 flags;        /* to KFD: open() flags for the new fd (O_CLOEXEC, O_RDWR) */
        __u32 dmabuf_fd;    /* from KFD */
};
#define AMDKFD_IOC_EXPORT_DMABUF AMDKFD_IOWR(0x24, struct kfd_ioctl_export_dmabuf_args)
#endif

/* 0x25 RUNTIME_ENABLE (1.13). */
#ifndef AMDKFD_IOC_RUNTIME_ENABLE
#define KFD_RUNTIME_ENABLE_MODE_ENABLE_MASK 1
#define KFD_RUNTIME_ENABLE_MODE_TTMP_SAVE_MASK 2
struct kfd_ioctl_runtime_enable_args {
        __u64 r_debug;
        __u32 mode_mask;
        __u32 capabilities_mask;
};
#define AMDKFD_IOC_RUNTIME_ENABLE AMDKFD_IOWR(0x25, struct kfd_ioctl_runtime_enable_args)
#endif

/* 0x27 CREATE_PROCESS (1.19): turn this /dev/kfd fd into a new secondary context. */
#ifndef AMDKFD_IOC_CREATE_PROCESS
#define AMDKFD_IOC_CREATE_PROCESS AMDKFD_IO(0x27)
#endif

/*
 * Nr 0x28 is deliberately not defined: the batch userptr proposal that used it
 * was not merged and the number has been claimed by other proposals.
 */

/* Byte layouts the code relies on; a mismatch is a build error, not a silent ABI break. */
_Static_assert(sizeof(struct kfd_ioctl_get_version_args) == 8, "get_version layout");
_Static_assert(sizeof(struct kfd_ioctl_set_memory_policy_args) == 32, "set_memory_policy layout");
_Static_assert(sizeof(struct kfd_ioctl_get_process_apertures_new_args) == 16, "apertures_new layout");
_Static_assert(sizeof(struct kfd_process_device_apertures) == 56, "apertures entry layout");
_Static_assert(sizeof(struct kfd_ioctl_acquire_vm_args) == 8, "acquire_vm layout");
_Static_assert(sizeof(struct kfd_ioctl_alloc_memory_of_gpu_args) == 40, "alloc layout");
_Static_assert(sizeof(struct kfd_ioctl_free_memory_of_gpu_args) == 8, "free layout");
_Static_assert(sizeof(struct kfd_ioctl_map_memory_to_gpu_args) == 24, "map layout");
_Static_assert(sizeof(struct kfd_ioctl_unmap_memory_from_gpu_args) == 24, "unmap layout");
_Static_assert(sizeof(struct kfd_ioctl_get_dmabuf_info_args) == 32, "dmabuf_info layout");
_Static_assert(sizeof(struct kfd_ioctl_import_dmabuf_args) == 24, "import layout");
_Static_assert(sizeof(struct kfd_ioctl_export_dmabuf_args) == 16, "export layout");
_Static_assert(sizeof(struct kfd_ioctl_runtime_enable_args) == 16, "runtime_enable layout");
_Static_assert(sizeof(struct kfd_ioctl_svm_args) == 24, "svm header layout");
_Static_assert(sizeof(struct kfd_ioctl_svm_attribute) == 8, "svm attribute layout");
_Static_assert(sizeof(struct kfd_ioctl_get_available_memory_args) == 16, "available_memory layout");
_Static_assert(sizeof(struct kfd_ioctl_set_xnack_mode_args) == 4, "xnack layout");
