/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * A minimal libsvmd client: list the GPUs, allocate 64 MiB of VRAM on the
 * first one mapped to every GPU in one all-or-nothing call, print where it
 * lives, free it. Build it with
 *
 *         cc svmd-alloc.c $(pkg-config --cflags --libs libsvmd) -o svmd-alloc
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <svmd/svmd.h>

int main(void) {
        svmd_error error = SVMD_ERROR_NULL;
        svmd_client *client = NULL;
        svmd_allocation a;
        svmd_gpu *gpus = NULL;
        uint32_t ids[SVMD_MAX_GPUS];
        size_t n = 0;
        int r;

        /* The system bus, or $SVMD_BUS_ADDRESS; io.socket for the hot path when reachable. */
        r = svmd_client_new(&client, NULL, NULL, 0, &error);
        if (r < 0)
                goto fail;

        r = svmd_list_gpus(client, &gpus, &n, &error);
        if (r < 0)
                goto fail;
        if (n == 0) {
                fprintf(stderr, "This node has no GPUs.\n");
                goto out;
        }
        for (size_t i = 0; i < n && i < SVMD_MAX_GPUS; i++) {
                printf("GPU 0x%x: %s (%s), %" PRIu64 " MiB VRAM free\n", gpus[i].gpu_id, gpus[i].name,
                       gpus[i].target, gpus[i].vram_free >> 20);
                ids[i] = gpus[i].gpu_id;
        }

        r = svmd_allocate(client, UINT64_C(64) << 20, ids[0], "vram",
                          &(svmd_allocate_options) { .map = ids, .n_map = n, .label = "example" }, &a, &error);
        if (r < 0)
                goto fail;
        printf("Range %" PRIu64 " at 0x%" PRIx64 ", the same address on all %zu GPUs.\n", a.id, a.va, n);

        r = svmd_free(client, a.id, &error);
        if (r < 0)
                goto fail;
out:
        free(gpus);
        svmd_client_free(client);
        return EXIT_SUCCESS;

fail:
        /* error.name says what kind of failure it was, error.message what to do about it. */
        fprintf(stderr, "svmd-alloc: %s (%s)\n", error.message ? error.message : strerror(-r),
                error.name ? error.name : "-");
        svmd_error_free(&error);
        free(gpus);
        svmd_client_free(client);
        return EXIT_FAILURE;
}
