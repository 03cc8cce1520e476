/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* org.svmd1.Gpu objects at /org/svmd1/gpu/<gpu_id> (gpu-dbus.c). */

#include <systemd/sd-bus.h>

extern const sd_bus_vtable gpu_vtable[];

int gpu_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                    sd_bus_error *error);
int gpu_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error);
