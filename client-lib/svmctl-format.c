/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "macro.h"
#include "size-util.h"
#include "svmctl-format.h"
#include "svmd/svmd.h"

int exit_code_from_errno(int r) {
        switch (r < 0 ? -r : r) {
        case 0:
                return EXIT_OK;
        case EINVAL:
        case E2BIG:
                return EXIT_USAGE;
        case ENOENT:
        case ENXIO:
        case ENOKEY:
        case ESRCH:
                return EXIT_NOT_FOUND;
        case EACCES:
        case EPERM:
                return EXIT_DENIED;
        case EDQUOT:
        case ENOMEM:
        case ENOSPC:
                return EXIT_NO_SPACE;
        case EBUSY:
        case EEXIST:
        case EALREADY:
        case EAGAIN:            /* GpuResetting: retry later */
                return EXIT_BUSY;
        case EOPNOTSUPP:
                return EXIT_NOT_SUPPORTED;
        case EIO:
        case ENOTRECOVERABLE:
        case ENODEV:
                return EXIT_KERNEL;
        case ECONNREFUSED:
        case ENOTCONN:
        case ECONNRESET:
        case ETIMEDOUT:
        case EHOSTUNREACH:
                return EXIT_UNREACHABLE;
        default:
                return EXIT_GENERIC;
        }
}

void strv_free(char **l) {
        if (!l)
                return;
        for (char **p = l; *p; p++)
                free(*p);
        free(l);
}

int split_list(const char *s, char ***ret) {
        char **l = NULL;
        size_t n = 0;
        const char *p = s;

        for (;;) {
                size_t len = strcspn(p, ",");
                char **k;

                if (len == 0) {
                        strv_free(l);
                        return -EINVAL;
                }
                k = reallocarray(l, n + 2, sizeof(char *));
                if (!k) {
                        strv_free(l);
                        return -ENOMEM;
                }
                l = k;
                l[n] = strndup(p, len);
                if (!l[n]) {
                        strv_free(l);
                        return -ENOMEM;
                }
                l[++n] = NULL;
                p += len;
                if (!*p)
                        break;
                p++;
        }
        *ret = l;
        return 0;
}

int parse_gpu_list(const char *s, uint32_t **ret, size_t *ret_n) {
        _cleanup_free_ uint32_t *ids = NULL;
        char **l = NULL;
        size_t n = 0;
        int r;

        r = split_list(s, &l);
        if (r < 0)
                return r;
        for (char **p = l; *p; p++)
                n++;
        if (n > SVMD_MAX_GPUS) {
                strv_free(l);
                return -E2BIG;
        }
        ids = calloc(n, sizeof(uint32_t));
        if (!ids) {
                strv_free(l);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                r = parse_u32(l[i], &ids[i]);
                if (r < 0) {
                        strv_free(l);
                        return -EINVAL;
                }
        }
        strv_free(l);
        *ret = TAKE_PTR(ids);
        *ret_n = n;
        return 0;
}

char *format_gpu_list(const uint32_t *ids, size_t n) {
        char *s = NULL;
        size_t size = 0;
        FILE *f;

        if (n == 0)
                return strdup("-");
        f = open_memstream(&s, &size);
        if (!f)
                return NULL;
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%s0x%x", i > 0 ? "," : "", ids[i]);
        if (fclose(f) != 0) {
                free(s);
                return NULL;
        }
        return s;
}

char *format_flags(uint64_t flags) {
        char *s = NULL;
        size_t size = 0;
        bool first = true;
        FILE *f;

        if (flags == 0)
                return strdup("-");
        f = open_memstream(&s, &size);
        if (!f)
                return NULL;
        for (unsigned i = 0; i < 64; i++) {
                uint64_t bit = UINT64_C(1) << i;
                const char *name;

                if (!(flags & bit))
                        continue;
                name = svmd_range_flag_to_string(bit);
                if (name)
                        fprintf(f, "%s%s", first ? "" : ",", name);
                else
                        fprintf(f, "%sbit%u", first ? "" : ",", i);
                first = false;
        }
        if (fclose(f) != 0) {
                free(s);
                return NULL;
        }
        return s;
}

int parse_svm_location(const char *s, bool allow_none, uint32_t *ret) {
        uint32_t v;

        if (streq(s, "system")) {
                *ret = SVMD_SVM_LOCATION_SYSTEM;
                return 0;
        }
        if (streq(s, "none")) {
                if (!allow_none)
                        return -EINVAL;
                *ret = SVMD_SVM_LOCATION_NONE;
                return 0;
        }
        if (parse_u32(s, &v) < 0 || v == SVMD_SVM_LOCATION_NONE)
                return -EINVAL;
        *ret = v;
        return 0;
}

const char *format_svm_location(char *buf, size_t size, uint32_t loc) {
        if (loc == SVMD_SVM_LOCATION_SYSTEM)
                return "system";
        if (loc == SVMD_SVM_LOCATION_NONE)
                return "none";
        snprintf(buf, size, "0x%x", loc);
        return buf;
}

json_t *json_u32_array(const uint32_t *ids, size_t n) {
        json_t *a = json_array();

        for (size_t i = 0; a && i < n; i++)
                json_array_append_new(a, json_integer(ids[i]));
        return a;
}

json_t *json_flags(uint64_t flags) {
        json_t *a = json_array();

        for (unsigned i = 0; a && i < 64; i++) {
                uint64_t bit = UINT64_C(1) << i;
                const char *name = svmd_range_flag_to_string(bit);

                if ((flags & bit) && name)
                        json_array_append_new(a, json_string(name));
        }
        return a;
}

static json_t *json_name_list(const char *names) {
        json_t *a = json_array();

        for (const char *p = names; a && *p;) {
                size_t len = strcspn(p, ",");

                json_array_append_new(a, json_stringn(p, len));
                p += len + (p[len] == ',');
        }
        return a;
}

json_t *json_svm_state(const svmd_svm_state *st) {
        return json_pack("{s:I,s:I,s:o,s:I,s:o,s:o}", "preferred", (json_int_t) st->preferred, "prefetch",
                         (json_int_t) st->prefetch, "flags", json_name_list(st->flag_names), "granularity",
                         (json_int_t) st->granularity, "access", json_u32_array(st->access, st->n_access),
                         "access-in-place", json_u32_array(st->access_in_place, st->n_access_in_place));
}

json_t *json_svm_attributes(const svmd_svm_attributes *a) {
        json_t *o = json_object();

        if (!o)
                return NULL;
        if (a->set & SVMD_SVM_SET_PREFERRED)
                json_object_set_new(o, "preferred", json_integer(a->preferred));
        if (a->set & SVMD_SVM_SET_PREFETCH)
                json_object_set_new(o, "prefetch", json_integer(a->prefetch));
        if (a->set & SVMD_SVM_SET_FLAGS) {
                json_t *f = json_array();

                for (const char *const *p = a->flags; f && p && *p; p++)
                        json_array_append_new(f, json_string(*p));
                json_object_set_new(o, "flags", f);
        }
        if (a->set & SVMD_SVM_SET_GRANULARITY)
                json_object_set_new(o, "granularity", json_integer(a->granularity));
        if (a->n_access > 0)
                json_object_set_new(o, "access", json_u32_array(a->access, a->n_access));
        if (a->n_access_in_place > 0)
                json_object_set_new(o, "access-in-place", json_u32_array(a->access_in_place, a->n_access_in_place));
        if (a->n_no_access > 0)
                json_object_set_new(o, "no-access", json_u32_array(a->no_access, a->n_no_access));
        return o;
}

json_t *json_limit(uint64_t v) {
        return v == SVMD_NO_LIMIT ? json_null() : json_integer((json_int_t) v);
}

json_t *json_hex(uint64_t v) {
        char buf[32];

        snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
        return json_string(buf);
}

int json_print(json_t *v) {
        int r;

        if (!v)
                return -ENOMEM;
        r = json_dumpf(v, stdout, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(v);
        if (r < 0)
                return -EIO;
        putchar('\n');
        return 0;
}

/* "1h30m": the sum of NUMBER UNIT pairs, in µs. */
static int parse_duration(const char *s, uint64_t *ret) {
        static const struct {
                const char *unit;
                uint64_t usec;
        } units[] = {
                /* Longest first: "min" before "m", "ms" is not a unit here. */
                { "min", 60 * USEC_PER_SEC }, { "s", USEC_PER_SEC }, { "m", 60 * USEC_PER_SEC },
                { "h", 3600 * USEC_PER_SEC }, { "d", 86400 * USEC_PER_SEC }, { "w", 7 * 86400 * USEC_PER_SEC },
        };
        uint64_t total = 0;

        if (!*s)
                return -EINVAL;
        while (*s) {
                unsigned long long v;
                char *end;
                size_t i;

                if (*s < '0' || *s > '9')
                        return -EINVAL;
                errno = 0;
                v = strtoull(s, &end, 10);
                if (errno != 0 || end == s)
                        return -EINVAL;
                for (i = 0; i < ELEMENTSOF(units); i++)
                        if (strncmp(end, units[i].unit, strlen(units[i].unit)) == 0)
                                break;
                if (i == ELEMENTSOF(units))
                        return -EINVAL; /* a bare number is ambiguous: seconds? µs? */
                if (v > UINT64_MAX / units[i].usec || total > UINT64_MAX - v * units[i].usec)
                        return -ERANGE;
                total += v * units[i].usec;
                s = end + strlen(units[i].unit);
        }
        *ret = total;
        return 0;
}

/* ISO 8601 "2026-12-06T10:00[:00][Z|+01:00]" (a space for the T too); without a zone, local time. */
static int parse_iso8601(const char *s, uint64_t *ret) {
        struct tm tm = {};
        const char *p;
        time_t t;
        long offset = 0;
        bool utc = false;

        p = strptime(s, "%Y-%m-%d", &tm);
        if (!p || (*p != 'T' && *p != ' '))
                return -EINVAL;
        s = p + 1;
        p = strptime(s, "%H:%M:%S", &tm);
        if (!p)
                p = strptime(s, "%H:%M", &tm);
        if (!p)
                return -EINVAL;
        if (*p == 'Z') {
                utc = true;
                p++;
        } else if (*p == '+' || *p == '-') {
                unsigned hh, mm;
                int n = 0;

                if (sscanf(p + 1, "%2u:%2u%n", &hh, &mm, &n) != 2 || n != 5 || hh > 23 || mm > 59)
                        return -EINVAL;
                offset = (*p == '-' ? -1 : 1) * (long) (hh * 3600 + mm * 60);
                utc = true;
                p += 1 + n;
        }
        if (*p)
                return -EINVAL;
        if (utc)
                t = timegm(&tm) - offset;
        else {
                tm.tm_isdst = -1;
                t = mktime(&tm);
        }
        if (t < 0)
                return -EINVAL;
        *ret = (uint64_t) t * USEC_PER_SEC;
        return 0;
}

int parse_expiry(const char *s, uint64_t now_usec, uint64_t *ret) {
        uint64_t v;
        int r;

        if (!s || !*s)
                return -EINVAL;
        if (s[0] == '@') {
                /* Seconds since the epoch, as date(1) writes them. */
                char *end;
                unsigned long long secs;

                if (s[1] < '0' || s[1] > '9')
                        return -EINVAL;
                errno = 0;
                secs = strtoull(s + 1, &end, 10);
                if (errno != 0 || *end || secs > UINT64_MAX / USEC_PER_SEC)
                        return -EINVAL;
                *ret = secs * USEC_PER_SEC;
                return 0;
        }
        if (strchr(s, '-'))
                return parse_iso8601(s, ret);
        r = parse_duration(s[0] == '+' ? s + 1 : s, &v);
        if (r < 0)
                return r;
        if (v == 0 || v > UINT64_MAX - now_usec)
                return -EINVAL;
        *ret = now_usec + v;
        return 0;
}

char *format_time(char *buf, size_t size, uint64_t usec) {
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;

        if (!localtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                snprintf(buf, size, "@%" PRIu64, usec / USEC_PER_SEC);
        return buf;
}
