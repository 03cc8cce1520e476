/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * svmd-bench: what svmd costs, as ratios against baselines measured in the
 * same run (docs/benchmarks.md, "Targets"). It measures and
 * never asserts; the exit status only says whether every measurement ran.
 *
 *   svmd-harness --topology tests/kfd-emu/topologies/mi300x-8.json \
 *                --config tests/bench/bench.conf --emulate-command -- \
 *           svmd-bench [--quick] [--json FILE] [--only SECTIONS] [--scale-max N]
 *
 * It runs on the emulated node itself (--emulate-command), so the "in-process"
 * baseline opens /dev/kfd and issues the same KFD ioctls svmd would, through
 * kfd/kfd-ioctl.h. Variants of one case run interleaved in blocks (A B A B …),
 * every variant is warmed up first, and each row prints p50, p99 and the
 * number of samples, with the ratio to the case's baseline (its first
 * variant).
 *
 * Sections: floor (AF_UNIX, sd-bus p2p, sd-bus via dbus-daemon and dbus-broker,
 * svmd's null methods), ops (Allocate+Free per size and domain,
 * Allocate+Map+Free, Map/Unmap to N GPUs, Export, Share+Attach), commit,
 * concurrency, isolation (another tenant's disconnect, connections, Commits and
 * load against a victim's latency), restart, scale.
 *
 * Timer slack: the emulator's `realistic` profile sleeps for what an ioctl
 * costs. With the default 50 µs timer slack every such sleep overshoots by up
 * to 50 µs, which real ioctls do not; so the bench sets the slack of itself,
 * of svmd and of the harness (which starts svmd again after a crash) to 1 ns,
 * unless --keep-timer-slack is given.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-id128.h>

#include "emu-arena.h"
#include "kfd-device.h"
#include "kfd-ioctl.h"
#include "svmd-protocol.h"
#include "svmd/svmd.h"

extern char **environ;

#define SVMD_MAX_COMMIT_OPS_BENCH 1024
#define KiB UINT64_C(1024)
#define MiB (KiB * 1024)
#define GiB (MiB * 1024)

/* ---- options ---- */

static bool arg_quick;
static const char *arg_json;
static const char *arg_only;
static uint64_t arg_scale_max;
static uint64_t arg_iso_ranges, arg_iso_connections;
static bool arg_keep_slack;
static const char *arg_ctl = KFDEMU_CTL_PATH;

static bool section_enabled(const char *name) {
        const char *p;
        size_t n = strlen(name);

        if (!arg_only)
                return true;
        for (p = arg_only; (p = strstr(p, name)); p += n)
                if ((p == arg_only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
                        return true;
        return false;
}

/* ---- time and statistics ---- */

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

typedef struct Series {
        uint64_t *v;
        size_t n, cap;
} Series;

static void series_add(Series *s, uint64_t ns) {
        if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 256;
                s->v = realloc(s->v, s->cap * sizeof(uint64_t));
                if (!s->v)
                        abort();
        }
        s->v[s->n++] = ns;
}

static void series_reset(Series *s) {
        s->n = 0;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

typedef struct Stats {
        size_t n;
        double p50, p99, mean, min, max;      /* µs */
} Stats;

static Stats series_stats(Series *s) {
        Stats st = { .n = s->n };
        double sum = 0;

        if (s->n == 0)
                return st;
        qsort(s->v, s->n, sizeof(uint64_t), cmp_u64);
        for (size_t i = 0; i < s->n; i++)
                sum += (double) s->v[i];
        st.mean = sum / (double) s->n / 1000.0;
        st.min = (double) s->v[0] / 1000.0;
        st.max = (double) s->v[s->n - 1] / 1000.0;
        st.p50 = (double) s->v[(s->n - 1) / 2] / 1000.0;
        size_t k = (size_t) ceil(0.99 * (double) s->n);
        st.p99 = (double) s->v[k > 0 ? k - 1 : 0] / 1000.0;
        return st;
}

/* ---- output ---- */

static json_t *j_results, *j_targets, *j_info;
static const char *cur_profile = "none";
static int failures;

static void print_header(const char *title) {
        printf("\n== %s ==\n", title);
        printf("%-40s %-22s %8s %11s %11s %8s %8s\n", "case", "variant", "n", "p50 µs", "p99 µs", "×p50", "×p99");
}

static json_t *emit_row(const char *section, const char *casename, const char *variant, json_t *params, Stats st,
                        const Stats *base, const char *base_name) {
        json_t *o;
        char r50[16] = "", r99[16] = "";

        if (base && base->p50 > 0) {
                snprintf(r50, sizeof(r50), "%.3f", st.p50 / base->p50);
                snprintf(r99, sizeof(r99), "%.3f", st.p99 / base->p99);
        }
        printf("%-40s %-22s %8zu %11.2f %11.2f %8s %8s\n", casename, variant, st.n, st.p50, st.p99, r50, r99);
        fflush(stdout);

        o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:f,s:f,s:f,s:f,s:f}", "section", section, "case", casename, "variant",
                      variant, "profile", cur_profile, "n", (json_int_t) st.n, "p50_us", st.p50, "p99_us", st.p99,
                      "mean_us", st.mean, "min_us", st.min, "max_us", st.max);
        if (params)
                json_object_set_new(o, "params", params);
        if (base && base->p50 > 0) {
                json_object_set_new(o, "baseline", json_string(base_name));
                json_object_set_new(o, "ratio_p50", json_real(st.p50 / base->p50));
                json_object_set_new(o, "ratio_p99", json_real(st.p99 / base->p99));
                json_object_set_new(o, "delta_p50_us", json_real(st.p50 - base->p50));
        }
        json_array_append_new(j_results, o);
        return o;
}

/* A target of docs/benchmarks.md: measured value, how it compares, met or not. */
static void emit_target(const char *what, const char *against, double value, const char *op, double limit,
                        const char *unit, const char *note) {
        bool met = value >= 0 && (streq(op, "<=") ? value <= limit : value >= limit);

        json_array_append_new(j_targets, json_pack("{s:s,s:s,s:f,s:s,s:f,s:s,s:b,s:s}", "what", what, "against",
                                                   against, "value", value, "op", op, "limit", limit, "unit", unit,
                                                   "met", met, "note", note ?: ""));
}

/* ---- interleaved runner ---- */

/* One sample: returns the number of timings written to out[] (1 or 2), <0 on failure. */
typedef int (*SampleFunc)(void *ud, uint64_t out[2]);

typedef struct Variant {
        const char *name;
        SampleFunc fn;
        void *ud;
        Series s[2];
} Variant;

/* Run variants interleaved in blocks of `block` samples each until each has `samples`. */
static int run_interleaved(Variant *v, size_t nv, size_t samples, size_t block, size_t warmup) {
        uint64_t out[2];

        for (size_t i = 0; i < nv; i++) {
                series_reset(&v[i].s[0]);
                series_reset(&v[i].s[1]);
                for (size_t w = 0; w < warmup; w++)
                        if (v[i].fn(v[i].ud, out) < 0)
                                return -EIO;
        }
        if (block == 0)
                block = 1;
        for (size_t done = 0; done < samples;) {
                size_t b = MIN(block, samples - done);
                for (size_t i = 0; i < nv; i++)
                        for (size_t k = 0; k < b; k++) {
                                int n = v[i].fn(v[i].ud, out);
                                if (n < 0)
                                        return n;
                                series_add(&v[i].s[0], out[0]);
                                if (n > 1)
                                        series_add(&v[i].s[1], out[1]);
                        }
                done += b;
        }
        return 0;
}

/* Print and record: variant 0 is the baseline; returns stats of each variant in st[]. */
static void report(const char *section, const char *casename, Variant *v, size_t nv, int series, json_t *params,
                   Stats *st) {
        Stats base = series_stats(&v[0].s[series]);

        for (size_t i = 0; i < nv; i++) {
                Stats s = i == 0 ? base : series_stats(&v[i].s[series]);
                if (st)
                        st[i] = s;
                emit_row(section, casename, v[i].name, params ? json_deep_copy(params) : NULL, s,
                         i == 0 ? NULL : &base, v[0].name);
        }
        json_decref(params);
}

/* ---- environment: svmd, emulator, helpers ---- */

static const char *env_or_die(const char *name) {
        const char *e = getenv(name);

        if (!e || !*e) {
                fprintf(stderr, "svmd-bench: $%s is not set; run me under svmd-harness --emulate-command.\n", name);
                exit(2);
        }
        return e;
}

/* The daemon's pid and readiness: the harness keeps DIR/svmd.state "<pid> <ready> <starts>". */
static int read_state(pid_t *ret_pid, int *ret_ready, unsigned *ret_starts, struct timespec *ret_mtime) {
        char path[4096];
        struct stat st;
        FILE *f;
        int pid = 0, ready = 0;
        unsigned starts = 0;

        snprintf(path, sizeof(path), "%s/svmd.state", env_or_die("KFDEMU_DIR"));
        f = fopen(path, "re");
        if (!f)
                return -errno;
        if (fstat(fileno(f), &st) < 0 || fscanf(f, "%d %d %u", &pid, &ready, &starts) != 3) {
                fclose(f);
                return -EIO;
        }
        fclose(f);
        *ret_pid = pid;
        if (ret_ready)
                *ret_ready = ready;
        if (ret_starts)
                *ret_starts = starts;
        if (ret_mtime)
                *ret_mtime = st.st_mtim;
        return 0;
}

static pid_t svmd_pid(void) {
        pid_t pid;

        if (read_state(&pid, NULL, NULL, NULL) < 0)
                return (pid_t) atoi(env_or_die("SVMD_PID"));
        return pid;
}

/* Of every thread: svmd's kernel workers sleep in the emulated ioctls too (/proc/PID/timerslack_ns
 * is the main thread's only). */
static void set_timer_slack(pid_t pid, const char *who) {
        char path[64];
        struct dirent *de;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/task", (int) pid);
        d = opendir(path);
        if (!d) {
                fprintf(stderr, "svmd-bench: setting the timer slack of %s failed: %m\n", who);
                return;
        }
        while ((de = readdir(d))) {
                FILE *f;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "/proc/%.20s/timerslack_ns", de->d_name);
                f = fopen(path, "we");
                if (!f || fputs("1\n", f) < 0 || fclose(f) != 0)
                        fprintf(stderr, "svmd-bench: setting the timer slack of %s failed: %m\n", who);
        }
        closedir(d);
}

/* "/proc/PID/status" fields in kB. */
static long proc_status_kb(pid_t pid, const char *field) {
        char path[64], line[256];
        size_t n = strlen(field);
        long v = -1;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, field, n) == 0 && line[n] == ':') {
                        v = strtol(line + n + 1, NULL, 10);
                        break;
                }
        fclose(f);
        return v;
}

/* utime+stime of pid in µs. */
static double proc_cpu_us(pid_t pid) {
        char path[64], buf[2048], *p;
        unsigned long long ut = 0, stt = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return -1;
        if (!fgets(buf, sizeof(buf), f)) {
                fclose(f);
                return -1;
        }
        fclose(f);
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
                return -1;
        return (double) (ut + stt) * 1e6 / (double) sysconf(_SC_CLK_TCK);
}

/* Environment for helpers that must not run on the emulator (kfdemu-ctl, dbus-broker). */
static char **env_without_preload(void) {
        size_t n = 0, k = 0;
        char **e;

        while (environ[n])
                n++;
        e = calloc(n + 1, sizeof(char *));
        if (!e)
                abort();
        for (size_t i = 0; i < n; i++)
                if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
                        e[k++] = environ[i];
        return e;
}

/* Run kfdemu-ctl ARGS; its stdout in *ret_out (may be NULL). */
static int run_ctl(char **ret_out, const char *a1, const char *a2) {
        const char *argv[] = { arg_ctl, a1, a2, NULL };
        posix_spawn_file_actions_t fa;
        char **env = env_without_preload();
        int pipefd[2], status;
        char *buf = NULL;
        size_t len = 0, cap = 0;
        pid_t pid;
        ssize_t n;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
        if (posix_spawn(&pid, arg_ctl, &fa, NULL, (char *const *) argv, env) != 0) {
                posix_spawn_file_actions_destroy(&fa);
                free(env);
                close(pipefd[0]);
                close(pipefd[1]);
                return -errno;
        }
        posix_spawn_file_actions_destroy(&fa);
        free(env);
        close(pipefd[1]);
        for (;;) {
                if (len + 4096 + 1 > cap) {
                        cap = (cap + 4096) * 2;
                        buf = realloc(buf, cap);
                        if (!buf)
                                abort();
                }
                n = read(pipefd[0], buf + len, cap - len - 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t) n;
        }
        buf[len] = '\0';
        close(pipefd[0]);
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "svmd-bench: %s %s %s failed\n", arg_ctl, a1, a2 ?: "");
                free(buf);
                return -EIO;
        }
        if (ret_out)
                *ret_out = buf;
        else
                free(buf);
        return 0;
}

static int set_profile(const char *p) {
        int r = run_ctl(NULL, "profile", p);

        if (r >= 0)
                cur_profile = p;
        return r;
}

/* The emulator's node-wide ioctl counter of name (e.g. "MAP_MEMORY_TO_GPU"), or -1. */
static long long ioctl_count(const char *name) {
        char *out = NULL;
        json_t *root, *v;
        long long n = -1;

        if (run_ctl(&out, "dump", NULL) < 0)
                return -1;
        root = json_loads(out, 0, NULL);
        free(out);
        v = json_object_get(json_object_get(root, "ioctls"), name);
        if (json_is_integer(v))
                n = json_integer_value(v);
        json_decref(root);
        return n;
}

/* ---- the svmd side ---- */

static svmd_client *c_direct, *c_bus;
static svmd_gpu *gpus;
static size_t n_gpus;
static uint32_t gpu_ids[64];

static svmd_client *connect_svmd(uint32_t flags) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_client *c = NULL;
        int r = svmd_client_new(&c, NULL, NULL, flags, &e);

        if (r < 0) {
                fprintf(stderr, "svmd-bench: connecting to svmd failed: %s\n", e.message ?: strerror(-r));
                svmd_error_free(&e);
                return NULL;
        }
        return c;
}

static int check(int r, svmd_error *e, const char *what) {
        if (r < 0) {
                fprintf(stderr, "svmd-bench: %s failed: %s\n", what, e && e->message ? e->message : strerror(-r));
                svmd_error_free(e);
        }
        return r;
}

/* svmd sends its signals to every direct peer unasked; an application's event loop reads them
 * (svmd_client_process). Without that they pile up until sd-bus refuses with ENOBUFS. Not timed. */
static void drain(svmd_client *c) {
        if (c)
                while (svmd_client_process(c) > 0)
                        ;
}

/* ---- the in-process side ---- */

static KfdDevice *kdev;
static int kfd;
#define INPROC_VA       UINT64_C(0x600000000000)
#define INPROC_VA2      UINT64_C(0x680000000000)
#define INPROC_MAP_VA   UINT64_C(0x700000000000)

typedef enum Domain { D_VRAM, D_GTT, D_HOST, _D_MAX } Domain;
static const char *const domain_name[_D_MAX] = { "vram", "gtt", "host" };

/* A table, not an expression: the UAPI's WRITABLE is (1 << 31), which only a constant
 * initializer may fold without the shift overflowing an int at run time. */
static const uint32_t kfd_domain_flags_table[_D_MAX] = {
        [D_VRAM] = KFD_IOC_ALLOC_MEM_FLAGS_VRAM | KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE,
        [D_GTT] = KFD_IOC_ALLOC_MEM_FLAGS_GTT | KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE,
        [D_HOST] = KFD_IOC_ALLOC_MEM_FLAGS_USERPTR | KFD_IOC_ALLOC_MEM_FLAGS_WRITABLE,
};

static uint32_t kfd_domain_flags(Domain d) {
        return kfd_domain_flags_table[d];
}

/* What a direct client does: host memory is its own anonymous mapping, registered as USERPTR. */
static int inproc_alloc(Domain d, uint64_t size, uint64_t va, uint64_t *ret_handle, void **ret_host) {
        uint64_t userptr = 0;
        void *p = NULL;
        int r;

        *ret_host = NULL;
        if (d == D_HOST) {
                p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
                if (p == MAP_FAILED)
                        return -errno;
                va = userptr = (uint64_t) (uintptr_t) p;
        }
        r = kfd_alloc(kfd, va, size, gpu_ids[0], kfd_domain_flags(d), userptr, ret_handle, NULL);
        if (r < 0 && p)
                munmap(p, size);
        *ret_host = p;
        return r;
}

static int inproc_free(uint64_t handle, void *host, uint64_t size) {
        int r = kfd_free(kfd, handle);

        if (host)
                munmap(host, size);
        return r;
}

/* ---- floor: AF_UNIX, sd-bus p2p, sd-bus via a broker ---- */

static pid_t children[8];
static size_t n_children;

static void echo_unix_child(int fd) {
        char buf[64];

        for (;;) {
                size_t got = 0;
                while (got < sizeof(buf)) {
                        ssize_t n = read(fd, buf + got, sizeof(buf) - got);
                        if (n <= 0)
                                _exit(0);
                        got += (size_t) n;
                }
                if (write(fd, buf, sizeof(buf)) != (ssize_t) sizeof(buf))
                        _exit(0);
        }
}

static int method_null(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable echo_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("Null", "", "", method_null, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

/* An sd-bus server: on fd (p2p), or a bus client on address owning name. */
static _noreturn_ void echo_bus_child(int fd, const char *address, const char *name, int ready_fd) {
        sd_bus *bus = NULL;
        sd_id128_t id;
        int r;

        r = sd_bus_new(&bus);
        if (r >= 0 && fd >= 0) {
                r = sd_bus_set_fd(bus, fd, fd);
                if (r >= 0)
                        r = sd_id128_randomize(&id);
                if (r >= 0)
                        r = sd_bus_set_server(bus, 1, id);
        } else if (r >= 0) {
                r = sd_bus_set_address(bus, address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(bus, 1);
        }
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r >= 0)
                r = sd_bus_add_object_vtable(bus, NULL, "/bench", "org.svmd1.Bench", echo_vtable, NULL);
        if (r >= 0 && name)
                r = sd_bus_request_name(bus, name, 0);
        if (r < 0) {
                fprintf(stderr, "svmd-bench: echo server: %s\n", strerror(-r));
                _exit(1);
        }
        if (ready_fd >= 0) {
                (void) !write(ready_fd, "R", 1);
                close(ready_fd);
        }
        for (;;) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        _exit(0);
                if (r > 0)
                        continue;
                if (sd_bus_wait(bus, UINT64_MAX) < 0)
                        _exit(0);
        }
}

static int wait_ready_fd(int fd, int timeout_ms) {
        char c;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, timeout_ms);

        r = r > 0 && read(fd, &c, 1) == 1 ? 0 : -ETIMEDOUT;
        close(fd);
        return r;
}

static pid_t spawn_child(void) {
        pid_t pid = fork();

        if (pid > 0 && n_children < ELEMENTSOF(children))
                children[n_children++] = pid;
        return pid;
}

typedef struct UnixPing {
        int fd;
} UnixPing;

static int sample_unix(void *ud, uint64_t out[2]) {
        UnixPing *u = ud;
        char buf[64] = { 1 };
        uint64_t t = now_ns();
        size_t got = 0;

        if (write(u->fd, buf, sizeof(buf)) != (ssize_t) sizeof(buf))
                return -EIO;
        while (got < sizeof(buf)) {
                ssize_t n = read(u->fd, buf + got, sizeof(buf) - got);
                if (n <= 0)
                        return -EIO;
                got += (size_t) n;
        }
        out[0] = now_ns() - t;
        return 1;
}

typedef struct BusCall {
        sd_bus *bus;
        const char *dest, *path, *iface, *member;
} BusCall;

static int sample_bus_call(void *ud, uint64_t out[2]) {
        BusCall *b = ud;
        sd_bus_message *reply = NULL;
        uint64_t t = now_ns();
        int r = sd_bus_call_method(b->bus, b->dest, b->path, b->iface, b->member, NULL, &reply, NULL);

        out[0] = now_ns() - t;
        sd_bus_message_unref(reply);
        if (r < 0) {
                fprintf(stderr, "svmd-bench: %s %s.%s: %s\n", b->dest ?: "(p2p)", b->iface, b->member, strerror(-r));
                return r;
        }
        return 1;
}

static sd_bus *bus_connect(const char *address, bool bus_client) {
        sd_bus *bus = NULL;
        int r = sd_bus_new(&bus);

        if (r >= 0)
                r = sd_bus_set_address(bus, address);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, bus_client);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0) {
                fprintf(stderr, "svmd-bench: connecting to %s failed: %s\n", address, strerror(-r));
                sd_bus_unref(bus);
                return NULL;
        }
        return bus;
}

static sd_bus *bus_on_fd(int fd) {
        sd_bus *bus = NULL;
        int r = sd_bus_new(&bus);

        if (r >= 0)
                r = sd_bus_set_fd(bus, fd, fd);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r < 0) {
                sd_bus_unref(bus);
                return NULL;
        }
        return bus;
}

/* dbus-broker: its launcher wants socket activation, the journal's socket and a bus to find systemd
 * on. Give it a listening socket, a private /run/systemd with a journal socket nobody reads, and the
 * harness's dbus-daemon. */
static int start_broker(const char *scratch, char **ret_address, pid_t *ret_pid) {
        char sock[4096], conf[4096], *address;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int lfd, ready[2];
        FILE *f;
        pid_t pid;

        if (access("/usr/bin/dbus-broker-launch", X_OK) < 0 && access("/bin/dbus-broker-launch", X_OK) < 0)
                return -ENOENT;
        snprintf(conf, sizeof(conf), "%s/broker.conf", scratch);
        snprintf(sock, sizeof(sock), "%s/broker.sock", scratch);
        f = fopen(conf, "we");
        if (!f)
                return -errno;
        fputs("<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
              " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
              "<busconfig><type>session</type><auth>EXTERNAL</auth>\n"
              "<policy context=\"default\"><allow user=\"*\"/><allow own=\"*\"/>"
              "<allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/>"
              "<allow send_type=\"method_call\"/><allow receive_type=\"method_return\"/></policy></busconfig>\n", f);
        fclose(f);

        if (strlen(sock) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, sock);
        (void) unlink(sock);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0 || bind(lfd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(lfd, 64) < 0)
                return -errno;
        if (pipe2(ready, O_CLOEXEC) < 0)
                return -errno;

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                struct sockaddr_un ja = { .sun_family = AF_UNIX };
                char pidbuf[32], busaddr[4200];
                int jfd;

                if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                        _exit(126);
                (void) mkdir("/run/systemd", 0755);
                if (mount("tmpfs", "/run/systemd", "tmpfs", 0, "mode=0755") < 0 ||
                    mkdir("/run/systemd/journal", 0755) < 0)
                        _exit(126);
                strcpy(ja.sun_path, "/run/systemd/journal/socket");
                jfd = socket(AF_UNIX, SOCK_DGRAM, 0); /* kept open across exec: a sink for its log */
                if (jfd < 0 || bind(jfd, (struct sockaddr *) &ja, sizeof(ja)) < 0)
                        _exit(126);
                if (dup2(lfd, 3) < 0)
                        _exit(126);
                if (jfd == 3)
                        _exit(126);
                snprintf(pidbuf, sizeof(pidbuf), "%d", (int) getpid());
                setenv("LISTEN_FDS", "1", 1);
                setenv("LISTEN_PID", pidbuf, 1);
                snprintf(busaddr, sizeof(busaddr), "%s", getenv("SVMD_BUS_ADDRESS"));
                setenv("DBUS_SESSION_BUS_ADDRESS", busaddr, 1);
                unsetenv("LD_PRELOAD");
                int devnull = open("/dev/null", O_WRONLY);
                if (devnull >= 0)
                        dup2(devnull, STDERR_FILENO);
                execlp("dbus-broker-launch", "dbus-broker-launch", "--scope", "user", "--config-file", conf,
                       (char *) NULL);
                _exit(127);
        }
        close(lfd);
        close(ready[0]);
        close(ready[1]);
        if (asprintf(&address, "unix:path=%s", sock) < 0)
                return -ENOMEM;
        *ret_address = address;
        *ret_pid = pid;
        return 0;
}

static void section_floor(size_t samples) {
        const char *bus_address = env_or_die("SVMD_BUS_ADDRESS");
        char direct_address[4200], *broker_address = NULL;
        int sv[2], sb[2], ready[2];
        pid_t broker_pid = 0;
        Variant v[8] = {};
        size_t nv = 0;
        Stats st[8];
        sd_bus *p2p = NULL, *bus = NULL, *direct = NULL, *broker = NULL;
        UnixPing up;

        snprintf(direct_address, sizeof(direct_address), "unix:path=%s/io.socket", env_or_die("SVMD_RUNTIME_DIR"));

        /* raw AF_UNIX echo */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                goto fail;
        if (spawn_child() == 0) {
                close(sv[0]);
                echo_unix_child(sv[1]);
        }
        close(sv[1]);
        up.fd = sv[0];
        v[nv++] = (Variant) { .name = "raw-af-unix-64B", .fn = sample_unix, .ud = &up };

        /* sd-bus p2p echo */
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sb) < 0)
                goto fail;
        if (spawn_child() == 0) {
                close(sb[0]);
                echo_bus_child(sb[1], NULL, NULL, -1);
        }
        close(sb[1]);
        p2p = bus_on_fd(sb[0]);
        static BusCall p2p_call = { .path = "/bench", .iface = "org.svmd1.Bench", .member = "Null" };
        p2p_call.bus = p2p;
        v[nv++] = (Variant) { .name = "sdbus-p2p-echo", .fn = sample_bus_call, .ud = &p2p_call };

        /* svmd over the direct socket: Peer.Ping (sd-bus answers) and ListGpus (svmd answers) */
        direct = bus_connect(direct_address, false);
        static BusCall ping_direct = { .path = "/org/svmd1", .iface = "org.freedesktop.DBus.Peer", .member = "Ping" };
        static BusCall gpus_direct = { .path = "/org/svmd1", .iface = "org.svmd1.Manager", .member = "ListGpus" };
        ping_direct.bus = gpus_direct.bus = direct;
        v[nv++] = (Variant) { .name = "svmd-direct-Ping", .fn = sample_bus_call, .ud = &ping_direct };
        v[nv++] = (Variant) { .name = "svmd-direct-ListGpus", .fn = sample_bus_call, .ud = &gpus_direct };

        /* the bus: an echo server on dbus-daemon, and svmd's Ping */
        if (pipe2(ready, O_CLOEXEC) < 0)
                goto fail;
        if (spawn_child() == 0) {
                close(ready[0]);
                echo_bus_child(-1, bus_address, "org.svmd1.BenchEcho", ready[1]);
        }
        close(ready[1]);
        if (wait_ready_fd(ready[0], 10000) < 0)
                goto fail;
        bus = bus_connect(bus_address, true);
        static BusCall echo_bus = { .dest = "org.svmd1.BenchEcho", .path = "/bench", .iface = "org.svmd1.Bench",
                                    .member = "Null" };
        static BusCall ping_bus = { .dest = "org.svmd1", .path = "/org/svmd1", .iface = "org.freedesktop.DBus.Peer",
                                    .member = "Ping" };
        echo_bus.bus = ping_bus.bus = bus;
        v[nv++] = (Variant) { .name = "sdbus-dbus-daemon-echo", .fn = sample_bus_call, .ud = &echo_bus };
        v[nv++] = (Variant) { .name = "svmd-dbus-daemon-Ping", .fn = sample_bus_call, .ud = &ping_bus };

        /* dbus-broker, where installed */
        if (start_broker(env_or_die("SVMD_TEST_DIR"), &broker_address, &broker_pid) >= 0) {
                if (pipe2(ready, O_CLOEXEC) >= 0) {
                        if (spawn_child() == 0) {
                                close(ready[0]);
                                echo_bus_child(-1, broker_address, "org.svmd1.BenchEchoBroker", ready[1]);
                        }
                        close(ready[1]);
                        if (wait_ready_fd(ready[0], 10000) >= 0)
                                broker = bus_connect(broker_address, true);
                }
        }
        static BusCall echo_broker = { .dest = "org.svmd1.BenchEchoBroker", .path = "/bench", .iface = "org.svmd1.Bench",
                                       .member = "Null" };
        if (broker) {
                echo_broker.bus = broker;
                v[nv++] = (Variant) { .name = "sdbus-dbus-broker-echo", .fn = sample_bus_call, .ud = &echo_broker };
        } else
                printf("(dbus-broker not available: its row is missing)\n");

        if (!p2p || !direct || !bus)
                goto fail;

        print_header("floor: null round trips (64 B AF_UNIX echo, sd-bus method without arguments)");
        if (run_interleaved(v, nv, samples, 100, samples / 10 + 10) < 0)
                goto fail;
        report("floor", "null round trip", v, nv, 0, NULL, st);
        emit_target("null method on the direct connection (Peer.Ping)", "raw AF_UNIX round trip", st[2].p50 / st[0].p50,
                    "<=", 2.5, "x", NULL);
        emit_target("svmd method on the direct connection (ListGpus)", "raw AF_UNIX round trip", st[3].p50 / st[0].p50,
                    "<=", 2.5, "x", "informational: ListGpus does work (8 GPUs, a struct array)");
        goto done;
fail:
        fprintf(stderr, "svmd-bench: the floor section failed\n");
        failures++;
done:
        for (size_t i = 0; i < nv; i++) {
                free(v[i].s[0].v);
                free(v[i].s[1].v);
        }
        sd_bus_flush_close_unref(p2p);
        sd_bus_flush_close_unref(direct);
        sd_bus_flush_close_unref(bus);
        sd_bus_flush_close_unref(broker);
        close(up.fd);
        for (size_t i = 0; i < n_children; i++) {
                kill(children[i], SIGTERM);
                waitpid(children[i], NULL, 0);
        }
        n_children = 0;
        if (broker_pid > 0) {
                kill(broker_pid, SIGTERM);
                waitpid(broker_pid, NULL, 0);
        }
        free(broker_address);
}

/* ---- ops ---- */

typedef struct AllocCase {
        Domain d;
        uint64_t size;
        svmd_client *c;
        bool map;               /* Allocate+Map(home)+Free */
} AllocCase;

static int sample_svmd_alloc_free(void *ud, uint64_t out[2]) {
        AllocCase *a = ud;
        svmd_allocate_options o = { .map = gpu_ids, .n_map = 1 };
        svmd_allocation al;
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t t = now_ns();
        int r;

        r = svmd_allocate(a->c, a->size, gpu_ids[0], domain_name[a->d], a->map ? &o : NULL, &al, &e);
        if (check(r, &e, "Allocate") < 0)
                return r;
        r = svmd_free(a->c, al.id, &e);
        if (check(r, &e, "Free") < 0)
                return r;
        out[0] = now_ns() - t;
        drain(a->c);
        return 1;
}

/*
 * Allocate+Free pipelined: each range's Free goes out as soon as its Allocate is answered, and up
 * to PIPELINE_DEPTH Allocates are in flight. One sample: PIPELINE_BATCH pairs, the time per pair.
 */
#define PIPELINE_DEPTH 4
#define PIPELINE_BATCH 16

typedef struct Pipeline {
        AllocCase *a;
        unsigned allocating, freeing, issued;
        int error;
} Pipeline;

static void pipeline_freed(svmd_client *c, int result, const svmd_error *error, void *userdata) {
        Pipeline *p = userdata;

        p->freeing--;
        if (result < 0 && p->error == 0) {
                fprintf(stderr, "svmd-bench: pipelined Free failed: %s\n", error ? error->message : strerror(-result));
                p->error = result;
        }
}

static void pipeline_allocated(svmd_client *c, int result, const svmd_allocation *al, const svmd_error *error,
                               void *userdata) {
        svmd_error e = SVMD_ERROR_NULL;
        Pipeline *p = userdata;
        int r;

        p->allocating--;
        if (result < 0) {
                if (p->error == 0)
                        fprintf(stderr, "svmd-bench: pipelined Allocate failed: %s\n",
                                error ? error->message : strerror(-result));
                p->error = result;
                return;
        }
        r = svmd_free_async(c, al->id, pipeline_freed, p, &e);
        if (check(r, &e, "svmd_free_async") < 0)
                p->error = r;
        else
                p->freeing++;
}

static int sample_svmd_pipelined(void *ud, uint64_t out[2]) {
        Pipeline p = { .a = ud };
        svmd_client *c = p.a->c;
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t t = now_ns();
        int r;

        while (p.error == 0 && (p.issued < PIPELINE_BATCH || p.allocating > 0 || p.freeing > 0)) {
                while (p.issued < PIPELINE_BATCH && p.allocating < PIPELINE_DEPTH) {
                        r = svmd_allocate_async(c, p.a->size, gpu_ids[0], domain_name[p.a->d], NULL,
                                                pipeline_allocated, &p, &e);
                        if (check(r, &e, "svmd_allocate_async") < 0)
                                return r;
                        p.allocating++;
                        p.issued++;
                }
                r = svmd_client_process(c);
                if (r < 0)
                        return r;
                if (r == 0) {
                        r = svmd_client_wait(c, 10 * 1000 * 1000);
                        if (r < 0)
                                return r;
                }
        }
        if (p.error < 0)
                return p.error;
        out[0] = (now_ns() - t) / PIPELINE_BATCH;
        return 1;
}

static int sample_inproc_alloc_free(void *ud, uint64_t out[2]) {
        AllocCase *a = ud;
        uint64_t t = now_ns(), h;
        uint32_t done;
        void *host;
        int r;

        r = inproc_alloc(a->d, a->size, INPROC_VA, &h, &host);
        if (r < 0) {
                fprintf(stderr, "svmd-bench: in-process ALLOC of %s: %s\n", domain_name[a->d], strerror(-r));
                return r;
        }
        if (a->map) {
                r = kfd_map(kfd, h, gpu_ids, 1, &done);
                if (r >= 0)
                        r = kfd_unmap(kfd, h, gpu_ids, 1, &done);
                if (r < 0)
                        return r;
        }
        r = inproc_free(h, host, a->size);
        if (r < 0)
                return r;
        out[0] = now_ns() - t;
        return 1;
}

static size_t samples_for(uint64_t size, bool realistic) {
        size_t s;

        if (size <= 64 * KiB)
                s = realistic ? 600 : 2000;
        else if (size <= 2 * MiB)
                s = realistic ? 300 : 1000;
        else if (size <= 64 * MiB)
                s = realistic ? 40 : 200;
        else
                s = realistic ? 8 : 30;
        if (arg_quick)
                s = MAX(s / 10, (size_t) 3);
        return s;
}

/*
 * What svmd adds to a call beyond the IPC round trip: half of a direct Allocate+Free less the
 * in-process ALLOC+FREE, less a null method on the same socket (Peer.Ping, which sd-bus answers
 * by itself). 64 KiB GTT under profile none; the three interleaved.
 */
static void alloc_work_per_call(void) {
        AllocCase in = { D_GTT, 64 * KiB, NULL, false }, dir = { D_GTT, 64 * KiB, c_direct, false };
        BusCall ping = { .path = "/org/svmd1", .iface = "org.freedesktop.DBus.Peer", .member = "Ping" };
        Variant v[3] = {
                { .name = "in-process", .fn = sample_inproc_alloc_free, .ud = &in },
                { .name = "svmd-direct", .fn = sample_svmd_alloc_free, .ud = &dir },
                { .name = "svmd-direct-Ping", .fn = sample_bus_call, .ud = &ping },
        };
        char address[4200];
        Stats st[3];
        double work;

        snprintf(address, sizeof(address), "unix:path=%s/io.socket", env_or_die("SVMD_RUNTIME_DIR"));
        ping.bus = c_direct ? bus_connect(address, false) : NULL;
        if (!ping.bus || run_interleaved(v, 3, samples_for(64 * KiB, false), 10, 5) < 0) {
                failures++;
                goto done;
        }
        report("alloc", "svmd work per call, gtt 64 KiB", v, 3, 0,
               json_pack("{s:s,s:I}", "domain", "gtt", "size", (json_int_t) (64 * KiB)), st);
        work = (st[1].p50 - st[0].p50) / 2 - st[2].p50;
        printf("%-40s %-22s %8s %11.2f\n", "svmd work per call beyond the round trip", "derived", "", work);
        emit_target("svmd work per call beyond the round trip",
                    "((svmd-direct Allocate+Free - in-process) / 2) - svmd-direct Peer.Ping, p50", work, "<=", 10, "µs",
                    "profile none, 64 KiB GTT");
done:
        sd_bus_flush_close_unref(ping.bus);
        for (int i = 0; i < 3; i++) {
                free(v[i].s[0].v);
                free(v[i].s[1].v);
        }
}

static void section_alloc(bool realistic) {
        static const uint64_t sizes[] = { 4 * KiB, 64 * KiB, 2 * MiB, 64 * MiB, 1 * GiB };
        char name[128];

        print_header(realistic ? "Allocate+Free, profile realistic" : "Allocate+Free, profile none");
        for (size_t si = 0; si < ELEMENTSOF(sizes); si++) {
                if (arg_quick && sizes[si] > 64 * MiB)
                        continue;
                for (Domain d = 0; d < _D_MAX; d++) {
                        AllocCase in = { d, sizes[si], NULL, false }, dir = { d, sizes[si], c_direct, false },
                                  bus = { d, sizes[si], c_bus, false };
                        Variant v[3] = {
                                { .name = "in-process", .fn = sample_inproc_alloc_free, .ud = &in },
                                { .name = "svmd-direct", .fn = sample_svmd_alloc_free, .ud = &dir },
                                { .name = "svmd-bus", .fn = sample_svmd_alloc_free, .ud = &bus },
                        };
                        size_t n = samples_for(sizes[si], realistic);
                        Stats st[3];

                        snprintf(name, sizeof(name), "Allocate+Free %s %" PRIu64 " KiB", domain_name[d],
                                 sizes[si] / KiB);
                        if (run_interleaved(v, 3, n, sizes[si] >= 64 * MiB ? 1 : 10, sizes[si] >= 64 * MiB ? 1 : 5) < 0) {
                                failures++;
                                continue;
                        }
                        report("alloc", name, v, 3, 0,
                               json_pack("{s:s,s:I}", "domain", domain_name[d], "size", (json_int_t) sizes[si]), st);
                        if (realistic && d == D_GTT && sizes[si] == 64 * KiB)
                                emit_target("Allocate+Free 64 KiB GTT, direct, realistic", "in-process ALLOC+FREE",
                                            st[1].p50 / st[0].p50, "<=", 1.5, "x", NULL);
                        if (realistic && d == D_VRAM && sizes[si] == 64 * KiB)
                                emit_target("Allocate+Free 64 KiB VRAM, direct, realistic", "in-process ALLOC+FREE",
                                            st[1].p50 / st[0].p50, "<=", 1.5, "x", NULL);
                        if (realistic && d == D_HOST && sizes[si] == 64 * KiB)
                                emit_target("Allocate+Free 64 KiB host, direct, realistic", "in-process mmap+ALLOC+FREE+munmap",
                                            st[1].p50 / st[0].p50, "<=", 1.5, "x", NULL);
                        for (int i = 0; i < 3; i++) {
                                free(v[i].s[0].v);
                                free(v[i].s[1].v);
                        }
                }
        }

        if (!realistic)
                alloc_work_per_call();

        /* Allocate+Free pipelined (libsvmd's async calls), 64 KiB GTT */
        {
                AllocCase in = { D_GTT, 64 * KiB, NULL, false }, dir = { D_GTT, 64 * KiB, c_direct, false };
                Variant v[3] = {
                        { .name = "in-process", .fn = sample_inproc_alloc_free, .ud = &in },
                        { .name = "svmd-direct", .fn = sample_svmd_alloc_free, .ud = &dir },
                        { .name = "svmd-pipelined", .fn = sample_svmd_pipelined, .ud = &dir },
                };
                Stats st[3];

                if (!c_direct || run_interleaved(v, 3, samples_for(64 * KiB, realistic) / 4, 5, 2) < 0)
                        failures++;
                else {
                        report("alloc", "Allocate+Free gtt 64 KiB, pipelined", v, 3, 0,
                               json_pack("{s:s,s:I,s:I}", "domain", "gtt", "size", (json_int_t) (64 * KiB), "depth",
                                         PIPELINE_DEPTH),
                               st);
                        if (realistic)
                                emit_target("Allocate+Free 64 KiB GTT, direct, pipelined, realistic",
                                            "in-process ALLOC+FREE", st[2].p50 / st[0].p50, "<=", 1.2, "x", NULL);
                }
                for (int i = 0; i < 3; i++) {
                        free(v[i].s[0].v);
                        free(v[i].s[1].v);
                }
        }

        /* Allocate(map = home)+Free vs ALLOC+MAP+UNMAP+FREE, 2 MiB VRAM */
        {
                AllocCase in = { D_VRAM, 2 * MiB, NULL, true }, dir = { D_VRAM, 2 * MiB, c_direct, true },
                          bus = { D_VRAM, 2 * MiB, c_bus, true };
                Variant v[3] = {
                        { .name = "in-process", .fn = sample_inproc_alloc_free, .ud = &in },
                        { .name = "svmd-direct", .fn = sample_svmd_alloc_free, .ud = &dir },
                        { .name = "svmd-bus", .fn = sample_svmd_alloc_free, .ud = &bus },
                };
                Stats st[3];

                if (run_interleaved(v, 3, samples_for(2 * MiB, realistic), 10, 5) < 0)
                        failures++;
                else {
                        report("alloc", "Allocate+Map+Free vram 2048 KiB", v, 3, 0,
                               json_pack("{s:s,s:I,s:I}", "domain", "vram", "size", (json_int_t) (2 * MiB), "gpus", 1), st);
                        if (realistic)
                                emit_target("Allocate+Map+Free 2 MiB VRAM, direct, realistic",
                                            "in-process ALLOC+MAP+UNMAP+FREE", st[1].p50 / st[0].p50, "<=", 1.15, "x", NULL);
                }
                for (int i = 0; i < 3; i++) {
                        free(v[i].s[0].v);
                        free(v[i].s[1].v);
                }
        }
}

/* A block from a libsvmd pool and its release: no round trip once the pool holds a chunk. */
typedef struct PoolCase {
        svmd_pool *pool;
        uint64_t size;
} PoolCase;

static int sample_pool_alloc_free(void *ud, uint64_t out[2]) {
        PoolCase *pc = ud;
        svmd_pool_block b;
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t t = now_ns();
        int r;

        r = svmd_pool_alloc(pc->pool, pc->size, 0, &b, &e);
        if (check(r, &e, "svmd_pool_alloc") < 0)
                return r;
        r = svmd_pool_dealloc(pc->pool, b.va, &e);
        if (check(r, &e, "svmd_pool_dealloc") < 0)
                return r;
        out[0] = now_ns() - t;
        return 1;
}

/* Pool blocks vs the in-process ALLOC+FREE pair and svmd's Allocate+Free, GTT. */
static void section_pool(bool realistic) {
        static const uint64_t sizes[] = { 4 * KiB, 64 * KiB };
        svmd_pool_options o = { .keep_bytes = UINT64_MAX };
        svmd_error e = SVMD_ERROR_NULL;
        svmd_pool *pool = NULL;
        svmd_pool_block warm;
        char name[128];
        int r;

        print_header(realistic ? "libsvmd pool, profile realistic" : "libsvmd pool, profile none");
        r = svmd_pool_new(&pool, c_direct, gpu_ids[0], "gtt", &o, &e);
        if (check(r, &e, "svmd_pool_new") < 0) {
                failures++;
                return;
        }
        /* One block stays out, so the chunk is there for every sample. */
        r = svmd_pool_alloc(pool, 4 * KiB, 0, &warm, &e);
        if (check(r, &e, "svmd_pool_alloc") < 0) {
                failures++;
                svmd_pool_free(pool);
                return;
        }
        for (size_t si = 0; si < ELEMENTSOF(sizes); si++) {
                AllocCase in = { D_GTT, sizes[si], NULL, false }, dir = { D_GTT, sizes[si], c_direct, false };
                PoolCase pc = { pool, sizes[si] };
                Variant v[3] = {
                        { .name = "in-process", .fn = sample_inproc_alloc_free, .ud = &in },
                        { .name = "svmd-direct", .fn = sample_svmd_alloc_free, .ud = &dir },
                        { .name = "pool", .fn = sample_pool_alloc_free, .ud = &pc },
                };
                Stats st[3];

                snprintf(name, sizeof(name), "pool block gtt %" PRIu64 " KiB", sizes[si] / KiB);
                if (run_interleaved(v, 3, samples_for(sizes[si], realistic), 10, 5) < 0) {
                        failures++;
                } else {
                        report("pool", name, v, 3, 0,
                               json_pack("{s:s,s:I}", "domain", "gtt", "size", (json_int_t) sizes[si]), st);
                        if (realistic && sizes[si] == 64 * KiB)
                                emit_target("pool block 64 KiB GTT vs in-process ALLOC+FREE, realistic",
                                            "in-process ALLOC+FREE", st[0].p50 / st[2].p50, ">=", 50, "x faster",
                                            NULL);
                }
                for (int i = 0; i < 3; i++) {
                        free(v[i].s[0].v);
                        free(v[i].s[1].v);
                }
        }
        svmd_pool_free(pool);
}

/* Map/Unmap to N GPUs of one 2 MiB VRAM range: timed Map in s[0], timed Unmap in s[1]. */
typedef struct MapCase {
        svmd_client *c;
        uint64_t id, handle;
        size_t n;
        bool separate;          /* in-process: N single-device ioctls */
} MapCase;

static int sample_svmd_map(void *ud, uint64_t out[2]) {
        MapCase *m = ud;
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t t = now_ns();
        int r;

        r = svmd_map(m->c, m->id, gpu_ids, m->n, NULL, &e);
        if (check(r, &e, "Map") < 0)
                return r;
        out[0] = now_ns() - t;
        t = now_ns();
        r = svmd_unmap(m->c, m->id, gpu_ids, m->n, &e);
        if (check(r, &e, "Unmap") < 0)
                return r;
        out[1] = now_ns() - t;
        drain(m->c);
        return 2;
}

static int sample_inproc_map(void *ud, uint64_t out[2]) {
        MapCase *m = ud;
        uint32_t done;
        uint64_t t = now_ns();
        int r = 0;

        if (m->separate)
                for (size_t i = 0; i < m->n && r >= 0; i++)
                        r = kfd_map(kfd, m->handle, &gpu_ids[i], 1, &done);
        else
                r = kfd_map(kfd, m->handle, gpu_ids, (uint32_t) m->n, &done);
        if (r < 0)
                return r;
        out[0] = now_ns() - t;
        t = now_ns();
        if (m->separate)
                for (size_t i = 0; i < m->n && r >= 0; i++)
                        r = kfd_unmap(kfd, m->handle, &gpu_ids[i], 1, &done);
        else
                r = kfd_unmap(kfd, m->handle, gpu_ids, (uint32_t) m->n, &done);
        if (r < 0)
                return r;
        out[1] = now_ns() - t;
        return 2;
}

static void section_map(bool realistic) {
        static const size_t ns[] = { 1, 2, 4, 8 };
        svmd_allocation a1, a2;
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t h;
        void *host;
        char name[128];

        if (check(svmd_allocate(c_direct, 2 * MiB, gpu_ids[0], "vram", NULL, &a1, &e), &e, "Allocate") < 0 ||
            check(svmd_allocate(c_bus, 2 * MiB, gpu_ids[0], "vram", NULL, &a2, &e), &e, "Allocate") < 0 ||
            inproc_alloc(D_VRAM, 2 * MiB, INPROC_MAP_VA, &h, &host) < 0) {
                failures++;
                return;
        }

        print_header(realistic ? "Map/Unmap 2 MiB VRAM to N GPUs, realistic" : "Map/Unmap 2 MiB VRAM to N GPUs, none");
        for (size_t i = 0; i < ELEMENTSOF(ns); i++) {
                if (ns[i] > n_gpus)
                        continue;
                MapCase in = { .handle = h, .n = ns[i] }, sep = { .handle = h, .n = ns[i], .separate = true },
                        dir = { .c = c_direct, .id = a1.id, .n = ns[i] }, bus = { .c = c_bus, .id = a2.id, .n = ns[i] };
                Variant v[4] = {
                        { .name = "in-process-1-ioctl", .fn = sample_inproc_map, .ud = &in },
                        { .name = "svmd-direct", .fn = sample_svmd_map, .ud = &dir },
                        { .name = "svmd-bus", .fn = sample_svmd_map, .ud = &bus },
                        { .name = "in-process-N-ioctls", .fn = sample_inproc_map, .ud = &sep },
                };
                size_t n = realistic ? 400 : 1000;
                Stats st[4];

                if (arg_quick)
                        n /= 10;
                if (run_interleaved(v, 4, n, 10, 5) < 0) {
                        failures++;
                        continue;
                }
                snprintf(name, sizeof(name), "Map to %zu GPUs", ns[i]);
                report("map", name, v, 4, 0, json_pack("{s:I,s:s}", "gpus", (json_int_t) ns[i], "op", "map"), st);
                if (realistic && ns[i] == 8)
                        emit_target("Map to 8 GPUs, direct, realistic", "one in-process MAP with 8 device ids",
                                    st[1].p50 / st[0].p50, "<=", 1.2, "x", NULL);
                if (!realistic && ns[i] == 8)
                        emit_target("Map to 8 GPUs, direct, none", "one in-process MAP with 8 device ids",
                                    st[1].p50 / st[0].p50, "<=", 1.2, "x", "informational: no ioctl latency, IPC only");
                snprintf(name, sizeof(name), "Unmap from %zu GPUs", ns[i]);
                report("map", name, v, 4, 1, json_pack("{s:I,s:s}", "gpus", (json_int_t) ns[i], "op", "unmap"), NULL);
                for (int k = 0; k < 4; k++) {
                        free(v[k].s[0].v);
                        free(v[k].s[1].v);
                }
        }

        /* One ioctl per Map, whatever N: the emulator's counters. */
        if (!realistic && n_gpus >= 8) {
                long long m0 = ioctl_count("MAP_MEMORY_TO_GPU"), u0 = ioctl_count("UNMAP_MEMORY_FROM_GPU");
                const int K = 100;
                for (int k = 0; k < K; k++)
                        if (check(svmd_map(c_direct, a1.id, gpu_ids, 8, NULL, &e), &e, "Map") < 0 ||
                            check(svmd_unmap(c_direct, a1.id, gpu_ids, 8, &e), &e, "Unmap") < 0)
                                break;
                long long m1 = ioctl_count("MAP_MEMORY_TO_GPU"), u1 = ioctl_count("UNMAP_MEMORY_FROM_GPU");
                printf("ioctl counters over %d Map(8 GPUs)+Unmap(8 GPUs) through svmd: MAP_MEMORY_TO_GPU +%lld, "
                       "UNMAP_MEMORY_FROM_GPU +%lld\n", K, m1 - m0, u1 - u0);
                json_object_set_new(j_info, "map8_ioctls",
                                    json_pack("{s:i,s:I,s:I}", "calls", K, "map_ioctls", (json_int_t) (m1 - m0),
                                              "unmap_ioctls", (json_int_t) (u1 - u0)));
                emit_target("Map to 8 GPUs: ioctls per Map", "emulator ioctl counters", (double) (m1 - m0) / K, "<=",
                            1.0, "ioctls", NULL);
        }

        (void) svmd_free(c_direct, a1.id, NULL);
        (void) svmd_free(c_bus, a2.id, NULL);
        (void) inproc_free(h, host, 2 * MiB);
}

/* Export (a dma-buf fd), and Share+Attach+Release, of a 2 MiB VRAM range. */
typedef struct ShareCase {
        svmd_client *c;
        uint64_t id, handle;
        bool attach;
} ShareCase;

static int sample_svmd_share(void *ud, uint64_t out[2]) {
        ShareCase *s = ud;
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t t = now_ns(), va, size;
        int fd, r;

        if (!s->attach) {
                r = svmd_export(s->c, s->id, &fd, &va, &size, &e);
                if (check(r, &e, "Export") < 0)
                        return r;
                close(fd);
        } else {
                svmd_grant g = { .has_uid = true, .uid = getuid() };
                svmd_attachment at;
                char *token = NULL;

                r = svmd_share(s->c, s->id, &g, &token, &e);
                if (check(r, &e, "Share") < 0)
                        return r;
                r = svmd_attach(s->c, token, &at, &e);
                free(token);
                if (check(r, &e, "Attach") < 0)
                        return r;
                close(at.fd);
                r = svmd_release(s->c, at.id, &e);
                if (check(r, &e, "Release") < 0)
                        return r;
        }
        out[0] = now_ns() - t;
        drain(s->c);
        return 1;
}

static int sample_inproc_share(void *ud, uint64_t out[2]) {
        ShareCase *s = ud;
        uint64_t t = now_ns(), h2;
        int fd, r;

        r = kfd_export_dmabuf(kfd, s->handle, O_RDWR, &fd);
        if (r < 0)
                return r;
        if (s->attach) {
                r = kfd_import_dmabuf(kfd, fd, gpu_ids[0], INPROC_VA2, &h2);
                if (r >= 0)
                        r = kfd_free(kfd, h2);
        }
        close(fd);
        if (r < 0)
                return r;
        out[0] = now_ns() - t;
        return 1;
}

static void section_share(bool realistic) {
        svmd_allocation a1, a2;
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t h;
        void *host;

        if (check(svmd_allocate(c_direct, 2 * MiB, gpu_ids[0], "vram", NULL, &a1, &e), &e, "Allocate") < 0 ||
            check(svmd_allocate(c_bus, 2 * MiB, gpu_ids[0], "vram", NULL, &a2, &e), &e, "Allocate") < 0 ||
            inproc_alloc(D_VRAM, 2 * MiB, INPROC_MAP_VA, &h, &host) < 0) {
                failures++;
                return;
        }
        print_header(realistic ? "Export / Share+Attach 2 MiB VRAM, realistic" : "Export / Share+Attach 2 MiB VRAM, none");
        for (int attach = 0; attach <= 1; attach++) {
                ShareCase in = { .handle = h, .attach = attach }, dir = { .c = c_direct, .id = a1.id, .attach = attach },
                          bus = { .c = c_bus, .id = a2.id, .attach = attach };
                Variant v[3] = {
                        { .name = attach ? "in-process-exp+imp" : "in-process-export", .fn = sample_inproc_share, .ud = &in },
                        { .name = "svmd-direct", .fn = sample_svmd_share, .ud = &dir },
                        { .name = "svmd-bus", .fn = sample_svmd_share, .ud = &bus },
                };
                size_t n = arg_quick ? 50 : 500;

                if (run_interleaved(v, 3, n, 10, 5) < 0) {
                        failures++;
                        continue;
                }
                report("share", attach ? "Share+Attach+Release" : "Export", v, 3, 0,
                       json_pack("{s:s}", "op", attach ? "share-attach" : "export"), NULL);
                for (int k = 0; k < 3; k++) {
                        free(v[k].s[0].v);
                        free(v[k].s[1].v);
                }
        }
        (void) svmd_free(c_direct, a1.id, NULL);
        (void) svmd_free(c_bus, a2.id, NULL);
        (void) inproc_free(h, host, 2 * MiB);
}

/* ---- commit ---- */

typedef struct CommitCase {
        svmd_client *c;
        size_t k;
        bool commit;
        bool alloc;             /* K Allocate then K Free; else K Map then K Unmap of existing ranges */
        uint64_t *ids;
        uint64_t *handles;      /* in-process: the K buffers to map and unmap */
        BusCall *echo;          /* the bus round trip: a null method of an sd-bus server on dbus-daemon */
} CommitCase;

#define INPROC_COMMIT_VA UINT64_C(0x720000000000)

/* The baseline of a Commit: its K ioctls (and their K inverses) issued in-process, no IPC. */
static int sample_inproc_commit(void *ud, uint64_t out[2]) {
        CommitCase *cc = ud;
        uint64_t handles[64], t = now_ns();
        uint32_t done;
        int r = 0;

        if (cc->alloc) {
                for (size_t i = 0; i < cc->k && r >= 0; i++)
                        r = kfd_alloc(kfd, INPROC_COMMIT_VA + i * 4 * KiB, 4 * KiB, gpu_ids[0],
                                      kfd_domain_flags(D_GTT), 0, &handles[i], NULL);
                for (size_t i = 0; i < cc->k && r >= 0; i++)
                        r = kfd_free(kfd, handles[i]);
        } else {
                for (size_t i = 0; i < cc->k && r >= 0; i++)
                        r = kfd_map(kfd, cc->handles[i], gpu_ids, 1, &done);
                for (size_t i = 0; i < cc->k && r >= 0; i++)
                        r = kfd_unmap(kfd, cc->handles[i], gpu_ids, 1, &done);
        }
        if (r < 0) {
                fprintf(stderr, "svmd-bench: in-process ioctls of the commit section: %s\n", strerror(-r));
                return r;
        }
        out[0] = now_ns() - t;
        return 1;
}

/* The two bus round trips of the two Commits, each a null method call through dbus-daemon. */
static int sample_echo_commit(void *ud, uint64_t out[2]) {
        CommitCase *cc = ud;
        uint64_t t = now_ns(), one[2];
        int r;

        for (int i = 0; i < 2; i++) {
                r = sample_bus_call(cc->echo, one);
                if (r < 0)
                        return r;
        }
        out[0] = now_ns() - t;
        return 1;
}

static int sample_commit(void *ud, uint64_t out[2]) {
        CommitCase *cc = ud;
        svmd_op ops[64];
        svmd_op_result res[64];
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t t = now_ns();
        int r;

        if (cc->alloc) {
                uint64_t ids[64];
                if (cc->commit) {
                        for (size_t i = 0; i < cc->k; i++)
                                ops[i] = (svmd_op) { .kind = SVMD_OP_ALLOCATE, .size = 4 * KiB, .gpu_id = gpu_ids[0],
                                                     .domain = "gtt" };
                        r = svmd_commit(cc->c, ops, cc->k, NULL, res, &e);
                        if (check(r, &e, "Commit") < 0)
                                return r;
                        for (size_t i = 0; i < cc->k; i++)
                                ops[i] = (svmd_op) { .kind = SVMD_OP_FREE, .id = res[i].id };
                        r = svmd_commit(cc->c, ops, cc->k, NULL, NULL, &e);
                        if (check(r, &e, "Commit") < 0)
                                return r;
                } else {
                        svmd_allocation a;
                        for (size_t i = 0; i < cc->k; i++) {
                                r = svmd_allocate(cc->c, 4 * KiB, gpu_ids[0], "gtt", NULL, &a, &e);
                                if (check(r, &e, "Allocate") < 0)
                                        return r;
                                ids[i] = a.id;
                        }
                        for (size_t i = 0; i < cc->k; i++) {
                                r = svmd_free(cc->c, ids[i], &e);
                                if (check(r, &e, "Free") < 0)
                                        return r;
                        }
                }
        } else if (cc->commit) {
                for (size_t i = 0; i < cc->k; i++)
                        ops[i] = (svmd_op) { .kind = SVMD_OP_MAP, .id = cc->ids[i], .gpus = gpu_ids, .n_gpus = 1 };
                r = svmd_commit(cc->c, ops, cc->k, NULL, NULL, &e);
                if (check(r, &e, "Commit") < 0)
                        return r;
                for (size_t i = 0; i < cc->k; i++)
                        ops[i].kind = SVMD_OP_UNMAP;
                r = svmd_commit(cc->c, ops, cc->k, NULL, NULL, &e);
                if (check(r, &e, "Commit") < 0)
                        return r;
        } else {
                for (size_t i = 0; i < cc->k; i++) {
                        r = svmd_map(cc->c, cc->ids[i], gpu_ids, 1, NULL, &e);
                        if (check(r, &e, "Map") < 0)
                                return r;
                }
                for (size_t i = 0; i < cc->k; i++) {
                        r = svmd_unmap(cc->c, cc->ids[i], gpu_ids, 1, &e);
                        if (check(r, &e, "Unmap") < 0)
                                return r;
                }
        }
        out[0] = now_ns() - t;
        drain(cc->c);
        return 1;
}

static void section_commit(bool realistic) {
        static const size_t ks[] = { 1, 8, 64 };
        uint64_t ids_bus[64], ids_dir[64], handles[64];
        svmd_error e = SVMD_ERROR_NULL;
        svmd_allocation a;
        char name[128];
        BusCall echo = { .dest = "org.svmd1.BenchEchoCommit", .path = "/bench", .iface = "org.svmd1.Bench",
                         .member = "Null" };
        size_t n_handles = 0;
        pid_t echo_pid;
        int ready[2];

        /* The bus round trip of the baseline, as the floor section measures it. The child only
         * serves the bus and leaves by _exit(): it never touches the KFD context it inherits. */
        if (pipe2(ready, O_CLOEXEC) < 0) {
                failures++;
                return;
        }
        echo_pid = fork();
        if (echo_pid == 0) {
                close(ready[0]);
                echo_bus_child(-1, env_or_die("SVMD_BUS_ADDRESS"), echo.dest, ready[1]);
        }
        close(ready[1]);
        if (echo_pid < 0)
                close(ready[0]);
        if (echo_pid < 0 || wait_ready_fd(ready[0], 10000) < 0 ||
            !(echo.bus = bus_connect(env_or_die("SVMD_BUS_ADDRESS"), true))) {
                fprintf(stderr, "svmd-bench: the commit section's echo server on the bus did not start\n");
                failures++;
                goto finish;
        }
        for (; n_handles < 64; n_handles++) {
                void *host;

                if (inproc_alloc(D_GTT, 64 * KiB, INPROC_COMMIT_VA + MiB + n_handles * 64 * KiB, &handles[n_handles],
                                 &host) < 0) {
                        failures++;
                        goto finish;
                }
        }

        for (size_t i = 0; i < 64; i++) {
                if (check(svmd_allocate(c_bus, 64 * KiB, gpu_ids[0], "gtt", NULL, &a, &e), &e, "Allocate") < 0) {
                        failures++;
                        goto finish;
                }
                ids_bus[i] = a.id;
                if (check(svmd_allocate(c_direct, 64 * KiB, gpu_ids[0], "gtt", NULL, &a, &e), &e, "Allocate") < 0) {
                        failures++;
                        goto finish;
                }
                ids_dir[i] = a.id;
        }

        print_header(realistic ? "Commit of K ops vs K separate calls, realistic" : "Commit of K ops vs K separate calls, none");
        for (int alloc = 0; alloc <= 1; alloc++)
                for (int transport = 0; transport <= 1; transport++)
                        for (size_t i = 0; i < ELEMENTSOF(ks); i++) {
                                svmd_client *c = transport == 0 ? c_bus : c_direct;
                                uint64_t *ids = transport == 0 ? ids_bus : ids_dir;
                                CommitCase sep = { c, ks[i], false, alloc, ids }, com = { c, ks[i], true, alloc, ids },
                                           in = { .k = ks[i], .alloc = alloc, .handles = handles, .echo = &echo };
                                Variant v[4] = {
                                        { .name = "separate-calls", .fn = sample_commit, .ud = &sep },
                                        { .name = "one-commit", .fn = sample_commit, .ud = &com },
                                        { .name = "in-process-ioctls", .fn = sample_inproc_commit, .ud = &in },
                                        { .name = "bus-round-trip-x2", .fn = sample_echo_commit, .ud = &in },
                                };
                                /* The baseline of the target: on the bus, at 64. */
                                size_t n = ks[i] == 64 ? 60 : 300, nv = ks[i] == 64 && transport == 0 ? 4 : 2;
                                Stats st[4];

                                if (arg_quick)
                                        n = ks[i] == 64 ? 8 : 30;
                                if (run_interleaved(v, nv, n, ks[i] == 64 ? 2 : 10, 2) < 0) {
                                        failures++;
                                        continue;
                                }
                                snprintf(name, sizeof(name), "%s: %zu %s (%s)", transport == 0 ? "bus" : "direct", ks[i],
                                         alloc ? "Allocate+Free 4K gtt" : "Map+Unmap 64K gtt",
                                         "2 commits vs 2K calls");
                                report("commit", name, v, nv, 0,
                                       json_pack("{s:I,s:s,s:s}", "k", (json_int_t) ks[i], "transport",
                                                 transport == 0 ? "bus" : "direct", "ops", alloc ? "allocate-free" : "map-unmap"),
                                       st);
                                if (ks[i] == 64 && transport == 0) {
                                        char what[160];
                                        snprintf(what, sizeof(what), "Commit of 64 %s over the bus, %s",
                                                 alloc ? "Allocate (+64 Free)" : "Map (+64 Unmap)", cur_profile);
                                        emit_target(what, "64 separate calls: speed-up", st[0].p50 / st[1].p50, ">=", 20,
                                                    "x", "informational");
                                        snprintf(what, sizeof(what),
                                                 "Commit of 64 ops over the bus vs in-process ioctls + one bus round trip, %s%s",
                                                 alloc ? "Allocate+Free, " : "", cur_profile);
                                        emit_target(what, "the same ioctls in-process plus one sd-bus echo via dbus-daemon",
                                                    st[1].p50 / (st[2].p50 + st[3].p50), "<=", 1.25, "x",
                                                    alloc ? "informational: an Allocate does more than its ioctl" : NULL);
                                }
                                for (size_t j = 0; j < nv; j++)
                                        free(v[j].s[0].v);
                        }
        for (size_t i = 0; i < 64; i++) {
                (void) svmd_free(c_bus, ids_bus[i], NULL);
                (void) svmd_free(c_direct, ids_dir[i], NULL);
        }
finish:
        for (size_t i = 0; i < n_handles; i++)
                (void) inproc_free(handles[i], NULL, 64 * KiB);
        sd_bus_flush_close_unref(echo.bus);
        if (echo_pid > 0) {
                kill(echo_pid, SIGTERM);
                waitpid(echo_pid, NULL, 0);
        }
}

/* ---- concurrency ---- */

typedef struct Shared {
        uint64_t start_ns, end_ns;
        uint64_t count[128];
        int failed;
} Shared;

static _noreturn_ void client_process(Shared *sh, size_t idx, uint64_t size) {
        svmd_client *c = connect_svmd(SVMD_CLIENT_DIRECT_ONLY);
        svmd_error e = SVMD_ERROR_NULL;
        svmd_allocation a;
        uint64_t n = 0, t;

        if (!c)
                _exit(1);
        /* One round trip before the start line, so that connecting is not measured. */
        if (svmd_allocate(c, size, gpu_ids[0], "gtt", NULL, &a, &e) < 0 || svmd_free(c, a.id, &e) < 0) {
                __atomic_store_n(&sh->failed, 1, __ATOMIC_RELAXED);
                _exit(1);
        }
        while ((t = now_ns()) < sh->start_ns)
                usleep((useconds_t) MIN((sh->start_ns - t) / 1000, 1000));
        for (;;) {
                if (svmd_allocate(c, size, gpu_ids[0], "gtt", NULL, &a, &e) < 0 || svmd_free(c, a.id, &e) < 0) {
                        __atomic_store_n(&sh->failed, 1, __ATOMIC_RELAXED);
                        _exit(1);
                }
                if (now_ns() > sh->end_ns)
                        break;
                n++;
                drain(c);
        }
        sh->count[idx] = n;
        svmd_client_free(c);
        _exit(0);
}

static int iso_become(uid_t uid);

/* The clients of the contexts case run as these uids: one quota scope each, spread over the KFD contexts. */
#define CONC_UID_BASE 60001

/* svmd's KFD contexts (the manager's KfdContexts); 0 if it cannot be read. */
static uint32_t svmd_kfd_contexts(void) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *address = getenv("SVMD_BUS_ADDRESS");
        sd_bus *bus = NULL;
        uint32_t n = 0;

        if (!address || sd_bus_new(&bus) < 0)
                return 0;
        if (sd_bus_set_address(bus, address) < 0 || sd_bus_set_bus_client(bus, 1) < 0 || sd_bus_start(bus) < 0 ||
            sd_bus_get_property_trivial(bus, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "KfdContexts",
                                        &error, 'u', &n) < 0)
                n = 0;
        sd_bus_error_free(&error);
        sd_bus_flush_close_unref(bus);
        return n;
}

/* C clients for window seconds, as uid 0 or (distinct_uids) as CONC_UID_BASE + i. Pairs/s and svmd's CPU per pair. */
static int conc_run(Shared *sh, size_t C, bool distinct_uids, double window, uint64_t size, double *ret_rate,
                    double *ret_cpu_per) {
        pid_t pids[128], spid = svmd_pid();
        uint64_t total = 0, t;
        double cpu0, cpu1;

        if (C > ELEMENTSOF(pids))
                return -EINVAL;
        memset(sh, 0, sizeof(*sh));
        sh->start_ns = now_ns() + (uint64_t) (0.3e9 + 0.01e9 * (double) C);
        sh->end_ns = sh->start_ns + (uint64_t) (window * 1e9);
        for (size_t k = 0; k < C; k++) {
                pids[k] = fork();
                if (pids[k] == 0) {
                        if (distinct_uids && iso_become((uid_t) (CONC_UID_BASE + k)) < 0)
                                _exit(1);
                        client_process(sh, k, size);
                }
        }
        while ((t = now_ns()) < sh->start_ns)
                usleep(500);
        cpu0 = proc_cpu_us(spid);
        while (now_ns() < sh->end_ns)
                usleep(1000);
        cpu1 = proc_cpu_us(spid);
        for (size_t k = 0; k < C; k++) {
                int status;
                if (pids[k] < 0 || waitpid(pids[k], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        sh->failed = 1;
        }
        for (size_t k = 0; k < C; k++)
                total += sh->count[k];
        if (sh->failed) {
                fprintf(stderr, "svmd-bench: a client of the concurrency run failed\n");
                return -EIO;
        }
        *ret_rate = (double) total / window;
        *ret_cpu_per = total > 0 ? (cpu1 - cpu0) / (double) total : 0;
        return 0;
}

static void section_concurrency(void) {
        static const size_t cs[] = { 1, 4, 16, 64 };
        const size_t C_CONTEXTS = 16;
        const uint64_t size = 64 * KiB;
        double window = arg_quick ? 0.5 : 3.0;
        EmuCost ca = emu_cost(0x16, EMU_DOMAIN_GTT, size, 1), cf = emu_cost(0x17, EMU_DOMAIN_GTT, size, 1);
        double limit = 1e9 / (double) (ca.locked_ns + cf.locked_ns), rate, cpu_per;
        uint32_t contexts = svmd_kfd_contexts();
        Shared *sh;

        sh = mmap(NULL, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (sh == MAP_FAILED) {
                failures++;
                return;
        }
        printf("\n== concurrency: C client processes, each Allocate+Free 64 KiB GTT in a loop on its own direct "
               "connection, realistic ==\n");
        printf("lock-bound limit: the per-process mutex serializes ALLOC (%.1f µs) + FREE (%.1f µs) = %.0f pairs/s\n",
               (double) ca.locked_ns / 1000, (double) cf.locked_ns / 1000, limit);
        printf("%-10s %14s %12s %16s %18s\n", "clients", "pairs/s", "of limit", "svmd CPU µs/pair", "in-process pairs/s");

        for (size_t i = 0; i < ELEMENTSOF(cs); i++) {
                size_t C = cs[i];
                uint64_t inproc = 0;

                if (conc_run(sh, C, false, window, size, &rate, &cpu_per) < 0) {
                        failures++;
                        continue;
                }

                /* The same loop in-process, for reference: one process, its own KFD context. */
                {
                        uint64_t end = now_ns() + (uint64_t) (window * 1e9 / 3), h;
                        void *host;
                        while (now_ns() < end) {
                                if (inproc_alloc(D_GTT, size, INPROC_VA, &h, &host) < 0 || inproc_free(h, host, size) < 0)
                                        break;
                                inproc++;
                        }
                }
                double inproc_rate = (double) inproc * 3 / window;  /* it ran for window/3 */

                printf("%-10zu %14.0f %11.1f%% %16.1f %18.0f\n", C, rate, 100 * rate / limit, cpu_per, inproc_rate);
                fflush(stdout);
                json_array_append_new(j_results,
                                      json_pack("{s:s,s:s,s:s,s:s,s:I,s:f,s:f,s:f,s:f,s:f}", "section", "concurrency",
                                                "case", "Allocate+Free 64 KiB gtt", "variant", "svmd-direct", "profile",
                                                cur_profile, "clients", (json_int_t) C, "pairs_per_s", rate,
                                                "lock_bound_limit", limit, "fraction_of_limit", rate / limit,
                                                "svmd_cpu_us_per_pair", cpu_per, "inprocess_pairs_per_s",
                                                inproc_rate));
                if (C == 16 || C == 64) {
                        char what[96];
                        snprintf(what, sizeof(what), "%zu concurrent clients, realistic", C);
                        emit_target(what, "the emulator's lock-bound limit", rate / limit, ">=", 0.9, "fraction", NULL);
                }
        }

        /* Tenants of distinct uids: one quota scope each, so with secondary KFD contexts (interface 1.19,
         * limits.kfd-contexts) their buffers live under different kernel locks (architecture.md, "KFD
         * contexts"). The ratio is against one context's lock-bound limit. */
        printf("%zu clients of distinct uids (%d…%zu), %u KFD context(s) in svmd:\n", C_CONTEXTS, CONC_UID_BASE,
               CONC_UID_BASE + C_CONTEXTS - 1, contexts);
        if (conc_run(sh, C_CONTEXTS, true, window, size, &rate, &cpu_per) < 0)
                failures++;
        else {
                printf("%-10s %14.0f %11.2fx %16.1f\n", "uids", rate, rate / limit, cpu_per);
                json_array_append_new(j_results,
                                      json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:f,s:f,s:f,s:f}", "section", "concurrency",
                                                "case", "Allocate+Free 64 KiB gtt, distinct uids", "variant",
                                                "svmd-direct", "profile", cur_profile, "clients",
                                                (json_int_t) C_CONTEXTS, "kfd_contexts", (json_int_t) contexts,
                                                "pairs_per_s", rate, "lock_bound_limit", limit,
                                                "multiple_of_limit", rate / limit, "svmd_cpu_us_per_pair", cpu_per));
                if (contexts >= 4)
                        emit_target("16 clients of distinct uids, 4 KFD contexts, realistic",
                                    "one context's lock-bound limit", rate / limit, ">=", 3, "x", NULL);
                else
                        printf("(the 4-context target needs svmd with 4 KFD contexts: svmd-harness --kfd-version 1.19)\n");
        }
        munmap(sh, sizeof(Shared));
}

/* ---- many ranges: fill, free ---- */

/* Allocate n GTT 4 KiB ranges through c (Commits of 1024), spread over the GPUs; their ids appended to *ids. */
static int fill_ranges(svmd_client *c, size_t n, bool persistent, uint64_t **ids, size_t *n_ids) {
        static svmd_op ops[SVMD_MAX_COMMIT_OPS_BENCH];
        static svmd_op_result res[SVMD_MAX_COMMIT_OPS_BENCH];
        svmd_error e = SVMD_ERROR_NULL;

        *ids = realloc(*ids, (*n_ids + n) * sizeof(uint64_t));
        if (!*ids)
                return -ENOMEM;
        for (size_t done = 0; done < n;) {
                size_t k = MIN(n - done, (size_t) SVMD_MAX_COMMIT_OPS_BENCH);
                for (size_t i = 0; i < k; i++)
                        ops[i] = (svmd_op) { .kind = SVMD_OP_ALLOCATE, .size = 4 * KiB,
                                             .gpu_id = gpu_ids[(*n_ids + i) % n_gpus], .domain = "gtt",
                                             .persistent = persistent };
                int r = svmd_commit(c, ops, k, NULL, res, &e);
                if (check(r, &e, "Commit (fill)") < 0)
                        return r;
                for (size_t i = 0; i < k; i++)
                        (*ids)[(*n_ids)++] = res[i].id;
                done += k;
                drain(c);
                drain(c_direct);
                drain(c_bus);
        }
        return 0;
}

static int free_ranges(svmd_client *c, const uint64_t *ids, size_t n) {
        static svmd_op ops[SVMD_MAX_COMMIT_OPS_BENCH];
        svmd_error e = SVMD_ERROR_NULL;

        for (size_t done = 0; done < n;) {
                size_t k = MIN(n - done, (size_t) SVMD_MAX_COMMIT_OPS_BENCH);
                for (size_t i = 0; i < k; i++)
                        ops[i] = (svmd_op) { .kind = SVMD_OP_FREE, .id = ids[done + i] };
                int r = svmd_commit(c, ops, k, NULL, NULL, &e);
                if (check(r, &e, "Commit (free)") < 0)
                        return r;
                done += k;
                drain(c);
                drain(c_direct);
                drain(c_bus);
        }
        return 0;
}

/* ---- isolation ---- */

/*
 * One tenant must not stall another. A victim (this process, on its own direct connection) loops
 * Allocate+Free of 64 KiB GTT, one sample per call, under profile realistic, while another tenant
 * (forked children that connect only after becoming another uid, so svmd sees another tenant):
 *   (a) disconnects holding N ranges (filled under profile none, torn down under realistic);
 *   (b) opens and closes C direct connections (each makes one ListRanges call), in parallel batches,
 *       one uid per worker;
 *   (c) runs Commits of 1024 Allocates (each followed by a Commit of the 1024 Frees) back to back;
 *   (d) runs 16 clients of the victim's own Allocate+Free loop.
 * An idle block of the victim alone precedes each case; together they make the idle row.
 */

#define ISO_UID 65534                   /* nobody: the aggressor of (a), (c) and (d) */
#define ISO_CONN_UID 61001              /* (b): one tenant; its workers share the uid and its connection limit */
#define ISO_CONN_WORKERS 8
#define ISO_CONN_BATCH 8
#define ISO_LOAD_CLIENTS 16
#define ISO_MAX_COMMITS 256
#define ISO_SETTLE_NS UINT64_C(100000000)      /* (a): sampled before the kill and after the ranges are gone */

typedef struct IsoShared {
        uint64_t go_ns, back_ns;        /* (a): the aggressor killed; the monitor saw the ranges gone */
        uint64_t target_ranges, polls;
        uint64_t claimed, opened, refused;      /* (b) */
        int error_claimed;
        char first_error[256];
        uint64_t n_commits, alloc_ns[ISO_MAX_COMMITS], free_ns[ISO_MAX_COMMITS];     /* (c) */
} IsoShared;

/* >0 ends the victim's window, <0 fails it. */
typedef int (*IsoTick)(void *ud, uint64_t now);

typedef struct IsoKids {
        pid_t pid[64];
        size_t n, alive;
        uint64_t start_ns, end_ns;
        int failed;
} IsoKids;

/* In a forked child: drop root before connecting, and leave the parent's connections alone. */
static int iso_become(uid_t uid) {
        c_direct = c_bus = NULL;
        if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0) {
                int r = -errno;
                fprintf(stderr, "svmd-bench: becoming uid %u failed: %s\n", (unsigned) uid, strerror(-r));
                return r;
        }
        return 0;
}

static pid_t iso_fork(IsoKids *k) {
        pid_t pid = fork();

        if (pid > 0 && k->n < ELEMENTSOF(k->pid)) {
                k->pid[k->n++] = pid;
                k->alive++;
        }
        return pid;
}

/* Reap the children that exited; a nonzero status fails the case. */
static void iso_reap(IsoKids *k, int flags) {
        for (size_t i = 0; i < k->n; i++) {
                int status;

                if (k->pid[i] <= 0 || waitpid(k->pid[i], &status, flags) != k->pid[i])
                        continue;
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        k->failed = 1;
                k->pid[i] = 0;
                k->alive--;
        }
        if (k->alive == 0 && k->end_ns == 0)
                k->end_ns = now_ns();
}

static void iso_kill(IsoKids *k) {
        for (size_t i = 0; i < k->n; i++)
                if (k->pid[i] > 0)
                        kill(k->pid[i], SIGKILL);
        iso_reap(k, 0);
}

static int tick_until(void *ud, uint64_t now) {
        return now >= *(uint64_t *) ud;
}

static int tick_children(void *ud, uint64_t now) {
        IsoKids *k = ud;

        iso_reap(k, WNOHANG);
        return k->alive == 0;
}

/* Loop the victim's Allocate+Free until tick says so (or 10 minutes pass); every call is a sample. */
static int victim_run(svmd_client *v, Series *s, IsoTick tick, void *ud) {
        uint64_t start = now_ns(), now, t, t1;
        svmd_error e = SVMD_ERROR_NULL;
        svmd_allocation a;
        int r;

        for (;;) {
                t = now_ns();
                r = svmd_allocate(v, 64 * KiB, gpu_ids[0], "gtt", NULL, &a, &e);
                t1 = now_ns();
                if (check(r, &e, "Allocate (victim)") < 0)
                        return r;
                series_add(s, t1 - t);
                r = svmd_free(v, a.id, &e);
                now = now_ns();
                if (check(r, &e, "Free (victim)") < 0)
                        return r;
                series_add(s, now - t1);
                drain(v);
                r = tick(ud, now);
                if (r != 0)
                        return r < 0 ? r : 0;
                if (now - start > 600ULL * 1000000000ULL) {
                        fprintf(stderr, "svmd-bench: the victim's window did not end in 10 minutes\n");
                        return -ETIMEDOUT;
                }
        }
}

/* An idle block: appended to idle, and its own figures to blocks (NULL: a warm-up, not kept). */
static int victim_idle(svmd_client *v, Series *idle, double seconds, const char *before, json_t *blocks) {
        uint64_t end = now_ns() + (uint64_t) (seconds * 1e9);
        Series b = {};
        Stats st;
        int r = victim_run(v, &b, tick_until, &end);

        if (r >= 0 && blocks) {
                for (size_t i = 0; i < b.n; i++)
                        series_add(idle, b.v[i]);
                st = series_stats(&b);
                printf("  idle block before %s: %zu calls, p50 %.1f µs, p99 %.1f µs, max %.1f µs\n", before, st.n,
                       st.p50, st.p99, st.max);
                json_array_append_new(blocks, json_pack("{s:s,s:I,s:f,s:f,s:f}", "before", before, "n",
                                                        (json_int_t) st.n, "p50_us", st.p50, "p99_us", st.p99,
                                                        "max_us", st.max));
        }
        free(b.v);
        return r;
}

/* One row: the victim while another tenant does casename (tag "(a)" …, "" for idle). */
static void iso_row(const char *tag, const char *casename, const char *aggressor, Series *s, const Stats *idle,
                    double aggression_s, json_t *params, Stats *ret) {
        Stats st = series_stats(s);
        char r50[16] = "-", r99[16] = "-", duration[16] = "-", label[128];
        json_t *o;

        if (idle && idle->p99 > 0) {
                snprintf(r50, sizeof(r50), "%.2f", st.p50 / idle->p50);
                snprintf(r99, sizeof(r99), "%.2f", st.p99 / idle->p99);
                snprintf(duration, sizeof(duration), "%.2f", aggression_s);
        }
        snprintf(label, sizeof(label), "%s%s%s", tag, *tag ? " " : "", casename);
        printf("%-46s %7zu %9.1f %9.1f %10.1f %9s %9s %12s\n", label, st.n, st.p50, st.p99, st.max, r50, r99,
               duration);
        o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:f,s:f,s:f,s:f,s:f,s:f}", "section", "isolation", "case", label,
                      "variant", "victim-direct", "aggressor", aggressor, "profile", cur_profile, "n", (json_int_t) st.n,
                      "p50_us", st.p50, "p99_us", st.p99, "max_us", st.max, "mean_us", st.mean, "min_us", st.min,
                      "aggression_s", aggression_s);
        if (idle && idle->p99 > 0) {
                json_object_set_new(o, "baseline", json_string("idle"));
                json_object_set_new(o, "ratio_p99", json_real(st.p99 / idle->p99));
                json_object_set_new(o, "ratio_p50", json_real(st.p50 / idle->p50));
        }
        json_object_set_new(o, "sample", json_string("one call of the victim, Allocate or Free of 64 KiB GTT"));
        json_object_set_new(o, "params", params ?: json_object());
        json_array_append_new(j_results, o);
        if (idle) {
                char what[160];

                snprintf(what, sizeof(what), "victim p99 while another tenant %s", casename);
                emit_target(what, "the victim's idle p99", st.p99 / idle->p99, "<=", 3, "x", NULL);
                snprintf(what, sizeof(what), "victim max while another tenant %s", casename);
                emit_target(what, "-", st.max / 1000, "<=", 20, "ms", "the victim's longest call");
        }
        if (ret)
                *ret = st;
}

/* svmd's number of live ranges (GetStatus). */
static int status_ranges(svmd_client *c, uint64_t *ret_ranges) {
        svmd_error e = SVMD_ERROR_NULL;
        svmd_status s;
        int r = svmd_get_status(c, &s, &e);

        if (check(r, &e, "GetStatus") < 0)
                return r;
        *ret_ranges = s.n_ranges;
        return 0;
}

/* (a): the aggressor holds n ranges until it is killed; a monitor polls GetStatus until they are gone. */
static _noreturn_ void iso_holder(size_t n, int ready_fd) {
        svmd_client *c;
        uint64_t *ids = NULL;
        size_t n_ids = 0;

        if (iso_become(ISO_UID) < 0 || !(c = connect_svmd(SVMD_CLIENT_DIRECT_ONLY)) ||
            fill_ranges(c, n, false, &ids, &n_ids) < 0)
                _exit(1);
        (void) !write(ready_fd, "R", 1);
        for (;;)
                pause();
}

static _noreturn_ void iso_monitor(IsoShared *sh) {
        svmd_client *c = connect_svmd(SVMD_CLIENT_DIRECT_ONLY);
        uint64_t n, t0 = now_ns();

        if (!c)
                _exit(1);
        for (;;) {
                if (now_ns() - t0 > 600ULL * 1000000000ULL)
                        _exit(1);
                if (__atomic_load_n(&sh->go_ns, __ATOMIC_ACQUIRE) == 0) {
                        usleep(1000);
                        continue;
                }
                if (status_ranges(c, &n) < 0)
                        _exit(1);
                sh->polls++;
                if (n <= sh->target_ranges) {
                        __atomic_store_n(&sh->back_ns, now_ns(), __ATOMIC_RELEASE);
                        svmd_client_free(c);
                        _exit(0);
                }
                usleep(2000);
        }
}

typedef struct TeardownTick {
        IsoShared *sh;
        IsoKids *holder, *monitor;
        uint64_t go_at;
} TeardownTick;

static int tick_teardown(void *ud, uint64_t now) {
        TeardownTick *t = ud;
        uint64_t back;

        if (t->sh->go_ns == 0 && now >= t->go_at) {
                __atomic_store_n(&t->sh->go_ns, now_ns(), __ATOMIC_RELEASE);
                iso_kill(t->holder);
        }
        /* The monitor sets back_ns before it exits: reap first, then look. */
        iso_reap(t->monitor, WNOHANG);
        back = __atomic_load_n(&t->sh->back_ns, __ATOMIC_ACQUIRE);
        if (back != 0)
                return now >= back + ISO_SETTLE_NS;
        return t->monitor->alive == 0 ? -EIO : 0;
}

static int iso_disconnect(svmd_client *v, IsoShared *sh, size_t n, Series *s, double *ret_s, json_t **ret_params) {
        IsoKids holder = {}, monitor = {};
        uint64_t n0, n1, t;
        int ready[2], r;
        double fill_s;

        r = status_ranges(v, &n0);
        if (r < 0)
                return r;
        r = set_profile("none");
        if (r < 0 || pipe2(ready, O_CLOEXEC) < 0)
                return r < 0 ? r : -errno;
        t = now_ns();
        if (iso_fork(&holder) == 0) {
                close(ready[0]);
                iso_holder(n, ready[1]);
        }
        close(ready[1]);
        r = wait_ready_fd(ready[0], 600 * 1000);
        fill_s = (double) (now_ns() - t) / 1e9;
        if (r >= 0)
                r = set_profile("realistic");
        if (r >= 0)
                r = status_ranges(v, &n1);
        if (r < 0) {
                iso_kill(&holder);
                return r;
        }
        printf("  (a) the aggressor filled %zu ranges in %.2f s (profile none); svmd holds %" PRIu64 " ranges\n", n,
               fill_s, n1);

        memset(sh, 0, sizeof(*sh));
        sh->target_ranges = n0;
        if (iso_fork(&monitor) == 0)
                iso_monitor(sh);
        TeardownTick tt = { sh, &holder, &monitor, now_ns() + ISO_SETTLE_NS };
        r = victim_run(v, s, tick_teardown, &tt);
        iso_kill(&holder);
        if (r < 0) {
                iso_kill(&monitor);
                return r;
        }
        iso_reap(&monitor, 0);
        *ret_s = (double) (sh->back_ns - sh->go_ns) / 1e9;
        printf("  (a) kill -9 of the aggressor → svmd's range count back to %" PRIu64 ": %.3f s (%" PRIu64
               " GetStatus polls)\n", n0, *ret_s, sh->polls);
        *ret_params = json_pack("{s:I,s:f,s:I}", "ranges", (json_int_t) n, "fill_s", fill_s, "monitor_polls",
                                (json_int_t) sh->polls);
        return monitor.failed ? -EIO : 0;
}

/* (b) */
static _noreturn_ void iso_conn_worker(IsoShared *sh, size_t total) {
        svmd_client *cs[ISO_CONN_BATCH];

        if (iso_become((uid_t) ISO_CONN_UID) < 0)
                _exit(1);
        for (;;) {
                uint64_t first = __atomic_fetch_add(&sh->claimed, ISO_CONN_BATCH, __ATOMIC_RELAXED);
                size_t k;

                if (first >= total)
                        break;
                k = MIN((size_t) ISO_CONN_BATCH, (size_t) (total - first));
                for (size_t i = 0; i < k; i++) {
                        svmd_range_filter f = { .limit = 1 };
                        svmd_error e = SVMD_ERROR_NULL;
                        svmd_range *rs = NULL;
                        size_t n_rs = 0;
                        int r;

                        /* ListRanges makes svmd register the caller as a client (its uid, unit, scope). */
                        cs[i] = NULL;
                        r = svmd_client_new(&cs[i], NULL, NULL, SVMD_CLIENT_DIRECT_ONLY, &e);
                        if (r >= 0)
                                r = svmd_list_ranges(cs[i], &f, &rs, &n_rs, &e);
                        free(rs);
                        if (r >= 0) {
                                __atomic_fetch_add(&sh->opened, 1, __ATOMIC_RELAXED);
                                continue;
                        }
                        __atomic_fetch_add(&sh->refused, 1, __ATOMIC_RELAXED);
                        if (__atomic_exchange_n(&sh->error_claimed, 1, __ATOMIC_RELAXED) == 0)
                                snprintf(sh->first_error, sizeof(sh->first_error), "%s%s%s", e.name ?: "",
                                         e.name ? ": " : "", e.message ?: strerror(-r));
                        svmd_error_free(&e);
                }
                for (size_t i = 0; i < k; i++)
                        svmd_client_free(cs[i]);
        }
        _exit(0);
}

static int iso_connections(svmd_client *v, IsoShared *sh, size_t n, Series *s, double *ret_s, json_t **ret_params) {
        IsoKids k = {};
        int r;

        memset(sh, 0, sizeof(*sh));
        k.start_ns = now_ns();
        for (size_t w = 0; w < ISO_CONN_WORKERS; w++)
                if (iso_fork(&k) == 0)
                        iso_conn_worker(sh, n);
        r = victim_run(v, s, tick_children, &k);
        if (r < 0) {
                iso_kill(&k);
                return r;
        }
        *ret_s = (double) (k.end_ns - k.start_ns) / 1e9;
        printf("  (b) %zu connections by %d workers of uid %d (%d at a time each): %" PRIu64 " answered, %" PRIu64
               " refused%s%s; %.0f connections/s\n", n, ISO_CONN_WORKERS, ISO_CONN_UID, ISO_CONN_BATCH, sh->opened,
               sh->refused,
               sh->refused ? ", first: " : "", sh->refused ? sh->first_error : "", (double) n / *ret_s);
        *ret_params = json_pack("{s:I,s:i,s:i,s:I,s:I,s:s}", "connections", (json_int_t) n, "workers", ISO_CONN_WORKERS,
                                "batch", ISO_CONN_BATCH, "answered", (json_int_t) sh->opened, "refused",
                                (json_int_t) sh->refused, "first_refusal", sh->first_error);
        return k.failed ? -EIO : 0;
}

/* (c) */
static _noreturn_ void iso_committer(IsoShared *sh, size_t reps) {
        svmd_client *c;
        uint64_t *ids = NULL, t;
        size_t n_ids = 0;

        if (iso_become(ISO_UID) < 0 || !(c = connect_svmd(SVMD_CLIENT_DIRECT_ONLY)))
                _exit(1);
        for (size_t i = 0; i < reps && i < ISO_MAX_COMMITS; i++) {
                t = now_ns();
                if (fill_ranges(c, SVMD_MAX_COMMIT_OPS_BENCH, false, &ids, &n_ids) < 0)
                        _exit(1);
                sh->alloc_ns[i] = now_ns() - t;
                t = now_ns();
                if (free_ranges(c, ids, n_ids) < 0)
                        _exit(1);
                sh->free_ns[i] = now_ns() - t;
                n_ids = 0;
                sh->n_commits = i + 1;
        }
        svmd_client_free(c);
        free(ids);
        _exit(0);
}

static int iso_commits(svmd_client *v, IsoShared *sh, size_t reps, Series *s, double *ret_s, json_t **ret_params) {
        Series sa = {}, sf = {};
        IsoKids k = {};
        Stats a, f;
        int r;

        memset(sh, 0, sizeof(*sh));
        k.start_ns = now_ns();
        if (iso_fork(&k) == 0)
                iso_committer(sh, reps);
        r = victim_run(v, s, tick_children, &k);
        if (r < 0) {
                iso_kill(&k);
                return r;
        }
        *ret_s = (double) (k.end_ns - k.start_ns) / 1e9;
        for (size_t i = 0; i < sh->n_commits; i++) {
                series_add(&sa, sh->alloc_ns[i]);
                series_add(&sf, sh->free_ns[i]);
        }
        a = series_stats(&sa);
        f = series_stats(&sf);
        printf("  (c) %" PRIu64 " Commits of %d Allocates (GTT 4 KiB), each followed by one of the %d Frees: "
               "Allocate Commit p50 %.1f ms max %.1f ms, Free Commit p50 %.1f ms max %.1f ms\n", sh->n_commits,
               SVMD_MAX_COMMIT_OPS_BENCH, SVMD_MAX_COMMIT_OPS_BENCH, a.p50 / 1000, a.max / 1000, f.p50 / 1000,
               f.max / 1000);
        *ret_params = json_pack("{s:I,s:i,s:f,s:f,s:f,s:f}", "commits", (json_int_t) sh->n_commits, "ops_per_commit",
                                SVMD_MAX_COMMIT_OPS_BENCH, "allocate_commit_p50_ms", a.p50 / 1000,
                                "allocate_commit_max_ms", a.max / 1000, "free_commit_p50_ms", f.p50 / 1000,
                                "free_commit_max_ms", f.max / 1000);
        free(sa.v);
        free(sf.v);
        return k.failed || sh->n_commits < MIN(reps, (size_t) ISO_MAX_COMMITS) ? -EIO : 0;
}

/* (d) */
static int iso_load(svmd_client *v, size_t clients, double window, Series *s, double *ret_s, json_t **ret_params) {
        EmuCost ca = emu_cost(0x16, EMU_DOMAIN_GTT, 64 * KiB, 1), cf = emu_cost(0x17, EMU_DOMAIN_GTT, 64 * KiB, 1);
        double limit = 1e9 / (double) (ca.locked_ns + cf.locked_ns), rate;
        IsoKids k = {};
        uint64_t total = 0, t;
        Shared *sh;
        int r;

        sh = mmap(NULL, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (sh == MAP_FAILED)
                return -errno;
        sh->start_ns = now_ns() + (uint64_t) (0.3e9 + 0.01e9 * (double) clients);
        sh->end_ns = sh->start_ns + (uint64_t) (window * 1e9);
        for (size_t i = 0; i < clients; i++)
                if (iso_fork(&k) == 0) {
                        if (iso_become(ISO_UID) < 0)
                                _exit(1);
                        client_process(sh, i, 64 * KiB);
                }
        while ((t = now_ns()) < sh->start_ns)
                usleep(500);
        r = victim_run(v, s, tick_until, &sh->end_ns);
        iso_reap(&k, 0);
        for (size_t i = 0; i < clients; i++)
                total += sh->count[i];
        rate = (double) total / window;
        *ret_s = window;
        printf("  (d) %zu clients of uid %d: %.0f pairs/s (%.1f%% of the lock-bound limit of %.0f/s)\n", clients,
               ISO_UID, rate, 100 * rate / limit, limit);
        *ret_params = json_pack("{s:I,s:f,s:f,s:f}", "clients", (json_int_t) clients, "aggressor_pairs_per_s", rate,
                                "lock_bound_limit", limit, "aggressor_fraction_of_limit", rate / limit);
        r = k.failed || sh->failed ? -EIO : r;
        munmap(sh, sizeof(Shared));
        return r;
}

static void section_isolation(void) {
        size_t n_ranges = arg_iso_ranges ?: (arg_quick ? 1000 : 100000);
        size_t n_conns = arg_iso_connections ?: (arg_quick ? 200 : 2000);
        size_t reps = arg_quick ? 3 : 20;
        double idle_s = arg_quick ? 0.2 : 1.0, load_s = arg_quick ? 0.5 : 3.0;
        svmd_client *v = connect_svmd(SVMD_CLIENT_DIRECT_ONLY);
        Series idle = {}, cs[4] = {};
        double agg_s[4] = {};
        json_t *params[4] = {};
        char names[4][96];
        const char *aggressors[4] = { "disconnect", "connections", "commits", "load" };
        const char *tags[4] = { "(a)", "(b)", "(c)", "(d)" };
        IsoShared *sh;
        json_t *blocks = json_array();
        Stats idle_st;
        int r = 0;

        sh = mmap(NULL, sizeof(IsoShared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (!v || sh == MAP_FAILED || set_profile("realistic") < 0) {
                failures++;
                if (sh != MAP_FAILED)
                        munmap(sh, sizeof(IsoShared));
                json_decref(blocks);
                svmd_client_free(v);
                return;
        }
        snprintf(names[0], sizeof(names[0]), "disconnects holding %zu ranges", n_ranges);
        snprintf(names[1], sizeof(names[1]), "opens and closes %zu connections", n_conns);
        snprintf(names[2], sizeof(names[2]), "runs %zu Commits of %d Allocates", reps, SVMD_MAX_COMMIT_OPS_BENCH);
        snprintf(names[3], sizeof(names[3]), "runs %d clients of Allocate+Free", ISO_LOAD_CLIENTS);

        printf("\n== isolation: a victim loops Allocate+Free 64 KiB GTT on the direct socket while another tenant "
               "(uid %d; (b): uid %d) aggresses, realistic ==\n", ISO_UID, ISO_CONN_UID);
        /* Warm up, then an idle block before each case. */
        r = victim_idle(v, &idle, 0.1, NULL, NULL);
        for (int i = 0; i < 4 && r >= 0; i++) {
                r = victim_idle(v, &idle, idle_s, tags[i], blocks);
                if (r < 0)
                        break;
                switch (i) {
                case 0:
                        r = iso_disconnect(v, sh, n_ranges, &cs[i], &agg_s[i], &params[i]);
                        break;
                case 1:
                        r = iso_connections(v, sh, n_conns, &cs[i], &agg_s[i], &params[i]);
                        break;
                case 2:
                        r = iso_commits(v, sh, reps, &cs[i], &agg_s[i], &params[i]);
                        break;
                case 3:
                        r = iso_load(v, ISO_LOAD_CLIENTS, load_s, &cs[i], &agg_s[i], &params[i]);
                        break;
                }
                if (r < 0)
                        fprintf(stderr, "svmd-bench: isolation case %s failed: %s\n", names[i], strerror(-r));
        }
        if (r < 0)
                failures++;
        else {
                printf("%-46s %7s %9s %9s %10s %9s %9s %12s\n", "another tenant …", "n", "p50 µs", "p99 µs",
                       "max µs", "×idle p50", "×idle p99", "aggression s");
                iso_row("", "is idle", "none", &idle, NULL, 0,
                        json_pack("{s:f,s:O}", "idle_block_s", idle_s, "blocks", blocks), &idle_st);
                for (int i = 0; i < 4; i++) {
                        iso_row(tags[i], names[i], aggressors[i], &cs[i], &idle_st, agg_s[i], params[i], NULL);
                        params[i] = NULL;
                }
        }
        for (int i = 0; i < 4; i++) {
                json_decref(params[i]);
                free(cs[i].v);
        }
        free(idle.v);
        json_decref(blocks);
        munmap(sh, sizeof(IsoShared));
        svmd_client_free(v);
}

/* ---- restart ---- */

/* The targets of docs/benchmarks.md: serving again within this many seconds after kill -9 with N ranges. */
static double restart_limit_sec(size_t n) {
        return n >= 100000 ? 3.0 : 0.5;
}

static void section_restart(void) {
        static const size_t ns[] = { 1000, 10000, 100000 };

        printf("\n== restart: kill -9 svmd with N persistent ranges (GTT 4 KiB, dma-bufs in the fd store) ==\n");
        printf("%-10s %16s %22s %22s %10s\n", "ranges", "kill→READY ms", "kill→serving ms", "kill→all listed ms", "listed");
        for (size_t i = 0; i < ELEMENTSOF(ns); i++) {
                size_t N = ns[i];
                svmd_client *c;
                uint64_t *ids = NULL, t0;
                size_t n_ids = 0, listed = 0;
                pid_t pid, pid2 = 0;
                int ready = 0;
                unsigned starts, starts2 = 0;
                struct timespec rt0, mt;
                double t_ready = -1, t_serving = -1, t_listed = -1;

                if (arg_quick && N > 1000)
                        continue;
                c = connect_svmd(SVMD_CLIENT_DIRECT_ONLY);
                {
                        svmd_durability d;

                        /* More than the fd store takes (docs/architecture.md, "The fd store's names"): not run,
                         * and a target of it is not met. */
                        if (c && svmd_get_durability(c, &d, NULL) >= 0 && d.fd_store_max - d.stored_fds < N) {
                                char what[96], note[128];

                                printf("%-10zu not run: svmd's fd store takes %" PRIu64 " fds (FdStoreMax), %" PRIu64
                                       " in use\n", N, d.fd_store_max, d.stored_fds);
                                snprintf(what, sizeof(what), "restart with %zu persistent ranges: kill -9 to serving", N);
                                snprintf(note, sizeof(note), "not run: svmd's fd store takes %" PRIu64 " persistent ranges",
                                         d.fd_store_max);
                                emit_target(what, "-", -1, "<=", restart_limit_sec(N), "s", note);
                                svmd_client_free(c);
                                continue;
                        }
                }
                if (!c || fill_ranges(c, N, true, &ids, &n_ids) < 0 || read_state(&pid, &ready, &starts, NULL) < 0) {
                        failures++;
                        free(ids);
                        svmd_client_free(c);
                        return;
                }
                svmd_client_free(c);
                c = NULL;

                clock_gettime(CLOCK_REALTIME, &rt0);
                t0 = now_ns();
                if (kill(pid, SIGKILL) < 0) {
                        failures++;
                        free(ids);
                        return;
                }
                /* Serving: a new connection to the new daemon answers GetStatus. */
                for (;;) {
                        svmd_status s;
                        if (now_ns() - t0 > 60ULL * 1000000000ULL)
                                break;
                        c = NULL;
                        if (svmd_client_new(&c, NULL, NULL, SVMD_CLIENT_DIRECT_ONLY, NULL) >= 0 &&
                            svmd_get_status(c, &s, NULL) >= 0 &&
                            read_state(&pid2, &ready, &starts2, NULL) >= 0 && pid2 != pid) {
                                t_serving = (double) (now_ns() - t0) / 1e6;
                                break;
                        }
                        svmd_client_free(c);
                        c = NULL;
                        usleep(200);
                }
                if (c) {
                        svmd_range_filter f = { .limit = 4096 };
                        for (;;) {
                                svmd_range *rs = NULL;
                                size_t n = 0;
                                if (svmd_list_ranges(c, &f, &rs, &n, NULL) < 0)
                                        break;
                                free(rs);
                                listed += n;
                                f.offset += n;
                                if (n < f.limit)
                                        break;
                        }
                        t_listed = (double) (now_ns() - t0) / 1e6;
                }
                for (int w = 0; w < 5000; w++) {
                        if (read_state(&pid2, &ready, &starts2, &mt) >= 0 && pid2 != pid && ready)
                                break;
                        usleep(1000);
                }
                if (ready && pid2 != pid)
                        t_ready = (double) (mt.tv_sec - rt0.tv_sec) * 1e3 + (double) (mt.tv_nsec - rt0.tv_nsec) / 1e6;
                printf("%-10zu %16.1f %22.1f %22.1f %10zu\n", N, t_ready, t_serving, t_listed, listed);
                fflush(stdout);
                json_array_append_new(j_results, json_pack("{s:s,s:s,s:I,s:f,s:f,s:f,s:I}", "section", "restart", "case",
                                                           "kill -9 with persistent ranges", "ranges", (json_int_t) N,
                                                           "kill_to_ready_ms", t_ready, "kill_to_serving_ms", t_serving,
                                                           "kill_to_all_listed_ms", t_listed, "listed",
                                                           (json_int_t) listed));
                if (N >= 10000 || (arg_quick && N == 1000)) {
                        char what[96];
                        snprintf(what, sizeof(what), "restart with %zu persistent ranges: kill -9 to serving", N);
                        emit_target(what, "-", t_serving / 1e3, "<=", restart_limit_sec(N), "s",
                                    listed >= N ? "all ranges listed after the restart" : "NOT all ranges listed");
                        snprintf(what, sizeof(what), "restart with %zu persistent ranges: ranges back", N);
                        emit_target(what, "ranges before the kill", (double) listed / (double) N, ">=", 1.0,
                                    "fraction", NULL);
                }
                if (!c || pid2 == pid) {
                        failures++;
                        free(ids);
                        svmd_client_free(c);
                        return;
                }
                if (!arg_keep_slack)
                        set_timer_slack(pid2, "svmd");
                if (free_ranges(c, ids, n_ids) < 0)
                        failures++;
                svmd_client_free(c);
                free(ids);
        }
        /* The restarted daemon's connections of ours are gone: reconnect. */
        svmd_client_free(c_direct);
        svmd_client_free(c_bus);
        c_direct = connect_svmd(SVMD_CLIENT_DIRECT_ONLY);
        c_bus = connect_svmd(SVMD_CLIENT_NO_DIRECT);
}

/* ---- scale ---- */

typedef struct ListCase {
        svmd_client *c;
        uint64_t offset;
        bool has_after;         /* page by cursor instead */
        uint64_t after;
} ListCase;

static int sample_list(void *ud, uint64_t out[2]) {
        ListCase *l = ud;
        svmd_range_filter f = { .limit = 1000, .offset = l->offset, .has_after = l->has_after, .after = l->after };
        svmd_range *rs = NULL;
        size_t n = 0;
        svmd_error e = SVMD_ERROR_NULL;
        uint64_t t = now_ns();
        int r = svmd_list_ranges(l->c, &f, &rs, &n, &e);

        out[0] = now_ns() - t;
        free(rs);
        if (check(r, &e, "ListRanges") < 0)
                return r;
        return 1;
}

static void section_scale(void) {
        static const size_t levels[] = { 1000, 10000, 100000, 1000000 };
        svmd_client *filler = connect_svmd(SVMD_CLIENT_DIRECT_ONLY);
        uint64_t *ids = NULL;
        size_t n_ids = 0;
        pid_t pid = svmd_pid();
        long anon0, rss0, shmem0;
        double base_p50 = 0, base_ratio = 0;

        if (!filler) {
                failures++;
                return;
        }
        anon0 = proc_status_kb(pid, "RssAnon");
        rss0 = proc_status_kb(pid, "VmRSS");
        shmem0 = proc_status_kb(pid, "RssShmem");
        print_header("scale: live GTT 4 KiB ranges (filled by Commits of 1024), profile none");
        for (size_t i = 0; i < ELEMENTSOF(levels); i++) {
                size_t L = levels[i];
                char name[128];
                uint64_t t;

                if ((arg_quick && L > 10000) || (arg_scale_max && L > arg_scale_max))
                        continue;
                t = now_ns();
                if (fill_ranges(filler, L - n_ids, false, &ids, &n_ids) < 0) {
                        failures++;
                        break;
                }
                double fill_s = (double) (now_ns() - t) / 1e9;

                AllocCase in = { D_GTT, 4 * KiB, NULL, false }, dir = { D_GTT, 4 * KiB, c_direct, false };
                Variant v[2] = {
                        { .name = "in-process", .fn = sample_inproc_alloc_free, .ud = &in },
                        { .name = "svmd-direct", .fn = sample_svmd_alloc_free, .ud = &dir },
                };
                Stats st[2];
                size_t n = arg_quick ? 300 : 3000;

                if (run_interleaved(v, 2, n, 10, 20) < 0) {
                        failures++;
                        break;
                }
                snprintf(name, sizeof(name), "Allocate+Free gtt 4K, %zu live", L);
                report("scale", name, v, 2, 0, json_pack("{s:I,s:s}", "live", (json_int_t) L, "op", "alloc-free"), st);
                free(v[0].s[0].v);
                free(v[1].s[0].v);

                /* The filler's ids ascend: the one at L/2 is the cursor a client paging to the middle holds. */
                ListCase l0 = { c_direct, 0 }, lm = { c_direct, L / 2 },
                         la = { c_direct, 0, true, ids[L / 2 - 1] };
                Variant lv[3] = {
                        { .name = "svmd-direct-offset-0", .fn = sample_list, .ud = &l0 },
                        { .name = "svmd-direct-offset-L/2", .fn = sample_list, .ud = &lm },
                        { .name = "svmd-direct-after-L/2", .fn = sample_list, .ud = &la },
                };
                if (run_interleaved(lv, 3, arg_quick ? 10 : 50, 5, 2) < 0) {
                        failures++;
                        break;
                }
                snprintf(name, sizeof(name), "ListRanges page of 1000, %zu live", L);
                Stats ls[3];
                report("scale", name, lv, 3, 0, json_pack("{s:I,s:s}", "live", (json_int_t) L, "op", "list"), ls);
                for (size_t k = 0; k < ELEMENTSOF(lv); k++)
                        free(lv[k].s[0].v);

                long anon = proc_status_kb(pid, "RssAnon"), rss = proc_status_kb(pid, "VmRSS"),
                     shmem = proc_status_kb(pid, "RssShmem");
                double anon_per = (double) (anon - anon0) * 1024 / (double) L;
                double rss_per = (double) (rss - rss0) * 1024 / (double) L;
                double shmem_per = (double) (shmem - shmem0) * 1024 / (double) L;
                /* Marginal: from the previous level, free of the heap slack earlier sections left behind. */
                static long anon_prev = -1;
                static size_t l_prev = 0;
                double anon_marginal = anon_prev >= 0 ? (double) (anon - anon_prev) * 1024 / (double) (L - l_prev) : anon_per;
                anon_prev = anon;
                l_prev = L;
                printf("  %zu live: svmd RssAnon growth per added range since the previous level: %.0f B\n", L,
                       anon_marginal);
                printf("  %zu live: fill %.1f s (%.1f µs/range); svmd VmRSS %ld kB, RssAnon %ld kB, RssShmem %ld kB; "
                       "per range: RssAnon %.0f B, VmRSS %.0f B (RssShmem, the emulator's arena: %.0f B)\n",
                       L, fill_s, fill_s * 1e6 / (double) (L - (i > 0 ? levels[i - 1] : 0)), rss, anon, shmem, anon_per,
                       rss_per, shmem_per);
                json_array_append_new(j_results,
                                      json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "section", "scale",
                                                "case", "rss", "live", (json_int_t) L, "vmrss_kb", (json_int_t) rss,
                                                "rssanon_kb", (json_int_t) anon, "rssshmem_kb", (json_int_t) shmem,
                                                "rssanon_bytes_per_range", anon_per, "vmrss_bytes_per_range", rss_per,
                                                "rssshmem_bytes_per_range", shmem_per, "fill_s", fill_s, "rssanon_marginal_bytes_per_range", anon_marginal,
                                                "alloc_free_p50_us", st[1].p50, "inprocess_p50_us", st[0].p50,
                                                "list_p50_us", ls[0].p50));
                if (i == 0) {
                        base_p50 = st[1].p50;
                        base_ratio = st[1].p50 / st[0].p50;
                } else if (L == levels[ELEMENTSOF(levels) - 1] || (arg_quick && L == 10000) ||
                           (arg_scale_max && L == arg_scale_max)) {
                        char what[128];
                        snprintf(what, sizeof(what), "%zu live ranges: Allocate+Free 4 KiB per-op cost", L);
                        emit_target(what, "the same at 1000 live ranges", st[1].p50 / base_p50, "<=", 1.5, "x", NULL);
                        snprintf(what, sizeof(what), "%zu live ranges: per-op cost relative to in-process", L);
                        emit_target(what, "the same ratio at 1000 live ranges", (st[1].p50 / st[0].p50) / base_ratio,
                                    "<=", 1.5, "x", "informational: drift-corrected by the in-process control");
                        snprintf(what, sizeof(what), "%zu live ranges: daemon RssAnon per range", L);
                        emit_target(what, "-", anon_per, "<=", 200, "B", "heap and stack of svmd; VmRSS also counts the "
                                                                          "emulator's arena (the kernel's memory)");
                        snprintf(what, sizeof(what), "%zu live ranges: daemon RssAnon per added range (marginal)", L);
                        emit_target(what, "-", anon_marginal, "<=", 200, "B", "growth since the previous level");
                }
        }
        /* Dropping the connection frees them all; time it, it is a path clients take. svmd frees
         * them in slices between other calls: how soon the next call answers, how long calls take
         * meanwhile, and when the last range is gone. */
        {
                uint64_t t, first = 0, target = 0, over = 0;
                size_t n_lat = 0, cap = 1 << 20;
                uint64_t *lat = malloc(cap * sizeof(uint64_t));
                svmd_status s;

                if (svmd_get_status(c_direct, &s, NULL) >= 0 && s.n_ranges >= n_ids)
                        target = s.n_ranges - n_ids;
                t = now_ns();
                svmd_client_free(filler);
                for (;;) {
                        uint64_t t0 = now_ns(), dt;

                        if (svmd_get_status(c_direct, &s, NULL) < 0)
                                break;
                        dt = now_ns() - t0;
                        if (lat && n_lat < cap)
                                lat[n_lat++] = dt;
                        over += dt > 10 * UINT64_C(1000000);
                        if (first == 0)
                                first = now_ns() - t;
                        if (s.n_ranges <= target || now_ns() - t > 600 * UINT64_C(1000000000))
                                break;
                        usleep(1000);
                }
                printf("  disconnecting the filler (%zu ranges freed by svmd): all freed after %.1f s; "
                       "the next call answered after %.1f ms\n", n_ids, (double) (now_ns() - t) / 1e9,
                       (double) first / 1e6);
                if (lat && n_lat > 0) {
                        qsort(lat, n_lat, sizeof(uint64_t), cmp_u64);
                        printf("  GetStatus meanwhile: %zu calls, p50 %.2f ms, p99 %.2f ms, max %.1f ms, "
                               "%" PRIu64 " over 10 ms\n", n_lat, (double) lat[n_lat / 2] / 1e6,
                               (double) lat[n_lat * 99 / 100] / 1e6, (double) lat[n_lat - 1] / 1e6, over);
                }
                free(lat);
                json_array_append_new(j_results, json_pack("{s:s,s:s,s:s,s:I,s:f,s:f}", "section", "scale", "case",
                                                           "disconnect", "profile", cur_profile, "ranges",
                                                           (json_int_t) n_ids, "seconds",
                                                           (double) (now_ns() - t) / 1e9, "first_ms",
                                                           (double) first / 1e6));
        }
        free(ids);
}

/* ---- main ---- */

static void help(void) {
        printf("Usage: svmd-bench [--quick] [--json FILE] [--only SECTIONS] [--scale-max N] [--keep-timer-slack]\n"
               "                  [--isolation-ranges N] [--isolation-connections N]\n"
               "Measure svmd against in-process and IPC baselines in the same run (run under\n"
               "svmd-harness --emulate-command). SECTIONS: floor,alloc,map,share,commit,pool,concurrency,isolation,\n"
               "restart,scale. --isolation-ranges N and --isolation-connections N size the isolation section's\n"
               "cases (a) and (b) (default 100000 and 2000, with --quick 1000 and 200).\n");
}

static int parse_argv(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "quick", no_argument, NULL, 'q' },
                { "json", required_argument, NULL, 'j' },
                { "only", required_argument, NULL, 'o' },
                { "scale-max", required_argument, NULL, 's' },
                { "keep-timer-slack", no_argument, NULL, 'k' },
                { "isolation-ranges", required_argument, NULL, 'R' },
                { "isolation-connections", required_argument, NULL, 'C' },
                { "kfdemu-ctl", required_argument, NULL, 'c' },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        exit(0);
                case 'q':
                        arg_quick = true;
                        break;
                case 'j':
                        arg_json = optarg;
                        break;
                case 'o':
                        arg_only = optarg;
                        break;
                case 's':
                        arg_scale_max = strtoull(optarg, NULL, 0);
                        break;
                case 'k':
                        arg_keep_slack = true;
                        break;
                case 'R':
                        arg_iso_ranges = strtoull(optarg, NULL, 0);
                        break;
                case 'C':
                        arg_iso_connections = strtoull(optarg, NULL, 0);
                        break;
                case 'c':
                        arg_ctl = optarg;
                        break;
                default:
                        return -EINVAL;
                }
        return 0;
}

static void environment_block(int argc, char *argv[]) {
        struct utsname u;
        char model[512] = "?", line[256], cmd[4096] = "";
        FILE *f;
        size_t o = 0;

        uname(&u);
        f = fopen("/proc/cpuinfo", "re");
        if (f) {
                while (fgets(line, sizeof(line), f))
                        if (strncmp(line, "model name", 10) == 0) {
                                char *p = strchr(line, ':');
                                snprintf(model, sizeof(model), "%s", p ? p + 2 : line);
                                model[strcspn(model, "\n")] = '\0';
                                break;
                        }
                fclose(f);
        }
        for (int i = 0; i < argc && o < sizeof(cmd) - 2; i++)
                o += (size_t) snprintf(cmd + o, sizeof(cmd) - o, "%s%s", i ? " " : "", argv[i]);
        time_t now = time(NULL);
        char date[64];
        strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        printf("svmd-bench: %s; kernel %s %s; %ld CPUs; %s; timer slack %s\n", model, u.sysname, u.release,
               sysconf(_SC_NPROCESSORS_ONLN), date, arg_keep_slack ? "default" : "1 ns");
        json_object_set_new(j_info, "cpu", json_string(model));
        json_object_set_new(j_info, "kernel", json_string(u.release));
        json_object_set_new(j_info, "cpus", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
        json_object_set_new(j_info, "date", json_string(date));
        json_object_set_new(j_info, "command", json_string(cmd));
        json_object_set_new(j_info, "quick", json_boolean(arg_quick));
        json_object_set_new(j_info, "timer_slack", json_string(arg_keep_slack ? "default" : "1 ns"));
}

int main(int argc, char *argv[]) {
        svmd_error e = SVMD_ERROR_NULL;
        json_t *root;
        uint64_t t_start = now_ns();
        int r;

        if (parse_argv(argc, argv) < 0)
                return 2;
        setvbuf(stdout, NULL, _IOLBF, 0);
        signal(SIGPIPE, SIG_IGN);
        j_results = json_array();
        j_targets = json_array();
        j_info = json_object();

        if (!arg_keep_slack) {
                (void) prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
                set_timer_slack(svmd_pid(), "svmd");
                set_timer_slack(getppid(), "the harness");
        }

        c_direct = connect_svmd(SVMD_CLIENT_DIRECT_ONLY);
        c_bus = connect_svmd(SVMD_CLIENT_NO_DIRECT);
        if (!c_direct || !c_bus)
                return 1;
        r = svmd_list_gpus(c_direct, &gpus, &n_gpus, &e);
        if (check(r, &e, "ListGpus") < 0 || n_gpus == 0)
                return 1;
        for (size_t i = 0; i < n_gpus && i < ELEMENTSOF(gpu_ids); i++)
                gpu_ids[i] = gpus[i].gpu_id;
        environment_block(argc, argv);
        printf("svmd pid %d, %zu GPUs (%s), svmd log level: %s\n", (int) svmd_pid(), n_gpus, gpus[0].name,
               getenv("SVMD_HARNESS_LOG_LEVEL") ?: "debug (harness default)");
        json_object_set_new(j_info, "gpus", json_integer((json_int_t) n_gpus));
        json_object_set_new(j_info, "svmd_log_level", json_string(getenv("SVMD_HARNESS_LOG_LEVEL") ?: "debug"));

        if (set_profile("none") < 0)
                return 1;

        /* Floors first: forks echo servers before this process has a KFD context. */
        if (section_enabled("floor"))
                section_floor(arg_quick ? 2000 : 20000);

        r = kfd_device_new(&kdev, NULL);
        if (r < 0) {
                fprintf(stderr, "svmd-bench: opening /dev/kfd in-process failed: %s\n", strerror(-r));
                return 1;
        }
        kfd = kfd_device_get_fd(kdev);

        for (int realistic = 0; realistic <= 1; realistic++) {
                if (set_profile(realistic ? "realistic" : "none") < 0)
                        return 1;
                if (section_enabled("alloc"))
                        section_alloc(realistic);
                if (section_enabled("map"))
                        section_map(realistic);
                if (section_enabled("share"))
                        section_share(realistic);
                if (section_enabled("commit"))
                        section_commit(realistic);
                if (section_enabled("pool") && c_direct)
                        section_pool(realistic);
        }
        if (section_enabled("concurrency")) {
                if (set_profile("realistic") < 0)
                        return 1;
                section_concurrency();
        }
        if (section_enabled("isolation"))
                section_isolation();
        if (set_profile("none") < 0)
                return 1;
        if (section_enabled("restart"))
                section_restart();
        if (section_enabled("scale") && c_direct)
                section_scale();

        printf("\n== targets (docs/benchmarks.md) ==\n");
        for (size_t i = 0; i < json_array_size(j_targets); i++) {
                json_t *t = json_array_get(j_targets, i);
                printf("%-62s %10.3f %-9s %s %-6g  %s\n", json_string_value(json_object_get(t, "what")),
                       json_real_value(json_object_get(t, "value")), json_string_value(json_object_get(t, "unit")),
                       json_string_value(json_object_get(t, "op")), json_real_value(json_object_get(t, "limit")),
                       json_is_true(json_object_get(t, "met")) ? "met" : "NOT MET");
        }
        printf("svmd-bench: %.1f s, %d failure(s)\n", (double) (now_ns() - t_start) / 1e9, failures);

        if (arg_json) {
                json_object_set_new(j_info, "duration_s", json_real((double) (now_ns() - t_start) / 1e9));
                root = json_pack("{s:O,s:O,s:O}", "info", j_info, "results", j_results, "targets", j_targets);
                if (json_dump_file(root, arg_json, JSON_INDENT(1)) < 0) {
                        fprintf(stderr, "svmd-bench: writing %s failed\n", arg_json);
                        failures++;
                }
                json_decref(root);
        }

        svmd_client_free(c_direct);
        svmd_client_free(c_bus);
        kfd_device_free(kdev);
        free(gpus);
        return failures > 0 ? 1 : 0;
}
