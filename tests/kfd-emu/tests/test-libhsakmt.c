/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Fidelity bar (docs/emulator.md): Debian's unmodified libhsakmt 5.2.3 runs over the
 * emulator. Every call must return HSAKMT_STATUS_SUCCESS; afterwards nothing
 * is left in the kernel but what libhsakmt keeps by design (its render fds
 * and the VMs acquired with them — no buffer, no handle, no mapping).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hsakmt.h>

#include "emu-test.h"

#define ASSERT_HSA(expr)                                                                   \
        do {                                                                               \
                HSAKMT_STATUS _s = (expr);                                                 \
                if (_s != HSAKMT_STATUS_SUCCESS) {                                         \
                        fprintf(stderr, "%s:%d: %s: %s returned HSAKMT_STATUS %d\n", __FILE__, \
                                __LINE__, __func__, #expr, (int) _s);                      \
                        abort();                                                           \
                }                                                                          \
        } while (0)

#define SZ_2M (2ULL << 20)

typedef struct Alloc {
        const char *what;
        void *ptr;
        size_t size;
        uint32_t map_nodes[64];
        unsigned n_map;
} Alloc;

static void fill_and_check(void *p, size_t size, uint8_t seed) {
        uint8_t *b = p;

        for (size_t i = 0; i < size; i += 4096)
                b[i] = (uint8_t) (seed + i / 4096);
        for (size_t i = 0; i < size; i += 4096)
                ASSERT_EQ(b[i], (uint8_t) (seed + i / 4096));
}

static void alloc_one(Alloc *a, const char *what, uint32_t node, size_t size, bool non_paged,
                      bool host_access) {
        HsaMemFlags f = {};

        f.ui32.NonPaged = non_paged;
        f.ui32.HostAccess = host_access;
        f.ui32.PageSize = HSA_PAGE_SIZE_4KB;
        f.ui32.NoSubstitute = 1;
        f.ui32.CoarseGrain = non_paged && node != 0;
        f.ui32.ExecuteAccess = 1;

        *a = (Alloc) { .what = what, .size = size };
        printf("  alloc %s: node %u, %zu bytes\n", what, node, size);
        ASSERT_HSA(hsaKmtAllocMemory(node, size, f, &a->ptr));
        ASSERT_TRUE(a->ptr);
        if (host_access)
                fill_and_check(a->ptr, size, (uint8_t) node);
}

static void map_one(Alloc *a) {
        HsaMemMapFlags mf = {};
        HSAuint64 alt = 0;

        printf("  map %s to %u node(s)\n", a->what, a->n_map);
        ASSERT_HSA(hsaKmtMapMemoryToGPUNodes(a->ptr, a->size, &alt, mf, a->n_map, a->map_nodes));
}

static bool topology_fully_peer_accessible(const TestTopo *t) {
        for (unsigned a = 0; a < t->n_gpus; a++)
                for (unsigned b = 0; b < t->n_gpus; b++)
                        if (!test_topo_peer_accessible(t, a, b))
                                return false;
        return true;
}

/*
 * What may stay after hsaKmtCloseKFD: the VMs (libhsakmt never closes its
 * render fds) and, on nodes with a GPU pair that cannot reach each other,
 * MMIO-remap pages. map_mmio() maps each GPU's page to every GPU in one
 * MAP_MEMORY_TO_GPU; when a peer is not reachable the kernel stops with
 * EINVAL after n_success devices, and libhsakmt's __fmm_release() then
 * FREEs without unmapping, which the kernel refuses with EBUSY. The page is
 * not recorded, so CloseKFD does not release it either; it goes at exit.
 */
static void assert_only_kept_by_design(const TestTopo *t) {
        json_t *d = test_dump_state(), *procs = json_object_get(d, "processes"), *p, *h;
        bool found = false, mmio_may_stay = !topology_fully_peer_accessible(t);
        size_t i, j, n_kept = 0;

        json_array_foreach(procs, i, p) {
                if (json_integer_value(json_object_get(p, "pid")) != getpid())
                        continue;
                found = true;
                ASSERT_EQ(json_array_size(json_object_get(p, "vms")), t->n_gpus);
                json_array_foreach(json_object_get(p, "handles"), j, h) {
                        const char *domain = json_string_value(json_object_get(h, "domain"));

                        printf("  left: handle 0x%llx domain %s, mapped on %zu GPU(s)\n",
                               (unsigned long long) json_integer_value(json_object_get(h, "handle")),
                               strna(domain), json_array_size(json_object_get(h, "mapped")));
                        ASSERT_TRUE(mmio_may_stay);
                        ASSERT_TRUE(domain && streq(domain, "mmio"));
                        ASSERT_TRUE(json_array_size(json_object_get(h, "mapped")) > 0);
                        n_kept++;
                }
        }
        ASSERT_TRUE(found);
        ASSERT_EQ(json_array_size(json_object_get(d, "buffers")), n_kept);
        json_decref(d);
}

static void test_libhsakmt_alloc_map_free(void) {
        HsaSystemProperties sys = {};
        TestTopo t;
        uint64_t avail_before[TEST_MAX_GPUS], avail;
        Alloc allocs[4 * TEST_MAX_GPUS + 2];
        unsigned n_allocs = 0, first_gpu_node = UINT32_MAX;
        uint32_t gpu_nodes[64];
        unsigned n_gpu_nodes = 0;
        int kfd;

        ASSERT_OK(test_topo_read(&t));

        /* Our own fd on the same KFD process, to look at the accounting before and after. */
        kfd = open("/dev/kfd", O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(kfd >= 0);
        for (unsigned g = 0; g < t.n_gpus; g++) {
                struct kfd_ioctl_get_available_memory_args a = { .gpu_id = t.gpus[g].gpu_id };

                ASSERT_OK(test_ioctl(kfd, AMDKFD_IOC_AVAILABLE_MEMORY, &a));
                avail_before[g] = a.available;
        }

        ASSERT_HSA(hsaKmtOpenKFD());
        ASSERT_HSA(hsaKmtAcquireSystemProperties(&sys));
        ASSERT_EQ(sys.NumNodes, t.n_nodes);

        for (uint32_t n = 0; n < sys.NumNodes; n++) {
                HsaNodeProperties np = {};
                HsaMemoryProperties *banks;

                ASSERT_HSA(hsaKmtGetNodeProperties(n, &np));
                printf("node %u: %u CPU cores, %u SIMDs, %u memory banks, gfx %u.%u.%u\n", n, np.NumCPUCores,
                       np.NumFComputeCores, np.NumMemoryBanks, np.EngineId.ui32.Major, np.EngineId.ui32.Minor,
                       np.EngineId.ui32.Stepping);
                ASSERT_TRUE(np.NumMemoryBanks > 0);
                banks = new0(HsaMemoryProperties, np.NumMemoryBanks);
                ASSERT_TRUE(banks);
                ASSERT_HSA(hsaKmtGetNodeMemoryProperties(n, np.NumMemoryBanks, banks));
                if (np.NumFComputeCores > 0) {
                        bool have_fb = false;

                        for (unsigned b = 0; b < np.NumMemoryBanks; b++)
                                if (banks[b].HeapType == HSA_HEAPTYPE_FRAME_BUFFER_PUBLIC ||
                                    banks[b].HeapType == HSA_HEAPTYPE_FRAME_BUFFER_PRIVATE)
                                        have_fb = true;
                        ASSERT_TRUE(have_fb);
                        ASSERT_TRUE(np.EngineId.ui32.Major > 0);
                        gpu_nodes[n_gpu_nodes++] = n;
                        if (first_gpu_node == UINT32_MAX)
                                first_gpu_node = n;
                }
                free(banks);
        }
        ASSERT_EQ(n_gpu_nodes, t.n_gpus);

        /* Clock counters and tile configuration, as rocminfo and kfdtest ask for them. */
        for (unsigned i = 0; i < n_gpu_nodes; i++) {
                HSAuint32 tiles[32], macro[16];
                HsaGpuTileConfig tc = { .TileConfig = tiles, .MacroTileConfig = macro, .NumTileConfigs = 32,
                                        .NumMacroTileConfigs = 16 };
                HsaClockCounters cc = {};

                ASSERT_HSA(hsaKmtGetClockCounters(gpu_nodes[i], &cc));
                ASSERT_EQ(cc.SystemClockFrequencyHz, 1000000000ULL);
                ASSERT_TRUE(cc.GPUClockCounter > 0 && cc.CPUClockCounter > 0 && cc.SystemClockCounter > 0);
                ASSERT_HSA(hsaKmtGetTileConfig(gpu_nodes[i], &tc));
                ASSERT_EQ(tc.NumTileConfigs, 32);
                ASSERT_EQ(tc.NumMacroTileConfigs, 16);
        }

        /* Per GPU: VRAM host-visible (large BAR only, like the kernel) and VRAM private. */
        for (unsigned i = 0; i < n_gpu_nodes; i++) {
                uint32_t node = gpu_nodes[i];

                if (t.gpus[i].large_bar) {
                        Alloc *a = &allocs[n_allocs++];

                        alloc_one(a, "VRAM host-visible", node, SZ_2M, true, true);
                        a->map_nodes[a->n_map++] = node;
                }
                Alloc *a = &allocs[n_allocs++];

                alloc_one(a, "VRAM private", node, 3 * SZ_2M, true, false);
                a->map_nodes[a->n_map++] = node;
        }

        /* Host memory: paged (userptr) and non-paged (GTT), mapped to every GPU. */
        alloc_one(&allocs[n_allocs], "paged host", 0, SZ_2M, false, true);
        memcpy(allocs[n_allocs].map_nodes, gpu_nodes, n_gpu_nodes * sizeof(uint32_t));
        allocs[n_allocs++].n_map = n_gpu_nodes;
        alloc_one(&allocs[n_allocs], "non-paged host", 0, SZ_2M, true, true);
        memcpy(allocs[n_allocs].map_nodes, gpu_nodes, n_gpu_nodes * sizeof(uint32_t));
        allocs[n_allocs++].n_map = n_gpu_nodes;

        for (unsigned i = 0; i < n_allocs; i++)
                map_one(&allocs[i]);
        for (unsigned i = 0; i < n_allocs; i++) {
                printf("  unmap and free %s\n", allocs[i].what);
                ASSERT_HSA(hsaKmtUnmapMemoryToGPU(allocs[i].ptr));
                ASSERT_HSA(hsaKmtFreeMemory(allocs[i].ptr, allocs[i].size));
        }

        ASSERT_HSA(hsaKmtReleaseSystemProperties());
        ASSERT_HSA(hsaKmtCloseKFD());

        /* Nothing left but what libhsakmt keeps by design, and the accounting is back. */
        assert_only_kept_by_design(&t);
        for (unsigned g = 0; g < t.n_gpus; g++) {
                struct kfd_ioctl_get_available_memory_args a = { .gpu_id = t.gpus[g].gpu_id };

                ASSERT_OK(test_ioctl(kfd, AMDKFD_IOC_AVAILABLE_MEMORY, &a));
                avail = a.available;
                ASSERT_EQ(avail, avail_before[g]);
        }

        safe_close(kfd);
}

static const TestCase tests[] = {
        TEST(test_libhsakmt_alloc_map_free),
};

int main(int argc, char *argv[]) {
        return test_main(tests, ELEMENTSOF(tests), argc, argv);
}
