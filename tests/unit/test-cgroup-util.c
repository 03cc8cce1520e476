/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* cgroup_is_prefix(): a grant's or quota rule's cgroup prefix matches whole path components. */

#include <stdbool.h>
#include <stdio.h>

#include "cgroup-util.h"
#include "unit-assert.h"

static void test_table(void) {
        static const struct {
                const char *prefix, *cgroup;
                bool match;
        } cases[] = {
                { "/machine.slice/job-1", "/machine.slice/job-1", true },
                { "/machine.slice/job-1", "/machine.slice/job-1/payload", true },
                { "/machine.slice/job-1", "/machine.slice/job-12.scope", false },
                { "/machine.slice/job-1", "/machine.slice/job-12.scope/payload", false },
                { "/machine.slice/job-1", "/machine.slice/job-1.scope", false },
                { "/machine.slice/job-1", "/machine.slice", false },
                { "/machine.slice/job-1", "/machine.slice/job-", false },
                /* A trailing slash keeps working, and means the same directory. */
                { "/machine.slice/", "/machine.slice/machine-a.scope/payload", true },
                { "/machine.slice/", "/machine.slice", true },
                { "/machine.slice/", "/machine.slice2/x", false },
                { "/machine.slice//", "/machine.slice/x", true },
                /* The root covers every cgroup, an unknown or relative one none. */
                { "/", "/", true },
                { "/", "/user.slice/user-1000.slice/session-2.scope", true },
                { "/", "", false },
                { "/machine.slice", "", false },
                { "/machine.slice", "machine.slice/x", false },
                { "", "/anything", true },
                { "", "", false },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                bool got = cgroup_is_prefix(cases[i].prefix, cases[i].cgroup);
                if (got != cases[i].match) {
                        fprintf(stderr, "cgroup_is_prefix(\"%s\", \"%s\") = %d, expected %d\n", cases[i].prefix,
                                cases[i].cgroup, got, cases[i].match);
                        ASSERT_TRUE(got == cases[i].match);
                }
        }
        ASSERT_FALSE(cgroup_is_prefix("/", NULL));
}

int main(void) {
        test_table();
        printf("cgroup-util: ok\n");
        return 0;
}
