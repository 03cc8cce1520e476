/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * One tenant's big teardown must not stall the others. A tenant (uid 2) fills
 * svmd with tens of thousands of small ranges and closes its connection: svmd
 * frees them in slices of about a millisecond. Meanwhile
 *   - another tenant (uid 1) keeps calling ListGpus and Allocate+Free over the
 *     direct socket, and svmd never spends more than MAX_CALL_USEC of CPU before it
 *     answers one (wall time on 2 shared CPUs also counts other processes' turns);
 *   - a new connection of uid 2 sees its usage go down step by step (the ranges
 *     stay charged until really freed), a range waiting to be freed answers
 *     State "freeing" and Free on it is refused with NoSuchRange;
 *   - a Reload (rescope) in the middle keeps the accounting right;
 *   - a second tenant (uid 65534) that closes at the same time is freed in turns
 *     with the first (round-robin), not after it.
 * In the end both usages are 0 and the emulator is back where it started.
 *
 * Before slicing, svmd freed them all in one dispatch: nothing was served for
 * the whole teardown (seconds), so the first bound fails.
 */

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hostile-util.h"
#include "svmd-protocol.h"
#include "svmd-test.h"
#include "teardown-util.h"

#define N_RANGES 60000
#define N_RANGES_2 20000
#define MAX_CALL_USEC (200 * 1000)      /* svmd's CPU time during one call; unsliced, the whole teardown */
#define MAX_CALL_WALL_USEC (2000 * 1000) /* wall time, with whatever else the 2 CPUs run */

typedef struct Shared {
        TeardownFiller filler, filler2;
        volatile int go, stop;
        /* the victim */
        volatile int victim_ready;
        volatile int tearing_down;      /* set from go until both tenants' ranges are gone */
        uint64_t victim_calls, victim_calls_during, victim_max_usec, victim_max_cpu_usec;
        char victim_max_what[32];
        /* the observer: uid 2's new connection */
        uint64_t seen[4096];
        size_t n_seen;
        volatile int freeing_checked;
} Shared;

static TestContext T;
static Shared *S;

/* svmd's CPU time so far (utime + stime of /proc/SVMD_PID/stat), in µs. */
static uint64_t svmd_cpu_usec(void) {
        static long hz;
        char path[64], buf[1024], *p;
        unsigned long long utime = 0, stime = 0;
        FILE *f;

        if (hz == 0)
                hz = sysconf(_SC_CLK_TCK);
        snprintf(path, sizeof(path), "/proc/%s/stat", getenv("SVMD_PID"));
        f = fopen(path, "re");
        ASSERT_TRUE(f);
        ASSERT_TRUE(fgets(buf, sizeof(buf), f));
        fclose(f);
        /* After "(comm)": state is field 3, utime and stime are fields 14 and 15. */
        p = strrchr(buf, ')');
        ASSERT_TRUE(p);
        ASSERT_TRUE(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) == 2);
        return (utime + stime) * 1000000ULL / (uint64_t) hz;
}

typedef struct Call {
        uint64_t wall, cpu;
} Call;

static Call call_start(void) {
        return (Call) { hu_now_usec(), svmd_cpu_usec() };
}

/*
 * A call's wall time counts whatever else the 2 shared CPUs did meanwhile; the CPU time svmd
 * spent before it answered is what a stall is made of: work svmd did instead of serving it.
 */
static void timed(const char *what, Call c0) {
        uint64_t dt = hu_now_usec() - c0.wall, cpu = svmd_cpu_usec() - c0.cpu;

        S->victim_calls++;
        S->victim_calls_during += S->tearing_down;
        if (dt > S->victim_max_usec) {
                S->victim_max_usec = dt;
                snprintf(S->victim_max_what, sizeof(S->victim_max_what), "%s", what);
        }
        if (cpu > S->victim_max_cpu_usec)
                S->victim_max_cpu_usec = cpu;
}

static void victim(void *arg) {
        sd_bus *bus = test_connect(true);
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        /* Connected and known to svmd before the teardown starts. */
        r = test_call(bus, "ListGpus", &error, NULL, "");
        ASSERT_BUS_OK(r, &error);
        S->victim_ready = 1;
        hu_wait_flag(&S->go);

        while (!S->stop) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                const char *path;
                uint64_t id, va;
                Call t0;

                t0 = call_start();
                r = test_call(bus, "ListGpus", &error, NULL, "");
                ASSERT_BUS_OK(r, &error);
                timed("ListGpus", t0);

                t0 = call_start();
                r = test_call(bus, "Allocate", &error, &reply, "tusa{sv}", UINT64_C(4096), T.gpus[0], "gtt", 0);
                ASSERT_BUS_OK(r, &error);
                timed("Allocate", t0);
                ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));

                t0 = call_start();
                r = test_call(bus, "Free", &error, NULL, "t", id);
                ASSERT_BUS_OK(r, &error);
                timed("Free", t0);
        }
        sd_bus_flush_close_unref(bus);
}

/* The range waiting to be freed: listed as "freeing", not usable. */
static void check_freeing(sd_bus *bus, uint64_t id) {
        _cleanup_free_ char *path = NULL, *state = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        ASSERT_TRUE(asprintf(&path, SVMD_RANGE_PATH_PREFIX "/%" PRIu64, id) > 0);
        r = sd_bus_get_property_string(bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "State", &error, &state);
        ASSERT_BUS_OK(r, &error);
        printf("  range %" PRIu64 " during the teardown: State \"%s\"\n", id, state);
        ASSERT_STREQ(state, "freeing");

        r = test_call(bus, "Free", &error, NULL, "t", id);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
        printf("  Free(%" PRIu64 ") by its owner's uid: %s\n", id, error.message);
        ASSERT_TRUE(strstr(error.message, "being freed"));
        sd_bus_error_free(&error);
}

static void observer(void *arg) {
        sd_bus *bus = test_connect(true);
        uint64_t deadline;

        hu_wait_flag(&S->go);
        deadline = hu_now_usec() + 180 * 1000 * 1000ULL;
        for (;;) {
                uint64_t n = hu_usage_of(bus, "", "ranges");

                if (S->n_seen == 0 || S->seen[S->n_seen - 1] != n) {
                        /* Ranges go, none come back (the Reload recomputes the same). */
                        ASSERT_TRUE(S->n_seen == 0 || n < S->seen[S->n_seen - 1]);
                        if (S->n_seen < ELEMENTSOF(S->seen))
                                S->seen[S->n_seen++] = n;
                }
                if (n == 0)
                        break;
                /* first_id goes last: while anything is left, it waits to be freed. */
                if (n < N_RANGES && !S->freeing_checked) {
                        check_freeing(bus, S->filler.first_id);
                        S->freeing_checked = 1;
                }
                ASSERT_TRUE(hu_now_usec() < deadline);
                nanosleep(&(struct timespec) { 0, 5 * 1000 * 1000 }, NULL);
        }
        ASSERT_TRUE(hu_usage_of(bus, "", "host") == 0);
        sd_bus_flush_close_unref(bus);
}

int main(void) {
        _cleanup_free_ char *base = NULL, *end = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        pid_t filler, filler2, victim_pid, observer_pid;
        uint64_t t0, steps = 0, n1 = N_RANGES, n2 = N_RANGES_2, deadline;
        bool reloaded = false, in_turns = false;
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        base = test_dump(&T);
        S = hu_shared(sizeof(Shared));
        S->filler.n_gpus = T.n_gpus < 8 ? T.n_gpus : 8;
        memcpy(S->filler.gpus, T.gpus, S->filler.n_gpus * sizeof(uint32_t));
        S->filler.n_ranges = N_RANGES;
        S->filler2 = S->filler;
        S->filler2.n_ranges = N_RANGES_2;

        t0 = hu_now_usec();
        filler = hu_spawn(HU_UID_B, teardown_fill, &S->filler);
        hu_wait_flag(&S->filler.filled);
        filler2 = hu_spawn(HU_UID_C, teardown_fill, &S->filler2);
        hu_wait_flag(&S->filler2.filled);
        printf("uid %u holds %d ranges, uid %u %d (filled in %.1f s)\n", HU_UID_B, N_RANGES, HU_UID_C, N_RANGES_2,
               (double) (hu_now_usec() - t0) / 1e6);
        ASSERT_TRUE(hu_usage_of(T.bus, "uid:2", "ranges") == N_RANGES);
        ASSERT_TRUE(hu_usage_of(T.bus, "uid:65534", "ranges") == N_RANGES_2);

        victim_pid = hu_spawn(HU_UID_A, victim, NULL);
        hu_wait_flag(&S->victim_ready);
        observer_pid = hu_spawn(HU_UID_B, observer, NULL);

        /* Both fillers close their connections; everyone starts. */
        t0 = hu_now_usec();
        S->tearing_down = 1;
        S->go = 1;
        S->filler.go = 1;
        S->filler2.go = 1;
        hu_wait(filler);
        hu_wait(filler2);

        /* Watch both tenants' usage go down. A Reload in the middle recomputes usage from the
         * ranges still there. */
        deadline = hu_now_usec() + 180 * 1000 * 1000ULL;
        while (n1 > 0 || n2 > 0) {
                n1 = hu_usage_of(T.bus, "uid:2", "ranges");
                n2 = hu_usage_of(T.bus, "uid:65534", "ranges");
                in_turns = in_turns || (n1 > 0 && n1 < N_RANGES && n2 > 0 && n2 < N_RANGES_2);
                if (!reloaded && n1 < N_RANGES && n1 > 0) {
                        r = test_call(T.bus, "Reload", &error, NULL, "");
                        ASSERT_BUS_OK(r, &error);
                        printf("  Reload during the teardown: uid 2 still owns %" PRIu64 " ranges\n",
                               hu_usage_of(T.bus, "uid:2", "ranges"));
                        reloaded = true;
                }
                ASSERT_TRUE(hu_now_usec() < deadline);
                nanosleep(&(struct timespec) { 0, 2 * 1000 * 1000 }, NULL);
        }
        S->tearing_down = 0;
        printf("teardown of %d + %d ranges took %.2f s; both tenants' ranges were freed in turns: %s\n", N_RANGES,
               N_RANGES_2, (double) (hu_now_usec() - t0) / 1e6, in_turns ? "yes" : "no");

        hu_wait(observer_pid);
        S->stop = 1;
        hu_wait(victim_pid);

        for (size_t i = 0; i < S->n_seen; i++)
                if (S->seen[i] > 0 && S->seen[i] < N_RANGES)
                        steps++;
        printf("uid 2's new connection saw its range count at %zu values, %" PRIu64 " of them in between\n",
               S->n_seen, steps);
        printf("uid 1 meanwhile: %" PRIu64 " calls (%" PRIu64 " while ranges were left), the slowest %s in %.1f ms; "
               "svmd ran at most %.0f ms of CPU before answering one (bound %.0f ms)\n", S->victim_calls,
               S->victim_calls_during, S->victim_max_what, (double) S->victim_max_usec / 1e3,
               (double) S->victim_max_cpu_usec / 1e3, MAX_CALL_USEC / 1e3);

        /* Served during the teardown, not only after it, and never after much of svmd's work. */
        ASSERT_TRUE(S->victim_calls_during >= 10);
        ASSERT_TRUE(S->victim_max_cpu_usec < MAX_CALL_USEC);
        ASSERT_TRUE(S->victim_max_usec < MAX_CALL_WALL_USEC);
        ASSERT_TRUE(steps >= 2);
        ASSERT_TRUE(S->freeing_checked);
        ASSERT_TRUE(reloaded);
        ASSERT_TRUE(in_turns);
        ASSERT_TRUE(hu_usage_of(T.bus, "uid:2", "host") == 0);
        ASSERT_TRUE(hu_usage_of(T.bus, "uid:65534", "host") == 0);

        end = test_dump_settled(&T, base);
        ASSERT_STREQ(base, end);
        test_teardown(&T);
        printf("ok\n");
        return 0;
}
