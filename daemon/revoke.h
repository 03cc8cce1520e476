/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Revocation with a deadline (docs/dbus-api.md, "Revoke"; docs/architecture.md,
 * "Revocation"). Like logind's PauseDevice: each connection whose hold is
 * revoked gets RevokeRequested (unicast) with the deadline; it acknowledges by
 * Release, or by disconnecting. At the deadline svmd takes what is left by
 * force: the holds go as with RevokeHold, and the connection's later calls on
 * the range fail with org.svmd1.Error.Revoked. The revoker gets RevokeFinished.
 *
 * A revocation lives in memory only: after a restart the holds it waited for
 * are restored holds of their uid, which a new Revoke (or RevokeHold) drops at
 * once, since no connection is there to ask.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "client.h"

/* The longest deadline a Revoke may set: a week. */
#define REVOKE_TIMEOUT_MAX_USEC (7ULL * 24 * 3600 * 1000000)

typedef struct Revocation {
        Manager *manager;
        uint64_t range_id;
        uid_t owner_uid;                /* also told when it finishes */
        uint64_t deadline_usec;         /* CLOCK_REALTIME µs, as clients see it */
        char *revoker;                  /* the revoking connection's name (Client.name) */
        unsigned n_pending;             /* holds still to go */
        unsigned n_acknowledged;        /* went before the deadline: Release, disconnect, RevokeHold */
        unsigned n_forced;              /* taken at the deadline */
        bool forcing;
        sd_event_source *timer;
        struct Revocation *prev, *next; /* Manager.revocations */
} Revocation;

/*
 * Revoke range's holds (only uid's if !all; all of them and every token if all) with
 * a deadline timeout_usec from now. Holds already being revoked keep their deadline;
 * restored holds that no connection adopted go at once (there is no one to ask).
 * *ret_asked: the holds now waited for; 0 means nothing is left to wait for.
 * *ret_deadline_usec: the deadline, CLOCK_REALTIME µs.
 */
int revocation_start(Manager *m, Range *range, Client *revoker, bool all, uid_t uid, uint64_t timeout_usec,
                     unsigned *ret_asked, uint64_t *ret_deadline_usec);
/* h ends (Release, disconnect, revocation, range freed): from hold_free(). */
void revocation_hold_gone(Hold *h);
/* At exit: drop every revocation without announcing anything. */
void revocations_free(Manager *m);

/* Was c's hold on range id taken from it by force? */
bool client_was_revoked(const Client *c, uint64_t id);
/* A new Attach: range id is c's again. */
void client_forget_revoked(Client *c, uint64_t id);

/* org.svmd1.Error.Revoked for c's call on range id: taken at a deadline, or (h set) being revoked. */
int revoked_error(uint64_t id, const Hold *h, sd_bus_error *error);
