/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Idempotent retries (SPEC §6.1a): a mutating call carrying the option
 * "request-id" is remembered with its reply; the same id from the same client
 * again gets the first reply instead of a second execution. Only successes are
 * remembered: a failed call changed nothing, so doing it again is safe. The
 * cache is bounded; the oldest entries go first.
 */

#include <stddef.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

typedef struct RequestCache RequestCache;

/*
 * A client's request id: 1–128 printable characters. Ids svmd uses for itself
 * (idempotent Free) start with a control character and cannot collide.
 */
int request_id_check(const char *request_id, sd_bus_error *error);
#define REQUEST_ID_FREE_PREFIX "\x01free:"

int request_cache_new(RequestCache **ret, size_t max_entries);
RequestCache *request_cache_free(RequestCache *c);

/*
 * If (uid, request_id) was answered before, reply to `call` with a copy of that
 * answer and return 1. Returns 0 if unknown, or an error; a request id first
 * used with another method gives InvalidArgs.
 */
int request_cache_replay(RequestCache *c, sd_bus_message *call, uid_t uid, const char *request_id,
                         sd_bus_error *error);

/* Remember the (sealed) reply of a successful call. */
int request_cache_store(RequestCache *c, uid_t uid, const char *request_id, const char *member,
                        sd_bus_message *reply);
