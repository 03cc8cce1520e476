/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * A cgroup prefix matches whole path components. The test makes cgroups
 * <base>/job-1 and <base>/job-12.scope/payload in the cgroup2 hierarchy (as
 * root), and runs clients of uid 2 in them:
 *
 *   - a share token granted to the cgroup <base>/job-1 attaches from job-1,
 *     and is refused to job-12.scope/payload, whose path merely starts with
 *     the same characters;
 *   - a quota rule for <base>/job-1 (one range) limits job-1 and not the
 *     sibling, which stays in its uid's scope.
 *
 * It needs a writable cgroup2 hierarchy (at /sys/fs/cgroup or
 * /sys/fs/cgroup/unified) that svmd reads cgroups from; without one it is
 * skipped (exit 77) and says why.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hostile-cgroup.h"
#include "svmd-protocol.h"
#include "svmd-test.h"

#define UID_TENANT 2

static TestContext T;
static char token[128];

static sd_bus *connect_bus(void) {
        sd_bus *bus = NULL;

        ASSERT_OK(sd_bus_new(&bus));
        ASSERT_OK(sd_bus_set_address(bus, getenv("SVMD_BUS_ADDRESS")));
        ASSERT_OK(sd_bus_set_bus_client(bus, true));
        ASSERT_OK(sd_bus_negotiate_fds(bus, true));
        ASSERT_OK(sd_bus_start(bus));
        return bus;
}

/* Run fn in a child in cgroup (relative to base) as the tenant; a skip passes through. */
static void run_in(const char *sub, void (*fn)(const char *cgroup)) {
        char cgroup[256];
        int status;
        pid_t pid;

        snprintf(cgroup, sizeof(cgroup), "%s", hostile_cgroup(sub));
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                hostile_cgroup_enter(sub);
                test_become(UID_TENANT);
                fn(cgroup);
                _exit(0);
        }
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        if (WIFEXITED(status) && WEXITSTATUS(status) == HOSTILE_CGROUP_SKIP)
                exit(HOSTILE_CGROUP_SKIP);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "client in %s failed (status 0x%x)\n", cgroup, status);
                abort();
        }
}

static void attach_allowed(const char *cgroup) {
        sd_bus *bus = connect_bus();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        uint64_t id, va, size;
        int fd, r;

        r = test_call(bus, "Attach", &error, &reply, "s", token);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "ttth", &id, &va, &size, &fd));
        sd_bus_message_unref(reply);
        r = test_call(bus, "Release", &error, NULL, "t", id);
        ASSERT_BUS_OK(r, &error);
        printf("  %-40s Attach with the token granted to the cgroup: ok\n", cgroup);
        sd_bus_flush_close_unref(bus);
}

static void attach_refused(const char *cgroup) {
        sd_bus *bus = connect_bus();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = test_call(bus, "Attach", &error, NULL, "s", token);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_ACCESS_DENIED);
        printf("  %-40s Attach refused: %s\n", cgroup, error.message);
        sd_bus_error_free(&error);
        sd_bus_flush_close_unref(bus);
}

/* Two small ranges; returns the scope and how many were allowed. */
static unsigned allocate_two(sd_bus *bus, char **ret_usage) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        unsigned made = 0;
        int r;

        for (int i = 0; i < 2; i++) {
                r = test_call(bus, "Allocate", &error, NULL, "tusa{sv}", UINT64_C(4096), T.gpus[0], "gtt", 0);
                if (r < 0) {
                        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_QUOTA_EXCEEDED);
                        sd_bus_error_free(&error);
                        break;
                }
                made++;
        }
        *ret_usage = test_usage(bus);
        return made;
}

static void quota_ruled(const char *cgroup) {
        sd_bus *bus = connect_bus();
        _cleanup_free_ char *usage = NULL, *want = NULL;
        unsigned made = allocate_two(bus, &usage);

        ASSERT_TRUE(asprintf(&want, "scope=cgroup:%s ", cgroup) >= 0);
        printf("  %-40s %u of 2 ranges allowed; %s\n", cgroup, made, usage);
        ASSERT_TRUE(strstr(usage, want) == usage);
        ASSERT_TRUE(made == 1);
        sd_bus_flush_close_unref(bus);
}

static void quota_sibling(const char *cgroup) {
        sd_bus *bus = connect_bus();
        _cleanup_free_ char *usage = NULL;
        unsigned made = allocate_two(bus, &usage);

        printf("  %-40s %u of 2 ranges allowed; %s\n", cgroup, made, usage);
        ASSERT_TRUE(strstr(usage, "scope=uid:2 ") == usage);
        ASSERT_TRUE(made == 2);
        sd_bus_flush_close_unref(bus);
}

static void reload_with_rule(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        FILE *f = fopen(getenv("SVMD_TEST_CONFIG"), "we");
        int r;

        ASSERT_TRUE(f);
        fprintf(f,
                "{ \"quotas\": [ { \"match\": { \"cgroup\": \"%s\" }, \"ranges\": 1 } ],\n"
                "  \"default-quota\": { \"vram\": \"512M\", \"host\": \"128M\", \"ranges\": 24 } }\n",
                hostile_cgroup("job-1"));
        ASSERT_TRUE(fclose(f) == 0);
        r = test_call(T.bus, "Reload", &error, NULL, "");
        ASSERT_BUS_OK(r, &error);
        printf("quota rule: cgroup %s, 1 range\n", hostile_cgroup("job-1"));
}

int main(void) {
        static const char *const subs[] = { "job-1", "job-12.scope", "job-12.scope/payload", NULL };

        setvbuf(stdout, NULL, _IOLBF, 0);
        hostile_cgroup_setup("svmd-cgroup-prefix", subs);
        test_setup(&T);
        hostile_cgroup_share(T.bus, T.gpus[0], "job-1", token, sizeof(token));
        run_in("job-1", attach_allowed);
        run_in("job-12.scope/payload", attach_refused);
        run_in("job-12.scope", attach_refused);

        reload_with_rule();
        run_in("job-1", quota_ruled);
        run_in("job-12.scope/payload", quota_sibling);

        printf("cgroup-prefix: grants and quota rules match whole path components\n");
        test_teardown(&T);
        return 0;
}
