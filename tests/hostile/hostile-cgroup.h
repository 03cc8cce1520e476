/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Cgroups for hostile tests: a private tree /<name>-<pid>/… in the cgroup2
 * hierarchy (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid systems),
 * removed at exit and on abort. Needs root. Where there is no writable
 * hierarchy, or svmd would read another one, the test exits 77 (skipped)
 * and says why.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

#define HOSTILE_CGROUP_SKIP 77

/* Create /<name>-<pid> and the given sub-cgroups (NULL-terminated, parents first). */
void hostile_cgroup_setup(const char *name, const char *const *subs);
/* The cgroup path of a sub-cgroup ("" for the base), as svmd sees it; a static buffer. */
const char *hostile_cgroup(const char *sub);
/* Move the calling process into sub, and check that sd_pid_get_cgroup() sees it there. */
void hostile_cgroup_enter(const char *sub);
/* As the bus's caller (root): a new host range, shared to the cgroup sub; its token into token. */
void hostile_cgroup_share(sd_bus *bus, uint32_t gpu, const char *sub, char *token, size_t size);
