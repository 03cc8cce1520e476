/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * org.svmd1.Manager: where requests enter. A mutating method decodes its arguments, runs the
 * prologue (client, replay, range, authorization) and hands one operation to Commit's path
 * (commit.h), which validates, executes as one transaction, and commits or rolls back; then
 * it replies (docs/architecture.md, "The path of a request").
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "bus-util.h"
#include "client.h"
#include "commit.h"
#include "direct.h"
#include "gpu-dbus.h"
#include "gpu.h"
#include "health.h"
#include "log.h"
#include "manager-dbus.h"
#include "manager.h"
#include "method-util.h"
#include "metrics-dbus.h"
#include "persist.h"
#include "range-svm.h"
#include "range.h"
#include "request-cache.h"
#include "share-dbus.h"
#include "size-util.h"
#include "str-table.h"
#include "svmd-protocol.h"
#include "transaction.h"

#define LIST_DEFAULT_LIMIT 1000U

/* ---- methods ---- */

/*
 * Every mutating method is one operation through Commit's path (commit.h): the handler decodes
 * its arguments, finds the client, answers a retry and authorizes (method_prologue()); then
 * operation_run() validates, executes and commits or rolls back, and the handler replies.
 */

static int allocate_common(sd_bus_message *msg, Manager *m, OpArgs *a, OpKind kind, sd_bus_error *error) {
        Operation op = { .kind = kind, .args = a, .dry_run = a->dry_run };
        Range *range;
        Client *c;
        int r;

        r = manager_get_client(m, msg, &c, error);
        if (r < 0)
                return r;
        r = request_replay(m, msg, c, a->request_id, error);
        if (r != 0)
                return r;
        if (a->request_id) {
                r = request_digest(msg, &op.request_digest);
                if (r < 0)
                        return r;
                /* Persistent ranges remember their request id across restarts of svmd. */
                range = manager_find_range_by_request(m, c->identity->uid, a->request_id);
                if (range && range_request_digest(range) != 0 && range_request_digest(range) != op.request_digest)
                        return request_id_reused(a->request_id, sd_bus_message_get_member(msg), msg, error);
                if (range)
                        return reply_allocation(m, msg, range, c, a->request_id);
        }

        r = operation_run(m, c, &op, &range, error);
        if (r < 0)
                return r;
        if (r == 0) /* dry-run */
                return sd_bus_reply_method_return(msg, "tto", UINT64_C(0), UINT64_C(0), "/");

        log_allocated(range);
        return reply_allocation(m, msg, range, c, a->request_id);
}

static int run_allocate(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(op_args_done) OpArgs a = {};
        Manager *m = userdata;
        const char *domain;
        int r;

        /* Field by field: sd_bus_message_read() parses its format string on every call. */
        r = sd_bus_message_read_basic(msg, 't', &a.size);
        if (r >= 0)
                r = sd_bus_message_read_basic(msg, 'u', &a.gpu);
        if (r >= 0)
                r = sd_bus_message_read_basic(msg, 's', &domain);
        if (r < 0)
                return r;
        a.has_size = true;
        a.domain = strdup(domain);
        if (!a.domain)
                return -ENOMEM;
        r = bus_read_options(msg, allocate_options, &a, "options", error);
        if (r < 0)
                return r;

        return allocate_common(msg, m, &a, OP_ALLOCATE, error);
}

static int run_allocate_batch(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
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

        return allocate_common(msg, m, &a, OP_ALLOCATE_BATCH, error);
}

static int run_free(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        OpArgs a = {};
        Manager *m = userdata;
        char key[sizeof(REQUEST_ID_FREE_PREFIX) + U64_DECIMAL_MAX];
        RangeCall call = { .verb = "Freeing", .replay_key = key };
        Operation op = { .kind = OP_FREE, .args = &a };
        Client *c;
        int r;

        r = sd_bus_message_read_basic(msg, 't', &call.id);
        if (r < 0)
                return r;
        /* Ids are never reused: a retried Free of a range this user freed (or let go of, while
         * holders keep it) answers like the first. */
        memcpy(key, REQUEST_ID_FREE_PREFIX, strlen(REQUEST_ID_FREE_PREFIX));
        (void) format_u64(key + strlen(REQUEST_ID_FREE_PREFIX), call.id);
        r = method_prologue(m, msg, &call, &c, &op.target, error);
        if (r <= 0)
                return r == 0 ? 1 : r;

        if (range_holds(op.target)) {
                /* Holders keep it alive: the owner lets go, the last holder's Release frees it. */
                r = range_release_owner(op.target);
                if (r < 0)
                        return r;
                log_fields(LOG_DEBUG, &((LogFields) { .range_id = call.id }),
                           "Range %" PRIu64 " released by its owner; holders keep it.", call.id);
                return reply_empty(m, msg, c, key);
        }

        r = operation_run(m, c, &op, NULL, error);
        if (r < 0)
                return r;
        log_fields(LOG_DEBUG, &((LogFields) { .range_id = call.id }), "Range %" PRIu64 " freed.", call.id);
        return reply_empty(m, msg, c, key);
}

/* Map, Unmap, SetAttributes: the prologue, the operation, an empty reply. */
static int change_range(sd_bus_message *msg, Manager *m, RangeCall *call, Operation *op, sd_bus_error *error) {
        Client *c;
        int r;

        r = method_prologue(m, msg, call, &c, &op->target, error);
        if (r <= 0)
                return r == 0 ? 1 : r;
        r = operation_run(m, c, op, NULL, error);
        if (r < 0)
                return r;
        /* A dry run, or a Map to where the range is mapped already, changes nothing and takes no
         * place among the request ids. */
        return reply_empty(m, msg, c, r > 0 ? call->request_id : NULL);
}

static int run_map(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(op_args_done) OpArgs a = {};
        RangeCall call = { .verb = "Mapping" };
        Operation op = { .kind = OP_MAP, .args = &a };
        int r;

        r = sd_bus_message_read(msg, "t", &call.id);
        if (r < 0)
                return r;
        r = bus_read_u32_array(msg, SVMD_MAX_GPUS_PER_CALL, "gpu_ids", &a.gpus, error);
        if (r < 0)
                return r;
        a.has_gpus = true;
        r = bus_read_options(msg, change_options, &a, "options", error);
        if (r < 0)
                return r;
        call.request_id = a.request_id;
        op.dry_run = a.dry_run;

        return change_range(msg, userdata, &call, &op, error);
}

static int run_unmap(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(op_args_done) OpArgs a = {};
        RangeCall call = { .verb = "Unmapping" };
        Operation op = { .kind = OP_UNMAP, .args = &a };
        int r;

        r = sd_bus_message_read(msg, "t", &call.id);
        if (r < 0)
                return r;
        r = bus_read_u32_array(msg, SVMD_MAX_GPUS_PER_CALL, "gpu_ids", &a.gpus, error);
        if (r < 0)
                return r;
        a.has_gpus = true;

        return change_range(msg, userdata, &call, &op, error);
}

static int run_set_attributes(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(op_args_done) OpArgs a = {};
        RangeCall call = { .verb = "Changing the attributes of" };
        Operation op = { .kind = OP_SET_ATTRIBUTES, .args = &a };
        int r;

        r = sd_bus_message_read(msg, "t", &call.id);
        if (r < 0)
                return r;
        r = bus_read_options(msg, set_attributes_options, &a, "attrs", error);
        if (r < 0)
                return r;
        call.request_id = a.request_id;
        op.dry_run = a.dry_run;

        return change_range(msg, userdata, &call, &op, error);
}

/* Each runs as a job: its ioctls on the executor, the reply when it ends (method_run_job()). */
static int method_allocate(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return method_run_job(userdata, msg, run_allocate, error);
}

static int method_allocate_batch(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return method_run_job(userdata, msg, run_allocate_batch, error);
}

static int method_free(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return method_run_job(userdata, msg, run_free, error);
}

static int method_map(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return method_run_job(userdata, msg, run_map, error);
}

static int method_unmap(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return method_run_job(userdata, msg, run_unmap, error);
}

static int method_set_attributes(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return method_run_job(userdata, msg, run_set_attributes, error);
}

/* ---- queries ---- */

/*
 * One GPU's record of ListGpus, field by field: sd_bus_message_append() parses its format
 * string again for every record, a fifth of the call's instructions.
 */
static int append_gpu_record(sd_bus_message *reply, Gpu *g) {
        uint64_t avail = 0, used;
        uint16_t minor = (uint16_t) g->kfd->drm_render_minor;
        int r;

        if (gpu_vram_available(g, GPU_AVAILABLE_MAX_AGE_USEC, &avail) < 0)
                avail = 0;
        used = g->kfd->vram_size > avail ? g->kfd->vram_size - avail : 0;

        r = sd_bus_message_open_container(reply, 'r', "uusstttq");
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, 'u', &g->gpu_id);
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, 'u', &g->kfd->node_id);
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, 's', g->kfd->target);
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, 's', g->kfd->name);
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, 't', &g->kfd->vram_size);
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, 't', &used);
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, 't', &avail);
        if (r >= 0)
                r = sd_bus_message_append_basic(reply, 'q', &minor);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

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
                r = append_gpu_record(reply, m->gpus[i]);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static bool range_matches(Manager *m, Range *range, const OpArgs *f, Client *c, bool all) {
        if (!all && !client_may(c, range, true))
                return false;
        if (f->has_owner && (!range->owner || range->owner->uid != f->owner))
                return false;
        if (f->label && !streq_ptr(range_label(range), f->label))
                return false;
        if (f->has_gpu) {
                Gpu *g = manager_find_gpu(m, f->gpu);
                if (!g)
                        return false;
                if (range->home != g->index && !(range_mapped_any(range) & (UINT64_C(1) << g->index)))
                        return false;
        }
        return true;
}

static int method_list_ranges(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(op_args_done) OpArgs f = {};
        Manager *m = userdata;
        uint64_t skipped = 0, n = 0, limit;
        Client *c;
        bool all;
        int r;

        r = bus_read_options(msg, filter_options, &f, "filter", error);
        if (r < 0)
                return r;
        r = manager_get_client(m, msg, &c, error);
        if (r < 0)
                return r;
        /* Everyone sees what they own or hold; listing others' ranges is for administrators. */
        all = c->identity->uid == 0;
        if (!all && (f.all || (f.has_owner && f.owner != c->identity->uid))) {
                r = authorize_admin(m, msg, c, "Listing the ranges of other users", error);
                if (r <= 0)
                        return r == 0 ? 1 : r;
                all = true;
        }
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
        /* In id order: a page that starts after the cursor costs the same wherever it starts. */
        for (Range *range = !f.has_after ? manager_ranges_from(m, 0)
                            : f.after < UINT64_MAX ? manager_ranges_from(m, f.after + 1) : NULL;
             range && n < limit; range = manager_ranges_next(m, range)) {
                if (!range_matches(m, range, &f, c, all))
                        continue;
                if (skipped < f.offset) {
                        skipped++;
                        continue;
                }
                r = sd_bus_message_open_container(reply, 'r', "ttttsuausus");
                if (r < 0)
                        return r;
                r = sd_bus_message_append(reply, "ttttsu", range->id, range_va(range), range_size(range), (uint64_t) range->flags,
                                          range_domain_to_string(range->domain), m->gpus[range->home]->gpu_id);
                if (r < 0)
                        return r;
                r = gpu_mask_append(reply, m, range_mapped(range));
                if (r < 0)
                        return r;
                r = sd_bus_message_append(reply, "sus", strempty(range_label(range)),
                                          range->owner ? (uint32_t) range->owner->uid : UINT32_MAX,
                                          range_public_state(range));
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

static int property_get_xnack(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "b", m->xnack);
}

static int property_get_kfd_contexts(sd_bus *bus, const char *path, const char *interface, const char *property,
                                     sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "u", (uint32_t) m->n_contexts);
}

/* The runtime directory's space and the fd store's use (docs/dbus-api.md), measured when asked. */
static int property_get_durability(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        uint64_t v;

        persist_check_space(m);
        if (streq(property, "RuntimeDirectoryFree"))
                v = m->runtime_free;
        else if (streq(property, "RuntimeDirectorySize"))
                v = m->runtime_size;
        else if (streq(property, "StoredFds"))
                v = m->n_stored_fds;
        else
                v = m->config.limit_fd_store_max;
        return sd_bus_message_append(reply, "t", v);
}

static int property_get_gpus(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return gpu_mask_append(reply, m, m->n_gpus >= 64 ? UINT64_MAX : (UINT64_C(1) << m->n_gpus) - 1);
}

static int property_get_ranges(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "t", (uint64_t) id_index_size(m->ranges));
}

static int property_get_bytes_allocated(sd_bus *bus, const char *path, const char *interface,
                                        const char *property, sd_bus_message *reply, void *userdata,
                                        sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "t", m->bytes_allocated);
}

static int property_get_clients(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "u", (uint32_t) str_table_size(m->clients));
}

/*
 * Signals about ranges and quota scopes go only to the clients that called
 * Subscribe, and of those only to the ones that may see them: on the bus as
 * unicast signals, on the direct socket to the peer (docs/dbus-api.md,
 * "Signals"). Whether the caller sees every tenant's is decided here, once: root,
 * or org.svmd1.manage. A refusal is no error: the caller still gets its own.
 */
static int method_subscribe(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        Client *c;
        bool all;
        int r;

        r = authorize_sees_all(m, msg, "Receiving the signals of every user", &c, &all, error);
        if (r <= 0)
                return r == 0 ? 1 : r; /* 0: polkit answers later; the call runs again */
        client_subscribe(c, all);
        return sd_bus_reply_method_return(msg, "");
}

static int property_get_lost(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(ts)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_lost; i++) {
                r = sd_bus_message_append(reply, "(ts)", m->lost[i].id, m->lost[i].reason);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("KfdVersion", "s", property_get_kfd_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Gpus", "au", property_get_gpus, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Ranges", "t", property_get_ranges, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BytesAllocated", "t", property_get_bytes_allocated, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Clients", "u", property_get_clients, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LostRanges", "a(ts)", property_get_lost, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Xnack", "b", property_get_xnack, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("KfdContexts", "u", property_get_kfd_contexts, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("RuntimeDirectoryFree", "t", property_get_durability, 0, 0),
        SD_BUS_PROPERTY("RuntimeDirectorySize", "t", property_get_durability, 0, 0),
        SD_BUS_PROPERTY("StoredFds", "t", property_get_durability, 0, 0),
        SD_BUS_PROPERTY("FdStoreMax", "t", property_get_durability, 0, 0),

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
        SD_BUS_METHOD_WITH_ARGS("SetAttributes", SD_BUS_ARGS("t", id, "a{sv}", attrs), SD_BUS_NO_RESULT,
                                method_set_attributes, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Commit", SD_BUS_ARGS("a(sa{sv})", ops, "a{sv}", options),
                                SD_BUS_RESULT("a(a{sv})", results),
                                method_commit, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Reuse", SD_BUS_ARGS("t", id), SD_BUS_NO_RESULT,
                                method_reuse, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListRanges", SD_BUS_ARGS("a{sv}", filter),
                                SD_BUS_RESULT("a(ttttsuausus)", ranges),
                                method_list_ranges, SD_BUS_VTABLE_UNPRIVILEGED),

        SD_BUS_METHOD_WITH_ARGS("Export", SD_BUS_ARGS("t", id), SD_BUS_RESULT("h", dmabuf, "t", va, "t", size),
                                method_export, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Share", SD_BUS_ARGS("t", id, "a{sv}", grant), SD_BUS_RESULT("s", token),
                                method_share, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Attach", SD_BUS_ARGS("s", token),
                                SD_BUS_RESULT("t", id, "t", va, "t", size, "h", dmabuf),
                                method_attach, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Release", SD_BUS_ARGS("t", id), SD_BUS_NO_RESULT,
                                method_release, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListTokens", SD_BUS_ARGS("t", id), SD_BUS_RESULT("a(sa{sv})", tokens),
                                method_list_tokens, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RevokeToken", SD_BUS_ARGS("s", token), SD_BUS_NO_RESULT,
                                method_revoke_token, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RevokeHold", SD_BUS_ARGS("t", id, "u", uid), SD_BUS_NO_RESULT,
                                method_revoke_hold, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Revoke", SD_BUS_ARGS("t", id, "t", timeout_usec, "a{sv}", options),
                                SD_BUS_RESULT("u", holders, "t", deadline_usec),
                                method_revoke, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetUsage", SD_BUS_ARGS("s", scope), SD_BUS_RESULT("a{sv}", usage),
                                method_get_usage, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Reload", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
                                method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Subscribe", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
                                method_subscribe, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetMetrics", SD_BUS_ARGS("a{sv}", options), SD_BUS_RESULT("s", metrics),
                                method_get_metrics, SD_BUS_VTABLE_UNPRIVILEGED),

        SD_BUS_SIGNAL_WITH_ARGS("RangeCreated", SD_BUS_ARGS("t", id, "o", path), 0),
        SD_BUS_SIGNAL_WITH_ARGS("RangeFreed", SD_BUS_ARGS("t", id), 0),
        SD_BUS_SIGNAL_WITH_ARGS("QuotaExceeded", SD_BUS_ARGS("s", scope, "s", resource), 0),
        SD_BUS_SIGNAL_WITH_ARGS("GpuLost", SD_BUS_ARGS("u", gpu_id), 0),
        SD_BUS_SIGNAL_WITH_ARGS("ContentsLost", SD_BUS_ARGS("t", id, "u", gpu_id, "s", reason), 0),
        SD_BUS_SIGNAL_WITH_ARGS("VmFault", SD_BUS_ARGS("u", gpu_id, "u", pid, "s", task), 0),
        SD_BUS_SIGNAL_WITH_ARGS("RevokeRequested", SD_BUS_ARGS("t", id, "u", uid, "t", deadline_usec), 0),
        SD_BUS_SIGNAL_WITH_ARGS("RevokeFinished", SD_BUS_ARGS("t", id, "u", acknowledged, "u", forced), 0),
        SD_BUS_VTABLE_END,
};
