/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * org.svmd1.Manager: where requests enter. Each handler reads its arguments,
 * validates them completely (nothing has changed yet), takes the no-op fast
 * path where there is one, then applies the change as one transaction, logs,
 * publishes and replies (STYLE.md, "Handler order").
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "bus-util.h"
#include "gpu.h"
#include "log.h"
#include "manager.h"
#include "range.h"
#include "request-cache.h"
#include "size-util.h"
#include "svmd-protocol.h"
#include "transaction.h"

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
        uint64_t limit;
        bool has_limit;
} OpArgs;

#define O(key, type, field, max) BUS_OPTION(key, OpArgs, type, field, max)
#define OP(key, type, field, max, present) BUS_OPTION_P(key, OpArgs, type, field, max, present)

static const BusOption allocate_options[] = {
        OP(SVMD_OPT_FLAGS, BUS_OPTION_STRV, flags, 16, has_flags),
        O(SVMD_OPT_MAP, BUS_OPTION_U32_ARRAY, map, SVMD_MAX_GPUS_PER_CALL),
        O(SVMD_OPT_ALIGNMENT, BUS_OPTION_U64, alignment, 0),
        O(SVMD_OPT_LABEL, BUS_OPTION_STRING, label, SVMD_MAX_LABEL_LEN),
        O(SVMD_OPT_PERSISTENT, BUS_OPTION_BOOL, persistent, 0),
        O(SVMD_OPT_DRY_RUN, BUS_OPTION_BOOL, dry_run, 0),
        O(SVMD_OPT_REQUEST_ID, BUS_OPTION_STRING, request_id, SVMD_MAX_REQUEST_ID_LEN),
        {}
};

static const BusOption change_options[] = {
        O(SVMD_OPT_DRY_RUN, BUS_OPTION_BOOL, dry_run, 0),
        O(SVMD_OPT_REQUEST_ID, BUS_OPTION_STRING, request_id, SVMD_MAX_REQUEST_ID_LEN),
        {}
};

static const BusOption commit_allocate_options[] = {
        OP(SVMD_OPT_SIZE, BUS_OPTION_U64, size, 0, has_size),
        OP(SVMD_OPT_GPU, BUS_OPTION_U32, gpu, 0, has_gpu),
        O(SVMD_OPT_DOMAIN, BUS_OPTION_STRING, domain, 16),
        OP(SVMD_OPT_FLAGS, BUS_OPTION_STRV, flags, 16, has_flags),
        O(SVMD_OPT_MAP, BUS_OPTION_U32_ARRAY, map, SVMD_MAX_GPUS_PER_CALL),
        O(SVMD_OPT_ALIGNMENT, BUS_OPTION_U64, alignment, 0),
        O(SVMD_OPT_LABEL, BUS_OPTION_STRING, label, SVMD_MAX_LABEL_LEN),
        O(SVMD_OPT_PERSISTENT, BUS_OPTION_BOOL, persistent, 0),
        {}
};

static const BusOption commit_batch_options[] = {
        OP(SVMD_OPT_HOST_RANGES, BUS_OPTION_PAIRS, host_ranges, SVMD_MAX_BATCH_PIECES, has_host_ranges),
        OP(SVMD_OPT_GPU, BUS_OPTION_U32, gpu, 0, has_gpu),
        OP(SVMD_OPT_FLAGS, BUS_OPTION_STRV, flags, 16, has_flags),
        O(SVMD_OPT_MAP, BUS_OPTION_U32_ARRAY, map, SVMD_MAX_GPUS_PER_CALL),
        O(SVMD_OPT_ALIGNMENT, BUS_OPTION_U64, alignment, 0),
        O(SVMD_OPT_LABEL, BUS_OPTION_STRING, label, SVMD_MAX_LABEL_LEN),
        O(SVMD_OPT_PERSISTENT, BUS_OPTION_BOOL, persistent, 0),
        {}
};

static const BusOption commit_map_options[] = {
        OP(SVMD_OPT_ID, BUS_OPTION_U64, id, 0, has_id),
        OP(SVMD_OPT_REF, BUS_OPTION_U32, ref, 0, has_ref),
        OP(SVMD_OPT_GPUS, BUS_OPTION_U32_ARRAY, gpus, SVMD_MAX_GPUS_PER_CALL, has_gpus),
        {}
};

static const BusOption commit_free_options[] = {
        OP(SVMD_OPT_ID, BUS_OPTION_U64, id, 0, has_id),
        OP(SVMD_OPT_REF, BUS_OPTION_U32, ref, 0, has_ref),
        {}
};

static const BusOption filter_options[] = {
        OP(SVMD_FILTER_OWNER, BUS_OPTION_U32, owner, 0, has_owner),
        OP(SVMD_FILTER_GPU, BUS_OPTION_U32, gpu, 0, has_gpu),
        O(SVMD_FILTER_LABEL, BUS_OPTION_STRING, label, SVMD_MAX_LABEL_LEN),
        O(SVMD_FILTER_OFFSET, BUS_OPTION_U64, offset, 0),
        OP(SVMD_FILTER_LIMIT, BUS_OPTION_U64, limit, 0, has_limit),
        {}
};

static const BusOption all_options[] = {
        O(SVMD_OPT_FLAGS, BUS_OPTION_STRV, flags, 0),
        O(SVMD_OPT_MAP, BUS_OPTION_U32_ARRAY, map, 0),
        O(SVMD_OPT_LABEL, BUS_OPTION_STRING, label, 0),
        O(SVMD_OPT_REQUEST_ID, BUS_OPTION_STRING, request_id, 0),
        O(SVMD_OPT_DOMAIN, BUS_OPTION_STRING, domain, 0),
        O(SVMD_OPT_GPUS, BUS_OPTION_U32_ARRAY, gpus, 0),
        O(SVMD_OPT_HOST_RANGES, BUS_OPTION_PAIRS, host_ranges, 0),
        {}
};

static void op_args_done(OpArgs *a) {
        bus_options_free(all_options, a);
}

#define LIST_DEFAULT_LIMIT 1000U

/* ---- shared helpers ---- */

static int caller_uid(sd_bus_message *msg, uid_t *ret) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *c = NULL;
        int r;

        r = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID, &c);
        if (r < 0)
                return r;
        return sd_bus_creds_get_euid(c, ret);
}

static int gpus_to_mask(Manager *m, const uint32_t *ids, size_t n, const char *what, uint64_t *ret,
                        sd_bus_error *error) {
        uint64_t mask = 0;

        for (size_t i = 0; i < n; i++) {
                Gpu *g = manager_find_gpu(m, ids[i]);
                if (!g)
                        return sd_bus_error_setf(error, SVMD_ERROR_NO_SUCH_GPU,
                                                 "GPU 0x%x does not exist; ListGpus shows the GPUs of this node.",
                                                 ids[i]);
                if (mask & (UINT64_C(1) << g->index))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "GPU 0x%x is listed twice in %s.", ids[i], what);
                mask |= UINT64_C(1) << g->index;
        }
        *ret = mask;
        return 0;
}

static int parse_flags(const OpArgs *a, uint16_t *ret, sd_bus_error *error) {
        uint16_t flags = 0;

        /* Without "flags" a range is writable; with it, exactly what is listed. */
        if (!a->has_flags) {
                *ret = RANGE_FLAG_WRITABLE;
                return 0;
        }
        for (size_t i = 0; i < a->flags.n; i++) {
                int f = range_flag_from_string(a->flags.items[i]);
                if (f < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Unknown flag \"%.32s\"; known flags: writable, executable, public, "
                                                 "coherent, uncached, ext-coherent, contiguous, no-substitute.",
                                                 a->flags.items[i]);
                flags |= (uint16_t) f;
        }
        *ret = flags;
        return 0;
}

static int parse_domain(const char *s, RangeDomain *ret, sd_bus_error *error) {
        RangeDomain d;

        if (streq_ptr(s, SVMD_DOMAIN_SVM))
                return sd_bus_error_set(error, SVMD_ERROR_NOT_SUPPORTED,
                                        "The \"svm\" domain is not available in this version of svmd; use vram, gtt or host.");
        d = s ? range_domain_from_string(s) : _RANGE_DOMAIN_INVALID;
        if (d < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unknown domain \"%.32s\"; use vram, gtt or host.", strempty(s));
        *ret = d;
        return 0;
}

static int resolve_home(Manager *m, uint32_t gpu_id, RangeDomain d, uint32_t *ret, sd_bus_error *error) {
        Gpu *g;

        /* System memory needs an owning GPU for the KFD buffer, but any will do. */
        if (gpu_id == 0 && d != RANGE_DOMAIN_VRAM) {
                *ret = 0;
                return 0;
        }
        if (gpu_id == 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                        "VRAM needs the id of the GPU it lives on; ListGpus shows them.");
        g = manager_find_gpu(m, gpu_id);
        if (!g)
                return sd_bus_error_setf(error, SVMD_ERROR_NO_SUCH_GPU,
                                         "GPU 0x%x does not exist; ListGpus shows the GPUs of this node.", gpu_id);
        *ret = g->index;
        return 0;
}

static int lookup_range(Manager *m, uint64_t id, Range **ret, sd_bus_error *error) {
        Range *r = manager_find_range(m, id);

        if (!r)
                return sd_bus_error_setf(error, SVMD_ERROR_NO_SUCH_RANGE, "Range %" PRIu64 " does not exist.", id);
        if (r->state == RANGE_STATE_DEGRADED)
                return sd_bus_error_setf(error, SVMD_ERROR_BUSY,
                                         "Range %" PRIu64 " is degraded and being repaired; try again later.", id);
        *ret = r;
        return 0;
}

/* Resolve AllocateBatch pieces: each must lie inside one host range; returns a malloc()ed array. */
static int batch_pieces(Manager *m, const BusPairArray *hr, RangePiece **ret, uint64_t *ret_total,
                        sd_bus_error *error) {
        _cleanup_free_ RangePiece *pieces = NULL;
        uint64_t total = 0;

        if (hr->n == 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "A batch needs at least one host range.");

        pieces = calloc(hr->n, sizeof(RangePiece));
        if (!pieces)
                return -ENOMEM;

        for (size_t i = 0; i < hr->n; i++) {
                uint64_t addr = hr->items[i].a, size = hr->items[i].b, start, rsize, end;
                Range *src;

                if (size == 0 || addr % 4096 != 0 || size % 4096 != 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Host range %zu (0x%" PRIx64 ", %" PRIu64 ") must be non-empty and 4 KiB aligned.",
                                                 i, addr, size);
                if (__builtin_add_overflow(addr, size, &end) || __builtin_add_overflow(total, size, &total))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Host range %zu overflows the address space.", i);
                if (va_space_lookup(m->va, addr, &start, &rsize) < 0 ||
                    !(src = id_table_get(m->ranges_by_va, start)) || end > start + rsize)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Host range %zu (0x%" PRIx64 "+%" PRIu64 ") does not lie inside one host range of svmd; "
                                                 "allocate host memory first.", i, addr, size);
                if (src->domain != RANGE_DOMAIN_HOST || src->n_pieces != 1 || src->pieces[0].source)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Host range %zu lies in range %" PRIu64 ", which is not a plain host range.",
                                                 i, src->id);
                if (src->state == RANGE_STATE_DEGRADED)
                        return sd_bus_error_setf(error, SVMD_ERROR_BUSY,
                                                 "Range %" PRIu64 " is degraded and being repaired; try again later.", src->id);
                pieces[i] = (RangePiece) { .userptr = addr, .size = size, .source = src };
        }

        *ret_total = total;
        *ret = TAKE_PTR(pieces);
        return 0;
}

/* Build and validate a RangeSpec from allocation arguments. */
static int prepare_allocation(Manager *m, const OpArgs *a, RangeDomain domain, uid_t uid,
                              const uint64_t *extra_vram, RangeSpec *spec, RangePiece **ret_pieces,
                              uint64_t *ret_map, sd_bus_error *error) {
        _cleanup_free_ RangePiece *pieces = NULL;
        uint64_t map = 0, total = 0;
        uint32_t home = 0;
        uint16_t flags = 0;
        int r;

        r = resolve_home(m, a->gpu, domain, &home, error);
        if (r < 0)
                return r;
        r = parse_flags(a, &flags, error);
        if (r < 0)
                return r;
        r = gpus_to_mask(m, a->map.items, a->map.n, "\"map\"", &map, error);
        if (r < 0)
                return r;
        if (a->has_host_ranges) {
                r = batch_pieces(m, &a->host_ranges, &pieces, &total, error);
                if (r < 0)
                        return r;
        }

        *spec = (RangeSpec) {
                .size = a->has_host_ranges ? total : a->size,
                .home = home,
                .domain = domain,
                .flags = flags,
                .alignment = a->alignment,
                .label = a->label,
                .persistent = a->persistent,
                .owner_uid = uid,
                .pieces = pieces,
                .n_pieces = a->has_host_ranges ? (uint32_t) a->host_ranges.n : 0,
        };
        r = range_validate_spec(m, spec, extra_vram, error);
        if (r < 0)
                return r;
        r = range_validate_map(m, home, domain, map, error);
        if (r < 0)
                return r;

        *ret_map = map;
        *ret_pieces = TAKE_PTR(pieces);
        return 0;
}

static int reply_and_remember(Manager *m, sd_bus_message *msg, sd_bus_message *reply, uid_t uid,
                              const char *request_id) {
        int r;

        r = sd_bus_send(NULL, reply, NULL);
        if (r < 0)
                return r;
        if (request_id) {
                r = request_cache_store(m->requests, uid, request_id, sd_bus_message_get_member(msg), reply);
                if (r < 0)
                        log_warning_errno(r, "Remembering request \"%s\" failed, ignoring: %m", request_id);
        }
        return 1;
}

static int reply_allocation(Manager *m, sd_bus_message *msg, Range *range, uid_t uid, const char *request_id) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        r = range_path(range->id, &path);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "tto", range->id, range->va, path);
        if (r < 0)
                return r;
        return reply_and_remember(m, msg, reply, uid, request_id);
}

static int reply_empty(Manager *m, sd_bus_message *msg, uid_t uid, const char *request_id) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        return reply_and_remember(m, msg, reply, uid, request_id);
}

static void log_allocated(Range *range) {
        log_fields(LOG_DEBUG,
                   &((LogFields) { .range_id = range->id, .gpu_id = range->manager->gpus[range->home]->gpu_id }),
                   "Range %" PRIu64 ": %s of %s at 0x%" PRIx64 ".", range->id, FORMAT_BYTES(range->size),
                   range_domain_to_string(range->domain), range->va);
}

/* ---- methods ---- */

static int allocate_common(sd_bus_message *msg, Manager *m, OpArgs *a, RangeDomain domain, sd_bus_error *error) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        _cleanup_free_ RangePiece *pieces = NULL;
        RangeSpec spec;
        Range *range;
        uint64_t map;
        uid_t uid;
        int r;

        r = caller_uid(msg, &uid);
        if (r < 0)
                return r;
        if (a->request_id) {
                r = request_cache_replay(m->requests, msg, uid, a->request_id, error);
                if (r != 0)
                        return r;
        }

        r = prepare_allocation(m, a, domain, uid, NULL, &spec, &pieces, &map, error);
        if (r < 0)
                return r;
        if (a->dry_run)
                return sd_bus_reply_method_return(msg, "tto", UINT64_C(0), UINT64_C(0), "/");

        r = transaction_new(&t, m);
        if (r < 0)
                return r;
        r = range_create(t, &spec, &range, error);
        if (r >= 0)
                r = range_map(t, range, map, error);
        if (r >= 0)
                r = transaction_commit(t, error);
        if (r < 0) {
                transaction_abort(t, error);
                return r;
        }

        log_allocated(range);
        return reply_allocation(m, msg, range, uid, a->request_id);
}

static int method_allocate(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(op_args_done) OpArgs a = {};
        Manager *m = userdata;
        const char *domain_s;
        RangeDomain domain;
        int r;

        r = sd_bus_message_read(msg, "tus", &a.size, &a.gpu, &domain_s);
        if (r < 0)
                return r;
        r = bus_read_options(msg, allocate_options, &a, "options", error);
        if (r < 0)
                return r;
        r = parse_domain(domain_s, &domain, error);
        if (r < 0)
                return r;

        return allocate_common(msg, m, &a, domain, error);
}

static int method_allocate_batch(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(op_args_done) OpArgs a = {};
        Manager *m = userdata;
        int r;

        r = bus_read_pairs(msg, SVMD_MAX_BATCH_PIECES, "host_ranges", &a.host_ranges, error);
        if (r < 0)
                return r;
        a.has_host_ranges = true;
        r = sd_bus_message_read(msg, "u", &a.gpu);
        if (r < 0)
                return r;
        r = bus_read_options(msg, allocate_options, &a, "options", error);
        if (r < 0)
                return r;

        return allocate_common(msg, m, &a, RANGE_DOMAIN_HOST, error);
}

static int method_free(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        Manager *m = userdata;
        Range *range;
        uint64_t id;
        uid_t uid;
        int r;

        r = sd_bus_message_read(msg, "t", &id);
        if (r < 0)
                return r;
        r = lookup_range(m, id, &range, error);
        if (r < 0)
                return r;
        r = range_validate_free(range, error);
        if (r < 0)
                return r;
        r = caller_uid(msg, &uid);
        if (r < 0)
                return r;

        r = transaction_new(&t, m);
        if (r < 0)
                return r;
        r = range_free(t, range, error);
        if (r >= 0)
                r = transaction_commit(t, error);
        if (r < 0) {
                transaction_abort(t, error);
                return r;
        }

        log_fields(LOG_DEBUG, &((LogFields) { .range_id = id }), "Range %" PRIu64 " freed.", id);
        return reply_empty(m, msg, uid, NULL);
}

static int method_map(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        _cleanup_(op_args_done) OpArgs a = {};
        Manager *m = userdata;
        Range *range;
        uint64_t id, mask;
        uid_t uid;
        int r;

        r = sd_bus_message_read(msg, "t", &id);
        if (r < 0)
                return r;
        r = bus_read_u32_array(msg, SVMD_MAX_GPUS_PER_CALL, "gpu_ids", &a.gpus, error);
        if (r < 0)
                return r;
        r = bus_read_options(msg, change_options, &a, "options", error);
        if (r < 0)
                return r;

        if (a.gpus.n == 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "gpu_ids must name at least one GPU.");
        r = gpus_to_mask(m, a.gpus.items, a.gpus.n, "gpu_ids", &mask, error);
        if (r < 0)
                return r;
        r = lookup_range(m, id, &range, error);
        if (r < 0)
                return r;
        r = range_validate_map(m, range->home, range->domain, mask, error);
        if (r < 0)
                return r;
        r = caller_uid(msg, &uid);
        if (r < 0)
                return r;
        if (a.request_id) {
                r = request_cache_replay(m->requests, msg, uid, a.request_id, error);
                if (r != 0)
                        return r;
        }

        /* Mapping where it is mapped already changes nothing. */
        if (a.dry_run || (mask & ~range_mapped(range)) == 0)
                return reply_empty(m, msg, uid, a.dry_run ? NULL : a.request_id);

        r = transaction_new(&t, m);
        if (r < 0)
                return r;
        r = range_map(t, range, mask, error);
        if (r >= 0)
                r = transaction_commit(t, error);
        if (r < 0) {
                transaction_abort(t, error);
                return r;
        }
        return reply_empty(m, msg, uid, a.request_id);
}

static int method_unmap(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        _cleanup_(bus_u32_array_done) BusU32Array gpus = {};
        Manager *m = userdata;
        Range *range;
        uint64_t id, mask;
        uid_t uid;
        int r;

        r = sd_bus_message_read(msg, "t", &id);
        if (r < 0)
                return r;
        r = bus_read_u32_array(msg, SVMD_MAX_GPUS_PER_CALL, "gpu_ids", &gpus, error);
        if (r < 0)
                return r;
        if (gpus.n == 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "gpu_ids must name at least one GPU.");
        r = gpus_to_mask(m, gpus.items, gpus.n, "gpu_ids", &mask, error);
        if (r < 0)
                return r;
        r = lookup_range(m, id, &range, error);
        if (r < 0)
                return r;
        r = range_validate_unmap(range, range_mapped(range), mask, error);
        if (r < 0)
                return r;
        r = caller_uid(msg, &uid);
        if (r < 0)
                return r;

        r = transaction_new(&t, m);
        if (r < 0)
                return r;
        r = range_unmap(t, range, mask, error);
        if (r >= 0)
                r = transaction_commit(t, error);
        if (r < 0) {
                transaction_abort(t, error);
                return r;
        }
        return reply_empty(m, msg, uid, NULL);
}

/* ---- Commit ---- */

typedef enum OpKind {
        OP_ALLOCATE,
        OP_ALLOCATE_BATCH,
        OP_MAP,
        OP_UNMAP,
        OP_FREE,
        _OP_KIND_MAX,
        _OP_KIND_INVALID = -EINVAL,
} OpKind;

static const char *const op_kind_table[_OP_KIND_MAX] = {
        [OP_ALLOCATE] = "Allocate",
        [OP_ALLOCATE_BATCH] = "AllocateBatch",
        [OP_MAP] = "Map",
        [OP_UNMAP] = "Unmap",
        [OP_FREE] = "Free",
};

static const BusOption *const op_kind_options[_OP_KIND_MAX] = {
        [OP_ALLOCATE] = commit_allocate_options,
        [OP_ALLOCATE_BATCH] = commit_batch_options,
        [OP_MAP] = commit_map_options,
        [OP_UNMAP] = commit_map_options,
        [OP_FREE] = commit_free_options,
};

/* What validation knows about a range while walking the operations in order. */
typedef struct SimRange {
        Range *existing;        /* NULL for ranges created by this Commit */
        uint32_t home;
        RangeDomain domain;
        uint64_t mapped;
        uint32_t batch_users;
        bool freed;
} SimRange;

typedef struct CommitOp {
        OpKind kind;
        OpArgs args;
        RangeSpec spec;
        RangePiece *pieces;
        uint64_t mask;
        SimRange *sim;          /* target (Map/Unmap/Free) or created range (Allocate*) */
        Range *range;           /* resolved at execution */
} CommitOp;

typedef struct Commit {
        CommitOp *ops;
        size_t n_ops;
        SimRange *sims;         /* at most one per op */
        size_t n_sims;
} Commit;

static void commit_done(Commit *c) {
        for (size_t i = 0; i < c->n_ops; i++) {
                op_args_done(&c->ops[i].args);
                free(c->ops[i].pieces);
        }
        free(c->ops);
        free(c->sims);
        *c = (Commit) {};
}

static int prefix_error(sd_bus_error *error, size_t idx, OpKind kind, int r) {
        _cleanup_free_ char *msg = NULL, *name = NULL;

        if (!sd_bus_error_is_set(error))
                return r;
        name = strdup(error->name);
        if (asprintf(&msg, "Operation %zu (%s): %s", idx, op_kind_table[kind], strempty(error->message)) < 0 || !name)
                return -ENOMEM;
        sd_bus_error_free(error);
        sd_bus_error_set(error, name, msg);
        return r;
}

static int read_commit_ops(sd_bus_message *msg, Commit *c, sd_bus_error *error) {
        size_t allocated = 0;
        const char *kind_s;
        int r;

        r = sd_bus_message_enter_container(msg, 'a', "(sa{sv})");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(msg, 'r', "sa{sv}")) > 0) {
                CommitOp *op;
                OpKind kind = _OP_KIND_INVALID;
                char what[64];

                if (c->n_ops >= SVMD_MAX_COMMIT_OPS)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "A Commit takes at most %u operations.", SVMD_MAX_COMMIT_OPS);
                r = sd_bus_message_read_basic(msg, 's', &kind_s);
                if (r < 0)
                        return r;
                for (int k = 0; k < _OP_KIND_MAX; k++)
                        if (streq(op_kind_table[k], kind_s))
                                kind = k;
                if (kind < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Operation %zu: unknown operation \"%.32s\"; use Allocate, "
                                                 "AllocateBatch, Map, Unmap or Free.", c->n_ops, kind_s);

                if (c->n_ops == allocated) {
                        size_t na = allocated ? allocated * 2 : 8;
                        CommitOp *no = reallocarray(c->ops, na, sizeof(CommitOp));
                        if (!no)
                                return -ENOMEM;
                        c->ops = no;
                        allocated = na;
                }
                op = &c->ops[c->n_ops++];
                *op = (CommitOp) { .kind = kind };

                snprintf(what, sizeof(what), "operation %zu (%s)", c->n_ops - 1, kind_s);
                r = bus_read_options(msg, op_kind_options[kind], &op->args, what, error);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;
        if (c->n_ops == 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "A Commit needs at least one operation.");

        c->sims = calloc(c->n_ops, sizeof(SimRange));
        return c->sims ? 0 : -ENOMEM;
}

static int sim_target(Manager *m, Commit *c, size_t idx, SimRange **ret, sd_bus_error *error) {
        OpArgs *a = &c->ops[idx].args;
        SimRange *s;
        Range *r;
        int k;

        if (a->has_id == a->has_ref)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                        "Give exactly one of \"id\" (an existing range) and \"ref\" (an earlier Allocate).");
        if (a->has_ref) {
                if (a->ref >= idx || (c->ops[a->ref].kind != OP_ALLOCATE && c->ops[a->ref].kind != OP_ALLOCATE_BATCH))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "\"ref\" %" PRIu32 " does not name an earlier Allocate of this Commit.",
                                                 a->ref);
                s = c->ops[a->ref].sim;
        } else {
                k = lookup_range(m, a->id, &r, error);
                if (k < 0)
                        return k;
                s = NULL;
                for (size_t i = 0; i < c->n_sims; i++)
                        if (c->sims[i].existing == r)
                                s = &c->sims[i];
                if (!s) {
                        s = &c->sims[c->n_sims++];
                        *s = (SimRange) {
                                .existing = r,
                                .home = r->home,
                                .domain = r->domain,
                                .mapped = range_mapped(r),
                                .batch_users = r->n_batch_users,
                        };
                }
        }
        if (s->freed)
                return sd_bus_error_set(error, SVMD_ERROR_NO_SUCH_RANGE,
                                        "The range is freed by an earlier operation of this Commit.");
        *ret = s;
        return 0;
}

/* Validate every operation in order against simulated state; nothing changes. */
static int commit_validate(Manager *m, Commit *c, uid_t uid, sd_bus_error *error) {
        _cleanup_free_ uint64_t *extra_vram = calloc(m->n_gpus, sizeof(uint64_t));
        int r = 0;

        if (!extra_vram)
                return -ENOMEM;

        for (size_t i = 0; i < c->n_ops; i++) {
                CommitOp *op = &c->ops[i];
                OpArgs *a = &op->args;

                switch (op->kind) {
                case OP_ALLOCATE:
                case OP_ALLOCATE_BATCH: {
                        RangeDomain domain = RANGE_DOMAIN_HOST;

                        if (op->kind == OP_ALLOCATE) {
                                if (!a->has_size) {
                                        r = sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "\"size\" is missing.");
                                        break;
                                }
                                r = parse_domain(a->domain ?: SVMD_DOMAIN_VRAM, &domain, error);
                                if (r < 0)
                                        break;
                        } else if (!a->has_host_ranges) {
                                r = sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "\"host-ranges\" is missing.");
                                break;
                        }
                        r = prepare_allocation(m, a, domain, uid, extra_vram, &op->spec, &op->pieces, &op->mask,
                                               error);
                        if (r < 0)
                                break;
                        if (domain == RANGE_DOMAIN_VRAM)
                                extra_vram[op->spec.home] += ALIGN_POW2(op->spec.size, UINT64_C(4096));
                        op->sim = &c->sims[c->n_sims++];
                        *op->sim = (SimRange) { .home = op->spec.home, .domain = domain, .mapped = op->mask };
                        for (uint32_t p = 0; p < op->spec.n_pieces; p++)
                                for (size_t s = 0; s < c->n_sims; s++)
                                        if (c->sims[s].existing == op->pieces[p].source)
                                                c->sims[s].batch_users++;
                        break;
                }
                case OP_MAP:
                case OP_UNMAP:
                        if (!a->has_gpus || a->gpus.n == 0) {
                                r = sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "\"gpus\" must name at least one GPU.");
                                break;
                        }
                        r = sim_target(m, c, i, &op->sim, error);
                        if (r < 0)
                                break;
                        r = gpus_to_mask(m, a->gpus.items, a->gpus.n, "\"gpus\"", &op->mask, error);
                        if (r < 0)
                                break;
                        if (op->kind == OP_MAP) {
                                r = range_validate_map(m, op->sim->home, op->sim->domain, op->mask, error);
                                op->sim->mapped |= op->mask;
                        } else if ((op->mask & ~op->sim->mapped) != 0)
                                r = sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                                     "The range is not mapped to every GPU listed.");
                        else
                                op->sim->mapped &= ~op->mask;
                        break;
                case OP_FREE:
                        r = sim_target(m, c, i, &op->sim, error);
                        if (r < 0)
                                break;
                        if (op->sim->batch_users > 0)
                                r = sd_bus_error_set(error, SVMD_ERROR_BUSY,
                                                     "The range backs batch ranges; free those first.");
                        op->sim->freed = true;
                        op->sim->mapped = 0;
                        break;
                default:
                        r = -EINVAL;
                }
                if (r < 0)
                        return prefix_error(error, i, op->kind, r);
        }
        return 0;
}

static Range *op_range(Commit *c, CommitOp *op) {
        if (op->args.has_ref)
                return c->ops[op->args.ref].range;
        return op->sim->existing;
}

static int commit_execute(Transaction *t, Commit *c, sd_bus_error *error) {
        for (size_t i = 0; i < c->n_ops; i++) {
                CommitOp *op = &c->ops[i];
                int r;

                switch (op->kind) {
                case OP_ALLOCATE:
                case OP_ALLOCATE_BATCH:
                        op->spec.pieces = op->pieces;
                        r = range_create(t, &op->spec, &op->range, error);
                        if (r >= 0)
                                r = range_map(t, op->range, op->mask, error);
                        break;
                case OP_MAP:
                        op->range = op_range(c, op);
                        r = range_map(t, op->range, op->mask, error);
                        break;
                case OP_UNMAP:
                        op->range = op_range(c, op);
                        r = range_unmap(t, op->range, op->mask, error);
                        break;
                case OP_FREE:
                        op->range = op_range(c, op);
                        r = range_free(t, op->range, error);
                        break;
                default:
                        r = -EINVAL;
                }
                if (r < 0)
                        return prefix_error(error, i, op->kind, r);
        }
        return transaction_commit(t, error);
}

static int append_results(sd_bus_message *reply, Commit *c, bool dry_run) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(a{sv})");
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n_ops; i++) {
                CommitOp *op = &c->ops[i];

                r = sd_bus_message_open_container(reply, 'r', "a{sv}");
                if (r < 0)
                        return r;
                r = sd_bus_message_open_container(reply, 'a', "{sv}");
                if (r < 0)
                        return r;
                if (!dry_run && (op->kind == OP_ALLOCATE || op->kind == OP_ALLOCATE_BATCH)) {
                        _cleanup_free_ char *path = NULL;

                        r = range_path(op->range->id, &path);
                        if (r < 0)
                                return r;
                        r = sd_bus_message_append(reply, "{sv}{sv}{sv}", "id", "t", op->range->id, "va", "t",
                                                  op->range->va, "path", "o", path);
                } else if (!dry_run)
                        r = sd_bus_message_append(reply, "{sv}", "id", "t", op->range->id);
                if (r < 0)
                        return r;
                r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
                r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int method_commit(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(transaction_freep) Transaction *t = NULL;
        _cleanup_(commit_done) Commit c = {};
        _cleanup_(op_args_done) OpArgs o = {};
        Manager *m = userdata;
        uid_t uid;
        int r;

        r = read_commit_ops(msg, &c, error);
        if (r < 0)
                return r;
        r = bus_read_options(msg, change_options, &o, "options", error);
        if (r < 0)
                return r;
        r = caller_uid(msg, &uid);
        if (r < 0)
                return r;
        if (o.request_id) {
                r = request_cache_replay(m->requests, msg, uid, o.request_id, error);
                if (r != 0)
                        return r;
        }

        r = commit_validate(m, &c, uid, error);
        if (r < 0)
                return r;

        if (!o.dry_run) {
                r = transaction_new(&t, m);
                if (r < 0)
                        return r;
                r = commit_execute(t, &c, error);
                if (r < 0) {
                        transaction_abort(t, error);
                        return r;
                }
        }

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = append_results(reply, &c, o.dry_run);
        if (r < 0)
                return r;
        return reply_and_remember(m, msg, reply, uid, o.dry_run ? NULL : o.request_id);
}

/* ---- queries ---- */

static int method_list_gpus(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(uusstttq)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_gpus; i++) {
                Gpu *g = m->gpus[i];
                uint64_t avail = 0;

                if (gpu_vram_available(g, &avail) < 0)
                        avail = 0;
                r = sd_bus_message_append(reply, "(uusstttq)", g->gpu_id, g->kfd->node_id, g->kfd->target,
                                          g->kfd->name, g->kfd->vram_size,
                                          g->kfd->vram_size > avail ? g->kfd->vram_size - avail : 0, avail,
                                          (uint16_t) g->kfd->drm_render_minor);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static bool range_matches(Manager *m, Range *r, const OpArgs *f) {
        if (f->has_owner && r->owner_uid != f->owner)
                return false;
        if (f->label && !streq_ptr(r->label, f->label))
                return false;
        if (f->has_gpu) {
                Gpu *g = manager_find_gpu(m, f->gpu);
                if (!g)
                        return false;
                if (r->home != g->index && !(range_mapped_any(r) & (UINT64_C(1) << g->index)))
                        return false;
        }
        return true;
}

static int append_u32_mask(sd_bus_message *reply, Manager *m, uint64_t mask) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "u");
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_gpus; i++)
                if (mask & (UINT64_C(1) << i)) {
                        r = sd_bus_message_append_basic(reply, 'u', &m->gpus[i]->gpu_id);
                        if (r < 0)
                                return r;
                }
        return sd_bus_message_close_container(reply);
}

static int method_list_ranges(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(op_args_done) OpArgs f = {};
        Manager *m = userdata;
        uint64_t skipped = 0, n = 0, limit;
        int r;

        r = bus_read_options(msg, filter_options, &f, "filter", error);
        if (r < 0)
                return r;
        limit = f.has_limit ? f.limit : LIST_DEFAULT_LIMIT;
        if (limit == 0 || limit > SVMD_MAX_LIST_LIMIT)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "\"limit\" must be between 1 and %u.", SVMD_MAX_LIST_LIMIT);
        if (f.has_gpu && !manager_find_gpu(m, f.gpu))
                return sd_bus_error_setf(error, SVMD_ERROR_NO_SUCH_GPU, "GPU 0x%x does not exist.", f.gpu);

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(ttttsuausus)");
        if (r < 0)
                return r;
        for (Range *range = m->ranges_head; range && n < limit; range = range->next) {
                if (!range_matches(m, range, &f))
                        continue;
                if (skipped < f.offset) {
                        skipped++;
                        continue;
                }
                r = sd_bus_message_open_container(reply, 'r', "ttttsuausus");
                if (r < 0)
                        return r;
                r = sd_bus_message_append(reply, "ttttsu", range->id, range->va, range->size, (uint64_t) range->flags,
                                          range_domain_to_string(range->domain), m->gpus[range->home]->gpu_id);
                if (r < 0)
                        return r;
                r = append_u32_mask(reply, m, range_mapped(range));
                if (r < 0)
                        return r;
                r = sd_bus_message_append(reply, "sus", strempty(range->label), (uint32_t) range->owner_uid,
                                          range_state_to_string(range->state));
                if (r < 0)
                        return r;
                r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
                n++;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* ---- properties ---- */

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static int property_get_kfd_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        char buf[32];

        snprintf(buf, sizeof(buf), "%u.%u", m->kfd_major, m->kfd_minor);
        return sd_bus_message_append(reply, "s", buf);
}

static int property_get_gpus(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return append_u32_mask(reply, m, m->n_gpus >= 64 ? UINT64_MAX : (UINT64_C(1) << m->n_gpus) - 1);
}

static int property_get_ranges(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "t", (uint64_t) id_table_size(m->ranges));
}

static int property_get_bytes_allocated(sd_bus *bus, const char *path, const char *interface,
                                        const char *property, sd_bus_message *reply, void *userdata,
                                        sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "t", m->bytes_allocated);
}

const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("KfdVersion", "s", property_get_kfd_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Gpus", "au", property_get_gpus, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Ranges", "t", property_get_ranges, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BytesAllocated", "t", property_get_bytes_allocated, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),

        SD_BUS_METHOD_WITH_ARGS("ListGpus", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(uusstttq)", gpus),
                                method_list_gpus, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Allocate",
                                SD_BUS_ARGS("t", size, "u", gpu_id, "s", domain, "a{sv}", options),
                                SD_BUS_RESULT("t", id, "t", va, "o", path),
                                method_allocate, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("AllocateBatch",
                                SD_BUS_ARGS("a(tt)", host_ranges, "u", gpu_id, "a{sv}", options),
                                SD_BUS_RESULT("t", id, "t", va, "o", path),
                                method_allocate_batch, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Free", SD_BUS_ARGS("t", id), SD_BUS_NO_RESULT,
                                method_free, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Map", SD_BUS_ARGS("t", id, "au", gpu_ids, "a{sv}", options), SD_BUS_NO_RESULT,
                                method_map, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Unmap", SD_BUS_ARGS("t", id, "au", gpu_ids), SD_BUS_NO_RESULT,
                                method_unmap, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Commit", SD_BUS_ARGS("a(sa{sv})", ops, "a{sv}", options),
                                SD_BUS_RESULT("a(a{sv})", results),
                                method_commit, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListRanges", SD_BUS_ARGS("a{sv}", filter),
                                SD_BUS_RESULT("a(ttttsuausus)", ranges),
                                method_list_ranges, SD_BUS_VTABLE_UNPRIVILEGED),

        SD_BUS_SIGNAL_WITH_ARGS("RangeCreated", SD_BUS_ARGS("t", id, "o", path), 0),
        SD_BUS_SIGNAL_WITH_ARGS("RangeFreed", SD_BUS_ARGS("t", id), 0),
        SD_BUS_VTABLE_END,
};
