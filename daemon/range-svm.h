/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * svm ranges: a daemon-owned memfd mapped at the range's VA and registered
 * with AMDKFD_IOC_SVM attributes — preferred and prefetch location, access
 * per GPU, flags, migration granularity. There is no KFD buffer; "mapped to a
 * GPU" means the GPU has ACCESS or ACCESS_IN_PLACE.
 *
 * The kernel's SET_ATTR applies attributes one by one and keeps what it
 * applied when a later one fails. Every change here is therefore a step of
 * the range's transaction: read all attributes (GET_ATTR), record an undo that
 * sets all of them back and reads them again to prove it, then SET. The
 * daemon always lists every attribute explicitly for every GPU, so what it
 * keeps in RangeSvm.attrs is the kernel's exact state.
 */

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <systemd/sd-bus.h>

#include "kfd-svm.h"

typedef struct Manager Manager;
typedef struct Range Range;
typedef struct Transaction Transaction;
typedef struct RangeSvm RangeSvm;

struct RangeSvm {
        KfdSvmAttrs attrs;      /* the kernel's state; every GPU of the node listed, in index order */
        KfdSvmAttrs want;       /* degraded: what repair restores */
};

/* HSA_CAP_SVMAPI_SUPPORTED: the GPU takes part in SVM. */
bool gpu_svm_capable(Manager *m, uint32_t index);

/* What a new svm range gets unless told otherwise: no preferred GPU (or `preferred`),
 * prefetch to system memory, the kernel's default flags and granularity, no GPU access. */
void svm_attrs_initial(Manager *m, uint32_t preferred, KfdSvmAttrs *ret);

/* GPUs (bit = Gpu.index) with ACCESS or ACCESS_IN_PLACE. */
uint64_t svm_attrs_mask(Manager *m, const KfdSvmAttrs *a);

/* The SvmAttributes property / journal shape. */
int svm_attrs_append(sd_bus_message *reply, const KfdSvmAttrs *a);
json_t *svm_attrs_to_json(const KfdSvmAttrs *a);
/* -EBADMSG when malformed or giving access to GPUs this node lacks; 1 when a location named such a
 * GPU and was reset (preferred: none, prefetch: system memory); 0 otherwise. */
int svm_attrs_from_json(Manager *m, json_t *j, KfdSvmAttrs *ret);

/*
 * Steps. range_svm_setup registers a just-mapped range with its initial
 * attributes (undone by dropping the window mapping, which drops the kernel's
 * range). range_svm_change applies list[0..n) as described above.
 */
int range_svm_setup(Transaction *t, Range *range, const KfdSvmAttrs *initial, sd_bus_error *error);
int range_svm_change(Transaction *t, Range *range, const struct kfd_ioctl_svm_attribute *list, uint32_t n,
                     sd_bus_error *error);

/* Access changes as lists: ACCESS (map) or NO_ACCESS (unmap) for the GPUs in mask. */
uint32_t svm_access_list(Manager *m, uint64_t mask, uint32_t type, struct kfd_ioctl_svm_attribute *out);

/* Degraded: set every attribute to want again. 0 when done. */
int range_svm_repair(Range *range);

RangeSvm *range_svm_new(void);
