/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What svmd counts for Prometheus (docs/metrics.md): calls, errors by name and
 * latency per method, rollbacks, restarts and the last recovery; and the text
 * GetMetrics answers with, which reads the GPUs', quota scopes' and manager's
 * state when asked.
 *
 * Per-method accounting hooks into one place: metrics_vtable() is the manager's
 * vtable with every method handler wrapped (method_counted() in metrics.c).
 * A handler that answers later calls metrics_call_deferred(), and the call is
 * counted when its handler runs again and answers, or, for a request that ran as a
 * job on the kernel executor, when the job answers (metrics_call_finished()). Labels come only from fixed
 * sets, the vtable's method names and the error names of svmd's protocol, so
 * the memory is fixed at start whatever clients send.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <systemd/sd-bus.h>

#include "macro.h"

typedef struct Manager Manager;
typedef struct Metrics Metrics;

typedef enum MetricsFormat {
        METRICS_FORMAT_OPENMETRICS,     /* OpenMetrics 1.0 text, ends with "# EOF" */
        METRICS_FORMAT_PROMETHEUS,      /* Prometheus text 0.0.4 (node_exporter's textfile collector) */
        _METRICS_FORMAT_MAX,
        _METRICS_FORMAT_INVALID = -EINVAL,
} MetricsFormat;

const char *metrics_format_to_string(MetricsFormat f);
MetricsFormat metrics_format_from_string(const char *s);

/* Accounting for the methods of vtable (copied, with its handlers wrapped). */
int metrics_new(Metrics **ret, const sd_bus_vtable *vtable);
Metrics *metrics_free(Metrics *mx);
DEFINE_TRIVIAL_CLEANUP_FUNC(Metrics *, metrics_free);

/* The vtable to register instead of the one given to metrics_new(). */
const sd_bus_vtable *metrics_vtable(const Metrics *mx);

/* The running handler answers later (polkit, a job on the executor): nothing is counted for this run. */
void metrics_call_deferred(Metrics *mx);
/* Whether metrics_call_deferred() was called since the last call of this; clears it. */
bool metrics_take_deferred(Metrics *mx);
/* The nanosecond clock the method latencies are taken with. */
uint64_t metrics_now_nsec(void);
/*
 * A call of method that a job on the executor answered (method-util.c): its latency since it was
 * dispatched, its result and error, counted as method_counted() would have.
 */
void metrics_call_finished(Metrics *mx, const char *method, uint64_t nsec, int r, const sd_bus_error *error);

/* Calls of method so far (error NULL), or those answered with that error name ("other" too). */
int metrics_method_count(const Metrics *mx, const char *method, const char *error, uint64_t *ret);

/* A transaction rolled back; failed: an undo failed and left a range degraded. */
void metrics_rollback(Metrics *mx, bool failed);

/*
 * The start is done: counts it in runtime_dir (starts since boot, so restarts survive
 * the process), with the time restoring the persistent ranges took and how many came back.
 */
void metrics_started(Metrics *mx, const char *runtime_dir, uint64_t recovery_usec, uint64_t recovered_ranges);

/*
 * A label value as both text formats need it: \, " and newline escaped, and bytes that are
 * not UTF-8 written as the four characters \xNN (the backslash escaped).
 */
void metrics_put_label_value(FILE *f, const char *s);

/* The text of every metric; scope NULL: the series of every quota scope, else only scope's. */
int metrics_render(Manager *m, MetricsFormat format, const char *scope, char **ret, size_t *ret_size);
