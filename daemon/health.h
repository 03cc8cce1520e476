/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * GPU health: svmd watches every GPU through the kernel's SMI events
 * (AMDKFD_IOC_SMI_EVENTS, interface 1.3+) and acts on what concerns its
 * ranges and tenants (docs/architecture.md, "GPU health"):
 *
 *   - a GPU reset: the VRAM contents of that GPU are gone. Its VRAM ranges
 *     become "contents-lost" (the reason in StateReason) and their owners and
 *     holders get ContentsLost; new allocations and maps on that GPU are
 *     refused with GpuResetting until the post-reset event. Reuse() ends the
 *     state for a range its owner will overwrite.
 *   - a VM fault: the kernel names the faulting process (pid and task name,
 *     no address); the subscribed clients whose connection comes from that
 *     process get VmFault, nobody else. Faults of other processes are logged.
 *   - thermal throttling: logged.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

#include "macro.h"

typedef struct Manager Manager;
typedef struct Health Health;
typedef struct Gpu Gpu;
typedef struct Range Range;

/* The events svmd asks for (KFD_SMI_EVENT_MASK_FROM_INDEX of each). */
#define HEALTH_SMI_VMFAULT          1
#define HEALTH_SMI_THERMAL_THROTTLE 2
#define HEALTH_SMI_GPU_PRE_RESET    3
#define HEALTH_SMI_GPU_POST_RESET   4

/* One line of an SMI listener, parsed (the formats of kfd_smi_events.c). */
typedef struct SmiEvent {
        unsigned event;         /* KFD_SMI_EVENT_* */
        uint32_t seq;           /* resets: reset_seq_num */
        pid_t pid;              /* VM fault: the faulting task */
        char text[96];          /* resets: the cause ("" when none); VM fault: the task name */
        uint64_t a, b;          /* thermal throttle: bitmask, counter */
} SmiEvent;

/* Parse one line without its '\n'. -EINVAL: not in the kernel's format; -EOPNOTSUPP: another event. */
int smi_event_parse(const char *line, SmiEvent *ret);

/* Open a listener on every GPU (a kernel without SMI events: logged, nothing watched). */
int health_start(Manager *m);
Health *health_free(Health *h);
DEFINE_TRIVIAL_CLEANUP_FUNC(Health *, health_free);

/* Feed one event as if it came from GPU g's listener (the SMI path and the unit tests). */
void health_handle_event(Manager *m, Gpu *g, const SmiEvent *ev);

/* A GPU of mask is between pre- and post-reset: GpuResetting with the first such GPU, else 0. */
int health_check_gpus(Manager *m, uint64_t mask, const char *what, sd_bus_error *error);

/* The range's VRAM contents went with a reset of its GPU (range->lost_reason is set). */
bool range_contents_lost(const Range *range);

/* org.svmd1.Manager.Reuse(t id): the owner ends a range's contents-lost state. */
int method_reuse(sd_bus_message *msg, void *userdata, sd_bus_error *error);
