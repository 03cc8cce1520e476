/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The host quota holds for exported memory (see docs/dbus-api.md, "Export").
 * uid 65534 has a 64 MiB host quota (export-grow-quota.conf). It allocates a
 * persistent 32 MiB host range, exports it and tries to make the memfd bigger:
 * ftruncate to 1 GiB, fallocate past its end, pwrite past its end. Every try
 * must fail; the memfd stays 32 MiB, GetUsage is unchanged, and the range is
 * still 32 MiB when svmd hands it out again after the client left (a
 * persistent range's memory outlives its client in the fd store).
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define UID_TENANT 65534

static TestContext T;

typedef struct Result {
        uint64_t id;
        unsigned grown;         /* tries that made the memfd bigger */
        char usage_before[512], usage_after[512];
} Result;

static Result *R; /* shared with the child */

static uint64_t fd_size(int fd) {
        struct stat st;

        ASSERT_OK(fstat(fd, &st) < 0 ? -errno : 0);
        return (uint64_t) st.st_size;
}

static void tried(const char *what, int r, int fd) {
        uint64_t size = fd_size(fd);

        printf("  %-44s %s; the memfd has %" PRIu64 " MiB\n", what, r < 0 ? strerror(errno) : "succeeded",
               size / MiB);
        if (r >= 0 || size != 32 * MiB)
                R->grown++;
}

static void tenant_main(void) {
        sd_bus *bus = test_connect_bus();
        _cleanup_free_ char *before = NULL, *after = NULL;
        int fd;

        R->id = test_allocate(bus, 32 * MiB, 0, "host", true, NULL);
        before = test_usage(bus);
        fd = test_export(bus, R->id, NULL);
        ASSERT_UEQ(fd_size(fd), 32 * MiB);

        tried("ftruncate to 1 GiB", ftruncate(fd, (off_t) GiB), fd);
        tried("fallocate 32 MiB past the end", fallocate(fd, 0, (off_t) (32 * MiB), (off_t) (32 * MiB)), fd);
        tried("pwrite 4 KiB at 40 MiB", pwrite(fd, "quota", 5, (off_t) (40 * MiB)) < 0 ? -1 : 0, fd);
        tried("ftruncate to 16 MiB", ftruncate(fd, (off_t) (16 * MiB)), fd);
        close(fd);

        after = test_usage(bus);
        snprintf(R->usage_before, sizeof(R->usage_before), "%s", before);
        snprintf(R->usage_after, sizeof(R->usage_after), "%s", after);
        sd_bus_flush_close_unref(bus);
}

int main(void) {
        uint64_t size;
        int fd, status;
        pid_t pid;

        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        R = mmap(NULL, sizeof(Result), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(R != MAP_FAILED);

        printf("uid %d, host quota 64 MiB, exports a persistent 32 MiB host range:\n", UID_TENANT);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                test_become(UID_TENANT);
                tenant_main();
                _exit(0);
        }
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        printf("  GetUsage before: %s\n  GetUsage after:  %s\n", R->usage_before, R->usage_after);
        ASSERT_STREQ(R->usage_before, R->usage_after);

        /* The client is gone; the persistent range and its memory are not. */
        fd = test_export(T.bus, R->id, &size);
        printf("  after the client left: range %" PRIu64 " is %" PRIu64 " MiB, its memfd %" PRIu64 " MiB\n", R->id,
               size / MiB, fd_size(fd) / MiB);
        ASSERT_UEQ(fd_size(fd), 32 * MiB);
        close(fd);
        ASSERT_UEQ(R->grown, 0);
        test_free(T.bus, R->id);

        test_teardown(&T);
        printf("export-grow-quota: ok\n");
        return 0;
}
