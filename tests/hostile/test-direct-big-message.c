/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Messages larger than "message-size" on io.socket (64 KiB in direct.conf):
 *
 *   - 4 connections announce 127 MiB bodies and send 32 MiB of each: svmd's
 *     RSS does not grow (sd-bus alone would buffer all of it), and when they
 *     stall, svmd drops them after "peer-timeout-ms";
 *   - an Allocate with a 100 KiB label gets LimitsExceeded naming the key, and
 *     the connection goes on working.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hostile-direct.h"
#include "svmd-protocol.h"
#include "svmd-test.h"

#define UID_ATTACKER 2
#define N_BIG 4
#define ANNOUNCED (UINT32_C(127) << 20)
#define SENT (UINT64_C(32) << 20)

static TestContext T;
static int sent_pipe[2], measured_pipe[2];

static void label_main(void *arg) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = hd_direct_bus();
        char *label = malloc(100 * 1024 + 1);
        int r;

        ASSERT_TRUE(label);
        memset(label, 'x', 100 * 1024);
        label[100 * 1024] = '\0';
        r = test_call(bus, "Allocate", &error, NULL, "tusa{sv}", UINT64_C(4096), T.gpus[0], "gtt", 1, "label", "s",
                      label);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_LIMITS_EXCEEDED);
        ASSERT_TRUE(strstr(error.message, "message-size"));
        printf("  100 KiB label: %s\n", error.message);
        sd_bus_error_free(&error);
        /* Still connected, still served. */
        r = test_call(bus, "ListGpus", &error, NULL, "");
        ASSERT_BUS_OK(r, &error);
        sd_bus_close_unref(bus);
        free(label);
}

static void big_main(void *arg) {
        static uint8_t chunk[1 << 20];
        uint8_t header[512];
        int fds[N_BIG];
        size_t n;
        char c;

        for (unsigned i = 0; i < N_BIG; i++) {
                fds[i] = hd_connect();
                hd_authenticate(fds[i]);
                n = hd_call_header(header, sizeof(header), "Allocate", "tusa{sv}", ANNOUNCED, 1);
                ASSERT_TRUE(send(fds[i], header, n, MSG_NOSIGNAL) == (ssize_t) n);
        }
        for (uint64_t sent = 0; sent < SENT; sent += sizeof(chunk))
                for (unsigned i = 0; i < N_BIG; i++)
                        ASSERT_TRUE(send(fds[i], chunk, sizeof(chunk), MSG_NOSIGNAL) == (ssize_t) sizeof(chunk));
        ASSERT_TRUE(write(sent_pipe[1], "s", 1) == 1);
        ASSERT_TRUE(read(measured_pipe[0], &c, 1) == 1);

        /* Now stall: each is dropped after the timeout (1.5 s; generous for slow builds). */
        for (unsigned i = 0; i < N_BIG; i++) {
                ASSERT_TRUE(hd_closed_within(fds[i], 8000));
                close(fds[i]);
        }
        printf("  the stalled senders were dropped\n");
}

int main(void) {
        uint64_t base_rss, rss;
        pid_t pid;
        char c;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        ASSERT_OK(pipe2(sent_pipe, O_CLOEXEC));
        ASSERT_OK(pipe2(measured_pipe, O_CLOEXEC));

        base_rss = hd_svmd_rss_kib();
        pid = hd_fork_as(UID_ATTACKER, big_main, NULL);
        close(sent_pipe[1]); /* the child's end only: if it dies, read() returns 0 */
        ASSERT_TRUE(read(sent_pipe[0], &c, 1) == 1);
        rss = hd_svmd_rss_kib();
        printf("svmd's RSS: %" PRIu64 " KiB before, %" PRIu64 " KiB with %d × %" PRIu64
               " MiB of 127 MiB bodies sent\n", base_rss, rss, N_BIG, SENT >> 20);
        ASSERT_TRUE(rss <= base_rss + 8192);
        ASSERT_TRUE(write(measured_pipe[1], "m", 1) == 1);
        hd_wait(pid);

        hd_wait(hd_fork_as(UID_ATTACKER, label_main, NULL));

        test_teardown(&T);
        return 0;
}
