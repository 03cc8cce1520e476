/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-util.h"
#include "macro.h"

static void *memdup(const void *p, size_t l) {
        void *c = malloc(l);
        return c ? memcpy(c, p, l) : NULL;
}

#define BUS_DEFAULT_MAX_STRING 4096U
#define BUS_DEFAULT_MAX_ARRAY  1024U

static const char *option_signature(BusOptionType t) {
        switch (t) {
        case BUS_OPTION_BOOL:      return "b";
        case BUS_OPTION_U32:       return "u";
        case BUS_OPTION_U64:       return "t";
        case BUS_OPTION_STRING:    return "s";
        case BUS_OPTION_STRV:      return "as";
        case BUS_OPTION_U32_ARRAY: return "au";
        case BUS_OPTION_PAIRS:     return "a(tt)";
        }
        return NULL;
}

void bus_u32_array_done(BusU32Array *a) {
        free(a->items);
        *a = (BusU32Array) {};
}

void bus_strv_done(BusStrv *v) {
        for (size_t i = 0; i < v->n; i++)
                free(v->items[i]);
        free(v->items);
        *v = (BusStrv) {};
}

void bus_pairs_done(BusPairArray *a) {
        free(a->items);
        *a = (BusPairArray) {};
}

int bus_read_u32_array(sd_bus_message *m, size_t max, const char *what, BusU32Array *ret, sd_bus_error *error) {
        const void *p;
        size_t size;
        uint32_t *copy = NULL;
        int r;

        r = sd_bus_message_read_array(m, 'u', &p, &size);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "%s must be an array of GPU ids (au)", what);
        /* Bound the count before allocating anything: the caller controls it. */
        if (size / sizeof(uint32_t) > max)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "%s has %zu entries; at most %zu are allowed", what,
                                         size / sizeof(uint32_t), max);
        if (size > 0) {
                copy = memdup(p, size);
                if (!copy)
                        return -ENOMEM;
        }
        bus_u32_array_done(ret);
        *ret = (BusU32Array) { .items = copy, .n = size / sizeof(uint32_t) };
        return 0;
}

int bus_read_pairs(sd_bus_message *m, size_t max, const char *what, BusPairArray *ret, sd_bus_error *error) {
        _cleanup_free_ BusPair *items = NULL;
        size_t n = 0, allocated = 0;
        uint64_t a, b;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "(tt)");
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "%s must be of type a(tt)", what);
        while ((r = sd_bus_message_read(m, "(tt)", &a, &b)) > 0) {
                if (n >= max)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "%s has more than %zu entries", what, max);
                if (n == allocated) {
                        size_t na = allocated ? allocated * 2 : 8;
                        BusPair *ni = reallocarray(items, na, sizeof(BusPair));
                        if (!ni)
                                return -ENOMEM;
                        items = ni;
                        allocated = na;
                }
                items[n++] = (BusPair) { a, b };
        }
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "%s must be of type a(tt)", what);
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;

        bus_pairs_done(ret);
        *ret = (BusPairArray) { .items = TAKE_PTR(items), .n = n };
        return 0;
}

static int read_strv(sd_bus_message *m, size_t max, const char *key, BusStrv *ret, sd_bus_error *error) {
        BusStrv v = {};
        const char *s;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "s");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read_basic(m, 's', &s)) > 0) {
                char **ni;

                if (v.n >= max) {
                        bus_strv_done(&v);
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "option \"%s\" has more than %zu entries", key, max);
                }
                ni = reallocarray(v.items, v.n + 1, sizeof(char *));
                if (!ni) {
                        bus_strv_done(&v);
                        return -ENOMEM;
                }
                v.items = ni;
                v.items[v.n] = strdup(s);
                if (!v.items[v.n]) {
                        bus_strv_done(&v);
                        return -ENOMEM;
                }
                v.n++;
        }
        if (r < 0) {
                bus_strv_done(&v);
                return r;
        }
        r = sd_bus_message_exit_container(m);
        if (r < 0) {
                bus_strv_done(&v);
                return r;
        }
        bus_strv_done(ret);
        *ret = v;
        return 0;
}

/* 'option "key"' for error messages, built on every read: no printf on the hot path of a Commit. */
static const char *option_what(char *buf, size_t size, const char *key) {
        size_t k = strnlen(key, size - sizeof("option \"\""));

        memcpy(buf, "option \"", 8);
        memcpy(buf + 8, key, k);
        buf[8 + k] = '"';
        buf[9 + k] = '\0';
        return buf;
}

static int read_one(sd_bus_message *m, const BusOption *o, void *dest, sd_bus_error *error) {
        void *field = (uint8_t *) dest + o->offset;
        int r;

        switch (o->type) {
        case BUS_OPTION_BOOL: {
                int b;
                r = sd_bus_message_read_basic(m, 'b', &b);
                if (r < 0)
                        return r;
                *(bool *) field = b;
                return 0;
        }
        case BUS_OPTION_U32:
                return sd_bus_message_read_basic(m, 'u', field);
        case BUS_OPTION_U64:
                return sd_bus_message_read_basic(m, 't', field);
        case BUS_OPTION_STRING: {
                size_t max = o->max ?: BUS_DEFAULT_MAX_STRING;
                const char *s;
                char *copy;

                r = sd_bus_message_read_basic(m, 's', &s);
                if (r < 0)
                        return r;
                if (strlen(s) > max)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "option \"%s\" is longer than %zu bytes", o->key, max);
                copy = strdup(s);
                if (!copy)
                        return -ENOMEM;
                free(*(char **) field);
                *(char **) field = copy;
                return 0;
        }
        case BUS_OPTION_STRV:
                return read_strv(m, o->max ?: BUS_DEFAULT_MAX_ARRAY, o->key, field, error);
        case BUS_OPTION_U32_ARRAY: {
                char what[128];
                return bus_read_u32_array(m, o->max ?: BUS_DEFAULT_MAX_ARRAY, option_what(what, sizeof(what), o->key),
                                          field, error);
        }
        case BUS_OPTION_PAIRS: {
                char what[128];
                return bus_read_pairs(m, o->max ?: BUS_DEFAULT_MAX_ARRAY, option_what(what, sizeof(what), o->key),
                                      field, error);
        }
        }
        return -EINVAL;
}

int bus_read_options(sd_bus_message *m, const BusOption *table, void *dest, const char *what,
                     sd_bus_error *error) {
        uint64_t seen = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "%s must be of type a{sv}", what);

        for (;;) {
                const char *key, *contents;
                const BusOption *o;
                size_t idx;
                char type;

                r = sd_bus_message_enter_container(m, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;

                r = sd_bus_message_read_basic(m, 's', &key);
                if (r < 0)
                        return r;

                for (o = table, idx = 0; o->key; o++, idx++)
                        if (streq(o->key, key))
                                break;
                if (!o->key)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "unknown key \"%.64s\" in %s", key, what);
                if (idx < 64 && (seen & (UINT64_C(1) << idx)))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "key \"%s\" appears twice in %s", key, what);
                if (idx < 64)
                        seen |= UINT64_C(1) << idx;

                /* Straight in with the type the key wants; a variant of another type is refused
                 * without a change of position (-ENXIO), and only then looked at, for the message:
                 * peeking first cost as much as the rest of the key. */
                r = sd_bus_message_enter_container(m, 'v', option_signature(o->type));
                if (r == -ENXIO) {
                        r = sd_bus_message_peek_type(m, &type, &contents);
                        if (r < 0)
                                return r;
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "\"%s\" in %s must be of type %s, not %s", key, what,
                                                 option_signature(o->type), strna(contents));
                }
                if (r < 0)
                        return r;
                r = read_one(m, o, dest, error);
                if (r < 0)
                        return r;
                if (o->present_offset != SIZE_MAX)
                        *(bool *) ((uint8_t *) dest + o->present_offset) = true;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }

        return sd_bus_message_exit_container(m);
}

void bus_options_free(const BusOption *table, void *dest) {
        for (const BusOption *o = table; o->key; o++) {
                void *field = (uint8_t *) dest + o->offset;

                switch (o->type) {
                case BUS_OPTION_STRING:
                        free(*(char **) field);
                        *(char **) field = NULL;
                        break;
                case BUS_OPTION_STRV:
                        bus_strv_done(field);
                        break;
                case BUS_OPTION_U32_ARRAY:
                        bus_u32_array_done(field);
                        break;
                case BUS_OPTION_PAIRS:
                        bus_pairs_done(field);
                        break;
                default:
                        break;
                }
        }
}

size_t format_u64(char *buf, uint64_t v) {
        char tmp[U64_DECIMAL_MAX];
        size_t n = 0;

        do {
                tmp[n++] = (char) ('0' + v % 10);
                v /= 10;
        } while (v > 0);
        for (size_t i = 0; i < n; i++)
                buf[i] = tmp[n - 1 - i];
        buf[n] = '\0';
        return n;
}

int bus_path_from_id(const char *prefix, uint64_t id, char **ret) {
        size_t l = strlen(prefix);
        char *p;

        p = malloc(l + 1 + U64_DECIMAL_MAX);
        if (!p)
                return -ENOMEM;
        memcpy(p, prefix, l);
        p[l] = '/';
        (void) format_u64(p + l + 1, id);
        *ret = p;
        return 0;
}

int bus_path_to_id(const char *prefix, const char *path, uint64_t *ret) {
        size_t l = strlen(prefix);
        const char *e;
        char *end;
        unsigned long long v;

        if (strncmp(path, prefix, l) != 0 || path[l] != '/')
                return -EINVAL;
        e = path + l + 1;
        if (*e < '1' || *e > '9')       /* ids start at 1, no leading zeros */
                return -EINVAL;
        errno = 0;
        v = strtoull(e, &end, 10);
        if (errno != 0 || *end != '\0')
                return -EINVAL;
        *ret = v;
        return 0;
}
