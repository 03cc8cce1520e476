/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* org.svmd1.Manager.GetMetrics (metrics-dbus.c). */

#include <systemd/sd-bus.h>

int method_get_metrics(sd_bus_message *msg, void *userdata, sd_bus_error *error);
