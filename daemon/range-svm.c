/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "gpu.h"
#include "kfd-ioctl.h"
#include "manager.h"
#include "range-svm.h"
#include "range.h"
#include "size-util.h"
#include "svmd-protocol.h"
#include "transaction.h"

/* svm_range_set_default_attributes: host access and coherent; 2 MiB migration granularity. */
#define SVM_DEFAULT_FLAGS (KFD_IOCTL_SVM_FLAG_HOST_ACCESS | KFD_IOCTL_SVM_FLAG_COHERENT)
#define SVM_DEFAULT_GRANULARITY 9U

RangeSvm *range_svm_new(void) {
        return calloc(1, sizeof(RangeSvm));
}

bool gpu_svm_capable(Manager *m, uint32_t index) {
        return index < m->n_gpus && (m->gpus[index]->kfd->capability & KFD_SVM_CAP_SUPPORTED);
}

void svm_attrs_initial(Manager *m, uint32_t preferred, KfdSvmAttrs *ret) {
        *ret = (KfdSvmAttrs) {
                .preferred_loc = preferred,
                .prefetch_loc = KFD_IOCTL_SVM_LOCATION_SYSMEM,
                .flags = SVM_DEFAULT_FLAGS,
                .granularity = SVM_DEFAULT_GRANULARITY,
        };
        /* svm_range_check_attr() refuses any attribute naming a GPU without SVM, NO_ACCESS too: list only the others. */
        for (size_t i = 0; i < m->n_gpus && ret->n_gpus < KFD_SVM_MAX_GPUS; i++)
                if (gpu_svm_capable(m, (uint32_t) i)) {
                        ret->gpu_ids[ret->n_gpus] = m->gpus[i]->gpu_id;
                        ret->access[ret->n_gpus++] = KFD_IOCTL_SVM_ATTR_NO_ACCESS;
                }
}

uint64_t svm_attrs_mask(Manager *m, const KfdSvmAttrs *a) {
        uint64_t mask = 0;

        for (uint32_t i = 0; i < a->n_gpus; i++) {
                Gpu *g;

                if (a->access[i] == KFD_IOCTL_SVM_ATTR_NO_ACCESS)
                        continue;
                g = manager_find_gpu(m, a->gpu_ids[i]);
                if (g)
                        mask |= UINT64_C(1) << g->index;
        }
        return mask;
}

uint32_t svm_access_list(Manager *m, uint64_t mask, uint32_t type, struct kfd_ioctl_svm_attribute *out) {
        uint32_t n = 0;
        Gpu *g;

        FOREACH_GPU_IN_MASK(g, m, mask)
                if (n < KFD_SVM_MAX_GPUS)
                        out[n++] = (struct kfd_ioctl_svm_attribute) { type, g->gpu_id };
        return n;
}

/* ---- the property and the journal ---- */

/* {key: variant of `contents`}: open here, the value appended by the caller, closed by close_entry(). */
static int open_entry(sd_bus_message *reply, const char *key, const char *contents) {
        int r;

        r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "s", key);
        if (r < 0)
                return r;
        return sd_bus_message_open_container(reply, 'v', contents);
}

static int close_entry(sd_bus_message *reply) {
        int r;

        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

static int append_gpus(sd_bus_message *reply, const char *key, const KfdSvmAttrs *a, uint32_t type) {
        uint32_t ids[KFD_SVM_MAX_GPUS];
        size_t n = 0;
        int r;

        for (uint32_t i = 0; i < a->n_gpus; i++)
                if (a->access[i] == type)
                        ids[n++] = a->gpu_ids[i];
        r = open_entry(reply, key, "au");
        if (r < 0)
                return r;
        r = sd_bus_message_append_array(reply, 'u', ids, n * sizeof(uint32_t));
        if (r < 0)
                return r;
        return close_entry(reply);
}

static int append_flags(sd_bus_message *reply, const char *key, uint32_t flags) {
        const char *names[33];
        size_t n = 0;
        int r;

        for (uint32_t bit = 1; bit != 0; bit <<= 1)
                if ((flags & bit) && kfd_svm_flag_to_string(bit))
                        names[n++] = kfd_svm_flag_to_string(bit);
        names[n] = NULL;
        r = open_entry(reply, key, "as");
        if (r < 0)
                return r;
        r = sd_bus_message_append_strv(reply, (char **) names);
        if (r < 0)
                return r;
        return close_entry(reply);
}

int svm_attrs_append(sd_bus_message *reply, const KfdSvmAttrs *a) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        if (a) {
                r = sd_bus_message_append(reply, "{sv}{sv}{sv}", SVMD_OPT_SVM_PREFERRED, "u", a->preferred_loc,
                                          SVMD_OPT_SVM_PREFETCH, "u", a->prefetch_loc, SVMD_OPT_SVM_GRANULARITY, "u",
                                          a->granularity);
                if (r < 0)
                        return r;
                r = append_flags(reply, SVMD_OPT_SVM_FLAGS, a->flags);
                if (r < 0)
                        return r;
                r = append_gpus(reply, SVMD_OPT_SVM_ACCESS, a, KFD_IOCTL_SVM_ATTR_ACCESS);
                if (r < 0)
                        return r;
                r = append_gpus(reply, SVMD_OPT_SVM_ACCESS_IN_PLACE, a, KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static json_t *gpus_json(const KfdSvmAttrs *a, uint32_t type) {
        json_t *arr = json_array();

        for (uint32_t i = 0; arr && i < a->n_gpus; i++)
                if (a->access[i] == type && json_array_append_new(arr, json_integer(a->gpu_ids[i])) < 0) {
                        json_decref(arr);
                        return NULL;
                }
        return arr;
}

json_t *svm_attrs_to_json(const KfdSvmAttrs *a) {
        /* Unknown flag bits stay bits: the journal keeps exactly what the kernel has. */
        return json_pack("{sIsIsIsIsososo}",
                         "preferred", (json_int_t) a->preferred_loc,
                         "prefetch", (json_int_t) a->prefetch_loc,
                         "flags", (json_int_t) a->flags,
                         "granularity", (json_int_t) a->granularity,
                         "access", gpus_json(a, KFD_IOCTL_SVM_ATTR_ACCESS),
                         "access-in-place", gpus_json(a, KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE),
                         "no-access", gpus_json(a, KFD_IOCTL_SVM_ATTR_NO_ACCESS));
}

static int json_u32(json_t *o, const char *key, uint32_t *ret) {
        json_t *v = json_object_get(o, key);

        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX)
                return -EBADMSG;
        *ret = (uint32_t) json_integer_value(v);
        return 0;
}

static int gpus_from_json(json_t *arr, uint32_t type, KfdSvmAttrs *a) {
        size_t i, k;
        json_t *e;

        if (arr && !json_is_array(arr))
                return -EBADMSG;
        json_array_foreach(arr, i, e) {
                /* Only the node's SVM GPUs are listed in a. */
                for (k = 0; k < a->n_gpus; k++)
                        if (json_is_integer(e) && json_integer_value(e) == (json_int_t) a->gpu_ids[k])
                                break;
                if (k == a->n_gpus)
                        return -EBADMSG;
                a->access[k] = type;
        }
        return 0;
}

/* A location the kernel would refuse on this node: not system memory and no SVM GPU of it. */
static bool location_stale(Manager *m, uint32_t loc, bool undefined_ok) {
        Gpu *g;

        if (loc == KFD_IOCTL_SVM_LOCATION_SYSMEM || (undefined_ok && loc == KFD_IOCTL_SVM_LOCATION_UNDEFINED))
                return false;
        g = manager_find_gpu(m, loc);
        return !g || !gpu_svm_capable(m, g->index);
}

int svm_attrs_from_json(Manager *m, json_t *j, KfdSvmAttrs *ret) {
        KfdSvmAttrs a;
        int stale = 0;

        if (!json_is_object(j))
                return -EBADMSG;
        svm_attrs_initial(m, KFD_IOCTL_SVM_LOCATION_UNDEFINED, &a);
        if (json_u32(j, "preferred", &a.preferred_loc) < 0 || json_u32(j, "prefetch", &a.prefetch_loc) < 0 ||
            json_u32(j, "flags", &a.flags) < 0 || json_u32(j, "granularity", &a.granularity) < 0 ||
            a.granularity > KFD_SVM_GRANULARITY_MAX ||
            gpus_from_json(json_object_get(j, "access"), KFD_IOCTL_SVM_ATTR_ACCESS, &a) < 0 ||
            gpus_from_json(json_object_get(j, "access-in-place"), KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE, &a) < 0)
                return -EBADMSG;
        /* Locations are hints: one on a GPU the node no longer has is dropped, not the range with it. */
        if (location_stale(m, a.preferred_loc, true)) {
                a.preferred_loc = KFD_IOCTL_SVM_LOCATION_UNDEFINED;
                stale = 1;
        }
        if (location_stale(m, a.prefetch_loc, false)) {
                a.prefetch_loc = KFD_IOCTL_SVM_LOCATION_SYSMEM;
                stale = 1;
        }
        *ret = a;
        return stale;
}

/* ---- steps ---- */

/* Take a in as the kernel's state: the cache, the mapping mask and the bytes mapped per GPU. */
static void svm_adopt(Range *range, const KfdSvmAttrs *a) {
        uint64_t before = range->pieces[0].mapped, after = svm_attrs_mask(range->manager, a);

        range_account_mapping(range, before & ~after, -1);
        range_account_mapping(range, after & ~before, +1);
        range->pieces[0].mapped = after;
        range_svm(range)->attrs = *a;
}

typedef struct SvmUndo {
        Transaction *t;         /* whose rollback runs it */
        Range *range;
        KfdSvmAttrs before;
} SvmUndo;

static int undo_svm_setup(void *userdata) {
        SvmUndo *u = userdata;
        KfdSvmAttrs none;

        if (u->range->rollback_failed)
                return 0;
        /* The kernel forgets the range when its window mapping goes (the next undo); only our books. */
        svm_attrs_initial(u->range->manager, KFD_IOCTL_SVM_LOCATION_UNDEFINED, &none);
        svm_adopt(u->range, &none);
        return 0;
}

static int undo_svm_change(void *userdata) {
        SvmUndo *u = userdata;
        Range *range = u->range;
        int r;

        if (range->rollback_failed)
                return 0;
        r = kfd_svm_attrs_restore(range_kfd_fd(range), range_va(range), range_size(range), &u->before);
        if (r < 0) {
                /* The ioctl layer restarted interruptions already: whatever is left is a failure. */
                transaction_rollback_failed(u->t, range, r, 0);
                return r;
        }
        svm_adopt(range, &u->before);
        return 0;
}

/* Records the undo u reserved before its step (docs/architecture.md, "The undo log"); takes u over. */
_printf_(6, 0)
static int add_svm_undo(Transaction *t, TxnUndoFunc f, SvmUndo *u, Range *range, const KfdSvmAttrs *before,
                        const char *format) {
        assert(u);

        u->t = t;
        u->range = range;
        u->before = *before;
        return txn_add_undo(t->txn, f, u, free, format, range->id);
}

int range_svm_setup(Transaction *t, Range *range, const KfdSvmAttrs *initial, sd_bus_error *error) {
        struct kfd_ioctl_svm_attribute list[KFD_SVM_ATTRS_MAX];
        _cleanup_free_ SvmUndo *u = NULL;
        uint32_t n;
        int r;

        u = new(SvmUndo, 1);
        if (!u)
                return -ENOMEM;
        n = kfd_svm_attrs_to_list(initial, list);
        r = kfd_svm_set(range_kfd_fd(range), range_va(range), range_size(range), list, n);
        if (r < 0) {
                (void) txn_fail(t->txn, r, 0, "registering range %" PRIu64 " (%s at 0x%" PRIx64 ") for SVM", range->id,
                                FORMAT_BYTES(range_size(range)), range_va(range));
                return transaction_set_kernel_error(t, r, error);
        }
        svm_adopt(range, initial);
        return add_svm_undo(t, undo_svm_setup, TAKE_PTR(u), range, initial, "forget the SVM attributes of range %" PRIu64);
}

int range_svm_change(Transaction *t, Range *range, const struct kfd_ioctl_svm_attribute *list, uint32_t n,
                     sd_bus_error *error) {
        _cleanup_free_ SvmUndo *u = NULL;
        KfdSvmAttrs now;
        int r;

        if (n == 0)
                return 0;
        r = transaction_touch(t, range, false);
        if (r < 0)
                return r;
        u = new(SvmUndo, 1);
        if (!u)
                return -ENOMEM;

        /* The prior state from the kernel itself: that is what an undo restores. */
        r = kfd_svm_attrs_get(range_kfd_fd(range), range_va(range), range_size(range), range_svm(range)->attrs.gpu_ids,
                              range_svm(range)->attrs.n_gpus, &now);
        if (r < 0) {
                (void) txn_fail(t->txn, r, 0, "reading the SVM attributes of range %" PRIu64, range->id);
                return transaction_set_kernel_error(t, r, error);
        }
        svm_adopt(range, &now);
        r = add_svm_undo(t, undo_svm_change, TAKE_PTR(u), range, &now, "restore the SVM attributes of range %" PRIu64);
        if (r < 0)
                return r;

        r = kfd_svm_set(range_kfd_fd(range), range_va(range), range_size(range), list, n);
        if (r < 0) {
                /* Some attributes may be in place now; the undo puts back all of them. */
                (void) txn_fail(t->txn, r, 0, "setting the SVM attributes of range %" PRIu64, range->id);
                return transaction_set_kernel_error(t, r, error);
        }
        kfd_svm_attrs_apply(&now, list, n);
        svm_adopt(range, &now);
        return 0;
}

int range_svm_repair(Range *range) {
        int r;

        r = kfd_svm_attrs_restore(range_kfd_fd(range), range_va(range), range_size(range), &range_svm(range)->want);
        if (r < 0)
                return r;
        svm_adopt(range, &range_svm(range)->want);
        return 0;
}
