/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * A tenant's steady stream of requests on persistent ranges cannot put off the journal's
 * compaction (docs/architecture.md, "Persistence and restart"). A snapshot waits for the open
 * transactions of persistent ranges; if new ones kept opening while it waited, the journal would
 * grow until the runtime directory is full, and then every tenant's persistent requests would be
 * refused for room. Once a compaction is due, new requests on persistent ranges wait for it.
 *
 * With "journal-compact-size" at 64 KiB (compaction.conf) and the emulator's realistic profile
 * (the kernel's time spent on svmd's workers, so transactions stay open while the loop serves
 * others), one uid runs CHAINS chains of persistent Allocate+Free on CONNECTIONS direct
 * connections for WINDOW_USEC, while another uid allocates and frees a persistent range at a
 * time. The test watches the journal's size: it must be compacted again and again, never grow
 * past twice the limit, and the other tenant's calls must all succeed.
 */

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostile-direct.h"
#include "svmd-protocol.h"
#include "svmd-test.h"

#define UID_STREAM 31
#define UID_OTHER 32
#define CONNECTIONS 8
#define CHAINS 2
#define WINDOW_USEC (3000 * 1000ULL)
#define COMPACT_SIZE (64 * 1024)

typedef struct Shared {
        uint64_t start, end;
        uint32_t gpu;
        unsigned ready;
        uint64_t stream_pairs, other_pairs, other_max_usec;
} Shared;

static Shared *shared;

typedef struct Conn {
        sd_bus *bus;
        uint64_t *pairs;
} Conn;

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error);

static void allocate(Conn *c) {
        ASSERT_OK(sd_bus_call_method_async(c->bus, NULL, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                           "Allocate", on_reply, c, "tusa{sv}", UINT64_C(65536), shared->gpu, "gtt",
                                           1, "persistent", "b", 1));
}

/* An Allocate's answer frees the range, a Free's allocates the next one until the window ends. */
static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Conn *c = userdata;
        uint64_t id, va;
        const char *path;

        if (sd_bus_message_is_method_error(m, NULL)) {
                fprintf(stderr, "a call of the streaming tenant failed: %s\n", sd_bus_message_get_error(m)->message);
                abort();
        }
        if (sd_bus_message_read(m, "tto", &id, &va, &path) > 0)
                ASSERT_OK(sd_bus_call_method_async(c->bus, NULL, SVMD_BUS_NAME, SVMD_MANAGER_PATH,
                                                   SVMD_MANAGER_INTERFACE, "Free", on_reply, c, "t", id));
        else {
                (*c->pairs)++;
                if (hd_now_usec() < shared->end)
                        allocate(c);
        }
        return 0;
}

static void stream_main(void *arg) {
        Conn conns[CONNECTIONS];
        sd_bus *buses[CONNECTIONS];
        uint64_t pairs = 0;

        for (size_t i = 0; i < CONNECTIONS; i++) {
                conns[i] = (Conn) { .bus = buses[i] = hd_direct_bus(), .pairs = &pairs };
                ASSERT_TRUE(test_call(conns[i].bus, "GetUsage", NULL, NULL, "s", "") >= 0);
        }
        __atomic_add_fetch(&shared->ready, 1, __ATOMIC_SEQ_CST);
        while (hd_now_usec() < shared->start)
                usleep(1000);
        for (size_t i = 0; i < CONNECTIONS; i++)
                for (unsigned d = 0; d < CHAINS; d++)
                        allocate(&conns[i]);
        while (hd_now_usec() < shared->end + 500 * 1000)
                hd_pump(buses, CONNECTIONS);
        shared->stream_pairs = pairs;
        for (size_t i = 0; i < CONNECTIONS; i++)
                sd_bus_flush_close_unref(conns[i].bus);
}

static void other_main(void *arg) {
        sd_bus *bus = hd_direct_bus();

        ASSERT_TRUE(test_call(bus, "GetUsage", NULL, NULL, "s", "") >= 0);
        __atomic_add_fetch(&shared->ready, 1, __ATOMIC_SEQ_CST);
        while (hd_now_usec() < shared->start)
                usleep(1000);
        while (hd_now_usec() < shared->end) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                sd_bus_error error = SD_BUS_ERROR_NULL;
                uint64_t t0 = hd_now_usec(), id, va;
                const char *path;
                int r;

                r = test_call(bus, "Allocate", &error, &reply, "tusa{sv}", UINT64_C(65536), shared->gpu, "gtt", 1,
                              "persistent", "b", 1);
                ASSERT_BUS_OK(r, &error);
                ASSERT_TRUE(sd_bus_message_read(reply, "tto", &id, &va, &path) > 0);
                r = test_call(bus, "Free", &error, NULL, "t", id);
                ASSERT_BUS_OK(r, &error);
                shared->other_pairs++;
                shared->other_max_usec = MAX(shared->other_max_usec, hd_now_usec() - t0);
                usleep(10 * 1000);
        }
        sd_bus_flush_close_unref(bus);
}

static uint64_t file_size(const char *path) {
        struct stat st;

        return stat(path, &st) < 0 ? 0 : (uint64_t) st.st_size;
}

int main(void) {
        _cleanup_free_ char *journal = NULL;
        uint64_t size, last = 0, max = 0;
        unsigned compactions = 0;
        TestContext t;
        pid_t stream, other;

        setvbuf(stdout, NULL, _IOLBF, 0);
        shared = mmap(NULL, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(shared != MAP_FAILED);
        ASSERT_TRUE(asprintf(&journal, "%s/journal", getenv("SVMD_RUNTIME_DIR")) >= 0);
        test_setup(&t);
        shared->gpu = t.gpus[0];
        shared->start = shared->end = UINT64_MAX;
        stream = hd_fork_as(UID_STREAM, stream_main, NULL);
        other = hd_fork_as(UID_OTHER, other_main, NULL);
        while (__atomic_load_n(&shared->ready, __ATOMIC_SEQ_CST) < 2)
                usleep(1000);
        ASSERT_OK(emu_kernel_set_profile(t.emu, EMU_PROFILE_REALISTIC));
        shared->end = hd_now_usec() + 100 * 1000 + WINDOW_USEC;
        __atomic_store_n(&shared->start, shared->end - WINDOW_USEC, __ATOMIC_SEQ_CST);

        /* A compaction replaces the journal with an empty one: its size drops. */
        while (hd_now_usec() < shared->end + 500 * 1000) {
                size = file_size(journal);
                compactions += size < last;
                max = MAX(max, size);
                last = size;
                usleep(1000);
        }
        hd_wait(stream);
        hd_wait(other);
        ASSERT_OK(emu_kernel_set_profile(t.emu, EMU_PROFILE_NONE));
        printf("%" PRIu64 " persistent Allocate+Free pairs by uid %d on %d connections, %" PRIu64 " by uid %d "
               "(slowest %.1f ms); the journal was compacted %u times and grew to %" PRIu64 " bytes at most "
               "(compaction due at %d)\n",
               shared->stream_pairs, UID_STREAM, CONNECTIONS, shared->other_pairs, UID_OTHER,
               (double) shared->other_max_usec / 1e3, compactions, max, COMPACT_SIZE);
        ASSERT_TRUE(shared->other_pairs > 0);
        ASSERT_TRUE(compactions >= 3);
        ASSERT_TRUE(max <= 2 * COMPACT_SIZE);
        test_teardown(&t);
        return 0;
}
