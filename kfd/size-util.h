/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Sizes as people write them ("4G", "512M", "0x1000", "16T") and as we print them ("4.0 GiB"). */

#include <stddef.h>
#include <stdint.h>

/*
 * Parse a byte count: a decimal or 0x-hex integer, optionally followed by one
 * binary suffix K, M, G, T, P (or KiB, MiB, GiB, TiB, PiB; B alone allowed).
 * Returns 0, -EINVAL for malformed input, -ERANGE on overflow.
 */
int parse_size(const char *s, uint64_t *ret);

/* "4.0 GiB", "512 B", "1.5 TiB": one decimal from KiB up. Returns buf. */
#define FORMAT_BYTES_MAX 16
char *format_bytes(char *buf, size_t len, uint64_t bytes);
#define FORMAT_BYTES(b) format_bytes((char[FORMAT_BYTES_MAX]){}, FORMAT_BYTES_MAX, (b))

/* Parse an unsigned 32-bit number, decimal or 0x-hex (GPU ids are often written in hex). */
int parse_u32(const char *s, uint32_t *ret);
