/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Unit tests of the emulator's topology: every shipped topology parses, the sysfs tree has the
 * kernel's key order and format, ids are unique, peer access follows the links, and the parser
 * rejects what it should with a message naming the problem.
 *
 * Usage: test-emu-topology TOPOLOGY_DIR
 */

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "emu-topology.h"
#include "macro.h"

static const char *topology_dir;

#define ASSERT_TRUE(expr)                                                                                  \
        do {                                                                                               \
                if (!(expr)) {                                                                             \
                        fprintf(stderr, "%s:%d: %s: assertion failed: %s\n", __FILE__, __LINE__, __func__, \
                                #expr);                                                                    \
                        abort();                                                                           \
                }                                                                                          \
        } while (0)

#define ASSERT_EQ(a, b)                                                                             \
        do {                                                                                        \
                uint64_t _a = (uint64_t) (a), _b = (uint64_t) (b);                                  \
                if (_a != _b) {                                                                     \
                        fprintf(stderr, "%s:%d: %s: %s == %s failed: %" PRIu64 " != %" PRIu64 "\n", \
                                __FILE__, __LINE__, __func__, #a, #b, _a, _b);                      \
                        abort();                                                                    \
                }                                                                                   \
        } while (0)

#define ASSERT_STREQ(a, b)                                                                          \
        do {                                                                                        \
                const char *_a = (a), *_b = (b);                                                    \
                if (!_a || !_b || strcmp(_a, _b) != 0) {                                            \
                        fprintf(stderr, "%s:%d: %s: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, \
                                __LINE__, __func__, #a, #b, strna(_a), strna(_b));                  \
                        abort();                                                                    \
                }                                                                                   \
        } while (0)

#define ASSERT_OK(expr)                                                                                    \
        do {                                                                                               \
                int _r = (expr);                                                                           \
                if (_r < 0) {                                                                              \
                        fprintf(stderr, "%s:%d: %s: %s failed: %s\n", __FILE__, __LINE__, __func__, #expr, \
                                strerror(-_r));                                                            \
                        abort();                                                                           \
                }                                                                                          \
        } while (0)

static const char *const topology_names[] = {
        "gfx1100-1", "mi250-4", "mi300x-8", "gfx803-1", "mixed-3",
};

/* kfd_topology.c node_show order */
static const char *const node_keys_common[] = {
        "cpu_cores_count",
        "simd_count",
        "mem_banks_count",
        "caches_count",
        "io_links_count",
        "p2p_links_count",
        "cpu_core_id_base",
        "simd_id_base",
        "max_waves_per_simd",
        "lds_size_in_kb",
        "gds_size_in_kb",
        "num_gws",
        "wave_front_size",
        "array_count",
        "simd_arrays_per_engine",
        "cu_per_simd_array",
        "simd_per_cu",
        "max_slots_scratch_cu",
        "gfx_target_version",
        "vendor_id",
        "device_id",
        "location_id",
        "domain",
        "drm_render_minor",
        "hive_id",
        "num_sdma_engines",
        "num_sdma_xgmi_engines",
        "num_sdma_queues_per_engine",
        "num_cp_queues",
};
static const char *const node_keys_gpu[] = {
        "max_engine_clk_fcompute", "local_mem_size", "fw_version", "capability", "debug_prop",
        "sdma_fw_version",         "unique_id",      "num_xcc",
};

static void load(const char *name, EmuTopology *t)
{
        char path[PATH_MAX];
        _cleanup_free_ char *error = NULL;
        int r;

        snprintf(path, sizeof path, "%s/%s.json", topology_dir, name);
        r = emu_topology_load(path, t, &error);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", path, strna(error));
        ASSERT_OK(r);
        ASSERT_TRUE(error == NULL);
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path);
}

static void rm_rf(const char *path)
{
        (void) nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char *make_tmpdir(void)
{
        char *d;

        ASSERT_TRUE(asprintf(&d, "%s/emu-topology-XXXXXX", getenv("TMPDIR") ?: "/tmp") >= 0);
        ASSERT_TRUE(mkdtemp(d) != NULL);
        return d;
}

static char *read_file(const char *fmt, ...) _printf_(1, 2);
static char *read_file(const char *fmt, ...)
{
        char path[PATH_MAX], *buf;
        va_list ap;
        FILE *f;
        size_t n;

        va_start(ap, fmt);
        vsnprintf(path, sizeof path, fmt, ap);
        va_end(ap);
        f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "cannot open %s: %m\n", path);
                abort();
        }
        buf = calloc(1, 8192);
        ASSERT_TRUE(buf);
        n = fread(buf, 1, 8191, f);
        fclose(f);
        ASSERT_TRUE(n < 4096); /* libhsakmt reads one page */
        return buf;
}

/* Splits "key value\n" lines; checks the format and returns the keys in order and the values. */
typedef struct Props {
        unsigned n;
        char key[64][64];
        uint64_t value[64];
} Props;

static void parse_props(const char *text, Props *p)
{
        const char *s = text;

        *p = (Props){};
        ASSERT_TRUE(*s);
        while (*s) {
                const char *sp = strchr(s, ' '), *nl = strchr(s, '\n');
                char *end;

                ASSERT_TRUE(sp && nl && sp < nl);
                ASSERT_TRUE(p->n < 64);
                ASSERT_TRUE((size_t) (sp - s) < sizeof p->key[0]);
                memcpy(p->key[p->n], s, sp - s);
                p->key[p->n][sp - s] = '\0';
                if (streq(p->key[p->n], "sibling_map")) {
                        /* comma-separated bits, the one non-decimal line */
                        for (const char *c = sp + 1; c < nl; c++)
                                ASSERT_TRUE(*c == '0' || *c == '1' || *c == ',');
                        p->value[p->n] = 0;
                } else {
                        /* a decimal, what libhsakmt's "%s %llu" needs: no hex, no sign */
                        ASSERT_TRUE(sp[1] >= '0' && sp[1] <= '9');
                        errno = 0;
                        p->value[p->n] = strtoull(sp + 1, &end, 10);
                        ASSERT_TRUE(errno == 0 && end == nl);
                }
                p->n++;
                s = nl + 1;
        }
}

static uint64_t prop(const Props *p, const char *key)
{
        for (unsigned i = 0; i < p->n; i++)
                if (streq(p->key[i], key))
                        return p->value[i];
        fprintf(stderr, "key %s missing\n", key);
        abort();
}

static bool has_prop(const Props *p, const char *key)
{
        for (unsigned i = 0; i < p->n; i++)
                if (streq(p->key[i], key))
                        return true;
        return false;
}

static void test_parse_all(void)
{
        static const unsigned gpus[] = {1, 4, 8, 1, 3};
        EmuTopology t;

        for (size_t i = 0; i < ELEMENTSOF(topology_names); i++) {
                load(topology_names[i], &t);
                ASSERT_STREQ(t.name, topology_names[i]);
                ASSERT_EQ(t.n_nodes, gpus[i] + 1);
                ASSERT_TRUE(!t.nodes[0].is_gpu);
                ASSERT_EQ(t.nodes[0].gpu_id, 0);
                ASSERT_TRUE(t.nodes[0].cpu_cores_count > 0);
                ASSERT_TRUE(t.nodes[0].n_caches > 0);
                ASSERT_EQ(t.kfd_major, 1);
                ASSERT_EQ(t.kfd_minor, 16);
                for (unsigned n = 1; n < t.n_nodes; n++)
                        ASSERT_TRUE(t.nodes[n].is_gpu);
        }
}

static void test_exactly_these_files(void)
{
        DIR *d = opendir(topology_dir);
        struct dirent *de;
        unsigned found = 0;

        ASSERT_TRUE(d);
        while ((de = readdir(d))) {
                bool known = false;

                if (de->d_name[0] == '.')
                        continue;
                for (size_t i = 0; i < ELEMENTSOF(topology_names); i++) {
                        char want[64];
                        snprintf(want, sizeof want, "%s.json", topology_names[i]);
                        if (streq(want, de->d_name))
                                known = true;
                }
                if (!known)
                        fprintf(stderr, "unexpected file %s\n", de->d_name);
                ASSERT_TRUE(known);
                found++;
        }
        closedir(d);
        ASSERT_EQ(found, ELEMENTSOF(topology_names));
}

static void test_targets(void)
{
        EmuTopology t;

        load("gfx1100-1", &t);
        ASSERT_EQ(t.nodes[1].gfx_target_version, 110000);
        ASSERT_EQ(t.nodes[1].device_id, 0x744C);
        ASSERT_EQ(t.nodes[1].mem_size, 24ull << 30);
        ASSERT_TRUE(t.nodes[1].large_bar);
        ASSERT_TRUE(!t.nodes[1].xnack_capable);
        ASSERT_EQ(t.nodes[1].wave_front_size, 32);
        ASSERT_STREQ(t.nodes[1].target, "gfx1100");
        ASSERT_EQ(t.system_memory, 64ull << 30);

        load("mi250-4", &t);
        for (unsigned n = 1; n < t.n_nodes; n++) {
                ASSERT_STREQ(t.nodes[n].name, "aldebaran");
                ASSERT_STREQ(t.nodes[n].target, "gfx90a");
                ASSERT_EQ(t.nodes[n].gfx_target_version, 90010);
                ASSERT_EQ(t.nodes[n].device_id, 0x740C);
                ASSERT_EQ(t.nodes[n].mem_size, 64ull << 30);
                ASSERT_TRUE(t.nodes[n].xnack_capable);
                ASSERT_TRUE(t.nodes[n].hive_id != 0 && t.nodes[n].hive_id == t.nodes[1].hive_id);
        }

        load("mi300x-8", &t);
        for (unsigned n = 1; n < t.n_nodes; n++) {
                ASSERT_STREQ(t.nodes[n].target, "gfx942");
                ASSERT_EQ(t.nodes[n].gfx_target_version, 90402);
                ASSERT_EQ(t.nodes[n].device_id, 0x74A1);
                ASSERT_EQ(t.nodes[n].mem_size, 192ull << 30);
                ASSERT_EQ(t.nodes[n].num_xcc, 8);
                ASSERT_TRUE(t.nodes[n].hive_id != 0 && t.nodes[n].hive_id == t.nodes[1].hive_id);
        }

        load("gfx803-1", &t);
        ASSERT_STREQ(t.nodes[1].target, "gfx803");
        ASSERT_STREQ(t.nodes[1].name, "polaris10");
        ASSERT_EQ(t.nodes[1].device_id, 0x67DF);
        ASSERT_EQ(t.nodes[1].mem_size, 8ull << 30);
        ASSERT_TRUE(!t.nodes[1].large_bar);
        ASSERT_TRUE(!t.nodes[1].svm_capable);
}

static void test_ids_unique(void)
{
        EmuTopology t;

        for (size_t i = 0; i < ELEMENTSOF(topology_names); i++) {
                load(topology_names[i], &t);
                for (unsigned a = 1; a < t.n_nodes; a++) {
                        ASSERT_TRUE(t.nodes[a].gpu_id != 0 && t.nodes[a].gpu_id <= 0xffff);
                        ASSERT_TRUE(t.nodes[a].drm_render_minor >= 128 &&
                                    t.nodes[a].drm_render_minor <= 255);
                        ASSERT_EQ(emu_topology_node_by_gpu_id(&t, t.nodes[a].gpu_id), a);
                        for (unsigned b = 1; b < a; b++) {
                                ASSERT_TRUE(t.nodes[a].gpu_id != t.nodes[b].gpu_id);
                                ASSERT_TRUE(t.nodes[a].drm_render_minor != t.nodes[b].drm_render_minor);
                        }
                }
                ASSERT_EQ(emu_topology_node_by_gpu_id(&t, 0), -1);
        }
}

static void test_gpu_id_stable(void)
{
        static const char *const fmt =
                "{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[{\"gfx_target_version\":"
                "90010,\"device_id\":\"0x740C\",\"pci\":\"%s\",\"vram\":\"%s\"}]}";
        char json[512];
        EmuTopology a, b, c, d;

        snprintf(json, sizeof json, fmt, "0000:29:00.0", "64G");
        ASSERT_OK(emu_topology_parse(json, &a, NULL));
        ASSERT_OK(emu_topology_parse(json, &b, NULL));
        /* same slot and configuration, same id: ids survive restarts */
        ASSERT_EQ(a.nodes[1].gpu_id, b.nodes[1].gpu_id);
        snprintf(json, sizeof json, fmt, "0000:2c:00.0", "64G");
        ASSERT_OK(emu_topology_parse(json, &c, NULL));
        ASSERT_TRUE(a.nodes[1].gpu_id != c.nodes[1].gpu_id);
        snprintf(json, sizeof json, fmt, "0000:29:00.0", "32G");
        ASSERT_OK(emu_topology_parse(json, &d, NULL));
        ASSERT_TRUE(a.nodes[1].gpu_id != d.nodes[1].gpu_id);
}

static void test_explicit_ids(void)
{
        EmuTopology t;
        _cleanup_free_ char *error = NULL;

        ASSERT_OK(emu_topology_parse("{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":["
                                     "{\"gfx_target_version\":110000,\"device_id\":\"0x744C\",\"pci\":\"03:"
                                     "00.0\",\"vram\":\"1G\","
                                     "\"gpu_id\":\"0x1234\",\"render_minor\":130},"
                                     "{\"gfx_target_version\":110000,\"device_id\":\"0x744C\",\"pci\":\"04:"
                                     "00.0\",\"vram\":\"1G\"}]}",
                                     &t, &error));
        ASSERT_EQ(t.nodes[1].gpu_id, 0x1234);
        ASSERT_EQ(t.nodes[1].drm_render_minor, 130);
        ASSERT_EQ(t.nodes[2].drm_render_minor, 128);
        ASSERT_EQ(emu_topology_node_by_gpu_id(&t, 0x1234), 1);
        ASSERT_EQ(emu_topology_node_by_gpu_id(&t, t.nodes[2].gpu_id), 2);
}

static void test_sizes(void)
{
        static const struct {
                const char *text;
                uint64_t bytes;
        } cases[] = {
                {"\"192G\"", 192ull << 30}, {"\"64M\"", 64ull << 20},   {"\"8GiB\"", 8ull << 30},
                {"\"1T\"", 1ull << 40},     {"1073741824", 1ull << 30}, {"\"4096K\"", 4ull << 20},
        };
        char json[512];
        EmuTopology t;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                snprintf(json, sizeof json,
                         "{\"name\":\"x\",\"system_memory\":%s,\"gpus\":[{\"gfx_target_version\":110000,"
                         "\"device_id\":\"0x744C\",\"pci\":\"0000:03:00.0\",\"vram\":%s}]}",
                         cases[i].text, cases[i].text);
                ASSERT_OK(emu_topology_parse(json, &t, NULL));
                ASSERT_EQ(t.system_memory, cases[i].bytes);
                ASSERT_EQ(t.nodes[1].mem_size, cases[i].bytes);
        }
}

static void test_errors(void)
{
#define GPU "\"gfx_target_version\":110000,\"device_id\":\"0x744C\",\"vram\":\"1G\""
        static const struct {
                const char *json;
                const char *message; /* a substring the error must contain */
        } cases[] = {
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"bogus\":1,\"gpus\":[{" GPU
                 ",\"pci\":\"03:00.0\"}]}",
                 "unknown key \"bogus\""},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[{" GPU
                 ",\"pci\":\"03:00.0\",\"vram_size\":1}]}",
                 "gpus[0]: unknown key \"vram_size\""},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"cpu\":{\"threads\":2},\"gpus\":[{" GPU
                 ",\"pci\":\"03:00.0\"}]}",
                 "cpu: unknown key \"threads\""},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[{" GPU
                 ",\"pci\":\"03:00.0\",\"gpu_id\":7},{" GPU ",\"pci\":\"04:00.0\",\"gpu_id\":7}]}",
                 "duplicate gpu_id 7"},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[{" GPU
                 ",\"pci\":\"03:00.0\",\"gpu_id\":70000}]}",
                 "gpus[0].gpu_id: 70000 is out of range"},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[{" GPU
                 ",\"pci\":\"03:00.0\",\"gpu_id\":0}]}",
                 "gpus[0].gpu_id: 0 is out of range"},
                {"{\"name\":\"x\",\"system_memory\":\"12X\",\"gpus\":[{" GPU ",\"pci\":\"03:00.0\"}]}",
                 "system_memory: bad size"},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[{\"gfx_target_version\":110000,"
                 "\"device_id\":"
                 "\"0x744C\",\"vram\":\"-1G\",\"pci\":\"03:00.0\"}]}",
                 "gpus[0].vram: bad size"},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[{\"gfx_target_version\":110000,"
                 "\"device_id\":"
                 "\"0x744C\",\"vram\":\"99999999999999999999G\",\"pci\":\"03:00.0\"}]}",
                 "gpus[0].vram: bad size"},
                {"{\"name\":\"x\",\"gpus\":[{" GPU ",\"pci\":\"03:00.0\"}]}",
                 "missing required key \"system_memory\""},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[{" GPU "}]}",
                 "gpus[0]: missing required key \"pci\""},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[{" GPU ",\"pci\":\"0000:3:00.0\"}]}",
                 "gpus[0].pci: \"0000:3:00.0\" is not a PCI address"},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[{" GPU ",\"pci\":\"03:00.0\"},{" GPU
                 ",\"pci\":\"03:00.0\"}]}",
                 "gpus[1].pci: same PCI address as gpus[0]"},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[{" GPU
                 ",\"pci\":\"03:00.0\",\"render_minor\":"
                 "127}]}",
                 "render_minor: 127 is out of range"},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[{" GPU
                 ",\"pci\":\"03:00.0\",\"render_minor\":"
                 "129},{" GPU ",\"pci\":\"04:00.0\",\"render_minor\":129}]}",
                 "duplicate render minor 129"},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[{\"gfx_target_version\":120000,"
                 "\"device_id\":"
                 "1,\"vram\":\"1G\",\"pci\":\"03:00.0\"}]}",
                 "no built-in defaults for 120000"},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"kfd_version\":\"2.0\",\"gpus\":[{" GPU
                 ",\"pci\":\"03:00.0\"}]}",
                 "kfd_version: major must be 1"},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[]}",
                 "gpus: expected a non-empty array"},
                {"{\"name\":\"x\",\"name\":\"y\",\"system_memory\":\"1G\",\"gpus\":[{" GPU
                 ",\"pci\":\"03:00.0\"}]}",
                 "duplicate object key"},
                {"{\"name\":\"x\",\"system_memory\":\"1G\",\"gpus\":[{" GPU
                 ",\"pci\":\"03:00.0\",\"large_bar\":1}]}",
                 "gpus[0].large_bar: expected true or false"},
                {"{", "line 1"},
        };
#undef GPU
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *error = NULL;
                EmuTopology t;
                int r;

                r = emu_topology_parse(cases[i].json, &t, &error);
                if (r >= 0 || !error || !strstr(error, cases[i].message)) {
                        fprintf(stderr, "case %zu: r=%d error=\"%s\", want an error containing \"%s\"\n", i,
                                r, strna(error), cases[i].message);
                        abort();
                }
        }
}

static void test_load_missing(void)
{
        _cleanup_free_ char *error = NULL;
        EmuTopology t;

        ASSERT_EQ(emu_topology_load("/nonexistent/topology.json", &t, &error), -ENOENT);
        ASSERT_TRUE(error && strstr(error, "/nonexistent/topology.json"));
}

/* Walks a written tree and checks it against the topology and the kernel's formats. */
static void check_tree(const EmuTopology *t, const char *root)
{
        char topo[PATH_MAX], nodes[PATH_MAX + 8];
        _cleanup_free_ char *gen = NULL, *sys = NULL;
        Props p;
        unsigned n_nodes = 0;
        DIR *d;
        struct dirent *de;

        snprintf(topo, sizeof topo, "%s/sys/devices/virtual/kfd/kfd/topology", root);
        gen = read_file("%s/generation_id", topo);
        ASSERT_STREQ(gen, "1\n");
        sys = read_file("%s/system_properties", topo);
        parse_props(sys, &p);
        ASSERT_EQ(p.n, 3);
        ASSERT_STREQ(p.key[0], "platform_oem");
        ASSERT_STREQ(p.key[1], "platform_id");
        ASSERT_STREQ(p.key[2], "platform_rev");

        /* libhsakmt counts every entry of nodes/ */
        snprintf(nodes, sizeof nodes, "%s/nodes", topo);
        d = opendir(nodes);
        ASSERT_TRUE(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n_nodes++;
        closedir(d);
        ASSERT_EQ(n_nodes, t->n_nodes);

        for (unsigned id = 0; id < t->n_nodes; id++) {
                const EmuNode *n = &t->nodes[id];
                _cleanup_free_ char *gpu_id = NULL, *name = NULL, *props = NULL, *mem = NULL;
                char want[128];
                unsigned k = 0, n_io, n_p2p;
                Props mp;

                gpu_id = read_file("%s/nodes/%u/gpu_id", topo, id);
                snprintf(want, sizeof want, "%u\n", n->is_gpu ? n->gpu_id : 0);
                ASSERT_STREQ(gpu_id, want);
                name = read_file("%s/nodes/%u/name", topo, id);
                snprintf(want, sizeof want, "%s\n", n->is_gpu ? n->name : "");
                ASSERT_STREQ(name, want);

                props = read_file("%s/nodes/%u/properties", topo, id);
                parse_props(props, &p);
                for (size_t i = 0; i < ELEMENTSOF(node_keys_common); i++, k++)
                        ASSERT_STREQ(p.key[k], node_keys_common[i]);
                if (n->is_gpu)
                        for (size_t i = 0; i < ELEMENTSOF(node_keys_gpu); i++, k++)
                                ASSERT_STREQ(p.key[k], node_keys_gpu[i]);
                ASSERT_STREQ(p.key[k], "max_engine_clk_ccompute");
                ASSERT_EQ(p.n, k + 1);

                if (n->is_gpu) {
                        ASSERT_EQ(prop(&p, "cpu_cores_count"), 0);
                        ASSERT_TRUE(prop(&p, "simd_count") > 0);
                        ASSERT_EQ(prop(&p, "local_mem_size"), 0);
                        ASSERT_EQ(prop(&p, "vendor_id"), 4098);
                        ASSERT_EQ(prop(&p, "gfx_target_version"), n->gfx_target_version);
                        ASSERT_EQ(prop(&p, "device_id"), n->device_id);
                        ASSERT_EQ(prop(&p, "drm_render_minor"), n->drm_render_minor);
                        ASSERT_EQ(prop(&p, "hive_id"), n->hive_id);
                        ASSERT_EQ(prop(&p, "num_xcc"), n->num_xcc);
                        ASSERT_EQ(prop(&p, "location_id"), n->location_id);
                        ASSERT_EQ(prop(&p, "lds_size_in_kb"), 64);
                } else {
                        ASSERT_TRUE(prop(&p, "cpu_cores_count") > 0);
                        ASSERT_EQ(prop(&p, "simd_count"), 0);
                        ASSERT_EQ(prop(&p, "gfx_target_version"), 0);
                        ASSERT_EQ(prop(&p, "drm_render_minor"), 0);
                        ASSERT_TRUE(prop(&p, "caches_count") >= 1);
                }
                ASSERT_EQ(prop(&p, "mem_banks_count"), 1);

                mem = read_file("%s/nodes/%u/mem_banks/0/properties", topo, id);
                parse_props(mem, &mp);
                ASSERT_EQ(mp.n, 5);
                ASSERT_STREQ(mp.key[0], "heap_type");
                ASSERT_STREQ(mp.key[1], "size_in_bytes");
                ASSERT_STREQ(mp.key[2], "flags");
                ASSERT_STREQ(mp.key[3], "width");
                ASSERT_STREQ(mp.key[4], "mem_clk_max");
                ASSERT_EQ(prop(&mp, "heap_type"), !n->is_gpu ? 0 : n->large_bar ? 1 : 2);
                ASSERT_EQ(prop(&mp, "size_in_bytes"), n->mem_size);

                for (unsigned c = 0; c < prop(&p, "caches_count"); c++) {
                        _cleanup_free_ char *cache =
                                read_file("%s/nodes/%u/caches/%u/properties", topo, id, c);
                        static const char *const keys[] = {
                                "processor_id_low",    "level",       "size",    "cache_line_size",
                                "cache_lines_per_tag", "association", "latency", "type",
                                "sibling_map"};
                        Props cp;

                        parse_props(cache, &cp);
                        ASSERT_EQ(cp.n, ELEMENTSOF(keys));
                        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                                ASSERT_STREQ(cp.key[i], keys[i]);
                }

                n_io = (unsigned) prop(&p, "io_links_count");
                n_p2p = (unsigned) prop(&p, "p2p_links_count");
                for (unsigned pass = 0; pass < 2; pass++)
                        for (unsigned l = 0; l < (pass ? n_p2p : n_io); l++) {
                                _cleanup_free_ char *link =
                                        read_file("%s/nodes/%u/%s/%u/properties", topo, id,
                                                  pass ? "p2p_links" : "io_links", l);
                                static const char *const keys[] = {
                                        "type",
                                        "version_major",
                                        "version_minor",
                                        "node_from",
                                        "node_to",
                                        "weight",
                                        "min_latency",
                                        "max_latency",
                                        "min_bandwidth",
                                        "max_bandwidth",
                                        "recommended_transfer_size",
                                };
                                Props lp;
                                unsigned to;

                                parse_props(link, &lp);
                                for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                                        ASSERT_STREQ(lp.key[i], keys[i]);
                                if (t->kfd_minor >= 17) {
                                        ASSERT_EQ(lp.n, ELEMENTSOF(keys) + 2);
                                        ASSERT_STREQ(lp.key[ELEMENTSOF(keys)],
                                                     "recommended_sdma_engine_id_mask");
                                } else {
                                        ASSERT_EQ(lp.n, ELEMENTSOF(keys) + 1);
                                        ASSERT_TRUE(!has_prop(&lp, "recommended_sdma_engine_id_mask"));
                                }
                                ASSERT_STREQ(lp.key[lp.n - 1], "flags");
                                /* libhsakmt: INVALID_NODE_UNIT unless node_from is the directory's node */
                                ASSERT_EQ(prop(&lp, "node_from"), id);
                                to = (unsigned) prop(&lp, "node_to");
                                ASSERT_TRUE(to < t->n_nodes && to != id);
                                ASSERT_TRUE(prop(&lp, "flags") & 1);
                                if (pass == 1 || (n->is_gpu && t->nodes[to].is_gpu)) {
                                        /* GPU↔GPU: XGMI within a hive, PCIe p2p otherwise */
                                        bool hive = n->hive_id && n->hive_id == t->nodes[to].hive_id;
                                        ASSERT_TRUE(n->is_gpu && t->nodes[to].is_gpu);
                                        ASSERT_EQ(prop(&lp, "type"), hive ? 11 : 2);
                                        ASSERT_EQ(prop(&lp, "weight"), hive ? 15 : 40);
                                        ASSERT_TRUE(pass == 0 ? hive : !hive);
                                } else {
                                        ASSERT_TRUE(n->is_gpu != t->nodes[to].is_gpu);
                                        ASSERT_EQ(prop(&lp, "type"), 2);
                                        ASSERT_EQ(prop(&lp, "weight"), 20);
                                }
                        }
        }

        for (unsigned id = 1; id < t->n_nodes; id++) {
                const EmuNode *n = &t->nodes[id];
                const char *bases[] = {"class/drm/renderD", "dev/char/226:"};
                char slot[64];

                snprintf(slot, sizeof slot, "PCI_SLOT_NAME=%04x:%02x:%02x.%u\n", n->domain,
                         n->location_id >> 8, (n->location_id >> 3) & 0x1f, n->location_id & 7);
                for (size_t b = 0; b < ELEMENTSOF(bases); b++) {
                        _cleanup_free_ char *dev = NULL, *vendor = NULL, *uevent = NULL, *device = NULL;
                        char dir[PATH_MAX], want[64];
                        struct stat st;

                        snprintf(dir, sizeof dir, "%s/sys/%s%u", root, bases[b], n->drm_render_minor);
                        ASSERT_TRUE(lstat(dir, &st) == 0 && S_ISDIR(st.st_mode));
                        dev = read_file("%s/dev", dir);
                        snprintf(want, sizeof want, "226:%u\n", n->drm_render_minor);
                        ASSERT_STREQ(dev, want);
                        vendor = read_file("%s/device/vendor", dir);
                        ASSERT_STREQ(vendor, "0x1002\n");
                        device = read_file("%s/device/device", dir);
                        snprintf(want, sizeof want, "0x%04x\n", n->device_id);
                        ASSERT_STREQ(device, want);
                        free(read_file("%s/device/subsystem_vendor", dir));
                        free(read_file("%s/device/subsystem_device", dir));
                        free(read_file("%s/device/revision", dir));
                        uevent = read_file("%s/device/uevent", dir);
                        ASSERT_TRUE(strstr(uevent, "DRIVER=amdgpu\n"));
                        ASSERT_TRUE(strstr(uevent, "PCI_CLASS="));
                        snprintf(want, sizeof want, "PCI_ID=1002:%04X\n", n->device_id);
                        ASSERT_TRUE(strstr(uevent, want));
                        ASSERT_TRUE(strstr(uevent, "PCI_SUBSYS_ID="));
                        ASSERT_TRUE(strstr(uevent, slot));
                        strcat(dir, "/device/drm");
                        ASSERT_TRUE(stat(dir, &st) == 0 && S_ISDIR(st.st_mode));
                }
        }
}

static void test_sysfs_all(void)
{
        EmuTopology t;

        for (size_t i = 0; i < ELEMENTSOF(topology_names); i++) {
                _cleanup_free_ char *root = make_tmpdir();

                load(topology_names[i], &t);
                ASSERT_OK(emu_topology_write_sysfs(&t, root));
                check_tree(&t, root);
                /* writing again over the same tree works (kfdemu-run reuses its directory) */
                ASSERT_OK(emu_topology_write_sysfs(&t, root));
                check_tree(&t, root);
                rm_rf(root);
        }
}

static void test_links(void)
{
        EmuTopology t;
        _cleanup_free_ char *root = make_tmpdir();
        _cleanup_free_ char *cpu = NULL;
        Props p;

        /* 4-GPU hive: CPU→4 GPUs, each GPU: CPU + 3 XGMI peers, no p2p links */
        load("mi250-4", &t);
        ASSERT_EQ(t.n_p2p_links, 0);
        ASSERT_EQ(t.n_links, 4 + 4 * 4);
        for (unsigned g = 1; g < t.n_nodes; g++)
                for (unsigned h = 1; h < t.n_nodes; h++)
                        ASSERT_TRUE(emu_topology_peer_accessible(&t, g, h));

        /* 8-GPU hive: 8 + 8 × 8 links */
        load("mi300x-8", &t);
        ASSERT_EQ(t.n_links, 8 + 8 * 8);

        /* small BAR: the kernel adds no CPU→GPU link (kfd_fill_gpu_direct_io_link_to_cpu) */
        load("gfx803-1", &t);
        ASSERT_OK(emu_topology_write_sysfs(&t, root));
        cpu = read_file("%s/sys/devices/virtual/kfd/kfd/topology/nodes/0/properties", root);
        parse_props(cpu, &p);
        ASSERT_EQ(prop(&p, "io_links_count"), 0);
        load("gfx1100-1", &t);
        ASSERT_EQ(t.n_links, 2);
        rm_rf(root);
}

static void test_peer_mixed3(void)
{
        EmuTopology t;

        load("mixed-3", &t);
        ASSERT_EQ(t.n_nodes, 4);
        ASSERT_TRUE(t.nodes[1].hive_id != 0 && t.nodes[1].hive_id == t.nodes[2].hive_id);
        ASSERT_EQ(t.nodes[3].hive_id, 0);
        ASSERT_EQ(t.n_p2p_links, 0);

        ASSERT_TRUE(emu_topology_peer_accessible(&t, 1, 2));
        ASSERT_TRUE(emu_topology_peer_accessible(&t, 2, 1));
        for (unsigned g = 1; g <= 2; g++) {
                ASSERT_TRUE(!emu_topology_peer_accessible(&t, g, 3));
                ASSERT_TRUE(!emu_topology_peer_accessible(&t, 3, g));
        }
        for (unsigned g = 1; g <= 3; g++)
                ASSERT_TRUE(emu_topology_peer_accessible(&t, g, g));
        ASSERT_TRUE(!emu_topology_peer_accessible(&t, 0, 1));
        ASSERT_TRUE(!emu_topology_peer_accessible(&t, 1, 0));
        ASSERT_TRUE(!emu_topology_peer_accessible(&t, 1, 99));
}

static void test_peer_pcie_p2p(void)
{
        /* two large-BAR PCIe GPUs with P2P: p2p links both ways; a small-BAR one is reachable by nobody */
        static const char json[] = "{\"name\":\"p2p\",\"system_memory\":\"64G\",\"gpus\":["
                                   "{\"gfx_target_version\":110000,\"device_id\":\"0x744C\",\"pci\":\"03:00."
                                   "0\",\"vram\":\"24G\"},"
                                   "{\"gfx_target_version\":110000,\"device_id\":\"0x744C\",\"pci\":\"43:00."
                                   "0\",\"vram\":\"24G\"},"
                                   "{\"gfx_target_version\":110000,\"device_id\":\"0x744C\",\"pci\":\"83:00."
                                   "0\",\"vram\":\"24G\","
                                   "\"large_bar\":false}]}";
        _cleanup_free_ char *root = make_tmpdir();
        EmuTopology t;

        ASSERT_OK(emu_topology_parse(json, &t, NULL));
        ASSERT_TRUE(emu_topology_peer_accessible(&t, 1, 2));
        ASSERT_TRUE(emu_topology_peer_accessible(&t, 2, 1));
        /* 3's VRAM is not behind a full BAR; 3 itself may still reach 1 and 2 */
        ASSERT_TRUE(!emu_topology_peer_accessible(&t, 3, 1));
        ASSERT_TRUE(!emu_topology_peer_accessible(&t, 3, 2));
        ASSERT_TRUE(emu_topology_peer_accessible(&t, 1, 3));
        ASSERT_EQ(t.n_p2p_links, 4);
        ASSERT_OK(emu_topology_write_sysfs(&t, root));
        check_tree(&t, root);

        /* the no-P2P flag on a link withdraws access */
        for (unsigned i = 0; i < t.n_p2p_links; i++)
                t.p2p_links[i].flags |= 0x10;
        ASSERT_TRUE(!emu_topology_peer_accessible(&t, 1, 2));
        rm_rf(root);
}

static void test_sdma_mask_version(void)
{
        static const char fmt[] =
                "{\"name\":\"v\",\"system_memory\":\"64G\",%s\"gpus\":[{\"gfx_target_version\":"
                "90010,\"device_id\":\"0x740C\",\"pci\":\"29:00.0\",\"vram\":\"64G\",\"hive_id\":1},"
                "{\"gfx_target_version\":90010,\"device_id\":\"0x740C\",\"pci\":\"2c:00.0\","
                "\"vram\":\"64G\",\"hive_id\":1}]}";
        static const struct {
                const char *version;
                unsigned minor;
                bool mask;
        } cases[] = {
                {"", 16, false},
                {"\"kfd_version\":\"1.16\",", 16, false},
                {"\"kfd_version\":\"1.17\",", 17, true},
                {"\"kfd_version\":\"1.19\",", 19, true},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *root = make_tmpdir();
                _cleanup_free_ char *link = NULL;
                char json[1024];
                EmuTopology t;
                Props p;

                snprintf(json, sizeof json, fmt, cases[i].version);
                ASSERT_OK(emu_topology_parse(json, &t, NULL));
                ASSERT_EQ(t.kfd_minor, cases[i].minor);
                ASSERT_OK(emu_topology_write_sysfs(&t, root));
                check_tree(&t, root);
                link = read_file("%s/sys/devices/virtual/kfd/kfd/topology/nodes/1/io_links/1/properties",
                                 root);
                parse_props(link, &p);
                ASSERT_EQ(prop(&p, "type"), 11);
                ASSERT_EQ(has_prop(&p, "recommended_sdma_engine_id_mask"), cases[i].mask);
                if (cases[i].mask)
                        ASSERT_STREQ(p.key[p.n - 2], "recommended_sdma_engine_id_mask");
                rm_rf(root);
        }
}

int main(int argc, char *argv[])
{
        static const struct {
                const char *name;
                void (*fn)(void);
        } tests[] = {
                {"parse_all", test_parse_all},
                {"exactly_these_files", test_exactly_these_files},
                {"targets", test_targets},
                {"ids_unique", test_ids_unique},
                {"gpu_id_stable", test_gpu_id_stable},
                {"explicit_ids", test_explicit_ids},
                {"sizes", test_sizes},
                {"errors", test_errors},
                {"load_missing", test_load_missing},
                {"sysfs_all", test_sysfs_all},
                {"links", test_links},
                {"peer_mixed3", test_peer_mixed3},
                {"peer_pcie_p2p", test_peer_pcie_p2p},
                {"sdma_mask_version", test_sdma_mask_version},
        };

        if (argc != 2) {
                fprintf(stderr, "usage: %s TOPOLOGY_DIR\n", argv[0]);
                return 2;
        }
        topology_dir = argv[1];

        for (size_t i = 0; i < ELEMENTSOF(tests); i++) {
                tests[i].fn();
                printf("ok - %s\n", tests[i].name);
        }
        return 0;
}
