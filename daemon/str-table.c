/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "id-table.h"
#include "macro.h"
#include "str-table.h"

typedef struct Entry Entry;
struct Entry {
        Entry *next;            /* same hash */
        void *value;
        char key[];
};

struct StrTable {
        IdTable *heads;         /* hash → first Entry */
        size_t n;
};

static uint64_t hash_key(const char *s) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (; *s; s++) {
                h ^= (uint8_t) *s;
                h *= UINT64_C(0x100000001b3);
        }
        return h ?: 1; /* IdTable keeps no id 0 */
}

int str_table_new(StrTable **ret) {
        _cleanup_free_ StrTable *t = calloc(1, sizeof(StrTable));
        int r;

        if (!t)
                return -ENOMEM;
        r = id_table_new(&t->heads);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

StrTable *str_table_free(StrTable *t) {
        Entry *e;

        if (!t)
                return NULL;
        while ((e = id_table_steal_first(t->heads, NULL)))
                while (e) {
                        Entry *next = e->next;
                        free(e);
                        e = next;
                }
        id_table_free(t->heads);
        free(t);
        return NULL;
}

void *str_table_get(const StrTable *t, const char *key) {
        for (Entry *e = id_table_get(t->heads, hash_key(key)); e; e = e->next)
                if (streq(e->key, key))
                        return e->value;
        return NULL;
}

int str_table_put(StrTable *t, const char *key, void *value) {
        uint64_t h = hash_key(key);
        Entry *head = id_table_get(t->heads, h), *e;
        size_t l = strlen(key);
        int r;

        for (e = head; e; e = e->next)
                if (streq(e->key, key))
                        return -EEXIST;

        e = malloc(sizeof(Entry) + l + 1);
        if (!e)
                return -ENOMEM;
        memcpy(e->key, key, l + 1);
        e->value = value;
        e->next = head;
        if (head)
                (void) id_table_remove(t->heads, h);
        r = id_table_put(t->heads, h, e);
        if (r < 0) {
                if (head)
                        (void) id_table_put(t->heads, h, head); /* the slot was just freed: cannot fail */
                free(e);
                return r;
        }
        t->n++;
        return 0;
}

void *str_table_remove(StrTable *t, const char *key) {
        uint64_t h = hash_key(key);
        Entry *head = id_table_get(t->heads, h), *prev = NULL;

        for (Entry *e = head; e; prev = e, e = e->next) {
                void *v;

                if (!streq(e->key, key))
                        continue;
                if (prev)
                        prev->next = e->next;
                else {
                        (void) id_table_remove(t->heads, h);
                        if (e->next)
                                (void) id_table_put(t->heads, h, e->next); /* reuses the freed slot */
                }
                v = e->value;
                free(e);
                t->n--;
                return v;
        }
        return NULL;
}

size_t str_table_size(const StrTable *t) {
        return t->n;
}

bool str_table_iterate(const StrTable *t, StrTableIter *i, const char **ret_key, void **ret_value) {
        Entry *e = i->entry ? ((Entry *) i->entry)->next : NULL;

        if (!e) {
                uint64_t h;
                void *v;

                if (!id_table_iterate(t->heads, &i->slot, &h, &v))
                        return false;
                e = v;
        }
        i->entry = e;
        if (ret_key)
                *ret_key = e->key;
        if (ret_value)
                *ret_value = e->value;
        return true;
}
