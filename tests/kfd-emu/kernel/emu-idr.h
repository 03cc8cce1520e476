/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Handle ids the way idr_alloc(&pdd->alloc_idr, mem, 0, 0) hands them out:
 * lowest free id first, reused immediately. A multi-level bitmap (64-ary: a
 * bit one level up is set when the word below is full) finds the lowest free
 * id in a handful of word reads even with 10^6 live ids. The bitmap lives in
 * the shared arena, so it is plain words, no pointers.
 */

#include <stdbool.h>
#include <stdint.h>

#define EMU_IDR_MAX_LEVELS 6

typedef struct EmuIdrGeometry {
        uint32_t capacity;
        uint32_t levels;
        uint32_t words[EMU_IDR_MAX_LEVELS];     /* level 0 = the id bits */
        uint32_t offset[EMU_IDR_MAX_LEVELS];    /* in words from the start of the bitmap */
        uint32_t total_words;
} EmuIdrGeometry;

int emu_idr_geometry(uint32_t capacity, EmuIdrGeometry *ret);
/* Empty bitmap: bits past the capacity are marked used so they are never handed out. */
void emu_idr_init(const EmuIdrGeometry *g, uint64_t *bits);
/* Lowest free id, marked used; -ENOSPC when full. */
int64_t emu_idr_alloc(const EmuIdrGeometry *g, uint64_t *bits);
void emu_idr_remove(const EmuIdrGeometry *g, uint64_t *bits, uint32_t id);
bool emu_idr_test(const EmuIdrGeometry *g, const uint64_t *bits, uint32_t id);
/* First used id ≥ from, or -1. */
int64_t emu_idr_next(const EmuIdrGeometry *g, const uint64_t *bits, uint32_t from);
