/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The kernel-contract probe (`svmd --probe`): runs, against whatever /dev/kfd
 * the node has, every kernel behaviour svmd relies on (docs/hardware.md, "The
 * checks"), with scratch allocations it frees, and says for each what it found
 * and what svmd does where the kernel differs.
 *
 * It is its own KFD process (its own /dev/kfd open, its own render-node files
 * for ACQUIRE_VM), so it runs next to a running svmd without touching it.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "macro.h"

typedef enum ProbeStatus {
        PROBE_PASS,             /* the kernel does what svmd expects */
        PROBE_DIFFERS,          /* it does something else (or lacks a feature); svmd copes */
        PROBE_FAIL,             /* svmd cannot run correctly on this kernel */
        PROBE_SKIPPED,          /* not checked; found says why */
        _PROBE_STATUS_MAX,
} ProbeStatus;

typedef enum ProbeCheck {
        PROBE_CHECK_INTERFACE_VERSION,
        PROBE_CHECK_GPUS,
        PROBE_CHECK_ACQUIRE_VM,
        PROBE_CHECK_AVAILABLE_MEMORY,
        PROBE_CHECK_MAP_RESTART,
        PROBE_CHECK_MAP_MAPPED,
        PROBE_CHECK_UNMAP_UNMAPPED,
        PROBE_CHECK_FREE_MAPPED,
        PROBE_CHECK_HANDLE_REUSE,
        PROBE_CHECK_DMABUF,
        PROBE_CHECK_SVM_ATTRIBUTES,
        PROBE_CHECK_XNACK,
        PROBE_CHECK_SECONDARY_CONTEXT,
        PROBE_CHECK_SMI_EVENTS,
        PROBE_CHECK_CLEANUP,
        _PROBE_CHECK_MAX,
} ProbeCheck;

typedef struct ProbeResult {
        const char *name;       /* probe_check_to_string() */
        ProbeStatus status;
        char *found;            /* what the kernel did, one or more sentences */
        char *svmd;             /* what svmd does about it */
} ProbeResult;

typedef struct ProbeReport {
        uint32_t kfd_major;
        uint32_t kfd_minor;
        bool have_version;
        ProbeResult results[_PROBE_CHECK_MAX];
} ProbeReport;

/* Run every check. Fails only for out-of-memory; kernel failures are results. */
int probe_run(ProbeReport **ret);
ProbeReport *probe_report_free(ProbeReport *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(ProbeReport *, probe_report_free);

/* True when no check failed: svmd can run correctly on this kernel. */
bool probe_report_svmd_can_run(const ProbeReport *r);

void probe_report_print(const ProbeReport *r, FILE *f);
int probe_report_to_json(const ProbeReport *r, json_t **ret);

const char *probe_status_to_string(ProbeStatus s);
const char *probe_check_to_string(ProbeCheck c);
