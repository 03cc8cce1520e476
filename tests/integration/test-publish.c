/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The node-wide PropertiesChanged (docs/dbus-api.md, "Signals") go out at most every 50 ms
 * however many requests change the counters, and the last one says how things ended: a
 * listener on the bus sees few of them during a burst of Allocate+Free pairs, and after it the
 * manager's Ranges as GetProperty reads it.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define PAIRS 400
#define INTERVAL_USEC 50000
/* Long enough that a loaded machine's svmd has sent what it will send. */
#define QUIET_USEC 500000

typedef struct Seen {
        unsigned n;
        uint64_t ranges;        /* the last announced Ranges */
        bool has_ranges;
} Seen;

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Seen *s = userdata;
        const char *interface, *name;

        ASSERT_OK(sd_bus_message_read(m, "s", &interface));
        if (strcmp(interface, SVMD_MANAGER_INTERFACE) != 0)
                return 0;
        s->n++;
        ASSERT_OK(sd_bus_message_enter_container(m, 'a', "{sv}"));
        while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
                ASSERT_OK(sd_bus_message_read(m, "s", &name));
                if (strcmp(name, "Ranges") == 0) {
                        ASSERT_OK(sd_bus_message_read(m, "v", "t", &s->ranges));
                        s->has_ranges = true;
                } else
                        ASSERT_OK(sd_bus_message_skip(m, "v"));
                ASSERT_OK(sd_bus_message_exit_container(m));
        }
        return 0;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

/* Dispatch what the listener got, until it has been quiet for QUIET_USEC. */
static void drain(sd_bus *listener) {
        uint64_t quiet_since = now_usec();

        while (now_usec() - quiet_since < QUIET_USEC) {
                int r = sd_bus_process(listener, NULL);

                ASSERT_TRUE(r >= 0);
                if (r > 0)
                        quiet_since = now_usec();
                else
                        (void) sd_bus_wait(listener, 10000);
        }
}

static uint64_t ranges_property(sd_bus *bus) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t v;
        int r;

        r = sd_bus_get_property_trivial(bus, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "Ranges", &error,
                                        't', &v);
        ASSERT_BUS_OK(r, &error);
        return v;
}

int main(void) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *listener = NULL;
        uint64_t ids[2], start, elapsed, bound;
        Seen seen = {};
        TestContext t;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&t);
        listener = test_connect_bus();
        ASSERT_OK(sd_bus_match_signal(listener, NULL, SVMD_BUS_NAME, SVMD_MANAGER_PATH,
                                      "org.freedesktop.DBus.Properties", "PropertiesChanged", on_properties_changed,
                                      &seen));
        drain(listener);

        /* A burst: one range kept, then pairs. */
        ids[0] = test_allocate(t.bus, 65536, t.gpus[0], "gtt", false, NULL);
        drain(listener);
        seen = (Seen) {};
        start = now_usec();
        for (unsigned i = 0; i < PAIRS; i++) {
                ids[1] = test_allocate(t.bus, 65536, t.gpus[0], "gtt", false, NULL);
                test_free(t.bus, ids[1]);
        }
        elapsed = now_usec() - start;
        drain(listener);
        /* The first change at once, one per interval, the last after the burst; one more for timing. */
        bound = elapsed / INTERVAL_USEC + 3;
        printf("%d Allocate+Free pairs in %.0f ms: %u PropertiesChanged of the manager (at most %" PRIu64 "), "
               "the last with Ranges %" PRIu64 "\n",
               PAIRS, (double) elapsed / 1e3, seen.n, bound, seen.ranges);
        ASSERT_TRUE(seen.n >= 1);
        ASSERT_TRUE(seen.n <= bound);
        ASSERT_TRUE(seen.has_ranges);
        ASSERT_UEQ(seen.ranges, ranges_property(t.bus));

        /* A lone change after a quiet spell is announced too, with its value. */
        seen = (Seen) {};
        test_free(t.bus, ids[0]);
        drain(listener);
        ASSERT_UEQ(seen.n, 1);
        ASSERT_UEQ(seen.ranges, ranges_property(t.bus));
        test_teardown(&t);
        return 0;
}
