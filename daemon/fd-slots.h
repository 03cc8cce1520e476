/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Names for the fds svmd keeps in the service manager's fd store (docs/architecture.md, "The fd
 * store's names"). On a restart the service manager passes every stored fd's name in one
 * environment variable, LISTEN_FDNAMES, which the kernel caps at 128 KiB: with names of
 * "range-<id>" about 10 000 fds fit. A slot's name is instead the shortest unused string over
 * [0-9A-Za-z]: 62 names of one character, 3844 of two, then three; 32 768 fds take 124 KiB.
 * A slot is free again when its range's fd leaves the store, and the lowest free slot is taken
 * first, so names stay short.
 */

#include <stdbool.h>
#include <stdint.h>

/* What the names in LISTEN_FDNAMES may take, a ':' after each: MAX_ARG_STRLEN less "LISTEN_FDNAMES=". */
#define FD_STORE_NAMES_BYTES_MAX (131072U - sizeof("LISTEN_FDNAMES="))
/* The most fds whose slot names fit into it: 62 × 2 + 3844 × 3 + 28 862 × 4 = 127 104 bytes. */
#define FD_SLOTS_MAX 32768U
/* Range.fd_slot of a range whose fd is named as older versions did it, "range-<id>". */
#define FD_SLOT_LEGACY UINT32_MAX
/* A slot name's longest form, with its NUL. */
#define FD_SLOT_NAME_MAX 4

typedef struct FdSlots {
        uint64_t *used;         /* a bit per slot */
        uint32_t n;             /* slots the bitmap covers */
        uint32_t lowest_free;   /* no free slot below it */
} FdSlots;

void fd_slots_init(FdSlots *s);
void fd_slots_done(FdSlots *s);
/* The lowest free slot, now in use. -ENOSPC: all FD_SLOTS_MAX in use; -ENOMEM. */
int fd_slots_take(FdSlots *s, uint32_t *ret);
/* Mark slot in use (recovery). -EEXIST: it already is; -ERANGE: beyond FD_SLOTS_MAX. */
int fd_slots_claim(FdSlots *s, uint32_t slot);
void fd_slots_release(FdSlots *s, uint32_t slot);

/* Slot → name ("0", "z", "10", …) into buf of FD_SLOT_NAME_MAX bytes. */
const char *fd_slot_name(uint32_t slot, char buf[static FD_SLOT_NAME_MAX]);
/* Name → slot; false for any other string (e.g. "range-12" of older versions). */
bool fd_slot_from_name(const char *name, uint32_t *ret);
