/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * request_digest(): the digests of calls with a request id are kept with persistent ranges across
 * restarts (persist.c), so the bytes they are taken of must not change. The expected values were
 * computed by the implementation that wrote them with open_memstream().
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "request-cache.h"
#include "unit-assert.h"

static sd_bus *bus;
static uint64_t cookie;

static sd_bus_message *new_call(const char *member) {
        sd_bus_message *m = NULL;

        ASSERT_OK(sd_bus_message_new_method_call(bus, &m, "org.svmd1", "/org/svmd1", "org.svmd1.Manager", member));
        return m;
}

static uint64_t digest_of(sd_bus_message *m) {
        uint64_t d = 0;

        ASSERT_OK(sd_bus_message_seal(m, ++cookie, 0));
        ASSERT_OK(request_digest(m, &d));
        sd_bus_message_unref(m);
        return d;
}

static void test_digests(void) {
        static const uint32_t gpus[] = { 0x43af, 0x2a68, 0xb514 };
        char long_id[1000];
        sd_bus_message *m;
        uint64_t d[4];

        m = new_call("Allocate");
        ASSERT_OK(sd_bus_message_append(m, "tusa{sv}", (uint64_t) 65536, 0x43afU, "gtt", 2, "request-id", "s", "r-1",
                                        "persistent", "b", 1));
        d[0] = digest_of(m);

        m = new_call("Map");
        ASSERT_OK(sd_bus_message_append(m, "t", (uint64_t) 42));
        ASSERT_OK(sd_bus_message_append_array(m, 'u', gpus, sizeof(gpus)));
        ASSERT_OK(sd_bus_message_append(m, "a{sv}", 1, "request-id", "s", "r-2"));
        d[1] = digest_of(m);

        m = new_call("Free");
        ASSERT_OK(sd_bus_message_append(m, "t", (uint64_t) 42));
        d[2] = digest_of(m);

        /* More than the bytes kept on the stack. */
        memset(long_id, 'x', sizeof(long_id) - 1);
        long_id[sizeof(long_id) - 1] = '\0';
        m = new_call("Allocate");
        ASSERT_OK(sd_bus_message_append(m, "tusa{sv}", (uint64_t) 4096, 0x2a68U, "vram", 1, "request-id", "s", long_id));
        d[3] = digest_of(m);

        for (size_t i = 0; i < 4; i++)
                printf("digest %zu: 0x%016" PRIx64 "\n", i, d[i]);
        ASSERT_UEQ(d[0], UINT64_C(0xab6fd24bdc3f0268));
        ASSERT_UEQ(d[1], UINT64_C(0x10de3c2aba8632bb));
        ASSERT_UEQ(d[2], UINT64_C(0xd32ed0ca218f9cbf));
        ASSERT_UEQ(d[3], UINT64_C(0x1a68edcc9b7a1930));
}

int main(void) {
        int fds[2];

        /* A started bus (never authenticated) makes messages like a real one. */
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0 ? -errno : 0);
        ASSERT_OK(sd_bus_new(&bus));
        ASSERT_OK(sd_bus_set_fd(bus, fds[0], fds[0]));
        ASSERT_OK(sd_bus_start(bus));

        test_digests();

        sd_bus_close_unref(bus);
        close(fds[1]);
        printf("ok\n");
        return 0;
}
