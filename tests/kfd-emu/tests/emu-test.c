/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "emu-test.h"

#define TOPOLOGY "/sys/devices/virtual/kfd/kfd/topology"

extern char **environ;

const char *test_errno_name(int e) {
        const char *s = strerrorname_np(e);

        return s ?: "E?";
}

/* ---- sysfs ---- */

static int read_u64_file(const char *path, uint64_t *ret) {
        _cleanup_(fclosep) FILE *f = fopen(path, "re");
        unsigned long long v;

        if (!f)
                return -errno;
        if (fscanf(f, "%llu", &v) != 1)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* One "key value" properties file; returns 0 and *ret, -ENOENT for a missing key. */
static int read_prop(const char *path, const char *key, uint64_t *ret) {
        _cleanup_(fclosep) FILE *f = fopen(path, "re");
        char k[128];
        unsigned long long v;

        if (!f)
                return -errno;
        while (fscanf(f, "%127s %llu", k, &v) == 2)
                if (strcmp(k, key) == 0) {
                        *ret = v;
                        return 0;
                }
        return -ENOENT;
}

int test_topo_read(TestTopo *ret) {
        TestTopo t = {};
        char path[256];

        for (unsigned n = 0; n < TEST_MAX_NODES; n++) {
                uint64_t gpu_id = 0, v = 0;

                snprintf(path, sizeof(path), TOPOLOGY "/nodes/%u/gpu_id", n);
                if (read_u64_file(path, &gpu_id) < 0)
                        break;
                t.n_nodes++;
                if (gpu_id == 0)
                        continue;
                if (t.n_gpus >= TEST_MAX_GPUS)
                        return -E2BIG;

                TestGpu *g = &t.gpus[t.n_gpus++];
                g->node = n;
                g->gpu_id = (uint32_t) gpu_id;
                snprintf(path, sizeof(path), TOPOLOGY "/nodes/%u/properties", n);
                if (read_prop(path, "drm_render_minor", &v) < 0)
                        return -EINVAL;
                g->render_minor = (unsigned) v;
                if (read_prop(path, "gfx_target_version", &v) >= 0)
                        g->gfx_target_version = (uint32_t) v;
                if (read_prop(path, "hive_id", &v) >= 0)
                        g->hive_id = v;
                if (read_prop(path, "capability", &v) >= 0)
                        g->capability = (uint32_t) v;
                snprintf(path, sizeof(path), TOPOLOGY "/nodes/%u/mem_banks/0/properties", n);
                if (read_prop(path, "heap_type", &v) >= 0)
                        g->large_bar = v == 1;
                if (read_prop(path, "size_in_bytes", &v) >= 0)
                        g->vram_size = v;
        }
        if (t.n_nodes == 0)
                return -ENOENT;
        *ret = t;
        return 0;
}

static bool links_connect(unsigned from, unsigned to, const char *kind, bool xgmi_only) {
        char path[256];

        for (unsigned l = 0; l < 256; l++) {
                uint64_t type = 0, node_to = 0, flags = 0;

                snprintf(path, sizeof(path), TOPOLOGY "/nodes/%u/%s/%u/properties", from, kind, l);
                if (read_prop(path, "type", &type) < 0)
                        break;
                if (read_prop(path, "node_to", &node_to) < 0 || node_to != to)
                        continue;
                (void) read_prop(path, "flags", &flags);
                if (flags & 0x10)       /* no peer-to-peer DMA */
                        continue;
                if (!xgmi_only || type == 11)
                        return true;
        }
        return false;
}

bool test_topo_peer_accessible(const TestTopo *t, unsigned a, unsigned b) {
        const TestGpu *ga = &t->gpus[a], *gb = &t->gpus[b];

        if (a == b)
                return true;
        if (ga->hive_id != 0 && ga->hive_id == gb->hive_id)
                return true;
        return links_connect(gb->node, ga->node, "io_links", true) ||
               links_connect(gb->node, ga->node, "p2p_links", false);
}

/* ---- KFD ---- */

int test_ioctl(int fd, unsigned long cmd, void *arg) {
        return ioctl(fd, cmd, arg) < 0 ? -errno : 0;
}

void test_kfd_open(TestKfd *k, bool acquire) {
        char path[64];

        *k = (TestKfd) { .fd = -EBADF, .next_va = 0x1000000000ULL };
        ASSERT_OK(test_topo_read(&k->topo));
        k->fd = open("/dev/kfd", O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(k->fd >= 0);
        for (unsigned i = 0; i < k->topo.n_gpus; i++) {
                snprintf(path, sizeof(path), "/dev/dri/renderD%u", k->topo.gpus[i].render_minor);
                k->render[i] = open(path, O_RDWR | O_CLOEXEC);
                ASSERT_TRUE(k->render[i] >= 0);
                if (acquire) {
                        struct kfd_ioctl_acquire_vm_args a = {
                                .drm_fd = (uint32_t) k->render[i],
                                .gpu_id = k->topo.gpus[i].gpu_id,
                        };
                        ASSERT_OK(test_ioctl(k->fd, AMDKFD_IOC_ACQUIRE_VM, &a));
                }
        }
}

void test_kfd_close(TestKfd *k) {
        for (unsigned i = 0; i < k->topo.n_gpus; i++)
                k->render[i] = safe_close(k->render[i]);
        k->fd = safe_close(k->fd);
}

uint64_t test_va(TestKfd *k, uint64_t size) {
        uint64_t va = k->next_va;

        k->next_va += ALIGN_POW2(size, 2ULL << 20) + (2ULL << 20);
        return va;
}

int test_alloc(TestKfd *k, uint32_t gpu_id, uint64_t va, uint64_t size, uint32_t flags,
               uint64_t *ret_handle, uint64_t *ret_mmap_offset) {
        struct kfd_ioctl_alloc_memory_of_gpu_args a = {
                .va_addr = va,
                .size = size,
                .gpu_id = gpu_id,
                .flags = flags,
                .mmap_offset = ret_mmap_offset ? *ret_mmap_offset : 0,
        };
        int r;

        r = test_ioctl(k->fd, AMDKFD_IOC_ALLOC_MEMORY_OF_GPU, &a);
        if (r < 0)
                return r;
        if (ret_handle)
                *ret_handle = a.handle;
        if (ret_mmap_offset)
                *ret_mmap_offset = a.mmap_offset;
        return 0;
}

int test_alloc_vram(TestKfd *k, unsigned gpu, uint64_t size, uint64_t *ret_handle) {
        return test_alloc(k, k->topo.gpus[gpu].gpu_id, test_va(k, size), size, VRAM_FLAGS,
                          ret_handle, NULL);
}

static int map_common(TestKfd *k, unsigned long cmd, uint64_t handle, const uint32_t *ids,
                      uint32_t n, uint32_t *io_n_success) {
        struct kfd_ioctl_map_memory_to_gpu_args a = {
                .handle = handle,
                .device_ids_array_ptr = (uint64_t) (uintptr_t) ids,
                .n_devices = n,
                .n_success = io_n_success ? *io_n_success : 0,
        };
        int r;

        r = test_ioctl(k->fd, cmd, &a);
        if (io_n_success)
                *io_n_success = a.n_success;
        return r;
}

int test_map(TestKfd *k, uint64_t handle, const uint32_t *ids, uint32_t n, uint32_t *io_n_success) {
        return map_common(k, AMDKFD_IOC_MAP_MEMORY_TO_GPU, handle, ids, n, io_n_success);
}

int test_unmap(TestKfd *k, uint64_t handle, const uint32_t *ids, uint32_t n, uint32_t *io_n_success) {
        return map_common(k, AMDKFD_IOC_UNMAP_MEMORY_FROM_GPU, handle, ids, n, io_n_success);
}

int test_free(TestKfd *k, uint64_t handle) {
        struct kfd_ioctl_free_memory_of_gpu_args a = { .handle = handle };

        return test_ioctl(k->fd, AMDKFD_IOC_FREE_MEMORY_OF_GPU, &a);
}

int test_available(TestKfd *k, uint32_t gpu_id, uint64_t *ret) {
        struct kfd_ioctl_get_available_memory_args a = { .gpu_id = gpu_id };
        int r;

        r = test_ioctl(k->fd, AMDKFD_IOC_AVAILABLE_MEMORY, &a);
        if (r < 0)
                return r;
        *ret = a.available;
        return 0;
}

/* ---- kfdemu-ctl ---- */

/* The environment minus LD_PRELOAD: kfdemu-ctl maps the arena itself. */
static char **env_without_preload(void) {
        size_t n = 0, j = 0;
        char **env;

        while (environ[n])
                n++;
        env = new0(char *, n + 1);
        ASSERT_TRUE(env);
        for (size_t i = 0; i < n; i++)
                if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
                        env[j++] = environ[i];
        return env;
}

static int ctl_run(char **argv, char **ret_stdout) {
        _cleanup_(freep) char **env = env_without_preload();
        posix_spawn_file_actions_t fa;
        int pipefd[2] = { -EBADF, -EBADF }, status;
        _cleanup_(freep) char *buf = NULL;
        size_t len = 0, cap = 0;
        pid_t pid;
        int r;

        ASSERT_TRUE(pipe2(pipefd, O_CLOEXEC) >= 0);
        ASSERT_TRUE(posix_spawn_file_actions_init(&fa) == 0);
        ASSERT_TRUE(posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO) == 0);
        r = posix_spawn(&pid, argv[0], &fa, NULL, argv, env);
        posix_spawn_file_actions_destroy(&fa);
        if (r != 0) {
                fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(r));
                abort();
        }
        pipefd[1] = safe_close(pipefd[1]);

        for (;;) {
                ssize_t n;

                if (cap - len < 4096) {
                        char *p = realloc(buf, cap + 65536);

                        ASSERT_TRUE(p);
                        buf = p;
                        cap += 65536;
                }
                n = read(pipefd[0], buf + len, cap - len - 1);
                if (n < 0 && errno == EINTR)
                        continue;
                ASSERT_TRUE(n >= 0);
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        buf[len] = '\0';
        pipefd[0] = safe_close(pipefd[0]);

        while (waitpid(pid, &status, 0) < 0)
                ASSERT_TRUE(errno == EINTR);
        if (ret_stdout)
                *ret_stdout = TAKE_PTR(buf);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static const char *ctl_path(void) {
        const char *p = getenv("KFDEMU_CTL");

        if (!p) {
                fputs("KFDEMU_CTL is not set (the meson test definition sets it)\n", stderr);
                abort();
        }
        return p;
}

int test_ctl(const char *arg, ...) {
        char *argv[16];
        size_t n = 0;
        va_list ap;

        argv[n++] = (char *) ctl_path();
        va_start(ap, arg);
        for (const char *a = arg; a && n < ELEMENTSOF(argv) - 1; a = va_arg(ap, const char *))
                argv[n++] = (char *) a;
        va_end(ap);
        argv[n] = NULL;
        return ctl_run(argv, NULL);
}

json_t *test_dump(void) {
        char *argv[] = { (char *) ctl_path(), (char *) "dump", NULL };
        _cleanup_(freep) char *out = NULL;
        json_error_t err;
        json_t *j;

        ASSERT_EQ(ctl_run(argv, &out), 0);
        j = json_loads(out, 0, &err);
        if (!j) {
                fprintf(stderr, "kfdemu-ctl dump printed no JSON: %s\n", err.text);
                abort();
        }
        return j;
}

json_t *test_dump_state(void) {
        json_t *j = test_dump();

        /* Call statistics and fault counters change with every ioctl; they are not state. */
        json_object_del(j, "ioctls");
        json_object_del(j, "ioctls_unknown");
        json_object_del(j, "faults");
        json_object_del(j, "profile");
        return j;
}

void test_fault(const char *spec) {
        ASSERT_EQ(test_ctl("fault", "add", spec, NULL), 0);
}

/* ---- SCM_RIGHTS ---- */

int test_send_fd(int sock, int fd) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } u = {};
        char byte = 'F';
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr m = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = u.buf,
                .msg_controllen = sizeof(u.buf),
        };
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);

        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
        return sendmsg(sock, &m, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

int test_recv_fd(int sock) {
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int))];
        } u = {};
        char byte;
        struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
        struct msghdr m = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = u.buf,
                .msg_controllen = sizeof(u.buf),
        };
        struct cmsghdr *c;
        int fd;

        if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) <= 0)
                return -EIO;
        c = CMSG_FIRSTHDR(&m);
        if (!c || c->cmsg_type != SCM_RIGHTS)
                return -EBADMSG;
        memcpy(&fd, CMSG_DATA(c), sizeof(int));
        return fd;
}

/* ---- runner ---- */

int test_main(const TestCase *tests, size_t n, int argc, char *argv[]) {
        if (argc >= 2 && strcmp(argv[1], "--list") == 0) {
                for (size_t i = 0; i < n; i++)
                        printf("%s\n", tests[i].name);
                return EXIT_SUCCESS;
        }

        /* Line-buffered output keeps parent and child messages in order. */
        setvbuf(stdout, NULL, _IOLBF, 0);

        for (size_t i = 0; i < n; i++) {
                if (argc >= 2 && strcmp(argv[1], tests[i].name) != 0)
                        continue;
                printf("== %s\n", tests[i].name);
                tests[i].run();
                printf("ok %s\n", tests[i].name);
                if (argc >= 2)
                        return EXIT_SUCCESS;
        }
        if (argc >= 2) {
                fprintf(stderr, "no test named '%s' (try --list)\n", argv[1]);
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}
