/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* org.svmd1.Manager at /org/svmd1 (manager-dbus.c), its methods in manager-dbus.c, share-dbus.c and commit.c. */

#include <systemd/sd-bus.h>

extern const sd_bus_vtable manager_vtable[];
