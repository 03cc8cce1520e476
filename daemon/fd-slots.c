/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Short names for fds in the fd store: see fd-slots.h. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fd-slots.h"

static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
#define BASE 62U

void fd_slots_init(FdSlots *s) {
        *s = (FdSlots) {};
}

void fd_slots_done(FdSlots *s) {
        free(s->used);
        *s = (FdSlots) {};
}

static bool slot_used(const FdSlots *s, uint32_t slot) {
        return slot < s->n && (s->used[slot / 64] >> (slot % 64)) & 1;
}

/* Cover slots up to and including slot. */
static int grow(FdSlots *s, uint32_t slot) {
        uint32_t n = s->n ? s->n : 1024;
        uint64_t *u;

        if (slot < s->n)
                return 0;
        while (n <= slot)
                n *= 2;
        if (n > FD_SLOTS_MAX)
                n = FD_SLOTS_MAX;
        u = realloc(s->used, n / 64 * sizeof(uint64_t));
        if (!u)
                return -ENOMEM;
        memset(u + s->n / 64, 0, (n - s->n) / 64 * sizeof(uint64_t));
        s->used = u;
        s->n = n;
        return 0;
}

int fd_slots_claim(FdSlots *s, uint32_t slot) {
        int r;

        if (slot >= FD_SLOTS_MAX)
                return -ERANGE;
        if (slot_used(s, slot))
                return -EEXIST;
        r = grow(s, slot);
        if (r < 0)
                return r;
        s->used[slot / 64] |= UINT64_C(1) << (slot % 64);
        if (slot == s->lowest_free)
                s->lowest_free++;
        return 0;
}

int fd_slots_take(FdSlots *s, uint32_t *ret) {
        uint32_t slot = s->lowest_free;
        int r;

        while (slot < s->n && s->used[slot / 64] == UINT64_MAX)
                slot = (slot / 64 + 1) * 64;
        while (slot_used(s, slot))
                slot++;
        if (slot >= FD_SLOTS_MAX)
                return -ENOSPC;
        r = fd_slots_claim(s, slot);
        if (r < 0)
                return r;
        *ret = slot;
        return 0;
}

void fd_slots_release(FdSlots *s, uint32_t slot) {
        if (!slot_used(s, slot))
                return;
        s->used[slot / 64] &= ~(UINT64_C(1) << (slot % 64));
        if (slot < s->lowest_free)
                s->lowest_free = slot;
}

const char *fd_slot_name(uint32_t slot, char buf[static FD_SLOT_NAME_MAX]) {
        uint32_t len = 1, span = BASE;

        /* Names of one character come first, then two, then three. */
        while (slot >= span && len < FD_SLOT_NAME_MAX - 1) {
                slot -= span;
                span *= BASE;
                len++;
        }
        buf[len] = '\0';
        for (uint32_t i = len; i > 0; i--) {
                buf[i - 1] = alphabet[slot % BASE];
                slot /= BASE;
        }
        return buf;
}

bool fd_slot_from_name(const char *name, uint32_t *ret) {
        size_t len = name ? strlen(name) : 0;
        uint32_t slot = 0, offset = 0, span = 1;

        if (len == 0 || len > FD_SLOT_NAME_MAX - 1)
                return false;
        for (size_t i = 0; i < len; i++) {
                const char *p = strchr(alphabet, name[i]);

                if (!p || name[i] == '\0')
                        return false;
                slot = slot * BASE + (uint32_t) (p - alphabet);
        }
        for (size_t i = 1; i < len; i++) {
                span *= BASE;
                offset += span;
        }
        /* offset: the names shorter than this one (62, 62 + 3844). */
        slot += offset;
        if (slot >= FD_SLOTS_MAX)
                return false;
        *ret = slot;
        return true;
}
