/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* org.svmd1.Gpu objects at /org/svmd1/gpu/<gpu_id>. */

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "bus-util.h"
#include "gpu-dbus.h"
#include "gpu.h"
#include "manager.h"
#include "svmd-protocol.h"

int gpu_mask_append(sd_bus_message *reply, Manager *m, uint64_t mask) {
        Gpu *g;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "u");
        if (r < 0)
                return r;
        FOREACH_GPU_IN_MASK(g, m, mask) {
                r = sd_bus_message_append_basic(reply, 'u', &g->gpu_id);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

int gpu_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                    sd_bus_error *error) {
        Manager *m = userdata;
        uint64_t id;
        Gpu *g;

        if (bus_path_to_id(SVMD_GPU_PATH_PREFIX, path, &id) < 0 || id > UINT32_MAX)
                return 0;
        g = manager_find_gpu(m, (uint32_t) id);
        if (!g)
                return 0;
        *found = g;
        return 1;
}

int gpu_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *m = userdata;
        char **l;

        l = calloc(m->n_gpus + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_gpus; i++) {
                l[i] = strdup(m->gpus[i]->path);
                if (!l[i]) {
                        for (size_t j = 0; j < i; j++)
                                free(l[j]);
                        free(l);
                        return -ENOMEM;
                }
        }
        *nodes = l;
        return 1;
}

static int property_get_vram(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Gpu *g = userdata;
        uint64_t avail = 0, total = g->kfd->vram_size;

        if (streq(property, "VramTotal"))
                return sd_bus_message_append(reply, "t", total);
        if (gpu_vram_available(g, GPU_AVAILABLE_MAX_AGE_USEC, &avail) < 0)
                avail = 0;
        if (streq(property, "VramFree"))
                return sd_bus_message_append(reply, "t", avail);
        return sd_bus_message_append(reply, "t", total > avail ? total - avail : 0);
}

static int property_get_peers(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Gpu *g = userdata;
        Manager *m = g->manager;
        const KfdTopology *t = kfd_device_get_topology(m->kfd);
        int r;

        /* The GPUs that can map this GPU's VRAM. */
        r = sd_bus_message_open_container(reply, 'a', "u");
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_gpus; i++) {
                if (i == g->index || !kfd_topology_can_map(t, g->gpu_id, m->gpus[i]->gpu_id))
                        continue;
                r = sd_bus_message_append_basic(reply, 'u', &m->gpus[i]->gpu_id);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int property_get_string(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Gpu *g = userdata;

        if (streq(property, "Target"))
                return sd_bus_message_append(reply, "s", g->kfd->target);
        if (streq(property, "Name"))
                return sd_bus_message_append(reply, "s", g->kfd->name);
        return sd_bus_message_append(reply, "s", g->kfd->pci_location);
}

static int property_get_u32(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Gpu *g = userdata;

        if (streq(property, "GpuId"))
                return sd_bus_message_append(reply, "u", g->gpu_id);
        if (streq(property, "NodeId"))
                return sd_bus_message_append(reply, "u", g->kfd->node_id);
        return sd_bus_message_append(reply, "u", g->kfd->drm_render_minor);
}

static int property_get_resetting(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Gpu *g = userdata;

        return sd_bus_message_append(reply, "b", (int) g->resetting);
}

const sd_bus_vtable gpu_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("GpuId", "u", property_get_u32, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("NodeId", "u", property_get_u32, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Target", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Name", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("VramTotal", "t", property_get_vram, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        /* Read from the kernel (AVAILABLE_MEMORY): announced as invalidated, so that publishing a
         * change costs no ioctl; watchers who care read them. */
        SD_BUS_PROPERTY("VramUsed", "t", property_get_vram, 0, SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
        SD_BUS_PROPERTY("VramFree", "t", property_get_vram, 0, SD_BUS_VTABLE_PROPERTY_EMITS_INVALIDATION),
        SD_BUS_PROPERTY("GttUsed", "t", NULL, offsetof(Gpu, gtt_allocated), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("RenderMinor", "u", property_get_u32, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("PciLocation", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Peers", "au", property_get_peers, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Mapped", "t", NULL, offsetof(Gpu, bytes_mapped), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Resetting", "b", property_get_resetting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Resets", "u", NULL, offsetof(Gpu, resets), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END,
};
