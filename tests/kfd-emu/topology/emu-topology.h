/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Emulated node topology: parsed from tests/kfd-emu/topologies/<name>.json,
 * written out as a kernel-shaped sysfs tree, and handed to the emulated
 * kernel (emu-kernel.h) at creation.
 */

#include <stdbool.h>
#include <stdint.h>

#define EMU_MAX_NODES 64
#define EMU_MAX_GPUS 32
/* Enough for a fully connected 8-GPU XGMI hive (56 links) plus both CPU↔GPU directions. */
#define EMU_MAX_LINKS 256
#define EMU_MAX_CACHES 4
#define EMU_CACHE_SIBLING_MAP_BYTES 32  /* CRAT_SIBLINGMAP_SIZE: the kernel prints every bit of it */

typedef struct EmuCache {
        /* nodes/N/caches/C/properties, kernel print order (kfd_cache_show) */
        uint32_t processor_id_low;
        uint32_t level;
        uint32_t size_kb;
        uint32_t cache_line_size;
        uint32_t cache_lines_per_tag;
        uint32_t association;
        uint32_t latency;
        uint32_t type;          /* 0x1 data, 0x2 instruction, 0x4 CPU, 0x8 HSA CU */
        uint8_t sibling_map[EMU_CACHE_SIBLING_MAP_BYTES];
} EmuCache;

typedef struct EmuLink {
        uint32_t type;          /* 2 PCIe, 11 XGMI (kfd_topology.c iolink types) */
        uint32_t node_from;     /* node index */
        uint32_t node_to;       /* node index */
        uint32_t weight;
        uint32_t min_latency, max_latency;
        uint32_t min_bandwidth, max_bandwidth;
        uint32_t recommended_transfer_size;
        uint32_t flags;         /* 0x1 enabled, 0x10 no peer-to-peer DMA, 0x80000000 bi-directional */

        /* added with the sysfs writer */
        uint32_t version_major, version_minor;
        uint32_t recommended_sdma_engine_id_mask;  /* printed only when kfd_minor >= 17 */
} EmuLink;

typedef struct EmuNode {
        bool is_gpu;
        uint32_t gpu_id;                /* 0 for CPU nodes; 16-bit non-zero for GPUs */
        char name[32];                  /* nodes/N/name: lower-case ASIC name ("aldebaran"), "" for CPUs */
        char target[16];                /* "gfx942"; derived from gfx_target_version, "" for CPUs */
        char marketing_name[64];        /* "AMD Instinct MI300X" (DRM side) */

        /* nodes/N/properties, kernel print order (kfd_topology.c node_show) */
        uint32_t cpu_cores_count;
        uint32_t simd_count;
        uint32_t cpu_core_id_base;
        uint32_t simd_id_base;
        uint32_t max_waves_per_simd;
        uint32_t lds_size_in_kb;
        uint32_t gds_size_in_kb;
        uint32_t num_gws;
        uint32_t wave_front_size;
        uint32_t array_count;           /* as printed: shader arrays of all XCCs together */
        uint32_t simd_arrays_per_engine;
        uint32_t cu_per_simd_array;
        uint32_t simd_per_cu;
        uint32_t max_slots_scratch_cu;
        uint32_t gfx_target_version;    /* major*10000 + minor*100 + stepping, 0 for CPUs */
        uint32_t vendor_id;
        uint32_t device_id;
        uint32_t location_id;           /* (bus << 8) | devfn */
        uint32_t domain;
        uint32_t drm_render_minor;      /* 128..255 for GPUs */
        uint64_t hive_id;               /* 0: not in an XGMI hive */
        uint32_t num_sdma_engines;
        uint32_t num_sdma_xgmi_engines;
        uint32_t num_sdma_queues_per_engine;
        uint32_t num_cp_queues;
        uint32_t max_engine_clk_fcompute;
        uint32_t fw_version;
        uint32_t capability;
        uint64_t debug_prop;
        uint32_t sdma_fw_version;
        uint64_t unique_id;
        uint32_t num_xcc;
        uint32_t max_engine_clk_ccompute;

        /* memory */
        uint64_t mem_size;              /* VRAM bytes for GPUs, system RAM for CPUs */
        bool large_bar;                 /* all VRAM CPU-visible: heap_type 1, else 2 */
        uint32_t mem_width;
        uint32_t mem_clk_max;

        /* behaviour the kernel derives from the ASIC */
        bool xnack_capable;             /* per-process XNACK possible (SET_XNACK_MODE) */
        bool svm_capable;               /* HSA_CAP_SVMAPI_SUPPORTED */
        uint32_t pci_rev;
        uint32_t family;                /* AMDGPU_FAMILY_* for DRM DEV_INFO */

        /* added with the sysfs writer */
        uint32_t subsystem_vendor_id;   /* PCI subsystem ids: DRM sysfs and the gpu_id hash */
        uint32_t subsystem_device_id;
        uint32_t pci_class;             /* 0x030000 VGA, 0x038000 display, 0x120000 accelerator */
        bool pcie_p2p;                  /* PCIe peer-to-peer DMA possible (pci_p2pdma_distance) */
        unsigned n_caches;              /* CPU nodes have at least one, see libhsakmt-requirements §2 */
        EmuCache caches[EMU_MAX_CACHES];
} EmuNode;

typedef struct EmuTopology {
        char name[64];                  /* from the JSON "name" */
        unsigned n_nodes;
        EmuNode nodes[EMU_MAX_NODES];   /* CPU nodes first, then GPUs, as the kernel orders them */
        unsigned n_links;
        EmuLink io_links[EMU_MAX_LINKS];
        unsigned n_p2p_links;
        EmuLink p2p_links[EMU_MAX_LINKS];
        uint64_t system_memory;         /* bytes of RAM: the GTT/USERPTR system limit is derived from it */
        uint32_t kfd_major, kfd_minor;  /* interface version GET_VERSION reports (default 1.16) */

        /* added with the sysfs writer */
        uint32_t generation_id;         /* topology/generation_id (default 1) */
        uint64_t platform_oem, platform_id, platform_rev;  /* topology/system_properties */
} EmuTopology;

/* Parse a topology JSON file. Returns 0 or -errno; a message goes to *ret_error (caller frees). */
int emu_topology_load(const char *path, EmuTopology *ret, char **ret_error);

/* Parse from a JSON string (fuzzing and unit tests). */
int emu_topology_parse(const char *json, EmuTopology *ret, char **ret_error);

/*
 * Write the sysfs trees under root (root itself is created if missing):
 *   root/sys/devices/virtual/kfd/kfd/topology/...   (kfd_topology.c layout and key order)
 *   root/sys/class/drm/renderD<minor>/...            (device/{vendor,device,...}, dev)
 *   root/sys/dev/char/226:<minor> -> ../../class/drm/renderD<minor>  (as a directory copy)
 * Returns 0 or -errno.
 */
int emu_topology_write_sysfs(const EmuTopology *topo, const char *root);

/* Index of the node holding gpu_id, or -1. */
int emu_topology_node_by_gpu_id(const EmuTopology *topo, uint32_t gpu_id);

/*
 * Whether VRAM owned by node `owner` can be mapped into the VM of node `peer`
 * (same node, same XGMI hive, or a PCIe p2p link without the no-P2P flag):
 * amdgpu_amdkfd_gpuvm.c kfd_mem_attach → amdgpu_device_is_peer_accessible.
 */
bool emu_topology_peer_accessible(const EmuTopology *topo, unsigned owner, unsigned peer);
