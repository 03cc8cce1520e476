/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Data structure
 *
 * One VaNode per live range, and nothing else: a hole is not an object but the gap that follows a
 * range, stored in the range's node. A sentinel node of length zero at the window base (never in
 * the address index) owns the hole before the first range. So n live ranges cost n nodes however
 * fragmented the window is, and a free only merges gaps instead of unlinking hole objects.
 *
 * Each node sits in two intrusive AVL trees:
 *
 *   by_addr  live ranges ordered by start: lookup, exact free, reserve's overlap check, and
 *            "which node owns the hole before me" (the predecessor) for coalescing.
 *   by_gap   nodes whose gap is non-zero, ordered by (gap, start): best fit is a lower-bound
 *            search. Augmented with the largest 2 MiB-aligned extent of any hole in the subtree,
 *            so a 2 MiB-aligned best fit is found by one descent as well.
 *
 * The node is the caller's (va-space.h): embedded in the object it places, it costs no allocation
 * and no pointer back, and the object is found from its node (the daemon's Range).
 *
 * Aligned allocation
 *
 * For alignment A, a hole [h, h + g) fits size s iff align_up(h, A) + s ≤ h + g. Whether a hole of
 * size g ∈ [s, s + A − 4 KiB) fits depends on its address, so a size-ordered index alone would need
 * a scan over that band, O(n) in the worst case. Instead:
 *
 *   4 KiB  every hole of size ≥ s fits: lower bound. Exact best fit.
 *   2 MiB  (the default for ranges ≥ 2 MiB) the augmentation finds the smallest hole whose
 *          2 MiB-aligned extent is ≥ s in one descent. Exact best fit.
 *   other  probe up to VA_SPACE_PROBE candidates in (gap, start) order and take the first that
 *          fits; failing that, the smallest hole that certainly fits: one of size ≥ s + A − 4 KiB
 *          or, for A < 2 MiB, one whose 2 MiB-aligned extent is ≥ s. For A > 2 MiB the candidates
 *          are only holes whose 2 MiB-aligned extent is ≥ s (a necessary condition), stepped
 *          through with the augmentation.
 *
 * The trade-off: for alignments other than 4 KiB and 2 MiB, which the daemon only uses when a
 * client asks, the result may be a hole larger than the best fit, and -ENOMEM is possible although
 * some hole would fit, when more than VA_SPACE_PROBE smaller holes fit the size but not the
 * alignment and no hole certainly fits. In exchange every allocation is O(log n + VA_SPACE_PROBE).
 * In a 16 TiB window the certain fit practically always exists.
 */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "avl.h"
#include "macro.h"
#include "va-space.h"

#define VA_SPACE_PROBE 32

struct VaSpace {
        uint64_t base;
        uint64_t size;

        AvlTree by_addr;
        AvlTree by_gap;
        VaNode head; /* zero-length range at base; its gap is the hole before the first range */

        uint64_t bytes_used;
        uint64_t n_ranges;
        uint64_t n_holes;

        bool window_mapped;
};

static uint64_t va_node_end(const VaNode *n) {
        return n->start + n->size;
}

/* Length of the 2 MiB-aligned part of the hole after n. */
static uint64_t va_node_fit_large(const VaNode *n) {
        uint64_t h = va_node_end(n), e = h + n->gap, a;

        if (!align_up_ok(h, VA_SPACE_LARGE_ALIGNMENT, &a) || a >= e)
                return 0;
        return e - a;
}

/* Where a range of size bytes with the given alignment would start in the hole after n. */
static bool va_node_fits(const VaNode *n, uint64_t size, uint64_t alignment, uint64_t *ret_va) {
        uint64_t h = va_node_end(n), e = h + n->gap, a;

        if (!align_up_ok(h, alignment, &a) || a > e || e - a < size)
                return false;
        *ret_va = a;
        return true;
}

static VaNode *va_gap_entry(const AvlNode *x) {
        return x ? avl_entry(x, VaNode, by_gap) : NULL;
}

static VaNode *va_addr_entry(const AvlNode *x) {
        return x ? avl_entry(x, VaNode, by_addr) : NULL;
}

static uint64_t va_gap_subtree_fit_large(const AvlNode *x) {
        return x ? va_gap_entry(x)->fit_large_max : 0;
}

static void va_gap_update(AvlNode *x) {
        VaNode *n = va_gap_entry(x);
        uint64_t m = va_node_fit_large(n);

        m = MAX(m, va_gap_subtree_fit_large(x->left));
        m = MAX(m, va_gap_subtree_fit_large(x->right));
        n->fit_large_max = m;
}

/* (gap, start) order of the hole index */
static int va_gap_compare(const VaNode *a, const VaNode *b) {
        if (a->gap != b->gap)
                return a->gap < b->gap ? -1 : 1;
        if (a->start != b->start)
                return a->start < b->start ? -1 : 1;
        return 0;
}

static void va_gap_link(VaSpace *s, VaNode *n) {
        AvlNode **link = &s->by_gap.root, *parent = NULL;

        if (n->gap == 0)
                return;

        while (*link) {
                parent = *link;
                link = va_gap_compare(n, va_gap_entry(parent)) < 0 ? &parent->left : &parent->right;
        }
        avl_insert(&s->by_gap, &n->by_gap, parent, link);
        s->n_holes++;
}

static void va_gap_unlink(VaSpace *s, VaNode *n) {
        if (n->gap == 0)
                return;
        avl_erase(&s->by_gap, &n->by_gap);
        s->n_holes--;
}

/* Smallest hole of at least size bytes. */
static VaNode *va_gap_lower_bound(VaSpace *s, uint64_t size) {
        VaNode *best = NULL;

        for (AvlNode *x = s->by_gap.root; x;) {
                VaNode *n = va_gap_entry(x);

                if (n->gap >= size) {
                        best = n;
                        x = x->left;
                } else
                        x = x->right;
        }
        return best;
}

/* First node in x's subtree, in (gap, start) order, whose 2 MiB-aligned extent is ≥ size. */
static VaNode *va_gap_first_fit_large(AvlNode *x, uint64_t size) {
        if (va_gap_subtree_fit_large(x) < size)
                return NULL;

        for (;;) {
                if (va_gap_subtree_fit_large(x->left) >= size)
                        x = x->left;
                else if (va_node_fit_large(va_gap_entry(x)) >= size)
                        return va_gap_entry(x);
                else
                        x = x->right; /* the augmentation guarantees a match there */
        }
}

/* The next node after n, in (gap, start) order, whose 2 MiB-aligned extent is ≥ size. */
static VaNode *va_gap_next_fit_large(VaNode *n, uint64_t size) {
        AvlNode *x = &n->by_gap, *p;
        VaNode *r;

        r = va_gap_first_fit_large(x->right, size);
        if (r)
                return r;

        for (; (p = avl_parent(x)); x = p) {
                if (x != p->left)
                        continue;
                if (va_node_fit_large(va_gap_entry(p)) >= size)
                        return va_gap_entry(p);
                r = va_gap_first_fit_large(p->right, size);
                if (r)
                        return r;
        }
        return NULL;
}

/* The hole a range of size bytes goes into; see the comment at the top for the trade-off. */
static VaNode *va_space_find_hole(VaSpace *s, uint64_t size, uint64_t alignment) {
        VaNode *certain = NULL, *n;
        uint64_t band, va;

        if (alignment == VA_SPACE_PAGE_SIZE)
                return va_gap_lower_bound(s, size);
        if (alignment == VA_SPACE_LARGE_ALIGNMENT)
                return va_gap_first_fit_large(s->by_gap.root, size);

        /* Any hole this large fits whatever its address. */
        if (!__builtin_add_overflow(size, alignment - VA_SPACE_PAGE_SIZE, &band))
                certain = va_gap_lower_bound(s, band);

        if (alignment < VA_SPACE_LARGE_ALIGNMENT) {
                /* 2 MiB-aligned addresses are A-aligned too: another certain fit. */
                n = va_gap_first_fit_large(s->by_gap.root, size);
                if (n && (!certain || va_gap_compare(n, certain) < 0))
                        certain = n;

                n = va_gap_lower_bound(s, size);
                for (unsigned i = 0; n && i < VA_SPACE_PROBE; i++) {
                        if (certain && va_gap_compare(n, certain) >= 0)
                                return certain;
                        if (va_node_fits(n, size, alignment, &va))
                                return n;
                        n = va_gap_entry(avl_next(&n->by_gap));
                }
                return certain;
        }

        n = va_gap_first_fit_large(s->by_gap.root, size);
        for (unsigned i = 0; n && i < VA_SPACE_PROBE; i++) {
                if (certain && va_gap_compare(n, certain) >= 0)
                        return certain;
                if (va_node_fits(n, size, alignment, &va))
                        return n;
                n = va_gap_next_fit_large(n, size);
        }
        return certain;
}

int va_space_new(VaSpace **ret, uint64_t base, uint64_t size) {
        VaSpace *s;
        uint64_t end;

        assert(ret);

        if (size == 0 || base % VA_SPACE_PAGE_SIZE != 0 || size % VA_SPACE_PAGE_SIZE != 0)
                return -EINVAL;
        if (__builtin_add_overflow(base, size, &end))
                return -EINVAL;

        s = malloc(sizeof(VaSpace));
        if (!s)
                return -ENOMEM;

        *s = (VaSpace) {
                .base = base,
                .size = size,
                .by_gap.update = va_gap_update,
                .head.start = base,
                .head.gap = size,
        };
        va_gap_link(s, &s->head);

        *ret = s;
        return 0;
}

VaSpace *va_space_free(VaSpace *s) {
        if (!s)
                return NULL;

        if (s->window_mapped)
                (void) munmap((void *) (uintptr_t) s->base, s->size);
        free(s);
        return NULL;
}

/* The node with the greatest start ≤ addr, or the sentinel if there is none. */
static VaNode *va_space_node_at_or_before(VaSpace *s, uint64_t addr) {
        VaNode *best = &s->head;

        for (AvlNode *x = s->by_addr.root; x;) {
                VaNode *n = va_addr_entry(x);

                if (n->start <= addr) {
                        best = n;
                        x = x->right;
                } else
                        x = x->left;
        }
        return best;
}

/*
 * Carves [va, va + size) out of the hole after p, which must contain it, into the caller's node n.
 * n is linked right after p in address order without a search.
 */
static void va_space_split(VaSpace *s, VaNode *p, VaNode *n, uint64_t va, uint64_t size) {
        uint64_t hole_end = va_node_end(p) + p->gap;

        va_gap_unlink(s, p);
        p->gap = va - va_node_end(p);
        va_gap_link(s, p);

        *n = (VaNode) { .start = va, .size = size, .gap = hole_end - (va + size) };
        va_gap_link(s, n);
        avl_insert_after(&s->by_addr, p == &s->head ? NULL : &p->by_addr, &n->by_addr);

        s->bytes_used += size;
        s->n_ranges++;
}

int va_space_alloc(VaSpace *s, VaNode *node, uint64_t size, uint64_t alignment) {
        VaNode *p;
        uint64_t va;
        bool ok;

        assert(s);
        assert(node);

        if (size == 0 || !align_up_ok(size, VA_SPACE_PAGE_SIZE, &size))
                return -EINVAL;
        if (alignment == 0)
                alignment = size >= VA_SPACE_LARGE_ALIGNMENT ? VA_SPACE_LARGE_ALIGNMENT : VA_SPACE_PAGE_SIZE;
        else if (alignment < VA_SPACE_PAGE_SIZE || (alignment & (alignment - 1)) != 0)
                return -EINVAL;
        if (size > s->size - s->bytes_used)
                return -ENOMEM;

        p = va_space_find_hole(s, size, alignment);
        if (!p)
                return -ENOMEM;
        ok = va_node_fits(p, size, alignment, &va);
        assert(ok);
        (void) ok;

        va_space_split(s, p, node, va, size);
        return 0;
}

int va_space_reserve(VaSpace *s, VaNode *node, uint64_t va, uint64_t size) {
        VaNode *p;
        uint64_t end;

        assert(s);
        assert(node);

        if (size == 0 || va % VA_SPACE_PAGE_SIZE != 0 || size % VA_SPACE_PAGE_SIZE != 0)
                return -EINVAL;
        if (__builtin_add_overflow(va, size, &end) || va < s->base || end > s->base + s->size)
                return -ERANGE;

        p = va_space_node_at_or_before(s, va);
        if (p != &s->head && p->start == va)
                return -EEXIST;
        if (va_node_end(p) > va || end > va_node_end(p) + p->gap)
                return -EBUSY;

        va_space_split(s, p, node, va, size);
        return 0;
}

int va_space_release(VaSpace *s, VaNode *n) {
        VaNode *p, *k = NULL;
        uint64_t size;

        assert(s);
        assert(n);

        /* Found by its start, so that a node that is not in s (never placed, released already, or
         * refused by va_space_reserve() for a start another node has) changes nothing. */
        for (AvlNode *x = s->by_addr.root; x;) {
                k = va_addr_entry(x);
                if (n->start == k->start)
                        break;
                x = n->start < k->start ? x->left : x->right;
                k = NULL;
        }
        if (k != n)
                return -ENOENT;

        p = va_addr_entry(avl_prev(&n->by_addr)) ?: &s->head;
        size = n->size;

        /* The hole before n, n itself and the hole after it become the hole after p. */
        va_gap_unlink(s, n);
        va_gap_unlink(s, p);
        p->gap += n->size + n->gap;
        va_gap_link(s, p);
        avl_erase(&s->by_addr, &n->by_addr);
        n->by_gap = n->by_addr = (AvlNode) {};
        n->gap = n->fit_large_max = 0;

        s->bytes_used -= size;
        s->n_ranges--;
        return 0;
}

VaNode *va_space_lookup(VaSpace *s, uint64_t addr) {
        VaNode *n;

        assert(s);

        n = va_space_node_at_or_before(s, addr);
        if (n == &s->head || addr - n->start >= n->size)
                return NULL;
        return n;
}

VaNode *va_space_next(VaSpace *s, uint64_t addr) {
        VaNode *best = NULL;

        assert(s);

        for (AvlNode *x = s->by_addr.root; x;) {
                VaNode *n = va_addr_entry(x);

                if (n->start >= addr) {
                        best = n;
                        x = x->left;
                } else
                        x = x->right;
        }
        return best;
}

void va_space_get_stats(const VaSpace *s, VaSpaceStats *ret) {
        const AvlNode *largest;

        assert(s);
        assert(ret);

        largest = avl_last(&s->by_gap);
        *ret = (VaSpaceStats) {
                .base = s->base,
                .size = s->size,
                .bytes_used = s->bytes_used,
                .largest_hole = largest ? va_gap_entry(largest)->gap : 0,
                .n_ranges = s->n_ranges,
                .n_holes = s->n_holes,
        };
}

int va_space_reserve_window(VaSpace *s) {
        void *p;

        assert(s);

        if (s->window_mapped)
                return -EEXIST;

        p = mmap((void *) (uintptr_t) s->base, s->size, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
        if (p == MAP_FAILED)
                return negative_errno();
        if (p != (void *) (uintptr_t) s->base) {
                /* Kernels before 4.17 take MAP_FIXED_NOREPLACE as a mere hint and map elsewhere. */
                (void) munmap(p, s->size);
                return -EEXIST;
        }

        s->window_mapped = true;
        return 0;
}

bool va_space_window_reserved(const VaSpace *s) {
        return s && s->window_mapped;
}

int va_space_find_window_conflict(uint64_t base, uint64_t size, uint64_t *ret_start, uint64_t *ret_end,
                                  char **ret_name) {
        _cleanup_fclose_ FILE *f = NULL;
        _cleanup_free_ char *line = NULL;
        size_t allocated = 0;
        uint64_t window_end;

        if (__builtin_add_overflow(base, size, &window_end))
                window_end = UINT64_MAX;

        f = fopen("/proc/self/maps", "re");
        if (!f)
                return negative_errno();

        while (getline(&line, &allocated, f) >= 0) {
                uint64_t start, end;
                int name_offset = 0;
                char *name;

                /* "start-end perms offset dev inode   name" */
                if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %*s %*s %*s %*s %n", &start, &end,
                           &name_offset) < 2)
                        continue;
                if (end <= base || start >= window_end)
                        continue;

                if (ret_name) {
                        name = strdup(name_offset > 0 ? line + name_offset : "");
                        if (!name)
                                return -ENOMEM;
                        name[strcspn(name, "\n")] = 0;
                        *ret_name = name;
                }
                if (ret_start)
                        *ret_start = start;
                if (ret_end)
                        *ret_end = end;
                return 0;
        }
        if (ferror(f))
                return -EIO;

        return -ENOENT;
}

int va_space_verify(VaSpace *s) {
        uint64_t used = 0, ranges = 0, holes = 0, gap_sum = 0, tree_gap_sum = 0;
        const VaNode *prev = &s->head;
        int64_t n_addr, n_gap;

        n_addr = avl_verify(&s->by_addr);
        n_gap = avl_verify(&s->by_gap);
        if (n_addr < 0 || n_gap < 0)
                return -EUCLEAN;

        if (prev->gap > 0)
                holes++;
        gap_sum += prev->gap;
        for (const AvlNode *x = avl_first(&s->by_addr); x; x = avl_next(x)) {
                const VaNode *n = va_addr_entry(x);

                if (n->size == 0 || n->start % VA_SPACE_PAGE_SIZE != 0 || n->size % VA_SPACE_PAGE_SIZE != 0)
                        return -EUCLEAN;
                if (n->start != va_node_end(prev) + prev->gap)
                        return -EUCLEAN;
                used += n->size;
                ranges++;
                gap_sum += n->gap;
                if (n->gap > 0)
                        holes++;
                prev = n;
        }
        if (va_node_end(prev) + prev->gap != s->base + s->size)
                return -EUCLEAN;

        prev = NULL;
        for (const AvlNode *x = avl_first(&s->by_gap); x; x = avl_next(x)) {
                const VaNode *n = va_gap_entry(x);
                uint64_t m = va_node_fit_large(n);

                m = MAX(m, va_gap_subtree_fit_large(x->left));
                m = MAX(m, va_gap_subtree_fit_large(x->right));
                if (n->gap == 0 || n->fit_large_max != m || (prev && va_gap_compare(prev, n) >= 0))
                        return -EUCLEAN;
                tree_gap_sum += n->gap;
                prev = n;
        }

        if ((uint64_t) n_addr != ranges || ranges != s->n_ranges || used != s->bytes_used ||
            (uint64_t) n_gap != holes || holes != s->n_holes || gap_sum != tree_gap_sum ||
            gap_sum != s->size - used)
                return -EUCLEAN;

        return 0;
}
