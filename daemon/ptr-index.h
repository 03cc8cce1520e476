/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Where a pointer sits in an array its caller keeps, found without a scan. A transaction or a
 * Commit looks up, for each of its operations, the ranges it has already touched; at 1024
 * operations a scan each made that quadratic (docs/benchmarks.md, "Commit of K operations").
 *
 * The array is the caller's: entries of `stride` bytes with the pointer at offset 0, which may
 * move (realloc) and may be set to NULL (no longer found). The index holds positions only. Up to
 * PTR_INDEX_SCAN entries it holds nothing and a lookup scans: one operation allocates nothing.
 */

#include <stddef.h>
#include <sys/types.h>

#define PTR_INDEX_SCAN 8U

typedef struct PtrIndex {
        size_t *slots;          /* position + 1 of an entry; 0: empty */
        size_t n_slots;         /* a power of two, or 0 while the array is scanned */
} PtrIndex;

/* The position of key among the n entries of base, or -1. */
ssize_t ptr_index_find(const PtrIndex *x, const void *base, size_t stride, size_t n, const void *key);
/*
 * Entry n - 1 of base was appended (its key not among the others). Entries appended without
 * this call are found once the index is next rebuilt, so only those with NULL keys may skip it.
 * Without memory for the index, lookups scan again: slower, never wrong.
 */
void ptr_index_added(PtrIndex *x, const void *base, size_t stride, size_t n);
void ptr_index_done(PtrIndex *x);
