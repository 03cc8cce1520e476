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

/* Call fn for every connected peer. */
void direct_server_foreach(DirectServer *s, void (*fn)(sd_bus *bus, void *userdata), void *userdata);
unsigned direct_server_n_peers(const DirectServer *s);
