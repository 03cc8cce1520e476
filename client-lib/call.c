/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The methods of org.svmd1.Manager (docs/dbus-api.md) as plain C calls: build the
 * request (request.c), send it on the connection the call belongs on
 * (client.c), read the reply into public structs.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "svmd-protocol.h"

static int bad_reply(svmd_error *error, const char *member, int r) {
        return error_setf(error, r, NULL, "svmd's reply to %s cannot be read: %s.", member, strerror(-r));
}

static int build_failed(svmd_error *error, const char *member, int r) {
        return error_setf(error, r, NULL, "Building the %s call failed: %s.", member, strerror(-r));
}

static void copy_string(char *dst, size_t size, const char *src) {
        snprintf(dst, size, "%s", strempty(src));
}

static bool gpu_listed(const uint32_t *ids, size_t n, uint32_t id) {
        for (size_t i = 0; i < n; i++)
                if (ids[i] == id)
                        return true;
        return false;
}

_public_ int svmd_list_gpus(svmd_client *c, svmd_gpu **ret, size_t *ret_n, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_free_ svmd_gpu *gpus = NULL;
        _cleanup_free_ uint32_t *visible = NULL;
        size_t n = 0, n_visible = 0;
        bool only_visible;
        int r;

        if (!c || !ret || !ret_n)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = environment_visible_gpus(&visible, &n_visible);
        if (r < 0)
                return error_setf(error, r, NULL, "Out of memory.");
        only_visible = r > 0;
        r = client_new_call(c, false, "ListGpus", &m, error);
        if (r < 0)
                return r;
        r = client_call(c, m, &reply, error);
        if (r < 0)
                return r;

        r = sd_bus_message_enter_container(reply, 'a', "(uusstttq)");
        if (r < 0)
                return bad_reply(error, "ListGpus", r);
        for (;;) {
                svmd_gpu g = {};
                const char *target, *name;
                svmd_gpu *p;

                r = sd_bus_message_read(reply, "(uusstttq)", &g.gpu_id, &g.node_id, &target, &name, &g.vram_total,
                                        &g.vram_used, &g.vram_free, &g.render_minor);
                if (r < 0)
                        return bad_reply(error, "ListGpus", r);
                if (r == 0)
                        break;
                /* The GPUs the environment names (a container's, docs/containers.md); the rest exist but
                 * are not this process's to use by default. */
                if (only_visible && !gpu_listed(visible, n_visible, g.gpu_id))
                        continue;
                copy_string(g.target, sizeof(g.target), target);
                copy_string(g.name, sizeof(g.name), name);
                p = reallocarray(gpus, n + 1, sizeof(svmd_gpu));
                if (!p)
                        return error_setf(error, -ENOMEM, NULL, "Out of memory.");
                gpus = p;
                gpus[n++] = g;
        }
        *ret = TAKE_PTR(gpus);
        *ret_n = n;
        return 0;
}

/*
 * Properties.GetAll of interface at path, over bus. read_one() reads the value (the variant) of a
 * property it knows and returns 1; 0 leaves it to be skipped; < 0 is a malformed reply.
 */
typedef int (*PropertyReader)(sd_bus_message *reply, const char *name, void *userdata);

static int get_all_properties(svmd_client *c, sd_bus *bus, const char *path, const char *interface,
                              PropertyReader read_one, void *userdata, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *name;
        int r;

        r = sd_bus_message_new_method_call(bus, &m, SVMD_BUS_NAME, path, "org.freedesktop.DBus.Properties",
                                           "GetAll");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", interface);
        if (r < 0)
                return build_failed(error, "GetAll", r);
        r = client_call(c, m, &reply, error);
        if (r < 0)
                return r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return bad_reply(error, "GetAll", r);
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                r = sd_bus_message_read_basic(reply, 's', &name);
                if (r < 0)
                        break;
                r = read_one(reply, name, userdata);
                if (r == 0)
                        r = sd_bus_message_skip(reply, "v");
                if (r < 0)
                        break;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        break;
        }
        if (r < 0)
                return bad_reply(error, "GetAll", r);
        return 0;
}

/* GetAll of the manager, each property through read_one. */
static int get_manager_properties(svmd_client *c, PropertyReader read_one, void *userdata, svmd_error *error) {
        sd_bus *bus = client_pick(c, false);

        if (!bus)
                return error_setf(error, -ENOTCONN, NULL, "svmd cannot be reached; is svmd running?");
        return get_all_properties(c, bus, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, read_one, userdata, error);
}

static int read_status_property(sd_bus_message *reply, const char *name, void *userdata) {
        svmd_status *s = userdata;
        const char *str;
        int r;

        if (streq(name, "Version")) {
                r = sd_bus_message_read(reply, "v", "s", &str);
                if (r >= 0)
                        copy_string(s->version, sizeof(s->version), str);
        } else if (streq(name, "KfdVersion")) {
                r = sd_bus_message_read(reply, "v", "s", &str);
                if (r >= 0)
                        copy_string(s->kfd_version, sizeof(s->kfd_version), str);
        } else if (streq(name, "Gpus")) {
                const void *p;
                size_t sz = 0;

                r = sd_bus_message_enter_container(reply, 'v', "au");
                if (r >= 0)
                        r = sd_bus_message_read_array(reply, 'u', &p, &sz);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                s->n_gpus = (uint32_t) (sz / sizeof(uint32_t));
        } else if (streq(name, "Ranges"))
                r = sd_bus_message_read(reply, "v", "t", &s->n_ranges);
        else if (streq(name, "BytesAllocated"))
                r = sd_bus_message_read(reply, "v", "t", &s->bytes_allocated);
        else if (streq(name, "Clients"))
                r = sd_bus_message_read(reply, "v", "u", &s->n_clients);
        else if (streq(name, "Xnack")) {
                int b = 0;

                r = sd_bus_message_read(reply, "v", "b", &b);
                s->xnack = b;
        } else if (streq(name, "LostRanges")) {
                uint64_t id;
                const char *reason;

                r = sd_bus_message_enter_container(reply, 'v', "a(ts)");
                if (r >= 0)
                        r = sd_bus_message_enter_container(reply, 'a', "(ts)");
                while (r >= 0 && (r = sd_bus_message_read(reply, "(ts)", &id, &reason)) > 0) {
                        if (s->n_lost < SVMD_MAX_LOST_REPORTED) {
                                s->lost[s->n_lost].id = id;
                                copy_string(s->lost[s->n_lost].reason, sizeof(s->lost[s->n_lost].reason), reason);
                        }
                        s->n_lost++;
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        } else
                return 0;
        return r < 0 ? r : 1;
}

SYMVER(svmd_get_status_v0_2, "svmd_get_status@@LIBSVMD_0.2")
_public_ int svmd_get_status_v0_2(svmd_client *c, svmd_status *ret, svmd_error *error) {
        svmd_status s = { .n_clients = UINT32_MAX };
        int r;

        if (!c || !ret)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = get_manager_properties(c, read_status_property, &s, error);
        if (r < 0)
                return r;
        *ret = s;
        return 0;
}
ASSERT_SAME_TYPE(svmd_get_status, svmd_get_status_v0_2);

static int read_durability_property(sd_bus_message *reply, const char *name, void *userdata) {
        svmd_durability *d = userdata;
        uint64_t *v;
        int r;

        if (streq(name, "RuntimeDirectoryFree"))
                v = &d->runtime_free;
        else if (streq(name, "RuntimeDirectorySize"))
                v = &d->runtime_size;
        else if (streq(name, "StoredFds"))
                v = &d->stored_fds;
        else if (streq(name, "FdStoreMax"))
                v = &d->fd_store_max;
        else
                return 0;
        r = sd_bus_message_read(reply, "v", "t", v);
        return r < 0 ? r : 1;
}

_public_ int svmd_get_durability(svmd_client *c, svmd_durability *ret, svmd_error *error) {
        svmd_durability d = {};
        int r;

        if (!c || !ret)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = get_manager_properties(c, read_durability_property, &d, error);
        if (r < 0)
                return r;
        *ret = d;
        return 0;
}

static int read_range(sd_bus_message *reply, svmd_range *rg) {
        const char *domain, *label, *state;
        const void *mapped;
        size_t sz;
        int r;

        r = sd_bus_message_enter_container(reply, 'r', "ttttsuausus");
        if (r <= 0)
                return r;
        *rg = (svmd_range) {};
        r = sd_bus_message_read(reply, "ttttsu", &rg->id, &rg->va, &rg->size, &rg->flags, &domain, &rg->home_gpu);
        if (r < 0)
                return r;
        r = sd_bus_message_read_array(reply, 'u', &mapped, &sz);
        if (r < 0)
                return r;
        rg->n_mapped = (uint32_t) MIN(sz / sizeof(uint32_t), (size_t) SVMD_MAX_GPUS);
        memcpy(rg->mapped, mapped, rg->n_mapped * sizeof(uint32_t));
        r = sd_bus_message_read(reply, "sus", &label, &rg->owner_uid, &state);
        if (r < 0)
                return r;
        copy_string(rg->domain, sizeof(rg->domain), domain);
        copy_string(rg->label, sizeof(rg->label), label);
        copy_string(rg->state, sizeof(rg->state), state);
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return r;
        return 1;
}

SYMVER(svmd_list_ranges_v0_2, "svmd_list_ranges@@LIBSVMD_0.2")
_public_ int svmd_list_ranges_v0_2(svmd_client *c, const svmd_range_filter *f, svmd_range **ret, size_t *ret_n,
                                   svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_free_ svmd_range *ranges = NULL;
        size_t n = 0, allocated = 0;
        int r;

        if (!c || !ret || !ret_n)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = client_new_call(c, false, "ListRanges", &m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && f && f->has_owner)
                r = sd_bus_message_append(m, "{sv}", SVMD_FILTER_OWNER, "u", f->owner);
        if (r >= 0 && f && f->has_gpu)
                r = sd_bus_message_append(m, "{sv}", SVMD_FILTER_GPU, "u", f->gpu);
        if (r >= 0 && f && f->label)
                r = sd_bus_message_append(m, "{sv}", SVMD_FILTER_LABEL, "s", f->label);
        if (r >= 0 && f && f->offset > 0)
                r = sd_bus_message_append(m, "{sv}", SVMD_FILTER_OFFSET, "t", f->offset);
        if (r >= 0 && f && f->has_after)
                r = sd_bus_message_append(m, "{sv}", SVMD_FILTER_AFTER, "t", f->after);
        if (r >= 0 && f && f->all)
                r = sd_bus_message_append(m, "{sv}", SVMD_FILTER_ALL, "b", 1);
        if (r >= 0 && f && f->limit > 0)
                r = sd_bus_message_append(m, "{sv}", SVMD_FILTER_LIMIT, "t", f->limit);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return build_failed(error, "ListRanges", r);
        r = client_call(c, m, &reply, error);
        if (r < 0)
                return r;

        r = sd_bus_message_enter_container(reply, 'a', "(ttttsuausus)");
        if (r < 0)
                return bad_reply(error, "ListRanges", r);
        for (;;) {
                svmd_range rg;

                r = read_range(reply, &rg);
                if (r < 0)
                        return bad_reply(error, "ListRanges", r);
                if (r == 0)
                        break;
                if (n >= allocated) {
                        size_t k = allocated ? allocated * 2 : 16;
                        svmd_range *p = reallocarray(ranges, k, sizeof(svmd_range));
                        if (!p)
                                return error_setf(error, -ENOMEM, NULL, "Out of memory.");
                        ranges = p;
                        allocated = k;
                }
                ranges[n++] = rg;
        }
        *ret = TAKE_PTR(ranges);
        *ret_n = n;
        return 0;
}
ASSERT_SAME_TYPE(svmd_list_ranges, svmd_list_ranges_v0_2);

_public_ const char *svmd_range_flag_to_string(uint64_t flag) {
        static const char *const names[] = {
                "writable", "executable", "public", "coherent", "uncached", "ext-coherent", "contiguous",
                "no-substitute",
        };

        if (flag == 0 || (flag & (flag - 1)) != 0)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (flag == UINT64_C(1) << i)
                        return names[i];
        return NULL;
}

static int read_usage_entry(sd_bus_message *reply, const char *key, svmd_usage *u) {
        const char *s;
        int r;

        if (streq(key, SVMD_USAGE_SCOPE)) {
                r = sd_bus_message_read(reply, "v", "s", &s);
                if (r >= 0)
                        copy_string(u->scope, sizeof(u->scope), s);
                return r;
        }
        if (streq(key, SVMD_USAGE_RANGES))
                return sd_bus_message_read(reply, "v", "t", &u->ranges);
        if (streq(key, SVMD_USAGE_VRAM))
                return sd_bus_message_read(reply, "v", "t", &u->vram);
        if (streq(key, SVMD_USAGE_HOST))
                return sd_bus_message_read(reply, "v", "t", &u->host);
        if (streq(key, "quota-ranges"))
                return sd_bus_message_read(reply, "v", "t", &u->quota_ranges);
        if (streq(key, "quota-vram"))
                return sd_bus_message_read(reply, "v", "t", &u->quota_vram);
        if (streq(key, "quota-vram-per-gpu"))
                return sd_bus_message_read(reply, "v", "t", &u->quota_vram_per_gpu);
        if (streq(key, "quota-host"))
                return sd_bus_message_read(reply, "v", "t", &u->quota_host);
        if (streq(key, SVMD_USAGE_VRAM_PER_GPU)) {
                uint32_t gpu;
                uint64_t bytes;

                r = sd_bus_message_enter_container(reply, 'v', "a(ut)");
                if (r < 0)
                        return r;
                r = sd_bus_message_enter_container(reply, 'a', "(ut)");
                if (r < 0)
                        return r;
                while ((r = sd_bus_message_read(reply, "(ut)", &gpu, &bytes)) > 0)
                        if (u->n_vram_per_gpu < SVMD_MAX_GPUS)
                                u->vram_per_gpu[u->n_vram_per_gpu++] = (svmd_gpu_bytes) { gpu, bytes };
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
                return sd_bus_message_exit_container(reply);
        }
        return sd_bus_message_skip(reply, "v");
}

_public_ int svmd_get_usage(svmd_client *c, const char *scope, svmd_usage *ret, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        svmd_usage u = {
                .quota_ranges = SVMD_NO_LIMIT,
                .quota_vram = SVMD_NO_LIMIT,
                .quota_vram_per_gpu = SVMD_NO_LIMIT,
                .quota_host = SVMD_NO_LIMIT,
        };
        const char *key;
        int r;

        if (!c || !ret)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = client_new_call(c, false, "GetUsage", &m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", strempty(scope));
        if (r < 0)
                return build_failed(error, "GetUsage", r);
        r = client_call(c, m, &reply, error);
        if (r < 0)
                return r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return bad_reply(error, "GetUsage", r);
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                r = sd_bus_message_read_basic(reply, 's', &key);
                if (r >= 0)
                        r = read_usage_entry(reply, key, &u);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        break;
        }
        if (r < 0)
                return bad_reply(error, "GetUsage", r);
        *ret = u;
        return 0;
}

_public_ int svmd_get_metrics(svmd_client *c, const char *format, char **ret, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *text;
        char *copy;
        int r;

        if (!c || !ret)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = client_new_call(c, false, "GetMetrics", &m, error);
        if (r < 0)
                return r;
        if (format && *format)
                r = sd_bus_message_append(m, "a{sv}", 1, SVMD_OPT_FORMAT, "s", format);
        else
                r = sd_bus_message_append(m, "a{sv}", 0);
        if (r < 0)
                return build_failed(error, "GetMetrics", r);
        r = client_call(c, m, &reply, error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "s", &text);
        if (r < 0)
                return bad_reply(error, "GetMetrics", r);
        copy = strdup(text);
        if (!copy)
                return error_setf(error, -ENOMEM, NULL, "Out of memory.");
        *ret = copy;
        return 0;
}

_public_ int svmd_reload(svmd_client *c, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (!c)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = client_new_call(c, false, "Reload", &m, error);
        if (r < 0)
                return r;
        return client_call(c, m, NULL, error);
}

SYMVER(svmd_allocate_v0_2, "svmd_allocate@@LIBSVMD_0.2")
_public_ int svmd_allocate_v0_2(svmd_client *c, uint64_t size, uint32_t gpu_id, const char *domain,
                                const svmd_allocate_options *o, svmd_allocation *ret, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        int r;

        if (!c || !domain)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = request_build_allocate(c, size, gpu_id, domain, o, &m, error);
        if (r < 0)
                return r;
        r = client_call(c, m, &reply, error);
        if (r < 0)
                return r;
        r = reply_read_allocation(reply, ret);
        if (r < 0)
                return bad_reply(error, "Allocate", r);
        return 0;
}
ASSERT_SAME_TYPE(svmd_allocate, svmd_allocate_v0_2);

_public_ int svmd_allocate_batch(svmd_client *c, const svmd_host_range *ranges, size_t n_ranges, uint32_t gpu_id,
                                 const svmd_allocate_options *o, svmd_allocation *ret, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        int r;

        if (!c || (n_ranges > 0 && !ranges))
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        if (n_ranges > SVMD_MAX_BATCH_PIECES)
                return error_setf(error, -E2BIG, SD_BUS_ERROR_INVALID_ARGS,
                                  "%zu host ranges given; a batch takes at most %u.", n_ranges,
                                  SVMD_MAX_BATCH_PIECES);
        if (o) {
                r = request_check_gpus(o->map, o->n_map, false, error);
                if (r < 0)
                        return r;
        }
        r = client_new_call(c, true, "AllocateBatch", &m, error);
        if (r < 0)
                return r;
        r = request_append_host_ranges(m, ranges, n_ranges);
        if (r >= 0)
                r = sd_bus_message_append(m, "u", gpu_id);
        if (r >= 0)
                r = request_append_allocate_options(m, o, NULL); /* batch ranges are host memory, never svm */
        if (r < 0)
                return build_failed(error, "AllocateBatch", r);
        r = client_call(c, m, &reply, error);
        if (r < 0)
                return r;
        r = reply_read_allocation(reply, ret);
        if (r < 0)
                return bad_reply(error, "AllocateBatch", r);
        return 0;
}

static int call_id(svmd_client *c, const char *member, uint64_t id, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (!c)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = request_build_id(c, member, id, &m, error);
        if (r < 0)
                return r;
        return client_call(c, m, NULL, error);
}

_public_ int svmd_free(svmd_client *c, uint64_t id, svmd_error *error) {
        return call_id(c, "Free", id, error);
}

_public_ int svmd_reuse(svmd_client *c, uint64_t id, svmd_error *error) {
        return call_id(c, "Reuse", id, error);
}

_public_ int svmd_release(svmd_client *c, uint64_t id, svmd_error *error) {
        return call_id(c, "Release", id, error);
}

_public_ int svmd_revoke_token(svmd_client *c, const char *token, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (!c || !token)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = client_new_call(c, true, "RevokeToken", &m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", token);
        if (r < 0)
                return build_failed(error, "RevokeToken", r);
        return client_call(c, m, NULL, error);
}

_public_ int svmd_revoke_hold(svmd_client *c, uint64_t id, uint32_t uid, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (!c)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = client_new_call(c, true, "RevokeHold", &m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "tu", id, uid);
        if (r < 0)
                return build_failed(error, "RevokeHold", r);
        return client_call(c, m, NULL, error);
}

_public_ int svmd_revoke(svmd_client *c, uint64_t id, uint32_t uid, uint64_t timeout_usec, unsigned *ret_holders,
                        uint64_t *ret_deadline_usec, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        uint64_t deadline;
        uint32_t holders;
        int r;

        if (!c)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = client_new_call(c, true, "Revoke", &m, error);
        if (r < 0)
                return r;
        if (uid == SVMD_REVOKE_ALL_HOLDERS)
                r = sd_bus_message_append(m, "tta{sv}", id, timeout_usec, 0);
        else
                r = sd_bus_message_append(m, "tta{sv}", id, timeout_usec, 1, SVMD_REVOKE_UID, "u", uid);
        if (r < 0)
                return build_failed(error, "Revoke", r);
        r = client_call(c, m, &reply, error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "ut", &holders, &deadline);
        if (r < 0)
                return error_setf(error, r, NULL, "svmd's answer to Revoke does not read: %s.", strerror(-r));
        if (ret_holders)
                *ret_holders = holders;
        if (ret_deadline_usec)
                *ret_deadline_usec = deadline;
        return 0;
}

/* One grant of ListTokens' a{sv} into t; unknown keys are skipped (newer daemons may add some). */
static int read_token_grant(sd_bus_message *reply, svmd_token_info *t) {
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *key, *s;
                int b;

                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        return r;
                if (streq(key, SVMD_GRANT_UID)) {
                        r = sd_bus_message_read(reply, "v", "u", &t->uid);
                        t->has_uid = true;
                } else if (streq(key, SVMD_GRANT_UNIT) || streq(key, SVMD_GRANT_CGROUP)) {
                        bool unit = streq(key, SVMD_GRANT_UNIT);

                        r = sd_bus_message_read(reply, "v", "s", &s);
                        if (r >= 0)
                                snprintf(unit ? t->unit : t->cgroup, unit ? sizeof(t->unit) : sizeof(t->cgroup),
                                         "%s", s);
                } else if (streq(key, SVMD_GRANT_READ_ONLY)) {
                        r = sd_bus_message_read(reply, "v", "b", &b);
                        t->read_only = b;
                } else if (streq(key, SVMD_GRANT_EXPIRES_USEC))
                        r = sd_bus_message_read(reply, "v", "t", &t->expires_usec);
                else
                        r = sd_bus_message_skip(reply, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(reply);
}

_public_ int svmd_list_tokens(svmd_client *c, uint64_t id, svmd_token_info **ret, size_t *ret_n,
                              svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_free_ svmd_token_info *list = NULL;
        size_t n = 0;
        int r;

        if (!c || !ret || !ret_n)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = client_new_call(c, false, "ListTokens", &m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "t", id);
        if (r < 0)
                return build_failed(error, "ListTokens", r);
        r = client_call(c, m, &reply, error);
        if (r < 0)
                return r;

        r = sd_bus_message_enter_container(reply, 'a', "(sa{sv})");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', "sa{sv}")) > 0) {
                svmd_token_info *nl;
                const char *token;

                nl = reallocarray(list, n + 1, sizeof(svmd_token_info));
                if (!nl)
                        return error_setf(error, -ENOMEM, NULL, "Out of memory.");
                list = nl;
                list[n] = (svmd_token_info) {};
                r = sd_bus_message_read(reply, "s", &token);
                if (r >= 0) {
                        snprintf(list[n].token, sizeof(list[n].token), "%s", token);
                        r = read_token_grant(reply, &list[n]);
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                n++;
        }
        if (r < 0)
                return bad_reply(error, "ListTokens", r);
        *ret = TAKE_PTR(list);
        *ret_n = n;
        return 0;
}

_public_ int svmd_map(svmd_client *c, uint64_t id, const uint32_t *gpu_ids, size_t n, const svmd_change_options *o,
                      svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (!c)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = request_build_map(c, id, gpu_ids, n, o, &m, error);
        if (r < 0)
                return r;
        return client_call(c, m, NULL, error);
}

_public_ int svmd_unmap(svmd_client *c, uint64_t id, const uint32_t *gpu_ids, size_t n, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (!c)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = request_build_unmap(c, id, gpu_ids, n, &m, error);
        if (r < 0)
                return r;
        return client_call(c, m, NULL, error);
}

SYMVER(svmd_commit_v0_2, "svmd_commit@@LIBSVMD_0.2")
_public_ int svmd_commit_v0_2(svmd_client *c, const svmd_op *ops, size_t n_ops, const svmd_change_options *o,
                              svmd_op_result *results, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_free_ svmd_op_result *res = NULL;
        size_t n = 0;
        int r;

        if (!c)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = request_build_commit(c, ops, n_ops, o, &m, error);
        if (r < 0)
                return r;
        r = client_call(c, m, &reply, error);
        if (r < 0)
                return r;
        r = reply_read_commit_results(reply, &res, &n);
        if (r < 0)
                return bad_reply(error, "Commit", r);
        if (results)
                for (size_t i = 0; i < n_ops; i++)
                        results[i] = i < n ? res[i] : (svmd_op_result) {};
        return 0;
}
ASSERT_SAME_TYPE(svmd_commit, svmd_commit_v0_2);

_public_ int svmd_set_attributes(svmd_client *c, uint64_t id, const svmd_svm_attributes *attrs,
                                 const svmd_change_options *o, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        if (!c || !attrs)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = request_build_set_attributes(c, id, attrs, o, &m, error);
        if (r < 0)
                return r;
        return client_call(c, m, NULL, error);
}

/* ---- SVM attributes of a range ---- */

static const char *const svm_flag_names[] = {
        "host-access", "coherent", "hive-local", "gpu-ro", "gpu-exec", "gpu-read-mostly", "gpu-always-mapped",
        "ext-coherent",
};

_public_ const char *svmd_svm_flag_to_string(uint32_t flag) {
        if (flag == 0 || (flag & (flag - 1)) != 0)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(svm_flag_names); i++)
                if (flag == UINT32_C(1) << i)
                        return svm_flag_names[i];
        return NULL;
}

static int read_gpu_array(sd_bus_message *reply, uint32_t *ids, uint32_t *ret_n) {
        const void *p;
        size_t sz;
        int r;

        r = sd_bus_message_enter_container(reply, 'v', "au");
        if (r < 0)
                return r;
        r = sd_bus_message_read_array(reply, 'u', &p, &sz);
        if (r < 0)
                return r;
        *ret_n = (uint32_t) MIN(sz / sizeof(uint32_t), (size_t) SVMD_MAX_GPUS);
        if (*ret_n > 0)
                memcpy(ids, p, *ret_n * sizeof(uint32_t));
        return sd_bus_message_exit_container(reply);
}

/* A variant holding "as" (a flags property): each(name, userdata) for every name. */
static int read_variant_names(sd_bus_message *reply, void (*each)(const char *name, void *userdata),
                              void *userdata) {
        const char *name;
        int r;

        r = sd_bus_message_enter_container(reply, 'v', "as");
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "s");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read_basic(reply, 's', &name)) > 0)
                each(name, userdata);
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(reply);
}

static void add_svm_flag(const char *name, void *userdata) {
        svmd_svm_state *st = userdata;
        size_t len = strlen(st->flag_names);

        for (size_t i = 0; i < ELEMENTSOF(svm_flag_names); i++)
                if (streq(name, svm_flag_names[i]))
                        st->flags |= UINT32_C(1) << i;
        /* Names this library does not know yet are kept too, as far as they fit. */
        if (len + !!len + strlen(name) < sizeof(st->flag_names)) {
                if (len > 0)
                        st->flag_names[len++] = ',';
                strcpy(st->flag_names + len, name);
        }
}

static int read_svm_flags(sd_bus_message *reply, svmd_svm_state *st) {
        st->flag_names[0] = 0;
        return read_variant_names(reply, add_svm_flag, st);
}

/* SvmAttributes: a{sv}, empty for ranges of other domains. *ret_n: how many keys it had. */
static int read_svm_attributes(sd_bus_message *reply, svmd_svm_state *st, size_t *ret_n) {
        const char *key;
        size_t n = 0;
        int r;

        r = sd_bus_message_enter_container(reply, 'v', "a{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                r = sd_bus_message_read_basic(reply, 's', &key);
                if (r < 0)
                        return r;
                if (streq(key, SVMD_OPT_SVM_PREFERRED))
                        r = sd_bus_message_read(reply, "v", "u", &st->preferred);
                else if (streq(key, SVMD_OPT_SVM_PREFETCH))
                        r = sd_bus_message_read(reply, "v", "u", &st->prefetch);
                else if (streq(key, SVMD_OPT_SVM_GRANULARITY))
                        r = sd_bus_message_read(reply, "v", "u", &st->granularity);
                else if (streq(key, SVMD_OPT_SVM_FLAGS))
                        r = read_svm_flags(reply, st);
                else if (streq(key, SVMD_OPT_SVM_ACCESS))
                        r = read_gpu_array(reply, st->access, &st->n_access);
                else if (streq(key, SVMD_OPT_SVM_ACCESS_IN_PLACE))
                        r = read_gpu_array(reply, st->access_in_place, &st->n_access_in_place);
                else
                        r = sd_bus_message_skip(reply, "v"); /* keys added later */
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
                n++;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return r;
        *ret_n = n;
        return sd_bus_message_exit_container(reply);
}

/* The errors sd-bus answers for an object path nothing (visible to the caller) lives at. */
static bool is_no_object_error(const svmd_error *e) {
        return svmd_error_has_name(e, "org.freedesktop.DBus.Error.UnknownObject") ||
               svmd_error_has_name(e, "org.freedesktop.DBus.Error.UnknownMethod") ||
               svmd_error_has_name(e, "org.freedesktop.DBus.Error.UnknownInterface") ||
               svmd_error_has_name(e, "org.freedesktop.DBus.Error.UnknownProperty");
}

typedef struct RangeProperties {
        char domain[8];         /* "" until read: the reply's strings go with it; as svmd_range.domain */
        bool has_svm;
        svmd_svm_state svm;
        svmd_range_info *info;  /* NULL: only Domain and SvmAttributes */
        svmd_holder *holders;
        size_t n_holders;
        bool want_revoking;     /* read Revoking too (svmd_get_revoking()) */
        svmd_revoking *revoking;
        size_t n_revoking;
} RangeProperties;

static void add_range_flag(const char *name, void *userdata) {
        uint64_t *flags = userdata;

        for (unsigned i = 0; i < 64; i++)
                if (streq_ptr(svmd_range_flag_to_string(UINT64_C(1) << i), name))
                        *flags |= UINT64_C(1) << i;
}

/* Into a property's variant and the array in it (type "a..."); out again with exit_variant_array(). */
static int enter_variant_array(sd_bus_message *reply, const char *type) {
        int r = sd_bus_message_enter_container(reply, 'v', type);

        if (r < 0)
                return r;
        return sd_bus_message_enter_container(reply, 'a', type + 1);
}

static int exit_variant_array(sd_bus_message *reply) {
        int r = sd_bus_message_exit_container(reply);

        if (r < 0)
                return r;
        return sd_bus_message_exit_container(reply);
}

static int read_holders(sd_bus_message *reply, RangeProperties *p) {
        const char *unit;
        uint32_t uid;
        int r;

        r = enter_variant_array(reply, "a(us)");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(reply, "(us)", &uid, &unit)) > 0) {
                svmd_holder *h = reallocarray(p->holders, p->n_holders + 1, sizeof(svmd_holder));

                if (!h)
                        return -ENOMEM;
                p->holders = h;
                h[p->n_holders] = (svmd_holder) { .uid = uid };
                copy_string(h[p->n_holders].unit, sizeof(h->unit), unit);
                p->n_holders++;
        }
        return r < 0 ? r : exit_variant_array(reply);
}

static int read_revoking(sd_bus_message *reply, RangeProperties *p) {
        uint64_t deadline;
        uint32_t uid;
        int r;

        r = enter_variant_array(reply, "a(ut)");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(reply, "(ut)", &uid, &deadline)) > 0) {
                svmd_revoking *v = reallocarray(p->revoking, p->n_revoking + 1, sizeof(svmd_revoking));

                if (!v)
                        return -ENOMEM;
                p->revoking = v;
                v[p->n_revoking++] = (svmd_revoking) { .uid = uid, .deadline_usec = deadline };
        }
        return r < 0 ? r : exit_variant_array(reply);
}

/* The properties svmd_get_range() reads beyond Domain and SvmAttributes; 0 for others. */
static int read_range_info_property(sd_bus_message *reply, const char *name, RangeProperties *p) {
        svmd_range_info *i = p->info;
        svmd_range *rg = &i->range;
        const char *s;
        int b, r;

        if (streq(name, "Id"))
                r = sd_bus_message_read(reply, "v", "t", &rg->id);
        else if (streq(name, "Va"))
                r = sd_bus_message_read(reply, "v", "t", &rg->va);
        else if (streq(name, "Size"))
                r = sd_bus_message_read(reply, "v", "t", &rg->size);
        else if (streq(name, "HomeGpu"))
                r = sd_bus_message_read(reply, "v", "u", &rg->home_gpu);
        else if (streq(name, "MappedGpus"))
                r = read_gpu_array(reply, rg->mapped, &rg->n_mapped);
        else if (streq(name, "Flags"))
                r = read_variant_names(reply, add_range_flag, &rg->flags);
        else if (streq(name, "Owner")) {
                r = sd_bus_message_read(reply, "v", "(us)", &rg->owner_uid, &s);
                if (r >= 0)
                        copy_string(i->owner_unit, sizeof(i->owner_unit), s);
        } else if (streq(name, "Holders"))
                r = read_holders(reply, p);
        else if (streq(name, "Label")) {
                r = sd_bus_message_read(reply, "v", "s", &s);
                if (r >= 0)
                        copy_string(rg->label, sizeof(rg->label), s);
        } else if (streq(name, "State")) {
                r = sd_bus_message_read(reply, "v", "s", &s);
                if (r >= 0)
                        copy_string(rg->state, sizeof(rg->state), s);
        } else if (streq(name, "Persistent")) {
                r = sd_bus_message_read(reply, "v", "b", &b);
                i->persistent = b;
        } else if (streq(name, "Detached")) {
                r = sd_bus_message_read(reply, "v", "b", &b);
                i->detached = b;
        } else
                return 0;
        return r < 0 ? r : 1;
}

static int read_range_property(sd_bus_message *reply, const char *name, void *userdata) {
        RangeProperties *p = userdata;
        const char *d;
        size_t n = 0;
        int r;

        if (streq(name, "Domain")) {
                r = sd_bus_message_read(reply, "v", "s", &d);
                if (r >= 0)
                        copy_string(p->domain, sizeof(p->domain), d);
        } else if (streq(name, "SvmAttributes")) {
                r = read_svm_attributes(reply, &p->svm, &n);
                p->has_svm = n > 0;
        } else if (streq(name, "Revoking") && p->want_revoking)
                r = read_revoking(reply, p);
        else if (p->info)
                return read_range_info_property(reply, name, p);
        else
                return 0;
        return r < 0 ? r : 1;
}

/* GetAll of range id into p, with the checks every reader of a range needs. */
static int range_get_properties(svmd_client *c, uint64_t id, RangeProperties *p, svmd_error *error) {
        svmd_error e = SVMD_ERROR_NULL;
        char path[64];
        sd_bus *bus;
        int r;

        /*
         * On the connection Attach and Export use: svmd shows a range's object to its owner, and to the
         * connection that holds a reference to it.
         */
        bus = client_pick(c, true);
        if (!bus)
                return error_setf(error, -ENOTCONN, NULL, "svmd cannot be reached; is svmd running?");
        snprintf(path, sizeof(path), "%s/%" PRIu64, SVMD_RANGE_PATH_PREFIX, id);
        r = get_all_properties(c, bus, path, SVMD_RANGE_INTERFACE, read_range_property, p, &e);
        if (r < 0 && is_no_object_error(&e)) {
                svmd_error_free(&e);
                return error_setf(error, -ENOENT, SVMD_ERROR_NO_SUCH_RANGE,
                                  "Range %" PRIu64 " does not exist, or it is not the caller's.", id);
        }
        if (r < 0) {
                if (error) {
                        svmd_error_free(error);
                        *error = e;
                } else
                        svmd_error_free(&e);
                return r;
        }
        if (!p->domain[0])
                return error_setf(error, -EBADMSG, NULL, "svmd did not say which domain range %" PRIu64 " is of.",
                                  id);
        if (streq(p->domain, SVMD_DOMAIN_SVM) && !p->has_svm)
                return error_setf(error, -EBADMSG, NULL,
                                  "svmd did not report the SVM attributes of svm range %" PRIu64 ".", id);
        return 0;
}

int range_get_svm(svmd_client *c, uint64_t id, char *domain, size_t domain_size, bool *ret_is_svm,
                  svmd_svm_state *ret, svmd_error *error) {
        RangeProperties p = {
                .svm = { .preferred = SVMD_SVM_LOCATION_NONE, .prefetch = SVMD_SVM_LOCATION_NONE },
        };
        int r;

        r = range_get_properties(c, id, &p, error);
        if (r < 0)
                return r;
        if (domain)
                copy_string(domain, domain_size, p.domain);
        *ret_is_svm = streq(p.domain, SVMD_DOMAIN_SVM);
        if (ret && *ret_is_svm)
                *ret = p.svm;
        return 0;
}

_public_ int svmd_get_range(svmd_client *c, uint64_t id, svmd_range_info *ret, svmd_holder **ret_holders,
                            size_t *ret_n_holders, svmd_error *error) {
        svmd_range_info info = { .range = { .owner_uid = UINT32_MAX } };
        RangeProperties p = {
                .svm = { .preferred = SVMD_SVM_LOCATION_NONE, .prefetch = SVMD_SVM_LOCATION_NONE },
                .info = &info,
        };
        int r;

        if (!c || !ret || (ret_holders && !ret_n_holders))
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = range_get_properties(c, id, &p, error);
        if (r < 0) {
                free(p.holders);
                return r;
        }
        copy_string(info.range.domain, sizeof(info.range.domain), p.domain);
        info.n_holders = (uint32_t) p.n_holders;
        if (p.has_svm)
                info.svm = p.svm;
        *ret = info;
        if (ret_holders) {
                *ret_holders = TAKE_PTR(p.holders);
                *ret_n_holders = info.n_holders;
        }
        free(p.holders);
        return 0;
}

_public_ int svmd_get_revoking(svmd_client *c, uint64_t id, svmd_revoking **ret, size_t *ret_n, svmd_error *error) {
        RangeProperties p = {
                .svm = { .preferred = SVMD_SVM_LOCATION_NONE, .prefetch = SVMD_SVM_LOCATION_NONE },
                .want_revoking = true,
        };
        int r;

        if (!c || !ret || !ret_n)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = range_get_properties(c, id, &p, error);
        if (r < 0) {
                free(p.revoking);
                return r;
        }
        *ret = TAKE_PTR(p.revoking);
        *ret_n = p.n_revoking;
        return 0;
}

_public_ int svmd_get_svm_attributes(svmd_client *c, uint64_t id, svmd_svm_state *ret, svmd_error *error) {
        char domain[16];
        bool is_svm;
        int r;

        if (!c || !ret)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = range_get_svm(c, id, domain, sizeof(domain), &is_svm, ret, error);
        if (r < 0)
                return r;
        if (!is_svm)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                  "Range %" PRIu64 " is a %s range; only svm ranges have SVM attributes.", id,
                                  domain);
        return 0;
}

_public_ int svmd_export(svmd_client *c, uint64_t id, int *ret_fd, uint64_t *ret_va, uint64_t *ret_size,
                         svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        uint64_t va, size;
        int r, fd;

        if (!c || !ret_fd)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = client_new_call(c, true, "Export", &m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "t", id);
        if (r < 0)
                return build_failed(error, "Export", r);
        r = client_call(c, m, &reply, error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "htt", &fd, &va, &size);
        if (r < 0)
                return bad_reply(error, "Export", r);
        /* The message owns its fd; ours must outlive it. */
        fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return error_setf(error, negative_errno(), NULL, "Duplicating the exported fd failed: %m.");
        *ret_fd = fd;
        if (ret_va)
                *ret_va = va;
        if (ret_size)
                *ret_size = size;
        return 0;
}

/* The longest cgroup prefix svmd takes in a grant (as in svmd.conf(5)'s "match"). */
#define GRANT_CGROUP_MAX 1024U

_public_ int svmd_share(svmd_client *c, uint64_t id, const svmd_grant *g, char **ret_token, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *token;
        int r;

        if (!c || !ret_token)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        /* As svmd.conf(5) has quota rules match cgroups: an absolute path prefix. */
        if (g && g->cgroup && (g->cgroup[0] != '/' || strlen(g->cgroup) > GRANT_CGROUP_MAX))
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS,
                                  "The cgroup of a grant must be an absolute cgroup path prefix of at most %u "
                                  "characters, like \"/machine.slice/\".", GRANT_CGROUP_MAX);
        r = client_new_call(c, true, "Share", &m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "t", id);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && g && g->has_uid)
                r = sd_bus_message_append(m, "{sv}", SVMD_GRANT_UID, "u", g->uid);
        if (r >= 0 && g && g->unit)
                r = sd_bus_message_append(m, "{sv}", SVMD_GRANT_UNIT, "s", g->unit);
        if (r >= 0 && g && g->cgroup)
                r = sd_bus_message_append(m, "{sv}", SVMD_GRANT_CGROUP, "s", g->cgroup);
        if (r >= 0 && g && g->read_only)
                r = sd_bus_message_append(m, "{sv}", SVMD_GRANT_READ_ONLY, "b", 1);
        if (r >= 0 && g && g->expires_usec > 0)
                r = sd_bus_message_append(m, "{sv}", SVMD_GRANT_EXPIRES_USEC, "t", g->expires_usec);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return build_failed(error, "Share", r);
        r = client_call(c, m, &reply, error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "s", &token);
        if (r < 0)
                return bad_reply(error, "Share", r);
        *ret_token = strdup(token);
        if (!*ret_token)
                return error_setf(error, -ENOMEM, NULL, "Out of memory.");
        return 0;
}

_public_ int svmd_attach(svmd_client *c, const char *token, svmd_attachment *ret, svmd_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        svmd_attachment a;
        int r;

        if (!c || !token || !ret)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        r = client_new_call(c, true, "Attach", &m, error);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", token);
        if (r < 0)
                return build_failed(error, "Attach", r);
        r = client_call(c, m, &reply, error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "ttth", &a.id, &a.va, &a.size, &a.fd);
        if (r < 0)
                return bad_reply(error, "Attach", r);
        a.fd = fcntl(a.fd, F_DUPFD_CLOEXEC, 3);
        if (a.fd < 0)
                return error_setf(error, negative_errno(), NULL, "Duplicating the attached fd failed: %m.");
        *ret = a;
        return 0;
}
