/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The manager's signals (RangeCreated, RangeFreed, QuotaExceeded, GpuLost,
 * ContentsLost, VmFault, RevokeRequested, RevokeFinished) as one callback with a
 * tagged struct. They are received on the bus, or on the direct connection when the
 * client has no bus; either way after Subscribe, and only those about the caller's
 * own ranges and quota scope (every one for root and org.svmd1.manage). A holder
 * hears RevokeRequested for its own holds, and a revoker RevokeFinished for its own
 * revocations, subscribed or not.
 */

#include <errno.h>
#include <string.h>

#include "client.h"
#include "svmd-protocol.h"

static const struct {
        const char *member;
        svmd_signal_kind kind;
} signal_table[] = {
        { "RangeCreated", SVMD_SIGNAL_RANGE_CREATED },
        { "RangeFreed", SVMD_SIGNAL_RANGE_FREED },
        { "QuotaExceeded", SVMD_SIGNAL_QUOTA_EXCEEDED },
        { "GpuLost", SVMD_SIGNAL_GPU_LOST },
        { "ContentsLost", SVMD_SIGNAL_CONTENTS_LOST },
        { "VmFault", SVMD_SIGNAL_VM_FAULT },
        { "RevokeRequested", SVMD_SIGNAL_REVOKE_REQUESTED },
        { "RevokeFinished", SVMD_SIGNAL_REVOKE_FINISHED },
};
_Static_assert(ELEMENTSOF(signal_table) == ELEMENTSOF(((svmd_client *) NULL)->signal_slots),
               "svmd_client.signal_slots needs a slot per signal");

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        svmd_client *c = userdata;
        const char *member = sd_bus_message_get_member(m);
        svmd_signal s = {};
        int r = -EBADMSG;

        for (size_t i = 0; i < ELEMENTSOF(signal_table); i++)
                if (streq_ptr(member, signal_table[i].member)) {
                        s.kind = signal_table[i].kind;
                        s.name = signal_table[i].member;
                        break;
                }
        if (!s.name)
                return 0;

        switch (s.kind) {
        case SVMD_SIGNAL_RANGE_CREATED:
        case SVMD_SIGNAL_RANGE_FREED:
                r = sd_bus_message_read_basic(m, 't', &s.id);
                break;
        case SVMD_SIGNAL_QUOTA_EXCEEDED:
                r = sd_bus_message_read(m, "ss", &s.scope, &s.resource);
                break;
        case SVMD_SIGNAL_GPU_LOST:
                r = sd_bus_message_read_basic(m, 'u', &s.gpu_id);
                break;
        case SVMD_SIGNAL_CONTENTS_LOST:
                r = sd_bus_message_read(m, "tus", &s.id, &s.gpu_id, &s.reason);
                break;
        case SVMD_SIGNAL_VM_FAULT:
                r = sd_bus_message_read(m, "uus", &s.gpu_id, &s.pid, &s.task);
                break;
        case SVMD_SIGNAL_REVOKE_REQUESTED:
                r = sd_bus_message_read(m, "tut", &s.id, &s.uid, &s.deadline_usec);
                break;
        case SVMD_SIGNAL_REVOKE_FINISHED:
                r = sd_bus_message_read(m, "tuu", &s.id, &s.acknowledged, &s.forced);
                break;
        }
        /* A signal that does not read is not ours to report; the caller's loop carries on. */
        if (r < 0)
                return 0;
        if (c->signal_callback)
                c->signal_callback(c, &s, c->signal_userdata);
        return 0;
}

_public_ int svmd_client_watch(svmd_client *c, svmd_signal_callback callback, void *userdata, svmd_error *error) {
        sd_bus *bus;
        int r;

        if (!c || !callback)
                return error_setf(error, -EINVAL, SD_BUS_ERROR_INVALID_ARGS, "Invalid NULL argument.");
        if (c->signal_slots[0])
                return error_setf(error, -EALREADY, NULL, "This client already watches svmd's signals.");
        bus = client_pick(c, false);
        if (!bus)
                return error_setf(error, -ENOTCONN, NULL, "svmd cannot be reached; is svmd running?");

        c->signal_callback = callback;
        c->signal_userdata = userdata;
        for (size_t i = 0; i < ELEMENTSOF(signal_table); i++) {
                /* Synchronous AddMatch: once this returns, no signal is missed. */
                r = sd_bus_match_signal(bus, &c->signal_slots[i], sd_bus_is_bus_client(bus) ? SVMD_BUS_NAME : NULL,
                                        SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, signal_table[i].member,
                                        on_signal, c);
                if (r < 0) {
                        for (size_t j = 0; j < ELEMENTSOF(c->signal_slots); j++)
                                c->signal_slots[j] = sd_bus_slot_unref(c->signal_slots[j]);
                        c->signal_callback = NULL;
                        return error_setf(error, r, NULL, "Subscribing to svmd's %s signal failed: %s.",
                                          signal_table[i].member, strerror(-r));
                }
        }
        /* svmd sends the signals about ranges and quota scopes only to clients that asked, and of
         * those only to the ones allowed to see them (on the bus as unicast signals): ask, on the
         * bus as on the direct connection. */
        r = sd_bus_call_method(bus, SVMD_BUS_NAME, SVMD_MANAGER_PATH, SVMD_MANAGER_INTERFACE, "Subscribe", NULL,
                               NULL, "");
        if (r < 0) {
                for (size_t j = 0; j < ELEMENTSOF(c->signal_slots); j++)
                        c->signal_slots[j] = sd_bus_slot_unref(c->signal_slots[j]);
                c->signal_callback = NULL;
                return error_setf(error, r, NULL, "Subscribing to svmd's signals failed: %s.", strerror(-r));
        }
        return client_update_epoll(c);
}
