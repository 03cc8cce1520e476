/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * GetMetrics (docs/metrics.md) against svmd started with
 * tests/integration/data/metrics.conf: the numbers, not only the syntax.
 * An Allocate counts one call, a failed call one error under its name, the
 * latency histogram counts every call once (a call that waited for polkit
 * too), a failed map one rollback and a failed undo one failed rollback; VRAM
 * and scope bytes equal the Gpu properties and GetUsage. Another uid, over the
 * bus and over the direct socket, sees its own scope's series and no one
 * else's; root sees all, with the limits. After a kill -9 the restart and the
 * recovered persistent range are counted.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "svmd-protocol.h"
#include "svmd-test.h"

#define MiB (UINT64_C(1) << 20)
#define UID_OTHER 1     /* daemon: metrics.conf limits it */

static TestContext T;

static char *get_metrics_on(sd_bus *bus, const char *format) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *text;
        int r;

        if (format)
                r = test_call(bus, "GetMetrics", &error, &reply, "a{sv}", 1, SVMD_OPT_FORMAT, "s", format);
        else
                r = test_call(bus, "GetMetrics", &error, &reply, "a{sv}", 0);
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_read(reply, "s", &text));
        return strdup(text);
}

static char *get_metrics(void) {
        return get_metrics_on(T.bus, SVMD_METRICS_FORMAT_PROMETHEUS);
}

/* The value of the sample named exactly series ("name{labels}"); false if there is none. */
static bool find_sample(const char *text, const char *series, double *ret) {
        size_t n = strlen(series);

        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
                if (strncmp(p, series, n) == 0 && p[n] == ' ') {
                        *ret = strtod(p + n + 1, NULL);
                        return true;
                }
        return false;
}

static uint64_t sample(const char *text, const char *fmt, ...) _printf_(2, 3);
static uint64_t sample(const char *text, const char *fmt, ...) {
        char series[512];
        double v = -1;
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(series, sizeof(series), fmt, ap);
        va_end(ap);
        if (!find_sample(text, series, &v)) {
                fprintf(stderr, "no sample %s in:\n%s\n", series, text);
                abort();
        }
        return (uint64_t) v;
}

/* A sample that may be absent (an error never counted yet): 0 then. */
static uint64_t sample0(const char *text, const char *series) {
        double v = 0;

        return find_sample(text, series, &v) ? (uint64_t) v : 0;
}

static uint64_t calls(const char *text, const char *method) {
        return sample(text, "svmd_calls_total{method=\"%s\"}", method);
}

static uint64_t errors(const char *text, const char *method, const char *name) {
        char series[256];

        snprintf(series, sizeof(series), "svmd_call_errors_total{method=\"%s\",error=\"%s\"}", method, name);
        return sample0(text, series);
}

static uint64_t gpu_property(uint32_t gpu, const char *property) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        char path[64];
        uint64_t v = 0;
        int r;

        snprintf(path, sizeof(path), SVMD_GPU_PATH_PREFIX "/%" PRIu32, gpu);
        r = sd_bus_get_property_trivial(T.bus, "org.svmd1", path, SVMD_GPU_INTERFACE, property, &error, 't', &v);
        ASSERT_BUS_OK(r, &error);
        return v;
}

static uint64_t usage_value(sd_bus *bus, const char *key) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t v = UINT64_MAX;
        int r;

        r = test_call(bus, "GetUsage", &error, &reply, "s", "");
        ASSERT_BUS_OK(r, &error);
        ASSERT_OK(sd_bus_message_enter_container(reply, 'a', "{sv}"));
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *k;

                ASSERT_OK(sd_bus_message_read(reply, "s", &k));
                if (streq(k, key))
                        ASSERT_OK(sd_bus_message_read(reply, "v", "t", &v));
                else
                        ASSERT_OK(sd_bus_message_skip(reply, "v"));
                ASSERT_OK(sd_bus_message_exit_container(reply));
        }
        ASSERT_OK(r);
        ASSERT_TRUE(v != UINT64_MAX);
        return v;
}

static uint64_t allocate(sd_bus *bus, uint64_t size, uint32_t gpu, const char *domain, bool persistent) {
        return test_allocate(bus, size, gpu, domain, persistent, NULL);
}

static void test_formats(void) {
        _cleanup_free_ char *om = get_metrics_on(T.bus, NULL), *prom = get_metrics();
        sd_bus_error error = SD_BUS_ERROR_NULL;
        size_t n = strlen(om);
        int r;

        printf("formats\n");
        /* OpenMetrics: counter families without _total, and # EOF last. */
        ASSERT_TRUE(n > 6 && streq(om + n - 6, "# EOF\n"));
        ASSERT_TRUE(strstr(om, "\n# TYPE svmd_calls counter\n"));
        ASSERT_TRUE(strstr(om, "\n# TYPE svmd_call_duration_seconds histogram\n"));
        /* Prometheus text 0.0.4: TYPE names the sample, no # EOF. */
        ASSERT_TRUE(strstr(prom, "\n# TYPE svmd_calls_total counter\n"));
        ASSERT_TRUE(!strstr(prom, "# EOF"));
        ASSERT_TRUE(sample(prom, "svmd_up") == 1);

        r = test_call(T.bus, "GetMetrics", &error, NULL, "a{sv}", 1, SVMD_OPT_FORMAT, "s", "json");
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);
        r = test_call(T.bus, "GetMetrics", &error, NULL, "a{sv}", 1, "scope", "s", "uid:0");
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);
}

static void test_calls_and_errors(void) {
        _cleanup_free_ char *a = NULL, *b = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id, cumulative = 0;
        int r;

        printf("calls and errors\n");
        a = get_metrics();
        id = allocate(T.bus, 64 * 1024, 0, "gtt", false);
        r = test_call(T.bus, "Free", &error, NULL, "t", UINT64_C(900000));
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NO_SUCH_RANGE);
        sd_bus_error_free(&error);
        r = test_call(T.bus, "Allocate", &error, NULL, "tusa{sv}", 4096, 0, "bogus", 0);
        ASSERT_BUS_ERROR(r, &error, SD_BUS_ERROR_INVALID_ARGS);
        sd_bus_error_free(&error);
        r = test_call(T.bus, "Allocate", &error, NULL, "tusa{sv}", 4 * MiB, 0xdead, "vram", 0);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_NO_SUCH_GPU);
        sd_bus_error_free(&error);
        test_free(T.bus, id);
        b = get_metrics();

        ASSERT_TRUE(calls(b, "Allocate") == calls(a, "Allocate") + 3);
        ASSERT_TRUE(calls(b, "Free") == calls(a, "Free") + 2);
        ASSERT_TRUE(calls(b, "GetMetrics") == calls(a, "GetMetrics") + 1);
        ASSERT_TRUE(errors(b, "Free", SVMD_ERROR_NO_SUCH_RANGE) == errors(a, "Free", SVMD_ERROR_NO_SUCH_RANGE) + 1);
        ASSERT_TRUE(errors(b, "Allocate", SD_BUS_ERROR_INVALID_ARGS) ==
                    errors(a, "Allocate", SD_BUS_ERROR_INVALID_ARGS) + 1);
        ASSERT_TRUE(errors(b, "Allocate", SVMD_ERROR_NO_SUCH_GPU) == errors(a, "Allocate", SVMD_ERROR_NO_SUCH_GPU) + 1);
        ASSERT_TRUE(errors(b, "Free", SD_BUS_ERROR_INVALID_ARGS) == errors(a, "Free", SD_BUS_ERROR_INVALID_ARGS));

        /* The histogram: cumulative buckets, +Inf and _count equal to the calls. */
        static const char *const les[] = { "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001",
                                           "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
                                           "2.5", "10", "+Inf" };
        for (size_t i = 0; i < ELEMENTSOF(les); i++) {
                uint64_t v = sample(b, "svmd_call_duration_seconds_bucket{method=\"Allocate\",le=\"%s\"}", les[i]);

                ASSERT_TRUE(v >= cumulative);
                cumulative = v;
        }
        ASSERT_TRUE(cumulative == calls(b, "Allocate"));
        ASSERT_TRUE(sample(b, "svmd_call_duration_seconds_count{method=\"Allocate\"}") == calls(b, "Allocate"));
}

static double sample_f(const char *text, const char *series) {
        double v = -1;

        ASSERT_TRUE(find_sample(text, series, &v));
        return v;
}

/* With the realistic profile, allocating 1 GiB of VRAM costs the kernel 92.8 ms (docs/emulator.md). */
static void test_latency(void) {
        _cleanup_free_ char *a = NULL, *b = NULL;
        uint64_t id;

        printf("latency\n");
        a = get_metrics();
        ASSERT_OK(emu_kernel_set_profile(T.emu, EMU_PROFILE_REALISTIC));
        id = allocate(T.bus, UINT64_C(1) << 30, T.gpus[0], "vram", false);
        ASSERT_OK(emu_kernel_set_profile(T.emu, EMU_PROFILE_NONE));
        b = get_metrics();
        test_free(T.bus, id);

#define BUCKET(t, le) sample(t, "svmd_call_duration_seconds_bucket{method=\"Allocate\",le=\"%s\"}", le)
        /* Not in the 0.05 s bucket; in the 10 s one (a loaded machine may take longer than 0.1 s). */
        ASSERT_TRUE(BUCKET(b, "0.05") == BUCKET(a, "0.05"));
        ASSERT_TRUE(BUCKET(b, "10") == BUCKET(a, "10") + 1);
        ASSERT_TRUE(BUCKET(b, "+Inf") == BUCKET(a, "+Inf") + 1);
#undef BUCKET
        ASSERT_TRUE(sample_f(b, "svmd_call_duration_seconds_sum{method=\"Allocate\"}") -
                    sample_f(a, "svmd_call_duration_seconds_sum{method=\"Allocate\"}") >= 0.0928);
}

static void test_numbers(void) {
        _cleanup_free_ char *text = NULL;
        uint64_t ids[3];
        uint32_t gpu = T.gpus[1];
        uint32_t clients = 0;
        uint64_t ranges = 0, bytes = 0;
        sd_bus_error error = SD_BUS_ERROR_NULL;

        printf("VRAM, GTT and scope bytes\n");
        ids[0] = allocate(T.bus, 4 * MiB, gpu, "vram", false);
        ids[1] = allocate(T.bus, 2 * MiB, T.gpus[0], "vram", false);
        ids[2] = allocate(T.bus, 1 * MiB, gpu, "gtt", false);
        text = get_metrics();

        for (size_t i = 0; i < T.n_gpus; i++) {
                ASSERT_TRUE(sample(text, "svmd_gpu_vram_total_bytes{gpu=\"0x%x\"}", T.gpus[i]) ==
                            gpu_property(T.gpus[i], "VramTotal"));
                ASSERT_TRUE(sample(text, "svmd_gpu_vram_used_bytes{gpu=\"0x%x\"}", T.gpus[i]) ==
                            gpu_property(T.gpus[i], "VramUsed"));
                ASSERT_TRUE(sample(text, "svmd_gpu_vram_free_bytes{gpu=\"0x%x\"}", T.gpus[i]) ==
                            gpu_property(T.gpus[i], "VramFree"));
                ASSERT_TRUE(sample(text, "svmd_gpu_gtt_used_bytes{gpu=\"0x%x\"}", T.gpus[i]) ==
                            gpu_property(T.gpus[i], "GttUsed"));
        }
        ASSERT_TRUE(sample(text, "svmd_gpu_vram_used_bytes{gpu=\"0x%x\"}", gpu) >= 4 * MiB);
        ASSERT_TRUE(sample(text, "svmd_gpu_gtt_used_bytes{gpu=\"0x%x\"}", gpu) == 1 * MiB);

        ASSERT_TRUE(sample(text, "svmd_scope_vram_bytes{scope=\"uid:0\"}") == usage_value(T.bus, SVMD_USAGE_VRAM));
        ASSERT_TRUE(sample(text, "svmd_scope_vram_bytes{scope=\"uid:0\"}") == 6 * MiB);
        ASSERT_TRUE(sample(text, "svmd_scope_host_bytes{scope=\"uid:0\"}") == usage_value(T.bus, SVMD_USAGE_HOST));
        ASSERT_TRUE(sample(text, "svmd_scope_ranges{scope=\"uid:0\"}") == usage_value(T.bus, SVMD_USAGE_RANGES));
        ASSERT_TRUE(sample(text, "svmd_scope_gpu_vram_bytes{scope=\"uid:0\",gpu=\"0x%x\"}", gpu) == 4 * MiB);
        ASSERT_TRUE(sample(text, "svmd_scope_gpu_vram_bytes{scope=\"uid:0\",gpu=\"0x%x\"}", T.gpus[0]) == 2 * MiB);

        ASSERT_OK(sd_bus_get_property_trivial(T.bus, "org.svmd1", SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                              "Ranges", &error, 't', &ranges));
        ASSERT_OK(sd_bus_get_property_trivial(T.bus, "org.svmd1", SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                              "BytesAllocated", &error, 't', &bytes));
        ASSERT_OK(sd_bus_get_property_trivial(T.bus, "org.svmd1", SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                              "Clients", &error, 'u', &clients));
        ASSERT_TRUE(sample(text, "svmd_ranges") == ranges);
        ASSERT_TRUE(sample(text, "svmd_allocated_bytes") == bytes);
        ASSERT_TRUE(sample(text, "svmd_clients") == clients);
        for (size_t i = 0; i < ELEMENTSOF(ids); i++)
                test_free(T.bus, ids[i]);
}

static void test_rollbacks(void) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        uint64_t id;
        int r;

        printf("rollbacks\n");
        id = allocate(T.bus, 2 * MiB, T.gpus[0], "vram", false);
        a = get_metrics();

        /* The second GPU's map fails: the first is unmapped again. */
        test_fault(&T, "ioctl=MAP_MEMORY_TO_GPU nth=1 errno=ENOMEM after=1");
        r = test_call(T.bus, "Map", &error, NULL, "taua{sv}", id, 2, T.gpus[0], T.gpus[1], 0);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_OUT_OF_MEMORY);
        sd_bus_error_free(&error);
        test_fault_clear(&T);
        b = get_metrics();
        ASSERT_TRUE(sample(b, "svmd_rollbacks_total") == sample(a, "svmd_rollbacks_total") + 1);
        ASSERT_TRUE(sample(b, "svmd_rollbacks_failed_total") == sample(a, "svmd_rollbacks_failed_total"));
        ASSERT_TRUE(errors(b, "Map", SVMD_ERROR_OUT_OF_MEMORY) == errors(a, "Map", SVMD_ERROR_OUT_OF_MEMORY) + 1);

        /* And now the undo fails too: a degraded range, until the repair timer runs. */
        test_fault(&T, "ioctl=MAP_MEMORY_TO_GPU nth=1 errno=ENOMEM after=1");
        test_fault(&T, "ioctl=UNMAP_MEMORY_FROM_GPU nth=1 errno=EIO");
        r = test_call(T.bus, "Map", &error, NULL, "taua{sv}", id, 2, T.gpus[0], T.gpus[1], 0);
        ASSERT_BUS_ERROR(r, &error, SVMD_ERROR_ROLLBACK_FAILED);
        sd_bus_error_free(&error);
        c = get_metrics();
        test_fault_clear(&T);
        ASSERT_TRUE(sample(c, "svmd_rollbacks_total") == sample(b, "svmd_rollbacks_total") + 1);
        ASSERT_TRUE(sample(c, "svmd_rollbacks_failed_total") == sample(b, "svmd_rollbacks_failed_total") + 1);
        ASSERT_TRUE(errors(c, "Map", SVMD_ERROR_ROLLBACK_FAILED) == errors(b, "Map", SVMD_ERROR_ROLLBACK_FAILED) + 1);
        /* Degraded now, or repaired already by the timer (100 ms): either is the truth. */
        ASSERT_TRUE(sample(c, "svmd_ranges_degraded") <= 1);
        for (int i = 0; i < 500; i++) {
                _cleanup_free_ char *d = get_metrics();

                if (sample(d, "svmd_ranges_degraded") == 0)
                        break;
                ASSERT_TRUE(i < 499);
                usleep(10000);
        }
        test_free(T.bus, id);
}

/* In a child of another uid: its metrics over the bus and the direct socket. */
static void other_uid_reads(int fd) {
        sd_bus *bus, *direct;
        uint64_t id;

        test_become(UID_OTHER);
        bus = test_connect(false);
        direct = test_connect(true);
        id = allocate(bus, 8 * MiB, T.gpus[0], "vram", false);
        for (int k = 0; k < 2; k++) {
                _cleanup_free_ char *text = get_metrics_on(k == 0 ? bus : direct, SVMD_METRICS_FORMAT_PROMETHEUS);

                /* Its own scope, with its limits; nothing of root's. */
                ASSERT_TRUE(sample(text, "svmd_scope_vram_bytes{scope=\"uid:%d\"}", UID_OTHER) == 8 * MiB);
                ASSERT_TRUE(sample(text, "svmd_scope_limit_vram_bytes{scope=\"uid:%d\"}", UID_OTHER) == 64 * MiB);
                ASSERT_TRUE(!strstr(text, "scope=\"uid:0\""));
                /* Node-wide series are for everyone. */
                ASSERT_TRUE(sample(text, "svmd_up") == 1);
                ASSERT_TRUE(strstr(text, "svmd_calls_total{method=\"Allocate\"}"));
        }
        ASSERT_TRUE(write(fd, &id, sizeof(id)) == sizeof(id));
        /* Keep the range until root has looked. */
        ASSERT_TRUE(read(fd, &id, sizeof(id)) == sizeof(id));
        sd_bus_flush_close_unref(direct);
        sd_bus_flush_close_unref(bus);
        _exit(0);
}

static void test_scopes(void) {
        _cleanup_free_ char *a = NULL, *b = NULL;
        int sv[2], status;
        uint64_t id;
        pid_t pid;

        printf("scopes: another uid sees its own\n");
        /* Root's scope has usage the other uid must not see. */
        uint64_t mine = allocate(T.bus, 2 * MiB, T.gpus[0], "vram", false);
        a = get_metrics();
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ? -errno : 0);
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                close(sv[0]);
                other_uid_reads(sv[1]);
        }
        close(sv[1]);
        ASSERT_TRUE(read(sv[0], &id, sizeof(id)) == sizeof(id));
        b = get_metrics();
        ASSERT_TRUE(write(sv[0], &id, sizeof(id)) == sizeof(id));
        ASSERT_TRUE(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        close(sv[0]);

        /* Root sees every scope, with the limits where the configuration sets them. */
        ASSERT_TRUE(sample(b, "svmd_scope_vram_bytes{scope=\"uid:%d\"}", UID_OTHER) == 8 * MiB);
        ASSERT_TRUE(sample(b, "svmd_scope_ranges{scope=\"uid:%d\"}", UID_OTHER) == 1);
        ASSERT_TRUE(sample(b, "svmd_scope_limit_vram_bytes{scope=\"uid:%d\"}", UID_OTHER) == 64 * MiB);
        ASSERT_TRUE(sample(b, "svmd_scope_limit_ranges{scope=\"uid:%d\"}", UID_OTHER) == 4);
        ASSERT_TRUE(sample(b, "svmd_scope_vram_bytes{scope=\"uid:0\"}") == 2 * MiB);
        ASSERT_TRUE(!strstr(b, "svmd_scope_limit_vram_bytes{scope=\"uid:0\"}"));
        /*
         * Each call counted once: root's first GetMetrics, and the other uid's two (the one on
         * the bus ran twice, before and after its polkit check).
         */
        ASSERT_TRUE(calls(b, "GetMetrics") == calls(a, "GetMetrics") + 3);
        test_free(T.bus, mine);
}

static void test_restart(void) {
        _cleanup_free_ char *a = NULL, *b = NULL;
        uint64_t id;

        printf("restart\n");
        a = get_metrics();
        id = allocate(T.bus, 2 * MiB, T.gpus[0], "vram", true);
        test_kill_and_wait_restart(&T);
        b = get_metrics();
        ASSERT_TRUE(sample(b, "svmd_restarts_total") == sample(a, "svmd_restarts_total") + 1);
        ASSERT_TRUE(sample(b, "svmd_ranges_recovered") == 1);
        ASSERT_TRUE(sample(b, "svmd_ranges_persistent") == 1);
        ASSERT_TRUE(sample(b, "svmd_ranges_lost") == 0);
        /* A new process: its call counters start again. */
        ASSERT_TRUE(calls(b, "Allocate") == 0);
        test_free(T.bus, id);
}

int main(void) {
        test_setup(&T);
        ASSERT_TRUE(T.n_gpus >= 2);
        test_formats();
        test_calls_and_errors();
        test_numbers();
        test_latency();
        test_rollbacks();
        test_scopes();
        test_restart();
        test_teardown(&T);
        printf("ok\n");
        return 0;
}
