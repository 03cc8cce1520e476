/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Who calls: identities, clients and the references between them and ranges.
 *
 * An Identity is what quotas and ownership see: a uid, and the systemd unit and
 * cgroup derived from the caller's pid (a container is its unit or cgroup).
 * Identities are interned and shared by every range they own.
 *
 * A Client is one connection: a bus unique name (tracked with sd_bus_track) or
 * a direct peer. When a client's last connection goes, crash included, its
 * references are dropped and the non-persistent ranges it owns are freed; that
 * starts in one place, client_free(). The ranges go in slices of about a
 * millisecond, one gone client after the other (round-robin), between the other
 * clients' calls; until a range is really freed it stays charged to its owner
 * and answers as "freeing" (docs/architecture.md, "Tearing down a client").
 *
 * A Hold is the reference an Attach takes; a Token is what Share hands out.
 * A range lives while its owner or any holder holds it: Free by the owner with
 * holders left detaches the owner, and the last holder's Release frees it.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

#include "quota.h"

typedef struct Manager Manager;
typedef struct Range Range;
typedef struct Client Client;
typedef struct Hold Hold;
typedef struct Token Token;

typedef struct Identity {
        unsigned n_ref;
        uid_t uid;
        char *unit;             /* "" outside any unit */
        char *cgroup;           /* "" when unknown */
        char *key;
        Scope *scope;
} Identity;

struct Client {
        Manager *manager;
        char *name;             /* bus unique name, or "direct:<n>" for a peer of io.socket */
        char *label;            /* for logs: "comm[pid] (:1.5)" or "comm[pid] (direct)" */
        sd_bus_track *track;    /* bus clients */
        sd_bus *direct;         /* direct peers */
        Identity *identity;
        pid_t pid;              /* the connection's peer process (0: unknown): VM faults name it */
        Range *ranges;          /* ranges it created and still owns (Range.client_next) */
        uint64_t n_ranges;
        Hold *holds;
        uint64_t n_tokens;
        /* Subscribe: the signals it may see are sent to it alone (docs/dbus-api.md, "Signals") */
        bool subscribed;
        bool sees_all;          /* root, or org.svmd1.manage when it subscribed */
        Client *subscriber_prev, *subscriber_next;
        /* Ranges whose hold was taken from it by force (revoke.c): its later calls on them say so. */
        uint64_t revoked_ranges[8];
        unsigned n_revoked;
        /* Disconnected, its ranges still being freed in slices (Manager.teardown_head) */
        bool gone;
        Client *teardown_next;
        /* Requests of it in flight (executor.h): its ranges are released when the last one ends. */
        unsigned n_jobs;
        bool release_pending;
};

struct Hold {
        Client *client;         /* NULL for a hold restored after a restart, until its uid comes back */
        uid_t uid;
        Range *range;
        Hold *client_prev, *client_next;
        Hold *range_prev, *range_next;
        bool read_only;
        struct Revocation *revocation;  /* being revoked: released by its deadline, or taken (revoke.h) */
};

#define TOKEN_HEX_LEN 32        /* 128 bits from getrandom() */

struct Token {
        char token[TOKEN_HEX_LEN + 1];
        Range *range;
        Client *creator;        /* NULL once the creating connection is gone */
        Identity *charged;      /* whose scope counts it: the Share caller's, or after a restart the owner's */
        Token *sweep_next;      /* expired tokens being collected */
        Token *range_next;
        bool has_uid;
        uid_t uid;
        char *unit;             /* glob, NULL: any */
        char *cgroup;           /* prefix, NULL: any */
        bool read_only;
        uint64_t expires_usec;  /* CLOCK_REALTIME; 0: never */
};

/* The client behind a message, created on first use (and tracked). */
int manager_get_client(Manager *m, sd_bus_message *msg, Client **ret, sd_bus_error *error);
/* Send c the signals it may see, from now until it disconnects. */
void client_subscribe(Client *c, bool sees_all);
/* May c receive the signals about r? Its owner's uid (detached too), its holders, and sees_all. */
bool client_sees_range(const Client *c, const Range *r);
/* A direct peer's connection closed. */
void manager_direct_peer_closed(Manager *m, sd_bus *bus);
/* The client is gone: drop its references and start freeing what it owns (see above). */
Client *client_free(Client *c);

/* A range whose owner's connection went and that is waiting to be freed: no longer usable. */
bool range_being_freed(const Range *r);
/* The State clients see: range_state_to_string(), or "freeing" for range_being_freed(). */
const char *range_public_state(const Range *r);
/* Gone clients whose ranges are not freed yet, and the ranges they still own. */
size_t manager_teardown_pending(Manager *m, uint64_t *ret_ranges);
/* At exit, after every range struct is gone: the gone clients' memory. */
void manager_teardown_done(Manager *m);

/* The interned identity (a new reference). */
int manager_get_identity(Manager *m, uid_t uid, const char *unit, const char *cgroup, Identity **ret);
Identity *identity_ref(Identity *i);
void identity_unref(Manager *m, Identity *i);
/* Re-resolve every identity's quota scope and recompute usage (after a reload). */
int manager_rescope(Manager *m);

/* Ownership links (the range list of a client). */
void client_add_range(Client *c, Range *r);
void client_remove_range(Range *r);

int hold_new(Client *c, Range *r, bool read_only, Hold **ret);
/* A hold restored from the journal: it belongs to a uid until a connection of that uid adopts it. */
int hold_new_orphan(Range *r, uid_t uid, bool read_only, Hold **ret);
Hold *hold_free(Hold *h);
Hold *client_find_hold(Client *c, Range *r);

/* Tokens. */

/* The client's hold on r; an orphaned hold of the client's uid is adopted. */
int token_new(Manager *m, Client *creator, Range *r, Token **ret);
/* A token recorded in the journal, restored after a restart. */
int token_restore(Manager *m, Range *r, const char *hex, Token **ret);
Token *token_free(Manager *m, Token *t);
Token *manager_find_token(Manager *m, const char *token);
bool token_allows(const Token *t, const Identity *i);
/* Drop a token for good (revoked, expired), journaled. */
void token_remove(Manager *m, Token *t);
unsigned range_n_tokens(const Range *r);
unsigned range_n_holds(const Range *r);

/*
 * Drop the owner's claim (Free, or the owner's connection went): with holders
 * left the range lives on detached; without, it is freed now (or by repair).
 */
int range_release_owner(Range *r);
/* Drop a holder's reference; the last one of a detached range frees it. */
int range_release_hold(Hold *h);
/* Drop every hold uid has on r (RevokeHold): as many Releases. Returns how many, or -errno. */
int range_revoke_holds(Range *r, uid_t uid);
