/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Armed faults: "this ioctl, on this GPU, at the Nth matching call, fails
 * with this errno", optionally part-way through a MAP/UNMAP device array
 * (after=K: n_success = K) or after all devices at the fence wait (at=fence:
 * n_success = n_devices, the mappings stay). That is where the kernel really
 * fails or gets interrupted (§3.2 of the reference), so clients' restart and
 * rollback paths can be driven deterministically. For SVM, op=set|get
 * narrows a fault to SET_ATTR or GET_ATTR calls, and after=K on a SET applies
 * attributes [0, K) before the errno.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emu-arena.h"
#include "macro.h"

static const struct {
        const char *name;
        int value;
} errno_table[] = {
        { "EPERM", EPERM },       { "ENOENT", ENOENT },         { "ESRCH", ESRCH },
        { "EINTR", EINTR },       { "EIO", EIO },               { "ENXIO", ENXIO },
        { "E2BIG", E2BIG },       { "EBADF", EBADF },           { "EAGAIN", EAGAIN },
        { "ENOMEM", ENOMEM },     { "EACCES", EACCES },         { "EFAULT", EFAULT },
        { "EBUSY", EBUSY },       { "EEXIST", EEXIST },         { "ENODEV", ENODEV },
        { "EINVAL", EINVAL },     { "ENFILE", ENFILE },         { "EMFILE", EMFILE },
        { "ENOTTY", ENOTTY },     { "ENOSPC", ENOSPC },         { "EDEADLK", EDEADLK },
        { "ENOSYS", ENOSYS },     { "EOVERFLOW", EOVERFLOW },   { "EOPNOTSUPP", EOPNOTSUPP },
        { "EADDRINUSE", EADDRINUSE }, { "ETIMEDOUT", ETIMEDOUT }, { "ECANCELED", ECANCELED },
        { "ENOTRECOVERABLE", ENOTRECOVERABLE },
        /* Kernel-internal: what userspace sees of it is EINTR. */
        { "ERESTARTSYS", EINTR },
};

const char *emu_errno_name(int err) {
        for (size_t i = 0; i < ELEMENTSOF(errno_table); i++)
                if (errno_table[i].value == err)
                        return errno_table[i].name;
        return NULL;
}

static int parse_errno(const char *s, int *ret) {
        char *end;
        long v;

        for (size_t i = 0; i < ELEMENTSOF(errno_table); i++)
                if (strcasecmp(s, errno_table[i].name) == 0) {
                        *ret = errno_table[i].value;
                        return 0;
                }
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno != 0 || *end || end == s || v <= 0 || v > 4095)
                return -EINVAL;
        *ret = (int) v;
        return 0;
}

static int parse_u32(const char *s, uint32_t *ret) {
        unsigned long long v;
        char *end;

        errno = 0;
        v = strtoull(s, &end, 0);
        if (errno != 0 || *end || end == s || v > UINT32_MAX || s[0] == '-')
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

_printf_(2, 3) static int fail(char **ret_error, const char *fmt, ...) {
        va_list ap;

        if (!ret_error)
                return -EINVAL;
        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return -EINVAL;
}

int emu_kernel_fault_add(EmuKernel *k, const char *spec, char **ret_error) {
        _cleanup_free_ char *copy = NULL;
        EmuFault f = { .nth = 1, .count = 1, .after = -1, .svm_op = -1 };
        bool have_nr = false, have_errno = false;
        char *save = NULL, *tok;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!spec)
                return fail(ret_error, "empty fault specification");
        if (strlen(spec) >= EMU_FAULT_SPEC_MAX)
                return fail(ret_error, "fault specification longer than %d characters", EMU_FAULT_SPEC_MAX - 1);
        copy = strdup(spec);
        if (!copy)
                return -ENOMEM;

        for (tok = strtok_r(copy, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
                char *v = strchr(tok, '=');
                uint32_t u;

                if (!v)
                        return fail(ret_error, "'%s' is not key=value", tok);
                *v++ = 0;
                if (streq(tok, "ioctl")) {
                        r = emu_ioctl_nr_from_name(v);
                        if (r < 0)
                                return fail(ret_error, "unknown ioctl '%s'", v);
                        f.nr = (uint32_t) r;
                        have_nr = true;
                } else if (streq(tok, "gpu")) {
                        if (parse_u32(v, &f.gpu_id) < 0 || f.gpu_id == 0)
                                return fail(ret_error, "bad gpu id '%s'", v);
                } else if (streq(tok, "nth")) {
                        if (parse_u32(v, &f.nth) < 0 || f.nth == 0)
                                return fail(ret_error, "bad nth '%s' (1 is the next call)", v);
                } else if (streq(tok, "count")) {
                        if (parse_u32(v, &f.count) < 0)
                                return fail(ret_error, "bad count '%s'", v);
                } else if (streq(tok, "errno")) {
                        if (parse_errno(v, &f.err) < 0)
                                return fail(ret_error, "unknown errno '%s'", v);
                        have_errno = true;
                } else if (streq(tok, "after")) {
                        if (parse_u32(v, &u) < 0 || u > INT32_MAX)
                                return fail(ret_error, "bad after '%s'", v);
                        f.after = (int32_t) u;
                } else if (streq(tok, "at")) {
                        if (!streq(v, "fence"))
                                return fail(ret_error, "unknown at '%s' (only 'fence')", v);
                        f.at_fence = 1;
                } else if (streq(tok, "op")) {
                        if (streq(v, "set"))
                                f.svm_op = KFD_IOCTL_SVM_OP_SET_ATTR;
                        else if (streq(v, "get"))
                                f.svm_op = KFD_IOCTL_SVM_OP_GET_ATTR;
                        else
                                return fail(ret_error, "unknown op '%s' (set or get)", v);
                } else if (streq(tok, "pid")) {
                        if (parse_u32(v, &u) < 0 || u == 0 || u > INT32_MAX)
                                return fail(ret_error, "bad pid '%s'", v);
                        f.pid = (int32_t) u;
                } else
                        return fail(ret_error, "unknown key '%s'", tok);
        }
        if (!have_nr)
                return fail(ret_error, "ioctl= is required");
        if (!have_errno)
                return fail(ret_error, "errno= is required");
        if (f.at_fence && f.after >= 0)
                return fail(ret_error, "after= and at=fence exclude each other");
        if (f.at_fence && f.nr != 0x18 && f.nr != 0x19)
                return fail(ret_error, "at=fence only applies to MAP/UNMAP");
        if (f.after >= 0 && f.nr != 0x18 && f.nr != 0x19 && f.nr != 0x20)
                return fail(ret_error, "after= only applies to MAP/UNMAP/SVM");
        if (f.svm_op >= 0 && f.nr != 0x20)
                return fail(ret_error, "op= only applies to SVM");
        snprintf(f.spec, sizeof(f.spec), "%s", spec);
        f.in_use = 1;

        emu_check_fork(k);
        r = emu_lock(k);
        if (r < 0)
                return r;
        r = -ENOSPC;
        for (size_t i = 0; i < EMU_MAX_FAULTS; i++)
                if (!k->a->faults[i].in_use) {
                        k->a->faults[i] = f;
                        r = 0;
                        break;
                }
        emu_unlock(k);
        if (r < 0)
                return fail(ret_error, "too many armed faults (%d)", EMU_MAX_FAULTS);
        return 0;
}

int emu_kernel_fault_clear(EmuKernel *k) {
        int r = emu_lock(k);

        if (r < 0)
                return r;
        memset(k->a->faults, 0, sizeof(k->a->faults));
        emu_unlock(k);
        return 0;
}

static bool matches_caller(const EmuFault *f, uint32_t nr) {
        return f->in_use && f->nr == nr && (f->pid == 0 || f->pid == getpid());
}

/* Counts the matching call; whether this one fires. */
static bool fires(EmuFault *f) {
        f->seen++;
        if (f->seen < f->nth || (f->count != 0 && f->fired >= f->count))
                return false;
        f->fired++;
        return true;
}

EmuFault *emu_fault_check(EmuKernel *k, uint32_t nr, uint32_t call_gpu_id, int32_t svm_op) {
        EmuFault *hit = NULL;

        for (size_t i = 0; i < EMU_MAX_FAULTS; i++) {
                EmuFault *f = &k->a->faults[i];

                if (!matches_caller(f, nr) || (f->gpu_id != 0 && f->gpu_id != call_gpu_id))
                        continue;
                /* op=: a call with another op is not a matching call, so it is not counted either. */
                if (f->svm_op >= 0 && f->svm_op != svm_op)
                        continue;
                if (fires(f) && !hit)
                        hit = f;
        }
        return hit;
}

EmuFault *emu_fault_check_devices(EmuKernel *k, uint32_t nr, const uint32_t *ids, uint32_t from,
                                  uint32_t n, uint32_t *ret_index) {
        EmuFault *hit = NULL;

        for (size_t i = 0; i < EMU_MAX_FAULTS; i++) {
                EmuFault *f = &k->a->faults[i];
                uint32_t at = UINT32_MAX;

                if (!matches_caller(f, nr))
                        continue;
                if (f->after >= 0) {
                        /* The device at index K, after K devices succeeded. */
                        if ((uint32_t) f->after >= from && (uint32_t) f->after < n &&
                            (f->gpu_id == 0 || ids[f->after] == f->gpu_id))
                                at = (uint32_t) f->after;
                } else if (f->gpu_id != 0) {
                        for (uint32_t d = from; d < n; d++)
                                if (ids[d] == f->gpu_id) {
                                        at = f->at_fence ? n : d;
                                        break;
                                }
                } else
                        at = f->at_fence ? n : from;
                if (at == UINT32_MAX)
                        continue;
                if (fires(f) && !hit) {
                        hit = f;
                        *ret_index = at;
                }
        }
        return hit;
}
