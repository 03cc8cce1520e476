/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Topology JSON → EmuTopology → kernel-shaped sysfs tree.
 *
 * The JSON only says what differs between machines (which ASIC, where it sits on PCI, how much
 * VRAM, which hive); everything the kernel derives from the ASIC comes from the per-target table
 * below, so the files stay short and the derived values stay consistent. The sysfs writer copies
 * kfd_topology.c (node_show, mem_show, kfd_cache_show, iolink_show) key for key, and the link
 * set copies kfd_crat.c / kfd_topology.c: which links exist, in which order, with which flags.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <jansson.h>

#include "emu-topology.h"
#include "macro.h"

#define AMD_VENDOR_ID 0x1002u
#define DRM_MAJOR 226u

/* kfd_crat.h / kfd_topology.h values */
#define IOLINK_TYPE_PCIE 2u
#define IOLINK_TYPE_XGMI 11u
#define IOLINK_FLAGS_ENABLED 0x1u
#define IOLINK_FLAGS_NON_COHERENT 0x2u
#define IOLINK_FLAGS_NO_PEER_TO_PEER_DMA 0x10u
#define IOLINK_WEIGHT_PCIE 20u
#define IOLINK_WEIGHT_XGMI 15u /* KFD_CRAT_XGMI_WEIGHT × 1 hop: every hive here is fully connected */
#define HEAP_TYPE_SYSTEM 0u
#define HEAP_TYPE_FB_PUBLIC 1u
#define HEAP_TYPE_FB_PRIVATE 2u
#define CACHE_TYPE_DATA 0x1u
#define CACHE_TYPE_CPU 0x4u
#define CACHE_TYPE_HSACU 0x8u
#define GPU_PROCESSOR_ID_BASE 0x80001000u /* KFD_TOPOLOGY_GPU_PROCESSOR_ID_BASE */
#define KFD_GPU_ID_HASH_WIDTH 16

#define HSA_CAP_WATCH_POINTS_SUPPORTED 0x00000080u
#define HSA_CAP_WATCH_POINTS_TOTALBITS_SHIFT 8
#define HSA_CAP_DOORBELL_TYPE_SHIFT 12
#define HSA_CAP_TRAP_DEBUG_SUPPORT 0x00008000u
#define HSA_CAP_TRAP_DEBUG_WAVE_LAUNCH_TRAP_OVERRIDE 0x00010000u
#define HSA_CAP_TRAP_DEBUG_WAVE_LAUNCH_MODE 0x00020000u
#define HSA_CAP_SRAM_EDCSUPPORTED 0x00080000u
#define HSA_CAP_MEM_EDCSUPPORTED 0x00100000u
#define HSA_CAP_RASEVENTNOTIFY 0x00200000u
#define HSA_CAP_SVMAPI_SUPPORTED 0x08000000u
#define HSA_CAP_FLAGS_COHERENTHOSTACCESS 0x10000000u
#define HSA_CAP_TRAP_DEBUG_FIRMWARE_SUPPORTED 0x20000000u

#define PROPERTIES_MAX 4096 /* libhsakmt reads one page; the kernel prints into one */
#define JSON_MAX_BYTES (1u << 20)

/*
 * What the kernel and amdgpu derive from the ASIC. Values are those of the board named in
 * `marketing_name` (per GCD for MI250X, whole device for MI300X in SPX mode); every one can be
 * overridden in the JSON where a test needs something else.
 */
typedef struct TargetInfo {
        uint32_t gfx_target_version;
        const char *name; /* amdgpu_asic_name[] lower-cased: IP-discovery parts say "ip discovery" */
        const char *marketing_name;
        uint32_t family;   /* AMDGPU_FAMILY_* */
        uint32_t cu_count; /* active CUs of all XCCs */
        uint32_t num_xcc;
        uint32_t shader_engines; /* per XCC */
        uint32_t simd_arrays_per_engine;
        uint32_t simd_per_cu;
        uint32_t wave_front_size;
        uint32_t max_waves_per_simd;
        uint32_t lds_size_in_kb;
        uint32_t gds_size_in_kb;
        uint32_t num_gws;
        uint32_t num_sdma_engines;
        uint32_t num_sdma_xgmi_engines;
        uint32_t num_sdma_queues_per_engine;
        uint32_t num_cp_queues;
        uint32_t max_engine_clk_fcompute;
        uint32_t fw_version;
        uint32_t sdma_fw_version;
        uint64_t debug_prop;
        uint32_t capability; /* without SVMAPI_SUPPORTED, which follows svm_capable */
        bool xnack_capable;
        bool svm_capable;
        bool has_unique_id;
        uint32_t mem_width;
        uint32_t mem_clk_max;
        uint32_t l2_kb;
        uint32_t l3_kb; /* Infinity Cache / MALL, 0 if none */
        uint32_t pci_class;
        uint32_t subsystem_device_id;
        uint32_t pci_rev;
        uint32_t pcie_max_mbps; /* what amdgpu_amdkfd_get_pcie_bandwidth_mbytes reports */
        uint32_t xgmi_mbps;     /* per link, 0 without XGMI */
} TargetInfo;

#define CAP_GFX9_DEBUG                                                               \
        (HSA_CAP_TRAP_DEBUG_SUPPORT | HSA_CAP_TRAP_DEBUG_WAVE_LAUNCH_TRAP_OVERRIDE | \
         HSA_CAP_TRAP_DEBUG_WAVE_LAUNCH_MODE | HSA_CAP_TRAP_DEBUG_FIRMWARE_SUPPORTED)
#define CAP_WATCH (HSA_CAP_WATCH_POINTS_SUPPORTED | (2u << HSA_CAP_WATCH_POINTS_TOTALBITS_SHIFT))
#define CAP_RAS (HSA_CAP_SRAM_EDCSUPPORTED | HSA_CAP_MEM_EDCSUPPORTED | HSA_CAP_RASEVENTNOTIFY)

static const TargetInfo target_table[] = {
        {
                .gfx_target_version = 80003,
                .name = "polaris10",
                .marketing_name = "Radeon RX 580 Series",
                .family = 130, /* AMDGPU_FAMILY_VI */
                .cu_count = 36,
                .num_xcc = 1,
                .shader_engines = 4,
                .simd_arrays_per_engine = 1,
                .simd_per_cu = 4,
                .wave_front_size = 64,
                .max_waves_per_simd = 10,
                .lds_size_in_kb = 64,
                .gds_size_in_kb = 64,
                .num_gws = 0,
                .num_sdma_engines = 2,
                .num_sdma_xgmi_engines = 0,
                .num_sdma_queues_per_engine = 2,
                .num_cp_queues = 24,
                .max_engine_clk_fcompute = 1340,
                .fw_version = 730,
                .sdma_fw_version = 58,
                .debug_prop = 0,
                /* gfx8: doorbell type 1.0, no trap debugging, no SVM (not SOC15) */
                .capability = CAP_WATCH | (1u << HSA_CAP_DOORBELL_TYPE_SHIFT),
                .xnack_capable = false,
                .svm_capable = false,
                .has_unique_id = false,
                .mem_width = 256,
                .mem_clk_max = 2000,
                .l2_kb = 2048,
                .l3_kb = 0,
                .pci_class = 0x030000,
                .subsystem_device_id = 0x0b37,
                .pci_rev = 0xe7,
                .pcie_max_mbps = 15760,
                .xgmi_mbps = 0,
        },
        {
                .gfx_target_version = 90010,
                .name = "aldebaran",
                .marketing_name = "AMD Instinct MI250X",
                .family = 141, /* AMDGPU_FAMILY_AI */
                .cu_count = 110,
                .num_xcc = 1,
                .shader_engines = 8,
                .simd_arrays_per_engine = 1,
                .simd_per_cu = 4,
                .wave_front_size = 64,
                .max_waves_per_simd = 8,
                .lds_size_in_kb = 64,
                .gds_size_in_kb = 0,
                .num_gws = 64,
                .num_sdma_engines = 2,
                .num_sdma_xgmi_engines = 3,
                .num_sdma_queues_per_engine = 8,
                .num_cp_queues = 24,
                .max_engine_clk_fcompute = 1700,
                .fw_version = 78,
                .sdma_fw_version = 8,
                .debug_prop = 6 | (29u << 4),
                .capability = CAP_WATCH | (2u << HSA_CAP_DOORBELL_TYPE_SHIFT) | CAP_GFX9_DEBUG | CAP_RAS |
                              HSA_CAP_FLAGS_COHERENTHOSTACCESS,
                .xnack_capable = true,
                .svm_capable = true,
                .has_unique_id = true,
                .mem_width = 4096,
                .mem_clk_max = 1600,
                .l2_kb = 8192,
                .l3_kb = 0,
                .pci_class = 0x038000,
                .subsystem_device_id = 0x0b0c,
                .pci_rev = 0x01,
                .pcie_max_mbps = 31520,
                .xgmi_mbps = 50000,
        },
        {
                .gfx_target_version = 90402,
                .name = "ip discovery",
                .marketing_name = "AMD Instinct MI300X",
                .family = 141, /* AMDGPU_FAMILY_AI: GC 9.4.3 is still GFX9 */
                .cu_count = 304,
                .num_xcc = 8,
                .shader_engines = 4,
                .simd_arrays_per_engine = 1,
                .simd_per_cu = 4,
                .wave_front_size = 64,
                .max_waves_per_simd = 8,
                .lds_size_in_kb = 64,
                .gds_size_in_kb = 0,
                .num_gws = 64,
                .num_sdma_engines = 2,
                .num_sdma_xgmi_engines = 14,
                .num_sdma_queues_per_engine = 8,
                .num_cp_queues = 24,
                .max_engine_clk_fcompute = 2100,
                .fw_version = 155,
                .sdma_fw_version = 19,
                .debug_prop = 7 | (30u << 4),
                .capability = CAP_WATCH | (2u << HSA_CAP_DOORBELL_TYPE_SHIFT) | CAP_GFX9_DEBUG | CAP_RAS |
                              HSA_CAP_FLAGS_COHERENTHOSTACCESS,
                .xnack_capable = true,
                .svm_capable = true,
                .has_unique_id = true,
                .mem_width = 8192,
                .mem_clk_max = 1300,
                .l2_kb = 4096,
                .l3_kb = 262144,
                .pci_class = 0x120000,
                .subsystem_device_id = 0x74a1,
                .pci_rev = 0x00,
                .pcie_max_mbps = 63040,
                .xgmi_mbps = 64000,
        },
        {
                .gfx_target_version = 110000,
                .name = "ip discovery",
                .marketing_name = "AMD Radeon RX 7900 XTX",
                .family = 145, /* AMDGPU_FAMILY_GC_11_0_0 */
                .cu_count = 96,
                .num_xcc = 1,
                .shader_engines = 6,
                .simd_arrays_per_engine = 2,
                .simd_per_cu = 2,
                .wave_front_size = 32,
                .max_waves_per_simd = 16,
                .lds_size_in_kb = 64,
                .gds_size_in_kb = 0,
                .num_gws = 64,
                .num_sdma_engines = 2,
                .num_sdma_xgmi_engines = 0,
                .num_sdma_queues_per_engine = 8,
                .num_cp_queues = 24,
                .max_engine_clk_fcompute = 2500,
                .fw_version = 2390,
                .sdma_fw_version = 21,
                .debug_prop = 7 | (29u << 4),
                .capability = CAP_WATCH | (2u << HSA_CAP_DOORBELL_TYPE_SHIFT) | CAP_GFX9_DEBUG,
                .xnack_capable = false,
                .svm_capable = true,
                .has_unique_id = false,
                .mem_width = 384,
                .mem_clk_max = 1250,
                .l2_kb = 6144,
                .l3_kb = 98304,
                .pci_class = 0x030000,
                .subsystem_device_id = 0x0e3b,
                .pci_rev = 0xc8,
                .pcie_max_mbps = 31520,
                .xgmi_mbps = 0,
        },
};

static const TargetInfo *target_find(uint32_t gfx_target_version)
{
        for (size_t i = 0; i < ELEMENTSOF(target_table); i++)
                if (target_table[i].gfx_target_version == gfx_target_version)
                        return &target_table[i];
        return NULL;
}

/* ---- errors ---------------------------------------------------------------------------------- */

static int set_error(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);
static int set_error(char **ret_error, int r, const char *fmt, ...)
{
        va_list ap;

        if (ret_error && !*ret_error) {
                va_start(ap, fmt);
                if (vasprintf(ret_error, fmt, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return r;
}

/* ---- JSON value helpers ---------------------------------------------------------------------- */

/* Decimal or 0x-hex digits only: no sign, no spaces, no octal surprises. */
static int parse_u64_string(const char *s, uint64_t *ret)
{
        unsigned base = 10;
        uint64_t v = 0;

        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
                base = 16;
                s += 2;
        }
        if (!*s)
                return -EINVAL;
        for (; *s; s++) {
                unsigned d;

                if (*s >= '0' && *s <= '9')
                        d = *s - '0';
                else if (base == 16 && *s >= 'a' && *s <= 'f')
                        d = *s - 'a' + 10;
                else if (base == 16 && *s >= 'A' && *s <= 'F')
                        d = *s - 'A' + 10;
                else
                        return -EINVAL;
                if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, d, &v))
                        return -ERANGE;
        }
        *ret = v;
        return 0;
}

static int json_to_u64(json_t *v, uint64_t *ret)
{
        if (json_is_integer(v)) {
                json_int_t i = json_integer_value(v);
                if (i < 0)
                        return -ERANGE;
                *ret = (uint64_t) i;
                return 0;
        }
        if (json_is_string(v))
                return parse_u64_string(json_string_value(v), ret);
        return -EINVAL;
}

/* "192G", "64M", "512K", "1T", with or without "iB"; binary multiples. Plain digits are bytes. */
static int parse_size_string(const char *s, uint64_t *ret)
{
        static const struct {
                const char *suffix;
                unsigned shift;
        } suffixes[] = {
                {"", 0},     {"B", 0},  {"K", 10},   {"KiB", 10}, {"M", 20},
                {"MiB", 20}, {"G", 30}, {"GiB", 30}, {"T", 40},   {"TiB", 40},
        };
        uint64_t v = 0;
        const char *p = s;

        if (*p < '0' || *p > '9')
                return -EINVAL;
        for (; *p >= '0' && *p <= '9'; p++)
                if (__builtin_mul_overflow(v, 10, &v) ||
                    __builtin_add_overflow(v, (uint64_t) (*p - '0'), &v))
                        return -ERANGE;
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++)
                if (streq(p, suffixes[i].suffix)) {
                        if (suffixes[i].shift && v > (UINT64_MAX >> suffixes[i].shift))
                                return -ERANGE;
                        *ret = v << suffixes[i].shift;
                        return 0;
                }
        return -EINVAL;
}

static int json_to_size(json_t *v, uint64_t *ret)
{
        if (json_is_integer(v))
                return json_to_u64(v, ret);
        if (json_is_string(v))
                return parse_size_string(json_string_value(v), ret);
        return -EINVAL;
}

static int check_keys(json_t *obj, const char *where, const char *const *allowed, char **ret_error)
{
        const char *key;
        json_t *v;

        if (!json_is_object(obj))
                return set_error(ret_error, -EINVAL, "%s: expected a JSON object", where);

        json_object_foreach(obj, key, v)
        {
                bool ok = false;

                for (const char *const *a = allowed; *a; a++)
                        if (streq(*a, key)) {
                                ok = true;
                                break;
                        }
                if (!ok)
                        return set_error(ret_error, -EINVAL, "%s: unknown key \"%s\"", where, key);
        }
        return 0;
}

/* Reads obj[key] as an unsigned integer in [min, max]; leaves *ret alone when absent and optional. */
static int get_uint(json_t *obj, const char *where, const char *key, bool required, uint64_t min,
                    uint64_t max, uint64_t *ret, char **ret_error)
{
        json_t *v = json_object_get(obj, key);
        uint64_t x;
        int r;

        if (!v) {
                if (required)
                        return set_error(ret_error, -EINVAL, "%s: missing required key \"%s\"", where, key);
                return 0;
        }
        r = json_to_u64(v, &x);
        if (r < 0)
                return set_error(ret_error, -EINVAL,
                                 "%s.%s: expected a non-negative integer or a decimal/0x-hex string", where,
                                 key);
        if (x < min || x > max)
                return set_error(ret_error, -ERANGE,
                                 "%s.%s: %" PRIu64 " is out of range [%" PRIu64 ", %" PRIu64 "]", where, key,
                                 x, min, max);
        *ret = x;
        return 1;
}

static int get_u32(json_t *obj, const char *where, const char *key, bool required, uint32_t min,
                   uint32_t max, uint32_t *ret, char **ret_error)
{
        uint64_t x;
        int r;

        r = get_uint(obj, where, key, required, min, max, &x, ret_error);
        if (r > 0)
                *ret = (uint32_t) x;
        return r;
}

static int get_size(json_t *obj, const char *where, const char *key, bool required, uint64_t *ret,
                    char **ret_error)
{
        json_t *v = json_object_get(obj, key);
        int r;

        if (!v) {
                if (required)
                        return set_error(ret_error, -EINVAL, "%s: missing required key \"%s\"", where, key);
                return 0;
        }
        r = json_to_size(v, ret);
        if (r < 0)
                return set_error(
                        ret_error, -EINVAL,
                        "%s.%s: bad size (want bytes as an integer, or a string like \"64M\", \"192G\")",
                        where, key);
        return 1;
}

static int get_bool(json_t *obj, const char *where, const char *key, bool *ret, char **ret_error)
{
        json_t *v = json_object_get(obj, key);

        if (!v)
                return 0;
        if (!json_is_boolean(v))
                return set_error(ret_error, -EINVAL, "%s.%s: expected true or false", where, key);
        *ret = json_is_true(v);
        return 1;
}

static int get_string(json_t *obj, const char *where, const char *key, bool required, char *buf, size_t size,
                      char **ret_error)
{
        json_t *v = json_object_get(obj, key);
        const char *s;

        if (!v) {
                if (required)
                        return set_error(ret_error, -EINVAL, "%s: missing required key \"%s\"", where, key);
                return 0;
        }
        if (!json_is_string(v))
                return set_error(ret_error, -EINVAL, "%s.%s: expected a string", where, key);
        s = json_string_value(v);
        if (strlen(s) >= size)
                return set_error(ret_error, -ENAMETOOLONG, "%s.%s: longer than %zu characters", where, key,
                                 size - 1);
        if (strchr(s, '\n'))
                return set_error(ret_error, -EINVAL, "%s.%s: must not contain a newline", where, key);
        strcpy(buf, s);
        return 1;
}

/* "DDDD:BB:DD.F" as in PCI_SLOT_NAME; "BB:DD.F" means domain 0. */
static int parse_pci(const char *s, uint32_t *ret_domain, uint32_t *ret_bus, uint32_t *ret_devfn)
{
        unsigned domain = 0, bus, dev, fn;
        size_t len = strlen(s);
        int n = -1;

        /* sscanf's %x skips blanks and takes signs and "0x": allow only the characters of the form */
        if (strspn(s, "0123456789abcdefABCDEF:.") != len)
                return -EINVAL;
        if (len == 12)
                (void) sscanf(s, "%4x:%2x:%2x.%1u%n", &domain, &bus, &dev, &fn, &n);
        else if (len == 7)
                (void) sscanf(s, "%2x:%2x.%1u%n", &bus, &dev, &fn, &n);
        if (n < 0 || (size_t) n != len)
                return -EINVAL;
        if (dev > 31 || fn > 7)
                return -ERANGE;
        *ret_domain = domain;
        *ret_bus = bus;
        *ret_devfn = (dev << 3) | fn;
        return 0;
}

/* ---- derived values -------------------------------------------------------------------------- */

/* include/linux/hash.h: hash_32() with GOLDEN_RATIO_32 */
static uint32_t hash_32(uint32_t val, unsigned bits)
{
        return (uint32_t) (val * 0x61C88647u) >> (32 - bits);
}

/*
 * kfd_topology.c kfd_generate_gpu_id (the XOR-of-hash_32 version of reference §6.3): stable for
 * the same slot and configuration, which is what makes gpu_ids survive a daemon restart.
 */
static uint32_t generate_gpu_id(const EmuNode *n)
{
        uint32_t buf[8], h = 0;

        buf[0] = n->location_id & 0xff; /* devfn */
        buf[1] = n->subsystem_vendor_id | (n->subsystem_device_id << 16);
        buf[2] = n->domain;
        buf[3] = n->device_id;
        buf[4] = n->location_id >> 8; /* bus */
        buf[5] = (uint32_t) n->mem_size;
        buf[6] = (uint32_t) (n->mem_size >> 32);
        buf[7] = 0 /* first XCC */ | (n->num_xcc << 16);
        for (size_t i = 0; i < ELEMENTSOF(buf); i++)
                h ^= hash_32(buf[i], KFD_GPU_ID_HASH_WIDTH);
        return h;
}

static bool gpu_id_taken(const EmuTopology *t, unsigned upto, uint32_t id)
{
        for (unsigned i = 0; i < upto; i++)
                if (t->nodes[i].is_gpu && t->nodes[i].gpu_id == id)
                        return true;
        return false;
}

static uint64_t splitmix64(uint64_t x)
{
        x += 0x9E3779B97F4A7C15ull;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        return x ^ (x >> 31);
}

static void fill_gpu_caches(EmuNode *n, const TargetInfo *ti, uint32_t arrays_per_xcc)
{
        uint32_t levels[2] = {ti->l2_kb, ti->l3_kb};

        n->n_caches = 0;
        for (unsigned l = 0; l < ELEMENTSOF(levels); l++) {
                EmuCache *c;

                if (levels[l] == 0)
                        continue;
                c = &n->caches[n->n_caches++];
                *c = (EmuCache){
                        .processor_id_low = n->simd_id_base,
                        .level = l + 2,
                        .size_kb = levels[l],
                        .cache_line_size = 128,
                        .cache_lines_per_tag = 1,
                        .association = 16,
                        .latency = 0,
                        .type = CACHE_TYPE_DATA | CACHE_TYPE_HSACU,
                };
                /* fill_in_l2_l3_pcache: one 32-bit CU mask per shader array */
                for (uint32_t a = 0; a < arrays_per_xcc && (a + 1) * 4 <= EMU_CACHE_SIBLING_MAP_BYTES; a++) {
                        uint32_t mask =
                                n->cu_per_simd_array >= 32 ? UINT32_MAX : (1u << n->cu_per_simd_array) - 1;
                        for (unsigned b = 0; b < 4; b++)
                                c->sibling_map[a * 4 + b] = (uint8_t) (mask >> (8 * b));
                }
        }
}

static void fill_cpu_caches(EmuNode *n)
{
        static const struct {
                uint32_t level, size_kb, assoc, sharing;
        } caches[] = {
                {1, 32, 8, 1},
                {2, 1024, 8, 1},
                {3, 32768, 16, 8},
        };

        n->n_caches = ELEMENTSOF(caches);
        for (unsigned i = 0; i < ELEMENTSOF(caches); i++) {
                EmuCache *c = &n->caches[i];
                uint32_t sharing = MIN(caches[i].sharing, n->cpu_cores_count);

                *c = (EmuCache){
                        .processor_id_low = n->cpu_core_id_base,
                        .level = caches[i].level,
                        .size_kb = caches[i].size_kb,
                        .cache_line_size = 64,
                        .cache_lines_per_tag = 1,
                        .association = caches[i].assoc,
                        .latency = 0,
                        .type = CACHE_TYPE_DATA | CACHE_TYPE_CPU,
                };
                for (uint32_t b = 0; b < sharing; b++)
                        c->sibling_map[b / 8] |= (uint8_t) (1u << (b % 8));
        }
}

static uint32_t sdma_mask_pcie(const EmuNode *g)
{
        return g->num_sdma_engines >= 32 ? UINT32_MAX : (1u << g->num_sdma_engines) - 1;
}

static uint32_t sdma_mask_xgmi(const EmuNode *g)
{
        uint32_t n = g->num_sdma_xgmi_engines;

        if (n == 0 || g->num_sdma_engines + n > 32)
                return sdma_mask_pcie(g);
        return ((1u << n) - 1) << g->num_sdma_engines;
}

static int add_link(EmuLink *links, unsigned *n, const EmuLink *l, char **ret_error)
{
        if (*n >= EMU_MAX_LINKS)
                return set_error(ret_error, -E2BIG, "topology needs more than %d links", EMU_MAX_LINKS);
        links[(*n)++] = *l;
        return 0;
}

static bool same_hive(const EmuNode *a, const EmuNode *b)
{
        return a->hive_id != 0 && a->hive_id == b->hive_id;
}

/*
 * Links in the kernel's per-node order (each node's io_links/L are the links with node_from == N
 * in array order):
 *   CPU: CPU→GPU for every large-BAR GPU (kfd_parse_subtype_iolink adds the reverse of a
 *        BI_DIRECTIONAL GPU→CPU link, and kfd_fill_gpu_direct_io_link_to_cpu sets that flag only
 *        on large BAR); flags ENABLED|NON_COHERENT (kfd_set_iolink_non_coherent).
 *   GPU: GPU→CPU first, then XGMI to every hive peer in node order.
 *   p2p: GPU pairs outside a common hive, a→b when b may reach a's BAR
 *        (kfd_add_peer_prop(kdev, peer) → amdgpu_device_is_peer_accessible(kdev, peer)).
 */
static int build_links(EmuTopology *t, char **ret_error)
{
        int r;

        t->n_links = t->n_p2p_links = 0;
        for (unsigned i = 0; i < t->n_nodes; i++) {
                EmuNode *a = &t->nodes[i];

                if (!a->is_gpu) {
                        for (unsigned j = 0; j < t->n_nodes; j++) {
                                EmuNode *g = &t->nodes[j];
                                if (!g->is_gpu || !g->large_bar)
                                        continue;
                                r = add_link(
                                        t->io_links, &t->n_links,
                                        &(EmuLink){
                                                .type = IOLINK_TYPE_PCIE,
                                                .node_from = i,
                                                .node_to = j,
                                                .weight = IOLINK_WEIGHT_PCIE,
                                                .min_bandwidth = 250,
                                                .max_bandwidth =
                                                        target_find(g->gfx_target_version)->pcie_max_mbps,
                                                .flags = IOLINK_FLAGS_ENABLED | IOLINK_FLAGS_NON_COHERENT,
                                                .recommended_sdma_engine_id_mask = sdma_mask_pcie(g),
                                        },
                                        ret_error);
                                if (r < 0)
                                        return r;
                        }
                        continue;
                }

                r = add_link(t->io_links, &t->n_links,
                             &(EmuLink){
                                     .type = IOLINK_TYPE_PCIE,
                                     .node_from = i,
                                     .node_to = 0,
                                     .weight = IOLINK_WEIGHT_PCIE,
                                     .min_bandwidth = 250,
                                     .max_bandwidth = target_find(a->gfx_target_version)->pcie_max_mbps,
                                     .flags = IOLINK_FLAGS_ENABLED,
                                     .recommended_sdma_engine_id_mask = sdma_mask_pcie(a),
                             },
                             ret_error);
                if (r < 0)
                        return r;

                for (unsigned j = 0; j < t->n_nodes; j++) {
                        EmuNode *b = &t->nodes[j];
                        uint32_t bw = target_find(a->gfx_target_version)->xgmi_mbps;

                        if (j == i || !b->is_gpu || !same_hive(a, b))
                                continue;
                        r = add_link(t->io_links, &t->n_links,
                                     &(EmuLink){
                                             .type = IOLINK_TYPE_XGMI,
                                             .node_from = i,
                                             .node_to = j,
                                             .weight = IOLINK_WEIGHT_XGMI,
                                             .min_bandwidth = bw,
                                             .max_bandwidth = bw,
                                             .flags = IOLINK_FLAGS_ENABLED,
                                             .recommended_sdma_engine_id_mask = sdma_mask_xgmi(a),
                                     },
                                     ret_error);
                        if (r < 0)
                                return r;
                }
        }

        for (unsigned i = 0; i < t->n_nodes; i++) {
                EmuNode *a = &t->nodes[i];

                if (!a->is_gpu)
                        continue;
                for (unsigned j = 0; j < t->n_nodes; j++) {
                        EmuNode *b = &t->nodes[j];

                        if (j == i || !b->is_gpu || same_hive(a, b))
                                continue;
                        if (!(a->large_bar && a->pcie_p2p && b->pcie_p2p))
                                continue;
                        r = add_link(t->p2p_links, &t->n_p2p_links,
                                     &(EmuLink){
                                             .type = IOLINK_TYPE_PCIE,
                                             .node_from = i,
                                             .node_to = j,
                                             /* GPU→CPU plus CPU→peer (kfd_add_peer_prop) */
                                             .weight = 2 * IOLINK_WEIGHT_PCIE,
                                             .min_bandwidth = 250,
                                             .max_bandwidth =
                                                     MIN(target_find(a->gfx_target_version)->pcie_max_mbps,
                                                         target_find(b->gfx_target_version)->pcie_max_mbps),
                                             /*
                                              * kfd_fill_iolink_non_crat_info runs for each GPU as it is
                                              * added: its own links become ENABLED, the inbound ones
                                              * from earlier GPUs also NON_COHERENT.
                                              */
                                             .flags = IOLINK_FLAGS_ENABLED |
                                                      (i < j ? IOLINK_FLAGS_NON_COHERENT : 0),
                                             .recommended_sdma_engine_id_mask = sdma_mask_pcie(a),
                                     },
                                     ret_error);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* ---- parsing --------------------------------------------------------------------------------- */

static const char *const top_keys[] = {
        "name", "description", "kfd_version", "generation_id", "system_memory", "cpu", "gpus", NULL,
};

static const char *const cpu_keys[] = {
        "cores", "max_clock_mhz", "mem_width", "mem_clk_max", NULL,
};

static const char *const gpu_keys[] = {
        "gfx_target_version",
        "device_id",
        "pci",
        "vram",
        "large_bar",
        "hive_id",
        "pcie_p2p",
        "gpu_id",
        "render_minor",
        "revision",
        "subsystem_vendor",
        "subsystem_device",
        "pci_class",
        "name",
        "marketing_name",
        "unique_id",
        "cu_count",
        "num_xcc",
        "xnack_capable",
        "svm_capable",
        "capability",
        "debug_prop",
        "fw_version",
        "sdma_fw_version",
        "max_engine_clk_fcompute",
        "num_sdma_engines",
        "num_sdma_xgmi_engines",
        "num_cp_queues",
        "mem_width",
        "mem_clk_max",
        NULL,
};

static int parse_kfd_version(json_t *root, EmuTopology *t, char **ret_error)
{
        json_t *v = json_object_get(root, "kfd_version");
        unsigned major, minor;
        int n = 0;

        t->kfd_major = 1;
        t->kfd_minor = 16;
        if (!v)
                return 0;
        if (!json_is_string(v) || sscanf(json_string_value(v), "%3u.%3u%n", &major, &minor, &n) != 2 ||
            (size_t) n != strlen(json_string_value(v)) || !strchr("0123456789", json_string_value(v)[0]))
                return set_error(ret_error, -EINVAL, "kfd_version: expected \"MAJOR.MINOR\", e.g. \"1.16\"");
        if (major != 1)
                return set_error(ret_error, -ERANGE,
                                 "kfd_version: major must be 1 (libhsakmt rejects others)");
        t->kfd_major = major;
        t->kfd_minor = minor;
        return 0;
}

static int parse_cpu(json_t *root, EmuTopology *t, uint32_t *ret_clock, char **ret_error)
{
        json_t *cpu = json_object_get(root, "cpu");
        EmuNode *n = &t->nodes[0];
        int r;

        *n = (EmuNode){
                .is_gpu = false,
                .cpu_cores_count = 64,
                .mem_size = t->system_memory,
                .mem_width = 64,
                .mem_clk_max = 3200,
        };
        *ret_clock = 3000;

        if (cpu) {
                r = check_keys(cpu, "cpu", cpu_keys, ret_error);
                if (r < 0)
                        return r;
                r = get_u32(cpu, "cpu", "cores", false, 1, 4096, &n->cpu_cores_count, ret_error);
                if (r < 0)
                        return r;
                r = get_u32(cpu, "cpu", "max_clock_mhz", false, 0, 100000, ret_clock, ret_error);
                if (r < 0)
                        return r;
                r = get_u32(cpu, "cpu", "mem_width", false, 0, UINT32_MAX, &n->mem_width, ret_error);
                if (r < 0)
                        return r;
                r = get_u32(cpu, "cpu", "mem_clk_max", false, 0, UINT32_MAX, &n->mem_clk_max, ret_error);
                if (r < 0)
                        return r;
        }
        fill_cpu_caches(n);
        return 0;
}

typedef struct GpuExplicit {
        bool gpu_id, render_minor;
} GpuExplicit;

static int parse_gpu(json_t *g, unsigned index, EmuNode *n, GpuExplicit *ex, uint32_t *simd_base,
                     char **ret_error)
{
        const TargetInfo *ti;
        char where[32], pci[32];
        uint32_t domain, bus, devfn, cu_count, per_xcc_cu, arrays_per_xcc;
        uint64_t u64;
        int r;

        snprintf(where, sizeof where, "gpus[%u]", index);
        r = check_keys(g, where, gpu_keys, ret_error);
        if (r < 0)
                return r;

        *n = (EmuNode){.is_gpu = true};

        r = get_u32(g, where, "gfx_target_version", true, 1, 999999, &n->gfx_target_version, ret_error);
        if (r < 0)
                return r;
        ti = target_find(n->gfx_target_version);
        if (!ti)
                return set_error(
                        ret_error, -EOPNOTSUPP,
                        "%s.gfx_target_version: no built-in defaults for %u (known: 80003, 90010, 90402, "
                        "110000)",
                        where, n->gfx_target_version);
        snprintf(n->target, sizeof n->target, "gfx%u%u%x", n->gfx_target_version / 10000,
                 n->gfx_target_version / 100 % 100, n->gfx_target_version % 100);

        r = get_u32(g, where, "device_id", true, 1, 0xffff, &n->device_id, ret_error);
        if (r < 0)
                return r;

        r = get_string(g, where, "pci", true, pci, sizeof pci, ret_error);
        if (r < 0)
                return r;
        if (parse_pci(pci, &domain, &bus, &devfn) < 0)
                return set_error(ret_error, -EINVAL,
                                 "%s.pci: \"%s\" is not a PCI address like \"0000:03:00.0\"", where, pci);
        n->domain = domain;
        n->location_id = (bus << 8) | devfn;

        r = get_size(g, where, "vram", true, &n->mem_size, ret_error);
        if (r < 0)
                return r;
        if (n->mem_size < (1ull << 20) || n->mem_size % 4096 != 0)
                return set_error(ret_error, -ERANGE, "%s.vram: must be at least 1M and a multiple of 4K",
                                 where);

        /* defaults from the target table, then the JSON's overrides */
        n->large_bar = true;
        n->pcie_p2p = true;
        n->vendor_id = AMD_VENDOR_ID;
        n->subsystem_vendor_id = AMD_VENDOR_ID;
        n->subsystem_device_id = ti->subsystem_device_id;
        n->pci_rev = ti->pci_rev;
        n->pci_class = ti->pci_class;
        n->family = ti->family;
        n->xnack_capable = ti->xnack_capable;
        n->svm_capable = ti->svm_capable;
        n->num_xcc = ti->num_xcc;
        n->capability = ti->capability;
        n->debug_prop = ti->debug_prop;
        n->fw_version = ti->fw_version;
        n->sdma_fw_version = ti->sdma_fw_version;
        n->max_engine_clk_fcompute = ti->max_engine_clk_fcompute;
        n->num_sdma_engines = ti->num_sdma_engines;
        n->num_sdma_xgmi_engines = ti->num_sdma_xgmi_engines;
        n->num_sdma_queues_per_engine = ti->num_sdma_queues_per_engine;
        n->num_cp_queues = ti->num_cp_queues;
        n->mem_width = ti->mem_width;
        n->mem_clk_max = ti->mem_clk_max;
        snprintf(n->name, sizeof n->name, "%s", ti->name);
        snprintf(n->marketing_name, sizeof n->marketing_name, "%s", ti->marketing_name);
        cu_count = ti->cu_count;

        if ((r = get_bool(g, where, "large_bar", &n->large_bar, ret_error)) < 0 ||
            (r = get_bool(g, where, "pcie_p2p", &n->pcie_p2p, ret_error)) < 0 ||
            (r = get_bool(g, where, "xnack_capable", &n->xnack_capable, ret_error)) < 0 ||
            (r = get_bool(g, where, "svm_capable", &n->svm_capable, ret_error)) < 0 ||
            (r = get_uint(g, where, "hive_id", false, 0, UINT64_MAX, &n->hive_id, ret_error)) < 0 ||
            (r = get_u32(g, where, "revision", false, 0, 0xff, &n->pci_rev, ret_error)) < 0 ||
            (r = get_u32(g, where, "subsystem_vendor", false, 0, 0xffff, &n->subsystem_vendor_id,
                         ret_error)) < 0 ||
            (r = get_u32(g, where, "subsystem_device", false, 0, 0xffff, &n->subsystem_device_id,
                         ret_error)) < 0 ||
            (r = get_u32(g, where, "pci_class", false, 0, 0xffffff, &n->pci_class, ret_error)) < 0 ||
            (r = get_string(g, where, "name", false, n->name, sizeof n->name, ret_error)) < 0 ||
            (r = get_string(g, where, "marketing_name", false, n->marketing_name, sizeof n->marketing_name,
                            ret_error)) < 0 ||
            (r = get_u32(g, where, "cu_count", false, 1, 4096, &cu_count, ret_error)) < 0 ||
            (r = get_u32(g, where, "num_xcc", false, 1, 16, &n->num_xcc, ret_error)) < 0 ||
            (r = get_u32(g, where, "capability", false, 0, UINT32_MAX, &n->capability, ret_error)) < 0 ||
            (r = get_uint(g, where, "debug_prop", false, 0, UINT64_MAX, &n->debug_prop, ret_error)) < 0 ||
            (r = get_u32(g, where, "fw_version", false, 0, UINT32_MAX, &n->fw_version, ret_error)) < 0 ||
            (r = get_u32(g, where, "sdma_fw_version", false, 0, UINT32_MAX, &n->sdma_fw_version,
                         ret_error)) < 0 ||
            (r = get_u32(g, where, "max_engine_clk_fcompute", false, 0, 100000, &n->max_engine_clk_fcompute,
                         ret_error)) < 0 ||
            (r = get_u32(g, where, "num_sdma_engines", false, 0, 16, &n->num_sdma_engines, ret_error)) < 0 ||
            (r = get_u32(g, where, "num_sdma_xgmi_engines", false, 0, 16, &n->num_sdma_xgmi_engines,
                         ret_error)) < 0 ||
            (r = get_u32(g, where, "num_cp_queues", false, 0, 1024, &n->num_cp_queues, ret_error)) < 0 ||
            (r = get_u32(g, where, "mem_width", false, 0, UINT32_MAX, &n->mem_width, ret_error)) < 0 ||
            (r = get_u32(g, where, "mem_clk_max", false, 0, UINT32_MAX, &n->mem_clk_max, ret_error)) < 0)
                return r;

        r = get_u32(g, where, "gpu_id", false, 1, 0xffff, &n->gpu_id, ret_error);
        if (r < 0)
                return r;
        ex->gpu_id = r > 0;
        r = get_u32(g, where, "render_minor", false, 128, 255, &n->drm_render_minor, ret_error);
        if (r < 0)
                return r;
        ex->render_minor = r > 0;

        /* the compute shape the kernel prints (kfd_create_vcrat_image_gpu, node_show) */
        if (cu_count % n->num_xcc != 0)
                return set_error(ret_error, -EINVAL, "%s: cu_count %u is not a multiple of num_xcc %u",
                                 where, cu_count, n->num_xcc);
        per_xcc_cu = cu_count / n->num_xcc;
        arrays_per_xcc = ti->shader_engines * ti->simd_arrays_per_engine;
        n->simd_count = cu_count * ti->simd_per_cu;
        n->simd_per_cu = ti->simd_per_cu;
        n->simd_arrays_per_engine = ti->simd_arrays_per_engine;
        n->array_count = arrays_per_xcc * n->num_xcc;
        n->cu_per_simd_array = (per_xcc_cu + arrays_per_xcc - 1) / arrays_per_xcc;
        n->max_waves_per_simd = ti->max_waves_per_simd;
        n->lds_size_in_kb = ti->lds_size_in_kb;
        n->gds_size_in_kb = ti->gds_size_in_kb;
        n->num_gws = ti->num_gws;
        n->wave_front_size = ti->wave_front_size;
        n->max_slots_scratch_cu = 32;
        /* get_and_inc_gpu_processor_id: GPUs take consecutive id ranges after 0x80001000 */
        n->simd_id_base = *simd_base;
        *simd_base += n->array_count * n->cu_per_simd_array;

        if (n->svm_capable)
                n->capability |= HSA_CAP_SVMAPI_SUPPORTED;
        else
                n->capability &= ~HSA_CAP_SVMAPI_SUPPORTED;

        r = get_uint(g, where, "unique_id", false, 0, UINT64_MAX, &u64, ret_error);
        if (r < 0)
                return r;
        if (r > 0)
                n->unique_id = u64;
        else if (ti->has_unique_id)
                n->unique_id = splitmix64(((uint64_t) n->domain << 32) | ((uint64_t) n->location_id << 16) |
                                          n->device_id) |
                               1;

        fill_gpu_caches(n, ti, arrays_per_xcc);
        return 0;
}

static int parse_root(json_t *root, EmuTopology *t, char **ret_error)
{
        json_t *gpus, *g;
        GpuExplicit ex[EMU_MAX_GPUS] = {};
        uint32_t cpu_clock, simd_base = GPU_PROCESSOR_ID_BASE;
        size_t index;
        int r;

        r = check_keys(root, "topology", top_keys, ret_error);
        if (r < 0)
                return r;

        r = get_string(root, "topology", "name", true, t->name, sizeof t->name, ret_error);
        if (r < 0)
                return r;
        if (json_object_get(root, "description") && !json_is_string(json_object_get(root, "description")))
                return set_error(ret_error, -EINVAL, "topology.description: expected a string");
        r = parse_kfd_version(root, t, ret_error);
        if (r < 0)
                return r;
        t->generation_id = 1;
        r = get_u32(root, "topology", "generation_id", false, 0, UINT32_MAX, &t->generation_id, ret_error);
        if (r < 0)
                return r;
        r = get_size(root, "topology", "system_memory", true, &t->system_memory, ret_error);
        if (r < 0)
                return r;
        if (t->system_memory < (1ull << 20))
                return set_error(ret_error, -ERANGE, "topology.system_memory: must be at least 1M");

        /* kfd_create_vcrat_image_cpu takes oem_id/oem_table_id/oem_revision from the ACPI header */
        t->platform_oem = 0x2020204d4441ull;    /* "AMD   " as the kernel's memcpy into a u64 */
        t->platform_id = 0x5441524320444d41ull; /* "AMD CRAT" */
        t->platform_rev = 1;

        r = parse_cpu(root, t, &cpu_clock, ret_error);
        if (r < 0)
                return r;

        gpus = json_object_get(root, "gpus");
        if (!gpus)
                return set_error(ret_error, -EINVAL, "topology: missing required key \"gpus\"");
        if (!json_is_array(gpus) || json_array_size(gpus) == 0)
                return set_error(ret_error, -EINVAL, "topology.gpus: expected a non-empty array");
        if (json_array_size(gpus) > EMU_MAX_GPUS || json_array_size(gpus) + 1 > EMU_MAX_NODES)
                return set_error(ret_error, -E2BIG, "topology.gpus: more than %d GPUs", EMU_MAX_GPUS);

        t->n_nodes = 1;
        json_array_foreach(gpus, index, g)
        {
                r = parse_gpu(g, (unsigned) index, &t->nodes[t->n_nodes], &ex[index], &simd_base, ret_error);
                if (r < 0)
                        return r;
                t->n_nodes++;
        }

        for (unsigned i = 0; i < t->n_nodes; i++)
                t->nodes[i].max_engine_clk_ccompute = cpu_clock;

        /* explicit ids first, so generated ones step around them like the kernel's collision loop */
        for (unsigned i = 1; i < t->n_nodes; i++) {
                EmuNode *n = &t->nodes[i];

                if (!ex[i - 1].gpu_id)
                        continue;
                if (gpu_id_taken(t, i, n->gpu_id))
                        return set_error(ret_error, -EEXIST, "gpus[%u].gpu_id: duplicate gpu_id %u", i - 1,
                                         n->gpu_id);
        }
        for (unsigned i = 1; i < t->n_nodes; i++) {
                EmuNode *n = &t->nodes[i];
                uint32_t id;

                if (ex[i - 1].gpu_id)
                        continue;
                id = generate_gpu_id(n);
                /* kfd_generate_gpu_id (6.10+): step to the next free non-zero 16-bit value */
                for (unsigned tries = 0;; tries++) {
                        bool taken = id == 0;

                        for (unsigned j = 1; j < t->n_nodes && !taken; j++)
                                if (j != i && t->nodes[j].gpu_id == id && (j < i || ex[j - 1].gpu_id))
                                        taken = true;
                        if (!taken)
                                break;
                        if (tries > 0x10000)
                                return set_error(ret_error, -ENOSPC, "no free gpu_id");
                        id = (id + 1) & 0xffff;
                }
                n->gpu_id = id;
        }

        for (unsigned i = 1; i < t->n_nodes; i++) {
                EmuNode *n = &t->nodes[i];

                if (!ex[i - 1].render_minor)
                        continue;
                for (unsigned j = 1; j < i; j++)
                        if (ex[j - 1].render_minor && t->nodes[j].drm_render_minor == n->drm_render_minor)
                                return set_error(ret_error, -EEXIST,
                                                 "gpus[%u].render_minor: duplicate render minor %u", i - 1,
                                                 n->drm_render_minor);
        }
        for (unsigned i = 1, next = 128; i < t->n_nodes; i++) {
                EmuNode *n = &t->nodes[i];

                if (ex[i - 1].render_minor)
                        continue;
                for (;; next++) {
                        bool taken = false;

                        if (next > 255)
                                return set_error(ret_error, -ENOSPC,
                                                 "gpus[%u]: no free render minor in 128..255", i - 1);
                        for (unsigned j = 1; j < t->n_nodes; j++)
                                if (ex[j - 1].render_minor && t->nodes[j].drm_render_minor == next)
                                        taken = true;
                        if (!taken)
                                break;
                }
                n->drm_render_minor = next++;
        }

        for (unsigned i = 1; i < t->n_nodes; i++)
                for (unsigned j = 1; j < i; j++)
                        if (t->nodes[i].domain == t->nodes[j].domain &&
                            t->nodes[i].location_id == t->nodes[j].location_id)
                                return set_error(ret_error, -EEXIST,
                                                 "gpus[%u].pci: same PCI address as gpus[%u]", i - 1, j - 1);

        return build_links(t, ret_error);
}

static int parse_json(json_t *root, EmuTopology *ret, char **ret_error)
{
        _cleanup_free_ EmuTopology *t = NULL;
        int r;

        t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        r = parse_root(root, t, ret_error);
        if (r < 0)
                return r;
        *ret = *t;
        return 0;
}

int emu_topology_parse(const char *json, EmuTopology *ret, char **ret_error)
{
        json_auto_t *root = NULL;
        json_error_t err;

        if (ret_error)
                *ret_error = NULL;
        if (!json || !ret)
                return -EINVAL;
        root = json_loads(json, JSON_REJECT_DUPLICATES, &err);
        if (!root)
                return set_error(ret_error, -EINVAL, "line %d, column %d: %s", err.line, err.column,
                                 err.text);
        return parse_json(root, ret, ret_error);
}

int emu_topology_load(const char *path, EmuTopology *ret, char **ret_error)
{
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *buf = NULL;
        size_t n;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!path || !ret)
                return -EINVAL;
        f = fopen(path, "re");
        if (!f) {
                r = negative_errno();
                return set_error(ret_error, r, "%s: %s", path, strerror(-r));
        }
        buf = malloc(JSON_MAX_BYTES + 1);
        if (!buf)
                return -ENOMEM;
        n = fread(buf, 1, JSON_MAX_BYTES + 1, f);
        if (ferror(f))
                return set_error(ret_error, -EIO, "%s: read error", path);
        if (n > JSON_MAX_BYTES)
                return set_error(ret_error, -EFBIG, "%s: larger than %u bytes", path, JSON_MAX_BYTES);
        buf[n] = '\0';

        r = emu_topology_parse(buf, ret, ret_error);
        if (r < 0 && ret_error && *ret_error) {
                char *m;

                /* name the file so a test log points at it */
                if (asprintf(&m, "%s: %s", path, *ret_error) >= 0) {
                        free(*ret_error);
                        *ret_error = m;
                }
        }
        return r;
}

/* ---- sysfs writer ---------------------------------------------------------------------------- */

typedef struct Buf {
        char data[PROPERTIES_MAX];
        size_t len;
        bool overflow;
} Buf;

static void buf_printf(Buf *b, const char *fmt, ...) _printf_(2, 3);
static void buf_printf(Buf *b, const char *fmt, ...)
{
        va_list ap;
        int k;

        if (b->overflow)
                return;
        va_start(ap, fmt);
        k = vsnprintf(b->data + b->len, sizeof b->data - b->len, fmt, ap);
        va_end(ap);
        if (k < 0 || (size_t) k >= sizeof b->data - b->len) {
                b->overflow = true;
                return;
        }
        b->len += (size_t) k;
}

/* sysfs_show_32bit_prop / sysfs_show_64bit_prop: "%s %u\n" / "%s %llu\n" */
static void prop32(Buf *b, const char *key, uint32_t v)
{
        buf_printf(b, "%s %" PRIu32 "\n", key, v);
}

static void prop64(Buf *b, const char *key, uint64_t v)
{
        buf_printf(b, "%s %" PRIu64 "\n", key, v);
}

static int mkdir_p(const char *path)
{
        char tmp[PATH_MAX];
        size_t len = strlen(path);

        if (len == 0 || len >= sizeof tmp)
                return -ENAMETOOLONG;
        memcpy(tmp, path, len + 1);
        for (char *p = tmp + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                        return negative_errno();
                *p = '/';
        }
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return negative_errno();
        return 0;
}

static int path_join(char *out, const char *fmt, ...) _printf_(2, 3);
static int path_join(char *out, const char *fmt, ...)
{
        va_list ap;
        int k;

        va_start(ap, fmt);
        k = vsnprintf(out, PATH_MAX, fmt, ap);
        va_end(ap);
        if (k < 0 || k >= PATH_MAX)
                return -ENAMETOOLONG;
        return 0;
}

static int write_file(const char *dir, const char *name, const char *data, size_t len)
{
        char path[PATH_MAX];
        _cleanup_close_ int fd = -EBADF;
        int r;

        r = mkdir_p(dir);
        if (r < 0)
                return r;
        r = path_join(path, "%s/%s", dir, name);
        if (r < 0)
                return r;
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return negative_errno();
        while (len > 0) {
                ssize_t k = write(fd, data, len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                data += k;
                len -= (size_t) k;
        }
        return 0;
}

static int write_buf(const char *dir, const char *name, const Buf *b)
{
        if (b->overflow)
                return -E2BIG;
        return write_file(dir, name, b->data, b->len);
}

static int write_strf(const char *dir, const char *name, const char *fmt, ...) _printf_(3, 4);
static int write_strf(const char *dir, const char *name, const char *fmt, ...)
{
        Buf b = {};
        va_list ap;
        int k;

        va_start(ap, fmt);
        k = vsnprintf(b.data, sizeof b.data, fmt, ap);
        va_end(ap);
        if (k < 0 || (size_t) k >= sizeof b.data)
                return -E2BIG;
        b.len = (size_t) k;
        return write_buf(dir, name, &b);
}

static unsigned count_links(const EmuLink *links, unsigned n, unsigned node)
{
        unsigned c = 0;

        for (unsigned i = 0; i < n; i++)
                if (links[i].node_from == node)
                        c++;
        return c;
}

/* kfd_topology.c node_show, key for key */
static void format_node_properties(const EmuTopology *t, unsigned id, Buf *b)
{
        const EmuNode *n = &t->nodes[id];

        prop32(b, "cpu_cores_count", n->cpu_cores_count);
        prop32(b, "simd_count", n->is_gpu ? n->simd_count : 0);
        prop32(b, "mem_banks_count", 1);
        prop32(b, "caches_count", n->n_caches);
        prop32(b, "io_links_count", count_links(t->io_links, t->n_links, id));
        prop32(b, "p2p_links_count", count_links(t->p2p_links, t->n_p2p_links, id));
        prop32(b, "cpu_core_id_base", n->cpu_core_id_base);
        prop32(b, "simd_id_base", n->simd_id_base);
        prop32(b, "max_waves_per_simd", n->max_waves_per_simd);
        prop32(b, "lds_size_in_kb", n->lds_size_in_kb);
        prop32(b, "gds_size_in_kb", n->gds_size_in_kb);
        prop32(b, "num_gws", n->num_gws);
        prop32(b, "wave_front_size", n->wave_front_size);
        prop32(b, "array_count", n->is_gpu ? n->array_count : 0);
        prop32(b, "simd_arrays_per_engine", n->simd_arrays_per_engine);
        prop32(b, "cu_per_simd_array", n->cu_per_simd_array);
        prop32(b, "simd_per_cu", n->simd_per_cu);
        prop32(b, "max_slots_scratch_cu", n->max_slots_scratch_cu);
        prop32(b, "gfx_target_version", n->gfx_target_version);
        prop32(b, "vendor_id", n->vendor_id);
        prop32(b, "device_id", n->device_id);
        prop32(b, "location_id", n->location_id);
        prop32(b, "domain", n->domain);
        prop32(b, "drm_render_minor", n->drm_render_minor);
        prop64(b, "hive_id", n->hive_id);
        prop32(b, "num_sdma_engines", n->num_sdma_engines);
        prop32(b, "num_sdma_xgmi_engines", n->num_sdma_xgmi_engines);
        prop32(b, "num_sdma_queues_per_engine", n->num_sdma_queues_per_engine);
        prop32(b, "num_cp_queues", n->num_cp_queues);
        if (n->is_gpu) {
                prop32(b, "max_engine_clk_fcompute", n->max_engine_clk_fcompute);
                prop64(b, "local_mem_size", 0); /* hard-coded 0 in node_show: VRAM is in mem_banks */
                prop32(b, "fw_version", n->fw_version);
                prop32(b, "capability", n->capability);
                prop64(b, "debug_prop", n->debug_prop);
                prop32(b, "sdma_fw_version", n->sdma_fw_version);
                prop64(b, "unique_id", n->unique_id);
                prop32(b, "num_xcc", n->num_xcc);
        }
        prop32(b, "max_engine_clk_ccompute", n->max_engine_clk_ccompute);
}

static void format_mem_bank(const EmuNode *n, Buf *b)
{
        uint32_t heap = !n->is_gpu     ? HEAP_TYPE_SYSTEM
                        : n->large_bar ? HEAP_TYPE_FB_PUBLIC
                                       : HEAP_TYPE_FB_PRIVATE;

        prop32(b, "heap_type", heap);
        prop64(b, "size_in_bytes", n->mem_size);
        prop32(b, "flags", 0);
        prop32(b, "width", n->mem_width);
        prop32(b, "mem_clk_max", n->mem_clk_max);
}

static void format_cache(const EmuCache *c, Buf *b)
{
        prop32(b, "processor_id_low", c->processor_id_low);
        prop32(b, "level", c->level);
        prop32(b, "size", c->size_kb);
        prop32(b, "cache_line_size", c->cache_line_size);
        prop32(b, "cache_lines_per_tag", c->cache_lines_per_tag);
        prop32(b, "association", c->association);
        prop32(b, "latency", c->latency);
        prop32(b, "type", c->type);
        /* every bit of every byte, comma-separated, the last comma turned into the newline */
        buf_printf(b, "sibling_map ");
        for (unsigned i = 0; i < EMU_CACHE_SIBLING_MAP_BYTES; i++)
                for (unsigned j = 0; j < 8; j++)
                        buf_printf(b, "%d%s", (c->sibling_map[i] >> j) & 1,
                                   i == EMU_CACHE_SIBLING_MAP_BYTES - 1 && j == 7 ? "\n" : ",");
}

/* iolink_show */
static void format_link(const EmuTopology *t, const EmuLink *l, Buf *b)
{
        prop32(b, "type", l->type);
        prop32(b, "version_major", l->version_major);
        prop32(b, "version_minor", l->version_minor);
        prop32(b, "node_from", l->node_from);
        prop32(b, "node_to", l->node_to);
        prop32(b, "weight", l->weight);
        prop32(b, "min_latency", l->min_latency);
        prop32(b, "max_latency", l->max_latency);
        prop32(b, "min_bandwidth", l->min_bandwidth);
        prop32(b, "max_bandwidth", l->max_bandwidth);
        prop32(b, "recommended_transfer_size", l->recommended_transfer_size);
        if (t->kfd_major > 1 || t->kfd_minor >= 17)
                prop32(b, "recommended_sdma_engine_id_mask", l->recommended_sdma_engine_id_mask);
        prop32(b, "flags", l->flags);
}

static int write_links(const EmuTopology *t, const char *node_dir, const char *sub, const EmuLink *links,
                       unsigned n_links, unsigned node)
{
        char dir[PATH_MAX];
        unsigned idx = 0;
        int r;

        r = path_join(dir, "%s/%s", node_dir, sub);
        if (r < 0)
                return r;
        r = mkdir_p(dir);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < n_links; i++) {
                Buf b = {};

                if (links[i].node_from != node)
                        continue;
                format_link(t, &links[i], &b);
                r = path_join(dir, "%s/%s/%u", node_dir, sub, idx++);
                if (r < 0)
                        return r;
                r = write_buf(dir, "properties", &b);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int write_node(const EmuTopology *t, const char *topo_dir, unsigned id)
{
        const EmuNode *n = &t->nodes[id];
        char node_dir[PATH_MAX], dir[PATH_MAX];
        Buf b = {};
        int r;

        r = path_join(node_dir, "%s/nodes/%u", topo_dir, id);
        if (r < 0)
                return r;
        r = write_strf(node_dir, "gpu_id", "%" PRIu32 "\n", n->is_gpu ? n->gpu_id : 0);
        if (r < 0)
                return r;
        r = write_strf(node_dir, "name", "%s\n", n->is_gpu ? n->name : "");
        if (r < 0)
                return r;
        format_node_properties(t, id, &b);
        r = write_buf(node_dir, "properties", &b);
        if (r < 0)
                return r;

        b = (Buf){};
        format_mem_bank(n, &b);
        r = path_join(dir, "%s/mem_banks/0", node_dir);
        if (r < 0)
                return r;
        r = write_buf(dir, "properties", &b);
        if (r < 0)
                return r;

        r = path_join(dir, "%s/caches", node_dir);
        if (r < 0)
                return r;
        r = mkdir_p(dir);
        if (r < 0)
                return r;
        for (unsigned c = 0; c < n->n_caches; c++) {
                b = (Buf){};
                format_cache(&n->caches[c], &b);
                r = path_join(dir, "%s/caches/%u", node_dir, c);
                if (r < 0)
                        return r;
                r = write_buf(dir, "properties", &b);
                if (r < 0)
                        return r;
        }

        r = write_links(t, node_dir, "io_links", t->io_links, t->n_links, id);
        if (r < 0)
                return r;
        r = write_links(t, node_dir, "p2p_links", t->p2p_links, t->n_p2p_links, id);
        if (r < 0)
                return r;

        /* kfd_build_sysfs_node_entry always creates perf/, empty without IOMMU counters */
        r = path_join(dir, "%s/perf", node_dir);
        if (r < 0)
                return r;
        return mkdir_p(dir);
}

/* The files libdrm reads for a render node: drmParsePciBusInfo, drmParsePciDeviceInfo, drmGetNodeTypeFromFd.
 */
static int write_drm_node(const EmuNode *n, const char *base)
{
        char dev_dir[PATH_MAX], dir[PATH_MAX], slot[32];
        uint32_t bus = n->location_id >> 8, devfn = n->location_id & 0xff;
        int r;

        snprintf(slot, sizeof slot, "%04x:%02x:%02x.%u", n->domain, bus, devfn >> 3, devfn & 7);

        r = write_strf(base, "dev", "%u:%u\n", DRM_MAJOR, n->drm_render_minor);
        if (r < 0)
                return r;
        r = write_strf(base, "uevent", "MAJOR=%u\nMINOR=%u\nDEVNAME=dri/renderD%u\nDEVTYPE=drm_minor\n",
                       DRM_MAJOR, n->drm_render_minor, n->drm_render_minor);
        if (r < 0)
                return r;

        r = path_join(dev_dir, "%s/device", base);
        if (r < 0)
                return r;
        if ((r = write_strf(dev_dir, "vendor", "0x%04x\n", n->vendor_id)) < 0 ||
            (r = write_strf(dev_dir, "device", "0x%04x\n", n->device_id)) < 0 ||
            (r = write_strf(dev_dir, "subsystem_vendor", "0x%04x\n", n->subsystem_vendor_id)) < 0 ||
            (r = write_strf(dev_dir, "subsystem_device", "0x%04x\n", n->subsystem_device_id)) < 0 ||
            (r = write_strf(dev_dir, "revision", "0x%02x\n", n->pci_rev)) < 0 ||
            (r = write_strf(dev_dir, "class", "0x%06x\n", n->pci_class)) < 0)
                return r;
        /* drivers/pci/pci-driver.c pci_uevent */
        r = write_strf(dev_dir, "uevent",
                       "DRIVER=amdgpu\nPCI_CLASS=%X\nPCI_ID=%04X:%04X\nPCI_SUBSYS_ID=%04X:%04X\n"
                       "PCI_SLOT_NAME=%s\nMODALIAS=pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X\n",
                       n->pci_class, n->vendor_id, n->device_id, n->subsystem_vendor_id,
                       n->subsystem_device_id, slot, n->vendor_id, n->device_id, n->subsystem_vendor_id,
                       n->subsystem_device_id, n->pci_class >> 16, (n->pci_class >> 8) & 0xff,
                       n->pci_class & 0xff);
        if (r < 0)
                return r;

        /* device/drm/ existing is what makes libdrm treat the fd as a DRM node */
        r = path_join(dir, "%s/drm/renderD%u", dev_dir, n->drm_render_minor);
        if (r < 0)
                return r;
        r = mkdir_p(dir);
        if (r < 0)
                return r;
        r = path_join(dir, "%s/drm/card%u", dev_dir, n->drm_render_minor - 128);
        if (r < 0)
                return r;
        return mkdir_p(dir);
}

int emu_topology_write_sysfs(const EmuTopology *topo, const char *root)
{
        char topo_dir[PATH_MAX], dir[PATH_MAX];
        Buf b = {};
        int r;

        if (!topo || !root || topo->n_nodes == 0 || topo->n_nodes > EMU_MAX_NODES)
                return -EINVAL;

        r = path_join(topo_dir, "%s/sys/devices/virtual/kfd/kfd/topology", root);
        if (r < 0)
                return r;
        r = write_strf(topo_dir, "generation_id", "%" PRIu32 "\n", topo->generation_id);
        if (r < 0)
                return r;
        prop64(&b, "platform_oem", topo->platform_oem);
        prop64(&b, "platform_id", topo->platform_id);
        prop64(&b, "platform_rev", topo->platform_rev);
        r = write_buf(topo_dir, "system_properties", &b);
        if (r < 0)
                return r;

        for (unsigned i = 0; i < topo->n_nodes; i++) {
                r = write_node(topo, topo_dir, i);
                if (r < 0)
                        return r;
        }

        for (unsigned i = 0; i < topo->n_nodes; i++) {
                const EmuNode *n = &topo->nodes[i];

                if (!n->is_gpu)
                        continue;
                r = path_join(dir, "%s/sys/class/drm/renderD%u", root, n->drm_render_minor);
                if (r < 0)
                        return r;
                r = write_drm_node(n, dir);
                if (r < 0)
                        return r;
                /* real sysfs has a symlink here; a copy keeps the tree relocatable and stat-able */
                r = path_join(dir, "%s/sys/dev/char/%u:%u", root, DRM_MAJOR, n->drm_render_minor);
                if (r < 0)
                        return r;
                r = write_drm_node(n, dir);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- queries --------------------------------------------------------------------------------- */

int emu_topology_node_by_gpu_id(const EmuTopology *topo, uint32_t gpu_id)
{
        if (!topo || gpu_id == 0)
                return -1;
        for (unsigned i = 0; i < topo->n_nodes && i < EMU_MAX_NODES; i++)
                if (topo->nodes[i].is_gpu && topo->nodes[i].gpu_id == gpu_id)
                        return (int) i;
        return -1;
}

static bool has_link(const EmuLink *links, unsigned n, unsigned from, unsigned to)
{
        for (unsigned i = 0; i < n && i < EMU_MAX_LINKS; i++)
                if (links[i].node_from == from && links[i].node_to == to &&
                    !(links[i].flags & IOLINK_FLAGS_NO_PEER_TO_PEER_DMA))
                        return true;
        return false;
}

bool emu_topology_peer_accessible(const EmuTopology *topo, unsigned owner, unsigned peer)
{
        const EmuNode *o, *p;

        if (!topo || owner >= topo->n_nodes || peer >= topo->n_nodes || topo->n_nodes > EMU_MAX_NODES)
                return false;
        if (owner == peer)
                return true;
        o = &topo->nodes[owner];
        p = &topo->nodes[peer];
        if (!o->is_gpu || !p->is_gpu)
                return false;
        if (same_hive(o, p))
                return true;
        /*
         * The kernel creates the p2p link owner→peer exactly when amdgpu_device_is_peer_accessible
         * (owner, peer) holds, i.e. when peer may DMA into owner's BAR; a direct GPU↔GPU io_link
         * (XGMI) counts the same way unless it carries the no-P2P flag.
         */
        return has_link(topo->p2p_links, topo->n_p2p_links, owner, peer) ||
               has_link(topo->io_links, topo->n_links, owner, peer);
}
