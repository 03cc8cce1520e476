/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * peer-pid: a caller's unit and cgroup are read only while its process is
 * pinned. Children play the caller: alive, exited, replaced by another process
 * under the same pid (clone3 with set_tid, where the test may), or one of
 * another uid; a faked start time stands for a pid recycled during the reads.
 */

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/sched.h>

#include "macro.h"
#include "peer-pid.h"
#include "unit-assert.h"

/* A child that waits until killed; with sockfd_out, connected to listener first. */
static pid_t spawn(int listener, int *ret_sockfd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        socklen_t l = sizeof(sa);
        pid_t pid;

        if (listener >= 0)
                ASSERT_OK(getsockname(listener, (struct sockaddr *) &sa, &l));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                if (listener >= 0) {
                        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, l) < 0)
                                _exit(1);
                }
                for (;;)
                        pause();
        }
        if (listener >= 0) {
                *ret_sockfd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
                ASSERT_TRUE(*ret_sockfd >= 0);
        }
        return pid;
}

static void reap(pid_t pid) {
        ASSERT_OK(kill(pid, SIGKILL));
        ASSERT_TRUE(waitpid(pid, NULL, 0) == pid);
}

/* A new child under the given (free) pid; -1 if the kernel does not let us choose. */
static pid_t spawn_as(pid_t want) {
        struct clone_args args = { .exit_signal = SIGCHLD, .set_tid = (uint64_t) (uintptr_t) &want, .set_tid_size = 1 };
        long r = syscall(SYS_clone3, &args, sizeof(args));

        if (r == 0)
                for (;;)
                        pause();
        return r < 0 ? -1 : (pid_t) r;
}

static int listener_new(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        /* Abstract address, autobound: nothing to clean up. */
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof(sa_family_t)));
        ASSERT_OK(listen(fd, 4));
        return fd;
}

static void test_alive_and_gone(void) {
        _cleanup_(peer_pid_done) PeerPid p = PEER_PID_NULL;
        _cleanup_free_ char *unit = NULL, *cgroup = NULL;
        pid_t child = spawn(-1, NULL);
        PeerPid faked;
        char *u, *c;

        ASSERT_OK(peer_pid_pin(child, -EBADF, &p));
        ASSERT_FALSE(p.from_peer);
        ASSERT_OK(peer_pid_read_identity(&p, getuid(), &unit, &cgroup));
        printf("child %d: unit \"%s\", cgroup \"%s\"\n", (int) child, unit, cgroup);

        /* The pid now names a process that started at another time: recycled during the reads. */
        faked = p;
        faked.start++;
        ASSERT_EQ(peer_pid_read_identity(&faked, getuid(), &u, &c), -ESTALE);

        /* A pid the bus told us, now held by a process of another uid. */
        ASSERT_EQ(peer_pid_read_identity(&p, getuid() + 4242, &u, &c), -ESTALE);

        /* Without pidfds (Linux < 5.3, valgrind): the start time and uid checks alone. */
        faked = p;
        faked.pidfd = -EBADF;
        ASSERT_OK(peer_pid_read_identity(&faked, getuid(), &u, &c));
        free(u);
        free(c);
        faked.start++;
        ASSERT_EQ(peer_pid_read_identity(&faked, getuid(), &u, &c), -ESTALE);

        /* Gone (and reaped): refused, and cannot be pinned again. */
        reap(child);
        ASSERT_EQ(peer_pid_read_identity(&p, getuid(), &u, &c), -ESRCH);
        faked.start--;
        ASSERT_EQ(peer_pid_read_identity(&faked, getuid(), &u, &c), -ESTALE);
        peer_pid_done(&p);
        ASSERT_EQ(peer_pid_pin(child, -EBADF, &p), -ESRCH);
}

static void test_recycled(void) {
        _cleanup_(peer_pid_done) PeerPid p = PEER_PID_NULL, q = PEER_PID_NULL;
        _cleanup_close_ int listener = listener_new(), sockfd = -EBADF;
        _cleanup_free_ char *unit = NULL, *cgroup = NULL;
        pid_t child = spawn(listener, &sockfd), other;
        char *u, *c;

        /* The socket's own pidfd: the process that connected, whatever uid it runs as now. */
        ASSERT_OK(peer_pid_pin(child, sockfd, &p));
        if (!p.from_peer)
                printf("no SO_PEERPIDFD on this kernel: a pidfd opened for the pid stands in\n");
        else
                ASSERT_OK(peer_pid_read_identity(&p, getuid() + 4242, &unit, &cgroup));

        reap(child);
        other = spawn_as(child);
        if (other < 0) {
                printf("clone3 with set_tid not permitted (%m): recycling by hand skipped\n");
                return;
        }
        ASSERT_EQ(other, child);
        printf("pid %d recycled by a new process\n", (int) child);

        /* Pinned before: the pidfd's process is gone, although /proc/PID exists again. */
        ASSERT_EQ(peer_pid_read_identity(&p, getuid(), &u, &c), -ESRCH);
        /* The socket names the process that connected, not the pid's new holder. */
        ASSERT_EQ(peer_pid_pin(child, sockfd, &q), p.from_peer ? -ESRCH : 0);
        reap(other);
}

int main(void) {
        test_alive_and_gone();
        test_recycled();
        printf("peer-pid: ok\n");
        return 0;
}
