/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stdint.h>
#include <stdio.h>

#include "siphash24.h"
#include "unit-assert.h"

/* The reference vectors of SipHash-2-4 (key 00 01 … 0f, message 00 01 … of each length). */
static void test_vectors(void) {
        static const struct {
                size_t size;
                uint64_t hash;
        } vectors[] = {
                { 0, UINT64_C(0x726fdb47dd0e0e31) },
                { 1, UINT64_C(0x74f839c593dc67fd) },
                { 7, UINT64_C(0xab0200f58b01d137) },
                { 8, UINT64_C(0x93f5f5799a932462) },
                { 15, UINT64_C(0xa129ca6149be45e5) },
                { 63, UINT64_C(0x958a324ceb064572) },
        };
        uint8_t key[16], data[64];

        for (unsigned i = 0; i < sizeof(key); i++)
                key[i] = (uint8_t) i;
        for (unsigned i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t) i;
        for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++)
                ASSERT_UEQ(siphash24(data, vectors[i].size, key), vectors[i].hash);
}

/* Another key, another hash: the key is used. */
static void test_key(void) {
        uint8_t a[16] = {}, b[16] = { 1 };

        ASSERT_TRUE(siphash24("svmd", 4, a) != siphash24("svmd", 4, b));
}

int main(void) {
        test_vectors();
        test_key();
        return 0;
}
