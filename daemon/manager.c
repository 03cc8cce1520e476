/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "config.h"
#include "client.h"
#include "conf.h"
#include "context.h"
#include "direct.h"
#include "executor.h"
#include "gpu.h"
#include "health.h"
#include "log.h"
#include "persist.h"
#include "polkit.h"
#include "quota.h"
#include "str-table.h"
#include "kfd-ioctl.h"
#include "gpu-dbus.h"
#include "log-control.h"
#include "manager-dbus.h"
#include "manager.h"
#include "metrics.h"
#include "range-dbus.h"
#include "range.h"
#include "request-cache.h"
#include "revoke.h"
#include "size-util.h"
#include "slab.h"
#include "svmd-protocol.h"
#include "transaction.h"

#define STATUS_DELAY_USEC (500 * 1000ULL)
#define REPAIR_FIRST_USEC (100 * 1000ULL)
#define REPAIR_MAX_USEC (30 * 1000 * 1000ULL)
/* One slice of a repair pass (docs/architecture.md, "Tearing down a client"). */
#define REPAIR_SLICE_USEC 1000ULL

static void kfd_log(int priority, const char *message, void *userdata) {
        log_full(priority, "%s", message);
}

int manager_new(Manager **ret, const ManagerOptions *o) {
        _cleanup_(manager_freep) Manager *m = NULL;

        m = calloc(1, sizeof(Manager));
        if (!m)
                return -ENOMEM;
        m->kfd_fd = -EBADF;
        m->next_range_id = 1;
        config_init_defaults(&m->config);

        m->config_path = strdup(o->config_path ?: SVMD_CONFIG_FILE);
        m->runtime_dir = strdup(o->runtime_dir ?: SVMD_RUNTIME_DIR);
        if (!m->config_path || !m->runtime_dir)
                return -ENOMEM;
        m->bus_kind = o->bus_kind;
        if (o->bus_address) {
                m->bus_address = strdup(o->bus_address);
                if (!m->bus_address)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(m);
        return 0;
}

static void free_all_ranges(Manager *m) {
        Range *range;

        while ((range = manager_ranges_from(m, 0))) {
                (void) id_index_remove(m->ranges, range->id);
                range->registered = false;
                range_free_struct(range);
        }
}

static void free_all_clients(Manager *m) {
        StrTableIter it = {};
        void *v;

        if (!m->clients)
                return;
        /* client_free() removes itself from the table: restart the walk each time. */
        while (str_table_iterate(m->clients, &it, NULL, &v)) {
                client_free(v);
                it = (StrTableIter) {};
        }
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        /* Jobs in flight end first: their ioctls are running, and they hold ranges and clients. */
        persist_stop_waiting(m);
        m->executor = executor_free(m->executor);
        kfd_set_ioctl_hook(NULL);
        m->exiting = true; /* nothing is announced while tearing down */

        /* The kernel objects die with the process; here only memory is released, ranges first
         * (they reference identities and clients). */
        revocations_free(m); /* before the holds that point at them */
        free_all_ranges(m);
        direct_server_free(m->direct);
        free_all_clients(m);
        manager_teardown_done(m);
        sd_bus_flush_close_unref(m->bus);
        id_index_free(m->ranges);
        slab_free(m->range_slab);
        str_table_free(m->clients);
        str_table_free(m->tokens);
        str_table_free(m->range_requests);
        str_table_free(m->requests_in_flight);
        str_table_free(m->identities);
        quota_table_free(m->quotas);
        polkit_registry_free(m->polkit);
        persist_done(m);
        request_cache_free(m->requests);
        va_space_free(m->va);
        for (size_t i = 0; i < m->n_gpus; i++)
                gpu_free(m->gpus[i]);
        health_free(m->health);
        free(m->gpus);
        manager_close_contexts(m);
        kfd_device_free(m->kfd);

        sd_event_source_disable_unref(m->repair_timer);
        sd_event_source_disable_unref(m->status_timer);
        sd_event_source_disable_unref(m->publish_event);
        sd_event_source_disable_unref(m->watchdog_timer);
        sd_event_source_disable_unref(m->sigterm);
        sd_event_source_disable_unref(m->sigint);
        sd_event_source_disable_unref(m->sighup);
        sd_event_unref(m->event);

        /* Last: the buses (kept alive by any message still referenced, e.g. in the request
         * cache) point into the vtable the metrics own. */
        metrics_free(m->metrics);
        config_done(&m->config);
        free(m->config_path);
        free(m->runtime_dir);
        free(m->bus_address);
        free(m);
        return NULL;
}

static int load_config(const char *path, Config *ret) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = config_load(path, ret, &error);
        if (r == -ENOENT) {
                log_debug("No configuration file %s, using defaults.", path);
                config_init_defaults(ret);
                return 0;
        }
        if (r < 0)
                return log_error_errno(r, "%s", error ?: "Loading the configuration failed.");
        return 0;
}

int manager_reload(Manager *m, char **ret_error) {
        _cleanup_free_ char *error = NULL;
        Config c;
        int r;

        r = config_load(m->config_path, &c, &error);
        if (r == -ENOENT) {
                config_init_defaults(&c);
                r = 0;
        }
        if (r < 0) {
                log_error("Reloading the configuration failed, keeping the old one: %s", strna(error));
                if (ret_error)
                        *ret_error = TAKE_PTR(error);
                return r;
        }

        /* The window is fixed for the daemon's lifetime: ranges live in it. */
        if (c.va_base != m->config.va_base || c.va_size != m->config.va_size)
                log_warning("The SVM window changed in %s; it takes effect at the next start.", m->config_path);
        c.va_base = m->config.va_base;
        c.va_size = m->config.va_size;
        /* The contexts are opened at start; ranges live in them. */
        if (c.limit_kfd_contexts != m->config.limit_kfd_contexts)
                log_warning("\"kfd-contexts\" changed in %s; it takes effect at the next start.", m->config_path);
        c.limit_kfd_contexts = m->config.limit_kfd_contexts;
        /* Ranges were set up under the current mode (gpu-always-mapped needs it on). */
        if (c.xnack != m->config.xnack)
                log_warning("\"xnack\" changed in %s; it takes effect at the next start.", m->config_path);
        c.xnack = m->config.xnack;
        config_done(&m->config);
        m->config = c;
        request_cache_set_max(m->requests, m->config.limit_request_ids_per_scope);

        /* Limits changed: every caller's scope, and the usage charged to it, follows the new rules. */
        r = manager_rescope(m);
        if (r < 0)
                return log_error_errno(r, "Applying the new quotas failed: %m");
        log_info("Configuration reloaded from %s.", m->config_path);
        return 0;
}

Gpu *manager_find_gpu(Manager *m, uint32_t gpu_id) {
        for (size_t i = 0; i < m->n_gpus; i++)
                if (m->gpus[i]->gpu_id == gpu_id)
                        return m->gpus[i];
        return NULL;
}

Range *manager_find_range(Manager *m, uint64_t id) {
        return id_index_get(m->ranges, id);
}

Range *manager_find_range_by_request(Manager *m, uid_t uid, const char *request_id) {
        char key[32 + SVMD_MAX_REQUEST_ID_LEN];

        snprintf(key, sizeof(key), "%u\x1f%s", (unsigned) uid, request_id);
        return m->range_requests ? str_table_get(m->range_requests, key) : NULL;
}

int manager_add_bus_objects(Manager *m, sd_bus *bus) {
        int r;

        /* With every method counted (metrics.h), once the metrics exist. */
        r = sd_bus_add_object_vtable(bus, NULL, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                     m->metrics ? metrics_vtable(m->metrics) : manager_vtable, m);
        if (r < 0)
                return r;
        r = sd_bus_add_fallback_vtable(bus, NULL, SVMD_GPU_PATH_PREFIX, SVMD_GPU_INTERFACE, gpu_vtable,
                                       gpu_object_find, m);
        if (r < 0)
                return r;
        r = sd_bus_add_node_enumerator(bus, NULL, SVMD_GPU_PATH_PREFIX, gpu_node_enumerator, m);
        if (r < 0)
                return r;
        r = sd_bus_add_fallback_vtable(bus, NULL, SVMD_RANGE_PATH_PREFIX, SVMD_RANGE_INTERFACE, range_vtable,
                                       range_object_find, m);
        if (r < 0)
                return r;
        return sd_bus_add_node_enumerator(bus, NULL, SVMD_RANGE_PATH_PREFIX, range_node_enumerator, m);
}

/*
 * Who hears what (docs/dbus-api.md, "Signals"). Node-wide news (GpuLost, the
 * counters of the manager and the GPUs, which any caller may read as
 * properties) is broadcast on the bus and sent to every subscribed direct
 * peer. News about one tenant (a range's creation, end and property changes, a
 * scope's QuotaExceeded) is sent only to the subscribed clients that may see
 * it: on the bus as a unicast signal (destination set, so that dbus-daemon
 * delivers it to that connection alone), on the direct socket to that peer.
 */
void manager_foreach_bus(Manager *m, void (*fn)(sd_bus *bus, void *userdata), void *userdata) {
        if (m->bus)
                fn(m->bus, userdata);
        for (Client *c = m->subscribers; c; c = c->subscriber_next)
                if (c->direct) {
                        fn(c->direct, userdata);
                        direct_server_sent(m->direct, c->direct);
                }
}

typedef ManagerAppendFunc AppendFunc;

void manager_send_to_client(Manager *m, Client *c, const char *path, const char *interface, const char *member,
                            AppendFunc append, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        sd_bus *bus = c->direct ?: m->bus;
        int r;

        if (!bus)
                return;
        r = sd_bus_message_new_signal(bus, &msg, path, interface, member);
        if (r >= 0 && !c->direct)
                r = sd_bus_message_set_destination(msg, c->name);
        if (r >= 0)
                r = append(msg, userdata);
        if (r >= 0)
                r = sd_bus_send(bus, msg, NULL);
        if (r >= 0 && c->direct)
                direct_server_sent(m->direct, c->direct);
        if (r < 0)
                log_debug_errno(r, "Sending %s to %s failed, ignoring: %m", member, c->name);
}

void manager_send_about_range(Manager *m, Range *range, const char *path, const char *interface,
                              const char *member, AppendFunc append, void *userdata) {
        if (m->exiting)
                return;
        for (Client *c = m->subscribers; c; c = c->subscriber_next)
                if (client_sees_range(c, range))
                        manager_send_to_client(m, c, path, interface, member, append, userdata);
}

typedef struct EmitRange {
        uint64_t id;
        const char *path;
} EmitRange;

static int append_created(sd_bus_message *msg, void *userdata) {
        EmitRange *e = userdata;
        return sd_bus_message_append(msg, "to", e->id, e->path);
}

static int append_freed(sd_bus_message *msg, void *userdata) {
        EmitRange *e = userdata;
        return sd_bus_message_append(msg, "t", e->id);
}

void manager_emit_range_created(Manager *m, Range *range) {
        _cleanup_free_ char *path = NULL;

        if (range_path(range->id, &path) < 0)
                return;
        manager_send_about_range(m, range, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "RangeCreated", append_created,
                         &(EmitRange) { .id = range->id, .path = path });
}

void manager_emit_range_freed(Manager *m, Range *range) {
        manager_send_about_range(m, range, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "RangeFreed", append_freed,
                         &(EmitRange) { .id = range->id });
}

typedef struct EmitQuota {
        const char *scope, *resource;
} EmitQuota;

static int append_quota(sd_bus_message *msg, void *userdata) {
        EmitQuota *e = userdata;
        return sd_bus_message_append(msg, "ss", e->scope, e->resource);
}

/* Scope keys name units and cgroups: only the clients charged to the scope, and administrators, hear. */
void manager_emit_quota_exceeded(Manager *m, const char *scope, const char *resource) {
        EmitQuota e = { .scope = scope, .resource = resource };

        for (Client *c = m->subscribers; c; c = c->subscriber_next)
                if (c->sees_all || c->identity->uid == 0 || streq(c->identity->scope->key, scope))
                        manager_send_to_client(m, c, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "QuotaExceeded",
                                       append_quota, &e);
}

static void emit_gpu_lost(sd_bus *bus, void *userdata) {
        int r = sd_bus_emit_signal(bus, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "GpuLost", "u",
                                   *(uint32_t *) userdata);
        if (r < 0)
                log_debug_errno(r, "Emitting GpuLost failed, ignoring: %m");
}

void manager_emit_gpu_lost(Manager *m, uint32_t gpu_id) {
        log_fields(LOG_ERR, &((LogFields) { .gpu_id = gpu_id }), "GPU 0x%x is lost (its VM is gone).", gpu_id);
        manager_foreach_bus(m, emit_gpu_lost, &gpu_id);
}

typedef struct EmitProps {
        const char *path, *interface;
        const char *const *properties;
        Range *range;
} EmitProps;

static void emit_props(sd_bus *bus, void *userdata) {
        EmitProps *e = userdata;
        int r = sd_bus_emit_properties_changed_strv(bus, e->path, e->interface, (char **) e->properties);
        if (r < 0)
                log_debug_errno(r, "Emitting PropertiesChanged on %s failed, ignoring: %m", e->path);
}

void manager_emit_properties_changed(Manager *m, const char *path, const char *interface,
                                     const char *const *properties) {
        manager_foreach_bus(m, emit_props,
                            &(EmitProps) { .path = path, .interface = interface, .properties = properties });
}

static int append_range_props(sd_bus_message *msg, void *userdata) {
        EmitProps *e = userdata;
        return range_append_properties_changed(msg, e->range, e->properties);
}

void manager_emit_range_properties_changed(Manager *m, Range *range, const char *path, const char *const *properties) {
        manager_send_about_range(m, range, path, "org.freedesktop.DBus.Properties", "PropertiesChanged", append_range_props,
                         &(EmitProps) { .properties = properties, .range = range });
}

static void send_status(Manager *m) {
        uint64_t mapped = 0, freeing = 0;
        char gone[64] = "", low[96] = "", reset[64] = "";
        size_t resetting = 0;

        for (size_t i = 0; i < m->n_gpus; i++) {
                mapped += m->gpus[i]->bytes_mapped;
                resetting += m->gpus[i]->resetting;
        }
        if (resetting > 0)
                snprintf(reset, sizeof(reset), ", %zu GPU%s resetting", resetting, resetting == 1 ? "" : "s");
        if (manager_teardown_pending(m, &freeing) > 0)
                snprintf(gone, sizeof(gone), ", freeing %" PRIu64 " ranges of closed connections", freeing);
        if (m->runtime_low)
                snprintf(low, sizeof(low), ", runtime directory nearly full (%s free)", FORMAT_BYTES(m->runtime_free));
        (void) sd_notifyf(false, "STATUS=%zu GPUs, %zu ranges, %s allocated, %s mapped, %zu clients%s%s%s%s",
                          m->n_gpus, m->ranges ? id_index_size(m->ranges) : 0, FORMAT_BYTES(m->bytes_allocated),
                          FORMAT_BYTES(mapped), m->clients ? str_table_size(m->clients) : 0, gone,
                          m->n_degraded > 0 ? ", repairing degraded ranges" : "", low, reset);
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        send_status(userdata);
        return 0;
}

static int on_publish(sd_event_source *s, uint64_t usec, void *userdata) {
        static const char *const gpu_props[] = { "Mapped", "VramUsed", "VramFree", "GttUsed", NULL };
        static const char *const manager_props[] = { "Ranges", "BytesAllocated", NULL };
        Manager *m = userdata;
        Gpu *g;

        FOREACH_GPU_IN_MASK(g, m, m->dirty_gpus)
                manager_emit_properties_changed(m, g->path, SVMD_GPU_INTERFACE, gpu_props);
        if (m->dirty_manager)
                manager_emit_properties_changed(m, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, manager_props);
        m->dirty_gpus = 0;
        m->dirty_manager = false;
        /* From when they went out, not when they were due: a late loop does not shorten the next wait. */
        if (!m->event || sd_event_now(m->event, CLOCK_MONOTONIC, &m->published_usec) < 0)
                m->published_usec = manager_now_usec();
        return 0;
}

/*
 * The node-wide counters change with nearly every request. Each PropertiesChanged costs svmd a
 * message per property set and dbus-daemon its routing, about a sixth of svmd's CPU per
 * Allocate+Free when sent per request: they go out at the next loop iteration (after the replies),
 * but at most once per PUBLISH_INTERVAL_USEC. A lone change is announced at once.
 */
#define PUBLISH_INTERVAL_USEC (50U * 1000U)

void manager_properties_dirty(Manager *m, uint64_t gpus, bool manager) {
        int enabled = SD_EVENT_OFF, r;
        uint64_t now, when;

        if (gpus == 0 && !manager)
                return;
        m->dirty_gpus |= gpus;
        m->dirty_manager = m->dirty_manager || manager;
        if (!m->event) {
                (void) on_publish(NULL, 0, m);
                return;
        }
        r = sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                now = manager_now_usec();
        when = MAX(now, m->published_usec + PUBLISH_INTERVAL_USEC);
        if (!m->publish_event) {
                r = sd_event_add_time(m->event, &m->publish_event, CLOCK_MONOTONIC, when, 1, on_publish, m);
                if (r < 0) {
                        log_debug_errno(r, "Scheduling PropertiesChanged failed, ignoring: %m");
                        return;
                }
                (void) sd_event_source_set_enabled(m->publish_event, SD_EVENT_ONESHOT);
                return;
        }
        (void) sd_event_source_get_enabled(m->publish_event, &enabled);
        if (enabled != SD_EVENT_OFF)
                return; /* already due */
        (void) sd_event_source_set_time(m->publish_event, when);
        (void) sd_event_source_set_enabled(m->publish_event, SD_EVENT_ONESHOT);
}

/*
 * STATUS= is for people reading `systemctl status`: coalesce it so that the
 * allocation hot path does not pay a notify message per request.
 */
void manager_update_status(Manager *m) {
        int enabled = SD_EVENT_OFF, r;

        if (!m->event) {
                send_status(m);
                return;
        }
        if (!m->status_timer) {
                r = sd_event_add_time_relative(m->event, &m->status_timer, CLOCK_MONOTONIC, STATUS_DELAY_USEC, 0,
                                               on_status_timer, m);
                if (r < 0)
                        send_status(m);
                return;
        }
        (void) sd_event_source_get_enabled(m->status_timer, &enabled);
        if (enabled == SD_EVENT_OFF) {
                (void) sd_event_source_set_time_relative(m->status_timer, STATUS_DELAY_USEC);
                (void) sd_event_source_set_enabled(m->status_timer, SD_EVENT_ONESHOT);
        }
}

/* ---- repair of degraded ranges ---- */

uint64_t manager_now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

Range *manager_ranges_from(Manager *m, uint64_t id) {
        return id_index_from(m->ranges, id);
}

Range *manager_ranges_next(Manager *m, const Range *range) {
        return id_index_next(m->ranges, range);
}

/*
 * One pass over the range table repairs every degraded range. With a million
 * ranges a pass takes long, so it runs in slices of REPAIR_SLICE_USEC and
 * resumes at m->repair_cursor, letting every other source run in between.
 */
static void repair_pass(Manager *m) {
        sd_event_source *s = m->repair_timer;
        uint64_t deadline = manager_now_usec() + REPAIR_SLICE_USEC;
        bool check = false;
        unsigned n = 0;
        Range *next;

        if (m->repair_cursor == 0)
                m->repair_failed = 0;
        for (Range *range = manager_ranges_from(m, m->repair_cursor); range; range = next) {
                uint64_t id = range->id;
                int k;

                next = manager_ranges_next(m, range);
                /* The clock after every repair (ioctls), and every 64 ranges skipped. */
                if ((check || ++n % 64 == 0) && manager_now_usec() >= deadline) {
                        /* The rest in the next slice, after whatever else is waiting. */
                        m->repair_cursor = id;
                        (void) sd_event_source_set_time_relative(s, 0);
                        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                        return;
                }
                check = range->state == RANGE_STATE_DEGRADED;
                if (!check)
                        continue;
                if (job_claim_held(&range->claim)) {
                        /* A request in flight still works on it (executor.h): the next pass. */
                        m->repair_failed++;
                        continue;
                }
                /* Requests that find it wait; in the repair job its ioctls run on the executor, and
                 * the next range is looked up again afterwards (a request may free it meanwhile). */
                (void) job_claim(&range->claim);
                k = range_repair(range);
                next = manager_ranges_from(m, id + 1);
                if (k < 0) {
                        m->repair_failed++;
                        log_fields(LOG_WARNING, &((LogFields) { .range_id = id }),
                                   "Repairing range %" PRIu64 " failed (%s); retrying.", id, strerror(-k));
                } else
                        log_fields(LOG_NOTICE, &((LogFields) { .range_id = id }), "Range %" PRIu64 " repaired.", id);
        }
        m->repair_cursor = 0;

        if (m->repair_failed > 0) {
                uint64_t delay = REPAIR_FIRST_USEC << MIN(m->repair_attempt, 10U);
                m->repair_attempt++;
                (void) sd_event_source_set_time_relative(s, MIN(delay, REPAIR_MAX_USEC));
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        } else {
                m->repair_attempt = 0;
                /* Degraded behind the cursor while the pass ran: another pass. */
                if (m->n_degraded > 0) {
                        (void) sd_event_source_set_time_relative(s, REPAIR_FIRST_USEC);
                        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                }
        }

        manager_update_status(m);
}

static int repair_job_run(void *userdata) {
        bool offload = job_set_offload(true);

        repair_pass(userdata);
        (void) job_set_offload(offload);
        return 0;
}

static void repair_job_done(void *userdata, int result) {
        Manager *m = userdata;

        m->repair_running = false;
        if (m->repair_again) {
                m->repair_again = false;
                manager_schedule_repair(m);
        }
}

/* A slice of the repair pass, as a job: its ioctls run on the executor. */
static int on_repair(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        int r;

        if (m->repair_running) {
                m->repair_again = true; /* when the slice running now ends */
                return 0;
        }
        if (!m->executor) {
                repair_pass(m);
                return 0;
        }
        m->repair_running = true;
        r = executor_spawn(m->executor, repair_job_run, repair_job_done, m);
        if (r != -EINPROGRESS)
                repair_job_done(m, r);
        return 0;
}

void manager_schedule_repair(Manager *m) {
        int r;

        if (!m->event)
                return;
        if (!m->repair_timer) {
                /* 1 ms accuracy: a pass cut into slices continues right away, not 250 ms later. */
                r = sd_event_add_time_relative(m->event, &m->repair_timer, CLOCK_MONOTONIC, REPAIR_FIRST_USEC,
                                               1000, on_repair, m);
                if (r < 0) {
                        log_error_errno(r, "Scheduling the repair of degraded ranges failed: %m");
                        return;
                }
                return;
        }
        int enabled = SD_EVENT_OFF;
        (void) sd_event_source_get_enabled(m->repair_timer, &enabled);
        if (enabled == SD_EVENT_OFF) {
                (void) sd_event_source_set_time_relative(m->repair_timer, REPAIR_FIRST_USEC);
                (void) sd_event_source_set_enabled(m->repair_timer, SD_EVENT_ONESHOT);
        }
}

/* ---- lifecycle ---- */

static void release_for_exit(Manager *m) {
        Range *next;
        size_t n = 0;

        /* Non-persistent ranges die with us; free them cleanly so nothing depends on process teardown. */
        for (Range *range = manager_ranges_from(m, 0); range; range = next) {
                next = manager_ranges_next(m, range);
                if (range->persistent)
                        continue;
                for (uint32_t i = 0; i < range->n_pieces; i++)
                        range->pieces[i].mapped = range_piece_allocated(&range->pieces[i]) ? range->pieces[i].mapped : 0;
                range->want_gone = true;
                range_set_want_mapped(range, 0);
                if (range->state != RANGE_STATE_DEGRADED) {
                        range->state = RANGE_STATE_DEGRADED;
                        m->n_degraded++;
                }
                if (range_repair(range) < 0)
                        log_warning("Freeing range %" PRIu64 " at exit failed; the kernel frees it when svmd exits.",
                                    range->id);
                else
                        n++;
        }
        log_info("Freed %zu ranges at exit.", n);
}

static void exit_now(Manager *m) {
        release_for_exit(m);
        (void) sd_event_exit(m->event, 0);
}

/* The last job in flight ended: a SIGTERM that waited for it finishes now. */
static void on_executor_idle(void *userdata) {
        Manager *m = userdata;

        if (m->exit_when_idle) {
                m->exit_when_idle = false;
                exit_now(m);
        }
}

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        if (m->exiting)
                return 0;
        log_info("Received %s, exiting.", strsignal((int) si->ssi_signo));
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Freeing ranges and exiting.");
        m->exiting = true; /* no new request starts (method_run_job()) */
        if (executor_n_jobs(m->executor) > 0) {
                /* Requests in flight finish (their ioctls are running) and reply; then the rest. */
                log_info("Waiting for %u requests in flight.", executor_n_jobs(m->executor));
                m->exit_when_idle = true;
                return 0;
        }
        exit_now(m);
        return 0;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        struct timespec ts;

        if (!m->started) {
                /* A service manager queues a reload until the start is done; this came from elsewhere. */
                log_notice("Received SIGHUP while recovering persistent ranges; reload svmd again once it is ready.");
                return 0;
        }

        /* MONOTONIC_USEC lets a service manager tell this reload from an earlier one. */
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        (void) sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%llu",
                          (unsigned long long) ts.tv_sec * 1000000ULL + (unsigned long long) ts.tv_nsec / 1000ULL);
        (void) manager_reload(m, NULL);
        (void) sd_notify(false, "READY=1");
        manager_update_status(m);
        return 0;
}

static int on_watchdog(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        (void) sd_notify(false, "WATCHDOG=1");
        (void) sd_event_source_set_time_relative(s, m->watchdog_usec / 2);
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

static int setup_signals(Manager *m) {
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;

        r = sd_event_add_signal(m->event, &m->sigterm, SIGTERM, on_sigterm, m);
        if (r < 0)
                return r;
        r = sd_event_add_signal(m->event, &m->sigint, SIGINT, on_sigterm, m);
        if (r < 0)
                return r;
        return sd_event_add_signal(m->event, &m->sighup, SIGHUP, on_sighup, m);
}

/*
 * The XNACK mode of svmd's KFD process decides whether GPUs can fault SVM
 * pages in. "xnack" in svmd.conf sets it once, here, before any range exists
 * (recovery included); then SET_XNACK_MODE with a negative value asks what the
 * kernel runs with. A mode the node cannot have is logged, not fatal: svmd
 * serves with the kernel's mode, and calls that need XNACK say it is off.
 * Kernels without SVM have none: off.
 */
static void setup_xnack(Manager *m) {
        const char *needed;
        int mode = 0, r;

        m->xnack = false;
        if (kfd_device_require_feature(m->kfd, KFD_FEATURE_SVM, &needed) < 0) {
                if (m->config.xnack != XNACK_KEEP)
                        log_warning("\"xnack\" in %s is ignored: KFD interface %u.%u has no SET_XNACK_MODE (needs %s).",
                                    m->config_path, m->kfd_major, m->kfd_minor, needed);
                log_info("KFD interface %u.%u has no SVM (needs %s): svm ranges are not available.", m->kfd_major,
                         m->kfd_minor, needed);
                return;
        }
        if (m->config.xnack != XNACK_KEEP) {
                bool on = m->config.xnack == XNACK_ON;

                r = kfd_set_xnack_mode(m->kfd_fd, on ? 1 : 0, NULL);
                if (r == -EPERM)
                        log_error("XNACK cannot be turned on: a GPU of this node has no per-process XNACK "
                                  "(kfd_process_xnack_mode); keeping the kernel's mode.");
                else if (r < 0)
                        log_error_errno(r, "Turning XNACK %s failed, keeping the kernel's mode: %m", on ? "on" : "off");
        }
        r = kfd_set_xnack_mode(m->kfd_fd, -1, &mode);
        if (r < 0) {
                log_warning_errno(r, "Querying the XNACK mode failed, taking it as off: %m");
                return;
        }
        m->xnack = mode > 0;
        log_info("XNACK is %s.", m->xnack ? "on" : "off");
}

static int setup_gpus(Manager *m) {
        size_t n = kfd_device_get_n_gpus(m->kfd);
        int r;

        if (n == 0)
                return log_error_errno(ENODEV, "The KFD topology lists no GPU.");
        if (n > 64)
                return log_error_errno(E2BIG, "The node has %zu GPUs; svmd supports up to 64.", n);

        m->gpus = calloc(n, sizeof(Gpu *));
        if (!m->gpus)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                uint64_t avail;

                r = gpu_new(&m->gpus[i], m, (unsigned) i, kfd_device_get_gpu(m->kfd, i));
                if (r < 0)
                        return r;
                m->n_gpus++;
                /* The first reading of free VRAM, before any allocation needs it. */
                r = gpu_vram_available(m->gpus[i], 0, &avail);
                if (r < 0)
                        log_warning_errno(r, "GPU 0x%x: reading its free VRAM failed (%m); trying again at "
                                          "the first allocation.", m->gpus[i]->gpu_id);
                log_info("GPU 0x%x: %s (%s), %s VRAM, renderD%u, %s.", m->gpus[i]->gpu_id,
                         m->gpus[i]->kfd->target, m->gpus[i]->kfd->name,
                         FORMAT_BYTES(m->gpus[i]->kfd->vram_size), m->gpus[i]->kfd->drm_render_minor,
                         m->gpus[i]->kfd->pci_location);
        }
        return 0;
}

static int setup_window(Manager *m) {
        int r;

        r = va_space_new(&m->va, m->config.va_base, m->config.va_size);
        if (r < 0)
                return log_error_errno(r, "The SVM window 0x%" PRIx64 "+%s is invalid: %m", m->config.va_base,
                                       FORMAT_BYTES(m->config.va_size));
        r = va_space_reserve_window(m->va);
        if (r == -EEXIST) {
                _cleanup_free_ char *name = NULL;
                uint64_t s, e;

                if (va_space_find_window_conflict(m->config.va_base, m->config.va_size, &s, &e, &name) >= 0)
                        return log_error_errno(r,
                                               "The SVM window 0x%" PRIx64 "+%s overlaps a mapping of this process "
                                               "(0x%" PRIx64 "-0x%" PRIx64 " %s); choose another \"va-window\".",
                                               m->config.va_base, FORMAT_BYTES(m->config.va_size), s, e,
                                               name && name[0] ? name : "anonymous");
        }
        if (r < 0)
                return log_error_errno(r, "Reserving the SVM window failed: %m");
        log_info("SVM window 0x%" PRIx64 "-0x%" PRIx64 " (%s) reserved.", m->config.va_base,
                 m->config.va_base + m->config.va_size, FORMAT_BYTES(m->config.va_size));
        return 0;
}

/* Without its bus connection svmd has no name and no clients can find it: exit with a failure
 * so that the service manager restarts it; recovery brings every range back. */
static int on_bus_disconnected(sd_bus_message *message, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        log_error("The bus connection closed; exiting so that svmd is restarted.");
        (void) sd_notify(false, "STATUS=Lost the bus connection, exiting.");
        return sd_event_exit(m->event, -ECONNRESET);
}

static int setup_bus(Manager *m) {
        int r;

        switch (m->bus_kind) {
        case BUS_KIND_SYSTEM:
                r = sd_bus_open_system(&m->bus);
                break;
        case BUS_KIND_SESSION:
                r = sd_bus_open_user(&m->bus);
                break;
        case BUS_KIND_ADDRESS:
                r = sd_bus_new(&m->bus);
                if (r < 0)
                        break;
                r = sd_bus_set_address(m->bus, m->bus_address);
                if (r < 0)
                        break;
                r = sd_bus_set_bus_client(m->bus, 1);
                if (r < 0)
                        break;
                (void) sd_bus_negotiate_fds(m->bus, 1);
                r = sd_bus_start(m->bus);
                break;
        case BUS_KIND_NONE:
                return 0;
        default:
                r = -EINVAL;
        }
        if (r < 0)
                return log_error_errno(r, "Connecting to the bus failed: %m");

        r = manager_add_bus_objects(m, m->bus);
        if (r < 0)
                return log_error_errno(r, "Publishing objects failed: %m");
        /* For `systemctl service-log-level`: on the service's bus connection only. */
        r = sd_bus_add_object_vtable(m->bus, NULL, "/org/freedesktop/LogControl1", "org.freedesktop.LogControl1",
                                     log_control_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Publishing org.freedesktop.LogControl1 failed: %m");
        r = sd_bus_match_signal(m->bus, NULL, "org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local",
                                "org.freedesktop.DBus.Local", "Disconnected", on_bus_disconnected, m);
        if (r < 0)
                return log_error_errno(r, "Watching for the bus disconnecting failed: %m");
        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Attaching the bus to the event loop failed: %m");
        r = sd_bus_request_name(m->bus, SVMD_BUS_NAME, 0);
        if (r == -EEXIST)
                return log_error_errno(r, "Another process owns %s already; is svmd running?", SVMD_BUS_NAME);
        if (r < 0)
                return log_error_errno(r, "Acquiring the bus name %s failed: %m", SVMD_BUS_NAME);
        return 0;
}

static int setup_direct(Manager *m) {
        _cleanup_free_ char *socket_path = NULL;
        int r;

        if (asprintf(&socket_path, "%s/%s", m->runtime_dir, SVMD_IO_SOCKET_NAME) < 0)
                return -ENOMEM;
        r = direct_server_new(&m->direct, m, socket_path);
        if (r < 0)
                return r;
        log_info("Direct connections on %s.", socket_path);
        return 0;
}

int manager_start(Manager *m) {
        KfdDeviceConfig kc;
        uint64_t t0;
        int r;

        r = load_config(m->config_path, &m->config);
        if (r < 0)
                return r;

        r = sd_event_default(&m->event);
        if (r < 0)
                return log_error_errno(r, "Creating the event loop failed: %m");
        r = setup_signals(m);
        if (r < 0)
                return log_error_errno(r, "Setting up signal handling failed: %m");
        /* Recovery is served by the loop in slices (persist.h): the watchdog runs from the start. */
        if (sd_watchdog_enabled(false, &m->watchdog_usec) > 0) {
                /* sd-event's default accuracy is 250 ms: no later than a tenth of the interval after half of it. */
                r = sd_event_add_time_relative(m->event, &m->watchdog_timer, CLOCK_MONOTONIC,
                                               m->watchdog_usec / 2, MIN(m->watchdog_usec / 10, UINT64_C(250000)),
                                               on_watchdog, m);
                if (r < 0)
                        return log_error_errno(r, "Setting up the watchdog failed: %m");
        }

        if (mkdir(m->runtime_dir, 0755) < 0 && errno != EEXIST)
                return log_error_errno(errno, "Creating %s failed: %m", m->runtime_dir);
        /* The journal is read while the kernel side is set up. */
        t0 = manager_now_usec();
        r = persist_begin(m);
        if (r < 0)
                return log_error_errno(r, "Starting the recovery failed: %m");

        kc = (KfdDeviceConfig) {
                .default_cache_policy = m->config.default_policy,
                .mfma_high_precision = m->config.mfma_high_precision,
                .log = kfd_log,
        };
        r = kfd_device_new(&m->kfd, &kc);
        if (r < 0)
                return r; /* logged by the kfd layer */
        m->kfd_fd = kfd_device_get_fd(m->kfd);
        r = executor_new(&m->executor, m->event, (unsigned) m->config.limit_kernel_workers);
        if (r < 0)
                return log_error_errno(r, "Starting the kernel executor failed: %m");
        executor_set_idle_callback(m->executor, on_executor_idle, m);
        kfd_set_ioctl_hook(executor_ioctl);
        kfd_device_get_version(m->kfd, &m->kfd_major, &m->kfd_minor);
        log_info("KFD interface %u.%u.", m->kfd_major, m->kfd_minor);
        setup_xnack(m);
        r = manager_open_contexts(m);
        if (r < 0)
                return log_error_errno(r, "Setting up the KFD contexts failed: %m");

        r = setup_gpus(m);
        if (r < 0)
                return r;
        r = health_start(m);
        if (r < 0)
                return log_error_errno(r, "Watching the GPUs' health failed: %m");
        r = setup_window(m);
        if (r < 0)
                return r;

        r = id_index_new(&m->ranges, offsetof(Range, id));
        if (r < 0)
                return r;
        r = slab_new(&m->range_slab, offsetof(Range, pieces) + sizeof(RangePiece));
        if (r < 0)
                return r;
        r = request_cache_new(&m->requests, m->config.limit_request_ids_per_scope);
        if (r < 0)
                return r;
        r = str_table_new(&m->clients);
        if (r < 0)
                return r;
        r = str_table_new(&m->identities);
        if (r < 0)
                return r;
        r = str_table_new(&m->tokens);
        if (r < 0)
                return r;
        r = str_table_new(&m->range_requests);
        if (r < 0)
                return r;
        r = str_table_new(&m->requests_in_flight);
        if (r < 0)
                return r;
        r = quota_table_new(&m->quotas);
        if (r < 0)
                return r;
        r = polkit_registry_new(&m->polkit);
        if (r < 0)
                return r;
        r = metrics_new(&m->metrics, manager_vtable);
        if (r < 0)
                return r;

        /* Restore before anyone can connect: READY=1 only once the state is back. */
        r = persist_setup(m);
        if (r == -ECANCELED)
                return 0;       /* SIGTERM during the recovery: the loop is done, svmd exits */
        if (r < 0)
                return r;
        metrics_started(m->metrics, m->runtime_dir, manager_now_usec() - t0, m->n_persistent);
        r = setup_direct(m);
        if (r < 0)
                return r;
        r = setup_bus(m);
        if (r < 0)
                return r;

        m->started = true;
        (void) sd_notify(false, "READY=1");
        send_status(m);
        log_info("svmd " PACKAGE_VERSION " ready.");
        return 0;
}

int manager_run(Manager *m) {
        /* SIGTERM during the recovery ended the loop already (manager_start()). */
        if (sd_event_get_state(m->event) == SD_EVENT_FINISHED)
                return 0;
        return sd_event_loop(m->event);
}
