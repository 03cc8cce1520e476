/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The big tenant of the teardown tests (test-teardown-stall.c,
 * test-teardown-shutdown.c): a connection of its own uid that fills svmd with
 * many small ranges, then closes, leaving svmd a long teardown.
 */

#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

typedef struct TeardownFiller {
        /* in */
        uint32_t gpus[8];
        size_t n_gpus;
        uint64_t n_ranges;
        /* out */
        uint64_t first_id;      /* freed last: a client's ranges go newest first */
        volatile int filled;
        /* in: close the connection now */
        volatile int go;
} TeardownFiller;

/* The filler's body (hu_spawn()): GTT 4 KiB ranges by Commits of SVMD_MAX_COMMIT_OPS, over io.socket. */
void teardown_fill(void *arg);
