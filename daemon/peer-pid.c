/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/capability.h>
#include <systemd/sd-login.h>

#include "macro.h"
#include "peer-pid.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* asm-generic/socket.h, Linux 6.5 */
#endif

/* Read /proc/PID/<what> into buf (NUL-terminated). -ESRCH if the process does not exist. */
static int read_proc(pid_t pid, const char *what, char *buf, size_t size) {
        _cleanup_close_ int fd = -EBADF;
        char path[64];
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, what);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return errno == ENOENT ? -ESRCH : negative_errno();
        n = read(fd, buf, size - 1);
        if (n < 0)
                return errno == ESRCH ? -ESRCH : negative_errno();
        buf[n] = '\0';
        return 0;
}

int pid_start_time(pid_t pid, uint64_t *ret) {
        char buf[2048], *p, *end;
        unsigned long long v;
        int k;

        k = read_proc(pid, "stat", buf, sizeof(buf));
        if (k < 0)
                return k;
        /* "pid (comm) state ppid …": comm may hold spaces and parentheses, the last ')' ends it. */
        p = strrchr(buf, ')');
        if (!p)
                return -EIO;
        p++;
        /* Fields 3 (state) to 21 precede the start time, field 22. */
        for (int field = 3; field <= 22; field++) {
                while (*p == ' ')
                        p++;
                if (!*p)
                        return -EIO;
                if (field == 22)
                        break;
                p = strchr(p, ' ');
                if (!p)
                        return -EIO;
        }
        errno = 0;
        v = strtoull(p, &end, 10);
        if (errno != 0 || end == p)
                return -EIO;
        *ret = v;
        return 0;
}

/* Read /proc/PID/status into buf; *ret: the value of its line "key" ("Uid:"). */
static int read_status_line(pid_t pid, const char *key, char *buf, size_t size, const char **ret) {
        char needle[32];
        const char *p;
        int k;

        k = read_proc(pid, "status", buf, size);
        if (k < 0)
                return k;
        snprintf(needle, sizeof(needle), "\n%s", key);
        p = strstr(buf, needle);
        if (!p)
                return -EIO;
        *ret = p + strlen(needle);
        return 0;
}

/* Whether the process runs as uid, as its real or effective uid. */
static int pid_has_uid(pid_t pid, uid_t uid) {
        char buf[4096];
        const char *p;
        unsigned long real, effective;
        int k;

        k = read_status_line(pid, "Uid:", buf, sizeof(buf), &p);
        if (k < 0)
                return k;
        if (sscanf(p, "%lu %lu", &real, &effective) != 2)
                return -EIO;
        return real == uid || effective == uid;
}

/*
 * Whether the process has CAP_SYS_ADMIN in its effective set. uid 0 alone is no proof of being
 * the node's root: a container's root without a user namespace is uid 0 too, with a smaller
 * capability set (docs/containers.md).
 */
static int pid_has_sys_admin(pid_t pid) {
        char buf[4096];
        const char *p;
        unsigned long long caps;
        int k;

        k = read_status_line(pid, "CapEff:", buf, sizeof(buf), &p);
        if (k < 0)
                return k;
        if (sscanf(p, "%llx", &caps) != 1)
                return -EIO;
        return !!(caps & (1ULL << CAP_SYS_ADMIN));
}

static int pidfd_alive(int pidfd) {
        struct pollfd p = { .fd = pidfd, .events = POLLIN };

        /* A pidfd becomes readable when its process exits: no signal, no permission needed. */
        if (poll(&p, 1, 0) < 0)
                return negative_errno();
        if (p.revents & POLLNVAL)
                return -EBADF;
        return p.revents & (POLLIN | POLLHUP) ? -ESRCH : 0;
}

/* The pidfd of the process that connected sockfd. -ENOPROTOOPT: the kernel has none to give. */
static int socket_peer_pidfd(int sockfd) {
        socklen_t l = sizeof(int);
        int fd = -EBADF;

        if (getsockopt(sockfd, SOL_SOCKET, SO_PEERPIDFD, &fd, &l) < 0) {
                /* Linux < 6.5 does not know the option; newer ones refuse it for a peer that is gone. */
                if (errno == ENOPROTOOPT || errno == EOPNOTSUPP)
                        return -ENOPROTOOPT;
                return errno == EINVAL || errno == ESRCH ? -ESRCH : negative_errno();
        }
        return fd;
}

int peer_pid_pin(pid_t pid, int sockfd, PeerPid *ret) {
        _cleanup_close_ int fd = -EBADF;
        bool from_peer = false;
        uint64_t start;
        int k;

        if (pid <= 0)
                return -ESRCH;
        if (sockfd >= 0) {
                fd = socket_peer_pidfd(sockfd);
                if (fd < 0 && fd != -ENOPROTOOPT)
                        return fd;
                from_peer = fd >= 0;
        }
        if (fd < 0) {
                fd = pidfd_open(pid, 0);
                /* Linux < 5.3 (or valgrind) has no pidfds: the start time alone tells a recycled pid. */
                if (fd < 0 && errno != ENOSYS)
                        return errno == ESRCH ? -ESRCH : negative_errno();
        }
        if (fd >= 0) {
                k = pidfd_alive(fd);
                if (k < 0)
                        return k;
        }
        k = pid_start_time(pid, &start);
        if (k < 0)
                return k;
        *ret = (PeerPid) { .pid = pid, .pidfd = TAKE_FD(fd), .from_peer = from_peer, .start = start };
        return 0;
}

void peer_pid_done(PeerPid *p) {
        p->pidfd = safe_close(p->pidfd);
}

int peer_pid_read_identity(const PeerPid *p, uid_t uid, char **ret_unit, char **ret_cgroup) {
        _cleanup_free_ char *unit = NULL, *cgroup = NULL;
        bool sys_admin = true;
        uint64_t start;
        int k;

        if (sd_pid_get_unit(p->pid, &unit) < 0 && sd_pid_get_user_unit(p->pid, &unit) < 0)
                unit = NULL;
        if (sd_pid_get_cgroup(p->pid, &cgroup) < 0)
                cgroup = NULL;
        if (uid == 0) {
                /* Gone: the checks below say how (exited, or the pid reused). */
                k = pid_has_sys_admin(p->pid);
                if (k < 0 && k != -ESRCH)
                        return k;
                sys_admin = k > 0;
        }

        /* Alive now and pinned since before the reads: the pid named this process all along. */
        if (p->pidfd >= 0) {
                k = pidfd_alive(p->pidfd);
                if (k < 0)
                        return k;
        }
        k = pid_start_time(p->pid, &start);
        if (k == -ESRCH || (k >= 0 && start != p->start))
                return -ESTALE;
        if (k < 0)
                return k;
        if (!p->from_peer) {
                /* A pid the bus told us: the process now holding it may not be the caller. */
                k = pid_has_uid(p->pid, uid);
                if (k < 0)
                        return k == -ESRCH ? -ESTALE : k;
                if (k == 0)
                        return -ESTALE;
        }

        /* Read from the process pinned all along: it is the caller's, and uid 0 without it is refused. */
        if (!sys_admin)
                return -EPERM;

        if (!unit)
                unit = strdup("");
        if (!cgroup)
                cgroup = strdup("");
        if (!unit || !cgroup)
                return -ENOMEM;
        *ret_unit = TAKE_PTR(unit);
        *ret_cgroup = TAKE_PTR(cgroup);
        return 0;
}
