/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Asserts on libsvmd results for the client tests (on top of unit-assert.h). */

#include <stdio.h>
#include <stdlib.h>

#include <svmd/svmd.h>

#include "unit-assert.h"

/* r is a libsvmd result, e the svmd_error it filled: abort with both if the call failed. */
#define ASSERT_SVMD_OK(r, e)                                                                    \
        do {                                                                                    \
                if ((r) < 0) {                                                                  \
                        fprintf(stderr, "%s:%d: call failed: %d %s: %s\n", __FILE__, __LINE__,  \
                                (int) (r), (e)->name ?: "-", (e)->message ?: "-");              \
                        abort();                                                                \
                }                                                                               \
        } while (0)
