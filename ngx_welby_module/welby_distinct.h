/*
 * Distinct counting in a fixed size: the set of ids (patients) a key (a
 * subject, a client) reached, held exactly while it is small and as a
 * linear-counting bitmap after that, so that every record of a zone has
 * the same size whatever it counts.  No nginx types here: unit tests link
 * it alone.
 *
 * Ids are hashed with SipHash-2-4 under a random key kept in the record:
 * whoever chooses the ids cannot choose their collisions.  The exact part
 * keeps up to WELBY_DISTINCT_EXACT_MAX 64-bit hashes; the (E+1)-th
 * distinct id turns them into the bitmap of WELBY_DISTINCT_BITS bits in
 * the same bytes.  Linear counting (Whang, Vander-Zanden, Taylor 1990)
 * estimates n from the empty bits V:  n^ = -m ln(V / m).  Its standard
 * error at n = t m is  sqrt(m (e^t - t - 1))  (1/sqrt(2m) = 1.56% of n for
 * small t, 1.70% at n = 1000 with m = 2048) and its bias (e^t - t - 1)/2
 * ids, under 0.08 up to 1000: far better than a HyperLogLog of the same
 * 256 bytes (256 registers, 1.04/sqrt(256) = 6.5%).
 */

#ifndef WELBY_DISTINCT_H
#define WELBY_DISTINCT_H

#include <stddef.h>
#include <stdint.h>


#define WELBY_DISTINCT_BITS       2048
#define WELBY_DISTINCT_EXACT_MAX  32        /* 64-bit hashes in 256 bytes */

/* the bound beyond which 2048 bits estimate no better than 1.7% */
#define WELBY_DISTINCT_LIMIT_MAX  1000


typedef struct {
    uint64_t                 key[2];        /* SipHash key */
    uint32_t                 n;             /* hashes held, or bits set */
    uint32_t                 sketch;        /* 1: the bitmap */
    union {
        uint64_t             hash[WELBY_DISTINCT_EXACT_MAX];
        uint64_t             bits[WELBY_DISTINCT_BITS / 64];
    } u;
} welby_distinct_t;


/* Decided at configuration time: how many ids pass. */
typedef struct {
    unsigned                 limit;         /* distinct ids allowed */
    unsigned                 exact;         /* hashes held exactly */
    unsigned                 bits;          /* bits set that estimate at
                                               most limit */
} welby_distinct_bound_t;


/* welby_distinct_add() */
#define WELBY_DISTINCT_SEEN   0     /* every id was in the set: unchanged */
#define WELBY_DISTINCT_ADDED  1     /* the set grew, within the bound */
#define WELBY_DISTINCT_OVER   2     /* it would pass the bound */


/* welby_siphash() is in welby_hash.h */

/*
 * The bound for limit distinct ids, exact of them held exactly.  0, or -1
 * when limit is not within 1..WELBY_DISTINCT_LIMIT_MAX or exact not
 * within 1..WELBY_DISTINCT_EXACT_MAX.  Past exact, an id passes while the
 * estimate with it, rounded to the nearest integer, is at most limit.
 */
int welby_distinct_bound(welby_distinct_bound_t *b, unsigned limit,
    unsigned exact);

/* An empty set under a key of 16 random bytes. */
void welby_distinct_init(welby_distinct_t *d, const unsigned char *key);

/* The hash of an id under the set's key. */
uint64_t welby_distinct_hash(const welby_distinct_t *d,
    const unsigned char *id, size_t len);

/*
 * Adds the ids of one request (their hashes h[0..n-1]) at once: SEEN
 * when all were in the set already (in the bitmap: their bits were set),
 * ADDED, or OVER when the set with them would pass the bound; then the
 * set is left as it was, unless force, which adds them anyway.
 */
int welby_distinct_add(welby_distinct_t *d, const uint64_t *h, size_t n,
    const welby_distinct_bound_t *b, int force);

/*
 * The count the set would have with the ids h[0..n-1] added: exact while
 * the set is (the new ids counted exactly, even past exact=), else the
 * estimate.  The set is not changed.
 */
unsigned welby_distinct_count_with(const welby_distinct_t *d,
    const uint64_t *h, size_t n, const welby_distinct_bound_t *b);

/* Whether the set still holds its hashes exactly (no bitmap yet). */
int welby_distinct_exact(const welby_distinct_t *d);

/* The number of distinct ids: exact, or the linear-counting estimate. */
unsigned welby_distinct_estimate(const welby_distinct_t *d);

#endif /* WELBY_DISTINCT_H */
