/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * A client that talks to svmd only over the direct socket for a while keeps
 * its bus connection. dbus-daemon closes a connection that has not said Hello
 * within auth_timeout (30 s by default); libsvmd must finish the handshake in
 * svmd_client_new(), not at the first call that happens to go over the bus.
 *
 * Run under svmd-harness --bus-auth-timeout-ms MS; the test idles 3 × MS.
 *   test-idle-bus MS
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <svmd/svmd.h>

#include "macro.h"
#include "svmd-assert.h"
#include "unit-assert.h"

static void sleep_ms(unsigned ms) {
        struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static uint32_t gpu;

/* Idle, or busy on the direct socket only, past the bus's auth_timeout; then use the bus. */
static void test_idle(unsigned timeout_ms, bool direct_calls) {
        _cleanup_free_ svmd_gpu *g = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        svmd_client *c = NULL;
        svmd_allocation a;
        svmd_usage u;
        size_t n = 0;
        int r;

        r = svmd_client_new(&c, NULL, NULL, 0, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(svmd_client_is_direct(c));

        for (unsigned waited = 0; waited < 3 * timeout_ms; waited += 100) {
                if (direct_calls) {
                        /* Allocate and Free are hot: they go over the direct socket. */
                        r = svmd_allocate(c, 4096, gpu, "gtt", NULL, &a, &e);
                        ASSERT_SVMD_OK(r, &e);
                        r = svmd_free(c, a.id, &e);
                        ASSERT_SVMD_OK(r, &e);
                }
                sleep_ms(100);
        }

        /* ListGpus and GetUsage go over the bus. */
        r = svmd_list_gpus(c, &g, &n, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(n > 0);
        r = svmd_get_usage(c, NULL, &u, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_UEQ(u.ranges, 0);
        svmd_client_free(c);
}

int main(int argc, char *argv[]) {
        _cleanup_free_ svmd_gpu *g = NULL;
        svmd_error e = SVMD_ERROR_NULL;
        svmd_client *c = NULL;
        unsigned timeout_ms;
        size_t n = 0;
        int r;

        if (argc != 2 || !getenv("SVMD_BUS_ADDRESS")) {
                fprintf(stderr, "usage: svmd-harness --bus-auth-timeout-ms MS -- test-idle-bus MS\n");
                return 2;
        }
        timeout_ms = (unsigned) strtoul(argv[1], NULL, 10);
        ASSERT_TRUE(timeout_ms > 0 && timeout_ms <= 10000);

        /* A GPU to allocate on, asked by a client of its own: the clients under test must not touch the bus. */
        r = svmd_client_new(&c, NULL, NULL, SVMD_CLIENT_NO_DIRECT, &e);
        ASSERT_SVMD_OK(r, &e);
        r = svmd_list_gpus(c, &g, &n, &e);
        ASSERT_SVMD_OK(r, &e);
        ASSERT_TRUE(n > 0);
        gpu = g[0].gpu_id;
        svmd_client_free(c);

        fprintf(stderr, "== idle for %u ms\n", 3 * timeout_ms);
        test_idle(timeout_ms, false);
        fprintf(stderr, "== direct calls only for %u ms\n", 3 * timeout_ms);
        test_idle(timeout_ms, true);
        return 0;
}
