/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The GPU VA ranges a KFD context has mapped, as an interval treap keyed by
 * (va, link) and augmented with the subtree's highest end. MAP needs "does
 * this range overlap a mapping in that GPU's VM" (amdgpu_vm_bo_map →
 * amdgpu_vm_it_iter_first) and SVM SET needs "does it overlap any mapped BO"
 * (svm_range_check_vm): both are overlap queries over the handles that are
 * mapped somewhere, filtered by the per-handle GPU mask. Nodes live in the
 * handle entries themselves, so the tree costs no extra arena space.
 */

#include "emu-arena.h"

static uint32_t prio(uint32_t link) {
        /* A fixed hash of the link gives treap priorities without storing them. */
        uint32_t x = link * 0x9E3779B1u;
        x ^= x >> 15;
        x *= 0x85EBCA77u;
        x ^= x >> 13;
        return x;
}

static bool key_less(EmuKernel *k, uint32_t proc, uint32_t a, uint32_t b) {
        EmuHandle *ha = emu_link(k, proc, a), *hb = emu_link(k, proc, b);

        if (ha->va != hb->va)
                return ha->va < hb->va;
        return a < b;
}

static void update(EmuKernel *k, uint32_t proc, uint32_t t) {
        EmuHandle *h = emu_link(k, proc, t);
        uint64_t m = h->va + h->span;

        if (h->left != EMU_NIL)
                m = MAX(m, emu_link(k, proc, h->left)->max_end);
        if (h->right != EMU_NIL)
                m = MAX(m, emu_link(k, proc, h->right)->max_end);
        h->max_end = m;
}

/* Split t into keys < key (l) and keys ≥ key (r). */
static void split(EmuKernel *k, uint32_t proc, uint32_t t, uint32_t key, uint32_t *l, uint32_t *r) {
        if (t == EMU_NIL) {
                *l = *r = EMU_NIL;
                return;
        }
        EmuHandle *h = emu_link(k, proc, t);
        if (key_less(k, proc, t, key)) {
                split(k, proc, h->right, key, &h->right, r);
                *l = t;
        } else {
                split(k, proc, h->left, key, l, &h->left);
                *r = t;
        }
        update(k, proc, t);
}

static uint32_t merge(EmuKernel *k, uint32_t proc, uint32_t l, uint32_t r) {
        if (l == EMU_NIL)
                return r;
        if (r == EMU_NIL)
                return l;
        if (prio(l) > prio(r)) {
                EmuHandle *h = emu_link(k, proc, l);
                h->right = merge(k, proc, h->right, r);
                update(k, proc, l);
                return l;
        }
        EmuHandle *h = emu_link(k, proc, r);
        h->left = merge(k, proc, l, h->left);
        update(k, proc, r);
        return r;
}

void emu_va_insert(EmuKernel *k, uint32_t proc, uint32_t link) {
        EmuProc *p = emu_proc(k, proc);
        EmuHandle *h = emu_link(k, proc, link);
        uint32_t l, r;

        h->left = h->right = EMU_NIL;
        update(k, proc, link);
        split(k, proc, p->va_root, link, &l, &r);
        p->va_root = merge(k, proc, merge(k, proc, l, link), r);
}

static uint32_t remove_rec(EmuKernel *k, uint32_t proc, uint32_t t, uint32_t link) {
        if (t == EMU_NIL)
                return EMU_NIL;
        EmuHandle *h = emu_link(k, proc, t);
        if (t == link)
                return merge(k, proc, h->left, h->right);
        if (key_less(k, proc, link, t))
                h->left = remove_rec(k, proc, h->left, link);
        else
                h->right = remove_rec(k, proc, h->right, link);
        update(k, proc, t);
        return t;
}

void emu_va_remove(EmuKernel *k, uint32_t proc, uint32_t link) {
        EmuProc *p = emu_proc(k, proc);

        p->va_root = remove_rec(k, proc, p->va_root, link);
}

static int query(EmuKernel *k, uint32_t proc, uint32_t t, uint64_t start, uint64_t end,
                 int (*cb)(EmuKernel *, uint32_t, uint32_t, void *), void *userdata) {
        while (t != EMU_NIL) {
                EmuHandle *h = emu_link(k, proc, t);
                int r;

                if (h->max_end <= start)
                        return 0;
                r = query(k, proc, h->left, start, end, cb, userdata);
                if (r != 0)
                        return r;
                if (h->va >= end)
                        return 0;       /* everything to the right starts later still */
                if (h->va + h->span > start) {
                        r = cb(k, proc, t, userdata);
                        if (r != 0)
                                return r;
                }
                t = h->right;
        }
        return 0;
}

int emu_va_overlaps(EmuKernel *k, uint32_t proc, uint64_t start, uint64_t end,
                    int (*cb)(EmuKernel *, uint32_t, uint32_t, void *), void *userdata) {
        return query(k, proc, emu_proc(k, proc)->va_root, start, end, cb, userdata);
}
