/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The render-node side of the emulator: DRM core ioctls, AMDGPU_INFO, and
 * libdrm_amdgpu's own device initialisation on top of them.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <amdgpu.h>
#include <amdgpu_drm.h>
#include <xf86drm.h>

#include "emu-test.h"

#define TOPOLOGY "/sys/devices/virtual/kfd/kfd/topology"

static int render_open(const TestTopo *t, unsigned gpu) {
        char path[64];
        int fd;

        snprintf(path, sizeof(path), "/dev/dri/renderD%u", t->gpus[gpu].render_minor);
        fd = open(path, O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        return fd;
}

static int info(int fd, uint32_t query, void *out, uint32_t size) {
        struct drm_amdgpu_info req = {
                .return_pointer = (uintptr_t) out,
                .return_size = size,
                .query = query,
        };

        return test_ioctl(fd, DRM_IOCTL_AMDGPU_INFO, &req);
}

static uint64_t node_prop(const TestGpu *g, const char *key) {
        char path[256], k[128];
        unsigned long long v;
        FILE *f;

        snprintf(path, sizeof(path), TOPOLOGY "/nodes/%u/properties", g->node);
        f = fopen(path, "re");
        ASSERT_TRUE(f);
        while (fscanf(f, "%127s %llu", k, &v) == 2)
                if (strcmp(k, key) == 0) {
                        fclose(f);
                        return v;
                }
        fclose(f);
        fprintf(stderr, "no key %s in %s\n", key, path);
        abort();
}

static void test_drm_version_two_call_protocol(void) {
        TestTopo t;
        struct drm_version v = {};
        char name[16], date[16], desc[16];
        int fd;

        ASSERT_OK(test_topo_read(&t));
        fd = render_open(&t, 0);

        /* First call: lengths only. */
        ASSERT_OK(test_ioctl(fd, DRM_IOCTL_VERSION, &v));
        ASSERT_EQ(v.version_major, 3);
        ASSERT_TRUE(v.version_minor > 0);
        ASSERT_EQ(v.name_len, strlen("amdgpu"));
        ASSERT_TRUE(v.date_len > 0 && v.date_len < sizeof(date));
        ASSERT_TRUE(v.desc_len > 0 && v.desc_len < sizeof(desc));

        /* Second call: exactly that much is copied, without a terminator. */
        memset(name, 'x', sizeof(name));
        memset(date, 'x', sizeof(date));
        memset(desc, 'x', sizeof(desc));
        v.name = name;
        v.date = date;
        v.desc = desc;
        ASSERT_OK(test_ioctl(fd, DRM_IOCTL_VERSION, &v));
        ASSERT_TRUE(memcmp(name, "amdgpu", 6) == 0);
        ASSERT_EQ(name[6], 'x');
        ASSERT_EQ(date[v.date_len], 'x');

        /* A short buffer gets a prefix; the real length comes back. */
        memset(name, 'x', sizeof(name));
        v.name_len = 3;
        ASSERT_OK(test_ioctl(fd, DRM_IOCTL_VERSION, &v));
        ASSERT_TRUE(memcmp(name, "amdxxx", 6) == 0);
        ASSERT_EQ(v.name_len, 6);

        /* libdrm's own wrapper does the same dance. */
        {
                drmVersionPtr dv = drmGetVersion(fd);

                ASSERT_TRUE(dv);
                ASSERT_EQ(dv->version_major, 3);
                ASSERT_TRUE(strcmp(dv->name, "amdgpu") == 0);
                drmFreeVersion(dv);
        }
        close(fd);
}

static void test_drm_version_bad_buffer_efault(void) {
        TestTopo t;
        struct drm_version v = { .name_len = 6, .name = (char *) 8 };
        int fd;

        ASSERT_OK(test_topo_read(&t));
        fd = render_open(&t, 0);
        ASSERT_ERRNO(test_ioctl(fd, DRM_IOCTL_VERSION, &v), EFAULT);
        close(fd);
}

static void test_drm_get_client(void) {
        TestTopo t;
        struct drm_client c = { .idx = 0 };
        int fd;

        ASSERT_OK(test_topo_read(&t));
        fd = render_open(&t, 0);
        ASSERT_OK(test_ioctl(fd, DRM_IOCTL_GET_CLIENT, &c));
        ASSERT_EQ(c.auth, 1);
        ASSERT_EQ(c.pid, (unsigned long) getpid());
        c = (struct drm_client) { .idx = 1 };
        ASSERT_ERRNO(test_ioctl(fd, DRM_IOCTL_GET_CLIENT, &c), EINVAL);
        close(fd);
}

static void test_drm_unknown_ioctls(void) {
        TestTopo t;
        uint64_t buf[8] = {};
        int fd;

        ASSERT_OK(test_topo_read(&t));
        fd = render_open(&t, 0);
        /* Not a DRM ioctl at all: ENOTTY. A DRM nr nobody answers: EINVAL. */
        ASSERT_ERRNO(test_ioctl(fd, _IOWR('x', 1, uint64_t), buf), ENOTTY);
        ASSERT_ERRNO(test_ioctl(fd, _IOWR('d', 0xff, uint64_t), buf), EINVAL);
        ASSERT_ERRNO(test_ioctl(fd, _IOWR('d', DRM_COMMAND_BASE + 0x50, uint64_t), buf), EINVAL);
        close(fd);
}

static void test_drm_info_accel_working(void) {
        TestTopo t;
        uint32_t v = 0;
        int fd;

        ASSERT_OK(test_topo_read(&t));
        fd = render_open(&t, 0);
        ASSERT_OK(info(fd, AMDGPU_INFO_ACCEL_WORKING, &v, sizeof(v)));
        ASSERT_EQ(v, 1);
        close(fd);
}

static void test_drm_info_needs_return_buffer(void) {
        TestTopo t;
        uint32_t v = 0;
        int fd;

        ASSERT_OK(test_topo_read(&t));
        fd = render_open(&t, 0);
        ASSERT_ERRNO(info(fd, AMDGPU_INFO_ACCEL_WORKING, &v, 0), EINVAL);
        ASSERT_ERRNO(info(fd, AMDGPU_INFO_ACCEL_WORKING, NULL, 4), EINVAL);
        ASSERT_ERRNO(info(fd, 0x7f, &v, sizeof(v)), EINVAL);
        close(fd);
}

static void test_drm_info_return_size_respected(void) {
        TestTopo t;
        uint8_t buf[sizeof(struct drm_amdgpu_info_device) + 16];
        int fd;

        ASSERT_OK(test_topo_read(&t));
        fd = render_open(&t, 0);
        memset(buf, 0xEE, sizeof(buf));
        ASSERT_OK(info(fd, AMDGPU_INFO_DEV_INFO, buf, 8));
        for (size_t i = 8; i < sizeof(buf); i++)
                ASSERT_EQ(buf[i], 0xEE);
        /* A larger buffer gets the struct and nothing more. */
        memset(buf, 0xEE, sizeof(buf));
        ASSERT_OK(info(fd, AMDGPU_INFO_DEV_INFO, buf, sizeof(buf)));
        for (size_t i = sizeof(struct drm_amdgpu_info_device); i < sizeof(buf); i++)
                ASSERT_EQ(buf[i], 0xEE);
        close(fd);
}

static void test_drm_info_dev_info(void) {
        TestTopo t;

        ASSERT_OK(test_topo_read(&t));
        for (unsigned i = 0; i < t.n_gpus; i++) {
                struct drm_amdgpu_info_device d = {};
                int fd = render_open(&t, i);

                ASSERT_OK(info(fd, AMDGPU_INFO_DEV_INFO, &d, sizeof(d)));
                ASSERT_EQ(d.device_id, node_prop(&t.gpus[i], "device_id"));
                ASSERT_TRUE(d.family >= AMDGPU_FAMILY_VI);
                ASSERT_EQ(d.cu_active_number,
                          node_prop(&t.gpus[i], "simd_count") / node_prop(&t.gpus[i], "simd_per_cu"));
                ASSERT_TRUE(d.num_shader_engines > 0);
                ASSERT_EQ(d.max_engine_clock, node_prop(&t.gpus[i], "max_engine_clk_fcompute") * 1000);
                ASSERT_EQ(d.gart_page_size, 4096);
                ASSERT_EQ(d.virtual_address_alignment, 4096);
                ASSERT_TRUE(d.virtual_address_offset < d.virtual_address_max);
                ASSERT_TRUE(d.gpu_counter_freq > 0);
                ASSERT_TRUE(d.vram_type != AMDGPU_VRAM_TYPE_UNKNOWN);
                ASSERT_TRUE(d.vram_bit_width > 0);
                ASSERT_EQ(d.wave_front_size, node_prop(&t.gpus[i], "wave_front_size"));
                close(fd);
        }
}

static void test_drm_info_vram_gtt_and_memory(void) {
        json_t *dump = test_dump();
        uint64_t ttm_limit = (uint64_t) json_integer_value(json_object_get(json_object_get(dump, "system"), "ttm_limit"));
        TestTopo t;

        json_decref(dump);
        ASSERT_TRUE(ttm_limit > 0);
        ASSERT_OK(test_topo_read(&t));
        for (unsigned i = 0; i < t.n_gpus; i++) {
                const TestGpu *g = &t.gpus[i];
                struct drm_amdgpu_info_vram_gtt vg = {};
                struct drm_amdgpu_memory_info m = {};
                uint64_t visible = g->large_bar ? g->vram_size : (256ULL << 20);
                int fd = render_open(&t, i);

                ASSERT_OK(info(fd, AMDGPU_INFO_VRAM_GTT, &vg, sizeof(vg)));
                ASSERT_EQ(vg.vram_size, g->vram_size - (8ULL << 20));
                ASSERT_EQ(vg.vram_cpu_accessible_size, MIN(visible, vg.vram_size));
                /* The GTT manager's size and the limit KFD counts GTT against: the same half of RAM. */
                ASSERT_EQ(vg.gtt_size, ttm_limit);

                ASSERT_OK(info(fd, AMDGPU_INFO_MEMORY, &m, sizeof(m)));
                ASSERT_EQ(m.vram.total_heap_size, g->vram_size);
                ASSERT_EQ(m.vram.usable_heap_size, vg.vram_size);
                ASSERT_EQ(m.vram.max_allocation, m.vram.usable_heap_size * 3 / 4);
                ASSERT_EQ(m.cpu_accessible_vram.total_heap_size, visible);
                ASSERT_EQ(m.gtt.total_heap_size, vg.gtt_size);
                close(fd);
        }
}

static void test_drm_info_usage_tracks_kfd(void) {
        TestKfd k;
        uint64_t v0, v1, g0, g1, h1, h2;
        struct drm_amdgpu_memory_info m = {};

        test_kfd_open(&k, true);
        ASSERT_OK(info(k.render[0], AMDGPU_INFO_VRAM_USAGE, &v0, sizeof(v0)));
        ASSERT_OK(info(k.render[0], AMDGPU_INFO_GTT_USAGE, &g0, sizeof(g0)));
        ASSERT_OK(test_alloc(&k, k.topo.gpus[0].gpu_id, test_va(&k, 64 << 20), 64 << 20, VRAM_FLAGS, &h1, NULL));
        ASSERT_OK(test_alloc(&k, k.topo.gpus[0].gpu_id, test_va(&k, 32 << 20), 32 << 20, GTT_FLAGS, &h2, NULL));
        ASSERT_OK(info(k.render[0], AMDGPU_INFO_VRAM_USAGE, &v1, sizeof(v1)));
        ASSERT_OK(info(k.render[0], AMDGPU_INFO_GTT_USAGE, &g1, sizeof(g1)));
        ASSERT_TRUE(v1 - v0 >= (64ULL << 20));
        ASSERT_TRUE(g1 - g0 >= (32ULL << 20));
        ASSERT_OK(info(k.render[0], AMDGPU_INFO_MEMORY, &m, sizeof(m)));
        ASSERT_EQ(m.vram.heap_usage, v1);
        ASSERT_EQ(m.gtt.heap_usage, g1);
        ASSERT_OK(test_free(&k, h1));
        ASSERT_OK(test_free(&k, h2));
        ASSERT_OK(info(k.render[0], AMDGPU_INFO_VRAM_USAGE, &v1, sizeof(v1)));
        ASSERT_OK(info(k.render[0], AMDGPU_INFO_GTT_USAGE, &g1, sizeof(g1)));
        ASSERT_EQ(v1, v0);
        ASSERT_EQ(g1, g0);
        test_kfd_close(&k);
}

static void test_drm_info_read_mmr_reg(void) {
        TestTopo t;
        uint32_t regs[130];
        struct drm_amdgpu_info req = {
                .return_pointer = (uintptr_t) regs,
                .return_size = sizeof(regs),
                .query = AMDGPU_INFO_READ_MMR_REG,
        };
        int fd;

        ASSERT_OK(test_topo_read(&t));
        fd = render_open(&t, 0);
        memset(regs, 0xEE, sizeof(regs));
        req.read_mmr_reg.dword_offset = 0x263e;
        req.read_mmr_reg.count = 2;
        req.read_mmr_reg.instance = 0xffffffff;
        ASSERT_OK(test_ioctl(fd, DRM_IOCTL_AMDGPU_INFO, &req));
        ASSERT_EQ(regs[0], 0);
        ASSERT_EQ(regs[1], 0);
        ASSERT_EQ(regs[2], 0xEEEEEEEE);
        req.read_mmr_reg.count = 129;
        ASSERT_ERRNO(test_ioctl(fd, DRM_IOCTL_AMDGPU_INFO, &req), EINVAL);
        req.read_mmr_reg.count = 1;
        req.read_mmr_reg.instance = 9;  /* SE 9 */
        ASSERT_ERRNO(test_ioctl(fd, DRM_IOCTL_AMDGPU_INFO, &req), EINVAL);
        close(fd);
}

static void test_drm_info_hw_ip_and_fw(void) {
        TestTopo t;
        struct drm_amdgpu_info_hw_ip ip = {};
        struct drm_amdgpu_info_firmware fw = {};
        struct drm_amdgpu_info req = { .return_pointer = (uintptr_t) &ip, .return_size = sizeof(ip) };
        uint32_t count = 0;
        int fd;

        ASSERT_OK(test_topo_read(&t));
        fd = render_open(&t, 0);

        req.query = AMDGPU_INFO_HW_IP_INFO;
        req.query_hw_ip.type = AMDGPU_HW_IP_COMPUTE;
        ASSERT_OK(test_ioctl(fd, DRM_IOCTL_AMDGPU_INFO, &req));
        ASSERT_TRUE(ip.available_rings != 0);
        ASSERT_EQ(ip.hw_ip_version_major, t.gpus[0].gfx_target_version / 10000);
        req.query_hw_ip.type = AMDGPU_HW_IP_DMA;
        ASSERT_OK(test_ioctl(fd, DRM_IOCTL_AMDGPU_INFO, &req));
        ASSERT_TRUE(ip.available_rings != 0);
        req.query_hw_ip.ip_instance = 1;
        ASSERT_ERRNO(test_ioctl(fd, DRM_IOCTL_AMDGPU_INFO, &req), EINVAL);
        req.query_hw_ip = (typeof(req.query_hw_ip)) { .type = 42 };
        ASSERT_ERRNO(test_ioctl(fd, DRM_IOCTL_AMDGPU_INFO, &req), EINVAL);

        req.query = AMDGPU_INFO_HW_IP_COUNT;
        req.return_pointer = (uintptr_t) &count;
        req.return_size = sizeof(count);
        req.query_hw_ip = (typeof(req.query_hw_ip)) { .type = AMDGPU_HW_IP_GFX };
        ASSERT_OK(test_ioctl(fd, DRM_IOCTL_AMDGPU_INFO, &req));
        ASSERT_EQ(count, 1);

        req = (struct drm_amdgpu_info) {
                .return_pointer = (uintptr_t) &fw, .return_size = sizeof(fw), .query = AMDGPU_INFO_FW_VERSION,
        };
        req.query_fw.fw_type = AMDGPU_INFO_FW_GFX_MEC;
        ASSERT_OK(test_ioctl(fd, DRM_IOCTL_AMDGPU_INFO, &req));
        req.query_fw.ip_instance = 1;
        ASSERT_ERRNO(test_ioctl(fd, DRM_IOCTL_AMDGPU_INFO, &req), EINVAL);
        close(fd);
}

static void test_libdrm_amdgpu_device_initialize(void) {
        TestTopo t;

        ASSERT_OK(test_topo_read(&t));
        for (unsigned i = 0; i < t.n_gpus; i++) {
                amdgpu_device_handle dev = NULL;
                struct amdgpu_gpu_info gi = {};
                struct amdgpu_heap_info heap = {};
                uint32_t major = 0, minor = 0;
                int fd = render_open(&t, i);

                ASSERT_OK(amdgpu_device_initialize(fd, &major, &minor, &dev));
                ASSERT_EQ(major, 3);
                ASSERT_OK(amdgpu_query_gpu_info(dev, &gi));
                ASSERT_EQ(gi.asic_id, node_prop(&t.gpus[i], "device_id"));
                ASSERT_OK(amdgpu_query_heap_info(dev, AMDGPU_GEM_DOMAIN_VRAM, 0, &heap));
                ASSERT_EQ(heap.heap_size, t.gpus[i].vram_size - (8ULL << 20));
                ASSERT_OK(amdgpu_query_heap_info(dev, AMDGPU_GEM_DOMAIN_GTT, 0, &heap));
                ASSERT_TRUE(heap.heap_size > 0);
                (void) amdgpu_get_marketing_name(dev);
                ASSERT_OK(amdgpu_device_deinitialize(dev));
                close(fd);
        }
}

static const TestCase tests[] = {
        TEST(test_drm_version_two_call_protocol),
        TEST(test_drm_version_bad_buffer_efault),
        TEST(test_drm_get_client),
        TEST(test_drm_unknown_ioctls),
        TEST(test_drm_info_accel_working),
        TEST(test_drm_info_needs_return_buffer),
        TEST(test_drm_info_return_size_respected),
        TEST(test_drm_info_dev_info),
        TEST(test_drm_info_vram_gtt_and_memory),
        TEST(test_drm_info_usage_tracks_kfd),
        TEST(test_drm_info_read_mmr_reg),
        TEST(test_drm_info_hw_ip_and_fw),
        TEST(test_libdrm_amdgpu_device_initialize),
};

int main(int argc, char *argv[]) {
        return test_main(tests, ELEMENTSOF(tests), argc, argv);
}
