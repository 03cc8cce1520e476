/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

/*
 * Whether cgroup lies at or below prefix, both cgroup paths: a prefix matches
 * whole path components only. "/machine.slice/job-1" covers "/machine.slice/job-1"
 * and "/machine.slice/job-1/payload", not "/machine.slice/job-12.scope". Trailing
 * slashes of the prefix change nothing ("/machine.slice/" = "/machine.slice"); "/"
 * covers every cgroup. An empty (unknown) or relative cgroup is covered by nothing.
 * Grants (client.c) and quota rules (quota.c) both match with it.
 */
bool cgroup_is_prefix(const char *prefix, const char *cgroup);
