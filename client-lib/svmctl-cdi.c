/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The CDI spec of svmd's GPUs (docs/containers.md). A container given any of them gets svmd's
 * runtime directory (io.socket) read-only at the path libsvmd looks in, SVMD_DIRECT_ONLY=1 (it has
 * no system bus) and /dev/kfd; each GPU adds its render node and SVMD_VISIBLE_GPU_<id>, which
 * libsvmd's svmd_list_gpus() reads. Nothing here is a permission: svmd identifies a container's
 * process by its peer credentials and cgroup, as any other caller.
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "macro.h"
#include "svmctl-cdi.h"

/* The node as the container runtime sees it: a character device, or nothing to pass on. */
static int device_node(const CdiOptions *o, const char *path, json_t *nodes) {
        struct stat st;

        if (o->no_device_nodes)
                return 0;
        if (stat(path, &st) < 0 || !S_ISCHR(st.st_mode)) {
                if (o->require_device_nodes)
                        fprintf(stderr, "svmctl: %s is not a character device on this host; a container runtime "
                                "cannot pass it on.\n", path);
                else
                        fprintf(stderr, "svmctl: %s is not a character device on this host, left out of the spec "
                                "(containers cannot use svmd_attach_local() without it).\n", path);
                return o->require_device_nodes ? -ENOENT : 0;
        }
        return json_array_append_new(nodes, json_pack("{s:s}", "path", path)) < 0 ? -ENOMEM : 0;
}

static int gpu_edits(const CdiOptions *o, const svmd_gpu *g, json_t *env, json_t *nodes) {
        char path[64];

        snprintf(path, sizeof(path), "/dev/dri/renderD%u", g->render_minor);
        if (json_array_append_new(env, json_sprintf("SVMD_VISIBLE_GPU_0x%x=0x%x", g->gpu_id, g->gpu_id)) < 0)
                return -ENOMEM;
        return device_node(o, path, nodes);
}

static json_t *device_new(const char *name, json_t *env, json_t *nodes) {
        json_t *edits = json_pack("{s:o}", "env", env);

        if (edits && json_array_size(nodes) > 0)
                json_object_set(edits, "deviceNodes", nodes);
        json_decref(nodes);
        return edits ? json_pack("{s:s,s:o}", "name", name, "containerEdits", edits) : NULL;
}

int cdi_spec_new(const svmd_gpu *gpus, size_t n, const CdiOptions *o, json_t **ret) {
        json_auto_t *devices = json_array(), *all_env = json_array(), *all_nodes = json_array(),
                    *common_nodes = json_array(), *spec = NULL;
        _cleanup_free_ char *runtime_env = NULL;
        int r;

        if (!devices || !all_env || !all_nodes || !common_nodes)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_t *env = json_array(), *nodes = json_array(), *dev;
                char name[16];

                if (!env || !nodes) {
                        json_decref(env);
                        json_decref(nodes);
                        return -ENOMEM;
                }
                r = gpu_edits(o, &gpus[i], env, nodes);
                if (r >= 0)
                        r = json_array_extend(all_env, env) < 0 || json_array_extend(all_nodes, nodes) < 0 ? -ENOMEM : 0;
                if (r < 0) {
                        json_decref(env);
                        json_decref(nodes);
                        return r;
                }
                snprintf(name, sizeof(name), "0x%x", gpus[i].gpu_id);
                dev = device_new(name, env, nodes);
                if (!dev || json_array_append_new(devices, dev) < 0)
                        return -ENOMEM;
        }
        if (n > 0) {
                json_t *dev = device_new("all", json_incref(all_env), json_incref(all_nodes));

                if (!dev || json_array_append_new(devices, dev) < 0)
                        return -ENOMEM;
        }

        r = device_node(o, "/dev/kfd", common_nodes);
        if (r < 0)
                return r;
        if (asprintf(&runtime_env, "SVMD_RUNTIME_DIR=%s", SVMD_RUNTIME_DIR) < 0)
                return -ENOMEM;
        spec = json_pack("{s:s,s:s,s:O,s:{s:[s,s],s:[{s:s,s:s,s:[s,s,s,s,s]}]}}", "cdiVersion", CDI_VERSION,
                         "kind", CDI_KIND, "devices", devices, "containerEdits", "env", runtime_env,
                         "SVMD_DIRECT_ONLY=1", "mounts", "hostPath", o->runtime_dir, "containerPath",
                         SVMD_RUNTIME_DIR, "options", "rbind", "ro", "nosuid", "nodev", "noexec");
        if (!spec)
                return -ENOMEM;
        if (json_array_size(common_nodes) > 0 &&
            json_object_set(json_object_get(spec, "containerEdits"), "deviceNodes", common_nodes) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(spec);
        return 0;
}
