/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Who calls: clients (connections). Their identities are in identity.h, the
 * references between them and ranges (holds, tokens) in sharing.h.
 *
 * A Client is one connection: a bus unique name (tracked with sd_bus_track) or
 * a direct peer. When a client's last connection goes, crash included, its
 * references are dropped and the non-persistent ranges it owns are freed; that
 * starts in one place, client_free(). The ranges go in slices of about a
 * millisecond, one gone client after the other (round-robin), between the other
 * clients' calls; until a range is really freed it stays charged to its owner
 * and answers as "freeing" (docs/architecture.md, "Tearing down a client").
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

#include "identity.h"
#include "sharing.h"

typedef struct Manager Manager;
typedef struct Range Range;
typedef struct Client Client;

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

/* The client behind a message, created on first use (and tracked). */
int manager_get_client(Manager *m, sd_bus_message *msg, Client **ret, sd_bus_error *error);
/* Send c the signals it may see, from now until it disconnects. */
void client_subscribe(Client *c, bool sees_all);
/* May c receive the signals about range? Its owner's uid (detached too), its holders, and sees_all. */
bool client_sees_range(const Client *c, const Range *range);
/* A direct peer's connection closed. */
void manager_direct_peer_closed(Manager *m, sd_bus *bus);
/* The client is gone: drop its references and start freeing what it owns (see above). */
Client *client_free(Client *c);

/* A range whose owner's connection went and that is waiting to be freed: no longer usable. */
bool range_being_freed(const Range *range);
/* The State clients see: range_state_to_string(), or "freeing" for range_being_freed(). */
const char *range_public_state(const Range *range);
/* Gone clients whose ranges are not freed yet, and the ranges they still own. */
size_t manager_teardown_pending(Manager *m, uint64_t *ret_ranges);
/* At exit, after every range struct is gone: the gone clients' memory. */
void manager_teardown_done(Manager *m);

/* Ownership links (the range list of a client). */
void client_add_range(Client *c, Range *range);
void client_remove_range(Range *range);
