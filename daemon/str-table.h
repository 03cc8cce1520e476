/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Map from a string key to a pointer, on top of IdTable: keys are hashed
 * (FNV-1a) and colliding keys chained. Used for quota scopes, caller
 * identities, clients (bus unique names) and share tokens. The table owns
 * copies of the keys, not the values. Not thread-safe.
 */

#include <stdbool.h>
#include <stddef.h>

typedef struct StrTable StrTable;

int str_table_new(StrTable **ret);
StrTable *str_table_free(StrTable *t);

/* -EEXIST if key is present, -ENOMEM. */
int str_table_put(StrTable *t, const char *key, void *value);
void *str_table_get(const StrTable *t, const char *key);
void *str_table_remove(StrTable *t, const char *key);
size_t str_table_size(const StrTable *t);

/* Iterate with *state = NULL at start; false at the end. The table must not change meanwhile. */
typedef struct StrTableIter {
        size_t slot;
        void *entry;
} StrTableIter;
bool str_table_iterate(const StrTable *t, StrTableIter *i, const char **ret_key, void **ret_value);
