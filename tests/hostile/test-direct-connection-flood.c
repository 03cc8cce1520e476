/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * One uid floods io.socket (under svmd-harness with direct.conf: 16 connections
 * per uid, 64 in total): 16 connections are served, the 17th gets
 * LimitsExceeded naming "connections-per-uid", and 1000 more that never
 * authenticate cost the daemon nothing that lasts. Meanwhile root's GetUsage
 * over the bus and another tenant's call on its direct connection are answered
 * within a second, and root can still connect directly. When the flood closes
 * (all at once), svmd answers at once again, and its fds and memory return to
 * where they were. expect-log.py checks that the refusal was logged once.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostile-direct.h"
#include "svmd-protocol.h"
#include "svmd-test.h"

#define UID_VICTIM 1
#define UID_FLOOD 2
#define PER_UID 16
#define FLOOD 1000
#define BOUND_USEC (1000 * 1000ULL)

static int flood_ready[2], flood_go[2], victim_ready[2], victim_go[2];

static void wait_byte(int fd) {
        char c;

        ASSERT_TRUE(read(fd, &c, 1) == 1);
}

static void send_byte(int fd) {
        ASSERT_TRUE(write(fd, "x", 1) == 1);
}

static void flood_main(void *arg) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *buses[PER_UID + 1];
        int *fds = calloc(FLOOD, sizeof(int));
        int r;

        ASSERT_TRUE(fds);
        for (unsigned i = 0; i < PER_UID; i++) {
                buses[i] = hd_direct_bus();
                r = test_call(buses[i], "GetUsage", &error, NULL, "s", "");
                ASSERT_BUS_OK(r, &error);
        }
        /* One more: refused, and told why. */
        buses[PER_UID] = hd_direct_bus();
        r = test_call(buses[PER_UID], "GetUsage", &error, NULL, "s", "");
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_LIMITS_EXCEEDED);
        ASSERT_TRUE(strstr(error.message, "connections-per-uid"));
        printf("  connection %u of uid %d: %s\n", PER_UID + 1, UID_FLOOD, error.message);
        sd_bus_error_free(&error);

        /* Many more that never say a word. */
        for (unsigned i = 0; i < FLOOD; i++)
                fds[i] = hd_connect();
        send_byte(flood_ready[1]);
        wait_byte(flood_go[0]);

        /* All gone at once. */
        for (unsigned i = 0; i < FLOOD; i++)
                close(fds[i]);
        for (unsigned i = 0; i <= PER_UID; i++)
                sd_bus_close_unref(buses[i]);
        free(fds);
}

static void victim_main(void *arg) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus;
        uint64_t start, took;
        int r;

        /* Only the flood child may hold it open: the parent sees it die. */
        close(flood_ready[1]);
        bus = hd_direct_bus();
        r = test_call(bus, "GetUsage", &error, NULL, "s", "");
        ASSERT_BUS_OK(r, &error);
        send_byte(victim_ready[1]);
        wait_byte(victim_go[0]);
        start = hd_now_usec();
        r = test_call(bus, "GetUsage", &error, NULL, "s", "");
        took = hd_now_usec() - start;
        ASSERT_BUS_OK(r, &error);
        printf("  uid %d's direct call during the flood: %.1f ms\n", UID_VICTIM, took / 1000.0);
        ASSERT_TRUE(took < BOUND_USEC);
        sd_bus_close_unref(bus);
}

static uint64_t worst_usage(sd_bus *bus, unsigned n) {
        uint64_t worst = 0;

        for (unsigned i = 0; i < n; i++) {
                uint64_t t = hd_timed_usage(bus);
                if (t > worst)
                        worst = t;
        }
        return worst;
}

int main(void) {
        TestContext t;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        unsigned base_fds, fds = 0;
        uint64_t base_rss, rss = 0, worst;
        pid_t flood, victim;
        sd_bus *root_direct;
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&t);
        ASSERT_OK(pipe2(flood_ready, O_CLOEXEC));
        ASSERT_OK(pipe2(flood_go, O_CLOEXEC));
        ASSERT_OK(pipe2(victim_ready, O_CLOEXEC));
        ASSERT_OK(pipe2(victim_go, O_CLOEXEC));
        (void) hd_timed_usage(t.bus);
        base_fds = hd_svmd_fds();
        base_rss = hd_svmd_rss_kib();
        printf("svmd at the start: %u fds, RSS %" PRIu64 " KiB\n", base_fds, base_rss);

        victim = hd_fork_as(UID_VICTIM, victim_main, NULL);
        close(victim_ready[1]); /* a child that dies closes its end: no waiting for ever */
        wait_byte(victim_ready[0]);
        flood = hd_fork_as(UID_FLOOD, flood_main, NULL);
        close(flood_ready[1]);
        wait_byte(flood_ready[0]);
        printf("flood open: svmd has %u fds, RSS %" PRIu64 " KiB\n", hd_svmd_fds(), hd_svmd_rss_kib());

        worst = worst_usage(t.bus, 5);
        printf("  root's GetUsage over the bus during the flood: worst of 5 %.1f ms\n", worst / 1000.0);
        ASSERT_TRUE(worst < BOUND_USEC);
        send_byte(victim_go[1]);
        hd_wait(victim);

        /* An administrator still gets in. */
        root_direct = hd_direct_bus();
        r = test_call(root_direct, "GetUsage", &error, NULL, "s", "");
        ASSERT_BUS_OK(r, &error);
        sd_bus_close_unref(root_direct);

        send_byte(flood_go[1]);
        hd_wait(flood);
        worst = worst_usage(t.bus, 5);
        printf("  root's GetUsage right after the flood closed: worst of 5 %.1f ms\n", worst / 1000.0);
        ASSERT_TRUE(worst < BOUND_USEC);

        /* Everything the flood cost is given back. */
        for (int i = 0; i < 200; i++) {
                fds = hd_svmd_fds();
                rss = hd_svmd_rss_kib();
                if (fds <= base_fds && rss <= base_rss + 8192)
                        break;
                usleep(25 * 1000);
        }
        printf("after: svmd has %u fds (%u at the start), RSS %" PRIu64 " KiB (%" PRIu64 " at the start)\n", fds,
               base_fds, rss, base_rss);
        ASSERT_TRUE(fds <= base_fds);
        ASSERT_TRUE(rss <= base_rss + 8192);
        test_teardown(&t);
        return 0;
}
