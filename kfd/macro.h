/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Ownership helpers shared by every C file of the project: _cleanup_ attributes,
 * TAKE_PTR/TAKE_FD to hand ownership on, and a few arithmetic helpers.
 */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _likely_(x) (__builtin_expect(!!(x), 1))
#define _unlikely_(x) (__builtin_expect(!!(x), 0))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define _pure_ __attribute__((pure))
#define _public_ __attribute__((visibility("default")))
#define _warn_unused_result_ __attribute__((warn_unused_result))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Round up to a power-of-two alignment; callers check for overflow with ALIGN_UP_OK. */
#define ALIGN_POW2(v, a) (((v) + ((a) - 1)) & ~((__typeof__(v))(a) - 1))
static inline bool align_up_ok(uint64_t v, uint64_t a, uint64_t *ret) {
        uint64_t r;

        if (a == 0 || (a & (a - 1)) != 0)
                return false;
        if (__builtin_add_overflow(v, a - 1, &r))
                return false;
        *ret = r & ~(a - 1);
        return true;
}

/* Take ownership of a pointer or fd: the old variable is reset so its cleanup does nothing. */
#define TAKE_PTR(p)                                  \
        ({                                           \
                __typeof__(p) *_pp = &(p);           \
                __typeof__(p) _p = *_pp;             \
                *_pp = NULL;                         \
                _p;                                  \
        })
#define TAKE_FD(fd)                                  \
        ({                                           \
                int *_fdp = &(fd);                   \
                int _fd = *_fdp;                     \
                *_fdp = -EBADF;                      \
                _fd;                                 \
        })

#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)      \
        static inline void func##p(type *p) {        \
                if (*p)                              \
                        func(*p);                    \
        }

/* Typed allocation with overflow-checked multiplication (reallocarray semantics). */
#define new(t, n) ((t *) reallocarray(NULL, (n), sizeof(t)))
#define new0(t, n) ((t *) calloc((n) ?: 1, sizeof(t)))

/* free() that returns NULL, for "p = mfree(p);". */
static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

static inline void freep(void *p) {
        free(*(void **) p);
}

static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -EBADF;
}

static inline void closep(int *fd) {
        safe_close(*fd);
}

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}

/* errno as a negative return value; never 0 even if libc forgot to set it. */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}
#define streq(a, b) (strcmp((a), (b)) == 0)

static inline const char *strempty(const char *s) {
        return s ?: "";
}

static inline bool isempty(const char *s) {
        return !s || !*s;
}

static inline const char *strna(const char *s) {
        return s ?: "n/a";
}
