/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <string.h>

#include "cgroup-util.h"

bool cgroup_is_prefix(const char *prefix, const char *cgroup) {
        size_t n = strlen(prefix);

        if (!cgroup || cgroup[0] != '/')
                return false;
        while (n > 0 && prefix[n - 1] == '/')
                n--;
        if (strncmp(cgroup, prefix, n) != 0)
                return false;
        return cgroup[n] == '\0' || cgroup[n] == '/';
}
