/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Names shared by the daemon and the client library: bus names, object paths,
 * error names, option keys and enumerations as they travel on the wire.
 * Changing one of these is an ABI break.
 */

#include <errno.h>
#include <systemd/sd-bus.h>

#define SVMD_BUS_NAME           "org.svmd1"
#define SVMD_MANAGER_PATH       "/org/svmd1"
#define SVMD_MANAGER_INTERFACE  "org.svmd1.Manager"
#define SVMD_GPU_PATH_PREFIX    "/org/svmd1/gpu"
#define SVMD_GPU_INTERFACE      "org.svmd1.Gpu"
#define SVMD_RANGE_PATH_PREFIX  "/org/svmd1/range"
#define SVMD_RANGE_INTERFACE    "org.svmd1.Range"
#define SVMD_IO_SOCKET_NAME     "io.socket"

/* Errors (docs/dbus-api.md, "Errors"). InvalidArgs and AccessDenied are the freedesktop ones. */
#define SVMD_ERROR_INVALID_ARGS     SD_BUS_ERROR_INVALID_ARGS
#define SVMD_ERROR_ACCESS_DENIED    SD_BUS_ERROR_ACCESS_DENIED
#define SVMD_ERROR_NO_SUCH_RANGE    "org.svmd1.Error.NoSuchRange"
#define SVMD_ERROR_NO_SUCH_GPU      "org.svmd1.Error.NoSuchGpu"
#define SVMD_ERROR_NO_SUCH_TOKEN    "org.svmd1.Error.NoSuchToken"
#define SVMD_ERROR_QUOTA_EXCEEDED   "org.svmd1.Error.QuotaExceeded"
#define SVMD_ERROR_OUT_OF_MEMORY    "org.svmd1.Error.OutOfMemory"
#define SVMD_ERROR_BUSY             "org.svmd1.Error.Busy"
#define SVMD_ERROR_NOT_SUPPORTED    "org.svmd1.Error.NotSupported"
#define SVMD_ERROR_DEVICE_LOST      "org.svmd1.Error.DeviceLost"
#define SVMD_ERROR_ROLLBACK_FAILED  "org.svmd1.Error.RollbackFailed"
#define SVMD_ERROR_KERNEL           "org.svmd1.Error.Kernel"
#define SVMD_ERROR_REQUEST_ID_REUSED "org.svmd1.Error.RequestIdReused"
#define SVMD_ERROR_GPU_RESETTING    "org.svmd1.Error.GpuResetting"
#define SVMD_ERROR_REVOKED          "org.svmd1.Error.Revoked"
/* The direct socket refused a connection or a message over the limits of svmd.conf. */
#define SVMD_ERROR_LIMITS_EXCEEDED  SD_BUS_ERROR_LIMITS_EXCEEDED

/*
 * errno ↔ error name, registered by both sides with sd_bus_error_add_map()
 * so sd_bus_error_get_errno() gives a meaningful errno to library callers.
 */
extern const sd_bus_error_map svmd_error_map[];

/* Domains (Allocate's `domain` argument, Range.Domain). */
#define SVMD_DOMAIN_VRAM "vram"
#define SVMD_DOMAIN_GTT  "gtt"
#define SVMD_DOMAIN_HOST "host"
#define SVMD_DOMAIN_SVM  "svm"

/* Option keys of a{sv} arguments. */
#define SVMD_OPT_FLAGS      "flags"       /* as */
#define SVMD_OPT_MAP        "map"         /* au */
#define SVMD_OPT_ALIGNMENT  "alignment"   /* t */
#define SVMD_OPT_LABEL      "label"       /* s */
#define SVMD_OPT_PERSISTENT "persistent"  /* b */
#define SVMD_OPT_DRY_RUN    "dry-run"     /* b */
#define SVMD_OPT_REQUEST_ID "request-id"  /* s */

/*
 * SVM attributes (Allocate options of an "svm" range, SetAttributes, the
 * SvmAttributes property). Locations are gpu_ids, or SVMD_SVM_LOCATION_SYSTEM;
 * a preferred location may also be SVMD_SVM_LOCATION_NONE.
 */
#define SVMD_OPT_SVM_PREFERRED       "svm-preferred"       /* u */
#define SVMD_OPT_SVM_PREFETCH        "svm-prefetch"        /* u */
#define SVMD_OPT_SVM_ACCESS          "svm-access"          /* au: GPUs that may access it (and map it) */
#define SVMD_OPT_SVM_ACCESS_IN_PLACE "svm-access-in-place" /* au: GPUs that access it where it is, no migration */
#define SVMD_OPT_SVM_NO_ACCESS       "svm-no-access"       /* au: GPUs that may not */
#define SVMD_OPT_SVM_FLAGS           "svm-flags"           /* as: the exact set, names in kfd-svm.h */
#define SVMD_OPT_SVM_GRANULARITY     "svm-granularity"     /* u: log2 of the migration unit in pages, 0–63 */
#define SVMD_SVM_LOCATION_SYSTEM 0U
#define SVMD_SVM_LOCATION_NONE   0xFFFFFFFFU

/* Commit operation keys (besides the options above). */
#define SVMD_OPT_SIZE       "size"        /* t */
#define SVMD_OPT_GPU        "gpu"         /* u */
#define SVMD_OPT_DOMAIN     "domain"      /* s */
#define SVMD_OPT_ID         "id"          /* t */
#define SVMD_OPT_REF        "ref"         /* u: index of an earlier Allocate in the same Commit */
#define SVMD_OPT_GPUS       "gpus"        /* au */
#define SVMD_OPT_HOST_RANGES "host-ranges" /* a(tt) */

/* ListRanges filter keys. */
#define SVMD_FILTER_OWNER   "owner"       /* u */
#define SVMD_FILTER_GPU     "gpu"         /* u */
#define SVMD_FILTER_LABEL   "label"       /* s */
#define SVMD_FILTER_OFFSET  "offset"      /* t */
#define SVMD_FILTER_AFTER   "after"       /* t: only ids above it; pass the last id of the previous page */
#define SVMD_FILTER_LIMIT   "limit"       /* t */
#define SVMD_FILTER_ALL     "all"         /* b: every user's ranges (administrators) */

/* Share grant keys. */
#define SVMD_GRANT_UID          "uid"          /* u */
#define SVMD_GRANT_UNIT         "unit"         /* s: glob over the attaching caller's unit */
#define SVMD_GRANT_CGROUP       "cgroup"       /* s: prefix of the attaching caller's cgroup */
#define SVMD_GRANT_READ_ONLY    "read-only"    /* b */
#define SVMD_GRANT_EXPIRES_USEC "expires-usec" /* t: CLOCK_REALTIME µs */

/* Revoke option keys. */
#define SVMD_REVOKE_UID         "uid"          /* u: only this uid's holds; absent: every hold and token */

/* GetUsage keys. */
#define SVMD_USAGE_SCOPE        "scope"
#define SVMD_USAGE_RANGES       "ranges"
#define SVMD_USAGE_VRAM         "vram"
#define SVMD_USAGE_HOST         "host"
#define SVMD_USAGE_VRAM_PER_GPU "vram-per-gpu"

/* GetMetrics options and formats (docs/metrics.md). */
#define SVMD_OPT_FORMAT                "format"      /* s */
#define SVMD_METRICS_FORMAT_OPENMETRICS "openmetrics" /* OpenMetrics 1.0 text (the default) */
#define SVMD_METRICS_FORMAT_PROMETHEUS  "prometheus"  /* Prometheus text 0.0.4 */

/* Allocation flag names (Allocate option "flags"). */
#define SVMD_FLAG_WRITABLE      "writable"
#define SVMD_FLAG_EXECUTABLE    "executable"
#define SVMD_FLAG_PUBLIC        "public"
#define SVMD_FLAG_COHERENT      "coherent"
#define SVMD_FLAG_UNCACHED      "uncached"
#define SVMD_FLAG_EXT_COHERENT  "ext-coherent"
#define SVMD_FLAG_CONTIGUOUS    "contiguous"
#define SVMD_FLAG_NO_SUBSTITUTE "no-substitute"

/* Limits an unprivileged caller cannot push past; checked before any allocation. */
#define SVMD_MAX_LABEL_LEN        256U
#define SVMD_MAX_REQUEST_ID_LEN   128U
#define SVMD_MAX_GPUS_PER_CALL    64U
#define SVMD_MAX_COMMIT_OPS       1024U
#define SVMD_MAX_BATCH_PIECES     4096U
#define SVMD_MAX_LIST_LIMIT       4096U
