/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "bus-util.h"
#include "client.h"
#include "gpu.h"
#include "log.h"
#include "manager.h"
#include "method-util.h"
#include "metrics.h"
#include "persist.h"
#include "polkit.h"
#include "range-svm.h"
#include "range.h"
#include "revoke.h"
#include "request-cache.h"
#include "size-util.h"
#include "str-table.h"
#include "svmd-protocol.h"
#include "transaction.h"

#define O(key, type, field, max) BUS_OPTION(key, OpArgs, type, field, max)
#define OP(key, type, field, max, present) BUS_OPTION_P(key, OpArgs, type, field, max, present)

/* The SVM attributes, wherever an svm range is created or changed. */
#define SVM_OPTIONS                                                                                     \
        OP(SVMD_OPT_SVM_PREFERRED, BUS_OPTION_U32, svm_preferred, 0, has_svm_preferred),                \
        OP(SVMD_OPT_SVM_PREFETCH, BUS_OPTION_U32, svm_prefetch, 0, has_svm_prefetch),                   \
        O(SVMD_OPT_SVM_ACCESS, BUS_OPTION_U32_ARRAY, svm_access, SVMD_MAX_GPUS_PER_CALL),               \
        O(SVMD_OPT_SVM_ACCESS_IN_PLACE, BUS_OPTION_U32_ARRAY, svm_access_in_place, SVMD_MAX_GPUS_PER_CALL), \
        O(SVMD_OPT_SVM_NO_ACCESS, BUS_OPTION_U32_ARRAY, svm_no_access, SVMD_MAX_GPUS_PER_CALL),         \
        OP(SVMD_OPT_SVM_FLAGS, BUS_OPTION_STRV, svm_flags, 16, has_svm_flags),                          \
        OP(SVMD_OPT_SVM_GRANULARITY, BUS_OPTION_U32, svm_granularity, 0, has_svm_granularity)

const BusOption allocate_options[] = {
        OP(SVMD_OPT_FLAGS, BUS_OPTION_STRV, flags, 16, has_flags),
        O(SVMD_OPT_MAP, BUS_OPTION_U32_ARRAY, map, SVMD_MAX_GPUS_PER_CALL),
        O(SVMD_OPT_ALIGNMENT, BUS_OPTION_U64, alignment, 0),
        O(SVMD_OPT_LABEL, BUS_OPTION_STRING, label, SVMD_MAX_LABEL_LEN),
        O(SVMD_OPT_PERSISTENT, BUS_OPTION_BOOL, persistent, 0),
        O(SVMD_OPT_DRY_RUN, BUS_OPTION_BOOL, dry_run, 0),
        O(SVMD_OPT_REQUEST_ID, BUS_OPTION_STRING, request_id, SVMD_MAX_REQUEST_ID_LEN),
        SVM_OPTIONS,
        {}
};

const BusOption change_options[] = {
        O(SVMD_OPT_DRY_RUN, BUS_OPTION_BOOL, dry_run, 0),
        O(SVMD_OPT_REQUEST_ID, BUS_OPTION_STRING, request_id, SVMD_MAX_REQUEST_ID_LEN),
        {}
};

const BusOption commit_allocate_options[] = {
        OP(SVMD_OPT_SIZE, BUS_OPTION_U64, size, 0, has_size),
        OP(SVMD_OPT_GPU, BUS_OPTION_U32, gpu, 0, has_gpu),
        O(SVMD_OPT_DOMAIN, BUS_OPTION_STRING, domain, 16),
        OP(SVMD_OPT_FLAGS, BUS_OPTION_STRV, flags, 16, has_flags),
        O(SVMD_OPT_MAP, BUS_OPTION_U32_ARRAY, map, SVMD_MAX_GPUS_PER_CALL),
        O(SVMD_OPT_ALIGNMENT, BUS_OPTION_U64, alignment, 0),
        O(SVMD_OPT_LABEL, BUS_OPTION_STRING, label, SVMD_MAX_LABEL_LEN),
        O(SVMD_OPT_PERSISTENT, BUS_OPTION_BOOL, persistent, 0),
        SVM_OPTIONS,
        {}
};

const BusOption commit_batch_options[] = {
        OP(SVMD_OPT_HOST_RANGES, BUS_OPTION_PAIRS, host_ranges, SVMD_MAX_BATCH_PIECES, has_host_ranges),
        OP(SVMD_OPT_GPU, BUS_OPTION_U32, gpu, 0, has_gpu),
        OP(SVMD_OPT_FLAGS, BUS_OPTION_STRV, flags, 16, has_flags),
        O(SVMD_OPT_MAP, BUS_OPTION_U32_ARRAY, map, SVMD_MAX_GPUS_PER_CALL),
        O(SVMD_OPT_ALIGNMENT, BUS_OPTION_U64, alignment, 0),
        O(SVMD_OPT_LABEL, BUS_OPTION_STRING, label, SVMD_MAX_LABEL_LEN),
        O(SVMD_OPT_PERSISTENT, BUS_OPTION_BOOL, persistent, 0),
        {}
};

const BusOption commit_map_options[] = {
        OP(SVMD_OPT_ID, BUS_OPTION_U64, id, 0, has_id),
        OP(SVMD_OPT_REF, BUS_OPTION_U32, ref, 0, has_ref),
        OP(SVMD_OPT_GPUS, BUS_OPTION_U32_ARRAY, gpus, SVMD_MAX_GPUS_PER_CALL, has_gpus),
        {}
};

const BusOption set_attributes_options[] = {
        O(SVMD_OPT_DRY_RUN, BUS_OPTION_BOOL, dry_run, 0),
        O(SVMD_OPT_REQUEST_ID, BUS_OPTION_STRING, request_id, SVMD_MAX_REQUEST_ID_LEN),
        SVM_OPTIONS,
        {}
};

const BusOption commit_set_attributes_options[] = {
        OP(SVMD_OPT_ID, BUS_OPTION_U64, id, 0, has_id),
        OP(SVMD_OPT_REF, BUS_OPTION_U32, ref, 0, has_ref),
        SVM_OPTIONS,
        {}
};

const BusOption commit_free_options[] = {
        OP(SVMD_OPT_ID, BUS_OPTION_U64, id, 0, has_id),
        OP(SVMD_OPT_REF, BUS_OPTION_U32, ref, 0, has_ref),
        {}
};

const BusOption filter_options[] = {
        OP(SVMD_FILTER_OWNER, BUS_OPTION_U32, owner, 0, has_owner),
        OP(SVMD_FILTER_GPU, BUS_OPTION_U32, gpu, 0, has_gpu),
        O(SVMD_FILTER_LABEL, BUS_OPTION_STRING, label, SVMD_MAX_LABEL_LEN),
        O(SVMD_FILTER_OFFSET, BUS_OPTION_U64, offset, 0),
        OP(SVMD_FILTER_AFTER, BUS_OPTION_U64, after, 0, has_after),
        OP(SVMD_FILTER_LIMIT, BUS_OPTION_U64, limit, 0, has_limit),
        O(SVMD_FILTER_ALL, BUS_OPTION_BOOL, all, 0),
        {}
};

const BusOption grant_options[] = {
        OP(SVMD_GRANT_UID, BUS_OPTION_U32, grant_uid, 0, has_grant_uid),
        O(SVMD_GRANT_UNIT, BUS_OPTION_STRING, unit, 256),
        O(SVMD_GRANT_CGROUP, BUS_OPTION_STRING, cgroup, 1024),
        O(SVMD_GRANT_READ_ONLY, BUS_OPTION_BOOL, read_only, 0),
        O(SVMD_GRANT_EXPIRES_USEC, BUS_OPTION_U64, expires_usec, 0),
        {}
};

static const BusOption all_options[] = {
        O(SVMD_GRANT_UNIT, BUS_OPTION_STRING, unit, 0),
        O(SVMD_GRANT_CGROUP, BUS_OPTION_STRING, cgroup, 0),
        O(SVMD_OPT_FLAGS, BUS_OPTION_STRV, flags, 0),
        O(SVMD_OPT_MAP, BUS_OPTION_U32_ARRAY, map, 0),
        O(SVMD_OPT_LABEL, BUS_OPTION_STRING, label, 0),
        O(SVMD_OPT_REQUEST_ID, BUS_OPTION_STRING, request_id, 0),
        O(SVMD_OPT_DOMAIN, BUS_OPTION_STRING, domain, 0),
        O(SVMD_OPT_GPUS, BUS_OPTION_U32_ARRAY, gpus, 0),
        O(SVMD_OPT_HOST_RANGES, BUS_OPTION_PAIRS, host_ranges, 0),
        O(SVMD_OPT_SVM_ACCESS, BUS_OPTION_U32_ARRAY, svm_access, 0),
        O(SVMD_OPT_SVM_ACCESS_IN_PLACE, BUS_OPTION_U32_ARRAY, svm_access_in_place, 0),
        O(SVMD_OPT_SVM_NO_ACCESS, BUS_OPTION_U32_ARRAY, svm_no_access, 0),
        O(SVMD_OPT_SVM_FLAGS, BUS_OPTION_STRV, svm_flags, 0),
        {}
};

void op_args_done(OpArgs *a) {
        bus_options_free(all_options, a);
}

/* ---- shared helpers ---- */

bool client_may(const Client *c, const Range *range, bool holders_ok) {
        if (c->identity->uid == 0)
                return true;
        if (range->owner && !range->owner_detached && range->owner->uid == c->identity->uid)
                return true;
        return holders_ok && client_find_hold((Client *) c, (Range *) range);
}

int authorize_admin(Manager *m, sd_bus_message *msg, Client *c, const char *what, sd_bus_error *error) {
        return polkit_check(m, msg, c->identity->uid, what, error);
}

int authorize_sees_all(Manager *m, sd_bus_message *msg, const char *what, Client **ret_client, bool *ret_all,
                       sd_bus_error *error) {
        sd_bus_error denied = SD_BUS_ERROR_NULL;
        Client *c;
        int r;

        r = manager_get_client(m, msg, &c, error);
        if (r < 0)
                return r;
        r = authorize_admin(m, msg, c, what, &denied);
        if (r == 0)
                return 0;
        sd_bus_error_free(&denied);
        *ret_client = c;
        *ret_all = r > 0;
        return 1;
}

int gpus_to_mask(Manager *m, const uint32_t *ids, size_t n, const char *what, uint64_t *ret,
                        sd_bus_error *error) {
        uint64_t mask = 0;

        for (size_t i = 0; i < n; i++) {
                Gpu *g = manager_find_gpu(m, ids[i]);
                if (!g)
                        return sd_bus_error_setf(error, SVMD_ERROR_NO_SUCH_GPU,
                                                 "GPU 0x%x does not exist; see `svmctl gpus` for the GPUs of this node.",
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

int parse_domain(const char *s, RangeDomain *ret, sd_bus_error *error) {
        RangeDomain d;

        d = s ? range_domain_from_string(s) : _RANGE_DOMAIN_INVALID;
        if (d < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unknown domain \"%.32s\"; use vram, gtt, host or svm.", strempty(s));
        *ret = d;
        return 0;
}

bool op_args_has_svm(const OpArgs *a) {
        return a->has_svm_preferred || a->has_svm_prefetch || a->svm_access.n > 0 || a->svm_access_in_place.n > 0 ||
               a->svm_no_access.n > 0 || a->has_svm_flags || a->has_svm_granularity;
}

static int check_svm_gpu(Manager *m, const Gpu *g, const char *key, sd_bus_error *error) {
        if (!gpu_svm_capable(m, g->index))
                return sd_bus_error_setf(error, SVMD_ERROR_NOT_SUPPORTED,
                                         "\"%s\" names GPU 0x%x, which does not support SVM.", key, g->gpu_id);
        return 0;
}

static int check_svm_location(Manager *m, uint32_t v, bool none_ok, const char *key, sd_bus_error *error) {
        Gpu *g;

        if (v == SVMD_SVM_LOCATION_SYSTEM || (none_ok && v == SVMD_SVM_LOCATION_NONE))
                return 0;
        g = manager_find_gpu(m, v);
        if (!g)
                return sd_bus_error_setf(error, SVMD_ERROR_NO_SUCH_GPU,
                                         "\"%s\" names GPU 0x%x, which does not exist; use a GPU id from ListGpus, "
                                         "or 0 for system memory.", key, v);
        return check_svm_gpu(m, g, key, error);
}

static void svm_add(SvmChange *c, uint32_t type, uint32_t value) {
        c->list[c->n++] = (struct kfd_ioctl_svm_attribute) { type, value };
}

static int svm_add_access(Manager *m, const BusU32Array *ids, const char *key, uint32_t type, uint64_t *seen,
                          SvmChange *c, sd_bus_error *error) {
        char what[64];
        uint64_t mask = 0;
        int r;

        snprintf(what, sizeof(what), "\"%s\"", key);
        r = gpus_to_mask(m, ids->items, ids->n, what, &mask, error);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ids->n; i++) {
                Gpu *g = manager_find_gpu(m, ids->items[i]);

                if (*seen & (UINT64_C(1) << g->index))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "GPU 0x%x is given two kinds of access.", g->gpu_id);
                r = check_svm_gpu(m, g, key, error);
                if (r < 0)
                        return r;
                svm_add(c, type, g->gpu_id);
        }
        *seen |= mask;
        if (type == KFD_IOCTL_SVM_ATTR_NO_ACCESS)
                c->no_access |= mask;
        else
                c->access |= mask;
        return 0;
}

int parse_svm_change(Manager *m, const OpArgs *a, SvmChange *ret, sd_bus_error *error) {
        SvmChange c = {};
        uint64_t seen = 0;
        int r;

        if (a->has_svm_preferred) {
                r = check_svm_location(m, a->svm_preferred, true, SVMD_OPT_SVM_PREFERRED, error);
                if (r < 0)
                        return r;
                svm_add(&c, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, a->svm_preferred);
        }
        if (a->has_svm_prefetch) {
                /* The kernel takes no "undefined" prefetch location. */
                if (a->svm_prefetch == SVMD_SVM_LOCATION_NONE)
                        return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                                "\"" SVMD_OPT_SVM_PREFETCH "\" must be a GPU id or 0 (system memory).");
                r = check_svm_location(m, a->svm_prefetch, false, SVMD_OPT_SVM_PREFETCH, error);
                if (r < 0)
                        return r;
                svm_add(&c, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, a->svm_prefetch);
        }
        if (a->has_svm_flags) {
                uint32_t flags = 0, f;

                for (size_t i = 0; i < a->svm_flags.n; i++) {
                        if (kfd_svm_flag_from_string(a->svm_flags.items[i], &f) < 0)
                                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                         "Unknown SVM flag \"%.32s\"; known flags: " KFD_SVM_FLAG_NAMES ".",
                                                         a->svm_flags.items[i]);
                        flags |= f;
                }
                /* Without XNACK every GPU mapping is kept valid anyway; the flag is a request for XNACK mode. */
                if ((flags & KFD_IOCTL_SVM_FLAG_GPU_ALWAYS_MAPPED) && !m->xnack)
                        return sd_bus_error_set(error, SVMD_ERROR_NOT_SUPPORTED,
                                                "SVM flag \"gpu-always-mapped\" needs XNACK on; svmd's KFD process "
                                                "runs with XNACK off (svmctl status shows it).");
                /* The exact set: what is listed on, everything else off. */
                svm_add(&c, KFD_IOCTL_SVM_ATTR_SET_FLAGS, flags);
                svm_add(&c, KFD_IOCTL_SVM_ATTR_CLR_FLAGS, ~flags);
        }
        if (a->has_svm_granularity) {
                if (a->svm_granularity > KFD_SVM_GRANULARITY_MAX)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "\"" SVMD_OPT_SVM_GRANULARITY "\" is log2 of pages, 0 to %u; %" PRIu32 " is too large.",
                                                 KFD_SVM_GRANULARITY_MAX, a->svm_granularity);
                svm_add(&c, KFD_IOCTL_SVM_ATTR_GRANULARITY, a->svm_granularity);
        }
        r = svm_add_access(m, &a->svm_access, SVMD_OPT_SVM_ACCESS, KFD_IOCTL_SVM_ATTR_ACCESS, &seen, &c, error);
        if (r < 0)
                return r;
        r = svm_add_access(m, &a->svm_access_in_place, SVMD_OPT_SVM_ACCESS_IN_PLACE, KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE,
                           &seen, &c, error);
        if (r < 0)
                return r;
        r = svm_add_access(m, &a->svm_no_access, SVMD_OPT_SVM_NO_ACCESS, KFD_IOCTL_SVM_ATTR_NO_ACCESS, &seen, &c,
                           error);
        if (r < 0)
                return r;

        *ret = c;
        return 0;
}

/* The initial attributes of a new svm range: its options over svmd's defaults, "map" as ACCESS. */
static int prepare_svm(Manager *m, const OpArgs *a, uint32_t home, uint64_t map, KfdSvmAttrs **ret,
                       sd_bus_error *error) {
        _cleanup_free_ KfdSvmAttrs *svm = NULL;
        struct kfd_ioctl_svm_attribute access[KFD_SVM_MAX_GPUS];
        SvmChange c;
        uint32_t n;
        int r;

        if (a->gpu != 0) {
                r = check_svm_gpu(m, m->gpus[home], "gpu_id", error);
                if (r < 0)
                        return r;
        }
        r = parse_svm_change(m, a, &c, error);
        if (r < 0)
                return r;
        if (map & c.no_access)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                        "A GPU is listed both in \"map\" and in \"" SVMD_OPT_SVM_NO_ACCESS "\".");

        svm = malloc(sizeof(KfdSvmAttrs));
        if (!svm)
                return -ENOMEM;
        /* The GPU it is allocated for is where it prefers to live, unless told otherwise. */
        svm_attrs_initial(m, a->gpu != 0 ? m->gpus[home]->gpu_id : KFD_IOCTL_SVM_LOCATION_UNDEFINED, svm);
        kfd_svm_attrs_apply(svm, c.list, c.n);
        n = svm_access_list(m, map & ~c.access, KFD_IOCTL_SVM_ATTR_ACCESS, access);
        kfd_svm_attrs_apply(svm, access, n);

        *ret = TAKE_PTR(svm);
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
                                        "VRAM needs the id of the GPU it lives on; see `svmctl gpus`.");
        g = manager_find_gpu(m, gpu_id);
        if (!g)
                return sd_bus_error_setf(error, SVMD_ERROR_NO_SUCH_GPU,
                                         "GPU 0x%x does not exist; see `svmctl gpus` for the GPUs of this node.", gpu_id);
        *ret = g->index;
        return 0;
}

int range_not_found(uint64_t id, sd_bus_error *error) {
        return sd_bus_error_setf(error, SVMD_ERROR_NO_SUCH_RANGE, "Range %" PRIu64 " does not exist.", id);
}

int range_check_busy(Range *range, sd_bus_error *error) {
        int r;

        /* Its owner's connection went: it is on its way out and nothing new may start on it. */
        if (range_being_freed(range))
                return sd_bus_error_setf(error, SVMD_ERROR_NO_SUCH_RANGE,
                                         "Range %" PRIu64 " is being freed: the connection that owned it closed.",
                                         range->id);
        if (range->state == RANGE_STATE_DEGRADED)
                return sd_bus_error_setf(error, SVMD_ERROR_BUSY,
                                         "Range %" PRIu64 " is degraded and being repaired; try again later.", range->id);
        /* Last: waiting makes sense only for a range this request may change. */
        if (range->persistent) {
                r = persist_wait_compaction(range->manager);
                if (r < 0)
                        return r;
        }
        r = job_claim(&range->claim);
        if (r < 0)
                return r;
        return 0;
}

typedef struct MethodJob {
        Manager *manager;
        sd_bus_message *msg;
        sd_bus_message_handler_t handler;
        sd_bus_error error;
        uint64_t start_nsec;    /* when sd-bus dispatched it (metrics) */
        bool deferred;          /* polkit runs it again, and that run is counted */
} MethodJob;

static MethodJob *method_job_free(MethodJob *j) {
        if (!j)
                return NULL;
        sd_bus_message_unref(j->msg);
        sd_bus_error_free(&j->error);
        free(j);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(MethodJob *, method_job_free);

static int method_job_run(void *userdata) {
        MethodJob *j = userdata;
        Client *c;
        int r;

        for (;;) {
                (void) metrics_take_deferred(j->manager->metrics);
                r = j->handler(j->msg, j->manager, &j->error);
                /* polkit_check() says so right before the handler returns, with no step aside between. */
                j->deferred = metrics_take_deferred(j->manager->metrics);
                if (r != JOB_RETRY)
                        return r;
                /* Nothing has changed yet: wait for the request before us, then start over. */
                sd_bus_error_free(&j->error);
                job_wait();
                /* Its caller went meanwhile: nobody to act for (starting over would make the caller
                 * anew, a client nobody tears down). */
                c = job_get_owner();
                if (c && c->gone)
                        return -ENOTCONN;
                r = sd_bus_message_rewind(j->msg, true);
                if (r < 0)
                        return r;
        }
}

static void method_job_done(void *userdata, int r) {
        _cleanup_(method_job_freep) MethodJob *j = userdata;
        int k;

        if (!j->deferred)
                metrics_call_finished(j->manager->metrics, sd_bus_message_get_member(j->msg),
                                      metrics_now_nsec() - j->start_nsec, r, &j->error);
        if (r >= 0)
                return; /* replied, or polkit runs it again */
        /* The caller may be gone meanwhile: then there is nobody to tell. */
        k = sd_bus_reply_method_errno(j->msg, r, &j->error);
        if (k < 0)
                log_debug_errno(k, "Replying to %s failed, ignoring: %m", strna(sd_bus_message_get_member(j->msg)));
}

int method_run_job(Manager *m, sd_bus_message *msg, sd_bus_message_handler_t handler, sd_bus_error *error) {
        _cleanup_(method_job_freep) MethodJob *j = NULL;
        int r;

        if (m->exiting)
                return sd_bus_error_set(error, SVMD_ERROR_BUSY, "svmd is stopping; try again once it is back.");
        if (!m->executor)
                return handler(msg, m, error);

        j = new0(MethodJob, 1);
        if (!j)
                return -ENOMEM;
        *j = (MethodJob) { .manager = m, .msg = sd_bus_message_ref(msg), .handler = handler,
                           .start_nsec = metrics_now_nsec() };
        r = executor_spawn(m->executor, method_job_run, method_job_done, j);
        if (r == -EINPROGRESS) {
                TAKE_PTR(j); /* method_job_done() replies, counts and frees it */
                metrics_call_deferred(m->metrics);
                return 1;
        }
        /* Done without waiting: method_counted() counts it, unless polkit runs it again. */
        if (j->deferred)
                metrics_call_deferred(m->metrics);
        /* Done without waiting: sd-bus replies with the error, as for any handler. */
        if (r < 0 && sd_bus_error_is_set(&j->error))
                return sd_bus_error_copy(error, &j->error);
        return r;
}

int authorize_range(Manager *m, sd_bus_message *msg, Client *c, uint64_t id, bool holders_ok, const char *verb,
                    Range **ret, sd_bus_error *error) {
        sd_bus_error denied = SD_BUS_ERROR_NULL;
        Range *range = manager_find_range(m, id);
        char what[128];
        int r;

        if (!range || !client_may(c, range, holders_ok)) {
                /* Asked for a missing id too: how long the answer takes must not tell either. */
                snprintf(what, sizeof(what), "%s range %" PRIu64 ", which is not the caller's,", verb, id);
                r = authorize_admin(m, msg, c, what, &denied);
                if (r == 0)
                        return 0;
                if (r < 0 && !sd_bus_error_is_set(&denied))
                        return r;
                /* Owners and holders know the range: they hear why. Anyone else hears "no such range". */
                if (r < 0 && range && client_may(c, range, true)) {
                        r = sd_bus_error_copy(error, &denied);
                        sd_bus_error_free(&denied);
                        return r;
                }
                sd_bus_error_free(&denied);
                /* A holder whose hold was taken at a revocation's deadline knew the range: it hears why. */
                if ((r < 0 || !range) && client_was_revoked(c, id))
                        return revoked_error(id, NULL, error);
                if (r < 0 || !range)
                        return range_not_found(id, error);
        }
        r = range_check_busy(range, error);
        if (r < 0)
                return r;
        *ret = range;
        return 1;
}

int method_prologue(Manager *m, sd_bus_message *msg, const RangeCall *call, Client **ret_client, Range **ret_range,
                    sd_bus_error *error) {
        Client *c;
        int r;

        r = manager_get_client(m, msg, &c, error);
        if (r < 0)
                return r;
        if (call->replay_key)
                r = request_cache_replay(m->requests, msg, c->identity->uid, call->replay_key, error);
        else
                r = request_replay(m, msg, c, call->request_id, error);
        if (r != 0)
                return r > 0 ? 0 : r;
        r = authorize_range(m, msg, c, call->id, call->holders_ok, call->verb, ret_range, error);
        if (r <= 0)
                return r;
        *ret_client = c;
        return 1;
}

/* Resolve AllocateBatch pieces: each must lie inside one host range; returns a malloc()ed array. */
static int batch_pieces(Manager *m, Client *client, const BusPairArray *hr, RangeSpecPiece **ret,
                        uint64_t *ret_total, sd_bus_error *error) {
        _cleanup_free_ RangeSpecPiece *pieces = NULL;
        uint64_t total = 0;
        int r;

        if (hr->n == 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "A batch needs at least one host range.");

        pieces = calloc(hr->n, sizeof(RangeSpecPiece));
        if (!pieces)
                return -ENOMEM;

        for (size_t i = 0; i < hr->n; i++) {
                uint64_t addr = hr->items[i].a, size = hr->items[i].b, end;
                Range *src;

                if (size == 0 || addr % 4096 != 0 || size % 4096 != 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Host range %zu (0x%" PRIx64 ", %" PRIu64 ") must be non-empty and 4 KiB aligned.",
                                                 i, addr, size);
                if (__builtin_add_overflow(addr, size, &end) || __builtin_add_overflow(total, size, &total))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Host range %zu overflows the address space.", i);
                /* Another tenant's range answers like no range: its id, kind and state are not ours to know. */
                src = range_from_va_node(va_space_lookup(m->va, addr));
                if (!src || !client_may(client, src, false) || end > range_va(src) + range_size(src))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Host range %zu (0x%" PRIx64 "+%" PRIu64 ") does not lie inside one host range of svmd; "
                                                 "allocate host memory first.", i, addr, size);
                if (src->domain != RANGE_DOMAIN_HOST || src->batch)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Host range %zu lies in range %" PRIu64 ", which is not a plain host range.",
                                                 i, src->id);
                r = range_check_busy(src, error);
                if (r < 0)
                        return r;
                pieces[i] = (RangeSpecPiece) { .userptr = addr, .size = size, .source = src };
        }

        *ret_total = total;
        *ret = TAKE_PTR(pieces);
        return 0;
}

/* Build and validate a RangeSpec from allocation arguments. */
int prepare_allocation(Manager *m, const OpArgs *a, RangeDomain domain, Client *client, QuotaRequest *pending,
                       RangeSpec *spec, RangeSpecPiece **ret_pieces, KfdSvmAttrs **ret_svm, uint64_t *ret_map,
                       sd_bus_error *error) {
        _cleanup_free_ RangeSpecPiece *pieces = NULL;
        _cleanup_free_ KfdSvmAttrs *svm = NULL;
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
                r = batch_pieces(m, client, &a->host_ranges, &pieces, &total, error);
                if (r < 0)
                        return r;
        }
        if (domain == RANGE_DOMAIN_SVM) {
                r = prepare_svm(m, a, home, map, &svm, error);
                if (r < 0)
                        return r;
        } else if (op_args_has_svm(a))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "The svm-* options apply to svm ranges, not to %s.",
                                         a->has_host_ranges ? "batch ranges" : range_domain_to_string(domain));

        *spec = (RangeSpec) {
                .size = a->has_host_ranges ? total : a->size,
                .home = home,
                .domain = domain,
                .flags = flags,
                .alignment = a->alignment,
                .label = a->label,
                .persistent = a->persistent,
                .owner = client->identity,
                .client = client,
                .request_id = a->request_id,
                .restore_fd = -EBADF,
                .pieces = pieces,
                .n_pieces = a->has_host_ranges ? (uint32_t) a->host_ranges.n : 0,
                .svm = svm,
        };
        r = range_validate_spec(m, spec, pending, error);
        if (r < 0)
                return r;
        r = range_validate_map(m, home, domain, map, error);
        if (r < 0)
                return r;

        *ret_map = map;
        *ret_pieces = TAKE_PTR(pieces);
        *ret_svm = TAKE_PTR(svm);
        return 0;
}

/* A request id whose first call is in flight (executor.h): a retry waits for its answer. */
typedef struct RequestInFlight {
        Manager *manager;
        JobClaim claim;
        unsigned n_ref;
        char *key;              /* "uid\x1frequest-id" */
} RequestInFlight;

static void request_in_flight_free(RequestInFlight *f) {
        (void) str_table_remove(f->manager->requests_in_flight, f->key);
        job_claim_drop(&f->claim);
        free(f->key);
        free(f);
}

static void request_in_flight_unref(void *userdata) {
        RequestInFlight *f = userdata;

        assert(f->n_ref > 0);
        if (--f->n_ref == 0)
                request_in_flight_free(f);
}

static int request_claim(Manager *m, uid_t uid, const char *request_id) {
        _cleanup_free_ char *key = NULL;
        RequestInFlight *f;
        int r;

        if (!job_current() || !m->requests_in_flight)
                return 0;
        if (asprintf(&key, "%u\x1f%s", (unsigned) uid, request_id) < 0)
                return -ENOMEM;
        f = str_table_get(m->requests_in_flight, key);
        if (!f) {
                f = new0(RequestInFlight, 1);
                if (!f)
                        return -ENOMEM;
                /* Taken before any range and kept while the job waits for one: a retry never holds
                 * a range while it waits for this (executor.h, job_wait()). */
                *f = (RequestInFlight) { .manager = m, .key = TAKE_PTR(key) };
                r = str_table_put(m->requests_in_flight, f->key, f);
                if (r < 0) {
                        free(f->key);
                        free(f);
                        return r;
                }
        } else if (job_claim_held(&f->claim))
                return job_claim(&f->claim); /* JOB_RETRY: then the cache has its answer */
        r = job_on_end(request_in_flight_unref, f);
        if (r < 0) {
                if (f->n_ref == 0)
                        request_in_flight_free(f);
                return r;
        }
        f->n_ref++;
        return job_claim_keep(&f->claim);
}

int request_replay(Manager *m, sd_bus_message *msg, Client *c, const char *request_id, sd_bus_error *error) {
        int r;

        if (!request_id)
                return 0;
        r = request_id_check(request_id, error);
        if (r < 0)
                return r;
        r = request_claim(m, c->identity->uid, request_id);
        if (r < 0)
                return r;
        return request_cache_replay(m->requests, msg, c->identity->uid, request_id, error);
}

int reply_and_remember(Manager *m, sd_bus_message *msg, sd_bus_message *reply, Client *c, const char *request_id) {
        int r;

        r = sd_bus_send(NULL, reply, NULL);
        if (r < 0)
                return r;
        if (request_id) {
                r = request_cache_store(m->requests, msg, c->identity->scope->key, c->identity->uid, request_id,
                                        reply);
                if (r < 0)
                        log_warning_errno(r, "Remembering request \"%s\" failed, ignoring: %m", request_id);
        }
        return 1;
}

int reply_allocation(Manager *m, sd_bus_message *msg, Range *range, Client *c, const char *request_id) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        r = range_path(range->id, &path);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        /* Field by field: cheaper than parsing a format string on every Allocate. */
        r = sd_bus_message_append_basic(reply, 't', &range->id);
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, 't', &(uint64_t) { range_va(range) });
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, 'o', path);
        if (r < 0)
                return r;
        return reply_and_remember(m, msg, reply, c, request_id);
}

int reply_empty(Manager *m, sd_bus_message *msg, Client *c, const char *request_id) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        return reply_and_remember(m, msg, reply, c, request_id);
}

void log_allocated(Range *range) {
        log_fields(LOG_DEBUG,
                   &((LogFields) { .range_id = range->id, .gpu_id = range->manager->gpus[range->home]->gpu_id }),
                   "Range %" PRIu64 ": %s of %s at 0x%" PRIx64 ".", range->id, FORMAT_BYTES(range_size(range)),
                   range_domain_to_string(range->domain), range_va(range));
}

