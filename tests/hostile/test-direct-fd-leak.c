/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * File descriptors sent on io.socket with a message whose header has no
 * UNIX_FDS field (5 messages of 250 fds, and 50 of 4 fds, fewer than a message
 * may carry at all): libsystemd 252 would drop the message and keep the fds
 * open for good. svmd's fd count must return to
 * where it was; a message whose UNIX_FDS matches still gets its answer.
 */

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hostile-direct.h"
#include "svmd-protocol.h"
#include "svmd-test.h"

#define UID_ATTACKER 65534
#define N_MESSAGES 5
#define N_FDS 250
/* Whether sd-bus would keep a small message's fds depends on how its reads split the stream,
 * so send many: about one in five of them would stay open for good. */
#define N_SMALL_MESSAGES 50

static void attacker_main(void *arg) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL;
        uint8_t header[512];
        int pipefd[2], r;
        sd_bus *bus;

        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        for (unsigned i = 0; i < N_MESSAGES + N_SMALL_MESSAGES; i++) {
                int fd = hd_connect();
                size_t n;

                hd_authenticate(fd);
                n = hd_call_header(header, sizeof(header), "ListGpus", "", 0, 1);
                hd_send_fds(fd, header, n, pipefd[0], i < N_MESSAGES ? N_FDS : 4);
                /* A second call, without fds: once svmd answers it or hangs up, it has dealt with the
                 * first, so the count below does not race with svmd still reading. */
                n = hd_call_header(header, sizeof(header), "ListGpus", "", 0, 2);
                if (send(fd, header, n, MSG_NOSIGNAL) == (ssize_t) n) /* svmd may have hung up already */
                        (void) poll(&(struct pollfd) { .fd = fd, .events = POLLIN }, 1, 10 * 1000);
                close(fd);
        }

        /* An fd announced as it should be reaches the method (which has no use for it). */
        bus = hd_direct_bus();
        ASSERT_OK(sd_bus_message_new_method_call(bus, &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                                 "Free"));
        ASSERT_OK(sd_bus_message_append(m, "h", pipefd[1]));
        r = sd_bus_call(bus, m, 30 * 1000000ULL, &error, NULL);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_message_unref(m);
        sd_bus_close_unref(bus);
}

int main(void) {
        TestContext t;
        unsigned base, now = 0;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&t);
        base = hd_svmd_fds();
        hd_wait(hd_fork_as(UID_ATTACKER, attacker_main, NULL));
        for (int i = 0; i < 200; i++) {
                now = hd_svmd_fds();
                if (now <= base)
                        break;
                usleep(25 * 1000);
        }
        printf("svmd's fds: %u at the start, %u after %d messages of %d and %d of 4 fds without UNIX_FDS\n", base,
               now, N_MESSAGES, N_FDS, N_SMALL_MESSAGES);
        ASSERT_TRUE(now <= base);
        test_teardown(&t);
        return 0;
}
