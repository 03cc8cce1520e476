/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>
#include <systemd/sd-login.h>

#include "hostile-cgroup.h"
#include "svmd-test.h"

static char mount_point[64], base[128];
static const char *const *created;
static pid_t creator;

static void cleanup(void) {
        char p[512];
        size_t n = 0;

        if (getpid() != creator || !base[0])
                return;
        while (created && created[n])
                n++;
        /* Children first. */
        while (n-- > 0) {
                snprintf(p, sizeof(p), "%s%s/%s", mount_point, base, created[n]);
                (void) rmdir(p);
        }
        snprintf(p, sizeof(p), "%s%s", mount_point, base);
        (void) rmdir(p);
}

static void on_abort(int sig) {
        cleanup();
        signal(sig, SIG_DFL);
        raise(sig);
}

static void make(const char *path) {
        char p[512];

        snprintf(p, sizeof(p), "%s%s", mount_point, path);
        if (mkdir(p, 0755) < 0 && errno != EEXIST) {
                printf("SKIP: cannot create cgroup %s: %m\n", p);
                exit(HOSTILE_CGROUP_SKIP);
        }
}

void hostile_cgroup_setup(const char *name, const char *const *subs) {
        static const char *const candidates[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
        struct statfs fs;

        for (size_t i = 0; i < 2 && !mount_point[0]; i++)
                if (statfs(candidates[i], &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC)
                        snprintf(mount_point, sizeof(mount_point), "%s", candidates[i]);
        if (!mount_point[0]) {
                printf("SKIP: no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified\n");
                exit(HOSTILE_CGROUP_SKIP);
        }
        creator = getpid();
        snprintf(base, sizeof(base), "/%s-%d", name, (int) creator);
        created = subs;
        atexit(cleanup);
        signal(SIGABRT, on_abort);
        make(base);
        for (size_t i = 0; subs[i]; i++)
                make(hostile_cgroup(subs[i]));
}

const char *hostile_cgroup(const char *sub) {
        static char path[256];

        snprintf(path, sizeof(path), "%s%s%s", base, sub[0] ? "/" : "", sub);
        return path;
}

void hostile_cgroup_enter(const char *sub) {
        _cleanup_free_ char *seen = NULL;
        const char *cgroup = hostile_cgroup(sub);
        char p[512];
        FILE *f;

        snprintf(p, sizeof(p), "%s%s/cgroup.procs", mount_point, cgroup);
        f = fopen(p, "we");
        ASSERT_TRUE(f);
        fprintf(f, "%d\n", (int) getpid());
        ASSERT_TRUE(fclose(f) == 0);
        ASSERT_OK(sd_pid_get_cgroup(0, &seen));
        if (!streq(seen, cgroup)) {
                printf("SKIP: moved to cgroup %s, but sd_pid_get_cgroup() reads %s\n", cgroup, seen);
                _exit(HOSTILE_CGROUP_SKIP);
        }
}

void hostile_cgroup_share(sd_bus *bus, uint32_t gpu, const char *sub, char *token, size_t size) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *t, *path;
        uint64_t id, va;
        int r;

        r = test_call(bus, "Allocate", &error, &reply, "tusa{sv}", UINT64_C(65536), gpu, "host", 0);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        reply = sd_bus_message_unref(reply);
        r = test_call(bus, "Share", &error, &reply, "ta{sv}", id, 1, "cgroup", "s", hostile_cgroup(sub));
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &t));
        snprintf(token, size, "%s", t);
        sd_bus_message_unref(reply);
        printf("range %" PRIu64 " shared to cgroup %s\n", id, hostile_cgroup(sub));
}
