/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * A tenant names the label values of its quota scope: a cgroup rule gives it
 * the scope cgroup:<its cgroup>, and the cgroup's name is its choice where the
 * tree is delegated. uid 2 runs in a cgroup named with a quote, a closing
 * brace, a fake sample, backslashes and bytes that are not UTF-8, and
 * allocates. GetMetrics, its own (over the bus and the direct socket) and
 * root's, must stay one valid text: promtool check metrics accepts it, the
 * scope's series are one line each with the value escaped, and no sample is
 * forged. Other tenants' scopes stay out of the tenant's text.
 *
 * It needs a writable cgroup2 hierarchy and promtool; without them it is
 * skipped (exit 77).
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
/* No '/' and no newline: the kernel refuses those in a cgroup's name. */
#define EVIL "job\"} 4242\\ svmd_up{x=\"\xff\xfe\xc3("

static TestContext T;

static char *get_metrics(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *text;
        int r;

        r = test_call(bus, "GetMetrics", &error, &reply, "a{sv}", 1, SVMD_OPT_FORMAT, "s",
                      SVMD_METRICS_FORMAT_PROMETHEUS);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &text));
        return strdup(text);
}

/* promtool check metrics on text: its exit status. */
static int promtool(const char *text) {
        FILE *p = popen("promtool check metrics", "we");
        int status;

        ASSERT_TRUE(p);
        fputs(text, p);
        status = pclose(p);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static unsigned count_lines(const char *text, const char *prefix) {
        unsigned n = 0;
        size_t l = strlen(prefix);

        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
                n += strncmp(p, prefix, l) == 0;
        return n;
}

/* The label value svmd must write for the evil cgroup: \ " escaped, non-UTF-8 bytes as \\xNN. */
static void expected_label(char *buf, size_t size) {
        snprintf(buf, size, "svmd_scope_ranges{scope=\"cgroup:%s/", hostile_cgroup(""));
        size_t o = strlen(buf);

        for (const unsigned char *p = (const unsigned char *) EVIL; *p && o + 8 < size; p++) {
                if (*p == '"' || *p == '\\')
                        o += (size_t) snprintf(buf + o, size - o, "\\%c", *p);
                else if (*p >= 0x80)
                        o += (size_t) snprintf(buf + o, size - o, "\\\\x%02x", *p);
                else
                        buf[o++] = (char) *p;
        }
        snprintf(buf + o, size - o, "\"} 1");
}

static void check_text(const char *who, const char *text, bool sees_root) {
        char want[512];

        expected_label(want, sizeof(want));
        printf("  %s: %zu bytes; %s\n", who, strlen(text), want);
        ASSERT_TRUE(promtool(text) == 0);
        ASSERT_TRUE(strstr(text, want));
        /* One svmd_up sample, the real one: the cgroup's name forged none. */
        ASSERT_TRUE(count_lines(text, "svmd_up") == 1);
        ASSERT_TRUE(strstr(text, "\nsvmd_up 1\n"));
        ASSERT_TRUE(!strstr(text, " 4242\n"));
        ASSERT_TRUE(!!strstr(text, "scope=\"uid:0\"") == sees_root);
}

static void tenant(void) {
        sd_bus *bus, *direct;
        _cleanup_free_ char *own = NULL, *own_direct = NULL;

        hostile_cgroup_enter(EVIL);
        test_become(UID_TENANT);
        bus = test_connect(false);
        direct = test_connect(true);
        (void) test_allocate(bus, 4096, 0, "gtt", true, NULL);
        own = get_metrics(bus);
        check_text("the tenant, bus", own, false);
        own_direct = get_metrics(direct);
        check_text("the tenant, direct", own_direct, false);
        sd_bus_flush_close_unref(direct);
        sd_bus_flush_close_unref(bus);
        _exit(0);
}

int main(void) {
        static const char *const subs[] = { EVIL, NULL };
        _cleanup_free_ char *all = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int status, r;
        FILE *f;
        pid_t pid;

        setvbuf(stdout, NULL, _IOLBF, 0);
        if (system("command -v promtool >/dev/null") != 0) {
                printf("SKIP: promtool is not installed (tools/setup.sh installs it)\n");
                return HOSTILE_CGROUP_SKIP;
        }
        hostile_cgroup_setup("svmd-metrics-labels", subs);
        test_setup(&T);

        /* Every cgroup under the test's base is a scope of its own. */
        f = fopen(getenv("SVMD_TEST_CONFIG"), "we");
        ASSERT_TRUE(f);
        fprintf(f, "{ \"quotas\": [ { \"match\": { \"cgroup\": \"%s\" }, \"ranges\": 4 } ] }\n", hostile_cgroup(""));
        ASSERT_TRUE(fclose(f) == 0);
        r = test_call(T.bus, "Reload", &error, NULL, "");
        ASSERT_BUS_OK(r, &error);
        (void) test_allocate(T.bus, 4096, 0, "gtt", false, NULL);

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0)
                tenant();
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        if (WIFEXITED(status) && WEXITSTATUS(status) == HOSTILE_CGROUP_SKIP)
                return HOSTILE_CGROUP_SKIP;
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        all = get_metrics(T.bus);
        check_text("root", all, true);
        printf("metrics-labels: a tenant's cgroup name cannot break or forge the metrics\n");
        test_teardown(&T);
        return 0;
}
