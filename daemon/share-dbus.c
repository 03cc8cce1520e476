/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Sharing and accounting methods of org.svmd1.Manager: Export, Share, Attach,
 * Release, the revocations, GetUsage, Reload.
 *
 * Sharing rules: Export gives the owner (or a holder) an fd for its own import.
 * Share makes an unguessable token that a grant may restrict to a uid, a unit
 * glob or a cgroup prefix, read-only, until a time. Attach with a token takes
 * a reference (a hold) and the fd. A range lives while its owner or any holder
 * holds it; shared ranges are charged to their owner only.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "gpu.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "method-util.h"
#include "share-dbus.h"
#include "persist.h"
#include "quota.h"
#include "range.h"
#include "revoke.h"
#include "str-table.h"
#include "svmd-protocol.h"

static uint64_t now_realtime_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

static int reply_fd(sd_bus_message *msg, Range *range, int fd, bool with_id) {
        if (with_id)
                return sd_bus_reply_method_return(msg, "ttth", range->id, range_va(range), range_size(range), fd);
        return sd_bus_reply_method_return(msg, "htt", fd, range_va(range), range_size(range));
}

static int run_export(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_close_ int fd = -EBADF;
        RangeCall call = { .verb = "Exporting", .holders_ok = true };
        Manager *m = userdata;
        Range *range;
        Client *c;
        Hold *h;
        int r;

        r = sd_bus_message_read(msg, "t", &call.id);
        if (r < 0)
                return r;
        r = method_prologue(m, msg, &call, &c, &range, error);
        if (r <= 0)
                return r == 0 ? 1 : r;

        /* A holder whose grant was read-only gets a read-only fd; owners and admins read-write. */
        h = client_find_hold(c, range);
        if (h && h->revocation && !client_may(c, range, false))
                return revoked_error(range->id, h, error);
        r = range_export_fd(range, h && h->read_only && !client_may(c, range, false), &fd, error);
        if (r < 0)
                return r;
        return reply_fd(msg, range, fd, false);
}

/* Expired tokens count until something removes them: before refusing a Share, they go. */
static void sweep_expired_tokens(Manager *m) {
        uint64_t now = now_realtime_usec();
        Token *expired = NULL;
        StrTableIter it = {};
        void *v;

        /* Collected first: the table must not change while it is iterated. */
        while (str_table_iterate(m->tokens, &it, NULL, &v)) {
                Token *t = v;

                if (t->expires_usec != 0 && t->expires_usec <= now) {
                        t->sweep_next = expired;
                        expired = t;
                }
        }
        while (expired) {
                Token *t = expired;

                expired = t->sweep_next;
                token_remove(m, t);
        }
}

/*
 * A Share must fit three limits: the connection's ("tokens-per-client"), the
 * caller's quota scope's, which reconnecting does not reset, and the range's,
 * which bounds what one range carries however many callers share it.
 */
static int check_token_limits(Manager *m, Client *c, Range *range, sd_bus_error *error) {
        const Config *cf = &m->config;
        Scope *s = c->identity->scope;

        if (c->n_tokens >= cf->limit_tokens_per_client) {
                manager_emit_quota_exceeded(m, s->key, "tokens-per-client");
                return sd_bus_error_setf(error, SVMD_ERROR_QUOTA_EXCEEDED,
                                         "This connection has %" PRIu64 " share tokens; at most %" PRIu64 " are allowed.",
                                         c->n_tokens, cf->limit_tokens_per_client);
        }
        if (s->usage.tokens >= cf->limit_tokens_per_scope || range_n_tokens(range) >= cf->limit_tokens_per_range)
                sweep_expired_tokens(m);
        if (s->usage.tokens >= cf->limit_tokens_per_scope) {
                manager_emit_quota_exceeded(m, s->key, "tokens-per-scope");
                return sd_bus_error_setf(error, SVMD_ERROR_QUOTA_EXCEEDED,
                                         "Scope %s has %" PRIu64 " share tokens; at most %" PRIu64 " are allowed. "
                                         "`svmctl revoke TOKEN` removes tokens no longer needed.",
                                         s->key, s->usage.tokens, cf->limit_tokens_per_scope);
        }
        if (range_n_tokens(range) >= cf->limit_tokens_per_range) {
                manager_emit_quota_exceeded(m, s->key, "tokens-per-range");
                return sd_bus_error_setf(error, SVMD_ERROR_QUOTA_EXCEEDED,
                                         "Range %" PRIu64 " has %u share tokens; at most %" PRIu64 " are allowed. "
                                         "`svmctl revoke TOKEN` removes tokens no longer needed.",
                                         range->id, range_n_tokens(range), cf->limit_tokens_per_range);
        }
        return 0;
}

int method_share(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(op_args_done) OpArgs g = {};
        Manager *m = userdata;
        Token *t;
        Range *range;
        Client *c;
        uint64_t id;
        int r;

        r = sd_bus_message_read(msg, "t", &id);
        if (r < 0)
                return r;
        r = bus_read_options(msg, grant_options, &g, "grant", error);
        if (r < 0)
                return r;
        r = manager_get_client(m, msg, &c, error);
        if (r < 0)
                return r;
        if (g.expires_usec != 0 && g.expires_usec <= now_realtime_usec())
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                        "\"expires-usec\" lies in the past (it is CLOCK_REALTIME in µs).");
        r = authorize_range(m, msg, c, id, false, "Sharing", &range, error);
        if (r <= 0)
                return r == 0 ? 1 : r;
        if (g.read_only && !range_domain_is_memfd(range->domain))
                return sd_bus_error_setf(error, SVMD_ERROR_NOT_SUPPORTED,
                                         "The kernel exports %s buffers read-write only; read-only sharing needs a host range.",
                                         range_domain_to_string(range->domain));
        if (range->batch)
                return sd_bus_error_setf(error, SVMD_ERROR_NOT_SUPPORTED,
                                         "Range %" PRIu64 " is a batch range; share its host ranges instead.", id);

        r = check_token_limits(m, c, range, error);
        if (r < 0)
                return r;

        r = token_new(m, c, range, &t);
        if (r < 0)
                return r;
        t->has_uid = g.has_grant_uid;
        t->uid = g.grant_uid;
        t->unit = TAKE_PTR(g.unit);
        t->cgroup = TAKE_PTR(g.cgroup);
        t->read_only = g.read_only;
        t->expires_usec = g.expires_usec;

        r = persist_token_added(m, t);
        if (r < 0) {
                token_free(m, t);
                return persist_set_error(m, r, error);
        }
        log_fields(LOG_INFO, &((LogFields) { .range_id = id, .unit = c->identity->unit }),
                   "Range %" PRIu64 " shared by uid %u%s.", id, (unsigned) c->identity->uid,
                   t->read_only ? " read-only" : "");
        return sd_bus_reply_method_return(msg, "s", t->token);
}

/*
 * The token named. The same answer for unknown, malformed, expired and revoked
 * tokens: nothing to probe. An expired one goes now.
 */
static int live_token(Manager *m, const char *token, Token **ret, sd_bus_error *error) {
        Token *t = strlen(token) == TOKEN_HEX_LEN ? manager_find_token(m, token) : NULL;

        if (t && t->expires_usec != 0 && t->expires_usec <= now_realtime_usec()) {
                token_remove(m, t);
                t = NULL;
        }
        if (!t)
                return sd_bus_error_set(error, SVMD_ERROR_NO_SUCH_TOKEN,
                                        "No such share token; it may have expired, been revoked or its range been "
                                        "freed.");
        *ret = t;
        return 0;
}

/* Would an Attach by c take a new hold (rather than keep its own, or adopt its uid's restored one)? */
static bool attach_adds_hold(const Client *c, const Range *range) {
        for (const Hold *h = range_holds(range); h; h = h->range_next)
                if (h->client == c || (!h->client && h->uid == c->identity->uid))
                        return false;
        return true;
}

/* The prologue of the calls that take a token: the caller, and the live token it names. */
static int token_call(Manager *m, sd_bus_message *msg, Client **ret_client, Token **ret, sd_bus_error *error) {
        const char *token;
        int r;

        r = sd_bus_message_read(msg, "s", &token);
        if (r < 0)
                return r;
        r = manager_get_client(m, msg, ret_client, error);
        if (r < 0)
                return r;
        return live_token(m, token, ret, error);
}

static int run_attach(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_close_ int fd = -EBADF;
        Manager *m = userdata;
        Token *t = NULL;
        Hold *h;
        Client *c;
        Range *range;
        int r;

        r = token_call(m, msg, &c, &t, error);
        if (r < 0)
                return r;
        if (!token_allows(t, c->identity))
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED,
                                        "This share token is granted to another user, unit or cgroup.");
        range = t->range;
        r = range_check_busy(range, error);
        if (r < 0)
                return r;
        /* Being revoked: the holder must let go, not take a new fd. */
        h = client_find_hold(c, range);
        if (h && h->revocation)
                return revoked_error(range->id, h, error);

        if (attach_adds_hold(c, range) && range_n_holds(range) >= m->config.limit_holds_per_range) {
                manager_emit_quota_exceeded(m, c->identity->scope->key, "holds-per-range");
                return sd_bus_error_setf(error, SVMD_ERROR_QUOTA_EXCEEDED,
                                         "Range %" PRIu64 " has %u holders; at most %" PRIu64 " are allowed. Its owner "
                                         "can revoke holds (`svmctl revoke --range ID --uid UID`).",
                                         range->id, range_n_holds(range), m->config.limit_holds_per_range);
        }

        r = range_export_fd(range, t->read_only, &fd, error);
        if (r < 0)
                return r;

        h = client_find_hold(c, range);
        if (!h) {
                r = hold_new(c, range, t->read_only, &h);
                if (r < 0)
                        return r;
                r = persist_hold_added(m, range, h->uid, h->read_only);
                if (r < 0) {
                        hold_free(h);
                        return persist_set_error(m, r, error);
                }
        } else if (!t->read_only && h->read_only) {
                h->read_only = false;
                persist_hold_removed(m, range, h->uid, true);
                (void) persist_hold_added(m, range, h->uid, false);
        }

        client_forget_revoked(c, range->id);
        log_fields(LOG_INFO, &((LogFields) { .range_id = range->id, .unit = c->identity->unit }),
                   "Range %" PRIu64 " attached by uid %u.", range->id, (unsigned) c->identity->uid);
        return reply_fd(msg, range, fd, true);
}

int method_release(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        Range *range;
        Client *c;
        Hold *h;
        uint64_t id;
        int r;

        r = sd_bus_message_read(msg, "t", &id);
        if (r < 0)
                return r;
        r = manager_get_client(m, msg, &c, error);
        if (r < 0)
                return r;
        range = manager_find_range(m, id);
        h = range ? client_find_hold(c, range) : NULL;
        if (!h && client_was_revoked(c, id))
                return revoked_error(id, NULL, error);
        if (!h)
                return sd_bus_error_setf(error, SVMD_ERROR_NO_SUCH_RANGE,
                                         "You hold no reference to range %" PRIu64 " (`svmctl release` undoes `svmctl attach`; owners use `svmctl free`).",
                                         id);
        r = range_release_hold(h);
        if (r < 0)
                log_warning_errno(r, "Releasing range %" PRIu64 " left it to the repair timer: %m", id);
        return sd_bus_reply_method_return(msg, "");
}

/*
 * Revoking and listing tokens and holds: the range's owner (by uid, also once
 * it let go of a range holders keep), else an admin (org.svmd1.manage).
 * 1: go on, 0: a polkit query is in flight, < 0: refused.
 */
static int authorize_owner(Manager *m, sd_bus_message *msg, Client *c, Range *range, const char *verb,
                           sd_bus_error *error) {
        char what[96];

        if (c->identity->uid == 0 || (range->owner && range->owner->uid == c->identity->uid))
                return 1;
        snprintf(what, sizeof(what), "%s range %" PRIu64 ", which is not the caller's,", verb, range->id);
        return authorize_admin(m, msg, c, what, error);
}

/*
 * The range id names, if the caller may act on it as its owner: 1, 0 (polkit pending), < 0 (refused).
 * Who may not see the range (client_sees_range(): also an owner that let go of it) hears what an
 * unused id gets, as from authorize_range(); its holders hear why.
 */
static int owner_range(Manager *m, sd_bus_message *msg, uint64_t id, const char *verb, Client **ret_client,
                       Range **ret, sd_bus_error *error) {
        Client *c;
        Range *range;
        int r;

        r = manager_get_client(m, msg, &c, error);
        if (r < 0)
                return r;
        range = manager_find_range(m, id);
        if (!range || !client_sees_range(c, range)) {
                r = authorize_range(m, msg, c, id, true, verb, &range, error);
                if (r <= 0)
                        return r;
        }
        r = authorize_owner(m, msg, c, range, verb, error);
        if (r <= 0)
                return r;
        *ret_client = c;
        *ret = range;
        return 1;
}

int method_list_tokens(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        Client *c;
        Range *range;
        uint64_t id;
        int r;

        r = sd_bus_message_read(msg, "t", &id);
        if (r < 0)
                return r;
        /* The tokens themselves: only for whoever could make new ones anyway. */
        r = owner_range(m, msg, id, "Listing the share tokens of", &c, &range, error);
        if (r <= 0)
                return r == 0 ? 1 : r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(sa{sv})");
        for (Token *t = range_tokens(range); r >= 0 && t; t = t->range_next) {
                r = sd_bus_message_open_container(reply, 'r', "sa{sv}");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "s", t->token);
                if (r >= 0)
                        r = sd_bus_message_open_container(reply, 'a', "{sv}");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "{sv}{sv}", SVMD_GRANT_READ_ONLY, "b", (int) t->read_only,
                                                  SVMD_GRANT_EXPIRES_USEC, "t", t->expires_usec);
                if (r >= 0 && t->has_uid)
                        r = sd_bus_message_append(reply, "{sv}", SVMD_GRANT_UID, "u", (uint32_t) t->uid);
                if (r >= 0 && t->unit)
                        r = sd_bus_message_append(reply, "{sv}", SVMD_GRANT_UNIT, "s", t->unit);
                if (r >= 0 && t->cgroup)
                        r = sd_bus_message_append(reply, "{sv}", SVMD_GRANT_CGROUP, "s", t->cgroup);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

int method_revoke_token(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        uint64_t id;
        Client *c;
        Token *t = NULL;
        int r;

        r = token_call(m, msg, &c, &t, error);
        if (r < 0)
                return r;
        r = authorize_owner(m, msg, c, t->range, "Revoking a share token of", error);
        if (r <= 0)
                return r == 0 ? 1 : r;

        id = t->range->id;
        token_remove(m, t);
        log_fields(LOG_INFO, &((LogFields) { .range_id = id, .unit = c->identity->unit }),
                   "A share token of range %" PRIu64 " revoked by uid %u.", id, (unsigned) c->identity->uid);
        return sd_bus_reply_method_return(msg, "");
}

/* The revocations of one uid's holds name a holder: NoSuchRange if uid holds none. */
static int check_holder(Range *range, uint32_t uid, sd_bus_error *error) {
        for (Hold *h = range_holds(range); h; h = h->range_next)
                if (h->uid == (uid_t) uid)
                        return 0;
        return sd_bus_error_setf(error, SVMD_ERROR_NO_SUCH_RANGE,
                                 "Uid %" PRIu32 " holds no reference to range %" PRIu64 "; its Holders "
                                 "property lists who does.", uid, range->id);
}

int method_revoke_hold(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        uint32_t uid;
        uint64_t id;
        Client *c;
        Range *range;
        int r;

        r = sd_bus_message_read(msg, "tu", &id, &uid);
        if (r < 0)
                return r;
        r = owner_range(m, msg, id, "Revoking holds on", &c, &range, error);
        if (r <= 0)
                return r == 0 ? 1 : r;
        r = check_holder(range, uid, error);
        if (r < 0)
                return r;

        r = range_revoke_holds(range, (uid_t) uid);
        if (r < 0)
                log_warning_errno(r, "Revoking holds on range %" PRIu64 " left it to the repair timer: %m", id);
        log_fields(LOG_INFO, &((LogFields) { .range_id = id, .unit = c->identity->unit }),
                   "Holds of uid %" PRIu32 " on range %" PRIu64 " revoked by uid %u.", uid, id,
                   (unsigned) c->identity->uid);
        return sd_bus_reply_method_return(msg, "");
}

typedef struct RevokeArgs {
        uint32_t uid;
        bool has_uid;
} RevokeArgs;

static const BusOption revoke_options[] = {
        BUS_OPTION_P(SVMD_REVOKE_UID, RevokeArgs, BUS_OPTION_U32, uid, 0, has_uid),
        {}
};

int method_revoke(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        RevokeArgs a = {};
        uint64_t id, timeout_usec, deadline_usec;
        unsigned asked;
        Client *c;
        Range *range;
        int r;

        r = sd_bus_message_read(msg, "tt", &id, &timeout_usec);
        if (r < 0)
                return r;
        r = bus_read_options(msg, revoke_options, &a, "options", error);
        if (r < 0)
                return r;
        if (timeout_usec == 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                        "A deadline of 0 µs gives holders no time; RevokeHold and RevokeToken revoke "
                                        "at once.");
        if (timeout_usec > REVOKE_TIMEOUT_MAX_USEC)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "A deadline %" PRIu64 " µs away is more than a week (%llu µs), the longest "
                                         "svmd keeps.", timeout_usec, REVOKE_TIMEOUT_MAX_USEC);

        r = owner_range(m, msg, id, "Revoking holds on", &c, &range, error);
        if (r <= 0)
                return r == 0 ? 1 : r;
        if (a.has_uid) {
                r = check_holder(range, a.uid, error);
                if (r < 0)
                        return r;
        }

        r = revocation_start(m, range, c, !a.has_uid, (uid_t) a.uid, timeout_usec, &asked, &deadline_usec);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, "ut", (uint32_t) asked, deadline_usec);
}

static int append_kv_t(sd_bus_message *reply, const char *key, uint64_t v) {
        return sd_bus_message_append(reply, "{sv}", key, "t", v);
}

int method_get_usage(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        const char *key;
        QuotaLimits limits;
        bool limited;
        Scope *s;
        Client *c;
        Usage zero = {};
        const Usage *u;
        int r;

        r = sd_bus_message_read(msg, "s", &key);
        if (r < 0)
                return r;
        r = manager_get_client(m, msg, &c, error);
        if (r < 0)
                return r;

        if (key[0] == '\0')
                key = c->identity->scope->key;
        if (!streq(key, c->identity->scope->key)) {
                r = authorize_admin(m, msg, c, "Reading another scope's usage", error);
                if (r <= 0)
                        return r == 0 ? 1 : r;
        }
        /* Limits from the configuration in force, also for a scope nobody uses right now. */
        r = quota_limits_for_key(&m->config, key, &limited, &limits);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Scope \"%.64s\" is not uid:N, or unit:NAME / cgroup:PATH matched by a quota rule.",
                                         key);

        s = quota_find_scope(m->quotas, key);
        u = s ? &s->usage : &zero;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "{sv}", SVMD_USAGE_SCOPE, "s", key);
        if (r >= 0)
                r = append_kv_t(reply, SVMD_USAGE_RANGES, u->ranges);
        if (r >= 0)
                r = append_kv_t(reply, SVMD_USAGE_VRAM, u->vram);
        if (r >= 0)
                r = append_kv_t(reply, SVMD_USAGE_HOST, u->host);
        if (r < 0)
                return r;

        r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", SVMD_USAGE_VRAM_PER_GPU);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', "a(ut)");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(ut)");
        for (size_t i = 0; r >= 0 && i < m->n_gpus && i < QUOTA_MAX_GPUS; i++)
                r = sd_bus_message_append(reply, "(ut)", m->gpus[i]->gpu_id, u->vram_per_gpu[i]);
        for (int j = 0; r >= 0 && j < 3; j++)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;

        /* Limits only where one applies: a missing key means no limit. */
        if (limited) {
                const struct {
                        const char *key;
                        uint64_t v;
                } q[] = {
                        { "quota-ranges", limits.ranges },
                        { "quota-vram", limits.vram },
                        { "quota-vram-per-gpu", limits.vram_per_gpu },
                        { "quota-host", limits.host },
                };
                for (size_t i = 0; i < ELEMENTSOF(q); i++)
                        if (q[i].v != QUOTA_UNLIMITED && (r = append_kv_t(reply, q[i].key, q[i].v)) < 0)
                                return r;
        }

        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

int method_reload(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_free_ char *message = NULL;
        Manager *m = userdata;
        Client *c;
        int r;

        r = manager_get_client(m, msg, &c, error);
        if (r < 0)
                return r;
        r = authorize_admin(m, msg, c, "Reloading the configuration", error);
        if (r <= 0)
                return r == 0 ? 1 : r;

        r = manager_reload(m, &message);
        if (r < 0)
                return sd_bus_error_setf(error, "org.freedesktop.DBus.Error.InvalidFileContent",
                                         "The configuration was not reloaded, the old one stays: %s.",
                                         message ?: strerror(-r));
        return sd_bus_reply_method_return(msg, "");
}

/* Export and Attach wait for a change of the range in flight, and export on the executor. */
int method_export(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return method_run_job(userdata, msg, run_export, error);
}

int method_attach(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return method_run_job(userdata, msg, run_attach, error);
}
