/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * SMI events and GPU resets/VM faults of the emulator, checked against
 * kfd_smi_events.c and kgd2kfd_pre_reset/kgd2kfd_post_reset
 * (docs/emulator.md, "GPU resets and VM faults"). Each test runs on its own
 * node under kfdemu-run: `test-smi <name>`.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "emu-test.h"

#define SZ_2M (2ULL << 20)
#define EV(i) (1ULL << ((i) - 1))       /* KFD_SMI_EVENT_MASK_FROM_INDEX */
#define EV_VMFAULT 1
#define EV_PRE_RESET 3
#define EV_POST_RESET 4
#define EV_QUEUE_EVICTION 9
#define EV_ALL_PROCESS 64

static char **child_args;

static uint32_t gpu_id(TestKfd *k, unsigned i) {
        ASSERT_TRUE(i < k->topo.n_gpus);
        return k->topo.gpus[i].gpu_id;
}

static int smi_open(TestKfd *k, uint32_t gpu, int *ret_fd) {
        struct kfd_ioctl_smi_events_args a = { .gpuid = gpu };
        int r = test_ioctl(k->fd, AMDKFD_IOC_SMI_EVENTS, &a);

        if (r < 0)
                return r;
        *ret_fd = (int) a.anon_fd;
        return 0;
}

static int smi_listen(TestKfd *k, unsigned gpu, uint64_t mask) {
        int fd;

        ASSERT_OK(smi_open(k, gpu_id(k, gpu), &fd));
        ASSERT_EQ(write(fd, &mask, sizeof(mask)), sizeof(mask));
        return fd;
}

/* Everything queued on the listener, as one string (the kernel's read never waits). */
static char *smi_read(int fd) {
        static char buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf) - 1);

        if (n < 0) {
                ASSERT_EQ(errno, EAGAIN);
                n = 0;
        }
        buf[n] = 0;
        return buf;
}

static void ctl_gpu(const char *verb, uint32_t gpu, const char *a1, const char *a2) {
        char id[32];

        snprintf(id, sizeof(id), "0x%" PRIx32, gpu);
        ASSERT_EQ(test_ctl("gpu", verb, id, a1, a2, NULL), 0);
}

static void assert_streq(const char *a, const char *b) {
        if (strcmp(a, b) != 0) {
                fprintf(stderr, "expected \"%s\", got \"%s\"\n", b, a);
                abort();
        }
}

/* ---- the ioctl and the fd ---- */

static void test_smi_unknown_gpu_einval(void) {
        TestKfd k;
        int fd;

        test_kfd_open(&k, false);
        ASSERT_ERRNO(smi_open(&k, 0, &fd), EINVAL);
        ASSERT_ERRNO(smi_open(&k, 0xdead, &fd), EINVAL);
        test_kfd_close(&k);
}

/* Interface 1.3 added SMI_EVENTS: before it the nr is outside the table (kfd_ioctl → EINVAL). */
static void test_smi_before_1_3_einval(void) {
        TestKfd k;
        int fd;

        test_kfd_open(&k, false);
        ASSERT_ERRNO(smi_open(&k, gpu_id(&k, 0), &fd), EINVAL);
        test_kfd_close(&k);
}

static void test_smi_fd_read_write(void) {
        TestKfd k;
        uint64_t mask = EV(EV_PRE_RESET);
        char buf[16];
        int fd;

        test_kfd_open(&k, false);
        ASSERT_OK(smi_open(&k, gpu_id(&k, 0), &fd));
        /* anon_inode_getfd(O_RDWR): no close-on-exec. */
        ASSERT_EQ(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
        /* kfd_smi_ev_read: nothing queued → EAGAIN at once, never a wait. */
        ASSERT_EQ(read(fd, buf, sizeof(buf)), -1);
        ASSERT_EQ(errno, EAGAIN);
        /* kfd_smi_ev_write: under 8 bytes → EFAULT; 8 or more → 8. */
        ASSERT_EQ(write(fd, &mask, 4), -1);
        ASSERT_EQ(errno, EFAULT);
        ASSERT_EQ(write(fd, buf, sizeof(buf)), 8);
        ASSERT_EQ(write(fd, &mask, sizeof(mask)), 8);
        close(fd);
        test_kfd_close(&k);
}

/* ---- resets ---- */

static void test_smi_reset_lines(void) {
        TestKfd k;
        struct pollfd p;
        int fd;

        test_kfd_open(&k, false);
        fd = smi_listen(&k, 0, EV(EV_PRE_RESET) | EV(EV_POST_RESET));
        p = (struct pollfd) { .fd = fd, .events = POLLIN };
        ASSERT_EQ(poll(&p, 1, 0), 0);
        ctl_gpu("reset", gpu_id(&k, 0), "--cause", "job hang");
        ASSERT_EQ(poll(&p, 1, 0), 1);
        /* kfd_smi_event_update_gpu_reset: KFD_EVENT_FMT_UPDATE_GPU_RESET(seq, cause); post has no cause. */
        assert_streq(smi_read(fd), "3 1 job hang\n4 1 \n");
        ctl_gpu("reset", gpu_id(&k, 0), NULL, NULL);
        assert_streq(smi_read(fd), "3 2 unknown\n4 2 \n");
        close(fd);
        test_kfd_close(&k);
}

/* Only the events in the mask, only the listener's own GPU. */
static void test_smi_mask_and_gpu_filter(void) {
        TestKfd k;
        int none, vmf, other;

        test_kfd_open(&k, true);
        none = smi_listen(&k, 0, 0);
        vmf = smi_listen(&k, 0, EV(EV_VMFAULT));
        other = smi_listen(&k, 1, EV(EV_PRE_RESET) | EV(EV_POST_RESET));
        ctl_gpu("reset", gpu_id(&k, 0), NULL, NULL);
        assert_streq(smi_read(none), "");
        assert_streq(smi_read(vmf), "");
        assert_streq(smi_read(other), "");
        close(none);
        close(vmf);
        close(other);
        test_kfd_close(&k);
}

static void test_smi_reset_halves(void) {
        TestKfd k;
        int fd;

        test_kfd_open(&k, false);
        fd = smi_listen(&k, 0, EV(EV_PRE_RESET) | EV(EV_POST_RESET));
        ctl_gpu("reset", gpu_id(&k, 0), "--begin", NULL);
        assert_streq(smi_read(fd), "3 1 unknown\n");
        /* kfd_create_process while KFD is locked (kfd_is_locked()) → EINVAL, also for a process
         * that has one already. */
        ASSERT_EQ(open("/dev/kfd", O_RDWR | O_CLOEXEC), -1);
        ASSERT_EQ(errno, EINVAL);
        /* A second begin is refused, as is an end without a begin. */
        char id[32];
        snprintf(id, sizeof(id), "0x%" PRIx32, gpu_id(&k, 0));
        ASSERT_EQ(test_ctl("gpu", "reset", id, "--begin", NULL), 1);
        ctl_gpu("reset", gpu_id(&k, 0), "--end", NULL);
        assert_streq(smi_read(fd), "4 1 \n");
        ASSERT_EQ(test_ctl("gpu", "reset", id, "--end", NULL), 1);
        int kfd = open("/dev/kfd", O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(kfd >= 0);
        close(kfd);
        close(fd);
        test_kfd_close(&k);
}

static void *cpu_map(int fd, uint64_t off, uint64_t size) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t) off);

        ASSERT_TRUE(p != MAP_FAILED);
        return p;
}

/* VRAM contents go; GTT contents, handles and mappings stay. */
static void test_smi_reset_loses_vram_only(void) {
        TestKfd k;
        uint64_t hv, hg, ov = 0, og = 0;
        uint32_t ids[1];
        uint8_t *v, *g;

        test_kfd_open(&k, true);
        ids[0] = gpu_id(&k, 0);
        ASSERT_OK(test_alloc(&k, ids[0], test_va(&k, SZ_2M), SZ_2M,
                             KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_PUBLIC | ALLOC_FLAG_WRITABLE,
                             &hv, &ov));
        ASSERT_OK(test_alloc(&k, ids[0], test_va(&k, SZ_2M), SZ_2M, GTT_FLAGS, &hg, &og));
        ASSERT_OK(test_map(&k, hv, ids, 1, NULL));
        v = cpu_map(k.render[0], ov, SZ_2M);
        g = cpu_map(k.render[0], og, SZ_2M);
        memset(v, 0x5a, SZ_2M);
        memset(g, 0xa5, SZ_2M);
        ctl_gpu("reset", ids[0], NULL, NULL);
        for (uint64_t i = 0; i < SZ_2M; i += 4096) {
                ASSERT_EQ(v[i], 0);
                ASSERT_EQ(g[i], 0xa5);
        }
        /* The handle is still mapped: unmapping it works once, as before the reset. */
        uint32_t n = 0;
        ASSERT_OK(test_unmap(&k, hv, ids, 1, &n));
        munmap(v, SZ_2M);
        munmap(g, SZ_2M);
        ASSERT_OK(test_free(&k, hv));
        ASSERT_OK(test_free(&k, hg));
        test_kfd_close(&k);
}

static bool have_cap_sys_admin(void) {
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct d[2] = {};

        ASSERT_TRUE(syscall(SYS_capget, &h, d) == 0);
        return d[CAP_SYS_ADMIN / 32].effective & (1U << (CAP_SYS_ADMIN % 32));
}

static unsigned count_lines(const char *s) {
        unsigned n = 0;

        for (; *s; s++)
                n += *s == '\n';
        return n;
}

/* kfd_suspend_all_processes: each process's eviction reaches its own listeners, and a listener
 * opened with CAP_SYS_ADMIN that asked for ALL_PROCESS (kfd_smi_ev_enabled). */
static void test_smi_reset_queue_eviction_per_process(void) {
        TestKfd k;
        int own, all, sv[2];
        char c, mine[64], theirs[64], *got;
        pid_t pid;

        test_kfd_open(&k, false);
        own = smi_listen(&k, 0, EV(EV_QUEUE_EVICTION));
        all = smi_listen(&k, 0, EV(EV_QUEUE_EVICTION) | EV(EV_ALL_PROCESS));
        ASSERT_TRUE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) >= 0);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                char fdbuf[16];

                snprintf(fdbuf, sizeof(fdbuf), "%d", sv[1]);
                (void) fcntl(sv[1], F_SETFD, 0);
                execl("/proc/self/exe", "test-smi", "helper_open_and_wait", fdbuf, (char *) NULL);
                _exit(127);
        }
        close(sv[1]);
        ASSERT_EQ(read(sv[0], &c, 1), 1);
        ctl_gpu("reset", gpu_id(&k, 0), NULL, NULL);
        /* "9 <ns> -<pid> <gpu_id> 3\n" (KFD_QUEUE_EVICTION_TRIGGER_SUSPEND). */
        snprintf(mine, sizeof(mine), " -%d %x 3\n", (int) getpid(), gpu_id(&k, 0));
        snprintf(theirs, sizeof(theirs), " -%d %x 3\n", (int) pid, gpu_id(&k, 0));
        got = smi_read(own);
        ASSERT_TRUE(strncmp(got, "9 ", 2) == 0);
        ASSERT_TRUE(strstr(got, mine) != NULL);
        ASSERT_EQ(count_lines(got), 1);
        got = smi_read(all);
        ASSERT_TRUE(strstr(got, mine) != NULL);
        ASSERT_EQ(strstr(got, theirs) != NULL, have_cap_sys_admin());
        ASSERT_EQ(count_lines(got), have_cap_sys_admin() ? 2 : 1);
        ASSERT_EQ(write(sv[0], "x", 1), 1);
        ASSERT_EQ(waitpid(pid, NULL, 0), pid);
        close(sv[0]);
        close(own);
        close(all);
        test_kfd_close(&k);
}

static void helper_open_and_wait(void) {
        TestKfd k;
        int sock = atoi(child_args[0]);
        char c;

        test_kfd_open(&k, false);
        ASSERT_EQ(write(sock, "r", 1), 1);
        ASSERT_EQ(read(sock, &c, 1), 1);
        test_kfd_close(&k);
}

/* ---- VM faults ---- */

static void test_smi_vmfault_line(void) {
        TestKfd k;
        char expect[64], addr[32], pid[16];
        uint64_t h, va;
        uint32_t ids[1];
        int fd;

        test_kfd_open(&k, true);
        ids[0] = gpu_id(&k, 0);
        fd = smi_listen(&k, 0, EV(EV_VMFAULT));
        va = test_va(&k, SZ_2M);
        ASSERT_OK(test_alloc(&k, ids[0], va, SZ_2M, KFD_IOC_ALLOC_MEM_FLAGS_VRAM | ALLOC_FLAG_WRITABLE, &h, NULL));
        snprintf(addr, sizeof(addr), "0x%" PRIx64, va + 4096);
        /* Not mapped yet: no process maps the address, the pid must be given. */
        char id[32];
        snprintf(id, sizeof(id), "0x%" PRIx32, ids[0]);
        ASSERT_EQ(test_ctl("gpu", "vmfault", id, addr, NULL), 1);
        ASSERT_OK(test_map(&k, h, ids, 1, NULL));
        ctl_gpu("vmfault", ids[0], addr, NULL);
        /* kfd_smi_event_update_vmfault: "1 <pid>:<task name>", no address. */
        snprintf(expect, sizeof(expect), "1 %x:test-smi\n", (unsigned) getpid());
        assert_streq(smi_read(fd), expect);
        snprintf(pid, sizeof(pid), "%d", (int) getpid());
        ctl_gpu("vmfault", ids[0], "0x1000", pid);
        assert_streq(smi_read(fd), expect);
        close(fd);
        test_kfd_close(&k);
}

static const TestCase tests[] = {
        TEST(test_smi_unknown_gpu_einval),
        TEST(test_smi_before_1_3_einval),
        TEST(test_smi_fd_read_write),
        TEST(test_smi_reset_lines),
        TEST(test_smi_mask_and_gpu_filter),
        TEST(test_smi_reset_halves),
        TEST(test_smi_reset_loses_vram_only),
        TEST(test_smi_reset_queue_eviction_per_process),
        TEST(test_smi_vmfault_line),
};

int main(int argc, char *argv[]) {
        if (argc >= 2 && strcmp(argv[1], "helper_open_and_wait") == 0) {
                child_args = argv + 2;
                helper_open_and_wait();
                return EXIT_SUCCESS;
        }
        return test_main(tests, ELEMENTSOF(tests), argc, argv);
}
