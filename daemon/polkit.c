/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "id-table.h"
#include "log.h"
#include "macro.h"
#include "manager.h"
#include "metrics.h"
#include "polkit.h"

typedef struct Query {
        PolkitRegistry *registry;
        sd_bus_message *request;
        sd_bus_slot *slot;
        int result;             /* -EINPROGRESS while waiting, then 1 or -EACCES */
} Query;

struct PolkitRegistry {
        IdTable *queries;       /* request message address → Query */
};

int polkit_registry_new(PolkitRegistry **ret) {
        _cleanup_free_ PolkitRegistry *r = calloc(1, sizeof(PolkitRegistry));
        int k;

        if (!r)
                return -ENOMEM;
        k = id_table_new(&r->queries);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(r);
        return 0;
}

static Query *query_free(Query *q) {
        if (!q)
                return NULL;
        (void) id_table_remove(q->registry->queries, (uint64_t) (uintptr_t) q->request);
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->request);
        free(q);
        return NULL;
}

PolkitRegistry *polkit_registry_free(PolkitRegistry *r) {
        Query *q;

        if (!r)
                return NULL;
        while ((q = id_table_steal_first(r->queries, NULL))) {
                sd_bus_slot_unref(q->slot);
                sd_bus_message_unref(q->request);
                free(q);
        }
        id_table_free(r->queries);
        free(r);
        return NULL;
}

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Query *q = userdata;
        int authorized = 0, challenge = 0, r;

        q->slot = sd_bus_slot_unref(q->slot);
        if (sd_bus_message_is_method_error(reply, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(reply);
                log_debug("Polkit refused or is absent (%s); only root may manage.", e ? e->name : "?");
                q->result = -EACCES;
        } else {
                r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
                if (r >= 0)
                        r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
                q->result = r >= 0 && authorized ? 1 : -EACCES;
        }

        /* Run the original call again: its handler now finds the answer. */
        r = sd_bus_enqueue_for_read(sd_bus_message_get_bus(q->request), q->request);
        if (r < 0) {
                log_warning_errno(r, "Requeueing a call after its polkit check failed: %m");
                query_free(q);
        }
        return 0;
}

int polkit_check(Manager *m, sd_bus_message *msg, uid_t uid, const char *what, sd_bus_error *error) {
        uint64_t key = (uint64_t) (uintptr_t) msg;
        const char *sender = sd_bus_message_get_sender(msg);
        Query *q;
        int r;

        if (uid == 0)
                return 1;

        q = id_table_get(m->polkit->queries, key);
        if (q && q->request == msg && q->result != -EINPROGRESS) {
                r = q->result;
                query_free(q);
                if (r > 0)
                        return 1;
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "%s needs the %s authorization.", what,
                                         SVMD_POLKIT_ACTION_MANAGE);
        }
        if (q) {
                metrics_call_deferred(m->metrics);
                return 0; /* still waiting */
        }

        /* Direct peers are not on a bus polkit could identify; they get root-only. */
        if (!sender || !m->bus)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "%s needs root (over the bus, the %s authorization).", what,
                                         SVMD_POLKIT_ACTION_MANAGE);

        q = calloc(1, sizeof(Query));
        if (!q)
                return -ENOMEM;
        *q = (Query) { .registry = m->polkit, .request = sd_bus_message_ref(msg), .result = -EINPROGRESS };
        r = id_table_put(m->polkit->queries, key, q);
        if (r < 0) {
                sd_bus_message_unref(q->request);
                free(q);
                return r;
        }

        r = sd_bus_call_method_async(m->bus, &q->slot, "org.freedesktop.PolicyKit1",
                                     "/org/freedesktop/PolicyKit1/Authority", "org.freedesktop.PolicyKit1.Authority",
                                     "CheckAuthorization", on_reply, q, "(sa{sv})sa{ss}us", "system-bus-name", 1,
                                     "name", "s", sender, SVMD_POLKIT_ACTION_MANAGE, 0,
                                     (uint32_t) sd_bus_message_get_allow_interactive_authorization(msg), "");
        if (r < 0) {
                query_free(q);
                return r;
        }
        metrics_call_deferred(m->metrics); /* counted when the call runs again and answers */
        return 0;
}
