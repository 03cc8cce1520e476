/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The direct connection (docs/architecture.md, "The direct socket"): a peer-to-peer sd-bus server on
 * <runtime-dir>/io.socket serving the same objects as the bus, for the
 * per-allocation hot path. Peers are identified by SO_PEERCRED. Connections,
 * message sizes and stalls are bounded by the "limits" of svmd.conf.
 */

#include <sys/types.h>

#include <systemd/sd-bus.h>

#include "macro.h"

typedef struct Manager Manager;
typedef struct DirectServer DirectServer;

int direct_server_new(DirectServer **ret, Manager *m, const char *path);
DirectServer *direct_server_free(DirectServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(DirectServer *, direct_server_free);

/*
 * Signals go to the peers that asked for them (Subscribe, client_subscribe()),
 * not to every connection: the direct socket is the hot path, and a peer that
 * does not read signals must not fill up.
 */
/* A message was queued on a direct peer's bus outside its dispatch (a signal): flush it. */
void direct_server_sent(DirectServer *s, sd_bus *bus);
/*
 * The peer's uid and pid (SO_PEERCRED at accept()) and its socket (borrowed: for
 * SO_PEERPIDFD), -ENOENT if bus is not a direct peer. sd-bus itself only knows the
 * socketpair it reads from, whose credentials are svmd's own: never ask it for a peer's.
 */
int direct_server_peer_credentials(DirectServer *s, sd_bus *bus, uid_t *ret_uid, pid_t *ret_pid, int *ret_sockfd);
unsigned direct_server_n_peers(const DirectServer *s);
/*
 * A request of a direct peer of uid became a job of the kernel executor, or such a job ended. A uid
 * with "kernel-workers" jobs in flight gets no turn until one ends: its further calls wait behind
 * its own, not in the executor's queue ahead of other tenants'.
 */
void direct_server_job_started(DirectServer *s, uid_t uid);
void direct_server_job_ended(DirectServer *s, uid_t uid);
