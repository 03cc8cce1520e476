/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The SVM address space (docs/architecture.md, "The SVM address space"): hands out virtual address ranges from one window so that every
 * range has the same VA on every GPU, in the daemon and in every client.
 *
 * Every operation is O(log n) in the number of live ranges; see va-space.c for the data structure
 * and for the one place where aligned allocation trades completeness for that bound. Not
 * thread-safe; the daemon calls it from its event loop only.
 */

#include <stdbool.h>
#include <stdint.h>

#define VA_SPACE_PAGE_SIZE UINT64_C(0x1000)
#define VA_SPACE_LARGE_ALIGNMENT UINT64_C(0x200000) /* default alignment for ranges ≥ 2 MiB */
#define VA_SPACE_DEFAULT_BASE UINT64_C(0x400000000000)
#define VA_SPACE_DEFAULT_SIZE UINT64_C(0x100000000000) /* 16 TiB */

typedef struct VaSpace VaSpace;

typedef struct VaSpaceStats {
        uint64_t base;
        uint64_t size;
        uint64_t bytes_used;
        uint64_t largest_hole;
        uint64_t n_ranges;
        uint64_t n_holes;
        uint64_t metadata_bytes; /* heap memory held for bookkeeping, including free node slots */
} VaSpaceStats;

/*
 * A window [base, base + size): both multiples of 4 KiB, size > 0, end ≤ 2^64 − 4 KiB; otherwise
 * -EINVAL. Nothing is mapped until va_space_reserve_window().
 */
int va_space_new(VaSpace **ret, uint64_t base, uint64_t size);

/* Releases the bookkeeping and unmaps the window if va_space_reserve_window() mapped it. */
VaSpace *va_space_free(VaSpace *s);

/*
 * Allocates size bytes, rounded up to 4 KiB, for data (kept with the range, may be NULL), at the smallest hole that fits (best fit).
 * alignment 0 picks 2 MiB for sizes ≥ 2 MiB, 4 KiB otherwise; an explicit alignment must be a power
 * of two ≥ 4 KiB. Returns -EINVAL for size 0, a bad alignment or overflow, -ENOMEM if no hole fits
 * (or, for alignments other than 4 KiB and 2 MiB, if none was found; see va-space.c).
 */
int va_space_alloc(VaSpace *s, uint64_t size, uint64_t alignment, void *data, uint64_t *ret_va);

/*
 * Claims exactly [va, va + size) for data, e.g. when restoring recorded ranges after a restart. Both must
 * be multiples of 4 KiB (-EINVAL). Returns -ERANGE if the range is not inside the window, -EEXIST
 * if a range already starts at va, -EBUSY if it overlaps another range.
 */
int va_space_reserve(VaSpace *s, uint64_t va, uint64_t size, void *data);

/*
 * Releases the range starting at va; neighbouring holes merge. Returns -ENOENT if no range starts
 * there. ret_size, if non-NULL, receives the range's size.
 */
int va_space_release(VaSpace *s, uint64_t va, uint64_t *ret_size);

/*
 * Finds the range containing addr; -ENOENT if addr lies in a hole or outside the window. ret_data
 * receives the data given to va_space_alloc() or va_space_reserve(): the VA space doubles as the
 * index from address to object, without a table of its own.
 */
int va_space_lookup(VaSpace *s, uint64_t addr, uint64_t *ret_start, uint64_t *ret_size, void **ret_data);

/* Finds the first range starting at or after addr, to enumerate ranges; -ENOENT if none. */
int va_space_next(VaSpace *s, uint64_t addr, uint64_t *ret_start, uint64_t *ret_size, void **ret_data);

void va_space_get_stats(const VaSpace *s, VaSpaceStats *ret);

/*
 * Maps the window PROT_NONE with MAP_FIXED_NOREPLACE in the calling process, so that no library
 * mmap() can land on an address a client may be given. Returns -EEXIST if anything is already
 * mapped inside the window, this VaSpace's own earlier reservation included;
 * va_space_find_window_conflict() says what is there.
 */
int va_space_reserve_window(VaSpace *s);

bool va_space_window_reserved(const VaSpace *s);

/*
 * Reads /proc/self/maps for the first mapping overlapping [base, base + size), to name the culprit
 * when va_space_reserve_window() fails. Returns -ENOENT if there is none. ret_name receives the
 * mapping's path or pseudo-name ("[heap]"), or "" for an anonymous mapping; the caller frees it.
 */
int va_space_find_window_conflict(uint64_t base, uint64_t size, uint64_t *ret_start, uint64_t *ret_end,
                                  char **ret_name);

/* Checks every internal invariant against a full walk; -EUCLEAN on inconsistency. O(n): tests only. */
int va_space_verify(VaSpace *s);
