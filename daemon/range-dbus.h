/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* org.svmd1.Range objects at /org/svmd1/range/<id> (range-dbus.c). */

#include <systemd/sd-bus.h>

extern const sd_bus_vtable range_vtable[];

int range_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                      sd_bus_error *error);
int range_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error);
