/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The direct connection (SPEC §6.1a): a peer-to-peer sd-bus server on
 * <runtime-dir>/io.socket serving the same objects as the bus, for the
 * per-allocation hot path. Peers are identified by SO_PEERCRED.
 */

#include <systemd/sd-bus.h>

typedef struct Manager Manager;
typedef struct DirectServer DirectServer;

int direct_server_new(DirectServer **ret, Manager *m, const char *path);
DirectServer *direct_server_free(DirectServer *s);

/*
 * Signals go to the peers that asked for them (Subscribe, client_subscribe()),
 * not to every connection: the direct socket is the hot path, and a peer that
 * does not read signals must not fill up.
 */
unsigned direct_server_n_peers(const DirectServer *s);
