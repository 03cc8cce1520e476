/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the method handlers share: the arguments an operation can carry (read
 * strictly from a{sv}), resolving GPUs and ranges, turning arguments into a
 * validated RangeSpec, authorization, and replies that remember request ids.
 */

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-bus.h>

#include "bus-util.h"
#include "kfd-svm.h"
#include "range.h"

typedef struct Manager Manager;
typedef struct Client Client;

/* Every argument an operation can carry; each method or Commit operation allows a subset. */
typedef struct OpArgs {
        uint64_t size;
        bool has_size;
        uint32_t gpu;
        bool has_gpu;
        char *domain;
        BusStrv flags;
        bool has_flags;
        BusU32Array map;
        uint64_t alignment;
        char *label;
        bool persistent;
        bool dry_run;
        char *request_id;
        uint64_t id;
        bool has_id;
        uint32_t ref;
        bool has_ref;
        BusU32Array gpus;
        bool has_gpus;
        BusPairArray host_ranges;
        bool has_host_ranges;
        /* ListRanges filter */
        uint32_t owner;
        bool has_owner;
        uint64_t offset;
        uint64_t after;
        bool has_after;
        uint64_t limit;
        bool has_limit;
        bool all;
        /* Share grant */
        uint32_t grant_uid;
        bool has_grant_uid;
        char *unit;
        char *cgroup;
        bool read_only;
        uint64_t expires_usec;
        /* SVM attributes */
        uint32_t svm_preferred;
        bool has_svm_preferred;
        uint32_t svm_prefetch;
        bool has_svm_prefetch;
        BusU32Array svm_access;
        BusU32Array svm_access_in_place;
        BusU32Array svm_no_access;
        BusStrv svm_flags;
        bool has_svm_flags;
        uint32_t svm_granularity;
        bool has_svm_granularity;
} OpArgs;

/* svm-* arguments as one SET_ATTR list, validated against the node. */
typedef struct SvmChange {
        struct kfd_ioctl_svm_attribute list[KFD_SVM_ATTRS_MAX];
        uint32_t n;
        uint64_t access;        /* GPUs given ACCESS or ACCESS_IN_PLACE (Gpu.index bits) */
        uint64_t no_access;     /* GPUs given NO_ACCESS */
} SvmChange;

extern const BusOption allocate_options[];
extern const BusOption change_options[];
extern const BusOption commit_allocate_options[];
extern const BusOption commit_batch_options[];
extern const BusOption commit_map_options[];
extern const BusOption commit_free_options[];
extern const BusOption filter_options[];
extern const BusOption set_attributes_options[];
extern const BusOption commit_set_attributes_options[];
extern const BusOption grant_options[];

void op_args_done(OpArgs *a);

int gpus_to_mask(Manager *m, const uint32_t *ids, size_t n, const char *what, uint64_t *ret, sd_bus_error *error);
int parse_domain(const char *s, RangeDomain *ret, sd_bus_error *error);
/* Any svm-* argument given? */
bool op_args_has_svm(const OpArgs *a);
int parse_svm_change(Manager *m, const OpArgs *a, SvmChange *ret, sd_bus_error *error);
/* NoSuchRange, "Range N does not exist.": the one answer for a missing id and for another tenant's range. */
int range_not_found(uint64_t id, sd_bus_error *error);
/*
 * Busy for a degraded range (only to callers allowed to know it). In a request's job it also claims
 * the range for the job (executor.h): JOB_RETRY while another request changes it.
 */
int range_check_busy(Range *range, sd_bus_error *error);
/*
 * Run a mutating method's handler as a job (executor.h): its KFD ioctls run on the executor while
 * the loop serves others, and it replies when it ends. A handler that meets a range another request
 * is changing (JOB_RETRY) waits for that request and runs again from the start: requests on one
 * range take their turns in the order they came (docs/dbus-api.md, "Concurrent requests").
 */
int method_run_job(Manager *m, sd_bus_message *msg, sd_bus_message_handler_t handler, sd_bus_error *error);
/*
 * The range id names, for a caller that may act on it: its owner (by uid), a holder where
 * holders_ok, root, or org.svmd1.manage. This comes before any check of the range's state or
 * kind, so that a caller who may not see the range gets exactly the answer of an id that does
 * not exist (docs/dbus-api.md, "Errors"); owners and holders who may not do this get AccessDenied.
 * 1: *ret set. 0: polkit answers later (return 1 from the handler). < 0: refused or failed.
 */
int authorize_range(Manager *m, sd_bus_message *msg, Client *c, uint64_t id, bool holders_ok, const char *verb,
                    Range **ret, sd_bus_error *error);

/* A method on one existing range: what its prologue needs. */
typedef struct RangeCall {
        uint64_t id;
        const char *verb;               /* "Mapping": in polkit's question and in AccessDenied */
        bool holders_ok;                /* holders may do it, not only owners */
        const char *request_id;         /* the caller's "request-id" (checked), or NULL */
        const char *replay_key;         /* or svmd's own key into the request cache (Free's) */
} RangeCall;

/*
 * The prologue of every method on one range (docs/architecture.md, "The path of a request"):
 * the caller's client → a retry answered from the request cache → the range → authorized.
 * 1: go on with *ret_client and *ret_range. 0: answered from the cache, or polkit answers
 * later: return 1 from the handler. < 0: refused (error set) or failed.
 */
int method_prologue(Manager *m, sd_bus_message *msg, const RangeCall *call, Client **ret_client, Range **ret_range,
                    sd_bus_error *error);

/* Allocation arguments → a validated spec (quota included); *pending accumulates over a Commit. */
/* *ret_svm: the initial attributes of an svm range (malloc()ed; NULL for other domains), spec->svm points there. */
int prepare_allocation(Manager *m, const OpArgs *a, RangeDomain domain, Client *client, QuotaRequest *pending,
                       RangeSpec *spec, RangeSpecPiece **ret_pieces, KfdSvmAttrs **ret_svm, uint64_t *ret_map,
                       sd_bus_error *error);

/* May this client act on range? Owners (by uid) may; holders too where holders_ok; root always. */
bool client_may(const Client *c, const Range *range, bool holders_ok);
/*
 * 1: allowed. 0: a polkit query is in flight: return 1 from the handler, it runs again.
 * < 0: refused (AccessDenied set) or failed.
 */
int authorize_admin(Manager *m, sd_bus_message *msg, Client *c, const char *what, sd_bus_error *error);

/*
 * For calls where a refusal is no error but a narrower answer (Subscribe, GetMetrics): the
 * caller's client, and whether it sees every tenant (root, or org.svmd1.manage).
 * 1: *ret_client and *ret_all set. 0: polkit answers later (return 1 from the handler). < 0: failed.
 */
int authorize_sees_all(Manager *m, sd_bus_message *msg, const char *what, Client **ret_client, bool *ret_all,
                       sd_bus_error *error);

/*
 * A request with a request id: checks the id, and answers a retry from the cache.
 * 0: go on (no id, or not seen before); 1: answered; < 0: refused (error set) or failed.
 */
int request_replay(Manager *m, sd_bus_message *msg, Client *c, const char *request_id, sd_bus_error *error);

int reply_and_remember(Manager *m, sd_bus_message *msg, sd_bus_message *reply, Client *c, const char *request_id);
int reply_allocation(Manager *m, sd_bus_message *msg, Range *range, Client *c, const char *request_id);
int reply_empty(Manager *m, sd_bus_message *msg, Client *c, const char *request_id);
void log_allocated(Range *range);
