/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What every fuzz target shares. A target defines LLVMFuzzerTestOneInput();
 * with -Dfuzzing=true it links libFuzzer, in the normal build it links
 * fuzz-replay.c, which feeds it the inputs kept in corpus/<target>/ (the seeds
 * and every crash ever found), so each finding stays a regression test.
 */

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A private scratch directory for targets that need files (created once, never removed while running). */
const char *fuzz_scratch_dir(void);

/* rm -rf of everything below dir, keeping dir. */
void fuzz_clear_dir(const char *dir);

/* Write data to dir/name (name may contain '/'; parents are created). Returns 0 or -errno. */
int fuzz_write_file(const char *dir, const char *name, const void *data, size_t size);
