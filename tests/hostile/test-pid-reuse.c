/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * A connection outlives the process that opened it, and that process's pid is
 * recycled by a process in another tenant's cgroup before the connection's
 * first call. svmd must not label the connection with the new process's
 * cgroup (which a share token is granted to).
 *
 * The attacker (uid 2, cgroup "attacker") connects a socket and exits; the
 * test keeps the socket. Then clone3() with set_tid puts a process at the
 * same pid, in the cgroup "victim": as uid 2 for the direct socket (where the
 * socket's own pidfd shows that the connecting process is gone), as uid 65534
 * for the bus (where svmd only has the pid the bus reports, and the process
 * now holding it runs as another uid). A child of uid 2 then speaks D-Bus over
 * the kept socket and calls Attach with the token granted to "victim": it must
 * be refused. A client really in "victim" attaches, as a control.
 *
 * Needs root (cgroups, set_tid); skipped (77) where the kernel does not allow
 * either, saying why.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

#include "hostile-cgroup.h"
#include "svmd-protocol.h"
#include "svmd-test.h"

#define UID_ATTACKER 2
#define UID_OTHER 65534

static TestContext T;
static char token[128];

static void socket_address(bool direct, struct sockaddr_un *sa) {
        const char *a = getenv("SVMD_BUS_ADDRESS");

        *sa = (struct sockaddr_un) { .sun_family = AF_UNIX };
        if (direct)
                snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/io.socket", getenv("SVMD_RUNTIME_DIR"));
        else {
                ASSERT_TRUE(strncmp(a, "unix:path=", 10) == 0);
                snprintf(sa->sun_path, sizeof(sa->sun_path), "%.*s", (int) strcspn(a + 10, ","), a + 10);
        }
}

static int wait_child(pid_t pid) {
        int status;

        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Speak D-Bus as uid 2 over an already connected socket; Attach. 0: refused as it must be. */
static int attach_over(int fd, bool direct, const char *what) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = NULL;
        int r;

        test_become(UID_ATTACKER);
        ASSERT_OK(sd_bus_new(&bus));
        ASSERT_OK(sd_bus_set_fd(bus, fd, fd));
        ASSERT_OK(sd_bus_set_bus_client(bus, !direct));
        ASSERT_OK(sd_bus_negotiate_fds(bus, true));
        ASSERT_OK(sd_bus_start(bus));
        r = test_call(bus, "Attach", &error, NULL, "s", token);
        if (r >= 0) {
                fprintf(stderr, "%s: Attach with the victim's token succeeded\n", what);
                return 1;
        }
        printf("  %-44s refused: %s: %s\n", what, error.name, error.message);
        if (!sd_bus_error_has_name(&error, SD_BUS_ERROR_ACCESS_DENIED) || !strstr(error.message, "connect again"))
                return 1;
        sd_bus_error_free(&error);
        sd_bus_flush_close_unref(bus);
        return 0;
}

/* One attempt; 0 done, -EEXIST when the pid was taken by someone else in between (try again). */
static int attack(bool direct) {
        const char *what = direct ? "direct socket, pid recycled by uid 2" : "bus, pid recycled by uid 65534";
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa;
        int ready[2], status;
        pid_t connector, v, b;
        char c;

        socket_address(direct, &sa);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        ASSERT_TRUE(fd >= 0);

        /* The process that connects: attacker's cgroup and uid; it exits at once. */
        connector = fork();
        ASSERT_TRUE(connector >= 0);
        if (connector == 0) {
                hostile_cgroup_enter("attacker");
                test_become(UID_ATTACKER);
                _exit(connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ? 1 : 0);
        }
        status = wait_child(connector);
        if (status == HOSTILE_CGROUP_SKIP)
                exit(HOSTILE_CGROUP_SKIP);
        ASSERT_TRUE(status == 0);

        /* Its pid, recycled by a process in the victim's cgroup. */
        ASSERT_OK(pipe2(ready, O_CLOEXEC));
        {
                struct clone_args args = {
                        .exit_signal = SIGCHLD,
                        .set_tid = (uint64_t) (uintptr_t) &connector,
                        .set_tid_size = 1,
                };
                long r = syscall(SYS_clone3, &args, sizeof(args));

                if (r < 0 && errno == EEXIST) {
                        close(ready[0]);
                        close(ready[1]);
                        return -EEXIST;
                }
                if (r < 0) {
                        printf("SKIP: clone3() with set_tid is not permitted here: %m\n");
                        exit(HOSTILE_CGROUP_SKIP);
                }
                v = (pid_t) r;
        }
        if (v == 0) {
                hostile_cgroup_enter("victim");
                test_become(direct ? UID_ATTACKER : UID_OTHER);
                ASSERT_TRUE(write(ready[1], "r", 1) == 1);
                for (;;)
                        pause();
        }
        close(ready[1]);
        ASSERT_TRUE(read(ready[0], &c, 1) == 1);
        close(ready[0]);
        ASSERT_TRUE(v == connector);

        /* Another process of the attacker uses the kept connection for the first time. */
        b = fork();
        ASSERT_TRUE(b >= 0);
        if (b == 0)
                _exit(attach_over(fd, direct, what));
        status = wait_child(b);
        ASSERT_OK(kill(v, SIGKILL));
        (void) wait_child(v);
        if (status != 0) {
                fprintf(stderr, "%s: the connection was labelled with the victim's cgroup\n", what);
                abort();
        }
        return 0;
}

/* Control: a process that is in the victim's cgroup attaches. */
static void control(void) {
        pid_t pid = fork();

        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                sd_bus_error error = SD_BUS_ERROR_NULL;
                sd_bus *bus = NULL;
                int r;

                hostile_cgroup_enter("victim");
                test_become(UID_ATTACKER);
                ASSERT_OK(sd_bus_new(&bus));
                ASSERT_OK(sd_bus_set_address(bus, getenv("SVMD_BUS_ADDRESS")));
                ASSERT_OK(sd_bus_set_bus_client(bus, true));
                ASSERT_OK(sd_bus_negotiate_fds(bus, true));
                ASSERT_OK(sd_bus_start(bus));
                r = test_call(bus, "Attach", &error, NULL, "s", token);
                ASSERT_BUS_OK(r, &error);
                printf("  %-44s attached\n", "control: a client in the victim's cgroup");
                sd_bus_flush_close_unref(bus);
                _exit(0);
        }
        ASSERT_TRUE(wait_child(pid) == 0);
}

int main(void) {
        static const char *const subs[] = { "victim", "attacker", NULL };

        setvbuf(stdout, NULL, _IOLBF, 0);
        hostile_cgroup_setup("svmd-pid-reuse", subs);
        test_setup(&T);
        hostile_cgroup_share(T.bus, T.gpus[0], "victim", token, sizeof(token));
        control();
        for (int direct = 1; direct >= 0; direct--) {
                int r = -EEXIST;

                for (int i = 0; i < 20 && r == -EEXIST; i++)
                        r = attack(direct);
                ASSERT_OK(r);
        }
        printf("pid-reuse: a recycled pid does not lend its cgroup to a connection\n");
        test_teardown(&T);
        return 0;
}
