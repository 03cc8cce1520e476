/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Smoke test of the emulated kernel end to end, run under kfdemu-run: a
 * program talks to /dev/kfd and the render nodes like to the real ones, and
 * checks the kernel-side state through the emulator's own dump.
 *
 *   test-emu-smoke            the whole flow (needs ≥ 2 GPUs for the partial map)
 *   test-emu-smoke child FD   (internal) the re-executed second process
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "emu-kernel.h"
#include "kfd-uapi.h"
#include "macro.h"

#define CHECK(expr)                                                                             \
        do {                                                                                    \
                if (!(expr)) {                                                                  \
                        fprintf(stderr, "%s:%d: check failed: %s (errno %d %s)\n", __FILE__,    \
                                __LINE__, #expr, errno, strerror(errno));                      \
                        exit(EXIT_FAILURE);                                                     \
                }                                                                               \
        } while (0)

#define CHECK_ERRNO(call, e)                                                                    \
        do {                                                                                    \
                errno = 0;                                                                      \
                int _r = (call);                                                                \
                if (_r != -1 || errno != (e)) {                                                 \
                        fprintf(stderr, "%s:%d: %s returned %d errno %d (%s), expected %s\n",    \
                                __FILE__, __LINE__, #call, _r, errno, strerror(errno), #e);     \
                        exit(EXIT_FAILURE);                                                     \
                }                                                                               \
        } while (0)

#define BO_SIZE (UINT64_C(2) << 20)
#define PATTERN 0x5a
#define REPLY 0xa5

typedef struct Gpu {
        uint32_t gpu_id;
        unsigned minor;
        int render_fd;
} Gpu;

static Gpu gpus[32];
static unsigned n_gpus;

static void read_topology(void) {
        for (unsigned n = 0;; n++) {
                char path[256], line[256];
                unsigned gpu_id = 0, minor = 0;
                FILE *f;

                snprintf(path, sizeof(path), "/sys/devices/virtual/kfd/kfd/topology/nodes/%u/gpu_id", n);
                f = fopen(path, "re");
                if (!f)
                        break;
                CHECK(fscanf(f, "%u", &gpu_id) == 1);
                fclose(f);
                if (gpu_id == 0)
                        continue;
                snprintf(path, sizeof(path), "/sys/devices/virtual/kfd/kfd/topology/nodes/%u/properties", n);
                f = fopen(path, "re");
                CHECK(f);
                while (fgets(line, sizeof(line), f))
                        sscanf(line, "drm_render_minor %u", &minor);
                fclose(f);
                gpus[n_gpus++] = (Gpu) { .gpu_id = gpu_id, .minor = minor, .render_fd = -1 };
        }
        CHECK(n_gpus > 0);
}

static EmuKernel *emu(void) {
        static EmuKernel *k;

        if (!k)
                CHECK(emu_kernel_attach(getenv("KFDEMU_DIR"), &k) == 0);
        return k;
}

static json_t *dump(void) {
        json_t *d;

        CHECK(emu_kernel_dump(emu(), &d) == 0);
        return d;
}

static json_t *my_process(json_t *d, pid_t pid) {
        json_t *p;
        size_t i;

        json_array_foreach(json_object_get(d, "processes"), i, p)
                if (json_integer_value(json_object_get(p, "pid")) == pid &&
                    !json_is_true(json_object_get(p, "secondary")))
                        return p;
        return NULL;
}

static json_t *handle_of(json_t *proc, uint64_t handle) {
        json_t *h;
        size_t i;

        json_array_foreach(json_object_get(proc, "handles"), i, h)
                if ((uint64_t) json_integer_value(json_object_get(h, "handle")) == handle)
                        return h;
        return NULL;
}

static int open_and_acquire(void) {
        int kfd = open("/dev/kfd", O_RDWR | O_CLOEXEC);

        CHECK(kfd >= 0);
        for (unsigned g = 0; g < n_gpus; g++) {
                char path[64];
                struct kfd_ioctl_acquire_vm_args acq;

                snprintf(path, sizeof(path), "/dev/dri/renderD%u", gpus[g].minor);
                gpus[g].render_fd = open(path, O_RDWR | O_CLOEXEC);
                CHECK(gpus[g].render_fd >= 0);
                acq = (struct kfd_ioctl_acquire_vm_args) { .drm_fd = (uint32_t) gpus[g].render_fd,
                                                           .gpu_id = gpus[g].gpu_id };
                CHECK(ioctl(kfd, AMDKFD_IOC_ACQUIRE_VM, &acq) == 0);
                /* libhsakmt repeats it with the same file: fine. */
                CHECK(ioctl(kfd, AMDKFD_IOC_ACQUIRE_VM, &acq) == 0);
        }
        return kfd;
}

/* The second process: import the dma-buf, read the parent's bytes, answer. */
static int child(int dmabuf_fd) {
        struct kfd_ioctl_get_dmabuf_info_args info = { .dmabuf_fd = (uint32_t) dmabuf_fd };
        struct kfd_ioctl_import_dmabuf_args imp;
        uint8_t *p;
        json_t *d;
        int kfd;

        read_topology();
        kfd = open_and_acquire();

        CHECK(ioctl(kfd, AMDKFD_IOC_GET_DMABUF_INFO, &info) == 0);
        CHECK(info.size == BO_SIZE);
        CHECK(info.gpu_id == gpus[0].gpu_id);
        CHECK(info.flags == (KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC));

        imp = (struct kfd_ioctl_import_dmabuf_args) { .va_addr = 0x300000000ULL, .gpu_id = gpus[0].gpu_id,
                                                      .dmabuf_fd = (uint32_t) dmabuf_fd };
        CHECK(ioctl(kfd, AMDKFD_IOC_IMPORT_DMABUF, &imp) == 0);
        CHECK(imp.handle == ((uint64_t) gpus[0].gpu_id << 32));        /* lowest idr of a fresh process */

        /* A dma-buf maps natively: the bytes the parent wrote through its render fd mapping. */
        p = mmap(NULL, BO_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, dmabuf_fd, 0);
        CHECK(p != MAP_FAILED);
        for (size_t i = 0; i < BO_SIZE; i += 4096)
                CHECK(p[i] == PATTERN);
        memset(p, REPLY, 4096);

        d = dump();
        CHECK(my_process(d, getpid()));
        CHECK(json_is_true(json_object_get(handle_of(my_process(d, getpid()), imp.handle), "imported")));
        json_decref(d);
        /* Exit without FREE: process teardown frees the imported handle. */
        return 0;
}

int main(int argc, char *argv[]) {
        struct kfd_ioctl_get_version_args ver = {};
        struct kfd_ioctl_alloc_memory_of_gpu_args alloc;
        struct kfd_ioctl_export_dmabuf_args exp;
        struct kfd_ioctl_map_memory_to_gpu_args map;
        struct kfd_ioctl_unmap_memory_from_gpu_args unmap;
        struct kfd_ioctl_free_memory_of_gpu_args fr;
        struct kfd_ioctl_get_available_memory_args avail;
        uint32_t ids[32];
        uint64_t avail_before, va = 0x200000000ULL;
        char *error = NULL, fdnum[16];
        uint8_t *p;
        json_t *d, *h;
        int kfd, status;
        pid_t pid;

        if (argc == 3 && streq(argv[1], "child"))
                return child(atoi(argv[2]));

        read_topology();
        kfd = open_and_acquire();
        CHECK(ioctl(kfd, AMDKFD_IOC_GET_VERSION, &ver) == 0);
        CHECK(ver.major_version == 1);

        avail = (struct kfd_ioctl_get_available_memory_args) { .gpu_id = gpus[0].gpu_id };
        CHECK(ioctl(kfd, AMDKFD_IOC_AVAILABLE_MEMORY, &avail) == 0);
        avail_before = avail.available;

        /* VRAM, CPU-visible, mapped through the render fd at the GEM offset. */
        alloc = (struct kfd_ioctl_alloc_memory_of_gpu_args) {
                .va_addr = va, .size = BO_SIZE, .gpu_id = gpus[0].gpu_id,
                .flags = KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC |
                         (UINT32_C(1) << 31) /* WRITABLE */ | KFD_IOC_ALLOC_MEM_FLAGS_EXECUTABLE,
        };
        CHECK(ioctl(kfd, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &alloc) == 0);
        CHECK(alloc.handle >> 32 == gpus[0].gpu_id);
        p = mmap(NULL, BO_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, gpus[0].render_fd, (off_t) alloc.mmap_offset);
        CHECK(p != MAP_FAILED);
        memset(p, PATTERN, BO_SIZE);
        /* Not through the kfd fd, and not past the BO. */
        CHECK(mmap(NULL, BO_SIZE, PROT_READ, MAP_SHARED, kfd, (off_t) alloc.mmap_offset) == MAP_FAILED);
        CHECK(mmap(NULL, 2 * BO_SIZE, PROT_READ, MAP_SHARED, gpus[0].render_fd, (off_t) alloc.mmap_offset) ==
              MAP_FAILED);

        avail.available = 0;
        CHECK(ioctl(kfd, AMDKFD_IOC_AVAILABLE_MEMORY, &avail) == 0);
        CHECK(avail.available == avail_before - BO_SIZE);

        /* Export without O_CLOEXEC so the re-executed child inherits it. */
        exp = (struct kfd_ioctl_export_dmabuf_args) { .handle = alloc.handle };
        CHECK(ioctl(kfd, AMDKFD_IOC_EXPORT_DMABUF, &exp) == 0);
        snprintf(fdnum, sizeof(fdnum), "%u", exp.dmabuf_fd);

        pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                struct kfd_ioctl_get_version_args v = {};

                /* The parent's KFD context is not ours (kfd_ioctl lead_thread check). */
                CHECK_ERRNO(ioctl(kfd, AMDKFD_IOC_GET_VERSION, &v), EBADF);
                execl("/proc/self/exe", argv[0], "child", fdnum, (char *) NULL);
                _exit(127);
        }
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(p[0] == REPLY && p[4095] == REPLY && p[4096] == PATTERN);

        /* The child's context is gone (torn down at its exit), ours is intact. */
        d = dump();
        CHECK(!my_process(d, pid));
        CHECK(handle_of(my_process(d, getpid()), alloc.handle));
        json_decref(d);

        if (n_gpus >= 2) {
                /* Map to every GPU; the device at index 1 fails with ENOMEM after one succeeded. */
                CHECK(emu_kernel_fault_add(emu(), "ioctl=MAP_MEMORY_TO_GPU after=1 errno=ENOMEM", &error) == 0);
                for (unsigned g = 0; g < n_gpus; g++)
                        ids[g] = gpus[g].gpu_id;
                map = (struct kfd_ioctl_map_memory_to_gpu_args) {
                        .handle = alloc.handle, .device_ids_array_ptr = (uint64_t) (uintptr_t) ids,
                        .n_devices = n_gpus,
                };
                CHECK_ERRNO(ioctl(kfd, AMDKFD_IOC_MAP_MEMORY_TO_GPU, &map), ENOMEM);
                CHECK(map.n_success == 1);
                d = dump();
                h = handle_of(my_process(d, getpid()), alloc.handle);
                CHECK(json_array_size(json_object_get(h, "mapped")) == 1);
                json_decref(d);

                /* Restart with the same struct: the rest gets mapped. */
                CHECK(ioctl(kfd, AMDKFD_IOC_MAP_MEMORY_TO_GPU, &map) == 0);
                CHECK(map.n_success == n_gpus);

                /* FREE of a mapped BO is EBUSY and changes nothing. */
                fr = (struct kfd_ioctl_free_memory_of_gpu_args) { .handle = alloc.handle };
                CHECK_ERRNO(ioctl(kfd, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &fr), EBUSY);

                /* Interrupted at the fence: every device is done, EINTR anyway. */
                CHECK(emu_kernel_fault_add(emu(), "ioctl=UNMAP_MEMORY_FROM_GPU at=fence errno=EINTR", &error) == 0);
                unmap = (struct kfd_ioctl_unmap_memory_from_gpu_args) {
                        .handle = alloc.handle, .device_ids_array_ptr = (uint64_t) (uintptr_t) ids,
                        .n_devices = n_gpus,
                };
                CHECK_ERRNO(ioctl(kfd, AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, &unmap), EINTR);
                CHECK(unmap.n_success == n_gpus);
                /* Restarting is harmless: nothing left to do. Resetting n_success is not. */
                CHECK(ioctl(kfd, AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, &unmap) == 0);
                unmap.n_success = 0;
                CHECK_ERRNO(ioctl(kfd, AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, &unmap), EINVAL);
                CHECK(unmap.n_success == 0);
        }

        /* FREE works while the dma-buf is open; the memory stays accounted until its fd closes. */
        fr = (struct kfd_ioctl_free_memory_of_gpu_args) { .handle = alloc.handle };
        CHECK(ioctl(kfd, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &fr) == 0);
        CHECK_ERRNO(ioctl(kfd, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &fr), EINVAL);
        CHECK(ioctl(kfd, AMDKFD_IOC_AVAILABLE_MEMORY, &avail) == 0);
        CHECK(avail.available == avail_before - BO_SIZE);
        d = dump();
        CHECK(json_array_size(json_object_get(d, "buffers")) == 1);
        CHECK(json_is_true(json_object_get(json_array_get(json_object_get(d, "buffers"), 0), "dmabuf_open")));
        json_decref(d);

        CHECK(munmap(p, BO_SIZE) == 0);
        CHECK(close((int) exp.dmabuf_fd) == 0);
        CHECK(ioctl(kfd, AMDKFD_IOC_AVAILABLE_MEMORY, &avail) == 0);
        CHECK(avail.available == avail_before);
        d = dump();
        CHECK(json_array_size(json_object_get(d, "buffers")) == 0);
        CHECK(json_array_size(json_object_get(my_process(d, getpid()), "handles")) == 0);
        json_decref(d);

        /* Closing /dev/kfd frees nothing; the process stays until exit. */
        CHECK(close(kfd) == 0);
        d = dump();
        CHECK(my_process(d, getpid()));
        json_decref(d);

        printf("ok\n");
        return EXIT_SUCCESS;
}
