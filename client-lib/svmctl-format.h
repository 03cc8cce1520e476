/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * How svmctl reads and writes values: GPU lists ("0x3a1f,4711"), flag names,
 * exit codes by error class, and the JSON building blocks of --json output.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "svmd/svmd.h"

/* Exit codes (documented in svmctl(1)). */
enum {
        EXIT_OK = 0,
        EXIT_GENERIC = 1,
        EXIT_USAGE = 2,         /* bad command line, or svmd said InvalidArgs */
        EXIT_NOT_FOUND = 3,     /* no such range, GPU or token */
        EXIT_DENIED = 4,        /* access denied */
        EXIT_NO_SPACE = 5,      /* quota exceeded, out of memory */
        EXIT_BUSY = 6,          /* busy, address in use */
        EXIT_NOT_SUPPORTED = 7,
        EXIT_KERNEL = 8,        /* the kernel failed, rollback failed, device lost */
        EXIT_UNREACHABLE = 9,   /* svmd or the bus cannot be reached */
};

/* The error name of a bad command line in --json errors (svmctl(1)). */
#define SVMCTL_ERROR_USAGE "svmctl.Error.Usage"

int exit_code_from_errno(int r);

/* "0x3a1f,4711" → ids (malloc()ed). -EINVAL on a bad or empty list, -E2BIG past 64. */
int parse_gpu_list(const char *s, uint32_t **ret, size_t *ret_n);
/* "0x3a1f, 0x4711" (malloc()ed), "-" for none. */
char *format_gpu_list(const uint32_t *ids, size_t n);
/* "writable,public" (malloc()ed), "-" for none. */
char *format_flags(uint64_t flags);
/* "a,b,c" → NULL-terminated array of malloc()ed strings. */
int split_list(const char *s, char ***ret);
void strv_free(char **l);
static inline void strv_freep(char ***l) {
        strv_free(*l);
}

/*
 * An SVM location: "system", "none" (only where allow_none), or a GPU id in
 * decimal or 0x-hex. -EINVAL otherwise.
 */
int parse_svm_location(const char *s, bool allow_none, uint32_t *ret);
/* "system", "none" or "0x3a1f". */
const char *format_svm_location(char *buf, size_t size, uint32_t loc);

#define USEC_PER_SEC UINT64_C(1000000)

/*
 * An expiry, as CLOCK_REALTIME µs: a duration from now_usec ("10m", "1h30m", "2d"; units s, m or
 * min, h, d, w), an ISO 8601 time ("2026-12-06T10:00:00Z", "2026-12-06 10:00" local), or "@SECONDS"
 * since the epoch. -EINVAL otherwise (a bare number too: it says no unit).
 */
int parse_expiry(const char *s, uint64_t now_usec, uint64_t *ret);
/* "2026-12-06 10:00:00 UTC", local time. */
char *format_time(char *buf, size_t size, uint64_t usec);

json_t *json_u32_array(const uint32_t *ids, size_t n);
json_t *json_flags(uint64_t flags);
/* An svm range's attributes: {"preferred", "prefetch", "flags", "granularity", "access", "access-in-place"}. */
json_t *json_svm_state(const svmd_svm_state *st);
/* What a change asks for: the keys of json_svm_state() that are given, and "no-access". */
json_t *json_svm_attributes(const svmd_svm_attributes *a);
/* A limit: a number, or null for "no limit". */
json_t *json_limit(uint64_t v);
/* "0x3a1f" */
json_t *json_hex(uint64_t v);
/* Print compact JSON and a newline to stdout; steals v. */
int json_print(json_t *v);
