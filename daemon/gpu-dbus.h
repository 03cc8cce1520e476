/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* org.svmd1.Gpu objects at /org/svmd1/gpu/<gpu_id> (gpu-dbus.c). */

#include <stdint.h>

#include <systemd/sd-bus.h>

typedef struct Manager Manager;

extern const sd_bus_vtable gpu_vtable[];

/* The GPUs of mask as an "au" of gpu ids. */
int gpu_mask_append(sd_bus_message *reply, Manager *m, uint64_t mask);

int gpu_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                    sd_bus_error *error);
int gpu_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error);
