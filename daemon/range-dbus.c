/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* org.svmd1.Range objects at /org/svmd1/range/<id>. */

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bus-util.h"
#include "client.h"
#include "gpu-dbus.h"
#include "gpu.h"
#include "manager.h"
#include "method-util.h"
#include "range-dbus.h"
#include "range-svm.h"
#include "range.h"
#include "revoke.h"
#include "svmd-protocol.h"

/*
 * Who may see a range's object: its owner (also once it let go of a range that
 * holders keep: it is still charged for it, and may revoke their holds), its
 * holders, root. Others (and
 * administrators through polkit: ListRanges with "all") do not find it, so a
 * tenant cannot read another's VAs, sizes and labels. Without a current call
 * (signals emitted by timers) the object is there.
 */
static bool visible(Manager *m, sd_bus *bus, Range *range) {
        sd_bus_message *msg = sd_bus_get_current_message(bus);
        Client *c;

        if (!msg)
                return true;
        if (manager_get_client(m, msg, &c, NULL) < 0)
                return false;
        return client_may(c, range, true) || (range->owner && range->owner->uid == c->identity->uid);
}

int range_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                      sd_bus_error *error) {
        Manager *m = userdata;
        uint64_t id;
        Range *range;

        if (bus_path_to_id(SVMD_RANGE_PATH_PREFIX, path, &id) < 0)
                return 0;
        range = manager_find_range(m, id);
        if (!range || !visible(m, bus, range))
                return 0;
        *found = range;
        return 1;
}

int range_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *m = userdata;
        size_t n = id_index_size(m->ranges), i = 0;
        char **l;

        l = calloc(n + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (Range *range = manager_ranges_from(m, 0); range && i < n; range = manager_ranges_next(m, range)) {
                if (!visible(m, bus, range))
                        continue;
                if (range_path(range->id, &l[i]) < 0) {
                        for (size_t j = 0; j < i; j++)
                                free(l[j]);
                        free(l);
                        return -ENOMEM;
                }
                i++;
        }
        *nodes = l;
        return 1;
}

static int property_get_mapped_gpus(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Range *range = userdata;

        return gpu_mask_append(reply, range->manager, range_mapped(range));
}

static int property_get_flags(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Range *range = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "s");
        if (r < 0)
                return r;
        for (unsigned bit = 1; bit <= _RANGE_FLAG_ALL; bit <<= 1)
                if (range->flags & bit) {
                        r = sd_bus_message_append(reply, "s", range_flag_to_string(bit));
                        if (r < 0)
                                return r;
                }
        return sd_bus_message_close_container(reply);
}

static int property_get_domain(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Range *range = userdata;

        return sd_bus_message_append(reply, "s", range_domain_to_string(range->domain));
}

static int property_get_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Range *range = userdata;

        return sd_bus_message_append(reply, "s", range_public_state(range));
}

static int property_get_state_reason(sd_bus *bus, const char *path, const char *interface, const char *property,
                                     sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Range *range = userdata;

        return sd_bus_message_append(reply, "s", strempty(range_lost_reason(range)));
}

static int property_get_home(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Range *range = userdata;

        return sd_bus_message_append(reply, "u", range->manager->gpus[range->home]->gpu_id);
}

static int property_get_kfd_context(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Range *range = userdata;

        return sd_bus_message_append(reply, "u", (uint32_t) range->context);
}

static int property_get_owner(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Range *range = userdata;

        return sd_bus_message_append(reply, "(us)", range->owner ? (uint32_t) range->owner->uid : UINT32_MAX,
                                     range->owner ? range->owner->unit : "");
}

static int property_get_holders(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Range *range = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(us)");
        if (r < 0)
                return r;
        for (Hold *h = range_holds(range); h; h = h->range_next) {
                r = sd_bus_message_append(reply, "(us)", (uint32_t) h->uid,
                                          h->client ? h->client->identity->unit : "");
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int property_get_revoking(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Range *range = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(ut)");
        if (r < 0)
                return r;
        for (Hold *h = range_holds(range); h; h = h->range_next)
                if (h->revocation) {
                        r = sd_bus_message_append(reply, "(ut)", (uint32_t) h->uid, h->revocation->deadline_usec);
                        if (r < 0)
                                return r;
                }
        return sd_bus_message_close_container(reply);
}

static int property_get_persistent(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Range *range = userdata;

        return sd_bus_message_append(reply, "b", (int) range->persistent);
}

static int property_get_detached(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Range *range = userdata;

        return sd_bus_message_append(reply, "b", (int) range->owner_detached);
}

static int property_get_label(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Range *range = userdata;

        return sd_bus_message_append(reply, "s", strempty(range_label(range)));
}

static int property_get_svm_attributes(sd_bus *bus, const char *path, const char *interface, const char *property,
                                       sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Range *range = userdata;

        /* Empty for ranges of other domains. */
        return svm_attrs_append(reply, range_svm(range) ? &range_svm(range)->attrs : NULL);
}

const sd_bus_vtable range_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "t", NULL, offsetof(Range, id), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Va", "t", NULL, offsetof(Range, va_node.start), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Size", "t", NULL, offsetof(Range, va_node.size), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Domain", "s", property_get_domain, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("HomeGpu", "u", property_get_home, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("MappedGpus", "au", property_get_mapped_gpus, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Flags", "as", property_get_flags, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Owner", "(us)", property_get_owner, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Holders", "a(us)", property_get_holders, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Revoking", "a(ut)", property_get_revoking, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Label", "s", property_get_label, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Persistent", "b", property_get_persistent, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("StateReason", "s", property_get_state_reason, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Detached", "b", property_get_detached, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("SvmAttributes", "a{sv}", property_get_svm_attributes, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("KfdContext", "u", property_get_kfd_context, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_VTABLE_END,
};

/*
 * PropertiesChanged with the values, built here rather than by
 * sd_bus_emit_properties_changed(), which can only broadcast: a range's
 * changes go to the clients that may see it alone (manager.c).
 */
int range_append_properties_changed(sd_bus_message *msg, Range *range, const char *const *properties) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_message_append(msg, "s", SVMD_RANGE_INTERFACE);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        for (const char *const *p = properties; *p; p++)
                for (const sd_bus_vtable *v = range_vtable; v->type != _SD_BUS_VTABLE_END; v++) {
                        if (v->type != _SD_BUS_VTABLE_PROPERTY || !streq(v->x.property.member, *p) ||
                            !v->x.property.get)
                                continue;
                        r = sd_bus_message_open_container(msg, 'e', "sv");
                        if (r >= 0)
                                r = sd_bus_message_append_basic(msg, 's', *p);
                        if (r >= 0)
                                r = sd_bus_message_open_container(msg, 'v', v->x.property.signature);
                        if (r >= 0)
                                r = v->x.property.get(sd_bus_message_get_bus(msg), NULL, SVMD_RANGE_INTERFACE, *p,
                                                      msg, range, &error);
                        sd_bus_error_free(&error);
                        if (r >= 0)
                                r = sd_bus_message_close_container(msg);
                        if (r >= 0)
                                r = sd_bus_message_close_container(msg);
                        if (r < 0)
                                return r;
                }
        r = sd_bus_message_close_container(msg);
        if (r < 0)
                return r;
        return sd_bus_message_append(msg, "as", 0);
}
