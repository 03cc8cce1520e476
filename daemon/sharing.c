/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <systemd/sd-bus.h>

#include "cgroup-util.h"
#include "client.h"
#include "executor.h"
#include "identity.h"
#include "list.h"
#include "log.h"
#include "manager.h"
#include "persist.h"
#include "range.h"
#include "revoke.h"
#include "sharing.h"
#include "str-table.h"
#include "transaction.h"

/* ---- holds ---- */

static void hold_link_client(Hold *h, Client *c) {
        h->client = c;
        LIST_PREPEND(c->holds, h, client_prev, client_next);
}

Hold *client_find_hold(Client *c, Range *range) {
        for (Hold *h = range_holds(range); h; h = h->range_next)
                if (h->client == c)
                        return h;
        for (Hold *h = range_holds(range); h; h = h->range_next)
                if (!h->client && h->uid == c->identity->uid) {
                        hold_link_client(h, c);
                        return h;
                }
        return NULL;
}

static int hold_alloc(Range *range, uid_t uid, bool read_only, Hold **ret) {
        RangeExtra *x = range_extra(range);
        Hold *h;

        if (!x)
                return -ENOMEM;
        h = calloc(1, sizeof(Hold));
        if (!h)
                return -ENOMEM;
        *h = (Hold) { .uid = uid, .range = range, .read_only = read_only };
        LIST_PREPEND(x->holds, h, range_prev, range_next);
        *ret = h;
        return 0;
}

int hold_new_orphan(Range *range, uid_t uid, bool read_only, Hold **ret) {
        return hold_alloc(range, uid, read_only, ret);
}

static const char *const holders_property[] = { "Holders", NULL };

int hold_new(Client *c, Range *range, bool read_only, Hold **ret) {
        Hold *h;
        int k;

        k = hold_alloc(range, c->identity->uid, read_only, &h);
        if (k < 0)
                return k;
        hold_link_client(h, c);
        range_emit_changed(range, holders_property);
        *ret = h;
        return 0;
}

Hold *hold_free(Hold *h) {
        if (!h)
                return NULL;
        if (h->revocation)
                revocation_hold_gone(h);
        /* A hold no client has taken up yet (hold_new_orphan()) is on no client's list. */
        if (h->client)
                LIST_REMOVE(h->client->holds, h, client_prev, client_next);
        LIST_REMOVE(h->range->extra->holds, h, range_prev, range_next); /* it has one: h is there */
        range_emit_changed(h->range, holders_property);
        free(h);
        return NULL;
}

/* ---- tokens ---- */

static int token_add(Manager *m, Client *creator, Range *range, const char *hex, Token **ret) {
        RangeExtra *x = range_extra(range);
        Token *t;
        int k;

        if (!x)
                return -ENOMEM;
        t = calloc(1, sizeof(Token));
        if (!t)
                return -ENOMEM;
        memcpy(t->token, hex, TOKEN_HEX_LEN);
        t->range = range;
        t->creator = creator;
        k = str_table_put(m->tokens, t->token, t);
        if (k < 0) {
                free(t);
                return k;
        }
        t->range_next = x->tokens;
        x->tokens = t;
        if (creator)
                creator->n_tokens++;
        /* Counted against a scope, which outlives connections: reconnecting does not reset it. */
        t->charged = identity_ref(creator ? creator->identity : range->owner);
        if (t->charged)
                t->charged->scope->usage.tokens++;
        *ret = t;
        return 0;
}

int token_new(Manager *m, Client *creator, Range *range, Token **ret) {
        static const char digits[] = "0123456789abcdef";
        uint8_t bytes[TOKEN_HEX_LEN / 2];
        char hex[TOKEN_HEX_LEN + 1];

        /* Unguessable: 128 bits from the kernel's CSPRNG; never a weaker fallback. */
        if (getrandom(bytes, sizeof(bytes), 0) != (ssize_t) sizeof(bytes))
                return negative_errno();
        for (size_t i = 0; i < sizeof(bytes); i++) {
                hex[2 * i] = digits[bytes[i] >> 4];
                hex[2 * i + 1] = digits[bytes[i] & 15];
        }
        hex[TOKEN_HEX_LEN] = '\0';
        return token_add(m, creator, range, hex, ret);
}

int token_restore(Manager *m, Range *range, const char *hex, Token **ret) {
        return token_add(m, NULL, range, hex, ret);
}

Token *token_free(Manager *m, Token *t) {
        if (!t)
                return NULL;
        (void) str_table_remove(m->tokens, t->token);
        for (Token **p = &t->range->extra->tokens; *p; p = &(*p)->range_next)
                if (*p == t) {
                        *p = t->range_next;
                        break;
                }
        if (t->creator && t->creator->n_tokens > 0)
                t->creator->n_tokens--;
        if (t->charged) {
                if (t->charged->scope->usage.tokens > 0)
                        t->charged->scope->usage.tokens--;
                identity_unref(m, t->charged);
        }
        free(t->unit);
        free(t->cgroup);
        free(t);
        return NULL;
}

void token_remove(Manager *m, Token *t) {
        Range *range = t->range;
        char hex[TOKEN_HEX_LEN + 1];

        memcpy(hex, t->token, sizeof(hex));
        token_free(m, t);
        persist_token_removed(m, range, hex);
}

unsigned range_n_tokens(const Range *range) {
        unsigned n = 0;

        for (Token *t = range_tokens(range); t; t = t->range_next)
                n++;
        return n;
}

unsigned range_n_holds(const Range *range) {
        unsigned n = 0;

        for (Hold *h = range_holds(range); h; h = h->range_next)
                n++;
        return n;
}

Token *manager_find_token(Manager *m, const char *token) {
        return str_table_get(m->tokens, token);
}

bool token_allows(const Token *t, const Identity *i) {
        if (t->has_uid && t->uid != i->uid)
                return false;
        if (t->unit && fnmatch(t->unit, i->unit, 0) != 0)
                return false;
        if (t->cgroup && !cgroup_is_prefix(t->cgroup, i->cgroup))
                return false;
        return true;
}

/* ---- lifetime rules ---- */

/* Free range now; if the kernel refuses, the repair timer finishes the job. */
static int range_free_now(Range *range) {
        _cleanup_(transaction_freep) Transaction *t = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Manager *m = range->manager;
        uint64_t id = range->id;
        int k;

        if (range->state == RANGE_STATE_DEGRADED || range_n_batch_users(range) > 0 || job_claim_held(&range->claim)) {
                /* Being repaired, batch pieces still use its pages, or a request in flight changes it
                 * (an administrator's; executor.h): free it when that is over. */
                range->want_gone = true;
                range_set_want_mapped(range, 0);
                if (range->state != RANGE_STATE_DEGRADED) {
                        range->state = RANGE_STATE_DEGRADED;
                        m->n_degraded++;
                }
                manager_schedule_repair(m);
                return 0;
        }

        k = transaction_new(&t, m);
        if (k >= 0) {
                k = range_free(t, range, &error);
                k = transaction_finish(t, k, &error);
        }
        if (k >= 0) {
                sd_bus_error_free(&error);
                return 0;
        }

        log_fields(LOG_WARNING, &((LogFields) { .range_id = id }),
                   "Freeing range %" PRIu64 " failed (%s); it is degraded and freed in the background.", id,
                   error.message ?: strerror(-k));
        sd_bus_error_free(&error);
        /* Still here (aborted, or degraded by the abort): make freeing it the repair goal. */
        range = manager_find_range(m, id);
        if (range) {
                if (range->state != RANGE_STATE_DEGRADED) {
                        range->state = RANGE_STATE_DEGRADED;
                        m->n_degraded++;
                }
                range->want_gone = true;
                range_set_want_mapped(range, 0);
                manager_schedule_repair(m);
        }
        return k;
}

int range_release_owner(Range *range) {
        client_remove_range(range);
        if (range_holds(range)) {
                range->owner_detached = true;
                range_emit_changed(range, (const char *const[]) { "Detached", NULL });
                persist_range(range->manager, range);
                log_fields(LOG_INFO, &((LogFields) { .range_id = range->id }),
                           "Range %" PRIu64 " lost its owner; it lives on while holders remain.", range->id);
                return 0;
        }
        return range_free_now(range);
}

int range_release_hold(Hold *h) {
        Range *range = h->range;
        uid_t uid = h->uid;
        bool read_only = h->read_only;

        hold_free(h);
        if (range->owner_detached && !range_holds(range))
                return range_free_now(range);
        persist_hold_removed(range->manager, range, uid, read_only);
        return 0;
}

int range_revoke_holds(Range *range, uid_t uid) {
        int n = 0;

        for (Hold *h = range_holds(range), *next; h; h = next) {
                next = h->range_next;
                if (h->uid != uid)
                        continue;
                n++;
                /* The last hold of a detached range frees it: range is gone then. */
                if (range->owner_detached && h == range_holds(range) && !next) {
                        int k = range_release_hold(h);
                        return k < 0 ? k : n;
                }
                (void) range_release_hold(h);
        }
        return n;
}
