/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Peers of io.socket that stall (direct.conf: "peer-timeout-ms" 1500) are
 * dropped: one that never says a word, one that stops in the middle of its
 * AUTH line, one that stops in the middle of a message header, one in the
 * middle of a body. An authenticated connection that merely idles between
 * calls is not: it is served after twice the timeout.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hostile-direct.h"
#include "svmd-protocol.h"
#include "svmd-test.h"

#define UID_ATTACKER 65534
#define TIMEOUT_MS 1500
#define SLACK_MS 6500

static void expect_dropped(const char *what, int fd) {
        uint64_t start = hd_now_usec();

        if (!hd_closed_within(fd, TIMEOUT_MS + SLACK_MS)) {
                fprintf(stderr, "%s: still connected after %u ms\n", what, TIMEOUT_MS + SLACK_MS);
                abort();
        }
        printf("  %-40s dropped after %.0f ms\n", what, (hd_now_usec() - start) / 1000.0);
        close(fd);
}

static void attacker_main(void *arg) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint8_t header[512];
        int silent, auth, head, body, r;
        sd_bus *idle;
        size_t n;

        idle = hd_direct_bus();
        r = test_call(idle, "ListGpus", &error, NULL, "");
        ASSERT_BUS_OK(r, &error);

        silent = hd_connect();

        auth = hd_connect();
        ASSERT_TRUE(send(auth, "\0AUTH EXTERNAL", 14, MSG_NOSIGNAL) == 14);

        head = hd_connect();
        hd_authenticate(head);
        n = hd_call_header(header, sizeof(header), "ListGpus", "", 0, 1);
        ASSERT_TRUE(send(head, header, 10, MSG_NOSIGNAL) == 10);

        body = hd_connect();
        hd_authenticate(body);
        n = hd_call_header(header, sizeof(header), "Attach", "s", 1024, 2);
        ASSERT_TRUE(send(body, header, n, MSG_NOSIGNAL) == (ssize_t) n);
        ASSERT_TRUE(send(body, header, 100, MSG_NOSIGNAL) == 100);

        expect_dropped("silent", silent);
        expect_dropped("stalled in AUTH", auth);
        expect_dropped("stalled in a header", head);
        expect_dropped("stalled in a body", body);

        /* Idle is not stalled. */
        usleep(2 * TIMEOUT_MS * 1000);
        r = test_call(idle, "ListGpus", &error, NULL, "");
        ASSERT_BUS_OK(r, &error);
        printf("  an authenticated connection idle for %u ms is still served\n", 2 * TIMEOUT_MS);
        sd_bus_close_unref(idle);
}

int main(void) {
        TestContext t;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&t);
        hd_wait(hd_fork_as(UID_ATTACKER, attacker_main, NULL));
        test_teardown(&t);
        return 0;
}
