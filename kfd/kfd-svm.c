/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <string.h>

#include "kfd-ioctl.h"
#include "kfd-svm.h"
#include "macro.h"

#ifndef KFD_IOCTL_SVM_FLAG_EXT_COHERENT
#define KFD_IOCTL_SVM_FLAG_EXT_COHERENT 0x00000080
#endif

static const struct {
        uint32_t flag;
        const char *name;
} svm_flag_table[] = {
        { KFD_IOCTL_SVM_FLAG_HOST_ACCESS,       "host-access" },
        { KFD_IOCTL_SVM_FLAG_COHERENT,          "coherent" },
        { KFD_IOCTL_SVM_FLAG_HIVE_LOCAL,        "hive-local" },
        { KFD_IOCTL_SVM_FLAG_GPU_RO,            "gpu-ro" },
        { KFD_IOCTL_SVM_FLAG_GPU_EXEC,          "gpu-exec" },
        { KFD_IOCTL_SVM_FLAG_GPU_READ_MOSTLY,   "gpu-read-mostly" },
        { KFD_IOCTL_SVM_FLAG_GPU_ALWAYS_MAPPED, "gpu-always-mapped" },
        { KFD_IOCTL_SVM_FLAG_EXT_COHERENT,      "ext-coherent" },
};

const char *kfd_svm_flag_to_string(uint32_t flag) {
        for (size_t i = 0; i < ELEMENTSOF(svm_flag_table); i++)
                if (svm_flag_table[i].flag == flag)
                        return svm_flag_table[i].name;
        return NULL;
}

int kfd_svm_flag_from_string(const char *s, uint32_t *ret) {
        for (size_t i = 0; i < ELEMENTSOF(svm_flag_table); i++)
                if (streq(svm_flag_table[i].name, s)) {
                        *ret = svm_flag_table[i].flag;
                        return 0;
                }
        return -EINVAL;
}

const char *kfd_svm_access_to_string(uint32_t type) {
        switch (type) {
        case KFD_IOCTL_SVM_ATTR_ACCESS:
                return "access";
        case KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE:
                return "in-place";
        case KFD_IOCTL_SVM_ATTR_NO_ACCESS:
                return "none";
        default:
                return NULL;
        }
}

static int find_gpu(const KfdSvmAttrs *a, uint32_t gpu_id) {
        for (uint32_t i = 0; i < a->n_gpus; i++)
                if (a->gpu_ids[i] == gpu_id)
                        return (int) i;
        return -1;
}

uint32_t kfd_svm_attrs_access(const KfdSvmAttrs *a, uint32_t gpu_id) {
        int i = find_gpu(a, gpu_id);

        return i < 0 ? KFD_IOCTL_SVM_ATTR_NO_ACCESS : a->access[i];
}

int kfd_svm_attrs_get(int kfd_fd, uint64_t va, uint64_t size, const uint32_t *gpu_ids, uint32_t n,
                      KfdSvmAttrs *ret) {
        struct kfd_ioctl_svm_attribute q[KFD_SVM_ATTRS_MAX];
        uint32_t nq = 0;
        int r;

        if (n > KFD_SVM_MAX_GPUS || (n > 0 && !gpu_ids) || !ret)
                return -EINVAL;

        q[nq++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0 };
        q[nq++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, 0 };
        q[nq++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_SET_FLAGS, 0 };
        q[nq++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_GRANULARITY, 0 };
        for (uint32_t i = 0; i < n; i++)
                q[nq++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_ACCESS, gpu_ids[i] };

        r = kfd_svm_get(kfd_fd, va, size, q, nq);
        if (r < 0)
                return r;

        /* SET_FLAGS answers with the flags set on every page: the range's flags when it is one range. */
        *ret = (KfdSvmAttrs) {
                .preferred_loc = q[0].value,
                .prefetch_loc = q[1].value,
                .flags = q[2].value,
                .granularity = q[3].value,
                .n_gpus = n,
        };
        for (uint32_t i = 0; i < n; i++) {
                ret->gpu_ids[i] = gpu_ids[i];
                ret->access[i] = q[4 + i].type; /* the kernel rewrites the type, not the value */
        }
        return 0;
}

uint32_t kfd_svm_attrs_to_list(const KfdSvmAttrs *a, struct kfd_ioctl_svm_attribute *out) {
        uint32_t n = 0;

        out[n++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, a->preferred_loc };
        /* svm_range_check_attr() takes a GPU or system memory here, never "undefined". */
        if (a->prefetch_loc != KFD_IOCTL_SVM_LOCATION_UNDEFINED)
                out[n++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, a->prefetch_loc };
        out[n++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_SET_FLAGS, a->flags };
        out[n++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_CLR_FLAGS, ~a->flags };
        out[n++] = (struct kfd_ioctl_svm_attribute) { KFD_IOCTL_SVM_ATTR_GRANULARITY, a->granularity };
        for (uint32_t i = 0; i < a->n_gpus; i++)
                out[n++] = (struct kfd_ioctl_svm_attribute) { a->access[i], a->gpu_ids[i] };
        return n;
}

static void set_access(KfdSvmAttrs *a, uint32_t gpu_id, uint32_t type) {
        int i = find_gpu(a, gpu_id);

        if (i >= 0) {
                a->access[i] = type;
                return;
        }
        if (a->n_gpus < KFD_SVM_MAX_GPUS) {
                a->gpu_ids[a->n_gpus] = gpu_id;
                a->access[a->n_gpus++] = type;
        }
}

void kfd_svm_attrs_apply(KfdSvmAttrs *a, const struct kfd_ioctl_svm_attribute *attrs, uint32_t n) {
        for (uint32_t i = 0; i < n; i++)
                switch (attrs[i].type) {
                case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC:
                        a->preferred_loc = attrs[i].value;
                        break;
                case KFD_IOCTL_SVM_ATTR_PREFETCH_LOC:
                        a->prefetch_loc = attrs[i].value;
                        break;
                case KFD_IOCTL_SVM_ATTR_ACCESS:
                case KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE:
                case KFD_IOCTL_SVM_ATTR_NO_ACCESS:
                        set_access(a, attrs[i].value, attrs[i].type);
                        break;
                case KFD_IOCTL_SVM_ATTR_SET_FLAGS:
                        a->flags |= attrs[i].value;
                        break;
                case KFD_IOCTL_SVM_ATTR_CLR_FLAGS:
                        a->flags &= ~attrs[i].value;
                        break;
                case KFD_IOCTL_SVM_ATTR_GRANULARITY:
                        a->granularity = MIN(attrs[i].value, KFD_SVM_GRANULARITY_MAX);
                        break;
                default:
                        break;
                }
}

bool kfd_svm_attrs_equal(const KfdSvmAttrs *a, const KfdSvmAttrs *b) {
        if (a->preferred_loc != b->preferred_loc || a->prefetch_loc != b->prefetch_loc || a->flags != b->flags ||
            a->granularity != b->granularity)
                return false;
        /* Per GPU, whatever order they are listed in; unlisted means no access. */
        for (uint32_t i = 0; i < a->n_gpus; i++)
                if (kfd_svm_attrs_access(b, a->gpu_ids[i]) != a->access[i])
                        return false;
        for (uint32_t i = 0; i < b->n_gpus; i++)
                if (kfd_svm_attrs_access(a, b->gpu_ids[i]) != b->access[i])
                        return false;
        return true;
}

int kfd_svm_attrs_restore(int kfd_fd, uint64_t va, uint64_t size, const KfdSvmAttrs *want) {
        struct kfd_ioctl_svm_attribute list[KFD_SVM_ATTRS_MAX];
        KfdSvmAttrs now;
        uint32_t n;
        int r;

        n = kfd_svm_attrs_to_list(want, list);
        r = kfd_svm_set(kfd_fd, va, size, list, n);
        if (r < 0)
                return r;

        /* The kernel gives no guarantee that a SET applied everything: ask. */
        r = kfd_svm_attrs_get(kfd_fd, va, size, want->gpu_ids, want->n_gpus, &now);
        if (r < 0)
                return r;
        /* An undefined prefetch location cannot be set again (see kfd_svm_attrs_to_list): whatever is there stays. */
        if (want->prefetch_loc == KFD_IOCTL_SVM_LOCATION_UNDEFINED)
                now.prefetch_loc = want->prefetch_loc;
        return kfd_svm_attrs_equal(&now, want) ? 0 : -ENOTRECOVERABLE;
}
