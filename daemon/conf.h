/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * /etc/svmd/svmd.conf: strict JSON. Unknown keys, duplicate keys and values of
 * the wrong type are errors that name the key; a missing file means defaults.
 * Documented in svmd.conf(5).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CONFIG_DEFAULT_VA_BASE UINT64_C(0x400000000000)
#define CONFIG_DEFAULT_VA_SIZE (UINT64_C(16) << 40)

typedef enum CachePolicy {
        CACHE_POLICY_COHERENT = 0,      /* KFD policy values: cache_policy_coherent */
        CACHE_POLICY_NONCOHERENT = 1,
} CachePolicy;

/* svmd's KFD process XNACK mode (SET_XNACK_MODE), set once at start. */
typedef enum XnackSetting {
        XNACK_KEEP = 0,         /* the kernel's default for the process (amdgpu.noretry) */
        XNACK_OFF,
        XNACK_ON,
} XnackSetting;

/* UINT64_MAX: no limit (a missing key); 0 allows nothing. */
#define QUOTA_UNLIMITED UINT64_MAX

typedef struct QuotaLimits {
        uint64_t vram;          /* bytes of VRAM over all GPUs */
        uint64_t vram_per_gpu;  /* bytes of VRAM on any one GPU */
        uint64_t host;          /* bytes of GTT and host memory */
        uint64_t ranges;        /* number of ranges */
} QuotaLimits;

typedef enum QuotaMatch {
        QUOTA_MATCH_UID,
        QUOTA_MATCH_UNIT,       /* fnmatch() glob over the caller's systemd unit */
        QUOTA_MATCH_CGROUP,     /* prefix of the caller's cgroup path */
        _QUOTA_MATCH_MAX,
} QuotaMatch;

typedef struct QuotaRule {
        QuotaMatch match;
        uid_t uid;
        char *pattern;          /* unit glob or cgroup prefix */
        QuotaLimits limits;
} QuotaRule;

#define CONFIG_DEFAULT_PERSISTENT_RANGES 32768U
#define CONFIG_DEFAULT_RANGES_PER_CLIENT 65536U
#define CONFIG_DEFAULT_TOKENS_PER_CLIENT 256U
/* Per quota scope and per range, whatever the number of connections (docs/svmd.conf.5). */
#define CONFIG_DEFAULT_REQUEST_IDS_PER_SCOPE 4096U
#define CONFIG_DEFAULT_TOKENS_PER_SCOPE 1024U
#define CONFIG_DEFAULT_TOKENS_PER_RANGE 64U
#define CONFIG_DEFAULT_HOLDS_PER_RANGE 256U
/* The shipped unit's FileDescriptorStoreMax= (systemd/svmd.service.in). */
#define CONFIG_DEFAULT_FD_STORE_MAX 32768U
/* KFD contexts (the primary and secondary ones, interface 1.19+): docs/architecture.md, "KFD contexts". */
#define CONFIG_DEFAULT_KFD_CONTEXTS 4U
#define CONFIG_MAX_KFD_CONTEXTS 64U

/*
 * The direct socket (docs/svmd.conf.5, "limits"): peers in total and per uid,
 * the largest message, and how long a peer may take to authenticate, to send a
 * message it started, or to read the replies queued for it.
 */
#define CONFIG_DEFAULT_CONNECTIONS              1024U
#define CONFIG_DEFAULT_CONNECTIONS_PER_UID      64U
#define CONFIG_DEFAULT_MESSAGE_SIZE             (UINT64_C(4) << 20)
#define CONFIG_DEFAULT_PEER_TIMEOUT_MS          10000U

/*
 * Worker threads per KFD context that run the kernel's part of requests (daemon/executor.h); read at
 * start only. Several let ioctls overlap where the kernel holds its per-process lock for part of a
 * call only (docs/benchmarks.md, "Concurrency").
 */
#define CONFIG_DEFAULT_KERNEL_WORKERS           4U
#define CONFIG_KERNEL_WORKERS_MAX               64U

/*
 * The journal of persistent ranges is compacted into a snapshot once it has grown this much: smaller
 * restarts faster (less to replay), larger writes snapshots less often.
 */
#define CONFIG_DEFAULT_JOURNAL_COMPACT_SIZE     (UINT64_C(4) << 20)
#define CONFIG_JOURNAL_COMPACT_SIZE_MIN         (UINT64_C(64) << 10)
#define CONFIG_JOURNAL_COMPACT_SIZE_MAX         (UINT64_C(1) << 30)

typedef struct Config {
        uint64_t va_base;
        uint64_t va_size;

        /* SET_MEMORY_POLICY, applied where the GPU generation needs it */
        CachePolicy default_policy;
        bool mfma_high_precision;       /* gfx 9.4/9.5 misc_process_flag, interface 1.18+ */

        XnackSetting xnack;             /* GPU page faults on svm ranges */

        /* The first matching rule applies, in the order written. */
        QuotaRule *quotas;
        size_t n_quotas;
        bool has_default_quota;
        QuotaLimits default_quota;      /* for callers no rule matches (root excepted) */

        uint64_t limit_persistent_ranges;
        uint64_t limit_ranges_per_client;
        uint64_t limit_tokens_per_client;       /* per connection */
        uint64_t limit_request_ids_per_scope;
        uint64_t limit_tokens_per_scope;
        uint64_t limit_tokens_per_range;
        uint64_t limit_holds_per_range;
        uint64_t limit_fd_store_max;    /* the service manager's FileDescriptorStoreMax= */

        uint64_t limit_connections;
        uint64_t limit_connections_per_uid;
        uint64_t limit_message_size;
        uint64_t limit_peer_timeout_ms;

        uint64_t limit_kfd_contexts;    /* with interface 1.19+; one below */
        uint64_t limit_kernel_workers;
        uint64_t limit_journal_compact_size;
} Config;

void config_init_defaults(Config *c);
/* Free what a loaded Config owns; it is left with defaults. */
void config_done(Config *c);

/*
 * Load path into *ret. -ENOENT is returned as is (the caller decides whether a
 * missing file means defaults); any other error comes with a message in
 * *ret_error naming the file, key and reason (caller frees).
 */
int config_load(const char *path, Config *ret, char **ret_error);

/* Same, from a string (tests, fuzzing). */
int config_parse(const char *text, const char *origin, Config *ret, char **ret_error);
