/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * AMDKFD_IOC_SVM: per-context attribute intervals (kfd_svm.c svm_range_*).
 * Only the attribute bookkeeping is emulated — there is no migration — but
 * the checks, the splitting of ranges and the GET aggregation follow the
 * kernel, including that SET is not transactional.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu-arena.h"
#include "macro.h"

/* svm_default_granularity: log2 of 2 MiB in pages. */
#define EMU_SVM_DEFAULT_GRANULARITY 9
#define EMU_SVM_DEFAULT_FLAGS (KFD_IOCTL_SVM_FLAG_HOST_ACCESS | KFD_IOCTL_SVM_FLAG_COHERENT)

static uint32_t supported_mask(EmuKernel *k) {
        uint32_t m = 0;

        /* svms->bitmap_supported: the GPUs that can do SVM. */
        for (uint32_t g = 0; g < k->a->n_gpus; g++)
                if (k->a->gpus[g].svm_capable)
                        m |= UINT32_C(1) << g;
        return m;
}

static EmuSvmRange default_range(EmuKernel *k, uint32_t proc, uint64_t start, uint64_t end) {
        /* svm_range_new → svm_range_set_default_attributes. */
        return (EmuSvmRange) {
                .start = start,
                .end = end,
                .preferred_loc = KFD_IOCTL_SVM_LOCATION_UNDEFINED,
                .prefetch_loc = KFD_IOCTL_SVM_LOCATION_UNDEFINED,
                .flags = EMU_SVM_DEFAULT_FLAGS,
                .granularity = EMU_SVM_DEFAULT_GRANULARITY,
                .access = emu_proc(k, proc)->xnack ? supported_mask(k) : 0,
        };
}

/* Index of the first of the n sorted, disjoint ranges that ends after addr; n if none does. */
static uint32_t first_ending_after(const EmuSvmRange *r, uint32_t n, uint64_t addr) {
        uint32_t lo = 0, hi = n;

        while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if (r[mid].end <= addr)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

bool emu_svm_overlaps(EmuKernel *k, uint32_t proc, uint64_t start, uint64_t end) {
        EmuSvmRange *r = emu_svm(k, proc);
        uint32_t n = emu_proc(k, proc)->n_svm, i;

        if (end <= start)
                return false;
        i = first_ending_after(r, n, start);
        return i < n && r[i].start < end;
}

/*
 * svm_range_unmap_from_cpu → svm_range_unmap_split: the CPU mapping of
 * [start, end) is gone. Ranges inside it are removed, ranges across one of
 * its edges lose the part inside, attributes unchanged. The kernel does this
 * from deferred work that the next SVM or ALLOC ioctl flushes first, so doing
 * it at once is what userspace can observe. A range covering the whole
 * interval splits in two and needs one more slot: with the table full it
 * stays whole, like a range the kernel fails to split (svm_range_split:
 * -ENOMEM, the range is kept).
 */
void emu_svm_unmap(EmuKernel *k, uint32_t proc, uint64_t start, uint64_t end) {
        EmuProc *p = emu_proc(k, proc);
        EmuSvmRange *r = emu_svm(k, proc);
        uint32_t n = p->n_svm, i, w;

        if (end <= start)
                return;
        i = first_ending_after(r, n, start);
        if (i >= n || r[i].start >= end)
                return;

        if (r[i].start < start && r[i].end > end) {
                if (n >= k->a->max_svm)
                        return;
                memmove(&r[i + 2], &r[i + 1], (size_t) (n - i - 1) * sizeof(*r));
                r[i + 1] = r[i];
                r[i].end = start;
                r[i + 1].start = end;
                p->n_svm = n + 1;
                return;
        }

        /* The head of a range that starts before the interval stays. */
        if (r[i].start < start) {
                r[i].end = start;
                i++;
        }
        w = i;
        /* Ranges entirely inside go; the tail of one that reaches past the interval stays. */
        while (i < n && r[i].end <= end)
                i++;
        if (i < n && r[i].start < end)
                r[i].start = end;
        memmove(&r[w], &r[i], (size_t) (n - i) * sizeof(*r));
        p->n_svm = w + (n - i);
}

static int any_mapping(EmuKernel *k, uint32_t proc, uint32_t link, void *userdata) {
        return 1;
}

/*
 * svm_range_is_valid: covered by VMAs without VM_IO|VM_PFNMAP|VM_MIXEDMAP
 * (buffer objects CPU-mapped through a device are such VMAs) → else EFAULT;
 * then svm_range_check_vm: no KFD BO mapped there in any VM → else EADDRINUSE.
 */
static int range_valid(EmuKernel *k, uint32_t proc, uint64_t start, uint64_t end) {
        char bo_prefix[PATH_MAX];
        _cleanup_free_ char *buf = NULL;
        size_t n = 0, cap = 0;
        uint64_t cursor = start;
        int fd, r = -EFAULT;

        snprintf(bo_prefix, sizeof(bo_prefix), "%s/bo/", k->dir);
        fd = emu_sys_open("/proc/self/maps", O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0)
                return -EFAULT;
        for (;;) {
                ssize_t l;

                if (cap - n < 4096) {
                        char *p = realloc(buf, cap + 65536);
                        if (!p) {
                                emu_sys_close(fd);
                                return -ENOMEM;
                        }
                        buf = p;
                        cap += 65536;
                }
                l = read(fd, buf + n, cap - n - 1);
                if (l <= 0)
                        break;
                n += (size_t) l;
        }
        emu_sys_close(fd);
        if (!buf)
                return -EFAULT;
        buf[n] = 0;

        for (char *line = buf, *next; line && *line; line = next) {
                unsigned long long lo, hi;
                char *path;

                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                if (sscanf(line, "%llx-%llx", &lo, &hi) != 2)
                        continue;
                if (hi <= cursor)
                        continue;
                if (lo > cursor)
                        break;  /* a hole */
                path = strchr(line, '/');
                if (!path)
                        path = strchr(line, '[');
                if (path && (strncmp(path, bo_prefix, strlen(bo_prefix)) == 0 || streq(path, "[vvar]") ||
                             streq(path, "[vsyscall]")))
                        break;  /* a device mapping */
                cursor = hi;
                if (cursor >= end) {
                        r = 0;
                        break;
                }
        }
        if (r < 0)
                return r;

        if (emu_va_overlaps(k, proc, start, end, any_mapping, NULL) != 0)
                return -EADDRINUSE;
        return 0;
}

static int gpu_index_for_attr(EmuKernel *k, uint32_t gpu_id, uint32_t supported) {
        int g = emu_gpu_index(k, gpu_id);

        if (g < 0 || !(supported & (UINT32_C(1) << g)))
                return -EINVAL;
        return g;
}

/* svm_range_check_attr */
static int check_attrs(EmuKernel *k, const struct kfd_ioctl_svm_attribute *attrs, uint32_t nattr) {
        uint32_t supported = supported_mask(k);

        for (uint32_t i = 0; i < nattr; i++) {
                uint32_t v = attrs[i].value;

                switch (attrs[i].type) {
                case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC:
                        if (v != KFD_IOCTL_SVM_LOCATION_SYSMEM && v != KFD_IOCTL_SVM_LOCATION_UNDEFINED &&
                            gpu_index_for_attr(k, v, supported) < 0)
                                return -EINVAL;
                        break;
                case KFD_IOCTL_SVM_ATTR_PREFETCH_LOC:
                        if (v != KFD_IOCTL_SVM_LOCATION_SYSMEM && gpu_index_for_attr(k, v, supported) < 0)
                                return -EINVAL;
                        break;
                case KFD_IOCTL_SVM_ATTR_ACCESS:
                case KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE:
                case KFD_IOCTL_SVM_ATTR_NO_ACCESS:
                        if (gpu_index_for_attr(k, v, supported) < 0)
                                return -EINVAL;
                        break;
                case KFD_IOCTL_SVM_ATTR_SET_FLAGS:
                case KFD_IOCTL_SVM_ATTR_CLR_FLAGS:
                case KFD_IOCTL_SVM_ATTR_GRANULARITY:
                        break;
                default:
                        return -EINVAL;
                }
        }
        return 0;
}

/* svm_range_apply_attrs, for one attribute. */
static void apply_attr(EmuKernel *k, EmuSvmRange *r, const struct kfd_ioctl_svm_attribute *a) {
        uint32_t bit;

        switch (a->type) {
        case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC:
                r->preferred_loc = a->value;
                break;
        case KFD_IOCTL_SVM_ATTR_PREFETCH_LOC:
                r->prefetch_loc = a->value;
                break;
        case KFD_IOCTL_SVM_ATTR_ACCESS:
        case KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE:
        case KFD_IOCTL_SVM_ATTR_NO_ACCESS:
                bit = UINT32_C(1) << emu_gpu_index(k, a->value);
                if (a->type == KFD_IOCTL_SVM_ATTR_NO_ACCESS) {
                        r->access &= ~bit;
                        r->access_in_place &= ~bit;
                } else if (a->type == KFD_IOCTL_SVM_ATTR_ACCESS) {
                        r->access |= bit;
                        r->access_in_place &= ~bit;
                } else {
                        r->access &= ~bit;
                        r->access_in_place |= bit;
                }
                break;
        case KFD_IOCTL_SVM_ATTR_SET_FLAGS:
                r->flags |= a->value;
                break;
        case KFD_IOCTL_SVM_ATTR_CLR_FLAGS:
                r->flags &= ~a->value;
                break;
        case KFD_IOCTL_SVM_ATTR_GRANULARITY:
                r->granularity = MIN(a->value, 0x3FU);
                break;
        }
}

static int set_attr(EmuKernel *k, uint32_t proc, uint64_t start, uint64_t end,
                    const struct kfd_ioctl_svm_attribute *attrs, uint32_t nattr, const EmuFault *fault) {
        EmuProc *p = emu_proc(k, proc);
        EmuSvmRange *old = emu_svm(k, proc);
        _cleanup_free_ EmuSvmRange *out = NULL;
        uint32_t n = 0, max = p->n_svm * 2 + 2 + p->n_svm + 1;
        uint64_t cursor = start;
        int r;

        r = check_attrs(k, attrs, nattr);
        if (r < 0)
                return r;
        r = range_valid(k, proc, start, end);
        if (r < 0)
                return r;

        /* svm_range_add: split what overlaps, fill the holes with new default ranges. */
        out = calloc(max, sizeof(EmuSvmRange));
        if (!out)
                return -ENOMEM;
        for (uint32_t i = 0; i < p->n_svm; i++) {
                EmuSvmRange o = old[i];

                if (o.end <= start || o.start >= end) {
                        if (o.start >= end && cursor < end) {
                                out[n++] = default_range(k, proc, cursor, end);
                                cursor = end;
                        }
                        out[n++] = o;
                        continue;
                }
                if (o.start < start) {
                        out[n] = o;
                        out[n++].end = start;
                } else if (o.start > cursor)
                        out[n++] = default_range(k, proc, cursor, o.start);
                out[n] = o;
                out[n].start = MAX(o.start, start);
                out[n++].end = MIN(o.end, end);
                cursor = MIN(o.end, end);
                if (o.end > end) {
                        out[n] = o;
                        out[n++].start = end;
                }
        }
        if (cursor < end)
                out[n++] = default_range(k, proc, cursor, end);
        if (n > k->a->max_svm)
                return -ENOMEM;

        memcpy(old, out, n * sizeof(EmuSvmRange));
        p->n_svm = n;

        /* Attributes in order; an armed after=K fault stops after K of them, the rest stay unapplied. */
        for (uint32_t a = 0; a < nattr; a++) {
                if (fault && fault->after >= 0 && a == (uint32_t) fault->after)
                        return -fault->err;
                for (uint32_t i = 0; i < n; i++)
                        if (old[i].start >= start && old[i].end <= end)
                                apply_attr(k, &old[i], &attrs[a]);
        }
        if (fault && fault->after >= 0)
                return -fault->err;
        return 0;
}

static int get_attr(EmuKernel *k, uint32_t proc, uint64_t start, uint64_t end,
                    struct kfd_ioctl_svm_attribute *attrs, uint32_t nattr) {
        EmuProc *p = emu_proc(k, proc);
        EmuSvmRange *rs = emu_svm(k, proc);
        uint32_t loc = KFD_IOCTL_SVM_LOCATION_UNDEFINED, prefetch = KFD_IOCTL_SVM_LOCATION_UNDEFINED;
        uint32_t flags_and = UINT32_MAX, flags_or = 0, gran = UINT32_MAX;
        uint32_t access = UINT32_MAX, aip = UINT32_MAX;
        bool first = true;
        int r;

        /* svm_range_get_attr: the range first, then the query types. */
        r = range_valid(k, proc, start, end);
        if (r < 0)
                return r;
        for (uint32_t i = 0; i < nattr; i++)
                switch (attrs[i].type) {
                case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC:
                case KFD_IOCTL_SVM_ATTR_PREFETCH_LOC:
                case KFD_IOCTL_SVM_ATTR_ACCESS:
                case KFD_IOCTL_SVM_ATTR_SET_FLAGS:
                case KFD_IOCTL_SVM_ATTR_CLR_FLAGS:
                case KFD_IOCTL_SVM_ATTR_GRANULARITY:
                        break;
                default:
                        /* ACCESS_IN_PLACE and NO_ACCESS are answers, not questions. */
                        return -EINVAL;
                }

        for (uint32_t i = 0; i < p->n_svm; i++) {
                EmuSvmRange *x = &rs[i];

                if (x->end <= start || x->start >= end)
                        continue;
                if (first) {
                        loc = x->preferred_loc;
                        prefetch = x->prefetch_loc;
                        first = false;
                } else {
                        if (loc != x->preferred_loc)
                                loc = KFD_IOCTL_SVM_LOCATION_UNDEFINED;
                        if (prefetch != x->prefetch_loc)
                                prefetch = KFD_IOCTL_SVM_LOCATION_UNDEFINED;
                }
                flags_and &= x->flags;
                flags_or |= x->flags;
                gran = MIN(gran, x->granularity);
                access &= x->access;
                aip &= x->access_in_place;
        }
        if (first) {
                /* No registered range: the defaults a new range would get. */
                EmuSvmRange d = default_range(k, proc, start, end);

                flags_and = flags_or = d.flags;
                gran = d.granularity;
                access = d.access;
                aip = 0;
        }

        for (uint32_t i = 0; i < nattr; i++) {
                int g;

                switch (attrs[i].type) {
                case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC:
                        attrs[i].value = loc;
                        break;
                case KFD_IOCTL_SVM_ATTR_PREFETCH_LOC:
                        attrs[i].value = prefetch;
                        break;
                case KFD_IOCTL_SVM_ATTR_ACCESS:
                        g = emu_gpu_index(k, attrs[i].value);
                        if (g < 0)
                                return -EINVAL;
                        if (access & (UINT32_C(1) << g))
                                attrs[i].type = KFD_IOCTL_SVM_ATTR_ACCESS;
                        else if (aip & (UINT32_C(1) << g))
                                attrs[i].type = KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE;
                        else
                                attrs[i].type = KFD_IOCTL_SVM_ATTR_NO_ACCESS;
                        break;
                case KFD_IOCTL_SVM_ATTR_SET_FLAGS:
                        attrs[i].value = flags_and;
                        break;
                case KFD_IOCTL_SVM_ATTR_CLR_FLAGS:
                        attrs[i].value = ~flags_or;
                        break;
                case KFD_IOCTL_SVM_ATTR_GRANULARITY:
                        attrs[i].value = gran;
                        break;
                }
        }
        return 0;
}

int emu_svm_ioctl(EmuKernel *k, uint32_t proc, void *data, size_t size, const EmuFault *fault) {
        struct kfd_ioctl_svm_args *args = data;
        uint64_t end;

        /*
         * A fault without after= fails the whole call up front, and so does
         * one with after= on anything but SET_ATTR: only SET applies
         * attributes one by one.
         */
        if (fault && (fault->after < 0 || args->op != KFD_IOCTL_SVM_OP_SET_ATTR))
                return -fault->err;
        /* kfd_ioctl_svm */
        if ((args->start_addr & (EMU_PAGE_SIZE - 1)) || (args->size & (EMU_PAGE_SIZE - 1)) ||
            args->start_addr == 0 || args->size == 0)
                return -EINVAL;
        if (__builtin_add_overflow(args->start_addr, args->size, &end))
                return -EOVERFLOW;
        /* kfd_ioctl_svm_validate: the attribute array must be inside the ioctl's size. */
        if ((uint64_t) args->nattr * sizeof(struct kfd_ioctl_svm_attribute) > size - sizeof(*args))
                return -EINVAL;

        switch (args->op) {
        case KFD_IOCTL_SVM_OP_SET_ATTR:
                return set_attr(k, proc, args->start_addr, end, args->attrs, args->nattr, fault);
        case KFD_IOCTL_SVM_OP_GET_ATTR:
                return get_attr(k, proc, args->start_addr, end, args->attrs, args->nattr);
        default:
                return -EINVAL;
        }
}

static json_t *gpu_list(EmuKernel *k, uint32_t mask) {
        json_t *a = json_array();

        for (uint32_t g = 0; a && g < k->a->n_gpus; g++)
                if (mask & (UINT32_C(1) << g))
                        json_array_append_new(a, json_integer(k->a->gpus[g].gpu_id));
        return a;
}

json_t *emu_svm_dump(EmuKernel *k, uint32_t proc) {
        json_t *a = json_array();
        EmuSvmRange *rs = emu_svm(k, proc);

        for (uint32_t i = 0; a && i < emu_proc(k, proc)->n_svm; i++)
                json_array_append_new(a, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:o,s:o}",
                                                   "start", (json_int_t) rs[i].start,
                                                   "size", (json_int_t) (rs[i].end - rs[i].start),
                                                   "preferred_loc", (json_int_t) rs[i].preferred_loc,
                                                   "prefetch_loc", (json_int_t) rs[i].prefetch_loc,
                                                   "flags", (json_int_t) rs[i].flags,
                                                   "granularity", (json_int_t) rs[i].granularity,
                                                   "access", gpu_list(k, rs[i].access),
                                                   "access_in_place", gpu_list(k, rs[i].access_in_place)));
        return a;
}
