/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * svmd-harness: run a command against a real svmd on an emulated node.
 *
 * Starts a private dbus-daemon from a config written here (its address read
 * from --print-address=FD), prepares the KFD emulator (sysfs tree + kernel
 * arena), starts svmd with the emulator preloaded and waits for its READY=1 on
 * a notify socket of ours (never sleep-and-hope). Then it runs CMD with the
 * variables of exported_vars[] (--help lists them), and finally stops svmd
 * with SIGTERM. The exit status is CMD's, or failure if svmd did not exit
 * cleanly (e.g. a sanitizer report).
 *
 * Meanwhile the harness plays the service manager as systemd does for
 * svmd.service (sd_notify(3), sd_listen_fds(3)): it keeps the fds svmd sends
 * with FDSTORE=1/FDNAME= (dropping them on FDSTOREREMOVE=1), and when svmd dies
 * (kill -9, crash) it starts it again like Restart=on-failure, handing the fds
 * back with LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID. "svmd-harness restart" does
 * what `systemctl restart svmd` does: SIGTERM, wait, start again with the fd
 * store, wait for READY=1. DIR/svmd.state says "<pid> <ready 0|1> <starts>"
 * and DIR/svmd.pid the current pid, for tests that kill, restart and wait.
 * --fd-store-max N gives the fd store systemd's FileDescriptorStoreMax=N: fds
 * past it are dropped, as systemd drops them.
 *
 * --kfd-version MAJ.MIN makes the emulator report that KFD interface version
 * (default: the topology's); so does $SVMD_HARNESS_KFD_VERSION, which lets a
 * whole suite run again on another interface version.
 *
 * --runtime-tmpfs-size SIZE puts svmd's runtime directory on a tmpfs of that
 * size (mount(8) syntax: 128k), mounted in a mount namespace of the harness's
 * own, so it goes away with the harness: the full /run of a node.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "emu-kernel.h"
#include "emu-topology.h"
#include "macro.h"

#define READY_TIMEOUT_SEC 120
#define MAX_STORED_FDS 65536

static const char *arg_topology;
static const char *arg_config;
static const char *arg_dir;
static bool arg_keep;
static bool arg_no_daemon;
static bool arg_emulate_command;
static const char *arg_svmd = SVMD_HARNESS_SVMD;
static unsigned arg_bus_auth_timeout_ms; /* 0: dbus-daemon's own default */
static size_t arg_fd_store_max = MAX_STORED_FDS;
static const char *arg_runtime_tmpfs_size;
static uint32_t arg_kfd_major, arg_kfd_minor;  /* 0.0: the topology's */
static const char *arg_daemon_log;      /* NULL: DIR/svmd.log on a terminal, else our stderr; "-": stderr */

static char *daemon_log_path;           /* where svmd and dbus-daemon write, NULL: our stderr */
static volatile sig_atomic_t restart_requested;

/* svmd's and dbus-daemon's stdout and stderr: the log file, when there is one. */
static void redirect_daemon_output(void) {
        int fd;

        if (!daemon_log_path)
                return;
        fd = open(daemon_log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
                _exit(126);
        close(fd);
}

/* What CMD finds in its environment; --help prints this table. */
static const struct {
        const char *name, *help;
} exported_vars[] = {
        { "SVMD_BUS_ADDRESS", "the private bus svmd serves org.svmd1 on (DBUS_SESSION_BUS_ADDRESS for busctl --user)" },
        { "SVMD_RUNTIME_DIR", "svmd's runtime directory: io.socket (direct peers), the range journal" },
        { "SVMD_PID", "svmd's pid when CMD started; after a restart read DIR/svmd.pid" },
        { "SVMD_PID_FILE", "DIR/svmd.pid: svmd's current pid, rewritten at every (re)start" },
        { "SVMD_LOG", "the file svmd's log goes to, or empty when it goes to the harness's stderr" },
        { "KFDEMU_DIR", "DIR, the emulated node (kfdemu-ctl --dir, emu_kernel_attach())" },
        { "KFDEMU_LIBRARY", "libkfdemu.so: LD_PRELOAD=$KFDEMU_LIBRARY for a program that opens /dev/kfd itself, "
                            "e.g. one that calls svmd_attach_local()" },
        { "SVMD_TEST_DIR", "a scratch directory anyone may write (DIR/scratch)" },
        { "SVMD_TEST_CONFIG", "the configuration file svmd reads (a copy of --config), to rewrite for Reload" },
};

static void help(void) {
        printf("Usage: svmd-harness --topology FILE [OPTIONS] -- CMD [ARGS...]\n"
               "       svmd-harness restart [--dir DIR]\n"
               "\n"
               "Run CMD against svmd on a private bus and an emulated node, then stop svmd.\n"
               "The exit status is CMD's, or 1 if svmd did not exit cleanly.\n"
               "\n"
               "Options:\n"
               "  -h --help                  show this help\n"
               "     --topology FILE         the emulated node (tests/kfd-emu/topologies/*.json)\n"
               "     --config FILE           svmd.conf to start svmd with (copied to DIR/svmd.conf)\n"
               "     --dir DIR               keep the node in DIR (kept at exit) instead of a new\n"
               "                             /dev/shm/svmd-test.* (removed at exit)\n"
               "     --keep                  keep the new directory at exit\n"
               "     --no-daemon             start the bus and the node, not svmd\n"
               "     --emulate-command       run CMD on the emulated node too (LD_PRELOAD)\n"
               "     --daemon-log FILE       append svmd's and dbus-daemon's output to FILE; '-' for\n"
               "                             stderr. Default: DIR/svmd.log when stderr is a terminal,\n"
               "                             stderr otherwise\n"
               "     --bus-auth-timeout-ms MS  dbus-daemon's auth_timeout\n"
               "     --fd-store-max N        FileDescriptorStoreMax= of the fd store (default 65536)\n"
               "     --runtime-tmpfs-size SIZE  svmd's runtime directory on a tmpfs of SIZE (128k)\n"
               "     --kfd-version MAJ.MIN   the KFD interface version the emulated kernel reports\n"
               "                             (default: the topology's; also SVMD_HARNESS_KFD_VERSION)\n"
               "     --svmd PATH             the svmd to run\n"
               "\n"
               "restart: what `systemctl restart svmd` does, from inside CMD: SIGTERM to svmd, wait\n"
               "(SIGKILL after 90 s), start it again with the fd store (persistent ranges come back),\n"
               "wait for READY=1.\n"
               "Prints the new pid. DIR defaults to $KFDEMU_DIR. If svmd dies otherwise (kill -9,\n"
               "a crash), the harness restarts it by itself, like Restart=on-failure.\n"
               "\n"
               "CMD's environment:\n");
        for (size_t i = 0; i < ELEMENTSOF(exported_vars); i++)
                printf("  %-18s %s\n", exported_vars[i].name, exported_vars[i].help);
        printf("\n"
               "Files in DIR:\n"
               "  svmd.state         \"<pid> <ready 0|1> <starts>\", rewritten at every change\n"
               "  svmd.pid           svmd's current pid (0 while it is down)\n"
               "  svmd.watchdog      with SVMD_HARNESS_WATCHDOG_USEC: \"<pid> <WATCHDOG=1 before READY=1>\n"
               "                     <WATCHDOG=1 in all> <longest µs between two> <WATCHDOG=1 while\n"
               "                     STATUS= said Recovering…>\" of the current start\n"
               "  harness.pid        the harness (restart signals it)\n"
               "  svmd.log           svmd's log, when it goes to a file\n"
               "  svmd.conf, bus, run/, scratch/, state, bo/, sys/   configuration, bus socket,\n"
               "                     runtime directory, scratch, the emulator's kernel and sysfs\n"
               "\n"
               "Environment: SVMD_HARNESS_LOG_LEVEL (svmd's --log-level, default debug),\n"
               "SVMD_HARNESS_EMU_MAX_BUFFERS, SVMD_HARNESS_EMU_MAX_HANDLES (emulator table sizes),\n"
               "SVMD_HARNESS_WATCHDOG_USEC (WatchdogSec=: svmd gets WATCHDOG_USEC, its pings are counted).\n");
}

static int parse_argv(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help",      no_argument,       NULL, 'h' },
                { "topology",  required_argument, NULL, 't' },
                { "config",    required_argument, NULL, 'c' },
                { "dir",       required_argument, NULL, 'd' },
                { "keep",      no_argument,       NULL, 'k' },
                { "no-daemon", no_argument,       NULL, 'n' },
                { "svmd",      required_argument, NULL, 's' },
                { "emulate-command", no_argument, NULL, 'e' },
                { "bus-auth-timeout-ms", required_argument, NULL, 'a' },
                { "fd-store-max", required_argument, NULL, 'f' },
                { "runtime-tmpfs-size", required_argument, NULL, 'r' },
                { "daemon-log", required_argument, NULL, 'l' },
                { "kfd-version", required_argument, NULL, 'v' },
                {}
        };
        const char *version = getenv("SVMD_HARNESS_KFD_VERSION");
        int c;

        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        exit(EXIT_SUCCESS);
                case 't':
                        arg_topology = optarg;
                        break;
                case 'c':
                        arg_config = optarg;
                        break;
                case 'd':
                        arg_dir = optarg;
                        break;
                case 'k':
                        arg_keep = true;
                        break;
                case 'n':
                        arg_no_daemon = true;
                        break;
                case 's':
                        arg_svmd = optarg;
                        break;
                case 'e':
                        arg_emulate_command = true;
                        break;
                case 'l':
                        arg_daemon_log = optarg;
                        break;
                case 'f': {
                        char *end;
                        unsigned long v;

                        errno = 0;
                        v = strtoul(optarg, &end, 10);
                        if (errno != 0 || *end || end == optarg || v > MAX_STORED_FDS) {
                                fprintf(stderr, "svmd-harness: --fd-store-max: not 0…65536: %s\n", optarg);
                                return -EINVAL;
                        }
                        arg_fd_store_max = v;
                        break;
                }
                case 'v':
                        version = optarg;
                        break;
                case 'r':
                        if (!*optarg || strchr(optarg, ',')) {
                                fprintf(stderr, "svmd-harness: --runtime-tmpfs-size: not a size: %s\n", optarg);
                                return -EINVAL;
                        }
                        arg_runtime_tmpfs_size = optarg;
                        break;
                case 'a': {
                        char *end;
                        unsigned long v;

                        errno = 0;
                        v = strtoul(optarg, &end, 10);
                        if (errno != 0 || *end || end == optarg || v == 0 || v > 3600000) {
                                fprintf(stderr, "svmd-harness: --bus-auth-timeout-ms: not 1…3600000: %s\n", optarg);
                                return -EINVAL;
                        }
                        arg_bus_auth_timeout_ms = (unsigned) v;
                        break;
                }
                default:
                        return -EINVAL;
                }
        if (version && *version &&
            (sscanf(version, "%" SCNu32 ".%" SCNu32, &arg_kfd_major, &arg_kfd_minor) != 2 || arg_kfd_major == 0)) {
                fprintf(stderr, "svmd-harness: --kfd-version: not MAJOR.MINOR: %s\n", version);
                return -EINVAL;
        }
        if (!arg_topology || optind >= argc) {
                help();
                return -EINVAL;
        }
        return optind;
}

static int write_file(const char *path, const char *content) {
        _cleanup_fclose_ FILE *f = fopen(path, "we");

        if (!f)
                return negative_errno();
        if (fputs(content, f) < 0 || fflush(f) != 0)
                return -EIO;
        return 0;
}

/* dbus-daemon with a config we own: anyone may own and call; svmd authorizes. */
static int start_bus(const char *dir, pid_t *ret_pid, char **ret_address) {
        _cleanup_free_ char *conf = NULL, *conf_path = NULL;
        char address[512], limits[128] = "";
        int pipefd[2];
        ssize_t n;
        size_t got = 0;
        pid_t pid;
        int r;

        /* How long dbus-daemon lets a connection go without Hello (auth_timeout). */
        if (arg_bus_auth_timeout_ms > 0)
                snprintf(limits, sizeof(limits), "  <limit name=\"auth_timeout\">%u</limit>\n",
                         arg_bus_auth_timeout_ms);
        if (asprintf(&conf_path, "%s/bus.conf", dir) < 0 ||
            asprintf(&conf,
                     "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
                     " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
                     "<busconfig>\n"
                     "  <type>session</type>\n"
                     "  <listen>unix:path=%s/bus</listen>\n"
                     "  <auth>EXTERNAL</auth>\n"
                     "  <policy context=\"default\">\n"
                     "    <allow user=\"*\"/>\n"
                     "    <allow own=\"*\"/>\n"
                     "    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n"
                     "    <allow eavesdrop=\"true\"/>\n"
                     "  </policy>\n"
                     "%s"
                     "</busconfig>\n", dir, limits) < 0)
                return -ENOMEM;
        r = write_file(conf_path, conf);
        if (r < 0)
                return r;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return negative_errno();
        pid = fork();
        if (pid < 0)
                return negative_errno();
        if (pid == 0) {
                char fdarg[64];
                int fd = dup(pipefd[1]); /* without O_CLOEXEC: dbus-daemon writes to it */

                snprintf(fdarg, sizeof(fdarg), "--print-address=%d", fd);
                redirect_daemon_output();
                execlp("dbus-daemon", "dbus-daemon", "--nofork", "--nopidfile", "--nosyslog", fdarg,
                       "--config-file", conf_path, (char *) NULL);
                fprintf(stderr, "svmd-harness: executing dbus-daemon failed: %m\n");
                _exit(127);
        }
        close(pipefd[1]);

        while (got < sizeof(address) - 1) {
                n = read(pipefd[0], address + got, sizeof(address) - 1 - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                got += (size_t) n;
                if (memchr(address, '\n', got))
                        break;
        }
        close(pipefd[0]);
        address[got] = '\0';
        address[strcspn(address, "\n")] = '\0';
        if (got == 0) {
                fprintf(stderr, "svmd-harness: dbus-daemon printed no address\n");
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                return -EIO;
        }

        *ret_pid = pid;
        *ret_address = strdup(address);
        return *ret_address ? 0 : -ENOMEM;
}

static uint32_t env_u32(const char *name) {
        const char *e = getenv(name);

        return e ? (uint32_t) strtoul(e, NULL, 0) : 0;
}

static int setup_emulator(const char *dir) {
        _cleanup_free_ char *error = NULL;
        EmuTopology *topo;
        int r;

        topo = calloc(1, sizeof(EmuTopology));
        if (!topo)
                return -ENOMEM;
        r = emu_topology_load(arg_topology, topo, &error);
        if (r < 0) {
                fprintf(stderr, "svmd-harness: %s\n", error ?: strerror(-r));
                free(topo);
                return r;
        }
        r = emu_topology_write_sysfs(topo, dir);
        if (r >= 0)
                r = emu_kernel_create(dir, topo, &(EmuOptions) {
                        /* Benchmarks with 10^6 live ranges need larger tables; 0 (unset): defaults. */
                        .max_buffers = env_u32("SVMD_HARNESS_EMU_MAX_BUFFERS"),
                        .max_handles = env_u32("SVMD_HARNESS_EMU_MAX_HANDLES"),
                        .kfd_major = arg_kfd_major,
                        .kfd_minor = arg_kfd_minor,
                });
        if (r < 0)
                fprintf(stderr, "svmd-harness: setting up the emulator in %s failed: %s\n", dir, strerror(-r));
        free(topo);
        return r;
}

static int make_notify_socket(const char *dir, char **ret_path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if ((size_t) snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", dir) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                safe_close(fd);
                return negative_errno();
        }
        *ret_path = strdup(sa.sun_path);
        return fd;
}

#define MAX_RESTARTS 1000

/* What systemd keeps for the service: its fd store, its pid and whether it is ready. */
typedef struct Service {
        const char *dir, *address, *notify_path, *config;
        int notify_fd;
        pid_t pid;
        bool ready;
        unsigned starts;
        char **names;
        int *fds;
        size_t n_fds;
        int pidfd;              /* readable when svmd dies: systemd learns it from SIGCHLD, not a poll */
        pid_t pidfd_pid;
        /* WATCHDOG=1 of the current start (SVMD_HARNESS_WATCHDOG_USEC) */
        unsigned wd_before_ready, wd_total, wd_recovering;
        uint64_t wd_last_usec, wd_longest_usec;
        bool status_recovering;         /* the last STATUS= began with "Recovering" */
} Service;

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

static void write_watchdog(Service *s) {
        char path[4096], tmp[4096], buf[128];

        if (!getenv("SVMD_HARNESS_WATCHDOG_USEC"))
                return;
        snprintf(path, sizeof(path), "%s/svmd.watchdog", s->dir);
        snprintf(tmp, sizeof(tmp), "%s/svmd.watchdog.tmp", s->dir);
        snprintf(buf, sizeof(buf), "%d %u %u %" PRIu64 " %u\n", (int) s->pid, s->wd_before_ready, s->wd_total,
                 s->wd_longest_usec, s->wd_recovering);
        if (write_file(tmp, buf) >= 0)
                (void) rename(tmp, path);
}

static void on_watchdog_ping(Service *s) {
        uint64_t now = now_usec();

        if (s->wd_total > 0 && now - s->wd_last_usec > s->wd_longest_usec)
                s->wd_longest_usec = now - s->wd_last_usec;
        s->wd_last_usec = now;
        s->wd_total++;
        if (!s->ready)
                s->wd_before_ready++;
        if (s->status_recovering)
                s->wd_recovering++;
        write_watchdog(s);
}

static void write_state(Service *s) {
        char path[4096], tmp[4096], buf[128];

        snprintf(path, sizeof(path), "%s/svmd.state", s->dir);
        snprintf(tmp, sizeof(tmp), "%s/svmd.state.tmp", s->dir);
        snprintf(buf, sizeof(buf), "%d %d %u\n", (int) s->pid, s->ready, s->starts);
        if (write_file(tmp, buf) >= 0)
                (void) rename(tmp, path);
        snprintf(path, sizeof(path), "%s/svmd.pid", s->dir);
        snprintf(buf, sizeof(buf), "%d\n", (int) s->pid);
        if (write_file(tmp, buf) >= 0)
                (void) rename(tmp, path);
}

static void store_remove(Service *s, const char *name) {
        for (size_t i = 0; i < s->n_fds; i++)
                if (streq(s->names[i], name)) {
                        safe_close(s->fds[i]);
                        free(s->names[i]);
                        s->fds[i] = s->fds[s->n_fds - 1];
                        s->names[i] = s->names[s->n_fds - 1];
                        s->n_fds--;
                        return;
                }
}

static void store_add(Service *s, const char *name, int fd) {
        /* Like systemd: the same name again replaces nothing, it adds; svmd never does that. */
        if (s->n_fds >= arg_fd_store_max) {
                fprintf(stderr, "svmd-harness: fd store full, dropping %s\n", name);
                safe_close(fd);
                return;
        }
        s->fds = reallocarray(s->fds, s->n_fds + 1, sizeof(int));
        s->names = reallocarray(s->names, s->n_fds + 1, sizeof(char *));
        if (!s->fds || !s->names)
                abort();
        s->fds[s->n_fds] = fd;
        s->names[s->n_fds] = strdup(name);
        s->n_fds++;
}

/* Handle every queued notification; returns after the queue is empty. */
static void handle_notify(Service *s) {
        for (;;) {
                char buf[4096], control[CMSG_SPACE(sizeof(int) * 253)];
                struct iovec iov = { buf, sizeof(buf) - 1 };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                                     .msg_controllen = sizeof(control) };
                int fds[253], n_fds = 0;
                char *name = NULL;
                bool fdstore = false, remove = false;
                ssize_t n;

                n = recvmsg(s->notify_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n < 0)
                        return;
                buf[n] = '\0';
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                                n_fds = (int) ((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                                memcpy(fds, CMSG_DATA(c), (size_t) n_fds * sizeof(int));
                        }
                for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
                        if (streq(line, "READY=1")) {
                                s->ready = true;
                                write_state(s);
                        } else if (streq(line, "WATCHDOG=1"))
                                on_watchdog_ping(s);
                        else if (strncmp(line, "STATUS=", 7) == 0)
                                s->status_recovering = strncmp(line + 7, "Recovering", 10) == 0;
                        else if (streq(line, "FDSTORE=1"))
                                fdstore = true;
                        else if (streq(line, "FDSTOREREMOVE=1"))
                                remove = true;
                        else if (strncmp(line, "FDNAME=", 7) == 0)
                                name = line + 7;
                }
                if (remove && name)
                        store_remove(s, name);
                for (int i = 0; i < n_fds; i++) {
                        if (fdstore)
                                store_add(s, name ?: "stored", fds[i]);
                        else
                                safe_close(fds[i]);
                }
        }
}

static char *preload_value(void) {
        const char *extra = KFDEMU_PRELOAD_EXTRA, *old = getenv("LD_PRELOAD");
        char *v;

        if (asprintf(&v, "%s%s%s%s%s", extra, extra[0] ? " " : "", KFDEMU_LIBRARY_PATH, old ? " " : "",
                     old ?: "") < 0)
                return NULL;
        return v;
}

/* svmd reads DIR/svmd.conf: a copy of --config that tests may rewrite, or nothing (defaults). */
static int install_config(const char *dir, char **ret_path) {
        _cleanup_free_ char *path = NULL, *cmd = NULL;

        if (asprintf(&path, "%s/svmd.conf", dir) < 0)
                return -ENOMEM;
        if (arg_config) {
                _cleanup_fclose_ FILE *in = fopen(arg_config, "re"), *out = fopen(path, "we");
                char buf[4096];
                size_t n;

                if (!in || !out)
                        return negative_errno();
                while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
                        if (fwrite(buf, 1, n, out) != n)
                                return -EIO;
        }
        *ret_path = TAKE_PTR(path);
        return 0;
}

static int start_svmd(Service *s) {
        _cleanup_free_ char *bus_arg = NULL, *rt_arg = NULL, *conf_arg = NULL, *preload = NULL, *names = NULL;
        size_t len = 0;
        pid_t pid;

        preload = preload_value();
        if (asprintf(&bus_arg, "--bus=%s", s->address) < 0 || asprintf(&rt_arg, "--runtime-dir=%s/run", s->dir) < 0 ||
            asprintf(&conf_arg, "--config=%s", s->config) < 0 || !preload)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_fds; i++)
                len += strlen(s->names[i]) + 1;
        names = calloc(len + 1, 1);
        if (!names)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_fds; i++) {
                if (i > 0)
                        strcat(names, ":");
                strcat(names, s->names[i]);
        }

        pid = fork();
        if (pid < 0)
                return negative_errno();
        if (pid == 0) {
                char buf[32], *level_arg = NULL;

                /* The stored fds become 3, 4, …: each moved into place (dup2 clears close-on-exec); a
                 * stored fd sitting where another goes is first moved out of the way (close-on-exec).
                 * Every old copy is closed, so this needs n + 1 fds, not 2n (10^4 stored fds fit
                 * RLIMIT_NOFILE 20000), and nothing extra leaks into svmd. */
                struct rlimit rl;
                size_t *where; /* fd → index + 1 */

                if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                        _exit(126);
                where = calloc((size_t) rl.rlim_cur + 1, sizeof(size_t));
                if (!where)
                        _exit(126);
                for (size_t i = 0; i < s->n_fds; i++)
                        where[s->fds[i]] = i + 1;
                for (size_t i = 0; i < s->n_fds; i++) {
                        int target = (int) (3 + i);
                        size_t j;

                        if (s->fds[i] == target) {
                                if (fcntl(target, F_SETFD, 0) < 0)
                                        _exit(126);
                                continue;
                        }
                        j = where[target];
                        if (j > 0) {
                                int moved = fcntl(target, F_DUPFD_CLOEXEC, (int) (3 + s->n_fds));
                                if (moved < 0 || (rlim_t) moved > rl.rlim_cur)
                                        _exit(126);
                                close(target);
                                where[moved] = j;
                                s->fds[j - 1] = moved;
                        }
                        if (dup2(s->fds[i], target) < 0)
                                _exit(126);
                        where[s->fds[i]] = 0;
                        close(s->fds[i]);
                        s->fds[i] = target;
                        where[target] = i + 1;
                }
                if (s->n_fds > 0) {
                        snprintf(buf, sizeof(buf), "%zu", s->n_fds);
                        setenv("LISTEN_FDS", buf, 1);
                        snprintf(buf, sizeof(buf), "%d", (int) getpid());
                        setenv("LISTEN_PID", buf, 1);
                        setenv("LISTEN_FDNAMES", names, 1);
                }
                redirect_daemon_output();
                if (getenv("SVMD_HARNESS_WATCHDOG_USEC")) {
                        snprintf(buf, sizeof(buf), "%d", (int) getpid());
                        setenv("WATCHDOG_USEC", getenv("SVMD_HARNESS_WATCHDOG_USEC"), 1);
                        setenv("WATCHDOG_PID", buf, 1);
                }
                setenv("NOTIFY_SOCKET", s->notify_path, 1);
                setenv("KFDEMU_DIR", s->dir, 1);
                setenv("LD_PRELOAD", preload, 1);
                /* Benchmarks measure svmd at its production log level: SVMD_HARNESS_LOG_LEVEL=info. */
                if (getenv("SVMD_HARNESS_LOG_LEVEL") && asprintf(&level_arg, "--log-level=%s",
                                                                 getenv("SVMD_HARNESS_LOG_LEVEL")) < 0)
                        _exit(127);
                execl(arg_svmd, "svmd", bus_arg, rt_arg, conf_arg, level_arg ?: "--log-level=debug", (char *) NULL);
                fprintf(stderr, "svmd-harness: executing %s failed: %m\n", arg_svmd);
                _exit(127);
        }
        s->pid = pid;
        s->ready = false;
        s->starts++;
        s->wd_before_ready = s->wd_total = s->wd_recovering = 0;
        s->wd_longest_usec = 0;
        s->status_recovering = false;
        write_state(s);
        write_watchdog(s);
        return 0;
}

static int wait_ready(Service *s) {
        time_t deadline = time(NULL) + READY_TIMEOUT_SEC;

        while (time(NULL) < deadline) {
                struct pollfd p = { .fd = s->notify_fd, .events = POLLIN };
                int status;

                if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
                        fprintf(stderr, "svmd-harness: svmd exited before it was ready (status %d)\n",
                                WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
                        s->pid = 0;
                        return -ECHILD;
                }
                if (poll(&p, 1, 100) > 0)
                        handle_notify(s);
                if (s->ready)
                        return 0;
        }
        fprintf(stderr, "svmd-harness: svmd did not report READY=1 within %d s\n", READY_TIMEOUT_SEC);
        return -ETIMEDOUT;
}

/*
 * `systemctl restart svmd`: stop it (SIGTERM, as KillSignal=), keep the fd store and the runtime
 * directory (FileDescriptorStorePreserve=restart, RuntimeDirectoryPreserve=restart), start it again
 * and wait for READY=1. A stop that is not clean is reported, one that takes longer than
 * STOP_TIMEOUT_SEC ends with SIGKILL as TimeoutStopSec= does, and the start happens anyway.
 */
#define STOP_TIMEOUT_SEC 90       /* systemd's DefaultTimeoutStopSec= */

static int restart_svmd(Service *s) {
        if (s->pid > 0) {
                time_t deadline = time(NULL) + STOP_TIMEOUT_SEC;
                int status;

                /* Serve the notify socket meanwhile: svmd may still send FDSTORE messages. */
                (void) kill(s->pid, SIGTERM);
                while (waitpid(s->pid, &status, WNOHANG) != s->pid) {
                        struct pollfd p = { .fd = s->notify_fd, .events = POLLIN };

                        if (time(NULL) >= deadline) {
                                fprintf(stderr, "svmd-harness: svmd (pid %d) did not stop within %d s, killing it\n",
                                        (int) s->pid, STOP_TIMEOUT_SEC);
                                (void) kill(s->pid, SIGKILL);
                                (void) waitpid(s->pid, &status, 0);
                                break;
                        }
                        if (poll(&p, 1, 50) > 0)
                                handle_notify(s);
                }
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        fprintf(stderr, "svmd-harness: svmd (pid %d) did not stop cleanly for the restart\n",
                                (int) s->pid);
                s->pid = 0;
                s->ready = false;
                write_state(s);
        }
        handle_notify(s); /* FDSTORE messages sent while stopping are still queued */
        if (start_svmd(s) < 0)
                return -ECHILD;
        return wait_ready(s);
}

static void on_restart_signal(int sig) {
        restart_requested = 1;
}

/* While the command runs: serve notifications, and restart svmd when it dies (Restart=on-failure). */
static int supervise(Service *s, pid_t cmd_pid, int *ret_status) {
        for (;;) {
                struct pollfd p[2] = { { .fd = s->notify_fd, .events = POLLIN }, { .fd = -1, .events = POLLIN } };
                int status;

                if (s->pid > 0 && s->pidfd_pid != s->pid) {
                        s->pidfd = safe_close(s->pidfd);
                        s->pidfd = (int) syscall(SYS_pidfd_open, s->pid, 0);
                        s->pidfd_pid = s->pid;
                }
                p[1].fd = s->pid > 0 ? s->pidfd : -1;

                if (waitpid(cmd_pid, ret_status, WNOHANG) == cmd_pid)
                        return 0;
                if (restart_requested) {
                        restart_requested = 0;
                        if (s->notify_fd >= 0 && restart_svmd(s) < 0)
                                fprintf(stderr, "svmd-harness: restarting svmd failed\n");
                }
                if (s->notify_fd >= 0 && poll(p, 2, 50) > 0)
                        handle_notify(s);
                else if (s->notify_fd < 0) {
                        struct timespec ts = { 0, 50 * 1000 * 1000 };
                        nanosleep(&ts, NULL);
                }
                if (s->pid > 0 && waitpid(s->pid, &status, WNOHANG) == s->pid) {
                        bool failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;

                        fprintf(stderr, "svmd-harness: svmd (pid %d) %s %d\n", (int) s->pid,
                                WIFEXITED(status) ? "exited with status" : "was killed by signal",
                                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
                        s->pid = 0;
                        s->ready = false;
                        write_state(s);
                        if (!failed || s->starts > MAX_RESTARTS)
                                continue;
                        handle_notify(s); /* fds sent just before dying are still queued */
                        if (start_svmd(s) < 0)
                                return -ECHILD;
                }
        }
}

static int stop(pid_t pid, int sig, const char *what) {
        int status;

        if (pid <= 0)
                return 0;
        kill(pid, sig);
        if (waitpid(pid, &status, 0) != pid)
                return -ECHILD;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        if (sig == SIGKILL || (WIFSIGNALED(status) && WTERMSIG(status) == sig && sig != SIGTERM))
                return 0;
        fprintf(stderr, "svmd-harness: %s exited uncleanly (%s %d)\n", what,
                WIFEXITED(status) ? "status" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        return -EPROTO;
}

static void remove_tree(const char *dir) {
        pid_t pid = fork();
        if (pid == 0) {
                execlp("rm", "rm", "-rf", "--", dir, (char *) NULL);
                _exit(127);
        }
        if (pid > 0)
                waitpid(pid, NULL, 0);
}

/* A small tmpfs as svmd's runtime directory, in a mount namespace that dies with the harness. */
static int mount_runtime_tmpfs(const char *run) {
        char options[128];

        if (mkdir(run, 0755) < 0 && errno != EEXIST)
                return -errno;
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
                fprintf(stderr, "svmd-harness: a mount namespace of our own: %m\n");
                return -errno;
        }
        snprintf(options, sizeof(options), "size=%s,mode=0755", arg_runtime_tmpfs_size);
        if (mount("tmpfs", run, "tmpfs", MS_NOSUID | MS_NODEV, options) < 0) {
                fprintf(stderr, "svmd-harness: mounting a tmpfs (%s) on %s: %m\n", options, run);
                return -errno;
        }
        return 0;
}

static int read_state(const char *dir, int *ret_pid, int *ret_ready, unsigned *ret_starts) {
        char path[4096];
        _cleanup_fclose_ FILE *f = NULL;

        snprintf(path, sizeof(path), "%s/svmd.state", dir);
        f = fopen(path, "re");
        if (!f)
                return negative_errno();
        if (fscanf(f, "%d %d %u", ret_pid, ret_ready, ret_starts) != 3)
                return -EBADMSG;
        return 0;
}

/* svmd-harness restart [--dir DIR]: ask the harness of DIR to restart svmd, wait until it is ready. */
static int run_restart(int argc, char *argv[]) {
        const char *dir = getenv("KFDEMU_DIR");
        char path[4096];
        _cleanup_fclose_ FILE *f = NULL;
        int harness = 0, pid, ready;
        unsigned starts, now;

        if (argc == 3 && streq(argv[1], "--dir"))
                dir = argv[2];
        else if (argc == 2 && strncmp(argv[1], "--dir=", 6) == 0)
                dir = argv[1] + 6;
        else if (argc != 1) {
                fprintf(stderr, "Usage: svmd-harness restart [--dir DIR]\n");
                return 2;
        }
        if (!dir) {
                fprintf(stderr, "svmd-harness restart: no --dir and no $KFDEMU_DIR; run it inside svmd-harness\n");
                return 2;
        }
        snprintf(path, sizeof(path), "%s/harness.pid", dir);
        f = fopen(path, "re");
        if (!f || fscanf(f, "%d", &harness) != 1 || harness <= 0) {
                fprintf(stderr, "svmd-harness restart: %s names no harness: is svmd-harness running there?\n", path);
                return EXIT_FAILURE;
        }
        if (read_state(dir, &pid, &ready, &starts) < 0) {
                fprintf(stderr, "svmd-harness restart: cannot read %s/svmd.state\n", dir);
                return EXIT_FAILURE;
        }
        if (kill(harness, SIGUSR1) < 0) {
                fprintf(stderr, "svmd-harness restart: signalling the harness (pid %d): %m\n", harness);
                return EXIT_FAILURE;
        }
        for (unsigned i = 0; i < READY_TIMEOUT_SEC * 50; i++) {
                struct timespec ts = { 0, 20 * 1000 * 1000 };

                if (read_state(dir, &pid, &ready, &now) >= 0 && now > starts && ready && pid > 0) {
                        printf("%d\n", pid);
                        return EXIT_SUCCESS;
                }
                if (kill(harness, 0) < 0 && errno == ESRCH) {
                        fprintf(stderr, "svmd-harness restart: the harness exited\n");
                        return EXIT_FAILURE;
                }
                nanosleep(&ts, NULL);
        }
        fprintf(stderr, "svmd-harness restart: svmd was not ready again within %d s\n", READY_TIMEOUT_SEC);
        return EXIT_FAILURE;
}

int main(int argc, char *argv[]) {
        _cleanup_free_ char *address = NULL, *notify_path = NULL, *scratch = NULL, *run = NULL, *config = NULL,
                *harness_pid = NULL, *pid_file = NULL;
        char tmpl[] = "/dev/shm/svmd-test.XXXXXX";
        Service svc = { .notify_fd = -EBADF, .pidfd = -EBADF };
        pid_t bus_pid = 0, cmd_pid;
        int idx, r, status, ret = EXIT_FAILURE;
        const char *dir;
        char pidbuf[32];

        if (argc >= 2 && streq(argv[1], "restart"))
                return run_restart(argc - 1, argv + 1);
        idx = parse_argv(argc, argv);
        if (idx < 0)
                return 2;

        if (arg_dir) {
                if (mkdir(arg_dir, 0755) < 0 && errno != EEXIST) {
                        fprintf(stderr, "svmd-harness: creating %s failed: %m\n", arg_dir);
                        return EXIT_FAILURE;
                }
                dir = arg_dir;
        } else {
                if (!mkdtemp(tmpl)) {
                        fprintf(stderr, "svmd-harness: mkdtemp failed: %m\n");
                        return EXIT_FAILURE;
                }
                dir = tmpl;
        }
        /* Clients of other uids (tests with setpriv) must reach the sockets inside. */
        (void) chmod(dir, 0755);

        if (asprintf(&scratch, "%s/scratch", dir) < 0 || asprintf(&run, "%s/run", dir) < 0)
                goto finish;
        (void) mkdir(scratch, 0777);
        (void) chmod(scratch, 01777);

        if (arg_runtime_tmpfs_size) {
                r = mount_runtime_tmpfs(run);
                if (r < 0)
                        goto finish;
        }

        if (arg_daemon_log ? !streq(arg_daemon_log, "-") : isatty(STDERR_FILENO)) {
                if (arg_daemon_log)
                        daemon_log_path = strdup(arg_daemon_log);
                else if (asprintf(&daemon_log_path, "%s/svmd.log", dir) < 0)
                        daemon_log_path = NULL;
                if (!daemon_log_path)
                        goto finish;
                fprintf(stderr, "svmd-harness: svmd's log goes to %s (tail -f it)\n", daemon_log_path);
        }
        snprintf(pidbuf, sizeof(pidbuf), "%d\n", (int) getpid());
        if (asprintf(&harness_pid, "%s/harness.pid", dir) < 0 || write_file(harness_pid, pidbuf) < 0)
                goto finish;
        if (sigaction(SIGUSR1, &(struct sigaction) { .sa_handler = on_restart_signal }, NULL) < 0)
                goto finish;

        r = setup_emulator(dir);
        if (r < 0)
                goto finish;
        r = install_config(dir, &config);
        if (r < 0) {
                fprintf(stderr, "svmd-harness: copying %s failed: %s\n", arg_config, strerror(-r));
                goto finish;
        }
        r = start_bus(dir, &bus_pid, &address);
        if (r < 0) {
                fprintf(stderr, "svmd-harness: starting dbus-daemon failed: %s\n", strerror(-r));
                goto finish;
        }

        svc.dir = dir;
        svc.address = address;
        svc.config = config;
        if (!arg_no_daemon) {
                svc.notify_fd = make_notify_socket(dir, &notify_path);
                if (svc.notify_fd < 0) {
                        fprintf(stderr, "svmd-harness: notify socket: %s\n", strerror(-svc.notify_fd));
                        goto finish;
                }
                svc.notify_path = notify_path;
                if (start_svmd(&svc) < 0 || wait_ready(&svc) < 0)
                        goto finish;
        }

        snprintf(pidbuf, sizeof(pidbuf), "%d", (int) svc.pid);
        if (asprintf(&pid_file, "%s/svmd.pid", dir) < 0)
                goto finish;
        {
                const char *values[] = { address, run, pidbuf, pid_file, daemon_log_path ?: "", dir,
                                         KFDEMU_LIBRARY_PATH, scratch, config };

                _Static_assert(ELEMENTSOF(values) == ELEMENTSOF(exported_vars), "one value per variable");
                for (size_t i = 0; i < ELEMENTSOF(exported_vars); i++)
                        if (setenv(exported_vars[i].name, values[i], 1) < 0)
                                goto finish;
        }

        cmd_pid = fork();
        if (cmd_pid < 0)
                goto finish;
        if (cmd_pid == 0) {
                if (arg_emulate_command) {
                        char *preload = preload_value();
                        if (!preload)
                                _exit(127);
                        setenv("LD_PRELOAD", preload, 1);
                }
                execvp(argv[idx], argv + idx);
                fprintf(stderr, "svmd-harness: executing %s failed: %m\n", argv[idx]);
                _exit(127);
        }
        if (supervise(&svc, cmd_pid, &status) < 0)
                goto finish;
        ret = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

finish:
        if (svc.pid > 0 && stop(svc.pid, SIGTERM, "svmd") < 0 && ret == EXIT_SUCCESS)
                ret = EXIT_FAILURE;
        (void) stop(bus_pid, SIGTERM, "dbus-daemon");
        for (size_t i = 0; i < svc.n_fds; i++) {
                safe_close(svc.fds[i]);
                free(svc.names[i]);
        }
        free(svc.fds);
        free(svc.names);
        safe_close(svc.notify_fd);
        if (harness_pid)
                (void) unlink(harness_pid);
        if (arg_runtime_tmpfs_size)
                (void) umount2(run, MNT_DETACH);
        if (!arg_keep && !arg_dir)
                remove_tree(dir);
        else
                fprintf(stderr, "svmd-harness: state kept in %s\n", dir);
        return ret;
}
