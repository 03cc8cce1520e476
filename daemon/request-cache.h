/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Idempotent retries (docs/dbus-api.md, "Request ids and retries"): a mutating
 * call carrying the option "request-id" is remembered with its reply and a
 * digest of its arguments; the same id from the same uid again gets the first
 * reply instead of a second execution, and the same id with other arguments
 * is refused (RequestIdReused). Only calls that changed something are
 * remembered: a failed call or a no-op changed nothing, so doing it again is
 * safe.
 *
 * Entries are kept per quota scope, each scope bounded on its own
 * ("request-ids-per-scope"): the oldest entry of a scope goes first, and one
 * scope's traffic never evicts another scope's entries. Entries are matched by
 * (uid, request id), so a uid is never answered with another uid's reply. The
 * cache lives in memory: a restart of svmd forgets it (persistent ranges keep
 * their own request id, range.h).
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

typedef struct RequestCache RequestCache;

/*
 * A client's request id: 1–128 printable characters. Ids svmd uses for itself
 * (idempotent Free) start with a control character and cannot collide.
 */
int request_id_check(const char *request_id, sd_bus_error *error);
#define REQUEST_ID_FREE_PREFIX "\x01free:"

int request_cache_new(RequestCache **ret, size_t max_per_scope);
RequestCache *request_cache_free(RequestCache *c);
/* A new bound per scope (reload); scopes above it shrink at their next entry. */
void request_cache_set_max(RequestCache *c, size_t max_per_scope);

/*
 * The digest of a call: its member and every argument, in order. It stays the
 * same across restarts (a fixed key; persistent ranges keep it in the journal).
 * The message is rewound.
 */
int request_digest(sd_bus_message *call, uint64_t *ret);

/* The refusal of a request id used before for another call. */
int request_id_reused(const char *request_id, const char *first_member, sd_bus_message *call, sd_bus_error *error);

/*
 * If (uid, request_id) was answered before, reply to `call` with a copy of that
 * answer and return 1. Returns 0 if unknown, or an error; a request id first
 * used with another method or other arguments gives RequestIdReused.
 */
int request_cache_replay(RequestCache *c, sd_bus_message *call, uid_t uid, const char *request_id,
                         sd_bus_error *error);

/* Remember the (sealed) reply of a successful call, in the caller's quota scope. */
int request_cache_store(RequestCache *c, sd_bus_message *call, const char *scope, uid_t uid,
                        const char *request_id, sd_bus_message *reply);
