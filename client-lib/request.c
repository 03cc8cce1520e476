/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * What travels: the a{sv} options and Commit operations of the public structs
 * as org.svmd1.Manager takes them (protocol/org.svmd1.Manager.xml), and the
 * replies read back. Shared by the sync calls (call.c) and async ones (async.c).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "svmd-protocol.h"

static int entry_open(sd_bus_message *m, const char *key, const char *signature) {
        int r;

        r = sd_bus_message_open_container(m, 'e', "sv");
        if (r < 0)
                return r;
        r = sd_bus_message_append_basic(m, 's', key);
        if (r < 0)
                return r;
        return sd_bus_message_open_container(m, 'v', signature);
}

static int entry_close(sd_bus_message *m) {
        int r;

        r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}

static int append_entry(sd_bus_message *m, const char *key, char type, const void *value) {
        char signature[2] = { type, 0 };
        int r;

        r = entry_open(m, key, signature);
        if (r < 0)
                return r;
        r = sd_bus_message_append_basic(m, type, value);
        if (r < 0)
                return r;
        return entry_close(m);
}

static int append_bool_entry(sd_bus_message *m, const char *key, bool b) {
        int v = b;

        return append_entry(m, key, 'b', &v);
}

int request_append_u32_array(sd_bus_message *m, const uint32_t *ids, size_t n) {
        return sd_bus_message_append_array(m, 'u', ids, n * sizeof(uint32_t));
}

int request_append_host_ranges(sd_bus_message *m, const svmd_host_range *ranges, size_t n) {
        int r;

        r = sd_bus_message_open_container(m, 'a', "(tt)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                r = sd_bus_message_append(m, "(tt)", ranges[i].address, ranges[i].size);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(m);
}

static int append_u32_array_entry(sd_bus_message *m, const char *key, const uint32_t *ids, size_t n) {
        int r;

        r = entry_open(m, key, "au");
        if (r < 0)
                return r;
        r = request_append_u32_array(m, ids, n);
        if (r < 0)
                return r;
        return entry_close(m);
}

static int append_strv_entry(sd_bus_message *m, const char *key, const char *const *l) {
        int r;

        r = entry_open(m, key, "as");
        if (r < 0)
                return r;
        r = sd_bus_message_append_strv(m, (char **) l); /* NULL: an empty array */
        if (r < 0)
                return r;
        return entry_close(m);
}

/* The svm-* keys of Allocate (svm ranges), SetAttributes and their Commit operations. a may be NULL. */
static int append_svm_entries(sd_bus_message *m, const svmd_svm_attributes *a) {
        int r = 0;

        if (!a)
                return 0;
        if (a->set & SVMD_SVM_SET_PREFERRED)
                r = append_entry(m, SVMD_OPT_SVM_PREFERRED, 'u', &a->preferred);
        if (r >= 0 && (a->set & SVMD_SVM_SET_PREFETCH))
                r = append_entry(m, SVMD_OPT_SVM_PREFETCH, 'u', &a->prefetch);
        if (r >= 0 && (a->set & SVMD_SVM_SET_FLAGS))
                r = append_strv_entry(m, SVMD_OPT_SVM_FLAGS, a->flags);
        if (r >= 0 && (a->set & SVMD_SVM_SET_GRANULARITY))
                r = append_entry(m, SVMD_OPT_SVM_GRANULARITY, 'u', &a->granularity);
        if (r >= 0 && a->n_access > 0)
                r = append_u32_array_entry(m, SVMD_OPT_SVM_ACCESS, a->access, a->n_access);
        if (r >= 0 && a->n_access_in_place > 0)
                r = append_u32_array_entry(m, SVMD_OPT_SVM_ACCESS_IN_PLACE, a->access_in_place,
                                           a->n_access_in_place);
        if (r >= 0 && a->n_no_access > 0)
                r = append_u32_array_entry(m, SVMD_OPT_SVM_NO_ACCESS, a->no_access, a->n_no_access);
        return r;
}

/* The allocation keys Allocate's options and a Commit "Allocate" share. */
static int append_allocation_entries(sd_bus_message *m, const char *const *flags, const uint32_t *map, size_t n_map,
                                     uint64_t alignment, const char *label, bool persistent) {
        int r;

        if (flags) {
                r = append_strv_entry(m, SVMD_OPT_FLAGS, flags);
                if (r < 0)
                        return r;
        }
        if (n_map > 0) {
                r = append_u32_array_entry(m, SVMD_OPT_MAP, map, n_map);
                if (r < 0)
                        return r;
        }
        if (alignment > 0) {
                r = append_entry(m, SVMD_OPT_ALIGNMENT, 't', &alignment);
                if (r < 0)
                        return r;
        }
        if (label) {
                r = append_entry(m, SVMD_OPT_LABEL, 's', label);
                if (r < 0)
                        return r;
        }
        if (persistent) {
                r = append_bool_entry(m, SVMD_OPT_PERSISTENT, true);
                if (r < 0)
                        return r;
        }
        return 0;
}

int request_append_allocate_options(sd_bus_message *m, const svmd_allocate_options *o,
                                    const svmd_svm_attributes *svm) {
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        r = append_svm_entries(m, svm);
        if (r < 0)
                return r;
        if (o) {
                r = append_allocation_entries(m, o->flags, o->map, o->n_map, o->alignment, o->label, o->persistent);
                if (r < 0)
                        return r;
                if (o->dry_run) {
                        r = append_bool_entry(m, SVMD_OPT_DRY_RUN, true);
                        if (r < 0)
                                return r;
                }
                if (o->request_id) {
                        r = append_entry(m, SVMD_OPT_REQUEST_ID, 's', o->request_id);
                        if (r < 0)
                                return r;
                }
        }
        return sd_bus_message_close_container(m);
}

int request_append_change_options(sd_bus_message *m, const svmd_change_options *o) {
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        if (o && o->dry_run) {
                r = append_bool_entry(m, SVMD_OPT_DRY_RUN, true);
                if (r < 0)
                        return r;
        }
        if (o && o->request_id) {
                r = append_entry(m, SVMD_OPT_REQUEST_ID, 's', o->request_id);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(m);
}

int request_check_gpus(const uint32_t *ids, size_t n, bool need_one, svmd_error *error) {
        if (n > 0 && !ids)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "%zu GPU ids given but no array.", n);
        if (need_one && n == 0)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "At least one GPU id is needed.");
        if (n > SVMD_MAX_GPUS_PER_CALL)
                return error_setf(error, -E2BIG, SD_BUS_ERROR_INVALID_ARGS,
                                  "%zu GPU ids given; at most %u fit in one call.", n, SVMD_MAX_GPUS_PER_CALL);
        return 0;
}

#define SVM_SET_ALL (SVMD_SVM_SET_PREFERRED | SVMD_SVM_SET_PREFETCH | SVMD_SVM_SET_FLAGS | SVMD_SVM_SET_GRANULARITY)

int request_check_svm(const svmd_svm_attributes *a, const char *context, svmd_error *error) {
        const char *const names[3] = { SVMD_OPT_SVM_ACCESS, SVMD_OPT_SVM_ACCESS_IN_PLACE, SVMD_OPT_SVM_NO_ACCESS };
        const uint32_t *lists[3] = { a->access, a->access_in_place, a->no_access };
        const size_t n[3] = { a->n_access, a->n_access_in_place, a->n_no_access };
        int r;

        if (a->set & ~SVM_SET_ALL)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                  "%sUnknown bits 0x%x are set in svmd_svm_attributes.set.", context,
                                  a->set & ~SVM_SET_ALL);
        if ((a->set & SVMD_SVM_SET_PREFETCH) && a->prefetch == SVMD_SVM_LOCATION_NONE)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                  "%sThe prefetch location must be a GPU or system memory (0), not none.", context);
        if ((a->set & SVMD_SVM_SET_GRANULARITY) && a->granularity > SVMD_SVM_GRANULARITY_MAX)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                  "%sSVM granularity %u is out of range: it is the log2 of the migration unit in "
                                  "pages, 0–%u.", context, a->granularity, SVMD_SVM_GRANULARITY_MAX);
        for (size_t l = 0; l < 3; l++) {
                r = request_check_gpus(lists[l], n[l], false, error);
                if (r < 0)
                        return r;
        }
        /* One kind of access per GPU. */
        for (size_t l = 0; l < 3; l++)
                for (size_t i = 0; i < n[l]; i++)
                        for (size_t k = 0; k <= l; k++)
                                for (size_t j = 0; j < (k == l ? i : n[k]); j++) {
                                        if (lists[k][j] != lists[l][i])
                                                continue;
                                        if (k == l)
                                                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                                                  "%sGPU 0x%x is listed twice in %s.", context,
                                                                  lists[l][i], names[l]);
                                        return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                                          "%sGPU 0x%x is listed in both %s and %s; give each GPU "
                                                          "one kind of access.", context, lists[l][i], names[k],
                                                          names[l]);
                                }
        return 0;
}

/* What Allocate of domain takes: SVM attributes for svm ranges, allocation flags for the others. */
static int check_domain_options(const char *domain, const char *const *flags, const svmd_svm_attributes *svm,
                                const char *context, svmd_error *error) {
        bool is_svm = streq(domain, SVMD_DOMAIN_SVM);

        if (svm && !is_svm)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                  "%sSVM attributes are for svm ranges, not for a %s range.", context, domain);
        if (flags && is_svm)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                  "%sAllocation flags are not for svm ranges; give SVM flags in "
                                  "svmd_svm_attributes.flags instead.", context);
        if (svm)
                return request_check_svm(svm, context, error);
        return 0;
}

static const char *const op_names[] = {
        [SVMD_OP_ALLOCATE] = "Allocate",
        [SVMD_OP_ALLOCATE_BATCH] = "AllocateBatch",
        [SVMD_OP_MAP] = "Map",
        [SVMD_OP_UNMAP] = "Unmap",
        [SVMD_OP_FREE] = "Free",
        [SVMD_OP_SET_ATTRIBUTES] = "SetAttributes",
};

static int append_target(sd_bus_message *m, const svmd_op *op) {
        if (op->by_ref)
                return append_entry(m, SVMD_OPT_REF, 'u', &op->ref);
        return append_entry(m, SVMD_OPT_ID, 't', &op->id);
}

static int append_op(sd_bus_message *m, const svmd_op *op) {
        int r;

        r = sd_bus_message_open_container(m, 'r', "sa{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_append_basic(m, 's', op_names[op->kind]);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;

        switch (op->kind) {
        case SVMD_OP_ALLOCATE:
        case SVMD_OP_ALLOCATE_BATCH:
                if (op->kind == SVMD_OP_ALLOCATE) {
                        r = append_entry(m, SVMD_OPT_SIZE, 't', &op->size);
                        if (r >= 0)
                                r = append_entry(m, SVMD_OPT_DOMAIN, 's', op->domain ?: SVMD_DOMAIN_VRAM);
                } else {
                        r = entry_open(m, SVMD_OPT_HOST_RANGES, "a(tt)");
                        if (r >= 0)
                                r = request_append_host_ranges(m, op->host_ranges, op->n_host_ranges);
                        if (r >= 0)
                                r = entry_close(m);
                }
                if (r >= 0)
                        r = append_entry(m, SVMD_OPT_GPU, 'u', &op->gpu_id);
                if (r >= 0)
                        r = append_allocation_entries(m, op->flags, op->gpus, op->n_gpus, op->alignment, op->label,
                                                      op->persistent);
                if (r >= 0 && op->kind == SVMD_OP_ALLOCATE)
                        r = append_svm_entries(m, op->svm);
                break;
        case SVMD_OP_MAP:
        case SVMD_OP_UNMAP:
                r = append_target(m, op);
                if (r >= 0)
                        r = append_u32_array_entry(m, SVMD_OPT_GPUS, op->gpus, op->n_gpus);
                break;
        case SVMD_OP_FREE:
                r = append_target(m, op);
                break;
        case SVMD_OP_SET_ATTRIBUTES:
                r = append_target(m, op);
                if (r >= 0)
                        r = append_svm_entries(m, op->svm);
                break;
        default:
                r = -EINVAL;
        }
        if (r < 0)
                return r;

        r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}

int request_build_commit(svmd_client *c, const svmd_op *ops, size_t n_ops, const svmd_change_options *o,
                         sd_bus_message **ret, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (n_ops > 0 && !ops)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "%zu operations given but no array.",
                                  n_ops);
        if (n_ops > SVMD_MAX_COMMIT_OPS)
                return error_setf(error, -E2BIG, SD_BUS_ERROR_INVALID_ARGS,
                                  "%zu operations given; a commit takes at most %u.", n_ops, SVMD_MAX_COMMIT_OPS);
        for (size_t i = 0; i < n_ops; i++) {
                const svmd_op *op = &ops[i];
                char context[48];

                if ((unsigned) op->kind >= ELEMENTSOF(op_names))
                        return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                          "Operation %zu has unknown kind %d.", i, (int) op->kind);
                r = request_check_gpus(op->gpus, op->n_gpus, false, error);
                if (r < 0)
                        return r;
                if (op->n_host_ranges > 0 && !op->host_ranges)
                        return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                          "Operation %zu lists host ranges but no array.", i);

                snprintf(context, sizeof(context), "Operation %zu (%s): ", i, op_names[op->kind]);
                switch (op->kind) {
                case SVMD_OP_ALLOCATE:
                        r = check_domain_options(op->domain ?: SVMD_DOMAIN_VRAM, op->flags, op->svm, context, error);
                        break;
                case SVMD_OP_SET_ATTRIBUTES:
                        if (!op->svm)
                                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                                  "%sNo SVM attributes are given (svm is NULL).", context);
                        r = request_check_svm(op->svm, context, error);
                        break;
                default:
                        if (op->svm)
                                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                                  "%sSVM attributes belong to Allocate or SetAttributes "
                                                  "operations only.", context);
                        r = 0;
                }
                if (r < 0)
                        return r;
        }

        r = client_new_call(c, true, "Commit", &m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'a', "(sa{sv})");
        for (size_t i = 0; r >= 0 && i < n_ops; i++)
                r = append_op(m, &ops[i]);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = request_append_change_options(m, o);
        if (r < 0)
                return error_setf(error, r, NULL, "Building the Commit call failed: %s.", strerror(-r));
        *ret = TAKE_PTR(m);
        return 0;
}

int reply_read_allocation(sd_bus_message *reply, svmd_allocation *ret) {
        uint64_t id, va;
        const char *path;
        int r;

        r = sd_bus_message_read(reply, "tto", &id, &va, &path);
        if (r < 0)
                return r;
        if (ret)
                *ret = (svmd_allocation) { .id = id, .va = va };
        return 0;
}

int reply_read_commit_results(sd_bus_message *reply, svmd_op_result **ret, size_t *ret_n) {
        _cleanup_free_ svmd_op_result *results = NULL;
        size_t n = 0, allocated = 0;
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "(a{sv})");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, 'r', "a{sv}")) > 0) {
                svmd_op_result res = {};
                const char *key;

                r = sd_bus_message_enter_container(reply, 'a', "{sv}");
                if (r < 0)
                        return r;
                while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                        r = sd_bus_message_read_basic(reply, 's', &key);
                        if (r < 0)
                                return r;
                        if (streq(key, "id"))
                                r = sd_bus_message_read(reply, "v", "t", &res.id);
                        else if (streq(key, "va"))
                                r = sd_bus_message_read(reply, "v", "t", &res.va);
                        else
                                r = sd_bus_message_skip(reply, "v"); /* "path", and keys added later */
                        if (r < 0)
                                return r;
                        r = sd_bus_message_exit_container(reply);
                        if (r < 0)
                                return r;
                }
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;

                if (n >= allocated) {
                        size_t k = allocated ? allocated * 2 : 16;
                        svmd_op_result *p = reallocarray(results, k, sizeof(svmd_op_result));
                        if (!p)
                                return -ENOMEM;
                        results = p;
                        allocated = k;
                }
                results[n++] = res;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(results);
        *ret_n = n;
        return 0;
}

int request_build_allocate(svmd_client *c, uint64_t size, uint32_t gpu_id, const char *domain,
                           const svmd_allocate_options *o, sd_bus_message **ret, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (o) {
                r = request_check_gpus(o->map, o->n_map, false, error);
                if (r < 0)
                        return r;
                r = check_domain_options(domain, o->flags, o->svm, "", error);
                if (r < 0)
                        return r;
        }
        r = client_new_call(c, true, "Allocate", &m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "tus", size, gpu_id, domain);
        if (r >= 0)
                r = request_append_allocate_options(m, o, o ? o->svm : NULL);
        if (r < 0)
                return error_setf(error, r, NULL, "Building the Allocate call failed: %s.", strerror(-r));
        *ret = TAKE_PTR(m);
        return 0;
}

int request_build_map(svmd_client *c, uint64_t id, const uint32_t *gpu_ids, size_t n, const svmd_change_options *o,
                      sd_bus_message **ret, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = request_check_gpus(gpu_ids, n, false, error);
        if (r < 0)
                return r;
        r = client_new_call(c, true, "Map", &m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "t", id);
        if (r >= 0)
                r = request_append_u32_array(m, gpu_ids, n);
        if (r >= 0)
                r = request_append_change_options(m, o);
        if (r < 0)
                return error_setf(error, r, NULL, "Building the Map call failed: %s.", strerror(-r));
        *ret = TAKE_PTR(m);
        return 0;
}

int request_build_unmap(svmd_client *c, uint64_t id, const uint32_t *gpu_ids, size_t n, sd_bus_message **ret,
                        svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = request_check_gpus(gpu_ids, n, false, error);
        if (r < 0)
                return r;
        r = client_new_call(c, true, "Unmap", &m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "t", id);
        if (r >= 0)
                r = request_append_u32_array(m, gpu_ids, n);
        if (r < 0)
                return error_setf(error, r, NULL, "Building the Unmap call failed: %s.", strerror(-r));
        *ret = TAKE_PTR(m);
        return 0;
}

int request_build_id(svmd_client *c, const char *member, uint64_t id, sd_bus_message **ret, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = client_new_call(c, true, member, &m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "t", id);
        if (r < 0)
                return error_setf(error, r, NULL, "Building the %s call failed: %s.", member, strerror(-r));
        *ret = TAKE_PTR(m);
        return 0;
}

int request_build_set_attributes(svmd_client *c, uint64_t id, const svmd_svm_attributes *attrs,
                                 const svmd_change_options *o, sd_bus_message **ret, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = request_check_svm(attrs, "", error);
        if (r < 0)
                return r;
        r = client_new_call(c, true, "SetAttributes", &m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "t", id);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = append_svm_entries(m, attrs);
        if (r >= 0 && o && o->dry_run)
                r = append_bool_entry(m, SVMD_OPT_DRY_RUN, true);
        if (r >= 0 && o && o->request_id)
                r = append_entry(m, SVMD_OPT_REQUEST_ID, 's', o->request_id);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return error_setf(error, r, NULL, "Building the SetAttributes call failed: %s.", strerror(-r));
        *ret = TAKE_PTR(m);
        return 0;
}
