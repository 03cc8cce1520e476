/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* org.freedesktop.LogControl1 at /org/freedesktop/LogControl1 (log-control.c). */

#include <systemd/sd-bus.h>

extern const sd_bus_vtable log_control_vtable[];
