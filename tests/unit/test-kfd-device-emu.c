/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The kfd layer against the emulated kernel: run under
 *   kfdemu-run --topology tests/kfd-emu/topologies/<name>.json -- test-kfd-device-emu <name>
 * mi300x-8: eight gfx942 GPUs in one XGMI hive; allocate, map to all, unmap, free.
 * mixed-3: two MI250X GCDs in a hive plus a PCIe GPU without P2P; a map of the
 * first GPU's VRAM to all three stops at the third with EINVAL, and the
 * transaction undoes exactly the prefix.
 * gfx803-1, gfx1100-1: one GPU each; gfx803 goes through SET_MEMORY_POLICY.
 * contexts-1.19 / contexts-1.16 (any topology, kfdemu-run --kfd-version): secondary
 * contexts: own handles and VMs, no USERPTR, dma-bufs across contexts, destroyed
 * with their buffers when freed; refused with one clear error below 1.19.
 */

#include <fcntl.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "kfd-device.h"
#include "kfd-ioctl.h"
#include "kfd-uapi.h"
#include "txn.h"
#include "unit-assert.h"

#define VA_BASE 0x400000000000ULL
#define MIB (1024ULL * 1024ULL)

static char last_error[512];
static unsigned n_errors;

static void capture_log(int priority, const char *message, void *userdata) {
        fprintf(stderr, "kfd-device [%d]: %s\n", priority, message);
        if (priority <= LOG_ERR) {
                n_errors++;
                snprintf(last_error, sizeof(last_error), "%s", message);
        }
}

static const KfdDeviceConfig config = {
        .default_cache_policy = KFD_IOC_CACHE_POLICY_COHERENT,
        .log = capture_log,
};

static KfdDevice *open_device(void) {
        KfdDevice *d = NULL;

        ASSERT_OK(kfd_device_new(&d, &config));
        ASSERT_NOT_NULL(d);
        ASSERT_EQ(n_errors, 0);
        return d;
}

static void test_second_context_busy(KfdDevice *d) {
        KfdDevice *d2 = NULL;

        /* The same process, new render-node files: the VMs are already acquired. */
        n_errors = 0;
        ASSERT_ERROR(kfd_device_new(&d2, &config), EBUSY);
        ASSERT_NULL(d2);
        ASSERT_EQ(n_errors, 1);
        ASSERT_NOT_NULL(strstr(last_error, "already acquired by this process with another render-node file"));
        n_errors = 0;
}

static const uint32_t alloc_flags =
        KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE |
        KFD_IOC_ALLOC_MEM_FLAGS_EXECUTABLE | KFD_IOC_ALLOC_MEM_FLAGS_NO_SUBSTITUTE;
/* Constant initializers: the uapi's WRITABLE, (1 << 31), is not shifted at run time. */
static const uint32_t userptr_flags = KFD_IOC_ALLOC_MEM_FLAGS_USERPTR | KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE;

static void test_mi300x(void) {
        KfdDevice *d = open_device();
        const KfdTopology *t = kfd_device_get_topology(d);
        uint32_t ids[8], done = UINT32_MAX, major, minor;
        uint64_t handle, offset, before, after;
        int fd = kfd_device_get_fd(d);

        kfd_device_get_version(d, &major, &minor);
        ASSERT_EQ(major, 1);
        ASSERT_EQ(kfd_device_get_n_gpus(d), 8);
        ASSERT_TRUE(fd >= 0);
        ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);

        for (size_t i = 0; i < 8; i++) {
                const KfdGpu *g = kfd_device_get_gpu(d, i);

                ASSERT_NOT_NULL(g);
                ASSERT_STREQ(g->target, "gfx942");
                ASSERT_UEQ(g->gfx_target_version, 90402);
                ASSERT_TRUE(g->vram_size > 0);
                ASSERT_TRUE(g->hive_id != 0);
                ASSERT_TRUE(kfd_device_find_gpu(d, g->gpu_id) == g);
                ASSERT_TRUE(kfd_device_get_render_fd(d, g->gpu_id) >= 0);
                ASSERT_NOT_NULL(kfd_device_get_amdgpu(d, g->gpu_id));
                ids[i] = g->gpu_id;

                for (size_t j = 0; j < 8; j++)
                        ASSERT_EQ(kfd_topology_peer_link(t, i, j), i == j ? KFD_PEER_LINK_SELF : KFD_PEER_LINK_XGMI);
        }
        ASSERT_ERROR(kfd_device_get_render_fd(d, 0xffff0), ENODEV);

        test_second_context_busy(d);

        ASSERT_OK(kfd_device_require_feature(d, KFD_FEATURE_AVAILABLE_MEMORY, NULL));
        ASSERT_OK(kfd_available_memory(fd, ids[0], &before));
        ASSERT_TRUE(before >= 2 * MIB);

        ASSERT_OK(kfd_alloc(fd, VA_BASE, 2 * MIB, ids[0], alloc_flags, 0, &handle, &offset));
        ASSERT_UEQ(handle >> 32, ids[0]);
        ASSERT_OK(kfd_available_memory(fd, ids[0], &after));
        ASSERT_UEQ(before - after, 2 * MIB);

        ASSERT_OK(kfd_map(fd, handle, ids, 8, &done));
        ASSERT_EQ(done, 8);
        /* Mapping again is a no-op; FREE of a mapped buffer is refused. */
        ASSERT_OK(kfd_map(fd, handle, ids, 8, &done));
        ASSERT_ERROR(kfd_free(fd, handle), EBUSY);

        if (kfd_device_has_feature(d, KFD_FEATURE_EXPORT_DMABUF)) {
                uint64_t size;
                uint32_t owner, flags;
                int dmabuf = -1;

                ASSERT_OK(kfd_export_dmabuf(fd, handle, O_RDWR, &dmabuf));
                ASSERT_TRUE(dmabuf >= 0);
                ASSERT_TRUE(fcntl(dmabuf, F_GETFD) & FD_CLOEXEC);
                ASSERT_OK(kfd_get_dmabuf_info(fd, dmabuf, &size, &owner, &flags));
                ASSERT_UEQ(size, 2 * MIB);
                ASSERT_UEQ(owner, ids[0]);
                ASSERT_TRUE(flags & KFD_IOC_ALLOC_MEM_FLAGS_VRAM);
                ASSERT_EQ(close(dmabuf), 0);
        } else {
                const char *needed = NULL;

                ASSERT_ERROR(kfd_device_require_feature(d, KFD_FEATURE_EXPORT_DMABUF, &needed), EOPNOTSUPP);
                ASSERT_STREQ(needed, "1.12");
        }

        ASSERT_OK(kfd_unmap(fd, handle, ids, 8, &done));
        ASSERT_EQ(done, 8);
        /* UNMAP is not idempotent. */
        ASSERT_ERROR(kfd_unmap(fd, handle, ids, 8, &done), EINVAL);
        ASSERT_EQ(done, 0);

        ASSERT_OK(kfd_free(fd, handle));
        ASSERT_ERROR(kfd_free(fd, handle), EINVAL);

        kfd_device_free(d);
}

typedef struct Mapping {
        int fd;
        uint64_t handle;
        uint32_t ids[8];
        uint32_t n;
} Mapping;

static int undo_free(void *userdata) {
        Mapping *m = userdata;
        return kfd_free(m->fd, m->handle);
}

static int undo_unmap(void *userdata) {
        Mapping *m = userdata;
        uint32_t done;

        return kfd_unmap(m->fd, m->handle, m->ids, m->n, &done);
}

static void test_mixed(void) {
        KfdDevice *d = open_device();
        const KfdTopology *t = kfd_device_get_topology(d);
        _cleanup_txn_ Txn *txn = NULL;
        uint32_t done = UINT32_MAX;
        int fd = kfd_device_get_fd(d);
        Mapping alloc = { .fd = fd }, map = { .fd = fd };
        char *msg = NULL;
        size_t a = SIZE_MAX, b = SIZE_MAX, c = SIZE_MAX;
        uint64_t before, after;
        int r;

        ASSERT_EQ(kfd_device_get_n_gpus(d), 3);

        /* Find the hive pair and the GPU outside it. */
        for (size_t i = 0; i < 3; i++) {
                if (t->gpus[i].hive_id == 0)
                        c = i;
                else if (a == SIZE_MAX)
                        a = i;
                else
                        b = i;
        }
        ASSERT_TRUE(a != SIZE_MAX && b != SIZE_MAX && c != SIZE_MAX);
        ASSERT_EQ(kfd_topology_peer_link(t, a, b), KFD_PEER_LINK_XGMI);
        ASSERT_EQ(kfd_topology_peer_link(t, a, c), KFD_PEER_LINK_NONE);
        ASSERT_FALSE(kfd_topology_can_map(t, t->gpus[a].gpu_id, t->gpus[c].gpu_id));

        ASSERT_OK(kfd_available_memory(fd, t->gpus[a].gpu_id, &before));

        /* Allocate on A, map to A, B, C as one transaction. */
        ASSERT_OK(txn_new(&txn));
        ASSERT_OK(kfd_alloc(fd, VA_BASE, 4 * MIB, t->gpus[a].gpu_id, alloc_flags, 0, &alloc.handle, NULL));
        ASSERT_OK(txn_add_undo(txn, undo_free, &alloc, NULL, "free 4 MiB on GPU 0x%" PRIx64, (uint64_t) t->gpus[a].gpu_id));

        map.handle = alloc.handle;
        map.ids[0] = t->gpus[a].gpu_id;
        map.ids[1] = t->gpus[b].gpu_id;
        map.ids[2] = t->gpus[c].gpu_id;
        r = kfd_map(fd, map.handle, map.ids, 3, &done);
        ASSERT_ERROR(r, EINVAL);
        ASSERT_EQ(done, 2);             /* A and B mapped, C refused */

        map.n = done;
        ASSERT_OK(txn_add_undo(txn, undo_unmap, &map, NULL, "unmap from %" PRIu64 " GPUs", (uint64_t) map.n));
        ASSERT_ERROR(txn_fail(txn, r, map.ids[done], "mapping to GPU 0x%x", map.ids[done]), EINVAL);

        ASSERT_OK(txn_rollback(txn));
        ASSERT_OK(txn_error_to_string(txn, &msg));
        fprintf(stderr, "rolled back: %s\n", msg);
        ASSERT_NOT_NULL(strstr(msg, "failed: Invalid argument"));
        free(msg);

        /* Nothing left: the handle is gone and the VRAM is back. */
        ASSERT_ERROR(kfd_free(fd, alloc.handle), EINVAL);
        ASSERT_OK(kfd_available_memory(fd, t->gpus[a].gpu_id, &after));
        ASSERT_UEQ(after, before);

        /* A map starting at the unreachable GPU reports an empty prefix. */
        ASSERT_OK(kfd_alloc(fd, VA_BASE, 4 * MIB, t->gpus[a].gpu_id, alloc_flags, 0, &alloc.handle, NULL));
        ASSERT_ERROR(kfd_map(fd, alloc.handle, &map.ids[2], 1, &done), EINVAL);
        ASSERT_EQ(done, 0);
        ASSERT_OK(kfd_free(fd, alloc.handle));

        kfd_device_free(d);
}

/* Single-GPU nodes: the device opens (gfx803 takes the SET_MEMORY_POLICY path) and allocates. */
static void test_single(const char *target) {
        KfdDevice *d = open_device();
        const KfdGpu *g;
        uint32_t done;
        uint64_t handle;
        int fd = kfd_device_get_fd(d);

        ASSERT_EQ(kfd_device_get_n_gpus(d), 1);
        g = kfd_device_get_gpu(d, 0);
        ASSERT_STREQ(g->target, target);
        ASSERT_OK(kfd_alloc(fd, VA_BASE, 64 * 1024, g->gpu_id, alloc_flags, 0, &handle, NULL));
        ASSERT_OK(kfd_map(fd, handle, &g->gpu_id, 1, &done));
        ASSERT_OK(kfd_unmap(fd, handle, &g->gpu_id, 1, &done));
        ASSERT_OK(kfd_free(fd, handle));
        kfd_device_free(d);
}

static void test_gfx803(void) {
        test_single("gfx803");
}

static void test_gfx1100(void) {
        test_single("gfx1100");
}

static uint64_t available(int fd, uint32_t gpu_id) {
        uint64_t v = 0;

        ASSERT_OK(kfd_available_memory(fd, gpu_id, &v));
        return v;
}

static void test_contexts(bool supported) {
        KfdDevice *d = open_device();
        KfdContext *a = NULL, *b = NULL;
        const KfdGpu *g = kfd_device_get_gpu(d, 0);
        int fd = kfd_device_get_fd(d), dmabuf = -EBADF;
        uint64_t ha, hb, hp, before;
        uint32_t done;
        void *host;

        if (!supported) {
                n_errors = 0;
                ASSERT_ERROR(kfd_context_new(&a, d), EOPNOTSUPP);
                ASSERT_NULL(a);
                ASSERT_EQ(n_errors, 1);
                ASSERT_NOT_NULL(strstr(last_error, "needs interface 1.19"));
                kfd_device_free(d);
                return;
        }

        before = available(fd, g->gpu_id);
        ASSERT_OK(kfd_context_new(&a, d));
        ASSERT_OK(kfd_context_new(&b, d));
        ASSERT_EQ(n_errors, 0);
        ASSERT_TRUE(kfd_context_get_fd(a) != fd && kfd_context_get_fd(b) != fd);

        /* Own handle spaces and VMs: the same VA mapped in both, each with handle index 0. */
        ASSERT_OK(kfd_alloc(kfd_context_get_fd(a), VA_BASE, 2 * MIB, g->gpu_id, alloc_flags, 0, &ha, NULL));
        ASSERT_OK(kfd_alloc(kfd_context_get_fd(b), VA_BASE, 2 * MIB, g->gpu_id, alloc_flags, 0, &hb, NULL));
        ASSERT_EQ(ha, (uint64_t) g->gpu_id << 32);
        ASSERT_EQ(hb, ha);
        ASSERT_OK(kfd_map(kfd_context_get_fd(a), ha, &g->gpu_id, 1, &done));
        ASSERT_OK(kfd_map(kfd_context_get_fd(b), hb, &g->gpu_id, 1, &done));
        /* Device-wide accounting: both count wherever it is asked. */
        ASSERT_EQ(available(kfd_context_get_fd(a), g->gpu_id), before - 4 * MIB);

        /* USERPTR stays in the primary. */
        host = mmap(NULL, 64 * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(host != MAP_FAILED);
        ASSERT_ERROR(kfd_alloc(kfd_context_get_fd(a), VA_BASE + 4 * MIB, 64 * 1024, g->gpu_id,
                               userptr_flags, (uint64_t) (uintptr_t) host, &hp, NULL), EOPNOTSUPP);
        ASSERT_OK(munmap(host, 64 * 1024));

        /* A dma-buf of a secondary context's buffer imports into the primary. */
        ASSERT_OK(kfd_export_dmabuf(kfd_context_get_fd(a), ha, O_RDWR, &dmabuf));
        ASSERT_OK(kfd_import_dmabuf(fd, dmabuf, g->gpu_id, VA_BASE, &hp));
        ASSERT_OK(kfd_free(fd, hp));
        safe_close(dmabuf);

        /* Freeing a context destroys it with its (still mapped) buffer; the other keeps its own. */
        kfd_context_free(a);
        ASSERT_EQ(available(fd, g->gpu_id), before - 2 * MIB);
        ASSERT_OK(kfd_unmap(kfd_context_get_fd(b), hb, &g->gpu_id, 1, &done));
        ASSERT_OK(kfd_free(kfd_context_get_fd(b), hb));
        kfd_context_free(b);
        ASSERT_EQ(available(fd, g->gpu_id), before);
        kfd_device_free(d);
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: %s mi300x-8|mixed-3|gfx803-1|gfx1100-1 (under kfdemu-run)\n", argv[0]);
                return EXIT_FAILURE;
        }

        if (streq(argv[1], "mi300x-8"))
                TEST(test_mi300x);
        else if (streq(argv[1], "mixed-3"))
                TEST(test_mixed);
        else if (streq(argv[1], "gfx803-1"))
                TEST(test_gfx803);
        else if (streq(argv[1], "gfx1100-1"))
                TEST(test_gfx1100);
        else if (streq(argv[1], "contexts-1.19"))
                test_contexts(true);
        else if (streq(argv[1], "contexts-1.16"))
                test_contexts(false);
        else {
                fprintf(stderr, "unknown topology %s\n", argv[1]);
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}
