/*
 * FNV-1a, 64 bits: the keys of the welby_zone trees and the namespaces
 * of its users.  Not a keyed hash: a tree orders records whose hashes
 * collide by their keys, so chosen collisions cost a comparison each,
 * never a linear walk.  No nginx types here.
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

#endif /* WELBY_HASH_H */
