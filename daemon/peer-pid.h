/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The process behind a connection, pinned while svmd reads its unit and cgroup
 * from /proc (docs/architecture.md, "Who calls").
 *
 * A pid is only a number: once its process is gone, the number can be given to
 * another process, and /proc/PID then describes that one. So svmd holds a pidfd
 * while it reads. On the direct socket the kernel hands out a pidfd of the very
 * process that connected (SO_PEERPIDFD, Linux 6.5); if that process has exited,
 * the caller is refused. Otherwise (bus callers, older kernels) svmd opens a
 * pidfd for the pid it was told; the process it names must then run as the
 * caller's uid, so another user's process is never taken for the caller.
 * Either way, after reading, the pidfd's process must still be alive (its pidfd
 * not readable) and have the start time read first: the pid was not recycled in
 * between. Without pidfds (Linux < 5.3, or under valgrind) the start time check
 * and the uid check remain.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct PeerPid {
        pid_t pid;
        int pidfd;              /* owned; -EBADF where the kernel has no pidfds */
        bool from_peer;         /* the socket's own pidfd (SO_PEERPIDFD) */
        uint64_t start;         /* /proc/PID/stat starttime, clock ticks after boot */
} PeerPid;

#define PEER_PID_NULL ((PeerPid) { .pidfd = -EBADF })

/*
 * Pin the process pid: the pidfd of sockfd's peer (SO_PEERPIDFD) where the socket and the
 * kernel offer one, else (sockfd -EBADF, or an older kernel) a pidfd opened for pid; and read
 * its start time. -ESRCH: the process is gone.
 */
int peer_pid_pin(pid_t pid, int sockfd, PeerPid *ret);
void peer_pid_done(PeerPid *p);

/* Start time of pid, from /proc/PID/stat (field 22). -ESRCH if there is no such process. */
int pid_start_time(pid_t pid, uint64_t *ret);

/*
 * The unit ("" outside any) and cgroup ("" when unknown) of the pinned process, then the
 * checks: -ESRCH if it is gone, -ESTALE if /proc/PID is another process by now, or (for a
 * pidfd svmd opened itself) one that runs as neither real nor effective uid `uid`; -EPERM
 * if uid is 0 but the process lacks CAP_SYS_ADMIN (a container's root, docs/containers.md).
 */
int peer_pid_read_identity(const PeerPid *p, uid_t uid, char **ret_unit, char **ret_cgroup);
