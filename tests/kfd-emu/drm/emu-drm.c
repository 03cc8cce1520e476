/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The DRM side of an emulated render node: what libdrm and libdrm_amdgpu
 * (2.4.114) ask of /dev/dri/renderD<minor> when they identify a GPU.
 *
 * The dispatcher follows drm_ioctl() (drivers/gpu/drm/drm_ioctl.c): a type
 * other than 'd' is -ENOTTY; the argument is copied in for the caller's
 * _IOC_SIZE, zero-filled up to the kernel's struct size, handed to the
 * handler and copied out again when both the caller and the kernel table say
 * IOC_OUT, whatever the handler returned. Answers follow amdgpu_info_ioctl()
 * (drivers/gpu/drm/amd/amdgpu/amdgpu_kms.c), filled from the node's topology
 * entry and the emulated kernel's memory accounting.
 *
 * Where the emulation knowingly differs from a real render node:
 * - DRM_IOCTL_GET_CLIENT is answered. On a real render node it fails with
 *   -EACCES (no DRM_RENDER_ALLOW), but libdrm never sends it there because
 *   fstat() shows a character device; the emulated node is a memfd, so libdrm
 *   takes the primary-node path and needs GET_CLIENT to succeed.
 * - Core and amdgpu ioctls that are not emulated (GEM, CS, syncobj, ...)
 *   return -EINVAL, as drm_ioctl() does for a table slot without a handler.
 */

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <amdgpu_drm.h>
#include <drm.h>

#include "emu-kernel.h"
#include "emu-topology.h"
#include "macro.h"

/* What amdgpu reports (amdgpu_drv.c KMS_DRIVER_*, DRIVER_NAME/DESC/DATE). */
#define EMU_DRM_NAME "amdgpu"
#define EMU_DRM_DESC "AMD GPU"
#define EMU_DRM_DATE "20150101"
#define EMU_DRM_MAJOR 3
#define EMU_DRM_MINOR 57
#define EMU_DRM_PATCHLEVEL 0

/* amdgpu_vm.h / amdgpu_gmc.h constants behind DEV_INFO and VRAM_GTT. */
#define EMU_VM_RESERVED_VRAM (8ULL << 20)               /* AMDGPU_VM_RESERVED_VRAM */
#define EMU_VA_RESERVED_SIZE (2ULL << 20)               /* AMDGPU_VA_RESERVED_SIZE */
#define EMU_GMC_HOLE_START 0x0000800000000000ULL        /* AMDGPU_GMC_HOLE_START */
#define EMU_GMC_HOLE_END 0xffff800000000000ULL          /* AMDGPU_GMC_HOLE_END */
#define EMU_SMALL_BAR_SIZE (256ULL << 20)               /* visible VRAM without resizable BAR */
#define EMU_GFX_MAX_SE 4                                /* AMDGPU_GFX_MAX_SE */
#define EMU_GFX_MAX_SH_PER_SE 2                         /* AMDGPU_GFX_MAX_SH_PER_SE */
#define EMU_MMR_MAX_COUNT 128                           /* READ_MMR_REG limit */
#define EMU_GPU_PAGE_SIZE 4096U

#define EMU_FAMILY_GC_11_0_0 145                        /* AMDGPU_FAMILY_GC_11_0_0 (newer header) */

/* The largest argument struct handled here; drm_ioctl() keeps 128 bytes on its stack. */
#define EMU_DRM_KDATA_MAX 128

/* Rings each context may use per IP (amdgpu_ctx.c amdgpu_ctx_num_entities). */
static const unsigned ctx_num_entities[AMDGPU_HW_IP_NUM] = {
        [AMDGPU_HW_IP_GFX] = 1,
        [AMDGPU_HW_IP_COMPUTE] = 4,
        [AMDGPU_HW_IP_DMA] = 2,
        [AMDGPU_HW_IP_UVD] = 1,
        [AMDGPU_HW_IP_VCE] = 1,
        [AMDGPU_HW_IP_UVD_ENC] = 1,
        [AMDGPU_HW_IP_VCN_DEC] = 1,
        [AMDGPU_HW_IP_VCN_ENC] = 1,
        [AMDGPU_HW_IP_VCN_JPEG] = 1,
};

/*
 * copy_to_user()/copy_from_user() on our own address space: the kernel turns
 * an unmapped user pointer into -EFAULT instead of a crash, and so do we.
 * Where process_vm_*v is not permitted (seccomp), fall back to plain copies
 * after rejecting NULL.
 */
static int copy_to_user(uint64_t dst, const void *src, size_t n) {
        struct iovec local = { .iov_base = (void *) src, .iov_len = n };
        struct iovec remote = { .iov_base = (void *) (uintptr_t) dst, .iov_len = n };
        ssize_t w;

        if (n == 0)
                return 0;
        if (dst == 0)
                return -EFAULT;
        w = process_vm_writev(getpid(), &local, 1, &remote, 1, 0);
        if (w == (ssize_t) n)
                return 0;
        if (w < 0 && (errno == ENOSYS || errno == EPERM)) {
                memcpy((void *) (uintptr_t) dst, src, n);
                return 0;
        }
        return -EFAULT;
}

static int copy_from_user(void *dst, uint64_t src, size_t n) {
        struct iovec local = { .iov_base = dst, .iov_len = n };
        struct iovec remote = { .iov_base = (void *) (uintptr_t) src, .iov_len = n };
        ssize_t r;

        if (n == 0)
                return 0;
        if (src == 0)
                return -EFAULT;
        r = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
        if (r == (ssize_t) n)
                return 0;
        if (r < 0 && (errno == ENOSYS || errno == EPERM)) {
                memcpy(dst, (const void *) (uintptr_t) src, n);
                return 0;
        }
        return -EFAULT;
}

static const EmuNode *node_by_minor(EmuKernel *k, unsigned minor) {
        const EmuTopology *topo = emu_kernel_topology(k);

        if (!topo)
                return NULL;
        for (unsigned i = 0; i < topo->n_nodes; i++)
                if (topo->nodes[i].is_gpu && topo->nodes[i].drm_render_minor == minor)
                        return &topo->nodes[i];
        return NULL;
}

static unsigned gfx_major(const EmuNode *n) {
        return n->gfx_target_version / 10000;
}

static uint32_t node_family(const EmuNode *n) {
        if (n->family != 0)
                return n->family;
        /* Topologies that leave it out: the family of the gfx generation (amdgpu_discovery.c). */
        switch (gfx_major(n)) {
        case 7:
                return AMDGPU_FAMILY_CI;
        case 8:
                return AMDGPU_FAMILY_VI;
        case 9:
                return AMDGPU_FAMILY_AI;
        case 10:
                return AMDGPU_FAMILY_NV;
        case 11:
                return EMU_FAMILY_GC_11_0_0;
        default:
                return AMDGPU_FAMILY_UNKNOWN;
        }
}

static uint64_t node_visible_vram(const EmuNode *n) {
        return n->large_bar ? n->mem_size : MIN(n->mem_size, EMU_SMALL_BAR_SIZE);
}

static uint64_t node_usable_vram(const EmuNode *n) {
        return n->mem_size > EMU_VM_RESERVED_VRAM ? n->mem_size - EMU_VM_RESERVED_VRAM : 0;
}

/* The GTT manager's size: half of system RAM (ttm_tt_pages_limit() default, 6.x kernels). */
static uint64_t topo_gtt_size(EmuKernel *k) {
        const EmuTopology *topo = emu_kernel_topology(k);

        return topo->system_memory / 2;
}

static unsigned node_shader_engines(const EmuNode *n) {
        unsigned sa = MAX(n->simd_arrays_per_engine, 1u);

        return MAX(n->array_count / sa, 1u);
}

static unsigned node_cus(const EmuNode *n) {
        return n->simd_count / MAX(n->simd_per_cu, 1u);
}

/* ---- AMDGPU_INFO queries ---- */

static int info_dev_info(const EmuNode *n, struct drm_amdgpu_info_device *d) {
        unsigned se = node_shader_engines(n), sh = MAX(n->simd_arrays_per_engine, 1u);
        unsigned cu_per_sh = n->cu_per_simd_array;
        uint64_t vm_size;

        memset(d, 0, sizeof(*d));
        d->device_id = n->device_id;
        d->chip_rev = 0;
        d->pci_rev = n->pci_rev;
        d->family = node_family(n);
        /* amdgpu's external_rev_id is rev_id plus a per-ASIC base; one per family is enough here. */
        switch (gfx_major(n)) {
        case 8:
                d->external_rev = n->pci_rev + 0x50;
                break;
        case 9:
                d->external_rev = n->pci_rev + 0x3c;
                break;
        case 10:
                d->external_rev = n->pci_rev + 0x28;
                break;
        default:
                d->external_rev = n->pci_rev + 0x1;
        }
        d->num_shader_engines = se;
        d->num_shader_arrays_per_engine = sh;
        d->gpu_counter_freq = 100000;                   /* xclk 100 MHz, in kHz */
        d->max_engine_clock = (uint64_t) n->max_engine_clk_fcompute * 1000;
        d->max_memory_clock = (uint64_t) n->mem_clk_max * 1000;
        d->cu_active_number = node_cus(n);
        for (unsigned i = 0; i < MIN(se, 4u); i++)
                for (unsigned j = 0; j < MIN(sh, 4u); j++) {
                        uint32_t mask = cu_per_sh >= 32 ? UINT32_MAX : (1U << cu_per_sh) - 1;

                        d->cu_bitmap[i][j] = mask;
                        d->cu_ao_bitmap[i][j] = mask & 0x3;
                }
        d->cu_ao_mask = 0;
        d->num_rb_pipes = 4 * se;
        d->enabled_rb_pipes_mask = d->num_rb_pipes >= 32 ? UINT32_MAX : (1U << d->num_rb_pipes) - 1;
        d->num_hw_gfx_contexts = 8;
        d->ids_flags = 0;

        /* 48-bit VMs from gfx9 on (max_pfn = 2^36), 40-bit before (amdgpu_vm_adjust_size). */
        vm_size = gfx_major(n) >= 9 ? (1ULL << 48) : (1ULL << 40);
        vm_size -= EMU_VA_RESERVED_SIZE;
        d->virtual_address_offset = EMU_VA_RESERVED_SIZE;
        d->virtual_address_max = MIN(vm_size, EMU_GMC_HOLE_START);
        if (vm_size > EMU_GMC_HOLE_START) {
                d->high_va_offset = EMU_GMC_HOLE_END;
                d->high_va_max = EMU_GMC_HOLE_END | vm_size;
        }
        d->virtual_address_alignment = EMU_GPU_PAGE_SIZE;
        d->pte_fragment_size = (1U << 9) * EMU_GPU_PAGE_SIZE;
        d->gart_page_size = EMU_GPU_PAGE_SIZE;
        d->ce_ram_size = gfx_major(n) < 11 ? 0x8000 : 0;
        if (n->mem_width >= 1024)
                d->vram_type = AMDGPU_VRAM_TYPE_HBM;
        else if (gfx_major(n) >= 10)
                d->vram_type = AMDGPU_VRAM_TYPE_GDDR6;
        else
                d->vram_type = AMDGPU_VRAM_TYPE_GDDR5;
        d->vram_bit_width = n->mem_width;
        d->gc_double_offchip_lds_buf = 1;
        d->wave_front_size = n->wave_front_size ? n->wave_front_size : 64;
        d->num_shader_visible_vgprs = 256;
        d->num_cu_per_sh = cu_per_sh;
        d->num_tcc_blocks = 16;
        d->gs_vgt_table_depth = 32;
        d->gs_prim_buffer_depth = 1792;
        d->max_gs_waves_per_vgt = 32;
        d->tcc_disabled_mask = 0;
        return 0;
}

static int info_hw_ip(const EmuNode *n, const struct drm_amdgpu_info *info,
                      struct drm_amdgpu_info_hw_ip *ip) {
        unsigned rings = 0, major, minor;
        uint32_t start = 0, align = 0;

        if (info->query_hw_ip.ip_instance >= AMDGPU_HW_IP_INSTANCE_MAX_COUNT)
                return -EINVAL;

        memset(ip, 0, sizeof(*ip));
        major = gfx_major(n);
        minor = (n->gfx_target_version / 100) % 100;
        switch (info->query_hw_ip.type) {
        case AMDGPU_HW_IP_GFX:
                /* CDNA parts (gfx908/90a/942) have a GC block but no graphics ring. */
                rings = (major == 9 && minor > 0 && n->gfx_target_version >= 90008) ? 0 : 1;
                start = align = 32;
                break;
        case AMDGPU_HW_IP_COMPUTE:
                rings = MAX(n->num_cp_queues / 4, 1u);
                start = align = 32;
                break;
        case AMDGPU_HW_IP_DMA:
                rings = n->num_sdma_engines + n->num_sdma_xgmi_engines;
                start = 256;
                align = 4;
                major = major >= 11 ? 6 : major >= 10 ? 5 : 4;
                minor = 0;
                break;
        case AMDGPU_HW_IP_UVD:
        case AMDGPU_HW_IP_VCE:
        case AMDGPU_HW_IP_UVD_ENC:
        case AMDGPU_HW_IP_VCN_DEC:
        case AMDGPU_HW_IP_VCN_ENC:
        case AMDGPU_HW_IP_VCN_JPEG:
                /* No multimedia blocks are emulated: amdgpu_hw_ip_info() returns 0 with nothing filled. */
                return 0;
        default:
                return -EINVAL;
        }

        rings = MIN(ctx_num_entities[info->query_hw_ip.type], rings);
        ip->hw_ip_version_major = major;
        ip->hw_ip_version_minor = minor;
        ip->capabilities_flags = 0;
        ip->available_rings = (1U << rings) - 1;
        ip->ib_start_alignment = start;
        ip->ib_size_alignment = align;
        return 0;
}

static int info_hw_ip_count(const struct drm_amdgpu_info *info, uint32_t *ret) {
        switch (info->query_hw_ip.type) {
        case AMDGPU_HW_IP_GFX:
        case AMDGPU_HW_IP_COMPUTE:
        case AMDGPU_HW_IP_DMA:
                *ret = 1;
                return 0;
        case AMDGPU_HW_IP_UVD:
        case AMDGPU_HW_IP_VCE:
        case AMDGPU_HW_IP_UVD_ENC:
        case AMDGPU_HW_IP_VCN_DEC:
        case AMDGPU_HW_IP_VCN_ENC:
        case AMDGPU_HW_IP_VCN_JPEG:
                *ret = 0;
                return 0;
        default:
                return -EINVAL;
        }
}

/* amdgpu_firmware_info(): known types answer, unknown ones are -EINVAL. */
static int info_fw_version(const EmuNode *n, const struct drm_amdgpu_info *info,
                           struct drm_amdgpu_info_firmware *fw) {
        const struct drm_amdgpu_query_fw *q = &info->query_fw;

        if (q->ip_instance != 0)
                return -EINVAL;

        memset(fw, 0, sizeof(*fw));
        switch (q->fw_type) {
        case 0x01 ... 0x07:             /* VCE UVD GMC ME PFP CE RLC */
        case 0x0a:                      /* SMC */
        case 0x0c ... 0x12:             /* SOS ASD VCN RLC restore lists DMCU */
        case 0x14 ... 0x1b:             /* DMCUB TOC CAP RLCP RLCV MES_KIQ MES IMU */
                return 0;
        case 0x08:                      /* GFX_MEC: index 0 = MEC1, 1 = MEC2 */
                if (q->index > 1)
                        return -EINVAL;
                fw->ver = n->fw_version;
                return 0;
        case 0x0b:                      /* SDMA: one per instance */
                if (q->index >= MAX(n->num_sdma_engines + n->num_sdma_xgmi_engines, 1u))
                        return -EINVAL;
                fw->ver = n->sdma_fw_version;
                return 0;
        case 0x13:                      /* TA: sub-firmware by index (XGMI, RAS, HDCP, DTM, RAP, SECUREDISPLAY) */
                if (q->index > 5)
                        return -EINVAL;
                return 0;
        default:
                return -EINVAL;
        }
}

static int info_read_mmr(const struct drm_amdgpu_info *info, uint32_t *regs, size_t *ret_size) {
        unsigned se = (info->read_mmr_reg.instance >> AMDGPU_INFO_MMR_SE_INDEX_SHIFT) &
                      AMDGPU_INFO_MMR_SE_INDEX_MASK;
        unsigned sh = (info->read_mmr_reg.instance >> AMDGPU_INFO_MMR_SH_INDEX_SHIFT) &
                      AMDGPU_INFO_MMR_SH_INDEX_MASK;

        if (se != AMDGPU_INFO_MMR_SE_INDEX_MASK && se >= EMU_GFX_MAX_SE)
                return -EINVAL;
        if (sh != AMDGPU_INFO_MMR_SH_INDEX_MASK && sh >= EMU_GFX_MAX_SH_PER_SE)
                return -EINVAL;
        if (info->read_mmr_reg.count > EMU_MMR_MAX_COUNT)
                return -EINVAL;

        /* Registers read as 0: libdrm only caches them (GB_ADDR_CONFIG, tiling tables). */
        memset(regs, 0, info->read_mmr_reg.count * sizeof(uint32_t));
        *ret_size = info->read_mmr_reg.count * sizeof(uint32_t);
        return 0;
}

static int drm_amdgpu_info(EmuKernel *k, const EmuNode *n, struct drm_amdgpu_info *info) {
        uint64_t out = info->return_pointer;
        uint32_t size = info->return_size;
        uint64_t vram_used = 0, gtt_used = 0, u64;
        uint32_t u32;
        int r;

        if (size == 0 || out == 0)
                return -EINVAL;

        switch (info->query) {
        case AMDGPU_INFO_ACCEL_WORKING:
                u32 = 1;
                return copy_to_user(out, &u32, MIN(size, 4u));

        case AMDGPU_INFO_HW_IP_INFO: {
                struct drm_amdgpu_info_hw_ip ip;

                r = info_hw_ip(n, info, &ip);
                if (r < 0)
                        return r;
                return copy_to_user(out, &ip, MIN((size_t) size, sizeof(ip)));
        }

        case AMDGPU_INFO_HW_IP_COUNT:
                r = info_hw_ip_count(info, &u32);
                if (r < 0)
                        return r;
                return copy_to_user(out, &u32, MIN(size, 4u));

        case AMDGPU_INFO_TIMESTAMP:
                /* amdgpu_info_ioctl: gfx.funcs->get_gpu_clock_counter(), as KFD's GET_CLOCK_COUNTERS. */
                u64 = emu_kernel_gpu_clock();
                return copy_to_user(out, &u64, MIN(size, 8u));

        case AMDGPU_INFO_FW_VERSION: {
                struct drm_amdgpu_info_firmware fw;

                r = info_fw_version(n, info, &fw);
                if (r < 0)
                        return r;
                return copy_to_user(out, &fw, MIN((size_t) size, sizeof(fw)));
        }

        case AMDGPU_INFO_NUM_BYTES_MOVED:
        case AMDGPU_INFO_NUM_EVICTIONS:
        case AMDGPU_INFO_NUM_VRAM_CPU_PAGE_FAULTS:
        case AMDGPU_INFO_VRAM_LOST_COUNTER:
                u64 = 0;
                return copy_to_user(out, &u64, MIN(size, info->query == AMDGPU_INFO_VRAM_LOST_COUNTER ? 4u : 8u));

        case AMDGPU_INFO_VRAM_USAGE:
        case AMDGPU_INFO_VIS_VRAM_USAGE:
        case AMDGPU_INFO_GTT_USAGE:
                r = emu_kernel_mem_usage(k, n->gpu_id, &vram_used, &gtt_used);
                if (r < 0)
                        return r;
                if (info->query == AMDGPU_INFO_VRAM_USAGE)
                        u64 = vram_used;
                else if (info->query == AMDGPU_INFO_VIS_VRAM_USAGE)
                        /* On small BAR only CPU_ACCESS_REQUIRED BOs live in the window, and KFD refuses those. */
                        u64 = n->large_bar ? vram_used : 0;
                else
                        u64 = gtt_used;
                return copy_to_user(out, &u64, MIN(size, 8u));

        case AMDGPU_INFO_GDS_CONFIG: {
                struct drm_amdgpu_info_gds gds = {};

                if (gfx_major(n) < 11) {
                        gds.compute_partition_size = n->gds_size_in_kb * 1024;
                        gds.gds_total_size = n->gds_size_in_kb * 1024;
                        gds.gws_per_compute_partition = n->num_gws;
                        gds.oa_per_compute_partition = 16;
                }
                return copy_to_user(out, &gds, MIN((size_t) size, sizeof(gds)));
        }

        case AMDGPU_INFO_VRAM_GTT: {
                struct drm_amdgpu_info_vram_gtt vg;

                vg.vram_size = node_usable_vram(n);
                vg.vram_cpu_accessible_size = MIN(node_visible_vram(n), vg.vram_size);
                vg.gtt_size = topo_gtt_size(k);
                return copy_to_user(out, &vg, MIN((size_t) size, sizeof(vg)));
        }

        case AMDGPU_INFO_MEMORY: {
                struct drm_amdgpu_memory_info mem = {};

                r = emu_kernel_mem_usage(k, n->gpu_id, &vram_used, &gtt_used);
                if (r < 0)
                        return r;

                mem.vram.total_heap_size = n->mem_size;
                mem.vram.usable_heap_size = node_usable_vram(n);
                mem.vram.heap_usage = vram_used;
                mem.vram.max_allocation = mem.vram.usable_heap_size * 3 / 4;

                mem.cpu_accessible_vram.total_heap_size = node_visible_vram(n);
                mem.cpu_accessible_vram.usable_heap_size =
                        MIN(node_visible_vram(n), mem.vram.usable_heap_size);
                mem.cpu_accessible_vram.heap_usage = n->large_bar ? vram_used : 0;
                mem.cpu_accessible_vram.max_allocation =
                        mem.cpu_accessible_vram.usable_heap_size * 3 / 4;

                mem.gtt.total_heap_size = topo_gtt_size(k);
                mem.gtt.usable_heap_size = mem.gtt.total_heap_size;
                mem.gtt.heap_usage = gtt_used;
                mem.gtt.max_allocation = mem.gtt.usable_heap_size * 3 / 4;
                return copy_to_user(out, &mem, MIN((size_t) size, sizeof(mem)));
        }

        case AMDGPU_INFO_READ_MMR_REG: {
                uint32_t regs[EMU_MMR_MAX_COUNT];
                size_t n_bytes = 0;

                r = info_read_mmr(info, regs, &n_bytes);
                if (r < 0)
                        return r;
                return copy_to_user(out, regs, MIN((size_t) size, n_bytes));
        }

        case AMDGPU_INFO_DEV_INFO: {
                struct drm_amdgpu_info_device d;

                r = info_dev_info(n, &d);
                if (r < 0)
                        return r;
                return copy_to_user(out, &d, MIN((size_t) size, sizeof(d)));
        }

        case AMDGPU_INFO_SENSOR:
                /* amdgpu_info_ioctl: no power management emulated → -ENOENT, as with dpm disabled. */
                return -ENOENT;

        default:
                return -EINVAL;
        }
}

/* ---- core ioctls ---- */

static int copy_field(uint64_t buf, __kernel_size_t *buf_len, const char *value) {
        size_t len = strlen(value), n = MIN(len, (size_t) *buf_len);

        /* drm_copy_field(): copy what fits, no terminator, and always report the real length. */
        *buf_len = len;
        if (n > 0 && buf != 0)
                return copy_to_user(buf, value, n);
        return 0;
}

static int drm_version(struct drm_version *v) {
        int r;

        v->version_major = EMU_DRM_MAJOR;
        v->version_minor = EMU_DRM_MINOR;
        v->version_patchlevel = EMU_DRM_PATCHLEVEL;
        r = copy_field((uint64_t) (uintptr_t) v->name, &v->name_len, EMU_DRM_NAME);
        if (r >= 0)
                r = copy_field((uint64_t) (uintptr_t) v->date, &v->date_len, EMU_DRM_DATE);
        if (r >= 0)
                r = copy_field((uint64_t) (uintptr_t) v->desc, &v->desc_len, EMU_DRM_DESC);
        return r;
}

static int drm_get_client(struct drm_client *c) {
        /* drm_getclient(): only idx 0 exists; uid is overflowuid as in the kernel. */
        if (c->idx != 0)
                return -EINVAL;
        c->auth = 1;
        c->pid = (unsigned long) getpid();
        c->uid = 65534;
        c->magic = 0;
        c->iocs = 0;
        return 0;
}

static int drm_get_cap(struct drm_get_cap *cap) {
        switch (cap->capability) {
        case DRM_CAP_TIMESTAMP_MONOTONIC:
                cap->value = 1;
                return 0;
        case DRM_CAP_PRIME:
                cap->value = DRM_PRIME_CAP_IMPORT | DRM_PRIME_CAP_EXPORT;
                return 0;
        case DRM_CAP_SYNCOBJ:
        case DRM_CAP_SYNCOBJ_TIMELINE:
                cap->value = 1;
                return 0;
        default:
                return -EINVAL;
        }
}

typedef enum DrmCall {
        DRM_CALL_NONE,
        DRM_CALL_VERSION,
        DRM_CALL_GET_CLIENT,
        DRM_CALL_GET_CAP,
        DRM_CALL_AMDGPU_INFO,
} DrmCall;

/* The kernel's table entry for a nr: its cmd (direction and size) and what answers it. */
static DrmCall drm_lookup(unsigned nr, unsigned long *ret_kcmd) {
        static const struct {
                unsigned long cmd;
                DrmCall call;
        } table[] = {
                { DRM_IOCTL_VERSION, DRM_CALL_VERSION },
                { DRM_IOCTL_GET_CLIENT, DRM_CALL_GET_CLIENT },
                { DRM_IOCTL_GET_CAP, DRM_CALL_GET_CAP },
                { DRM_IOCTL_AMDGPU_INFO, DRM_CALL_AMDGPU_INFO },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (_IOC_NR(table[i].cmd) == nr) {
                        *ret_kcmd = table[i].cmd;
                        return table[i].call;
                }
        return DRM_CALL_NONE;
}

int emu_drm_ioctl(EmuKernel *k, unsigned minor, unsigned long cmd, void *arg) {
        uint8_t kdata[EMU_DRM_KDATA_MAX] __attribute__((aligned(8))) = {};
        size_t in_size, out_size, ksize;
        unsigned long kcmd = 0;
        const EmuNode *n;
        DrmCall call;
        int r, q;

        if (_IOC_TYPE(cmd) != DRM_IOCTL_BASE)
                return -ENOTTY;

        n = node_by_minor(k, minor);
        if (!n)
                return -ENODEV;

        call = drm_lookup(_IOC_NR(cmd), &kcmd);
        if (call == DRM_CALL_NONE)
                return -EINVAL;

        /* drm_ioctl(): sizes from the caller's cmd, directions both sides must agree on. */
        in_size = out_size = _IOC_SIZE(cmd);
        if ((cmd & kcmd & IOC_IN) == 0)
                in_size = 0;
        if ((cmd & kcmd & IOC_OUT) == 0)
                out_size = 0;
        ksize = MAX(MAX(in_size, out_size), (size_t) _IOC_SIZE(kcmd));
        if (ksize > sizeof(kdata))
                ksize = sizeof(kdata);
        in_size = MIN(in_size, ksize);
        out_size = MIN(out_size, ksize);

        r = copy_from_user(kdata, (uint64_t) (uintptr_t) arg, in_size);
        if (r < 0)
                return r;

        switch (call) {
        case DRM_CALL_VERSION:
                r = drm_version((struct drm_version *) kdata);
                break;
        case DRM_CALL_GET_CLIENT:
                r = drm_get_client((struct drm_client *) kdata);
                break;
        case DRM_CALL_GET_CAP:
                r = drm_get_cap((struct drm_get_cap *) kdata);
                break;
        case DRM_CALL_AMDGPU_INFO:
                r = drm_amdgpu_info(k, n, (struct drm_amdgpu_info *) kdata);
                break;
        default:
                r = -EINVAL;
        }

        q = copy_to_user((uint64_t) (uintptr_t) arg, kdata, out_size);
        if (q < 0)
                r = q;
        return r;
}
