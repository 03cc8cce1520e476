/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The topology parser against small sysfs-shaped fixture trees written into a
 * temporary directory. The parser is compiled into this test so a hook can
 * bump generation_id between its two reads (a GPU hot-plugged mid-walk).
 */

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_after_walk(const char *root, unsigned attempt);
#define KFD_TOPOLOGY_TEST_AFTER_WALK(root, attempt) test_after_walk((root), (attempt))
#include "kfd-topology.c"

#include "unit-assert.h"

static char fixture[256];
static unsigned n_walks;
static unsigned bump_walks;     /* bump generation_id after this many walks */
static unsigned generation;

_printf_(2, 3)
static void write_file(const char *content, const char *format, ...) {
        char path[PATH_MAX], *slash;
        va_list ap;
        FILE *f;
        int n;

        n = snprintf(path, sizeof(path), "%s/", fixture);
        va_start(ap, format);
        vsnprintf(path + n, sizeof(path) - (size_t) n, format, ap);
        va_end(ap);

        /* mkdir -p of the parent */
        for (slash = strchr(path + strlen(fixture) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
                *slash = '\0';
                ASSERT_TRUE(mkdir(path, 0755) == 0 || errno == EEXIST);
                *slash = '/';
        }

        f = fopen(path, "we");
        ASSERT_NOT_NULL(f);
        ASSERT_TRUE(fputs(content, f) >= 0);
        ASSERT_EQ(fclose(f), 0);
}

static void write_generation(unsigned g) {
        char buf[32];

        snprintf(buf, sizeof(buf), "%u\n", g);
        write_file(buf, "generation_id");
}

static void test_after_walk(const char *root, unsigned attempt) {
        ASSERT_STREQ(root, fixture);
        ASSERT_EQ(attempt, n_walks);
        n_walks++;
        if (n_walks <= bump_walks)
                write_generation(++generation);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path) < 0 ? -errno : 0;
}

static void rm_rf(const char *path) {
        int r;

        ASSERT_TRUE(strlen(path) > 5 && strncmp(path, "/tmp/", 5) == 0);
        r = nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        ASSERT_TRUE(r == 0 || errno == ENOENT);
}

typedef struct GpuFixture {
        unsigned node;
        uint32_t gpu_id;
        uint32_t gfx;
        uint32_t device_id;
        uint32_t location_id;
        uint32_t domain;
        uint32_t render_minor;
        uint64_t hive_id;
        unsigned heap_type;
        uint64_t vram;
        const char *name;
} GpuFixture;

static void write_gpu(const GpuFixture *g) {
        char props[2048];

        /*
         * Key order as the kernel prints it (with the 1.17 key inserted in links
         * and a key appended at the end that this parser does not know).
         */
        snprintf(props, sizeof(props),
                 "cpu_cores_count 0\n"
                 "simd_count 1216\n"
                 "mem_banks_count 1\n"
                 "caches_count 0\n"
                 "io_links_count 1\n"
                 "p2p_links_count 0\n"
                 "gfx_target_version %u\n"
                 "vendor_id 4098\n"
                 "device_id %u\n"
                 "location_id %u\n"
                 "domain %u\n"
                 "drm_render_minor %u\n"
                 "hive_id %" PRIu64 "\n"
                 "num_sdma_engines 2\n"
                 "local_mem_size 0\n"
                 "capability 134217728\n"
                 "debug_prop 0\n"
                 "unique_id %" PRIu64 "\n"
                 "num_xcc 8\n"
                 "max_engine_clk_ccompute 3700\n"
                 "capability2 0x1f\n",
                 g->gfx, g->device_id, g->location_id, g->domain, g->render_minor, g->hive_id,
                 (uint64_t) g->gpu_id * 1000);
        write_file(props, "nodes/%u/properties", g->node);

        snprintf(props, sizeof(props), "%u\n", g->gpu_id);
        write_file(props, "nodes/%u/gpu_id", g->node);
        snprintf(props, sizeof(props), "%s\n", g->name);
        write_file(props, "nodes/%u/name", g->node);

        snprintf(props, sizeof(props),
                 "heap_type %u\nsize_in_bytes %" PRIu64 "\nflags 0\nwidth 8192\nmem_clk_max 1300\n",
                 g->heap_type, g->vram);
        write_file(props, "nodes/%u/mem_banks/0/properties", g->node);
}

static void write_link(unsigned from, unsigned to, unsigned type, uint32_t flags, const char *kind, unsigned index) {
        char props[512];

        snprintf(props, sizeof(props),
                 "type %u\nversion_major 0\nversion_minor 0\nnode_from %u\nnode_to %u\nweight 15\n"
                 "min_latency 0\nmax_latency 0\nmin_bandwidth 0\nmax_bandwidth 64000\n"
                 "recommended_transfer_size 0\nrecommended_sdma_engine_id_mask 0\nflags %u\n",
                 type, from, to, flags);
        write_file(props, "nodes/%u/%s/%u/properties", from, kind, index);
}

static void setup_fixture(void) {
        strcpy(fixture, "/tmp/test-kfd-topology-XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(fixture));
        n_walks = bump_walks = 0;
        generation = 3;
        write_generation(generation);

        write_file("platform_oem 0\nplatform_id 0\nplatform_rev 0\n", "system_properties");

        /* A CPU node. */
        write_file("0\n", "nodes/0/gpu_id");
        write_file("\n", "nodes/0/name");
        write_file("cpu_cores_count 64\nsimd_count 0\ngfx_target_version 0\n", "nodes/0/properties");
        write_file("heap_type 0\nsize_in_bytes 274877906944\n", "nodes/0/mem_banks/0/properties");

        static const GpuFixture gpus[] = {
                { 1, 0x1111, 90402, 0x74a1, 0xc100, 0, 128, 0xabcdef, 1, 206158430208ULL, "gfx942" },
                { 2, 0x2222, 90010, 0x740c, 0x0308, 0, 129, 0xabcdef, 1, 68702699520ULL,  "aldebaran" },
                { 3, 0x3333, 110000, 0x744c, 0x0300, 1, 130, 0, 1, 25753026560ULL, "navi31" },
                { 4, 0x4444, 80003, 0x67df, 0x0f00, 0, 131, 0, 2, 8589934592ULL, "polaris10" },
        };
        for (size_t i = 0; i < ELEMENTSOF(gpus); i++) {
                write_gpu(&gpus[i]);
                write_link(gpus[i].node, 0, KFD_IOLINK_TYPE_PCIEXPRESS, 0x1, "io_links", 0);
        }

        /* 3 can reach 1 over PCIe P2P; 4's link to 1 carries the no-P2P flag. */
        write_link(3, 1, KFD_IOLINK_TYPE_PCIEXPRESS, 0x80000001, "p2p_links", 0);
        write_link(4, 1, KFD_IOLINK_TYPE_PCIEXPRESS, 0x11, "p2p_links", 0);
        /* GPU→CPU p2p links are ignored. */
        write_link(4, 0, KFD_IOLINK_TYPE_PCIEXPRESS, 0x1, "p2p_links", 1);
}

static void teardown_fixture(void) {
        rm_rf(fixture);
}

static void test_parse(void) {
        KfdTopology *t = NULL;
        char *error = NULL;
        const KfdGpu *g;

        setup_fixture();
        ASSERT_OK(kfd_topology_load(&t, fixture, &error));
        ASSERT_NULL(error);
        ASSERT_EQ(n_walks, 1);
        ASSERT_EQ(t->generation_id, 3);
        ASSERT_EQ(t->n_gpus, 4);

        g = &t->gpus[0];
        ASSERT_UEQ(g->gpu_id, 0x1111);
        ASSERT_EQ(g->node_id, 1);
        ASSERT_STREQ(g->target, "gfx942");
        ASSERT_STREQ(g->name, "gfx942");
        ASSERT_UEQ(g->vendor_id, 0x1002);
        ASSERT_UEQ(g->device_id, 0x74a1);
        ASSERT_STREQ(g->pci_location, "0000:c1:00.0");
        ASSERT_EQ(g->drm_render_minor, 128);
        ASSERT_UEQ(g->hive_id, 0xabcdef);
        ASSERT_UEQ(g->unique_id, 0x1111 * 1000);
        ASSERT_EQ(g->num_xcc, 8);
        ASSERT_UEQ(g->capability, 0x08000000);
        ASSERT_UEQ(g->vram_size, 206158430208ULL);
        ASSERT_TRUE(g->large_bar);

        ASSERT_STREQ(t->gpus[1].target, "gfx90a");
        ASSERT_STREQ(t->gpus[1].name, "aldebaran");
        ASSERT_STREQ(t->gpus[1].pci_location, "0000:03:01.0");
        ASSERT_STREQ(t->gpus[2].target, "gfx1100");
        ASSERT_STREQ(t->gpus[2].pci_location, "0001:03:00.0");
        ASSERT_STREQ(t->gpus[3].target, "gfx803");
        ASSERT_FALSE(t->gpus[3].large_bar);
        ASSERT_UEQ(t->gpus[3].vram_size, 8589934592ULL);

        ASSERT_TRUE(kfd_topology_get_gpu(t, 0x3333) == &t->gpus[2]);
        ASSERT_NULL(kfd_topology_get_gpu(t, 0x5555));
        ASSERT_ERROR(kfd_topology_gpu_index(t, 0), ENODEV);

        kfd_topology_free(t);
        teardown_fixture();
}

static void test_peers(void) {
        KfdTopology *t = NULL;

        setup_fixture();
        ASSERT_OK(kfd_topology_load(&t, fixture, NULL));

        /* Same hive. */
        ASSERT_EQ(kfd_topology_peer_link(t, 0, 1), KFD_PEER_LINK_XGMI);
        ASSERT_EQ(kfd_topology_peer_link(t, 1, 0), KFD_PEER_LINK_XGMI);
        ASSERT_UEQ(t->peer_link_types[0 * 4 + 1], KFD_IOLINK_TYPE_XGMI);
        /* PCIe P2P link, either direction. */
        ASSERT_EQ(kfd_topology_peer_link(t, 0, 2), KFD_PEER_LINK_PCIE);
        ASSERT_EQ(kfd_topology_peer_link(t, 2, 0), KFD_PEER_LINK_PCIE);
        ASSERT_UEQ(t->peer_link_types[2 * 4 + 0], KFD_IOLINK_TYPE_PCIEXPRESS);
        /* The no-P2P flag. */
        ASSERT_EQ(kfd_topology_peer_link(t, 0, 3), KFD_PEER_LINK_NONE);
        ASSERT_EQ(kfd_topology_peer_link(t, 3, 0), KFD_PEER_LINK_NONE);
        /* No link at all. */
        ASSERT_EQ(kfd_topology_peer_link(t, 1, 2), KFD_PEER_LINK_NONE);
        ASSERT_EQ(kfd_topology_peer_link(t, 2, 3), KFD_PEER_LINK_NONE);
        for (size_t i = 0; i < 4; i++)
                ASSERT_EQ(kfd_topology_peer_link(t, i, i), KFD_PEER_LINK_SELF);
        ASSERT_EQ(kfd_topology_peer_link(t, 4, 0), _KFD_PEER_LINK_INVALID);

        ASSERT_TRUE(kfd_topology_can_map(t, 0x1111, 0x2222));
        ASSERT_TRUE(kfd_topology_can_map(t, 0x1111, 0x3333));
        ASSERT_FALSE(kfd_topology_can_map(t, 0x1111, 0x4444));
        ASSERT_FALSE(kfd_topology_can_map(t, 0x1111, 0x9999));
        ASSERT_STREQ(kfd_peer_link_to_string(KFD_PEER_LINK_XGMI), "xgmi");

        kfd_topology_free(t);
        teardown_fixture();
}

static void test_xgmi_io_link(void) {
        KfdTopology *t = NULL;

        /* Not in one hive, but a direct XGMI io_link between 3 and 4. */
        setup_fixture();
        write_link(3, 4, KFD_IOLINK_TYPE_XGMI, 0x1, "io_links", 1);
        ASSERT_OK(kfd_topology_load(&t, fixture, NULL));
        ASSERT_EQ(kfd_topology_peer_link(t, 2, 3), KFD_PEER_LINK_XGMI);
        ASSERT_EQ(kfd_topology_peer_link(t, 3, 2), KFD_PEER_LINK_XGMI);
        kfd_topology_free(t);
        teardown_fixture();
}

static void test_target_names(void) {
        static const struct {
                uint32_t version;
                const char *name;
        } table[] = {
                { 90010,  "gfx90a"  },
                { 90402,  "gfx942"  },
                { 110000, "gfx1100" },
                { 80003,  "gfx803"  },
                { 100300, "gfx1030" },
                { 90012,  "gfx90c"  },
                { 90500,  "gfx950"  },
                { 120001, "gfx1201" },
                { 70002,  "gfx702"  },
        };
        char name[KFD_TARGET_MAX];

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                ASSERT_OK(kfd_target_name(table[i].version, name));
                ASSERT_STREQ(name, table[i].name);
        }

        strcpy(name, "unchanged");
        ASSERT_ERROR(kfd_target_name(0, name), EINVAL);
        ASSERT_ERROR(kfd_target_name(91600, name), EINVAL);     /* minor 16 */
        ASSERT_ERROR(kfd_target_name(90016, name), EINVAL);     /* stepping 16 */
        ASSERT_STREQ(name, "unchanged");
}

static void assert_load_fails(int err, const char *needle) {
        KfdTopology *t = NULL;
        char *error = NULL;

        ASSERT_ERROR(kfd_topology_load(&t, fixture, &error), err);
        ASSERT_NULL(t);
        ASSERT_NOT_NULL(error);
        if (!strstr(error, needle)) {
                fprintf(stderr, "error message \"%s\" does not mention \"%s\"\n", error, needle);
                abort();
        }
        free(error);
}

static void test_missing_file(void) {
        char path[PATH_MAX];

        setup_fixture();
        snprintf(path, sizeof(path), "%s/nodes/2/properties", fixture);
        ASSERT_EQ(unlink(path), 0);
        assert_load_fails(ENOENT, "nodes/2/properties");
        teardown_fixture();

        setup_fixture();
        snprintf(path, sizeof(path), "%s/generation_id", fixture);
        ASSERT_EQ(unlink(path), 0);
        assert_load_fails(ENOENT, "generation_id");
        teardown_fixture();

        rm_rf("/tmp/test-kfd-topology-nonexistent");
        strcpy(fixture, "/tmp/test-kfd-topology-nonexistent");
        assert_load_fails(ENOENT, "/tmp/test-kfd-topology-nonexistent/generation_id");
}

static void test_bad_values(void) {
        static const struct {
                const char *properties;
                const char *needle;
        } table[] = {
                /* not decimal */
                { "simd_count 4\ngfx_target_version 0x9000a\n", "gfx_target_version" },
                /* sign and space are not decimal digits */
                { "simd_count -4\n", "simd_count" },
                { "simd_count  4\n", "simd_count" },
                /* 32-bit key overflowing */
                { "simd_count 4294967296\n", "simd_count" },
                /* a required key missing */
                { "simd_count 4\n", "gfx_target_version is missing" },
                /* empty value */
                { "simd_count \n", "simd_count" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                setup_fixture();
                write_file(table[i].properties, "nodes/3/properties");
                assert_load_fails(EBADMSG, table[i].needle);
                teardown_fixture();
        }

        /* A duplicate known key. */
        setup_fixture();
        write_file("heap_type 1\nsize_in_bytes 1\nheap_type 2\n", "nodes/1/mem_banks/0/properties");
        assert_load_fails(EBADMSG, "heap_type appears twice");
        teardown_fixture();

        /* A gfx version with no target name. */
        setup_fixture();
        {
                GpuFixture g = { 2, 0x2222, 91700, 0x740c, 0x0308, 0, 129, 0, 1, 1, "x" };
                write_gpu(&g);
        }
        assert_load_fails(EBADMSG, "91700");
        teardown_fixture();

        /* Two nodes with one gpu_id. */
        setup_fixture();
        write_file("4369\n", "nodes/2/gpu_id");
        assert_load_fails(ENOTUNIQ, "nodes/2/gpu_id");
        teardown_fixture();

        /* A bad generation_id. */
        setup_fixture();
        write_file("three\n", "generation_id");
        assert_load_fails(EINVAL, "generation_id");
        teardown_fixture();
}

static void test_generation_retry(void) {
        KfdTopology *t = NULL;

        /* Changed under the first two walks: the third is taken. */
        setup_fixture();
        bump_walks = 2;
        ASSERT_OK(kfd_topology_load(&t, fixture, NULL));
        ASSERT_EQ(n_walks, 3);
        ASSERT_EQ(t->generation_id, 5);
        ASSERT_EQ(t->n_gpus, 4);
        kfd_topology_free(t);
        teardown_fixture();

        /* Never settling: bounded. */
        setup_fixture();
        bump_walks = UINT_MAX;
        assert_load_fails(EAGAIN, "kept changing");
        ASSERT_EQ(n_walks, TOPOLOGY_MAX_ATTEMPTS);
        teardown_fixture();
}

static void test_cpu_only(void) {
        KfdTopology *t = NULL;

        setup_fixture();
        for (unsigned n = 1; n <= 4; n++) {
                char path[PATH_MAX];
                snprintf(path, sizeof(path), "%s/nodes/%u", fixture, n);
                rm_rf(path);
        }
        ASSERT_OK(kfd_topology_load(&t, fixture, NULL));
        ASSERT_EQ(t->n_gpus, 0);
        ASSERT_FALSE(kfd_topology_can_map(t, 1, 1));
        kfd_topology_free(t);
        teardown_fixture();
}

static void test_cgroup_denied(void) {
        KfdTopology *t = NULL;
        char path[PATH_MAX];

        /* root reads files whatever their mode; the kernel's EPERM cannot be faked that way. */
        if (geteuid() == 0) {
                fprintf(stderr, "running as root, skipping\n");
                return;
        }

        setup_fixture();
        snprintf(path, sizeof(path), "%s/nodes/2/gpu_id", fixture);
        ASSERT_EQ(chmod(path, 0), 0);
        ASSERT_OK(kfd_topology_load(&t, fixture, NULL));
        ASSERT_EQ(t->n_gpus, 3);
        ASSERT_EQ(t->n_denied, 1);
        ASSERT_NULL(kfd_topology_get_gpu(t, 0x2222));
        kfd_topology_free(t);
        teardown_fixture();
}

int main(void) {
        TEST(test_target_names);
        TEST(test_parse);
        TEST(test_peers);
        TEST(test_xgmi_io_link);
        TEST(test_missing_file);
        TEST(test_bad_values);
        TEST(test_generation_retry);
        TEST(test_cpu_only);
        TEST(test_cgroup_denied);
        return EXIT_SUCCESS;
}
