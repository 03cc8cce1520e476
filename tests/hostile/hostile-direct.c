/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hostile-direct.h"
#include "svmd-protocol.h"
#include "svmd-test.h"

int hd_connect(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/" SVMD_IO_SOCKET_NAME, getenv("SVMD_RUNTIME_DIR"));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                fprintf(stderr, "connecting to %s failed: %m\n", sa.sun_path);
                abort();
        }
        return fd;
}

static void send_all(int fd, const void *data, size_t size) {
        ASSERT_TRUE(send(fd, data, size, MSG_NOSIGNAL) == (ssize_t) size);
}

/* Read one CRLF-terminated line into buf. */
static void read_line(int fd, char *buf, size_t size) {
        size_t n = 0;

        while (n + 1 < size) {
                ssize_t k = read(fd, buf + n, 1);

                ASSERT_TRUE(k == 1);
                n++;
                if (n >= 2 && buf[n - 2] == '\r' && buf[n - 1] == '\n')
                        break;
        }
        buf[n] = '\0';
}

void hd_authenticate(int fd) {
        char line[256], hex[32] = "", uid[16];

        snprintf(uid, sizeof(uid), "%u", (unsigned) getuid());
        for (size_t i = 0; uid[i]; i++)
                snprintf(hex + 2 * i, sizeof(hex) - 2 * i, "%02x", (unsigned) uid[i]);
        send_all(fd, "", 1);
        snprintf(line, sizeof(line), "AUTH EXTERNAL %s\r\n", hex);
        send_all(fd, line, strlen(line));
        read_line(fd, line, sizeof(line));
        if (strncmp(line, "OK ", 3) != 0) {
                fprintf(stderr, "AUTH: svmd answered %s\n", line);
                abort();
        }
        send_all(fd, "NEGOTIATE_UNIX_FD\r\n", strlen("NEGOTIATE_UNIX_FD\r\n"));
        read_line(fd, line, sizeof(line));
        ASSERT_STREQ(line, "AGREE_UNIX_FD\r\n");
        send_all(fd, "BEGIN\r\n", strlen("BEGIN\r\n"));
}

static size_t put_field(uint8_t *buf, size_t n, uint8_t code, char type, const char *s) {
        uint32_t len = (uint32_t) strlen(s);

        n = (n + 7) & ~(size_t) 7;
        buf[n++] = code, buf[n++] = 1, buf[n++] = (uint8_t) type, buf[n++] = 0;
        if (type == 'g') {
                buf[n++] = (uint8_t) len;
        } else {
                memcpy(buf + n, &len, 4);
                n += 4;
        }
        memcpy(buf + n, s, len + 1);
        return n + len + 1;
}

size_t hd_call_header(uint8_t *buf, size_t size, const char *member, const char *signature, uint32_t body_size,
                      uint32_t serial) {
        uint32_t fields;
        size_t n = 16;

        ASSERT_TRUE(size >= 512);
        memset(buf, 0, 512);
        n = put_field(buf, n, 1, 'o', SVMD_MANAGER_PATH);
        n = put_field(buf, n, 2, 's', SVMD_MANAGER_INTERFACE);
        n = put_field(buf, n, 3, 's', member);
        if (signature && signature[0])
                n = put_field(buf, n, 8, 'g', signature);
        fields = (uint32_t) (n - 16);
        n = (n + 7) & ~(size_t) 7;
        buf[0] = 'l', buf[1] = 1, buf[2] = 0, buf[3] = 1;
        memcpy(buf + 4, &body_size, 4);
        memcpy(buf + 8, &serial, 4);
        memcpy(buf + 12, &fields, 4);
        return n;
}

void hd_send_fds(int fd, const void *data, size_t size, int passed, unsigned n) {
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(sizeof(int) * HD_FDS_MAX)];
        } control = {};
        struct iovec iov = { .iov_base = (void *) data, .iov_len = size };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = CMSG_SPACE(sizeof(int) * n),
        };
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

        ASSERT_TRUE(n > 0 && n <= HD_FDS_MAX);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        for (unsigned i = 0; i < n; i++)
                memcpy(CMSG_DATA(c) + i * sizeof(int), &passed, sizeof(int));
        ASSERT_TRUE(sendmsg(fd, &mh, MSG_NOSIGNAL) == (ssize_t) size);
}

static sd_bus *connect_address(const char *address, bool bus_client) {
        sd_bus *bus = NULL;

        ASSERT_OK(sd_bus_new(&bus));
        ASSERT_OK(sd_bus_set_address(bus, address));
        ASSERT_OK(sd_bus_set_bus_client(bus, bus_client));
        ASSERT_OK(sd_bus_negotiate_fds(bus, 1));
        ASSERT_OK(sd_bus_start(bus));
        return bus;
}

sd_bus *hd_direct_bus(void) {
        char address[4096];

        snprintf(address, sizeof(address), "unix:path=%s/" SVMD_IO_SOCKET_NAME, getenv("SVMD_RUNTIME_DIR"));
        return connect_address(address, false);
}

sd_bus *hd_bus(void) {
        return connect_address(getenv("SVMD_BUS_ADDRESS"), true);
}

bool hd_closed_within(int fd, unsigned timeout_ms) {
        uint64_t end = hd_now_usec() + (uint64_t) timeout_ms * 1000;
        char buf[4096];

        for (;;) {
                uint64_t now = hd_now_usec();
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t k;

                if (now >= end)
                        return false;
                if (poll(&p, 1, (int) ((end - now) / 1000) + 1) <= 0)
                        continue;
                k = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
                        return true;
        }
}

unsigned hd_svmd_fds(void) {
        char path[64];
        unsigned n = 0;
        struct dirent *de;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%s/fd", getenv("SVMD_PID"));
        d = opendir(path);
        ASSERT_TRUE(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

uint64_t hd_svmd_rss_kib(void) {
        char path[64], line[256];
        uint64_t kib = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%s/status", getenv("SVMD_PID"));
        f = fopen(path, "re");
        ASSERT_TRUE(f);
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %lu kB", &kib) == 1)
                        break;
        fclose(f);
        return kib;
}

uint64_t hd_now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

pid_t hd_fork_as(uid_t uid, void (*fn)(void *arg), void *arg) {
        pid_t pid = fork();

        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                test_become(uid);
                fn(arg);
                _exit(0);
        }
        return pid;
}

void hd_wait(pid_t pid) {
        int status;

        ASSERT_TRUE(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "child %d failed (status 0x%x)\n", (int) pid, status);
                abort();
        }
}

void hd_pump(sd_bus *const *buses, size_t n) {
        struct pollfd pfd[HD_PUMP_MAX];

        assert(n <= HD_PUMP_MAX);
        for (size_t i = 0; i < n; i++) {
                while (sd_bus_process(buses[i], NULL) > 0)
                        ;
                pfd[i] = (struct pollfd) { .fd = sd_bus_get_fd(buses[i]), .events = POLLIN };
                if (sd_bus_get_events(buses[i]) & POLLOUT)
                        pfd[i].events |= POLLOUT;
        }
        (void) poll(pfd, n, 20);
}

uint64_t hd_timed_usage(sd_bus *bus) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t start = hd_now_usec();
        int r;

        r = test_call(bus, "GetUsage", &error, NULL, "s", "");
        ASSERT_BUS_OK(r, &error);
        return hd_now_usec() - start;
}
