/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "id-index.h"
#include "macro.h"

#define ID_INDEX_MIN_ALLOCATED 16
/* Markers are compacted away once they outnumber live entries and are at least this many. */
#define ID_INDEX_MIN_MARKERS 64

/* An entry: an object pointer (low bit 0: objects are aligned), or (id << 1) | 1 for a removed one. */
typedef uint64_t IdIndexSlot;

struct IdIndex {
        IdIndexSlot *slots;     /* ascending ids */
        size_t n_slots;         /* live entries and markers */
        size_t allocated;
        size_t n_live;
        size_t key_offset;
        size_t hint;            /* the slot the last lookup found: walks on from there are O(1) */
        size_t first_live;      /* every slot below it is a marker: walks from the start skip them at once */
};

static bool slot_is_marker(IdIndexSlot s) {
        return s & 1;
}

static uint64_t slot_key(const IdIndex *x, IdIndexSlot s) {
        if (slot_is_marker(s))
                return s >> 1;
        return *(const uint64_t *) ((const char *) (uintptr_t) s + x->key_offset);
}

static uint64_t key_at(const IdIndex *x, size_t i) {
        return slot_key(x, x->slots[i]);
}

int id_index_new(IdIndex **ret, size_t key_offset) {
        IdIndex *x;

        assert(ret);
        x = malloc(sizeof(IdIndex));
        if (!x)
                return -ENOMEM;
        *x = (IdIndex) { .key_offset = key_offset };
        *ret = x;
        return 0;
}

IdIndex *id_index_free(IdIndex *x) {
        if (!x)
                return NULL;
        free(x->slots);
        free(x);
        return NULL;
}

/* The first slot whose key is ≥ id, or n_slots. */
static size_t lower_bound(const IdIndex *x, uint64_t id) {
        size_t n = x->n_slots, lo, hi, g, step;
        uint64_t first, last;

        if (n == 0)
                return 0;
        first = key_at(x, 0);
        last = key_at(x, n - 1);
        if (id <= first)
                return 0;
        if (id > last)
                return n;

        /* Keys ascend strictly, so slot 0 < id ≤ slot n-1: guess by interpolation, then bracket
         * [lo, hi) around the guess by doubling steps: O(log distance of the guess). */
        g = (size_t) ((unsigned __int128) (id - first) * (n - 1) / (last - first));
        if (key_at(x, g) < id) {
                lo = g + 1;
                hi = n - 1; /* key_at(n - 1) ≥ id */
                for (step = 1; lo + step < hi; step *= 2) {
                        if (key_at(x, lo + step) >= id) {
                                hi = lo + step;
                                break;
                        }
                        lo += step + 1;
                }
                hi = MAX(hi, lo);
        } else {
                hi = g; /* key_at(g) ≥ id */
                lo = 1; /* key_at(0) < id */
                for (step = 1; step < hi && hi - step > lo; step *= 2) {
                        if (key_at(x, hi - step) < id) {
                                lo = hi - step + 1;
                                break;
                        }
                        hi -= step;
                }
                lo = MIN(lo, hi);
        }
        /* The answer lies in [lo, hi]. */
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (key_at(x, mid) < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* The first live slot at or after i, or n_slots. */
static size_t next_live(const IdIndex *x, size_t i) {
        i = MAX(i, x->first_live);
        while (i < x->n_slots && slot_is_marker(x->slots[i]))
                i++;
        return i;
}

static int grow(IdIndex *x) {
        IdIndexSlot *s;
        size_t a;

        if (x->n_slots < x->allocated)
                return 0;
        a = MAX(x->allocated * 2, (size_t) ID_INDEX_MIN_ALLOCATED);
        if (a > SIZE_MAX / sizeof(IdIndexSlot))
                return -ENOMEM;
        s = realloc(x->slots, a * sizeof(IdIndexSlot));
        if (!s)
                return -ENOMEM;
        x->slots = s;
        x->allocated = a;
        return 0;
}

int id_index_put(IdIndex *x, void *obj) {
        IdIndexSlot s = (uintptr_t) obj;
        uint64_t id;
        size_t i;
        int r;

        assert(x);

        if (!obj || slot_is_marker(s))
                return -EINVAL;
        id = slot_key(x, s);
        if (id == 0 || id >> 63 != 0)
                return -EINVAL;

        i = lower_bound(x, id);
        if (i < x->n_slots && key_at(x, i) == id) {
                if (!slot_is_marker(x->slots[i]))
                        return -EEXIST;
                x->slots[i] = s; /* back where it was removed */
        } else if (i > 0 && slot_is_marker(x->slots[i - 1]))
                x->slots[--i] = s; /* the marker's id is below id and the next key above: order holds */
        else {
                r = grow(x);
                if (r < 0)
                        return r;
                /* Counter ids append; only ids restored out of order move entries. */
                memmove(x->slots + i + 1, x->slots + i, (x->n_slots - i) * sizeof(IdIndexSlot));
                x->slots[i] = s;
                x->n_slots++;
                if (x->hint >= i)
                        x->hint++;
        }
        x->first_live = MIN(x->first_live, i);
        x->n_live++;
        return 0;
}

void *id_index_get(IdIndex *x, uint64_t id) {
        size_t i;

        if (!x || id == 0)
                return NULL;
        if (x->hint < x->n_slots && key_at(x, x->hint) == id)
                i = x->hint;
        else {
                i = lower_bound(x, id);
                if (i >= x->n_slots || key_at(x, i) != id)
                        return NULL;
        }
        if (slot_is_marker(x->slots[i]))
                return NULL;
        x->hint = i;
        return (void *) (uintptr_t) x->slots[i];
}

static void compact(IdIndex *x) {
        size_t j = 0;

        for (size_t i = 0; i < x->n_slots; i++)
                if (!slot_is_marker(x->slots[i]))
                        x->slots[j++] = x->slots[i];
        x->n_slots = j;
        x->hint = 0;
        x->first_live = 0;

        /* Give memory back when a quarter at most is used; failing to is harmless. */
        if (x->allocated > ID_INDEX_MIN_ALLOCATED && x->n_slots * 4 <= x->allocated) {
                size_t a = MAX(x->n_slots * 2, (size_t) ID_INDEX_MIN_ALLOCATED);
                IdIndexSlot *s = realloc(x->slots, a * sizeof(IdIndexSlot));

                if (s) {
                        x->slots = s;
                        x->allocated = a;
                }
        }
}

void *id_index_remove(IdIndex *x, uint64_t id) {
        void *obj;
        size_t i;

        obj = id_index_get(x, id);
        if (!obj)
                return NULL;
        i = x->hint;
        x->slots[i] = (id << 1) | 1;
        x->n_live--;

        /* Markers at the end order nothing: drop them. */
        while (x->n_slots > 0 && slot_is_marker(x->slots[x->n_slots - 1]))
                x->n_slots--;
        if (i == x->first_live)
                x->first_live = next_live(x, i);
        if (x->n_live == 0 ||
            (x->n_slots - x->n_live >= ID_INDEX_MIN_MARKERS && x->n_slots - x->n_live > x->n_live))
                compact(x);
        return obj;
}

void *id_index_from(IdIndex *x, uint64_t id) {
        size_t i;

        if (!x)
                return NULL;
        i = next_live(x, lower_bound(x, id));
        if (i >= x->n_slots)
                return NULL;
        x->hint = i;
        return (void *) (uintptr_t) x->slots[i];
}

void *id_index_next(IdIndex *x, const void *obj) {
        size_t i;

        assert(x);
        assert(obj);

        if (x->hint < x->n_slots && x->slots[x->hint] == (uintptr_t) obj)
                i = x->hint + 1;
        else
                i = lower_bound(x, slot_key(x, (uintptr_t) obj) + 1);
        i = next_live(x, i);
        if (i >= x->n_slots)
                return NULL;
        x->hint = i;
        return (void *) (uintptr_t) x->slots[i];
}

size_t id_index_size(const IdIndex *x) {
        return x ? x->n_live : 0;
}

size_t id_index_memory(const IdIndex *x) {
        return x ? sizeof(IdIndex) + x->allocated * sizeof(IdIndexSlot) : 0;
}

int id_index_verify(const IdIndex *x) {
        size_t live = 0;

        for (size_t i = 0; i < x->n_slots; i++) {
                if (i > 0 && key_at(x, i - 1) >= key_at(x, i))
                        return -EUCLEAN;
                if (!slot_is_marker(x->slots[i]))
                        live++;
        }
        for (size_t i = 0; i < MIN(x->first_live, x->n_slots); i++)
                if (!slot_is_marker(x->slots[i]))
                        return -EUCLEAN;
        if (live != x->n_live || x->n_slots > x->allocated ||
            (x->n_slots > 0 && slot_is_marker(x->slots[x->n_slots - 1])))
                return -EUCLEAN;
        return 0;
}
