/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "config.h"
#include "executor.h"
#include "gpu.h"
#include "id-table.h"
#include "log.h"
#include "manager.h"
#include "metrics.h"
#include "quota.h"
#include "str-table.h"
#include "svmd-protocol.h"

/* Latency buckets (docs/metrics.md): upper bounds in ns and as the "le" label writes them. */
static const struct {
        uint64_t nsec;
        const char *le;
} buckets[] = {
        { 10000, "1e-05" },        { 25000, "2.5e-05" },     { 50000, "5e-05" },
        { 100000, "0.0001" },      { 250000, "0.00025" },    { 500000, "0.0005" },
        { 1000000, "0.001" },      { 2500000, "0.0025" },    { 5000000, "0.005" },
        { 10000000, "0.01" },      { 25000000, "0.025" },    { 50000000, "0.05" },
        { 100000000, "0.1" },      { 250000000, "0.25" },    { 500000000, "0.5" },
        { 1000000000, "1" },       { 2500000000, "2.5" },    { 10000000000, "10" },
};
#define N_BUCKETS ELEMENTSOF(buckets)

/*
 * The error names a method's errors are counted by: svmd's own (protocol/svmd-errors.c)
 * and the D-Bus errors svmd answers with. Anything else is "other".
 */
static const char *const error_names[] = {
        SVMD_ERROR_NO_SUCH_RANGE,
        SVMD_ERROR_NO_SUCH_GPU,
        SVMD_ERROR_NO_SUCH_TOKEN,
        SVMD_ERROR_QUOTA_EXCEEDED,
        SVMD_ERROR_OUT_OF_MEMORY,
        SVMD_ERROR_BUSY,
        SVMD_ERROR_NOT_SUPPORTED,
        SVMD_ERROR_DEVICE_LOST,
        SVMD_ERROR_ROLLBACK_FAILED,
        SVMD_ERROR_KERNEL,
        SVMD_ERROR_REQUEST_ID_REUSED,
        SD_BUS_ERROR_INVALID_ARGS,
        SD_BUS_ERROR_ACCESS_DENIED,
        SD_BUS_ERROR_LIMITS_EXCEEDED,
        SD_BUS_ERROR_NO_MEMORY,
        SD_BUS_ERROR_NOT_SUPPORTED,
        SD_BUS_ERROR_IO_ERROR,
        SD_BUS_ERROR_TIMEOUT,
        "org.freedesktop.DBus.Error.InvalidFileContent",
        SD_BUS_ERROR_FAILED,
        "other",
};
#define N_ERRORS ELEMENTSOF(error_names)

typedef struct MethodStats {
        const char *name;                       /* the vtable's member name */
        sd_bus_message_handler_t handler;
        uint64_t calls;
        uint64_t duration_nsec;
        uint64_t buckets[N_BUCKETS + 1];        /* per bucket, not cumulative; the last is +Inf */
        uint64_t errors[N_ERRORS];
} MethodStats;

struct Metrics {
        sd_bus_vtable *vtable;
        MethodStats *methods;                   /* sorted by name */
        size_t n_methods;
        bool deferred;

        uint64_t rollbacks;
        uint64_t rollbacks_failed;
        uint64_t starts;                        /* since boot, this one included */
        uint64_t start_realtime_usec;
        uint64_t recovery_usec;
        uint64_t recovered_ranges;
};

static const char *const format_table[_METRICS_FORMAT_MAX] = {
        [METRICS_FORMAT_OPENMETRICS] = SVMD_METRICS_FORMAT_OPENMETRICS,
        [METRICS_FORMAT_PROMETHEUS] = SVMD_METRICS_FORMAT_PROMETHEUS,
};

const char *metrics_format_to_string(MetricsFormat f) {
        if (f < 0 || f >= _METRICS_FORMAT_MAX)
                return NULL;
        return format_table[f];
}

MetricsFormat metrics_format_from_string(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(format_table); i++)
                if (streq(format_table[i], s))
                        return (MetricsFormat) i;
        return _METRICS_FORMAT_INVALID;
}

static uint64_t now_nsec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000000) + (uint64_t) ts.tv_nsec;
}

static MethodStats *find_method(Metrics *mx, const char *member) {
        size_t lo = 0, hi = mx->n_methods;

        while (member && lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = strcmp(member, mx->methods[mid].name);

                if (c == 0)
                        return &mx->methods[mid];
                if (c < 0)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return NULL;
}

/* The name the caller sees for a failed call: the error set, else the one sd-bus makes of r. */
static size_t error_index(int r, const sd_bus_error *error) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        const char *name;

        if (sd_bus_error_is_set(error))
                name = error->name;
        else {
                (void) sd_bus_error_set_errno(&e, r);
                name = e.name;
        }
        for (size_t i = 0; name && i < N_ERRORS - 1; i++)
                if (streq(error_names[i], name))
                        return i;
        return N_ERRORS - 1;
}

static void count_call(MethodStats *s, uint64_t nsec, int r, const sd_bus_error *error) {
        size_t b = 0;

        while (b < N_BUCKETS && nsec > buckets[b].nsec)
                b++;
        s->calls++;
        s->duration_nsec += nsec;
        s->buckets[b]++;
        if (r < 0)
                s->errors[error_index(r, error)]++;
}

/*
 * Every method of the manager's vtable runs through here: the handler, timed, and its
 * outcome counted once, when it answers. The vtable's userdata is the Manager.
 */
static int method_counted(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        Metrics *mx = m->metrics;
        MethodStats *s = find_method(mx, sd_bus_message_get_member(msg));
        uint64_t t0;
        int r;

        assert(s); /* sd-bus dispatches only the vtable's members here */
        mx->deferred = false;
        t0 = now_nsec();
        r = s->handler(msg, userdata, error);
        if (mx->deferred)
                mx->deferred = false;
        else
                count_call(s, now_nsec() - t0, r, error);
        return r;
}

static int compare_methods(const void *a, const void *b) {
        return strcmp(((const MethodStats *) a)->name, ((const MethodStats *) b)->name);
}

int metrics_new(Metrics **ret, const sd_bus_vtable *vtable) {
        _cleanup_(metrics_freep) Metrics *mx = calloc(1, sizeof(Metrics));
        size_t n = 0, n_methods = 0;

        if (!mx)
                return -ENOMEM;
        while (vtable[n].type != _SD_BUS_VTABLE_END)
                if (vtable[n++].type == _SD_BUS_VTABLE_METHOD)
                        n_methods++;

        mx->vtable = new(sd_bus_vtable, n + 1);
        mx->methods = new0(MethodStats, n_methods);
        if (!mx->vtable || !mx->methods)
                return -ENOMEM;
        memcpy(mx->vtable, vtable, (n + 1) * sizeof(sd_bus_vtable));
        for (size_t i = 0; i < n; i++) {
                if (mx->vtable[i].type != _SD_BUS_VTABLE_METHOD || !mx->vtable[i].x.method.handler)
                        continue;
                mx->methods[mx->n_methods++] = (MethodStats) {
                        .name = mx->vtable[i].x.method.member,
                        .handler = mx->vtable[i].x.method.handler,
                };
                mx->vtable[i].x.method.handler = method_counted;
        }
        qsort(mx->methods, mx->n_methods, sizeof(MethodStats), compare_methods);
        mx->starts = 1;
        *ret = TAKE_PTR(mx);
        return 0;
}

Metrics *metrics_free(Metrics *mx) {
        if (!mx)
                return NULL;
        free(mx->vtable);
        free(mx->methods);
        free(mx);
        return NULL;
}

const sd_bus_vtable *metrics_vtable(const Metrics *mx) {
        return mx->vtable;
}

void metrics_call_deferred(Metrics *mx) {
        if (mx)
                mx->deferred = true;
}

bool metrics_take_deferred(Metrics *mx) {
        bool d = mx && mx->deferred;

        if (mx)
                mx->deferred = false;
        return d;
}

uint64_t metrics_now_nsec(void) {
        return now_nsec();
}

void metrics_call_finished(Metrics *mx, const char *method, uint64_t nsec, int r, const sd_bus_error *error) {
        MethodStats *s = mx ? find_method(mx, method) : NULL;

        if (s)
                count_call(s, nsec, r, error);
}

int metrics_method_count(const Metrics *mx, const char *method, const char *error, uint64_t *ret) {
        const MethodStats *s = find_method((Metrics *) mx, method);

        if (!s)
                return -ENOENT;
        if (!error) {
                *ret = s->calls;
                return 0;
        }
        for (size_t i = 0; i < N_ERRORS; i++)
                if (streq(error_names[i], error)) {
                        *ret = s->errors[i];
                        return 0;
                }
        return -ENOENT;
}

void metrics_rollback(Metrics *mx, bool failed) {
        if (!mx)
                return;
        mx->rollbacks++;
        if (failed)
                mx->rollbacks_failed++;
}

#define STARTS_FILE "metrics-starts"

/* The starts since boot: a number in the runtime directory, which lives until reboot. */
static uint64_t count_start(const char *runtime_dir) {
        _cleanup_free_ char *path = NULL, *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        char buf[32] = "";
        uint64_t starts = 0;
        ssize_t l;

        if (asprintf(&path, "%s/" STARTS_FILE, runtime_dir) < 0 ||
            asprintf(&tmp, "%s/" STARTS_FILE ".tmp", runtime_dir) < 0)
                return 1;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0 && (l = read(fd, buf, sizeof(buf) - 1)) > 0) {
                buf[l] = '\0';
                starts = strtoull(buf, NULL, 10);
        }
        fd = safe_close(fd);
        if (starts >= UINT64_MAX / 2)
                starts = 0;
        starts++;

        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        l = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", starts);
        if (fd < 0 || write(fd, buf, (size_t) l) != l || rename(tmp, path) < 0) {
                log_debug("Counting svmd's start in %s failed, ignoring.", path);
                (void) unlink(tmp);
        }
        return starts;
}

void metrics_started(Metrics *mx, const char *runtime_dir, uint64_t recovery_usec, uint64_t recovered_ranges) {
        struct timespec ts;

        if (!mx)
                return;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        mx->start_realtime_usec = (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
        mx->starts = count_start(runtime_dir);
        mx->recovery_usec = recovery_usec;
        mx->recovered_ranges = recovered_ranges;
}

/* ---- the text ---- */

typedef struct Out {
        FILE *f;
        MetricsFormat format;
} Out;

typedef enum MetricType {
        METRIC_GAUGE,
        METRIC_COUNTER,
        METRIC_HISTOGRAM,
} MetricType;

static const char *const metric_type_table[] = {
        [METRIC_GAUGE] = "gauge",
        [METRIC_COUNTER] = "counter",
        [METRIC_HISTOGRAM] = "histogram",
};

/*
 * HELP and TYPE of a family. A counter's family is named without "_total" in
 * OpenMetrics and with it in the Prometheus text format; its samples always end in "_total".
 */
static void family(Out *o, const char *name, MetricType type, const char *help) {
        const char *suffix = type == METRIC_COUNTER && o->format == METRICS_FORMAT_PROMETHEUS ? "_total" : "";

        fprintf(o->f, "# HELP %s%s %s\n# TYPE %s%s %s\n", name, suffix, help, name, suffix,
                metric_type_table[type]);
}

/* One invalid label value makes a scraper reject the whole text, and a tenant chooses its cgroup's name. */
void metrics_put_label_value(FILE *f, const char *s) {
        const unsigned char *p = (const unsigned char *) s;

        while (*p) {
                size_t n = 0;
                uint32_t cp = 0;

                if (*p < 0x80) {
                        if (*p == '\\' || *p == '"')
                                fputc('\\', f), fputc(*p, f);
                        else if (*p == '\n')
                                fputs("\\n", f);
                        else
                                fputc(*p, f);
                        p++;
                        continue;
                }
                if ((*p & 0xe0) == 0xc0)
                        n = 1, cp = *p & 0x1f;
                else if ((*p & 0xf0) == 0xe0)
                        n = 2, cp = *p & 0x0f;
                else if ((*p & 0xf8) == 0xf0)
                        n = 3, cp = *p & 0x07;
                bool ok = n > 0;
                for (size_t i = 1; ok && i <= n; i++) {
                        ok = (p[i] & 0xc0) == 0x80;
                        cp = (cp << 6) | (p[i] & 0x3f);
                }
                /* Overlong forms, surrogates and values past U+10FFFF are not UTF-8 either. */
                if (ok && ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
                           (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff))
                        ok = false;
                if (!ok) {
                        fprintf(f, "\\\\x%02x", *p);
                        p++;
                        continue;
                }
                fwrite(p, 1, n + 1, f);
                p += n + 1;
        }
}

static void sample_u64(Out *o, const char *name, const char *label, const char *value, uint64_t v) {
        fputs(name, o->f);
        if (label) {
                fprintf(o->f, "{%s=\"", label);
                metrics_put_label_value(o->f, value);
                fputs("\"}", o->f);
        }
        fprintf(o->f, " %" PRIu64 "\n", v);
}

static void gauge(Out *o, const char *name, const char *help, uint64_t v) {
        family(o, name, METRIC_GAUGE, help);
        sample_u64(o, name, NULL, NULL, v);
}

static void counter(Out *o, const char *name, const char *help, uint64_t v) {
        char sample[128];

        family(o, name, METRIC_COUNTER, help);
        snprintf(sample, sizeof(sample), "%s_total", name);
        sample_u64(o, sample, NULL, NULL, v);
}

/* Seconds from ns, exactly: no float rounding in the text. */
static void put_seconds(FILE *f, uint64_t nsec) {
        fprintf(f, "%" PRIu64 ".%09" PRIu64, nsec / 1000000000, nsec % 1000000000);
}

static void render_node(Out *o, Manager *m) {
        Metrics *mx = m->metrics;
        uint64_t teardown_ranges = 0, on_loop, on_worker;

        gauge(o, "svmd_up", "1: svmd answered (svmctl writes 0 when it cannot reach svmd).", 1);
        family(o, "svmd_start_time_seconds", METRIC_GAUGE, "When svmd started, in seconds since the Unix epoch.");
        fputs("svmd_start_time_seconds ", o->f);
        put_seconds(o->f, mx->start_realtime_usec * 1000);
        fputc('\n', o->f);
        counter(o, "svmd_restarts", "Times svmd started again since boot (its runtime directory kept).",
                mx->starts - 1);
        family(o, "svmd_recovery_duration_seconds", METRIC_GAUGE,
               "How long restoring the persistent ranges took at the last start.");
        fputs("svmd_recovery_duration_seconds ", o->f);
        put_seconds(o->f, mx->recovery_usec * 1000);
        fputc('\n', o->f);
        gauge(o, "svmd_ranges_recovered", "Persistent ranges restored at the last start.", mx->recovered_ranges);
        gauge(o, "svmd_ranges_lost", "Recorded ranges that could not be restored at the last start (LostRanges).",
              m->n_lost);
        gauge(o, "svmd_ranges", "Live ranges.", id_index_size(m->ranges));
        gauge(o, "svmd_ranges_persistent", "Live persistent ranges.", m->n_persistent);
        gauge(o, "svmd_ranges_degraded", "Ranges whose rollback or free failed, being repaired.", m->n_degraded);
        (void) manager_teardown_pending(m, &teardown_ranges);
        gauge(o, "svmd_ranges_freeing", "Ranges of closed connections not freed yet.", teardown_ranges);
        gauge(o, "svmd_allocated_bytes", "Bytes of all live ranges.", m->bytes_allocated);
        gauge(o, "svmd_clients", "Connected clients (bus connections and direct peers).",
              str_table_size(m->clients));
        counter(o, "svmd_rollbacks", "Transactions rolled back.", mx->rollbacks);
        counter(o, "svmd_rollbacks_failed", "Rollbacks in which an undo failed and left a range degraded.",
                mx->rollbacks_failed);
        executor_get_ioctl_counts(m->executor, &on_loop, &on_worker);
        family(o, "svmd_kernel_ioctls", METRIC_COUNTER,
               "KFD ioctls of changing requests by the thread that ran them: the event loop (small buffers "
               "while nothing else waited) or a kernel worker.");
        sample_u64(o, "svmd_kernel_ioctls_total", "thread", "loop", on_loop);
        sample_u64(o, "svmd_kernel_ioctls_total", "thread", "worker", on_worker);
}

/* A family's name and HELP text. */
typedef struct MetricDoc {
        const char *name, *help;
} MetricDoc;

static void render_gpus(Out *o, Manager *m) {
        static const MetricDoc gpu_metrics[] = {
                { "svmd_gpu_vram_total_bytes", "VRAM of the GPU (VramTotal)." },
                { "svmd_gpu_vram_used_bytes", "VRAM in use (VramUsed)." },
                { "svmd_gpu_vram_free_bytes", "VRAM free for new allocations (VramFree)." },
                { "svmd_gpu_gtt_used_bytes", "GTT and host ranges homed on the GPU (GttUsed)." },
                { "svmd_gpu_mapped_bytes", "Bytes of ranges mapped into the GPU's VM (Mapped)." },
        };
        uint64_t avail[QUOTA_MAX_GPUS];

        /* The same numbers as the Gpu objects' properties (gpu-dbus.c). */
        for (size_t i = 0; i < m->n_gpus && i < QUOTA_MAX_GPUS; i++)
                if (gpu_vram_available(m->gpus[i], GPU_AVAILABLE_MAX_AGE_USEC, &avail[i]) < 0)
                        avail[i] = 0;

        for (size_t k = 0; k < ELEMENTSOF(gpu_metrics); k++) {
                family(o, gpu_metrics[k].name, METRIC_GAUGE, gpu_metrics[k].help);
                for (size_t i = 0; i < m->n_gpus && i < QUOTA_MAX_GPUS; i++) {
                        Gpu *g = m->gpus[i];
                        uint64_t total = g->kfd->vram_size;
                        uint64_t v[] = { total, total > avail[i] ? total - avail[i] : 0, avail[i],
                                         g->gtt_allocated, g->bytes_mapped };
                        char id[16];

                        snprintf(id, sizeof(id), "0x%x", g->gpu_id);
                        sample_u64(o, gpu_metrics[k].name, "gpu", id, v[k]);
                }
        }
}

static void scope_sample(Out *o, const char *name, const Scope *s, const char *gpu, uint64_t v) {
        fprintf(o->f, "%s{scope=\"", name);
        metrics_put_label_value(o->f, s->key);
        if (gpu)
                fprintf(o->f, "\",gpu=\"%s", gpu);
        fprintf(o->f, "\"} %" PRIu64 "\n", v);
}

static void render_scopes(Out *o, Manager *m, const char *only) {
        static const MetricDoc usage_metrics[] = {
                { "svmd_scope_ranges", "Ranges charged to the quota scope." },
                { "svmd_scope_vram_bytes", "VRAM bytes charged to the quota scope." },
                { "svmd_scope_host_bytes", "GTT, host and svm bytes charged to the quota scope." },
                { "svmd_scope_tokens", "Share tokens charged to the quota scope." },
        };
        static const MetricDoc limit_metrics[] = {
                { "svmd_scope_limit_ranges", "The scope's quota-ranges (absent: no limit)." },
                { "svmd_scope_limit_vram_bytes", "The scope's quota-vram (absent: no limit)." },
                { "svmd_scope_limit_vram_per_gpu_bytes", "The scope's quota-vram-per-gpu (absent: no limit)." },
                { "svmd_scope_limit_host_bytes", "The scope's quota-host (absent: no limit)." },
        };
        StrTableIter it;
        Scope *s;

        for (size_t k = 0; k < ELEMENTSOF(usage_metrics); k++) {
                family(o, usage_metrics[k].name, METRIC_GAUGE, usage_metrics[k].help);
                it = (StrTableIter) {};
                while (quota_iterate(m->quotas, &it, &s)) {
                        const uint64_t v[] = { s->usage.ranges, s->usage.vram, s->usage.host, s->usage.tokens };

                        if (!only || streq(only, s->key))
                                scope_sample(o, usage_metrics[k].name, s, NULL, v[k]);
                }
        }

        family(o, "svmd_scope_gpu_vram_bytes", METRIC_GAUGE,
               "VRAM bytes charged to the quota scope per home GPU (GPUs with none left out).");
        it = (StrTableIter) {};
        while (quota_iterate(m->quotas, &it, &s)) {
                if (only && !streq(only, s->key))
                        continue;
                for (size_t i = 0; i < m->n_gpus && i < QUOTA_MAX_GPUS; i++) {
                        char id[16];

                        if (s->usage.vram_per_gpu[i] == 0)
                                continue;
                        snprintf(id, sizeof(id), "0x%x", m->gpus[i]->gpu_id);
                        scope_sample(o, "svmd_scope_gpu_vram_bytes", s, id, s->usage.vram_per_gpu[i]);
                }
        }

        /* The limits of the configuration in force, as GetUsage reports them. */
        for (size_t k = 0; k < ELEMENTSOF(limit_metrics); k++) {
                family(o, limit_metrics[k].name, METRIC_GAUGE, limit_metrics[k].help);
                it = (StrTableIter) {};
                while (quota_iterate(m->quotas, &it, &s)) {
                        QuotaLimits l;
                        bool limited;

                        if ((only && !streq(only, s->key)) ||
                            quota_limits_for_key(&m->config, s->key, &limited, &l) < 0 || !limited)
                                continue;
                        const uint64_t v[] = { l.ranges, l.vram, l.vram_per_gpu, l.host };
                        if (v[k] != QUOTA_UNLIMITED)
                                scope_sample(o, limit_metrics[k].name, s, NULL, v[k]);
                }
        }
}

static void render_methods(Out *o, Metrics *mx) {
        family(o, "svmd_calls", METRIC_COUNTER, "Method calls answered, by method.");
        for (size_t i = 0; i < mx->n_methods; i++)
                sample_u64(o, "svmd_calls_total", "method", mx->methods[i].name, mx->methods[i].calls);

        family(o, "svmd_call_errors", METRIC_COUNTER,
               "Method calls answered with an error, by method and error name (\"other\": any other name).");
        for (size_t i = 0; i < mx->n_methods; i++)
                for (size_t e = 0; e < N_ERRORS; e++)
                        if (mx->methods[i].errors[e] > 0)
                                fprintf(o->f, "svmd_call_errors_total{method=\"%s\",error=\"%s\"} %" PRIu64 "\n",
                                        mx->methods[i].name, error_names[e], mx->methods[i].errors[e]);

        family(o, "svmd_call_duration_seconds", METRIC_HISTOGRAM,
               "Time svmd spent on a call, from its dispatch to its answer (a polkit check's wait not included).");
        for (size_t i = 0; i < mx->n_methods; i++) {
                const MethodStats *s = &mx->methods[i];
                uint64_t cumulative = 0;

                for (size_t b = 0; b <= N_BUCKETS; b++) {
                        cumulative += s->buckets[b];
                        fprintf(o->f, "svmd_call_duration_seconds_bucket{method=\"%s\",le=\"%s\"} %" PRIu64 "\n",
                                s->name, b < N_BUCKETS ? buckets[b].le : "+Inf", cumulative);
                }
                fprintf(o->f, "svmd_call_duration_seconds_sum{method=\"%s\"} ", s->name);
                put_seconds(o->f, s->duration_nsec);
                fprintf(o->f, "\nsvmd_call_duration_seconds_count{method=\"%s\"} %" PRIu64 "\n", s->name, s->calls);
        }
}

int metrics_render(Manager *m, MetricsFormat format, const char *scope, char **ret, size_t *ret_size) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        Out o = { .format = format };

        assert(format >= 0 && format < _METRICS_FORMAT_MAX);
        if (!m->metrics)
                return -ENODATA;
        o.f = open_memstream(&buf, &size);
        if (!o.f)
                return -ENOMEM;
        render_node(&o, m);
        render_gpus(&o, m);
        render_scopes(&o, m, scope);
        render_methods(&o, m->metrics);
        if (format == METRICS_FORMAT_OPENMETRICS)
                fputs("# EOF\n", o.f);
        if (ferror(o.f) || fflush(o.f) != 0) {
                fclose(o.f);
                return -ENOMEM;
        }
        fclose(o.f);
        *ret = TAKE_PTR(buf);
        if (ret_size)
                *ret_size = size;
        return 0;
}
