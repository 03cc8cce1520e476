/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <fnmatch.h>

#include <systemd/sd-login.h>

#include "cgroup-util.h"
#include "client.h"
#include "context.h"
#include "direct.h"
#include "list.h"
#include "log.h"
#include "manager.h"
#include "peer-pid.h"
#include "persist.h"
#include "range.h"
#include "revoke.h"
#include "str-table.h"
#include "svmd-protocol.h"
#include "transaction.h"

/* One teardown slice: about a millisecond of freeing (docs/architecture.md, "Tearing down a client"). */
#define TEARDOWN_SLICE_USEC 1000ULL

static int on_teardown(sd_event_source *s, uint64_t usec, void *userdata);

/* ---- clients ---- */

static int on_client_gone(sd_bus_track *track, void *userdata) {
        Client *c = userdata;

        log_debug("Client %s disconnected.", c->label);
        client_free(c);
        return 0;
}

static int caller_identity(Manager *m, sd_bus_message *msg, uid_t *ret_uid, pid_t *ret_pid, char **ret_unit,
                           char **ret_cgroup, sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        _cleanup_(peer_pid_done) PeerPid peer = PEER_PID_NULL;
        sd_bus *bus = sd_bus_message_get_bus(msg);
        int sockfd = -EBADF;    /* a direct peer's socket, borrowed */
        uid_t uid;
        pid_t pid = 0;
        int r;

        /* Only the bus-provided (or SO_PEERCRED) uid and pid are trusted; unit and cgroup are
         * derived from the pid for quota scopes and logs, with the process pinned while they are
         * read (peer-pid.h). A direct peer's come from its socket (SO_PEERCRED at accept()): sd-bus
         * there only sees the socketpair svmd feeds it. */
        if (bus != m->bus) {
                r = direct_server_peer_credentials(m->direct, bus, &uid, &pid, &sockfd);
                if (r < 0)
                        return r;
        } else {
                r = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID | SD_BUS_CREDS_PID, &creds);
                if (r < 0)
                        return r;
                r = sd_bus_creds_get_euid(creds, &uid);
                if (r < 0)
                        return r;
                (void) sd_bus_creds_get_pid(creds, &pid);
        }
        if (pid <= 0) {
                /* No pid: no unit and no cgroup either. */
                _cleanup_free_ char *unit = strdup(""), *cgroup = strdup("");

                if (!unit || !cgroup)
                        return -ENOMEM;
                *ret_uid = uid;
                *ret_pid = 0;
                *ret_unit = TAKE_PTR(unit);
                *ret_cgroup = TAKE_PTR(cgroup);
                return 0;
        }

        /* A direct peer's socket can name the process itself; a bus peer's pid comes from the bus. */
        r = peer_pid_pin(pid, sockfd, &peer);
        if (r >= 0)
                r = peer_pid_read_identity(&peer, uid, ret_unit, ret_cgroup);
        if (r == -ESRCH)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "The process that opened this connection (pid %d) has exited, so svmd "
                                         "cannot tell its unit and cgroup; connect again from the calling process.",
                                         (int) pid);
        if (r == -ESTALE)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Pid %d no longer names the process that opened this connection (it "
                                         "exited and the pid was reused); connect again from the calling process.",
                                         (int) pid);
        if (r == -EPERM)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Process %d runs as uid 0 without CAP_SYS_ADMIN, as a container's root "
                                         "does without a user namespace; svmd serves it neither as root nor as "
                                         "a tenant: run it as another user or in a user namespace.", (int) pid);
        if (r < 0)
                return r;
        *ret_uid = uid;
        *ret_pid = pid;
        return 0;
}

/*
 * How logs name a client: its pid and command, stable over the connection and what an operator
 * finds in ps(1) and the journal, not the table key (a bus name, or a pointer for direct peers),
 * and its systemd unit when it has one: "svmctl[4242] (:1.17, app.service)". The command is read
 * once, while the process is known to be the caller; it is only a hint.
 */
static char *client_label(pid_t pid, const char *sender, const char *unit) {
        char path[64], comm[64] = "?", *label;
        _cleanup_fclose_ FILE *f = NULL;

        if (pid > 0) {
                snprintf(path, sizeof(path), "/proc/%d/comm", (int) pid);
                f = fopen(path, "re");
                if (f && fgets(comm, sizeof(comm), f))
                        comm[strcspn(comm, "\n")] = '\0';
        }
        if (pid <= 0 ? asprintf(&label, "(%s%s%s)", sender ?: "direct", isempty(unit) ? "" : ", ", strempty(unit)) < 0
                     : asprintf(&label, "%s[%d] (%s%s%s)", comm, (int) pid, sender ?: "direct",
                                isempty(unit) ? "" : ", ", strempty(unit)) < 0)
                return NULL;
        return label;
}

static void client_release_owned(Client *c);

/* Its holds and the tokens it created. Again once its last request ended: one in flight at the
 * disconnect (an Attach waiting for its EXPORT_DMABUF) may have taken a hold since. */
static void client_drop_references(Client *c) {
        /* A detached range whose last holder this was goes now. */
        while (c->holds)
                (void) range_release_hold(c->holds);

        /* Tokens outlive their creator (they belong to the range); they just stop counting. */
        if (c->n_tokens > 0) {
                StrTableIter it = {};
                void *v;

                while (str_table_iterate(c->manager->tokens, &it, NULL, &v))
                        if (((Token *) v)->creator == c)
                                ((Token *) v)->creator = NULL;
                c->n_tokens = 0;
        }
}

static void client_unpin(void *userdata) {
        Client *c = userdata;

        assert(c->n_jobs > 0);
        c->n_jobs--;
        if (c->direct)
                direct_server_job_ended(c->manager->direct, c->identity->uid);
        if (c->n_jobs == 0 && c->release_pending) {
                c->release_pending = false;
                client_release_owned(c);
        }
}

/* A request's job keeps its client until it ends: a disconnect meanwhile waits for it. */
static int client_pin(Client *c, Client **ret) {
        int r;

        if (job_current()) {
                r = job_on_end(client_unpin, c);
                if (r < 0)
                        return r;
                c->n_jobs++;
                if (c->direct)
                        direct_server_job_started(c->manager->direct, c->identity->uid);
                job_set_owner(c);
        }
        *ret = c;
        return 0;
}

#define DIRECT_NAME_MAX (sizeof("direct:0x") + 2 * sizeof(uintptr_t))

/* A direct peer's client name, "direct:%p" of its bus, without printf (it runs on every call). */
static const char *direct_client_name(char buf[static DIRECT_NAME_MAX], const sd_bus *bus) {
        uintptr_t v = (uintptr_t) bus;
        char hex[2 * sizeof(uintptr_t)];
        size_t n = 0, o = sizeof("direct:0x") - 1;

        do {
                hex[n++] = "0123456789abcdef"[v & 0xf];
                v >>= 4;
        } while (v > 0);
        memcpy(buf, "direct:0x", o);
        while (n > 0)
                buf[o++] = hex[--n];
        buf[o] = '\0';
        return buf;
}

int manager_get_client(Manager *m, sd_bus_message *msg, Client **ret, sd_bus_error *error) {
        _cleanup_free_ char *name = NULL, *unit = NULL, *cgroup = NULL;
        sd_bus *bus = sd_bus_message_get_bus(msg);
        /* Only the bus vouches for a sender; a direct peer's header could name anyone. */
        const char *sender = bus == m->bus ? sd_bus_message_get_sender(msg) : NULL;
        char direct_name[DIRECT_NAME_MAX];
        const char *key;
        uid_t uid = (uid_t) -1;
        pid_t pid = 0;
        Client *c;
        int r;

        key = sender ?: direct_client_name(direct_name, bus);
        c = str_table_get(m->clients, key);
        if (c)
                return client_pin(c, ret);
        name = strdup(key);
        if (!name)
                return -ENOMEM;
        /* A direct peer that closed while its call waited: it would never be torn down. */
        if (!sender && sd_bus_is_open(bus) <= 0)
                return -ENOTCONN;

        r = caller_identity(m, msg, &uid, &pid, &unit, &cgroup, error);
        if (r < 0)
                return r;

        c = calloc(1, sizeof(Client));
        if (!c)
                return -ENOMEM;
        c->manager = m;
        c->name = TAKE_PTR(name);
        c->pid = pid;
        c->label = client_label(pid, sender, unit);
        if (!c->label) {
                r = -ENOMEM;
                goto fail;
        }
        r = manager_get_identity(m, uid, unit, cgroup, &c->identity);
        if (r < 0)
                goto fail;

        if (sender) {
                r = sd_bus_track_new(bus, &c->track, on_client_gone, c);
                if (r < 0)
                        goto fail;
                r = sd_bus_track_add_sender(c->track, msg);
                if (r < 0)
                        goto fail;
        } else
                c->direct = bus;

        r = str_table_put(m->clients, c->name, c);
        if (r < 0)
                goto fail;

        manager_emit_properties_changed(m, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                        (const char *const[]) { "Clients", NULL });
        log_debug("Client %s: uid %u, unit %s, quota scope %s.", c->label, (unsigned) uid,
                  c->identity->unit[0] ? c->identity->unit : "-", c->identity->scope->key);
        return client_pin(c, ret);

fail:
        sd_bus_track_unref(c->track);
        identity_unref(m, c->identity);
        free(c->name);
        free(c->label);
        free(c);
        return r;
}

void client_subscribe(Client *c, bool sees_all) {
        Manager *m = c->manager;

        c->sees_all = c->sees_all || sees_all;
        if (c->subscribed)
                return;
        c->subscribed = true;
        LIST_PREPEND(m->subscribers, c, subscriber_prev, subscriber_next);
}

static void client_unsubscribe(Client *c) {
        if (!c->subscribed)
                return;
        LIST_REMOVE(c->manager->subscribers, c, subscriber_prev, subscriber_next);
        c->subscribed = false;
}

bool client_sees_range(const Client *c, const Range *range) {
        if (c->sees_all || c->identity->uid == 0)
                return true;
        /* A detached owner still pays for the range: it hears when the range goes. */
        if (range->owner && range->owner->uid == c->identity->uid)
                return true;
        for (Hold *h = range_holds(range); h; h = h->range_next)
                if (h->client == c || (!h->client && h->uid == c->identity->uid))
                        return true;
        return false;
}

void manager_direct_peer_closed(Manager *m, sd_bus *bus) {
        char name[DIRECT_NAME_MAX];
        Client *c;

        c = str_table_get(m->clients, direct_client_name(name, bus));
        if (c) {
                log_debug("Client %s disconnected.", c->label);
                client_free(c);
        }
}

/*
 * Free what the gone client still owns until deadline (CLOCK_MONOTONIC); 1 while some is left, 2
 * if what is left is being changed by requests in flight (Range.claim), 0 when done. In the
 * teardown job the frees' ioctls run on the executor: the list is read again after each step, as
 * the repair timer may have freed a degraded range of it meanwhile.
 */
static int client_release_ranges(Client *c, uint64_t deadline) {
        for (;;) {
                Range *range = c->ranges;

                while (range && job_claim_held(&range->claim))
                        range = range->client_next;
                if (!range)
                        return c->ranges ? 2 : 0;

                /* Persistent ranges stay (their owner is recorded), the rest goes. Each step takes the
                 * range off the list: it is freed, detached to its holders, or left to the repair timer. */
                if (range->persistent)
                        client_remove_range(range);
                else {
                        (void) job_claim(&range->claim); /* requests that find it wait (not held: see above) */
                        (void) job_set_small(range_size(range) <= EXECUTOR_SMALL_BYTES);
                        (void) range_release_owner(range);
                }
                if (deadline != UINT64_MAX && c->ranges && manager_now_usec() >= deadline)
                        return 1;
        }
}

static Client *client_destroy(Client *c) {
        identity_unref(c->manager, c->identity);
        free(c->name);
        free(c->label);
        free(c);
        return NULL;
}

/*
 * The next slice: a timer due now, not a defer source. sd-event runs, among sources of one
 * priority, the one pending longest first; a defer source left on stays pending since it was
 * enabled and would run before every call that arrives after it, until the queue is empty. A
 * timer armed again after each slice is pending anew, after whatever arrived meanwhile; at idle
 * priority, so that a bus connection whose message sd-bus has already read (and which waits on
 * its own timer, not on its socket) is served first too.
 */
static int teardown_schedule(Manager *m, uint64_t delay) {
        int k;

        if (!m->teardown_event) {
                k = sd_event_add_time_relative(m->event, &m->teardown_event, CLOCK_MONOTONIC, delay, 1, on_teardown, m);
                if (k < 0)
                        return k;
                (void) sd_event_source_set_description(m->teardown_event, "teardown");
                /* Below every request: a slice runs when no connection has work waiting. */
                return sd_event_source_set_priority(m->teardown_event, SD_EVENT_PRIORITY_IDLE);
        }
        k = sd_event_source_set_time_relative(m->teardown_event, delay);
        if (k < 0)
                return k;
        return sd_event_source_set_enabled(m->teardown_event, SD_EVENT_ONESHOT);
}

/* Queue a gone client whose ranges are freed in slices; -errno if the loop cannot run them. */
static int teardown_enqueue(Manager *m, Client *c) {
        int k;

        if (!m->event || m->exiting)
                return -ESHUTDOWN;
        if (!m->teardown_head) {
                k = teardown_schedule(m, 0);
                if (k < 0)
                        return k;
        }
        c->gone = true;
        c->teardown_next = NULL;
        if (m->teardown_tail)
                m->teardown_tail->teardown_next = c;
        else
                m->teardown_head = c;
        m->teardown_tail = c;
        return 0;
}

Client *client_free(Client *c) {
        Manager *m;

        if (!c)
                return NULL;
        m = c->manager;

        (void) str_table_remove(m->clients, c->name);
        /* Gone: the signals its ranges' end causes below are not for it. */
        client_unsubscribe(c);

        client_drop_references(c);

        c->track = sd_bus_track_unref(c->track);
        c->direct = NULL;
        if (!m->exiting)
                manager_emit_properties_changed(m, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE,
                                                (const char *const[]) { "Clients", NULL });

        /* A request of it still in flight ends first (client_unpin()); its ranges are gone by then. */
        if (c->n_jobs > 0) {
                c->gone = true;
                c->release_pending = true;
                return NULL;
        }
        client_release_owned(c);
        return NULL;
}

/* Then what it owns: freeing a million ranges takes seconds, so the loop does it in slices between
 * other clients' calls (on_teardown()). Until then they stay charged to its owner. */
static void client_release_owned(Client *c) {
        client_drop_references(c);
        if (c->ranges && teardown_enqueue(c->manager, c) >= 0)
                return;
        (void) client_release_ranges(c, UINT64_MAX);
        client_destroy(c);
}

bool range_being_freed(const Range *range) {
        /* Ranges with holders are not freed with their owner: they live on detached. */
        return range->client && range->client->gone && !range->persistent && !range_holds(range);
}

const char *range_public_state(const Range *range) {
        if (range_being_freed(range))
                return "freeing";
        /* Degraded says more about what svmd is doing; contents-lost about what the range holds. */
        if (range->state == RANGE_STATE_ACTIVE && range_lost_reason(range))
                return "contents-lost";
        return range_state_to_string(range->state);
}

/*
 * One slice of teardown: about TEARDOWN_SLICE_USEC of freeing, taken from the gone
 * clients in turn (round-robin), so that one client's million ranges delay another's
 * call by one slice at most, and the watchdog and every other source run in between.
 * Returns whether the next slice waits for requests in flight.
 */
static bool teardown_slice(Manager *m) {
        uint64_t deadline = manager_now_usec() + TEARDOWN_SLICE_USEC;
        bool blocked = false;

        while (m->teardown_head) {
                Client *c = m->teardown_head;
                int k;

                m->teardown_head = c->teardown_next;
                if (!m->teardown_head)
                        m->teardown_tail = NULL;
                c->teardown_next = NULL;

                k = client_release_ranges(c, deadline);
                if (k > 0) {
                        /* Waiting for a request in flight: look again in a millisecond, not at once. */
                        blocked = k == 2;
                        /* Its turn is over: to the back of the queue. */
                        if (m->teardown_tail)
                                m->teardown_tail->teardown_next = c;
                        else
                                m->teardown_head = c;
                        m->teardown_tail = c;
                        break;
                }
                log_debug("Client %s: every range it owned is freed.", c->label);
                client_destroy(c);
        }
        return blocked;
}

static void teardown_next(Manager *m, bool blocked) {
        if (m->teardown_head && teardown_schedule(m, blocked ? 1000 : 0) < 0) {
                /* Cannot wait for the loop: finish here rather than leak. */
                log_warning("Scheduling the next teardown slice failed; freeing the rest at once.");
                while (m->teardown_head) {
                        Client *c = m->teardown_head;

                        m->teardown_head = c->teardown_next;
                        (void) client_release_ranges(c, UINT64_MAX);
                        client_destroy(c);
                }
                m->teardown_tail = NULL;
        }
        manager_update_status(m);
}

/* A slice as a job: its FREE and UNMAP ioctls run on the executor, the loop serves others. */
static int teardown_job_run(void *userdata) {
        Manager *m = userdata;
        bool offload = job_set_offload(true), blocked;

        blocked = teardown_slice(m);
        (void) job_set_offload(offload);
        return blocked;
}

static void teardown_job_done(void *userdata, int result) {
        Manager *m = userdata;

        m->teardown_running = false;
        teardown_next(m, result > 0);
}

static int on_teardown(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        int r;

        if (m->teardown_running)
                return 0; /* the job reschedules when it ends */
        if (!m->executor) {
                teardown_next(m, teardown_slice(m));
                return 0;
        }
        m->teardown_running = true;
        r = executor_spawn(m->executor, teardown_job_run, teardown_job_done, m);
        if (r != -EINPROGRESS)
                teardown_job_done(m, r);
        return 0;
}

size_t manager_teardown_pending(Manager *m, uint64_t *ret_ranges) {
        uint64_t ranges = 0;
        size_t n = 0;

        for (Client *c = m->teardown_head; c; c = c->teardown_next) {
                n++;
                ranges += c->n_ranges;
        }
        if (ret_ranges)
                *ret_ranges = ranges;
        return n;
}

void manager_teardown_done(Manager *m) {
        while (m->teardown_head) {
                Client *c = m->teardown_head;

                m->teardown_head = c->teardown_next;
                /* Whatever it still owned was freed with the range table (manager_free()). */
                while (c->ranges)
                        client_remove_range(c->ranges);
                client_destroy(c);
        }
        m->teardown_tail = NULL;
        m->teardown_event = sd_event_source_disable_unref(m->teardown_event);
}

void client_add_range(Client *c, Range *range) {
        c->n_ranges++;
        range->client = c;
        LIST_PREPEND(c->ranges, range, client_prev, client_next);
}

void client_remove_range(Range *range) {
        Client *c = range->client;

        if (!c)
                return;
        LIST_REMOVE(c->ranges, range, client_prev, client_next);
        c->n_ranges--;
        range->client = NULL;
}
