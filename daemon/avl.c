/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdbool.h>

#include "avl.h"

static void avl_set_parent(AvlNode *n, AvlNode *p) {
        n->parent_balance = (uintptr_t) p | (n->parent_balance & 3);
}

static void avl_set_balance(AvlNode *n, int b) {
        n->parent_balance = (n->parent_balance & ~(uintptr_t) 3) | (uintptr_t) (b + 1);
}

static void avl_set_parent_balance(AvlNode *n, AvlNode *p, int b) {
        n->parent_balance = (uintptr_t) p | (uintptr_t) (b + 1);
}

static void avl_replace_child(AvlTree *t, AvlNode *parent, AvlNode *old, AvlNode *new) {
        if (!parent)
                t->root = new;
        else if (parent->left == old)
                parent->left = new;
        else
                parent->right = new;
}

static void avl_update_to_root(AvlTree *t, AvlNode *n) {
        if (!t->update)
                return;
        for (; n; n = avl_parent(n))
                t->update(n);
}

/*
 * Rotations leave balance factors to the caller. The subtree keeps its set of nodes, so only the
 * demoted node and the new top need their augmented data recomputed, in that order; ancestors
 * are unaffected.
 */
static void avl_rotate_left(AvlTree *t, AvlNode *a) {
        AvlNode *b = a->right, *p = avl_parent(a);

        a->right = b->left;
        if (b->left)
                avl_set_parent(b->left, a);
        b->left = a;
        avl_set_parent(a, b);
        avl_set_parent(b, p);
        avl_replace_child(t, p, a, b);

        if (t->update) {
                t->update(a);
                t->update(b);
        }
}

static void avl_rotate_right(AvlTree *t, AvlNode *a) {
        AvlNode *b = a->left, *p = avl_parent(a);

        a->left = b->right;
        if (b->right)
                avl_set_parent(b->right, a);
        b->right = a;
        avl_set_parent(a, b);
        avl_set_parent(b, p);
        avl_replace_child(t, p, a, b);

        if (t->update) {
                t->update(a);
                t->update(b);
        }
}

void avl_insert(AvlTree *t, AvlNode *n, AvlNode *parent, AvlNode **link) {
        n->left = n->right = NULL;
        avl_set_parent_balance(n, parent, 0);
        *link = n;

        /* Aggregates first: the rotations below preserve them above the rotated subtree. */
        avl_update_to_root(t, n);

        for (AvlNode *x = n, *p = parent; p; x = p, p = avl_parent(p)) {
                int b = avl_balance(p);

                if (x == p->left) {
                        if (b == +1) {
                                avl_set_balance(p, 0);
                                return;
                        }
                        if (b == 0) {
                                avl_set_balance(p, -1);
                                continue; /* p grew taller, so may its parent */
                        }

                        /* p leans left by 2 */
                        if (avl_balance(x) == -1) {
                                avl_rotate_right(t, p);
                                avl_set_balance(p, 0);
                                avl_set_balance(x, 0);
                        } else {
                                AvlNode *g = x->right;
                                int gb = avl_balance(g);

                                avl_rotate_left(t, x);
                                avl_rotate_right(t, p);
                                avl_set_balance(x, gb == +1 ? -1 : 0);
                                avl_set_balance(p, gb == -1 ? +1 : 0);
                                avl_set_balance(g, 0);
                        }
                        return;
                }

                if (b == -1) {
                        avl_set_balance(p, 0);
                        return;
                }
                if (b == 0) {
                        avl_set_balance(p, +1);
                        continue;
                }

                if (avl_balance(x) == +1) {
                        avl_rotate_left(t, p);
                        avl_set_balance(p, 0);
                        avl_set_balance(x, 0);
                } else {
                        AvlNode *g = x->left;
                        int gb = avl_balance(g);

                        avl_rotate_right(t, x);
                        avl_rotate_left(t, p);
                        avl_set_balance(x, gb == -1 ? +1 : 0);
                        avl_set_balance(p, gb == +1 ? -1 : 0);
                        avl_set_balance(g, 0);
                }
                return;
        }
}

void avl_insert_after(AvlTree *t, AvlNode *pos, AvlNode *n) {
        AvlNode *p, **link;

        if (!pos) {
                p = NULL;
                link = &t->root;
        } else {
                p = pos;
                link = &pos->right;
        }
        while (*link) {
                p = *link;
                link = &p->left;
        }
        avl_insert(t, n, p, link);
}

void avl_erase(AvlTree *t, AvlNode *n) {
        AvlNode *parent;
        bool left_shrunk = false; /* which side of parent lost height */

        if (n->left && n->right) {
                /* Put n's in-order successor s in n's place; the node unlinked is s's old slot. */
                AvlNode *s, *np = avl_parent(n);

                for (s = n->right; s->left; s = s->left)
                        ;

                s->left = n->left;
                avl_set_parent(n->left, s);
                if (s == n->right) {
                        parent = s;
                        left_shrunk = false;
                } else {
                        AvlNode *sp = avl_parent(s);

                        sp->left = s->right;
                        if (s->right)
                                avl_set_parent(s->right, sp);
                        s->right = n->right;
                        avl_set_parent(n->right, s);
                        parent = sp;
                        left_shrunk = true;
                }
                avl_set_parent_balance(s, np, avl_balance(n));
                avl_replace_child(t, np, n, s);
        } else {
                AvlNode *child = n->left ?: n->right;

                parent = avl_parent(n);
                if (child)
                        avl_set_parent(child, parent);
                if (parent)
                        left_shrunk = parent->left == n;
                avl_replace_child(t, parent, n, child);
        }

        avl_update_to_root(t, parent);

        while (parent) {
                int b = avl_balance(parent);
                AvlNode *top, *gp;

                if (left_shrunk) {
                        if (b == 0) {
                                avl_set_balance(parent, +1);
                                return;
                        }
                        if (b == -1) {
                                avl_set_balance(parent, 0);
                                top = parent;
                        } else {
                                AvlNode *r = parent->right;
                                int rb = avl_balance(r);

                                if (rb == 0) {
                                        /* the subtree keeps its height: done */
                                        avl_rotate_left(t, parent);
                                        avl_set_balance(parent, +1);
                                        avl_set_balance(r, -1);
                                        return;
                                }
                                if (rb == +1) {
                                        avl_rotate_left(t, parent);
                                        avl_set_balance(parent, 0);
                                        avl_set_balance(r, 0);
                                        top = r;
                                } else {
                                        AvlNode *g = r->left;
                                        int gb = avl_balance(g);

                                        avl_rotate_right(t, r);
                                        avl_rotate_left(t, parent);
                                        avl_set_balance(parent, gb == +1 ? -1 : 0);
                                        avl_set_balance(r, gb == -1 ? +1 : 0);
                                        avl_set_balance(g, 0);
                                        top = g;
                                }
                        }
                } else {
                        if (b == 0) {
                                avl_set_balance(parent, -1);
                                return;
                        }
                        if (b == +1) {
                                avl_set_balance(parent, 0);
                                top = parent;
                        } else {
                                AvlNode *l = parent->left;
                                int lb = avl_balance(l);

                                if (lb == 0) {
                                        avl_rotate_right(t, parent);
                                        avl_set_balance(parent, -1);
                                        avl_set_balance(l, +1);
                                        return;
                                }
                                if (lb == -1) {
                                        avl_rotate_right(t, parent);
                                        avl_set_balance(parent, 0);
                                        avl_set_balance(l, 0);
                                        top = l;
                                } else {
                                        AvlNode *g = l->right;
                                        int gb = avl_balance(g);

                                        avl_rotate_left(t, l);
                                        avl_rotate_right(t, parent);
                                        avl_set_balance(parent, gb == -1 ? +1 : 0);
                                        avl_set_balance(l, gb == +1 ? -1 : 0);
                                        avl_set_balance(g, 0);
                                        top = g;
                                }
                        }
                }

                /* top's subtree is one shorter than before: continue upwards */
                gp = avl_parent(top);
                if (!gp)
                        return;
                left_shrunk = gp->left == top;
                parent = gp;
        }
}

AvlNode *avl_first(const AvlTree *t) {
        AvlNode *n = t->root;

        if (!n)
                return NULL;
        while (n->left)
                n = n->left;
        return n;
}

AvlNode *avl_last(const AvlTree *t) {
        AvlNode *n = t->root;

        if (!n)
                return NULL;
        while (n->right)
                n = n->right;
        return n;
}

AvlNode *avl_next(const AvlNode *n) {
        AvlNode *p;

        if (n->right) {
                for (n = n->right; n->left; n = n->left)
                        ;
                return (AvlNode *) n;
        }
        while ((p = avl_parent(n)) && n == p->right)
                n = p;
        return p;
}

AvlNode *avl_prev(const AvlNode *n) {
        AvlNode *p;

        if (n->left) {
                for (n = n->left; n->right; n = n->right)
                        ;
                return (AvlNode *) n;
        }
        while ((p = avl_parent(n)) && n == p->left)
                n = p;
        return p;
}

/* Returns the height of n's subtree, or -1 on inconsistency; adds the node count to *count. */
static int avl_verify_subtree(const AvlNode *n, const AvlNode *parent, int64_t *count) {
        int hl, hr;

        if (!n)
                return 0;
        if (avl_parent(n) != parent || (n->parent_balance & 3) == 3)
                return -1;
        hl = avl_verify_subtree(n->left, n, count);
        hr = avl_verify_subtree(n->right, n, count);
        if (hl < 0 || hr < 0 || hr - hl != avl_balance(n))
                return -1;
        (*count)++;
        return (hl > hr ? hl : hr) + 1;
}

int64_t avl_verify(const AvlTree *t) {
        int64_t count = 0;

        if (avl_verify_subtree(t->root, NULL, &count) < 0)
                return -EUCLEAN;
        return count;
}
