/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Measures what attacks on io.socket cost svmd (numbers for docs, not a test).
 * Run under svmd-harness:
 *
 *   direct-stress idle N   uid 2 opens N connections and authenticates them; root's
 *                          GetUsage over the bus and uid 1's direct call are timed
 *                          while they are open and right after they all close
 *   direct-stress big N    uid 2 opens N connections, each announcing a 127 MiB body
 *                          and sending 120 MiB of it; svmd's RSS is measured
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hostile-direct.h"
#include "svmd-protocol.h"
#include "svmd-test.h"

static unsigned n_conns;
static int ready[2], go[2];

/* Like hd_authenticate(), but a refusal (closed socket) is counted, not fatal. */
static bool try_authenticate(int fd) {
        char buf[256];
        const char *auth = "\0AUTH EXTERNAL 32\r\nNEGOTIATE_UNIX_FD\r\n";
        ssize_t k;
        size_t n = 0;

        if (send(fd, auth, 38, MSG_NOSIGNAL) != 38)
                return false;
        /* OK …\r\n and AGREE_UNIX_FD\r\n */
        while (n < sizeof(buf) - 1) {
                k = read(fd, buf + n, sizeof(buf) - 1 - n);
                if (k <= 0)
                        return false;
                n += (size_t) k;
                buf[n] = '\0';
                if (strstr(buf, "AGREE_UNIX_FD\r\n"))
                        break;
        }
        return send(fd, "BEGIN\r\n", 7, MSG_NOSIGNAL) == 7;
}

static void idle_main(void *arg) {
        int *fds = calloc(n_conns, sizeof(int));
        unsigned ok = 0;
        char c;

        ASSERT_TRUE(fds);
        for (unsigned i = 0; i < n_conns; i++) {
                fds[i] = hd_connect();
                ok += try_authenticate(fds[i]);
        }
        printf("uid 2: %u connections, %u authenticated\n", n_conns, ok);
        ASSERT_TRUE(write(ready[1], "r", 1) == 1);
        ASSERT_TRUE(read(go[0], &c, 1) == 1);
        for (unsigned i = 0; i < n_conns; i++)
                close(fds[i]);
        free(fds);
}

static void big_main(void *arg) {
        static uint8_t chunk[1 << 20];
        uint8_t header[512];
        int *fds = calloc(n_conns, sizeof(int));
        size_t n;
        char c;

        ASSERT_TRUE(fds);
        for (unsigned i = 0; i < n_conns; i++) {
                fds[i] = hd_connect();
                ASSERT_TRUE(try_authenticate(fds[i]));
                n = hd_call_header(header, sizeof(header), "Allocate", "tusa{sv}", UINT32_C(127) << 20, 1);
                ASSERT_TRUE(send(fds[i], header, n, MSG_NOSIGNAL) == (ssize_t) n);
        }
        for (unsigned mib = 0; mib < 120; mib++)
                for (unsigned i = 0; i < n_conns; i++)
                        if (fds[i] >= 0 && send(fds[i], chunk, sizeof(chunk), MSG_NOSIGNAL) != (ssize_t) sizeof(chunk)) {
                                close(fds[i]);
                                fds[i] = -1; /* dropped */
                        }
        ASSERT_TRUE(write(ready[1], "r", 1) == 1);
        ASSERT_TRUE(read(go[0], &c, 1) == 1);
        for (unsigned i = 0; i < n_conns; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

static sd_bus *victim;

/* GetUsage timed; a failure (a timeout, typically) is reported, not fatal. */
static uint64_t timed(sd_bus *bus) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t start = hd_now_usec();
        int r = test_call(bus, "GetUsage", &error, NULL, "s", "");

        if (r < 0)
                printf("  (GetUsage failed after %.1f s: %s)\n", (hd_now_usec() - start) / 1e6, error.name);
        sd_bus_error_free(&error);
        return hd_now_usec() - start;
}

static uint64_t worst(sd_bus *bus, unsigned n) {
        uint64_t w = 0;

        for (unsigned i = 0; i < n; i++) {
                uint64_t t = timed(bus);
                w = t > w ? t : w;
        }
        return w;
}

int main(int argc, char *argv[]) {
        TestContext t;
        uint64_t start;
        unsigned base_fds;
        pid_t pid;
        char c;

        setvbuf(stdout, NULL, _IOLBF, 0);
        if (argc != 3)
                return 2;
        n_conns = (unsigned) atoi(argv[2]);
        test_setup(&t);
        ASSERT_OK(pipe2(ready, O_CLOEXEC));
        ASSERT_OK(pipe2(go, O_CLOEXEC));
        base_fds = hd_svmd_fds();
        printf("start: svmd %u fds, RSS %" PRIu64 " KiB\n", base_fds, hd_svmd_rss_kib());

        if (streq(argv[1], "idle")) {
                victim = hd_direct_bus();
                (void) hd_timed_usage(victim);
                start = hd_now_usec();
                pid = hd_fork_as(2, idle_main, NULL);
                close(ready[1]);
                ASSERT_TRUE(read(ready[0], &c, 1) == 1);
                printf("opened in %.1f s: svmd %u fds, RSS %" PRIu64 " KiB\n", (hd_now_usec() - start) / 1e6,
                       hd_svmd_fds(), hd_svmd_rss_kib());
                printf("while open: root GetUsage over the bus worst of 5: %.1f ms; victim's direct call: %.1f ms\n",
                       worst(t.bus, 5) / 1000.0, timed(victim) / 1000.0);
                ASSERT_TRUE(write(go[1], "g", 1) == 1);
                hd_wait(pid);
                start = hd_now_usec();
                printf("all closed: root GetUsage over the bus right after: %.1f ms\n", timed(t.bus) / 1000.0);
                printf("            victim's direct call then: %.1f ms\n", timed(victim) / 1000.0);
                while (hd_svmd_fds() > base_fds + 3 && hd_now_usec() - start < 120 * 1000000ULL)
                        usleep(10000);
                printf("fds back to %u after %.1f s; RSS %" PRIu64 " KiB\n", hd_svmd_fds(),
                       (hd_now_usec() - start) / 1e6, hd_svmd_rss_kib());
                sd_bus_close_unref(victim);
        } else {
                pid = hd_fork_as(2, big_main, NULL);
                close(ready[1]);
                ASSERT_TRUE(read(ready[0], &c, 1) == 1);
                printf("%u × 120 MiB of 127 MiB bodies sent: svmd RSS %" PRIu64 " KiB\n", n_conns, hd_svmd_rss_kib());
                ASSERT_TRUE(write(go[1], "g", 1) == 1);
                hd_wait(pid);
        }
        test_teardown(&t);
        return 0;
}
