/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Shared code of the tenant-isolation tests (tests/hostile/test-*.c): tenants are
 * forked children that drop to their uid, each with its own connections, and
 * report through memory shared with the test.
 */

#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-bus.h>

#include "svmd-test.h"

#define HU_UID_A 1              /* "daemon": the victim or owner */
#define HU_UID_B 2              /* "bin": another tenant */
#define HU_UID_C 65534          /* "nobody": a third */

/* A new connection to the private bus (the caller's uid), or to io.socket. */
sd_bus *hu_connect(void);

/* Zeroed memory shared with the children forked later. */
void *hu_shared(size_t size);

/* Run fn(arg) as uid in a child; hu_spawn returns its pid, hu_wait asserts it exited 0. */
pid_t hu_spawn(uid_t uid, void (*fn)(void *), void *arg);
void hu_wait(pid_t pid);
void hu_as_uid(uid_t uid, void (*fn)(void *), void *arg);

/* Wait (up to 60 s) until *flag is nonzero, for handshakes between processes. */
void hu_wait_flag(volatile int *flag);

/* A persistent host range of size on gpu; its id. */
uint64_t hu_allocate_persistent(sd_bus *bus, uint32_t gpu, uint64_t size);

/* The caller's GetUsage("") value of key (0 if absent). */
uint64_t hu_usage(sd_bus *bus, const char *key);
/* GetUsage(scope)'s value of key (0 if absent); another scope needs root. */
uint64_t hu_usage_of(sd_bus *bus, const char *scope, const char *key);

/* Share range id (with a grant to uid to, or to anyone if to is 0); the token into ret (40 bytes). */
void hu_share(sd_bus *bus, uint64_t id, uid_t to, char *ret);
/* How many holds uid has on range id (its Holders property). */
unsigned hu_holds_of(sd_bus *bus, uint64_t id, uid_t uid);
/* Assert that a call failed with the error name, print it, and free the error. */
void hu_expect_error(int r, sd_bus_error *error, const char *name);

/* Microseconds on CLOCK_MONOTONIC. */
uint64_t hu_now_usec(void);
