/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The emulator checklist (shared/reference/kfd-semantics.md §10): one test per
 * kernel behaviour, each issuing real open/ioctl/mmap calls on /dev/kfd and
 * the render nodes under kfdemu-run. meson runs each test on its own freshly
 * created node: `test-kfd <name>`; without a name every test runs in order.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "emu-test.h"

#define SZ_4K 4096ULL
#define SZ_64K (64ULL << 10)
#define SZ_2M (2ULL << 20)

/* Arguments of the helper programs run by exec (argv[2...]). */
static char **child_args;

/* ---- helpers ---- */

static uint32_t gpu_id(TestKfd *k, unsigned i) {
        ASSERT_TRUE(i < k->topo.n_gpus);
        return k->topo.gpus[i].gpu_id;
}

static void all_gpu_ids(TestKfd *k, uint32_t *ids) {
        for (unsigned i = 0; i < k->topo.n_gpus; i++)
                ids[i] = k->topo.gpus[i].gpu_id;
}

static int export_dmabuf(TestKfd *k, uint64_t handle, int *ret_fd) {
        struct kfd_ioctl_export_dmabuf_args a = { .handle = handle, .flags = O_CLOEXEC | O_RDWR };
        int r;

        r = test_ioctl(k->fd, AMDKFD_IOC_EXPORT_DMABUF, &a);
        if (r < 0)
                return r;
        *ret_fd = (int) a.dmabuf_fd;
        return 0;
}

static int import_dmabuf(TestKfd *k, uint32_t gpu, int fd, uint64_t va, uint64_t *ret_handle) {
        struct kfd_ioctl_import_dmabuf_args a = { .va_addr = va, .gpu_id = gpu, .dmabuf_fd = (uint32_t) fd };
        int r;

        r = test_ioctl(k->fd, AMDKFD_IOC_IMPORT_DMABUF, &a);
        if (r < 0)
                return r;
        *ret_handle = a.handle;
        return 0;
}

static int acquire_vm(TestKfd *k, int fd, int drm_fd, uint32_t gpu) {
        struct kfd_ioctl_acquire_vm_args a = { .drm_fd = (uint32_t) drm_fd, .gpu_id = gpu };

        return test_ioctl(fd, AMDKFD_IOC_ACQUIRE_VM, &a);
}

static int open_render(TestKfd *k, unsigned i) {
        char path[64];
        int fd;

        snprintf(path, sizeof(path), "/dev/dri/renderD%u", k->topo.gpus[i].render_minor);
        fd = open(path, O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        return fd;
}

/* Index of the first large-BAR GPU, for tests that need host-visible VRAM. */
static unsigned large_bar_gpu(TestKfd *k) {
        for (unsigned i = 0; i < k->topo.n_gpus; i++)
                if (k->topo.gpus[i].large_bar)
                        return i;
        fprintf(stderr, "topology has no large-BAR GPU\n");
        abort();
}

static void *cpu_map(int fd, uint64_t offset, size_t size) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t) offset);

        ASSERT_TRUE(p != MAP_FAILED);
        return p;
}

static void fill(void *p, size_t size, uint8_t seed) {
        uint8_t *b = p;

        for (size_t i = 0; i < size; i++)
                b[i] = (uint8_t) (seed + i * 7);
}

static bool check(const void *p, size_t size, uint8_t seed) {
        const uint8_t *b = p;

        for (size_t i = 0; i < size; i++)
                if (b[i] != (uint8_t) (seed + i * 7))
                        return false;
        return true;
}

typedef struct SvmReq {
        struct kfd_ioctl_svm_args h;
        struct kfd_ioctl_svm_attribute a[8];
} SvmReq;

static int svm(TestKfd *k, uint32_t op, uint64_t start, uint64_t size, SvmReq *req, uint32_t nattr) {
        req->h.start_addr = start;
        req->h.size = size;
        req->h.op = op;
        req->h.nattr = nattr;
        /* The real size of the variable struct goes into the cmd (kfd_ioctl honours _IOC_SIZE). */
        return test_ioctl(k->fd,
                          _IOC(_IOC_READ | _IOC_WRITE, AMDKFD_IOCTL_BASE, 0x20,
                               sizeof(req->h) + nattr * sizeof(req->a[0])),
                          req);
}

static int svm_set1(TestKfd *k, uint64_t start, uint64_t size, uint32_t type, uint32_t value) {
        SvmReq req = { .a[0] = { .type = type, .value = value } };

        return svm(k, KFD_IOCTL_SVM_OP_SET_ATTR, start, size, &req, 1);
}

static void *anon_pages(size_t size) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        ASSERT_TRUE(p != MAP_FAILED);
        return p;
}

static uint32_t svm_get1(TestKfd *k, uint64_t start, uint64_t size, uint32_t type) {
        SvmReq req = { .a[0] = { .type = type } };

        ASSERT_OK(svm(k, KFD_IOCTL_SVM_OP_GET_ATTR, start, size, &req, 1));
        return req.a[0].value;
}

/* The SVM ranges of this process's primary context, from the dump (a new reference). */
static json_t *dump_svm(void) {
        json_t *d = test_dump(), *p, *ret = NULL;
        size_t i;

        json_array_foreach(json_object_get(d, "processes"), i, p)
                if (json_integer_value(json_object_get(p, "pid")) == getpid() &&
                    !json_is_true(json_object_get(p, "secondary")))
                        ret = json_incref(json_object_get(p, "svm"));
        json_decref(d);
        ASSERT_TRUE(json_is_array(ret));
        return ret;
}

static void assert_svm_range(json_t *svm, size_t i, uint64_t start, uint64_t size, uint32_t preferred_loc) {
        json_t *r = json_array_get(svm, i);

        ASSERT_TRUE(r);
        ASSERT_EQ(json_integer_value(json_object_get(r, "start")), start);
        ASSERT_EQ(json_integer_value(json_object_get(r, "size")), size);
        ASSERT_EQ(json_integer_value(json_object_get(r, "preferred_loc")), preferred_loc);
}

static size_t n_svm_ranges(void) {
        json_t *s = dump_svm();
        size_t n = json_array_size(s);

        json_decref(s);
        return n;
}

/* seen/fired of the i-th armed fault, from the dump. */
static void fault_counters(size_t i, uint64_t *ret_seen, uint64_t *ret_fired) {
        json_t *d = test_dump(), *f = json_array_get(json_object_get(d, "faults"), i);

        ASSERT_TRUE(f);
        *ret_seen = (uint64_t) json_integer_value(json_object_get(f, "seen"));
        *ret_fired = (uint64_t) json_integer_value(json_object_get(f, "fired"));
        json_decref(d);
}

static char *fault_spec(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fault_spec(const char *fmt, ...) {
        static char buf[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        return buf;
}

/* Run this binary again as a helper program (exec: a fresh mm, hence a fresh KFD process). */
static pid_t spawn_self(const char *helper, int keep_fd) {
        char fdbuf[16];
        pid_t pid;

        snprintf(fdbuf, sizeof(fdbuf), "%d", keep_fd);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                if (keep_fd >= 0)
                        (void) fcntl(keep_fd, F_SETFD, 0);
                execl("/proc/self/exe", "test-kfd", helper, fdbuf, (char *) NULL);
                _exit(127);
        }
        return pid;
}

static int wait_exit(pid_t pid) {
        int status;

        while (waitpid(pid, &status, 0) < 0)
                ASSERT_TRUE(errno == EINTR);
        if (WIFSIGNALED(status)) {
                fprintf(stderr, "helper %d killed by signal %d\n", (int) pid, WTERMSIG(status));
                return 128 + WTERMSIG(status);
        }
        return WEXITSTATUS(status);
}

/* ---- §1 dispatcher ---- */

static void test_get_version(void) {
        TestKfd k;
        struct kfd_ioctl_get_version_args v = {};

        test_kfd_open(&k, false);
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_VERSION, &v));
        ASSERT_EQ(v.major_version, 1);
        ASSERT_TRUE(v.minor_version >= 1);
        test_kfd_close(&k);
}

static void test_unknown_nr_einval(void) {
        TestKfd k;
        uint64_t buf[8] = {};

        test_kfd_open(&k, true);
        /* Not ENOTTY: kfd_ioctl answers nrs outside its table with EINVAL. */
        ASSERT_ERRNO(test_ioctl(k.fd, _IOWR('K', 0x7f, uint64_t), buf), EINVAL);
        ASSERT_ERRNO(test_ioctl(k.fd, _IOWR('K', 0x00, uint64_t), buf), EINVAL);
        ASSERT_ERRNO(test_ioctl(k.fd, _IOWR('K', 0x90, uint64_t), buf), EINVAL);
        test_kfd_close(&k);
}

static void test_nr_0x28_not_batch_alloc(void) {
        TestKfd k;
        uint64_t buf[6] = {};

        /* The batch userptr proposal was not merged: nr 0x28 must not allocate anything. */
        test_kfd_open(&k, true);
        ASSERT_ERRNO(test_ioctl(k.fd, _IOC(_IOC_READ | _IOC_WRITE, 'K', 0x28, 48), buf), EINVAL);
        test_kfd_close(&k);
}

static void test_dispatch_by_nr_only(void) {
        TestKfd k;
        struct kfd_ioctl_get_version_args v = {};

        /* The kernel takes the direction from its own table: a caller's _IOWR GET_VERSION works. */
        test_kfd_open(&k, false);
        ASSERT_OK(test_ioctl(k.fd, _IOWR('K', 0x01, struct kfd_ioctl_get_version_args), &v));
        ASSERT_EQ(v.major_version, 1);
        test_kfd_close(&k);
}

static void test_short_struct_zero_filled(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[1];
        struct kfd_ioctl_map_memory_to_gpu_args m;

        test_kfd_open(&k, true);
        ids[0] = gpu_id(&k, 0);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        /* n_success sits beyond a 20-byte cmd: the kernel reads it as 0 and writes nothing back there. */
        m = (struct kfd_ioctl_map_memory_to_gpu_args) {
                .handle = h, .device_ids_array_ptr = (uintptr_t) ids, .n_devices = 1, .n_success = 99,
        };
        ASSERT_OK(test_ioctl(k.fd, _IOC(_IOC_READ | _IOC_WRITE, 'K', 0x18, 20), &m));
        ASSERT_EQ(m.n_success, 99);
        ASSERT_OK(test_unmap(&k, h, ids, 1, NULL));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_long_struct_copied_verbatim(void) {
        TestKfd k;
        struct {
                struct kfd_ioctl_alloc_memory_of_gpu_args a;
                uint64_t tail[2];
        } big = {};

        test_kfd_open(&k, true);
        big.a = (struct kfd_ioctl_alloc_memory_of_gpu_args) {
                .va_addr = test_va(&k, SZ_64K), .size = SZ_64K, .gpu_id = gpu_id(&k, 0), .flags = VRAM_FLAGS,
        };
        big.tail[0] = 0x1122334455667788ULL;
        big.tail[1] = 0x99aabbccddeeff00ULL;
        ASSERT_OK(test_ioctl(k.fd, _IOC(_IOC_READ | _IOC_WRITE, 'K', 0x16, sizeof(big)), &big));
        ASSERT_EQ(big.tail[0], 0x1122334455667788ULL);
        ASSERT_EQ(big.tail[1], 0x99aabbccddeeff00ULL);
        ASSERT_OK(test_free(&k, big.a.handle));
        test_kfd_close(&k);
}

static void test_copy_back_on_failure_n_success(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[2], n = 0;

        /* An unknown peer at index 1: EINVAL, and n_success = 1 is copied back all the same. */
        test_kfd_open(&k, true);
        ids[0] = gpu_id(&k, 0);
        ids[1] = 0xfff0;
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        ASSERT_ERRNO(test_map(&k, h, ids, 2, &n), EINVAL);
        ASSERT_EQ(n, 1);
        ASSERT_OK(test_unmap(&k, h, ids, 1, NULL));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

/* ---- §1.2 process identity ---- */

static void test_ioctl_from_forked_child_ebadf(void) {
        TestKfd k;
        pid_t pid;

        test_kfd_open(&k, true);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                struct kfd_ioctl_get_version_args v = {};
                uint64_t h;

                if (test_ioctl(k.fd, AMDKFD_IOC_GET_VERSION, &v) != -EBADF)
                        _exit(1);
                if (test_alloc_vram(&k, 0, SZ_64K, &h) != -EBADF)
                        _exit(2);
                _exit(0);
        }
        ASSERT_EQ(wait_exit(pid), 0);
        /* The parent's context is untouched. */
        {
                uint64_t h;

                ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
                ASSERT_OK(test_free(&k, h));
        }
        test_kfd_close(&k);
}

static void test_forked_child_own_kfd_is_empty(void) {
        TestKfd k;
        uint64_t h;
        pid_t pid;

        test_kfd_open(&k, true);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                TestKfd c;
                struct kfd_ioctl_free_memory_of_gpu_args f = { .handle = h };

                /* A new mm is a new KFD process: no VM, none of the parent's handles. */
                test_kfd_open(&c, false);
                if (test_ioctl(c.fd, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &f) != -EINVAL)
                        _exit(1);
                if (test_alloc_vram(&c, 0, SZ_64K, &h) != -ENODEV)
                        _exit(2);
                _exit(0);
        }
        ASSERT_EQ(wait_exit(pid), 0);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_multiple_opens_share_state(void) {
        TestKfd k;
        uint64_t h;
        int fd2;
        struct kfd_ioctl_free_memory_of_gpu_args f;

        test_kfd_open(&k, true);
        fd2 = open("/dev/kfd", O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(fd2 >= 0);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        f.handle = h;
        ASSERT_OK(test_ioctl(fd2, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &f));
        ASSERT_ERRNO(test_free(&k, h), EINVAL);
        safe_close(fd2);
        test_kfd_close(&k);
}

static void test_close_kfd_keeps_buffers(void) {
        TestKfd k;
        uint64_t h, before, during, after;

        test_kfd_open(&k, true);
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &before));
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_2M, &h));
        safe_close(k.fd);
        /* The primary context lives with the mm: a new fd finds the buffer and its VM. */
        k.fd = open("/dev/kfd", O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(k.fd >= 0);
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &during));
        ASSERT_EQ(during, before - SZ_2M);
        ASSERT_OK(test_free(&k, h));
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &after));
        ASSERT_EQ(after, before);
        test_kfd_close(&k);
}

/* ---- §1.2/§2.4 per-GPU pdds and apertures ---- */

static void test_apertures_every_gpu_without_vm(void) {
        TestKfd k;
        struct kfd_process_device_apertures ap[TEST_MAX_GPUS] = {};
        struct kfd_ioctl_get_process_apertures_new_args a = {};

        test_kfd_open(&k, false);
        /* num_of_nodes = 0 asks for the count. */
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_PROCESS_APERTURES_NEW, &a));
        ASSERT_EQ(a.num_of_nodes, k.topo.n_gpus);

        a.kfd_process_device_apertures_ptr = (uintptr_t) ap;
        a.num_of_nodes = k.topo.n_gpus;
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_PROCESS_APERTURES_NEW, &a));
        ASSERT_EQ(a.num_of_nodes, k.topo.n_gpus);
        for (unsigned i = 0; i < k.topo.n_gpus; i++) {
                ASSERT_EQ(ap[i].gpu_id, gpu_id(&k, i));
                ASSERT_EQ(ap[i].gpuvm_base, 0x1000000ULL);
                ASSERT_EQ(ap[i].lds_base, 1ULL << 48);
                ASSERT_EQ(ap[i].lds_limit, (1ULL << 48) | 0xFFFFFFFFULL);
                ASSERT_EQ(ap[i].scratch_base, 2ULL << 48);
                ASSERT_EQ(ap[i].scratch_limit, (2ULL << 48) | 0xFFFFFFFFULL);
                ASSERT_TRUE(ap[i].gpuvm_limit > ap[i].gpuvm_base);
        }

        /* A smaller buffer gets the first entries, in topology order. */
        if (k.topo.n_gpus > 1) {
                memset(ap, 0, sizeof(ap));
                a.num_of_nodes = 1;
                ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_PROCESS_APERTURES_NEW, &a));
                ASSERT_EQ(a.num_of_nodes, 1);
                ASSERT_EQ(ap[0].gpu_id, gpu_id(&k, 0));
                ASSERT_EQ(ap[1].gpu_id, 0);
        }
        test_kfd_close(&k);
}

static void test_available_memory_unknown_gpu_einval(void) {
        TestKfd k;
        uint64_t avail;

        test_kfd_open(&k, false);
        /* No VM needed for a known GPU; an unknown or zero id is EINVAL. */
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &avail));
        ASSERT_TRUE(avail > 0);
        ASSERT_EQ(avail % SZ_2M, 0);
        ASSERT_ERRNO(test_available(&k, 0, &avail), EINVAL);
        ASSERT_ERRNO(test_available(&k, 0xfff0, &avail), EINVAL);
        test_kfd_close(&k);
}

/* ---- §2.2 ACQUIRE_VM ---- */

static void test_acquire_vm_bad_fd_einval(void) {
        TestKfd k;

        test_kfd_open(&k, false);
        ASSERT_ERRNO(acquire_vm(&k, k.fd, 987, gpu_id(&k, 0)), EINVAL);
        test_kfd_close(&k);
}

static void test_acquire_vm_non_amdgpu_file_einval(void) {
        TestKfd k;
        int null_fd;

        test_kfd_open(&k, false);
        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(null_fd >= 0);
        ASSERT_ERRNO(acquire_vm(&k, k.fd, null_fd, gpu_id(&k, 0)), EINVAL);
        /* /dev/kfd is not a DRM file either. */
        ASSERT_ERRNO(acquire_vm(&k, k.fd, k.fd, gpu_id(&k, 0)), EINVAL);
        safe_close(null_fd);
        test_kfd_close(&k);
}

static void test_acquire_vm_unknown_gpu_einval(void) {
        TestKfd k;

        test_kfd_open(&k, false);
        ASSERT_ERRNO(acquire_vm(&k, k.fd, k.render[0], 0xfff0), EINVAL);
        test_kfd_close(&k);
}

static void test_acquire_vm_same_file_ok(void) {
        TestKfd k;
        int dup_fd;

        test_kfd_open(&k, true);
        ASSERT_OK(acquire_vm(&k, k.fd, k.render[0], gpu_id(&k, 0)));
        /* A dup() is the same open file description. */
        dup_fd = fcntl(k.render[0], F_DUPFD_CLOEXEC, 3);
        ASSERT_TRUE(dup_fd >= 0);
        ASSERT_OK(acquire_vm(&k, k.fd, dup_fd, gpu_id(&k, 0)));
        safe_close(dup_fd);
        test_kfd_close(&k);
}

static void test_acquire_vm_other_file_ebusy(void) {
        TestKfd k;
        int fd2;

        test_kfd_open(&k, true);
        fd2 = open_render(&k, 0);
        ASSERT_ERRNO(acquire_vm(&k, k.fd, fd2, gpu_id(&k, 0)), EBUSY);
        safe_close(fd2);
        test_kfd_close(&k);
}

static void test_acquire_vm_file_of_other_gpu_einval(void) {
        TestKfd k;

        /* The render file of GPU 0 already holds a compute VM: it cannot become GPU 1's. */
        test_kfd_open(&k, false);
        ASSERT_TRUE(k.topo.n_gpus >= 2);
        ASSERT_OK(acquire_vm(&k, k.fd, k.render[0], gpu_id(&k, 0)));
        ASSERT_ERRNO(acquire_vm(&k, k.fd, k.render[0], gpu_id(&k, 1)), EINVAL);
        ASSERT_OK(acquire_vm(&k, k.fd, k.render[1], gpu_id(&k, 1)));
        test_kfd_close(&k);
}

static void test_acquire_vm_survives_render_close(void) {
        TestKfd k;
        uint64_t h;

        test_kfd_open(&k, true);
        k.render[0] = safe_close(k.render[0]);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

/* ---- §4.5 what needs a VM ---- */

static void test_alloc_without_vm_enodev(void) {
        TestKfd k;
        uint64_t h;

        test_kfd_open(&k, false);
        ASSERT_ERRNO(test_alloc_vram(&k, 0, SZ_64K, &h), ENODEV);
        test_kfd_close(&k);
}

static void test_map_peer_without_vm_enodev(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[2], n = 0;

        test_kfd_open(&k, false);
        ASSERT_TRUE(k.topo.n_gpus >= 2);
        ASSERT_OK(acquire_vm(&k, k.fd, k.render[0], gpu_id(&k, 0)));
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        ids[0] = gpu_id(&k, 0);
        ids[1] = gpu_id(&k, 1);
        ASSERT_ERRNO(test_map(&k, h, ids, 2, &n), ENODEV);
        ASSERT_EQ(n, 1);
        ASSERT_OK(test_unmap(&k, h, ids, 1, NULL));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_set_memory_policy_without_vm_esrch(void) {
        TestKfd k;
        struct kfd_ioctl_set_memory_policy_args p = {
                .default_policy = KFD_IOC_CACHE_POLICY_COHERENT,
                .alternate_policy = KFD_IOC_CACHE_POLICY_COHERENT,
        };

        test_kfd_open(&k, false);
        p.gpu_id = gpu_id(&k, 0);
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_SET_MEMORY_POLICY, &p), ESRCH);
        ASSERT_OK(acquire_vm(&k, k.fd, k.render[0], gpu_id(&k, 0)));
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_SET_MEMORY_POLICY, &p));
        /* A policy other than 0/1 is EINVAL, an unknown gpu too. */
        p.default_policy = 2;
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_SET_MEMORY_POLICY, &p), EINVAL);
        p.default_policy = KFD_IOC_CACHE_POLICY_NONCOHERENT;
        p.gpu_id = 0xfff0;
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_SET_MEMORY_POLICY, &p), EINVAL);
        test_kfd_close(&k);
}

static void test_import_without_vm_enodev(void) {
        TestKfd k;
        uint64_t h, h2;
        int dmabuf;

        test_kfd_open(&k, false);
        ASSERT_TRUE(k.topo.n_gpus >= 2);
        ASSERT_OK(acquire_vm(&k, k.fd, k.render[0], gpu_id(&k, 0)));
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        ASSERT_OK(export_dmabuf(&k, h, &dmabuf));
        ASSERT_ERRNO(import_dmabuf(&k, gpu_id(&k, 1), dmabuf, test_va(&k, SZ_64K), &h2), ENODEV);
        safe_close(dmabuf);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

/* ---- §4.1 handles ---- */

static void test_handles_lowest_free_idr_reused(void) {
        TestKfd k;
        uint64_t h[4], again;
        uint64_t base;

        test_kfd_open(&k, true);
        base = (uint64_t) gpu_id(&k, 0) << 32;
        for (unsigned i = 0; i < 3; i++) {
                ASSERT_OK(test_alloc_vram(&k, 0, SZ_4K, &h[i]));
                ASSERT_EQ(h[i], base | i);
        }
        ASSERT_OK(test_free(&k, h[1]));
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_4K, &again));
        ASSERT_EQ(again, base | 1);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_4K, &h[3]));
        ASSERT_EQ(h[3], base | 3);

        /* Each GPU has its own idr. */
        if (k.topo.n_gpus > 1) {
                uint64_t o;

                ASSERT_OK(test_alloc_vram(&k, 1, SZ_4K, &o));
                ASSERT_EQ(o, (uint64_t) gpu_id(&k, 1) << 32);
                ASSERT_OK(test_free(&k, o));
        }
        ASSERT_OK(test_free(&k, h[0]));
        ASSERT_OK(test_free(&k, again));
        ASSERT_OK(test_free(&k, h[2]));
        ASSERT_OK(test_free(&k, h[3]));
        test_kfd_close(&k);
}

/* ---- §2.6 ALLOC ---- */

static void test_alloc_size_zero_einval(void) {
        TestKfd k;
        uint64_t h;

        test_kfd_open(&k, false);
        /* Size is checked first: before the GPU, before the VM. */
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_4K), 0, VRAM_FLAGS, &h, NULL), EINVAL);
        ASSERT_ERRNO(test_alloc(&k, 0xfff0, test_va(&k, SZ_4K), 0, VRAM_FLAGS, &h, NULL), EINVAL);
        test_kfd_close(&k);
}

static void test_alloc_unknown_gpu_einval(void) {
        TestKfd k;
        uint64_t h;

        test_kfd_open(&k, true);
        ASSERT_ERRNO(test_alloc(&k, 0xfff0, test_va(&k, SZ_4K), SZ_4K, VRAM_FLAGS, &h, NULL), EINVAL);
        ASSERT_ERRNO(test_alloc(&k, 0, test_va(&k, SZ_4K), SZ_4K, VRAM_FLAGS, &h, NULL), EINVAL);
        test_kfd_close(&k);
}

static void test_public_vram_small_bar_einval(void) {
        TestKfd k;
        uint64_t h;

        test_kfd_open(&k, false);
        ASSERT_TRUE(!k.topo.gpus[0].large_bar);
        /* Checked before the VM: EINVAL, not ENODEV, without ACQUIRE_VM. */
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_4K), SZ_4K, VRAM_PUBLIC_FLAGS, &h, NULL), EINVAL);
        ASSERT_OK(acquire_vm(&k, k.fd, k.render[0], gpu_id(&k, 0)));
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_4K), SZ_4K, VRAM_PUBLIC_FLAGS, &h, NULL), EINVAL);
        /* Private VRAM and PUBLIC without VRAM are fine. */
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_4K), SZ_4K, VRAM_FLAGS, &h, NULL));
        ASSERT_OK(test_free(&k, h));
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_4K), SZ_4K,
                             GTT_FLAGS | KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC, &h, NULL));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_alloc_no_type_bit_einval(void) {
        TestKfd k;
        uint64_t h;

        test_kfd_open(&k, true);
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_4K), SZ_4K,
                                ALLOC_FLAG_WRITABLE | KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC, &h, NULL),
                     EINVAL);
        test_kfd_close(&k);
}

static void test_alloc_userptr_zero_address_einval(void) {
        TestKfd k;
        uint64_t h, addr = 0;

        test_kfd_open(&k, true);
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_4K), SZ_4K, USERPTR_FLAGS, &h, &addr), EINVAL);
        test_kfd_close(&k);
}

static void test_alloc_over_vram_enomem(void) {
        TestKfd k;
        uint64_t h, before, after;

        test_kfd_open(&k, true);
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &before));
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_4K), k.topo.gpus[0].vram_size + SZ_2M,
                                VRAM_FLAGS, &h, NULL),
                     ENOMEM);
        /* All or nothing: no accounting left behind, and the next idr is still 0. */
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &after));
        ASSERT_EQ(after, before);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_4K, &h));
        ASSERT_EQ(h & 0xffffffffULL, 0);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_alloc_mmio_remap_size_einval(void) {
        TestKfd k;
        uint64_t h, off = 0;
        uint32_t flags = KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP | ALLOC_FLAG_WRITABLE |
                         KFD_IOC_ALLOC_MEM_FLAGS_COHERENT;

        test_kfd_open(&k, true);
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 0), test_va(&k, 2 * SZ_4K), 2 * SZ_4K, flags, &h, &off), EINVAL);
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_4K), SZ_4K, flags, &h, &off));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_alloc_va_not_validated(void) {
        TestKfd k;
        uint64_t h1, h2, va;

        /* ALLOC records the VA only: unaligned, zero and overlapping VAs are all accepted. */
        test_kfd_open(&k, true);
        va = test_va(&k, SZ_64K);
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), va, SZ_64K, VRAM_FLAGS, &h1, NULL));
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), va, SZ_64K, VRAM_FLAGS, &h2, NULL));
        ASSERT_OK(test_free(&k, h2));
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), 0, SZ_64K, VRAM_FLAGS, &h2, NULL));
        ASSERT_OK(test_free(&k, h2));
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), va + 0x800, SZ_64K, VRAM_FLAGS, &h2, NULL));
        ASSERT_OK(test_free(&k, h2));
        ASSERT_OK(test_free(&k, h1));
        test_kfd_close(&k);
}

static void test_alloc_unknown_flag_bits_ignored(void) {
        TestKfd k;
        uint64_t h;

        test_kfd_open(&k, true);
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_4K), SZ_4K, VRAM_FLAGS | (1U << 20) | (1U << 7),
                             &h, NULL));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static uint64_t dump_system(const char *key) {
        json_t *d = test_dump();
        uint64_t v = (uint64_t) json_integer_value(json_object_get(json_object_get(d, "system"), key));

        json_decref(d);
        return v;
}

static void test_alloc_multi_type_bits_first_wins(void) {
        TestKfd k;
        uint64_t h, before, after;
        json_t *d;

        /*
         * VRAM|GTT is a VRAM BO: amdgpu_amdkfd_gpuvm_alloc_memory_of_gpu() picks the domain VRAM
         * first. amdgpu_amdkfd_reserve_mem_limit() tests GTT first, so it is charged as GTT: system
         * and TTM memory, not the GPU's VRAM; AVAILABLE_MEMORY does not move.
         */
        test_kfd_open(&k, true);
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &before));
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_4K), SZ_4K,
                             VRAM_FLAGS | KFD_IOC_ALLOC_MEM_FLAGS_GTT, &h, NULL));
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &after));
        ASSERT_EQ(after, before);
        ASSERT_EQ(dump_system("ttm_used"), SZ_4K);
        ASSERT_EQ(dump_system("used"), SZ_4K);
        d = test_dump();
        ASSERT_TRUE(streq(json_string_value(json_object_get(json_array_get(json_object_get(d, "buffers"), 0),
                                                            "domain")), "vram"));
        json_decref(d);
        ASSERT_OK(test_free(&k, h));
        ASSERT_EQ(dump_system("ttm_used"), 0);
        ASSERT_EQ(dump_system("used"), 0);
        test_kfd_close(&k);
}

static void test_alloc_svm_overlap_eaddrinuse(void) {
        TestKfd k;
        uint64_t h, addr;
        void *p;

        test_kfd_open(&k, true);
        p = anon_pages(SZ_2M);
        addr = (uintptr_t) p;
        ASSERT_OK(svm_set1(&k, addr, SZ_2M, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, KFD_IOCTL_SVM_LOCATION_SYSMEM));
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 0), addr, SZ_64K, VRAM_FLAGS, &h, NULL), EADDRINUSE);
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 0), addr + SZ_64K, SZ_64K, GTT_FLAGS, &h, NULL), EADDRINUSE);
        /* Size 0 is still checked first. */
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 0), addr, 0, VRAM_FLAGS, &h, NULL), EINVAL);
        munmap(p, SZ_2M);
        test_kfd_close(&k);
}

/* ---- §2.5/§2.7 accounting ---- */

static void test_available_memory_2mib_units(void) {
        TestKfd k;
        uint64_t before, one, two, after, h1, h2;

        test_kfd_open(&k, true);
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &before));
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_4K, &h1));
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &one));
        ASSERT_EQ(before - one, SZ_2M);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_2M + SZ_4K, &h2));
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &two));
        ASSERT_EQ(one - two, 2 * SZ_2M);
        ASSERT_OK(test_free(&k, h1));
        ASSERT_OK(test_free(&k, h2));
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &after));
        ASSERT_EQ(after, before);
        test_kfd_close(&k);
}

static void test_vram_accounting_is_node_wide(void) {
        TestKfd k;
        uint64_t before, after;
        pid_t pid;
        int sv[2];
        char c;

        /* Another process's allocation shows in this process's AVAILABLE_MEMORY. */
        test_kfd_open(&k, true);
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &before));
        ASSERT_TRUE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) >= 0);
        pid = spawn_self("helper_alloc_and_wait", sv[1]);
        safe_close(sv[1]);
        ASSERT_EQ(read(sv[0], &c, 1), 1);
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &after));
        ASSERT_EQ(before - after, 4 * SZ_2M);
        ASSERT_EQ(write(sv[0], "q", 1), 1);
        ASSERT_EQ(wait_exit(pid), 0);
        safe_close(sv[0]);
        json_decref(test_dump());       /* reaps the helper */
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &after));
        ASSERT_EQ(after, before);
        test_kfd_close(&k);
}

#define SZ_1G (1ULL << 30)

/*
 * amdgpu_amdkfd_reserve_mem_limit(): GTT counts against the TTM limit too, which is half of RAM
 * (amdgpu_amdkfd_gpuvm_init_mem_limits(), ttm_tt_pages_limit()). mi250-4 has 512 GiB of RAM: four
 * 64 GiB GTT buffers fill the 256 GiB, a fifth or even one more page fails with ENOMEM, although
 * the system limit (RAM − RAM/64 − 1.5 GiB) has room. USERPTR counts against the system limit only.
 */
static void test_gtt_limited_by_ttm(void) {
        const uint64_t ttm_limit = 256 * SZ_1G;
        TestKfd k;
        uint64_t h[5], small, uh, addr, va;
        void *p;

        test_kfd_open(&k, true);
        va = test_va(&k, SZ_2M);
        for (unsigned i = 0; i < 3; i++, va += 64 * SZ_1G)
                ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), va, 64 * SZ_1G, GTT_FLAGS, &h[i], NULL));
        /* Up to the byte: the fourth buffer ends one page below the limit, one more page fits. */
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), va, 64 * SZ_1G - SZ_4K, GTT_FLAGS, &h[3], NULL));
        va += 64 * SZ_1G;
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 1), va, SZ_4K, GTT_FLAGS, &small, NULL));
        va += SZ_2M;
        /* The limit is node-wide: every GPU's GTT counts. */
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 2), va, SZ_4K, GTT_FLAGS, &h[4], NULL), ENOMEM);
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 0), va, 64 * SZ_1G, GTT_FLAGS, &h[4], NULL), ENOMEM);

        /* USERPTR is not TTM memory: 4 GiB more of it fit under the system limit. */
        p = mmap(NULL, 4 * SZ_1G, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        ASSERT_TRUE(p != MAP_FAILED);
        addr = (uintptr_t) p;
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), addr, 4 * SZ_1G, USERPTR_FLAGS, &uh, &addr));

        /* Freeing one page of GTT lets one page in again, and nothing more. */
        ASSERT_OK(test_free(&k, small));
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 3), va, SZ_4K, GTT_FLAGS, &small, NULL));
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 3), va + SZ_2M, SZ_4K, GTT_FLAGS, &h[4], NULL), ENOMEM);

        ASSERT_OK(test_free(&k, uh));
        ASSERT_OK(test_free(&k, small));
        for (unsigned i = 0; i < 4; i++)
                ASSERT_OK(test_free(&k, h[i]));
        /* All released: the whole limit again. */
        va = test_va(&k, SZ_2M);
        for (unsigned i = 0; i < 4; i++, va += ttm_limit / 4)
                ASSERT_OK(test_alloc(&k, gpu_id(&k, i), va, ttm_limit / 4, GTT_FLAGS, &h[i], NULL));
        for (unsigned i = 0; i < 4; i++)
                ASSERT_OK(test_free(&k, h[i]));
        munmap(p, 4 * SZ_1G);
        test_kfd_close(&k);
}

/*
 * VRAM KFD may use: vram_size − ESTIMATE_PT_SIZE(amdgpu_amdkfd_total_mem_size) (− pinned − RAS, 0
 * here), in amdgpu_amdkfd_reserve_mem_limit() and amdgpu_amdkfd_get_available_memory() alike. An
 * idle GPU never reports all of its VRAM; allocations fit up to the byte, the next page is ENOMEM.
 */
static void check_vram_limit(uint64_t reserved_for_pt) {
        TestKfd k;
        uint64_t vram, avail, h, h2;

        test_kfd_open(&k, true);
        vram = k.topo.gpus[0].vram_size;
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &avail));
        ASSERT_EQ(avail, vram - reserved_for_pt);
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_2M), vram - reserved_for_pt, VRAM_FLAGS, &h, NULL));
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &avail));
        ASSERT_EQ(avail, 0);
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_2M), SZ_4K, VRAM_FLAGS, &h2, NULL), ENOMEM);
        ASSERT_OK(test_free(&k, h));
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &avail));
        ASSERT_EQ(avail, vram - reserved_for_pt);
        test_kfd_close(&k);
}

/* gfx1100-1: (64 GiB RAM + 24 GiB VRAM) >> 14 is 5.5 MiB, under the AMDGPU_VM_RESERVED_VRAM floor. */
static void test_vram_limit_pt_estimate_floor(void) {
        check_vram_limit(8ULL << 20);
}

/* mi300x-8: (512 GiB RAM + 8 × 192 GiB VRAM) >> 14 = 128 MiB on each GPU. */
static void test_vram_limit_pt_estimate_scaled(void) {
        check_vram_limit(128ULL << 20);
}

/* ---- GET_CLOCK_COUNTERS, SET_SCRATCH_BACKING_VA, GET_TILE_CONFIG (kfd_chardev.c) ---- */

static uint64_t clock_ns(clockid_t id) {
        struct timespec ts;

        ASSERT_TRUE(clock_gettime(id, &ts) == 0);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static void test_clock_counters(void) {
        struct kfd_ioctl_get_clock_counters_args a = {}, b = {};
        uint64_t raw0, boot0, raw1, boot1;
        TestKfd k;

        /* No VM needed. CPU counters are CLOCK_MONOTONIC_RAW and CLOCK_BOOTTIME in ns (1 GHz). */
        test_kfd_open(&k, false);
        a.gpu_id = gpu_id(&k, 0);
        raw0 = clock_ns(CLOCK_MONOTONIC_RAW);
        boot0 = clock_ns(CLOCK_BOOTTIME);
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_CLOCK_COUNTERS, &a));
        raw1 = clock_ns(CLOCK_MONOTONIC_RAW);
        boot1 = clock_ns(CLOCK_BOOTTIME);
        ASSERT_EQ(a.system_clock_freq, 1000000000ULL);
        ASSERT_TRUE(a.cpu_clock_counter >= raw0 && a.cpu_clock_counter <= raw1);
        ASSERT_TRUE(a.system_clock_counter >= boot0 && a.system_clock_counter <= boot1);
        ASSERT_TRUE(a.gpu_clock_counter > 0);

        /* The GPU counter runs (100 MHz): 2 ms later it is at least 150000 ticks further. */
        usleep(2000);
        b.gpu_id = a.gpu_id;
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_CLOCK_COUNTERS, &b));
        ASSERT_TRUE(b.gpu_clock_counter >= a.gpu_clock_counter + 150000);

        /* A node without a GPU is no error: its GPU counter reads 0, the CPU counters are filled. */
        memset(&b, 0, sizeof(b));
        b.gpu_id = 0xfff0;
        b.gpu_clock_counter = 42;
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_CLOCK_COUNTERS, &b));
        ASSERT_EQ(b.gpu_clock_counter, 0);
        ASSERT_TRUE(b.cpu_clock_counter > 0);
        ASSERT_EQ(b.system_clock_freq, 1000000000ULL);
        test_kfd_close(&k);
}

static void test_set_scratch_backing_va(void) {
        struct kfd_ioctl_set_scratch_backing_va_args a = { .va_addr = 0x7f0000000000ULL };
        TestKfd k;

        /* Unknown GPU: EINVAL; no VM yet: ENODEV (kfd_bind_process_to_device); then any VA. */
        test_kfd_open(&k, false);
        a.gpu_id = 0xfff0;
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_SET_SCRATCH_BACKING_VA, &a), EINVAL);
        a.gpu_id = gpu_id(&k, 0);
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_SET_SCRATCH_BACKING_VA, &a), ENODEV);
        test_kfd_close(&k);

        test_kfd_open(&k, true);
        a.gpu_id = gpu_id(&k, 0);
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_SET_SCRATCH_BACKING_VA, &a));
        a.va_addr = 0;
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_SET_SCRATCH_BACKING_VA, &a));
        test_kfd_close(&k);
}

static void test_tile_config(void) {
        uint32_t tiles[40], macro[20];
        struct kfd_ioctl_get_tile_config_args a = {};
        TestKfd k;

        test_kfd_open(&k, false);
        a.gpu_id = 0xfff0;
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_GET_TILE_CONFIG, &a), EINVAL);

        /* Counts are clamped to the kernel's tables (32 and 16 entries); GFX9+ leaves them 0. */
        memset(tiles, 0xa5, sizeof(tiles));
        memset(macro, 0xa5, sizeof(macro));
        a = (struct kfd_ioctl_get_tile_config_args) {
                .tile_config_ptr = (uintptr_t) tiles, .macro_tile_config_ptr = (uintptr_t) macro,
                .num_tile_configs = 40, .num_macro_tile_configs = 20, .gpu_id = gpu_id(&k, 0),
                .gb_addr_config = 7, .num_banks = 7, .num_ranks = 7,
        };
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_TILE_CONFIG, &a));
        ASSERT_EQ(a.num_tile_configs, 32);
        ASSERT_EQ(a.num_macro_tile_configs, 16);
        ASSERT_EQ(a.gb_addr_config, 0);
        ASSERT_EQ(a.num_banks, 0);
        ASSERT_EQ(a.num_ranks, 0);
        ASSERT_EQ(tiles[31], 0);
        ASSERT_EQ(tiles[32], 0xa5a5a5a5);      /* nothing past the clamped count */
        ASSERT_EQ(macro[15], 0);
        ASSERT_EQ(macro[16], 0xa5a5a5a5);

        /* Zero counts need no buffers; a bad one is EFAULT and its count reads 0. */
        a.tile_config_ptr = a.macro_tile_config_ptr = 0;
        a.num_tile_configs = a.num_macro_tile_configs = 0;
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_TILE_CONFIG, &a));
        a.num_tile_configs = 4;
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_GET_TILE_CONFIG, &a), EFAULT);
        ASSERT_EQ(a.num_tile_configs, 0);
        a.tile_config_ptr = (uintptr_t) tiles;
        a.num_tile_configs = 4;
        a.num_macro_tile_configs = 2;
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_GET_TILE_CONFIG, &a), EFAULT);
        ASSERT_EQ(a.num_tile_configs, 4);
        ASSERT_EQ(a.num_macro_tile_configs, 0);
        test_kfd_close(&k);
}

/* ---- §2.8 MAP ---- */

static void test_map_n_devices_zero_einval(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[1], n = 0;

        test_kfd_open(&k, true);
        ids[0] = gpu_id(&k, 0);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        ASSERT_ERRNO(test_map(&k, h, ids, 0, &n), EINVAL);
        n = 2;
        ASSERT_ERRNO(test_map(&k, h, ids, 1, &n), EINVAL);
        ASSERT_EQ(n, 2);
        ASSERT_ERRNO(test_unmap(&k, h, ids, 0, NULL), EINVAL);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_map_bad_handle_enomem(void) {
        TestKfd k;
        uint32_t ids[1];
        uint64_t bad;

        test_kfd_open(&k, true);
        ids[0] = gpu_id(&k, 0);
        /* Known GPU part, missing idr: ENOMEM (sic); unknown GPU part: EINVAL. */
        bad = ((uint64_t) gpu_id(&k, 0) << 32) | 42;
        ASSERT_ERRNO(test_map(&k, bad, ids, 1, NULL), ENOMEM);
        ASSERT_ERRNO(test_unmap(&k, bad, ids, 1, NULL), ENOMEM);
        bad = (0xfff0ULL << 32) | 0;
        ASSERT_ERRNO(test_map(&k, bad, ids, 1, NULL), EINVAL);
        ASSERT_ERRNO(test_unmap(&k, bad, ids, 1, NULL), EINVAL);
        test_kfd_close(&k);
}

static void test_map_already_mapped_is_noop(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[TEST_MAX_GPUS], n = 0;

        test_kfd_open(&k, true);
        all_gpu_ids(&k, ids);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        ASSERT_OK(test_map(&k, h, ids, 1, &n));
        ASSERT_EQ(n, 1);
        n = 0;
        ASSERT_OK(test_map(&k, h, ids, 1, &n));
        ASSERT_EQ(n, 1);
        /* One UNMAP undoes it: the second MAP did not count. */
        ASSERT_OK(test_unmap(&k, h, ids, 1, NULL));
        ASSERT_ERRNO(test_unmap(&k, h, ids, 1, NULL), EINVAL);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_map_duplicate_ids_noop(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[3], n = 0;

        test_kfd_open(&k, true);
        ids[0] = ids[1] = ids[2] = gpu_id(&k, 0);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        ASSERT_OK(test_map(&k, h, ids, 3, &n));
        ASSERT_EQ(n, 3);
        ASSERT_OK(test_unmap(&k, h, ids, 1, NULL));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_map_all_gpus_one_call(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[TEST_MAX_GPUS], n = 0;

        test_kfd_open(&k, true);
        all_gpu_ids(&k, ids);
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_2M), SZ_2M, GTT_FLAGS, &h, NULL));
        ASSERT_OK(test_map(&k, h, ids, k.topo.n_gpus, &n));
        ASSERT_EQ(n, k.topo.n_gpus);
        n = 0;
        ASSERT_OK(test_unmap(&k, h, ids, k.topo.n_gpus, &n));
        ASSERT_EQ(n, k.topo.n_gpus);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_map_va_unaligned_einval(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[1];

        test_kfd_open(&k, true);
        ids[0] = gpu_id(&k, 0);
        ASSERT_OK(test_alloc(&k, ids[0], test_va(&k, SZ_64K) + 0x800, SZ_64K, VRAM_FLAGS, &h, NULL));
        ASSERT_ERRNO(test_map(&k, h, ids, 1, NULL), EINVAL);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_map_va_zero_einval(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[1];

        test_kfd_open(&k, true);
        ids[0] = gpu_id(&k, 0);
        ASSERT_OK(test_alloc(&k, ids[0], 0, SZ_64K, VRAM_FLAGS, &h, NULL));
        ASSERT_ERRNO(test_map(&k, h, ids, 1, NULL), EINVAL);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_map_va_beyond_vm_einval(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[1];

        test_kfd_open(&k, true);
        ids[0] = gpu_id(&k, 0);
        ASSERT_OK(test_alloc(&k, ids[0], 1ULL << 48, SZ_64K, VRAM_FLAGS, &h, NULL));
        ASSERT_ERRNO(test_map(&k, h, ids, 1, NULL), EINVAL);
        ASSERT_OK(test_free(&k, h));
        /* va + size overflows. */
        ASSERT_OK(test_alloc(&k, ids[0], UINT64_MAX - SZ_4K + 1, SZ_64K, VRAM_FLAGS, &h, NULL));
        ASSERT_ERRNO(test_map(&k, h, ids, 1, NULL), EINVAL);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_map_va_overlap_einval(void) {
        TestKfd k;
        uint64_t h1, h2, va;
        uint32_t ids[TEST_MAX_GPUS];

        test_kfd_open(&k, true);
        all_gpu_ids(&k, ids);
        va = test_va(&k, SZ_2M);
        ASSERT_OK(test_alloc(&k, ids[0], va, SZ_2M, VRAM_FLAGS, &h1, NULL));
        ASSERT_OK(test_alloc(&k, ids[0], va + SZ_64K, SZ_64K, VRAM_FLAGS, &h2, NULL));
        ASSERT_OK(test_map(&k, h1, ids, 1, NULL));
        ASSERT_ERRNO(test_map(&k, h2, ids, 1, NULL), EINVAL);
        /* After the first one leaves the VM the range is free again. */
        ASSERT_OK(test_unmap(&k, h1, ids, 1, NULL));
        ASSERT_OK(test_map(&k, h2, ids, 1, NULL));
        ASSERT_OK(test_unmap(&k, h2, ids, 1, NULL));
        ASSERT_OK(test_free(&k, h1));
        ASSERT_OK(test_free(&k, h2));
        test_kfd_close(&k);
}

static void test_peer_xgmi_accessible(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[TEST_MAX_GPUS], n = 0;

        test_kfd_open(&k, true);
        all_gpu_ids(&k, ids);
        for (unsigned i = 1; i < k.topo.n_gpus; i++)
                ASSERT_TRUE(test_topo_peer_accessible(&k.topo, 0, i));
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_2M, &h));
        ASSERT_OK(test_map(&k, h, ids, k.topo.n_gpus, &n));
        ASSERT_EQ(n, k.topo.n_gpus);
        ASSERT_OK(test_unmap(&k, h, ids, k.topo.n_gpus, NULL));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_peer_not_accessible_einval(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[2], n = 0;
        unsigned owner = UINT32_MAX, peer = UINT32_MAX;

        test_kfd_open(&k, true);
        for (unsigned a = 0; a < k.topo.n_gpus && owner == UINT32_MAX; a++)
                for (unsigned b = 0; b < k.topo.n_gpus; b++)
                        if (!test_topo_peer_accessible(&k.topo, a, b)) {
                                owner = a;
                                peer = b;
                                break;
                        }
        ASSERT_TRUE(owner != UINT32_MAX);

        ids[0] = gpu_id(&k, owner);
        ids[1] = gpu_id(&k, peer);
        ASSERT_OK(test_alloc_vram(&k, owner, SZ_2M, &h));
        ASSERT_ERRNO(test_map(&k, h, ids, 2, &n), EINVAL);
        ASSERT_EQ(n, 1);
        ASSERT_OK(test_unmap(&k, h, ids, 1, NULL));
        ASSERT_OK(test_free(&k, h));

        /* System memory (GTT) is reachable from every GPU. */
        n = 0;
        ASSERT_OK(test_alloc(&k, ids[0], test_va(&k, SZ_2M), SZ_2M, GTT_FLAGS, &h, NULL));
        ASSERT_OK(test_map(&k, h, ids, 2, &n));
        ASSERT_OK(test_unmap(&k, h, ids, 2, NULL));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

/* ---- §2.9 UNMAP ---- */

static void test_unmap_not_mapped_einval(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[TEST_MAX_GPUS], n = 0;

        test_kfd_open(&k, true);
        all_gpu_ids(&k, ids);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        ASSERT_ERRNO(test_unmap(&k, h, ids, 1, &n), EINVAL);
        ASSERT_EQ(n, 0);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_unmap_twice_einval(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[TEST_MAX_GPUS], n = 0;

        test_kfd_open(&k, true);
        all_gpu_ids(&k, ids);
        ASSERT_OK(test_alloc(&k, ids[0], test_va(&k, SZ_64K), SZ_64K, GTT_FLAGS, &h, NULL));
        ASSERT_OK(test_map(&k, h, ids, k.topo.n_gpus, NULL));
        ASSERT_OK(test_unmap(&k, h, ids, k.topo.n_gpus, NULL));
        /* Not idempotent: the first device already unmapped stops the loop at 0. */
        ASSERT_ERRNO(test_unmap(&k, h, ids, k.topo.n_gpus, &n), EINVAL);
        ASSERT_EQ(n, 0);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_unmap_without_vm_ok(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[1];

        /* UNMAP binds nothing: an unknown peer id is EINVAL, not ENODEV. */
        test_kfd_open(&k, true);
        ids[0] = 0xfff0;
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        ASSERT_ERRNO(test_unmap(&k, h, ids, 1, NULL), EINVAL);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

/* ---- §3 faults, partial maps and restarts ---- */

static void test_map_partial_fault_after_k(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[TEST_MAX_GPUS], n = 0;

        test_kfd_open(&k, true);
        ASSERT_TRUE(k.topo.n_gpus >= 4);
        all_gpu_ids(&k, ids);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_2M, &h));
        test_fault("ioctl=MAP_MEMORY_TO_GPU errno=ENOMEM after=2 count=1");
        ASSERT_ERRNO(test_map(&k, h, ids, 4, &n), ENOMEM);
        ASSERT_EQ(n, 2);
        /* Devices [0, 2) are mapped and stay mapped; device 2 is not. */
        ASSERT_ERRNO(test_unmap(&k, h, ids + 2, 1, NULL), EINVAL);
        ASSERT_ERRNO(test_free(&k, h), EBUSY);
        ASSERT_OK(test_unmap(&k, h, ids, 2, NULL));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_map_fault_on_gpu(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[TEST_MAX_GPUS], n = 0;

        test_kfd_open(&k, true);
        ASSERT_TRUE(k.topo.n_gpus >= 4);
        all_gpu_ids(&k, ids);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_2M, &h));
        test_fault(fault_spec("ioctl=MAP_MEMORY_TO_GPU gpu=0x%x errno=EIO count=1", ids[3]));
        ASSERT_ERRNO(test_map(&k, h, ids, 4, &n), EIO);
        ASSERT_EQ(n, 3);
        /* The fault fired once: the restart completes. */
        ASSERT_OK(test_map(&k, h, ids, 4, &n));
        ASSERT_EQ(n, 4);
        ASSERT_OK(test_unmap(&k, h, ids, 4, NULL));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_fault_nth_call(void) {
        TestKfd k;
        uint64_t h[3];

        test_kfd_open(&k, true);
        test_fault("ioctl=ALLOC_MEMORY_OF_GPU nth=2 errno=ENOMEM count=1");
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_4K, &h[0]));
        ASSERT_ERRNO(test_alloc_vram(&k, 0, SZ_4K, &h[1]), ENOMEM);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_4K, &h[2]));
        /* The failed ALLOC took no idr. */
        ASSERT_EQ(h[2] & 0xffffffffULL, 1);
        ASSERT_OK(test_free(&k, h[0]));
        ASSERT_OK(test_free(&k, h[2]));
        test_kfd_close(&k);
}

static void test_fault_clear(void) {
        TestKfd k;
        uint64_t h;

        test_kfd_open(&k, true);
        test_fault("ioctl=ALLOC_MEMORY_OF_GPU errno=ENOSPC count=0");
        ASSERT_ERRNO(test_alloc_vram(&k, 0, SZ_4K, &h), ENOSPC);
        ASSERT_ERRNO(test_alloc_vram(&k, 0, SZ_4K, &h), ENOSPC);
        ASSERT_EQ(test_ctl("fault", "clear", NULL), 0);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_4K, &h));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_map_eintr_restart_with_n_success(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[TEST_MAX_GPUS];
        struct kfd_ioctl_map_memory_to_gpu_args m;

        test_kfd_open(&k, true);
        ASSERT_TRUE(k.topo.n_gpus >= 4);
        all_gpu_ids(&k, ids);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_2M, &h));
        test_fault("ioctl=MAP_MEMORY_TO_GPU errno=EINTR after=1 count=1");
        m = (struct kfd_ioctl_map_memory_to_gpu_args) {
                .handle = h, .device_ids_array_ptr = (uintptr_t) ids, .n_devices = 4,
        };
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_MAP_MEMORY_TO_GPU, &m), EINTR);
        ASSERT_EQ(m.n_success, 1);
        /* Re-issue the same struct: the kernel skips the first n_success devices. */
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_MAP_MEMORY_TO_GPU, &m));
        ASSERT_EQ(m.n_success, 4);
        ASSERT_OK(test_unmap(&k, h, ids, 4, NULL));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_map_eintr_after_all_devices(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[TEST_MAX_GPUS];
        struct kfd_ioctl_map_memory_to_gpu_args m;

        test_kfd_open(&k, true);
        all_gpu_ids(&k, ids);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_2M, &h));
        test_fault("ioctl=MAP_MEMORY_TO_GPU errno=EINTR at=fence count=1");
        m = (struct kfd_ioctl_map_memory_to_gpu_args) {
                .handle = h, .device_ids_array_ptr = (uintptr_t) ids, .n_devices = k.topo.n_gpus,
        };
        /* The fence wait was interrupted: every device is mapped already. */
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_MAP_MEMORY_TO_GPU, &m), EINTR);
        ASSERT_EQ(m.n_success, k.topo.n_gpus);
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_MAP_MEMORY_TO_GPU, &m));
        ASSERT_EQ(m.n_success, k.topo.n_gpus);
        ASSERT_OK(test_unmap(&k, h, ids, k.topo.n_gpus, NULL));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_unmap_eintr_restart_with_n_success(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[TEST_MAX_GPUS];
        struct kfd_ioctl_unmap_memory_from_gpu_args u;

        test_kfd_open(&k, true);
        ASSERT_TRUE(k.topo.n_gpus >= 4);
        all_gpu_ids(&k, ids);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_2M, &h));
        ASSERT_OK(test_map(&k, h, ids, 4, NULL));
        test_fault("ioctl=UNMAP_MEMORY_FROM_GPU errno=EINTR after=2 count=1");
        u = (struct kfd_ioctl_unmap_memory_from_gpu_args) {
                .handle = h, .device_ids_array_ptr = (uintptr_t) ids, .n_devices = 4,
        };
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, &u), EINTR);
        ASSERT_EQ(u.n_success, 2);
        /* Restarting from 0 would be wrong: device 0 is no longer mapped. */
        {
                struct kfd_ioctl_unmap_memory_from_gpu_args z = u;

                z.n_success = 0;
                ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, &z), EINVAL);
                ASSERT_EQ(z.n_success, 0);
        }
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, &u));
        ASSERT_EQ(u.n_success, 4);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

/* ---- §2.7 FREE ---- */

static void test_free_mapped_ebusy(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[TEST_MAX_GPUS];

        test_kfd_open(&k, true);
        all_gpu_ids(&k, ids);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        ASSERT_OK(test_map(&k, h, ids, 1, NULL));
        ASSERT_ERRNO(test_free(&k, h), EBUSY);
        /* The handle stays valid. */
        ASSERT_OK(test_unmap(&k, h, ids, 1, NULL));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_free_bad_handle_einval(void) {
        TestKfd k;
        uint64_t h;

        test_kfd_open(&k, true);
        ASSERT_ERRNO(test_free(&k, ((uint64_t) gpu_id(&k, 0) << 32) | 7), EINVAL);
        ASSERT_ERRNO(test_free(&k, 0xfff0ULL << 32), EINVAL);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        ASSERT_OK(test_free(&k, h));
        ASSERT_ERRNO(test_free(&k, h), EINVAL);
        test_kfd_close(&k);
}

/* ---- §2.10-2.12 dma-buf ---- */

static void test_export_userptr_eperm(void) {
        TestKfd k;
        uint64_t h, addr;
        void *p;
        int fd;

        test_kfd_open(&k, true);
        p = anon_pages(SZ_64K);
        addr = (uintptr_t) p;
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), addr, SZ_64K, USERPTR_FLAGS, &h, &addr));
        ASSERT_ERRNO(export_dmabuf(&k, h, &fd), EPERM);
        ASSERT_OK(test_free(&k, h));
        munmap(p, SZ_64K);
        test_kfd_close(&k);
}

static void test_export_bad_handle_einval(void) {
        TestKfd k;
        int fd;

        test_kfd_open(&k, true);
        ASSERT_ERRNO(export_dmabuf(&k, (uint64_t) gpu_id(&k, 0) << 32, &fd), EINVAL);
        ASSERT_ERRNO(export_dmabuf(&k, 0xfff0ULL << 32, &fd), EINVAL);
        test_kfd_close(&k);
}

static void test_export_new_fd_each_call(void) {
        TestKfd k;
        uint64_t h;
        int fd1, fd2;
        struct stat s1, s2;

        test_kfd_open(&k, true);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_64K, &h));
        ASSERT_OK(export_dmabuf(&k, h, &fd1));
        ASSERT_OK(export_dmabuf(&k, h, &fd2));
        ASSERT_NE(fd1, fd2);
        /* One cached dma-buf per BO: both fds are the same file. */
        ASSERT_TRUE(fstat(fd1, &s1) >= 0 && fstat(fd2, &s2) >= 0);
        ASSERT_EQ(s1.st_ino, s2.st_ino);
        ASSERT_EQ(s1.st_dev, s2.st_dev);
        ASSERT_TRUE((fcntl(fd1, F_GETFD) & FD_CLOEXEC) != 0);
        safe_close(fd1);
        safe_close(fd2);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_dmabuf_info(void) {
        TestKfd k;
        uint64_t h;
        unsigned g;
        int fd;
        struct kfd_ioctl_get_dmabuf_info_args info = {};

        test_kfd_open(&k, true);
        g = large_bar_gpu(&k);
        ASSERT_OK(test_alloc(&k, gpu_id(&k, g), test_va(&k, SZ_64K), SZ_64K - 100, VRAM_PUBLIC_FLAGS, &h, NULL));
        ASSERT_OK(export_dmabuf(&k, h, &fd));
        info.dmabuf_fd = (uint32_t) fd;
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_DMABUF_INFO, &info));
        ASSERT_EQ(info.size, SZ_64K);   /* page-aligned BO size */
        ASSERT_EQ(info.gpu_id, gpu_id(&k, g));
        ASSERT_EQ(info.flags & (KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_GTT),
                  KFD_IOC_ALLOC_MEM_FLAGS_VRAM);
        ASSERT_TRUE(info.flags & KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC);
        safe_close(fd);
        ASSERT_OK(test_free(&k, h));

        /* GTT reports GTT. */
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_64K), SZ_64K, GTT_FLAGS, &h, NULL));
        ASSERT_OK(export_dmabuf(&k, h, &fd));
        info = (struct kfd_ioctl_get_dmabuf_info_args) { .dmabuf_fd = (uint32_t) fd };
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_DMABUF_INFO, &info));
        ASSERT_EQ(info.flags & (KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_GTT),
                  KFD_IOC_ALLOC_MEM_FLAGS_GTT);
        safe_close(fd);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_dmabuf_info_bad_fd(void) {
        TestKfd k;
        int null_fd;
        struct kfd_ioctl_get_dmabuf_info_args info = { .dmabuf_fd = 999 };

        test_kfd_open(&k, false);
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_GET_DMABUF_INFO, &info), EBADF);
        null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        info.dmabuf_fd = (uint32_t) null_fd;
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_GET_DMABUF_INFO, &info), EINVAL);
        safe_close(null_fd);
        test_kfd_close(&k);
}

static void test_import_bad_fd_ebadf(void) {
        TestKfd k;
        uint64_t h;

        test_kfd_open(&k, true);
        ASSERT_ERRNO(import_dmabuf(&k, gpu_id(&k, 0), 999, test_va(&k, SZ_64K), &h), EBADF);
        test_kfd_close(&k);
}

static void test_import_own_export_second_handle(void) {
        TestKfd k;
        uint64_t h, h2, before, after_alloc, after_import;
        uint32_t ids[1];
        unsigned g;
        int fd;
        void *p, *q;

        test_kfd_open(&k, true);
        g = large_bar_gpu(&k);
        ids[0] = gpu_id(&k, g);
        ASSERT_OK(test_available(&k, ids[0], &before));
        uint64_t off = 0;
        ASSERT_OK(test_alloc(&k, ids[0], test_va(&k, SZ_64K), SZ_64K, VRAM_PUBLIC_FLAGS, &h, &off));
        ASSERT_OK(test_available(&k, ids[0], &after_alloc));
        ASSERT_OK(export_dmabuf(&k, h, &fd));
        ASSERT_OK(import_dmabuf(&k, ids[0], fd, test_va(&k, SZ_64K), &h2));
        ASSERT_NE(h, h2);
        /* Imported BOs are not counted. */
        ASSERT_OK(test_available(&k, ids[0], &after_import));
        ASSERT_EQ(after_import, after_alloc);
        ASSERT_EQ(before - after_alloc, SZ_2M);

        /* Same bytes behind both. */
        p = cpu_map(k.render[g], off, SZ_64K);
        q = cpu_map(fd, 0, SZ_64K);
        fill(p, SZ_64K, 3);
        ASSERT_TRUE(check(q, SZ_64K, 3));

        /* Independent handles: map/unmap/free each. */
        ASSERT_OK(test_map(&k, h2, ids, 1, NULL));
        ASSERT_OK(test_map(&k, h, ids, 1, NULL));
        ASSERT_OK(test_unmap(&k, h2, ids, 1, NULL));
        ASSERT_OK(test_free(&k, h2));
        ASSERT_OK(test_unmap(&k, h, ids, 1, NULL));
        ASSERT_OK(test_free(&k, h));
        munmap(p, SZ_64K);
        munmap(q, SZ_64K);
        safe_close(fd);
        test_kfd_close(&k);
}

static void test_exported_buffer_outlives_free(void) {
        TestKfd k;
        uint64_t h, h2, before, after, off = 0;
        struct kfd_ioctl_get_dmabuf_info_args info = {};
        unsigned g;
        int fd;
        void *p;

        test_kfd_open(&k, true);
        g = large_bar_gpu(&k);
        ASSERT_OK(test_available(&k, gpu_id(&k, g), &before));
        ASSERT_OK(test_alloc(&k, gpu_id(&k, g), test_va(&k, SZ_2M), SZ_2M, VRAM_PUBLIC_FLAGS, &h, &off));
        p = cpu_map(k.render[g], off, SZ_2M);
        fill(p, SZ_2M, 11);
        munmap(p, SZ_2M);
        ASSERT_OK(export_dmabuf(&k, h, &fd));
        ASSERT_OK(test_free(&k, h));

        /* The dma-buf holds the BO: contents there, memory still counted. */
        ASSERT_OK(test_available(&k, gpu_id(&k, g), &after));
        ASSERT_EQ(before - after, SZ_2M);
        info.dmabuf_fd = (uint32_t) fd;
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_DMABUF_INFO, &info));
        ASSERT_EQ(info.size, SZ_2M);
        p = cpu_map(fd, 0, SZ_2M);
        ASSERT_TRUE(check(p, SZ_2M, 11));
        munmap(p, SZ_2M);
        ASSERT_OK(import_dmabuf(&k, gpu_id(&k, g), fd, test_va(&k, SZ_2M), &h2));
        safe_close(fd);
        ASSERT_OK(test_available(&k, gpu_id(&k, g), &after));
        ASSERT_EQ(before - after, SZ_2M);
        /* The last reference goes: accounting released. */
        ASSERT_OK(test_free(&k, h2));
        ASSERT_OK(test_available(&k, gpu_id(&k, g), &after));
        ASSERT_EQ(after, before);
        test_kfd_close(&k);
}

static void test_dmabuf_shared_with_other_process(void) {
        TestKfd k;
        uint64_t h, off = 0;
        unsigned g;
        int fd, sv[2];
        pid_t pid;
        uint8_t *p;

        test_kfd_open(&k, true);
        g = large_bar_gpu(&k);
        ASSERT_OK(test_alloc(&k, gpu_id(&k, g), test_va(&k, SZ_2M), SZ_2M, VRAM_PUBLIC_FLAGS, &h, &off));
        p = cpu_map(k.render[g], off, SZ_2M);
        fill(p, SZ_2M, 42);
        ASSERT_OK(export_dmabuf(&k, h, &fd));

        ASSERT_TRUE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) >= 0);
        pid = spawn_self("helper_dmabuf_import", sv[1]);
        safe_close(sv[1]);
        ASSERT_OK(test_send_fd(sv[0], fd));
        ASSERT_EQ(wait_exit(pid), 0);
        safe_close(sv[0]);

        /* The helper wrote its answer into the first page through its own mapping. */
        ASSERT_EQ(p[0], 0xA5);
        ASSERT_EQ(p[1], 0x5A);
        ASSERT_TRUE(check(p + SZ_4K, SZ_2M - SZ_4K, (uint8_t) (42 + SZ_4K * 7)));
        munmap(p, SZ_2M);
        safe_close(fd);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void helper_dmabuf_import(void) {
        TestKfd k;
        struct kfd_ioctl_get_dmabuf_info_args info = {};
        uint64_t h;
        uint32_t ids[1];
        int sock, fd;
        uint8_t *p;

        sock = atoi(child_args[0]);
        fd = test_recv_fd(sock);
        ASSERT_TRUE(fd >= 0);

        test_kfd_open(&k, true);
        info.dmabuf_fd = (uint32_t) fd;
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_DMABUF_INFO, &info));
        ASSERT_EQ(info.size, SZ_2M);
        ASSERT_EQ(info.gpu_id, gpu_id(&k, large_bar_gpu(&k)));
        ASSERT_EQ(info.flags & KFD_IOC_ALLOC_MEM_FLAGS_VRAM, KFD_IOC_ALLOC_MEM_FLAGS_VRAM);

        ASSERT_OK(import_dmabuf(&k, info.gpu_id, fd, test_va(&k, SZ_2M), &h));
        ids[0] = info.gpu_id;
        ASSERT_OK(test_map(&k, h, ids, 1, NULL));

        p = cpu_map(fd, 0, SZ_2M);
        ASSERT_TRUE(check(p, SZ_2M, 42));
        p[0] = 0xA5;
        p[1] = 0x5A;
        munmap(p, SZ_2M);

        ASSERT_OK(test_unmap(&k, h, ids, 1, NULL));
        ASSERT_OK(test_free(&k, h));
        safe_close(fd);
        test_kfd_close(&k);
}

static void test_exported_buffer_outlives_process(void) {
        TestKfd k;
        uint64_t before, after, h;
        int fd, sv[2];
        pid_t pid;
        uint8_t *p;
        unsigned g;

        test_kfd_open(&k, true);
        g = large_bar_gpu(&k);
        ASSERT_OK(test_available(&k, gpu_id(&k, g), &before));
        ASSERT_TRUE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) >= 0);
        pid = spawn_self("helper_export_and_exit", sv[1]);
        safe_close(sv[1]);
        fd = test_recv_fd(sv[0]);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(wait_exit(pid), 0);
        safe_close(sv[0]);
        json_decref(test_dump());       /* the helper's context is torn down */

        p = cpu_map(fd, 0, SZ_2M);
        ASSERT_TRUE(check(p, SZ_2M, 77));
        munmap(p, SZ_2M);
        ASSERT_OK(test_available(&k, gpu_id(&k, g), &after));
        ASSERT_EQ(before - after, SZ_2M);
        ASSERT_OK(import_dmabuf(&k, gpu_id(&k, g), fd, test_va(&k, SZ_2M), &h));
        safe_close(fd);
        ASSERT_OK(test_free(&k, h));
        ASSERT_OK(test_available(&k, gpu_id(&k, g), &after));
        ASSERT_EQ(after, before);
        test_kfd_close(&k);
}

static void helper_export_and_exit(void) {
        TestKfd k;
        uint64_t h, off = 0;
        unsigned g;
        int fd;
        void *p;

        test_kfd_open(&k, true);
        g = large_bar_gpu(&k);
        ASSERT_OK(test_alloc(&k, gpu_id(&k, g), test_va(&k, SZ_2M), SZ_2M, VRAM_PUBLIC_FLAGS, &h, &off));
        p = cpu_map(k.render[g], off, SZ_2M);
        fill(p, SZ_2M, 77);
        ASSERT_OK(export_dmabuf(&k, h, &fd));
        ASSERT_OK(test_send_fd(atoi(child_args[0]), fd));
        /* Exit without FREE: teardown frees the handle, the dma-buf keeps the BO. */
}

/* More zombies than emu_reap_zombies() checks one by one (64), before and after a quarter is gone:
 * the batch through /proc/locks, and the check skipped while no backing file was closed. */
#define MANY_ZOMBIES 160

static void helper_export_many_and_exit(void) {
        TestKfd k;
        uint64_t h, off = 0;
        unsigned g;
        int fd;

        test_kfd_open(&k, true);
        g = large_bar_gpu(&k);
        for (unsigned i = 0; i < MANY_ZOMBIES; i++) {
                ASSERT_OK(test_alloc(&k, gpu_id(&k, g), test_va(&k, SZ_2M), SZ_2M, VRAM_PUBLIC_FLAGS, &h, &off));
                ASSERT_OK(export_dmabuf(&k, h, &fd));
                ASSERT_OK(test_send_fd(atoi(child_args[0]), fd));
                safe_close(fd);
        }
        /* Killed without FREE or close (as svmd by kill -9): the teardown of a dead process leaves
         * MANY_ZOMBIES buffers that only dma-bufs hold. */
        (void) kill(getpid(), SIGKILL);
}

static void helper_export_close_and_wait(void) {
        TestKfd k;
        uint64_t h, off = 0;
        unsigned g;
        int fd, sock = atoi(child_args[0]);
        char c;

        test_kfd_open(&k, true);
        g = large_bar_gpu(&k);
        ASSERT_OK(test_alloc(&k, gpu_id(&k, g), test_va(&k, SZ_2M), SZ_2M, VRAM_PUBLIC_FLAGS, &h, &off));
        ASSERT_OK(export_dmabuf(&k, h, &fd));
        safe_close(fd);
        ASSERT_EQ(write(sock, "a", 1), 1);
        ASSERT_EQ(read(sock, &c, 1), 1);        /* killed meanwhile */
}

static void test_many_exported_buffers_outlive_process(void) {
        TestKfd k;
        uint64_t before, after;
        int fds[MANY_ZOMBIES], sv[2];
        pid_t pid;
        unsigned g;

        test_kfd_open(&k, true);
        g = large_bar_gpu(&k);
        ASSERT_OK(test_available(&k, gpu_id(&k, g), &before));
        ASSERT_TRUE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) >= 0);
        pid = spawn_self("helper_export_many_and_exit", sv[1]);
        safe_close(sv[1]);
        for (unsigned i = 0; i < MANY_ZOMBIES; i++) {
                fds[i] = test_recv_fd(sv[0]);
                ASSERT_TRUE(fds[i] >= 0);
        }
        ASSERT_EQ(wait_exit(pid), 128 + SIGKILL);
        safe_close(sv[0]);

        /* Every fourth dma-buf closed: exactly those buffers' memory comes back, the others stay. */
        for (unsigned i = 0; i < MANY_ZOMBIES; i += 4)
                fds[i] = safe_close(fds[i]);
        ASSERT_OK(test_available(&k, gpu_id(&k, g), &after));
        ASSERT_EQ(before - after, (uint64_t) MANY_ZOMBIES * 3 / 4 * SZ_2M);
        ASSERT_OK(test_available(&k, gpu_id(&k, g), &after));
        ASSERT_EQ(before - after, (uint64_t) MANY_ZOMBIES * 3 / 4 * SZ_2M);

        /* A buffer whose dma-buf was closed before its process was killed joins the zombies dead,
         * with no close left to see: it is checked all the same. */
        {
                int sv2[2];
                pid_t pid2;
                char c;

                ASSERT_TRUE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv2) >= 0);
                pid2 = spawn_self("helper_export_close_and_wait", sv2[1]);
                safe_close(sv2[1]);
                ASSERT_EQ(read(sv2[0], &c, 1), 1);
                ASSERT_OK(test_available(&k, gpu_id(&k, g), &after));
                ASSERT_EQ(before - after, ((uint64_t) MANY_ZOMBIES * 3 / 4 + 1) * SZ_2M);
                ASSERT_TRUE(kill(pid2, SIGKILL) == 0);
                ASSERT_EQ(wait_exit(pid2), 128 + SIGKILL);
                safe_close(sv2[0]);
                ASSERT_OK(test_available(&k, gpu_id(&k, g), &after));
                ASSERT_EQ(before - after, (uint64_t) MANY_ZOMBIES * 3 / 4 * SZ_2M);
        }

        /* One more, then the rest: each close is seen. */
        fds[1] = safe_close(fds[1]);
        ASSERT_OK(test_available(&k, gpu_id(&k, g), &after));
        ASSERT_EQ(before - after, ((uint64_t) MANY_ZOMBIES * 3 / 4 - 1) * SZ_2M);
        for (unsigned i = 2; i < MANY_ZOMBIES; i++)
                if (i % 4 != 0)
                        fds[i] = safe_close(fds[i]);
        ASSERT_OK(test_available(&k, gpu_id(&k, g), &after));
        ASSERT_EQ(after, before);
        test_kfd_close(&k);
}

static void helper_alloc_and_wait(void) {
        TestKfd k;
        uint64_t h;
        uint32_t ids[TEST_MAX_GPUS];
        int sock = atoi(child_args[0]);
        char c;

        test_kfd_open(&k, true);
        all_gpu_ids(&k, ids);
        ASSERT_OK(test_alloc_vram(&k, 0, 4 * SZ_2M, &h));
        ASSERT_OK(test_map(&k, h, ids, 1, NULL));
        ASSERT_EQ(write(sock, "a", 1), 1);
        ASSERT_EQ(read(sock, &c, 1), 1);
        /* Exit with the buffer mapped: teardown must unmap and free it. */
}

static void test_teardown_on_exit(void) {
        TestKfd k;
        json_t *before, *after;
        uint64_t avail0, avail1;
        int sv[2];
        pid_t pid;
        char c;

        test_kfd_open(&k, true);
        before = test_dump_state();
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &avail0));
        ASSERT_TRUE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) >= 0);
        pid = spawn_self("helper_alloc_and_wait", sv[1]);
        safe_close(sv[1]);
        ASSERT_EQ(read(sv[0], &c, 1), 1);
        ASSERT_EQ(write(sv[0], "q", 1), 1);
        ASSERT_EQ(wait_exit(pid), 0);
        safe_close(sv[0]);
        after = test_dump_state();
        if (!json_equal(before, after)) {
                fputs("dump before:\n", stderr);
                json_dumpf(before, stderr, JSON_INDENT(2));
                fputs("\ndump after:\n", stderr);
                json_dumpf(after, stderr, JSON_INDENT(2));
                fputc('\n', stderr);
                ASSERT_TRUE(json_equal(before, after));
        }
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &avail1));
        ASSERT_EQ(avail1, avail0);
        json_decref(before);
        json_decref(after);
        test_kfd_close(&k);
}

static void test_dump_unchanged_after_alloc_map_unmap_free(void) {
        TestKfd k;
        json_t *before, *during, *after;
        uint64_t h[4], addr, off = 0;
        uint32_t ids[TEST_MAX_GPUS];
        unsigned n = 0;
        void *p;
        int fd;

        test_kfd_open(&k, true);
        all_gpu_ids(&k, ids);
        before = test_dump_state();

        ASSERT_OK(test_alloc_vram(&k, 0, SZ_2M, &h[n++]));
        ASSERT_OK(test_alloc(&k, ids[0], test_va(&k, SZ_64K), SZ_64K, GTT_FLAGS, &h[n++], &off));
        p = anon_pages(SZ_64K);
        addr = (uintptr_t) p;
        ASSERT_OK(test_alloc(&k, ids[0], addr, SZ_64K, USERPTR_FLAGS, &h[n++], &addr));
        ASSERT_OK(export_dmabuf(&k, h[0], &fd));
        ASSERT_OK(import_dmabuf(&k, ids[0], fd, test_va(&k, SZ_2M), &h[n++]));
        for (unsigned i = 0; i < n; i++)
                ASSERT_OK(test_map(&k, h[i], ids, i == 0 || i == 3 ? 1 : k.topo.n_gpus, NULL));

        during = test_dump_state();
        ASSERT_TRUE(!json_equal(before, during));

        for (unsigned i = 0; i < n; i++) {
                ASSERT_OK(test_unmap(&k, h[i], ids, i == 0 || i == 3 ? 1 : k.topo.n_gpus, NULL));
                ASSERT_OK(test_free(&k, h[i]));
        }
        safe_close(fd);
        munmap(p, SZ_64K);

        after = test_dump_state();
        if (!json_equal(before, after)) {
                fputs("dump before:\n", stderr);
                json_dumpf(before, stderr, JSON_INDENT(2));
                fputs("\ndump after:\n", stderr);
                json_dumpf(after, stderr, JSON_INDENT(2));
                fputc('\n', stderr);
                ASSERT_TRUE(json_equal(before, after));
        }
        json_decref(before);
        json_decref(during);
        json_decref(after);
        test_kfd_close(&k);
}

/* ---- §2.13 SVM ---- */

static void test_svm_unaligned_einval(void) {
        TestKfd k;
        uint64_t addr;
        void *p;

        test_kfd_open(&k, true);
        p = anon_pages(4 * SZ_4K);
        addr = (uintptr_t) p;
        ASSERT_ERRNO(svm_set1(&k, addr + 8, SZ_4K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0), EINVAL);
        ASSERT_ERRNO(svm_set1(&k, addr, SZ_4K + 8, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0), EINVAL);
        ASSERT_ERRNO(svm_set1(&k, addr, 0, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0), EINVAL);
        ASSERT_ERRNO(svm_set1(&k, 0, SZ_4K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0), EINVAL);
        munmap(p, 4 * SZ_4K);
        test_kfd_close(&k);
}

static void test_svm_unknown_attr_or_gpu_einval(void) {
        TestKfd k;
        uint64_t addr;
        SvmReq req = {};
        void *p;

        test_kfd_open(&k, true);
        p = anon_pages(SZ_64K);
        addr = (uintptr_t) p;
        ASSERT_ERRNO(svm_set1(&k, addr, SZ_64K, 99, 0), EINVAL);
        ASSERT_ERRNO(svm_set1(&k, addr, SZ_64K, KFD_IOCTL_SVM_ATTR_ACCESS, 0xfff0), EINVAL);
        ASSERT_ERRNO(svm_set1(&k, addr, SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0xfff0), EINVAL);
        /* Unknown op. */
        ASSERT_ERRNO(svm(&k, 7, addr, SZ_64K, &req, 0), EINVAL);
        munmap(p, SZ_64K);
        test_kfd_close(&k);
}

static void test_svm_unbacked_efault(void) {
        TestKfd k;
        uint64_t addr;
        void *p;

        test_kfd_open(&k, true);
        p = anon_pages(4 * SZ_64K);
        addr = (uintptr_t) p;
        /* A hole in the middle: not entirely covered by VMAs. */
        ASSERT_TRUE(munmap((uint8_t *) p + SZ_64K, SZ_64K) == 0);
        ASSERT_ERRNO(svm_set1(&k, addr, 4 * SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0), EFAULT);
        ASSERT_OK(svm_set1(&k, addr, SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0));
        munmap(p, 4 * SZ_64K);
        test_kfd_close(&k);
}

static void test_svm_overlap_mapped_bo_eaddrinuse(void) {
        TestKfd k;
        uint64_t h, addr;
        uint32_t ids[1];
        void *p;

        test_kfd_open(&k, true);
        ids[0] = gpu_id(&k, 0);
        p = anon_pages(SZ_2M);
        addr = (uintptr_t) p;
        ASSERT_OK(test_alloc(&k, ids[0], addr, SZ_64K, VRAM_FLAGS, &h, NULL));
        ASSERT_OK(test_map(&k, h, ids, 1, NULL));
        ASSERT_ERRNO(svm_set1(&k, addr, SZ_2M, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0), EADDRINUSE);
        ASSERT_OK(test_unmap(&k, h, ids, 1, NULL));
        ASSERT_OK(test_free(&k, h));
        ASSERT_OK(svm_set1(&k, addr, SZ_2M, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0));
        munmap(p, SZ_2M);
        test_kfd_close(&k);
}

static void test_svm_get_default(void) {
        TestKfd k;
        uint64_t addr;
        SvmReq req = {};
        void *p;

        test_kfd_open(&k, true);
        p = anon_pages(SZ_64K);
        addr = (uintptr_t) p;
        req.a[0].type = KFD_IOCTL_SVM_ATTR_PREFERRED_LOC;
        req.a[1].type = KFD_IOCTL_SVM_ATTR_PREFETCH_LOC;
        req.a[2].type = KFD_IOCTL_SVM_ATTR_SET_FLAGS;
        ASSERT_OK(svm(&k, KFD_IOCTL_SVM_OP_GET_ATTR, addr, SZ_64K, &req, 3));
        ASSERT_EQ(req.a[0].value, KFD_IOCTL_SVM_LOCATION_UNDEFINED);
        ASSERT_EQ(req.a[1].value, KFD_IOCTL_SVM_LOCATION_UNDEFINED);
        ASSERT_EQ(req.a[2].value, KFD_IOCTL_SVM_FLAG_HOST_ACCESS | KFD_IOCTL_SVM_FLAG_COHERENT);
        munmap(p, SZ_64K);
        test_kfd_close(&k);
}

static void test_svm_get_aggregation(void) {
        TestKfd k;
        struct kfd_ioctl_set_xnack_mode_args x = { .xnack_enabled = 0 };
        uint64_t addr, half = 2 * SZ_64K;
        SvmReq req = {};
        void *p;

        test_kfd_open(&k, true);
        ASSERT_TRUE(k.topo.n_gpus >= 2);
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_SET_XNACK_MODE, &x));
        p = anon_pages(2 * half);
        addr = (uintptr_t) p;

        /* A: preferred GPU0, +GPU_RO, access GPU0 and GPU1. B: preferred GPU1, +GPU_EXEC, -COHERENT, access GPU0. */
        req = (SvmReq) { .a = {
                { KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, gpu_id(&k, 0) },
                { KFD_IOCTL_SVM_ATTR_SET_FLAGS, KFD_IOCTL_SVM_FLAG_GPU_RO },
                { KFD_IOCTL_SVM_ATTR_ACCESS, gpu_id(&k, 0) },
                { KFD_IOCTL_SVM_ATTR_ACCESS, gpu_id(&k, 1) },
                { KFD_IOCTL_SVM_ATTR_GRANULARITY, 4 },
        } };
        ASSERT_OK(svm(&k, KFD_IOCTL_SVM_OP_SET_ATTR, addr, half, &req, 5));
        req = (SvmReq) { .a = {
                { KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, gpu_id(&k, 1) },
                { KFD_IOCTL_SVM_ATTR_SET_FLAGS, KFD_IOCTL_SVM_FLAG_GPU_EXEC },
                { KFD_IOCTL_SVM_ATTR_CLR_FLAGS, KFD_IOCTL_SVM_FLAG_COHERENT },
                { KFD_IOCTL_SVM_ATTR_ACCESS, gpu_id(&k, 0) },
                { KFD_IOCTL_SVM_ATTR_GRANULARITY, 2 },
        } };
        ASSERT_OK(svm(&k, KFD_IOCTL_SVM_OP_SET_ATTR, addr + half, half, &req, 5));

        req = (SvmReq) { .a = {
                { KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0 },
                { KFD_IOCTL_SVM_ATTR_SET_FLAGS, 0 },
                { KFD_IOCTL_SVM_ATTR_CLR_FLAGS, 0 },
                { KFD_IOCTL_SVM_ATTR_ACCESS, gpu_id(&k, 0) },
                { KFD_IOCTL_SVM_ATTR_ACCESS, gpu_id(&k, 1) },
                { KFD_IOCTL_SVM_ATTR_GRANULARITY, 0 },
        } };
        ASSERT_OK(svm(&k, KFD_IOCTL_SVM_OP_GET_ATTR, addr, 2 * half, &req, 6));
        ASSERT_EQ(req.a[0].value, KFD_IOCTL_SVM_LOCATION_UNDEFINED);           /* mixed */
        ASSERT_EQ(req.a[1].value, KFD_IOCTL_SVM_FLAG_HOST_ACCESS);              /* AND */
        ASSERT_EQ(req.a[2].value, ~(uint32_t) (KFD_IOCTL_SVM_FLAG_HOST_ACCESS | KFD_IOCTL_SVM_FLAG_COHERENT |
                                               KFD_IOCTL_SVM_FLAG_GPU_RO | KFD_IOCTL_SVM_FLAG_GPU_EXEC)); /* NOR */
        ASSERT_EQ(req.a[3].type, KFD_IOCTL_SVM_ATTR_ACCESS);                    /* both ranges */
        ASSERT_EQ(req.a[3].value, gpu_id(&k, 0));
        ASSERT_EQ(req.a[4].type, KFD_IOCTL_SVM_ATTR_NO_ACCESS);                 /* only A */
        ASSERT_EQ(req.a[5].value, 2);                                           /* min */

        /* Over A alone the values are A's. */
        req = (SvmReq) { .a = { { KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0 }, { KFD_IOCTL_SVM_ATTR_ACCESS, gpu_id(&k, 1) } } };
        ASSERT_OK(svm(&k, KFD_IOCTL_SVM_OP_GET_ATTR, addr, half, &req, 2));
        ASSERT_EQ(req.a[0].value, gpu_id(&k, 0));
        ASSERT_EQ(req.a[1].type, KFD_IOCTL_SVM_ATTR_ACCESS);
        munmap(p, 2 * half);
        test_kfd_close(&k);
}

static void test_svm_get_access_in_place_query_einval(void) {
        TestKfd k;
        uint64_t addr;
        SvmReq req = {};
        void *p;

        test_kfd_open(&k, true);
        p = anon_pages(SZ_64K);
        addr = (uintptr_t) p;
        ASSERT_OK(svm_set1(&k, addr, SZ_64K, KFD_IOCTL_SVM_ATTR_ACCESS, gpu_id(&k, 0)));
        req.a[0] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE, gpu_id(&k, 0) };
        ASSERT_ERRNO(svm(&k, KFD_IOCTL_SVM_OP_GET_ATTR, addr, SZ_64K, &req, 1), EINVAL);
        req.a[0] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_NO_ACCESS, gpu_id(&k, 0) };
        ASSERT_ERRNO(svm(&k, KFD_IOCTL_SVM_OP_GET_ATTR, addr, SZ_64K, &req, 1), EINVAL);
        munmap(p, SZ_64K);
        test_kfd_close(&k);
}

/* The CPU mapping goes away (MMU_NOTIFY_UNMAP → svm_range_unmap_from_cpu): the ranges under it go too. */
static void test_svm_cpu_munmap_splits_range(void) {
        TestKfd k;
        uint64_t addr;
        uint32_t g0;
        json_t *s;
        void *p, *q;

        test_kfd_open(&k, true);
        g0 = gpu_id(&k, 0);
        p = anon_pages(4 * SZ_64K);
        addr = (uintptr_t) p;
        ASSERT_OK(svm_set1(&k, addr, 4 * SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, g0));
        s = dump_svm();
        ASSERT_EQ(json_array_size(s), 1);
        assert_svm_range(s, 0, addr, 4 * SZ_64K, g0);
        json_decref(s);

        /* A hole in the middle: the range splits around it, both parts keep the attributes. */
        ASSERT_TRUE(munmap((uint8_t *) p + SZ_64K, SZ_64K) == 0);
        s = dump_svm();
        ASSERT_EQ(json_array_size(s), 2);
        assert_svm_range(s, 0, addr, SZ_64K, g0);
        assert_svm_range(s, 1, addr + 2 * SZ_64K, 2 * SZ_64K, g0);
        json_decref(s);

        /* Across both edges (partly unmapped already): the head of one and the tail of the other stay. */
        ASSERT_TRUE(munmap((uint8_t *) p + SZ_64K / 2, 2 * SZ_64K) == 0);
        s = dump_svm();
        ASSERT_EQ(json_array_size(s), 2);
        assert_svm_range(s, 0, addr, SZ_64K / 2, g0);
        assert_svm_range(s, 1, addr + SZ_64K * 5 / 2, SZ_64K * 3 / 2, g0);
        json_decref(s);
        ASSERT_EQ(svm_get1(&k, addr, SZ_64K / 2, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC), g0);
        ASSERT_EQ(svm_get1(&k, addr + SZ_64K * 5 / 2, SZ_64K * 3 / 2, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC), g0);
        /* The hole is no valid range for the ioctl. */
        ASSERT_ERRNO(svm_set1(&k, addr + SZ_64K, SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, g0), EFAULT);

        /* New anonymous memory in the hole has no attributes: GET gives the defaults. */
        q = mmap((uint8_t *) p + SZ_64K / 2, 2 * SZ_64K, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        ASSERT_TRUE(q == (uint8_t *) p + SZ_64K / 2);
        ASSERT_EQ(svm_get1(&k, (uintptr_t) q, 2 * SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC),
                  KFD_IOCTL_SVM_LOCATION_UNDEFINED);
        ASSERT_EQ(svm_get1(&k, (uintptr_t) q, 2 * SZ_64K, KFD_IOCTL_SVM_ATTR_SET_FLAGS),
                  KFD_IOCTL_SVM_FLAG_HOST_ACCESS | KFD_IOCTL_SVM_FLAG_COHERENT);
        ASSERT_EQ(n_svm_ranges(), 2);

        ASSERT_TRUE(munmap(p, 4 * SZ_64K) == 0);
        ASSERT_EQ(n_svm_ranges(), 0);
        test_kfd_close(&k);
}

static void test_svm_cpu_munmap_frees_va_for_alloc(void) {
        TestKfd k;
        uint64_t h, addr;
        void *p;

        test_kfd_open(&k, true);
        p = anon_pages(SZ_2M);
        addr = (uintptr_t) p;
        ASSERT_OK(svm_set1(&k, addr, SZ_2M, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, KFD_IOCTL_SVM_LOCATION_SYSMEM));
        ASSERT_ERRNO(test_alloc(&k, gpu_id(&k, 0), addr, SZ_64K, VRAM_FLAGS, &h, NULL), EADDRINUSE);
        ASSERT_TRUE(munmap(p, SZ_2M) == 0);
        ASSERT_EQ(n_svm_ranges(), 0);
        /* The VA is no SVM range any more: a BO can have it. */
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), addr, SZ_64K, VRAM_FLAGS, &h, NULL));
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_svm_cpu_map_fixed_drops_range(void) {
        _cleanup_close_ int mfd = -EBADF;
        TestKfd k;
        uint64_t addr;
        uint32_t g0;
        json_t *s;
        void *p, *q;

        test_kfd_open(&k, true);
        g0 = gpu_id(&k, 0);
        p = anon_pages(2 * SZ_64K);
        addr = (uintptr_t) p;
        ASSERT_OK(svm_set1(&k, addr, 2 * SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, g0));

        /* MAP_FIXED_NOREPLACE replaces nothing: it fails, the range stays. */
        q = mmap(p, SZ_64K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        ASSERT_TRUE(q == MAP_FAILED);
        ASSERT_EQ(errno, EEXIST);
        ASSERT_EQ(n_svm_ranges(), 1);

        /* Anonymous MAP_FIXED over the first half: that half of the range is gone. */
        q = mmap(p, SZ_64K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        ASSERT_TRUE(q == p);
        s = dump_svm();
        ASSERT_EQ(json_array_size(s), 1);
        assert_svm_range(s, 0, addr + SZ_64K, SZ_64K, g0);
        json_decref(s);
        ASSERT_EQ(svm_get1(&k, addr, SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC), KFD_IOCTL_SVM_LOCATION_UNDEFINED);
        ASSERT_EQ(svm_get1(&k, addr + SZ_64K, SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC), g0);

        /* A file mapped MAP_FIXED over the rest: nothing is left. */
        mfd = memfd_create("svm-fixed", MFD_CLOEXEC);
        ASSERT_TRUE(mfd >= 0);
        ASSERT_TRUE(ftruncate(mfd, (off_t) SZ_64K) == 0);
        q = mmap((uint8_t *) p + SZ_64K, SZ_64K, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, mfd, 0);
        ASSERT_TRUE(q == (uint8_t *) p + SZ_64K);
        ASSERT_EQ(n_svm_ranges(), 0);
        ASSERT_EQ(svm_get1(&k, addr, 2 * SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC), KFD_IOCTL_SVM_LOCATION_UNDEFINED);
        ASSERT_TRUE(munmap(p, 2 * SZ_64K) == 0);
        test_kfd_close(&k);
}

static void test_svm_cpu_mremap_drops_source(void) {
        TestKfd k;
        uint64_t addr;
        uint32_t g0;
        json_t *s;
        void *p, *q, *dst;

        test_kfd_open(&k, true);
        g0 = gpu_id(&k, 0);
        p = anon_pages(4 * SZ_64K);
        addr = (uintptr_t) p;
        ASSERT_OK(svm_set1(&k, addr, 4 * SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, g0));

        /* Shrunk in place: the tail is unmapped. */
        q = mremap(p, 4 * SZ_64K, 2 * SZ_64K, 0);
        ASSERT_TRUE(q == p);
        s = dump_svm();
        ASSERT_EQ(json_array_size(s), 1);
        assert_svm_range(s, 0, addr, 2 * SZ_64K, g0);
        json_decref(s);

        /* Moved: the ranges stay at the old VA, which the move unmapped; the new VA has none. */
        dst = anon_pages(2 * SZ_64K);
        q = mremap(p, 2 * SZ_64K, 2 * SZ_64K, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
        ASSERT_TRUE(q == dst);
        ASSERT_EQ(n_svm_ranges(), 0);
        ASSERT_EQ(svm_get1(&k, (uintptr_t) dst, 2 * SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC),
                  KFD_IOCTL_SVM_LOCATION_UNDEFINED);
        ASSERT_TRUE(munmap(dst, 2 * SZ_64K) == 0);
        test_kfd_close(&k);
}

/* op=set: only SET_ATTR calls match; after=K applies attributes [0, K), then the errno. */
static void test_svm_fault_op_set_after_k(void) {
        TestKfd k;
        uint64_t addr, seen, fired;
        SvmReq req;
        uint32_t g0;
        void *p;

        test_kfd_open(&k, true);
        g0 = gpu_id(&k, 0);
        p = anon_pages(SZ_64K);
        addr = (uintptr_t) p;
        test_fault("ioctl=SVM op=set errno=EIO after=1 count=1");

        /* A GET first: another op, so the fault neither fires nor counts it. */
        req = (SvmReq) { .a = {
                { KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0 },
                { KFD_IOCTL_SVM_ATTR_SET_FLAGS, 0 },
                { KFD_IOCTL_SVM_ATTR_GRANULARITY, 0 },
        } };
        ASSERT_OK(svm(&k, KFD_IOCTL_SVM_OP_GET_ATTR, addr, SZ_64K, &req, 3));
        ASSERT_EQ(req.a[0].value, KFD_IOCTL_SVM_LOCATION_UNDEFINED);
        ASSERT_EQ(req.a[1].value, KFD_IOCTL_SVM_FLAG_HOST_ACCESS | KFD_IOCTL_SVM_FLAG_COHERENT);
        ASSERT_EQ(req.a[2].value, 9);
        fault_counters(0, &seen, &fired);
        ASSERT_EQ(seen, 0);
        ASSERT_EQ(fired, 0);

        /* The SET: the first of its three attributes is applied, then EIO. */
        req = (SvmReq) { .a = {
                { KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, g0 },
                { KFD_IOCTL_SVM_ATTR_SET_FLAGS, KFD_IOCTL_SVM_FLAG_GPU_RO },
                { KFD_IOCTL_SVM_ATTR_GRANULARITY, 4 },
        } };
        ASSERT_ERRNO(svm(&k, KFD_IOCTL_SVM_OP_SET_ATTR, addr, SZ_64K, &req, 3), EIO);
        fault_counters(0, &seen, &fired);
        ASSERT_EQ(seen, 1);
        ASSERT_EQ(fired, 1);
        ASSERT_EQ(svm_get1(&k, addr, SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC), g0);
        ASSERT_EQ(svm_get1(&k, addr, SZ_64K, KFD_IOCTL_SVM_ATTR_SET_FLAGS),
                  KFD_IOCTL_SVM_FLAG_HOST_ACCESS | KFD_IOCTL_SVM_FLAG_COHERENT);
        ASSERT_EQ(svm_get1(&k, addr, SZ_64K, KFD_IOCTL_SVM_ATTR_GRANULARITY), 9);

        /* count=1 is spent: the same SET now applies all three. */
        ASSERT_OK(svm(&k, KFD_IOCTL_SVM_OP_SET_ATTR, addr, SZ_64K, &req, 3));
        ASSERT_EQ(svm_get1(&k, addr, SZ_64K, KFD_IOCTL_SVM_ATTR_SET_FLAGS),
                  KFD_IOCTL_SVM_FLAG_HOST_ACCESS | KFD_IOCTL_SVM_FLAG_COHERENT | KFD_IOCTL_SVM_FLAG_GPU_RO);
        ASSERT_EQ(svm_get1(&k, addr, SZ_64K, KFD_IOCTL_SVM_ATTR_GRANULARITY), 4);
        ASSERT_TRUE(munmap(p, SZ_64K) == 0);
        test_kfd_close(&k);
}

static void test_svm_fault_op_get(void) {
        TestKfd k;
        uint64_t addr, seen, fired;
        SvmReq req = { .a[0] = { KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0 } };
        uint32_t g0;
        void *p;

        test_kfd_open(&k, true);
        g0 = gpu_id(&k, 0);
        p = anon_pages(SZ_64K);
        addr = (uintptr_t) p;
        test_fault("ioctl=SVM op=get nth=1 errno=ENOMEM count=1");
        /* SETs pass untouched and uncounted; the first GET fails, the next one does not. */
        ASSERT_OK(svm_set1(&k, addr, SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, g0));
        ASSERT_OK(svm_set1(&k, addr, SZ_64K, KFD_IOCTL_SVM_ATTR_SET_FLAGS, KFD_IOCTL_SVM_FLAG_GPU_RO));
        fault_counters(0, &seen, &fired);
        ASSERT_EQ(seen, 0);
        ASSERT_ERRNO(svm(&k, KFD_IOCTL_SVM_OP_GET_ATTR, addr, SZ_64K, &req, 1), ENOMEM);
        ASSERT_EQ(svm_get1(&k, addr, SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC), g0);
        fault_counters(0, &seen, &fired);
        ASSERT_EQ(seen, 2);
        ASSERT_EQ(fired, 1);
        ASSERT_TRUE(munmap(p, SZ_64K) == 0);
        test_kfd_close(&k);
}

static void test_fault_op_only_for_svm(void) {
        /* op= narrows SVM calls only; the grammar refuses it elsewhere, and unknown ops. */
        ASSERT_EQ(test_ctl("fault", "add", "ioctl=ALLOC_MEMORY_OF_GPU op=set errno=EIO", NULL), 2);
        ASSERT_EQ(test_ctl("fault", "add", "ioctl=MAP_MEMORY_TO_GPU op=get errno=EIO after=1", NULL), 2);
        ASSERT_EQ(test_ctl("fault", "add", "ioctl=SVM op=prefetch errno=EIO", NULL), 2);
        ASSERT_EQ(test_ctl("fault", "add", "ioctl=SVM op= errno=EIO", NULL), 2);
        test_fault("ioctl=SVM op=get errno=EIO");
        test_fault("ioctl=SVM op=set errno=EIO after=2 count=0");
        ASSERT_EQ(test_ctl("fault", "clear", NULL), 0);
}

/* ---- §2.14 XNACK ---- */

static void test_xnack_query(void) {
        TestKfd k;
        struct kfd_ioctl_set_xnack_mode_args x = { .xnack_enabled = -1 };

        test_kfd_open(&k, false);
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_SET_XNACK_MODE, &x));
        ASSERT_TRUE(x.xnack_enabled == 0 || x.xnack_enabled == 1);
        /* Setting the current mode again is a no-op. */
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_SET_XNACK_MODE, &x));
        test_kfd_close(&k);
}

static void test_xnack_unsupported_eperm(void) {
        TestKfd k;
        struct kfd_ioctl_set_xnack_mode_args x = { .xnack_enabled = 0 };

        /* gfx10+ cannot do per-process XNACK: enabling is EPERM, disabling works. */
        test_kfd_open(&k, false);
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_SET_XNACK_MODE, &x));
        x.xnack_enabled = 1;
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_SET_XNACK_MODE, &x), EPERM);
        x.xnack_enabled = -1;
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_SET_XNACK_MODE, &x));
        ASSERT_EQ(x.xnack_enabled, 0);
        test_kfd_close(&k);
}

static void test_xnack_enable_supported(void) {
        TestKfd k;
        struct kfd_ioctl_set_xnack_mode_args x = { .xnack_enabled = 1 };

        test_kfd_open(&k, false);
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_SET_XNACK_MODE, &x));
        x.xnack_enabled = -1;
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_SET_XNACK_MODE, &x));
        ASSERT_EQ(x.xnack_enabled, 1);
        test_kfd_close(&k);
}

/* ---- §2.16 CREATE_PROCESS (1.19) ---- */

static void test_create_process_secondary(void) {
        TestKfd k;
        struct kfd_ioctl_get_version_args v = {};
        uint64_t hp, hs, before, during, after, addr;
        int fd2, render2;
        void *p;

        test_kfd_open(&k, true);
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_VERSION, &v));
        ASSERT_TRUE(v.minor_version >= SVMD_KFD_MINOR_CREATE_PROCESS);
        ASSERT_OK(test_alloc_vram(&k, 0, SZ_4K, &hp));
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &before));

        fd2 = open("/dev/kfd", O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(fd2 >= 0);
        ASSERT_OK(test_ioctl(fd2, AMDKFD_IOC_CREATE_PROCESS, NULL));
        /* Only a primary fd can create one. */
        ASSERT_ERRNO(test_ioctl(fd2, AMDKFD_IOC_CREATE_PROCESS, NULL), EINVAL);

        {
                TestKfd s = k;

                s.fd = fd2;
                /* Own pdds: no VM yet; the primary's render file is already a compute VM. */
                ASSERT_ERRNO(test_alloc_vram(&s, 0, SZ_4K, &hs), ENODEV);
                ASSERT_ERRNO(acquire_vm(&s, fd2, k.render[0], gpu_id(&k, 0)), EINVAL);
                render2 = open_render(&k, 0);
                ASSERT_OK(acquire_vm(&s, fd2, render2, gpu_id(&k, 0)));

                /* Own idr: handle 0 again. */
                ASSERT_OK(test_alloc_vram(&s, 0, SZ_4K, &hs));
                ASSERT_EQ(hs, (uint64_t) gpu_id(&k, 0) << 32);
                ASSERT_OK(test_available(&k, gpu_id(&k, 0), &during));
                ASSERT_EQ(before - during, SZ_2M);

                /* No USERPTR, no SVM in a secondary context. */
                p = anon_pages(SZ_64K);
                addr = (uintptr_t) p;
                ASSERT_ERRNO(test_alloc(&s, gpu_id(&k, 0), addr, SZ_64K, USERPTR_FLAGS, &hs, &addr), EOPNOTSUPP);
                ASSERT_ERRNO(svm_set1(&s, (uintptr_t) p, SZ_64K, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0), EOPNOTSUPP);
                munmap(p, SZ_64K);
        }

        /* Closing the fd destroys the secondary context and frees its buffer. */
        safe_close(fd2);
        safe_close(render2);
        json_decref(test_dump());
        ASSERT_OK(test_available(&k, gpu_id(&k, 0), &after));
        ASSERT_EQ(after, before);
        /* The primary is untouched. */
        ASSERT_OK(test_free(&k, hp));
        test_kfd_close(&k);
}

/* Bit i set: this process has a secondary context with context_id i (< 64). */
static uint64_t secondary_context_ids(void) {
        json_t *d = test_dump(), *p;
        uint64_t ids = 0;
        size_t i;

        json_array_foreach(json_object_get(d, "processes"), i, p)
                if (json_integer_value(json_object_get(p, "pid")) == getpid() &&
                    json_is_true(json_object_get(p, "secondary"))) {
                        json_int_t id = json_integer_value(json_object_get(p, "context_id"));

                        ASSERT_TRUE(id >= 0 && id < 64);
                        ids |= UINT64_C(1) << id;
                }
        json_decref(d);
        return ids;
}

/* kfd_process_alloc_id: ids from the primary's ida, lowest free first, reused. */
static void test_create_process_context_ids(void) {
        TestKfd k;
        int a, b, c;

        test_kfd_open(&k, true);
        a = open("/dev/kfd", O_RDWR | O_CLOEXEC);
        b = open("/dev/kfd", O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(a >= 0 && b >= 0);
        ASSERT_OK(test_ioctl(a, AMDKFD_IOC_CREATE_PROCESS, NULL));
        ASSERT_EQ(secondary_context_ids(), 0x1);
        ASSERT_OK(test_ioctl(b, AMDKFD_IOC_CREATE_PROCESS, NULL));
        ASSERT_EQ(secondary_context_ids(), 0x3);
        safe_close(a);
        ASSERT_EQ(secondary_context_ids(), 0x2);
        c = open("/dev/kfd", O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(c >= 0);
        ASSERT_OK(test_ioctl(c, AMDKFD_IOC_CREATE_PROCESS, NULL));
        ASSERT_EQ(secondary_context_ids(), 0x3);
        safe_close(b);
        safe_close(c);
        ASSERT_EQ(secondary_context_ids(), 0);
        test_kfd_close(&k);
}

static void test_create_process_unsupported_einval(void) {
        TestKfd k;
        struct kfd_ioctl_get_version_args v = {};

        /* Before 1.19 nr 0x27 is outside the table. */
        test_kfd_open(&k, true);
        ASSERT_OK(test_ioctl(k.fd, AMDKFD_IOC_GET_VERSION, &v));
        ASSERT_TRUE(v.minor_version < SVMD_KFD_MINOR_CREATE_PROCESS);
        ASSERT_ERRNO(test_ioctl(k.fd, AMDKFD_IOC_CREATE_PROCESS, NULL), EINVAL);
        test_kfd_close(&k);
}

/* ---- §2.17 mmap ---- */

static void test_mmap_vram_through_render_fd(void) {
        TestKfd k;
        uint64_t h, off = 0;
        unsigned g;
        void *p;

        test_kfd_open(&k, true);
        g = large_bar_gpu(&k);
        ASSERT_OK(test_alloc(&k, gpu_id(&k, g), test_va(&k, SZ_2M), SZ_2M, VRAM_PUBLIC_FLAGS, &h, &off));
        ASSERT_EQ(off % SZ_4K, 0);
        p = cpu_map(k.render[g], off, SZ_2M);
        fill(p, SZ_2M, 5);
        munmap(p, SZ_2M);
        /* A second mapping sees the same bytes (the BO, not a private copy). */
        p = cpu_map(k.render[g], off, SZ_2M);
        ASSERT_TRUE(check(p, SZ_2M, 5));
        munmap(p, SZ_2M);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_mmap_gtt_through_render_fd(void) {
        TestKfd k;
        uint64_t h, off = 0;
        void *p, *q;

        test_kfd_open(&k, true);
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_64K), SZ_64K, GTT_FLAGS, &h, &off));
        p = cpu_map(k.render[0], off, SZ_64K);
        q = cpu_map(k.render[0], off, SZ_64K);
        fill(p, SZ_64K, 9);
        ASSERT_TRUE(check(q, SZ_64K, 9));
        munmap(p, SZ_64K);
        munmap(q, SZ_64K);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static void test_mmap_mmio_through_kfd_size_einval(void) {
        TestKfd k;
        uint64_t h, off = 0;
        uint32_t flags = KFD_IOC_ALLOC_MEM_FLAGS_MMIO_REMAP | ALLOC_FLAG_WRITABLE |
                         KFD_IOC_ALLOC_MEM_FLAGS_COHERENT | KFD_IOC_ALLOC_MEM_FLAGS_NO_SUBSTITUTE;
        void *p;

        test_kfd_open(&k, true);
        ASSERT_OK(test_alloc(&k, gpu_id(&k, 0), test_va(&k, SZ_4K), SZ_4K, flags, &h, &off));
        p = mmap(NULL, 2 * SZ_4K, PROT_READ | PROT_WRITE, MAP_SHARED, k.fd, (off_t) off);
        ASSERT_TRUE(p == MAP_FAILED);
        ASSERT_EQ(errno, EINVAL);
        p = mmap(NULL, SZ_4K, PROT_READ | PROT_WRITE, MAP_SHARED, k.fd, (off_t) off);
        ASSERT_TRUE(p != MAP_FAILED);
        munmap(p, SZ_4K);
        ASSERT_OK(test_free(&k, h));
        test_kfd_close(&k);
}

static const TestCase tests[] = {
        TEST(test_get_version),
        TEST(test_unknown_nr_einval),
        TEST(test_nr_0x28_not_batch_alloc),
        TEST(test_dispatch_by_nr_only),
        TEST(test_short_struct_zero_filled),
        TEST(test_long_struct_copied_verbatim),
        TEST(test_copy_back_on_failure_n_success),
        TEST(test_ioctl_from_forked_child_ebadf),
        TEST(test_forked_child_own_kfd_is_empty),
        TEST(test_multiple_opens_share_state),
        TEST(test_close_kfd_keeps_buffers),
        TEST(test_apertures_every_gpu_without_vm),
        TEST(test_available_memory_unknown_gpu_einval),
        TEST(test_acquire_vm_bad_fd_einval),
        TEST(test_acquire_vm_non_amdgpu_file_einval),
        TEST(test_acquire_vm_unknown_gpu_einval),
        TEST(test_acquire_vm_same_file_ok),
        TEST(test_acquire_vm_other_file_ebusy),
        TEST(test_acquire_vm_file_of_other_gpu_einval),
        TEST(test_acquire_vm_survives_render_close),
        TEST(test_alloc_without_vm_enodev),
        TEST(test_map_peer_without_vm_enodev),
        TEST(test_set_memory_policy_without_vm_esrch),
        TEST(test_import_without_vm_enodev),
        TEST(test_handles_lowest_free_idr_reused),
        TEST(test_alloc_size_zero_einval),
        TEST(test_alloc_unknown_gpu_einval),
        TEST(test_public_vram_small_bar_einval),
        TEST(test_alloc_no_type_bit_einval),
        TEST(test_alloc_userptr_zero_address_einval),
        TEST(test_alloc_over_vram_enomem),
        TEST(test_alloc_mmio_remap_size_einval),
        TEST(test_alloc_va_not_validated),
        TEST(test_alloc_unknown_flag_bits_ignored),
        TEST(test_alloc_multi_type_bits_first_wins),
        TEST(test_alloc_svm_overlap_eaddrinuse),
        TEST(test_available_memory_2mib_units),
        TEST(test_vram_accounting_is_node_wide),
        TEST(test_gtt_limited_by_ttm),
        TEST(test_vram_limit_pt_estimate_floor),
        TEST(test_vram_limit_pt_estimate_scaled),
        TEST(test_clock_counters),
        TEST(test_set_scratch_backing_va),
        TEST(test_tile_config),
        TEST(test_map_n_devices_zero_einval),
        TEST(test_map_bad_handle_enomem),
        TEST(test_map_already_mapped_is_noop),
        TEST(test_map_duplicate_ids_noop),
        TEST(test_map_all_gpus_one_call),
        TEST(test_map_va_unaligned_einval),
        TEST(test_map_va_zero_einval),
        TEST(test_map_va_beyond_vm_einval),
        TEST(test_map_va_overlap_einval),
        TEST(test_peer_xgmi_accessible),
        TEST(test_peer_not_accessible_einval),
        TEST(test_unmap_not_mapped_einval),
        TEST(test_unmap_twice_einval),
        TEST(test_unmap_without_vm_ok),
        TEST(test_map_partial_fault_after_k),
        TEST(test_map_fault_on_gpu),
        TEST(test_fault_nth_call),
        TEST(test_fault_clear),
        TEST(test_map_eintr_restart_with_n_success),
        TEST(test_map_eintr_after_all_devices),
        TEST(test_unmap_eintr_restart_with_n_success),
        TEST(test_free_mapped_ebusy),
        TEST(test_free_bad_handle_einval),
        TEST(test_export_userptr_eperm),
        TEST(test_export_bad_handle_einval),
        TEST(test_export_new_fd_each_call),
        TEST(test_dmabuf_info),
        TEST(test_dmabuf_info_bad_fd),
        TEST(test_import_bad_fd_ebadf),
        TEST(test_import_own_export_second_handle),
        TEST(test_exported_buffer_outlives_free),
        TEST(test_dmabuf_shared_with_other_process),
        TEST(test_exported_buffer_outlives_process),
        TEST(test_many_exported_buffers_outlive_process),
        TEST(test_teardown_on_exit),
        TEST(test_dump_unchanged_after_alloc_map_unmap_free),
        TEST(test_svm_unaligned_einval),
        TEST(test_svm_unknown_attr_or_gpu_einval),
        TEST(test_svm_unbacked_efault),
        TEST(test_svm_overlap_mapped_bo_eaddrinuse),
        TEST(test_svm_get_default),
        TEST(test_svm_get_aggregation),
        TEST(test_svm_get_access_in_place_query_einval),
        TEST(test_svm_cpu_munmap_splits_range),
        TEST(test_svm_cpu_munmap_frees_va_for_alloc),
        TEST(test_svm_cpu_map_fixed_drops_range),
        TEST(test_svm_cpu_mremap_drops_source),
        TEST(test_svm_fault_op_set_after_k),
        TEST(test_svm_fault_op_get),
        TEST(test_fault_op_only_for_svm),
        TEST(test_xnack_query),
        TEST(test_xnack_unsupported_eperm),
        TEST(test_xnack_enable_supported),
        TEST(test_create_process_secondary),
        TEST(test_create_process_context_ids),
        TEST(test_create_process_unsupported_einval),
        TEST(test_mmap_vram_through_render_fd),
        TEST(test_mmap_gtt_through_render_fd),
        TEST(test_mmap_mmio_through_kfd_size_einval),
};

/* Helper programs started by exec from the tests above; not tests themselves. */
static const TestCase helpers[] = {
        { "helper_dmabuf_import", helper_dmabuf_import },
        { "helper_export_and_exit", helper_export_and_exit },
        { "helper_export_many_and_exit", helper_export_many_and_exit },
        { "helper_export_close_and_wait", helper_export_close_and_wait },
        { "helper_alloc_and_wait", helper_alloc_and_wait },
};

int main(int argc, char *argv[]) {
        if (argc >= 2 && strncmp(argv[1], "helper_", 7) == 0) {
                child_args = argv + 2;
                for (size_t i = 0; i < ELEMENTSOF(helpers); i++)
                        if (strcmp(argv[1], helpers[i].name) == 0) {
                                helpers[i].run();
                                return EXIT_SUCCESS;
                        }
                return EXIT_FAILURE;
        }
        return test_main(tests, ELEMENTSOF(tests), argc, argv);
}
