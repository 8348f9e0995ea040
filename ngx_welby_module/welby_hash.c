/*
 * FNV-1a, 64 bits, and SipHash-2-4 (see welby_hash.h).
 */

#include <string.h>

#include "welby_hash.h"


#define WELBY_HASH64_PRIME  0x100000001b3ULL


uint64_t
welby_hash64(uint64_t h, const unsigned char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= WELBY_HASH64_PRIME;
    }

    return h;
}


uint32_t
welby_hash32_fold(uint64_t h)
{
    return (uint32_t) (h ^ (h >> 32));
}


#define WELBY_ROTL(x, b)  (uint64_t) (((x) << (b)) | ((x) >> (64 - (b))))

#define WELBY_SIPROUND                                                       \
    do {                                                                     \
        v0 += v1; v1 = WELBY_ROTL(v1, 13); v1 ^= v0;                         \
        v0 = WELBY_ROTL(v0, 32);                                             \
        v2 += v3; v3 = WELBY_ROTL(v3, 16); v3 ^= v2;                         \
        v0 += v3; v3 = WELBY_ROTL(v3, 21); v3 ^= v0;                         \
        v2 += v1; v1 = WELBY_ROTL(v1, 17); v1 ^= v2;                         \
        v2 = WELBY_ROTL(v2, 32);                                             \
    } while (0)


uint64_t
welby_le64(const unsigned char *p)
{
    return (uint64_t) p[0] | (uint64_t) p[1] << 8 | (uint64_t) p[2] << 16
           | (uint64_t) p[3] << 24 | (uint64_t) p[4] << 32
           | (uint64_t) p[5] << 40 | (uint64_t) p[6] << 48
           | (uint64_t) p[7] << 56;
}


/*
 * SipHash-2-4 (Aumasson and Bernstein), out 8 or 16 bytes: the 128-bit
 * variant differs in two constants and one more finalisation.
 */
static void
welby_siphash_out(const uint64_t k[2], const unsigned char *data,
    size_t len, uint64_t *out, unsigned n)
{
    size_t    i, left;
    uint64_t  v0, v1, v2, v3, m;

    v0 = k[0] ^ 0x736f6d6570736575ULL;
    v1 = k[1] ^ 0x646f72616e646f6dULL;
    v2 = k[0] ^ 0x6c7967656e657261ULL;
    v3 = k[1] ^ 0x7465646279746573ULL;

    if (n == 2) {
        v1 ^= 0xee;
    }

    for (i = 0; i + 8 <= len; i += 8) {
        m = welby_le64(data + i);
        v3 ^= m;
        WELBY_SIPROUND;
        WELBY_SIPROUND;
        v0 ^= m;
    }

    /* the last 0..7 bytes, and the length's low byte on top */

    m = (uint64_t) (len & 0xff) << 56;
    left = len - i;

    while (left) {
        left--;
        m |= (uint64_t) data[i + left] << (8 * left);
    }

    v3 ^= m;
    WELBY_SIPROUND;
    WELBY_SIPROUND;
    v0 ^= m;

    v2 ^= (n == 2) ? 0xee : 0xff;
    WELBY_SIPROUND;
    WELBY_SIPROUND;
    WELBY_SIPROUND;
    WELBY_SIPROUND;

    out[0] = v0 ^ v1 ^ v2 ^ v3;

    if (n == 2) {
        v1 ^= 0xdd;
        WELBY_SIPROUND;
        WELBY_SIPROUND;
        WELBY_SIPROUND;
        WELBY_SIPROUND;

        out[1] = v0 ^ v1 ^ v2 ^ v3;
    }
}


uint64_t
welby_siphash(const uint64_t k[2], const unsigned char *data, size_t len)
{
    uint64_t  out;

    welby_siphash_out(k, data, len, &out, 1);

    return out;
}


void
welby_siphash128(const uint64_t k[2], const unsigned char *data, size_t len,
    unsigned char out[16])
{
    uint64_t  h[2];

    welby_siphash_out(k, data, len, h, 2);

    /* little-endian, as the reference writes its output */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(out, h, 16);
#else
    {
        unsigned  i;

        for (i = 0; i < 16; i++) {
            out[i] = (unsigned char) (h[i / 8] >> (8 * (i % 8)));
        }
    }
#endif
}
