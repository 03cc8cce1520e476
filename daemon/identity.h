/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * An Identity is what quotas and ownership see: a uid, and the systemd unit and
 * cgroup derived from the caller's pid (a container is its unit or cgroup).
 * Identities are interned and shared by every range they own.
 */

#include <sys/types.h>

#include "quota.h"

typedef struct Manager Manager;

typedef struct Identity {
        unsigned n_ref;
        uid_t uid;
        char *unit;             /* "" outside any unit */
        char *cgroup;           /* "" when unknown */
        char *key;
        Scope *scope;
} Identity;

/* The interned identity (a new reference). */
int manager_get_identity(Manager *m, uid_t uid, const char *unit, const char *cgroup, Identity **ret);
Identity *identity_ref(Identity *i);
void identity_unref(Manager *m, Identity *i);
/* Re-resolve every identity's quota scope and recompute usage (after a reload). */
int manager_rescope(Manager *m);
