/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "id-table.h"
#include "macro.h"
#include "request-cache.h"

typedef struct Entry {
        uint64_t key;           /* hash of (uid, request id); 0 = empty slot */
        uid_t uid;
        char *request_id;
        char *member;
        sd_bus_message *reply;
} Entry;

struct RequestCache {
        IdTable *index;         /* key → Entry */
        Entry *ring;            /* FIFO: the oldest entry is replaced first */
        size_t max, next;
};

/* FNV-1a over uid and id; never 0 (the table's "no id"). */
static uint64_t key_of(uid_t uid, const char *request_id) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (size_t i = 0; i < sizeof(uid); i++) {
                h ^= (uint8_t) (uid >> (8 * i));
                h *= UINT64_C(0x100000001b3);
        }
        for (const char *p = request_id; *p; p++) {
                h ^= (uint8_t) *p;
                h *= UINT64_C(0x100000001b3);
        }
        return h ?: 1;
}

int request_id_check(const char *request_id, sd_bus_error *error) {
        if (!request_id[0])
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "\"request-id\" must not be empty.");
        for (const char *p = request_id; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                                "\"request-id\" must consist of printable characters.");
        return 0;
}

int request_cache_new(RequestCache **ret, size_t max_entries) {
        _cleanup_free_ RequestCache *c = NULL;
        int r;

        c = calloc(1, sizeof(RequestCache));
        if (!c)
                return -ENOMEM;
        c->max = max_entries ?: 1;
        c->ring = calloc(c->max, sizeof(Entry));
        if (!c->ring)
                return -ENOMEM;
        r = id_table_new(&c->index);
        if (r < 0) {
                free(c->ring);
                return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

static void entry_clear(RequestCache *c, Entry *e) {
        if (e->key != 0 && id_table_get(c->index, e->key) == e)
                (void) id_table_remove(c->index, e->key);
        free(e->request_id);
        free(e->member);
        sd_bus_message_unref(e->reply);
        *e = (Entry) {};
}

RequestCache *request_cache_free(RequestCache *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->max; i++)
                entry_clear(c, &c->ring[i]);
        free(c->ring);
        id_table_free(c->index);
        free(c);
        return NULL;
}

static Entry *find(RequestCache *c, uid_t uid, const char *request_id) {
        Entry *e = id_table_get(c->index, key_of(uid, request_id));

        if (!e || e->uid != uid || !streq(e->request_id, request_id))
                return NULL;
        return e;
}

int request_cache_replay(RequestCache *c, sd_bus_message *call, uid_t uid, const char *request_id,
                         sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Entry *e;
        int r;

        e = find(c, uid, request_id);
        if (!e)
                return 0;
        if (!streq(e->member, sd_bus_message_get_member(call)))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Request id \"%s\" was already used for %s; use a new id for %s.",
                                         request_id, e->member, sd_bus_message_get_member(call));

        r = sd_bus_message_new_method_return(call, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_rewind(e->reply, true);
        if (r < 0)
                return r;
        r = sd_bus_message_copy(reply, e->reply, true);
        if (r < 0)
                return r;
        r = sd_bus_send(NULL, reply, NULL);
        if (r < 0)
                return r;
        return 1;
}

int request_cache_store(RequestCache *c, uid_t uid, const char *request_id, const char *member,
                        sd_bus_message *reply) {
        uint64_t key = key_of(uid, request_id);
        Entry *e, *old;
        int r;

        old = id_table_get(c->index, key);
        if (old)
                entry_clear(c, old); /* same key: the newer answer wins */

        e = &c->ring[c->next];
        entry_clear(c, e);
        c->next = (c->next + 1) % c->max;

        e->request_id = strdup(request_id);
        e->member = strdup(member);
        if (!e->request_id || !e->member) {
                entry_clear(c, e);
                return -ENOMEM;
        }
        e->uid = uid;
        e->key = key;
        e->reply = sd_bus_message_ref(reply);
        r = id_table_put(c->index, key, e);
        if (r < 0) {
                e->key = 0;
                entry_clear(c, e);
                return r;
        }
        return 0;
}
