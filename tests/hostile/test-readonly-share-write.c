/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * A read-only share stays read-only (see docs/dbus-api.md, "Attach"). The owner
 * (root) allocates a host and an svm range, writes a pattern and shares each
 * read-only with uid 65534. That holder takes its fd by Attach and by Export
 * and tries everything that would change the owner's memory: reopening the fd
 * through /proc/self/fd and /proc/self/map_files read-write, a writable shared
 * mapping, mprotect, MADV_REMOVE, ftruncate, fallocate (growing and punching),
 * write, a write seal, and svmd's own fd table. All must be refused. Then the
 * owner's bytes and the memfd's size are unchanged, and even root, which may
 * reopen the memfd read-write, cannot change its size. The same holds after a
 * restart for persistent ranges whose memfds an older svmd made unsealed
 * (sealed now) or unsealable (logged).
 */

#include <dirent.h>
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

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)
#define UID_HOLDER 65534

static TestContext T;
static unsigned n_succeeded;

static void fill(int fd, uint64_t size, uint8_t seed) {
        uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

        ASSERT_TRUE(p != MAP_FAILED);
        for (uint64_t i = 0; i < size; i++)
                p[i] = (uint8_t) (seed + i * 7);
        munmap(p, size);
}

static bool intact(int fd, uint64_t size, uint8_t seed) {
        struct stat st;
        uint8_t *p;
        bool ok = true;

        ASSERT_OK(fstat(fd, &st));
        if ((uint64_t) st.st_size != size) {
                fprintf(stderr, "the memfd has %jd bytes, not %" PRIu64 "\n", (intmax_t) st.st_size, size);
                return false;
        }
        p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        ASSERT_TRUE(p != MAP_FAILED);
        for (uint64_t i = 0; ok && i < size; i++)
                if (p[i] != (uint8_t) (seed + i * 7)) {
                        fprintf(stderr, "byte %" PRIu64 " is 0x%02x, not 0x%02x\n", i, p[i], (uint8_t) (seed + i * 7));
                        ok = false;
                }
        munmap(p, size);
        return ok;
}

/* The attack must have failed (r < 0); one that worked is counted and does its damage. */
static void refused(const char *what, int r) {
        if (r >= 0) {
                printf("    %-60s SUCCEEDED\n", what);
                n_succeeded++;
        } else
                printf("    %-60s refused (%s)\n", what, strerror(errno));
}

/* Write through a writable fd that should not exist: the owner's bytes then show it. */
static void scribble(int fd) {
        static const char junk[16] = "hostile holder!";
        if (fd >= 0) {
                (void) pwrite(fd, junk, sizeof(junk), 0);
                close(fd);
        }
}

static void attack_fd(int fd, uint64_t size, const char *via) {
        char path[128], what[128];
        uint8_t *p;
        int fd2;

        printf("  %s: fd opened %s\n", via, (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY ? "read-only" : "read-write");
        ASSERT_EQ(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        fd2 = open(path, O_RDWR | O_CLOEXEC);
        refused("reopen /proc/self/fd/N O_RDWR", fd2);
        scribble(fd2);
        fd2 = open(path, O_WRONLY | O_CLOEXEC);
        refused("reopen /proc/self/fd/N O_WRONLY", fd2);
        scribble(fd2);

        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        refused("mmap PROT_WRITE MAP_SHARED", p == MAP_FAILED ? -1 : 0);
        if (p != MAP_FAILED) {
                p[0] ^= 0xff;
                munmap(p, size);
        }

        p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        ASSERT_TRUE(p != MAP_FAILED);
        refused("mprotect PROT_WRITE of a shared read-only mapping", mprotect(p, size, PROT_READ | PROT_WRITE));
        refused("madvise MADV_REMOVE", madvise(p, size, MADV_REMOVE));
        snprintf(what, sizeof(what), "/proc/self/map_files/%lx-%lx", (unsigned long) (uintptr_t) p,
                 (unsigned long) ((uintptr_t) p + size));
        fd2 = open(what, O_RDWR | O_CLOEXEC);
        refused("reopen /proc/self/map_files/START-END O_RDWR", fd2);
        scribble(fd2);
        munmap(p, size);

        refused("ftruncate to 0", ftruncate(fd, 0));
        refused("ftruncate to twice the size", ftruncate(fd, (off_t) (2 * size)));
        refused("fallocate to twice the size", fallocate(fd, 0, 0, (off_t) (2 * size)));
        refused("fallocate PUNCH_HOLE", fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t) size));
        refused("write", write(fd, "x", 1) < 0 ? -1 : 0);
        refused("pwrite", pwrite(fd, "x", 1, 0) < 0 ? -1 : 0);
        refused("F_ADD_SEALS F_SEAL_WRITE (would freeze the owner)", fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE));
}

static uint64_t shared_id;
static char shared_token[128];

static void holder_main(void) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus *bus = test_connect_bus();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id, va, size;
        char path[64];
        DIR *d;
        int fd, r;

        r = test_call(bus, "Attach", &error, &reply, "s", shared_token);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "ttth", &id, &va, &size, &fd));
        ASSERT_UEQ(id, shared_id);
        attack_fd(fd, size, "Attach");

        fd = test_export(bus, id, &size);
        attack_fd(fd, size, "Export by the holder");
        close(fd);

        /* svmd's own fds are not the holder's to open. */
        snprintf(path, sizeof(path), "/proc/%s/fd", getenv("SVMD_PID"));
        d = opendir(path);
        refused("open svmd's /proc/PID/fd", d ? 0 : -1);
        if (d)
                closedir(d);

        r = test_call(bus, "Release", &error, NULL, "t", id);
        ASSERT_BUS_OK(r, &error);
        sd_bus_flush_close_unref(bus);
        if (n_succeeded > 0) {
                fprintf(stderr, "uid %d: %u attacks on a read-only share succeeded\n", UID_HOLDER, n_succeeded);
                _exit(1);
        }
}

/* Share id read-only with UID_HOLDER, let it attack, check the owner's fd; sealed: root cannot resize either. */
static void share_and_attack(uint64_t id, int fd, uint64_t size, uint8_t seed, bool sealed) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *token;
        char path[64];
        int fd2, status, r;
        pid_t pid;

        shared_id = id;
        r = test_call(T.bus, "Share", &error, &reply, "ta{sv}", id, 2, "uid", "u", (uint32_t) UID_HOLDER,
                      "read-only", "b", 1);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &token));
        snprintf(shared_token, sizeof(shared_token), "%s", token);

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                test_become(UID_HOLDER);
                holder_main();
                _exit(0);
        }
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        ASSERT_TRUE(intact(fd, size, seed));
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!sealed) {
                printf("  the owner's bytes and size are unchanged\n");
                return;
        }

        /* Root may open the memfd again read-write (docs/admin.md), but nobody changes its size. */
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        fd2 = open(path, O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(fd2 >= 0);
        ASSERT_ERROR(ftruncate(fd2, 0) < 0 ? -errno : 0, EPERM);
        ASSERT_ERROR(ftruncate(fd, (off_t) (2 * size)) < 0 ? -errno : 0, EPERM);
        ASSERT_ERROR(fallocate(fd, 0, 0, (off_t) (2 * size)) < 0 ? -errno : 0, EPERM);
        ASSERT_ERROR(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) < 0 ? -errno : 0, EPERM);
        close(fd2);
        ASSERT_TRUE(intact(fd, size, seed));
        printf("  the owner's bytes and size are unchanged; root cannot resize it either\n");
}

static void test_domain(const char *domain) {
        uint64_t id, size;
        int fd;

        printf("%s range shared read-only with uid %d:\n", domain, UID_HOLDER);
        id = test_allocate(T.bus, 1 * MiB, 0, domain, false, NULL);
        fd = test_export(T.bus, id, &size);
        fill(fd, size, 0x5a);
        share_and_attack(id, fd, size, 0x5a, true);
        close(fd);
        test_free(T.bus, id);
}

/*
 * Persistent host ranges whose memfds an older svmd made (mode 0777, no seals): one that allows
 * sealing, one that does not. After a restart both are svmd's alone to reopen; the first is
 * sealed, the second is logged.
 */
static void test_restored(void) {
        const int seals = F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL;
        _cleanup_free_ char *lost = NULL, *log = NULL;
        uint64_t id[2], size;
        char msg[128];
        struct stat st;
        int fd;

        for (int i = 0; i < 2; i++) {
                int old;

                id[i] = test_allocate(T.bus, 1 * MiB, 0, "host", true, NULL);
                old = memfd_create("old-svmd", MFD_CLOEXEC | (i == 0 ? MFD_ALLOW_SEALING : 0));
                ASSERT_TRUE(old >= 0);
                ASSERT_OK(ftruncate(old, (off_t) MiB) < 0 ? -errno : 0);
                fill(old, MiB, (uint8_t) (0x30 + i));
                _cleanup_free_ char *fdname = test_fd_store_name(id[i]);

                snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", fdname);
                test_notify(msg, -1);
                snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", fdname);
                test_notify(msg, old);
                close(old);
        }
        test_kill_and_wait_restart(&T);
        lost = test_lost_ranges(T.bus);
        ASSERT_STREQ(lost, "");

        for (int i = 0; i < 2; i++) {
                printf("persistent host range with %s memfd of an older svmd, after a restart:\n",
                       i == 0 ? "an unsealed" : "an unsealable");
                fd = test_export(T.bus, id[i], &size);
                ASSERT_OK(fstat(fd, &st) < 0 ? -errno : 0);
                printf("  mode %03o, seals 0x%x\n", (unsigned) (st.st_mode & 07777), (unsigned) fcntl(fd, F_GET_SEALS));
                ASSERT_EQ(st.st_mode & 07777, 0600);
                if (i == 0)
                        ASSERT_EQ(fcntl(fd, F_GET_SEALS) & seals, seals);
                else {
                        snprintf(msg, sizeof(msg), "The host memory of range %" PRIu64 " cannot be sealed", id[i]);
                        log = test_svmd_log();
                        ASSERT_TRUE(strstr(log, msg) != NULL);
                        printf("  logged: \"%s …\"\n", msg);
                }
                share_and_attack(id[i], fd, size, (uint8_t) (0x30 + i), i == 0);
                close(fd);
                test_free(T.bus, id[i]);
        }
}

int main(void) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        test_setup(&T);
        test_domain("host");
        test_domain("svm");
        test_restored();
        test_teardown(&T);
        printf("readonly-share-write: ok\n");
        return 0;
}
