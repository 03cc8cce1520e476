/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * svmctl cdi generate: the Container Device Interface spec that hands svmd's GPUs to
 * containers (docs/containers.md).
 */

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "svmd/svmd.h"

#define CDI_KIND "svmd.io/gpu"
/* The lowest CDI version with every field the spec uses (env, deviceNodes by path, mounts with options). */
#define CDI_VERSION "0.3.0"

typedef struct CdiOptions {
        const char *runtime_dir;        /* svmd's, on the host: mounted at SVMD_RUNTIME_DIR in the container */
        bool require_device_nodes;      /* a missing device node is an error, not a warning */
        bool no_device_nodes;           /* the socket only: svmd stays the only way to GPU memory */
} CdiOptions;

/*
 * The spec for gpus[0..n): one device per GPU, named by its id ("0x3a1f"), and "all".
 * Device nodes that are not character devices here (an emulated node's) are left out with a
 * warning on stderr, or are an error (-ENOENT) with o->require_device_nodes.
 */
int cdi_spec_new(const svmd_gpu *gpus, size_t n, const CdiOptions *o, json_t **ret);
