/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "id-table.h"
#include "macro.h"

#define ID_TABLE_MIN_BUCKETS 16

typedef struct IdTableEntry {
        uint64_t id; /* 0: empty */
        void *value;
} IdTableEntry;

struct IdTable {
        IdTableEntry *buckets;
        size_t mask; /* number of buckets − 1, a power of two minus one */
        size_t size;
        size_t drain_hint; /* every bucket below this is empty; keeps draining linear */
};

/*
 * splitmix64's finalizer: counter ids are sequential, and an unmixed id would put every run of
 * consecutive ids into one probe cluster. Mixing also spreads ids a client may choose.
 */
static uint64_t id_table_hash(uint64_t id) {
        id ^= id >> 30;
        id *= UINT64_C(0xbf58476d1ce4e5b9);
        id ^= id >> 27;
        id *= UINT64_C(0x94d049bb133111eb);
        id ^= id >> 31;
        return id;
}

int id_table_new(IdTable **ret) {
        IdTable *t;

        assert(ret);

        t = malloc(sizeof(IdTable));
        if (!t)
                return -ENOMEM;
        *t = (IdTable) {
                .buckets = calloc(ID_TABLE_MIN_BUCKETS, sizeof(IdTableEntry)),
                .mask = ID_TABLE_MIN_BUCKETS - 1,
        };
        if (!t->buckets) {
                free(t);
                return -ENOMEM;
        }

        *ret = t;
        return 0;
}

IdTable *id_table_free(IdTable *t) {
        if (!t)
                return NULL;
        free(t->buckets);
        free(t);
        return NULL;
}

/* The bucket holding id, or the empty bucket where it would go. */
static size_t id_table_find(const IdTable *t, uint64_t id) {
        size_t i = id_table_hash(id) & t->mask;

        while (t->buckets[i].id != 0 && t->buckets[i].id != id)
                i = (i + 1) & t->mask;
        return i;
}

static int id_table_resize(IdTable *t, size_t n_buckets) {
        IdTableEntry *old = t->buckets;
        size_t old_n = t->mask + 1;

        t->buckets = calloc(n_buckets, sizeof(IdTableEntry));
        if (!t->buckets) {
                t->buckets = old;
                return -ENOMEM;
        }
        t->mask = n_buckets - 1;
        t->drain_hint = 0;

        for (size_t i = 0; i < old_n; i++)
                if (old[i].id != 0)
                        t->buckets[id_table_find(t, old[i].id)] = old[i];

        free(old);
        return 0;
}

int id_table_put(IdTable *t, uint64_t id, void *value) {
        size_t i;
        int r;

        assert(t);

        if (id == 0 || !value)
                return -EINVAL;

        i = id_table_find(t, id);
        if (t->buckets[i].id == id)
                return -EEXIST;

        /* Keep the load at most 3/4: linear probing degrades quickly beyond. */
        if ((t->size + 1) * 4 > (t->mask + 1) * 3) {
                if (t->mask + 1 > SIZE_MAX / 2 / sizeof(IdTableEntry))
                        return -ENOMEM;
                r = id_table_resize(t, (t->mask + 1) * 2);
                if (r < 0)
                        return r;
                i = id_table_find(t, id);
        }

        t->buckets[i] = (IdTableEntry) { .id = id, .value = value };
        t->size++;
        if (i < t->drain_hint)
                t->drain_hint = i;
        return 0;
}

void *id_table_get(const IdTable *t, uint64_t id) {
        size_t i;

        if (!t || id == 0)
                return NULL;

        i = id_table_find(t, id);
        return t->buckets[i].id == id ? t->buckets[i].value : NULL;
}

/* Empties bucket i, moving later entries of the probe cluster back so no tombstone is needed. */
static void id_table_remove_at(IdTable *t, size_t i) {
        size_t j = i;

        for (;;) {
                size_t home;

                j = (j + 1) & t->mask;
                if (t->buckets[j].id == 0)
                        break;

                /* The entry at j may move to i only if i still lies on its probe path, home..j. */
                home = id_table_hash(t->buckets[j].id) & t->mask;
                if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
                        t->buckets[i] = t->buckets[j];
                        i = j;
                }
        }
        t->buckets[i] = (IdTableEntry) {};
        t->size--;

        /* Shrink when a quarter full at most after halving; never below the minimum. */
        if (t->mask + 1 > ID_TABLE_MIN_BUCKETS && t->size * 8 < t->mask + 1)
                (void) id_table_resize(t, (t->mask + 1) / 2); /* failing to shrink is harmless */
}

void *id_table_remove(IdTable *t, uint64_t id) {
        size_t i;
        void *v;

        if (!t || id == 0)
                return NULL;

        i = id_table_find(t, id);
        if (t->buckets[i].id != id)
                return NULL;

        v = t->buckets[i].value;
        id_table_remove_at(t, i);
        return v;
}

void *id_table_steal_first(IdTable *t, uint64_t *ret_id) {
        if (!t || t->size == 0)
                return NULL;

        /*
         * Backward shifts only move entries into the emptied bucket from later ones (or from bucket
         * 0 to the last, and bucket 0 is empty once the hint passed it), so buckets below the hint
         * stay empty until a put lowers it again.
         */
        for (size_t i = t->drain_hint; i <= t->mask; i++) {
                void *v;

                if (t->buckets[i].id == 0)
                        continue;

                t->drain_hint = i;
                v = t->buckets[i].value;
                if (ret_id)
                        *ret_id = t->buckets[i].id;
                id_table_remove_at(t, i);
                return v;
        }

        assert(false); /* size > 0 but no entry at or above the hint */
        return NULL;
}

size_t id_table_size(const IdTable *t) {
        return t ? t->size : 0;
}

size_t id_table_memory(const IdTable *t) {
        return t ? sizeof(IdTable) + (t->mask + 1) * sizeof(IdTableEntry) : 0;
}

bool id_table_iterate(const IdTable *t, size_t *state, uint64_t *ret_id, void **ret_value) {
        assert(state);

        if (!t)
                return false;

        for (size_t i = *state; i <= t->mask; i++) {
                if (t->buckets[i].id == 0)
                        continue;
                if (ret_id)
                        *ret_id = t->buckets[i].id;
                if (ret_value)
                        *ret_value = t->buckets[i].value;
                *state = i + 1;
                return true;
        }
        *state = t->mask + 1;
        return false;
}
