/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
