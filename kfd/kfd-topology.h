/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The KFD sysfs topology: which GPUs the node has, what they are, and which of
 * them can map each other's VRAM. A pure parser over a directory tree, so the
 * unit tests and fuzzers can point it at a fixture; production passes
 * KFD_TOPOLOGY_ROOT.
 */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KFD_TOPOLOGY_ROOT "/sys/devices/virtual/kfd/kfd/topology"

/* "gfx1100" plus NUL; the longest LLVM target names are 7 characters. */
#define KFD_TARGET_MAX 16
/* "0000:c1:00.0" plus NUL, with room for a 32-bit domain. */
#define KFD_PCI_LOCATION_MAX 24
#define KFD_GPU_NAME_MAX 64

/* Link types of io_links/p2p_links (kfd_topology.h, CRAT iolink types). */
#define KFD_IOLINK_TYPE_PCIEXPRESS 2
#define KFD_IOLINK_TYPE_XGMI 11

/* io_link/p2p_link flags. */
#define KFD_IOLINK_FLAG_NO_PEER_TO_PEER_DMA 0x10U

/* Heap types of mem_banks. */
#define KFD_HEAP_TYPE_FB_PUBLIC 1
#define KFD_HEAP_TYPE_FB_PRIVATE 2

typedef enum KfdPeerLink {
        KFD_PEER_LINK_NONE,     /* the peer cannot map the owner's VRAM */
        KFD_PEER_LINK_SELF,
        KFD_PEER_LINK_XGMI,     /* same XGMI hive, or an XGMI io_link */
        KFD_PEER_LINK_PCIE,     /* PCIe peer-to-peer (a p2p_link without the no-P2P flag) */
        _KFD_PEER_LINK_MAX,
        _KFD_PEER_LINK_INVALID = -EINVAL,
} KfdPeerLink;

typedef struct KfdGpu {
        uint32_t gpu_id;                /* the id every ioctl uses; non-zero */
        uint32_t node_id;               /* N of nodes/N */
        uint32_t gfx_target_version;    /* major*10000 + minor*100 + stepping */
        char target[KFD_TARGET_MAX];    /* "gfx942" */
        char name[KFD_GPU_NAME_MAX];    /* nodes/N/name, e.g. "aldebaran" */
        uint32_t vendor_id;
        uint32_t device_id;
        uint32_t pci_domain;
        uint32_t location_id;           /* (bus << 8) | devfn */
        char pci_location[KFD_PCI_LOCATION_MAX]; /* "0000:c1:00.0" */
        uint32_t drm_render_minor;      /* /dev/dri/renderD<minor> */
        uint64_t hive_id;               /* 0: not in an XGMI hive */
        uint64_t unique_id;             /* 0: not reported */
        uint32_t num_xcc;
        uint32_t simd_count;
        uint32_t capability;            /* HSA_CAP_* bits */
        uint64_t vram_size;             /* bytes in FB_PUBLIC/FB_PRIVATE banks */
        bool large_bar;                 /* all VRAM CPU-visible (an FB_PUBLIC bank) */
} KfdGpu;

typedef struct KfdTopology {
        uint32_t generation_id;
        size_t n_gpus;
        size_t n_denied;                /* GPU nodes the device cgroup hid from us (EPERM), skipped */
        KfdGpu *gpus;                   /* in node order */
        KfdPeerLink *peers;             /* n_gpus × n_gpus, see kfd_topology_peer_link() */
        uint32_t *peer_link_types;      /* raw io_link type of each pair, 0 where none */
} KfdTopology;

/*
 * Parse the topology under root. On failure returns -errno and, if ret_error is non-NULL,
 * stores a malloc()ed sentence naming the offending file in *ret_error (the one output
 * written on failure; *ret is written only on success).
 */
int kfd_topology_load(KfdTopology **ret, const char *root, char **ret_error);
KfdTopology *kfd_topology_free(KfdTopology *t);

/* Index of gpu_id in t->gpus, or -ENODEV. */
int kfd_topology_gpu_index(const KfdTopology *t, uint32_t gpu_id);
const KfdGpu *kfd_topology_get_gpu(const KfdTopology *t, uint32_t gpu_id);

/* How GPU index `peer` reaches VRAM owned by GPU index `owner`. */
KfdPeerLink kfd_topology_peer_link(const KfdTopology *t, size_t owner, size_t peer);

/* Whether GPU peer_gpu_id can map VRAM owned by owner_gpu_id (false for unknown ids). */
bool kfd_topology_can_map(const KfdTopology *t, uint32_t owner_gpu_id, uint32_t peer_gpu_id);

/* "gfx90a" for 90010. -EINVAL if the version has no LLVM name (0, or minor/stepping > 15). */
int kfd_target_name(uint32_t gfx_target_version, char ret[static KFD_TARGET_MAX]);

const char *kfd_peer_link_to_string(KfdPeerLink l);

#define KFD_GFX_MAJOR(v) ((v) / 10000U)
#define KFD_GFX_MINOR(v) (((v) / 100U) % 100U)
#define KFD_GFX_STEPPING(v) ((v) % 100U)
