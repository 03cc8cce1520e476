/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hostile-util.h"
#include "svmd-protocol.h"
#include "svmd-test.h"
#include "teardown-util.h"

static uint64_t commit_allocates(sd_bus *bus, const TeardownFiller *f, uint64_t done, unsigned n) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        ASSERT_OK(sd_bus_message_new_method_call(bus, &m, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                                 "Commit"));
        ASSERT_OK(sd_bus_message_open_container(m, 'a', "(sa{sv})"));
        for (unsigned i = 0; i < n; i++)
                ASSERT_OK(sd_bus_message_append(m, "(sa{sv})", "Allocate", 3, "size", "t", UINT64_C(4096), "gpu", "u",
                                                f->gpus[(done + i) % f->n_gpus], "domain", "s", "gtt"));
        ASSERT_OK(sd_bus_message_close_container(m));
        ASSERT_OK(sd_bus_message_append(m, "a{sv}", 0));
        r = sd_bus_call(bus, m, 120 * 1000 * 1000ULL, &error, &reply);
        ASSERT_BUS_OK(r, &error);
        return test_commit_first_id(reply);
}

void teardown_fill(void *arg) {
        TeardownFiller *f = arg;
        sd_bus *bus = test_connect(true);

        for (uint64_t done = 0; done < f->n_ranges;) {
                unsigned n = (unsigned) (f->n_ranges - done < SVMD_MAX_COMMIT_OPS ? f->n_ranges - done
                                                                                  : SVMD_MAX_COMMIT_OPS);
                uint64_t first = commit_allocates(bus, f, done, n);

                if (done == 0)
                        f->first_id = first;
                done += n;
        }
        f->filled = 1;
        hu_wait_flag(&f->go);
        /* Exiting closes the connection: svmd frees what it owned. */
        sd_bus_close(bus);
        sd_bus_unref(bus);
}
