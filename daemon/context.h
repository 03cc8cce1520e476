/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * KFD contexts. The kernel serializes every ioctl of one KFD context on one
 * mutex; with interface 1.19 (CREATE_PROCESS) svmd opens secondary contexts
 * next to the primary one, so that tenants' buffers live under different locks
 * (docs/architecture.md, "KFD contexts"). Context 0 is the primary: it holds
 * what a secondary context cannot (USERPTR: host and batch ranges; SVM
 * ranges), and everything when there is no secondary context. VRAM and GTT
 * ranges go to the context of their owner's quota scope: the first range of a
 * scope picks the secondary context with the fewest scopes, and the scope stays
 * there while it has ranges in secondary contexts. The VA space stays one for
 * all contexts (va-space.h).
 */

#include <stdint.h>

#include "range.h"

typedef struct Manager Manager;
typedef struct KfdContext KfdContext;
typedef struct Scope Scope;

typedef struct Context {
        unsigned index;                 /* Manager.contexts[index]; 0: the primary */
        int fd;                         /* its /dev/kfd fd; the primary's is borrowed from Manager.kfd */
        KfdContext *kfd;                /* secondary: owns fd and its render-node files; NULL for the primary */
        uint64_t n_ranges;              /* ranges whose KFD buffers live in it */
        uint64_t n_scopes;              /* quota scopes whose new VRAM/GTT ranges go here */
} Context;

/* Open the primary and as many secondary contexts as configured and the kernel allows (at start). */
int manager_open_contexts(Manager *m);
void manager_close_contexts(Manager *m);

/* The context a new range goes to (see above); owner may be NULL (then the primary). */
unsigned context_pick(Manager *m, const Scope *owner_scope, RangeDomain domain, bool batch);

/* A range of scope in context index became accounted (+1) or not (-1): keeps the scope's context sticky. */
void context_account(Manager *m, Scope *scope, unsigned index, int sign);
/* After the quota scopes were recomputed (manager_rescope()): recount from the ranges. */
void context_recount(Manager *m);

/* The /dev/kfd fd every ioctl on the range's KFD buffers goes to. */
int range_kfd_fd(const Range *range);
