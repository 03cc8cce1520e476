/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Reading a{sv} arguments strictly: every key must be known, appear once and
 * carry exactly the documented type; arrays are bounded before anything is
 * allocated. Errors are InvalidArgs with a sentence naming the key.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-bus.h>

typedef enum BusOptionType {
        BUS_OPTION_BOOL,        /* b  -> bool */
        BUS_OPTION_U32,         /* u  -> uint32_t */
        BUS_OPTION_U64,         /* t  -> uint64_t */
        BUS_OPTION_STRING,      /* s  -> char * (owned, free it) */
        BUS_OPTION_STRV,        /* as -> BusStrv */
        BUS_OPTION_U32_ARRAY,   /* au -> BusU32Array */
        BUS_OPTION_PAIRS,       /* a(tt) -> BusPairArray */
} BusOptionType;

typedef struct BusU32Array {
        uint32_t *items;
        size_t n;
} BusU32Array;

typedef struct BusStrv {
        char **items;
        size_t n;
} BusStrv;

typedef struct BusPair {
        uint64_t a, b;
} BusPair;

typedef struct BusPairArray {
        BusPair *items;
        size_t n;
} BusPairArray;

typedef struct BusOption {
        const char *key;
        BusOptionType type;
        size_t offset;          /* where in the destination struct */
        size_t max;             /* strings: max length; arrays: max elements; 0: type default */
        size_t present_offset;  /* offset of a bool set when the key was given; SIZE_MAX: none */
} BusOption;

#define BUS_OPTION(k, t, type_, field, max_)                                   \
        { .key = (k), .type = (type_), .offset = offsetof(t, field), .max = (max_), \
          .present_offset = SIZE_MAX }
#define BUS_OPTION_P(k, t, type_, field, max_, present)                        \
        { .key = (k), .type = (type_), .offset = offsetof(t, field), .max = (max_), \
          .present_offset = offsetof(t, present) }

/*
 * Read one a{sv} from m into dest according to the NULL-key-terminated table.
 * `what` names the argument in messages ("options", "filter"). On failure the
 * fields already read stay in dest; free them with bus_options_free().
 */
int bus_read_options(sd_bus_message *m, const BusOption *table, void *dest, const char *what,
                     sd_bus_error *error);
void bus_options_free(const BusOption *table, void *dest);

/* Read an `au` argument of at most max elements. */
int bus_read_u32_array(sd_bus_message *m, size_t max, const char *what, BusU32Array *ret, sd_bus_error *error);

/* Read an `a(tt)` argument of at most max elements. */
int bus_read_pairs(sd_bus_message *m, size_t max, const char *what, BusPairArray *ret, sd_bus_error *error);

void bus_u32_array_done(BusU32Array *a);
void bus_strv_done(BusStrv *v);
void bus_pairs_done(BusPairArray *a);

/*
 * v in decimal, NUL-terminated, into buf of at least U64_DECIMAL_MAX bytes; returns the
 * number of digits. For the request path, where snprintf() was a measurable part of a call.
 */
#define U64_DECIMAL_MAX 21
size_t format_u64(char *buf, uint64_t v);

/* Object path <prefix>/<decimal id> and back. */
int bus_path_from_id(const char *prefix, uint64_t id, char **ret);
int bus_path_to_id(const char *prefix, const char *path, uint64_t *ret);
