/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Revocation with a deadline (revoke.h). A Revocation counts the holds it waits
 * for; each Hold being revoked points at it, and hold_free() reports here, so
 * every way a hold ends (Release, disconnect, RevokeHold, the deadline) counts
 * once. The deadline is a CLOCK_MONOTONIC timer; clients see it as
 * CLOCK_REALTIME µs, like a token's "expires-usec".
 */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "list.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "range.h"
#include "revoke.h"
#include "str-table.h"
#include "svmd-protocol.h"

static const char *const revoking_property[] = { "Revoking", NULL };

typedef struct EmitRequested {
        uint64_t id;
        uint32_t uid;
        uint64_t deadline_usec;
} EmitRequested;

static int append_requested(sd_bus_message *msg, void *userdata) {
        EmitRequested *e = userdata;
        return sd_bus_message_append(msg, "tut", e->id, e->uid, e->deadline_usec);
}

typedef struct EmitFinished {
        uint64_t id;
        uint32_t acknowledged, forced;
} EmitFinished;

static int append_finished(sd_bus_message *msg, void *userdata) {
        EmitFinished *e = userdata;
        return sd_bus_message_append(msg, "tuu", e->id, e->acknowledged, e->forced);
}

static Revocation *revocation_free(Revocation *rev) {
        if (!rev)
                return NULL;
        sd_event_source_disable_unref(rev->timer);
        free(rev->revoker);
        free(rev);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Revocation *, revocation_free);

static void revocation_unlink(Revocation *rev) {
        Manager *m = rev->manager;

        /* One that asked nobody was never linked. */
        if (rev->prev || m->revocations == rev)
                LIST_REMOVE(m->revocations, rev, prev, next);
}

/* The subscribers who hear of every hold of a revocation: the owner's uid and administrators. */
static bool sees_revocations(const Client *c, const Revocation *rev) {
        return c->sees_all || c->identity->uid == 0 || c->identity->uid == rev->owner_uid;
}

/* Every hold waited for is gone: tell the revoker, the range's owner and administrators. */
static void revocation_finish(Revocation *rev) {
        Manager *m = rev->manager;
        EmitFinished e = { .id = rev->range_id, .acknowledged = rev->n_acknowledged, .forced = rev->n_forced };
        Client *revoker = str_table_get(m->clients, rev->revoker);

        log_fields(LOG_INFO, &((LogFields) { .range_id = rev->range_id }),
                   "Revocation on range %" PRIu64 " finished: %u hold(s) released in time, %u taken at the deadline.",
                   rev->range_id, rev->n_acknowledged, rev->n_forced);
        if (revoker)
                manager_send_to_client(m, revoker, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "RevokeFinished",
                                       append_finished, &e);
        for (Client *c = m->subscribers; c; c = c->subscriber_next)
                if (c != revoker && sees_revocations(c, rev))
                        manager_send_to_client(m, c, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "RevokeFinished",
                                               append_finished, &e);
        revocation_unlink(rev);
        revocation_free(rev);
}

static void client_note_revoked(Client *c, uint64_t id) {
        c->revoked_ranges[c->n_revoked++ % ELEMENTSOF(c->revoked_ranges)] = id;
}

bool client_was_revoked(const Client *c, uint64_t id) {
        for (size_t i = 0; i < ELEMENTSOF(c->revoked_ranges); i++)
                if (id != 0 && c->revoked_ranges[i] == id)
                        return true;
        return false;
}

void client_forget_revoked(Client *c, uint64_t id) {
        for (size_t i = 0; i < ELEMENTSOF(c->revoked_ranges); i++)
                if (c->revoked_ranges[i] == id)
                        c->revoked_ranges[i] = 0;
}

static Hold *first_hold_of(Range *range, Revocation *rev) {
        for (Hold *h = range_holds(range); h; h = h->range_next)
                if (h->revocation == rev)
                        return h;
        return NULL;
}

/* The deadline: what is left goes by force, as with RevokeHold. */
static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        Revocation *rev = userdata;
        Manager *m = rev->manager;
        Range *range;
        Hold *h;

        rev->forcing = true;
        /* Releasing the last hold of a detached range frees it: look the range up again each time. */
        while ((range = manager_find_range(m, rev->range_id)) && (h = first_hold_of(range, rev))) {
                int k;

                if (h->client)
                        client_note_revoked(h->client, range->id);
                log_fields(LOG_NOTICE, &((LogFields) { .range_id = range->id }),
                           "Hold of uid %u on range %" PRIu64 " taken at the revocation's deadline (%s did not "
                           "release it).", (unsigned) h->uid, range->id, h->client ? h->client->name : "nobody");
                k = range_release_hold(h);
                if (k < 0)
                        log_warning_errno(k, "Releasing range %" PRIu64 " left it to the repair timer: %m",
                                          rev->range_id);
        }
        revocation_finish(rev);
        return 0;
}

void revocation_hold_gone(Hold *h) {
        Revocation *rev = h->revocation;

        h->revocation = NULL;
        if (rev->n_pending > 0)
                rev->n_pending--;
        if (rev->forcing)
                rev->n_forced++;
        else
                rev->n_acknowledged++;
        range_emit_changed(h->range, revoking_property);
        if (rev->n_pending == 0 && !rev->forcing)
                revocation_finish(rev);
}

/* RevokeRequested about hold h (being revoked) to c. */
static void send_requested(Manager *m, Client *c, Range *range, const Hold *h) {
        manager_send_to_client(m, c, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "RevokeRequested", append_requested,
                               &(EmitRequested) { .id = range->id, .uid = (uint32_t) h->uid,
                                                  .deadline_usec = h->revocation->deadline_usec });
}

/*
 * Each holder hears of its own hold, whether it subscribed or not (logind's PauseDevice
 * does the same), and of no other holder's; subscribers who could revoke (the owner's
 * uid, administrators) hear of every hold, each once.
 */
static void announce(Manager *m, Range *range, Revocation *rev) {
        for (Hold *h = range_holds(range); h; h = h->range_next)
                if (h->revocation == rev)
                        send_requested(m, h->client, range, h);
        for (Client *c = m->subscribers; c; c = c->subscriber_next)
                if (sees_revocations(c, rev))
                        for (Hold *h = range_holds(range); h; h = h->range_next)
                                if (h->revocation == rev && h->client != c)
                                        send_requested(m, c, range, h);
}

static bool revokes(const Hold *h, bool all, uid_t uid) {
        return !h->revocation && (all || h->uid == uid);
}

int revocation_start(Manager *m, Range *range, Client *revoker, bool all, uid_t uid, uint64_t timeout_usec,
                     unsigned *ret_asked, uint64_t *ret_deadline_usec) {
        _cleanup_(revocation_freep) Revocation *rev = NULL;
        uint64_t id = range->id, now;
        unsigned asked = 0;
        int k;

        assert(timeout_usec > 0 && timeout_usec <= REVOKE_TIMEOUT_MAX_USEC);

        /* Everything that can fail first: then nothing has changed. */
        k = sd_event_now(m->event, CLOCK_REALTIME, &now);
        if (k < 0)
                return k;
        rev = calloc(1, sizeof(Revocation));
        if (!rev)
                return -ENOMEM;
        *rev = (Revocation) {
                .manager = m,
                .range_id = id,
                .owner_uid = range->owner ? range->owner->uid : (uid_t) -1,
                .deadline_usec = now + timeout_usec,
                .revoker = strdup(revoker->name),
        };
        if (!rev->revoker)
                return -ENOMEM;
        /* 1 ms accuracy: sd-event's default (250 ms) would let a holder outlive its deadline that long. */
        k = sd_event_add_time_relative(m->event, &rev->timer, CLOCK_MONOTONIC, timeout_usec, 1000, on_deadline,
                                       rev);
        if (k < 0)
                return k;
        (void) sd_event_source_set_description(rev->timer, "revocation-deadline");

        if (all)
                while (range_tokens(range))
                        token_remove(m, range_tokens(range));

        /* Restored holds no connection adopted have no one to ask: they go now. */
        for (Hold *h = range_holds(range), *next; h; h = next) {
                next = h->range_next;
                if (h->client || !revokes(h, all, uid))
                        continue;
                if (!next && h == range_holds(range) && range->owner_detached) {
                        /* The range's last hold: the range goes with it. */
                        (void) range_release_hold(h);
                        range = NULL;
                        break;
                }
                (void) range_release_hold(h);
        }
        if (range)
                for (Hold *h = range_holds(range); h; h = h->range_next)
                        if (revokes(h, all, uid)) {
                                h->revocation = rev;
                                asked++;
                        }
        *ret_asked = asked;
        *ret_deadline_usec = rev->deadline_usec;
        if (asked == 0)
                return 0;

        rev->n_pending = asked;
        LIST_PREPEND(m->revocations, rev, prev, next);
        log_fields(LOG_INFO, &((LogFields) { .range_id = id, .unit = revoker->identity->unit }),
                   "Revoking %u hold(s) on range %" PRIu64 " (uid %u asked); deadline in %" PRIu64 " ms.", asked, id,
                   (unsigned) revoker->identity->uid, timeout_usec / 1000);
        range_emit_changed(range, revoking_property);
        announce(m, range, TAKE_PTR(rev));
        return 0;
}

void revocations_free(Manager *m) {
        while (m->revocations) {
                Revocation *rev = m->revocations;
                Range *range = manager_find_range(m, rev->range_id);

                for (Hold *h = range ? range_holds(range) : NULL; h; h = h->range_next)
                        if (h->revocation == rev)
                                h->revocation = NULL;
                revocation_unlink(rev);
                revocation_free(rev);
        }
}

int revoked_error(uint64_t id, const Hold *h, sd_bus_error *error) {
        if (h && h->revocation)
                return sd_bus_error_setf(error, SVMD_ERROR_REVOKED,
                                         "Your hold on range %" PRIu64 " is being revoked; release it (`svmctl release "
                                         "%" PRIu64 "`) before its deadline (CLOCK_REALTIME %" PRIu64 " µs).",
                                         id, id, h->revocation->deadline_usec);
        return sd_bus_error_setf(error, SVMD_ERROR_REVOKED,
                                 "Your hold on range %" PRIu64 " was revoked: its deadline passed before you released "
                                 "it. Attaching again needs a new share token from its owner.", id);
}
