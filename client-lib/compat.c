/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * LIBSVMD_0.1 entry points of the calls whose structs grew in LIBSVMD_0.2
 * (svmd_allocate_options.svm, svmd_op.svm, svmd_status.xnack,
 * svmd_range_filter.after). A binary built against 0.1 passes and expects
 * the old sizes: each struct then ended where its first 0.2 field now starts.
 * These copy the old struct into a new one (the new fields zero) or the new
 * answer back into the old size, and call the current implementation.
 */

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "svmd-protocol.h"

#define ALLOCATE_OPTIONS_SIZE_V0_1 offsetof(svmd_allocate_options, svm)
#define OP_SIZE_V0_1               offsetof(svmd_op, svm)
#define STATUS_SIZE_V0_1           offsetof(svmd_status, xnack)
#define RANGE_FILTER_SIZE_V0_1     offsetof(svmd_range_filter, after)

/* The old sizes were whole structs: the first new field starts at a multiple of the struct's alignment. */
_Static_assert(offsetof(svmd_allocate_options, svm) % _Alignof(svmd_allocate_options) == 0, "0.1 layout");
_Static_assert(offsetof(svmd_op, svm) % _Alignof(svmd_op) == 0, "0.1 layout");
_Static_assert(offsetof(svmd_status, xnack) % _Alignof(svmd_status) == 0, "0.1 layout");
_Static_assert(offsetof(svmd_range_filter, after) % _Alignof(svmd_range_filter) == 0, "0.1 layout");

/* The 0.1 structs are opaque here: void * where they differ from the current ones. */
int svmd_allocate_v0_1(svmd_client *c, uint64_t size, uint32_t gpu_id, const char *domain, const void *options,
                       svmd_allocation *ret, svmd_error *error);
int svmd_allocate_async_v0_1(svmd_client *c, uint64_t size, uint32_t gpu_id, const char *domain,
                             const void *options, svmd_allocate_callback callback, void *userdata,
                             svmd_error *error);
int svmd_commit_v0_1(svmd_client *c, const void *ops, size_t n_ops, const svmd_change_options *options,
                     svmd_op_result *results, svmd_error *error);
int svmd_commit_async_v0_1(svmd_client *c, const void *ops, size_t n_ops, const svmd_change_options *options,
                           svmd_commit_callback callback, void *userdata, svmd_error *error);
int svmd_get_status_v0_1(svmd_client *c, void *ret, svmd_error *error);
int svmd_list_ranges_v0_1(svmd_client *c, const void *filter, svmd_range **ret, size_t *ret_n, svmd_error *error);

static const svmd_allocate_options *allocate_options_from_v0_1(const void *old, svmd_allocate_options *buf) {
        if (!old)
                return NULL;
        *buf = (svmd_allocate_options) {};
        memcpy(buf, old, ALLOCATE_OPTIONS_SIZE_V0_1);
        return buf;
}

/* *ret: the ops in the current layout (malloc()ed), or the old pointer where the callee refuses them unread. */
static int ops_from_v0_1(const void *old, size_t n_ops, svmd_op **ret_new, const svmd_op **ret,
                         svmd_error *error) {
        _cleanup_free_ svmd_op *ops = NULL;

        *ret_new = NULL;
        if (!old || n_ops == 0 || n_ops > SVMD_MAX_COMMIT_OPS) {
                *ret = old;
                return 0;
        }
        ops = calloc(n_ops, sizeof(svmd_op));
        if (!ops)
                return error_setf(error, -ENOMEM, NULL, "Out of memory.");
        for (size_t i = 0; i < n_ops; i++) {
                memcpy(&ops[i], (const uint8_t *) old + i * OP_SIZE_V0_1, OP_SIZE_V0_1);
                /* 0.1 had no SetAttributes: what is one now was an unknown kind then. */
                if ((unsigned) ops[i].kind > SVMD_OP_FREE)
                        return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                          "Operation %zu has unknown kind %d.", i, (int) ops[i].kind);
        }
        *ret = ops;
        *ret_new = TAKE_PTR(ops);
        return 0;
}

SYMVER(svmd_allocate_v0_1, "svmd_allocate@LIBSVMD_0.1")
_public_ int svmd_allocate_v0_1(svmd_client *c, uint64_t size, uint32_t gpu_id, const char *domain,
                                const void *options, svmd_allocation *ret, svmd_error *error) {
        svmd_allocate_options o;

        return svmd_allocate_v0_2(c, size, gpu_id, domain, allocate_options_from_v0_1(options, &o), ret, error);
}

SYMVER(svmd_allocate_async_v0_1, "svmd_allocate_async@LIBSVMD_0.1")
_public_ int svmd_allocate_async_v0_1(svmd_client *c, uint64_t size, uint32_t gpu_id, const char *domain,
                                      const void *options, svmd_allocate_callback callback, void *userdata,
                                      svmd_error *error) {
        svmd_allocate_options o;

        return svmd_allocate_async_v0_2(c, size, gpu_id, domain, allocate_options_from_v0_1(options, &o), callback,
                                        userdata, error);
}

SYMVER(svmd_commit_v0_1, "svmd_commit@LIBSVMD_0.1")
_public_ int svmd_commit_v0_1(svmd_client *c, const void *ops, size_t n_ops, const svmd_change_options *options,
                              svmd_op_result *results, svmd_error *error) {
        _cleanup_free_ svmd_op *converted = NULL;
        const svmd_op *p;

        int r;

        r = ops_from_v0_1(ops, n_ops, &converted, &p, error);
        if (r < 0)
                return r;
        return svmd_commit_v0_2(c, p, n_ops, options, results, error);
}

SYMVER(svmd_commit_async_v0_1, "svmd_commit_async@LIBSVMD_0.1")
_public_ int svmd_commit_async_v0_1(svmd_client *c, const void *ops, size_t n_ops,
                                    const svmd_change_options *options, svmd_commit_callback callback,
                                    void *userdata, svmd_error *error) {
        _cleanup_free_ svmd_op *converted = NULL;
        const svmd_op *p;

        int r;

        /* The request is built before this returns: the converted ops are not needed afterwards. */
        r = ops_from_v0_1(ops, n_ops, &converted, &p, error);
        if (r < 0)
                return r;
        return svmd_commit_async_v0_2(c, p, n_ops, options, callback, userdata, error);
}

SYMVER(svmd_get_status_v0_1, "svmd_get_status@LIBSVMD_0.1")
_public_ int svmd_get_status_v0_1(svmd_client *c, void *ret, svmd_error *error) {
        svmd_status s;
        int r;

        r = svmd_get_status_v0_2(c, ret ? &s : NULL, error);
        if (r < 0)
                return r;
        memcpy(ret, &s, STATUS_SIZE_V0_1);
        return 0;
}

SYMVER(svmd_list_ranges_v0_1, "svmd_list_ranges@LIBSVMD_0.1")
_public_ int svmd_list_ranges_v0_1(svmd_client *c, const void *filter, svmd_range **ret, size_t *ret_n,
                                   svmd_error *error) {
        svmd_range_filter f = {};

        if (!filter)
                return svmd_list_ranges_v0_2(c, NULL, ret, ret_n, error);
        memcpy(&f, filter, RANGE_FILTER_SIZE_V0_1);
        return svmd_list_ranges_v0_2(c, &f, ret, ret_n, error);
}
