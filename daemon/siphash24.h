/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * SipHash-2-4 (Aumasson and Bernstein): a keyed 64-bit hash. svmd uses it for
 * request digests (request-cache.h), where a fixed key is enough: a digest is
 * only ever compared with another digest of the same caller's own requests.
 */

#include <stddef.h>
#include <stdint.h>

uint64_t siphash24(const void *data, size_t size, const uint8_t key[16]);
