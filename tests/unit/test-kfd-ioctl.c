/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The restart logic of the ioctl wrappers against a fake kernel. The wrappers
 * are compiled into this test with the seam switched on, so the fake replaces
 * ioctl() here only; the library calls ioctl() directly.
 */

#define KFD_IOCTL_TEST_SEAM 1
#include "kfd-ioctl.c"

#include <limits.h>

#include "unit-assert.h"

#define FAKE_FD 1000
#define MAX_GPUS 8
#define MAX_CALLS 256

/* What the fake kernel does at a given (call, device index): interrupt or fail there. */
typedef struct FakeEvent {
        unsigned call;          /* 1-based call number */
        uint32_t index;         /* stop before device index; == n_devices: after the loop (fence wait) */
        int err;
} FakeEvent;

static struct {
        unsigned calls;
        unsigned long last_request;
        uint32_t entry_n_success[MAX_CALLS];
        bool mapped[MAX_GPUS];
        FakeEvent events[8];
        size_t n_events;
        int always_errno;       /* every call fails with this */
        unsigned fail_first;    /* the first N calls fail with fail_errno */
        int fail_errno;
        struct kfd_ioctl_svm_attribute svm_seen[16];
        uint32_t svm_seen_n;
        uint32_t export_flags;
} fake;

static void fake_reset(void) {
        memset(&fake, 0, sizeof(fake));
}

static int fake_event(uint32_t index) {
        for (size_t i = 0; i < fake.n_events; i++)
                if (fake.events[i].call == fake.calls && fake.events[i].index == index)
                        return fake.events[i].err;
        return 0;
}

static int fake_fail(int e) {
        errno = e;
        return -1;
}

/* kfd_chardev.c: kfd_ioctl_map_memory_to_gpu / unmap_memory_from_gpu. */
static int fake_map_unmap(struct kfd_ioctl_map_memory_to_gpu_args *args, bool map) {
        const uint32_t *ids = (const uint32_t *) (uintptr_t) args->device_ids_array_ptr;
        int e;

        if (fake.calls <= MAX_CALLS)
                fake.entry_n_success[fake.calls - 1] = args->n_success;

        if (args->n_devices == 0 || args->n_success > args->n_devices)
                return fake_fail(EINVAL);

        for (uint32_t i = args->n_success; i < args->n_devices; i++) {
                uint32_t gpu = ids[i];

                e = fake_event(i);
                if (e)
                        return fake_fail(e);
                ASSERT_TRUE(gpu < MAX_GPUS);
                if (map)
                        fake.mapped[gpu] = true;        /* re-map is a no-op */
                else {
                        if (!fake.mapped[gpu])
                                return fake_fail(EINVAL); /* unmap is not idempotent */
                        fake.mapped[gpu] = false;
                }
                args->n_success = i + 1;
        }

        /* The interruptible fence wait after all devices. */
        e = fake_event(args->n_devices);
        if (e)
                return fake_fail(e);
        return 0;
}

static int fake_ioctl(int fd, unsigned long request, void *arg) {
        ASSERT_EQ(fd, FAKE_FD);
        fake.calls++;
        fake.last_request = request;

        if (fake.always_errno)
                return fake_fail(fake.always_errno);
        if (fake.calls <= fake.fail_first)
                return fake_fail(fake.fail_errno);

        if (request == AMDKFD_IOC_MAP_MEMORY_TO_GPU)
                return fake_map_unmap(arg, true);
        if (request == AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU)
                return fake_map_unmap(arg, false);

        if (request == AMDKFD_IOC_ALLOC_MEMORY_OF_GPU) {
                struct kfd_ioctl_alloc_memory_of_gpu_args *a = arg;
                a->handle = ((uint64_t) a->gpu_id << 32) | 7;
                a->mmap_offset = 0x100000;
                return 0;
        }
        if (request == AMDKFD_IOC_FREE_MEMORY_OF_GPU)
                return 0;
        if (request == AMDKFD_IOC_EXPORT_DMABUF) {
                struct kfd_ioctl_export_dmabuf_args *a = arg;
                fake.export_flags = a->flags;
                a->dmabuf_fd = 77;
                return 0;
        }
        if (request == AMDKFD_IOC_GET_VERSION) {
                struct kfd_ioctl_get_version_args *a = arg;
                a->major_version = 1;
                a->minor_version = 16;
                return 0;
        }
        if (_IOC_TYPE(request) == AMDKFD_IOCTL_BASE && _IOC_NR(request) == 0x20) {
                struct kfd_ioctl_svm_args *a = arg;

                /* The size field must cover header and attributes. */
                ASSERT_EQ(_IOC_DIR(request), _IOC_READ | _IOC_WRITE);
                ASSERT_UEQ(_IOC_SIZE(request), sizeof(*a) + a->nattr * sizeof(a->attrs[0]));
                ASSERT_TRUE(a->nattr <= ELEMENTSOF(fake.svm_seen));
                memcpy(fake.svm_seen, a->attrs, a->nattr * sizeof(a->attrs[0]));
                fake.svm_seen_n = a->nattr;
                if (a->op == KFD_IOCTL_SVM_OP_GET_ATTR)
                        for (uint32_t i = 0; i < a->nattr; i++)
                                a->attrs[i].value = 0x1000 + i;
                return 0;
        }

        return fake_fail(EINVAL);
}

static void setup(void) {
        fake_reset();
        kfd_ioctl_fn = fake_ioctl;
}

static const uint32_t gpus8[MAX_GPUS] = { 0, 1, 2, 3, 4, 5, 6, 7 };

static void test_map_restart_keeps_n_success(void) {
        uint32_t done = UINT32_MAX;

        setup();
        /* Interrupted before device 3, then in the fence wait after all 8. */
        fake.events[fake.n_events++] = (FakeEvent) { .call = 1, .index = 3, .err = EINTR };
        fake.events[fake.n_events++] = (FakeEvent) { .call = 2, .index = 8, .err = EINTR };
        fake.events[fake.n_events++] = (FakeEvent) { .call = 3, .index = 8, .err = EAGAIN };

        ASSERT_OK(kfd_map(FAKE_FD, 0x3a1f00000000, gpus8, 8, &done));
        ASSERT_EQ(done, 8);
        ASSERT_EQ(fake.calls, 4);
        /* Each restart resumed where the kernel stopped. */
        ASSERT_EQ(fake.entry_n_success[0], 0);
        ASSERT_EQ(fake.entry_n_success[1], 3);
        ASSERT_EQ(fake.entry_n_success[2], 8);
        ASSERT_EQ(fake.entry_n_success[3], 8);
        for (int i = 0; i < 8; i++)
                ASSERT_TRUE(fake.mapped[i]);
}

static void test_map_hard_error_reports_prefix(void) {
        uint32_t done = UINT32_MAX;

        setup();
        fake.events[fake.n_events++] = (FakeEvent) { .call = 1, .index = 2, .err = EINTR };
        fake.events[fake.n_events++] = (FakeEvent) { .call = 2, .index = 5, .err = EINVAL };

        ASSERT_ERROR(kfd_map(FAKE_FD, 1, gpus8, 8, &done), EINVAL);
        ASSERT_EQ(done, 5);
        ASSERT_EQ(fake.calls, 2);
        for (int i = 0; i < 8; i++)
                ASSERT_EQ(fake.mapped[i], i < 5);

        /* The caller undoes exactly that prefix, with a fresh call. */
        ASSERT_OK(kfd_unmap(FAKE_FD, 1, gpus8, done, &done));
        ASSERT_EQ(done, 5);
        for (int i = 0; i < 8; i++)
                ASSERT_FALSE(fake.mapped[i]);
}

static void test_map_error_on_first_device(void) {
        uint32_t done = UINT32_MAX;

        setup();
        fake.events[fake.n_events++] = (FakeEvent) { .call = 1, .index = 0, .err = ENOMEM };
        ASSERT_ERROR(kfd_map(FAKE_FD, 1, gpus8, 3, &done), ENOMEM);
        ASSERT_EQ(done, 0);
}

static void test_unmap_restart_does_not_reset(void) {
        uint32_t done = UINT32_MAX;

        setup();
        for (int i = 0; i < 8; i++)
                fake.mapped[i] = true;
        /*
         * Interrupted after unmapping 0..3. Had the wrapper reset n_success,
         * the fake would fail with EINVAL on device 0 (already unmapped).
         */
        fake.events[fake.n_events++] = (FakeEvent) { .call = 1, .index = 4, .err = EINTR };
        fake.events[fake.n_events++] = (FakeEvent) { .call = 2, .index = 6, .err = EINTR };

        ASSERT_OK(kfd_unmap(FAKE_FD, 1, gpus8, 8, &done));
        ASSERT_EQ(done, 8);
        ASSERT_EQ(fake.calls, 3);
        ASSERT_EQ(fake.entry_n_success[1], 4);
        ASSERT_EQ(fake.entry_n_success[2], 6);
        for (int i = 0; i < 8; i++)
                ASSERT_FALSE(fake.mapped[i]);
}

static void test_unmap_hard_error(void) {
        uint32_t done = UINT32_MAX;
        const uint32_t ids[3] = { 0, 1, 2 };

        setup();
        fake.mapped[0] = fake.mapped[2] = true;         /* GPU 1 not mapped */
        ASSERT_ERROR(kfd_unmap(FAKE_FD, 1, ids, 3, &done), EINVAL);
        ASSERT_EQ(done, 1);
}

static void test_restart_is_bounded(void) {
        uint32_t done = UINT32_MAX;

        setup();
        fake.always_errno = EINTR;
        ASSERT_ERROR(kfd_map(FAKE_FD, 1, gpus8, 8, &done), EINTR);
        ASSERT_EQ(fake.calls, KFD_IOCTL_MAX_RESTARTS);
        ASSERT_EQ(done, 0);

        setup();
        fake.always_errno = EAGAIN;
        ASSERT_ERROR(kfd_free(FAKE_FD, 1), EINTR);
        ASSERT_EQ(fake.calls, KFD_IOCTL_MAX_RESTARTS);
}

static void test_map_rejects_empty(void) {
        uint32_t done = UINT32_MAX;

        setup();
        ASSERT_ERROR(kfd_map(FAKE_FD, 1, gpus8, 0, &done), EINVAL);
        ASSERT_EQ(done, 0);
        ASSERT_EQ(fake.calls, 0);
}

static void test_alloc_free_restart(void) {
        uint64_t handle = 0, offset = 0;

        setup();
        fake.fail_first = 2;
        fake.fail_errno = EINTR;
        ASSERT_OK(kfd_alloc(FAKE_FD, 0x400000000000, 4096, 0x3a1f, KFD_IOC_ALLOC_MEM_FLAGS_VRAM, 0,
                            &handle, &offset));
        ASSERT_EQ(fake.calls, 3);
        ASSERT_UEQ(handle, 0x3a1f00000007ULL);
        ASSERT_UEQ(offset, 0x100000);

        /* A hard error leaves the outputs alone. */
        setup();
        handle = offset = 0xdead;
        fake.always_errno = ENOMEM;
        ASSERT_ERROR(kfd_alloc(FAKE_FD, 0x400000000000, 4096, 1, KFD_IOC_ALLOC_MEM_FLAGS_VRAM, 0,
                               &handle, &offset), ENOMEM);
        ASSERT_EQ(fake.calls, 1);
        ASSERT_UEQ(handle, 0xdead);
        ASSERT_UEQ(offset, 0xdead);

        /* size 0 never reaches the kernel. */
        setup();
        ASSERT_ERROR(kfd_alloc(FAKE_FD, 0x400000000000, 0, 1, KFD_IOC_ALLOC_MEM_FLAGS_VRAM, 0,
                               &handle, &offset), EINVAL);
        ASSERT_EQ(fake.calls, 0);

        /* FREE interrupted: the handle is still valid in the kernel, so it is re-issued. */
        setup();
        fake.fail_first = 1;
        fake.fail_errno = EINTR;
        ASSERT_OK(kfd_free(FAKE_FD, 0x3a1f00000007ULL));
        ASSERT_EQ(fake.calls, 2);

        /* EBUSY (still mapped) is not retried. */
        setup();
        fake.always_errno = EBUSY;
        ASSERT_ERROR(kfd_free(FAKE_FD, 1), EBUSY);
        ASSERT_EQ(fake.calls, 1);
}

static void test_svm_variable_size(void) {
        struct kfd_ioctl_svm_attribute attrs[3] = {
                { KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0x3a1f },
                { KFD_IOCTL_SVM_ATTR_SET_FLAGS, KFD_IOCTL_SVM_FLAG_COHERENT },
                { KFD_IOCTL_SVM_ATTR_GRANULARITY, 9 },
        };

        setup();
        ASSERT_OK(kfd_svm_set(FAKE_FD, 0x400000000000, 1 << 21, attrs, 3));
        ASSERT_EQ(fake.svm_seen_n, 3);
        ASSERT_UEQ(_IOC_SIZE(fake.last_request), 24 + 8 * 3);
        ASSERT_EQ(fake.svm_seen[0].type, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC);
        ASSERT_UEQ(fake.svm_seen[0].value, 0x3a1f);
        ASSERT_UEQ(fake.svm_seen[2].value, 9);
        /* SET leaves the caller's array alone. */
        ASSERT_UEQ(attrs[0].value, 0x3a1f);

        setup();
        ASSERT_OK(kfd_svm_get(FAKE_FD, 0x400000000000, 1 << 21, attrs, 2));
        ASSERT_UEQ(_IOC_SIZE(fake.last_request), 24 + 8 * 2);
        ASSERT_UEQ(attrs[0].value, 0x1000);
        ASSERT_UEQ(attrs[1].value, 0x1001);
        ASSERT_UEQ(attrs[2].value, 9);

        /* Zero attributes: header only (SET with defaults). */
        setup();
        ASSERT_OK(kfd_svm_set(FAKE_FD, 0x400000000000, 4096, NULL, 0));
        ASSERT_UEQ(_IOC_SIZE(fake.last_request), 24);

        setup();
        ASSERT_ERROR(kfd_svm_set(FAKE_FD, 0, 4096, attrs, KFD_SVM_MAX_ATTRS + 1), EINVAL);
        ASSERT_EQ(fake.calls, 0);
}

static void test_export_cloexec(void) {
        int fd = -1;

        setup();
        ASSERT_OK(kfd_export_dmabuf(FAKE_FD, 1, O_RDWR, &fd));
        ASSERT_EQ(fd, 77);
        ASSERT_UEQ(fake.export_flags, O_RDWR | O_CLOEXEC);
}

static void test_version(void) {
        uint32_t major = 0, minor = 0;

        setup();
        ASSERT_OK(kfd_get_version(FAKE_FD, &major, &minor));
        ASSERT_EQ(major, 1);
        ASSERT_EQ(minor, 16);
        ASSERT_UEQ(fake.last_request, 0x80084B01UL);
}

static void test_request_numbers(void) {
        /* The values the reference lists for x86-64 (kfd-semantics.md §1.3). */
        ASSERT_UEQ(AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, 0xC0284B16UL);
        ASSERT_UEQ(AMDKFD_IOC_FREE_MEMORY_OF_GPU, 0x40084B17UL);
        ASSERT_UEQ(AMDKFD_IOC_MAP_MEMORY_TO_GPU, 0xC0184B18UL);
        ASSERT_UEQ(AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, 0xC0184B19UL);
        ASSERT_UEQ(AMDKFD_IOC_EXPORT_DMABUF, 0xC0104B24UL);
        ASSERT_UEQ(AMDKFD_IOC_AVAILABLE_MEMORY, 0xC0104B23UL);
        ASSERT_UEQ(AMDKFD_IOC_SET_MEMORY_POLICY, 0x40204B04UL);
        ASSERT_UEQ(_IOC(_IOC_READ | _IOC_WRITE, AMDKFD_IOCTL_BASE, 0x20, 24), 0xC0184B20UL);
}

int main(void) {
        TEST(test_map_restart_keeps_n_success);
        TEST(test_map_hard_error_reports_prefix);
        TEST(test_map_error_on_first_device);
        TEST(test_unmap_restart_does_not_reset);
        TEST(test_unmap_hard_error);
        TEST(test_restart_is_bounded);
        TEST(test_map_rejects_empty);
        TEST(test_alloc_free_restart);
        TEST(test_svm_variable_size);
        TEST(test_export_cloexec);
        TEST(test_version);
        TEST(test_request_numbers);
        return EXIT_SUCCESS;
}
