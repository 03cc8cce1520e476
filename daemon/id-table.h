/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Map from a 64-bit id (range ids, request ids) to a pointer. The daemon generates ids from a
 * counter starting at 1; id 0 means "no id" and is never stored.
 *
 * Open addressing with linear probing and backward-shift deletion: no tombstones, so lookups stay
 * short however much the table churns. get/put/remove are O(1) expected; growing and shrinking
 * rehash, O(1) amortized. The table does not own the values. Not thread-safe.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct IdTable IdTable;

int id_table_new(IdTable **ret);

/* Frees the table only; the caller still owns the values (drain with id_table_steal_first()). */
IdTable *id_table_free(IdTable *t);

/* Returns -EINVAL for id 0 or a NULL value, -EEXIST if id is present, -ENOMEM. */
int id_table_put(IdTable *t, uint64_t id, void *value);

/* The value stored for id, or NULL. */
void *id_table_get(const IdTable *t, uint64_t id);

/* Removes id and returns its value, or NULL if it was not present. */
void *id_table_remove(IdTable *t, uint64_t id);

/* Removes and returns some entry, or NULL if the table is empty; draining is O(capacity) overall. */
void *id_table_steal_first(IdTable *t, uint64_t *ret_id);

size_t id_table_size(const IdTable *t);

/* Heap bytes held by the table, for accounting. */
size_t id_table_memory(const IdTable *t);

/*
 * Iterates: start with *state = 0; returns false at the end. The table must not be modified
 * during the iteration.
 */
bool id_table_iterate(const IdTable *t, size_t *state, uint64_t *ret_id, void **ret_value);
