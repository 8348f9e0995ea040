/*
 * FNV-1a, 64 bits: the keys of the welby_zone trees and the namespaces
 * of its users.  Not a keyed hash: a tree orders records whose hashes
 * collide by their keys, so chosen collisions cost a comparison each,
 * never a linear walk.  SipHash-2-4, keyed: the enumeration detector's
 * sets, and the keys a welby_zone holds for its users.  No nginx types
 * here.
 */

#ifndef WELBY_HASH_H
#define WELBY_HASH_H

#include <stddef.h>
#include <stdint.h>


#define WELBY_HASH64_INIT  0xcbf29ce484222325ULL

/* Goes on from h (WELBY_HASH64_INIT to start) over len bytes of p. */
uint64_t welby_hash64(uint64_t h, const unsigned char *p, size_t len);

/* The 32-bit value of a 64-bit hash: its halves xored. */
uint32_t welby_hash32_fold(uint64_t h);

/* The 8 bytes at p as a little-endian number. */
uint64_t welby_le64(const unsigned char *p);

/* SipHash-2-4 of data under a 128-bit key (k[0] the first 8 key bytes,
 * read little-endian). */
uint64_t welby_siphash(const uint64_t k[2], const unsigned char *data,
    size_t len);

/* SipHash-2-4 with its 128-bit output, written little-endian as the
 * reference implementation writes it. */
void welby_siphash128(const uint64_t k[2], const unsigned char *data,
    size_t len, unsigned char out[16]);

#endif /* WELBY_HASH_H */
