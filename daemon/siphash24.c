/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <string.h>

#include "siphash24.h"

#define ROTL(x, b) (uint64_t) (((x) << (b)) | ((x) >> (64 - (b))))

static uint64_t load_le64(const uint8_t *p) {
        uint64_t v = 0;

        for (unsigned i = 0; i < 8; i++)
                v |= (uint64_t) p[i] << (8 * i);
        return v;
}

static void sip_round(uint64_t v[4]) {
        v[0] += v[1];
        v[1] = ROTL(v[1], 13);
        v[1] ^= v[0];
        v[0] = ROTL(v[0], 32);
        v[2] += v[3];
        v[3] = ROTL(v[3], 16);
        v[3] ^= v[2];
        v[0] += v[3];
        v[3] = ROTL(v[3], 21);
        v[3] ^= v[0];
        v[2] += v[1];
        v[1] = ROTL(v[1], 17);
        v[1] ^= v[2];
        v[2] = ROTL(v[2], 32);
}

uint64_t siphash24(const void *data, size_t size, const uint8_t key[16]) {
        const uint8_t *in = data;
        uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
        uint64_t v[4] = {
                k0 ^ UINT64_C(0x736f6d6570736575),
                k1 ^ UINT64_C(0x646f72616e646f6d),
                k0 ^ UINT64_C(0x6c7967656e657261),
                k1 ^ UINT64_C(0x7465646279746573),
        };
        uint8_t last[8] = {};
        uint64_t m;
        size_t i;

        for (i = 0; i + 8 <= size; i += 8) {
                m = load_le64(in + i);
                v[3] ^= m;
                sip_round(v);
                sip_round(v);
                v[0] ^= m;
        }
        if (size > i)
                memcpy(last, in + i, size - i);
        last[7] = (uint8_t) size;
        m = load_le64(last);
        v[3] ^= m;
        sip_round(v);
        sip_round(v);
        v[0] ^= m;

        v[2] ^= 0xff;
        for (unsigned r = 0; r < 4; r++)
                sip_round(v);
        return v[0] ^ v[1] ^ v[2] ^ v[3];
}
