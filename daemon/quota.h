/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Quota scopes and usage accounting. Every caller maps to one scope: the first
 * rule of the configuration that matches it (a uid, a unit glob or a cgroup
 * prefix; each user, unit or cgroup matched is limited separately), else the
 * default quota per user. Root is unlimited unless a rule matches uid 0.
 * Usage is what the ranges owned by the scope's callers hold; shared ranges
 * are charged to their owner only. Checks run before the first ioctl of a
 * transaction and the daemon is single-threaded, so concurrent requests can
 * never together exceed a limit.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

#include "conf.h"
#include "str-table.h"
#include "executor.h"

typedef struct Manager Manager;
typedef struct Identity Identity;

#define QUOTA_MAX_GPUS 64

typedef struct Usage {
        uint64_t ranges;
        uint64_t vram;
        uint64_t host;                  /* GTT and host */
        uint64_t vram_per_gpu[QUOTA_MAX_GPUS];
        uint64_t tokens;                /* share tokens charged (client.h), "tokens-per-scope" */
} Usage;

typedef struct QuotaTable QuotaTable;

typedef struct Scope {
        char *key;                      /* "uid:1000", "unit:docker-4f.scope", "cgroup:/machine.slice/x.scope" */
        unsigned n_ref;
        QuotaTable *table;
        JobClaim alloc_claim;           /* a Commit of it with allocations in flight (commit.c) */
        bool limited;
        QuotaLimits limits;
        Usage usage;
        /* KFD context of its VRAM/GTT ranges (context.h), while it has context_ranges there */
        uint8_t context;
        uint64_t context_ranges;
} Scope;

int quota_table_new(QuotaTable **ret);
QuotaTable *quota_table_free(QuotaTable *t);

/* The scope an identity is charged to under config c (a new reference). */
int quota_scope_for(QuotaTable *t, const Config *c, uid_t uid, const char *unit, const char *cgroup,
                    Scope **ret);
Scope *scope_ref(Scope *s);
void scope_unref(QuotaTable *t, Scope *s);

/* Every scope in use, one per call, in no particular order; false after the last. */
bool quota_iterate(QuotaTable *t, StrTableIter *i, Scope **ret);

/* Find a scope by key ("uid:1000"); NULL if nobody uses it. */
Scope *quota_find_scope(QuotaTable *t, const char *key);

/*
 * The limits the configuration gives a scope key, whether or not anyone uses it now:
 * "uid:N" as for a caller of that uid in no matching unit or cgroup. -EINVAL for a malformed key.
 */
int quota_limits_for_key(const Config *c, const char *key, bool *ret_limited, QuotaLimits *ret);

/* Drop all usage and context assignments (before recomputing them after a reload). */
void quota_reset_usage(QuotaTable *t);

/* What a request would add: checked as a whole. */
typedef struct QuotaRequest {
        uint64_t ranges;
        uint64_t persistent;
        uint64_t vram;
        uint64_t host;
        uint64_t vram_per_gpu[QUOTA_MAX_GPUS];
        uint64_t window;        /* bytes of the SVM window planned (not quota: what a Commit claims) */
} QuotaRequest;

/*
 * Would the scope stay within its limits with req on top? If not, sets
 * QuotaExceeded with a sentence naming the scope, resource, use and limit, and
 * returns -EDQUOT; *ret_resource names the resource ("vram", "vram-per-gpu",
 * "host", "ranges") for the QuotaExceeded signal.
 */
int quota_check(Manager *m, const Scope *s, const QuotaRequest *req, const char **ret_resource,
                sd_bus_error *error);

void usage_add(Usage *u, bool vram, unsigned gpu, uint64_t size, int sign);
