/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The kernel executor (docs/architecture.md, "The kernel executor"), with the emulator's
 * realistic latencies so that one ioctl takes long (an 8 GiB VRAM ALLOC about 0.7 s):
 *
 *   read-while-busy:  GetUsage and ListRanges answer while another request's ALLOC runs;
 *   one-range-queue:  Map, Unmap, Map pipelined on one range, and another connection's Free of it
 *                     meanwhile, run one after the other in the order they came, each succeeds;
 *   disconnect:       a client that closes its connection while its Allocate is in the kernel,
 *                     or while its Map of a range it does not own is: svmd lives on and the
 *                     kernel ends up as it was before;
 *   disconnect-attach: a client that closes while its Attach waits for the kernel takes no
 *                     hold: the owner's Free frees the range;
 *   retry:            the same request id from two connections while the first call is in the
 *                     kernel: one ALLOC, both get the same range;
 *   small-offload:    a lone caller's small Allocates and Frees run their ioctls on the loop's
 *                     thread; four small Allocates that wait in svmd's bus socket at once (svmd
 *                     stopped while the bus delivered them) go to the workers, as each finds the
 *                     next waiting (svmd_kernel_ioctls_total);
 *   sigterm:          SIGTERM while an Allocate is in the kernel: the caller gets its answer,
 *                     svmd exits 0, and every buffer it allocated was freed by svmd.
 */

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define BIG (UINT64_C(8) << 30)
#define HUGE_RANGE (UINT64_C(16) << 30)

static TestContext T;

typedef struct Pending {
        sd_bus_message *reply;
        bool done;
        uint64_t at;
} Pending;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Pending *p = userdata;

        p->reply = sd_bus_message_ref(m);
        p->done = true;
        p->at = now_usec();
        return 0;
}

static void pump(sd_bus *bus, Pending *p) {
        while (!p->done) {
                int r = sd_bus_process(bus, NULL);

                ASSERT_TRUE(r >= 0);
                if (r == 0)
                        ASSERT_TRUE(sd_bus_wait(bus, UINT64_MAX) >= 0);
        }
}

/* Whatever has arrived, without waiting. */
static void poll_bus(sd_bus *bus) {
        while (sd_bus_process(bus, NULL) > 0)
                ;
}

static void expect_ok(Pending *p, const char *what) {
        const sd_bus_error *e = sd_bus_message_get_error(p->reply);

        if (e)
                printf("%s failed: %s: %s\n", what, e->name, e->message);
        ASSERT_TRUE(!e);
}

static sd_bus_message *new_call(sd_bus *bus, const char *member) {
        sd_bus_message *m = NULL;

        ASSERT_OK(sd_bus_message_new_method_call(bus, &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                                 member));
        return m;
}

static void send_async(sd_bus *bus, sd_bus_message *m, Pending *p) {
        ASSERT_OK(sd_bus_call_async(bus, NULL, m, on_reply, p, 30 * 1000000ULL));
        sd_bus_message_unref(m);
        ASSERT_TRUE(sd_bus_flush(bus) >= 0);
}

static void allocate_async_id(sd_bus *bus, uint64_t size, const char *request_id, Pending *p) {
        sd_bus_message *m = new_call(bus, "Allocate");

        if (request_id)
                ASSERT_OK(sd_bus_message_append(m, "tusa{sv}", size, T.gpus[0], "vram", 1, "request-id", "s",
                                                request_id));
        else
                ASSERT_OK(sd_bus_message_append(m, "tusa{sv}", size, T.gpus[0], "vram", 0));
        send_async(bus, m, p);
}

static void allocate_async(sd_bus *bus, uint64_t size, Pending *p) {
        allocate_async_id(bus, size, NULL, p);
}

static void map_async(sd_bus *bus, const char *member, uint64_t id, const uint32_t *gpus, size_t n, Pending *p) {
        sd_bus_message *m = new_call(bus, member);

        ASSERT_OK(sd_bus_message_append(m, "t", id));
        ASSERT_OK(sd_bus_message_append_array(m, 'u', gpus, n * sizeof(uint32_t)));
        if (streq(member, "Map"))
                ASSERT_OK(sd_bus_message_append(m, "a{sv}", 0));
        send_async(bus, m, p);
}

/* Until the kernel has started one more ioctl `name` than `before`. */
static void wait_ioctl(const char *name, uint64_t before) {
        for (unsigned i = 0; i < 20000; i++) {
                if (test_ioctl_count(&T, name) > before)
                        return;
                nanosleep(&(struct timespec) { 0, 500 * 1000 }, NULL);
        }
        ASSERT_TRUE(!"the ioctl never started");
}

static uint64_t allocation_id(Pending *p, char **ret_path) {
        uint64_t id, va;
        const char *path;

        expect_ok(p, "Allocate");
        ASSERT_OK(sd_bus_message_read(p->reply, "tto", &id, &va, &path));
        if (ret_path)
                *ret_path = strdup(path);
        return id;
}

static void pending_done(Pending *p) {
        p->reply = sd_bus_message_unref(p->reply);
        *p = (Pending) {};
}

static void test_read_while_busy(sd_bus *a, sd_bus *b) {
        _cleanup_free_ char *usage = NULL, *list = NULL;
        uint64_t t0, t1, allocs = test_ioctl_count(&T, "ALLOC_MEMORY_OF_GPU");
        Pending alloc = {};

        allocate_async(a, BIG, &alloc);
        wait_ioctl("ALLOC_MEMORY_OF_GPU", allocs);

        t0 = now_usec();
        usage = test_usage(b);
        list = test_list_ranges(b);
        t1 = now_usec();
        poll_bus(a);
        printf("read-while-busy: GetUsage + ListRanges in %" PRIu64 " µs; the Allocate %s\n", t1 - t0,
               alloc.done ? "had finished" : "was still in the kernel");
        /* An 8 GiB ALLOC takes about 0.7 s under the process lock; the reads take none of it. */
        ASSERT_TRUE(!alloc.done);
        ASSERT_TRUE(t1 - t0 < 200 * 1000);

        pump(a, &alloc);
        test_free(a, allocation_id(&alloc, NULL));
        pending_done(&alloc);
}

static void test_one_range_queue(sd_bus *a, sd_bus *b) {
        _cleanup_free_ char *path = NULL, *before = NULL;
        Pending alloc = {}, map1 = {}, unmap = {}, map2 = {}, free_ = {};
        uint64_t id, maps;

        ASSERT_OK(emu_kernel_set_profile(T.emu, EMU_PROFILE_NONE));
        before = test_dump(&T);
        allocate_async(a, HUGE_RANGE, &alloc);
        pump(a, &alloc);
        id = allocation_id(&alloc, &path);
        ASSERT_OK(emu_kernel_set_profile(T.emu, EMU_PROFILE_REALISTIC));

        /* 16 GiB to every GPU: some 50 ms per GPU. The Unmap validated now would find nothing mapped. */
        maps = test_ioctl_count(&T, "MAP_MEMORY_TO_GPU");
        map_async(a, "Map", id, T.gpus, T.n_gpus, &map1);
        map_async(a, "Unmap", id, T.gpus, T.n_gpus, &unmap);
        map_async(a, "Map", id, &T.gpus[1], 1, &map2);
        poll_bus(a);
        if (map1.done)
                expect_ok(&map1, "Map");
        wait_ioctl("MAP_MEMORY_TO_GPU", maps);
        nanosleep(&(struct timespec) { 0, 50 * 1000 * 1000 }, NULL);
        /* Another connection frees it meanwhile: its turn comes after those already waiting. */
        {
                sd_bus_message *m = new_call(b, "Free");
                ASSERT_OK(sd_bus_message_append(m, "t", id));
                send_async(b, m, &free_);
        }

        pump(a, &map1);
        pump(a, &unmap);
        pump(a, &map2);
        pump(b, &free_);
        expect_ok(&map1, "Map");
        expect_ok(&unmap, "Unmap");
        expect_ok(&map2, "Map to one GPU");
        expect_ok(&free_, "Free");
        printf("one-range-queue: Map %" PRIu64 " µs, Unmap +%" PRIu64 " µs, Map +%" PRIu64 " µs, Free +%" PRIu64
               " µs\n", map1.at, unmap.at - map1.at, map2.at - unmap.at, free_.at - map2.at);
        /* In the order they came. */
        ASSERT_TRUE(map1.at <= unmap.at && unmap.at <= map2.at && map2.at <= free_.at);
        ASSERT_UEQ(test_ioctl_count(&T, "MAP_MEMORY_TO_GPU"), maps + 2);

        ASSERT_OK(emu_kernel_set_profile(T.emu, EMU_PROFILE_NONE));
        {
                _cleanup_free_ char *after = test_dump_settled(&T, before);
                ASSERT_STREQ(after, before);
        }
        ASSERT_OK(emu_kernel_set_profile(T.emu, EMU_PROFILE_REALISTIC));
        pending_done(&alloc);
        pending_done(&map1);
        pending_done(&unmap);
        pending_done(&map2);
        pending_done(&free_);
}

static void test_disconnect(sd_bus *b) {
        _cleanup_free_ char *before = NULL, *after = NULL, *list = NULL;
        Pending alloc = {};
        sd_bus *c = test_connect_bus();
        uint64_t allocs = test_ioctl_count(&T, "ALLOC_MEMORY_OF_GPU");

        before = test_dump(&T);
        allocate_async(c, BIG, &alloc);
        wait_ioctl("ALLOC_MEMORY_OF_GPU", allocs);
        sd_bus_flush_close_unref(c);
        /* svmd serves others meanwhile, and then frees what the closed connection got. */
        list = test_list_ranges(b);
        after = test_dump_settled(&T, before);
        ASSERT_STREQ(after, before);
        printf("disconnect: the kernel is back as it was\n");
        pending_done(&alloc);
}

/* The emulated kernel holds what it held at `before` (settled without latencies). */
static void expect_kernel_as(const char *before) {
        _cleanup_free_ char *after = NULL;

        ASSERT_OK(emu_kernel_set_profile(T.emu, EMU_PROFILE_NONE));
        after = test_dump_settled(&T, before);
        ASSERT_STREQ(after, before);
        ASSERT_OK(emu_kernel_set_profile(T.emu, EMU_PROFILE_REALISTIC));
}

/* A connection that owns nothing closes while its Map of another connection's range runs. */
static void test_disconnect_map(sd_bus *a, sd_bus *b) {
        _cleanup_free_ char *before = NULL, *list = NULL;
        Pending alloc = {}, map = {};
        sd_bus *c = test_connect_bus();
        uint64_t id, maps;

        ASSERT_OK(emu_kernel_set_profile(T.emu, EMU_PROFILE_NONE));
        before = test_dump(&T);
        allocate_async(a, HUGE_RANGE, &alloc);
        pump(a, &alloc);
        id = allocation_id(&alloc, NULL);
        ASSERT_OK(emu_kernel_set_profile(T.emu, EMU_PROFILE_REALISTIC));

        maps = test_ioctl_count(&T, "MAP_MEMORY_TO_GPU");
        {
                sd_bus_message *m = new_call(c, "Map");
                ASSERT_OK(sd_bus_message_append(m, "t", id));
                ASSERT_OK(sd_bus_message_append_array(m, 'u', T.gpus, T.n_gpus * sizeof(uint32_t)));
                ASSERT_OK(sd_bus_message_append(m, "a{sv}", 1, "request-id", "s", "executor-gone-map"));
                send_async(c, m, &map);
        }
        wait_ioctl("MAP_MEMORY_TO_GPU", maps);
        sd_bus_flush_close_unref(c);
        list = test_list_ranges(b);
        /* The Map completed for nobody; the owner frees the range as usual. */
        test_free(a, id);
        expect_kernel_as(before);
        printf("disconnect-map: svmd lives on, the kernel is back as it was\n");
        pending_done(&alloc);
        pending_done(&map);
}

/*
 * A connection closes while its Attach waits for the kernel: its EXPORT_DMABUF queues on a worker
 * behind another connection's large ALLOC. The Attach takes no hold for nobody, so the owner's
 * Free frees the range and the kernel ends up as it was.
 */
static void test_disconnect_attach(sd_bus *a, sd_bus *b) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *before = NULL, *list = NULL;
        Pending small = {}, big = {}, attach = {};
        sd_bus *c = test_connect_bus();
        uint64_t id, big_id, exports, allocs;
        const char *token;

        ASSERT_OK(emu_kernel_set_profile(T.emu, EMU_PROFILE_NONE));
        before = test_dump(&T);
        allocate_async(a, 2 << 20, &small);
        pump(a, &small);
        id = allocation_id(&small, NULL);
        ASSERT_BUS_OK(test_call(a, "Share", &error, &reply, "ta{sv}", id, 0), &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &token));
        ASSERT_OK(emu_kernel_set_profile(T.emu, EMU_PROFILE_REALISTIC));

        allocs = test_ioctl_count(&T, "ALLOC_MEMORY_OF_GPU");
        allocate_async(b, BIG, &big);
        wait_ioctl("ALLOC_MEMORY_OF_GPU", allocs);
        exports = test_ioctl_count(&T, "EXPORT_DMABUF");
        {
                sd_bus_message *m = new_call(c, "Attach");
                ASSERT_OK(sd_bus_message_append(m, "s", token));
                send_async(c, m, &attach);
        }
        /* Its export waits for the kernel's lock, which the ALLOC holds: close now. */
        wait_ioctl("EXPORT_DMABUF", exports);
        sd_bus_flush_close_unref(c);
        list = test_list_ranges(b);
        pump(b, &big);
        big_id = allocation_id(&big, NULL);
        test_free(b, big_id);
        test_free(a, id);
        expect_kernel_as(before);
        printf("disconnect-attach: no hold for the gone caller, the kernel is back as it was\n");
        pending_done(&small);
        pending_done(&big);
        pending_done(&attach);
}

static void test_retry(sd_bus *a, sd_bus *b) {
        uint64_t allocs = test_ioctl_count(&T, "ALLOC_MEMORY_OF_GPU"), id1, id2;
        Pending first = {}, retry = {};

        allocate_async_id(a, BIG, "executor-retry", &first);
        wait_ioctl("ALLOC_MEMORY_OF_GPU", allocs);
        /* The caller's connection broke and it retries on another one, as docs/dbus-api.md advises. */
        allocate_async_id(b, BIG, "executor-retry", &retry);
        pump(a, &first);
        pump(b, &retry);
        id1 = allocation_id(&first, NULL);
        id2 = allocation_id(&retry, NULL);
        printf("retry: ranges %" PRIu64 " and %" PRIu64 ", %" PRIu64 " ALLOC\n", id1, id2,
               test_ioctl_count(&T, "ALLOC_MEMORY_OF_GPU") - allocs);
        ASSERT_UEQ(id1, id2);
        ASSERT_UEQ(test_ioctl_count(&T, "ALLOC_MEMORY_OF_GPU"), allocs + 1);
        test_free(a, id1);
        pending_done(&first);
        pending_done(&retry);
}

/* svmd_kernel_ioctls_total{thread="<thread>"} of GetMetrics. */
static uint64_t kernel_ioctls(sd_bus *bus, const char *thread) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char series[96];
        const char *text, *p;

        ASSERT_OK(test_call(bus, "GetMetrics", &error, &reply, "a{sv}", 0));
        ASSERT_OK(sd_bus_message_read(reply, "s", &text));
        snprintf(series, sizeof(series), "svmd_kernel_ioctls_total{thread=\"%s\"} ", thread);
        p = strstr(text, series);
        ASSERT_TRUE(p);
        return strtoull(p + strlen(series), NULL, 10);
}

static void test_small_offload(sd_bus *a, sd_bus *b) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *id_reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t loop0, worker0, loop1, worker1, ids[4];
        Pending alloc[4] = {};
        int pid, starts;

        /* Alone: nobody waits while the kernel sleeps, the loop runs them itself. */
        loop0 = kernel_ioctls(b, "loop");
        worker0 = kernel_ioctls(b, "worker");
        for (int i = 0; i < 10; i++)
                test_free(a, test_allocate(a, 64 << 10, T.gpus[0], "vram", false, NULL));
        loop1 = kernel_ioctls(b, "loop");
        worker1 = kernel_ioctls(b, "worker");
        printf("small-offload: a lone caller's 10 Allocate+Free: %" PRIu64 " ioctls on the loop, %" PRIu64
               " on workers\n", loop1 - loop0, worker1 - worker0);
        /* 20 ioctls; a free VRAM query on a timer may go to a worker meanwhile. */
        ASSERT_TRUE(loop1 - loop0 >= 18);

        /* Four at once: each finds the next one waiting in svmd's bus socket, none sleeps on the loop.
         * The bus daemon handles a's messages in order and writes each on at once: when it answers
         * GetId, the four Allocates are in svmd's socket. */
        test_svmd_state(&pid, &starts);
        ASSERT_TRUE(pid > 0);
        ASSERT_OK(kill(pid, SIGSTOP) < 0 ? -errno : 0);
        for (int i = 0; i < 4; i++) {
                sd_bus_message *m = new_call(a, "Allocate");

                ASSERT_OK(sd_bus_message_append(m, "tusa{sv}", (uint64_t) 64 << 10, T.gpus[0], "vram", 0));
                send_async(a, m, &alloc[i]);
        }
        ASSERT_OK(sd_bus_call_method(a, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                     "GetId", &error, &id_reply, NULL));
        ASSERT_OK(kill(pid, SIGCONT) < 0 ? -errno : 0);
        for (int i = 0; i < 4; i++) {
                pump(a, &alloc[i]);
                ids[i] = allocation_id(&alloc[i], NULL);
        }
        loop0 = kernel_ioctls(b, "loop");
        worker0 = kernel_ioctls(b, "worker");
        printf("small-offload: 4 Allocates at once: %" PRIu64 " ioctls on the loop, %" PRIu64 " on workers\n",
               loop0 - loop1, worker0 - worker1);
        ASSERT_TRUE(worker0 - worker1 >= 4);
        for (int i = 0; i < 4; i++) {
                test_free(a, ids[i]);
                pending_done(&alloc[i]);
        }
}

static void test_sigterm(sd_bus *a) {
        uint64_t allocs0 = test_ioctl_count(&T, "ALLOC_MEMORY_OF_GPU"), frees0 = test_ioctl_count(&T, "FREE_MEMORY_OF_GPU");
        uint64_t h0 = test_kernel_handles(&T), allocs, frees;
        int pid, starts0;
        Pending alloc = {};

        test_svmd_state(&pid, &starts0);
        ASSERT_TRUE(pid > 0);
        allocate_async(a, BIG, &alloc);
        wait_ioctl("ALLOC_MEMORY_OF_GPU", allocs0);
        ASSERT_OK(kill(pid, SIGTERM) < 0 ? -errno : 0);

        /* The request in flight is answered: it was allocated, and is freed at the exit. */
        pump(a, &alloc);
        expect_ok(&alloc, "Allocate in flight at SIGTERM");

        test_wait_svmd_exit(starts0);
        allocs = test_ioctl_count(&T, "ALLOC_MEMORY_OF_GPU") - allocs0;
        frees = test_ioctl_count(&T, "FREE_MEMORY_OF_GPU") - frees0;
        printf("sigterm: %" PRIu64 " ALLOC, %" PRIu64 " FREE, %" PRIu64 " handles left (%" PRIu64 " before)\n", allocs,
               frees, test_kernel_handles(&T), h0);
        ASSERT_UEQ(allocs, 1);
        ASSERT_UEQ(frees, 1);
        ASSERT_TRUE(test_kernel_handles(&T) <= h0);
        pending_done(&alloc);
}

int main(void) {
        sd_bus *a, *b;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        ASSERT_TRUE(T.n_gpus >= 2);
        a = test_connect_bus();
        b = test_connect_bus();
        ASSERT_OK(emu_kernel_set_profile(T.emu, EMU_PROFILE_REALISTIC));

        test_read_while_busy(a, b);
        test_one_range_queue(a, b);
        test_disconnect(b);
        test_disconnect_map(a, b);
        test_disconnect_attach(a, b);
        test_retry(a, b);
        test_small_offload(a, b);
        test_sigterm(a);

        sd_bus_flush_close_unref(a);
        sd_bus_flush_close_unref(b);
        printf("ok\n");
        return 0;
}
