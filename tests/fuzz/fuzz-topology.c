/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The KFD sysfs topology parser. The input is a tree in text form:
 *
 *   === nodes/1/properties
 *   gfx_target_version 90402
 *   …
 *   === nodes/1/gpu_id
 *   4369
 *
 * Each "=== PATH" line starts a file (PATH: [a-z0-9_/], no "..", at most 160
 * files); the tree is written into a scratch directory and kfd_topology_load()
 * parses it. The seeds are the emulator's trees of every shipped topology.
 * What it returns must be consistent: ids non-zero and unique, peers of a GPU
 * with itself SELF.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kfd-topology.h"

#define MAX_FILES 160
#define MAX_PATH 96

static bool path_ok(const char *p, size_t n) {
        if (n == 0 || n >= MAX_PATH || p[0] == '/')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = p[i];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '/'))
                        return false;
                if (c == '/' && (i + 1 == n || p[i + 1] == '/'))
                        return false;
        }
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *dir = fuzz_scratch_dir(), *end = (const char *) data + size;
        const char *p = (const char *) data;
        unsigned n_files = 0;
        KfdTopology *t = NULL;
        char *error = NULL;
        int r;

        if (size > 256 * 1024)
                return 0;
        fuzz_clear_dir(dir);

        /* Split into "=== PATH\n" headers and contents. */
        while (p < end && n_files < MAX_FILES) {
                const char *nl, *body, *next;
                char path[MAX_PATH];
                size_t plen;

                if ((size_t) (end - p) < 4 || memcmp(p, "=== ", 4) != 0) {
                        /* skip to the next header */
                        const char *h = memmem(p, (size_t) (end - p), "\n=== ", 5);
                        if (!h)
                                break;
                        p = h + 1;
                        continue;
                }
                nl = memchr(p, '\n', (size_t) (end - p));
                if (!nl)
                        break;
                plen = (size_t) (nl - (p + 4));
                body = nl + 1;
                next = memmem(body, (size_t) (end - body), "\n=== ", 5);
                next = next ? next + 1 : end;
                if (path_ok(p + 4, plen)) {
                        memcpy(path, p + 4, plen);
                        path[plen] = '\0';
                        if (fuzz_write_file(dir, path, body, (size_t) (next - body)) >= 0)
                                n_files++;
                }
                p = next;
        }

        r = kfd_topology_load(&t, dir, &error);
        if (r >= 0) {
                for (size_t i = 0; i < t->n_gpus; i++) {
                        if (t->gpus[i].gpu_id == 0)
                                abort();
                        if (kfd_topology_gpu_index(t, t->gpus[i].gpu_id) != (int) i)
                                abort(); /* duplicate gpu_id */
                        if (kfd_topology_peer_link(t, i, i) != KFD_PEER_LINK_SELF)
                                abort();
                        for (size_t j = 0; j < t->n_gpus; j++)
                                (void) kfd_peer_link_to_string(kfd_topology_peer_link(t, i, j));
                        if (strnlen(t->gpus[i].target, KFD_TARGET_MAX) == KFD_TARGET_MAX ||
                            strnlen(t->gpus[i].name, KFD_GPU_NAME_MAX) == KFD_GPU_NAME_MAX ||
                            strnlen(t->gpus[i].pci_location, KFD_PCI_LOCATION_MAX) == KFD_PCI_LOCATION_MAX)
                                abort(); /* unterminated */
                }
                kfd_topology_free(t);
        } else if (!error)
                abort(); /* every failure names the file */
        free(error);
        return 0;
}
