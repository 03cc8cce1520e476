/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stddef.h>
#include <stdlib.h>

#include "bus-util.h"
#include "client.h"
#include "manager.h"
#include "method-util.h"
#include "metrics-dbus.h"
#include "metrics.h"
#include "svmd-protocol.h"

typedef struct MetricsArgs {
        char *format;
} MetricsArgs;

static const BusOption metrics_options[] = {
        BUS_OPTION(SVMD_OPT_FORMAT, MetricsArgs, BUS_OPTION_STRING, format, 32),
        {}
};

/*
 * GetMetrics(options) → text (docs/metrics.md). Node-wide series are for everyone, as the
 * properties they mirror are. The series of quota scopes tell what other tenants do, so
 * they are all for root and org.svmd1.manage; anyone else gets its own scope's only, and a
 * refusal is no error.
 */
int method_get_metrics(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        MetricsArgs a = {};
        _cleanup_free_ char *text = NULL;
        MetricsFormat format = METRICS_FORMAT_OPENMETRICS;
        Manager *m = userdata;
        Client *c;
        bool all;
        int r;

        r = bus_read_options(msg, metrics_options, &a, "options", error);
        if (r >= 0 && a.format) {
                format = metrics_format_from_string(a.format);
                if (format < 0)
                        r = sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                              "\"format\" is \"%.32s\"; use \"openmetrics\" or \"prometheus\".",
                                              a.format);
        }
        bus_options_free(metrics_options, &a);
        if (r < 0)
                return r;

        r = authorize_sees_all(m, msg, "Reading the metrics of every quota scope", &c, &all, error);
        if (r <= 0)
                return r == 0 ? 1 : r; /* 0: polkit answers later; the call runs again */

        r = metrics_render(m, format, all ? NULL : c->identity->scope->key, &text, NULL);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "s", text);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}
