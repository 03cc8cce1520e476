/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Objects of one size, carved from blocks of SLAB_BLOCK_SIZE bytes mapped for them alone: no
 * per-object header, and no holes left between them by the short-lived allocations of the
 * requests that create them (which is what a million ranges from malloc cost; docs/architecture.md,
 * "Memory per range"). A block that empties is unmapped, so memory follows the live count down.
 * Not thread-safe.
 *
 * Built with AddressSanitizer, objects come from calloc() and go back with free(), so that a use
 * after slab_put() is still caught.
 */

#include <stddef.h>

#define SLAB_BLOCK_SIZE ((size_t) 128 * 1024)

typedef struct Slab Slab;

/* object_size: 1 to a quarter of a block; objects are 8-byte aligned. */
int slab_new(Slab **ret, size_t object_size);
/* Unmaps every block: objects still out are gone with it. */
Slab *slab_free(Slab *s);

/* A zeroed object, or NULL (errno ENOMEM). */
void *slab_alloc0(Slab *s);
/* p: from slab_alloc0() on s, or NULL. */
void slab_put(Slab *s, void *p);

size_t slab_n_objects(const Slab *s);
/* Bytes mapped for blocks, for accounting. */
size_t slab_memory(const Slab *s);
