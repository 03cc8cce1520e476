/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Intrusive AVL tree with parent pointers and optional augmentation.
 *
 * The node is three words: the balance factor lives in the two low bits of the parent pointer, so
 * an object can sit in two trees (the VA allocator's address and hole indexes) for 48 bytes.
 * Like the kernel's rbtree the tree never compares keys itself: callers walk down with their own
 * comparison, then link the new node at the slot they found with avl_insert(). AVL rather than
 * red-black because lookups dominate and AVL trees are shallower (≤ 1.44·log2 n).
 *
 * Augmentation: if AvlTree.update is set, it is called for every node whose subtree changed, always
 * children before parents, so it can recompute a per-subtree aggregate from the node itself and
 * its two children. Not thread-safe; callers provide the lock.
 */

#include <stddef.h>
#include <stdint.h>

typedef struct AvlNode {
        uintptr_t parent_balance; /* parent pointer | (balance + 1) */
        struct AvlNode *left;
        struct AvlNode *right;
} AvlNode;

typedef void (*AvlUpdateFunc)(AvlNode *n);

typedef struct AvlTree {
        AvlNode *root;
        AvlUpdateFunc update; /* NULL for trees without augmentation */
} AvlTree;

#define avl_entry(ptr, type, member) ((type *) ((char *) (ptr) - offsetof(type, member)))

static inline AvlNode *avl_parent(const AvlNode *n) {
        return (AvlNode *) (n->parent_balance & ~(uintptr_t) 3);
}

/* height(right) − height(left), one of −1, 0, +1 */
static inline int avl_balance(const AvlNode *n) {
        return (int) (n->parent_balance & 3) - 1;
}

/* Links n at *link, a NULL child slot of parent (or &t->root with parent NULL), and rebalances. */
void avl_insert(AvlTree *t, AvlNode *n, AvlNode *parent, AvlNode **link);

/* Links n as the in-order successor of pos, or as the first node if pos is NULL; no comparisons. */
void avl_insert_after(AvlTree *t, AvlNode *pos, AvlNode *n);

void avl_erase(AvlTree *t, AvlNode *n);

AvlNode *avl_first(const AvlTree *t);
AvlNode *avl_last(const AvlTree *t);
AvlNode *avl_next(const AvlNode *n);
AvlNode *avl_prev(const AvlNode *n);

/*
 * Checks parent links, balance factors and heights of the whole tree; returns the number of
 * nodes, or -EUCLEAN. O(n): for tests only.
 */
int64_t avl_verify(const AvlTree *t);
