/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hostile-util.h"
#include "svmd-protocol.h"

sd_bus *hu_connect(void) {
        sd_bus *bus = NULL;

        ASSERT_OK(sd_bus_new(&bus));
        ASSERT_OK(sd_bus_set_address(bus, getenv("SVMD_BUS_ADDRESS")));
        ASSERT_OK(sd_bus_set_bus_client(bus, true));
        ASSERT_OK(sd_bus_negotiate_fds(bus, 1));
        ASSERT_OK(sd_bus_start(bus));
        return bus;
}

void *hu_shared(size_t size) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

        ASSERT_TRUE(p != MAP_FAILED);
        return p;
}

pid_t hu_spawn(uid_t uid, void (*fn)(void *), void *arg) {
        pid_t pid;

        fflush(NULL);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                test_become(uid);
                fn(arg);
                fflush(NULL);
                _exit(0);
        }
        return pid;
}

void hu_wait(pid_t pid) {
        int status;

        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "child %d failed (status 0x%x)\n", (int) pid, status);
                abort();
        }
}

void hu_as_uid(uid_t uid, void (*fn)(void *), void *arg) {
        hu_wait(hu_spawn(uid, fn, arg));
}

void hu_wait_flag(volatile int *flag) {
        for (unsigned i = 0; i < 60000 && !*flag; i++) {
                struct timespec ts = { 0, 1000 * 1000 };

                nanosleep(&ts, NULL);
        }
        ASSERT_TRUE(*flag);
}

uint64_t hu_allocate_persistent(sd_bus *bus, uint32_t gpu, uint64_t size) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *path;
        uint64_t id, va;
        int r;

        r = test_call(bus, "Allocate", &error, &reply, "tusa{sv}", size, gpu, "host", 1, "persistent", "b", 1);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "tto", &id, &va, &path));
        return id;
}

uint64_t hu_usage(sd_bus *bus, const char *key) {
        return hu_usage_of(bus, "", key);
}

uint64_t hu_usage_of(sd_bus *bus, const char *scope, const char *key) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t value = 0;
        int r;

        r = test_call(bus, "GetUsage", &error, &reply, "s", scope);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "{sv}"));
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *k, *contents;
                char type;

                ASSERT_OK(sd_bus_message_read(reply, "s", &k));
                ASSERT_OK(sd_bus_message_peek_type(reply, &type, &contents));
                if (strcmp(k, key) == 0 && strcmp(contents, "t") == 0)
                        ASSERT_OK(sd_bus_message_read(reply, "v", "t", &value));
                else
                        ASSERT_OK(sd_bus_message_skip(reply, "v"));
                ASSERT_OK(sd_bus_message_exit_container(reply));
        }
        ASSERT_OK(r);
        return value;
}

uint64_t hu_now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

void hu_share(sd_bus *bus, uint64_t id, uid_t to, char *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *token;
        int r;

        if (to == 0)
                r = test_call(bus, "Share", &error, &reply, "ta{sv}", id, 0);
        else
                r = test_call(bus, "Share", &error, &reply, "ta{sv}", id, 1, "uid", "u", (uint32_t) to);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &token));
        snprintf(ret, 40, "%s", token);
}

unsigned hu_holds_of(sd_bus *bus, uint64_t id, uid_t uid) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[64];
        const char *unit;
        uint32_t u;
        unsigned n = 0;
        int r;

        snprintf(path, sizeof(path), SVMD_RANGE_PATH_PREFIX "/%" PRIu64, id);
        r = sd_bus_get_property(bus, SVMD_BUS_NAME, path, SVMD_RANGE_INTERFACE, "Holders", &error, &reply, "a(us)");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "(us)"));
        while ((r = sd_bus_message_read(reply, "(us)", &u, &unit)) > 0)
                n += u == uid;
        ASSERT_OK(r);
        return n;
}

void hu_expect_error(int r, sd_bus_error *error, const char *name) {
        ASSERT_BUS_ERROR(r, error, name);
        fprintf(stderr, "refused as expected: %s: %s\n", error->name, error->message);
        sd_bus_error_free(error);
}
