/*
 * FNV-1a, 64 bits (see welby_hash.h).
 */

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
