/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The org.svmd1.Manager methods of sharing, usage and configuration (share-dbus.c). */

#include <systemd/sd-bus.h>

int method_export(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_share(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_attach(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_release(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_list_tokens(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_revoke_token(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_revoke_hold(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_revoke(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_get_usage(sd_bus_message *msg, void *userdata, sd_bus_error *error);
int method_reload(sd_bus_message *msg, void *userdata, sd_bus_error *error);
