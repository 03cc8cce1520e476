/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The direct socket serves uids in turn, not connections (docs/architecture.md, "The direct
 * socket"). Under the emulator's realistic profile (each ioctl sleeps as long as a kernel's, on
 * svmd's loop for small buffers, so svmd is the bottleneck however busy the machine is), a
 * tenant with 8 connections and a tenant with one loop Allocate+Free of 64 KiB GTT, DEPTH
 * chains in flight on every connection. Over the same window the one-connection tenant must get
 * at least half as many answers as the other; served per connection, it got an eighth. Counting
 * answers, not timing them, keeps the test meaningful on a loaded machine.
 *
 * A uid's direct requests in flight on the kernel executor are bounded by "kernel-workers" (4
 * here): a tenant sends 16 Allocates of 1 GiB of VRAM (each ALLOC 93 ms under the realistic
 * profile, run by a worker) on 16 connections, then another tenant one. Of the first tenant's
 * calls, those in flight when the other's came are ahead of it (4: the emulated kernel serves
 * p->mutex in order, as the kernel's mutex does): at most 6 are answered while it waits, where
 * unbounded all that were outstanding were (13 to 16).
 *
 * Then the reads that take several messages at once: a peer that sends, back to back, calls
 * without fds and calls whose fds come with them (so one read of svmd holds the end of one and
 * the start of the next with its fds) is answered every time, and svmd keeps no fd.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hostile-direct.h"
#include "svmd-protocol.h"
#include "svmd-test.h"

#define UID_MANY 3
#define UID_ONE 4
#define UID_PIPELINE 5
#define MANY_CONNECTIONS 8
#define DEPTH 16
#define WARMUP_USEC (300 * 1000ULL)
#define WINDOW_USEC (1500 * 1000ULL)
#define UID_JOBS 6
#define UID_LATE 7
#define BIG_CALLS 16
#define BIG_SIZE (UINT64_C(1) << 30)
#define PAIRS 300
#define PAIRS_PER_BATCH 10

typedef struct Shared {
        uint64_t start, begin, end;     /* connect by start; count answers in [begin, end) */
        uint32_t gpu;
        unsigned ready;
        uint64_t answers[2];
        uint64_t big_sent, big_done[BIG_CALLS], late_sent, late_done;
        unsigned big_answered, outstanding;
} Shared;

static Shared *shared;

typedef struct Conn {
        sd_bus *bus;
        uint64_t *count;
} Conn;

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error);

static void allocate(Conn *c) {
        ASSERT_OK(sd_bus_call_method_async(c->bus, NULL, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                           "Allocate", on_reply, c, "tusa{sv}", UINT64_C(65536), shared->gpu, "gtt",
                                           0));
}

/* An Allocate's answer frees the range, a Free's allocates the next one. */
static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Conn *c = userdata;
        uint64_t now = hd_now_usec(), id, va;
        const char *path;

        if (sd_bus_message_is_method_error(m, NULL)) {
                fprintf(stderr, "call failed: %s\n", sd_bus_message_get_error(m)->message);
                abort();
        }
        if (now >= shared->begin && now < shared->end)
                (*c->count)++;
        if (sd_bus_message_read(m, "tto", &id, &va, &path) > 0)
                ASSERT_OK(sd_bus_call_method_async(c->bus, NULL, SVMD_BUS_NAME, SVMD_MANAGER_PATH,
                                                   SVMD_MANAGER_INTERFACE, "Free", on_reply, c, "t", id));
        else if (now < shared->end)
                allocate(c);
        return 0;
}

/* n connections, DEPTH chains on each, until the window ends; the answers in it go to answers[which]. */
static void tenant_main(void *arg) {
        size_t which = (size_t) (uintptr_t) arg, n = which == 0 ? MANY_CONNECTIONS : 1;
        Conn conns[MANY_CONNECTIONS];
        sd_bus *buses[MANY_CONNECTIONS];
        uint64_t count = 0;

        for (size_t i = 0; i < n; i++) {
                conns[i] = (Conn) { .bus = buses[i] = hd_direct_bus(), .count = &count };
                ASSERT_TRUE(test_call(conns[i].bus, "GetUsage", NULL, NULL, "s", "") >= 0);
        }
        __atomic_add_fetch(&shared->ready, 1, __ATOMIC_SEQ_CST);
        while (hd_now_usec() < shared->start)
                usleep(1000);
        for (size_t i = 0; i < n; i++)
                for (unsigned d = 0; d < DEPTH; d++)
                        allocate(&conns[i]);

        /* A little past the window: the chains' last answers do not count. */
        while (hd_now_usec() < shared->end + 200 * 1000)
                hd_pump(buses, n);
        shared->answers[which] = count;
        for (size_t i = 0; i < n; i++)
                sd_bus_flush_close_unref(conns[i].bus);
}

static void test_share_per_uid(TestContext *t) {
        pid_t many, one;
        double ratio;

        shared->gpu = t->gpus[0];
        shared->start = UINT64_MAX;
        shared->begin = shared->end = UINT64_MAX;
        many = hd_fork_as(UID_MANY, tenant_main, (void *) (uintptr_t) 0);
        one = hd_fork_as(UID_ONE, tenant_main, (void *) (uintptr_t) 1);
        while (__atomic_load_n(&shared->ready, __ATOMIC_SEQ_CST) < 2)
                usleep(1000);
        /* Each ioctl at a real kernel's speed from now on. */
        ASSERT_OK(emu_kernel_set_profile(t->emu, EMU_PROFILE_REALISTIC));
        shared->begin = hd_now_usec() + 100 * 1000 + WARMUP_USEC;
        shared->end = shared->begin + WINDOW_USEC;
        __atomic_store_n(&shared->start, hd_now_usec() + 100 * 1000, __ATOMIC_SEQ_CST);
        hd_wait(many);
        hd_wait(one);
        ASSERT_OK(emu_kernel_set_profile(t->emu, EMU_PROFILE_NONE));

        ratio = (double) shared->answers[1] / (double) (shared->answers[0] ? shared->answers[0] : 1);
        printf("answers in %.1f s: uid %d with %d connections %" PRIu64 ", uid %d with one %" PRIu64 " (%.2f)\n",
               WINDOW_USEC / 1e6, UID_MANY, MANY_CONNECTIONS, shared->answers[0], UID_ONE, shared->answers[1],
               ratio);
        ASSERT_TRUE(shared->answers[0] > 0);
        ASSERT_TRUE(ratio >= 0.5);
}

static int on_big(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        uint64_t *done = userdata;

        if (sd_bus_message_is_method_error(m, NULL)) {
                fprintf(stderr, "Allocate failed: %s\n", sd_bus_message_get_error(m)->message);
                abort();
        }
        *done = hd_now_usec();
        shared->big_answered++;
        return 0;
}

static void big_main(void *arg) {
        sd_bus *buses[BIG_CALLS];

        for (size_t i = 0; i < BIG_CALLS; i++) {
                buses[i] = hd_direct_bus();
                ASSERT_TRUE(test_call(buses[i], "GetUsage", NULL, NULL, "s", "") >= 0);
        }
        while (hd_now_usec() < shared->start)
                usleep(1000);
        for (size_t i = 0; i < BIG_CALLS; i++) {
                ASSERT_OK(sd_bus_call_method_async(buses[i], NULL, SVMD_BUS_NAME, SVMD_MANAGER_PATH,
                                                   SVMD_MANAGER_INTERFACE, "Allocate", on_big, &shared->big_done[i],
                                                   "tusa{sv}", BIG_SIZE, shared->gpu, "vram", 0));
                ASSERT_TRUE(sd_bus_flush(buses[i]) >= 0);
        }
        shared->big_sent = hd_now_usec();
        while (shared->big_answered < BIG_CALLS)
                hd_pump(buses, BIG_CALLS);
        /* Ready for the close: svmd frees the ranges at once under profile none. */
        while (!shared->late_done)
                usleep(1000);
        for (size_t i = 0; i < BIG_CALLS; i++)
                sd_bus_flush_close_unref(buses[i]);
}

static void late_main(void *arg) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = hd_direct_bus();
        int r;

        ASSERT_TRUE(test_call(bus, "GetUsage", NULL, NULL, "s", "") >= 0);
        while (!shared->big_sent)
                usleep(1000);
        /* The other tenant's calls are in svmd by now, the first of them in the kernel. */
        usleep(50 * 1000);
        shared->outstanding = BIG_CALLS - shared->big_answered;
        shared->late_sent = hd_now_usec();
        r = test_call(bus, "Allocate", &error, &reply, "tusa{sv}", BIG_SIZE, shared->gpu, "vram", 0);
        ASSERT_BUS_OK(r, &error);
        shared->late_done = hd_now_usec();
        sd_bus_flush_close_unref(bus);
}

static void test_jobs_per_uid(TestContext *t) {
        unsigned ahead = 0;
        pid_t big, late;

        shared->start = UINT64_MAX;
        big = hd_fork_as(UID_JOBS, big_main, NULL);
        late = hd_fork_as(UID_LATE, late_main, NULL);
        usleep(300 * 1000);
        ASSERT_OK(emu_kernel_set_profile(t->emu, EMU_PROFILE_REALISTIC));
        __atomic_store_n(&shared->start, hd_now_usec() + 100 * 1000, __ATOMIC_SEQ_CST);
        hd_wait(late);
        ASSERT_OK(emu_kernel_set_profile(t->emu, EMU_PROFILE_NONE));
        hd_wait(big);
        for (size_t i = 0; i < BIG_CALLS; i++)
                ahead += shared->big_done[i] > shared->late_sent && shared->big_done[i] < shared->late_done;
        fprintf(stderr, "%d Allocates of 1 GiB by uid %d, then one by uid %d while %u were outstanding: answered "
                "after %.0f ms, %u of the others meanwhile\n",
                BIG_CALLS, UID_JOBS, UID_LATE, shared->outstanding,
                (double) (shared->late_done - shared->late_sent) / 1e3, ahead);
        /* Each ALLOC sleeps 93 ms: only a stall of 8 of them in this process would leave fewer. */
        ASSERT_TRUE(shared->outstanding >= 8);
        ASSERT_TRUE(ahead <= 6);
}

/* A call header with a UNIX_FDS field of 1, and its body: the index of that fd. */
static size_t call_with_fd(uint8_t *buf, size_t size, uint32_t serial) {
        size_t n = hd_call_header(buf, size, "Free", "h", 4, serial);
        uint32_t fields, one = 1, index = 0;

        buf[n] = 9, buf[n + 1] = 1, buf[n + 2] = 'u', buf[n + 3] = 0;
        memcpy(buf + n + 4, &one, 4);
        n += 8;
        fields = (uint32_t) (n - 16);
        memcpy(buf + 12, &fields, 4);
        memcpy(buf + n, &index, 4);
        return n + 4;
}

static void recv_all(int fd, uint8_t *buf, size_t size) {
        for (size_t got = 0; got < size;) {
                ssize_t k = recv(fd, buf + got, size - got, 0);

                if (k <= 0) {
                        fprintf(stderr, "svmd closed the connection after %zu of %zu bytes\n", got, size);
                        abort();
                }
                got += (size_t) k;
        }
}

/* One reply; returns its type (2 return, 3 error). */
static uint8_t read_reply(int fd) {
        static uint8_t buf[65536];
        uint32_t body, fields;
        size_t header;

        recv_all(fd, buf, 16);
        ASSERT_TRUE(buf[0] == 'l');
        memcpy(&body, buf + 4, 4);
        memcpy(&fields, buf + 12, 4);
        header = 16 + (((size_t) fields + 7) & ~(size_t) 7);
        ASSERT_TRUE(header + body <= sizeof(buf));
        recv_all(fd, buf + 16, header - 16 + body);
        return buf[1];
}

static void pipeline_main(void *arg) {
        uint8_t plain[512], with_fd[512];
        unsigned returns = 0, errors = 0;
        int pipefd[2], fd;

        ASSERT_OK(pipe2(pipefd, O_CLOEXEC));
        fd = hd_connect();
        hd_authenticate(fd);
        /* Answered first: svmd takes fds only once the SASL exchange is behind it. */
        ASSERT_TRUE(send(fd, plain, hd_call_header(plain, sizeof(plain), "ListGpus", "", 0, 1000000), MSG_NOSIGNAL) > 0);
        ASSERT_TRUE(read_reply(fd) == 2);
        for (unsigned b = 0; b < PAIRS / PAIRS_PER_BATCH; b++) {
                for (unsigned i = 0; i < PAIRS_PER_BATCH; i++) {
                        uint32_t serial = 2 * (b * PAIRS_PER_BATCH + i) + 1;
                        size_t n = hd_call_header(plain, sizeof(plain), "ListGpus", "", 0, serial);

                        ASSERT_TRUE(send(fd, plain, n, MSG_NOSIGNAL) == (ssize_t) n);
                        n = call_with_fd(with_fd, sizeof(with_fd), serial + 1);
                        hd_send_fds(fd, with_fd, n, pipefd[0], 1);
                }
                for (unsigned i = 0; i < 2 * PAIRS_PER_BATCH; i++) {
                        if (read_reply(fd) == 2)
                                returns++;
                        else
                                errors++;
                }
        }
        printf("%d pairs of calls, the second with an fd, back to back: %u returns, %u errors\n", PAIRS, returns,
               errors);
        /* ListGpus answers; Free has no use for an fd and says so (InvalidArgs). */
        ASSERT_TRUE(returns == PAIRS && errors == PAIRS);
        close(fd);
}

static void test_pipelined_fds(void) {
        unsigned base = hd_svmd_fds(), now = 0;

        hd_wait(hd_fork_as(UID_PIPELINE, pipeline_main, NULL));
        for (int i = 0; i < 200; i++) {
                now = hd_svmd_fds();
                if (now <= base)
                        break;
                usleep(25 * 1000);
        }
        printf("svmd's fds: %u before, %u after\n", base, now);
        ASSERT_TRUE(now <= base);
}

int main(void) {
        TestContext t;

        setvbuf(stdout, NULL, _IOLBF, 0);
        shared = mmap(NULL, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(shared != MAP_FAILED);
        test_setup(&t);
        test_share_per_uid(&t);
        test_jobs_per_uid(&t);
        test_pipelined_fds();
        test_teardown(&t);
        return 0;
}
