/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Asynchronous polkit checks of org.svmd1.manage, without ever blocking the
 * event loop (the pattern of systemd's bus_verify_polkit_async): the first
 * time a handler asks, the query is sent and the handler returns 1 ("answered
 * later"); when polkit replies, the original message is queued again and the
 * handler runs a second time, now finding the answer.
 *
 * Root is always allowed. Without polkit on the system bus only root is.
 */

#include <systemd/sd-bus.h>

#define SVMD_POLKIT_ACTION_MANAGE "org.svmd1.manage"

typedef struct Manager Manager;
typedef struct PolkitRegistry PolkitRegistry;

int polkit_registry_new(PolkitRegistry **ret);
PolkitRegistry *polkit_registry_free(PolkitRegistry *r);

/*
 * 1: allowed. 0: query in flight (return 1 from the handler; it runs again).
 * -EACCES: denied (error is set to AccessDenied with `what`). Other < 0: failure.
 */
int polkit_check(Manager *m, sd_bus_message *msg, uid_t uid, const char *what, sd_bus_error *error);
