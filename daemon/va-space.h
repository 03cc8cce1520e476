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

#include "avl.h"

#define VA_SPACE_PAGE_SIZE UINT64_C(0x1000)
#define VA_SPACE_LARGE_ALIGNMENT UINT64_C(0x200000) /* default alignment for ranges ≥ 2 MiB */
#define VA_SPACE_DEFAULT_BASE UINT64_C(0x400000000000)
#define VA_SPACE_DEFAULT_SIZE UINT64_C(0x100000000000) /* 16 TiB */

typedef struct VaSpace VaSpace;

/*
 * One range of the space, embedded in the caller's object, which va_space_lookup() and
 * va_space_next() find through it (container_of). The caller reads start and size; it may keep
 * its own values there while the node is not in a VaSpace (va_space_alloc() and
 * va_space_reserve() set them, va_space_release() leaves them). The rest is va-space.c's.
 *
 * Field order matters at 10^6 ranges, where every level of an address search is a cache miss: the
 * address links and start share 32 bytes.
 */
typedef struct VaNode {
        AvlNode by_addr;
        uint64_t start;
        uint64_t size;
        AvlNode by_gap;         /* linked only while gap > 0 */
        uint64_t gap;           /* length of the hole after this range */
        uint64_t fit_large_max; /* max over the by_gap subtree of the 2 MiB-aligned extent of a hole */
} VaNode;

typedef struct VaSpaceStats {
        uint64_t base;
        uint64_t size;
        uint64_t bytes_used;
        uint64_t largest_hole;
        uint64_t n_ranges;
        uint64_t n_holes;
} VaSpaceStats;

/*
 * A window [base, base + size): both multiples of 4 KiB, size > 0, end ≤ 2^64 − 4 KiB; otherwise
 * -EINVAL. Nothing is mapped until va_space_reserve_window().
 */
int va_space_new(VaSpace **ret, uint64_t base, uint64_t size);

/* Unmaps the window if va_space_reserve_window() mapped it; the nodes are the caller's. */
VaSpace *va_space_free(VaSpace *s);

/*
 * Places node over size bytes, rounded up to 4 KiB, at the smallest hole that fits (best fit): its
 * start and size say where. Never allocates memory.
 * alignment 0 picks 2 MiB for sizes ≥ 2 MiB, 4 KiB otherwise; an explicit alignment must be a power
 * of two ≥ 4 KiB. Returns -EINVAL for size 0, a bad alignment or overflow, -ENOMEM if no hole fits
 * (or, for alignments other than 4 KiB and 2 MiB, if none was found; see va-space.c).
 */
int va_space_alloc(VaSpace *s, VaNode *node, uint64_t size, uint64_t alignment);

/*
 * Places node over exactly [va, va + size), e.g. when restoring recorded ranges after a restart. Both must
 * be multiples of 4 KiB (-EINVAL). Returns -ERANGE if the range is not inside the window, -EEXIST
 * if a range already starts at va, -EBUSY if it overlaps another range.
 */
int va_space_reserve(VaSpace *s, VaNode *node, uint64_t va, uint64_t size);

/*
 * Takes node out; neighbouring holes merge. Returns -ENOENT, changing nothing, if node is not in s
 * (never placed, released already, or refused by va_space_reserve()).
 */
int va_space_release(VaSpace *s, VaNode *node);

/*
 * The node containing addr; NULL if addr lies in a hole or outside the window. The VA space
 * doubles as the index from address to object, without a table of its own.
 */
VaNode *va_space_lookup(VaSpace *s, uint64_t addr);

/* The first node starting at or after addr, to enumerate ranges; NULL if none. */
VaNode *va_space_next(VaSpace *s, uint64_t addr);

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
