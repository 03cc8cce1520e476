/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Objects that carry a 64-bit id (a uint64_t at a fixed offset in the object), kept in id order:
 * lookup by id, and walks in id order from any id (ListRanges' cursor, sliced repair passes).
 * Ids are ≥ 1 and < 2^63.
 *
 * One sorted array of object pointers, 8 bytes per entry and nothing in the objects: ids handed
 * out by a counter arrive in order, so inserting is an append. A removed entry leaves a marker
 * with its id in place (the order holds without moving anything); the array is compacted when
 * markers outnumber the live entries. Lookups guess the position from the ids at both ends, then
 * narrow it down by exponential and binary search: O(1) for ids that are nearly dense, O(log n)
 * at worst. Walking on from the object the last lookup found is O(1) (docs/architecture.md,
 * "Memory per range"). Not thread-safe.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct IdIndex IdIndex;

/* key_offset: where the object's uint64_t id lies. */
int id_index_new(IdIndex **ret, size_t key_offset);
/* Frees the index only; the caller still owns the objects. */
IdIndex *id_index_free(IdIndex *x);

/* -EINVAL for a NULL or misaligned object or an id of 0 or ≥ 2^63, -EEXIST if the id is present, -ENOMEM. */
int id_index_put(IdIndex *x, void *obj);
/* The object with this id, or NULL. */
void *id_index_get(IdIndex *x, uint64_t id);
/* Removes the object with this id and returns it, or NULL if there is none. */
void *id_index_remove(IdIndex *x, uint64_t id);

/* The object with the smallest id ≥ id, or NULL. */
void *id_index_from(IdIndex *x, uint64_t id);
/* The object following obj (which is in the index) in id order, or NULL. */
void *id_index_next(IdIndex *x, const void *obj);

size_t id_index_size(const IdIndex *x);
/* Heap bytes held, for accounting. */
size_t id_index_memory(const IdIndex *x);
/* Checks order, markers and counts. O(n): tests only. -EUCLEAN on inconsistency. */
int id_index_verify(const IdIndex *x);
