/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus-util.h"
#include "list.h"
#include "macro.h"
#include "request-cache.h"
#include "siphash24.h"
#include "str-table.h"
#include "svmd-protocol.h"

typedef struct ScopeCache ScopeCache;

typedef struct Entry {
        char *key;              /* "uid\x1frequest-id": the index key */
        char *member;
        uint64_t digest;        /* request_digest() of the call; 0: the key says it all (no_digest()) */
        sd_bus_message *reply;  /* NULL: it had no arguments */
        ScopeCache *scope;
        struct Entry *prev, *next;      /* the scope's FIFO, oldest first */
} Entry;

struct ScopeCache {
        char *key;              /* the quota scope */
        Entry *head, *tail;
        size_t n;
};

struct RequestCache {
        StrTable *index;        /* "uid\x1frequest-id" → Entry, over every scope */
        StrTable *scopes;       /* scope key → ScopeCache */
        size_t max;             /* per scope */
};

/*
 * A fixed key: digests are compared only with digests of the same uid's own
 * earlier calls, so a crafted collision can only make a caller's own second
 * request look like its first; keeping the key fixed keeps the digests of
 * persistent ranges valid across restarts.
 */
static const uint8_t digest_key[16] = "svmd-request-id";

int request_id_check(const char *request_id, sd_bus_error *error) {
        if (!request_id[0])
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "\"request-id\" must not be empty.");
        for (const char *p = request_id; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                                "\"request-id\" must consist of printable characters.");
        return 0;
}

/*
 * The bytes a digest is taken of. Most calls fit the inline space: a buffer
 * from open_memstream() cost more than the rest of a Free did.
 */
typedef struct DigestBuf {
        uint8_t *data;
        size_t size, allocated;
        bool failed;
        uint8_t inline_space[256];
} DigestBuf;

static void digest_put(DigestBuf *b, const void *p, size_t n) {
        if (b->failed)
                return;
        if (n > b->allocated - b->size) {
                size_t want = MAX(b->allocated * 2, b->size + n);
                uint8_t *d;

                if (b->data == b->inline_space) {
                        d = malloc(want);
                        if (d)
                                memcpy(d, b->data, b->size);
                } else
                        d = realloc(b->data, want);
                if (!d) {
                        b->failed = true;
                        return;
                }
                b->data = d;
                b->allocated = want;
        }
        memcpy(b->data + b->size, p, n);
        b->size += n;
}

static void digest_putc(DigestBuf *b, char c) {
        digest_put(b, &c, 1);
}

static void digest_puts0(DigestBuf *b, const char *s) {
        digest_put(b, s, strlen(s) + 1);
}

/* Every argument as (type, value) bytes; containers by their signature, fds by their type only. */
static int digest_walk(sd_bus_message *m, DigestBuf *b, unsigned depth) {
        int r;

        if (depth > 64)
                return -EBADMSG; /* sd-bus refuses deeper messages already */
        for (;;) {
                const char *contents = NULL;
                char type;

                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r <= 0)
                        return r;
                digest_putc(b, type);
                if (type == SD_BUS_TYPE_ARRAY || type == SD_BUS_TYPE_STRUCT || type == SD_BUS_TYPE_VARIANT ||
                    type == SD_BUS_TYPE_DICT_ENTRY) {
                        digest_puts0(b, contents);
                        r = sd_bus_message_enter_container(m, type, contents);
                        if (r < 0)
                                return r;
                        r = digest_walk(m, b, depth + 1);
                        if (r < 0)
                                return r;
                        r = sd_bus_message_exit_container(m);
                        if (r < 0)
                                return r;
                        digest_putc(b, '\0');
                } else {
                        union {
                                uint8_t u8;
                                int b;
                                uint16_t u16;
                                uint32_t u32;
                                uint64_t u64;
                                double d;
                                const char *s;
                                int fd;
                        } v;

                        memset(&v, 0, sizeof(v));
                        r = sd_bus_message_read_basic(m, type, &v);
                        if (r < 0)
                                return r;
                        if (type == SD_BUS_TYPE_STRING || type == SD_BUS_TYPE_OBJECT_PATH ||
                            type == SD_BUS_TYPE_SIGNATURE)
                                digest_puts0(b, v.s);
                        else if (type == SD_BUS_TYPE_BOOLEAN)
                                digest_putc(b, v.b ? 1 : 0);
                        else if (type != SD_BUS_TYPE_UNIX_FD)
                                digest_put(b, &v.u64, sizeof(v.u64));
                }
        }
}

int request_digest(sd_bus_message *call, uint64_t *ret) {
        DigestBuf b = { .allocated = sizeof(b.inline_space) };
        int r;

        b.data = b.inline_space;
        digest_puts0(&b, sd_bus_message_get_member(call));
        r = sd_bus_message_rewind(call, true);
        if (r >= 0)
                r = digest_walk(call, &b, 0);
        (void) sd_bus_message_rewind(call, true);
        if (r >= 0 && b.failed)
                r = -ENOMEM;
        if (r >= 0)
                *ret = siphash24(b.data, b.size, digest_key) ?: 1; /* 0 means "not recorded" (range.h) */
        if (b.data != b.inline_space)
                free(b.data);
        return r < 0 ? r : 0;
}

int request_id_reused(const char *request_id, const char *first_member, sd_bus_message *call, sd_bus_error *error) {
        const char *member = sd_bus_message_get_member(call);

        if (!streq(first_member, member))
                return sd_bus_error_setf(error, SVMD_ERROR_REQUEST_ID_REUSED,
                                         "Request id \"%s\" was already used for %s; use a new id for %s.",
                                         request_id, first_member, member);
        return sd_bus_error_setf(error, SVMD_ERROR_REQUEST_ID_REUSED,
                                 "Request id \"%s\" was already used for %s with other arguments; nothing was "
                                 "done. Retry with the first arguments, or use a new id.", request_id, member);
}

int request_cache_new(RequestCache **ret, size_t max_per_scope) {
        _cleanup_free_ RequestCache *c = NULL;
        int r;

        c = calloc(1, sizeof(RequestCache));
        if (!c)
                return -ENOMEM;
        c->max = max_per_scope ?: 1;
        r = str_table_new(&c->index);
        if (r < 0)
                return r;
        r = str_table_new(&c->scopes);
        if (r < 0) {
                str_table_free(c->index);
                return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

static void entry_free(RequestCache *c, Entry *e) {
        ScopeCache *s = e->scope;

        if (str_table_get(c->index, e->key) == e)
                (void) str_table_remove(c->index, e->key);
        LIST_REMOVE_TAIL(s->head, s->tail, e, prev, next);
        s->n--;
        free(e->key);
        free(e->member);
        sd_bus_message_unref(e->reply);
        free(e);
}

RequestCache *request_cache_free(RequestCache *c) {
        StrTableIter it = {};
        void *v;

        if (!c)
                return NULL;
        while (str_table_iterate(c->scopes, &it, NULL, &v)) {
                ScopeCache *s = v;

                while (s->head)
                        entry_free(c, s->head);
                free(s->key);
                free(s);
        }
        str_table_free(c->scopes);
        str_table_free(c->index);
        free(c);
        return NULL;
}

void request_cache_set_max(RequestCache *c, size_t max_per_scope) {
        c->max = max_per_scope ?: 1;
}

/* Room for the index key of any request id a client may send, and of svmd's own. */
#define INDEX_KEY_MAX (U64_DECIMAL_MAX + 1 + SVMD_MAX_REQUEST_ID_LEN + 1)

/*
 * "uid\x1frequest-id" into buf (INDEX_KEY_MAX bytes). A longer id is none a client can send
 * (the option's bound) nor one of svmd's own: -ENAMETOOLONG.
 */
static int index_key_format(char buf[static INDEX_KEY_MAX], uid_t uid, const char *request_id) {
        size_t l = strnlen(request_id, SVMD_MAX_REQUEST_ID_LEN + 1), n;

        if (l > SVMD_MAX_REQUEST_ID_LEN)
                return -ENAMETOOLONG;
        n = format_u64(buf, (uint64_t) uid);
        buf[n] = '\x1f';
        memcpy(buf + n + 1, request_id, l + 1);
        return 0;
}

int request_cache_replay(RequestCache *c, sd_bus_message *call, uid_t uid, const char *request_id,
                         sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        char key[INDEX_KEY_MAX];
        uint64_t digest;
        Entry *e;
        int r;

        r = index_key_format(key, uid, request_id);
        if (r < 0)
                return r;
        e = str_table_get(c->index, key);
        if (!e)
                return 0;
        if (!streq(e->member, sd_bus_message_get_member(call)))
                return request_id_reused(request_id, e->member, call, error);
        if (e->digest != 0) {
                r = request_digest(call, &digest);
                if (r < 0)
                        return r;
                if (digest != e->digest)
                        return request_id_reused(request_id, e->member, call, error);
        }

        r = sd_bus_message_new_method_return(call, &reply);
        if (r < 0)
                return r;
        if (e->reply) {
                r = sd_bus_message_rewind(e->reply, true);
                if (r < 0)
                        return r;
                r = sd_bus_message_copy(reply, e->reply, true);
                if (r < 0)
                        return r;
        }
        r = sd_bus_send(NULL, reply, NULL);
        if (r < 0)
                return r;
        return 1;
}

/*
 * svmd's own id of a Free names the range, Free's only argument, and only Free
 * uses it: the member compared is the whole check, and no digest is taken.
 */
static bool no_digest(const char *request_id) {
        return strncmp(request_id, REQUEST_ID_FREE_PREFIX, strlen(REQUEST_ID_FREE_PREFIX)) == 0;
}

static int scope_get(RequestCache *c, const char *key, ScopeCache **ret) {
        ScopeCache *s = str_table_get(c->scopes, key);
        int r;

        if (s) {
                *ret = s;
                return 0;
        }
        s = calloc(1, sizeof(ScopeCache));
        if (!s)
                return -ENOMEM;
        s->key = strdup(key);
        if (!s->key) {
                free(s);
                return -ENOMEM;
        }
        r = str_table_put(c->scopes, s->key, s);
        if (r < 0) {
                free(s->key);
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

int request_cache_store(RequestCache *c, sd_bus_message *call, const char *scope, uid_t uid,
                        const char *request_id, sd_bus_message *reply) {
        _cleanup_free_ char *key = NULL, *member = NULL;
        char buf[INDEX_KEY_MAX];
        ScopeCache *s;
        uint64_t digest;
        Entry *e;
        int r;

        r = index_key_format(buf, uid, request_id);
        if (r < 0)
                return r;
        key = strdup(buf);
        if (!key)
                return -ENOMEM;
        member = strdup(sd_bus_message_get_member(call));
        if (!member)
                return -ENOMEM;
        if (no_digest(request_id))
                digest = 0;
        else {
                r = request_digest(call, &digest);
                if (r < 0)
                        return r;
        }
        r = scope_get(c, scope, &s);
        if (r < 0)
                return r;

        e = str_table_get(c->index, key);
        if (e)
                entry_free(c, e); /* the same uid and id: the newer answer wins */
        /* The oldest of this scope goes, never another scope's. */
        while (s->n >= c->max && s->head)
                entry_free(c, s->head);

        e = calloc(1, sizeof(Entry));
        if (!e)
                return -ENOMEM;
        *e = (Entry) {
                .key = TAKE_PTR(key),
                .member = TAKE_PTR(member),
                .digest = digest,
                .scope = s,
        };
        r = str_table_put(c->index, e->key, e);
        if (r < 0) {
                free(e->key);
                free(e->member);
                free(e);
                return r;
        }
        /* An empty answer (every Free's) is made anew on a retry: nothing of it is kept. */
        if (!isempty(sd_bus_message_get_signature(reply, true)))
                e->reply = sd_bus_message_ref(reply);
        LIST_APPEND(s->head, s->tail, e, prev, next);
        s->n++;
        return 0;
}
